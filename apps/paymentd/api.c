/* api.c: paymentd's HTTP API (paymentd.md), on weft's router.
 *
 * Order of the checks, as the contract fixes it: authentication (for /v1/), then the
 * shutdown refusal, then path (404) and method (405, with Allow) through the router, then
 * in the confirm handler: id, content type, size, body. All of it runs in the handler, on
 * the connection's coroutine: only a valid confirmation is queued for a worker.
 *
 * The router is built once before serving and only read afterwards (weft's router has no
 * lock). */
#define _GNU_SOURCE
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "body.h"
#include "paymentd.h"

#define MAX_BODY (64 * 1024)

static weft_http_router *router; /* written before serving, read-only after */

/* ---- replies ---- */

/* Records and errors are written straight into a buffer: json_pack and json_dumps took
 * about a fifth of a confirmation's CPU time (perf, the memory store, wrk -c64).
 * json_out's invariant: p == NULL once something did not fit, and then every writer does
 * nothing, so a reply is either whole or replaced by a 500. */
typedef struct json_out {
  char *p, *end;
} json_out;

#define OUT_LIT(o, lit) out_raw((o), (lit), sizeof(lit) - 1)

static void out_raw(json_out *o, const char *s, size_t n)
{
  if (!o->p || (size_t)(o->end - o->p) < n) {
    o->p = NULL;
    return;
  }
  memcpy(o->p, s, n);
  o->p += n;
}

/* s as a JSON string, with json_dumps's escapes (UTF-8 passes through unchanged). */
static void out_str(json_out *o, const char *s)
{
  static const char hex[] = "0123456789ABCDEF";
  OUT_LIT(o, "\"");
  while (*s && o->p) {
    size_t run = 0; /* bytes that need no escape */
    while ((unsigned char)s[run] >= 0x20 && s[run] != '"' && s[run] != '\\')
      run++;
    out_raw(o, s, run);
    s += run;
    if (!*s)
      break;
    unsigned char c = (unsigned char)*s++;
    char esc[6] = {'\\', (char)c};
    size_t n = 2;
    switch (c) {
    case '"':
    case '\\':
      break;
    case '\b':
      esc[1] = 'b';
      break;
    case '\f':
      esc[1] = 'f';
      break;
    case '\n':
      esc[1] = 'n';
      break;
    case '\r':
      esc[1] = 'r';
      break;
    case '\t':
      esc[1] = 't';
      break;
    default: /* another control character */
      esc[1] = 'u', esc[2] = '0', esc[3] = '0', esc[4] = hex[c >> 4], esc[5] = hex[c & 15];
      n = 6;
    }
    out_raw(o, esc, n);
  }
  OUT_LIT(o, "\"");
}

static void out_int(json_out *o, int64_t v)
{
  char digits[24], *d = digits + sizeof digits;
  uint64_t u = v < 0 ? -(uint64_t)v : (uint64_t)v;
  do
    *--d = (char)('0' + u % 10);
  while ((u /= 10) != 0);
  if (v < 0)
    *--d = '-';
  out_raw(o, d, (size_t)(digits + sizeof digits - d));
}

/* Send what o holds (started at buf), or a 500 when it overflowed. */
static void send_json(weft_http_response *w, int status, json_out *o, const char *buf)
{
  if (!o->p) {
    weft_http_response_error(w, 500, NULL);
    return;
  }
  weft_http_response_send(w, status, "application/json", buf, (size_t)(o->p - buf));
}

static void reply_json(weft_http_response *w, int status, json_t *j)
{
  if (!j) {
    weft_http_response_error(w, 500, NULL);
    return;
  }
  weft_http_response_json(w, status, j);
  json_decref(j);
}

/* code and msg: short texts (at most a few hundred bytes escaped). */
static void reply_error(weft_http_response *w, int status, const char *code, const char *msg)
{
  char buf[1024];
  json_out o = {buf, buf + sizeof buf};
  OUT_LIT(&o, "{\"error\":");
  out_str(&o, code);
  OUT_LIT(&o, ",\"message\":");
  out_str(&o, msg);
  OUT_LIT(&o, "}");
  send_json(w, status, &o, buf);
}

