/* test_pg.c: libweft_pg (weft/pg.h) against a real PostgreSQL server.
 *
 * The server is the one scripts/pg-start.sh starts (scripts/test.sh does and exports
 * WEFT_TEST_PG_URL). Without WEFT_TEST_PG_URL every test prints "skipped: ..." and
 * passes, unless WEFT_TEST_PG_REQUIRED=1, when they fail. Tests may run concurrently with
 * other programs on the same server: each run works in a schema of its own
 * (weft_pg_test_<pid>), dropped at the end, and otherwise only in temporary tables.
 *
 * Covered: connect, exec with parameters (NULL included), rows, several statements; a
 * server error is -EIO with its SQLSTATE and leaves the connection usable; a bad conninfo
 * or a closed port is -WEFT_EDBCONN with a reason, fast; a deadline or a context ending
 * during pg_sleep gives -ETIMEDOUT / -ECANCELED on time and a broken connection the pool
 * replaces; on one scheduler thread another coroutine keeps running while a query waits;
 * a backend killed with pg_terminate_backend makes the next query on that connection
 * -ECONNRESET and the pool recovers; acquire parks while the pool is exhausted and honours
 * its context; 200 coroutines x 20 queries through a pool of 4 on P = 1..4. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "coro_check.h"
#include "weft/pg.h"
#include "weft_test.h"

/* Generous bounds for sanitized builds on a busy machine. */
/* Generous (the machine is shared), yet well below the 2 s of the pg_sleep being cut. */
#define SLACK (SANITIZED ? MS(1500) : MS(1200))

static const char *pg_url;
static char schema[64];

/* Whether the test must be skipped (no server configured); fails it when one is required. */
static bool no_server(void)
{
  if (pg_url)
    return false;
  const char *req = getenv("WEFT_TEST_PG_REQUIRED");
  if (req && strcmp(req, "1") == 0)
    fail_msg("WEFT_TEST_PG_URL not set and WEFT_TEST_PG_REQUIRED=1");
  printf("skipped: WEFT_TEST_PG_URL not set\n");
  return true;
}

/* Run sql on c with nparams values; return the result code and keep the result in *res
 * (NULL if none). Prints the server's message on -EIO. */
static int run(weft_pg *c, const char *sql, int nparams, const char *const *values,
               PGresult **res)
{
  int rc = weft_pg_exec(c, NULL, weft_now() + MS(10000), sql, nparams, values, res);
  if (rc == -EIO && *res)
    fprintf(stderr, "server error (%s): %s", sql, PQresultErrorMessage(*res));
  return rc;
}

/* Run sql that must succeed; returns the first column of the first row as a number (0
 * when there is none). */
static long run_ok(weft_pg *c, const char *sql, int nparams, const char *const *values)
{
  PGresult *res = NULL;
  int rc = run(c, sql, nparams, values, &res);
  CHECK_EQ(rc, 0);
  long v = res && PQntuples(res) > 0 ? atol(PQgetvalue(res, 0, 0)) : 0;
  PQclear(res);
  return v;
}

static weft_pg *connect_ok(void)
{
  char err[256];
  weft_pg *c = NULL;
  int rc = weft_pg_connect(pg_url, NULL, weft_now() + MS(10000), &c, err, sizeof err);
  if (rc != 0)
    fprintf(stderr, "connect: %s (%s)\n", weft_strerror(rc), err);
  CHECK_EQ(rc, 0);
  return c;
}

static weft_pg_pool *pool_ok(int max_conns)
{
  char err[256];
  weft_pg_pool *p = NULL;
  weft_pg_pool_options o = {.conninfo = pg_url, .max_conns = max_conns};
  int rc = weft_pg_pool_new(&o, &p, err, sizeof err);
  if (rc != 0)
    fprintf(stderr, "pool: %s (%s)\n", weft_strerror(rc), err);
  CHECK_EQ(rc, 0);
  return p;
}

/* The backend pid serving c. */
static long backend_pid(weft_pg *c)
{
  return run_ok(c, "SELECT pg_backend_pid()", 0, NULL);
}

