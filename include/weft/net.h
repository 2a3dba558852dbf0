/* weft/net.h: TCP and Unix sockets, name resolution, connections and buffered I/O.
 *
 * Addresses are strings, as in Go's net package: "host:port", "[v6addr]:port" or ":port"
 * (every local address) for "tcp", "tcp4" and "tcp6"; a file system path for "unix" (a
 * leading '@' names an abstract socket). Hosts may be names: they are resolved on the
 * blocking pool (getaddrinfo), never on a scheduler thread.
 *
 * A weft_conn is a byte stream over a connected socket, plain or TLS (weft/tls.h). One
 * coroutine at a time may read it and one may write it (a TLS connection: one at a time
 * in all). Every call that may park takes a context (NULL: never cancelled) and an
 * absolute deadline (WEFT_NO_DEADLINE: none); whichever ends first ends the call with the
 * context's error or -ETIMEDOUT.
 *
 * Error codes beyond errno (weft/error.h): -WEFT_EDNS when a name does not resolve,
 * -WEFT_ETLS and -WEFT_ECERT for TLS failures. Connection failures keep connect(2)'s own
 * code (-ECONNREFUSED, -ENETUNREACH, -EHOSTUNREACH). */
#ifndef WEFT_NET_H
#define WEFT_NET_H

#include <sys/socket.h>
#include <sys/types.h>

#include "common.h"
#include "ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

struct addrinfo;

/* weft_resolve: resolve host and port (a number or a service name) with getaddrinfo on
 * the blocking pool. family: AF_UNSPEC, AF_INET or AF_INET6. On success *out is a list
 * to free with freeaddrinfo(). Returns 0, -WEFT_EDNS (no such host, or the resolver
 * failed), -EINVAL, -ENOMEM, or ctx's error / -ETIMEDOUT (the lookup goes on in the pool
 * and its result is freed there). Numeric hosts never touch the pool.
 * Coroutine, may park (wait reason "blocking call"). */
WEFT_API int weft_resolve(weft_ctx *ctx, const char *host, const char *port, int family,
                          int64_t deadline, struct addrinfo **out);

/* weft_split_host_port: split "host:port", "[v6]:port" or ":port" into host (brackets
 * removed; "" for none) and port. Returns 0 or -EINVAL (no port, unbalanced brackets,
 * or a part longer than its buffer). Any thread, never parks. */
WEFT_API int weft_split_host_port(const char *address, char *host, size_t host_len, char *port,
                                  size_t port_len);

/* weft_listen: a listening socket, non-blocking and close-on-exec, registered with the
 * poller. network: "tcp", "tcp4", "tcp6" or "unix". TCP sockets set SO_REUSEADDR; a
 * "unix" path that exists is not removed (-EADDRINUSE). backlog <= 0 means SOMAXCONN.
 * Returns the fd or a negative errno (-EINVAL for a bad network or address,
 * -WEFT_EDNS, -EADDRINUSE, ...). Coroutine (names are resolved on the pool). */
WEFT_API int weft_listen(const char *network, const char *address, int backlog);

/* weft_local_port: the port a TCP socket is bound to (for ":0"), or a negative errno.
 * Any thread, never parks. */
WEFT_API int weft_local_port(int fd);

/* weft_dial: connect to address, trying each resolved address in turn until one
 * answers. TCP connections set TCP_NODELAY. Returns a connected non-blocking fd or the
 * last address's error (-ECONNREFUSED, ...), -WEFT_EDNS, -EINVAL, ctx's error or
 * -ETIMEDOUT. Coroutine, may park. */
WEFT_API int weft_dial(weft_ctx *ctx, const char *network, const char *address,
                       int64_t deadline);

/* ---- connections ---- */

typedef struct weft_conn weft_conn;

/* weft_conn_new: a plain connection over connected socket fd, which it takes (closed by
 * weft_conn_close; closed at once if this fails). Returns NULL when out of memory.
 * Any thread, never parks. */
WEFT_API weft_conn *weft_conn_new(int fd);

/* weft_conn_read: read up to len bytes. Returns the count (> 0), 0 at end of stream, or a
 * negative error: ctx's error, -ETIMEDOUT, -ECONNRESET, -WEFT_ETLS ...
 * Coroutine, may park. */
WEFT_API ssize_t weft_conn_read(weft_conn *c, void *buf, size_t len, weft_ctx *ctx,
                                int64_t deadline);

