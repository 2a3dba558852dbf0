/* test_breaker.c: circuit breakers (weft/breaker.h), every transition on a fake clock.
 *
 * The single-threaded scenarios need no runtime (a breaker never parks); they run on the
 * test thread with cmocka's assertions. The concurrent ones run coroutines on P = 4. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coro_check.h"
#include "weft/breaker.h"
#include "weft_test.h"

#define SEC(n) ((int64_t)(n)*1000000000)
#define T0     SEC(1000)

/* ---- helpers ---- */

struct hook_log {
  int n;
  char names[16][32];
  weft_breaker_state from[16], to[16];
};

static void log_change(const char *name, weft_breaker_state from, weft_breaker_state to,
                       void *arg)
{
  struct hook_log *l = arg;
  if (l->n < 16) {
    snprintf(l->names[l->n], sizeof l->names[0], "%s", name);
    l->from[l->n] = from;
    l->to[l->n] = to;
  }
  l->n++;
}

struct fixture {
  weft_fake_clock *fc;
  weft_breaker *b;
  struct hook_log log;
};

/* A breaker on a fake clock at T0 with o's options plus the hook (arg: the log). */
static void fx_init(struct fixture *f, weft_breaker_options o)
{
  memset(f, 0, sizeof *f);
  f->fc = weft_fake_clock_new(T0);
  o.clock = weft_fake_clock_clock(f->fc);
  if (!o.on_state_change)
    o.on_state_change = log_change;
  if (!o.arg)
    o.arg = &f->log;
  if (!o.name)
    o.name = "api";
  f->b = weft_breaker_new(&o);
  assert_non_null(f->b);
}

static void fx_free(struct fixture *f)
{
  weft_breaker_release(f->b);
  weft_fake_clock_free(f->fc);
}

/* One whole call reporting err; returns allow's result. */
static int call(weft_breaker *b, int err)
{
  weft_breaker_ticket t;
  int rc = weft_breaker_allow(b, &t);
  if (rc == 0)
    weft_breaker_done(b, &t, err);
  return rc;
}

static void advance(struct fixture *f, int64_t ns)
{
  weft_fake_clock_advance(f->fc, ns);
}

#define assert_state(b, s) assert_int_equal(weft_breaker_state_get(b), (s))

/* ---- gobreaker's semantics ---- */

static void test_defaults_trip_after_six(void **state)
{
  struct fixture f;
  fx_init(&f, (weft_breaker_options){0});
  for (int i = 0; i < 5; i++)
    assert_int_equal(call(f.b, -EIO), 0);
  assert_state(f.b, WEFT_BREAKER_CLOSED);
  weft_breaker_counts c = weft_breaker_counts_get(f.b);
  assert_int_equal(c.requests, 5);
  assert_int_equal(c.total_failures, 5);
  assert_int_equal(c.consecutive_failures, 5);
  assert_int_equal(f.log.n, 0);
  assert_int_equal(call(f.b, -EIO), 0); /* the 6th: consecutive failures > 5 */
  assert_state(f.b, WEFT_BREAKER_OPEN);
  assert_int_equal(f.log.n, 1);
  assert_int_equal(f.log.from[0], WEFT_BREAKER_CLOSED);
  assert_int_equal(f.log.to[0], WEFT_BREAKER_OPEN);
  assert_string_equal(f.log.names[0], "api");
  c = weft_breaker_counts_get(f.b); /* a new generation: cleared */
  assert_int_equal(c.requests, 0);
  assert_int_equal(c.total_failures, 0);
  fx_free(&f);
}

static void test_success_resets_consecutive(void **state)
{
  struct fixture f;
  fx_init(&f, (weft_breaker_options){0});
  for (int round = 0; round < 4; round++) {
    for (int i = 0; i < 5; i++)
      assert_int_equal(call(f.b, -EIO), 0);
    assert_int_equal(call(f.b, 0), 0);
  }
  assert_state(f.b, WEFT_BREAKER_CLOSED);
  weft_breaker_counts c = weft_breaker_counts_get(f.b);
  assert_int_equal(c.requests, 24);
  assert_int_equal(c.total_failures, 20);
  assert_int_equal(c.total_successes, 4);
  assert_int_equal(c.consecutive_failures, 0);
  assert_int_equal(c.consecutive_successes, 1);
  assert_int_equal(call(f.b, 0), 0);
  assert_int_equal(weft_breaker_counts_get(f.b).consecutive_successes, 2);
  assert_int_equal(f.log.n, 0);
  fx_free(&f);
}

