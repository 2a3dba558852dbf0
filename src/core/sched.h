/* sched.h: scheduler internals shared by sched.c, coro.c, runtime.c and dump.c.
 *
 * Lock order (outermost first), also in docs/internals/lock-order.md:
 *   sched.lock  >  registry.lock  >  timer heap locks  >  stack pool lock
 * A lock of a sync object (channel, mutex) is released by a park commit step, which runs
 * on the scheduler side of a switch with no scheduler lock held. */
#ifndef WEFT_CORE_SCHED_H
#define WEFT_CORE_SCHED_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/core.h"
#include "core/stack.h"
#include "core/timer.h"

#define RUNQ_SIZE 256

/* What the context we switched away from asked to have done once it is off its stack.
 * Recorded in the worker just before the switch, consumed by after_switch(). */
enum switch_action {
  SWITCH_NONE,  /* from the scheduler loop: nothing to do */
  SWITCH_YIELD, /* put prev at the tail of the local run queue */
  SWITCH_PARK,  /* run the commit step; if it fails, ready prev again */
  SWITCH_EXIT   /* prev has returned: free its stack and record */
};

struct worker {
  int index;
  pthread_t thread;
  struct coro g0;       /* the scheduler loop's own context (native thread stack) */
  struct coro *current; /* running coroutine, NULL in the loop; owner thread only */

  /* Post-switch hand-off; owner thread only (written before, read after a switch). */
  struct coro *prev;
  enum switch_action prev_action;
  park_commit_fn commit;
  void *commit_arg;

  /* Local run queue: a ring that only the owner pushes to; owner and thieves pop from
   * head with CAS. Entries between head and tail are runnable coroutines. */
  _Atomic uint32_t rq_head;
  _Atomic uint32_t rq_tail; /* written by owner only */
  struct coro *_Atomic rq[RUNQ_SIZE];
  struct coro *_Atomic runnext; /* next to run; owner exchanges, thieves CAS */
  unsigned runnext_streak;      /* consecutive runnext picks; owner only */

  uint32_t tick;      /* schedule count, for periodic fairness checks; owner only */
  uint64_t rng;       /* xorshift state for victim choice; owner only */
  bool spinning;      /* counted in sched.nspinning; owner only */
  bool ready_to_tail; /* firing timers: ready() appends to the ring; owner only */
  /* Coroutines spawned on and exited on this worker: written by the owner only (relaxed,
   * no read-modify-write), summed by weft__live_coroutines(), so spawn and exit never
   * bounce a shared counter between CPUs. */
  atomic_long spawned, exited;
  /* Statistics (weft_runtime_stats): written by the owner only, as spawned/exited. */
  atomic_ulong switches, steals;
  _Atomic int64_t idle_ns; /* time spent waiting for work (futex or poller), finished waits */
  _Atomic int64_t idle_since; /* when the current wait began, 0 when not waiting */
  atomic_uint idle_seq;       /* odd while the owner updates the two above (a seqcount) */
  uint64_t id_next, id_end;   /* this worker's batch of coroutine ids; owner only */
  int64_t last_poll;          /* last non-blocking netpoll; owner only */
  int64_t clock; /* monotonic ns at the last periodic check: the "waiting since" stamp
                    of a park, at most FAIRNESS_TICKS switches stale; owner only */

  struct timer_heap timers;  /* this worker's timers; heap lock */
  struct stack_cache stacks; /* owner only */
  struct coro *free_coros;   /* recycled records; owner only */
  int nfree_coros;
  struct registry reg; /* coroutines spawned on this worker */

  /* Idle state; guarded by sched.lock except futex_word. */
  bool idle;
  bool is_poller;
  struct worker *idle_next;
  atomic_uint futex_word; /* 1 = woken; the sleeper resets it */

  void *altstack;             /* signal stack for the overflow handler */
  const void *g0_asan_bottom; /* the thread stack's bounds, learnt at the first switch */
  size_t g0_asan_size;
} __attribute__((aligned(64)));

/* Fields are grouped by who writes them, each group on its own cache line: the
 * read-mostly settings must not share a line with what every spawn, ready or idle
 * transition writes. */
struct scheduler {
  /* Read-mostly. */
  int nworkers;
  struct worker *workers;
  atomic_bool stopping; /* main returned */
  int64_t start_ns;     /* when the runtime started (weft_runtime_stats) */

  _Alignas(64) spinlock lock; /* guards the global queue and the idle list */
  struct coro *gq_head, *gq_tail;
  atomic_long gq_len;             /* written under lock, read lock-free as a hint */
  struct coro *sq_head, *sq_tail; /* the spawn queue: new coroutines, after gq */
  atomic_long sq_len;             /* written under lock, read lock-free as a hint */
  struct worker *idle_list;

  _Alignas(64) atomic_int nidle; /* workers on the idle list; written under lock */
  atomic_int nspinning;          /* workers looking for work */
  atomic_int polling;            /* 1 while a worker owns the poller */
  _Atomic int64_t poll_until;    /* the poller's wake-up deadline, INT64_MAX if none */

  _Alignas(64) atomic_long foreign_spawned; /* spawned from threads outside the runtime */
  atomic_ullong next_id;                    /* ids are taken ID_BATCH at a time per worker */

  _Alignas(64) atomic_long io_waiters; /* wake sources, for deadlock detection */
  atomic_long blocking;
  atomic_long signal_waiters;
  atomic_long external_wakers; /* weft_external_wakers: plain threads that may wake */

  struct registry foreign_reg; /* coroutines spawned from threads outside the runtime */
};

extern struct scheduler weft__sched;

struct worker *weft__this_worker(void);
void weft__set_this_worker(struct worker *w);

/* Scheduler entry points used by coro.c and runtime.c. */
void weft__sched_loop(struct worker *w);
void weft__runq_put(struct worker *w, struct coro *c);
void weft__global_put(struct coro *c);
void weft__spawn_put(struct worker *w, struct coro *c);
void weft__wake_one(void);
void weft__wake_all(void);
void weft__switch_exit(struct coro *self) __attribute__((noreturn));
void weft__after_switch(struct coro *self);
void weft__coro_destroy(struct worker *w, struct coro *c);
bool weft__coro_bind_stack(struct worker *w, struct coro *c);

/* Registry helpers (coro.c). */
void weft__registry_init(struct registry *r);
void weft__registry_add(struct registry *r, struct coro *c);
void weft__registry_remove(struct coro *c);
long weft__live_coroutines(void);

#endif
