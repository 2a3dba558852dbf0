/* http_decode.c: the HTTP client's response body: growth within a cap, and gzip/deflate
 * Content-Encoding decoding with zlib (see http_client_parse.h).
 *
 * The cap counts decoded bytes, and inflate writes into a small window that is appended
 * through the cap check, so however much a few compressed bytes expand to, no more than
 * the cap is ever allocated. The design that lost: inflating straight into the body
 * buffer sized by Content-Length, which trusts the server about the decoded size. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "net/http_client_parse.h"

#define INFLATE_WINDOW 8192

static int body_grow(struct weft__http_body *b, size_t need)
{
  if (need <= b->cap)
    return 0;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < need)
    cap *= 2;
  char *nb = realloc(b->buf, cap);
  if (!nb)
    return -ENOMEM;
  b->buf = nb;
  b->cap = cap;
  return 0;
}

int weft__http_body_append(struct weft__http_body *b, const char *p, size_t n)
{
  if (b->truncated)
    return 1;
  size_t room = b->max - b->len;
  if (n > room) {
    if (!b->truncate_ok)
      return -EFBIG;
    n = room;
    b->truncated = true;
  }
  if (body_grow(b, b->len + n + 1) < 0)
    return -ENOMEM;
  memcpy(b->buf + b->len, p, n);
  b->len += n;
  b->buf[b->len] = '\0';
  return b->truncated ? 1 : 0;
}

void weft__http_decoder_init(struct weft__http_decoder *d, int coding)
{
  memset(d, 0, sizeof *d);
  d->coding = coding;
}

/* A zlib header (RFC 1950): method 8, window <= 32 KiB, check bits. */
static bool is_zlib_header(const unsigned char *h)
{
  return (h[0] & 0x0f) == 8 && (h[0] >> 4) <= 7 && ((h[0] << 8) | h[1]) % 31 == 0;
}

static int decoder_start(struct weft__http_decoder *d)
{
  int bits = MAX_WBITS + 16; /* gzip */
  if (d->coding == WEFT__CODING_DEFLATE)
    bits = d->npre == 2 && is_zlib_header(d->pre) ? MAX_WBITS : -MAX_WBITS;
  int rc = inflateInit2(&d->zs, bits);
  if (rc != Z_OK)
    return rc == Z_MEM_ERROR ? -ENOMEM : -EPROTO;
  d->started = true;
  return 0;
}

/* A gzip body may hold several members (RFC 1952); anything else after the end of the
 * stream is ignored, as browsers do. */
static bool next_gzip_member(struct weft__http_decoder *d, const char *p, size_t n)
{
  if (d->coding != WEFT__CODING_GZIP || n == 0 || (unsigned char)p[0] != 0x1f)
    return false;
  if (inflateReset(&d->zs) != Z_OK)
    return false;
  d->ended = false;
  return true;
}

/* Inflate n bytes into b until the input is used or the stream ends. */
static int inflate_some(struct weft__http_decoder *d, const unsigned char *p, size_t n,
                        struct weft__http_body *b)
{
  unsigned char win[INFLATE_WINDOW];
  d->zs.next_in = (unsigned char *)p;
  d->zs.avail_in = (uInt)n;
  while (!d->ended) {
    d->zs.next_out = win;
    d->zs.avail_out = sizeof win;
    int zrc = inflate(&d->zs, Z_NO_FLUSH);
    size_t out = sizeof win - d->zs.avail_out;
    int rc = out ? weft__http_body_append(b, (const char *)win, out) : 0;
    if (rc != 0)
      return rc;
    if (zrc == Z_STREAM_END) {
      d->ended = true;
      if (next_gzip_member(d, (const char *)d->zs.next_in, d->zs.avail_in))
        continue;
    } else if (zrc == Z_MEM_ERROR)
      return -ENOMEM;
    else if (zrc != Z_OK && zrc != Z_BUF_ERROR)
      return -EPROTO; /* Z_DATA_ERROR, Z_NEED_DICT, Z_STREAM_ERROR */
    if (d->zs.avail_in == 0 && d->zs.avail_out != 0)
      break; /* input used and no output pending */
    if (zrc == Z_BUF_ERROR && out == 0)
      break;
  }
  return 0;
}

int weft__http_decoder_feed(struct weft__http_decoder *d, const char *p, size_t n,
                            struct weft__http_body *b)
{
  if (d->coding == WEFT__CODING_IDENTITY)
    return weft__http_body_append(b, p, n);
  if (d->ended && !next_gzip_member(d, p, n))
    return 0;
  if (!d->started && d->coding == WEFT__CODING_DEFLATE) {
    while (d->npre < 2 && n > 0) {
      d->pre[d->npre++] = (unsigned char)*p++;
      n--;
    }
    if (d->npre < 2)
      return 0;
    int rc = decoder_start(d);
    if (rc == 0)
      rc = inflate_some(d, d->pre, 2, b);
    if (rc != 0 || n == 0)
      return rc;
  } else if (!d->started) {
    int rc = decoder_start(d);
    if (rc < 0)
      return rc;
  }
  return inflate_some(d, (const unsigned char *)p, n, b);
}

int weft__http_decoder_finish(struct weft__http_decoder *d, struct weft__http_body *b)
{
  if (d->coding == WEFT__CODING_IDENTITY || b->truncated)
    return 0;
  if (!d->started && d->npre == 0)
    return 0; /* no body at all */
  return d->ended ? 0 : -EPROTO;
}

void weft__http_decoder_free(struct weft__http_decoder *d)
{
  if (d->started)
    inflateEnd(&d->zs);
  d->started = false;
}
