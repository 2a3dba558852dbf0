/* Contract tests of weft-etl (apps/etl/, contract: shared/specs/etl.md), file and stdin
 * sources into SQLite.
 *
 * Each test starts the built weft-etl as a child process (stdout and stderr in a log file
 * under a fresh temporary directory, removed at the end), with the three APIs played by
 * one fake HTTP server in this process: plain blocking sockets on loopback, a thread per
 * connection (keep-alive), answers derived from the path, and switches the tests flip to
 * make an API answer 503 (down, or for its first N requests), with a count of the
 * requests that reached each API. The tests read the database with the sqlite3 API.
 * Every child is killed after a deadline, so a test is bounded in time. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
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
#include <sqlite3.h>

#include "child.h"
#include "fakeapi.h"
#include "fixture.h"
#include "weft_test.h"

static char db_path[320], sink_arg[340];

/* ---- the child ---- */

/* Start weft-etl with the common flags, then extra; stdin from in_fd (-1: /dev/null). */
static void start_etl(struct daemon *c, const char *const *extra, int in_fd)
{
  const char *args[64] = {"--users",      fake.url,      "--geo",          fake.url,
                          "--fx",         fake.url,      "--sink",         sink_arg,
                          "--listen",     "127.0.0.1:0", "--debug-listen", "",
                          "--log-format", "text",        "--batch-wait",   "10ms"};
  int n = 16;
  for (int i = 0; extra[i]; i++)
    args[n++] = extra[i];
  args[n] = NULL;
  memset(c, 0, sizeof *c);
  spawn_daemon_into(c, "etl", args, NULL, in_fd);
}

static int run_etl(const char *const *extra, int in_fd, int timeout_ms)
{
  struct daemon c;
  start_etl(&c, extra, in_fd);
  int rc = wait_exit_code(&c, timeout_ms);
  if (rc != 0)
    dump_log(&c);
  return rc;
}

/* ---- input and the database ---- */

static void event_line(char *buf, size_t cap, int i, const char *user, const char *cur)
{
  char u[64];
  snprintf(u, sizeof u, "u%d", i);
  snprintf(
      buf, cap,
      "{\"event_id\":\"ev-%d\",\"ts\":\"2024-05-01T12:00:%02d.5+02:00\",\"user_id\":\"%s\","
      "\"ip\":\"10.0.%d.%d\",\"amount_cents\":%d,\"currency\":\"%s\"}\n",
      i, i % 60, user ? user : u, i / 256, i % 256, 101 + i, cur ? cur : "EUR");
}

static void write_events(const char *path, int first, int n, const char *extra_lines)
{
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  for (int i = first; i < first + n; i++) {
    char line[400];
    event_line(line, sizeof line, i, NULL, NULL);
    fputs(line, f);
  }
  if (extra_lines)
    fputs(extra_lines, f);
  fclose(f);
}

/* The integer sql answers; -1 when it fails and may_fail (the tables not made yet). */
static long long db_query_int(const char *sql, bool may_fail)
{
  sqlite3 *db;
  sqlite3_stmt *st;
  long long v = -1;
  assert_int_equal(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
    if (!may_fail)
      fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    sqlite3_close(db);
    return -1;
  }
  if (sqlite3_step(st) == SQLITE_ROW)
    v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}

static long long db_int(const char *sql)
{
  return db_query_int(sql, false);
}

