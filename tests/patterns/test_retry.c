/* test_retry.c: exponential back-off and weft_retry (weft/retry.h), on a fake clock. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coro_check.h"
#include "weft/weft.h"
#include "weft_test.h"

/* Back-off options with no jitter on fc, so delays are exact. */
static weft_backoff_options exact(weft_fake_clock *fc)
{
  weft_backoff_options o = WEFT_BACKOFF_DEFAULTS;
  o.randomization_factor = 0;
  o.clock = fc ? weft_fake_clock_clock(fc) : NULL;
  o.seed = 1;
  return o;
}

/* ---- the calculator: no runtime needed ---- */

static void test_defaults(void **state)
{
  weft_backoff_options o = WEFT_BACKOFF_DEFAULTS;
  assert_int_equal(o.initial_interval, MS(500));
  assert_true(o.randomization_factor == 0.5);
  assert_true(o.multiplier == 1.5);
  assert_int_equal(o.max_interval, MS(60000));
  assert_int_equal(o.max_elapsed_time, MS(15 * 60 * 1000));
  assert_int_equal(o.max_attempts, 0);
  weft_backoff *b = NULL;
  assert_int_equal(weft_backoff_new(NULL, &b), 0); /* defaults, random seed */
  for (int i = 0; i < 100; i++) {
    weft_backoff_reset(b);
    int64_t d = weft_backoff_next(b);
    assert_true(d >= MS(250) && d <= MS(750) + 1);
  }
  weft_backoff_free(b);
  weft_backoff_free(NULL);
}

/* 500, 750, 1125, 1687.5, 2531.25, 3796.875 ms, then capped at max_interval. */
static void test_sequence_exact(void **state)
{
  weft_backoff_options o = exact(NULL);
  o.max_interval = MS(5000);
  o.max_elapsed_time = 0; /* never stop */
  weft_backoff *b = NULL;
  assert_int_equal(weft_backoff_new(&o, &b), 0);
  const int64_t want[] = {500000000,  750000000,  1125000000, 1687500000, 2531250000,
                          3796875000, 5000000000, 5000000000, 5000000000};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    assert_int_equal(weft_backoff_next(b), want[i]);
  weft_backoff_reset(b); /* starts over */
  assert_int_equal(weft_backoff_next(b), MS(500));
  assert_int_equal(weft_backoff_next(b), MS(750));
  weft_backoff_free(b);
}

/* A seed fixes the sequence; every delay lies in [cur(1-f), cur(1+f)]. */
static void test_sequence_seeded(void **state)
{
  weft_backoff_options o = WEFT_BACKOFF_DEFAULTS;
  o.seed = 42;
  o.max_elapsed_time = 0;
  weft_backoff *a = NULL, *b = NULL, *c = NULL;
  assert_int_equal(weft_backoff_new(&o, &a), 0);
  assert_int_equal(weft_backoff_new(&o, &b), 0);
  o.seed = 43;
  assert_int_equal(weft_backoff_new(&o, &c), 0);
  double cur = 500e6;
  int differ = 0;
  for (int i = 0; i < 30; i++) {
    int64_t da = weft_backoff_next(a), db = weft_backoff_next(b), dc = weft_backoff_next(c);
    assert_int_equal(da, db);
    differ += da != dc;
    assert_true((double)da >= cur * 0.5 - 1 && (double)da <= cur * 1.5 + 1);
    assert_true((double)dc >= cur * 0.5 - 1 && (double)dc <= cur * 1.5 + 1);
    cur = cur >= 60e9 / 1.5 ? 60e9 : (double)(int64_t)(cur * 1.5);
  }
  assert_true(differ > 25);
  weft_backoff_free(a);
  weft_backoff_free(b);
  weft_backoff_free(c);
}

