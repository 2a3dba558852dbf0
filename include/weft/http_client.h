/* weft/http_client.h: an HTTP/1.1 client with a connection pool per host.
 *
 * A client keeps idle keep-alive connections per scheme, host and port (the most recently
 * used is reused first), and caps the requests in flight to one host, and with them the
 * connections open to it (callers beyond the cap wait for a turn, in order, under their
 * context and deadline). Every request runs under a context (NULL: none) and the client's
 * own request timeout, whichever ends first: one deadline covers name resolution,
 * connect, TLS handshake, every write and read, across redirects. Responses are read
 * whole into memory, up to a cap, and decoded when the server sent them gzip- or
 * deflate-compressed (the client asks for both unless told not to; the cap counts decoded
 * bytes). A pooled connection that the server closed while it was idle is detected and
 * a GET or HEAD that fails on one before any response byte is sent again, once, on a new
 * connection. A client is shared by any number of coroutines on any threads.
 *
 * Errors, distinct by kind: -WEFT_EDNS (name), -ECONNREFUSED / -ENETUNREACH /
 * -EHOSTUNREACH (connect), -ECONNRESET / -EPIPE (the connection broke, or the server
 * closed it before the response was complete), -WEFT_ETLS / -WEFT_ECERT (TLS),
 * -ETIMEDOUT (the deadline) or the context's error, -EPROTO (a malformed response, more
 * than 100 header lines or 64 KiB of head, or a malformed compressed body), -EFBIG (a
 * body over the cap unless truncation was asked for), -ELOOP (more redirects than
 * allowed), -EINVAL (a bad URL or request), -ENOMEM. */
#ifndef WEFT_HTTP_CLIENT_H
#define WEFT_HTTP_CLIENT_H

#include <sys/types.h>

#include "common.h"
#include "ctx.h"
#include "tls.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_http_client weft_http_client;
typedef struct weft_http_client_response weft_http_client_response;

enum {
  WEFT_HTTP_CLIENT_INSECURE = 1 << 0,       /* skip TLS verification (default: verify) */
  WEFT_HTTP_CLIENT_NO_COMPRESSION = 1 << 1, /* do not send Accept-Encoding */
  WEFT_HTTP_CLIENT_TRUNCATE = 1 << 2,       /* cut bodies at max_body instead of -EFBIG */
};

typedef struct weft_http_client_config {
  int flags;              /* WEFT_HTTP_CLIENT_* */
  int max_conns_per_host; /* open connections per host: 0 = 64 */
  int max_idle_per_host;  /* idle connections kept per host: 0 = 8 */
  int64_t idle_timeout;   /* idle connections closed after: 0 = 90 s */
  int64_t timeout;        /* whole request, connect to last byte: 0 = 30 s, < 0 none */
  int max_redirects;      /* redirects followed: 0 = none (the 3xx is returned) */
  int64_t max_body;       /* decoded body bytes: 0 = 10 MiB */
  /* idle_timeout and timeout are in nanoseconds; max_idle_per_host < 0 keeps none. */
  const char *user_agent; /* NULL: "weft/VERSION" */
  const char *ca_file;    /* trusted CAs instead of the system's (PEM) */
} weft_http_client_config;

/* weft_http_client_new: a client (cfg NULL: defaults; strings are copied). Creates its
 * TLS client configuration at once (system trust store or ca_file). NULL on failure
 * (out of memory, unreadable ca_file), with a new weft_error in *err when err is given.
 * Any thread, never parks. */
struct weft_error;
WEFT_API weft_http_client *weft_http_client_new(const weft_http_client_config *cfg,
                                                struct weft_error **err);
/* weft_http_client_free: close idle connections and free the client; no request may be
 * running. NULL is ignored. Any thread, never parks. */
WEFT_API void weft_http_client_free(weft_http_client *cl);

