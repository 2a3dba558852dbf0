/* weft/breaker.h: circuit breakers (sony/gobreaker v2, with resilience4j's sliding windows).
 *
 * A breaker stands in front of a dependency and stops calling it while it fails, so that a
 * sick upstream is given time to recover and callers fail fast instead of piling up:
 *
 *        failure and ready_to_trip          timeout elapsed (seen lazily, on the next call)
 *   CLOSED ------------------------> OPEN --------------------------------> HALF_OPEN
 *     ^                               ^                                      |    |
 *     |                               +---- a failure (or a bad quota) ------+    |
 *     +-------------------- max_requests consecutive successes -------------------+
 *
 *   CLOSED     every call is let through and its result counted; with an interval > 0 the
 *              counts are cleared every interval (a new generation each time).
 *   OPEN       every call is rejected with -WEFT_EOPEN until timeout has passed since the
 *              breaker opened; the next call then finds it HALF_OPEN (nothing runs in the
 *              background: the check is made lazily, as gobreaker does).
 *   HALF_OPEN  max_requests calls are let through as probes; the next ones are rejected
 *              with -WEFT_ETOOMANY. Without a window: any failure reopens, max_requests
 *              consecutive successes close. With a window (below): once max_requests
 *              probes have reported, their failure and slow-call rates decide, as in
 *              resilience4j (a rate at or above its threshold reopens, else it closes).
 *
 * Counting. A call is counted as a request when it is let through (before it runs). Its
 * result is classified when it reports: excluded (is_excluded: counts as neither, e.g.
 * cancellation or a 404 that is an answer), else a success or a failure (is_successful).
 * Every state change and every interval expiry starts a new generation and clears the
 * counts; a result that reports in a later generation than the one that let it through is
 * dropped, so a slow call started while closed cannot close or reopen the breaker after it
 * tripped.
 *
 * Sliding windows (resilience4j). With window.type set, the breaker also trips when, over
 * the last window.size calls (COUNT) or the last window.size seconds (TIME, one bucket per
 * second), at least minimum_calls results were recorded and either the failure rate or
 * the slow-call rate (calls taking slow_call_duration or longer, measured from allow to
 * done on the breaker's clock) reaches its threshold. The window is evaluated after every
 * recorded result while closed (so slow successes can trip it too) and cleared on every
 * state change (an interval's new generation leaves it alone: use one or the other). The
 * consecutive-failure rule still applies when ready_to_trip or trip_after_failures is
 * given; with a window and neither, only the window trips.
 *
 * Metrics. Given a registry and a name in the options, a breaker keeps
 *   weft_breaker_state{breaker}                 gauge: 0 closed, 1 half-open, 2 open
 *   weft_breaker_calls_total{breaker,result}    result: success, failure, rejected, excluded
 *                                               (every call that ran reports, dropped or not)
 *   weft_breaker_transitions_total{breaker,to}  to: closed, half_open, open
 * With a NULL registry it keeps none (pass weft_metrics_default() for the dashboard).
 *
 * Threads. Every function may be called from any thread or coroutine. Each breaker has
 * one pthread mutex, held only for a few dozen instructions and never across a park or a
 * call's own work; callbacks are called under it (see below). Only weft_breaker_execute
 * parks, and only if the function it runs parks. */
#ifndef WEFT_BREAKER_H
#define WEFT_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

#include "clock.h"
#include "common.h"
#include "error.h"
#include "metrics.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_breaker weft_breaker;

/* A breaker's state; the values are those of the weft_breaker_state gauge. */
typedef enum weft_breaker_state {
  WEFT_BREAKER_CLOSED = 0,
  WEFT_BREAKER_HALF_OPEN = 1,
  WEFT_BREAKER_OPEN = 2,
} weft_breaker_state;

/* The counts of the current generation (gobreaker's Counts). */
typedef struct weft_breaker_counts {
  uint64_t requests;              /* calls let through (counted before they run) */
  uint64_t total_successes;       /* results classified successful */
  uint64_t total_failures;        /* results classified failed */
  uint64_t total_exclusions;      /* results excluded: counted as neither */
  uint64_t consecutive_successes; /* successes since the last failure */
  uint64_t consecutive_failures;  /* failures since the last success */
} weft_breaker_counts;

