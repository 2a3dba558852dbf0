/* test_metrics.c: counters, gauges, histograms, collectors, the runtime's and the process's
 * metrics, and their Prometheus text and JSON exposition. */
#include <dirent.h>
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "coro_check.h"
#include "obs/metrics_internal.h"
#include "weft_test.h"

/* ---- helpers ---- */

/* scrape: reg's text exposition in a malloc'd string. */
static char *scrape(weft_metrics_registry *reg)
{
  char *buf = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&buf, &len);
  if (!m)
    return NULL;
  int rc = weft_metrics_write_prometheus(reg, m);
  fclose(m);
  if (rc != 0) {
    free(buf);
    return NULL;
  }
  return buf;
}

static char *scrape_json(weft_metrics_registry *reg)
{
  char *buf = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&buf, &len);
  if (!m)
    return NULL;
  int rc = weft_metrics_write_json(reg, m);
  fclose(m);
  if (rc != 0) {
    free(buf);
    return NULL;
  }
  return buf;
}

/* sample: the value of the sample line "series value" in text, or NAN if absent (series
 * is the name with its labels, as written). */
static double sample(const char *text, const char *series)
{
  size_t n = strlen(series);
  for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
    if (!strncmp(p, series, n) && p[n] == ' ')
      return strtod(p + n + 1, NULL);
  }
  return NAN;
}

static const char *fmt(double v)
{
  static char buf[WEFT__METRICS_VALUE_MAX];
  return weft__metrics_format_value(buf, v);
}

/* ---- names, labels, buckets, errors ---- */

static void test_validation(void **state)
{
  weft_metrics_registry *r = weft_metrics_registry_new();
  weft_counter_vec *cv;
  weft_counter *c, *c2;
  weft_gauge *g;
  weft_histogram *h;
  weft_histogram_vec *hv;
  const char *two[] = {"code", "method"};

  assert_int_equal(weft_counter_new(r, "", "x", &c), -EINVAL);
  assert_null(c);
  assert_int_equal(weft_counter_new(r, "1abc", "x", &c), -EINVAL);
  assert_int_equal(weft_counter_new(r, "a-b", "x", &c), -EINVAL);
  assert_int_equal(weft_counter_new(r, NULL, "x", &c), -EINVAL);
  assert_int_equal(weft_counter_new(r, "ok", "x", NULL), -EINVAL);
  assert_int_equal(weft_counter_new(r, "bad_help", "\xff", &c), -EINVAL);
  assert_int_equal(weft_counter_vec_new(r, "v", "x", 1, (const char *[]){"__reserved"}, &cv),
                   -EINVAL);
  assert_int_equal(weft_counter_vec_new(r, "v", "x", 1, (const char *[]){"a:b"}, &cv), -EINVAL);
  assert_int_equal(weft_counter_vec_new(r, "v", "x", 1, (const char *[]){"9a"}, &cv), -EINVAL);
  assert_int_equal(weft_counter_vec_new(r, "v", "x", 2, (const char *[]){"a", "a"}, &cv),
                   -EINVAL);
  assert_int_equal(weft_counter_vec_new(r, "v", "x", -1, NULL, &cv), -EINVAL);
  assert_int_equal(weft_counter_vec_new(r, "v", "x", WEFT_METRICS_MAX_LABELS + 1, two, &cv),
                   -EINVAL);
  assert_int_equal(weft_histogram_vec_new(r, "h", "x", 0, NULL, 1, (const char *[]){"le"}, &hv),
                   -EINVAL);
  assert_int_equal(weft_histogram_new(r, "h", "x", 2, (double[]){1, 1}, &h), -EINVAL);
  assert_int_equal(weft_histogram_new(r, "h", "x", 2, (double[]){2, 1}, &h), -EINVAL);
  assert_int_equal(weft_histogram_new(r, "h", "x", 2, (double[]){1, NAN}, &h), -EINVAL);
  assert_int_equal(weft_histogram_new(r, "h", "x", 1, NULL, &h), -EINVAL);

  /* Colons are allowed in metric names, not in label names. */
  assert_int_equal(weft_counter_new(r, "job:requests:rate5m", "x", &c), 0);
  assert_int_equal(weft_counter_new(r, "_under", NULL, &c), 0);

  /* A second family of the same name: -EEXIST, with the first when compatible. */
  assert_int_equal(weft_counter_vec_new(r, "http_requests_total", "h", 2, two, &cv), 0);
  weft_counter_vec *cv2;
  assert_int_equal(weft_counter_vec_new(r, "http_requests_total", "h", 2, two, &cv2), -EEXIST);
  assert_ptr_equal(cv2, cv);
  assert_int_equal(
      weft_counter_vec_new(r, "http_requests_total", "h", 1, (const char *[]){"code"}, &cv2),
      -EEXIST);
  assert_null(cv2);
  assert_int_equal(weft_gauge_new(r, "http_requests_total", "h", &g), -EEXIST);
  assert_null(g);
  weft_histogram_vec *hv2;
  assert_int_equal(weft_histogram_vec_new(r, "lat", "x", 2, (double[]){1, 2}, 1,
                                          (const char *[]){"op"}, &hv),
                   0);
  assert_int_equal(weft_histogram_vec_new(r, "lat", "x", 3, (double[]){1, 2, INFINITY}, 1,
                                          (const char *[]){"op"}, &hv2),
                   -EEXIST);
  assert_ptr_equal(hv2, hv); /* the same buckets: +Inf is implied */
  assert_int_equal(weft_histogram_vec_new(r, "lat", "x", 2, (double[]){1, 3}, 1,
                                          (const char *[]){"op"}, &hv2),
                   -EEXIST);
  assert_null(hv2); /* other buckets */
  assert_int_equal(weft_counter_new(r, "hits_total", "h", &c), 0);
  assert_int_equal(weft_counter_new(r, "hits_total", "h", &c2), -EEXIST);
  assert_ptr_equal(c, c2);

  /* Children: the right number of values, none NULL, all UTF-8. */
  c = weft_counter_vec_with(cv, "200", "GET");
  assert_non_null(c);
  assert_ptr_equal(weft_counter_vec_with(cv, "200", "GET"), c);
  assert_ptr_not_equal(weft_counter_vec_with(cv, "200", "POST"), c);
  assert_null(weft_counter_vec_with(cv, "200"));
  assert_null(weft_counter_vec_with(cv, "200", "GET", "x"));
  assert_null(weft_counter_vec_with(cv, "200", NULL));
  assert_null(weft_counter_vec_with(cv, "200", "\xc3\x28"));     /* bad continuation */
  assert_null(weft_counter_vec_with(cv, "200", "\xed\xa0\x80")); /* a surrogate */
  assert_non_null(weft_counter_vec_with(cv, "200", "caf\xc3\xa9 \xf0\x9f\x98\x80"));
  assert_null(weft_counter_vec_with_values(NULL, 0, NULL));
  assert_null(weft_counter_vec_with_values(cv, 2, NULL));

  /* Updates through NULL do nothing. */
  weft_counter_inc(NULL);
  weft_counter_add_u64(NULL, 3);
  assert_int_equal(weft_counter_add(NULL, 1), 0);
  weft_gauge_set(NULL, 1);
  weft_gauge_inc(NULL);
  weft_histogram_observe(NULL, 1);
  assert_true(weft_counter_value(NULL) == 0 && weft_gauge_value(NULL) == 0);
  assert_true(weft_histogram_count(NULL) == 0 && weft_histogram_sum(NULL) == 0);

  /* A counter refuses to go down. */
  assert_int_equal(weft_counter_add(c, -1), -EINVAL);
  assert_int_equal(weft_counter_add(c, NAN), -EINVAL);
  assert_int_equal(weft_counter_add(c, 0.5), 0);
  assert_true(weft_counter_value(c) == 0.5);
  weft_metrics_registry_free(r);
  weft_metrics_registry_free(NULL);
}

