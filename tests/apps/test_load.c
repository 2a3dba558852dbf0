/* Integration tests of weft-load (apps/load/, README.md there).
 *
 * Each test starts a weft HTTP server on 127.0.0.1:0 in the test's runtime, runs the built
 * weft-load against it as a child process (posix_spawn on a blocking-pool thread, stdout
 * and stderr into files of a fresh temporary directory, killed after a timeout) and then
 * compares what the server saw with what weft-load reported: the server counts requests
 * and remembers every {{id}} it received (in the body and in the path), so a test checks
 * exact counts and that no id came twice. One handler can stall every request for 500 ms,
 * once, when the Nth request of the run arrives: the coordinated-omission test. The
 * binary is <build>/apps/load/weft-load, or WEFT_LOAD_BIN.
 *
 * Checks run in the test function after run_weft returns (cmocka's assertions must not run
 * on a coroutine stack); the coroutine side only records what happened. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include "coro_check.h"
#include "weft/weft.h"
#include "fixture.h"
#include "weft_test.h"

extern char **environ;

enum { MAX_ARGS = 32, MAX_IDS = 8192 };

/* One run of weft-load and what the server saw during it. */
struct run {
  const char *args[MAX_ARGS]; /* templates: {B} is http://127.0.0.1:PORT, {X} a closed port,
                                 {D} the temporary directory */
  int stall_after;            /* > 0: the request with this number starts a 500 ms stall */
  int timeout_ms;
  /* results */
  int status; /* wait status */
  bool timed_out;
  char *out, *err;
  json_t *json; /* {D}/out.json parsed, if the run wrote it */
  char *svg;    /* {D}/out.svg, if written */
  int served;   /* requests the server answered */
  int dup_ids;  /* ids seen more than once */
  int ids;      /* distinct ids seen */
};

/* ---- the server ---- */

struct server {
  weft_http_server *http;
  int fd, port, closed_port;
  weft_wg served;
  atomic_int count;            /* requests this run */
  atomic_int stall_after;      /* the request number that starts the stall, 0: none */
  _Atomic int64_t stall_until; /* requests before this (monotonic ns) wait for it */
  weft_mutex mu;               /* guards ids and nids */
  char *ids[MAX_IDS];          /* guarded by mu */
  int nids, dups;              /* guarded by mu */
};

/* Remember id; count it as a duplicate if it came before. Caller holds mu. */
static void note_id(struct server *s, const char *id, size_t len)
{
  for (int i = 0; i < s->nids; i++)
    if (strlen(s->ids[i]) == len && memcmp(s->ids[i], id, len) == 0) {
      s->dups++;
      return;
    }
  if (s->nids < MAX_IDS)
    s->ids[s->nids++] = strndup(id, len);
}

/* The id in the body ({"id": "..."}) and in the path (/item/ID). */
static void note_request_ids(struct server *s, weft_http_request *r)
{
  const char *data = NULL;
  size_t len = 0;
  const char *path = weft_http_request_path(r);
  weft_mutex_lock(&s->mu);
  if (strncmp(path, "/item/", 6) == 0)
    note_id(s, path + 6, strlen(path + 6));
  if (weft_http_request_body(r, &data, &len) == 0 && len > 0) {
    json_t *j = json_loadb(data, len, 0, NULL);
    json_t *id = json_object_get(j, "id");
    if (json_is_string(id))
      note_id(s, json_string_value(id), json_string_length(id));
    else
      s->dups += 1000; /* a body without its id: fail loudly */
    json_decref(j);
  }
  weft_mutex_unlock(&s->mu);
}

static void handler(weft_http_response *w, weft_http_request *r, void *arg)
{
  struct server *s = arg;
  int n = atomic_fetch_add(&s->count, 1) + 1;
  int64_t zero = 0;
  if (n == atomic_load(&s->stall_after))
    atomic_compare_exchange_strong(&s->stall_until, &zero, weft_now() + MS(500));
  int64_t until = atomic_load(&s->stall_until);
  if (until > weft_now())
    weft_sleep_until(until);
  note_request_ids(s, r);
  weft_http_response_send(w, 200, "text/plain", "ok\n", 3);
}

