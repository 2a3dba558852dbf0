/* coro_check.h: checks that may run on a coroutine stack.
 *
 * cmocka's assertions longjmp to the test function: they must not run on a coroutine
 * stack. Coroutines record failed checks with CHECK() / CHECK_EQ(), which print the
 * expression (and, for CHECK_EQ, both values) and count it; the test function resets the
 * count before the scenario and asserts it is zero after run_weft(). */
#ifndef WEFT_TESTS_CORO_CHECK_H
#define WEFT_TESTS_CORO_CHECK_H

#include <stdatomic.h>
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

/* Record a failed check (what, and the two values compared if any). */
static inline void check_failed(const char *file, int line, const char *what, long long a,
                                long long b)
{
  fprintf(stderr, "%s:%d: check failed: %s (%lld vs %lld)\n", file, line, what, a, b);
  atomic_fetch_add(&check_failures, 1);
}

#define CHECK(cond)                                  \
  do {                                               \
    if (!(cond))                                     \
      check_failed(__FILE__, __LINE__, #cond, 0, 0); \
  } while (0)

/* CHECK_EQ(a, b): integers; prints both values when they differ. */
#define CHECK_EQ(a, b)                                                    \
  do {                                                                    \
    long long check_a_ = (long long)(a), check_b_ = (long long)(b);       \
    if (check_a_ != check_b_)                                             \
      check_failed(__FILE__, __LINE__, #a " == " #b, check_a_, check_b_); \
  } while (0)

/* The failed checks since the last call (and reset): a scenario's result. */
static inline int checks_result(void)
{
  return atomic_exchange(&check_failures, 0);
}

/* Start a test: no failed check carried over from an earlier one. */
static inline void checks_reset(void)
{
  atomic_store(&check_failures, 0);
}

/* End a test: fail it if any coroutine recorded a failed check. */
#define ASSERT_NO_CHECK_FAILED() assert_int_equal(atomic_load(&check_failures), 0)

#endif
