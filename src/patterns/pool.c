/* pool.c: a worker pool with backpressure (weft/pool.h).
 *
 * Room in the queue is a token in `slots`, a channel of capacity queue_capacity: a
 * submitter first puts a token in (try_send never waits; submit selects on the send, the
 * `closing` channel and its context, so parked submitters are served first come, first
 * served and woken by close or their context), then links its job into the queue under
 * mu. A worker unlinks a job under mu and then takes one token out, which lets the oldest
 * parked submitter in.
 *
 * Invariants (mu held): tokens in slots == queued jobs + submitters between taking a token
 * and linking their job (or giving it back), so depth <= capacity; once closed is set no
 * job is linked (a submitter checks it under mu after taking its token); a worker returns
 * only when closed and the queue is empty, so no accepted job is left behind; every job
 * ends exactly once: by finish() after its run, or by abandon() when taken off the queue
 * at a shutdown deadline, never both (the job is on the queue for exactly one of them).
 *
 * Drained: `live` counts workers that have not returned; the last one cancels `drained`
 * (a context, so that waits can be bounded by a caller's context or the pool's clock)
 * after releasing mu, then calls weft_wg_done(&workers), its last touch of the pool:
 * weft_pool_free waits on `workers` before freeing.
 *
 * Locks: mu (a weft_mutex) guards the queue, closed, live and the state counters; held
 * only for a few loads and stores. Channels are sent to and contexts cancelled after it is
 * released, except try_recv on slots and close of closing, which never park (channel locks
 * are below mu in docs/internals/lock-order.md).
 *
 * The design that lost: the queue as a channel of job pointers with workers receiving from
 * it. Closing it would wake parked submitters, but a submitter whose select picked the
 * send just as the pool closed would slip a job in after the workers had drained and left,
 * and taking the queued jobs out at a deadline would race the workers' receives; a
 * mutex-guarded list makes "closed and empty" one atomic observation. */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <stdio.h>

#include "core/core.h"
#include "patterns/pool_internal.h"
#include "weft/chan.h"
#include "weft/pool.h"
#include "weft/runtime.h"
#include "weft/sync.h"

/* The metrics of one pool; all NULL without a registry (updates then do nothing). */
struct pool_metrics {
  weft_gauge *depth, *capacity, *busy, *workers;
  weft_counter *completed, *failed, *rejected, *cancelled;
  weft_histogram *queue_s, *work_s;
};

struct weft_pool {
  weft_mutex mu;          /* guards the fields marked so */
  weft_cond nonempty;     /* signalled when a job is linked or the pool closes */
  weft_pool_job *head;    /* the queue, oldest first; guarded by mu */
  weft_pool_job *tail;    /* guarded by mu */
  int closed;             /* guarded by mu; also in closed_flag for lock-free reads */
  int live;               /* workers not yet returned; guarded by mu */
  atomic_int closed_flag; /* relaxed copy of closed: a hint for try_submit and stats */
  atomic_size_t depth;    /* queued jobs; written under mu, read anywhere */
  atomic_int busy;        /* workers running a job: incremented under mu, decremented
                             without it (a job's end) */
  atomic_int nworkers;    /* as live; written under mu */
  atomic_uint_fast64_t submitted, completed, failed, rejected, cancelled; /* relaxed */
  size_t capacity;                                                        /* immutable */
  weft_chan *slots;              /* tokens of room (elem 1 byte, cap capacity); owned */
  weft_chan *closing;            /* closed by weft_pool_close; owned */
  weft_ctx *ctx;                 /* the jobs' context; owned */
  weft_ctx *drained;             /* cancelled by the last worker to return; owned */
  weft_wg workers;               /* counts workers not yet returned (their last touch) */
  weft_clock *clock;             /* borrowed */
  void (*on_abandon)(void *arg); /* immutable */
  struct pool_metrics m;         /* immutable handles */
  char name[64];                 /* immutable */
};

/* ---- metrics ---- */

