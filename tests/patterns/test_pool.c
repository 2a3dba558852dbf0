/* test_pool.c: the worker pool of weft/pool.h: submission, backpressure, results, close,
 * shutdown with a deadline on the fake clock, stats and metrics. */
#include <stdlib.h>
#include <string.h>

#include "coro_check.h"
#include "weft/pool.h"
#include "weft_test.h"

/* A gate that jobs wait at until the test opens it (closes the channel). */
struct gate {
  weft_chan *ch;
  atomic_int entered; /* jobs that reached the gate */
};

static void gate_init(struct gate *g)
{
  g->ch = weft_chan_new(1, 0);
  atomic_init(&g->entered, 0);
}

static void gate_open(struct gate *g)
{
  weft_chan_close(g->ch);
}

static void gate_destroy(struct gate *g)
{
  weft_chan_release(g->ch);
}

static long gated(weft_ctx *ctx, void *arg)
{
  struct gate *g = arg;
  atomic_fetch_add(&g->entered, 1);
  int rc = weft_chan_recv_ctx(g->ch, NULL, ctx);
  return rc == -EPIPE ? 7 : rc; /* opened: 7; the pool's ctx cancelled: -ECANCELED */
}

static long twice(weft_ctx *ctx, void *arg)
{
  (void)ctx;
  return 2 * (long)(intptr_t)arg;
}

static long fail_einval(weft_ctx *ctx, void *arg)
{
  (void)ctx;
  (void)arg;
  return -EINVAL;
}

static weft_pool *pool_make(int workers, size_t cap, weft_clock *clock)
{
  weft_pool *p = NULL;
  int rc = weft_pool_new(
      &(weft_pool_options){.workers = workers, .queue_capacity = cap, .clock = clock}, &p);
  CHECK_EQ(rc, 0);
  return p;
}

static weft_pool_stats stats(weft_pool *p)
{
  weft_pool_stats s;
  weft_pool_stats_read(p, &s);
  return s;
}

/* Wait (up to 2 s) until n jobs have entered the gate. */
static void wait_entered(struct gate *g, int n)
{
  for (int i = 0; i < 2000 && atomic_load(&g->entered) < n; i++)
    weft_sleep(MS(1));
  CHECK_EQ(atomic_load(&g->entered), n);
}

