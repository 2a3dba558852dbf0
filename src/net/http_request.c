/* http_request.c: the request as a handler sees it: its head, its body read within the
 * limit, path values set by the router.
 *
 * Body bytes come from the parser one chunk at a time (http_request_parse.c): a chunk
 * points into the connection's read buffer and is handed out (pending) before the buffer
 * is read into again. */
#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "net/http_internal.h"
#include "weft/runtime.h"
#include "weft/trace.h"

static int hexval(int c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  c = tolower(c);
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decode s[0, n) into the arena; plus_space turns '+' into ' ' (queries).
 * NULL when an escape is malformed or out of memory. */
static char *decode(struct arena *a, const char *s, size_t n, bool plus_space)
{
  char *d = weft__arena_alloc(a, n + 1), *o = d;
  if (!d)
    return NULL;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '%') {
      int hi = i + 2 < n ? hexval(s[i + 1]) : -1, lo = i + 2 < n ? hexval(s[i + 2]) : -1;
      if (hi < 0 || lo < 0 || (hi | lo) == 0) /* a bad escape, or NUL */
        return NULL;
      *o++ = (char)(hi * 16 + lo);
      i += 2;
    } else {
      *o++ = plus_space && s[i] == '+' ? ' ' : s[i];
    }
  }
  *o = '\0';
  return d;
}

const char *weft__http_header_find(const struct http_header *h, size_t n, const char *name)
{
  for (size_t i = 0; i < n; i++) {
    if (!strcasecmp(h[i].name, name))
      return h[i].value;
  }
  return NULL;
}

/* Split the target into path and query; absolute-form targets give the host too.
 * Returns 0 or 400 for a target that is not a valid request target. */
static int split_target(weft_http_request *r, struct arena *a)
{
  const char *t = r->target, *path = t;
  if (!strcmp(t, "*") || r->parse.parser.method == HTTP_CONNECT) {
    r->path = "";
    r->query = "";
    return 0;
  }
  if (*t != '/') { /* absolute form: scheme://authority/path */
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(t, strlen(t), 0, &u) || !(u.field_set & (1 << UF_HOST)))
      return 400;
    /* RFC 9112 3.2.2: the target's authority, port included, replaces any Host header.
     * UF_HOST leaves out an IPv6 address's brackets and the port: put them back. */
    size_t start = u.field_data[UF_HOST].off, end = start + u.field_data[UF_HOST].len;
    if (start > 0 && t[start - 1] == '[')
      start--, end++;
    if (u.field_set & (1 << UF_PORT))
      end = (size_t)u.field_data[UF_PORT].off + u.field_data[UF_PORT].len;
    r->host = weft__arena_strndup(a, t + start, end - start);
    path = u.field_set & (1 << UF_PATH) ? t + u.field_data[UF_PATH].off : "/";
  }
  size_t plen = strcspn(path, "?#");
  r->path = decode(a, path, plen, false);
  const char *q = path[plen] == '?' ? path + plen + 1 : "";
  r->query = weft__arena_strndup(a, q, strcspn(q, "#"));
  return r->path && r->query && r->host ? 0 : 400;
}

void weft__http_request_init(weft_http_request *r, struct http_conn *hc)
{
  struct http_req_parse p = r->parse; /* parsed head, kept */
  *r = (weft_http_request){.hc = hc, .parse = p};
  http_parser *hp = &r->parse.parser;
  r->parse.parser.data = &r->parse;
  r->method = http_method_str(hp->method);
  r->target = r->parse.url;
  r->version = hp->http_minor ? 11 : 10; /* the parser admits only HTTP/1.x */
  r->host = weft__http_header_find(p.headers, p.nheaders, "Host");
  if (!r->host)
    r->host = "";
  if (hp->flags & F_CHUNKED)
    r->content_length = -1;
  else
    r->content_length = hp->flags & F_CONTENTLENGTH ? (int64_t)hp->content_length : 0;
  const char *expect = weft__http_header_find(p.headers, p.nheaders, "Expect");
  r->expect_continue = expect && !strcasecmp(expect, "100-continue") && r->version >= 11;
  r->body_limit = hc->srv->limits.max_body;
  r->body_done = false; /* set when the parser reports the message complete */
}

int weft__http_request_validate(weft_http_request *r)
{
  return split_target(r, &r->hc->arena);
}

void weft__http_request_finish(weft_http_request *r)
{
  if (r->ctx) {
    weft_ctx_cancel(r->ctx);
    weft_ctx_release(r->ctx);
  }
  free(r->body_all);
  free(r->values);
  r->ctx = NULL;
  r->body_all = NULL;
  r->values = NULL;
}

