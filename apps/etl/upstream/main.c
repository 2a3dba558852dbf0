/* main.c: weft-upstream's life cycle.
 *
 * The main coroutine alone owns the server and the listening socket; the serve loop runs in
 * a coroutine of its own ("upstream serve") and handlers in the connections' coroutines,
 * none of which touch either. Time runs in periods:
 *
 *   serving ──(refuse-mode window starts)──> down ──(window ends)──> serving ...
 *      └──────────(SIGINT / SIGTERM, in either state)──────────> exit 0
 *
 * serving: a fresh weft_http_server accepts on the listener.
 * down (--outage-mode refuse): the server was shut down with an immediate deadline, so
 *   open connections (idle keep-alive ones too) were cut and requests waiting in their
 *   delay dropped unanswered, and the listener is closed: new connections are refused
 *   (ECONNREFUSED on loopback), just as if the process were gone. At the window's end the
 *   same address and port are bound again and a new server starts. This was chosen over
 *   accept-and-reset because a client's connection pool then sees what a real outage shows
 *   it: pooled connections failing as well as new ones.
 * Stall-mode windows do not change the period: the API handler waits for the window to
 *   end before it answers (api.c), while connections keep being accepted.
 *
 * Times of outage windows count from the runtime's start, just before the first listen.
 * Exit codes: 0 after a signal (requests in flight get up to 2 s, then are cut); 1 when the
 * address cannot be bound again after an outage or the runtime fails; 2 for bad flags or
 * an address that cannot be bound at start. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/logger.h"
#include "upstream.h"

#define SHUTDOWN_GRACE (2 * UP_SEC)

/* One serving period: a server and the coroutine serving it. */
typedef struct up_period {
  weft_http_server *srv;
  int fd;       /* the listener (owned by the main coroutine) */
  weft_wg done; /* done when weft_http_server_serve has returned */
  int rc;       /* serve's result, read after done */
  weft_logger *log;
} up_period;

static void serve_main(void *arg)
{
  up_period *p = arg;
  p->rc = weft_http_server_serve(p->srv, p->fd);
  if (p->rc < 0)
    weft_log_error(p->log, NULL, "serving stopped", WEFT_ERRNO("err", p->rc));
  weft_wg_done(&p->done);
}

static int period_start(up_period *p, weft_http_router *rt, int fd, weft_logger *log)
{
  weft_http_server_config cfg = {.handler = weft_http_router_serve, .handler_arg = rt};
  *p = (up_period){.srv = weft_http_server_new(&cfg), .fd = fd, .log = log};
  weft_wg_init(&p->done);
  if (!p->srv)
    return -ENOMEM;
  weft_wg_add(&p->done, 1);
  int rc = weft_go_named(serve_main, p, "upstream serve");
  if (rc) {
    weft_wg_done(&p->done);
    weft_http_server_free(p->srv);
  }
  return rc;
}

/* Close the period's listener, then shut its server down by deadline. The listener goes
 * first so that connections are refused from the start of a window: until it is closed
 * the kernel would still complete handshakes into its backlog while the open connections
 * are being cut. */
static void period_end(up_period *p, int64_t deadline)
{
  weft_http_server_stop_accepting(p->srv);
  weft_wg_wait(&p->done);
  weft_close(p->fd); /* forgets the poller registration: the fd number will be reused */
  weft_http_server_shutdown(p->srv, deadline);
  weft_http_server_free(p->srv);
}

/* Listen on addr; *bound gets the address with the port actually bound. */
static int listen_on(const char *addr, char *bound, size_t len)
{
  char host[256], port[32];
  int rc = weft_split_host_port(addr, host, sizeof host, port, sizeof port);
  int fd = rc ? rc : weft_listen("tcp", addr, 0);
  if (fd < 0)
    return fd;
  snprintf(bound, len, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, weft_local_port(fd));
  return fd;
}

/* Bind the address again after an outage: retried for a second, in case the kernel is
 * slow to let go of it. */
static int relisten(const char *bound)
{
  char again[300];
  int fd = -EADDRINUSE;
  for (int i = 0; i < 20 && fd == -EADDRINUSE; i++) {
    fd = listen_on(bound, again, sizeof again);
    if (fd == -EADDRINUSE)
      weft_sleep(50 * UP_MS);
  }
  return fd;
}

