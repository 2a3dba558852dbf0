/* test_http_disconnect.c: the server cancels a request's context when its client goes
 * away (http_server_watch.c), over loopback with raw sockets: a client that closes, one
 * that resets (SO_LINGER 0), one that half-closes after its request (cancelled, as in Go,
 * and still answered), one gone before the handler asked for its context; a pipelined
 * next request, sent with the first or while it runs, cancels nothing and is answered; a
 * body read before or after asking for the context; many requests kept alive, each
 * watched; and cancel_on_disconnect < 0 turning it off. P = 1 and 4.
 *
 * Coroutines check with CHECK/CHECK_EQ (coro_check.h); every wait has a deadline, so a
 * hang fails the test instead of hanging it. */
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "coro_check.h"
#include "weft_test.h"

#define DL()      (weft_now() + MS(10000)) /* a hang fails instead of hanging */
#define LONG_WAIT MS(10000)                /* what /wait waits on its context by default */
/* "within ~100 ms of the close": the watcher wakes at once; sanitizers on a loaded VM
 * with two cores get a generous bound, and the measured latency is printed. */
#define SOON (SANITIZED ? MS(1000) : MS(300))

/* ---- what the handler saw ---- */

static struct {
  atomic_int started;    /* /wait handlers that began waiting on their context */
  atomic_int done;       /* /wait handlers that finished */
  atomic_int err;        /* the last wait's result */
  atomic_int cause;      /* weft_ctx_cause after it */
  atomic_llong woke_at;  /* weft_now() when the last wait ended */
  atomic_llong body_len; /* the body the last /wait read, -1 when none */
  atomic_int body_err;   /* its error */
} H;

static void h_reset(void)
{
  atomic_store(&H.started, 0);
  atomic_store(&H.done, 0);
  atomic_store(&H.err, 1);
  atomic_store(&H.cause, 1);
  atomic_store(&H.woke_at, 0);
  atomic_store(&H.body_len, -1);
  atomic_store(&H.body_err, 0);
}

static long qint(weft_http_request *r, const char *name, long def)
{
  char buf[32];
  return weft_http_request_query_value(r, name, buf, sizeof buf) > 0 ? atol(buf) : def;
}

static void read_whole_body(weft_http_request *r)
{
  const char *data;
  size_t len;
  int err = weft_http_request_body(r, &data, &len);
  atomic_store(&H.body_err, err);
  atomic_store(&H.body_len, err ? -1 : (long long)len);
}

/* /wait?ms=N&pre=M&body=1&ctxfirst=1: optionally ask for the context first, read the body,
 * sleep M ms without the context; then wait up to N ms (10 s) on the context and answer
 * with what the wait returned. */
static void h_wait(weft_http_response *w, weft_http_request *r)
{
  if (qint(r, "ctxfirst", 0))
    weft_http_request_ctx(r);
  if (qint(r, "body", 0))
    read_whole_body(r);
  long pre = qint(r, "pre", 0);
  if (pre)
    weft_sleep(MS(pre));
  weft_ctx *ctx = weft_http_request_ctx(r);
  atomic_fetch_add(&H.started, 1);
  int err = weft_sleep_ctx(ctx, MS(qint(r, "ms", LONG_WAIT / 1000000)));
  atomic_store(&H.woke_at, weft_now());
  atomic_store(&H.cause, weft_ctx_cause(ctx));
  atomic_store(&H.err, err);
  char msg[64];
  int n = snprintf(msg, sizeof msg, "waited %d %lld", err, (long long)atomic_load(&H.body_len));
  weft_http_response_send(w, 200, "text/plain", msg, (size_t)n);
  atomic_fetch_add(&H.done, 1);
}

static void handler(weft_http_response *w, weft_http_request *r, void *arg)
{
  (void)arg;
  if (!strcmp(weft_http_request_path(r), "/wait"))
    h_wait(w, r);
  else
    weft_http_response_send(w, 200, "text/plain", "second", 6);
}

/* ---- a server on 127.0.0.1:0 ---- */

