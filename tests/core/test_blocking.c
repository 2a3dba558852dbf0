/* test_blocking.c: weft_blocking: results, the scheduler keeps running while a call blocks,
 * the pool bound with FIFO-ish order, and the inline path outside a coroutine. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "weft_test.h"

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#else
#define SANITIZED 0
#endif

/* run_weft with a bound on the blocking pool (run_weft itself takes only procs). */
static int run_weft_pool(int procs, int blocking_threads, int (*fn)(void *), void *arg)
{
  weft_config cfg = {.procs = procs,
                     .stack_guard = 1,
                     .leak_check = WEFT_LEAK_REPORT,
                     .blocking_threads = blocking_threads};
  int rc = run_weft_with(&cfg, fn, arg);
  if (weft_leaked() != 0)
    fail_msg("%ld coroutine(s) leaked (still alive when main returned)", weft_leaked());
  return rc;
}

/* ---- the result comes back; fn runs on a pool thread, outside any coroutine ---- */

struct where {
  pthread_t thread;
  int in_coroutine;
  long value;
};

static long record_where(void *arg)
{
  struct where *w = arg;
  w->thread = pthread_self();
  w->in_coroutine = weft_in_coroutine();
  return w->value;
}

static long negated(void *arg)
{
  return -(long)(intptr_t)arg;
}

static int result_main(void *arg)
{
  (void)arg;
  const long values[] = {0, 1, -1, 42, -ETIMEDOUT, (long)1 << 40, -((long)1 << 40)};
  for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
    pthread_t before = pthread_self();
    struct where w = {.value = values[i], .in_coroutine = -1};
    if (weft_blocking(record_where, &w) != values[i])
      return 1;
    if (w.in_coroutine != 0 || pthread_equal(w.thread, before))
      return 2; /* must run on a pool thread, not the scheduler thread that called */
  }
  if (weft_blocking(negated, (void *)(intptr_t)7) != -7)
    return 3;
  if (weft_blocking(NULL, NULL) != -EINVAL)
    return 4;
  return 0;
}

static void test_returns_result(void **state)
{
  (void)state;
  run_weft_p1to4(result_main, NULL);
}

/* ---- P = 1: other coroutines run while a call blocks ---- */

struct progress {
  atomic_long ticks;     /* bumped by a yielding coroutine */
  atomic_long sleeps;    /* bumped by a sleeping coroutine */
  atomic_long at_start;  /* ticks when the blocking call began */
  atomic_long at_end;    /* ticks when it ended */
  atomic_long sl_start;  /* sleeps when the blocking call began */
  atomic_long sl_end;    /* sleeps when it ended */
  atomic_long result;    /* what weft_blocking returned */
  atomic_bool call_done; /* set by the caller once weft_blocking returned */
  weft_wg wg;
};

static long slow_call(void *arg)
{
  struct progress *p = arg;
  atomic_store(&p->at_start, atomic_load(&p->ticks));
  atomic_store(&p->sl_start, atomic_load(&p->sleeps));
  usleep(50000);
  atomic_store(&p->at_end, atomic_load(&p->ticks));
  atomic_store(&p->sl_end, atomic_load(&p->sleeps));
  return 7;
}

static void blocker(void *arg)
{
  struct progress *p = arg;
  atomic_store(&p->result, weft_blocking(slow_call, p));
  atomic_store(&p->call_done, true);
  weft_wg_done(&p->wg);
}

static void spinner(void *arg)
{
  struct progress *p = arg;
  int64_t give_up = weft_now() + MS(5000);
  while (!atomic_load(&p->call_done) && weft_now() < give_up) {
    atomic_fetch_add(&p->ticks, 1);
    weft_yield();
  }
  weft_wg_done(&p->wg);
}

static void napper(void *arg)
{
  struct progress *p = arg;
  int64_t give_up = weft_now() + MS(5000);
  while (!atomic_load(&p->call_done) && weft_now() < give_up) {
    weft_sleep(MS(1));
    atomic_fetch_add(&p->sleeps, 1);
  }
  weft_wg_done(&p->wg);
}

static int progress_main(void *arg)
{
  struct progress *p = arg;
  weft_wg_add(&p->wg, 3);
  weft_go(blocker, p);
  weft_go(spinner, p);
  weft_go(napper, p);
  weft_wg_wait(&p->wg);
  return 0;
}

