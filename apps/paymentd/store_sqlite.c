/* store_sqlite.c: the "sqlite:PATH" store. WAL journal, synchronous=FULL: a commit is on
 * disk when it returns.
 *
 * Group commit. Every insert goes to ONE writer coroutine over the channel puts; the
 * writer takes what is waiting (up to BATCH_MAX), runs the batch as one transaction on
 * the blocking pool, and only then answers each insert on its own channel. One sync thus
 * serves every confirmation that arrived while the previous one was being written, which
 * is what keeps SQLite's fsync off the critical path under load. The design that lost:
 * one transaction per insert from each worker, serialised on a mutex: one fsync per
 * confirmation, and a worker's blocking-pool thread waiting on the lock for each.
 *
 * Threads. No scheduler thread ever calls SQLite: the writer's transactions and every
 * read run through weft_blocking. wdb and its statement are used only by the writer's
 * blocking calls, one at a time (the writer waits for each). rdb and its statement are
 * used by reads from any blocking-pool thread, serialised by rmu (a pthread mutex, held
 * only on blocking-pool threads, never across a park). WAL lets reads run beside a
 * commit. */
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weft/blocking.h>
#include <weft/chan.h>
#include <weft/common.h>
#include <weft/runtime.h>

#include "store.h"

#define BATCH_MAX 256 /* inserts per transaction at most */
#define PUTS_CAP  1024

typedef struct sql_store {
  pay_store base;
  sqlite3 *wdb;           /* writer's blocking calls only */
  sqlite3_stmt *ins;      /* on wdb */
  sqlite3 *rdb;           /* guarded by rmu */
  sqlite3_stmt *sel;      /* on rdb; guarded by rmu */
  pthread_mutex_t rmu;    /* guards rdb and sel; blocking-pool threads only */
  weft_chan *puts;        /* sql_put *, to the writer; closed by close */
  weft_chan *writer_done; /* closed by the writer as it returns */
} sql_store;

/* One insert waiting for its commit. Lives on the inserting coroutine's stack until done
 * carries its result. */
typedef struct sql_put {
  const pay_record *rec;
  int rc;
  weft_chan *done; /* int, capacity 1: the result */
} sql_put;

static const char schema[] =
    "PRAGMA busy_timeout=5000;" /* first: journal_mode may wait for a lock */
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=FULL;"
    "CREATE TABLE IF NOT EXISTS payments("
    " id TEXT PRIMARY KEY, amount_cents INTEGER NOT NULL,"
    " currency TEXT NOT NULL, account TEXT NOT NULL,"
    " confirmed_at TEXT NOT NULL)";

/* ---- blocking-pool side ---- */

typedef struct open_call {
  sql_store *s;
  const char *path;
  char *err;
  size_t errlen;
} open_call;

static int open_db(const char *path, sqlite3 **db, const char *sql, sqlite3_stmt **stmt)
{
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
  if (sqlite3_open_v2(path, db, flags, NULL) != SQLITE_OK)
    return -1;
  if (sqlite3_exec(*db, schema, NULL, NULL, NULL) != SQLITE_OK)
    return -1;
  return sqlite3_prepare_v2(*db, sql, -1, stmt, NULL) == SQLITE_OK ? 0 : -1;
}

static long open_blocking(void *arg)
{
  open_call *c = arg;
  sql_store *s = c->s;
  if (open_db(c->path, &s->wdb, "INSERT INTO payments VALUES (?1, ?2, ?3, ?4, ?5)", &s->ins)) {
    snprintf(c->err, c->errlen, "sqlite %s: %s", c->path, sqlite3_errmsg(s->wdb));
    return -EIO;
  }
  if (open_db(c->path, &s->rdb, "SELECT * FROM payments WHERE id = ?1", &s->sel)) {
    snprintf(c->err, c->errlen, "sqlite %s: %s", c->path, sqlite3_errmsg(s->rdb));
    return -EIO;
  }
  return 0;
}

static long close_blocking(void *arg)
{
  sql_store *s = arg;
  sqlite3_finalize(s->ins);
  sqlite3_finalize(s->sel);
  int rc = sqlite3_close(s->rdb) == SQLITE_OK ? 0 : -EIO;
  if (sqlite3_close(s->wdb) != SQLITE_OK) /* the last close checkpoints the WAL */
    rc = -EIO;
  return rc;
}

typedef struct get_call {
  sql_store *s;
  const char *id;
  pay_record *out;
} get_call;

static void copy_text(char *dst, size_t size, sqlite3_stmt *st, int col)
{
  const unsigned char *t = sqlite3_column_text(st, col);
  snprintf(dst, size, "%s", t ? (const char *)t : "");
}

