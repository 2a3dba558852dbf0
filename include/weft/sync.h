/* weft/sync.h: synchronisation primitives for coroutines: wait group, mutex, rwmutex,
 * cond, once and weighted semaphore, with Go's semantics. Every blocking call parks the
 * coroutine (never the thread) and shows its own wait reason in a dump.
 *
 * weft_wg is a wait group (Go's sync.WaitGroup): embeddable, initialised with
 * WEFT_WG_INIT or weft_wg_init(), no destroy needed once its count is zero and nobody
 * waits. */
#ifndef WEFT_SYNC_H
#define WEFT_SYNC_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Opaque storage; fields are private to weft. */
typedef struct weft_wg {
  _Alignas(8) unsigned char opaque[32];
} weft_wg;

#define WEFT_WG_INIT \
  {                  \
    {                \
      0              \
    }                \
  }

/* weft_wg_init: zero the group. Any thread. */
WEFT_API void weft_wg_init(weft_wg *wg);

/* weft_wg_add: add delta (may be negative) to the counter; when it reaches zero every
 * waiter is woken. A negative counter is a misuse: weft aborts with a dump. Any thread;
 * never parks. */
WEFT_API void weft_wg_add(weft_wg *wg, long delta);

/* weft_wg_done: weft_wg_add(wg, -1). */
WEFT_API void weft_wg_done(weft_wg *wg);

/* weft_wg_wait: park until the counter is zero (returns at once if it is).
 * Coroutine, may park (wait reason "wait group"). */
WEFT_API void weft_wg_wait(weft_wg *wg);

/* ---- mutex ----
 * weft_mutex: Go's sync.Mutex. A contended lock spins briefly on several threads, then
 * parks (wait reason "mutex"). Normal mode lets a running coroutine take a just-released
 * lock ahead of parked ones (throughput); a waiter that has waited over 1 ms switches the
 * mutex to starvation mode, in which unlock hands it straight to the oldest waiter, so no
 * waiter waits forever. Unlocking an unlocked mutex aborts with a dump. Embeddable;
 * WEFT_MUTEX_INIT or weft_mutex_init; nothing to destroy. Not tied to a coroutine: one may
 * unlock what another locked, as in Go. */
typedef struct weft_mutex {
  _Alignas(8) unsigned char opaque[40];
} weft_mutex;
#define WEFT_MUTEX_INIT \
  {                     \
    {                   \
      0                 \
    }                   \
  }
WEFT_API void weft_mutex_init(weft_mutex *m);
/* weft_mutex_lock: coroutine, may park. */
WEFT_API void weft_mutex_lock(weft_mutex *m);
/* weft_mutex_trylock: 0 if taken, -EBUSY if held. Any thread; never parks. */
WEFT_API int weft_mutex_trylock(weft_mutex *m);
/* weft_mutex_unlock: any thread; never parks. */
WEFT_API void weft_mutex_unlock(weft_mutex *m);

/* ---- rwmutex ----
 * weft_rwmutex: Go's sync.RWMutex: many readers or one writer; a writer waiting blocks new
 * readers, so writers do not starve (wait reasons "rwmutex read", "rwmutex write"). */
typedef struct weft_rwmutex {
  _Alignas(8) unsigned char opaque[144];
} weft_rwmutex;
#define WEFT_RWMUTEX_INIT \
  {                       \
    {                     \
      0                   \
    }                     \
  }
WEFT_API void weft_rwmutex_init(weft_rwmutex *rw);
WEFT_API void weft_rwmutex_rlock(weft_rwmutex *rw);   /* coroutine, may park */
WEFT_API void weft_rwmutex_runlock(weft_rwmutex *rw); /* any thread */
WEFT_API void weft_rwmutex_lock(weft_rwmutex *rw);    /* coroutine, may park */
WEFT_API void weft_rwmutex_unlock(weft_rwmutex *rw);  /* any thread */

/* ---- cond ----
 * weft_cond: Go's sync.Cond over a weft_mutex (wait reason "cond wait"). */
typedef struct weft_cond {
  _Alignas(8) unsigned char opaque[40];
} weft_cond;
#define WEFT_COND_INIT \
  {                    \
    {                  \
      0                \
    }                  \
  }
WEFT_API void weft_cond_init(weft_cond *c);
/* weft_cond_wait: unlock m, park until signalled, relock m. Coroutine, may park. */
WEFT_API void weft_cond_wait(weft_cond *c, weft_mutex *m);
/* weft_cond_signal / weft_cond_broadcast: wake one / all waiters. Any thread. */
WEFT_API void weft_cond_signal(weft_cond *c);
WEFT_API void weft_cond_broadcast(weft_cond *c);

/* ---- once ----
 * weft_once: run a function exactly once; callers that arrive while it runs wait for it
 * (wait reason "mutex"). */
typedef struct weft_once {
  _Alignas(8) unsigned char opaque[48];
} weft_once;
#define WEFT_ONCE_INIT \
  {                    \
    {                  \
      0                \
    }                  \
  }
/* weft_once_do: run fn(arg) if no call on this once has; returns after it has run.
 * Coroutine, may park. */
WEFT_API void weft_once_do(weft_once *o, void (*fn)(void *arg), void *arg);

/* ---- weighted semaphore ----
 * weft_sem: x/sync/semaphore. Strictly FIFO: a large request at the head blocks smaller
 * ones behind it (so large requests do not starve). An opaque handle: weft_sem_new,
 * weft_sem_free. */
typedef struct weft_sem weft_sem;
/* weft_sem_new: a semaphore of size tokens (size >= 0). NULL if out of memory. */
WEFT_API weft_sem *weft_sem_new(int64_t size);
/* weft_sem_free: free it; no coroutine may be waiting. NULL is ignored. */
WEFT_API void weft_sem_free(weft_sem *s);
/* weft_sem_acquire: take n tokens, parking (FIFO) until they are free or the deadline.
 * Returns 0, -ETIMEDOUT (also at once when the deadline has passed, even if tokens are
 * free), -EINVAL for n < 0. n > size can never succeed: it waits for the deadline without
 * joining the queue (it blocks nobody, as in x/sync) and returns -ETIMEDOUT. Coroutine,
 * may park (wait reason "semaphore"). */
WEFT_API int weft_sem_acquire(weft_sem *s, int64_t n, int64_t deadline);
/* weft_sem_try_acquire: take n tokens only if free and nobody waits; 0 or -EAGAIN. */
WEFT_API int weft_sem_try_acquire(weft_sem *s, int64_t n);
/* weft_sem_release: return n tokens; releasing more than held aborts. Any thread. */
WEFT_API void weft_sem_release(weft_sem *s, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
