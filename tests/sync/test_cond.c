/* test_cond.c: weft_cond: signal wakes exactly one waiter, broadcast wakes all; a signal
 * sent between a waiter's unlock and its park is not lost (a bounded buffer whose
 * producers and consumers only ever signal would deadlock on a lost one); wait relocks the
 * mutex before it returns; waiters show "cond wait" in a dump; a thread that is not a
 * coroutine may signal and broadcast. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft_test.h"
#include "sync_check.h"

/* ---- signal wakes one, broadcast all ---- */

#define NWAITERS 5

struct wakeups {
  weft_mutex mu;
  weft_cond cv;
  int waiting; /* guarded by mu: waiters that hold a ticket (entered weft_cond_wait) */
  int woken;   /* guarded by mu */
  weft_wg wg;
};

static void plain_waiter(void *arg)
{
  struct wakeups *w = arg;
  weft_mutex_lock(&w->mu);
  w->waiting++;
  weft_cond_wait(&w->cv, &w->mu);
  w->woken++;
  weft_mutex_unlock(&w->mu);
  weft_wg_done(&w->wg);
}

static int locked_read(weft_mutex *mu, int *v)
{
  weft_mutex_lock(mu);
  int x = *v;
  weft_mutex_unlock(mu);
  return x;
}

/* Wait until *v == want (polling under mu); false after timeout. */
static bool wait_value(weft_mutex *mu, int *v, int want, int64_t timeout)
{
  int64_t end = weft_now() + timeout;
  while (locked_read(mu, v) != want) {
    if (weft_now() > end)
      return false;
    weft_sleep(MS(1));
  }
  return true;
}

static int wakeups_main(void *arg)
{
  struct wakeups w = {.mu = WEFT_MUTEX_INIT, .cv = WEFT_COND_INIT, .wg = WEFT_WG_INIT};
  (void)arg;
  weft_wg_add(&w.wg, NWAITERS);
  for (int i = 0; i < NWAITERS; i++)
    if (weft_go_named(plain_waiter, &w, "cond-waiter") != 0)
      return -1;
  /* waiting is counted under mu before the ticket is taken and mu released, so once it
   * reads NWAITERS every waiter is in line for a signal. */
  CHECK(wait_value(&w.mu, &w.waiting, NWAITERS, MS(5000)));
  CHECK(wait_dump_count("\"cond-waiter\"", "cond wait", NWAITERS, MS(5000)));
  for (int k = 1; k <= 2; k++) {
    weft_cond_signal(&w.cv);
    CHECK(wait_value(&w.mu, &w.woken, k, MS(5000)));
    weft_sleep(MS(10)); /* a second wake-up, if signal woke more than one, shows now */
    CHECK(locked_read(&w.mu, &w.woken) == k);
  }
  CHECK(wait_dump_count("\"cond-waiter\"", "cond wait", NWAITERS - 2, MS(5000)));
  weft_cond_broadcast(&w.cv);
  weft_wg_wait(&w.wg);
  CHECK(w.woken == NWAITERS);
  /* Nobody waits: signal and broadcast are no-ops, and are not remembered. */
  weft_cond_signal(&w.cv);
  weft_cond_broadcast(&w.cv);
  w.woken = 0;
  weft_wg_add(&w.wg, 1);
  if (weft_go(plain_waiter, &w) != 0)
    return -1;
  CHECK(wait_dump_count(NULL, "cond wait", 1, MS(5000)));
  CHECK(locked_read(&w.mu, &w.woken) == 0);
  weft_cond_signal(&w.cv);
  weft_wg_wait(&w.wg);
  return 0;
}