/* Full jitter: uniform in [0, cur], cur doubling up to the cap; spread over the range. */
static void test_full_jitter(void **state)
{
  weft_backoff_options o = WEFT_BACKOFF_DEFAULTS;
  o.policy = WEFT_BACKOFF_FULL_JITTER;
  o.initial_interval = MS(100);
  o.multiplier = 2;
  o.max_interval = MS(1000);
  o.max_elapsed_time = 0;
  o.seed = 7;
  weft_backoff *b = NULL, *b2 = NULL;
  assert_int_equal(weft_backoff_new(&o, &b), 0);
  assert_int_equal(weft_backoff_new(&o, &b2), 0);
  int64_t cap[] = {MS(100), MS(200), MS(400), MS(800), MS(1000), MS(1000)};
  for (int i = 0; i < 6; i++) {
    int64_t d = weft_backoff_next(b);
    assert_int_equal(d, weft_backoff_next(b2));
    assert_true(d >= 0 && d <= cap[i]);
  }
  int below_quarter = 0, above_three_quarters = 0;
  for (int i = 0; i < 4000; i++) { /* at the cap now: uniform in [0, 1 s] */
    int64_t d = weft_backoff_next(b);
    assert_true(d >= 0 && d <= MS(1000));
    below_quarter += d < MS(250);
    above_three_quarters += d > MS(750);
  }
  assert_true(below_quarter > 800 && below_quarter < 1200);
  assert_true(above_three_quarters > 800 && above_three_quarters < 1200);
  weft_backoff_free(b);
  weft_backoff_free(b2);
}

/* Stop when elapsed + next > max elapsed; equal is still allowed; reset restarts it. */
static void test_max_elapsed(void **state)
{
  weft_fake_clock *fc = weft_fake_clock_new(MS(1000));
  weft_backoff_options o = exact(fc);
  o.initial_interval = MS(1000);
  o.multiplier = 2;
  o.max_elapsed_time = MS(7000);
  weft_backoff *b = NULL;
  assert_int_equal(weft_backoff_new(&o, &b), 0);
  assert_int_equal(weft_backoff_next(b), MS(1000)); /* 0 + 1 <= 7 */
  weft_fake_clock_advance(fc, MS(1000));
  assert_int_equal(weft_backoff_elapsed(b), MS(1000));
  assert_int_equal(weft_backoff_next(b), MS(2000)); /* 1 + 2 <= 7 */
  weft_fake_clock_advance(fc, MS(2000));
  assert_int_equal(weft_backoff_next(b), MS(4000));          /* 3 + 4 == 7: allowed */
  assert_int_equal(weft_backoff_next(b), WEFT_BACKOFF_STOP); /* 3 + 8 > 7 */
  weft_fake_clock_advance(fc, MS(1));
  weft_backoff_reset(b);
  assert_int_equal(weft_backoff_elapsed(b), 0);
  assert_int_equal(weft_backoff_next(b), MS(1000));
  weft_fake_clock_advance(fc, MS(6001));
  assert_int_equal(weft_backoff_next(b), WEFT_BACKOFF_STOP); /* 6.001 + 2 > 7 */
  weft_backoff_free(b);
  weft_fake_clock_free(fc);
}

/* max_attempts n: n - 1 delays, then STOP; 1 means no retry at all. */
static void test_max_attempts_backoff(void **state)
{
  weft_backoff_options o = exact(NULL);
  o.max_attempts = 3;
  weft_backoff *b = NULL;
  assert_int_equal(weft_backoff_new(&o, &b), 0);
  assert_int_equal(weft_backoff_next(b), MS(500));
  assert_int_equal(weft_backoff_next(b), MS(750));
  assert_int_equal(weft_backoff_next(b), WEFT_BACKOFF_STOP);
  assert_int_equal(weft_backoff_next(b), WEFT_BACKOFF_STOP);
  weft_backoff_reset(b);
  assert_int_equal(weft_backoff_next(b), MS(500));
  weft_backoff_free(b);
  o.max_attempts = 1;
  assert_int_equal(weft_backoff_new(&o, &b), 0);
  assert_int_equal(weft_backoff_next(b), WEFT_BACKOFF_STOP);
  weft_backoff_free(b);
}

static void test_invalid(void **state)
{
  weft_backoff *b = NULL;
  weft_backoff_options ok = WEFT_BACKOFF_DEFAULTS, o;
  assert_int_equal(weft_backoff_new(&ok, NULL), -EINVAL);
  o = ok, o.initial_interval = 0;
  assert_int_equal(weft_backoff_new(&o, &b), -EINVAL);
  o = ok, o.randomization_factor = 1.5;
  assert_int_equal(weft_backoff_new(&o, &b), -EINVAL);
  o = ok, o.multiplier = 0.5;
  assert_int_equal(weft_backoff_new(&o, &b), -EINVAL);
  o = ok, o.max_interval = MS(100);
  assert_int_equal(weft_backoff_new(&o, &b), -EINVAL);
  o = ok, o.max_elapsed_time = -1;
  assert_int_equal(weft_backoff_new(&o, &b), -EINVAL);
  o = ok, o.max_attempts = -1;
  assert_int_equal(weft_backoff_new(&o, &b), -EINVAL);
  o = ok, o.policy = 7;
  assert_int_equal(weft_backoff_new(&o, &b), -EINVAL);
  o = ok, o.metrics = weft_metrics_default(); /* no name */
  assert_int_equal(weft_backoff_new(&o, &b), -EINVAL);
  assert_null(b);
  assert_int_equal(weft_retry(NULL, &ok, NULL, NULL, NULL, NULL), -EINVAL);
}