static void test_buckets(void **state)
{
  double b[5];
  assert_int_equal(weft_metrics_linear_buckets(1, 2.5, 4, b), 0);
  assert_true(b[0] == 1 && b[1] == 3.5 && b[2] == 6 && b[3] == 8.5);
  assert_int_equal(weft_metrics_exponential_buckets(0.001, 10, 5, b), 0);
  assert_true(b[0] == 0.001 && fabs(b[4] - 10) < 1e-12);
  assert_int_equal(weft_metrics_linear_buckets(0, 0, 3, b), -EINVAL);
  assert_int_equal(weft_metrics_linear_buckets(0, 1, 0, b), -EINVAL);
  assert_int_equal(weft_metrics_exponential_buckets(0, 2, 3, b), -EINVAL);
  assert_int_equal(weft_metrics_exponential_buckets(1, 1, 3, b), -EINVAL);
  assert_int_equal(weft_metrics_exponential_buckets(1, 2, 3, NULL), -EINVAL);

  weft_metrics_registry *r = weft_metrics_registry_new();
  weft_histogram *h, *d;
  /* A trailing +Inf is dropped: it is always there. */
  assert_int_equal(weft_histogram_new(r, "h_seconds", "x", 3, (double[]){1, 2, INFINITY}, &h),
                   0);
  assert_int_equal(weft_histogram_new(r, "d_seconds", "x", 0, NULL, &d), 0);
  weft_histogram_observe(h, 1); /* le is "less or equal": 1 goes in le="1" */
  weft_histogram_observe(h, 1.5);
  weft_histogram_observe(h, 100);
  weft_histogram_observe(h, -5);
  weft_histogram_observe_ns(d, 7500000); /* 7.5 ms */
  char *t = scrape(r);
  assert_non_null(t);
  assert_true(sample(t, "h_seconds_bucket{le=\"1\"}") == 2);
  assert_true(sample(t, "h_seconds_bucket{le=\"2\"}") == 3);
  assert_true(sample(t, "h_seconds_bucket{le=\"+Inf\"}") == 4);
  assert_null(strstr(t, "le=\"Inf\""));
  assert_true(sample(t, "h_seconds_count") == 4);
  assert_true(sample(t, "h_seconds_sum") == 97.5);
  /* Go's DefBuckets, written as Go writes them. */
  const char *def[] = {"0.005", "0.01", "0.025", "0.05", "0.1", "0.25",
                       "0.5",   "1",    "2.5",   "5",    "10",  "+Inf"};
  for (int i = 0; i < 12; i++) {
    char series[64];
    snprintf(series, sizeof series, "d_seconds_bucket{le=\"%s\"}", def[i]);
    assert_true(sample(t, series) == (i < 1 ? 0 : 1));
  }
  free(t);
  /* NaN counts in +Inf only and makes the sum NaN, as in Go. */
  weft_histogram_observe(h, NAN);
  assert_int_equal(weft_histogram_count(h), 5);
  assert_true(isnan(weft_histogram_sum(h)));
  t = scrape(r);
  assert_true(sample(t, "h_seconds_bucket{le=\"2\"}") == 3);
  assert_true(sample(t, "h_seconds_bucket{le=\"+Inf\"}") == 5);
  assert_non_null(strstr(t, "\nh_seconds_sum NaN\n"));
  free(t);

  /* Many buckets take the binary search. */
  double many[100];
  weft_metrics_linear_buckets(1, 1, 100, many);
  assert_int_equal(weft_histogram_new(r, "many", "x", 100, many, &h), 0);
  for (int v = 0; v <= 101; v++)
    weft_histogram_observe(h, v - 0.5);
  t = scrape(r);
  assert_true(sample(t, "many_bucket{le=\"1\"}") == 2);
  assert_true(sample(t, "many_bucket{le=\"50\"}") == 51);
  assert_true(sample(t, "many_bucket{le=\"100\"}") == 101);
  assert_true(sample(t, "many_bucket{le=\"+Inf\"}") == 102);
  free(t);
  weft_metrics_registry_free(r);
}

