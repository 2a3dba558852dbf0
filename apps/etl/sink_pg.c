/* sink_pg.c: the "postgres://" (and "postgresql://") sink, on weft/pg.h's pool: every
 * statement parks the sink's coroutine on the poller; no thread waits on the database.
 *
 * Same tables and rules as the SQLite sink (sink.c): enriched_events upserted by event_id,
 * a partial row never replacing a complete one; dead_letters unique by origin (stdin's
 * empty origin stored as NULL, never a duplicate). Several weft-etl processes may share
 * one database, so the database decides: the schema is made under an advisory lock, and
 * every write is an INSERT ... ON CONFLICT.
 *
 * A batch is one transaction on one pooled connection, in as few round trips as the
 * protocol allows without pipelining:
 *
 *   BEGIN; SET LOCAL synchronous_commit = on   (one simple query: the COMMIT returns only
 *                                               once the batch is on the server's disk)
 *   INSERT INTO enriched_events ... VALUES (..),(..) ON CONFLICT ... DO UPDATE ... WHERE
 *   INSERT INTO dead_letters ... VALUES (..),(..) ON CONFLICT (origin) DO NOTHING
 *   COMMIT
 *
 * with every value a text parameter (raw bytes as bytea hex). A table without items in the
 * batch is skipped; a batch past ROWS_PER_STMT items of one kind takes more INSERTs. Rows
 * of one event_id are merged first, since one INSERT may not update a row twice: the last
 * complete one wins, else the last one, as applying them one by one would end. Rows are
 * sent sorted by event_id, so two processes upserting overlapping batches lock the rows in
 * the same order and do not deadlock.
 *
 * Repeats. Every statement is idempotent, so a batch whose connection broke (outcome of
 * the COMMIT unknown), or that the server aborted as a deadlock or a serialization
 * failure, is run again whole on a fresh connection, up to WRITE_ATTEMPTS times with a
 * growing pause; then the write fails, which stops the pipeline (as a SQLite failure
 * does). Any other server error fails at once: repeating it would fail the same way.
 *
 * Threads: the sink has one caller at a time (etl_sink_ops), so the pool holds one
 * connection and a batch's scratch lives on the caller's stack and heap. A hostname in the
 * URL is resolved by libpq on the scheduler thread that connects (weft/pg.h): a URL with
 * an IP address keeps that lookup from blocking it.
 *
 * The design that lost: one statement per row, as the SQLite sink does. On a network
 * round trip per row a 500-row batch took 500 round trips instead of four. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weft/pg.h>

#include "etl.h"

#define SEC             ((int64_t)1000000000)
#define MS              ((int64_t)1000000)
#define STMT_TIMEOUT    (10 * SEC) /* one statement at most */
#define CONNECT_TIMEOUT (5 * SEC)  /* one connection attempt at most */
#define WRITE_ATTEMPTS  5          /* runs of one batch at most */
#define FIRST_PAUSE     (100 * MS) /* before the second run; doubled for each next one */
#define ROWS_PER_STMT   1000       /* items per INSERT: 14000 parameters of the 65535 */
#define ROW_COLS        14
#define DEAD_COLS       5
#define SCHEMA_LOCK_KEY "7294617932" /* pg_advisory_xact_lock key of the schema's creation */

typedef struct pg_sink {
  etl_sink base;
  weft_pg_pool *pool; /* one connection: the sink has one caller at a time */
} pg_sink;

/* Two processes starting at once both run this: the advisory lock makes the second wait
 * for the first's commit, so CREATE TABLE IF NOT EXISTS never races in the catalog. The
 * NOTICE "already exists, skipping" is not wanted on stderr. */
static const char schema_sql[] =
    "BEGIN;"
    "SET LOCAL client_min_messages = warning;"
    "SELECT pg_advisory_xact_lock(" SCHEMA_LOCK_KEY ");"
    "CREATE TABLE IF NOT EXISTS enriched_events ("
    " event_id text PRIMARY KEY, ts text NOT NULL, user_id text NOT NULL, tier text,"
    " user_country text, ip text NOT NULL, ip_country text, city text,"
    " amount_cents bigint NOT NULL, currency text NOT NULL, amount_usd_cents bigint,"
    " status text NOT NULL CHECK (status IN ('complete', 'partial')), missing text,"
    " processed_at text NOT NULL);"
    "CREATE TABLE IF NOT EXISTS dead_letters ("
    " event_id text NOT NULL DEFAULT '', origin text UNIQUE, raw bytea NOT NULL,"
    " error text NOT NULL, failed_at text NOT NULL);"
    "COMMIT";

