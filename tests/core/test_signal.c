/* test_signal.c: weft_signal_watch / unwatch / wait: delivery to a parked coroutine, a
 * pending signal kept for the next waiter, deadlines, the restored disposition, bad input,
 * and many short waits racing their timeouts on one thread. */
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "weft_test.h"

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#else
#define SANITIZED 0
#endif

static sigset_t set_of(int signo)
{
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, signo);
  return set;
}

/* kill(getpid()) lets the kernel pick any thread that does not block the signal. Under
 * ThreadSanitizer that may be a worker asleep in a raw futex or epoll_pwait2 call, which
 * TSan does not intercept: it defers the handler to that thread's next intercepted call,
 * so the signal reaches weft only once something wakes the worker. There, raise() (the
 * sending thread, handled at once) stands in. */
static void signal_process(int signo)
{
#if defined(__SANITIZE_THREAD__)
  raise(signo);
#else
  kill(getpid(), signo);
#endif
}

/* ---- a coroutine parked in weft_signal_wait gets the signal ---- */

struct delivery {
  int signo;
  int use_raise; /* raise() (this thread) or signal_process() (any thread) */
  atomic_int parked, got;
  weft_wg wg;
};

static void waiter(void *arg)
{
  struct delivery *d = arg;
  sigset_t set = set_of(d->signo);
  atomic_store(&d->parked, 1);
  atomic_store(&d->got, weft_signal_wait(&set, weft_now() + MS(5000)));
  weft_wg_done(&d->wg);
}

static int delivery_main(void *arg)
{
  struct delivery *d = arg;
  atomic_store(&d->parked, 0);
  atomic_store(&d->got, 0);
  if (weft_signal_watch(d->signo) != 0)
    return 1;
  weft_wg_add(&d->wg, 1);
  weft_go(waiter, d);
  while (!atomic_load(&d->parked))
    weft_sleep(MS(1));
  weft_sleep(MS(10)); /* let it park */
  if (d->use_raise)
    raise(d->signo);
  else
    signal_process(d->signo);
  weft_wg_wait(&d->wg);
  if (weft_signal_unwatch(d->signo) != 0)
    return 2;
  return atomic_load(&d->got) == d->signo ? 0 : 3;
}

static void test_delivers_to_parked_waiter(void **state)
{
  (void)state;
  struct delivery d = {.signo = SIGUSR1, .use_raise = 0};
  run_weft_p1to4(delivery_main, &d);
  d.signo = SIGUSR2;
  d.use_raise = 1;
  run_weft_p1to4(delivery_main, &d);
  d.signo = SIGRTMIN + 1;
  run_weft_p1to4(delivery_main, &d);
}

/* Two signals, two waiters each on one of them, and one waiter on both. */
struct pair {
  atomic_int got1, got2, got_any;
  atomic_int parked;
  weft_wg wg;
};

static void wait_usr1(void *arg)
{
  struct pair *p = arg;
  sigset_t set = set_of(SIGUSR1);
  atomic_fetch_add(&p->parked, 1);
  atomic_store(&p->got1, weft_signal_wait(&set, weft_now() + MS(5000)));
  weft_wg_done(&p->wg);
}

static void wait_usr2(void *arg)
{
  struct pair *p = arg;
  sigset_t set = set_of(SIGUSR2);
  atomic_fetch_add(&p->parked, 1);
  atomic_store(&p->got2, weft_signal_wait(&set, weft_now() + MS(5000)));
  weft_wg_done(&p->wg);
}

static int pair_main(void *arg)
{
  struct pair *p = arg;
  if (weft_signal_watch(SIGUSR1) || weft_signal_watch(SIGUSR2))
    return 1;
  weft_wg_add(&p->wg, 2);
  weft_go(wait_usr1, p);
  weft_go(wait_usr2, p);
  while (atomic_load(&p->parked) < 2)
    weft_sleep(MS(1));
  weft_sleep(MS(10));
  signal_process(SIGUSR2);
  weft_sleep(MS(10));
  signal_process(SIGUSR1);
  weft_wg_wait(&p->wg);
  /* a set of both, with one of them pending */
  sigset_t both = set_of(SIGUSR1);
  sigaddset(&both, SIGUSR2);
  raise(SIGUSR2);
  atomic_store(&p->got_any, weft_signal_wait(&both, weft_now() + MS(5000)));
  weft_signal_unwatch(SIGUSR1);
  weft_signal_unwatch(SIGUSR2);
  return 0;
}