/* weft_conn_write: write all len bytes. Returns len or a negative error (-EPIPE when the
 * peer has gone, ctx's error, -ETIMEDOUT: then some bytes may have been written).
 * Coroutine, may park. */
WEFT_API ssize_t weft_conn_write(weft_conn *c, const void *buf, size_t len, weft_ctx *ctx,
                                 int64_t deadline);

/* weft_conn_writev: weft_conn_write of iovcnt buffers in order, in as few system calls as
 * the kernel takes. Returns the total or a negative error. Coroutine, may park. */
struct iovec;
WEFT_API ssize_t weft_conn_writev(weft_conn *c, const struct iovec *iov, int iovcnt,
                                  weft_ctx *ctx, int64_t deadline);

/* weft_conn_shutdown_read: make this connection's reads end (0, end of stream) from
 * now on, waking a reader parked in weft_conn_read. Used to stop an idle keep-alive
 * connection from another coroutine. Returns 0 or a negative errno. Any thread. */
WEFT_API int weft_conn_shutdown_read(weft_conn *c);

/* weft_conn_fd: the socket under c. */
WEFT_API int weft_conn_fd(const weft_conn *c);

/* weft_conn_is_tls: 1 for a TLS connection, else 0. */
WEFT_API int weft_conn_is_tls(const weft_conn *c);

/* weft_conn_close: end the connection (a TLS close_notify first, without waiting), close
 * the socket and free c. NULL is ignored. Coroutine or any thread; never parks. */
WEFT_API void weft_conn_close(weft_conn *c);

/* ---- buffered reader ---- */

typedef struct weft_reader weft_reader;

/* weft_reader_new: a buffered reader of size bytes (0: 4096) over c, which it borrows.
 * Returns NULL when out of memory. Any thread. */
WEFT_API weft_reader *weft_reader_new(weft_conn *c, size_t size);
WEFT_API void weft_reader_free(weft_reader *r);

/* weft_reader_read: up to len bytes, from the buffer first, reading the connection at
 * most once. Returns the count, 0 at end of stream, or a negative error. */
WEFT_API ssize_t weft_reader_read(weft_reader *r, void *buf, size_t len, weft_ctx *ctx,
                                  int64_t deadline);

/* weft_reader_read_full: exactly len bytes. Returns len, -EPIPE when the stream ended
 * first, or a negative error. */
WEFT_API ssize_t weft_reader_read_full(weft_reader *r, void *buf, size_t len, weft_ctx *ctx,
                                       int64_t deadline);

/* weft_reader_read_line: the next line ending in "\n" (the "\n", and a "\r" before it,
 * removed), NUL-terminated in *line, which points into the reader's buffer and stays
 * valid until the next call. Returns the line's length, -EPIPE at end of stream (a last
 * line without "\n" is returned first), -EMSGSIZE when the line does not fit in the
 * buffer, or a negative error. Coroutine, may park. */
WEFT_API ssize_t weft_reader_read_line(weft_reader *r, char **line, weft_ctx *ctx,
                                       int64_t deadline);

/* weft_reader_buffered: bytes read from the connection and not yet consumed. */
WEFT_API size_t weft_reader_buffered(const weft_reader *r);

/* ---- buffered writer ---- */

typedef struct weft_writer weft_writer;

/* weft_writer_new: a buffered writer of size bytes (0: 4096) over c, which it borrows. */
WEFT_API weft_writer *weft_writer_new(weft_conn *c, size_t size);
/* weft_writer_free: free w without flushing it. */
WEFT_API void weft_writer_free(weft_writer *w);

/* weft_writer_write: buffer len bytes, writing to the connection when the buffer fills
 * (data larger than the buffer goes straight through). Returns len or a negative error;
 * after an error every later call returns it again. Coroutine, may park. */
WEFT_API ssize_t weft_writer_write(weft_writer *w, const void *data, size_t len, weft_ctx *ctx,
                                   int64_t deadline);
/* weft_writer_printf: formatted weft_writer_write. */
WEFT_API ssize_t weft_writer_printf(weft_writer *w, weft_ctx *ctx, int64_t deadline,
                                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* weft_writer_flush: write what is buffered. Returns 0 or the error. */
WEFT_API int weft_writer_flush(weft_writer *w, weft_ctx *ctx, int64_t deadline);

#ifdef __cplusplus
}
#endif
#endif
