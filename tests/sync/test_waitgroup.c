/* test_waitgroup.c: weft_wg: wait returns once the counter reaches zero (and sees what the
 * workers wrote before done: plain data, checked by ThreadSanitizer); many waiters are all
 * woken; a group is reused at once after wait returns (also one on the waiter's stack,
 * freed as soon as wait returns); wait on a zero counter returns at once, even outside a
 * coroutine; done may come from a thread that is not a coroutine; a negative counter
 * aborts with a message; waiters show "wait group" in a dump. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "weft_test.h"
#include "sync_check.h"

/* ---- wait returns when the counter reaches zero ---- */

#define NWORKERS 12

struct work {
  weft_wg wg;
  int results[NWORKERS]; /* plain: each written by its worker before done */
  atomic_int next;
};

static void worker(void *arg)
{
  struct work *w = arg;
  int i = atomic_fetch_add(&w->next, 1);
  weft_sleep(MS(1 + i % 4));
  w->results[i] = i + 100;
  weft_wg_done(&w->wg);
}

static int basic_main(void *arg)
{
  struct work w = {.wg = WEFT_WG_INIT};
  (void)arg;
  weft_wg_add(&w.wg, NWORKERS);
  for (int i = 0; i < NWORKERS; i++)
    if (weft_go(worker, &w) != 0)
      return -1;
  weft_wg_wait(&w.wg);
  for (int i = 0; i < NWORKERS; i++)
    CHECK(w.results[i] == i + 100);
  /* Zero again: wait returns at once. */
  int64_t t0 = weft_now();
  weft_wg_wait(&w.wg);
  CHECK(weft_now() - t0 < MS(1000));
  return 0;
}