/* Run fn on P scheduler threads and fail the test on a failed check. */
static void scenario(int procs, int (*fn)(void *), void *arg)
{
  checks_reset();
  assert_int_equal(run_weft(procs, fn, arg), 0);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- connect and exec ---- */

static int exec_main(void *arg)
{
  weft_pg *c = connect_ok();
  if (!c)
    return 0;
  const char *const v[] = {"2", "40", NULL};
  PGresult *res = NULL;
  CHECK_EQ(run(c, "SELECT $1::int + $2::int, $3::text IS NULL, 'x' || $1", 3, v, &res), 0);
  CHECK_EQ(PQresultStatus(res), PGRES_TUPLES_OK);
  CHECK_EQ(PQntuples(res), 1);
  CHECK_EQ(PQnfields(res), 3);
  CHECK(strcmp(PQgetvalue(res, 0, 0), "42") == 0);
  CHECK(strcmp(PQgetvalue(res, 0, 1), "t") == 0);
  CHECK(strcmp(PQgetvalue(res, 0, 2), "x2") == 0);
  PQclear(res);

  CHECK_EQ(run(c, "SELECT g, g * g FROM generate_series(1, 500) g", 0, NULL, &res), 0);
  CHECK_EQ(PQntuples(res), 500);
  long sum = 0;
  for (int i = 0; i < PQntuples(res); i++)
    sum += atol(PQgetvalue(res, i, 1));
  CHECK_EQ(sum, 500L * 501 * 1001 / 6);
  PQclear(res);

  /* Several statements without parameters: the last result is handed back. */
  CHECK_EQ(run_ok(c, "CREATE TEMP TABLE t (v int); INSERT INTO t VALUES (7); SELECT v FROM t",
                  0, NULL),
           7);
  CHECK_EQ(run(c, "INSERT INTO t VALUES (8)", 0, NULL, &res), 0);
  CHECK_EQ(PQresultStatus(res), PGRES_COMMAND_OK);
  CHECK(strcmp(PQcmdTuples(res), "1") == 0);
  PQclear(res);
  CHECK(!weft_pg_broken(c));
  CHECK(PQserverVersion(weft_pg_conn(c)) >= 100000);
  weft_pg_close(c);
  return 0;
}

static void test_connect_exec(void **state)
{
  if (no_server())
    return;
  scenario(2, exec_main, NULL);
}

/* ---- server errors ---- */

static int server_error_main(void *arg)
{
  weft_pg *c = connect_ok();
  if (!c)
    return 0;
  run_ok(c, "CREATE TEMP TABLE u (id int PRIMARY KEY)", 0, NULL);
  const char *const v[] = {"1"};
  run_ok(c, "INSERT INTO u VALUES ($1)", 1, v);
  PGresult *res = NULL;
  int rc = weft_pg_exec(c, NULL, WEFT_NO_DEADLINE, "INSERT INTO u VALUES ($1)", 1, v, &res);
  CHECK_EQ(rc, -EIO);
  CHECK(res != NULL);
  if (res) {
    CHECK_EQ(PQresultStatus(res), PGRES_FATAL_ERROR);
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    CHECK(state && strcmp(state, "23505") == 0);
    PQclear(res);
  }
  CHECK(!weft_pg_broken(c));
  rc = weft_pg_exec(c, NULL, WEFT_NO_DEADLINE, "SELEC 1", 0, NULL, &res);
  CHECK_EQ(rc, -EIO);
  CHECK(res && strcmp(PQresultErrorField(res, PG_DIAG_SQLSTATE), "42601") == 0);
  PQclear(res);
  /* Still usable, and the failed insert left nothing behind. */
  CHECK_EQ(run_ok(c, "SELECT count(*) FROM u", 0, NULL), 1);
  CHECK(!weft_pg_broken(c));
  /* Misuse: -EINVAL, nothing sent, the connection stays usable. */
  CHECK_EQ(weft_pg_exec(c, NULL, WEFT_NO_DEADLINE, "SELECT $1", 1, NULL, &res), -EINVAL);
  CHECK(res == NULL);
  CHECK(!weft_pg_broken(c));
  weft_pg_close(c);
  return 0;
}

static void test_server_error(void **state)
{
  if (no_server())
    return;
  scenario(2, server_error_main, NULL);
}

/* ---- connection failures ---- */

/* A loopback port nobody listens on: bound, then closed. */
static int closed_port(void)
{
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
      getsockname(fd, (struct sockaddr *)&a, &len) != 0)
    return -1;
  close(fd);
  return ntohs(a.sin_port);
}

