/* ctx_check.h: helpers shared by the tests of the ctx layer (tests/ctx/test_*.c).
 *
 * cmocka's assertions longjmp to the test function: they must not run on a coroutine
 * stack. Coroutines record failed checks with CHECK(), which prints the expression (and,
 * for CHECK_EQ, both values) and counts it; each test asserts the count is zero after
 * run_weft(). */
#ifndef WEFT_TESTS_CTX_CHECK_H
#define WEFT_TESTS_CTX_CHECK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>

#include "weft_test.h"

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#else
#define SANITIZED 0
#endif
#if defined(__SANITIZE_THREAD__)
#define TSAN 1
#else
#define TSAN 0
#endif

static atomic_int check_failures;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      atomic_fetch_add(&check_failures, 1);                                    \
    }                                                                          \
  } while (0)

/* CHECK_EQ(a, b): integers; prints both values when they differ. */
#define CHECK_EQ(a, b)                                                                      \
  do {                                                                                      \
    long long check_a_ = (long long)(a), check_b_ = (long long)(b);                         \
    if (check_a_ != check_b_) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s == %s (%lld != %lld)\n", __FILE__, __LINE__, \
              #a, #b, check_a_, check_b_);                                                  \
      atomic_fetch_add(&check_failures, 1);                                                 \
    }                                                                                       \
  } while (0)

static inline void checks_reset(void)
{
  atomic_store(&check_failures, 0);
}

#define ASSERT_NO_CHECK_FAILED() assert_int_equal(atomic_load(&check_failures), 0)

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
