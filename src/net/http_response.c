/* http_response.c: the response writer a handler answers through.
 *
 * States: nothing set → status set → head sent (with the first flush) → finished.
 * Framing is chosen when the head goes out: the handler's own Content-Length; else, when
 * the handler has returned and the whole body is buffered, a Content-Length of that
 * size; else chunked (HTTP/1.1) or delimited by closing the connection (HTTP/1.0).
 * A body that stops short of its declared Content-Length closes the connection. */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/uio.h>
#include <time.h>

#include "net/format.h"
#include "net/http_internal.h"
#include "weft/runtime.h"

/* ---- validation ---- */

/* RFC 9110 tchar: visible ASCII except DQUOTE and the delimiters "(),/:;<=>?@[\]{}. */
static bool is_token_char(unsigned char c)
{
  static const char delimiters[] = "\"(),/:;<=>?@[\\]{}";
  return c > 32 && c < 127 && !memchr(delimiters, c, sizeof delimiters - 1);
}

static bool valid_name(const char *s)
{
  if (!*s)
    return false;
  for (; *s; s++) {
    if (!is_token_char((unsigned char)*s))
      return false;
  }
  return true;
}

static bool valid_value(const char *s)
{
  for (; *s; s++) {
    if (*s == '\r' || *s == '\n' || ((unsigned char)*s < 32 && *s != '\t') || *s == 127)
      return false;
  }
  return true;
}

/* ---- headers ---- */

void weft__http_response_init(weft_http_response *w, struct http_conn *hc,
                              const weft_http_request *r)
{
  const struct weft_http_server *s = hc->srv;
  *w = (weft_http_response){.hc = hc, .content_length = -1, .buf = hc->wbuf, .cap = hc->wsize};
  w->is_head = !strcmp(r->method, "HEAD");
  w->close_after =
      !http_should_keep_alive(&r->parse.parser) || hc->requests >= s->cfg.max_requests;
}

static int header_apply(weft_http_response *w, const char *name, const char *value)
{
  if (!strcasecmp(name, "Content-Length")) {
    char *end;
    long long n = strtoll(value, &end, 10);
    if (end == value || *end || n < 0)
      return -EINVAL;
    w->content_length = n;
  } else if (!strcasecmp(name, "Connection") && !strcasecmp(value, "close")) {
    w->close_after = true;
  }
  return 0;
}

static int header_check(weft_http_response *w, const char *name, const char *value)
{
  if (w->head_sent)
    return -EALREADY;
  if (!name || !valid_name(name) || (value && !valid_value(value)))
    return -EINVAL;
  if (!strcasecmp(name, "Transfer-Encoding"))
    return -EINVAL; /* framing is the server's */
  return 0;
}

int weft_http_response_del_header(weft_http_response *w, const char *name)
{
  int err = header_check(w, name, NULL);
  if (err)
    return err;
  for (size_t i = 0; i < w->nheaders; i++) {
    if (!w->headers[i].deleted && !strcasecmp(w->headers[i].name, name))
      w->headers[i].deleted = true;
  }
  if (!strcasecmp(name, "Content-Length"))
    w->content_length = -1;
  return 0;
}

int weft_http_response_add_header(weft_http_response *w, const char *name, const char *value)
{
  int err = header_check(w, name, value);
  if (err || (err = header_apply(w, name, value)))
    return err;
  if (w->nheaders == w->headers_cap) {
    size_t cap = w->headers_cap ? 2 * w->headers_cap : 8;
    struct resp_header *h = weft__arena_alloc(&w->hc->arena, cap * sizeof *h);
    if (!h)
      return -ENOMEM;
    if (w->nheaders)
      memcpy(h, w->headers, w->nheaders * sizeof *h);
    w->headers = h;
    w->headers_cap = cap;
  }
  char *n = weft__arena_strndup(&w->hc->arena, name, strlen(name));
  char *v = weft__arena_strndup(&w->hc->arena, value, strlen(value));
  if (!n || !v)
    return -ENOMEM;
  w->headers[w->nheaders++] = (struct resp_header){n, v, false};
  return 0;
}

int weft_http_response_set_header(weft_http_response *w, const char *name, const char *value)
{
  int err = header_check(w, name, value);
  if (err)
    return err;
  weft_http_response_del_header(w, name);
  return weft_http_response_add_header(w, name, value);
}

static const char *find_header(const weft_http_response *w, const char *name)
{
  for (size_t i = 0; i < w->nheaders; i++) {
    if (!w->headers[i].deleted && !strcasecmp(w->headers[i].name, name))
      return w->headers[i].value;
  }
  return NULL;
}

int weft_http_response_write_header(weft_http_response *w, int status)
{
  if (w->head_sent || w->status)
    return -EALREADY;
  if (status < 200 || status > 999)
    return -EINVAL;
  w->status = status;
  w->no_body = status == 204 || status == 304;
  return 0;
}