static int metrics_gauges(weft_pool *p, weft_metrics_registry *reg)
{
  static const char *const label[] = {"pool"};
  static const struct {
    const char *name, *help;
    size_t off;
  } g[] = {
      {"weft_pool_queue_depth", "Jobs waiting for a worker.",
       offsetof(struct pool_metrics, depth)},
      {"weft_pool_queue_capacity", "Most jobs that may wait for a worker.",
       offsetof(struct pool_metrics, capacity)},
      {"weft_pool_busy_workers", "Workers running a job.", offsetof(struct pool_metrics, busy)},
      {"weft_pool_workers", "Worker coroutines alive.", offsetof(struct pool_metrics, workers)},
  };
  for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) {
    weft_gauge_vec *vec;
    int rc = weft_gauge_vec_new(reg, g[i].name, g[i].help, 1, label, &vec);
    if (rc && !(rc == -EEXIST && vec))
      return rc;
    weft_gauge *child = weft_gauge_vec_with(vec, p->name);
    if (!child)
      return -EINVAL;
    *(weft_gauge **)((char *)&p->m + g[i].off) = child;
  }
  return 0;
}

static int metrics_counters(weft_pool *p, weft_metrics_registry *reg)
{
  static const char *const labels[] = {"pool", "result"};
  weft_counter_vec *vec;
  int rc = weft_counter_vec_new(reg, "weft_pool_jobs_total",
                                "Jobs by outcome: completed (ran, result >= 0), failed (ran, "
                                "result < 0), rejected (not accepted), cancelled (abandoned "
                                "at a shutdown deadline).",
                                2, labels, &vec);
  if (rc && !(rc == -EEXIST && vec))
    return rc;
  p->m.completed = weft_counter_vec_with(vec, p->name, "completed");
  p->m.failed = weft_counter_vec_with(vec, p->name, "failed");
  p->m.rejected = weft_counter_vec_with(vec, p->name, "rejected");
  p->m.cancelled = weft_counter_vec_with(vec, p->name, "cancelled");
  return p->m.completed && p->m.failed && p->m.rejected && p->m.cancelled ? 0 : -EINVAL;
}

static int metrics_histogram(weft_pool *p, weft_metrics_registry *reg, const char *name,
                             const char *help, weft_histogram **out)
{
  static const char *const label[] = {"pool"};
  double buckets[17]; /* 100 us .. 6.6 s, doubling */
  weft_metrics_exponential_buckets(0.0001, 2, 17, buckets);
  weft_histogram_vec *vec;
  int rc = weft_histogram_vec_new(reg, name, help, 17, buckets, 1, label, &vec);
  if (rc && !(rc == -EEXIST && vec))
    return rc;
  *out = weft_histogram_vec_with(vec, p->name);
  return *out ? 0 : -EINVAL;
}

static int metrics_register(weft_pool *p, weft_metrics_registry *reg)
{
  int rc = metrics_gauges(p, reg);
  if (!rc)
    rc = metrics_counters(p, reg);
  if (!rc)
    rc = metrics_histogram(p, reg, "weft_pool_queue_seconds",
                           "Time jobs waited in the queue for a worker.", &p->m.queue_s);
  if (!rc)
    rc = metrics_histogram(p, reg, "weft_pool_work_seconds", "Time jobs took to run.",
                           &p->m.work_s);
  if (rc)
    return rc;
  weft_gauge_set(p->m.capacity, (double)p->capacity);
  return 0;
}

/* ---- state, under mu ---- */

static void set_depth(weft_pool *p, size_t depth)
{
  atomic_store_explicit(&p->depth, depth, memory_order_relaxed);
  weft_gauge_set(p->m.depth, (double)depth);
}

/* busy changes by one, under mu or not: a worker ending its job does not take mu. */
static void add_busy(weft_pool *p, int delta)
{
  atomic_fetch_add_explicit(&p->busy, delta, memory_order_relaxed);
  weft_gauge_add(p->m.busy, delta);
}

static void set_live(weft_pool *p, int live)
{
  p->live = live;
  atomic_store_explicit(&p->nworkers, live, memory_order_relaxed);
  weft_gauge_set(p->m.workers, live);
}

static void count(atomic_uint_fast64_t *n, weft_counter *c)
{
  atomic_fetch_add_explicit(n, 1, memory_order_relaxed);
  weft_counter_inc(c);
}

/* Debug builds: assert the invariants of the file comment (mu held). Walks the queue,
 * so only for small queues. */