static void test_interval_clears_counts(void **state)
{
  struct fixture f;
  fx_init(&f, (weft_breaker_options){.interval = SEC(10)});
  for (int i = 0; i < 5; i++)
    assert_int_equal(call(f.b, -EIO), 0);
  weft_breaker_ticket late;
  assert_int_equal(weft_breaker_allow(f.b, &late), 0);
  advance(&f, SEC(10) - 1); /* not yet */
  assert_int_equal(weft_breaker_counts_get(f.b).consecutive_failures, 5);
  advance(&f, 1); /* the interval ends: a new generation, no state change */
  weft_breaker_counts c = weft_breaker_counts_get(f.b);
  assert_int_equal(c.requests, 0);
  assert_int_equal(c.consecutive_failures, 0);
  weft_breaker_done(f.b, &late, -EIO); /* from the old generation: dropped */
  assert_int_equal(weft_breaker_counts_get(f.b).total_failures, 0);
  for (int i = 0; i < 5; i++) /* 5 more: had the counts survived, this would trip */
    assert_int_equal(call(f.b, -EIO), 0);
  assert_state(f.b, WEFT_BREAKER_CLOSED);
  assert_int_equal(f.log.n, 0);
  /* The next interval runs from the expiry's observation (T0 + 10 s) for 10 s. */
  advance(&f, SEC(10));
  assert_int_equal(weft_breaker_counts_get(f.b).requests, 0);
  fx_free(&f);
}

static void test_no_interval_keeps_counts(void **state)
{
  struct fixture f;
  fx_init(&f, (weft_breaker_options){.interval = -5});
  for (int i = 0; i < 5; i++)
    assert_int_equal(call(f.b, -EIO), 0);
  advance(&f, SEC(1000000));
  assert_int_equal(weft_breaker_counts_get(f.b).consecutive_failures, 5);
  assert_int_equal(call(f.b, -EIO), 0);
  assert_state(f.b, WEFT_BREAKER_OPEN);
  fx_free(&f);
}

static void trip(struct fixture *f)
{
  while (weft_breaker_state_get(f->b) == WEFT_BREAKER_CLOSED)
    assert_int_equal(call(f->b, -EIO), 0);
}

static void test_open_rejects_until_timeout(void **state)
{
  struct fixture f;
  fx_init(&f, (weft_breaker_options){.timeout = SEC(5)});
  trip(&f);
  assert_int_equal(f.log.n, 1);
  weft_breaker_ticket t = {0};
  for (int i = 0; i < 3; i++)
    assert_int_equal(weft_breaker_allow(f.b, &t), -WEFT_EOPEN);
  assert_int_equal(weft_breaker_execute(f.b, NULL, NULL), -EINVAL);
  advance(&f, SEC(5) - 1);
  assert_int_equal(call(f.b, 0), -WEFT_EOPEN);
  assert_int_equal(weft_breaker_counts_get(f.b).requests, 0); /* rejections aren't requests */
  assert_int_equal(f.log.n, 1);
  advance(&f, SEC(100)); /* long past: still nothing happens until someone looks */
  assert_int_equal(f.log.n, 1);
  assert_int_equal(weft_breaker_allow(f.b, &t), 0); /* lazily half-open, and admitted */
  assert_int_equal(f.log.n, 2);
  assert_int_equal(f.log.from[1], WEFT_BREAKER_OPEN);
  assert_int_equal(f.log.to[1], WEFT_BREAKER_HALF_OPEN);
  assert_state(f.b, WEFT_BREAKER_HALF_OPEN);
  weft_breaker_done(f.b, &t, 0);
  assert_state(f.b, WEFT_BREAKER_CLOSED); /* max_requests 0 -> 1 success closes */
  fx_free(&f);
}

static void test_default_timeout_60s(void **state)
{
  struct fixture f;
  fx_init(&f, (weft_breaker_options){.timeout = -1});
  trip(&f);
  advance(&f, SEC(60) - 1);
  assert_state(f.b, WEFT_BREAKER_OPEN);
  advance(&f, 1);
  assert_state(f.b, WEFT_BREAKER_HALF_OPEN); /* the getter applies the lazy change too */
  assert_int_equal(f.log.n, 2);
  fx_free(&f);
}

static void test_half_open_quota_and_close(void **state)
{
  struct fixture f;
  fx_init(&f, (weft_breaker_options){.max_requests = 3, .timeout = SEC(1)});
  trip(&f);
  advance(&f, SEC(1));
  weft_breaker_ticket t[4];
  for (int i = 0; i < 3; i++)
    assert_int_equal(weft_breaker_allow(f.b, &t[i]), 0);
  assert_int_equal(weft_breaker_allow(f.b, &t[3]), -WEFT_ETOOMANY);
  assert_string_equal(weft_strerror(-WEFT_ETOOMANY), "too many requests");
  weft_breaker_done(f.b, &t[0], 0);
  weft_breaker_done(f.b, &t[1], 0);
  assert_state(f.b, WEFT_BREAKER_HALF_OPEN);                        /* 2 of 3 */
  assert_int_equal(weft_breaker_allow(f.b, &t[3]), -WEFT_ETOOMANY); /* reported: no slot */
  weft_breaker_done(f.b, &t[2], 0);
  assert_state(f.b, WEFT_BREAKER_CLOSED);
  assert_int_equal(f.log.n, 3);
  assert_int_equal(f.log.to[2], WEFT_BREAKER_CLOSED);
  assert_int_equal(weft_breaker_counts_get(f.b).requests, 0);
  fx_free(&f);
}