static void test_signal_one_broadcast_all(void **state)
{
  (void)state;
  checks_reset();
  run_weft_p1to4(wakeups_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- bounded buffer, signal only: a lost wake-up deadlocks (the runtime aborts) ---- */

#define BB_CAP       2
#define BB_PRODUCERS 3
#define BB_CONSUMERS 3
#define BB_PER_PROD  (SANITIZED ? 5000 : 30000)
#define BB_TOTAL     (BB_PRODUCERS * BB_PER_PROD)

struct bbuf {
  weft_mutex mu;
  weft_cond not_empty, not_full;
  int items[BB_CAP];            /* guarded by mu */
  int head, count;              /* guarded by mu */
  int taken;                    /* items consumed so far; guarded by mu */
  unsigned char seen[BB_TOTAL]; /* guarded by mu */
  atomic_int next_producer;
  weft_wg wg;
};

static void bb_producer(void *arg)
{
  struct bbuf *b = arg;
  int p = atomic_fetch_add(&b->next_producer, 1);
  for (int i = 0; i < BB_PER_PROD; i++) {
    weft_mutex_lock(&b->mu);
    while (b->count == BB_CAP)
      weft_cond_wait(&b->not_full, &b->mu);
    b->items[(b->head + b->count++) % BB_CAP] = p * BB_PER_PROD + i;
    weft_cond_signal(&b->not_empty); /* signal inside or outside the lock: both valid */
    weft_mutex_unlock(&b->mu);
  }
  weft_wg_done(&b->wg);
}

static void bb_consumer(void *arg)
{
  struct bbuf *b = arg;
  for (;;) {
    weft_mutex_lock(&b->mu);
    while (b->count == 0 && b->taken < BB_TOTAL)
      weft_cond_wait(&b->not_empty, &b->mu);
    if (b->taken == BB_TOTAL) {
      weft_mutex_unlock(&b->mu);
      break;
    }
    int item = b->items[b->head];
    b->head = (b->head + 1) % BB_CAP;
    b->count--;
    b->seen[item]++;
    if (++b->taken == BB_TOTAL)
      weft_cond_broadcast(&b->not_empty); /* the other consumers: nothing more comes */
    weft_mutex_unlock(&b->mu);
    weft_cond_signal(&b->not_full);
  }
  weft_wg_done(&b->wg);
}

static int bbuf_main(void *arg)
{
  struct bbuf *b = calloc(1, sizeof *b);
  (void)arg;
  if (!b)
    return -1;
  weft_wg_add(&b->wg, BB_PRODUCERS + BB_CONSUMERS);
  for (int i = 0; i < BB_CONSUMERS; i++)
    if (weft_go(bb_consumer, b) != 0)
      return -1;
  for (int i = 0; i < BB_PRODUCERS; i++)
    if (weft_go(bb_producer, b) != 0)
      return -1;
  weft_wg_wait(&b->wg);
  int bad = 0;
  for (int i = 0; i < BB_TOTAL; i++)
    bad += b->seen[i] != 1;
  CHECK(bad == 0);
  CHECK(b->taken == BB_TOTAL && b->count == 0);
  free(b);
  return 0;
}

static void test_no_lost_signal(void **state)
{
  (void)state;
  checks_reset();
  run_weft_p1to4(bbuf_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- wait relocks the mutex ---- */

struct relock {
  weft_mutex mu;
  weft_cond cv;
  int ready;          /* guarded by mu */
  int holding;        /* guarded by mu: the waiter is inside its section */
  atomic_int entered; /* the waiter has entered its section (stays set) */
  weft_wg wg;
};

static void relock_waiter(void *arg)
{
  struct relock *r = arg;
  weft_mutex_lock(&r->mu);
  while (!r->ready)
    weft_cond_wait(&r->cv, &r->mu);
  /* Back from wait: we hold mu again. */
  CHECK(weft_mutex_trylock(&r->mu) == -EBUSY);
  r->holding = 1;
  atomic_store(&r->entered, 1);
  weft_sleep(MS(10)); /* main (usually) tries to lock meanwhile and must wait */
  r->holding = 0;
  weft_mutex_unlock(&r->mu); /* would abort if wait had not relocked */
  weft_wg_done(&r->wg);
}

static int relock_main(void *arg)
{
  struct relock r = {.mu = WEFT_MUTEX_INIT, .cv = WEFT_COND_INIT, .wg = WEFT_WG_INIT};
  (void)arg;
  weft_wg_add(&r.wg, 1);
  if (weft_go_named(relock_waiter, &r, "relock-waiter") != 0)
    return -1;
  CHECK(wait_dump_count("\"relock-waiter\"", "cond wait", 1, MS(5000)));
  weft_mutex_lock(&r.mu);
  r.ready = 1;
  weft_cond_signal(&r.cv);
  weft_mutex_unlock(&r.mu);
  CHECK(wait_flag(&r.entered, 1, MS(5000)));
  weft_mutex_lock(&r.mu); /* only once the waiter has left its section */
  CHECK(r.holding == 0);
  weft_mutex_unlock(&r.mu);
  weft_wg_wait(&r.wg);
  return 0;
}

static void test_wait_relocks(void **state)
{
  (void)state;
  checks_reset();
  run_weft_p1to4(relock_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- signal and broadcast from a thread that is not a coroutine ---- */

static void *thread_signal(void *arg)
{
  weft_cond_signal(arg);
  return NULL;
}

static void *thread_broadcast(void *arg)
{
  weft_cond_broadcast(arg);
  return NULL;
}

/* Run fn(cv) on a new thread and join it. The join blocks this worker meanwhile: main
 * stays running, so deadlock detection never sees everyone parked and needs no
 * weft_external_wakers(). */
static void on_thread(void *(*fn)(void *), weft_cond *cv)
{
  pthread_t th;
  CHECK(pthread_create(&th, NULL, fn, cv) == 0);
  pthread_join(th, NULL);
}

static int foreign_main(void *arg)
{
  struct wakeups w = {.mu = WEFT_MUTEX_INIT, .cv = WEFT_COND_INIT, .wg = WEFT_WG_INIT};
  (void)arg;
  weft_wg_add(&w.wg, 3);
  for (int i = 0; i < 3; i++)
    if (weft_go_named(plain_waiter, &w, "cond-foreign") != 0)
      return -1;
  CHECK(wait_dump_count("\"cond-foreign\"", "cond wait", 3, MS(5000)));
  on_thread(thread_signal, &w.cv);
  CHECK(wait_value(&w.mu, &w.woken, 1, MS(5000)));
  CHECK(wait_dump_count("\"cond-foreign\"", "cond wait", 2, MS(5000)));
  on_thread(thread_broadcast, &w.cv);
  weft_wg_wait(&w.wg);
  CHECK(w.woken == 3);
  return 0;
}

static void test_wake_from_foreign_thread(void **state)
{
  (void)state;
  checks_reset();
  run_weft_p1to4(foreign_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_signal_one_broadcast_all),
      cmocka_unit_test(test_no_lost_signal),
      cmocka_unit_test(test_wait_relocks),
      cmocka_unit_test(test_wake_from_foreign_thread),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
