/* http_client_pool.h: the HTTP client's connection pool, one entry per scheme, host and
 * port ("https://example.com:443"). Private to http_client.c.
 *
 * Each host entry holds a semaphore of max_conns tokens and a LIFO list of idle
 * connections. A request takes a token for as long as it uses a connection (pooled or
 * new), so at most max_conns requests run on a host at once. Idle connections hold no
 * token, yet the connections open to a host never exceed max_conns either: a connection
 * is dialled only by a token holder that found the idle list empty, and a finished
 * request puts its connection on the idle list BEFORE it returns its token, so whoever
 * gets that token next finds the connection there. Idle connections past idle_timeout
 * are closed when met: on a take (older ones lie below younger ones, so the rest of the
 * list goes too) and by a sweep of every host, run at most once a second from
 * weft__pool_enter, which also drops host entries nobody uses.
 *
 * Invariant (under mu): a host entry is in the table while refs > 0 or nidle > 0; refs
 * counts the requests between enter and leave. Connections are closed after mu is
 * released. */
#ifndef WEFT_NET_HTTP_CLIENT_POOL_H
#define WEFT_NET_HTTP_CLIENT_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include "weft/net.h"
#include "weft/sync.h"

struct pool_host;

#define WEFT__POOL_READ_BUFFER (16 * 1024)

/* One connection with what stays with it from request to request. Owned by its host's
 * idle list while idle, else by the request using it. */
struct weft__pool_conn {
  struct weft__pool_conn *next; /* the next older idle one; guarded by mu while idle */
  weft_conn *c;                 /* owned */
  int64_t since;                /* weft_now() when it last became idle */
  /* Where its responses are read. Kept with the connection rather than allocated per
   * request: a 16 KiB malloc is past glibc's small bins and consolidated the fast bins
   * on every call (about 5% of weft-etl's CPU). */
  char buf[WEFT__POOL_READ_BUFFER];
};

struct weft__pool {
  weft_mutex mu;            /* guards everything below except the settings */
  struct pool_host **table; /* hash buckets; guarded by mu */
  size_t nbuckets, nhosts;  /* guarded by mu */
  int64_t last_sweep;       /* weft_now() of the last sweep; guarded by mu */
  int max_conns, max_idle;  /* settings: fixed after init */
  int64_t idle_timeout;     /* ns; fixed after init */
};

/* weft__pool_init: an empty pool. Returns 0 or -ENOMEM. */
int weft__pool_init(struct weft__pool *p, int max_conns, int max_idle, int64_t idle_timeout);

/* weft__pool_destroy: close every idle connection and free the table. No request may be
 * between enter and leave. */
void weft__pool_destroy(struct weft__pool *p);

/* weft__pool_enter: find or create the entry for key and take one of its tokens, parking
 * (FIFO) until one is free, ctx is done or deadline passes. On success *out is the entry
 * to give to the calls below and to weft__pool_leave. Returns 0, ctx's error,
 * -ETIMEDOUT or -ENOMEM. Coroutine, may park. */
int weft__pool_enter(struct weft__pool *p, const char *key, weft_ctx *ctx, int64_t deadline,
                     struct pool_host **out);

/* How long a connection may have been idle and still be handed to a retryable request
 * without the recv(MSG_PEEK) check (see weft__pool_take). */
#define WEFT__POOL_TRUST_IDLE ((int64_t)20 * 1000000)

/* weft__pool_take's flags. */
enum {
  /* The caller sends a request that it sends again on a new connection if this one turns
   * out closed before any response byte arrives (an idempotent method). */
  WEFT__POOL_RETRYABLE = 1,
};

/* weft__pool_take: the most recently returned idle connection of h that is young enough
 * and looks usable, or NULL. The caller owns it. Never parks.
 *
 * "Looks usable" costs a recv(MSG_PEEK) (the peer has not closed it nor sent anything
 * unasked), except that with WEFT__POOL_RETRYABLE a connection idle for less than
 * WEFT__POOL_TRUST_IDLE is taken unchecked: a stale one then fails the request before
 * its first response byte and the caller's retry covers it. That saves one system call
 * per request on a busy connection, where staleness is rare; the check stays where a
 * retry would be unsafe or the peer had time to time the connection out. */
struct weft__pool_conn *weft__pool_take(struct weft__pool *p, struct pool_host *h, int flags);

/* weft__pool_conn_new: wrap a new connection c (taken: closed on failure) for a request
 * on h. NULL when out of memory. */
struct weft__pool_conn *weft__pool_conn_new(weft_conn *c);

/* weft__pool_conn_close: close pc's connection and free pc (NULL: nothing). */
void weft__pool_conn_close(struct weft__pool_conn *pc);

/* weft__pool_leave: end a request on h: keep pc (not NULL: a connection that may carry
 * another request; the pool takes it) as idle, unless max_idle are idle already, then
 * return the token and the reference. */
void weft__pool_leave(struct weft__pool *p, struct pool_host *h, struct weft__pool_conn *pc);

/* weft__pool_idle_count: idle connections of the entry for key (tests). */
int weft__pool_idle_count(struct weft__pool *p, const char *key);

/* weft__http_client_idle_count: weft__pool_idle_count of a client's pool, key as
 * "http://127.0.0.1:8080" (tests; defined in http_client.c). */
struct weft_http_client;
int weft__http_client_idle_count(struct weft_http_client *cl, const char *key);

#endif
