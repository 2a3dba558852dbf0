/* http_client_parse.c: the HTTP client's response parser (see http_client_parse.h).
 *
 * http-parser calls back with pieces of the status, header names and values as they
 * arrive, possibly split across reads; a header is collected in one growing buffer (name,
 * then value) and committed when the next name starts or the head ends. When the final
 * response completes, the callback pauses the parser so that feed returns how much it
 * used: bytes after the response mean the connection is out of step and is not reused.
 * Callbacks report errors through ps->err and a non-zero return, which makes http-parser
 * stop with a callback error; feed then returns ps->err. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "net/http_client_parse.h"

#define HEADER_OVERHEAD 4 /* ": " and CRLF, for the head cap */
#define STATUS_OVERHEAD 15

static struct weft__http_parse *parse_of(http_parser *hp)
{
  return hp->data;
}

/* Fail the parse with err from a callback. */
static int fail(struct weft__http_parse *ps, int err)
{
  if (!ps->err)
    ps->err = err;
  return -1;
}

static int count_head(struct weft__http_parse *ps, size_t n)
{
  ps->head_bytes += n;
  return ps->head_bytes > WEFT__HTTP_MAX_HEAD ? fail(ps, -EPROTO) : 0;
}

static int cur_append(struct weft__http_parse *ps, const char *at, size_t n)
{
  if (ps->cur_len + n + 1 > ps->cur_cap) {
    size_t cap = ps->cur_cap ? ps->cur_cap : 128;
    while (cap < ps->cur_len + n + 1)
      cap *= 2;
    char *nb = realloc(ps->cur, cap);
    if (!nb)
      return fail(ps, -ENOMEM);
    ps->cur = nb;
    ps->cur_cap = cap;
  }
  memcpy(ps->cur + ps->cur_len, at, n);
  ps->cur_len += n;
  return 0;
}

static bool is_ows(char c)
{
  return c == ' ' || c == '\t';
}

/* Commit the collected header to ps->headers. */
static int commit_header(struct weft__http_parse *ps)
{
  if (ps->nheaders == WEFT__HTTP_MAX_HEADERS)
    return fail(ps, -EPROTO);
  if (ps->nheaders == ps->headers_cap) {
    size_t cap = ps->headers_cap ? ps->headers_cap * 2 : 16;
    struct weft__http_header *nh = realloc(ps->headers, cap * sizeof *nh);
    if (!nh)
      return fail(ps, -ENOMEM);
    ps->headers = nh;
    ps->headers_cap = cap;
  }
  const char *v = ps->cur + ps->vpos, *vend = ps->cur + ps->cur_len;
  while (v < vend && is_ows(*v))
    v++;
  while (vend > v && is_ows(vend[-1]))
    vend--;
  size_t nn = ps->vpos, vn = (size_t)(vend - v);
  char *m = malloc(nn + vn + 2);
  if (!m)
    return fail(ps, -ENOMEM);
  memcpy(m, ps->cur, nn);
  m[nn] = '\0';
  memcpy(m + nn + 1, v, vn);
  m[nn + 1 + vn] = '\0';
  ps->headers[ps->nheaders++] = (struct weft__http_header){m, m + nn + 1};
  ps->cur_len = ps->vpos = 0;
  ps->in_value = false;
  return 0;
}

static void free_headers(struct weft__http_parse *ps)
{
  for (size_t i = 0; i < ps->nheaders; i++)
    free(ps->headers[i].name);
  ps->nheaders = 0;
}

static int on_message_begin(http_parser *hp)
{
  struct weft__http_parse *ps = parse_of(hp);
  free_headers(ps);
  ps->head_bytes = STATUS_OVERHEAD;
  ps->cur_len = ps->vpos = 0;
  ps->in_value = false;
  return 0;
}

static int on_status(http_parser *hp, const char *at, size_t n)
{
  return count_head(parse_of(hp), n);
}

