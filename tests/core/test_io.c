/* test_io.c: fd I/O through the poller: pipes and socketpairs between coroutines, large
 * transfers with short writes, deadlines, weft_close under a waiter, eventfd and signalfd,
 * loopback TCP (accept, connect, echo, refused, many connections), and calls from plain
 * threads. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "weft_test.h"

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#else
#define SANITIZED 0
#endif

#if defined(__SANITIZE_THREAD__)
void AnnotateIgnoreWritesBegin(const char *file, int line);
void AnnotateIgnoreWritesEnd(const char *file, int line);
#endif

#define LATE_BOUND    MS(2000)
#define IO_DEADLINE() (weft_now() + MS(20000)) /* a hang fails instead of hanging */

/* ---- helpers ---- */

enum io_kind { IO_PIPE, IO_SOCKET_RW, IO_SOCKET_SENDRECV };

static ssize_t do_read(enum io_kind k, int fd, void *buf, size_t len, int64_t deadline)
{
  return k == IO_SOCKET_SENDRECV ? weft_recv(fd, buf, len, 0, deadline)
                                 : weft_read(fd, buf, len, deadline);
}

static ssize_t do_write(enum io_kind k, int fd, const void *buf, size_t len, int64_t deadline)
{
  return k == IO_SOCKET_SENDRECV ? weft_send(fd, buf, len, 0, deadline)
                                 : weft_write(fd, buf, len, deadline);
}

/* Read exactly len bytes; returns len, 0 at EOF before any byte, or a negative errno (-EIO
 * for EOF in the middle). */
static ssize_t read_full(enum io_kind k, int fd, void *buf, size_t len, int64_t deadline)
{
  size_t got = 0;
  while (got < len) {
    ssize_t n = do_read(k, fd, (char *)buf + got, len - got, deadline);
    if (n < 0)
      return n;
    if (n == 0)
      return got ? -EIO : 0;
    got += (size_t)n;
  }
  return (ssize_t)got;
}

static ssize_t write_full(enum io_kind k, int fd, const void *buf, size_t len, int64_t deadline)
{
  if (k != IO_SOCKET_SENDRECV)
    return weft_write_all(fd, buf, len, deadline);
  size_t done = 0;
  while (done < len) {
    ssize_t n = do_write(k, fd, (const char *)buf + done, len - done, deadline);
    if (n < 0)
      return n;
    done += (size_t)n;
  }
  return (ssize_t)done;
}

static unsigned char pattern(size_t i, unsigned salt)
{
  return (unsigned char)((i * 131u) ^ (i >> 9) ^ salt);
}

/* A pair of connected fds: [0] for the first party, [1] for the second; for a pipe also
 * the reverse pipe, so both directions exist. */
struct duplex {
  int a_rd, a_wr; /* first party reads a_rd, writes a_wr */
  int b_rd, b_wr;
};

static int duplex_open(enum io_kind k, struct duplex *d)
{
  if (k == IO_PIPE) {
    int p1[2], p2[2];
    if (pipe2(p1, O_CLOEXEC) || pipe2(p2, O_CLOEXEC))
      return -1;
    *d = (struct duplex){.a_rd = p2[0], .a_wr = p1[1], .b_rd = p1[0], .b_wr = p2[1]};
    return 0;
  }
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
    return -1;
  *d = (struct duplex){.a_rd = sv[0], .a_wr = sv[0], .b_rd = sv[1], .b_wr = sv[1]};
  return 0;
}

static void close_pair(int rd, int wr)
{
  weft_close(rd);
  if (wr != rd)
    weft_close(wr);
}

/* ---- ping-pong between two coroutines over pipes and socketpairs ---- */

struct pingpong {
  enum io_kind kind;
  int rounds;
  struct duplex d;
  atomic_int errors;
  weft_wg wg;
};

static void pong(void *arg)
{
  struct pingpong *pp = arg;
  unsigned char buf[512];
  for (int i = 0; i < pp->rounds; i++) {
    size_t len = 1 + (size_t)(i * 37 % 300);
    if (read_full(pp->kind, pp->d.b_rd, buf, len, IO_DEADLINE()) != (ssize_t)len) {
      atomic_fetch_add(&pp->errors, 1);
      break;
    }
    for (size_t j = 0; j < len; j++)
      if (buf[j] != pattern(j, (unsigned)i))
        atomic_fetch_add(&pp->errors, 1);
    uint32_t ack = (uint32_t)len;
    if (write_full(pp->kind, pp->d.b_wr, &ack, sizeof ack, IO_DEADLINE()) != sizeof ack) {
      atomic_fetch_add(&pp->errors, 1);
      break;
    }
  }
  /* the peer closes its end when done: EOF */
  if (read_full(pp->kind, pp->d.b_rd, buf, 1, IO_DEADLINE()) != 0)
    atomic_fetch_add(&pp->errors, 1);
  weft_wg_done(&pp->wg);
}

