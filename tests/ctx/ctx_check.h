/* ctx_check.h: helpers shared by the tests of the ctx layer (tests/ctx/test_*.c), on top
 * of the coroutine-safe CHECK()s of tests/support/coro_check.h. */
#ifndef WEFT_TESTS_CTX_CHECK_H
#define WEFT_TESTS_CTX_CHECK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>

#include "coro_check.h"
#include "weft_test.h"

/* Run fn on P = 1..4 and fail the test on a failed check or a leak. */
static inline void run_checked_p1to4(int (*fn)(void *), void *arg)
{
  checks_reset();
  run_weft_p1to4(fn, arg);
  ASSERT_NO_CHECK_FAILED();
}

/* Run fn on P = procs and fail the test on a failed check, a leak or a non-zero result. */
static inline void run_checked(int procs, int (*fn)(void *), void *arg)
{
  checks_reset();
  assert_int_equal(run_weft(procs, fn, arg), 0);
  ASSERT_NO_CHECK_FAILED();
}

/* Poll until *flag >= want (every millisecond, up to timeout_ns). Coroutine, parks.
 * Returns true if reached. */
static inline bool wait_at_least(atomic_int *flag, int want, int64_t timeout_ns)
{
  int64_t end = weft_now() + timeout_ns;
  while (atomic_load(flag) < want) {
    if (weft_now() > end)
      return false;
    weft_sleep(MS(1));
  }
  return true;
}

#endif
