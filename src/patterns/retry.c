/* retry.c: exponential back-off (cenkalti/backoff v4) and the retry loop (weft/retry.h).
 *
 * A back-off is owned by one caller at a time and holds no lock. Its state:
 *   cur      the un-randomised interval the next delay is drawn around; always in
 *            [initial_interval, max_interval];
 *   start    the clock's reading at the last reset (elapsed = now - start);
 *   calls    weft_backoff_next calls since the reset = failed attempts so far;
 *   rng      xoshiro256** state, seeded by splitmix64 from the seed.
 * weft_retry keeps its back-off on its own stack: a retry allocates nothing unless it
 * registers metrics.
 *
 * Rejected: a jitter source shared by every back-off (a global generator under a lock):
 * it makes seeded tests depend on what else runs, and puts a lock on every retry. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "ctx/xoshiro.h"
#include "weft/retry.h"
#include "weft/runtime.h"

struct weft_backoff {
  weft_backoff_options o; /* copied, validated */
  int64_t cur;            /* current un-randomised interval, ns */
  int64_t start;          /* clock reading at the last reset */
  int calls;              /* weft_backoff_next calls since the reset */
  uint64_t rng[4];        /* xoshiro256** */
};

/* ---- random source ---- */

/* A double uniform in [0, 1), as Go's rand.Float64. */
static double rng_float(uint64_t s[4])
{
  return (double)(weft__xoshiro_next(s) >> 11) * 0x1.0p-53;
}

static void rng_seed(uint64_t s[4], uint64_t seed, const void *salt)
{
  static _Atomic uint64_t counter;
  if (seed == 0)
    seed =
        (uint64_t)weft_now() ^ (uint64_t)(uintptr_t)salt ^ (counter += 0x2545f4914f6cdd1dULL);
  weft__xoshiro_seed(s, seed);
}

/* ---- back-off ---- */

static int options_valid(const weft_backoff_options *o)
{
  return o->initial_interval > 0 && o->randomization_factor >= 0 &&
         o->randomization_factor <= 1 && o->multiplier >= 1 && !isnan(o->multiplier) &&
         o->max_interval >= o->initial_interval && o->max_elapsed_time >= 0 &&
         o->max_attempts >= 0 &&
         (o->policy == WEFT_BACKOFF_EXPONENTIAL || o->policy == WEFT_BACKOFF_FULL_JITTER) &&
         (o->metrics == NULL || o->name != NULL);
}

static void backoff_init(weft_backoff *b, const weft_backoff_options *o)
{
  b->o = *o;
  rng_seed(b->rng, o->seed, b);
  weft_backoff_reset(b);
}

int weft_backoff_new(const weft_backoff_options *opts, weft_backoff **out)
{
  weft_backoff_options o = opts ? *opts : WEFT_BACKOFF_DEFAULTS;
  if (out == NULL || !options_valid(&o))
    return -EINVAL;
  weft_backoff *b = malloc(sizeof *b);
  if (b == NULL)
    return -ENOMEM;
  backoff_init(b, &o);
  *out = b;
  return 0;
}

void weft_backoff_free(weft_backoff *b)
{
  free(b);
}

void weft_backoff_reset(weft_backoff *b)
{
  b->cur = b->o.initial_interval;
  b->calls = 0;
  b->start = weft_clock_now(b->o.clock);
}

int64_t weft_backoff_elapsed(const weft_backoff *b)
{
  return weft_clock_now(b->o.clock) - b->start;
}

/* cenkalti's getRandomValueFromInterval: min + r·(max − min + 1), truncated; exactly cur
 * when f is 0 (no random number is drawn then). */
static int64_t draw(weft_backoff *b)
{
  double cur = (double)b->cur, f = b->o.randomization_factor;
  if (b->o.policy == WEFT_BACKOFF_FULL_JITTER)
    return (int64_t)(rng_float(b->rng) * (cur + 1));
  if (f == 0)
    return b->cur;
  double lo = cur - f * cur, hi = cur + f * cur;
  return (int64_t)(lo + rng_float(b->rng) * (hi - lo + 1));
}

