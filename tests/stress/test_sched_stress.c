/* test_sched_stress.c: the scheduler under a random mix of everything that switches.
 *
 * Thousands of coroutines on P = 1, 2, 3 and 4 each run a random program of yields,
 * short sleeps, blocking calls (weft_blocking), spawning children, and token exchanges
 * with a partner coroutine over pipes and datagram sockets (parking in fd waits). The
 * checks: every coroutine spawned ran exactly once and finished exactly once (a counter
 * per coroutine), every token written to an fd was read exactly once, by the right reader,
 * and nothing more was read (EOF after the last token), every blocking call returned its
 * own result and every sleep slept long enough, and nothing is left alive (run_weft's leak
 * check). The seed is printed; WEFT_TEST_SEED=N replays a run.
 *
 * Also: ping-pong pairs that keep waking each other must not starve a coroutine that
 * yields in a loop on P=1, and a yield loop must not starve coroutines waiting on fds. */
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "weft_test.h"

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif

/* Under ThreadSanitizer every coroutine is a TSan fiber (about 1 MiB each, at most 8128
 * alive with the threads): fewer, and more rounds of them. */
#if UNDER_TSAN
#define TOP_COROS   600 /* spawned by main */
#define CHILD_COROS 600 /* spawned by the others */
#define OPS         16  /* random operations per coroutine */
#define ROUNDS      3   /* runtimes started per P, each with its own seed */
#elif defined(__SANITIZE_ADDRESS__)
#define TOP_COROS   4000
#define CHILD_COROS 4000
#define OPS         24
#define ROUNDS      3
#else
#define TOP_COROS   8000
#define CHILD_COROS 8000
#define OPS         32
#define ROUNDS      4
#endif
#define TOTAL_COROS    (TOP_COROS + CHILD_COROS)
#define MAX_TOKENS     6 /* per direction of a pair */
#define MAX_DEPTH      4 /* children of children of ... */
#define IO_DEADLINE_NS MS(30000)

/* ---- shared state of one run ---- */

struct rec {
  atomic_int spawned; /* set by whoever spawned it */
  atomic_int started; /* times its function began */
  atomic_int finished;
};

struct link; /* one direction of a pair: fd pair plus token bookkeeping */

struct stress {
  uint64_t seed;
  struct rec recs[TOTAL_COROS];
  atomic_long next_child; /* next free record for a child (main's own come first) */
  weft_wg all;            /* one per spawned coroutine */
  struct link *links;     /* 2 per pair */
  long npairs;
  atomic_long errors;
  char first_error[256];
  atomic_flag error_recorded;
  atomic_long n_yield, n_sleep, n_blocking, n_spawn, n_token;
};

struct link {
  int rfd, wfd;
  bool dgram;
  int ntokens;
  atomic_int reads[MAX_TOKENS]; /* how many times each token was read */
};

static struct stress *S;

static void record_error(const char *fmt, long a, long b)
{
  atomic_fetch_add(&S->errors, 1);
  if (!atomic_flag_test_and_set(&S->error_recorded))
    snprintf(S->first_error, sizeof S->first_error, fmt, a, b);
}

/* ---- operations ---- */

static long blocking_echo(void *arg)
{
  uint64_t v = (uint64_t)(uintptr_t)arg;
  if (v % 4 == 0)
    usleep((useconds_t)(v % 50));
  return (long)(v * 3 + 1);
}

static void op_blocking(uint64_t *rng)
{
  uint64_t v = test_rand(rng) & 0xffffff;
  long r = weft_blocking(blocking_echo, (void *)(uintptr_t)v);
  if (r != (long)(v * 3 + 1))
    record_error("blocking call returned %ld, expected %ld", r, (long)(v * 3 + 1));
  atomic_fetch_add_explicit(&S->n_blocking, 1, memory_order_relaxed);
}

static void op_sleep(uint64_t *rng)
{
  int64_t ns = (int64_t)(test_rand(rng) % 200000);
  int64_t t0 = weft_now();
  weft_sleep(ns);
  if (weft_now() - t0 < ns)
    record_error("slept %ld ns of %ld", (long)(weft_now() - t0), (long)ns);
  atomic_fetch_add_explicit(&S->n_sleep, 1, memory_order_relaxed);
}

static void op_yield(void)
{
  weft_yield();
  atomic_fetch_add_explicit(&S->n_yield, 1, memory_order_relaxed);
}

