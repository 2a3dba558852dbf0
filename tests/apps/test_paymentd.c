/* Contract tests of paymentd (apps/paymentd/, contract: shared/specs/paymentd.md).
 *
 * Each test starts the built paymentd as a child process on a free loopback port (picked
 * by binding port 0, then closed and passed to --listen), with its stdout and stderr in a
 * file under a fresh temporary directory, and waits until /healthz answers. The test
 * talks to it over plain blocking sockets, one connection per request (Connection:
 * close), from threads when requests must overlap; every socket has a receive timeout,
 * and every child is killed after a deadline, so a test is bounded in time. The child
 * runner and the HTTP helpers are in paymentd_harness.{c,h}. The SQLite tests reopen
 * the database with the sqlite3 API once the child has exited and compare the ids it
 * holds with the ids that were answered 200. PAYMENTD_BIN runs the tests against another binary
 * (the Go peer passes all but the --auth-tokens test, a flag it does not implement). */
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/tcp.h>
#include <unistd.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sqlite3.h>

#include "coro_check.h"
#include "paymentd_harness.h"
#include "weft_test.h"

/* ---- the tests ---- */

static const char GOOD[] =
    "{\"amount_cents\":1250,\"currency\":\"EUR\",\"account\":\"acct-1\"}";

/* 200 with the record, replay, conflict, GET of a record and of an unknown id. */
static void test_confirm_replay_conflict(void **state)
{
  struct daemon d;
  struct resp r, r2;
  start_daemon(&d, ARGS("--store", "memory:", "--workers", "2"));
  post(d.port, "pay_1-A", GOOD, &r);
  expect_record(&r, "pay_1-A", 1250, "EUR", "acct-1");
  assert_int_equal(json_object_size(r.json), 6);
  assert_null(header(&r, "Idempotent-Replayed"));
  char *at = strdup(jstr(&r, "confirmed_at"));

  post(d.port, "pay_1-A", GOOD, &r2); /* the same values: replayed */
  expect_record(&r2, "pay_1-A", 1250, "EUR", "acct-1");
  assert_non_null(header(&r2, "Idempotent-Replayed"));
  assert_string_equal(header(&r2, "Idempotent-Replayed"), "true");
  assert_string_equal(jstr(&r2, "confirmed_at"), at);
  resp_free(&r2);

  const char *conflicts[] = {
      "{\"amount_cents\":1251,\"currency\":\"EUR\",\"account\":\"acct-1\"}",
      "{\"amount_cents\":1250,\"currency\":\"USD\",\"account\":\"acct-1\"}",
      "{\"amount_cents\":1250,\"currency\":\"EUR\",\"account\":\"acct-2\"}",
  };
  for (int i = 0; i < 3; i++) {
    post(d.port, "pay_1-A", conflicts[i], &r2);
    expect_error(&r2, 409, "conflict", conflicts[i]);
    resp_free(&r2);
  }

  http(d.port, "GET", "/v1/payments/pay_1-A", NULL, NULL, &r2);
  expect_record(&r2, "pay_1-A", 1250, "EUR", "acct-1");
  assert_string_equal(jstr(&r2, "confirmed_at"), at);
  resp_free(&r2);
  http(d.port, "GET", "/v1/payments/never-seen", NULL, NULL, &r2);
  expect_error(&r2, 404, "not_found", "GET of an unknown id");
  resp_free(&r2);

  /* Unknown fields are ignored; the bounds are inclusive; a 64-character id; an account
   * of 64 code points in 128 bytes; Content-Type variants accepted. */
  char id64[65], acct[200] = "", body[400];
  memset(id64, 'z', 64);
  id64[64] = '\0';
  for (int i = 0; i < 64; i++)
    strcat(acct, "\xc3\xa9");
  struct {
    const char *id, *ct, *body;
  } ok[] = {
      {"extra", JSON_CT,
       "{\"amount_cents\":1,\"currency\":\"EUR\",\"account\":\"a\",\"note\":{\"x\":[1]}}"},
      {"max", JSON_CT,
       "{\"amount_cents\":1000000000000,\"currency\":\"JPY\",\"account\":\"a\"}"},
      {id64, JSON_CT, GOOD},
      {"utf8", JSON_CT, NULL},
      {"charset", "Content-Type: application/json; charset=utf-8\r\n", GOOD},
      {"merge", "Content-Type: application/merge-patch+json\r\n", GOOD},
  };
  body_for(body, sizeof body, 5, "GBP", acct);
  ok[3].body = body;
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    char path[160];
    snprintf(path, sizeof path, "/v1/payments/%s/confirm", ok[i].id);
    http(d.port, "POST", path, ok[i].ct, ok[i].body, &r2);
    if (r2.status != 200)
      fail_msg("%s: want 200, got %d %s", ok[i].id, r2.status, r2.body ? r2.body : "");
    assert_string_equal(jstr(&r2, "id"), ok[i].id);
    resp_free(&r2);
  }
  http(d.port, "GET", "/v1/payments/utf8", NULL, NULL, &r2);
  expect_record(&r2, "utf8", 5, "GBP", acct);
  resp_free(&r2);

  free(at);
  resp_free(&r);
  assert_int_equal(stop_daemon(&d, 20000), 0);
}

struct bad_case {
  const char *method, *path, *ct, *body;
  int status;
  const char *code;
};