/* cenkalti's incrementCurrentInterval: multiply, or saturate at the cap (also guards
 * against overflow). */
static void advance_interval(weft_backoff *b)
{
  if ((double)b->cur >= (double)b->o.max_interval / b->o.multiplier)
    b->cur = b->o.max_interval;
  else
    b->cur = (int64_t)((double)b->cur * b->o.multiplier);
}

int64_t weft_backoff_next(weft_backoff *b)
{
  if (b->o.max_attempts > 0 && b->calls + 1 >= b->o.max_attempts)
    return WEFT_BACKOFF_STOP;
  b->calls++;
  int64_t elapsed = weft_backoff_elapsed(b);
  int64_t next = draw(b);
  advance_interval(b);
  if (b->o.max_elapsed_time != 0 && elapsed > b->o.max_elapsed_time - next)
    return WEFT_BACKOFF_STOP;
  return next;
}

/* ---- metrics ---- */

struct retry_metrics {
  weft_counter *attempts, *retries;
  weft_counter_vec *calls;
};

/* Families shared by every retry of a registry: -EEXIST with a compatible family is the
 * normal case after the first call. */
static void metrics_get(const weft_backoff_options *o, struct retry_metrics *m)
{
  *m = (struct retry_metrics){0};
  if (o->metrics == NULL)
    return;
  static const char *const name[] = {"name"}, *const name_result[] = {"name", "result"};
  weft_counter_vec *v = NULL;
  weft_counter_vec_new(o->metrics, "weft_retry_attempts_total", "Calls of retried operations.",
                       1, name, &v);
  m->attempts = weft_counter_vec_with(v, o->name);
  v = NULL;
  weft_counter_vec_new(o->metrics, "weft_retry_retries_total",
                       "Back-off sleeps started between attempts.", 1, name, &v);
  m->retries = weft_counter_vec_with(v, o->name);
  weft_counter_vec_new(o->metrics, "weft_retry_calls_total",
                       "Retry loops by result: ok, permanent, exhausted, canceled.", 2,
                       name_result, &m->calls);
}

static int finish(const weft_backoff_options *o, struct retry_metrics *m, const char *result,
                  int rc)
{
  if (m->calls)
    weft_counter_inc(weft_counter_vec_with(m->calls, o->name, result));
  return rc;
}

/* ---- retry ---- */

int weft_retry(weft_ctx *ctx, const weft_backoff_options *opts, weft_retry_fn op, void *arg,
               weft_retry_notify_fn notify, weft_retry_stats *stats)
{
  weft_backoff_options o = opts ? *opts : WEFT_BACKOFF_DEFAULTS;
  if (op == NULL || !options_valid(&o))
    return -EINVAL;
  weft_backoff b;
  backoff_init(&b, &o);
  struct retry_metrics m;
  metrics_get(&o, &m);
  weft_retry_stats st = {0};
  if (stats == NULL)
    stats = &st;
  *stats = (weft_retry_stats){0};
  for (;;) {
    int err = op(ctx, arg);
    stats->attempts++;
    weft_counter_inc(m.attempts);
    stats->last_err = weft_retry_unwrap(err);
    if (err == 0)
      return finish(&o, &m, "ok", 0);
    if (weft_retry_is_permanent(err))
      return finish(&o, &m, "permanent", stats->last_err);
    /* cenkalti wraps the back-off in one that stops once ctx is done: no notify then. */
    int cerr = weft_ctx_err(ctx);
    if (cerr != 0)
      return finish(&o, &m, "canceled", cerr);
    int64_t next = weft_backoff_next(&b);
    if (next == WEFT_BACKOFF_STOP)
      return finish(&o, &m, "exhausted", err);
    if (notify)
      notify(err, next, arg);
    weft_counter_inc(m.retries);
    stats->total_delay += next;
    int rc = weft_clock_sleep(o.clock, ctx, next);
    if (rc != 0)
      return finish(&o, &m, "canceled", rc);
  }
}
