/* http_client.c: the HTTP/1.1 client (weft/http_client.h): requests, redirects, the
 * retry of a stale pooled connection, and responses.
 *
 * One call of weft_http_client_do is a chain of hops (the request, then each redirect);
 * each hop is one exchange on one connection taken from the pool (http_client_pool.c) or
 * dialled, and parsed by http_client_parse.c. The whole chain runs under one deadline:
 * min(ctx's deadline, now + the client's timeout), given to every dial, handshake, read
 * and write, so the timeout covers connect to last byte across redirects.
 *
 * A connection goes back to the pool only when its response was read to the end, both
 * sides allow keep-alive and nothing followed the response; every other path closes it.
 * A pooled connection may have been closed by the server while idle: an idempotent
 * request (GET, HEAD) that fails on one before any response byte arrives is sent again,
 * once, on a new connection, as Go's transport does.
 *
 * The client itself is shared by any number of coroutines: its settings are fixed after
 * weft_http_client_new, the pool has its own lock, and the TLS configuration is only
 * read. Everything else belongs to one call. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/uio.h>

#include "net/http_client_parse.h"
#include "net/http_client_pool.h"
#include "net/url.h"
#include "weft/error.h"
#include "weft/http_client.h"
#include "weft/runtime.h"
#include "weft/trace.h"

#define DEFAULT_MAX_CONNS    64
#define DEFAULT_MAX_IDLE     8
#define DEFAULT_IDLE_TIMEOUT ((int64_t)90 * 1000000000)
#define DEFAULT_TIMEOUT      ((int64_t)30 * 1000000000)
#define DEFAULT_MAX_BODY     ((int64_t)10 * 1024 * 1024)
#define DEFAULT_USER_AGENT   "weft/0.1.0"
#define KEY_MAX              300

struct weft_http_client {
  int flags;              /* WEFT_HTTP_CLIENT_*; fixed */
  int max_redirects;      /* fixed */
  int64_t timeout;        /* ns, < 0 none; fixed */
  size_t max_body;        /* fixed */
  char *user_agent;       /* owned; fixed */
  weft_tls_config *tls;   /* owned; read only after new */
  struct weft__pool pool; /* its own lock */
};

struct weft_http_client_response {
  int status;
  struct weft__http_header *headers; /* owned (each name owns its value) */
  size_t nheaders;
  char *body; /* owned, NUL-terminated; NULL: empty */
  size_t body_len;
  bool truncated;
  char *url; /* owned */
  int redirects;
};

/* ---- the client ---- */

static int64_t or_default(int64_t v, int64_t dflt)
{
  return v ? v : dflt;
}

static void client_settings(weft_http_client *cl, const weft_http_client_config *cfg)
{
  cl->flags = cfg->flags;
  cl->max_redirects = cfg->max_redirects > 0 ? cfg->max_redirects : 0;
  cl->timeout = or_default(cfg->timeout, DEFAULT_TIMEOUT);
  int64_t mb = or_default(cfg->max_body, DEFAULT_MAX_BODY);
  cl->max_body = mb > 0 ? (size_t)mb : (size_t)DEFAULT_MAX_BODY;
}

static int client_tls(weft_http_client *cl, const weft_http_client_config *cfg,
                      struct weft_error **err)
{
  weft_tls_options opts = {
      .flags = (cfg->flags & WEFT_HTTP_CLIENT_INSECURE) ? WEFT_TLS_INSECURE : 0,
      .ca_file = cfg->ca_file,
      .alpn = "http/1.1",
  };
  struct weft_error *terr = NULL;
  cl->tls = weft_tls_config_new(&opts, &terr);
  if (cl->tls)
    return 0;
  int code = terr ? weft_error_code(terr) : -ENOMEM;
  if (err)
    *err = weft_error_new(code, terr, "http client: TLS configuration");
  weft_error_release(terr);
  return code ? code : -WEFT_ETLS;
}

