/* http_server.c: the accept loop, a coroutine per connection, graceful shutdown.
 *
 * Connection states (guarded by srv->lock, changed only by set_state):
 *
 *   NEW --first byte--> ACTIVE --response done, keep-alive--> IDLE --byte--> ACTIVE
 *    |                    |                                    |
 *    +--------------------+------- error, close, shutdown -----+--> (unlisted, closed)
 *
 * Shutdown sets shutting_down under the lock and shuts down reading on every NEW or IDLE
 * connection: its coroutine sees end of stream and leaves. An ACTIVE one finishes its
 * request, answers with "Connection: close" and leaves when it would go IDLE. At the
 * deadline every remaining socket is shut down both ways and force_ctx (the parent of
 * every request's context) is cancelled, so handlers waiting on I/O or their context
 * end too.
 *
 * While a handler runs, a watcher coroutine may watch its socket for a client gone away
 * (http_server_watch.c): weft__http_watch_begin and _end bracket the handler, and _end
 * joins the watcher before the connection reads its socket again.
 *
 * Lock order: srv->lock is a leaf; nothing parks while holding it (shutdown(2) does not
 * block). */
#include <arpa/inet.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctx/ctx_io.h"
#include "net/http_internal.h"
#include "weft/error.h"
#include "weft/io.h"
#include "weft/runtime.h"
#include "weft/tls.h"

enum { READ_BUFFER = 4096, WRITE_BUFFER = 4096, DRAIN_MAX = 256 * 1024 };
#define SECOND 1000000000ll
#define LINGER (SECOND / 2) /* reading after an error response, before closing */

static void fill_defaults(weft_http_server_config *c)
{
#define DEFAULT(field, value) \
  if (c->field == 0)          \
  c->field = (value)
  DEFAULT(max_line, 8192);
  DEFAULT(max_headers, 100);
  DEFAULT(max_header_bytes, 65536);
  DEFAULT(max_body, 1 << 20);
  DEFAULT(max_conns, 10000);
  DEFAULT(max_requests, 1000);
  DEFAULT(header_timeout, 10 * SECOND);
  DEFAULT(body_timeout, 30 * SECOND);
  DEFAULT(write_timeout, 30 * SECOND);
  DEFAULT(idle_timeout, 60 * SECOND);
  DEFAULT(tls_handshake_timeout, 10 * SECOND);
#undef DEFAULT
}

weft_http_server *weft_http_server_new(const weft_http_server_config *cfg)
{
  if (!cfg || !cfg->handler)
    return NULL;
  weft_http_server *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  s->cfg = *cfg;
  fill_defaults(&s->cfg);
  s->limits = (struct http_limits){s->cfg.max_line, s->cfg.max_headers, s->cfg.max_header_bytes,
                                   s->cfg.max_body};
  weft_mutex_init(&s->lock);
  weft_wg_init(&s->conn_wg);
  s->accept_ctx = weft_ctx_with_cancel(NULL);
  s->force_ctx = weft_ctx_with_cancel(cfg->base_ctx);
  if (!s->accept_ctx || !s->force_ctx) {
    weft_http_server_free(s);
    return NULL;
  }
  return s;
}

void weft_http_server_free(weft_http_server *s)
{
  if (!s)
    return;
  if (s->accept_ctx)
    weft_ctx_release(s->accept_ctx);
  if (s->force_ctx) {
    weft_ctx_cancel(s->force_ctx);
    weft_ctx_release(s->force_ctx);
  }
  free(s);
}

int weft_http_server_conns(const weft_http_server *s)
{
  return __atomic_load_n(&s->nconns, __ATOMIC_RELAXED);
}

int weft_http_server_active(const weft_http_server *s)
{
  return atomic_load_explicit(&s->active, memory_order_relaxed);
}

uint64_t weft_http_server_requests(const weft_http_server *s)
{
  return atomic_load_explicit(&s->served, memory_order_relaxed);
}

/* ---- connection list ---- */

/* Move hc to state; false when the server is shutting down and hc must leave instead of
 * waiting for a request (NEW or IDLE). */
static bool set_state(struct http_conn *hc, enum http_conn_state state)
{
  weft_http_server *s = hc->srv;
  weft_mutex_lock(&s->lock);
  bool ok = !((state == CONN_IDLE || state == CONN_NEW) && s->shutting_down);
  if (ok)
    hc->state = state;
  weft_mutex_unlock(&s->lock);
  return ok;
}

static void conn_unlist(struct http_conn *hc)
{
  weft_http_server *s = hc->srv;
  weft_mutex_lock(&s->lock);
  if (hc->prev)
    hc->prev->next = hc->next;
  else
    s->conns = hc->next;
  if (hc->next)
    hc->next->prev = hc->prev;
  __atomic_store_n(&s->nconns, s->nconns - 1, __ATOMIC_RELAXED);
  weft_mutex_unlock(&s->lock);
}

