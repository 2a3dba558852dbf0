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

/* Start a test: no failed check carried over from an earlier one. */
static inline void checks_reset(void)
{
  atomic_store(&check_failures, 0);
}

/* End a test: fail it if any coroutine recorded a failed check. */
#define ASSERT_NO_CHECK_FAILED() assert_int_equal(atomic_load(&check_failures), 0)

#endif
