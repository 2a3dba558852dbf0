/* pgtest.h: a fresh PostgreSQL database per test, on the server WEFT_TEST_PG_URL names.
 *
 * pg_check_env, from main: without WEFT_TEST_PG_URL the program is skipped with a message
 * (it returns 77, CTest's SKIP_RETURN_CODE), unless WEFT_TEST_PG_REQUIRED=1, which makes
 * that a failure (1). Each test's setup calls pg_create_db (a database named
 * <prefix>_<pid>_<n>, dropped first should a crashed run have left it) and its teardown
 * pg_drop_db (WITH (FORCE)), so runs repeat and run beside others. libpq's blocking API;
 * the test's thread only. Built only when libpq is found. */
#ifndef APP_HARNESS_PGTEST_H
#define APP_HARNESS_PGTEST_H

#include <libpq-fe.h>

extern char pg_admin_url[1024]; /* WEFT_TEST_PG_URL */
extern char pg_db_name[64];     /* the running test's database, "" when none */
extern char pg_db_url[1100];    /* pg_admin_url with pg_db_name as its database */

/* -1: go on (pg_admin_url set); else the code main must return (77 skip, 1 failure). */
int pg_check_env(void);
/* A fresh database for this test: pg_db_name and pg_db_url. Fails the test on an error. */
void pg_create_db(const char *prefix);
/* Drop this test's database, if any (errors ignored: a teardown). */
void pg_drop_db(void);
/* url with its database (the path after host[:port]) replaced by db. */
void url_with_db(const char *url, const char *db, char *out, size_t size);
/* A connection to url with NOTICEs silenced; fails the test when it cannot connect. */
PGconn *pg_open(const char *url);
/* Run sql (printf format) and return its result; fails the test on an error. */
PGresult *pg_run(PGconn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* pg_run, the result dropped. */
void pg_do(PGconn *c, const char *sql);

#endif
