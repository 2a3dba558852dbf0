/* test_ctx_calls.c: the blocking calls that honour a context (weft/ctx.h, "blocking calls
 * that honour a context").
 *
 * One table of operations (sleep, send, receive, select, fd waits, read, write, write_all,
 * accept, connect, the semaphore, the blocking pool), each run through the same modes: a
 * wait ended by cancellation or by the context's deadline returns the context's error
 * promptly and has no effect (and the operation then still works with no context); a
 * context already done fails at once without doing the operation even when it could
 * proceed; a live context, NULL, the background and a without-cancel context let it
 * complete, at once or when another coroutine makes it possible. Then the blocking pool's
 * abandon protocol (on_abandon exactly once, a saturated pool), the semaphore's queue
 * under cancellation, write_all's short writes, and a race of waits, cancellations and
 * completions on P = 1..4 that checks every operation happened exactly once or not at all.
 *
 * Checks inside coroutines record failures (CHECK) instead of using cmocka's asserts,
 * which would longjmp off a coroutine stack; each test asserts none were recorded. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "weft_test.h"

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#else
#define SANITIZED 0
#endif

#define CANCEL_AFTER MS(10)    /* when a helper cancels a waiting call */
#define TIMEOUT      MS(20)    /* the context deadline of the timeout mode */
#define PROMPT       MS(500)   /* "promptly": generous, only catches a call that hangs on */
#define HANG         MS(10000) /* bound on waits that would otherwise hang a failing test */

/* ---- recording failures from coroutines ---- */

static atomic_int failures;
static const char *_Atomic current; /* the operation and mode being run, for messages */

#define CHECK(cond)                                                         \
  do {                                                                      \
    if (!(cond)) {                                                          \
      fprintf(stderr, "%s:%d: [%s] check failed: %s\n", __FILE__, __LINE__, \
              atomic_load(&current), #cond);                                \
      atomic_fetch_add(&failures, 1);                                       \
    }                                                                       \
  } while (0)

#define CHECK_EQ(a, b)                                                                 \
  do {                                                                                 \
    long long a_ = (long long)(a), b_ = (long long)(b);                                \
    if (a_ != b_) {                                                                    \
      fprintf(stderr, "%s:%d: [%s] check failed: %s == %s (%lld != %lld)\n", __FILE__, \
              __LINE__, atomic_load(&current), #a, #b, a_, b_);                        \
      atomic_fetch_add(&failures, 1);                                                  \
    }                                                                                  \
  } while (0)

static void expect_no_failures(void)
{
  int n = atomic_exchange(&failures, 0);
  if (n)
    fail_msg("%d check(s) failed (see stderr)", n);
}

/* Poll *v (from a coroutine) until it reaches want or HANG passes. */
static bool wait_for_atomic(atomic_int *v, int want)
{
  int64_t end = weft_now() + HANG;
  while (atomic_load(v) < want && weft_now() < end)
    weft_sleep(MS(1));
  return atomic_load(v) >= want;
}

static size_t fd_pending(int fd)
{
  int n = 0;
  if (ioctl(fd, FIONREAD, &n) != 0)
    return (size_t)-1;
  return (size_t)n;
}

/* Read everything now readable from a non-blocking fd; returns the byte count. */
static size_t drain_fd(int fd)
{
  char buf[4096];
  size_t total = 0;
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0)
    total += (size_t)n;
  return total;
}

/* Write to a non-blocking fd until it would block; returns the byte count. */
static size_t fill_fd(int fd)
{
  static const char zeros[4096];
  size_t total = 0;
  ssize_t n;
  while ((n = write(fd, zeros, sizeof zeros)) > 0)
    total += (size_t)n;
  while ((n = write(fd, zeros, 1)) > 0) /* top up a partly filled last buffer */
    total += (size_t)n;
  return total;
}

/* A pipe of one page, both ends registered (so non-blocking). */
static void small_pipe(int fds[2])
{
  CHECK_EQ(pipe2(fds, O_CLOEXEC), 0);
  CHECK(fcntl(fds[1], F_SETPIPE_SZ, 4096) >= 4096);
  CHECK_EQ(weft_fd_register(fds[0]), 0);
  CHECK_EQ(weft_fd_register(fds[1]), 0);
}

static int listen_loopback(int backlog, struct sockaddr_in *addr)
{
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  socklen_t len = sizeof *addr;
  *addr =
      (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  CHECK(fd >= 0);
  CHECK_EQ(bind(fd, (struct sockaddr *)addr, sizeof *addr), 0);
  CHECK_EQ(listen(fd, backlog), 0);
  CHECK_EQ(getsockname(fd, (struct sockaddr *)addr, &len), 0);
  CHECK_EQ(weft_fd_register(fd), 0);
  return fd;
}

/* A connection to addr made with plain (blocking) connect: loopback completes at once. */
static int connect_plain(const struct sockaddr_in *addr)
{
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  CHECK(fd >= 0);
  CHECK_EQ(connect(fd, (const struct sockaddr *)addr, sizeof *addr), 0);
  return fd;
}

static void close_if(int *fd)
{
  if (*fd >= 0)
    weft_close(*fd);
  *fd = -1;
}

/* ---- the operations under test ---- */

enum { SEL_N = 10, SEL_HIT = 9 }; /* more than select_ctx's 8 stack cases */
enum { SEM_SIZE = 2 };
enum { WRITE_ALL_LEN = 3000 };
#define BLOCKING_RESULT 77L

struct fix {
  bool ready;  /* set up so that the call can proceed at once */
  bool waited; /* the failed call had parked (was cancelled while waiting) */
  /* channels */
  weft_chan *ch;
  weft_chan *sel[SEL_N];
  int value; /* recv/select: the destination; send: what the unblocker received */
  /* fds */
  int fds[2];
  size_t fill;    /* bytes written to make the fd full */
  size_t drained; /* bytes the unblocker took out */
  char buf[WRITE_ALL_LEN];
  int lfd, client, filler;
  struct sockaddr_in addr;
  /* semaphore */
  weft_sem *sem;
  int64_t n, held;
  /* blocking pool */
  atomic_int go, ran, abandons;
  atomic_long abandon_result;
  long result;
  /* sleep */
  int64_t sleep_ns, t0;
};

enum {
  OP_NEVER_READY = 1, /* the call can never proceed (sem n > size) */
  OP_SLOW = 2,        /* unblocking takes about a second (connect): run it once only */
};

struct op {
  const char *name;
  unsigned flags;
  void (*setup)(struct fix *f, bool ready);
  long (*call)(struct fix *f, weft_ctx *ctx);
  void (*unblock)(struct fix *f); /* from another coroutine; NULL: nothing can */
  void (*check_ok)(struct fix *f, long rc);
  void (*check_untouched)(struct fix *f); /* after a failed call; may restore state */
  void (*teardown)(struct fix *f);
};

static void nothing(struct fix *f)
{
  (void)f;
}

/* sleep */

static void sleep_setup(struct fix *f, bool ready)
{
  f->sleep_ns = ready ? MS(15) : HANG;
}

static long sleep_call(struct fix *f, weft_ctx *ctx)
{
  f->t0 = weft_now();
  return weft_sleep_ctx(ctx, f->sleep_ns);
}

static void sleep_ok(struct fix *f, long rc)
{
  CHECK_EQ(rc, 0);
  CHECK(weft_now() - f->t0 >= f->sleep_ns);
}

/* send on an unbuffered channel (ready: a buffered one with room) */

static void send_setup(struct fix *f, bool ready)
{
  f->ch = weft_chan_new(sizeof(int), ready ? 1 : 0);
  f->value = -1;
}

static long send_call(struct fix *f, weft_ctx *ctx)
{
  return weft_chan_send_ctx(f->ch, &(int){42}, ctx);
}

static void send_unblock(struct fix *f)
{
  CHECK_EQ(weft_chan_recv(f->ch, &f->value, weft_now() + HANG), 0);
}

static void send_ok(struct fix *f, long rc)
{
  int v = -1;
  CHECK_EQ(rc, 0);
  if (f->value == -1) /* nobody received it yet: it is buffered */
    CHECK_EQ(weft_chan_try_recv(f->ch, &v), 0);
  else
    v = f->value;
  CHECK_EQ(v, 42);
  CHECK_EQ(weft_chan_try_recv(f->ch, &v), -EAGAIN); /* delivered once */
  f->value = -1;
}

static void send_untouched(struct fix *f)
{
  int v;
  CHECK_EQ(f->value, -1);
  CHECK_EQ(weft_chan_len(f->ch), 0);
  CHECK_EQ(weft_chan_try_recv(f->ch, &v), -EAGAIN); /* no sender left parked */
}

static void chan_teardown(struct fix *f)
{
  weft_chan_release(f->ch);
  f->ch = NULL;
}

/* receive (ready: a value buffered) */

static void recv_setup(struct fix *f, bool ready)
{
  f->ch = weft_chan_new(sizeof(int), 1);
  f->value = -1;
  if (ready)
    CHECK_EQ(weft_chan_try_send(f->ch, &(int){7}), 0);
}

static long recv_call(struct fix *f, weft_ctx *ctx)
{
  return weft_chan_recv_ctx(f->ch, &f->value, ctx);
}

static void recv_unblock(struct fix *f)
{
  CHECK_EQ(weft_chan_send(f->ch, &(int){7}, weft_now() + HANG), 0);
}

static void recv_ok(struct fix *f, long rc)
{
  CHECK_EQ(rc, 0);
  CHECK_EQ(f->value, 7);
  CHECK_EQ(weft_chan_len(f->ch), 0);
  f->value = -1;
}

static void recv_untouched(struct fix *f)
{
  int v = -1;
  CHECK_EQ(f->value, -1);
  if (f->ready) {
    CHECK_EQ(weft_chan_len(f->ch), 1); /* still buffered */
    return;
  }
  /* No receiver left parked: a send is buffered, not handed to it. */
  CHECK_EQ(weft_chan_try_send(f->ch, &(int){8}), 0);
  CHECK_EQ(weft_chan_len(f->ch), 1);
  CHECK_EQ(weft_chan_try_recv(f->ch, &v), 0);
  CHECK_EQ(v, 8);
}

/* select over SEL_N receive cases; SEL_HIT is the one made ready */

static void select_setup(struct fix *f, bool ready)
{
  for (int i = 0; i < SEL_N; i++)
    f->sel[i] = weft_chan_new(sizeof(int), 1);
  f->value = -1;
  if (ready)
    CHECK_EQ(weft_chan_try_send(f->sel[SEL_HIT], &(int){5}), 0);
}

static long select_call(struct fix *f, weft_ctx *ctx)
{
  weft_select_case cases[SEL_N];
  for (int i = 0; i < SEL_N; i++)
    cases[i] = (weft_select_case){
        .ch = f->sel[i], .dir = WEFT_SELECT_RECV, .elem = &f->value, .result = 99};
  int rc = weft_select_ctx(cases, SEL_N, 0, ctx);
  if (rc >= 0 && rc < SEL_N)
    CHECK_EQ(cases[rc].result, 0);
  return rc;
}

static void select_unblock(struct fix *f)
{
  CHECK_EQ(weft_chan_send(f->sel[SEL_HIT], &(int){5}, weft_now() + HANG), 0);
}

static void select_ok(struct fix *f, long rc)
{
  CHECK_EQ(rc, SEL_HIT);
  CHECK_EQ(f->value, 5);
  for (int i = 0; i < SEL_N; i++)
    CHECK_EQ(weft_chan_len(f->sel[i]), 0);
  f->value = -1;
}

static void select_untouched(struct fix *f)
{
  int v = -1;
  CHECK_EQ(f->value, -1);
  CHECK_EQ(weft_chan_len(f->sel[SEL_HIT]), f->ready ? 1 : 0);
  if (f->ready)
    return;
  CHECK_EQ(weft_chan_try_send(f->sel[3], &(int){8}), 0); /* no case left parked */
  CHECK_EQ(weft_chan_len(f->sel[3]), 1);
  CHECK_EQ(weft_chan_try_recv(f->sel[3], &v), 0);
}

static void select_teardown(struct fix *f)
{
  for (int i = 0; i < SEL_N; i++)
    weft_chan_release(f->sel[i]);
}

/* wait_readable on a pipe (ready: a byte in it) */

static void pipe_setup(struct fix *f, bool ready)
{
  small_pipe(f->fds);
  if (ready)
    CHECK_EQ(write(f->fds[1], "abc", 3), 3);
}

static long readable_call(struct fix *f, weft_ctx *ctx)
{
  return weft_wait_readable_ctx(f->fds[0], ctx);
}

static void pipe_unblock(struct fix *f)
{
  CHECK_EQ(weft_write(f->fds[1], "abc", 3, weft_now() + HANG), 3);
}

static void readable_ok(struct fix *f, long rc)
{
  CHECK_EQ(rc, 0);
  CHECK_EQ(fd_pending(f->fds[0]), 3); /* waiting consumes nothing */
  CHECK_EQ(drain_fd(f->fds[0]), 3);
}

static void pipe_untouched(struct fix *f)
{
  CHECK_EQ(fd_pending(f->fds[0]), f->ready ? 3 : 0);
}

static void fds_teardown(struct fix *f)
{
  close_if(&f->fds[0]);
  close_if(&f->fds[1]);
}

/* read from a pipe (ready: "abc" in it) */

static long read_call(struct fix *f, weft_ctx *ctx)
{
  memset(f->buf, 0, sizeof f->buf);
  return weft_read_ctx(f->fds[0], f->buf, sizeof f->buf, ctx);
}

static void read_ok(struct fix *f, long rc)
{
  CHECK_EQ(rc, 3);
  CHECK(memcmp(f->buf, "abc", 3) == 0);
  CHECK_EQ(fd_pending(f->fds[0]), 0);
}

/* wait_writable on a full socketpair (ready: an empty one) */

static void full_socket_setup(struct fix *f, bool ready)
{
  CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, f->fds), 0);
  CHECK_EQ(weft_fd_register(f->fds[0]), 0);
  CHECK_EQ(weft_fd_register(f->fds[1]), 0);
  f->fill = ready ? 0 : fill_fd(f->fds[0]);
  f->drained = 0;
}