/* conninfo must fail with -WEFT_EDBCONN, a reason, within a second. */
static void expect_connect_fails(const char *conninfo, const char *needle)
{
  char err[256];
  weft_pg *c = NULL;
  int64_t t0 = weft_now();
  int rc = weft_pg_connect(conninfo, NULL, t0 + MS(10000), &c, err, sizeof err);
  int64_t took = weft_now() - t0;
  fprintf(stderr, "%s -> %s: %s (%.1f ms)\n", conninfo, weft_errname(rc), err, took / 1e6);
  CHECK_EQ(rc, -WEFT_EDBCONN);
  CHECK(c == NULL);
  CHECK(err[0] != '\0' && strchr(err, '\n') == NULL);
  CHECK(strstr(err, needle) != NULL);
  CHECK(took < MS(1000));
}

static int connect_fail_main(void *arg)
{
  char conninfo[128];
  snprintf(conninfo, sizeof conninfo, "postgresql://postgres@127.0.0.1:%d/postgres",
           closed_port());
  expect_connect_fails(conninfo, "refused");
  expect_connect_fails("no_such_option=1", "no_such_option");
  expect_connect_fails("postgresql://[::1", "URI");

  char err[256];
  weft_pg_pool *p = NULL;
  weft_pg_pool_options o = {.conninfo = conninfo};
  CHECK_EQ(weft_pg_pool_new(&o, &p, err, sizeof err), -WEFT_EDBCONN);
  CHECK(p == NULL && strstr(err, "refused") != NULL);
  o.conninfo = NULL;
  CHECK_EQ(weft_pg_pool_new(&o, &p, err, sizeof err), -EINVAL);
  return 0;
}

/* Descriptions for messages never show a password; a bad conninfo says why, on one line.
 * Needs no server. */
static void test_describe(void **state)
{
  char out[300];
  assert_int_equal(
      weft_pg_describe("postgresql://app:s3cret@127.0.0.1:6543/orders", out, sizeof out), 0);
  assert_string_equal(out, "host 127.0.0.1 port 6543 database orders");
  assert_int_equal(weft_pg_describe("host=db.local password=s3cret", out, sizeof out), 0);
  assert_string_equal(out, "host db.local port (default) database (default)");
  assert_null(strstr(out, "s3cret"));
  assert_int_equal(weft_pg_describe("postgresql://[::1", out, sizeof out), -EINVAL);
  assert_true(strlen(out) > 0);
  assert_null(strchr(out, '\n'));
  assert_int_equal(weft_pg_describe("bogus_option=1", out, sizeof out), -EINVAL);
  assert_non_null(strstr(out, "bogus_option"));
}

static void test_connect_fails(void **state)
{
  /* Needs no server; runs even without one. */
  scenario(2, connect_fail_main, NULL);
}

/* A context that ends while connecting: to a listener that never accepts (the handshake
 * completes in the kernel's backlog, the startup answer never comes). */
