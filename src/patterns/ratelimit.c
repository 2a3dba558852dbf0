/* ratelimit.c: a token bucket, as golang.org/x/time/rate (weft/ratelimit.h).
 *
 * State, all guarded by mu (a leaf pthread mutex: nothing parks or takes another weft
 * lock under it but the clock's own leaf lock when reading a fake clock):
 *   tokens      the bucket as of time last; may be negative: the debt of reservations
 *               not yet due (reserve_n goes into debt, wait_n sleeps it off);
 *   last        the clock time tokens was computed for; never decreases, because the
 *               clock is read under mu;
 *   last_event  the latest time_to_act handed out, past or future: cancel uses it to
 *               give back only tokens no later reservation depends on.
 * Invariant (checked in debug builds on every change): tokens <= burst, unless the limit
 * is infinite (the bucket is then not used).
 * The tokens in the bucket at time t are min(burst, tokens + limit·(t − last)): nothing
 * runs on a timer; each call brings the bucket up to date (advance) and acts on it.
 *
 * Rejected: a coroutine that refills the bucket on a ticker: it costs a coroutine per
 * limiter, is inexact between ticks, and cannot follow a fake clock without one. */
#include <assert.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "weft/ratelimit.h"
#include "weft/runtime.h"

#define INF_DURATION INT64_MAX /* x/time/rate's InfDuration */

struct weft_limiter {
  pthread_mutex_t mu;
  double limit;       /* guarded by mu: events/s, >= 0 or +Inf */
  int burst;          /* guarded by mu */
  double tokens;      /* guarded by mu: as of last */
  int64_t last;       /* guarded by mu */
  int64_t last_event; /* guarded by mu */
  weft_clock *clock;  /* immutable; NULL: real */
  atomic_int refs;
  /* Immutable after new; NULL without metrics (every update accepts NULL). */
  weft_counter *allowed, *rejected, *waited;
  weft_histogram *wait_seconds;
  weft_gauge *limit_gauge;
};

static void check_invariants(const weft_limiter *l)
{
  assert(isinf(l->limit) || l->tokens <= (double)l->burst);
  assert(l->last_event != INF_DURATION);
  (void)l;
}

/* ---- x/time/rate's arithmetic ---- */

/* tokensFromDuration: whole seconds and the rest apart, to keep precision. */
static double tokens_from_duration(double limit, int64_t d)
{
  if (limit <= 0)
    return 0;
  double sec = (double)(d / 1000000000) * limit, nsec = (double)(d % 1000000000) * limit;
  return sec + nsec / 1e9;
}

/* durationFromTokens: INF_DURATION when the limit is 0 or the result overflows. */
static int64_t duration_from_tokens(double limit, double tokens)
{
  if (limit <= 0)
    return INF_DURATION;
  double d = tokens / limit * 1e9;
  return d >= 0x1p63 ? INF_DURATION : (int64_t)d;
}

/* advance: the tokens at time t (last is moved there by the caller when it commits). */
static double advance(const weft_limiter *l, int64_t t)
{
  if (isinf(l->limit))
    return l->burst;
  int64_t last = t < l->last ? t : l->last;
  double tokens = l->tokens + tokens_from_duration(l->limit, t - last);
  return tokens > l->burst ? l->burst : tokens;
}

/* reserve_locked: x/time/rate's reserveN. Returns 0 (r ok, state committed), -EINVAL
 * (n > burst), -EAGAIN (limit 0 and too few tokens: never), -ETIMEDOUT (the wait would
 * exceed max_wait). Caller holds mu. */
static int reserve_locked(weft_limiter *l, int64_t t, int n, int64_t max_wait,
                          weft_reservation *r)
{
  *r = (weft_reservation){.lim = l, .limit = l->limit};
  if (isinf(l->limit)) {
    *r = (weft_reservation){l, 1, n, t, l->limit};
    return 0;
  }
  if (n > l->burst)
    return -EINVAL;
  double tokens = advance(l, t) - n;
  int64_t wait = tokens < 0 ? duration_from_tokens(l->limit, -tokens) : 0;
  if (wait == INF_DURATION)
    return -EAGAIN;
  if (wait > max_wait)
    return -ETIMEDOUT;
  *r = (weft_reservation){l, 1, n, t + wait, l->limit};
  l->last = t;
  l->tokens = tokens;
  l->last_event = r->time_to_act;
  check_invariants(l);
  return 0;
}

/* ---- life cycle ---- */

