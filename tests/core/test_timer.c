/* test_timer.c: weft_sleep and weft_sleep_until (never early, deadline order, yields for
 * ns <= 0, many sleepers on P = 1..4, outside a coroutine), and the timer heap itself
 * (src/core/timer.h): ordering, stop before fire, stop racing the callback. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/timer.h"
#include "weft_test.h"

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#else
#define SANITIZED 0
#endif

#define LATE_BOUND MS(2000) /* "woke within 2 s": generous for a loaded 2-core VM */

/* ---- weft_sleep never wakes early ---- */

struct early_check {
  int n;
  uint64_t seed;
  atomic_int early, late, wakes;
  weft_wg wg;
};

static void check_wake(struct early_check *ec, int64_t deadline)
{
  int64_t now = weft_now();
  if (now < deadline)
    atomic_fetch_add(&ec->early, 1);
  else if (now - deadline > LATE_BOUND)
    atomic_fetch_add(&ec->late, 1);
  atomic_fetch_add(&ec->wakes, 1);
}

static void early_sleeper(void *arg)
{
  struct early_check *ec = arg;
  uint64_t rng = ec->seed ^ (weft_self_id() * 0x9E3779B97F4A7C15ull);
  for (int i = 0; i < 6; i++) {
    int64_t d = (int64_t)(test_rand(&rng) % 3000000); /* 0..3 ms */
    int64_t start = weft_now();
    if (i % 2) {
      weft_sleep(d);
      check_wake(ec, start + d);
    } else {
      weft_sleep_until(start + d);
      check_wake(ec, start + d);
    }
  }
  weft_wg_done(&ec->wg);
}

static int never_early_main(void *arg)
{
  struct early_check *ec = arg;
  atomic_store(&ec->early, 0);
  atomic_store(&ec->late, 0);
  atomic_store(&ec->wakes, 0);
  weft_wg_add(&ec->wg, ec->n);
  for (int i = 0; i < ec->n; i++)
    if (weft_go(early_sleeper, ec) != 0)
      return -1;
  /* main sleeps too, on a deadline of its own */
  int64_t d = weft_now() + MS(4);
  weft_sleep_until(d);
  check_wake(ec, d);
  weft_wg_wait(&ec->wg);
  if (atomic_load(&ec->early) || atomic_load(&ec->late))
    return 1;
  return atomic_load(&ec->wakes) == ec->n * 6 + 1 ? 0 : 2;
}

static void test_sleep_never_early(void **state)
{
  (void)state;
  struct early_check ec = {.n = SANITIZED ? 60 : 300, .seed = test_seed()};
  for (int p = 1; p <= 4; p++) {
    int rc = run_weft(p, never_early_main, &ec);
    if (rc != 0)
      fail_msg("P=%d: rc %d, %d early, %d late (>2 s), %d wakes", p, rc, atomic_load(&ec.early),
               atomic_load(&ec.late), atomic_load(&ec.wakes));
  }
}

/* ---- sleepers wake in deadline order (P = 1) ---- */

#define ORDER_N   30
#define ORDER_GAP MS(2)

struct order_sleeper {
  struct order_run *run;
  int rank; /* deadline = base + rank * ORDER_GAP */
};

struct order_run {
  int64_t base;
  struct order_sleeper sleepers[ORDER_N];
  int log_rank[ORDER_N]; /* ranks in the order the sleepers ran after waking */
  int64_t log_time[ORDER_N];
  int len; /* P = 1: only one coroutine runs at a time */
  weft_wg wg;
};

static void order_sleeper(void *arg)
{
  struct order_sleeper *s = arg;
  struct order_run *r = s->run;
  weft_sleep_until(r->base + s->rank * ORDER_GAP);
  r->log_time[r->len] = weft_now();
  r->log_rank[r->len++] = s->rank;
  weft_wg_done(&r->wg);
}

