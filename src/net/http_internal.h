/* http_internal.h: the server's request, response and connection records.
 *
 * One coroutine serves a connection and owns everything here except the fields the
 * server's lock guards (marked). A request lives from its first byte to the end of its
 * response; its strings live in the request's arena, reset between requests.
 *
 * Parsing (http_request_parse.c) is a pure step over bytes so that a fuzzer can drive it
 * without sockets: http_req_parse_feed() takes whatever a read returned and stops at the
 * end of the head, at each body chunk and at the end of the message. */
#ifndef WEFT_NET_HTTP_INTERNAL_H
#define WEFT_NET_HTTP_INTERNAL_H

#include <http_parser.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "weft/http.h"
#include "weft/net.h"
#include "weft/sync.h"

#include "net/http_server_watch.h"

/* ---- arena: bump allocation for one request's strings ---- */

struct arena_block;
struct arena {
  struct arena_block *head; /* newest block first */
  size_t used;              /* bytes used in head */
  size_t cap;               /* bytes in head */
};
void *weft__arena_alloc(struct arena *a, size_t n);
/* Grow allocation p from n to m bytes: in place when it is the newest and its block has
 * room, else moved (copied) to a new allocation. Returns it, or NULL when out of memory. */
void *weft__arena_extend(struct arena *a, void *p, size_t n, size_t m);
char *weft__arena_strndup(struct arena *a, const char *s, size_t n);
void weft__arena_reset(struct arena *a); /* keeps the first block */
void weft__arena_free(struct arena *a);

/* ---- limits (weft_http_server_config with defaults filled in) ---- */

struct http_limits {
  size_t max_line, max_headers, max_header_bytes;
  int64_t max_body; /* < 0: none */
};

/* ---- request parsing ---- */

struct http_header {
  const char *name, *value; /* in the request's arena */
};

/* What the parser stopped on. */
enum http_parse_event {
  HTTP_PARSE_MORE,     /* consumed everything; feed more bytes */
  HTTP_PARSE_HEAD,     /* the head is complete */
  HTTP_PARSE_BODY,     /* body bytes: body_at, body_len (point into the fed bytes) */
  HTTP_PARSE_COMPLETE, /* the message is complete */
  HTTP_PARSE_ERROR,    /* malformed or over a limit: status says which (400, 414, 431) */
};

struct http_req_parse {
  http_parser parser;
  http_parser_settings *settings;
  const struct http_limits *limits;
  struct arena *arena;
  /* the head being built */
  char *url;
  size_t url_len;
  struct http_header *headers; /* arena array of limits->max_headers */
  size_t nheaders;
  size_t head_bytes; /* request line + header bytes so far */
  size_t line_bytes; /* bytes of the header line being read */
  bool in_value;     /* the last callback was a header value */
  bool head_done, complete;
  int status;          /* error status when event is HTTP_PARSE_ERROR */
  const char *body_at; /* HTTP_PARSE_BODY */
  size_t body_len;
  enum http_parse_event event;
  /* The CRLF after each chunk's data, which a non-strict http-parser does not check. */
  const char *feed_data; /* the bytes being fed, at stream offset fed */
  size_t feed_len;
  uint64_t fed;     /* stream offset of feed_data[0]: bytes consumed before */
  uint64_t crlf_at; /* stream offset of the CRLF that must follow a chunk's data */
  int crlf_left;    /* its bytes not yet checked (0: none pending) */
};

/* http_req_parse_init: ready p for a new message. arena receives its strings. */
void weft__http_req_parse_init(struct http_req_parse *p, const struct http_limits *limits,
                               struct arena *arena);
/* http_req_parse_feed: parse data[0, len); returns the bytes consumed and sets p->event.
 * Call again with the rest after HEAD or BODY; after COMPLETE the rest belongs to the
 * next message (init again first). ERROR is final. */
size_t weft__http_req_parse_feed(struct http_req_parse *p, const char *data, size_t len);

/* ---- the request and response as the handler sees them ---- */

struct http_conn;

