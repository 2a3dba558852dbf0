/* test_dump.c: weft_dump_full and weft_dump_grouped (contents, frames, grouping), SIGQUIT,
 * and dumps taken in a loop while coroutines park and wake on four threads. */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "coro_check.h"
#include "weft_test.h"

/* A dump written to memory. */
struct text {
  char *buf;
  size_t len;
};

static FILE *text_open(struct text *t)
{
  t->buf = NULL;
  t->len = 0;
  return open_memstream(&t->buf, &t->len);
}

/* Whether this build of weft collects frames (libunwind at build time). */
static bool has_frames(const char *dump)
{
  return !strstr(dump, "built without libunwind");
}

struct world {
  weft_chan *gate;
  weft_mutex mu;
  weft_wg done;
  atomic_int spinning, stop_spin;
};

__attribute__((noinline)) static void stuck_in_recv(weft_chan *ch)
{
  int v;
  weft_chan_recv(ch, &v, WEFT_NO_DEADLINE);
  __asm__ volatile("" ::: "memory"); /* keep the call from becoming a tail call */
}

static void stuck_entry(void *arg)
{
  struct world *w = arg;
  stuck_in_recv(w->gate);
  weft_wg_done(&w->done);
}

__attribute__((noinline)) static void stuck_on_mutex(struct world *w)
{
  weft_mutex_lock(&w->mu);
  weft_mutex_unlock(&w->mu);
  __asm__ volatile("" ::: "memory");
}

static void mutex_entry(void *arg)
{
  stuck_on_mutex(arg);
  weft_wg_done(&((struct world *)arg)->done);
}

static void spin_entry(void *arg)
{
  struct world *w = arg;
  atomic_store(&w->spinning, 1);
  while (!atomic_load(&w->stop_spin))
    __asm__ volatile("" ::: "memory");
  weft_wg_done(&w->done);
}

/* Park until cond(arg) holds, at most 5 s. */
static bool wait_for(bool (*cond)(void *), void *arg)
{
  for (int i = 0; i < 5000; i++) {
    if (cond(arg))
      return true;
    weft_sleep(MS(1));
  }
  return false;
}

static bool dump_has(void *needle)
{
  struct text t;
  FILE *f = text_open(&t);
  weft_dump_full(f);
  fclose(f);
  bool found = strstr(t.buf, needle) != NULL;
  free(t.buf);
  return found;
}

static bool is_spinning(void *arg)
{
  return atomic_load(&((struct world *)arg)->spinning);
}

static void expect_in(const char *text, const char *needle)
{
  if (!strstr(text, needle)) {
    fprintf(stderr, "missing \"%s\" in:\n%s\n", needle, text);
    CHECK(!"dump text");
  }
}

static int contents_main(void *arg)
{
  struct world w = {.gate = weft_chan_new(sizeof(int), 0)};
  weft_mutex_init(&w.mu);
  weft_wg_init(&w.done);
  weft_mutex_lock(&w.mu);
  weft_wg_add(&w.done, 3);
  CHECK_EQ(weft_go_named(stuck_entry, &w, "stuck"), 0);
  CHECK_EQ(weft_go(mutex_entry, &w), 0);
  CHECK_EQ(weft_go_named(spin_entry, &w, "spinner"), 0);
  CHECK(wait_for(dump_has, "\"stuck\" [chan receive]:"));
  CHECK(wait_for(dump_has, "[mutex]:"));
  CHECK(wait_for(is_spinning, &w));

  struct text t;
  FILE *f = text_open(&t);
  long n = weft_dump_full(f);
  fclose(f);
  CHECK_EQ(n, 4);
  expect_in(t.buf, "coroutine 1 \"main\" [running]:\n");
  expect_in(t.buf, "\"stuck\" [chan receive]:\n");
  expect_in(t.buf, "\"spinner\" [running]:\n");
  expect_in(t.buf, "[running]:\n\tcoroutine running on other thread; stack unavailable\n");
  /* Without symbols, "created by" names what weft_go recorded: the entry function. */
  expect_in(t.buf,
            has_frames(t.buf) ? "created by contents_main at " : "created by stuck_entry at ");
  expect_in(t.buf, "test_dump.c:");
  if (has_frames(t.buf)) {
    expect_in(t.buf, "stuck_in_recv(...)\n\t");
    expect_in(t.buf, "stuck_on_mutex(...)\n\t");
    expect_in(t.buf, "weft__park(...)\n\t");
    expect_in(t.buf, "contents_main(...)\n\t"); /* the caller's own stack */
    /* The caller's stack starts at its call of the dump. */
    CHECK(strstr(t.buf, "weft_dump_full(...)") == NULL);
    /* Innermost first: the park, then stuck_in_recv, then stuck_entry. (Release builds
     * may lose weft_chan_recv's own frame to a tail call.) */
    const char *stuck = strstr(t.buf, "\"stuck\" [chan receive]:");
    const char *recv = stuck ? strstr(stuck, "weft__park(...)") : NULL;
    const char *fn = recv ? strstr(recv, "stuck_in_recv(...)") : NULL;
    CHECK(fn && strstr(fn, "stuck_entry(...)"));
  } else {
    fprintf(stderr, "weft built without libunwind: frames not checked\n");
  }
  free(t.buf);

  atomic_store(&w.stop_spin, 1);
  weft_mutex_unlock(&w.mu);
  weft_chan_close(w.gate);
  weft_wg_wait(&w.done);
  weft_chan_release(w.gate);
  return 0;
}

