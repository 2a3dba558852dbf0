/* fuzz_http_request.c: libFuzzer target for the server's request parser
 * (weft__http_req_parse_feed, src/net/http_request_parse.c).
 *
 * The input's first bytes choose how it is cut into reads and which limits apply, so that
 * reads of every size and tight limits are both exercised; the rest is the byte stream a
 * client would send. Each read is copied into a buffer of exactly its size (ASan then
 * catches a read past it, and a pointer kept into it after it is gone), fed again after
 * HEAD and BODY as the server does, and after COMPLETE the rest starts the next message
 * (pipelining) with a fresh parser and a reset arena.
 *
 * Invariants checked (abort on violation):
 *   - feed consumes at most what it was given, and all of it when it asks for MORE;
 *   - an ERROR carries 400, 414 or 431 and is final (feeding again consumes nothing);
 *   - at HEAD: HTTP/1.x with a URL, at most max_headers headers, each line and the head
 *     within limits, names that are tokens, values without line breaks or trailing space;
 *   - BODY points inside the bytes just fed; body bytes never exceed the bytes fed, nor
 *     the Content-Length when one framed the message;
 *   - the parser makes progress (no event loop without consuming bytes);
 *   - the arena stays proportional to the bytes fed (no quadratic copying of a field that
 *     arrives in many small reads). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/http_internal.h"

#define CHECK(cond)                                                                \
  do {                                                                             \
    if (!(cond)) {                                                                 \
      fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      abort();                                                                     \
    }                                                                              \
  } while (0)

enum { HEADER = 4, ARENA_SLACK = 64 * 1024 };

/* The reads: sizes cycle through three values taken from the input's header, or the whole
 * input at once. */
struct reader {
  const uint8_t *data;
  size_t len, off;
  uint8_t sizes[3];
  unsigned turn;
  bool whole;
};

static size_t next_read(struct reader *rd)
{
  size_t left = rd->len - rd->off;
  size_t n = rd->whole ? left : (size_t)rd->sizes[rd->turn++ % 3] % 97 + 1;
  return n < left ? n : left;
}

static void limits_from(uint8_t cfg, struct http_limits *lim)
{
  *lim = (struct http_limits){8192, 100, 65536, 1 << 20};
  if (cfg & 1) { /* small limits */
    lim->max_line = 8 + (cfg >> 1 & 7) * 16;
    lim->max_headers = 1 + (cfg >> 4 & 7);
    lim->max_header_bytes = 32 + (cfg >> 2 & 15) * 24;
  }
}

/* The message the parser is on, and what was delivered of it. */
struct msg {
  struct http_req_parse p;
  size_t fed;  /* bytes fed into this message so far */
  size_t body; /* body bytes delivered */
  bool head;   /* HEAD was reported */
  uint64_t cl; /* the Content-Length that frames the body, or UINT64_MAX */
};

static void check_head(const struct http_req_parse *p, const struct http_limits *lim)
{
  CHECK(p->url != NULL);
  CHECK(strlen(p->url) <= p->url_len);
  CHECK(p->url_len <= lim->max_line);
  CHECK(p->nheaders <= lim->max_headers);
  CHECK(p->head_bytes <= lim->max_header_bytes);
  CHECK(p->parser.http_major == 1);
  for (size_t i = 0; i < p->nheaders; i++) {
    const char *name = p->headers[i].name, *value = p->headers[i].value;
    CHECK(name && value);
    CHECK(strlen(name) + strlen(value) <= lim->max_line);
    /* a name is a token (no space before the colon); a value holds no line break (no
     * obs-fold kept) and no trailing white space */
    for (const char *c = name; *c; c++)
      CHECK(*c > 32 && *c < 127 && *c != ':');
    CHECK(!strpbrk(value, "\r\n"));
    size_t vn = strlen(value);
    CHECK(vn == 0 || (value[vn - 1] != ' ' && value[vn - 1] != '\t'));
  }
}

/* One feed of buf[0, n) (the rest of a read); returns bytes consumed, or SIZE_MAX when the
 * stream is done (error). */
static size_t feed(struct msg *m, const struct http_limits *lim, struct arena *a,
                   const char *buf, size_t n)
{
  size_t used = weft__http_req_parse_feed(&m->p, buf, n);
  CHECK(used <= n);
  m->fed += used;
  switch (m->p.event) {
  case HTTP_PARSE_MORE:
    CHECK(used == n);
    break;
  case HTTP_PARSE_HEAD:
    CHECK(!m->head);
    m->head = true;
    check_head(&m->p, lim);
    m->cl = (m->p.parser.flags & F_CONTENTLENGTH) && !(m->p.parser.flags & F_CHUNKED)
                ? m->p.parser.content_length
                : UINT64_MAX;
    break;
  case HTTP_PARSE_BODY:
    CHECK(m->head);
    /* http-parser reports a body chunk before counting its last byte as consumed (it
     * pauses on it): the chunk lies within what was fed, not always within used. */
    CHECK(m->p.body_at >= buf && m->p.body_at + m->p.body_len <= buf + n);
    m->body += m->p.body_len;
    CHECK(m->body <= m->fed + (n - used));
    CHECK(m->body <= m->cl);
    break;
  case HTTP_PARSE_COMPLETE:
    CHECK(m->head);
    break;
  case HTTP_PARSE_ERROR:
    CHECK(m->p.status == 400 || m->p.status == 414 || m->p.status == 431);
    CHECK(weft__http_req_parse_feed(&m->p, buf, n) == 0);
    CHECK(m->p.event == HTTP_PARSE_ERROR);
    return SIZE_MAX;
  }
  /* The arena grows with what was fed, not with the square of it. */
  CHECK(a->cap <= 4096 || a->cap <= 32 * m->fed + ARENA_SLACK);
  return used;
}

static void start(struct msg *m, const struct http_limits *lim, struct arena *a)
{
  weft__arena_reset(a);
  *m = (struct msg){0};
  weft__http_req_parse_init(&m->p, lim, a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < HEADER)
    return 0;
  struct reader rd = {.data = data + HEADER,
                      .len = size - HEADER,
                      .sizes = {data[1], data[2], data[3]},
                      .whole = (data[0] & 0x80) != 0};
  struct http_limits lim;
  limits_from(data[0], &lim);
  struct arena a = {0};
  struct msg m;
  start(&m, &lim, &a);
  bool done = false;
  while (!done && rd.off < rd.len) {
    size_t n = next_read(&rd);
    char *buf = malloc(n); /* exactly the read: ASan sees any access past it */
    CHECK(buf);
    memcpy(buf, rd.data + rd.off, n);
    rd.off += n;
    size_t at = 0, spins = 0;
    while (at < n) {
      size_t used = feed(&m, &lim, &a, buf + at, n - at);
      if (used == SIZE_MAX) {
        done = true;
        break;
      }
      spins = used ? 0 : spins + 1;
      CHECK(spins < 4); /* HEAD, BODY(0), COMPLETE: never a loop without progress */
      at += used;
      if (m.p.event == HTTP_PARSE_COMPLETE)
        start(&m, &lim, &a); /* the rest is the next (pipelined) message */
    }
    free(buf);
  }
  weft__arena_free(&a);
  return 0;
}
