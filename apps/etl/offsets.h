/* offsets.h: one Kafka partition's acknowledgment tracker, for the source's commits
 * (source_kafka.c).
 *
 * The source hands a partition's messages out in increasing offset order; the sink
 * acknowledges them in any order. The tracker keeps the offsets handed out and not yet
 * below the low-water mark, in a ring in hand-out order (so increasing), each with an
 * acked flag:
 *
 *   handed:  [ 40 41 42 43 44 ]   next = 45
 *   acked:      .  x  .  x  x
 *   low water mark L = 40 (the oldest unacked offset; every offset < L is acknowledged)
 *
 * Invariants: the ring's offsets strictly increase; the front entry is never acked (an
 * acked front is popped at once), so L is the front's offset, or next when the ring is
 * empty, or -1 before the first hand-out. L never decreases. Offsets that Kafka skips
 * (compaction, transaction markers) are never handed out, so they never hold L back.
 *
 * Not thread-safe: the caller serialises every call (source_kafka.c: under its mutex). */
#ifndef ETL_OFFSETS_H
#define ETL_OFFSETS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct etl_offsets {
  int64_t *ring;     /* capacity cap, the handed-out offsets from index head, len of them */
  bool *acked;       /* acked[i] for ring[i] */
  size_t head;       /* index of the oldest unacked handed-out offset */
  size_t len;        /* entries in the ring */
  size_t cap;        /* a power of two, or 0 before the first hand-out */
  int64_t next;      /* last handed-out offset + 1; -1 before the first */
  int64_t committed; /* the last low-water mark the broker confirmed, else the first
                        handed-out offset (nothing below it is ours to commit); -1
                        before the first hand-out */
} etl_offsets;

/* etl_offsets_init: an empty tracker (no allocation). */
void etl_offsets_init(etl_offsets *t);
/* etl_offsets_free: free the ring; t may be reused after etl_offsets_init. */
void etl_offsets_free(etl_offsets *t);

/* etl_offsets_resume: start an empty tracker at low (every offset below it acknowledged
 * before, by this consumer under an earlier assignment) with committed as the broker's
 * last confirmed commit (-1: unknown), so that low is committed once it is above it. */
void etl_offsets_resume(etl_offsets *t, int64_t low, int64_t committed);

/* etl_offsets_hand_out: offset was handed to the pipeline. It must exceed every offset
 * handed out before (else -EINVAL, nothing changes). 0, or -ENOMEM (nothing changes). */
int etl_offsets_hand_out(etl_offsets *t, int64_t offset);

/* etl_offsets_ack: offset is durably written. Returns true when it was pending (handed
 * out, not yet acked), false for an unknown or repeated ack (ignored). */
bool etl_offsets_ack(etl_offsets *t, int64_t offset);

/* etl_offsets_low_water: L, Kafka's "next offset to read" to commit, or -1 when nothing
 * was handed out yet. */
int64_t etl_offsets_low_water(const etl_offsets *t);

/* etl_offsets_pending: handed-out offsets not yet acknowledged at or above L. */
size_t etl_offsets_pending(const etl_offsets *t);

#endif