static char *db_text(const char *sql)
{
  sqlite3 *db;
  sqlite3_stmt *st;
  char *v = NULL;
  assert_int_equal(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
    fail_msg("%s: %s", sql, sqlite3_errmsg(db));
  if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
    v = strdup((const char *)sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}

static void expect_text(const char *sql, const char *want)
{
  char *got = db_text(sql);
  if (want == NULL ? got != NULL : got == NULL || strcmp(got, want) != 0)
    fail_msg("%s: got %s, want %s", sql, got ? got : "NULL", want ? want : "NULL");
  free(got);
}

/* Wait until sql counts at least want (the child keeps writing meanwhile). */
static void wait_count(const char *sql, long long want, int timeout_ms)
{
  int64_t end = mono_ms() + timeout_ms;
  long long got;
  while ((got = access(db_path, F_OK) == 0 ? db_query_int(sql, true) : -1) < want) {
    if (mono_ms() > end)
      fail_msg("%s: %lld after %d ms, want %lld", sql, got, timeout_ms, want);
    sleep_ms(20);
  }
}

static const char COMPLETE[] = "SELECT count(*) FROM enriched_events WHERE status='complete'";
static const char PARTIAL[] = "SELECT count(*) FROM enriched_events WHERE status='partial'";
static const char ROWS[] = "SELECT count(*) FROM enriched_events";
static const char DEAD[] = "SELECT count(*) FROM dead_letters";

static void write_all(int fd, const char *s)
{
  size_t len = strlen(s);
  while (len) {
    ssize_t n = write(fd, s, len);
    assert_true(n > 0);
    s += n, len -= (size_t)n;
  }
}

/* ---- fixtures ---- */

static int setup(void **state)
{
  (void)state;
  if (!app_find_bin(NULL, "apps/etl/weft-etl")) {
    fprintf(stderr, "weft-etl not built (%s): skipped\n", app_bin);
    skip();
  }
  app_make_tmp_dir("etl");
  snprintf(db_path, sizeof db_path, "%s/etl.db", tmp_dir);
  snprintf(sink_arg, sizeof sink_arg, "sqlite:%s", db_path);
  fake_start();
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  fake_stop();
  reap_children(); /* after a failed check: no child outlives its test */
  app_remove_tmp_dir();
  return 0;
}

/* ---- the tests ---- */

/* A file of N events plus bad lines: N rows complete with the right enrichment, the bad
 * lines in dead_letters with reason and origin, a 404 user complete with empty fields,
 * exit 0. */
static void test_file_end_to_end(void **state)
{
  (void)state;
  enum { N = 300 };
  char in[300], extra[1200], ghost[400], sql[4400];
  snprintf(in, sizeof in, "%s/events.jsonl", tmp_dir);
  event_line(ghost, sizeof ghost, 404, "ghost404", "USD");
  char id65[66];
  memset(id65, 'x', 65);
  id65[65] = '\0';
  snprintf(
      extra, sizeof extra,
      "not json\n"
      "{\"event_id\":\"bad-ts\",\"ts\":\"yesterday\",\"user_id\":\"u\",\"ip\":\"1.2.3.4\","
      "\"amount_cents\":1,\"currency\":\"EUR\"}\n"
      "   \n%s"
      "{\"event_id\":\"%s\",\"ts\":\"2024-05-01T12:00:00Z\",\"user_id\":\"u\",\"ip\":\"::1\","
      "\"amount_cents\":1,\"currency\":\"EUR\"}\n",
      ghost, id65);
  write_events(in, 0, N, extra);
  char src[320];
  snprintf(src, sizeof src, "file:%s", in);
  assert_int_equal(run_etl(ARGS("--source", src), -1, 60000), 0);

  assert_int_equal(db_int(COMPLETE), N + 1);
  assert_int_equal(db_int(ROWS), N + 1);
  assert_int_equal(db_int(DEAD), 3);
  expect_text("SELECT tier||'/'||user_country||'/'||ip_country||'/'||city||'/'||"
              "amount_usd_cents||'/'||ts||'/'||ip FROM enriched_events WHERE event_id='ev-5'",
              "gold/DE/FR/Paris/133/2024-05-01T12:00:05.5+02:00/10.0.0.5");
  expect_text("SELECT amount_usd_cents FROM enriched_events WHERE event_id='ev-4'", "131");
  expect_text("SELECT missing FROM enriched_events WHERE event_id='ev-4'", NULL);
  /* users answered 404: its fields stay empty, the event is complete. */
  expect_text("SELECT tier FROM enriched_events WHERE event_id='ev-404'", NULL);
  expect_text("SELECT status||'/'||city||'/'||amount_usd_cents FROM enriched_events "
              "WHERE event_id='ev-404'",
              "complete/Paris/1010");
  char abs[PATH_MAX];
  assert_non_null(realpath(in, abs));
  snprintf(sql, sizeof sql, "SELECT error FROM dead_letters WHERE origin='file:%s:%d'", abs,
           N + 1);
  char *err = db_text(sql);
  assert_non_null(err);
  assert_non_null(strstr(err, "invalid JSON"));
  free(err);
  snprintf(sql, sizeof sql,
           "SELECT event_id||'|'||error FROM dead_letters WHERE origin='file:%s:%d'", abs,
           N + 2);
  err = db_text(sql);
  assert_non_null(err);
  assert_non_null(strstr(err, "bad-ts|ts \"yesterday\" is not RFC 3339"));
  free(err);
  snprintf(sql, sizeof sql, "SELECT error FROM dead_letters WHERE origin='file:%s:%d'", abs,
           N + 5);
  expect_text(sql, "event_id must be 1 to 64 characters");
  /* One call per API per event: nothing was retried. */
  assert_int_equal(atomic_load(&fake.hits[USERS]), N + 1);
  assert_int_equal(atomic_load(&fake.hits[GEO]), N + 1);
  assert_int_equal(atomic_load(&fake.hits[FX]), N + 1);
}

/* Events on stdin (a pipe): stored, a bad line dead-lettered with no origin, exit 0. */
static void test_stdin(void **state)
{
  (void)state;
  int p[2];
  assert_int_equal(pipe2(p, O_CLOEXEC), 0);
  struct daemon c;
  start_etl(&c, ARGS("--source", "-"), p[0]);
  close(p[0]);
  for (int i = 0; i < 50; i++) {
    char line[400];
    event_line(line, sizeof line, i, NULL, NULL);
    write_all(p[1], line);
  }
  write_all(p[1], "[1,2]\n");
  close(p[1]);
  int rc = wait_exit_code(&c, 30000);
  if (rc)
    dump_log(&c);
  assert_int_equal(rc, 0);
  assert_int_equal(db_int(COMPLETE), 50);
  assert_int_equal(db_int("SELECT count(*) FROM dead_letters WHERE origin IS NULL AND "
                          "error='not a JSON object' AND CAST(raw AS TEXT)='[1,2]'"),
                   1);
}

/* 503s are retried within --retries; past them the event is partial. */
static void test_retries(void **state)
{
  (void)state;
  char in[300], src[320];
  snprintf(in, sizeof in, "%s/r.jsonl", tmp_dir);
  snprintf(src, sizeof src, "file:%s", in);
  write_events(in, 0, 20, NULL);
  atomic_store(&fake.fail_first[FX], 2);
  assert_int_equal(run_etl(ARGS("--source", src, "--enrich-concurrency", "1"), -1, 30000), 0);
  assert_int_equal(db_int(COMPLETE), 20);
  assert_int_equal(atomic_load(&fake.hits[FX]), 22);

  write_events(in, 100, 5, NULL);
  atomic_store(&fake.fail_first[FX], 1);
  assert_int_equal(
      run_etl(ARGS("--source", src, "--enrich-concurrency", "1", "--retries", "1"), -1, 30000),
      0);
  assert_int_equal(db_int(PARTIAL), 1);
  assert_int_equal(db_int("SELECT count(*) FROM enriched_events WHERE status='partial' AND "
                          "missing='fx' AND amount_usd_cents IS NULL AND tier='gold'"),
                   1);
  assert_int_equal(db_int(COMPLETE), 24);
}

static void write_range(int fd, int first, int n)
{
  for (int i = first; i < first + n; i++) {
    char line[400];
    event_line(line, sizeof line, i, NULL, NULL);
    write_all(fd, line);
  }
}

/* geo down: its breaker opens after --breaker-failures calls (no more reach it), events go
 * partial; geo back: after --breaker-open one probe closes it, events complete again. */
static void test_breaker(void **state)
{
  (void)state;
  int p[2];
  assert_int_equal(pipe2(p, O_CLOEXEC), 0);
  atomic_store(&fake.down[GEO], 1);
  struct daemon c;
  start_etl(&c,
            ARGS("--source", "-", "--breaker-failures", "3", "--breaker-open", "1s",
                 "--retries", "2", "--enrich-concurrency", "1"),
            p[0]);
  close(p[0]);
  write_range(p[1], 0, 10);
  wait_count(ROWS, 10, 20000);
  assert_int_equal(db_int("SELECT count(*) FROM enriched_events WHERE status='partial' AND "
                          "missing='geo' AND city IS NULL AND tier='gold'"),
                   10);
  /* 3 failed calls of 2 attempts each, then the breaker rejects without calling. */
  assert_int_equal(atomic_load(&fake.hits[GEO]), 6);
  atomic_store(&fake.down[GEO], 0);
  sleep_ms(1300);
  write_range(p[1], 10, 10);
  wait_count(ROWS, 20, 20000);
  assert_int_equal(db_int(COMPLETE), 10);
  assert_int_equal(db_int("SELECT count(*) FROM enriched_events WHERE status='complete' AND "
                          "CAST(substr(event_id,4) AS INTEGER) >= 10"),
                   10);
  assert_int_equal(atomic_load(&fake.hits[GEO]), 16);
  close(p[1]);
  assert_int_equal(wait_exit_code(&c, 20000), 0);
}

/* --on-enrich-failure dlq: an event whose enrichment failed goes to dead_letters. */
static void test_breaker_dlq(void **state)
{
  (void)state;
  char in[300], src[320];
  snprintf(in, sizeof in, "%s/d.jsonl", tmp_dir);
  snprintf(src, sizeof src, "file:%s", in);
  write_events(in, 0, 10, NULL);
  atomic_store(&fake.down[GEO], 1);
  assert_int_equal(run_etl(ARGS("--source", src, "--on-enrich-failure", "dlq", "--retries", "1",
                                "--breaker-failures", "3", "--enrich-concurrency", "1"),
                           -1, 30000),
                   0);
  assert_int_equal(db_int(ROWS), 0);
  assert_int_equal(db_int("SELECT count(*) FROM dead_letters WHERE error LIKE '%geo%' AND "
                          "event_id LIKE 'ev-%' AND origin LIKE 'file:%'"),
                   10);
  assert_int_equal(atomic_load(&fake.hits[GEO]), 3);
}

/* --on-enrich-failure fail: exit non-zero, the complete events before it written. */
static void test_fail_policy(void **state)
{
  (void)state;
  char in[300], src[320], bad[400];
  snprintf(in, sizeof in, "%s/f.jsonl", tmp_dir);
  snprintf(src, sizeof src, "file:%s", in);
  event_line(bad, sizeof bad, 999, NULL, "XXX");
  write_events(in, 0, 30, bad);
  assert_int_equal(run_etl(ARGS("--source", src, "--on-enrich-failure", "fail", "--retries",
                                "1", "--enrich-concurrency", "1", "--channel-capacity", "1"),
                           -1, 30000),
                   1);
  assert_int_equal(db_int(COMPLETE), 30);
  assert_int_equal(db_int(ROWS), 30);
  assert_int_equal(db_int("SELECT count(*) FROM enriched_events WHERE event_id='ev-999'"), 0);
}

/* Rerunning a file stores each event once; a partial never overwrites a complete row, a
 * complete one replaces a partial. */
static void test_rerun_upsert(void **state)
{
  (void)state;
  char in[300], src[320];
  snprintf(in, sizeof in, "%s/u.jsonl", tmp_dir);
  snprintf(src, sizeof src, "file:%s", in);
  write_events(in, 0, 20, NULL);
  assert_int_equal(run_etl(ARGS("--source", src), -1, 30000), 0);
  assert_int_equal(run_etl(ARGS("--source", src), -1, 30000), 0);
  assert_int_equal(db_int(ROWS), 20);
  assert_int_equal(db_int(COMPLETE), 20);
  atomic_store(&fake.down[USERS], 1);
  assert_int_equal(run_etl(ARGS("--source", src, "--retries", "1"), -1, 30000), 0);
  assert_int_equal(db_int(COMPLETE), 20);
  assert_int_equal(db_int("SELECT count(*) FROM enriched_events WHERE tier='gold'"), 20);
  write_events(in, 100, 10, NULL);
  assert_int_equal(run_etl(ARGS("--source", src, "--retries", "1"), -1, 30000), 0);
  assert_int_equal(db_int(PARTIAL), 10);
  assert_int_equal(db_int("SELECT count(*) FROM enriched_events WHERE missing='users'"), 10);
  atomic_store(&fake.down[USERS], 0);
  assert_int_equal(run_etl(ARGS("--source", src), -1, 30000), 0);
  assert_int_equal(db_int(PARTIAL), 0);
  assert_int_equal(db_int(COMPLETE), 30);
}

/* SIGTERM while events are in flight (slow APIs): exit 0, every event read is stored. */
static void test_sigterm_drains(void **state)
{
  (void)state;
  enum { N = 40 };
  int p[2];
  assert_int_equal(pipe2(p, O_CLOEXEC), 0);
  atomic_store(&fake.delay_ms, 50);
  struct daemon c;
  start_etl(&c, ARGS("--source", "-", "--enrich-concurrency", "2", "--drain-timeout", "20s"),
            p[0]);
  close(p[0]);
  write_range(p[1], 0, N);
  wait_count(ROWS, 3, 20000);
  long long before = db_int(ROWS);
  kill(c.pid, SIGTERM);
  int rc = wait_exit_code(&c, 25000);
  close(p[1]);
  if (rc)
    dump_log(&c);
  assert_int_equal(rc, 0);
  if (before >= N)
    fprintf(stderr, "note: everything was written before the signal\n");
  assert_int_equal(db_int(ROWS), N);
  assert_int_equal(db_int(COMPLETE), N);
}

/* Count the lines of the child's log. */
static int log_lines(const struct daemon *c, char *first, size_t cap)
{
  FILE *f = fopen(c->log, "r");
  int n = 0;
  char line[1024];
  first[0] = '\0';
  while (f && fgets(line, sizeof line, f))
    if (n++ == 0)
      snprintf(first, cap, "%s", line);
  if (f)
    fclose(f);
  return n;
}

static void expect_exit2(const char *const *extra, const char *needle)
{
  struct daemon c;
  char first[1024];
  start_etl(&c, extra, -1);
  int rc = wait_exit_code(&c, 15000);
  int n = log_lines(&c, first, sizeof first);
  if (rc != 2 || n != 1 || !strstr(first, needle)) {
    dump_log(&c);
    fail_msg("want exit 2 with one line holding \"%s\"; got exit %d, %d lines", needle, rc, n);
  }
}

/* Bad flags, an unusable source or sink, a listen address in use: one line, exit 2. */
static void test_bad_flags(void **state)
{
  (void)state;
  expect_exit2(ARGS("--batch-size", "0"), "--batch-size");
  expect_exit2(ARGS("--retries", "x"), "--retries");
  expect_exit2(ARGS("--on-enrich-failure", "maybe"), "--on-enrich-failure");
  expect_exit2(ARGS("--call-timeout", "0s"), "--call-timeout");
  expect_exit2(ARGS("--users", "not a url"), "--users");
  expect_exit2(ARGS("--nope", "1"), "--nope");
  expect_exit2(ARGS("--source", "file:/nonexistent/events.jsonl"), "/nonexistent/events");
  expect_exit2(ARGS("--source", "ftp://x"), "--source");
  expect_exit2(ARGS("--sink", "sqlite:/nonexistent/dir/etl.db"), "/nonexistent/dir");
  expect_exit2(ARGS("--sink", "mysql://x"), "--sink");
  setenv("ETL_BATCH_SIZE", "-3", 1);
  expect_exit2(ARGS("--source", "-"), "ETL_BATCH_SIZE");
  unsetenv("ETL_BATCH_SIZE");
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof a;
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(fd, 1), 0);
  getsockname(fd, (struct sockaddr *)&a, &al);
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(a.sin_port));
  expect_exit2(ARGS("--listen", addr), "--listen");
  close(fd);
}

