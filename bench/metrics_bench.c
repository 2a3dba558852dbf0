/* metrics_bench.c (weft-metrics-bench): the cost of a metric update from 1, 2 and 4
 * threads at once, weft's striped counters and histograms against the same operation on
 * one shared atomic word (what an unstriped implementation such as Go's client does).
 *
 * Usage: weft-metrics-bench [ops per thread, default 20000000]
 * Prints one line per case, the best of three runs: ns per operation as seen by each
 * thread (wall time / ops per thread) and the total rate. Threads are plain pthreads, thread i
 * pinned to the i-th CPU of the process's affinity mask (modulo their number, so 4 threads on 2
 * CPUs share them) so that the comparison does not depend on the kernel's placement. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "weft/metrics.h"

static long ops = 20000000;

/* The baselines: one word shared by every thread, as an unstriped metric keeps it. */
static _Alignas(64) _Atomic uint64_t shared_count;
static _Alignas(64) struct {
  _Atomic uint64_t sum_bits;
  _Atomic uint64_t buckets[12];
} shared_hist;

static weft_counter *counter;
static weft_histogram *hist;
static weft_gauge *gauge;

static const double bounds[] = {.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10};

static void shared_observe(double v)
{
  int i = 0;
  while (i < 11 && !(v <= bounds[i]))
    i++;
  atomic_fetch_add_explicit(&shared_hist.buckets[i], 1, memory_order_relaxed);
  uint64_t old = atomic_load_explicit(&shared_hist.sum_bits, memory_order_relaxed), next;
  do {
    double d;
    memcpy(&d, &old, sizeof d);
    d += v;
    memcpy(&next, &d, sizeof next);
  } while (!atomic_compare_exchange_weak_explicit(&shared_hist.sum_bits, &old, next,
                                                  memory_order_relaxed, memory_order_relaxed));
}

enum op { COUNTER_INC, SHARED_INC, HIST_OBSERVE, SHARED_OBSERVE, GAUGE_ADD };

static const char *op_name[] = {"counter inc (striped)", "shared atomic add",
                                "histogram observe (striped)", "shared histogram observe",
                                "gauge add (one word)"};

/* The CPUs this process may run on (taskset), in order: thread i runs on the i-th. */
static int allowed[CPU_SETSIZE], nallowed;

static void find_cpus(void)
{
  cpu_set_t set;
  sched_getaffinity(0, sizeof set, &set);
  for (int c = 0; c < CPU_SETSIZE; c++)
    if (CPU_ISSET(c, &set))
      allowed[nallowed++] = c;
}

struct run {
  enum op op;
  int id;
  pthread_barrier_t *start;
};

static void *worker(void *arg)
{
  struct run *r = arg;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(allowed[r->id % nallowed], &set);
  pthread_setaffinity_np(pthread_self(), sizeof set, &set);
  pthread_barrier_wait(r->start);
  double v = 0.003 * (r->id + 1); /* observations spread over the low buckets */
  switch (r->op) {
  case COUNTER_INC:
    for (long i = 0; i < ops; i++)
      weft_counter_inc(counter);
    break;
  case SHARED_INC:
    for (long i = 0; i < ops; i++)
      atomic_fetch_add_explicit(&shared_count, 1, memory_order_relaxed);
    break;
  case HIST_OBSERVE:
    for (long i = 0; i < ops; i++)
      weft_histogram_observe(hist, v * (double)(i & 15));
    break;
  case SHARED_OBSERVE:
    for (long i = 0; i < ops; i++)
      shared_observe(v * (double)(i & 15));
    break;
  case GAUGE_ADD:
    for (long i = 0; i < ops; i++)
      weft_gauge_add(gauge, 1);
    break;
  }
  return NULL;
}

static double now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* run_once: the wall time of threads threads doing ops operations each. */
static double run_once(enum op op, int threads)
{
  pthread_t th[8];
  struct run runs[8];
  pthread_barrier_t start;
  pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
  for (int i = 0; i < threads; i++) {
    runs[i] = (struct run){op, i, &start};
    pthread_create(&th[i], NULL, worker, &runs[i]);
  }
  pthread_barrier_wait(&start);
  double t0 = now_ns();
  for (int i = 0; i < threads; i++)
    pthread_join(th[i], NULL);
  double dt = now_ns() - t0;
  pthread_barrier_destroy(&start);
  return dt;
}

enum { REPEAT = 3 }; /* best of: other load on the machine only ever slows a run down */

static void measure(enum op op, int threads)
{
  double best = 0;
  for (int r = 0; r < REPEAT; r++) {
    double dt = run_once(op, threads);
    if (r == 0 || dt < best)
      best = dt;
  }
  printf("%-30s threads=%d  %7.2f ns/op per thread  %8.1f Mops/s total\n", op_name[op], threads,
         best / (double)ops, (double)ops * threads / best * 1e3);
}

int main(int argc, char **argv)
{
  if (argc > 1)
    ops = atol(argv[1]);
  weft_metrics_registry *reg = weft_metrics_registry_new();
  if (!reg || weft_counter_new(reg, "bench_total", "b", &counter) ||
      weft_histogram_new(reg, "bench_seconds", "b", 0, NULL, &hist) ||
      weft_gauge_new(reg, "bench_gauge", "b", &gauge)) {
    fprintf(stderr, "setup failed\n");
    return 1;
  }
  find_cpus();
  printf("# %ld ops per thread, %d CPUs to run on\n", ops, nallowed);
  enum op order[] = {COUNTER_INC, SHARED_INC, HIST_OBSERVE, SHARED_OBSERVE, GAUGE_ADD};
  for (size_t k = 0; k < sizeof order / sizeof order[0]; k++)
    for (int t = 1; t <= 4; t *= 2)
      measure(order[k], t);
  /* The totals are exact: every update was counted. */
  double want = (double)ops * (1 + 2 + 4) * REPEAT;
  if (weft_counter_value(counter) != want || weft_histogram_count(hist) != (uint64_t)want) {
    fprintf(stderr, "lost updates: %.0f %llu want %.0f\n", weft_counter_value(counter),
            (unsigned long long)weft_histogram_count(hist), want);
    return 1;
  }
  weft_metrics_registry_free(reg);
  return 0;
}
