/* weft/tls.h: TLS over weft connections (OpenSSL).
 *
 * A weft_tls_config holds one OpenSSL context: a server's certificate and key, or a
 * client's trust store. Clients verify the peer's certificate chain and host name by
 * default (the system's trust store, or ca_file); WEFT_TLS_INSECURE turns both checks off.
 * The handshake runs on the poller like any other I/O: no thread blocks.
 *
 * Errors: -WEFT_ECERT when the peer's certificate fails verification (untrusted, expired,
 * wrong host name), -WEFT_ETLS for any other TLS failure (protocol, handshake, alert);
 * ctx's error or -ETIMEDOUT when they end the handshake first.
 *
 * A TLS connection is a weft_conn (weft/net.h) used by one coroutine at a time in all
 * (reads and writes share the TLS state). Its reads return 0 at the peer's close_notify
 * and also at an end of stream without one, as most clients do: protocols that need to
 * detect truncation frame their messages (HTTP's Content-Length, chunked encoding). After
 * a TLS or socket error every later read and write returns that error again. A write
 * ended by ctx or the deadline may have sent part of a record, so every later write
 * returns that error too (as in Go's crypto/tls); reads go on. A read ended that way
 * loses nothing. weft_conn_close sends close_notify if the socket takes it at once and
 * never waits for the peer's. */
#ifndef WEFT_TLS_H
#define WEFT_TLS_H

#include "common.h"
#include "ctx.h"
#include "net.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_tls_config weft_tls_config;

enum {
  WEFT_TLS_SERVER = 1 << 0,   /* a server's configuration (else a client's) */
  WEFT_TLS_INSECURE = 1 << 1, /* client: skip certificate and host name verification */
};

typedef struct weft_tls_options {
  int flags;             /* WEFT_TLS_* */
  const char *cert_file; /* server (required): certificate chain (PEM), leaf first */
  const char *key_file;  /* server (required): private key (PEM) */
  const char *ca_file;   /* client: trusted CAs (PEM) instead of the system's */
  const char *alpn;      /* optional ALPN protocol list, comma separated, in order of
                            preference ("h2,http/1.1"). A server picks the first of its
                            own that the client offers; with none in common the
                            handshake goes on without ALPN. */
} weft_tls_options;

/* weft_tls_config_new: a configuration from opts (borrowed: files are read now). Both
 * sides accept TLS 1.2 and later only. On failure returns NULL and, when err is not NULL,
 * sets *err to a weft_error saying why, which the caller releases: code -WEFT_ETLS with
 * OpenSSL's reason (unreadable file, key not matching the certificate...), -EINVAL for
 * options that do not fit (a server without cert_file or key_file, a server's ca_file, a
 * client's cert_file or key_file: client certificates are not supported, an empty or
 * over-long ALPN name, unknown flags), or -ENOMEM. On success *err is set to NULL.
 * Any thread, never parks. */
struct weft_error;
WEFT_API weft_tls_config *weft_tls_config_new(const weft_tls_options *opts,
                                              struct weft_error **err);
/* weft_tls_config_free: free cfg (NULL is ignored); connections made with it, and
 * handshakes already started, keep what they need. A configuration may be shared by any
 * number of connections and threads. Any thread, never parks. */
WEFT_API void weft_tls_config_free(weft_tls_config *cfg);

/* weft_tls_client: run a client handshake over *c (a plain connection) for server name
 * host: a DNS name, sent as SNI, or an IP address without brackets (no SNI); the peer's
 * certificate must name it, unless WEFT_TLS_INSECURE, where host may also be NULL.
 * On success *c is the TLS connection, which owns the socket (the same weft_conn object,
 * its transport replaced in place). On failure *c is closed and set to NULL.
 * Returns 0, -WEFT_ECERT, -WEFT_ETLS, -ECONNRESET (the peer hung up during the
 * handshake) or another socket error, ctx's error, -ETIMEDOUT, -ENOMEM, or -EINVAL (c
 * or *c NULL: nothing is closed; cfg NULL or a server's, *c already TLS, host missing
 * or not a valid name). Coroutine, may park; honours ctx and deadline. */
WEFT_API int weft_tls_client(weft_conn **c, weft_tls_config *cfg, const char *host,
                             weft_ctx *ctx, int64_t deadline);

/* weft_tls_server: run a server handshake over *c with a server's cfg, as
 * weft_tls_client (same results; -WEFT_ETLS also when the client rejects our
 * certificate, which it reports with an alert). Coroutine, may park. */
WEFT_API int weft_tls_server(weft_conn **c, weft_tls_config *cfg, weft_ctx *ctx,
                             int64_t deadline);

/* weft_tls_alpn: the protocol ALPN chose for TLS connection c ("http/1.1"), or "" when
 * none was (or c is not a TLS connection). Valid while c is. Any thread, never parks. */
WEFT_API const char *weft_tls_alpn(const weft_conn *c);

#ifdef __cplusplus
}
#endif
#endif