static void test_half_open_failure_reopens(void **state)
{
  struct fixture f;
  fx_init(&f, (weft_breaker_options){.max_requests = 3, .timeout = SEC(1)});
  trip(&f);
  advance(&f, SEC(1));
  weft_breaker_ticket a, b;
  assert_int_equal(weft_breaker_allow(f.b, &a), 0);
  assert_int_equal(weft_breaker_allow(f.b, &b), 0);
  weft_breaker_done(f.b, &a, 0);
  advance(&f, SEC(0) + 500);
  weft_breaker_done(f.b, &b, -EIO); /* any failure reopens */
  assert_int_equal(f.log.n, 3);
  assert_int_equal(f.log.from[2], WEFT_BREAKER_HALF_OPEN);
  assert_int_equal(f.log.to[2], WEFT_BREAKER_OPEN);
  advance(&f, SEC(1) - 1); /* the timeout restarts when it reopens */
  assert_int_equal(call(f.b, 0), -WEFT_EOPEN);
  advance(&f, 1);
  assert_int_equal(call(f.b, 0), 0);
  fx_free(&f);
}

static void test_old_generation_dropped(void **state)
{
  struct fixture f;
  fx_init(&f, (weft_breaker_options){.max_requests = 2, .timeout = SEC(1)});
  weft_breaker_ticket slow_ok, slow_fail;
  assert_int_equal(weft_breaker_allow(f.b, &slow_ok), 0);   /* allowed while closed */
  assert_int_equal(weft_breaker_allow(f.b, &slow_fail), 0); /* likewise */
  trip(&f);
  weft_breaker_done(f.b, &slow_ok, 0); /* reports while open: dropped */
  weft_breaker_counts c = weft_breaker_counts_get(f.b);
  assert_int_equal(c.total_successes, 0);
  assert_int_equal(c.requests, 0);
  advance(&f, SEC(1));
  weft_breaker_ticket probe;
  assert_int_equal(weft_breaker_allow(f.b, &probe), 0);
  weft_breaker_done(f.b, &slow_fail, -EIO); /* a closed-era failure can't reopen half-open */
  assert_state(f.b, WEFT_BREAKER_HALF_OPEN);
  c = weft_breaker_counts_get(f.b);
  assert_int_equal(c.total_failures, 0);
  assert_int_equal(c.requests, 1);
  /* A half-open probe reporting after the breaker reopened is dropped as well. */
  weft_breaker_ticket probe2;
  assert_int_equal(weft_breaker_allow(f.b, &probe2), 0);
  weft_breaker_done(f.b, &probe, -EIO); /* reopens */
  assert_state(f.b, WEFT_BREAKER_OPEN);
  int before = f.log.n;
  weft_breaker_done(f.b, &probe2, 0);
  assert_state(f.b, WEFT_BREAKER_OPEN);
  assert_int_equal(f.log.n, before);
  fx_free(&f);
}

static bool excl_cancel(int err, void *arg)
{
  return err == -ECANCELED;
}

static void test_exclusions(void **state)
{
  struct fixture f;
  fx_init(&f, (weft_breaker_options){.is_excluded = excl_cancel, .timeout = SEC(1)});
  for (int i = 0; i < 5; i++)
    assert_int_equal(call(f.b, -EIO), 0);
  for (int i = 0; i < 10; i++)
    assert_int_equal(call(f.b, -ECANCELED), 0);
  weft_breaker_counts c = weft_breaker_counts_get(f.b);
  assert_int_equal(c.requests, 15);
  assert_int_equal(c.total_exclusions, 10);
  assert_int_equal(c.total_failures, 5);
  assert_int_equal(c.total_successes, 0);
  assert_int_equal(c.consecutive_failures, 5); /* neither reset nor grown */
  assert_int_equal(c.consecutive_successes, 0);
  assert_int_equal(call(f.b, -EIO), 0);
  assert_state(f.b, WEFT_BREAKER_OPEN);
  /* Half-open: an excluded probe frees its slot and decides nothing. */
  advance(&f, SEC(1));
  weft_breaker_ticket t, u;
  assert_int_equal(weft_breaker_allow(f.b, &t), 0);
  assert_int_equal(weft_breaker_allow(f.b, &u), -WEFT_ETOOMANY);
  weft_breaker_done(f.b, &t, -ECANCELED);
  assert_state(f.b, WEFT_BREAKER_HALF_OPEN);
  assert_int_equal(weft_breaker_allow(f.b, &u), 0);
  weft_breaker_done(f.b, &u, 0);
  assert_state(f.b, WEFT_BREAKER_CLOSED);
  fx_free(&f);
}