static const char begin_sql[] = "BEGIN; SET LOCAL synchronous_commit = on";

static const char rows_head[] =
    "INSERT INTO enriched_events AS e (event_id, ts, user_id, tier, user_country, ip,"
    " ip_country, city, amount_cents, currency, amount_usd_cents, status, missing,"
    " processed_at) VALUES ";
/* The parameter casts of a row: every value is sent as text. */
static const char *const row_casts[ROW_COLS] = {"", "",         "", "",         "", "", "",
                                                "", "::bigint", "", "::bigint", "", "", ""};
/* The WHERE keeps a complete row from being replaced by a partial one. */
static const char rows_tail[] =
    " ON CONFLICT (event_id) DO UPDATE SET ts = EXCLUDED.ts, user_id = EXCLUDED.user_id,"
    " tier = EXCLUDED.tier, user_country = EXCLUDED.user_country, ip = EXCLUDED.ip,"
    " ip_country = EXCLUDED.ip_country, city = EXCLUDED.city,"
    " amount_cents = EXCLUDED.amount_cents, currency = EXCLUDED.currency,"
    " amount_usd_cents = EXCLUDED.amount_usd_cents, status = EXCLUDED.status,"
    " missing = EXCLUDED.missing, processed_at = EXCLUDED.processed_at"
    " WHERE e.status <> 'complete' OR EXCLUDED.status = 'complete'";

static const char dead_head[] =
    "INSERT INTO dead_letters (event_id, origin, raw, error, failed_at) VALUES ";
static const char *const dead_casts[DEAD_COLS] = {"", "", "::bytea", "", ""};
static const char dead_tail[] = " ON CONFLICT (origin) DO NOTHING";

/* ---- a batch as statement parameters ---- */

/* The parameters of one batch, built once and sent again by every run of it. */
typedef struct pg_batch {
  const char **row_vals;  /* nrows * ROW_COLS, row after row, sorted by event_id */
  size_t nrows;           /* after merging rows of one event_id */
  const char **dead_vals; /* ndead * DEAD_COLS */
  size_t ndead;
  char (*nums)[24]; /* amount_cents, amount_usd_cents of each row */
  char **owned;     /* strings made for the batch (bytea hex, repaired UTF-8) */
  size_t nowned;
  char now[40]; /* processed_at and failed_at */
} pg_batch;

typedef struct row_ref {
  const etl_row *row;
  size_t index; /* in the batch: later wins among equals */
} row_ref;

static int by_event_id(const void *a, const void *b)
{
  const row_ref *x = a, *y = b;
  int c = strcmp(x->row->event_id, y->row->event_id);
  return c ? c : x->index < y->index ? -1 : x->index > y->index;
}

static bool is_complete(const etl_row *r)
{
  return r->missing[0] == '\0';
}

/* Keep one row per event_id in refs[0..n) (sorted): the last complete one, else the
 * last one. Returns how many are kept (moved to the front). */
static size_t merge_same_ids(row_ref *refs, size_t n)
{
  size_t kept = 0;
  for (size_t i = 0; i < n;) {
    size_t end = i, pick = i;
    for (; end < n && strcmp(refs[end].row->event_id, refs[i].row->event_id) == 0; end++)
      if (is_complete(refs[end].row) || !is_complete(refs[pick].row))
        pick = end;
    refs[kept++] = refs[pick];
    i = end;
  }
  return kept;
}

/* The length of the UTF-8 sequence that lead starts, or 0 when lead cannot start one. */
static size_t utf8_seq_len(unsigned char lead)
{
  if (lead < 0x80)
    return 1;
  if ((lead >> 5) == 6)
    return 2;
  if ((lead >> 4) == 14)
    return 3;
  return (lead >> 3) == 30 ? 4 : 0;
}

