/* faults.c: what the process does wrong on purpose.
 *
 * Per request: API request number n (in arrival order, counted atomically) gets the n-th
 * draw of a stream seeded by --seed: a uniform deciding the 503 (--error-rate) and a
 * log-normal delay (--latency-median, --latency-p99). Decisions belong to requests, not to
 * paths, so a retry of the same path may succeed; the answer's body never depends on them.
 * A draw is a pure function of (seed, n), computed without a lock: concurrent requests
 * take distinct n.
 *
 * Latency: ln(delay) ~ N(mu, sigma) with mu = ln(median) and sigma = ln(p99 / median) /
 * z(0.99), z(0.99) = 2.3263: the log-normal whose median and 99th percentile are the ones
 * asked for. Without a p99 the delay is the median exactly; without either, none. A draw
 * is capped at 100 times the p99 so that one unlucky sample cannot hold a connection for
 * minutes.
 *
 * Outage windows are fixed at start (flags.c sorts and merges them), so looking one up
 * needs no lock either. */
#include <math.h>

#include "upstream.h"

#define Z99 2.3263478740408408

uint64_t up_mix64(uint64_t x)
{
  x += 0x9e3779b97f4a7c15u;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
  return x ^ (x >> 31);
}

/* A uniform in (0, 1]: never 0, so that its logarithm is finite. */
static double uniform(uint64_t r)
{
  return ((double)(r >> 11) + 1.0) * 0x1p-53;
}

void up_faults_init(up_app *app)
{
  const up_opts *o = app->o;
  app->lat_mu = o->latency_median > 0 ? log((double)o->latency_median) : 0;
  app->lat_sigma = o->latency_median > 0 && o->latency_p99 > o->latency_median
                       ? log((double)o->latency_p99 / (double)o->latency_median) / Z99
                       : 0;
}

static int64_t delay_of(const up_app *app, uint64_t r1, uint64_t r2)
{
  const up_opts *o = app->o;
  if (o->latency_median <= 0)
    return 0;
  if (app->lat_sigma == 0)
    return o->latency_median;
  /* Box-Muller: one standard normal from two uniforms. */
  double z = sqrt(-2.0 * log(uniform(r1))) * cos(2.0 * M_PI * uniform(r2));
  double ns = exp(app->lat_mu + app->lat_sigma * z);
  double cap = 100.0 * (double)o->latency_p99;
  return (int64_t)(ns < cap ? ns : cap);
}

up_draw up_faults_draw(up_app *app)
{
  uint64_t n = atomic_fetch_add_explicit(&app->seq, 1, memory_order_relaxed);
  uint64_t r0 = up_mix64(app->o->seed ^ up_mix64(n));
  uint64_t r1 = up_mix64(r0), r2 = up_mix64(r1);
  up_draw d = {.unavailable = uniform(r0) <= app->o->error_rate && app->o->error_rate > 0,
               .delay = delay_of(app, r1, r2)};
  return d;
}

const up_window *up_outage_at(const up_opts *o, int64_t t)
{
  for (int i = 0; i < o->nwindows && o->windows[i].start <= t; i++)
    if (t < o->windows[i].end)
      return &o->windows[i];
  return NULL;
}