static void check_invariants(weft_pool *p)
{
#ifndef NDEBUG
  size_t depth = atomic_load_explicit(&p->depth, memory_order_relaxed), n = 0;
  int busy = atomic_load_explicit(&p->busy, memory_order_relaxed);
  if (depth > p->capacity || busy < 0 || busy > p->live || (!p->head) != (depth == 0))
    weft__die("weft: pool %s: depth %zu of %zu, busy %d of %d workers", p->name, depth,
              p->capacity, busy, p->live);
  if (p->capacity > 1024)
    return;
  for (weft_pool_job *j = p->head; j; j = j->next)
    n++;
  if (n != depth)
    weft__die("weft: pool %s: %zu jobs linked but depth %zu", p->name, n, depth);
#else
  (void)p;
#endif
}

/* Give back a token taken for a job that was not linked, or for one a worker took off. */
static void slot_release(weft_pool *p)
{
  if (weft_chan_try_recv(p->slots, NULL) != 0)
    weft__die("weft: pool %s: a queue slot was released that was never taken", p->name);
}

/* ---- workers ---- */

/* The oldest queued job, waiting for one; NULL once closed and empty. Takes mu. */
static weft_pool_job *take_job(weft_pool *p)
{
  weft_mutex_lock(&p->mu);
  while (!p->head && !p->closed)
    weft_cond_wait(&p->nonempty, &p->mu);
  weft_pool_job *job = p->head;
  if (job) {
    p->head = job->next;
    if (!p->head)
      p->tail = NULL;
    job->next = NULL;
    set_depth(p, atomic_load_explicit(&p->depth, memory_order_relaxed) - 1);
    add_busy(p, 1);
    atomic_store_explicit(&job->state, JOB_RUNNING, memory_order_release);
  }
  check_invariants(p);
  int64_t queued_at = job ? job->queued_at : 0;
  weft_mutex_unlock(&p->mu);
  if (job) {
    slot_release(p); /* lets the oldest parked submitter in */
    if (p->m.queue_s)
      weft_histogram_observe_ns(p->m.queue_s, weft_clock_now(p->clock) - queued_at);
  }
  return job;
}

static void run_job(weft_pool *p, weft_pool_job *job)
{
  int64_t start = p->m.work_s ? weft_clock_now(p->clock) : 0; /* no metrics: no clock */
  long result = job->fn(p->ctx, job->arg);
  if (p->m.work_s)
    weft_histogram_observe_ns(p->m.work_s, weft_clock_now(p->clock) - start);
  add_busy(p, -1);
  if (result >= 0)
    count(&p->completed, p->m.completed);
  else
    count(&p->failed, p->m.failed);
  weft__pool_job_end(job, result, JOB_DONE);
}

static void worker(void *arg)
{
  weft_pool *p = arg;
  weft_pool_job *job;
  while ((job = take_job(p)))
    run_job(p, job);
  weft_mutex_lock(&p->mu);
  set_live(p, p->live - 1);
  int last = p->live == 0;
  weft_mutex_unlock(&p->mu);
  if (last)
    weft_ctx_cancel(p->drained); /* after mu: contexts are below it, but keep it short */
  weft_wg_done(&p->workers);     /* the last touch: weft_pool_free may free p now */
}

/* ---- creation ---- */

static int check_options(const weft_pool_options *o)
{
  return o && o->workers >= 1 && o->queue_capacity >= 1 ? 0 : -EINVAL;
}

static int pool_init(weft_pool *p, const weft_pool_options *o)
{
  snprintf(p->name, sizeof p->name, "%s", o->name ? o->name : "pool");
  weft_mutex_init(&p->mu);
  weft_cond_init(&p->nonempty);
  weft_wg_init(&p->workers);
  p->capacity = o->queue_capacity;
  p->clock = o->clock;
  p->on_abandon = o->on_abandon;
  p->slots = weft_chan_new(1, o->queue_capacity);
  p->closing = weft_chan_new(1, 0);
  p->ctx = weft_ctx_with_cancel(NULL);
  p->drained = weft_ctx_with_cancel(NULL);
  if (!p->slots || !p->closing || !p->ctx || !p->drained)
    return -ENOMEM;
  return o->metrics ? metrics_register(p, o->metrics) : 0;
}

static void pool_destroy(weft_pool *p)
{
  weft_chan_release(p->slots);
  weft_chan_release(p->closing);
  weft_ctx_release(p->ctx);
  weft_ctx_release(p->drained);
  free(p);
}

