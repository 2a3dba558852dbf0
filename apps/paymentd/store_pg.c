/* store_pg.c: the "postgres://" (and "postgresql://") store, on weft/pg.h's pool: every
 * query parks its coroutine on the poller; no thread waits on the database.
 *
 * Several paymentd processes may share one database behind a load balancer, so the
 * database, not a process, decides idempotency and conflicts. The table holds one row per
 * id, in one of two states:
 *
 *   (no row) --claim--> pending --complete--> confirmed (final: never changes again)
 *                          |  ^
 *                    drop  |  | claim, once claim_expires has passed (a process died)
 *                          v  |
 *                       (no row)
 *
 * pending: claim_token names the one claim that may complete or drop it, until
 *   claim_expires; after that the next claim takes the row over with a new token. The
 *   lease (pay_store_options.lease) is far longer than any job, so a live job keeps it.
 * confirmed: the record, confirmed_at set; get sees only these rows. claim_token stays:
 *   it tells a repeated complete that the row is its own.
 *
 * Each transition is one autocommit statement, decided by the row's unique key under
 * PostgreSQL's own locking: INSERT ... ON CONFLICT DO UPDATE ... WHERE (claim or take
 * over), UPDATE ... WHERE token AND pending (complete), DELETE ... WHERE token AND pending
 * (drop). Every connection runs with synchronous_commit=on (added to the conninfo), so a
 * complete that returned is on the server's disk before the 200 goes out.
 *
 * Repeats. A connection that breaks mid-statement leaves its outcome unknown, so every
 * statement is retried on a fresh connection and each is safe to repeat: a claim carries
 * its token, and a repeated claim or complete that finds the row already its own says so.
 *
 * The design that lost: an advisory lock per id held for the whole job. It needs one
 * connection per job in flight (a pool of workers' size, held across --work-ms), and a
 * crashed process's lock is freed only when the server notices the dead socket. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <weft/pg.h>
#include <weft/weft.h>

#include "store.h"

#define SEC             ((int64_t)1000000000)
#define STMT_TIMEOUT    (10 * SEC)   /* one statement at most */
#define CONNECT_TIMEOUT (5 * SEC)    /* one connection attempt at most */
#define CLAIM_ATTEMPTS  4            /* claim, find the row gone (dropped), claim again */
#define SCHEMA_LOCK_KEY "7294617931" /* pg_advisory_xact_lock key of the schema's creation */
#define CONFIRMED_AT_SQL \
  "to_char(confirmed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

typedef struct pg_store {
  pay_store base;
  weft_pg_pool *pool; /* its own locking */
  int retries;        /* repeats after a broken connection: every pooled one may be */
  char lease_ms[24];  /* the claim lease, as a statement parameter */
} pg_store;

/* Two processes starting at once both run this: the advisory lock makes the second wait
 * for the first's commit, so CREATE TABLE IF NOT EXISTS never races in the catalog. */
static const char schema_sql[] =
    "BEGIN;"
    "SELECT pg_advisory_xact_lock(" SCHEMA_LOCK_KEY ");"
    "CREATE TABLE IF NOT EXISTS payments ("
    " id text PRIMARY KEY,"
    " state text NOT NULL CHECK (state IN ('pending', 'confirmed')),"
    " amount_cents bigint NOT NULL, currency text NOT NULL, account text NOT NULL,"
    " confirmed_at timestamptz,"
    " claim_token text,"
    " claim_expires timestamptz,"
    " CHECK ((state = 'confirmed') = (confirmed_at IS NOT NULL)));"
    "COMMIT";

static const char claim_sql[] =
    "INSERT INTO payments AS p (id, state, amount_cents, currency, account, claim_token,"
    " claim_expires) VALUES ($1, 'pending', $2, $3, $4, $5,"
    " now() + $6::bigint * interval '1 millisecond')"
    " ON CONFLICT (id) DO UPDATE SET amount_cents = EXCLUDED.amount_cents,"
    " currency = EXCLUDED.currency, account = EXCLUDED.account,"
    " claim_token = EXCLUDED.claim_token, claim_expires = EXCLUDED.claim_expires"
    " WHERE p.state = 'pending' AND p.claim_expires < now()"
    " RETURNING claim_token";

static const char row_sql[] = "SELECT state, amount_cents, currency, account, " CONFIRMED_AT_SQL
                              ", claim_token FROM payments WHERE id = $1";

