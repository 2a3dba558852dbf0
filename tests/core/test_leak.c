/* test_leak.c: weft_leak_verify: clean runs pass, a parked coroutine fails with its dump,
 * retries let a finishing coroutine go, and each ignore filter works. */
#include <stdlib.h>
#include <string.h>

#include "coro_check.h"
#include "weft_test.h"

struct text {
  char *buf;
  size_t len;
};

struct world {
  weft_chan *gate;
  weft_wg done;
};

__attribute__((noinline)) static void stuck_in_recv(weft_chan *ch)
{
  int v;
  weft_chan_recv(ch, &v, WEFT_NO_DEADLINE);
  __asm__ volatile("" ::: "memory");
}

static void stuck_entry(void *arg)
{
  struct world *w = arg;
  stuck_in_recv(w->gate);
  weft_wg_done(&w->done);
}

static void quick(void *arg)
{
  weft_wg_done(arg);
}

static void finishing(void *arg)
{
  weft_sleep(*(int64_t *)arg);
}

static const weft_leak_options fast = {.max_retries = 3, .max_sleep_ns = MS(1)};

/* Verify with opts (fast retries), returning the result and the report in t. */
static int verify_text(weft_leak_options opts, struct text *t)
{
  t->buf = NULL;
  t->len = 0;
  opts.out = open_memstream(&t->buf, &t->len);
  opts.max_retries = fast.max_retries;
  opts.max_sleep_ns = fast.max_sleep_ns;
  int rc = weft_leak_verify(&opts);
  fclose(opts.out);
  return rc;
}

static bool frames_built(void)
{
  struct text t = {0};
  FILE *f = open_memstream(&t.buf, &t.len);
  weft_dump_full(f);
  fclose(f);
  bool yes = !strstr(t.buf, "built without libunwind");
  free(t.buf);
  return yes;
}

static void release(struct world *w)
{
  weft_chan_close(w->gate);
  weft_wg_wait(&w->done);
  weft_chan_release(w->gate);
}

static void start_stuck(struct world *w)
{
  w->gate = weft_chan_new(sizeof(int), 0);
  weft_wg_init(&w->done);
  weft_wg_add(&w->done, 1);
  CHECK_EQ(weft_go_named(stuck_entry, w, "leaky"), 0);
  weft_sleep(MS(10)); /* let it park */
}

static int clean_main(void *arg)
{
  weft_wg wg;
  weft_wg_init(&wg);
  weft_wg_add(&wg, 10);
  for (int i = 0; i < 10; i++)
    weft_go(quick, &wg);
  weft_wg_wait(&wg);
  CHECK_EQ(weft_leak_verify(NULL), 0);
  return 0;
}

