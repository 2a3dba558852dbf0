/* arena.c: bump allocation for the strings of one HTTP message.
 *
 * Blocks are chained newest first; reset keeps the oldest (first) block so a connection
 * serving many small requests allocates nothing after its first. */
#include <stdlib.h>
#include <string.h>

#include "net/http_internal.h"

enum { FIRST_BLOCK = 4096 };

struct arena_block {
  struct arena_block *next; /* older block */
  size_t cap;
  _Alignas(16) char data[];
};

void *weft__arena_alloc(struct arena *a, size_t n)
{
  n = (n + 15) & ~(size_t)15;
  if (!a->head || a->cap - a->used < n) {
    size_t cap = a->head ? a->head->cap * 2 : FIRST_BLOCK;
    while (cap < n)
      cap *= 2;
    struct arena_block *b = malloc(sizeof *b + cap);
    if (!b)
      return NULL;
    b->next = a->head;
    b->cap = cap;
    a->head = b;
    a->cap = cap;
    a->used = 0;
  }
  void *p = a->head->data + a->used;
  a->used += n;
  return p;
}

/* A string that arrives in pieces (one per read) grows here: copying it whole for each
 * piece would make a head sent a byte at a time cost memory quadratic in its length. */
void *weft__arena_extend(struct arena *a, void *p, size_t n, size_t m)
{
  size_t rn = (n + 15) & ~(size_t)15, rm = (m + 15) & ~(size_t)15;
  if (a->head && (char *)p + rn == a->head->data + a->used && a->cap - (a->used - rn) >= rm) {
    a->used = a->used - rn + rm;
    return p;
  }
  void *q = weft__arena_alloc(a, m);
  if (q && n)
    memcpy(q, p, n < m ? n : m);
  return q;
}

char *weft__arena_strndup(struct arena *a, const char *s, size_t n)
{
  char *d = weft__arena_alloc(a, n + 1);
  if (d) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

void weft__arena_reset(struct arena *a)
{
  struct arena_block *b = a->head;
  if (!b)
    return;
  while (b->next) {
    struct arena_block *older = b->next;
    free(b);
    b = older;
  }
  a->head = b;
  a->cap = b->cap;
  a->used = 0;
}

void weft__arena_free(struct arena *a)
{
  weft__arena_reset(a);
  free(a->head);
  *a = (struct arena){0};
}
