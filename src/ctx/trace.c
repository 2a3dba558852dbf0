/* trace.c: W3C Trace Context (weft/trace.h): traceparent parsing and formatting, ids,
 * and the trace a context carries.
 *
 * Ids come from a per-thread xoshiro256** generator seeded from getrandom(2): ids need to
 * be unique, not secret, and a system call per span would cost more than the span's
 * bookkeeping. The state is used only between two instructions that cannot park, so a
 * coroutine that moves threads never holds on to another thread's state.
 *
 * A context carries a malloc'd copy of the trace (weft_ctx_with_value_free), freed with
 * the context. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "ctx/xoshiro.h"
#include "weft/trace.h"

static const char trace_key; /* the context key: its address */

/* ---- ids ---- */

struct rng {
  uint64_t s[4];
  int seeded;
};
static _Thread_local struct rng rng;

/* Seed from getrandom; if that fails (very old kernel, seccomp), from the clock and the
 * state's address, which still differ between threads and runs. */
static void seed(struct rng *r)
{
  uint64_t x;
  if (getrandom(r->s, sizeof r->s, GRND_NONBLOCK) != (ssize_t)sizeof r->s) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    x = ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^ (uint64_t)(uintptr_t)r;
    weft__xoshiro_seed(r->s, x);
  }
  if (!(r->s[0] | r->s[1] | r->s[2] | r->s[3]))
    r->s[0] = 1; /* xoshiro's one bad state */
  r->seeded = 1;
}

static uint64_t next64(void)
{
  struct rng *r = &rng;
  if (!r->seeded)
    seed(r);
  return weft__xoshiro_next(r->s);
}

static int is_zero(const uint8_t *p, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (p[i])
      return 0;
  return 1;
}

/* Fill id with random bytes, never all zero. */
static void random_id(uint8_t *id, size_t n)
{
  do {
    for (size_t i = 0; i < n; i += 8) {
      uint64_t v = next64();
      memcpy(id + i, &v, n - i < 8 ? n - i : 8);
    }
  } while (is_zero(id, n));
}

void weft_trace_new(weft_trace *out)
{
  random_id(out->trace_id, sizeof out->trace_id);
  random_id(out->span_id, sizeof out->span_id);
  memset(out->parent_id, 0, sizeof out->parent_id);
  out->flags = WEFT_TRACE_SAMPLED;
}

void weft_trace_child(const weft_trace *parent, weft_trace *out)
{
  uint8_t span[8];
  memcpy(span, parent->span_id, sizeof span); /* out may be parent */
  memmove(out->trace_id, parent->trace_id, sizeof out->trace_id);
  out->flags = parent->flags & WEFT_TRACE_SAMPLED; /* the only flag version 00 defines */
  memcpy(out->parent_id, span, sizeof span);
  random_id(out->span_id, sizeof out->span_id);
}

int weft_trace_is_valid(const weft_trace *t)
{
  return t && !is_zero(t->trace_id, sizeof t->trace_id) &&
         !is_zero(t->span_id, sizeof t->span_id);
}

/* ---- hex ---- */

static char *to_hex(const uint8_t *id, size_t n, char *buf)
{
  static const char hex[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    buf[2 * i] = hex[id[i] >> 4];
    buf[2 * i + 1] = hex[id[i] & 15];
  }
  buf[2 * n] = '\0';
  return buf;
}

char *weft_trace_id_hex(const uint8_t id[16], char *buf)
{
  return to_hex(id, 16, buf);
}

char *weft_trace_span_hex(const uint8_t id[8], char *buf)
{
  return to_hex(id, 8, buf);
}

/* Lower-case hex only: W3C Trace Context rejects upper case. */
static int lower_hex(char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

/* Parse n bytes from 2n lower-case hex digits; 0 or -EINVAL. */
static int from_hex(const char *s, uint8_t *out, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    int hi = lower_hex(s[2 * i]), lo = lower_hex(s[2 * i + 1]);
    if (hi < 0 || lo < 0)
      return -EINVAL;
    out[i] = (uint8_t)(hi << 4 | lo);
  }
  return 0;
}

/* ---- traceparent ---- */

int weft_trace_parse(const char *h, weft_trace *out)
{
  if (!h || !out)
    return -EINVAL;
  size_t len = strlen(h);
  while (len && (h[len - 1] == ' ' || h[len - 1] == '\t'))
    len--;
  uint8_t version, flags;
  weft_trace t = {0};
  if (len < WEFT_TRACEPARENT_LEN || from_hex(h, &version, 1) || version == 0xff)
    return -EINVAL;
  if (version == 0 ? len != WEFT_TRACEPARENT_LEN
                   : len > WEFT_TRACEPARENT_LEN && h[WEFT_TRACEPARENT_LEN] != '-')
    return -EINVAL;
  if (h[2] != '-' || h[35] != '-' || h[52] != '-')
    return -EINVAL;
  if (from_hex(h + 3, t.trace_id, 16) || from_hex(h + 36, t.span_id, 8) ||
      from_hex(h + 53, &flags, 1))
    return -EINVAL;
  if (!weft_trace_is_valid(&t))
    return -EINVAL;
  t.flags = flags;
  *out = t;
  return 0;
}

int weft_trace_format(const weft_trace *t, char *buf, size_t len)
{
  if (!t || !buf || len < WEFT_TRACEPARENT_SIZE)
    return -EINVAL;
  memcpy(buf, "00-", 3);
  to_hex(t->trace_id, 16, buf + 3);
  buf[35] = '-';
  to_hex(t->span_id, 8, buf + 36);
  buf[52] = '-';
  to_hex(&t->flags, 1, buf + 53);
  return WEFT_TRACEPARENT_LEN;
}

/* ---- contexts ---- */

weft_ctx *weft_trace_ctx_with(weft_ctx *parent, const weft_trace *t)
{
  if (!t)
    return NULL;
  weft_trace *copy = malloc(sizeof *copy);
  if (!copy)
    return NULL;
  *copy = *t;
  weft_ctx *c = weft_ctx_with_value_free(parent, &trace_key, copy, free);
  if (!c)
    free(copy);
  return c;
}

int weft_trace_from_ctx(weft_ctx *ctx, weft_trace *out)
{
  const weft_trace *t = ctx ? weft_ctx_value(ctx, &trace_key) : NULL;
  if (!t)
    return -ENOENT;
  *out = *t;
  return 0;
}

weft_ctx *weft_trace_server_ctx(weft_ctx *parent, const char *traceparent)
{
  weft_trace t;
  if (traceparent && weft_trace_parse(traceparent, &t) == 0)
    weft_trace_child(&t, &t);
  else
    weft_trace_new(&t);
  /* The value node above the cancel node: weft_ctx_cancel acts on cancel nodes only, and
   * the caller cancels what it gets. The cancel node holds the value node. */
  weft_ctx *v = weft_trace_ctx_with(parent, &t);
  if (!v)
    return NULL;
  weft_ctx *c = weft_ctx_with_cancel(v);
  weft_ctx_release(v);
  return c;
}

int weft_trace_outgoing(weft_ctx *ctx, char *buf, size_t len, weft_trace *out)
{
  weft_trace t;
  if (!buf || len < WEFT_TRACEPARENT_SIZE)
    return -EINVAL;
  if (weft_trace_from_ctx(ctx, &t))
    return -ENOENT;
  weft_trace_child(&t, &t);
  if (out)
    *out = t;
  return weft_trace_format(&t, buf, len);
}
