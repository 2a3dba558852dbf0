/* weft/pg.h: PostgreSQL through libpq's asynchronous API, driven by the poller.
 *
 * A query parks the calling coroutine while the server works; no thread ever waits on a
 * socket. Connections are made with PQconnectStart/PQconnectPoll, queries sent with
 * PQsendQueryParams and read back with PQconsumeInput/PQisBusy/PQgetResult, each wait on
 * the connection's socket going through the poller. Types are libpq's own (PGresult), so
 * a caller reads results with PQgetvalue and friends and frees them with PQclear.
 *
 * A separate library, libweft_pg (link weft::weft_pg, or -lweft_pg -lweft -lpq): it exists
 * only when Debian's libpq-dev was found at build time, and weft/weft.h does not include it.
 *
 * Errors: a negative errno. -WEFT_EDBCONN: the connection could not be made (the reason is
 * written into err). -EIO: the server answered the query with an error (its PGresult is
 * still handed back: read PQresultErrorField(res, PG_DIAG_SQLSTATE), e.g. "23505" for a
 * unique violation, then PQclear it). -ECONNRESET: the connection broke, including when
 * the server ended the session (pg_terminate_backend, shutdown: its 57P01 error result is
 * dropped, since the link is gone either way). -ETIMEDOUT at the deadline, or the
 * context's error (-ECANCELED, -ETIMEDOUT) when it ends first; a context already done or
 * a deadline already passed fails before anything is sent and leaves the connection as it
 * was. After any other error but -EIO and -EINVAL the connection is broken
 * (weft_pg_broken) and a pool drops it. -EINVAL: a caller's mistake (NULL sql, nparams out
 * of 0..65535, values NULL with nparams > 0), or a COPY statement, which this API does not
 * run (that one leaves the connection broken: it is in COPY mode).
 *
 * Hostnames are resolved by libpq inside PQconnectPoll, on the calling thread: give an IP
 * address (host=127.0.0.1, or hostaddr=) where a blocking DNS lookup matters.
 *
 * Who may call what: a weft_pg is used by one coroutine at a time (a pool hands each
 * connection to one holder); a weft_pg_pool by any number of coroutines at once. */
#ifndef WEFT_PG_H
#define WEFT_PG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "common.h"
#include "ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_pg weft_pg;
typedef struct weft_pg_pool weft_pg_pool;

/* weft_pg_connect: connect with a libpq connection string or URI ("postgresql://..." or
 * "host=... dbname=..."). Gives up at the deadline (WEFT_NO_DEADLINE: none) or when ctx
 * (may be NULL) ends. On failure writes a one-line reason into err (errlen may be 0).
 * Returns 0 and *out, -WEFT_EDBCONN, -ETIMEDOUT, the context's error, -ENOMEM, or -EINVAL
 * (conninfo or out NULL).
 * Coroutine, may park (wait reason "io wait"). */
WEFT_API int weft_pg_connect(const char *conninfo, weft_ctx *ctx, int64_t deadline,
                             weft_pg **out, char *err, size_t errlen);

/* weft_pg_close: close the connection and free c. Any thread or coroutine; c unused. */
WEFT_API void weft_pg_close(weft_pg *c);

/* weft_pg_exec: run one statement with text parameters (values[i] NULL for SQL NULL; nparams
 * may be 0 and values NULL). sql may hold several statements only when nparams is 0.
 * Returns 0 with *out the result (PGRES_COMMAND_OK or PGRES_TUPLES_OK; the caller
 * PQclears it), -EIO with *out the server's error result, or another negative errno
 * with *out NULL (see the top of this file). Coroutine, may park. */
WEFT_API int weft_pg_exec(weft_pg *c, weft_ctx *ctx, int64_t deadline, const char *sql,
                          int nparams, const char *const *values, PGresult **out);

/* weft_pg_broken: true once c's connection is unusable (closed by the server, a broken
 * socket, a query cut off by a deadline or a context). */
WEFT_API bool weft_pg_broken(const weft_pg *c);

/* weft_pg_describe: "host H port P database D" of conninfo ("(default)" for what it does
 * not name), for messages and logs: conninfo may hold a password, which this never shows.
 * Returns 0, or -EINVAL with libpq's reason (one line) in out when conninfo does not
 * parse, or -ENOMEM. Any thread; never blocks. */
WEFT_API int weft_pg_describe(const char *conninfo, char *out, size_t len);

/* weft_pg_conn: the libpq connection underneath, for what this API does not cover
 * (PQescapeLiteral, PQserverVersion, ...). Never use it to send or read a query. */
WEFT_API PGconn *weft_pg_conn(weft_pg *c);

typedef struct weft_pg_pool_options {
  const char *conninfo;    /* required; copied */
  int max_conns;           /* connections open at most; 0: 4 */
  int64_t connect_timeout; /* ns per connection attempt; 0: 5 s */
} weft_pg_pool_options;

/* weft_pg_pool_new: a pool of at most max_conns connections, made on demand. Opens one
 * connection at once so that a bad conninfo or an unreachable server is reported here:
 * 0 and *out, or -WEFT_EDBCONN (reason in err), -EINVAL (no conninfo), -ENOMEM.
 * Coroutine, may park. */
WEFT_API int weft_pg_pool_new(const weft_pg_pool_options *o, weft_pg_pool **out, char *err,
                              size_t errlen);

/* weft_pg_pool_acquire: a connection for the caller alone: an idle one, a new one while
 * fewer than max_conns are open, else the first one released. Parks until then or until
 * ctx (may be NULL) ends. Returns 0 and *out, -WEFT_EDBCONN, -EPIPE once the pool is
 * closing, or the context's error. Coroutine, may park. */
WEFT_API int weft_pg_pool_acquire(weft_pg_pool *p, weft_ctx *ctx, weft_pg **out);

/* weft_pg_pool_release: give c back; a broken connection is closed instead of reused.
 * Any coroutine. */
WEFT_API void weft_pg_pool_release(weft_pg_pool *p, weft_pg *c);

/* weft_pg_pool_exec: acquire, weft_pg_exec, release: one statement on any connection.
 * Results as weft_pg_exec's, plus acquire's errors. Coroutine, may park. */
WEFT_API int weft_pg_pool_exec(weft_pg_pool *p, weft_ctx *ctx, int64_t deadline,
                               const char *sql, int nparams, const char *const *values,
                               PGresult **out);

/* weft_pg_pool_free: wait until every connection is released, close them, free p. Call once,
 * after the last acquire has returned. Coroutine, may park. */
WEFT_API void weft_pg_pool_free(weft_pg_pool *p);

#ifdef __cplusplus
}
#endif
#endif
