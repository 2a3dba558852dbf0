/* test_dashboard.c: the dashboard drawn by a real browser. The test program parks a known
 * number of coroutines, runs pools of workers that feed a counter, a gauge and a histogram,
 * and serves it all with the debug server on 127.0.0.1; Debian's Chromium, headless, loads
 * /debug/dashboard, lets it poll for a while (virtual time, so the run takes seconds) and
 * dumps the DOM and a screenshot. The test then reads the charts' data attributes: each has
 * several points, the coroutine count is what the program has alive, the blocking pool shows
 * the call that is running Chromium, and the registry's families got charts of their own
 * with the values the program set.
 *
 * A second run stops the server after a few polls: the page must say "server not
 * answering" and keep its charts.
 *
 * Artifacts, kept for a person to look at, in <build>/artifacts (WEFT_ARTIFACTS_DIR
 * overrides): dashboard.png (the screenshot), dashboard-dom.html, dashboard-chromium.log,
 * and the same three named dashboard-down* for the second run. Chromium
 * is found as "chromium" on PATH (WEFT_CHROMIUM overrides); when it is missing the test fails
 * and says how to install it. Only loopback is touched. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "coro_check.h"
#include "weft/debug_server.h"
#include "weft_test.h"

extern char **environ;

enum { PARKED = 120, POOLS = 2, WORKERS = 3 };

struct world {
  weft_chan *gate; /* the parked coroutines wait on it */
  weft_wg parked;  /* ... until they return */
  weft_chan *jobs; /* the producer sends, the pools' workers receive */
  weft_wg workers; /* producer and workers */
  atomic_int stop; /* the producer stops, then closes jobs */
  weft_counter *done[POOLS];
  weft_histogram *latency;
  weft_metrics_registry *reg;
  char url[128];
  char art[PATH_MAX];     /* the artifacts directory */
  char profile[PATH_MAX]; /* Chromium's fresh user data directory */
  const char *name;       /* artifact names: NAME.png, NAME-dom.html, NAME-chromium.log */
  int budget_ms;          /* Chromium's virtual time budget */
  int stop_after;         /* > 0: stop the server after this many scrapes */
  atomic_int scrapes;     /* collector calls: one per /metrics or /debug/vars */
  atomic_int chromium_done;
  weft_wg watcher; /* the coroutine that stops the server early */
  weft_debug_server *srv;
  long alive;          /* weft_coroutine_count() while Chromium runs */
  int chromium_status; /* its exit status, or -errno when it could not start */
};

struct worker_arg {
  struct world *w;
  int pool;
};

static void parked(void *arg)
{
  struct world *w = arg;
  int v;
  weft_chan_recv(w->gate, &v, WEFT_NO_DEADLINE);
  weft_wg_done(&w->parked);
}

static void producer(void *arg)
{
  struct world *w = arg;
  for (int64_t i = 0; !atomic_load(&w->stop); i++) {
    int64_t sent = weft_now();
    weft_chan_send(w->jobs, &sent, WEFT_NO_DEADLINE);
    if (i % 8 == 0)
      weft_sleep(MS(1));
  }
  weft_chan_close(w->jobs);
  weft_wg_done(&w->workers);
}

static void worker(void *arg)
{
  struct worker_arg *a = arg;
  int64_t sent;
  while (weft_chan_recv(a->w->jobs, &sent, WEFT_NO_DEADLINE) == 0) {
    weft_histogram_observe_ns(a->w->latency, weft_now() - sent);
    weft_counter_inc(a->w->done[a->pool]);
  }
  weft_wg_done(&a->w->workers);
}

/* ---- Chromium ---- */

/* chromium_path: the browser to run, or NULL when there is none. */
static const char *chromium_path(void)
{
  const char *env = getenv("WEFT_CHROMIUM");
  if (env && *env)
    return access(env, X_OK) == 0 ? env : NULL;
  static char found[PATH_MAX];
  const char *path = getenv("PATH");
  char *copy = strdup(path ? path : "/usr/bin:/bin"), *save = NULL;
  const char *hit = NULL;
  for (char *dir = strtok_r(copy, ":", &save); dir && !hit; dir = strtok_r(NULL, ":", &save)) {
    snprintf(found, sizeof found, "%s/chromium", dir);
    if (access(found, X_OK) == 0)
      hit = found;
  }
  free(copy);
  return hit;
}

