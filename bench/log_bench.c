/* weft-log-bench: what a log call costs (weft/log.h).
 *
 *   weft-log-bench [iterations]
 *
 * Prints nanoseconds per call: a disabled call (DEBUG under an INFO handler) with four
 * attributes, and enabled calls written to /dev/null by the text and JSON handlers, with
 * and without a context carrying a trace and an attribute, and from four threads at once
 * (records are written under the handler's lock). Each figure is the best of five rounds. */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "weft/weft.h"

static long iters = 1000000;

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Keep the compiler from proving the disabled path has no effect per iteration. */
static volatile int64_t sink;

static double run_once(weft_logger *l, weft_ctx *ctx, int level, long n)
{
  double t0 = now_s();
  for (long i = 0; i < n; i++)
    weft_log(l, ctx, level, "request served", WEFT_STR("method", "GET"),
             WEFT_STR("path", "/api/v1/items"), WEFT_INT("status", 200 + (sink & 1)),
             WEFT_DUR("took", 1234567 + i));
  return (now_s() - t0) * 1e9 / (double)n;
}

/* The best of five rounds: the machine may be busy with other work. */
static double run(weft_logger *l, weft_ctx *ctx, int level, long n)
{
  double best = 1e18;
  for (int r = 0; r < 5; r++) {
    double ns = run_once(l, ctx, level, n / 5);
    best = ns < best ? ns : best;
  }
  return best;
}

struct par {
  weft_logger *l;
  long n;
};

static void *par_run(void *arg)
{
  struct par *p = arg;
  run_once(p->l, NULL, WEFT_LOG_INFO, p->n);
  return NULL;
}

static double run_threads(weft_logger *l, int nthreads, long n)
{
  pthread_t th[16];
  struct par p = {l, n};
  double t0 = now_s();
  for (int i = 0; i < nthreads; i++)
    pthread_create(&th[i], NULL, par_run, &p);
  for (int i = 0; i < nthreads; i++)
    pthread_join(th[i], NULL);
  return (now_s() - t0) * 1e9 / (double)(n * nthreads); /* wall ns per record */
}

int main(int argc, char **argv)
{
  if (argc > 1)
    iters = atol(argv[1]);
  int devnull = open("/dev/null", O_WRONLY);
  weft_log_options o = {.level = WEFT_LOG_INFO, .fd = devnull};
  weft_log_handler *text = weft_log_text_handler_new(&o), *json = weft_log_json_handler_new(&o);
  weft_logger *lt = weft_logger_new(text), *lj = weft_logger_new(json);
  weft_trace tr;
  weft_trace_new(&tr);
  weft_ctx *tctx = weft_trace_ctx_with(NULL, &tr);
  weft_ctx *ctx = weft_log_ctx_with(tctx, WEFT_STR("request_id", "b7ad6b71"));

  printf("disabled (DEBUG under INFO), 4 attrs: %6.2f ns/call\n",
         run(lt, NULL, WEFT_LOG_DEBUG, iters * 10));
  printf("text -> /dev/null, 4 attrs:           %6.1f ns/call\n",
         run(lt, NULL, WEFT_LOG_INFO, iters));
  printf("json -> /dev/null, 4 attrs:           %6.1f ns/call\n",
         run(lj, NULL, WEFT_LOG_INFO, iters));
  printf("text, ctx with trace + 1 attr:        %6.1f ns/call\n",
         run(lt, ctx, WEFT_LOG_INFO, iters));
  printf("json, ctx with trace + 1 attr:        %6.1f ns/call\n",
         run(lj, ctx, WEFT_LOG_INFO, iters));
  printf("json, 4 threads at once:              %6.1f ns/record (wall)\n",
         run_threads(lj, 4, iters / 4));

  weft_ctx_release(ctx);
  weft_ctx_release(tctx);
  weft_logger_release(lt);
  weft_logger_release(lj);
  weft_log_handler_release(text);
  weft_log_handler_release(json);
  close(devnull);
  return 0;
}