struct srv {
  weft_http_server *s;
  int lfd;
  char addr[64];
  weft_wg wg; /* the serve coroutine */
};

static void serve_main(void *arg)
{
  struct srv *sv = arg;
  CHECK_EQ(weft_http_server_serve(sv->s, sv->lfd), 0);
  weft_close(sv->lfd);
  weft_wg_done(&sv->wg);
}

static bool srv_start(struct srv *sv, int cancel_on_disconnect)
{
  memset(sv, 0, sizeof *sv);
  h_reset();
  sv->lfd = weft_listen("tcp", "127.0.0.1:0", 0);
  CHECK(sv->lfd >= 0);
  if (sv->lfd < 0)
    return false;
  snprintf(sv->addr, sizeof sv->addr, "127.0.0.1:%d", weft_local_port(sv->lfd));
  weft_http_server_config cfg = {.handler = handler,
                                 .cancel_on_disconnect = cancel_on_disconnect};
  sv->s = weft_http_server_new(&cfg);
  CHECK(sv->s != NULL);
  if (!sv->s) {
    weft_close(sv->lfd);
    return false;
  }
  weft_wg_init(&sv->wg);
  weft_wg_add(&sv->wg, 1);
  CHECK_EQ(weft_go(serve_main, sv), 0);
  return true;
}

static void srv_stop(struct srv *sv)
{
  CHECK_EQ(weft_http_server_shutdown(sv->s, weft_now() + MS(5000)), 0);
  weft_wg_wait(&sv->wg);
  CHECK_EQ(weft_http_server_conns(sv->s), 0);
  weft_http_server_free(sv->s);
}

/* ---- a raw client ---- */

static int cl_open(const struct srv *sv)
{
  int fd = weft_dial(NULL, "tcp", sv->addr, DL());
  CHECK(fd >= 0);
  return fd;
}

static void cl_send(int fd, const char *s)
{
  CHECK_EQ(weft_write_all(fd, s, strlen(s), DL()), (ssize_t)strlen(s));
}

/* Read until buf holds want (true) or the stream ends or fails (false). */
static bool cl_read_until(int fd, char *buf, size_t cap, const char *want)
{
  size_t len = 0;
  buf[0] = '\0';
  while (!strstr(buf, want)) {
    if (len + 1 >= cap)
      return false;
    ssize_t n = weft_read(fd, buf + len, cap - 1 - len, DL());
    if (n <= 0)
      return false;
    len += (size_t)n;
    buf[len] = '\0';
  }
  return true;
}

/* Wait (up to 10 s) until counter reaches n. */
static void wait_count(atomic_int *counter, int n)
{
  int64_t end = DL();
  while (atomic_load(counter) < n && weft_now() < end)
    weft_sleep(MS(1));
  CHECK_EQ(atomic_load(counter), n);
}

/* The handler woke soon after since (the client's close), cancelled for a disconnect. */
static void check_cancelled_soon(const char *what, int64_t since)
{
  wait_count(&H.done, 1);
  CHECK_EQ(atomic_load(&H.err), -ECANCELED);
  CHECK_EQ(atomic_load(&H.cause), -ECONNRESET);
  int64_t latency = atomic_load(&H.woke_at) - since;
  fprintf(stderr, "  %s: cancelled %.2f ms after the client went\n", what, latency / 1e6);
  CHECK(latency >= 0 && latency < SOON);
}

/* ---- scenarios ---- */

/* The client closes (FIN) while the handler waits: cancelled at once. */
static void client_closes(void)
{
  struct srv sv;
  if (!srv_start(&sv, 0))
    return;
  int fd = cl_open(&sv);
  cl_send(fd, "GET /wait HTTP/1.1\r\nHost: t\r\n\r\n");
  wait_count(&H.started, 1);
  weft_sleep(MS(20)); /* the watcher is parked, not just starting */
  int64_t t = weft_now();
  weft_close(fd);
  check_cancelled_soon("close", t);
  srv_stop(&sv);
}