static int connect_ctx_main(void *arg)
{
  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  CHECK(lfd >= 0 && bind(lfd, (struct sockaddr *)&a, sizeof a) == 0 && listen(lfd, 4) == 0 &&
        getsockname(lfd, (struct sockaddr *)&a, &len) == 0);
  char conninfo[128], err[256];
  snprintf(conninfo, sizeof conninfo,
           "postgresql://postgres@127.0.0.1:%d/postgres?sslmode=disable&gssencmode=disable",
           ntohs(a.sin_port));
  weft_pg *c = NULL;
  int64_t t0 = weft_now();
  CHECK_EQ(weft_pg_connect(conninfo, NULL, t0 + MS(200), &c, err, sizeof err), -ETIMEDOUT);
  int64_t took = weft_now() - t0;
  CHECK(took >= MS(190) && took < MS(200) + SLACK);
  weft_ctx *ctx = weft_ctx_with_timeout(NULL, MS(150));
  t0 = weft_now();
  CHECK_EQ(weft_pg_connect(conninfo, ctx, WEFT_NO_DEADLINE, &c, err, sizeof err), -ETIMEDOUT);
  took = weft_now() - t0;
  CHECK(took >= MS(140) && took < MS(150) + SLACK);
  CHECK(c == NULL && err[0] != '\0');
  weft_ctx_release(ctx);
  close(lfd);
  return 0;
}

static void test_connect_deadline(void **state)
{
  scenario(2, connect_ctx_main, NULL);
}

/* ---- deadlines and contexts during a query ---- */

struct canceller {
  weft_ctx *ctx;
  int64_t after;
  weft_wg *wg;
};

static void cancel_later(void *arg)
{
  struct canceller *k = arg;
  weft_sleep_ctx(NULL, k->after);
  weft_ctx_cancel(k->ctx);
  weft_wg_done(k->wg);
}

/* Run pg_sleep(2) on a pooled connection with ctx and deadline; expect want within about
 * `expect` ns, the connection broken, and the pool serving the next query on a new one. */
static void cut_short(weft_pg_pool *p, weft_ctx *ctx, int64_t deadline, int want,
                      int64_t expect)
{
  weft_pg *c = NULL;
  CHECK_EQ(weft_pg_pool_acquire(p, NULL, &c), 0);
  if (!c)
    return;
  long pid = backend_pid(c);
  PGresult *res = NULL;
  int64_t t0 = weft_now();
  CHECK_EQ(weft_pg_exec(c, ctx, deadline, "SELECT pg_sleep(2)", 0, NULL, &res), want);
  int64_t took = weft_now() - t0;
  CHECK(res == NULL);
  if (!(took >= expect - MS(20) && took < expect + SLACK))
    fprintf(stderr, "cut short after %.1f ms, expected about %.1f\n", took / 1e6, expect / 1e6);
  CHECK(took >= expect - MS(20) && took < expect + SLACK);
  CHECK(weft_pg_broken(c));
  CHECK_EQ(weft_pg_exec(c, NULL, WEFT_NO_DEADLINE, "SELECT 1", 0, NULL, &res), -ECONNRESET);
  weft_pg_pool_release(p, c); /* closed, not reused */
  CHECK_EQ(weft_pg_pool_acquire(p, NULL, &c), 0);
  if (!c)
    return;
  CHECK(!weft_pg_broken(c));
  CHECK(backend_pid(c) != pid);
  weft_pg_pool_release(p, c);
}

static int deadline_main(void *arg)
{
  weft_pg_pool *p = pool_ok(1); /* one connection: the replacement must be a new one */
  if (!p)
    return 0;
  cut_short(p, NULL, weft_now() + MS(200), -ETIMEDOUT, MS(200));

  weft_ctx *ctx = weft_ctx_with_timeout(NULL, MS(250));
  cut_short(p, ctx, WEFT_NO_DEADLINE, -ETIMEDOUT, MS(250));
  weft_ctx_release(ctx);

  /* Both: the earlier one wins, whichever it is. */
  ctx = weft_ctx_with_cancel(NULL);
  cut_short(p, ctx, weft_now() + MS(150), -ETIMEDOUT, MS(150));
  weft_ctx_release(ctx);

  ctx = weft_ctx_with_cancel(NULL);
  weft_wg wg = WEFT_WG_INIT;
  struct canceller k = {.ctx = ctx, .after = MS(200), .wg = &wg};
  weft_wg_add(&wg, 1);
  weft_go(cancel_later, &k);
  cut_short(p, ctx, weft_now() + MS(10000), -ECANCELED, MS(200));
  weft_wg_wait(&wg);
  weft_ctx_release(ctx);

  /* A context already done: nothing is sent, the connection stays usable. */
  ctx = weft_ctx_with_cancel(NULL);
  weft_ctx_cancel(ctx);
  PGresult *res = NULL;
  CHECK_EQ(weft_pg_pool_exec(p, ctx, WEFT_NO_DEADLINE, "SELECT 1", 0, NULL, &res), -ECANCELED);
  weft_ctx_release(ctx);
  weft_pg *c = NULL;
  CHECK_EQ(weft_pg_pool_acquire(p, NULL, &c), 0);
  CHECK_EQ(weft_pg_exec(c, NULL, weft_now() - 1, "SELECT 1", 0, NULL, &res), -ETIMEDOUT);
  CHECK(!weft_pg_broken(c));
  weft_pg_pool_release(p, c);
  weft_pg_pool_free(p);
  return 0;
}

