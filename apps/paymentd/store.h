/* store.h: where paymentd keeps confirmed payments, behind a small vtable: memory,
 * SQLite, and PostgreSQL (store_pg.c, in builds that found libpq).
 *
 * A store holds at most one confirmed record per id and never changes a record once
 * confirmed. insert (and complete) return only once the record is durable (SQLite:
 * committed with synchronous=FULL; PostgreSQL: committed with synchronous_commit=on),
 * which is what lets the API answer 200 after it. Every operation is called from
 * coroutines and may park, but none may block a scheduler thread: a store that makes
 * blocking calls runs them through weft_blocking.
 *
 * Claims: how several processes share one store. The memory and SQLite stores belong to
 * one process, whose in-flight set (worker.c) alone keeps two jobs of one id apart; they
 * leave claim, complete and drop NULL and worker.c uses get + insert. A store shared by
 * processes (PostgreSQL) lets the database decide instead: a worker first claims the id,
 * which either
 *   - succeeds: the store now holds a pending row for the id, owned by the claim's token
 *     until its lease ends; the worker processes the job, then completes the claim (the
 *     row becomes confirmed, durably) or, when the job fails, drops it (the row goes);
 *   - finds the id confirmed: the stored record (replayed or conflict, as values say);
 *   - finds it pending under another live claim: -EBUSY, 409 in_progress.
 * A pending row whose lease has ended belongs to a process that died mid-job: the next
 * claim takes it over. The lease is far longer than any job may run (pay_store_options),
 * so a live job never loses its claim unless the store was tampered with; complete tells
 * it (-ESTALE) and the worker answers from what is stored. get sees confirmed rows only. */
#ifndef PAYMENTD_STORE_H
#define PAYMENTD_STORE_H

#include <stddef.h>
#include <stdint.h>

#define PAY_ID_MAX       64  /* characters of [A-Za-z0-9_-] */
#define PAY_ACCOUNT_MAX  64  /* Unicode code points */
#define PAY_ACCOUNT_SIZE 257 /* bytes: 64 code points of up to 4 bytes, and the NUL */

/* One confirmed payment (or, before it is stored, a request for one). */
typedef struct pay_record {
  char id[PAY_ID_MAX + 1];
  int64_t amount_cents; /* 1..1e12 */
  char currency[4];     /* three upper-case letters */
  char account[PAY_ACCOUNT_SIZE];
  char confirmed_at[40]; /* RFC 3339 UTC with fractional seconds; "" before storing */
} pay_record;

typedef struct pay_store pay_store;

#define PAY_CLAIM_TOKEN_SIZE 33 /* 32 hex digits and the NUL */

/* A claim on one id (see the top of this file); written by claim, read by complete and
 * drop. Lives with the job that made it. */
typedef struct pay_claim {
  char id[PAY_ID_MAX + 1];          /* the id claimed */
  char token[PAY_CLAIM_TOKEN_SIZE]; /* random, unique to this claim */
} pay_claim;

/* The operations of a store. Coroutine, may park (never blocks its thread). */
typedef struct pay_store_ops {
  const char *name; /* "memory", "sqlite", "postgres" */
  /* get: copy the record of id into *out. 0, -ENOENT when none, -EIO (store failure). */
  int (*get)(pay_store *s, const char *id, pay_record *out);
  /* insert: store rec durably. 0 once durable, -EEXIST when id is already stored (nothing
   * changed), -EIO when the store failed (nothing stored), -EPIPE once closing. */
  int (*insert)(pay_store *s, const pay_record *rec);
  /* close: wait for inserts in progress, flush, free s. 0 or -EIO. Call once, after the
   * last get and insert have returned. */
  int (*close)(pay_store *s);
  /* claim, complete, drop: all three or none (NULL); see the top of this file.
   * claim: claim req->id for req's values. 0 with *c filled: claimed. -EEXIST with *stored the
   * confirmed record. -EBUSY: pending under another live claim. -EIO (store failure, nothing
   * claimed). */
  int (*claim)(pay_store *s, const pay_record *req, pay_claim *c, pay_record *stored);
  /* complete: confirm c's id with rec (its values and confirmed_at). 0 once
   * durable; -ESTALE when the claim was lost (nothing changed by this call); -EIO when
   * the store failed (the claim still stands until dropped or its lease ends). */
  int (*complete)(pay_store *s, const pay_claim *c, const pay_record *rec);
  /* drop: give the claim up (the pending row goes), best effort: a failure leaves the row
   * to the end of its lease. Never touches a confirmed row. */
  void (*drop)(pay_store *s, const pay_claim *c);
} pay_store_ops;

/* Every store begins with this header. */
struct pay_store {
  const pay_store_ops *ops;
};

/* What a store sizes itself by (the memory and SQLite stores need neither). */
typedef struct pay_store_options {
  int conns;     /* connections at most (PostgreSQL) */
  int64_t lease; /* ns a claim holds its id before another process may take it over */
} pay_store_options;

/* pay_store_open: open the store named by spec ("memory:", "sqlite:PATH", or a
 * postgres:// or postgresql:// URL). On failure writes a one-line reason into err.
 * Returns 0, -EINVAL (bad spec), -ENOTSUP (PostgreSQL not in this build), -EIO,
 * -WEFT_EDBCONN (no connection) or -ENOMEM. Coroutine, may park. */
int pay_store_open(const char *spec, const pay_store_options *o, pay_store **out, char *err,
                   size_t errlen);
int pay_store_memory_open(pay_store **out);
int pay_store_sqlite_open(const char *path, pay_store **out, char *err, size_t errlen);
int pay_store_pg_open(const char *url, const pay_store_options *o, pay_store **out, char *err,
                      size_t errlen);

#endif
