/* once.c: weft_once. done is read without the mutex on the fast path (acquire pairs with
 * the release after fn returned); the mutex makes late arrivals wait for a running fn. */
#include <stdatomic.h>
#include <string.h>

#include "weft/sync.h"

struct once_impl {
  atomic_int done;
  weft_mutex m;
};

_Static_assert(sizeof(struct once_impl) <= sizeof(weft_once), "weft_once too small");
_Static_assert(_Alignof(struct once_impl) <= _Alignof(weft_once), "weft_once misaligned");

void weft_once_do(weft_once *ov, void (*fn)(void *arg), void *arg)
{
  struct once_impl *o = (struct once_impl *)ov;
  if (atomic_load_explicit(&o->done, memory_order_acquire))
    return;
  weft_mutex_lock(&o->m);
  if (!atomic_load_explicit(&o->done, memory_order_relaxed)) {
    fn(arg);
    atomic_store_explicit(&o->done, 1, memory_order_release);
  }
  weft_mutex_unlock(&o->m);
}
