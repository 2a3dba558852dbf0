/* test_sync_stress.c: the sync primitives under a random mix, on P = 1, 2, 3 and 4.
 *
 * Many coroutines each run a random program over one shared set of objects: a mutex
 * (sometimes taken with trylock, sometimes held across a yield or a short sleep), an
 * rwmutex (read and write sections), a bounded queue guarded by a mutex and two conds
 * (producers are the random coroutines, a few dedicated consumers drain it), a weighted
 * semaphore (acquire with and without deadlines, try_acquire, requests larger than its
 * size), a once, and wait groups (coroutines spawn a few children and wait for them).
 *
 * The checks: exclusive sections never overlap (an in-section counter per lock, and a
 * plain counter that must equal the number of sections, which ThreadSanitizer also checks
 * for happens-before); no reader is inside while a writer is; the semaphore never has more
 * than its size in use and has every token back at the end; every queued item is consumed
 * exactly once; the once ran exactly once; and nothing is left parked or alive at the end
 * (the dump shows only main, and run_weft's leak check). The seed is printed;
 * WEFT_TEST_SEED=N replays a run's choices (not its interleaving). */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft_test.h"
#include "../sync/sync_check.h"

#if SANITIZED
#define WORKERS   32
#define OPS       2000
#define CONSUMERS 3
#else
#define WORKERS   64
#define OPS       6000
#define CONSUMERS 4
#endif
#define QCAP      8
#define SEM_SIZE  8
#define MAX_ITEMS (WORKERS * OPS)
#define MAX_KIDS  3

struct stress {
  uint64_t seed;
  atomic_int next_worker;

  weft_mutex mu;
  atomic_int in_mu;
  long mu_count;      /* plain: guarded by mu */
  atomic_long mu_ops; /* sections entered */

  weft_rwmutex rw;
  atomic_int readers, writers;
  long rw_data[2]; /* plain: written by writers, read by readers */
  atomic_long rw_writes, rw_reads;

  weft_mutex qmu;
  weft_cond not_empty, not_full;
  int ring[QCAP];      /* guarded by qmu */
  int qhead, qcount;   /* guarded by qmu */
  int next_item;       /* guarded by qmu */
  int consumed;        /* guarded by qmu */
  bool producers_done; /* guarded by qmu */
  unsigned char *seen; /* [MAX_ITEMS]; guarded by qmu */

  weft_sem *sem;
  atomic_long sem_in_use, sem_max, sem_acquired, sem_timeouts;

  weft_once once;
  atomic_int once_runs;
  int once_value; /* plain: written by the once's fn */

  atomic_long kids;
  weft_wg workers_wg, consumers_wg;
};

/* ---- the operations ---- */

static void op_mutex(struct stress *S, uint64_t *rng)
{
  if (test_rand(rng) % 4 == 0) {
    if (weft_mutex_trylock(&S->mu) != 0)
      return;
  } else {
    weft_mutex_lock(&S->mu);
  }
  CHECK(atomic_fetch_add(&S->in_mu, 1) == 0);
  S->mu_count++;
  atomic_fetch_add(&S->mu_ops, 1);
  switch (test_rand(rng) % 8) {
  case 0:
    weft_yield();
    break;
  case 1:
    weft_sleep((int64_t)(test_rand(rng) % 50000)); /* long hold: waiters may starve */
    break;
  default:
    break;
  }
  CHECK(atomic_fetch_sub(&S->in_mu, 1) == 1);
  weft_mutex_unlock(&S->mu);
}

static void op_read(struct stress *S, uint64_t *rng)
{
  weft_rwmutex_rlock(&S->rw);
  atomic_fetch_add(&S->readers, 1);
  CHECK(atomic_load(&S->writers) == 0);
  long a = S->rw_data[0];
  if (test_rand(rng) % 4 == 0)
    weft_yield();
  CHECK(S->rw_data[1] == a);
  CHECK(atomic_load(&S->writers) == 0);
  atomic_fetch_sub(&S->readers, 1);
  atomic_fetch_add(&S->rw_reads, 1);
  weft_rwmutex_runlock(&S->rw);
}

static void op_write(struct stress *S, uint64_t *rng)
{
  weft_rwmutex_lock(&S->rw);
  CHECK(atomic_fetch_add(&S->writers, 1) == 0);
  CHECK(atomic_load(&S->readers) == 0);
  S->rw_data[0]++;
  if (test_rand(rng) % 4 == 0)
    weft_yield();
  S->rw_data[1]++;
  atomic_fetch_add(&S->rw_writes, 1);
  CHECK(atomic_load(&S->readers) == 0);
  CHECK(atomic_fetch_sub(&S->writers, 1) == 1);
  weft_rwmutex_unlock(&S->rw);
}