static void test_hook_order(void **state)
{
  struct fixture f;
  fx_init(&f, (weft_breaker_options){.name = "users", .timeout = SEC(2)});
  trip(&f);                             /* closed -> open */
  advance(&f, SEC(2));                  /* */
  assert_int_equal(call(f.b, -EIO), 0); /* open -> half-open -> open */
  advance(&f, SEC(2));
  assert_int_equal(call(f.b, 0), 0); /* open -> half-open -> closed */
  static const weft_breaker_state want[][2] = {
      {WEFT_BREAKER_CLOSED, WEFT_BREAKER_OPEN},
      {WEFT_BREAKER_OPEN, WEFT_BREAKER_HALF_OPEN},
      {WEFT_BREAKER_HALF_OPEN, WEFT_BREAKER_OPEN},
      {WEFT_BREAKER_OPEN, WEFT_BREAKER_HALF_OPEN},
      {WEFT_BREAKER_HALF_OPEN, WEFT_BREAKER_CLOSED},
  };
  assert_int_equal(f.log.n, 5);
  for (int i = 0; i < 5; i++) {
    assert_string_equal(f.log.names[i], "users");
    assert_int_equal(f.log.from[i], want[i][0]);
    assert_int_equal(f.log.to[i], want[i][1]);
  }
  assert_string_equal(weft_breaker_name(f.b), "users");
  assert_string_equal(weft_breaker_state_name(WEFT_BREAKER_HALF_OPEN), "half_open");
  fx_free(&f);
}

/* gobreaker's README example: trip at >= 60% failures once 3 requests were made. */
struct ratio_arg {
  struct hook_log log;
  int calls;
  weft_breaker_counts seen;
};

static bool ratio_trip(const weft_breaker_counts *c, void *arg)
{
  struct ratio_arg *r = arg;
  r->calls++;
  r->seen = *c;
  return c->requests >= 3 && (double)c->total_failures / (double)c->requests >= 0.6;
}

static bool not_found_ok(int err, void *arg)
{
  return err == 0 || err == -ENOENT; /* a 404 is an answer */
}

static void test_custom_trip_and_classifier(void **state)
{
  struct fixture f;
  struct ratio_arg r = {0};
  fx_init(&f, (weft_breaker_options){.ready_to_trip = ratio_trip,
                                     .is_successful = not_found_ok,
                                     .on_state_change = log_change,
                                     .arg = &r});
  assert_int_equal(call(f.b, -ENOENT), 0); /* success by the classifier */
  assert_int_equal(r.calls, 0);            /* ready_to_trip only runs after failures */
  assert_int_equal(call(f.b, -EIO), 0);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.seen.total_failures, 1); /* sees the counts with the failure */
  assert_int_equal(r.seen.requests, 2);
  assert_int_equal(call(f.b, 0), 0);
  assert_int_equal(call(f.b, -EIO), 0); /* 2 of 4 = 50% */
  assert_state(f.b, WEFT_BREAKER_CLOSED);
  assert_int_equal(call(f.b, -EIO), 0); /* 3 of 5 = 60% */
  assert_state(f.b, WEFT_BREAKER_OPEN);
  assert_int_equal(r.log.n, 1);
  fx_free(&f);
}

/* The enrichment pipeline's settings (specs/etl.md): open after 3 consecutive failed
 * calls, stay open 30 s, then one probe; a 404 is an answer, not a failure. */
static void test_trip_after_failures(void **state)
{
  struct fixture f;
  fx_init(&f, (weft_breaker_options){
                  .trip_after_failures = 3, .timeout = SEC(30), .is_excluded = excl_cancel});
  assert_int_equal(call(f.b, -EIO), 0);
  assert_int_equal(call(f.b, -EIO), 0);
  assert_int_equal(call(f.b, -ECANCELED), 0); /* neutral */
  assert_state(f.b, WEFT_BREAKER_CLOSED);
  assert_int_equal(call(f.b, -EIO), 0);
  assert_state(f.b, WEFT_BREAKER_OPEN);
  advance(&f, SEC(30));
  assert_int_equal(call(f.b, 0), 0);
  assert_state(f.b, WEFT_BREAKER_CLOSED);
  fx_free(&f);

  /* A timeout too long to add to now saturates: open for good, never wrapped around. */
  fx_init(&f, (weft_breaker_options){
                  .trip_after_failures = 1, .timeout = INT64_MAX, .interval = INT64_MAX});
  assert_int_equal(call(f.b, -EIO), 0);
  advance(&f, SEC(1000000));
  assert_int_equal(call(f.b, 0), -WEFT_EOPEN);
  fx_free(&f);
}

static int fn_ret(void *arg)
{
  return *(int *)arg;
}

static void test_execute_and_args(void **state)
{
  struct fixture f;
  fx_init(&f, (weft_breaker_options){.max_requests = 0});
  int v = -EIO;
  for (int i = 0; i < 6; i++)
    assert_int_equal(weft_breaker_execute(f.b, fn_ret, &v), -EIO);
  v = 0;
  assert_int_equal(weft_breaker_execute(f.b, fn_ret, &v), -WEFT_EOPEN);
  assert_string_equal(weft_strerror(-WEFT_EOPEN), "circuit breaker is open");
  assert_string_equal(weft_errname(-WEFT_EOPEN), "WEFT_EOPEN");
  assert_int_equal(weft_breaker_allow(NULL, NULL), -EINVAL);
  assert_int_equal(weft_breaker_allow(f.b, NULL), -EINVAL);
  weft_breaker_done(NULL, NULL, 0);
  weft_breaker_release(NULL);
  assert_null(weft_breaker_new(&(weft_breaker_options){.window.type = 7}));
  assert_null(weft_breaker_new(
      &(weft_breaker_options){.window = {.type = WEFT_BREAKER_WINDOW_COUNT, .size = 2000000}}));
  weft_breaker *d = weft_breaker_new(NULL); /* all defaults, real clock */
  assert_non_null(d);
  assert_string_equal(weft_breaker_name(d), "");
  assert_int_equal(weft_breaker_execute(d, fn_ret, &v), 0);
  assert_ptr_equal(weft_breaker_retain(d), d);
  weft_breaker_release(d);
  assert_int_equal(weft_breaker_counts_get(d).total_successes, 1);
  weft_breaker_release(d);
  fx_free(&f);
}

