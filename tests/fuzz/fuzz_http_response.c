/* fuzz_http_response.c: libFuzzer target for the client's response parser
 * (src/net/http_client_parse.h).
 *
 * Input: byte 0 chooses the flags (HEAD request, decoding, truncation) and a small body
 * cap; bytes 1-3 the sizes of the reads the stream is cut into; the rest is what a server
 * would send. Each read is copied into a buffer of exactly its size so ASan catches any
 * access past it or any pointer kept into it. The stream is fed until the response is
 * done or fails, then the end of the stream is signalled; the one-call entry point
 * weft__http_response_parse is run over the same bytes too.
 *
 * Invariants checked (abort on violation):
 *   - feed consumes at most what it was given, all of it unless the response completed;
 *   - errors are only -EPROTO, -EFBIG, -ENOMEM (feed) or -ECONNRESET (end of stream);
 *   - a complete response has a final status (<= 999, not an interim 1xx but 101), at
 *     most WEFT__HTTP_MAX_HEADERS headers of NUL-terminated names and values, and a body
 *     within its cap, NUL-terminated, and empty for HEAD, 204 and 304;
 *   - the one-call entry point agrees with the step-by-step parse when cut the same way. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/http_client_parse.h"

#define CHECK(cond)                                                                \
  do {                                                                             \
    if (!(cond)) {                                                                 \
      fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      abort();                                                                     \
    }                                                                              \
  } while (0)

enum { HEADER = 4 };

static void check_done(const struct weft__http_parse *ps, int flags)
{
  /* http-parser 2.9 takes a status of one to three digits ("HTTP/1.1 2"), and the parser
   * passes it on: RFC 9112 wants exactly three, so >= 100 is not checked (reported). */
  CHECK(ps->status >= 0 && ps->status <= 999);
  CHECK(ps->status / 100 != 1 || ps->status == 101);
  CHECK(ps->nheaders <= WEFT__HTTP_MAX_HEADERS);
  for (size_t i = 0; i < ps->nheaders; i++) {
    CHECK(ps->headers[i].name && ps->headers[i].value);
    CHECK(strlen(ps->headers[i].name) + strlen(ps->headers[i].value) <= WEFT__HTTP_MAX_HEAD);
  }
  CHECK(ps->body.len <= ps->body.max);
  CHECK(!ps->body.buf || ps->body.buf[ps->body.len] == '\0');
  CHECK(ps->body.len <= ps->body.cap);
  if ((flags & WEFT__HTTP_PARSE_HEAD) || ps->status == 204 || ps->status == 304)
    CHECK(ps->body.len == 0);
}

/* Feed data in reads of the given sizes; returns 0 or the error, as the entry point. */
static int parse_stepwise(const uint8_t *data, size_t len, int flags, size_t max_body,
                          const uint8_t sizes[3], int *status)
{
  struct weft__http_parse ps;
  weft__http_parse_init(&ps, flags, max_body);
  int rc = 0;
  unsigned turn = 0;
  for (size_t off = 0; off < len && !ps.done;) {
    size_t n = sizes ? (size_t)sizes[turn++ % 3] % 97 + 1 : len - off;
    n = n < len - off ? n : len - off;
    char *buf = malloc(n);
    CHECK(buf);
    memcpy(buf, data + off, n);
    ssize_t used = weft__http_parse_feed(&ps, buf, n);
    free(buf);
    if (used < 0) {
      rc = (int)used;
      CHECK(rc == -EPROTO || rc == -EFBIG || rc == -ENOMEM);
      break;
    }
    CHECK((size_t)used <= n);
    CHECK((size_t)used == n || ps.done);
    off += n;
  }
  if (rc == 0) {
    rc = weft__http_parse_eof(&ps);
    CHECK(rc == 0 || rc == -ECONNRESET || rc == -EPROTO || rc == -EFBIG || rc == -ENOMEM);
    CHECK(rc != 0 || ps.done);
  }
  if (rc == 0) {
    check_done(&ps, flags);
    *status = ps.status;
  }
  weft__http_parse_free(&ps);
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < HEADER)
    return 0;
  int flags = 0;
  if (data[0] & 1)
    flags |= WEFT__HTTP_PARSE_HEAD;
  if (data[0] & 2)
    flags |= WEFT__HTTP_PARSE_DECODE;
  if (data[0] & 4)
    flags |= WEFT__HTTP_PARSE_TRUNCATE;
  size_t max_body = data[0] & 8 ? (size_t)(data[0] >> 4) * 64 + 1 : 1 << 20;
  const uint8_t *msg = data + HEADER;
  size_t len = size - HEADER;
  int st1 = 0, st2 = 0;
  int rc1 = parse_stepwise(msg, len, flags, max_body, data + 1, &st1);
  /* The entry point, fed whole. */
  char *copy = malloc(len ? len : 1);
  CHECK(copy);
  memcpy(copy, msg, len);
  int rc2 = weft__http_response_parse(copy, len, flags, 0, max_body, &st2);
  int st3 = 0;
  int rc3 = parse_stepwise(msg, len, flags, max_body, NULL, &st3);
  free(copy);
  CHECK(rc2 == rc3);
  CHECK(rc2 != 0 || st2 == st3);
  (void)rc1;
  return 0;
}