static void test_others_run_while_blocked(void **state)
{
  (void)state;
  struct progress p = {0};
  assert_int_equal(run_weft(1, progress_main, &p), 0);
  assert_true(atomic_load(&p.call_done));
  assert_int_equal(atomic_load(&p.result), 7);
  long ticks = atomic_load(&p.at_end) - atomic_load(&p.at_start);
  long sleeps = atomic_load(&p.sl_end) - atomic_load(&p.sl_start);
  fprintf(stderr, "during a 50 ms blocking call: %ld yields, %ld 1 ms sleeps\n", ticks, sleeps);
  assert_true(ticks > 0);  /* the only scheduler thread kept running coroutines */
  assert_true(sleeps > 0); /* and timers kept firing */
}

/* The main coroutine itself blocks while nothing else runs: not a deadlock (the pool is a
 * wake source). */
static long sleep_20ms(void *arg)
{
  (void)arg;
  usleep(20000);
  return 5;
}

static int lonely_main(void *arg)
{
  (void)arg;
  return weft_blocking(sleep_20ms, NULL) == 5 ? 0 : 1;
}

static void test_main_alone_blocks(void **state)
{
  (void)state;
  run_weft_p1to4(lonely_main, NULL);
}

/* ---- the pool bound and FIFO order ---- */

#define FIFO_N     12
#define POOL_BOUND 2

struct fifo {
  atomic_int inflight, max_inflight;
  atomic_int next_start;
  int enq_pos[FIFO_N];   /* order in which the callers queued (P = 1: their run order) */
  int start_pos[FIFO_N]; /* order in which the calls began on a pool thread */
  int next_enq;
  struct fifo_job {
    struct fifo *f;
    int i;
  } jobs[FIFO_N];
  weft_wg wg;
};

static long fifo_call(void *arg)
{
  struct fifo_job *j = arg;
  struct fifo *f = j->f;
  f->start_pos[j->i] = atomic_fetch_add(&f->next_start, 1);
  int now = atomic_fetch_add(&f->inflight, 1) + 1;
  int max = atomic_load(&f->max_inflight);
  while (now > max && !atomic_compare_exchange_weak(&f->max_inflight, &max, now)) {
  }
  usleep(10000);
  atomic_fetch_sub(&f->inflight, 1);
  return 1000 + j->i;
}

static void fifo_caller(void *arg)
{
  struct fifo_job *j = arg;
  j->f->enq_pos[j->i] = j->f->next_enq++; /* P = 1: no other coroutine runs meanwhile */
  if (weft_blocking(fifo_call, j) != 1000 + j->i)
    j->f->enq_pos[j->i] = -1000;
  weft_wg_done(&j->f->wg);
}

static int fifo_main(void *arg)
{
  struct fifo *f = arg;
  weft_wg_add(&f->wg, FIFO_N);
  for (int i = 0; i < FIFO_N; i++) {
    f->jobs[i] = (struct fifo_job){f, i};
    weft_go(fifo_caller, &f->jobs[i]);
  }
  weft_wg_wait(&f->wg);
  return 0;
}

static void test_pool_bound_and_fifo(void **state)
{
  (void)state;
  struct fifo *f = calloc(1, sizeof *f);
  assert_non_null(f);
  assert_int_equal(run_weft_pool(1, POOL_BOUND, fifo_main, f), 0);
  fprintf(stderr, "pool bound %d: at most %d calls ran at once; start order:", POOL_BOUND,
          atomic_load(&f->max_inflight));
  for (int i = 0; i < FIFO_N; i++)
    fprintf(stderr, " %d", f->start_pos[i]);
  fprintf(stderr, "\n");
  assert_true(atomic_load(&f->max_inflight) >= 1);
  assert_true(atomic_load(&f->max_inflight) <= POOL_BOUND);
  assert_int_equal(atomic_load(&f->next_start), FIFO_N);
  for (int i = 0; i < FIFO_N; i++) {
    assert_true(f->enq_pos[i] >= 0); /* and its result came back */
    /* FIFO up to the threads racing to record their start */
    int drift = f->start_pos[i] - f->enq_pos[i];
    if (drift < -POOL_BOUND || drift > POOL_BOUND)
      fail_msg("call queued %d-th began %d-th", f->enq_pos[i], f->start_pos[i]);
  }
  free(f);
}