/* s itself when it is valid UTF-8 (the server refuses text that is not), else a copy
 * with every bad byte made '?', kept in b->owned. NULL when out of memory. */
static const char *valid_text(pg_batch *b, const char *s)
{
  const unsigned char *p = (const unsigned char *)s;
  size_t len = strlen(s);
  char *copy = NULL;
  for (size_t i = 0; i < len;) {
    size_t need = utf8_seq_len(p[i]);
    bool ok = need && i + need <= len;
    for (size_t k = 1; ok && k < need; k++)
      ok = (p[i + k] & 0xC0) == 0x80;
    if (ok) {
      i += need;
      continue;
    }
    if (!copy && !(copy = b->owned[b->nowned++] = strdup(s)))
      return NULL;
    copy[i++] = '?';
  }
  return copy ? copy : s;
}

/* The raw bytes as bytea's hex text "\x..."; kept in b->owned. NULL when out of memory. */
static const char *bytea_hex(pg_batch *b, const char *data, size_t len)
{
  static const char digits[] = "0123456789abcdef";
  char *hex = b->owned[b->nowned++] = malloc(2 * len + 3);
  if (!hex)
    return NULL;
  hex[0] = '\\', hex[1] = 'x';
  for (size_t i = 0; i < len; i++) {
    hex[2 + 2 * i] = digits[(unsigned char)data[i] >> 4];
    hex[3 + 2 * i] = digits[(unsigned char)data[i] & 15];
  }
  hex[2 + 2 * len] = '\0';
  return hex;
}

static void put_row(pg_batch *b, size_t i, const etl_row *r)
{
  const char **v = b->row_vals + i * ROW_COLS;
  snprintf(b->nums[2 * i], sizeof b->nums[0], "%lld", (long long)r->amount_cents);
  snprintf(b->nums[2 * i + 1], sizeof b->nums[0], "%lld", (long long)r->amount_usd_cents);
  const char *cols[ROW_COLS] = {r->event_id,
                                r->ts,
                                r->user_id,
                                r->tier,
                                r->user_country,
                                r->ip,
                                r->ip_country,
                                r->city,
                                b->nums[2 * i],
                                r->currency,
                                r->has_usd ? b->nums[2 * i + 1] : NULL,
                                is_complete(r) ? "complete" : "partial",
                                is_complete(r) ? NULL : r->missing,
                                b->now};
  memcpy(v, cols, sizeof cols);
}

/* 0, or -ENOMEM. */
static int put_dead(pg_batch *b, size_t i, const etl_item *it)
{
  const char **v = b->dead_vals + i * DEAD_COLS;
  const etl_message *m = it->msg;
  v[0] = valid_text(b, it->dead_id ? it->dead_id : "");
  v[1] = m->origin_text[0] ? valid_text(b, m->origin_text) : NULL;
  v[2] = bytea_hex(b, m->data, m->len);
  v[3] = valid_text(b, it->error ? it->error : "");
  v[4] = b->now;
  return v[0] && (v[1] || !m->origin_text[0]) && v[2] && v[3] ? 0 : -ENOMEM;
}

static void batch_free(pg_batch *b)
{
  for (size_t i = 0; i < b->nowned; i++)
    free(b->owned[i]);
  free(b->owned);
  free(b->nums);
  free(b->row_vals);
  free(b->dead_vals);
}

