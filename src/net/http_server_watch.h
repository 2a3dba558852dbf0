/* http_server_watch.h: the disconnect watcher of a request whose handler runs (see
 * http_server_watch.c). Every call: the connection's coroutine only, never parks unless
 * said. */
#ifndef WEFT_NET_HTTP_SERVER_WATCH_H
#define WEFT_NET_HTTP_SERVER_WATCH_H

#include <stdbool.h>

#include "weft/ctx.h"
#include "weft/sync.h"

struct http_conn;
typedef struct weft_http_request weft_http_request;

struct http_watch {
  weft_wg done;  /* 1 while the watcher coroutine runs; the connection waits for 0 */
  weft_ctx *ctx; /* the request's context, borrowed: released only after the join */
  int fd;        /* the connection's socket; set before the watcher starts */
  bool drained;  /* set before the watcher starts: the socket was empty at the connection's
                    last read, so anything since came with an edge the poller kept */
  bool saw_edge; /* the watcher's wait returned for readiness (it may have consumed the
                    poller's mark); written by the watcher, read by the connection after
                    the join */
  bool allowed;  /* connection coroutine only: a handler runs, the config allows a watch */
  bool running;  /* connection coroutine only: a watcher started and is not yet joined */
};

/* weft__http_watch_begin: a handler is about to run on hc: allow a watcher. */
void weft__http_watch_begin(struct http_conn *hc);

/* weft__http_watch_start: start watching r's connection when everything holds: a handler
 * runs, r has its context, its body is consumed (or there is none) and no watcher runs.
 * Called where one of those becomes true: r's context created, r's body read to its end.
 * Failure to start (out of memory) leaves the request unwatched. */
void weft__http_watch_start(weft_http_request *r);

/* weft__http_watch_end: r's handler returned: cancel its context (Go does too), wait for
 * the watcher to end (coroutine, may park) so that the connection may read its socket
 * again. */
void weft__http_watch_end(struct http_conn *hc, weft_http_request *r);

#endif