static void serve(void *arg)
{
  struct server *s = arg;
  CHECK_EQ(weft_http_server_serve(s->http, s->fd), 0);
  weft_wg_done(&s->served);
}

/* A port nothing listens on: bound, then closed. */
static int closed_port(void)
{
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t alen = sizeof a;
  int port = 0;
  if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
      getsockname(fd, (struct sockaddr *)&a, &alen) == 0)
    port = ntohs(a.sin_port);
  close(fd);
  return port;
}

static void server_start(struct server *s)
{
  memset(s, 0, sizeof *s);
  weft_mutex_init(&s->mu);
  s->http =
      weft_http_server_new(&(weft_http_server_config){.handler = handler, .handler_arg = s});
  s->fd = weft_listen("tcp", "127.0.0.1:0", 0);
  CHECK(s->http && s->fd >= 0);
  s->port = weft_local_port(s->fd);
  s->closed_port = closed_port();
  weft_wg_init(&s->served);
  weft_wg_add(&s->served, 1);
  weft_go(serve, s);
}

static void server_stop(struct server *s)
{
  weft_http_server_shutdown(s->http, weft_now() + MS(3000));
  weft_wg_wait(&s->served);
  weft_close(s->fd);
  weft_http_server_free(s->http);
  for (int i = 0; i < s->nids; i++)
    free(s->ids[i]);
}

/* ---- running weft-load ---- */

static char tmpdir[64];

/* Replace {B}, {X} and {D} in tmpl; a new string. */
static char *expand(const struct server *s, const char *tmpl)
{
  char base[64], closed[64];
  snprintf(base, sizeof base, "http://127.0.0.1:%d", s->port);
  snprintf(closed, sizeof closed, "http://127.0.0.1:%d", s->closed_port);
  size_t cap = strlen(tmpl) + 256, n = 0;
  char *out = malloc(cap);
  for (const char *p = tmpl; *p; p++) {
    const char *sub = NULL;
    if (p[0] == '{' && p[1] && p[2] == '}')
      sub = p[1] == 'B' ? base : p[1] == 'X' ? closed : p[1] == 'D' ? tmpdir : NULL;
    if (n + 80 > cap)
      out = realloc(out, cap *= 2);
    if (sub) {
      n += (size_t)sprintf(out + n, "%s", sub);
      p += 2;
    } else {
      out[n++] = *p;
    }
  }
  out[n] = '\0';
  return out;
}

static char *slurp_or_null(const char *path) /* NULL when unreadable */
{
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *data = malloc((size_t)len + 1);
  size_t n = fread(data, 1, (size_t)len, f);
  data[n] = '\0';
  fclose(f);
  return data;
}

static char *in_tmp(const char *name)
{
  static char path[3][128];
  static int next;
  char *p = path[next++ % 3];
  snprintf(p, 128, "%s/%s", tmpdir, name);
  return p;
}

struct child {
  char **argv;
  struct run *run;
};

/* On a blocking-pool thread: run weft-load to its end (or the timeout). */
static long run_child(void *arg)
{
  struct child *c = arg;
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  sigset_t none, defaults;
  pid_t pid;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, in_tmp("stdout"), O_WRONLY | O_CREAT | O_TRUNC,
                                   0600);
  posix_spawn_file_actions_addopen(&fa, 2, in_tmp("stderr"), O_WRONLY | O_CREAT | O_TRUNC,
                                   0600);
  posix_spawnattr_init(&attr);
  /* This pool thread may block signals the runtime handles: the child starts clean. */
  sigemptyset(&none);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGPIPE);
  sigaddset(&defaults, SIGTERM);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  int rc = posix_spawn(&pid, app_bin, &fa, &attr, c->argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0)
    return -rc;
  struct timespec nap = {0, 5 * 1000 * 1000};
  for (int waited = 0; waitpid(pid, &c->run->status, WNOHANG) == 0; waited += 5) {
    if (waited > c->run->timeout_ms && !c->run->timed_out) {
      kill(pid, SIGKILL);
      c->run->timed_out = true;
    }
    nanosleep(&nap, NULL);
  }
  return 0;
}