static void op_produce(struct stress *S, uint64_t *rng)
{
  weft_mutex_lock(&S->qmu);
  while (S->qcount == QCAP)
    weft_cond_wait(&S->not_full, &S->qmu);
  S->ring[(S->qhead + S->qcount++) % QCAP] = S->next_item++;
  bool wake_all = test_rand(rng) % 8 == 0;
  bool inside = test_rand(rng) % 2 == 0;
  if (inside)
    wake_all ? weft_cond_broadcast(&S->not_empty) : weft_cond_signal(&S->not_empty);
  weft_mutex_unlock(&S->qmu);
  if (!inside)
    wake_all ? weft_cond_broadcast(&S->not_empty) : weft_cond_signal(&S->not_empty);
}

static void sem_hold(struct stress *S, uint64_t *rng, int64_t n)
{
  long now = atomic_fetch_add(&S->sem_in_use, n) + n;
  CHECK(now <= SEM_SIZE);
  long max = atomic_load(&S->sem_max);
  while (now > max && !atomic_compare_exchange_weak(&S->sem_max, &max, now))
    ;
  atomic_fetch_add(&S->sem_acquired, 1);
  switch (test_rand(rng) % 8) {
  case 0:
  case 1:
    weft_yield();
    break;
  case 2: /* a longer hold: deadlines expire, big requests queue up behind */
    weft_sleep((int64_t)(test_rand(rng) % 100000));
    break;
  default:
    break;
  }
  atomic_fetch_sub(&S->sem_in_use, n);
  weft_sem_release(S->sem, n);
}

static void op_sem(struct stress *S, uint64_t *rng)
{
  int64_t n = (int64_t)(test_rand(rng) % (SEM_SIZE + 1));
  int rc;
  switch (test_rand(rng) % 8) {
  case 0:
    rc = weft_sem_try_acquire(S->sem, n);
    break;
  case 1:
  case 2:
    rc = weft_sem_acquire(S->sem, n, weft_now() + (int64_t)(test_rand(rng) % 300000));
    break;
  case 3: /* can never be granted: fails at its deadline */
    rc =
        weft_sem_acquire(S->sem, SEM_SIZE + 1, weft_now() + (int64_t)(test_rand(rng) % 100000));
    CHECK(rc == -ETIMEDOUT);
    return;
  default:
    rc = weft_sem_acquire(S->sem, n, WEFT_NO_DEADLINE);
    CHECK(rc == 0);
    break;
  }
  if (rc == 0)
    sem_hold(S, rng, n);
  else if (rc == -ETIMEDOUT)
    atomic_fetch_add(&S->sem_timeouts, 1);
  else
    CHECK(rc == -EAGAIN);
}

static void once_fn(void *arg)
{
  struct stress *S = arg;
  atomic_fetch_add(&S->once_runs, 1);
  weft_yield();
  S->once_value = 7;
}

static void op_once(struct stress *S)
{
  weft_once_do(&S->once, once_fn, S);
  CHECK(S->once_value == 7);
}

struct kid {
  struct stress *S;
  uint64_t rng;
  weft_wg *wg;
};

static void kid_main(void *arg)
{
  struct kid *k = arg;
  uint64_t rng = k->rng;
  if (test_rand(&rng) % 2)
    op_mutex(k->S, &rng);
  else
    op_read(k->S, &rng);
  atomic_fetch_add(&k->S->kids, 1);
  weft_wg_done(k->wg);
}

/* Spawn a few children, each doing one locked operation, and wait for them. */
static void op_spawn(struct stress *S, uint64_t *rng)
{
  struct kid kids[MAX_KIDS];
  weft_wg wg = WEFT_WG_INIT;
  int n = 1 + (int)(test_rand(rng) % MAX_KIDS);
  weft_wg_add(&wg, n);
  for (int i = 0; i < n; i++) {
    kids[i] = (struct kid){.S = S, .rng = test_rand(rng) | 1, .wg = &wg};
    if (weft_go(kid_main, &kids[i]) != 0) {
      CHECK(!"spawn failed");
      weft_wg_done(&wg);
    }
  }
  weft_wg_wait(&wg);
}

static void worker(void *arg)
{
  struct stress *S = arg;
  uint64_t rng =
      S->seed ^ ((uint64_t)(atomic_fetch_add(&S->next_worker, 1) + 1) * 0x9E3779B97F4A7C15ull);
  if (!rng)
    rng = 1;
  for (int i = 0; i < OPS; i++) {
    switch (test_rand(&rng) % 10) {
    case 0:
    case 1:
      op_mutex(S, &rng);
      break;
    case 2:
    case 3:
      op_read(S, &rng);
      break;
    case 4:
      op_write(S, &rng);
      break;
    case 5:
      op_produce(S, &rng);
      break;
    case 6:
      op_sem(S, &rng);
      break;
    case 7:
      op_spawn(S, &rng);
      break;
    case 8:
      op_once(S);
      break;
    default:
      if (test_rand(&rng) % 2)
        weft_yield();
      else
        weft_sleep((int64_t)(test_rand(&rng) % 20000));
      break;
    }
  }
  weft_wg_done(&S->workers_wg);
}

