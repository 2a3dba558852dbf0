/* main.c: weft-load's command line: flags into a load_config, the run, the reports, and
 * the exit code (0 done, 1 target unreachable or a report could not be written, 2 bad
 * flags, with one line on stderr). See README.md. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/values.h"
#include "load.h"

static void usage(FILE *f)
{
  fputs("usage: weft-load [flags] URL\n"
        "  --rate R           open loop: R requests per second (\"500\" or \"500/s\");\n"
        "                     without it, closed loop: each connection sends back to back\n"
        "  --connections C    closed loop: connections; open loop: at the start (64)\n"
        "  --max-connections M  open loop: the pool grows to this (max(C, 1024))\n"
        "  --duration D       run this long (10s unless --requests is given)\n"
        "  --requests N       send N requests (with --duration: whichever ends first)\n"
        "  --method M         (GET, or POST with a body)\n"
        "  --header 'K: V'    add a request header (repeatable)\n"
        "  --body TEMPLATE    request body; --body-file F reads it from a file\n"
        "  --timeout D        per request, connect to last byte (10s)\n"
        "  --json FILE        the report as JSON (- for stdout; the text goes to stderr)\n"
        "  --svg FILE         latency and throughput over time\n"
        "  --progress D       a progress line on stderr this often (1s); --quiet: none\n"
        "  --client lean|weft http:// goes through weft-load's lean connection (lean) or\n"
        "                     weft's HTTP client (weft); https:// always uses weft's\n"
        "templates (URL and body): {{id}} unique per request, {{seq}} 0, 1, ...,\n"
        "  {{rand:N}} a random integer in [0, N); durations: 500ms, 10s, 2m, 1h30m\n",
        f);
}

__attribute__((format(printf, 1, 2))) static int bad_flags(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  fputs("weft-load: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputs(" (see --help)\n", stderr);
  va_end(ap);
  return 2;
}

/* A duration (common/values.h) into ns > 0. */
static int parse_duration(const char *s, int64_t *ns)
{
  int64_t v;
  if (app_parse_duration(s, &v) || v < 1)
    return -EINVAL;
  return *ns = v, 0;
}

static int parse_rate(const char *s, double *rate)
{
  char *end;
  double v = strtod(s, &end);
  if (end == s || (*end && strcmp(end, "/s") != 0) || !(v > 0) || v > 1e8)
    return -EINVAL;
  *rate = v;
  return 0;
}

/* "Name: value" into the header list (copies owned by the config). */
static int add_header(struct load_config *cfg, const char *h)
{
  const char *colon = strchr(h, ':');
  if (!colon || colon == h || cfg->nheaders == LOAD_MAX_HEADERS)
    return -EINVAL;
  const char *v = colon + 1;
  while (*v == ' ' || *v == '\t')
    v++;
  cfg->headers[2 * cfg->nheaders] = strndup(h, (size_t)(colon - h));
  cfg->headers[2 * cfg->nheaders + 1] = strdup(v);
  cfg->nheaders++;
  return 0;
}

static char *read_file(const char *path, size_t *len)
{
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  char *data = NULL;
  size_t cap = 0;
  *len = 0;
  for (;;) {
    if (*len + 65536 > cap && !(data = realloc(data, cap = cap * 2 + 65536)))
      break;
    size_t n = fread(data + *len, 1, cap - *len, f);
    *len += n;
    if (n == 0)
      break;
  }
  fclose(f);
  return data;
}

enum {
  OPT_RATE = 256,
  OPT_CONNS,
  OPT_MAX_CONNS,
  OPT_DURATION,
  OPT_REQUESTS,
  OPT_METHOD,
  OPT_HEADER,
  OPT_BODY,
  OPT_BODY_FILE,
  OPT_TIMEOUT,
  OPT_JSON,
  OPT_SVG,
  OPT_PROGRESS,
  OPT_QUIET,
  OPT_HELP,
  OPT_CLIENT
};

static const struct option options[] = {
    {"rate", required_argument, NULL, OPT_RATE},
    {"connections", required_argument, NULL, OPT_CONNS},
    {"max-connections", required_argument, NULL, OPT_MAX_CONNS},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"requests", required_argument, NULL, OPT_REQUESTS},
    {"method", required_argument, NULL, OPT_METHOD},
    {"header", required_argument, NULL, OPT_HEADER},
    {"body", required_argument, NULL, OPT_BODY},
    {"body-file", required_argument, NULL, OPT_BODY_FILE},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"json", required_argument, NULL, OPT_JSON},
    {"svg", required_argument, NULL, OPT_SVG},
    {"progress", required_argument, NULL, OPT_PROGRESS},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"help", no_argument, NULL, OPT_HELP},
    {"client", required_argument, NULL, OPT_CLIENT},
    {NULL, 0, NULL, 0}};