/* Sliding-window trip policy (resilience4j). Zeroed: no window. */
typedef enum weft_breaker_window_type {
  WEFT_BREAKER_WINDOW_NONE = 0, /* gobreaker: ready_to_trip only */
  WEFT_BREAKER_WINDOW_COUNT,    /* the last size calls */
  WEFT_BREAKER_WINDOW_TIME,     /* the calls of the last size seconds, one bucket a second */
} weft_breaker_window_type;

typedef struct weft_breaker_window {
  weft_breaker_window_type type;
  int size;          /* calls (COUNT) or seconds (TIME); <= 0: 100; at most 1000000 */
  int minimum_calls; /* results needed before a rate is judged; <= 0: 100. For COUNT,
                        a minimum above size is lowered to size */
  double failure_rate_threshold;   /* percent; <= 0: 50; above 100: never trips on it */
  int64_t slow_call_duration;      /* ns; <= 0: 60 s */
  double slow_call_rate_threshold; /* percent; <= 0: 100; above 100: never trips on it */
} weft_breaker_window;

/* A breaker's settings. Zeroed, each takes gobreaker's default. Copied by weft_breaker_new
 * (name too); the callbacks and their arg must stay valid while the breaker lives. */
typedef struct weft_breaker_options {
  const char *name;  /* the breaker's name: hook argument and metrics label; NULL: "" */
  weft_clock *clock; /* NULL: the real clock; a fake clock makes tests exact */
  /* Probes let through in half-open, and consecutive successes that close it; 0: 1. */
  uint32_t max_requests;
  /* While closed, clear the counts every interval ns (a new generation); <= 0: never. */
  int64_t interval;
  /* How long the breaker stays open before it half-opens, ns; <= 0: 60 s. */
  int64_t timeout;
  /* Called after each failure while closed, under the lock, with the counts including
   * that failure: true trips the breaker. NULL: trip_after_failures decides. Must not
   * call into this breaker. */
  bool (*ready_to_trip)(const weft_breaker_counts *counts, void *arg);
  /* Without ready_to_trip: trip at this many consecutive failures. 0: 6 (gobreaker's
   * consecutive_failures > 5), or none when a window is set (only the window trips). */
  uint32_t trip_after_failures;
  /* Called on every state change, synchronously under the breaker's lock, in the order
   * the changes happen. It must be quick, must not park and must not call into this
   * breaker (that would deadlock). NULL: none. */
  void (*on_state_change)(const char *name, weft_breaker_state from, weft_breaker_state to,
                          void *arg);
  /* Classify a result err (what the call returned). NULL: err == 0 is a success. */
  bool (*is_successful)(int err, void *arg);
  /* true: the result counts as neither success nor failure (and a half-open probe that
   * reports so frees its slot). NULL: nothing is excluded. Checked first. */
  bool (*is_excluded)(int err, void *arg);
  void *arg;                  /* passed to every callback above */
  weft_breaker_window window; /* zeroed: no sliding window */
  /* Registry for the metrics above (NULL: none); all breakers in one registry share the
   * families, one child per name. */
  weft_metrics_registry *metrics;
} weft_breaker_options;

/* What allow hands out and done takes back: caller-owned storage, opaque contents. */
typedef struct weft_breaker_ticket {
  uint64_t generation; /* the generation that let the call through */
  int64_t start;       /* when it was let through, on the breaker's clock */
} weft_breaker_ticket;

/* weft_breaker_new: a closed breaker with opts (NULL: all defaults). Returns a new
 * reference (release it with weft_breaker_release), or NULL when out of memory or opts
 * are invalid (a window type out of range, or a window size above 1000000). Any thread;
 * never parks. */
WEFT_API weft_breaker *weft_breaker_new(const weft_breaker_options *opts);

/* weft_breaker_retain: take another reference to b; returns b. Any thread; never parks. */
WEFT_API weft_breaker *weft_breaker_retain(weft_breaker *b);

/* weft_breaker_release: drop a reference; the last one frees b. Calls still holding a
 * ticket must have reported (or never will). NULL is ignored. Any thread; never parks. */
