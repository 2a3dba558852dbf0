/* timer.h: one-shot timers kept in per-worker 4-ary min-heaps.
 *
 * A timer's callback runs on a scheduler thread, outside any coroutine and outside the
 * heap lock; it must not park and should do little more than weft__ready() a coroutine.
 *
 * Timer states:   IDLE --start--> PENDING --fires--> FIRING --callback returns--> IDLE
 *                                    +-------stop-------> IDLE
 * The owner of a timer's memory must call weft__timer_stop() before freeing or restarting it:
 * weft__timer_stop() waits while the callback runs, so the memory is never touched after that.
 *
 * Lock order: a heap lock is a leaf; nothing else is taken while holding it. */
#ifndef WEFT_CORE_TIMER_H
#define WEFT_CORE_TIMER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/spinlock.h"

enum timer_state { TIMER_IDLE, TIMER_PENDING, TIMER_FIRING };

struct timer_heap;

struct timer {
  int64_t when;                    /* monotonic ns; guarded by heap->lock while PENDING */
  void (*fn)(struct timer *t);     /* callback; set before start */
  void *arg;                       /* for the callback */
  int index;                       /* position in the heap; guarded by heap->lock */
  atomic_int state;                /* enum timer_state */
  struct timer_heap *_Atomic heap; /* heap it was last started on */
  bool callback_owns;              /* the callback may free or restart the timer: it is not
                                      touched after the callback returns, and weft__timer_stop
                                      must not be called once it may have fired */
};

/* A heap entry carries its deadline, so sifting compares within the array instead of
 * following a pointer to every timer (100,000 sleepers would make each pop a chain of
 * cache misses). */
struct timer_entry {
  int64_t when;
  struct timer *t;
};

struct timer_heap {
  spinlock lock;             /* guards everything below except next_when's readers */
  struct timer_entry *items; /* the heap array; guarded by lock */
  int len, cap;              /* guarded by lock */
  _Atomic int64_t next_when; /* earliest deadline, INT64_MAX if empty; written under lock,
                                read lock-free by idle threads choosing a poll timeout */
};

void weft__timer_heap_init(struct timer_heap *h);
void weft__timer_heap_fini(struct timer_heap *h);

/* weft__timer_arm: arm t to fire at when on heap h. t must be IDLE. Returns 0 or -ENOMEM. */
int weft__timer_arm(struct timer_heap *h, struct timer *t, int64_t when);

/* weft__timer_stop: disarm t. Returns true if it was pending (the callback will not run), false
 * if it already fired, in which case it first waits for the callback to return. */
bool weft__timer_stop(struct timer *t);

/* weft__timer_run_expired: fire every timer of h due at or before now. Returns the count. Any
 * scheduler thread may run any heap's timers. */
int weft__timer_run_expired(struct timer_heap *h, int64_t now);

/* The number of pending timers in all heaps (deadlock detection). */
long weft__timer_pending_count(void);

#endif