static void test_permanent_flag(void **state)
{
  int p = weft_retry_permanent(-EBADMSG);
  assert_true(p < 0);
  assert_true(weft_retry_is_permanent(p));
  assert_false(weft_retry_is_permanent(-EBADMSG));
  assert_false(weft_retry_is_permanent(0));
  assert_int_equal(weft_retry_unwrap(p), -EBADMSG);
  assert_int_equal(weft_retry_unwrap(-EIO), -EIO);
  assert_int_equal(weft_retry_permanent(0), 0);
  assert_int_equal(weft_retry_permanent(5), 5);
  assert_int_equal(weft_retry_permanent(weft_retry_permanent(-EIO)),
                   weft_retry_permanent(-EIO));
}

/* ---- weft_retry on a fake clock ---- */

#define MAXN 64

struct run {
  weft_fake_clock *fc;
  weft_backoff_options o;
  weft_ctx *ctx;
  int fail_times;        /* op fails this many times, then succeeds (-1: always) */
  int fail_err;          /* with this error */
  int permanent_at;      /* call number (1-based) that returns a permanent error; 0 none */
  int calls;             /* retrying coroutine only */
  int64_t call_at[MAXN]; /* clock at each call */
  int notify_err[MAXN];  /* written before the sleep that the driver then sees */
  int64_t notify_delay[MAXN];
  atomic_int nnotify;
  int rc;
  weft_retry_stats st;
  atomic_int finished;
};

static int op(weft_ctx *ctx, void *arg)
{
  struct run *r = arg;
  if (r->calls < MAXN)
    r->call_at[r->calls] = weft_clock_now(weft_fake_clock_clock(r->fc));
  r->calls++;
  if (r->permanent_at == r->calls)
    return weft_retry_permanent(-EBADMSG);
  if (r->fail_times < 0 || r->calls <= r->fail_times)
    return r->fail_err;
  return 0;
}

static void notify(int err, int64_t delay, void *arg)
{
  struct run *r = arg;
  int i = atomic_load(&r->nnotify);
  if (i < MAXN) {
    r->notify_err[i] = err;
    r->notify_delay[i] = delay;
  }
  atomic_store(&r->nnotify, i + 1);
}

static void retrier(void *arg)
{
  struct run *r = arg;
  r->rc = weft_retry(r->ctx, &r->o, op, r, notify, &r->st);
  atomic_store(&r->finished, 1);
}

/* Run weft_retry in a coroutine; whenever it sleeps, advance the fake clock by exactly the
 * delay it announced to notify. */
static void drive(struct run *r)
{
  r->o.clock = weft_fake_clock_clock(r->fc);
  weft_go(retrier, r);
  while (!atomic_load(&r->finished)) {
    if (weft_fake_clock_sleepers(r->fc) == 1) {
      int i = atomic_load(&r->nnotify) - 1;
      weft_fake_clock_advance(r->fc, r->notify_delay[i]);
    }
    weft_yield();
  }
}

static int eventual_success_main(void *arg)
{
  struct run r = {.fc = weft_fake_clock_new(0),
                  .o = exact(NULL),
                  .fail_times = 3,
                  .fail_err = -ECONNREFUSED};
  drive(&r);
  CHECK_EQ(r.rc, 0);
  CHECK_EQ(r.calls, 4);
  CHECK_EQ(r.st.attempts, 4);
  CHECK_EQ(r.st.last_err, 0);
  CHECK_EQ(r.st.total_delay, MS(500 + 750 + 1125));
  CHECK_EQ(atomic_load(&r.nnotify), 3);
  const int64_t delays[] = {MS(500), MS(750), MS(1125)};
  const int64_t at[] = {0, MS(500), MS(1250), MS(2375)};
  for (int i = 0; i < 3; i++) {
    CHECK_EQ(r.notify_err[i], -ECONNREFUSED);
    CHECK_EQ(r.notify_delay[i], delays[i]);
  }
  for (int i = 0; i < 4; i++)
    CHECK_EQ(r.call_at[i], at[i]);
  weft_fake_clock_free(r.fc);
  return 0;
}

