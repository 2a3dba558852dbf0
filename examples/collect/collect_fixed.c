/* collect_fixed.c: the crawler story's bug fixed (collect_buggy.c has the bug).
 *
 * The same fetchers, the same deadline. Three rules make it right:
 *
 *   1. The crawl's deadline is a context, and every fetcher honours it: a fetcher still
 *      running at the deadline stops and reports "cancelled". Every URL started yields
 *      exactly one result, late or not (the crawler contract's rule).
 *   2. Only the side that sends may close, and only once every sender is done: a closer
 *      coroutine waits on the fetchers' wait group, then closes the results channel.
 *      No fetcher can send after that, so no send ever meets a closed channel.
 *   3. One collector coroutine owns the output: it alone receives and prints, until the
 *      channel is closed and drained. Nobody else writes a result line.
 *
 *   build/release/examples/collect/collect_fixed [fetchers] [deadline_ms]
 *
 * Exit status 0 when every fetcher's result was collected exactly once, 1 otherwise. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weft/weft.h>

struct result {
  int fetcher; /* who fetched */
  int ms;      /* how long it took (or would have) */
  int err;     /* 0, or the context's error when the deadline cut the fetch short */
};

struct crawl {
  int n;              /* fetchers */
  int deadline_ms;    /* the crawl's deadline */
  weft_ctx *ctx;      /* done at the deadline; every fetcher honours it */
  weft_chan *results; /* struct result; closed by closer() only */
  weft_wg fetchers;   /* the senders: closer() waits for them */
  weft_wg collected;  /* the collector: main waits for it */
  char *seen;         /* per fetcher: results collected (owned by the collector) */
  int got, cancelled; /* owned by the collector; main reads them after it is done */
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

/* A sender: one result, always sent (the channel cannot be closed before we are done). */
static void fetch(void *arg)
{
  struct fetcher *f = arg;
  struct result r = {f->id, latency_ms(f->id, f->c->deadline_ms), 0};
  r.err = weft_sleep_ctx(f->c->ctx, (int64_t)r.ms * 1000000); /* the HTTP request */
  int err = weft_chan_send(f->c->results, &r, WEFT_NO_DEADLINE);
  if (err != 0) /* cannot happen: nobody closes while we run */
    fprintf(stderr, "fetcher %d: send failed: %s\n", f->id, weft_strerror(err));
  weft_wg_done(&f->c->fetchers);
}

/* Closes the results channel once, after the last sender is done. */
static void closer(void *arg)
{
  struct crawl *c = arg;
  weft_wg_wait(&c->fetchers);
  weft_chan_close(c->results);
}

/* The one owner of the output: receives until the channel is closed and drained. */
static void collector(void *arg)
{
  struct crawl *c = arg;
  struct result r;
  while (weft_chan_recv(c->results, &r, WEFT_NO_DEADLINE) == 0) {
    if (r.err)
      printf("fetcher %d: cancelled at the deadline (%s)\n", r.fetcher, weft_errname(r.err));
    else
      printf("fetcher %d: done in %d ms\n", r.fetcher, r.ms);
    c->seen[r.fetcher]++;
    c->got++;
    c->cancelled += r.err != 0;
  }
  weft_wg_done(&c->collected);
}

static int check(const struct crawl *c)
{
  for (int i = 0; i < c->n; i++)
    if (c->seen[i] != 1) {
      fprintf(stderr, "collect_fixed: fetcher %d has %d results, want 1\n", i, c->seen[i]);
      return 1;
    }
  printf("main: all %d results collected (%d done, %d cancelled at the deadline), "
         "none lost\n",
         c->got, c->got - c->cancelled, c->cancelled);
  return 0;
}

static int fixed_main(void *arg)
{
  struct crawl *c = arg;
  struct fetcher *fs = calloc((size_t)c->n, sizeof *fs);
  c->seen = calloc((size_t)c->n, 1);
  c->results = weft_chan_new(sizeof(struct result), 0);
  c->ctx = weft_ctx_with_timeout(NULL, (int64_t)c->deadline_ms * 1000000);
  int rc = 2;
  if (!fs || !c->seen || !c->results || !c->ctx)
    goto out;
  weft_wg_init(&c->fetchers);
  weft_wg_init(&c->collected);
  weft_wg_add(&c->collected, 1);
  weft_go_named(collector, c, "collector");
  weft_wg_add(&c->fetchers, c->n); /* before closer can wait, and before any fetcher runs */
  for (int i = 0; i < c->n; i++) {
    fs[i] = (struct fetcher){c, i};
    weft_go_named(fetch, &fs[i], "fetcher");
  }
  weft_go_named(closer, c, "closer");
  weft_wg_wait(&c->collected); /* the collector ends when the channel is closed */
  rc = check(c);
out:
  weft_ctx_release(c->ctx);
  weft_chan_release(c->results);
  free(c->seen);
  free(fs);
  return rc;
}

int main(int argc, char **argv)
{
  struct crawl c;
  memset(&c, 0, sizeof c);
  c.n = argc > 1 ? atoi(argv[1]) : 20;
  c.deadline_ms = argc > 2 ? atoi(argv[2]) : 200;
  if (c.n < 1 || c.n > 100000 || c.deadline_ms < 1) {
    fprintf(stderr, "usage: collect_fixed [fetchers 1..100000] [deadline_ms >= 1]\n");
    return 2;
  }
  return weft_main(fixed_main, &c);
}
