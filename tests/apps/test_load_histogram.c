/* Unit tests of weft-load's latency histogram (apps/load/histogram.c, linked in directly):
 * percentiles of known distributions against the exact ones from the sorted samples, within
 * 1 %; exact extremes; merging equals recording everything in one; folding precision. */
#include <math.h>
#include <stdlib.h>

#include "../../apps/load/histogram.h"
#include "weft_test.h"

static int cmp_i64(const void *a, const void *b)
{
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* The exact q-th percentile: the smallest sample with q % of them at or below it. The
 * epsilon keeps a rank that is whole in decimal (99.9 % of 200000) from rounding up to the
 * next sample in binary floating point, as hist_percentile does. */
static int64_t exact(const int64_t *sorted, size_t n, double q)
{
  size_t rank = (size_t)ceil(q / 100.0 * (double)n - 1e-6);
  return sorted[rank ? rank - 1 : 0];
}

static void check_percentiles(int64_t *v, size_t n)
{
  hist h;
  assert_int_equal(hist_init(&h, 7), 0);
  for (size_t i = 0; i < n; i++)
    hist_record(&h, v[i]);
  qsort(v, n, sizeof *v, cmp_i64);
  static const double qs[] = {1, 10, 25, 50, 75, 90, 99, 99.9, 99.99};
  for (size_t i = 0; i < sizeof qs / sizeof *qs; i++) {
    double want = (double)exact(v, n, qs[i]), got = (double)hist_percentile(&h, qs[i]);
    if (fabs(got - want) > 0.01 * want + 0.5)
      fail_msg("p%g: got %.0f, want %.0f (error %.3f %%)", qs[i], got, want,
               100 * fabs(got - want) / want);
  }
  assert_int_equal(hist_percentile(&h, 0), v[0]);
  assert_int_equal(hist_percentile(&h, 100), v[n - 1]);
  assert_int_equal(h.total, n);
  hist_destroy(&h);
}

enum { N = 200000 };

static double uniform01(uint64_t *s)
{
  return (double)(test_rand(s) >> 11) / 9007199254740992.0;
}

static void test_uniform(void **state)
{
  (void)state;
  uint64_t s = test_seed() | 1;
  int64_t *v = malloc(sizeof *v * N);
  for (size_t i = 0; i < N; i++)
    v[i] = 1000 + (int64_t)(uniform01(&s) * 50e6); /* 1 us .. 50 ms */
  check_percentiles(v, N);
  free(v);
}

static void test_exponential(void **state)
{
  (void)state;
  uint64_t s = test_seed() | 1;
  int64_t *v = malloc(sizeof *v * N);
  for (size_t i = 0; i < N; i++)
    v[i] = (int64_t)(-log(1 - uniform01(&s)) * 2e6); /* mean 2 ms */
  check_percentiles(v, N);
  free(v);
}

static void test_lognormal_wide(void **state)
{
  (void)state;
  uint64_t s = test_seed() | 1;
  int64_t *v = malloc(sizeof *v * N);
  for (size_t i = 0; i < N; i++) {
    double z = sqrt(-2 * log(1 - uniform01(&s))) * cos(2 * M_PI * uniform01(&s));
    v[i] = (int64_t)exp(13 + 2.5 * z); /* spans microseconds to many seconds */
  }
  check_percentiles(v, N);
  free(v);
}

static void test_small_values_exact(void **state)
{
  (void)state;
  hist h;
  assert_int_equal(hist_init(&h, 7), 0);
  for (int64_t i = 1; i <= 100; i++)
    hist_record(&h, i);
  assert_int_equal(hist_percentile(&h, 50), 50);
  assert_int_equal(hist_percentile(&h, 99), 99);
  assert_int_equal(hist_percentile(&h, 100), 100);
  assert_int_equal(hist_percentile(&h, 0), 1);
  assert_true(fabs(hist_mean(&h) - 50.5) < 1e-9);
  hist_record(&h, -5); /* counts as 0 */
  assert_int_equal(hist_percentile(&h, 0), 0);
  hist_reset(&h);
  assert_int_equal(hist_percentile(&h, 50), 0);
  hist_record(&h, INT64_MAX);
  assert_int_equal(hist_percentile(&h, 50), INT64_MAX);
  hist_destroy(&h);
}

static void test_merge(void **state)
{
  (void)state;
  uint64_t s = test_seed() | 1;
  hist all, a, b, other;
  assert_int_equal(hist_init(&all, 7), 0);
  assert_int_equal(hist_init(&a, 7), 0);
  assert_int_equal(hist_init(&b, 7), 0);
  assert_int_equal(hist_init(&other, 5), 0);
  for (int i = 0; i < 50000; i++) {
    int64_t v = (int64_t)(test_rand(&s) % 100000000);
    hist_record(&all, v);
    hist_record(i % 3 ? &a : &b, v);
  }
  assert_int_equal(hist_merge(&a, &b), 0);
  assert_int_equal(a.total, all.total);
  assert_int_equal(a.min, all.min);
  assert_int_equal(a.max, all.max);
  for (double q = 0; q <= 100; q += 0.5)
    assert_int_equal(hist_percentile(&a, q), hist_percentile(&all, q));
  assert_int_equal(hist_merge(&a, &other), -EINVAL); /* different precision */
  hist_destroy(&other);
  assert_int_equal(hist_init(&other, 0), -EINVAL);
  hist_destroy(&all);
  hist_destroy(&a);
  hist_destroy(&b);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_uniform),        cmocka_unit_test(test_exponential),
      cmocka_unit_test(test_lognormal_wide), cmocka_unit_test(test_small_values_exact),
      cmocka_unit_test(test_merge),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
