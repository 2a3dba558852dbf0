/* test_pool_overload.c: the worker pool at 50x overload, on P = 1..4, with a printed seed
 * (replay with WEFT_TEST_SEED=...).
 *
 * A pool of W workers and a queue of Q runs jobs that sleep about a millisecond, so it
 * completes about W * 1000 jobs a second. Producers offer 50 times that with
 * weft_pool_try_submit for a bounded time, pacing themselves on the clock. Asserted:
 * - try_submit never waits: its slowest call (accepted or rejected) stays far below a
 *   job's duration, and rejections (-EAGAIN) happen (most offers are rejected);
 * - resident memory is flat: VmRSS, sampled every 100 ms, grows by less than a small
 *   bound after a warm-up (a refusal allocates nothing, the queue is bounded);
 * - the queue never holds more than Q jobs;
 * - every offer is accounted for: accepted + rejected == offered, and each accepted job
 *   ran exactly once (a per-job counter), each rejected one never;
 * - then a shutdown with a generous deadline drains everything: nothing abandoned. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coro_check.h"
#include "weft/pool.h"
#include "weft_test.h"

enum {
  WORKERS = 4,
  QUEUE = 64,
  PRODUCERS = 4,
  OVERLOAD = 50,
  JOB_US = 1000,
};

#define MAX_JOBS (1L << 21)

struct overload {
  weft_pool *pool;
  int64_t run_ns; /* how long producers offer */
  int64_t start;
  atomic_int *runs;       /* per job id: times run */
  atomic_uchar *accepted; /* per job id: 1 if try_submit accepted it */
  atomic_long next_id;    /* job ids handed out: offers */
  atomic_long n_accepted, n_rejected;
  atomic_llong max_submit_ns; /* slowest try_submit */
  atomic_long slow_submits;   /* try_submit calls that took over a job's time */
  atomic_int stop_sampler;
  long rss_base_kb, rss_max_kb; /* after warm-up */
  size_t max_depth;
  uint64_t seed;
  weft_wg producers, sampler;
};

static struct overload O;

