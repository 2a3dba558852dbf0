/* weft/runtime.h: the runtime, coroutines and time.
 *
 * A program hands its main function to weft_main(), which starts P scheduler threads (the
 * calling thread is one of them), runs main as the first coroutine and returns its result
 * once it returns. Coroutines are spawned with weft_go(); they run until their function
 * returns and may park (sleep, wait for I/O, a channel, a lock) at any weft call documented
 * "may park". A coroutine may resume on another thread after it parks: never keep a pointer
 * to thread-local data (errno included) across a parking call.
 *
 * Scheduling is cooperative: a coroutine that computes for a long time without parking
 * delays the others on its thread; call weft_yield() in long loops. */
#ifndef WEFT_RUNTIME_H
#define WEFT_RUNTIME_H

#include <stdio.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What happens, when main returns, to coroutines still alive (the leak check). */
typedef enum weft_leak_check {
  WEFT_LEAK_IGNORE = 0, /* say nothing (Go's behaviour) */
  WEFT_LEAK_REPORT,     /* print one line per leaked coroutine on stderr */
  WEFT_LEAK_FAIL        /* print them and make weft_main return -EBUSY */
} weft_leak_check;

/* Settings for weft_main_with(). Zero fields take the defaults, which the environment may
 * override: WEFT_PROCS, WEFT_STACK_SIZE, WEFT_STACK_GUARD (0 or 1), WEFT_LEAK_CHECK
 * (ignore, report, fail), WEFT_BLOCKING_THREADS. */
typedef struct weft_config {
  int procs;                  /* scheduler threads; default: CPUs in the affinity mask */
  size_t stack_size;          /* default stack size in bytes; default 128 KiB */
  int stack_guard;            /* 1: guard pages (auto-falls back to canaries near the map
                                 limit), 0: canaries only, arena-carved; default 1 */
  weft_leak_check leak_check; /* default WEFT_LEAK_IGNORE */
  int blocking_threads;       /* bound of the blocking-call pool; default 64 */
} weft_config;

/* While the runtime runs, SIGPIPE is ignored if the program left it at its default, so
 * writing to a closed pipe or socket returns -EPIPE instead of killing the process.
 *
 * weft_main: start the runtime with default settings, run fn(arg) as the main coroutine
 * and return its result after it returns and the runtime has stopped. Coroutines still
 * alive then are stopped without running further (see weft_leak_check). Any thread not
 * inside weft; blocks the caller; not reentrant. Returns -EINVAL if fn is NULL, -EBUSY if
 * the runtime is already running, -ENOMEM if it could not start. */
WEFT_API int weft_main(int (*fn)(void *arg), void *arg);

/* weft_main_with: weft_main with explicit settings (cfg may be NULL). */
WEFT_API int weft_main_with(const weft_config *cfg, int (*fn)(void *arg), void *arg);

/* Options for weft_go_with(). Zero fields take the defaults. */
typedef struct weft_go_options {
  const char *name;  /* shown in dumps; copied (first 31 bytes) */
  size_t stack_size; /* bytes; rounded up to pages; default from weft_config */
} weft_go_options;

/* weft_go(fn, arg): spawn a coroutine running fn(arg). Records the call site for dumps.
 * Returns 0 or -ENOMEM (-EPERM outside a running runtime). Any thread while the runtime
 * runs; never parks. The coroutine owns nothing of the caller's: pass arg accordingly. */