WEFT_API void weft_breaker_release(weft_breaker *b);

/* weft_breaker_allow: ask to make a call (step one of the two-step form). On 0 the call
 * is counted as a request and *ticket filled: make the call, then report its result with
 * weft_breaker_done exactly once. Returns 0; -WEFT_EOPEN when open (the call must not be
 * made); -WEFT_ETOOMANY when half-open and its probes are all out; -EINVAL if b or ticket
 * is NULL. A rejection leaves *ticket unchanged and needs no done. Any thread; never parks;
 * may run on_state_change (open -> half-open; an interval expiry starts a new generation
 * without a state change, so without a hook call). */
WEFT_API int weft_breaker_allow(weft_breaker *b, weft_breaker_ticket *ticket);

/* weft_breaker_done: report the result err of a call allowed with *ticket (step two).
 * err is classified by is_excluded then is_successful; a result from an older generation
 * is dropped (counted only in weft_breaker_calls_total). May change the state and run
 * on_state_change / ready_to_trip. NULL b or ticket is ignored. Any thread; never parks. */
WEFT_API void weft_breaker_done(weft_breaker *b, const weft_breaker_ticket *ticket, int err);

/* weft_breaker_execute: allow, then fn(arg) if allowed, then done with its result.
 * Returns fn's result (a negative errno for failure, as everywhere in weft), or, without
 * running fn, -WEFT_EOPEN, -WEFT_ETOOMANY, or -EINVAL (b or fn NULL). Any thread or
 * coroutine; parks only if fn parks (no breaker lock is held while fn runs). */
WEFT_API int weft_breaker_execute(weft_breaker *b, int (*fn)(void *arg), void *arg);

/* weft_breaker_state_get: b's state now (an open breaker whose timeout has passed reads
 * HALF_OPEN and changes to it, as gobreaker's State does; NULL reads CLOSED). Any thread;
 * never parks; may run on_state_change. */
WEFT_API weft_breaker_state weft_breaker_state_get(weft_breaker *b);

/* weft_breaker_counts_get: b's counts in the current generation (after the same lazy
 * state check; NULL: zeros). Any thread; never parks; may run on_state_change. */
WEFT_API weft_breaker_counts weft_breaker_counts_get(weft_breaker *b);

/* weft_breaker_name: b's name (borrowed, lives as long as b; "" for NULL). Any thread. */
WEFT_API const char *weft_breaker_name(const weft_breaker *b);

/* weft_breaker_state_name: "closed", "half_open" or "open" ("unknown" otherwise). */
WEFT_API const char *weft_breaker_state_name(weft_breaker_state s);

/* ---- a registry of breakers keyed by endpoint ----
 * One breaker per key (an API, a host), created on first use from a template, named by
 * its key. Thread safe: lookups of existing keys share a read lock. */
typedef struct weft_breaker_registry weft_breaker_registry;

/* weft_breaker_registry_new: an empty registry whose breakers take tmpl's options (NULL:
 * defaults; tmpl->name is ignored; copied now). NULL when out of memory or tmpl is
 * invalid. The caller owns it. Any thread; never parks. */
WEFT_API weft_breaker_registry *weft_breaker_registry_new(const weft_breaker_options *tmpl);

/* weft_breaker_registry_get: the breaker for key, created on first use (concurrent first
 * uses of one key get the same breaker). Returns it borrowed (valid until the registry is
 * freed; retain it to keep it longer), or NULL if reg or key is NULL or memory ran out.
 * Any thread; never parks (takes a short pthread rwlock). */
WEFT_API weft_breaker *weft_breaker_registry_get(weft_breaker_registry *reg, const char *key);

/* weft_breaker_registry_len: how many breakers reg holds. Any thread; never parks. */
WEFT_API size_t weft_breaker_registry_len(weft_breaker_registry *reg);

/* weft_breaker_registry_free: release every breaker and free reg. Nobody may use reg (or a
 * borrowed breaker) during or after the call. NULL is ignored. Any thread. */
WEFT_API void weft_breaker_registry_free(weft_breaker_registry *reg);

#ifdef __cplusplus
}
#endif
#endif
