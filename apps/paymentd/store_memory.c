/* store_memory.c: the "memory:" store, a hash table of records for tests, trials and
 * benchmarks. "Durable" here means only "in the table": the records go with the process.
 *
 * The table is split into SHARDS by the ids' hash, each with its own lock: a doubling
 * (which rehashes every record of its shard while holding the lock) then stalls 1/64 of
 * the requests for 1/64 of the time; one table of 1.5 million records stalled them all for
 * ~100 ms, and p99 with them. Each shard is open-addressed (linear probing) and doubles
 * when three quarters full, so a lookup stays a few probes however many records a run
 * confirms. A slot is 6 bytes: a 32-bit reference to its record (chunk number and
 * offset) and a 16-bit tag from the id's hash, which lets a probe pass other records
 * without reading them. Records are packed (a 19-byte head of numbers, confirmed_at kept
 * as one, then the id and account strings, no padding) and carved from 256 KiB chunks
 * shared by the shards: about 55 bytes for a typical record, a seventh of a pay_record's
 * fixed size, which is what a benchmark's millions of records cost. The references limit
 * the store to 16,384 chunks (4 GiB of records, some 70 million); past that an insertion
 * fails (500 store_error).
 *
 * Invariants: a slot is empty (tag 0) or refers to a record whose id hashes to its shard
 * and to the slot's tag; records are never removed before close, so a probe ends at the
 * first empty slot; a record never changes once linked. A shard's fields are guarded by
 * its mu; the chunk allocator's by alloc_mu, taken under a shard's mu and never the other
 * way. chunks[] never moves (it has room for every chunk), and a chunk's pointer is stored
 * before any reference to it is published under a shard's lock, so readers holding that
 * lock see it. Locks are held only for a lookup, an insertion or a resize (never across a
 * park). */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <weft/sync.h>

#include "store.h"
#include "timestamp.h"

#define SHARD_BITS    6 /* the hash's top bits pick the shard */
#define SHARDS        (1 << SHARD_BITS)
#define INITIAL_SLOTS 64 /* per shard (4,096 in all); a power of two */

/* A record is its head, packed (REC_HEAD bytes, no padding), then its id and account as
 * two NUL-terminated strings. Records sit byte after byte in their chunk, so the head is
 * read and written with memcpy. */
struct rec_head {
  int64_t amount_cents;
  int64_t confirmed_us; /* confirmed_at, parsed: microseconds since the epoch */
  char currency[3];     /* no NUL */
};
#define REC_HEAD (2 * sizeof(int64_t) + 3)
_Static_assert(offsetof(struct rec_head, currency) + 3 == REC_HEAD, "the head's packed size");

/* Chunks: a record's reference is its chunk's number << CHUNK_BITS | its offset. */
#define CHUNK_BITS 18
#define CHUNK_SIZE ((size_t)1 << CHUNK_BITS)
#define MAX_CHUNKS ((size_t)1 << (32 - CHUNK_BITS))

typedef struct mem_shard {
  weft_mutex mu;  /* guards the fields below */
  uint32_t *refs; /* nslots of them: a record's reference where the tag is not 0 */
  uint16_t *tags; /* nslots of them: 0 empty, else tag_of(the record's id hash) */
  size_t nslots;  /* a power of two */
  size_t used;    /* records held; <= nslots * 3 / 4 */
} mem_shard;

typedef struct mem_store {
  pay_store base;
  mem_shard shards[SHARDS];
  weft_mutex alloc_mu; /* guards nchunks and fill; below every shard's mu */
  char **chunks;       /* MAX_CHUNKS pointers, nchunks of them set; never moves */
  size_t nchunks;      /* chunks allocated, the last one being filled */
  size_t fill;         /* bytes handed out of the last chunk */
} mem_store;

static uint32_t hash_id(const char *id)
{
  uint64_t h = 14695981039346656037u; /* FNV-1a */
  for (; *id; id++)
    h = (h ^ (unsigned char)*id) * 1099511628211u;
  return (uint32_t)(h ^ (h >> 32));
}

/* The shard: the hash's top SHARD_BITS (the slot index uses the low ones). */
static mem_shard *shard_of(mem_store *m, uint32_t h)
{
  return &m->shards[h >> (32 - SHARD_BITS)];
}

/* 16 bits of the hash beside the slot index's, never 0: a probe passes a slot of another
 * tag without reading its record (a cache miss per record otherwise; a miss runs through
 * several full slots at three quarters' load). */
static uint16_t tag_of(uint32_t h)
{
  return (uint16_t)((h >> 10) | 1);
}

static const char *rec_at(const mem_store *m, uint32_t ref)
{
  return m->chunks[ref >> CHUNK_BITS] + (ref & (CHUNK_SIZE - 1));
}

static const char *rec_id(const char *rec)
{
  return rec + REC_HEAD;
}

/* The index of the slot of s holding id, or of the empty slot where it would go. */
static size_t probe_locked(const mem_store *m, const mem_shard *s, uint32_t h, const char *id)
{
  size_t mask = s->nslots - 1;
  uint16_t tag = tag_of(h);
  for (size_t i = h & mask;; i = (i + 1) & mask) {
    uint16_t t = s->tags[i];
    if (t == 0 || (t == tag && strcmp(rec_id(rec_at(m, s->refs[i])), id) == 0))
      return i;
  }
}

