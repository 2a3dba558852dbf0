/* test_http_robust.c: the HTTP server under abuse.
 *
 *   - slowloris: clients that trickle a header byte every 50 ms are cut off at the header
 *     timeout while a normal client is served promptly throughout;
 *   - malformed requests (a table) get exactly one 400, 414 or 431 and a closed connection;
 *   - thousands of connections at once are each served (200) or refused (503), none
 *     hangs, the server serves afterwards and its connection count returns to 0; with a
 *     small max_conns the 503 path is counted;
 *   - a request line sent a byte per read costs the parser memory in proportion to its
 *     length, not its square (found by tests/fuzz/fuzz_http_request.c);
 *   - accept backs off on EMFILE (no spinning: the process's CPU time stays low) and
 *     serves the waiting clients once descriptors free up.
 *
 * Coroutines check with CHECK/CHECK_EQ (coro_check.h); each test asserts afterwards that
 * none failed. Every wait has a deadline, so a hang fails the test instead of hanging it. */
#include <dirent.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "coro_check.h"
#include "net/http_internal.h"
#include "weft_test.h"

#define DL()  (weft_now() + MS(30000))         /* a hang fails instead of hanging */
#define SLACK (SANITIZED ? MS(1500) : MS(400)) /* scheduling slack on a loaded machine */

/* ---- a server on loopback ---- */

struct server {
  weft_http_server *srv;
  int lfd;
  char addr[64]; /* "127.0.0.1:port" */
  weft_wg done;  /* the serve coroutine */
  int rc;        /* what serve returned */
};

static void hello(weft_http_response *w, weft_http_request *r, void *arg)
{
  weft_http_response_send(w, 200, "text/plain", "hello\n", 6);
}

/* Reads the whole body, then answers 200; a body error leaves the request unanswered for
 * the server to answer. */
static void read_all(weft_http_response *w, weft_http_request *r, void *arg)
{
  const char *data;
  size_t len;
  if (weft_http_request_body(r, &data, &len) == 0)
    weft_http_response_send(w, 200, "text/plain", "read\n", 5);
}

static void serve_main(void *arg)
{
  struct server *s = arg;
  s->rc = weft_http_server_serve(s->srv, s->lfd);
  weft_wg_done(&s->done);
}

/* Listen on an ephemeral loopback port; serve too when serve is set (else server_serve). */
static int server_start(struct server *s, weft_http_server_config *cfg, int backlog, bool serve)
{
  *s = (struct server){.lfd = -1};
  weft_wg_init(&s->done);
  s->srv = weft_http_server_new(cfg);
  if (!s->srv)
    return -ENOMEM;
  s->lfd = weft_listen("tcp", "127.0.0.1:0", backlog);
  if (s->lfd < 0) {
    weft_http_server_free(s->srv);
    return s->lfd;
  }
  snprintf(s->addr, sizeof s->addr, "127.0.0.1:%d", weft_local_port(s->lfd));
  weft_wg_add(&s->done, 1);
  if (serve)
    weft_go(serve_main, s);
  return 0;
}

static void server_serve(struct server *s)
{
  weft_go(serve_main, s);
}

static void server_stop(struct server *s)
{
  CHECK_EQ(weft_http_server_shutdown(s->srv, weft_now() + MS(5000)), 0);
  weft_wg_wait(&s->done);
  CHECK_EQ(s->rc, 0);
  weft_close(s->lfd);
  weft_http_server_free(s->srv);
}

/* ---- a client ---- */

struct reply {
  int status;     /* of the first response; 0 when its head never came */
  size_t len;     /* bytes received */
  size_t msg_len; /* head and Content-Length body of the first response; 0: incomplete */
  bool eof;       /* the server closed the connection */
  int err;        /* a read error (-ECONNRESET, -ETIMEDOUT) */
};

/* Whether buf[0, n) holds a whole response (head and Content-Length body); sets status. */
static bool reply_complete(char *buf, size_t n, struct reply *rp)
{
  buf[n] = '\0';
  rp->len = n;
  char *end = strstr(buf, "\r\n\r\n");
  if (!end)
    return false;
  if (sscanf(buf, "HTTP/1.%*d %d", &rp->status) != 1)
    rp->status = -1;
  const char *cl = strcasestr(buf, "\r\nContent-Length:");
  size_t head = (size_t)(end + 4 - buf);
  size_t body = cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
  if (n < head + body)
    return false;
  rp->msg_len = head + body;
  return true;
}

