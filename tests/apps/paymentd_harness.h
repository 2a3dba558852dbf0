/* paymentd_harness.h: the paymentd-specific helpers of tests/apps/test_paymentd.c, on the
 * shared app test harness (tests/apps/harness/: child.h, http.h, fixture.h).
 *
 * A test starts the built paymentd (or PAYMENTD_BIN) as a child on a free loopback port,
 * with its output in a file under tmp_dir (made by setup, removed by teardown, which also
 * kills every child the test left running), and talks to it over plain blocking sockets
 * with a receive timeout, so that every call is bounded in time. Everything here runs on
 * the test's own threads (no weft runtime); the helpers that check (expect_*, start_*,
 * stop_daemon) fail the cmocka test and so may only be called from the test's thread;
 * post (like http.h's calls) may be called from any thread. */
#ifndef PAYMENTD_HARNESS_H
#define PAYMENTD_HARNESS_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "child.h"
#include "fixture.h"
#include "http.h"

enum { MAX_IDS = 256 };

/* POST /v1/payments/{id}/confirm with a JSON body. */
void post(int port, const char *id, const char *body, struct resp *r);
/* A keep-alive connection with one request answered on it. */
int open_conn(int port);

/* ---- paymentd as a child (child.h) ---- */

/* Start it on a free port with args (and env) and wait until /healthz answers 200. */
void start_daemon_env(struct daemon *d, const char *const *args, const char *const *env);
void start_daemon(struct daemon *d, const char *const *args);
/* SIGTERM, and the wait status (fails after timeout_ms). */
int stop_daemon(struct daemon *d, int timeout_ms);

/* ---- checks (the test's thread only) ---- */

/* Whether r is the contract's error (status, JSON body {error, message}); prints why not. */
bool is_error(const struct resp *r, int status, const char *code, const char *what);
void expect_error(const struct resp *r, int status, const char *code, const char *what);
/* r is a 200 confirmation of this record. */
void expect_record(const struct resp *r, const char *id, long long amount, const char *currency,
                   const char *account);
const char *jstr(const struct resp *r, const char *key);
json_int_t jint(const struct resp *r, const char *key);
/* A field of GET /healthz (-1 when no JSON came), its status in *status. */
json_int_t health_field(int port, const char *key, int *status);
/* The ids in the SQLite database at path (every table with an id column), at most max. */
int db_ids(const char *path, char ids[][80], int max);
bool has_id(char ids[][80], int n, const char *id);

/* cmocka setup and teardown: find the binary (skip when not built), the temp dir. */
int setup(void **state);
int teardown(void **state);

/* ---- concurrent requests ---- */

struct job {
  int port;
  char id[80];
  char body[256];
  int delay_ms; /* before connecting */
  struct resp r;
  atomic_int *done; /* incremented once answered (or failed) */
};

/* One thread per job, each posting its confirmation; joined by jobs_join. */
void jobs_start(struct job *jobs, pthread_t *th, int n);
void jobs_join(pthread_t *th, int n);
void body_for(char *out, size_t cap, long long amount, const char *cur, const char *acct);

#endif
