/* sched.c: the work-stealing scheduler: run queues, park/ready, yield, the switch, and
 * how idle workers find work, poll the network and sleep.
 *
 * Invariants:
 * - A coroutine is in at most one place: running on one worker, in one run queue (local
 *   ring, runnext slot or global queue), parked (reachable only from what it waits on),
 *   or being handed over across a switch (worker.prev).
 * - A coroutine's context is saved before anything can make it runnable: yield, park and
 *   exit record what to do in worker.prev_action, and the next context performs it
 *   (after_switch). So no thread ever resumes a half-switched coroutine.
 * - No lost wake-ups: a producer publishes work, then (seq_cst) reads nspinning and nidle;
 *   a worker going idle publishes nidle (seq_cst) and then looks at every queue once more.
 *   One of the two always sees the other.
 * - At most one worker polls the network (polling == 1) and it sleeps no later than the
 *   earliest timer of any heap (poll_until), so timers fire even when their owner is busy
 *   or asleep.
 *
 * Who calls what: weft__park, weft_yield and weft__switch_exit run on coroutine stacks;
 * weft__sched_loop on a worker's own stack; weft__ready from any thread. */
#include <errno.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/sanitizer.h"
#include "core/sched.h"
#include "weft/runtime.h"

#if WEFT_ASAN
#include <sanitizer/asan_interface.h>
#endif

struct scheduler weft__sched;

/* Consecutive runnext picks allowed before the queue head gets a turn (ping-pong pairs
 * would otherwise starve it). */
#define RUNNEXT_STREAK_MAX 32
/* Every FAIRNESS_TICKS local picks, look at the global queue, timers and the network. */
#define FAIRNESS_TICKS 61
/* Busy workers poll the network without blocking at most this often. */
#define BUSY_POLL_NS 1000000

static __thread struct worker *this_worker_tls;

/* Never inlined, so the compiler cannot keep a thread-local address across a switch:
 * after a park the coroutine may be on another thread. */
__attribute__((noinline)) struct worker *weft__this_worker(void)
{
  struct worker *w = this_worker_tls;
  __asm__ volatile("" ::: "memory");
  return w;
}

void weft__set_this_worker(struct worker *w)
{
  this_worker_tls = w;
}

struct coro *weft__current(void)
{
  struct worker *w = weft__this_worker();
  return w ? w->current : NULL;
}

/* ---- wake sources (deadlock detection) ---- */

void weft__io_waiters_add(int delta)
{
  atomic_fetch_add(&weft__sched.io_waiters, delta);
}

void weft__blocking_add(int delta)
{
  atomic_fetch_add(&weft__sched.blocking, delta);
}

void weft__signal_waiters_add(int delta)
{
  atomic_fetch_add(&weft__sched.signal_waiters, delta);
}

void weft_external_wakers(int delta)
{
  atomic_fetch_add(&weft__sched.external_wakers, delta);
}

/* ---- futex ---- */

static void futex_wait(atomic_uint *word, unsigned expected)
{
#if WEFT_TSAN
  /* ThreadSanitizer runs a signal's handler only when the receiving thread passes
   * through a call it intercepts, and the raw futex is not one: a SIGINT delivered to an
   * idle worker would wait until something woke it. Wake every 10 ms and pass through
   * usleep (intercepted) so a pending handler runs; callers loop on the word anyway. */
  struct timespec ten_ms = {0, 10 * 1000 * 1000};
  syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, expected, &ten_ms, NULL, 0);
  usleep(0);
#else
  syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
#endif
}

