/* pool_internal.h: a worker pool's job, shared by the queue (pool.c) and the handle that
 * waits for it (pool_job.c). */
#ifndef WEFT_PATTERNS_POOL_INTERNAL_H
#define WEFT_PATTERNS_POOL_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/spinlock.h"
#include "weft/pool.h"

enum job_state { JOB_QUEUED, JOB_RUNNING, JOB_DONE, JOB_ABANDONED };

struct job_waiter;

struct weft_pool_job {
  atomic_int refs;            /* the queue's or running worker's, plus the handle's */
  atomic_int state;           /* enum job_state; JOB_DONE/ABANDONED set once result is */
  weft_pool_fn fn;            /* immutable */
  void *arg;                  /* immutable; borrowed */
  long result;                /* written before the job ends; read after */
  int64_t queued_at;          /* pool clock at linking; guarded by the pool's mu */
  struct weft_pool_job *next; /* queue link; guarded by the pool's mu */
  spinlock lock;              /* guards ended and waiters (pool_job.c) */
  bool ended;                 /* guarded by lock */
  struct job_waiter *waiters; /* parked weft_pool_job_wait calls; guarded by lock */
};

/* weft__pool_job_new: a queued job holding the queue's reference, plus the handle's when
 * with_handle. NULL: out of memory. Any thread. */
weft_pool_job *weft__pool_job_new(weft_pool_fn fn, void *arg, bool with_handle);

/* weft__pool_job_end: publish result and state (JOB_DONE or JOB_ABANDONED), wake every
 * waiter, drop the queue's reference. Exactly once per job. Any thread; never parks. */
void weft__pool_job_end(weft_pool_job *job, long result, enum job_state state);

/* weft__pool_job_release: drop one reference; the last frees the job. */
void weft__pool_job_release(weft_pool_job *job);

#endif