static int on_header_field(http_parser *hp, const char *at, size_t n)
{
  struct weft__http_parse *ps = parse_of(hp);
  if (ps->head_done)
    return 0; /* a chunked body's trailer: ignored */
  if (count_head(ps, n) < 0 || (ps->in_value && commit_header(ps) < 0))
    return -1;
  if (ps->cur_len == 0 && count_head(ps, HEADER_OVERHEAD) < 0)
    return -1;
  return cur_append(ps, at, n);
}

static int on_header_value(http_parser *hp, const char *at, size_t n)
{
  struct weft__http_parse *ps = parse_of(hp);
  if (ps->head_done)
    return 0;
  if (count_head(ps, n) < 0)
    return -1;
  if (!ps->in_value) {
    ps->vpos = ps->cur_len;
    ps->in_value = true;
  }
  return cur_append(ps, at, n);
}

/* The header name (case-insensitive) among the collected ones, or NULL. */
static const char *find_header(const struct weft__http_parse *ps, const char *name)
{
  for (size_t i = 0; i < ps->nheaders; i++)
    if (strcasecmp(ps->headers[i].name, name) == 0)
      return ps->headers[i].value;
  return NULL;
}

static int coding_of(const struct weft__http_parse *ps)
{
  const char *ce = find_header(ps, "Content-Encoding");
  if (!(ps->flags & WEFT__HTTP_PARSE_DECODE) || !ce)
    return WEFT__CODING_IDENTITY;
  if (strcasecmp(ce, "gzip") == 0 || strcasecmp(ce, "x-gzip") == 0)
    return WEFT__CODING_GZIP;
  if (strcasecmp(ce, "deflate") == 0)
    return WEFT__CODING_DEFLATE;
  return WEFT__CODING_IDENTITY; /* not one we asked for: passed through as sent */
}

/* A body of known length up to this is given its exact buffer at once. */
#define PRESIZE_MAX (64 * 1024)

/* Give a plain body whose length the head announced an exact buffer: body_grow's first
 * step is 4 KiB, which for the usual small API answer is an allocation past glibc's small
 * bins (each one consolidates the fast bins) instead of a cheap cached one. A failed
 * malloc changes nothing: the body then grows as it comes. */
static void presize_body(struct weft__http_parse *ps, uint64_t cl)
{
  struct weft__http_body *b = &ps->body;
  if (ps->dec.coding != WEFT__CODING_IDENTITY || cl == 0 || cl == ULLONG_MAX ||
      cl > PRESIZE_MAX || cl >= b->max || b->buf)
    return;
  b->buf = malloc((size_t)cl + 1);
  if (b->buf) {
    b->buf[0] = '\0';
    b->cap = (size_t)cl + 1;
  }
}

/* Returning 1 tells http-parser that this response has no body. */
static int on_headers_complete(http_parser *hp)
{
  struct weft__http_parse *ps = parse_of(hp);
  if (ps->in_value && commit_header(ps) < 0)
    return -1;
  ps->status = hp->status_code;
  if (ps->status / 100 == 1 && ps->status != 101)
    return 1; /* interim: skipped in on_message_complete */
  ps->head_done = true;
  weft__http_decoder_init(&ps->dec, coding_of(ps));
  if ((ps->flags & WEFT__HTTP_PARSE_HEAD) || ps->status == 204 || ps->status == 304)
    return 1;
  uint64_t cl = hp->content_length;
  if (ps->dec.coding == WEFT__CODING_IDENTITY && cl != ULLONG_MAX && cl > ps->body.max &&
      !ps->body.truncate_ok)
    return fail(ps, -EFBIG); /* no need to read what would be refused */
  presize_body(ps, cl);
  return 0;
}

static void finish(struct weft__http_parse *ps)
{
  ps->done = true;
  http_parser_pause(&ps->hp, 1);
}

