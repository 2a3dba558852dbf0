/* test_tls.c: TLS connections over loopback TCP. A CA, a server certificate for localhost
 * and 127.0.0.1 and an expired one are made with the OpenSSL API at start-up in a
 * temporary directory. Covered: handshake and echo (several connections at once, sharing
 * configurations, P = 1..4), writev gathering, multi-megabyte transfers both ways over
 * small socket buffers (WANT_WRITE), clean and abrupt ends of stream, shutdown_read,
 * verification (untrusted CA, wrong name, wrong IP, expired, insecure), ALPN, handshake
 * timeout and cancellation, read cancellation and deadlines, garbage from either side, a
 * peer hanging up during the handshake, configuration errors and misuse. */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "coro_check.h"
#include "weft/tls.h"

#define IO_DEADLINE() (weft_now() + MS(20000)) /* a hang fails instead of hanging */
#define LATE          MS(500)

/* ---- certificates ---- */

static char dir[64];
static char ca_pem[128], server_pem[128], server_key[128], expired_pem[128];

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
  X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
  if (!ext || !X509_add_ext(x, ext, -1))
    abort();
  X509_EXTENSION_free(ext);
}

/* A certificate for key named cn, valid from now + from_s to now + to_s, signed by
 * issuer (NULL: self-signed, a CA). Leaves (issuer set) name localhost and 127.0.0.1. */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key,
                       long from_s, long to_s)
{
  static long serial = 1;
  X509 *x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
  X509_gmtime_adj(X509_getm_notBefore(x), from_s);
  X509_gmtime_adj(X509_getm_notAfter(x), to_s);
  X509_set_pubkey(x, key);
  X509_NAME *name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
  X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
  add_ext(x, issuer ? issuer : x, NID_subject_key_identifier, "hash");
  if (!issuer) {
    add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_ext(x, issuer, NID_basic_constraints, "CA:FALSE");
    add_ext(x, issuer, NID_key_usage, "critical,digitalSignature");
    add_ext(x, issuer, NID_ext_key_usage, "serverAuth");
    add_ext(x, issuer, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
    add_ext(x, issuer, NID_authority_key_identifier, "keyid:always");
  }
  if (!X509_sign(x, issuer ? issuer_key : key, EVP_sha256()))
    abort();
  return x;
}

static void write_pem(const char *path, X509 *x, EVP_PKEY *key)
{
  FILE *f = fopen(path, "w");
  if (!f || (x && !PEM_write_X509(f, x)) ||
      (key && !PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL)) || fclose(f))
    abort();
}

static void make_certs(void)
{
  strcpy(dir, "/tmp/weft-tls-XXXXXX");
  if (!mkdtemp(dir))
    abort();
  snprintf(ca_pem, sizeof ca_pem, "%s/ca.pem", dir);
  snprintf(server_pem, sizeof server_pem, "%s/server.pem", dir);
  snprintf(server_key, sizeof server_key, "%s/server.key", dir);
  snprintf(expired_pem, sizeof expired_pem, "%s/expired.pem", dir);
  EVP_PKEY *ca_key = EVP_EC_gen("P-256"), *key = EVP_EC_gen("P-256");
  if (!ca_key || !key)
    abort();
  X509 *ca = make_cert(ca_key, "weft test CA", NULL, NULL, -3600, 86400);
  X509 *leaf = make_cert(key, "localhost", ca, ca_key, -3600, 86400);
  X509 *expired = make_cert(key, "localhost", ca, ca_key, -7200, -3600);
  write_pem(ca_pem, ca, NULL);
  write_pem(server_pem, leaf, NULL);
  write_pem(expired_pem, expired, NULL);
  write_pem(server_key, NULL, key);
  X509_free(ca);
  X509_free(leaf);
  X509_free(expired);
  EVP_PKEY_free(ca_key);
  EVP_PKEY_free(key);
}

static void remove_certs(void)
{
  unlink(ca_pem);
  unlink(server_pem);
  unlink(server_key);
  unlink(expired_pem);
  rmdir(dir);
}

static weft_tls_config *config(int flags, const char *cert, const char *ca, const char *alpn)
{
  weft_tls_options o = {.flags = flags, .ca_file = ca, .alpn = alpn};
  if (flags & WEFT_TLS_SERVER)
    o.cert_file = cert, o.key_file = server_key;
  weft_error *err = NULL;
  weft_tls_config *cfg = weft_tls_config_new(&o, &err);
  if (!cfg) {
    char msg[512];
    weft_error_format(err, msg, sizeof msg);
    fprintf(stderr, "weft_tls_config_new: %s\n", msg);
    weft_error_release(err);
  }
  return cfg;
}

/* ---- a loopback server ---- */

