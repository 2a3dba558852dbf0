/* debug_server.c: the debug server and its dashboard, watching a program at work.
 *
 *   examples/debug_server [addr [seconds]]   addr: "6060" (default), "0" for any free port,
 *                                            or host:port; seconds: 0 (default) runs until
 *                                            Ctrl-C or SIGTERM
 *
 * It prints "debug server: http://127.0.0.1:PORT/debug/dashboard" and runs some load:
 * - two worker pools ("resize" with 8 workers, "encode" with 4) receiving jobs from their
 *   own bounded channel, each job a short sleep standing in for work, timed into a
 *   histogram per pool and counted per pool and outcome;
 * - a producer per pool sending jobs in bursts, so the queues fill and drain and the
 *   workers' utilisation swings; a gauge per pool shows its queue's length;
 * - 200 coroutines parked on a channel nobody sends on, as a leak would look in a dump.
 *
 * Open the dashboard in a browser, or look with curl:
 *   curl 'http://127.0.0.1:6060/debug/coroutines?debug=1'   grouped by stack
 *   curl 'http://127.0.0.1:6060/debug/coroutines?debug=2'   every coroutine
 *   curl  http://127.0.0.1:6060/metrics                     Prometheus text format
 *   curl  http://127.0.0.1:6060/debug/vars                  JSON
 * On the signal (or after the given seconds) the producers stop, the pools drain, the
 * debug server stops gracefully and the program exits with 0. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include <weft/chan.h>
#include <weft/ctx.h>
#include <weft/debug_server.h>
#include <weft/error.h>
#include <weft/metrics.h>
#include <weft/runtime.h>
#include <weft/signal_ctx.h>
#include <weft/sync.h>

#define MS(n) ((int64_t)(n)*1000000)
#define US(n) ((int64_t)(n)*1000)

enum { LEAKY = 200 };

struct pool {
  const char *name;
  int workers;
  int64_t work_ns;      /* mean time a job takes */
  int burst;            /* jobs the producer sends at once */
  weft_chan *jobs;      /* int64_t: the time the job was queued */
  weft_counter *ok;     /* jobs done */
  weft_counter *late;   /* jobs that waited in the queue over 50 ms */
  weft_histogram *wait; /* queued -> picked up */
  weft_histogram *run;  /* picked up -> done */
  weft_gauge *queued;   /* the queue's length, sampled by the producer */
};

struct app {
  struct pool pools[2];
  weft_ctx *ctx;    /* done on the signal or the deadline */
  weft_wg running;  /* producers and workers */
  weft_chan *never; /* the parked coroutines wait here until the end */
  weft_wg parked;
  uint64_t seed;
};