/* Read one response, or (to_eof) everything until the server closes. */
static void read_reply(int fd, int64_t deadline, bool to_eof, struct reply *rp)
{
  char buf[4096];
  size_t n = 0;
  *rp = (struct reply){0};
  for (;;) {
    if (!to_eof && reply_complete(buf, n, rp))
      return;
    if (n == sizeof buf - 1) {
      rp->err = -ENOSPC;
      break;
    }
    ssize_t k = weft_read(fd, buf + n, sizeof buf - 1 - n, deadline);
    if (k < 0) {
      rp->err = (int)k;
      break;
    }
    if (k == 0) {
      rp->eof = true;
      break;
    }
    n += (size_t)k;
  }
  reply_complete(buf, n, rp);
}

static int send_all(int fd, const void *p, size_t n)
{
  for (size_t done = 0; done < n;) {
    ssize_t k = weft_send(fd, (const char *)p + done, n - done, 0, DL());
    if (k < 0)
      return (int)k;
    done += (size_t)k;
  }
  return 0;
}

/* One GET on a new connection: its status, or a negative errno. */
static int get_once(const struct server *s, int64_t deadline)
{
  int fd = weft_dial(NULL, "tcp", s->addr, deadline);
  if (fd < 0)
    return fd;
  static const char req[] = "GET / HTTP/1.1\r\nHost: test\r\n\r\n";
  struct reply rp = {0};
  int err = send_all(fd, req, sizeof req - 1);
  if (!err)
    read_reply(fd, deadline, false, &rp);
  weft_close(fd);
  return err ? err : rp.err ? rp.err : rp.status;
}

/* ---- slowloris ---- */

#define SLOW_CLIENTS   20
#define HEADER_TIMEOUT MS(300)

struct slowloris {
  struct server s;
  atomic_int slow_left; /* slow clients not yet cut off */
  atomic_int cut;       /* cut off within the bound */
  weft_wg wg;
};

/* Trickle a never-ending head a byte every 50 ms until the server closes. */
static void slow_client(void *arg)
{
  struct slowloris *sl = arg;
  static const char head[] = "GET / HTTP/1.1\r\nHost: slow\r\nX-Slow: ";
  int fd = weft_dial(NULL, "tcp", sl->s.addr, DL());
  CHECK(fd >= 0);
  int64_t start = weft_now();
  for (size_t i = 0; fd >= 0; i++) {
    char c = i < sizeof head - 1 ? head[i] : 'a';
    if (weft_send(fd, &c, 1, 0, DL()) < 0)
      break; /* reset: cut off */
    if (weft_wait_readable(fd, weft_now() + MS(50)) == 0) {
      char buf[512];
      ssize_t n = weft_read(fd, buf, sizeof buf, DL());
      if (n <= 0)
        break; /* closed: cut off */
    }
    if (weft_now() - start > HEADER_TIMEOUT + MS(10000)) {
      CHECK(!"a slow client was never cut off");
      break;
    }
  }
  int64_t took = weft_now() - start;
  CHECK(took >= HEADER_TIMEOUT - MS(20));
  CHECK(took <= HEADER_TIMEOUT + SLACK);
  if (took <= HEADER_TIMEOUT + SLACK)
    atomic_fetch_add(&sl->cut, 1);
  if (fd >= 0)
    weft_close(fd);
  atomic_fetch_sub(&sl->slow_left, 1);
  weft_wg_done(&sl->wg);
}

/* A normal client: one GET every 50 ms, each answered promptly, while slow ones linger
 * (and at least three, should a loaded machine start it only after they were cut). */
static void normal_client(void *arg)
{
  struct slowloris *sl = arg;
  int served = 0;
  while (atomic_load(&sl->slow_left) > 0 || served < 3) {
    int64_t t0 = weft_now();
    int status = get_once(&sl->s, DL());
    int64_t took = weft_now() - t0;
    CHECK_EQ(status, 200);
    CHECK(took < (SANITIZED ? MS(1000) : MS(200)));
    served++;
    weft_sleep(MS(50));
  }
  weft_wg_done(&sl->wg);
}