static long rss_kb(void)
{
  FILE *f = fopen("/proc/self/statm", "r");
  long size = 0, resident = 0;
  if (f) {
    if (fscanf(f, "%ld %ld", &size, &resident) != 2)
      resident = 0;
    fclose(f);
  }
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static long job(weft_ctx *ctx, void *arg)
{
  long id = (long)(intptr_t)arg;
  atomic_fetch_add_explicit(&O.runs[id], 1, memory_order_relaxed);
  /* about JOB_US: 0.75 .. 1.25 of it, from the id and the seed */
  int64_t us = JOB_US * 3 / 4 + (int64_t)((id * 2654435761u + O.seed) % (JOB_US / 2));
  return weft_sleep_ctx(ctx, us * 1000) == 0 ? id : -ECANCELED;
}

static void note_max(atomic_llong *m, long long v)
{
  long long cur = atomic_load_explicit(m, memory_order_relaxed);
  while (v > cur && !atomic_compare_exchange_weak(m, &cur, v)) {
  }
}

/* Offer rate/PRODUCERS jobs a second until run_ns has passed, in bursts every ~1 ms. */
static void producer(void *arg)
{
  (void)arg;
  double per_ns = (double)OVERLOAD * WORKERS * (1e9 / (JOB_US * 1000.0)) / PRODUCERS / 1e9;
  long offered = 0;
  for (;;) {
    int64_t elapsed = weft_now() - O.start;
    if (elapsed >= O.run_ns)
      break;
    long target = (long)(per_ns * (double)elapsed);
    while (offered < target) {
      long id = atomic_fetch_add(&O.next_id, 1);
      if (id >= MAX_JOBS) {
        CHECK(!"job ids exhausted");
        atomic_fetch_sub(&O.next_id, 1);
        goto out;
      }
      int64_t t0 = weft_now();
      int rc = weft_pool_try_submit(O.pool, job, (void *)(intptr_t)id, NULL);
      int64_t took = weft_now() - t0;
      note_max(&O.max_submit_ns, took);
      if (took > JOB_US * 1000)
        atomic_fetch_add(&O.slow_submits, 1);
      CHECK(rc == 0 || rc == -EAGAIN);
      if (rc == 0)
        atomic_store_explicit(&O.accepted[id], 1, memory_order_relaxed);
      atomic_fetch_add(rc == 0 ? &O.n_accepted : &O.n_rejected, 1);
      offered++;
    }
    weft_sleep(MS(1));
  }
out:
  weft_wg_done(&O.producers);
}

/* Every 100 ms: RSS and queue depth; the first 500 ms are warm-up. */
static void sampler(void *arg)
{
  (void)arg;
  int64_t warm = O.start + MS(500);
  while (!atomic_load(&O.stop_sampler)) {
    weft_pool_stats s;
    weft_pool_stats_read(O.pool, &s);
    if (s.queue_depth > O.max_depth)
      O.max_depth = s.queue_depth;
    long kb = rss_kb();
    if (weft_now() >= warm) {
      if (!O.rss_base_kb)
        O.rss_base_kb = kb;
      if (kb > O.rss_max_kb)
        O.rss_max_kb = kb;
    }
    weft_sleep(MS(100));
  }
  weft_wg_done(&O.sampler);
}

static int overload_main(void *arg)
{
  (void)arg;
  memset(O.runs, 0, MAX_JOBS * sizeof *O.runs); /* touched now: not counted as growth */
  memset(O.accepted, 0, MAX_JOBS);
  atomic_store(&O.next_id, 0);
  atomic_store(&O.n_accepted, 0);
  atomic_store(&O.n_rejected, 0);
  atomic_store(&O.max_submit_ns, 0);
  atomic_store(&O.slow_submits, 0);
  atomic_store(&O.stop_sampler, 0);
  O.rss_base_kb = O.rss_max_kb = 0;
  O.max_depth = 0;
  CHECK_EQ(
      weft_pool_new(
          &(weft_pool_options){.workers = WORKERS, .queue_capacity = QUEUE, .name = "overload"},
          &O.pool),
      0);
  weft_wg_init(&O.producers);
  weft_wg_init(&O.sampler);
  O.start = weft_now();
  weft_wg_add(&O.sampler, 1);
  weft_go(sampler, NULL);
  weft_wg_add(&O.producers, PRODUCERS);
  for (int i = 0; i < PRODUCERS; i++)
    weft_go(producer, NULL);
  weft_wg_wait(&O.producers);
  int64_t offered_s = weft_now() - O.start;
  weft_pool_stats before;
  weft_pool_stats_read(O.pool, &before);
  long abandoned = weft_pool_shutdown(O.pool, weft_now() + (int64_t)10 * 1000000000);
  atomic_store(&O.stop_sampler, 1);
  weft_wg_wait(&O.sampler);
  CHECK_EQ(abandoned, 0);

  long offered = atomic_load(&O.next_id), acc = atomic_load(&O.n_accepted),
       rej = atomic_load(&O.n_rejected), wrong = 0;
  CHECK_EQ(acc + rej, offered);
  for (long id = 0; id < offered; id++) {
    int runs = atomic_load_explicit(&O.runs[id], memory_order_relaxed);
    if (runs != (int)atomic_load_explicit(&O.accepted[id], memory_order_relaxed))
      wrong++;
  }
  CHECK_EQ(wrong, 0);
  weft_pool_stats s;
  weft_pool_stats_read(O.pool, &s);
  CHECK_EQ(s.submitted, acc);
  CHECK_EQ(s.completed, acc);
  CHECK_EQ(s.rejected, rej);
  CHECK_EQ(s.failed + s.cancelled, 0);
  CHECK(O.max_depth <= QUEUE);
  CHECK(rej > acc); /* overload is shed, not queued */
  /* Waiting for room would take about a job's time (1 ms / W per slot) on most
   * rejected calls; preemption by the OS may make a rare call slow. */
  CHECK(atomic_load(&O.slow_submits) * 1000 < offered);
  CHECK(O.max_submit_ns < (SANITIZED ? MS(250) : MS(100)));
  long growth = O.rss_max_kb - O.rss_base_kb;
  CHECK(growth < (SANITIZED ? 16 * 1024 : 4 * 1024));
  double secs = (double)offered_s / 1e9;
  printf("P=%d: %.2f s, offered %ld (%.0f/s), accepted %ld (%.0f/s: %.1fx overload), "
         "rejected %ld, slowest try_submit %.3f ms (%ld over 1 ms), max depth %zu/%d, RSS %ld "
         "KiB -> "
         "max %ld KiB (+%ld KiB), completed %lu\n",
         weft_procs(), secs, offered, offered / secs, acc, acc / secs, (double)offered / acc,
         rej, atomic_load(&O.max_submit_ns) / 1e6, atomic_load(&O.slow_submits), O.max_depth,
         QUEUE, O.rss_base_kb, O.rss_max_kb, growth, (unsigned long)before.completed);
  weft_pool_free(O.pool);
  O.pool = NULL;
  return 0;
}

static void test_overload(void **state)
{
  (void)state;
  O.seed = test_seed();
  O.runs = calloc(MAX_JOBS, sizeof *O.runs);
  O.accepted = calloc(MAX_JOBS, 1);
  assert_non_null(O.runs);
  assert_non_null(O.accepted);
  for (int p = 1; p <= 4; p++) {
    O.run_ns = p == 1 ? MS(3000) : MS(1200); /* the longest run at P = 1, shorter after */
    checks_reset();
    assert_int_equal(run_weft(p, overload_main, NULL), 0);
    ASSERT_NO_CHECK_FAILED();
  }
  free(O.runs);
  free(O.accepted);
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_overload),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
