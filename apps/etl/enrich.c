/* enrich.c: the three enrichment APIs (etl.md, "Enrichment APIs") through weft's HTTP
 * client.
 *
 * One call = up to --retries attempts, each under its own deadline (--call-timeout: the
 * HTTP client's timeout, so min(the pipeline context's deadline, start of the attempt +
 * --call-timeout), as a child context with that timeout would give, without making one
 * and arming its timer per attempt), with exponential back-off and jitter between them
 * (100 ms, x2, +-50%) for timeouts, connection errors and 5xx. Other 4xx and answers
 * that cannot be read fail at once. 404 is an answer: the fields stay empty.
 *
 * Breakers count CALLS, not attempts: the breaker is asked once before the first attempt
 * and told the call's final result once. A 404 and a cancelled call are excluded (count
 * as neither). The design that lost: a breaker around each attempt, which at a 20% error
 * rate opens on any three 503s in a row and turns a mostly healthy API into --breaker-open
 * of partial events.
 *
 * Threads: the enricher is read-only once built; the client and the breakers are safe for
 * any number of coroutines. Each event's three calls run concurrently: users and geo in
 * coroutines of their own, fx on the caller, joined by a wait group before etl_enrich
 * returns, so their state lives on the caller's stack. */
#define _GNU_SOURCE
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etl.h"

const char *const etl_api_names[ETL_API_COUNT] = {"users", "geo", "fx"};
static const char *const api_paths[ETL_API_COUNT] = {"/users/", "/geo/", "/rates/"};

#define MS ((int64_t)1000000)

struct etl_enricher {
  etl_app *app;
  weft_http_client *http;
  char *base[ETL_API_COUNT];            /* base URL + path prefix, e.g. "http://h/geo/" */
  weft_breaker *breaker[ETL_API_COUNT]; /* one per API */
  weft_backoff_options backoff;         /* the attempts of one call */
};

/* One call of one API for one event: lives on the stack of etl_enrich. */
typedef struct api_call {
  etl_enricher *e;
  int api;         /* ETL_API_* */
  const char *key; /* user_id, ip or currency */
  weft_ctx *ctx;   /* the pipeline's */
  json_t *answer;  /* the 200's object (owned), NULL for a 404 or a failure */
  int err;         /* 0: answered (200 or 404); else why it failed */
  weft_wg *wg;     /* done when the call has finished (NULL: run inline) */
} api_call;

static bool is_excluded(int err, void *arg)
{
  (void)arg;
  return err == -ENOENT || err == -ECANCELED;
}

static void on_breaker_change(const char *name, weft_breaker_state from, weft_breaker_state to,
                              void *arg)
{
  etl_enricher *e = arg;
  weft_log(e->app->log, NULL, to == WEFT_BREAKER_OPEN ? WEFT_LOG_WARN : WEFT_LOG_INFO,
           "breaker state changed", WEFT_STR("api", name),
           WEFT_STR("from", weft_breaker_state_name(from)),
           WEFT_STR("to", weft_breaker_state_name(to)));
}

/* "base" without trailing slashes, then path. */
static char *join_base(const char *base, const char *path)
{
  size_t n = strlen(base);
  while (n && base[n - 1] == '/')
    n--;
  char *s = NULL;
  return asprintf(&s, "%.*s%s", (int)n, base, path) < 0 ? NULL : s;
}

