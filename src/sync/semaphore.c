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
  bool granted;   /* guarded by sem->lock */
  bool timed_out; /* guarded by sem->lock */
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

static void sem_deadline(struct timer *t)
{
  struct sem_waiter *w = t->arg;
  struct weft_sem *s = w->sem;
  struct sem_waiter *wake = NULL;
  bool fire = false;
  spin_lock(&s->lock);
  if (!w->granted) {
    bool front = s->head == w;
    unlink_waiter(s, w);
    w->timed_out = fire = true;
    if (front)
      wake = grant_locked(s);
  }
  spin_unlock(&s->lock);
  if (fire)
    weft__ready(w->self);
  wake_list(wake);
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

static void doomed_deadline(struct timer *t)
{
  weft__ready(t->arg);
}

static bool doomed_commit(struct coro *c, void *arg)
{
  struct timer *t = arg;
  if (t->when == WEFT_NO_DEADLINE)
    return true; /* waits for good, as in Go */
  t->fn = doomed_deadline;
  t->arg = c;
  return weft__timer_start(t, t->when) == 0; /* no memory: abandon; the caller retries */
}

/* Park until the deadline without joining the queue, then fail. Coroutine. */
static int wait_doomed(int64_t deadline)
{
  struct timer t = {.when = deadline};
  do {
    weft__park("semaphore", doomed_commit, &t);
    if (deadline != WEFT_NO_DEADLINE)
      timer_stop(&t); /* t lives on this stack: wait for its callback to return */
  } while (now_ns() < deadline);
  return -ETIMEDOUT;
}

int weft_sem_acquire(weft_sem *s, int64_t n, int64_t deadline)
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
    return wait_doomed(deadline);
  }
  w.prev = s->tail;
  if (s->tail)
    s->tail->next = &w;
  else
    s->head = &w;
  s->tail = &w;
  w.timer.when = deadline;
  weft__park("semaphore", sem_commit, &w);
  if (w.timer.when != WEFT_NO_DEADLINE)
    timer_stop(&w.timer);
  return w.granted ? 0 : -ETIMEDOUT;
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