/* A token names its link and its position: link * MAX_TOKENS + k. */
static void write_token(long link, int k)
{
  struct link *l = &S->links[link];
  uint64_t tok = (uint64_t)link * MAX_TOKENS + (uint64_t)k;
  int64_t dl = weft_now() + IO_DEADLINE_NS;
  ssize_t n = l->dgram ? weft_send(l->wfd, &tok, sizeof tok, 0, dl)
                       : weft_write(l->wfd, &tok, sizeof tok, dl);
  if (n != (ssize_t)sizeof tok)
    record_error("write of token on link %ld returned %ld", link, (long)n);
}

static void read_token(long link, uint64_t *rng)
{
  struct link *l = &S->links[link];
  uint64_t tok = UINT64_MAX;
  int64_t dl = weft_now() + IO_DEADLINE_NS;
  int err = test_rand(rng) % 2 ? weft_wait_readable(l->rfd, dl) : 0;
  if (err != 0)
    record_error("wait_readable on link %ld failed (%ld)", link, err);
  ssize_t n = l->dgram ? weft_recv(l->rfd, &tok, sizeof tok, 0, dl)
                       : weft_read(l->rfd, &tok, sizeof tok, dl);
  if (n != (ssize_t)sizeof tok) {
    record_error("read of token on link %ld returned %ld", link, (long)n);
    return;
  }
  if (tok / MAX_TOKENS != (uint64_t)link || tok % MAX_TOKENS >= (uint64_t)l->ntokens) {
    record_error("link %ld read a foreign token %ld", link, (long)tok);
    return;
  }
  atomic_fetch_add(&l->reads[tok % MAX_TOKENS], 1);
  atomic_fetch_add_explicit(&S->n_token, 1, memory_order_relaxed);
}

/* After the last token the writer has closed its end: the reader must see end of file
 * (a pipe) or nothing more (a datagram socket: a zero-length read or -EAGAIN is not
 * delivered, so we ask with an already-passed deadline). */
static void expect_end(long link)
{
  struct link *l = &S->links[link];
  uint64_t extra;
  if (l->dgram) {
    ssize_t n = weft_recv(l->rfd, &extra, sizeof extra, MSG_DONTWAIT, weft_now());
    if (n != 0 && n != -EAGAIN && n != -ETIMEDOUT)
      record_error("link %ld: unexpected datagram after the last token (%ld)", link, (long)n);
  } else {
    ssize_t n = weft_read(l->rfd, &extra, sizeof extra, weft_now() + IO_DEADLINE_NS);
    if (n != 0)
      record_error("link %ld: expected end of file, read returned %ld", link, (long)n);
  }
}

/* ---- coroutines ---- */

struct task {
  long index;   /* record */
  long pair;    /* -1, or the pair it belongs to */
  int side;     /* 0 or 1 within the pair */
  int depth;    /* 0 for main's coroutines */
  uint64_t rng; /* its own random stream */
};

static void task_main(void *arg);

/* Spawn the coroutine of record `index`. */
static void spawn_task(long index, long pair, int side, int depth, uint64_t rng)
{
  struct task *t = malloc(sizeof *t);
  *t = (struct task){index, pair, side, depth, rng};
  atomic_store(&S->recs[index].spawned, 1);
  weft_wg_add(&S->all, 1);
  if (weft_go(task_main, t) != 0) {
    record_error("weft_go failed for coroutine %ld (%ld)", index, 0);
    free(t);
    weft_wg_done(&S->all);
  }
}

static void op_spawn(struct task *t)
{
  if (t->depth >= MAX_DEPTH)
    return;
  long index = atomic_fetch_add(&S->next_child, 1);
  if (index >= TOTAL_COROS)
    return; /* budget spent */
  spawn_task(index, -1, 0, t->depth + 1, test_rand(&t->rng) ^ (uint64_t)t->index);
  atomic_fetch_add_explicit(&S->n_spawn, 1, memory_order_relaxed);
}

/* Paired coroutines first write all their tokens, interleaved with other operations,
 * then read all of their partner's: reads wait only on writes that never wait, so the
 * pair cannot deadlock, while readers really park in fd waits. */