static void ping(void *arg)
{
  struct pingpong *pp = arg;
  unsigned char buf[512];
  for (int i = 0; i < pp->rounds; i++) {
    size_t len = 1 + (size_t)(i * 37 % 300);
    for (size_t j = 0; j < len; j++)
      buf[j] = pattern(j, (unsigned)i);
    if (write_full(pp->kind, pp->d.a_wr, buf, len, IO_DEADLINE()) != (ssize_t)len) {
      atomic_fetch_add(&pp->errors, 1);
      break;
    }
    uint32_t ack = 0;
    if (read_full(pp->kind, pp->d.a_rd, &ack, sizeof ack, IO_DEADLINE()) != sizeof ack ||
        ack != len) {
      atomic_fetch_add(&pp->errors, 1);
      break;
    }
  }
  if (pp->kind == IO_PIPE)
    weft_close(pp->d.a_wr);
  else
    shutdown(pp->d.a_wr, SHUT_WR);
  weft_wg_done(&pp->wg);
}

static int pingpong_main(void *arg)
{
  struct pingpong *pp = arg;
  atomic_store(&pp->errors, 0);
  if (duplex_open(pp->kind, &pp->d))
    return -1;
  weft_wg_add(&pp->wg, 2);
  weft_go(pong, pp);
  weft_go(ping, pp);
  weft_wg_wait(&pp->wg);
  if (pp->kind == IO_PIPE) {
    weft_close(pp->d.a_rd);
    close_pair(pp->d.b_rd, pp->d.b_wr);
  } else {
    weft_close(pp->d.a_rd);
    weft_close(pp->d.b_rd);
  }
  return atomic_load(&pp->errors);
}

static void test_pingpong(void **state)
{
  (void)state;
  const enum io_kind kinds[] = {IO_PIPE, IO_SOCKET_RW, IO_SOCKET_SENDRECV};
  for (size_t i = 0; i < 3; i++) {
    struct pingpong pp = {.kind = kinds[i], .rounds = SANITIZED ? 200 : 1000};
    for (int p = 1; p <= 4; p++) {
      int rc = run_weft(p, pingpong_main, &pp);
      if (rc != 0)
        fail_msg("kind %d, P=%d: %d errors", (int)kinds[i], p, rc);
    }
  }
}

/* ---- a large transfer: short writes over a pipe ---- */

struct bulk {
  size_t size;
  unsigned char *src;
  int fds[2];
  ssize_t written, first_write;
  size_t received;
  int reads, bad_bytes;
  ssize_t read_error;
  weft_wg wg;
};

static void bulk_writer(void *arg)
{
  struct bulk *b = arg;
  /* one plain write on a fresh non-blocking pipe is short: the pipe holds 64 KiB */
  b->first_write = weft_write(b->fds[1], b->src, b->size, IO_DEADLINE());
  if (b->first_write > 0)
    b->written = weft_write_all(b->fds[1], b->src + b->first_write,
                                b->size - (size_t)b->first_write, IO_DEADLINE());
  weft_close(b->fds[1]);
  weft_wg_done(&b->wg);
}

static void bulk_reader(void *arg)
{
  struct bulk *b = arg;
  unsigned char *buf = malloc(200000);
  uint64_t rng = test_seed();
  for (;;) {
    size_t want = 1 + (size_t)(test_rand(&rng) % 200000);
    ssize_t n = weft_read(b->fds[0], buf, want, IO_DEADLINE());
    if (n <= 0) {
      b->read_error = n;
      break;
    }
    for (ssize_t i = 0; i < n; i++)
      if (buf[i] != pattern(b->received + (size_t)i, 7))
        b->bad_bytes++;
    b->received += (size_t)n;
    b->reads++;
  }
  free(buf);
  weft_wg_done(&b->wg);
}

static int bulk_main(void *arg)
{
  struct bulk *b = arg;
  b->written = b->first_write = b->read_error = -1;
  b->received = 0;
  b->reads = b->bad_bytes = 0;
  if (pipe2(b->fds, O_CLOEXEC))
    return -1;
  weft_wg_add(&b->wg, 2);
  weft_go(bulk_reader, b);
  weft_go(bulk_writer, b);
  weft_wg_wait(&b->wg);
  weft_close(b->fds[0]);
  return 0;
}

static void test_large_transfer(void **state)
{
  (void)state;
  struct bulk b = {.size = SANITIZED ? (2u << 20) : (16u << 20)};
  b.src = malloc(b.size);
  assert_non_null(b.src);
  for (size_t i = 0; i < b.size; i++)
    b.src[i] = pattern(i, 7);
  for (int p = 1; p <= 4; p++) {
    assert_int_equal(run_weft(p, bulk_main, &b), 0);
    assert_true(b.first_write > 0 && (size_t)b.first_write < b.size); /* a short write */
    assert_int_equal(b.written, (ssize_t)(b.size - (size_t)b.first_write));
    assert_int_equal(b.read_error, 0); /* EOF after the writer closed */
    assert_int_equal(b.received, b.size);
    assert_int_equal(b.bad_bytes, 0);
    assert_true(b.reads > 1);
  }
  free(b.src);
}

/* ---- deadlines ---- */