enum srv_mode {
  SRV_ECHO,        /* TLS; echo until end of stream */
  SRV_BULK,        /* TLS; read BULK bytes, check them, send BULK bytes, wait for the end */
  SRV_HELLO_CLOSE, /* TLS; send "hello" and close (close_notify) */
  SRV_HELLO_FIN,   /* TLS; send "hello" and end the stream without close_notify */
  SRV_LATE,        /* TLS; after LATE send "late", then wait for the end */
  SRV_STALL,       /* TLS; read nothing for LATE, then send "ok" and wait for the end */
  SRV_HANDSHAKE,   /* TLS; count the handshake, then wait for the end */
  SRV_SILENT,      /* plain; never write, read until the end */
  SRV_GARBAGE,     /* plain; answer with garbage, read until the end */
  SRV_HANGUP,      /* plain; close at once */
};

struct server {
  enum srv_mode mode;
  weft_tls_config *cfg;
  int nconn; /* connections to accept */
  int lfd;
  char addr[64];
  atomic_int hs_ok, hs_err; /* server handshakes that succeeded, failed */
  atomic_int last_err;      /* the last failed handshake's result */
  weft_wg wg;
};

struct handler {
  struct server *s;
  weft_conn *c;
};

static size_t bulk_size(void)
{
  return TSAN ? (size_t)2 << 20 : (size_t)4 << 20;
}

static unsigned char pattern(size_t i, unsigned salt)
{
  return (unsigned char)((i * 131u) ^ (i >> 11) ^ salt);
}

/* Read until end of stream or an error, discarding. */
static void drain(weft_conn *c)
{
  char buf[4096];
  while (weft_conn_read(c, buf, sizeof buf, NULL, IO_DEADLINE()) > 0) {
  }
}

/* Read exactly len bytes; returns len, or what ended the stream first (0 or an error;
 * -EIO for an end in the middle). */
static ssize_t read_full(weft_conn *c, void *buf, size_t len, weft_ctx *ctx, int64_t dl)
{
  size_t got = 0;
  while (got < len) {
    ssize_t n = weft_conn_read(c, (char *)buf + got, len - got, ctx, dl);
    if (n <= 0)
      return n < 0 ? n : got ? -EIO : 0;
    got += (size_t)n;
  }
  return (ssize_t)got;
}

static void echo(weft_conn *c)
{
  char buf[8192];
  ssize_t n;
  while ((n = weft_conn_read(c, buf, sizeof buf, NULL, IO_DEADLINE())) > 0)
    CHECK_EQ(weft_conn_write(c, buf, (size_t)n, NULL, IO_DEADLINE()), n);
  CHECK_EQ(n, 0);
}

/* Receive bulk_size() bytes of pattern salt, checking them in chunks of odd sizes. */
static void bulk_recv(weft_conn *c, unsigned salt)
{
  size_t len = bulk_size(), got = 0, bad = 0;
  unsigned char *buf = malloc(65536);
  while (got < len) {
    size_t want = len - got < 65536 ? len - got : 65536;
    ssize_t n = weft_conn_read(c, buf, want > 7 ? want - got % 7 : want, NULL, IO_DEADLINE());
    if (n <= 0) {
      CHECK_EQ(n, 1);
      break;
    }
    for (ssize_t i = 0; i < n; i++)
      bad += buf[i] != pattern(got + (size_t)i, salt);
    got += (size_t)n;
  }
  CHECK_EQ(bad, 0);
  free(buf);
}

/* Send bulk_size() bytes of pattern salt: writev with a mix of small and large buffers. */
static void bulk_send(weft_conn *c, unsigned salt)
{
  size_t len = bulk_size();
  unsigned char *buf = malloc(len);
  for (size_t i = 0; i < len; i++)
    buf[i] = pattern(i, salt);
  size_t sizes[] = {1, 0, 700, 300000, 5, 1023, 1024, 70001};
  size_t off = 0, k = 0;
  while (off < len) {
    struct iovec iov[8];
    size_t total = 0;
    int n = 0;
    for (; n < 8 && off + total < len; n++, k++) {
      size_t want = sizes[k % 8], left = len - off - total;
      iov[n] = (struct iovec){buf + off + total, want < left ? want : left};
      total += iov[n].iov_len;
    }
    ssize_t w = weft_conn_writev(c, iov, n, NULL, IO_DEADLINE());
    CHECK_EQ(w, total);
    if (w != (ssize_t)total)
      break;
    off += total;
  }
  free(buf);
}

static void small_buffers(int fd)
{
  int sz = 65536;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
}