static long writable_call(struct fix *f, weft_ctx *ctx)
{
  return weft_wait_writable_ctx(f->fds[0], ctx);
}

static void full_unblock(struct fix *f)
{
  f->drained += drain_fd(f->fds[1]);
}

static void writable_ok(struct fix *f, long rc)
{
  CHECK_EQ(rc, 0);
  CHECK_EQ(f->drained + fd_pending(f->fds[1]), f->fill); /* waiting wrote nothing */
}

static void full_untouched(struct fix *f)
{
  CHECK_EQ(f->drained, 0);
  CHECK_EQ(fd_pending(f->fds[1]), f->fill);
}

/* write and write_all to a full one-page pipe (ready: an empty one) */

static void full_pipe_setup(struct fix *f, bool ready)
{
  small_pipe(f->fds);
  int r = f->fds[0]; /* [0] writes, [1] reads */
  f->fds[0] = f->fds[1];
  f->fds[1] = r;
  f->fill = ready ? 0 : fill_fd(f->fds[0]);
  f->drained = 0;
  for (size_t i = 0; i < sizeof f->buf; i++)
    f->buf[i] = (char)('a' + i % 26);
}

static long write_call(struct fix *f, weft_ctx *ctx)
{
  return weft_write_ctx(f->fds[0], "xyz", 3, ctx);
}

static void write_ok(struct fix *f, long rc)
{
  CHECK_EQ(rc, 3);
  CHECK_EQ(f->drained + fd_pending(f->fds[1]), f->fill + 3);
  f->fill += 3;
}

static long write_all_call(struct fix *f, weft_ctx *ctx)
{
  return weft_write_all_ctx(f->fds[0], f->buf, sizeof f->buf, ctx);
}

static void write_all_ok(struct fix *f, long rc)
{
  CHECK_EQ(rc, (long)sizeof f->buf);
  CHECK_EQ(f->drained + fd_pending(f->fds[1]), f->fill + sizeof f->buf);
  f->fill += sizeof f->buf;
}

/* accept on a loopback listener (ready: a connection waiting) */

static void accept_setup(struct fix *f, bool ready)
{
  f->lfd = listen_loopback(16, &f->addr);
  f->client = ready ? connect_plain(&f->addr) : -1;
  f->filler = -1;
}

