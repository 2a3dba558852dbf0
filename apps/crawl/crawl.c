/* crawl.c: the frontier and the coroutines of a crawl.
 *
 *   seeder ──tasks──▶ frontier ◀──take/done── workers (--concurrency) ──results──▶ collector
 *     └──────────── invalid_url results ───────────────────────────────▶ ┘
 *
 * The frontier is a monitor (mu + cv): per-host FIFO queues, a ring of hosts that have a
 * queued task and a free per-host slot (round robin between hosts, so one busy host never
 * holds every worker), the seen set and the counters. A worker takes a task only from a
 * host under --per-host, so the global cap is the number of workers and the per-host cap
 * holds without anyone parking on a host's limit while holding a global slot.
 *
 * Invariants (under mu): queued is the number of tasks in all host queues; inflight the
 * tasks taken and not yet done; a host is in the ring iff it has queued tasks and
 * inflight < per_host; once cancelled or limited, nothing more is taken.
 *
 * Results: each taken task yields exactly one result, sent by its worker on results. The
 * seeder and the workers are the producers; they are counted in a wait group, and only
 * crawl_run closes results, after that group is done. The collector (output.c) is the
 * only receiver. (The design that lost: a coordinator coroutine selecting over a work
 * channel and the results, as the Go peer does; with weft's cond and a context callback
 * the monitor is shorter and keeps the collector a pure sink.) */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crawl.h"

/* The frontier's limit on queued tasks before the seeder waits (stdin may be endless). */
#define QUEUE_HIGH 4096

typedef struct task {
  struct task *next;
  char *raw; /* as given or found */
  crawl_url u;
  int depth;
} task;

typedef struct host {
  struct host *next;      /* hash chain */
  struct host *ring_next; /* in the ring */
  char *name;             /* authority */
  task *head, *tail;      /* queued tasks */
  int inflight;
  bool in_ring;
} host;

/* A set of strings by hash chains (the seen set, the seed hosts). */
typedef struct sset_node {
  struct sset_node *next;
  char s[];
} sset_node;
typedef struct sset {
  sset_node **b;
  size_t nb, n;
} sset;

typedef struct frontier {
  const crawl_opts *o;
  weft_mutex mu;
  weft_cond cv; /* a task, a free host slot, room in the queue, or the end */
  host **hosts; /* guarded by mu: hash table by authority */
  size_t nhosts_b;
  host *ring_head, *ring_tail;       /* guarded by mu */
  sset seen, seed_hosts;             /* guarded by mu */
  long queued, inflight, dispatched; /* guarded by mu */
  long never_started;                /* guarded by mu: seeds skipped after the stop */
  bool seeding;                      /* guarded by mu: the seeder may still add tasks */
  bool cancelled;                    /* guarded by mu: the crawl's ctx is done */
  weft_chan *results;                /* producers send; crawl_run closes */
  crawl_fetcher *fetcher;
  weft_ctx *ctx;
  weft_wg producers; /* the seeder and the workers */
  weft_wg cancel_fn; /* the context callback, when it ran */
} frontier;

