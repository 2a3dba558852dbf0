/* paymentd_harness.c: the paymentd-specific helpers of the paymentd contract tests (see
 * paymentd_harness.h; the tests are in test_paymentd.c). The child runner and the HTTP
 * client are the shared ones of tests/apps/harness/. */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <sqlite3.h>

#include "paymentd_harness.h"
#include "weft_test.h"

void post(int port, const char *id, const char *body, struct resp *r)
{
  char path[256];
  snprintf(path, sizeof path, "/v1/payments/%s/confirm", id);
  http(port, "POST", path, JSON_CT, body, r);
}

void start_daemon_env(struct daemon *d, const char *const *args, const char *const *env)
{
  memset(d, 0, sizeof *d);
  d->port = free_port();
  char listen[64];
  snprintf(listen, sizeof listen, "127.0.0.1:%d", d->port);
  const char *argv[MAX_ARGV] = {"--listen", listen, "--debug-listen", ""};
  int n = 4;
  for (int i = 0; args && args[i]; i++)
    argv[n++] = args[i];
  argv[n] = NULL;
  spawn_daemon_into(d, "paymentd", argv, env, -1);
  int64_t end = mono_ms() + 20000;
  for (;;) {
    struct resp r;
    http(d->port, "GET", "/healthz", NULL, NULL, &r);
    int st = r.status;
    resp_free(&r);
    if (st == 200)
      return;
    if (wait_exit(d, 0) || mono_ms() > end) {
      kill_daemon(d);
      dump_log(d);
      fail_msg("paymentd did not come up (status %d)", d->status);
    }
    sleep_ms(20);
  }
}

void start_daemon(struct daemon *d, const char *const *args)
{
  start_daemon_env(d, args, NULL);
}

/* SIGTERM, and the exit status (fails after timeout_ms). */
int stop_daemon(struct daemon *d, int timeout_ms)
{
  send_signal(d->pid, SIGTERM);
  if (!wait_exit(d, timeout_ms)) {
    kill_daemon(d);
    dump_log(d);
    fail_msg("paymentd did not exit within %d ms of SIGTERM", timeout_ms);
  }
  return d->status;
}

/* ---- checks ---- */

/* Whether r is an error of the contract: status, JSON Content-Type, and the body exactly
 * {"error": code, "message": non-empty text}; prints what differs when not. */
bool is_error(const struct resp *r, int status, const char *code, const char *what)
{
  json_t *e = json_object_get(r->json, "error"), *m = json_object_get(r->json, "message");
  if (r->status != status || !json_is_object(r->json) || json_object_size(r->json) != 2 ||
      !json_is_string(e) || strcmp(json_string_value(e), code) != 0 || !json_is_string(m) ||
      !*json_string_value(m)) {
    fprintf(stderr, "%s: want %d {\"error\":\"%s\",\"message\":...}, got %d %s\n", what, status,
            code, r->status, r->body ? r->body : "(no body)");
    return false;
  }
  const char *ct = header(r, "Content-Type");
  if (!ct || strncmp(ct, "application/json", 16) != 0) {
    fprintf(stderr, "%s: Content-Type %s\n", what, ct ? ct : "(none)");
    return false;
  }
  return true;
}

void expect_error(const struct resp *r, int status, const char *code, const char *what)
{
  if (!is_error(r, status, code, what))
    fail_msg("%s: not the expected error", what);
}

