/* main.c: weft-etl's command line and life cycle: flags and ETL_* variables (the command
 * line wins), the sink, the source, the servers, and the run (etl.md).
 *
 * Exit codes: 0 once the input ended or a signal drained it; 1 for a fatal error (a
 * stage failed, --on-enrich-failure fail), the drain timeout or a second signal; 2 for
 * bad flags, an unusable source or sink, or a listen address in use, with one line on
 * stderr. */
#define _GNU_SOURCE
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/flags.h"
#include "common/logger.h"
#include "common/values.h"
#include "etl.h"

#define SEC  ((int64_t)1000000000)
#define MSEC ((int64_t)1000000)

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

/* An API base URL: http(s)://HOST[:PORT][/PATH], no query or fragment. */
static const char *parse_base_url(const char *v, void *out)
{
  const char *h = strncmp(v, "http://", 7) == 0    ? v + 7
                  : strncmp(v, "https://", 8) == 0 ? v + 8
                                                   : NULL;
  if (!h || !*h || *h == '/' || *h == ':' || strpbrk(v, "?# \t\r\n"))
    return "an http:// or https:// URL";
  return *(const char **)out = v, NULL;
}

static const char *parse_level(const char *v, void *level)
{
  return app_parse_log_level(v, level) ? "debug, info, warn or error" : NULL;
}

static const char *const policies[] = {"partial", "dlq", "fail", NULL}; /* etl_policy */
static const char *const log_formats[] = {"text", "json", NULL};        /* index: log_json */

#define COUNT(name, lvalue) APP_INT(name, lvalue, 1, 100000000, "an integer >= 1")

/* The flags, in the order their values are checked; then the required ones. */
static int parse_args(int argc, char **argv, etl_opts *o)
{
  const char *positive = "a positive duration such as 2s";
  app_flag table[] = {
      APP_STRING("source", o->source, 1, "kafka://..., file:PATH or -"),
      APP_STRING("sink", o->sink, 1, "sqlite:PATH or postgres://..."),
      APP_CUSTOM("users", &o->api[ETL_API_USERS], parse_base_url, NULL),
      APP_CUSTOM("geo", &o->api[ETL_API_GEO], parse_base_url, NULL),
      APP_CUSTOM("fx", &o->api[ETL_API_FX], parse_base_url, NULL),
      APP_STRING("listen", o->listen, 1, "an address host:port"),
      APP_STRING("debug-listen", o->debug_listen, 0, NULL),
      COUNT("enrich-concurrency", o->enrich_concurrency),
      COUNT("channel-capacity", o->channel_capacity),
      COUNT("batch-size", o->batch_size),
      APP_DURATION("batch-wait", o->batch_wait, 0, "a duration such as 50ms"),
      APP_DURATION("call-timeout", o->call_timeout, 1, positive),
      COUNT("retries", o->retries),
      COUNT("breaker-failures", o->breaker_failures),
      APP_DURATION("breaker-open", o->breaker_open, 1, positive),
      APP_DURATION("drain-timeout", o->drain_timeout, 1, positive),
      APP_CHOICE("on-enrich-failure", o->on_failure, policies, "partial, dlq or fail"),
      APP_CHOICE("log-format", o->log_json, log_formats, "json or text"),
      APP_CUSTOM("log-level", &o->log_level, parse_level, NULL),
  };
  app_flags f = {.flags = table, .nflags = sizeof table / sizeof *table, .env_prefix = "ETL_"};
  app_flag_error e;
  char line[256];
  int rc = app_flags_parse(&f, argc, argv, &e);
  if (rc > 0)
    return rc;
  if (rc < 0 && e.problem == APP_FLAG_UNKNOWN)
    return fprintf(stderr, "weft-etl: unknown flag %s\n", e.arg), -1;
  if (rc < 0 && e.problem == APP_FLAG_INVALID)
    return fprintf(stderr, "weft-etl: invalid --%s \"%s\" (from %s): want %s\n", e.name,
                   e.value, *e.env ? e.env : "the command line", e.want),
           -1;
  if (rc < 0)
    return fprintf(stderr, "weft-etl: %s\n", app_flags_error_line(&e, line, sizeof line)), -1;
  for (int a = 0; a < ETL_API_COUNT; a++)
    if (!o->api[a])
      return fprintf(stderr, "weft-etl: --%s is required\n", etl_api_names[a]), -1;
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
  app->log = app_logger_new(app->o->log_json, app->o->log_level);
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
