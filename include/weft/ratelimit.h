/* weft/ratelimit.h: a token-bucket rate limiter, as golang.org/x/time/rate.
 *
 * A limiter admits events at limit per second on average, with bursts of up to burst
 * events. The bucket holds up to burst tokens, starts full, and refills continuously at
 * limit tokens per second; an event of n takes n tokens. Three ways to take them:
 *   allow_n    take them now if they are there, else refuse: never waits;
 *   reserve_n  take them now, going into debt if need be, and learn how long to wait
 *              before acting (a reservation, which may be cancelled to give the tokens
 *              back); reservations are served in call order;
 *   wait_n     reserve and sleep until the reservation is due, under a context.
 * WEFT_RATE_INF admits everything (burst is then ignored). A limit of 0 admits the burst
 * tokens in the bucket and then nothing (x/time/rate does the same, by shrinking burst).
 *
 * Time is read from the limiter's clock (NULL: the real clock; a fake clock makes tests
 * exact). Context deadlines are on weft_now()'s clock: wait_n compares the time left
 * before the deadline (deadline − weft_now()) with the delay on the limiter's clock.
 *
 * Thread safety: every call may be made from any thread or coroutine. A pthread mutex (a
 * leaf lock) guards the bucket; it is never held across a park or a metrics call.
 *
 * Metrics (optional: opts.metrics and opts.name; NULL registry: none), labelled
 * name=<opts.name>:
 *   weft_ratelimit_allowed_total   calls admitted (allow_n true, reserve_n ok, wait_n 0)
 *   weft_ratelimit_rejected_total  calls refused (allow_n false, reserve_n not ok,
 *                                  wait_n failed, including waits cut short by ctx)
 *   weft_ratelimit_waited_total    wait_n calls that had to sleep
 *   weft_ratelimit_wait_seconds    histogram: how long each successful wait_n waited
 *   weft_ratelimit_limit           gauge: the limit (events/s; +Inf)
 * Limiters given the same name in one registry share these series. */
#ifndef WEFT_RATELIMIT_H
#define WEFT_RATELIMIT_H

#include <math.h>
#include <stdint.h>

#include "clock.h"
#include "common.h"
#include "ctx.h"
#include "metrics.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A limit that admits every event (x/time/rate's Inf). */
#define WEFT_RATE_INF ((double)INFINITY)

/* weft_rate_every: the limit of one event every interval ns (0: WEFT_RATE_INF), as
 * rate.Every. Any thread. */
static inline double weft_rate_every(int64_t interval)
{
  return interval <= 0 ? WEFT_RATE_INF : 1e9 / (double)interval;
}

typedef struct weft_limiter weft_limiter;

/* Settings for weft_limiter_new_with. */
typedef struct weft_limiter_options {
  double limit;                   /* events per second, >= 0, or WEFT_RATE_INF */
  int burst;                      /* bucket size, >= 0 */
  weft_clock *clock;              /* NULL: the real clock; borrowed, must outlive it */
  weft_metrics_registry *metrics; /* register the metrics above here; NULL: none */
  const char *name;               /* their name label; required with metrics; copied */
} weft_limiter_options;

/* weft_limiter_new_with: a limiter with a full bucket. Returns 0 with *out set; -EINVAL
 * if out or opts is NULL, limit is negative or NaN, burst is negative, or metrics are
 * asked for without a name; -EEXIST if opts->metrics has a family of one of these names
 * of another type or labels; -ENOMEM. Any thread; never parks. The caller owns the one
 * reference in *out. */
WEFT_API int weft_limiter_new_with(const weft_limiter_options *opts, weft_limiter **out);

/* weft_limiter_new: weft_limiter_new_with without metrics; NULL if the arguments are
 * invalid or memory ran out. */
WEFT_API weft_limiter *weft_limiter_new(double limit, int burst, weft_clock *clock);

/* weft_limiter_retain / weft_limiter_release: reference counting; the last release frees
 * the limiter (its metrics stay in the registry).
 * Nobody may be waiting on it or keep a reservation to cancel then. NULL is ignored.
 * Any thread; never park. */
WEFT_API weft_limiter *weft_limiter_retain(weft_limiter *l);
WEFT_API void weft_limiter_release(weft_limiter *l);

/* weft_limiter_allow_n: take n tokens if the bucket holds them now; 1 if it did, 0 if not
 * (nothing taken: also when n > burst, n < 0 or l is NULL; n 0 is refused only while
 * reservations are in debt). Any thread; never parks. weft_limiter_allow is
 * allow_n(l, 1). */