static void reply_record(weft_http_response *w, const pay_record *rec, bool replayed)
{
  /* Every string escaped at most 6 bytes per byte, plus the keys and the number. */
  char buf[6 * sizeof *rec + 160];
  json_out o = {buf, buf + sizeof buf};
  if (replayed)
    weft_http_response_set_header(w, "Idempotent-Replayed", "true");
  OUT_LIT(&o, "{\"id\":");
  out_str(&o, rec->id);
  OUT_LIT(&o, ",\"status\":\"confirmed\",\"amount_cents\":");
  out_int(&o, rec->amount_cents);
  OUT_LIT(&o, ",\"currency\":");
  out_str(&o, rec->currency);
  OUT_LIT(&o, ",\"account\":");
  out_str(&o, rec->account);
  OUT_LIT(&o, ",\"confirmed_at\":");
  out_str(&o, rec->confirmed_at);
  OUT_LIT(&o, "}");
  send_json(w, 200, &o, buf);
}

static void reply_shutting_down(weft_http_response *w)
{
  weft_http_response_close_after(w);
  reply_error(w, 503, "shutting_down", "the service is shutting down");
}

/* ---- validation ---- */

static bool valid_id(const char *id)
{
  size_t n = id ? strlen(id) : 0;
  return n >= 1 && n <= PAY_ID_MAX &&
         strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") == n;
}

/* application/json or application/<anything>+json, parameters allowed, any case. */
static bool json_content_type(const char *ct)
{
  if (!ct)
    return false;
  ct += strspn(ct, " \t");
  size_t n = strcspn(ct, ";");
  while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
    n--;
  if (n == 16 && strncasecmp(ct, "application/json", 16) == 0)
    return true;
  return n > 17 && strncasecmp(ct, "application/", 12) == 0 &&
         strncasecmp(ct + n - 5, "+json", 5) == 0 && memchr(ct + 12, '/', n - 12) == NULL;
}

/* ---- handlers ---- */

static void reply_outcome(pay_app *app, weft_http_response *w, int rc, const pay_record *out)
{
  switch (rc) {
  case PAY_CONFIRMED:
  case PAY_REPLAYED:
    return reply_record(w, out, rc == PAY_REPLAYED);
  case PAY_CONFLICT:
    return reply_error(w, 409, "conflict", "the payment was confirmed with other values");
  case -EBUSY:
    return reply_error(w, 409, "in_progress", "the payment is being confirmed");
  case -EAGAIN:
    pay_metrics_rejected(app);
    weft_http_response_set_header(w, "Retry-After", "1");
    return reply_error(w, 429, "queue_full", "too many confirmations queued; retry later");
  case -EPIPE:
  case -ECANCELED:
    return reply_shutting_down(w);
  case -EIO:
  case -ENOMEM:
    weft_log_error(app->log, NULL, "confirmation failed", WEFT_ERRNO("err", rc));
    return reply_error(w, 500, "store_error", "the store failed; nothing was confirmed");
  default:
    return reply_error(w, 504, "timeout", "the confirmation is still being processed");
  }
}

/* Read the body within MAX_BODY; 0, or -1 after answering. */
static int read_body(weft_http_response *w, weft_http_request *r, const char **body,
                     size_t *len)
{
  if (weft_http_request_content_length(r) > MAX_BODY) {
    reply_error(w, 413, "body_too_large", "the body is larger than 64 KiB");
    return -1;
  }
  weft_http_request_set_body_limit(r, MAX_BODY);
  int rc = weft_http_request_body(r, body, len);
  if (rc == -EFBIG)
    reply_error(w, 413, "body_too_large", "the body is larger than 64 KiB");
  else if (rc < 0)
    reply_error(w, 400, "invalid_json", "the body could not be read");
  return rc < 0 ? -1 : 0;
}