/* A request. Everything is borrowed for the duration of the call.
 *
 * The client sends Host, User-Agent, Accept-Encoding: gzip, deflate (unless
 * WEFT_HTTP_CLIENT_NO_COMPRESSION), Content-Length (for a body, and 0 for an empty POST,
 * PUT or PATCH), Connection: keep-alive, and traceparent for a new child span when the
 * context carries a trace (weft/trace.h). A header given here with one of these names
 * replaces the client's, except Content-Length and Transfer-Encoding, which are refused
 * (-EINVAL); giving Accept-Encoding also turns decoding off (the body is returned as
 * sent); giving Connection: close keeps the connection out of the pool. Header names
 * must be tokens and values may not hold CR or LF (-EINVAL).
 *
 * The URL: http:// or https://, a host name, IPv4 address or [IPv6] address, an optional
 * port; user information is dropped, the fragment is not sent, and spaces and non-ASCII
 * bytes in the path and query are percent-encoded. Control characters are refused. */
typedef struct weft_http_client_request {
  const char *method;         /* a token; NULL: GET */
  const char *url;            /* http:// or https:// */
  const char *const *headers; /* NULL-terminated name, value, name, value... or NULL */
  const void *body;           /* sent with Content-Length; may be NULL when body_len is 0 */
  size_t body_len;
} weft_http_client_request;

/* weft_http_client_do: send req and read the whole response. On success *out is a new
 * response to free with weft_http_client_response_free. Returns 0 (whatever the status)
 * or a negative error as above (*out is then NULL).
 *
 * Redirects (max_redirects > 0): a 301, 302, 303, 307 or 308 with a Location is followed,
 * resolved against the current URL (RFC 3986); 301, 302 and 303 turn any method but
 * HEAD into a GET without body, 307 and 308 keep method and body. Once a redirect leads
 * to another host or port, Authorization, Proxy-Authorization, Cookie and Cookie2 are no
 * longer sent. A Location that is not an http(s) URL is not followed: the 3xx is
 * returned. The redirect after max_redirects followed ones fails with -ELOOP.
 *
 * Coroutine, may park; honours ctx (its error is returned once it is done). */
WEFT_API int weft_http_client_do(weft_http_client *cl, weft_ctx *ctx,
                                 const weft_http_client_request *req,
                                 weft_http_client_response **out);

/* weft_http_client_get: weft_http_client_do of a GET of url. */
WEFT_API int weft_http_client_get(weft_http_client *cl, weft_ctx *ctx, const char *url,
                                  weft_http_client_response **out);

/* ---- responses ----
 * A response belongs to the caller; its accessors return strings it owns, valid until
 * weft_http_client_response_free. Headers are as received (a decoded body keeps its
 * Content-Encoding and Content-Length headers). Any thread, never park. */

WEFT_API int weft_http_client_response_status(const weft_http_client_response *resp);
/* The first value of header name (case-insensitive), or NULL. */
WEFT_API const char *weft_http_client_response_header(const weft_http_client_response *resp,
                                                      const char *name);
/* The number of header lines, and the i-th (in the order received; name and value may be
 * NULL). header_at returns 0, or -ENOENT when i is past the end. */
WEFT_API size_t weft_http_client_response_header_count(const weft_http_client_response *resp);
WEFT_API int weft_http_client_response_header_at(const weft_http_client_response *resp,
                                                 size_t i, const char **name,
                                                 const char **value);
/* The decoded body (NUL-terminated, "" when empty; len may be NULL). */
WEFT_API const char *weft_http_client_response_body(const weft_http_client_response *resp,
                                                    size_t *len);
/* 1 when the body was cut at max_body (WEFT_HTTP_CLIENT_TRUNCATE). */
WEFT_API int weft_http_client_response_truncated(const weft_http_client_response *resp);
/* The URL finally answered (after redirects), and how many redirects were followed. */
WEFT_API const char *weft_http_client_response_url(const weft_http_client_response *resp);
WEFT_API int weft_http_client_response_redirects(const weft_http_client_response *resp);
/* weft_http_client_response_free: NULL is ignored. */
WEFT_API void weft_http_client_response_free(weft_http_client_response *resp);

#ifdef __cplusplus
}
#endif
#endif
