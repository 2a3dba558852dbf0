/* paymentd on PostgreSQL (apps/paymentd/store_pg.c; contract: shared/specs/paymentd.md),
 * and several paymentd processes on one database.
 *
 * The server is the one WEFT_TEST_PG_URL names (scripts/test.sh starts a private one with
 * scripts/pg-start.sh); without it the tests are skipped with a message, unless
 * WEFT_TEST_PG_REQUIRED=1, which makes that a failure (exit 77, CTest's "skipped", or 1). Each
 * test makes its own database (paytest_<pid>_<n>) and drops it WITH (FORCE) at the end, so runs
 * repeat and run beside others. The test reads and writes the table itself with libpq's
 * blocking API (it is a plain program, not a weft one).
 *
 * paymentd runs as a child process on a free loopback port with its output in a file
 * under a fresh temporary directory; requests go over plain blocking sockets with receive
 * timeouts, one connection each, from threads when they must overlap; every child is
 * killed in teardown, so a test is bounded in time. */
#include <jansson.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "child.h"
#include "coro_check.h"
#include "fixture.h"
#include "http.h"
#include "pgtest.h"
#include "weft_test.h"

/* ---- the database (pgtest.h) ---- */

static long pg_count(PGconn *c, const char *where)
{
  PGresult *r = pg_run(c, "SELECT count(*) FROM payments WHERE %s", where);
  long n = atol(PQgetvalue(r, 0, 0));
  PQclear(r);
  return n;
}

/* ---- HTTP (the harness's client, http.h) ---- */

static bool replayed(const struct resp *r)
{
  const char *v = header(r, "Idempotent-Replayed");
  return v && strcmp(v, "true") == 0;
}

static void post(int port, const char *id, const char *body, struct resp *r)
{
  char path[128];
  snprintf(path, sizeof path, "/v1/payments/%s/confirm", id);
  http(port, "POST", path, JSON_CT, body, r);
}

static const char *jstr(const struct resp *r, const char *key)
{
  json_t *v = json_object_get(r->json, key);
  return json_is_string(v) ? json_string_value(v) : "";
}

static long long jint(const struct resp *r, const char *key)
{
  json_t *v = json_object_get(r->json, key);
  return json_is_integer(v) ? json_integer_value(v) : -1;
}

static bool is_error(const struct resp *r, int status, const char *code)
{
  return r->status == status && strcmp(jstr(r, "error"), code) == 0;
}

static void body_for(char *out, size_t cap, long long amount, const char *acct)
{
  snprintf(out, cap, "{\"amount_cents\":%lld,\"currency\":\"EUR\",\"account\":\"%s\"}", amount,
           acct);
}

/* ---- starting paymentd ---- */

/* Start paymentd on the test's database with extra args; see wait_up. */
static void spawn_daemon(struct daemon *d, const char *const *extra)
{
  memset(d, 0, sizeof *d);
  d->port = free_port();
  char listen[64];
  snprintf(listen, sizeof listen, "127.0.0.1:%d", d->port);
  const char *argv[MAX_ARGV] = {"--listen", listen, "--debug-listen", "", "--store", pg_db_url};
  int n = 6;
  for (int i = 0; extra && extra[i]; i++)
    argv[n++] = extra[i];
  argv[n] = NULL;
  spawn_daemon_into(d, "paymentd", argv, NULL, -1);
}

/* Wait until d's /healthz answers 200. */
static void wait_up(struct daemon *d)
{
  for (int64_t end = mono_ms() + 30000;;) {
    struct resp r;
    http(d->port, "GET", "/healthz", NULL, NULL, &r);
    int status = r.status;
    resp_free(&r);
    if (status == 200)
      return;
    if (wait_exit(d, 0) || mono_ms() > end) {
      kill_daemon(d);
      dump_log(d);
      fail_msg("paymentd did not come up (status %d)", d->status);
    }
    sleep_ms(20);
  }
}

static void start_daemon(struct daemon *d, const char *const *extra)
{
  spawn_daemon(d, extra);
  wait_up(d);
}

/* SIGTERM and a clean exit. Under TSan a connection wakes the poller so the handler runs
 * (see tests/apps/test_paymentd.c, poke). */
