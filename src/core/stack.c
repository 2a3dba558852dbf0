/* stack.c: stack allocation (see stack.h).
 *
 * Layout, low to high addresses, for a slot of S bytes (a page multiple):
 *   guarded: [guard page][frames ..................... header]       its own mapping
 *   arena:   ..prev: [frames ... header | canary] [frames ........ header | canary]..
 *                                         ^ this stack's lo         ^ next one's lo
 * An arena stack's canary (CANARY_ZONE bytes) sits at the top of the page below its
 * slot, the page that holds the previous slot's header and is resident anyway, so the
 * canary costs no page of its own: a parked coroutine costs one page either way. An
 * arena keeps a prefix page for the first slot's canary.
 *
 * Free stacks: per-worker caches (owner only), then the global pool (pool_lock). Stacks
 * are kept for reuse, as Go keeps its heap: a warm stack costs no page faults. Before a
 * stack enters the pool, the pages below its top page are given back (MADV_DONTNEED) if
 * its coroutine was seen using them (low_water), so a pooled stack costs about a page.
 * Guarded stacks beyond POOL_MAX are unmapped; arena slices cannot be, and are kept.
 * Pools and arenas live as long as the process (see weft__stack_module_init). */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/sanitizer.h"
#include "core/spinlock.h"
#include "core/stack.h"

#define CACHE_MAX   32          /* stacks kept per worker */
#define POOL_MAX    65536       /* guarded default-size stacks kept globally */
#define CANARY_ZONE 64          /* bytes below an arena slot holding its canary */
#define ARENA_BYTES (1ul << 30) /* address space per arena (NORESERVE) */

struct arena {
  struct arena *next;
  char *base, *cur, *end;
};

/* Bytes of stack memory mapped (guarded stacks and arenas), for weft_runtime_stats. */
static atomic_long mapped_bytes;

long weft__stack_mapped_bytes(void)
{
  return atomic_load_explicit(&mapped_bytes, memory_order_relaxed);
}

static size_t page_size;
static size_t default_size;
static int guard_enabled;
static long guarded_limit; /* guarded stacks allowed before falling back */
static atomic_long guarded_count;

static spinlock pool_lock = SPINLOCK_INIT; /* guards the pools, arenas, arena_free */
static struct stack *pool_guarded;         /* free guarded stacks of pool_size */
static int pool_guarded_count;
static struct stack *pool_arena; /* free arena stacks of pool_size */
static size_t pool_size;         /* the default size the pools were built for */
static struct stack *arena_free; /* free arena stacks of other sizes */
static struct arena *arenas;

static size_t round_pages(size_t n)
{
  return (n + page_size - 1) & ~(page_size - 1);
}

static long read_max_map_count(void)
{
  long v = 65530;
  FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
  if (f) {
    if (fscanf(f, "%ld", &v) != 1)
      v = 65530;
    fclose(f);
  }
  return v;
}

/* Move the pools of an old default size out of the way (guarded stacks unmapped, arena
 * ones to arena_free, which is searched by size); pool_lock held. */
static void flush_pools_locked(void)
{
  while (pool_guarded) {
    struct stack *s = pool_guarded;
    pool_guarded = s->next;
    size_t bytes = s->slot + page_size; /* s lives in the mapping: read it first */
    munmap((char *)s->lo - page_size, bytes);
    atomic_fetch_sub_explicit(&mapped_bytes, (long)bytes, memory_order_relaxed);
    atomic_fetch_sub(&guarded_count, 1);
  }
  pool_guarded_count = 0;
  while (pool_arena) {
    struct stack *s = pool_arena;
    pool_arena = s->next;
    s->next = arena_free;
    arena_free = s;
  }
}

/* The pools and arenas outlive a runtime: a program (or a benchmark) that runs
 * weft_main again finds its stacks warm, and a coroutine abandoned inside a blocking
 * call at shutdown keeps a valid stack for the pool thread that still writes to it. */
int weft__stack_module_init(size_t size, int guard)
{
  if (!page_size) {
    page_size = (size_t)sysconf(_SC_PAGESIZE);
    /* Each guarded stack is two map entries; leave a quarter of the budget to malloc,
     * shared libraries and the program's own mappings. */
    guarded_limit = read_max_map_count() * 3 / 8;
#if WEFT_TSAN
    /* ThreadSanitizer maps shadow for every mapping we make: leave it most of the budget. */
    guarded_limit /= 4;
#endif
  }
  default_size = round_pages(size ? size : 128 * 1024);
  if (default_size < 4 * page_size)
    default_size = 4 * page_size;
  guard_enabled = guard;
  spin_lock(&pool_lock);
  if (pool_size != default_size)
    flush_pools_locked();
  pool_size = default_size;
  spin_unlock(&pool_lock);
  return 0;
}