/* ---- sliding windows (resilience4j) ---- */

static bool never_excluded(int err, void *arg)
{
  return false;
}

static void test_count_window_min_calls(void **state)
{
  weft_breaker_options o = {.window = {.type = WEFT_BREAKER_WINDOW_COUNT,
                                       .size = 10,
                                       .minimum_calls = 6,
                                       .failure_rate_threshold = 50}};
  struct fixture f;
  fx_init(&f, o);
  for (int i = 0; i < 5; i++) /* 100% failures but below the minimum */
    assert_int_equal(call(f.b, -EIO), 0);
  assert_state(f.b, WEFT_BREAKER_CLOSED); /* and no consecutive-failure rule with a window */
  assert_int_equal(call(f.b, 0), 0);      /* the 6th call: 5 of 6 failed, a success trips */
  assert_state(f.b, WEFT_BREAKER_OPEN);
  assert_int_equal(f.log.n, 1);
  fx_free(&f);

  /* The ring forgets the oldest outcome: with all 12 calls, 5 failures would be 42%. */
  fx_init(&f, o);
  for (int i = 0; i < 7; i++)
    assert_int_equal(call(f.b, 0), 0);
  for (int i = 0; i < 3; i++)
    assert_int_equal(call(f.b, -EIO), 0); /* SSSSSSSFFF: 30% */
  assert_int_equal(call(f.b, -EIO), 0);   /* SSSSSSFFFF: 40% */
  assert_state(f.b, WEFT_BREAKER_CLOSED);
  assert_int_equal(call(f.b, -EIO), 0); /* SSSSSFFFFF: 50% */
  assert_state(f.b, WEFT_BREAKER_OPEN);
  fx_free(&f);
}

static void test_count_window_min_above_size(void **state)
{
  struct fixture f;
  fx_init(&f,
          (weft_breaker_options){
              .is_excluded = never_excluded,
              .window = {.type = WEFT_BREAKER_WINDOW_COUNT, .size = 4, .minimum_calls = 50}});
  assert_int_equal(call(f.b, 0), 0);
  assert_int_equal(call(f.b, 0), 0);
  assert_int_equal(call(f.b, -EIO), 0);
  assert_state(f.b, WEFT_BREAKER_CLOSED);
  assert_int_equal(call(f.b, -EIO), 0); /* minimum lowered to 4: 2 of 4 = 50% */
  assert_state(f.b, WEFT_BREAKER_OPEN);
  fx_free(&f);
}

static void test_time_window_buckets_expire(void **state)
{
  struct fixture f;
  fx_init(&f, (weft_breaker_options){.window = {.type = WEFT_BREAKER_WINDOW_TIME,
                                                .size = 5,
                                                .minimum_calls = 4,
                                                .failure_rate_threshold = 75}});
  assert_int_equal(call(f.b, -EIO), 0); /* second 1000 */
  assert_int_equal(call(f.b, -EIO), 0);
  advance(&f, SEC(2));
  assert_int_equal(call(f.b, -EIO), 0); /* second 1002: 3 calls, below the minimum */
  assert_state(f.b, WEFT_BREAKER_CLOSED);
  advance(&f, SEC(3));                  /* second 1005: second 1000's bucket has expired */
  assert_int_equal(call(f.b, -EIO), 0); /* live: 1002, 1005 = 2 calls */
  assert_state(f.b, WEFT_BREAKER_CLOSED);
  assert_int_equal(call(f.b, 0), 0);
  assert_int_equal(call(f.b, -EIO), 0); /* 4 calls, 3 failed = 75% */
  assert_state(f.b, WEFT_BREAKER_OPEN);
  fx_free(&f);

  /* A jump longer than the window forgets everything. */
  fx_init(&f, (weft_breaker_options){
                  .window = {.type = WEFT_BREAKER_WINDOW_TIME, .size = 3, .minimum_calls = 3}});
  assert_int_equal(call(f.b, -EIO), 0);
  assert_int_equal(call(f.b, -EIO), 0);
  advance(&f, SEC(30));
  assert_int_equal(call(f.b, -EIO), 0);
  assert_state(f.b, WEFT_BREAKER_CLOSED);
  advance(&f, SEC(2)); /* within 3 s: still live */
  assert_int_equal(call(f.b, -EIO), 0);
  assert_int_equal(call(f.b, 0), 0); /* 2 of 3 >= 50% */
  assert_state(f.b, WEFT_BREAKER_OPEN);
  fx_free(&f);
}