static int first_try_main(void *arg)
{
  struct run r = {.fc = weft_fake_clock_new(0), .o = exact(NULL), .fail_times = 0};
  drive(&r);
  CHECK_EQ(r.rc, 0);
  CHECK_EQ(r.calls, 1);
  CHECK_EQ(atomic_load(&r.nnotify), 0);
  CHECK_EQ(r.st.total_delay, 0);
  weft_fake_clock_free(r.fc);
  return 0;
}

/* max_attempts 3: three calls, two notifies, the last error. */
static int max_attempts_main(void *arg)
{
  struct run r = {
      .fc = weft_fake_clock_new(0), .o = exact(NULL), .fail_times = -1, .fail_err = -EIO};
  r.o.max_attempts = 3;
  drive(&r);
  CHECK_EQ(r.rc, -EIO);
  CHECK_EQ(r.calls, 3);
  CHECK_EQ(atomic_load(&r.nnotify), 2);
  CHECK_EQ(r.st.last_err, -EIO);
  CHECK_EQ(weft_clock_now(weft_fake_clock_clock(r.fc)), MS(1250));
  weft_fake_clock_free(r.fc);
  return 0;
}

/* 1 s doubling, max elapsed 10 s: calls at 0, 1, 3, 7 s; 7 + 8 > 10 stops. */
static int max_elapsed_retry_main(void *arg)
{
  struct run r = {.fc = weft_fake_clock_new(MS(5)),
                  .o = exact(NULL),
                  .fail_times = -1,
                  .fail_err = -EAGAIN};
  r.o.initial_interval = MS(1000);
  r.o.multiplier = 2;
  r.o.max_elapsed_time = MS(10000);
  drive(&r);
  CHECK_EQ(r.rc, -EAGAIN);
  CHECK_EQ(r.calls, 4);
  CHECK_EQ(atomic_load(&r.nnotify), 3);
  const int64_t at[] = {0, MS(1000), MS(3000), MS(7000)};
  for (int i = 0; i < 4; i++)
    CHECK_EQ(r.call_at[i] - MS(5), at[i]);
  CHECK_EQ(r.st.total_delay, MS(7000));
  weft_fake_clock_free(r.fc);
  return 0;
}

/* A permanent error stops at once, unwrapped; no notify for it. */
static int permanent_main(void *arg)
{
  struct run r = {.fc = weft_fake_clock_new(0),
                  .o = exact(NULL),
                  .fail_times = -1,
                  .fail_err = -ECONNRESET,
                  .permanent_at = 3};
  drive(&r);
  CHECK_EQ(r.rc, -EBADMSG);
  CHECK_EQ(r.calls, 3);
  CHECK_EQ(atomic_load(&r.nnotify), 2);
  CHECK_EQ(r.st.last_err, -EBADMSG);
  /* permanent on the first call: no sleep at all */
  struct run r1 = {.fc = r.fc, .o = exact(NULL), .fail_times = -1, .permanent_at = 1};
  drive(&r1);
  CHECK_EQ(r1.rc, -EBADMSG);
  CHECK_EQ(r1.calls, 1);
  CHECK_EQ(atomic_load(&r1.nnotify), 0);
  weft_fake_clock_free(r.fc);
  return 0;
}

static void cancel_later(void *arg)
{
  struct run *r = arg;
  while (weft_fake_clock_sleepers(r->fc) < 1)
    weft_sleep(MS(1));
  weft_ctx_cancel(r->ctx);
}

/* ctx cancelled during a one-hour wait: returns -ECANCELED at once, op called once. */
static int cancel_main(void *arg)
{
  struct run r = {.fc = weft_fake_clock_new(0),
                  .o = exact(NULL),
                  .fail_times = -1,
                  .fail_err = -EIO,
                  .ctx = weft_ctx_with_cancel(NULL)};
  r.o.clock = weft_fake_clock_clock(r.fc);
  r.o.initial_interval = MS(3600 * 1000);
  r.o.max_interval = r.o.initial_interval;
  r.o.max_elapsed_time = 0;
  int64_t t0 = weft_now();
  weft_go(cancel_later, &r);
  retrier(&r);
  CHECK(weft_now() - t0 < MS(2000));
  CHECK_EQ(r.rc, -ECANCELED);
  CHECK_EQ(r.calls, 1);
  CHECK_EQ(atomic_load(&r.nnotify), 1);
  CHECK_EQ(weft_fake_clock_sleepers(r.fc), 0);
  /* ctx already done: op still runs once, then ctx's error, without notify */
  struct run r2 = {
      .fc = r.fc, .o = exact(NULL), .fail_times = -1, .fail_err = -EIO, .ctx = r.ctx};
  drive(&r2);
  CHECK_EQ(r2.rc, -ECANCELED);
  CHECK_EQ(r2.calls, 1);
  CHECK_EQ(atomic_load(&r2.nnotify), 0);
  /* success even though ctx is done: op's answer wins */
  struct run r3 = {.fc = r.fc, .o = exact(NULL), .ctx = r.ctx};
  drive(&r3);
  CHECK_EQ(r3.rc, 0);
  weft_ctx_release(r.ctx);
  weft_fake_clock_free(r.fc);
  return 0;
}

