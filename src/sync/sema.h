/* sema.h: the internal counting semaphore the mutex and rwmutex park on (Go's
 * runtime_Semacquire / Semrelease).
 *
 * A release with no waiter is remembered in count, so a release that races ahead of the
 * acquire it is meant for is not lost. Waiters are FIFO, except that a waiter re-queuing
 * after losing a race may go to the front (lifo), as in Go's mutex. lock guards count and
 * the queue; it is a leaf below the objects that use it, and waiters are readied after it
 * is released. */
#ifndef WEFT_SYNC_SEMA_H
#define WEFT_SYNC_SEMA_H

#include <stdbool.h>
#include <stdint.h>

#include "core/core.h"
#include "core/spinlock.h"

struct sema_waiter {
  struct coro *self;
  struct sema_waiter *next;
};

struct sema {
  spinlock lock;
  uint32_t count;           /* releases not yet consumed; guarded by lock */
  struct sema_waiter *head; /* guarded by lock */
  struct sema_waiter *tail;
};

/* weft__sema_acquire: take one unit, parking (with reason) until one is released. Coroutine. */
void weft__sema_acquire(struct sema *s, bool lifo, const char *reason);
/* weft__sema_release: release one unit: wake the first waiter or remember it. Any thread. */
void weft__sema_release(struct sema *s);

#endif