static void stop_daemon(struct daemon *d)
{
  kill(d->pid, SIGTERM);
  for (int64_t end = mono_ms() + 30000; !wait_exit(d, 100);) {
    if (TSAN) {
      struct resp r;
      http(d->port, "GET", "/healthz", NULL, NULL, &r);
      resp_free(&r);
    }
    if (mono_ms() > end) {
      kill_daemon(d);
      dump_log(d);
      fail_msg("paymentd did not exit within 30 s of SIGTERM");
    }
  }
  if (!WIFEXITED(d->status) || WEXITSTATUS(d->status) != 0) {
    dump_log(d);
    fail_msg("paymentd exited with status %d after SIGTERM", d->status);
  }
}

/* ---- fixtures ---- */

static int setup(void **state)
{
  (void)state;
  child_env_drop = "PAYMENTD_"; /* the flags under test come from each test alone */
  if (!app_find_bin(NULL, "apps/paymentd/paymentd"))
    fail_msg("paymentd not built (%s)", app_bin);
  pg_create_db("paytest");
  app_make_tmp_dir("paymentd-pg");
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  reap_children(); /* after a failed check: no child outlives its test */
  pg_drop_db();
  app_remove_tmp_dir();
  return 0;
}

/* The row of id as "state amount currency account confirmed_at" ("" when none). */
static void row_of(PGconn *c, const char *id, char *out, size_t size)
{
  PGresult *r = pg_run(c,
                       "SELECT state || ' ' || amount_cents || ' ' || currency || ' ' ||"
                       " account || ' ' || coalesce(to_char(confirmed_at AT TIME ZONE 'UTC',"
                       " 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), '-')"
                       " FROM payments WHERE id = '%s'",
                       id);
  snprintf(out, size, "%s", PQntuples(r) ? PQgetvalue(r, 0, 0) : "");
  PQclear(r);
}

/* The row paymentd's 200 r promises: "confirmed AMOUNT EUR ACCOUNT CONFIRMED_AT". */
static void row_promised(const struct resp *r, char *out, size_t size)
{
  snprintf(out, size, "confirmed %lld %s %s %s", jint(r, "amount_cents"), jstr(r, "currency"),
           jstr(r, "account"), jstr(r, "confirmed_at"));
}

/* ---- the tests ---- */

static const char GOOD[] =
    "{\"amount_cents\":1250,\"currency\":\"EUR\",\"account\":\"acct-1\"}";

/* The contract's basics on PostgreSQL: 200 and a durable row with the same values,
 * replay, conflict, GET 200 and 404; the row is there after paymentd has gone. */
static void test_basics(void **state)
{
  (void)state;
  struct daemon d;
  struct resp r, r2;
  start_daemon(&d, ARGS("--workers", "2"));
  post(d.port, "pg-1", GOOD, &r);
  assert_int_equal(r.status, 200);
  assert_false(replayed(&r));
  assert_string_equal(jstr(&r, "status"), "confirmed");
  assert_int_equal(jint(&r, "amount_cents"), 1250);
  char want[512], got[512];
  row_promised(&r, want, sizeof want);

  post(d.port, "pg-1", GOOD, &r2);
  assert_int_equal(r2.status, 200);
  assert_true(replayed(&r2));
  assert_string_equal(jstr(&r2, "confirmed_at"), jstr(&r, "confirmed_at"));
  resp_free(&r2);

  post(d.port, "pg-1", "{\"amount_cents\":1251,\"currency\":\"EUR\",\"account\":\"acct-1\"}",
       &r2);
  assert_true(is_error(&r2, 409, "conflict"));
  resp_free(&r2);

  http(d.port, "GET", "/v1/payments/pg-1", NULL, NULL, &r2);
  assert_int_equal(r2.status, 200);
  assert_false(replayed(&r2));
  assert_string_equal(jstr(&r2, "account"), "acct-1");
  assert_string_equal(jstr(&r2, "confirmed_at"), jstr(&r, "confirmed_at"));
  resp_free(&r2);
  http(d.port, "GET", "/v1/payments/pg-unknown", NULL, NULL, &r2);
  assert_true(is_error(&r2, 404, "not_found"));
  resp_free(&r2);

  stop_daemon(&d);
  PGconn *c = pg_open(pg_db_url);
  row_of(c, "pg-1", got, sizeof got);
  assert_string_equal(got, want);
  assert_int_equal(pg_count(c, "true"), 1);
  PQfinish(c);
  resp_free(&r);
}