/* GET path on port; the whole response (malloc'd). */
static char *http_get(int port, const char *path)
{
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  struct timeval tv = {5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
  char req[256];
  int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                   path);
  assert_int_equal(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
  size_t cap = 1 << 20, len = 0;
  char *buf = malloc(cap);
  ssize_t r;
  while (len < cap - 1 && (r = recv(fd, buf + len, cap - 1 - len, 0)) > 0)
    len += (size_t)r;
  buf[len] = '\0';
  close(fd);
  return buf;
}

/* The port the child announced in its "started" log line. */
static int listen_port(const struct daemon *c)
{
  int64_t end = mono_ms() + 10000;
  while (mono_ms() < end) {
    char buf[8192];
    FILE *f = fopen(c->log, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
      fclose(f);
    buf[n] = '\0';
    const char *p = strstr(buf, "listen_port=");
    if (p)
      return atoi(p + strlen("listen_port="));
    sleep_ms(20);
  }
  dump_log(c);
  fail_msg("no listen_port in the log");
  return -1;
}

/* /metrics shows the contract's families; /healthz answers. */
static void test_metrics(void **state)
{
  (void)state;
  int p[2];
  assert_int_equal(pipe2(p, O_CLOEXEC), 0);
  struct daemon c;
  start_etl(&c, ARGS("--source", "-"), p[0]);
  close(p[0]);
  write_range(p[1], 0, 10);
  write_all(p[1], "oops\n");
  wait_count(ROWS, 10, 20000);
  wait_count(DEAD, 1, 20000);
  int port = listen_port(&c);
  char *m = http_get(port, "/metrics");
  const char *families[] = {
      "weft_pipeline_items_total{pipeline=\"etl\",stage=\"enrich\",result=\"out\"} 11",
      "weft_chan_length{chan=\"etl/decode\"}",
      "weft_chan_capacity{chan=\"etl/enrich\"} 1000",
      "etl_enrich_call_duration_seconds_count{api=\"geo\"} 10",
      "etl_enrich_calls_total{api=\"users\",result=\"ok\"} 10",
      "etl_enrich_retries_total",
      "weft_breaker_state{breaker=\"fx\"} 0",
      "etl_dead_letters_total{reason=\"decode\"} 1",
      "etl_rows_written_total{status=\"complete\"} 10",
      "etl_consumer_lag -1",
  };
  for (size_t i = 0; i < sizeof families / sizeof *families; i++)
    if (!strstr(m, families[i])) {
      fprintf(stderr, "%s\n", m);
      fail_msg("/metrics lacks %s", families[i]);
    }
  free(m);
  char *h = http_get(port, "/healthz");
  assert_non_null(strstr(h, "200"));
  assert_non_null(strstr(h, "\"ok\""));
  free(h);
  close(p[1]);
  assert_int_equal(wait_exit_code(&c, 20000), 0);
}

int main(void)
{
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_file_end_to_end, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stdin, setup, teardown),
      cmocka_unit_test_setup_teardown(test_retries, setup, teardown),
      cmocka_unit_test_setup_teardown(test_breaker, setup, teardown),
      cmocka_unit_test_setup_teardown(test_breaker_dlq, setup, teardown),
      cmocka_unit_test_setup_teardown(test_fail_policy, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rerun_upsert, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sigterm_drains, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_flags, setup, teardown),
      cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
