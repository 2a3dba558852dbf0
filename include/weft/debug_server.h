/* weft/debug_server.h: an HTTP server for looking inside a running program.
 *
 * The debug server listens on its own port, loopback by default (127.0.0.1:6060), and
 * serves, with weft's own HTTP server (weft/http.h) in coroutines of the running runtime:
 *
 *   GET /                     an HTML index of the endpoints below
 *   GET /debug/coroutines     the coroutines, as pprof's goroutine profile:
 *                               ?debug=1 (the default): grouped by identical state and
 *                                 stack, largest group first (weft_dump_grouped);
 *                               ?debug=2: every coroutine in full (weft_dump_full);
 *                               any other value: 400. text/plain.
 *   GET /debug/vars           the registry's metrics as JSON, expvar-style, with
 *                             "cmdline" and "runtime" (weft_metrics_write_json)
 *   GET /metrics              the registry in the Prometheus text format
 *                             (weft_metrics_write_prometheus, WEFT_METRICS_CONTENT_TYPE)
 *   GET /debug/dashboard      a live dashboard: one self-contained HTML page (no external
 *                             URL) polling /debug/vars every second and charting the
 *                             coroutines, the run queue, per-thread utilisation, the
 *                             blocking pool, and every metric family in the registry
 *
 * HEAD works wherever GET does; other methods get 405, other paths 404. Every response
 * carries Cache-Control: no-store. Bodies are built in memory (open_memstream), then sent,
 * so a slow client never holds a registry or dump lock.
 *
 * The endpoints show the program's internals (coroutine names, creation sites, metric
 * labels) to whoever can connect: keep the default loopback address, or put the port
 * behind something that authenticates, before listening on another interface. */
#ifndef WEFT_DEBUG_SERVER_H
#define WEFT_DEBUG_SERVER_H

#include "common.h"
#include "metrics.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The address listened on when none is given. */
#define WEFT_DEBUG_SERVER_DEFAULT_ADDR "127.0.0.1:6060"

typedef struct weft_debug_server weft_debug_server;

/* Options for weft_debug_server_start. Zero fields take the defaults. */
typedef struct weft_debug_server_options {
  /* TCP address to listen on: "host:port" as weft_listen takes it, or a bare port ("6060",
   * "0" for any free one), which means that port on 127.0.0.1. NULL: 127.0.0.1:6060.
   * ":6060" listens on every interface: say so deliberately. Copied. */
  const char *addr;
  /* The metrics shown at /metrics, /debug/vars and on the dashboard (borrowed: it must
   * outlive the server). NULL: weft_metrics_default(). */
  weft_metrics_registry *registry;
  /* Open connections at most (past it: 503); 0: 64. A debug port should stay cheap. */
  int max_conns;
} weft_debug_server_options;

/* weft_debug_server_start: listen on opts->addr and serve the endpoints above from
 * coroutines of the running runtime (one accepting, named "weft-debug-server", and one per
 * connection) until weft_debug_server_stop.
 *   opts: NULL for every default.
 *   out: receives the new server, owned by the caller: stop it with weft_debug_server_stop
 *     before the runtime's main returns, or its coroutines count as leaked.
 * Returns 0; -EINVAL for a NULL out, a malformed address or a negative max_conns; -EPERM
 * outside a coroutine; -ENOMEM (also when weft_metrics_default() fails); or weft_listen's
 * error (-EADDRINUSE, -WEFT_EDNS, ...). On error *out is NULL and nothing is left running.
 * Coroutine (the address may be resolved on the blocking pool: may park). */
WEFT_API int weft_debug_server_start(const weft_debug_server_options *opts,
                                     weft_debug_server **out);

/* weft_debug_server_port: the TCP port s listens on (the one chosen for port 0), or -EINVAL
 * for a NULL s. Any thread, never parks. */
WEFT_API int weft_debug_server_port(const weft_debug_server *s);

/* weft_debug_server_addr: the address s listens on, as "127.0.0.1:6060" (IPv6 in
 * brackets), owned by s ("" for a NULL s). Any thread, never parks. */
WEFT_API const char *weft_debug_server_addr(const weft_debug_server *s);

/* weft_debug_server_stop: stop s gracefully (weft_http_server_shutdown: stop accepting,
 * close idle connections, let requests in flight finish until deadline, then cut the rest),
 * wait for all its coroutines to end, close its socket and free it. deadline: absolute
 * monotonic nanoseconds (weft_now() + ...). NULL is ignored (returns 0).
 * Returns 0 when every request finished in time, -ETIMEDOUT when some were cut (s is freed
 * either way), or the accept error that had already ended serving (s is freed).
 * Coroutine, may park. Call it once, from one coroutine. */
WEFT_API int weft_debug_server_stop(weft_debug_server *s, int64_t deadline);

#ifdef __cplusplus
}
#endif
#endif
