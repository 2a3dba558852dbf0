/* collect_buggy.c: the crawler story's bug, and what weft does with it.
 *
 * The story: a crawler starts one fetcher per URL; each sends its result on a shared
 * results channel. main reads results until the crawl's deadline, then closes the channel
 * and prints the summary. But the slow fetchers are still running: when they finish they
 * send on the closed channel. In Go that send panics ("send on closed channel") and takes
 * the whole crawl down, results already gathered included. In C with a hand-rolled queue
 * it is a use-after-free or a lost write, found much later, if ever.
 *
 * With weft the send returns -EPIPE: each late fetcher knows its result was lost and
 * says so, and the program exits 1 with a clear count. Nothing crashes, but the program
 * is still wrong: results are lost, and the URLs they belong to get no line at all.
 * collect_fixed.c shows the fix: one collector owns the channel, and it is closed only
 * after every sender is done.
 *
 *   build/release/examples/collect/collect_buggy [fetchers] [deadline_ms]
 *
 * Every fourth fetcher is slow (it takes twice the deadline), so some results always
 * come too late. Exit status: 1 when a result was lost (the bug shows), 0 otherwise. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include <weft/weft.h>

struct result {
  int fetcher; /* who fetched */
  int ms;      /* how long it took */
};

struct crawl {
  weft_chan *results; /* struct result, unbuffered; closed by main (the bug) */
  weft_wg fetchers;   /* only so that main can count the losses before it exits */
  atomic_int lost;    /* results whose send failed */
  int n;              /* fetchers */
  int deadline_ms;    /* how long main gathers results */
};

struct fetcher {
  struct crawl *c;
  int id;
};

/* A fetch that takes a few milliseconds, or far past the deadline for every fourth. */
static int latency_ms(int id, int deadline_ms)
{
  return id % 4 == 3 ? 2 * deadline_ms : 1 + (id * 7) % 10;
}

static void fetch(void *arg)
{
  struct fetcher *f = arg;
  struct result r = {f->id, latency_ms(f->id, f->c->deadline_ms)};
  weft_sleep((int64_t)r.ms * 1000000); /* stands in for the HTTP request */
  int err = weft_chan_send(f->c->results, &r, WEFT_NO_DEADLINE);
  if (err == -EPIPE) { /* Go would panic here; weft hands back the error */
    fprintf(stderr, "send on closed channel: result of fetcher %d lost (%s)\n", f->id,
            weft_errname(err));
    atomic_fetch_add(&f->c->lost, 1);
  }
  weft_wg_done(&f->c->fetchers);
}

/* Gather results until the deadline, then close the channel: THE BUG. The fetchers still
 * running own sends on it, and nobody waited for them. */
static int gather_then_close(struct crawl *c, int n)
{
  int64_t deadline = weft_now() + (int64_t)c->deadline_ms * 1000000;
  int got = 0;
  struct result r;
  while (got < n && weft_chan_recv(c->results, &r, deadline) == 0) {
    printf("fetcher %d: done in %d ms\n", r.fetcher, r.ms);
    got++;
  }
  printf("main: deadline passed with %d of %d results; closing the results channel "
         "while %d fetchers still run\n",
         got, n, n - got);
  weft_chan_close(c->results);
  return got;
}

static int buggy_main(void *arg)
{
  struct crawl *c = arg;
  int n = c->n;
  struct fetcher *fs = calloc((size_t)n, sizeof *fs);
  c->results = weft_chan_new(sizeof(struct result), 0);
  if (!fs || !c->results) {
    free(fs);
    weft_chan_release(c->results);
    return 2;
  }
  weft_wg_init(&c->fetchers);
  weft_wg_add(&c->fetchers, n);
  for (int i = 0; i < n; i++) {
    fs[i] = (struct fetcher){c, i};
    weft_go_named(fetch, &fs[i], "fetcher");
  }
  int got = gather_then_close(c, n);
  weft_wg_wait(&c->fetchers); /* only to count the damage before exiting */
  int lost = atomic_load(&c->lost);
  printf("main: %d results collected, %d lost to sends on a closed channel\n", got, lost);
  if (lost > 0)
    fprintf(stderr,
            "collect_buggy: %d fetchers sent on the closed results channel; "
            "see collect_fixed.c for the fix\n",
            lost);
  weft_chan_release(c->results);
  free(fs);
  return lost > 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
  struct crawl c = {.n = argc > 1 ? atoi(argv[1]) : 20,
                    .deadline_ms = argc > 2 ? atoi(argv[2]) : 200};
  if (c.n < 1 || c.n > 100000 || c.deadline_ms < 1) {
    fprintf(stderr, "usage: collect_buggy [fetchers 1..100000] [deadline_ms >= 1]\n");
    return 2;
  }
  return weft_main(buggy_main, &c);
}