static const char complete_sql[] =
    "UPDATE payments SET state = 'confirmed', confirmed_at = $3::timestamptz,"
    " claim_expires = NULL WHERE id = $1 AND claim_token = $2 AND state = 'pending'";

static const char drop_sql[] =
    "DELETE FROM payments WHERE id = $1 AND claim_token = $2 AND state = 'pending'";

static const char get_sql[] =
    "SELECT 'confirmed', amount_cents, currency, account, " CONFIRMED_AT_SQL
    ", claim_token FROM payments WHERE id = $1 AND state = 'confirmed'";

static const char insert_sql[] =
    "INSERT INTO payments (id, state, amount_cents, currency, account, confirmed_at)"
    " VALUES ($1, 'confirmed', $2, $3, $4, $5::timestamptz) ON CONFLICT (id) DO NOTHING";

/* ---- statements ---- */

/* Run one statement; 0 with *out (PQclear it) or -EIO. A broken connection (every pooled
 * one may have been cut at once) is retried on the next, up to s->retries times when the
 * caller allows (retry: the statement is safe to repeat). A refused new connection is not
 * retried: the server is down. */
static int exec(pg_store *s, bool retry, const char *sql, int n, const char *const *v,
                PGresult **out)
{
  for (int attempt = 0;; attempt++) {
    *out = NULL;
    int rc = weft_pg_pool_exec(s->pool, NULL, weft_now() + STMT_TIMEOUT, sql, n, v, out);
    if (rc == 0)
      return 0;
    PQclear(*out);
    *out = NULL;
    if (rc != -ECONNRESET || !retry || attempt >= s->retries)
      return -EIO;
  }
}

/* The rows a command changed (PQcmdTuples), or -1. */
static long changed(PGresult *res)
{
  const char *t = PQcmdTuples(res);
  return *t ? atol(t) : -1;
}

static void copy_col(char *dst, size_t size, PGresult *res, int col)
{
  snprintf(dst, size, "%s", PQgetisnull(res, 0, col) ? "" : PQgetvalue(res, 0, col));
}

/* Row 0 of a row_sql or get_sql result into *out (id from id). */
static void read_record(PGresult *res, const char *id, pay_record *out)
{
  memset(out, 0, sizeof *out);
  snprintf(out->id, sizeof out->id, "%s", id);
  out->amount_cents = atoll(PQgetvalue(res, 0, 1));
  copy_col(out->currency, sizeof out->currency, res, 2);
  copy_col(out->account, sizeof out->account, res, 3);
  copy_col(out->confirmed_at, sizeof out->confirmed_at, res, 4);
}

/* A fresh random claim token (32 hex digits). getrandom never fails for 16 bytes once the
 * pool is seeded; should it, the clock, pid and a counter still make tokens distinct. */
static void new_token(char token[PAY_CLAIM_TOKEN_SIZE])
{
  static atomic_ulong seq;
  unsigned char b[16];
  if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    uint64_t y = ((uint64_t)getpid() << 32) ^ atomic_fetch_add(&seq, 1);
    memcpy(b, &x, 8);
    memcpy(b + 8, &y, 8);
  }
  for (int i = 0; i < 16; i++)
    snprintf(token + 2 * i, 3, "%02x", b[i]);
}

/* ---- the store operations ---- */

static int pg_get(pay_store *base, const char *id, pay_record *out)
{
  PGresult *res;
  const char *v[] = {id};
  if (exec((pg_store *)base, true, get_sql, 1, v, &res))
    return -EIO;
  int rc = PQntuples(res) == 1 ? 0 : -ENOENT;
  if (rc == 0)
    read_record(res, id, out);
  PQclear(res);
  return rc;
}

/* Not used by worker.c (which claims), but a complete store: one confirmed row at once.
 * Not repeated after a broken connection: a repeat could not tell its own row. */
static int pg_insert(pay_store *base, const pay_record *rec)
{
  char amount[24];
  snprintf(amount, sizeof amount, "%lld", (long long)rec->amount_cents);
  const char *v[] = {rec->id, amount, rec->currency, rec->account, rec->confirmed_at};
  PGresult *res;
  if (exec((pg_store *)base, false, insert_sql, 5, v, &res))
    return -EIO;
  long n = changed(res);
  PQclear(res);
  return n == 1 ? 0 : n == 0 ? -EEXIST : -EIO;
}

/* What the row of c->id says to claim c: 0 (ours: a repeated claim), -EEXIST with *stored
 * (confirmed), -EBUSY (pending under another claim), -ENOENT (gone), -EIO. */
