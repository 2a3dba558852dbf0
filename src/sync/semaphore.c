/* semaphore.c: weft_sem, x/sync/semaphore's weighted semaphore.
 *
 * lock guards cur and the FIFO of waiters. A waiter is granted its tokens by a release
 * (granted = true, under lock) or gives up at its deadline (the timer removes it under
 * lock); whichever comes first under the lock decides, so no claim flag is needed. A
 * waiter that gives up from the front of the queue lets the ones behind it try. A request
 * for more than size tokens can never be granted: as in x/sync it is not queued (it would
 * hold up everyone behind it for nothing) but waits out its deadline alone. */
#include <errno.h>
#include <stdlib.h>

#include "core/clock.h"
#include "core/core.h"
#include "weft/runtime.h"
#include "weft/sync.h"

struct sem_waiter {
  int64_t n;
  struct coro *self;
  bool granted; /* guarded by sem->lock */
  int err;      /* gave up: -ETIMEDOUT, or a canceller's error; guarded by sem->lock */
  struct sem_waiter *next, *prev;
  struct weft_sem *sem;
  struct timer timer;
};

struct weft_sem {
  spinlock lock;
  int64_t size;
  int64_t cur;                    /* tokens held; guarded by lock */
  struct sem_waiter *head, *tail; /* guarded by lock */
};

weft_sem *weft_sem_new(int64_t size)
{
  if (size < 0)
    return NULL;
  struct weft_sem *s = calloc(1, sizeof *s);
  if (s)
    s->size = size;
  return s;
}

void weft_sem_free(weft_sem *s)
{
  free(s);
}

static void unlink_waiter(struct weft_sem *s, struct sem_waiter *w)
{
  if (w->prev)
    w->prev->next = w->next;
  else
    s->head = w->next;
  if (w->next)
    w->next->prev = w->prev;
  else
    s->tail = w->prev;
  w->next = w->prev = NULL;
}

/* Grant tokens to waiters from the front while they fit; collect them in *wake (linked
 * through next). Lock held. */
static struct sem_waiter *grant_locked(struct weft_sem *s)
{
  struct sem_waiter *wake = NULL, **tail = &wake;
  while (s->head && s->size - s->cur >= s->head->n) {
    struct sem_waiter *w = s->head;
    unlink_waiter(s, w);
    s->cur += w->n;
    w->granted = true;
    *tail = w;
    tail = &w->next;
  }
  return wake;
}

static void wake_list(struct sem_waiter *list)
{
  while (list) {
    struct sem_waiter *next = list->next; /* read before the waiter may return */
    weft__ready(list->self);
    list = next;
  }
}

/* The waiter stops waiting (deadline or canceller) unless it was granted first; a waiter
 * leaving the front lets the ones behind it try. */
static void give_up(struct sem_waiter *w, int err)
{
  struct weft_sem *s = w->sem;
  struct sem_waiter *wake = NULL;
  bool fire = false;
  spin_lock(&s->lock);
  if (!w->granted && !w->err) {
    bool front = s->head == w;
    unlink_waiter(s, w);
    w->err = err;
    fire = true;
    if (front)
      wake = grant_locked(s);
  }
  spin_unlock(&s->lock);
  if (fire)
    weft__ready(w->self);
  wake_list(wake);
}

static void sem_deadline(struct timer *t)
{
  give_up(t->arg, -ETIMEDOUT);
}

static void sem_cancel_fired(void *waiter, int err)
{
  give_up(waiter, err);
}

static bool sem_commit(struct coro *c, void *arg)
{
  struct sem_waiter *w = arg;
  if (w->timer.when != WEFT_NO_DEADLINE) {
    w->timer.fn = sem_deadline;
    w->timer.arg = w;
    if (weft__timer_start(&w->timer, w->timer.when) != 0)
      w->timer.when = WEFT_NO_DEADLINE; /* no memory: wait without a deadline */
  }
  spin_unlock(&w->sem->lock);
  return true;
}

/* A request larger than the semaphore can never succeed: it waits for its deadline or
 * canceller without joining the queue (it blocks nobody, as in x/sync). Whichever of the
 * two claims the wait first wakes it, but only once the commit step is done with d: the
 * canceller is armed there and may fire at once, and a coroutine readied then could
 * return, freeing d (on its stack) while the commit step still reads it. So the claimer
 * and the end of the commit step each set `parked`; the second one wakes the coroutine
 * (the commit step by abandoning the park). */