/* Every input error, and the order of the checks. */
static void test_bad_input(void **state)
{
  struct daemon d;
  start_daemon(&d, ARGS("--store", "memory:", "--workers", "1"));
  char id65[66], acct65[80], acct65u[200] = "", big[66 * 1024 + 200];
  memset(id65, 'a', 65);
  id65[65] = '\0';
  memset(acct65, 'b', 65);
  acct65[65] = '\0';
  for (int i = 0; i < 65; i++)
    strcat(acct65u, "\xc3\xa9");
  char path65[120], bad_acct[200], bad_acct_u[300];
  snprintf(path65, sizeof path65, "/v1/payments/%s/confirm", id65);
  body_for(bad_acct, sizeof bad_acct, 1, "EUR", acct65);
  body_for(bad_acct_u, sizeof bad_acct_u, 1, "EUR", acct65u);
  /* 65 KiB: valid JSON padded with an ignored field. */
  int n = snprintf(big, sizeof big,
                   "{\"amount_cents\":1,\"currency\":\"EUR\",\"account\":\"a\",\"pad\":\"");
  memset(big + n, 'x', 65 * 1024 - (size_t)n - 2);
  strcpy(big + 65 * 1024 - 2, "\"}");

  const char *P = "/v1/payments/p1/confirm";
  const char *TXT = "Content-Type: text/plain\r\n";
  const struct bad_case cases[] = {
      {"POST", P, JSON_CT, "{", 400, "invalid_json"},
      {"POST", P, JSON_CT, "not json", 400, "invalid_json"},
      {"POST", P, JSON_CT, "{\"amount_cents\":1,\"currency\":\"EUR\",\"account\":\"a\"", 400,
       "invalid_json"},
      {"POST", P, JSON_CT, "{\"amount_cents\":100.0,\"currency\":\"EUR\",\"account\":\"a\"}",
       400, "invalid_field"},
      {"POST", P, JSON_CT, "{\"amount_cents\":1e2,\"currency\":\"EUR\",\"account\":\"a\"}", 400,
       "invalid_field"},
      {"POST", P, JSON_CT, "{\"amount_cents\":\"100\",\"currency\":\"EUR\",\"account\":\"a\"}",
       400, "invalid_field"},
      {"POST", P, JSON_CT, "{\"amount_cents\":null,\"currency\":\"EUR\",\"account\":\"a\"}",
       400, "invalid_field"},
      {"POST", P, JSON_CT, "{\"currency\":\"EUR\",\"account\":\"a\"}", 400, "invalid_field"},
      {"POST", P, JSON_CT, "{\"amount_cents\":0,\"currency\":\"EUR\",\"account\":\"a\"}", 400,
       "invalid_field"},
      {"POST", P, JSON_CT, "{\"amount_cents\":-5,\"currency\":\"EUR\",\"account\":\"a\"}", 400,
       "invalid_field"},
      {"POST", P, JSON_CT,
       "{\"amount_cents\":1000000000001,\"currency\":\"EUR\",\"account\":\"a\"}", 400,
       "invalid_field"},
      {"POST", P, JSON_CT, "{\"amount_cents\":1,\"account\":\"a\"}", 400, "invalid_field"},
      {"POST", P, JSON_CT, "{\"amount_cents\":1,\"currency\":\"eur\",\"account\":\"a\"}", 400,
       "invalid_field"},
      {"POST", P, JSON_CT, "{\"amount_cents\":1,\"currency\":\"EU\",\"account\":\"a\"}", 400,
       "invalid_field"},
      {"POST", P, JSON_CT, "{\"amount_cents\":1,\"currency\":\"EURO\",\"account\":\"a\"}", 400,
       "invalid_field"},
      {"POST", P, JSON_CT, "{\"amount_cents\":1,\"currency\":\"E1R\",\"account\":\"a\"}", 400,
       "invalid_field"},
      {"POST", P, JSON_CT, "{\"amount_cents\":1,\"currency\":978,\"account\":\"a\"}", 400,
       "invalid_field"},
      {"POST", P, JSON_CT, "{\"amount_cents\":1,\"currency\":\"EUR\"}", 400, "invalid_field"},
      {"POST", P, JSON_CT, "{\"amount_cents\":1,\"currency\":\"EUR\",\"account\":\"\"}", 400,
       "invalid_field"},
      {"POST", P, JSON_CT, "{\"amount_cents\":1,\"currency\":\"EUR\",\"account\":7}", 400,
       "invalid_field"},
      {"POST", P, JSON_CT, bad_acct, 400, "invalid_field"},
      {"POST", P, JSON_CT, bad_acct_u, 400, "invalid_field"},
      {"POST", "/v1/payments/bad.id/confirm", JSON_CT, GOOD, 400, "invalid_id"},
      {"POST", "/v1/payments/bad!id/confirm", JSON_CT, GOOD, 400, "invalid_id"},
      {"POST", path65, JSON_CT, GOOD, 400, "invalid_id"},
      {"POST", P, JSON_CT, big, 413, "body_too_large"},
      {"POST", P, TXT, GOOD, 415, "unsupported_media_type"},
      {"POST", P, "Content-Type: application/xml\r\n", GOOD, 415, "unsupported_media_type"},
      {"POST", P, NULL, GOOD, 415, "unsupported_media_type"},
      {"GET", P, NULL, NULL, 405, "method_not_allowed"},
      {"PUT", P, JSON_CT, GOOD, 405, "method_not_allowed"},
      {"DELETE", "/v1/payments/p1", NULL, NULL, 405, "method_not_allowed"},
      {"POST", "/v1/payments/p1", JSON_CT, GOOD, 405, "method_not_allowed"},
      {"GET", "/nope", NULL, NULL, 404, "not_found"},
      {"GET", "/v1/payments/p1/other", NULL, NULL, 404, "not_found"},
      {"POST", "/v1/other", JSON_CT, GOOD, 404, "not_found"},
      {"GET", "/v1/payments/bad.id", NULL, NULL, 400, "invalid_id"},
      /* The order: path, method, id, content type, size, body. */
      {"DELETE", "/v1/nothing/here", NULL, NULL, 404, "not_found"},
      {"GET", "/v1/payments/bad.id/confirm", TXT, NULL, 405, "method_not_allowed"},
      {"POST", "/v1/payments/bad.id/confirm", TXT, "{", 400, "invalid_id"},
      {"POST", P, TXT, big, 415, "unsupported_media_type"},
      {"POST", P, JSON_CT, NULL, 413, "body_too_large"}, /* big, not JSON: below */
  };
  size_t ncases = sizeof cases / sizeof cases[0];
  int bad = 0;
  for (size_t i = 0; i < ncases; i++) {
    struct resp r;
    const char *body = cases[i].body;
    char notjson[66 * 1024 + 1];
    if (i == ncases - 1) {
      memset(notjson, '{', 65 * 1024);
      notjson[65 * 1024] = '\0';
      body = notjson;
    }
    http(d.port, cases[i].method, cases[i].path, cases[i].ct, body, &r);
    char what[200];
    snprintf(what, sizeof what, "case %zu: %s %.60s", i, cases[i].method, cases[i].path);
    bad += !is_error(&r, cases[i].status, cases[i].code, what);
    if (cases[i].status == 405 && r.status == 405) {
      const char *allow = header(&r, "Allow");
      const char *want = strstr(cases[i].path, "/confirm") ? "POST" : "GET";
      if (!allow || !strstr(allow, want)) {
        fprintf(stderr, "%s: Allow: %s lacks %s\n", what, allow ? allow : "(none)", want);
        bad++;
      }
    }
    resp_free(&r);
  }
  if (bad)
    fail_msg("%d of %zu cases answered otherwise than the contract says", bad, ncases);
  /* Nothing of it reached a worker: p1 was never stored. */
  struct resp r;
  http(d.port, "GET", "/v1/payments/p1", NULL, NULL, &r);
  expect_error(&r, 404, "not_found", "p1 after bad input");
  resp_free(&r);
  assert_int_equal(stop_daemon(&d, 20000), 0);
}

/* Two requests for one id at once: one 200, the other 409 in_progress. */
static void test_in_progress(void **state)
{
  struct daemon d;
  start_daemon(&d, ARGS("--store", "memory:", "--workers", "2", "--work-ms", "500"));
  struct job jobs[2] = {{d.port, "dup-1", "", 0, {0}, NULL},
                        {d.port, "dup-1", "", 150, {0}, NULL}};
  strcpy(jobs[0].body, GOOD);
  strcpy(jobs[1].body, GOOD);
  pthread_t th[2];
  jobs_start(jobs, th, 2);
  jobs_join(th, 2);
  expect_record(&jobs[0].r, "dup-1", 1250, "EUR", "acct-1");
  expect_error(&jobs[1].r, 409, "in_progress", "the second request");
  struct resp r;
  post(d.port, "dup-1", GOOD, &r);
  expect_record(&r, "dup-1", 1250, "EUR", "acct-1");
  assert_string_equal(header(&r, "Idempotent-Replayed"), "true");
  resp_free(&r);
  for (int i = 0; i < 2; i++)
    resp_free(&jobs[i].r);
  assert_int_equal(stop_daemon(&d, 20000), 0);
}