/* ---- exact exposition ---- */

static const char expected_text[] = "# HELP a_total \n"
                                    "# TYPE a_total counter\n"
                                    "a_total 0\n"
                                    "# HELP empty_total Never touched.\n"
                                    "# TYPE empty_total counter\n"
                                    "# HELP escape_test Escapes.\n"
                                    "# TYPE escape_test gauge\n"
                                    "escape_test{path=\"a\\\"b\\\\c\\nd\"} 1\n"
                                    "# HELP http_requests_total Requests served.\\nBy code.\n"
                                    "# TYPE http_requests_total counter\n"
                                    "http_requests_total{code=\"200\",method=\"GET\"} 3\n"
                                    "http_requests_total{code=\"200\",method=\"POST\"} 2.5\n"
                                    "http_requests_total{code=\"404\",method=\"GET\"} 1\n"
                                    "# HELP lat_seconds Latency by op.\n"
                                    "# TYPE lat_seconds histogram\n"
                                    "lat_seconds_bucket{op=\"read\",le=\"1\"} 0\n"
                                    "lat_seconds_bucket{op=\"read\",le=\"2\"} 1\n"
                                    "lat_seconds_bucket{op=\"read\",le=\"+Inf\"} 1\n"
                                    "lat_seconds_sum{op=\"read\"} 1.5\n"
                                    "lat_seconds_count{op=\"read\"} 1\n"
                                    "lat_seconds_bucket{op=\"write\",le=\"1\"} 1\n"
                                    "lat_seconds_bucket{op=\"write\",le=\"2\"} 1\n"
                                    "lat_seconds_bucket{op=\"write\",le=\"+Inf\"} 2\n"
                                    "lat_seconds_sum{op=\"write\"} 4.25\n"
                                    "lat_seconds_count{op=\"write\"} 2\n"
                                    "# HELP rpc_duration_seconds RPC latency.\n"
                                    "# TYPE rpc_duration_seconds histogram\n"
                                    "rpc_duration_seconds_bucket{le=\"0.25\"} 2\n"
                                    "rpc_duration_seconds_bucket{le=\"0.5\"} 2\n"
                                    "rpc_duration_seconds_bucket{le=\"1\"} 3\n"
                                    "rpc_duration_seconds_bucket{le=\"+Inf\"} 4\n"
                                    "rpc_duration_seconds_sum 4.125\n"
                                    "rpc_duration_seconds_count 4\n"
                                    "# HELP specials Special values.\n"
                                    "# TYPE specials gauge\n"
                                    "specials{v=\"inf\"} +Inf\n"
                                    "specials{v=\"nan\"} NaN\n"
                                    "specials{v=\"ninf\"} -Inf\n"
                                    "# HELP temperature_celsius Back\\\\slash \"quoted\"\n"
                                    "# TYPE temperature_celsius gauge\n"
                                    "temperature_celsius -3.25\n";

/* build_sample_registry: the families of expected_text, created in a scrambled order. */
static weft_metrics_registry *build_sample_registry(void)
{
  weft_metrics_registry *r = weft_metrics_registry_new();
  weft_gauge *temp;
  weft_gauge_vec *esc, *spec;
  weft_counter_vec *req, *empty;
  weft_histogram *rpc;
  weft_histogram_vec *lat;
  weft_counter *a;
  double lb[2];
  assert_int_equal(weft_gauge_new(r, "temperature_celsius", "Back\\slash \"quoted\"", &temp),
                   0);
  assert_int_equal(weft_counter_vec_new(r, "http_requests_total", "Requests served.\nBy code.",
                                        2, (const char *[]){"code", "method"}, &req),
                   0);
  assert_int_equal(weft_histogram_new(r, "rpc_duration_seconds", "RPC latency.", 3,
                                      (double[]){0.25, 0.5, 1}, &rpc),
                   0);
  weft_metrics_linear_buckets(1, 1, 2, lb);
  assert_int_equal(weft_histogram_vec_new(r, "lat_seconds", "Latency by op.", 2, lb, 1,
                                          (const char *[]){"op"}, &lat),
                   0);
  assert_int_equal(weft_counter_new(r, "a_total", NULL, &a), 0);
  assert_int_equal(weft_counter_vec_new(r, "empty_total", "Never touched.", 1,
                                        (const char *[]){"x"}, &empty),
                   0);
  assert_int_equal(
      weft_gauge_vec_new(r, "specials", "Special values.", 1, (const char *[]){"v"}, &spec), 0);
  assert_int_equal(
      weft_gauge_vec_new(r, "escape_test", "Escapes.", 1, (const char *[]){"path"}, &esc), 0);

  weft_gauge_set(temp, -3.25);
  weft_counter_add(weft_counter_vec_with(req, "404", "GET"), 1);
  weft_counter_add(weft_counter_vec_with(req, "200", "POST"), 2.5);
  for (int i = 0; i < 3; i++)
    weft_counter_inc(weft_counter_vec_with(req, "200", "GET"));
  double obs[] = {0.125, 0.25, 0.75, 3};
  for (int i = 0; i < 4; i++)
    weft_histogram_observe(rpc, obs[i]);
  weft_histogram_observe(weft_histogram_vec_with(lat, "write"), 0.25);
  weft_histogram_observe(weft_histogram_vec_with(lat, "write"), 4);
  weft_histogram_observe(weft_histogram_vec_with(lat, "read"), 1.5);
  weft_gauge_set(weft_gauge_vec_with(spec, "nan"), NAN);
  weft_gauge_set(weft_gauge_vec_with(spec, "ninf"), -INFINITY);
  weft_gauge_set(weft_gauge_vec_with(spec, "inf"), INFINITY);
  weft_gauge_inc(weft_gauge_vec_with(esc, "a\"b\\c\nd"));
  return r;
}