weft_http_client *weft_http_client_new(const weft_http_client_config *cfg,
                                       struct weft_error **err)
{
  static const weft_http_client_config defaults;
  if (!cfg)
    cfg = &defaults;
  if (err)
    *err = NULL;
  weft_http_client *cl = calloc(1, sizeof *cl);
  if (!cl)
    goto err_report;
  client_settings(cl, cfg);
  int max_conns = cfg->max_conns_per_host > 0 ? cfg->max_conns_per_host : DEFAULT_MAX_CONNS;
  int max_idle = cfg->max_idle_per_host ? cfg->max_idle_per_host : DEFAULT_MAX_IDLE;
  int64_t idle_to = cfg->idle_timeout > 0 ? cfg->idle_timeout : DEFAULT_IDLE_TIMEOUT;
  cl->user_agent = strdup(cfg->user_agent ? cfg->user_agent : DEFAULT_USER_AGENT);
  if (!cl->user_agent ||
      weft__pool_init(&cl->pool, max_conns, max_idle > 0 ? max_idle : 0, idle_to) < 0)
    goto err_free_client;
  if (client_tls(cl, cfg, err) < 0)
    goto err_free_client;
  return cl;

err_free_client:
  weft__pool_destroy(&cl->pool); /* safe on a zeroed pool */
  free(cl->user_agent);
  free(cl);
err_report:
  if (err && !*err)
    *err = weft_error_new(-ENOMEM, NULL, "http client");
  return NULL;
}

void weft_http_client_free(weft_http_client *cl)
{
  if (!cl)
    return;
  weft__pool_destroy(&cl->pool);
  weft_tls_config_free(cl->tls);
  free(cl->user_agent);
  free(cl);
}

int weft__http_client_idle_count(weft_http_client *cl, const char *key)
{
  return weft__pool_idle_count(&cl->pool, key);
}

/* ---- request validation and the request head ---- */