static void serve_tls(struct server *s, weft_conn *c)
{
  int rc = weft_tls_server(&c, s->cfg, NULL, IO_DEADLINE());
  if (rc) {
    CHECK(c == NULL);
    atomic_store(&s->last_err, rc);
    atomic_fetch_add(&s->hs_err, 1);
    return;
  }
  atomic_fetch_add(&s->hs_ok, 1);
  CHECK(weft_conn_is_tls(c));
  switch (s->mode) {
  case SRV_ECHO:
    echo(c);
    break;
  case SRV_BULK:
    bulk_recv(c, 1);
    bulk_send(c, 2);
    drain(c);
    break;
  case SRV_HELLO_CLOSE:
    CHECK_EQ(weft_conn_write(c, "hello", 5, NULL, IO_DEADLINE()), 5);
    break;
  case SRV_HELLO_FIN:
    CHECK_EQ(weft_conn_write(c, "hello", 5, NULL, IO_DEADLINE()), 5);
    CHECK_EQ(shutdown(weft_conn_fd(c), SHUT_WR), 0);
    drain(c);
    break;
  case SRV_STALL:
    weft_sleep(LATE);
    CHECK_EQ(weft_conn_write(c, "ok", 2, NULL, IO_DEADLINE()), 2);
    drain(c);
    break;
  case SRV_LATE:
    weft_sleep(LATE);
    CHECK_EQ(weft_conn_write(c, "late", 4, NULL, IO_DEADLINE()), 4);
    drain(c);
    break;
  default:
    drain(c);
    break;
  }
  weft_conn_close(c);
}

static void handle(void *arg)
{
  struct handler *h = arg;
  struct server *s = h->s;
  weft_conn *c = h->c;
  free(h);
  if (s->mode == SRV_GARBAGE)
    CHECK_EQ(weft_conn_write(c, "HTTP/1.0 400 Nope\r\n\r\n", 21, NULL, IO_DEADLINE()), 21);
  if (s->mode == SRV_SILENT || s->mode == SRV_GARBAGE)
    drain(c);
  if (s->mode == SRV_HANGUP || s->mode == SRV_SILENT || s->mode == SRV_GARBAGE)
    weft_conn_close(c);
  else
    serve_tls(s, c);
  weft_wg_done(&s->wg);
}

static void acceptor(void *arg)
{
  struct server *s = arg;
  for (int i = 0; i < s->nconn; i++) {
    int fd = weft_accept(s->lfd, NULL, NULL, IO_DEADLINE());
    CHECK(fd >= 0);
    if (fd < 0) {
      weft_wg_add(&s->wg, -(s->nconn - i));
      break;
    }
    if (s->mode == SRV_BULK || s->mode == SRV_STALL)
      small_buffers(fd);
    struct handler *h = malloc(sizeof *h);
    *h = (struct handler){.s = s, .c = weft_conn_new(fd)};
    CHECK(h->c != NULL);
    CHECK_EQ(weft_go(handle, h), 0);
  }
  weft_wg_done(&s->wg);
}

/* Start s (mode, cfg, nconn set) on a loopback port. Returns 0 or -1. */
static int server_start(struct server *s)
{
  atomic_store(&s->hs_ok, 0);
  atomic_store(&s->hs_err, 0);
  atomic_store(&s->last_err, 0);
  weft_wg_init(&s->wg);
  s->lfd = weft_listen("tcp", "127.0.0.1:0", 0);
  CHECK(s->lfd >= 0);
  if (s->lfd < 0)
    return -1;
  snprintf(s->addr, sizeof s->addr, "127.0.0.1:%d", weft_local_port(s->lfd));
  weft_wg_add(&s->wg, s->nconn + 1);
  CHECK_EQ(weft_go(acceptor, s), 0);
  return 0;
}

static void server_wait(struct server *s)
{
  weft_wg_wait(&s->wg);
  weft_close(s->lfd);
}

/* A plain connection to s. */
static weft_conn *dial(struct server *s)
{
  int fd = weft_dial(NULL, "tcp", s->addr, IO_DEADLINE());
  CHECK(fd >= 0);
  if (fd < 0)
    return NULL;
  if (s->mode == SRV_BULK || s->mode == SRV_STALL)
    small_buffers(fd);
  return weft_conn_new(fd);
}

/* A client handshake with s for host: returns weft_tls_client's result; *out the
 * connection on success. */
static int connect_tls(struct server *s, weft_tls_config *cfg, const char *host, weft_ctx *ctx,
                       int64_t deadline, weft_conn **out)
{
  weft_conn *c = dial(s);
  if (!c)
    return -1;
  int rc = weft_tls_client(&c, cfg, host, ctx, deadline);
  CHECK(rc == 0 ? c != NULL && weft_conn_is_tls(c) : c == NULL);
  *out = c;
  return rc;
}

/* ---- echo ---- */

enum { ECHO_CONNS = 4 };

struct echo_client {
  struct server *s;
  weft_tls_config *cfg;
  int id;
  weft_wg *wg;
};

