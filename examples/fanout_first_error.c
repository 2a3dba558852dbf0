/* fanout_first_error.c: the error group example (Go: golang.org/x/sync/errgroup):
 * fan-out/fan-in under a weft_group (weft/group.h); the first failure cancels the rest.
 *
 *   examples/fanout_first_error [jobs [failing_job]]     defaults: 40 jobs, job 13 fails
 *
 * (Job failing_job fails with -ECONNRESET, as a fetch from a flaky server might; a number
 * outside 1..jobs lets every job succeed.)
 *
 * A feeder sends job numbers on a channel; WORKERS workers take jobs from it and "process"
 * each one (a timer of a few milliseconds stands in for real work) and send the result to
 * a collector; main sums what comes back (fan-in). All of them run in one error group, so:
 *
 * - the worker that gets the failing job returns an error; the group cancels its context
 *   with that error as the cause;
 * - everyone else selects on weft_ctx_done(ctx) beside their channel or timer, so they see
 *   the cancel at once, even in the middle of a job, and return early;
 * - weft_group_wait returns that first error once every coroutine has returned.
 *
 * Read it top to bottom: feeder, worker, collector, main. */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include <weft/ctx.h>
#include <weft/error.h>
#include <weft/group.h>
#include <weft/runtime.h>
#include <weft/sync.h>

#define WORKERS 4
#define MS(n)   ((int64_t)(n)*1000000)

struct pipeline {
  weft_chan *jobs;    /* int job numbers: feeder -> workers */
  weft_chan *results; /* int squares: workers -> collector */
  int njobs, failing;
  atomic_int next_worker;
  atomic_int done_jobs, abandoned_jobs;
};

/* Send every job number, unless the group is cancelled first. Closing the channel tells
 * the workers there is no more work. */
static int feeder(weft_ctx *ctx, void *arg)
{
  struct pipeline *p = arg;
  for (int job = 1; job <= p->njobs; job++) {
    weft_select_case cs[2] = {
        {.ch = p->jobs, .dir = WEFT_SELECT_SEND, .elem = &job},
        {.ch = weft_ctx_done(ctx), .dir = WEFT_SELECT_RECV},
    };
    if (weft_select(cs, 2, 0, WEFT_NO_DEADLINE) == 1) {
      printf("feeder: cancelled after sending %d of %d jobs\n", job - 1, p->njobs);
      break;
    }
  }
  weft_chan_close(p->jobs);
  return 0;
}

/* "Process" one job: wait for its timer, or for the cancel, whichever comes first.
 * Returns 0 when the work is done, else the context's error. */
static int work_on(weft_ctx *ctx, int job)
{
  weft_chan *timer = weft_after(MS(2 + job % 5));
  weft_select_case cs[2] = {
      {.ch = timer, .dir = WEFT_SELECT_RECV},
      {.ch = weft_ctx_done(ctx), .dir = WEFT_SELECT_RECV},
  };
  int which = weft_select(cs, 2, 0, WEFT_NO_DEADLINE);
  weft_chan_release(timer); /* stops the timer if it has not fired */
  return which == 0 ? 0 : weft_ctx_err(ctx);
}

static int worker(weft_ctx *ctx, void *arg)
{
  struct pipeline *p = arg;
  int me = atomic_fetch_add(&p->next_worker, 1), job, handled = 0;
  for (;;) {
    weft_select_case cs[2] = {
        {.ch = p->jobs, .dir = WEFT_SELECT_RECV, .elem = &job},
        {.ch = weft_ctx_done(ctx), .dir = WEFT_SELECT_RECV},
    };
    int which = weft_select(cs, 2, 0, WEFT_NO_DEADLINE);
    if (which == 0 && cs[0].result == -EPIPE)
      break; /* no more jobs */
    if (which == 1) {
      printf("worker %d: group cancelled (cause: %s); stopping after %d jobs\n", me,
             weft_strerror(weft_ctx_cause(ctx)), handled);
      return 0; /* not an error of ours: the group already has the first one */
    }
    if (job == p->failing) {
      printf("worker %d: job %d failed: %s\n", me, job, weft_strerror(-ECONNRESET));
      return -ECONNRESET; /* the group's first error: cancels everyone */
    }
    if (work_on(ctx, job) != 0) {
      atomic_fetch_add(&p->abandoned_jobs, 1);
      printf("worker %d: abandoned job %d halfway (cause: %s)\n", me, job,
             weft_strerror(weft_ctx_cause(ctx)));
      return 0;
    }
    int square = job * job;
    weft_select_case out[2] = {
        {.ch = p->results, .dir = WEFT_SELECT_SEND, .elem = &square},
        {.ch = weft_ctx_done(ctx), .dir = WEFT_SELECT_RECV},
    };
    if (weft_select(out, 2, 0, WEFT_NO_DEADLINE) == 0) {
      atomic_fetch_add(&p->done_jobs, 1);
      handled++;
    }
  }
  printf("worker %d: no more jobs after %d\n", me, handled);
  return 0;
}

struct collected {
  struct pipeline *p;
  long sum;
  int count;
  weft_wg done;
};

/* Fan-in: add up results until the channel closes (main closes it after the workers). */
static void collector(void *arg)
{
  struct collected *c = arg;
  int square;
  while (weft_chan_recv(c->p->results, &square, WEFT_NO_DEADLINE) == 0) {
    c->sum += square;
    c->count++;
  }
  weft_wg_done(&c->done);
}

static int fanout_main(void *arg)
{
  struct pipeline *p = arg;
  p->jobs = weft_chan_new(sizeof(int), 0);
  p->results = weft_chan_new(sizeof(int), WORKERS);

  /* The collector is outside the group: it ends when results closes, not on cancel. */
  struct collected c = {.p = p, .done = WEFT_WG_INIT};
  weft_wg_add(&c.done, 1);
  weft_go(collector, &c);

  weft_group *g = weft_group_new(NULL);
  weft_group_go(g, feeder, p);
  for (int i = 0; i < WORKERS; i++)
    weft_group_go(g, worker, p);
  int err = weft_group_wait(g); /* all of them have returned */

  weft_chan_close(p->results); /* no more senders: let the collector drain and finish */
  weft_wg_wait(&c.done);
  printf("\ngroup error: %s (%s)\n", weft_errname(err), weft_strerror(err));
  printf("collected %d results (sum of squares %ld); %d of %d jobs done, %d abandoned\n",
         c.count, c.sum, atomic_load(&p->done_jobs), p->njobs, atomic_load(&p->abandoned_jobs));
  weft_group_free(g);
  weft_chan_release(p->jobs);
  weft_chan_release(p->results);
  /* The demo worked if the failure (when there was one) became the group's error. */
  bool fails = p->failing >= 1 && p->failing <= p->njobs;
  return err == (fails ? -ECONNRESET : 0) ? 0 : 1;
}

int main(int argc, char **argv)
{
  struct pipeline p = {.njobs = argc > 1 ? atoi(argv[1]) : 40,
                       .failing = argc > 2 ? atoi(argv[2]) : 13};
  if (p.njobs < 1) {
    fprintf(stderr, "usage: %s [jobs [failing_job]]\n", argv[0]);
    return 2;
  }
  int rc = weft_main(fanout_main, &p);
  return rc < 0 ? 2 : rc;
}
