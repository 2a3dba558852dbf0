/* fetch.c: one URL: robots.txt, the request with retries and back-off, error
 * classification to the contract's names, and the HTML parse.
 *
 * A fetcher is shared by every worker: the client (its pool per host, redirects, gzip and
 * deflate, the per-request timeout, truncation at --max-body) and the robots cache are
 * safe to share; everything else here is immutable once made. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "crawl.h"

struct crawl_fetcher {
  const crawl_opts *o;      /* borrowed, immutable */
  weft_ctx *ctx;            /* the crawl's (SIGINT); borrowed */
  weft_http_client *client; /* shared by all workers */
  crawl_robots *robots;     /* NULL unless --robots */
  weft_backoff_options backoff;
};

crawl_fetcher *crawl_fetcher_new(const crawl_opts *o, weft_ctx *ctx)
{
  crawl_fetcher *f = calloc(1, sizeof *f);
  if (!f)
    return NULL;
  f->o = o, f->ctx = ctx;
  weft_http_client_config cfg = {
      .flags = WEFT_HTTP_CLIENT_TRUNCATE | (o->insecure ? WEFT_HTTP_CLIENT_INSECURE : 0),
      .max_conns_per_host = o->per_host,
      .max_idle_per_host = o->per_host,
      .timeout = o->timeout,
      .max_redirects = 10,
      .max_body = o->max_body,
      .user_agent = o->user_agent,
  };
  struct weft_error *err = NULL;
  f->client = weft_http_client_new(&cfg, &err);
  if (!f->client) {
    weft_error_release(err);
    free(f);
    return NULL;
  }
  if (o->robots && !(f->robots = crawl_robots_new(o->user_agent))) {
    crawl_fetcher_free(f);
    return NULL;
  }
  f->backoff = WEFT_BACKOFF_DEFAULTS;
  f->backoff.initial_interval = 200 * (int64_t)1000000;
  f->backoff.max_interval = 5 * (int64_t)1000000000;
  f->backoff.max_elapsed_time = 0;
  f->backoff.max_attempts = o->retries + 1;
  return f;
}

void crawl_fetcher_free(crawl_fetcher *f)
{
  if (!f)
    return;
  weft_http_client_free(f->client);
  crawl_robots_free(f->robots);
  free(f);
}

void crawl_result_free(crawl_result *r)
{
  if (!r)
    return;
  free(r->url);
  free(r->final_url);
  free(r->content_type);
  free(r->title);
  for (int i = 0; r->links && r->links[i]; i++)
    free(r->links[i]);
  free(r->links);
  free(r->host);
  free(r);
}

/* One attempt's state, for weft_retry's op. */
typedef struct attempt {
  crawl_fetcher *f;
  const char *url; /* normalised, sent */
  crawl_result *r;
} attempt;

/* Forget what a previous attempt found. */
static void reset(crawl_result *r)
{
  free(r->final_url);
  free(r->content_type);
  free(r->title);
  for (int i = 0; r->links && r->links[i]; i++)
    free(r->links[i]);
  free(r->links);
  r->final_url = r->content_type = r->title = NULL;
  r->links = NULL;
  r->status = 0, r->bytes = 0, r->nlinks = 0, r->truncated = false, r->error = NULL;
}

/* The contract's name for a client error, and whether it is worth another attempt. */
static const char *classify(int rc, weft_ctx *ctx, bool *retry)
{
  *retry = false;
  if (weft_ctx_err(ctx))
    return "cancelled";
  switch (rc) {
  case -WEFT_EDNS:
    return "dns";
  case -ECONNREFUSED:
  case -ENETUNREACH:
  case -EHOSTUNREACH:
  case -ECONNRESET:
  case -EPIPE:
    *retry = true;
    return "connect";
  case -WEFT_ETLS:
  case -WEFT_ECERT:
    return "tls";
  case -ETIMEDOUT:
  case -ECANCELED:
    *retry = true;
    return "timeout";
  case -ELOOP:
    return "too_many_redirects";
  case -EPROTO:
    return "decode";
  case -EINVAL:
    return "invalid_url";
  default:
    return "connect";
  }
}

