/* weft/pool.h: a worker pool with backpressure: a fixed number of worker coroutines fed
 * by a bounded queue (pond, ants, gammazero/workerpool in Go).
 *
 *   weft_pool *pool;
 *   weft_pool_new(&(weft_pool_options){.workers = 8, .queue_capacity = 100,
 *                                      .name = "confirm"}, &pool);
 *   weft_pool_job *job;
 *   if (weft_pool_try_submit(pool, confirm, req, &job) == -EAGAIN)
 *     return reply_429();                     // full: shed load, never wait
 *   long result;
 *   weft_pool_job_wait(job, req_ctx, &result); // the job's result, under a context
 *   weft_pool_job_free(job);
 *   ...
 *   long abandoned = weft_pool_shutdown(pool, weft_now() + 30000000000); // 30 s
 *   weft_pool_free(pool);
 *
 * Queue. At most queue_capacity jobs wait for a worker; jobs being run do not count.
 * weft_pool_submit parks while the queue is full (first come, first served among parked
 * submitters, which go ahead of try_submit); weft_pool_try_submit never parks and fails
 * with -EAGAIN instead: the backpressure behind a 429. Workers take jobs in FIFO order.
 *
 * Life of a pool:
 *
 *     open --close--> closed (draining) --queue empty, no job running--> drained
 *                        |                                                  ^
 *                        +--shutdown deadline: queued jobs abandoned,-------+
 *                           the pool's context cancelled, running jobs end
 *
 * open: submissions are accepted. closed: every submission fails with -EPIPE (parked
 * submitters wake with it), queued jobs still run. drained: every worker has returned.
 *
 * Jobs. A job is fn(ctx, arg) returning a long: >= 0 counts as completed, < 0 (by
 * convention a negative errno) as failed; C has no panics to recover. ctx is the pool's
 * context (weft_pool_ctx), cancelled only when weft_pool_shutdown's deadline passes: long
 * jobs should watch it. A job's result goes back to its submitter through a job handle
 * (job_out); with job_out NULL the job is fire-and-forget. A job is run at most once, and
 * every accepted job ends exactly once: run to its result, or abandoned at a shutdown
 * deadline without running, when its waiters get the result -ECANCELED (never silently
 * dropped). A job that submits to its own pool with weft_pool_submit may deadlock when
 * every worker does so while the queue is full: use try_submit there.
 *
 * Metrics. With a registry in the options (NULL: no metrics; pass weft_metrics_default()
 * for the process's registry, the one the dashboard shows), the pool registers, each with
 * the label pool="<name>" (give each pool of a registry its own name; two pools of one name
 * share their samples):
 *   gauges     weft_pool_queue_depth, weft_pool_queue_capacity, weft_pool_busy_workers,
 *              weft_pool_workers (live worker coroutines);
 *   counter    weft_pool_jobs_total{result="completed|failed|rejected|cancelled"};
 *   histograms weft_pool_queue_seconds (submission to start), weft_pool_work_seconds
 *              (the job's run), measured on the pool's clock.
 * The samples stay in the registry after weft_pool_free (registries never drop children).
 *
 * Ownership: the pool is the caller's (weft_pool_new / weft_pool_free). A job handle is
 * the submitter's until weft_pool_job_free; it does not refer to the pool, so it may
 * outlive it. arg is borrowed: it must stay valid until the job ends (run or abandoned);
 * the pool never frees it (see on_abandon for fire-and-forget jobs that own it). */
#ifndef WEFT_POOL_H
#define WEFT_POOL_H

#include <stdint.h>

#include "clock.h"
#include "common.h"
#include "ctx.h"
#include "metrics.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_pool weft_pool;
typedef struct weft_pool_job weft_pool_job;

/* A job: ctx is the pool's context (borrowed for the call), arg the submitter's. Returns
 * its result: >= 0 counts as completed, < 0 (a negative errno) as failed. */
typedef long (*weft_pool_fn)(weft_ctx *ctx, void *arg);