/* ---- accessors ---- */

const char *weft_http_request_method(const weft_http_request *r)
{
  return r->method;
}

const char *weft_http_request_target(const weft_http_request *r)
{
  return r->target;
}

const char *weft_http_request_path(const weft_http_request *r)
{
  return r->path;
}

const char *weft_http_request_query(const weft_http_request *r)
{
  return r->query;
}

const char *weft_http_request_host(const weft_http_request *r)
{
  return r->host;
}

int weft_http_request_version(const weft_http_request *r)
{
  return r->version;
}

const char *weft_http_request_header(const weft_http_request *r, const char *name)
{
  return weft__http_header_find(r->parse.headers, r->parse.nheaders, name);
}

size_t weft_http_request_header_count(const weft_http_request *r)
{
  return r->parse.nheaders;
}

int weft_http_request_header_at(const weft_http_request *r, size_t i, const char **name,
                                const char **value)
{
  if (i >= r->parse.nheaders)
    return -ENOENT;
  *name = r->parse.headers[i].name;
  *value = r->parse.headers[i].value;
  return 0;
}

int64_t weft_http_request_content_length(const weft_http_request *r)
{
  return r->content_length;
}

const char *weft_http_request_remote_addr(const weft_http_request *r)
{
  return r->hc->remote;
}

weft_ctx *weft_http_request_ctx(const weft_http_request *r)
{
  weft_http_request *m = (weft_http_request *)r; /* created on first use */
  if (!m->ctx) { /* the server span: the caller's traceparent is parsed only now */
    m->ctx = weft_trace_server_ctx(r->hc->srv->force_ctx,
                                   weft_http_request_header(r, "traceparent"));
    weft__http_watch_start(m); /* cancel it if the client goes away */
  }
  return m->ctx ? m->ctx : r->hc->srv->force_ctx;
}

ssize_t weft_http_request_query_value(const weft_http_request *r, const char *name, char *buf,
                                      size_t len)
{
  size_t nlen = strlen(name);
  for (const char *q = r->query; *q;) {
    size_t plen = strcspn(q, "&");
    const char *eq = memchr(q, '=', plen);
    size_t klen = eq ? (size_t)(eq - q) : plen;
    if (klen == nlen && !memcmp(q, name, nlen)) {
      const char *v = eq ? eq + 1 : q + plen;
      size_t vlen = (size_t)(q + plen - v);
      struct arena tmp = {0};
      char *d = decode(&tmp, v, vlen, true);
      ssize_t rc = !d ? -EINVAL : strlen(d) >= len ? -ENOSPC : (ssize_t)strlen(d);
      if (rc >= 0)
        memcpy(buf, d, (size_t)rc + 1);
      weft__arena_free(&tmp);
      return rc;
    }
    q += plen + (q[plen] == '&');
  }
  return -ENOENT;
}

const char *weft_http_request_path_value(const weft_http_request *r, const char *name)
{
  for (size_t i = 0; i < r->nvalues; i++) {
    if (!strcmp(r->values[i].name, name))
      return r->values[i].value;
  }
  return NULL;
}

int weft_http_request_set_path_value(weft_http_request *r, const char *name, const char *value)
{
  struct arena *a = &r->hc->arena;
  for (size_t i = 0; i < r->nvalues; i++) {
    if (!strcmp(r->values[i].name, name)) {
      r->values[i].value = weft__arena_strndup(a, value, strlen(value));
      return r->values[i].value ? 0 : -ENOMEM;
    }
  }
  if (r->nvalues == r->values_cap) {
    size_t cap = r->values_cap ? 2 * r->values_cap : 4;
    struct path_value *v = realloc(r->values, cap * sizeof *v);
    if (!v)
      return -ENOMEM;
    r->values = v;
    r->values_cap = cap;
  }
  const char *n = weft__arena_strndup(a, name, strlen(name));
  const char *v = weft__arena_strndup(a, value, strlen(value));
  if (!n || !v)
    return -ENOMEM;
  r->values[r->nvalues++] = (struct path_value){n, v};
  return 0;
}

const char *weft_http_request_pattern(const weft_http_request *r)
{
  return r->pattern;
}

int weft__http_request_set_pattern(weft_http_request *r, const char *pattern)
{
  r->pattern = pattern; /* the router's string, which outlives the request */
  return 0;
}

/* ---- body ---- */

int weft_http_request_set_body_limit(weft_http_request *r, int64_t max)
{
  if (r->body_started)
    return -EINVAL;
  r->body_limit = max;
  return 0;
}

