/* cond.c: weft_cond, with Go's ticket scheme (notifyList).
 *
 * A waiter takes a ticket before it unlocks the mutex; signal serves tickets in order. A
 * signal that arrives between the unlock and the park is not lost: the waiter finds its
 * ticket already served and does not park. lock guards everything; waiters are readied
 * after it is released. */
#include <string.h>

#include "core/core.h"
#include "weft/sync.h"

struct cond_waiter {
  struct coro *self;
  uint32_t ticket;
  struct cond_waiter *next;
};

struct cond_impl {
  spinlock lock;
  uint32_t wait_ticket;   /* next ticket to hand out */
  uint32_t notify_ticket; /* tickets below this have been served */
  struct cond_waiter *head, *tail;
};

_Static_assert(sizeof(struct cond_impl) <= sizeof(weft_cond), "weft_cond too small");
_Static_assert(_Alignof(struct cond_impl) <= _Alignof(weft_cond), "weft_cond misaligned");

void weft_cond_init(weft_cond *c)
{
  memset(c, 0, sizeof *c);
}

static bool cond_commit(struct coro *c, void *arg)
{
  spin_unlock(arg);
  return true;
}

/* Served: ticket t is below notify (tickets wrap, so compare by difference). */
static bool served(struct cond_impl *c, uint32_t t)
{
  return (int32_t)(t - c->notify_ticket) < 0;
}

void weft_cond_wait(weft_cond *cv, weft_mutex *m)
{
  struct cond_impl *c = (struct cond_impl *)cv;
  struct cond_waiter me = {.self = weft__current()};
  if (!me.self)
    weft__die("weft: weft_cond_wait outside a coroutine");
  spin_lock(&c->lock);
  me.ticket = c->wait_ticket++;
  spin_unlock(&c->lock);
  weft_mutex_unlock(m);
  spin_lock(&c->lock);
  if (served(c, me.ticket)) {
    spin_unlock(&c->lock);
  } else {
    if (c->tail)
      c->tail->next = &me;
    else
      c->head = &me;
    c->tail = &me;
    weft__park("cond wait", cond_commit, &c->lock);
  }
  weft_mutex_lock(m);
}

/* Remove and return the waiter holding ticket t, if it has queued; lock held. */
static struct cond_waiter *take_ticket(struct cond_impl *c, uint32_t t)
{
  struct cond_waiter *prev = NULL;
  for (struct cond_waiter *w = c->head; w; prev = w, w = w->next) {
    if (w->ticket != t)
      continue;
    if (prev)
      prev->next = w->next;
    else
      c->head = w->next;
    if (c->tail == w)
      c->tail = prev;
    return w;
  }
  return NULL;
}

void weft_cond_signal(weft_cond *cv)
{
  struct cond_impl *c = (struct cond_impl *)cv;
  struct cond_waiter *w = NULL;
  spin_lock(&c->lock);
  if (c->notify_ticket != c->wait_ticket)
    w = take_ticket(c, c->notify_ticket++);
  struct coro *self = w ? w->self : NULL;
  spin_unlock(&c->lock);
  if (self)
    weft__ready(self);
}

void weft_cond_broadcast(weft_cond *cv)
{
  struct cond_impl *c = (struct cond_impl *)cv;
  spin_lock(&c->lock);
  struct cond_waiter *list = c->head;
  c->head = c->tail = NULL;
  c->notify_ticket = c->wait_ticket;
  spin_unlock(&c->lock);
  while (list) {
    struct cond_waiter *next = list->next; /* read before the waiter may return */
    weft__ready(list->self);
    list = next;
  }
}