static void task_main(void *arg)
{
  struct task *t = arg;
  struct rec *r = &S->recs[t->index];
  if (atomic_fetch_add(&r->started, 1) != 0)
    record_error("coroutine %ld started twice (%ld)", t->index, 0);
  long out = t->pair >= 0 ? 2 * t->pair + t->side : -1;
  long in = t->pair >= 0 ? 2 * t->pair + (1 - t->side) : -1;
  int written = 0, read = 0;
  int nout = out >= 0 ? S->links[out].ntokens : 0;
  int nin = in >= 0 ? S->links[in].ntokens : 0;

  for (int i = 0; i < OPS || written < nout || read < nin; i++) {
    unsigned op = (unsigned)(test_rand(&t->rng) % 10);
    if (i >= OPS)
      op = 9; /* finish the exchange */
    switch (op) {
    case 0:
    case 1:
    case 2:
      op_yield();
      break;
    case 3:
    case 4:
      op_sleep(&t->rng);
      break;
    case 5:
    case 6:
      op_blocking(&t->rng);
      break;
    case 7:
      op_spawn(t);
      break;
    default:
      if (written < nout) {
        write_token(out, written++);
        if (written == nout)
          weft_close(S->links[out].wfd); /* the reader then sees the end */
      } else if (read < nin && i >= OPS / 2) {
        read_token(in, &t->rng);
        if (++read == nin)
          expect_end(in);
      }
      break;
    }
  }
  if (in >= 0)
    weft_close(S->links[in].rfd);
  if (atomic_fetch_add(&r->finished, 1) != 0)
    record_error("coroutine %ld finished twice (%ld)", t->index, 0);
  free(t);
  weft_wg_done(&S->all); /* last: nothing may park after it (the leak check) */
}

/* ---- one run ---- */

static long fd_budget_pairs(void)
{
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  long pairs = ((long)rl.rlim_cur - 200) / 4; /* 4 fds per pair */
  return pairs < TOP_COROS / 2 ? pairs : TOP_COROS / 2;
}

static bool open_link(struct link *l, uint64_t *rng)
{
  int fds[2];
  l->dgram = test_rand(rng) % 3 == 0;
  l->ntokens = 1 + (int)(test_rand(rng) % MAX_TOKENS);
  if (l->dgram ? socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, fds) != 0
               : pipe2(fds, O_CLOEXEC) != 0)
    return false;
  l->rfd = fds[0];
  l->wfd = fds[1];
  if (l->dgram) {
    /* socketpair fds are both ends of both directions: read on [0], write on [1]. */
    shutdown(fds[0], SHUT_WR);
    shutdown(fds[1], SHUT_RD);
  }
  return true;
}

static int stress_main(void *arg)
{
  (void)arg;
  uint64_t rng = S->seed;
  for (long p = 0; p < S->npairs; p++)
    for (int d = 0; d < 2; d++)
      if (!open_link(&S->links[2 * p + d], &rng))
        return -1;
  for (long i = 0; i < TOP_COROS; i++) {
    long pair = i / 2 < S->npairs ? i / 2 : -1;
    spawn_task(i, pair, (int)(i % 2), 0, test_rand(&rng) | 1);
    if (test_rand(&rng) % 64 == 0)
      weft_yield();
  }
  weft_wg_wait(&S->all);
  return 0;
}

static void check_run(int procs)
{
  long n = atomic_load(&S->next_child);
  long bad = 0;
  if (n > TOTAL_COROS)
    n = TOTAL_COROS;
  if (atomic_load(&S->errors) != 0)
    fail_msg("P=%d: %ld error(s), first: %s", procs, atomic_load(&S->errors), S->first_error);
  for (long i = 0; i < n; i++) {
    struct rec *r = &S->recs[i];
    if (atomic_load(&r->spawned) != 1 || atomic_load(&r->started) != 1 ||
        atomic_load(&r->finished) != 1) {
      if (bad++ < 5)
        fprintf(stderr, "P=%d: coroutine %ld spawned %d started %d finished %d\n", procs, i,
                atomic_load(&r->spawned), atomic_load(&r->started), atomic_load(&r->finished));
    }
  }
  for (long l = 0; l < 2 * S->npairs; l++)
    for (int k = 0; k < MAX_TOKENS; k++) {
      int want = k < S->links[l].ntokens ? 1 : 0;
      if (atomic_load(&S->links[l].reads[k]) != want && bad++ < 10)
        fprintf(stderr, "P=%d: link %ld token %d read %d times\n", procs, l, k,
                atomic_load(&S->links[l].reads[k]));
    }
  assert_int_equal(bad, 0);
  assert_true(n > TOP_COROS); /* children were spawned */
}