static long accept_call(struct fix *f, weft_ctx *ctx)
{
  return weft_accept_ctx(f->lfd, NULL, NULL, ctx);
}

static void accept_unblock(struct fix *f)
{
  f->client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  CHECK_EQ(
      weft_connect(f->client, (struct sockaddr *)&f->addr, sizeof f->addr, weft_now() + HANG),
      0);
}

static void accept_ok(struct fix *f, long rc)
{
  CHECK(rc >= 0);
  if (rc >= 0)
    weft_close((int)rc);
  CHECK(accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC) < 0 && errno == EAGAIN); /* once */
}

static void accept_untouched(struct fix *f)
{
  int fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
  if (f->ready) {
    CHECK(fd >= 0); /* the connection is still waiting */
    if (fd >= 0)
      close(fd);
  } else {
    CHECK(fd < 0 && errno == EAGAIN);
  }
}

static void sockets_teardown(struct fix *f)
{
  close_if(&f->client);
  close_if(&f->filler);
  close_if(&f->lfd);
}

/* connect: to a listener whose accept queue is full (backlog 0 and one connection in it),
 * so the SYN is dropped and connect waits; ready: a listener with room. Unblocking accepts
 * the queued connection; the SYN is then retransmitted after about a second. */

static void connect_setup(struct fix *f, bool ready)
{
  f->lfd = listen_loopback(ready ? 16 : 0, &f->addr);
  f->filler = ready ? -1 : connect_plain(&f->addr);
  f->client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  CHECK(f->client >= 0);
}

static long connect_call(struct fix *f, weft_ctx *ctx)
{
  return weft_connect_ctx(f->client, (struct sockaddr *)&f->addr, sizeof f->addr, ctx);
}

static void connect_unblock(struct fix *f)
{
  int fd = weft_accept(f->lfd, NULL, NULL, weft_now() + HANG);
  CHECK(fd >= 0);
  if (fd >= 0)
    weft_close(fd);
}

static void connect_ok(struct fix *f, long rc)
{
  struct sockaddr_in peer;
  socklen_t len = sizeof peer;
  CHECK_EQ(rc, 0);
  CHECK_EQ(getpeername(f->client, (struct sockaddr *)&peer, &len), 0);
  CHECK_EQ(peer.sin_port, f->addr.sin_port);
}

static void connect_untouched(struct fix *f)
{
  struct sockaddr_in peer;
  socklen_t len = sizeof peer;
  /* Not connected. (A cancelled attempt goes on in the kernel: the caller closes it.) */
  CHECK(getpeername(f->client, (struct sockaddr *)&peer, &len) < 0 && errno == ENOTCONN);
}

/* the semaphore (size SEM_SIZE): one token, all held by the test unless ready */

static void sem_setup(struct fix *f, bool ready)
{
  f->sem = weft_sem_new(SEM_SIZE);
  f->n = 1;
  f->held = 0;
  if (!ready) {
    CHECK_EQ(weft_sem_try_acquire(f->sem, SEM_SIZE), 0);
    f->held = SEM_SIZE;
  }
}

static long sem_call(struct fix *f, weft_ctx *ctx)
{
  return weft_sem_acquire_ctx(f->sem, f->n, ctx);
}

static void sem_unblock(struct fix *f)
{
  weft_sem_release(f->sem, f->held);
  f->held = 0;
}

/* Every token is back: the full size can be taken (nobody queued, nothing leaked). */
static void sem_expect_all_free(struct fix *f)
{
  CHECK_EQ(weft_sem_try_acquire(f->sem, SEM_SIZE), 0);
  weft_sem_release(f->sem, SEM_SIZE);
}

static void sem_ok(struct fix *f, long rc)
{
  CHECK_EQ(rc, 0);
  CHECK_EQ(weft_sem_try_acquire(f->sem, SEM_SIZE - f->held - f->n + 1), -EAGAIN);
  weft_sem_release(f->sem, f->n);
  if (f->held)
    sem_unblock(f);
  sem_expect_all_free(f);
}

static void sem_untouched(struct fix *f)
{
  int64_t held = f->held;
  if (held)
    weft_sem_release(f->sem, held);
  sem_expect_all_free(f);
  if (held) /* restore */
    CHECK_EQ(weft_sem_try_acquire(f->sem, held), 0);
}

static void sem_big_setup(struct fix *f, bool ready)
{
  (void)ready;
  f->sem = weft_sem_new(SEM_SIZE);
  f->n = SEM_SIZE + 1;
  f->held = 0;
}

static void sem_teardown(struct fix *f)
{
  weft_sem_free(f->sem);
}

/* the blocking pool: fn waits for go (ready: go already set) */

static long blocking_fn(void *arg)
{
  struct fix *f = arg;
  struct timespec tick = {0, 200000};
  time_t end = time(NULL) + 10;
  atomic_fetch_add(&f->ran, 1);
  while (!atomic_load(&f->go) && time(NULL) < end)
    nanosleep(&tick, NULL);
  return BLOCKING_RESULT;
}

static void on_abandon(void *arg, long result)
{
  struct fix *f = arg;
  atomic_store(&f->abandon_result, result);
  atomic_fetch_add(&f->abandons, 1);
}

static void blocking_setup(struct fix *f, bool ready)
{
  atomic_store(&f->go, ready);
  atomic_store(&f->ran, 0);
  atomic_store(&f->abandons, 0);
  atomic_store(&f->abandon_result, 0);
  f->result = -1;
}

static long blocking_call(struct fix *f, weft_ctx *ctx)
{
  return weft_blocking_ctx(ctx, blocking_fn, f, &f->result, on_abandon);
}

static void blocking_unblock(struct fix *f)
{
  atomic_store(&f->go, 1);
}

static void blocking_ok(struct fix *f, long rc)
{
  CHECK_EQ(rc, 0);
  CHECK_EQ(f->result, BLOCKING_RESULT);
  CHECK_EQ(atomic_load(&f->ran), 1);
  weft_sleep(MS(5));
  CHECK_EQ(atomic_load(&f->abandons), 0); /* a completed call never abandons */
  blocking_setup(f, atomic_load(&f->go));
}

/* After a failed call: the result is not written, and on_abandon comes exactly once:
 * with fn's result when fn ends, or -ECANCELED if fn never started. A context already
 * done never runs fn and calls on_abandon before the call returns. */
static void blocking_untouched(struct fix *f)
{
  CHECK_EQ(f->result, -1);
  if (!f->waited) {
    CHECK_EQ(atomic_load(&f->abandons), 1);
    CHECK_EQ(atomic_load(&f->ran), 0);
  }
  atomic_store(&f->go, 1);
  CHECK(wait_for_atomic(&f->abandons, 1));
  weft_sleep(MS(5));
  CHECK_EQ(atomic_load(&f->abandons), 1);
  CHECK_EQ(atomic_load(&f->abandon_result),
           atomic_load(&f->ran) ? BLOCKING_RESULT : -ECANCELED);
  blocking_setup(f, false);
}

static const struct op ops[] = {
    {"sleep", 0, sleep_setup, sleep_call, NULL, sleep_ok, nothing, nothing},
    {"send", 0, send_setup, send_call, send_unblock, send_ok, send_untouched, chan_teardown},
    {"recv", 0, recv_setup, recv_call, recv_unblock, recv_ok, recv_untouched, chan_teardown},
    {"select", 0, select_setup, select_call, select_unblock, select_ok, select_untouched,
     select_teardown},
    {"wait_readable", 0, pipe_setup, readable_call, pipe_unblock, readable_ok, pipe_untouched,
     fds_teardown},
    {"wait_writable", 0, full_socket_setup, writable_call, full_unblock, writable_ok,
     full_untouched, fds_teardown},
    {"read", 0, pipe_setup, read_call, pipe_unblock, read_ok, pipe_untouched, fds_teardown},
    {"write", 0, full_pipe_setup, write_call, full_unblock, write_ok, full_untouched,
     fds_teardown},
    {"write_all", 0, full_pipe_setup, write_all_call, full_unblock, write_all_ok,
     full_untouched, fds_teardown},
    {"accept", 0, accept_setup, accept_call, accept_unblock, accept_ok, accept_untouched,
     sockets_teardown},
    {"connect", OP_SLOW, connect_setup, connect_call, connect_unblock, connect_ok,
     connect_untouched, sockets_teardown},
    {"sem_acquire", 0, sem_setup, sem_call, sem_unblock, sem_ok, sem_untouched, sem_teardown},
    {"sem_acquire n > size", OP_NEVER_READY, sem_big_setup, sem_call, NULL, NULL, sem_untouched,
     sem_teardown},
    {"blocking", 0, blocking_setup, blocking_call, blocking_unblock, blocking_ok,
     blocking_untouched, nothing},
};