/* --request-timeout passes first: 504 timeout; the job completes and a retry replays. */
static void test_timeout(void **state)
{
  struct daemon d;
  start_daemon(&d, ARGS("--store", "memory:", "--workers", "1", "--work-ms", "600",
                        "--request-timeout", "150ms"));
  struct resp r;
  post(d.port, "slow-1", GOOD, &r);
  expect_error(&r, 504, "timeout", "a request slower than --request-timeout");
  resp_free(&r);
  sleep_ms(900);
  post(d.port, "slow-1", GOOD, &r);
  expect_record(&r, "slow-1", 1250, "EUR", "acct-1");
  assert_string_equal(header(&r, "Idempotent-Replayed"), "true");
  resp_free(&r);
  assert_int_equal(stop_daemon(&d, 20000), 0);
}

/* A full queue: 429 at once with Retry-After: 1; /healthz 503 saturated meanwhile. */
static void test_queue_full(void **state)
{
  struct daemon d;
  start_daemon(
      &d, ARGS("--store", "memory:", "--workers", "1", "--queue", "2", "--work-ms", "300"));
  enum { N = 10 };
  struct job jobs[N];
  pthread_t th[N];
  atomic_int done = 0;
  for (int i = 0; i < N; i++) {
    jobs[i] = (struct job){.port = d.port, .done = &done};
    snprintf(jobs[i].id, sizeof jobs[i].id, "q-%d", i);
    strcpy(jobs[i].body, GOOD);
  }
  jobs_start(jobs, th, N);
  /* Saturated while the queue is full (2 of 2), before the first job finishes. */
  struct resp h = {0};
  for (int t = 0; t < 25; t++) {
    resp_free(&h);
    http(d.port, "GET", "/healthz", NULL, NULL, &h);
    if (h.status == 503)
      break;
    sleep_ms(10);
  }
  if (h.status != 503 || !jstr(&h, "status") || strcmp(jstr(&h, "status"), "saturated") != 0)
    fail_msg("/healthz with a full queue: %d %s", h.status, h.body ? h.body : "");
  assert_int_equal(jint(&h, "queue_capacity"), 2);
  assert_true(jint(&h, "queue_depth") >= 2);
  assert_int_equal(jint(&h, "workers"), 1);
  resp_free(&h);
  jobs_join(th, N);
  int ok = 0, full = 0, fast = 0;
  for (int i = 0; i < N; i++) {
    struct resp *r = &jobs[i].r;
    if (r->status == 200) {
      expect_record(r, jobs[i].id, 1250, "EUR", "acct-1");
      ok++;
    } else {
      expect_error(r, 429, "queue_full", jobs[i].id);
      const char *ra = header(r, "Retry-After");
      if (!ra || strcmp(ra, "1") != 0)
        fail_msg("429 with Retry-After %s", ra ? ra : "(none)");
      full++;
      fast += r->ms < 100;
      if (r->ms > 250)
        fail_msg("a 429 took %lld ms", (long long)r->ms);
    }
  }
  if (ok < 3 || full == 0 || fast == 0)
    fail_msg("%d answered 200, %d 429 (%d in under 100 ms)", ok, full, fast);
  /* Idle again: 200 ok with an empty queue. */
  int st;
  assert_int_equal(health_field(d.port, "queue_depth", &st), 0);
  assert_int_equal(st, 200);
  struct resp m;
  http(d.port, "GET", "/metrics", NULL, NULL, &m);
  assert_int_equal(m.status, 200);
  const char *line = strstr(m.body, "\npaymentd_rejected_total ");
  if (!line || atol(line + 25) != full)
    fail_msg("paymentd_rejected_total is not %d", full);
  resp_free(&m);
  for (int i = 0; i < N; i++)
    resp_free(&jobs[i].r);
  assert_int_equal(stop_daemon(&d, 20000), 0);
}

/* /healthz fields, /metrics names. */
static void test_health_metrics(void **state)
{
  struct daemon d;
  start_daemon(&d, ARGS("--store", "memory:", "--workers", "3", "--queue", "7"));
  struct resp r;
  http(d.port, "GET", "/healthz", NULL, NULL, &r);
  assert_int_equal(r.status, 200);
  assert_non_null(r.json);
  assert_string_equal(jstr(&r, "status"), "ok");
  assert_int_equal(jint(&r, "queue_depth"), 0);
  assert_int_equal(jint(&r, "queue_capacity"), 7);
  assert_int_equal(jint(&r, "workers"), 3);
  assert_int_equal(jint(&r, "workers_busy"), 0);
  resp_free(&r);
  http(d.port, "POST", "/healthz", NULL, NULL, &r);
  expect_error(&r, 405, "method_not_allowed", "POST /healthz");
  resp_free(&r);

  post(d.port, "m-1", GOOD, &r);
  resp_free(&r);
  post(d.port, "m-1", GOOD, &r);
  resp_free(&r);
  post(d.port, "m-1", "{\"amount_cents\":2,\"currency\":\"EUR\",\"account\":\"x\"}", &r);
  resp_free(&r);
  http(d.port, "GET", "/metrics", NULL, NULL, &r);
  assert_int_equal(r.status, 200);
  const char *ct = header(&r, "Content-Type");
  assert_non_null(ct);
  assert_memory_equal(ct, "text/plain", 10);
  const char *names[] = {
      "\npaymentd_http_requests_total{",
      "\npaymentd_http_request_duration_seconds_bucket{",
      "\npaymentd_http_request_duration_seconds_count{",
      "\npaymentd_queue_depth 0",
      "\npaymentd_queue_capacity 7",
      "\npaymentd_workers 3",
      "\npaymentd_workers_busy 0",
      "\npaymentd_rejected_total 0",
      "\npaymentd_confirmations_total{",
      "\npaymentd_processing_duration_seconds_bucket",
      "\npaymentd_processing_duration_seconds_count",
      "result=\"confirmed\"} 1",
      "result=\"replayed\"} 1",
      "result=\"conflict\"} 1",
      "route=\"",
      "code=\"200\"",
      "# TYPE paymentd_http_request_duration_seconds histogram",
      "# TYPE paymentd_processing_duration_seconds histogram",
  };
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (!strstr(r.body, names[i]))
      fail_msg("/metrics lacks %s", names[i] + (names[i][0] == '\n'));
  resp_free(&r);
  assert_int_equal(stop_daemon(&d, 20000), 0);
}

