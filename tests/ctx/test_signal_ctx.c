/* test_signal_ctx.c: weft/signal_ctx.h: a signal cancels the context and says which signal
 * it was (on descendants too); later signals are counted and sent on the again channel;
 * the parent's cancel and stop end it without leaking its coroutine; several contexts on
 * one signal all see it; stop restores the default disposition (a child that raises the
 * signal afterwards dies of it); bad input changes nothing. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctx_check.h"
#include "weft/signal_ctx.h"

/* kill(getpid()) lets the kernel pick any thread. Under ThreadSanitizer that may be a
 * worker asleep in a call TSan does not intercept, which defers the handler until that
 * thread wakes (see tests/core/test_signal.c); raise() (this thread) stands in there. */
static void signal_process(int signo)
{
#if defined(__SANITIZE_THREAD__)
  raise(signo);
#else
  kill(getpid(), signo);
#endif
}

static bool is_default(int signo)
{
  struct sigaction sa;
  return sigaction(signo, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL;
}

/* The signal contexts' coroutines alive now (by name, from the dump). */
static int watchers_alive(void)
{
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f)
    return -1;
  weft_dump(f);
  fclose(f);
  int n = 0;
  for (char *p = buf; p && (p = strstr(p, "\"signal ctx\"")); p++)
    n++;
  free(buf);
  return n;
}

static bool wait_watchers(int want, int64_t timeout_ns)
{
  int64_t end = weft_now() + timeout_ns;
  while (watchers_alive() != want) {
    if (weft_now() > end)
      return false;
    weft_sleep(MS(1));
  }
  return true;
}

/* ---- a signal cancels the context; which one is observable; then a second one ---- */

struct arrival {
  int signo;    /* the signal to send */
  int use_kill; /* signal_process() rather than raise() */
  const int *list;
  int n;
};

static int arrival_main(void *arg)
{
  struct arrival *a = arg;
  static int key;
  weft_ctx *parent = weft_ctx_with_value(NULL, &key, &key);
  weft_signal_ctx *sc = weft_signal_ctx_new(parent, a->list, a->n);
  CHECK(sc != NULL);
  if (!sc)
    return 1;
  weft_ctx *ctx = weft_signal_ctx_ctx(sc);
  weft_ctx *below = weft_ctx_with_cancel(ctx);
  CHECK(!is_default(a->signo)); /* caught now */
  CHECK_EQ(weft_ctx_err(ctx), 0);
  CHECK_EQ(weft_signal_ctx_signal(sc), 0);
  CHECK_EQ(weft_signal_ctx_count(sc), 0);
  CHECK(weft_ctx_value(ctx, &key) == &key); /* a child of parent like any other */
  CHECK(weft_ctx_deadline(ctx) == WEFT_NO_DEADLINE);

  if (a->use_kill)
    signal_process(a->signo);
  else
    raise(a->signo);
  CHECK_EQ(weft_ctx_wait(ctx, weft_now() + MS(10000)), -ECANCELED);
  CHECK_EQ(weft_ctx_cause(ctx), WEFT_CAUSE_SIGNAL(a->signo));
  CHECK_EQ(weft_cause_signal(weft_ctx_cause(ctx)), a->signo);
  CHECK_EQ(weft_signal_ctx_signal(sc), a->signo);
  CHECK_EQ(weft_ctx_signal(below), a->signo); /* known on descendants too */
  CHECK_EQ(weft_ctx_err(below), -ECANCELED);
  CHECK_EQ(weft_signal_ctx_count(sc), 1);
  CHECK_EQ(weft_chan_len(weft_signal_ctx_again(sc)), 0); /* the first one is not "again" */
  CHECK_EQ(weft_ctx_err(parent), 0);

  /* A second arrival: counted and sent on the again channel (a program exits at once). */
  int got = 0;
  raise(a->signo);
  CHECK_EQ(weft_chan_recv(weft_signal_ctx_again(sc), &got, weft_now() + MS(10000)), 0);
  CHECK_EQ(got, a->signo);
  CHECK_EQ(weft_signal_ctx_count(sc), 2);
  raise(a->signo); /* and a third */
  CHECK_EQ(weft_chan_recv(weft_signal_ctx_again(sc), &got, weft_now() + MS(10000)), 0);
  CHECK_EQ(weft_signal_ctx_count(sc), 3);
  CHECK_EQ(weft_signal_ctx_signal(sc), a->signo); /* still the first */

  weft_ctx_release(below);
  weft_signal_ctx_stop(sc);
  CHECK(is_default(a->signo));
  weft_ctx_release(parent);
  return 0;
}

