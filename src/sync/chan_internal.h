/* chan_internal.h: the channel structure and the waiter protocol shared by chan.c and
 * select.c.
 *
 * A coroutine that blocks on channels parks with one waiter per channel it waits on
 * (one for a send or receive, one per case for a select), all pointing at one shared
 * `struct wait_set`. Waiters live on the parked coroutine's stack (weft never moves a
 * stack, so pointers into it stay valid while it is parked).
 *
 * Claiming: whoever wants to complete a waiter's operation (a counterpart sender or
 * receiver, close, or the deadline timer) must first win `wait_set.done` (0 -> 1). The
 * winner fills in the result and readies the coroutine; losers leave it alone. A waiter
 * is dequeued only under its channel's lock; `queued` says whether it still is, so the
 * woken coroutine can remove its other waiters and nobody touches a waiter after its
 * owner has re-taken every channel lock and returned. */
#ifndef WEFT_SYNC_CHAN_INTERNAL_H
#define WEFT_SYNC_CHAN_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/core.h"
#include "core/spinlock.h"
#include "core/timer.h"
#include "weft/chan.h"

struct wait_set {
  struct coro *self;  /* the parked coroutine */
  atomic_int done;    /* 0 until claimed */
  bool exclusive;     /* one waiter and no deadline: only claimed under that channel's
                         lock, so claiming needs no read-modify-write */
  int fired;          /* index of the completed case, or -ETIMEDOUT; written by the claimer */
  int result;         /* 0, or -EPIPE when completed by close */
  struct timer timer; /* deadline, if any */
};

struct chan_waiter {
  struct wait_set *set;
  void *elem;  /* send: source of the value; receive: destination (may be NULL) */
  int index;   /* case index within the select (0 for plain send/recv) */
  bool queued; /* in its channel's queue; guarded by the channel's lock */
  struct chan_waiter *next, *prev; /* queue links; guarded by the channel's lock */
};

struct waitq {
  struct chan_waiter *head, *tail;
};

struct weft_chan {
  spinlock lock; /* guards everything below but refs, elem_size, cap and finalize */
  atomic_long refs;
  size_t elem_size; /* immutable */
  size_t cap;       /* immutable */
  /* Run by the last release just before the channel is freed; set before the channel is
   * handed out, then immutable. weft_after's channels cancel their timer with it. */
  void (*finalize)(struct weft_chan *ch);
  void *finalize_arg;
  size_t count; /* buffered elements */
  size_t head;  /* index of the oldest buffered element */
  bool closed;
  struct waitq recvq;  /* parked receivers, FIFO */
  struct waitq sendq;  /* parked senders, FIFO */
  unsigned char buf[]; /* cap * elem_size bytes */
};

/* The operations with the channel lock held. They never park. Each returns 0 when done,
 * -EPIPE on a closed channel, -EAGAIN when it would block; *wake is set to a coroutine to
 * weft__ready after the lock is released (or left NULL). */
int weft__chan_send_locked(struct weft_chan *ch, const void *elem, struct coro **wake);
int weft__chan_recv_locked(struct weft_chan *ch, void *elem, struct coro **wake);

static inline void waitq_push(struct waitq *q, struct chan_waiter *w)
{
  w->next = NULL;
  w->prev = q->tail;
  if (q->tail)
    q->tail->next = w;
  else
    q->head = w;
  q->tail = w;
  w->queued = true;
}

/* Remove w if it is still queued (a no-op otherwise). */
static inline void waitq_remove(struct waitq *q, struct chan_waiter *w)
{
  if (!w->queued)
    return;
  if (w->prev)
    w->prev->next = w->next;
  else
    q->head = w->next;
  if (w->next)
    w->next->prev = w->prev;
  else
    q->tail = w->prev;
  w->next = w->prev = NULL;
  w->queued = false;
}

/* wait_set_init: a fresh wait set for the running coroutine. The timer is left
 * uninitialised: weft__wait_set_arm_deadline sets it up, and only a set with a deadline is
 * disarmed. */
static inline void wait_set_init(struct wait_set *s)
{
  s->self = weft__current();
  atomic_init(&s->done, 0);
  s->exclusive = false;
  s->fired = 0;
  s->result = 0;
}

/* wait_set_claim: win the right to complete this wait. */
static inline bool wait_set_claim(struct wait_set *s)
{
  if (s->exclusive) {
    if (atomic_load_explicit(&s->done, memory_order_relaxed))
      return false;
    atomic_store_explicit(&s->done, 1, memory_order_relaxed);
    return true;
  }
  return atomic_load_explicit(&s->done, memory_order_relaxed) == 0 &&
         atomic_exchange_explicit(&s->done, 1, memory_order_acq_rel) == 0;
}

/* Arm the deadline timer of s (from a park commit step); on expiry it claims s with
 * -ETIMEDOUT. */
void weft__wait_set_arm_deadline(struct wait_set *s, int64_t deadline);
/* After waking: stop the deadline timer, waiting for its callback if it is running. */
static inline void wait_set_disarm(struct wait_set *s, int64_t deadline)
{
  if (deadline != WEFT_NO_DEADLINE)
    weft__timer_stop(&s->timer);
}

#endif
