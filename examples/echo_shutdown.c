/* echo_shutdown.c: a TCP echo server that shuts down gracefully on Ctrl-C or SIGTERM.
 *
 *   examples/echo_shutdown [port [grace_seconds]]   port 0 (default): any free port
 *
 * It prints "listening on 127.0.0.1:PORT", then echoes every line it gets back to its
 * sender. On the first SIGINT or SIGTERM it stops accepting, lets open connections finish
 * for up to grace_seconds (default 10), cancels those still open, and exits with 0. A
 * second signal during that wait cancels them at once and exits with 1.
 *
 * The pieces, each from weft's context layer:
 * - a signal context (weft/signal_ctx.h): done on the first signal; later ones arrive on
 *   its "again" channel;
 * - an error group (weft/group.h) running the listener and one handler per connection:
 *   the first of them to fail cancels the others, and weft_group_wait joins them all;
 * - two contexts: `stop` (the signal) tells the listener to stop accepting; `hard`, the
 *   group's parent, tells handlers to drop their connections. Keeping them apart is what
 *   makes the shutdown graceful: a signal does not cut a client off mid-line.
 *
 * weft's fd calls take deadlines, not contexts, so each call here waits at most a short
 * slice (POLL_SLICE) and the loop checks its context between slices. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <weft/ctx.h>
#include <weft/error.h>
#include <weft/group.h>
#include <weft/io.h>
#include <weft/runtime.h>
#include <weft/signal_ctx.h>
#include <weft/sync.h>

#define MS(n)      ((int64_t)(n)*1000000)
#define POLL_SLICE MS(100) /* how long an fd call waits before the loop looks at its ctx */

struct server {
  int lfd;           /* the listening socket */
  weft_ctx *stop;    /* done on the first signal: stop accepting (borrowed) */
  weft_group *group; /* the listener and the handlers */
  atomic_int open;   /* connections being served */
};

struct conn {
  struct server *srv;
  int fd;
};

/* The end of the next wait: a short slice, or ctx's deadline if that comes first. */
static int64_t slice_end(weft_ctx *ctx)
{
  int64_t end = weft_now() + POLL_SLICE, dl = weft_ctx_deadline(ctx);
  return dl < end ? dl : end;
}

/* One connection: echo what arrives until the client closes or ctx (the group's context,
 * under `hard`) is cancelled. A connection error ends this connection only: it returns 0,
 * so one bad client does not cancel the whole group. */
static int handle(weft_ctx *ctx, void *arg)
{
  struct conn *c = arg;
  char buf[4096];
  while (!weft_ctx_err(ctx)) {
    ssize_t n = weft_read(c->fd, buf, sizeof buf, slice_end(ctx));
    if (n == -ETIMEDOUT)
      continue; /* nothing yet: look at ctx again */
    if (n <= 0)
      break; /* 0: the client closed; < 0: a connection error */
    if (weft_write_all(c->fd, buf, (size_t)n, weft_now() + MS(5000)) < 0)
      break;
  }
  weft_close(c->fd);
  atomic_fetch_sub(&c->srv->open, 1);
  free(c);
  return 0;
}

/* Accept connections until the first signal, starting a handler in the group for each.
 * An accept error other than a timeout is the group's error (it stops everything). */
static int listen_loop(weft_ctx *ctx, void *arg)
{
  struct server *srv = arg;
  int err = 0;
  while (!weft_ctx_err(srv->stop) && !weft_ctx_err(ctx)) {
    int fd = weft_accept(srv->lfd, NULL, NULL, slice_end(srv->stop));
    if (fd == -ETIMEDOUT || fd == -ECONNABORTED)
      continue;
    if (fd < 0) {
      err = fd;
      break;
    }
    struct conn *c = malloc(sizeof *c);
    if (!c) {
      weft_close(fd);
      continue;
    }
    *c = (struct conn){srv, fd};
    atomic_fetch_add(&srv->open, 1);
    if (weft_group_go(srv->group, handle, c) != 0) { /* could not spawn: drop it */
      atomic_fetch_sub(&srv->open, 1);
      weft_close(fd);
      free(c);
    }
  }
  weft_close(srv->lfd); /* new connections are now refused */
  return err;
}