static void h_confirm(weft_http_response *w, weft_http_request *r, void *arg)
{
  pay_app *app = arg;
  const char *id = weft_http_request_path_value(r, "id"), *body, *msg, *code;
  size_t len;
  if (!valid_id(id))
    return reply_error(w, 400, "invalid_id", "id must be 1 to 64 characters of [A-Za-z0-9_-]");
  if (!json_content_type(weft_http_request_header(r, "Content-Type")))
    return reply_error(w, 415, "unsupported_media_type", "the body must be application/json");
  if (read_body(w, r, &body, &len) < 0)
    return;
  pay_record req = {0}, out;
  strcpy(req.id, id);
  if ((code = pay_body_parse(body, len, &req, &msg)))
    return reply_error(w, 400, code, msg);
  /* The wait ends at --request-timeout or when the job does, whichever is first; not
   * with the request's context: the job goes on when its client leaves (a retry replays
   * it), and the wait is short, so cancelling it would only spare a coroutine a few
   * milliseconds, at the price of a disconnect watcher and a context per request. */
  int rc = pay_confirm(app, &req, NULL, weft_now() + app->o->request_timeout, &out);
  reply_outcome(app, w, rc, &out);
}

static void h_get(weft_http_response *w, weft_http_request *r, void *arg)
{
  pay_app *app = arg;
  const char *id = weft_http_request_path_value(r, "id");
  if (!valid_id(id))
    return reply_error(w, 400, "invalid_id", "id must be 1 to 64 characters of [A-Za-z0-9_-]");
  pay_record rec;
  int rc = app->store->ops->get(app->store, id, &rec);
  if (rc == -ENOENT)
    return reply_error(w, 404, "not_found", "no such payment");
  if (rc < 0)
    return reply_error(w, 500, "store_error", "the store failed");
  reply_record(w, &rec, false);
}

static void h_healthz(weft_http_response *w, weft_http_request *r, void *arg)
{
  (void)r;
  pay_app *app = arg;
  weft_pool_stats st = {0};
  weft_pool_stats_read(app->pool, &st);
  const char *status = "ok";
  if (atomic_load_explicit(&app->shutting_down, memory_order_relaxed)) {
    status = "shutting_down";
    weft_http_response_close_after(w);
  } else if (st.queue_depth * 10 >= (size_t)app->o->queue * 9) {
    status = "saturated";
  }
  reply_json(w, strcmp(status, "ok") == 0 ? 200 : 503,
             json_pack("{s:s,s:I,s:I,s:i,s:i}", "status", status, "queue_depth",
                       (json_int_t)st.queue_depth, "queue_capacity", (json_int_t)app->o->queue,
                       "workers", app->workers, "workers_busy", st.busy));
}

static void h_metrics(weft_http_response *w, weft_http_request *r, void *arg)
{
  (void)r;
  size_t len;
  char *text = pay_metrics_text(arg, &len);
  if (!text)
    return weft_http_response_error(w, 500, NULL), (void)0;
  weft_http_response_send(w, 200, WEFT_METRICS_CONTENT_TYPE, text, len);
  free(text);
}

static void h_not_found(weft_http_response *w, weft_http_request *r, void *arg)
{
  (void)r, (void)arg;
  reply_error(w, 404, "not_found", "no such resource");
}

static void h_method(weft_http_response *w, weft_http_request *r, void *arg)
{
  (void)arg;
  char msg[64];
  snprintf(msg, sizeof msg, "%.20s is not allowed here", weft_http_request_method(r));
  reply_error(w, 405, "method_not_allowed", msg); /* the router has set Allow */
}

/* ---- authentication ---- */

/* Constant time in the token's content: every listed token is compared in full. */
static bool token_ok(pay_app *app, const char *given)
{
  size_t glen = strlen(given);
  unsigned found = 0;
  for (size_t t = 0; t < app->ntokens; t++) {
    const char *tok = app->tokens[t];
    size_t tlen = strlen(tok);
    unsigned diff = tlen != glen;
    for (size_t i = 0; i < tlen; i++)
      diff |= (unsigned char)tok[i] ^ (unsigned char)(i < glen ? given[i] : 0);
    found |= diff == 0;
  }
  return found != 0;
}

static bool authorized(pay_app *app, weft_http_request *r)
{
  const char *h = weft_http_request_header(r, "Authorization");
  if (!h || strncasecmp(h, "Bearer ", 7) != 0)
    return false;
  h += 7;
  h += strspn(h, " ");
  return *h && token_ok(app, h);
}