/* The client resets (SO_LINGER 0): cancelled at once. */
static void client_resets(void)
{
  struct srv sv;
  if (!srv_start(&sv, 0))
    return;
  int fd = cl_open(&sv);
  cl_send(fd, "GET /wait HTTP/1.1\r\nHost: t\r\n\r\n");
  wait_count(&H.started, 1);
  weft_sleep(MS(20));
  struct linger lg = {.l_onoff = 1, .l_linger = 0};
  CHECK_EQ(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
  int64_t t = weft_now();
  weft_close(fd);
  check_cancelled_soon("reset", t);
  srv_stop(&sv);
}

/* The client half-closes after its request: as in Go, an end of stream is a client gone
 * (the server cannot tell it from a close); the answer the handler then writes still
 * reaches the client, which can read. */
static void client_half_closes(void)
{
  struct srv sv;
  if (!srv_start(&sv, 0))
    return;
  int fd = cl_open(&sv);
  cl_send(fd, "GET /wait HTTP/1.1\r\nHost: t\r\n\r\n");
  wait_count(&H.started, 1);
  int64_t t = weft_now();
  CHECK_EQ(shutdown(fd, SHUT_WR), 0);
  check_cancelled_soon("half-close", t);
  char buf[1024], want[32];
  snprintf(want, sizeof want, "waited %d -1", -ECANCELED);
  CHECK(cl_read_until(fd, buf, sizeof buf, want));
  CHECK(strstr(buf, "HTTP/1.1 200 OK\r\n") == buf);
  weft_close(fd);
  srv_stop(&sv);
}

/* The client is gone before the handler asks for its context: the first look at the
 * socket sees it, the wait ends at once. */
static void client_gone_before_ctx(void)
{
  struct srv sv;
  if (!srv_start(&sv, 0))
    return;
  int fd = cl_open(&sv);
  cl_send(fd, "GET /wait?pre=100 HTTP/1.1\r\nHost: t\r\n\r\n");
  weft_sleep(MS(20));
  weft_close(fd);
  wait_count(&H.done, 1);
  CHECK_EQ(atomic_load(&H.err), -ECANCELED);
  CHECK_EQ(atomic_load(&H.cause), -ECONNRESET);
  srv_stop(&sv);
}

/* A pipelined second request, sent with the first or while the first waits, cancels
 * nothing; both are answered on the connection (the second without waiting for the idle
 * timeout: the watcher's wakeup must not leave await_request waiting for an edge it took). */
static void pipelined(bool together)
{
  struct srv sv;
  if (!srv_start(&sv, 0))
    return;
  int fd = cl_open(&sv);
  const char *first = "GET /wait?ms=300 HTTP/1.1\r\nHost: t\r\n\r\n";
  const char *second = "GET /second HTTP/1.1\r\nHost: t\r\n\r\n";
  if (together) {
    char both[256];
    snprintf(both, sizeof both, "%s%s", first, second);
    cl_send(fd, both);
  } else {
    cl_send(fd, first);
    wait_count(&H.started, 1);
    weft_sleep(MS(20)); /* the watcher is parked, sees the bytes arrive */
    cl_send(fd, second);
  }
  char buf[2048];
  int64_t t = weft_now();
  CHECK(cl_read_until(fd, buf, sizeof buf, "second"));
  CHECK(weft_now() - t < MS(5000));
  CHECK(strstr(buf, "waited 0 -1") != NULL);
  CHECK_EQ(atomic_load(&H.err), 0);
  CHECK_EQ(atomic_load(&H.cause), 0);
  weft_close(fd);
  srv_stop(&sv);
}

/* Bodies: read before asking for the context (Content-Length), or after (chunked: the
 * watch starts only at the body's end); the handler gets the whole body, and a close
 * after it cancels. */
static void with_body(bool ctx_first)
{
  struct srv sv;
  if (!srv_start(&sv, 0))
    return;
  int fd = cl_open(&sv);
  if (ctx_first) {
    cl_send(fd, "POST /wait?body=1&ctxfirst=1 HTTP/1.1\r\nHost: t\r\n"
                "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
    weft_sleep(MS(30)); /* the handler waits for the rest of the body: nothing cancelled */
    cl_send(fd, "6\r\n world\r\n0\r\n\r\n");
  } else {
    cl_send(fd, "POST /wait?body=1 HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\n"
                "hello world");
  }
  wait_count(&H.started, 1);
  CHECK_EQ(atomic_load(&H.body_err), 0);
  CHECK_EQ(atomic_load(&H.body_len), 11);
  weft_sleep(MS(20));
  int64_t t = weft_now();
  weft_close(fd);
  check_cancelled_soon(ctx_first ? "chunked body, ctx first" : "body first", t);
  srv_stop(&sv);
}

/* A body the client abandons half-way: the handler's read fails (the socket was its
 * reader's alone), and the context is not cancelled by a watch that never started. */
static void body_cut(void)
{
  struct srv sv;
  if (!srv_start(&sv, 0))
    return;
  int fd = cl_open(&sv);
  cl_send(fd, "POST /wait?body=1&ctxfirst=1&ms=50 HTTP/1.1\r\nHost: t\r\n"
              "Content-Length: 100\r\n\r\nhello");
  weft_sleep(MS(20));
  weft_close(fd);
  wait_count(&H.done, 1);
  CHECK(atomic_load(&H.body_err) < 0);
  CHECK_EQ(atomic_load(&H.err), 0);
  srv_stop(&sv);
}

/* Many requests kept alive on one connection, each watched and joined in turn. */
static void keepalive_many(void)
{
  struct srv sv;
  if (!srv_start(&sv, 0))
    return;
  int fd = cl_open(&sv);
  for (int i = 0; i < 100; i++) {
    cl_send(fd, i % 2 ? "GET /wait?ms=0 HTTP/1.1\r\nHost: t\r\n\r\n"
                      : "GET /wait?ms=1 HTTP/1.1\r\nHost: t\r\n\r\n");
    char buf[1024];
    CHECK(cl_read_until(fd, buf, sizeof buf, "waited 0 -1"));
  }
  CHECK_EQ(atomic_load(&H.done), 100);
  weft_close(fd);
  srv_stop(&sv);
}

/* cancel_on_disconnect < 0: the handler waits its whole time despite the close. */
static void opted_out(void)
{
  struct srv sv;
  if (!srv_start(&sv, -1))
    return;
  int fd = cl_open(&sv);
  cl_send(fd, "GET /wait?ms=300 HTTP/1.1\r\nHost: t\r\n\r\n");
  wait_count(&H.started, 1);
  weft_close(fd);
  wait_count(&H.done, 1);
  CHECK_EQ(atomic_load(&H.err), 0);
  CHECK_EQ(atomic_load(&H.cause), 0);
  srv_stop(&sv);
}

/* ---- tests ---- */

static int gone_main(void *arg)
{
  (void)arg;
  client_closes();
  client_resets();
  client_half_closes();
  client_gone_before_ctx();
  return 0;
}

static int stays_main(void *arg)
{
  (void)arg;
  pipelined(true);
  pipelined(false);
  keepalive_many();
  opted_out();
  return 0;
}

static int bodies_main(void *arg)
{
  (void)arg;
  with_body(false);
  with_body(true);
  body_cut();
  return 0;
}

static void run_p1_p4(int (*fn)(void *))
{
  checks_reset();
  assert_int_equal(run_weft(1, fn, NULL), 0);
  ASSERT_NO_CHECK_FAILED();
  assert_int_equal(run_weft(4, fn, NULL), 0);
  ASSERT_NO_CHECK_FAILED();
}

static void test_client_gone(void **state)
{
  (void)state;
  run_p1_p4(gone_main);
}

static void test_client_stays(void **state)
{
  (void)state;
  run_p1_p4(stays_main);
}

static void test_bodies(void **state)
{
  (void)state;
  run_p1_p4(bodies_main);
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_client_gone),
      cmocka_unit_test(test_client_stays),
      cmocka_unit_test(test_bodies),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
