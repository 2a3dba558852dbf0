/* test_net.c: the bottom of the net layer: splitting addresses, resolving, listening and
 * dialling (TCP over v4 and v6 loopback, Unix paths and abstract names), connections
 * (echo of several MB both ways on P = 1..4, writev of many buffers, deadlines, contexts,
 * shutdown_read), and the buffered reader and writer.
 *
 * Coroutines check with CHECK/CHECK_EQ (coro_check.h); each test asserts afterwards that
 * none failed. Every wait has a deadline, so a hang fails the test instead of hanging it. */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "coro_check.h"
#include "weft_test.h"

#define DL()  (weft_now() + MS(20000)) /* a hang fails instead of hanging */
#define SHORT MS(50)                   /* "nothing arrives": a short wait */
#define LATE  MS(3000)                 /* generous bound for "on time" on a loaded VM */

#define CHECK_GE(a, b)                                        \
  do {                                                        \
    long long a_ = (long long)(a), b_ = (long long)(b);       \
    if (a_ < b_)                                              \
      check_failed(__FILE__, __LINE__, #a " >= " #b, a_, b_); \
  } while (0)

/* ---- helpers ---- */

static unsigned char pattern(size_t i, unsigned salt)
{
  return (unsigned char)((i * 131u) ^ (i >> 11) ^ (salt * 17u));
}

static void fill_pattern(unsigned char *p, size_t len, size_t off, unsigned salt)
{
  for (size_t i = 0; i < len; i++)
    p[i] = pattern(off + i, salt);
}

static bool have_ipv6(void)
{
  int fd = socket(AF_INET6, SOCK_STREAM, 0);
  struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
  bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
  if (fd >= 0)
    close(fd);
  return ok;
}

static int sock_family(int fd)
{
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  return getsockname(fd, (struct sockaddr *)&ss, &len) == 0 ? ss.ss_family : -1;
}

/* Listen on "tcp" 127.0.0.1:0; *addr gets "127.0.0.1:port". */
static int listen_loopback(char *addr, size_t len)
{
  int fd = weft_listen("tcp", "127.0.0.1:0", 0);
  if (fd >= 0)
    snprintf(addr, len, "127.0.0.1:%d", weft_local_port(fd));
  return fd;
}

/* Dial address on network and accept it on lfd; returns 0 with both fds, else an error. */
static int dial_accept(int lfd, const char *network, const char *address, int *cfd, int *sfd)
{
  *sfd = -1;
  *cfd = weft_dial(NULL, network, address, DL());
  if (*cfd < 0)
    return *cfd;
  *sfd = weft_accept(lfd, NULL, NULL, DL());
  if (*sfd < 0) {
    weft_close(*cfd);
    return *sfd;
  }
  return 0;
}

/* A setup step failed: not the behaviour under test, so stop here rather than go on with
 * half a fixture. */
static void setup_failed(const char *what, int err)
{
  fprintf(stderr, "test setup failed: %s: %s\n", what, weft_strerror(err));
  abort();
}

/* A loopback TCP pair: *a dialled, *b accepted. */
static void tcp_pair(weft_conn **a, weft_conn **b)
{
  char addr[64];
  int cfd = -1, sfd = -1, lfd = listen_loopback(addr, sizeof addr);
  if (lfd < 0)
    setup_failed("listen", lfd);
  int err = dial_accept(lfd, "tcp", addr, &cfd, &sfd);
  weft_close(lfd);
  if (err)
    setup_failed("dial", err);
  *a = weft_conn_new(cfd);
  *b = weft_conn_new(sfd);
  if (!*a || !*b)
    setup_failed("weft_conn_new", -ENOMEM);
}

/* A socketpair: *c a connection over one end, *peer the raw other end. */
static void unix_pair(weft_conn **c, int *peer)
{
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
    setup_failed("socketpair", -errno);
  *c = weft_conn_new(sv[0]);
  *peer = sv[1];
  if (!*c)
    setup_failed("weft_conn_new", -ENOMEM);
}

/* Read exactly len bytes from fd (raw); returns len or the first error / 0 at EOF. */
static ssize_t fd_read_full(int fd, void *buf, size_t len, int64_t deadline)
{
  size_t got = 0;
  while (got < len) {
    ssize_t n = weft_read(fd, (char *)buf + got, len - got, deadline);
    if (n <= 0)
      return n;
    got += (size_t)n;
  }
  return (ssize_t)got;
}

/* ---- weft_split_host_port ---- */

static void expect_split(const char *address, const char *host, const char *port)
{
  char h[64] = "x", p[16] = "x";
  assert_int_equal(weft_split_host_port(address, h, sizeof h, p, sizeof p), 0);
  assert_string_equal(h, host);
  assert_string_equal(p, port);
}

static void test_split_host_port(void **state)
{
  (void)state;
  expect_split("host:80", "host", "80");
  expect_split("[::1]:80", "::1", "80");
  expect_split(":80", "", "80");
  expect_split("[]:80", "", "80");
  expect_split("127.0.0.1:http", "127.0.0.1", "http");
  expect_split("[fe80::1%lo]:443", "fe80::1%lo", "443");
  const char *bad[] = {"::1:80", "[::1]",   "h:",         "host",      "",
                       "[::1",   "[::1]80", "[[::1]]:80", "[::1]]:80", "[::1]:80:90",
                       "a]:80",  "[::1]:",  ":"};
  char h[64], p[16];
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int rc = weft_split_host_port(bad[i], h, sizeof h, p, sizeof p);
    if (rc != -EINVAL)
      fail_msg("\"%s\": %d, want -EINVAL", bad[i], rc);
  }
  assert_int_equal(weft_split_host_port(NULL, h, sizeof h, p, sizeof p), -EINVAL);
  /* Parts exactly fitting their buffers (with the NUL), and one byte too long. */
  assert_int_equal(weft_split_host_port("abc:80", h, 4, p, 3), 0);
  assert_string_equal(h, "abc");
  assert_string_equal(p, "80");
  assert_int_equal(weft_split_host_port("abcd:80", h, 4, p, 3), -EINVAL);
  assert_int_equal(weft_split_host_port("abc:800", h, 4, p, 3), -EINVAL);
  assert_int_equal(weft_split_host_port("[::1]:80", h, 4, p, 3), 0);
  assert_int_equal(weft_split_host_port("[::12]:80", h, 4, p, 3), -EINVAL);
  assert_int_equal(weft_split_host_port(":80", h, 0, p, 3), -EINVAL);
}

