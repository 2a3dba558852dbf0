/* pool_job.c: a worker pool's job and the handle its submitter waits on (weft/pool.h).
 *
 * A wait is a job_waiter on the waiting coroutine's stack, linked into the job's list
 * under the job's lock. It ends in one of three ways, whichever takes the waiter off the
 * list first under that lock: the job ends (all waiters at once), the waiter's context is
 * done (a context hook, ctx_hook.h) or its deadline passes (a timer). The one that takes
 * it off wakes it; the others find it gone and do nothing. The hook is armed and the timer
 * started while the lock is held and the coroutine has not parked yet: a hook firing at
 * once spins on the lock until the park's commit step releases it, and so finds the
 * coroutine parked. After waking, the waiter disarms both (each returns once its
 * callback cannot run any more) before its stack frame goes.
 *
 * Lock order: the job's lock is a sync object lock (docs/internals/lock-order.md): taken
 * under nothing but the park of its own waiter; a context's lock is taken under it (arming
 * the hook), never the reverse (a hook runs after the context's lock is dropped). The
 * handle's reference keeps the job alive while anyone waits (weft_pool_job_free must not
 * be called during a wait). */
#include <errno.h>
#include <stdlib.h>

#include "core/clock.h"
#include "core/core.h"
#include "ctx/ctx_hook.h"
#include "patterns/pool_internal.h"
#include "weft/runtime.h"

struct job_waiter {
  struct coro *self;
  weft_pool_job *job;
  struct job_waiter *next, *prev; /* guarded by job->lock */
  bool linked;                    /* on job->waiters; guarded by job->lock */
  int err;                        /* 0: the job ended; else why the wait ended */
  struct ctx_hook hook;
  struct timer timer;
};

weft_pool_job *weft__pool_job_new(weft_pool_fn fn, void *arg, bool with_handle)
{
  weft_pool_job *job = calloc(1, sizeof *job);
  if (!job)
    return NULL;
  atomic_init(&job->refs, with_handle ? 2 : 1);
  atomic_init(&job->state, JOB_QUEUED);
  job->fn = fn;
  job->arg = arg;
  return job;
}

void weft__pool_job_release(weft_pool_job *job)
{
  if (atomic_fetch_sub_explicit(&job->refs, 1, memory_order_acq_rel) == 1)
    free(job);
}

static void unlink_waiter(weft_pool_job *job, struct job_waiter *w)
{
  if (w->prev)
    w->prev->next = w->next;
  else
    job->waiters = w->next;
  if (w->next)
    w->next->prev = w->prev;
  w->next = w->prev = NULL;
  w->linked = false;
}

void weft__pool_job_end(weft_pool_job *job, long result, enum job_state state)
{
  job->result = result;
  atomic_store_explicit(&job->state, state, memory_order_release);
  spin_lock(&job->lock);
  job->ended = true;
  struct job_waiter *list = job->waiters;
  job->waiters = NULL;
  for (struct job_waiter *w = list; w; w = w->next)
    w->linked = false;
  spin_unlock(&job->lock);
  while (list) {
    struct job_waiter *next = list->next; /* read before the waiter may return */
    weft__ready(list->self);
    list = next;
  }
  weft__pool_job_release(job);
}

/* The context or the deadline ends the wait, unless the job's end or the other did. */
static void give_up(struct job_waiter *w, int err)
{
  weft_pool_job *job = w->job;
  spin_lock(&job->lock);
  bool mine = w->linked;
  if (mine) {
    unlink_waiter(job, w);
    w->err = err;
  }
  spin_unlock(&job->lock);
  if (mine)
    weft__ready(w->self);
}

static void hook_fired(struct ctx_hook *h, int err)
{
  give_up(h->arg, err);
}

static void deadline_fired(struct timer *t)
{
  give_up(t->arg, -ETIMEDOUT);
}

static bool wait_commit(struct coro *c, void *arg)
{
  (void)c;
  struct job_waiter *w = arg;
  spin_unlock(&w->job->lock);
  return true;
}

int weft_pool_job_wait_until(weft_pool_job *job, weft_ctx *ctx, int64_t deadline, long *result)
{
  if (!job)
    return -EINVAL;
  int err = 0;
  if (!weft_pool_job_is_done(job)) {
    struct job_waiter w = {.self = weft__current(), .job = job};
    w.hook = (struct ctx_hook){.fn = hook_fired, .arg = &w};
    w.timer = (struct timer){.fn = deadline_fired, .arg = &w, .when = deadline};
    if ((err = weft_ctx_err(ctx)) != 0)
      return err;
    if (deadline != WEFT_NO_DEADLINE && deadline <= now_ns())
      return -ETIMEDOUT;
    spin_lock(&job->lock);
    if (!job->ended) {
      if (!w.self) {
        spin_unlock(&job->lock);
        return -EPERM;
      }
      if ((err = weft__ctx_hook_add(ctx, &w.hook)) != 0) {
        spin_unlock(&job->lock);
        return err;
      }
      w.next = job->waiters;
      if (w.next)
        w.next->prev = &w;
      job->waiters = &w;
      w.linked = true;
      if (deadline != WEFT_NO_DEADLINE && weft__timer_start(&w.timer, deadline) != 0)
        w.timer.when = WEFT_NO_DEADLINE; /* no memory: wait without the deadline */
      weft__park("pool job", wait_commit, &w);
      weft__ctx_hook_remove(&w.hook);
      if (w.timer.when != WEFT_NO_DEADLINE)
        weft__timer_stop(&w.timer); /* w lives on this stack: wait for its callback */
      err = w.err;
    } else {
      spin_unlock(&job->lock);
    }
  }
  if (err)
    return err;
  if (result)
    *result = job->result; /* published before state, read after it (acquire) */
  return 0;
}

int weft_pool_job_wait(weft_pool_job *job, weft_ctx *ctx, long *result)
{
  return weft_pool_job_wait_until(job, ctx, WEFT_NO_DEADLINE, result);
}

int weft_pool_job_is_done(const weft_pool_job *job)
{
  int s = atomic_load_explicit(&job->state, memory_order_acquire);
  return s == JOB_DONE || s == JOB_ABANDONED;
}

int weft_pool_job_ran(const weft_pool_job *job)
{
  int s = atomic_load_explicit(&job->state, memory_order_acquire);
  return s == JOB_RUNNING || s == JOB_DONE;
}

void weft_pool_job_free(weft_pool_job *job)
{
  if (job)
    weft__pool_job_release(job);
}
