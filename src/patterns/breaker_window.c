/* breaker_window.c: count- and time-based sliding windows for circuit breakers.
 *
 * Invariants (checked by window_check in debug builds): calls, failures and slow are the
 * sums over the live outcomes (COUNT: the filled slots; TIME: the buckets of the seconds
 * latest - size + 1 .. latest), failures <= calls, slow <= calls; COUNT: filled <= size.
 * Guarded by the owning breaker's mutex. */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "breaker_window.h"

#define WINDOW_MAX_SIZE 1000000
#define NS_PER_S        1000000000LL

enum { OUT_FAILED = 1, OUT_SLOW = 2 };

int weft__breaker_window_resolve(weft_breaker_window *w)
{
  if (w->type == WEFT_BREAKER_WINDOW_NONE)
    return 0;
  if (w->type != WEFT_BREAKER_WINDOW_COUNT && w->type != WEFT_BREAKER_WINDOW_TIME)
    return -EINVAL;
  if (w->size > WINDOW_MAX_SIZE)
    return -EINVAL;
  if (w->size <= 0)
    w->size = 100;
  if (w->minimum_calls <= 0)
    w->minimum_calls = 100;
  /* resilience4j: a count window can never hold more than size calls. */
  if (w->type == WEFT_BREAKER_WINDOW_COUNT && w->minimum_calls > w->size)
    w->minimum_calls = w->size;
  if (!(w->failure_rate_threshold > 0)) /* NaN too */
    w->failure_rate_threshold = 50;
  if (w->slow_call_duration <= 0)
    w->slow_call_duration = 60 * NS_PER_S;
  if (!(w->slow_call_rate_threshold > 0))
    w->slow_call_rate_threshold = 100;
  return 0;
}

static void window_check(const struct weft__breaker_window *w)
{
#ifndef NDEBUG
  uint64_t c = 0, f = 0, s = 0;
  if (w->cfg.size > 4096) /* keep debug builds linear in the calls, not the window */
    return;
  if (w->cfg.type == WEFT_BREAKER_WINDOW_COUNT) {
    assert(w->filled >= 0 && w->filled <= w->cfg.size);
    for (int i = 0; i < w->filled; i++) {
      uint8_t o = w->ring[(w->head - 1 - i + 2 * w->cfg.size) % w->cfg.size];
      c++, f += (o & OUT_FAILED) != 0, s += (o & OUT_SLOW) != 0;
    }
  } else if (w->cfg.type == WEFT_BREAKER_WINDOW_TIME) {
    for (int i = 0; i < w->cfg.size; i++)
      c += w->buckets[i].calls, f += w->buckets[i].failures, s += w->buckets[i].slow;
  }
  assert(c == w->calls && f == w->failures && s == w->slow);
#else
  (void)w;
#endif
}

int weft__breaker_window_init(struct weft__breaker_window *w, const weft_breaker_window *cfg)
{
  memset(w, 0, sizeof *w);
  w->cfg = *cfg;
  if (cfg->type == WEFT_BREAKER_WINDOW_COUNT)
    w->ring = calloc((size_t)cfg->size, sizeof *w->ring);
  else if (cfg->type == WEFT_BREAKER_WINDOW_TIME)
    w->buckets = calloc((size_t)cfg->size, sizeof *w->buckets);
  else
    return 0;
  return w->ring || w->buckets ? 0 : -ENOMEM;
}

void weft__breaker_window_destroy(struct weft__breaker_window *w)
{
  free(w->ring);
  free(w->buckets);
  w->ring = NULL;
  w->buckets = NULL;
}

void weft__breaker_window_clear(struct weft__breaker_window *w)
{
  if (w->ring)
    memset(w->ring, 0, (size_t)w->cfg.size * sizeof *w->ring);
  if (w->buckets)
    memset(w->buckets, 0, (size_t)w->cfg.size * sizeof *w->buckets);
  w->head = w->filled = 0;
  w->started = false;
  w->latest = 0;
  w->calls = w->failures = w->slow = 0;
}

/* floor(now / 1 s), right for negative times too. */
static int64_t second_of(int64_t now)
{
  return now >= 0 ? now / NS_PER_S : -((-now + NS_PER_S - 1) / NS_PER_S);
}

static void bucket_drop(struct weft__breaker_window *w, struct weft__breaker_bucket *b)
{
  w->calls -= b->calls;
  w->failures -= b->failures;
  w->slow -= b->slow;
  memset(b, 0, sizeof *b);
}

/* Move the TIME window to now's second, expiring the buckets that fell out of it. A clock
 * that reads earlier than latest (it should not) is taken as latest. */
static struct weft__breaker_bucket *time_advance(struct weft__breaker_window *w, int64_t now)
{
  int64_t sec = second_of(now), size = w->cfg.size;
  if (!w->started) {
    w->started = true;
    w->latest = sec;
  } else if (sec > w->latest) {
    if (sec - w->latest >= size) {
      weft__breaker_window_clear(w);
      w->started = true;
    } else {
      for (int64_t s = w->latest + 1; s <= sec; s++)
        bucket_drop(w, &w->buckets[((s % size) + size) % size]);
    }
    w->latest = sec;
  }
  return &w->buckets[((w->latest % size) + size) % size];
}

void weft__breaker_window_record(struct weft__breaker_window *w, int64_t now, bool failed,
                                 bool slow)
{
  if (w->cfg.type == WEFT_BREAKER_WINDOW_COUNT) {
    if (w->filled == w->cfg.size) {
      uint8_t old = w->ring[w->head];
      w->calls--, w->failures -= (old & OUT_FAILED) != 0, w->slow -= (old & OUT_SLOW) != 0;
    } else {
      w->filled++;
    }
    w->ring[w->head] = (uint8_t)((failed ? OUT_FAILED : 0) | (slow ? OUT_SLOW : 0));
    w->head = (w->head + 1) % w->cfg.size;
  } else if (w->cfg.type == WEFT_BREAKER_WINDOW_TIME) {
    struct weft__breaker_bucket *b = time_advance(w, now);
    b->calls++, b->failures += failed, b->slow += slow;
  } else {
    return;
  }
  w->calls++, w->failures += failed, w->slow += slow;
  window_check(w);
}

bool weft__breaker_rates_trip(const weft_breaker_window *cfg, uint64_t calls, uint64_t failures,
                              uint64_t slow)
{
  if (calls == 0)
    return false;
  double fr = 100.0 * (double)failures / (double)calls;
  double sr = 100.0 * (double)slow / (double)calls;
  return fr >= cfg->failure_rate_threshold || sr >= cfg->slow_call_rate_threshold;
}

bool weft__breaker_window_should_trip(struct weft__breaker_window *w, int64_t now)
{
  if (w->cfg.type == WEFT_BREAKER_WINDOW_NONE)
    return false;
  if (w->cfg.type == WEFT_BREAKER_WINDOW_TIME && w->started)
    time_advance(w, now);
  window_check(w);
  if (w->calls < (uint64_t)w->cfg.minimum_calls)
    return false;
  return weft__breaker_rates_trip(&w->cfg, w->calls, w->failures, w->slow);
}