static void echo_client(void *arg)
{
  struct echo_client *e = arg;
  weft_conn *c = NULL;
  CHECK_EQ(
      connect_tls(e->s, e->cfg, e->id % 2 ? "localhost" : "127.0.0.1", NULL, IO_DEADLINE(), &c),
      0);
  if (c) {
    for (int round = 0; round < 20; round++) {
      char out[3000], in[3000];
      size_t len = 1 + (size_t)(round * 149 + e->id) % sizeof out;
      for (size_t i = 0; i < len; i++)
        out[i] = (char)pattern(i, (unsigned)(round + e->id));
      /* two buffers: gathered into one record, then written as they are */
      size_t half = len / 2;
      struct iovec iov[2] = {{out, half}, {out + half, len - half}};
      CHECK_EQ(weft_conn_writev(c, iov, 2, NULL, IO_DEADLINE()), len);
      CHECK_EQ(read_full(c, in, len, NULL, IO_DEADLINE()), len);
      CHECK(memcmp(in, out, len) == 0);
    }
    CHECK_EQ(weft_conn_write(c, "", 0, NULL, IO_DEADLINE()), 0);
    weft_conn_close(c);
  }
  weft_wg_done(e->wg);
}

static int echo_main(void *arg)
{
  (void)arg;
  struct server s = {.mode = SRV_ECHO, .nconn = ECHO_CONNS};
  s.cfg = config(WEFT_TLS_SERVER, server_pem, NULL, NULL);
  weft_tls_config *cfg = config(0, NULL, ca_pem, NULL);
  if (!s.cfg || !cfg || server_start(&s))
    return -1;
  weft_wg wg;
  weft_wg_init(&wg);
  weft_wg_add(&wg, ECHO_CONNS);
  struct echo_client clients[ECHO_CONNS];
  for (int i = 0; i < ECHO_CONNS; i++) {
    clients[i] = (struct echo_client){.s = &s, .cfg = cfg, .id = i, .wg = &wg};
    CHECK_EQ(weft_go(echo_client, &clients[i]), 0);
  }
  weft_wg_wait(&wg);
  weft_tls_config_free(cfg);
  server_wait(&s);
  weft_tls_config_free(s.cfg);
  CHECK_EQ(atomic_load(&s.hs_ok), ECHO_CONNS);
  return checks_result();
}

static void test_echo(void **state)
{
  (void)state;
  checks_reset();
  run_weft_p1to4(echo_main, NULL);
}

/* ---- large transfers ---- */

static int bulk_main(void *arg)
{
  (void)arg;
  struct server s = {.mode = SRV_BULK, .nconn = 1};
  s.cfg = config(WEFT_TLS_SERVER, server_pem, NULL, NULL);
  weft_tls_config *cfg = config(0, NULL, ca_pem, NULL);
  if (!s.cfg || !cfg || server_start(&s))
    return -1;
  weft_conn *c = NULL;
  CHECK_EQ(connect_tls(&s, cfg, "localhost", NULL, IO_DEADLINE(), &c), 0);
  /* Both configurations go while the connections (and perhaps the server's handshake)
   * go on: they keep what they need. */
  weft_tls_config_free(s.cfg);
  weft_tls_config_free(cfg);
  if (c) {
    bulk_send(c, 1);
    bulk_recv(c, 2);
    weft_conn_close(c);
  }
  server_wait(&s);
  return checks_result();
}

static void test_large_transfer(void **state)
{
  (void)state;
  checks_reset();
  run_weft_p1to4(bulk_main, NULL);
}

/* ---- ends of stream ---- */

struct shut {
  weft_conn *c;
  weft_wg wg;
};

static void shut_later(void *arg)
{
  struct shut *sh = arg;
  weft_sleep(MS(50));
  CHECK_EQ(weft_conn_shutdown_read(sh->c), 0);
  weft_wg_done(&sh->wg);
}

/* "hello", then 0 and 0 again, whether the server ends with close_notify or without. */
static int eof_main(void *arg)
{
  (void)arg;
  weft_tls_config *cfg = config(0, NULL, ca_pem, NULL);
  const enum srv_mode modes[] = {SRV_HELLO_CLOSE, SRV_HELLO_FIN};
  for (int i = 0; i < 2; i++) {
    struct server s = {.mode = modes[i], .nconn = 1};
    s.cfg = config(WEFT_TLS_SERVER, server_pem, NULL, NULL);
    if (!s.cfg || !cfg || server_start(&s))
      return -1;
    weft_conn *c = NULL;
    char buf[16];
    CHECK_EQ(connect_tls(&s, cfg, "localhost", NULL, IO_DEADLINE(), &c), 0);
    if (c) {
      CHECK_EQ(read_full(c, buf, 5, NULL, IO_DEADLINE()), 5);
      CHECK(memcmp(buf, "hello", 5) == 0);
      CHECK_EQ(weft_conn_read(c, buf, sizeof buf, NULL, IO_DEADLINE()), 0);
      CHECK_EQ(weft_conn_read(c, buf, sizeof buf, NULL, IO_DEADLINE()), 0);
      weft_conn_close(c);
    }
    server_wait(&s);
    weft_tls_config_free(s.cfg);
  }
  weft_tls_config_free(cfg);
  return checks_result();
}