static void test_exposition_exact(void **state)
{
  weft_metrics_registry *r = build_sample_registry();
  char *t = scrape(r);
  assert_non_null(t);
  if (strcmp(t, expected_text))
    fprintf(stderr, "got:\n%s\nwant:\n%s\n", t, expected_text);
  assert_string_equal(t, expected_text);
  free(t);
  /* A second scrape writes the same. */
  t = scrape(r);
  assert_string_equal(t, expected_text);
  free(t);
  /* A failed write is reported. */
  FILE *full = fopen("/dev/full", "w");
  if (full) {
    assert_int_equal(weft_metrics_write_prometheus(r, full), -EIO);
    fclose(full);
    full = fopen("/dev/full", "w");
    assert_int_equal(weft_metrics_write_json(r, full), -EIO);
    fclose(full);
  }
  weft_metrics_registry_free(r);
  assert_int_equal(weft_metrics_write_prometheus(NULL, NULL), -EINVAL);
  assert_int_equal(weft_metrics_write_json(NULL, NULL), -EINVAL);
}

static void test_value_format(void **state)
{
  struct {
    double v;
    const char *want;
  } cases[] = {
      {0, "0"},
      {-0.0, "0"},
      {1, "1"},
      {-1, "-1"},
      {1048576, "1048576"},
      {1e15, "1000000000000000"},
      {9007199254740991.0, "9007199254740991"},
      {9007199254740992.0, "9.007199254740992e+15"},
      {1e21, "1e+21"},
      {0.1, "0.1"},
      {0.005, "0.005"},
      {2.5, "2.5"},
      {-3.25, "-3.25"},
      {0.0001, "0.0001"},
      {0.00001, "1e-05"},
      {1.5e-7, "1.5e-07"},
      {123456.5, "123456.5"},
      {1234567.5, "1.2345675e+06"},
      {0.1 + 0.2, "0.30000000000000004"},
      {1.0 / 3, "0.3333333333333333"},
      {1e-300, "1e-300"},
      {DBL_MAX, "1.7976931348623157e+308"},
      {5e-324, "5e-324"},
      {NAN, "NaN"},
      {INFINITY, "+Inf"},
      {-INFINITY, "-Inf"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    if (strcmp(fmt(cases[i].v), cases[i].want))
      fprintf(stderr, "case %zu: got %s want %s\n", i, fmt(cases[i].v), cases[i].want);
    assert_string_equal(fmt(cases[i].v), cases[i].want);
  }
}

/* ---- collectors ---- */

struct pool_stats {
  int calls;
  int rc_conflict, rc_mismatch, rc_type, rc_badlabel, rc_badname;
};

static void pool_collect(weft_metrics_emitter *em, void *arg)
{
  struct pool_stats *ps = arg;
  ps->calls++;
  const char *names[] = {"pool"};
  weft_metrics_emit(em, "pool_queued", "Tasks waiting.", WEFT_METRIC_GAUGE, 7, 1, names,
                    (const char *[]){"img"});
  weft_metrics_emit(em, "pool_done_total", "Tasks done.", WEFT_METRIC_COUNTER, 12, 1, names,
                    (const char *[]){"img"});
  weft_metrics_emit(em, "pool_queued", "ignored help", WEFT_METRIC_GAUGE, 2, 1, names,
                    (const char *[]){"csv"});
  weft_metrics_emit(em, "pool_done_total", NULL, WEFT_METRIC_COUNTER, 3e6, 1, names,
                    (const char *[]){"csv"});
  weft_metrics_emit(em, "legacy", NULL, WEFT_METRIC_UNTYPED, 0.5, 0, NULL, NULL);
  ps->rc_conflict =
      weft_metrics_emit(em, "registered_total", "x", WEFT_METRIC_COUNTER, 1, 0, NULL, NULL);
  ps->rc_mismatch =
      weft_metrics_emit(em, "pool_queued", NULL, WEFT_METRIC_COUNTER, 1, 1, names, names);
  ps->rc_type = weft_metrics_emit(em, "hist", NULL, WEFT_METRIC_HISTOGRAM, 1, 0, NULL, NULL);
  ps->rc_badlabel = weft_metrics_emit(em, "x", NULL, WEFT_METRIC_GAUGE, 1, 1,
                                      (const char *[]){"__x"}, (const char *[]){"v"});
  ps->rc_badname = weft_metrics_emit(em, "x y", NULL, WEFT_METRIC_GAUGE, 1, 0, NULL, NULL);
}

static void test_collectors(void **state)
{
  weft_metrics_registry *r = weft_metrics_registry_new();
  struct pool_stats ps = {0};
  weft_counter *reg_c;
  assert_int_equal(weft_counter_new(r, "registered_total", "Registered.", &reg_c), 0);
  assert_int_equal(weft_metrics_register_collector(r, pool_collect, &ps), 0);
  assert_int_equal(weft_metrics_register_collector(r, pool_collect, &ps), -EEXIST);
  assert_int_equal(weft_metrics_register_collector(r, NULL, &ps), -EINVAL);
  char *t = scrape(r);
  assert_non_null(t);
  assert_int_equal(ps.calls, 1);
  assert_int_equal(ps.rc_conflict, -EEXIST);
  assert_int_equal(ps.rc_mismatch, -EINVAL);
  assert_int_equal(ps.rc_type, -EINVAL);
  assert_int_equal(ps.rc_badlabel, -EINVAL);
  assert_int_equal(ps.rc_badname, -EINVAL);
  const char *want = "# HELP legacy \n"
                     "# TYPE legacy untyped\n"
                     "legacy 0.5\n"
                     "# HELP pool_done_total Tasks done.\n"
                     "# TYPE pool_done_total counter\n"
                     "pool_done_total{pool=\"csv\"} 3000000\n"
                     "pool_done_total{pool=\"img\"} 12\n"
                     "# HELP pool_queued Tasks waiting.\n"
                     "# TYPE pool_queued gauge\n"
                     "pool_queued{pool=\"csv\"} 2\n"
                     "pool_queued{pool=\"img\"} 7\n"
                     "# HELP registered_total Registered.\n"
                     "# TYPE registered_total counter\n"
                     "registered_total 0\n";
  assert_string_equal(t, want);
  free(t);
  assert_int_equal(weft_metrics_unregister_collector(r, pool_collect, &ps), 0);
  assert_int_equal(weft_metrics_unregister_collector(r, pool_collect, &ps), -ENOENT);
  t = scrape(r);
  assert_int_equal(ps.calls, 1);
  assert_null(strstr(t, "pool_"));
  free(t);
  weft_metrics_registry_free(r);
}

/* ---- concurrency ---- */

enum { WORKERS = 64, ITERS = 5000, KEYS = 37 };

struct hammer {
  weft_counter *c;
  weft_counter_vec *cv;
  weft_gauge *g;
  weft_histogram *h;
  weft_metrics_registry *reg;
  weft_wg wg;
  atomic_int stop;
};

static void hammer_coro(void *arg)
{
  struct hammer *hm = arg;
  for (int i = 0; i < ITERS; i++) {
    weft_counter_inc(hm->c);
    weft_counter_add_u64(hm->c, 2);
    weft_counter_add(hm->c, 0.5);
    char key[16];
    snprintf(key, sizeof key, "k%d", i % KEYS);
    weft_counter_inc(weft_counter_vec_with(hm->cv, key));
    weft_gauge_inc(hm->g);
    if (i % 2)
      weft_gauge_dec(hm->g);
    weft_histogram_observe(hm->h, (i % 4) * 0.25);
    if (i % 64 == 0)
      weft_yield();
  }
  weft_wg_done(&hm->wg);
}

/* scraper: scrape while the others update (for the sanitizers' sake). */
static void scraper(void *arg)
{
  struct hammer *hm = arg;
  while (!atomic_load(&hm->stop)) {
    char *t = scrape(hm->reg);
    CHECK(t != NULL);
    free(t);
    weft_sleep(MS(1));
  }
  weft_wg_done(&hm->wg);
}

static int hammer_main(void *arg)
{
  struct hammer *hm = arg;
  struct hammer side = *hm; /* the scraper: same metrics, its own stop flag and group */
  weft_wg_init(&hm->wg);
  weft_wg_init(&side.wg);
  atomic_store(&side.stop, 0);
  weft_wg_add(&hm->wg, WORKERS);
  for (int i = 0; i < WORKERS; i++)
    CHECK_EQ(weft_go(hammer_coro, hm), 0);
  weft_wg_add(&side.wg, 1);
  CHECK_EQ(weft_go(scraper, &side), 0);
  weft_wg_wait(&hm->wg);
  atomic_store(&side.stop, 1);
  weft_wg_wait(&side.wg);
  return 0;
}

static void test_concurrent_coroutines(void **state)
{
  checks_reset();
  struct hammer hm = {.reg = weft_metrics_registry_new()};
  assert_int_equal(weft_counter_new(hm.reg, "c_total", "c", &hm.c), 0);
  assert_int_equal(
      weft_counter_vec_new(hm.reg, "cv_total", "cv", 1, (const char *[]){"k"}, &hm.cv), 0);
  assert_int_equal(weft_gauge_new(hm.reg, "g", "g", &hm.g), 0);
  assert_int_equal(weft_histogram_new(hm.reg, "h", "h", 0, NULL, &hm.h), 0);
  assert_int_equal(run_weft(4, hammer_main, &hm), 0);
  ASSERT_NO_CHECK_FAILED();
  double n = (double)WORKERS * ITERS;
  assert_true(weft_counter_value(hm.c) == 3.5 * n);
  assert_true(weft_gauge_value(hm.g) == n / 2);
  assert_true(weft_histogram_count(hm.h) == (uint64_t)n);
  assert_true(weft_histogram_sum(hm.h) == n / 4 * (0 + 0.25 + 0.5 + 0.75));
  char *t = scrape(hm.reg);
  double total = 0;
  for (int k = 0; k < KEYS; k++) {
    char series[64];
    snprintf(series, sizeof series, "cv_total{k=\"k%d\"}", k);
    double v = sample(t, series);
    assert_false(isnan(v));
    total += v;
  }
  assert_true(total == n);
  assert_true(sample(t, "c_total") == 3.5 * n);
  assert_true(sample(t, "h_bucket{le=\"0.25\"}") == n / 2);
  assert_true(sample(t, "h_bucket{le=\"+Inf\"}") == n);
  assert_true(sample(t, "h_count") == n);
  free(t);
  weft_metrics_registry_free(hm.reg);
}

/* The same from plain threads, which may call every update too. */
enum { THREADS = 4, THREAD_ITERS = 200000 };

static void *hammer_thread(void *arg)
{
  struct hammer *hm = arg;
  weft_counter *mine = weft_counter_vec_with(hm->cv, "shared");
  for (int i = 0; i < THREAD_ITERS; i++) {
    weft_counter_inc(hm->c);
    weft_counter_inc(mine);
    weft_histogram_observe(hm->h, 1);
  }
  return NULL;
}

static void test_concurrent_threads(void **state)
{
  struct hammer hm = {.reg = weft_metrics_registry_new()};
  assert_int_equal(weft_counter_new(hm.reg, "c_total", "c", &hm.c), 0);
  assert_int_equal(
      weft_counter_vec_new(hm.reg, "cv_total", "cv", 1, (const char *[]){"k"}, &hm.cv), 0);
  assert_int_equal(weft_histogram_new(hm.reg, "h", "h", 0, NULL, &hm.h), 0);
  pthread_t th[THREADS];
  for (int i = 0; i < THREADS; i++)
    assert_int_equal(pthread_create(&th[i], NULL, hammer_thread, &hm), 0);
  for (int i = 0; i < 20; i++) {
    char *t = scrape(hm.reg);
    assert_non_null(t);
    free(t);
  }
  for (int i = 0; i < THREADS; i++)
    pthread_join(th[i], NULL);
  double n = (double)THREADS * THREAD_ITERS;
  assert_true(weft_counter_value(hm.c) == n);
  assert_true(weft_counter_value(weft_counter_vec_with(hm.cv, "shared")) == n);
  assert_true(weft_histogram_count(hm.h) == n);
  assert_true(weft_histogram_sum(hm.h) == n);
  weft_metrics_registry_free(hm.reg);
}

/* ---- the runtime's metrics ---- */

struct gate {
  weft_chan *ch;
  weft_wg wg;
  atomic_int started;
};

static void parked(void *arg)
{
  struct gate *g = arg;
  int v;
  atomic_fetch_add(&g->started, 1);
  weft_chan_recv(g->ch, &v, WEFT_NO_DEADLINE);
  weft_wg_done(&g->wg);
}

static int runtime_main(void *arg)
{
  weft_metrics_registry *r = weft_metrics_registry_new();
  CHECK_EQ(weft_metrics_register_runtime(r), 0);
  CHECK_EQ(weft_metrics_register_runtime(r), -EEXIST);
  struct gate gate = {.ch = weft_chan_new(sizeof(int), 0)};
  weft_wg_init(&gate.wg);
  weft_wg_add(&gate.wg, 20);
  for (int i = 0; i < 20; i++)
    weft_go(parked, &gate);
  while (atomic_load(&gate.started) < 20)
    weft_sleep(MS(1));
  weft_sleep(MS(10)); /* all parked: quiet */
  char *t = scrape(r);
  CHECK(t != NULL);
  CHECK_EQ(sample(t, "weft_coroutines"), weft_coroutine_count());
  CHECK_EQ(sample(t, "weft_coroutines"), 21);
  CHECK_EQ(sample(t, "weft_procs"), 4);
  CHECK(sample(t, "weft_threads") >= 4);
  CHECK(sample(t, "weft_sched_switches_total") >= 20);
  CHECK(sample(t, "weft_sched_steals_total") >= 0);
  CHECK(sample(t, "weft_poller_waits_total") >= 0);
  CHECK(sample(t, "weft_runnable") >= 0);
  CHECK(sample(t, "weft_timers") >= 0);
  CHECK_EQ(sample(t, "weft_io_waiters"), 0);
  CHECK(sample(t, "weft_blocking_busy") >= 0);
  CHECK(sample(t, "weft_blocking_queued") >= 0);
  CHECK(sample(t, "weft_stack_bytes") > 0);
  double idle[4];
  for (int i = 0; i < 4; i++) {
    char series[64];
    snprintf(series, sizeof series, "weft_proc_idle_seconds_total{proc=\"%d\"}", i);
    idle[i] = sample(t, series);
    CHECK(!isnan(idle[i]) && idle[i] >= 0);
  }
  CHECK(isnan(sample(t, "weft_proc_idle_seconds_total{proc=\"4\"}")));
  CHECK(strstr(t, "# TYPE weft_sched_switches_total counter\n") != NULL);
  CHECK(strstr(t, "# TYPE weft_coroutines gauge\n") != NULL);
  free(t);
  weft_chan_close(gate.ch);
  weft_wg_wait(&gate.wg);
  weft_chan_release(gate.ch);
  /* Done, but maybe not yet returned: give them a moment. */
  for (int i = 0; i < 1000 && weft_coroutine_count() > 1; i++)
    weft_sleep(MS(1));
  t = scrape(r);
  CHECK_EQ(sample(t, "weft_coroutines"), 1);
  for (int i = 0; i < 4; i++) { /* idle time only grows (it is added when a thread wakes) */
    char series[64];
    snprintf(series, sizeof series, "weft_proc_idle_seconds_total{proc=\"%d\"}", i);
    CHECK(sample(t, series) >= idle[i]);
  }
  free(t);
  weft_metrics_registry_free(r);
  return 0;
}

static void test_runtime_metrics(void **state)
{
  checks_reset();
  assert_int_equal(run_weft(4, runtime_main, NULL), 0);
  ASSERT_NO_CHECK_FAILED();
  /* No runtime: the collector says nothing. */
  weft_metrics_registry *r = weft_metrics_registry_new();
  assert_int_equal(weft_metrics_register_runtime(r), 0);
  char *t = scrape(r);
  assert_string_equal(t, "");
  free(t);
  weft_metrics_registry_free(r);
}

/* ---- the process's metrics ---- */

static void test_process_metrics(void **state)
{
  weft_metrics_registry *r = weft_metrics_registry_new();
  assert_int_equal(weft_metrics_register_process(r), 0);
  assert_int_equal(weft_metrics_register_process(r), -EEXIST);
  /* Burn a little CPU so the CPU time is visible. */
  volatile double x = 0;
  for (int i = 0; i < 20000000; i++)
    x += i * 0.5;
  char *t = scrape(r);
  assert_non_null(t);
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  assert_true(sample(t, "process_max_fds") == (double)rl.rlim_cur);
  long fds = 0;
  DIR *d = opendir("/proc/self/fd");
  for (struct dirent *e; (e = readdir(d));)
    fds += e->d_name[0] != '.';
  closedir(d);
  double open_fds = sample(t, "process_open_fds");
  assert_true(open_fds >= 3 && fabs(open_fds - (double)fds) <= 2);
  double rss = sample(t, "process_resident_memory_bytes");
  double vsz = sample(t, "process_virtual_memory_bytes");
  assert_true(rss > 1 << 20 && vsz >= rss);
  double start = sample(t, "process_start_time_seconds");
  double now = (double)time(NULL);
  assert_true(start > now - 600 && start <= now + 1);
  double cpu = sample(t, "process_cpu_seconds_total");
  assert_true(cpu > 0 && cpu < 600);
  assert_non_null(strstr(t, "# TYPE process_cpu_seconds_total counter\n"));
  assert_non_null(strstr(t, "# HELP process_resident_memory_bytes Resident memory size in "
                            "bytes.\n# TYPE process_resident_memory_bytes gauge\n"));
  free(t);
  weft_metrics_registry_free(r);
}

/* ---- the default registry ---- */

static void test_default_registry(void **state)
{
  weft_metrics_registry *d = weft_metrics_default();
  assert_non_null(d);
  assert_ptr_equal(weft_metrics_default(), d);
  weft_metrics_registry_free(d); /* ignored */
  weft_counter *c;
  assert_int_equal(weft_counter_new(NULL, "default_test_total", "In the default.", &c), 0);
  weft_counter_inc(c);
  assert_int_equal(weft_metrics_register_runtime(NULL), -EEXIST);
  assert_int_equal(weft_metrics_register_process(d), -EEXIST);
  char *t = scrape(NULL);
  assert_true(sample(t, "default_test_total") == 1);
  assert_false(isnan(sample(t, "process_open_fds")));
  free(t);
}

/* ---- JSON ---- */

static void check_sorted_keys(json_t *obj)
{
  const char *prev = NULL;
  const char *key;
  json_t *v;
  json_object_foreach(obj, key, v)
  {
    if (prev)
      assert_true(strcmp(prev, key) < 0);
    prev = key;
    if (json_is_object(v))
      check_sorted_keys(v);
  }
}

static json_t *parse_json(weft_metrics_registry *r)
{
  char *t = scrape_json(r);
  assert_non_null(t);
  assert_true(strlen(t) > 0 && t[strlen(t) - 1] == '\n');
  json_error_t err;
  json_t *root = json_loads(t, 0, &err);
  if (!root)
    fprintf(stderr, "bad JSON (%s): %s\n", err.text, t);
  assert_non_null(root);
  free(t);
  check_sorted_keys(root); /* jansson keeps the order of the text */
  return root;
}

static void test_json(void **state)
{
  weft_metrics_registry *r = build_sample_registry();
  json_t *root = parse_json(r);
  assert_true(json_is_array(json_object_get(root, "cmdline")));
  assert_true(json_array_size(json_object_get(root, "cmdline")) >= 1);
  assert_non_null(strstr(json_string_value(json_array_get(json_object_get(root, "cmdline"), 0)),
                         "obs_test_metrics"));
  assert_true(json_is_null(json_object_get(root, "runtime")));
  assert_int_equal(json_integer_value(json_object_get(root, "a_total")), 0);
  assert_true(json_real_value(json_object_get(root, "temperature_celsius")) == -3.25);
  json_t *req = json_object_get(root, "http_requests_total");
  assert_int_equal(json_object_size(req), 3);
  assert_int_equal(json_integer_value(json_object_get(req, "code=\"200\",method=\"GET\"")), 3);
  assert_true(json_real_value(json_object_get(req, "code=\"200\",method=\"POST\"")) == 2.5);
  json_t *spec = json_object_get(root, "specials");
  assert_string_equal(json_string_value(json_object_get(spec, "v=\"nan\"")), "NaN");
  assert_string_equal(json_string_value(json_object_get(spec, "v=\"inf\"")), "+Inf");
  assert_string_equal(json_string_value(json_object_get(spec, "v=\"ninf\"")), "-Inf");
  assert_int_equal(json_object_size(json_object_get(root, "empty_total")), 0);
  assert_true(json_is_object(json_object_get(root, "empty_total")));
  assert_non_null(
      json_object_get(json_object_get(root, "escape_test"), "path=\"a\\\"b\\\\c\\nd\""));
  json_t *rpc = json_object_get(root, "rpc_duration_seconds");
  assert_int_equal(json_integer_value(json_object_get(rpc, "count")), 4);
  assert_true(json_real_value(json_object_get(rpc, "sum")) == 4.125);
  json_t *b = json_object_get(rpc, "buckets");
  assert_int_equal(json_array_size(b), 3);
  assert_true(json_number_value(json_array_get(json_array_get(b, 0), 0)) == 0.25);
  assert_int_equal(json_integer_value(json_array_get(json_array_get(b, 0), 1)), 2);
  assert_true(json_number_value(json_array_get(json_array_get(b, 2), 0)) == 1);
  assert_int_equal(json_integer_value(json_array_get(json_array_get(b, 2), 1)), 3);
  json_t *write = json_object_get(json_object_get(root, "lat_seconds"), "op=\"write\"");
  assert_int_equal(json_integer_value(json_object_get(write, "count")), 2);
  assert_int_equal(json_array_size(json_object_get(write, "buckets")), 2);
  json_decref(root);
  weft_metrics_registry_free(r);
}

static int json_main(void *arg)
{
  weft_metrics_registry *r = weft_metrics_registry_new();
  weft_metrics_register_runtime(r);
  weft_metrics_register_process(r);
  char *t = scrape_json(r);
  json_t *root = t ? json_loads(t, 0, NULL) : NULL;
  CHECK(root != NULL);
  json_t *rt = json_object_get(root, "runtime");
  CHECK(json_is_object(rt));
  const char *ints[] = {"coroutines",    "runnable",        "procs",      "blocking_threads",
                        "blocking_busy", "blocking_queued", "switches",   "steals",
                        "poller_waits",  "timers",          "io_waiters", "stack_bytes",
                        "uptime_ns",     "now_ns"};
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
    CHECK(json_is_integer(json_object_get(rt, ints[i])));
  CHECK_EQ(json_object_size(rt), sizeof ints / sizeof ints[0] + 1);
  CHECK_EQ(json_integer_value(json_object_get(rt, "procs")), 2);
  CHECK_EQ(json_integer_value(json_object_get(rt, "coroutines")), 1);
  CHECK_EQ(json_array_size(json_object_get(rt, "proc_idle_ns")), 2);
  CHECK(json_integer_value(json_object_get(rt, "now_ns")) <= weft_now());
  CHECK_EQ(json_integer_value(json_object_get(root, "weft_coroutines")), 1);
  json_t *idle = json_object_get(root, "weft_proc_idle_seconds_total");
  CHECK(json_is_number(json_object_get(idle, "proc=\"1\"")));
  CHECK(json_integer_value(json_object_get(root, "process_open_fds")) > 2);
  json_decref(root);
  free(t);
  weft_metrics_registry_free(r);
  return 0;
}

static void test_json_runtime(void **state)
{
  checks_reset();
  assert_int_equal(run_weft(2, json_main, NULL), 0);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- promtool, when it is installed (not a dependency: Debian's prometheus package) ---- */

static const char *find_promtool(void)
{
  const char *env = getenv("WEFT_PROMTOOL");
  if (env && access(env, X_OK) == 0)
    return env;
  return system("command -v promtool >/dev/null 2>&1") == 0 ? "promtool" : NULL;
}

static int promtool_main(void *arg)
{
  const char *promtool = arg;
  weft_metrics_registry *r = weft_metrics_registry_new();
  weft_metrics_register_runtime(r);
  weft_metrics_register_process(r);
  weft_counter_vec *req;
  weft_histogram_vec *lat;
  weft_gauge *g;
  weft_counter_vec_new(r, "http_requests_total", "Requests.\nServed.", 2,
                       (const char *[]){"code", "path"}, &req);
  weft_histogram_vec_new(r, "http_request_duration_seconds", "Latency \\ of requests.", 0, NULL,
                         1, (const char *[]){"path"}, &lat);
  weft_gauge_new(r, "queue_ratio", "Special values.", &g);
  weft_gauge_set(g, NAN);
  weft_counter_inc(weft_counter_vec_with(req, "200", "/a\"b\\c\nd"));
  weft_counter_add(weft_counter_vec_with(req, "500", "/caf\xc3\xa9"), 0.25);
  weft_histogram_observe(weft_histogram_vec_with(lat, "/"), 0.02);
  weft_histogram_observe(weft_histogram_vec_with(lat, "/x"), 1e-9);
  char path[] = "/tmp/weft-metrics-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  FILE *f = fdopen(fd, "w");
  CHECK_EQ(weft_metrics_write_prometheus(r, f), 0);
  fclose(f);
  char cmd[512];
  snprintf(cmd, sizeof cmd, "%s check metrics < %s >%s.out 2>&1", promtool, path, path);
  int st = system(cmd);
  if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
    snprintf(cmd, sizeof cmd, "cat %s.out %s >&2", path, path);
    (void)!system(cmd);
  }
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  snprintf(cmd, sizeof cmd, "%s.out", path);
  unlink(cmd);
  unlink(path);
  weft_metrics_registry_free(r);
  return 0;
}

static void test_promtool(void **state)
{
  const char *promtool = find_promtool();
  if (!promtool) {
    fprintf(stderr, "promtool not found (set WEFT_PROMTOOL): skipped\n");
    skip();
  }
  checks_reset();
  assert_int_equal(run_weft(2, promtool_main, (void *)promtool), 0);
  ASSERT_NO_CHECK_FAILED();
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_validation),
      cmocka_unit_test(test_buckets),
      cmocka_unit_test(test_exposition_exact),
      cmocka_unit_test(test_value_format),
      cmocka_unit_test(test_collectors),
      cmocka_unit_test(test_concurrent_coroutines),
      cmocka_unit_test(test_concurrent_threads),
      cmocka_unit_test(test_runtime_metrics),
      cmocka_unit_test(test_process_metrics),
      cmocka_unit_test(test_default_registry),
      cmocka_unit_test(test_json),
      cmocka_unit_test(test_json_runtime),
      cmocka_unit_test(test_promtool),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
