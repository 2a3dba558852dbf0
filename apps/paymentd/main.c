/* main.c: paymentd's command line and life cycle: flags and PAYMENTD_* variables, the
 * store, the pool, the servers, and the graceful shutdown (paymentd.md, "Shutdown").
 *
 * Exit codes: 0 after a graceful shutdown, 1 when it ran out of --shutdown-timeout or a
 * second signal cut it short, 2 for invalid flags or an unusable store or address.
 *
 * Shutdown, on the first SIGINT or SIGTERM:
 *   shutting_down = 1  new requests on open connections get 503 + Connection: close
 *   pool closed        nothing new is queued; queued jobs still run
 *   stop accepting     no new connections; open ones stay, for their 503s
 *   pool drained       every queued job has run (its handler answered, or gave up at 504)
 *   server shutdown    idle connections closed; requests in flight finish
 *   store closed       the last batch committed, the database closed
 * all under one deadline. A second signal, or the deadline, exits 1 at once: nothing is
 * lost that was answered 200, since a 200 is sent only after its commit. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/flags.h"
#include "common/logger.h"
#include "common/values.h"
#include "paymentd.h"

#define SEC          ((int64_t)1000000000)
#define PG_CONNS_MAX 16 /* PostgreSQL connections per process at most */

static void usage(FILE *f)
{
  fputs("usage: paymentd [flags]   (each flag also as PAYMENTD_<FLAG>; flags win)\n"
        "  --listen ADDR            API, /metrics and /healthz (127.0.0.1:8080)\n"
        "  --debug-listen ADDR      debug endpoints; empty disables (127.0.0.1:6060)\n"
        "  --workers N              worker coroutines (scheduler threads)\n"
        "  --queue N                capacity of the job queue (100)\n"
        "  --store SPEC             sqlite:PATH, memory:, postgres://.. (sqlite:paymentd.db)\n"
        "  --work-ms N              simulated processing latency (0)\n"
        "  --request-timeout D      longest wait for a result (5s)\n"
        "  --shutdown-timeout D     longest graceful shutdown (30s)\n"
        "  --log-format json|text   (json)\n"
        "  --log-level debug|info|warn|error   (info)\n"
        "  --auth-tokens FILE       bearer tokens, one per line, for /v1/\n"
        "durations: 500ms, 5s, 1m30s; a bare number is seconds\n",
        f);
}

static const char *const log_formats[] = {"text", "json", NULL}; /* index: log_json */

static const char *parse_level(const char *v, void *level)
{
  return app_parse_log_level(v, level) ? "debug, info, warn or error" : NULL;
}

/* The flags, in the order their values are checked. */
static int parse_args(int argc, char **argv, pay_opts *o)
{
  app_flag table[] = {
      APP_STRING("listen", o->listen, 1, "an address host:port"),
      APP_STRING("debug-listen", o->debug_listen, 0, NULL),
      APP_INT("workers", o->workers, 1, 1000000, "an integer >= 1"),
      APP_INT("queue", o->queue, 1, 100000000, "an integer >= 1"),
      APP_STRING("store", o->store, 1, "sqlite:PATH, memory: or postgres://..."),
      APP_INT("work-ms", o->work_ms, 0, 3600000, "an integer >= 0"),
      APP_DURATION("request-timeout", o->request_timeout, 1, "a positive duration such as 5s"),
      APP_DURATION("shutdown-timeout", o->shutdown_timeout, 0, "a duration such as 30s"),
      APP_CHOICE("log-format", o->log_json, log_formats, "json or text"),
      APP_CUSTOM("log-level", &o->log_level, parse_level, NULL),
      APP_STRING("auth-tokens", o->auth_tokens, 1, "a file name"),
  };
  app_flags f = {
      .flags = table, .nflags = sizeof table / sizeof *table, .env_prefix = "PAYMENTD_"};
  app_flag_error e;
  char line[256];
  int rc = app_flags_parse(&f, argc, argv, &e);
  if (rc >= 0)
    return rc;
  if (e.problem == APP_FLAG_UNKNOWN) /* echoes the dashes as written */
    fprintf(stderr, "paymentd: unknown flag -%s%s\n", e.arg[1] == '-' ? "-" : "", e.name);
  else if (e.problem == APP_FLAG_INVALID)
    fprintf(stderr, "paymentd: invalid --%s \"%s\" (%s): want %s\n", e.name, e.value,
            *e.env ? "environment" : "flag", e.want);
  else
    fprintf(stderr, "paymentd: %s\n", app_flags_error_line(&e, line, sizeof line));
  return -1;
}

