/* sema.c: see sema.h. */
#include "sync/sema.h"

static bool sema_commit(struct coro *c, void *arg)
{
  struct sema *s = arg;
  spin_unlock(&s->lock);
  return true;
}

void weft__sema_acquire(struct sema *s, bool lifo, const char *reason)
{
  struct sema_waiter me = {.self = weft__current()};
  spin_lock(&s->lock);
  if (s->count > 0) {
    s->count--;
    spin_unlock(&s->lock);
    return;
  }
  if (!me.self)
    weft__die("weft: %s outside a coroutine", reason);
  if (lifo && s->head) {
    me.next = s->head;
    s->head = &me;
  } else {
    if (s->tail)
      s->tail->next = &me;
    else
      s->head = &me;
    s->tail = &me;
  }
  weft__park(reason, sema_commit, s);
}

void weft__sema_release(struct sema *s)
{
  spin_lock(&s->lock);
  struct sema_waiter *w = s->head;
  if (w) {
    s->head = w->next;
    if (!s->head)
      s->tail = NULL;
  } else {
    s->count++;
  }
  spin_unlock(&s->lock);
  if (w) {
    struct coro *c = w->self; /* w lives on the waiter's stack: read before waking it */
    weft__ready(c);
  }
}