static void conn_free(struct http_conn *hc)
{
  weft_conn_close(hc->conn);
  weft__arena_free(&hc->arena);
  free(hc->rbuf);
  free(hc->wbuf);
  free(hc);
}

/* ---- one connection ---- */

int weft__http_conn_parse_step(struct http_conn *hc, weft_http_request *r, int64_t deadline,
                               int64_t timeout)
{
  for (;;) {
    if (hc->rstart < hc->rend) {
      size_t n =
          weft__http_req_parse_feed(&r->parse, hc->rbuf + hc->rstart, hc->rend - hc->rstart);
      hc->rstart += n;
      if (r->parse.event != HTTP_PARSE_MORE)
        return (int)r->parse.event;
    }
    /* Everything buffered was parsed (copied or handed out): read afresh. */
    hc->rstart = hc->rend = 0;
    if (deadline == 0)
      deadline = timeout < 0 ? WEFT_NO_DEADLINE : weft_now() + timeout;
    ssize_t n = weft_conn_read(hc->conn, hc->rbuf, hc->rsize, NULL, deadline);
    if (n <= 0)
      return n == 0 ? -EPIPE : (int)n;
    hc->rend = (size_t)n;
    hc->drained = hc->rend < hc->rsize;
  }
}

/* Wait for the first byte of the next request. false: the connection is done. */
static bool await_request(struct http_conn *hc)
{
  weft_http_server *s = hc->srv;
  if (hc->rstart < hc->rend)
    return true; /* pipelined: already here */
  int64_t t = hc->requests ? s->cfg.idle_timeout : s->cfg.header_timeout;
  int64_t deadline = t < 0 ? WEFT_NO_DEADLINE : weft_now() + t;
  if (!set_state(hc, hc->requests ? CONN_IDLE : CONN_NEW))
    return false;
  hc->rstart = hc->rend = 0;
  /* A kept-alive client rarely has its next request on the wire the moment a response
   * left; when the last read came back short, the socket was drained: wait for the next edge
   * instead of a read that fails with EAGAIN, one system call less per request (the poller
   * remembers an edge that came meanwhile; a stale one costs that read after all). Not for TLS,
   * whose library may hold decrypted bytes the socket no longer shows. */
  if (hc->requests && hc->drained && !weft_conn_is_tls(hc->conn) &&
      weft__wait_fd_edge_ctx(weft_conn_fd(hc->conn), 0, NULL, deadline) != 0)
    return false;
  ssize_t n = weft_conn_read(hc->conn, hc->rbuf, hc->rsize, NULL, deadline);
  if (n <= 0)
    return false;
  hc->rend = (size_t)n;
  hc->drained = hc->rend < hc->rsize;
  return true;
}

/* Read and parse a request head. Returns 0, or an error status to send (400, 414,
 * 431; 400 also for a head cut short by the end of the stream), or -1 to close silently
 * (timeout, I/O error). */
static int read_head(struct http_conn *hc, weft_http_request *r)
{
  weft_http_server *s = hc->srv;
  /* The first request's head is due header_timeout after the accept; a later one's
   * header_timeout after the first read it still needs (0), if any: a head that came
   * whole with the bytes that woke the connection costs no clock read. */
  int64_t deadline = hc->requests == 0 ? hc->header_deadline : 0;
  weft__arena_reset(&hc->arena);
  weft__http_req_parse_init(&r->parse, &s->limits, &hc->arena);
  int ev = weft__http_conn_parse_step(hc, r, deadline, s->cfg.header_timeout);
  if (ev == HTTP_PARSE_ERROR)
    return r->parse.status;
  if (ev == -EPIPE)
    return 400; /* the client ended its side within a head: it may still read (as Go does) */
  if (ev != HTTP_PARSE_HEAD)
    return -1;
  weft__http_request_init(r, hc);
  return weft__http_request_validate(r);
}

/* Serve one request whose head is parsed. Returns true to keep the connection. */
static bool serve_request(struct http_conn *hc, weft_http_request *r)
{
  weft_http_server *s = hc->srv;
  weft_http_response w;
  hc->http10 = r->version < 11;
  hc->requests++;
  weft__http_response_init(&w, hc, r);
  atomic_fetch_add_explicit(&s->active, 1, memory_order_relaxed);
  weft__http_watch_begin(hc);
  s->cfg.handler(&w, r, s->cfg.handler_arg);
  weft__http_watch_end(hc, r); /* before anything reads the socket again */
  atomic_fetch_sub_explicit(&s->active, 1, memory_order_relaxed);
  int err = weft__http_response_finish(&w, r);
  bool keep = !err && !w.close_after && !atomic_load(&s->shutting_down) &&
              weft__http_request_drain(r, DRAIN_MAX);
  weft__http_request_finish(r);
  atomic_fetch_add_explicit(&s->served, 1, memory_order_relaxed);
  return keep;
}

