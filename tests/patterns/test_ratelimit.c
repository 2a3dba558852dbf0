/* test_ratelimit.c: the token bucket (weft/ratelimit.h), on a fake clock, plus a real-clock
 * check that concurrent waiters never beat the rate. */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coro_check.h"
#include "weft/weft.h"
#include "weft_test.h"

#define T0 MS(1000) /* fake clocks start here */

static int near(double a, double b)
{
  return fabs(a - b) < 1e-9;
}

/* ---- no runtime needed: allow, reserve, settings ---- */

/* The bucket starts full, empties, and refills at exactly limit per second up to burst. */
static void test_burst_then_refill(void **state)
{
  weft_fake_clock *fc = weft_fake_clock_new(T0);
  weft_limiter *l = weft_limiter_new(10, 5, weft_fake_clock_clock(fc));
  assert_non_null(l);
  assert_true(near(weft_limiter_tokens(l), 5));
  for (int i = 0; i < 5; i++)
    assert_true(weft_limiter_allow(l));
  assert_false(weft_limiter_allow(l));
  assert_true(near(weft_limiter_tokens(l), 0));
  weft_fake_clock_advance(fc, MS(99));
  assert_false(weft_limiter_allow(l)); /* 0.99 of a token */
  weft_fake_clock_advance(fc, MS(1));
  assert_true(weft_limiter_allow(l)); /* exactly 100 ms per token */
  assert_false(weft_limiter_allow(l));
  weft_fake_clock_advance(fc, MS(250));
  assert_true(near(weft_limiter_tokens(l), 2.5));
  assert_true(weft_limiter_allow_n(l, 2));
  assert_false(weft_limiter_allow_n(l, 1));
  weft_fake_clock_advance(fc, MS(60000)); /* a minute: capped at burst, not 600 */
  assert_true(near(weft_limiter_tokens(l), 5));
  assert_false(weft_limiter_allow_n(l, 6)); /* more than burst: never */
  assert_true(near(weft_limiter_tokens(l), 5));
  assert_true(weft_limiter_allow_n(l, 5));
  assert_false(weft_limiter_allow_n(l, -1));
  assert_false(weft_limiter_allow(NULL));
  weft_limiter_release(l);
  weft_fake_clock_free(fc);
}

/* In debt, reservations queue in call order, each 1/limit after the last. */
static void test_reserve_order(void **state)
{
  weft_fake_clock *fc = weft_fake_clock_new(T0);
  weft_limiter *l = weft_limiter_new(10, 1, weft_fake_clock_clock(fc));
  weft_reservation r[4];
  assert_true(weft_limiter_allow(l));
  for (int i = 0; i < 4; i++) {
    assert_int_equal(weft_limiter_reserve(l, &r[i]), 0);
    assert_true(weft_reservation_ok(&r[i]));
    assert_int_equal(weft_reservation_delay(&r[i]), MS(100) * (i + 1));
  }
  assert_true(near(weft_limiter_tokens(l), -4));
  assert_false(weft_limiter_allow_n(l, 0)); /* in debt */
  weft_fake_clock_advance(fc, MS(150));
  assert_int_equal(weft_reservation_delay(&r[0]), 0);
  assert_int_equal(weft_reservation_delay(&r[1]), MS(50));
  assert_int_equal(weft_reservation_delay_from(&r[3], T0), MS(400));
  /* more than burst: refused, nothing reserved */
  weft_reservation big;
  assert_int_equal(weft_limiter_reserve_n(l, 2, &big), -EINVAL);
  assert_false(weft_reservation_ok(&big));
  assert_int_equal(weft_reservation_delay(&big), INT64_MAX);
  assert_true(near(weft_limiter_tokens(l), -2.5));
  assert_int_equal(weft_limiter_reserve_n(l, 1, NULL), -EINVAL);
  weft_limiter_release(l);
  weft_fake_clock_free(fc);
}