static int read_row(pg_store *s, const pay_claim *c, pay_record *stored)
{
  PGresult *res;
  const char *v[] = {c->id};
  if (exec(s, true, row_sql, 1, v, &res))
    return -EIO;
  int rc = -ENOENT;
  if (PQntuples(res) == 1) {
    bool ours = !PQgetisnull(res, 0, 5) && strcmp(PQgetvalue(res, 0, 5), c->token) == 0;
    bool confirmed = strcmp(PQgetvalue(res, 0, 0), "confirmed") == 0;
    if (confirmed)
      read_record(res, c->id, stored);
    rc = confirmed ? -EEXIST : ours ? 0 : -EBUSY;
  }
  PQclear(res);
  return rc;
}

/* One INSERT ... ON CONFLICT: 0 (claimed), -EEXIST (the row is someone's), -EIO. */
static int try_claim(pg_store *s, const pay_record *req, const pay_claim *c)
{
  char amount[24];
  snprintf(amount, sizeof amount, "%lld", (long long)req->amount_cents);
  const char *v[] = {c->id, amount, req->currency, req->account, c->token, s->lease_ms};
  PGresult *res;
  if (exec(s, true, claim_sql, 6, v, &res))
    return -EIO;
  int rc = PQntuples(res) == 1 ? 0 : -EEXIST;
  PQclear(res);
  return rc;
}

static int pg_claim(pay_store *base, const pay_record *req, pay_claim *c, pay_record *stored)
{
  pg_store *s = (pg_store *)base;
  snprintf(c->id, sizeof c->id, "%s", req->id);
  new_token(c->token);
  for (int attempt = 0; attempt < CLAIM_ATTEMPTS; attempt++) {
    int rc = try_claim(s, req, c);
    if (rc != -EEXIST)
      return rc;
    rc = read_row(s, c, stored);
    if (rc != -ENOENT)
      return rc;
  }
  return -EBUSY; /* dropped and claimed again under our feet: others are at work on it */
}

static int pg_complete(pay_store *base, const pay_claim *c, const pay_record *rec)
{
  pg_store *s = (pg_store *)base;
  const char *v[] = {c->id, c->token, rec->confirmed_at};
  PGresult *res;
  if (exec(s, true, complete_sql, 3, v, &res))
    return -EIO;
  long n = changed(res);
  PQclear(res);
  if (n == 1)
    return 0;
  if (n != 0)
    return -EIO;
  /* Nothing pending under our token: either a repeat of a complete that committed before
   * its connection broke (the row is confirmed and still names our token), or lost. */
  PGresult *row;
  const char *rv[] = {c->id};
  if (exec(s, true, row_sql, 1, rv, &row))
    return -EIO;
  bool ours = PQntuples(row) == 1 && strcmp(PQgetvalue(row, 0, 0), "confirmed") == 0 &&
              !PQgetisnull(row, 0, 5) && strcmp(PQgetvalue(row, 0, 5), c->token) == 0;
  PQclear(row);
  return ours ? 0 : -ESTALE;
}

static void pg_drop(pay_store *base, const pay_claim *c)
{
  const char *v[] = {c->id, c->token};
  PGresult *res;
  if (exec((pg_store *)base, true, drop_sql, 2, v, &res) == 0)
    PQclear(res);
}

static int pg_close(pay_store *base)
{
  pg_store *s = (pg_store *)base;
  weft_pg_pool_free(s->pool); /* every statement has returned: nothing is in flight */
  free(s);
  return 0;
}

static const pay_store_ops pg_ops = {
    .name = "postgres",
    .get = pg_get,
    .insert = pg_insert,
    .close = pg_close,
    .claim = pg_claim,
    .complete = pg_complete,
    .drop = pg_drop,
};

/* ---- opening ---- */

/* libpq's messages span lines ("...failed: ...\n\tIs the server running..."): one line. */
static void one_line(char *s)
{
  for (char *p = s; *p; p++)
    if (*p == '\n' || *p == '\r' || *p == '\t')
      *p = ' ';
  size_t n = strlen(s);
  while (n && s[n - 1] == ' ')
    s[--n] = '\0';
}