static int metrics_register(weft_limiter *l, const weft_limiter_options *o)
{
  static const char *const label[] = {"name"};
  weft_counter_vec *a = NULL, *rj = NULL, *w = NULL;
  weft_histogram_vec *h = NULL;
  weft_gauge_vec *g = NULL;
  int rc[5] = {
      weft_counter_vec_new(o->metrics, "weft_ratelimit_allowed_total",
                           "Rate limiter calls admitted.", 1, label, &a),
      weft_counter_vec_new(o->metrics, "weft_ratelimit_rejected_total",
                           "Rate limiter calls refused or cut short.", 1, label, &rj),
      weft_counter_vec_new(o->metrics, "weft_ratelimit_waited_total",
                           "Rate limiter waits that slept.", 1, label, &w),
      weft_histogram_vec_new(o->metrics, "weft_ratelimit_wait_seconds",
                             "Time successful rate limiter waits waited.", 0, NULL, 1, label,
                             &h),
      weft_gauge_vec_new(o->metrics, "weft_ratelimit_limit", "Rate limit, events per second.",
                         1, label, &g),
  };
  for (int i = 0; i < 5; i++)
    if (rc[i] != 0 && rc[i] != -EEXIST)
      return rc[i];
  if (!a || !rj || !w || !h || !g)
    return -EEXIST; /* a family of that name but another shape */
  l->allowed = weft_counter_vec_with(a, o->name);
  l->rejected = weft_counter_vec_with(rj, o->name);
  l->waited = weft_counter_vec_with(w, o->name);
  l->wait_seconds = weft_histogram_vec_with(h, o->name);
  l->limit_gauge = weft_gauge_vec_with(g, o->name);
  if (!l->allowed || !l->rejected || !l->waited || !l->wait_seconds || !l->limit_gauge)
    return -ENOMEM;
  weft_gauge_set(l->limit_gauge, o->limit);
  return 0;
}

static int valid_limit(double limit)
{
  return limit >= 0; /* false for NaN */
}

int weft_limiter_new_with(const weft_limiter_options *o, weft_limiter **out)
{
  if (out == NULL || o == NULL || !valid_limit(o->limit) || o->burst < 0 ||
      (o->metrics && o->name == NULL))
    return -EINVAL;
  weft_limiter *l = calloc(1, sizeof *l);
  if (l == NULL)
    return -ENOMEM;
  pthread_mutex_init(&l->mu, NULL);
  l->limit = o->limit;
  l->burst = o->burst;
  l->tokens = o->burst; /* starts full */
  l->clock = o->clock;
  l->last = l->last_event = weft_clock_now(o->clock);
  atomic_init(&l->refs, 1);
  int rc = o->metrics ? metrics_register(l, o) : 0;
  if (rc != 0) {
    pthread_mutex_destroy(&l->mu);
    free(l);
    return rc;
  }
  *out = l;
  return 0;
}

weft_limiter *weft_limiter_new(double limit, int burst, weft_clock *clock)
{
  weft_limiter *l = NULL;
  weft_limiter_options o = {.limit = limit, .burst = burst, .clock = clock};
  return weft_limiter_new_with(&o, &l) == 0 ? l : NULL;
}

weft_limiter *weft_limiter_retain(weft_limiter *l)
{
  if (l)
    atomic_fetch_add_explicit(&l->refs, 1, memory_order_relaxed);
  return l;
}

void weft_limiter_release(weft_limiter *l)
{
  if (l == NULL || atomic_fetch_sub_explicit(&l->refs, 1, memory_order_acq_rel) != 1)
    return;
  pthread_mutex_destroy(&l->mu);
  free(l);
}

/* ---- allow, reserve ---- */

int weft_limiter_allow_n(weft_limiter *l, int n)
{
  if (l == NULL || n < 0)
    return 0;
  weft_reservation r;
  pthread_mutex_lock(&l->mu);
  int rc = reserve_locked(l, weft_clock_now(l->clock), n, 0, &r);
  pthread_mutex_unlock(&l->mu);
  weft_counter_inc(rc == 0 ? l->allowed : l->rejected);
  return rc == 0;
}

int weft_limiter_allow(weft_limiter *l)
{
  return weft_limiter_allow_n(l, 1);
}

int weft_limiter_reserve_n(weft_limiter *l, int n, weft_reservation *r)
{
  if (r == NULL)
    return -EINVAL;
  *r = (weft_reservation){.lim = l};
  if (l == NULL || n < 0)
    return -EINVAL;
  pthread_mutex_lock(&l->mu);
  int rc = reserve_locked(l, weft_clock_now(l->clock), n, INF_DURATION, r);
  pthread_mutex_unlock(&l->mu);
  weft_counter_inc(rc == 0 ? l->allowed : l->rejected);
  return rc;
}

int weft_limiter_reserve(weft_limiter *l, weft_reservation *r)
{
  return weft_limiter_reserve_n(l, 1, r);
}

int weft_reservation_ok(const weft_reservation *r)
{
  return r && r->ok;
}

int64_t weft_reservation_delay_from(const weft_reservation *r, int64_t t)
{
  if (!weft_reservation_ok(r))
    return INF_DURATION;
  return r->time_to_act > t ? r->time_to_act - t : 0;
}

