/* test_examples.c: every pattern's example runs to completion, exit 0, and shows what it
 * teaches (the examples check their own results and exit non-zero when they are wrong). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "weft_test.h"

static void expect_example(const char *name, const char *const *args, const char *needle)
{
  int status = 0;
  char *out = run_example(name, args, 60000, &status);
  if (!out)
    skip();
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !strstr(out, needle))
    fprintf(stderr, "%s: status %d, want \"%s\" in:\n%s\n", name, status, needle, out);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  assert_non_null(strstr(out, needle));
  free(out);
}

static void test_worker_pool(void **state)
{
  expect_example("worker_pool", NULL, "weft_pool_queue_capacity{pool=\"payments\"} 8");
}

static void test_pipeline(void **state)
{
  expect_example("pipeline", NULL,
                 "weft_pipeline_items_total{pipeline=\"etl\",stage=\"source\",result=\"out\"} "
                 "1000");
}

static void test_retry(void **state)
{
  expect_example("retry", NULL, "500.0, 750.0, 1125.0, 1687.5");
}

static void test_breaker(void **state)
{
  expect_example("breaker", NULL, "weft_breaker_transitions_total{breaker=\"payments-api\"");
}

static void test_ratelimit(void **state)
{
  expect_example("ratelimit", NULL, "cancelled it: tokens back");
}

static void test_debug_server(void **state)
{
  const char *const args[] = {"127.0.0.1:0", "1", NULL};
  expect_example("debug_server", args, "/debug/dashboard");
}

/* Both versions of the bank account end at clients * ops (the example exits 1 if not). */
static void test_mutex_vs_channel(void **state)
{
  const char *const args[] = {"6", "500", NULL};
  expect_example("mutex_vs_channel", args, "mutex:   balance 3000 (want 3000)");
  expect_example("mutex_vs_channel", args, "channel: balance 3000 (want 3000)");
}

/* No lost increment, exactly one publisher wins, every reader sees a whole config. */
static void test_atomics(void **state)
{
  const char *const args[] = {"6", NULL};
  expect_example("atomics", args, "= 600000 (want 600000)");
  expect_example("atomics", args, "1 winner of 6 publishers; 12 of 12 readers saw a complete");
}

/* The first program to read: every fetch's latency comes back (their sum, from the
 * example's formula for fetch i: 1 + (i * 7919) % 20 ms) and only main is left alive. */
static void test_fanout(void **state)
{
  const char *const args[] = {"500", NULL};
  long sum = 0;
  for (int i = 0; i < 500; i++)
    sum += 1 + (i * 7919) % 20;
  char want[64];
  snprintf(want, sizeof want, "500 coroutines slept %ld ms in total", sum);
  expect_example("fanout", args, want);
  expect_example("fanout", args, "coroutine 1 \"main\" [running]");
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_worker_pool),
      cmocka_unit_test(test_pipeline),
      cmocka_unit_test(test_retry),
      cmocka_unit_test(test_breaker),
      cmocka_unit_test(test_ratelimit),
      cmocka_unit_test(test_debug_server),
      cmocka_unit_test(test_mutex_vs_channel),
      cmocka_unit_test(test_atomics),
      cmocka_unit_test(test_fanout),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