/* Options for weft_pool_new. */
typedef struct weft_pool_options {
  int workers;                    /* worker coroutines, >= 1 */
  size_t queue_capacity;          /* most jobs waiting for a worker, >= 1 */
  const char *name;               /* the metrics' pool label and the workers' coroutine
                                     name "<name> worker"; copied; NULL: "pool" */
  weft_metrics_registry *metrics; /* where to register the metrics; NULL: none */
  weft_clock *clock;              /* times queued/working and shutdown's deadline;
                                     NULL: the real clock; borrowed, must outlive the pool */
  /* Called once for each job abandoned at a shutdown deadline, with its arg, on the
   * coroutine calling weft_pool_shutdown, before the job's waiters are woken: lets
   * fire-and-forget jobs that own arg free it. May be NULL. Must not park. */
  void (*on_abandon)(void *arg);
} weft_pool_options;

/* A snapshot of a pool's state and counters (cumulative since weft_pool_new). */
typedef struct weft_pool_stats {
  size_t queue_depth;    /* jobs waiting for a worker */
  size_t queue_capacity; /* the bound on queue_depth */
  int workers;           /* worker coroutines alive (0 once drained) */
  int busy;              /* workers running a job */
  int closed;            /* 1 once weft_pool_close (or shutdown) was called */
  uint64_t submitted;    /* jobs accepted into the queue */
  uint64_t completed;    /* jobs that ran and returned >= 0 */
  uint64_t failed;       /* jobs that ran and returned < 0 */
  uint64_t rejected;     /* submissions refused: queue full (try_submit) or pool closed */
  uint64_t cancelled;    /* jobs abandoned without running at a shutdown deadline */
} weft_pool_stats;

/* weft_pool_new: a pool of opts->workers coroutines named "<name> worker" and a queue of
 * opts->queue_capacity jobs, with its metrics registered when opts->metrics is set.
 * opts: borrowed (name is copied). *out: the new pool, owned by the caller (NULL on error).
 * Returns 0; -EINVAL for opts or out NULL, workers < 1, queue_capacity < 1 or a name the
 * metrics refuse (not UTF-8); -ENOMEM; -EPERM when the runtime is not running; or a metrics
 * registration error (-EEXIST when a family of the same name but another shape exists).
 * Coroutine; never parks, except briefly when a worker could not be started (-ENOMEM): the
 * ones already started are then waited for. */
WEFT_API int weft_pool_new(const weft_pool_options *opts, weft_pool **out);

/* weft_pool_submit: queue fn(ctx, arg), parking while the queue is full.
 * ctx: the submitter's context (NULL: never cancelled), honoured only while waiting for
 * room; the job, once queued, runs whatever happens to ctx. job_out: receives a handle for
 * weft_pool_job_wait (owned by the caller: weft_pool_job_free), or NULL for fire-and-forget.
 * Returns 0 when queued; -EPIPE when the pool is or becomes closed; ctx's error
 * (-ECANCELED, -ETIMEDOUT) when ctx is done first; -EINVAL when pool or fn is NULL; -ENOMEM.
 * On failure fn never runs and *job_out is NULL. Coroutine, may park (wait reason
 * "select"). */
WEFT_API int weft_pool_submit(weft_pool *pool, weft_ctx *ctx, weft_pool_fn fn, void *arg,
                              weft_pool_job **job_out);

/* weft_pool_try_submit: weft_pool_submit that never waits. Returns 0 when queued; -EAGAIN
 * when the queue is full (counted as rejected: answer 429); -EPIPE when the pool is closed
 * (counted as rejected: answer 503); -EINVAL; -ENOMEM. A refusal allocates nothing. On
 * failure fn never runs and *job_out is NULL. Coroutine (it may take the pool's weft_mutex
 * briefly, held only for a few loads and stores), never waits for room. */
WEFT_API int weft_pool_try_submit(weft_pool *pool, weft_pool_fn fn, void *arg,
                                  weft_pool_job **job_out);

/* weft_pool_job_wait: park until the job has ended, then store its result in *result
 * (result may be NULL): fn's return value, or -ECANCELED if it was abandoned at a shutdown
 * deadline without running (weft_pool_job_ran tells the two apart). ctx: NULL never
 * cancelled. Returns 0 once ended; ctx's error when ctx is done first (the job goes on:
 * wait again, or free the handle). Several coroutines may wait on one handle while it is
 * held. Coroutine, may park (wait reason "pool job"); -EPERM on a thread that is not
 * running a coroutine, unless the job has already ended. */