static void collect(struct run *run, struct server *s)
{
  run->out = slurp_or_null(in_tmp("stdout"));
  run->err = slurp_or_null(in_tmp("stderr"));
  run->svg = slurp_or_null(in_tmp("out.svg"));
  run->json = json_load_file(in_tmp("out.json"), 0, NULL);
  run->served = atomic_load(&s->count);
  weft_mutex_lock(&s->mu);
  run->ids = s->nids;
  run->dup_ids = s->dups;
  for (int i = 0; i < s->nids; i++)
    free(s->ids[i]);
  s->nids = s->dups = 0;
  weft_mutex_unlock(&s->mu);
  unlink(in_tmp("stdout"));
  unlink(in_tmp("stderr"));
  unlink(in_tmp("out.svg"));
  unlink(in_tmp("out.json"));
}

struct scenario {
  struct run *runs;
  int nruns;
};

static int scenario_main(void *arg)
{
  struct scenario *sc = arg;
  struct server *s = calloc(1, sizeof *s);
  server_start(s);
  for (int i = 0; i < sc->nruns; i++) {
    struct run *run = &sc->runs[i];
    char *argv[MAX_ARGS + 2] = {app_bin};
    int n = 0;
    for (; run->args[n]; n++)
      argv[n + 1] = expand(s, run->args[n]);
    atomic_store(&s->count, 0);
    atomic_store(&s->stall_until, 0);
    atomic_store(&s->stall_after, run->stall_after);
    struct child c = {argv, run};
    CHECK_EQ(weft_blocking(run_child, &c), 0);
    collect(run, s);
    for (int a = 0; a < n; a++)
      free(argv[a + 1]);
  }
  server_stop(s);
  free(s);
  return 0;
}

/* <build>/apps/load/weft-load beside this test's build directory, or WEFT_LOAD_BIN. */
static bool find_load(void)
{
  return app_find_bin("WEFT_LOAD_BIN", "apps/load/weft-load");
}

static void dump_run(const struct run *r)
{
  fprintf(stderr,
          "---- weft-load: status %d%s, served %d\n---- stdout:\n%s---- stderr:\n%s----\n",
          r->status, r->timed_out ? " (killed: timeout)" : "", r->served, r->out ? r->out : "",
          r->err ? r->err : "");
}

/* Run the runs in one runtime with one server; false (the test skips) without the binary. */
static bool run_all(struct run *runs, int n)
{
  if (!find_load())
    return false;
  snprintf(tmpdir, sizeof tmpdir, "/tmp/weft-load-test.XXXXXX");
  assert_non_null(mkdtemp(tmpdir));
  checks_reset();
  struct scenario sc = {runs, n};
  assert_int_equal(run_weft(2, scenario_main, &sc), 0);
  rmdir(tmpdir);
  for (int i = 0; i < n; i++)
    if (runs[i].timed_out)
      dump_run(&runs[i]);
  ASSERT_NO_CHECK_FAILED();
  return true;
}

static void run_free(struct run *r)
{
  free(r->out);
  free(r->err);
  free(r->svg);
  json_decref(r->json);
}

static void expect_exit(const struct run *r, int code)
{
  if (r->timed_out || !WIFEXITED(r->status) || WEXITSTATUS(r->status) != code) {
    dump_run(r);
    fail_msg("weft-load did not exit %d", code);
  }
}

static long long json_int(json_t *j, const char *path1, const char *path2)
{
  json_t *v = json_object_get(j, path1);
  if (path2)
    v = json_object_get(v, path2);
  if (!json_is_number(v))
    fail_msg("JSON report lacks %s%s%s", path1, path2 ? "." : "", path2 ? path2 : "");
  return (long long)json_number_value(v);
}