/* weft_conn_shutdown_read from another coroutine ends a parked TLS read with 0. */
static int shutdown_read_main(void *arg)
{
  (void)arg;
  struct server s = {.mode = SRV_HANDSHAKE, .nconn = 1};
  s.cfg = config(WEFT_TLS_SERVER, server_pem, NULL, NULL);
  weft_tls_config *cfg = config(0, NULL, ca_pem, NULL);
  if (!s.cfg || !cfg || server_start(&s))
    return -1;
  struct shut sh = {0};
  char buf[16];
  CHECK_EQ(connect_tls(&s, cfg, "localhost", NULL, IO_DEADLINE(), &sh.c), 0);
  if (sh.c) {
    weft_wg_init(&sh.wg);
    weft_wg_add(&sh.wg, 1);
    CHECK_EQ(weft_go(shut_later, &sh), 0);
    int64_t t0 = weft_now();
    CHECK_EQ(weft_conn_read(sh.c, buf, sizeof buf, NULL, IO_DEADLINE()), 0);
    CHECK(weft_now() - t0 >= MS(40));
    weft_wg_wait(&sh.wg);
    weft_conn_close(sh.c);
  }
  server_wait(&s);
  weft_tls_config_free(s.cfg);
  weft_tls_config_free(cfg);
  return checks_result();
}

static void test_end_of_stream(void **state)
{
  (void)state;
  checks_reset();
  run_weft_p1to4(eof_main, NULL);
  run_weft_p1to4(shutdown_read_main, NULL);
}

/* ---- verification ---- */

struct verify_case {
  const char *server_cert;
  const char *ca_file; /* NULL: the system's trust store */
  int flags;
  const char *host;
  int want;
};

static int verify_main(void *arg)
{
  const struct verify_case *v = arg;
  struct server s = {.mode = SRV_HANDSHAKE, .nconn = 1};
  s.cfg = config(WEFT_TLS_SERVER, v->server_cert, NULL, NULL);
  weft_tls_config *cfg = config(v->flags, NULL, v->ca_file, NULL);
  if (!s.cfg || !cfg || server_start(&s))
    return -1;
  weft_conn *c = NULL;
  int rc = connect_tls(&s, cfg, v->host, NULL, IO_DEADLINE(), &c);
  if (rc != v->want)
    fprintf(stderr, "host %s: %s, want %s\n", v->host ? v->host : "(null)", weft_errname(rc),
            weft_errname(v->want));
  CHECK_EQ(rc, v->want);
  if (c) {
    CHECK_EQ(weft_conn_write(c, "x", 1, NULL, IO_DEADLINE()), 1);
    weft_conn_close(c);
  }
  server_wait(&s);
  /* a client that rejects the server's certificate says so with an alert (the reset
   * that its close may cause, with our flight unread, comes after the alert) */
  CHECK_EQ(atomic_load(&s.hs_ok), v->want == 0);
  int last = atomic_load(&s.last_err);
  if (v->want && last != -ECONNRESET)
    CHECK_EQ(last, -WEFT_ETLS);
  weft_tls_config_free(s.cfg);
  weft_tls_config_free(cfg);
  return checks_result();
}

