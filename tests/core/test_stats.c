/* test_stats.c: weft_runtime_stats_read counts what the runtime is doing. */
#include <unistd.h>

#include "coro_check.h"
#include "weft_test.h"

static void test_outside_runtime(void **state)
{
  weft_runtime_stats st;
  assert_int_equal(weft_runtime_stats_read(&st), -EPERM);
  assert_int_equal(weft_runtime_stats_read(NULL), -EINVAL);
}

struct world {
  weft_chan *gate; /* parkers wait here */
  int pipe_fd[2];  /* the reader waits on pipe_fd[0] */
  weft_wg done;
  atomic_int blocking_started;
  atomic_int release_blocking;
};

static void parker(void *arg)
{
  struct world *w = arg;
  int v;
  weft_chan_recv(w->gate, &v, WEFT_NO_DEADLINE);
  weft_wg_done(&w->done);
}

static void sleeper(void *arg)
{
  struct world *w = arg;
  weft_sleep(MS(300));
  weft_wg_done(&w->done);
}

static void reader(void *arg)
{
  struct world *w = arg;
  char c;
  weft_read(w->pipe_fd[0], &c, 1, weft_now() + MS(5000));
  weft_wg_done(&w->done);
}

static long spin_until_released(void *arg)
{
  struct world *w = arg;
  atomic_store(&w->blocking_started, 1);
  while (!atomic_load(&w->release_blocking))
    usleep(1000);
  return 0;
}

static void blocker(void *arg)
{
  weft_blocking(spin_until_released, arg);
  weft_wg_done(&((struct world *)arg)->done);
}

enum { PARKERS = 50 };

static int stats_main(void *arg)
{
  struct world w = {.gate = weft_chan_new(sizeof(int), 0)};
  CHECK_EQ(pipe(w.pipe_fd), 0);
  weft_wg_init(&w.done);
  weft_runtime_stats before, during, after;
  CHECK_EQ(weft_runtime_stats_read(&before), 0);
  CHECK_EQ(before.procs, weft_procs());
  CHECK(before.coroutines >= 1); /* main */
  CHECK(before.stack_bytes > 0);

  weft_wg_add(&w.done, PARKERS + 3);
  for (int i = 0; i < PARKERS; i++)
    weft_go(parker, &w);
  weft_go(sleeper, &w);
  weft_go(reader, &w);
  weft_go(blocker, &w);
  while (!atomic_load(&w.blocking_started))
    weft_sleep(MS(1));
  weft_sleep(MS(50)); /* every one has parked */
  CHECK_EQ(weft_runtime_stats_read(&during), 0);
  CHECK_EQ(during.coroutines, before.coroutines + PARKERS + 3);
  CHECK(during.timers >= 1);
  CHECK(during.io_waiters >= 1);
  CHECK(during.blocking_busy >= 1 && during.blocking_threads >= during.blocking_busy);
  CHECK(during.switches >= before.switches + PARKERS + 3);
  CHECK(during.uptime_ns > before.uptime_ns);
  int64_t idle = 0;
  for (int i = 0; i < during.procs; i++)
    idle += during.proc_idle_ns[i] - before.proc_idle_ns[i];
  CHECK(idle > MS(10)); /* the threads idled through the 50 ms */

  weft_chan_close(w.gate);
  CHECK_EQ(write(w.pipe_fd[1], "x", 1), 1);
  atomic_store(&w.release_blocking, 1);
  weft_wg_wait(&w.done);
  /* The last ones are done but may not have returned yet: give them a moment. */
  for (int i = 0; i < 1000; i++) {
    CHECK_EQ(weft_runtime_stats_read(&after), 0);
    if (after.coroutines == before.coroutines && after.blocking_busy == 0)
      break;
    weft_sleep(MS(1));
  }
  CHECK_EQ(after.coroutines, before.coroutines);
  CHECK_EQ(after.io_waiters, 0);
  CHECK_EQ(after.blocking_busy, 0);
  CHECK(after.poller_waits > before.poller_waits);
  weft_chan_release(w.gate);
  weft_close(w.pipe_fd[0]);
  close(w.pipe_fd[1]);
  return 0;
}

static void test_counts(void **state)
{
  checks_reset();
  run_weft_p1to4(stats_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

/* Work readied onto one thread's queue is stolen by the other when P > 1: closing a
 * channel readies its 64 receivers on the closer's own queue. */
struct herd {
  weft_chan *gate;
  weft_wg wg;
};

static void spinner(void *arg)
{
  struct herd *h = arg;
  int v;
  weft_chan_recv(h->gate, &v, WEFT_NO_DEADLINE);
  for (int i = 0; i < 100; i++)
    weft_yield();
  weft_wg_done(&h->wg);
}

static int steals_main(void *arg)
{
  struct herd h;
  weft_wg_init(&h.wg);
  weft_runtime_stats before, after;
  weft_runtime_stats_read(&before);
  for (int round = 0; round < 20; round++) {
    h.gate = weft_chan_new(sizeof(int), 0);
    weft_wg_add(&h.wg, 64);
    for (int i = 0; i < 64; i++)
      weft_go(spinner, &h);
    weft_sleep(MS(2)); /* all parked */
    weft_chan_close(h.gate);
    weft_wg_wait(&h.wg);
    weft_chan_release(h.gate);
  }
  weft_runtime_stats_read(&after);
  CHECK(after.steals > before.steals);
  CHECK(after.switches >= before.switches + 20 * 64); /* each ran at least once */
  return 0;
}

static void test_steals(void **state)
{
  checks_reset();
  CHECK_EQ(run_weft(2, steals_main, NULL), 0);
  ASSERT_NO_CHECK_FAILED();
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_outside_runtime),
      cmocka_unit_test(test_counts),
      cmocka_unit_test(test_steals),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