static void futex_wake(atomic_uint *word)
{
  syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* ---- global run queue; sched.lock ---- */

static void global_put_locked(struct coro *first, struct coro *last, long n)
{
  last->next = NULL;
  if (weft__sched.gq_tail)
    weft__sched.gq_tail->next = first;
  else
    weft__sched.gq_head = first;
  weft__sched.gq_tail = last;
  atomic_fetch_add(&weft__sched.gq_len, n);
}

void weft__global_put(struct coro *c)
{
  spin_lock(&weft__sched.lock);
  global_put_locked(c, c, 1);
  spin_unlock(&weft__sched.lock);
}

/* Coroutines spawned while their worker's ring is half full wait here, behind every
 * runnable one: a burst of spawns must not delay coroutines already woken (a timer's
 * sleeper would otherwise wait behind 100,000 unstarted coroutines). sched.lock.
 * A spawn goes to the ring while it is less than half full, else to the spawn queue. */
void weft__spawn_put(struct worker *w, struct coro *c)
{
  if (w) {
    uint32_t h = atomic_load_explicit(&w->rq_head, memory_order_relaxed);
    uint32_t t = atomic_load_explicit(&w->rq_tail, memory_order_relaxed);
    if (t - h < RUNQ_SIZE / 2) {
      weft__runq_put(w, c);
      return;
    }
  }
  c->next = NULL;
  spin_lock(&weft__sched.lock);
  if (weft__sched.sq_tail)
    weft__sched.sq_tail->next = c;
  else
    weft__sched.sq_head = c;
  weft__sched.sq_tail = c;
  atomic_fetch_add(&weft__sched.sq_len, 1);
  spin_unlock(&weft__sched.lock);
}

/* Take from the global queue, else from the spawn queue, a batch of up to len/P + 1
 * coroutines (at most GLOBAL_BATCH, and what fits in w's ring): run the first, queue the
 * rest locally. One lock per batch rather than per coroutine, as Go's globrunqget. */
#define GLOBAL_BATCH (RUNQ_SIZE / 4)

static struct coro *global_get(struct worker *w)
{
  struct scheduler *s = &weft__sched;
  struct coro *batch[GLOBAL_BATCH];
  int n = 0;
  if (atomic_load_explicit(&s->gq_len, memory_order_relaxed) == 0 &&
      atomic_load_explicit(&s->sq_len, memory_order_relaxed) == 0)
    return NULL;
  long room = 1;
  if (w) {
    uint32_t h = atomic_load_explicit(&w->rq_head, memory_order_acquire);
    uint32_t t = atomic_load_explicit(&w->rq_tail, memory_order_relaxed);
    room = 1 + (long)(RUNQ_SIZE - (t - h));
  }
  spin_lock(&s->lock);
  bool runnable = s->gq_head != NULL;
  struct coro **head = runnable ? &s->gq_head : &s->sq_head;
  struct coro **tail = runnable ? &s->gq_tail : &s->sq_tail;
  atomic_long *len = runnable ? &s->gq_len : &s->sq_len;
  long want = atomic_load_explicit(len, memory_order_relaxed) / s->nworkers + 1;
  if (want > room)
    want = room;
  if (want > GLOBAL_BATCH)
    want = GLOBAL_BATCH;
  while (n < want && *head) {
    struct coro *c = *head;
    *head = c->next;
    c->next = NULL;
    batch[n++] = c;
  }
  if (!*head)
    *tail = NULL;
  atomic_fetch_sub(len, n);
  spin_unlock(&s->lock);
  for (int k = 1; k < n; k++)
    weft__runq_put(w, batch[k]);
  return n ? batch[0] : NULL;
}

/* ---- local run queue (Go's runq: owner pushes at tail, anyone CASes head) ---- */

/* The ring is full: move half of it, and c, to the global queue. Returns false if a thief
 * raced us, in which case the caller retries the fast path. */
static bool runq_put_slow(struct worker *w, struct coro *c, uint32_t h, uint32_t t)
{
  enum { HALF = RUNQ_SIZE / 2 };
  struct coro *batch[HALF + 1];
  for (uint32_t i = 0; i < HALF; i++)
    batch[i] = atomic_load_explicit(&w->rq[(h + i) % RUNQ_SIZE], memory_order_relaxed);
  if (!atomic_compare_exchange_strong_explicit(&w->rq_head, &h, h + HALF, memory_order_release,
                                               memory_order_relaxed))
    return false;
  (void)t;
  batch[HALF] = c;
  for (int i = 0; i < HALF; i++)
    batch[i]->next = batch[i + 1];
  spin_lock(&weft__sched.lock);
  global_put_locked(batch[0], batch[HALF], HALF + 1);
  spin_unlock(&weft__sched.lock);
  return true;
}

void weft__runq_put(struct worker *w, struct coro *c)
{
  for (;;) {
    uint32_t h = atomic_load_explicit(&w->rq_head, memory_order_acquire);
    uint32_t t = atomic_load_explicit(&w->rq_tail, memory_order_relaxed);
    if (t - h < RUNQ_SIZE) {
      atomic_store_explicit(&w->rq[t % RUNQ_SIZE], c, memory_order_relaxed);
      atomic_store_explicit(&w->rq_tail, t + 1, memory_order_release);
      return;
    }
    if (runq_put_slow(w, c, h, t))
      return;
  }
}

static struct coro *runq_get(struct worker *w)
{
  if (weft__sched.nworkers == 1) {
    /* No thieves exist with one worker: the owner may move head without a CAS. */
    uint32_t h = atomic_load_explicit(&w->rq_head, memory_order_relaxed);
    if (atomic_load_explicit(&w->rq_tail, memory_order_relaxed) == h)
      return NULL;
    struct coro *c = atomic_load_explicit(&w->rq[h % RUNQ_SIZE], memory_order_relaxed);
    atomic_store_explicit(&w->rq_head, h + 1, memory_order_release);
    return c;
  }
  for (;;) {
    uint32_t h = atomic_load_explicit(&w->rq_head, memory_order_acquire);
    uint32_t t = atomic_load_explicit(&w->rq_tail, memory_order_relaxed);
    if (t == h)
      return NULL;
    struct coro *c = atomic_load_explicit(&w->rq[h % RUNQ_SIZE], memory_order_relaxed);
    if (atomic_compare_exchange_weak_explicit(&w->rq_head, &h, h + 1, memory_order_release,
                                              memory_order_relaxed))
      return c;
  }
}

static bool runq_empty(struct worker *w)
{
  uint32_t h = atomic_load_explicit(&w->rq_head, memory_order_acquire);
  uint32_t t = atomic_load_explicit(&w->rq_tail, memory_order_acquire);
  return h == t && !atomic_load_explicit(&w->runnext, memory_order_acquire);
}

/* Steal half of victim's ring into thief's (empty) ring; return one to run now. */
static struct coro *runq_steal(struct worker *thief, struct worker *victim, bool take_runnext)
{
  uint32_t tt = atomic_load_explicit(&thief->rq_tail, memory_order_relaxed);
  for (;;) {
    uint32_t h = atomic_load_explicit(&victim->rq_head, memory_order_acquire);
    uint32_t t = atomic_load_explicit(&victim->rq_tail, memory_order_acquire);
    uint32_t n = t - h;
    n -= n / 2;
    if (n == 0) {
      /* The victim's runnext, only when asked (see steal_work) and its ring is empty. */
      if (!take_runnext)
        return NULL;
      struct coro *c = atomic_load_explicit(&victim->runnext, memory_order_acquire);
      if (c && atomic_compare_exchange_strong(&victim->runnext, &c, NULL))
        return c;
      return NULL;
    }
    if (n > RUNQ_SIZE / 2)
      continue; /* read head and tail at different moments; try again */
    for (uint32_t i = 0; i < n; i++) {
      struct coro *c =
          atomic_load_explicit(&victim->rq[(h + i) % RUNQ_SIZE], memory_order_relaxed);
      atomic_store_explicit(&thief->rq[(tt + i) % RUNQ_SIZE], c, memory_order_relaxed);
    }
    if (atomic_compare_exchange_strong_explicit(&victim->rq_head, &h, h + n,
                                                memory_order_acq_rel, memory_order_relaxed)) {
      struct coro *c =
          atomic_load_explicit(&thief->rq[(tt + n - 1) % RUNQ_SIZE], memory_order_relaxed);
      if (n > 1)
        atomic_store_explicit(&thief->rq_tail, tt + n - 1, memory_order_release);
      return c;
    }
  }
}

/* ---- ready ---- */

/* Put c where w runs it next; the previous runnext goes to the ring's tail. */
static void runnext_put(struct worker *w, struct coro *c)
{
  struct coro *old;
  if (weft__sched.nworkers == 1) { /* no thieves: no read-modify-write needed */
    old = atomic_load_explicit(&w->runnext, memory_order_relaxed);
    atomic_store_explicit(&w->runnext, c, memory_order_relaxed);
  } else {
    old = atomic_exchange_explicit(&w->runnext, c, memory_order_acq_rel);
  }
  if (old)
    weft__runq_put(w, old);
}

void weft__ready(struct coro *c)
{
  struct worker *w = weft__this_worker();
  /* release: a dump that reads RUNNABLE then reads the saved context (dump.c) */
  atomic_store_explicit(&c->state, CORO_RUNNABLE, memory_order_release);
  if (w) {
    if (w->ready_to_tail)
      weft__runq_put(w, c);
    else
      runnext_put(w, c);
    if (weft__sched.nworkers == 1)
      return; /* the only worker is this one, and it is awake */
  } else {
    weft__global_put(c);
  }
  weft__wake_one();
}

/* weft__ready_list: ready every coroutine of a list linked through next (which is
 * free while they are parked), in order, at the tail of this worker's ring (or on the
 * global queue), waking idle workers once rather than once per coroutine. */
void weft__ready_list(struct coro *list)
{
  struct worker *w = weft__this_worker();
  if (!list)
    return;
  while (list) {
    struct coro *c = list;
    list = c->next;
    c->next = NULL;
    atomic_store_explicit(&c->state, CORO_RUNNABLE, memory_order_release);
    if (w)
      weft__runq_put(w, c);
    else
      weft__global_put(c);
  }
  weft__wake_one();
}

/* ---- waking idle workers ---- */

static void wake_worker(struct worker *w, bool is_poller)
{
  if (is_poller) {
    weft__poller_wake();
  } else {
    atomic_store_explicit(&w->futex_word, 1, memory_order_release);
    futex_wake(&w->futex_word);
  }
}

/* Remove an idle worker from the list, preferring a futex sleeper over the poller (which
 * the network needs); sched.lock held. *is_poller says how to wake it. */
static struct worker *idle_pop_locked(bool *is_poller)
{
  struct worker **pp, **best = NULL;
  for (pp = &weft__sched.idle_list; *pp; pp = &(*pp)->idle_next) {
    if (!best || (*best)->is_poller)
      best = pp;
  }
  if (!best)
    return NULL;
  struct worker *w = *best;
  *is_poller = w->is_poller;
  *best = w->idle_next;
  w->idle_next = NULL;
  w->idle = false;
  atomic_fetch_sub(&weft__sched.nidle, 1);
  return w;
}

static void idle_remove_locked(struct worker *w)
{
  for (struct worker **pp = &weft__sched.idle_list; *pp; pp = &(*pp)->idle_next) {
    if (*pp == w) {
      *pp = w->idle_next;
      w->idle_next = NULL;
      w->idle = false;
      atomic_fetch_sub(&weft__sched.nidle, 1);
      return;
    }
  }
}

/* Work was published: wake one idle worker unless one is already looking. The woken
 * worker counts as spinning from here on (so a burst of ready calls wakes one worker, and
 * that one wakes the next when it finds work). */
void weft__wake_one(void)
{
  atomic_thread_fence(memory_order_seq_cst);
  if (atomic_load(&weft__sched.nidle) == 0 || atomic_load(&weft__sched.nspinning) != 0)
    return;
  int zero = 0;
  if (!atomic_compare_exchange_strong(&weft__sched.nspinning, &zero, 1))
    return;
  bool is_poller = false;
  spin_lock(&weft__sched.lock);
  struct worker *w = idle_pop_locked(&is_poller);
  spin_unlock(&weft__sched.lock);
  if (!w) {
    atomic_fetch_sub(&weft__sched.nspinning, 1);
    return;
  }
  wake_worker(w, is_poller);
}

void weft__wake_all(void)
{
  spin_lock(&weft__sched.lock);
  for (int i = 0; i < weft__sched.nworkers; i++) {
    struct worker *w = &weft__sched.workers[i];
    atomic_store_explicit(&w->futex_word, 1, memory_order_release);
    futex_wake(&w->futex_word);
  }
  spin_unlock(&weft__sched.lock);
  weft__poller_wake();
}

/* ---- timers ---- */

static int64_t earliest_timer(void)
{
  int64_t min = INT64_MAX;
  for (int i = 0; i < weft__sched.nworkers; i++) {
    int64_t t = atomic_load(&weft__sched.workers[i].timers.next_when);
    if (t < min)
      min = t;
  }
  return min;
}

int weft__timer_start(struct timer *t, int64_t when)
{
  struct worker *w = weft__this_worker();
  if (!w)
    w = &weft__sched.workers[0];
  int err = weft__timer_arm(&w->timers, t, when);
  if (err)
    return err;
  /* Pairs with the poller's store of poll_until then reload of the heaps. */
  atomic_thread_fence(memory_order_seq_cst);
  if (when < atomic_load(&weft__sched.poll_until))
    weft__poller_wake();
  return 0;
}

/* Fire h's due timers. What they wake goes to the tail of the ring, in firing (deadline)
 * order, not into runnext, where each would push the previous one behind the others. */
static int fire_timers(struct timer_heap *h, int64_t now)
{
  struct worker *w = weft__this_worker();
  if (w)
    w->ready_to_tail = true;
  int n = weft__timer_run_expired(h, now);
  if (w)
    w->ready_to_tail = false;
  return n;
}

static int run_all_timers(int64_t now)
{
  int fired = 0;
  for (int i = 0; i < weft__sched.nworkers; i++)
    fired += fire_timers(&weft__sched.workers[i].timers, now);
  return fired;
}

/* ---- choosing the next coroutine ---- */

/* Periodic duties of a busy worker: the global queue's fairness, its timers and, when
 * nobody else does, a non-blocking look at the network. May ready coroutines. */
static struct coro *periodic_check(struct worker *w)
{
  int64_t now = now_ns();
  w->clock = now;
  fire_timers(&w->timers, now);
  if (now - w->last_poll > BUSY_POLL_NS && atomic_load(&weft__sched.io_waiters) > 0) {
    int zero = 0;
    w->last_poll = now;
    if (atomic_compare_exchange_strong(&weft__sched.polling, &zero, 1)) {
      weft__poller_poll(0);
      atomic_store(&weft__sched.polling, 0);
    }
  }
  return global_get(w);
}

/* The next coroutine this worker should run without leaving the caller's stack, or NULL.
 * Owner thread only; called on coroutine stacks and in the loop.
 *
 * parking: the caller is weft__park, whose coroutine may still hold the lock that its
 * commit step releases (a channel's, the signal waiters'). The periodic duties run timer
 * callbacks and the signal dispatch, which take such locks: run there, they would spin
 * forever on a lock their own thread holds. So a park that falls on a periodic tick
 * returns NULL and goes through g0, where the commit step runs first and the loop's
 * pick_local then takes the tick and does the duties. (Skipping the duties on the park
 * path instead would starve the global queue and this worker's timers whenever its
 * coroutines only ever park and ready each other.) */
static struct coro *pick_local(struct worker *w, bool parking)
{
  struct coro *c;
  if (atomic_load_explicit(&weft__sched.stopping, memory_order_relaxed))
    return NULL; /* main returned: go back to the loop, which ends */
  if (++w->tick % FAIRNESS_TICKS == 0) {
    if (parking) {
      w->tick--; /* left for the loop's pick_local, after the commit step */
      return NULL;
    }
    if ((c = periodic_check(w)))
      return c;
  }
  if ((c = atomic_load_explicit(&w->runnext, memory_order_relaxed))) {
    if (weft__sched.nworkers == 1)
      atomic_store_explicit(&w->runnext, NULL, memory_order_relaxed);
    else
      c = atomic_exchange_explicit(&w->runnext, NULL, memory_order_acq_rel);
    if (c) {
      if (++w->runnext_streak <= RUNNEXT_STREAK_MAX)
        return c;
      weft__runq_put(w, c); /* let the queue head run first */
    }
  }
  w->runnext_streak = 0;
  return runq_get(w);
}

static uint64_t xorshift(uint64_t *s)
{
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

/* Steal from the other workers in a random order; also fire their due timers. */
/* Sleep this long before taking another worker's runnext, as Go does (usleep(3)): the
 * coroutine that readied it is usually about to park and run it on a warm cache, and a
 * channel ping-pong split across two threads costs a wake-up per message. A sleep, not a
 * spin: the kernel's timer slack makes it ~50 us, which leaves the owner ample time, and
 * it costs no CPU. History: 1,000 pauses took 26 us on this AMD EPYC (a fifth of weft-etl's
 * CPU under latency); a 3 us timed spin was still ~9% of it; the sleep also halved
 * chan_pingpong_2p and made chan_spsc 3x faster (weft-bench), and it cost paymentd's p99
 * under wrk 1.4 ms (2.9 -> 4.2 ms) for 3-6% more requests per second. */
#define RUNNEXT_STEAL_DELAY_NS 3000

/* Add one to an owner-only statistics counter: a relaxed load and store, no
 * read-modify-write, so the hot path never bounces a cache line between CPUs. */
static inline void counter_inc(atomic_ulong *c)
{
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                        memory_order_relaxed);
}

/* Whether another worker has a coroutine in its runnext slot. */
static bool any_runnext(const struct worker *w)
{
  for (int i = 0; i < weft__sched.nworkers; i++) {
    const struct worker *v = &weft__sched.workers[i];
    if (v != w && atomic_load_explicit(&v->runnext, memory_order_relaxed))
      return true;
  }
  return false;
}

/* Steal from the other workers in a random order; also fire their due timers. The last
 * attempt may take a victim's runnext, after a short pause. */
static struct coro *steal_work(struct worker *w)
{
  int n = weft__sched.nworkers;
  for (int attempt = 0; attempt < 2; attempt++) {
    bool take_runnext = attempt == 1;
    if (take_runnext) {
      /* Pause only when there is a runnext to take: otherwise the pause is pure waste,
       * and with a network load it was a sixth of the process's CPU (perf, weft-hello). */
      if (!any_runnext(w))
        break;
      struct timespec delay = {0, RUNNEXT_STEAL_DELAY_NS};
      nanosleep(&delay, NULL); /* an interruption only shortens it */
    }
    int start = (int)(xorshift(&w->rng) % (uint64_t)n);
    for (int i = 0; i < n; i++) {
      struct worker *v = &weft__sched.workers[(start + i) % n];
      if (v == w)
        continue;
      struct coro *c = runq_steal(w, v, take_runnext);
      if (c) {
        counter_inc(&w->steals);
        return c;
      }
    }
    if (run_all_timers(now_ns()) > 0)
      return pick_local(w, false);
  }
  return NULL;
}

static bool any_work_visible(void)
{
  if (atomic_load(&weft__sched.gq_len) > 0 || atomic_load(&weft__sched.sq_len) > 0)
    return true;
  for (int i = 0; i < weft__sched.nworkers; i++)
    if (!runq_empty(&weft__sched.workers[i]))
      return true;
  return false;
}

static void stop_spinning(struct worker *w, bool found_work)
{
  if (!w->spinning)
    return;
  w->spinning = false;
  /* The last spinner to find work wakes another, for work published while it spun. */
  if (atomic_fetch_sub(&weft__sched.nspinning, 1) == 1 && found_work)
    weft__wake_one();
}

/* Poll the network until woken or the earliest timer; we own the poller. */
static void poll_until_timer(struct worker *w)
{
  int64_t until = earliest_timer();
  atomic_store(&weft__sched.poll_until, until);
  int64_t again = earliest_timer(); /* a timer may have been added meanwhile */
  if (again < until) {
    until = again;
    atomic_store(&weft__sched.poll_until, until);
  }
  weft__poller_poll(until);
  atomic_store(&weft__sched.poll_until, INT64_MAX);
  w->last_poll = now_ns();
  run_all_timers(w->last_poll);
}

/* Every worker is idle (sched.lock held): if no coroutine is runnable and nothing outside
 * the coroutines (a timer, an fd, the blocking pool, a signal) can make one runnable, the
 * program can never progress. Report every coroutine, as Go does, and abort. */
static void deadlock_check_locked(void)
{
  if (atomic_load(&weft__sched.stopping) || any_work_visible() ||
      weft__timer_pending_count() > 0 || atomic_load(&weft__sched.io_waiters) > 0 ||
      atomic_load(&weft__sched.blocking) > 0 || atomic_load(&weft__sched.signal_waiters) > 0 ||
      atomic_load(&weft__sched.external_wakers) > 0)
    return;
  fprintf(stderr, "all coroutines are asleep - deadlock!\n\n");
  weft__dump_all(stderr);
  fflush(stderr);
  abort();
}

/* Record the start of a wait (since != 0) or its end (since == 0, adding waited ns), so
 * that weft_runtime_stats sees a thread asleep for a long time as idle all along. A
 * seqcount: the owner makes idle_seq odd around the update, readers retry. */
static void idle_account(struct worker *w, int64_t since, int64_t waited)
{
  /* The increment to odd is an acq_rel read-modify-write so that the stores below cannot
   * move above it (ThreadSanitizer does not take a standalone fence). */
  unsigned seq = atomic_fetch_add_explicit(&w->idle_seq, 1, memory_order_acq_rel);
  atomic_store_explicit(&w->idle_ns,
                        atomic_load_explicit(&w->idle_ns, memory_order_relaxed) + waited,
                        memory_order_relaxed);
  atomic_store_explicit(&w->idle_since, since, memory_order_relaxed);
  atomic_store_explicit(&w->idle_seq, seq + 2, memory_order_release);
}

/* Go idle until woken. Returns after being woken (then spinning) or after polling. */
static void idle_sleep(struct worker *w)
{
  spin_lock(&weft__sched.lock);
  if (atomic_load(&weft__sched.gq_len) > 0 || atomic_load(&weft__sched.sq_len) > 0 ||
      atomic_load(&weft__sched.stopping)) {
    spin_unlock(&weft__sched.lock);
    return;
  }
  int zero = 0;
  w->is_poller = atomic_compare_exchange_strong(&weft__sched.polling, &zero, 1);
  w->idle = true;
  w->idle_next = weft__sched.idle_list;
  weft__sched.idle_list = w;
  atomic_fetch_add(&weft__sched.nidle, 1);
  if (atomic_load(&weft__sched.nidle) == weft__sched.nworkers)
    deadlock_check_locked();
  spin_unlock(&weft__sched.lock);

  if (!any_work_visible()) {
    int64_t idle_from = now_ns();
    idle_account(w, idle_from, 0);
    if (w->is_poller) {
      poll_until_timer(w);
    } else {
      while (atomic_load_explicit(&w->futex_word, memory_order_acquire) == 0)
        futex_wait(&w->futex_word, 0);
    }
    idle_account(w, 0, now_ns() - idle_from);
  }
  atomic_store_explicit(&w->futex_word, 0, memory_order_relaxed);

  spin_lock(&weft__sched.lock);
  if (w->idle)
    idle_remove_locked(w); /* woke by itself: not counted as spinning */
  else
    w->spinning = true; /* a waker counted us in nspinning */
  if (w->is_poller) {
    w->is_poller = false;
    atomic_store(&weft__sched.polling, 0);
  }
  spin_unlock(&weft__sched.lock);
}

/* Block until there is a coroutine for w to run; NULL once the runtime stops. */
static struct coro *find_runnable(struct worker *w)
{
  struct coro *c;
  for (;;) {
    if (atomic_load(&weft__sched.stopping))
      break;
    if ((c = pick_local(w, false)) || (c = global_get(w)))
      goto found;
    w->clock = now_ns();
    if (run_all_timers(w->clock) > 0)
      continue;
    if (!w->spinning) {
      w->spinning = true;
      atomic_fetch_add(&weft__sched.nspinning, 1);
    }
    if ((c = steal_work(w)))
      goto found;
    stop_spinning(w, false);
    if (any_work_visible())
      continue;
    idle_sleep(w);
  }
  stop_spinning(w, false);
  return NULL;
found:
  stop_spinning(w, true);
  return c;
}

/* ---- switching ---- */

static void check_canary(struct coro *c)
{
  if (c->stack && !stack_canary_ok(c->stack))
    weft__die("weft: coroutine %llu (%s) overflowed its %zu-byte stack (created at %s:%d "
              "in %s); run with guard pages or a larger stack",
              (unsigned long long)c->id, c->name[0] ? c->name : "unnamed", c->stack->slot,
              c->file ? c->file : "?", c->line, c->func ? c->func : "?");
}

/* Switch from the running context to `to`; `action` says what to do with `from` once we
 * are off its stack. Returns when `from` is resumed (never for SWITCH_EXIT). */
static void switch_to(struct worker *w, struct coro *from, struct coro *to,
                      enum switch_action action)
{
  /* While w->current is still `from`, so that the report names the right coroutine. */
  if (from->stack)
    stack_note_depth(from->stack, __builtin_frame_address(0));
  check_canary(from);
  if (to != &w->g0 && atomic_load_explicit(&to->state, memory_order_relaxed) == CORO_NEW &&
      !weft__coro_bind_stack(w, to))
    weft__die("weft: out of memory for the stack of coroutine %llu",
              (unsigned long long)to->id);
  w->prev = from;
  w->prev_action = action;
  w->current = to == &w->g0 ? NULL : to;
  if (to != &w->g0) {
    atomic_store_explicit(&to->state, CORO_RUNNING, memory_order_relaxed);
    /* A dump may be unwinding to's saved stack: wait for it. The dump publishes its pin
     * and then issues a process-wide barrier (membarrier) before it reads the state, so
     * this side needs only a compiler barrier between its store and its load: either the
     * dump sees RUNNING and leaves the stack alone, or this load sees the pin (dump.c). */
    atomic_signal_fence(memory_order_seq_cst);
    while (atomic_load_explicit(&to->dump_pin, memory_order_acquire))
      cpu_relax();
  }
#if WEFT_ASAN
  ASAN_START_SWITCH(action == SWITCH_EXIT ? NULL : &from->asan_fake_stack,
                    to->stack ? to->stack->lo : w->g0_asan_bottom,
                    to->stack ? to->stack->size : w->g0_asan_size);
#endif
#if WEFT_TSAN
  __tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
  if (to != &w->g0)
    counter_inc(&w->switches);
  weft__ctx_switch(&from->ctx, &to->ctx);
  weft__after_switch(from);
}

/* Runs first thing on every resumed context: finish the sanitizer switch, then do what
 * the context we came from asked for. */
void weft__after_switch(struct coro *self)
{
  struct worker *w = weft__this_worker();
#if WEFT_ASAN
  const void *bottom_old;
  size_t size_old;
  ASAN_FINISH_SWITCH(self->asan_fake_stack, &bottom_old, &size_old);
  if (w->prev == &w->g0) {
    w->g0_asan_bottom = bottom_old;
    w->g0_asan_size = size_old;
  }
#endif
  struct coro *prev = w->prev;
  enum switch_action action = w->prev_action;
  w->prev = NULL;
  w->prev_action = SWITCH_NONE;
  switch (action) {
  case SWITCH_NONE:
    break;
  case SWITCH_YIELD:
    /* RUNNABLE and PARKED are stored only once prev's context is saved, so a dump may
     * unwind any coroutine in either state (dump.c). */
    atomic_store_explicit(&prev->state, CORO_RUNNABLE, memory_order_release);
    weft__runq_put(w, prev);
    break;
  case SWITCH_PARK:
    atomic_store_explicit(&prev->state, CORO_PARKED, memory_order_release);
    if (w->commit && !w->commit(prev, w->commit_arg)) {
      atomic_store_explicit(&prev->state, CORO_RUNNABLE, memory_order_relaxed);
      runnext_put(w, prev);
    }
    break;
  case SWITCH_EXIT:
    weft__coro_destroy(w, prev);
    break;
  }
}

void weft__park(const char *reason, park_commit_fn commit, void *arg)
{
  struct worker *w = weft__this_worker();
  struct coro *self = w->current;
  if (!self)
    weft__die("weft: %s outside a coroutine", reason);
  atomic_store_explicit(&self->wait_reason, reason, memory_order_relaxed);
  if (!w->clock)
    w->clock = now_ns(); /* first park before any periodic check */
  atomic_store_explicit(&self->wait_since, w->clock, memory_order_relaxed);
  w->commit = commit;
  w->commit_arg = arg;
  struct coro *next = pick_local(w, true);
  if (next && atomic_load_explicit(&next->state, memory_order_relaxed) == CORO_NEW) {
    /* Starting it means binding a stack first (maybe an mmap and first-touch faults),
     * and until the switch completes our commit step has not released the lock we hold:
     * 10,000 receivers queueing on one channel spun on it. Start it from g0 instead, after
     * the commit. */
    runnext_put(w, next);
    next = NULL;
  }
  switch_to(w, self, next ? next : &w->g0, SWITCH_PARK);
  atomic_store_explicit(&self->wait_reason, NULL, memory_order_relaxed);
}

void weft_yield(void)
{
  struct worker *w = weft__this_worker();
  if (!w || !w->current)
    return;
  struct coro *next = pick_local(w, false);
  if (!next && !(next = global_get(w))) {
    if (!atomic_load_explicit(&weft__sched.stopping, memory_order_relaxed))
      return; /* nothing else to run here */
    next = &w->g0;
  }
  switch_to(w, w->current, next, SWITCH_YIELD);
}

void weft__switch_exit(struct coro *self)
{
  struct worker *w = weft__this_worker();
  atomic_store_explicit(&self->state, CORO_DEAD, memory_order_relaxed);
  struct coro *next = pick_local(w, false);
  switch_to(w, self, next ? next : &w->g0, SWITCH_EXIT);
  __builtin_unreachable();
}

/* The scheduler loop of worker w, on its own thread stack; returns once stopping. */
void weft__sched_loop(struct worker *w)
{
  struct coro *c;
#if WEFT_TSAN
  w->g0.tsan_fiber = __tsan_get_current_fiber();
#endif
  while ((c = find_runnable(w)))
    switch_to(w, &w->g0, c, SWITCH_NONE);
}