static int check_timeout(int64_t deadline, ssize_t r)
{
  int64_t now = weft_now();
  if (r != -ETIMEDOUT)
    return 1;
  if (now < deadline)
    return 2; /* early */
  if (now - deadline > LATE_BOUND)
    return 3;
  return 0;
}

static int fill_pipe(int wr)
{
  static char junk[65536];
  if (weft_fd_register(wr) != 0) /* makes it non-blocking */
    return -1;
  while (write(wr, junk, sizeof junk) > 0) {
  }
  return errno == EAGAIN ? 0 : -1;
}

struct late {
  int wr;
  weft_wg wg;
};

static void late_writer(void *arg)
{
  struct late *l = arg;
  weft_sleep(MS(10));
  weft_write(l->wr, "x", 1, IO_DEADLINE());
  weft_wg_done(&l->wg);
}

static int deadline_main(void *arg)
{
  (void)arg;
  int p[2], lfd, rc;
  char c;
  if (pipe2(p, O_CLOEXEC))
    return -1;
  int64_t d = weft_now() + MS(30);
  if ((rc = check_timeout(d, weft_read(p[0], &c, 1, d))))
    return 10 + rc;
  d = weft_now() + MS(20);
  if ((rc = check_timeout(d, weft_wait_readable(p[0], d))))
    return 20 + rc;
  /* a deadline already past: no park */
  if (weft_read(p[0], &c, 1, weft_now() - MS(5)) != -ETIMEDOUT)
    return 30;
  if (weft_read(p[0], &c, 1, 0) != -ETIMEDOUT)
    return 31;
  /* data that is there is read whatever the deadline */
  if (write(p[1], "y", 1) != 1 || weft_read(p[0], &c, 1, weft_now() - MS(5)) != 1 || c != 'y')
    return 32;
  /* data arriving before the deadline wins */
  struct late l = {.wr = p[1]};
  weft_wg_add(&l.wg, 1);
  weft_go(late_writer, &l);
  if (weft_read(p[0], &c, 1, weft_now() + MS(2000)) != 1 || c != 'x')
    return 33;
  weft_wg_wait(&l.wg);
  /* writing to a full pipe */
  if (fill_pipe(p[1]))
    return 40;
  d = weft_now() + MS(30);
  if ((rc = check_timeout(d, weft_write(p[1], "z", 1, d))))
    return 40 + rc;
  d = weft_now() + MS(20);
  if ((rc = check_timeout(d, weft_wait_writable(p[1], d))))
    return 50 + rc;
  weft_close(p[0]);
  weft_close(p[1]);
  /* accept with nobody connecting */
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) || listen(lfd, 8))
    return 60;
  d = weft_now() + MS(30);
  if ((rc = check_timeout(d, weft_accept(lfd, NULL, NULL, d))))
    return 60 + rc;
  weft_close(lfd);
  return 0;
}

static void test_deadlines(void **state)
{
  (void)state;
  run_weft_p1to4(deadline_main, NULL);
}

/* ---- weft_close (and weft_fd_forget) under a waiter ---- */

struct closer {
  int fd;
  int dir;          /* 0: read, 1: write */
  int64_t deadline; /* of the waiter */
  atomic_int started;
  atomic_long result;
  atomic_llong woke_at;
  weft_wg wg;
};

static void close_waiter(void *arg)
{
  struct closer *cl = arg;
  char buf[16] = "x";
  atomic_store(&cl->started, 1);
  ssize_t r = cl->dir ? weft_write(cl->fd, buf, 1, cl->deadline)
                      : weft_read(cl->fd, buf, sizeof buf, cl->deadline);
  atomic_store(&cl->woke_at, weft_now());
  atomic_store(&cl->result, r);
  weft_wg_done(&cl->wg);
}

/* Start a waiter on fd, let it park, then close (or forget) fd under it. */
static int close_under(struct closer *cl, int fd, int dir, int64_t deadline, bool forget)
{
  *cl = (struct closer){.fd = fd, .dir = dir, .deadline = deadline, .result = 1};
  weft_wg_add(&cl->wg, 1);
  weft_go(close_waiter, cl);
  while (!atomic_load(&cl->started))
    weft_sleep(MS(1));
  weft_sleep(MS(20));
  int64_t closed_at = weft_now();
  if (forget)
    weft_fd_forget(fd);
  else if (weft_close(fd) != 0)
    return 1;
  weft_wg_wait(&cl->wg);
  if (atomic_load(&cl->result) != -EBADF)
    return 2;
  if (atomic_load(&cl->woke_at) - closed_at > LATE_BOUND)
    return 3;
  return 0;
}