/* Build b from items[0..n). 0 or -ENOMEM (b is then freed). */
static int batch_build(pg_batch *b, etl_item *const *items, size_t n)
{
  memset(b, 0, sizeof *b);
  etl_now_rfc3339(b->now, sizeof b->now);
  row_ref *refs = calloc(n ? n : 1, sizeof *refs);
  b->row_vals = calloc(n ? n * ROW_COLS : 1, sizeof *b->row_vals);
  b->dead_vals = calloc(n ? n * DEAD_COLS : 1, sizeof *b->dead_vals);
  b->nums = calloc(n ? 2 * n : 1, sizeof *b->nums);
  b->owned = calloc(n ? 4 * n : 1, sizeof *b->owned); /* 4 per dead letter at most */
  int rc = refs && b->row_vals && b->dead_vals && b->nums && b->owned ? 0 : -ENOMEM;
  size_t nrefs = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    if (items[i]->kind == ETL_ITEM_ROW)
      refs[nrefs++] = (row_ref){&items[i]->row, i};
    else
      rc = put_dead(b, b->ndead++, items[i]);
  }
  if (rc == 0) {
    qsort(refs, nrefs, sizeof *refs, by_event_id);
    b->nrows = merge_same_ids(refs, nrefs);
    for (size_t i = 0; i < b->nrows; i++)
      put_row(b, i, refs[i].row);
  }
  free(refs);
  if (rc)
    batch_free(b);
  return rc;
}

/* ---- statements ---- */

/* "head ($1,..,$ncols),(..).. tail" for k items of ncols parameters each, parameter j of
 * an item cast by casts[j]; malloc'd, or NULL when out of memory. */
static char *insert_sql(const char *head, const char *const *casts, int ncols, const char *tail,
                        size_t k)
{
  size_t cap = strlen(head) + strlen(tail) + k * (size_t)ncols * 20 + 8, len = strlen(head);
  char *sql = malloc(cap);
  if (!sql)
    return NULL;
  memcpy(sql, head, len);
  for (size_t i = 0; i < k; i++)
    for (int j = 0; j < ncols; j++)
      len += (size_t)snprintf(sql + len, cap - len, "%s$%zu%s%s",
                              j   ? ","
                              : i ? ",("
                                  : "(",
                              i * (size_t)ncols + (size_t)j + 1, casts[j],
                              j == ncols - 1 ? ")" : "");
  snprintf(sql + len, cap - len, "%s", tail);
  return sql;
}

/* Run one statement on c, dropping its result. 0, -ENOMEM (sql NULL), or weft_pg_exec's
 * error with *res the server's error result (-EIO; the caller PQclears it). */
static int run(weft_pg *c, const char *sql, int nparams, const char *const *values,
               PGresult **res)
{
  *res = NULL;
  if (!sql)
    return -ENOMEM;
  int rc = weft_pg_exec(c, NULL, weft_now() + STMT_TIMEOUT, sql, nparams, values, res);
  if (rc == 0) {
    PQclear(*res);
    *res = NULL;
  }
  return rc;
}

/* Insert n items of ncols values each, ROWS_PER_STMT per statement. As run(). */
static int insert_all(weft_pg *c, const char *head, const char *const *casts, int ncols,
                      const char *tail, const char **vals, size_t n, PGresult **res)
{
  int rc = 0;
  for (size_t first = 0; first < n && rc == 0; first += ROWS_PER_STMT) {
    size_t k = n - first < ROWS_PER_STMT ? n - first : ROWS_PER_STMT;
    char *sql = insert_sql(head, casts, ncols, tail, k);
    rc = run(c, sql, (int)k * ncols, vals + first * (size_t)ncols, res);
    free(sql);
  }
  return rc;
}

/* A server error worth running the batch again for: a deadlock or a serialization
 * failure (SQLSTATE class 40, transaction rollback). */
static bool is_transient(const PGresult *res)
{
  const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
  return state && strncmp(state, "40", 2) == 0;
}

static void quiet(void *arg, const char *message)
{
  (void)arg, (void)message; /* a WARNING such as "there is no transaction in progress" */
}

/* One run of batch b on a pooled connection. 0, -EAGAIN (run it again: the connection
 * broke or could not be had, or the server aborted it as transient), -EIO (the server
 * refused it), or -ENOMEM. */