static const struct op *find_op(const char *name)
{
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
    if (strcmp(ops[i].name, name) == 0)
      return &ops[i];
  fail_msg("no op %s", name);
  return NULL;
}

/* ---- helpers running beside the call ---- */

struct helper {
  weft_ctx *ctx; /* to cancel */
  struct fix *f; /* to unblock */
  const struct op *op;
  int64_t delay;
  _Atomic int64_t at; /* when it acted */
  weft_wg wg;
};

static void cancel_later(void *arg)
{
  struct helper *h = arg;
  weft_sleep(h->delay);
  atomic_store(&h->at, weft_now());
  weft_ctx_cancel(h->ctx);
  weft_wg_done(&h->wg);
}

static void unblock_later(void *arg)
{
  struct helper *h = arg;
  weft_sleep(h->delay);
  atomic_store(&h->at, weft_now());
  h->op->unblock(h->f);
  weft_wg_done(&h->wg);
}

static void spawn(struct helper *h, void (*fn)(void *))
{
  weft_wg_add(&h->wg, 1);
  CHECK_EQ(weft_go(fn, h), 0);
}

/* Run the call with ctx while a helper unblocks it after delay; check it completed. */
static void call_unblocked(const struct op *op, struct fix *f, weft_ctx *ctx, int64_t delay)
{
  struct helper h = {.f = f, .op = op, .delay = delay};
  spawn(&h, unblock_later);
  long rc = op->call(f, ctx);
  weft_wg_wait(&h.wg);
  op->check_ok(f, rc);
}

/* ---- the modes ---- */

static void set_current(const struct op *op, const char *mode)
{
  static char buf[128];
  snprintf(buf, sizeof buf, "%s, %s, P=%d", op->name, mode, weft_procs());
  atomic_store(&current, buf);
}

/* After a failed call: no effect, and (when something can unblock it) the same operation
 * still works without a context, so the failure left nothing behind. */
static void after_failure(const struct op *op, struct fix *f, bool recover)
{
  op->check_untouched(f);
  f->waited = false;
  if (recover && op->unblock && !(op->flags & OP_SLOW))
    call_unblocked(op, f, NULL, 0);
}

/* A wait ended by cancellation, of ctx itself or (via) of its parent. */
static void mode_cancel(const struct op *op, bool via_parent)
{
  struct fix f = {0};
  set_current(op, via_parent ? "cancel parent" : "cancel");
  op->setup(&f, false);
  weft_ctx *parent = weft_ctx_with_cancel(NULL);
  weft_ctx *ctx = via_parent ? weft_ctx_with_value(parent, &f, &f) : weft_ctx_retain(parent);
  struct helper h = {.ctx = parent, .delay = CANCEL_AFTER};
  spawn(&h, cancel_later);
  long rc = op->call(&f, ctx);
  int64_t back = weft_now();
  weft_wg_wait(&h.wg);
  f.waited = true;
  CHECK_EQ(rc, -ECANCELED);
  CHECK(back - atomic_load(&h.at) < PROMPT);
  after_failure(op, &f, !via_parent);
  op->teardown(&f);
  weft_ctx_release(ctx);
  weft_ctx_release(parent);
}

/* A wait ended by the context's deadline. */
static void mode_timeout(const struct op *op)
{
  struct fix f = {0};
  set_current(op, "timeout");
  op->setup(&f, false);
  int64_t t0 = weft_now();
  weft_ctx *ctx = weft_ctx_with_timeout(NULL, TIMEOUT);
  long rc = op->call(&f, ctx);
  int64_t took = weft_now() - t0;
  f.waited = true;
  CHECK_EQ(rc, -ETIMEDOUT);
  if (took < TIMEOUT || took >= TIMEOUT + PROMPT)
    CHECK_EQ(took, TIMEOUT); /* shows how long it took */
  after_failure(op, &f, true);
  op->teardown(&f);
  weft_ctx_release(ctx);
}

/* A context already done (cancelled, past its deadline, or a child of a done parent)
 * fails at once, even when the operation could proceed, and does nothing. */
static void mode_already_done(const struct op *op, int how)
{
  static const char *names[] = {"already cancelled", "already timed out", "parent done"};
  struct fix f = {0};
  bool ready = !(op->flags & OP_NEVER_READY);
  set_current(op, names[how]);
  op->setup(&f, ready);
  f.ready = ready;
  weft_ctx *parent = weft_ctx_with_cancel(NULL), *ctx;
  if (how == 0) {
    ctx = weft_ctx_retain(parent);
    weft_ctx_cancel(ctx);
  } else if (how == 1) {
    ctx = weft_ctx_with_deadline(NULL, weft_now() - 1);
  } else {
    ctx = weft_ctx_with_cancel(parent);
    weft_ctx_cancel(parent);
  }
  int64_t t0 = weft_now();
  long rc = op->call(&f, ctx);
  CHECK_EQ(rc, how == 1 ? -ETIMEDOUT : -ECANCELED);
  CHECK(weft_now() - t0 < PROMPT);
  after_failure(op, &f, false);
  op->teardown(&f);
  weft_ctx_release(ctx);
  weft_ctx_release(parent);
}

/* A live context lets a call that can proceed complete; cancelling it afterwards changes
 * nothing. kind 0: cancellable with a distant deadline; 1: NULL; 2: the background;
 * 3: without_cancel under a cancelled parent (never done). */
static void mode_ready(const struct op *op, int kind)
{
  static const char *names[] = {"ready, live ctx", "ready, NULL ctx", "ready, background",
                                "ready, without_cancel"};
  struct fix f = {0};
  set_current(op, names[kind]);
  op->setup(&f, true);
  f.ready = true;
  weft_ctx *parent = weft_ctx_with_cancel(NULL), *ctx = NULL;
  if (kind == 0)
    ctx = weft_ctx_with_timeout(parent, HANG);
  else if (kind == 2)
    ctx = weft_ctx_background();
  else if (kind == 3)
    ctx = weft_ctx_without_cancel(parent);
  if (kind == 3)
    weft_ctx_cancel(parent);
  long rc = op->call(&f, ctx);
  weft_ctx_cancel(parent);
  op->check_ok(&f, rc);
  op->teardown(&f);
  weft_ctx_release(ctx);
  weft_ctx_release(parent);
}

/* A call that waits until another coroutine makes it possible, with a live ctx or NULL. */
static void mode_wait_then_complete(const struct op *op, bool null_ctx)
{
  struct fix f = {0};
  set_current(op, null_ctx ? "wait, NULL ctx" : "wait, live ctx");
  op->setup(&f, false);
  weft_ctx *ctx = null_ctx ? NULL : weft_ctx_with_timeout(NULL, HANG); /* live, bounded */
  call_unblocked(op, &f, ctx, CANCEL_AFTER);
  weft_ctx_cancel(ctx);
  op->teardown(&f);
  weft_ctx_release(ctx);
}

static int all_modes(void *arg)
{
  const struct op *op = arg;
  mode_cancel(op, false);
  mode_cancel(op, true);
  mode_timeout(op);
  for (int how = 0; how < 3; how++)
    mode_already_done(op, how);
  if (!(op->flags & OP_NEVER_READY))
    for (int kind = 0; kind < 4; kind++)
      mode_ready(op, kind);
  if (op->unblock) {
    mode_wait_then_complete(op, false);
    if (!(op->flags & OP_SLOW))
      mode_wait_then_complete(op, true);
  }
  return 0;
}

static void run_all_modes(const char *name)
{
  const struct op *op = find_op(name);
  for (int p = 1; p <= 2; p++) {
    if ((op->flags & OP_SLOW) && p > 1)
      break;
    assert_int_equal(run_weft(p, all_modes, (void *)op), 0);
    expect_no_failures();
  }
}

static void test_sleep_ctx(void **state)
{
  (void)state;
  run_all_modes("sleep");
}