/* An unusable store at start: one line on stderr naming it, exit 2 (nothing listens). */
static void expect_exit2(const char *store, const char *needle)
{
  struct daemon d = {.port = free_port()};
  snprintf(d.log, sizeof d.log, "%s/bad-store.log", tmp_dir);
  char listen[64];
  snprintf(listen, sizeof listen, "127.0.0.1:%d", d.port);
  d.pid = spawn_child(ARGS("--listen", listen, "--debug-listen", "", "--store", store), NULL,
                      -1, d.log);
  if (!wait_exit(&d, 30000)) {
    kill_daemon(&d);
    fail_msg("--store %s: still running after 30 s", store);
  }
  char *out = slurp(d.log);
  size_t lines = 0;
  for (char *p = out; *p; p++)
    lines += *p == '\n';
  if (!WIFEXITED(d.status) || WEXITSTATUS(d.status) != 2 || lines != 1 ||
      strncmp(out, "paymentd: ", 10) != 0 || !strstr(out, needle)) {
    fprintf(stderr, "--store %s: status %d, output:\n%s", store, d.status, out);
    fail_msg("want exit 2 and one line naming %s", needle);
  }
  free(out);
}

static void test_store_down_at_start(void **state)
{
  (void)state;
  char url[1200];
  snprintf(url, sizeof url, "postgresql://postgres@127.0.0.1:%d/x", free_port());
  expect_exit2(url, "postgres");
  url_with_db(pg_admin_url, "no_such_database_paytest", url, sizeof url);
  expect_exit2(url, "no_such_database_paytest");
  expect_exit2("postgres://127.0.0.1:5432/x?no_such_option=1", "URL");
}

/* The database cuts every paymentd connection mid-run: the requests after it succeed
 * once paymentd has reconnected, or fail with 500 store_error; a 200 always has its row. */