static int send_continue(weft_http_request *r)
{
  static const char msg[] = "HTTP/1.1 100 Continue\r\n\r\n";
  r->continue_sent = true;
  int64_t timeout = r->hc->srv->cfg.write_timeout;
  int64_t deadline = timeout < 0 ? WEFT_NO_DEADLINE : weft_now() + timeout;
  ssize_t n = weft_conn_write(r->hc->conn, msg, sizeof msg - 1, NULL, deadline);
  return n < 0 ? (int)n : 0;
}

/* The next body chunk into r->pending; 0 at the end of the body, or an error. */
static int next_chunk(weft_http_request *r)
{
  int64_t timeout = r->hc->srv->cfg.body_timeout;
  for (;;) {
    int ev = weft__http_conn_parse_step(r->hc, r, 0, timeout); /* per read: now + timeout */
    if (ev == HTTP_PARSE_BODY) {
      r->pending = r->parse.body_at;
      r->pending_len = r->parse.body_len;
      return 1;
    }
    if (ev == HTTP_PARSE_COMPLETE)
      return 0;
    if (ev == HTTP_PARSE_ERROR)
      return -EPROTO;
    if (ev < 0)
      return ev == -EPIPE ? -EPROTO : ev; /* the client stopped mid-body */
  }
}

ssize_t weft_http_request_read_body(weft_http_request *r, void *buf, size_t len)
{
  if (r->body_err)
    return r->body_err;
  if (r->body_done && r->pending_len == 0)
    return 0;
  bool over = r->body_limit >= 0 && r->content_length > r->body_limit;
  if (over) {
    r->body_too_large = true;
    return r->body_err = -EFBIG;
  }
  r->body_started = true;
  if (r->expect_continue && !r->continue_sent) {
    int err = send_continue(r);
    if (err)
      return r->body_err = err;
  }
  while (r->pending_len == 0) {
    int rc = next_chunk(r);
    if (rc <= 0) {
      if (rc == 0) {
        r->body_done = true;
        weft__http_watch_start(r); /* the socket is free to watch now */
      } else {
        r->body_err = rc;
      }
      return rc;
    }
  }
  size_t n = r->pending_len < len ? r->pending_len : len;
  if (r->body_limit >= 0 && r->body_read + (int64_t)n > r->body_limit) {
    r->body_too_large = true;
    return r->body_err = -EFBIG;
  }
  memcpy(buf, r->pending, n);
  r->pending += n;
  r->pending_len -= n;
  r->body_read += (int64_t)n;
  return (ssize_t)n;
}

int weft_http_request_body(weft_http_request *r, const char **data, size_t *len)
{
  if (!r->body_all) {
    size_t cap = r->content_length > 0 ? (size_t)r->content_length + 1 : 1024, n = 0;
    if (r->body_limit >= 0 && r->content_length > r->body_limit)
      cap = 1;
    char *buf = malloc(cap);
    for (;;) {
      if (!buf)
        return -ENOMEM;
      if (n + 1 == cap) {
        char *grown = realloc(buf, cap * 2);
        if (!grown) {
          free(buf);
          return -ENOMEM;
        }
        buf = grown;
        cap *= 2;
      }
      ssize_t got = weft_http_request_read_body(r, buf + n, cap - 1 - n);
      if (got < 0) {
        free(buf);
        return (int)got;
      }
      if (got == 0)
        break;
      n += (size_t)got;
    }
    buf[n] = '\0';
    r->body_all = buf;
    r->body_all_len = n;
  }
  *data = r->body_all;
  if (len)
    *len = r->body_all_len;
  return 0;
}

int weft_http_request_json(weft_http_request *r, json_t **out, char *errbuf, size_t errlen)
{
  const char *data;
  size_t len;
  int err = weft_http_request_body(r, &data, &len);
  if (err)
    return err;
  json_error_t jerr;
  json_t *j = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!j) {
    if (errbuf && errlen)
      snprintf(errbuf, errlen, "%s at line %d column %d", jerr.text, jerr.line, jerr.column);
    return -EBADMSG;
  }
  *out = j;
  return 0;
}

bool weft__http_request_drain(weft_http_request *r, int64_t max)
{
  char sink[4096];
  if (r->body_err)
    return false;
  if (r->expect_continue && !r->continue_sent) {
    if (r->content_length != 0)
      return false;          /* never asked for: the client may or may not send it; close */
    r->continue_sent = true; /* nothing to ask for */
  }
  r->body_limit = r->body_read + max;
  for (;;) {
    ssize_t n = weft_http_request_read_body(r, sink, sizeof sink);
    if (n == 0)
      return true;
    if (n < 0)
      return false;
  }
}