const char *jstr(const struct resp *r, const char *key)
{
  json_t *v = json_object_get(r->json, key);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

json_int_t jint(const struct resp *r, const char *key)
{
  json_t *v = json_object_get(r->json, key);
  if (!json_is_integer(v))
    fail_msg("%s is not an integer in %s", key, r->body ? r->body : "(none)");
  return json_integer_value(v);
}

/* RFC 3339 UTC with fractional seconds: YYYY-MM-DDTHH:MM:SS.f+Z. */
static bool is_rfc3339_frac_utc(const char *s)
{
  const char *shape = "dddd-dd-ddTdd:dd:dd.";
  for (int i = 0; shape[i]; i++, s++) {
    if (shape[i] == 'd' ? (*s < '0' || *s > '9') : *s != shape[i])
      return false;
  }
  if (*s < '0' || *s > '9')
    return false;
  while (*s >= '0' && *s <= '9')
    s++;
  return strcmp(s, "Z") == 0;
}

/* r is a 200 confirmation of the record given. */
void expect_record(const struct resp *r, const char *id, long long amount, const char *currency,
                   const char *account)
{
  if (r->status != 200 || !json_is_object(r->json))
    fail_msg("%s: want 200 and a record, got %d %s", id, r->status, r->body ? r->body : "");
  assert_string_equal(jstr(r, "id"), id);
  assert_string_equal(jstr(r, "status"), "confirmed");
  assert_int_equal(jint(r, "amount_cents"), amount);
  assert_string_equal(jstr(r, "currency"), currency);
  assert_string_equal(jstr(r, "account"), account);
  const char *at = jstr(r, "confirmed_at");
  if (!at || !is_rfc3339_frac_utc(at))
    fail_msg("confirmed_at %s is not RFC 3339 UTC with fractional seconds", at ? at : "null");
  const char *ct = header(r, "Content-Type");
  assert_non_null(ct);
  assert_memory_equal(ct, "application/json", 16);
}

int setup(void **state)
{
  (void)state;
  child_env_drop = "PAYMENTD_"; /* the flags under test come from each test alone */
  if (!app_find_bin("PAYMENTD_BIN", "apps/paymentd/paymentd")) {
    fprintf(stderr, "paymentd not built (%s): skipped\n", app_bin);
    skip();
  }
  app_make_tmp_dir("paymentd");
  return 0;
}

int teardown(void **state)
{
  (void)state;
  reap_children(); /* after a failed check: no child outlives its test */
  app_remove_tmp_dir();
  return 0;
}

/* ---- concurrent requests ---- */

static void *job_run(void *arg)
{
  struct job *j = arg;
  if (j->delay_ms)
    sleep_ms(j->delay_ms);
  post(j->port, j->id, j->body, &j->r);
  if (j->done)
    atomic_fetch_add(j->done, 1);
  return NULL;
}

void jobs_start(struct job *jobs, pthread_t *th, int n)
{
  for (int i = 0; i < n; i++)
    assert_int_equal(pthread_create(&th[i], NULL, job_run, &jobs[i]), 0);
}

void jobs_join(pthread_t *th, int n)
{
  for (int i = 0; i < n; i++)
    pthread_join(th[i], NULL);
}

void body_for(char *out, size_t cap, long long amount, const char *cur, const char *acct)
{
  snprintf(out, cap, "{\"amount_cents\":%lld,\"currency\":\"%s\",\"account\":\"%s\"}", amount,
           cur, acct);
}

json_int_t health_field(int port, const char *key, int *status)
{
  struct resp r;
  http(port, "GET", "/healthz", NULL, NULL, &r);
  *status = r.status;
  json_int_t v = r.json ? jint(&r, key) : -1;
  resp_free(&r);
  return v;
}

/* The ids in the SQLite database at path: every table with an id column. */
int db_ids(const char *path, char ids[][80], int max)
{
  sqlite3 *db;
  int n = 0;
  assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
  sqlite3_stmt *tables;
  assert_int_equal(sqlite3_prepare_v2(db, "SELECT name FROM sqlite_master WHERE type='table'",
                                      -1, &tables, NULL),
                   SQLITE_OK);
  while (sqlite3_step(tables) == SQLITE_ROW) {
    char sql[300];
    snprintf(sql, sizeof sql, "SELECT id FROM \"%s\"", sqlite3_column_text(tables, 0));
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
      continue;
    while (sqlite3_step(st) == SQLITE_ROW && n < max)
      snprintf(ids[n++], 80, "%s", sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
  }
  sqlite3_finalize(tables);
  sqlite3_close(db);
  return n;
}

bool has_id(char ids[][80], int n, const char *id)
{
  for (int i = 0; i < n; i++)
    if (strcmp(ids[i], id) == 0)
      return true;
  return false;
}

/* A keep-alive connection with one request answered on it, for a request later. */
int open_conn(int port)
{
  int fd = connect_to(port);
  assert_true(fd >= 0);
  write_req(fd, "GET", "/healthz", NULL, NULL, 0, false);
  struct resp r = {0};
  read_resp(fd, &r);
  assert_true(r.status == 200 || r.status == 503);
  resp_free(&r);
  return fd;
}
