/* worker_pool.c: a worker pool with backpressure (weft/pool.h).
 *
 * A pool of 4 workers and a queue of 8 "confirms payments" (each takes 20 ms). A burst of
 * 30 requests arrives at once: try_submit queues what fits and refuses the rest at once
 * with -EAGAIN, which a server answers with 429 instead of letting work pile up. The
 * accepted requests get their results back through their job handles. Then a submit that
 * waits for room (under a deadline), the pool's metrics, and a shutdown whose deadline
 * passes with work still queued: the queued jobs are abandoned and reported, the running
 * ones see the pool's context cancelled.
 *
 *   build/release/examples/worker_pool */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weft/weft.h>

#define MS(n) ((int64_t)(n)*1000000)

/* A job: "confirm" payment number arg; returns its amount in cents, or the error. */
static long confirm(weft_ctx *ctx, void *arg)
{
  long id = (long)(intptr_t)arg;
  int rc = weft_sleep_ctx(ctx, MS(20)); /* the card processor; stops if the pool is shut */
  return rc ? rc : 1000 + id;
}

static void burst(weft_pool *pool)
{
  weft_pool_job *jobs[30];
  int accepted = 0, rejected = 0;
  for (long i = 0; i < 30; i++) {
    int rc = weft_pool_try_submit(pool, confirm, (void *)(intptr_t)i, &jobs[i]);
    if (rc == 0)
      accepted++;
    else if (rc == -EAGAIN)
      rejected++; /* a server answers 429 Too Many Requests, Retry-After: 1 */
  }
  printf("burst of 30: %d accepted, %d rejected at once (queue full)\n", accepted, rejected);
  long total = 0;
  for (int i = 0; i < 30; i++) {
    long cents;
    if (jobs[i] && weft_pool_job_wait(jobs[i], NULL, &cents) == 0 && cents > 0)
      total += cents;
    weft_pool_job_free(jobs[i]);
  }
  printf("results handed back: %d payments, %ld cents in all\n", accepted, total);
}

/* Keep 4 workers busy and 8 jobs queued: submit waits while the queue is full, so the
 * last four calls return only as workers take jobs off the queue. */
static void fill(weft_pool *pool)
{
  for (long i = 0; i < 12; i++)
    weft_pool_submit(pool, NULL, confirm, (void *)(intptr_t)i, NULL);
}

static void waiting_submit(weft_pool *pool)
{
  fill(pool);
  weft_ctx *ctx = weft_ctx_with_timeout(NULL, MS(500));
  int64_t t0 = weft_now();
  weft_pool_job *job;
  int rc = weft_pool_submit(pool, ctx, confirm, (void *)(intptr_t)99, &job);
  printf("submit into a full queue waited %.0f ms for room: %s\n", (weft_now() - t0) / 1e6,
         rc ? weft_strerror(rc) : "queued");
  long cents = 0;
  if (rc == 0) {
    weft_pool_job_wait(job, ctx, &cents);
    weft_pool_job_free(job);
  }
  printf("its result: %ld\n", cents);
  weft_ctx_release(ctx);
}

static void print_pool_metrics(weft_metrics_registry *reg)
{
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  weft_metrics_write_prometheus(reg, f);
  fclose(f);
  printf("metrics (a few lines):\n");
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
    if (strstr(line, "jobs_total{") || strstr(line, "queue_capacity{") ||
        strstr(line, "queue_seconds_count") || strstr(line, "work_seconds_sum"))
      printf("  %s\n", line);
  free(text);
}

static int pool_main(void *arg)
{
  (void)arg;
  weft_metrics_registry *reg = weft_metrics_registry_new();
  weft_pool *pool;
  int rc = weft_pool_new(
      &(weft_pool_options){
          .workers = 4, .queue_capacity = 8, .name = "payments", .metrics = reg},
      &pool);
  if (rc) {
    fprintf(stderr, "weft_pool_new: %s\n", weft_strerror(rc));
    return 1;
  }
  burst(pool);
  waiting_submit(pool);

  fill(pool); /* 4 run, 8 wait: 60 ms of work */
  long abandoned = weft_pool_shutdown(pool, weft_now() + MS(30));
  weft_pool_stats s;
  weft_pool_stats_read(pool, &s);
  printf("shutdown with a 30 ms deadline: %ld queued jobs abandoned (never run, their "
         "waiters get -ECANCELED)\n",
         abandoned);
  printf("stats: completed %lu, failed %lu (cancelled while running), rejected %lu, "
         "cancelled %lu, workers left %d\n",
         (unsigned long)s.completed, (unsigned long)s.failed, (unsigned long)s.rejected,
         (unsigned long)s.cancelled, s.workers);
  print_pool_metrics(reg);
  weft_pool_free(pool);
  weft_metrics_registry_free(reg);
  return 0;
}

int main(void)
{
  return weft_main(pool_main, NULL);
}