/* A context deadline on the real clock ends a real-clock wait with -ETIMEDOUT. */
static int deadline_main(void *arg)
{
  struct run r = {.fc = weft_fake_clock_new(0),
                  .o = exact(NULL),
                  .fail_times = -1,
                  .fail_err = -EIO,
                  .ctx = weft_ctx_with_timeout(NULL, MS(50))};
  r.o.clock = NULL; /* the real clock */
  r.o.initial_interval = MS(20);
  r.o.multiplier = 2;
  int64_t t0 = weft_now();
  retrier(&r);
  int64_t took = weft_now() - t0;
  CHECK_EQ(r.rc, -ETIMEDOUT);
  CHECK(took >= MS(50) && took < MS(1000));
  CHECK(r.calls >= 1 && r.calls <= 2); /* at 0 and 20 ms; the 40 ms wait is cut at 50 ms */
  weft_ctx_release(r.ctx);
  weft_fake_clock_free(r.fc);
  return 0;
}

/* Metrics by name: attempts, retries, results. */
static int metrics_main(void *arg)
{
  weft_metrics_registry *reg = weft_metrics_registry_new();
  struct run r = {
      .fc = weft_fake_clock_new(0), .o = exact(NULL), .fail_times = -1, .fail_err = -EIO};
  r.o.metrics = reg;
  r.o.name = "api";
  r.o.max_attempts = 3;
  drive(&r);
  struct run r2 = {.fc = r.fc, .o = r.o, .fail_times = 1, .fail_err = -EIO};
  drive(&r2);
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  CHECK_EQ(weft_metrics_write_prometheus(reg, f), 0);
  fclose(f);
  CHECK(strstr(text, "weft_retry_attempts_total{name=\"api\"} 5\n") != NULL);
  CHECK(strstr(text, "weft_retry_retries_total{name=\"api\"} 3\n") != NULL);
  CHECK(strstr(text, "weft_retry_calls_total{name=\"api\",result=\"exhausted\"} 1\n") != NULL);
  CHECK(strstr(text, "weft_retry_calls_total{name=\"api\",result=\"ok\"} 1\n") != NULL);
  free(text);
  weft_metrics_registry_free(reg);
  weft_fake_clock_free(r.fc);
  return 0;
}

#define RUN_TEST(name, procs)                          \
  static void test_##name(void **state)                \
  {                                                    \
    checks_reset();                                    \
    if (procs)                                         \
      CHECK_EQ(run_weft(procs, name##_main, NULL), 0); \
    else                                               \
      run_weft_p1to4(name##_main, NULL);               \
    ASSERT_NO_CHECK_FAILED();                          \
  }

RUN_TEST(eventual_success, 0)
RUN_TEST(first_try, 0)
RUN_TEST(max_attempts, 0)
RUN_TEST(max_elapsed_retry, 0)
RUN_TEST(permanent, 0)
RUN_TEST(cancel, 0)
RUN_TEST(deadline, 2)
RUN_TEST(metrics, 2)

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults),         cmocka_unit_test(test_sequence_exact),
      cmocka_unit_test(test_sequence_seeded),  cmocka_unit_test(test_full_jitter),
      cmocka_unit_test(test_max_elapsed),      cmocka_unit_test(test_max_attempts_backoff),
      cmocka_unit_test(test_invalid),          cmocka_unit_test(test_permanent_flag),
      cmocka_unit_test(test_eventual_success), cmocka_unit_test(test_first_try),
      cmocka_unit_test(test_max_attempts),     cmocka_unit_test(test_max_elapsed_retry),
      cmocka_unit_test(test_permanent),        cmocka_unit_test(test_cancel),
      cmocka_unit_test(test_deadline),         cmocka_unit_test(test_metrics),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
