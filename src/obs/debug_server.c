/* debug_server.c: the debug server (weft/debug_server.h): a router on its own listener,
 * served by weft's HTTP server in coroutines of the running runtime.
 *
 * State. A weft_debug_server is written only by start, before the accepting coroutine is
 * spawned, and by stop, after it has ended; between the two every field is read-only, so
 * handlers on any thread read it without a lock. The HTTP server owns the connections and
 * their coroutines; done counts the accepting coroutine, so stop knows when serve has
 * returned and the socket, router and server may go.
 *
 * Every body is built in memory first (open_memstream) and sent afterwards: the dump and
 * the registry take their locks only while writing to memory, never while a slow client
 * holds the connection. Rejected: writing straight into the response through a FILE made
 * with fopencookie, which saves a copy but would park with those locks held. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "weft/debug.h"
#include "weft/debug_server.h"
#include "weft/error.h"
#include "weft/http.h"
#include "weft/io.h"
#include "weft/net.h"
#include "weft/runtime.h"
#include "weft/sync.h"

/* The page, generated from dashboard.html by src/CMakeLists.txt (NUL after the last byte). */
extern const unsigned char weft__dashboard_html[];
extern const size_t weft__dashboard_html_len;

#define DEFAULT_MAX_CONNS 64
#define DUMP_STACK        (2u << 20) /* bytes; touched only as deep as the dump goes */
#define TEXT_PLAIN        "text/plain; charset=utf-8"
#define TEXT_HTML         "text/html; charset=utf-8"

struct weft_debug_server {
  weft_http_server *http;     /* serves router on fd */
  weft_http_router *router;   /* the endpoints; args point back here */
  weft_metrics_registry *reg; /* borrowed; outlives the server */
  int fd;                     /* the listening socket */
  int port;                   /* its port */
  int serve_err;              /* serve's result; written by the accepting coroutine before
                                 done reaches zero, read by stop after waiting on it */
  weft_wg done;               /* the accepting coroutine: 1 while it runs */
  char addr[80];              /* the bound address, "127.0.0.1:6060" */
};

/* A writer of a body into f: returns 0 or a negative error. */
typedef int (*body_fn)(weft_debug_server *s, FILE *f, void *arg);

/* send_built: build a body with fn into memory and send it with status 200 and ctype, or
 * answer 500 when building fails. */
static void send_built(weft_http_response *w, weft_debug_server *s, const char *ctype,
                       body_fn fn, void *arg)
{
  char *body = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&body, &len);
  if (!f) {
    weft_http_response_error(w, 500, "out of memory");
    return;
  }
  int err = fn(s, f, arg);
  if (fclose(f) != 0 && err == 0)
    err = -ENOMEM;
  if (err < 0) {
    char msg[128];
    snprintf(msg, sizeof msg, "writing the response failed: %s", weft_strerror(err));
    weft_http_response_error(w, 500, msg);
  } else {
    weft_http_response_send(w, 200, ctype, body, len);
  }
  free(body);
}

/* Every answer goes out with these. */
static void common_headers(weft_http_response *w)
{
  weft_http_response_set_header(w, "Cache-Control", "no-store");
  weft_http_response_set_header(w, "X-Content-Type-Options", "nosniff");
}

/* ---- / ---- */

static const char index_page[] =
    "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
    "<title>weft debug server</title></head><body>\n"
    "<h1>weft debug server</h1>\n<ul>\n"
    "<li><a href=\"/debug/dashboard\">/debug/dashboard</a>: live charts</li>\n"
    "<li><a href=\"/debug/coroutines?debug=1\">/debug/coroutines?debug=1</a>: "
    "coroutines grouped by state and stack (the default)</li>\n"
    "<li><a href=\"/debug/coroutines?debug=2\">/debug/coroutines?debug=2</a>: "
    "every coroutine in full</li>\n"
    "<li><a href=\"/debug/vars\">/debug/vars</a>: metrics and runtime statistics as "
    "JSON</li>\n"
    "<li><a href=\"/metrics\">/metrics</a>: metrics in the Prometheus text format</li>\n"
    "</ul>\n</body></html>\n";

static void handle_index(weft_http_response *w, weft_http_request *r, void *arg)
{
  common_headers(w);
  weft_http_response_send(w, 200, TEXT_HTML, index_page, sizeof index_page - 1);
}

