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
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "paymentd.h"

#define SEC          ((int64_t)1000000000)
#define PG_CONNS_MAX 16 /* PostgreSQL connections per process at most */

enum {
  F_LISTEN,
  F_DEBUG_LISTEN,
  F_WORKERS,
  F_QUEUE,
  F_STORE,
  F_WORK_MS,
  F_REQUEST_TIMEOUT,
  F_SHUTDOWN_TIMEOUT,
  F_LOG_FORMAT,
  F_LOG_LEVEL,
  F_AUTH_TOKENS,
  F_COUNT
};

static const char *const flag_names[F_COUNT] = {
    "listen",          "debug-listen",     "workers",    "queue",     "store",      "work-ms",
    "request-timeout", "shutdown-timeout", "log-format", "log-level", "auth-tokens"};

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

/* Go's time.ParseDuration, plus a bare number meaning seconds. */
static int parse_duration(const char *s, int64_t *ns)
{
  static const struct {
    const char *unit;
    double mult;
  } units[] = {{"ns", 1}, {"us", 1e3}, {"ms", 1e6}, {"s", 1e9}, {"m", 60e9}, {"h", 3600e9}};
  double total = 0;
  if (!*s)
    return -EINVAL;
  while (*s) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || v < 0 || !isfinite(v) || !(isdigit((unsigned char)*s) || *s == '.'))
      return -EINVAL;
    size_t un = strspn(end, "nsumh");
    double mult = un == 0 && !*end && total == 0 ? 1e9 : -1;
    for (size_t i = 0; i < sizeof units / sizeof *units; i++)
      if (un == strlen(units[i].unit) && strncmp(end, units[i].unit, un) == 0)
        mult = units[i].mult;
    if (mult < 0)
      return -EINVAL;
    total += v * mult;
    s = end + un;
  }
  if (total > 9e18)
    return -EINVAL;
  *ns = (int64_t)total;
  return 0;
}

static int parse_int(const char *s, long lo, long hi, long *out)
{
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (!*s || *end || errno || v < lo || v > hi || isspace((unsigned char)*s))
    return -EINVAL;
  *out = v;
  return 0;
}

static int parse_level(const char *s, int *level)
{
  static const struct {
    const char *name;
    int level;
  } levels[] = {{"debug", WEFT_LOG_DEBUG},
                {"info", WEFT_LOG_INFO},
                {"warn", WEFT_LOG_WARN},
                {"warning", WEFT_LOG_WARN},
                {"error", WEFT_LOG_ERROR}};
  for (size_t i = 0; i < sizeof levels / sizeof *levels; i++)
    if (strcasecmp(s, levels[i].name) == 0)
      return *level = levels[i].level, 0;
  return -EINVAL;
}

/* Apply value v of flag f to o; NULL, or what a valid value looks like. */
static const char *apply(pay_opts *o, int f, const char *v)
{
  long n;
  switch (f) {
  case F_LISTEN:
    return *v ? (o->listen = v, NULL) : "an address host:port";
  case F_DEBUG_LISTEN:
    return o->debug_listen = v, NULL;
  case F_WORKERS:
    return parse_int(v, 1, 1000000, &n) ? "an integer >= 1" : (o->workers = (int)n, NULL);
  case F_QUEUE:
    return parse_int(v, 1, 100000000, &n) ? "an integer >= 1" : (o->queue = n, NULL);
  case F_STORE:
    return *v ? (o->store = v, NULL) : "sqlite:PATH, memory: or postgres://...";
  case F_WORK_MS:
    return parse_int(v, 0, 3600000, &n) ? "an integer >= 0" : (o->work_ms = n, NULL);
  case F_REQUEST_TIMEOUT:
    return parse_duration(v, &o->request_timeout) || o->request_timeout <= 0
               ? "a positive duration such as 5s"
               : NULL;
  case F_SHUTDOWN_TIMEOUT:
    return parse_duration(v, &o->shutdown_timeout) ? "a duration such as 30s" : NULL;
  case F_LOG_FORMAT:
    if (strcmp(v, "json") && strcmp(v, "text"))
      return "json or text";
    return o->log_json = strcmp(v, "json") == 0, NULL;
  case F_LOG_LEVEL:
    return parse_level(v, &o->log_level) ? "debug, info, warn or error" : NULL;
  case F_AUTH_TOKENS:
    return *v ? (o->auth_tokens = v, NULL) : "a file name";
  }
  return "?";
}

static int flag_index(const char *name, size_t len)
{
  for (int f = 0; f < F_COUNT; f++)
    if (strlen(flag_names[f]) == len && strncmp(flag_names[f], name, len) == 0)
      return f;
  return -1;
}

/* The environment first, then argv over it. 0, 1 for --help, -1 after printing. */
static int parse_args(int argc, char **argv, pay_opts *o)
{
  const char *vals[F_COUNT] = {0}, *from[F_COUNT] = {0};
  for (int f = 0; f < F_COUNT; f++) {
    char env[64] = "PAYMENTD_";
    for (const char *p = flag_names[f]; *p; p++)
      env[strlen(env)] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    if ((vals[f] = getenv(env)))
      from[f] = "environment";
  }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help") || !strcmp(a, "-help"))
      return 1;
    if (a[0] != '-' || a[1] == '\0') {
      fprintf(stderr, "paymentd: unexpected argument %s\n", a);
      return -1;
    }
    a += 1 + (a[1] == '-');
    const char *eq = strchr(a, '=');
    int f = flag_index(a, eq ? (size_t)(eq - a) : strlen(a));
    if (f < 0) {
      fprintf(stderr, "paymentd: unknown flag -%s%.*s\n", argv[i][1] == '-' ? "-" : "",
              (int)(eq ? eq - a : (long)strlen(a)), a);
      return -1;
    }
    if (!eq && i + 1 >= argc) {
      fprintf(stderr, "paymentd: flag --%s needs a value\n", flag_names[f]);
      return -1;
    }
    vals[f] = eq ? eq + 1 : argv[++i];
    from[f] = "flag";
  }
  for (int f = 0; f < F_COUNT; f++) {
    const char *want = vals[f] ? apply(o, f, vals[f]) : NULL;
    if (want) {
      fprintf(stderr, "paymentd: invalid --%s \"%s\" (%s): want %s\n", flag_names[f], vals[f],
              from[f], want);
      return -1;
    }
  }
  return 0;
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

static weft_logger *make_logger(const pay_opts *o)
{
  weft_log_options lo = {.level = o->log_level};
  weft_log_handler *h =
      o->log_json ? weft_log_json_handler_new(&lo) : weft_log_text_handler_new(&lo);
  weft_logger *l = weft_logger_new(h);
  weft_log_handler_release(h);
  return l;
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
  app->log = make_logger(app->o);
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