WEFT_API int weft_limiter_allow_n(weft_limiter *l, int n);
WEFT_API int weft_limiter_allow(weft_limiter *l);

/* A reservation of tokens (reserve_n). Caller-provided storage; read it only through the
 * functions below. It borrows its limiter, which must outlive any call on it. */
typedef struct weft_reservation {
  weft_limiter *lim;   /* private: the limiter */
  int ok;              /* private: tokens were reserved */
  int tokens;          /* private: how many */
  int64_t time_to_act; /* private: when they are due, on the limiter's clock */
  double limit;        /* private: the limit at reservation time */
} weft_reservation;

/* weft_limiter_reserve_n: reserve n tokens for an event at time_to_act: now if the bucket
 * holds them, else when the refill will have paid the debt (after every earlier
 * reservation: call order). Fills *r. Returns 0 (r ok), or, with r not ok and nothing
 * reserved: -EINVAL if n > burst while the limit is finite, n < 0, or l or r is NULL;
 * -EAGAIN if the limit is 0 and the bucket holds fewer than n tokens (it never refills).
 * Any thread; never parks. weft_limiter_reserve is reserve_n(l, 1, r). */
WEFT_API int weft_limiter_reserve_n(weft_limiter *l, int n, weft_reservation *r);
WEFT_API int weft_limiter_reserve(weft_limiter *l, weft_reservation *r);

/* weft_reservation_ok: 1 if r holds tokens, else 0. Any thread. */
WEFT_API int weft_reservation_ok(const weft_reservation *r);

/* weft_reservation_delay: ns to wait from now on the limiter's clock before acting (0 if
 * due); INT64_MAX if r is not ok (x/time/rate's InfDuration). Any thread. */
WEFT_API int64_t weft_reservation_delay(const weft_reservation *r);

/* weft_reservation_delay_from: as delay, from time t on the limiter's clock. */
WEFT_API int64_t weft_reservation_delay_from(const weft_reservation *r, int64_t t);

/* weft_reservation_cancel: the event will not happen: give back as many tokens as
 * possible without letting reservations made after r act earlier than they were told
 * (x/time/rate's CancelAt: tokens reserved after r stay taken). Does nothing for a
 * reservation not ok, already due, with an infinite limit, or cancelled before (cancel
 * marks r not ok). Any thread; never parks. */
WEFT_API void weft_reservation_cancel(weft_reservation *r);

/* weft_limiter_wait_n: take n tokens, sleeping on the limiter's clock until they are due.
 * Returns
 *   0 once they are taken;
 *   -EINVAL at once if n > burst (limit finite) or n < 0, or l is NULL;
 *   ctx's error at once if ctx is already done, and when ctx is done during the sleep
 *     (the reservation is then cancelled: its tokens go back);
 *   -ETIMEDOUT at once, taking nothing, if the wait would end after ctx's deadline (as
 *     x/time/rate's "would exceed context deadline");
 *   -EAGAIN at once if the limit is 0 and the bucket is short (it would wait forever).
 * ctx NULL: never done, no deadline. Coroutine, may park (wait reason "sleep", or
 * "fake clock"); honours ctx. weft_limiter_wait is wait_n(l, ctx, 1). */
WEFT_API int weft_limiter_wait_n(weft_limiter *l, weft_ctx *ctx, int n);
WEFT_API int weft_limiter_wait(weft_limiter *l, weft_ctx *ctx);

/* weft_limiter_set_limit / set_burst: change the limit (>= 0 or WEFT_RATE_INF) or the
 * burst (>= 0) from now on (as SetLimit / SetBurst); tokens accrued so far at the old limit are
 * kept (capped at the burst). Reservations already made keep their time to act. Returns 0, or
 * -EINVAL for an invalid value. Any thread; never parks. */
WEFT_API int weft_limiter_set_limit(weft_limiter *l, double limit);
WEFT_API int weft_limiter_set_burst(weft_limiter *l, int burst);

/* weft_limiter_limit / burst: the current settings. Any thread. */
WEFT_API double weft_limiter_limit(weft_limiter *l);
WEFT_API int weft_limiter_burst(weft_limiter *l);

/* weft_limiter_tokens: the tokens in the bucket now (negative while reservations are in
 * debt). Any thread; never parks. */
WEFT_API double weft_limiter_tokens(weft_limiter *l);

#ifdef __cplusplus
}
#endif
#endif