static void test_chan_send_ctx(void **state)
{
  (void)state;
  run_all_modes("send");
}

static void test_chan_recv_ctx(void **state)
{
  (void)state;
  run_all_modes("recv");
}

static void test_select_ctx(void **state)
{
  (void)state;
  run_all_modes("select");
}

static void test_wait_readable_ctx(void **state)
{
  (void)state;
  run_all_modes("wait_readable");
}

static void test_wait_writable_ctx(void **state)
{
  (void)state;
  run_all_modes("wait_writable");
}

static void test_read_ctx(void **state)
{
  (void)state;
  run_all_modes("read");
}

static void test_write_ctx(void **state)
{
  (void)state;
  run_all_modes("write");
}

static void test_write_all_ctx(void **state)
{
  (void)state;
  run_all_modes("write_all");
}

static void test_accept_ctx(void **state)
{
  (void)state;
  run_all_modes("accept");
}

static void test_connect_ctx(void **state)
{
  (void)state;
  run_all_modes("connect");
}

static void test_sem_acquire_ctx(void **state)
{
  (void)state;
  run_all_modes("sem_acquire");
  run_all_modes("sem_acquire n > size");
}

static void test_blocking_ctx(void **state)
{
  (void)state;
  run_all_modes("blocking");
}

/* ---- the blocking pool ---- */

/* A saturated pool (one thread, busy with a long job): a cancelled or timed-out call
 * returns promptly, its fn never runs, and on_abandon reports -ECANCELED once the job
 * is dequeued. The pool then serves calls again. */
struct saturate {
  struct fix first, second, third, fourth;
  weft_wg wg;
};

static void long_first_job(void *arg)
{
  struct saturate *s = arg;
  CHECK_EQ(weft_blocking(blocking_fn, &s->first), BLOCKING_RESULT);
  weft_wg_done(&s->wg);
}

static void expect_abandoned_unstarted(struct fix *f)
{
  CHECK(wait_for_atomic(&f->abandons, 1));
  weft_sleep(MS(5));
  CHECK_EQ(atomic_load(&f->abandons), 1);
  CHECK_EQ(atomic_load(&f->abandon_result), -ECANCELED);
  CHECK_EQ(atomic_load(&f->ran), 0);
  CHECK_EQ(f->result, -1);
}

static int saturated_pool(void *arg)
{
  struct saturate *s = arg;
  atomic_store(&current, "blocking, saturated pool");
  for (int i = 0; i < 4; i++)
    blocking_setup((struct fix *[]){&s->first, &s->second, &s->third, &s->fourth}[i], false);
  weft_wg_add(&s->wg, 1);
  CHECK_EQ(weft_go(long_first_job, s), 0);
  CHECK(wait_for_atomic(&s->first.ran, 1)); /* the only pool thread is busy */

  weft_ctx *ctx = weft_ctx_with_cancel(NULL);
  struct helper h = {.ctx = ctx, .delay = CANCEL_AFTER};
  spawn(&h, cancel_later);
  long rc = blocking_call(&s->second, ctx);
  int64_t back = weft_now();
  weft_wg_wait(&h.wg);
  CHECK_EQ(rc, -ECANCELED);
  CHECK(back - atomic_load(&h.at) < PROMPT);

  weft_ctx *tctx = weft_ctx_with_timeout(NULL, TIMEOUT);
  CHECK_EQ(blocking_call(&s->third, tctx), -ETIMEDOUT);
  weft_sleep(MS(5));
  CHECK_EQ(atomic_load(&s->second.abandons), 0); /* still queued behind the first job */
  CHECK_EQ(atomic_load(&s->third.abandons), 0);

  atomic_store(&s->first.go, 1);
  weft_wg_wait(&s->wg);
  expect_abandoned_unstarted(&s->second);
  expect_abandoned_unstarted(&s->third);

  atomic_store(&s->fourth.go, 1); /* the pool serves calls again */
  weft_ctx *live = weft_ctx_with_cancel(NULL);
  CHECK_EQ(blocking_call(&s->fourth, live), 0);
  CHECK_EQ(s->fourth.result, BLOCKING_RESULT);
  weft_ctx_cancel(live);
  weft_sleep(MS(5));
  CHECK_EQ(atomic_load(&s->fourth.abandons), 0);
  weft_ctx_release(live);
  weft_ctx_release(tctx);
  weft_ctx_release(ctx);
  return 0;
}

static void test_blocking_ctx_saturated_pool(void **state)
{
  (void)state;
  for (int p = 1; p <= 2; p++) {
    struct saturate s = {.wg = WEFT_WG_INIT};
    weft_config cfg = {
        .procs = p, .stack_guard = 1, .leak_check = WEFT_LEAK_REPORT, .blocking_threads = 1};
    assert_int_equal(run_weft_with(&cfg, saturated_pool, &s), 0);
    assert_int_equal(weft_leaked(), 0);
    expect_no_failures();
  }
}

/* ---- the semaphore's queue ---- */

struct sem_waiter_arg {
  weft_sem *sem;
  int64_t n;
  weft_ctx *ctx;
  atomic_int done;
  long rc;
  weft_wg wg;
};

static void sem_waiter(void *arg)
{
  struct sem_waiter_arg *a = arg;
  a->rc = weft_sem_acquire_ctx(a->sem, a->n, a->ctx);
  atomic_store(&a->done, 1);
  weft_wg_done(&a->wg);
}

static void start_sem_waiter(struct sem_waiter_arg *a)
{
  weft_wg_add(&a->wg, 1);
  CHECK_EQ(weft_go(sem_waiter, a), 0);
}

/* A waiter at the head that gives up (cancelled, or its deadline) lets the one behind it,
 * which fits, proceed; a request for more than the size never blocks the queue. */
static int sem_queue(void *arg)
{
  (void)arg;
  for (int how = 0; how < 2; how++) {
    atomic_store(&current, how ? "sem head times out" : "sem head cancelled");
    weft_sem *sem = weft_sem_new(4);
    CHECK_EQ(weft_sem_try_acquire(sem, 3), 0);
    struct sem_waiter_arg head = {.sem = sem, .n = 3, .wg = WEFT_WG_INIT};
    struct sem_waiter_arg next = {.sem = sem, .n = 1, .wg = WEFT_WG_INIT};
    head.ctx = how ? weft_ctx_with_timeout(NULL, MS(40)) : weft_ctx_with_cancel(NULL);
    start_sem_waiter(&head);
    weft_sleep(MS(5));
    start_sem_waiter(&next); /* fits, but queues behind head (FIFO) */
    weft_sleep(MS(10));
    CHECK_EQ(atomic_load(&head.done), 0);
    CHECK_EQ(atomic_load(&next.done), 0);
    int64_t at = weft_now();
    if (!how)
      weft_ctx_cancel(head.ctx);
    weft_wg_wait(&head.wg);
    weft_wg_wait(&next.wg);
    CHECK(weft_now() - at < PROMPT);
    CHECK_EQ(head.rc, how ? -ETIMEDOUT : -ECANCELED);
    CHECK_EQ(next.rc, 0);
    CHECK_EQ(weft_sem_try_acquire(sem, 1), -EAGAIN); /* 3 + 1 held */
    weft_sem_release(sem, 3);
    weft_sem_release(sem, 1);
    CHECK_EQ(weft_sem_try_acquire(sem, 4), 0); /* no token leaked */
    weft_sem_release(sem, 4);
    weft_ctx_release(head.ctx);
    weft_sem_free(sem);
  }

  atomic_store(&current, "sem n > size does not queue");
  weft_sem *sem = weft_sem_new(2);
  struct sem_waiter_arg big = {.sem = sem, .n = 3, .wg = WEFT_WG_INIT};
  big.ctx = weft_ctx_with_cancel(NULL);
  start_sem_waiter(&big);
  weft_sleep(MS(5));
  weft_ctx *live = weft_ctx_with_cancel(NULL);
  CHECK_EQ(weft_sem_acquire_ctx(sem, 2, live), 0);
  CHECK_EQ(atomic_load(&big.done), 0);
  weft_ctx_cancel(big.ctx);
  weft_wg_wait(&big.wg);
  CHECK_EQ(big.rc, -ECANCELED);
  weft_ctx_cancel(live); /* after the grant: changes nothing */
  CHECK_EQ(weft_sem_try_acquire(sem, 1), -EAGAIN);
  weft_sem_release(sem, 2);
  CHECK_EQ(weft_sem_try_acquire(sem, 2), 0);
  weft_sem_release(sem, 2);
  weft_ctx_release(live);
  weft_ctx_release(big.ctx);
  weft_sem_free(sem);
  return 0;
}