/* --auth-tokens: 401 with WWW-Authenticate: Bearer before any other check. */
static void test_auth(void **state)
{
  char tokens[300];
  snprintf(tokens, sizeof tokens, "%s/tokens", tmp_dir);
  FILE *f = fopen(tokens, "w");
  assert_non_null(f);
  fputs("tok-one\ntok-two\n", f);
  fclose(f);
  struct daemon d;
  start_daemon(&d, ARGS("--store", "memory:", "--auth-tokens", tokens));
  const char *P = "/v1/payments/a1/confirm";
  const struct {
    const char *method, *path, *headers, *body;
  } refused[] = {
      {"POST", P, "Content-Type: application/json\r\n", GOOD},
      {"POST", P, "Content-Type: application/json\r\nAuthorization: Bearer nope\r\n", GOOD},
      {"POST", P, "Content-Type: application/json\r\nAuthorization: Bearer tok-onex\r\n", GOOD},
      {"POST", P, "Content-Type: application/json\r\nAuthorization: Bearer tok-on\r\n", GOOD},
      {"POST", P, "Content-Type: application/json\r\nAuthorization: Basic dG9rLW9uZQ==\r\n",
       GOOD},
      {"POST", "/v1/payments/bad.id/confirm", "Content-Type: text/plain\r\n", "{"},
      {"DELETE", P, NULL, NULL},
      {"GET", "/v1/payments/a1", NULL, NULL},
      {"GET", "/v1/whatever", NULL, NULL},
  };
  for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
    struct resp r;
    http(d.port, refused[i].method, refused[i].path, refused[i].headers, refused[i].body, &r);
    if (r.status != 401)
      fail_msg("case %zu: want 401, got %d %s", i, r.status, r.body ? r.body : "");
    const char *wa = header(&r, "WWW-Authenticate");
    if (!wa || strncmp(wa, "Bearer", 6) != 0)
      fail_msg("case %zu: WWW-Authenticate %s", i, wa ? wa : "(none)");
    resp_free(&r);
  }
  struct resp r;
  http(d.port, "POST", P, "Content-Type: application/json\r\nAuthorization: Bearer tok-two\r\n",
       GOOD, &r);
  expect_record(&r, "a1", 1250, "EUR", "acct-1");
  resp_free(&r);
  http(d.port, "GET", "/v1/payments/a1", "Authorization: Bearer tok-one\r\n", NULL, &r);
  expect_record(&r, "a1", 1250, "EUR", "acct-1");
  resp_free(&r);
  http(d.port, "POST", "/v1/payments/bad.id/confirm",
       "Content-Type: application/json\r\nAuthorization: Bearer tok-one\r\n", GOOD, &r);
  expect_error(&r, 400, "invalid_id", "a bad id with a good token");
  resp_free(&r);
  http(d.port, "GET", "/healthz", NULL, NULL, &r); /* not under /v1/ */
  assert_int_equal(r.status, 200);
  resp_free(&r);
  assert_int_equal(stop_daemon(&d, 20000), 0);
  char *log = slurp(d.log);
  assert_null(strstr(log, "tok-one"));
  assert_null(strstr(log, "tok-two"));
  free(log);
}

/* Run the child with args expecting exit 2 and a one-line error on stderr. */
static void expect_exit2(const char *const *args, const char *const *env, const char *what)
{
  char log[300];
  snprintf(log, sizeof log, "%s/flags.log", tmp_dir);
  struct daemon d = {0};
  d.pid = spawn_child(args, env, -1, log);
  snprintf(d.log, sizeof d.log, "%s", log);
  if (!wait_exit(&d, 20000)) {
    kill_daemon(&d);
    fail_msg("%s: still running", what);
  }
  char *out = slurp(log);
  size_t len = strlen(out);
  bool one_line = len > 1 && out[len - 1] == '\n' && strchr(out, '\n') == out + len - 1;
  if (!WIFEXITED(d.status) || WEXITSTATUS(d.status) != 2 || !one_line)
    fail_msg("%s: want exit 2 and one line, got status %d and \"%s\"", what, d.status, out);
  free(out);
}

/* Invalid flags and environment variables; the environment and its precedence. */
static void test_flags_env(void **state)
{
  char busy[64], dbbad[300];
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t alen = sizeof a;
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(fd, 1), 0);
  getsockname(fd, (struct sockaddr *)&a, &alen);
  snprintf(busy, sizeof busy, "127.0.0.1:%d", ntohs(a.sin_port));
  snprintf(dbbad, sizeof dbbad, "sqlite:%s/no/such/dir/p.db", tmp_dir);
#define BAD(...) ARGS("--debug-listen", "", "--store", "memory:", __VA_ARGS__)
  expect_exit2(BAD("--workers", "0"), NULL, "--workers 0");
  expect_exit2(BAD("--workers", "many"), NULL, "--workers many");
  expect_exit2(BAD("--queue", "-1"), NULL, "--queue -1");
  expect_exit2(BAD("--queue", "12x"), NULL, "--queue 12x");
  expect_exit2(BAD("--work-ms", "-5"), NULL, "--work-ms -5");
  expect_exit2(BAD("--request-timeout", "soon"), NULL, "--request-timeout soon");
  expect_exit2(BAD("--shutdown-timeout", "-1s"), NULL, "--shutdown-timeout -1s");
  expect_exit2(BAD("--log-level", "loud"), NULL, "--log-level loud");
  expect_exit2(BAD("--log-format", "xml"), NULL, "--log-format xml");
  expect_exit2(BAD("--no-such-flag", "1"), NULL, "an unknown flag");
  expect_exit2(BAD("--listen", "not-an-address"), NULL, "--listen not-an-address");
  expect_exit2(BAD("--listen", busy), NULL, "--listen on a port in use");
  expect_exit2(ARGS("--debug-listen", "", "--listen", "127.0.0.1:0", "--store", "bogus:x"),
               NULL, "--store bogus:x");
  expect_exit2(ARGS("--debug-listen", "", "--listen", "127.0.0.1:0", "--store", dbbad), NULL,
               "an unusable sqlite path");
  expect_exit2(BAD("--listen", "127.0.0.1:0"), ARGS("PAYMENTD_QUEUE=abc"),
               "PAYMENTD_QUEUE=abc");
  close(fd);

  struct daemon d;
  int st;
  start_daemon_env(&d, ARGS("--store", "memory:"),
                   ARGS("PAYMENTD_QUEUE=5", "PAYMENTD_WORKERS=2"));
  assert_int_equal(health_field(d.port, "queue_capacity", &st), 5);
  assert_int_equal(health_field(d.port, "workers", &st), 2);
  assert_int_equal(stop_daemon(&d, 20000), 0);
  start_daemon_env(&d, ARGS("--store", "memory:", "--queue", "9"), ARGS("PAYMENTD_QUEUE=5"));
  assert_int_equal(health_field(d.port, "queue_capacity", &st), 9);
  assert_int_equal(stop_daemon(&d, 20000), 0);
  /* PAYMENTD_STORE and PAYMENTD_DEBUG_LISTEN (the - → _ rule) are read too. */
  start_daemon_env(&d, NULL, ARGS("PAYMENTD_STORE=memory:", "PAYMENTD_WORK_MS=1"));
  assert_int_equal(health_field(d.port, "queue_capacity", &st), 100);
  assert_int_equal(stop_daemon(&d, 20000), 0);
}

/* ---- shutdown ---- */

/* Start N confirmations and wait until the service holds them all (queued, in a worker
 * or answered), so that none waits in the listen backlog when the signal comes. */