static void test_clean(void **state)
{
  checks_reset();
  run_weft_p1to4(clean_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

static void test_outside_runtime(void **state)
{
  assert_int_equal(weft_leak_verify(NULL), -EPERM);
  assert_null(weft_leak_snapshot());
}

static int leak_main(void *arg)
{
  struct world w;
  struct text t;
  start_stuck(&w);
  CHECK_EQ(verify_text((weft_leak_options){0}, &t), -EBUSY);
  if (!strstr(t.buf, "weft: 1 leaked coroutine:\n") ||
      !strstr(t.buf, "\"leaky\" [chan receive]:") ||
      !strstr(t.buf, frames_built() ? "created by start_stuck" : "created by stuck_entry") ||
      (frames_built() && !strstr(t.buf, "stuck_in_recv(...)"))) {
    fprintf(stderr, "unexpected report:\n%s\n", t.buf);
    CHECK(!"report");
  }
  free(t.buf);
  release(&w);
  CHECK_EQ(weft_leak_verify(NULL), 0);
  return 0;
}

static void test_leak_reported(void **state)
{
  checks_reset();
  run_weft_p1to4(leak_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

/* A coroutine still alive for 30 ms is not a leak: the default retries outlast it. */
static int retry_main(void *arg)
{
  static int64_t ns = MS(30);
  CHECK_EQ(weft_go(finishing, &ns), 0);
  weft_sleep(MS(1));
  struct text t;
  CHECK_EQ(verify_text((weft_leak_options){0}, &t), -EBUSY); /* fast retries: too short */
  free(t.buf);
  int64_t t0 = weft_now();
  CHECK_EQ(weft_leak_verify(NULL), 0);
  CHECK(weft_now() - t0 < MS(2000));
  return 0;
}

static void test_retries(void **state)
{
  checks_reset();
  run_weft_p1to4(retry_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

static int filters_main(void *arg)
{
  struct world w;
  struct text t;
  start_stuck(&w);
  static const char *const top[] = {"stuck_in_recv", NULL};
  static const char *const any[] = {"stuck_entry", NULL};
  static const char *const wrong[] = {"no_such_function", NULL};
  static const char *const creator[] = {"start_stuck", NULL};
  static const char *const entry[] = {"stuck_entry", NULL}; /* the name weft_go recorded */
  if (frames_built()) {
    CHECK_EQ(verify_text((weft_leak_options){.ignore_top = top}, &t), 0);
    free(t.buf);
    CHECK_EQ(verify_text((weft_leak_options){.ignore_top = any}, &t), -EBUSY); /* not top */
    free(t.buf);
    CHECK_EQ(verify_text((weft_leak_options){.ignore_any = any}, &t), 0);
    free(t.buf);
    CHECK_EQ(verify_text((weft_leak_options){.ignore_any = top}, &t), 0);
    free(t.buf);
  }
  CHECK_EQ(verify_text((weft_leak_options){.ignore_any = wrong, .ignore_top = wrong}, &t),
           -EBUSY);
  free(t.buf);
  if (frames_built()) { /* the creator's name needs symbols */
    CHECK_EQ(verify_text((weft_leak_options){.ignore_creator = creator}, &t), 0);
    free(t.buf);
  }
  CHECK_EQ(verify_text((weft_leak_options){.ignore_creator = entry}, &t), 0);
  free(t.buf);
  CHECK_EQ(verify_text((weft_leak_options){.ignore_creator = wrong}, &t), -EBUSY);
  free(t.buf);

  /* A snapshot ignores what was alive then, not what starts later. */
  weft_leak_set *set = weft_leak_snapshot();
  CHECK(set != NULL);
  CHECK_EQ(verify_text((weft_leak_options){.ignore_set = set}, &t), 0);
  free(t.buf);
  struct world w2;
  start_stuck(&w2);
  CHECK_EQ(verify_text((weft_leak_options){.ignore_set = set}, &t), -EBUSY);
  CHECK(strstr(t.buf, "weft: 1 leaked coroutine:\n") != NULL);
  free(t.buf);
  weft_leak_set_free(set);
  release(&w2);
  release(&w);
  return 0;
}

static void test_filters(void **state)
{
  checks_reset();
  run_weft_p1to4(filters_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

/* run_weft's own check: opting out lets a test leave a coroutine behind. */
static int leave_one_main(void *arg)
{
  static struct world w;
  w.gate = weft_chan_new(sizeof(int), 0);
  weft_wg_init(&w.done);
  weft_wg_add(&w.done, 1);
  weft_go(stuck_entry, &w);
  weft_sleep(MS(5));
  return 0; /* w.gate stays reachable from w until the process ends */
}

static void test_opt_out(void **state)
{
  weft_test_leak_options(NULL, false);
  assert_int_equal(run_weft(2, leave_one_main, NULL), 0);
  weft_test_leak_options(NULL, true);
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_outside_runtime), cmocka_unit_test(test_clean),
      cmocka_unit_test(test_leak_reported),   cmocka_unit_test(test_retries),
      cmocka_unit_test(test_filters),         cmocka_unit_test(test_opt_out),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
