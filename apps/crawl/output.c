/* output.c: the collector, the one coroutine that owns the output.
 *
 * Workers send each finished crawl_result (a pointer, ownership with it) on the results
 * channel; the collector is its only receiver. It writes one JSON line per result,
 * counts them for the summary, and on a terminal redraws a progress line on stderr every
 * 500 ms. It never closes the channel: crawl.c does that once every producer has
 * finished, and the collector ends when the channel is closed and drained, so no result
 * sent is ever lost. Its counters are its own until crawl_collector_wait, which reads
 * them after the coroutine has ended (the wait group orders the two). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "crawl.h"

const char *const crawl_error_names[] = {"invalid_url", "dns",
                                         "connect",     "tls",
                                         "timeout",     "too_many_redirects",
                                         "http_status", "robots_disallowed",
                                         "decode",      "cancelled",
                                         NULL};

struct crawl_collector {
  weft_chan *results; /* our reference; we receive, never close */
  FILE *out;          /* owned by main; written only here */
  bool progress;      /* stderr is a terminal */
  crawl_progress_fn progress_fn;
  void *progress_arg;
  crawl_totals t; /* this coroutine's until done */
  weft_wg done;   /* the collector coroutine has ended */
};

static json_t *str_or_empty(const char *s)
{
  return json_string(s ? s : "");
}

/* The JSON line for r (without the newline), or NULL when out of memory. */
static char *encode(const crawl_result *r)
{
  json_t *o = json_object();
  if (!o)
    return NULL;
  json_object_set_new(o, "url", str_or_empty(r->url));
  json_object_set_new(o, "final_url", str_or_empty(r->final_url));
  json_object_set_new(o, "status", json_integer(r->status));
  json_object_set_new(o, "content_type", str_or_empty(r->content_type));
  json_object_set_new(o, "bytes", json_integer(r->bytes));
  json_object_set_new(o, "duration_ms", json_real(r->duration_ms));
  json_object_set_new(o, "attempts", json_integer(r->attempts));
  json_object_set_new(o, "depth", json_integer(r->depth));
  json_object_set_new(o, "title", str_or_empty(r->title));
  json_object_set_new(o, "links", json_integer(r->nlinks));
  json_object_set_new(o, "truncated", json_boolean(r->truncated));
  if (r->error)
    json_object_set_new(o, "error", json_string(r->error));
  char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));
  json_decref(o);
  return s;
}

static void count(crawl_totals *t, const crawl_result *r)
{
  t->results++;
  t->bytes += r->bytes;
  if (!r->error) {
    t->ok++;
    return;
  }
  t->failed++;
  for (int i = 0; crawl_error_names[i]; i++)
    if (strcmp(crawl_error_names[i], r->error) == 0)
      t->by_error[i]++;
}

static void emit(crawl_collector *c, crawl_result *r)
{
  count(&c->t, r);
  char *line = encode(r);
  if (line) {
    size_t n = strlen(line);
    line[n] = '\n'; /* jansson's buffer has the NUL there: reuse it */
    if (fwrite(line, 1, n + 1, c->out) != n + 1 && !c->t.out_err)
      c->t.out_err = -EIO;
    free(line);
  }
  crawl_result_free(r);
  /* Flush whenever we catch up, so lines appear as the crawl goes. */
  if (weft_chan_len(c->results) == 0 && fflush(c->out) != 0 && !c->t.out_err)
    c->t.out_err = -EIO;
}

static void draw_progress(crawl_collector *c)
{
  long inflight = 0, queued = 0;
  c->progress_fn(c->progress_arg, &inflight, &queued);
  fprintf(stderr, "\r\033[Kweft-crawl: %ld done, %ld in flight, %ld queued, %ld errors",
          c->t.results, inflight, queued, c->t.failed);
  fflush(stderr);
}

static void collect(void *arg)
{
  crawl_collector *c = arg;
  weft_ticker *tick = c->progress ? weft_ticker_new(500 * (int64_t)1000000) : NULL;
  for (;;) {
    crawl_result *r = NULL;
    int64_t now;
    weft_select_case cases[2] = {
        {.ch = c->results, .dir = WEFT_SELECT_RECV, .elem = &r},
        {.ch = tick ? weft_ticker_chan(tick) : NULL, .dir = WEFT_SELECT_RECV, .elem = &now},
    };
    int i = weft_select(cases, 2, 0, WEFT_NO_DEADLINE);
    if (i == 1) {
      draw_progress(c);
      continue;
    }
    if (i != 0 || cases[0].result == -EPIPE)
      break; /* closed and drained: every producer is done */
    emit(c, r);
  }
  weft_ticker_stop(tick);
  if (c->progress)
    fputs("\r\033[K", stderr);
  if (fflush(c->out) != 0 && !c->t.out_err)
    c->t.out_err = -EIO;
  weft_wg_done(&c->done);
}

crawl_collector *crawl_collector_start(weft_chan *results, FILE *out, bool progress,
                                       crawl_progress_fn progress_fn, void *arg)
{
  crawl_collector *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  c->results = weft_chan_retain(results);
  c->out = out;
  c->progress = progress;
  c->progress_fn = progress_fn;
  c->progress_arg = arg;
  weft_wg_init(&c->done);
  weft_wg_add(&c->done, 1);
  if (weft_go_named(collect, c, "collector") != 0) {
    weft_chan_release(c->results);
    free(c);
    return NULL;
  }
  return c;
}

void crawl_collector_wait(crawl_collector *c, crawl_totals *t)
{
  weft_wg_wait(&c->done);
  *t = c->t;
  weft_chan_release(c->results);
  free(c);
}

void crawl_summary(const crawl_totals *t, long never_started, double elapsed_s,
                   bool interrupted)
{
  char kinds[512] = "";
  size_t n = 0;
  for (int i = 0; crawl_error_names[i]; i++) {
    if (t->by_error[i] && n < sizeof kinds)
      n += (size_t)snprintf(kinds + n, sizeof kinds - n, "%s%s=%ld", n ? " " : "",
                            crawl_error_names[i], t->by_error[i]);
  }
  fprintf(stderr,
          "weft-crawl: %ld results, %ld ok, %ld failed [%s], %ld never started, %lld bytes, "
          "%.2fs, %.1f pages/s%s\n",
          t->results, t->ok, t->failed, kinds, never_started, (long long)t->bytes, elapsed_s,
          elapsed_s > 0 ? (double)t->results / elapsed_s : 0.0,
          interrupted ? ", interrupted" : "");
}