static void test_sigusr1(void **state)
{
  (void)state;
  static const int usr1[] = {SIGUSR1};
  struct arrival a = {.signo = SIGUSR1, .list = usr1, .n = 1};
  run_checked_p1to4(arrival_main, &a);
}

static void test_sigint_default_set(void **state)
{
  (void)state;
  struct arrival a = {.signo = SIGINT, .use_kill = 1}; /* n == 0: SIGINT and SIGTERM */
  run_checked_p1to4(arrival_main, &a);
  struct arrival t = {.signo = SIGTERM, .use_kill = 1};
  run_checked(2, arrival_main, &t);
}

static void test_one_of_several(void **state)
{
  (void)state;
  static const int three[] = {SIGUSR1, SIGHUP, SIGUSR2};
  struct arrival a = {.signo = SIGHUP, .use_kill = 1, .list = three, .n = 3};
  run_checked(2, arrival_main, &a);
}

/* ---- the parent's cancel and stop end it, and its coroutine, without a signal ---- */

static int parent_stop_main(void *arg)
{
  (void)arg;
  static const int usr1[] = {SIGUSR1};
  weft_ctx *parent = weft_ctx_with_cancel(NULL);
  weft_signal_ctx *sc = weft_signal_ctx_new(parent, usr1, 1);
  CHECK(sc && wait_watchers(1, MS(5000)));
  weft_ctx_cancel_cause(parent, -EPIPE);
  weft_ctx *ctx = weft_signal_ctx_ctx(sc);
  CHECK_EQ(weft_ctx_err(ctx), -ECANCELED);
  CHECK_EQ(weft_ctx_cause(ctx), -EPIPE);
  CHECK_EQ(weft_signal_ctx_signal(sc), 0); /* not a signal */
  CHECK(wait_watchers(0, MS(5000)));       /* its coroutine ended with the parent */
  int64_t t0 = weft_now();
  weft_signal_ctx_stop(sc);
  CHECK(weft_now() - t0 < MS(5000));
  CHECK(is_default(SIGUSR1));
  weft_ctx_release(parent);

  /* stop alone: cancels, restores, and its coroutine has finished its work when stop
   * returns (it may still be leaving its last call, so the dump is polled briefly). */
  sc = weft_signal_ctx_new(NULL, usr1, 1);
  ctx = weft_ctx_retain(weft_signal_ctx_ctx(sc));
  CHECK(wait_watchers(1, MS(5000)));
  weft_signal_ctx_stop(sc);
  CHECK(wait_watchers(0, MS(5000)));
  CHECK_EQ(weft_ctx_err(ctx), -ECANCELED);
  CHECK_EQ(weft_ctx_signal(ctx), 0);
  CHECK(is_default(SIGUSR1));
  weft_ctx_release(ctx);

  /* A parent already done: done at once, no coroutine needed, stop still restores. */
  parent = weft_ctx_with_cancel(NULL);
  weft_ctx_cancel(parent);
  sc = weft_signal_ctx_new(parent, usr1, 1);
  CHECK(sc != NULL);
  CHECK_EQ(weft_ctx_err(weft_signal_ctx_ctx(sc)), -ECANCELED);
  CHECK_EQ(watchers_alive(), 0); /* none was started (a spawn shows in the dump at once) */
  CHECK(!is_default(SIGUSR1));
  weft_signal_ctx_stop(sc);
  CHECK(is_default(SIGUSR1));
  weft_ctx_release(parent);
  weft_signal_ctx_stop(NULL);
  return 0;
}