/* ---- /debug/coroutines ---- */

struct dump_call {
  FILE *out;
  int full;    /* 1: weft_dump_full, 0: weft_dump_grouped */
  long result; /* the dump's; written before done reaches zero */
  weft_wg done;
};

static void dump_co(void *arg)
{
  struct dump_call *d = arg;
  d->result = d->full ? weft_dump_full(d->out) : weft_dump_grouped(d->out);
  weft_wg_done(&d->done); /* the last touch of d, which lives on the waiter's stack */
}

/* write_dump: the dump runs in a coroutine of its own with a large stack: symbolizing frames
 * (libdw) needs more stack than a connection's coroutine has (it overflowed 128 KiB under
 * AddressSanitizer). Rejected: the blocking pool, which has the stack but may be the very
 * thing that is stuck when someone asks for a dump. */
static int write_dump(weft_debug_server *s, FILE *f, void *arg)
{
  struct dump_call d = {.out = f, .full = *(const int *)arg};
  weft_wg_init(&d.done);
  weft_wg_add(&d.done, 1);
  weft_go_options opts = {.name = "weft-debug-dump", .stack_size = DUMP_STACK};
  int err = weft_go_with(dump_co, &d, &opts);
  if (err)
    return err;
  weft_wg_wait(&d.done);
  return d.result < 0 ? (int)d.result : 0;
}

static void handle_coroutines(weft_http_response *w, weft_http_request *r, void *arg)
{
  char debug[8];
  ssize_t n = weft_http_request_query_value(r, "debug", debug, sizeof debug);
  int full;
  if (n == -ENOENT || (n == 1 && debug[0] == '1')) {
    full = 0;
  } else if (n == 1 && debug[0] == '2') {
    full = 1;
  } else {
    common_headers(w);
    weft_http_response_error(w, 400, "debug must be 1 (grouped, the default) or 2 (full)");
    return;
  }
  common_headers(w);
  send_built(w, arg, TEXT_PLAIN, write_dump, &full);
}

/* ---- /metrics and /debug/vars ---- */

static int write_prometheus(weft_debug_server *s, FILE *f, void *arg)
{
  return weft_metrics_write_prometheus(s->reg, f);
}

static int write_json(weft_debug_server *s, FILE *f, void *arg)
{
  return weft_metrics_write_json(s->reg, f);
}

static void handle_metrics(weft_http_response *w, weft_http_request *r, void *arg)
{
  common_headers(w);
  send_built(w, arg, WEFT_METRICS_CONTENT_TYPE, write_prometheus, NULL);
}

static void handle_vars(weft_http_response *w, weft_http_request *r, void *arg)
{
  common_headers(w);
  send_built(w, arg, WEFT_METRICS_JSON_CONTENT_TYPE, write_json, NULL);
}

/* ---- /debug/dashboard ---- */

static void handle_dashboard(weft_http_response *w, weft_http_request *r, void *arg)
{
  common_headers(w);
  /* The page fetches only its own origin; say so to the browser as well. */
  weft_http_response_set_header(w, "Content-Security-Policy",
                                "default-src 'none'; script-src 'unsafe-inline'; "
                                "style-src 'unsafe-inline'; connect-src 'self'; "
                                "img-src 'self' data:");
  weft_http_response_send(w, 200, TEXT_HTML, weft__dashboard_html, weft__dashboard_html_len);
}

/* ---- lifecycle ---- */

static const struct route {
  const char *pattern;
  weft_http_handler_fn fn;
} routes[] = {
    {"GET /{$}", handle_index},
    {"GET /debug/coroutines", handle_coroutines},
    {"GET /debug/vars", handle_vars},
    {"GET /metrics", handle_metrics},
    {"GET /debug/dashboard", handle_dashboard},
};

static weft_http_router *make_router(weft_debug_server *s)
{
  weft_http_router *rt = weft_http_router_new();
  if (!rt)
    return NULL;
  for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
    if (weft_http_router_handle(rt, routes[i].pattern, routes[i].fn, s) != 0) {
      weft_http_router_free(rt);
      return NULL;
    }
  }
  return rt;
}

