/* workloads_core.c: the workloads the runtime core enables: switching, spawning, parked
 * memory and timers. Each mirrors the function of the same name in the Go peer
 * (shared/peers/go/gobench/main.go) line for line: what is timed starts and stops at the
 * same points. All run on the main coroutine of a runtime the driver started. */
#include <stdlib.h>

#include "bench.h"
#include "weft/chan.h"
#include "weft/runtime.h"
#include "weft/sync.h"

#define FIXED_COUNT 100000 /* coroutines in parked_mem, sleep_100k, sleep_lateness_p99 */
#define MS          1000000LL

static void spawn(void (*fn)(void *), void *arg)
{
  int rc = weft_go(fn, arg);
  if (rc != 0)
    bench_die("weft_go failed: %d", rc);
}

/* ---- switch_1p: two coroutines each call weft_yield() n times ---- */

struct switch_state {
  int64_t n;
  weft_wg wg;
};

static void yielder(void *arg)
{
  struct switch_state *s = arg;
  for (int64_t i = 0; i < s->n; i++)
    weft_yield();
  weft_wg_done(&s->wg);
}

int64_t bench_switch(int64_t n, int64_t *ops)
{
  struct switch_state s = {.n = n, .wg = WEFT_WG_INIT};
  weft_wg_add(&s.wg, 2);
  int64_t t0 = bench_now();
  spawn(yielder, &s);
  spawn(yielder, &s);
  weft_wg_wait(&s.wg);
  *ops = 2 * n;
  return bench_now() - t0;
}

/* ---- spawn_join: n coroutines that only mark a wait group done ---- */

static void nothing(void *arg)
{
  weft_wg_done(arg);
}

int64_t bench_spawn_join(int64_t n, int64_t *ops)
{
  weft_wg wg = WEFT_WG_INIT;
  int64_t t0 = bench_now();
  weft_wg_add(&wg, n);
  for (int64_t i = 0; i < n; i++)
    spawn(nothing, &wg);
  weft_wg_wait(&wg);
  *ops = n;
  return bench_now() - t0;
}

/* ---- parked_mem: resident memory per parked coroutine ----
 *
 * As in the contract and gobench: every coroutine signals that it started, then parks
 * receiving on one shared unbuffered channel, which is closed at the end to release them.
 * (Before channels existed this parked them in weft_wg_wait on a shared group; the cost
 * per parked coroutine, its touched stack pages and its record, is the same.) */

struct parked_state {
  weft_chan *ch; /* never sent on; closed to release everyone */
  weft_wg ready; /* each coroutine marks it done once it runs */
  weft_wg done;  /* each coroutine marks it done after its receive returned */
};

static void parked(void *arg)
{
  struct parked_state *s = arg;
  int v;
  weft_wg_done(&s->ready);
  (void)weft_chan_recv(s->ch, &v, WEFT_NO_DEADLINE); /* -EPIPE once closed */
  weft_wg_done(&s->done);
}

double bench_parked_mem(void)
{
  struct parked_state s = {weft_chan_new(sizeof(int), 0), WEFT_WG_INIT, WEFT_WG_INIT};
  if (!s.ch)
    bench_die("parked_mem: out of memory");
  weft_wg_add(&s.ready, FIXED_COUNT);
  weft_wg_add(&s.done, FIXED_COUNT);
  long long before = bench_vmrss();
  for (int i = 0; i < FIXED_COUNT; i++)
    spawn(parked, &s);
  weft_wg_wait(&s.ready);
  weft_sleep(20 * MS); /* every one has run up to its receive; let the last ones park */
  long long after = bench_vmrss();
  weft_chan_close(s.ch); /* release them so the runtime stops with nothing alive */
  weft_wg_wait(&s.done);
  weft_chan_release(s.ch);
  return (double)(after - before) / FIXED_COUNT;
}

/* ---- sleep_100k: 100,000 coroutines each sleep 10 ms once ---- */

static void sleeper(void *arg)
{
  weft_sleep(10 * MS);
  weft_wg_done(arg);
}

double bench_sleep_100k(void)
{
  weft_wg wg = WEFT_WG_INIT;
  weft_wg_add(&wg, FIXED_COUNT);
  int64_t t0 = bench_now();
  for (int i = 0; i < FIXED_COUNT; i++)
    spawn(sleeper, &wg);
  weft_wg_wait(&wg);
  return (double)(bench_now() - t0) / MS;
}

/* ---- sleep_lateness_p99 (extra): how late timers fire under a load of 100,000 ----
 *
 * Each coroutine sleeps until a deadline 5-50 ms after it starts (uniform, from a fixed
 * seed so every run sleeps the same set) and records how late it woke. */

struct late_sleep {
  int64_t delay; /* ns, set by the spawner */
  int64_t late;  /* ns past the deadline at wake-up, set by the sleeper */
  weft_wg *wg;
};

static void late_sleeper(void *arg)
{
  struct late_sleep *a = arg;
  int64_t deadline = weft_now() + a->delay;
  weft_sleep_until(deadline);
  a->late = weft_now() - deadline;
  weft_wg_done(a->wg);
}

static uint64_t xorshift64(uint64_t *s)
{
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

double bench_sleep_lateness_p99(void)
{
  struct late_sleep *a = calloc(FIXED_COUNT, sizeof *a);
  double *late_us = calloc(FIXED_COUNT, sizeof *late_us);
  weft_wg wg = WEFT_WG_INIT;
  uint64_t seed = 0x5eed5eed5eedULL;
  if (!a || !late_us)
    bench_die("sleep_lateness_p99: out of memory");
  weft_wg_add(&wg, FIXED_COUNT);
  for (int i = 0; i < FIXED_COUNT; i++) {
    a[i].delay = 5 * MS + (int64_t)(xorshift64(&seed) % (45 * MS + 1));
    a[i].wg = &wg;
    spawn(late_sleeper, &a[i]);
  }
  weft_wg_wait(&wg);
  for (int i = 0; i < FIXED_COUNT; i++)
    late_us[i] = (double)a[i].late / 1000.0;
  double p99 = bench_percentile(late_us, FIXED_COUNT, 0.99);
  free(late_us);
  free(a);
  return p99;
}
