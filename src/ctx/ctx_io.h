/* ctx_io.h: fd waits that honour a context and an absolute deadline at once, for the net
 * layer (whose connections carry both: a request's context and a per-read deadline).
 * Same results as the weft_*_ctx calls of weft/ctx.h, plus -ETIMEDOUT at deadline.
 * dir: 0 readable, 1 writable. Coroutine, may park. */
#ifndef WEFT_CTX_IO_H
#define WEFT_CTX_IO_H

#include <sys/socket.h>

#include "weft/ctx.h"

int weft__wait_fd_ctx(int fd, int dir, weft_ctx *ctx, int64_t deadline);
/* weft__wait_fd_edge with a context: see core/core.h (may return for a stale edge). */
int weft__wait_fd_edge_ctx(int fd, int dir, weft_ctx *ctx, int64_t deadline);
long weft__read_ctx(int fd, void *buf, size_t len, weft_ctx *ctx, int64_t deadline);
int weft__connect_ctx(int fd, const struct sockaddr *addr, socklen_t addrlen, weft_ctx *ctx,
                      int64_t deadline);

#endif