/* Many calls far beyond the bound, from many coroutines on P = 1..4: all complete with
 * their own result, never more than the bound at once. */
struct flood {
  int n;
  atomic_int inflight, max_inflight, ok;
  weft_wg wg;
};

struct flood_arg {
  struct flood *fl;
  int i;
};

static long flood_counted(void *arg)
{
  struct flood_arg *a = arg;
  int now = atomic_fetch_add(&a->fl->inflight, 1) + 1;
  int max = atomic_load(&a->fl->max_inflight);
  while (now > max && !atomic_compare_exchange_weak(&a->fl->max_inflight, &max, now)) {
  }
  usleep(200);
  atomic_fetch_sub(&a->fl->inflight, 1);
  return a->i * 3;
}

static void flood_caller(void *arg)
{
  struct flood_arg *a = arg;
  if (weft_blocking(flood_counted, a) == a->i * 3)
    atomic_fetch_add(&a->fl->ok, 1);
  weft_wg_done(&a->fl->wg);
}

static int flood_main(void *arg)
{
  struct flood *fl = arg;
  struct flood_arg *args = calloc((size_t)fl->n, sizeof *args);
  if (!args)
    return -1;
  atomic_store(&fl->ok, 0);
  atomic_store(&fl->max_inflight, 0);
  weft_wg_add(&fl->wg, fl->n);
  for (int i = 0; i < fl->n; i++) {
    args[i] = (struct flood_arg){fl, i};
    weft_go(flood_caller, &args[i]);
  }
  weft_wg_wait(&fl->wg);
  free(args);
  if (atomic_load(&fl->max_inflight) > POOL_BOUND)
    return 2;
  return atomic_load(&fl->ok) == fl->n ? 0 : 1;
}

static void test_many_calls_beyond_bound(void **state)
{
  (void)state;
  struct flood fl = {.n = SANITIZED ? 200 : 1000};
  for (int p = 1; p <= 4; p++) {
    int rc = run_weft_pool(p, POOL_BOUND, flood_main, &fl);
    if (rc != 0)
      fail_msg("P=%d: rc %d, %d of %d calls returned their result, max in flight %d", p, rc,
               atomic_load(&fl.ok), fl.n, atomic_load(&fl.max_inflight));
  }
}

/* ---- outside a coroutine: runs inline on the caller's thread ---- */

static void test_inline_outside_coroutine(void **state)
{
  (void)state;
  struct where w = {.value = 99, .in_coroutine = -1};
  assert_int_equal(weft_blocking(record_where, &w), 99);
  assert_true(pthread_equal(w.thread, pthread_self()));
  assert_int_equal(w.in_coroutine, 0);
  assert_int_equal(weft_blocking(NULL, NULL), -EINVAL);
}

/* A plain thread calls it while the runtime runs: still inline. */
static void *plain_thread(void *arg)
{
  struct where *w = arg;
  long r = weft_blocking(record_where, w);
  return (void *)(intptr_t)(r == w->value && pthread_equal(w->thread, pthread_self()));
}

static long join_thread(void *arg)
{
  void *ret = NULL;
  pthread_join(*(pthread_t *)arg, &ret);
  return (long)(intptr_t)ret;
}

static int plain_thread_main(void *arg)
{
  (void)arg;
  struct where w = {.value = 123, .in_coroutine = -1};
  pthread_t th;
  if (pthread_create(&th, NULL, plain_thread, &w) != 0)
    return -1;
  return weft_blocking(join_thread, &th) == 1 ? 0 : 1;
}

static void test_inline_on_plain_thread(void **state)
{
  (void)state;
  assert_int_equal(run_weft(2, plain_thread_main, NULL), 0);
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_returns_result),
      cmocka_unit_test(test_others_run_while_blocked),
      cmocka_unit_test(test_main_alone_blocks),
      cmocka_unit_test(test_pool_bound_and_fifo),
      cmocka_unit_test(test_many_calls_beyond_bound),
      cmocka_unit_test(test_inline_outside_coroutine),
      cmocka_unit_test(test_inline_on_plain_thread),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
