/* http_server_watch.c: cancel a request's context when its client goes away, as Go's
 * net/http cancels r.Context() when the connection closes.
 *
 * The handler runs on the connection's coroutine, so a second coroutine, the watcher,
 * waits for the socket to turn readable and looks with recv(MSG_PEEK), which consumes
 * nothing:
 *
 *   0 bytes (end of stream) or an error (reset) -> cancel the context, cause -ECONNRESET
 *   a byte (a pipelined next request)           -> the client is there: stop watching
 *   EAGAIN (a stale readiness mark)             -> wait for the next edge
 *
 * Invariants:
 * - At most one coroutine waits to read an fd (weft/io.h). The connection reads its socket
 *   for the request's body and, after the handler, to drain it and for the next request;
 *   so the watcher runs only between the moment the handler holds a context with the body
 *   consumed (or none sent) and the handler's return, when nothing else reads the socket.
 *   The body is done when read_body saw the end of the message; a bodiless request's end
 *   is already in the read buffer (http-parser stops its head before the final LF), so
 *   reading it touches no socket.
 * - Only the connection's coroutine starts (weft__http_watch_start) and joins
 *   (weft__http_watch_end) a watcher; it joins before it reads the socket again and before
 *   the request's context, which the watcher borrows, is released.
 * - The watcher's wait may consume the poller's readiness mark that await_request's edge
 *   wait counts on (a pipelined request's bytes): after a watch whose wait returned for
 *   readiness the connection forgets that its socket was drained and reads before
 *   waiting. A wait ended by the join consumed nothing, and the socket stays drained.
 *
 * Watching starts lazily, at the first weft_http_request_ctx (or at the end of the body
 * when the context came first): a handler that never asks for its context cannot observe
 * a cancellation, so it pays nothing. One that does pays a coroutine start and a join per
 * request, plus a poll(2) when the socket was not drained (docs/internals/http.md has the
 * numbers).
 *
 * Rejected: the connection's coroutine itself watching while the handler runs elsewhere
 * (a handoff per request and a second stack for every request, asked or not); a watcher
 * that keeps looking past a pipelined byte (a peek cannot see an end of stream behind
 * data; Go's background read stops at the first byte too). */
#include <errno.h>
#include <sys/socket.h>

#include "ctx/ctx_io.h"
#include "net/http_internal.h"
#include "weft/runtime.h"

/* Peek at the socket: 1 when the peer is gone (end of stream or an error), 0 when data
 * waits, -EAGAIN when there is nothing yet. */
static int peer_gone(int fd)
{
  char byte;
  for (;;) {
    ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0)
      return 0;
    if (n == 0)
      return 1;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return -EAGAIN;
    if (errno != EINTR)
      return 1; /* ECONNRESET, ETIMEDOUT (keepalive), EHOSTUNREACH... */
  }
}

static void watch_main(void *arg)
{
  struct http_watch *w = arg;
  /* An end of stream that came before the watcher did counts. When the connection's
   * last read drained the socket, whatever came since raised an edge the poller kept, so
   * waiting for an edge sees it; otherwise the first wait looks at the socket's state
   * (poll). Later waits are for a new edge. */
  int err = w->drained ? weft__wait_fd_edge_ctx(w->fd, 0, w->ctx, WEFT_NO_DEADLINE)
                       : weft__wait_fd_ctx(w->fd, 0, w->ctx, WEFT_NO_DEADLINE);
  while (!err) {
    w->saw_edge = true;
    int gone = peer_gone(w->fd);
    if (gone == 1)
      weft_ctx_cancel_cause(w->ctx, -ECONNRESET);
    if (gone != -EAGAIN)
      break;
    err = weft__wait_fd_edge_ctx(w->fd, 0, w->ctx, WEFT_NO_DEADLINE);
  }
  weft_wg_done(&w->done); /* last touch: the connection may go on at once */
}

void weft__http_watch_begin(struct http_conn *hc)
{
  hc->watch.allowed = hc->srv->cfg.cancel_on_disconnect >= 0;
}

void weft__http_watch_start(weft_http_request *r)
{
  struct http_conn *hc = r->hc;
  struct http_watch *w = &hc->watch;
  if (!w->allowed || !r->ctx || !(r->body_done || r->content_length == 0))
    return;
  w->allowed = false; /* one attempt per request */
  w->ctx = r->ctx;
  w->fd = weft_conn_fd(hc->conn);
  w->drained = hc->drained && !weft_conn_is_tls(hc->conn);
  w->saw_edge = false;
  weft_wg_add(&w->done, 1);
  if (weft_go_named(watch_main, w, "http disconnect watch") != 0) {
    weft_wg_done(&w->done);
    return;
  }
  w->running = true;
}

void weft__http_watch_end(struct http_conn *hc, weft_http_request *r)
{
  struct http_watch *w = &hc->watch;
  w->allowed = false;
  if (!w->running)
    return;
  weft_ctx_cancel(r->ctx); /* ends the watcher's wait unless the peer already did */
  weft_wg_wait(&w->done);
  w->running = false;
  w->ctx = NULL;
  if (w->saw_edge)
    hc->drained = false; /* the watcher may have taken the edge of a pipelined request */
}
