/* weft/retry.h: retries with exponential back-off and jitter, as cenkalti/backoff v4.
 *
 * A weft_backoff computes the delays between attempts. The default policy is cenkalti's
 * exponential back-off: the n-th delay is drawn uniformly from [cur·(1−f), cur·(1+f)]
 * where cur starts at initial_interval and, after each draw, becomes
 * min(cur·multiplier, max_interval). With the defaults (500 ms, f 0.5, multiplier 1.5,
 * max 60 s) the un-randomised delays are 500, 750, 1125, 1687.5 ms ... up to 60 s. The
 * full-jitter policy (AWS, "Exponential Backoff And Jitter") draws each delay from
 * [0, cur] instead, with the same progression of cur: set multiplier 2 for AWS's
 * min(cap, base·2^n). Back-off stops (WEFT_BACKOFF_STOP) when elapsed + next delay would
 * pass max_elapsed_time (elapsed counts from the last reset, as in cenkalti, not from the
 * first failure), or when max_attempts calls have been made.
 *
 * weft_retry(ctx, opts, op, arg, notify, stats) runs op until it succeeds (returns 0),
 * returns a permanent error (weft_retry_permanent), the back-off stops, or ctx is done,
 * sleeping on the options' clock (a fake clock in tests) between attempts.
 *
 * Randomness comes from a small generator per back-off, seeded from the options (seed 0:
 * a random seed), so tests fix the seed and get the same delays every run.
 *
 * Metrics (optional: opts->metrics and opts->name; NULL registry: none), counters with a
 * label name=<opts->name>:
 *   weft_retry_attempts_total  calls of op
 *   weft_retry_retries_total   back-off sleeps started (notify calls)
 *   weft_retry_calls_total{name, result}  weft_retry calls by result: "ok", "permanent",
 *                              "exhausted" (back-off stopped), "canceled" (ctx done) */
#ifndef WEFT_RETRY_H
#define WEFT_RETRY_H

#include <stdint.h>

#include "clock.h"
#include "common.h"
#include "ctx.h"
#include "metrics.h"

