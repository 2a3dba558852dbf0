/* mutex.c: weft_mutex, Go's sync.Mutex algorithm over the internal sema.
 *
 * state: bit 0 LOCKED, bit 1 WOKEN (a waiter is awake and competing: unlock need not wake
 * another), bit 2 STARVING, bits 3.. the number of waiters (counted before they park on
 * the sema; the sema remembers a release that arrives before the park).
 *
 * Normal mode: waiters queue FIFO, but a woken waiter competes with arriving coroutines
 * and usually loses to them (they are already running); a waiter that loses re-queues at
 * the front. Starvation mode (a waiter waited > 1 ms): unlock hands ownership directly to
 * the front waiter (LOCKED stays set on its behalf, WAITER is decremented by it), and new
 * arrivals queue at the back without trying. The last waiter, or one that waited < 1 ms,
 * switches back to normal mode. */
#include <errno.h>
#include <string.h>

#include "core/clock.h"
#include "core/sched.h"
#include "sync/sema.h"
#include "weft/sync.h"

#define LOCKED        1u
#define WOKEN         2u
#define STARVING      4u
#define WAITER_SHIFT  3
#define STARVATION_NS 1000000
#define ACTIVE_SPINS  4
#define SPIN_PAUSES   30

struct mutex_impl {
  atomic_uint state;
  struct sema sema;
};

_Static_assert(sizeof(struct mutex_impl) <= sizeof(weft_mutex), "weft_mutex too small");
_Static_assert(_Alignof(struct mutex_impl) <= _Alignof(weft_mutex), "weft_mutex misaligned");

void weft_mutex_init(weft_mutex *m)
{
  memset(m, 0, sizeof *m);
}

int weft_mutex_trylock(weft_mutex *mu)
{
  struct mutex_impl *m = (struct mutex_impl *)mu;
  unsigned old = atomic_load_explicit(&m->state, memory_order_relaxed);
  if (old & (LOCKED | STARVING))
    return -EBUSY;
  return atomic_compare_exchange_strong_explicit(&m->state, &old, old | LOCKED,
                                                 memory_order_acquire, memory_order_relaxed)
             ? 0
             : -EBUSY;
}

static bool can_spin(int iter)
{
  return iter < ACTIVE_SPINS && weft__sched.nworkers > 1;
}

static void lock_slow(struct mutex_impl *m)
{
  int64_t wait_start = 0;
  bool starving = false, awoke = false;
  int iter = 0;
  unsigned old = atomic_load_explicit(&m->state, memory_order_relaxed);
  for (;;) {
    if ((old & (LOCKED | STARVING)) == LOCKED && can_spin(iter)) {
      /* Say a waiter is awake so that unlock does not wake another. */
      if (!awoke && !(old & WOKEN) && (old >> WAITER_SHIFT) != 0 &&
          atomic_compare_exchange_weak(&m->state, &old, old | WOKEN))
        awoke = true;
      for (int i = 0; i < SPIN_PAUSES; i++)
        cpu_relax();
      iter++;
      old = atomic_load_explicit(&m->state, memory_order_relaxed);
      continue;
    }
    unsigned new = old;
    if (!(old & STARVING))
      new |= LOCKED; /* starving: new arrivals queue instead */
    if (old & (LOCKED | STARVING))
      new += 1u << WAITER_SHIFT;
    if (starving && (old & LOCKED))
      new |= STARVING;
    if (awoke)
      new &= ~WOKEN;
    if (!atomic_compare_exchange_weak_explicit(&m->state, &old, new, memory_order_acquire,
                                               memory_order_relaxed))
      continue;
    if (!(old & (LOCKED | STARVING)))
      return; /* took it */
    bool queued_before = wait_start != 0;
    if (!queued_before)
      wait_start = now_ns();
    weft__sema_acquire(&m->sema, queued_before, "mutex");
    starving = starving || now_ns() - wait_start > STARVATION_NS;
    old = atomic_load_explicit(&m->state, memory_order_relaxed);
    if (old & STARVING) {
      /* Handed to us: LOCKED is ours; leave starvation mode if it is over. */
      unsigned delta = LOCKED - (1u << WAITER_SHIFT);
      if (!starving || (old >> WAITER_SHIFT) == 1)
        delta -= STARVING;
      atomic_fetch_add_explicit(&m->state, delta, memory_order_acquire);
      return;
    }
    awoke = true;
    iter = 0;
  }
}

void weft_mutex_lock(weft_mutex *mu)
{
  struct mutex_impl *m = (struct mutex_impl *)mu;
  unsigned unlocked = 0;
  if (atomic_compare_exchange_weak_explicit(&m->state, &unlocked, LOCKED, memory_order_acquire,
                                            memory_order_relaxed))
    return;
  lock_slow(m);
}

static void unlock_slow(struct mutex_impl *m, unsigned new)
{
  if (new &STARVING) {
    weft__sema_release(&m->sema); /* hand-off: the woken waiter owns the lock */
    return;
  }
  unsigned old = new;
  for (;;) {
    /* Nobody to wake, or someone is already awake, holding, or being handed it. */
    if ((old >> WAITER_SHIFT) == 0 || (old & (LOCKED | WOKEN | STARVING)))
      return;
    new = (old - (1u << WAITER_SHIFT)) | WOKEN;
    if (atomic_compare_exchange_weak(&m->state, &old, new)) {
      weft__sema_release(&m->sema);
      return;
    }
  }
}

void weft_mutex_unlock(weft_mutex *mu)
{
  struct mutex_impl *m = (struct mutex_impl *)mu;
  unsigned new = atomic_fetch_sub_explicit(&m->state, LOCKED, memory_order_release) - LOCKED;
  if (!((new + LOCKED) & LOCKED))
    weft__die("weft: unlock of unlocked mutex %p", (void *)mu);
  if (new != 0)
    unlock_slow(m, new);
}
