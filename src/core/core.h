/* core.h: the runtime's internal interface, shared by src/core and the layers above.
 *
 * Vocabulary: a coroutine record is a "coro"; a scheduler thread is a "worker" (Go's P
 * and M together: weft never hands a P to another thread). Each worker runs its own
 * scheduling loop on its native pthread stack (the worker's "g0" context).
 *
 * The one way to block (DESIGN.md): a coroutine calls weft__park() with a wait reason and
 * a commit step; the scheduler switches away and then, on the next context (never on the
 * parked coroutine's stack), runs the commit step, which typically releases the lock that
 * guards the queue the coroutine was put on. Only after that can another thread find the
 * coroutine and call weft__ready() on it, so a coroutine is never resumed before its
 * context is saved. If the commit step returns false the park is abandoned and the
 * coroutine is made runnable again at once. */
#ifndef WEFT_CORE_CORE_H
#define WEFT_CORE_CORE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "core/arch/switch.h"
#include "core/spinlock.h"
#include "core/timer.h"

struct stack;
struct worker;

/* Coroutine states. Transitions (all through the scheduler):
 *
 *   NEW --first run--> RUNNING --park--> PARKED --ready--> RUNNABLE --run--> RUNNING
 *                         |  ^--------------- yield (RUNNABLE) ------------------|
 *                         +--return--> DEAD
 */
enum coro_state { CORO_NEW, CORO_RUNNABLE, CORO_RUNNING, CORO_PARKED, CORO_DEAD };

#define CORO_NAME_MAX 32

struct coro {
  struct ctx ctx;                   /* saved machine context; owner: the thread running it */
  struct stack *stack;              /* bound at first run; NULL while NEW */
  void (*fn)(void *);               /* entry, immutable */
  void *arg;                        /* entry argument, immutable */
  struct coro *next;                /* link in the global run queue or a free list; guarded by
                                       whoever owns the list */
  struct coro *reg_prev, *reg_next; /* registry links; guarded by registry lock */
  struct registry *reg;             /* registry holding it; immutable after spawn */
  uint64_t id;                      /* unique, immutable */
  atomic_int state;                 /* enum coro_state; changed by the scheduler only */
  atomic_int dump_pin;              /* 1 while a dump unwinds its saved stack: a scheduler
                                       about to run it waits (see dump.c) */
  const char *_Atomic wait_reason;  /* why it is parked; written before park, read by dumps
                                       on any thread (relaxed: the strings are static) */
  _Atomic int64_t wait_since;       /* monotonic ns when it parked (the worker's clock);
                                       relaxed, as wait_reason */
  int wake_result;                  /* set by the waker before weft__ready (e.g. -ETIMEDOUT) */
  size_t stack_size;                /* requested size */
  const char *file;                 /* creation site, static strings */
  const char *func;
  int line;
  void *creator_pc; /* return address in the function that called
                       weft_go_at, for "created by" in dumps; immutable */
  char name[CORO_NAME_MAX];
  struct timer sleep_timer; /* for weft_sleep; owned by the coroutine */
  void *asan_fake_stack;    /* AddressSanitizer fake-stack handle while switched out */
  void *tsan_fiber;         /* ThreadSanitizer fiber */
};

/* A registry of live coroutines for dumps, leak reports and shutdown; one per worker plus
 * one for coroutines spawned from foreign threads. */
struct registry {
  spinlock lock;    /* guards the list and count; a leaf lock */
  struct coro head; /* sentinel of a circular list */
};

/* Park commit step: runs on the next context after the switch; returns false to abandon
 * the park (the coroutine is then readied at once). */
typedef bool (*park_commit_fn)(struct coro *c, void *arg);

/* weft__park: park the running coroutine. reason is a static string shown in dumps.
 * Coroutine only. */
void weft__park(const char *reason, park_commit_fn commit, void *arg);

/* weft__ready: make a parked coroutine runnable. Any thread (scheduler threads, timer
 * callbacks, the poller, the blocking pool); never blocks. Each park is matched by exactly
 * one ready: the caller must have won whatever race decides who wakes c. */
void weft__ready(struct coro *c);

/* weft__ready_list: weft__ready for a list of parked coroutines linked through next, in
 * order, with one wake-up of idle workers. Any thread. */
void weft__ready_list(struct coro *list);

/* weft__current: the running coroutine, or NULL on a thread not running one. */
struct coro *weft__current(void);

/* An outside source that may end a wait early: a context, from the ctx layer, which the
 * core does not know. arm() registers fire(waiter, err) and returns 0, or returns the
 * error at once (fire not registered) if the source has already fired; fire runs on the
 * firing thread, must not park, and claims the wait like a deadline timer. disarm()
 * returns once fire is not running and never will. */