int pay_store_open(const char *spec, const pay_store_options *o, pay_store **out, char *err,
                   size_t errlen)
{
  if (strncmp(spec, "sqlite:", 7) == 0 && spec[7])
    return pay_store_sqlite_open(spec + 7, out, err, errlen);
  if (strcmp(spec, "memory:") == 0) {
    int rc = pay_store_memory_open(out);
    if (rc)
      snprintf(err, errlen, "memory store: %s", weft_strerror(rc));
    return rc;
  }
  if (strncmp(spec, "postgres://", 11) == 0 || strncmp(spec, "postgresql://", 13) == 0) {
#ifdef PAYMENTD_HAVE_PG
    return pay_store_pg_open(spec, o, out, err, errlen);
#else
    (void)o;
    snprintf(err, errlen, "--store %s: PostgreSQL is not supported by this build", spec);
    return -ENOTSUP;
#endif
  }
  snprintf(err, errlen, "invalid --store \"%s\": want sqlite:PATH, memory: or postgres://...",
           spec);
  return -EINVAL;
}

static void free_tokens(pay_app *app)
{
  for (size_t i = 0; i < app->ntokens; i++)
    free(app->tokens[i]);
  free(app->tokens);
}

/* What the shutdown coroutine shares with run. */
typedef struct pay_shutdown {
  pay_app *app;
  weft_http_server *srv;
  weft_wg *serving; /* done when weft_http_server_serve has returned */
  int *listen_fd;   /* closed (and set to -1) once serve has returned */
  int64_t deadline;
  weft_chan *done; /* closed when the shutdown has finished; rc is then set */
  int rc;          /* 0 graceful, 1 something was cut or failed */
} pay_shutdown;

typedef struct pay_serve {
  weft_http_server *srv;
  int fd;
  weft_wg *serving;
  weft_logger *log;
} pay_serve;

static void serve_main(void *arg)
{
  pay_serve *ps = arg;
  int rc = weft_http_server_serve(ps->srv, ps->fd);
  if (rc < 0)
    weft_log_error(ps->log, NULL, "serving stopped", WEFT_ERRNO("err", rc));
  weft_wg_done(ps->serving);
}

static void shutdown_main(void *arg)
{
  pay_shutdown *s = arg;
  pay_app *app = s->app;
  atomic_store_explicit(&app->shutting_down, 1, memory_order_relaxed);
  weft_pool_close(app->pool); /* queued jobs still run; new ones get 503 */
  /* Stop accepting, but keep open connections until the queue has drained, so a request
   * arriving on one meanwhile is answered 503 + Connection: close, not cut. */
  weft_http_server_stop_accepting(s->srv);
  weft_wg_wait(s->serving);
  /* Close the listener too, or the kernel would go on completing handshakes into its
   * backlog: clients connecting now get a refusal (a balancer retries elsewhere) rather
   * than a connection cut unanswered at exit. */
  weft_close(*s->listen_fd);
  *s->listen_fd = -1;
  weft_ctx *drain = weft_ctx_with_deadline(NULL, s->deadline);
  if (drain) {
    weft_pool_wait(app->pool, drain);
    weft_ctx_release(drain);
  }
  int rc = weft_http_server_shutdown(s->srv, s->deadline);
  long abandoned = weft_pool_shutdown(app->pool, s->deadline);
  int src = app->store->ops->close(app->store);
  app->store = NULL;
  if (rc || abandoned || src)
    weft_log_error(app->log, NULL, "shutdown incomplete", WEFT_ERRNO("server", rc),
                   WEFT_INT("abandoned", abandoned), WEFT_ERRNO("store", src));
  s->rc = rc || abandoned || src ? 1 : 0;
  weft_chan_close(s->done);
}

