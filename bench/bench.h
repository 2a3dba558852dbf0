/* bench.h: the interface between weft-bench's driver (main.c, child.c) and its workloads.
 *
 * A workload is one row of bench_workloads[] (workloads.c). It comes in one of two kinds:
 *   sized  run(n) does about n operations and returns the elapsed nanoseconds, reporting
 *          through *ops how many it did; the value is elapsed / ops. The driver picks n so
 *          that one run takes at least BENCH_MIN_REP_NS.
 *   fixed  measure() returns the value itself (the size is part of the definition).
 * Both are called from the main coroutine of a runtime started with the row's procs.
 * BENCH_FRESH_PROCESS runs every measured repetition in a new process (see child.c).
 *
 * Adding a workload: write its function in a workloads_*.c file, declare it below and add
 * one row to the table. */
#ifndef WEFT_BENCH_H
#define WEFT_BENCH_H

#include <stdint.h>

/* The least duration of one measured repetition of a sized workload. */
#define BENCH_MIN_REP_NS 200000000LL

enum bench_flags {
  BENCH_FRESH_PROCESS = 1 << 0, /* each repetition in a fresh child process */
};

struct bench_workload {
  const char *name;
  int procs;        /* scheduler threads while it runs (P) */
  const char *unit; /* ns/op, us, ms or bytes/op: also chooses the printed precision */
  int64_t (*run)(int64_t n, int64_t *ops); /* sized workloads, else NULL */
  double (*measure)(void);                 /* fixed workloads, else NULL */
  unsigned flags;                          /* enum bench_flags */
};

extern const struct bench_workload bench_workloads[];
extern const int bench_nworkloads;

/* util.c */
int64_t bench_now(void);     /* monotonic ns */
long long bench_vmrss(void); /* VmRSS of this process in bytes; exits on error */
double bench_median(const double *v, int n);
double bench_percentile(double *v, long n, double p); /* sorts v in place; p in [0, 1] */
void bench_die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

/* child.c: the fresh-process repetitions. */
/* bench_child_value: run one repetition of w in a new process of this program (sized
 * workloads with the given n, fixed ones with n = 0) and return its value. */
double bench_child_value(const struct bench_workload *w, int64_t n);
/* bench_child_main: the child side ("--child NAME N"); returns the exit status. */
int bench_child_main(const char *name, const char *n);
/* bench_run_in_runtime: run fn(arg) as the main coroutine of a runtime with procs
 * scheduler threads and default stack settings; exits on failure. */
void bench_run_in_runtime(int procs, int (*fn)(void *), void *arg);
const struct bench_workload *bench_find(const char *name);

/* workloads_core.c: what the runtime core enables. */
int64_t bench_switch(int64_t n, int64_t *ops);
int64_t bench_spawn_join(int64_t n, int64_t *ops);
double bench_parked_mem(void);
double bench_sleep_100k(void);
double bench_sleep_lateness_p99(void);

/* workloads_chan.c: channels, select, mutex and cancellation. */
int64_t bench_pingpong(int64_t n, int64_t *ops);
int64_t bench_spsc(int64_t n, int64_t *ops);
int64_t bench_mpmc(int64_t n, int64_t *ops);
int64_t bench_select4(int64_t n, int64_t *ops);
int64_t bench_mutex_contended(int64_t n, int64_t *ops);
double bench_cancel_fanout(void);

#endif
