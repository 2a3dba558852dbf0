/* weft-etl's PostgreSQL sink (apps/etl/sink_pg.c; contract: shared/specs/etl.md, "Output"
 * and "Delivery"), file sources into the database WEFT_TEST_PG_URL names.
 *
 * Without WEFT_TEST_PG_URL (scripts/pg-start.sh prints one) the tests are skipped with a
 * message, exit 77 (CTest's "skipped"), unless WEFT_TEST_PG_REQUIRED=1, which makes that a
 * failure. Each test makes its own database (etltest_<pid>_<n>) and drops it WITH (FORCE)
 * at the end, so runs repeat and run beside others; the test reads the tables with libpq's
 * blocking API (it is a plain program, not a weft one).
 *
 * weft-etl runs as a child process (output in a log file under a fresh temporary
 * directory, removed at the end) with the three APIs played by one fake HTTP server in
 * this process, as in tests/apps/test_etl.c (its approach, reduced to what these tests
 * need): plain blocking sockets on loopback, a thread per connection, answers derived
 * from the path, a switch that makes the users API answer 503. Every child is killed
 * after a deadline, so a test is bounded in time. */
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include "child.h"
#include "fakeapi.h"
#include "fixture.h"
#include "pgtest.h"
#include "weft_test.h"

/* ---- the database (pgtest.h: pg_db_url is the --sink) ---- */

/* The integer the query (of the test's database) answers. */
static long long db_int(const char *sql)
{
  PGconn *c = pg_open(pg_db_url);
  PGresult *r = pg_run(c, "%s", sql);
  long long v = PQntuples(r) == 1 && !PQgetisnull(r, 0, 0) ? atoll(PQgetvalue(r, 0, 0)) : -1;
  PQclear(r);
  PQfinish(c);
  return v;
}

/* sql's one text value must be want (NULL: SQL NULL or no row). */
static void expect_text(const char *sql, const char *want)
{
  PGconn *c = pg_open(pg_db_url);
  PGresult *r = pg_run(c, "%s", sql);
  const char *got = PQntuples(r) == 1 && !PQgetisnull(r, 0, 0) ? PQgetvalue(r, 0, 0) : NULL;
  if (want == NULL ? got != NULL : got == NULL || strcmp(got, want) != 0)
    fail_msg("%s: got %s, want %s", sql, got ? got : "NULL", want ? want : "NULL");
  PQclear(r);
  PQfinish(c);
}

static const char COMPLETE[] = "SELECT count(*) FROM enriched_events WHERE status='complete'";
static const char PARTIAL[] = "SELECT count(*) FROM enriched_events WHERE status='partial'";
static const char ROWS[] = "SELECT count(*) FROM enriched_events";
static const char DEAD[] = "SELECT count(*) FROM dead_letters";

/* The tables exist once weft-etl has opened its sink; until then the count is -1. */
static long long rows_so_far(PGconn *c)
{
  PGresult *r = PQexec(c, "SELECT count(*) FROM enriched_events");
  long long n = PQresultStatus(r) == PGRES_TUPLES_OK ? atoll(PQgetvalue(r, 0, 0)) : -1;
  PQclear(r);
  return n;
}

/* Cut every connection to the test's database (but c's own) that is inside a transaction
 * or running a statement: a batch is cut off in the middle. How many were cut. */