static long get_blocking(void *arg)
{
  get_call *c = arg;
  sql_store *s = c->s;
  pthread_mutex_lock(&s->rmu);
  long rc = -EIO;
  sqlite3_bind_text(s->sel, 1, c->id, -1, SQLITE_STATIC);
  int step = sqlite3_step(s->sel);
  if (step == SQLITE_ROW) {
    copy_text(c->out->id, sizeof c->out->id, s->sel, 0);
    c->out->amount_cents = sqlite3_column_int64(s->sel, 1);
    copy_text(c->out->currency, sizeof c->out->currency, s->sel, 2);
    copy_text(c->out->account, sizeof c->out->account, s->sel, 3);
    copy_text(c->out->confirmed_at, sizeof c->out->confirmed_at, s->sel, 4);
    rc = 0;
  } else if (step == SQLITE_DONE) {
    rc = -ENOENT;
  }
  sqlite3_reset(s->sel);
  sqlite3_clear_bindings(s->sel);
  pthread_mutex_unlock(&s->rmu);
  return rc;
}

typedef struct batch_call {
  sql_store *s;
  sql_put **puts;
  size_t n;
} batch_call;

static int insert_one(sqlite3_stmt *st, const pay_record *r)
{
  sqlite3_bind_text(st, 1, r->id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, r->amount_cents);
  sqlite3_bind_text(st, 3, r->currency, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 4, r->account, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 5, r->confirmed_at, -1, SQLITE_STATIC);
  int step = sqlite3_step(st);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  if (step == SQLITE_DONE)
    return 0;
  return step == SQLITE_CONSTRAINT ? -EEXIST : -EIO;
}

/* One transaction for the whole batch. A duplicate id fails only its own statement; a
 * failed commit fails every insert of the batch (rolled back: nothing of it stored). */
static long batch_blocking(void *arg)
{
  batch_call *c = arg;
  sqlite3 *db = c->s->wdb;
  bool ok = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK;
  for (size_t i = 0; i < c->n; i++)
    c->puts[i]->rc = ok ? insert_one(c->s->ins, c->puts[i]->rec) : -EIO;
  if (ok && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    for (size_t i = 0; i < c->n; i++)
      c->puts[i]->rc = -EIO;
  }
  return 0;
}

/* ---- coroutine side ---- */

static void writer_main(void *arg)
{
  sql_store *s = arg;
  sql_put *batch[BATCH_MAX];
  while (weft_chan_recv(s->puts, &batch[0], WEFT_NO_DEADLINE) == 0) {
    size_t n = 1;
    while (n < BATCH_MAX && weft_chan_try_recv(s->puts, &batch[n]) == 0)
      n++;
    batch_call c = {s, batch, n};
    weft_blocking(batch_blocking, &c);
    for (size_t i = 0; i < n; i++) /* capacity 1, one send each: never parks */
      weft_chan_send(batch[i]->done, &batch[i]->rc, WEFT_NO_DEADLINE);
  }
  weft_chan_close(s->writer_done);
}

static int sql_get(pay_store *base, const char *id, pay_record *out)
{
  get_call c = {(sql_store *)base, id, out};
  return (int)weft_blocking(get_blocking, &c);
}

static int sql_insert(pay_store *base, const pay_record *rec)
{
  sql_store *s = (sql_store *)base;
  sql_put p = {.rec = rec, .rc = -EIO, .done = weft_chan_new(sizeof(int), 1)};
  if (!p.done)
    return -EIO;
  sql_put *pp = &p;
  int rc = weft_chan_send(s->puts, &pp, WEFT_NO_DEADLINE);
  if (rc == 0 && weft_chan_recv(p.done, &rc, WEFT_NO_DEADLINE) != 0)
    rc = -EIO;
  weft_chan_release(p.done);
  return rc;
}

static void sql_free(sql_store *s)
{
  weft_chan_release(s->puts);
  weft_chan_release(s->writer_done);
  pthread_mutex_destroy(&s->rmu);
  free(s);
}

static int sql_close(pay_store *base)
{
  sql_store *s = (sql_store *)base;
  weft_chan_close(s->puts); /* the writer commits what is queued, then returns */
  weft_chan_recv(s->writer_done, NULL, WEFT_NO_DEADLINE);
  int rc = (int)weft_blocking(close_blocking, s);
  sql_free(s);
  return rc;
}

static const pay_store_ops sql_ops = {.name = "sqlite",
                                      .get = sql_get,
                                      .insert = sql_insert,
                                      .close = sql_close}; /* no claims: one process */

int pay_store_sqlite_open(const char *path, pay_store **out, char *err, size_t errlen)
{
  sql_store *s = calloc(1, sizeof *s);
  if (!s)
    return -ENOMEM;
  s->base.ops = &sql_ops;
  pthread_mutex_init(&s->rmu, NULL);
  s->puts = weft_chan_new(sizeof(sql_put *), PUTS_CAP);
  s->writer_done = weft_chan_new(1, 0);
  if (!s->puts || !s->writer_done) {
    snprintf(err, errlen, "out of memory");
    sql_free(s);
    return -ENOMEM;
  }
  open_call c = {s, path, err, errlen};
  long rc = weft_blocking(open_blocking, &c);
  if (rc == 0)
    rc = weft_go_named(writer_main, s, "paymentd sqlite writer");
  if (rc != 0) {
    weft_blocking(close_blocking, s);
    sql_free(s);
    return (int)rc;
  }
  *out = &s->base;
  return 0;
}