static void test_each_waiter_gets_its_signal(void **state)
{
  (void)state;
  struct pair p = {0};
  assert_int_equal(run_weft(2, pair_main, &p), 0);
  assert_int_equal(atomic_load(&p.got1), SIGUSR1);
  assert_int_equal(atomic_load(&p.got2), SIGUSR2);
  assert_int_equal(atomic_load(&p.got_any), SIGUSR2);
}

/* ---- a signal that arrives while nobody waits is kept (once) ---- */

static int pending_main(void *arg)
{
  (void)arg;
  sigset_t set = set_of(SIGUSR2);
  if (weft_signal_watch(SIGUSR2) != 0)
    return 1;
  raise(SIGUSR2);     /* the handler has run when raise returns */
  raise(SIGUSR2);     /* a second one merges with the first, as POSIX pending signals do */
  weft_sleep(MS(10)); /* and the poller has seen the pipe: nobody waited */
  int64_t t0 = weft_now();
  if (weft_signal_wait(&set, weft_now() + MS(5000)) != SIGUSR2)
    return 2;
  if (weft_now() - t0 > MS(1000))
    return 3; /* it was pending: no wait */
  int64_t deadline = weft_now() + MS(20);
  if (weft_signal_wait(&set, deadline) != -ETIMEDOUT)
    return 4; /* only one delivery was kept */
  if (weft_now() < deadline)
    return 5;
  /* a deadline already past still hands over a pending signal */
  raise(SIGUSR2);
  if (weft_signal_wait(&set, weft_now() - 1) != SIGUSR2)
    return 6;
  weft_signal_unwatch(SIGUSR2);
  return 0;
}

static void test_pending_signal_kept_for_next_wait(void **state)
{
  (void)state;
  run_weft_p1to4(pending_main, NULL);
}

/* ---- deadlines ---- */

static int deadline_main(void *arg)
{
  (void)arg;
  sigset_t set = set_of(SIGUSR1);
  if (weft_signal_watch(SIGUSR1) != 0)
    return 1;
  int64_t deadline = weft_now() + MS(30);
  int r = weft_signal_wait(&set, deadline);
  int64_t now = weft_now();
  if (r != -ETIMEDOUT)
    return 2;
  if (now < deadline || now - deadline > MS(2000))
    return 3;
  if (weft_signal_wait(&set, weft_now() - MS(1)) != -ETIMEDOUT) /* past: no park */
    return 4;
  if (weft_signal_wait(&set, 0) != -ETIMEDOUT)
    return 5;
  weft_signal_unwatch(SIGUSR1);
  return 0;
}

static void test_deadline(void **state)
{
  (void)state;
  run_weft_p1to4(deadline_main, NULL);
}

/* ---- unwatch restores the previous disposition ---- */

static void child_unwatch_default(void);

static int unwatch_default_main(void *arg)
{
  (void)arg;
  if (weft_signal_watch(SIGUSR1) != 0 || weft_signal_unwatch(SIGUSR1) != 0)
    return 1;
  fprintf(stderr, "raising SIGUSR1 with its default disposition\n");
  raise(SIGUSR1); /* the default action ends the process here */
  fprintf(stderr, "still alive after SIGUSR1\n");
  return 0;
}

static void child_unwatch_default(void)
{
  weft_config cfg = {.procs = 2};
  int rc = weft_main_with(&cfg, unwatch_default_main, NULL);
  fprintf(stderr, "weft_main returned %d\n", rc);
}

