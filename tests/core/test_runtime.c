/* test_runtime.c: weft_main, spawn, yield, ids and names, the leak check. */
#include <stdatomic.h>
#include <string.h>

#include "weft_test.h"

static int returns_42(void *arg)
{
  (void)arg;
  return 42;
}

static void test_main_returns_result(void **state)
{
  (void)state;
  assert_int_equal(run_weft(1, returns_42, NULL), 42);
  assert_int_equal(run_weft(4, returns_42, NULL), 42);
}

static void test_main_rejects_null(void **state)
{
  (void)state;
  assert_int_equal(weft_main(NULL, NULL), -EINVAL);
}

struct spawn_count {
  atomic_long ran;
  weft_wg wg;
};

static void count_child(void *arg)
{
  struct spawn_count *sc = arg;
  atomic_fetch_add(&sc->ran, 1);
  weft_yield();
  weft_wg_done(&sc->wg);
}

static int spawn_many(void *arg)
{
  struct spawn_count sc = {0};
  (void)arg;
  weft_wg_add(&sc.wg, 5000);
  for (int i = 0; i < 5000; i++)
    if (weft_go(count_child, &sc) != 0)
      return -1;
  weft_wg_wait(&sc.wg);
  return atomic_load(&sc.ran) == 5000 ? 0 : 1;
}

static void test_spawn_runs_each_once(void **state)
{
  (void)state;
  run_weft_p1to4(spawn_many, NULL);
}

static void named_child(void *arg)
{
  weft_wg *wg = arg;
  assert_string_equal(weft_self_name(), "worker-7");
  weft_set_name("renamed");
  assert_string_equal(weft_self_name(), "renamed");
  assert_true(weft_self_id() > 1);
  weft_wg_done(wg);
}

static int names_and_ids(void *arg)
{
  weft_wg wg = WEFT_WG_INIT;
  (void)arg;
  assert_int_equal(weft_self_id(), 1);
  assert_string_equal(weft_self_name(), "main");
  assert_true(weft_in_coroutine());
  weft_wg_add(&wg, 1);
  assert_int_equal(weft_go_named(named_child, &wg, "worker-7"), 0);
  weft_wg_wait(&wg);
  return 0;
}

static void test_names_and_ids(void **state)
{
  (void)state;
  assert_int_equal(run_weft(2, names_and_ids, NULL), 0);
  assert_int_equal(weft_self_id(), 0);
  assert_null(weft_self_name());
  assert_false(weft_in_coroutine());
}

/* Yield puts the caller behind the others: with P=1, three coroutines that log and
 * yield interleave in round-robin order. */
struct order_log {
  char buf[64];
  atomic_int len;
  weft_wg wg;
};

static void yielder(void *arg)
{
  struct order_log *log = arg;
  char me = weft_self_name()[0];
  for (int i = 0; i < 3; i++) {
    log->buf[atomic_fetch_add(&log->len, 1)] = me;
    weft_yield();
  }
  weft_wg_done(&log->wg);
}

static int yield_order(void *arg)
{
  struct order_log *log = arg;
  weft_wg_add(&log->wg, 3);
  weft_go_named(yielder, log, "a");
  weft_go_named(yielder, log, "b");
  weft_go_named(yielder, log, "c");
  weft_wg_wait(&log->wg);
  return 0;
}

static void test_yield_round_robin(void **state)
{
  struct order_log log = {0};
  (void)state;
  assert_int_equal(run_weft(1, yield_order, &log), 0);
  assert_string_equal(log.buf, "abcabcabc");
}

static void parked_forever(void *arg)
{
  weft_wg *never = arg;
  weft_wg_wait(never);
}

static weft_wg never_done = WEFT_WG_INIT;

static int leaks_one(void *arg)
{
  (void)arg;
  weft_wg_add(&never_done, 1);
  weft_go_named(parked_forever, &never_done, "leaker");
  weft_sleep(MS(5));
  return 0;
}

static void test_leak_is_reported(void **state)
{
  (void)state;
  weft_config cfg = {.procs = 2, .stack_guard = 1, .leak_check = WEFT_LEAK_FAIL};
  assert_int_equal(weft_main_with(&cfg, leaks_one, NULL), -EBUSY);
  assert_int_equal(weft_leaked(), 1);
  weft_wg_init(&never_done);
}

static int go_outside(void *arg)
{
  (void)arg;
  return 0;
}

static void test_go_outside_runtime(void **state)
{
  (void)state;
  assert_int_equal(weft_go(count_child, NULL), -EPERM);
  assert_int_equal(run_weft(1, go_outside, NULL), 0);
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_main_returns_result),  cmocka_unit_test(test_main_rejects_null),
      cmocka_unit_test(test_spawn_runs_each_once), cmocka_unit_test(test_names_and_ids),
      cmocka_unit_test(test_yield_round_robin),    cmocka_unit_test(test_leak_is_reported),
      cmocka_unit_test(test_go_outside_runtime),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