long weft__stack_guarded_count(void)
{
  return atomic_load(&guarded_count);
}

/* Lay out a stack whose frames span [lo, top): the header goes just below top. */
static struct stack *stack_header(char *lo, char *top, size_t slot, bool guarded)
{
  struct stack *s = (struct stack *)(top - sizeof(struct stack));
  s->lo = lo;
  s->size = (size_t)((char *)s - lo);
  s->slot = slot;
  s->guarded = guarded;
  s->low_water = (char *)s;
  s->next = NULL;
  if (!guarded)
    *(uint64_t *)lo = STACK_CANARY;
  return s;
}

/* Take one guarded stack out of the budget; false when it is spent. A CAS rather than a
 * load and a later increment, so that workers allocating at once never overshoot it. */
static bool reserve_guarded(void)
{
  long n = atomic_load(&guarded_count);
  while (n < guarded_limit)
    if (atomic_compare_exchange_weak(&guarded_count, &n, n + 1))
      return true;
  return false;
}

/* A guarded stack; the caller has reserved it (reserve_guarded). */
static struct stack *alloc_guarded(size_t usable)
{
  char *p = mmap(NULL, usable + page_size, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
  if (p == MAP_FAILED)
    goto err_unreserve;
  atomic_fetch_add_explicit(&mapped_bytes, (long)(usable + page_size), memory_order_relaxed);
  if (mprotect(p, page_size, PROT_NONE) != 0)
    goto err_unmap;
  return stack_header(p + page_size, p + page_size + usable, usable, true);

err_unmap:
  munmap(p, usable + page_size);
  atomic_fetch_sub_explicit(&mapped_bytes, (long)(usable + page_size), memory_order_relaxed);
err_unreserve:
  atomic_fetch_sub(&guarded_count, 1);
  return NULL;
}

/* Carve usable bytes from the current arena; pool_lock held. */
static struct stack *alloc_arena_locked(size_t usable)
{
  if (!arenas || (size_t)(arenas->end - arenas->cur) < usable) {
    struct arena *a = malloc(sizeof *a);
    size_t bytes = usable + page_size > ARENA_BYTES ? usable + page_size : ARENA_BYTES;
    char *p = a ? mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
                : MAP_FAILED;
    if (p == MAP_FAILED) {
      free(a);
      return NULL;
    }
    atomic_fetch_add_explicit(&mapped_bytes, (long)bytes, memory_order_relaxed);
    a->base = p;
    a->cur = p + page_size; /* the prefix page holds the first slot's canary */
    a->end = p + bytes;
    a->next = arenas;
    arenas = a;
  }
  char *slot = arenas->cur;
  arenas->cur += usable;
  return stack_header(slot - CANARY_ZONE, slot + usable - CANARY_ZONE, usable, false);
}

/* A free stack of the given slot size from the pools; pool_lock held. */
static struct stack *pool_take_locked(size_t usable, bool guarded)
{
  struct stack *s, **head = guarded ? &pool_guarded : &pool_arena;
  if (usable == pool_size) {
    s = *head;
    if (s) {
      *head = s->next;
      pool_guarded_count -= guarded;
      s->next = NULL;
    }
    return s;
  }
  if (guarded)
    return NULL;
  for (struct stack **pp = &arena_free; *pp; pp = &(*pp)->next) {
    s = *pp;
    if (s->slot == usable) {
      *pp = s->next;
      s->next = NULL;
      return s;
    }
  }
  return NULL;
}

/* Refill an empty cache with up to CACHE_MAX / 2 default-size stacks from the pools, in
 * one lock: guarded ones first when guards are on, then arena ones. */
static void cache_refill(struct stack_cache *cache)
{
  spin_lock(&pool_lock);
  while (cache->count < CACHE_MAX / 2) {
    struct stack *s = guard_enabled ? pool_take_locked(default_size, true) : NULL;
    if (!s && !(s = pool_take_locked(default_size, false)))
      break;
    s->next = cache->head;
    cache->head = s;
    cache->count++;
  }
  spin_unlock(&pool_lock);
}

struct stack *weft__stack_alloc(struct stack_cache *cache, size_t size)
{
  size_t usable = size ? round_pages(size) : default_size;
  struct stack *s;