/* ---- weft_listen, weft_local_port ---- */

/* Dial address, accept it on lfd and close both ends; returns the dial's result. */
static int dial_check(int lfd, const char *network, const char *address)
{
  int cfd, sfd, err = dial_accept(lfd, network, address, &cfd, &sfd);
  if (err)
    return err;
  weft_close(cfd);
  weft_close(sfd);
  return 0;
}

static void listen_tcp_v4(void)
{
  char addr[64];
  int fd = listen_loopback(addr, sizeof addr);
  CHECK_GE(fd, 0);
  int port = weft_local_port(fd);
  CHECK(port > 0 && port < 65536);
  CHECK_EQ(sock_family(fd), AF_INET);
  CHECK_EQ(dial_check(fd, "tcp", addr), 0);
  /* the port is taken: a second listener fails despite SO_REUSEADDR */
  CHECK_EQ(weft_listen("tcp", addr, 0), -EADDRINUSE);
  CHECK_EQ(weft_listen("tcp4", addr, 16), -EADDRINUSE);
  weft_close(fd);
  fd = weft_listen("tcp4", ":0", 0);
  CHECK_GE(fd, 0);
  CHECK_EQ(sock_family(fd), AF_INET);
  snprintf(addr, sizeof addr, "127.0.0.1:%d", weft_local_port(fd));
  CHECK_EQ(dial_check(fd, "tcp4", addr), 0);
  weft_close(fd);
}

static void listen_tcp_v6(void)
{
  char addr[64];
  int fd = weft_listen("tcp", "[::1]:0", 0);
  CHECK_GE(fd, 0);
  CHECK_EQ(sock_family(fd), AF_INET6);
  int port = weft_local_port(fd);
  CHECK(port > 0);
  snprintf(addr, sizeof addr, "[::1]:%d", port);
  CHECK_EQ(dial_check(fd, "tcp", addr), 0);
  CHECK_EQ(dial_check(fd, "tcp6", addr), 0);
  CHECK_EQ(weft_listen("tcp6", addr, 0), -EADDRINUSE);
  weft_close(fd);
  /* "tcp6" on every address takes IPv6 only: a v4 dial to its port is refused */
  fd = weft_listen("tcp6", ":0", 0);
  CHECK_GE(fd, 0);
  CHECK_EQ(sock_family(fd), AF_INET6);
  port = weft_local_port(fd);
  snprintf(addr, sizeof addr, "[::1]:%d", port);
  CHECK_EQ(dial_check(fd, "tcp", addr), 0);
  snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
  CHECK_EQ(weft_dial(NULL, "tcp", addr, DL()), -ECONNREFUSED);
  weft_close(fd);
}

/* "tcp" ":0": every address, v4 and (when there is IPv6) v6 on the same port. */
static void listen_tcp_any(bool v6)
{
  char addr[64];
  int fd = weft_listen("tcp", ":0", 0);
  CHECK_GE(fd, 0);
  int port = weft_local_port(fd);
  CHECK(port > 0);
  snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
  CHECK_EQ(dial_check(fd, "tcp", addr), 0);
  snprintf(addr, sizeof addr, "localhost:%d", port);
  CHECK_EQ(dial_check(fd, "tcp", addr), 0);
  snprintf(addr, sizeof addr, ":%d", port); /* dialling ":port": the local system */
  CHECK_EQ(dial_check(fd, "tcp", addr), 0);
  if (v6) {
    snprintf(addr, sizeof addr, "[::1]:%d", port);
    CHECK_EQ(dial_check(fd, "tcp6", addr), 0);
  }
  weft_close(fd);
}

static void listen_bad_args(void)
{
  const char *networks[] = {"udp", "", "TCP", "tcp7", "unixgram"};
  for (size_t i = 0; i < sizeof networks / sizeof networks[0]; i++)
    CHECK_EQ(weft_listen(networks[i], "127.0.0.1:0", 0), -EINVAL);
  CHECK_EQ(weft_listen(NULL, "127.0.0.1:0", 0), -EINVAL);
  CHECK_EQ(weft_listen("tcp", NULL, 0), -EINVAL);
  CHECK_EQ(weft_listen("tcp", "127.0.0.1", 0), -EINVAL); /* no port */
  CHECK_EQ(weft_listen("tcp", "::1:0", 0), -EINVAL);     /* unbracketed v6 */
  CHECK_EQ(weft_listen("tcp", "127.0.0.1:nope-no-such-service", 0), -EINVAL);
  CHECK(weft_listen("tcp4", "[::1]:0", 0) < 0); /* no v4 address there */
  CHECK(weft_listen("tcp", "no-such-host.invalid:0", 0) < 0);
  CHECK_EQ(weft_local_port(-1), -EBADF);
}

static int listen_tcp_main(void *arg)
{
  (void)arg;
  bool v6 = have_ipv6();
  if (!v6)
    fprintf(stderr, "no IPv6 loopback: skipping the v6 cases\n");
  listen_tcp_v4();
  if (v6)
    listen_tcp_v6();
  listen_tcp_any(v6);
  listen_bad_args();
  return 0;
}

static void test_listen_tcp(void **state)
{
  (void)state;
  checks_reset();
  assert_int_equal(run_weft(1, listen_tcp_main, NULL), 0);
  ASSERT_NO_CHECK_FAILED();
}

static void listen_unix_at(const char *name, bool abstract)
{
  int fd = weft_listen("unix", name, 0);
  CHECK_GE(fd, 0);
  CHECK_EQ(sock_family(fd), AF_UNIX);
  CHECK_EQ(weft_local_port(fd), -EINVAL); /* no port on a Unix socket */
  if (!abstract)
    CHECK_EQ(access(name, F_OK), 0);
  CHECK_EQ(weft_listen("unix", name, 0), -EADDRINUSE);
  CHECK_EQ(dial_check(fd, "unix", name), 0);
  CHECK_EQ(dial_check(fd, "unix", name), 0);
  weft_close(fd);
  /* a path stays behind and is not removed for us; a name goes with its socket */
  fd = weft_listen("unix", name, 0);
  if (abstract) {
    CHECK_GE(fd, 0);
    weft_close(fd);
  } else {
    CHECK_EQ(fd, -EADDRINUSE);
  }
}