static void test_wait_until_zero(void **state)
{
  (void)state;
  checks_reset();
  run_weft_p1to4(basic_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- wait does not return early ---- */

struct early {
  weft_wg wg;    /* the one under test */
  weft_wg exits; /* main waits for the waiter's exit on this */
  atomic_int finished;
  atomic_int release;
  atomic_int returned;
};

static void slow_finisher(void *arg)
{
  struct early *e = arg;
  while (!atomic_load(&e->release))
    weft_sleep(MS(1));
  atomic_fetch_add(&e->finished, 1);
  weft_wg_done(&e->wg);
}

static void early_waiter(void *arg)
{
  struct early *e = arg;
  weft_wg_wait(&e->wg);
  CHECK(atomic_load(&e->finished) == 3);
  atomic_store(&e->returned, 1);
  weft_wg_done(&e->exits);
}

static int not_early_main(void *arg)
{
  struct early e = {.wg = WEFT_WG_INIT, .exits = WEFT_WG_INIT};
  (void)arg;
  weft_wg_add(&e.wg, 3);
  for (int i = 0; i < 3; i++)
    if (weft_go(slow_finisher, &e) != 0)
      return -1;
  weft_wg_add(&e.exits, 1);
  if (weft_go_named(early_waiter, &e, "wg-early") != 0)
    return -1;
  CHECK(wait_dump_count("\"wg-early\"", "wait group", 1, MS(5000)));
  /* A positive add while someone waits keeps it waiting, a negative one that leaves the
   * counter above zero wakes nobody. */
  weft_wg_add(&e.wg, 2);
  weft_wg_add(&e.wg, -2);
  weft_sleep(MS(10));
  CHECK(atomic_load(&e.returned) == 0);
  CHECK(dump_count("\"wg-early\"", "wait group") == 1);
  atomic_store(&e.release, 1);
  weft_wg_wait(&e.exits);
  CHECK(atomic_load(&e.returned) == 1);
  return 0;
}

static void test_not_early(void **state)
{
  (void)state;
  checks_reset();
  run_weft_p1to4(not_early_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- many waiters all woken; wait reason in dumps ---- */

#define NWAITERS 20

struct many {
  weft_wg gate;  /* the waiters wait on this */
  weft_wg exits; /* main waits for the waiters on this */
  atomic_int woken;
};

static void gate_waiter(void *arg)
{
  struct many *m = arg;
  weft_wg_wait(&m->gate);
  atomic_fetch_add(&m->woken, 1);
  weft_wg_done(&m->exits);
}

static int many_main(void *arg)
{
  struct many m = {.gate = WEFT_WG_INIT, .exits = WEFT_WG_INIT};
  (void)arg;
  weft_wg_add(&m.gate, 2);
  weft_wg_add(&m.exits, NWAITERS);
  for (int i = 0; i < NWAITERS; i++)
    if (weft_go_named(gate_waiter, &m, "wg-waiter") != 0)
      return -1;
  /* Each line reads: coroutine N "wg-waiter" [wait group, 0.01s]: created at ... */
  CHECK(wait_dump_count("\"wg-waiter\"", "wait group", NWAITERS, MS(5000)));
  weft_wg_done(&m.gate);
  weft_sleep(MS(5));
  CHECK(atomic_load(&m.woken) == 0); /* counter 1: nobody wakes */
  weft_wg_done(&m.gate);
  weft_wg_wait(&m.exits);
  CHECK(atomic_load(&m.woken) == NWAITERS);
  return 0;
}

static void test_many_waiters(void **state)
{
  (void)state;
  checks_reset();
  run_weft_p1to4(many_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- reuse right after wait; a group on the waiter's stack ---- */

#define REUSE_ROUNDS (SANITIZED ? 500 : 10000)

static void done_it(void *arg)
{
  weft_wg_done(arg);
}

struct reuse_round {
  weft_wg wg;
  int k;
};

/* Each round's group lives in a fresh stack frame that is gone (and its memory reused by
 * the next round) as soon as wait returns: done must not touch the group after the
 * counter reached zero unless a waiter is still parked on it. */
static __attribute__((noinline)) void one_round(int k)
{
  weft_wg wg = WEFT_WG_INIT;
  weft_wg_add(&wg, k);
  for (int i = 0; i < k; i++)
    if (weft_go(done_it, &wg) != 0)
      weft_wg_done(&wg);
  weft_wg_wait(&wg);
}

static int reuse_main(void *arg)
{
  weft_wg wg = WEFT_WG_INIT;
  (void)arg;
  for (int round = 0; round < REUSE_ROUNDS; round++) {
    int k = 1 + round % 4;
    weft_wg_add(&wg, k);
    for (int i = 0; i < k; i++)
      if (weft_go(done_it, &wg) != 0)
        return -1;
    weft_wg_wait(&wg);
    one_round(k);
  }
  return 0;
}

static void test_reuse(void **state)
{
  (void)state;
  checks_reset();
  run_weft_p1to4(reuse_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- zero counter; done from a foreign thread ---- */

static void *thread_done(void *arg)
{
  usleep(5000); /* let main park first: the done wakes a parked coroutine */
  weft_wg_done(arg);
  weft_external_wakers(-1); /* after the wake: main is in a run queue by now */
  return NULL;
}

static int foreign_main(void *arg)
{
  weft_wg wg = WEFT_WG_INIT;
  (void)arg;
  weft_wg_wait(&wg); /* zero: returns at once */
  weft_wg_add(&wg, 3);
  weft_wg_add(&wg, -1);
  /* Main alone, parked, with nothing inside weft to wake it: without this, deadlock
   * detection would (rightly, by what it can see) abort the program. */
  weft_external_wakers(2);
  pthread_t th[2];
  for (int i = 0; i < 2; i++)
    if (pthread_create(&th[i], NULL, thread_done, &wg) != 0)
      return -1;
  weft_wg_wait(&wg);
  for (int i = 0; i < 2; i++)
    pthread_join(th[i], NULL);
  return 0;
}

static void test_zero_and_foreign_done(void **state)
{
  (void)state;
  checks_reset();
  run_weft_p1to4(foreign_main, NULL);
  ASSERT_NO_CHECK_FAILED();
  /* Outside any runtime, on a zero group: returns at once. */
  weft_wg wg;
  weft_wg_init(&wg);
  weft_wg_wait(&wg);
  weft_wg_add(&wg, 2);
  weft_wg_done(&wg);
  weft_wg_done(&wg);
  weft_wg_wait(&wg);
}

/* ---- a negative counter aborts (child processes) ---- */

static int negative_main(void *arg)
{
  weft_wg wg = WEFT_WG_INIT;
  (void)arg;
  weft_wg_add(&wg, 1);
  weft_wg_done(&wg);
  weft_wg_done(&wg);
  return 0;
}

static void child_negative(void)
{
  run_weft(2, negative_main, NULL);
  fprintf(stderr, "child: negative counter returned\n");
  exit(0);
}

static void child_negative_add(void)
{
  weft_wg wg = WEFT_WG_INIT;
  weft_wg_add(&wg, 2);
  weft_wg_add(&wg, -3);
  fprintf(stderr, "child: negative add returned\n");
  exit(0);
}

static void test_negative_aborts(void **state)
{
  (void)state;
  int status = 0;
  char *out = expect_child_output("negative", 30, &status);
  if (!WIFSIGNALED(status) || !strstr(out, "negative wait group counter") ||
      !strstr(out, "coroutine 1 \"main\"")) {
    fprintf(stderr, "child negative: status %d, stderr:\n%s\n", status, out);
    fail_msg("a negative counter did not abort with a message and a dump");
  }
  free(out);
  expect_child("negative_add", "negative wait group counter", 30);
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_wait_until_zero),       cmocka_unit_test(test_not_early),
      cmocka_unit_test(test_many_waiters),          cmocka_unit_test(test_reuse),
      cmocka_unit_test(test_zero_and_foreign_done), cmocka_unit_test(test_negative_aborts),
  };
  const struct child_scenario children[] = {
      {"negative", child_negative},
      {"negative_add", child_negative_add},
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], children,
                        sizeof children / sizeof children[0]);
}
