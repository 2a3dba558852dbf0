/* main.c: weft-bench's driver: arguments, choosing N, warm-up, repetitions, the median.
 *
 * Usage: weft-bench [--reps K] [-v] [--list] [NAME...]
 *
 * Prints "<name> <value> <unit>" per workload on stdout and nothing else there; -v adds N
 * and every repetition on stderr. The procedure follows the Go peer (gobench) so the two
 * measure the same thing:
 *   sized workloads  N starts at 1000 and grows until one run takes >= 0.2 s (those runs
 *                    are the warm-up), then K runs of that N; value = median of ns / op.
 *   fixed workloads  one warm-up run, then K runs; value = median.
 *   fresh-process    each of the K runs in a new process (child.c) with no warm-up in it;
 *                    a sized one is calibrated in this process first, which warms
 *                    nothing that the children use.
 * Every workload runs in its own runtime, started with the row's P. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

struct options {
  int reps;
  int verbose;
  int list;
  const char *child_name, *child_n; /* hidden: --child NAME N */
  const char **names;
  int nnames;
};

/* One workload's measurement, filled inside the runtime (or, for fresh-process rows,
 * around the children). */
struct measurement {
  const struct bench_workload *w;
  int reps;
  int64_t n; /* chosen N; 0 for fixed workloads */
  double vals[64];
};

static void usage(FILE *out)
{
  fprintf(out, "usage: weft-bench [--reps K] [-v] [--list] [NAME...]\n"
               "  --reps K  measured repetitions per workload, median reported (default 5, "
               "at least 3)\n"
               "  -v        print N and every repetition on stderr\n"
               "  --list    print the workload names\n");
}

static int parse_reps(const char *s)
{
  char *end;
  long k = strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || k < 3 || k > 64)
    bench_die("--reps must be a number from 3 to 64, not \"%s\"", s);
  return (int)k;
}

static void parse_args(int argc, char **argv, struct options *o)
{
  o->reps = 5;
  o->names = calloc((size_t)argc, sizeof *o->names);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--reps") == 0 || strcmp(a, "-reps") == 0) {
      if (++i == argc)
        bench_die("--reps needs a value");
      o->reps = parse_reps(argv[i]);
    } else if (strncmp(a, "--reps=", 7) == 0) {
      o->reps = parse_reps(a + 7);
    } else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
      o->verbose = 1;
    } else if (strcmp(a, "--list") == 0 || strcmp(a, "-list") == 0) {
      o->list = 1;
    } else if (strcmp(a, "--child") == 0 && i + 2 < argc) {
      o->child_name = argv[i + 1];
      o->child_n = argv[i + 2];
      i += 2;
    } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage(stdout);
      exit(0);
    } else if (a[0] == '-') {
      usage(stderr);
      bench_die("unknown option \"%s\"", a);
    } else {
      o->names[o->nnames++] = a;
    }
  }
}

/* Grow N until one run takes at least BENCH_MIN_REP_NS; the runs made are the warm-up.
 * The same growth rule as gobench's calibrate(). */
static int64_t calibrate(const struct bench_workload *w)
{
  int64_t n = 1000, ops;
  for (;;) {
    int64_t ns = w->run(n, &ops);
    if (ns >= BENCH_MIN_REP_NS)
      return n;
    double factor = ns > 0 ? 1.2 * (double)BENCH_MIN_REP_NS / (double)ns : 2.0;
    if (factor < 1.5)
      factor = 1.5;
    if (factor > 100)
      factor = 100;
    n = (int64_t)((double)n * factor);
  }
}

/* The main coroutine of a workload's runtime. */
static int measure_in_runtime(void *arg)
{
  struct measurement *m = arg;
  const struct bench_workload *w = m->w;
  if (w->run) {
    m->n = calibrate(w);
    if (w->flags & BENCH_FRESH_PROCESS)
      return 0; /* the repetitions run in children */
    for (int i = 0; i < m->reps; i++) {
      int64_t ops = 0;
      int64_t ns = w->run(m->n, &ops);
      m->vals[i] = (double)ns / (double)(ops > 0 ? ops : 1);
    }
  } else {
    w->measure(); /* warm-up */
    for (int i = 0; i < m->reps; i++)
      m->vals[i] = w->measure();
  }
  return 0;
}

static void print_verbose(const struct measurement *m)
{
  if (m->n > 0)
    fprintf(stderr, "%s: N=%lld reps=[", m->w->name, (long long)m->n);
  else
    fprintf(stderr, "%s: reps=[", m->w->name);
  for (int i = 0; i < m->reps; i++)
    fprintf(stderr, "%s%.1f", i ? " " : "", m->vals[i]);
  fprintf(stderr, "]\n");
}

static double run_workload(const struct bench_workload *w, int reps, int verbose)
{
  struct measurement m = {.w = w, .reps = reps};
  bool in_runtime = w->run || !(w->flags & BENCH_FRESH_PROCESS);
  if (in_runtime)
    bench_run_in_runtime(w->procs, measure_in_runtime, &m);
  if (w->flags & BENCH_FRESH_PROCESS)
    for (int i = 0; i < reps; i++)
      m.vals[i] = bench_child_value(w, m.n);
  if (verbose)
    print_verbose(&m);
  return bench_median(m.vals, reps);
}

static void print_value(const struct bench_workload *w, double v)
{
  int decimals = 1; /* ns/op, us */
  if (strcmp(w->unit, "ms") == 0)
    decimals = 2;
  else if (strcmp(w->unit, "bytes/op") == 0)
    decimals = 0;
  printf("%s %.*f %s\n", w->name, decimals, v, w->unit);
  fflush(stdout);
}

int main(int argc, char **argv)
{
  struct options o = {0};
  parse_args(argc, argv, &o);
  if (o.child_name)
    return bench_child_main(o.child_name, o.child_n);
  if (o.list) {
    for (int i = 0; i < bench_nworkloads; i++)
      printf("%s\n", bench_workloads[i].name);
    return 0;
  }
  const struct bench_workload **todo =
      calloc((size_t)bench_nworkloads + (size_t)o.nnames, sizeof *todo);
  int ntodo = 0;
  for (int i = 0; i < o.nnames; i++) {
    if (!(todo[ntodo++] = bench_find(o.names[i])))
      bench_die("unknown workload \"%s\" (see --list)", o.names[i]);
  }
  if (o.nnames == 0)
    for (int i = 0; i < bench_nworkloads; i++)
      todo[ntodo++] = &bench_workloads[i];
  for (int i = 0; i < ntodo; i++)
    print_value(todo[i], run_workload(todo[i], o.reps, o.verbose));
  free(todo);
  free(o.names);
  return 0;
}