/* Cancelling gives back what no later reservation depends on (x/time/rate's CancelAt). */
static void test_reserve_cancel(void **state)
{
  weft_fake_clock *fc = weft_fake_clock_new(T0);
  weft_limiter *l = weft_limiter_new(10, 3, weft_fake_clock_clock(fc));
  weft_reservation a, b, c, d;
  /* due at once, cancelled at once: all three tokens come back */
  assert_int_equal(weft_limiter_reserve_n(l, 3, &a), 0);
  assert_int_equal(weft_reservation_delay(&a), 0);
  weft_reservation_cancel(&a);
  assert_true(near(weft_limiter_tokens(l), 3));
  weft_reservation_cancel(&a); /* twice: nothing more */
  assert_true(near(weft_limiter_tokens(l), 3));
  /* b at 0, c at 100 ms, d at 200 ms */
  assert_int_equal(weft_limiter_reserve_n(l, 3, &b), 0);
  assert_int_equal(weft_limiter_reserve(l, &c), 0);
  assert_int_equal(weft_limiter_reserve(l, &d), 0);
  assert_int_equal(weft_reservation_delay(&c), MS(100));
  assert_int_equal(weft_reservation_delay(&d), MS(200));
  assert_true(near(weft_limiter_tokens(l), -2));
  /* c has d after it: its token is d's to use, nothing comes back */
  weft_reservation_cancel(&c);
  assert_true(near(weft_limiter_tokens(l), -2));
  /* d is the last: its token comes back and the next reservation takes its slot */
  weft_reservation_cancel(&d);
  assert_true(near(weft_limiter_tokens(l), -1));
  weft_reservation e;
  assert_int_equal(weft_limiter_reserve(l, &e), 0);
  assert_int_equal(weft_reservation_delay(&e), MS(200));
  /* a reservation already past its time gives nothing back */
  weft_fake_clock_advance(fc, MS(300));
  weft_reservation_cancel(&e);
  weft_reservation_cancel(&b);
  assert_true(near(weft_limiter_tokens(l), 1));
  weft_limiter_release(l);
  weft_fake_clock_free(fc);
}

static void test_inf(void **state)
{
  weft_fake_clock *fc = weft_fake_clock_new(T0);
  weft_limiter *l = weft_limiter_new(WEFT_RATE_INF, 0, weft_fake_clock_clock(fc));
  for (int i = 0; i < 1000; i++)
    assert_true(weft_limiter_allow_n(l, 1000));
  weft_reservation r;
  assert_int_equal(weft_limiter_reserve_n(l, 1 << 20, &r), 0);
  assert_int_equal(weft_reservation_delay(&r), 0);
  weft_reservation_cancel(&r);
  assert_true(isinf(weft_limiter_limit(l)));
  /* from Inf to a finite limit: the bucket is full (burst) */
  assert_int_equal(weft_limiter_set_burst(l, 2), 0);
  assert_int_equal(weft_limiter_set_limit(l, 1), 0);
  assert_true(weft_limiter_allow_n(l, 2));
  assert_false(weft_limiter_allow(l));
  assert_true(near(weft_rate_every(MS(250)), 4));
  assert_true(isinf(weft_rate_every(0)));
  weft_limiter_release(l);
  weft_fake_clock_free(fc);
}

/* A zero limit admits the bucket's tokens, then nothing, ever. */
static void test_zero_limit(void **state)
{
  weft_fake_clock *fc = weft_fake_clock_new(T0);
  weft_limiter *l = weft_limiter_new(0, 2, weft_fake_clock_clock(fc));
  assert_true(weft_limiter_allow(l));
  assert_true(weft_limiter_allow(l));
  weft_fake_clock_advance(fc, MS(3600 * 1000));
  assert_false(weft_limiter_allow(l));
  weft_reservation r;
  assert_int_equal(weft_limiter_reserve(l, &r), -EAGAIN);
  assert_false(weft_reservation_ok(&r));
  assert_int_equal(weft_limiter_wait(l, NULL), -EAGAIN); /* fails at once, no park */
  weft_limiter_release(l);
  weft_fake_clock_free(fc);
}

/* set_limit keeps the tokens accrued at the old rate; set_burst caps the bucket. */
static void test_set_limit_burst(void **state)
{
  weft_fake_clock *fc = weft_fake_clock_new(T0);
  weft_limiter *l = weft_limiter_new(10, 1, weft_fake_clock_clock(fc));
  assert_true(weft_limiter_allow(l));
  weft_fake_clock_advance(fc, MS(50));
  assert_int_equal(weft_limiter_set_limit(l, 1), 0); /* 0.5 token kept */
  assert_true(weft_limiter_limit(l) == 1);
  weft_fake_clock_advance(fc, MS(499));
  assert_false(weft_limiter_allow(l));
  weft_fake_clock_advance(fc, MS(1));
  assert_true(weft_limiter_allow(l));
  assert_int_equal(weft_limiter_set_burst(l, 3), 0);
  assert_int_equal(weft_limiter_burst(l), 3);
  weft_fake_clock_advance(fc, MS(10000));
  assert_true(near(weft_limiter_tokens(l), 3));
  assert_int_equal(weft_limiter_set_burst(l, 1), 0);
  assert_true(near(weft_limiter_tokens(l), 1));
  assert_int_equal(weft_limiter_set_limit(l, -1), -EINVAL);
  assert_int_equal(weft_limiter_set_limit(l, NAN), -EINVAL);
  assert_int_equal(weft_limiter_set_burst(l, -1), -EINVAL);
  weft_limiter_release(l);
  weft_fake_clock_free(fc);
}

