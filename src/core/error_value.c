/* error_value.c: weft_error values (weft/error.h).
 *
 * An error is one allocation holding its message inline; the cause is a reference. The
 * out-of-memory error is static (reference counting skips it), so making an error never
 * fails to return one. */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft/error.h"

struct weft_error {
  atomic_long refs;
  int code;
  weft_error *cause; /* a reference, or NULL */
  char msg[];        /* NUL-terminated */
};

static struct {
  atomic_long refs;
  int code;
  weft_error *cause;
  char msg[16];
} no_memory = {0, -ENOMEM, NULL, "out of memory"};

#define NO_MEMORY ((weft_error *)&no_memory)

weft_error *weft_error_retain(weft_error *err)
{
  if (err && err != NO_MEMORY)
    atomic_fetch_add_explicit(&err->refs, 1, memory_order_relaxed);
  return err;
}

void weft_error_release(weft_error *err)
{
  while (err && err != NO_MEMORY &&
         atomic_fetch_sub_explicit(&err->refs, 1, memory_order_acq_rel) == 1) {
    weft_error *cause = err->cause; /* released iteratively: long chains need no stack */
    free(err);
    err = cause;
  }
}

weft_error *weft_error_new(int code, weft_error *cause, const char *fmt, ...)
{
  char small[256];
  const char *text = small;
  int n;
  if (code == 0)
    code = cause ? cause->code : -EIO;
  if (code > 0)
    code = -code;
  if (fmt) {
    va_list ap;
    va_start(ap, fmt);
    n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
      n = 0, small[0] = '\0';
  } else {
    text = weft_strerror(code);
    n = (int)strlen(text);
  }
  weft_error *err = malloc(sizeof *err + (size_t)n + 1);
  if (!err)
    return NO_MEMORY;
  atomic_init(&err->refs, 1);
  err->code = code;
  err->cause = weft_error_retain(cause);
  if (fmt && (size_t)n >= sizeof small) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, (size_t)n + 1, fmt, ap);
    va_end(ap);
  } else {
    memcpy(err->msg, text, (size_t)n + 1);
  }
  return err;
}

weft_error *weft_error_from_code(int code)
{
  return code ? weft_error_new(code, NULL, NULL) : NULL;
}

int weft_error_code(const weft_error *err)
{
  return err ? err->code : 0;
}

weft_error *weft_error_cause(const weft_error *err)
{
  return err ? err->cause : NULL;
}

int weft_error_is(const weft_error *err, int code)
{
  if (code > 0)
    code = -code;
  for (; err; err = err->cause)
    if (err->code == code)
      return 1;
  return 0;
}

size_t weft_error_format(const weft_error *err, char *buf, size_t len)
{
  size_t need = 0;
  for (const weft_error *e = err; e; e = e->cause) {
    const char *sep = e == err ? "" : ": ";
    int n = snprintf(buf && need < len ? buf + need : NULL, buf && need < len ? len - need : 0,
                     "%s%s", sep, e->msg);
    need += n > 0 ? (size_t)n : 0;
  }
  if (!err && buf && len)
    buf[0] = '\0';
  return need;
}