static void test_random_mix(void **state)
{
  (void)state;
  uint64_t seed = test_seed();
  long pairs = fd_budget_pairs();
  assert_true(pairs > 0);
  for (int run = 0; run < 4 * ROUNDS; run++) {
    int p = 1 + run % 4;
    S = calloc(1, sizeof *S);
    S->seed = seed * 0x9E3779B97F4A7C15ull + (uint64_t)run;
    S->npairs = pairs;
    S->links = calloc((size_t)(2 * pairs), sizeof *S->links);
    atomic_store(&S->next_child, TOP_COROS);
    int64_t t0 = weft_now();
    assert_int_equal(run_weft(p, stress_main, NULL), 0);
    fprintf(
        stderr,
        "P=%d: %ld coroutines, %ld pairs, %ld yields, %ld sleeps, %ld blocking calls, "
        "%ld spawns, %ld tokens in %.2fs\n",
        p,
        atomic_load(&S->next_child) < TOTAL_COROS ? atomic_load(&S->next_child) : TOTAL_COROS,
        pairs, atomic_load(&S->n_yield), atomic_load(&S->n_sleep), atomic_load(&S->n_blocking),
        atomic_load(&S->n_spawn), atomic_load(&S->n_token), (double)(weft_now() - t0) / 1e9);
    check_run(p);
    free(S->links);
    free(S);
    S = NULL;
  }
}

/* ---- starvation ---- */

#define YIELDS           1000
#define PING_ROUNDS_MAX  2000000
#define STARVE_BUDGET_NS MS(20000)

struct starve {
  weft_wg a_turn, b_turn; /* relay: each finishes the other's */
  int efd_a, efd_b;       /* or eventfds */
  bool use_fds;
  atomic_bool yielder_done; /* set by the yielder when it has finished */
  atomic_bool quit;         /* set by the pinger just before its last hand-off */
  atomic_long rounds;       /* ping-pong hand-offs so far */
  long rounds_at_yielder_done;
  long yields_done;
  weft_wg all;
};

/* Hand the turn to the partner and wait for it back, until the yielder is done (or the
 * safety caps, which the test then reports as starvation). The last hand-off carries
 * `quit`, so the ponger leaves without handing the turn back. */
static void pinger(void *arg)
{
  struct starve *s = arg;
  int64_t end = weft_now() + STARVE_BUDGET_NS;
  while (!atomic_load(&s->yielder_done) && atomic_load(&s->rounds) < PING_ROUNDS_MAX &&
         weft_now() < end) {
    atomic_fetch_add(&s->rounds, 1);
    if (s->use_fds) {
      uint64_t one = 1, v;
      weft_write(s->efd_b, &one, sizeof one, end);
      weft_read(s->efd_a, &v, sizeof v, end);
    } else {
      weft_wg_add(&s->a_turn, 1);
      weft_wg_done(&s->b_turn);
      weft_wg_wait(&s->a_turn);
    }
  }
  atomic_store(&s->quit, true);
  if (s->use_fds) {
    uint64_t one = 1;
    weft_write(s->efd_b, &one, sizeof one, end);
  } else {
    weft_wg_done(&s->b_turn);
  }
  weft_wg_done(&s->all);
}

static void ponger(void *arg)
{
  struct starve *s = arg;
  int64_t end = weft_now() + STARVE_BUDGET_NS + MS(1000);
  while (weft_now() < end) {
    if (s->use_fds) {
      uint64_t one = 1, v;
      weft_read(s->efd_b, &v, sizeof v, end);
      if (atomic_load(&s->quit))
        break;
      weft_write(s->efd_a, &one, sizeof one, end);
    } else {
      weft_wg_wait(&s->b_turn);
      if (atomic_load(&s->quit))
        break;
      weft_wg_add(&s->b_turn, 1);
      weft_wg_done(&s->a_turn);
    }
  }
  weft_wg_done(&s->all);
}

static void yielder(void *arg)
{
  struct starve *s = arg;
  for (int i = 0; i < YIELDS && !atomic_load(&s->quit); i++) {
    weft_yield();
    s->yields_done = i + 1;
  }
  s->rounds_at_yielder_done = atomic_load(&s->rounds);
  atomic_store(&s->yielder_done, true);
  weft_wg_done(&s->all);
}

static int starve_main(void *arg)
{
  struct starve *s = arg;
  weft_wg_add(&s->all, 3);
  weft_wg_add(&s->b_turn, 1);
  weft_go_named(ponger, s, "ponger");
  weft_go_named(pinger, s, "pinger");
  weft_go_named(yielder, s, "yielder");
  weft_wg_wait(&s->all);
  return 0;
}

/* On P=1 two coroutines that wake each other through wait groups always have the next
 * turn (the runnext slot); the yielder behind them in the run queue must still get a
 * turn at least every few dozen hand-offs. */
