/* conn.h: what a weft_conn is, for the transports that implement one (plain sockets in
 * conn.c, TLS in tls.c).
 *
 * A connection is a socket plus a table of operations. The table's read and write follow
 * weft_conn_read/weft_conn_write exactly (write sends everything or fails); close frees
 * the transport's state and closes the socket. A transport may replace a connection's
 * ops and state in place (TLS wrapping a plain connection): the weft_conn pointer that
 * users hold stays the same object. */
#ifndef WEFT_NET_CONN_H
#define WEFT_NET_CONN_H

#include <stdbool.h>
#include <sys/uio.h>

#include "weft/net.h"

struct conn_ops {
  ssize_t (*read)(weft_conn *c, void *buf, size_t len, weft_ctx *ctx, int64_t deadline);
  ssize_t (*writev)(weft_conn *c, const struct iovec *iov, int iovcnt, weft_ctx *ctx,
                    int64_t deadline);
  void (*close)(weft_conn *c); /* transport state only: conn.c closes fd and frees c */
  bool is_tls;
};

struct weft_conn {
  const struct conn_ops *ops;
  int fd;      /* the socket; owned */
  void *state; /* the transport's (TLS: its SSL object and buffers) */
};

/* The plain socket transport, for wrappers that fall back to it. */
extern const struct conn_ops weft__plain_conn_ops;
ssize_t weft__plain_read(weft_conn *c, void *buf, size_t len, weft_ctx *ctx, int64_t deadline);
ssize_t weft__plain_writev(weft_conn *c, const struct iovec *iov, int iovcnt, weft_ctx *ctx,
                           int64_t deadline);

#endif
