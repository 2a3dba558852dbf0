/* timer.c: per-worker timer heaps (see timer.h for the state machine).
 *
 * Invariants, under heap->lock: items[0..len) is a 4-ary min-heap on when; every timer in
 * it is PENDING with index equal to its position; next_when == items[0].when, or INT64_MAX
 * when len == 0. */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>

#include "core/timer.h"

static atomic_long pending_timers;

long weft__timer_pending_count(void)
{
  return atomic_load(&pending_timers);
}

void weft__timer_heap_init(struct timer_heap *h)
{
  h->items = NULL;
  h->len = h->cap = 0;
  atomic_init(&h->lock.held, 0);
  atomic_init(&h->next_when, INT64_MAX);
}

void weft__timer_heap_fini(struct timer_heap *h)
{
  atomic_fetch_sub(&pending_timers, h->len);
  free(h->items);
  h->items = NULL;
  h->len = h->cap = 0;
}

static void heap_set(struct timer_heap *h, int i, struct timer_entry e)
{
  h->items[i] = e;
  e.t->index = i;
}

static void sift_up(struct timer_heap *h, int i)
{
  struct timer_entry e = h->items[i];
  while (i > 0) {
    int parent = (i - 1) / 4;
    if (h->items[parent].when <= e.when)
      break;
    heap_set(h, i, h->items[parent]);
    i = parent;
  }
  heap_set(h, i, e);
}

static void sift_down(struct timer_heap *h, int i)
{
  struct timer_entry e = h->items[i];
  for (;;) {
    int first = 4 * i + 1, best = -1;
    for (int c = first; c < first + 4 && c < h->len; c++)
      if (best < 0 || h->items[c].when < h->items[best].when)
        best = c;
    if (best < 0 || h->items[best].when >= e.when)
      break;
    heap_set(h, i, h->items[best]);
    i = best;
  }
  heap_set(h, i, e);
}

static void update_next(struct timer_heap *h)
{
  atomic_store_explicit(&h->next_when, h->len ? h->items[0].when : INT64_MAX,
                        memory_order_release);
}

/* Remove items[i]; lock held. */
static void heap_remove(struct timer_heap *h, int i)
{
  struct timer_entry last = h->items[--h->len];
  h->items[i].t->index = -1;
  if (i < h->len) {
    heap_set(h, i, last);
    sift_up(h, i);
    sift_down(h, last.t->index);
  }
  update_next(h);
}

int weft__timer_arm(struct timer_heap *h, struct timer *t, int64_t when)
{
  spin_lock(&h->lock);
  if (h->len == h->cap) {
    int cap = h->cap ? h->cap * 2 : 64;
    struct timer_entry *items = realloc(h->items, (size_t)cap * sizeof *items);
    if (!items) {
      spin_unlock(&h->lock);
      return -ENOMEM;
    }
    h->items = items;
    h->cap = cap;
  }
  t->when = when;
  atomic_store_explicit(&t->heap, h, memory_order_relaxed);
  atomic_store_explicit(&t->state, TIMER_PENDING, memory_order_relaxed);
  h->items[h->len] = (struct timer_entry){when, t};
  t->index = h->len++;
  sift_up(h, t->index);
  update_next(h);
  atomic_fetch_add(&pending_timers, 1);
  spin_unlock(&h->lock);
  return 0;
}

bool weft__timer_stop(struct timer *t)
{
  struct timer_heap *h = atomic_load_explicit(&t->heap, memory_order_acquire);
  if (!h)
    return false;
  spin_lock(&h->lock);
  if (atomic_load_explicit(&t->state, memory_order_relaxed) == TIMER_PENDING) {
    heap_remove(h, t->index);
    atomic_store_explicit(&t->state, TIMER_IDLE, memory_order_relaxed);
    atomic_fetch_sub(&pending_timers, 1);
    spin_unlock(&h->lock);
    return true;
  }
  spin_unlock(&h->lock);
  /* Fired: wait until its callback has returned (it is short and never parks). */
  while (atomic_load_explicit(&t->state, memory_order_acquire) == TIMER_FIRING)
    sched_yield();
  return false;
}

int weft__timer_run_expired(struct timer_heap *h, int64_t now)
{
  int fired = 0;
  if (atomic_load_explicit(&h->next_when, memory_order_acquire) > now)
    return 0;
  spin_lock(&h->lock);
  while (h->len > 0 && h->items[0].when <= now) {
    struct timer *t = h->items[0].t;
    heap_remove(h, 0);
    atomic_store_explicit(&t->state, TIMER_FIRING, memory_order_relaxed);
    spin_unlock(&h->lock);
    if (t->callback_owns) {
      atomic_store_explicit(&t->state, TIMER_IDLE, memory_order_release);
      t->fn(t); /* may free or restart t */
    } else {
      t->fn(t);
      /* The callback may have restarted it (PENDING): only FIRING goes back to IDLE. */
      int firing = TIMER_FIRING;
      atomic_compare_exchange_strong_explicit(&t->state, &firing, TIMER_IDLE,
                                              memory_order_release, memory_order_relaxed);
    }
    /* Counted as pending until the callback has readied whoever it wakes, so deadlock
     * detection never sees a moment with neither a timer nor a runnable coroutine. */
    atomic_fetch_sub(&pending_timers, 1);
    fired++;
    spin_lock(&h->lock);
  }
  spin_unlock(&h->lock);
  return fired;
}