static int slowloris_main(void *arg)
{
  struct slowloris sl = {0};
  weft_http_server_config cfg = {.handler = hello, .header_timeout = HEADER_TIMEOUT};
  int err = server_start(&sl.s, &cfg, 0, true);
  CHECK_EQ(err, 0);
  if (err)
    return err;
  weft_wg_init(&sl.wg);
  atomic_store(&sl.slow_left, SLOW_CLIENTS);
  weft_wg_add(&sl.wg, SLOW_CLIENTS + 1);
  for (int i = 0; i < SLOW_CLIENTS; i++)
    weft_go(slow_client, &sl);
  weft_go(normal_client, &sl);
  weft_wg_wait(&sl.wg);
  CHECK_EQ(atomic_load(&sl.cut), SLOW_CLIENTS);
  server_stop(&sl.s);
  return 0;
}

static void test_slowloris(void **state)
{
  checks_reset();
  assert_int_equal(run_weft(2, slowloris_main, NULL), 0);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- malformed requests ---- */

#define HOST         "Host: a\r\n"
#define RAW(s)       s, sizeof(s) - 1 /* a message with a NUL in it */
#define POST_CHUNKED "POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n\r\n"

struct bad_request {
  const char *name;
  const char *msg; /* sent as is; NULL: built by the test (long) */
  size_t len;      /* 0: strlen(msg) */
  int status;      /* the one response expected */
  bool half_close; /* shut down writing after sending (the request ends at EOF) */
};

static const struct bad_request bad_requests[] = {
    {"bad method char", "GE(T / HTTP/1.1\r\n" HOST "\r\n", 0, 400, false},
    {"unknown method", "FETCH / HTTP/1.1\r\n" HOST "\r\n", 0, 400, false},
    {"bad version", "GET / HTTP/1.x\r\n" HOST "\r\n", 0, 400, false},
    {"control char in target", "GET /a\x01z HTTP/1.1\r\n" HOST "\r\n", 0, 400, false},
    {"bad escape in path", "GET /a%zz HTTP/1.1\r\n" HOST "\r\n", 0, 400, false},
    {"NUL in header value", RAW("GET / HTTP/1.1\r\n" HOST "X-A: a\0b\r\n\r\n"), 400, false},
    {"NUL in header name", RAW("GET / HTTP/1.1\r\n" HOST "X\0A: ab\r\n\r\n"), 400, false},
    {"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 0, 400, false},
    {"header without colon", "GET / HTTP/1.1\r\n" HOST "Junk\r\n\r\n", 0, 400, false},
    {"obs-fold", "GET / HTTP/1.1\r\n" HOST "X-A: one\r\n two\r\n\r\n", 0, 400, false},
    {"bare CR", "GET / HTTP/1.1\r" HOST "\r\n", 0, 400, false},
    {"invalid chunk size", POST_CHUNKED "zz\r\nabc\r\n0\r\n\r\n", 0, 400, false},
    {"chunk size overflow", POST_CHUNKED "fffffffffffffffff1\r\nx\r\n0\r\n\r\n", 0, 400, false},
    {"chunk data too long", POST_CHUNKED "2\r\nabc\r\n0\r\n\r\n", 0, 400, false},
    {"Content-Length and chunked",
     "POST / HTTP/1.1\r\n" HOST "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
     "0\r\n\r\n",
     0, 400, false},
    {"differing Content-Lengths",
     "POST / HTTP/1.1\r\n" HOST "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 0, 400,
     false},
    {"negative Content-Length", "POST / HTTP/1.1\r\n" HOST "Content-Length: -1\r\n\r\n", 0, 400,
     false},
    {"Content-Length not a number", "POST / HTTP/1.1\r\n" HOST "Content-Length: 1x\r\n\r\n", 0,
     400, false},
    {"chunked not last", "POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked, gzip\r\n\r\n",
     0, 400, false},
    {"request line without CRLF at EOF", "GET / HTTP/1.1", 0, 400, true},
    {"head cut at EOF", "GET / HTTP/1.1\r\n" HOST "X-A: b", 0, 400, true},
    {"request line too long", NULL, 0, 414, false},
    {"header line too long", NULL, 0, 431, false},
    {"too many headers", NULL, 0, 431, false},
    {"header line too long, more behind", NULL, 0, 431, false},
};

/* The long messages of the table, built into buf. */
static size_t build_long(const struct bad_request *b, char *buf, size_t cap)
{
  size_t n = 0;
  if (b->status == 414) {
    n += (size_t)snprintf(buf, cap, "GET /");
    memset(buf + n, 'a', 9000);
    n += 9000;
    n += (size_t)snprintf(buf + n, cap - n, " HTTP/1.1\r\n" HOST "\r\n");
  } else if (!strncmp(b->name, "header line too long", 20)) {
    n += (size_t)snprintf(buf, cap, "GET / HTTP/1.1\r\n" HOST "X-Long: ");
    size_t more = strstr(b->name, "more") ? cap - n - 64 : 9000; /* unread by the server */
    memset(buf + n, 'b', more);
    n += more;
    n += (size_t)snprintf(buf + n, cap - n, "\r\n\r\n");
  } else {
    n += (size_t)snprintf(buf, cap, "GET / HTTP/1.1\r\n" HOST);
    for (int i = 0; i < 120; i++)
      n += (size_t)snprintf(buf + n, cap - n, "X-H%d: %d\r\n", i, i);
    n += (size_t)snprintf(buf + n, cap - n, "\r\n");
  }
  return n;
}

static void one_bad_request(const struct server *s, const struct bad_request *b)
{
  static char big[256 * 1024];
  const char *msg = b->msg;
  size_t len = b->msg ? (b->len ? b->len : strlen(b->msg)) : build_long(b, big, sizeof big);
  if (!msg)
    msg = big;
  int fd = weft_dial(NULL, "tcp", s->addr, DL());
  CHECK(fd >= 0);
  if (fd < 0)
    return;
  int err = send_all(fd, msg, len);
  if (!err && b->half_close)
    shutdown(fd, SHUT_WR);
  struct reply rp;
  read_reply(fd, weft_now() + MS(5000), true, &rp);
  bool ok = rp.status == b->status && rp.eof && !rp.err && rp.msg_len == rp.len;
  if (!ok) {
    fprintf(stderr, "  %s: status %d (want %d), %zu bytes (response %zu), eof %d, err %d\n",
            b->name, rp.status, b->status, rp.len, rp.msg_len, rp.eof, rp.err);
    check_failed(__FILE__, __LINE__, b->name, rp.status, b->status);
  }
  weft_close(fd);
}

static int malformed_main(void *arg)
{
  struct server s;
  weft_http_server_config cfg = {.handler = read_all};
  int err = server_start(&s, &cfg, 0, true);
  CHECK_EQ(err, 0);
  if (err)
    return err;
  for (size_t i = 0; i < sizeof bad_requests / sizeof *bad_requests; i++)
    one_bad_request(&s, &bad_requests[i]);
  CHECK_EQ(get_once(&s, DL()), 200); /* and the server is still fine */
  server_stop(&s);
  return 0;
}

static void test_malformed(void **state)
{
  checks_reset();
  assert_int_equal(run_weft(2, malformed_main, NULL), 0);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- the parser fed a byte at a time ---- */

/* Each piece of a field used to copy the whole field again: an 8,000-byte target sent a
 * byte per read took 32 MiB of arena (tests/fuzz/regressions/http_request). */
static void test_parse_bytewise(void **state)
{
  static char msg[8192];
  int n = snprintf(msg, sizeof msg, "GET /");
  memset(msg + n, 'a', 8000);
  n += 8000;
  n += snprintf(msg + n, sizeof msg - (size_t)n, " HTTP/1.1\r\nHost: a\r\nX-A: ");
  memset(msg + n, 'b', 100);
  n += 100;
  n += snprintf(msg + n, sizeof msg - (size_t)n, "\r\n\r\n");
  struct http_limits lim = {8192, 100, 65536, 1 << 20};
  struct arena a = {0};
  struct http_req_parse p;
  weft__http_req_parse_init(&p, &lim, &a);
  for (int i = 0; i < n && p.event != HTTP_PARSE_HEAD;) /* HEAD may leave the last LF */
    i += (int)weft__http_req_parse_feed(&p, msg + i, 1);
  assert_int_equal(p.event, HTTP_PARSE_HEAD);
  assert_int_equal(p.url_len, 8001);
  assert_int_equal(strlen(p.headers[1].value), 100);
  assert_true(a.cap <= 64 * 1024); /* the newest block; blocks double */
  weft__arena_free(&a);
}

/* ---- many connections at once ---- */

/* TSan allows at most about 8,000 live coroutines (and is slow): each connection is two
 * (client and server), so it gets 2,000 connections. */
#define CROWD_TSAN 2000

struct crowd {
  struct server s;
  weft_ctx *release; /* cancelled: clients close their connections */
  atomic_int ok, refused, reset, other, read;
  weft_wg wg;
};

/* Connect, send a GET, read the answer, then hold the connection until released (so the
 * server sees them all open at once). */
static void crowd_client(void *arg)
{
  struct crowd *cr = arg;
  int fd = weft_dial(NULL, "tcp", cr->s.addr, DL());
  struct reply rp = {0};
  if (fd >= 0) {
    static const char req[] = "GET / HTTP/1.1\r\nHost: crowd\r\n\r\n";
    rp.err = send_all(fd, req, sizeof req - 1);
    if (!rp.err)
      read_reply(fd, DL(), false, &rp);
  } else {
    rp.err = fd;
  }
  if (rp.status == 200)
    atomic_fetch_add(&cr->ok, 1);
  else if (rp.status == 503)
    atomic_fetch_add(&cr->refused, 1);
  else if (rp.err == -ECONNRESET || rp.err == -EPIPE || (rp.eof && rp.len == 0))
    atomic_fetch_add(&cr->reset, 1); /* refused before the 503 could be read */
  else if (atomic_fetch_add(&cr->other, 1) < 5)
    fprintf(stderr, "  crowd client: status %d, err %d, %zu bytes\n", rp.status, rp.err,
            rp.len);
  atomic_fetch_add(&cr->read, 1);
  weft_ctx_wait(cr->release, DL());
  if (fd >= 0)
    weft_close(fd);
  weft_wg_done(&cr->wg);
}

/* Raise the soft descriptor limit to the hard one; how many connections fit (two
 * descriptors each, and some to spare), at most want. */
static int fit_connections(int want)
{
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return 0;
  rl.rlim_cur = rl.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
    return 0;
  rlim_t fit = rl.rlim_cur > 300 ? (rl.rlim_cur - 300) / 2 : 0;
  return fit < (rlim_t)want ? (int)fit : want;
}

/* n clients against a server with max_conns (0: the default); checks that all are
 * served or refused and that the server's count returns to 0. Returns the refusals. */
static int crowd_run(int n, int max_conns)
{
  struct crowd cr = {0};
  weft_http_server_config cfg = {.handler = hello, .max_conns = max_conns};
  int err = server_start(&cr.s, &cfg, 0, true);
  CHECK_EQ(err, 0);
  if (err)
    return 0;
  cr.release = weft_ctx_with_cancel(NULL);
  weft_wg_init(&cr.wg);
  weft_wg_add(&cr.wg, n);
  int64_t t0 = weft_now();
  weft_go_options opts = {.name = "crowd", .stack_size = SANITIZED ? 0 : 64 * 1024};
  for (int i = 0; i < n; i++)
    CHECK_EQ(weft_go_with(crowd_client, &cr, &opts), 0);
  while (atomic_load(&cr.read) < n && weft_now() - t0 < MS(60000))
    weft_sleep(MS(10));
  int64_t took = weft_now() - t0;
  int open = weft_http_server_conns(cr.s.srv);
  int cap = max_conns ? max_conns : 10000;
  int ok = atomic_load(&cr.ok), refused = atomic_load(&cr.refused);
  int reset = atomic_load(&cr.reset);
  fprintf(stderr,
          "  %d connections, max_conns %d: %d served, %d refused with 503, %d reset,"
          " %d other in %.2f s; %d open on the server\n",
          n, cap, ok, refused, reset, atomic_load(&cr.other), took / 1e9, open);
  CHECK_EQ(ok + refused + reset, n);
  CHECK_EQ(atomic_load(&cr.other), 0);
  CHECK_EQ(ok, n < cap ? n : cap);
  CHECK(open <= cap);
  weft_ctx_cancel(cr.release);
  weft_wg_wait(&cr.wg);
  for (int64_t t = weft_now();
       weft_http_server_conns(cr.s.srv) > 0 && weft_now() - t < MS(10000);)
    weft_sleep(MS(10));
  CHECK_EQ(weft_http_server_conns(cr.s.srv), 0);
  CHECK_EQ(get_once(&cr.s, DL()), 200); /* still serving */
  server_stop(&cr.s);
  weft_ctx_release(cr.release);
  return refused + reset;
}

static int crowd_main(void *arg)
{
  int n = *(int *)arg;
  crowd_run(n, 0); /* the default cap: everyone served */
  int refused = crowd_run(n < 3000 ? n : 3000, n < 3000 ? n / 3 : 1000); /* the 503 path */
  CHECK(refused > 0);
  return 0;
}

static void test_ten_thousand(void **state)
{
  struct rlimit saved;
  assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
  int n = fit_connections(TSAN ? CROWD_TSAN : 10000);
  if (n < 1000) {
    setrlimit(RLIMIT_NOFILE, &saved);
    fprintf(stderr, "skipped: the descriptor limit (hard %llu) allows %d connections\n",
            (unsigned long long)saved.rlim_max, n);
    skip();
  }
  if (n < (TSAN ? CROWD_TSAN : 10000))
    fprintf(stderr, "  the hard descriptor limit (%llu) allows %d connections\n",
            (unsigned long long)saved.rlim_max, n);
  checks_reset();
  assert_int_equal(run_weft(0, crowd_main, &n), 0);
  setrlimit(RLIMIT_NOFILE, &saved);
  ASSERT_NO_CHECK_FAILED();
}

/* Exactly 10,000 connections: the clients run in a child process with a descriptor table
 * (and limit) of its own, since one process holding both ends needs 20,000+ descriptors,
 * more than this machine's hard limit. The child reports once every client has its answer
 * and holds the connections open until the parent, having counted them on the server,
 * lets go. */
#define TWO_PROC_CONNS 10000

struct crowd_report {
  int ok, refused, reset, other;
};

struct crowd_child {
  char addr[64];
  int n;
  int to_parent, from_parent; /* pipes */
  struct crowd_report rep;
};

static int crowd_child_main(void *arg)
{
  struct crowd_child *cc = arg;
  struct crowd cr = {0};
  snprintf(cr.s.addr, sizeof cr.s.addr, "%s", cc->addr);
  cr.release = weft_ctx_with_cancel(NULL);
  weft_wg_init(&cr.wg);
  weft_wg_add(&cr.wg, cc->n);
  weft_go_options opts = {.name = "crowd", .stack_size = 64 * 1024};
  for (int i = 0; i < cc->n; i++)
    weft_go_with(crowd_client, &cr, &opts);
  for (int64_t t0 = weft_now(); atomic_load(&cr.read) < cc->n && weft_now() - t0 < MS(60000);)
    weft_sleep(MS(10));
  char go = 1;
  weft_write(cc->to_parent, &go, 1, DL()); /* all answered, all still open */
  weft_read(cc->from_parent, &go, 1, weft_now() + MS(60000));
  weft_ctx_cancel(cr.release);
  weft_wg_wait(&cr.wg);
  weft_ctx_release(cr.release);
  cc->rep = (struct crowd_report){atomic_load(&cr.ok), atomic_load(&cr.refused),
                                  atomic_load(&cr.reset), atomic_load(&cr.other)};
  return 0;
}

struct crowd_parent {
  int n;
  pid_t child;
  int to_child, from_child;
  int open_at_peak;
  struct crowd_report rep;
};

static long wait_child(void *arg)
{
  int status = 0;
  return waitpid(*(pid_t *)arg, &status, 0) > 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int crowd_parent_main(void *arg)
{
  struct crowd_parent *cp = arg;
  struct server s;
  weft_http_server_config cfg = {.handler = hello};
  int err = server_start(&s, &cfg, 0, true);
  CHECK_EQ(err, 0);
  if (err)
    return 0;
  CHECK_EQ(weft_write(cp->to_child, s.addr, sizeof s.addr, DL()), (ssize_t)sizeof s.addr);
  char go;
  CHECK_EQ(weft_read(cp->from_child, &go, 1, weft_now() + MS(90000)), 1);
  cp->open_at_peak = weft_http_server_conns(s.srv); /* every client holds its connection */
  CHECK_EQ(weft_write(cp->to_child, &go, 1, DL()), 1);
  CHECK_EQ(weft_read(cp->from_child, &cp->rep, sizeof cp->rep, weft_now() + MS(60000)),
           (ssize_t)sizeof cp->rep);
  CHECK_EQ(weft_blocking(wait_child, &cp->child), 0);
  for (int64_t t = weft_now(); weft_http_server_conns(s.srv) > 0 && weft_now() - t < MS(10000);)
    weft_sleep(MS(10));
  CHECK_EQ(weft_http_server_conns(s.srv), 0);
  CHECK_EQ(get_once(&s, DL()), 200); /* still serving */
  server_stop(&s);
  return 0;
}

static void test_ten_thousand_two_processes(void **state)
{
  if (TSAN || SANITIZED)
    skip(); /* the in-process crowd above covers the sanitizers at a smaller size */
  struct rlimit saved, rl;
  assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
  rl = saved;
  rl.rlim_cur = rl.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < TWO_PROC_CONNS + 300) {
    fprintf(stderr, "skipped: the descriptor limit (hard %llu) is below %d\n",
            (unsigned long long)saved.rlim_max, TWO_PROC_CONNS + 300);
    setrlimit(RLIMIT_NOFILE, &saved);
    skip();
  }
  int down[2], up[2]; /* parent -> child, child -> parent */
  assert_int_equal(pipe(down), 0);
  assert_int_equal(pipe(up), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    struct crowd_child cc = {.n = TWO_PROC_CONNS, .to_parent = up[1], .from_parent = down[0]};
    close(down[1]);
    close(up[0]);
    if (read(down[0], cc.addr, sizeof cc.addr) != (ssize_t)sizeof cc.addr)
      _exit(2);
    int rc = run_weft(0, crowd_child_main, &cc);
    ssize_t w = write(up[1], &cc.rep, sizeof cc.rep);
    _exit(rc == 0 && w == (ssize_t)sizeof cc.rep ? 0 : 1);
  }
  close(down[0]);
  close(up[1]);
  struct crowd_parent cp = {
      .n = TWO_PROC_CONNS, .child = pid, .to_child = down[1], .from_child = up[0]};
  checks_reset();
  assert_int_equal(run_weft(0, crowd_parent_main, &cp), 0);
  close(down[1]);
  close(up[0]);
  setrlimit(RLIMIT_NOFILE, &saved);
  fprintf(stderr,
          "  %d connections from another process: %d served, %d refused, %d reset,"
          " %d other; %d open on the server at once\n",
          TWO_PROC_CONNS, cp.rep.ok, cp.rep.refused, cp.rep.reset, cp.rep.other,
          cp.open_at_peak);
  ASSERT_NO_CHECK_FAILED();
  assert_int_equal(cp.rep.ok, TWO_PROC_CONNS); /* the default cap is 10,000: all served */
  assert_int_equal(cp.open_at_peak, TWO_PROC_CONNS);
}

/* ---- accept backing off on EMFILE ---- */

#define EM_SERVED  8 /* connections the server has descriptors for */
#define EM_WAITING 8 /* connections left in the backlog by EMFILE */

struct emfile {
  struct server s;
  weft_ctx *release;
  atomic_int served; /* answered 200 */
  weft_wg wg;
};

/* The highest open descriptor and how many below it are free. */
static int fd_table(int *free_below)
{
  DIR *d = opendir("/proc/self/fd");
  int max = -1, count = 0, self = d ? dirfd(d) : -1;
  for (struct dirent *e; d && (e = readdir(d));) {
    if (e->d_name[0] == '.')
      continue;
    int fd = atoi(e->d_name);
    if (fd == self)
      continue;
    count++;
    max = fd > max ? fd : max;
  }
  if (d)
    closedir(d);
  *free_below = max + 1 - count;
  return max;
}

struct em_conn {
  struct emfile *em;
  int fd;
};

static void em_conn_main(void *arg)
{
  struct em_conn *c = arg;
  static const char req[] = "GET / HTTP/1.1\r\nHost: emfile\r\n\r\n";
  struct reply rp = {0};
  rp.err = send_all(c->fd, req, sizeof req - 1);
  if (!rp.err)
    read_reply(c->fd, DL(), false, &rp);
  CHECK_EQ(rp.status, 200);
  atomic_fetch_add(&c->em->served, 1);
  weft_ctx_wait(c->em->release, DL());
  weft_close(c->fd);
  weft_wg_done(&c->em->wg);
}

static int64_t cpu_ns(void)
{
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000ll +
         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000ll;
}

/* Wait until served stops changing for 200 ms (at most 5 s); returns it. */
static int settle(atomic_int *served)
{
  int last = -1;
  for (int64_t t = weft_now(), quiet = t; weft_now() - t < MS(5000); weft_sleep(MS(20))) {
    int now = atomic_load(served);
    if (now != last)
      last = now, quiet = weft_now();
    else if (weft_now() - quiet >= MS(200))
      break;
  }
  return last;
}

static int emfile_main(void *arg)
{
  enum { N = EM_SERVED + EM_WAITING };
  struct emfile em = {0};
  struct em_conn conns[N];
  struct rlimit saved;
  getrlimit(RLIMIT_NOFILE, &saved);
  weft_http_server_config cfg = {.handler = hello};
  int err = server_start(&em.s, &cfg, N, false);
  CHECK_EQ(err, 0);
  if (err)
    return err;
  em.release = weft_ctx_with_cancel(NULL);
  weft_wg_init(&em.wg);
  /* Connect everyone first (the backlog completes the handshakes), then leave the server
   * descriptors for EM_SERVED of them. */
  for (int i = 0; i < N; i++) {
    conns[i] = (struct em_conn){&em, weft_dial(NULL, "tcp", em.s.addr, DL())};
    CHECK(conns[i].fd >= 0);
  }
  /* Fill the holes in the descriptor table below the highest one, free EM_SERVED of
   * them (or as many as there were), and set the limit so that accept has exactly
   * EM_SERVED descriptors whatever the table looked like. */
  int free_below, max = fd_table(&free_below), nfill = 0;
  int *fill = calloc((size_t)free_below + 1, sizeof *fill);
  for (int fd; fill && nfill <= free_below && (fd = dup(2)) >= 0; fill[nfill++] = fd) {
    if (fd > max) {
      close(fd);
      break;
    }
  }
  int freed = 0;
  for (; freed < EM_SERVED && nfill > 0; freed++)
    close(fill[--nfill]);
  /* Holes there were too few of are made up above the highest descriptor. */
  struct rlimit low = saved;
  low.rlim_cur = (rlim_t)max + 1 + (rlim_t)(EM_SERVED - freed);
  CHECK_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  weft_wg_add(&em.wg, N);
  for (int i = 0; i < N; i++)
    weft_go(em_conn_main, &conns[i]);
  server_serve(&em.s);
  int served = settle(&em.served);
  /* Some are waiting in the backlog behind EMFILE: the accept loop must sleep, not spin. */
  int64_t cpu0 = cpu_ns(), t0 = weft_now();
  weft_sleep(MS(300));
  int64_t cpu = cpu_ns() - cpu0, wall = weft_now() - t0;
  fprintf(stderr, "  EMFILE: fds up to %d open, %d free below, limit %llu\n", max, free_below,
          (unsigned long long)low.rlim_cur);
  fprintf(stderr, "  EMFILE: %d of %d served; CPU %.1f ms over %.1f ms waiting\n", served, N,
          cpu / 1e6, wall / 1e6);
  CHECK_EQ(served, EM_SERVED);
  CHECK(atomic_load(&em.served) == served);
  CHECK(cpu < MS(100));
  /* Served clients close: descriptors free up and the waiting ones are served. */
  int64_t t1 = weft_now();
  weft_ctx_cancel(em.release);
  weft_wg_wait(&em.wg);
  int64_t took = weft_now() - t1;
  fprintf(stderr, "  EMFILE: the waiting ones served %.1f ms after descriptors freed\n",
          took / 1e6);
  CHECK_EQ(atomic_load(&em.served), N);
  CHECK(took < MS(3000));
  setrlimit(RLIMIT_NOFILE, &saved);
  while (nfill > 0)
    close(fill[--nfill]);
  free(fill);
  server_stop(&em.s);
  weft_ctx_release(em.release);
  return 0;
}

static void test_emfile_backoff(void **state)
{
  struct rlimit saved;
  assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
  checks_reset();
  assert_int_equal(run_weft(2, emfile_main, NULL), 0);
  setrlimit(RLIMIT_NOFILE, &saved);
  ASSERT_NO_CHECK_FAILED();
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_slowloris),
      cmocka_unit_test(test_malformed),
      cmocka_unit_test(test_parse_bytewise),
      cmocka_unit_test(test_ten_thousand),
      cmocka_unit_test(test_ten_thousand_two_processes),
      cmocka_unit_test(test_emfile_backoff),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof *tests, NULL, 0);
}
