/* util.c: clocks, /proc/self/status, order statistics and fatal errors for weft-bench. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

int64_t bench_now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void bench_die(const char *fmt, ...)
{
  va_list ap;
  fputs("weft-bench: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  exit(1);
}

long long bench_vmrss(void)
{
  char line[256];
  long long kb = -1;
  FILE *f = fopen("/proc/self/status", "r");
  if (!f)
    bench_die("cannot open /proc/self/status");
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "VmRSS:", 6) == 0) {
      kb = strtoll(line + 6, NULL, 10);
      break;
    }
  }
  fclose(f);
  if (kb < 0)
    bench_die("no VmRSS in /proc/self/status");
  return kb * 1024;
}

static int cmp_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double bench_median(const double *v, int n)
{
  double s[n];
  memcpy(s, v, sizeof s);
  qsort(s, (size_t)n, sizeof s[0], cmp_double);
  return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* Nearest rank: the smallest value with at least p of the samples at or below it. */
double bench_percentile(double *v, long n, double p)
{
  qsort(v, (size_t)n, sizeof v[0], cmp_double);
  double exact = p * (double)n;
  long rank = (long)exact;
  if ((double)rank < exact - 1e-9)
    rank++; /* ceil without libm */
  if (rank < 1)
    rank = 1;
  if (rank > n)
    rank = n;
  return v[rank - 1];
}