static int close_main(void *arg)
{
  (void)arg;
  struct closer cl;
  int p[2], rc;
  if (pipe2(p, O_CLOEXEC))
    return -1;
  if ((rc = close_under(&cl, p[0], 0, WEFT_NO_DEADLINE, false)))
    return 10 + rc;
  weft_close(p[1]);
  if (pipe2(p, O_CLOEXEC))
    return -1;
  if ((rc = close_under(&cl, p[0], 0, weft_now() + MS(10000), false)))
    return 20 + rc;
  weft_close(p[1]);
  /* a writer parked on a full pipe */
  if (pipe2(p, O_CLOEXEC) || fill_pipe(p[1]))
    return 30;
  if ((rc = close_under(&cl, p[1], 1, WEFT_NO_DEADLINE, false)))
    return 30 + rc;
  weft_close(p[0]);
  /* forget without closing: the fd stays usable by plain calls */
  if (pipe2(p, O_CLOEXEC))
    return -1;
  if ((rc = close_under(&cl, p[0], 0, weft_now() + MS(10000), true)))
    return 40 + rc;
  if (write(p[1], "k", 1) != 1)
    return 50;
  char c;
  if (weft_read(p[0], &c, 1, IO_DEADLINE()) != 1 || c != 'k') /* registers it again */
    return 51;
  weft_close(p[0]);
  weft_close(p[1]);
  /* calls on a closed fd */
  if (weft_read(p[0], &c, 1, IO_DEADLINE()) != -EBADF)
    return 60;
  if (weft_wait_readable(p[0], IO_DEADLINE()) != -EBADF)
    return 61;
  if (weft_close(p[0]) != -EBADF)
    return 62;
  return 0;
}

static void test_close_wakes_waiter(void **state)
{
  (void)state;
  run_weft_p1to4(close_main, NULL);
}

/* The close races the waiter's way into its park: whatever the timing, the waiter returns
 * -EBADF promptly (never its -ETIMEDOUT), and the fd number is clean for the next pipe.
 * Even iterations register the fd first and close once the reader runs on another worker
 * (the window between its generation check and its park); odd ones close while the reader
 * may still be registering the fd (a stale registration made the next pipe's read block a
 * scheduler thread). */
struct close_race {
  int fd;
  int64_t deadline;
  atomic_int started;
  atomic_long result;
  weft_wg wg;
};

static void race_reader(void *arg)
{
  struct close_race *cr = arg;
  char c;
  atomic_store(&cr->started, 1);
  atomic_store(&cr->result, weft_read(cr->fd, &c, 1, cr->deadline));
  weft_wg_done(&cr->wg);
}

struct race_stats {
  int iters;
  uint64_t seed;
  int ebadf, timeouts, other;
};

static int close_race_main(void *arg)
{
  struct race_stats *st = arg;
  uint64_t rng = st->seed;
  for (int i = 0; i < st->iters; i++) {
    struct close_race cr = {.deadline = weft_now() + MS(300)};
    int p[2];
    if (pipe2(p, O_CLOEXEC))
      return -1;
    cr.fd = p[0];
    if (i % 2 == 0 && weft_fd_register(p[0]) != 0)
      return -2;
    weft_wg_add(&cr.wg, 1);
    weft_go(race_reader, &cr);
    if (i % 2 == 0) {
      /* P > 1: spin (not yield) until another worker runs it; P = 1: let it run here */
      int64_t give_up = weft_now() + MS(1);
      while (!atomic_load(&cr.started) && weft_now() < give_up)
        __asm__ volatile("" ::: "memory");
      if (!atomic_load(&cr.started))
        weft_yield();
    }
    for (unsigned spin = (unsigned)(test_rand(&rng) % 3000); spin > 0; spin--)
      __asm__ volatile("" ::: "memory");
#if defined(__SANITIZE_THREAD__)
    /* TSan models an fd as memory that close(2) writes and read(2) reads: this close races
     * the reader's read on purpose (weft_close is how a blocked reader is stopped). */
    AnnotateIgnoreWritesBegin(__FILE__, __LINE__);
#endif
    weft_close(p[0]);
#if defined(__SANITIZE_THREAD__)
    AnnotateIgnoreWritesEnd(__FILE__, __LINE__);
#endif
    weft_wg_wait(&cr.wg);
    weft_close(p[1]);
    long r = atomic_load(&cr.result);
    if (r == -EBADF)
      st->ebadf++;
    else if (r == -ETIMEDOUT)
      st->timeouts++;
    else
      st->other++;
  }
  return 0;
}

static void test_close_races_waiter(void **state)
{
  (void)state;
  for (int p = 1; p <= 4; p++) {
    struct race_stats st = {.iters = SANITIZED ? 300 : 3000, .seed = test_seed() + (uint64_t)p};
    assert_int_equal(run_weft(p, close_race_main, &st), 0);
    if (st.timeouts || st.other)
      fail_msg("P=%d: of %d waiters closed under, %d got -EBADF, %d slept to their deadline, "
               "%d got something else",
               p, st.iters, st.ebadf, st.timeouts, st.other);
  }
}

/* ---- eventfd and signalfd through weft_wait_readable ---- */

struct fdwait {
  int fd;
  atomic_int started;
  atomic_int wait_rc;
  uint64_t value;
  ssize_t read_rc;
  unsigned char info[sizeof(struct signalfd_siginfo)];
  weft_wg wg;
};