static void test_sem_acquire_ctx_queue(void **state)
{
  (void)state;
  for (int p = 1; p <= 2; p++) {
    assert_int_equal(run_weft(p, sem_queue, NULL), 0);
    expect_no_failures();
  }
}

/* ---- select with WEFT_SELECT_DEFAULT, write_all's short writes ---- */

static int select_default(void *arg)
{
  (void)arg;
  atomic_store(&current, "select_ctx WEFT_SELECT_DEFAULT");
  weft_chan *ch = weft_chan_new(sizeof(int), 1);
  int v = -1;
  weft_select_case c = {.ch = ch, .dir = WEFT_SELECT_RECV, .elem = &v};
  weft_ctx *ctx = weft_ctx_with_cancel(NULL);
  CHECK_EQ(weft_select_ctx(&c, 1, WEFT_SELECT_DEFAULT, ctx), -EAGAIN);
  CHECK_EQ(weft_select_ctx(&c, 1, WEFT_SELECT_DEFAULT, NULL), -EAGAIN);
  CHECK_EQ(weft_chan_try_send(ch, &(int){3}), 0);
  CHECK_EQ(weft_select_ctx(&c, 1, WEFT_SELECT_DEFAULT, ctx), 0);
  CHECK_EQ(v, 3);
  weft_ctx_cancel(ctx);
  CHECK_EQ(weft_chan_try_send(ch, &(int){4}), 0);
  CHECK_EQ(weft_select_ctx(&c, 1, WEFT_SELECT_DEFAULT, ctx), -ECANCELED);
  CHECK_EQ(weft_chan_len(ch), 1);
  weft_ctx_release(ctx);
  weft_chan_release(ch);
  return 0;
}

static void test_select_ctx_default(void **state)
{
  (void)state;
  assert_int_equal(run_weft(2, select_default, NULL), 0);
  expect_no_failures();
}

enum { BIG = 200000 };

struct big_reader {
  int fd;
  size_t limit; /* stop after this many bytes */
  size_t got;
  bool intact;
  weft_wg wg;
};

static void read_big(void *arg)
{
  struct big_reader *b = arg;
  char buf[1000];
  b->intact = true;
  while (b->got < b->limit) {
    size_t want = b->limit - b->got < sizeof buf ? b->limit - b->got : sizeof buf;
    ssize_t n = weft_read_ctx(b->fd, buf, want, NULL);
    if (n <= 0)
      break;
    for (ssize_t i = 0; i < n; i++)
      b->intact &= buf[i] == (char)((b->got + (size_t)i) % 251);
    b->got += (size_t)n;
  }
  weft_wg_done(&b->wg);
}

/* write_all_ctx loops over short writes while a reader drains; cancelled part-way it
 * returns the context's error after a partial write (the count is not reported). */
static int write_all_big(void *arg)
{
  (void)arg;
  atomic_store(&current, "write_all_ctx short writes");
  char *data = malloc(BIG);
  for (size_t i = 0; i < BIG; i++)
    data[i] = (char)(i % 251);
  for (int cancel = 0; cancel < 2; cancel++) {
    int fds[2];
    small_pipe(fds);
    struct big_reader b = {.fd = fds[0], .limit = cancel ? BIG / 4 : BIG, .wg = WEFT_WG_INIT};
    weft_wg_add(&b.wg, 1);
    CHECK_EQ(weft_go(read_big, &b), 0);
    weft_ctx *ctx = weft_ctx_with_cancel(NULL);
    struct helper h = {.ctx = ctx, .delay = MS(30)};
    if (cancel)
      spawn(&h, cancel_later);
    long rc = weft_write_all_ctx(fds[1], data, BIG, ctx);
    weft_wg_wait(&b.wg);
    weft_wg_wait(&h.wg);
    CHECK(b.intact);
    if (cancel) {
      CHECK_EQ(rc, -ECANCELED);
      CHECK_EQ(b.got, BIG / 4);
      CHECK(fd_pending(fds[0]) > 0); /* partial: written, not read, not reported */
    } else {
      CHECK_EQ(rc, BIG);
      CHECK_EQ(b.got, BIG);
    }
    weft_ctx_release(ctx);
    weft_close(fds[0]);
    weft_close(fds[1]);
  }
  free(data);
  return 0;
}

static void test_write_all_ctx_short_writes(void **state)
{
  (void)state;
  for (int p = 1; p <= 2; p++) {
    assert_int_equal(run_weft(p, write_all_big, NULL), 0);
    expect_no_failures();
  }
}

/* A connect whose context ended while the SYN waits can be resumed on the same socket once
 * the listener has room (EALREADY: wait for the attempt, as Go's connect loop does). */
static int connect_resume(void *arg)
{
  (void)arg;
  struct fix f = {0};
  atomic_store(&current, "connect_ctx resumed after cancel");
  connect_setup(&f, false);
  weft_ctx *ctx = weft_ctx_with_timeout(NULL, TIMEOUT);
  CHECK_EQ(connect_call(&f, ctx), -ETIMEDOUT);
  connect_unblock(&f); /* room for it now: the retransmitted SYN gets in */
  weft_ctx *bound = weft_ctx_with_timeout(NULL, HANG);
  CHECK_EQ(connect_call(&f, bound), 0);
  weft_ctx_release(bound);
  connect_ok(&f, 0);
  sockets_teardown(&f);
  weft_ctx_release(ctx);
  return 0;
}

static void test_connect_ctx_resume(void **state)
{
  (void)state;
  assert_int_equal(run_weft(2, connect_resume, NULL), 0);
  expect_no_failures();
}

/* ---- the race ----
 * Each round starts many waits, each on its own context or one of a few shared ones,
 * while cancellers cancel contexts (and shared deadlines pass) at random moments and
 * completers make the operations possible at random moments: plain senders and receivers
 * on the two channels, partners that write a byte, drain a pipe, connect or let a blocking
 * job finish, and semaphore holders that release their tokens. Then every context is
 * cancelled, and the round checks that each operation either completed with its effect
 * seen exactly once or returned its context's error with no effect. */

enum rkind {
  RK_RECV,
  RK_SELECT,
  RK_SEND,
  RK_SEM,
  RK_READ,
  RK_READABLE,
  RK_WRITE,
  RK_ACCEPT,
  RK_BLOCKING,
  RK_SLEEP,
  RK_N
};
enum {
  RACE_SHARED = 3,
  RACE_MAX_W = 48,
  RACE_CANCELLERS = 4,
  RACE_CHAN_COMPLETERS = 4,
  RACE_CHAN_OPS = 6,
  RACE_SEM = 4
};
#define RACE_MAXV (RACE_MAX_W + RACE_CHAN_COMPLETERS * RACE_CHAN_OPS + 2)

struct race;

struct rwaiter {
  struct race *r;
  int idx;
  enum rkind kind;
  uint64_t rng;
  weft_ctx *ctx; /* a reference */
  int which;     /* channel: 0 unbuffered, 1 buffered */
  long rc;
  int err_after; /* weft_ctx_err(ctx) when the call returned */
  int value;
  char buf[16];
  int fds[2];
  size_t fill, drained; /* written by the partner, read after it is done */
  int wrote, connected;
  int lfd, client;
  struct sockaddr_in addr;
  int64_t n, sleep_ns, t0, t1;
  atomic_int go, ran, abandons;
  atomic_long abandon_result;
  long result;
};

struct race_helper {
  struct race *r;
  uint64_t rng;
};

struct race {
  int nw;
  weft_ctx *ctxs[RACE_MAX_W + RACE_SHARED]; /* every context of the round */
  int nctx;
  weft_chan *ch[2]; /* unbuffered, buffered (2) */
  weft_sem *sem;
  atomic_long sem_held;
  atomic_int next_value;
  atomic_int received[RACE_MAXV];
  atomic_int sent[RACE_MAXV];
  struct rwaiter w[RACE_MAX_W];
  struct race_helper helpers[RACE_CANCELLERS + RACE_CHAN_COMPLETERS];
  weft_wg waiters, others;
};