static bool is_tchar(unsigned char c)
{
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool is_token(const char *s)
{
  if (!s || !*s)
    return false;
  for (; *s; s++)
    if (!is_tchar((unsigned char)*s))
      return false;
  return true;
}

/* A header value may not break the message: no CR, LF (or NUL, which ends it). */
static bool is_field_value(const char *s)
{
  return s && !strpbrk(s, "\r\n");
}

/* Headers the client sets from the request itself. */
static bool is_framing_header(const char *name)
{
  return strcasecmp(name, "Content-Length") == 0 || strcasecmp(name, "Transfer-Encoding") == 0;
}

static int check_request(const weft_http_client_request *req)
{
  if (!req || !req->url || (req->method && !is_token(req->method)))
    return -EINVAL;
  if (req->body_len && !req->body)
    return -EINVAL;
  for (const char *const *h = req->headers; h && *h; h += 2) {
    if (!is_token(h[0]) || !is_field_value(h[1]) || is_framing_header(h[0]))
      return -EINVAL;
  }
  return 0;
}

static const char *user_header(const char *const *headers, const char *name)
{
  for (const char *const *h = headers; h && *h; h += 2)
    if (strcasecmp(h[0], name) == 0)
      return h[1];
  return NULL;
}

/* A growing string; err is set on the first failed append. */
struct strbuf {
  char *p;
  size_t n, cap;
  int err;
};

/* Make room for n more bytes and the NUL. */
static bool sb_reserve(struct strbuf *sb, size_t n)
{
  if (sb->err)
    return false;
  if (sb->n + n < sb->cap)
    return true;
  size_t cap = sb->cap ? sb->cap : 512;
  while (cap <= sb->n + n)
    cap *= 2;
  char *np = realloc(sb->p, cap);
  if (!np) {
    sb->err = -ENOMEM;
    return false;
  }
  sb->p = np, sb->cap = cap;
  return true;
}

/* Append the strings given, up to a NULL. Plain copies: the head is built per request,
 * and formatting it with vsnprintf cost more than the rest of building it. */
__attribute__((sentinel)) static void sb_cat(struct strbuf *sb, ...)
{
  va_list ap;
  va_start(ap, sb);
  for (const char *s; (s = va_arg(ap, const char *)) != NULL;) {
    size_t n = strlen(s);
    if (!sb_reserve(sb, n))
      break;
    memcpy(sb->p + sb->n, s, n + 1);
    sb->n += n;
  }
  va_end(ap);
}

/* One hop of a request: what is sent where. */
struct hop {
  struct weft__url url;
  const char *method;
  const void *body;
  size_t body_len;
  bool drop_auth; /* a redirect changed the host: credentials are not sent on */
};

static bool is_credential(const char *name)
{
  return strcasecmp(name, "Authorization") == 0 || strcasecmp(name, "Cookie") == 0 ||
         strcasecmp(name, "Cookie2") == 0 || strcasecmp(name, "Proxy-Authorization") == 0;
}

static bool method_has_body(const char *m)
{
  return strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0;
}

/* Whether the client asked for compression (then it decodes what comes back). */
static bool asks_compression(const weft_http_client *cl, const char *const *headers)
{
  return !(cl->flags & WEFT_HTTP_CLIENT_NO_COMPRESSION) &&
         !user_header(headers, "Accept-Encoding");
}

/* The request line and headers of hop into sb. */
static void build_head(const weft_http_client *cl, const struct hop *hop,
                       const char *const *headers, const char *traceparent, struct strbuf *sb)
{
  char auth[KEY_MAX], len[24];
  sb_cat(sb, hop->method, " ", hop->url.target, " HTTP/1.1\r\n", NULL);
  if (!user_header(headers, "Host") &&
      weft__url_authority(&hop->url, false, auth, sizeof auth) > 0)
    sb_cat(sb, "Host: ", auth, "\r\n", NULL);
  if (!user_header(headers, "User-Agent") && *cl->user_agent)
    sb_cat(sb, "User-Agent: ", cl->user_agent, "\r\n", NULL);
  if (asks_compression(cl, headers))
    sb_cat(sb, "Accept-Encoding: gzip, deflate\r\n", NULL);
  if (hop->body_len || method_has_body(hop->method)) {
    snprintf(len, sizeof len, "%zu", hop->body_len);
    sb_cat(sb, "Content-Length: ", len, "\r\n", NULL);
  }
  if (!user_header(headers, "Connection"))
    sb_cat(sb, "Connection: keep-alive\r\n", NULL);
  if (traceparent)
    sb_cat(sb, "traceparent: ", traceparent, "\r\n", NULL);
  for (const char *const *h = headers; h && *h; h += 2)
    if (!(hop->drop_auth && is_credential(h[0])))
      sb_cat(sb, h[0], ": ", h[1], "\r\n", NULL);
  sb_cat(sb, "\r\n", NULL);
}

/* ---- one exchange on one connection ---- */

/* What one call carries from hop to hop. */
struct call {
  weft_http_client *cl;
  weft_ctx *ctx;
  int64_t deadline;
  const char *const *headers;
  const char *traceparent; /* for a child span of ctx's trace, or NULL */
  struct weft__http_parse ps;
  int parse_flags;
  bool we_close; /* the request said Connection: close */
};

static int dial_conn(struct call *call, const struct weft__url *u, struct weft__pool_conn **out)
{
  char addr[KEY_MAX];
  if (weft__url_authority(u, true, addr, sizeof addr) < 0)
    return -EINVAL;
  int fd = weft_dial(call->ctx, "tcp", addr, call->deadline);
  if (fd < 0)
    return fd;
  weft_conn *c = weft_conn_new(fd);
  if (!c)
    return -ENOMEM;
  if (u->https) {
    int err = weft_tls_client(&c, call->cl->tls, u->host, call->ctx, call->deadline);
    if (err)
      return err;
  }
  *out = weft__pool_conn_new(c);
  return *out ? 0 : -ENOMEM;
}

/* Send the request and read the response into call->ps. *clean is set when the
 * response ended exactly where the bytes read did. */
static int round_trip(struct call *call, struct weft__pool_conn *pc, const struct iovec *iov,
                      int iovcnt, bool *clean)
{
  weft_conn *c = pc->c;
  ssize_t n = weft_conn_writev(c, iov, iovcnt, call->ctx, call->deadline);
  if (n < 0)
    return (int)n;
  *clean = true;
  while (!call->ps.done) {
    n = weft_conn_read(c, pc->buf, sizeof pc->buf, call->ctx, call->deadline);
    if (n < 0)
      return (int)n;
    if (n == 0)
      return weft__http_parse_eof(&call->ps);
    ssize_t used = weft__http_parse_feed(&call->ps, pc->buf, (size_t)n);
    if (used < 0)
      return (int)used;
    if (used < n)
      *clean = false;
  }
  return 0;
}

/* Errors that a connection closed by the server while idle in the pool produces. */
static bool is_stale_error(int err)
{
  return err == -EPIPE || err == -ECONNRESET || err == -ECONNABORTED || err == -WEFT_ETLS;
}

static bool is_idempotent(const char *m)
{
  return strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0;
}

static int pool_key(const struct weft__url *u, char *key, size_t len)
{
  char auth[KEY_MAX];
  if (weft__url_authority(u, true, auth, sizeof auth) < 0)
    return -EINVAL;
  int n = snprintf(key, len, "%s://%s", u->https ? "https" : "http", auth);
  return n < 0 || (size_t)n >= len ? -EINVAL : 0;
}

/* Run hop on a pooled or new connection; on success call->ps holds the response. */
static int exchange(struct call *call, const struct hop *hop, const struct iovec *iov,
                    int iovcnt)
{
  char key[KEY_MAX + 16];
  struct pool_host *h;
  int err = pool_key(&hop->url, key, sizeof key);
  if (err || (err = weft__pool_enter(&call->cl->pool, key, call->ctx, call->deadline, &h)))
    return err;
  struct weft__pool_conn *keep = NULL;
  bool retryable = is_idempotent(hop->method);
  for (int attempt = 0;; attempt++) {
    struct weft__pool_conn *pc =
        attempt == 0 ? weft__pool_take(&call->cl->pool, h, retryable ? WEFT__POOL_RETRYABLE : 0)
                     : NULL;
    bool reused = pc != NULL, clean = false;
    err = pc ? 0 : dial_conn(call, &hop->url, &pc);
    if (err)
      break;
    weft__http_parse_init(&call->ps, call->parse_flags, call->cl->max_body);
    err = round_trip(call, pc, iov, iovcnt, &clean);
    if (err == 0 && clean && call->ps.keep_alive && !call->we_close && !call->ps.body.truncated)
      keep = pc;
    else
      weft__pool_conn_close(pc);
    if (err == 0 || !reused || call->ps.got_bytes || !is_stale_error(err) || !retryable)
      break;
    weft__http_parse_free(&call->ps); /* a stale pooled connection: once more, anew */
  }
  weft__pool_leave(&call->cl->pool, h, keep);
  return err;
}

/* Send hop and read its response into call->ps. */
static int send_hop(struct call *call, const struct hop *hop)
{
  struct strbuf sb = {0};
  build_head(call->cl, hop, call->headers, call->traceparent, &sb);
  int err = sb.err;
  if (!err) {
    struct iovec iov[2] = {{sb.p, sb.n}, {(void *)hop->body, hop->body_len}};
    call->parse_flags =
        (strcmp(hop->method, "HEAD") == 0 ? WEFT__HTTP_PARSE_HEAD : 0) |
        (asks_compression(call->cl, call->headers) ? WEFT__HTTP_PARSE_DECODE : 0) |
        ((call->cl->flags & WEFT_HTTP_CLIENT_TRUNCATE) ? WEFT__HTTP_PARSE_TRUNCATE : 0);
    err = exchange(call, hop, iov, hop->body_len ? 2 : 1);
  }
  free(sb.p);
  return err;
}

/* ---- redirects ---- */

static bool is_redirect(int status)
{
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

static const char *parsed_header(const struct weft__http_parse *ps, const char *name)
{
  for (size_t i = 0; i < ps->nheaders; i++)
    if (strcasecmp(ps->headers[i].name, name) == 0)
      return ps->headers[i].value;
  return NULL;
}

/* Where the response in call->ps sends hop next: 1 with *url (new) and hop updated, 0
 * when it is not a redirect to follow (also a Location that is not an http(s) URL: the
 * 3xx is then the answer), or a negative error. */
static int next_hop(struct call *call, struct hop *hop, char **url)
{
  const char *loc = parsed_header(&call->ps, "Location");
  if (!is_redirect(call->ps.status) || !loc)
    return 0;
  char *next;
  struct weft__url nu;
  int err = weft__url_resolve(*url, loc, &next);
  if (err)
    return err == -ENOMEM ? err : 0;
  if (weft__url_parse(next, &nu) < 0) {
    free(next);
    return 0;
  }
  int st = call->ps.status;
  if ((st == 301 || st == 302 || st == 303) && strcmp(hop->method, "HEAD") != 0) {
    hop->method = "GET";
    hop->body = NULL;
    hop->body_len = 0;
  }
  if (strcmp(nu.host, hop->url.host) != 0 || nu.port != hop->url.port)
    hop->drop_auth = true; /* and stays so, even if a later hop comes back */
  weft__url_free(&hop->url);
  hop->url = nu;
  free(*url);
  *url = next;
  return 1;
}

/* ---- requests ---- */

static int64_t call_deadline(const weft_http_client *cl, weft_ctx *ctx)
{
  int64_t d = weft_ctx_deadline(ctx);
  if (cl->timeout >= 0) {
    int64_t mine = weft_now() + cl->timeout;
    if (mine < d)
      d = mine;
  }
  return d;
}

static int make_response(struct call *call, char *url, int redirects,
                         weft_http_client_response **out)
{
  weft_http_client_response *r = calloc(1, sizeof *r);
  if (!r)
    return -ENOMEM;
  struct weft__http_parse *ps = &call->ps;
  *r = (weft_http_client_response){
      .status = ps->status,
      .headers = ps->headers,
      .nheaders = ps->nheaders,
      .body = ps->body.buf,
      .body_len = ps->body.len,
      .truncated = ps->body.truncated,
      .url = url,
      .redirects = redirects,
  };
  ps->headers = NULL;
  ps->nheaders = 0;
  ps->body.buf = NULL;
  *out = r;
  return 0;
}

/* Follow hops until a final response or an error; on success *out is the response. */
static int run_call(struct call *call, struct hop *hop, char *url,
                    weft_http_client_response **out)
{
  int err, redirects = 0;
  for (;;) {
    err = send_hop(call, hop);
    if (err)
      break;
    err = call->cl->max_redirects ? next_hop(call, hop, &url) : 0;
    if (err <= 0)
      break;
    if (redirects++ == call->cl->max_redirects) {
      err = -ELOOP;
      break;
    }
    weft__http_parse_free(&call->ps);
  }
  if (err == 0 && (err = make_response(call, url, redirects, out)) == 0)
    url = NULL;
  weft__http_parse_free(&call->ps);
  free(url);
  return err;
}

int weft_http_client_do(weft_http_client *cl, weft_ctx *ctx,
                        const weft_http_client_request *req, weft_http_client_response **out)
{
  if (!cl || !out)
    return -EINVAL;
  *out = NULL;
  int err = check_request(req);
  if (err)
    return err;
  struct hop hop = {.method = req->method ? req->method : "GET",
                    .body = req->body,
                    .body_len = req->body_len};
  char *url = strdup(req->url), tp[WEFT_TRACEPARENT_SIZE];
  bool traced = !user_header(req->headers, "traceparent") && /* the caller's wins */
                weft_trace_outgoing(ctx, tp, sizeof tp, NULL) > 0;
  struct call call = {.cl = cl,
                      .ctx = ctx,
                      .deadline = call_deadline(cl, ctx),
                      .headers = req->headers,
                      .traceparent = traced ? tp : NULL};
  const char *conn = user_header(req->headers, "Connection");
  call.we_close = conn && strcasecmp(conn, "close") == 0;
  if (!url)
    err = -ENOMEM;
  else if ((err = weft__url_parse(url, &hop.url)) == 0)
    err = run_call(&call, &hop, url, out), url = NULL;
  weft__url_free(&hop.url);
  free(url);
  return err;
}

int weft_http_client_get(weft_http_client *cl, weft_ctx *ctx, const char *url,
                         weft_http_client_response **out)
{
  weft_http_client_request req = {.url = url};
  return weft_http_client_do(cl, ctx, &req, out);
}

/* ---- responses ---- */

int weft_http_client_response_status(const weft_http_client_response *resp)
{
  return resp->status;
}

const char *weft_http_client_response_header(const weft_http_client_response *resp,
                                             const char *name)
{
  for (size_t i = 0; i < resp->nheaders; i++)
    if (strcasecmp(resp->headers[i].name, name) == 0)
      return resp->headers[i].value;
  return NULL;
}

size_t weft_http_client_response_header_count(const weft_http_client_response *resp)
{
  return resp->nheaders;
}

int weft_http_client_response_header_at(const weft_http_client_response *resp, size_t i,
                                        const char **name, const char **value)
{
  if (i >= resp->nheaders)
    return -ENOENT;
  if (name)
    *name = resp->headers[i].name;
  if (value)
    *value = resp->headers[i].value;
  return 0;
}

const char *weft_http_client_response_body(const weft_http_client_response *resp, size_t *len)
{
  if (len)
    *len = resp->body_len;
  return resp->body ? resp->body : "";
}

int weft_http_client_response_truncated(const weft_http_client_response *resp)
{
  return resp->truncated ? 1 : 0;
}

const char *weft_http_client_response_url(const weft_http_client_response *resp)
{
  return resp->url;
}

int weft_http_client_response_redirects(const weft_http_client_response *resp)
{
  return resp->redirects;
}

void weft_http_client_response_free(weft_http_client_response *resp)
{
  if (!resp)
    return;
  for (size_t i = 0; i < resp->nheaders; i++)
    free(resp->headers[i].name);
  free(resp->headers);
  free(resp->body);
  free(resp->url);
  free(resp);
}
