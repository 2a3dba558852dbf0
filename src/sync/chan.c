/* chan.c: channels (see weft/chan.h for the semantics, chan_internal.h for the waiter
 * protocol).
 *
 * Invariants, under ch->lock:
 * - count <= cap; the buffered elements are buf[head], buf[head+1], ... (mod cap).
 * - recvq non-empty implies count == 0 (a receiver parks only when nothing is buffered,
 *   and a send hands its value to a parked receiver before buffering).
 * - sendq non-empty implies count == cap (a sender parks only when the buffer is full).
 * - once closed, sendq and recvq are empty and stay so.
 * Waiters are collected under the lock and readied after it is released. */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "sync/chan_internal.h"
#include "weft/chan.h"
#include "weft/runtime.h"

#define MAX_ELEM_SIZE 65536

/* ---- queues ---- */

/* Dequeue the first waiter whose wait set we can claim; waiters of sets already claimed
 * elsewhere (a select that fired on another case, or timed out) are dropped. */
static inline struct chan_waiter *waitq_claim(struct waitq *q)
{
  struct chan_waiter *w;
  while ((w = q->head)) {
    waitq_remove(q, w);
    if (wait_set_claim(w->set))
      return w;
  }
  return NULL;
}

/* ---- lifetime ---- */

weft_chan *weft_chan_new(size_t elem_size, size_t cap)
{
  if (elem_size == 0 || elem_size > MAX_ELEM_SIZE || (cap && cap > SIZE_MAX / 2 / elem_size))
    return NULL;
  struct weft_chan *ch = calloc(1, sizeof *ch + cap * elem_size);
  if (!ch)
    return NULL;
  atomic_init(&ch->refs, 1);
  ch->elem_size = elem_size;
  ch->cap = cap;
  return ch;
}

weft_chan *weft_chan_retain(weft_chan *ch)
{
  if (ch)
    atomic_fetch_add_explicit(&ch->refs, 1, memory_order_relaxed);
  return ch;
}

void weft_chan_release(weft_chan *ch)
{
  if (!ch || atomic_fetch_sub_explicit(&ch->refs, 1, memory_order_acq_rel) != 1)
    return;
  if (ch->finalize)
    ch->finalize(ch);
  free(ch);
}

/* ---- operations under the lock ---- */

static void *slot(struct weft_chan *ch, size_t i)
{
  return ch->buf + (i % ch->cap) * ch->elem_size;
}

/* Copy one element; the common small sizes inline, not through a memcpy call. */
static inline void elem_copy(void *dst, const void *src, size_t size)
{
  switch (size) {
  case 4:
    memcpy(dst, src, 4);
    break;
  case 8:
    memcpy(dst, src, 8);
    break;
  case 16:
    memcpy(dst, src, 16);
    break;
  default:
    memcpy(dst, src, size);
  }
}

static void copy_elem(struct weft_chan *ch, void *dst, const void *src)
{
  if (dst)
    elem_copy(dst, src, ch->elem_size);
}

/* Complete a claimed waiter's case; the caller readies w->set->self after unlocking. */
static struct coro *complete(struct chan_waiter *w, int result)
{
  w->set->fired = w->index;
  w->set->result = result;
  return w->set->self;
}

int weft__chan_send_locked(struct weft_chan *ch, const void *elem, struct coro **wake)
{
  struct chan_waiter *r;
  if (ch->closed)
    return -EPIPE;
  if ((r = waitq_claim(&ch->recvq))) {
    copy_elem(ch, r->elem, elem); /* straight into the receiver's variable */
    *wake = complete(r, 0);
    return 0;
  }
  if (ch->count < ch->cap) {
    elem_copy(slot(ch, ch->head + ch->count), elem, ch->elem_size);
    ch->count++;
    return 0;
  }
  return -EAGAIN;
}

int weft__chan_recv_locked(struct weft_chan *ch, void *elem, struct coro **wake)
{
  struct chan_waiter *s;
  if ((s = waitq_claim(&ch->sendq))) {
    if (ch->cap == 0) {
      copy_elem(ch, elem, s->elem); /* straight from the sender's variable */
    } else {
      /* Full buffer: take the oldest, and the sender's value takes its place at the tail. */
      copy_elem(ch, elem, slot(ch, ch->head));
      elem_copy(slot(ch, ch->head), s->elem, ch->elem_size);
      ch->head = (ch->head + 1) % ch->cap;
    }
    *wake = complete(s, 0);
    return 0;
  }
  if (ch->count > 0) {
    copy_elem(ch, elem, slot(ch, ch->head));
    ch->head = (ch->head + 1) % ch->cap;
    ch->count--;
    return 0;
  }
  if (ch->closed) {
    if (elem)
      memset(elem, 0, ch->elem_size);
    return -EPIPE;
  }
  return -EAGAIN;
}

