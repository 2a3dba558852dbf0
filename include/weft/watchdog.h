/* weft/watchdog.h: an opt-in watchdog for coroutines blocked too long.
 *
 * Go's runtime reports a deadlock only when every goroutine is asleep; two coroutines
 * waiting for each other while the rest of the program runs (a partial deadlock) go
 * unnoticed. The watchdog looks at every coroutine each interval and reports those parked
 * for longer than a threshold on one of the chosen wait reasons (by default the sync
 * waits: chan send, chan receive, select, mutex, rwmutex, cond wait, wait group,
 * semaphore), with its dump entry (weft/debug.h's full form, backtrace included).
 *
 * A coroutine is reported when its wait passes the threshold, then again each time it
 * has waited repeat_after more thresholds (default 10: at T, 11T, 21T, ...), so a
 * long-stuck coroutine is neither forgotten nor reported every interval. A wait that ends
 * before the threshold is never reported. Waits are timed from the scheduler's clock at
 * the park, which may be up to a scheduling tick early (see core's wait_since), and seen
 * at the next scan: a report comes between threshold and threshold + interval.
 *
 * The watchdog is one coroutine named "weft watchdog" that sleeps between scans; it shows
 * in dumps and leak checks while it runs. Each scan copies the registries without stacks
 * (cheap) and unwinds only the coroutines it reports. Reports go to a callback, or as text
 * to a FILE; this header does not depend on the logging module. */
#ifndef WEFT_WATCHDOG_H
#define WEFT_WATCHDOG_H

#include <stdint.h>
#include <stdio.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One report. Strings live until the callback returns. */
typedef struct weft_watchdog_report {
  uint64_t id;        /* the coroutine's id */
  const char *name;   /* its name, "" if none */
  const char *reason; /* its wait reason, e.g. "chan receive" */
  int64_t waited_ns;  /* how long it has waited so far */
  int times;          /* 1 for the first report of this wait, 2 for the next, ... */
  const char *entry;  /* its dump entry (full form, several lines, ends with '\n') */
} weft_watchdog_report;

typedef struct weft_watchdog_options {
  int64_t threshold_ns;       /* report waits longer than this; default 10 s */
  int64_t interval_ns;        /* between scans; default threshold / 4 (at least 1 ms) */
  const char *const *reasons; /* NULL-terminated wait-reason prefixes to watch ("chan"
                                 matches "chan send" and "chan receive"); NULL: the
                                 sync waits listed above */
  int repeat_after;           /* report again after this many more thresholds; default
                                 10; negative: report each wait once only */
  /* Called on the watchdog coroutine for each report; must not block for long. NULL:
   * write "weft watchdog: coroutine N blocked on R for S s (report K)" and the entry to
   * out. */
  void (*report)(const weft_watchdog_report *r, void *arg);
  void *arg;
  FILE *out; /* default stderr */
} weft_watchdog_options;

/* weft_watchdog_start: start the watchdog with opts (NULL: defaults; copied, but the
 * reasons array and its strings are borrowed until weft_watchdog_stop). Returns 0,
 * -EBUSY if one is already running, -EINVAL for a negative threshold or interval, -EPERM
 * if the runtime is not running, -ENOMEM. Any thread while the runtime runs; never parks. */
WEFT_API int weft_watchdog_start(const weft_watchdog_options *opts);

/* weft_watchdog_stop: stop the watchdog and wait until its coroutine has returned (no
 * report is delivered after this returns). Returns 0, or -ESRCH if none is running.
 * Coroutine, may park (for at most the scan in progress); from another thread it sleeps
 * the thread. */
WEFT_API int weft_watchdog_stop(void);

#ifdef __cplusplus
}
#endif
#endif