static void test_deadline_and_cancel(void **state)
{
  if (no_server())
    return;
  scenario(2, deadline_main, NULL);
}

/* ---- no thread blocks ---- */

struct ticker {
  atomic_bool stop;
  atomic_long ticks;
  weft_wg wg;
};

static void tick(void *arg)
{
  struct ticker *t = arg;
  while (!atomic_load(&t->stop)) {
    weft_sleep_ctx(NULL, MS(1));
    atomic_fetch_add(&t->ticks, 1);
  }
  weft_wg_done(&t->wg);
}

static int one_thread_main(void *arg)
{
  weft_pg *c = connect_ok();
  if (!c)
    return 0;
  struct ticker t = {.wg = WEFT_WG_INIT};
  weft_wg_add(&t.wg, 1);
  weft_go(tick, &t);
  int64_t t0 = weft_now();
  run_ok(c, "SELECT pg_sleep(0.3)", 0, NULL);
  int64_t took = weft_now() - t0;
  long ticks = atomic_load(&t.ticks);
  atomic_store(&t.stop, true);
  weft_wg_wait(&t.wg);
  fprintf(stderr, "pg_sleep(0.3): %.0f ms, %ld ticks of 1 ms meanwhile\n", took / 1e6, ticks);
  CHECK(took >= MS(290));
  CHECK(ticks > 30); /* a blocked thread allows none; about 280 on an idle machine */
  weft_pg_close(c);
  return 0;
}

static void test_one_thread_keeps_running(void **state)
{
  if (no_server())
    return;
  scenario(1, one_thread_main, NULL);
}

/* ---- a backend killed under a pooled connection ---- */

static int terminate_main(void *arg)
{
  weft_pg_pool *p = pool_ok(1);
  weft_pg *admin = connect_ok();
  if (!p || !admin)
    goto out;
  weft_pg *c = NULL;
  CHECK_EQ(weft_pg_pool_acquire(p, NULL, &c), 0);
  char pid[32];
  snprintf(pid, sizeof pid, "%ld", backend_pid(c));
  weft_pg_pool_release(p, c);
  const char *const v[] = {pid};
  CHECK_EQ(run_ok(admin, "SELECT pg_terminate_backend($1::int, 5000)::int", 1, v), 1);

  /* The pooled connection does not know yet: its next query finds out. */
  PGresult *res = NULL;
  CHECK_EQ(weft_pg_pool_acquire(p, NULL, &c), 0);
  CHECK(!weft_pg_broken(c));
  CHECK_EQ(weft_pg_exec(c, NULL, weft_now() + MS(5000), "SELECT 1", 0, NULL, &res),
           -ECONNRESET);
  CHECK(res == NULL && weft_pg_broken(c));
  weft_pg_pool_release(p, c);
  /* The pool recovers with a new backend. */
  CHECK_EQ(weft_pg_pool_exec(p, NULL, weft_now() + MS(5000), "SELECT pg_backend_pid()", 0, NULL,
                             &res),
           0);
  CHECK(res && atol(PQgetvalue(res, 0, 0)) != atol(pid));
  PQclear(res);
out:
  weft_pg_close(admin);
  weft_pg_pool_free(p);
  return 0;
}

static void test_terminated_backend(void **state)
{
  if (no_server())
    return;
  scenario(2, terminate_main, NULL);
}

