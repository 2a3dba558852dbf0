/* weft_test.h: helpers shared by the tests.
 *
 * Every test that starts the runtime goes through run_weft(), which runs a main
 * coroutine on a chosen number of scheduler threads and fails the test if any coroutine
 * is still alive when main returns (the leak check runs in every test). */
#ifndef WEFT_TEST_H
#define WEFT_TEST_H

#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "weft/weft.h"

/* run_weft: run fn(arg) as main on procs scheduler threads (0: default) and return its
 * result; fails the test on a leaked coroutine: after fn returns, still inside the
 * runtime, weft_leak_verify (weft/debug.h) must find no coroutine but main alive (it
 * retries for a while, and prints the dump of the leaked ones). */
int run_weft(int procs, int (*fn)(void *), void *arg);
/* run_weft_with: run_weft with a whole configuration (guard modes, pool sizes); the same
 * leak check at the end. */
int run_weft_with(const weft_config *cfg, int (*fn)(void *), void *arg);

/* weft_test_leak_options: the options run_weft passes to weft_leak_verify (NULL:
 * defaults), or enabled = false to skip the check (and the count of coroutines alive
 * when main returned), for tests that leave coroutines on purpose. Stays in force for
 * the rest of the program. */
void weft_test_leak_options(const weft_leak_options *opts, bool enabled);

/* run_weft_p1to4: run fn(arg) with P = 1, 2, 3 and 4, asserting it returns 0 each time. */
void run_weft_p1to4(int (*fn)(void *), void *arg);

/* Expected-failure subprocesses. A test program calls weft_test_main() from main();
 * when started as `prog --child NAME` it runs the child scenario NAME instead of the
 * cmocka group. expect_child() re-executes the program with --child NAME, waits at most
 * timeout_s seconds, and asserts that it died abnormally (signal or non-zero exit) and
 * that its stderr contains `needle`. */
struct child_scenario {
  const char *name;
  void (*run)(void);
};
int weft_test_main(int argc, char **argv, const struct CMUnitTest *tests, size_t ntests,
                   const struct child_scenario *children, size_t nchildren);
void expect_child(const char *name, const char *needle, int timeout_s);
/* expect_child_died: run child `name`, assert it died abnormally (signal or non-zero
 * exit) within timeout_s, and return its stderr (malloc'd) for further checks. */
char *expect_child_died(const char *name, int timeout_s);
/* expect_child_output: like expect_child, returns the child's stderr (malloc'd). */
char *expect_child_output(const char *name, int timeout_s, int *status);

/* test_seed: the seed for randomized tests: WEFT_TEST_SEED if set, else time-based;
 * printed so a failure can be replayed. */
uint64_t test_seed(void);

/* Small per-thread PRNG for randomized tests. */
static inline uint64_t test_rand(uint64_t *s)
{
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

#define MS(n) ((int64_t)(n)*1000000)

/* run_example: run the example program name (built into <build>/examples/) with the
 * NULL-terminated args, stdout and stderr captured, killing it after timeout_ms. Returns
 * its output (malloc'd) and its wait status in *status, or NULL when the build has no
 * such example (a build without examples: the caller skips). */
char *run_example(const char *name, const char *const *args, int timeout_ms, int *status);

/* A self-signed certificate for the HTTPS tests: a P-256 key and certificate for
 * localhost and 127.0.0.1, made with the openssl command line in a fresh temporary
 * directory. Fills cert and key (paths in tc); returns 0 or -1. */
struct test_cert {
  char dir[64];
  char cert[128];
  char key[128];
};
int test_cert_make(struct test_cert *tc);
/* test_cert_remove: delete the files and the directory. */
void test_cert_remove(struct test_cert *tc);

#endif