/* The TLS handshake runs on a duplicate of the socket's descriptor: a failed handshake
 * closes (and frees) the connection it was given, while shutdown may be reading the
 * listed hc->conn under the server's lock. The listed plain connection is swapped for the
 * TLS one under that lock only once the handshake has succeeded. */
static bool tls_handshake(struct http_conn *hc)
{
  weft_http_server *s = hc->srv;
  int64_t t = s->cfg.tls_handshake_timeout;
  int64_t deadline = t < 0 ? WEFT_NO_DEADLINE : weft_now() + t;
  int fd = fcntl(weft_conn_fd(hc->conn), F_DUPFD_CLOEXEC, 0);
  weft_conn *tls = fd >= 0 ? weft_conn_new(fd) : NULL; /* takes fd */
  if (!tls || weft_tls_server(&tls, s->cfg.tls, NULL, deadline) != 0)
    return false; /* a failed handshake closed tls; hc->conn is untouched */
  weft_mutex_lock(&s->lock);
  weft_conn *plain = hc->conn;
  hc->conn = tls;
  weft_mutex_unlock(&s->lock);
  weft_conn_close(plain); /* the socket lives on through the duplicate */
  return true;
}

/* After an error response, stop sending and discard what the client still sends for a
 * moment (at most DRAIN_MAX bytes, LINGER) before closing. Closing with unread bytes
 * makes the kernel answer with a reset, which may destroy the response in the client's
 * buffers before it reads it (Go's closeWriteAndWait does the same). */
static void linger_close(struct http_conn *hc)
{
  char sink[4096];
  shutdown(weft_conn_fd(hc->conn), SHUT_WR);
  int64_t deadline = weft_now() + LINGER;
  for (size_t total = 0; total < DRAIN_MAX;) {
    ssize_t n = weft_conn_read(hc->conn, sink, sizeof sink, NULL, deadline);
    if (n <= 0)
      break;
    total += (size_t)n;
  }
}

static void conn_main(void *arg)
{
  struct http_conn *hc = arg;
  weft_http_server *s = hc->srv;
  weft_http_request r;
  if (s->cfg.tls && !tls_handshake(hc))
    goto out;
  while (await_request(hc)) {
    if (!set_state(hc, CONN_ACTIVE))
      break;
    int status = read_head(hc, &r);
    if (status) {
      if (status > 0) {
        int64_t t = s->cfg.write_timeout;
        weft__http_send_error(hc->conn, status, t < 0 ? WEFT_NO_DEADLINE : weft_now() + t);
        linger_close(hc);
      }
      break;
    }
    if (!serve_request(hc, &r))
      break;
  }
out:
  conn_unlist(hc);
  conn_free(hc);
  weft_wg_done(&s->conn_wg);
}

/* ---- accepting ---- */

static void format_remote(char *out, size_t len, const struct sockaddr_storage *ss)
{
  char host[INET6_ADDRSTRLEN] = "?";
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *in = (const void *)ss;
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    snprintf(out, len, "%s:%u", host, ntohs(in->sin_port));
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const void *)ss;
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    snprintf(out, len, "[%s]:%u", host, ntohs(in6->sin6_port));
  } else {
    snprintf(out, len, "@");
  }
}

/* Refuse a connection past max_conns: one non-blocking write of a 503, then close. */
static void refuse(int fd)
{
  static const char msg[] = "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
                            "Content-Type: text/plain; charset=utf-8\r\n"
                            "Content-Length: 20\r\n\r\ntoo many connections";
  ssize_t n = write(fd, msg, sizeof msg - 1);
  (void)n;
  weft_close(fd);
}

/* Reserve a place for one more connection; false past max_conns or in shutdown. */
static bool reserve_conn(weft_http_server *s)
{
  weft_mutex_lock(&s->lock);
  bool ok = s->nconns < s->cfg.max_conns && !s->shutting_down;
  if (ok) {
    __atomic_store_n(&s->nconns, s->nconns + 1, __ATOMIC_RELAXED);
    weft_wg_add(&s->conn_wg, 1);
  }
  weft_mutex_unlock(&s->lock);
  return ok;
}

static void list_conn(struct http_conn *hc)
{
  weft_http_server *s = hc->srv;
  weft_mutex_lock(&s->lock);
  hc->next = s->conns;
  if (s->conns)
    s->conns->prev = hc;
  s->conns = hc;
  weft_mutex_unlock(&s->lock);
}