static void test_ping_pong_does_not_starve_yielder(void **state)
{
  (void)state;
  struct starve *s = calloc(1, sizeof *s);
  assert_int_equal(run_weft(1, starve_main, s), 0);
  fprintf(stderr, "wait-group ping-pong: yielder did %ld yields in %ld hand-offs\n",
          s->yields_done, s->rounds_at_yielder_done);
  assert_true(atomic_load(&s->yielder_done));
  assert_int_equal(s->yields_done, YIELDS);
  /* The runnext streak is capped at 32: allow twice that per yield. */
  assert_true(s->rounds_at_yielder_done <= 64L * YIELDS);
  free(s);
}

/* The same over eventfds (the poller wakes them): the yielder finishes, and the pair still
 * makes progress while it yields, since a busy worker polls the network periodically. */
static void test_fd_ping_pong_and_yielder_share(void **state)
{
  (void)state;
  struct starve *s = calloc(1, sizeof *s);
  s->use_fds = true;
  s->efd_a = eventfd(0, EFD_CLOEXEC);
  s->efd_b = eventfd(0, EFD_CLOEXEC);
  assert_true(s->efd_a >= 0 && s->efd_b >= 0);
  assert_int_equal(run_weft(1, starve_main, s), 0);
  fprintf(stderr, "eventfd ping-pong: yielder did %ld yields in %ld hand-offs\n",
          s->yields_done, s->rounds_at_yielder_done);
  assert_true(atomic_load(&s->yielder_done));
  assert_int_equal(s->yields_done, YIELDS);
  assert_true(s->rounds_at_yielder_done <= 64L * YIELDS);
  close(s->efd_a);
  close(s->efd_b);
  free(s);
}

/* A coroutine in a yield loop on P=1 must not starve fd waiters either: the eventfd pair
 * completes its rounds while the yielder never parks. */
struct spin_vs_io {
  int efd_a, efd_b;
  atomic_bool pair_done;
  long rounds;
  long spins;
  weft_wg all;
};

#define IO_ROUNDS 200

static void io_pinger(void *arg)
{
  struct spin_vs_io *s = arg;
  int64_t end = weft_now() + STARVE_BUDGET_NS;
  for (long i = 0; i < IO_ROUNDS; i++) {
    uint64_t one = 1, v;
    if (weft_write(s->efd_b, &one, sizeof one, end) != 8 ||
        weft_read(s->efd_a, &v, sizeof v, end) != 8)
      break;
    s->rounds = i + 1;
  }
  atomic_store(&s->pair_done, true);
  weft_wg_done(&s->all);
}

static void io_ponger(void *arg)
{
  struct spin_vs_io *s = arg;
  int64_t end = weft_now() + STARVE_BUDGET_NS;
  for (long i = 0; i < IO_ROUNDS; i++) {
    uint64_t one = 1, v;
    if (weft_read(s->efd_b, &v, sizeof v, end) != 8 ||
        weft_write(s->efd_a, &one, sizeof one, end) != 8)
      break;
  }
  weft_wg_done(&s->all);
}

static void spinner(void *arg)
{
  struct spin_vs_io *s = arg;
  int64_t end = weft_now() + STARVE_BUDGET_NS;
  while (!atomic_load(&s->pair_done) && weft_now() < end) {
    weft_yield();
    s->spins++;
  }
  weft_wg_done(&s->all);
}

static int spin_vs_io_main(void *arg)
{
  struct spin_vs_io *s = arg;
  weft_wg_add(&s->all, 3);
  weft_go_named(io_ponger, s, "io-ponger");
  weft_go_named(io_pinger, s, "io-pinger");
  weft_go_named(spinner, s, "spinner");
  weft_wg_wait(&s->all);
  return 0;
}

static void test_yield_loop_does_not_starve_fd_waiters(void **state)
{
  (void)state;
  struct spin_vs_io *s = calloc(1, sizeof *s);
  s->efd_a = eventfd(0, EFD_CLOEXEC);
  s->efd_b = eventfd(0, EFD_CLOEXEC);
  assert_true(s->efd_a >= 0 && s->efd_b >= 0);
  int64_t t0 = weft_now();
  assert_int_equal(run_weft(1, spin_vs_io_main, s), 0);
  double secs = (double)(weft_now() - t0) / 1e9;
  fprintf(stderr, "yield loop vs fd pair: %ld rounds, %ld yields, %.2fs\n", s->rounds, s->spins,
          secs);
  assert_int_equal(s->rounds, IO_ROUNDS);
  assert_true(secs < 10.0);
  close(s->efd_a);
  close(s->efd_b);
  free(s);
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_random_mix),
      cmocka_unit_test(test_ping_pong_does_not_starve_yielder),
      cmocka_unit_test(test_fd_ping_pong_and_yielder_share),
      cmocka_unit_test(test_yield_loop_does_not_starve_fd_waiters),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
