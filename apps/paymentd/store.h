/* store.h: where paymentd keeps confirmed payments, behind a small vtable so that a
 * PostgreSQL store can be added beside the memory and SQLite ones.
 *
 * A store holds at most one record per id and never changes a record once inserted.
 * insert returns only once the record is durable (for SQLite: committed with
 * synchronous=FULL), which is what lets the API answer 200 after it. Every operation is
 * called from coroutines and may park, but none may block a scheduler thread: a store
 * that makes blocking calls runs them through weft_blocking. */
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

/* The operations of a store. Coroutine, may park (never blocks its thread). */
typedef struct pay_store_ops {
  const char *name; /* "memory", "sqlite" */
  /* get: copy the record of id into *out. 0, -ENOENT when none, -EIO (store failure). */
  int (*get)(pay_store *s, const char *id, pay_record *out);
  /* insert: store rec durably. 0 once durable, -EEXIST when id is already stored (nothing
   * changed), -EIO when the store failed (nothing stored), -EPIPE once closing. */
  int (*insert)(pay_store *s, const pay_record *rec);
  /* close: wait for inserts in progress, flush, free s. 0 or -EIO. Call once, after the
   * last get and insert have returned. */
  int (*close)(pay_store *s);
} pay_store_ops;

/* Every store begins with this header. */
struct pay_store {
  const pay_store_ops *ops;
};

/* pay_store_open: open the store named by spec ("memory:", "sqlite:PATH"). On failure
 * writes a one-line reason into err. Returns 0, -EINVAL (bad spec), -ENOTSUP (postgres://:
 * not in this build), -EIO or -ENOMEM. Coroutine, may park. */
int pay_store_open(const char *spec, pay_store **out, char *err, size_t errlen);
int pay_store_memory_open(pay_store **out);
int pay_store_sqlite_open(const char *path, pay_store **out, char *err, size_t errlen);

#endif