static int64_t rand_ns(uint64_t *rng, int64_t max)
{
  return (int64_t)(test_rand(rng) % (uint64_t)(max + 1));
}

static long race_fn(void *arg)
{
  struct rwaiter *w = arg;
  struct timespec tick = {0, 100000};
  time_t end = time(NULL) + 10;
  atomic_fetch_add(&w->ran, 1);
  while (!atomic_load(&w->go) && time(NULL) < end)
    nanosleep(&tick, NULL);
  return 1000 + w->idx;
}

static void race_abandon(void *arg, long result)
{
  struct rwaiter *w = arg;
  atomic_store(&w->abandon_result, result);
  atomic_fetch_add(&w->abandons, 1);
}

static void race_waiter(void *arg)
{
  struct rwaiter *w = arg;
  struct race *r = w->r;
  weft_select_case cases[2] = {{.ch = r->ch[0], .dir = WEFT_SELECT_RECV, .elem = &w->value},
                               {.ch = r->ch[1], .dir = WEFT_SELECT_RECV, .elem = &w->value}};
  switch (w->kind) {
  case RK_RECV:
    w->rc = weft_chan_recv_ctx(r->ch[w->which], &w->value, w->ctx);
    break;
  case RK_SELECT:
    w->rc = weft_select_ctx(cases, 2, 0, w->ctx);
    break;
  case RK_SEND:
    w->rc = weft_chan_send_ctx(r->ch[w->which], &w->value, w->ctx);
    break;
  case RK_SEM:
    w->rc = weft_sem_acquire_ctx(r->sem, w->n, w->ctx);
    if (w->rc == 0) {
      CHECK(atomic_fetch_add(&r->sem_held, w->n) + w->n <= RACE_SEM);
      weft_sleep(rand_ns(&w->rng, MS(2)));
      atomic_fetch_sub(&r->sem_held, w->n);
      weft_sem_release(r->sem, w->n);
    }
    break;
  case RK_READ:
    w->rc = weft_read_ctx(w->fds[0], w->buf, sizeof w->buf, w->ctx);
    break;
  case RK_READABLE:
    w->rc = weft_wait_readable_ctx(w->fds[0], w->ctx);
    break;
  case RK_WRITE:
    w->rc = weft_write_ctx(w->fds[0], "xyz", 3, w->ctx);
    break;
  case RK_ACCEPT:
    w->rc = weft_accept_ctx(w->lfd, NULL, NULL, w->ctx);
    if (w->rc >= 0)
      weft_close((int)w->rc);
    break;
  case RK_BLOCKING:
    w->rc = weft_blocking_ctx(w->ctx, race_fn, w, &w->result, race_abandon);
    break;
  case RK_SLEEP:
    w->t0 = weft_now();
    w->rc = weft_sleep_ctx(w->ctx, w->sleep_ns);
    w->t1 = weft_now();
    break;
  default:
    break;
  }
  w->err_after = weft_ctx_err(w->ctx);
  weft_wg_done(&r->waiters);
}

/* Makes the waiter's operation possible at a random moment (or, one time in four, not). */
static void race_partner(void *arg)
{
  struct rwaiter *w = arg;
  uint64_t rng = w->rng ^ 0x9e3779b97f4a7c15ull;
  weft_sleep(rand_ns(&rng, MS(3)));
  if (test_rand(&rng) % 4 != 0) {
    switch (w->kind) {
    case RK_READ:
    case RK_READABLE:
      w->wrote = weft_write(w->fds[1], "z", 1, weft_now() + HANG) == 1;
      break;
    case RK_WRITE:
      w->drained = drain_fd(w->fds[1]);
      break;
    case RK_ACCEPT:
      w->client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      w->connected = weft_connect(w->client, (struct sockaddr *)&w->addr, sizeof w->addr,
                                  weft_now() + HANG) == 0;
      CHECK(w->connected);
      break;
    case RK_BLOCKING:
      atomic_store(&w->go, 1);
      break;
    default:
      break;
    }
  }
  weft_wg_done(&w->r->others);
}

static void race_canceller(void *arg)
{
  struct race_helper *h = arg;
  for (int i = 0; i < 3; i++) {
    weft_sleep(rand_ns(&h->rng, MS(3)));
    weft_ctx_cancel(h->r->ctxs[test_rand(&h->rng) % (uint64_t)h->r->nctx]);
  }
  weft_wg_done(&h->r->others);
}

/* Plain sends of fresh values and plain receives, each with a short deadline. */
static void race_chan_completer(void *arg)
{
  struct race_helper *h = arg;
  struct race *r = h->r;
  for (int i = 0; i < RACE_CHAN_OPS; i++) {
    weft_sleep(rand_ns(&h->rng, MS(2)));
    weft_chan *ch = r->ch[test_rand(&h->rng) & 1];
    int64_t deadline = weft_now() + rand_ns(&h->rng, MS(2));
    int v = -1;
    if (test_rand(&h->rng) & 1) {
      v = atomic_fetch_add(&r->next_value, 1);
      if (weft_chan_send(ch, &v, deadline) == 0)
        atomic_fetch_add(&r->sent[v], 1);
    } else if (weft_chan_recv(ch, &v, deadline) == 0) {
      CHECK(v > 0 && v < RACE_MAXV);
      if (v > 0 && v < RACE_MAXV)
        atomic_fetch_add(&r->received[v], 1);
    }
  }
  weft_wg_done(&r->others);
}

static bool race_has_partner(enum rkind k)
{
  return k == RK_READ || k == RK_READABLE || k == RK_WRITE || k == RK_ACCEPT ||
         k == RK_BLOCKING;
}

static void race_setup_waiter(struct race *r, struct rwaiter *w, int i, uint64_t *rng)
{
  w->r = r;
  w->idx = i;
  w->kind = (enum rkind)(test_rand(rng) % RK_N);
  w->rng = test_rand(rng);
  w->which = (int)(test_rand(rng) & 1);
  w->value = w->kind == RK_SEND ? i + 1 : -1;
  w->fds[0] = w->fds[1] = w->lfd = w->client = -1;
  w->result = -1;
  switch (test_rand(rng) % 4) {
  case 0:
    w->ctx = weft_ctx_retain(r->ctxs[test_rand(rng) % RACE_SHARED]);
    break;
  case 1:
    w->ctx = weft_ctx_with_timeout(NULL, rand_ns(rng, MS(4)));
    break;
  default:
    w->ctx = weft_ctx_with_cancel(NULL);
    break;
  }
  if (w->ctx != r->ctxs[0] && w->ctx != r->ctxs[1] && w->ctx != r->ctxs[2])
    r->ctxs[r->nctx++] = w->ctx;
  switch (w->kind) {
  case RK_SEM:
    w->n = 1 + (int64_t)(test_rand(rng) % (RACE_SEM + 1)); /* sometimes more than size */
    break;
  case RK_READ:
  case RK_READABLE:
    small_pipe(w->fds);
    break;
  case RK_WRITE:
    small_pipe(w->fds);
    {
      int rd = w->fds[0]; /* [0] writes */
      w->fds[0] = w->fds[1];
      w->fds[1] = rd;
    }
    w->fill = fill_fd(w->fds[0]);
    break;
  case RK_ACCEPT:
    w->lfd = listen_loopback(4, &w->addr);
    break;
  case RK_SLEEP:
    w->sleep_ns = rand_ns(rng, MS(3));
    break;
  default:
    break;
  }
}

