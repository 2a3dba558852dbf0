/* main.c: weft-etl's command line and life cycle: flags and ETL_* variables (the command
 * line wins), the sink, the source, the servers, and the run (etl.md).
 *
 * Exit codes: 0 once the input ended or a signal drained it; 1 for a fatal error (a
 * stage failed, --on-enrich-failure fail), the drain timeout or a second signal; 2 for
 * bad flags, an unusable source or sink, or a listen address in use, with one line on
 * stderr. */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "etl.h"

#define SEC  ((int64_t)1000000000)
#define MSEC ((int64_t)1000000)

enum {
  F_SOURCE,
  F_SINK,
  F_USERS,
  F_GEO,
  F_FX,
  F_LISTEN,
  F_DEBUG_LISTEN,
  F_ENRICH_CONCURRENCY,
  F_CHANNEL_CAPACITY,
  F_BATCH_SIZE,
  F_BATCH_WAIT,
  F_CALL_TIMEOUT,
  F_RETRIES,
  F_BREAKER_FAILURES,
  F_BREAKER_OPEN,
  F_DRAIN_TIMEOUT,
  F_ON_ENRICH_FAILURE,
  F_LOG_FORMAT,
  F_LOG_LEVEL,
  F_COUNT
};

static const char *const flag_names[F_COUNT] = {"source",
                                                "sink",
                                                "users",
                                                "geo",
                                                "fx",
                                                "listen",
                                                "debug-listen",
                                                "enrich-concurrency",
                                                "channel-capacity",
                                                "batch-size",
                                                "batch-wait",
                                                "call-timeout",
                                                "retries",
                                                "breaker-failures",
                                                "breaker-open",
                                                "drain-timeout",
                                                "on-enrich-failure",
                                                "log-format",
                                                "log-level"};

