/* rwmutex.c: weft_rwmutex, Go's sync.RWMutex algorithm.
 *
 * reader_count counts active readers; a writer announces itself by subtracting
 * MAX_READERS, which makes it negative so arriving readers park on reader_sem.
 * reader_wait counts the readers the writer still waits for (those active when it
 * announced); the last of them releases writer_sem. Writers exclude each other with
 * writer_lock. */
#include <string.h>

#include "core/core.h"
#include "sync/sema.h"
#include "weft/sync.h"

#define MAX_READERS (1 << 30)

struct rwmutex_impl {
  weft_mutex writer_lock;
  atomic_int reader_count;
  atomic_int reader_wait;
  struct sema writer_sem;
  struct sema reader_sem;
};

_Static_assert(sizeof(struct rwmutex_impl) <= sizeof(weft_rwmutex), "weft_rwmutex too small");
_Static_assert(_Alignof(struct rwmutex_impl) <= _Alignof(weft_rwmutex),
               "weft_rwmutex misaligned");

void weft_rwmutex_init(weft_rwmutex *rw)
{
  memset(rw, 0, sizeof *rw);
}

void weft_rwmutex_rlock(weft_rwmutex *rwm)
{
  struct rwmutex_impl *rw = (struct rwmutex_impl *)rwm;
  if (atomic_fetch_add(&rw->reader_count, 1) + 1 < 0)
    weft__sema_acquire(&rw->reader_sem, false, "rwmutex read"); /* a writer is pending */
}

void weft_rwmutex_runlock(weft_rwmutex *rwm)
{
  struct rwmutex_impl *rw = (struct rwmutex_impl *)rwm;
  int r = atomic_fetch_sub(&rw->reader_count, 1) - 1;
  if (r >= 0)
    return;
  if (r + 1 == 0 || r + 1 == -MAX_READERS)
    weft__die("weft: runlock of unlocked rwmutex %p", (void *)rwm);
  if (atomic_fetch_sub(&rw->reader_wait, 1) - 1 == 0)
    weft__sema_release(&rw->writer_sem); /* the last reader the writer waited for */
}

void weft_rwmutex_lock(weft_rwmutex *rwm)
{
  struct rwmutex_impl *rw = (struct rwmutex_impl *)rwm;
  weft_mutex_lock(&rw->writer_lock);
  int r = atomic_fetch_sub(&rw->reader_count, MAX_READERS);
  if (r != 0 && atomic_fetch_add(&rw->reader_wait, r) + r != 0)
    weft__sema_acquire(&rw->writer_sem, false, "rwmutex write");
}

void weft_rwmutex_unlock(weft_rwmutex *rwm)
{
  struct rwmutex_impl *rw = (struct rwmutex_impl *)rwm;
  int r = atomic_fetch_add(&rw->reader_count, MAX_READERS) + MAX_READERS;
  if (r >= MAX_READERS)
    weft__die("weft: unlock of unlocked rwmutex %p", (void *)rwm);
  for (int i = 0; i < r; i++)
    weft__sema_release(&rw->reader_sem); /* readers that arrived while we held it */
  weft_mutex_unlock(&rw->writer_lock);
}
