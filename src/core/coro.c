/* coro.c: coroutine records: spawn, first run, exit, the registry of live coroutines,
 * and the calls a coroutine makes about itself (id, name, sleep).
 *
 * A record is allocated at spawn; its stack only when it first runs (a burst of short
 * coroutines then needs few stacks, all warm from the worker's cache). Records and stacks
 * of exited coroutines are recycled through the worker that ran the exit.
 *
 * Invariants: a coroutine is in the registry of the worker that first ran it from then
 * until weft__coro_destroy (before its first run it is only in a run queue);
 * weft__live_coroutines() counts every coroutine spawned and not yet returned. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/sanitizer.h"
#include "core/sched.h"
#include "weft/runtime.h"

#if WEFT_ASAN
#include <sanitizer/asan_interface.h>
#endif

#define FREE_CORO_MAX   256 /* recycled records kept per worker */
#define FREE_CORO_BATCH 128 /* moved at once to or from the global pool */

/* ---- registry ---- */

void weft__registry_init(struct registry *r)
{
  atomic_init(&r->lock.held, 0);
  r->head.reg_next = r->head.reg_prev = &r->head;
}

void weft__registry_add(struct registry *r, struct coro *c)
{
  c->reg = r;
  spin_lock(&r->lock);
  c->reg_next = &r->head;
  c->reg_prev = r->head.reg_prev;
  r->head.reg_prev->reg_next = c;
  r->head.reg_prev = c;
  spin_unlock(&r->lock);
}

void weft__registry_remove(struct coro *c)
{
  struct registry *r = c->reg;
  if (!r)
    return; /* never ran */
  spin_lock(&r->lock);
  c->reg_prev->reg_next = c->reg_next;
  c->reg_next->reg_prev = c->reg_prev;
  c->reg_next = c->reg_prev = NULL;
  c->reg = NULL;
  spin_unlock(&r->lock);
}

/* ---- records ---- */

/* Records of exited coroutines are kept for reuse, never returned to malloc while the
 * runtime runs (as Go keeps its g's): a warm record costs no page faults. Each worker
 * caches up to FREE_CORO_MAX; beyond that, and when a cache runs dry, FREE_CORO_BATCH
 * records move at once between the cache and the global pool. */
static struct {
  spinlock lock; /* guards head; a leaf lock */
  struct coro *head;
  atomic_bool stocked; /* head != NULL: a lock-free peek for coro_alloc; written under lock
                          (relaxed: a stale answer only costs a malloc or a lock) */
} record_pool;

static void pool_changed_locked(void)
{
  atomic_store_explicit(&record_pool.stocked, record_pool.head != NULL, memory_order_relaxed);
}

/* Move up to n records from *from (count *nfrom) to the front of *to. */
static int move_records(struct coro **from, int *nfrom, struct coro **to, int n)
{
  int moved = 0;
  while (*from && moved < n) {
    struct coro *c = *from;
    *from = c->next;
    c->next = *to;
    *to = c;
    moved++;
  }
  if (nfrom)
    *nfrom -= moved;
  return moved;
}

static struct coro *coro_alloc(struct worker *w)
{
  struct coro *c;
  if (w && !w->free_coros && atomic_load_explicit(&record_pool.stocked, memory_order_relaxed)) {
    spin_lock(&record_pool.lock);
    w->nfree_coros += move_records(&record_pool.head, NULL, &w->free_coros, FREE_CORO_BATCH);
    pool_changed_locked();
    spin_unlock(&record_pool.lock);
  }
  if (w && w->free_coros) {
    c = w->free_coros;
    w->free_coros = c->next;
    w->nfree_coros--;
  } else {
    c = malloc(sizeof *c);
    if (!c)
      return NULL;
  }
  memset(c, 0, sizeof *c);
  return c;
}

static void coro_free(struct worker *w, struct coro *c)
{
  if (!w) {
    spin_lock(&record_pool.lock);
    c->next = record_pool.head;
    record_pool.head = c;
    pool_changed_locked();
    spin_unlock(&record_pool.lock);
    return;
  }
  c->next = w->free_coros;
  w->free_coros = c;
  if (++w->nfree_coros > FREE_CORO_MAX) {
    spin_lock(&record_pool.lock);
    move_records(&w->free_coros, &w->nfree_coros, &record_pool.head, FREE_CORO_BATCH);
    pool_changed_locked();
    spin_unlock(&record_pool.lock);
  }
}

/* Free the records cached by w and, once every worker has stopped, the pool's. */
void weft__coro_cache_drain(struct worker *w)
{
  while (w->free_coros) {
    struct coro *c = w->free_coros;
    w->free_coros = c->next;
    free(c);
  }
  w->nfree_coros = 0;
}

void weft__coro_pool_drain(void)
{
  spin_lock(&record_pool.lock);
  while (record_pool.head) {
    struct coro *c = record_pool.head;
    record_pool.head = c->next;
    free(c);
  }
  pool_changed_locked();
  spin_unlock(&record_pool.lock);
}

static void coro_entry(void *arg);

bool weft__coro_bind_stack(struct worker *w, struct coro *c)
{
  c->stack = weft__stack_alloc(&w->stacks, c->stack_size);
  if (!c->stack)
    return false;
  weft__registry_add(&w->reg, c);
#if WEFT_ASAN
  /* A recycled stack may still carry the poison of frames that never returned (the
   * previous owner's exit path). */
  ASAN_UNPOISON_MEMORY_REGION(c->stack->lo, c->stack->size);
#endif
#if WEFT_TSAN
  /* Created at first run, not at spawn: ThreadSanitizer counts fibers as threads (8,128
   * at most), so only coroutines that have started count against its limit. */
  c->tsan_fiber = __tsan_create_fiber(0);
#endif
  weft__ctx_make(&c->ctx, c->stack->lo, c->stack->size, coro_entry, c);
  return true;
}

