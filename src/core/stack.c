/* stack.c: stack allocation (see stack.h).
 *
 * Layout of a stack of usable size S (page multiple), from low to high addresses:
 *   guarded: [guard page][S - header ............ ][struct stack]   own mapping
 *   arena:   [canary][S - header ................ ][struct stack]   slice of an arena
 * The header sits in the stack's top page, which the coroutine touches anyway.
 *
 * The global pool (pool_lock) keeps free default-size stacks beyond what the worker
 * caches hold (guarded ones up to POOL_MAX, then unmapped). Arena stacks cannot be
 * unmapped one by one: a freed one goes back to the pool (or to arena_free if its size is
 * not the default) after MADV_DONTNEED has returned its pages, so it costs no RSS. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/spinlock.h"
#include "core/stack.h"

#define CACHE_MAX   32          /* stacks kept per worker */
#define POOL_MAX    1024        /* default-size stacks kept globally */
#define ARENA_BYTES (1ul << 30) /* address space per arena (NORESERVE) */

struct arena {
  struct arena *next;
  char *base, *cur, *end;
};

static size_t page_size;
static size_t default_size;
static int guard_enabled;
static long guarded_limit; /* guarded stacks allowed before falling back */
static atomic_long guarded_count;

static spinlock pool_lock = SPINLOCK_INIT; /* guards pool, arenas, arena_free */
static struct stack *pool;                 /* free default-size stacks */
static int pool_count;
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

int stack_module_init(size_t size, int guard)
{
  page_size = (size_t)sysconf(_SC_PAGESIZE);
  default_size = round_pages(size ? size : 128 * 1024);
  if (default_size < 4 * page_size)
    default_size = 4 * page_size;
  guard_enabled = guard;
  /* Each guarded stack is two map entries; leave a quarter of the budget to malloc,
   * shared libraries and the program's own mappings. */
  guarded_limit = read_max_map_count() * 3 / 8;
  atomic_store(&guarded_count, 0);
  return 0;
}

size_t stack_default_size(void)
{
  return default_size;
}

long stack_guarded_count(void)
{
  return atomic_load(&guarded_count);
}

static struct stack *stack_header(char *lo, size_t usable, bool guarded)
{
  struct stack *s = (struct stack *)(lo + usable - sizeof(struct stack));
  s->lo = lo;
  s->size = usable - sizeof(struct stack);
  s->guarded = guarded;
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
  if (mprotect(p, page_size, PROT_NONE) != 0)
    goto err_unmap;
  return stack_header(p + page_size, usable, true);

err_unmap:
  munmap(p, usable + page_size);
err_unreserve:
  atomic_fetch_sub(&guarded_count, 1);
  return NULL;
}

/* Carve usable bytes from the current arena; pool_lock held. */
static struct stack *alloc_arena_locked(size_t usable)
{
  if (!arenas || (size_t)(arenas->end - arenas->cur) < usable) {
    struct arena *a = malloc(sizeof *a);
    size_t bytes = usable > ARENA_BYTES ? usable : ARENA_BYTES;
    char *p = a ? mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
                : MAP_FAILED;
    if (p == MAP_FAILED) {
      free(a);
      return NULL;
    }
    a->base = a->cur = p;
    a->end = p + bytes;
    a->next = arenas;
    arenas = a;
  }
  char *lo = arenas->cur;
  arenas->cur += usable;
  return stack_header(lo, usable, false);
}

static struct stack *pool_take_locked(size_t usable)
{
  struct stack *s;
  if (usable == default_size) {
    s = pool;
    if (s) {
      pool = s->next;
      pool_count--;
      s->next = NULL;
    }
    return s;
  }
  for (struct stack **pp = &arena_free; *pp; pp = &(*pp)->next) {
    s = *pp;
    if (s->size + sizeof(struct stack) == usable) {
      *pp = s->next;
      s->next = NULL;
      return s;
    }
  }
  return NULL;
}

struct stack *stack_alloc(struct stack_cache *cache, size_t size)
{
  size_t usable = size ? round_pages(size) : default_size;
  struct stack *s;

  if (usable == default_size && cache && cache->head) {
    s = cache->head;
    cache->head = s->next;
    cache->count--;
    s->next = NULL;
    return s;
  }
  spin_lock(&pool_lock);
  s = pool_take_locked(usable);
  spin_unlock(&pool_lock);
  if (s) {
    if (!s->guarded)
      *(uint64_t *)s->lo = STACK_CANARY; /* trimmed away by stack_free */
    return s;
  }
  if (guard_enabled && reserve_guarded()) {
    s = alloc_guarded(usable);
    if (s)
      return s;
  }
  spin_lock(&pool_lock);
  s = alloc_arena_locked(usable);
  spin_unlock(&pool_lock);
  return s;
}

static void release_guarded(struct stack *s)
{
  munmap((char *)s->lo - page_size, s->size + sizeof(struct stack) + page_size);
  atomic_fetch_sub(&guarded_count, 1);
}

/* Give an arena stack's pages back to the kernel, keeping the header page. The canary
 * goes with them: stack_alloc writes it again when the stack is reused, so that a free
 * stack costs one resident page, not two. */
static void trim_arena_stack(struct stack *s)
{
  size_t below_header = ((char *)s - (char *)s->lo) & ~(page_size - 1);
  if (below_header > 0)
    madvise(s->lo, below_header, MADV_DONTNEED);
}

void stack_free(struct stack_cache *cache, struct stack *s)
{
  size_t usable = s->size + sizeof(struct stack);
  bool is_default = usable == default_size;

  if (is_default && cache && cache->count < CACHE_MAX) {
    s->next = cache->head;
    cache->head = s;
    cache->count++;
    return;
  }
  if (!s->guarded)
    trim_arena_stack(s);
  spin_lock(&pool_lock);
  if (is_default && (pool_count < POOL_MAX || !s->guarded)) {
    s->next = pool;
    pool = s;
    pool_count++;
    s = NULL;
  } else if (!s->guarded) {
    s->next = arena_free; /* arena slices cannot be unmapped one by one */
    arena_free = s;
    s = NULL;
  }
  spin_unlock(&pool_lock);
  if (s)
    release_guarded(s);
}

void stack_cache_drain(struct stack_cache *cache)
{
  while (cache->head) {
    struct stack *s = cache->head;
    cache->head = s->next;
    cache->count--;
    stack_free(NULL, s);
  }
}

bool stack_guard_hit(const struct stack *s, const void *addr)
{
  const char *a = addr, *lo = s->lo;
  if (s->guarded)
    return a >= lo - page_size && a < lo;
  return a >= lo - 4096 && a < lo + 64;
}

void stack_module_fini(void)
{
  spin_lock(&pool_lock);
  while (pool) {
    struct stack *s = pool;
    pool = s->next;
    if (s->guarded)
      release_guarded(s);
  }
  pool_count = 0;
  arena_free = NULL;
  while (arenas) {
    struct arena *a = arenas;
    arenas = a->next;
    munmap(a->base, (size_t)(a->end - a->base));
    free(a);
  }
  spin_unlock(&pool_lock);
}