static void load_and_wait(struct daemon *d, struct job *jobs, pthread_t *th, int n,
                          atomic_int *done)
{
  for (int i = 0; i < n; i++) {
    jobs[i] = (struct job){.port = d->port, .done = done};
    snprintf(jobs[i].id, sizeof jobs[i].id, "load-%03d", i);
    body_for(jobs[i].body, sizeof jobs[i].body, 100 + i, "EUR", "acct-load");
  }
  jobs_start(jobs, th, n);
  int64_t end = mono_ms() + 15000;
  for (;;) {
    int st;
    json_int_t depth = health_field(d->port, "queue_depth", &st);
    json_int_t busy = health_field(d->port, "workers_busy", &st);
    if (depth + busy + atomic_load(done) >= n)
      return;
    if (mono_ms() > end)
      fail_msg("the load never all arrived (%lld queued, %lld busy, %d done)", (long long)depth,
               (long long)busy, atomic_load(done));
    sleep_ms(5);
  }
}

/* SIGTERM under load: exit 0, every request answered 200, the database holds exactly
 * those ids; new requests on open connections get 503 shutting_down; a restart on the
 * same database replays. */
static void test_sigterm_drains(void **state)
{
  enum { N = 40 };
  char db[300], store[320];
  snprintf(db, sizeof db, "%s/p.db", tmp_dir);
  snprintf(store, sizeof store, "sqlite:%s", db);
  struct daemon d;
  start_daemon(&d, ARGS("--store", store, "--workers", "2", "--queue", "64", "--work-ms", "50",
                        "--request-timeout", "30s"));
  int c1 = open_conn(d.port), c2 = open_conn(d.port);
  struct job jobs[N];
  pthread_t th[N];
  atomic_int done = 0;
  load_and_wait(&d, jobs, th, N, &done);
  send_signal(d.pid, SIGTERM);
  sleep_ms(100);
  int left = N - atomic_load(&done);
  write_req(c1, "POST", "/v1/payments/late-1/confirm", JSON_CT, GOOD, strlen(GOOD), false);
  write_req(c2, "GET", "/healthz", NULL, NULL, 0, false);
  struct resp r1 = {0}, r2 = {0};
  read_resp(c1, &r1);
  read_resp(c2, &r2);
  close(c1);
  close(c2);
  jobs_join(th, N);
  if (!wait_exit(&d, 30000)) {
    kill_daemon(&d);
    dump_log(&d);
    fail_msg("no exit after SIGTERM");
  }
  if (left < 5)
    fprintf(stderr, "note: only %d requests were still in flight at the late requests\n", left);
  if (!WIFEXITED(d.status) || WEXITSTATUS(d.status) != 0) {
    dump_log(&d);
    fail_msg("exit status %d after SIGTERM", d.status);
  }
  static char ids[MAX_IDS][80];
  int n = db_ids(db, ids, MAX_IDS);
  for (int i = 0; i < N; i++) {
    expect_record(&jobs[i].r, jobs[i].id, 100 + i, "EUR", "acct-load");
    if (!has_id(ids, n, jobs[i].id))
      fail_msg("%s was answered 200 but is not in the database", jobs[i].id);
    resp_free(&jobs[i].r);
  }
  if (n != N)
    fail_msg("the database holds %d ids, %d were answered 200", n, N);

  start_daemon(&d, ARGS("--store", store, "--workers", "1"));
  struct resp r;
  post(d.port, "load-007",
       "{\"amount_cents\":107,\"currency\":\"EUR\",\"account\":\"acct-load\"}", &r);
  expect_record(&r, "load-007", 107, "EUR", "acct-load");
  assert_string_equal(header(&r, "Idempotent-Replayed"), "true");
  resp_free(&r);
  assert_int_equal(stop_daemon(&d, 20000), 0);

  /* The requests on connections opened before the signal (checked last, so that the
   * database is checked whatever they got). */
  expect_error(&r1, 503, "shutting_down", "a new request during shutdown");
  const char *conn = header(&r1, "Connection");
  if (!conn || strcasecmp(conn, "close") != 0)
    fail_msg("503 during shutdown with Connection: %s", conn ? conn : "(none)");
  assert_int_equal(r2.status, 503);
  assert_non_null(r2.json);
  assert_string_equal(jstr(&r2, "status"), "shutting_down");
  resp_free(&r1);
  resp_free(&r2);
}

/* A second signal: exit 1 at once; every id answered 200 is still in the database. */
static void test_second_signal(void **state)
{
  enum { N = 30 };
  char db[300], store[320];
  snprintf(db, sizeof db, "%s/p2.db", tmp_dir);
  snprintf(store, sizeof store, "sqlite:%s", db);
  struct daemon d;
  start_daemon(&d, ARGS("--store", store, "--workers", "1", "--queue", "64", "--work-ms", "100",
                        "--request-timeout", "30s"));
  struct job jobs[N];
  pthread_t th[N];
  atomic_int done = 0;
  load_and_wait(&d, jobs, th, N, &done);
  send_signal(d.pid, SIGTERM);
  sleep_ms(300);
  int64_t t0 = mono_ms();
  send_signal(d.pid, SIGTERM);
  if (!wait_exit(&d, 5000)) {
    kill_daemon(&d);
    dump_log(&d);
    fail_msg("no exit within 5 s of the second signal");
  }
  int64_t took = mono_ms() - t0;
  jobs_join(th, N);
  if (!WIFEXITED(d.status) || WEXITSTATUS(d.status) != 1)
    fail_msg("exit status %d after a second signal (want exit 1)", d.status);
  if (took > 2000)
    fail_msg("the second signal took %lld ms to end the process", (long long)took);
  static char ids[MAX_IDS][80];
  int n = db_ids(db, ids, MAX_IDS), ok = 0;
  for (int i = 0; i < N; i++) {
    if (jobs[i].r.status == 200) {
      ok++;
      if (!has_id(ids, n, jobs[i].id))
        fail_msg("%s was answered 200 but is not in the database", jobs[i].id);
    } else if (jobs[i].r.status != 0 && jobs[i].r.status != 503) {
      fail_msg("%s answered %d", jobs[i].id, jobs[i].r.status);
    }
    resp_free(&jobs[i].r);
  }
  if (ok == 0 || ok == N)
    fail_msg("%d of %d answered 200: the second signal did not cut the drain", ok, N);
}

/* ---- overload, store failure, odd paths, saturation ---- */

enum { OV_CLIENTS = 200 };

/* One keep-alive client of test_sigterm_overload. It sends "ov-CCC-SSSSS" ids, one at a
 * time, until its connection closes and a new one is refused (or the deadline passes);
 * seen[seq] is the status answered to seq, 0 when the connection broke after sending it.
 * Written by its thread only, read after the join. */
struct ov_client {
  int port, idx;
  int64_t deadline_ms;
  short *seen;
  int nsent, cap;
  int wrong_record; /* 200s whose body named another id */
};

static void ov_id(char *out, size_t cap, int client, int seq)
{
  snprintf(out, cap, "ov-%03d-%05d", client, seq);
}