static long cut_busy_connections(PGconn *c)
{
  PGresult *r = pg_run(c, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                          " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                          " AND state IN ('active', 'idle in transaction')");
  long n = atol(PQgetvalue(r, 0, 0));
  PQclear(r);
  return n;
}

/* ---- the child ---- */

/* Start weft-etl on the test's database with the common flags, then extra. */
static void start_etl(struct daemon *c, const char *const *extra)
{
  const char *args[64] = {"--users",      fake.url,      "--geo",          fake.url,
                          "--fx",         fake.url,      "--sink",         pg_db_url,
                          "--listen",     "127.0.0.1:0", "--debug-listen", "",
                          "--log-format", "text",        "--batch-wait",   "10ms"};
  int n = 16;
  for (int i = 0; extra[i]; i++)
    args[n++] = extra[i];
  args[n] = NULL;
  memset(c, 0, sizeof *c);
  spawn_daemon_into(c, "etl", args, NULL, -1);
}

/* Whether the child has exited (reaped into c->status). */
static bool child_done(struct daemon *c)
{
  return wait_exit(c, 0);
}

static int run_etl(const char *const *extra, int timeout_ms)
{
  struct daemon c;
  start_etl(&c, extra);
  int rc = wait_exit_code(&c, timeout_ms);
  if (rc != 0)
    dump_log(&c);
  return rc;
}

/* ---- input ---- */

static void event_line(char *buf, size_t cap, int i, const char *user)
{
  char u[64];
  snprintf(u, sizeof u, "u%d", i);
  snprintf(
      buf, cap,
      "{\"event_id\":\"ev-%d\",\"ts\":\"2024-05-01T12:00:%02d.5+02:00\",\"user_id\":\"%s\","
      "\"ip\":\"10.0.%d.%d\",\"amount_cents\":%d,\"currency\":\"EUR\"}\n",
      i, i % 60, user ? user : u, i / 256 % 256, i % 256, 101 + i);
}

/* Events first..first+n-1 into path, then extra_lines (may be NULL). */
static void write_events(const char *path, int first, int n, const char *extra_lines)
{
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  for (int i = first; i < first + n; i++) {
    char line[400];
    event_line(line, sizeof line, i, NULL);
    fputs(line, f);
  }
  if (extra_lines)
    fputs(extra_lines, f);
  fclose(f);
}

/* "file:DIR/name" into src, the path into path. */
static void input_file(const char *name, char *path, size_t plen, char *src, size_t slen)
{
  snprintf(path, plen, "%s/%s", tmp_dir, name);
  snprintf(src, slen, "file:%s", path);
}

/* ---- fixtures ---- */

static int setup(void **state)
{
  (void)state;
  if (!app_find_bin(NULL, "apps/etl/weft-etl"))
    fail_msg("weft-etl not built (%s)", app_bin);
  pg_create_db("etltest");
  app_make_tmp_dir("etl-pg");
  fake_start();
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  fake_stop();
  reap_children(); /* after a failed check: no child outlives its test */
  pg_drop_db();
  app_remove_tmp_dir();
  return 0;
}

/* ---- the tests ---- */

/* A file of N events, a repeated one, a 404 user and bad lines: N+1 rows complete with the
 * enrichment's values, the bad lines in dead_letters with origin, reason and raw bytes,
 * exit 0. */
static void test_file_end_to_end(void **state)
{
  (void)state;
  enum { N = 300 };
  char in[300], src[320], ghost[400], again[400], extra[1200], sql[PATH_MAX + 200];
  input_file("events.jsonl", in, sizeof in, src, sizeof src);
  event_line(ghost, sizeof ghost, 404, "ghost404");
  event_line(again, sizeof again, 7, NULL);
  snprintf(extra, sizeof extra,
           "not json\n%s"
           "{\"event_id\":\"bad-ts\",\"ts\":\"yesterday\",\"user_id\":\"u\",\"ip\":\"1.2.3.4\","
           "\"amount_cents\":1,\"currency\":\"EUR\"}\n%s",
           ghost, again);
  write_events(in, 0, N, extra);
  assert_int_equal(run_etl(ARGS("--source", src), 60000), 0);

  assert_int_equal(db_int(ROWS), N + 1);
  assert_int_equal(db_int(COMPLETE), N + 1);
  assert_int_equal(db_int(DEAD), 2);
  expect_text("SELECT tier||'/'||user_country||'/'||ip_country||'/'||city||'/'||"
              "amount_cents||'/'||amount_usd_cents||'/'||currency||'/'||ts||'/'||ip||'/'||"
              "user_id FROM enriched_events WHERE event_id='ev-5'",
              "gold/DE/FR/Paris/106/133/EUR/2024-05-01T12:00:05.5+02:00/10.0.0.5/u5");
  expect_text("SELECT missing FROM enriched_events WHERE event_id='ev-5'", NULL);
  /* users answered 404: its fields stay empty, the event is complete. */
  expect_text("SELECT coalesce(tier, 'none')||'/'||coalesce(user_country, 'none')||'/'||"
              "status||'/'||city||'/'||amount_usd_cents FROM enriched_events "
              "WHERE event_id='ev-404'",
              "none/none/complete/Paris/631");
  /* processed_at is the write's UTC time, RFC 3339 with microseconds. */
  assert_int_equal(db_int("SELECT count(*) FROM enriched_events WHERE processed_at ~ "
                          "'^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{6}Z$'"),
                   N + 1);
  char abs[PATH_MAX];
  assert_non_null(realpath(in, abs));
  snprintf(sql, sizeof sql,
           "SELECT event_id||'|'||convert_from(raw, 'UTF8')||'|'||(error LIKE "
           "'invalid JSON%%')::text FROM dead_letters WHERE origin='file:%s:%d'",
           abs, N + 1);
  expect_text(sql, "|not json|true");
  snprintf(sql, sizeof sql,
           "SELECT event_id||'|'||error FROM dead_letters WHERE origin='file:%s:%d'", abs,
           N + 3);
  expect_text(sql, "bad-ts|ts \"yesterday\" is not RFC 3339");
}

/* Rerunning a file stores each event and each dead letter once; a partial never
 * overwrites a complete row; a complete one replaces a partial. */
static void test_rerun_upsert(void **state)
{
  (void)state;
  char in[300], src[320];
  input_file("u.jsonl", in, sizeof in, src, sizeof src);
  write_events(in, 0, 20, "{oops\n");
  assert_int_equal(run_etl(ARGS("--source", src), 30000), 0);
  assert_int_equal(run_etl(ARGS("--source", src, "--batch-size", "3"), 30000), 0);
  assert_int_equal(db_int(ROWS), 20);
  assert_int_equal(db_int(COMPLETE), 20);
  assert_int_equal(db_int(DEAD), 1);

  atomic_store(&fake.down[USERS], 1);
  assert_int_equal(run_etl(ARGS("--source", src, "--retries", "1"), 30000), 0);
  assert_int_equal(db_int(COMPLETE), 20);
  assert_int_equal(db_int("SELECT count(*) FROM enriched_events WHERE tier='gold' AND "
                          "missing IS NULL"),
                   20);

  write_events(in, 100, 10, NULL);
  assert_int_equal(run_etl(ARGS("--source", src, "--retries", "1"), 30000), 0);
  assert_int_equal(db_int(PARTIAL), 10);
  assert_int_equal(db_int("SELECT count(*) FROM enriched_events WHERE missing='users' AND "
                          "tier IS NULL AND city='Paris' AND amount_usd_cents IS NOT NULL"),
                   10);

  atomic_store(&fake.down[USERS], 0);
  assert_int_equal(run_etl(ARGS("--source", src), 30000), 0);
  assert_int_equal(db_int(PARTIAL), 0);
  assert_int_equal(db_int(COMPLETE), 30);
  assert_int_equal(db_int(DEAD), 1);
}

/* The server cuts weft-etl's connection in the middle of a batch, several times while it
 * writes: every batch is written again on a fresh connection, every event stored once,
 * exit 0. */
static void test_connection_cut(void **state)
{
  (void)state;
  enum { N = 3000, CUTS = 4 };
  char in[300], src[320];
  input_file("cut.jsonl", in, sizeof in, src, sizeof src);
  write_events(in, 0, N, NULL);
  atomic_store(&fake.delay_ms, 2);
  struct daemon c;
  start_etl(&c, ARGS("--source", src, "--batch-size", "10", "--enrich-concurrency", "4"));
  PGconn *pg = pg_open(pg_db_url);
  int cuts = 0;
  bool done = false;
  long long next = 0; /* cut once this many rows are in */
  for (int64_t end = mono_ms() + 60000; cuts < CUTS && !(done = child_done(&c));) {
    if (mono_ms() > end)
      break;
    long long now = rows_so_far(pg);
    if (now >= next && now < N && cut_busy_connections(pg) > 0)
      cuts++, next = now + N / (2 * CUTS); /* the next cut once more batches are in */
  }
  PQfinish(pg);
  int rc =
      done ? (WIFEXITED(c.status) ? WEXITSTATUS(c.status) : -1) : wait_exit_code(&c, 60000);
  if (rc != 0 || cuts < CUTS)
    dump_log(&c);
  assert_int_equal(rc, 0);
  if (cuts < CUTS)
    fail_msg("only %d of %d cuts happened while weft-etl wrote", cuts, CUTS);
  assert_int_equal(db_int(ROWS), N);
  assert_int_equal(db_int(COMPLETE), N);
  assert_int_equal(db_int("SELECT count(DISTINCT event_id) FROM enriched_events"), N);
}

/* Two processes start at once on a fresh database: the schema is made once, without a
 * catalog race, and both write their files. */
static void test_two_start_at_once(void **state)
{
  (void)state;
  char in1[300], src1[320], in2[300], src2[320];
  input_file("a.jsonl", in1, sizeof in1, src1, sizeof src1);
  input_file("b.jsonl", in2, sizeof in2, src2, sizeof src2);
  write_events(in1, 0, 100, NULL);
  write_events(in2, 50, 100, "[]\n");
  struct daemon a, b;
  start_etl(&a, ARGS("--source", src1));
  start_etl(&b, ARGS("--source", src2));
  int ra = wait_exit_code(&a, 30000), rb = wait_exit_code(&b, 30000);
  if (ra)
    dump_log(&a);
  if (rb)
    dump_log(&b);
  assert_int_equal(ra, 0);
  assert_int_equal(rb, 0);
  assert_int_equal(db_int(ROWS), 150);
  assert_int_equal(db_int(COMPLETE), 150);
  assert_int_equal(db_int(DEAD), 1);
}

/* Batches larger than one INSERT takes (sink_pg.c: ROWS_PER_STMT) of both kinds, with
 * repeated event_ids among them: every event and dead letter stored once. Every third
 * line is bad; the good ones are events i % N, so the first ones come round again. */
static void test_big_batches(void **state)
{
  (void)state;
  enum { N = 2000, LINES = 4500 };
  char in[300], src[320];
  input_file("big.jsonl", in, sizeof in, src, sizeof src);
  FILE *f = fopen(in, "w");
  assert_non_null(f);
  static bool seen[N];
  memset(seen, 0, sizeof seen);
  long long events = 0, bad = 0;
  for (int i = 0; i < LINES; i++) {
    char line[400];
    if (i % 3 == 2) {
      snprintf(line, sizeof line, "bad %d\n", i);
      bad++;
    } else {
      event_line(line, sizeof line, i % N, NULL);
      events += !seen[i % N];
      seen[i % N] = true;
    }
    fputs(line, f);
  }
  fclose(f);
  assert_int_equal(run_etl(ARGS("--source", src, "--batch-size", "10000", "--batch-wait", "10s",
                                "--enrich-concurrency", "256"),
                           60000),
                   0);
  assert_int_equal(db_int(ROWS), events);
  assert_int_equal(db_int(COMPLETE), events);
  assert_int_equal(db_int(DEAD), bad);
  /* A batch shares one processed_at (failed_at): some took more than one INSERT. */
  assert_true(db_int("SELECT max(n) FROM (SELECT count(*) AS n FROM enriched_events"
                     " GROUP BY processed_at) AS b") > 1000);
  assert_true(db_int("SELECT max(n) FROM (SELECT count(*) AS n FROM dead_letters"
                     " GROUP BY failed_at) AS b") > 1000);
  /* line L (1-based) holds "bad L-1" */
  assert_int_equal(db_int("SELECT count(*) FROM dead_letters WHERE raw = convert_to('bad ' ||"
                          " (split_part(origin, ':', 3)::int - 1)::text, 'UTF8')"),
                   bad);
}

/* Count the lines of the child's log; the first into first. */
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

static void expect_exit2(const char *sink, const char *needle)
{
  char in[300], src[320];
  input_file("x.jsonl", in, sizeof in, src, sizeof src);
  write_events(in, 0, 1, NULL);
  snprintf(pg_db_url, sizeof pg_db_url, "%s", sink);
  struct daemon c;
  char first[1024];
  start_etl(&c, ARGS("--source", src));
  int rc = wait_exit_code(&c, 30000);
  int n = log_lines(&c, first, sizeof first);
  if (rc != 2 || n != 1 || !strstr(first, needle)) {
    dump_log(&c);
    fail_msg("want exit 2 with one line holding \"%s\"; got exit %d, %d lines", needle, rc, n);
  }
}

/* A server that is not there, a database that does not exist, a URL that does not parse:
 * one line on stderr, exit 2. */
static void test_unreachable(void **state)
{
  (void)state;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof a;
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  getsockname(fd, (struct sockaddr *)&a, &al);
  char url[200], saved[sizeof pg_db_url], missing[sizeof pg_db_url];
  /* bound, not listening: connections to it are refused */
  snprintf(url, sizeof url, "postgres://postgres@127.0.0.1:%d/etl", ntohs(a.sin_port));
  snprintf(saved, sizeof saved, "%s", pg_db_url);
  url_with_db(pg_admin_url, "etl_no_such_db", missing, sizeof missing);
  expect_exit2(url, "--sink postgres (host 127.0.0.1");
  expect_exit2(missing, "etl_no_such_db");
  expect_exit2("postgresql://127.0.0.1:5432/x?nonsense=1", "invalid --sink URL");
  close(fd);
  snprintf(pg_db_url, sizeof pg_db_url, "%s", saved);
}

int main(void)
{
  signal(SIGPIPE, SIG_IGN);
  int skip_code = pg_check_env();
  if (skip_code >= 0)
    return skip_code;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_file_end_to_end, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rerun_upsert, setup, teardown),
      cmocka_unit_test_setup_teardown(test_connection_cut, setup, teardown),
      cmocka_unit_test_setup_teardown(test_two_start_at_once, setup, teardown),
      cmocka_unit_test_setup_teardown(test_big_batches, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unreachable, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