struct weft_http_request {
  struct http_conn *hc;
  struct http_req_parse parse;
  const char *method, *target, *path, *query, *host, *pattern;
  int version;            /* 10 or 11 */
  int64_t content_length; /* -1: chunked / unknown */
  bool expect_continue, continue_sent;
  bool body_started, body_done;
  bool body_too_large; /* a read went past the limit: unanswered → 413 */
  int body_err;        /* sticky body error */
  int64_t body_limit, body_read;
  const char *pending; /* body bytes parsed but not yet handed to the handler */
  size_t pending_len;
  char *body_all; /* weft_http_request_body's copy */
  size_t body_all_len;
  struct path_value {
    const char *name, *value;
  } * values;
  size_t nvalues, values_cap;
  weft_ctx *ctx; /* created on first use */
};

struct resp_header {
  char *name, *value; /* in the request's arena */
  bool deleted;
};

struct weft_http_response {
  struct http_conn *hc;
  int status;
  bool head_sent, chunked, close_after, is_head, no_body, failed;
  int64_t content_length; /* set by the handler's header, -1: none */
  int64_t body_written;   /* body bytes accepted */
  struct resp_header *headers;
  size_t nheaders, headers_cap;
  char *buf; /* body bytes not yet sent (hc->wbuf) */
  size_t len, cap;
  int err; /* sticky write error */
};

/* ---- connection ---- */

enum http_conn_state { CONN_NEW, CONN_ACTIVE, CONN_IDLE, CONN_CLOSING };

struct http_conn {
  struct weft_http_server *srv;
  weft_conn *conn;
  char remote[64];
  struct arena arena;
  char *rbuf; /* read buffer: rbuf[rstart, rend) not yet parsed */
  size_t rsize, rstart, rend;
  char *wbuf; /* response body buffer */
  size_t wsize;
  int64_t header_deadline;       /* the current request's head must be in by then */
  int requests;                  /* served on this connection */
  bool http10;                   /* the current request is HTTP/1.0 */
  bool drained;                  /* the last read of rbuf came back short: socket empty */
  struct http_watch watch;       /* the disconnect watcher (http_server_watch.c) */
  enum http_conn_state state;    /* guarded by srv->lock */
  struct http_conn *next, *prev; /* guarded by srv->lock */
};

/* ---- server ---- */

struct weft_http_server {
  weft_http_server_config cfg; /* defaults filled in */
  struct http_limits limits;
  weft_mutex lock; /* guards conns, shutting_down, nconns; a leaf lock */
  struct http_conn *conns;
  int nconns;                 /* guarded by lock; also read relaxed by the counters */
  _Atomic bool shutting_down; /* written under lock; read relaxed when framing a reply */
  weft_wg conn_wg;            /* one per connection coroutine */
  weft_ctx *accept_ctx;       /* cancelled to stop accepting */
  weft_ctx *force_ctx;        /* cancelled when shutdown's deadline passes */
  _Atomic int active;
  _Atomic uint64_t served;
};

/* Request and response lifecycle for http_conn.c (http_request.c, http_response.c). */
void weft__http_request_init(weft_http_request *r, struct http_conn *hc);
void weft__http_request_finish(weft_http_request *r);
/* Parse what is buffered and read more until the parser reports an event. Reads end at
 * deadline; with deadline 0 it is fixed at the first read as now + timeout (timeout < 0:
 * none), so a request that came whole with an earlier read costs no clock read. */
int weft__http_conn_parse_step(struct http_conn *hc, weft_http_request *r, int64_t deadline,
                               int64_t timeout);
/* Drain up to max unread body bytes so the connection can carry another request. */
bool weft__http_request_drain(weft_http_request *r, int64_t max);

void weft__http_response_init(weft_http_response *w, struct http_conn *hc,
                              const weft_http_request *r);
/* Send what the handler left (or 500/413 when it answered nothing). Returns 0 or error. */
int weft__http_response_finish(weft_http_response *w, const weft_http_request *r);
/* A whole error response outside any handler (400, 414, 431, 503), then close. */
void weft__http_send_error(weft_conn *c, int status, int64_t deadline);

/* Split and decode the target: 0, or 400 for a target that is not valid. */
int weft__http_request_validate(weft_http_request *r);
const char *weft__http_header_find(const struct http_header *h, size_t n, const char *name);

int weft__http_request_set_pattern(weft_http_request *r, const char *pattern);

#endif