/* Serve through the refuse-mode windows until stop is done. Returns the exit code. */
static int serve_until_stopped(up_app *app, weft_http_router *rt, weft_ctx *stop, int fd,
                               const char *bound)
{
  const up_opts *o = app->o;
  bool refuse = o->outage_mode == UP_OUTAGE_REFUSE;
  for (int next = 0;; next++) {
    up_period p;
    if (period_start(&p, rt, fd, app->log)) {
      weft_close(fd);
      return 1;
    }
    bool more = refuse && next < o->nwindows;
    weft_ctx_wait(stop, more ? app->started + o->windows[next].start : WEFT_NO_DEADLINE);
    bool stopping = weft_ctx_err(stop) != 0;
    period_end(&p, stopping ? weft_now() + SHUTDOWN_GRACE : weft_now());
    if (stopping)
      return 0;
    weft_log_info(app->log, NULL, "outage: refusing connections",
                  WEFT_DUR("for", o->windows[next].end - o->windows[next].start));
    weft_ctx_wait(stop, app->started + o->windows[next].end);
    if (weft_ctx_err(stop))
      return 0;
    if ((fd = relisten(bound)) < 0) {
      weft_log_error(app->log, NULL, "cannot listen again", WEFT_STR("addr", bound),
                     WEFT_ERRNO("err", fd));
      return 1;
    }
    weft_log_info(app->log, NULL, "outage over: serving again", WEFT_STR("addr", bound));
  }
}

static int run_with(up_app *app, weft_signal_ctx *sc, weft_http_router *rt)
{
  char bound[300];
  int fd = listen_on(app->o->listen, bound, sizeof bound);
  if (fd < 0) {
    fprintf(stderr, "weft-upstream: --listen %s: %s\n", app->o->listen, weft_strerror(fd));
    return 2;
  }
  const up_opts *o = app->o;
  weft_log_info(
      app->log, NULL, "listening", WEFT_STR("addr", bound),
      WEFT_STR("api", up_api_name(o->api)), WEFT_UINT("seed", o->seed),
      WEFT_DUR("latency_median", o->latency_median), WEFT_DUR("latency_p99", o->latency_p99),
      WEFT_F64("error_rate", o->error_rate), WEFT_INT("outages", o->nwindows),
      WEFT_STR("outage_mode", o->outage_mode == UP_OUTAGE_STALL ? "stall" : "refuse"));
  int rc = serve_until_stopped(app, rt, weft_signal_ctx_ctx(sc), fd, bound);
  int signo = weft_signal_ctx_signal(sc);
  weft_log_info(app->log, NULL, "stopped", WEFT_STR("signal", signo ? strsignal(signo) : ""),
                WEFT_INT("exit", rc));
  return rc;
}

static int run(void *arg)
{
  up_app *app = arg;
  app->started = weft_now();
  /* Catch SIGINT and SIGTERM before anything is announced. */
  weft_signal_ctx *sc = weft_signal_ctx_new(NULL, NULL, 0);
  app->log = app_logger_new(true, app->o->log_level);
  up_faults_init(app);
  weft_http_router *rt = NULL;
  int rc = sc && app->log ? up_api_init(app, &rt) : -ENOMEM;
  if (rc)
    fprintf(stderr, "weft-upstream: starting: %s\n", weft_strerror(rc));
  else
    rc = run_with(app, sc, rt);
  weft_http_router_free(rt);
  weft_signal_ctx_stop(sc);
  weft_logger_release(app->log);
  return rc < 0 ? 1 : rc;
}

int main(int argc, char **argv)
{
  up_opts o = {.log_level = WEFT_LOG_INFO};
  int rc = up_parse_args(argc, argv, &o);
  if (rc != 0)
    return rc > 0 ? 0 : 2;
  up_app app = {.o = &o};
  rc = weft_main(run, &app);
  if (rc < 0) {
    fprintf(stderr, "weft-upstream: %s\n", weft_strerror(rc));
    rc = 1;
  }
  return rc;
}
