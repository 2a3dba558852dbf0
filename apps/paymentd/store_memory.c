/* store_memory.c: the "memory:" store, a hash table of records for tests, trials and
 * benchmarks. "Durable" here means only "in the table": the records go with the process.
 *
 * The table is open-addressed (linear probing) and doubles when three quarters full, so a
 * lookup stays a few probes however many records a run confirms; a tag per slot lets a
 * probe pass other records without reading them. Records are packed (the id and account
 * strings after the numbers, confirmed_at kept as numbers) and carved from large chunks:
 * about 50 bytes for a typical record, an eighth of a pay_record's fixed size, which is
 * what a benchmark's millions of records cost.
 *
 * Invariants: every slot is empty (NULL, tag 0) or points to a record, whose hash is its
 * id's and whose tag_of(hash) is the slot's tag; records are never removed before close,
 * so a probe ends at the first empty slot; a record never changes once linked. Everything is
 * guarded by mu, held only for a lookup, an insertion or a resize (never across a park). */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <weft/sync.h>

#include "store.h"
#include "timestamp.h"

#define MEM_INITIAL_SLOTS 4096 /* a power of two */

typedef struct mem_rec {
  int64_t amount_cents;
  int64_t confirmed_sec; /* confirmed_at, parsed: seconds since the epoch */
  int32_t confirmed_usec;
  uint32_t hash; /* of the id (its low bits), kept for probes and growth */
  char currency[4];
  char text[]; /* id and account: two NUL-terminated strings */
} mem_rec;

/* Records are carved from chunks that live until close: no per-record malloc header. */
#define MEM_CHUNK_SIZE (256 * 1024)
typedef struct mem_chunk {
  struct mem_chunk *prev;
  size_t used; /* bytes of data handed out */
  _Alignas(8) char data[MEM_CHUNK_SIZE];
} mem_chunk;

typedef struct mem_store {
  pay_store base;
  weft_mutex mu;     /* guards everything below */
  mem_rec **slots;   /* nslots of them; NULL: empty */
  uint16_t *tags;    /* per slot: 0 empty, else tag_of(the record's hash) */
  size_t nslots;     /* a power of two */
  size_t used;       /* records held; <= nslots * 3 / 4 */
  mem_chunk *chunks; /* the newest first */
} mem_store;

static uint32_t hash_id(const char *id)
{
  uint64_t h = 14695981039346656037u; /* FNV-1a */
  for (; *id; id++)
    h = (h ^ (unsigned char)*id) * 1099511628211u;
  return (uint32_t)(h ^ (h >> 32));
}

/* 16 more bits of the hash than the slot index uses, never 0: a probe passes a slot of
 * another tag without reading its record (a cache miss per record otherwise; a miss runs
 * through several full slots at three quarters' load). */
static uint16_t tag_of(uint32_t h)
{
  return (uint16_t)((h >> 16) | 1);
}

/* The index of the slot holding id, or of the empty slot where it would go. */
static size_t probe_locked(mem_store *m, uint32_t h, const char *id)
{
  size_t mask = m->nslots - 1;
  uint16_t tag = tag_of(h);
  for (size_t i = h & mask;; i = (i + 1) & mask) {
    uint16_t t = m->tags[i];
    if (t == 0 || (t == tag && m->slots[i]->hash == h && strcmp(m->slots[i]->text, id) == 0))
      return i;
  }
}

/* Double the table. -ENOMEM leaves it as it was. */
static int grow_locked(mem_store *m)
{
  size_t n = m->nslots * 2, mask = n - 1;
  mem_rec **slots = calloc(n, sizeof *slots);
  uint16_t *tags = calloc(n, sizeof *tags);
  if (!slots || !tags) {
    free(slots);
    free(tags);
    return -ENOMEM;
  }
  for (size_t i = 0; i < m->nslots; i++) {
    mem_rec *r = m->slots[i];
    if (!r)
      continue;
    size_t j = r->hash & mask;
    while (tags[j])
      j = (j + 1) & mask;
    slots[j] = r;
    tags[j] = tag_of(r->hash);
  }
  free(m->slots);
  free(m->tags);
  m->slots = slots;
  m->tags = tags;
  m->nslots = n;
  return 0;
}