/* Start the workers; on failure close the pool and let those started return. */
static int start_workers(weft_pool *p, int n)
{
  char cname[80];
  snprintf(cname, sizeof cname, "%s worker", p->name);
  set_live(p, n);
  weft_wg_add(&p->workers, n);
  for (int i = 0; i < n; i++) {
    int rc = weft_go_named(worker, p, cname);
    if (rc == 0)
      continue;
    weft_mutex_lock(&p->mu);
    set_live(p, p->live - (n - i));
    weft_mutex_unlock(&p->mu);
    weft_wg_add(&p->workers, -(long)(n - i));
    return rc;
  }
  return 0;
}

int weft_pool_new(const weft_pool_options *opts, weft_pool **out)
{
  if (!out)
    return -EINVAL;
  *out = NULL;
  int rc = check_options(opts);
  if (rc)
    return rc;
  if (!weft_in_coroutine() && weft_procs() == 0)
    return -EPERM;
  weft_pool *p = calloc(1, sizeof *p);
  if (!p)
    return -ENOMEM;
  if ((rc = pool_init(p, opts)) != 0) {
    pool_destroy(p);
    return rc;
  }
  if ((rc = start_workers(p, opts->workers)) != 0) {
    weft_pool_free(p); /* closes; the workers started see an empty queue and return */
    return rc;
  }
  *out = p;
  return 0;
}

/* ---- submission ---- */

/* Link job (its submitter holds a token). Returns 0, or -EPIPE when closed (the token is
 * then given back and the job is the caller's to free). */
static int link_job(weft_pool *p, weft_pool_job *job)
{
  /* Read before mu (a fake clock takes a lock); only for the metrics' queue time. */
  int64_t now = p->m.queue_s ? weft_clock_now(p->clock) : 0;
  weft_mutex_lock(&p->mu);
  if (p->closed) {
    weft_mutex_unlock(&p->mu);
    slot_release(p);
    return -EPIPE;
  }
  job->queued_at = now;
  if (p->tail)
    p->tail->next = job;
  else
    p->head = job;
  p->tail = job;
  set_depth(p, atomic_load_explicit(&p->depth, memory_order_relaxed) + 1);
  atomic_fetch_add_explicit(&p->submitted, 1, memory_order_relaxed);
  check_invariants(p);
  weft_mutex_unlock(&p->mu);
  weft_cond_signal(&p->nonempty); /* after mu: the worker woken can take it at once */
  return 0;
}

/* Hand job to the queue; on success hand the handle out. */
static int accept_job(weft_pool *p, weft_pool_job *job, weft_pool_job **job_out)
{
  int rc = link_job(p, job);
  if (rc) {
    count(&p->rejected, p->m.rejected);
    weft_pool_job_free(job_out ? job : NULL);
    weft__pool_job_release(job);
    return rc;
  }
  if (job_out)
    *job_out = job;
  return 0;
}

int weft_pool_try_submit(weft_pool *pool, weft_pool_fn fn, void *arg, weft_pool_job **job_out)
{
  if (job_out)
    *job_out = NULL;
  if (!pool || !fn)
    return -EINVAL;
  static const char token = 0;
  int closed = atomic_load_explicit(&pool->closed_flag, memory_order_relaxed);
  if (closed || weft_chan_try_send(pool->slots, &token) != 0) {
    count(&pool->rejected, pool->m.rejected);
    return closed ? -EPIPE : -EAGAIN;
  }
  weft_pool_job *job = weft__pool_job_new(fn, arg, job_out != NULL);
  if (!job) {
    slot_release(pool);
    return -ENOMEM;
  }
  return accept_job(pool, job, job_out);
}

/* Take a token, parking while the queue is full. 0, -EPIPE or ctx's error. */
static int acquire_slot(weft_pool *p, weft_ctx *ctx)
{
  static const char token = 0;
  weft_select_case cases[2] = {
      {.ch = p->slots, .dir = WEFT_SELECT_SEND, .elem = (void *)&token},
      {.ch = p->closing, .dir = WEFT_SELECT_RECV},
  };
  int rc = weft_select_ctx(cases, 2, 0, ctx);
  if (rc == 0)
    return cases[0].result; /* 0 (slots is never closed) */
  return rc == 1 ? -EPIPE : rc;
}