static int order_main(void *arg)
{
  struct order_run *r = arg;
  uint64_t rng = test_seed();
  int perm[ORDER_N];
  for (int i = 0; i < ORDER_N; i++)
    perm[i] = i;
  for (int i = ORDER_N - 1; i > 0; i--) { /* spawn in a random order */
    int j = (int)(test_rand(&rng) % (uint64_t)(i + 1)), t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  r->base = weft_now() + MS(20);
  weft_wg_add(&r->wg, ORDER_N);
  for (int i = 0; i < ORDER_N; i++) {
    r->sleepers[i] = (struct order_sleeper){.run = r, .rank = perm[i]};
    if (weft_go(order_sleeper, &r->sleepers[i]) != 0)
      return -1;
  }
  weft_wg_wait(&r->wg);
  return 0;
}

/* Each sleeper must run after every earlier deadline has passed, and no sleeper may run
 * ahead of one with an earlier deadline unless that one was already due (two timers that
 * expire in the same scheduler pass are readied together; their relative order is the
 * scheduler's choice, see the report on runnext). */
static void test_sleepers_wake_in_deadline_order(void **state)
{
  (void)state;
  struct order_run *r = calloc(1, sizeof *r);
  assert_non_null(r);
  assert_int_equal(run_weft(1, order_main, r), 0);
  assert_int_equal(r->len, ORDER_N);
  int inversions = 0;
  for (int p = 0; p < ORDER_N; p++) {
    int64_t due = r->base + r->log_rank[p] * ORDER_GAP;
    assert_true(r->log_time[p] >= due);
    for (int q = p + 1; q < ORDER_N; q++) {
      if (r->log_rank[q] > r->log_rank[p])
        continue;
      inversions++;
      /* q has the earlier deadline but ran later: it must have been due when p ran */
      int64_t q_due = r->base + r->log_rank[q] * ORDER_GAP;
      if (r->log_time[p] < q_due)
        fail_msg("rank %d ran at +%lld ns, before rank %d was due (+%lld ns)", r->log_rank[p],
                 (long long)(r->log_time[p] - r->base), r->log_rank[q],
                 (long long)(q_due - r->base));
    }
  }
  if (inversions)
    fprintf(stderr, "deadline order: %d inversion(s) among timers due together\n", inversions);
  free(r);
}

/* ---- sleep(0), negative and past deadlines yield ---- */

struct yield_log {
  char buf[32];
  int len;
  weft_wg wg;
};

static void zero_sleeper(void *arg)
{
  struct yield_log *log = arg;
  char me = weft_self_name()[0];
  log->buf[log->len++] = me;
  weft_sleep(0);
  log->buf[log->len++] = me;
  weft_sleep(-MS(5));
  log->buf[log->len++] = me;
  weft_sleep_until(weft_now() - MS(1));
  log->buf[log->len++] = me;
  weft_sleep_until(0);
  log->buf[log->len++] = me;
  weft_wg_done(&log->wg);
}

static int zero_sleep_main(void *arg)
{
  struct yield_log *log = arg;
  int64_t t0 = weft_now();
  weft_sleep(0); /* nothing else runnable: returns at once */
  weft_sleep(INT64_MIN);
  weft_sleep_until(INT64_MIN);
  if (weft_now() - t0 > LATE_BOUND)
    return 1;
  weft_wg_add(&log->wg, 2);
  weft_go_named(zero_sleeper, log, "a");
  weft_go_named(zero_sleeper, log, "b");
  weft_wg_wait(&log->wg);
  return 0;
}

static void test_sleep_nonpositive_yields(void **state)
{
  (void)state;
  struct yield_log log = {0};
  assert_int_equal(run_weft(1, zero_sleep_main, &log), 0);
  assert_string_equal(log.buf, "ababababab");
}

/* ---- many sleepers on P = 1..4 all wake ---- */

struct crowd {
  int n, rounds;
  uint64_t seed;
  atomic_long wakes;
  weft_wg wg;
};

static void crowd_sleeper(void *arg)
{
  struct crowd *c = arg;
  uint64_t rng = c->seed ^ (weft_self_id() * 0xD1B54A32D192ED03ull);
  for (int i = 0; i < c->rounds; i++) {
    weft_sleep((int64_t)(test_rand(&rng) % 5000000)); /* 0..5 ms */
    atomic_fetch_add(&c->wakes, 1);
  }
  weft_wg_done(&c->wg);
}

static int crowd_main(void *arg)
{
  struct crowd *c = arg;
  atomic_store(&c->wakes, 0);
  weft_wg_add(&c->wg, c->n);
  for (int i = 0; i < c->n; i++)
    if (weft_go(crowd_sleeper, c) != 0)
      return -1;
  weft_wg_wait(&c->wg);
  return atomic_load(&c->wakes) == (long)c->n * c->rounds ? 0 : 1;
}

static void test_many_sleepers_all_wake(void **state)
{
  (void)state;
  struct crowd c = {.n = SANITIZED ? 300 : 3000, .rounds = 3, .seed = test_seed()};
  run_weft_p1to4(crowd_main, &c);
}

/* ---- outside a coroutine: a plain nanosleep ---- */

static void test_sleep_outside_coroutine(void **state)
{
  (void)state;
  int64_t t0 = weft_now();
  weft_sleep(MS(5));
  int64_t t1 = weft_now();
  assert_true(t1 - t0 >= MS(5));
  weft_sleep_until(t1 + MS(3));
  assert_true(weft_now() >= t1 + MS(3));
  weft_sleep(0);
  weft_sleep(-1);
}

/* ---- the timer heap (internal) ---- */

struct fire_log {
  int64_t now; /* the time run_expired was called with */
  int n;
  int64_t when[1024];
  int fired_twice;
  int early;
  int not_firing; /* callbacks that saw a state other than FIRING */
};

static struct fire_log *cur_log;

static void log_fire(struct timer *t)
{
  struct fire_log *log = cur_log;
  int *count = t->arg;
  if (atomic_load(&t->state) != TIMER_FIRING)
    log->not_firing++; /* the state machine says FIRING while the callback runs */
  if ((*count)++)
    log->fired_twice++;
  if (t->when > log->now)
    log->early++;
  log->when[log->n++] = t->when;
}

static int64_t brute_min(struct timer *ts, const int *counts, const bool *stopped, int n)
{
  int64_t min = INT64_MAX;
  for (int i = 0; i < n; i++)
    if (!stopped[i] && !counts[i] && ts[i].when < min)
      min = ts[i].when;
  return min;
}

static void test_heap_fires_in_order(void **state)
{
  (void)state;
  enum { N = 600, HORIZON = 10000 };
  struct timer_heap h;
  struct timer *ts = calloc(N, sizeof *ts);
  int *counts = calloc(N, sizeof *counts);
  bool *stopped = calloc(N, sizeof *stopped);
  struct fire_log *log = calloc(1, sizeof *log);
  assert_true(ts && counts && stopped && log);
  uint64_t rng = test_seed();
  long base_pending = weft__timer_pending_count();
  weft__timer_heap_init(&h);
  cur_log = log;
  for (int i = 0; i < N; i++) {
    ts[i].fn = log_fire;
    ts[i].arg = &counts[i];
    assert_int_equal(weft__timer_arm(&h, &ts[i], (int64_t)(test_rand(&rng) % HORIZON)), 0);
  }
  assert_int_equal(weft__timer_pending_count(), base_pending + N);
  int nstopped = 0;
  for (int i = 0; i < N; i += 3) {
    assert_true(weft__timer_stop(&ts[i]));
    assert_false(weft__timer_stop(&ts[i])); /* already idle */
    stopped[i] = true;
    nstopped++;
  }
  assert_int_equal(atomic_load(&h.next_when), brute_min(ts, counts, stopped, N));
  int total = 0;
  for (int64_t now = -1; now <= HORIZON; now += 97) {
    log->now = now;
    total += weft__timer_run_expired(&h, now);
    assert_int_equal(atomic_load(&h.next_when), brute_min(ts, counts, stopped, N));
  }
  log->now = INT64_MAX;
  total += weft__timer_run_expired(&h, INT64_MAX);
  assert_int_equal(total, N - nstopped);
  assert_int_equal(log->n, N - nstopped);
  assert_int_equal(log->fired_twice, 0);
  assert_int_equal(log->early, 0);
  assert_int_equal(log->not_firing, 0);
  for (int i = 1; i < log->n; i++)
    assert_true(log->when[i - 1] <= log->when[i]);
  for (int i = 0; i < N; i++) {
    assert_int_equal(counts[i], stopped[i] ? 0 : 1);
    assert_int_equal(atomic_load(&ts[i].state), TIMER_IDLE);
    assert_false(weft__timer_stop(&ts[i])); /* fired long ago: returns at once */
  }
  assert_int_equal(atomic_load(&h.next_when), INT64_MAX);
  assert_int_equal(weft__timer_pending_count(), base_pending);
  weft__timer_heap_fini(&h);
  cur_log = NULL;
  free(ts);
  free(counts);
  free(stopped);
  free(log);
}

static void count_fire(struct timer *t)
{
  atomic_fetch_add((atomic_int *)t->arg, 1);
}

static void test_stop_before_fire(void **state)
{
  (void)state;
  struct timer_heap h;
  atomic_int fired = 0;
  struct timer t = {.fn = count_fire, .arg = &fired};
  long base_pending = weft__timer_pending_count();
  weft__timer_heap_init(&h);
  assert_false(weft__timer_stop(&t)); /* never started */
  assert_int_equal(weft__timer_arm(&h, &t, 1000), 0);
  assert_int_equal(weft__timer_run_expired(&h, 999), 0);
  assert_true(weft__timer_stop(&t));
  assert_int_equal(weft__timer_run_expired(&h, INT64_MAX), 0);
  assert_int_equal(atomic_load(&fired), 0);
  /* restart after a stop, then let it fire */
  assert_int_equal(weft__timer_arm(&h, &t, 2000), 0);
  assert_int_equal(weft__timer_run_expired(&h, 2000), 1);
  assert_int_equal(atomic_load(&fired), 1);
  assert_false(weft__timer_stop(&t));
  assert_int_equal(weft__timer_pending_count(), base_pending);
  weft__timer_heap_fini(&h);
}

/* stop() after the callback started returns false, and only once the callback is done. */
struct slow_fire {
  struct timer_heap h;
  struct timer t;
  atomic_int entered, finished;
};

static void slow_callback(struct timer *t)
{
  struct slow_fire *sf = t->arg;
  atomic_store(&sf->entered, 1);
  usleep(50000);
  atomic_store(&sf->finished, 1);
}

static void *run_expired_thread(void *arg)
{
  struct slow_fire *sf = arg;
  weft__timer_run_expired(&sf->h, INT64_MAX);
  return NULL;
}

static void test_stop_waits_for_running_callback(void **state)
{
  (void)state;
  struct slow_fire sf = {.t = {.fn = slow_callback}};
  pthread_t th;
  sf.t.arg = &sf;
  weft__timer_heap_init(&sf.h);
  assert_int_equal(weft__timer_arm(&sf.h, &sf.t, 0), 0);
  assert_int_equal(pthread_create(&th, NULL, run_expired_thread, &sf), 0);
  while (!atomic_load(&sf.entered))
    sched_yield();
  assert_false(weft__timer_stop(&sf.t));
  assert_int_equal(atomic_load(&sf.finished), 1);
  pthread_join(th, NULL);
  weft__timer_heap_fini(&sf.h);
}

/* A thread fires due timers in a loop while this one starts and stops a timer with
 * deadlines around now: after every stop, the callback has run exactly when stop
 * returned false, and never runs later. */
struct race {
  struct timer_heap h;
  atomic_bool done;
  atomic_long fired;
};

static void race_fire(struct timer *t)
{
  struct race *r = t->arg;
  atomic_fetch_add(&r->fired, 1);
}

static void *race_firer(void *arg)
{
  struct race *r = arg;
  while (!atomic_load(&r->done)) {
    weft__timer_run_expired(&r->h, now_ns());
    sched_yield();
  }
  return NULL;
}

static void test_stop_races_fire(void **state)
{
  (void)state;
  const int iters = SANITIZED ? 3000 : 30000;
  struct race r = {0};
  struct timer t = {.fn = race_fire, .arg = &r};
  pthread_t th;
  uint64_t rng = test_seed();
  long stopped_pending = 0, stopped_fired = 0;
  long base_pending = weft__timer_pending_count();
  weft__timer_heap_init(&r.h);
  assert_int_equal(pthread_create(&th, NULL, race_firer, &r), 0);
  for (int i = 0; i < iters; i++) {
    int64_t delay = (int64_t)(test_rand(&rng) % 40000) - 10000; /* -10..30 us */
    assert_int_equal(weft__timer_arm(&r.h, &t, now_ns() + delay), 0);
    for (int spin = (int)(test_rand(&rng) % 2000); spin > 0; spin--)
      __asm__ volatile("" ::: "memory");
    if (weft__timer_stop(&t))
      stopped_pending++;
    else
      stopped_fired++;
    if (atomic_load(&r.fired) != stopped_fired)
      fail_msg("iteration %d: %ld callbacks ran, but stop reported %ld fired", i,
               atomic_load(&r.fired), stopped_fired);
    assert_int_equal(atomic_load(&t.state), TIMER_IDLE);
  }
  atomic_store(&r.done, true);
  pthread_join(th, NULL);
  assert_int_equal(atomic_load(&r.fired), stopped_fired);
  assert_int_equal(weft__timer_pending_count(), base_pending);
  fprintf(stderr, "stop race: %ld stopped while pending, %ld after firing\n", stopped_pending,
          stopped_fired);
  weft__timer_heap_fini(&r.h);
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sleep_never_early),
      cmocka_unit_test(test_sleepers_wake_in_deadline_order),
      cmocka_unit_test(test_sleep_nonpositive_yields),
      cmocka_unit_test(test_many_sleepers_all_wake),
      cmocka_unit_test(test_sleep_outside_coroutine),
      cmocka_unit_test(test_heap_fires_in_order),
      cmocka_unit_test(test_stop_before_fire),
      cmocka_unit_test(test_stop_waits_for_running_callback),
      cmocka_unit_test(test_stop_races_fire),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
