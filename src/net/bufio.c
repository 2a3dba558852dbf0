/* bufio.c: buffered readers and writers over a weft_conn.
 *
 * A reader's buffer holds buf[start, end): bytes read from the connection and not yet
 * consumed. Owned by one coroutine at a time, like the connection it reads. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "net/format.h"
#include "weft/net.h"

struct weft_reader {
  weft_conn *conn; /* borrowed */
  size_t size;     /* capacity of buf */
  size_t start;    /* first unconsumed byte */
  size_t end;      /* one past the last byte read */
  char *buf;
};

weft_reader *weft_reader_new(weft_conn *c, size_t size)
{
  if (size == 0)
    size = 4096;
  weft_reader *r = malloc(sizeof *r);
  char *buf = malloc(size + 1); /* + 1: room for read_line's NUL */
  if (!r || !buf) {
    free(r);
    free(buf);
    return NULL;
  }
  *r = (weft_reader){.conn = c, .size = size, .buf = buf};
  return r;
}

void weft_reader_free(weft_reader *r)
{
  if (r) {
    free(r->buf);
    free(r);
  }
}

size_t weft_reader_buffered(const weft_reader *r)
{
  return r->end - r->start;
}

/* Read once more into the buffer, compacting it first. Returns the count, 0 at end of
 * stream, -EMSGSIZE when the buffer is full, or an error. */
static ssize_t fill(weft_reader *r, weft_ctx *ctx, int64_t deadline)
{
  if (r->start > 0) {
    memmove(r->buf, r->buf + r->start, r->end - r->start);
    r->end -= r->start;
    r->start = 0;
  }
  if (r->end == r->size)
    return -EMSGSIZE;
  ssize_t n = weft_conn_read(r->conn, r->buf + r->end, r->size - r->end, ctx, deadline);
  if (n > 0)
    r->end += (size_t)n;
  return n;
}

ssize_t weft_reader_read(weft_reader *r, void *buf, size_t len, weft_ctx *ctx, int64_t deadline)
{
  if (len == 0)
    return 0;
  if (r->start == r->end) {
    if (len >= r->size) /* large reads bypass the buffer */
      return weft_conn_read(r->conn, buf, len, ctx, deadline);
    ssize_t n = fill(r, ctx, deadline);
    if (n <= 0)
      return n;
  }
  size_t n = r->end - r->start < len ? r->end - r->start : len;
  memcpy(buf, r->buf + r->start, n);
  r->start += n;
  return (ssize_t)n;
}

ssize_t weft_reader_read_full(weft_reader *r, void *buf, size_t len, weft_ctx *ctx,
                              int64_t deadline)
{
  size_t got = 0;
  while (got < len) {
    ssize_t n = weft_reader_read(r, (char *)buf + got, len - got, ctx, deadline);
    if (n < 0)
      return n;
    if (n == 0)
      return -EPIPE;
    got += (size_t)n;
  }
  return (ssize_t)len;
}

ssize_t weft_reader_read_line(weft_reader *r, char **line, weft_ctx *ctx, int64_t deadline)
{
  size_t scanned = 0; /* bytes after start already known to hold no '\n' */
  for (;;) {
    char *s = r->buf + r->start;
    char *nl = memchr(s + scanned, '\n', r->end - r->start - scanned);
    if (nl) {
      size_t n = (size_t)(nl - s);
      r->start += n + 1;
      if (n > 0 && s[n - 1] == '\r')
        n--;
      s[n] = '\0';
      *line = s;
      return (ssize_t)n;
    }
    scanned = r->end - r->start;
    ssize_t got = fill(r, ctx, deadline);
    if (got < 0)
      return got;
    if (got == 0) {
      if (r->start == r->end)
        return -EPIPE;
      size_t n = r->end - r->start; /* a last line without '\n' */
      s = r->buf + r->start;
      s[n] = '\0'; /* buf has one spare byte past size */
      r->start = r->end;
      *line = s;
      return (ssize_t)n;
    }
  }
}

/* ---- writer ---- */

struct weft_writer {
  weft_conn *conn; /* borrowed */
  size_t size;     /* capacity of buf */
  size_t len;      /* bytes buffered */
  int err;         /* the first write error, returned by every later call */
  char *buf;
};

weft_writer *weft_writer_new(weft_conn *c, size_t size)
{
  if (size == 0)
    size = 4096;
  weft_writer *w = malloc(sizeof *w);
  char *buf = malloc(size);
  if (!w || !buf) {
    free(w);
    free(buf);
    return NULL;
  }
  *w = (weft_writer){.conn = c, .size = size, .buf = buf};
  return w;
}

void weft_writer_free(weft_writer *w)
{
  if (w) {
    free(w->buf);
    free(w);
  }
}

int weft_writer_flush(weft_writer *w, weft_ctx *ctx, int64_t deadline)
{
  if (w->err || w->len == 0)
    return w->err;
  ssize_t n = weft_conn_write(w->conn, w->buf, w->len, ctx, deadline);
  if (n < 0)
    return w->err = (int)n;
  w->len = 0;
  return 0;
}

ssize_t weft_writer_write(weft_writer *w, const void *data, size_t len, weft_ctx *ctx,
                          int64_t deadline)
{
  if (w->err)
    return w->err;
  if (w->len + len <= w->size) {
    memcpy(w->buf + w->len, data, len);
    w->len += len;
    return (ssize_t)len;
  }
  struct iovec iov[2] = {{w->buf, w->len}, {(void *)data, len}};
  if (len < w->size) { /* fill, flush, keep the rest buffered */
    size_t first = w->size - w->len;
    memcpy(w->buf + w->len, data, first);
    w->len = w->size;
    int err = weft_writer_flush(w, ctx, deadline);
    if (err)
      return err;
    memcpy(w->buf, (const char *)data + first, len - first);
    w->len = len - first;
    return (ssize_t)len;
  }
  ssize_t n = weft_conn_writev(w->conn, iov, 2, ctx, deadline); /* large: straight out */
  if (n < 0)
    return w->err = (int)n;
  w->len = 0;
  return (ssize_t)len;
}

ssize_t weft_writer_printf(weft_writer *w, weft_ctx *ctx, int64_t deadline, const char *fmt,
                           ...)
{
  char small[512], *s;
  va_list ap;
  va_start(ap, fmt);
  long n = weft__vformat(small, sizeof small, &s, fmt, ap);
  va_end(ap);
  if (n < 0)
    return n;
  ssize_t rc = weft_writer_write(w, s, (size_t)n, ctx, deadline);
  if (s != small)
    free(s);
  return rc;
}
