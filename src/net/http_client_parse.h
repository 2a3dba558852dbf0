/* http_client_parse.h: the HTTP client's response parser, a unit of its own so that a
 * fuzzer can feed it bytes without a network (see weft__http_response_parse).
 *
 * One weft__http_parse reads one response from a byte stream fed in pieces of any size
 * (whatever each read returns), with nodejs/http-parser in HTTP_RESPONSE mode: the status
 * line, headers (copied; at most WEFT__HTTP_MAX_HEADERS of them and WEFT__HTTP_MAX_HEAD
 * bytes of head, else -EPROTO), then a body delimited by Content-Length, chunked coding
 * or the end of the stream; none after HEAD, 204 and 304. Interim 1xx responses (not 101)
 * are skipped. When asked (WEFT__HTTP_PARSE_DECODE), a gzip or deflate Content-Encoding
 * is decoded with zlib as the body arrives; the body cap applies to decoded bytes, so a
 * decompression bomb stops at the cap.
 *
 * States: collecting head -> (1xx: back to collecting head) -> body -> done. Once done,
 * feed is not called again; bytes after the response stay unconsumed (feed's count says
 * how many were used), which tells the caller the connection carries more than one
 * response and must not be reused. Everything here is owned by one coroutine; nothing
 * parks. */
#ifndef WEFT_NET_HTTP_CLIENT_PARSE_H
#define WEFT_NET_HTTP_CLIENT_PARSE_H

#include <http_parser.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <zlib.h>

#define WEFT__HTTP_MAX_HEADERS 100
#define WEFT__HTTP_MAX_HEAD    (64 * 1024)

enum {
  WEFT__HTTP_PARSE_HEAD = 1 << 0,     /* the request was HEAD: no body whatever it says */
  WEFT__HTTP_PARSE_DECODE = 1 << 1,   /* decode gzip and deflate Content-Encoding */
  WEFT__HTTP_PARSE_TRUNCATE = 1 << 2, /* cut the body at the cap instead of -EFBIG */
};

/* A decoded body with its cap. buf is NUL-terminated when not NULL. */
struct weft__http_body {
  char *buf;        /* owned, NUL-terminated; NULL until the first byte (or until the
                       client's parser sizes it from Content-Length: presize_body) */
  size_t len;       /* bytes in buf */
  size_t cap;       /* bytes allocated */
  size_t max;       /* the cap on len */
  bool truncate_ok; /* cut at max (else -EFBIG) */
  bool truncated;   /* cut at max: nothing more is taken */
};

enum { WEFT__CODING_IDENTITY, WEFT__CODING_GZIP, WEFT__CODING_DEFLATE };

/* A Content-Encoding decoder. deflate is zlib-wrapped per RFC 9110, but many servers send
 * raw deflate: as browsers do, the first two bytes decide (a valid zlib header or not). */
struct weft__http_decoder {
  int coding;           /* WEFT__CODING_* */
  bool started;         /* zs is initialised */
  bool ended;           /* the compressed stream ended; later bytes are ignored */
  unsigned char pre[2]; /* deflate: first bytes, kept until the wrapping is known */
  size_t npre;
  z_stream zs;
};

/* weft__http_body_append: append n bytes within the cap. Returns 0, 1 when the body was
 * cut at the cap (truncate_ok: later calls take nothing and return 1), -EFBIG or -ENOMEM. */
int weft__http_body_append(struct weft__http_body *b, const char *p, size_t n);

/* weft__http_decoder_init: a decoder for coding (no allocation until data comes). */
void weft__http_decoder_init(struct weft__http_decoder *d, int coding);
/* weft__http_decoder_feed: decode n bytes into b. Returns as weft__http_body_append, or
 * -EPROTO for malformed compressed data. */
int weft__http_decoder_feed(struct weft__http_decoder *d, const char *p, size_t n,
                            struct weft__http_body *b);
/* weft__http_decoder_finish: the body ended. Returns 0, or -EPROTO when a compressed
 * stream was cut short. */
int weft__http_decoder_finish(struct weft__http_decoder *d, struct weft__http_body *b);
void weft__http_decoder_free(struct weft__http_decoder *d);

struct weft__http_header {
  char *name;  /* as received; one allocation with value (free name only) */
  char *value; /* leading and trailing white space removed */
};

/* The parser's state. Fields after "result" are the response once done. */
struct weft__http_parse {
  http_parser hp;
  int flags;                     /* WEFT__HTTP_PARSE_* */
  size_t head_bytes;             /* bytes of the current head, for the cap */
  char *cur;                     /* header being collected: name, then value from vpos */
  size_t cur_len, cur_cap, vpos; /* vpos: 0 while collecting the name */
  bool in_value;                 /* the last header callback was a value */
  bool head_done;                /* the final response's head is complete */
  bool got_bytes;                /* any byte of a response was fed */
  int err;                       /* error set by a callback (0: none) */
  size_t raw_body;               /* body bytes as received (before decoding) */
  size_t raw_max;                /* the cap on raw_body */
  struct weft__http_decoder dec;

  /* result */
  bool done;       /* the final response is complete (or cut at the cap) */
  bool keep_alive; /* done, and the connection may carry another response */
  int status;
  struct weft__http_header *headers; /* owned */
  size_t nheaders, headers_cap;
  struct weft__http_body body;
};

/* weft__http_parse_init: ready ps for one response. max_body > 0 caps the decoded body. */
void weft__http_parse_init(struct weft__http_parse *ps, int flags, size_t max_body);

/* weft__http_parse_feed: parse the next len bytes of the stream. Returns how many were
 * consumed (all of them unless the response completed within them), or -EPROTO
 * (malformed, or over the head caps), -EFBIG (body over the cap), -ENOMEM. Check
 * ps->done after each call. */
ssize_t weft__http_parse_feed(struct weft__http_parse *ps, const char *data, size_t len);

/* weft__http_parse_eof: the stream ended. Returns 0 when that completes the response (a
 * body delimited by the end of the stream), -ECONNRESET when the response was cut short
 * (or never began: see got_bytes), or an error as feed. */
int weft__http_parse_eof(struct weft__http_parse *ps);

/* weft__http_parse_free: free everything ps still owns (a taker sets the result
 * pointers to NULL first). */
void weft__http_parse_free(struct weft__http_parse *ps);

/* weft__http_response_parse: the fuzzing entry point. Parse data[0, len) as one response
 * to a request (flags as above; WEFT__HTTP_PARSE_HEAD for a HEAD request), fed in pieces
 * of chunk bytes (0: all at once), then the end of the stream, with a decoded body cap of
 * max_body bytes (0: 1 MiB). Returns 0 when a complete response was parsed, with its
 * status in *status (may be NULL), or the negative error feed or eof gave. Frees all it
 * allocates; never reads outside data. Any thread. */
int weft__http_response_parse(const char *data, size_t len, int flags, size_t chunk,
                              size_t max_body, int *status);

#endif