/* ---- acquire parks while the pool is exhausted ---- */

struct holder {
  weft_pg_pool *p;
  weft_pg *c;
  weft_wg *wg;
  int64_t hold;
};

static void release_later(void *arg)
{
  struct holder *h = arg;
  weft_sleep_ctx(NULL, h->hold);
  weft_pg_pool_release(h->p, h->c);
  weft_wg_done(h->wg);
}

static int exhausted_main(void *arg)
{
  weft_pg_pool *p = pool_ok(2);
  if (!p)
    return 0;
  weft_pg *a = NULL, *b = NULL, *x = NULL;
  CHECK_EQ(weft_pg_pool_acquire(p, NULL, &a), 0);
  CHECK_EQ(weft_pg_pool_acquire(p, NULL, &b), 0);
  CHECK(a && b && a != b);
  weft_ctx *ctx = weft_ctx_with_timeout(NULL, MS(100));
  int64_t t0 = weft_now();
  CHECK_EQ(weft_pg_pool_acquire(p, ctx, &x), -ETIMEDOUT);
  CHECK(x == NULL && weft_now() - t0 >= MS(90));
  weft_ctx_release(ctx);

  /* A release hands the connection to the parked acquirer. */
  weft_wg wg = WEFT_WG_INIT;
  struct holder h = {.p = p, .c = b, .wg = &wg, .hold = MS(100)};
  weft_wg_add(&wg, 1);
  weft_go(release_later, &h);
  t0 = weft_now();
  CHECK_EQ(weft_pg_pool_acquire(p, NULL, &x), 0);
  CHECK(x == b && weft_now() - t0 >= MS(90));
  weft_wg_wait(&wg);
  weft_pg_pool_release(p, x);
  weft_pg_pool_release(p, a);
  weft_pg_pool_free(p);
  return 0;
}

static void test_pool_exhausted(void **state)
{
  if (no_server())
    return;
  scenario(2, exhausted_main, NULL);
}

/* ---- stress: 200 coroutines x 20 queries through a pool of 4 ---- */

#define WORKERS 200
#define QUERIES 20

struct stress {
  weft_pg_pool *p;
  char table[96];
  char app[96]; /* application_name of the pool's connections */
  atomic_int ok;
  weft_wg wg;
};

struct worker {
  struct stress *s;
  int id;
};

static void stress_worker(void *arg)
{
  struct worker *w = arg;
  char sql[192], id[16], seq[16];
  snprintf(sql, sizeof sql, "INSERT INTO %s (worker, seq) VALUES ($1, $2) RETURNING seq",
           w->s->table);
  snprintf(id, sizeof id, "%d", w->id);
  for (int i = 0; i < QUERIES; i++) {
    snprintf(seq, sizeof seq, "%d", i);
    const char *const v[] = {id, seq};
    PGresult *res = NULL;
    int rc = weft_pg_pool_exec(w->s->p, NULL, weft_now() + MS(30000), sql, 2, v, &res);
    CHECK_EQ(rc, 0);
    if (rc == 0 && atoi(PQgetvalue(res, 0, 0)) == i)
      atomic_fetch_add(&w->s->ok, 1);
    PQclear(res);
  }
  weft_wg_done(&w->s->wg);
}