static int listen_unix_main(void *arg)
{
  (void)arg;
  char path[96], name[96], longpath[200];
  snprintf(path, sizeof path, "/tmp/weft-test-net-%d.sock", (int)getpid());
  snprintf(name, sizeof name, "@weft-test-net-%d", (int)getpid());
  unlink(path);
  listen_unix_at(path, false);
  unlink(path);
  listen_unix_at(name, true);
  memset(longpath, 'a', sizeof longpath - 1);
  longpath[sizeof longpath - 1] = '\0';
  CHECK_EQ(weft_listen("unix", longpath, 0), -EINVAL);
  CHECK_EQ(weft_listen("unix", "", 0), -EINVAL);
  CHECK_EQ(weft_dial(NULL, "unix", longpath, DL()), -EINVAL);
  CHECK_EQ(weft_dial(NULL, "unix", "/tmp/weft-test-net-no-such.sock", DL()), -ENOENT);
  return 0;
}

static void test_listen_unix(void **state)
{
  (void)state;
  checks_reset();
  assert_int_equal(run_weft(1, listen_unix_main, NULL), 0);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- weft_dial ---- */

static void dial_refused(void)
{
  char addr[64];
  int fd = listen_loopback(addr, sizeof addr);
  CHECK_GE(fd, 0);
  weft_close(fd); /* nobody listens there now */
  CHECK_EQ(weft_dial(NULL, "tcp", addr, DL()), -ECONNREFUSED);
  CHECK_EQ(weft_dial(NULL, "tcp4", addr, DL()), -ECONNREFUSED);
}

/* "localhost:port" resolves on the blocking pool; the connection sets TCP_NODELAY. */
static void dial_localhost(void)
{
  char addr[64];
  int lfd = listen_loopback(addr, sizeof addr);
  CHECK_GE(lfd, 0);
  snprintf(addr, sizeof addr, "localhost:%d", weft_local_port(lfd));
  int cfd, sfd;
  CHECK_EQ(dial_accept(lfd, "tcp", addr, &cfd, &sfd), 0);
  int nodelay = 0;
  socklen_t len = sizeof nodelay;
  CHECK_EQ(getsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &len), 0);
  CHECK(nodelay != 0);
  weft_close(cfd);
  weft_close(sfd);

  /* an already-cancelled context and a past deadline end the lookup and the connect */
  weft_ctx *ctx = weft_ctx_with_cancel(NULL);
  weft_ctx_cancel(ctx);
  CHECK_EQ(weft_dial(ctx, "tcp", addr, DL()), -ECANCELED);
  snprintf(addr, sizeof addr, "127.0.0.1:%d", weft_local_port(lfd));
  CHECK_EQ(weft_dial(ctx, "tcp", addr, DL()), -ECANCELED);
  weft_ctx_release(ctx);
  snprintf(addr, sizeof addr, "localhost:%d", weft_local_port(lfd));
  CHECK_EQ(weft_dial(NULL, "tcp", addr, weft_now() - 1), -ETIMEDOUT);
  weft_close(lfd);
}

static void dial_bad_args(void)
{
  CHECK_EQ(weft_dial(NULL, "tcp", "no-such-host.invalid:80", DL()), -WEFT_EDNS);
  CHECK_EQ(weft_dial(NULL, "udp", "127.0.0.1:80", DL()), -EINVAL);
  CHECK_EQ(weft_dial(NULL, NULL, "127.0.0.1:80", DL()), -EINVAL);
  CHECK_EQ(weft_dial(NULL, "tcp", NULL, DL()), -EINVAL);
  CHECK_EQ(weft_dial(NULL, "tcp", "127.0.0.1", DL()), -EINVAL);
  CHECK_EQ(weft_dial(NULL, "tcp", "[::1]", DL()), -EINVAL);
  CHECK_EQ(weft_dial(NULL, "unix", "", DL()), -EINVAL);
}

static int dial_main(void *arg)
{
  (void)arg;
  dial_refused();
  dial_localhost();
  dial_bad_args();
  return 0;
}

static void test_dial(void **state)
{
  (void)state;
  checks_reset();
  assert_int_equal(run_weft(2, dial_main, NULL), 0);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- weft_resolve ---- */

static int ai_port(const struct addrinfo *ai)
{
  if (ai->ai_family == AF_INET)
    return ntohs(((struct sockaddr_in *)ai->ai_addr)->sin_port);
  return ntohs(((struct sockaddr_in6 *)ai->ai_addr)->sin6_port);
}

static void resolve_numeric(void)
{
  struct addrinfo *res = NULL;
  CHECK_EQ(weft_resolve(NULL, "127.0.0.1", "80", AF_UNSPEC, DL(), &res), 0);
  CHECK(res && res->ai_family == AF_INET && ai_port(res) == 80);
  CHECK(res && ((struct sockaddr_in *)res->ai_addr)->sin_addr.s_addr == htonl(INADDR_LOOPBACK));
  freeaddrinfo(res);
  res = NULL;
  CHECK_EQ(weft_resolve(NULL, "::1", "443", AF_INET6, DL(), &res), 0);
  CHECK(res && res->ai_family == AF_INET6 && ai_port(res) == 443);
  CHECK(res && IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)res->ai_addr)->sin6_addr));
  freeaddrinfo(res);
  res = NULL;
  CHECK_EQ(weft_resolve(NULL, "127.0.0.1", "http", AF_INET, DL(), &res), 0);
  CHECK(res && ai_port(res) == 80);
  freeaddrinfo(res);
  /* numeric hosts never touch the pool, so a done context does not stop them (as Go) */
  weft_ctx *ctx = weft_ctx_with_cancel(NULL);
  weft_ctx_cancel(ctx);
  res = NULL;
  CHECK_EQ(weft_resolve(ctx, "127.0.0.1", "80", AF_INET, DL(), &res), 0);
  freeaddrinfo(res);
  weft_ctx_release(ctx);
}

