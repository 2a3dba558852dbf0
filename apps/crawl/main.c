/* main.c: weft-crawl's command line: flags, usage, the output file and exit codes
 * (0 done, 1 output or setup error, 2 usage, 130 SIGINT). See README.md and
 * shared/specs/crawler.md for the contract. */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int crawl_parse_duration(const char *s, int64_t *ns)
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
    if (end == s || v < 0 || !isfinite(v))
      return -EINVAL;
    size_t un = strspn(end, "nsumh");
    double mult = un == 0 && !*end ? 1e9 : -1; /* a bare number is seconds */
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

static int parse_long(const char *s, long lo, long *out)
{
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (!*s || *end || errno || v < lo || v > 1000000000)
    return -EINVAL;
  *out = v;
  return 0;
}

static int parse_bool(const char *s, bool *out)
{
  if (!strcmp(s, "true") || !strcmp(s, "1") || !strcmp(s, "on") || !strcmp(s, "yes"))
    return *out = true, 0;
  if (!strcmp(s, "false") || !strcmp(s, "0") || !strcmp(s, "off") || !strcmp(s, "no"))
    return *out = false, 0;
  return -EINVAL;
}

/* The flags that take a value, and which field they set. */
typedef struct flag_state {
  crawl_opts *o;
  int same_host, robots; /* -1: not given */
} flag_state;

static int set_value(flag_state *fs, const char *name, const char *v)
{
  crawl_opts *o = fs->o;
  long n;
  if (!strcmp(name, "concurrency"))
    return parse_long(v, 1, &n) ? -EINVAL : (o->concurrency = (int)n, 0);
  if (!strcmp(name, "per-host"))
    return parse_long(v, 1, &n) ? -EINVAL : (o->per_host = (int)n, 0);
  if (!strcmp(name, "retries"))
    return parse_long(v, 0, &n) ? -EINVAL : (o->retries = (int)n, 0);
  if (!strcmp(name, "depth"))
    return parse_long(v, 0, &n) ? -EINVAL : (o->depth = (int)n, 0);
  if (!strcmp(name, "max-pages"))
    return parse_long(v, 0, &n) ? -EINVAL : (o->max_pages = n, 0);
  if (!strcmp(name, "timeout"))
    return crawl_parse_duration(v, &o->timeout) || o->timeout <= 0 ? -EINVAL : 0;
  if (!strcmp(name, "max-body"))
    return crawl_parse_size(v, &o->max_body);
  if (!strcmp(name, "user-agent"))
    return o->user_agent = v, 0;
  if (!strcmp(name, "out"))
    return o->out = v, 0;
  return -ENOENT;
}

static int set_bool(flag_state *fs, const char *name, const char *v)
{
  bool b = true;
  if (strcmp(name, "same-host") && strcmp(name, "robots") && strcmp(name, "insecure"))
    return -ENOENT;
  if (v && parse_bool(v, &b))
    return -EINVAL;
  if (!strcmp(name, "same-host"))
    return fs->same_host = b, 0;
  if (!strcmp(name, "robots"))
    return fs->robots = b, 0;
  if (!strcmp(name, "insecure"))
    return fs->o->insecure = b, 0;
  return -ENOENT;
}

/* One flag at argv[*i]; 0, or -1 after printing the problem. */
static int parse_flag(flag_state *fs, int argc, char **argv, int *i)
{
  const char *a = argv[*i] + 1 + (argv[*i][1] == '-');
  char name[64];
  const char *eq = strchr(a, '=');
  size_t n = eq ? (size_t)(eq - a) : strlen(a);
  if (n >= sizeof name)
    n = sizeof name - 1;
  memcpy(name, a, n);
  name[n] = '\0';
  int rc = set_bool(fs, name, eq ? eq + 1 : NULL);
  if (rc == -ENOENT) {
    const char *v = eq ? eq + 1 : (*i + 1 < argc ? argv[++*i] : NULL);
    rc = v ? set_value(fs, name, v) : -EINVAL;
    if (rc == 0 || rc == -ENOENT)
      goto out;
    fprintf(stderr, "weft-crawl: bad value %s%s for --%s\n", v ? "" : "(none)", v ? v : "",
            name);
    return -1;
  }
out:
  if (rc == -ENOENT) {
    fprintf(stderr, "weft-crawl: unknown flag --%s\n", name);
    return -1;
  }
  if (rc < 0)
    fprintf(stderr, "weft-crawl: bad value for --%s\n", name);
  return rc < 0 ? -1 : 0;
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
  flag_state fs = {.o = o, .same_host = -1, .robots = -1};
  o->urls = calloc((size_t)argc + 1, sizeof *o->urls);
  if (!o->urls)
    return -1;
  bool flags = true;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (flags && !strcmp(a, "--")) {
      flags = false;
    } else if (flags && (!strcmp(a, "-h") || !strcmp(a, "--help") || !strcmp(a, "-help"))) {
      return 1;
    } else if (flags && a[0] == '-' && a[1] != '\0') {
      if (parse_flag(&fs, argc, argv, &i) < 0)
        return -1;
    } else {
      o->urls[o->nurls++] = argv[i];
    }
  }
  o->same_host = fs.same_host >= 0 ? fs.same_host : o->depth > 0;
  o->robots = fs.robots >= 0 ? fs.robots : o->depth > 0;
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