static bool ov_send_one(struct ov_client *c, int fd)
{
  char id[32], path[80], body[128];
  if (c->nsent == c->cap)
    c->seen = realloc(c->seen, (size_t)(c->cap = c->cap * 2 + 64) * sizeof *c->seen);
  int seq = c->nsent++;
  ov_id(id, sizeof id, c->idx, seq);
  snprintf(path, sizeof path, "/v1/payments/%s/confirm", id);
  body_for(body, sizeof body, 1 + seq, "EUR", "acct-ov");
  write_req(fd, "POST", path, JSON_CT, body, strlen(body), false);
  struct resp r = {0};
  read_resp(fd, &r);
  c->seen[seq] = (short)r.status;
  if (r.status == 200 && (!jstr(&r, "id") || strcmp(jstr(&r, "id"), id) != 0))
    c->wrong_record++;
  const char *conn = header(&r, "Connection");
  bool open = r.status != 0 && !(conn && strcasecmp(conn, "close") == 0);
  resp_free(&r);
  return open;
}

static void *ov_client_run(void *arg)
{
  struct ov_client *c = arg;
  for (;;) {
    int fd = connect_to(c->port);
    if (fd < 0)
      return NULL; /* refused: the listener is closed */
    while (mono_ms() < c->deadline_ms && ov_send_one(c, fd)) {
    }
    close(fd);
    if (mono_ms() >= c->deadline_ms)
      return NULL;
  }
}

/* The client and sequence number of an "ov-" id, or false. */
static bool ov_parse(const char *id, int *client, int *seq)
{
  int n = 0;
  return sscanf(id, "ov-%3d-%5d%n", client, seq, &n) == 2 && id[n] == '\0' && *client >= 0 &&
         *client < OV_CLIENTS;
}

struct ov_tally {
  int answered[600]; /* by status; [0]: connection broke after the request was sent */
  int stored_200, stored_broken, stored_wrong;
};

/* Check each id stored in the database at path against what its client saw; marks the
 * stored ones in stored[client][seq]. */
static void ov_check_db(const char *path, struct ov_client *cl, bool **stored,
                        struct ov_tally *t)
{
  sqlite3 *db;
  sqlite3_stmt *st;
  assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db, "SELECT id FROM payments", -1, &st, NULL), SQLITE_OK);
  while (sqlite3_step(st) == SQLITE_ROW) {
    const char *id = (const char *)sqlite3_column_text(st, 0);
    int c, seq;
    if (!ov_parse(id, &c, &seq) || seq >= cl[c].nsent) {
      fprintf(stderr, "stored id %s was never sent\n", id);
      t->stored_wrong++;
      continue;
    }
    stored[c][seq] = true;
    int status = cl[c].seen[seq];
    if (status == 200) {
      t->stored_200++;
    } else if (status == 0) {
      t->stored_broken++; /* sent, then the connection broke: its answer was lost */
    } else {
      fprintf(stderr, "stored id %s was answered %d\n", id, status);
      t->stored_wrong++;
    }
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
}

/* SIGTERM in the middle of an overload: 200 keep-alive clients against 2 workers and a
 * queue of 20, most answers 429; the signal after about a second; the clients go on until
 * refused. Exit 0 within --shutdown-timeout; only 200, 429 and 503 answered; the database
 * holds exactly the ids answered 200 (plus, tolerated and counted, ids whose connection
 * broke after they were sent, whose answer no one saw). */
static void test_sigterm_overload(void **state)
{
  char db[300], store[320];
  snprintf(db, sizeof db, "%s/ov.db", tmp_dir);
  snprintf(store, sizeof store, "sqlite:%s", db);
  struct daemon d;
  start_daemon(&d, ARGS("--store", store, "--workers", "2", "--queue", "20", "--work-ms", "2",
                        "--shutdown-timeout", "10s"));
  static struct ov_client cl[OV_CLIENTS];
  pthread_t th[OV_CLIENTS];
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  int64_t start = mono_ms();
  for (int i = 0; i < OV_CLIENTS; i++) {
    cl[i] = (struct ov_client){.port = d.port, .idx = i, .deadline_ms = start + 40000};
    assert_int_equal(pthread_create(&th[i], &attr, ov_client_run, &cl[i]), 0);
  }
  pthread_attr_destroy(&attr);
  sleep_ms(1000);
  int64_t sig_at = mono_ms();
  send_signal(d.pid, SIGTERM);
  bool exited = wait_exit(&d, 15000);
  int64_t exit_ms = mono_ms() - sig_at;
  for (int i = 0; i < OV_CLIENTS; i++)
    pthread_join(th[i], NULL);
  if (!exited) {
    kill_daemon(&d);
    dump_log(&d);
    fail_msg("paymentd still running 15 s after SIGTERM (--shutdown-timeout 10s)");
  }
  if (!WIFEXITED(d.status) || WEXITSTATUS(d.status) != 0) {
    dump_log(&d);
    fail_msg("exit status %d after SIGTERM under overload", d.status);
  }

  struct ov_tally t = {0};
  static bool *stored[OV_CLIENTS];
  int wrong_record = 0, sent = 0;
  for (int i = 0; i < OV_CLIENTS; i++) {
    stored[i] = calloc((size_t)cl[i].nsent + 1, sizeof(bool));
    for (int s = 0; s < cl[i].nsent; s++)
      t.answered[cl[i].seen[s] >= 0 && cl[i].seen[s] < 600 ? cl[i].seen[s] : 599]++;
    wrong_record += cl[i].wrong_record;
    sent += cl[i].nsent;
  }
  ov_check_db(db, cl, stored, &t);
  int missing = 0;
  for (int i = 0; i < OV_CLIENTS; i++)
    for (int s = 0; s < cl[i].nsent; s++)
      if (cl[i].seen[s] == 200 && !stored[i][s] && missing++ < 10)
        fprintf(stderr, "ov-%03d-%05d was answered 200 but is not in the database\n", i, s);
  int other = sent - t.answered[0] - t.answered[200] - t.answered[429] - t.answered[503];
  fprintf(stderr,
          "overload: %d sent, %d x 200, %d x 429, %d x 503, %d broken, %d other; exit %lld ms "
          "after SIGTERM; stored %d answered 200 + %d whose answer was lost\n",
          sent, t.answered[200], t.answered[429], t.answered[503], t.answered[0], other,
          (long long)exit_ms, t.stored_200, t.stored_broken);
  for (int i = 0; i < OV_CLIENTS; i++) {
    free(stored[i]);
    free(cl[i].seen);
  }
  if (missing || t.stored_wrong || wrong_record)
    fail_msg("%d answered 200 and not stored, %d stored without a 200, %d records of "
             "another id",
             missing, t.stored_wrong, wrong_record);
  if (other)
    fail_msg("%d answers other than 200, 429 and 503 during the overload", other);
  if (t.answered[200] == 0 || t.answered[429] <= t.answered[200] || t.answered[503] == 0)
    fail_msg("not an overload ended by SIGTERM: %d x 200, %d x 429, %d x 503", t.answered[200],
             t.answered[429], t.answered[503]);
}

/* A store that fails for real: the test holds SQLite's write lock (BEGIN EXCLUSIVE on the
 * same file) for longer than the store's busy timeout (5 s in store_sqlite.c). The
 * confirmation gets 500 store_error and nothing is stored; once the lock is gone, the
 * same confirmation succeeds with a plain 200. */