static void eventfd_waiter(void *arg)
{
  struct fdwait *fw = arg;
  atomic_store(&fw->started, 1);
  atomic_store(&fw->wait_rc, weft_wait_readable(fw->fd, IO_DEADLINE()));
  fw->read_rc = weft_read(fw->fd, &fw->value, sizeof fw->value, IO_DEADLINE());
  weft_wg_done(&fw->wg);
}

static int eventfd_main(void *arg)
{
  (void)arg;
  struct fdwait fw = {.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), .wait_rc = 1};
  if (fw.fd < 0)
    return -1;
  weft_wg_add(&fw.wg, 1);
  weft_go(eventfd_waiter, &fw);
  while (!atomic_load(&fw.started))
    weft_sleep(MS(1));
  weft_sleep(MS(10));
  uint64_t five = 5;
  if (weft_write(fw.fd, &five, sizeof five, IO_DEADLINE()) != sizeof five)
    return 1;
  weft_wg_wait(&fw.wg);
  if (atomic_load(&fw.wait_rc) != 0 || fw.read_rc != sizeof fw.value || fw.value != 5)
    return 2;
  /* drained: the next wait times out */
  int64_t d = weft_now() + MS(20);
  if (check_timeout(d, weft_wait_readable(fw.fd, d)))
    return 3;
  weft_close(fw.fd);
  return 0;
}

static void test_eventfd(void **state)
{
  (void)state;
  run_weft_p1to4(eventfd_main, NULL);
}

static void signalfd_waiter(void *arg)
{
  struct fdwait *fw = arg;
  atomic_store(&fw->started, 1);
  atomic_store(&fw->wait_rc, weft_wait_readable(fw->fd, IO_DEADLINE()));
  fw->read_rc = weft_read(fw->fd, fw->info, sizeof fw->info, IO_DEADLINE());
  weft_wg_done(&fw->wg);
}

static int signalfd_main(void *arg)
{
  (void)arg;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  struct fdwait fw = {.fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC), .wait_rc = 1};
  if (fw.fd < 0)
    return -1;
  weft_wg_add(&fw.wg, 1);
  weft_go(signalfd_waiter, &fw);
  while (!atomic_load(&fw.started))
    weft_sleep(MS(1));
  weft_sleep(MS(10));
  kill(getpid(), SIGUSR1); /* blocked in every thread: queued for the signalfd */
  weft_wg_wait(&fw.wg);
  struct signalfd_siginfo si;
  memcpy(&si, fw.info, sizeof si);
  weft_close(fw.fd);
  if (atomic_load(&fw.wait_rc) != 0 || fw.read_rc != sizeof si || si.ssi_signo != SIGUSR1)
    return 1;
  return 0;
}

static void test_signalfd(void **state)
{
  (void)state;
  sigset_t set, old;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  /* The scheduler and pool threads inherit this thread's mask. */
  assert_int_equal(pthread_sigmask(SIG_BLOCK, &set, &old), 0);
  for (int p = 1; p <= 4; p++)
    assert_int_equal(run_weft(p, signalfd_main, NULL), 0);
  assert_int_equal(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
}

/* ---- loopback TCP ---- */

static int tcp_listener(uint16_t *port)
{
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof sa;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) || listen(fd, 1024) ||
      getsockname(fd, (struct sockaddr *)&sa, &sl)) {
    close(fd);
    return -1;
  }
  *port = ntohs(sa.sin_port);
  return fd;
}

