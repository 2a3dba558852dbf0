/* waitgroup.c: weft_wg.
 *
 * The counter is atomic so that add and done never lock while nobody waits; lock guards
 * the waiter list. A waiter parks only after re-checking the counter under the lock, and
 * the transition to zero takes the lock to collect the waiters, so none is missed. Waiters
 * are woken after the lock is released. */
#include <stdatomic.h>
#include <string.h>

#include "core/core.h"
#include "weft/sync.h"

struct wg_waiter {
  struct coro *self;
  struct wg_waiter *next;
};

struct wg_impl {
  atomic_long count;
  atomic_long nwaiters; /* waiters parked or about to park; under lock when changed */
  spinlock lock;        /* guards waiters */
  struct wg_waiter *waiters;
};

_Static_assert(sizeof(struct wg_impl) <= sizeof(weft_wg), "weft_wg storage too small");
_Static_assert(_Alignof(struct wg_impl) <= _Alignof(weft_wg), "weft_wg misaligned");

void weft_wg_init(weft_wg *wg)
{
  memset(wg, 0, sizeof *wg);
}

void weft_wg_add(weft_wg *wg, long delta)
{
  struct wg_impl *g = (struct wg_impl *)wg;
  long now = atomic_fetch_add(&g->count, delta) + delta;
  if (now < 0)
    weft__die("weft: negative wait group counter (%ld)", now);
  if (now > 0 || atomic_load(&g->nwaiters) == 0)
    return;
  spin_lock(&g->lock);
  struct wg_waiter *list = NULL;
  if (atomic_load(&g->count) == 0) {
    list = g->waiters;
    g->waiters = NULL;
    atomic_store(&g->nwaiters, 0);
  }
  spin_unlock(&g->lock);
  while (list) {
    struct wg_waiter *next = list->next; /* read before the waiter may return */
    weft__ready(list->self);
    list = next;
  }
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
  if (atomic_load(&g->count) == 0)
    return;
  struct wg_waiter me = {.self = weft__current()};
  if (!me.self)
    weft__die("weft: weft_wg_wait outside a coroutine");
  spin_lock(&g->lock);
  atomic_fetch_add(&g->nwaiters, 1);
  if (atomic_load(&g->count) == 0) {
    atomic_fetch_sub(&g->nwaiters, 1);
    spin_unlock(&g->lock);
    return;
  }
  me.next = g->waiters;
  g->waiters = &me;
  weft__park("wait group", wg_commit, g);
}
