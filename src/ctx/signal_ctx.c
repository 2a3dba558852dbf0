/* signal_ctx.c: contexts cancelled by signals (weft/signal_ctx.h).
 *
 * Every live signal context is in one registry, with a count per signal of the contexts
 * that watch it. Each context has a watcher coroutine that waits (weft_signal_wait) for its
 * own signals; whichever watcher receives an arrival delivers it to every registered
 * context whose set holds that signal, its own included. weft_signal_wait hands each
 * arrival to one waiter only, so the fan-out is what lets two contexts both see a Ctrl-C.
 *
 * Delivery to a context: the first arrival cancels its context with cause
 * WEFT_CAUSE_SIGNAL(signo); every arrival bumps count; later ones are also offered to the
 * `again` channel (try_send: a full channel drops the value, the count still has it).
 *
 * Watcher life: from weft_signal_ctx_new (unless the parent is done already) until `life`
 * (a child of the parent that stop cancels) is done: it waits for signals with
 * weft_signal_wait_ctx on life, so it ends at once. It leaves through weft_wg_done on
 * sc->watcher, which stop waits for before freeing sc.
 *
 * Invariants, under reg.mu: sc is in reg.list from new until stop unlinks it; watching[s]
 * equals the number of listed contexts whose set holds s, and s is watched (weft's handler
 * installed) iff watching[s] > 0. A delivery reads only listed contexts, under reg.mu, so
 * stop never frees a context a delivery is using.
 *
 * Lock order: reg.mu (a weft_mutex: deliveries are rare and may run after-funcs through
 * the cancel) > context locks > channel locks. Nothing below takes reg.mu.
 *
 * The design that lost: one watcher per context delivering only to itself. Two contexts
 * on SIGINT (say a program's and a library's) would then race for each arrival and only
 * one would be cancelled. */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "weft/runtime.h"
#include "weft/signal.h"
#include "weft/signal_ctx.h"
#include "weft/sync.h"

#define SIG_MAX 65 /* signals 1 .. 64 */

struct weft_signal_ctx {
  weft_ctx *ctx;        /* with_cancel child of life; owned reference, immutable */
  weft_ctx *life;       /* with_cancel child of parent, cancelled by stop: the watcher
                           waits on it, so it ends at once on stop or a done parent;
                           owned reference, immutable */
  weft_ctx *parent;     /* owned reference, immutable */
  sigset_t set;         /* the signals watched, immutable */
  atomic_long count;    /* arrivals delivered (relaxed: a statistic) */
  weft_chan *again;     /* int; arrivals after the first; owned, immutable */
  atomic_bool stopping; /* set by stop; read by the watcher */
  weft_wg watcher;      /* 1 while the watcher coroutine runs */
  struct weft_signal_ctx *next, *prev; /* registry links, guarded by reg.mu */
};

static struct {
  weft_mutex mu;                /* guards list and watching */
  struct weft_signal_ctx *list; /* live signal contexts */
  int watching[SIG_MAX];        /* listed contexts per signal */
} reg = {.mu = WEFT_MUTEX_INIT};

static bool catchable(int s)
{
  return s > 0 && s < SIG_MAX && s != SIGKILL && s != SIGSTOP && s != SIGSEGV && s != SIGBUS &&
         s != SIGFPE && s != SIGILL;
}

/* Fill *set from signos (n == 0: SIGINT, SIGTERM); false on bad input. */
static bool make_set(sigset_t *set, const int *signos, int n)
{
  static const int dflt[] = {SIGINT, SIGTERM};
  if (n < 0 || (n > 0 && !signos))
    return false;
  if (n == 0) {
    signos = dflt;
    n = 2;
  }
  sigemptyset(set);
  for (int i = 0; i < n; i++) {
    if (!catchable(signos[i]))
      return false;
    sigaddset(set, signos[i]);
  }
  return true;
}

/* Undo watch_locked for the signals below `upto` (SIG_MAX: all). reg.mu held. */
static void unwatch_locked(const sigset_t *set, int upto)
{
  for (int s = 1; s < upto; s++)
    if (sigismember(set, s) == 1 && --reg.watching[s] == 0)
      weft_signal_unwatch(s);
}

/* Count sc's signals as watched, installing the handler for the first watcher of each.
 * reg.mu held. Returns 0 or the error (nothing changed then). */
static int watch_locked(const sigset_t *set)
{
  for (int s = 1; s < SIG_MAX; s++) {
    if (sigismember(set, s) != 1)
      continue;
    int err = reg.watching[s] == 0 ? weft_signal_watch(s) : 0;
    if (err) {
      unwatch_locked(set, s);
      return err;
    }
    reg.watching[s]++;
  }
  return 0;
}