static int stress_main(void *arg)
{
  static atomic_int round;
  struct stress s = {.wg = WEFT_WG_INIT};
  int r = atomic_fetch_add(&round, 1);
  snprintf(s.table, sizeof s.table, "%s.hits_%d", schema, r);
  snprintf(s.app, sizeof s.app, "%s_%d", schema, r);
  char conninfo[512];
  snprintf(conninfo, sizeof conninfo, "%s%sapplication_name=%s", pg_url,
           strchr(pg_url, '?') ? "&" : "?", s.app);
  char err[256];
  weft_pg_pool_options o = {.conninfo = conninfo, .max_conns = 4};
  int rc = weft_pg_pool_new(&o, &s.p, err, sizeof err);
  CHECK_EQ(rc, 0);
  if (rc != 0)
    return 0;
  char sql[256];
  snprintf(sql, sizeof sql, "CREATE TABLE %s (worker int, seq int, PRIMARY KEY (worker, seq))",
           s.table);
  PGresult *res = NULL;
  CHECK_EQ(weft_pg_pool_exec(s.p, NULL, WEFT_NO_DEADLINE, sql, 0, NULL, &res), 0);
  PQclear(res);
  struct worker w[WORKERS];
  int64_t t0 = weft_now();
  weft_wg_add(&s.wg, WORKERS);
  for (int i = 0; i < WORKERS; i++) {
    w[i] = (struct worker){.s = &s, .id = i};
    weft_go(stress_worker, &w[i]);
  }
  weft_wg_wait(&s.wg);
  int64_t took = weft_now() - t0;
  CHECK_EQ(atomic_load(&s.ok), WORKERS * QUERIES);
  snprintf(sql, sizeof sql,
           "SELECT count(*), count(DISTINCT worker), min(seq), max(seq) FROM %s", s.table);
  CHECK_EQ(weft_pg_pool_exec(s.p, NULL, WEFT_NO_DEADLINE, sql, 0, NULL, &res), 0);
  if (res) {
    CHECK_EQ(atol(PQgetvalue(res, 0, 0)), WORKERS * QUERIES);
    CHECK_EQ(atol(PQgetvalue(res, 0, 1)), WORKERS);
    CHECK_EQ(atol(PQgetvalue(res, 0, 2)), 0);
    CHECK_EQ(atol(PQgetvalue(res, 0, 3)), QUERIES - 1);
  }
  PQclear(res);
  /* The pool never opened more than 4 connections: the server sees at most 4 by name. */
  const char *const name[] = {s.app};
  CHECK_EQ(
      weft_pg_pool_exec(s.p, NULL, WEFT_NO_DEADLINE,
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", 1,
                        name, &res),
      0);
  long conns = res ? atol(PQgetvalue(res, 0, 0)) : 0;
  CHECK(conns >= 1 && conns <= 4);
  PQclear(res);
  fprintf(stderr, "P=%d: %d queries through a pool of 4 in %.0f ms\n", weft_procs(),
          WORKERS * QUERIES, took / 1e6);
  weft_pg_pool_free(s.p);
  return 0;
}

static int stress_round(void *arg)
{
  checks_reset();
  stress_main(arg);
  return checks_result();
}

static void test_pool_stress(void **state)
{
  if (no_server())
    return;
  run_weft_p1to4(stress_round, NULL);
}

/* ---- setup: the schema of this run ---- */

static int schema_main(void *arg)
{
  weft_pg *c = connect_ok();
  if (!c)
    return 0;
  char sql[128];
  snprintf(sql, sizeof sql,
           arg ? "CREATE SCHEMA %s"
               : "SET client_min_messages = warning; DROP SCHEMA IF EXISTS %s CASCADE",
           schema);
  run_ok(c, sql, 0, NULL);
  weft_pg_close(c);
  return 0;
}

static int setup(void **state)
{
  if (!pg_url)
    return 0;
  checks_reset();
  return run_weft(1, schema_main, "create") || checks_result();
}

static int teardown(void **state)
{
  if (!pg_url)
    return 0;
  checks_reset();
  return run_weft(1, schema_main, NULL) || checks_result();
}

int main(int argc, char **argv)
{
  pg_url = getenv("WEFT_TEST_PG_URL");
  if (pg_url && !*pg_url)
    pg_url = NULL;
  snprintf(schema, sizeof schema, "weft_pg_test_%d", (int)getpid());
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_connect_exec),
      cmocka_unit_test(test_server_error),
      cmocka_unit_test(test_describe),
      cmocka_unit_test(test_connect_fails),
      cmocka_unit_test(test_connect_deadline),
      cmocka_unit_test(test_deadline_and_cancel),
      cmocka_unit_test(test_one_thread_keeps_running),
      cmocka_unit_test(test_terminated_backend),
      cmocka_unit_test(test_pool_exhausted),
      cmocka_unit_test(test_pool_stress),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