/* Wait for the shutdown under its deadline; a second signal or the deadline ends the
 * process at once with 1 (every 200 sent is already committed). */
static int await_shutdown(pay_app *app, weft_signal_ctx *sc, pay_shutdown *s)
{
  weft_select_case cases[2] = {{.ch = s->done, .dir = WEFT_SELECT_RECV},
                               {.ch = weft_signal_ctx_again(sc), .dir = WEFT_SELECT_RECV}};
  int which = weft_select(cases, 2, 0, s->deadline);
  if (which == 0)
    return s->rc;
  weft_log_error(app->log, NULL,
                 which == 1 ? "second signal: exiting now" : "shutdown timed out: exiting now");
  _exit(1);
}

/* Listen and announce the address actually bound ("127.0.0.1:0" gets its port). */
static int listen_on(pay_app *app, const char *addr, int *fd, char *bound, size_t len)
{
  *fd = weft_listen("tcp", addr, 0);
  if (*fd < 0)
    return *fd;
  const char *colon = strrchr(addr, ':');
  snprintf(bound, len, "%.*s:%d", colon ? (int)(colon - addr) : 0, addr, weft_local_port(*fd));
  (void)app;
  return 0;
}

/* Everything that needs the runtime. Returns the exit code. */
static int setup(pay_app *app, weft_debug_server **dbg, int *fd, char *bound, size_t len)
{
  const pay_opts *o = app->o;
  char err[512] = "";
  /* A claim's lease outlasts any job by far: a job runs --work-ms plus its store
   * statements, and its handler waits --request-timeout at most. */
  int64_t job_max = 2 * (o->work_ms * 1000000 + o->request_timeout);
  pay_store_options so = {.conns = app->workers < PG_CONNS_MAX ? app->workers : PG_CONNS_MAX,
                          .lease = job_max > 60 * SEC ? job_max : 60 * SEC};
  int rc = pay_store_open(o->store, &so, &app->store, err, sizeof err);
  if (rc) {
    fprintf(stderr, "paymentd: %s\n", err);
    return 2;
  }
  if ((rc = pay_metrics_init(app)) || (rc = pay_pool_start(app)) || (rc = pay_api_init(app))) {
    fprintf(stderr, "paymentd: starting: %s\n", weft_strerror(rc));
    return 1;
  }
  if ((rc = listen_on(app, o->listen, fd, bound, len))) {
    fprintf(stderr, "paymentd: --listen %s: %s\n", o->listen, weft_strerror(rc));
    return 2;
  }
  weft_debug_server_options dopts = {.addr = o->debug_listen, .registry = app->reg};
  if (*o->debug_listen && (rc = weft_debug_server_start(&dopts, dbg))) {
    fprintf(stderr, "paymentd: --debug-listen %s: %s\n", o->debug_listen, weft_strerror(rc));
    return 2;
  }
  return 0;
}

static void teardown(pay_app *app, weft_debug_server *dbg, int fd)
{
  if (dbg)
    weft_debug_server_stop(dbg, weft_now() + SEC);
  if (fd >= 0)
    weft_close(fd);
  if (app->pool) {
    weft_pool_shutdown(app->pool, weft_now());
    weft_pool_free(app->pool);
  }
  if (app->store)
    app->store->ops->close(app->store);
  pay_metrics_fini(app);
  pay_api_free();
}