static void test_unwatch_restores_default(void **state)
{
  (void)state;
  int status = 0;
  char *out = expect_child_output("unwatch_default", 30, &status);
  if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGUSR1 || !strstr(out, "raising SIGUSR1")) {
    fprintf(stderr, "child: status %#x, stderr:\n%s\n", status, out);
    free(out);
    fail_msg("the child did not die of SIGUSR1 after weft_signal_unwatch");
  }
  free(out);
}

/* A handler the program had before watching comes back after unwatch. */
static volatile sig_atomic_t own_handler_runs;

static void own_handler(int signo)
{
  (void)signo;
  own_handler_runs++;
}

static int unwatch_handler_main(void *arg)
{
  (void)arg;
  sigset_t set = set_of(SIGUSR2);
  if (weft_signal_watch(SIGUSR2) != 0)
    return 1;
  if (weft_signal_watch(SIGUSR2) != 0) /* idempotent */
    return 2;
  raise(SIGUSR2);
  if (weft_signal_wait(&set, weft_now() + MS(5000)) != SIGUSR2 || own_handler_runs != 0)
    return 3;
  if (weft_signal_unwatch(SIGUSR2) != 0 || weft_signal_unwatch(SIGUSR2) != 0)
    return 4;
  raise(SIGUSR2);
  if (own_handler_runs != 1)
    return 5;
  /* unwatched now: waiting on it is a mistake */
  if (weft_signal_wait(&set, weft_now() + MS(10)) != -EINVAL)
    return 6;
  /* a signal caught while watched and still pending is dropped by unwatch */
  if (weft_signal_watch(SIGUSR2) != 0)
    return 7;
  raise(SIGUSR2);
  weft_signal_unwatch(SIGUSR2);
  weft_signal_watch(SIGUSR2);
  if (weft_signal_wait(&set, weft_now() + MS(20)) != -ETIMEDOUT)
    return 8;
  weft_signal_unwatch(SIGUSR2);
  return 0;
}

static void test_unwatch_restores_handler(void **state)
{
  (void)state;
  struct sigaction sa, old;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = own_handler;
  sigemptyset(&sa.sa_mask);
  assert_int_equal(sigaction(SIGUSR2, &sa, &old), 0);
  own_handler_runs = 0;
  assert_int_equal(run_weft(2, unwatch_handler_main, NULL), 0);
  raise(SIGUSR2); /* and the runtime's shutdown left it in place */
  assert_int_equal(own_handler_runs, 2);
  sigaction(SIGUSR2, &old, NULL);
}

/* ---- bad input ---- */

static int invalid_main(void *arg)
{
  (void)arg;
  const int bad[] = {0,       -1,      -SIGUSR1, 65,     1000,  SIGKILL,
                     SIGSTOP, SIGSEGV, SIGBUS,   SIGFPE, SIGILL};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (weft_signal_watch(bad[i]) != -EINVAL)
      return 1;
    if (weft_signal_unwatch(bad[i]) != -EINVAL)
      return 2;
  }
  sigset_t empty, unwatched = set_of(SIGUSR1);
  sigemptyset(&empty);
  if (weft_signal_wait(&empty, weft_now() + MS(10)) != -EINVAL)
    return 3;
  if (weft_signal_wait(&unwatched, weft_now() + MS(10)) != -EINVAL)
    return 4;
  if (weft_signal_wait(NULL, weft_now() + MS(10)) != -EINVAL)
    return 5;
  /* a set mixing a watched and an unwatched signal is fine */
  if (weft_signal_watch(SIGUSR2) != 0)
    return 6;
  sigaddset(&unwatched, SIGUSR2);
  if (weft_signal_wait(&unwatched, weft_now() + MS(10)) != -ETIMEDOUT)
    return 7;
  weft_signal_unwatch(SIGUSR2);
  if (weft_signal_unwatch(SIGUSR1) != 0) /* never watched: nothing to do */
    return 8;
  return 0;
}