static void test_parent_and_stop(void **state)
{
  (void)state;
  run_checked_p1to4(parent_stop_main, NULL); /* the leak check sees no coroutine left */
}

/* ---- several contexts on one signal: each arrival reaches all of them ---- */

static int fanout_main(void *arg)
{
  (void)arg;
  static const int usr2[] = {SIGUSR2};
  static const int both[] = {SIGUSR2, SIGUSR1};
  weft_signal_ctx *a = weft_signal_ctx_new(NULL, usr2, 1);
  weft_signal_ctx *b = weft_signal_ctx_new(NULL, both, 2);
  weft_signal_ctx *other = weft_signal_ctx_new(NULL, (const int[]){SIGHUP}, 1);
  raise(SIGUSR2);
  CHECK_EQ(weft_ctx_wait(weft_signal_ctx_ctx(a), weft_now() + MS(10000)), -ECANCELED);
  CHECK_EQ(weft_ctx_wait(weft_signal_ctx_ctx(b), weft_now() + MS(10000)), -ECANCELED);
  CHECK_EQ(weft_signal_ctx_signal(a), SIGUSR2);
  CHECK_EQ(weft_signal_ctx_signal(b), SIGUSR2);
  CHECK_EQ(weft_ctx_err(weft_signal_ctx_ctx(other)), 0); /* not its signal */
  CHECK_EQ(weft_signal_ctx_count(other), 0);

  /* Stopping a leaves SIGUSR2 caught for b; b alone gets the next one. */
  weft_signal_ctx_stop(a);
  CHECK(!is_default(SIGUSR2));
  raise(SIGUSR2);
  int got = 0;
  CHECK_EQ(weft_chan_recv(weft_signal_ctx_again(b), &got, weft_now() + MS(10000)), 0);
  CHECK_EQ(got, SIGUSR2);
  raise(SIGUSR1);
  CHECK_EQ(weft_chan_recv(weft_signal_ctx_again(b), &got, weft_now() + MS(10000)), 0);
  CHECK_EQ(got, SIGUSR1);
  CHECK_EQ(weft_signal_ctx_count(b), 3);
  weft_signal_ctx_stop(b);
  CHECK(is_default(SIGUSR2) && is_default(SIGUSR1));
  CHECK(!is_default(SIGHUP));
  weft_signal_ctx_stop(other);
  CHECK(is_default(SIGHUP));
  return 0;
}

static void test_fanout(void **state)
{
  (void)state;
  run_checked_p1to4(fanout_main, NULL);
}

/* ---- bad input: NULL and nothing changed ---- */

static int bad_input_main(void *arg)
{
  (void)arg;
  CHECK(weft_signal_ctx_new(NULL, NULL, -1) == NULL);
  CHECK(weft_signal_ctx_new(NULL, NULL, 2) == NULL);
  static const int with_kill[] = {SIGUSR2, SIGKILL};
  static const int with_segv[] = {SIGUSR2, SIGSEGV};
  static const int out_of_range[] = {SIGUSR2, 65};
  static const int zero[] = {0};
  CHECK(weft_signal_ctx_new(NULL, with_kill, 2) == NULL);
  CHECK(weft_signal_ctx_new(NULL, with_segv, 2) == NULL);
  CHECK(weft_signal_ctx_new(NULL, out_of_range, 2) == NULL);
  CHECK(weft_signal_ctx_new(NULL, zero, 1) == NULL);
  CHECK(is_default(SIGUSR2)); /* nothing was installed for the good one either */
  CHECK_EQ(watchers_alive(), 0);
  CHECK_EQ(weft_cause_signal(-EPIPE), 0);
  CHECK_EQ(weft_cause_signal(0), 0);
  CHECK_EQ(weft_cause_signal(WEFT_CAUSE_SIGNAL(64)), 64);
  CHECK_EQ(weft_cause_signal(WEFT_CAUSE_SIGNAL(65)), 0);
  CHECK_EQ(weft_ctx_signal(weft_ctx_background()), 0);
  return 0;
}