static void test_verification(void **state)
{
  (void)state;
  const struct verify_case cases[] = {
      {server_pem, ca_pem, 0, "localhost", 0},
      {server_pem, ca_pem, 0, "127.0.0.1", 0},
      {server_pem, ca_pem, 0, "LOCALHOST", 0},
      {server_pem, NULL, 0, "localhost", -WEFT_ECERT},     /* untrusted CA */
      {server_pem, ca_pem, 0, "example.com", -WEFT_ECERT}, /* wrong name */
      {server_pem, ca_pem, 0, "127.0.0.2", -WEFT_ECERT},   /* wrong address */
      {server_pem, ca_pem, 0, "::1", -WEFT_ECERT},         /* wrong address */
      {expired_pem, ca_pem, 0, "localhost", -WEFT_ECERT},  /* expired */
      {server_pem, NULL, WEFT_TLS_INSECURE, "example.com", 0},
      {expired_pem, NULL, WEFT_TLS_INSECURE, "127.0.0.2", 0},
      {server_pem, NULL, WEFT_TLS_INSECURE, NULL, 0},
  };
  checks_reset();
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    assert_int_equal(run_weft(1 + (int)(i % 4), verify_main, (void *)&cases[i]), 0);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- ALPN ---- */

static int alpn_main(void *arg)
{
  (void)arg;
  struct server s = {.mode = SRV_HANDSHAKE, .nconn = 3};
  s.cfg = config(WEFT_TLS_SERVER, server_pem, NULL, "http/1.1,h2");
  weft_tls_config *both = config(0, NULL, ca_pem, "h2,http/1.1");
  weft_tls_config *other = config(0, NULL, ca_pem, "spdy/1");
  weft_tls_config *none = config(0, NULL, ca_pem, NULL);
  if (!s.cfg || !both || !other || !none || server_start(&s))
    return -1;
  weft_tls_config *cfgs[] = {both, other, none};
  const char *want[] = {"http/1.1", "", ""};
  for (int i = 0; i < 3; i++) {
    weft_conn *c = NULL;
    CHECK_EQ(connect_tls(&s, cfgs[i], "localhost", NULL, IO_DEADLINE(), &c), 0);
    if (c) {
      CHECK(strcmp(weft_tls_alpn(c), want[i]) == 0);
      weft_conn_close(c);
    }
    weft_tls_config_free(cfgs[i]);
  }
  server_wait(&s);
  CHECK_EQ(atomic_load(&s.hs_ok), 3);
  weft_tls_config_free(s.cfg);
  return checks_result();
}

static void test_alpn(void **state)
{
  (void)state;
  checks_reset();
  assert_int_equal(run_weft(2, alpn_main, NULL), 0);
}

/* ---- timeouts and cancellation ---- */

struct canceller {
  weft_ctx *ctx;
  int64_t after;
  weft_wg wg;
};

static void cancel_later(void *arg)
{
  struct canceller *k = arg;
  weft_sleep(k->after);
  weft_ctx_cancel(k->ctx);
  weft_wg_done(&k->wg);
}

static void cancel_start(struct canceller *k, int64_t after)
{
  k->ctx = weft_ctx_with_cancel(NULL);
  k->after = after;
  weft_wg_init(&k->wg);
  weft_wg_add(&k->wg, 1);
  CHECK_EQ(weft_go(cancel_later, k), 0);
}

static void cancel_end(struct canceller *k)
{
  weft_wg_wait(&k->wg);
  weft_ctx_release(k->ctx);
}

/* A server that never speaks: the handshake ends at the deadline, or at cancellation. */
static int handshake_wait_main(void *arg)
{
  (void)arg;
  struct server s = {.mode = SRV_SILENT, .nconn = 3};
  weft_tls_config *cfg = config(0, NULL, ca_pem, NULL);
  if (!cfg || server_start(&s))
    return -1;
  weft_conn *c = NULL;
  int64_t t0 = weft_now();
  CHECK_EQ(connect_tls(&s, cfg, "localhost", NULL, t0 + MS(100), &c), -ETIMEDOUT);
  CHECK(weft_now() - t0 >= MS(100) && weft_now() - t0 < MS(5000));
  struct canceller k;
  cancel_start(&k, MS(50));
  t0 = weft_now();
  CHECK_EQ(connect_tls(&s, cfg, "localhost", k.ctx, IO_DEADLINE(), &c), -ECANCELED);
  CHECK(weft_now() - t0 >= MS(40) && weft_now() - t0 < MS(5000));
  /* already cancelled: fails at once, before a byte is sent */
  CHECK_EQ(connect_tls(&s, cfg, "localhost", k.ctx, IO_DEADLINE(), &c), -ECANCELED);
  cancel_end(&k);
  server_wait(&s);
  weft_tls_config_free(cfg);
  return checks_result();
}

/* Reads on an established connection: a deadline and a cancellation end them without
 * harming the connection. */
static int read_wait_main(void *arg)
{
  (void)arg;
  struct server s = {.mode = SRV_LATE, .nconn = 1};
  s.cfg = config(WEFT_TLS_SERVER, server_pem, NULL, NULL);
  weft_tls_config *cfg = config(0, NULL, ca_pem, NULL);
  if (!s.cfg || !cfg || server_start(&s))
    return -1;
  weft_conn *c = NULL;
  char buf[8];
  CHECK_EQ(connect_tls(&s, cfg, "localhost", NULL, IO_DEADLINE(), &c), 0);
  if (c) {
    CHECK_EQ(weft_conn_read(c, buf, sizeof buf, NULL, weft_now() + MS(20)), -ETIMEDOUT);
    struct canceller k;
    cancel_start(&k, MS(20));
    CHECK_EQ(weft_conn_read(c, buf, sizeof buf, k.ctx, IO_DEADLINE()), -ECANCELED);
    CHECK_EQ(weft_conn_read(c, buf, sizeof buf, k.ctx, IO_DEADLINE()), -ECANCELED);
    CHECK_EQ(weft_conn_write(c, "x", 1, k.ctx, IO_DEADLINE()), -ECANCELED);
    cancel_end(&k);
    CHECK_EQ(read_full(c, buf, 4, NULL, IO_DEADLINE()), 4);
    CHECK(memcmp(buf, "late", 4) == 0);
    weft_conn_close(c);
  }
  server_wait(&s);
  weft_tls_config_free(s.cfg);
  weft_tls_config_free(cfg);
  return checks_result();
}

/* A write ended by its deadline part-way: every later write fails the same way (the
 * stream cannot go on), reads go on. */
static int write_wait_main(void *arg)
{
  (void)arg;
  struct server s = {.mode = SRV_STALL, .nconn = 1};
  s.cfg = config(WEFT_TLS_SERVER, server_pem, NULL, NULL);
  weft_tls_config *cfg = config(0, NULL, ca_pem, NULL);
  if (!s.cfg || !cfg || server_start(&s))
    return -1;
  weft_conn *c = NULL;
  CHECK_EQ(connect_tls(&s, cfg, "localhost", NULL, IO_DEADLINE(), &c), 0);
  if (c) {
    size_t len = (size_t)8 << 20;
    char *big = calloc(1, len), buf[2];
    CHECK_EQ(weft_conn_write(c, big, len, NULL, weft_now() + MS(50)), -ETIMEDOUT);
    CHECK_EQ(weft_conn_write(c, "x", 1, NULL, IO_DEADLINE()), -ETIMEDOUT);
    CHECK_EQ(read_full(c, buf, 2, NULL, IO_DEADLINE()), 2);
    CHECK(memcmp(buf, "ok", 2) == 0);
    weft_conn_close(c);
    free(big);
  }
  server_wait(&s);
  weft_tls_config_free(s.cfg);
  weft_tls_config_free(cfg);
  return checks_result();
}

static void test_timeouts_and_cancellation(void **state)
{
  (void)state;
  checks_reset();
  run_weft_p1to4(handshake_wait_main, NULL);
  run_weft_p1to4(read_wait_main, NULL);
  run_weft_p1to4(write_wait_main, NULL);
}

/* ---- broken peers ---- */

/* A plain server answering garbage, and one hanging up. */
static int bad_server_main(void *arg)
{
  (void)arg;
  weft_tls_config *cfg = config(0, NULL, ca_pem, NULL);
  struct server garbage = {.mode = SRV_GARBAGE, .nconn = 1};
  if (!cfg || server_start(&garbage))
    return -1;
  weft_conn *c = NULL;
  CHECK_EQ(connect_tls(&garbage, cfg, "localhost", NULL, IO_DEADLINE(), &c), -WEFT_ETLS);
  server_wait(&garbage);
  struct server hangup = {.mode = SRV_HANGUP, .nconn = 1};
  if (server_start(&hangup))
    return -1;
  int rc = connect_tls(&hangup, cfg, "localhost", NULL, IO_DEADLINE(), &c);
  if (rc != -ECONNRESET && rc != -EPIPE)
    CHECK_EQ(rc, -ECONNRESET);
  server_wait(&hangup);
  weft_tls_config_free(cfg);
  return checks_result();
}

/* A plain client sending an HTTP request to a TLS server. */
static int bad_client_main(void *arg)
{
  (void)arg;
  struct server s = {.mode = SRV_HANDSHAKE, .nconn = 1};
  s.cfg = config(WEFT_TLS_SERVER, server_pem, NULL, NULL);
  if (!s.cfg || server_start(&s))
    return -1;
  weft_conn *c = dial(&s);
  if (c) {
    const char req[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    CHECK_EQ(weft_conn_write(c, req, sizeof req - 1, NULL, IO_DEADLINE()), sizeof req - 1);
    drain(c); /* the server's alert, then the end */
    weft_conn_close(c);
  }
  server_wait(&s);
  CHECK_EQ(atomic_load(&s.hs_err), 1);
  CHECK_EQ(atomic_load(&s.last_err), -WEFT_ETLS);
  weft_tls_config_free(s.cfg);
  return checks_result();
}

static void test_broken_peers(void **state)
{
  (void)state;
  checks_reset();
  run_weft_p1to4(bad_server_main, NULL);
  run_weft_p1to4(bad_client_main, NULL);
}

/* ---- configuration errors and misuse ---- */

static void expect_config_error(const weft_tls_options *o, int code, const char *needle)
{
  weft_error *err = NULL;
  assert_null(weft_tls_config_new(o, &err));
  assert_non_null(err);
  assert_int_equal(weft_error_code(err), code);
  char msg[512];
  weft_error_format(err, msg, sizeof msg);
  if (needle && !strstr(msg, needle))
    fail_msg("\"%s\" does not mention \"%s\"", msg, needle);
  weft_error_release(err);
  assert_null(weft_tls_config_new(o, NULL)); /* err is optional */
}

static void test_config_errors(void **state)
{
  (void)state;
  const int srv = WEFT_TLS_SERVER;
  char missing[160];
  snprintf(missing, sizeof missing, "%s/missing.pem", dir);
  expect_config_error(NULL, -EINVAL, NULL);
  expect_config_error(&(weft_tls_options){.flags = 1 << 7}, -EINVAL, NULL);
  expect_config_error(&(weft_tls_options){.flags = srv, .cert_file = server_pem}, -EINVAL,
                      "key_file");
  expect_config_error(
      &(weft_tls_options){.flags = srv, .cert_file = missing, .key_file = server_key},
      -WEFT_ETLS, missing);
  expect_config_error(
      &(weft_tls_options){.flags = srv, .cert_file = server_pem, .key_file = ca_pem},
      -WEFT_ETLS, ca_pem); /* a certificate is no key */
  expect_config_error(
      &(weft_tls_options){.flags = srv, .cert_file = ca_pem, .key_file = server_key},
      -WEFT_ETLS, "mismatch");
  expect_config_error(&(weft_tls_options){.ca_file = missing}, -WEFT_ETLS, missing);
  expect_config_error(&(weft_tls_options){.ca_file = server_key}, -WEFT_ETLS, server_key);
  expect_config_error(&(weft_tls_options){.cert_file = server_pem}, -EINVAL, NULL);
  expect_config_error(&(weft_tls_options){.alpn = "h2,,http/1.1"}, -EINVAL, "ALPN");
  expect_config_error(&(weft_tls_options){.alpn = ""}, -EINVAL, "ALPN");
  char long_name[300];
  memset(long_name, 'a', sizeof long_name - 1);
  long_name[sizeof long_name - 1] = '\0';
  expect_config_error(&(weft_tls_options){.alpn = long_name}, -EINVAL, "ALPN");

  weft_error *err = (weft_error *)1;
  weft_tls_config *cfg = weft_tls_config_new(&(weft_tls_options){.ca_file = ca_pem}, &err);
  assert_non_null(cfg);
  assert_null(err);
  weft_tls_config_free(cfg);
  weft_tls_config_free(NULL);
}

static int misuse_main(void *arg)
{
  (void)arg;
  weft_tls_config *client = config(0, NULL, ca_pem, NULL);
  weft_tls_config *server = config(WEFT_TLS_SERVER, server_pem, NULL, NULL);
  if (!client || !server)
    return -1;
  weft_conn *c = NULL;
  CHECK_EQ(weft_tls_client(NULL, client, "localhost", NULL, IO_DEADLINE()), -EINVAL);
  CHECK_EQ(weft_tls_client(&c, client, "localhost", NULL, IO_DEADLINE()), -EINVAL);
  /* every other failure closes *c */
  const struct {
    weft_tls_config *cfg;
    const char *host;
    bool server;
  } cases[] = {
      {NULL, "localhost", false}, {server, "localhost", false}, {client, NULL, false},
      {client, "", false},        {client, NULL, true},         {NULL, NULL, true},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int sv[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    c = weft_conn_new(sv[0]);
    int rc = cases[i].server
                 ? weft_tls_server(&c, cases[i].cfg, NULL, IO_DEADLINE())
                 : weft_tls_client(&c, cases[i].cfg, cases[i].host, NULL, IO_DEADLINE());
    CHECK_EQ(rc, -EINVAL);
    CHECK(c == NULL);
    char b;
    CHECK_EQ(read(sv[1], &b, 1), 0); /* closed, and nothing was sent */
    close(sv[1]);
  }
  CHECK(strcmp(weft_tls_alpn(NULL), "") == 0);
  weft_tls_config_free(client);
  weft_tls_config_free(server);
  return checks_result();
}

static void test_misuse(void **state)
{
  (void)state;
  checks_reset();
  assert_int_equal(run_weft(1, misuse_main, NULL), 0);
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_config_errors), cmocka_unit_test(test_misuse),
      cmocka_unit_test(test_echo),          cmocka_unit_test(test_large_transfer),
      cmocka_unit_test(test_end_of_stream), cmocka_unit_test(test_verification),
      cmocka_unit_test(test_alpn),          cmocka_unit_test(test_timeouts_and_cancellation),
      cmocka_unit_test(test_broken_peers),
  };
  make_certs();
  int rc = weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
  remove_certs();
  return rc;
}