static void *alloc_locked(mem_store *m, size_t size)
{
  size = (size + 7) & ~(size_t)7;
  mem_chunk *c = m->chunks;
  if (!c || MEM_CHUNK_SIZE - c->used < size) {
    if (!(c = malloc(sizeof *c)))
      return NULL;
    c->prev = m->chunks, c->used = 0;
    m->chunks = c;
  }
  void *p = c->data + c->used;
  c->used += size;
  return p;
}

static void unpack(const mem_rec *p, pay_record *r)
{
  const char *id = p->text, *account = id + strlen(id) + 1;
  r->amount_cents = p->amount_cents;
  memcpy(r->currency, p->currency, sizeof r->currency);
  strcpy(r->id, id);
  strcpy(r->account, account);
  pay_timestamp_format(p->confirmed_sec, p->confirmed_usec, r->confirmed_at);
}

static int mem_get(pay_store *s, const char *id, pay_record *out)
{
  mem_store *m = (mem_store *)s;
  uint32_t h = hash_id(id);
  weft_mutex_lock(&m->mu);
  mem_rec *r = m->slots[probe_locked(m, h, id)];
  if (r)
    unpack(r, out);
  weft_mutex_unlock(&m->mu);
  return r ? 0 : -ENOENT;
}

static int mem_insert(pay_store *s, const pay_record *rec)
{
  mem_store *m = (mem_store *)s;
  int64_t sec;
  int32_t usec;
  if (!pay_timestamp_parse(rec->confirmed_at, &sec, &usec))
    return -EIO; /* not a time this store can keep */
  size_t id = strlen(rec->id) + 1, account = strlen(rec->account) + 1;
  uint32_t h = hash_id(rec->id);
  int rc = 0;
  weft_mutex_lock(&m->mu);
  if ((m->used + 1) * 4 > m->nslots * 3)
    rc = grow_locked(m) ? -EIO : 0;
  size_t slot = rc ? 0 : probe_locked(m, h, rec->id);
  mem_rec *p = NULL;
  if (!rc && m->slots[slot])
    rc = -EEXIST;
  else if (!rc && !(p = alloc_locked(m, sizeof *p + id + account)))
    rc = -EIO;
  if (p) {
    *p = (mem_rec){.amount_cents = rec->amount_cents,
                   .confirmed_sec = sec,
                   .confirmed_usec = usec,
                   .hash = h};
    memcpy(p->currency, rec->currency, sizeof p->currency);
    memcpy(p->text, rec->id, id);
    memcpy(p->text + id, rec->account, account);
    m->slots[slot] = p;
    m->tags[slot] = tag_of(h);
    m->used++;
  }
  weft_mutex_unlock(&m->mu);
  return rc;
}

static int mem_close(pay_store *s)
{
  mem_store *m = (mem_store *)s;
  for (mem_chunk *c = m->chunks, *prev; c; c = prev) {
    prev = c->prev;
    free(c);
  }
  free(m->slots);
  free(m->tags);
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
  mem_rec **slots = calloc(MEM_INITIAL_SLOTS, sizeof *slots);
  uint16_t *tags = calloc(MEM_INITIAL_SLOTS, sizeof *tags);
  if (!m || !slots || !tags) {
    free(m);
    free(slots);
    free(tags);
    return -ENOMEM;
  }
  m->tags = tags;
  m->base.ops = &mem_ops;
  weft_mutex_init(&m->mu);
  m->slots = slots;
  m->nslots = MEM_INITIAL_SLOTS;
  *out = &m->base;
  return 0;
}