etl_enricher *etl_enricher_new(etl_app *app)
{
  const etl_opts *o = app->o;
  etl_enricher *e = calloc(1, sizeof *e);
  if (!e)
    return NULL;
  e->app = app;
  /* Every enrich worker may hold a connection to every API at once. */
  weft_http_client_config cfg = {.max_conns_per_host = o->enrich_concurrency,
                                 .max_idle_per_host = o->enrich_concurrency,
                                 .timeout = o->call_timeout, /* per attempt */
                                 .max_body = 1 << 20};
  e->http = weft_http_client_new(&cfg, NULL);
  e->backoff = WEFT_BACKOFF_DEFAULTS;
  e->backoff.initial_interval = 100 * MS;
  e->backoff.multiplier = 2;
  e->backoff.max_interval = 10000 * MS;
  e->backoff.max_elapsed_time = 0;
  e->backoff.max_attempts = o->retries;
  for (int i = 0; i < ETL_API_COUNT; i++) {
    weft_breaker_options bo = {.name = etl_api_names[i],
                               .max_requests = 1,
                               .timeout = o->breaker_open,
                               .trip_after_failures = (uint32_t)o->breaker_failures,
                               .is_excluded = is_excluded,
                               .on_state_change = on_breaker_change,
                               .arg = e,
                               .metrics = app->reg};
    e->base[i] = join_base(o->api[i], api_paths[i]);
    e->breaker[i] = weft_breaker_new(&bo);
    if (!e->base[i] || !e->breaker[i])
      e->http = (weft_http_client_free(e->http), NULL);
  }
  if (!e->http)
    return etl_enricher_free(e), NULL;
  return e;
}

void etl_enricher_free(etl_enricher *e)
{
  if (!e)
    return;
  for (int i = 0; i < ETL_API_COUNT; i++) {
    free(e->base[i]);
    weft_breaker_release(e->breaker[i]);
  }
  weft_http_client_free(e->http);
  free(e);
}

/* The longest URL built on the stack; a longer key gets a malloc'd one. */
#define URL_ON_STACK 256

/* base + key, the key percent-encoded as one path segment, into buf (len bytes) when it
 * fits, else into a new allocation. Returns the URL (buf or new: free if not buf), or NULL
 * when out of memory. */
static char *call_url(const char *base, const char *key, char *buf, size_t len)
{
  size_t bl = strlen(base), kl = strlen(key);
  size_t need = bl + 3 * kl + 1;
  char *url = need <= len ? buf : malloc(need), *p;
  if (!url)
    return NULL;
  memcpy(url, base, bl);
  p = url + bl;
  for (const unsigned char *k = (const unsigned char *)key; *k; k++) {
    if ((*k >= 'A' && *k <= 'Z') || (*k >= 'a' && *k <= 'z') || (*k >= '0' && *k <= '9') ||
        strchr("-._~:", *k))
      *p++ = (char)*k;
    else
      p += sprintf(p, "%%%02X", *k);
  }
  *p = '\0';
  return url;
}

/* How one answer is classified: 0 (the answer is in c->answer, or a 404), a retryable
 * error (5xx), or a permanent one (other statuses, an unreadable body). */
static int classify(api_call *c, weft_http_client_response *resp)
{
  int status = weft_http_client_response_status(resp);
  if (status == 404)
    return -ENOENT;
  if (status >= 500)
    return -EAGAIN;
  if (status != 200)
    return weft_retry_permanent(-EPERM);
  size_t len;
  const char *body = weft_http_client_response_body(resp, &len);
  json_decref(c->answer);
  c->answer = json_loadb(body, len, 0, NULL);
  if (!json_is_object(c->answer))
    return weft_retry_permanent(-EPROTO);
  return 0;
}

/* One attempt under its own deadline (weft_retry's op): the client's timeout. */
static int attempt(weft_ctx *ctx, void *arg)
{
  api_call *c = arg;
  char buf[URL_ON_STACK];
  char *url = call_url(c->e->base[c->api], c->key, buf, sizeof buf);
  if (!url)
    return weft_retry_permanent(-ENOMEM);
  weft_http_client_response *resp = NULL;
  int rc = weft_http_client_get(c->e->http, ctx, url, &resp);
  if (rc == 0)
    rc = classify(c, resp);
  weft_http_client_response_free(resp);
  if (url != buf)
    free(url);
  return rc == -ENOENT ? weft_retry_permanent(-ENOENT) : rc;
}

static void on_retry(int err, int64_t delay, void *arg)
{
  api_call *c = arg;
  (void)err, (void)delay;
  etl_metrics_retry(c->e->app, c->api);
}

