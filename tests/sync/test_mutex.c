/* test_mutex.c: weft_mutex: mutual exclusion (and the happens-before it gives, which
 * ThreadSanitizer checks on a plain counter), trylock, unlocking an unlocked mutex aborts,
 * a contended lock parks instead of burning the thread, starvation mode lets a parked
 * waiter in past a coroutine that re-locks in a tight loop or that holds the lock most of
 * the time and re-locks at once (Go's fairness test), one coroutine may unlock what
 * another locked, and parked lockers show "mutex" in a dump. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "weft_test.h"
#include "sync_check.h"

/* ---- mutual exclusion on P=1..4 ---- */

#define EXCL_COROS (SANITIZED ? 16 : 32)
#define EXCL_ITERS (SANITIZED ? 2000 : 20000)

struct excl {
  weft_mutex mu;
  long counter;      /* plain: only ever touched under mu */
  atomic_int inside; /* coroutines inside the section: must never exceed 1 */
  weft_wg wg;
};

static void excl_worker(void *arg)
{
  struct excl *e = arg;
  for (int i = 0; i < EXCL_ITERS; i++) {
    weft_mutex_lock(&e->mu);
    CHECK(atomic_fetch_add(&e->inside, 1) == 0);
    e->counter++;
    if (i % 7 == 0)
      weft_yield(); /* hold it across a switch: others must park or spin, not enter */
    atomic_fetch_sub(&e->inside, 1);
    weft_mutex_unlock(&e->mu);
    if (i % 3 == 0)
      weft_yield();
  }
  weft_wg_done(&e->wg);
}

static int excl_main(void *arg)
{
  struct excl e = {.mu = WEFT_MUTEX_INIT, .wg = WEFT_WG_INIT};
  (void)arg;
  weft_wg_add(&e.wg, EXCL_COROS);
  for (int i = 0; i < EXCL_COROS; i++)
    if (weft_go(excl_worker, &e) != 0)
      return -1;
  weft_wg_wait(&e.wg);
  weft_mutex_lock(&e.mu);
  long got = e.counter;
  weft_mutex_unlock(&e.mu);
  if (got != (long)EXCL_COROS * EXCL_ITERS) {
    fprintf(stderr, "counter %ld, want %ld\n", got, (long)EXCL_COROS * EXCL_ITERS);
    return 1;
  }
  return 0;
}