static bool is_html(const char *ct)
{
  if (!ct)
    return false;
  while (*ct == ' ')
    ct++;
  size_t n = strcspn(ct, "; \t");
  return (n == 9 && strncasecmp(ct, "text/html", 9) == 0) ||
         (n == 21 && strncasecmp(ct, "application/xhtml+xml", 21) == 0);
}

/* Fill r from a response; 0 when done, -EIO for a 5xx worth another attempt. */
static int take_response(attempt *a, weft_http_client_response *resp)
{
  crawl_result *r = a->r;
  r->status = weft_http_client_response_status(resp);
  r->final_url = strdup(weft_http_client_response_url(resp));
  const char *ct = weft_http_client_response_header(resp, "Content-Type");
  r->content_type = ct ? strdup(ct) : NULL;
  size_t len;
  const char *body = weft_http_client_response_body(resp, &len);
  r->bytes = (int64_t)len;
  r->truncated = weft_http_client_response_truncated(resp) != 0;
  if (is_html(ct) && r->final_url) {
    crawl_page page;
    if (crawl_parse_html(body, len, r->final_url, &page) == 0) {
      r->title = page.title;
      r->nlinks = page.nlinks;
      r->links = realloc(page.links, ((size_t)page.nlinks + 1) * sizeof *r->links);
      if (r->links) {
        r->links[page.nlinks] = NULL;
      } else {
        for (int i = 0; i < page.nlinks; i++)
          free(page.links[i]);
        free(page.links);
      }
    }
  }
  if (r->status >= 400) {
    r->error = "http_status";
    return r->status >= 500 ? -EIO : 0;
  }
  return 0;
}

static int attempt_op(weft_ctx *ctx, void *arg)
{
  attempt *a = arg;
  reset(a->r);
  weft_http_client_response *resp = NULL;
  int rc = weft_http_client_get(a->f->client, ctx, a->url, &resp);
  if (rc < 0) {
    bool retry;
    a->r->error = classify(rc, ctx, &retry);
    return retry ? rc : 0;
  }
  rc = take_response(a, resp);
  weft_http_client_response_free(resp);
  return rc;
}

/* The request under weft_retry; r->error is set on failure. */
static void fetch_with_retries(crawl_fetcher *f, const char *url, crawl_result *r)
{
  attempt a = {.f = f, .url = url, .r = r};
  weft_retry_stats stats = {0};
  int rc = weft_retry(f->ctx, &f->backoff, attempt_op, &a, NULL, &stats);
  r->attempts = stats.attempts;
  if (rc < 0 && weft_ctx_err(f->ctx))
    r->error = "cancelled";
}

crawl_result *crawl_fetch(crawl_fetcher *f, const char *url, const crawl_url *u, int depth)
{
  int64_t start = weft_now();
  crawl_result *r = calloc(1, sizeof *r);
  if (!r)
    return NULL;
  r->url = strdup(url);
  r->depth = depth;
  r->host = crawl_url_authority(u);
  char *norm = crawl_url_string(u);
  if (!r->url || !r->host || !norm) {
    free(norm);
    crawl_result_free(r);
    return NULL;
  }
  int allowed = 1;
  if (weft_ctx_err(f->ctx))
    allowed = -ECANCELED;
  else if (f->robots)
    allowed = crawl_robots_allowed(f->robots, f->client, f->ctx, u);
  if (allowed < 0)
    r->error = "cancelled";
  else if (allowed == 0)
    r->error = "robots_disallowed";
  else
    fetch_with_retries(f, norm, r);
  free(norm);
  r->duration_ms = (double)((weft_now() - start) / 1000) / 1000.0;
  return r;
}