static double json_num(json_t *j, const char *path1, const char *path2)
{
  json_t *v = json_object_get(json_object_get(j, path1), path2);
  if (!json_is_number(v))
    fail_msg("JSON report lacks %s.%s", path1, path2);
  return json_number_value(v);
}

/* ---- tests ---- */

/* Closed loop by count: exactly N requests, every body's {{id}} unique, and the JSON
 * report's counts equal the server's; through the lean connection and through weft's HTTP
 * client (--client weft). */
static void test_closed_loop_count_and_unique_ids(void **state)
{
  (void)state;
  struct run r[2];
  for (int i = 0; i < 2; i++)
    r[i] =
        (struct run){.timeout_ms = 60000,
                     .args = {"--requests", "300", "--connections", "8", "--quiet", "--body",
                              "{\"id\": \"{{id}}\", \"seq\": {{seq}}, \"r\": {{rand:1000}}}",
                              "--header", "Content-Type: application/json", "--json",
                              "{D}/out.json", "--client", i ? "weft" : "lean", "{B}/orders"}};
  if (!run_all(r, 2))
    skip();
  for (int i = 0; i < 2; i++) {
    expect_exit(&r[i], 0);
    assert_int_equal(r[i].served, 300);
    assert_int_equal(r[i].dup_ids, 0);
    assert_int_equal(r[i].ids, 300);
    assert_non_null(r[i].json);
    assert_int_equal(json_int(r[i].json, "requests", NULL), 300);
    assert_int_equal(json_int(r[i].json, "answered", NULL), r[i].served);
    assert_int_equal(json_int(r[i].json, "status", "200"), r[i].served);
    assert_int_equal(json_int(r[i].json, "errors_total", NULL), 0);
    assert_string_equal(json_string_value(json_object_get(r[i].json, "mode")), "closed");
    assert_string_equal(json_string_value(json_object_get(r[i].json, "method")), "POST");
    assert_non_null(strstr(r[i].out, "throughput")); /* the text report went to stdout */
    run_free(&r[i]);
  }
}

/* Open loop at a constant rate for a duration: about rate * duration requests, ids in the
 * URL path unique, an SVG plot written. */
static void test_constant_rate(void **state)
{
  (void)state;
  struct run r = {.timeout_ms = 60000,
                  .args = {"--rate", "200/s", "--duration", "2s", "--progress", "500ms",
                           "--json", "{D}/out.json", "--svg", "{D}/out.svg",
                           "{B}/item/{{id}}"}};
  if (!run_all(&r, 1))
    skip();
  expect_exit(&r, 0);
  /* The schedule is exact (request i at i / rate): 400, with slack for a slow machine
   * only on the low side of what the server saw finish. */
  assert_in_range(r.served, 380, 400);
  assert_int_equal(r.dup_ids, 0);
  assert_int_equal(r.ids, r.served);
  assert_non_null(r.json);
  assert_int_equal(json_int(r.json, "answered", NULL), r.served);
  assert_int_equal(json_int(r.json, "status", "200"), r.served);
  assert_string_equal(json_string_value(json_object_get(r.json, "mode")), "open");
  double rps = json_number_value(json_object_get(r.json, "throughput_rps"));
  assert_true(rps > 150 && rps < 230);
  assert_non_null(strstr(r.err, "req/s")); /* live progress on stderr */
  assert_non_null(r.svg);
  assert_true(strncmp(r.svg, "<svg", 4) == 0);
  size_t len = strlen(r.svg);
  assert_true(len > 8 && strcmp(r.svg + len - 7, "</svg>\n") == 0);
  assert_non_null(strstr(r.svg, "<polyline"));
  assert_null(strstr(r.svg, "<script"));
  run_free(&r);
}

/* Coordinated omission: the server stalls every request for 500 ms once, in the middle of
 * an open-loop run at 200/s. The ~100 requests due during the stall waited for it, so the
 * reported p99 must show it (>= 400 ms). A closed loop on one connection, run against the
 * same stall, sees it in one request only: its p99 stays low, which is the omission. */
