/* main.c: weft-crawl's command line: flags, usage, the output file and exit codes
 * (0 done, 1 output or setup error, 2 usage, 130 SIGINT). See README.md and
 * shared/specs/crawler.md for the contract. */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/flags.h"
#include "crawl.h"

static void usage(FILE *f)
{
  fputs("usage: weft-crawl [flags] [URL...]   (- reads URLs from stdin, one per line)\n"
        "  --concurrency N    requests in flight at most (50)\n"
        "  --per-host N       requests in flight per host at most (8)\n"
        "  --timeout D        per request, connect to last byte (10s)\n"
        "  --retries N        for timeouts, connection errors and 5xx, with backoff (2)\n"
        "  --depth N          follow links this many levels deep (0)\n"
        "  --same-host[=B]    follow only links on a seed's host (on when --depth > 0)\n"
        "  --max-pages N      stop after this many pages (no limit)\n"
        "  --robots[=B]       honour robots.txt (on when --depth > 0)\n"
        "  --max-body S       larger bodies are cut and flagged (10MiB)\n"
        "  --user-agent S     (weft-crawl/" WEFT_CRAWL_VERSION ")\n"
        "  --out FILE         JSON lines, one per URL (stdout)\n"
        "  --insecure         skip TLS certificate verification\n"
        "durations: 500ms, 10s, 2m, 1h30m; sizes: 1000, 512KiB, 10MiB, 1MB\n",
        f);
}

int crawl_parse_size(const char *s, int64_t *bytes)
{
  static const struct {
    const char *unit;
    double mult;
  } units[] = {{"", 1},        {"b", 1},         {"k", 1024},      {"kib", 1024},
               {"kb", 1e3},    {"m", 1 << 20},   {"mib", 1 << 20}, {"mb", 1e6},
               {"g", 1 << 30}, {"gib", 1 << 30}, {"gb", 1e9}};
  char *end;
  double v = strtod(s, &end);
  if (end == s || v <= 0 || !isfinite(v))
    return -EINVAL;
  while (*end == ' ')
    end++;
  for (size_t i = 0; i < sizeof units / sizeof *units; i++)
    if (strcasecmp(end, units[i].unit) == 0 && v * units[i].mult < 9e18) {
      *bytes = (int64_t)(v * units[i].mult);
      return *bytes > 0 ? 0 : -EINVAL;
    }
  return -EINVAL;
}

static const char *parse_size(const char *v, void *bytes)
{
  return crawl_parse_size(v, bytes) ? "" : NULL;
}

/* The problem in a bad command line, on one line. An unknown flag ending the command line
 * is reported as missing its value, as weft-crawl always has (it looks for a value first). */
static void print_error(const app_flag_error *e, bool last)
{
  if (e->problem == APP_FLAG_UNKNOWN && last && !strchr(e->arg, '='))
    fprintf(stderr, "weft-crawl: bad value (none) for --%s\n", e->name);
  else if (e->problem == APP_FLAG_UNKNOWN)
    fprintf(stderr, "weft-crawl: unknown flag --%s\n", e->name);
  else if (e->problem == APP_FLAG_NO_VALUE)
    fprintf(stderr, "weft-crawl: bad value (none) for --%s\n", e->name);
  else if (e->flag->kind == APP_FLAG_BOOL)
    fprintf(stderr, "weft-crawl: bad value for --%s\n", e->name);
  else
    fprintf(stderr, "weft-crawl: bad value %s for --%s\n", e->value, e->name);
}

/* Parse argv into o; flags may come before, between and after URLs; "--" ends them.
 * Returns 0, 1 for --help, or -1 after printing the problem. */
static int parse_args(int argc, char **argv, crawl_opts *o)
{
  *o = (crawl_opts){.concurrency = 50,
                    .per_host = 8,
                    .timeout = 10 * (int64_t)1000000000,
                    .retries = 2,
                    .max_body = 10 << 20,
                    .user_agent = "weft-crawl/" WEFT_CRAWL_VERSION};
  o->urls = calloc((size_t)argc + 1, sizeof *o->urls);
  if (!o->urls)
    return -1;
  enum { F_SAME_HOST, F_ROBOTS }; /* given, or following --depth */
  app_flag table[] = {
      APP_BOOL("same-host", o->same_host),
      APP_BOOL("robots", o->robots),
      APP_BOOL("insecure", o->insecure),
      APP_INT("concurrency", o->concurrency, 1, 1000000000, NULL),
      APP_INT("per-host", o->per_host, 1, 1000000000, NULL),
      APP_INT("retries", o->retries, 0, 1000000000, NULL),
      APP_INT("depth", o->depth, 0, 1000000000, NULL),
      APP_INT("max-pages", o->max_pages, 0, 1000000000, NULL),
      APP_DURATION("timeout", o->timeout, 1, NULL),
      APP_CUSTOM("max-body", &o->max_body, parse_size, NULL),
      APP_STRING("user-agent", o->user_agent, 0, NULL),
      APP_STRING("out", o->out, 0, NULL),
  };
  app_flags f = {.flags = table, .nflags = sizeof table / sizeof *table, .args = o->urls};
  app_flag_error e;
  int rc = app_flags_parse(&f, argc, argv, &e);
  if (rc < 0)
    print_error(&e, e.arg == argv[argc - 1]);
  if (rc != 0)
    return rc;
  o->nurls = f.nargs;
  if (!table[F_SAME_HOST].seen)
    o->same_host = o->depth > 0;
  if (!table[F_ROBOTS].seen)
    o->robots = o->depth > 0;
  if (o->nurls == 0) {
    fputs("weft-crawl: no URLs given (pass URLs, or - to read them from stdin)\n", stderr);
    return -1;
  }
  return 0;
}

typedef struct run_args {
  crawl_opts *o;
  FILE *out;
} run_args;

static int run(void *arg)
{
  run_args *ra = arg;
  return crawl_run(ra->o, ra->out);
}

int main(int argc, char **argv)
{
  crawl_opts o;
  int rc = parse_args(argc, argv, &o);
  if (rc != 0) {
    usage(rc > 0 ? stdout : stderr);
    free(o.urls);
    return rc > 0 ? 0 : 2;
  }
  FILE *out = stdout;
  if (o.out && strcmp(o.out, "-") != 0 && !(out = fopen(o.out, "w"))) {
    fprintf(stderr, "weft-crawl: %s: %s\n", o.out, strerror(errno));
    free(o.urls);
    return 2;
  }
  static char outbuf[1 << 16];
  setvbuf(out, outbuf, _IOFBF, sizeof outbuf);
  run_args ra = {&o, out};
  rc = weft_main(run, &ra);
  if (rc < 0) {
    fprintf(stderr, "weft-crawl: %s\n", weft_strerror(rc));
    rc = 1;
  }
  if (fclose(out) != 0 && rc == 0) {
    fprintf(stderr, "weft-crawl: writing output: %s\n", strerror(errno));
    rc = 1;
  }
  free(o.urls);
  return rc;
}
