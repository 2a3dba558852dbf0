/* offsets.c: the per-partition acknowledgment tracker (offsets.h has the picture and the
 * invariants). Hand-out appends at the ring's tail; an ack finds its entry by binary
 * search (the ring is sorted) and pops every acked entry at the front, so each offset
 * costs O(log n) once and the ring holds only the window between L and next. */
#include "offsets.h"

#include <errno.h>
#include <stdlib.h>

void etl_offsets_init(etl_offsets *t)
{
  *t = (etl_offsets){.next = -1, .committed = -1};
}

void etl_offsets_free(etl_offsets *t)
{
  free(t->ring);
  free(t->acked);
  etl_offsets_init(t);
}

static size_t slot(const etl_offsets *t, size_t i)
{
  return (t->head + i) & (t->cap - 1);
}

/* grow: double the ring, copying the window to the front of the new one. */
static int grow(etl_offsets *t)
{
  size_t cap = t->cap ? t->cap * 2 : 64;
  int64_t *ring = malloc(cap * sizeof *ring);
  bool *acked = malloc(cap * sizeof *acked);
  if (!ring || !acked) {
    free(ring);
    free(acked);
    return -ENOMEM;
  }
  for (size_t i = 0; i < t->len; i++) {
    ring[i] = t->ring[slot(t, i)];
    acked[i] = t->acked[slot(t, i)];
  }
  free(t->ring);
  free(t->acked);
  t->ring = ring;
  t->acked = acked;
  t->cap = cap;
  t->head = 0;
  return 0;
}

void etl_offsets_resume(etl_offsets *t, int64_t low, int64_t committed)
{
  t->next = low;
  t->committed = committed;
}

int etl_offsets_hand_out(etl_offsets *t, int64_t offset)
{
  if (offset < 0 || offset < t->next)
    return -EINVAL;
  if (t->len == t->cap && grow(t) < 0)
    return -ENOMEM;
  size_t s = slot(t, t->len++);
  t->ring[s] = offset;
  t->acked[s] = false;
  if (t->next < 0)
    t->committed = offset;
  t->next = offset + 1;
  return 0;
}

/* find: the ring index of offset, or t->len when it is not there. */
static size_t find(const etl_offsets *t, int64_t offset)
{
  size_t lo = 0, hi = t->len;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int64_t v = t->ring[slot(t, mid)];
    if (v == offset)
      return mid;
    if (v < offset)
      lo = mid + 1;
    else
      hi = mid;
  }
  return t->len;
}

bool etl_offsets_ack(etl_offsets *t, int64_t offset)
{
  size_t i = find(t, offset);
  if (i == t->len || t->acked[slot(t, i)])
    return false;
  t->acked[slot(t, i)] = true;
  while (t->len > 0 && t->acked[t->head]) { /* keep the front unacked */
    t->head = (t->head + 1) & (t->cap - 1);
    t->len--;
  }
  return true;
}

int64_t etl_offsets_low_water(const etl_offsets *t)
{
  return t->len > 0 ? t->ring[t->head] : t->next;
}

size_t etl_offsets_pending(const etl_offsets *t)
{
  size_t n = 0;
  for (size_t i = 0; i < t->len; i++)
    n += !t->acked[slot(t, i)];
  return n;
}
