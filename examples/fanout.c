/* fanout.c: the first weft program to read.
 *
 * main spawns a few thousand coroutines that each "fetch" (sleep a few milliseconds,
 * standing in for network I/O) and send their latency back on a channel (fan-in); a wait
 * group joins them. Two coroutines talk over a pipe through the poller; one call runs on
 * the blocking pool. Then it prints a dump of what is still alive (only main) and figures.
 *
 *   build/release/examples/fanout [coroutines]      (WEFT_PROCS sets the thread count) */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <weft/weft.h>

struct job {
  int id;
  weft_chan *results; /* int: each fetch's latency in ms */
  weft_wg *wg;
};

static void fetch(void *arg)
{
  struct job *j = arg;
  int ms = 1 + (j->id * 7919) % 20; /* deterministic "latency" of 1..20 ms */
  weft_sleep((int64_t)ms * 1000000);
  weft_chan_send(j->results, &ms, WEFT_NO_DEADLINE);
  weft_wg_done(j->wg);
}

struct pipe_pair {
  int fds[2];
  weft_wg *wg;
};

static void pipe_reader(void *arg)
{
  struct pipe_pair *p = arg;
  char buf[64];
  ssize_t n = weft_read(p->fds[0], buf, sizeof buf - 1, weft_now() + 1000000000);
  if (n > 0) {
    buf[n] = '\0';
    printf("reader coroutine %llu got \"%s\" through the poller\n",
           (unsigned long long)weft_self_id(), buf);
  }
  weft_wg_done(p->wg);
}

static long slow_syscall(void *arg)
{
  (void)arg;
  usleep(20000); /* a call that really blocks its thread */
  return 42;
}

static int fanout_main(void *arg)
{
  int n = *(int *)arg;
  long total_ms = 0;
  weft_wg wg = WEFT_WG_INIT;
  weft_chan *results = weft_chan_new(sizeof(int), 64); /* buffered: fetchers rarely wait */
  struct job *jobs = calloc((size_t)n, sizeof *jobs);
  int64_t start = weft_now();

  weft_wg_add(&wg, n);
  for (int i = 0; i < n; i++) {
    jobs[i] = (struct job){i, results, &wg};
    weft_go_named(fetch, &jobs[i], "fetch");
  }

  struct pipe_pair pp = {.wg = &wg};
  if (pipe(pp.fds) == 0) {
    weft_wg_add(&wg, 1);
    weft_go_named(pipe_reader, &pp, "pipe-reader");
    weft_sleep(1000000);
    weft_write(pp.fds[1], "hello", 5, WEFT_NO_DEADLINE);
  }
  printf("blocking call returned %ld while the scheduler kept running\n",
         weft_blocking(slow_syscall, NULL));

  for (int i = 0, ms; i < n; i++) /* fan-in: one result per fetch */
    if (weft_chan_recv(results, &ms, WEFT_NO_DEADLINE) == 0)
      total_ms += ms;
  weft_wg_wait(&wg);
  weft_chan_release(results);
  double elapsed_ms = (double)(weft_now() - start) / 1e6;
  printf("%d coroutines slept %ld ms in total; wall time %.1f ms on %d threads\n", n, total_ms,
         elapsed_ms, weft_procs());
  printf("still alive (the dump weft prints on a deadlock or a leak):\n");
  weft_dump(stdout);
  weft_close(pp.fds[0]);
  weft_close(pp.fds[1]);
  free(jobs);
  return 0;
}

int main(int argc, char **argv)
{
  int n = argc > 1 ? atoi(argv[1]) : 10000;
  if (n < 1) {
    fprintf(stderr, "usage: fanout [coroutines >= 1]\n");
    return 2;
  }
  int rc = weft_main(fanout_main, &n);
  return rc == 0 ? 0 : 1;
}
