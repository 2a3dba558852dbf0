/* metrics_runtime.c: the runtime's own metrics, read at each scrape with
 * weft_runtime_stats_read and named after Go's client where it has a counterpart
 * (go_goroutines: weft_coroutines, go_threads: weft_threads). */
#include <errno.h>
#include <stdio.h>

#include "obs/metrics_internal.h"
#include "weft/runtime.h"

static void gauge(weft_metrics_emitter *em, const char *name, const char *help, double v)
{
  weft_metrics_emit(em, name, help, WEFT_METRIC_GAUGE, v, 0, NULL, NULL);
}

static void counter(weft_metrics_emitter *em, const char *name, const char *help, double v)
{
  weft_metrics_emit(em, name, help, WEFT_METRIC_COUNTER, v, 0, NULL, NULL);
}

static void runtime_collect(weft_metrics_emitter *em, void *arg)
{
  weft_runtime_stats st;
  (void)arg;
  if (weft_runtime_stats_read(&st) != 0)
    return; /* no runtime: nothing to say */
  gauge(em, "weft_coroutines", "Number of coroutines that currently exist.",
        (double)st.coroutines);
  gauge(em, "weft_threads",
        "Number of OS threads running coroutines or blocking calls (scheduler threads plus "
        "the blocking pool).",
        (double)st.procs + st.blocking_threads);
  gauge(em, "weft_procs", "Number of scheduler threads (P).", st.procs);
  gauge(em, "weft_runnable", "Number of coroutines waiting in run queues.",
        (double)st.runnable);
  gauge(em, "weft_timers", "Number of pending timers (sleeps, deadlines, tickers).",
        (double)st.timers);
  gauge(em, "weft_io_waiters", "Number of coroutines parked on a file descriptor.",
        (double)st.io_waiters);
  gauge(em, "weft_blocking_threads", "Number of threads in the blocking-call pool.",
        st.blocking_threads);
  gauge(em, "weft_blocking_busy", "Number of blocking-pool threads running a call.",
        st.blocking_busy);
  gauge(em, "weft_blocking_queued", "Number of blocking calls waiting for a pool thread.",
        (double)st.blocking_queued);
  gauge(em, "weft_stack_bytes", "Bytes of coroutine stack memory mapped.",
        (double)st.stack_bytes);
  counter(em, "weft_sched_switches_total", "Total switches into a coroutine.",
          (double)st.switches);
  counter(em, "weft_sched_steals_total",
          "Total coroutines taken from another scheduler thread's queue.", (double)st.steals);
  counter(em, "weft_poller_waits_total", "Total waits of the network poller (epoll).",
          (double)st.poller_waits);
  int n = st.procs < WEFT_STATS_MAX_PROCS ? st.procs : WEFT_STATS_MAX_PROCS;
  for (int i = 0; i < n; i++) {
    char proc[16];
    snprintf(proc, sizeof proc, "%d", i);
    weft_metrics_emit(em, "weft_proc_idle_seconds_total",
                      "Total seconds each scheduler thread spent idle, waiting for work.",
                      WEFT_METRIC_COUNTER, (double)st.proc_idle_ns[i] / 1e9, 1,
                      (const char *[]){"proc"}, (const char *[]){proc});
  }
}

int weft_metrics_register_runtime(weft_metrics_registry *reg)
{
  return weft_metrics_register_collector(reg, runtime_collect, NULL);
}