static void usage(FILE *f)
{
  fputs("usage: weft-etl --users URL --geo URL --fx URL [flags]   (each flag also as\n"
        "       ETL_<FLAG>, e.g. ETL_BATCH_SIZE; the command line wins)\n"
        "  --source SPEC            kafka://HOST:PORT[,HOST:PORT]/TOPIC?group=NAME,\n"
        "                           file:PATH (JSON lines) or - (stdin) (-)\n"
        "  --sink SPEC              sqlite:PATH or postgres://... (sqlite:etl.db)\n"
        "  --users, --geo, --fx URL base URLs of the three APIs (required)\n"
        "  --listen ADDR            /metrics and /healthz (127.0.0.1:9464)\n"
        "  --debug-listen ADDR      coroutine dump and dashboard; empty disables\n"
        "                           (127.0.0.1:6061)\n"
        "  --enrich-concurrency N   events enriched at once (64)\n"
        "  --channel-capacity N     capacity of each channel between stages (1000)\n"
        "  --batch-size N           most rows in one transaction (500)\n"
        "  --batch-wait D           longest a row waits for its batch (50ms)\n"
        "  --call-timeout D         deadline of one attempt of an API call (2s)\n"
        "  --retries N              attempts per API call (3)\n"
        "  --breaker-failures N     consecutive failed calls that open a breaker (3)\n"
        "  --breaker-open D         how long a breaker stays open before a probe (30s)\n"
        "  --drain-timeout D        longest graceful stop (30s)\n"
        "  --on-enrich-failure P    partial, dlq or fail (partial)\n"
        "  --log-format json|text   (json)\n"
        "  --log-level debug|info|warn|error   (info)\n"
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

/* An API base URL: http(s)://HOST[:PORT][/PATH], no query or fragment. */
static bool is_base_url(const char *v)
{
  const char *h = strncmp(v, "http://", 7) == 0    ? v + 7
                  : strncmp(v, "https://", 8) == 0 ? v + 8
                                                   : NULL;
  return h && *h && *h != '/' && *h != ':' && !strpbrk(v, "?# \t\r\n");
}

static const char *apply_duration(const char *v, int64_t *out, bool zero_ok)
{
  int64_t ns;
  if (parse_duration(v, &ns) || (!zero_ok && ns <= 0))
    return zero_ok ? "a duration such as 50ms" : "a positive duration such as 2s";
  *out = ns;
  return NULL;
}

static const char *apply_count(const char *v, long lo, long *out)
{
  return parse_int(v, lo, 100000000, out) ? (lo ? "an integer >= 1" : "an integer >= 0") : NULL;
}

/* Apply value v of flag f to o; NULL, or what a valid value looks like. */
static const char *apply(etl_opts *o, int f, const char *v)
{
  long n = 0;
  const char *bad;
  switch (f) {
  case F_SOURCE:
    return *v ? (o->source = v, NULL) : "kafka://..., file:PATH or -";
  case F_SINK:
    return *v ? (o->sink = v, NULL) : "sqlite:PATH or postgres://...";
  case F_USERS:
  case F_GEO:
  case F_FX:
    return is_base_url(v) ? (o->api[f - F_USERS] = v, NULL) : "an http:// or https:// URL";
  case F_LISTEN:
    return *v ? (o->listen = v, NULL) : "an address host:port";
  case F_DEBUG_LISTEN:
    return o->debug_listen = v, NULL;
  case F_ENRICH_CONCURRENCY:
    return (bad = apply_count(v, 1, &n)) ? bad : (o->enrich_concurrency = (int)n, NULL);
  case F_CHANNEL_CAPACITY:
    return (bad = apply_count(v, 1, &n)) ? bad : (o->channel_capacity = (size_t)n, NULL);
  case F_BATCH_SIZE:
    return (bad = apply_count(v, 1, &n)) ? bad : (o->batch_size = (size_t)n, NULL);
  case F_BATCH_WAIT:
    return apply_duration(v, &o->batch_wait, true);
  case F_CALL_TIMEOUT:
    return apply_duration(v, &o->call_timeout, false);
  case F_RETRIES:
    return (bad = apply_count(v, 1, &n)) ? bad : (o->retries = (int)n, NULL);
  case F_BREAKER_FAILURES:
    return (bad = apply_count(v, 1, &n)) ? bad : (o->breaker_failures = (int)n, NULL);
  case F_BREAKER_OPEN:
    return apply_duration(v, &o->breaker_open, false);
  case F_DRAIN_TIMEOUT:
    return apply_duration(v, &o->drain_timeout, false);
  case F_ON_ENRICH_FAILURE:
    if (!strcmp(v, "partial") || !strcmp(v, "dlq") || !strcmp(v, "fail"))
      return o->on_failure = !strcmp(v, "partial") ? ETL_PARTIAL
                             : !strcmp(v, "dlq")   ? ETL_DLQ
                                                   : ETL_FAIL,
             NULL;
    return "partial, dlq or fail";
  case F_LOG_FORMAT:
    if (strcmp(v, "json") && strcmp(v, "text"))
      return "json or text";
    return o->log_json = strcmp(v, "json") == 0, NULL;
  case F_LOG_LEVEL:
    return parse_level(v, &o->log_level) ? "debug, info, warn or error" : NULL;
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

/* Read the ETL_<FLAG> variables into vals; from[f] names the variable (in env). */
static void read_env(const char **vals, const char **from, char env[][64])
{
  for (int f = 0; f < F_COUNT; f++) {
    snprintf(env[f], 64, "ETL_");
    for (const char *p = flag_names[f]; *p; p++)
      env[f][strlen(env[f])] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    if ((vals[f] = getenv(env[f])))
      from[f] = env[f];
  }
}

/* The environment first, then argv over it. 0, 1 for --help, -1 after printing. */
static int parse_args(int argc, char **argv, etl_opts *o)
{
  const char *vals[F_COUNT] = {0}, *from[F_COUNT] = {0};
  char env[F_COUNT][64] = {{0}};
  read_env(vals, from, env);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help") || !strcmp(a, "-help"))
      return 1;
    if (a[0] != '-' || a[1] == '\0')
      return fprintf(stderr, "weft-etl: unexpected argument %s\n", a), -1;
    a += 1 + (a[1] == '-');
    const char *eq = strchr(a, '=');
    int f = flag_index(a, eq ? (size_t)(eq - a) : strlen(a));
    if (f < 0)
      return fprintf(stderr, "weft-etl: unknown flag %s\n", argv[i]), -1;
    if (!eq && i + 1 >= argc)
      return fprintf(stderr, "weft-etl: flag --%s needs a value\n", flag_names[f]), -1;
    vals[f] = eq ? eq + 1 : argv[++i];
    from[f] = "the command line";
  }
  for (int f = 0; f < F_COUNT; f++) {
    const char *want = vals[f] ? apply(o, f, vals[f]) : NULL;
    if (want)
      return fprintf(stderr, "weft-etl: invalid --%s \"%s\" (from %s): want %s\n",
                     flag_names[f], vals[f], from[f], want),
             -1;
  }
  for (int a = 0; a < ETL_API_COUNT; a++)
    if (!o->api[a])
      return fprintf(stderr, "weft-etl: --%s is required\n", flag_names[F_USERS + a]), -1;
  return 0;
}

/* ---- the /metrics and /healthz server ---- */

static void serve_http(weft_http_response *w, weft_http_request *r, void *arg)
{
  etl_app *app = arg;
  const char *path = weft_http_request_path(r);
  if (strcmp(path, "/metrics") == 0) {
    size_t len;
    char *text = etl_metrics_text(app, &len);
    if (!text)
      return weft_http_response_error(w, 500, NULL), (void)0;
    weft_http_response_send(w, 200, WEFT_METRICS_CONTENT_TYPE, text, len);
    free(text);
  } else if (strcmp(path, "/healthz") == 0) {
    bool draining = atomic_load_explicit(&app->draining, memory_order_relaxed);
    const char *body = draining ? "{\"status\":\"draining\"}\n" : "{\"status\":\"ok\"}\n";
    weft_http_response_send(w, 200, "application/json", body, strlen(body));
  } else {
    weft_http_response_error(w, 404, NULL);
  }
}

typedef struct http_serve {
  weft_http_server *srv;
  int fd;
  weft_wg *serving;
} http_serve;

static void serve_main(void *arg)
{
  http_serve *hs = arg;
  weft_http_server_serve(hs->srv, hs->fd);
  weft_wg_done(hs->serving);
}

static weft_logger *make_logger(const etl_opts *o)
{
  weft_log_options lo = {.level = o->log_level};
  weft_log_handler *h =
      o->log_json ? weft_log_json_handler_new(&lo) : weft_log_text_handler_new(&lo);
  weft_logger *l = weft_logger_new(h);
  weft_log_handler_release(h);
  return l;
}

/* Open the sink, the source and the listeners. Returns 0 or the exit code (the reason
 * printed on one line). */
static int setup(etl_app *app, weft_debug_server **dbg, int *fd)
{
  const etl_opts *o = app->o;
  char err[512] = "";
  if (etl_metrics_init(app) || !(app->enricher = etl_enricher_new(app)))
    return fputs("weft-etl: out of memory\n", stderr), 1;
  if (etl_sink_open(o->sink, &app->sink, err, sizeof err))
    return fprintf(stderr, "weft-etl: %s\n", err), 2;
  if (etl_source_open(o->source, app->log, &app->source, err, sizeof err))
    return fprintf(stderr, "weft-etl: %s\n", err), 2;
  if ((*fd = weft_listen("tcp", o->listen, 0)) < 0)
    return fprintf(stderr, "weft-etl: --listen %s: %s\n", o->listen, weft_strerror(*fd)), 2;
  weft_debug_server_options dopts = {.addr = o->debug_listen, .registry = app->reg};
  int rc;
  if (*o->debug_listen && (rc = weft_debug_server_start(&dopts, dbg)))
    return fprintf(stderr, "weft-etl: --debug-listen %s: %s\n", o->debug_listen,
                   weft_strerror(rc)),
           2;
  return 0;
}

static void teardown(etl_app *app, weft_debug_server *dbg, int fd)
{
  if (dbg)
    weft_debug_server_stop(dbg, weft_now() + SEC);
  if (fd >= 0)
    close(fd);
  if (app->source)
    app->source->ops->close(app->source, NULL, false);
  if (app->sink)
    app->sink->ops->close(app->sink);
  etl_metrics_fini(app);
  etl_enricher_free(app->enricher);
}

/* Serve /metrics while the pipeline runs. Returns etl_run's exit code. */
static int run_serving(etl_app *app, weft_signal_ctx *sc, int fd, weft_debug_server *dbg)
{
  weft_http_server_config cfg = {.handler = serve_http, .handler_arg = app};
  weft_http_server *srv = weft_http_server_new(&cfg);
  if (!srv)
    return 1;
  weft_wg serving = WEFT_WG_INIT;
  http_serve hs = {srv, fd, &serving};
  weft_wg_add(&serving, 1);
  weft_go_named(serve_main, &hs, "etl metrics serve");
  weft_log_info(app->log, NULL, "started", WEFT_STR("source", app->o->source),
                WEFT_STR("source_kind", app->source->ops->name),
                WEFT_STR("sink", app->sink->ops->name),
                WEFT_INT("listen_port", weft_local_port(fd)),
                WEFT_STR("debug_addr", dbg ? weft_debug_server_addr(dbg) : ""));
  int rc = etl_run(app, sc);
  weft_http_server_stop_accepting(srv);
  weft_wg_wait(&serving);
  weft_http_server_shutdown(srv, weft_now() + SEC);
  weft_http_server_free(srv);
  weft_log_info(app->log, NULL, "stopped", WEFT_INT("exit", rc));
  return rc;
}

static int run(void *arg)
{
  etl_app *app = arg;
  weft_signal_ctx *sc = weft_signal_ctx_new(NULL, NULL, 0);
  app->log = make_logger(app->o);
  app->reg = weft_metrics_default();
  if (!sc || !app->log || !app->reg) {
    fputs("weft-etl: out of memory\n", stderr);
    weft_signal_ctx_stop(sc);
    weft_logger_release(app->log);
    return 1;
  }
  weft_debug_server *dbg = NULL;
  int fd = -1;
  int rc = setup(app, &dbg, &fd);
  if (rc == 0)
    rc = run_serving(app, sc, fd, dbg);
  teardown(app, dbg, fd);
  weft_signal_ctx_stop(sc);
  weft_logger_release(app->log);
  return rc;
}

int main(int argc, char **argv)
{
  etl_opts o = {.source = "-",
                .sink = "sqlite:etl.db",
                .listen = "127.0.0.1:9464",
                .debug_listen = "127.0.0.1:6061",
                .enrich_concurrency = 64,
                .channel_capacity = 1000,
                .batch_size = 500,
                .batch_wait = 50 * MSEC,
                .call_timeout = 2 * SEC,
                .retries = 3,
                .breaker_failures = 3,
                .breaker_open = 30 * SEC,
                .drain_timeout = 30 * SEC,
                .on_failure = ETL_PARTIAL,
                .log_json = true,
                .log_level = WEFT_LOG_INFO};
  int rc = parse_args(argc, argv, &o);
  if (rc != 0) {
    if (rc > 0)
      usage(stdout);
    return rc > 0 ? 0 : 2;
  }
  etl_app app = {.o = &o, .source_mu = PTHREAD_MUTEX_INITIALIZER};
  rc = weft_main(run, &app);
  if (rc < 0) {
    fprintf(stderr, "weft-etl: %s\n", weft_strerror(rc));
    rc = 1;
  }
  return rc;
}
