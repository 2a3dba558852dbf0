/* flags.c: weft-upstream's command line. Flags are "--name value" or "--name=value" (one
 * dash works too); --outage may be repeated. Anything wrong gets one line on stderr and
 * the caller exits 2. Outage windows are sorted by start and overlapping or touching ones
 * merged, so that the rest of the program sees disjoint windows in order. */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/flags.h"
#include "common/values.h"
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
static const char *parse_outage(const char *s, void *opts)
{
  up_opts *o = opts;
  const char *colon = strchr(s, ':');
  char start[64];
  if (!colon || (size_t)(colon - s) >= sizeof start || o->nwindows == UP_MAX_WINDOWS)
    return "START:DURATION such as 5s:2s (at most 64)";
  snprintf(start, sizeof start, "%.*s", (int)(colon - s), s);
  up_window w;
  int64_t dur;
  if (app_parse_duration(start, &w.start) || app_parse_duration(colon + 1, &dur) || dur <= 0)
    return "START:DURATION such as 5s:2s (at most 64)";
  w.end = w.start + dur;
  o->windows[o->nwindows++] = w;
  return NULL;
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

static const char *parse_listen(const char *v, void *listen)
{
  return *v && strchr(v, ':') ? (*(const char **)listen = v, NULL) : "an address host:port";
}

static const char *parse_seed(const char *v, void *seed)
{
  return parse_u64(v, seed) ? "an unsigned integer" : NULL;
}

static const char *parse_level(const char *v, void *level)
{
  return app_parse_log_level(v, level) ? "debug, info, warn or error" : NULL;
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

static const char *const apis[] = {"users", "geo", "fx", NULL}; /* up_api */
static const char *const modes[] = {"refuse", "stall", NULL};   /* up_outage_mode */

int up_parse_args(int argc, char **argv, up_opts *o)
{
  app_flag table[] = {
      APP_CHOICE("api", o->api, apis, "users, geo or fx"),
      APP_CUSTOM("listen", &o->listen, parse_listen, NULL),
      APP_DURATION("latency-median", o->latency_median, 0, "a duration such as 20ms"),
      APP_DURATION("latency-p99", o->latency_p99, 0, "a duration such as 200ms"),
      APP_FLOAT("error-rate", o->error_rate, 0, 1, "a fraction between 0 and 1"),
      APP_CUSTOM("outage", o, parse_outage, NULL),
      APP_CHOICE("outage-mode", o->outage_mode, modes, "refuse or stall"),
      APP_CUSTOM("seed", &o->seed, parse_seed, NULL),
      APP_CUSTOM("log-level", &o->log_level, parse_level, NULL),
  };
  app_flags f = {.flags = table, .nflags = sizeof table / sizeof *table};
  app_flag_error e;
  char line[256];
  int rc = app_flags_parse(&f, argc, argv, &e);
  if (rc > 0)
    return usage(stdout), 1;
  if (rc < 0)
    return fprintf(stderr, "weft-upstream: %s\n", app_flags_error_line(&e, line, sizeof line)),
           -1;
  const char *wrong = check(o, table[0].seen);
  if (wrong) {
    fprintf(stderr, "weft-upstream: %s\n", wrong);
    return -1;
  }
  merge_windows(o);
  return 0;
}