int weft_http_response_status(const weft_http_response *w)
{
  return w->status;
}

int weft_http_response_head_sent(const weft_http_response *w)
{
  return w->head_sent;
}

void weft_http_response_close_after(weft_http_response *w)
{
  w->close_after = true;
}

/* ---- the head ---- */

/* The Date header's value, formatted at most once a second per thread. */
static const char *http_date(void)
{
  static _Thread_local char buf[32];
  static _Thread_local time_t last;
  time_t now = time(NULL);
  if (now != last) {
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    last = now;
  }
  return buf;
}

static bool closing(const weft_http_response *w)
{
  return w->close_after ||
         atomic_load_explicit(&w->hc->srv->shutting_down, memory_order_relaxed);
}

/* Append to the head being built; the head buffer grows in the arena. */
struct head {
  char *s;
  size_t len, cap;
  struct arena *arena;
  bool failed;
};

static void head_put(struct head *h, const char *data, size_t n)
{
  if (h->failed)
    return;
  if (h->cap - h->len < n) {
    size_t cap = (h->cap + n) * 2;
    char *grown = weft__arena_alloc(h->arena, cap);
    if (!grown) {
      h->failed = true;
      return;
    }
    memcpy(grown, h->s, h->len);
    h->s = grown;
    h->cap = cap;
  }
  memcpy(h->s + h->len, data, n);
  h->len += n;
}

static void head_str(struct head *h, const char *s)
{
  head_put(h, s, strlen(s));
}