static void test_invalid_input(void **state)
{
  (void)state;
  assert_int_equal(run_weft(1, invalid_main, NULL), 0);
  /* outside a running runtime */
  sigset_t set = set_of(SIGUSR1);
  assert_int_equal(weft_signal_watch(SIGUSR1), -EINVAL);
  assert_int_equal(weft_signal_wait(&set, weft_now() + MS(10)), -EINVAL);
}

/* ---- many short waits on one thread ----
 *
 * Every wait parks while holding the signal lock until the commit step; the scheduler picks
 * the next coroutine meanwhile, and now and then (every FAIRNESS_TICKS picks) also runs due
 * timers and polls the network. Those run other waiters' timeouts and the signal dispatch,
 * which take the same lock. */
struct churn {
  int coros, rounds;
  atomic_long timeouts, delivered, other;
  weft_wg wg;
};

static void churner(void *arg)
{
  struct churn *c = arg;
  sigset_t set = set_of(SIGUSR1);
  for (int i = 0; i < c->rounds; i++) {
    int r = weft_signal_wait(&set, weft_now() + 2000 * (i % 4)); /* 0..6 us */
    if (r == -ETIMEDOUT)
      atomic_fetch_add(&c->timeouts, 1);
    else if (r == SIGUSR1)
      atomic_fetch_add(&c->delivered, 1);
    else
      atomic_fetch_add(&c->other, 1);
  }
  weft_wg_done(&c->wg);
}

static void signaller(void *arg)
{
  struct churn *c = arg;
  for (int i = 0; i < 50; i++) {
    /* raise, not kill: a process-directed signal may reach its thread only after the
     * unwatch at the end, which would then take the default action and end the child */
    raise(SIGUSR1);
    weft_sleep(100000);
  }
  weft_wg_done(&c->wg);
}

static int churn_main(void *arg)
{
  struct churn *c = arg;
  if (weft_signal_watch(SIGUSR1) != 0)
    return 1;
  weft_wg_add(&c->wg, c->coros + 1);
  for (int i = 0; i < c->coros; i++)
    weft_go(churner, c);
  weft_go(signaller, c);
  weft_wg_wait(&c->wg);
  weft_signal_unwatch(SIGUSR1);
  return atomic_load(&c->other) == 0 ? 0 : 2;
}

static void child_churn(void)
{
  struct churn c = {.coros = 16, .rounds = SANITIZED ? 300 : 2000};
  for (int p = 1; p <= 2; p++) {
    weft_config cfg = {.procs = p};
    int rc = run_weft_with(&cfg, churn_main, &c);
    if (rc != 0) {
      fprintf(stderr, "churn P=%d: rc %d\n", p, rc);
      exit(1);
    }
  }
  fprintf(stderr, "churn: %ld timeouts, %ld delivered\n", atomic_load(&c.timeouts),
          atomic_load(&c.delivered));
  if (atomic_load(&c.delivered) == 0 || atomic_load(&c.delivered) > 100)
    exit(1); /* 2 x 50 raises, some merged while nobody waited */
}

static void test_short_waits_do_not_deadlock(void **state)
{
  (void)state;
  int status = 0;
  char *out = expect_child_output("churn", 60, &status);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !strstr(out, "churn: ")) {
    fprintf(stderr, "child: status %#x, stderr:\n%s\n", status, out);
    free(out);
    fail_msg("short signal waits hung or failed (killed after 60 s if hung)");
  }
  fprintf(stderr, "%s", out);
  free(out);
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_delivers_to_parked_waiter),
      cmocka_unit_test(test_each_waiter_gets_its_signal),
      cmocka_unit_test(test_pending_signal_kept_for_next_wait),
      cmocka_unit_test(test_deadline),
      cmocka_unit_test(test_unwatch_restores_default),
      cmocka_unit_test(test_unwatch_restores_handler),
      cmocka_unit_test(test_invalid_input),
      cmocka_unit_test(test_short_waits_do_not_deadlock),
  };
  const struct child_scenario children[] = {
      {"unwatch_default", child_unwatch_default},
      {"churn", child_churn},
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], children,
                        sizeof children / sizeof children[0]);
}