/* artifacts_dir: WEFT_ARTIFACTS_DIR, else <build>/artifacts beside <build>/tests/<this>. */
static void artifacts_dir(char *out, size_t len)
{
  const char *env = getenv("WEFT_ARTIFACTS_DIR");
  char exe[PATH_MAX] = "";
  if (env && *env) {
    snprintf(out, len, "%s", env);
  } else {
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = '\0';
    for (int up = 0; up < 2; up++) { /* strip the file name and tests/ */
      char *slash = strrchr(exe, '/');
      if (slash)
        *slash = '\0';
    }
    snprintf(out, len, "%s/artifacts", exe[0] ? exe : ".");
  }
  mkdir(out, 0755);
}

/* run_chromium: on a blocking-pool thread, run Chromium headless against w->url for
 * w->budget_ms of virtual time (at most 120 s of real time). */
static long run_chromium(void *arg)
{
  struct world *w = arg;
  char profile[PATH_MAX + 32], shot[PATH_MAX + 64], dom[PATH_MAX + 64], log[PATH_MAX + 64];
  char budget[48];
  snprintf(profile, sizeof profile, "--user-data-dir=%s", w->profile);
  snprintf(shot, sizeof shot, "--screenshot=%s/%s.png", w->art, w->name);
  snprintf(dom, sizeof dom, "%s/%s-dom.html", w->art, w->name);
  snprintf(log, sizeof log, "%s/%s-chromium.log", w->art, w->name);
  snprintf(budget, sizeof budget, "--virtual-time-budget=%d", w->budget_ms);
  const char *browser = chromium_path();
  char *argv[] = {"timeout",
                  "-k",
                  "10",
                  "120",
                  (char *)browser,
                  "--headless",
                  "--no-sandbox",
                  "--disable-gpu",
                  "--disable-quic",
                  "--no-first-run",
                  "--disable-background-networking",
                  "--disable-component-update",
                  "--disable-sync",
                  "--disable-dev-shm-usage",
                  profile,
                  "--window-size=1280,1500",
                  budget,
                  "--run-all-compositor-stages-before-draw",
                  shot,
                  "--dump-dom",
                  w->url,
                  NULL};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, dom, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid;
  int err = posix_spawnp(&pid, "timeout", &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (err)
    return -err;
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR)
      return -errno;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static long remove_profile(void *arg)
{
  struct world *w = arg;
  pid_t pid;
  char *argv[] = {"rm", "-rf", w->profile, NULL};
  if (posix_spawnp(&pid, "rm", NULL, NULL, argv, environ) == 0)
    waitpid(pid, NULL, 0);
  return 0;
}

/* ---- the program ---- */

/* count_scrapes: a collector, so the test knows how often the page has polled. */
static void count_scrapes(weft_metrics_emitter *em, void *arg)
{
  struct world *w = arg;
  atomic_fetch_add(&w->scrapes, 1);
}

static weft_metrics_registry *make_registry(struct world *w)
{
  weft_metrics_registry *reg = weft_metrics_registry_new();
  CHECK_EQ(weft_metrics_register_collector(reg, count_scrapes, w), 0);
  weft_counter_vec *done = NULL;
  weft_gauge *g = NULL;
  CHECK_EQ(weft_counter_vec_new(reg, "dash_jobs_total", "Jobs done, per pool.", 1,
                                (const char *[]){"pool"}, &done),
           0);
  w->done[0] = weft_counter_vec_with(done, "a");
  w->done[1] = weft_counter_vec_with(done, "b");
  CHECK_EQ(weft_gauge_new(reg, "dash_parked", "Coroutines parked by the test.", &g), 0);
  weft_gauge_set(g, PARKED);
  double buckets[12];
  weft_metrics_exponential_buckets(1e-6, 4, 12, buckets);
  CHECK_EQ(weft_histogram_new(reg, "dash_job_seconds", "From send to receive.", 12, buckets,
                              &w->latency),
           0);
  return reg;
}

static void start_load(struct world *w, struct worker_arg *args)
{
  w->gate = weft_chan_new(sizeof(int), 0);
  w->jobs = weft_chan_new(sizeof(int64_t), 16);
  weft_wg_init(&w->parked);
  weft_wg_init(&w->workers);
  weft_wg_add(&w->parked, PARKED);
  for (int i = 0; i < PARKED; i++)
    CHECK_EQ(weft_go_named(parked, w, "dash-parked"), 0);
  weft_wg_add(&w->workers, 1 + POOLS * WORKERS);
  for (int p = 0; p < POOLS; p++) {
    for (int i = 0; i < WORKERS; i++) {
      args[p * WORKERS + i] = (struct worker_arg){w, p};
      CHECK_EQ(weft_go_named(worker, &args[p * WORKERS + i], p ? "pool-b" : "pool-a"), 0);
    }
  }
  CHECK_EQ(weft_go_named(producer, w, "producer"), 0);
}

static void stop_load(struct world *w)
{
  atomic_store(&w->stop, 1);
  weft_wg_wait(&w->workers);
  weft_chan_close(w->gate);
  weft_wg_wait(&w->parked);
  weft_chan_release(w->jobs);
  weft_chan_release(w->gate);
}

/* watcher: stop the server once the page has scraped w->stop_after times, so the page's
 * later polls fail while Chromium still runs. */
static void watcher(void *arg)
{
  struct world *w = arg;
  while (atomic_load(&w->scrapes) < w->stop_after && !atomic_load(&w->chromium_done))
    weft_sleep(MS(1));
  if (!atomic_load(&w->chromium_done)) {
    CHECK_EQ(weft_debug_server_stop(w->srv, weft_now() + MS(10000)), 0);
    w->srv = NULL;
  }
  weft_wg_done(&w->watcher);
}

static int dashboard_main(void *arg)
{
  struct world *w = arg;
  struct worker_arg args[POOLS * WORKERS];
  w->reg = make_registry(w);
  start_load(w, args);
  weft_debug_server_options opts = {.addr = "127.0.0.1:0", .registry = w->reg};
  CHECK_EQ(weft_debug_server_start(&opts, &w->srv), 0);
  if (w->srv) {
    snprintf(w->url, sizeof w->url, "http://%s/debug/dashboard",
             weft_debug_server_addr(w->srv));
    weft_sleep(MS(50)); /* everything started and parked */
    w->alive = weft_coroutine_count();
    weft_wg_init(&w->watcher);
    if (w->stop_after > 0) {
      weft_wg_add(&w->watcher, 1);
      CHECK_EQ(weft_go(watcher, w), 0);
    }
    w->chromium_status = (int)weft_blocking(run_chromium, w);
    atomic_store(&w->chromium_done, 1);
    weft_wg_wait(&w->watcher);
    if (w->srv)
      CHECK_EQ(weft_debug_server_stop(w->srv, weft_now() + MS(10000)), 0);
  }
  stop_load(w);
  weft_blocking(remove_profile, w);
  weft_metrics_registry_free(w->reg);
  return 0;
}

/* ---- reading the DOM ---- */

/* read_file: the whole file, NUL-terminated (malloc'd), or NULL. */
static char *read_file(const char *path, size_t *len)
{
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  size_t got;
  while (buf && (got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
    n += got;
    if (n + 1 == cap)
      buf = realloc(buf, cap *= 2);
  }
  fclose(f);
  if (buf)
    buf[n] = '\0';
  if (len)
    *len = n;
  return buf;
}

/* attr: the value of attribute name in the tag carrying data-chart="chart" (HTML entities
 * left as they are), into out. Returns 0 or -1 when there is no such chart or attribute. */
static int attr(const char *dom, const char *chart, const char *name, char *out, size_t len)
{
  char key[160];
  snprintf(key, sizeof key, "data-chart=\"%s\"", chart);
  const char *tag = strstr(dom, key);
  if (!tag)
    return -1;
  while (tag > dom && *tag != '<')
    tag--;
  const char *end = strchr(tag, '>');
  snprintf(key, sizeof key, " %s=\"", name);
  const char *a = strstr(tag, key);
  if (!a || !end || a > end)
    return -1;
  a += strlen(key);
  snprintf(out, len, "%.*s", (int)strcspn(a, "\""), a);
  return 0;
}

static double num_attr(const char *dom, const char *chart, const char *name)
{
  char v[64];
  if (attr(dom, chart, name, v, sizeof v) != 0 || !v[0]) {
    fprintf(stderr, "chart \"%s\": no %s\n", chart, name);
    return -1;
  }
  return strtod(v, NULL);
}

/* expect_points: chart exists and drew at least min points. */
static void expect_points(const char *dom, const char *chart, int min)
{
  double points = num_attr(dom, chart, "data-points");
  if (points < min) {
    fprintf(stderr, "chart \"%s\": %g points, want at least %d\n", chart, points, min);
    fail();
  }
}

static void expect_range(const char *dom, const char *chart, double lo, double hi)
{
  double last = num_attr(dom, chart, "data-last");
  if (last < lo || last > hi) {
    fprintf(stderr, "chart \"%s\": last value %g, want %g..%g\n", chart, last, lo, hi);
    fail();
  }
}

/* read_dom: the DOM Chromium dumped, which must hold charts (malloc'd). */
static char *read_dom(const struct world *w)
{
  char path[PATH_MAX + 64];
  snprintf(path, sizeof path, "%s/%s-dom.html", w->art, w->name);
  char *dom = read_file(path, NULL);
  if (!dom || !strstr(dom, "data-chart=")) {
    snprintf(path, sizeof path, "%s/%s-chromium.log", w->art, w->name);
    char *log = read_file(path, NULL);
    fail_msg("no charts in the DOM Chromium dumped; its log:\n%s", log ? log : "(none)");
  }
  return dom;
}

static void check_dom(const struct world *w)
{
  char *dom = read_dom(w);
  assert_non_null(strstr(dom, "id=\"status\" data-state=\"ok\""));
  const char *charts[] = {"coroutines", "runnable", "utilisation", "blocking",
                          "switches",   "waits",    "stack_bytes"};
  for (size_t i = 0; i < sizeof charts / sizeof charts[0]; i++)
    expect_points(dom, charts[i], 3);
  /* Every coroutine the program had, plus the connections Chromium opened. */
  expect_range(dom, "coroutines", (double)w->alive, (double)w->alive + 8);
  expect_range(dom, "utilisation", 0, 100);
  expect_range(dom, "blocking", 1, 64); /* the call running Chromium */
  expect_range(dom, "stack_bytes", 1, 1e12);
  /* The registry's families, found by the page itself. */
  expect_points(dom, "metric:dash_parked", 3);
  expect_range(dom, "metric:dash_parked", PARKED, PARKED);
  expect_points(dom, "metric:dash_jobs_total", 2);
  /* A rate over the last poll interval: under virtual time (and TSan's slowness) two polls
   * can fall between two completed jobs, so 0 is possible; the gauges above prove the
   * data is real. */
  expect_range(dom, "metric:dash_jobs_total", 0, 1e12);
  expect_points(dom, "metric:dash_job_seconds", 1);
  char kind[32];
  assert_int_equal(attr(dom, "metric:dash_jobs_total", "data-kind", kind, sizeof kind), 0);
  assert_string_equal(kind, "counter");
  assert_int_equal(attr(dom, "metric:dash_job_seconds", "data-kind", kind, sizeof kind), 0);
  assert_string_equal(kind, "histogram");
  free(dom);
}

static void check_screenshot(const struct world *w)
{
  char path[PATH_MAX + 64];
  snprintf(path, sizeof path, "%s/%s.png", w->art, w->name);
  size_t len = 0;
  char *png = read_file(path, &len);
  if (!png)
    fail_msg("no screenshot at %s", path);
  assert_true(len > 20000); /* a page of charts, not a blank one */
  assert_memory_equal(png, "\x89PNG\r\n\x1a\n", 8);
  free(png);
  printf("screenshot: %s\n", path);
}

/* run_page: the program, Chromium against it, and the checks common to every run. */
static void run_page(struct world *w)
{
  if (!chromium_path())
    fail_msg("chromium not found on PATH (nor WEFT_CHROMIUM): install it with "
             "scripts/install-deps.sh (Debian package chromium)");
  artifacts_dir(w->art, sizeof w->art);
  snprintf(w->profile, sizeof w->profile, "/tmp/weft-chromium-XXXXXX");
  assert_non_null(mkdtemp(w->profile));
  checks_reset();
  assert_int_equal(run_weft(2, dashboard_main, w), 0);
  ASSERT_NO_CHECK_FAILED();
  if (w->chromium_status != 0)
    fail_msg("chromium exited with status %d (see %s/%s-chromium.log)", w->chromium_status,
             w->art, w->name);
  check_screenshot(w);
}

/* The page loads, polls, and its charts draw the program's real numbers. */
static void test_dashboard_in_chromium(void **state)
{
  static struct world w;
  memset(&w, 0, sizeof w);
  w.name = "dashboard";
  w.budget_ms = 20000;
  run_page(&w);
  check_dom(&w);
}

/* The server stops while the page is open: the status line says so and the charts keep
 * what they drew. */
static void test_dashboard_server_stops(void **state)
{
  static struct world w;
  memset(&w, 0, sizeof w);
  w.name = "dashboard-down";
  w.budget_ms = 60000;
  w.stop_after = 8;
  run_page(&w);
  char *dom = read_dom(&w);
  if (!strstr(dom, "id=\"status\" data-state=\"down\">server not answering since"))
    fail_msg("no \"server not answering\" status in %s/%s-dom.html", w.art, w.name);
  expect_points(dom, "coroutines", 3);
  expect_points(dom, "metric:dash_parked", 3);
  free(dom);
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_dashboard_in_chromium),
      cmocka_unit_test(test_dashboard_server_stops),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