static void test_full_contents(void **state)
{
  checks_reset();
  CHECK_EQ(run_weft(2, contents_main, NULL), 0);
  ASSERT_NO_CHECK_FAILED();
}

static void test_outside_runtime(void **state)
{
  assert_int_equal(weft_dump_full(stderr), -EPERM);
  assert_int_equal(weft_dump_grouped(stderr), -EPERM);
}

enum { GROUP = 100 };

static bool grouped_has(void *needle)
{
  struct text t;
  FILE *f = text_open(&t);
  weft_dump_grouped(f);
  fclose(f);
  bool found = strstr(t.buf, needle) != NULL;
  free(t.buf);
  return found;
}

static int grouped_main(void *arg)
{
  struct world w = {.gate = weft_chan_new(sizeof(int), 0)};
  weft_wg_init(&w.done);
  weft_wg_add(&w.done, GROUP);
  for (int i = 0; i < GROUP; i++)
    CHECK_EQ(weft_go(stuck_entry, &w), 0);
  CHECK(wait_for(grouped_has, "coroutine profile: total 101\n"));
  struct text t;
  FILE *f = text_open(&t);
  long n = weft_dump_grouped(f);
  fclose(f);
  CHECK_EQ(n, GROUP + 1);
  if (has_frames(t.buf)) {
    /* All parked at one site: one group of 100, listed first, then main's. */
    CHECK(strncmp(t.buf, "coroutine profile: total 101\n100 @ 0x", 37) == 0);
    expect_in(t.buf, "\tstuck_in_recv+0x");
    expect_in(t.buf, "\n1 @ 0x");
    expect_in(t.buf, "\tgrouped_main+0x");
  } else {
    expect_in(t.buf, "101 @\n");
  }
  if (check_failures)
    fprintf(stderr, "%s\n", t.buf);
  free(t.buf);
  weft_chan_close(w.gate);
  weft_wg_wait(&w.done);
  weft_chan_release(w.gate);
  return 0;
}

