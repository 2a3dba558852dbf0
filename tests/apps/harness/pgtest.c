/* pgtest.c: the per-test PostgreSQL database (see pgtest.h). */
#include "pgtest.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weft_test.h"

char pg_admin_url[1024];
char pg_db_name[64];
char pg_db_url[1100];

int pg_check_env(void)
{
  const char *url = getenv("WEFT_TEST_PG_URL"), *required = getenv("WEFT_TEST_PG_REQUIRED");
  if (!url || !*url) {
    bool must = required && strcmp(required, "1") == 0;
    fprintf(stderr, "WEFT_TEST_PG_URL is not set (scripts/pg-start.sh prints one): %s\n",
            must ? "FAILED (WEFT_TEST_PG_REQUIRED=1)" : "skipped");
    return must ? 1 : 77; /* 77: CTest's SKIP_RETURN_CODE for this test */
  }
  snprintf(pg_admin_url, sizeof pg_admin_url, "%s", url);
  return -1;
}

void url_with_db(const char *url, const char *db, char *out, size_t size)
{
  const char *host = strstr(url, "://");
  const char *path = host ? strchr(host + 3, '/') : NULL;
  const char *query = strchr(url, '?');
  size_t head = path ? (size_t)(path - url) : query ? (size_t)(query - url) : strlen(url);
  snprintf(out, size, "%.*s/%s%s", (int)head, url, db, query ? query : "");
}

static void quiet(void *arg, const char *message)
{
  (void)arg, (void)message; /* NOTICEs such as "database ... does not exist, skipping" */
}

PGconn *pg_open(const char *url)
{
  PGconn *c = PQconnectdb(url);
  if (PQstatus(c) != CONNECTION_OK)
    fail_msg("connecting to %s: %s", url, PQerrorMessage(c));
  PQsetNoticeProcessor(c, quiet, NULL);
  return c;
}

PGresult *pg_run(PGconn *c, const char *fmt, ...)
{
  char sql[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(sql, sizeof sql, fmt, ap);
  va_end(ap);
  PGresult *r = PQexec(c, sql);
  ExecStatusType st = PQresultStatus(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
    fail_msg("%s: %s", sql, PQresultErrorMessage(r));
  return r;
}

void pg_do(PGconn *c, const char *sql)
{
  PQclear(pg_run(c, "%s", sql));
}

void pg_create_db(const char *prefix)
{
  static int seq;
  snprintf(pg_db_name, sizeof pg_db_name, "%s_%d_%d", prefix, (int)getpid(), seq++);
  url_with_db(pg_admin_url, pg_db_name, pg_db_url, sizeof pg_db_url);
  PGconn *c = pg_open(pg_admin_url);
  PQclear(pg_run(c, "DROP DATABASE IF EXISTS %s WITH (FORCE)", pg_db_name));
  PQclear(pg_run(c, "CREATE DATABASE %s", pg_db_name));
  PQfinish(c);
}

void pg_drop_db(void)
{
  if (!*pg_db_name)
    return;
  PGconn *c = PQconnectdb(pg_admin_url);
  char sql[200];
  snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", pg_db_name);
  PQclear(PQexec(c, sql));
  PQfinish(c);
  pg_db_name[0] = '\0';
}