static int on_body(http_parser *hp, const char *at, size_t n)
{
  struct weft__http_parse *ps = parse_of(hp);
  ps->raw_body += n;
  if (ps->raw_body > ps->raw_max) {
    if (!ps->body.truncate_ok)
      return fail(ps, -EFBIG);
    ps->body.truncated = true;
    finish(ps);
    return 0;
  }
  int rc = weft__http_decoder_feed(&ps->dec, at, n, &ps->body);
  if (rc < 0)
    return fail(ps, rc);
  if (rc == 1)
    finish(ps); /* cut at the cap: the rest is not read */
  return 0;
}

static int on_message_complete(http_parser *hp)
{
  struct weft__http_parse *ps = parse_of(hp);
  if (!ps->head_done)
    return 0; /* an interim response: the next one follows */
  int rc = weft__http_decoder_finish(&ps->dec, &ps->body);
  if (rc < 0)
    return fail(ps, rc);
  ps->keep_alive = http_should_keep_alive(hp) && ps->status != 101;
  finish(ps);
  return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_status = on_status,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void weft__http_parse_init(struct weft__http_parse *ps, int flags, size_t max_body)
{
  memset(ps, 0, sizeof *ps);
  http_parser_init(&ps->hp, HTTP_RESPONSE);
  ps->hp.data = ps;
  ps->flags = flags;
  ps->body.max = max_body;
  ps->body.truncate_ok = (flags & WEFT__HTTP_PARSE_TRUNCATE) != 0;
  /* Compressed data may be a little larger than what it encodes, never much larger. */
  ps->raw_max = max_body < SIZE_MAX / 4 ? max_body + max_body / 8 + 64 * 1024 : SIZE_MAX;
  weft__http_decoder_init(&ps->dec, WEFT__CODING_IDENTITY);
}

ssize_t weft__http_parse_feed(struct weft__http_parse *ps, const char *data, size_t len)
{
  if (ps->done || len == 0)
    return 0;
  ps->got_bytes = true;
  size_t n = http_parser_execute(&ps->hp, &settings, data, len);
  if (ps->err)
    return ps->err;
  enum http_errno e = HTTP_PARSER_ERRNO(&ps->hp);
  if (e != HPE_OK && e != HPE_PAUSED)
    return -EPROTO;
  if (!ps->done && n < len)
    return -EPROTO; /* stopped without completing (an upgrade it did not flag) */
  return (ssize_t)n;
}

int weft__http_parse_eof(struct weft__http_parse *ps)
{
  if (ps->done)
    return 0;
  if (!ps->got_bytes)
    return -ECONNRESET;
  http_parser_execute(&ps->hp, &settings, NULL, 0);
  if (ps->err)
    return ps->err;
  return ps->done ? 0 : -ECONNRESET;
}

void weft__http_parse_free(struct weft__http_parse *ps)
{
  free_headers(ps);
  free(ps->headers);
  free(ps->cur);
  free(ps->body.buf);
  weft__http_decoder_free(&ps->dec);
  ps->headers = NULL;
  ps->cur = ps->body.buf = NULL;
}

int weft__http_response_parse(const char *data, size_t len, int flags, size_t chunk,
                              size_t max_body, int *status)
{
  struct weft__http_parse ps;
  weft__http_parse_init(&ps, flags, max_body ? max_body : 1024 * 1024);
  if (chunk == 0)
    chunk = len ? len : 1;
  int rc = 0;
  for (size_t off = 0; off < len && !ps.done;) {
    size_t n = len - off < chunk ? len - off : chunk;
    ssize_t used = weft__http_parse_feed(&ps, data + off, n);
    if (used < 0) {
      rc = (int)used;
      break;
    }
    off += n;
  }
  if (rc == 0)
    rc = weft__http_parse_eof(&ps);
  if (rc == 0 && status)
    *status = ps.status;
  weft__http_parse_free(&ps);
  return rc;
}