int pay_load_tokens(pay_app *app, const char *path, char *err, size_t errlen)
{
  FILE *f = fopen(path, "r");
  if (!f) {
    snprintf(err, errlen, "--auth-tokens %s: %s", path, strerror(errno));
    return -errno;
  }
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  app->auth = true;
  while ((n = getline(&line, &cap, f)) >= 0) {
    while (n > 0 && strchr(" \t\r\n", line[n - 1]))
      line[--n] = '\0';
    const char *tok = line + strspn(line, " \t");
    if (!*tok)
      continue;
    char **grown = realloc(app->tokens, (app->ntokens + 1) * sizeof *grown);
    if (grown)
      app->tokens = grown;
    if (!grown || !(grown[app->ntokens] = strdup(tok))) {
      snprintf(err, errlen, "--auth-tokens: out of memory");
      free(line), fclose(f);
      return -ENOMEM;
    }
    app->ntokens++;
  }
  free(line);
  fclose(f);
  return 0;
}

/* ---- dispatch ---- */

/* The route label for metrics, from the path alone (the router's 404s included). */
static enum pay_route route_of(const char *path)
{
  static const char prefix[] = "/v1/payments/", suffix[] = "/confirm";
  if (strcmp(path, "/healthz") == 0)
    return PAY_ROUTE_HEALTHZ;
  if (strcmp(path, "/metrics") == 0)
    return PAY_ROUTE_METRICS;
  if (strncmp(path, prefix, sizeof prefix - 1) != 0)
    return PAY_ROUTE_UNKNOWN;
  const char *rest = path + sizeof prefix - 1, *slash = strchr(rest, '/');
  if (!slash)
    return *rest ? PAY_ROUTE_GET : PAY_ROUTE_UNKNOWN;
  return slash > rest && strcmp(slash, suffix) == 0 ? PAY_ROUTE_CONFIRM : PAY_ROUTE_UNKNOWN;
}

static void dispatch(pay_app *app, weft_http_response *w, weft_http_request *r,
                     const char *path)
{
  bool v1 = strncmp(path, "/v1/", 4) == 0 || strcmp(path, "/v1") == 0;
  if (v1 && app->auth && !authorized(app, r)) {
    weft_http_response_set_header(w, "WWW-Authenticate", "Bearer");
    return reply_error(w, 401, "unauthorized", "a valid bearer token is required");
  }
  if (atomic_load_explicit(&app->shutting_down, memory_order_relaxed) &&
      strcmp(path, "/healthz") != 0)
    return reply_shutting_down(w);
  weft_http_router_serve(w, r, router);
}

void pay_api_serve(weft_http_response *w, weft_http_request *r, void *arg)
{
  pay_app *app = arg;
  int64_t start = weft_now();
  const char *path = weft_http_request_path(r);
  dispatch(app, w, r, path);
  int code = weft_http_response_status(w);
  pay_metrics_request(app, route_of(path), code ? code : 200, weft_now() - start);
  weft_log_debug(app->log, weft_http_request_ctx(r), "request",
                 WEFT_STR("method", weft_http_request_method(r)), WEFT_STR("path", path),
                 WEFT_INT("status", code), WEFT_DUR("duration", weft_now() - start));
}

int pay_api_init(pay_app *app)
{
  router = weft_http_router_new();
  if (!router)
    return -ENOMEM;
  int rc = weft_http_router_handle(router, "POST /v1/payments/{id}/confirm", h_confirm, app);
  rc = rc ? rc : weft_http_router_handle(router, "GET /v1/payments/{id}", h_get, app);
  rc = rc ? rc : weft_http_router_handle(router, "GET /healthz", h_healthz, app);
  rc = rc ? rc : weft_http_router_handle(router, "GET /metrics", h_metrics, app);
  weft_http_router_set_not_found(router, h_not_found, app);
  /* No redirects: an unclean path ("//", "..") would be sent to another resource (an
   * empty id to a payment named "confirm"). */
  weft_http_router_set_redirects(router, false);
  weft_http_router_set_method_not_allowed(router, h_method, app);
  return rc;
}

void pay_api_free(void)
{
  weft_http_router_free(router);
  router = NULL;
}