  if (usable == default_size && cache) {
    if (!cache->head && pool_size == default_size)
      cache_refill(cache);
    if (cache->head) {
      s = cache->head;
      cache->head = s->next;
      cache->count--;
      s->next = NULL;
      return s;
    }
  }
  spin_lock(&pool_lock);
  s = guard_enabled ? pool_take_locked(usable, true) : NULL;
  spin_unlock(&pool_lock);
  if (s)
    return s;
  if (guard_enabled && reserve_guarded()) {
    s = alloc_guarded(usable);
    if (s)
      return s;
  }
  spin_lock(&pool_lock);
  s = pool_take_locked(usable, false);
  if (!s)
    s = alloc_arena_locked(usable);
  spin_unlock(&pool_lock);
  return s;
}

static void release_guarded(struct stack *s)
{
  size_t bytes = s->slot + page_size; /* s lives in the mapping: read it first */
  munmap((char *)s->lo - page_size, bytes);
  atomic_fetch_sub_explicit(&mapped_bytes, (long)bytes, memory_order_relaxed);
  atomic_fetch_sub(&guarded_count, 1);
}

/* Give back the pages below the top page if the coroutine was seen using them. The
 * canary of an arena stack lives in the page below its slot, which is not touched. */
static void trim_stack(struct stack *s)
{
  uintptr_t first = ((uintptr_t)s->lo + page_size - 1) & ~(uintptr_t)(page_size - 1);
  uintptr_t top_page = (uintptr_t)s & ~(uintptr_t)(page_size - 1);
  if ((uintptr_t)s->low_water < top_page && top_page > first)
    madvise((void *)first, top_page - first, MADV_DONTNEED);
  s->low_water = (char *)s;
}

/* Put s in its pool; pool_lock held. Returns s if it must be unmapped instead. */
static struct stack *pool_put_locked(struct stack *s)
{
  if (s->slot == pool_size && s->guarded && pool_guarded_count < POOL_MAX) {
    s->next = pool_guarded;
    pool_guarded = s;
    pool_guarded_count++;
    return NULL;
  }
  if (s->slot == pool_size && !s->guarded) {
    s->next = pool_arena;
    pool_arena = s;
    return NULL;
  }
  if (!s->guarded) {
    s->next = arena_free; /* arena slices cannot be unmapped one by one */
    arena_free = s;
    return NULL;
  }
  return s;
}

/* Give a list of stacks (linked through next) to the pools under one lock. */
static void pool_put_list(struct stack *list)
{
  struct stack *unmap = NULL;
  for (struct stack *s = list; s; s = s->next)
    trim_stack(s);
  spin_lock(&pool_lock);
  while (list) {
    struct stack *s = list;
    list = s->next;
    if (pool_put_locked(s)) {
      s->next = unmap;
      unmap = s;
    }
  }
  spin_unlock(&pool_lock);
  while (unmap) {
    struct stack *s = unmap;
    unmap = s->next;
    release_guarded(s);
  }
}

/* A full cache gives half of itself to the pools at once (one lock per CACHE_MAX / 2
 * stacks, as Go's stack caches do). */
void weft__stack_free(struct stack_cache *cache, struct stack *s)
{
  s->next = NULL;
  if (s->slot != default_size || !cache) {
    pool_put_list(s);
    return;
  }
  s->next = cache->head;
  cache->head = s;
  if (++cache->count <= CACHE_MAX)
    return;
  struct stack *half = cache->head, *last = half;
  for (int k = 1; k < CACHE_MAX / 2; k++)
    last = last->next;
  cache->head = last->next;
  last->next = NULL;
  cache->count -= CACHE_MAX / 2;
  pool_put_list(half);
}

void weft__stack_cache_drain(struct stack_cache *cache)
{
  while (cache->head) {
    struct stack *s = cache->head;
    cache->head = s->next;
    cache->count--;
    weft__stack_free(NULL, s);
  }
}

bool weft__stack_guard_hit(const struct stack *s, const void *addr)
{
  const char *a = addr, *lo = s->lo;
  if (s->guarded)
    return a >= lo - page_size && a < lo;
  return a >= lo - 4096 && a < lo + 64;
}

/* The runtime stopped: the caches were drained into the pools, which stay (see
 * weft__stack_module_init). */
void weft__stack_module_fini(void)
{
}
