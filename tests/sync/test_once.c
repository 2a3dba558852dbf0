/* test_once.c: weft_once: fn runs exactly once however many coroutines call at once, on
 * P=1..4; every caller returns only after fn has completed and sees what it wrote (plain
 * data: ThreadSanitizer checks the happens-before); callers that arrive while fn runs park
 * ("mutex" in a dump); later calls return at once without calling fn; separate onces are
 * independent, and fn may itself use another once. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft_test.h"
#include "sync_check.h"

#define NCALLERS (SANITIZED ? 32 : 64)
#define ROUNDS   10 /* fresh onces per P */

struct once_test {
  weft_once once;
  atomic_int runs;     /* calls of fn */
  atomic_int finished; /* fn has returned */
  int value;           /* plain: written by fn, read by every caller after weft_once_do */
  int table[64];       /* plain: ditto */
  atomic_int callers_in;
  weft_wg wg;
};

static void init_fn(void *arg)
{
  struct once_test *t = arg;
  atomic_fetch_add(&t->runs, 1);
  /* Take a while, parking, so that most callers arrive while fn runs. */
  weft_sleep(MS(1));
  for (int i = 0; i < 64; i++)
    t->table[i] = i * i;
  weft_yield();
  t->value = 42;
  atomic_store(&t->finished, 1);
}

static void caller(void *arg)
{
  struct once_test *t = arg;
  atomic_fetch_add(&t->callers_in, 1);
  weft_once_do(&t->once, init_fn, t);
  CHECK(atomic_load(&t->finished) == 1);
  CHECK(t->value == 42);
  CHECK(t->table[63] == 63 * 63);
  weft_wg_done(&t->wg);
}

static int once_round(void)
{
  struct once_test *t = calloc(1, sizeof *t);
  if (!t)
    return -1;
  weft_wg_add(&t->wg, NCALLERS);
  for (int i = 0; i < NCALLERS; i++)
    if (weft_go_named(caller, t, "once-caller") != 0)
      return -1;
  weft_wg_wait(&t->wg);
  CHECK(atomic_load(&t->runs) == 1);
  /* Later calls: fn is not called again; the caller returns at once. */
  weft_once_do(&t->once, init_fn, t);
  CHECK(atomic_load(&t->runs) == 1);
  free(t);
  return 0;
}

static int once_main(void *arg)
{
  (void)arg;
  for (int round = 0; round < ROUNDS; round++)
    if (once_round() != 0)
      return -1;
  return 0;
}

static void test_runs_exactly_once(void **state)
{
  (void)state;
  checks_reset();
  run_weft_p1to4(once_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- callers that arrive while fn runs park with reason "mutex" ---- */

struct gate {
  weft_once once;
  atomic_int entered; /* fn has started */
  atomic_int release; /* main lets fn finish */
  atomic_int returned;
  weft_wg wg;
};

static void gated_fn(void *arg)
{
  struct gate *g = arg;
  atomic_store(&g->entered, 1);
  while (!atomic_load(&g->release))
    weft_sleep(MS(1));
}

static void gated_caller(void *arg)
{
  struct gate *g = arg;
  weft_once_do(&g->once, gated_fn, g);
  CHECK(atomic_load(&g->release) == 1);
  atomic_fetch_add(&g->returned, 1);
  weft_wg_done(&g->wg);
}

#define GATE_CALLERS 4

static int gate_main(void *arg)
{
  struct gate g = {.once = WEFT_ONCE_INIT, .wg = WEFT_WG_INIT};
  (void)arg;
  weft_wg_add(&g.wg, GATE_CALLERS);
  if (weft_go_named(gated_caller, &g, "once-first") != 0)
    return -1;
  CHECK(wait_flag(&g.entered, 1, MS(5000)));
  for (int i = 1; i < GATE_CALLERS; i++)
    if (weft_go_named(gated_caller, &g, "once-late") != 0)
      return -1;
  CHECK(wait_dump_count("\"once-late\"", "mutex", GATE_CALLERS - 1, MS(5000)));
  CHECK(atomic_load(&g.returned) == 0);
  atomic_store(&g.release, 1);
  weft_wg_wait(&g.wg);
  CHECK(atomic_load(&g.returned) == GATE_CALLERS);
  return 0;
}

static void test_late_callers_wait(void **state)
{
  (void)state;
  checks_reset();
  run_weft_p1to4(gate_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- independent onces; fn may use another once ---- */

struct nested {
  weft_once outer, inner;
  int outer_runs, inner_runs; /* plain: written by fns, read after weft_once_do */
};

static void inner_fn(void *arg)
{
  struct nested *n = arg;
  n->inner_runs++;
}

static void outer_fn(void *arg)
{
  struct nested *n = arg;
  n->outer_runs++;
  weft_once_do(&n->inner, inner_fn, n);
}

static int nested_main(void *arg)
{
  struct nested n = {.outer = WEFT_ONCE_INIT, .inner = WEFT_ONCE_INIT};
  (void)arg;
  for (int i = 0; i < 3; i++) {
    weft_once_do(&n.outer, outer_fn, &n);
    weft_once_do(&n.inner, inner_fn, &n);
  }
  CHECK(n.outer_runs == 1 && n.inner_runs == 1);
  /* A second pair of onces is untouched by the first. */
  struct nested m = {.outer = WEFT_ONCE_INIT, .inner = WEFT_ONCE_INIT};
  weft_once_do(&m.inner, inner_fn, &m);
  weft_once_do(&m.outer, outer_fn, &m);
  CHECK(m.outer_runs == 1 && m.inner_runs == 1);
  return 0;
}

static void test_nested_and_independent(void **state)
{
  (void)state;
  checks_reset();
  assert_int_equal(run_weft(2, nested_main, NULL), 0);
  ASSERT_NO_CHECK_FAILED();
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_runs_exactly_once),
      cmocka_unit_test(test_late_callers_wait),
      cmocka_unit_test(test_nested_and_independent),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