int weft_pool_submit(weft_pool *pool, weft_ctx *ctx, weft_pool_fn fn, void *arg,
                     weft_pool_job **job_out)
{
  if (job_out)
    *job_out = NULL;
  if (!pool || !fn)
    return -EINVAL;
  if (atomic_load_explicit(&pool->closed_flag, memory_order_relaxed)) {
    count(&pool->rejected, pool->m.rejected);
    return -EPIPE;
  }
  weft_pool_job *job = weft__pool_job_new(fn, arg, job_out != NULL);
  if (!job)
    return -ENOMEM;
  int rc = acquire_slot(pool, ctx);
  if (rc) {
    if (rc == -EPIPE)
      count(&pool->rejected, pool->m.rejected);
    weft_pool_job_free(job_out ? job : NULL);
    weft__pool_job_release(job);
    return rc;
  }
  return accept_job(pool, job, job_out);
}

/* ---- closing and shutdown ---- */

weft_ctx *weft_pool_ctx(weft_pool *pool)
{
  return pool->ctx;
}

void weft_pool_stats_read(weft_pool *pool, weft_pool_stats *out)
{
  *out = (weft_pool_stats){
      .queue_depth = atomic_load_explicit(&pool->depth, memory_order_relaxed),
      .queue_capacity = pool->capacity,
      .workers = atomic_load_explicit(&pool->nworkers, memory_order_relaxed),
      .busy = atomic_load_explicit(&pool->busy, memory_order_relaxed),
      .closed = atomic_load_explicit(&pool->closed_flag, memory_order_relaxed),
      .submitted = atomic_load_explicit(&pool->submitted, memory_order_relaxed),
      .completed = atomic_load_explicit(&pool->completed, memory_order_relaxed),
      .failed = atomic_load_explicit(&pool->failed, memory_order_relaxed),
      .rejected = atomic_load_explicit(&pool->rejected, memory_order_relaxed),
      .cancelled = atomic_load_explicit(&pool->cancelled, memory_order_relaxed),
  };
}

void weft_pool_close(weft_pool *pool)
{
  weft_mutex_lock(&pool->mu);
  int was = pool->closed;
  pool->closed = 1;
  atomic_store_explicit(&pool->closed_flag, 1, memory_order_relaxed);
  if (!was)
    weft_chan_close(pool->closing); /* wakes parked submitters: never parks */
  weft_mutex_unlock(&pool->mu);
  weft_cond_broadcast(&pool->nonempty); /* idle workers see closed and return */
}

int weft_pool_wait(weft_pool *pool, weft_ctx *ctx)
{
  weft_select_case c = {.ch = weft_ctx_done(pool->drained), .dir = WEFT_SELECT_RECV};
  if (!c.ch)
    return -ENOMEM;
  int rc = weft_select_ctx(&c, 1, 0, ctx);
  return rc == 0 ? 0 : rc;
}

/* Take every queued job off the queue and end it with -ECANCELED. Returns how many. */
static long abandon(weft_pool *p)
{
  weft_mutex_lock(&p->mu);
  weft_pool_job *list = p->head;
  p->head = p->tail = NULL;
  size_t n = atomic_load_explicit(&p->depth, memory_order_relaxed);
  set_depth(p, 0);
  for (weft_pool_job *j = list; j; j = j->next)
    atomic_store_explicit(&j->state, JOB_ABANDONED, memory_order_relaxed);
  weft_mutex_unlock(&p->mu);
  for (size_t i = 0; i < n; i++)
    slot_release(p);
  long count_n = 0;
  while (list) {
    weft_pool_job *j = list;
    list = j->next;
    if (p->on_abandon)
      p->on_abandon(j->arg);
    count(&p->cancelled, p->m.cancelled);
    weft__pool_job_end(j, -ECANCELED, JOB_ABANDONED);
    count_n++;
  }
  return count_n;
}

long weft_pool_shutdown(weft_pool *pool, int64_t deadline)
{
  weft_pool_close(pool);
  long abandoned = 0;
  int rc = weft_clock_sleep_until(pool->clock, pool->drained, deadline);
  if (rc == 0 && !weft_ctx_err(pool->drained)) { /* the deadline, not drained */
    abandoned = abandon(pool);
    weft_ctx_cancel_cause(pool->ctx, -ETIMEDOUT);
  }
  weft_wg_wait(&pool->workers);
  return abandoned;
}

void weft_pool_free(weft_pool *pool)
{
  if (!pool)
    return;
  weft_pool_close(pool);
  weft_wg_wait(&pool->workers);
  pool_destroy(pool);
}