static void test_grouped(void **state)
{
  checks_reset();
  CHECK_EQ(run_weft(4, grouped_main, NULL), 0);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- SIGQUIT ---- */

static int sigquit_main(void *arg)
{
  struct world w = {.gate = weft_chan_new(sizeof(int), 0)};
  weft_wg_init(&w.done);
  weft_wg_add(&w.done, 1);
  weft_go_named(stuck_entry, &w, "stuck");
  weft_sleep(MS(20));
  raise(SIGQUIT);
  weft_sleep(MS(300)); /* the dump thread writes meanwhile */
  fprintf(stderr, "still running after SIGQUIT\n");
  weft_chan_close(w.gate);
  weft_wg_wait(&w.done);
  weft_chan_release(w.gate);
  return 0;
}

static void child_sigquit(void)
{
  int rc = weft_main(sigquit_main, NULL);
  fprintf(stderr, "weft_main returned %d\n", rc);
  exit(rc == 0 ? 0 : 1);
}

static void test_sigquit(void **state)
{
  int status = 0;
  char *out = expect_child_output("sigquit", 60, &status);
  bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
            strstr(out, "SIGQUIT: coroutine dump\n") &&
            strstr(out, "\"stuck\" [chan receive]:\n") &&
            strstr(out, "still running after SIGQUIT\n") && strstr(out, "weft_main returned 0");
  if (ok && has_frames(out))
    ok = strstr(out, "stuck_in_recv(...)") != NULL;
  if (!ok)
    fprintf(stderr, "status %d, child stderr:\n%s\n", status, out);
  free(out);
  assert_true(ok);
}

static int disposition_main(void *arg)
{
  struct sigaction sa;
  sigaction(SIGQUIT, NULL, &sa);
  *(bool *)arg = sa.sa_handler != SIG_DFL;
  return 0;
}

/* The handler is there while the runtime runs, unless WEFT_SIGQUIT=0, and gone after. */
static void test_sigquit_disposition(void **state)
{
  bool installed = false;
  struct sigaction sa;
  assert_int_equal(run_weft(1, disposition_main, &installed), 0);
  assert_true(installed);
  sigaction(SIGQUIT, NULL, &sa);
  assert_true(sa.sa_handler == SIG_DFL);
  setenv("WEFT_SIGQUIT", "0", 1);
  assert_int_equal(run_weft(1, disposition_main, &installed), 0);
  unsetenv("WEFT_SIGQUIT");
  assert_false(installed);
}

/* ---- dumps while coroutines park and wake (P=4) ---- */

enum { PAIRS = 32 };

struct stress {
  atomic_int stop;
  atomic_long rounds, dumps;
  weft_wg done;
  weft_mutex mu;
  long shared; /* guarded by mu */
};

struct pair {
  struct stress *s;
  weft_chan *a, *b;
};

__attribute__((noinline)) static void churn_loop(struct pair *p, bool first)
{
  int v = 0;
  while (!atomic_load_explicit(&p->s->stop, memory_order_relaxed)) {
    /* Deadlines, so that neither waits for a partner that has stopped. */
    int64_t deadline = weft_now() + MS(20);
    if (first) {
      weft_chan_send(p->a, &v, deadline);
      weft_chan_recv(p->b, &v, deadline);
    } else {
      weft_chan_recv(p->a, &v, deadline);
      weft_chan_send(p->b, &v, deadline);
    }
    weft_mutex_lock(&p->s->mu);
    p->s->shared++;
    weft_mutex_unlock(&p->s->mu);
    if (v++ % 7 == 0)
      weft_yield();
    atomic_fetch_add_explicit(&p->s->rounds, 1, memory_order_relaxed);
  }
}

static void churn_first(void *arg)
{
  struct pair *p = arg;
  churn_loop(p, true);
  weft_wg_done(&p->s->done);
}

static void churn_second(void *arg)
{
  struct pair *p = arg;
  churn_loop(p, false);
  weft_wg_done(&p->s->done);
}

static void *foreign_dumper(void *arg)
{
  struct stress *s = arg;
  FILE *null = fopen("/dev/null", "w");
  while (!atomic_load(&s->stop)) {
    if (weft_dump_full(null) < 0 || weft_dump_grouped(null) < 0)
      break;
    atomic_fetch_add(&s->dumps, 1);
  }
  fclose(null);
  return NULL;
}

static int stress_main(void *arg)
{
  struct stress *s = arg;
  struct pair pairs[PAIRS];
  weft_wg_init(&s->done);
  weft_mutex_init(&s->mu);
  weft_wg_add(&s->done, 2 * PAIRS);
  for (int i = 0; i < PAIRS; i++) {
    pairs[i] = (struct pair){s, weft_chan_new(sizeof(int), 0), weft_chan_new(sizeof(int), 0)};
    weft_go(churn_first, &pairs[i]);
    weft_go(churn_second, &pairs[i]);
  }
  pthread_t t;
  CHECK_EQ(pthread_create(&t, NULL, foreign_dumper, s), 0);
  int64_t end = weft_now() + (SANITIZED ? MS(1500) : MS(1000));
  long frames_seen = 0;
  while (weft_now() < end) {
    struct text tx;
    FILE *f = text_open(&tx);
    long n = weft_dump_full(f);
    fclose(f);
    CHECK(n >= 1);
    if (strstr(tx.buf, "churn_loop(...)"))
      frames_seen++;
    free(tx.buf);
    atomic_fetch_add(&s->dumps, 1);
    weft_sleep(MS(1) / 4);
  }
  atomic_store(&s->stop, 1);
  pthread_join(t, NULL);
  weft_wg_wait(&s->done);
  for (int i = 0; i < PAIRS; i++) {
    weft_chan_release(pairs[i].a);
    weft_chan_release(pairs[i].b);
  }
  fprintf(stderr, "stress: %ld rounds, %ld dumps, %ld with churn frames\n",
          atomic_load(&s->rounds), atomic_load(&s->dumps), frames_seen);
  CHECK(atomic_load(&s->rounds) > 0);
  CHECK(atomic_load(&s->dumps) >= 2); /* the portable back end dumps slowly: see report */
  CHECK_EQ(s->shared, atomic_load(&s->rounds));
  return 0;
}

static void test_dump_while_running(void **state)
{
  struct stress s = {0};
  checks_reset();
  CHECK_EQ(run_weft(4, stress_main, &s), 0);
  ASSERT_NO_CHECK_FAILED();
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_outside_runtime),
      cmocka_unit_test(test_full_contents),
      cmocka_unit_test(test_grouped),
      cmocka_unit_test(test_sigquit),
      cmocka_unit_test(test_sigquit_disposition),
      cmocka_unit_test(test_dump_while_running),
  };
  const struct child_scenario children[] = {{"sigquit", child_sigquit}};
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], children, 1);
}