static int write_once(pg_sink *s, const pg_batch *b)
{
  weft_pg *c;
  int rc = weft_pg_pool_acquire(s->pool, NULL, &c);
  if (rc)
    return rc == -ENOMEM ? rc : -EAGAIN;
  PQsetNoticeProcessor(weft_pg_conn(c), quiet, NULL);
  PGresult *res = NULL;
  rc = run(c, begin_sql, 0, NULL, &res);
  if (rc == 0)
    rc = insert_all(c, rows_head, row_casts, ROW_COLS, rows_tail, b->row_vals, b->nrows, &res);
  if (rc == 0)
    rc = insert_all(c, dead_head, dead_casts, DEAD_COLS, dead_tail, b->dead_vals, b->ndead,
                    &res);
  if (rc == 0)
    rc = run(c, "COMMIT", 0, NULL, &res);
  bool again = weft_pg_broken(c) || is_transient(res);
  PQclear(res);
  if (rc && !weft_pg_broken(c) && run(c, "ROLLBACK", 0, NULL, &res) != 0)
    PQclear(res); /* a ROLLBACK that failed broke the link: the pool drops it */
  weft_pg_pool_release(s->pool, c);
  return rc == 0 ? 0 : again ? -EAGAIN : rc == -ENOMEM ? rc : -EIO;
}

/* ---- the sink ---- */

static int pg_write(etl_sink *base, etl_item *const *items, size_t n)
{
  pg_sink *s = (pg_sink *)base;
  pg_batch b;
  if (batch_build(&b, items, n))
    return -ENOMEM;
  int rc = -EAGAIN;
  int64_t pause = FIRST_PAUSE;
  for (int attempt = 0; attempt < WRITE_ATTEMPTS && rc == -EAGAIN; attempt++, pause *= 2) {
    if (attempt)
      weft_sleep(pause);
    rc = write_once(s, &b);
  }
  batch_free(&b);
  return rc == -EAGAIN ? -ECONNRESET : rc;
}

static void pg_close(etl_sink *base)
{
  pg_sink *s = (pg_sink *)base;
  weft_pg_pool_free(s->pool); /* every write has returned: nothing is in flight */
  free(s);
}

static const etl_sink_ops pg_ops = {"postgres", pg_write, pg_close};

/* libpq's messages span lines ("...failed: ...\n\tIs the server running..."): one line. */
static void one_line(char *s)
{
  for (char *p = s; *p; p++)
    if (*p == '\n' || *p == '\r' || *p == '\t')
      *p = ' ';
  for (size_t n = strlen(s); n && s[n - 1] == ' ';)
    s[--n] = '\0';
}

/* Make the tables (see schema_sql). 0, or -EIO with the reason in why. */
static int create_schema(pg_sink *s, char *why, size_t len)
{
  weft_pg *c;
  int rc = weft_pg_pool_acquire(s->pool, NULL, &c);
  if (rc)
    return snprintf(why, len, "%s", weft_strerror(rc)), -EIO;
  PGresult *res = NULL;
  rc = weft_pg_exec(c, NULL, weft_now() + STMT_TIMEOUT, schema_sql, 0, NULL, &res);
  if (rc)
    snprintf(why, len, "creating the tables: %s",
             res ? PQresultErrorMessage(res) : weft_strerror(rc));
  PQclear(res);
  if (rc == -EIO && run(c, "ROLLBACK", 0, NULL, &res) != 0) /* the failed BEGIN is open */
    PQclear(res);
  weft_pg_pool_release(s->pool, c);
  return rc ? -EIO : 0;
}

int etl_sink_pg_open(const char *url, etl_sink **out, char *err, size_t errlen)
{
  char where[300], why[400] = "";
  int rc = weft_pg_describe(url, where, sizeof where);
  if (rc)
    return snprintf(err, errlen, "invalid --sink URL: %s", where), rc;
  pg_sink *s = calloc(1, sizeof *s);
  if (!s)
    return snprintf(err, errlen, "postgres sink: out of memory"), -ENOMEM;
  s->base.ops = &pg_ops;
  weft_pg_pool_options po = {
      .conninfo = url, .max_conns = 1, .connect_timeout = CONNECT_TIMEOUT};
  rc = weft_pg_pool_new(&po, &s->pool, why, sizeof why);
  if (rc == 0 && (rc = create_schema(s, why, sizeof why)) != 0)
    weft_pg_pool_free(s->pool);
  if (rc) {
    one_line(why);
    snprintf(err, errlen, "--sink postgres (%s): %s", where, *why ? why : weft_strerror(rc));
    free(s);
    return rc;
  }
  *out = &s->base;
  return 0;
}