static void head_num(struct head *h, unsigned long long v)
{
  char digits[24], *p = digits + sizeof digits;
  do {
    *--p = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  head_put(h, p, (size_t)(digits + sizeof digits - p));
}

static void head_field(struct head *h, const char *name, const char *value)
{
  head_str(h, name);
  head_put(h, ": ", 2);
  head_str(h, value);
  head_put(h, "\r\n", 2);
}

/* Build the head into h; final: the handler has returned with w->len body bytes. */
static void build_head(weft_http_response *w, struct head *h, bool final)
{
  head_put(h, "HTTP/1.1 ", 9);
  head_num(h, (unsigned)w->status);
  head_put(h, " ", 1);
  head_str(h, weft_http_status_text(w->status));
  head_put(h, "\r\n", 2);
  for (size_t i = 0; i < w->nheaders; i++) {
    /* Connection is the server's, as below: a handler's "close" set close_after */
    if (!w->headers[i].deleted && strcasecmp(w->headers[i].name, "Connection"))
      head_field(h, w->headers[i].name, w->headers[i].value);
  }
  if (!find_header(w, "Date"))
    head_field(h, "Date", http_date());
  bool has_body = !w->no_body && (w->body_written > 0 || w->content_length > 0);
  if (has_body && !find_header(w, "Content-Type"))
    head_field(h, "Content-Type", "text/plain; charset=utf-8");
  if (w->content_length < 0 && !w->no_body) {
    if (final) {
      head_put(h, "Content-Length: ", 16);
      head_num(h, (unsigned long long)w->body_written);
      head_put(h, "\r\n", 2);
    } else if (w->hc->http10) {
      w->close_after = true; /* HTTP/1.0 has no chunks: the body ends with the connection */
    } else {
      w->chunked = true;
      head_field(h, "Transfer-Encoding", "chunked");
    }
  }
  if (closing(w))
    head_field(h, "Connection", "close");
  else if (w->hc->http10)
    head_field(h, "Connection", "keep-alive");
  head_put(h, "\r\n", 2);
}

static int64_t write_deadline(const weft_http_response *w)
{
  int64_t t = w->hc->srv->cfg.write_timeout;
  return t < 0 ? WEFT_NO_DEADLINE : weft_now() + t;
}

/* Send the head (unless sent) and the buffered body (as one chunk when chunked). */
static int send_buffered(weft_http_response *w, bool final)
{
  char small[512];
  struct head h = {.s = small, .cap = sizeof small, .arena = &w->hc->arena};
  struct iovec iov[4];
  int n = 0;
  char chunk[24];
  if (w->err)
    return w->err;
  if (!w->status)
    w->status = 200;
  if (!w->head_sent) {
    build_head(w, &h, final);
    if (h.failed)
      return w->err = -ENOMEM;
    iov[n++] = (struct iovec){h.s, h.len};
    w->head_sent = true;
  }
  size_t body = w->is_head || w->no_body ? 0 : w->len;
  if (body && w->chunked) {
    int cl = snprintf(chunk, sizeof chunk, "%zx\r\n", body);
    iov[n++] = (struct iovec){chunk, (size_t)cl};
    iov[n++] = (struct iovec){w->buf, body};
    iov[n++] = (struct iovec){"\r\n", 2};
  } else if (body) {
    iov[n++] = (struct iovec){w->buf, body};
  }
  w->len = 0;
  if (n == 0)
    return 0;
  ssize_t rc = weft_conn_writev(w->hc->conn, iov, n, NULL, write_deadline(w));
  return rc < 0 ? (w->err = (int)rc) : 0;
}

int weft_http_response_flush(weft_http_response *w)
{
  return send_buffered(w, false);
}

ssize_t weft_http_response_write(weft_http_response *w, const void *data, size_t len)
{
  if (w->err)
    return w->err;
  if (!w->status)
    w->status = 200;
  if (len && w->no_body)
    return -EINVAL;
  if (w->content_length >= 0 && w->body_written + (int64_t)len > w->content_length)
    return -EINVAL;
  w->body_written += (int64_t)len;
  if (w->is_head)
    return (ssize_t)len; /* counted for Content-Length, never sent */
  for (size_t done = 0; done < len;) {
    size_t room = w->cap - w->len, n = len - done < room ? len - done : room;
    memcpy(w->buf + w->len, (const char *)data + done, n);
    w->len += n;
    done += n;
    if (w->len == w->cap) {
      int err = send_buffered(w, false);
      if (err)
        return err;
    }
  }
  return (ssize_t)len;
}

ssize_t weft_http_response_printf(weft_http_response *w, const char *fmt, ...)
{
  char small[512], *s;
  va_list ap;
  va_start(ap, fmt);
  long n = weft__vformat(small, sizeof small, &s, fmt, ap);
  va_end(ap);
  if (n < 0)
    return n;
  ssize_t rc = weft_http_response_write(w, s, (size_t)n);
  if (s != small)
    free(s);
  return rc;
}

int weft_http_response_send(weft_http_response *w, int status, const char *content_type,
                            const void *body, size_t len)
{
  int err = weft_http_response_write_header(w, status);
  if (!err && content_type)
    err = weft_http_response_set_header(w, "Content-Type", content_type);
  if (!err && len) {
    ssize_t n = weft_http_response_write(w, body, len);
    err = n < 0 ? (int)n : 0;
  }
  return err ? err : w->err;
}

int weft_http_response_json(weft_http_response *w, int status, const json_t *json)
{
  char *s = json_dumps(json, JSON_COMPACT | JSON_ENCODE_ANY);
  if (!s)
    return -ENOMEM;
  int err = weft_http_response_send(w, status, "application/json", s, strlen(s));
  free(s);
  return err;
}

int weft_http_response_error(weft_http_response *w, int status, const char *text)
{
  char body[256];
  int n = snprintf(body, sizeof body, "%s\n", text ? text : weft_http_status_text(status));
  size_t len = n < 0 ? 0 : (size_t)n < sizeof body ? (size_t)n : sizeof body - 1;
  weft_http_response_set_header(w, "X-Content-Type-Options", "nosniff");
  return weft_http_response_send(w, status, "text/plain; charset=utf-8", body, len);
}

int weft__http_response_finish(weft_http_response *w, const weft_http_request *r)
{
  if (!w->status && !w->head_sent) {
    w->headers = NULL; /* an unanswered request: nothing the handler set applies */
    w->nheaders = w->headers_cap = 0;
    w->content_length = -1;
    /* a malformed body the handler gave up on is the client's fault: 400, not 500 */
    int status = r->body_too_large ? 413 : r->body_err == -EPROTO ? 400 : 500;
    weft_http_response_error(w, status, NULL);
  }
  if (r->body_err)
    w->close_after = true; /* the rest of the body was never read, or is unreadable */
  if (r->expect_continue && !r->continue_sent && r->content_length != 0)
    w->close_after = true; /* a body never asked for may or may not follow: say we close */
  int err = send_buffered(w, true);
  if (!err && w->chunked && !w->is_head) { /* HEAD: no body, not even the last chunk */
    ssize_t n = weft_conn_write(w->hc->conn, "0\r\n\r\n", 5, NULL, write_deadline(w));
    err = n < 0 ? (int)n : 0;
  }
  if (!err && w->content_length >= 0 && w->body_written < w->content_length && !w->is_head)
    w->close_after = true; /* the client is still waiting for bytes that never come */
  return err ? err : w->err;
}

/* A whole response outside any handler, before closing the connection. */
void weft__http_send_error(weft_conn *c, int status, int64_t deadline)
{
  char msg[256];
  const char *text = weft_http_status_text(status);
  int n = snprintf(msg, sizeof msg,
                   "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                   "Connection: close\r\nContent-Length: %zu\r\n\r\n%s\n",
                   status, text, strlen(text) + 1, text);
  if (n > 0 && (size_t)n < sizeof msg)
    weft_conn_write(c, msg, (size_t)n, NULL, deadline);
}