#ifdef __cplusplus
extern "C" {
#endif

/* weft_backoff_next's answer when no further attempt should be made. */
#define WEFT_BACKOFF_STOP ((int64_t)-1)

/* How delays are drawn from the current interval cur. */
typedef enum weft_backoff_policy {
  WEFT_BACKOFF_EXPONENTIAL = 0, /* uniform in [cur·(1−f), cur·(1+f)] (cenkalti) */
  WEFT_BACKOFF_FULL_JITTER = 1  /* uniform in [0, cur] (AWS full jitter); f is ignored */
} weft_backoff_policy;

/* Back-off settings. Every field is taken as given (a zero is not "the default": a
 * randomization factor of 0 means no jitter), so start from WEFT_BACKOFF_DEFAULTS:
 *   weft_backoff_options o = WEFT_BACKOFF_DEFAULTS;
 *   o.max_attempts = 5;
 * Durations are nanoseconds. */
typedef struct weft_backoff_options {
  int64_t initial_interval;       /* first cur; > 0. Default 500 ms */
  double randomization_factor;    /* f in [0, 1]. Default 0.5 */
  double multiplier;              /* >= 1. Default 1.5 */
  int64_t max_interval;           /* caps cur (not the randomised delay); >= initial. 60 s */
  int64_t max_elapsed_time;       /* stop when elapsed + next > this; 0: never. 15 min */
  int max_attempts;               /* most calls of op, first included (cenkalti's
                                     WithMaxRetries(n) is n + 1 here); 0: unlimited */
  weft_backoff_policy policy;     /* default WEFT_BACKOFF_EXPONENTIAL */
  weft_clock *clock;              /* elapsed time and sleeps; NULL: the real clock */
  uint64_t seed;                  /* of the random source; 0: a random seed */
  weft_metrics_registry *metrics; /* weft_retry's counters (see above); NULL: none */
  const char *name;               /* their name label; required with metrics (copied
                                     into the registry, borrowed otherwise) */
} weft_backoff_options;

/* cenkalti/backoff v4's defaults, plus unlimited attempts, the real clock, a random seed,
 * no metrics. */
#define WEFT_BACKOFF_DEFAULTS                                                \
  ((weft_backoff_options){.initial_interval = 500 * (int64_t)1000000,        \
                          .randomization_factor = 0.5,                       \
                          .multiplier = 1.5,                                 \
                          .max_interval = 60 * (int64_t)1000000000,          \
                          .max_elapsed_time = 15 * 60 * (int64_t)1000000000, \
                          .max_attempts = 0,                                 \
                          .policy = WEFT_BACKOFF_EXPONENTIAL})

/* ---- the back-off calculator ----
 * A weft_backoff is a plain state machine: it never sleeps. It is not thread safe: one
 * coroutine (or thread) uses it at a time. */
typedef struct weft_backoff weft_backoff;

/* weft_backoff_new: a back-off with opts (NULL: WEFT_BACKOFF_DEFAULTS), already reset
 * (elapsed time counts from now on its clock). opts is copied (clock and metrics are
 * borrowed: they must outlive the back-off). Returns 0 with *out set; -EINVAL if out is
 * NULL or a field is out of range (see weft_backoff_options); -ENOMEM. Any thread; never
 * parks. The caller owns *out: free it with weft_backoff_free. */
WEFT_API int weft_backoff_new(const weft_backoff_options *opts, weft_backoff **out);

/* weft_backoff_free: free b. NULL is ignored. Any thread. */
WEFT_API void weft_backoff_free(weft_backoff *b);

/* weft_backoff_reset: start over: cur = initial_interval, no attempts counted, elapsed
 * time measured from now on the clock. The random source is not reseeded. Any thread;
 * never parks. */
WEFT_API void weft_backoff_reset(weft_backoff *b);

/* weft_backoff_next: the delay to wait before the next attempt, in nanoseconds (>= 0),
 * or WEFT_BACKOFF_STOP when max_attempts calls have been made (each call to next counts
 * one more failed attempt: the first call is made after the first attempt) or when
 * elapsed + delay would pass max_elapsed_time. As cenkalti, cur advances even on the
 * call that stops. Any thread; never parks. */
WEFT_API int64_t weft_backoff_next(weft_backoff *b);

/* weft_backoff_elapsed: time on the clock since the last reset (ns). Any thread. */
WEFT_API int64_t weft_backoff_elapsed(const weft_backoff *b);

/* ---- retry ---- */

/* The operation: 0 for success; a negative error code to be retried; an error wrapped in
 * weft_retry_permanent() to stop at once. Positive results count as errors too (they are
 * returned unchanged). ctx is weft_retry's context (may be NULL). */
typedef int (*weft_retry_fn)(weft_ctx *ctx, void *arg);

/* Called before each back-off sleep (never when weft_retry is about to return), with the
 * error that failed the attempt and the delay about to be slept (ns). Runs on the
 * retrying coroutine; it may park, but its time counts against max_elapsed_time. */
typedef void (*weft_retry_notify_fn)(int err, int64_t delay, void *arg);

/* What a weft_retry call did (optional). */
typedef struct weft_retry_stats {
  int attempts;        /* calls of op */
  int64_t total_delay; /* back-off slept, ns on the clock (a sleep cut short by ctx counts
                          the delay it was given) */
  int last_err;        /* op's last result (0 after a success), permanent flag stripped */
} weft_retry_stats;

/* The bit weft_retry_permanent sets on an error's magnitude. */
#define WEFT_RETRY_PERMANENT_FLAG (1 << 29)

/* weft_retry_permanent: mark err (a negative code, magnitude below
 * WEFT_RETRY_PERMANENT_FLAG) as permanent: weft_retry stops at once and returns err
 * itself (the flag removed). 0 and codes out of range are returned unchanged. Any
 * thread. */
static inline int weft_retry_permanent(int err)
{
  return err < 0 && -err < WEFT_RETRY_PERMANENT_FLAG ? -(-err | WEFT_RETRY_PERMANENT_FLAG)
                                                     : err;
}

/* weft_retry_is_permanent: 1 if err was made by weft_retry_permanent, else 0. */
static inline int weft_retry_is_permanent(int err)
{
  return err < 0 && err > -(2 * WEFT_RETRY_PERMANENT_FLAG) &&
         (-err & WEFT_RETRY_PERMANENT_FLAG);
}

/* weft_retry_unwrap: err without the permanent flag. */
static inline int weft_retry_unwrap(int err)
{
  return weft_retry_is_permanent(err) ? -(-err & ~WEFT_RETRY_PERMANENT_FLAG) : err;
}

/* weft_retry: run op(ctx, arg) at least once (even if ctx is already done), and again
 * after each back-off delay (opts, NULL: WEFT_BACKOFF_DEFAULTS; elapsed time counts from
 * this call) while it fails, calling notify(err, delay, arg) (may be NULL) before each
 * sleep. Sleeps on opts->clock and ends a sleep as soon as ctx (NULL: never done) is done.
 * Returns:
 *   0 once op succeeds;
 *   op's error, unwrapped, at once when op returns a permanent error;
 *   ctx's error (-ECANCELED, -ETIMEDOUT) when ctx is done during a sleep, or is found
 *     done after a failed attempt (then without calling notify), as cenkalti, whose
 *     context back-off stops once ctx is done and whose Retry returns ctx.Err();
 *   op's last error when the back-off stops (max_attempts or max_elapsed_time);
 *   -EINVAL (op never called) if op is NULL or opts are invalid (see weft_backoff_new).
 * stats (may be NULL) is filled in every case but -EINVAL. Coroutine, may park (on the
 * clock: wait reason "sleep" or "fake clock"); honours ctx between attempts (op gets ctx
 * to honour it within an attempt). */
WEFT_API int weft_retry(weft_ctx *ctx, const weft_backoff_options *opts, weft_retry_fn op,
                        void *arg, weft_retry_notify_fn notify, weft_retry_stats *stats);

#ifdef __cplusplus
}
#endif
#endif