/* Append " kw='val'" to buf (libpq's quoting: \ and ' escaped). false when it does not fit. */
static bool append_kv(char *buf, size_t size, size_t *len, const char *kw, const char *val)
{
  int n = snprintf(buf + *len, size - *len, "%s%s='", *len ? " " : "", kw);
  if (n < 0 || (size_t)n >= size - *len)
    return false;
  *len += (size_t)n;
  for (const char *p = val; *p; p++) {
    if (*len + 3 >= size)
      return false;
    if (*p == '\\' || *p == '\'')
      buf[(*len)++] = '\\';
    buf[(*len)++] = *p;
  }
  buf[(*len)++] = '\'';
  buf[*len] = '\0';
  return true;
}

/* The URL as key='value' conninfo, with synchronous_commit=on added to the server options
 * (a 200 must follow a durable commit, whatever the database's default) and paymentd as
 * the fallback application name. NULL after writing the reason into err (a bad URL).
 * where gets "host H port P database D" for messages: the URL may hold a password. */
static char *make_conninfo(const char *url, char *where, size_t wlen, char *err, size_t errlen)
{
  if (weft_pg_describe(url, where, wlen) != 0) {
    snprintf(err, errlen, "invalid --store URL: %s", where);
    return NULL;
  }
  PQconninfoOption *opts = PQconninfoParse(url, NULL);
  if (!opts) {
    snprintf(err, errlen, "invalid --store URL: out of memory");
    return NULL;
  }
  size_t size = strlen(url) * 2 + 256, len = 0;
  char *buf = malloc(size);
  const char *options = "";
  bool ok = buf != NULL;
  for (PQconninfoOption *o = opts; ok && o->keyword; o++) {
    if (!o->val)
      continue;
    if (strcmp(o->keyword, "options") == 0) {
      options = o->val;
      continue;
    }
    ok = append_kv(buf, size, &len, o->keyword, o->val);
  }
  char opt[1024];
  snprintf(opt, sizeof opt, "%s%s-c synchronous_commit=on", options, *options ? " " : "");
  ok = ok && append_kv(buf, size, &len, "options", opt) &&
       append_kv(buf, size, &len, "fallback_application_name", "paymentd");
  PQconninfoFree(opts);
  if (!ok) {
    snprintf(err, errlen, "invalid --store URL: out of memory");
    free(buf);
    return NULL;
  }
  return buf;
}

static int create_schema(pg_store *s, char *why, size_t len)
{
  PGresult *res = NULL;
  weft_pg *c;
  int rc = weft_pg_pool_acquire(s->pool, NULL, &c);
  if (rc == 0) {
    rc = weft_pg_exec(c, NULL, weft_now() + STMT_TIMEOUT, schema_sql, 0, NULL, &res);
    if (rc)
      snprintf(why, len, "creating the table: %s",
               res ? PQresultErrorMessage(res) : weft_strerror(rc));
    PQclear(res);
    res = NULL;
    if (rc == -EIO) /* the server's error left the transaction open and aborted */
      weft_pg_exec(c, NULL, weft_now() + STMT_TIMEOUT, "ROLLBACK", 0, NULL, &res);
    PQclear(res);
    weft_pg_pool_release(s->pool, c);
  } else {
    snprintf(why, len, "%s", weft_strerror(rc));
  }
  return rc ? -EIO : 0;
}

int pay_store_pg_open(const char *url, const pay_store_options *o, pay_store **out, char *err,
                      size_t errlen)
{
  char where[300], why[400] = "";
  char *conninfo = make_conninfo(url, where, sizeof where, err, errlen);
  if (!conninfo)
    return -EINVAL;
  pg_store *s = calloc(1, sizeof *s);
  if (!s) {
    free(conninfo);
    snprintf(err, errlen, "postgres store: out of memory");
    return -ENOMEM;
  }
  s->base.ops = &pg_ops;
  s->retries = o->conns + 1;
  snprintf(s->lease_ms, sizeof s->lease_ms, "%lld", (long long)(o->lease / 1000000));
  weft_pg_pool_options po = {
      .conninfo = conninfo, .max_conns = o->conns, .connect_timeout = CONNECT_TIMEOUT};
  int rc = weft_pg_pool_new(&po, &s->pool, why, sizeof why);
  free(conninfo); /* the pool keeps its own copy */
  if (rc == 0 && (rc = create_schema(s, why, sizeof why)) != 0)
    weft_pg_pool_free(s->pool);
  if (rc != 0) {
    one_line(why);
    snprintf(err, errlen, "postgres store (%s): %s", where, *why ? why : weft_strerror(rc));
    free(s);
    return rc;
  }
  *out = &s->base;
  return 0;
}