/* listen_addr: the address to listen on for opts' addr: the default, a bare port on
 * 127.0.0.1, or addr itself. Returns 0 or -EINVAL when it does not fit. */
static int listen_addr(const char *addr, char *buf, size_t len)
{
  int n;
  if (!addr)
    n = snprintf(buf, len, "%s", WEFT_DEBUG_SERVER_DEFAULT_ADDR);
  else if (addr[0] != '\0' && strspn(addr, "0123456789") == strlen(addr))
    n = snprintf(buf, len, "127.0.0.1:%s", addr);
  else
    n = snprintf(buf, len, "%s", addr);
  return n < 0 || (size_t)n >= len || buf[0] == '\0' ? -EINVAL : 0;
}

/* bound_addr: fd's local address as "host:port" ("[v6]:port") into s->addr. */
static void bound_addr(weft_debug_server *s)
{
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  char host[INET6_ADDRSTRLEN] = "?";
  if (getsockname(s->fd, (struct sockaddr *)&ss, &len) == 0) {
    if (ss.ss_family == AF_INET6)
      inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof host);
    else if (ss.ss_family == AF_INET)
      inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof host);
  }
  const char *fmt = strchr(host, ':') ? "[%s]:%d" : "%s:%d";
  snprintf(s->addr, sizeof s->addr, fmt, host, s->port);
}

static void serve_co(void *arg)
{
  weft_debug_server *s = arg;
  s->serve_err = weft_http_server_serve(s->http, s->fd);
  weft_wg_done(&s->done); /* the last touch of s: stop may free it from here on */
}

/* start_serving: the router, the HTTP server and the accepting coroutine for s, whose
 * fd listens. Returns 0 or -ENOMEM. */
static int start_serving(weft_debug_server *s, int max_conns)
{
  s->router = make_router(s);
  if (!s->router)
    return -ENOMEM;
  weft_http_server_config cfg = {
      .handler = weft_http_router_serve,
      .handler_arg = s->router,
      .max_conns = max_conns ? max_conns : DEFAULT_MAX_CONNS,
  };
  s->http = weft_http_server_new(&cfg);
  if (!s->http)
    return -ENOMEM;
  weft_wg_add(&s->done, 1);
  int err = weft_go_named(serve_co, s, "weft-debug-server");
  if (err)
    weft_wg_add(&s->done, -1);
  return err;
}

static void free_server(weft_debug_server *s)
{
  if (s->fd >= 0)
    weft_close(s->fd);
  weft_http_server_free(s->http);
  weft_http_router_free(s->router);
  free(s);
}

int weft_debug_server_start(const weft_debug_server_options *opts, weft_debug_server **out)
{
  static const weft_debug_server_options defaults = {0};
  char addr[256];
  if (!out)
    return -EINVAL;
  *out = NULL;
  if (!opts)
    opts = &defaults;
  if (opts->max_conns < 0 || listen_addr(opts->addr, addr, sizeof addr) != 0)
    return -EINVAL;
  if (!weft_in_coroutine())
    return -EPERM;
  weft_metrics_registry *reg = opts->registry ? opts->registry : weft_metrics_default();
  weft_debug_server *s = calloc(1, sizeof *s);
  if (!reg || !s) {
    free(s);
    return -ENOMEM;
  }
  s->reg = reg;
  weft_wg_init(&s->done);
  s->fd = weft_listen("tcp", addr, 0);
  int err = s->fd < 0 ? s->fd : weft_local_port(s->fd);
  if (err < 0)
    goto err_free;
  s->port = err;
  bound_addr(s);
  err = start_serving(s, opts->max_conns);
  if (err)
    goto err_free;
  *out = s;
  return 0;

err_free:
  free_server(s);
  return err;
}

int weft_debug_server_port(const weft_debug_server *s)
{
  return s ? s->port : -EINVAL;
}

const char *weft_debug_server_addr(const weft_debug_server *s)
{
  return s ? s->addr : "";
}

int weft_debug_server_stop(weft_debug_server *s, int64_t deadline)
{
  if (!s)
    return 0;
  int err = weft_http_server_shutdown(s->http, deadline);
  weft_wg_wait(&s->done);
  if (err == 0 && s->serve_err < 0)
    err = s->serve_err;
  free_server(s);
  return err;
}
