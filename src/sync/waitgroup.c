/* waitgroup.c: weft_wg.
 *
 * state packs the counter (high 32 bits, signed) and the number of waiters parked or about
 * to park (low 32 bits) into one atomic word, so that the add that brings the counter to
 * zero learns in the same read-modify-write whether anyone waits. If nobody does, it
 * never touches the group again: the owner may free or reuse a group as soon as its
 * counter is zero (Go's contract; a wait group on a stack is reused as soon as wait
 * returns). If someone does, that waiter cannot return before it is readied, so the group
 * stays valid while the adder locks it to collect the waiters.
 *
 * The design that lost: a separate waiter count read after the counter's fetch-add. The
 * adder then read (and, seeing garbage, could lock and write) a group whose waiter had
 * already returned through wait's fast path and reused the memory; ThreadSanitizer caught
 * it in tests/sync/test_chan.c.
 *
 * lock guards the waiter list; the waiter bits of state change only under it, so they
 * equal the length of the list whenever the lock is free. A waiter registers itself (the
 * counter still non-zero) and joins the list in one critical section, and parks; the
 * transition to zero takes the lock to collect the waiters, so none is missed. Waiters are
 * woken after the lock is released. */
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "core/core.h"
#include "weft/sync.h"

struct wg_waiter {
  struct coro *self;
  struct wg_waiter *next;
};

struct wg_impl {
  _Atomic uint64_t state; /* counter << 32 | waiters; atomic (see above) */
  spinlock lock;          /* guards waiters and changes to the waiter bits of state */
  struct wg_waiter *waiters;
};

_Static_assert(sizeof(struct wg_impl) <= sizeof(weft_wg), "weft_wg storage too small");
_Static_assert(_Alignof(struct wg_impl) <= _Alignof(weft_wg), "weft_wg misaligned");

static int32_t counter_of(uint64_t state)
{
  return (int32_t)(uint32_t)(state >> 32);
}

void weft_wg_init(weft_wg *wg)
{
  memset(wg, 0, sizeof *wg);
}

/* The counter reached zero with waiters registered: collect and wake them. */
static void wake_waiters(struct wg_impl *g)
{
  spin_lock(&g->lock);
  struct wg_waiter *list = NULL;
  uint64_t s = atomic_load(&g->state);
  if (counter_of(s) == 0) { /* not raised again by an add meanwhile */
    list = g->waiters;
    g->waiters = NULL;
    atomic_fetch_sub(&g->state, (uint32_t)s);
  }
  spin_unlock(&g->lock);
  while (list) {
    struct wg_waiter *next = list->next; /* read before the waiter may return */
    weft__ready(list->self);
    list = next;
  }
}

void weft_wg_add(weft_wg *wg, long delta)
{
  struct wg_impl *g = (struct wg_impl *)wg;
  if (delta > INT32_MAX || delta < -(long)INT32_MAX)
    weft__die("weft: wait group delta out of range (%ld)", delta);
  uint64_t d = (uint64_t)delta << 32;
  uint64_t s = atomic_fetch_add(&g->state, d) + d;
  int32_t now = counter_of(s);
  if (now < 0)
    weft__die("weft: negative wait group counter (%ld)", (long)now);
  if (now > 0 || (uint32_t)s == 0)
    return; /* from here on the group may be gone: do not touch it */
  wake_waiters(g);
}

void weft_wg_done(weft_wg *wg)
{
  weft_wg_add(wg, -1);
}

static bool wg_commit(struct coro *c, void *arg)
{
  struct wg_impl *g = arg;
  spin_unlock(&g->lock);
  return true;
}

void weft_wg_wait(weft_wg *wg)
{
  struct wg_impl *g = (struct wg_impl *)wg;
  if (counter_of(atomic_load(&g->state)) == 0)
    return;
  struct wg_waiter me = {.self = weft__current()};
  if (!me.self)
    weft__die("weft: weft_wg_wait outside a coroutine");
  spin_lock(&g->lock);
  uint64_t s = atomic_load(&g->state);
  do {
    if (counter_of(s) == 0) {
      spin_unlock(&g->lock);
      return;
    }
  } while (!atomic_compare_exchange_weak(&g->state, &s, s + 1));
  me.next = g->waiters;
  g->waiters = &me;
  weft__park("wait group", wg_commit, g);
}