static void resolve_names(void)
{
  struct addrinfo *res = NULL;
  CHECK_EQ(weft_resolve(NULL, "localhost", "8080", AF_INET, DL(), &res), 0);
  CHECK(res && res->ai_family == AF_INET && ai_port(res) == 8080);
  CHECK(res && ((struct sockaddr_in *)res->ai_addr)->sin_addr.s_addr == htonl(INADDR_LOOPBACK));
  freeaddrinfo(res);
  res = NULL;
  CHECK_EQ(weft_resolve(NULL, "localhost", "80", AF_UNSPEC, DL(), &res), 0);
  CHECK(res != NULL);
  freeaddrinfo(res);
  CHECK_EQ(weft_resolve(NULL, "no-such-host.invalid", "80", AF_UNSPEC, DL(), &res), -WEFT_EDNS);
  CHECK_EQ(weft_resolve(NULL, "localhost", "nope-no-such-service", AF_UNSPEC, DL(), &res),
           -EINVAL);
}

static void resolve_cancelled(void)
{
  struct addrinfo *res = NULL;
  weft_ctx *ctx = weft_ctx_with_cancel(NULL);
  weft_ctx_cancel(ctx);
  CHECK_EQ(weft_resolve(ctx, "localhost", "80", AF_UNSPEC, DL(), &res), -ECANCELED);
  CHECK_EQ(weft_resolve(ctx, "localhost", "80", AF_UNSPEC, weft_now() - 1, &res), -ECANCELED);
  weft_ctx_release(ctx);
  CHECK_EQ(weft_resolve(NULL, "localhost", "80", AF_UNSPEC, weft_now() - 1, &res), -ETIMEDOUT);
  CHECK(res == NULL);
}

static void resolve_bad_args(void)
{
  struct addrinfo *res = NULL;
  CHECK_EQ(weft_resolve(NULL, "localhost", "80", AF_UNIX, DL(), &res), -EINVAL);
  CHECK_EQ(weft_resolve(NULL, "localhost", "80", 12345, DL(), &res), -EINVAL);
  CHECK_EQ(weft_resolve(NULL, NULL, "80", AF_UNSPEC, DL(), &res), -EINVAL);
  CHECK_EQ(weft_resolve(NULL, "localhost", NULL, AF_UNSPEC, DL(), &res), -EINVAL);
  CHECK_EQ(weft_resolve(NULL, "localhost", "80", AF_UNSPEC, DL(), NULL), -EINVAL);
  CHECK(weft_resolve(NULL, "::1", "80", AF_INET, DL(), &res) < 0); /* wrong family */
  CHECK(res == NULL);
}

static int resolve_main(void *arg)
{
  (void)arg;
  resolve_numeric();
  resolve_names();
  resolve_cancelled();
  resolve_bad_args();
  return 0;
}