/* A call allowed now that reports err after ns on the fake clock. */
static void timed_call(struct fixture *f, int64_t ns, int err)
{
  weft_breaker_ticket t;
  assert_int_equal(weft_breaker_allow(f->b, &t), 0);
  advance(f, ns);
  weft_breaker_done(f->b, &t, err);
}

static void test_slow_call_rate(void **state)
{
  struct fixture f;
  fx_init(&f, (weft_breaker_options){.window = {.type = WEFT_BREAKER_WINDOW_COUNT,
                                                .size = 4,
                                                .minimum_calls = 4,
                                                .failure_rate_threshold = 101, /* off */
                                                .slow_call_duration = SEC(1),
                                                .slow_call_rate_threshold = 50}});
  timed_call(&f, SEC(1) - 1, 0); /* just fast */
  timed_call(&f, SEC(1), 0);     /* slow: at the threshold */
  timed_call(&f, 10, -EIO);      /* failures don't count: threshold off */
  assert_state(f.b, WEFT_BREAKER_CLOSED);
  timed_call(&f, SEC(5), 0); /* 2 slow of 4 = 50%: slow successes trip it */
  assert_state(f.b, WEFT_BREAKER_OPEN);
  fx_free(&f);

  /* Default slow-call settings: 60 s and 100%. */
  fx_init(&f,
          (weft_breaker_options){
              .window = {.type = WEFT_BREAKER_WINDOW_TIME, .size = 600, .minimum_calls = 2}});
  timed_call(&f, SEC(60), 0);
  timed_call(&f, SEC(59), 0);
  assert_state(f.b, WEFT_BREAKER_CLOSED);
  timed_call(&f, SEC(61), 0); /* window: 3 calls, 2 slow: 67% < 100% */
  assert_state(f.b, WEFT_BREAKER_CLOSED);
  fx_free(&f);
  fx_init(&f,
          (weft_breaker_options){
              .window = {.type = WEFT_BREAKER_WINDOW_COUNT, .size = 2, .minimum_calls = 2}});
  timed_call(&f, SEC(60), 0);
  timed_call(&f, SEC(61), 0); /* 2 of 2 slow */
  assert_state(f.b, WEFT_BREAKER_OPEN);
  fx_free(&f);
}

static void test_window_half_open_verdict(void **state)
{
  weft_breaker_options o = {.max_requests = 4,
                            .timeout = SEC(1),
                            .window = {.type = WEFT_BREAKER_WINDOW_COUNT, .size = 2}};
  struct fixture f;
  fx_init(&f, o);
  assert_int_equal(call(f.b, -EIO), 0);
  assert_int_equal(call(f.b, -EIO), 0);
  assert_state(f.b, WEFT_BREAKER_OPEN);
  advance(&f, SEC(1));
  weft_breaker_ticket t[5];
  for (int i = 0; i < 4; i++)
    assert_int_equal(weft_breaker_allow(f.b, &t[i]), 0);
  assert_int_equal(weft_breaker_allow(f.b, &t[4]), -WEFT_ETOOMANY);
  weft_breaker_done(f.b, &t[0], -EIO); /* a failure alone does not reopen: the rate does */
  weft_breaker_done(f.b, &t[1], 0);
  weft_breaker_done(f.b, &t[2], 0);
  assert_state(f.b, WEFT_BREAKER_HALF_OPEN);
  weft_breaker_done(f.b, &t[3], 0); /* 1 of 4 = 25% < 50% */
  assert_state(f.b, WEFT_BREAKER_CLOSED);
  /* The window was cleared on closing: one failure is below the minimum of 2. */
  assert_int_equal(call(f.b, -EIO), 0);
  assert_state(f.b, WEFT_BREAKER_CLOSED);
  assert_int_equal(call(f.b, -EIO), 0);
  assert_state(f.b, WEFT_BREAKER_OPEN);
  advance(&f, SEC(1));
  for (int i = 0; i < 4; i++)
    assert_int_equal(weft_breaker_allow(f.b, &t[i]), 0);
  weft_breaker_done(f.b, &t[0], -EIO);
  weft_breaker_done(f.b, &t[1], 0);
  weft_breaker_done(f.b, &t[2], -EIO);
  weft_breaker_done(f.b, &t[3], 0); /* 2 of 4 = 50%: reopen */
  assert_state(f.b, WEFT_BREAKER_OPEN);
  assert_int_equal(f.log.n, 6);
  fx_free(&f);
}

static bool trip_after_two(const weft_breaker_counts *c, void *arg)
{
  return c->consecutive_failures >= 2;
}

static void test_window_and_ready_to_trip(void **state)
{
  struct fixture f;
  fx_init(&f, (weft_breaker_options){.ready_to_trip = trip_after_two,
                                     .window = {.type = WEFT_BREAKER_WINDOW_COUNT}});
  assert_int_equal(call(f.b, -EIO), 0);
  assert_int_equal(call(f.b, -EIO), 0); /* the window needs 100 calls; the rule trips */
  assert_state(f.b, WEFT_BREAKER_OPEN);
  fx_free(&f);
}