/* Undo reserve_conn for a connection that never started. */
static void release_conn(weft_http_server *s)
{
  weft_mutex_lock(&s->lock);
  __atomic_store_n(&s->nconns, s->nconns - 1, __ATOMIC_RELAXED);
  weft_mutex_unlock(&s->lock);
  weft_wg_done(&s->conn_wg);
}

static void start_conn(weft_http_server *s, int fd, const struct sockaddr_storage *ss)
{
  if (!reserve_conn(s)) {
    refuse(fd);
    return;
  }
  struct http_conn *hc = calloc(1, sizeof *hc);
  char *rbuf = malloc(READ_BUFFER), *wbuf = malloc(WRITE_BUFFER);
  weft_conn *c = hc && rbuf && wbuf ? weft_conn_new(fd) : NULL; /* takes fd */
  if (!c) {
    if (!hc || !rbuf || !wbuf)
      weft_close(fd);
    free(hc);
    free(rbuf);
    free(wbuf);
    release_conn(s);
    return;
  }
  *hc = (struct http_conn){.srv = s,
                           .conn = c,
                           .rbuf = rbuf,
                           .rsize = READ_BUFFER,
                           .wbuf = wbuf,
                           .wsize = WRITE_BUFFER,
                           .state = CONN_NEW};
  int64_t t = s->cfg.header_timeout;
  hc->header_deadline = t < 0 ? WEFT_NO_DEADLINE : weft_now() + t;
  format_remote(hc->remote, sizeof hc->remote, ss);
  list_conn(hc);
  if (weft_go_named(conn_main, hc, "http conn") != 0) {
    conn_unlist(hc);
    conn_free(hc);
    weft_wg_done(&s->conn_wg);
  }
}

static bool accept_error_is_transient(int err)
{
  return err == -ECONNABORTED || err == -EINTR || err == -EPROTO || err == -EPERM ||
         err == -ENETDOWN || err == -ENOPROTOOPT || err == -EHOSTDOWN || err == -ENONET ||
         err == -EHOSTUNREACH || err == -EOPNOTSUPP || err == -ENETUNREACH;
}

static bool accept_error_is_exhaustion(int err)
{
  return err == -EMFILE || err == -ENFILE || err == -ENOBUFS || err == -ENOMEM;
}

int weft_http_server_serve(weft_http_server *s, int fd)
{
  int64_t backoff = 0;
  for (;;) {
    struct sockaddr_storage ss = {0};
    socklen_t len = sizeof ss;
    int cfd = weft_accept_ctx(fd, (struct sockaddr *)&ss, &len, s->accept_ctx);
    if (cfd >= 0) {
      backoff = 0;
      start_conn(s, cfd, &ss);
      continue;
    }
    if (weft_ctx_err(s->accept_ctx))
      return 0;
    if (accept_error_is_exhaustion(cfd)) {
      /* Out of descriptors or memory: wait for connections to close rather than spin. */
      backoff = backoff ? (backoff * 2 > SECOND ? SECOND : backoff * 2) : 5000000;
      weft_sleep_ctx(s->accept_ctx, backoff);
      continue;
    }
    if (!accept_error_is_transient(cfd))
      return cfd;
  }
}

/* ---- shutdown ---- */

/* Shut down every listed connection: reading only for NEW and IDLE ones, or both ways
 * for all (force). */
static void cut_conns(weft_http_server *s, bool force)
{
  weft_mutex_lock(&s->lock);
  atomic_store(&s->shutting_down, true);
  for (struct http_conn *hc = s->conns; hc; hc = hc->next) {
    if (force)
      shutdown(weft_conn_fd(hc->conn), SHUT_RDWR);
    else if (hc->state == CONN_NEW || hc->state == CONN_IDLE)
      weft_conn_shutdown_read(hc->conn);
  }
  weft_mutex_unlock(&s->lock);
}

void weft_http_server_stop_accepting(weft_http_server *s)
{
  weft_ctx_cancel(s->accept_ctx);
}

int weft_http_server_shutdown(weft_http_server *s, int64_t deadline)
{
  weft_ctx_cancel(s->accept_ctx);
  cut_conns(s, false);
  int64_t pause = 1000000;
  while (weft_http_server_conns(s) > 0 && weft_now() < deadline) {
    int64_t left = deadline - weft_now();
    weft_sleep(pause < left ? pause : left);
    if (pause < 50000000)
      pause *= 2;
  }
  bool cut = weft_http_server_conns(s) > 0;
  if (cut) { /* sockets first: a handler woken by its context must find them shut */
    cut_conns(s, true);
    weft_ctx_cancel(s->force_ctx);
  }
  weft_wg_wait(&s->conn_wg);
  return cut ? -ETIMEDOUT : 0;
}