static struct sockaddr_in loopback(uint16_t port)
{
  return (struct sockaddr_in){.sin_family = AF_INET,
                              .sin_port = htons(port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
}

struct server {
  int lfd;
  uint16_t port;
  atomic_int accepted, handler_errors;
  atomic_long accept_result; /* what ended the accept loop */
  weft_wg wg;                /* the acceptor and every handler */
};

struct conn {
  struct server *srv;
  int fd;
};

static void echo_handler(void *arg)
{
  struct conn *cn = arg;
  char buf[4096];
  for (;;) {
    ssize_t n = weft_recv(cn->fd, buf, sizeof buf, 0, IO_DEADLINE());
    if (n == 0)
      break;
    if (n < 0 || write_full(IO_SOCKET_SENDRECV, cn->fd, buf, (size_t)n, IO_DEADLINE()) != n) {
      atomic_fetch_add(&cn->srv->handler_errors, 1);
      break;
    }
  }
  weft_close(cn->fd);
  weft_wg_done(&cn->srv->wg);
  free(cn);
}

static void acceptor(void *arg)
{
  struct server *srv = arg;
  for (;;) {
    struct sockaddr_in peer;
    socklen_t pl = sizeof peer;
    int fd = weft_accept(srv->lfd, (struct sockaddr *)&peer, &pl, WEFT_NO_DEADLINE);
    if (fd < 0) {
      atomic_store(&srv->accept_result, fd);
      break;
    }
    if (pl != sizeof peer || peer.sin_family != AF_INET || !(fcntl(fd, F_GETFL) & O_NONBLOCK))
      atomic_fetch_add(&srv->handler_errors, 1);
    struct conn *cn = malloc(sizeof *cn);
    *cn = (struct conn){srv, fd};
    atomic_fetch_add(&srv->accepted, 1);
    weft_wg_add(&srv->wg, 1);
    if (weft_go(echo_handler, cn) != 0) {
      weft_close(fd);
      free(cn);
      weft_wg_done(&srv->wg);
    }
  }
  weft_wg_done(&srv->wg);
}

static int server_start(struct server *srv)
{
  memset(srv, 0, sizeof *srv);
  srv->lfd = tcp_listener(&srv->port);
  if (srv->lfd < 0)
    return -1;
  weft_wg_add(&srv->wg, 1);
  return weft_go(acceptor, srv);
}

/* Closing the listener wakes the acceptor with -EBADF; then wait for every handler. */
static int server_stop(struct server *srv)
{
  weft_close(srv->lfd);
  weft_wg_wait(&srv->wg);
  if (atomic_load(&srv->accept_result) != -EBADF)
    return 1;
  return atomic_load(&srv->handler_errors) ? 2 : 0;
}

#define ECHO_CHUNK (64 * 1024)

/* One client: connect, send len bytes, read them back, close. Returns 0 or an error. */
static int echo_client(uint16_t port, size_t len, unsigned salt)
{
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  struct sockaddr_in sa = loopback(port);
  unsigned char *out = malloc(len), *in = malloc(len);
  int rc = weft_connect(fd, (struct sockaddr *)&sa, sizeof sa, IO_DEADLINE());
  for (size_t i = 0; i < len; i++)
    out[i] = pattern(i, salt);
  /* In chunks, each read back before the next is sent, so neither side can fill both
   * directions' buffers and wait on the other (the echo deadlock). */
  for (size_t off = 0; rc == 0 && off < len; off += ECHO_CHUNK) {
    size_t n = len - off < ECHO_CHUNK ? len - off : ECHO_CHUNK;
    ssize_t r = write_full(IO_SOCKET_SENDRECV, fd, out + off, n, IO_DEADLINE());
    if (r == (ssize_t)n)
      r = read_full(IO_SOCKET_SENDRECV, fd, in + off, n, IO_DEADLINE());
    if (r != (ssize_t)n)
      rc = r < 0 ? (int)r : -EIO;
  }
  if (rc == 0 && memcmp(in, out, len) != 0)
    rc = -EILSEQ;
  free(out);
  free(in);
  weft_close(fd);
  return rc;
}

struct clients {
  struct server srv;
  int n;
  size_t len;
  atomic_int ok, failed;
  atomic_int first_error;
  weft_wg wg;
};

struct client_arg {
  struct clients *cs;
  unsigned id;
};

static void client(void *arg)
{
  struct client_arg *ca = arg;
  struct clients *cs = ca->cs;
  int rc = echo_client(cs->srv.port, cs->len + ca->id % 97, ca->id);
  if (rc == 0) {
    atomic_fetch_add(&cs->ok, 1);
  } else {
    int zero = 0;
    atomic_fetch_add(&cs->failed, 1);
    atomic_compare_exchange_strong(&cs->first_error, &zero, rc);
  }
  weft_wg_done(&cs->wg);
}

static int clients_main(void *arg)
{
  struct clients *cs = arg;
  atomic_store(&cs->ok, 0);
  atomic_store(&cs->failed, 0);
  atomic_store(&cs->first_error, 0);
  if (server_start(&cs->srv))
    return -1;
  struct client_arg *args = calloc((size_t)cs->n, sizeof *args);
  weft_wg_add(&cs->wg, cs->n);
  for (int i = 0; i < cs->n; i++) {
    args[i] = (struct client_arg){cs, (unsigned)i};
    weft_go(client, &args[i]);
  }
  weft_wg_wait(&cs->wg);
  free(args);
  int rc = server_stop(&cs->srv);
  if (rc)
    return 100 + rc;
  if (atomic_load(&cs->srv.accepted) != cs->n)
    return 200;
  return atomic_load(&cs->ok) == cs->n ? 0 : 1;
}

static void run_clients(int n, size_t len)
{
  struct clients *cs = calloc(1, sizeof *cs);
  cs->n = n;
  cs->len = len;
  for (int p = 1; p <= 4; p++) {
    int rc = run_weft(p, clients_main, cs);
    if (rc != 0)
      fail_msg("P=%d: rc %d; %d of %d clients ok, %d failed (first error %s), %d accepted", p,
               rc, atomic_load(&cs->ok), n, atomic_load(&cs->failed),
               weft_errname(atomic_load(&cs->first_error)), atomic_load(&cs->srv.accepted));
  }
  free(cs);
}

static void test_tcp_echo(void **state)
{
  (void)state;
  run_clients(8, SANITIZED ? 100000 : 1000000); /* a few large echoes: short sends */
}

static void test_tcp_many_connections(void **state)
{
  (void)state;
  run_clients(200, 1000);
}

static int refused_main(void *arg)
{
  (void)arg;
  /* A bound socket that does not listen: its port refuses, and nobody else can take it. */
  uint16_t port;
  struct sockaddr_in sa = loopback(0);
  socklen_t sl = sizeof sa;
  int holder = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (holder < 0 || bind(holder, (struct sockaddr *)&sa, sizeof sa) ||
      getsockname(holder, (struct sockaddr *)&sa, &sl))
    return -1;
  port = ntohs(sa.sin_port);
  int rc = 0;
  for (int i = 0; i < 3 && !rc; i++) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0); /* weft makes it non-blocking */
    struct sockaddr_in to = loopback(port);
    int r = weft_connect(fd, (struct sockaddr *)&to, sizeof to,
                         i == 2 ? weft_now() + MS(5000) : WEFT_NO_DEADLINE);
    if (r != -ECONNREFUSED) {
      fprintf(stderr, "connect to a closed port: %d (%s)\n", r, weft_errname(r));
      rc = 1;
    }
    weft_close(fd);
  }
  close(holder);
  return rc;
}

