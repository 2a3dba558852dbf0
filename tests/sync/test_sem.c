/* test_sem.c: weft_sem, with x/sync/semaphore's semantics: strict FIFO (a large request at
 * the head blocks smaller ones behind it); a deadline makes acquire return -ETIMEDOUT and
 * removes the waiter (later releases go to others, and a timed-out head lets the next ones
 * proceed); a deadline already passed fails at once even when tokens are free; n > size
 * waits for the deadline and fails without blocking anyone; try_acquire fails while
 * anyone waits; releasing more than held aborts; a thread that is not a coroutine may
 * release (and acquire when it need not park; -EPERM when it would); under random
 * concurrent use on P=1..4 no more than size tokens are ever held. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft_test.h"
#include "sync_check.h"

#define LONG_WAIT MS(5000)
/* Deadlines that must not pass before the test has queued the others behind: generous,
 * for a slow sanitized build on a busy machine. */
#define SHORT_WAIT (SANITIZED ? MS(600) : MS(300))

/* A coroutine that acquires n tokens (with a deadline `timeout` ns after it starts, or
 * none when timeout is 0), records the result and when it returned, and optionally
 * releases them at once. */
struct acq {
  weft_sem *sem;
  int64_t n;
  int64_t timeout;
  bool release_after;
  atomic_int done;
  int rc;            /* written before done */
  int64_t started;   /* written before done */
  int64_t ended;     /* written before done */
  atomic_int *order; /* shared sequence: this acquirer's place among those that got in */
  int place;         /* written before done */
  weft_wg *wg;
};

static void acquirer(void *arg)
{
  struct acq *a = arg;
  a->started = weft_now();
  int64_t deadline = a->timeout ? a->started + a->timeout : WEFT_NO_DEADLINE;
  a->rc = weft_sem_acquire(a->sem, a->n, deadline);
  a->ended = weft_now();
  if (a->rc == 0 && a->order)
    a->place = atomic_fetch_add(a->order, 1) + 1;
  if (a->rc == 0 && a->release_after)
    weft_sem_release(a->sem, a->n);
  atomic_store(&a->done, 1);
  weft_wg_done(a->wg);
}

/* Spawn an acquirer named name and wait until it is parked on the semaphore (the dump
 * then shows `parked` coroutines waiting on it). */
static bool start_waiter(struct acq *a, const char *name, int parked)
{
  weft_wg_add(a->wg, 1);
  if (weft_go_named(acquirer, a, name) != 0)
    return false;
  return wait_dump_count(NULL, "semaphore", parked, LONG_WAIT);
}

/* ---- FIFO: a large request at the head blocks smaller ones behind it ---- */

static int fifo_main(void *arg)
{
  (void)arg;
  weft_sem *s = weft_sem_new(10);
  weft_wg wg = WEFT_WG_INIT;
  atomic_int order = 0;
  if (!s)
    return -1;
  CHECK(weft_sem_acquire(s, 10, WEFT_NO_DEADLINE) == 0);
  struct acq big = {.sem = s, .n = 10, .order = &order, .wg = &wg};
  struct acq small = {.sem = s, .n = 1, .order = &order, .wg = &wg};
  CHECK(start_waiter(&big, "sem-big", 1));
  CHECK(start_waiter(&small, "sem-small", 2));
  /* One token free, wanted by the small request, but the big one is at the head. */
  weft_sem_release(s, 1);
  CHECK(weft_sem_try_acquire(s, 1) == -EAGAIN);
  weft_sleep(MS(10));
  CHECK(!atomic_load(&small.done) && !atomic_load(&big.done));
  CHECK(dump_count(NULL, "semaphore") == 2);
  /* Nine more: the big one gets all ten; the small one still waits. */
  weft_sem_release(s, 9);
  CHECK(wait_flag(&big.done, 1, LONG_WAIT));
  CHECK(big.rc == 0 && big.place == 1);
  weft_sleep(MS(10));
  CHECK(!atomic_load(&small.done));
  weft_sem_release(s, 10); /* on big's behalf */
  weft_wg_wait(&wg);
  CHECK(small.rc == 0 && small.place == 2);
  weft_sem_release(s, 1);
  CHECK(weft_sem_try_acquire(s, 10) == 0); /* every token is back */
  weft_sem_release(s, 10);
  weft_sem_free(s);
  return 0;
}