static void test_bad_input(void **state)
{
  (void)state;
  run_checked(1, bad_input_main, NULL);
  assert_null(weft_signal_ctx_new(NULL, NULL, 0)); /* not in a coroutine */
  assert_true(is_default(SIGINT) && is_default(SIGTERM));
}

/* ---- many start/stop cycles with signals in between, P = 1..4 ---- */

#define CYCLES (SANITIZED ? 20 : 60)

static int cycles_main(void *arg)
{
  uint64_t rng = *(uint64_t *)arg;
  static const int usr1[] = {SIGUSR1};
  for (int i = 0; i < CYCLES; i++) {
    uint64_t x = test_rand(&rng);
    weft_ctx *parent = weft_ctx_with_cancel(NULL);
    weft_signal_ctx *sc = weft_signal_ctx_new(parent, usr1, 1);
    CHECK(sc != NULL);
    if (!sc)
      break;
    switch (x % 3) {
    case 0: /* a signal */
      raise(SIGUSR1);
      CHECK_EQ(weft_ctx_wait(weft_signal_ctx_ctx(sc), weft_now() + MS(10000)), -ECANCELED);
      CHECK_EQ(weft_signal_ctx_signal(sc), SIGUSR1);
      break;
    case 1: /* the parent */
      weft_ctx_cancel(parent);
      break;
    default: /* stop right away (or after a moment) */
      if ((x >> 8) % 2)
        weft_sleep((int64_t)((x >> 16) % 2000) * 1000);
      break;
    }
    weft_signal_ctx_stop(sc);
    CHECK(is_default(SIGUSR1));
    weft_ctx_release(parent);
  }
  return 0;
}

static void test_cycles(void **state)
{
  (void)state;
  uint64_t seed = test_seed();
  run_checked_p1to4(cycles_main, &seed);
}

/* ---- after stop, the signal's default action is back: the process dies of it ---- */

static int restored_main(void *arg)
{
  (void)arg;
  static const int usr1[] = {SIGUSR1};
  weft_signal_ctx *sc = weft_signal_ctx_new(NULL, usr1, 1);
  if (!sc)
    return 1;
  raise(SIGUSR1); /* caught: cancels */
  if (weft_ctx_wait(weft_signal_ctx_ctx(sc), weft_now() + MS(10000)) != -ECANCELED)
    return 2;
  weft_signal_ctx_stop(sc);
  fprintf(stderr, "child: stopped; raising SIGUSR1\n");
  raise(SIGUSR1); /* the default action: terminate */
  weft_sleep(MS(100));
  fprintf(stderr, "child: survived SIGUSR1\n");
  return 0;
}

static void child_restored(void)
{
  int rc = run_weft(2, restored_main, NULL);
  fprintf(stderr, "child: main returned %d\n", rc);
  exit(0);
}

static void test_default_restored(void **state)
{
  (void)state;
  int status = 0;
  char *out = expect_child_output("restored", 60, &status);
  assert_non_null(strstr(out, "child: stopped; raising SIGUSR1"));
  assert_null(strstr(out, "survived"));
  assert_true(WIFSIGNALED(status));
  assert_int_equal(WTERMSIG(status), SIGUSR1);
  free(out);
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sigusr1),        cmocka_unit_test(test_sigint_default_set),
      cmocka_unit_test(test_one_of_several), cmocka_unit_test(test_parent_and_stop),
      cmocka_unit_test(test_fanout),         cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_cycles),         cmocka_unit_test(test_default_restored),
  };
  const struct child_scenario children[] = {{"restored", child_restored}};
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], children,
                        sizeof children / sizeof children[0]);
}