static void consumer(void *arg)
{
  struct stress *S = arg;
  uint64_t rng = (S->seed ^ 0xC0FFEEull) + weft_self_id() * 0x9E3779B97F4A7C15ull;
  for (;;) {
    weft_mutex_lock(&S->qmu);
    while (S->qcount == 0 && !S->producers_done)
      weft_cond_wait(&S->not_empty, &S->qmu);
    if (S->qcount == 0) {
      weft_mutex_unlock(&S->qmu);
      break;
    }
    int item = S->ring[S->qhead];
    S->qhead = (S->qhead + 1) % QCAP;
    S->qcount--;
    CHECK(item >= 0 && item < S->next_item);
    S->seen[item]++;
    S->consumed++;
    weft_mutex_unlock(&S->qmu);
    weft_cond_signal(&S->not_full);
    if (test_rand(&rng) % 4 == 0)
      weft_yield(); /* let the queue fill up: producers wait on not_full */
  }
  weft_wg_done(&S->consumers_wg);
}

static int stress_main(void *arg)
{
  struct stress *S = arg;
  weft_wg_add(&S->consumers_wg, CONSUMERS);
  for (int i = 0; i < CONSUMERS; i++)
    if (weft_go_named(consumer, S, "consumer") != 0)
      return -1;
  weft_wg_add(&S->workers_wg, WORKERS);
  for (int i = 0; i < WORKERS; i++)
    if (weft_go_named(worker, S, "worker") != 0)
      return -1;
  weft_wg_wait(&S->workers_wg);

  weft_mutex_lock(&S->qmu);
  S->producers_done = true;
  weft_mutex_unlock(&S->qmu);
  weft_cond_broadcast(&S->not_empty);
  weft_wg_wait(&S->consumers_wg);

  /* Everything has returned or is returning: nothing may stay parked. */
  int64_t end = weft_now() + MS(10000);
  while (weft_coroutine_count() > 1 && weft_now() < end)
    weft_sleep(MS(1));
  CHECK(weft_coroutine_count() == 1);
  CHECK(dump_count(NULL, NULL) == 1); /* main only */
  return 0;
}

static void check_run(struct stress *S, int p)
{
  int bad = 0;
  for (int i = 0; i < S->next_item; i++)
    bad += S->seen[i] != 1;
  fprintf(stderr,
          "P=%d: %ld mutex, %ld read, %ld write sections, %d items, %ld sem (%ld timed "
          "out, at most %ld held), %ld kids\n",
          p, atomic_load(&S->mu_ops), atomic_load(&S->rw_reads), atomic_load(&S->rw_writes),
          S->next_item, atomic_load(&S->sem_acquired), atomic_load(&S->sem_timeouts),
          atomic_load(&S->sem_max), atomic_load(&S->kids));
  assert_int_equal(S->mu_count, atomic_load(&S->mu_ops));
  assert_int_equal(S->rw_data[0], atomic_load(&S->rw_writes));
  assert_int_equal(S->rw_data[1], atomic_load(&S->rw_writes));
  assert_int_equal(bad, 0);
  assert_int_equal(S->consumed, S->next_item);
  assert_int_equal(S->qcount, 0);
  assert_int_equal(atomic_load(&S->once_runs), 1);
  assert_true(atomic_load(&S->sem_max) <= SEM_SIZE);
  assert_int_equal(atomic_load(&S->sem_in_use), 0);
  assert_int_equal(weft_sem_try_acquire(S->sem, SEM_SIZE), 0); /* every token back */
  weft_sem_release(S->sem, SEM_SIZE);
}

static void test_sync_stress(void **state)
{
  (void)state;
  checks_reset();
  uint64_t seed = test_seed();
  for (int p = 1; p <= 4; p++) {
    struct stress *S = calloc(1, sizeof *S);
    assert_non_null(S);
    S->seed = seed * 0x9E3779B97F4A7C15ull + (uint64_t)p;
    S->seen = calloc(MAX_ITEMS, 1);
    S->sem = weft_sem_new(SEM_SIZE);
    assert_non_null(S->seen);
    assert_non_null(S->sem);
    assert_int_equal(run_weft(p, stress_main, S), 0);
    ASSERT_NO_CHECK_FAILED();
    check_run(S, p);
    weft_sem_free(S->sem);
    free(S->seen);
    free(S);
  }
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sync_stress),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