/* One flag into cfg (the body's text into *body). 0, or the exit code 2 (said why). */
static int parse_flag(struct load_config *cfg, int opt, const char *v, char **body,
                      size_t *body_len)
{
  long long n;
  switch (opt) {
  case OPT_RATE:
    return parse_rate(v, &cfg->rate) ? bad_flags("bad --rate %s", v) : 0;
  case OPT_CONNS:
  case OPT_MAX_CONNS:
    if (app_parse_int(v, 1, 100000, &n))
      return bad_flags("bad --%s %s", opt == OPT_CONNS ? "connections" : "max-connections", v);
    *(opt == OPT_CONNS ? &cfg->connections : &cfg->max_connections) = (int)n;
    return 0;
  case OPT_DURATION:
    return parse_duration(v, &cfg->duration) ? bad_flags("bad --duration %s", v) : 0;
  case OPT_TIMEOUT:
    return parse_duration(v, &cfg->timeout) ? bad_flags("bad --timeout %s", v) : 0;
  case OPT_PROGRESS:
    return parse_duration(v, &cfg->progress) ? bad_flags("bad --progress %s", v) : 0;
  case OPT_REQUESTS:
    if (app_parse_int(v, 1, (long long)1e15, &n))
      return bad_flags("bad --requests %s", v);
    cfg->requests = (uint64_t)n;
    return 0;
  case OPT_METHOD:
    cfg->method = v;
    return 0;
  case OPT_HEADER:
    return add_header(cfg, v) ? bad_flags("bad --header %s (want 'Name: value')", v) : 0;
  case OPT_BODY:
  case OPT_BODY_FILE:
    free(*body);
    *body = opt == OPT_BODY ? strdup(v) : read_file(v, body_len);
    if (opt == OPT_BODY)
      *body_len = strlen(v);
    return *body ? 0 : bad_flags("cannot read --body-file %s", v);
  case OPT_JSON:
    cfg->json_path = v;
    return 0;
  case OPT_SVG:
    cfg->svg_path = v;
    return 0;
  case OPT_QUIET:
    cfg->quiet = true;
    return 0;
  case OPT_CLIENT:
    if (strcmp(v, "lean") != 0 && strcmp(v, "weft") != 0)
      return bad_flags("bad --client %s (lean or weft)", v);
    cfg->weft_client = strcmp(v, "weft") == 0;
    return 0;
  }
  return bad_flags("unknown flag");
}

/* Defaults, the URL and the templates, once every flag is read. 0 or 2. */
static int finish_config(struct load_config *cfg, const char *url, const char *body,
                         size_t body_len)
{
  char err[160];
  if (!cfg->duration && !cfg->requests)
    cfg->duration = 10 * (int64_t)1000000000;
  if (!cfg->max_connections)
    cfg->max_connections = cfg->connections > 1024 ? cfg->connections : 1024;
  if (cfg->max_connections < cfg->connections)
    return bad_flags("--max-connections %d is below --connections %d", cfg->max_connections,
                     cfg->connections);
  if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0)
    return bad_flags("URL must start with http:// or https://: %s", url);
  cfg->url = url;
  if (!(cfg->url_t = load_template_compile(url, strlen(url), err, sizeof err)))
    return bad_flags("URL: %s", err);
  if (body && !(cfg->body_t = load_template_compile(body, body_len, err, sizeof err)))
    return bad_flags("body: %s", err);
  if (!cfg->method)
    cfg->method = body ? "POST" : "GET";
  return 0;
}

static int parse_flags(struct load_config *cfg, int argc, char **argv)
{
  char *body = NULL;
  size_t body_len = 0;
  int opt, rc = 0;
  *cfg = (struct load_config){
      .connections = 64, .timeout = 10 * (int64_t)1000000000, .progress = 1000 * 1000 * 1000};
  opterr = 0;
  while (rc == 0 && (opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
    if (opt == OPT_HELP) {
      usage(stdout);
      rc = -1;
    } else if (opt == '?' || opt == ':') {
      rc = bad_flags("bad flag or missing value: %s", argv[optind - 1]);
    } else {
      rc = parse_flag(cfg, opt, optarg, &body, &body_len);
    }
  }
  if (rc == 0 && optind != argc - 1)
    rc = bad_flags(optind >= argc ? "no URL given" : "one URL only");
  if (rc == 0)
    rc = finish_config(cfg, argv[optind], body, body_len);
  free(body);
  return rc;
}

static void free_config(struct load_config *cfg)
{
  load_template_free(cfg->url_t);
  load_template_free(cfg->body_t);
  for (int i = 0; i < 2 * cfg->nheaders; i++)
    free((char *)cfg->headers[i]);
}

/* The main coroutine: the run and its reports. The exit code. */
static int load_main(void *arg)
{
  const struct load_config *cfg = arg;
  struct load_run run = {.cfg = cfg};
  if (load_run(&run, cfg) < 0)
    return 1;
  int rc = 0;
  bool json_stdout = cfg->json_path && strcmp(cfg->json_path, "-") == 0;
  load_report_text(&run, json_stdout ? stderr : stdout);
  if (cfg->json_path && load_report_json(&run, cfg->json_path) < 0) {
    fprintf(stderr, "weft-load: cannot write %s\n", cfg->json_path);
    rc = 1;
  }
  if (cfg->svg_path && load_plot_svg(&run, cfg->svg_path) < 0) {
    fprintf(stderr, "weft-load: cannot write %s\n", cfg->svg_path);
    rc = 1;
  }
  fflush(stdout);
  load_recorder_destroy(&run.rec);
  return rc;
}

int main(int argc, char **argv)
{
  struct load_config cfg;
  int rc = parse_flags(&cfg, argc, argv);
  if (rc == 0)
    rc = weft_main(load_main, &cfg);
  free_config(&cfg);
  return rc < 0 ? (rc == -1 ? 0 : 1) : rc;
}