static void test_connect_refused(void **state)
{
  (void)state;
  run_weft_p1to4(refused_main, NULL);
}

/* ---- calls from plain threads ---- */

/* Outside any runtime: two threads over a blocking pipe. */
struct plain_pipe {
  int fds[2];
  size_t size;
  ssize_t wrote, got;
  int bad;
};

static void *plain_writer(void *arg)
{
  struct plain_pipe *pp = arg;
  unsigned char *buf = malloc(pp->size);
  for (size_t i = 0; i < pp->size; i++)
    buf[i] = pattern(i, 3);
  pp->wrote = weft_write_all(pp->fds[1], buf, pp->size, WEFT_NO_DEADLINE);
  close(pp->fds[1]);
  free(buf);
  return NULL;
}

static void plain_read_all(struct plain_pipe *pp, int fd, int64_t deadline, unsigned salt)
{
  unsigned char buf[8192];
  pp->got = 0;
  pp->bad = 0;
  for (;;) {
    ssize_t n = weft_read(fd, buf, sizeof buf, deadline);
    if (n <= 0) {
      if (n < 0)
        pp->bad++;
      break;
    }
    for (ssize_t i = 0; i < n; i++)
      if (buf[i] != pattern((size_t)pp->got + (size_t)i, salt))
        pp->bad++;
    pp->got += n;
  }
}

static void test_plain_threads_without_runtime(void **state)
{
  (void)state;
  struct plain_pipe pp = {.size = 1u << 20};
  pthread_t th;
  assert_int_equal(pipe2(pp.fds, O_CLOEXEC), 0);
  assert_int_equal(pthread_create(&th, NULL, plain_writer, &pp), 0);
  plain_read_all(&pp, pp.fds[0], WEFT_NO_DEADLINE, 3);
  pthread_join(th, NULL);
  close(pp.fds[0]);
  assert_int_equal(pp.wrote, (ssize_t)pp.size);
  assert_int_equal(pp.got, (ssize_t)pp.size);
  assert_int_equal(pp.bad, 0);
}

/* While the runtime runs: a plain thread reads what a coroutine writes, on a pipe whose read
 * end weft never registered (a blocking read) and on one whose both ends it registered (the
 * thread waits in poll); it also writes a large buffer into a registered pipe (full pipe:
 * poll for POLLOUT), connects to a coroutine server, and times out on a registered fd. */
struct mixed {
  int blocking_pipe[2];   /* read end: plain thread, blocking; write end: coroutine */
  int registered_pipe[2]; /* both ends registered by a coroutine */
  int to_coro[2];         /* plain thread writes, coroutine reads */
  uint16_t port;
  char got1[8], got2[8];
  ssize_t r1, r2, wrote_big, timeout_rc;
  int64_t timeout_deadline, timeout_at;
  int echo_rc;
  size_t big;
};

static void *plain_side(void *arg)
{
  struct mixed *m = arg;
  m->r1 = weft_read(m->blocking_pipe[0], m->got1, 5, WEFT_NO_DEADLINE);
  m->r2 = weft_read(m->registered_pipe[0], m->got2, 5, IO_DEADLINE());
  m->timeout_deadline = weft_now() + MS(30);
  m->timeout_rc = weft_read(m->registered_pipe[0], m->got2, 5, m->timeout_deadline);
  m->timeout_at = weft_now();
  unsigned char *buf = malloc(m->big);
  for (size_t i = 0; i < m->big; i++)
    buf[i] = pattern(i, 9);
  m->wrote_big = weft_write_all(m->to_coro[1], buf, m->big, IO_DEADLINE());
  weft_close(m->to_coro[1]); /* registered: forget it, then close */
  free(buf);
  m->echo_rc = echo_client(m->port, 5000, 11);
  return NULL;
}

static long join_it(void *arg)
{
  pthread_join(*(pthread_t *)arg, NULL);
  return 0;
}

