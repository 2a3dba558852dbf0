/* weft/http.h: an HTTP/1.1 server, its requests and responses, and a router.
 *
 * Every connection is served by its own coroutine; requests on one connection are served
 * one after another (keep-alive, no pipelining in parallel). Messages are parsed by
 * nodejs/http-parser, fed whatever each read returns. The server enforces limits with
 * safe defaults (weft_http_server_config) and answers what breaks them itself:
 *   400 malformed request (then closes), 414 request line too long, 431 header line,
 *   count or total too large, 413 body over the cap (when the handler leaves it unanswered),
 *   500 when a handler returns without answering, 503 when the connection cap is reached.
 *
 * A handler runs in the connection's coroutine and may park. The request and response
 * handles it receives are valid until it returns. Strings returned by request accessors
 * are NUL-terminated and owned by the request. */
#ifndef WEFT_HTTP_H
#define WEFT_HTTP_H

#include <stdbool.h>
#include <sys/types.h>

#include "common.h"
#include "ctx.h"
#include "tls.h"

#ifdef __cplusplus
extern "C" {
#endif

struct json_t; /* jansson */

typedef struct weft_http_request weft_http_request;
typedef struct weft_http_response weft_http_response;

/* A handler: answer r through w. arg is the pointer given with the handler. */
typedef void (*weft_http_handler_fn)(weft_http_response *w, weft_http_request *r, void *arg);

/* weft_http_status_text: "OK", "Not Found"... ("" for an unknown code). Any thread. */
WEFT_API const char *weft_http_status_text(int status);

/* ---- requests (server side). Coroutine serving the request only. ---- */

WEFT_API const char *weft_http_request_method(const weft_http_request *r);
/* The request target as sent ("/a%20b?x=1"). */
WEFT_API const char *weft_http_request_target(const weft_http_request *r);
/* The path, percent-decoded ("/a b"); "" for an asterisk or authority form. */
WEFT_API const char *weft_http_request_path(const weft_http_request *r);
/* The raw query after '?' ("" for none). */
WEFT_API const char *weft_http_request_query(const weft_http_request *r);
/* weft_http_request_query_value: the first value of query parameter name, decoded into buf
 * (NUL-terminated). Returns its length, -ENOENT when absent, -ENOSPC when buf is short. */
WEFT_API ssize_t weft_http_request_query_value(const weft_http_request *r, const char *name,
                                               char *buf, size_t len);
/* The Host header (or the target's authority), "" when absent. */
WEFT_API const char *weft_http_request_host(const weft_http_request *r);
/* "1.0" or "1.1" as major*10+minor: 10 or 11. */
WEFT_API int weft_http_request_version(const weft_http_request *r);
/* The first value of header name (case-insensitive), or NULL. */
WEFT_API const char *weft_http_request_header(const weft_http_request *r, const char *name);
/* Headers in arrival order: returns 0 and sets *name, *value for index i < count,
 * -ENOENT past the end. */
WEFT_API size_t weft_http_request_header_count(const weft_http_request *r);
WEFT_API int weft_http_request_header_at(const weft_http_request *r, size_t i,
                                         const char **name, const char **value);
/* The body's declared length, -1 when chunked or unknown (0 when none). */
WEFT_API int64_t weft_http_request_content_length(const weft_http_request *r);
/* The peer's address ("127.0.0.1:50312", "[::1]:50312" or "@" for Unix sockets). */
WEFT_API const char *weft_http_request_remote_addr(const weft_http_request *r);
/* A context done when the server shuts down forcibly, when the handler returns, or when
 * the client goes away (Go's r.Context()): unless the server's cancel_on_disconnect is < 0,
 * once the handler has asked for it and the body is read to its end (or none was sent),
 * an end of stream or a reset from the client cancels it with cause -ECONNRESET
 * (weft_ctx_cause). A client's half-close (shutdown(SHUT_WR) after its request) counts as
 * going away, as in Go; a pipelined next request ends the watch without cancelling. The
 * request's values (weft_ctx_value) come from the server's base context. It carries the
 * request's server span (weft/trace.h): a child of the span in a valid traceparent
 * header, else the root of a new trace. Borrowed. */
WEFT_API weft_ctx *weft_http_request_ctx(const weft_http_request *r);
/* Path values set by the router for {name} segments (NULL when none), and setting one. */
WEFT_API const char *weft_http_request_path_value(const weft_http_request *r, const char *name);
WEFT_API int weft_http_request_set_path_value(weft_http_request *r, const char *name,
                                              const char *value);
/* The pattern that matched in the router ("GET /items/{id}"), or NULL. */
WEFT_API const char *weft_http_request_pattern(const weft_http_request *r);

/* weft_http_request_set_body_limit: the most body bytes this request may read (default:
 * the server's max_body); call before reading. Returns 0, or -EINVAL after reading. */
WEFT_API int weft_http_request_set_body_limit(weft_http_request *r, int64_t max);

/* weft_http_request_read_body: read up to len body bytes (sends "100 Continue" first when
 * the client asked for it). Returns the count, 0 at the end of the body, -EFBIG past the
 * body limit (a handler that then returns without answering sends 413), -ETIMEDOUT when
 * the client stalls past body_timeout, -EPROTO for a malformed body, or another negative
 * error. Coroutine, may park. */
WEFT_API ssize_t weft_http_request_read_body(weft_http_request *r, void *buf, size_t len);

/* weft_http_request_body: read the whole body (within the limit) into memory owned by the
 * request; *data is NUL-terminated. Returns 0 or read_body's errors. Coroutine, may park. */
WEFT_API int weft_http_request_body(weft_http_request *r, const char **data, size_t *len);

/* weft_http_request_json: read and decode the body as JSON (jansson). On success *out is
 * a new reference. Returns 0, -EBADMSG for invalid JSON (errbuf, when given, says where),
 * or read_body's errors. Coroutine, may park. */
WEFT_API int weft_http_request_json(weft_http_request *r, struct json_t **out, char *errbuf,
                                    size_t errlen);

/* ---- responses (server side). Coroutine serving the request only. ---- */

/* Set (replace) or add a header. Returns 0, -EINVAL for a name or value that would break
 * the message (CR, LF, NUL, bad name characters), or -EALREADY once the head is sent. */
WEFT_API int weft_http_response_set_header(weft_http_response *w, const char *name,
                                           const char *value);
WEFT_API int weft_http_response_add_header(weft_http_response *w, const char *name,
                                           const char *value);
WEFT_API int weft_http_response_del_header(weft_http_response *w, const char *name);

/* weft_http_response_write_header: set the status (100-999; 1xx are not supported).
 * The head is sent with the first flush of body bytes. Returns 0, -EINVAL or -EALREADY. */
WEFT_API int weft_http_response_write_header(weft_http_response *w, int status);

/* weft_http_response_write: body bytes (status 200 unless set). A response whose body
 * fits the buffer and ends with the handler goes out with Content-Length; a longer one
 * without a Content-Length header set by the handler goes out chunked. Writing more than
 * a set Content-Length, or any body for HEAD/204/304, returns -EINVAL (HEAD: the bytes
 * are counted, not sent, so Content-Length is right). Returns len or a negative error.
 * Coroutine, may park. */
WEFT_API ssize_t weft_http_response_write(weft_http_response *w, const void *data, size_t len);
WEFT_API ssize_t weft_http_response_printf(weft_http_response *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* weft_http_response_flush: send the head and buffered body now. Coroutine, may park. */
WEFT_API int weft_http_response_flush(weft_http_response *w);

/* weft_http_response_send: a whole response: status, Content-Type (NULL: none) and body.
 * Returns 0 or a negative error. Coroutine, may park. */
WEFT_API int weft_http_response_send(weft_http_response *w, int status,
                                     const char *content_type, const void *body, size_t len);
/* weft_http_response_json: a whole response with body json encoded compactly and
 * Content-Type application/json. Borrows json. */
WEFT_API int weft_http_response_json(weft_http_response *w, int status,
                                     const struct json_t *json);
/* weft_http_response_error: a text/plain response "text\n" (text NULL: the status text). */
WEFT_API int weft_http_response_error(weft_http_response *w, int status, const char *text);

/* The status sent or set (0 when none yet), and whether the head has gone out. */
WEFT_API int weft_http_response_status(const weft_http_response *w);
WEFT_API int weft_http_response_head_sent(const weft_http_response *w);
/* weft_http_response_close_after: close the connection after this response
 * ("Connection: close"). */
WEFT_API void weft_http_response_close_after(weft_http_response *w);

/* ---- server ---- */

typedef struct weft_http_server weft_http_server;

typedef struct weft_http_server_config {
  weft_http_handler_fn handler; /* required */
  void *handler_arg;
  weft_ctx *base_ctx;   /* parent of every request's context (NULL: background) */
  weft_tls_config *tls; /* non-NULL: serve HTTPS (borrowed; outlives the server) */
  /* Limits; 0 takes the default given. */
  size_t max_line;         /* request line and each header line: 8192 (414 / 431) */
  size_t max_headers;      /* header count: 100 (431) */
  size_t max_header_bytes; /* request line and headers together: 65536 (431) */
  int64_t max_body;        /* body bytes a request may read: 1 MiB (413); < 0: none */
  int max_conns;           /* open connections: 10000; past it: 503 and close */
  int max_requests;        /* requests per connection: 1000, then Connection: close */
  /* Timeouts in nanoseconds; 0 takes the default given, < 0 means none. */
  int64_t header_timeout;        /* from a request's first byte to the end of its head: 10 s */
  int64_t body_timeout;          /* between two reads of body bytes: 30 s */
  int64_t write_timeout;         /* for each write of the response: 30 s */
  int64_t idle_timeout;          /* keep-alive wait for the next request's first byte: 60 s */
  int64_t tls_handshake_timeout; /* 10 s */
  /* 0 (the default) or > 0: cancel a request's context (weft_http_request_ctx) with cause
   * -ECONNRESET when its client goes away while the handler runs; < 0: never. */
  int cancel_on_disconnect;
} weft_http_server_config;

/* weft_http_server_new: a server; copies cfg. Returns NULL for -ENOMEM or a missing
 * handler. Any thread. */
WEFT_API weft_http_server *weft_http_server_new(const weft_http_server_config *cfg);

/* weft_http_server_serve: accept on listening socket fd (borrowed; weft_listen) and serve
 * each connection in its own coroutine until weft_http_server_shutdown. Accept errors
 * EMFILE/ENFILE/ENOBUFS/ENOMEM back off (5 ms doubling to 1 s) instead of failing.
 * Returns 0 after a shutdown, or a negative errno from accept that is not transient.
 * Coroutine, parks until then. One serve at a time per server. */
WEFT_API int weft_http_server_serve(weft_http_server *s, int fd);

/* weft_http_server_stop_accepting: make weft_http_server_serve return 0 and accept no
 * more connections, leaving open ones (idle keep-alive ones too) served as before: the
 * first step of a shutdown in which requests still arriving on open connections are to
 * be answered (503 while draining) rather than cut. Close the listener after serve has
 * returned. Any thread; never parks. */
WEFT_API void weft_http_server_stop_accepting(weft_http_server *s);

/* weft_http_server_shutdown: stop accepting (serve returns), close idle connections, let
 * requests in flight finish until deadline, then cut the rest (their contexts are
 * cancelled and their sockets shut down) and wait for every connection coroutine to end.
 * Returns 0 when all finished in time, -ETIMEDOUT when some were cut.
 * Coroutine, may park. Any number of callers. */
WEFT_API int weft_http_server_shutdown(weft_http_server *s, int64_t deadline);

/* weft_http_server_free: free a server that is not serving (after shutdown, or never
 * served). NULL is ignored. */
WEFT_API void weft_http_server_free(weft_http_server *s);

/* Live counts: open connections, requests being handled, requests served. Any thread. */
WEFT_API int weft_http_server_conns(const weft_http_server *s);
WEFT_API int weft_http_server_active(const weft_http_server *s);
WEFT_API uint64_t weft_http_server_requests(const weft_http_server *s);

/* ---- router (in the style of Go 1.22's ServeMux) ----
 *
 * Patterns are "[METHOD ][HOST]/PATH". PATH segments are literal, "{name}" (one segment)
 * or, last only, "{name...}" (the rest of the path); a trailing "/" matches every path
 * below it unless the pattern ends in "{$}" (the path exactly). "GET" also matches HEAD.
 * The most specific pattern wins (Go's rules); two patterns that would match the same
 * requests with neither more specific are a registration error (-EEXIST). A request that
 * matches no path gets 404; one whose path matches only under other methods gets 405
 * with an Allow header. */

typedef struct weft_http_router weft_http_router;

/* weft_http_router_new: an empty router; NULL for -ENOMEM. Any thread. */
WEFT_API weft_http_router *weft_http_router_new(void);
/* weft_http_router_free: free rt and its copies of the patterns (not the handlers' args).
 * NULL is ignored. Any thread, once nothing serves or matches through it. */
WEFT_API void weft_http_router_free(weft_http_router *rt);

/* weft_http_router_handle: route pattern to fn(arg). The router copies pattern. Returns 0,
 * -EINVAL for a malformed pattern (empty; a method that is not an HTTP token; no '/'; a
 * '{' in the host; a wildcard that is not a whole segment, has an empty or non-identifier
 * name, repeats a name, or is "{$}" or "{name...}" before the end; an unclean path such as
 * "/a/../b" with a method other than CONNECT) or a NULL rt, pattern or fn, -EEXIST when
 * it conflicts with a registered pattern (the same, or overlapping with neither more
 * specific), or -ENOMEM; a failed call changes nothing. Any thread, not while serving or
 * matching (the router has no lock: register everything first). */
WEFT_API int weft_http_router_handle(weft_http_router *rt, const char *pattern,
                                     weft_http_handler_fn fn, void *arg);

/* Handlers for 404 and 405 (defaults: text/plain bodies "404 page not found" and "Method
 * Not Allowed"; fn NULL restores the default). The 405 handler finds the Allow header
 * already set on w. Any thread, not while serving. */
WEFT_API void weft_http_router_set_not_found(weft_http_router *rt, weft_http_handler_fn fn,
                                             void *arg);
WEFT_API void weft_http_router_set_method_not_allowed(weft_http_router *rt,
                                                      weft_http_handler_fn fn, void *arg);

/* weft_http_router_set_redirects: on (the default) a request whose path Go's ServeMux would
 * redirect (an unclean path such as "/a//b" or "/a/../b", or "/tree" when only "/tree/"
 * is routed) gets the 301; off, it is answered as not found (the 404 handler), as an API
 * whose clients should not follow redirects to other resources wants.
 * weft_http_router_match still reports WEFT_HTTP_ROUTE_REDIRECT. Any thread, not while
 * serving. */
WEFT_API void weft_http_router_set_redirects(weft_http_router *rt, bool on);

/* weft_http_router_serve: a handler (arg: the router) dispatching to the routes. It
 * matches the request's method, Host and raw target as weft_http_router_match does, then:
 * on a match sets the path values and the pattern (weft_http_request_path_value,
 * weft_http_request_pattern) and calls the route's handler; on a redirect answers 301 with
 * Location; otherwise calls the 405 or 404 handler. 500 when memory runs out.
 * Coroutine serving the request; parks only as the handler it calls does. */
WEFT_API void weft_http_router_serve(weft_http_response *w, weft_http_request *r, void *rt);

/* A wildcard captured by weft_http_router_match. */
typedef struct weft_http_route_param {
  const char *name;  /* the wildcard's name ("id" for "{id}"); owned by the router */
  const char *value; /* its percent-decoded value, NUL-terminated; in the caller's buf */
} weft_http_route_param;

/* weft_http_router_match's results: FOUND is 0, the others positive; errors are negative. */
enum weft_http_route_result {
  WEFT_HTTP_ROUTE_FOUND = 0,              /* pattern, fn, arg, params and nparams are set */
  WEFT_HTTP_ROUTE_NOT_FOUND = 1,          /* no pattern matches the path: 404 */
  WEFT_HTTP_ROUTE_METHOD_NOT_ALLOWED = 2, /* only under other methods: 405, allow is set */
  WEFT_HTTP_ROUTE_REDIRECT = 3,           /* 301 to location */
};

/* A lookup's storage (set by the caller) and results (set by weft_http_router_match).
 * Strings the call writes go into buf and stay valid while buf does. On -ENOSPC, nparams
 * and buf_needed say what would have been enough. allow is sorted and comma-space
 * separated ("GET, HEAD, POST"; GET brings HEAD); location keeps the request's query. */
typedef struct weft_http_route_match {
  weft_http_route_param *params; /* in: room for max_params captures (NULL when 0) */
  size_t max_params;             /* in */
  char *buf;                     /* in: room for the strings below and the values */
  size_t buf_len;                /* in: bytes at buf (0: none) */
  const char *pattern;           /* FOUND: as registered; owned by the router */
  weft_http_handler_fn fn;       /* FOUND: its handler */
  void *arg;                     /* FOUND: the handler's argument */
  size_t nparams;                /* FOUND: captures in params, in pattern order */
  const char *allow;             /* METHOD_NOT_ALLOWED: the Allow header's value */
  const char *location;          /* REDIRECT: where to: path, then "?query" if any */
  size_t buf_needed;             /* -ENOSPC: a buf_len that would do */
} weft_http_route_match;

/* weft_http_router_match: the lookup weft_http_router_serve makes, without a server.
 *   method: the request method ("GET"; not empty). HEAD also matches GET patterns.
 *   host: the Host header as received (NULL or "": none). A port is stripped, and IPv6
 *     brackets, except for CONNECT; hosts compare exactly, as in Go (no case folding).
 *   path: the target's path as sent, still percent-encoded, optionally followed by
 *     "?query" (ignored for matching, kept in a redirect). Each segment is decoded before
 *     it is compared, so "%2F" stays inside its segment ("/b/x/o/a%2Fb" matches
 *     "/b/{bucket}/o/{obj...}" with obj "a/b"). A path that does not start with '/'
 *     (asterisk or authority form) matches nothing.
 *   m: storage in params, max_params, buf and buf_len; every result field is reset.
 * Like Go's ServeMux: a path with "//", "." or ".." segments (except for CONNECT) is
 * redirected to its cleaned form; a path with no exact match that would match exactly
 * with a trailing '/' added is redirected there ("/tree" for pattern "/tree/").
 * Returns a weft_http_route_result, -EINVAL when rt, method, path or m is NULL, method is
 * empty or buf is NULL with buf_len > 0, or -ENOSPC when params or buf is too small
 * (nparams and buf_needed then say what would do; strlen(path) + 3 bytes is always
 * enough for values and locations, Allow needs the registered methods' names).
 * Any thread, concurrently with other lookups and serves, not with weft_http_router_handle;
 * never parks. Borrows everything; keeps nothing. */
WEFT_API int weft_http_router_match(const weft_http_router *rt, const char *method,
                                    const char *host, const char *path,
                                    weft_http_route_match *m);

#ifdef __cplusplus
}
#endif
#endif
