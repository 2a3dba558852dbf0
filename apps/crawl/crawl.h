/* crawl.h: the pieces of weft-crawl and what they share.
 *
 * main.c parses the flags into a crawl_opts and runs crawl_run. crawl.c owns the frontier
 * (queued tasks, the seen set, per-host counts) and the coroutines: one seeder, a fixed
 * pool of --concurrency fetch workers, and the collector of output.c. fetch.c fetches one
 * task (robots.c, links.c, url.c help it). Every started task becomes exactly one
 * crawl_result, sent by the worker that ran it on the results channel, whose only
 * receiver is the collector; crawl.c closes that channel once every producer is done. */
#ifndef WEFT_CRAWL_H
#define WEFT_CRAWL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <weft/weft.h>

#ifndef WEFT_CRAWL_VERSION
#define WEFT_CRAWL_VERSION "0.1.0"
#endif

/* The flags (crawler.md), after defaults are applied. Read-only once the crawl starts. */
typedef struct crawl_opts {
  int concurrency;  /* requests in flight at most */
  int per_host;     /* requests in flight per host at most */
  int64_t timeout;  /* per request, ns */
  int retries;      /* retries after the first attempt */
  int depth;        /* link levels to follow */
  bool same_host;   /* follow only links on a seed's host */
  long max_pages;   /* 0: no limit */
  bool robots;      /* honour robots.txt */
  int64_t max_body; /* bytes */
  const char *user_agent;
  const char *out; /* NULL or "-": stdout */
  bool insecure;
  char **urls; /* the URL arguments ("-": stdin) */
  int nurls;
} crawl_opts;

/* ---- url.c: absolute http(s) URLs ---- */

typedef struct crawl_url {
  char scheme[8]; /* "http" or "https" */
  char *host;     /* lower case; brackets kept for IPv6 */
  int port;       /* explicit or the default */
  char *path;     /* starts with '/' */
  char *query;    /* without '?', or NULL */
} crawl_url;

/* crawl_url_parse: parse an absolute http(s) URL with a host. 0 or -EINVAL/-ENOMEM. */
int crawl_url_parse(const char *s, crawl_url *u);
void crawl_url_free(crawl_url *u);
/* crawl_url_string: the normalised URL without fragment (new string, NULL: no memory). */
char *crawl_url_string(const crawl_url *u);
/* crawl_url_authority: "host" or "host:port" when the port is not the default (new). */
char *crawl_url_authority(const crawl_url *u);
/* crawl_url_resolve: RFC 3986 section 5.2: ref against the absolute base, fragment
 * dropped; a new normalised http(s) URL, or NULL (another scheme, malformed, no memory). */
char *crawl_url_resolve(const char *base, const char *ref);

/* ---- links.c ---- */

/* An HTML page's title (white space collapsed) and distinct absolute http(s) links. */
typedef struct crawl_page {
  char *title;  /* "" when none; owned */
  char **links; /* owned, each owned */
  int nlinks;
} crawl_page;

/* crawl_parse_html: parse body (any bytes, any breakage) found at url. 0 or -ENOMEM.
 * Coroutine, may park (the parse runs on the blocking pool). */
int crawl_parse_html(const char *body, size_t len, const char *url, crawl_page *page);
void crawl_page_free(crawl_page *page);

/* ---- robots.c ---- */

typedef struct crawl_robots crawl_robots;
crawl_robots *crawl_robots_new(const char *user_agent);
void crawl_robots_free(crawl_robots *r);
/* crawl_robots_allowed: 1 if robots.txt of u's origin allows u, 0 if not, or ctx's error
 * when the crawl was cancelled while the robots.txt was being fetched. The first caller
 * for an origin fetches it with cl; others wait for it. Coroutine, may park. */
int crawl_robots_allowed(crawl_robots *r, weft_http_client *cl, weft_ctx *ctx,
                         const crawl_url *u);
/* For tests of the matcher: the rules of body for agent, and a match. */
int crawl_robots_check(const char *body, const char *agent, const char *path);

/* ---- fetch.c ---- */

/* One output line. */
typedef struct crawl_result {
  char *url;          /* as given or found */
  char *final_url;    /* after redirects, or NULL */
  int status;         /* 0 when no response */
  char *content_type; /* or NULL */
  int64_t bytes;      /* decoded body bytes */
  double duration_ms; /* every attempt and back-off */
  int attempts;
  int depth;
  char *title; /* or NULL */
  int nlinks;
  bool truncated;
  const char *error; /* NULL, or one of the contract's names (static) */
  char **links;      /* absolute links, for the frontier (owned) */
  char *host;        /* the task's authority, for the per-host count (owned) */
} crawl_result;

void crawl_result_free(crawl_result *r);

typedef struct crawl_fetcher crawl_fetcher;
crawl_fetcher *crawl_fetcher_new(const crawl_opts *o, weft_ctx *ctx);
void crawl_fetcher_free(crawl_fetcher *f);
/* crawl_fetch: fetch url at depth (robots, retries, parse) into a new result.
 * Coroutine, may park; honours the fetcher's ctx (error "cancelled"). */
crawl_result *crawl_fetch(crawl_fetcher *f, const char *url, const crawl_url *u, int depth);

/* ---- output.c ---- */

/* What the collector counted, for the summary. */
typedef struct crawl_totals {
  long results, ok, failed;
  long by_error[16]; /* indexed as crawl_error_names */
  int64_t bytes;
  int64_t out_err; /* first write error (negative errno), 0 if none */
} crawl_totals;

extern const char *const crawl_error_names[];
typedef struct crawl_collector crawl_collector;
typedef long (*crawl_progress_fn)(void *arg, long *inflight, long *queued);
/* crawl_collector_start: start the collector coroutine reading crawl_result pointers from
 * results (it takes a reference) and writing them to out; a progress line on stderr
 * every 500 ms when progress is set (progress_fn reads the frontier's counts). */
crawl_collector *crawl_collector_start(weft_chan *results, FILE *out, bool progress,
                                       crawl_progress_fn progress_fn, void *arg);
/* crawl_collector_wait: wait until results is closed and drained, fill *t, free c. */
void crawl_collector_wait(crawl_collector *c, crawl_totals *t);
void crawl_summary(const crawl_totals *t, long never_started, double elapsed_s,
                   bool interrupted);

/* ---- crawl.c ---- */

/* crawl_run: the whole crawl; returns the exit code (0, 1 output error, 130 SIGINT). */
int crawl_run(const crawl_opts *o, FILE *out);

/* main.c's parsers, shared for tests: 0 or -EINVAL. */
int crawl_parse_size(const char *s, int64_t *bytes);

#endif
