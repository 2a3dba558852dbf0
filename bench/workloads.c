/* workloads.c: the table of weft-bench workloads, in the order they run and --list prints.
 * The definitions are those of shared/specs/bench.md; rows marked "extra" are not in the
 * contract and have no counterpart in the Go peer (gobench). */
#include <stddef.h>

#include "bench.h"

const struct bench_workload bench_workloads[] = {
    {"switch_1p", 1, "ns/op", bench_switch, NULL, 0},
    {"chan_pingpong_1p", 1, "ns/op", bench_pingpong, NULL, 0},
    {"chan_pingpong_2p", 2, "ns/op", bench_pingpong, NULL, 0},
    {"chan_spsc", 2, "ns/op", bench_spsc, NULL, 0},
    {"chan_mpmc", 2, "ns/op", bench_mpmc, NULL, 0},
    {"select4", 2, "ns/op", bench_select4, NULL, 0},
    {"spawn_join", 2, "ns/op", bench_spawn_join, NULL, 0},
    {"mutex_contended", 2, "ns/op", bench_mutex_contended, NULL, 0},
    /* extra: spawn_join with stacks, records and heap cold (first-touch page cost) */
    {"spawn_join_cold", 2, "ns/op", bench_spawn_join, NULL, BENCH_FRESH_PROCESS},
    {"parked_mem", 2, "bytes/op", NULL, bench_parked_mem, BENCH_FRESH_PROCESS},
    {"sleep_100k", 2, "ms", NULL, bench_sleep_100k, 0},
    {"cancel_fanout", 2, "us", NULL, bench_cancel_fanout, 0},
    /* extra: 99th percentile of how late 100,000 sleeps of 5-50 ms wake */
    {"sleep_lateness_p99", 2, "us", NULL, bench_sleep_lateness_p99, 0},
};

const int bench_nworkloads = (int)(sizeof bench_workloads / sizeof bench_workloads[0]);