static etl_call_result call_result(int err)
{
  switch (err) {
  case 0:
    return ETL_CALL_OK;
  case -ENOENT:
    return ETL_CALL_NOT_FOUND;
  case -WEFT_EOPEN:
  case -WEFT_ETOOMANY:
    return ETL_CALL_REJECTED;
  case -ECANCELED:
    return ETL_CALL_CANCELED;
  }
  return ETL_CALL_FAILED;
}

/* The whole call: the breaker, then the attempts. Sets c->err. */
static void call_api(api_call *c)
{
  weft_breaker *b = c->e->breaker[c->api];
  weft_breaker_ticket t;
  int64_t start = weft_now();
  c->err = weft_breaker_allow(b, &t);
  if (c->err == 0) {
    c->err = weft_retry(c->ctx, &c->e->backoff, attempt, c, on_retry, NULL);
    if (weft_ctx_err(c->ctx))
      c->err = -ECANCELED;
    weft_breaker_done(b, &t, c->err);
  }
  etl_metrics_call(c->e->app, c->api, call_result(c->err), weft_now() - start);
}

static void call_main(void *arg)
{
  api_call *c = arg;
  call_api(c);
  weft_wg_done(c->wg);
}

static char *dup_member(json_t *o, const char *key)
{
  const char *s = json_string_value(json_object_get(o, key));
  return s ? strdup(s) : NULL;
}

/* Fill in the row from the answers; a missing or bad rate fails fx. */
static void fill_row(etl_row *r, api_call *calls)
{
  if (!calls[ETL_API_USERS].err && calls[ETL_API_USERS].answer) {
    r->tier = dup_member(calls[ETL_API_USERS].answer, "tier");
    r->user_country = dup_member(calls[ETL_API_USERS].answer, "country");
  }
  if (!calls[ETL_API_GEO].err && calls[ETL_API_GEO].answer) {
    r->ip_country = dup_member(calls[ETL_API_GEO].answer, "country");
    r->city = dup_member(calls[ETL_API_GEO].answer, "city");
  }
  api_call *fx = &calls[ETL_API_FX];
  if (!fx->err && fx->answer) {
    json_t *rate = json_object_get(fx->answer, "usd_rate");
    double v = json_number_value(rate);
    if (!json_is_number(rate) || !isfinite(v) || v < 0)
      fx->err = -EPROTO;
    else
      r->has_usd = true, r->amount_usd_cents = llround((double)r->amount_cents * v);
  }
  r->missing[0] = '\0';
  for (int i = 0; i < ETL_API_COUNT; i++)
    if (calls[i].err && calls[i].err != -ENOENT) {
      if (r->missing[0])
        strcat(r->missing, ",");
      strcat(r->missing, etl_api_names[i]);
    }
}

int etl_enrich(etl_enricher *e, weft_ctx *ctx, etl_item *it)
{
  etl_row *r = &it->row;
  weft_wg wg = WEFT_WG_INIT;
  const char *keys[ETL_API_COUNT] = {r->user_id, r->ip, r->currency};
  api_call calls[ETL_API_COUNT];
  for (int i = 0; i < ETL_API_COUNT; i++)
    calls[i] = (api_call){.e = e, .api = i, .key = keys[i], .ctx = ctx, .wg = &wg};
  for (int i = 0; i < ETL_API_FX; i++) {
    weft_wg_add(&wg, 1);
    if (weft_go_named(call_main, &calls[i], "etl enrich call") < 0) {
      calls[i].err = -ENOMEM;
      weft_wg_done(&wg);
    }
  }
  call_api(&calls[ETL_API_FX]);
  weft_wg_wait(&wg);
  int rc = weft_ctx_err(ctx);
  if (rc == 0)
    fill_row(r, calls);
  for (int i = 0; i < ETL_API_COUNT; i++)
    json_decref(calls[i].answer);
  return rc;
}
