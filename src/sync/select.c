/* select.c: weft_select.
 *
 * 1. Lock every distinct channel of the cases in address order (no global lock; two
 *    selects over the same channels take their locks in the same order, so they cannot
 *    deadlock).
 * 2. Visit the cases in a random order and perform the first that can proceed: a random
 *    permutation makes every ready case equally likely, so none starves.
 * 3. Otherwise (and without WEFT_SELECT_DEFAULT) queue one waiter per case, all sharing
 *    one wait set, and park; the commit step arms the deadline and unlocks the channels.
 * 4. Whoever completes one case claims the wait set (chan_internal.h). Once woken, relock
 *    the channels and dequeue the waiters of the other cases.
 * Cases, waiters and the lock order live on the caller's stack for up to STACK_CASES
 * cases, on the heap beyond. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/sched.h"
#include "sync/chan_internal.h"
#include "weft/runtime.h"

#define STACK_CASES 8
#define MAX_CASES   65536

struct select_frame {
  size_t n;
  uint16_t *order;          /* poll order: a random permutation of case indices */
  struct weft_chan **locks; /* distinct non-NULL channels, sorted by address */
  size_t nlocks;
  struct chan_waiter *waiters;
  struct wait_set *set;
  int64_t deadline;
};

static uint64_t select_rand(void)
{
  struct worker *w = weft__this_worker();
  static _Thread_local uint64_t fallback = 0x2545F4914F6CDD1Dull;
  uint64_t *s = w ? &w->rng : &fallback;
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

static int compare_ptr(const void *a, const void *b)
{
  uintptr_t x = (uintptr_t) * (struct weft_chan *const *)a;
  uintptr_t y = (uintptr_t) * (struct weft_chan *const *)b;
  return x < y ? -1 : x > y;
}

static void plan(struct select_frame *f, weft_select_case *cases)
{
  for (size_t i = 0; i < f->n; i++) {
    size_t j = (size_t)(select_rand() % (i + 1)); /* inside-out Fisher-Yates */
    f->order[i] = f->order[j];
    f->order[j] = (uint16_t)i;
  }
  f->nlocks = 0;
  for (size_t i = 0; i < f->n; i++)
    if (cases[i].ch)
      f->locks[f->nlocks++] = cases[i].ch;
  if (f->nlocks > 1) {
    qsort(f->locks, f->nlocks, sizeof *f->locks, compare_ptr);
    size_t k = 1;
    for (size_t i = 1; i < f->nlocks; i++)
      if (f->locks[i] != f->locks[k - 1])
        f->locks[k++] = f->locks[i];
    f->nlocks = k;
  }
}

static void lock_all(struct select_frame *f)
{
  for (size_t i = 0; i < f->nlocks; i++)
    spin_lock(&f->locks[i]->lock);
}

static void unlock_all(struct select_frame *f)
{
  for (size_t i = f->nlocks; i-- > 0;)
    spin_unlock(&f->locks[i]->lock);
}

/* Try the cases in poll order with every lock held. Returns the index done, or -EAGAIN. */
static int poll_cases(struct select_frame *f, weft_select_case *cases, struct coro **wake)
{
  for (size_t k = 0; k < f->n; k++) {
    size_t i = f->order[k];
    weft_select_case *sc = &cases[i];
    if (!sc->ch)
      continue;
    int rc = sc->dir == WEFT_SELECT_SEND ? weft__chan_send_locked(sc->ch, sc->elem, wake)
                                         : weft__chan_recv_locked(sc->ch, sc->elem, wake);
    if (rc != -EAGAIN) {
      sc->result = rc;
      return (int)i;
    }
  }
  return -EAGAIN;
}

static bool select_commit(struct coro *c, void *arg)
{
  struct select_frame *f = arg;
  weft__wait_set_arm_deadline(f->set, f->deadline);
  unlock_all(f);
  return true;
}

static struct waitq *queue_of(weft_select_case *sc)
{
  return sc->dir == WEFT_SELECT_SEND ? &sc->ch->sendq : &sc->ch->recvq;
}

/* Queue a waiter per case and park; every lock is held on entry and released on return. */
static int park_select(struct select_frame *f, weft_select_case *cases)
{
  struct wait_set *set = f->set;
  for (size_t i = 0; i < f->n; i++) {
    f->waiters[i] = (struct chan_waiter){.set = set, .elem = cases[i].elem, .index = (int)i};
    if (cases[i].ch)
      waitq_push(queue_of(&cases[i]), &f->waiters[i]);
  }
  weft__park("select", select_commit, f);
  wait_set_disarm(set, f->deadline);
  /* The claimer dequeued the fired case's waiter; the others may still be queued. A
   * one-case select that fired (a context's done, a close) has nothing left to remove:
   * skipping the relock spares 10,000 cancelled waiters a convoy on one channel lock. */
  if (!(f->n == 1 && set->fired == 0)) {
    lock_all(f);
    for (size_t i = 0; i < f->n; i++)
      if (cases[i].ch)
        waitq_remove(queue_of(&cases[i]), &f->waiters[i]);
    unlock_all(f);
  }
  if (set->fired < 0)
    return set->fired;
  weft_select_case *won = &cases[set->fired];
  won->result = set->result;
  if (won->result == -EPIPE && won->dir == WEFT_SELECT_RECV && won->elem)
    memset(won->elem, 0, won->ch->elem_size);
  return set->fired;
}

static int run_select(struct select_frame *f, weft_select_case *cases, int flags)
{
  struct coro *wake = NULL;
  plan(f, cases);
  lock_all(f);
  int idx = poll_cases(f, cases, &wake);
  if (idx >= 0 || (flags & WEFT_SELECT_DEFAULT)) {
    unlock_all(f);
    if (wake)
      weft__ready(wake);
    return idx;
  }
  if (!f->set->self) {
    unlock_all(f);
    return -EPERM;
  }
  if (f->deadline != WEFT_NO_DEADLINE && f->deadline <= now_ns()) {
    unlock_all(f);
    return -ETIMEDOUT;
  }
  if (f->nlocks == 0) { /* only nil channels: sleep until the deadline, or forever */
    if (f->deadline == WEFT_NO_DEADLINE) {
      weft__park("select (no cases)", NULL, NULL);
      weft__die("weft: a select over nil channels was woken");
    }
    weft_sleep_until(f->deadline);
    return -ETIMEDOUT;
  }
  return park_select(f, cases);
}

int weft_select(weft_select_case *cases, size_t n, int flags, int64_t deadline)
{
  uint16_t order_buf[STACK_CASES];
  struct weft_chan *locks_buf[STACK_CASES];
  struct chan_waiter waiters_buf[STACK_CASES];
  struct wait_set set;
  wait_set_init(&set);
  struct select_frame f = {.n = n,
                           .set = &set,
                           .deadline = deadline,
                           .order = order_buf,
                           .locks = locks_buf,
                           .waiters = waiters_buf};
  if ((n > 0 && !cases) || n > MAX_CASES)
    return -EINVAL;
  for (size_t i = 0; i < n; i++) {
    bool is_send = cases[i].dir == WEFT_SELECT_SEND;
    if ((!is_send && cases[i].dir != WEFT_SELECT_RECV) || (is_send && !cases[i].elem))
      return -EINVAL; /* a send case needs a value */
  }
  if (n > STACK_CASES) {
    f.order = malloc(n * sizeof *f.order);
    f.locks = malloc(n * sizeof *f.locks);
    f.waiters = malloc(n * sizeof *f.waiters);
    if (!f.order || !f.locks || !f.waiters) {
      free(f.order);
      free(f.locks);
      free(f.waiters);
      return -ENOMEM;
    }
  }
  int rc = run_select(&f, cases, flags);
  if (n > STACK_CASES) {
    free(f.order);
    free(f.locks);
    free(f.waiters);
  }
  return rc;
}