static void test_mutual_exclusion(void **state)
{
  (void)state;
  checks_reset();
  run_weft_p1to4(excl_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- trylock ---- */

struct holder {
  weft_mutex *mu;
  atomic_int holding;
  atomic_int release; /* set by main: unlock now */
  weft_wg wg;
};

static void hold_until_told(void *arg)
{
  struct holder *h = arg;
  weft_mutex_lock(h->mu);
  atomic_store(&h->holding, 1);
  while (!atomic_load(&h->release))
    weft_sleep(MS(1));
  atomic_store(&h->holding, 0);
  weft_mutex_unlock(h->mu);
  weft_wg_done(&h->wg);
}

static int trylock_main(void *arg)
{
  weft_mutex mu = WEFT_MUTEX_INIT;
  struct holder h = {.mu = &mu, .wg = WEFT_WG_INIT};
  (void)arg;
  CHECK(weft_mutex_trylock(&mu) == 0);
  CHECK(weft_mutex_trylock(&mu) == -EBUSY); /* not reentrant */
  weft_mutex_unlock(&mu);
  CHECK(weft_mutex_trylock(&mu) == 0);
  weft_mutex_unlock(&mu);

  /* Held by another coroutine: busy until it unlocks. */
  weft_wg_add(&h.wg, 1);
  if (weft_go(hold_until_told, &h) != 0)
    return -1;
  CHECK(wait_flag(&h.holding, 1, MS(5000)));
  for (int i = 0; i < 5; i++) {
    CHECK(weft_mutex_trylock(&mu) == -EBUSY);
    weft_sleep(MS(1));
  }
  atomic_store(&h.release, 1);
  weft_wg_wait(&h.wg);
  CHECK(weft_mutex_trylock(&mu) == 0);
  weft_mutex_unlock(&mu);
  return 0;
}

static void test_trylock(void **state)
{
  (void)state;
  checks_reset();
  run_weft_p1to4(trylock_main, NULL);
  ASSERT_NO_CHECK_FAILED();

  /* Any thread: trylock and unlock need no coroutine. */
  weft_mutex mu;
  weft_mutex_init(&mu);
  assert_int_equal(weft_mutex_trylock(&mu), 0);
  assert_int_equal(weft_mutex_trylock(&mu), -EBUSY);
  weft_mutex_unlock(&mu);
  assert_int_equal(weft_mutex_trylock(&mu), 0);
  weft_mutex_unlock(&mu);
}

/* ---- unlocking an unlocked mutex aborts (child processes) ---- */

static int unlock_fresh_main(void *arg)
{
  weft_mutex mu = WEFT_MUTEX_INIT;
  (void)arg;
  weft_mutex_unlock(&mu);
  return 0;
}

static void child_unlock_fresh(void)
{
  run_weft(1, unlock_fresh_main, NULL);
  fprintf(stderr, "child: unlock of a fresh mutex returned\n");
  exit(0);
}

static int double_unlock_main(void *arg)
{
  weft_mutex mu = WEFT_MUTEX_INIT;
  (void)arg;
  weft_mutex_lock(&mu);
  weft_mutex_unlock(&mu);
  weft_mutex_unlock(&mu);
  return 0;
}

static void child_double_unlock(void)
{
  run_weft(2, double_unlock_main, NULL);
  fprintf(stderr, "child: double unlock returned\n");
  exit(0);
}

static void child_unlock_outside(void)
{
  weft_mutex mu = WEFT_MUTEX_INIT;
  weft_mutex_unlock(&mu);
  fprintf(stderr, "child: unlock outside the runtime returned\n");
  exit(0);
}

static void test_unlock_unlocked_aborts(void **state)
{
  (void)state;
  int status = 0;
  char *out = expect_child_output("unlock_fresh", 30, &status);
  if (!WIFSIGNALED(status) || !strstr(out, "unlock of unlocked mutex") ||
      !strstr(out, "coroutine 1 \"main\"")) {
    fprintf(stderr, "child unlock_fresh: status %d, stderr:\n%s\n", status, out);
    fail_msg("unlock of a fresh mutex did not abort with a message and a dump");
  }
  free(out);
  expect_child("double_unlock", "unlock of unlocked mutex", 30);
  expect_child("unlock_outside", "unlock of unlocked mutex", 30);
}

/* ---- a contended lock parks (P=1): the only thread stays available ---- */

#define PARK_WAITERS 3

struct park_test {
  weft_mutex mu;
  atomic_int held_by_main;
  atomic_int got;  /* waiters that have had the lock */
  atomic_int stop; /* tell the ticker to stop */
  atomic_long ticks;
  weft_wg wg;
};

static void park_waiter(void *arg)
{
  struct park_test *t = arg;
  weft_mutex_lock(&t->mu);
  CHECK(!atomic_load(&t->held_by_main));
  atomic_fetch_add(&t->got, 1);
  weft_mutex_unlock(&t->mu);
  weft_wg_done(&t->wg);
}

static void ticker(void *arg)
{
  struct park_test *t = arg;
  while (!atomic_load(&t->stop)) {
    atomic_fetch_add(&t->ticks, 1);
    weft_yield();
  }
  weft_wg_done(&t->wg);
}

static int park_main(void *arg)
{
  struct park_test *t = arg;
  weft_mutex_lock(&t->mu);
  atomic_store(&t->held_by_main, 1);
  weft_wg_add(&t->wg, PARK_WAITERS + 1);
  for (int i = 0; i < PARK_WAITERS; i++)
    if (weft_go_named(park_waiter, t, "park-waiter") != 0)
      return -1;
  if (weft_go(ticker, t) != 0)
    return -1;
  weft_yield(); /* let the waiters reach the lock */
  long before = atomic_load(&t->ticks);
  weft_sleep(MS(20)); /* hold it while sleeping */
  long during = atomic_load(&t->ticks) - before;
  /* With one thread, a waiter that spun instead of parking would keep the ticker (and
   * the timer that wakes us) from ever running again. */
  CHECK(during > 0);
  CHECK(atomic_load(&t->got) == 0);
  CHECK(dump_count("\"park-waiter\"", "mutex") == PARK_WAITERS);
  atomic_store(&t->held_by_main, 0);
  weft_mutex_unlock(&t->mu);
  atomic_store(&t->stop, 1);
  weft_wg_wait(&t->wg);
  CHECK(atomic_load(&t->got) == PARK_WAITERS);
  return 0;
}

static void test_contended_lock_parks(void **state)
{
  struct park_test t = {.mu = WEFT_MUTEX_INIT, .wg = WEFT_WG_INIT};
  (void)state;
  checks_reset();
  assert_int_equal(run_weft(1, park_main, &t), 0);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- starvation mode: a tight re-locking loop cannot keep a waiter out ---- */

#define STARVE_ROUNDS 5
#define STARVE_BOUND  MS(5000) /* generous: a busy 2-core machine; it takes ms */

struct starve {
  weft_mutex mu;
  atomic_int spinning; /* the spinner has started its loop */
  atomic_int got;      /* the waiter of this round has had the lock */
  int64_t waited;      /* how long it waited; written by the waiter before got */
  atomic_long relocks; /* lock/unlock pairs the spinner made */
  weft_wg wg;
};

/* Re-lock in a tight loop, never yielding, until the waiter got in or the bound passed. */
static void spinner(void *arg)
{
  struct starve *s = arg;
  int64_t end = weft_now() + STARVE_BOUND;
  atomic_store(&s->spinning, 1);
  while (!atomic_load(&s->got) && weft_now() < end) {
    weft_mutex_lock(&s->mu);
    weft_mutex_unlock(&s->mu);
    atomic_fetch_add_explicit(&s->relocks, 1, memory_order_relaxed);
  }
  weft_wg_done(&s->wg);
}

static void starved_waiter(void *arg)
{
  struct starve *s = arg;
  int64_t t0 = weft_now();
  weft_mutex_lock(&s->mu);
  s->waited = weft_now() - t0;
  atomic_store(&s->got, 1);
  weft_mutex_unlock(&s->mu);
  weft_wg_done(&s->wg);
}

static int starve_main(void *arg)
{
  (void)arg;
  for (int round = 0; round < STARVE_ROUNDS; round++) {
    struct starve s = {.mu = WEFT_MUTEX_INIT, .wg = WEFT_WG_INIT};
    weft_wg_add(&s.wg, 2);
    if (weft_go(spinner, &s) != 0)
      return -1;
    while (!atomic_load(&s.spinning) || atomic_load(&s.relocks) < 1000)
      weft_sleep(MS(1));
    if (weft_go(starved_waiter, &s) != 0)
      return -1;
    weft_wg_wait(&s.wg);
    if (!atomic_load(&s.got)) {
      fprintf(stderr, "round %d: waiter still out after %.1f s (%ld relocks)\n", round,
              (double)STARVE_BOUND / 1e9, atomic_load(&s.relocks));
      return 1;
    }
    if (s.waited > STARVE_BOUND)
      return 2;
  }
  return 0;
}

static void test_starvation_mode(void **state)
{
  (void)state;
  checks_reset();
  /* Two threads: the spinner keeps one, the waiter parks and is woken on the other. */
  assert_int_equal(run_weft(2, starve_main, NULL), 0);
  assert_int_equal(run_weft(3, starve_main, NULL), 0);
  ASSERT_NO_CHECK_FAILED();
}

/* Go's TestMutexFairness: a hog holds the lock across a short sleep and re-locks at once
 * after each unlock. In normal mode the woken waiter always loses to the running hog (on
 * one thread it cannot even run before the hog has re-locked); only starvation mode, which
 * hands the lock to a waiter that has waited over 1 ms, lets it in. */
#define FAIR_LOCKS 10

struct fairness {
  weft_mutex mu;
  atomic_int waiter_done;
  int64_t waiter_took; /* ns for all FAIR_LOCKS; written before waiter_done */
  atomic_long hog_rounds;
  weft_wg wg;
};

static void hog(void *arg)
{
  struct fairness *f = arg;
  int64_t end = weft_now() + STARVE_BOUND;
  while (!atomic_load(&f->waiter_done) && weft_now() < end) {
    weft_mutex_lock(&f->mu);
    weft_sleep(100000);
    weft_mutex_unlock(&f->mu);
    atomic_fetch_add(&f->hog_rounds, 1);
  }
  weft_wg_done(&f->wg);
}

static void fair_waiter(void *arg)
{
  struct fairness *f = arg;
  int64_t t0 = weft_now();
  for (int i = 0; i < FAIR_LOCKS; i++) {
    weft_sleep(100000);
    weft_mutex_lock(&f->mu);
    weft_mutex_unlock(&f->mu);
  }
  f->waiter_took = weft_now() - t0;
  atomic_store(&f->waiter_done, 1);
  weft_wg_done(&f->wg);
}

static int fairness_main(void *arg)
{
  struct fairness f = {.mu = WEFT_MUTEX_INIT, .wg = WEFT_WG_INIT};
  (void)arg;
  weft_wg_add(&f.wg, 2);
  if (weft_go(hog, &f) != 0 || weft_go(fair_waiter, &f) != 0)
    return -1;
  weft_wg_wait(&f.wg);
  if (!atomic_load(&f.waiter_done)) {
    fprintf(stderr, "P=%d: the waiter never got the lock in %.1f s (%ld hog rounds)\n",
            weft_procs(), (double)STARVE_BOUND / 1e9, atomic_load(&f.hog_rounds));
    return 1;
  }
  return f.waiter_took <= STARVE_BOUND ? 0 : 2;
}

static void test_fairness_against_hog(void **state)
{
  (void)state;
  checks_reset();
  run_weft_p1to4(fairness_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- one coroutine (or thread) may unlock what another locked ---- */

struct cross {
  weft_mutex mu;
  atomic_int locked;
  atomic_int waiter_got;
  weft_wg wg;
};

static void cross_locker(void *arg)
{
  struct cross *x = arg;
  weft_mutex_lock(&x->mu);
  atomic_store(&x->locked, 1);
  weft_wg_done(&x->wg); /* returns still holding it */
}

static void cross_waiter(void *arg)
{
  struct cross *x = arg;
  weft_mutex_lock(&x->mu);
  atomic_store(&x->waiter_got, 1);
  weft_mutex_unlock(&x->mu);
  weft_wg_done(&x->wg);
}

static void cross_unlocker(void *arg)
{
  struct cross *x = arg;
  weft_mutex_unlock(&x->mu);
  weft_wg_done(&x->wg);
}

static void *thread_unlock(void *arg)
{
  weft_mutex_unlock(arg);
  return NULL;
}

static int cross_main(void *arg)
{
  (void)arg;
  struct cross x = {.mu = WEFT_MUTEX_INIT, .wg = WEFT_WG_INIT};
  /* Locked by one coroutine, unlocked by another, with a third parked on it. */
  weft_wg_add(&x.wg, 1);
  if (weft_go(cross_locker, &x) != 0)
    return -1;
  weft_wg_wait(&x.wg);
  CHECK(atomic_load(&x.locked) == 1);
  weft_wg_add(&x.wg, 2);
  if (weft_go_named(cross_waiter, &x, "cross-waiter") != 0)
    return -1;
  CHECK(wait_dump_count("\"cross-waiter\"", "mutex", 1, MS(5000)));
  CHECK(atomic_load(&x.waiter_got) == 0);
  if (weft_go(cross_unlocker, &x) != 0)
    return -1;
  weft_wg_wait(&x.wg);
  CHECK(atomic_load(&x.waiter_got) == 1);
  CHECK(weft_mutex_trylock(&x.mu) == 0);

  /* Locked by main (above), unlocked by a thread that is not a coroutine. */
  atomic_store(&x.waiter_got, 0);
  weft_wg_add(&x.wg, 1);
  if (weft_go_named(cross_waiter, &x, "cross-waiter") != 0)
    return -1;
  CHECK(wait_dump_count("\"cross-waiter\"", "mutex", 1, MS(5000)));
  pthread_t th;
  if (pthread_create(&th, NULL, thread_unlock, &x.mu) != 0)
    return -1;
  pthread_join(th, NULL); /* blocks this thread briefly; the waiter may run elsewhere */
  weft_wg_wait(&x.wg);
  CHECK(atomic_load(&x.waiter_got) == 1);
  CHECK(weft_mutex_trylock(&x.mu) == 0);
  weft_mutex_unlock(&x.mu);
  return 0;
}

static void test_unlock_by_another(void **state)
{
  (void)state;
  checks_reset();
  run_weft_p1to4(cross_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- the wait reason shows in a dump, on P=1..4 ---- */

#define DUMP_WAITERS 4

struct dump_test {
  weft_mutex mu;
  weft_wg wg;
};

static void dump_waiter(void *arg)
{
  struct dump_test *d = arg;
  weft_mutex_lock(&d->mu);
  weft_mutex_unlock(&d->mu);
  weft_wg_done(&d->wg);
}

static int dump_main(void *arg)
{
  struct dump_test d = {.mu = WEFT_MUTEX_INIT, .wg = WEFT_WG_INIT};
  (void)arg;
  weft_mutex_lock(&d.mu);
  weft_wg_add(&d.wg, DUMP_WAITERS);
  for (int i = 0; i < DUMP_WAITERS; i++)
    if (weft_go_named(dump_waiter, &d, "mutex-dump") != 0)
      return -1;
  /* Each line reads: coroutine N "mutex-dump" [mutex, 0.00s]: created at ... */
  CHECK(wait_dump_count("\"mutex-dump\"", "mutex", DUMP_WAITERS, MS(5000)));
  CHECK(dump_count("test_mutex.c:", "mutex") == DUMP_WAITERS);
  weft_mutex_unlock(&d.mu);
  weft_wg_wait(&d.wg);
  return 0;
}

static void test_wait_reason_in_dump(void **state)
{
  (void)state;
  checks_reset();
  run_weft_p1to4(dump_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_mutual_exclusion),
      cmocka_unit_test(test_trylock),
      cmocka_unit_test(test_unlock_unlocked_aborts),
      cmocka_unit_test(test_contended_lock_parks),
      cmocka_unit_test(test_starvation_mode),
      cmocka_unit_test(test_fairness_against_hog),
      cmocka_unit_test(test_unlock_by_another),
      cmocka_unit_test(test_wait_reason_in_dump),
  };
  const struct child_scenario children[] = {
      {"unlock_fresh", child_unlock_fresh},
      {"double_unlock", child_double_unlock},
      {"unlock_outside", child_unlock_outside},
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], children,
                        sizeof children / sizeof children[0]);
}
