/* stats.c: weft_runtime_stats, a snapshot of the scheduler's counters.
 *
 * Counters are kept where they change (per worker, written by its owner only; the
 * stack pool; the blocking pool; the poller) and summed here, so counting costs the hot
 * paths a relaxed store and reading them costs a pass over the workers. The snapshot is
 * not atomic as a whole: each field is a value it had during the call. */
#include <errno.h>
#include <string.h>

#include "core/core.h"
#include "core/sched.h"
#include "core/timer.h"
#include "weft/runtime.h"

/* A worker's idle time up to now, the wait in progress included (see idle_account in
 * sched.c: read under its seqcount). */
static int64_t idle_ns_of(struct worker *w, int64_t now)
{
  for (;;) {
    unsigned seq = atomic_load_explicit(&w->idle_seq, memory_order_acquire);
    if (seq & 1)
      continue;
    /* acquire loads: the second read of the sequence cannot move above them */
    int64_t idle = atomic_load_explicit(&w->idle_ns, memory_order_acquire);
    int64_t since = atomic_load_explicit(&w->idle_since, memory_order_acquire);
    if (atomic_load_explicit(&w->idle_seq, memory_order_relaxed) == seq)
      return idle + (since && now > since ? now - since : 0);
  }
}

int weft_runtime_stats_read(weft_runtime_stats *out)
{
  struct scheduler *s = &weft__sched;
  if (!out)
    return -EINVAL;
  memset(out, 0, sizeof *out);
  if (!s->workers || atomic_load(&s->stopping))
    return -EPERM;
  int64_t now = weft_now();
  out->procs = s->nworkers;
  out->coroutines = weft__live_coroutines();
  out->runnable = atomic_load(&s->gq_len) + atomic_load(&s->sq_len);
  for (int i = 0; i < s->nworkers; i++) {
    struct worker *w = &s->workers[i];
    uint32_t h = atomic_load_explicit(&w->rq_head, memory_order_relaxed);
    uint32_t t = atomic_load_explicit(&w->rq_tail, memory_order_relaxed);
    uint32_t queued = t - h; /* read racily: ignore a torn pair */
    if (queued <= RUNQ_SIZE)
      out->runnable += queued;
    out->runnable += atomic_load_explicit(&w->runnext, memory_order_relaxed) != NULL;
    out->switches += atomic_load_explicit(&w->switches, memory_order_relaxed);
    out->steals += atomic_load_explicit(&w->steals, memory_order_relaxed);
    if (i < WEFT_STATS_MAX_PROCS)
      out->proc_idle_ns[i] = idle_ns_of(w, now);
  }
  weft__blocking_stats(&out->blocking_threads, &out->blocking_busy, &out->blocking_queued);
  out->poller_waits = weft__poller_waits();
  out->timers = weft__timer_pending_count();
  out->io_waiters = atomic_load(&s->io_waiters);
  out->stack_bytes = weft__stack_mapped_bytes();
  out->uptime_ns = now - s->start_ns;
  return 0;
}