/* Hand signo to every listed context that watches it. reg.mu held. */
static void deliver_locked(int signo)
{
  for (struct weft_signal_ctx *sc = reg.list; sc; sc = sc->next) {
    if (sigismember(&sc->set, signo) != 1)
      continue;
    if (atomic_fetch_add_explicit(&sc->count, 1, memory_order_relaxed) == 0)
      weft_ctx_cancel_cause(sc->ctx, WEFT_CAUSE_SIGNAL(signo));
    else
      (void)weft_chan_try_send(sc->again, &signo);
  }
}

static void watch_signals(void *arg)
{
  struct weft_signal_ctx *sc = arg;
  while (!atomic_load(&sc->stopping) && !weft_ctx_err(sc->life)) {
    int s = weft_signal_wait_ctx(&sc->set, sc->life);
    if (s > 0) {
      weft_mutex_lock(&reg.mu);
      deliver_locked(s);
      weft_mutex_unlock(&reg.mu);
    } else if (s == -EINVAL) {
      /* None of its signals is watched any more (stop is unwatching them, or the program
       * called weft_signal_unwatch): wait for stop without spinning. */
      weft_ctx_wait(sc->life, WEFT_NO_DEADLINE);
    }
  }
  weft_wg_done(&sc->watcher); /* last touch: stop may free sc from here on */
}

static void free_sc(struct weft_signal_ctx *sc)
{
  weft_chan_release(sc->again);
  weft_ctx_release(sc->ctx);
  weft_ctx_release(sc->life);
  weft_ctx_release(sc->parent);
  free(sc);
}

weft_signal_ctx *weft_signal_ctx_new(weft_ctx *parent, const int *signos, int n)
{
  sigset_t set;
  if (!make_set(&set, signos, n) || !weft_in_coroutine())
    return NULL;
  struct weft_signal_ctx *sc = calloc(1, sizeof *sc);
  if (!sc)
    return NULL;
  sc->set = set;
  sc->parent = weft_ctx_retain(parent ? parent : weft_ctx_background());
  sc->life = weft_ctx_with_cancel(parent);
  sc->ctx = weft_ctx_with_cancel(sc->life);
  sc->again = weft_chan_new(sizeof(int), 16);
  atomic_init(&sc->count, 0);
  atomic_init(&sc->stopping, false);
  weft_wg_init(&sc->watcher);
  if (!sc->life || !sc->ctx || !sc->again)
    goto err_free;

  weft_mutex_lock(&reg.mu);
  if (watch_locked(&sc->set) != 0)
    goto err_unlock;
  sc->next = reg.list;
  if (reg.list)
    reg.list->prev = sc;
  reg.list = sc;
  weft_mutex_unlock(&reg.mu);

  if (!weft_ctx_err(sc->parent)) {
    weft_wg_add(&sc->watcher, 1);
    if (weft_go_named(watch_signals, sc, "signal ctx") != 0) {
      weft_wg_add(&sc->watcher, -1);
      weft_signal_ctx_stop(sc); /* unlinks, unwatches and frees */
      return NULL;
    }
  }
  return sc;

err_unlock:
  weft_mutex_unlock(&reg.mu);
err_free:
  free_sc(sc);
  return NULL;
}

weft_ctx *weft_signal_ctx_ctx(weft_signal_ctx *sc)
{
  return sc->ctx;
}

int weft_ctx_signal(weft_ctx *ctx)
{
  return weft_cause_signal(weft_ctx_cause(ctx));
}

int weft_signal_ctx_signal(weft_signal_ctx *sc)
{
  return weft_ctx_signal(sc->ctx);
}

long weft_signal_ctx_count(weft_signal_ctx *sc)
{
  return atomic_load_explicit(&sc->count, memory_order_relaxed);
}

weft_chan *weft_signal_ctx_again(weft_signal_ctx *sc)
{
  return sc->again;
}

void weft_signal_ctx_stop(weft_signal_ctx *sc)
{
  if (!sc)
    return;
  /* Unlist and unwatch first: from here on its signals have their old disposition (a
   * signal during the wait below acts as if no context had caught it, as Go's stop). */
  weft_mutex_lock(&reg.mu);
  if (sc->prev)
    sc->prev->next = sc->next;
  else
    reg.list = sc->next;
  if (sc->next)
    sc->next->prev = sc->prev;
  unwatch_locked(&sc->set, SIG_MAX);
  weft_mutex_unlock(&reg.mu);

  atomic_store(&sc->stopping, true);
  weft_ctx_cancel(sc->life); /* ends the watcher's wait, and cancels ctx with it */
  weft_wg_wait(&sc->watcher);
  free_sc(sc);
}