static void test_connections_cut(void **state)
{
  (void)state;
  enum { BEFORE = 8, AFTER = 24 };
  struct daemon d;
  start_daemon(&d, ARGS("--workers", "4"));
  PGconn *c = pg_open(pg_db_url);
  char id[64], want[512], got[512];
  int failed = 0;
  for (int i = 0; i < BEFORE + AFTER; i++) {
    if (i == BEFORE) {
      PGresult *k =
          pg_run(c, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()");
      long cut = atol(PQgetvalue(k, 0, 0));
      PQclear(k);
      if (cut < 1)
        fail_msg("no paymentd connection to cut");
    }
    snprintf(id, sizeof id, "cut-%d", i);
    struct resp r;
    post(d.port, id, GOOD, &r);
    if (r.status == 200) {
      assert_false(replayed(&r));
      row_promised(&r, want, sizeof want);
      row_of(c, id, got, sizeof got);
      if (strcmp(want, got) != 0)
        fail_msg("%s answered 200 but the row is \"%s\"", id, got);
    } else if (i < BEFORE || !is_error(&r, 500, "store_error")) {
      dump_log(&d);
      fail_msg("%s answered %d %s", id, r.status, jstr(&r, "error"));
    }
    failed += r.status != 200;
    if (i == BEFORE + AFTER - 1 && r.status != 200)
      fail_msg("still failing %d requests after the cut", AFTER);
    resp_free(&r);
  }
  fprintf(stderr, "connections cut: %d of %d requests after it failed with 500\n", failed,
          AFTER);
  assert_int_equal(pg_count(c, "state <> 'confirmed'"), 0);
  PQfinish(c);
  stop_daemon(&d);
}

/* One id sent to both processes at the same moment. */
enum { PAIRS = 16, IDS = 200 };

struct side {
  int port;
  struct resp r[IDS];
};

static void id_body(int i, int which, char *id, size_t idlen, char *body, size_t blen)
{
  snprintf(id, idlen, "multi-%d", i);
  /* every fifth id: different values on the two processes */
  body_for(body, blen, 1000 + i + (i % 5 == 0 ? which : 0), i % 5 == 0 && which ? "b" : "a");
}

struct pair_side {
  struct side *side;
  int which; /* 0 or 1: the process */
  int k;
  pthread_barrier_t *go; /* shared by the two threads of a pair */
};

static void *pair_side_run(void *arg)
{
  struct pair_side *ps = arg;
  char id[64], body[256], path[128];
  for (int i = ps->k; i < IDS; i += PAIRS) {
    id_body(i, ps->which, id, sizeof id, body, sizeof body);
    snprintf(path, sizeof path, "/v1/payments/%s/confirm", id);
    int fd = connect_to(ps->side->port);
    pthread_barrier_wait(ps->go); /* both connected: send together */
    if (fd >= 0) {
      write_req(fd, "POST", path, JSON_CT, body, strlen(body), true);
      read_resp(fd, &ps->side->r[i]);
      close(fd);
    }
    pthread_barrier_wait(ps->go);
  }
  return NULL;
}

static void test_two_processes(void **state)
{
  (void)state;
  struct daemon d[2];
  static struct side sides[2];
  memset(sides, 0, sizeof sides);
  for (int w = 0; w < 2; w++) /* at once: both create the table on the fresh database */
    spawn_daemon(&d[w], ARGS("--workers", "8", "--queue", "256", "--work-ms", "50"));
  for (int w = 0; w < 2; w++) {
    wait_up(&d[w]);
    sides[w].port = d[w].port;
  }
  pthread_barrier_t go[PAIRS];
  int64_t t0 = mono_ms();
  struct pair_side ps[PAIRS][2];
  pthread_t th[PAIRS][2];
  for (int k = 0; k < PAIRS; k++) {
    pthread_barrier_init(&go[k], NULL, 2);
    for (int w = 0; w < 2; w++) {
      ps[k][w] = (struct pair_side){&sides[w], w, k, &go[k]};
      assert_int_equal(pthread_create(&th[k][w], NULL, pair_side_run, &ps[k][w]), 0);
    }
  }
  for (int k = 0; k < PAIRS; k++)
    for (int w = 0; w < 2; w++)
      pthread_join(th[k][w], NULL);
  for (int k = 0; k < PAIRS; k++)
    pthread_barrier_destroy(&go[k]);
  int64_t took = mono_ms() - t0;

  PGconn *c = pg_open(pg_db_url);
  int in_progress = 0, replays = 0, conflict = 0;
  char id[64], body[256], want[512], got[512];
  for (int i = 0; i < IDS; i++) {
    id_body(i, 0, id, sizeof id, body, sizeof body);
    struct resp *a = &sides[0].r[i], *b = &sides[1].r[i];
    bool plain_a = a->status == 200 && !replayed(a), plain_b = b->status == 200 && !replayed(b);
    if (plain_a == plain_b)
      fail_msg("%s: answers %d%s and %d%s: want exactly one plain 200", id, a->status,
               replayed(a) ? " replayed" : "", b->status, replayed(b) ? " replayed" : "");
    struct resp *won = plain_a ? a : b, *other = plain_a ? b : a;
    bool same = i % 5 != 0;
    if (is_error(other, 409, "in_progress"))
      in_progress++;
    else if (same && other->status == 200 && replayed(other))
      replays++;
    else if (!same && is_error(other, 409, "conflict"))
      conflict++;
    else
      fail_msg("%s (%s values): the second answer is %d %s", id, same ? "same" : "different",
               other->status, jstr(other, "error"));
    if (other->status == 200)
      assert_string_equal(jstr(other, "confirmed_at"), jstr(won, "confirmed_at"));
    row_promised(won, want, sizeof want);
    row_of(c, id, got, sizeof got);
    if (strcmp(want, got) != 0)
      fail_msg("%s: the plain 200 promised \"%s\", the table holds \"%s\"", id, want, got);
    resp_free(a);
    resp_free(b);
  }
  fprintf(stderr,
          "two processes, %d ids in %lld ms: second answers %d in_progress, %d replayed, "
          "%d conflict\n",
          IDS, (long long)took, in_progress, replays, conflict);
  assert_int_equal(pg_count(c, "true"), IDS);
  assert_int_equal(pg_count(c, "state <> 'confirmed'"), 0);
  if (in_progress < IDS / 10)
    fail_msg("only %d of %d simultaneous pairs met in flight: the race was not exercised",
             in_progress, IDS);
  PQfinish(c);
  stop_daemon(&d[0]);
  stop_daemon(&d[1]);
}

/* A pending row whose lease has ended (its process died mid-job) is taken over and
 * confirmed; one whose lease still runs is in progress. */
static void test_crashed_claim(void **state)
{
  (void)state;
  struct daemon d;
  start_daemon(&d, ARGS("--workers", "2")); /* creates the table */
  PGconn *c = pg_open(pg_db_url);
  pg_do(c, "INSERT INTO payments (id, state, amount_cents, currency, account, claim_token,"
           " claim_expires) VALUES ('dead', 'pending', 99, 'USD', 'x', 'deadbeef',"
           " now() - interval '1 second'), ('busy', 'pending', 1250, 'EUR', 'acct-1',"
           " 'cafe', now() + interval '1 hour')");
  struct resp r;
  http(d.port, "GET", "/v1/payments/dead", NULL, NULL, &r);
  assert_true(is_error(&r, 404, "not_found")); /* a pending row is no record */
  resp_free(&r);
  post(d.port, "dead", GOOD, &r);
  assert_int_equal(r.status, 200);
  assert_false(replayed(&r));
  char want[512], got[512];
  row_promised(&r, want, sizeof want);
  row_of(c, "dead", got, sizeof got);
  assert_string_equal(got, want);
  assert_non_null(strstr(got, "confirmed 1250 EUR acct-1 "));
  resp_free(&r);

  post(d.port, "busy", GOOD, &r);
  assert_true(is_error(&r, 409, "in_progress"));
  resp_free(&r);
  row_of(c, "busy", got, sizeof got);
  assert_string_equal(got, "pending 1250 EUR acct-1 -");
  PQfinish(c);
  stop_daemon(&d);
}

/* A confirmation posted in the background (a thread), for a job that outlives its lease. */
struct background_post {
  pthread_t thread;
  int port;
  const char *id, *body;
  struct resp r;
};

static void *background_post_main(void *arg)
{
  struct background_post *b = arg;
  post(b->port, b->id, b->body, &b->r);
  return NULL;
}

/* Wait until id's row reads want (e.g. its pending claim); false after 5 s. */
static bool wait_row(PGconn *c, const char *id, const char *want)
{
  char got[512];
  for (int i = 0; i < 500; i++) {
    row_of(c, id, got, sizeof got);
    if (strcmp(got, want) == 0)
      return true;
    usleep(10000);
  }
  return false;
}

/* A claim lost to a takeover: the job of the first process sleeps past its lease (expired
 * here by hand), a second process takes the id over and confirms it; the first one's
 * completion then finds its claim gone and answers from what is stored: 409 conflict for
 * other values, a replay for the same ones. The row holds the second process's record. */
static void test_lost_claim(void **state)
{
  (void)state;
  struct daemon slow, fast;
  start_daemon(&slow, ARGS("--workers", "2", "--work-ms", "1500"));
  start_daemon(&fast, ARGS("--workers", "2"));
  PGconn *c = pg_open(pg_db_url);
  static const char OTHER[] =
      "{\"amount_cents\":1250,\"currency\":\"EUR\",\"account\":\"acct-2\"}";
  const char *bodies[] = {OTHER, GOOD};
  const char *ids[] = {"lost-conflict", "lost-replay"};
  for (int k = 0; k < 2; k++) {
    struct background_post b = {.port = slow.port, .id = ids[k], .body = GOOD};
    assert_int_equal(pthread_create(&b.thread, NULL, background_post_main, &b), 0);
    assert_true(wait_row(c, ids[k], "pending 1250 EUR acct-1 -")); /* claimed, sleeping */
    char sql[256];
    snprintf(sql, sizeof sql,
             "UPDATE payments SET claim_expires = now() - interval '1 second' WHERE id = '%s'",
             ids[k]);
    pg_do(c, sql);
    struct resp r;
    post(fast.port, ids[k], bodies[k], &r); /* takes the expired claim over */
    assert_int_equal(r.status, 200);
    assert_false(replayed(&r));
    char want[512], got[512];
    row_promised(&r, want, sizeof want);
    resp_free(&r);
    pthread_join(b.thread, NULL);
    if (k == 0) {
      assert_true(is_error(&b.r, 409, "conflict"));
    } else {
      assert_int_equal(b.r.status, 200);
      assert_true(replayed(&b.r));
      char also[512];
      row_promised(&b.r, also, sizeof also);
      assert_string_equal(also, want); /* the record the second process stored */
    }
    resp_free(&b.r);
    row_of(c, ids[k], got, sizeof got);
    assert_string_equal(got, want);
  }
  PQfinish(c);
  stop_daemon(&slow);
  stop_daemon(&fast);
}

int main(void)
{
  signal(SIGPIPE, SIG_IGN);
  int skip_code = pg_check_env();
  if (skip_code >= 0)
    return skip_code;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_basics, setup, teardown),
      cmocka_unit_test_setup_teardown(test_store_down_at_start, setup, teardown),
      cmocka_unit_test_setup_teardown(test_connections_cut, setup, teardown),
      cmocka_unit_test_setup_teardown(test_two_processes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_crashed_claim, setup, teardown),
      cmocka_unit_test_setup_teardown(test_lost_claim, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
