/* weft/debug.h: coroutine dumps with backtraces, and the leak check for tests.
 *
 * Dumps (like Go's net/http/pprof goroutine profile). The full form, as debug=2:
 *
 *   coroutine 18 "fetcher" [chan receive, 3 minutes]:
 *   switch_to(...)
 *   	/src/weft/src/core/sched.c:702 +0x9c
 *   weft_chan_recv(...)
 *   	/src/weft/src/sync/chan.c:301 +0x31
 *   stuck_in_recv(...)
 *   	/src/app/fetch.c:40 +0x1d
 *   created by fetch_all at fetch.c:88
 *
 * The header gives the id, the name (if set), the state (the wait reason when parked:
 * "chan receive", "select", "mutex", "io wait (read)", ...) and, once it has waited a
 * minute or more, the whole minutes waited, as Go does (below a minute nothing is shown:
 * weft_dump's one-line form gives seconds). Frames are innermost first; without line
 * information (no -g) a frame's second line is "\tfunc+0xOFF". "created by" names the
 * function that called weft_go (or the name passed to weft_go_at when it cannot be
 * symbolized) and the call site. A coroutine running on another thread shows
 * "\tcoroutine running on other thread; stack unavailable"; the caller's own stack starts
 * at its call of the dump. Coroutines spawned but not yet started are not shown.
 *
 * The grouped form, as debug=1, counts coroutines with identical stacks, most first:
 *
 *   coroutine profile: total 103
 *   100 @ 0x55d0c1a2b3c4 0x55d0c1a2b100 ...
 *   #	0x55d0c1a2b3c4	switch_to+0x9c	/src/weft/src/core/sched.c:702
 *   ...
 *
 * Frames need libunwind (names and file:line: libdw) when weft was built; without them the
 * dumps show everything but the frames.
 *
 * Cost: nothing while nobody asks (a switch checks one flag on the coroutine it resumes).
 * A dump holds each scheduler thread's registry lock while it copies that thread's
 * coroutines and unwinds their stacks, so spawns and exits on that thread wait for it, and
 * a scheduler about to resume a coroutine being unwound waits for that one coroutine.
 *
 * SIGQUIT: while weft_main runs, SIGQUIT (Ctrl-\) writes the full dump to stderr and the
 * program goes on (Go prints and exits; a dump you can take twice is more use at 2 a.m.).
 * The signal handler only posts a semaphore; a dedicated thread writes the dump, so it
 * works even when every scheduler thread is busy. Set WEFT_SIGQUIT=0 in the environment
 * to leave SIGQUIT alone; weft_signal_watch(SIGQUIT) also takes it over while watched. */
#ifndef WEFT_DEBUG_H
#define WEFT_DEBUG_H

#include <stdint.h>
#include <stdio.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* weft_dump_full: write every started, live coroutine in the full form above to out
 * (NULL: stderr). Returns the number of coroutines written, -EPERM if the runtime is not
 * running, -ENOMEM. Any thread (coroutine or not); never parks; see Cost above. */
WEFT_API long weft_dump_full(FILE *out);

/* weft_dump_grouped: the grouped form above to out (NULL: stderr). Returns the number of
 * coroutines counted, -EPERM if the runtime is not running, -ENOMEM. Any thread; never
 * parks. */
WEFT_API long weft_dump_grouped(FILE *out);

/* ---- leak check (in the spirit of uber-go/goleak) ---- */

/* The coroutines alive at one moment (weft_leak_snapshot), to ignore later. */
typedef struct weft_leak_set weft_leak_set;

/* weft_leak_snapshot: remember the ids of every coroutine alive now (started or not).
 * Returns a new set (free with weft_leak_set_free) or NULL (out of memory, or the runtime
 * is not running). Any thread; never parks. */
WEFT_API weft_leak_set *weft_leak_snapshot(void);

/* weft_leak_set_free: free a set; NULL is allowed. Any thread. */
WEFT_API void weft_leak_set_free(weft_leak_set *set);

/* What weft_leak_verify ignores, and how long it waits. Zero fields take the defaults.
 * Function-name lists are NULL-terminated arrays of exact symbol names.
 *
 * "Top function": the first frame below weft's own, found by skipping frames from the
 * top up to the first public weft_ function (weft_chan_recv, weft_mutex_lock, ...) and
 * any weft_ frames right under it; for a coroutine parked in weft_chan_recv called from
 * stuck_in_recv, it is stuck_in_recv. Filters on frames need a build with libunwind. */
typedef struct weft_leak_options {
  const char *const *ignore_top;     /* ignore if its top function is one of these */
  const char *const *ignore_any;     /* ignore if any of its frames is one of these */
  const char *const *ignore_creator; /* ignore if created by one of these (the function
                                        that called weft_go, or the name weft_go_at got) */
  const weft_leak_set *ignore_set;   /* ignore every coroutine in this snapshot */
  int max_retries;                   /* default 20 */
  int64_t max_sleep_ns;              /* cap of the doubling sleeps; default 100 ms */
  FILE *out;                         /* where a failure is reported; default stderr */
} weft_leak_options;

/* weft_leak_verify: check that no coroutine is alive other than the caller and those opts
 * ignores. While some are, sleep (1 us doubling up to max_sleep_ns) and look again, up to
 * max_retries times, so coroutines that are just finishing are not reported. Returns 0
 * when clean; -EBUSY after writing "weft: N leaked coroutine(s)" and the full dump of each
 * leaked one (plus a count of leaked ones that never started) to opts->out; -EPERM if the
 * runtime is not running; -ENOMEM. opts may be NULL. Coroutine (may park, sleeping
 * between retries) or any other thread (sleeps the thread). */
WEFT_API int weft_leak_verify(const weft_leak_options *opts);

#ifdef __cplusplus
}
#endif
#endif
