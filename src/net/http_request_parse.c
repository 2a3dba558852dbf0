/* http_request_parse.c: request messages through nodejs/http-parser, with weft's limits.
 *
 * The parser is fed whatever each read returned. Its callbacks copy the request line and
 * headers into the request's arena (a field or value may arrive in pieces across reads)
 * and pause the parser at the end of the head, at every body chunk and at the end of the
 * message, so the connection's coroutine takes one step at a time: the body is parsed
 * only as fast as the handler reads it, and bytes of a pipelined next request stay in
 * the read buffer.
 *
 * Limits: the request line beyond max_line → 414; a header line beyond max_line, more than
 * max_headers headers, or a head beyond max_header_bytes → 431; anything http-parser
 * rejects (bad syntax, Content-Length together with chunked, conflicting lengths, bad
 * chunk sizes: the request smuggling checks) → 400. */
#include <string.h>

#include "net/http_internal.h"

static struct http_req_parse *of(http_parser *hp)
{
  return hp->data;
}

/* Fail the message with status; returning nonzero makes http-parser stop. */
static int fail(struct http_req_parse *p, int status)
{
  if (!p->status)
    p->status = status;
  return 1;
}

/* The bytes a field of len bytes (len > 0) holds in the arena: the next power of two above
 * len. A field that arrives in many small reads is then copied O(log n) times; copying it
 * whole on every piece made the arena grow with the square of the field's length (a
 * request line sent a byte per read took 32 MiB for 8 KiB: tests/fuzz/regressions). */
static size_t field_cap(size_t len)
{
  size_t cap = 32;
  while (cap <= len)
    cap *= 2;
  return cap;
}

/* Append data to *s (of *len bytes) in the arena; a piece of a field split by a read.
 * *s is NULL or "" while *len is 0, else a block of field_cap(*len) bytes. */
static int append(struct arena *a, char **s, size_t *len, const char *data, size_t n)
{
  char *grown = *s;
  if (*len == 0 || field_cap(*len + n) != field_cap(*len)) {
    grown = weft__arena_alloc(a, field_cap(*len + n));
    if (!grown)
      return -1;
    if (*len)
      memcpy(grown, *s, *len);
  }
  memcpy(grown + *len, data, n);
  *len += n;
  grown[*len] = '\0';
  *s = grown;
  return 0;
}

static int count_head(struct http_req_parse *p, size_t n, int over_line_status)
{
  p->head_bytes += n;
  p->line_bytes += n;
  if (p->line_bytes > p->limits->max_line)
    return fail(p, over_line_status);
  if (p->head_bytes > p->limits->max_header_bytes)
    return fail(p, 431);
  return 0;
}

static int on_message_begin(http_parser *hp)
{
  return 0;
}

static int on_url(http_parser *hp, const char *at, size_t n)
{
  struct http_req_parse *p = of(hp);
  if (count_head(p, n, 414))
    return 1;
  return append(p->arena, &p->url, &p->url_len, at, n) ? fail(p, 500) : 0;
}

/* RFC 9110 5.6.2: a header name is a token. http-parser built without
 * HTTP_PARSER_STRICT lets spaces through ("Transfer-Encoding : chunked"), which a proxy
 * in front may read differently: a smuggling vector. */
static bool is_token(const char *s, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!(c > 32 && c < 127 && !strchr("\"(),/:;<=>?@[\\]{}", c)))
      return false;
  }
  return true;
}

static int on_header_field(http_parser *hp, const char *at, size_t n)
{
  struct http_req_parse *p = of(hp);
  if (!is_token(at, n))
    return fail(p, 400);
  if (p->in_value || p->nheaders == 0) { /* a new header line */
    if (p->nheaders == p->limits->max_headers)
      return fail(p, 431);
    p->headers[p->nheaders++] = (struct http_header){"", ""};
    p->line_bytes = 0;
    p->in_value = false;
  }
  if (count_head(p, n, 431))
    return 1;
  struct http_header *h = &p->headers[p->nheaders - 1];
  size_t len = strlen(h->name);
  char *s = (char *)h->name;
  if (append(p->arena, &s, &len, at, n))
    return fail(p, 500);
  h->name = s;
  return 0;
}

