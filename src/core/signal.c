/* signal.c: POSIX signals delivered to coroutines through the poller.
 *
 * The handler (any thread, async-signal context) only bumps the signal's pending count and
 * writes a byte to a non-blocking pipe that the poller watches. The poller thread then runs
 * weft__signal_dispatch(), which hands pending signals to parked waiters under sig.lock.
 *
 * sig.lock guards the waiter list; pending[] is atomic (the handler touches it). Lock
 * order: sig.lock > sched locks (weft__ready is called under it) > timer heap locks. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/sched.h"
#include "weft/signal.h"

#define NSIG_MAX 65

struct sig_waiter {
  sigset_t set;
  struct coro *self;
  int delivered; /* the signal handed over, or 0; guarded by sig.lock */
  struct timer timer;
  struct weft__canceller *cn; /* may end the wait (a context), or NULL */
  struct sig_waiter *next, *prev;
};

static struct {
  spinlock lock;
  struct sig_waiter *waiters;   /* guarded by lock */
  atomic_int pending[NSIG_MAX]; /* deliveries not yet handed to a waiter */
  atomic_bool watched[NSIG_MAX];
  struct sigaction saved[NSIG_MAX]; /* dispositions to restore */
  int pipe_rd, pipe_wr;
} sig = {.pipe_rd = -1, .pipe_wr = -1};

static void signal_handler(int signo)
{
  int saved_errno = errno;
  if (signo > 0 && signo < NSIG_MAX) {
    atomic_store(&sig.pending[signo], 1);
    char b = (char)signo;
    (void)!write(sig.pipe_wr, &b, 1);
  }
  errno = saved_errno;
}

int weft__signal_init(void)
{
  int fds[2];
  if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
    return -errno;
  sig.pipe_rd = fds[0];
  sig.pipe_wr = fds[1];
  sig.waiters = NULL;
  return weft__poller_add_internal(sig.pipe_rd);
}

void weft__signal_fini(void)
{
  for (int s = 1; s < NSIG_MAX; s++)
    if (atomic_load(&sig.watched[s]))
      weft_signal_unwatch(s);
  if (sig.pipe_rd >= 0) {
    close(sig.pipe_rd);
    close(sig.pipe_wr);
  }
  sig.pipe_rd = sig.pipe_wr = -1;
}

static bool forbidden(int signo)
{
  return signo <= 0 || signo >= NSIG_MAX || signo == SIGKILL || signo == SIGSTOP ||
         signo == SIGSEGV || signo == SIGBUS || signo == SIGFPE || signo == SIGILL;
}

int weft_signal_watch(int signo)
{
  if (forbidden(signo) || sig.pipe_wr < 0)
    return -EINVAL;
  if (atomic_exchange(&sig.watched[signo], true))
    return 0;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = signal_handler;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  if (sigaction(signo, &sa, &sig.saved[signo]) < 0) {
    atomic_store(&sig.watched[signo], false);
    return -errno;
  }
  return 0;
}

int weft_signal_unwatch(int signo)
{
  if (forbidden(signo))
    return -EINVAL;
  if (!atomic_exchange(&sig.watched[signo], false))
    return 0;
  sigaction(signo, &sig.saved[signo], NULL);
  atomic_store(&sig.pending[signo], 0);
  return 0;
}

static void unlink_locked(struct sig_waiter *w)
{
  if (w->prev)
    w->prev->next = w->next;
  else if (sig.waiters == w)
    sig.waiters = w->next;
  if (w->next)
    w->next->prev = w->prev;
  w->next = w->prev = NULL;
}

/* Take one pending signal of set, or 0. */
static int take_pending(const sigset_t *set)
{
  for (int s = 1; s < NSIG_MAX; s++)
    if (sigismember(set, s) == 1 && atomic_load(&sig.pending[s]) &&
        atomic_exchange(&sig.pending[s], 0))
      return s;
  return 0;
}

/* Hand pending signals to waiters, oldest first; sig.lock held. */
static void deliver_locked(void)
{
  struct sig_waiter *w = sig.waiters;
  while (w && w->next)
    w = w->next; /* the list is newest first */
  while (w) {
    struct sig_waiter *older_to_newer = w->prev;
    int s = take_pending(&w->set);
    if (s) {
      w->delivered = s;
      unlink_locked(w);
      weft__ready(w->self);
    }
    w = older_to_newer;
  }
}

void weft__signal_dispatch(void)
{
  char buf[64];
  while (read(sig.pipe_rd, buf, sizeof buf) > 0) {
  }
  spin_lock(&sig.lock);
  deliver_locked();
  spin_unlock(&sig.lock);
}

static void sig_timeout(struct timer *t)
{
  struct sig_waiter *w = t->arg;
  bool wake = false;
  spin_lock(&sig.lock);
  if (!w->delivered) {
    w->delivered = -ETIMEDOUT;
    unlink_locked(w);
    wake = true;
  }
  spin_unlock(&sig.lock);
  if (wake)
    weft__ready(w->self);
}

/* The canceller fired: end the wait with err unless a signal or the deadline came first. */
static void sig_cancel_fired(void *waiter, int err)
{
  struct sig_waiter *w = waiter;
  bool wake = false;
  spin_lock(&sig.lock);
  if (!w->delivered) {
    w->delivered = err;
    unlink_locked(w);
    wake = true;
  }
  spin_unlock(&sig.lock);
  if (wake)
    weft__ready(w->self);
}

/* sig.lock is held: arm the canceller and the deadline, then let deliveries in. A
 * canceller that fires now blocks on sig.lock until this step releases it. */
static bool sig_commit(struct coro *c, void *arg)
{
  struct sig_waiter *w = arg;
  int err = w->cn ? w->cn->arm(w->cn, sig_cancel_fired, w) : 0;
  if (err) {
    w->delivered = err;
    unlink_locked(w);
    spin_unlock(&sig.lock);
    return false; /* already cancelled: do not park */
  }
  if (w->timer.when != INT64_MAX)
    weft__timer_start(&w->timer, w->timer.when);
  spin_unlock(&sig.lock);
  return true;
}

int weft_signal_wait(const sigset_t *set, int64_t deadline)
{
  return weft__signal_wait(set, deadline, NULL);
}

int weft__signal_wait(const sigset_t *set, int64_t deadline, struct weft__canceller *cn)
{
  struct sig_waiter w = {.self = weft__current(), .cn = cn};
  bool any = false;
  if (!set || !w.self)
    return -EINVAL;
  for (int s = 1; s < NSIG_MAX; s++)
    any |= sigismember(set, s) == 1 && atomic_load(&sig.watched[s]);
  if (!any)
    return -EINVAL;
  w.set = *set;
  w.timer.fn = sig_timeout;
  w.timer.arg = &w;
  w.timer.when = deadline;
  spin_lock(&sig.lock);
  int pending = take_pending(set);
  if (pending || (deadline != WEFT_NO_DEADLINE && deadline <= now_ns())) {
    spin_unlock(&sig.lock);
    return pending ? pending : -ETIMEDOUT;
  }
  w.next = sig.waiters;
  if (sig.waiters)
    sig.waiters->prev = &w;
  sig.waiters = &w;
  weft__signal_waiters_add(1);
  weft__park("signal wait", sig_commit, &w);
  weft__signal_waiters_add(-1);
  if (cn)
    cn->disarm(cn);
  if (deadline != WEFT_NO_DEADLINE)
    weft__timer_stop(&w.timer);
  return w.delivered;
}