static void test_invalid(void **state)
{
  assert_null(weft_limiter_new(-1, 1, NULL));
  assert_null(weft_limiter_new(NAN, 1, NULL));
  assert_null(weft_limiter_new(1, -1, NULL));
  weft_limiter *l = NULL;
  weft_limiter_options o = {.limit = 1, .burst = 1, .metrics = weft_metrics_default()};
  assert_int_equal(weft_limiter_new_with(&o, &l), -EINVAL); /* metrics without a name */
  assert_int_equal(weft_limiter_new_with(NULL, &l), -EINVAL);
  assert_null(l);
  weft_limiter_release(NULL);
  l = weft_limiter_new(1, 1, NULL); /* the real clock */
  assert_ptr_equal(weft_limiter_retain(l), l);
  weft_limiter_release(l);
  assert_true(weft_limiter_allow(l));
  weft_limiter_release(l);
}

/* ---- wait ---- */

struct waiter {
  weft_limiter *l;
  weft_clock *clock;
  weft_ctx *ctx;
  int n;
  int rc;
  int64_t at; /* clock when wait returned */
  weft_wg done;
};

static void waiter(void *arg)
{
  struct waiter *w = arg;
  w->rc = weft_limiter_wait_n(w->l, w->ctx, w->n);
  w->at = weft_clock_now(w->clock);
  weft_wg_done(&w->done);
}

static void start_waiter(struct waiter *w)
{
  weft_wg_init(&w->done);
  weft_wg_add(&w->done, 1);
  weft_go(waiter, w);
}

static void wait_sleepers(weft_fake_clock *fc, int n)
{
  for (int i = 0; i < 5000 && weft_fake_clock_sleepers(fc) < n; i++)
    weft_sleep(MS(1));
  CHECK_EQ(weft_fake_clock_sleepers(fc), n);
}

/* Waiters sleep exactly until their turn, in call order. */
static int wait_main(void *arg)
{
  weft_fake_clock *fc = weft_fake_clock_new(T0);
  weft_clock *c = weft_fake_clock_clock(fc);
  weft_limiter *l = weft_limiter_new(10, 2, c);
  CHECK_EQ(weft_limiter_wait_n(l, NULL, 2), 0); /* the burst: no wait */
  CHECK_EQ(weft_clock_now(c), T0);
  struct waiter w[3];
  for (int i = 0; i < 3; i++) {
    w[i] = (struct waiter){.l = l, .clock = c, .n = 1};
    start_waiter(&w[i]);
    wait_sleepers(fc, i + 1); /* one at a time: call order is known */
  }
  weft_fake_clock_advance(fc, MS(99));
  weft_sleep(MS(5));
  CHECK_EQ(weft_fake_clock_sleepers(fc), 3);
  weft_fake_clock_advance(fc, MS(1));
  weft_wg_wait(&w[0].done);
  CHECK_EQ(w[0].rc, 0);
  CHECK_EQ(w[0].at, T0 + MS(100));
  CHECK_EQ(weft_fake_clock_sleepers(fc), 2);
  weft_fake_clock_advance(fc, MS(200));
  for (int i = 1; i < 3; i++) {
    weft_wg_wait(&w[i].done);
    CHECK_EQ(w[i].rc, 0);
  }
  CHECK(near(weft_limiter_tokens(l), 0));
  weft_limiter_release(l);
  weft_fake_clock_free(fc);
  return 0;
}