static void test_fifo_head_blocks(void **state)
{
  (void)state;
  checks_reset();
  run_weft_p1to4(fifo_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- deadlines ---- */

static int deadline_main(void *arg)
{
  (void)arg;
  weft_sem *s = weft_sem_new(1);
  weft_wg wg = WEFT_WG_INIT;
  atomic_int order = 0;
  if (!s)
    return -1;
  CHECK(weft_sem_acquire(s, 1, WEFT_NO_DEADLINE) == 0);
  /* A times out at the head; B, behind it with no deadline, gets the next release. */
  struct acq a = {.sem = s, .n = 1, .timeout = SHORT_WAIT, .order = &order, .wg = &wg};
  struct acq b = {.sem = s, .n = 1, .order = &order, .wg = &wg};
  CHECK(start_waiter(&a, "sem-a", 1));
  CHECK(start_waiter(&b, "sem-b", 2));
  CHECK(wait_flag(&a.done, 1, LONG_WAIT));
  CHECK(a.rc == -ETIMEDOUT);
  CHECK(a.ended >= a.started + SHORT_WAIT);                /* not before its deadline */
  CHECK(wait_dump_count(NULL, "semaphore", 1, LONG_WAIT)); /* A left the queue */
  CHECK(!atomic_load(&b.done));
  weft_sem_release(s, 1);
  weft_wg_wait(&wg);
  CHECK(b.rc == 0 && b.place == 1);
  /* B holds the token; A did not take one when it timed out. */
  CHECK(weft_sem_try_acquire(s, 1) == -EAGAIN);
  weft_sem_release(s, 1);
  CHECK(weft_sem_try_acquire(s, 1) == 0);
  weft_sem_release(s, 1);

  /* A deadline already passed fails at once, even with tokens free; nothing is taken. */
  CHECK(weft_sem_acquire(s, 1, weft_now() - 1) == -ETIMEDOUT);
  CHECK(weft_sem_acquire(s, 1, 0) == -ETIMEDOUT);
  CHECK(weft_sem_acquire(s, 0, weft_now()) == -ETIMEDOUT);
  CHECK(weft_sem_try_acquire(s, 1) == 0);
  weft_sem_release(s, 1);

  /* A future deadline with tokens free succeeds at once. */
  int64_t t0 = weft_now();
  CHECK(weft_sem_acquire(s, 1, t0 + LONG_WAIT) == 0);
  CHECK(weft_now() - t0 < LONG_WAIT);
  weft_sem_release(s, 1);
  weft_sem_free(s);
  return 0;
}

static void test_deadline(void **state)
{
  (void)state;
  checks_reset();
  run_weft_p1to4(deadline_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- n > size waits for the deadline and fails; it blocks nobody ---- */

static int too_big_main(void *arg)
{
  (void)arg;
  weft_sem *s = weft_sem_new(2);
  weft_wg wg = WEFT_WG_INIT;
  if (!s)
    return -1;
  struct acq big = {.sem = s, .n = 3, .timeout = SHORT_WAIT, .wg = &wg};
  CHECK(start_waiter(&big, "sem-too-big", 1));
  /* x/sync does not queue a request that can never succeed: others go ahead. */
  struct acq one = {.sem = s, .n = 1, .timeout = LONG_WAIT, .release_after = true, .wg = &wg};
  weft_wg_add(&wg, 1);
  if (weft_go(acquirer, &one) != 0)
    return -1;
  CHECK(wait_flag(&one.done, 1, LONG_WAIT));
  CHECK(one.rc == 0);
  CHECK(!atomic_load(&big.done));
  CHECK(weft_sem_try_acquire(s, 2) == 0);
  weft_sem_release(s, 2);
  weft_wg_wait(&wg);
  CHECK(big.rc == -ETIMEDOUT);
  CHECK(big.ended >= big.started + SHORT_WAIT);
  CHECK(weft_sem_try_acquire(s, 2) == 0);
  weft_sem_release(s, 2);
  weft_sem_free(s);
  return 0;
}

static void test_more_than_size(void **state)
{
  (void)state;
  checks_reset();
  run_weft_p1to4(too_big_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- try_acquire fails while anyone waits ---- */

static int try_main(void *arg)
{
  (void)arg;
  weft_sem *s = weft_sem_new(3);
  weft_wg wg = WEFT_WG_INIT;
  if (!s)
    return -1;
  CHECK(weft_sem_try_acquire(s, 2) == 0);
  CHECK(weft_sem_try_acquire(s, 2) == -EAGAIN); /* only one free */
  struct acq w = {.sem = s, .n = 2, .wg = &wg};
  CHECK(start_waiter(&w, "sem-w", 1));
  /* One token is free, but someone waits. */
  CHECK(weft_sem_try_acquire(s, 1) == -EAGAIN);
  CHECK(weft_sem_try_acquire(s, 0) == -EAGAIN);
  weft_sem_release(s, 2); /* w gets 2 of the 3 */
  weft_wg_wait(&wg);
  CHECK(w.rc == 0);
  CHECK(weft_sem_try_acquire(s, 1) == 0);
  CHECK(weft_sem_try_acquire(s, 1) == -EAGAIN);
  weft_sem_release(s, 3);
  CHECK(weft_sem_try_acquire(s, 3) == 0);
  weft_sem_release(s, 3);
  /* Bad arguments. */
  CHECK(weft_sem_try_acquire(s, -1) == -EINVAL);
  CHECK(weft_sem_acquire(s, -1, WEFT_NO_DEADLINE) == -EINVAL);
  CHECK(weft_sem_try_acquire(NULL, 1) == -EINVAL);
  CHECK(weft_sem_acquire(NULL, 1, WEFT_NO_DEADLINE) == -EINVAL);
  weft_sem_free(s);
  return 0;
}

static void test_try_acquire(void **state)
{
  (void)state;
  checks_reset();
  run_weft_p1to4(try_main, NULL);
  ASSERT_NO_CHECK_FAILED();
  /* Any thread may use the non-parking calls; size 0 and negative sizes. */
  assert_null(weft_sem_new(-1));
  weft_sem *s = weft_sem_new(0);
  assert_non_null(s);
  assert_int_equal(weft_sem_try_acquire(s, 0), 0);
  assert_int_equal(weft_sem_try_acquire(s, 1), -EAGAIN);
  weft_sem_free(s);
  weft_sem_free(NULL);
}

/* ---- a timed-out waiter at the head lets the next ones proceed ---- */

static int head_timeout_main(void *arg)
{
  (void)arg;
  weft_sem *s = weft_sem_new(4);
  weft_wg wg = WEFT_WG_INIT;
  atomic_int order = 0;
  if (!s)
    return -1;
  CHECK(weft_sem_acquire(s, 2, WEFT_NO_DEADLINE) == 0); /* two free */
  struct acq head = {.sem = s, .n = 3, .timeout = SHORT_WAIT, .order = &order, .wg = &wg};
  struct acq b = {.sem = s, .n = 1, .order = &order, .wg = &wg};
  struct acq c = {.sem = s, .n = 1, .order = &order, .wg = &wg};
  struct acq d = {.sem = s, .n = 1, .order = &order, .wg = &wg}; /* no room for it */
  CHECK(start_waiter(&head, "sem-head", 1));
  CHECK(start_waiter(&b, "sem-b", 2));
  CHECK(start_waiter(&c, "sem-c", 3));
  CHECK(start_waiter(&d, "sem-d", 4));
  /* Nobody releases: when the head gives up, b and c take the two free tokens. */
  CHECK(wait_flag(&c.done, 1, LONG_WAIT));
  CHECK(wait_flag(&b.done, 1, LONG_WAIT));
  CHECK(wait_flag(&head.done, 1, LONG_WAIT)); /* b and c may record before it */
  CHECK(head.rc == -ETIMEDOUT);
  CHECK(b.rc == 0 && c.rc == 0);
  CHECK(b.place + c.place == 1 + 2); /* granted together: either may record first */
  CHECK(b.ended >= head.started + SHORT_WAIT);
  weft_sleep(MS(10));
  CHECK(!atomic_load(&d.done));
  weft_sem_release(s, 1); /* c's token: d gets it */
  CHECK(wait_flag(&d.done, 1, LONG_WAIT));
  CHECK(d.rc == 0 && d.place == 3);
  weft_wg_wait(&wg);
  weft_sem_release(s, 2 + 1 + 1); /* main's, b's and d's */
  CHECK(weft_sem_try_acquire(s, 4) == 0);
  weft_sem_release(s, 4);
  weft_sem_free(s);
  return 0;
}

static void test_timed_out_head_lets_others_in(void **state)
{
  (void)state;
  checks_reset();
  run_weft_p1to4(head_timeout_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- release from a thread that is not a coroutine ---- */

static void *thread_release(void *arg)
{
  weft_sem_release(arg, 2);
  return NULL;
}

static int foreign_main(void *arg)
{
  (void)arg;
  weft_sem *s = weft_sem_new(2);
  weft_wg wg = WEFT_WG_INIT;
  if (!s)
    return -1;
  CHECK(weft_sem_acquire(s, 2, WEFT_NO_DEADLINE) == 0);
  struct acq a = {.sem = s, .n = 2, .release_after = true, .wg = &wg};
  CHECK(start_waiter(&a, "sem-foreign", 1));
  /* The join blocks this worker while main stays running: deadlock detection never sees
   * everyone parked, so no weft_external_wakers() is needed. */
  pthread_t th;
  CHECK(pthread_create(&th, NULL, thread_release, s) == 0);
  pthread_join(th, NULL);
  weft_wg_wait(&wg);
  CHECK(a.rc == 0);
  CHECK(weft_sem_try_acquire(s, 2) == 0);
  weft_sem_release(s, 2);
  weft_sem_free(s);
  return 0;
}

static void *thread_acquire(void *arg)
{
  weft_sem *s = arg;
  intptr_t rc = weft_sem_acquire(s, 1, WEFT_NO_DEADLINE); /* free: no need to park */
  if (rc == 0)
    rc = weft_sem_acquire(s, 1, WEFT_NO_DEADLINE); /* would park: refused */
  return (void *)rc;
}

static void test_foreign_thread(void **state)
{
  (void)state;
  checks_reset();
  run_weft_p1to4(foreign_main, NULL);
  ASSERT_NO_CHECK_FAILED();
  weft_sem *s = weft_sem_new(1);
  pthread_t th;
  void *rc;
  assert_int_equal(pthread_create(&th, NULL, thread_acquire, s), 0);
  pthread_join(th, &rc);
  assert_int_equal((intptr_t)rc, -EPERM);
  weft_sem_release(s, 1);
  weft_sem_free(s);
}

/* ---- releasing more than held aborts (child processes) ---- */

static void child_release_unheld(void)
{
  weft_sem *s = weft_sem_new(2);
  weft_sem_release(s, 1);
  fprintf(stderr, "child: release of an unheld token returned\n");
  exit(0);
}

static int release_more_main(void *arg)
{
  (void)arg;
  weft_sem *s = weft_sem_new(4);
  weft_sem_acquire(s, 2, WEFT_NO_DEADLINE);
  weft_sem_release(s, 3);
  return 0;
}

static void child_release_more(void)
{
  run_weft(2, release_more_main, NULL);
  fprintf(stderr, "child: release of more than held returned\n");
  exit(0);
}

static void test_release_more_than_held_aborts(void **state)
{
  (void)state;
  expect_child("release_unheld", "semaphore released more than held", 30);
  expect_child("release_more", "semaphore released more than held", 30);
}

/* ---- random concurrent use: never more than size held ---- */

#define RND_SIZE  10
#define RND_COROS (SANITIZED ? 8 : 16)
#define RND_ITERS (SANITIZED ? 1000 : 5000)

struct rnd {
  weft_sem *sem;
  atomic_long in_use; /* tokens the coroutines say they hold */
  atomic_long max_in_use;
  atomic_long acquired, timed_out, busy;
  uint64_t seed;
  atomic_int next;
  weft_wg wg;
};

static void rnd_worker(void *arg)
{
  struct rnd *r = arg;
  uint64_t rng = r->seed + (uint64_t)atomic_fetch_add(&r->next, 1) * 0x9e3779b97f4a7c15ull;
  if (!rng)
    rng = 1;
  for (int i = 0; i < RND_ITERS; i++) {
    int64_t n = (int64_t)(test_rand(&rng) % 5); /* 0..4 */
    int rc;
    if (test_rand(&rng) % 64 == 0) {
      /* More than size: fails at its deadline, holding nothing and blocking nobody. */
      CHECK(weft_sem_acquire(r->sem, RND_SIZE + 1, weft_now() + 100000) == -ETIMEDOUT);
      continue;
    }
    switch (test_rand(&rng) % 3) {
    case 0:
      rc = weft_sem_try_acquire(r->sem, n);
      break;
    case 1:
      rc = weft_sem_acquire(r->sem, n, WEFT_NO_DEADLINE);
      break;
    default:
      rc = weft_sem_acquire(r->sem, n, weft_now() + (int64_t)(test_rand(&rng) % 200000));
      break;
    }
    if (rc == -EAGAIN) {
      atomic_fetch_add(&r->busy, 1);
      continue;
    }
    if (rc == -ETIMEDOUT) {
      atomic_fetch_add(&r->timed_out, 1);
      continue;
    }
    CHECK(rc == 0);
    long now = atomic_fetch_add(&r->in_use, n) + n;
    CHECK(now <= RND_SIZE);
    long max = atomic_load(&r->max_in_use);
    while (now > max && !atomic_compare_exchange_weak(&r->max_in_use, &max, now))
      ;
    atomic_fetch_add(&r->acquired, 1);
    if (test_rand(&rng) % 2)
      weft_yield();
    atomic_fetch_sub(&r->in_use, n);
    weft_sem_release(r->sem, n);
  }
  weft_wg_done(&r->wg);
}

static int rnd_main(void *arg)
{
  struct rnd *r = arg;
  r->sem = weft_sem_new(RND_SIZE);
  if (!r->sem)
    return -1;
  weft_wg_add(&r->wg, RND_COROS);
  for (int i = 0; i < RND_COROS; i++)
    if (weft_go(rnd_worker, r) != 0)
      return -1;
  weft_wg_wait(&r->wg);
  CHECK(atomic_load(&r->in_use) == 0);
  CHECK(weft_sem_try_acquire(r->sem, RND_SIZE) == 0); /* all tokens back, nobody queued */
  weft_sem_release(r->sem, RND_SIZE);
  weft_sem_free(r->sem);
  return 0;
}

static void test_random_never_over_size(void **state)
{
  (void)state;
  checks_reset();
  uint64_t seed = test_seed();
  for (int p = 1; p <= 4; p++) {
    struct rnd r = {.seed = seed ^ (uint64_t)p, .wg = WEFT_WG_INIT};
    assert_int_equal(run_weft(p, rnd_main, &r), 0);
    fprintf(stderr, "P=%d: %ld acquired, %ld timed out, %ld busy, at most %ld held\n", p,
            atomic_load(&r.acquired), atomic_load(&r.timed_out), atomic_load(&r.busy),
            atomic_load(&r.max_in_use));
    assert_true(atomic_load(&r.acquired) > 0);
  }
  ASSERT_NO_CHECK_FAILED();
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fifo_head_blocks),
      cmocka_unit_test(test_deadline),
      cmocka_unit_test(test_more_than_size),
      cmocka_unit_test(test_try_acquire),
      cmocka_unit_test(test_timed_out_head_lets_others_in),
      cmocka_unit_test(test_foreign_thread),
      cmocka_unit_test(test_release_more_than_held_aborts),
      cmocka_unit_test(test_random_never_over_size),
  };
  const struct child_scenario children[] = {
      {"release_unheld", child_release_unheld},
      {"release_more", child_release_more},
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], children,
                        sizeof children / sizeof children[0]);
}