static void test_resolve(void **state)
{
  (void)state;
  checks_reset();
  assert_int_equal(run_weft(2, resolve_main, NULL), 0);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- echo: several connections, several MB both ways, on P = 1..4 ---- */

enum { ECHO_CONNS = 4, ECHO_IOV = 100 };
#define ECHO_BYTES ((size_t)(SANITIZED ? 4 : 8) << 20)

struct echo {
  const char *network;
  char address[128];
  int lfd;
  weft_wg servers; /* the accepting coroutine and one per connection */
  weft_wg clients;
};

struct echo_client {
  struct echo *e;
  unsigned id;
  weft_conn *c;
  unsigned char *data; /* ECHO_BYTES of pattern(., id) */
  weft_wg writer;
};

struct echo_conn {
  struct echo *e;
  weft_conn *c;
};

/* One connection's server: echo until end of stream, then close. */
static void echo_serve(void *arg)
{
  struct echo_conn *ec = arg;
  weft_conn *c = ec->c;
  char *buf = malloc(65536);
  for (;;) {
    ssize_t n = weft_conn_read(c, buf, 65536, NULL, DL());
    if (n <= 0) {
      CHECK_EQ(n, 0);
      break;
    }
    ssize_t w = weft_conn_write(c, buf, (size_t)n, NULL, DL());
    CHECK_EQ(w, n);
    if (w != n)
      break;
  }
  free(buf);
  weft_conn_close(c);
  weft_wg_done(&ec->e->servers);
  free(ec);
}

static void echo_accept(void *arg)
{
  struct echo *e = arg;
  for (int i = 0; i < ECHO_CONNS; i++) {
    int fd = weft_accept(e->lfd, NULL, NULL, DL());
    CHECK_GE(fd, 0);
    if (fd < 0)
      break;
    struct echo_conn *ec = malloc(sizeof *ec);
    *ec = (struct echo_conn){.e = e, .c = weft_conn_new(fd)};
    CHECK(ec->c != NULL);
    weft_wg_add(&e->servers, 1);
    weft_go(echo_serve, ec);
  }
  weft_wg_done(&e->servers);
}

/* The writer: the payload in writev calls of ECHO_IOV buffers of uneven sizes (some
 * empty), every seventh call a plain write, then end of stream. */
static void echo_write(void *arg)
{
  struct echo_client *cl = arg;
  struct iovec iov[ECHO_IOV];
  size_t off = 0, call = 0;
  uint64_t seed = cl->id + 1;
  while (off < ECHO_BYTES) {
    size_t sent = 0;
    if (++call % 7 == 0) {
      sent = ECHO_BYTES - off < 100000 ? ECHO_BYTES - off : 100000;
      CHECK_EQ(weft_conn_write(cl->c, cl->data + off, sent, NULL, DL()), sent);
    } else {
      int n = 0;
      for (; n < ECHO_IOV && off + sent < ECHO_BYTES; n++) {
        size_t len = test_rand(&seed) % 4 == 0 ? 0 : test_rand(&seed) % 9000;
        if (len > ECHO_BYTES - off - sent)
          len = ECHO_BYTES - off - sent;
        iov[n] = (struct iovec){cl->data + off + sent, len};
        sent += len;
      }
      CHECK_EQ(weft_conn_writev(cl->c, iov, n, NULL, DL()), sent);
    }
    off += sent;
  }
  CHECK_EQ(shutdown(weft_conn_fd(cl->c), SHUT_WR), 0);
  weft_wg_done(&cl->writer);
}

static void echo_client(void *arg)
{
  struct echo_client *cl = arg;
  int fd = weft_dial(NULL, cl->e->network, cl->e->address, DL());
  CHECK_GE(fd, 0);
  if (fd >= 0 && (cl->c = weft_conn_new(fd))) {
    weft_wg_add(&cl->writer, 1);
    weft_go(echo_write, cl);
    size_t got = 0, bad = 0;
    unsigned char *buf = malloc(1 << 16);
    for (;;) {
      ssize_t n = weft_conn_read(cl->c, buf, 1 << 16, NULL, DL());
      if (n <= 0) {
        CHECK_EQ(n, 0);
        break;
      }
      for (ssize_t i = 0; i < n && got + (size_t)i < ECHO_BYTES; i++)
        bad += buf[i] != cl->data[got + (size_t)i];
      got += (size_t)n;
    }
    free(buf);
    CHECK_EQ(got, ECHO_BYTES);
    CHECK_EQ(bad, 0);
    weft_wg_wait(&cl->writer);
    weft_conn_close(cl->c);
  }
  weft_wg_done(&cl->e->clients);
}

static int echo_run(const char *network, const char *listen_address)
{
  struct echo e = {.network = network};
  struct echo_client cl[ECHO_CONNS];
  e.lfd = weft_listen(network, listen_address, 0);
  CHECK_GE(e.lfd, 0);
  if (e.lfd < 0)
    return -1;
  if (!strcmp(network, "unix"))
    snprintf(e.address, sizeof e.address, "%s", listen_address);
  else
    snprintf(e.address, sizeof e.address, "127.0.0.1:%d", weft_local_port(e.lfd));
  weft_wg_init(&e.servers);
  weft_wg_init(&e.clients);
  weft_wg_add(&e.servers, 1);
  weft_go(echo_accept, &e);
  weft_wg_add(&e.clients, ECHO_CONNS);
  for (unsigned i = 0; i < ECHO_CONNS; i++) {
    cl[i] = (struct echo_client){.e = &e, .id = i, .data = malloc(ECHO_BYTES)};
    weft_wg_init(&cl[i].writer);
    fill_pattern(cl[i].data, ECHO_BYTES, 0, i);
    weft_go(echo_client, &cl[i]);
  }
  weft_wg_wait(&e.clients);
  weft_wg_wait(&e.servers);
  weft_close(e.lfd);
  for (int i = 0; i < ECHO_CONNS; i++)
    free(cl[i].data);
  return 0;
}

static int echo_main(void *arg)
{
  (void)arg;
  char name[96];
  snprintf(name, sizeof name, "@weft-test-net-echo-%d", (int)getpid());
  echo_run("tcp", "127.0.0.1:0");
  echo_run("unix", name);
  return checks_result() ? -1 : 0;
}

static void test_echo(void **state)
{
  (void)state;
  checks_reset();
  run_weft_p1to4(echo_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- deadlines, contexts and shutdown_read on weft_conn_read / write ---- */

struct later {
  weft_ctx *ctx; /* cancelled after delay, if set */
  weft_conn *c;  /* else shut for reading after delay */
  weft_wg wg;
};

static void later_run(void *arg)
{
  struct later *l = arg;
  weft_sleep(MS(30));
  if (l->ctx)
    weft_ctx_cancel(l->ctx);
  else
    CHECK_EQ(weft_conn_shutdown_read(l->c), 0);
  weft_wg_done(&l->wg);
}

/* Start a coroutine that cancels ctx (or shuts c for reading) in 30 ms. */
static void start_later(struct later *l, weft_ctx *ctx, weft_conn *c)
{
  *l = (struct later){.ctx = ctx, .c = c};
  weft_wg_init(&l->wg);
  weft_wg_add(&l->wg, 1);
  weft_go(later_run, l);
}

static void read_deadlines(weft_conn *a, weft_conn *b)
{
  char buf[64];
  /* the peer says nothing: the read ends at its deadline, not before */
  int64_t t0 = weft_now();
  CHECK_EQ(weft_conn_read(a, buf, sizeof buf, NULL, t0 + SHORT), -ETIMEDOUT);
  CHECK_GE(weft_now() - t0, SHORT);
  CHECK(weft_now() - t0 < SHORT + LATE);
  /* a context's own deadline ends it the same way */
  weft_ctx *ctx = weft_ctx_with_timeout(NULL, SHORT);
  t0 = weft_now();
  CHECK_EQ(weft_conn_read(a, buf, sizeof buf, ctx, DL()), -ETIMEDOUT);
  CHECK_GE(weft_now() - t0, SHORT);
  weft_ctx_release(ctx);
  /* the connection still works after both */
  CHECK_EQ(weft_conn_write(b, "hi", 2, NULL, DL()), 2);
  CHECK_EQ(weft_conn_read(a, buf, sizeof buf, NULL, DL()), 2);
  CHECK(memcmp(buf, "hi", 2) == 0);
}

static void read_cancelled(weft_conn *a, weft_conn *b)
{
  char buf[64];
  struct later l;
  weft_ctx *ctx = weft_ctx_with_cancel(NULL);
  start_later(&l, ctx, NULL);
  int64_t t0 = weft_now();
  CHECK_EQ(weft_conn_read(a, buf, sizeof buf, ctx, DL()), -ECANCELED);
  CHECK_GE(weft_now() - t0, MS(30));
  weft_wg_wait(&l.wg);
  /* a done context ends a read at once, even with data waiting */
  CHECK_EQ(weft_conn_write(b, "x", 1, NULL, DL()), 1);
  CHECK_EQ(weft_conn_read(a, buf, sizeof buf, ctx, DL()), -ECANCELED);
  weft_ctx_release(ctx);
  CHECK_EQ(weft_conn_read(a, buf, sizeof buf, NULL, DL()), 1);
}

/* A write that the peer never drains parks, then ends at its deadline or its context. */
static void write_blocked(weft_conn *a)
{
  size_t big = (size_t)64 << 20;
  char *data = calloc(1, big);
  int64_t t0 = weft_now();
  CHECK_EQ(weft_conn_write(a, data, big, NULL, t0 + SHORT), -ETIMEDOUT);
  CHECK_GE(weft_now() - t0, SHORT);
  struct later l;
  weft_ctx *ctx = weft_ctx_with_cancel(NULL);
  start_later(&l, ctx, NULL);
  struct iovec iov[3] = {{data, 1}, {data, big / 2}, {data, big / 2}};
  CHECK_EQ(weft_conn_writev(a, iov, 3, ctx, DL()), -ECANCELED);
  weft_wg_wait(&l.wg);
  weft_ctx_release(ctx);
  free(data);
}

struct slow_reader {
  weft_conn *c;
  size_t len;
  size_t got, bad;
  weft_wg wg;
};

/* Start reading only after 50 ms, then read everything, checking the pattern. */
static void slow_read(void *arg)
{
  struct slow_reader *sr = arg;
  unsigned char *buf = malloc(1 << 16);
  weft_sleep(SHORT);
  while (sr->got < sr->len) {
    ssize_t n = weft_conn_read(sr->c, buf, 1 << 16, NULL, DL());
    CHECK(n > 0);
    if (n <= 0)
      break;
    for (ssize_t i = 0; i < n; i++)
      sr->bad += buf[i] != pattern(sr->got + (size_t)i, 7);
    sr->got += (size_t)n;
  }
  free(buf);
  weft_wg_done(&sr->wg);
}

/* One write of more than the socket buffers hold parks until the peer reads, then
 * completes: every byte in order. */
static void write_parks(weft_conn *a, weft_conn *b)
{
  struct slow_reader sr = {.c = b, .len = (size_t)24 << 20};
  unsigned char *data = malloc(sr.len);
  fill_pattern(data, sr.len, 0, 7);
  weft_wg_init(&sr.wg);
  weft_wg_add(&sr.wg, 1);
  weft_go(slow_read, &sr);
  int64_t t0 = weft_now();
  CHECK_EQ(weft_conn_write(a, data, sr.len, NULL, DL()), sr.len);
  CHECK_GE(weft_now() - t0, SHORT); /* it had to wait for the reader */
  weft_wg_wait(&sr.wg);
  CHECK_EQ(sr.got, sr.len);
  CHECK_EQ(sr.bad, 0);
  free(data);
}

/* shutdown_read wakes a reader parked in weft_conn_read with end of stream. */
static void read_shutdown(weft_conn *a)
{
  char buf[64];
  struct later l;
  start_later(&l, NULL, a);
  int64_t t0 = weft_now();
  CHECK_EQ(weft_conn_read(a, buf, sizeof buf, NULL, DL()), 0);
  CHECK_GE(weft_now() - t0, MS(30));
  CHECK(weft_now() - t0 < MS(30) + LATE);
  weft_wg_wait(&l.wg);
  CHECK_EQ(weft_conn_read(a, buf, sizeof buf, NULL, DL()), 0); /* from now on */
}

static int conn_waits_main(void *arg)
{
  (void)arg;
  weft_conn *a = NULL, *b = NULL;
  int peer = -1;
  tcp_pair(&a, &b);
  CHECK(!weft_conn_is_tls(a));
  read_deadlines(a, b);
  read_cancelled(a, b);
  write_parks(a, b);
  write_blocked(b); /* leaves a's receive queue full: the next check needs a new pair */
  weft_conn_close(a);
  weft_conn_close(b);
  tcp_pair(&a, &b);
  read_shutdown(a);
  weft_conn_close(a);
  weft_conn_close(b);
  unix_pair(&a, &peer); /* the same over a socketpair */
  read_shutdown(a);
  weft_conn_close(a);
  weft_close(peer);
  weft_conn_close(NULL);
  return 0;
}

static void test_conn_waits(void **state)
{
  (void)state;
  checks_reset();
  assert_int_equal(run_weft(2, conn_waits_main, NULL), 0);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- writev of many buffers ---- */

struct many {
  int peer;
  size_t total;
  size_t bad;
  weft_wg wg;
};

static void writev_many_reader(void *arg)
{
  struct many *m = arg;
  unsigned char buf[4096];
  size_t got = 0;
  for (;;) {
    ssize_t n = weft_read(m->peer, buf, sizeof buf, DL());
    if (n <= 0) {
      CHECK_EQ(n, 0);
      break;
    }
    for (ssize_t i = 0; i < n; i++)
      m->bad += buf[i] != pattern(got + (size_t)i, 3);
    got += (size_t)n;
  }
  m->total = got;
  weft_wg_done(&m->wg);
}

/* More buffers than one system call takes here (64), empty ones among them, a total
 * larger than the socket buffers. */
static int writev_many_main(void *arg)
{
  (void)arg;
  enum { NIOV = 1000 };
  weft_conn *c = NULL;
  struct many m = {0};
  unix_pair(&c, &m.peer);
  weft_wg_init(&m.wg);
  weft_wg_add(&m.wg, 1);
  weft_go(writev_many_reader, &m);
  struct iovec *iov = calloc(NIOV, sizeof *iov);
  size_t total = 0;
  for (int i = 0; i < NIOV; i++)
    total += i % 5 == 0 ? 0 : (size_t)(i * 37 % 3000);
  unsigned char *data = malloc(total);
  fill_pattern(data, total, 0, 3);
  for (size_t i = 0, off = 0; i < NIOV; i++) {
    size_t len = i % 5 == 0 ? 0 : (i * 37 % 3000);
    iov[i] = (struct iovec){data + off, len};
    off += len;
  }
  CHECK_EQ(weft_conn_writev(c, iov, NIOV, NULL, DL()), total);
  CHECK_EQ(weft_conn_writev(c, iov, 0, NULL, DL()), 0);
  CHECK_EQ(weft_conn_writev(c, iov, -1, NULL, DL()), -EINVAL);
  CHECK_EQ(weft_conn_write(c, data, 0, NULL, DL()), 0);
  CHECK_EQ(shutdown(weft_conn_fd(c), SHUT_WR), 0);
  weft_wg_wait(&m.wg);
  CHECK_EQ(m.total, total);
  CHECK_EQ(m.bad, 0);
  free(data);
  free(iov);
  weft_conn_close(c);
  weft_close(m.peer);
  return 0;
}

static void test_writev_many(void **state)
{
  (void)state;
  checks_reset();
  assert_int_equal(run_weft(2, writev_many_main, NULL), 0);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- buffered reader ---- */

struct trickle {
  int fd;
  const unsigned char *data;
  size_t len;
  weft_wg wg;
};

/* The peer writes data one byte at a time, letting the reader run in between, then
 * ends the stream. */
static void trickle_run(void *arg)
{
  struct trickle *t = arg;
  for (size_t i = 0; i < t->len; i++) {
    CHECK_EQ(weft_write(t->fd, t->data + i, 1, DL()), 1);
    if (i % 64 == 63)
      weft_sleep(MS(1));
    else
      weft_yield();
  }
  CHECK_EQ(shutdown(t->fd, SHUT_WR), 0);
  weft_wg_done(&t->wg);
}

static void start_trickle(struct trickle *t, int fd, const void *data, size_t len)
{
  *t = (struct trickle){.fd = fd, .data = data, .len = len};
  weft_wg_init(&t->wg);
  weft_wg_add(&t->wg, 1);
  weft_go(trickle_run, t);
}

/* Read a line and compare it with want (NULL: expect the error err). */
static void expect_line(weft_reader *r, const char *want, ssize_t err)
{
  char *line = NULL;
  ssize_t n = weft_reader_read_line(r, &line, NULL, DL());
  if (!want) {
    CHECK_EQ(n, err);
    return;
  }
  CHECK_EQ(n, (ssize_t)strlen(want));
  CHECK(n >= 0 && line && strcmp(line, want) == 0);
}

static void reader_lines(void)
{
  weft_conn *c = NULL;
  int peer = -1;
  unix_pair(&c, &peer);
  const char text[] = "one\ntwo\r\n\n\r\na\rb\nthe last line";
  CHECK_EQ(weft_write_all(peer, text, sizeof text - 1, DL()), sizeof text - 1);
  CHECK_EQ(shutdown(peer, SHUT_WR), 0);
  weft_reader *r = weft_reader_new(c, 16);
  expect_line(r, "one", 0);
  expect_line(r, "two", 0);
  expect_line(r, "", 0);
  expect_line(r, "", 0);
  expect_line(r, "a\rb", 0);
  expect_line(r, "the last line", 0); /* no "\n": returned, then end of stream */
  CHECK_EQ(weft_reader_buffered(r), 0);
  expect_line(r, NULL, -EPIPE);
  expect_line(r, NULL, -EPIPE);
  weft_reader_free(r);
  weft_conn_close(c);
  weft_close(peer);
}

static void reader_long_lines(void)
{
  weft_conn *c = NULL;
  int peer = -1;
  unix_pair(&c, &peer);
  /* 7 bytes and "\n" fill a buffer of 8 exactly; 10 and "\n" do not fit */
  const char text[] = "0123456\n0123456789\n";
  CHECK_EQ(weft_write_all(peer, text, sizeof text - 1, DL()), sizeof text - 1);
  weft_reader *r = weft_reader_new(c, 8);
  expect_line(r, "0123456", 0);
  expect_line(r, NULL, -EMSGSIZE);
  weft_reader_free(r);
  weft_conn_close(c);
  weft_close(peer);
}

/* A line arriving one byte at a time, then a body read with read_full. */
static void reader_trickled_line(void)
{
  weft_conn *c = NULL;
  int peer = -1;
  unix_pair(&c, &peer);
  const char text[] = "GET / HTTP/1.1\r\nHost: example\r\n\r\nbody!";
  struct trickle t;
  start_trickle(&t, peer, text, sizeof text - 1);
  weft_reader *r = weft_reader_new(c, 64);
  expect_line(r, "GET / HTTP/1.1", 0);
  expect_line(r, "Host: example", 0);
  expect_line(r, "", 0);
  char body[8] = {0};
  CHECK_EQ(weft_reader_read_full(r, body, 5, NULL, DL()), 5);
  CHECK(memcmp(body, "body!", 5) == 0);
  expect_line(r, NULL, -EPIPE);
  weft_wg_wait(&t.wg);
  weft_reader_free(r);
  weft_conn_close(c);
  weft_close(peer);
}

/* read_full across 1-byte writes, both through the buffer and around it. */
static void reader_full_trickled(size_t want, size_t bufsize)
{
  weft_conn *c = NULL;
  int peer = -1;
  unix_pair(&c, &peer);
  unsigned char *data = malloc(want), *got = calloc(1, want);
  fill_pattern(data, want, 0, 9);
  struct trickle t;
  start_trickle(&t, peer, data, want);
  weft_reader *r = weft_reader_new(c, bufsize);
  CHECK_EQ(weft_reader_read_full(r, got, want, NULL, DL()), want);
  CHECK(memcmp(got, data, want) == 0);
  CHECK_EQ(weft_reader_read_full(r, got, 1, NULL, DL()), -EPIPE);
  weft_wg_wait(&t.wg);
  weft_reader_free(r);
  free(data);
  free(got);
  weft_conn_close(c);
  weft_close(peer);
}

static void reader_early_eof(void)
{
  weft_conn *c = NULL;
  int peer = -1;
  unix_pair(&c, &peer);
  CHECK_EQ(weft_write_all(peer, "0123456789", 10, DL()), 10);
  CHECK_EQ(shutdown(peer, SHUT_WR), 0);
  weft_reader *r = weft_reader_new(c, 0);
  char buf[32];
  CHECK_EQ(weft_reader_read_full(r, buf, 20, NULL, DL()), -EPIPE);
  CHECK_EQ(weft_reader_read(r, buf, sizeof buf, NULL, DL()), 0);
  weft_reader_free(r);
  weft_conn_close(c);
  weft_close(peer);
}

/* Reads of at least the buffer's size go straight to the connection once it is empty. */
static void reader_bypass(void)
{
  weft_conn *c = NULL;
  int peer = -1;
  unix_pair(&c, &peer);
  unsigned char data[100], buf[128];
  fill_pattern(data, sizeof data, 0, 5);
  CHECK_EQ(weft_write_all(peer, data, sizeof data, DL()), sizeof data);
  weft_reader *r = weft_reader_new(c, 16);
  CHECK_EQ(weft_reader_buffered(r), 0);
  CHECK_EQ(weft_reader_read(r, buf, 0, NULL, DL()), 0);
  CHECK_EQ(weft_reader_read(r, buf, 4, NULL, DL()), 4); /* fills the buffer: 16 */
  CHECK_EQ(weft_reader_buffered(r), 12);
  CHECK_EQ(weft_reader_read(r, buf + 4, 64, NULL, DL()), 12); /* the buffer only */
  CHECK_EQ(weft_reader_buffered(r), 0);
  CHECK_EQ(weft_reader_read(r, buf + 16, 84, NULL, DL()), 84); /* bypass: all of it */
  CHECK_EQ(weft_reader_buffered(r), 0);
  CHECK(memcmp(buf, data, sizeof data) == 0);
  /* a deadline with nothing buffered and nothing coming */
  CHECK_EQ(weft_reader_read(r, buf, 4, NULL, weft_now() + SHORT), -ETIMEDOUT);
  weft_reader_free(r);
  weft_conn_close(c);
  weft_close(peer);
}

static int reader_main(void *arg)
{
  (void)arg;
  reader_lines();
  reader_long_lines();
  reader_trickled_line();
  reader_full_trickled(1000, 64);
  reader_full_trickled(1000, 4096);
  reader_early_eof();
  reader_bypass();
  weft_reader_free(NULL);
  return 0;
}

static void test_reader(void **state)
{
  (void)state;
  checks_reset();
  assert_int_equal(run_weft(1, reader_main, NULL), 0);
  assert_int_equal(run_weft(2, reader_main, NULL), 0);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- buffered writer ---- */

/* Nothing arrives at peer within SHORT. */
static void expect_nothing(int peer)
{
  char buf[8];
  CHECK_EQ(weft_read(peer, buf, sizeof buf, weft_now() + SHORT), -ETIMEDOUT);
}

static void expect_bytes(int peer, const void *want, size_t len)
{
  char *got = malloc(len + 1);
  CHECK_EQ(fd_read_full(peer, got, len, DL()), len);
  CHECK(memcmp(got, want, len) == 0);
  free(got);
}

static void writer_buffering(void)
{
  weft_conn *c = NULL;
  int peer = -1;
  unix_pair(&c, &peer);
  weft_writer *w = weft_writer_new(c, 16);
  CHECK_EQ(weft_writer_write(w, "abc", 3, NULL, DL()), 3);
  CHECK_EQ(weft_writer_printf(w, NULL, DL(), "%d-%s", 42, "x"), 4);
  expect_nothing(peer); /* small writes wait for the flush */
  CHECK_EQ(weft_writer_flush(w, NULL, DL()), 0);
  expect_bytes(peer, "abc42-x", 7);
  CHECK_EQ(weft_writer_flush(w, NULL, DL()), 0); /* nothing buffered: nothing sent */
  expect_nothing(peer);
  /* 10 + 10 crosses 16: the first 16 go out, 4 stay */
  CHECK_EQ(weft_writer_write(w, "0123456789", 10, NULL, DL()), 10);
  CHECK_EQ(weft_writer_write(w, "abcdefghij", 10, NULL, DL()), 10);
  expect_bytes(peer, "0123456789abcdef", 16);
  expect_nothing(peer);
  CHECK_EQ(weft_writer_flush(w, NULL, DL()), 0);
  expect_bytes(peer, "ghij", 4);
  /* exactly filling the buffer keeps it all buffered */
  CHECK_EQ(weft_writer_write(w, "0123456789abcdef", 16, NULL, DL()), 16);
  expect_nothing(peer);
  CHECK_EQ(weft_writer_flush(w, NULL, DL()), 0);
  expect_bytes(peer, "0123456789abcdef", 16);
  weft_writer_free(w);
  weft_conn_close(c);
  weft_close(peer);
}

static void writer_large(void)
{
  weft_conn *c = NULL;
  int peer = -1;
  unix_pair(&c, &peer);
  weft_writer *w = weft_writer_new(c, 16);
  unsigned char data[100], want[105];
  fill_pattern(data, sizeof data, 0, 1);
  memcpy(want, "head:", 5);
  memcpy(want + 5, data, sizeof data);
  CHECK_EQ(weft_writer_write(w, "head:", 5, NULL, DL()), 5);
  CHECK_EQ(weft_writer_write(w, data, sizeof data, NULL, DL()), sizeof data); /* through */
  expect_bytes(peer, want, sizeof want);
  expect_nothing(peer);
  CHECK_EQ(weft_writer_flush(w, NULL, DL()), 0);
  expect_nothing(peer);
  weft_writer_free(w);
  /* printf longer than its stack buffer, and a writer of the default size */
  w = weft_writer_new(c, 0);
  char big[2000];
  memset(big, 'z', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  CHECK_EQ(weft_writer_printf(w, NULL, DL(), "<%s>", big), sizeof big + 1);
  expect_nothing(peer);
  CHECK_EQ(weft_writer_flush(w, NULL, DL()), 0);
  expect_bytes(peer, "<", 1);
  expect_bytes(peer, big, sizeof big - 1);
  expect_bytes(peer, ">", 1);
  weft_writer_free(w);
  weft_writer_free(NULL);
  weft_conn_close(c);
  weft_close(peer);
}

/* After the peer has gone, the first failing call's error sticks. */
static void writer_sticky(bool tcp)
{
  weft_conn *c, *b = NULL;
  int peer = -1;
  if (tcp)
    tcp_pair(&c, &b);
  else
    unix_pair(&c, &peer);
  if (tcp)
    weft_conn_close(b);
  else
    weft_close(peer);
  weft_writer *w = weft_writer_new(c, 64);
  char chunk[1000] = {0};
  int err = 0;
  for (int i = 0; i < 200 && !err; i++) { /* TCP: the first writes may still succeed */
    ssize_t n = weft_writer_write(w, chunk, sizeof chunk, NULL, DL());
    err = n < 0 ? (int)n : weft_writer_flush(w, NULL, DL());
    if (!err)
      weft_sleep(MS(1));
  }
  CHECK(err == -EPIPE || err == -ECONNRESET);
  CHECK_EQ(weft_writer_write(w, "x", 1, NULL, DL()), err);
  CHECK_EQ(weft_writer_printf(w, NULL, DL(), "%d", 1), err);
  CHECK_EQ(weft_writer_flush(w, NULL, DL()), err);
  weft_writer_free(w);
  weft_conn_close(c);
}

static int writer_main(void *arg)
{
  (void)arg;
  writer_buffering();
  writer_large();
  writer_sticky(false);
  writer_sticky(true);
  return 0;
}

static void test_writer(void **state)
{
  (void)state;
  checks_reset();
  assert_int_equal(run_weft(2, writer_main, NULL), 0);
  ASSERT_NO_CHECK_FAILED();
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_split_host_port), cmocka_unit_test(test_listen_tcp),
      cmocka_unit_test(test_listen_unix),     cmocka_unit_test(test_dial),
      cmocka_unit_test(test_resolve),         cmocka_unit_test(test_echo),
      cmocka_unit_test(test_conn_waits),      cmocka_unit_test(test_writev_many),
      cmocka_unit_test(test_reader),          cmocka_unit_test(test_writer),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