static int open_listener(int port)
{
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd < 0)
    return -1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, 128) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static int bound_port(int fd)
{
  struct sockaddr_in addr;
  socklen_t len = sizeof addr;
  return getsockname(fd, (struct sockaddr *)&addr, &len) == 0 ? ntohs(addr.sin_port) : -1;
}

struct options {
  int port, grace_s;
};

/* Wait for the first signal (or a failure in the group), then give open connections
 * grace_s seconds. Returns 1 if a second signal cut the grace period short, else 0. */
static int await_shutdown(weft_signal_ctx *sc, struct server *srv, weft_ctx *hard, int grace_s)
{
  weft_select_case first[2] = {
      {.ch = weft_ctx_done(srv->stop), .dir = WEFT_SELECT_RECV},
      {.ch = weft_ctx_done(weft_group_ctx(srv->group)), .dir = WEFT_SELECT_RECV},
  };
  weft_select(first, 2, 0, WEFT_NO_DEADLINE);
  int signo = weft_signal_ctx_signal(sc); /* 0: the group failed, not a signal */
  printf("%s: no new connections; waiting up to %d s for %d open\n",
         signo ? strsignal(signo) : "listener failed", grace_s, atomic_load(&srv->open));
  fflush(stdout);

  /* The grace period: until every connection is gone, a second signal, or the timeout.
   * Each turn waits a slice for a second signal, then looks at the count again. */
  int64_t end = weft_now() + (int64_t)grace_s * 1000000000;
  while (atomic_load(&srv->open) > 0) {
    if (weft_now() >= end) {
      printf("grace period over: closing %d connection(s)\n", atomic_load(&srv->open));
      break;
    }
    int64_t slice = weft_now() + POLL_SLICE;
    int got;
    if (weft_chan_recv(weft_signal_ctx_again(sc), &got, slice < end ? slice : end) == 0) {
      printf("second signal: closing %d connection(s) now\n", atomic_load(&srv->open));
      weft_ctx_cancel(hard);
      return 1;
    }
  }
  weft_ctx_cancel(hard); /* handlers still running (if any) stop at their next slice */
  return 0;
}

static int server_main(void *arg)
{
  struct options *o = arg;
  struct server srv = {.lfd = open_listener(o->port)};
  int rc = 2;
  if (srv.lfd < 0) {
    perror("echo_shutdown: cannot listen on 127.0.0.1");
    return rc;
  }
  /* From here SIGINT and SIGTERM cancel sc's context instead of killing the process. */
  weft_signal_ctx *sc = weft_signal_ctx_new(NULL, NULL, 0);
  if (!sc)
    goto err_close;
  weft_ctx *hard = weft_ctx_with_cancel(NULL);
  if (!hard)
    goto err_stop;
  srv.stop = weft_signal_ctx_ctx(sc);
  srv.group = weft_group_new(hard);
  if (!srv.group || weft_group_go(srv.group, listen_loop, &srv) != 0)
    goto err_release;
  printf("listening on 127.0.0.1:%d\n", bound_port(srv.lfd));
  fflush(stdout);

  int forced = await_shutdown(sc, &srv, hard, o->grace_s);
  int err = weft_group_wait(srv.group); /* the listener and every handler have returned */
  printf("stopped%s%s\n", err ? ": " : "", err ? weft_strerror(err) : "");
  rc = forced || err ? 1 : 0;
  weft_group_free(srv.group);
  weft_ctx_release(hard);
  weft_signal_ctx_stop(sc); /* SIGINT and SIGTERM kill the process again from here */
  return rc;

err_release:
  weft_group_free(srv.group);
  weft_ctx_release(hard);
err_stop:
  weft_signal_ctx_stop(sc);
err_close:
  fprintf(stderr, "echo_shutdown: out of memory\n");
  weft_close(srv.lfd);
  return rc;
}

int main(int argc, char **argv)
{
  struct options o = {.port = argc > 1 ? atoi(argv[1]) : 0,
                      .grace_s = argc > 2 ? atoi(argv[2]) : 10};
  if (o.port < 0 || o.port > 65535 || o.grace_s < 0) {
    fprintf(stderr, "usage: %s [port [grace_seconds]]\n", argv[0]);
    return 2;
  }
  int rc = weft_main(server_main, &o);
  return rc < 0 ? 2 : rc;
}
