/* sync_check.h: small helpers shared by the sync tests (tests/sync/test_{mutex,rwmutex,
 * cond,once,sem,waitgroup}.c and tests/stress/test_sync_stress.c).
 *
 * Coroutine-safe CHECK()s come from tests/support/coro_check.h. dump_count() counts the lines
 * of a weft_dump() that name a coroutine and show a wait reason, which is how tests see that a
 * coroutine is parked for a given reason. */
#ifndef WEFT_TESTS_SYNC_CHECK_H
#define WEFT_TESTS_SYNC_CHECK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coro_check.h"
#include "weft_test.h"

/* Whether line shows the wait reason exactly: "[reason]" or "[reason, 1.23s]". */
static inline bool line_has_reason(const char *line, const char *reason)
{
  size_t n = strlen(reason);
  for (const char *p = strchr(line, '['); p; p = strchr(p + 1, '['))
    if (strncmp(p + 1, reason, n) == 0 && (p[1 + n] == ']' || p[1 + n] == ','))
      return true;
  return false;
}

/* The number of lines of weft_dump() that contain name (if not NULL) and show the wait
 * reason (if not NULL). */
static inline int dump_count(const char *name, const char *reason)
{
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f)
    return -1;
  weft_dump(f);
  fclose(f);
  int n = 0;
  for (char *line = buf; line && *line;) {
    char *end = strchr(line, '\n');
    if (end)
      *end = '\0';
    if ((!name || strstr(line, name)) && (!reason || line_has_reason(line, reason)))
      n++;
    line = end ? end + 1 : NULL;
  }
  free(buf);
  return n;
}

/* Poll the dump (every millisecond, up to timeout_ns) until exactly `want` lines match
 * (see dump_count). Coroutine, parks. Returns true if seen. */
static inline bool wait_dump_count(const char *name, const char *reason, int want,
                                   int64_t timeout_ns)
{
  int64_t end = weft_now() + timeout_ns;
  for (;;) {
    int n = dump_count(name, reason);
    if (n == want)
      return true;
    if (weft_now() > end) {
      fprintf(stderr, "wait_dump_count: %d lines with %s [%s], wanted %d\n", n,
              name ? name : "", reason ? reason : "", want);
      weft_dump(stderr);
      return false;
    }
    weft_sleep(MS(1));
  }
}

/* Poll until *flag == want (every millisecond, up to timeout_ns). Coroutine, parks. */
static inline bool wait_flag(atomic_int *flag, int want, int64_t timeout_ns)
{
  int64_t end = weft_now() + timeout_ns;
  while (atomic_load(flag) != want) {
    if (weft_now() > end)
      return false;
    weft_sleep(MS(1));
  }
  return true;
}

#endif