int64_t weft_reservation_delay(const weft_reservation *r)
{
  if (!weft_reservation_ok(r))
    return INF_DURATION;
  return weft_reservation_delay_from(r, weft_clock_now(r->lim->clock));
}

/* cancel_locked: x/time/rate's CancelAt(t). Caller holds mu. */
static void cancel_locked(weft_limiter *l, const weft_reservation *r, int64_t t)
{
  if (isinf(l->limit) || isinf(r->limit) || r->tokens == 0 || r->time_to_act < t)
    return;
  /* Tokens reserved after r (between its time to act and the last event) stay taken. */
  double restore = r->tokens - tokens_from_duration(r->limit, l->last_event - r->time_to_act);
  if (restore <= 0)
    return;
  double tokens = advance(l, t) + restore;
  l->tokens = tokens > l->burst ? l->burst : tokens;
  l->last = t;
  if (r->time_to_act == l->last_event && r->limit > 0) {
    int64_t prev = r->time_to_act - duration_from_tokens(r->limit, r->tokens);
    if (prev >= t)
      l->last_event = prev;
  }
  check_invariants(l);
}

void weft_reservation_cancel(weft_reservation *r)
{
  if (!weft_reservation_ok(r))
    return;
  weft_limiter *l = r->lim;
  pthread_mutex_lock(&l->mu);
  cancel_locked(l, r, weft_clock_now(l->clock));
  pthread_mutex_unlock(&l->mu);
  r->ok = 0;
}

/* ---- wait ---- */

/* wait_limit: how long ctx lets us wait (x/time/rate: deadline.Sub(now)), measured on
 * weft_now()'s clock, where context deadlines live. */
static int64_t wait_limit(weft_ctx *ctx)
{
  int64_t deadline = weft_ctx_deadline(ctx);
  if (ctx == NULL || deadline == WEFT_NO_DEADLINE)
    return INF_DURATION;
  int64_t left = deadline - weft_now();
  return left > 0 ? left : 0;
}

static int wait_failed(weft_limiter *l, int rc)
{
  weft_counter_inc(l->rejected);
  return rc;
}

int weft_limiter_wait_n(weft_limiter *l, weft_ctx *ctx, int n)
{
  if (l == NULL || n < 0)
    return -EINVAL;
  int rc = weft_ctx_err(ctx);
  if (rc != 0)
    return wait_failed(l, rc);
  int64_t max_wait = wait_limit(ctx);
  weft_reservation r;
  pthread_mutex_lock(&l->mu);
  int64_t now = weft_clock_now(l->clock);
  rc = reserve_locked(l, now, n, max_wait, &r);
  pthread_mutex_unlock(&l->mu);
  if (rc != 0)
    return wait_failed(l, rc);
  int64_t delay = weft_reservation_delay_from(&r, now);
  if (delay > 0) {
    rc = weft_clock_sleep_until(l->clock, ctx, r.time_to_act);
    if (rc != 0) {
      weft_reservation_cancel(&r); /* give the tokens back */
      return wait_failed(l, rc);
    }
    weft_counter_inc(l->waited);
  }
  weft_counter_inc(l->allowed);
  weft_histogram_observe_ns(l->wait_seconds, delay);
  return 0;
}

int weft_limiter_wait(weft_limiter *l, weft_ctx *ctx)
{
  return weft_limiter_wait_n(l, ctx, 1);
}

/* ---- settings ---- */

int weft_limiter_set_limit(weft_limiter *l, double limit)
{
  if (l == NULL || !valid_limit(limit))
    return -EINVAL;
  pthread_mutex_lock(&l->mu);
  int64_t t = weft_clock_now(l->clock);
  l->tokens = advance(l, t);
  l->last = t;
  l->limit = limit;
  check_invariants(l);
  pthread_mutex_unlock(&l->mu);
  weft_gauge_set(l->limit_gauge, limit);
  return 0;
}

int weft_limiter_set_burst(weft_limiter *l, int burst)
{
  if (l == NULL || burst < 0)
    return -EINVAL;
  pthread_mutex_lock(&l->mu);
  int64_t t = weft_clock_now(l->clock);
  l->tokens = advance(l, t);
  l->last = t;
  l->burst = burst;
  if (l->tokens > burst)
    l->tokens = burst;
  check_invariants(l);
  pthread_mutex_unlock(&l->mu);
  return 0;
}

double weft_limiter_limit(weft_limiter *l)
{
  pthread_mutex_lock(&l->mu);
  double limit = l->limit;
  pthread_mutex_unlock(&l->mu);
  return limit;
}

int weft_limiter_burst(weft_limiter *l)
{
  pthread_mutex_lock(&l->mu);
  int burst = l->burst;
  pthread_mutex_unlock(&l->mu);
  return burst;
}

double weft_limiter_tokens(weft_limiter *l)
{
  pthread_mutex_lock(&l->mu);
  double tokens = advance(l, weft_clock_now(l->clock));
  pthread_mutex_unlock(&l->mu);
  return tokens;
}