/* ---- metrics ---- */

static char *scrape(weft_metrics_registry *reg)
{
  char *buf = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&buf, &len);
  assert_int_equal(weft_metrics_write_prometheus(reg, m), 0);
  fclose(m);
  return buf;
}

static void test_metrics(void **state)
{
  weft_metrics_registry *reg = weft_metrics_registry_new();
  struct fixture f, g;
  fx_init(&f, (weft_breaker_options){.name = "geo", .metrics = reg, .timeout = SEC(1)});
  fx_init(&g, (weft_breaker_options){.name = "fx", .metrics = reg}); /* shares the families */
  trip(&f);
  assert_int_equal(call(f.b, 0), -WEFT_EOPEN);
  assert_int_equal(call(g.b, 0), 0);
  char *text = scrape(reg);
  assert_non_null(strstr(text, "weft_breaker_state{breaker=\"geo\"} 2\n"));
  assert_non_null(strstr(text, "weft_breaker_state{breaker=\"fx\"} 0\n"));
  assert_non_null(
      strstr(text, "weft_breaker_calls_total{breaker=\"geo\",result=\"failure\"} 6\n"));
  assert_non_null(
      strstr(text, "weft_breaker_calls_total{breaker=\"geo\",result=\"rejected\"} 1\n"));
  assert_non_null(
      strstr(text, "weft_breaker_calls_total{breaker=\"fx\",result=\"success\"} 1\n"));
  assert_non_null(
      strstr(text, "weft_breaker_transitions_total{breaker=\"geo\",to=\"open\"} 1\n"));
  free(text);
  advance(&f, SEC(1));
  assert_state(f.b, WEFT_BREAKER_HALF_OPEN);
  text = scrape(reg);
  assert_non_null(strstr(text, "weft_breaker_state{breaker=\"geo\"} 1\n"));
  assert_non_null(
      strstr(text, "weft_breaker_transitions_total{breaker=\"geo\",to=\"half_open\"} 1\n"));
  free(text);
  fx_free(&f);
  fx_free(&g);
  weft_metrics_registry_free(reg);
}

/* ---- concurrency ---- */

enum { ENDPOINTS = 6, WORKERS = 48, CALLS = 400 };
static const char *const endpoints[ENDPOINTS] = {"users", "geo", "fx", "a", "b", "c"};

static bool never_trip(const weft_breaker_counts *c, void *arg)
{
  return false;
}

static atomic_int hook_calls;

static void count_hook(const char *name, weft_breaker_state from, weft_breaker_state to,
                       void *arg)
{
  atomic_fetch_add(&hook_calls, 1);
}

struct worker {
  weft_breaker_registry *reg;
  int id;
  weft_wg *wg;
  long ok[ENDPOINTS], failed[ENDPOINTS], excluded[ENDPOINTS];
};

static void worker_run(void *arg)
{
  struct worker *w = arg;
  uint64_t seed = 0x9e3779b97f4a7c15ULL * (uint64_t)(w->id + 1);
  for (int i = 0; i < CALLS; i++) {
    int e = (int)(test_rand(&seed) % ENDPOINTS);
    weft_breaker *b = weft_breaker_registry_get(w->reg, endpoints[e]);
    CHECK(b != NULL);
    weft_breaker_ticket t;
    CHECK_EQ(weft_breaker_allow(b, &t), 0);
    if (i % 7 == 0)
      weft_yield(); /* interleave between allow and done */
    int r = (int)(test_rand(&seed) % 3);
    weft_breaker_done(b, &t, r == 0 ? 0 : r == 1 ? -EIO : -ECANCELED);
    (r == 0 ? w->ok : r == 1 ? w->failed : w->excluded)[e]++;
  }
  weft_wg_done(w->wg);
}

static int registry_main(void *arg)
{
  weft_fake_clock *fc = weft_fake_clock_new(T0);
  weft_metrics_registry *mreg = weft_metrics_registry_new();
  weft_breaker_registry *reg =
      weft_breaker_registry_new(&(weft_breaker_options){.name = "ignored",
                                                        .clock = weft_fake_clock_clock(fc),
                                                        .ready_to_trip = never_trip,
                                                        .is_excluded = excl_cancel,
                                                        .metrics = mreg});
  CHECK(reg != NULL);
  static struct worker w[WORKERS];
  weft_wg wg;
  weft_wg_init(&wg);
  weft_wg_add(&wg, WORKERS);
  for (int i = 0; i < WORKERS; i++) {
    memset(&w[i], 0, sizeof w[i]);
    w[i].reg = reg, w[i].id = i, w[i].wg = &wg;
    weft_go(worker_run, &w[i]);
  }
  weft_wg_wait(&wg);
  CHECK_EQ(weft_breaker_registry_len(reg), ENDPOINTS);
  long total = 0;
  for (int e = 0; e < ENDPOINTS; e++) {
    long ok = 0, failed = 0, excluded = 0;
    for (int i = 0; i < WORKERS; i++)
      ok += w[i].ok[e], failed += w[i].failed[e], excluded += w[i].excluded[e];
    weft_breaker *b = weft_breaker_registry_get(reg, endpoints[e]);
    CHECK(strcmp(weft_breaker_name(b), endpoints[e]) == 0);
    weft_breaker_counts c = weft_breaker_counts_get(b);
    CHECK_EQ(c.requests, ok + failed + excluded);
    CHECK_EQ(c.total_successes, ok);
    CHECK_EQ(c.total_failures, failed);
    CHECK_EQ(c.total_exclusions, excluded);
    CHECK_EQ(weft_breaker_state_get(b), WEFT_BREAKER_CLOSED);
    total += c.requests;
  }
  CHECK_EQ(total, (long)WORKERS * CALLS);
  weft_breaker_registry_free(reg);
  weft_metrics_registry_free(mreg);
  weft_fake_clock_free(fc);
  return 0;
}

