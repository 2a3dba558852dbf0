/* driver.c: one run of weft-load: open loop (constant rate) or closed loop.
 *
 * Open loop: this coroutine is the dispatcher. Request seq is due at
 * start + seq / rate; the dispatcher sleeps until it is due and hands (seq, intended time)
 * to the workers through the jobs channel. A worker is one keep-alive connection's worth of
 * concurrency: it takes a job, sends it and waits for the answer. When a job is due and no
 * worker is idle, the dispatcher starts another, up to max_connections; beyond that jobs
 * queue in the channel (and, once it is full, hold up the dispatcher), but the latency of
 * every job still counts from its intended time, so a stalled server shows as the latency
 * it caused instead of as requests never sent (coordinated omission).
 *
 * Closed loop: `connections` workers each send back to back; a request's intended time is
 * the moment it is sent.
 *
 * A worker owns one lean keep-alive connection (conn.c) for http:// targets; for https://,
 * or with --client weft, workers share one weft_http_client, whose pool holds up to as
 * many connections as there may be workers.
 *
 * Every worker borrows the driver; the driver outlives them (it waits on `workers`).
 * Shared fields are atomics or the recorder's own lock; everything else is set before the
 * first worker starts and read-only after. */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "load.h"

enum { JOB_QUEUE = 4096 };

struct job {
  uint64_t seq;
  int64_t intended;
};

struct driver {
  struct load_run *run;
  const struct load_config *cfg;
  weft_http_client *client;  /* https://, or --client weft; else NULL */
  char addr[512];            /* host:port of the target */
  char *prefix;              /* the lean connection's head after the target (owned) */
  weft_ctx *ctx;             /* the run: done on SIGINT or SIGTERM */
  weft_chan *jobs;           /* open loop: struct job, closed when all are dispatched */
  int64_t stop_at;           /* closed loop by duration: no request starts after */
  atomic_uint_fast64_t next; /* closed loop: the next sequence number to claim */
  atomic_int nworkers;       /* workers started */
  atomic_int idle;           /* open loop: workers waiting for a job */
  weft_wg workers;
};

/* What a worker keeps across its requests. */
struct worker_state {
  char *url, *body;
  size_t url_cap, body_cap;
  uint64_t rng;
  struct load_conn *conn; /* the lean connection, or NULL with the weft client */
};

/* The request target (path and query) of a rendered http:// URL. */
static const char *target_of(const char *url)
{
  const char *p = strstr(url, "://");
  p = p ? p + 3 : url;
  p += strcspn(p, "/?#");
  if (*p == '#' || !*p)
    return "/";
  char *hash = strchr(p, '#');
  if (hash)
    *hash = '\0'; /* the fragment is not sent */
  return p;
}

/* One request through weft's client: its status or a negative error. */
static int send_weft(struct driver *d, struct worker_state *ws, size_t body_len)
{
  const struct load_config *cfg = d->cfg;
  weft_http_client_request req = {.method = cfg->method,
                                  .url = ws->url,
                                  .headers = cfg->nheaders ? cfg->headers : NULL,
                                  .body = cfg->body_t ? ws->body : NULL,
                                  .body_len = body_len};
  weft_http_client_response *resp = NULL;
  int rc = weft_http_client_do(d->client, d->ctx, &req, &resp);
  if (rc == 0)
    rc = weft_http_client_response_status(resp);
  weft_http_client_response_free(resp);
  return rc;
}

/* Send request seq and record how it ended. Coroutine, may park. */
static void send_one(struct driver *d, struct worker_state *ws, uint64_t seq, int64_t intended)
{
  const struct load_config *cfg = d->cfg;
  const char *m = cfg->method;
  load_template_render(cfg->url_t, d->run->stamp, seq, &ws->rng, &ws->url, &ws->url_cap);
  size_t body_len = 0;
  if (cfg->body_t)
    body_len = load_template_render(cfg->body_t, d->run->stamp, seq, &ws->rng, &ws->body,
                                    &ws->body_cap);
  bool send_length =
      cfg->body_t || !strcmp(m, "POST") || !strcmp(m, "PUT") || !strcmp(m, "PATCH");
  int64_t sent = weft_now();
  int rc = ws->conn ? load_conn_do(ws->conn, d->ctx, sent + cfg->timeout, m, target_of(ws->url),
                                   cfg->body_t ? ws->body : NULL, body_len, send_length)
                    : send_weft(d, ws, body_len);
  int64_t end = weft_now();
  if (weft_ctx_err(d->ctx) && rc <= 0)
    return; /* cut off by the interrupt, not an answer from the target */
  load_recorder_add(&d->run->rec, intended, sent, end, rc);
}

