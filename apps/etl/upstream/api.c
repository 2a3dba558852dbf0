/* api.c: the routes of weft-upstream and the request counter.
 *
 *   GET {prefix}{id}  the API (/users/{id}, /geo/{ip} or /rates/{currency}): after the
 *                     stall of an outage window (stall mode) and the drawn delay, 503 when
 *                     drawn, 404 when id ends in "404" (or is empty or not UTF-8), else 200
 *                     with the fake answer (data.c)
 *   GET /healthz      {"status":"ok","api":NAME}, never delayed nor stalled
 *   GET /metrics      Prometheus text: upstream_requests_total{api,code} counts every
 *                     answer except those of /healthz and /metrics (the router's 404 and
 *                     405 included), beside the runtime's and the process's own metrics
 *   anything else     404 (unknown path) or 405 (another method), with a JSON error body
 *
 * Errors are {"error": code, "message": text}, as paymentd's. Handlers run in the
 * connection's coroutine and park only in weft_sleep_ctx on the request's context, which
 * the server cancels when it cuts connections (an outage in refuse mode, a shutdown): a
 * request cut while it waits is not answered and not counted. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "upstream.h"

enum { C200, C404, C405, C500, C503, COTHER };

static int code_slot(int code)
{
  switch (code) {
  case 200:
    return C200;
  case 404:
    return C404;
  case 405:
    return C405;
  case 500:
    return C500;
  case 503:
    return C503;
  }
  return COTHER;
}

static void count(up_app *app, int code)
{
  int slot = code_slot(code);
  if (slot != COTHER) {
    weft_counter_inc(app->by_code[slot]);
    return;
  }
  char c[16];
  snprintf(c, sizeof c, "%d", code);
  weft_counter_inc(weft_counter_vec_with(app->requests, up_api_name(app->o->api), c));
}

/* An error answer {"error": code, "message": message}, counted. */
static void reply_error(up_app *app, weft_http_response *w, int status, const char *code,
                        const char *message)
{
  char body[256];
  int n = snprintf(body, sizeof body, "{\"error\":\"%s\",\"message\":\"%s\"}", code, message);
  weft_http_response_send(w, status, "application/json", body, (size_t)n);
  count(app, status);
}

/* Wait until a stall-mode window holding now has ended. false: the request was cut. */
static bool wait_out_stall(up_app *app, weft_http_request *r)
{
  if (app->o->outage_mode != UP_OUTAGE_STALL)
    return true;
  const up_window *win = up_outage_at(app->o, weft_now() - app->started);
  if (!win)
    return true;
  return weft_sleep_ctx(weft_http_request_ctx(r), app->started + win->end - weft_now()) == 0;
}

static bool ends_in_404(const char *id)
{
  size_t n = strlen(id);
  return n >= 3 && strcmp(id + n - 3, "404") == 0;
}

/* The request's context is asked for only where the handler sleeps on it: asking starts
 * the server's disconnect watcher for the request (weft_http_request_ctx), a coroutine
 * and a poller wait that an answer given at once does not need. */
static void h_api(weft_http_response *w, weft_http_request *r, void *arg)
{
  up_app *app = arg;
  if (!wait_out_stall(app, r))
    return;
  up_draw d = up_faults_draw(app);
  if (d.delay > 0 && weft_sleep_ctx(weft_http_request_ctx(r), d.delay) != 0)
    return;
  if (d.unavailable)
    return reply_error(app, w, 503, "unavailable", "injected error");
  const char *id = weft_http_request_path_value(r, "id");
  char body[1024];
  int n = id && *id && !ends_in_404(id)
              ? up_answer(app->o->api, app->o->seed, id, body, sizeof body)
              : -ENOENT;
  if (n < 0)
    return reply_error(app, w, 404, "not_found", "no such resource");
  weft_http_response_send(w, 200, "application/json", body, (size_t)n);
  count(app, 200);
}

static void h_not_found(weft_http_response *w, weft_http_request *r, void *arg)
{
  (void)r;
  reply_error(arg, w, 404, "not_found", "no such resource");
}

static void h_method(weft_http_response *w, weft_http_request *r, void *arg)
{
  (void)r;
  reply_error(arg, w, 405, "method_not_allowed", "method not allowed");
}

static void h_healthz(weft_http_response *w, weft_http_request *r, void *arg)
{
  (void)r;
  up_app *app = arg;
  char body[64];
  int n = snprintf(body, sizeof body, "{\"status\":\"ok\",\"api\":\"%s\"}",
                   up_api_name(app->o->api));
  weft_http_response_send(w, 200, "application/json", body, (size_t)n);
}

static void h_metrics(weft_http_response *w, weft_http_request *r, void *arg)
{
  (void)r, (void)arg;
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  int rc = f ? weft_metrics_write_prometheus(NULL, f) : -ENOMEM;
  if (!f || fclose(f) != 0 || rc < 0)
    weft_http_response_error(w, 500, NULL);
  else
    weft_http_response_send(w, 200, WEFT_METRICS_CONTENT_TYPE, text, len);
  free(text);
}

static int init_metrics(up_app *app)
{
  static const int codes[] = {200, 404, 405, 500, 503}; /* in slot order: C200 .. C503 */
  _Static_assert(sizeof codes / sizeof *codes == COTHER, "a code per cached slot");
  int rc = weft_counter_vec_new(NULL, "upstream_requests_total",
                                "API requests answered, by API and status code.", 2,
                                (const char *[]){"api", "code"}, &app->requests);
  for (int i = 0; rc == 0 && i < COTHER; i++) {
    char c[8];
    snprintf(c, sizeof c, "%d", codes[i]);
    app->by_code[i] = weft_counter_vec_with(app->requests, up_api_name(app->o->api), c);
    if (!app->by_code[i])
      rc = -ENOMEM;
  }
  return rc;
}

int up_api_init(up_app *app, weft_http_router **out)
{
  int rc = init_metrics(app);
  weft_http_router *rt = rc ? NULL : weft_http_router_new();
  if (!rt)
    return rc ? rc : -ENOMEM;
  char pattern[64];
  snprintf(pattern, sizeof pattern, "GET %s{id}", up_api_prefix(app->o->api));
  rc = weft_http_router_handle(rt, pattern, h_api, app);
  rc = rc ? rc : weft_http_router_handle(rt, "GET /healthz", h_healthz, app);
  rc = rc ? rc : weft_http_router_handle(rt, "GET /metrics", h_metrics, app);
  if (rc) {
    weft_http_router_free(rt);
    return rc;
  }
  weft_http_router_set_not_found(rt, h_not_found, app);
  weft_http_router_set_method_not_allowed(rt, h_method, app);
  *out = rt;
  return 0;
}