static void test_registry_concurrent(void **state)
{
  checks_reset();
  assert_int_equal(run_weft(4, registry_main, NULL), 0);
  ASSERT_NO_CHECK_FAILED();
}

/* Many coroutines failing at once through one breaker: it trips exactly once, every
 * call is either admitted and counted or rejected, and nothing more than the quota gets
 * through half-open. */
struct storm {
  weft_breaker *b;
  weft_wg *wg;
  atomic_long admitted, rejected;
};

static void storm_worker(void *arg)
{
  struct storm *s = arg;
  for (int i = 0; i < 200; i++) {
    weft_breaker_ticket t;
    int rc = weft_breaker_allow(s->b, &t);
    if (rc == 0) {
      atomic_fetch_add(&s->admitted, 1);
      weft_yield();
      weft_breaker_done(s->b, &t, -EIO);
    } else {
      CHECK(rc == -WEFT_EOPEN || rc == -WEFT_ETOOMANY);
      atomic_fetch_add(&s->rejected, 1);
    }
  }
  weft_wg_done(s->wg);
}

static int storm_main(void *arg)
{
  weft_fake_clock *fc = weft_fake_clock_new(T0);
  atomic_store(&hook_calls, 0);
  weft_breaker *b = weft_breaker_new(&(weft_breaker_options){.clock = weft_fake_clock_clock(fc),
                                                             .on_state_change = count_hook});
  weft_wg wg;
  weft_wg_init(&wg);
  static struct storm s;
  s.b = b, s.wg = &wg;
  atomic_store(&s.admitted, 0);
  atomic_store(&s.rejected, 0);
  weft_wg_add(&wg, 32);
  for (int i = 0; i < 32; i++)
    weft_go(storm_worker, &s);
  weft_wg_wait(&wg);
  CHECK_EQ(weft_breaker_state_get(b), WEFT_BREAKER_OPEN);
  CHECK_EQ(atomic_load(&hook_calls), 1);
  CHECK_EQ(atomic_load(&s.admitted) + atomic_load(&s.rejected), 32 * 200);
  CHECK(atomic_load(&s.admitted) >= 6);
  /* Half-open on P = 4: exactly one of many racing callers gets the probe. */
  weft_fake_clock_advance(fc, SEC(60));
  atomic_store(&s.admitted, 0);
  atomic_store(&s.rejected, 0);
  weft_wg_add(&wg, 32);
  for (int i = 0; i < 32; i++)
    weft_go(storm_worker, &s);
  weft_wg_wait(&wg);
  CHECK_EQ(atomic_load(&s.admitted), 1);
  CHECK_EQ(atomic_load(&hook_calls), 3); /* open -> half-open -> open */
  weft_breaker_release(b);
  weft_fake_clock_free(fc);
  return 0;
}

static void test_storm_trips_once(void **state)
{
  checks_reset();
  assert_int_equal(run_weft(4, storm_main, NULL), 0);
  ASSERT_NO_CHECK_FAILED();
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults_trip_after_six),
      cmocka_unit_test(test_success_resets_consecutive),
      cmocka_unit_test(test_interval_clears_counts),
      cmocka_unit_test(test_no_interval_keeps_counts),
      cmocka_unit_test(test_open_rejects_until_timeout),
      cmocka_unit_test(test_default_timeout_60s),
      cmocka_unit_test(test_half_open_quota_and_close),
      cmocka_unit_test(test_half_open_failure_reopens),
      cmocka_unit_test(test_old_generation_dropped),
      cmocka_unit_test(test_exclusions),
      cmocka_unit_test(test_hook_order),
      cmocka_unit_test(test_custom_trip_and_classifier),
      cmocka_unit_test(test_trip_after_failures),
      cmocka_unit_test(test_execute_and_args),
      cmocka_unit_test(test_count_window_min_calls),
      cmocka_unit_test(test_count_window_min_above_size),
      cmocka_unit_test(test_time_window_buckets_expire),
      cmocka_unit_test(test_slow_call_rate),
      cmocka_unit_test(test_window_half_open_verdict),
      cmocka_unit_test(test_window_and_ready_to_trip),
      cmocka_unit_test(test_metrics),
      cmocka_unit_test(test_registry_concurrent),
      cmocka_unit_test(test_storm_trips_once),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
