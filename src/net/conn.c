/* conn.c: connections (weft_conn) and the plain socket transport.
 *
 * A connection is used by at most one reader and one writer at a time (net.h); nothing
 * here is shared beyond that, so there is no lock. weft_conn_shutdown_read may come from
 * any coroutine: shutdown(2) makes the kernel report end of stream to the parked reader. */
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "ctx/ctx_io.h"
#include "net/conn.h"
#include "weft/io.h"

ssize_t weft__plain_read(weft_conn *c, void *buf, size_t len, weft_ctx *ctx, int64_t deadline)
{
  return weft__read_ctx(c->fd, buf, len, ctx, deadline);
}

/* Skip the first n bytes of *iov (of *iovcnt buffers), adjusting it in place. */
static void iov_advance(struct iovec **iov, int *iovcnt, size_t n)
{
  while (*iovcnt > 0 && n >= (*iov)->iov_len) {
    n -= (*iov)->iov_len;
    (*iov)++;
    (*iovcnt)--;
  }
  if (*iovcnt > 0 && n) {
    (*iov)->iov_base = (char *)(*iov)->iov_base + n;
    (*iov)->iov_len -= n;
  }
}

enum { MAX_IOV = 64 }; /* buffers per system call: the copy below is on the stack */

/* Write all of iov_in[0, iovcnt), iovcnt <= MAX_IOV. sendmsg with MSG_NOSIGNAL rather
 * than writev: a gone peer is -EPIPE even if the program handles SIGPIPE itself. */
static ssize_t writev_some(weft_conn *c, const struct iovec *iov_in, int iovcnt, weft_ctx *ctx,
                           int64_t deadline)
{
  struct iovec copy[MAX_IOV], *iov = copy;
  size_t total = 0;
  for (int i = 0; i < iovcnt; i++) {
    copy[i] = iov_in[i];
    total += iov_in[i].iov_len;
  }
  iov_advance(&iov, &iovcnt, 0); /* drop leading empty buffers */
  while (iovcnt > 0) {
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)iovcnt};
    ssize_t n = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
    if (n >= 0) {
      iov_advance(&iov, &iovcnt, (size_t)n);
      continue;
    }
    if (errno == EINTR)
      continue;
    if (errno != EAGAIN)
      return -errno;
    int err = weft__wait_fd_ctx(c->fd, 1, ctx, deadline);
    if (err)
      return err;
  }
  return (ssize_t)total;
}

/* Any number of buffers, MAX_IOV at a time. */
ssize_t weft__plain_writev(weft_conn *c, const struct iovec *iov, int iovcnt, weft_ctx *ctx,
                           int64_t deadline)
{
  if (iovcnt < 0)
    return -EINVAL;
  size_t total = 0;
  for (int i = 0; i < iovcnt; i += MAX_IOV) {
    ssize_t n =
        writev_some(c, iov + i, iovcnt - i < MAX_IOV ? iovcnt - i : MAX_IOV, ctx, deadline);
    if (n < 0)
      return n;
    total += (size_t)n;
  }
  return (ssize_t)total;
}

const struct conn_ops weft__plain_conn_ops = {
    .read = weft__plain_read,
    .writev = weft__plain_writev,
    .close = NULL,
    .is_tls = false,
};

weft_conn *weft_conn_new(int fd)
{
  weft_conn *c = malloc(sizeof *c);
  if (!c || weft_fd_register(fd) != 0) {
    free(c);
    weft_close(fd);
    return NULL;
  }
  *c = (weft_conn){.ops = &weft__plain_conn_ops, .fd = fd};
  return c;
}

ssize_t weft_conn_read(weft_conn *c, void *buf, size_t len, weft_ctx *ctx, int64_t deadline)
{
  return c->ops->read(c, buf, len, ctx, deadline);
}

ssize_t weft_conn_write(weft_conn *c, const void *buf, size_t len, weft_ctx *ctx,
                        int64_t deadline)
{
  struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
  return c->ops->writev(c, &iov, 1, ctx, deadline);
}

ssize_t weft_conn_writev(weft_conn *c, const struct iovec *iov, int iovcnt, weft_ctx *ctx,
                         int64_t deadline)
{
  return c->ops->writev(c, iov, iovcnt, ctx, deadline);
}

int weft_conn_shutdown_read(weft_conn *c)
{
  return shutdown(c->fd, SHUT_RD) == 0 ? 0 : -errno;
}

int weft_conn_fd(const weft_conn *c)
{
  return c->fd;
}

int weft_conn_is_tls(const weft_conn *c)
{
  return c->ops->is_tls;
}

void weft_conn_close(weft_conn *c)
{
  if (!c)
    return;
  if (c->ops->close)
    c->ops->close(c);
  weft_close(c->fd);
  free(c);
}