static uint64_t next_rand(uint64_t *s)
{
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static void worker(void *arg)
{
  struct pool *p = arg;
  uint64_t seed = (uint64_t)(uintptr_t)p ^ weft_self_id() * 0x9e3779b97f4a7c15u;
  int64_t queued;
  while (weft_chan_recv(p->jobs, &queued, WEFT_NO_DEADLINE) == 0) {
    int64_t start = weft_now();
    weft_histogram_observe_ns(p->wait, start - queued);
    /* Work: an exponential-ish spread around work_ns. */
    int64_t ns = p->work_ns / 2 + (int64_t)(next_rand(&seed) % (uint64_t)(p->work_ns * 2));
    weft_sleep(ns);
    weft_histogram_observe_ns(p->run, weft_now() - start);
    weft_counter_inc(start - queued > MS(50) ? p->late : p->ok);
  }
}

struct worker_arg {
  struct app *app;
  struct pool *pool;
};

static void worker_main(void *arg)
{
  struct worker_arg *a = arg;
  worker(a->pool);
  weft_wg_done(&a->app->running);
  free(a);
}

/* producer: bursts of jobs, a pause, repeat; closes the queue when ctx is done. */
static void producer(void *arg)
{
  struct worker_arg *a = arg;
  struct pool *p = a->pool;
  uint64_t seed = a->app->seed ^ (uint64_t)(uintptr_t)p;
  while (!weft_ctx_err(a->app->ctx)) {
    int n = p->burst / 2 + (int)(next_rand(&seed) % (uint64_t)p->burst);
    for (int i = 0; i < n && !weft_ctx_err(a->app->ctx); i++) {
      int64_t now = weft_now();
      weft_chan_send(p->jobs, &now, weft_now() + MS(100));
      weft_gauge_set(p->queued, (double)weft_chan_len(p->jobs));
    }
    weft_sleep(MS(50) + (int64_t)(next_rand(&seed) % (uint64_t)MS(250)));
    weft_gauge_set(p->queued, (double)weft_chan_len(p->jobs));
  }
  weft_chan_close(p->jobs);
  weft_wg_done(&a->app->running);
  free(a);
}

static void parked(void *arg)
{
  struct app *app = arg;
  int v;
  weft_chan_recv(app->never, &v, WEFT_NO_DEADLINE);
  weft_wg_done(&app->parked);
}

/* metrics: the families, shared by both pools and told apart by the label "pool". */
static int make_metrics(struct app *app)
{
  weft_counter_vec *jobs;
  weft_histogram_vec *wait, *run;
  weft_gauge_vec *queued;
  double buckets[14];
  weft_metrics_exponential_buckets(50e-6, 2, 14, buckets); /* 50 us .. 0.4 s */
  int err = weft_counter_vec_new(NULL, "example_jobs_total", "Jobs finished, by outcome.", 2,
                                 (const char *[]){"pool", "outcome"}, &jobs);
  if (!err)
    err = weft_histogram_vec_new(NULL, "example_job_wait_seconds", "Time jobs spent queued.",
                                 14, buckets, 1, (const char *[]){"pool"}, &wait);
  if (!err)
    err = weft_histogram_vec_new(NULL, "example_job_run_seconds", "Time jobs took to run.", 14,
                                 buckets, 1, (const char *[]){"pool"}, &run);
  if (!err)
    err = weft_gauge_vec_new(NULL, "example_queue_length", "Jobs waiting in each pool's queue.",
                             1, (const char *[]){"pool"}, &queued);
  if (err)
    return err;
  for (int i = 0; i < 2; i++) {
    struct pool *p = &app->pools[i];
    p->ok = weft_counter_vec_with(jobs, p->name, "ok");
    p->late = weft_counter_vec_with(jobs, p->name, "late");
    p->wait = weft_histogram_vec_with(wait, p->name);
    p->run = weft_histogram_vec_with(run, p->name);
    p->queued = weft_gauge_vec_with(queued, p->name);
  }
  return 0;
}

static int spawn(struct app *app, struct pool *p, void (*fn)(void *), const char *name)
{
  struct worker_arg *a = malloc(sizeof *a);
  if (!a)
    return -ENOMEM;
  *a = (struct worker_arg){app, p};
  weft_wg_add(&app->running, 1);
  int err = weft_go_named(fn, a, name);
  if (err) {
    weft_wg_done(&app->running);
    free(a);
  }
  return err;
}

static int start_load(struct app *app)
{
  int err = make_metrics(app);
  for (int i = 0; i < 2 && !err; i++) {
    struct pool *p = &app->pools[i];
    p->jobs = weft_chan_new(sizeof(int64_t), 64);
    if (!p->jobs)
      return -ENOMEM;
    for (int k = 0; k < p->workers && !err; k++)
      err = spawn(app, p, worker_main, p->name);
    if (!err)
      err = spawn(app, p, producer, "producer");
    if (err)
      weft_chan_close(p->jobs); /* no producer to close it: let the workers end */
  }
  app->never = weft_chan_new(sizeof(int), 0);
  for (int i = 0; i < LEAKY && !err && app->never; i++) {
    weft_wg_add(&app->parked, 1);
    if ((err = weft_go_named(parked, app, "forgotten")) != 0)
      weft_wg_done(&app->parked);
  }
  return err;
}

struct opts {
  const char *addr;
  int seconds;
};

static int app_main(void *arg)
{
  struct opts *o = arg;
  struct app app = {
      .pools = {{.name = "resize", .workers = 8, .work_ns = MS(4), .burst = 80},
                {.name = "encode", .workers = 4, .work_ns = US(1500), .burst = 60}},
      .seed = (uint64_t)weft_now() | 1,
  };
  weft_wg_init(&app.running);
  weft_wg_init(&app.parked);
  /* app.ctx: done on SIGINT or SIGTERM, after the given seconds, or on a start error. */
  weft_signal_ctx *sc = weft_signal_ctx_new(NULL, NULL, 0);
  weft_ctx *parent = sc ? weft_signal_ctx_ctx(sc) : NULL;
  app.ctx = o->seconds > 0 ? weft_ctx_with_timeout(parent, MS(1000) * o->seconds)
                           : weft_ctx_with_cancel(parent);
  weft_debug_server *srv = NULL;
  int err = sc && app.ctx ? start_load(&app) : -ENOMEM;
  if (!err)
    err = weft_debug_server_start(&(weft_debug_server_options){.addr = o->addr}, &srv);
  if (err) {
    fprintf(stderr, "debug_server: %s\n", weft_strerror(err));
    weft_ctx_cancel(app.ctx);
  } else {
    printf("debug server: http://%s/debug/dashboard\n", weft_debug_server_addr(srv));
    fflush(stdout);
    weft_ctx_wait(app.ctx, WEFT_NO_DEADLINE);
  }
  /* Stop: producers see ctx done and close their queues; workers drain them. */
  weft_wg_wait(&app.running);
  if (app.never)
    weft_chan_close(app.never);
  weft_wg_wait(&app.parked);
  int stop = weft_debug_server_stop(srv, weft_now() + MS(5000));
  for (int i = 0; i < 2; i++)
    weft_chan_release(app.pools[i].jobs);
  weft_chan_release(app.never);
  weft_ctx_release(app.ctx);
  if (sc)
    weft_signal_ctx_stop(sc);
  if (!err)
    printf("stopped%s\n", stop ? " (some requests were cut)" : "");
  return err ? 1 : 0;
}

int main(int argc, char **argv)
{
  struct opts o = {.addr = argc > 1 ? argv[1] : "6060",
                   .seconds = argc > 2 ? atoi(argv[2]) : 0};
  return weft_main(app_main, &o);
}
