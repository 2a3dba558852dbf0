/* test_deadlock.c: deadlock detection. When every coroutine is parked and nothing outside
 * them (a timer, an fd, the blocking pool, a signal) can wake one, weft prints "all
 * coroutines are asleep - deadlock!" and a dump, then aborts (run as child processes).
 * Parked coroutines that something can still wake are not a deadlock (run in-process). */
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "weft_test.h"

#define DEADLOCK_MSG "all coroutines are asleep - deadlock!"

/* Assert that some line of text holds every one of the strings in parts (NULL-ended). */
static void assert_line_has(const char *text, const char *const *parts)
{
  for (const char *line = text; line && *line;) {
    const char *end = strchr(line, '\n');
    size_t len = end ? (size_t)(end - line) : strlen(line);
    char *copy = strndup(line, len);
    bool all = true;
    for (const char *const *p = parts; *p && all; p++)
      all = strstr(copy, *p) != NULL;
    free(copy);
    if (all)
      return;
    line = end ? end + 1 : NULL;
  }
  fprintf(stderr, "no line with all of:");
  for (const char *const *p = parts; *p; p++)
    fprintf(stderr, " [%s]", *p);
  fprintf(stderr, "\nin:\n%s\n", text);
  fail();
}

/* ---- (a) main waits on a wait group nobody will finish ---- */

static int main_waits_forever(void *arg)
{
  weft_wg wg = WEFT_WG_INIT;
  (void)arg;
  weft_wg_add(&wg, 1);
  weft_wg_wait(&wg);
  return 0;
}

static void child_main_waits(void)
{
  run_weft(1, main_waits_forever, NULL);
  fprintf(stderr, "child: weft_main returned, no deadlock reported\n");
  exit(0);
}

static void test_main_wait_group_deadlock(void **state)
{
  (void)state;
  char *out = expect_child_died("main_waits", 30);
  assert_non_null(strstr(out, DEADLOCK_MSG));
  assert_line_has(out, (const char *const[]){"coroutine 1 \"main\"", "[wait group",
                                             "]: created at ", NULL});
  free(out);
}

/* ---- (b) several coroutines, all in wait groups, P=4 ---- */

#define NSLEEPERS 6

static weft_wg never_wg = WEFT_WG_INIT;
static weft_wg all_parked_wg = WEFT_WG_INIT;

/* Each sleeps a while first (a pending timer is a wake source: no deadlock yet), then
 * waits on a group that nobody finishes. */
static void sleeper(void *arg)
{
  long i = (long)(intptr_t)arg;
  weft_sleep(MS(10) * (i + 1));
  fprintf(stderr, "sleeper-%ld slept\n", i);
  weft_wg_wait(&never_wg);
  weft_wg_done(&all_parked_wg);
}

static int many_wait_forever(void *arg)
{
  (void)arg;
  weft_wg_add(&never_wg, 1);
  weft_wg_add(&all_parked_wg, NSLEEPERS);
  for (long i = 0; i < NSLEEPERS; i++) {
    char name[32];
    snprintf(name, sizeof name, "sleeper-%ld", i);
    if (weft_go_named(sleeper, (void *)(intptr_t)i, name) != 0)
      return -1;
  }
  weft_wg_wait(&all_parked_wg);
  return 0;
}

static void child_many_wait(void)
{
  run_weft(4, many_wait_forever, NULL);
  fprintf(stderr, "child: weft_main returned, no deadlock reported\n");
  exit(0);
}

static void test_many_wait_groups_deadlock_p4(void **state)
{
  (void)state;
  char *out = expect_child_died("many_wait", 30);
  const char *msg = strstr(out, DEADLOCK_MSG);
  assert_non_null(msg);
  assert_line_has(out, (const char *const[]){"coroutine 1 \"main\"", "[wait group",
                                             "]: created at ", NULL});
  for (int i = 0; i < NSLEEPERS; i++) {
    char name[32], slept[32];
    snprintf(name, sizeof name, "\"sleeper-%d\"", i);
    snprintf(slept, sizeof slept, "sleeper-%d slept", i);
    /* Not reported while its timer was pending, and reported once it waited. */
    const char *s = strstr(out, slept);
    assert_non_null(s);
    assert_true(s < msg);
    assert_line_has(msg, (const char *const[]){name, "[wait group", "created at ",
                                               "test_deadlock.c:", "in sleeper", NULL});
  }
  free(out);
}

/* ---- (c) not deadlocks: something outside the parked coroutines will wake one ---- */

static void done_after_sleep(void *arg)
{
  weft_sleep(MS(20));
  weft_wg_done(arg);
}

static int wait_while_other_sleeps(void *arg)
{
  weft_wg wg = WEFT_WG_INIT;
  (void)arg;
  weft_wg_add(&wg, 1);
  if (weft_go(done_after_sleep, &wg) != 0)
    return -1;
  weft_wg_wait(&wg);
  return 0;
}

static void test_sleeping_coroutine_is_not_deadlock(void **state)
{
  (void)state;
  run_weft_p1to4(wait_while_other_sleeps, NULL);
}

static long slow_call(void *arg)
{
  usleep(50 * 1000);
  return (long)(intptr_t)arg + 1;
}

/* main is the only coroutine and sits in a blocking call: every worker is idle. */
static int main_in_blocking_call(void *arg)
{
  (void)arg;
  int64_t t0 = weft_now();
  if (weft_blocking(slow_call, (void *)41) != 42)
    return -1;
  return weft_now() - t0 >= MS(50) ? 0 : -2;
}

static void test_blocking_call_is_not_deadlock(void **state)
{
  (void)state;
  run_weft_p1to4(main_in_blocking_call, NULL);
}

struct fd_pair {
  int fds[2];
  int delay_kind; /* 0: writer sleeps first, 1: writer makes a blocking call first */
};

static void late_writer(void *arg)
{
  struct fd_pair *p = arg;
  if (p->delay_kind == 0)
    weft_sleep(MS(20));
  else
    weft_blocking(slow_call, NULL);
  char byte = 'x';
  weft_write(p->fds[1], &byte, 1, WEFT_NO_DEADLINE);
}

/* main waits on a pipe that another coroutine writes later. */
static int wait_on_fd(void *arg)
{
  struct fd_pair p = {.delay_kind = (int)(intptr_t)arg};
  char byte = 0;
  if (pipe2(p.fds, O_CLOEXEC) != 0)
    return -1;
  int rc = weft_go(late_writer, &p);
  if (rc == 0 && weft_read(p.fds[0], &byte, 1, weft_now() + MS(10000)) != 1)
    rc = -2;
  weft_close(p.fds[0]);
  weft_close(p.fds[1]);
  return rc == 0 && byte == 'x' ? 0 : -3;
}

static void test_fd_wait_is_not_deadlock(void **state)
{
  (void)state;
  run_weft_p1to4(wait_on_fd, (void *)0);
  run_weft_p1to4(wait_on_fd, (void *)1);
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_main_wait_group_deadlock),
      cmocka_unit_test(test_many_wait_groups_deadlock_p4),
      cmocka_unit_test(test_sleeping_coroutine_is_not_deadlock),
      cmocka_unit_test(test_blocking_call_is_not_deadlock),
      cmocka_unit_test(test_fd_wait_is_not_deadlock),
  };
  const struct child_scenario children[] = {
      {"main_waits", child_main_waits},
      {"many_wait", child_many_wait},
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], children,
                        sizeof children / sizeof children[0]);
}