static void run_checked_p1to4(int (*fn)(void *), void *arg)
{
  checks_reset();
  run_weft_p1to4(fn, arg);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- results ---- */

static int results_main(void *arg)
{
  (void)arg;
  enum { N = 200 };
  weft_pool *p = pool_make(4, 16, NULL);
  static weft_pool_job *jobs[N];
  for (long i = 0; i < N; i++)
    CHECK_EQ(weft_pool_submit(p, NULL, twice, (void *)(intptr_t)i, &jobs[i]), 0);
  for (long i = 0; i < N; i++) {
    long r = -1;
    CHECK_EQ(weft_pool_job_wait(jobs[i], NULL, &r), 0);
    CHECK_EQ(r, 2 * i);
    CHECK_EQ(weft_pool_job_is_done(jobs[i]), 1);
    CHECK_EQ(weft_pool_job_ran(jobs[i]), 1);
    CHECK_EQ(weft_pool_job_wait(jobs[i], NULL, &r), 0); /* again: still the result */
    weft_pool_job_free(jobs[i]);
  }
  weft_pool_job *f;
  CHECK_EQ(weft_pool_submit(p, NULL, fail_einval, NULL, &f), 0);
  long r = 0;
  CHECK_EQ(weft_pool_job_wait(f, NULL, &r), 0);
  CHECK_EQ(r, -EINVAL);
  weft_pool_job_free(f);
  CHECK_EQ(weft_pool_submit(p, NULL, twice, NULL, NULL), 0); /* fire and forget */
  CHECK_EQ(weft_pool_shutdown(p, WEFT_NO_DEADLINE), 0);
  weft_pool_stats s = stats(p);
  CHECK_EQ(s.submitted, N + 2);
  CHECK_EQ(s.completed, N + 1);
  CHECK_EQ(s.failed, 1);
  CHECK_EQ(s.rejected, 0);
  CHECK_EQ(s.workers, 0);
  CHECK_EQ(s.busy, 0);
  CHECK_EQ(s.closed, 1);
  weft_pool_free(p);
  return 0;
}

static void test_results(void **state)
{
  (void)state;
  run_checked_p1to4(results_main, NULL);
}

/* ---- try_submit and a full queue ---- */

static int full_main(void *arg)
{
  (void)arg;
  struct gate g;
  gate_init(&g);
  weft_pool *p = pool_make(1, 2, NULL);
  weft_pool_job *run, *q1, *q2, *no = (weft_pool_job *)&g;
  CHECK_EQ(weft_pool_try_submit(p, gated, &g, &run), 0);
  wait_entered(&g, 1); /* the worker holds it: the queue is empty again */
  CHECK_EQ(weft_pool_try_submit(p, gated, &g, &q1), 0);
  CHECK_EQ(weft_pool_try_submit(p, gated, &g, &q2), 0);
  weft_pool_stats s = stats(p);
  CHECK_EQ(s.queue_depth, 2);
  CHECK_EQ(s.queue_capacity, 2);
  CHECK_EQ(s.busy, 1);
  CHECK_EQ(s.workers, 1);
  int64_t t0 = weft_now();
  CHECK_EQ(weft_pool_try_submit(p, gated, &g, &no), -EAGAIN); /* full: at once */
  CHECK(weft_now() - t0 < MS(500)); /* parking would wait for the gate: forever */
  CHECK(no == NULL);
  CHECK_EQ(weft_pool_try_submit(p, twice, NULL, NULL), -EAGAIN);
  CHECK_EQ(stats(p).rejected, 2);
  CHECK_EQ(weft_pool_job_is_done(q1), 0);
  CHECK_EQ(weft_pool_job_ran(q1), 0);
  gate_open(&g);
  long r = 0;
  weft_pool_job *all[] = {run, q1, q2};
  for (int i = 0; i < 3; i++) {
    CHECK_EQ(weft_pool_job_wait(all[i], NULL, &r), 0);
    CHECK_EQ(r, 7);
    weft_pool_job_free(all[i]);
  }
  CHECK_EQ(weft_pool_try_submit(p, twice, NULL, NULL), 0); /* room again */
  CHECK_EQ(weft_pool_shutdown(p, WEFT_NO_DEADLINE), 0);
  CHECK_EQ(stats(p).completed, 4);
  weft_pool_free(p);
  gate_destroy(&g);
  return 0;
}

static void test_full(void **state)
{
  (void)state;
  run_checked_p1to4(full_main, NULL);
}

/* ---- submit parks while full, under a context ---- */

struct parked {
  weft_pool *p;
  weft_ctx *ctx;
  struct gate *g;
  int rc;
  weft_pool_job *job;
  weft_wg done;
};

static void parked_submit(void *arg)
{
  struct parked *s = arg;
  s->rc = weft_pool_submit(s->p, s->ctx, gated, s->g, &s->job);
  weft_wg_done(&s->done);
}

static void park_start(struct parked *s, weft_pool *p, struct gate *g, weft_ctx *ctx)
{
  *s = (struct parked){.p = p, .g = g, .ctx = ctx, .rc = 1};
  weft_wg_init(&s->done);
  weft_wg_add(&s->done, 1);
  weft_go(parked_submit, s);
}

static int park_main(void *arg)
{
  (void)arg;
  struct gate g;
  gate_init(&g);
  weft_pool *p = pool_make(1, 1, NULL);
  CHECK_EQ(weft_pool_submit(p, NULL, gated, &g, NULL), 0);
  wait_entered(&g, 1);
  CHECK_EQ(weft_pool_submit(p, NULL, gated, &g, NULL), 0); /* fills the queue */

  /* a: cancelled while parked; b: gets in when room is made; c: woken by close */
  struct parked a, b, c;
  weft_ctx *actx = weft_ctx_with_cancel(NULL);
  park_start(&a, p, &g, actx);
  weft_sleep(MS(20));
  park_start(&b, p, &g, NULL);
  weft_sleep(MS(20));
  CHECK_EQ(a.rc, 1); /* both parked */
  CHECK_EQ(b.rc, 1);
  weft_ctx_cancel(actx);
  weft_wg_wait(&a.done);
  CHECK_EQ(a.rc, -ECANCELED);
  CHECK(a.job == NULL);
  /* a context already done fails at once, even with room */
  CHECK_EQ(weft_pool_submit(p, actx, twice, NULL, NULL), -ECANCELED);
  weft_ctx *tctx = weft_ctx_with_timeout(NULL, MS(10));
  CHECK_EQ(weft_pool_submit(p, tctx, twice, NULL, NULL), -ETIMEDOUT);
  weft_ctx_release(tctx);

  gate_open(&g); /* the worker drains: b's job is queued and runs */
  weft_wg_wait(&b.done);
  CHECK_EQ(b.rc, 0);
  long r = 0;
  CHECK_EQ(weft_pool_job_wait(b.job, NULL, &r), 0);
  CHECK_EQ(r, 7);
  weft_pool_job_free(b.job);

  /* fill again with a new gate, park c, close: c wakes with -EPIPE */
  struct gate g2;
  gate_init(&g2);
  CHECK_EQ(weft_pool_submit(p, NULL, gated, &g2, NULL), 0);
  wait_entered(&g2, 1);
  CHECK_EQ(weft_pool_submit(p, NULL, gated, &g2, NULL), 0);
  park_start(&c, p, &g2, NULL);
  weft_sleep(MS(20));
  CHECK_EQ(c.rc, 1);
  weft_pool_close(p);
  weft_wg_wait(&c.done);
  CHECK_EQ(c.rc, -EPIPE);
  CHECK_EQ(weft_pool_try_submit(p, twice, NULL, NULL), -EPIPE);
  CHECK_EQ(weft_pool_submit(p, NULL, twice, NULL, NULL), -EPIPE);
  gate_open(&g2);
  CHECK_EQ(weft_pool_wait(p, NULL), 0);
  weft_pool_stats s = stats(p);
  CHECK_EQ(s.completed, 5);
  CHECK_EQ(s.rejected, 3); /* c, try_submit and submit on the closed pool */
  CHECK_EQ(s.queue_depth, 0);
  weft_pool_free(p);
  weft_ctx_release(actx);
  gate_destroy(&g);
  gate_destroy(&g2);
  return 0;
}

static void test_park(void **state)
{
  (void)state;
  run_checked_p1to4(park_main, NULL);
}

/* ---- close then drain; wait under a context ---- */

static int drain_main(void *arg)
{
  (void)arg;
  struct gate g;
  gate_init(&g);
  weft_pool *p = pool_make(2, 8, NULL);
  weft_pool_job *jobs[8];
  for (int i = 0; i < 8; i++)
    CHECK_EQ(weft_pool_submit(p, NULL, gated, &g, &jobs[i]), 0);
  wait_entered(&g, 2);
  weft_pool_close(p);
  weft_pool_close(p); /* idempotent */
  weft_ctx *t = weft_ctx_with_timeout(NULL, MS(20));
  CHECK_EQ(weft_pool_wait(p, t), -ETIMEDOUT); /* not drained: jobs wait at the gate */
  weft_ctx_release(t);
  long r;
  t = weft_ctx_with_timeout(NULL, MS(5));
  CHECK_EQ(weft_pool_job_wait(jobs[7], t, &r), -ETIMEDOUT);
  weft_ctx_release(t);
  CHECK_EQ(stats(p).queue_depth, 6);
  gate_open(&g);
  CHECK_EQ(weft_pool_wait(p, NULL), 0); /* every queued job ran after close */
  for (int i = 0; i < 8; i++) {
    CHECK_EQ(weft_pool_job_is_done(jobs[i]), 1);
    CHECK_EQ(weft_pool_job_wait(jobs[i], NULL, &r), 0);
    CHECK_EQ(r, 7);
  }
  CHECK_EQ(stats(p).completed, 8);
  CHECK_EQ(stats(p).workers, 0);
  CHECK_EQ(weft_pool_shutdown(p, 0), 0); /* already drained: nothing to abandon */
  weft_pool_free(p);
  for (int i = 0; i < 8; i++) /* handles outlive the pool */
    weft_pool_job_free(jobs[i]);
  gate_destroy(&g);
  return 0;
}

static void test_drain(void **state)
{
  (void)state;
  run_checked_p1to4(drain_main, NULL);
}

/* ---- shutdown with a deadline, on the fake clock ---- */

struct shut {
  weft_pool *p;
  int64_t deadline;
  long abandoned;
  weft_wg done;
};

static void shutter(void *arg)
{
  struct shut *s = arg;
  s->abandoned = weft_pool_shutdown(s->p, s->deadline);
  weft_wg_done(&s->done);
}

static atomic_int abandon_calls;
static void on_abandon(void *arg)
{
  CHECK(arg != NULL);
  atomic_fetch_add(&abandon_calls, 1);
}

static void wait_sleepers(weft_fake_clock *fc, int n)
{
  for (int i = 0; i < 2000 && weft_fake_clock_sleepers(fc) < n; i++)
    weft_sleep(MS(1));
  CHECK_EQ(weft_fake_clock_sleepers(fc), n);
}

static int deadline_main(void *arg)
{
  (void)arg;
  weft_fake_clock *fc = weft_fake_clock_new(MS(1000));
  struct gate g;
  gate_init(&g);
  atomic_store(&abandon_calls, 0);
  weft_pool *p = NULL;
  CHECK_EQ(weft_pool_new(&(weft_pool_options){.workers = 2,
                                              .queue_capacity = 4,
                                              .clock = weft_fake_clock_clock(fc),
                                              .on_abandon = on_abandon},
                         &p),
           0);
  weft_pool_job *jobs[5];
  for (int i = 0; i < 5; i++)
    CHECK_EQ(weft_pool_submit(p, NULL, gated, &g, &jobs[i]), 0);
  wait_entered(&g, 2);
  struct shut s = {.p = p, .deadline = MS(1000) + MS(500), .abandoned = -1};
  weft_wg_init(&s.done);
  weft_wg_add(&s.done, 1);
  weft_go(shutter, &s);
  wait_sleepers(fc, 1);
  CHECK_EQ(weft_pool_try_submit(p, twice, NULL, NULL), -EPIPE); /* closed at once */
  weft_fake_clock_advance(fc, MS(499));
  weft_sleep(MS(20));
  CHECK_EQ(s.abandoned, -1); /* not yet */
  CHECK_EQ(weft_ctx_err(weft_pool_ctx(p)), 0);
  weft_fake_clock_advance(fc, MS(1)); /* the deadline, exactly */
  weft_wg_wait(&s.done);
  CHECK_EQ(s.abandoned, 3);
  CHECK_EQ(atomic_load(&abandon_calls), 3);
  CHECK_EQ(weft_ctx_err(weft_pool_ctx(p)), -ECANCELED);
  CHECK_EQ(weft_ctx_cause(weft_pool_ctx(p)), -ETIMEDOUT);
  int ran = 0, abandoned = 0;
  for (int i = 0; i < 5; i++) {
    long r = 0;
    CHECK_EQ(weft_pool_job_wait(jobs[i], NULL, &r), 0);
    CHECK_EQ(r, -ECANCELED); /* the running ones saw the pool's ctx; the rest never ran */
    ran += weft_pool_job_ran(jobs[i]);
    abandoned += !weft_pool_job_ran(jobs[i]);
    weft_pool_job_free(jobs[i]);
  }
  CHECK_EQ(ran, 2);
  CHECK_EQ(abandoned, 3);
  weft_pool_stats st = stats(p);
  CHECK_EQ(st.cancelled, 3);
  CHECK_EQ(st.failed, 2);
  CHECK_EQ(st.completed, 0);
  CHECK_EQ(st.workers, 0);
  CHECK_EQ(st.queue_depth, 0);
  weft_pool_free(p);
  gate_destroy(&g);
  weft_fake_clock_free(fc);
  return 0;
}

static void test_shutdown_deadline(void **state)
{
  (void)state;
  run_checked_p1to4(deadline_main, NULL);
}

/* Drained before the deadline: shutdown returns 0 without the clock moving. */
static int in_time_main(void *arg)
{
  (void)arg;
  weft_fake_clock *fc = weft_fake_clock_new(0);
  weft_pool *p = pool_make(3, 50, weft_fake_clock_clock(fc));
  for (long i = 0; i < 50; i++)
    CHECK_EQ(weft_pool_submit(p, NULL, twice, (void *)(intptr_t)i, NULL), 0);
  CHECK_EQ(weft_pool_shutdown(p, MS(1)), 0);
  CHECK_EQ(weft_clock_now(weft_fake_clock_clock(fc)), 0);
  CHECK_EQ(stats(p).completed, 50);
  CHECK_EQ(stats(p).cancelled, 0);
  CHECK_EQ(weft_ctx_err(weft_pool_ctx(p)), 0); /* jobs' context never cancelled */
  CHECK_EQ(weft_fake_clock_sleepers(fc), 0);
  weft_pool_free(p);
  weft_fake_clock_free(fc);
  return 0;
}

static void test_shutdown_in_time(void **state)
{
  (void)state;
  run_checked_p1to4(in_time_main, NULL);
}

/* A deadline already passed abandons everything queued at once. */
static int past_deadline_main(void *arg)
{
  (void)arg;
  struct gate g;
  gate_init(&g);
  weft_pool *p = pool_make(1, 10, NULL);
  for (int i = 0; i < 10; i++)
    CHECK_EQ(weft_pool_submit(p, NULL, gated, &g, NULL), 0);
  wait_entered(&g, 1);
  CHECK_EQ(weft_pool_shutdown(p, 0), 9);
  CHECK_EQ(stats(p).cancelled, 9);
  CHECK_EQ(stats(p).failed, 1);
  CHECK_EQ(weft_pool_shutdown(p, 0), 0); /* twice: nothing left */
  weft_pool_free(p);
  gate_destroy(&g);
  return 0;
}

static void test_shutdown_past(void **state)
{
  (void)state;
  run_checked_p1to4(past_deadline_main, NULL);
}

/* ---- stats and metrics exposition, exact times on the fake clock ---- */

struct sleepy_arg {
  weft_clock *clock;
  int64_t ns;
};

static long clock_sleeper(weft_ctx *ctx, void *arg)
{
  struct sleepy_arg *a = arg;
  return weft_clock_sleep(a->clock, ctx, a->ns);
}

static char *scrape(weft_metrics_registry *reg)
{
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  CHECK_EQ(weft_metrics_write_prometheus(reg, f), 0);
  fclose(f);
  return buf;
}

static void expect_line(const char *text, const char *line)
{
  size_t n = strlen(line);
  for (const char *s = text; (s = strstr(s, line)); s += n)
    if ((s == text || s[-1] == '\n') && s[n] == '\n')
      return;
  fprintf(stderr, "missing line: %s\n", line);
  CHECK(!"metrics line present");
}

static int metrics_main(void *arg)
{
  (void)arg;
  weft_fake_clock *fc = weft_fake_clock_new(0);
  weft_clock *c = weft_fake_clock_clock(fc);
  weft_metrics_registry *reg = weft_metrics_registry_new();
  weft_pool *p = NULL;
  CHECK_EQ(
      weft_pool_new(
          &(weft_pool_options){
              .workers = 1, .queue_capacity = 2, .name = "pay", .metrics = reg, .clock = c},
          &p),
      0);
  struct sleepy_arg a = {.clock = c, .ns = MS(250)};
  weft_pool_job *j1, *j2, *j3;
  CHECK_EQ(weft_pool_submit(p, NULL, clock_sleeper, &a, &j1), 0);
  wait_sleepers(fc, 1); /* j1 runs: queued 0 s */
  CHECK_EQ(weft_pool_submit(p, NULL, clock_sleeper, &a, &j2), 0);
  CHECK_EQ(weft_pool_submit(p, NULL, fail_einval, NULL, &j3), 0);
  CHECK_EQ(weft_pool_try_submit(p, twice, NULL, NULL), -EAGAIN);
  char *text = scrape(reg);
  expect_line(text, "weft_pool_queue_depth{pool=\"pay\"} 2");
  expect_line(text, "weft_pool_queue_capacity{pool=\"pay\"} 2");
  expect_line(text, "weft_pool_busy_workers{pool=\"pay\"} 1");
  expect_line(text, "weft_pool_workers{pool=\"pay\"} 1");
  expect_line(text, "weft_pool_jobs_total{pool=\"pay\",result=\"rejected\"} 1");
  expect_line(text, "# TYPE weft_pool_queue_seconds histogram");
  free(text);
  weft_fake_clock_advance(fc, MS(250)); /* j1 ends; j2 starts after 0.25 s queued */
  wait_sleepers(fc, 1);
  weft_fake_clock_advance(fc, MS(250)); /* j2 ends; j3 (queued 0.5 s) fails */
  long r = 1;
  CHECK_EQ(weft_pool_job_wait(j3, NULL, &r), 0);
  CHECK_EQ(r, -EINVAL);
  CHECK_EQ(weft_pool_shutdown(p, WEFT_NO_DEADLINE), 0);
  text = scrape(reg);
  expect_line(text, "weft_pool_queue_depth{pool=\"pay\"} 0");
  expect_line(text, "weft_pool_busy_workers{pool=\"pay\"} 0");
  expect_line(text, "weft_pool_workers{pool=\"pay\"} 0");
  expect_line(text, "weft_pool_jobs_total{pool=\"pay\",result=\"completed\"} 2");
  expect_line(text, "weft_pool_jobs_total{pool=\"pay\",result=\"failed\"} 1");
  expect_line(text, "weft_pool_jobs_total{pool=\"pay\",result=\"cancelled\"} 0");
  expect_line(text, "weft_pool_queue_seconds_count{pool=\"pay\"} 3");
  expect_line(text, "weft_pool_queue_seconds_sum{pool=\"pay\"} 0.75");
  expect_line(text, "weft_pool_work_seconds_sum{pool=\"pay\"} 0.5");
  expect_line(text, "weft_pool_work_seconds_bucket{pool=\"pay\",le=\"0.0001\"} 1");
  expect_line(text, "weft_pool_work_seconds_bucket{pool=\"pay\",le=\"+Inf\"} 3");
  free(text);
  weft_pool_job *all[] = {j1, j2, j3};
  for (int i = 0; i < 3; i++)
    weft_pool_job_free(all[i]);
  weft_pool_free(p);

  /* a second pool of another name shares the families */
  CHECK_EQ(weft_pool_new(
               &(weft_pool_options){
                   .workers = 1, .queue_capacity = 5, .name = "etl", .metrics = reg},
               &p),
           0);
  text = scrape(reg);
  expect_line(text, "weft_pool_queue_capacity{pool=\"etl\"} 5");
  expect_line(text, "weft_pool_queue_capacity{pool=\"pay\"} 2");
  free(text);
  weft_pool_free(p);
  weft_metrics_registry_free(reg);
  weft_fake_clock_free(fc);
  return 0;
}

static void test_metrics(void **state)
{
  (void)state;
  checks_reset();
  CHECK_EQ(run_weft(2, metrics_main, NULL), 0);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- bad input ---- */

static int invalid_main(void *arg)
{
  (void)arg;
  weft_pool *p = (weft_pool *)&p;
  CHECK_EQ(weft_pool_new(NULL, &p), -EINVAL);
  CHECK(p == NULL);
  CHECK_EQ(weft_pool_new(&(weft_pool_options){.workers = 0, .queue_capacity = 1}, &p), -EINVAL);
  CHECK_EQ(weft_pool_new(&(weft_pool_options){.workers = 1, .queue_capacity = 0}, &p), -EINVAL);
  CHECK_EQ(weft_pool_new(&(weft_pool_options){.workers = 1, .queue_capacity = 1}, NULL),
           -EINVAL);
  weft_metrics_registry *reg = weft_metrics_registry_new();
  CHECK_EQ(weft_pool_new(
               &(weft_pool_options){
                   .workers = 1, .queue_capacity = 1, .name = "\xff", .metrics = reg},
               &p),
           -EINVAL); /* not UTF-8: the metrics refuse the label */
  CHECK(p == NULL);
  weft_metrics_registry_free(reg);
  p = pool_make(1, 1, NULL);
  weft_pool_job *j = (weft_pool_job *)&j;
  CHECK_EQ(weft_pool_submit(p, NULL, NULL, NULL, &j), -EINVAL);
  CHECK(j == NULL);
  CHECK_EQ(weft_pool_try_submit(p, NULL, NULL, NULL), -EINVAL);
  CHECK_EQ(weft_pool_try_submit(NULL, twice, NULL, NULL), -EINVAL);
  CHECK_EQ(weft_pool_job_wait(NULL, NULL, NULL), -EINVAL);
  weft_pool_free(p); /* free without close or shutdown: drains */
  weft_pool_free(NULL);
  weft_pool_job_free(NULL);
  return 0;
}

static void test_invalid(void **state)
{
  (void)state;
  checks_reset();
  CHECK_EQ(run_weft(1, invalid_main, NULL), 0);
  ASSERT_NO_CHECK_FAILED();
  weft_pool *p = (weft_pool *)&p; /* no runtime */
  assert_int_equal(weft_pool_new(&(weft_pool_options){.workers = 1, .queue_capacity = 1}, &p),
                   -EPERM);
  assert_null(p);
}

/* ---- waiting with a deadline; several waiters; races with the job's end ---- */

struct waiter_arg {
  weft_pool_job *job;
  weft_ctx *ctx;
  int64_t deadline;
  int rc;
  long result;
  weft_wg *done;
};

static void waiter(void *arg)
{
  struct waiter_arg *w = arg;
  w->result = -1;
  w->rc = weft_pool_job_wait_until(w->job, w->ctx, w->deadline, &w->result);
  weft_wg_done(w->done);
}

static int wait_until_main(void *arg)
{
  (void)arg;
  struct gate g;
  gate_init(&g);
  weft_pool *p = pool_make(1, 4, NULL);
  weft_pool_job *job;
  CHECK_EQ(weft_pool_submit(p, NULL, gated, &g, &job), 0);
  wait_entered(&g, 1);
  long r = -1;
  int64_t t0 = weft_now();
  CHECK_EQ(weft_pool_job_wait_until(job, NULL, t0 + MS(5), &r), -ETIMEDOUT);
  CHECK(weft_now() - t0 >= MS(5));
  CHECK_EQ(r, -1);
  CHECK_EQ(weft_pool_job_wait_until(job, NULL, t0, &r), -ETIMEDOUT); /* past: at once */
  weft_ctx *cancelled = weft_ctx_with_cancel(NULL);
  weft_ctx_cancel(cancelled);
  CHECK_EQ(weft_pool_job_wait_until(job, cancelled, WEFT_NO_DEADLINE, &r), -ECANCELED);
  CHECK_EQ(weft_pool_job_is_done(job), 0);

  /* Four waiters on the one handle: a context cancelled, a deadline, two for the end. */
  weft_wg wg;
  weft_wg_init(&wg);
  weft_ctx *soon = weft_ctx_with_cancel(NULL);
  struct waiter_arg w[4] = {
      {.job = job, .ctx = soon, .deadline = WEFT_NO_DEADLINE, .done = &wg},
      {.job = job, .deadline = weft_now() + MS(10), .done = &wg},
      {.job = job, .deadline = WEFT_NO_DEADLINE, .done = &wg},
      {.job = job, .deadline = weft_now() + MS(10000), .done = &wg},
  };
  weft_wg_add(&wg, 4);
  for (int i = 0; i < 4; i++)
    weft_go(waiter, &w[i]);
  weft_sleep(MS(2));
  weft_ctx_cancel(soon);
  weft_sleep(MS(20)); /* the deadline of w[1] passes */
  gate_open(&g);
  weft_wg_wait(&wg);
  CHECK_EQ(w[0].rc, -ECANCELED);
  CHECK_EQ(w[1].rc, -ETIMEDOUT);
  CHECK_EQ(w[2].rc, 0);
  CHECK_EQ(w[2].result, 7);
  CHECK_EQ(w[3].rc, 0);
  CHECK_EQ(w[3].result, 7);
  CHECK_EQ(weft_pool_job_wait_until(job, cancelled, t0, &r), 0); /* ended: the result */
  CHECK_EQ(r, 7);
  weft_pool_job_free(job);

  /* Deadlines and cancellations that race the job's end: each wait ends once, with the
   * result or its own error, and a second wait always gets the result. */
  for (int i = 0; i < 2000; i++) {
    weft_pool_job *h;
    CHECK_EQ(weft_pool_submit(p, NULL, twice, (void *)(intptr_t)i, &h), 0);
    weft_ctx *c = weft_ctx_with_timeout(NULL, (i % 5) * 1000);
    int rc = weft_pool_job_wait_until(h, i % 2 ? c : NULL, weft_now() + (i % 7) * 1000, &r);
    CHECK(rc == 0 || rc == -ETIMEDOUT);
    if (rc == 0)
      CHECK_EQ(r, 2L * i);
    CHECK_EQ(weft_pool_job_wait(h, NULL, &r), 0);
    CHECK_EQ(r, 2L * i);
    weft_ctx_release(c);
    weft_pool_job_free(h);
  }
  weft_ctx_release(soon);
  weft_ctx_release(cancelled);
  weft_pool_free(p);
  gate_destroy(&g);
  return 0;
}

static void test_wait_until(void **state)
{
  (void)state;
  run_checked_p1to4(wait_until_main, NULL);
}

/* ---- many producers on P = 1..4: every accepted job runs exactly once ---- */

enum { PRODUCERS = 8, PER_PRODUCER = 500 };

struct conc {
  weft_pool *p;
  atomic_int runs[PRODUCERS * PER_PRODUCER];
  atomic_int accepted, rejected;
  weft_wg done;
};

struct conc_job {
  struct conc *c;
  int id;
};

static long count_run(weft_ctx *ctx, void *arg)
{
  (void)ctx;
  struct conc_job *j = arg;
  atomic_fetch_add(&j->c->runs[j->id], 1);
  if (j->id % 7 == 0)
    weft_yield();
  return j->id;
}

static struct conc_job conc_jobs[PRODUCERS * PER_PRODUCER];

static void producer(void *arg)
{
  struct conc_job *first = arg;
  struct conc *c = first->c;
  int base = first->id;
  for (int i = 0; i < PER_PRODUCER; i++) {
    struct conc_job *j = &conc_jobs[base + i];
    weft_pool_job *h = NULL;
    int rc;
    if (i % 2) { /* half with a handle, parking */
      rc = weft_pool_submit(c->p, NULL, count_run, j, &h);
      CHECK_EQ(rc, 0);
      long r = -1;
      if (i % 4 == 1) {
        CHECK_EQ(weft_pool_job_wait(h, NULL, &r), 0);
        CHECK_EQ(r, j->id);
      }
      weft_pool_job_free(h);
    } else { /* half fire and forget, never parking */
      rc = weft_pool_try_submit(c->p, count_run, j, NULL);
      CHECK(rc == 0 || rc == -EAGAIN);
    }
    atomic_fetch_add(rc == 0 ? &c->accepted : &c->rejected, 1);
  }
  weft_wg_done(&c->done);
}

static int conc_main(void *arg)
{
  struct conc *c = arg;
  memset(c->runs, 0, sizeof c->runs);
  atomic_store(&c->accepted, 0);
  atomic_store(&c->rejected, 0);
  c->p = pool_make(4, 8, NULL);
  weft_wg_init(&c->done);
  weft_wg_add(&c->done, PRODUCERS);
  for (int k = 0; k < PRODUCERS; k++) {
    for (int i = 0; i < PER_PRODUCER; i++)
      conc_jobs[k * PER_PRODUCER + i] = (struct conc_job){.c = c, .id = k * PER_PRODUCER + i};
    weft_go(producer, &conc_jobs[k * PER_PRODUCER]);
  }
  weft_wg_wait(&c->done);
  CHECK_EQ(weft_pool_shutdown(c->p, WEFT_NO_DEADLINE), 0);
  int accepted = atomic_load(&c->accepted), ran = 0;
  for (int i = 0; i < PRODUCERS * PER_PRODUCER; i++) {
    int n = atomic_load(&c->runs[i]);
    CHECK(n == 0 || n == 1);
    ran += n;
  }
  CHECK_EQ(ran, accepted);
  CHECK_EQ(accepted + atomic_load(&c->rejected), PRODUCERS * PER_PRODUCER);
  weft_pool_stats s = stats(c->p);
  CHECK_EQ(s.submitted, accepted);
  CHECK_EQ(s.completed, accepted);
  CHECK_EQ(s.rejected, atomic_load(&c->rejected));
  weft_pool_free(c->p);
  return 0;
}

static void test_concurrent(void **state)
{
  (void)state;
  static struct conc c;
  run_checked_p1to4(conc_main, &c);
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_results),
      cmocka_unit_test(test_full),
      cmocka_unit_test(test_park),
      cmocka_unit_test(test_drain),
      cmocka_unit_test(test_wait_until),
      cmocka_unit_test(test_shutdown_deadline),
      cmocka_unit_test(test_shutdown_in_time),
      cmocka_unit_test(test_shutdown_past),
      cmocka_unit_test(test_metrics),
      cmocka_unit_test(test_invalid),
      cmocka_unit_test(test_concurrent),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