static int on_header_value(http_parser *hp, const char *at, size_t n)
{
  struct http_req_parse *p = of(hp);
  /* obs-fold (RFC 9112 5.2): a value continued on a line that starts with whitespace.
   * http-parser joins the lines; proxies differ (a smuggling vector): reject it. The fold
   * is seen when its LF and whitespace came in one read; split across reads, the lines
   * are joined with the whitespace, which the RFC also allows. */
  if (n && (at[0] == ' ' || at[0] == '\t') && at > p->feed_data && at[-1] == '\n')
    return fail(p, 400);
  p->in_value = true;
  if (count_head(p, n, 431))
    return 1;
  struct http_header *h = &p->headers[p->nheaders - 1];
  size_t len = strlen(h->value);
  char *s = (char *)h->value;
  if (append(p->arena, &s, &len, at, n))
    return fail(p, 500);
  h->value = s;
  return 0;
}

/* Drop the optional whitespace after a header value, which http-parser keeps. */
static void trim_values(struct http_req_parse *p)
{
  for (size_t i = 0; i < p->nheaders; i++) {
    char *v = (char *)p->headers[i].value;
    size_t n = strlen(v);
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
      v[--n] = '\0';
  }
}

static int on_headers_complete(http_parser *hp)
{
  struct http_req_parse *p = of(hp);
  /* Not fail()'s 1: here that means "no body". Only HTTP/1.x (not 0.9, not 2.0). */
  if (!p->url || hp->http_major != 1) {
    fail(p, 400);
    return -1;
  }
  trim_values(p);
  p->head_done = true;
  p->event = HTTP_PARSE_HEAD;
  http_parser_pause(hp, 1);
  return 0;
}

/* Check the bytes being fed that must be the CRLF after a chunk's data; they may lie
 * beyond what the parser has consumed, and are checked once. false: they are not CRLF. */
static bool check_chunk_crlf(struct http_req_parse *p)
{
  while (p->crlf_left) {
    uint64_t off = p->crlf_at + (uint64_t)(2 - p->crlf_left);
    if (off < p->fed || off >= p->fed + p->feed_len)
      return true; /* in a later feed */
    if (p->feed_data[off - p->fed] != (p->crlf_left == 2 ? '\r' : '\n'))
      return false;
    p->crlf_left--;
  }
  return true;
}

static int on_body(http_parser *hp, const char *at, size_t n)
{
  struct http_req_parse *p = of(hp);
  if (!check_chunk_crlf(p)) /* the previous chunk's, before this chunk's replaces it */
    return fail(p, 400);
  if ((hp->flags & F_CHUNKED) && hp->content_length == 0) { /* the chunk's last bytes */
    p->crlf_at = p->fed + (uint64_t)(at - p->feed_data) + n;
    p->crlf_left = 2;
  }
  p->body_at = at;
  p->body_len = n;
  p->event = HTTP_PARSE_BODY;
  http_parser_pause(hp, 1);
  return 0;
}

static int on_message_complete(http_parser *hp)
{
  struct http_req_parse *p = of(hp);
  p->complete = true;
  p->event = HTTP_PARSE_COMPLETE;
  http_parser_pause(hp, 1);
  return 0;
}

static http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void weft__http_req_parse_init(struct http_req_parse *p, const struct http_limits *limits,
                               struct arena *arena)
{
  *p = (struct http_req_parse){.settings = &settings, .limits = limits, .arena = arena};
  http_parser_init(&p->parser, HTTP_REQUEST);
  p->parser.data = p;
  p->headers = weft__arena_alloc(arena, limits->max_headers * sizeof *p->headers);
}

size_t weft__http_req_parse_feed(struct http_req_parse *p, const char *data, size_t len)
{
  if (p->event == HTTP_PARSE_ERROR)
    return 0;
  if (!p->headers)
    return p->status = 500, p->event = HTTP_PARSE_ERROR, 0;
  p->event = HTTP_PARSE_MORE;
  p->feed_data = data;
  p->feed_len = len;
  http_parser_pause(&p->parser, 0);
  size_t n = http_parser_execute(&p->parser, p->settings, data, len);
  enum http_errno e = HTTP_PARSER_ERRNO(&p->parser);
  bool crlf_ok = check_chunk_crlf(p);
  p->fed += n;
  if ((e == HPE_OK || e == HPE_PAUSED) && crlf_ok)
    return n;
  if (!crlf_ok)
    p->status = 400;
  if (!p->status)
    p->status = e == HPE_HEADER_OVERFLOW ? 431 : 400;
  p->event = HTTP_PARSE_ERROR;
  return n;
}