static void test_store_error(void **state)
{
  char db[300], store[320];
  snprintf(db, sizeof db, "%s/locked.db", tmp_dir);
  snprintf(store, sizeof store, "sqlite:%s", db);
  struct daemon d;
  struct resp r;
  start_daemon(&d, ARGS("--store", store, "--workers", "1", "--request-timeout", "30s"));
  post(d.port, "before-lock", GOOD, &r);
  expect_record(&r, "before-lock", 1250, "EUR", "acct-1");
  resp_free(&r);

  sqlite3 *lock;
  assert_int_equal(sqlite3_open_v2(db, &lock, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_exec(lock, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
  post(d.port, "locked-1", GOOD, &r);
  if (!is_error(&r, 500, "store_error", "a confirmation while the database is locked")) {
    sqlite3_close(lock);
    fail_msg("want 500 store_error, got %d after %lld ms", r.status, (long long)r.ms);
  }
  fprintf(stderr, "store_error after %lld ms of a held lock\n", (long long)r.ms);
  resp_free(&r);
  http(d.port, "GET", "/v1/payments/locked-1", NULL, NULL, &r); /* WAL: reads go on */
  expect_error(&r, 404, "not_found", "GET of the failed id, lock held");
  resp_free(&r);
  assert_int_equal(sqlite3_exec(lock, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_close(lock), SQLITE_OK);

  http(d.port, "GET", "/v1/payments/locked-1", NULL, NULL, &r);
  expect_error(&r, 404, "not_found", "GET of the failed id, lock released");
  resp_free(&r);
  post(d.port, "locked-1", GOOD, &r);
  expect_record(&r, "locked-1", 1250, "EUR", "acct-1");
  assert_null(header(&r, "Idempotent-Replayed"));
  resp_free(&r);
  assert_int_equal(stop_daemon(&d, 20000), 0);
  static char ids[MAX_IDS][80];
  int n = db_ids(db, ids, MAX_IDS);
  assert_int_equal(n, 2);
  assert_true(has_id(ids, n, "before-lock") && has_id(ids, n, "locked-1"));
}

/* An odd path and what the contract allows for it: one or two (status, error code), or
 * a 200 record of id. Never a 301: an API path is answered, not redirected. */
struct odd_case {
  const char *method, *path;
  int status;
  const char *code;
  int alt_status; /* 0: none */
  const char *alt_code, *id;
};

/* Whether r is the contract's error status, with a JSON body naming code. */
static bool is_error_quiet(const struct resp *r, int status, const char *code)
{
  const char *ct = header(r, "Content-Type"), *e = jstr(r, "error");
  return r->status == status && ct && strncmp(ct, "application/json", 16) == 0 && e &&
         strcmp(e, code) == 0 && jstr(r, "message");
}

static bool odd_ok(const struct odd_case *c, const struct resp *r)
{
  if (c->status == 200)
    return r->status == 200 && jstr(r, "id") && strcmp(jstr(r, "id"), c->id) == 0;
  return is_error_quiet(r, c->status, c->code) ||
         (c->alt_status && is_error_quiet(r, c->alt_status, c->alt_code));
}

/* Empty, 64- and 65-character, dotted, encoded and non-ASCII ids; trailing slashes, "//"
 * and "..", query strings: each answered as the contract says. */
static void test_odd_paths(void **state)
{
  struct daemon d;
  start_daemon(&d, ARGS("--store", "memory:", "--workers", "1"));
  char id64[65], id65[66], p64[120], p65[120], g64[120];
  memset(id64, 'y', 64), id64[64] = '\0';
  memset(id65, 'y', 65), id65[65] = '\0';
  snprintf(p64, sizeof p64, "/v1/payments/%s/confirm", id64);
  snprintf(p65, sizeof p65, "/v1/payments/%s/confirm", id65);
  snprintf(g64, sizeof g64, "/v1/payments/%s", id64);
  const char *NF = "not_found", *ID = "invalid_id", *NA = "method_not_allowed";
  const struct odd_case cases[] = {
      {"POST", p64, 200, NULL, 0, NULL, id64},
      {"GET", g64, 200, NULL, 0, NULL, id64},
      {"POST", p65, 400, ID, 0, NULL, NULL},
      {"POST", "/v1/payments/q1/confirm?x=1&y", 200, NULL, 0, NULL, "q1"},
      {"GET", "/v1/payments/q1?x=1", 200, NULL, 0, NULL, "q1"},
      {"POST", "/v1/payments/a.b/confirm", 400, ID, 0, NULL, NULL},
      {"POST", "/v1/payments/a%2Fb/confirm", 400, ID, 0, NULL, NULL},
      {"POST", "/v1/payments/%2E%2E/confirm", 400, ID, 0, NULL, NULL},
      {"POST", "/v1/payments/%C3%A9/confirm", 400, ID, 0, NULL, NULL},
      {"POST", "/v1/payments/\xc3\xa9/confirm", 400, ID, 0, NULL, NULL},
      {"POST", "/v1/payments/a%20b/confirm", 400, ID, 0, NULL, NULL},
      {"POST", "/v1/payments/q2%2Fconfirm", 405, NA, 0, NULL, NULL}, /* GET {id} only */
      {"POST", "/v1/payments/q3/confirm/", 404, NF, 0, NULL, NULL},
      {"GET", "/v1/payments/q1/", 404, NF, 0, NULL, NULL},
      {"GET", "/v1/payments/", 404, NF, 400, ID, NULL},
      {"GET", "/v1/payments", 404, NF, 0, NULL, NULL},
      /* Unclean paths: Go's ServeMux would redirect them; the contract answers. */
      {"POST", "/v1/payments//confirm", 400, ID, 404, NF, NULL},
      {"POST", "/v1/payments/../confirm", 404, NF, 400, ID, NULL},
      {"POST", "/v1/payments/./confirm", 404, NF, 400, ID, NULL},
      {"POST", "/v1/payments/x/../confirm", 404, NF, 400, ID, NULL},
      {"POST", "/v1/payments/q4//confirm", 404, NF, 0, NULL, NULL},
      {"POST", "//v1/payments/q5/confirm", 404, NF, 0, NULL, NULL},
      {"GET", "/v1/payments//", 404, NF, 400, ID, NULL},
      {"GET", "/v1/payments/.", 404, NF, 400, ID, NULL},
  };
  size_t ncases = sizeof cases / sizeof cases[0];
  int bad = 0;
  for (size_t i = 0; i < ncases; i++) {
    struct resp r;
    const struct odd_case *c = &cases[i];
    http(d.port, c->method, c->path, strcmp(c->method, "POST") == 0 ? JSON_CT : NULL,
         strcmp(c->method, "POST") == 0 ? GOOD : NULL, &r);
    char what[200];
    snprintf(what, sizeof what, "odd case %zu: %s %.80s", i, c->method, c->path);
    if (!odd_ok(c, &r)) {
      const char *loc = header(&r, "Location");
      fprintf(stderr, "%s: want %d %s%s, got %d%s%s %.120s\n", what, c->status,
              c->code ? c->code : c->id, c->alt_status ? " (or the other 4xx)" : "", r.status,
              loc ? " Location: " : "", loc ? loc : "", r.body ? r.body : "");
      bad++;
    }
    resp_free(&r);
  }
  /* No bad id reached the store: only the two good ones are there. */
  struct resp r;
  http(d.port, "GET", "/v1/payments/confirm", NULL, NULL, &r);
  expect_error(&r, 404, "not_found", "GET of \"confirm\", never posted");
  resp_free(&r);
  assert_int_equal(stop_daemon(&d, 20000), 0);
  if (bad)
    fail_msg("%d of %zu odd paths answered otherwise than the contract says", bad, ncases);
}

/* One /healthz reading; fails unless its status is 503 "saturated" exactly when the queue
 * is at least 90% full (depth * 10 >= capacity * 9), else 200 "ok". */
static json_int_t health_consistent(int port, int capacity)
{
  struct resp r;
  http(port, "GET", "/healthz", NULL, NULL, &r);
  json_int_t depth = r.json ? jint(&r, "queue_depth") : -1;
  bool full = depth * 10 >= (json_int_t)capacity * 9;
  const char *st = jstr(&r, "status");
  if (depth < 0 || r.status != (full ? 503 : 200) || !st ||
      strcmp(st, full ? "saturated" : "ok") != 0)
    fail_msg("/healthz at depth %lld of %d: %d %s", (long long)depth, capacity, r.status,
             r.body ? r.body : "");
  resp_free(&r);
  return depth;
}

/* The memory store past its first tables (64 shards of 64 slots, each doubled at three
 * quarters: 7,000 records take most shards through two doublings): every record is found
 * again with its values and its confirmed_at, replays stay replays. */
static void test_memory_store_grows(void **state)
{
  enum { N = 7000 };
  struct daemon d;
  struct resp r;
  start_daemon(&d, ARGS("--store", "memory:", "--workers", "2"));
  char id[32], body[160], first_at[64] = "";
  int fd = -1;
  for (int i = 0; i < N; i++) {
    if (i % 500 == 0) { /* well within the server's 1,000 requests per connection */
      if (fd >= 0)
        close(fd);
      fd = open_conn(d.port);
      int one = 1; /* the head and the body go out in two writes: no Nagle delay */
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    snprintf(id, sizeof id, "grow-%d", i);
    snprintf(body, sizeof body,
             "{\"amount_cents\":%d,\"currency\":\"EUR\",\"account\":\"acct-%d\"}", i + 1,
             i % 97);
    char path[64];
    snprintf(path, sizeof path, "/v1/payments/%s/confirm", id);
    write_req(fd, "POST", path, "Content-Type: application/json\r\n", body, strlen(body),
              false);
    read_resp(fd, &r);
    assert_int_equal(r.status, 200);
    if (i == 0)
      snprintf(first_at, sizeof first_at, "%s", jstr(&r, "confirmed_at"));
    resp_free(&r);
  }
  close(fd);
  for (int i = 0; i < N; i += 7) {
    char path[64], account[16];
    snprintf(path, sizeof path, "/v1/payments/grow-%d", i);
    snprintf(id, sizeof id, "grow-%d", i);
    snprintf(account, sizeof account, "acct-%d", i % 97);
    http(d.port, "GET", path, NULL, NULL, &r);
    expect_record(&r, id, i + 1, "EUR", account);
    if (i == 0)
      assert_string_equal(jstr(&r, "confirmed_at"), first_at);
    resp_free(&r);
  }
  post(d.port, "grow-0", "{\"amount_cents\":1,\"currency\":\"EUR\",\"account\":\"acct-0\"}",
       &r);
  assert_string_equal(header(&r, "Idempotent-Replayed"), "true");
  assert_string_equal(jstr(&r, "confirmed_at"), first_at);
  resp_free(&r);
  post(d.port, "grow-1", "{\"amount_cents\":3,\"currency\":\"EUR\",\"account\":\"acct-1\"}",
       &r);
  expect_error(&r, 409, "conflict", "grow-1 with another amount");
  resp_free(&r);
  assert_int_equal(stop_daemon(&d, 10000), 0);
}

/* /healthz turns 503 saturated exactly when the queue reaches 90% (9 of 10) and back to
 * 200 ok below it (8 of 10), with 1 worker held 1.5 s by each job. */
static void test_health_saturation_exact(void **state)
{
  enum { CAP = 10, N = CAP + 2 }; /* one in the worker, CAP queued, one refused */
  struct daemon d;
  start_daemon(&d, ARGS("--store", "memory:", "--workers", "1", "--queue", "10", "--work-ms",
                        "1500", "--request-timeout", "30s"));
  struct job jobs[N];
  pthread_t th[N];
  for (int i = 0; i < N; i++) {
    jobs[i] = (struct job){.port = d.port};
    snprintf(jobs[i].id, sizeof jobs[i].id, "sat-%02d", i);
    strcpy(jobs[i].body, GOOD);
  }
  bool seen[CAP + 1] = {false};
  for (int i = 0; i < N - 1; i++) { /* one at a time: depth climbs 0, 1, ..., CAP */
    jobs_start(&jobs[i], &th[i], 1);
    int64_t end = mono_ms() + 5000;
    int st;
    while (i == 0 && health_field(d.port, "workers_busy", &st) < 1 && mono_ms() < end)
      sleep_ms(2);
    json_int_t depth;
    while ((depth = health_consistent(d.port, CAP)) < i && mono_ms() < end)
      sleep_ms(2);
    seen[depth] = true;
  }
  struct resp r;
  post(d.port, "sat-over", GOOD, &r);
  expect_error(&r, 429, "queue_full", "one past a full queue");
  resp_free(&r);
  int64_t end = mono_ms() + 10000;
  while (!seen[CAP - 2] && mono_ms() < end) { /* the worker drains: 10, 9, 8 */
    json_int_t depth = health_consistent(d.port, CAP);
    if (depth >= 0 && depth <= CAP)
      seen[depth] = true;
    sleep_ms(10);
  }
  for (int k = CAP - 2; k <= CAP; k++)
    if (!seen[k])
      fail_msg("/healthz never seen at depth %d", k);
  kill_daemon(&d); /* a drain would take 12 s more; nothing here needs it */
  jobs_join(th, N - 1);
  for (int i = 0; i < N - 1; i++)
    resp_free(&jobs[i].r);
}

int main(int argc, char **argv)
{
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_confirm_replay_conflict, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
      cmocka_unit_test_setup_teardown(test_in_progress, setup, teardown),
      cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
      cmocka_unit_test_setup_teardown(test_queue_full, setup, teardown),
      cmocka_unit_test_setup_teardown(test_health_metrics, setup, teardown),
      cmocka_unit_test_setup_teardown(test_auth, setup, teardown),
      cmocka_unit_test_setup_teardown(test_flags_env, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sigterm_drains, setup, teardown),
      cmocka_unit_test_setup_teardown(test_second_signal, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sigterm_overload, setup, teardown),
      cmocka_unit_test_setup_teardown(test_store_error, setup, teardown),
      cmocka_unit_test_setup_teardown(test_odd_paths, setup, teardown),
      cmocka_unit_test_setup_teardown(test_health_saturation_exact, setup, teardown),
      cmocka_unit_test_setup_teardown(test_memory_store_grows, setup, teardown),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