/* A worker: open loop, jobs from the channel; closed loop, claimed back to back. */
static void worker(void *arg)
{
  struct driver *d = arg;
  const struct load_config *cfg = d->cfg;
  struct worker_state ws = {.rng = (uint64_t)weft_now() ^ (uintptr_t)&ws};
  if (!d->client && !(ws.conn = load_conn_new(d->addr, d->prefix)))
    goto out;
  if (d->jobs) {
    struct job job;
    for (;;) {
      atomic_fetch_add(&d->idle, 1);
      int rc = weft_chan_recv_ctx(d->jobs, &job, d->ctx);
      atomic_fetch_sub(&d->idle, 1);
      if (rc < 0)
        break;
      send_one(d, &ws, job.seq, job.intended);
    }
  } else {
    for (;;) {
      uint64_t seq = atomic_fetch_add(&d->next, 1);
      int64_t now = weft_now();
      if ((cfg->requests && seq >= cfg->requests) || (d->stop_at && now >= d->stop_at) ||
          weft_ctx_err(d->ctx))
        break;
      send_one(d, &ws, seq, now);
    }
  }
out:
  load_conn_free(ws.conn);
  free(ws.url);
  free(ws.body);
  weft_wg_done(&d->workers);
}

static int start_worker(struct driver *d)
{
  weft_wg_add(&d->workers, 1);
  atomic_fetch_add(&d->nworkers, 1);
  int rc = weft_go_named(worker, d, "load worker");
  if (rc < 0) {
    atomic_fetch_sub(&d->nworkers, 1);
    weft_wg_done(&d->workers);
  }
  return rc;
}

/* Open loop: hand out every job at its time, growing the workers when none is idle. */
static void dispatch(struct driver *d)
{
  const struct load_config *cfg = d->cfg;
  int64_t start = d->run->rec.start;
  double interval = 1e9 / cfg->rate;
  for (uint64_t seq = 0; !cfg->requests || seq < cfg->requests; seq++) {
    struct job job = {seq, start + (int64_t)((double)seq * interval)};
    if (cfg->duration && job.intended >= start + cfg->duration)
      break;
    if (job.intended > weft_now() && weft_clock_sleep_until(NULL, d->ctx, job.intended) < 0)
      break;
    if (atomic_load(&d->idle) == 0 && atomic_load(&d->nworkers) < cfg->max_connections)
      start_worker(d);
    if (weft_chan_send_ctx(d->jobs, &job, d->ctx) < 0)
      break;
  }
  weft_chan_close(d->jobs);
}

/* Live progress on stderr until ctx is done. */
struct progress {
  struct driver *d;
  weft_ctx *ctx;
  weft_wg done;
};

static void progress_loop(void *arg)
{
  struct progress *p = arg;
  struct load_recorder *rec = &p->d->run->rec;
  struct load_progress last = {0}, now;
  int64_t last_t = rec->start;
  while (weft_sleep_ctx(p->ctx, p->d->cfg->progress) == 0) {
    load_recorder_progress(rec, &now);
    int64_t t = weft_now();
    double secs = (double)(t - last_t) / 1e9;
    uint64_t n = now.answered + now.errors - last.answered - last.errors;
    fprintf(stderr,
            "[%6.1fs] %9.0f req/s  2xx %" PRIu64 "  3xx %" PRIu64 "  4xx %" PRIu64
            "  5xx %" PRIu64 "  errors %" PRIu64 "  p99 %.2f ms\n",
            (double)(t - rec->start) / 1e9, secs > 0 ? (double)n / secs : 0, now.s2xx, now.s3xx,
            now.s4xx, now.s5xx, now.errors, (double)now.p99 / 1e6);
    last = now;
    last_t = t;
  }
  weft_wg_done(&p->done);
}

/* The host:port of url (its first rendering), for the reachability check. */
static int url_address(const char *url, char *out, size_t len)
{
  const char *p = strstr(url, "://");
  if (!p)
    return -EINVAL;
  bool tls = strncasecmp(url, "https", 5) == 0;
  p += 3;
  size_t n = strcspn(p, "/?#");
  const char *at = memchr(p, '@', n);
  if (at) {
    n -= (size_t)(at + 1 - p);
    p = at + 1;
  }
  const char *bracket = memchr(p, ']', n);
  const char *from = bracket ? bracket : p;
  bool has_port = memchr(from, ':', n - (size_t)(from - p)) != NULL;
  int w = snprintf(out, len, "%.*s%s", (int)n, p, has_port ? "" : tls ? ":443" : ":80");
  return n > 0 && w > 0 && (size_t)w < len ? 0 : -EINVAL;
}

/* The lean connection's head after the request target: the version, Host (the URL's
 * authority) and User-Agent unless given, and the --header lines. A new string. */