static void race_check_waiter(struct race *r, struct rwaiter *w)
{
  bool failed = w->rc < 0;
  if (failed) { /* the context's error, and only once the context was done */
    CHECK(w->rc == -ECANCELED || w->rc == -ETIMEDOUT);
    CHECK_EQ(w->rc, w->err_after);
    CHECK_EQ(w->rc, weft_ctx_err(w->ctx));
  }
  switch (w->kind) {
  case RK_RECV:
  case RK_SELECT:
    if (failed) {
      CHECK_EQ(w->value, -1);
    } else {
      CHECK(w->kind == RK_RECV ? w->rc == 0 : w->rc == 0 || w->rc == 1);
      CHECK(w->value > 0 && w->value < RACE_MAXV);
      if (w->value > 0 && w->value < RACE_MAXV)
        atomic_fetch_add(&r->received[w->value], 1);
    }
    break;
  case RK_SEND:
    CHECK(failed || w->rc == 0);
    if (!failed)
      atomic_fetch_add(&r->sent[w->value], 1);
    break;
  case RK_SEM:
    CHECK(failed || (w->rc == 0 && w->n <= RACE_SEM));
    break;
  case RK_READ:
    CHECK(failed || (w->rc == 1 && w->wrote && w->buf[0] == 'z'));
    CHECK_EQ(fd_pending(w->fds[0]), (size_t)w->wrote - (w->rc == 1));
    break;
  case RK_READABLE:
    CHECK(failed || (w->rc == 0 && w->wrote));
    CHECK_EQ(fd_pending(w->fds[0]), (size_t)w->wrote);
    break;
  case RK_WRITE:
    CHECK(failed || w->rc == 3);
    CHECK_EQ(w->drained + fd_pending(w->fds[1]), w->fill + (w->rc == 3 ? 3 : 0));
    break;
  case RK_ACCEPT: {
    int waiting = 0, fd;
    CHECK(failed || w->connected);
    while ((fd = accept4(w->lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
      close(fd);
      waiting++;
    }
    CHECK_EQ(waiting, w->connected - !failed); /* accepted exactly once, or still there */
    break;
  }
  case RK_BLOCKING:
    if (!failed) {
      CHECK_EQ(w->rc, 0);
      CHECK_EQ(w->result, 1000 + w->idx);
      CHECK_EQ(atomic_load(&w->ran), 1);
      CHECK_EQ(atomic_load(&w->abandons), 0);
    } else {
      CHECK_EQ(w->result, -1);
      CHECK_EQ(atomic_load(&w->abandons), 1);
      CHECK_EQ(atomic_load(&w->abandon_result),
               atomic_load(&w->ran) ? 1000 + w->idx : -ECANCELED);
    }
    break;
  case RK_SLEEP:
    CHECK(failed || (w->rc == 0 && w->t1 - w->t0 >= w->sleep_ns));
    break;
  default:
    break;
  }
}

static void race_teardown_waiter(struct rwaiter *w)
{
  close_if(&w->fds[0]);
  close_if(&w->fds[1]);
  close_if(&w->lfd);
  close_if(&w->client);
}

/* Every failed blocking call's on_abandon has come (or HANG passed). */
static void race_settle_blocking(struct race *r)
{
  for (int i = 0; i < r->nw; i++) {
    struct rwaiter *w = &r->w[i];
    atomic_store(&w->go, 1);
    if (w->kind == RK_BLOCKING && w->rc < 0)
      wait_for_atomic(&w->abandons, 1);
  }
  weft_sleep(MS(2)); /* a second on_abandon would show */
}

static void race_round(uint64_t *rng, int nw)
{
  struct race *r = calloc(1, sizeof *r);
  r->nw = nw;
  r->ch[0] = weft_chan_new(sizeof(int), 0);
  r->ch[1] = weft_chan_new(sizeof(int), 2);
  r->sem = weft_sem_new(RACE_SEM);
  atomic_store(&r->next_value, RACE_MAX_W + 1);
  r->ctxs[0] = weft_ctx_with_cancel(NULL);
  r->ctxs[1] = weft_ctx_with_timeout(NULL, 1 + rand_ns(rng, MS(4)));
  r->ctxs[2] = weft_ctx_with_value(r->ctxs[0], r, r); /* done when [0] is */
  r->nctx = RACE_SHARED;
  for (int i = 0; i < nw; i++)
    race_setup_waiter(r, &r->w[i], i, rng);

  weft_wg_add(&r->waiters, nw);
  for (int i = 0; i < nw; i++) {
    CHECK_EQ(weft_go(race_waiter, &r->w[i]), 0);
    if (race_has_partner(r->w[i].kind)) {
      weft_wg_add(&r->others, 1);
      CHECK_EQ(weft_go(race_partner, &r->w[i]), 0);
    }
  }
  for (int i = 0; i < RACE_CANCELLERS + RACE_CHAN_COMPLETERS; i++) {
    r->helpers[i] = (struct race_helper){.r = r, .rng = test_rand(rng)};
    weft_wg_add(&r->others, 1);
    CHECK_EQ(
        weft_go(i < RACE_CANCELLERS ? race_canceller : race_chan_completer, &r->helpers[i]), 0);
  }
  weft_wg_wait(&r->others);
  for (int i = 0; i < r->nctx; i++) /* whatever still waits ends now */
    weft_ctx_cancel(r->ctxs[i]);
  weft_wg_wait(&r->waiters);
  race_settle_blocking(r);

  /* Nothing is left parked on the channels or the semaphore; collect buffered values. */
  int v;
  CHECK_EQ(weft_chan_try_send(r->ch[0], &(int){0}), -EAGAIN);
  CHECK_EQ(weft_chan_try_recv(r->ch[0], &v), -EAGAIN);
  while (weft_chan_try_recv(r->ch[1], &v) == 0) {
    CHECK(v > 0 && v < RACE_MAXV);
    if (v > 0 && v < RACE_MAXV)
      atomic_fetch_add(&r->received[v], 1);
  }
  CHECK_EQ(atomic_load(&r->sem_held), 0);
  CHECK_EQ(weft_sem_try_acquire(r->sem, RACE_SEM), 0); /* no token leaked */
  weft_sem_release(r->sem, RACE_SEM);

  for (int i = 0; i < nw; i++)
    race_check_waiter(r, &r->w[i]);
  for (int v2 = 1; v2 < RACE_MAXV; v2++) /* each value sent was received exactly once */
    if (atomic_load(&r->received[v2]) != atomic_load(&r->sent[v2]))
      CHECK_EQ(atomic_load(&r->received[v2]), atomic_load(&r->sent[v2]));

  for (int i = 0; i < nw; i++)
    race_teardown_waiter(&r->w[i]);
  for (int i = 0; i < r->nctx; i++)
    weft_ctx_release(r->ctxs[i]);
  for (int i = 0; i < nw; i++)
    if (r->w[i].ctx == r->ctxs[0] || r->w[i].ctx == r->ctxs[1] || r->w[i].ctx == r->ctxs[2])
      weft_ctx_release(r->w[i].ctx); /* the waiter's own reference to a shared one */
  weft_chan_release(r->ch[0]);
  weft_chan_release(r->ch[1]);
  weft_sem_free(r->sem);
  free(r);
}

static int race_main(void *arg)
{
  static char name[64];
  uint64_t rng = *(uint64_t *)arg ^ (uint64_t)weft_procs() * 0x2545f4914f6cdd1dull;
  const char *env = getenv("WEFT_CTX_RACE_ROUNDS"); /* a longer soak */
  int rounds = env ? atoi(env) : SANITIZED ? 12 : 40, nw = SANITIZED ? 24 : RACE_MAX_W;
  snprintf(name, sizeof name, "race, P=%d", weft_procs());
  atomic_store(&current, name);
  for (int i = 0; i < rounds && !atomic_load(&failures); i++)
    race_round(&rng, nw);
  return atomic_load(&failures) ? 1 : 0;
}

static void test_race(void **state)
{
  (void)state;
  uint64_t seed = test_seed();
  run_weft_p1to4(race_main, &seed);
  expect_no_failures();
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sleep_ctx),
      cmocka_unit_test(test_chan_send_ctx),
      cmocka_unit_test(test_chan_recv_ctx),
      cmocka_unit_test(test_select_ctx),
      cmocka_unit_test(test_wait_readable_ctx),
      cmocka_unit_test(test_wait_writable_ctx),
      cmocka_unit_test(test_read_ctx),
      cmocka_unit_test(test_write_ctx),
      cmocka_unit_test(test_write_all_ctx),
      cmocka_unit_test(test_accept_ctx),
      cmocka_unit_test(test_connect_ctx),
      cmocka_unit_test(test_sem_acquire_ctx),
      cmocka_unit_test(test_blocking_ctx),
      cmocka_unit_test(test_blocking_ctx_saturated_pool),
      cmocka_unit_test(test_sem_acquire_ctx_queue),
      cmocka_unit_test(test_select_ctx_default),
      cmocka_unit_test(test_write_all_ctx_short_writes),
      cmocka_unit_test(test_connect_ctx_resume),
      cmocka_unit_test(test_race),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