/* ---- deadlines ---- */

static void deadline_fired(struct timer *t)
{
  struct wait_set *s = t->arg;
  if (wait_set_claim(s)) {
    s->fired = -ETIMEDOUT;
    weft__ready(s->self);
  }
}

void weft__wait_set_arm_deadline(struct wait_set *s, int64_t deadline)
{
  if (deadline == WEFT_NO_DEADLINE)
    return;
  s->timer = (struct timer){.fn = deadline_fired, .arg = s};
  if (weft__timer_start(&s->timer, deadline) != 0)
    deadline_fired(&s->timer); /* no memory for the timer: time out now */
}

/* ---- blocking send and receive ---- */

static int chan_send(weft_chan *ch, const void *elem, int64_t deadline);

struct park_one {
  struct weft_chan *ch;
  struct wait_set *set;
  int64_t deadline;
};

static bool unlock_commit(struct coro *c, void *arg)
{
  struct park_one *p = arg;
  weft__wait_set_arm_deadline(p->set, p->deadline);
  spin_unlock(&p->ch->lock);
  return true;
}

/* Park on a NULL channel: nothing can wake us but the deadline. */
static int block_forever(int64_t deadline, const char *reason)
{
  if (!weft__current())
    return -EPERM;
  if (deadline == WEFT_NO_DEADLINE) {
    weft__park(reason, NULL, NULL);
    weft__die("weft: a coroutine blocked on a nil channel was woken");
  }
  weft_sleep_until(deadline);
  return -ETIMEDOUT;
}

/* Queue w on q (ch locked), park, and return the outcome once woken. */
static int park_on(struct weft_chan *ch, struct waitq *q, struct chan_waiter *w,
                   int64_t deadline, const char *reason)
{
  struct wait_set *set = w->set;
  struct park_one p = {ch, set, deadline};
  set->exclusive = deadline == WEFT_NO_DEADLINE;
  if (deadline != WEFT_NO_DEADLINE && deadline <= now_ns()) {
    spin_unlock(&ch->lock);
    return -ETIMEDOUT;
  }
  waitq_push(q, w);
  weft__park(reason, unlock_commit, &p);
  wait_set_disarm(set, deadline);
  if (set->fired == -ETIMEDOUT) {
    spin_lock(&ch->lock);
    waitq_remove(q, w);
    spin_unlock(&ch->lock);
    return -ETIMEDOUT;
  }
  return set->result;
}

#ifndef NDEBUG
/* Debug builds say where a send on a closed channel came from: in Go this panics, and
 * the crawler-style bug it reveals (a producer outliving its consumer's close) deserves
 * a trace even though weft reports it as -EPIPE. */
static void log_closed_send(weft_chan *ch, void *caller)
{
  static atomic_int logged;
  int n = atomic_fetch_add_explicit(&logged, 1, memory_order_relaxed);
  if (n >= 10) {
    if (n == 10)
      fprintf(stderr, "weft: further sends on closed channels are not logged\n");
    return;
  }
  Dl_info info;
  const char *fn = dladdr(caller, &info) && info.dli_sname ? info.dli_sname : "?";
  uint64_t id = weft_self_id();
  fprintf(stderr, "weft: send on closed channel %p from %s (%p) in coroutine %llu\n",
          (void *)ch, fn, caller, (unsigned long long)id);
}
#define NOTE_CLOSED_SEND(rc, ch)                          \
  do {                                                    \
    if ((rc) == -EPIPE)                                   \
      log_closed_send((ch), __builtin_return_address(0)); \
  } while (0)
#else
#define NOTE_CLOSED_SEND(rc, ch) ((void)0)
#endif

int weft_chan_send(weft_chan *ch, const void *elem, int64_t deadline)
{
  int rc = chan_send(ch, elem, deadline);
  NOTE_CLOSED_SEND(rc, ch);
  return rc;
}

