/* group.c: error groups (weft/group.h), golang.org/x/sync/errgroup.
 *
 * A function's life: go takes a slot from the limit semaphore (when there is a limit),
 * counts itself in `active` and then in the wait group, and spawns the coroutine, which
 * runs fn, records a failure, and then gives back in reverse order: the slot, `active`,
 * and last the wait group. After weft_wg_done the coroutine never touches the group
 * again: the waiter may free it as soon as the counter reaches zero (weft_wg's contract).
 *
 * Invariants: wg's counter == functions spawned and not yet done; active counts the same
 * functions from the moment they hold a slot until they have given it back, so with a
 * limit active <= limit; sem is replaced only while active == 0 and nobody waits for a
 * slot (set_limit checks, and aborts otherwise), so a running function always gives its
 * slot back to the semaphore it took it from.
 *
 * Locks: mu (a weft_mutex) guards err and is held only to record or read it; the context
 * is cancelled after mu is released, so mu is never held with a context lock.
 *
 * The design that lost: a channel of capacity n as the slot pool (Go's own). It cannot
 * express n == 0 with "go blocks forever" without a special case, and weft_sem is already
 * strictly FIFO, which keeps go calls served in order. */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "core/core.h"
#include "weft/group.h"
#include "weft/runtime.h"
#include "weft/sync.h"

struct weft_group {
  weft_ctx *ctx;       /* the derived context; owned reference, immutable */
  weft_wg wg;          /* counts spawned functions not yet done */
  weft_sem *sem;       /* the limit, or NULL for none; changed only by set_limit while
                          nothing is active or waiting (see invariants) */
  long limit;          /* < 0: none; as sem; for messages */
  atomic_long active;  /* functions holding a slot or running */
  atomic_long waiting; /* go calls parked for a slot */
  weft_mutex mu;       /* guards err */
  int err;             /* the first error returned; guarded by mu */
};

/* What the coroutine needs; freed by it before it gives its slot back. */
struct task {
  struct weft_group *g;
  weft_group_fn fn;
  void *arg;
  weft_sem *slot; /* the semaphore the slot came from, or NULL */
};

weft_group *weft_group_new(weft_ctx *parent)
{
  struct weft_group *g = calloc(1, sizeof *g);
  if (!g)
    return NULL;
  g->ctx = weft_ctx_with_cancel(parent);
  if (!g->ctx) {
    free(g);
    return NULL;
  }
  weft_wg_init(&g->wg);
  weft_mutex_init(&g->mu);
  g->limit = -1;
  atomic_init(&g->active, 0);
  atomic_init(&g->waiting, 0);
  return g;
}

weft_ctx *weft_group_ctx(weft_group *g)
{
  return g->ctx;
}

int weft_group_set_limit(weft_group *g, long n)
{
  long active = atomic_load(&g->active), waiting = atomic_load(&g->waiting);
  if (active != 0 || waiting != 0)
    weft__die("weft: weft_group_set_limit(%ld) while %ld function%s of the group %s active "
              "and %ld wait%s for a slot (limit %ld)",
              n, active, active == 1 ? "" : "s", active == 1 ? "is" : "are", waiting,
              waiting == 1 ? "s" : "", g->limit);
  weft_sem *sem = NULL;
  if (n >= 0 && !(sem = weft_sem_new(n)))
    return -ENOMEM;
  weft_sem_free(g->sem);
  g->sem = sem;
  g->limit = n < 0 ? -1 : n;
  return 0;
}

/* Record fn's result: the first non-zero one is kept and cancels the context. */
static void record(struct weft_group *g, int err)
{
  if (err == 0)
    return;
  weft_mutex_lock(&g->mu);
  bool first = g->err == 0;
  if (first)
    g->err = err;
  weft_mutex_unlock(&g->mu);
  if (first)
    weft_ctx_cancel_cause(g->ctx, err); /* after unlocking: mu is never held with it */
}

static void run_task(void *arg)
{
  struct task *t = arg;
  struct weft_group *g = t->g;
  weft_sem *slot = t->slot;
  int err = t->fn(g->ctx, t->arg);
  free(t);
  record(g, err);
  if (slot)
    weft_sem_release(slot, 1);
  atomic_fetch_sub(&g->active, 1);
  weft_wg_done(&g->wg); /* last touch: g may be freed from here on */
}

/* Spawn fn holding the slot already taken from slot (or none). On failure the slot is
 * given back and nothing changed. */
static int spawn(struct weft_group *g, weft_group_fn fn, void *arg, weft_sem *slot)
{
  struct task *t = malloc(sizeof *t);
  int err = -ENOMEM;
  if (!t)
    goto err_release_slot;
  *t = (struct task){g, fn, arg, slot};
  atomic_fetch_add(&g->active, 1);
  weft_wg_add(&g->wg, 1);
  err = weft_go_named(run_task, t, "group fn");
  if (err)
    goto err_uncount;
  return 0;

err_uncount:
  weft_wg_add(&g->wg, -1);
  atomic_fetch_sub(&g->active, 1);
  free(t);
err_release_slot:
  if (slot)
    weft_sem_release(slot, 1);
  return err;
}

int weft_group_go_until(weft_group *g, weft_group_fn fn, void *arg, int64_t deadline)
{
  if (!fn)
    return -EINVAL;
  weft_sem *slot = g->sem;
  if (slot) {
    atomic_fetch_add(&g->waiting, 1);
    int err = weft_sem_acquire(slot, 1, deadline);
    atomic_fetch_sub(&g->waiting, 1);
    if (err)
      return err;
  }
  return spawn(g, fn, arg, slot);
}

int weft_group_go(weft_group *g, weft_group_fn fn, void *arg)
{
  return weft_group_go_until(g, fn, arg, WEFT_NO_DEADLINE);
}

int weft_group_try_go(weft_group *g, weft_group_fn fn, void *arg)
{
  if (!fn)
    return -EINVAL;
  weft_sem *slot = g->sem;
  if (slot && weft_sem_try_acquire(slot, 1) != 0)
    return -EAGAIN;
  return spawn(g, fn, arg, slot);
}

int weft_group_wait(weft_group *g)
{
  weft_wg_wait(&g->wg);
  weft_mutex_lock(&g->mu);
  int err = g->err;
  weft_mutex_unlock(&g->mu);
  weft_ctx_cancel_cause(g->ctx, err); /* 0: plain cancel, cause -ECANCELED */
  return err;
}

void weft_group_free(weft_group *g)
{
  if (!g)
    return;
  long active = atomic_load(&g->active), waiting = atomic_load(&g->waiting);
  if (active != 0 || waiting != 0)
    weft__die("weft: weft_group_free while %ld function%s of the group still run%s and %ld "
              "go call%s wait%s for a slot (call weft_group_wait first)",
              active, active == 1 ? "" : "s", active == 1 ? "s" : "", waiting,
              waiting == 1 ? "" : "s", waiting == 1 ? "s" : "");
  weft_ctx_release(g->ctx);
  weft_sem_free(g->sem);
  free(g);
}