WEFT_API int weft_pool_job_wait(weft_pool_job *job, weft_ctx *ctx, long *result);

/* weft_pool_job_wait_until: weft_pool_job_wait that also gives up at deadline (absolute,
 * weft_now() ns; WEFT_NO_DEADLINE: none) with -ETIMEDOUT; the job goes on. A request
 * handler's timeout without a context of its own: no allocation, and a timer only when
 * the wait parks. Coroutine, may park (wait reason "pool job"). */
WEFT_API int weft_pool_job_wait_until(weft_pool_job *job, weft_ctx *ctx, int64_t deadline,
                                      long *result);

/* weft_pool_job_is_done: 1 once the job has ended (its result is then ready), else 0.
 * Any thread; never parks. */
WEFT_API int weft_pool_job_is_done(const weft_pool_job *job);

/* weft_pool_job_ran: 1 if the job's function ran (started), 0 if it has not (yet) or was
 * abandoned. Any thread; never parks. */
WEFT_API int weft_pool_job_ran(const weft_pool_job *job);

/* weft_pool_job_free: drop the submitter's handle. A job not yet ended still runs (it is
 * then fire-and-forget). NULL is ignored. Nobody may be waiting on the handle. Any thread;
 * never parks. */
WEFT_API void weft_pool_job_free(weft_pool_job *job);

/* weft_pool_ctx: the context jobs are given: cancelled (cause -ETIMEDOUT) when a shutdown
 * deadline passes. Borrowed: valid until weft_pool_free. Any thread; never parks. */
WEFT_API weft_ctx *weft_pool_ctx(weft_pool *pool);

/* weft_pool_stats_read: fill *out with the pool's state. The fields are read one by one
 * without a lock, so they may be a few operations apart under load (depth never exceeds
 * capacity, busy never exceeds workers). Any thread; never parks. */
WEFT_API void weft_pool_stats_read(weft_pool *pool, weft_pool_stats *out);

/* weft_pool_close: take no more jobs: later submissions fail with -EPIPE and parked
 * submitters wake with it; queued and running jobs still run, after which the workers
 * return. Idempotent. Coroutine (takes the pool's weft_mutex briefly); never waits for
 * the jobs. */
WEFT_API void weft_pool_close(weft_pool *pool);

/* weft_pool_wait: park until the pool is drained: closed, its queue empty and every worker
 * returned (it waits for a close made by someone else). ctx: NULL never cancelled.
 * Returns 0 once drained, ctx's error, or -ENOMEM (no memory for the wait's channel).
 * Coroutine, may park (wait reason "select"). */
WEFT_API int weft_pool_wait(weft_pool *pool, weft_ctx *ctx);

/* weft_pool_shutdown: close the pool and let it drain until deadline (on the pool's clock,
 * monotonic ns; WEFT_NO_DEADLINE: wait for everything). If the pool drains in time, returns
 * 0. Otherwise, at the deadline: every job still queued is abandoned (taken off the queue,
 * on_abandon called with its arg, its waiters woken with the result -ECANCELED, counted
 * as cancelled: never run, never dropped silently), the pool's context is cancelled
 * (cause -ETIMEDOUT) so running jobs can stop early, and the call then waits for the
 * running jobs to return (a job that ignores its context delays it). Returns the number
 * of jobs abandoned (>= 0). The pool is drained when it returns. Safe to call more than
 * once and after weft_pool_close. Coroutine, may park. */
WEFT_API long weft_pool_shutdown(weft_pool *pool, int64_t deadline);

/* weft_pool_free: free the pool. A pool not yet drained is first closed and drained
 * without a deadline (parks until every queued job has run). Job handles stay valid.
 * NULL is ignored. Coroutine, may park (never once weft_pool_shutdown or weft_pool_wait
 * returned 0). */
WEFT_API void weft_pool_free(weft_pool *pool);

#ifdef __cplusplus
}
#endif
#endif
