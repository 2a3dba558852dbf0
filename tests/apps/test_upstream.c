/* Tests of weft-upstream (apps/etl/upstream/), the enrichment pipeline's test upstream
 * (shared/specs/etl.md, "Test upstream").
 *
 * Each test starts the built weft-upstream as a child process on a free loopback port
 * (bound to port 0, read back, closed, passed to --listen), its output in a log file under
 * a fresh temporary directory, and waits until /healthz answers. Requests go over plain
 * blocking sockets with receive timeouts, on keep-alive connections (struct client) or one
 * connection per request; responses are parsed here (Content-Length bodies, which is all
 * the upstream sends) and JSON bodies with jansson. Every child is killed in teardown if it
 * is still alive, so a test is bounded in time. Statistical checks (error rate, latency)
 * use bounds several standard deviations wide: they fail only when the behaviour is wrong.
 * WEFT_UPSTREAM_BIN runs the tests against another binary. */
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include "child.h"
#include "coro_check.h"
#include "fixture.h"
#include "http.h"
#include "weft_test.h"

static double mono_s(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ---- HTTP ---- */

/* A keep-alive connection to the upstream, opened on first use and after a close. */
struct client {
  int port;
  int fd; /* -1 when not connected */
};

static void client_close(struct client *c)
{
  if (c->fd >= 0)
    close(c->fd);
  c->fd = -1;
}

/* One request on c (reconnecting once if a kept-alive connection was closed meanwhile).
 * r->status is 0 when no response came. */
static void request(struct client *c, const char *method, const char *path, struct resp *r)
{
  memset(r, 0, sizeof *r);
  for (int attempt = 0; attempt < 2; attempt++) {
    bool fresh = c->fd < 0;
    if (fresh && (c->fd = connect_to(c->port)) < 0)
      return;
    char req[1024];
    int n =
        snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", method, path);
    if (send(c->fd, req, (size_t)n, MSG_NOSIGNAL) == n && read_resp(c->fd, r)) {
      if (r->closing)
        client_close(c);
      return;
    }
    client_close(c);
    if (fresh)
      return;
  }
}

static void get(int port, const char *path, struct resp *r)
{
  struct client c = {port, -1};
  request(&c, "GET", path, r);
  client_close(&c);
}

/* ---- starting and stopping ---- */

static void start_upstream(struct daemon *u, const char *const *args)
{
  memset(u, 0, sizeof *u);
  u->port = free_port();
  char listen[64];
  snprintf(listen, sizeof listen, "127.0.0.1:%d", u->port);
  const char *argv[MAX_ARGV] = {"--listen", listen};
  int n = 2;
  for (int i = 0; args && args[i]; i++)
    argv[n++] = args[i];
  argv[n] = NULL;
  spawn_daemon_into(u, "upstream", argv, NULL, -1);
  for (;;) {
    struct resp r;
    get(u->port, "/healthz", &r);
    int st = r.status;
    resp_free(&r);
    if (st == 200)
      return;
    if (wait_exit(u, 0) || mono_ms() > u->spawned + 20000) {
      dump_log(u);
      fail_msg("weft-upstream did not come up (status %d)", u->status);
    }
    sleep_ms(10);
  }
}

/* SIGTERM; the child must exit 0 within 10 s. */
static void stop_upstream(struct daemon *u)
{
  send_signal(u->pid, SIGTERM);
  if (!wait_exit(u, 10000)) {
    kill(u->pid, SIGKILL);
    wait_exit(u, 5000);
    dump_log(u);
    fail_msg("weft-upstream did not exit within 10 s of SIGTERM");
  }
  if (!WIFEXITED(u->status) || WEXITSTATUS(u->status) != 0) {
    dump_log(u);
    fail_msg("weft-upstream exited with status %d after SIGTERM (want 0)", u->status);
  }
}

/* upstream_requests_total{api=api,code=code} from /metrics (-1 when absent). */
static long metric_requests(int port, const char *api, const char *code)
{
  struct resp r;
  get(port, "/metrics", &r);
  assert_int_equal(r.status, 200);
  char key[128];
  snprintf(key, sizeof key, "upstream_requests_total{api=\"%s\",code=\"%s\"} ", api, code);
  const char *p = strstr(r.body, key);
  long v = p ? atol(p + strlen(key)) : -1;
  resp_free(&r);
  return v;
}

static const char *jstr(const struct resp *r, const char *key)
{
  json_t *v = json_object_get(r->json, key);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

static bool is_country(const char *s)
{
  return s && strlen(s) == 2 && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z';
}

/* A 200 answer of api for path, its JSON checked against the contract's shape. */
static void expect_answer(const struct resp *r, const char *api, const char *id)
{
  if (r->status != 200 || !json_is_object(r->json))
    fail_msg("%s %s: want 200 and a JSON object, got %d %s", api, id, r->status,
             r->body ? r->body : "");
  assert_non_null(strcasestr(r->head, "\r\nContent-Type: application/json"));
  if (!strcmp(api, "users")) {
    assert_string_equal(jstr(r, "user_id"), id);
    const char *tier = jstr(r, "tier");
    assert_non_null(tier);
    assert_true(!strcmp(tier, "free") || !strcmp(tier, "silver") || !strcmp(tier, "gold") ||
                !strcmp(tier, "platinum"));
    assert_true(is_country(jstr(r, "country")));
  } else if (!strcmp(api, "geo")) {
    assert_string_equal(jstr(r, "ip"), id);
    assert_true(is_country(jstr(r, "country")));
    assert_true(jstr(r, "city") && *jstr(r, "city"));
  } else {
    assert_string_equal(jstr(r, "currency"), id);
    json_t *rate = json_object_get(r->json, "usd_rate");
    assert_true(json_is_number(rate) && json_number_value(rate) > 0);
    if (!strcmp(id, "USD"))
      assert_true(json_number_value(rate) == 1.0);
  }
}

static bool is_error(const struct resp *r, int status, const char *code)
{
  return r->status == status && json_is_object(r->json) && jstr(r, "error") &&
         !strcmp(jstr(r, "error"), code) && jstr(r, "message");
}

/* ---- tests ---- */

/* The same path gets the same bytes: twice from one process and from a second process
 * with the same seed; another seed gives other data. */
static void test_determinism(void **state)
{
  (void)state;
  static const char *const ids[] = {"alice", "bob", "u-1", "u-2", "u-3", "u-4", "u-5", "u-6"};
  enum { N = sizeof ids / sizeof *ids };
  struct daemon a, b, c;
  start_upstream(&a, ARGS("--api", "users", "--seed", "42"));
  start_upstream(&b, ARGS("--api", "users", "--seed", "42"));
  start_upstream(&c, ARGS("--api", "users", "--seed", "43"));
  struct client ca = {a.port, -1}, cb = {b.port, -1}, cc = {c.port, -1};
  int differs = 0;
  for (int i = 0; i < N; i++) {
    char path[64];
    snprintf(path, sizeof path, "/users/%s", ids[i]);
    struct resp r1, r2, r3, r4;
    request(&ca, "GET", path, &r1);
    request(&ca, "GET", path, &r2);
    request(&cb, "GET", path, &r3);
    request(&cc, "GET", path, &r4);
    expect_answer(&r1, "users", ids[i]);
    expect_answer(&r4, "users", ids[i]);
    assert_string_equal(r1.body, r2.body);
    assert_string_equal(r1.body, r3.body);
    differs += strcmp(r1.body, r4.body) != 0;
    resp_free(&r1), resp_free(&r2), resp_free(&r3), resp_free(&r4);
  }
  if (differs == 0)
    fail_msg("seeds 42 and 43 gave the same data for all %d users", N);
  client_close(&ca), client_close(&cb), client_close(&cc);
  stop_upstream(&a), stop_upstream(&b), stop_upstream(&c);
}

/* Each API answers in its shape; fx answers 1.0 for USD; a percent-encoded id is decoded. */
static void test_answers(void **state)
{
  (void)state;
  static const struct {
    const char *api, *path, *id;
  } cases[] = {{"geo", "/geo/203.0.113.7", "203.0.113.7"},
               {"geo", "/geo/2001:db8::1", "2001:db8::1"},
               {"fx", "/rates/USD", "USD"},
               {"fx", "/rates/EUR", "EUR"},
               {"fx", "/rates/JPY", "JPY"},
               {"users", "/users/a%20b", "a b"}};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    struct daemon u;
    start_upstream(&u, ARGS("--api", cases[i].api, "--log-level", "warn"));
    struct resp r;
    get(u.port, cases[i].path, &r);
    expect_answer(&r, cases[i].api, cases[i].id);
    resp_free(&r);
    stop_upstream(&u);
  }
}

/* 404 for a last segment ending in 404 and for unknown paths, 405 for other methods, all
 * with JSON error bodies, and every answer counted on /metrics by status. */
static void test_not_found_and_metrics(void **state)
{
  (void)state;
  struct daemon u;
  start_upstream(&u, ARGS("--api", "users"));
  struct client c = {u.port, -1};
  struct resp r;
  static const char *const not_found[] = {"/users/x404", "/users/404",   "/nope",
                                          "/users/a/b",  "/geo/1.2.3.4", "/rates/EUR"};
  for (size_t i = 0; i < sizeof not_found / sizeof *not_found; i++) {
    request(&c, "GET", not_found[i], &r);
    if (!is_error(&r, 404, "not_found"))
      fail_msg("%s: want 404 not_found, got %d %s", not_found[i], r.status, r.body);
    resp_free(&r);
  }
  request(&c, "GET", "/users/x4040", &r); /* ends in 4040, not 404 */
  expect_answer(&r, "users", "x4040");
  resp_free(&r);
  request(&c, "POST", "/users/alice", &r);
  if (!is_error(&r, 405, "method_not_allowed"))
    fail_msg("POST: want 405, got %d %s", r.status, r.body);
  resp_free(&r);
  for (int i = 0; i < 5; i++) {
    request(&c, "GET", "/users/alice", &r);
    expect_answer(&r, "users", "alice");
    resp_free(&r);
  }
  client_close(&c);
  assert_int_equal(metric_requests(u.port, "users", "200"), 6);
  assert_int_equal(metric_requests(u.port, "users", "404"), 6);
  assert_int_equal(metric_requests(u.port, "users", "405"), 1);
  assert_int_equal(metric_requests(u.port, "users", "503"), 0);
  stop_upstream(&u);
}

/* --error-rate 0.2 over 2,000 requests: the 503s within 5 standard deviations of 400
 * (binomial: sd 17.9), the counter agrees, and answers that are not 503 do not depend on
 * the draw. */
static void test_error_rate(void **state)
{
  (void)state;
  enum { N = 2000 };
  struct daemon u;
  start_upstream(&u, ARGS("--api", "geo", "--error-rate", "0.2", "--seed", "7"));
  struct client c = {u.port, -1};
  char first[4][256] = {{0}};
  int errors = 0;
  for (int i = 0; i < N; i++) {
    char path[64];
    snprintf(path, sizeof path, "/geo/10.0.0.%d", i % 4);
    struct resp r;
    request(&c, "GET", path, &r);
    if (r.status == 503) {
      assert_true(is_error(&r, 503, "unavailable"));
      errors++;
    } else {
      expect_answer(&r, "geo", path + 5);
      if (!first[i % 4][0])
        snprintf(first[i % 4], sizeof first[i % 4], "%s", r.body);
      assert_string_equal(first[i % 4], r.body);
    }
    resp_free(&r);
  }
  client_close(&c);
  fprintf(stderr, "error rate 0.2: %d of %d answered 503\n", errors, N);
  if (errors < 310 || errors > 490)
    fail_msg("%d of %d answered 503 with --error-rate 0.2 (want 400 +- 90)", errors, N);
  assert_int_equal(metric_requests(u.port, "geo", "503"), errors);
  assert_int_equal(metric_requests(u.port, "geo", "200"), N - errors);
  stop_upstream(&u);
}

/* Latency samples, from several threads at once so that the delays overlap. */
enum { LAT_THREADS = 4, LAT_EACH = 100 };

struct lat_job {
  int port;
  double ms[LAT_EACH];
  int failed;
};

static void *lat_run(void *arg)
{
  struct lat_job *j = arg;
  struct client c = {j->port, -1};
  for (int i = 0; i < LAT_EACH; i++) {
    char path[64];
    snprintf(path, sizeof path, "/rates/C%02d", i % 50);
    struct resp r;
    double t0 = mono_s();
    request(&c, "GET", path, &r);
    j->ms[i] = (mono_s() - t0) * 1e3;
    j->failed += r.status != 200;
    resp_free(&r);
  }
  client_close(&c);
  return NULL;
}

static int cmp_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* --latency-median 20ms --latency-p99 100ms: measured median and 99th percentile within
 * generous bounds (the client adds a little, sanitizers more). */
static void test_latency(void **state)
{
  (void)state;
  struct daemon u;
  start_upstream(&u, ARGS("--api", "fx", "--latency-median", "20ms", "--latency-p99", "100ms",
                          "--seed", "3"));
  static struct lat_job jobs[LAT_THREADS];
  pthread_t th[LAT_THREADS];
  for (int i = 0; i < LAT_THREADS; i++) {
    jobs[i] = (struct lat_job){.port = u.port};
    assert_int_equal(pthread_create(&th[i], NULL, lat_run, &jobs[i]), 0);
  }
  static double all[LAT_THREADS * LAT_EACH];
  int n = 0, failed = 0;
  for (int i = 0; i < LAT_THREADS; i++) {
    pthread_join(th[i], NULL);
    failed += jobs[i].failed;
    for (int k = 0; k < LAT_EACH; k++)
      all[n++] = jobs[i].ms[k];
  }
  assert_int_equal(failed, 0);
  qsort(all, (size_t)n, sizeof *all, cmp_double);
  double median = all[n / 2], p99 = all[n * 99 / 100], min = all[0];
  fprintf(stderr, "latency 20ms/100ms: min %.1f median %.1f p99 %.1f ms over %d\n", min, median,
          p99, n);
  if (median < 15 || median > 30)
    fail_msg("median latency %.1f ms (want about 20)", median);
  if (p99 < 55 || p99 > (SANITIZED ? 600 : 300))
    fail_msg("p99 latency %.1f ms (want about 100)", p99);
  stop_upstream(&u);
}

/* Refuse mode: an open keep-alive connection is cut when the window starts, new ones are
 * refused during it, and the API answers again on the same port after it. */
static void test_outage_refuse(void **state)
{
  (void)state;
  struct daemon u;
  start_upstream(&u, ARGS("--api", "users", "--outage", "1500ms:1500ms"));
  struct client kept = {u.port, -1};
  struct resp r;
  request(&kept, "GET", "/users/alice", &r);
  expect_answer(&r, "users", "alice");
  resp_free(&r);
  assert_true(mono_ms() < u.spawned + 1400); /* else the machine is too slow for the test */
  /* Wait into the window (it starts 1.5 s after the child's runtime, a little after spawn). */
  int64_t down_at = 0, up_at = 0;
  while (!down_at && mono_ms() < u.spawned + 6000) {
    int fd = connect_to(u.port);
    if (fd < 0)
      down_at = mono_ms();
    else
      close(fd);
    sleep_ms(20);
  }
  if (!down_at)
    fail_msg("connections were never refused");
  assert_true(down_at - u.spawned >= 1450);
  /* The kept connection was cut: nothing comes back on it. */
  char req[] = "GET /users/alice HTTP/1.1\r\nHost: x\r\n\r\n";
  bool cut = send(kept.fd, req, sizeof req - 1, MSG_NOSIGNAL) < 0 || !read_resp(kept.fd, &r);
  resp_free(&r);
  client_close(&kept);
  assert_true(cut);
  while (!up_at && mono_ms() < u.spawned + 10000) {
    get(u.port, "/users/alice", &r);
    if (r.status == 200)
      up_at = mono_ms();
    resp_free(&r);
    sleep_ms(20);
  }
  if (!up_at)
    fail_msg("the API did not come back after the outage");
  fprintf(stderr, "refused from %lld ms to %lld ms after spawn\n",
          (long long)(down_at - u.spawned), (long long)(up_at - u.spawned));
  assert_true(up_at - u.spawned >= 2950);
  assert_true(up_at - down_at >= 1000);
  stop_upstream(&u);
}

/* Stall mode: a request made in the window is answered at its end; /healthz is not held. */
static void test_outage_stall(void **state)
{
  (void)state;
  struct daemon u;
  start_upstream(&u, ARGS("--api", "users", "--outage", "1s:1500ms", "--outage-mode", "stall"));
  while (mono_ms() < u.spawned + 1200)
    sleep_ms(10);
  struct resp r;
  int64_t t0 = mono_ms();
  get(u.port, "/healthz", &r);
  assert_int_equal(r.status, 200);
  assert_true(mono_ms() - t0 < 500);
  resp_free(&r);
  t0 = mono_ms();
  get(u.port, "/users/alice", &r);
  int64_t took = mono_ms() - t0, done_at = mono_ms() - u.spawned;
  expect_answer(&r, "users", "alice");
  resp_free(&r);
  fprintf(stderr, "stalled request took %lld ms, answered %lld ms after spawn\n",
          (long long)took, (long long)done_at);
  assert_true(took >= 500);
  assert_true(done_at >= 2450);
  t0 = mono_ms();
  get(u.port, "/users/alice", &r); /* after the window: at once */
  assert_int_equal(r.status, 200);
  assert_true(mono_ms() - t0 < 500);
  resp_free(&r);
  stop_upstream(&u);
}

/* Bad flags: exit 2 with one line on stderr, before listening. */
static void test_bad_flags(void **state)
{
  (void)state;
  const char *const *const cases[] = {
      ARGS("--listen", "127.0.0.1:0"),
      ARGS("--api", "orders", "--listen", "127.0.0.1:0"),
      ARGS("--api", "users"),
      ARGS("--api", "users", "--listen", "127.0.0.1:0", "--error-rate", "1.5"),
      ARGS("--api", "users", "--listen", "127.0.0.1:0", "--error-rate", "x"),
      ARGS("--api", "users", "--listen", "127.0.0.1:0", "--outage", "5s"),
      ARGS("--api", "users", "--listen", "127.0.0.1:0", "--outage", "5s:0s"),
      ARGS("--api", "users", "--listen", "127.0.0.1:0", "--outage-mode", "explode"),
      ARGS("--api", "users", "--listen", "127.0.0.1:0", "--latency-p99", "10ms"),
      ARGS("--api", "users", "--listen", "127.0.0.1:0", "--latency-median", "20ms",
           "--latency-p99", "10ms"),
      ARGS("--api", "users", "--listen", "127.0.0.1:0", "--latency-median", "soon"),
      ARGS("--api", "users", "--listen", "127.0.0.1:0", "--seed", "-1"),
      ARGS("--api", "users", "--listen", "127.0.0.1:0", "--log-level", "loud"),
      ARGS("--api", "users", "--listen", "127.0.0.1:0", "--bogus", "1"),
      ARGS("--api", "users", "--listen", "127.0.0.1:0", "stray"),
      ARGS("--api", "users", "--listen"),
      NULL, /* --listen on a port in use: filled in below */
  };
  enum { NCASES = sizeof cases / sizeof *cases };
  /* A port in use: a listening socket of this process. */
  int busy = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t alen = sizeof a;
  assert_int_equal(bind(busy, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(busy, 1), 0);
  assert_int_equal(getsockname(busy, (struct sockaddr *)&a, &alen), 0);
  char in_use[64];
  snprintf(in_use, sizeof in_use, "127.0.0.1:%d", ntohs(a.sin_port));
  for (size_t i = 0; i < NCASES; i++) {
    struct daemon u = {0};
    snprintf(u.log, sizeof u.log, "%s/bad-%zu.log", tmp_dir, i);
    u.pid = spawn_child(cases[i] ? cases[i] : ARGS("--api", "fx", "--listen", in_use), NULL, -1,
                        u.log);
    if (!wait_exit(&u, 10000))
      fail_msg("case %zu: still running after 10 s", i);
    char *out = slurp(u.log);
    size_t lines = 0;
    for (char *p = out; *p; p++)
      lines += *p == '\n';
    if (!WIFEXITED(u.status) || WEXITSTATUS(u.status) != 2 || lines != 1)
      fail_msg("case %zu: status %d, output \"%s\" (want exit 2 and one line)", i, u.status,
               out);
    free(out);
  }
  close(busy);
}

static int setup(void **state)
{
  (void)state;
  if (!app_find_bin("WEFT_UPSTREAM_BIN", "apps/etl/weft-upstream")) {
    fprintf(stderr, "weft-upstream not built (%s): skipped\n", app_bin);
    skip();
  }
  app_make_tmp_dir("upstream");
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  reap_children(); /* after a failed check: no child outlives its test */
  app_remove_tmp_dir();
  return 0;
}

int main(int argc, char **argv)
{
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_determinism, setup, teardown),
      cmocka_unit_test_setup_teardown(test_answers, setup, teardown),
      cmocka_unit_test_setup_teardown(test_not_found_and_metrics, setup, teardown),
      cmocka_unit_test_setup_teardown(test_error_rate, setup, teardown),
      cmocka_unit_test_setup_teardown(test_latency, setup, teardown),
      cmocka_unit_test_setup_teardown(test_outage_refuse, setup, teardown),
      cmocka_unit_test_setup_teardown(test_outage_stall, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_flags, setup, teardown),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