/* Release what an exited (or abandoned, at shutdown) coroutine holds. w may be NULL. */
void weft__coro_release(struct worker *w, struct coro *c)
{
  weft__registry_remove(c);
  if (c->stack)
    weft__stack_free(w ? &w->stacks : NULL, c->stack);
  c->stack = NULL;
#if WEFT_TSAN
  if (c->tsan_fiber)
    __tsan_destroy_fiber(c->tsan_fiber);
#endif
  coro_free(w, c);
}

void weft__coro_destroy(struct worker *w, struct coro *c)
{
  weft__coro_release(w, c);
  if (w)
    atomic_store_explicit(&w->exited,
                          atomic_load_explicit(&w->exited, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

static void coro_entry(void *arg)
{
  struct coro *self = arg;
  weft__after_switch(self);
  self->fn(self->arg);
  weft__switch_exit(self);
}

/* ---- spawn ---- */

/* Ids are unique, not dense: each worker takes ID_BATCH at a time (as Go's goidcache),
 * so spawning does not bounce one counter between CPUs. main gets 1. */
#define ID_BATCH 16

static uint64_t next_id(struct worker *w)
{
  if (!w)
    return atomic_fetch_add_explicit(&weft__sched.next_id, 1, memory_order_relaxed);
  if (w->id_next == w->id_end) {
    w->id_next =
        atomic_fetch_add_explicit(&weft__sched.next_id, ID_BATCH, memory_order_relaxed);
    w->id_end = w->id_next + ID_BATCH;
  }
  return w->id_next++;
}

int weft_go_at(void (*fn)(void *arg), void *arg, const weft_go_options *opts, const char *file,
               int line, const char *func)
{
  struct worker *w = weft__this_worker();
  struct coro *c;

  if (!fn)
    return -EINVAL;
  if (!weft__sched.workers || atomic_load(&weft__sched.stopping))
    return -EPERM;
  c = coro_alloc(w);
  if (!c)
    return -ENOMEM;
  c->fn = fn;
  c->arg = arg;
  c->file = file;
  c->line = line;
  c->func = func;
  c->creator_pc = __builtin_return_address(0);
  c->stack_size = opts ? opts->stack_size : 0;
  if (opts && opts->name)
    snprintf(c->name, sizeof c->name, "%s", opts->name);
  c->id = next_id(w);
  atomic_init(&c->state, CORO_NEW);
  if (w)
    atomic_store_explicit(&w->spawned,
                          atomic_load_explicit(&w->spawned, memory_order_relaxed) + 1,
                          memory_order_relaxed);
  else
    atomic_fetch_add(&weft__sched.foreign_spawned, 1);
  /* Registered when it first runs, on the worker that runs it, which usually also runs
   * its exit: spawn and exit then never bounce a registry lock between CPUs. */
  weft__spawn_put(w, c);
  weft__wake_one();
  return 0;
}

/* ---- self ---- */

uint64_t weft_self_id(void)
{
  struct coro *c = weft__current();
  return c ? c->id : 0;
}

const char *weft_self_name(void)
{
  struct coro *c = weft__current();
  return c ? c->name : NULL;
}

void weft_set_name(const char *name)
{
  struct coro *c = weft__current();
  if (c)
    snprintf(c->name, sizeof c->name, "%s", name ? name : "");
}

int weft_in_coroutine(void)
{
  return weft__current() != NULL;
}

int weft_procs(void)
{
  return weft__sched.workers ? weft__sched.nworkers : 0;
}

long weft_coroutine_count(void)
{
  return weft__live_coroutines();
}

int64_t weft_now(void)
{
  return now_ns();
}

/* ---- sleep ---- */

static void sleep_timer_fired(struct timer *t)
{
  weft__ready(t->arg);
}

/* Commit step of a sleep: arm the timer now that the coroutine is off its stack. */
static bool sleep_commit(struct coro *c, void *arg)
{
  int64_t *deadline = arg;
  c->sleep_timer.fn = sleep_timer_fired;
  c->sleep_timer.arg = c;
  return weft__timer_start(&c->sleep_timer, *deadline) == 0;
}

void weft_sleep_until(int64_t deadline)
{
  struct coro *self = weft__current();
  if (!self) {
    int64_t now = now_ns();
    if (deadline > now) {
      struct timespec ts = {(time_t)((deadline - now) / 1000000000),
                            (long)((deadline - now) % 1000000000)};
      while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
      }
    }
    return;
  }
  if (deadline <= now_ns()) {
    weft_yield();
    return;
  }
  weft__park("sleep", sleep_commit, &deadline);
  weft__timer_stop(&self->sleep_timer); /* waits for the callback to be done with the timer */
}

void weft_sleep(int64_t ns)
{
  if (ns <= 0) {
    weft_yield();
    return;
  }
  weft_sleep_until(now_ns() + ns);
}

long weft__live_coroutines(void)
{
  long n = atomic_load(&weft__sched.foreign_spawned);
  for (int i = 0; weft__sched.workers && i < weft__sched.nworkers; i++)
    n += atomic_load_explicit(&weft__sched.workers[i].spawned, memory_order_relaxed) -
         atomic_load_explicit(&weft__sched.workers[i].exited, memory_order_relaxed);
  return n;
}