static void test_coordinated_omission(void **state)
{
  (void)state;
  struct run r[2] = {{.timeout_ms = 60000,
                      .stall_after = 200,
                      .args = {"--rate", "200", "--duration", "2s", "--quiet", "--json",
                               "{D}/out.json", "{B}/item/{{id}}"}},
                     {.timeout_ms = 60000,
                      .stall_after = 100,
                      .args = {"--connections", "1", "--requests", "300", "--quiet", "--json",
                               "{D}/out.json", "{B}/x"}}};
  if (!run_all(r, 2))
    skip();
  expect_exit(&r[0], 0);
  expect_exit(&r[1], 0);
  assert_non_null(r[0].json);
  assert_non_null(r[1].json);
  double open_p99 = json_num(r[0].json, "latency_ms", "p99");
  double open_max = json_num(r[0].json, "latency_ms", "max");
  double closed_p99 = json_num(r[1].json, "latency_ms", "p99");
  double closed_max = json_num(r[1].json, "latency_ms", "max");
  fprintf(stderr,
          "open loop: p99 %.1f ms, max %.1f ms; closed loop: p99 %.1f ms, max %.1f ms\n",
          open_p99, open_max, closed_p99, closed_max);
  assert_true(open_p99 >= 400);
  assert_true(open_max >= 490 && open_max < 2000);
  assert_int_equal(json_int(r[0].json, "answered", NULL), r[0].served);
  assert_true(closed_max >= 490); /* it did meet the stall... */
  assert_true(closed_p99 < 250);  /* ...and hides it */
  assert_int_equal(json_int(r[1].json, "answered", NULL), 300);
  run_free(&r[0]);
  run_free(&r[1]);
}

static int count_lines(const char *s)
{
  int n = 0;
  for (; s && *s; s++)
    n += *s == '\n';
  return n;
}

/* Bad flags exit 2 with one line on stderr; an unreachable target exits 1; --help 0. */
static void test_exit_codes(void **state)
{
  (void)state;
  struct run r[] = {
      {.timeout_ms = 20000, .args = {"--rate", "fast", "{B}/"}},
      {.timeout_ms = 20000, .args = {"--requests", "0", "{B}/"}},
      {.timeout_ms = 20000, .args = {"--duration", "forever", "{B}/"}},
      {.timeout_ms = 20000, .args = {"--no-such-flag", "{B}/"}},
      {.timeout_ms = 20000, .args = {"--requests", "1"}},
      {.timeout_ms = 20000, .args = {"--requests", "1", "ftp://127.0.0.1/"}},
      {.timeout_ms = 20000, .args = {"--requests", "1", "--body", "{{nope}}", "{B}/"}},
      {.timeout_ms = 20000, .args = {"--header", "no colon", "{B}/"}},
      {.timeout_ms = 20000,
       .args = {"--connections", "8", "--max-connections", "4", "--rate", "10", "{B}/"}},
      {.timeout_ms = 20000, .args = {"--requests", "5", "--quiet", "{X}/"}},
      {.timeout_ms = 20000, .args = {"--help"}},
  };
  int n = (int)(sizeof r / sizeof r[0]);
  if (!run_all(r, n))
    skip();
  for (int i = 0; i < n - 2; i++) {
    expect_exit(&r[i], 2);
    assert_int_equal(count_lines(r[i].err), 1);
    assert_int_equal(r[i].served, 0);
  }
  expect_exit(&r[n - 2], 1);
  assert_non_null(strstr(r[n - 2].err, "cannot reach"));
  expect_exit(&r[n - 1], 0);
  assert_non_null(strstr(r[n - 1].out, "usage"));
  for (int i = 0; i < n; i++)
    run_free(&r[i]);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_closed_loop_count_and_unique_ids),
      cmocka_unit_test(test_constant_rate),
      cmocka_unit_test(test_coordinated_omission),
      cmocka_unit_test(test_exit_codes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