#define weft_go(fn, arg) weft_go_at((fn), (arg), NULL, __FILE__, __LINE__, #fn)
/* weft_go_named(fn, arg, name): weft_go with a name shown in dumps. */
#define weft_go_named(fn, arg, coro_name) \
  weft_go_at((fn), (arg), &(weft_go_options){.name = (coro_name)}, __FILE__, __LINE__, #fn)
/* weft_go_with(fn, arg, opts): weft_go with options (opts may be NULL). */
#define weft_go_with(fn, arg, opts) weft_go_at((fn), (arg), (opts), __FILE__, __LINE__, #fn)

/* weft_go_at: the function behind the macros; file, line and func name the creator. */
WEFT_API int weft_go_at(void (*fn)(void *arg), void *arg, const weft_go_options *opts,
                        const char *file, int line, const char *func);

/* weft_yield: let other runnable coroutines run; the caller goes behind them.
 * Coroutine; may switch. Outside a coroutine it does nothing. */
WEFT_API void weft_yield(void);

/* weft_sleep: park for at least ns nanoseconds (ns <= 0 yields).
 * Coroutine, may park (wait reason "sleep"). */
WEFT_API void weft_sleep(int64_t ns);

/* weft_sleep_until: park until the monotonic time deadline (see weft_now()).
 * Coroutine, may park. */
WEFT_API void weft_sleep_until(int64_t deadline);

/* weft_now: CLOCK_MONOTONIC in nanoseconds. Any thread; never blocks. */
WEFT_API int64_t weft_now(void);

/* weft_self_id: the running coroutine's id (main is 1), or 0 outside a coroutine.
 * Any thread. */
WEFT_API uint64_t weft_self_id(void);

/* weft_self_name: the running coroutine's name ("" if unnamed), or NULL outside one.
 * The string lives as long as the coroutine. Any thread. */
WEFT_API const char *weft_self_name(void);

/* weft_set_name: rename the running coroutine (first 31 bytes kept). Coroutine. */
WEFT_API void weft_set_name(const char *name);

/* weft_in_coroutine: 1 when called from a coroutine, else 0. Any thread. */
WEFT_API int weft_in_coroutine(void);

/* weft_procs: the number of scheduler threads of the running runtime (0 if none). */
WEFT_API int weft_procs(void);

/* weft_coroutine_count: coroutines alive now (spawned and not yet returned). */
WEFT_API long weft_coroutine_count(void);

/* ---- statistics ---- */

#define WEFT_STATS_MAX_PROCS 64

/* A snapshot of the runtime's counters; cumulative ones count from weft_main's start. */
typedef struct weft_runtime_stats {
  long coroutines;            /* alive: spawned and not yet returned */
  long runnable;              /* waiting in run queues */
  int procs;                  /* scheduler threads (P) */
  int blocking_threads;       /* threads of the blocking pool */
  int blocking_busy;          /* of them, running a call */
  long blocking_queued;       /* calls waiting for a pool thread */
  unsigned long switches;     /* switches into a coroutine (cumulative) */
  unsigned long steals;       /* coroutines taken from another thread's queue (cumulative) */
  unsigned long poller_waits; /* epoll waits (cumulative) */
  long timers;                /* pending timers (sleeps, deadlines, tickers) */
  long io_waiters;            /* coroutines parked on a file descriptor */
  long stack_bytes;           /* stack memory mapped (guarded stacks and arenas) */
  int64_t uptime_ns;          /* since weft_main started */
  /* Per scheduler thread (the first min(procs, WEFT_STATS_MAX_PROCS)): time spent idle,
   * waiting for work, cumulative. Utilisation over an interval is 1 - d(idle) / d(t). */
  int64_t proc_idle_ns[WEFT_STATS_MAX_PROCS];
} weft_runtime_stats;

/* weft_runtime_stats: fill *out. Returns 0, or -EPERM when the runtime is not running.
 * Any thread; never parks; costs a pass over the workers and the blocking pool's lock. */
WEFT_API int weft_runtime_stats_read(weft_runtime_stats *out);

/* weft_dump: write one line per live coroutine that has started (id, name, state, wait reason,
 * time waiting, creation site) to out. Any thread; takes the registry locks, never parks.
 * Returns the number of coroutines written. Backtraces, the grouped form, SIGQUIT and the
 * leak check for tests: weft/debug.h. */
WEFT_API long weft_dump(FILE *out);

/* weft_external_wakers: tell deadlock detection that delta (+1 or -1) plain threads
 * (not coroutines, timers, fds, signals or blocking calls, which weft counts itself) may
 * wake a parked coroutine, e.g. with weft_chan_try_send. While the count is above zero a
 * program whose coroutines are all parked is not reported as deadlocked. Any thread. */
WEFT_API void weft_external_wakers(int delta);

/* weft_leaked: how many coroutines (other than main) were still alive when the last
 * weft_main's main returned. Any thread, after weft_main returned. */
WEFT_API long weft_leaked(void);

#ifdef __cplusplus
}
#endif
#endif