static int serve_until_signal(pay_app *app, weft_signal_ctx *sc, int *fd)
{
  weft_http_server_config cfg = {.handler = pay_api_serve, .handler_arg = app};
  weft_http_server *srv = weft_http_server_new(&cfg);
  weft_chan *done = weft_chan_new(1, 0);
  if (!srv || !done) {
    weft_http_server_free(srv);
    weft_chan_release(done);
    return 1;
  }
  weft_wg serving = WEFT_WG_INIT;
  pay_serve ps = {srv, *fd, &serving, app->log};
  weft_wg_add(&serving, 1);
  weft_go_named(serve_main, &ps, "paymentd serve");
  weft_ctx_wait(weft_signal_ctx_ctx(sc), WEFT_NO_DEADLINE);
  int signo = weft_signal_ctx_signal(sc);
  weft_log_info(app->log, NULL, "shutting down",
                WEFT_STR("signal", signo ? strsignal(signo) : "?"),
                WEFT_DUR("timeout", app->o->shutdown_timeout));
  pay_shutdown s = {app, srv, &serving, fd, weft_now() + app->o->shutdown_timeout, done, 1};
  weft_go_named(shutdown_main, &s, "paymentd shutdown");
  int rc = await_shutdown(app, sc, &s);
  weft_http_server_free(srv);
  weft_chan_release(done);
  weft_log_info(app->log, NULL, "stopped", WEFT_INT("exit", rc));
  return rc;
}

static int run(void *arg)
{
  pay_app *app = arg;
  /* Catch SIGINT and SIGTERM before anything is announced. */
  weft_signal_ctx *sc = weft_signal_ctx_new(NULL, NULL, 0);
  app->log = app_logger_new(app->o->log_json, app->o->log_level);
  app->reg = weft_metrics_default();
  app->workers = app->o->workers ? app->o->workers : weft_procs();
  pay_inflight_init(&app->inflight);
  if (!sc || !app->log || !app->reg) {
    fputs("paymentd: out of memory\n", stderr);
    weft_signal_ctx_stop(sc);
    weft_logger_release(app->log);
    return 1;
  }
  weft_debug_server *dbg = NULL;
  int fd = -1;
  char bound[300];
  int rc = setup(app, &dbg, &fd, bound, sizeof bound);
  if (rc == 0) {
    weft_log_info(app->log, NULL, "listening", WEFT_STR("addr", bound),
                  WEFT_STR("debug_addr", dbg ? weft_debug_server_addr(dbg) : ""),
                  WEFT_STR("store", app->store->ops->name), WEFT_INT("workers", app->workers),
                  WEFT_INT("queue", app->o->queue));
    rc = serve_until_signal(app, sc, &fd);
  }
  teardown(app, dbg, fd);
  weft_signal_ctx_stop(sc);
  weft_logger_release(app->log);
  return rc;
}

int main(int argc, char **argv)
{
  pay_opts o = {.listen = "127.0.0.1:8080",
                .debug_listen = "127.0.0.1:6060",
                .queue = 100,
                .store = "sqlite:paymentd.db",
                .request_timeout = 5 * SEC,
                .shutdown_timeout = 30 * SEC,
                .log_json = true,
                .log_level = WEFT_LOG_INFO};
  int rc = parse_args(argc, argv, &o);
  if (rc != 0) {
    if (rc > 0)
      usage(stdout);
    return rc > 0 ? 0 : 2;
  }
  pay_app app = {.o = &o};
  char err[512];
  if (o.auth_tokens && pay_load_tokens(&app, o.auth_tokens, err, sizeof err) < 0) {
    fprintf(stderr, "paymentd: %s\n", err);
    free_tokens(&app);
    return 2;
  }
  rc = weft_main(run, &app);
  if (rc < 0) {
    fprintf(stderr, "paymentd: %s\n", weft_strerror(rc));
    rc = 1;
  }
  free_tokens(&app);
  return rc;
}