static int mixed_main(void *arg)
{
  struct mixed *m = arg;
  struct server srv;
  pthread_t th;
  if (pipe2(m->blocking_pipe, O_CLOEXEC) || pipe2(m->registered_pipe, O_CLOEXEC) ||
      pipe2(m->to_coro, O_CLOEXEC))
    return -1;
  if (weft_fd_register(m->registered_pipe[0]) || weft_fd_register(m->registered_pipe[1]) ||
      weft_fd_register(m->to_coro[0]) || weft_fd_register(m->to_coro[1]))
    return -2;
  if (server_start(&srv))
    return -3;
  m->port = srv.port;
  if (pthread_create(&th, NULL, plain_side, m))
    return -4;
  weft_sleep(MS(20)); /* the thread blocks in read meanwhile */
  if (weft_write(m->blocking_pipe[1], "hello", 5, IO_DEADLINE()) != 5)
    return 1;
  weft_sleep(MS(20)); /* now in poll on the registered pipe */
  if (weft_write(m->registered_pipe[1], "world", 5, IO_DEADLINE()) != 5)
    return 2;
  weft_sleep(MS(50)); /* let the pipe fill up before reading it */
  struct plain_pipe pp = {.size = m->big};
  plain_read_all(&pp, m->to_coro[0], IO_DEADLINE(), 9); /* until the thread closes its end */
  weft_blocking(join_it, &th);
  int rc = server_stop(&srv);
  weft_close(m->blocking_pipe[0]);
  weft_close(m->blocking_pipe[1]);
  weft_close(m->registered_pipe[0]);
  weft_close(m->registered_pipe[1]);
  weft_close(m->to_coro[0]);
  if (pp.got != (ssize_t)m->big || pp.bad)
    return 3;
  return rc ? 10 + rc : 0;
}

static void test_plain_thread_with_runtime(void **state)
{
  (void)state;
  for (int p = 1; p <= 4; p++) {
    struct mixed m = {.big = 1u << 20};
    assert_int_equal(run_weft(p, mixed_main, &m), 0);
    assert_int_equal(m.r1, 5);
    assert_memory_equal(m.got1, "hello", 5);
    assert_int_equal(m.r2, 5);
    assert_memory_equal(m.got2, "world", 5);
    assert_int_equal(m.timeout_rc, -ETIMEDOUT);
    assert_true(m.timeout_at >= m.timeout_deadline);
    assert_true(m.timeout_at - m.timeout_deadline < LATE_BOUND);
    assert_int_equal(m.wrote_big, (ssize_t)m.big);
    assert_int_equal(m.echo_rc, 0);
  }
}

/* ---- a closed reader: -EPIPE, not SIGPIPE ---- */

static int write_to_closed_pipe(void *arg)
{
  int p[2];
  (void)arg;
  if (pipe(p) != 0)
    return -1;
  close(p[0]);
  ssize_t n = weft_write(p[1], "x", 1, WEFT_NO_DEADLINE); /* the process must survive */
  weft_close(p[1]);
  return n == -EPIPE ? 0 : 1;
}

static void test_write_to_closed_pipe_is_epipe(void **state)
{
  (void)state;
  run_weft_p1to4(write_to_closed_pipe, NULL);
}

/* ---- one waiter per direction: a second gets -EBUSY at once ---- */

struct two_readers {
  int fd;
  atomic_int parked;
  int first_rc;
};

static void first_reader(void *arg)
{
  struct two_readers *t = arg;
  atomic_store(&t->parked, 1);
  t->first_rc = weft_wait_readable(t->fd, weft_now() + MS(200));
}

static int second_waiter_busy(void *arg)
{
  struct two_readers t = {.parked = 0};
  int p[2];
  (void)arg;
  if (pipe(p) != 0)
    return -1;
  t.fd = p[0];
  weft_go(first_reader, &t);
  while (!atomic_load(&t.parked))
    weft_yield();
  weft_sleep(MS(20)); /* the first reader is parked in the slot by now */
  int64_t t0 = weft_now();
  int rc = weft_wait_readable(p[0], weft_now() + MS(200));
  int64_t waited = weft_now() - t0;
  weft_sleep(MS(250)); /* let the first reader time out */
  weft_close(p[0]);
  weft_close(p[1]);
  return rc == -EBUSY && waited < MS(100) && t.first_rc == -ETIMEDOUT ? 0 : 1;
}

static void test_second_waiter_gets_ebusy(void **state)
{
  (void)state;
  assert_int_equal(run_weft(1, second_waiter_busy, NULL), 0);
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pingpong),
      cmocka_unit_test(test_large_transfer),
      cmocka_unit_test(test_deadlines),
      cmocka_unit_test(test_close_wakes_waiter),
      cmocka_unit_test(test_close_races_waiter),
      cmocka_unit_test(test_eventfd),
      cmocka_unit_test(test_signalfd),
      cmocka_unit_test(test_tcp_echo),
      cmocka_unit_test(test_tcp_many_connections),
      cmocka_unit_test(test_connect_refused),
      cmocka_unit_test(test_plain_threads_without_runtime),
      cmocka_unit_test(test_plain_thread_with_runtime),
      cmocka_unit_test(test_write_to_closed_pipe_is_epipe),
      cmocka_unit_test(test_second_waiter_gets_ebusy),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