static size_t hash_str(const char *s)
{
  size_t h = 1469598103934665603ull;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

/* 1 if added, 0 if present, -ENOMEM. */
static int sset_add(sset *set, const char *s)
{
  if (set->n >= set->nb) {
    size_t nb = set->nb ? set->nb * 2 : 1024;
    sset_node **b = calloc(nb, sizeof *b);
    if (!b)
      return -ENOMEM;
    for (size_t i = 0; i < set->nb; i++)
      for (sset_node *x = set->b[i], *next; x; x = next) {
        next = x->next;
        size_t j = hash_str(x->s) & (nb - 1);
        x->next = b[j], b[j] = x;
      }
    free(set->b);
    set->b = b, set->nb = nb;
  }
  size_t j = hash_str(s) & (set->nb - 1);
  for (sset_node *x = set->b[j]; x; x = x->next)
    if (strcmp(x->s, s) == 0)
      return 0;
  size_t n = strlen(s) + 1;
  sset_node *x = malloc(sizeof *x + n);
  if (!x)
    return -ENOMEM;
  memcpy(x->s, s, n);
  x->next = set->b[j], set->b[j] = x;
  set->n++;
  return 1;
}

static bool sset_has(const sset *set, const char *s)
{
  if (!set->nb)
    return false;
  for (sset_node *x = set->b[hash_str(s) & (set->nb - 1)]; x; x = x->next)
    if (strcmp(x->s, s) == 0)
      return true;
  return false;
}

static void sset_free(sset *set)
{
  for (size_t i = 0; i < set->nb; i++)
    for (sset_node *x = set->b[i], *next; x; x = next)
      next = x->next, free(x);
  free(set->b);
}

static void task_free(task *t)
{
  free(t->raw);
  crawl_url_free(&t->u);
  free(t);
}

/* ---- the frontier (every function here: mu held) ---- */

static host *host_get(frontier *fr, const char *name)
{
  size_t j = hash_str(name) % fr->nhosts_b;
  for (host *h = fr->hosts[j]; h; h = h->next)
    if (strcmp(h->name, name) == 0)
      return h;
  host *h = calloc(1, sizeof *h);
  if (!h || !(h->name = strdup(name))) {
    free(h);
    return NULL;
  }
  h->next = fr->hosts[j], fr->hosts[j] = h;
  return h;
}

static void ring_push(frontier *fr, host *h)
{
  if (h->in_ring || !h->head || h->inflight >= fr->o->per_host)
    return;
  h->in_ring = true;
  h->ring_next = NULL;
  if (fr->ring_tail)
    fr->ring_tail->ring_next = h;
  else
    fr->ring_head = h;
  fr->ring_tail = h;
}

/* Queue t (the frontier takes it); -ENOMEM leaves it to the caller. */
static int enqueue(frontier *fr, task *t)
{
  char *name = crawl_url_authority(&t->u);
  host *h = name ? host_get(fr, name) : NULL;
  free(name);
  if (!h)
    return -ENOMEM;
  t->next = NULL;
  if (h->tail)
    h->tail->next = t;
  else
    h->head = t;
  h->tail = t;
  fr->queued++;
  ring_push(fr, h);
  weft_cond_broadcast(&fr->cv); /* cond waiters are woken after we unlock */
  return 0;
}

static bool stopped(frontier *fr)
{
  if (!fr->cancelled && weft_ctx_err(fr->ctx))
    fr->cancelled = true; /* before on_cancel runs: take nothing more from now on */
  return fr->cancelled || (fr->o->max_pages > 0 && fr->dispatched >= fr->o->max_pages);
}

/* The next task for a worker, or NULL when the crawl is over for workers. */
static task *take(frontier *fr)
{
  for (;;) {
    if (stopped(fr))
      return NULL;
    if (fr->ring_head) {
      host *h = fr->ring_head;
      fr->ring_head = h->ring_next;
      if (!fr->ring_head)
        fr->ring_tail = NULL;
      h->in_ring = false;
      task *t = h->head;
      h->head = t->next;
      if (!h->head)
        h->tail = NULL;
      h->inflight++;
      fr->queued--, fr->inflight++, fr->dispatched++;
      ring_push(fr, h); /* round robin: behind the other hosts */
      if (stopped(fr))
        weft_cond_broadcast(&fr->cv); /* the others stop too */
      return t;
    }
    if (!fr->seeding && fr->inflight == 0)
      return NULL;
    weft_cond_wait(&fr->cv, &fr->mu);
  }
}

/* Queue r's links when they are to be followed. */
static void follow(frontier *fr, const crawl_result *r)
{
  if (r->depth >= fr->o->depth || !r->links || fr->cancelled)
    return;
  for (char **l = r->links; *l; l++) {
    task *t = calloc(1, sizeof *t);
    if (!t || crawl_url_parse(*l, &t->u) != 0) {
      free(t);
      continue;
    }
    char *auth = crawl_url_authority(&t->u);
    bool ok = auth && (!fr->o->same_host || sset_has(&fr->seed_hosts, auth)) &&
              sset_add(&fr->seen, *l) == 1;
    free(auth);
    t->raw = ok ? strdup(*l) : NULL;
    t->depth = r->depth + 1;
    if (!t->raw || enqueue(fr, t) != 0)
      task_free(t);
  }
}

/* A worker finished t with result r. */
static void done(frontier *fr, task *t, const crawl_result *r)
{
  char *name = crawl_url_authority(&t->u);
  host *h = name ? host_get(fr, name) : NULL;
  free(name);
  if (h) {
    h->inflight--;
    ring_push(fr, h);
  }
  fr->inflight--;
  follow(fr, r);
  weft_cond_broadcast(&fr->cv);
}

/* ---- coroutines ---- */

static crawl_result *oom_result(const char *url, int depth)
{
  crawl_result *r = calloc(1, sizeof *r);
  if (!r || !(r->url = strdup(url))) {
    fputs("weft-crawl: out of memory\n", stderr);
    abort();
  }
  r->depth = depth;
  r->error = "connect";
  return r;
}

static void worker(void *arg)
{
  frontier *fr = arg;
  for (;;) {
    weft_mutex_lock(&fr->mu);
    task *t = take(fr);
    weft_mutex_unlock(&fr->mu);
    if (!t)
      break;
    crawl_result *r = crawl_fetch(fr->fetcher, t->raw, &t->u, t->depth);
    if (!r)
      r = oom_result(t->raw, t->depth);
    weft_mutex_lock(&fr->mu);
    done(fr, t, r);
    weft_mutex_unlock(&fr->mu);
    task_free(t);
    weft_chan_send(fr->results, &r, WEFT_NO_DEADLINE); /* the collector drains it all */
  }
  weft_wg_done(&fr->producers);
}

/* One input URL: a task, or an invalid_url result. false once the crawl stops taking. */
static bool seed(frontier *fr, const char *s)
{
  task *t = calloc(1, sizeof *t);
  if (!t || !(t->raw = strdup(s)) || crawl_url_parse(s, &t->u) != 0) {
    crawl_result *r = oom_result(s, 0);
    r->error = "invalid_url";
    weft_chan_send(fr->results, &r, WEFT_NO_DEADLINE);
    if (t)
      task_free(t);
    return true;
  }
  char *key = crawl_url_string(&t->u), *auth = crawl_url_authority(&t->u);
  weft_mutex_lock(&fr->mu);
  while (fr->queued >= QUEUE_HIGH && !stopped(fr))
    weft_cond_wait(&fr->cv, &fr->mu);
  bool go = !stopped(fr);
  if (go && key && auth) {
    sset_add(&fr->seen, key);
    sset_add(&fr->seed_hosts, auth);
    if (enqueue(fr, t) == 0)
      t = NULL;
  }
  if (!go)
    fr->never_started++;
  weft_mutex_unlock(&fr->mu);
  free(key);
  free(auth);
  if (t)
    task_free(t);
  return go;
}

static void seed_line(frontier *fr, char *line, bool *going)
{
  char *s = line + strspn(line, " \t\r");
  size_t n = strlen(s);
  while (n > 0 && strchr(" \t\r", s[n - 1]))
    s[--n] = '\0';
  if (!*s)
    return;
  if (*going) {
    *going = seed(fr, s);
    return;
  }
  weft_mutex_lock(&fr->mu);
  fr->never_started++;
  weft_mutex_unlock(&fr->mu);
}

/* Read lines from stdin (a pipe or tty parks; a regular file reads at once). Once the
 * crawl stops, lines still read are counted as never started; on SIGINT we stop. */
static void seed_stdin(frontier *fr, bool *going)
{
  struct stat st;
  bool reg = fstat(0, &st) == 0 && S_ISREG(st.st_mode);
  int flags = fcntl(0, F_GETFL);
  char buf[16384], *line = NULL;
  size_t ln = 0, cap = 0;
  for (;;) {
    ssize_t n = reg ? read(0, buf, sizeof buf) : weft_read_ctx(0, buf, sizeof buf, fr->ctx);
    if (n <= 0)
      break;
    for (ssize_t i = 0; i < n; i++) {
      if (ln + 1 >= cap) {
        char *p = realloc(line, cap = cap ? cap * 2 : 256);
        if (!p)
          break;
        line = p;
      }
      if (buf[i] != '\n') {
        line[ln++] = buf[i];
        continue;
      }
      line[ln] = '\0', ln = 0;
      seed_line(fr, line, going);
    }
    if (weft_ctx_err(fr->ctx))
      break;
  }
  if (ln > 0 && !weft_ctx_err(fr->ctx)) {
    line[ln] = '\0';
    seed_line(fr, line, going);
  }
  free(line);
  if (!reg && flags >= 0) {
    weft_fd_forget(0);
    fcntl(0, F_SETFL, flags); /* give the shell its terminal back as it was */
  }
}

static void seeder(void *arg)
{
  frontier *fr = arg;
  bool going = true;
  for (int i = 0; i < fr->o->nurls; i++) {
    if (weft_ctx_err(fr->ctx))
      going = false;
    if (strcmp(fr->o->urls[i], "-") == 0 && !weft_ctx_err(fr->ctx)) {
      seed_stdin(fr, &going);
    } else if (going) {
      going = seed(fr, fr->o->urls[i]);
    } else if (strcmp(fr->o->urls[i], "-") != 0) {
      weft_mutex_lock(&fr->mu);
      fr->never_started++;
      weft_mutex_unlock(&fr->mu);
    }
  }
  weft_mutex_lock(&fr->mu);
  fr->seeding = false;
  weft_cond_broadcast(&fr->cv);
  weft_mutex_unlock(&fr->mu);
  weft_wg_done(&fr->producers);
}

/* Runs in its own coroutine once the crawl's context is done (SIGINT). */
static void on_cancel(void *arg)
{
  frontier *fr = arg;
  weft_mutex_lock(&fr->mu);
  fr->cancelled = true;
  weft_cond_broadcast(&fr->cv);
  weft_mutex_unlock(&fr->mu);
  weft_wg_done(&fr->cancel_fn);
}

static long progress(void *arg, long *inflight, long *queued)
{
  frontier *fr = arg;
  weft_mutex_lock(&fr->mu);
  *inflight = fr->inflight, *queued = fr->queued;
  weft_mutex_unlock(&fr->mu);
  return 0;
}

/* Free what is left in the frontier; returns the number of tasks never started. */
static long frontier_free(frontier *fr)
{
  long left = 0;
  for (size_t i = 0; i < fr->nhosts_b; i++)
    for (host *h = fr->hosts[i], *next; h; h = next) {
      next = h->next;
      for (task *t = h->head, *tn; t; t = tn)
        tn = t->next, task_free(t), left++;
      free(h->name);
      free(h);
    }
  free(fr->hosts);
  sset_free(&fr->seen);
  sset_free(&fr->seed_hosts);
  return left;
}

static int start_producers(frontier *fr)
{
  weft_wg_add(&fr->producers, fr->o->concurrency + 1);
  if (weft_go_named(seeder, fr, "seeder") != 0) {
    fputs("weft-crawl: cannot start the seeder\n", stderr);
    abort();
  }
  weft_go_options wo = {.name = "fetch worker", .stack_size = 256 * 1024};
  for (int i = 0; i < fr->o->concurrency; i++)
    if (weft_go_with(worker, fr, &wo) != 0) {
      weft_wg_add(&fr->producers, -(fr->o->concurrency - i));
      break;
    }
  return 0;
}

int crawl_run(const crawl_opts *o, FILE *out)
{
  int64_t t0 = weft_now();
  int sigs[] = {SIGINT, SIGTERM};
  weft_signal_ctx *sc = weft_signal_ctx_new(NULL, sigs, 2);
  frontier fr = {.o = o, .seeding = true, .nhosts_b = 4096};
  fr.ctx = sc ? weft_signal_ctx_ctx(sc) : NULL;
  fr.hosts = calloc(fr.nhosts_b, sizeof *fr.hosts);
  fr.results = weft_chan_new(sizeof(crawl_result *), (size_t)o->concurrency);
  fr.fetcher = fr.hosts && fr.results ? crawl_fetcher_new(o, fr.ctx) : NULL;
  if (!sc || !fr.fetcher) {
    fputs("weft-crawl: cannot set up the crawl (memory, signals or TLS)\n", stderr);
    free(fr.hosts);
    weft_chan_release(fr.results);
    weft_signal_ctx_stop(sc);
    return 1;
  }
  weft_mutex_init(&fr.mu);
  weft_cond_init(&fr.cv);
  weft_wg_init(&fr.producers);
  weft_wg_init(&fr.cancel_fn);
  weft_wg_add(&fr.cancel_fn, 1);
  weft_ctx_stop *stop = weft_ctx_after_func(fr.ctx, on_cancel, &fr);
  crawl_collector *col = crawl_collector_start(fr.results, out, isatty(2) == 1, progress, &fr);
  if (!col || !stop) {
    fputs("weft-crawl: out of memory\n", stderr);
    abort();
  }
  start_producers(&fr);
  weft_wg_wait(&fr.producers);
  weft_chan_close(fr.results); /* ours to close: every producer has finished */
  crawl_totals t;
  crawl_collector_wait(col, &t);
  int sig = weft_ctx_err(fr.ctx) ? weft_signal_ctx_signal(sc) : 0;
  if (weft_ctx_stop_func(stop) == 0)
    weft_wg_wait(&fr.cancel_fn); /* it ran or is running: let it finish with fr */
  long never = fr.never_started + frontier_free(&fr);
  crawl_fetcher_free(fr.fetcher);
  weft_chan_release(fr.results);
  weft_signal_ctx_stop(sc);
  crawl_summary(&t, never, (double)(weft_now() - t0) / 1e9, sig != 0);
  if (sig)
    return 128 + sig;
  return t.out_err ? 1 : 0;
}