/* Double s. -ENOMEM leaves it as it was. */
static int grow_locked(const mem_store *m, mem_shard *s)
{
  size_t n = s->nslots * 2, mask = n - 1;
  uint32_t *refs = malloc(n * sizeof *refs);
  uint16_t *tags = calloc(n, sizeof *tags);
  if (!refs || !tags) {
    free(refs);
    free(tags);
    return -ENOMEM;
  }
  for (size_t i = 0; i < s->nslots; i++) {
    if (!s->tags[i])
      continue;
    uint32_t h = hash_id(rec_id(rec_at(m, s->refs[i]))); /* growth is rare: no stored hash */
    size_t j = h & mask;
    while (tags[j])
      j = (j + 1) & mask;
    refs[j] = s->refs[i];
    tags[j] = tag_of(h);
  }
  free(s->refs);
  free(s->tags);
  s->refs = refs;
  s->tags = tags;
  s->nslots = n;
  return 0;
}

/* Room for size bytes (size < CHUNK_SIZE); its reference in *ref. NULL: no memory, or the
 * references are used up. Takes alloc_mu. */
static char *alloc_record(mem_store *m, size_t size, uint32_t *ref)
{
  char *p = NULL;
  weft_mutex_lock(&m->alloc_mu);
  if (m->nchunks == 0 || CHUNK_SIZE - m->fill < size) {
    char *chunk = m->nchunks < MAX_CHUNKS ? malloc(CHUNK_SIZE) : NULL;
    if (chunk) {
      m->chunks[m->nchunks++] = chunk;
      m->fill = 0;
    }
  }
  if (m->nchunks > 0 && CHUNK_SIZE - m->fill >= size) {
    *ref = (uint32_t)((m->nchunks - 1) << CHUNK_BITS | m->fill);
    p = m->chunks[m->nchunks - 1] + m->fill;
    m->fill += size;
  }
  weft_mutex_unlock(&m->alloc_mu);
  return p;
}

static void unpack(const char *p, pay_record *r)
{
  struct rec_head head;
  memcpy(&head, p, REC_HEAD);
  const char *id = rec_id(p), *account = id + strlen(id) + 1;
  r->amount_cents = head.amount_cents;
  memcpy(r->currency, head.currency, 3);
  r->currency[3] = '\0';
  strcpy(r->id, id);
  strcpy(r->account, account);
  pay_timestamp_format(head.confirmed_us / 1000000, (int32_t)(head.confirmed_us % 1000000),
                       r->confirmed_at);
}

static int mem_get(pay_store *st, const char *id, pay_record *out)
{
  mem_store *m = (mem_store *)st;
  uint32_t h = hash_id(id);
  mem_shard *s = shard_of(m, h);
  weft_mutex_lock(&s->mu);
  size_t i = probe_locked(m, s, h, id);
  bool found = s->tags[i] != 0;
  if (found)
    unpack(rec_at(m, s->refs[i]), out);
  weft_mutex_unlock(&s->mu);
  return found ? 0 : -ENOENT;
}

static int mem_insert(pay_store *st, const pay_record *rec)
{
  mem_store *m = (mem_store *)st;
  int64_t sec;
  int32_t usec;
  if (!pay_timestamp_parse(rec->confirmed_at, &sec, &usec))
    return -EIO; /* not a time this store can keep */
  size_t id = strlen(rec->id) + 1, account = strlen(rec->account) + 1;
  uint32_t h = hash_id(rec->id), ref = 0;
  mem_shard *s = shard_of(m, h);
  int rc = 0;
  weft_mutex_lock(&s->mu);
  if ((s->used + 1) * 4 > s->nslots * 3)
    rc = grow_locked(m, s) ? -EIO : 0;
  size_t slot = rc ? 0 : probe_locked(m, s, h, rec->id);
  char *p = NULL;
  if (!rc && s->tags[slot])
    rc = -EEXIST;
  else if (!rc && !(p = alloc_record(m, REC_HEAD + id + account, &ref)))
    rc = -EIO;
  if (p) {
    struct rec_head head = {.amount_cents = rec->amount_cents,
                            .confirmed_us = sec * 1000000 + usec};
    memcpy(head.currency, rec->currency, 3);
    memcpy(p, &head, REC_HEAD);
    memcpy(p + REC_HEAD, rec->id, id);
    memcpy(p + REC_HEAD + id, rec->account, account);
    s->refs[slot] = ref;
    s->tags[slot] = tag_of(h);
    s->used++;
  }
  weft_mutex_unlock(&s->mu);
  return rc;
}

static int mem_close(pay_store *st)
{
  mem_store *m = (mem_store *)st;
  for (size_t i = 0; i < m->nchunks; i++)
    free(m->chunks[i]);
  free(m->chunks);
  for (int i = 0; i < SHARDS; i++) {
    free(m->shards[i].refs);
    free(m->shards[i].tags);
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
  if (!m || !(m->chunks = calloc(MAX_CHUNKS, sizeof *m->chunks))) {
    free(m);
    return -ENOMEM;
  }
  m->base.ops = &mem_ops;
  weft_mutex_init(&m->alloc_mu);
  for (int i = 0; i < SHARDS; i++) {
    mem_shard *s = &m->shards[i];
    weft_mutex_init(&s->mu);
    s->refs = malloc(INITIAL_SLOTS * sizeof *s->refs);
    s->tags = calloc(INITIAL_SLOTS, sizeof *s->tags);
    s->nslots = INITIAL_SLOTS;
    if (!s->refs || !s->tags) {
      mem_close(&m->base);
      return -ENOMEM;
    }
  }
  *out = &m->base;
  return 0;
}