/* wait_n's immediate failures: n > burst, ctx done, deadline too close; none takes tokens. */
static int wait_fail_main(void *arg)
{
  weft_fake_clock *fc = weft_fake_clock_new(T0);
  weft_clock *c = weft_fake_clock_clock(fc);
  weft_limiter *l = weft_limiter_new(10, 2, c);
  CHECK_EQ(weft_limiter_wait_n(l, NULL, 3), -EINVAL);
  CHECK_EQ(weft_limiter_wait_n(l, NULL, -1), -EINVAL);
  CHECK_EQ(weft_limiter_wait_n(NULL, NULL, 1), -EINVAL);
  weft_ctx *done = weft_ctx_with_cancel(NULL);
  weft_ctx_cancel(done);
  CHECK_EQ(weft_limiter_wait(l, done), -ECANCELED);
  CHECK(near(weft_limiter_tokens(l), 2));
  CHECK(weft_limiter_allow_n(l, 2));
  /* the next token is 100 ms away; the deadline 50 ms (real time) */
  weft_ctx *soon = weft_ctx_with_timeout(NULL, MS(50));
  int64_t t0 = weft_now();
  CHECK_EQ(weft_limiter_wait(l, soon), -ETIMEDOUT);
  CHECK(weft_now() - t0 < MS(40)); /* at once, not at the deadline */
  CHECK(near(weft_limiter_tokens(l), 0));
  CHECK_EQ(weft_fake_clock_sleepers(fc), 0);
  /* a deadline far enough: waits on the fake clock */
  weft_ctx *later = weft_ctx_with_timeout(NULL, MS(60000));
  struct waiter w = {.l = l, .clock = c, .ctx = later, .n = 1};
  start_waiter(&w);
  wait_sleepers(fc, 1);
  weft_fake_clock_advance(fc, MS(100));
  weft_wg_wait(&w.done);
  CHECK_EQ(w.rc, 0);
  CHECK_EQ(w.at, T0 + MS(100));
  weft_ctx_release(done);
  weft_ctx_release(soon);
  weft_ctx_release(later);
  weft_limiter_release(l);
  weft_fake_clock_free(fc);
  return 0;
}

/* A wait cut short by its context returns promptly and gives its tokens back. */
static int wait_cancel_main(void *arg)
{
  weft_fake_clock *fc = weft_fake_clock_new(T0);
  weft_clock *c = weft_fake_clock_clock(fc);
  weft_limiter *l = weft_limiter_new(10, 1, c);
  CHECK(weft_limiter_allow(l));
  struct waiter w = {.l = l, .clock = c, .ctx = weft_ctx_with_cancel(NULL), .n = 1};
  start_waiter(&w);
  wait_sleepers(fc, 1);
  CHECK(near(weft_limiter_tokens(l), -1));
  weft_ctx_cancel(w.ctx);
  weft_wg_wait(&w.done);
  CHECK_EQ(w.rc, -ECANCELED);
  CHECK_EQ(w.at, T0);                     /* no fake time passed */
  CHECK(near(weft_limiter_tokens(l), 0)); /* its token is back */
  weft_fake_clock_advance(fc, MS(100));
  CHECK(weft_limiter_allow(l)); /* so the next one is due at 100 ms, not 200 */
  weft_ctx_release(w.ctx);
  weft_limiter_release(l);
  weft_fake_clock_free(fc);
  return 0;
}

static int inf_wait_main(void *arg)
{
  weft_limiter *l = weft_limiter_new(WEFT_RATE_INF, 1, NULL);
  for (int i = 0; i < 100; i++)
    CHECK_EQ(weft_limiter_wait_n(l, NULL, 50), 0); /* n > burst is fine at Inf */
  weft_limiter_release(l);
  return 0;
}