struct doomed_wait {
  struct timer timer;
  struct coro *self;
  struct weft__canceller *cn;
  atomic_int claimed; /* set by the deadline or canceller that ends the wait */
  atomic_int parked;  /* set by the claimer and by the end of the commit step */
  int err;            /* written by the claimer before it sets parked */
};

static void doomed_fire(struct doomed_wait *d, int err)
{
  if (atomic_exchange(&d->claimed, 1))
    return;
  d->err = err;
  if (atomic_exchange(&d->parked, 1)) /* the commit step is done: wake it */
    weft__ready(d->self);
}

static void doomed_deadline(struct timer *t)
{
  doomed_fire(t->arg, -ETIMEDOUT);
}

static void doomed_cancel_fired(void *waiter, int err)
{
  doomed_fire(waiter, err);
}

/* Arm both from the commit step, once the coroutine is off its stack. */
static bool doomed_commit(struct coro *c, void *arg)
{
  struct doomed_wait *d = arg;
  int err = d->cn ? d->cn->arm(d->cn, doomed_cancel_fired, d) : 0;
  if (err) {
    d->err = err;
    atomic_store(&d->claimed, 1);
    return false; /* already cancelled: do not park */
  }
  if (d->timer.when != WEFT_NO_DEADLINE && weft__timer_start(&d->timer, d->timer.when) != 0)
    doomed_fire(d, -ENOMEM);
  /* The last touch of d: once parked is set a claimer may wake us. Claimed already: do
   * not park. */
  return !atomic_exchange(&d->parked, 1);
}

static int wait_doomed(int64_t deadline, struct weft__canceller *cn)
{
  struct doomed_wait d = {.self = weft__current(), .cn = cn};
  d.timer = (struct timer){.fn = doomed_deadline, .arg = &d, .when = deadline};
  weft__park("semaphore", doomed_commit, &d);
  if (cn)
    cn->disarm(cn);
  if (deadline != WEFT_NO_DEADLINE)
    weft__timer_stop(&d.timer); /* d lives on this stack: wait for its callback to return */
  return d.err;
}

int weft__sem_acquire(weft_sem *s, int64_t n, int64_t deadline, struct weft__canceller *cn)
{
  struct sem_waiter w = {.n = n, .self = weft__current(), .sem = s};
  if (!s || n < 0)
    return -EINVAL;
  if (deadline != WEFT_NO_DEADLINE && deadline <= now_ns())
    return -ETIMEDOUT;
  spin_lock(&s->lock);
  if (s->size - s->cur >= n && !s->head) {
    s->cur += n;
    spin_unlock(&s->lock);
    return 0;
  }
  if (!w.self) {
    spin_unlock(&s->lock);
    return -EPERM;
  }
  if (n > s->size) {
    spin_unlock(&s->lock);
    return wait_doomed(deadline, cn);
  }
  w.prev = s->tail;
  if (s->tail)
    s->tail->next = &w;
  else
    s->head = &w;
  s->tail = &w;
  /* Armed under the lock, after queueing: a canceller that fires now blocks on the lock
   * until the park's commit releases it, then finds the waiter queued. */
  int err = cn ? cn->arm(cn, sem_cancel_fired, &w) : 0;
  if (err) {
    bool front = s->head == &w;
    unlink_waiter(s, &w);
    struct sem_waiter *wake = front ? grant_locked(s) : NULL;
    spin_unlock(&s->lock);
    wake_list(wake);
    return err;
  }
  w.timer.when = deadline;
  weft__park("semaphore", sem_commit, &w);
  if (cn)
    cn->disarm(cn);
  if (w.timer.when != WEFT_NO_DEADLINE)
    weft__timer_stop(&w.timer);
  return w.granted ? 0 : w.err;
}

int weft_sem_acquire(weft_sem *s, int64_t n, int64_t deadline)
{
  return weft__sem_acquire(s, n, deadline, NULL);
}

int weft_sem_try_acquire(weft_sem *s, int64_t n)
{
  int rc = -EAGAIN;
  if (!s || n < 0)
    return -EINVAL;
  spin_lock(&s->lock);
  if (s->size - s->cur >= n && !s->head) {
    s->cur += n;
    rc = 0;
  }
  spin_unlock(&s->lock);
  return rc;
}

void weft_sem_release(weft_sem *s, int64_t n)
{
  spin_lock(&s->lock);
  s->cur -= n;
  if (s->cur < 0 || n < 0) {
    spin_unlock(&s->lock);
    weft__die("weft: semaphore released more than held");
  }
  struct sem_waiter *wake = grant_locked(s);
  spin_unlock(&s->lock);
  wake_list(wake);
}