struct weft__canceller {
  int (*arm)(struct weft__canceller *cn, void (*fire)(void *waiter, int err), void *waiter);
  void (*disarm)(struct weft__canceller *cn);
};

/* fd calls with a canceller (poller.c); dir 0 = readable, 1 = writable. */
struct sockaddr;
int weft__wait_fd(int fd, int dir, int64_t deadline, struct weft__canceller *cn);
/* weft__wait_fd_edge: wait for the next readiness edge, or return at once if one came
 * since the last wait (the mark may be stale: the caller tries its I/O and, on EAGAIN,
 * waits again). Saves weft__wait_fd's poll(2) where the caller knows the fd was drained. */
int weft__wait_fd_edge(int fd, int dir, int64_t deadline, struct weft__canceller *cn);
long weft__read(int fd, void *buf, size_t len, int64_t deadline, struct weft__canceller *cn);
long weft__write(int fd, const void *buf, size_t len, int64_t deadline,
                 struct weft__canceller *cn);
long weft__write_all(int fd, const void *buf, size_t len, int64_t deadline,
                     struct weft__canceller *cn);
int weft__accept(int fd, struct sockaddr *addr, unsigned *addrlen, int64_t deadline,
                 struct weft__canceller *cn);
int weft__connect(int fd, const struct sockaddr *addr, unsigned addrlen, int64_t deadline,
                  struct weft__canceller *cn);

/* The semaphore and blocking-pool calls with a canceller (src/sync/semaphore.c,
 * blocking.c). weft__blocking returns 0 with *result set when fn completed, or the
 * canceller's error once the caller stopped waiting; fn then runs on, and on_abandon
 * (if not NULL) is called exactly once with arg and fn's result on the pool thread when
 * it ends, with -ECANCELED if fn never started, or on the caller before it returns if the
 * canceller had fired before the job was queued. -EINVAL, -ENOMEM: neither is called. */
struct weft_sem;
int weft__sem_acquire(struct weft_sem *s, int64_t n, int64_t deadline,
                      struct weft__canceller *cn);
int weft__blocking(long (*fn)(void *arg), void *arg, long *result,
                   void (*on_abandon)(void *arg, long result), struct weft__canceller *cn);

/* weft_signal_wait with a canceller (signal.c). */
#include <signal.h>
int weft__signal_wait(const sigset_t *set, int64_t deadline, struct weft__canceller *cn);

/* weft__timer_start: arm t on the calling worker's heap (worker 0's from other threads)
 * and make sure the poller wakes for it. Returns 0 or -ENOMEM. Any thread. */
int weft__timer_start(struct timer *t, int64_t when);

/* The wake-source counters that deadlock detection reads; see sched.c. */
void weft__io_waiters_add(int delta);

/* Statistics for weft_runtime_stats (stats.c): any thread, never park. */
long weft__stack_mapped_bytes(void);
void weft__blocking_stats(int *threads, int *busy, long *queued);
unsigned long weft__poller_waits(void);
void weft__blocking_add(int delta);
void weft__signal_waiters_add(int delta);

/* Poller interface used by the scheduler (poller.c). */
int weft__poller_init(void);
void weft__poller_fini(void);
/* Poll for ready fds, waiting until deadline (monotonic ns; 0 = do not wait,
 * INT64_MAX = no timeout); readies the coroutines whose fds became ready. Returns the
 * number of coroutines readied. Called by at most one thread at a time (see sched.c). */
int weft__poller_poll(int64_t deadline);
/* Wake a thread blocked in weft__poller_poll. Any thread; async-signal-safe. */
void weft__poller_wake(void);

/* Watch an internal fd (the signal pipe): readable -> weft__signal_dispatch(). */
int weft__poller_add_internal(int fd);

/* Signal dispatch, called by the poller when the signal pipe is readable. */
void weft__signal_dispatch(void);
int weft__signal_init(void);
void weft__signal_fini(void);

/* Blocking pool lifecycle. */
int weft__blocking_init(int max_threads);
void weft__blocking_fini(void);

/* Dumps. */
void weft__dump_coro(FILE *out, const struct coro *c, int64_t now);
long weft__dump_all(FILE *out);
/* The SIGQUIT dump thread (dump.c): started with the runtime unless WEFT_SIGQUIT=0,
 * stopped before teardown. */
void weft__sigquit_start(void);
void weft__sigquit_stop(void);
void weft__die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

/* Runtime settings in force. */
struct runtime_config {
  int procs;
  size_t stack_size;
  int stack_guard;
  int leak_check;
  int blocking_threads;
};
extern struct runtime_config weft__config;

#endif