/* Metrics by name. */
static int metrics_main(void *arg)
{
  weft_metrics_registry *reg = weft_metrics_registry_new();
  weft_fake_clock *fc = weft_fake_clock_new(T0);
  weft_clock *c = weft_fake_clock_clock(fc);
  weft_limiter *l = NULL;
  weft_limiter_options o = {.limit = 10, .burst = 1, .clock = c, .metrics = reg, .name = "api"};
  CHECK_EQ(weft_limiter_new_with(&o, &l), 0);
  CHECK(weft_limiter_allow(l));
  CHECK(!weft_limiter_allow(l));
  struct waiter w = {.l = l, .clock = c, .n = 1};
  start_waiter(&w);
  wait_sleepers(fc, 1);
  weft_fake_clock_advance(fc, MS(100));
  weft_wg_wait(&w.done);
  CHECK_EQ(w.rc, 0);
  CHECK_EQ(weft_limiter_wait_n(l, NULL, 2), -EINVAL);
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  CHECK_EQ(weft_metrics_write_prometheus(reg, f), 0);
  fclose(f);
  CHECK(strstr(text, "weft_ratelimit_allowed_total{name=\"api\"} 2\n") != NULL);
  CHECK(strstr(text, "weft_ratelimit_rejected_total{name=\"api\"} 2\n") != NULL);
  CHECK(strstr(text, "weft_ratelimit_waited_total{name=\"api\"} 1\n") != NULL);
  CHECK(strstr(text, "weft_ratelimit_wait_seconds_sum{name=\"api\"} 0.1\n") != NULL);
  CHECK(strstr(text, "weft_ratelimit_wait_seconds_count{name=\"api\"} 1\n") != NULL);
  CHECK(strstr(text, "weft_ratelimit_limit{name=\"api\"} 10\n") != NULL);
  free(text);
  weft_limiter_release(l);
  weft_metrics_registry_free(reg);
  weft_fake_clock_free(fc);
  return 0;
}

/* ---- the real clock, P = 4: N waiters never beat rate·t + burst ---- */

enum { NWAITERS = 16, RATE = 400, BURST = 10, MAXEV = 4096 };

struct real_run {
  weft_limiter *l;
  weft_ctx *ctx;
  int64_t start;
  _Atomic int64_t *at; /* MAXEV event times, relative to start */
  atomic_int nev;
  weft_wg done;
};

static void real_waiter(void *arg)
{
  struct real_run *r = arg;
  while (weft_limiter_wait(r->l, r->ctx) == 0) {
    int i = atomic_fetch_add(&r->nev, 1);
    if (i < MAXEV)
      atomic_store(&r->at[i], weft_now() - r->start);
  }
  weft_wg_done(&r->done);
}

static int cmp64(const void *a, const void *b)
{
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

static int real_main(void *arg)
{
  struct real_run r = {.at = calloc(MAXEV, sizeof(int64_t))};
  r.start = weft_now();
  r.l = weft_limiter_new(RATE, BURST, NULL);
  r.ctx = weft_ctx_with_timeout(NULL, MS(300));
  weft_wg_init(&r.done);
  weft_wg_add(&r.done, NWAITERS);
  for (int i = 0; i < NWAITERS; i++)
    weft_go(real_waiter, &r);
  weft_wg_wait(&r.done);
  int n = atomic_load(&r.nev);
  CHECK(n <= MAXEV);
  int64_t *at = malloc(sizeof(int64_t) * (size_t)n);
  for (int i = 0; i < n; i++)
    at[i] = atomic_load(&r.at[i]);
  qsort(at, (size_t)n, sizeof *at, cmp64);
  int worst = 0; /* the most events seen by time t beyond burst + rate·t */
  for (int i = 0; i < n; i++) {
    double allowed = BURST + RATE * (double)at[i] / 1e9;
    if (i + 1 > allowed + 1e-6 && i + 1 - (int)allowed > worst)
      worst = i + 1 - (int)allowed;
  }
  CHECK_EQ(worst, 0);
  double ideal = BURST + RATE * 0.3;
  printf("real clock: %d events in 300 ms at %d/s burst %d (bound %.0f)\n", n, RATE, BURST,
         ideal);
  CHECK(n <= (int)ideal + 1);
  CHECK(n >= (SANITIZED ? 20 : 60)); /* it does admit events */
  free(at);
  free((void *)r.at);
  weft_ctx_release(r.ctx);
  weft_limiter_release(r.l);
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

RUN_TEST(wait, 0)
RUN_TEST(wait_fail, 0)
RUN_TEST(wait_cancel, 0)
RUN_TEST(inf_wait, 2)
RUN_TEST(metrics, 2)
RUN_TEST(real, 4)

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_burst_then_refill),
      cmocka_unit_test(test_reserve_order),
      cmocka_unit_test(test_reserve_cancel),
      cmocka_unit_test(test_inf),
      cmocka_unit_test(test_zero_limit),
      cmocka_unit_test(test_set_limit_burst),
      cmocka_unit_test(test_invalid),
      cmocka_unit_test(test_wait),
      cmocka_unit_test(test_wait_fail),
      cmocka_unit_test(test_wait_cancel),
      cmocka_unit_test(test_inf_wait),
      cmocka_unit_test(test_metrics),
      cmocka_unit_test(test_real),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
