/* flags.c: weft-upstream's command line. Flags are "--name value" or "--name=value" (one
 * dash works too); --outage may be repeated. Anything wrong gets one line on stderr and
 * the caller exits 2. Outage windows are sorted by start and overlapping or touching ones
 * merged, so that the rest of the program sees disjoint windows in order. */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "upstream.h"

static void usage(FILE *f)
{
  fputs("usage: weft-upstream --api users|geo|fx --listen ADDR [flags]\n"
        "  --api users|geo|fx        the API to play (required)\n"
        "  --listen ADDR             host:port; port 0 picks one (required)\n"
        "  --latency-median D        median delay of an answer (none)\n"
        "  --latency-p99 D           99th percentile of the delay (the median: fixed)\n"
        "  --error-rate F            fraction of answers that are 503 (0)\n"
        "  --outage START:DURATION   an outage that long, START after the start; repeatable\n"
        "  --outage-mode refuse|stall  refuse: listener closed, connections cut (default);\n"
        "                            stall: requests answered only when the window ends\n"
        "  --seed N                  seed of the fake data and of the faults (0)\n"
        "  --log-level debug|info|warn|error   (info)\n"
        "durations: 500ms, 2s, 1m30s; a bare number is seconds\n",
        f);
}

const char *up_api_name(up_api api)
{
  static const char *const names[] = {"users", "geo", "fx"};
  return names[api];
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
    if (!(isdigit((unsigned char)*s) || *s == '.'))
      return -EINVAL;
    double v = strtod(s, &end);
    if (end == s || !isfinite(v))
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

static int parse_u64(const char *s, uint64_t *out)
{
  char *end;
  errno = 0;
  if (!isdigit((unsigned char)*s))
    return -EINVAL;
  unsigned long long v = strtoull(s, &end, 10);
  if (*end || errno)
    return -EINVAL;
  *out = v;
  return 0;
}

/* "START:DURATION" appended to o's windows. */
static int parse_outage(const char *s, up_opts *o)
{
  const char *colon = strchr(s, ':');
  char start[64];
  if (!colon || (size_t)(colon - s) >= sizeof start || o->nwindows == UP_MAX_WINDOWS)
    return -EINVAL;
  snprintf(start, sizeof start, "%.*s", (int)(colon - s), s);
  up_window w;
  int64_t dur;
  if (parse_duration(start, &w.start) || parse_duration(colon + 1, &dur) || dur <= 0)
    return -EINVAL;
  w.end = w.start + dur;
  o->windows[o->nwindows++] = w;
  return 0;
}

static int by_start(const void *a, const void *b)
{
  const up_window *x = a, *y = b;
  return (x->start > y->start) - (x->start < y->start);
}

static void merge_windows(up_opts *o)
{
  qsort(o->windows, (size_t)o->nwindows, sizeof *o->windows, by_start);
  int n = 0;
  for (int i = 0; i < o->nwindows; i++) {
    if (n > 0 && o->windows[i].start <= o->windows[n - 1].end) {
      if (o->windows[i].end > o->windows[n - 1].end)
        o->windows[n - 1].end = o->windows[i].end;
    } else {
      o->windows[n++] = o->windows[i];
    }
  }
  o->nwindows = n;
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

static const char *apply_api(up_opts *o, const char *v)
{
  for (int a = UP_USERS; a <= UP_FX; a++)
    if (strcmp(v, up_api_name((up_api)a)) == 0)
      return o->api = (up_api)a, NULL;
  return "users, geo or fx";
}

static const char *apply_error_rate(up_opts *o, const char *v)
{
  char *end;
  double f = strtod(v, &end);
  if (!*v || *end || !(f >= 0 && f <= 1))
    return "a fraction between 0 and 1";
  o->error_rate = f;
  return NULL;
}

/* Apply value v of flag name to o; NULL, or what a valid value looks like. */
static const char *apply(up_opts *o, const char *name, const char *v)
{
  if (!strcmp(name, "api"))
    return apply_api(o, v);
  if (!strcmp(name, "listen"))
    return *v && strchr(v, ':') ? (o->listen = v, NULL) : "an address host:port";
  if (!strcmp(name, "latency-median"))
    return parse_duration(v, &o->latency_median) ? "a duration such as 20ms" : NULL;
  if (!strcmp(name, "latency-p99"))
    return parse_duration(v, &o->latency_p99) ? "a duration such as 200ms" : NULL;
  if (!strcmp(name, "error-rate"))
    return apply_error_rate(o, v);
  if (!strcmp(name, "outage"))
    return parse_outage(v, o) ? "START:DURATION such as 5s:2s (at most 64)" : NULL;
  if (!strcmp(name, "outage-mode")) {
    if (strcmp(v, "refuse") && strcmp(v, "stall"))
      return "refuse or stall";
    return o->outage_mode = strcmp(v, "stall") ? UP_OUTAGE_REFUSE : UP_OUTAGE_STALL, NULL;
  }
  if (!strcmp(name, "seed"))
    return parse_u64(v, &o->seed) ? "an unsigned integer" : NULL;
  if (!strcmp(name, "log-level"))
    return parse_level(v, &o->log_level) ? "debug, info, warn or error" : NULL;
  return "";
}

/* What is wrong with the flags taken together, or NULL. */
static const char *check(const up_opts *o, bool have_api)
{
  if (!have_api)
    return "--api is required (users, geo or fx)";
  if (!o->listen)
    return "--listen is required (host:port)";
  if (o->latency_p99 > 0 && o->latency_median == 0)
    return "--latency-p99 needs --latency-median";
  if (o->latency_p99 > 0 && o->latency_p99 < o->latency_median)
    return "--latency-p99 must not be below --latency-median";
  return NULL;
}

static bool known(const char *name)
{
  static const char *const names[] = {"api",         "listen",     "latency-median",
                                      "latency-p99", "error-rate", "outage",
                                      "outage-mode", "seed",       "log-level"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++)
    if (!strcmp(name, names[i]))
      return true;
  return false;
}

int up_parse_args(int argc, char **argv, up_opts *o)
{
  bool have_api = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help") || !strcmp(a, "-help"))
      return usage(stdout), 1;
    if (a[0] != '-' || a[1] == '\0') {
      fprintf(stderr, "weft-upstream: unexpected argument %s\n", a);
      return -1;
    }
    a += 1 + (a[1] == '-');
    char name[64];
    const char *eq = strchr(a, '=');
    snprintf(name, sizeof name, "%.*s", (int)(eq ? eq - a : (long)strlen(a)), a);
    if (!known(name)) {
      fprintf(stderr, "weft-upstream: unknown flag --%s\n", name);
      return -1;
    }
    if (!eq && i + 1 >= argc) {
      fprintf(stderr, "weft-upstream: flag --%s needs a value\n", name);
      return -1;
    }
    const char *v = eq ? eq + 1 : argv[++i];
    const char *want = apply(o, name, v);
    if (want) {
      fprintf(stderr, "weft-upstream: invalid --%s \"%s\": want %s\n", name, v, want);
      return -1;
    }
    have_api |= !strcmp(name, "api");
  }
  const char *wrong = check(o, have_api);
  if (wrong) {
    fprintf(stderr, "weft-upstream: %s\n", wrong);
    return -1;
  }
  merge_windows(o);
  return 0;
}