static char *head_prefix(const struct load_config *cfg, const char *url)
{
  const char *auth = strstr(url, "://") + 3;
  size_t n = strcspn(auth, "/?#");
  const char *at = memchr(auth, '@', n);
  if (at) {
    n -= (size_t)(at + 1 - auth);
    auth = at + 1;
  }
  bool host = false, agent = false;
  size_t len = 64 + n;
  for (int i = 0; i < cfg->nheaders; i++) {
    host |= strcasecmp(cfg->headers[2 * i], "Host") == 0;
    agent |= strcasecmp(cfg->headers[2 * i], "User-Agent") == 0;
    len += strlen(cfg->headers[2 * i]) + strlen(cfg->headers[2 * i + 1]) + 4;
  }
  char *out = malloc(len);
  if (!out)
    return NULL;
  int w = sprintf(out, " HTTP/1.1\r\n");
  if (!host)
    w += sprintf(out + w, "Host: %.*s\r\n", (int)n, auth);
  if (!agent)
    w += sprintf(out + w, "User-Agent: weft-load\r\n");
  for (int i = 0; i < cfg->nheaders; i++)
    w += sprintf(out + w, "%s: %s\r\n", cfg->headers[2 * i], cfg->headers[2 * i + 1]);
  return out;
}

/* Connect once to the target (a load run against nothing is an error, not a report), and
 * set what the workers need to connect: the address, and the lean head prefix. */
static int check_reachable(struct driver *d)
{
  char *url = NULL;
  size_t cap = 0;
  uint64_t rng = 1;
  load_template_render(d->cfg->url_t, d->run->stamp, 0, &rng, &url, &cap);
  int rc = url_address(url, d->addr, sizeof d->addr);
  if (rc == 0)
    rc = weft_dial(d->ctx, "tcp", d->addr, weft_now() + d->cfg->timeout);
  if (rc >= 0) {
    weft_close(rc);
    rc = d->client || (d->prefix = head_prefix(d->cfg, url)) ? 0 : -ENOMEM;
  } else {
    fprintf(stderr, "weft-load: cannot reach %s: %s\n", rc == -EINVAL ? url : d->addr,
            weft_strerror(rc));
  }
  free(url);
  return rc;
}

static int driver_start(struct driver *d, struct load_run *run, const struct load_config *cfg)
{
  memset(d, 0, sizeof *d);
  d->run = run;
  d->cfg = cfg;
  weft_wg_init(&d->workers);
  int conns = cfg->rate > 0 ? cfg->max_connections : cfg->connections;
  weft_http_client_config hc = {.flags = WEFT_HTTP_CLIENT_NO_COMPRESSION,
                                .max_conns_per_host = conns,
                                .max_idle_per_host = conns,
                                .timeout = cfg->timeout,
                                .user_agent = "weft-load"};
  bool https = strncasecmp(cfg->url, "https://", 8) == 0;
  if ((https || cfg->weft_client) && !(d->client = weft_http_client_new(&hc, NULL)))
    return -ENOMEM;
  if (cfg->rate > 0 && !(d->jobs = weft_chan_new(sizeof(struct job), JOB_QUEUE))) {
    weft_http_client_free(d->client);
    return -ENOMEM;
  }
  return 0;
}

/* Start the workers, drive the run to its end and wait for every worker. */
static void drive(struct driver *d)
{
  const struct load_config *cfg = d->cfg;
  int first = cfg->connections;
  if (cfg->rate > 0 && first > cfg->max_connections)
    first = cfg->max_connections;
  if (!cfg->rate && cfg->duration)
    d->stop_at = d->run->rec.start + cfg->duration;
  for (int i = 0; i < first; i++)
    start_worker(d);
  if (d->jobs)
    dispatch(d);
  weft_wg_wait(&d->workers);
}

int load_run(struct load_run *run, const struct load_config *cfg)
{
  struct driver d;
  int rc = driver_start(&d, run, cfg);
  if (rc < 0)
    return rc;
  weft_signal_ctx *sig = weft_signal_ctx_new(NULL, NULL, 0);
  d.ctx = sig ? weft_signal_ctx_ctx(sig) : NULL;
  snprintf(run->stamp, sizeof run->stamp, "%08" PRIx64 "%04x",
           (uint64_t)weft_now() ^ (uint64_t)time(NULL), (unsigned)getpid() & 0xffff);
  if ((rc = check_reachable(&d)) < 0)
    goto out;
  if ((rc = load_recorder_init(&run->rec, weft_now())) < 0)
    goto out;
  struct progress p = {.d = &d, .ctx = weft_ctx_with_cancel(d.ctx)};
  weft_wg_init(&p.done);
  if (cfg->progress > 0 && !cfg->quiet && p.ctx) {
    weft_wg_add(&p.done, 1);
    weft_go_named(progress_loop, &p, "load progress");
  }
  drive(&d);
  weft_ctx_cancel(p.ctx);
  weft_wg_wait(&p.done);
  weft_ctx_release(p.ctx);
  run->elapsed = run->rec.end - run->rec.start;
  run->interrupted = d.ctx && weft_ctx_err(d.ctx) != 0;
  run->max_workers = atomic_load(&d.nworkers);
out:
  weft_signal_ctx_stop(sig);
  weft_chan_release(d.jobs);
  weft_http_client_free(d.client);
  free(d.prefix);
  return rc;
}