/* A send or a receive: done at once if it can be, else parked on the channel's queue. */
static int chan_op(weft_chan *ch, void *elem, int64_t deadline, bool send)
{
  struct coro *wake = NULL;
  if (!ch)
    return block_forever(deadline, send ? "chan send (nil chan)" : "chan receive (nil chan)");
  spin_lock(&ch->lock);
  int rc =
      send ? weft__chan_send_locked(ch, elem, &wake) : weft__chan_recv_locked(ch, elem, &wake);
  if (rc != -EAGAIN) {
    spin_unlock(&ch->lock);
    if (wake)
      weft__ready(wake);
    return rc;
  }
  struct wait_set set;
  wait_set_init(&set);
  struct chan_waiter w = {.set = &set, .elem = elem};
  if (!set.self) {
    spin_unlock(&ch->lock);
    return -EPERM;
  }
  if (send)
    return park_on(ch, &ch->sendq, &w, deadline, "chan send");
  rc = park_on(ch, &ch->recvq, &w, deadline, "chan receive");
  if (rc == -EPIPE && elem)
    memset(elem, 0, ch->elem_size);
  return rc;
}

static int chan_send(weft_chan *ch, const void *elem, int64_t deadline)
{
  return elem ? chan_op(ch, (void *)elem, deadline, true) : -EINVAL;
}

int weft_chan_recv(weft_chan *ch, void *elem, int64_t deadline)
{
  return chan_op(ch, elem, deadline, false);
}

static int try_op(weft_chan *ch, void *elem, bool send)
{
  struct coro *wake = NULL;
  if (!ch)
    return -EAGAIN;
  spin_lock(&ch->lock);
  int rc =
      send ? weft__chan_send_locked(ch, elem, &wake) : weft__chan_recv_locked(ch, elem, &wake);
  spin_unlock(&ch->lock);
  if (wake)
    weft__ready(wake);
  return rc;
}

int weft_chan_try_send(weft_chan *ch, const void *elem)
{
  if (!elem)
    return -EINVAL;
  int rc = try_op(ch, (void *)elem, true);
  NOTE_CLOSED_SEND(rc, ch);
  return rc;
}

int weft_chan_try_recv(weft_chan *ch, void *elem)
{
  return try_op(ch, elem, false);
}

int weft_chan_send_sized(weft_chan *ch, const void *elem, size_t size, int64_t deadline)
{
  if (ch && size != ch->elem_size)
    return -EINVAL;
  int rc = chan_send(ch, elem, deadline);
  NOTE_CLOSED_SEND(rc, ch);
  return rc;
}

int weft_chan_recv_sized(weft_chan *ch, void *elem, size_t size, int64_t deadline)
{
  if (ch && size != ch->elem_size)
    return -EINVAL;
  return weft_chan_recv(ch, elem, deadline);
}

/* ---- close ---- */

/* Claim every waiter of q as completed by close; link their coroutines through
 * wake->next... collected into list (at most one entry per waiter). */
static void close_queue(struct weft_chan *ch, struct waitq *q, struct coro ***tail, bool recv)
{
  struct chan_waiter *w;
  while ((w = waitq_claim(q))) {
    if (recv && w->elem)
      memset(w->elem, 0, ch->elem_size);
    struct coro *c = complete(w, -EPIPE);
    **tail = c;
    *tail = &c->next;
  }
}

void weft_chan_close(weft_chan *ch)
{
  struct coro *list = NULL, **tail = &list;
  if (!ch)
    weft__die("weft: close of nil channel");
  spin_lock(&ch->lock);
  if (ch->closed) {
    spin_unlock(&ch->lock);
    weft__die("weft: close of closed channel %p", (void *)ch);
  }
  ch->closed = true;
  close_queue(ch, &ch->recvq, &tail, true);
  close_queue(ch, &ch->sendq, &tail, false);
  *tail = NULL;
  spin_unlock(&ch->lock);
  /* Wake after unlocking, all at once. c->next is free: a parked coroutine is on no run
   * queue. */
  weft__ready_list(list);
}

/* ---- inspection ---- */

size_t weft_chan_len(weft_chan *ch)
{
  if (!ch)
    return 0;
  spin_lock(&ch->lock);
  size_t n = ch->count;
  spin_unlock(&ch->lock);
  return n;
}

size_t weft_chan_cap(weft_chan *ch)
{
  return ch ? ch->cap : 0;
}

bool weft_chan_is_closed(weft_chan *ch)
{
  if (!ch)
    return false;
  spin_lock(&ch->lock);
  bool closed = ch->closed;
  spin_unlock(&ch->lock);
  return closed;
}

size_t weft_chan_elem_size(weft_chan *ch)
{
  return ch ? ch->elem_size : 0;
}
