/* stack.h: coroutine stacks.
 *
 * Two kinds, chosen per stack by weft__stack_alloc():
 *   guarded  its own mapping with a PROT_NONE guard page below it: an overflow faults and
 *            the SIGSEGV handler names the coroutine. Each costs two kernel map entries, so
 *            they are used while the process stays well under vm.max_map_count.
 *   arena    carved from large MAP_NORESERVE arenas with no guard page; a canary at the
 *            low end is checked at every switch away from the coroutine. Used when guards
 *            are off (WEFT_STACK_GUARD=0) or the map budget is spent: no ceiling but memory.
 * Either way memory is committed lazily by the kernel: an idle coroutine costs the pages
 * its frames touched, usually one.
 *
 * Stacks are cached per worker (owner thread only, no lock) and in a global pool. */
#ifndef WEFT_CORE_STACK_H
#define WEFT_CORE_STACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct stack {
  void *lo;           /* lowest usable byte (above the guard page; the canary if none) */
  size_t size;        /* usable bytes, from lo up to this header */
  size_t slot;        /* the size class: bytes of address space asked for */
  bool guarded;       /* has a guard page below lo */
  char *low_water;    /* lowest frame seen at a switch away: how deep it was used
                         (approximately: deeper calls between switches are not seen);
                         owner: the thread running the coroutine */
  struct stack *next; /* free-list link; guarded by the list's owner */
};

/* stack_note_depth: record that the running coroutine's frames reach down to sp. */
static inline void stack_note_depth(struct stack *s, void *sp)
{
  if ((char *)sp < s->low_water)
    s->low_water = sp;
}

#define STACK_CANARY 0x77656674c0ffee77ULL

/* A per-worker cache of free stacks; owner thread only. */
struct stack_cache {
  struct stack *head;
  int count;
};

int weft__stack_module_init(size_t default_size, int guard);
void weft__stack_module_fini(void);

/* weft__stack_alloc: a stack of at least size bytes (0: the default), from cache when it can.
 * Returns NULL when out of memory. */
struct stack *weft__stack_alloc(struct stack_cache *cache, size_t size);

/* weft__stack_free: return a stack to cache (or the global pool, or the kernel). */
void weft__stack_free(struct stack_cache *cache, struct stack *s);

/* weft__stack_cache_drain: give back every cached stack (worker exit). */
void weft__stack_cache_drain(struct stack_cache *cache);

/* stack_canary_ok: false if an unguarded stack's canary was overwritten. */
static inline bool stack_canary_ok(const struct stack *s)
{
  return s->guarded || *(const volatile uint64_t *)s->lo == STACK_CANARY;
}

/* weft__stack_guard_hit: true if addr lies in s's guard page (or canary zone). */
bool weft__stack_guard_hit(const struct stack *s, const void *addr);

long weft__stack_guarded_count(void);

#endif
