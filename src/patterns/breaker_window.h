/* breaker_window.h: the sliding windows of a circuit breaker (resilience4j), private.
 *
 * A window records the outcome of each call (failed or not, slow or not) and keeps running
 * totals, so judging it is O(1). COUNT keeps the last size outcomes in a ring; TIME keeps
 * size one-second buckets in a ring indexed by the second, expiring whole buckets as time
 * moves on. A window belongs to its breaker and is guarded by the breaker's mutex. */
#ifndef WEFT_PATTERNS_BREAKER_WINDOW_H
#define WEFT_PATTERNS_BREAKER_WINDOW_H

#include <stdbool.h>
#include <stdint.h>

#include "weft/breaker.h"

struct weft__breaker_bucket {
  uint32_t calls;    /* results recorded in this second */
  uint32_t failures; /* of which failed */
  uint32_t slow;     /* of which slow */
};

struct weft__breaker_window {
  weft_breaker_window cfg;              /* resolved: defaults filled in */
  uint8_t *ring;                        /* COUNT: size outcomes (bit 0 failed, bit 1 slow) */
  struct weft__breaker_bucket *buckets; /* TIME: size buckets, second s at s % size */
  int head;                             /* COUNT: next slot to write */
  int filled;                           /* COUNT: slots holding an outcome (<= size) */
  bool started;                         /* TIME: latest is meaningful */
  int64_t latest;                       /* TIME: the newest second with a live bucket */
  uint64_t calls, failures, slow;       /* totals over the live outcomes */
};

/* weft__breaker_window_resolve: fill the defaults of *w; -EINVAL if it is invalid. */
int weft__breaker_window_resolve(weft_breaker_window *w);
/* weft__breaker_window_init: allocate for cfg (resolved). 0 or -ENOMEM. NONE: nothing. */
int weft__breaker_window_init(struct weft__breaker_window *w, const weft_breaker_window *cfg);
void weft__breaker_window_destroy(struct weft__breaker_window *w);
/* weft__breaker_window_clear: forget every outcome. */
void weft__breaker_window_clear(struct weft__breaker_window *w);
/* weft__breaker_window_record: add one outcome at time now (ns). */
void weft__breaker_window_record(struct weft__breaker_window *w, int64_t now, bool failed,
                                 bool slow);
/* weft__breaker_window_should_trip: whether the rates at now reach a threshold (with at
 * least minimum_calls recorded). */
bool weft__breaker_window_should_trip(struct weft__breaker_window *w, int64_t now);
/* weft__breaker_rates_trip: whether failures or slow out of calls reach cfg's thresholds
 * (no minimum): the half-open verdict. */
bool weft__breaker_rates_trip(const weft_breaker_window *cfg, uint64_t calls, uint64_t failures,
                              uint64_t slow);

#endif
