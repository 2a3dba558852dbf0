/* sink_sqlite.c: the "sqlite:PATH" sink. WAL journal, synchronous=FULL: a batch is on disk
 * when its COMMIT returns, and only then does the pipeline ack its messages.
 *
 * Threads. No scheduler thread ever calls SQLite: open, every batch and close run through
 * weft_blocking. The connection and its statements are used by one blocking call at a
 * time, since the sink stage has one worker and waits for each write (etl_sink_ops: one
 * caller at a time), so they need no lock. */
#define _GNU_SOURCE
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etl.h"

typedef struct sqlite_sink {
  etl_sink base;
  sqlite3 *db;
  sqlite3_stmt *upsert; /* one enriched_events row */
  sqlite3_stmt *dead;   /* one dead letter */
} sqlite_sink;

static const char schema[] =
    "PRAGMA busy_timeout=10000;" /* first: the next one may meet a reader's lock */
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=FULL;"
    "CREATE TABLE IF NOT EXISTS enriched_events("
    " event_id TEXT PRIMARY KEY, ts TEXT NOT NULL, user_id TEXT NOT NULL, tier TEXT,"
    " user_country TEXT, ip TEXT NOT NULL, ip_country TEXT, city TEXT,"
    " amount_cents INTEGER NOT NULL, currency TEXT NOT NULL, amount_usd_cents INTEGER,"
    " status TEXT NOT NULL, missing TEXT, processed_at TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS dead_letters("
    " event_id TEXT NOT NULL DEFAULT '', origin TEXT UNIQUE, raw BLOB NOT NULL,"
    " error TEXT NOT NULL, failed_at TEXT NOT NULL)";

/* The WHERE keeps a complete row from being replaced by a partial one. */
static const char upsert_sql[] =
    "INSERT INTO enriched_events(event_id, ts, user_id, tier, user_country, ip, ip_country,"
    " city, amount_cents, currency, amount_usd_cents, status, missing, processed_at)"
    " VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14)"
    " ON CONFLICT(event_id) DO UPDATE SET ts=excluded.ts, user_id=excluded.user_id,"
    " tier=excluded.tier, user_country=excluded.user_country, ip=excluded.ip,"
    " ip_country=excluded.ip_country, city=excluded.city,"
    " amount_cents=excluded.amount_cents, currency=excluded.currency,"
    " amount_usd_cents=excluded.amount_usd_cents, status=excluded.status,"
    " missing=excluded.missing, processed_at=excluded.processed_at"
    " WHERE enriched_events.status <> 'complete' OR excluded.status = 'complete'";

static const char dead_sql[] =
    "INSERT INTO dead_letters(event_id, origin, raw, error, failed_at)"
    " VALUES(?1,?2,?3,?4,?5) ON CONFLICT(origin) DO NOTHING";

/* ---- blocking-pool side ---- */

typedef struct open_call {
  sqlite_sink *s;
  const char *path;
  char *err;
  size_t errlen;
} open_call;

static long open_blocking(void *arg)
{
  open_call *c = arg;
  sqlite_sink *s = c->s;
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
  if (sqlite3_open_v2(c->path, &s->db, flags, NULL) != SQLITE_OK ||
      sqlite3_exec(s->db, schema, NULL, NULL, NULL) != SQLITE_OK ||
      sqlite3_prepare_v2(s->db, upsert_sql, -1, &s->upsert, NULL) != SQLITE_OK ||
      sqlite3_prepare_v2(s->db, dead_sql, -1, &s->dead, NULL) != SQLITE_OK) {
    snprintf(c->err, c->errlen, "--sink sqlite:%s: %s", c->path,
             s->db ? sqlite3_errmsg(s->db) : "out of memory");
    return -EIO;
  }
  return 0;
}

static long close_blocking(void *arg)
{
  sqlite_sink *s = arg;
  sqlite3_finalize(s->upsert);
  sqlite3_finalize(s->dead);
  return sqlite3_close(s->db) == SQLITE_OK ? 0 : -EIO; /* the last close checkpoints */
}

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
  if (s)
    sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
  else
    sqlite3_bind_null(st, i);
}

static int put_row(sqlite_sink *s, const etl_row *r, const char *now)
{
  sqlite3_stmt *st = s->upsert;
  const char *texts[] = {r->event_id,     r->ts, r->user_id,    r->tier,
                         r->user_country, r->ip, r->ip_country, r->city};
  for (int i = 0; i < 8; i++)
    bind_text(st, i + 1, texts[i]);
  sqlite3_bind_int64(st, 9, r->amount_cents);
  bind_text(st, 10, r->currency);
  if (r->has_usd)
    sqlite3_bind_int64(st, 11, r->amount_usd_cents);
  else
    sqlite3_bind_null(st, 11);
  bind_text(st, 12, r->missing[0] ? "partial" : "complete");
  bind_text(st, 13, r->missing[0] ? r->missing : NULL);
  bind_text(st, 14, now);
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  return rc == SQLITE_DONE ? 0 : -EIO;
}

static int put_dead(sqlite_sink *s, const etl_item *it, const char *now)
{
  sqlite3_stmt *st = s->dead;
  const etl_message *m = it->msg;
  bind_text(st, 1, it->dead_id ? it->dead_id : "");
  bind_text(st, 2, m->origin_text[0] ? m->origin_text : NULL);
  sqlite3_bind_blob(st, 3, m->data, (int)m->len, SQLITE_STATIC);
  bind_text(st, 4, it->error ? it->error : "");
  bind_text(st, 5, now);
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  return rc == SQLITE_DONE ? 0 : -EIO;
}

typedef struct write_call {
  sqlite_sink *s;
  etl_item *const *items;
  size_t n;
} write_call;

static long write_blocking(void *arg)
{
  write_call *c = arg;
  sqlite3 *db = c->s->db;
  char now[40];
  etl_now_rfc3339(now, sizeof now);
  if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
    return -EIO;
  int rc = 0;
  for (size_t i = 0; i < c->n && rc == 0; i++)
    rc = c->items[i]->kind == ETL_ITEM_ROW ? put_row(c->s, &c->items[i]->row, now)
                                           : put_dead(c->s, c->items[i], now);
  if (rc == 0 && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
    return 0;
  sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
  return -EIO;
}

/* ---- coroutine side ---- */

static int sqlite_write(etl_sink *base, etl_item *const *items, size_t n)
{
  write_call c = {(sqlite_sink *)base, items, n};
  return (int)weft_blocking(write_blocking, &c);
}

static void sqlite_close(etl_sink *base)
{
  weft_blocking(close_blocking, base);
  free(base);
}

static const etl_sink_ops sqlite_ops = {"sqlite", sqlite_write, sqlite_close};

int etl_sink_sqlite_open(const char *path, etl_sink **out, char *err, size_t errlen)
{
  sqlite_sink *s = calloc(1, sizeof *s);
  if (!s)
    return snprintf(err, errlen, "out of memory"), -ENOMEM;
  s->base.ops = &sqlite_ops;
  open_call c = {s, path, err, errlen};
  int rc = (int)weft_blocking(open_blocking, &c);
  if (rc) {
    sqlite_close(&s->base);
    return rc;
  }
  *out = &s->base;
  return 0;
}
