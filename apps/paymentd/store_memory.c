/* store_memory.c: the "memory:" store, a hash table of records for tests and trials.
 * "Durable" here means only "in the table": the records go with the process.
 *
 * Invariants: buckets[h] chains the records whose id hashes to h; a record never changes
 * or leaves the table until close. All of it is guarded by mu, which is held only for a
 * lookup or an insertion (never across a park). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <weft/sync.h>

#include "store.h"

#define MEM_BUCKETS 4096

typedef struct mem_node {
  struct mem_node *next; /* guarded by mu */
  pay_record rec;        /* immutable once linked */
} mem_node;

typedef struct mem_store {
  pay_store base;
  weft_mutex mu;                  /* guards buckets */
  mem_node *buckets[MEM_BUCKETS]; /* guarded by mu */
} mem_store;

static size_t hash_id(const char *id)
{
  size_t h = 14695981039346656037u; /* FNV-1a */
  for (; *id; id++)
    h = (h ^ (unsigned char)*id) * 1099511628211u;
  return h % MEM_BUCKETS;
}

static mem_node *find_locked(mem_store *m, const char *id)
{
  for (mem_node *n = m->buckets[hash_id(id)]; n; n = n->next)
    if (strcmp(n->rec.id, id) == 0)
      return n;
  return NULL;
}

static int mem_get(pay_store *s, const char *id, pay_record *out)
{
  mem_store *m = (mem_store *)s;
  weft_mutex_lock(&m->mu);
  mem_node *n = find_locked(m, id);
  if (n)
    *out = n->rec;
  weft_mutex_unlock(&m->mu);
  return n ? 0 : -ENOENT;
}

static int mem_insert(pay_store *s, const pay_record *rec)
{
  mem_store *m = (mem_store *)s;
  mem_node *n = malloc(sizeof *n);
  if (!n)
    return -EIO;
  n->rec = *rec;
  weft_mutex_lock(&m->mu);
  int rc = find_locked(m, rec->id) ? -EEXIST : 0;
  if (rc == 0) {
    size_t h = hash_id(rec->id);
    n->next = m->buckets[h];
    m->buckets[h] = n;
  }
  weft_mutex_unlock(&m->mu);
  if (rc)
    free(n);
  return rc;
}

static int mem_close(pay_store *s)
{
  mem_store *m = (mem_store *)s;
  for (size_t i = 0; i < MEM_BUCKETS; i++)
    for (mem_node *n = m->buckets[i], *next; n; n = next) {
      next = n->next;
      free(n);
    }
  free(m);
  return 0;
}

static const pay_store_ops mem_ops = {.name = "memory",
                                      .get = mem_get,
                                      .insert = mem_insert,
                                      .close = mem_close}; /* no claims: one process */

int pay_store_memory_open(pay_store **out)
{
  mem_store *m = calloc(1, sizeof *m);
  if (!m)
    return -ENOMEM;
  m->base.ops = &mem_ops;
  weft_mutex_init(&m->mu);
  *out = &m->base;
  return 0;
}
