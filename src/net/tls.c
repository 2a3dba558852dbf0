/* tls.c: TLS connections (weft/tls.h) over OpenSSL 3.
 *
 * A TLS connection is a plain weft_conn whose ops and state were replaced in place by
 * weft_tls_client/weft_tls_server: state is a struct tls_conn holding the SSL object, which
 * reads and writes the socket itself (SSL_set_fd). The socket is non-blocking; when OpenSSL
 * wants the socket (SSL_ERROR_WANT_READ / WANT_WRITE) the coroutine parks on the poller
 * with weft__wait_fd_ctx and then repeats the same call, as OpenSSL requires.
 *
 * Threads. An SSL_CTX (a weft_tls_config) is immutable once made and shared freely: OpenSSL
 * 3 locks and reference counts it internally, and each SSL holds its own reference, so a
 * config may be freed while its connections live on. An SSL object is used by one
 * coroutine at a time (net.h), but that coroutine may resume on another thread after any
 * park. OpenSSL's error queue and errno are per thread, so every SSL call here runs as
 *   ERR_clear_error(); errno = 0; call; classify (tls_check, which clears the queue again)
 * with no park in between: nothing is read from the queue across a park, and no error is
 * left behind in a queue for an unrelated SSL call on that thread to trip over.
 *
 * Invariants of struct tls_conn:
 * - err != 0 once a fatal TLS or socket error happened; every later read and write returns
 *   it, and close skips SSL_shutdown (OpenSSL forbids it after a fatal error).
 * - werr != 0 once a write ended early (its context or deadline) after OpenSSL may have
 *   sent part of a record: later writes return it. OpenSSL could only go on with a
 *   repeat of the very same SSL_write, which a writev of several records cannot promise,
 *   and anything else would corrupt the stream; Go's crypto/tls does the same. Reads go
 *   on.
 * - A read or handshake ended by its context or deadline leaves nothing behind: the SSL
 *   call that wanted the socket can simply be made again.
 *
 * Design notes. A custom BIO over weft's fd calls was rejected: OpenSSL's socket BIO on a
 * non-blocking fd already reports "would block" exactly, and parking outside OpenSSL keeps
 * the whole wait (context, deadline, dump's wait reason) in one place. Memory BIOs would
 * add a copy per record for nothing. */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "ctx/ctx_io.h"
#include "net/conn.h"
#include "weft/error.h"
#include "weft/tls.h"

struct weft_tls_config {
  SSL_CTX *ssl_ctx; /* immutable once made; every SSL holds its own reference */
  int flags;        /* WEFT_TLS_* from the options */
};

struct tls_conn {
  SSL *ssl;       /* owned; used by the one coroutine using the connection */
  int err;        /* sticky fatal error (negative), else 0 */
  int werr;       /* sticky error of a write ended early, else 0 */
  char alpn[256]; /* the protocol ALPN negotiated, "" for none; set by the handshake */
};

/* What an SSL call that did not succeed asks for (tls_check), besides negative errors. */
enum { TLS_WANT_READ = 1, TLS_WANT_WRITE, TLS_EOF };

/* Small buffers of a writev are gathered into one record of at most this many bytes;
 * buffers of TLS_GATHER_MAX bytes or more go to SSL_write_ex as they are. */
enum { TLS_GATHER = 4096, TLS_GATHER_MAX = 1024 };

/* ---- configuration ---- */

/* The server's ALPN list (wire format) hangs off its SSL_CTX as ex_data, freed with the
 * SSL_CTX itself: the select callback runs during handshakes that may outlive the
 * weft_tls_config (weft_tls_config_free only drops the config's reference). */
struct alpn_list {
  size_t len;
  unsigned char wire[];
};

static int alpn_index = -1;
static pthread_once_t alpn_once = PTHREAD_ONCE_INIT;

static void alpn_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                      void *argp)
{
  (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
  free(ptr);
}

static void alpn_index_init(void)
{
  alpn_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, alpn_free);
}

/* A weft_error for a failed OpenSSL call: "tls: <what>[ <arg>]: <OpenSSL's reason>" with
 * the earliest error in the queue (the root cause), which is then cleared. */
static weft_error *ssl_error(const char *what, const char *arg)
{
  char reason[256] = "unknown error";
  unsigned long e = ERR_get_error();
  if (e)
    ERR_error_string_n(e, reason, sizeof reason);
  ERR_clear_error();
  return weft_error_new(-WEFT_ETLS, NULL, "tls: %s%s%s: %s", what, arg ? " " : "",
                        arg ? arg : "", reason);
}

/* Parse "h2,http/1.1" into a new alpn_list in wire format (length-prefixed names).
 * Returns NULL for an empty name or one longer than 255 bytes, or when out of memory. */
static struct alpn_list *alpn_parse(const char *list)
{
  size_t n = strlen(list);
  struct alpn_list *a = malloc(sizeof *a + n + 1);
  if (!a)
    return NULL;
  a->len = 0;
  for (const char *p = list;;) {
    size_t k = strcspn(p, ",");
    if (k == 0 || k > 255) {
      free(a);
      return NULL;
    }
    a->wire[a->len++] = (unsigned char)k;
    memcpy(a->wire + a->len, p, k);
    a->len += k;
    if (!p[k])
      return a;
    p += k + 1;
  }
}

/* Server: choose the first protocol of our list that the client offers; none in common
 * goes on without ALPN (as OpenSSL's s_server; Go ends the handshake instead). */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg)
{
  (void)arg;
  const struct alpn_list *a = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), alpn_index);
  unsigned char *sel;
  if (!a || SSL_select_next_proto(&sel, outlen, a->wire, (unsigned)a->len, in, inlen) !=
                OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;
  *out = sel;
  return SSL_TLSEXT_ERR_OK;
}

static weft_error *config_alpn(SSL_CTX *sc, const char *list, bool server)
{
  struct alpn_list *a = alpn_parse(list);
  if (!a)
    return weft_error_new(-EINVAL, NULL, "tls: bad ALPN list \"%s\"", list);
  if (!server) {
    int rc = SSL_CTX_set_alpn_protos(sc, a->wire, (unsigned)a->len); /* 0 is success */
    free(a);
    return rc ? ssl_error("set ALPN protocols", NULL) : NULL;
  }
  pthread_once(&alpn_once, alpn_index_init);
  if (alpn_index < 0 || !SSL_CTX_set_ex_data(sc, alpn_index, a)) {
    free(a);
    return ssl_error("set ALPN protocols", NULL);
  }
  SSL_CTX_set_alpn_select_cb(sc, alpn_select, NULL);
  return NULL;
}

/* Parse and cache the extensions of every certificate sc holds now, on this one thread.
 * OpenSSL does it lazily during the first handshakes that use a certificate, writing into
 * the X509 object while handshakes on other threads read it; done here, the shared
 * certificates stay read-only once the config exists (and ThreadSanitizer, which cannot
 * see OpenSSL's synchronisation inside the uninstrumented libcrypto, has nothing to
 * report). Certificates found later in the system's hashed CA directory are still cached
 * lazily, by OpenSSL. */
static void config_cache_extensions(SSL_CTX *sc)
{
  STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(SSL_CTX_get_cert_store(sc));
  for (int i = 0; i < sk_X509_OBJECT_num(objs); i++) {
    X509 *x = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));
    if (x)
      (void)X509_check_purpose(x, -1, 0);
  }
  STACK_OF(X509) *chain = NULL;
  X509 *leaf = SSL_CTX_get0_certificate(sc);
  if (leaf)
    (void)X509_check_purpose(leaf, -1, 0);
  SSL_CTX_get0_chain_certs(sc, &chain);
  for (int i = 0; i < sk_X509_num(chain); i++)
    (void)X509_check_purpose(sk_X509_value(chain, i), -1, 0);
}

static weft_error *config_server(SSL_CTX *sc, const weft_tls_options *o)
{
  if (!o->cert_file || !o->key_file)
    return weft_error_new(-EINVAL, NULL, "tls: a server needs cert_file and key_file");
  if (o->ca_file)
    return weft_error_new(-EINVAL, NULL, "tls: ca_file is for clients");
  if (SSL_CTX_use_certificate_chain_file(sc, o->cert_file) != 1)
    return ssl_error("load certificate chain", o->cert_file);
  if (SSL_CTX_use_PrivateKey_file(sc, o->key_file, SSL_FILETYPE_PEM) != 1)
    return ssl_error("load private key", o->key_file);
  if (SSL_CTX_check_private_key(sc) != 1)
    return ssl_error("private key does not match the certificate", o->key_file);
  /* client-initiated renegotiation (TLS 1.2) only costs a server CPU */
  SSL_CTX_set_options(sc, SSL_OP_NO_RENEGOTIATION);
  return NULL;
}

static weft_error *config_client(SSL_CTX *sc, const weft_tls_options *o)
{
  if (o->cert_file || o->key_file)
    return weft_error_new(-EINVAL, NULL, "tls: client certificates are not supported");
  if (o->flags & WEFT_TLS_INSECURE) {
    SSL_CTX_set_verify(sc, SSL_VERIFY_NONE, NULL);
    return NULL;
  }
  SSL_CTX_set_verify(sc, SSL_VERIFY_PEER, NULL);
  if (o->ca_file && SSL_CTX_load_verify_locations(sc, o->ca_file, NULL) != 1)
    return ssl_error("load CA file", o->ca_file);
  if (!o->ca_file && SSL_CTX_set_default_verify_paths(sc) != 1)
    return ssl_error("load the system's trusted CAs", NULL);
  return NULL;
}

/* The SSL_CTX for opts, or NULL with *err set. */
static SSL_CTX *config_make(const weft_tls_options *o, weft_error **err)
{
  bool server = o->flags & WEFT_TLS_SERVER;
  ERR_clear_error();
  SSL_CTX *sc = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (!sc) {
    *err = ssl_error("create context", NULL);
    return NULL;
  }
  SSL_CTX_set_min_proto_version(sc, TLS1_2_VERSION);
  /* Repeated writes after WANT_WRITE may pass the same bytes at another address (gathered
   * into a stack buffer); an EOF without close_notify reads as a clean end (tls_read). */
  SSL_CTX_set_mode(sc, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_options(sc, SSL_OP_IGNORE_UNEXPECTED_EOF);
  *err = server ? config_server(sc, o) : config_client(sc, o);
  if (!*err && o->alpn)
    *err = config_alpn(sc, o->alpn, server);
  if (*err) {
    SSL_CTX_free(sc);
    return NULL;
  }
  config_cache_extensions(sc);
  return sc;
}

weft_tls_config *weft_tls_config_new(const weft_tls_options *opts, weft_error **err)
{
  weft_error *e = NULL;
  weft_tls_config *cfg = NULL;
  if (!opts || (opts->flags & ~(WEFT_TLS_SERVER | WEFT_TLS_INSECURE))) {
    e = weft_error_new(-EINVAL, NULL, "tls: bad options");
  } else if (!(cfg = malloc(sizeof *cfg))) {
    e = weft_error_from_code(-ENOMEM);
  } else if (!(cfg->ssl_ctx = config_make(opts, &e))) {
    free(cfg);
    cfg = NULL;
  } else {
    cfg->flags = opts->flags;
  }
  if (err)
    *err = e;
  else
    weft_error_release(e);
  return cfg;
}

void weft_tls_config_free(weft_tls_config *cfg)
{
  if (!cfg)
    return;
  SSL_CTX_free(cfg->ssl_ctx);
  free(cfg);
}

/* ---- driving OpenSSL ---- */

/* Why an SSL_ERROR_SSL failure happened: -WEFT_ECERT when the peer's certificate failed
 * our verification, TLS_EOF for an end of stream in the middle of a record or handshake,
 * else -WEFT_ETLS. Reads the thread's error queue. */
static int ssl_failure(SSL *ssl)
{
  for (unsigned long e; (e = ERR_get_error()) != 0;) {
    if (ERR_GET_LIB(e) != ERR_LIB_SSL)
      continue;
    if (ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED)
      return -WEFT_ECERT;
    if (ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
      return TLS_EOF;
  }
  if ((SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) && SSL_get_verify_result(ssl) != X509_V_OK)
    return -WEFT_ECERT;
  return -WEFT_ETLS;
}

/* What the SSL call on t that just failed with ret means: TLS_WANT_READ/WRITE (park and
 * repeat it), TLS_EOF, or a negative error, which is then sticky in t->err. sys_errno is
 * errno right after the call. Must run right after the call on its thread (see the top of
 * the file); leaves the error queue empty. */
static int tls_check(struct tls_conn *t, int ret, int sys_errno)
{
  int r;
  switch (SSL_get_error(t->ssl, ret)) {
  case SSL_ERROR_WANT_READ:
    r = TLS_WANT_READ;
    break;
  case SSL_ERROR_WANT_WRITE:
    r = TLS_WANT_WRITE;
    break;
  case SSL_ERROR_ZERO_RETURN:
    r = TLS_EOF;
    break;
  case SSL_ERROR_SYSCALL: /* the socket failed: errno says how; none is an EOF */
    r = sys_errno && sys_errno != EAGAIN ? -sys_errno : ERR_peek_error() ? -WEFT_ETLS : TLS_EOF;
    break;
  case SSL_ERROR_SSL:
    r = ssl_failure(t->ssl);
    break;
  default:
    r = -WEFT_ETLS;
    break;
  }
  ERR_clear_error();
  if (r < 0)
    t->err = r;
  return r;
}

/* Park until the socket can give OpenSSL what it wants (want: TLS_WANT_READ/WRITE). */
static int tls_wait(const weft_conn *c, int want, weft_ctx *ctx, int64_t deadline)
{
  return weft__wait_fd_ctx(c->fd, want == TLS_WANT_WRITE, ctx, deadline);
}

static int tls_handshake(weft_conn *c, weft_ctx *ctx, int64_t deadline)
{
  struct tls_conn *t = c->state;
  for (;;) {
    ERR_clear_error();
    errno = 0;
    int ret = SSL_do_handshake(t->ssl);
    if (ret == 1)
      return 0;
    int r = tls_check(t, ret, errno);
    if (r == TLS_EOF)
      return t->err = -ECONNRESET; /* the peer hung up before the handshake completed */
    if (r < 0 || (r = tls_wait(c, r, ctx, deadline)) != 0)
      return r;
  }
}

/* ---- the transport ---- */

/* Reads end (0) at close_notify and also at an EOF without one
 * (SSL_OP_IGNORE_UNEXPECTED_EOF), as most clients do: a peer that truncates the stream
 * that way cannot be told from one that finished. Protocols that frame their messages
 * (HTTP's Content-Length, chunked encoding) detect truncation themselves. It also makes
 * weft_conn_shutdown_read end a parked TLS read with 0, as for a plain connection. */
static ssize_t tls_read(weft_conn *c, void *buf, size_t len, weft_ctx *ctx, int64_t deadline)
{
  struct tls_conn *t = c->state;
  int r = t->err ? t->err : weft_ctx_err(ctx);
  if (r || len == 0)
    return r;
  for (;;) {
    size_t n = 0;
    ERR_clear_error();
    errno = 0;
    if (SSL_read_ex(t->ssl, buf, len, &n) == 1)
      return (ssize_t)n;
    r = tls_check(t, 0, errno);
    if (r == TLS_EOF)
      return 0;
    if (r < 0 || (r = tls_wait(c, r, ctx, deadline)) != 0)
      return r;
  }
}

/* Write all len bytes of p as one SSL_write_ex (partial writes are off: it succeeds only
 * once everything is sent), repeating it after each wait. Returns 0 or a negative error. */
static int tls_write_all(weft_conn *c, const void *p, size_t len, weft_ctx *ctx,
                         int64_t deadline)
{
  struct tls_conn *t = c->state;
  for (;;) {
    size_t n = 0;
    ERR_clear_error();
    errno = 0;
    if (SSL_write_ex(t->ssl, p, len, &n) == 1)
      return 0;
    int r = tls_check(t, 0, errno);
    if (r == TLS_EOF)
      return t->err = -EPIPE; /* the peer closed (close_notify) */
    if (r < 0)
      return r;
    if ((r = tls_wait(c, r, ctx, deadline)) != 0)
      return t->werr = r; /* part of a record may be out: no way back (see the top) */
  }
}

/* Copy iov[*i], iov[*i + 1] ... into buf while they are small and fit (at least iov[*i],
 * which is smaller than TLS_GATHER_MAX). Advances *i; returns the bytes copied. */
static size_t gather(const struct iovec *iov, int iovcnt, int *i, char *buf)
{
  size_t n = 0;
  while (*i < iovcnt && iov[*i].iov_len < TLS_GATHER_MAX && n + iov[*i].iov_len <= TLS_GATHER) {
    if (iov[*i].iov_len)
      memcpy(buf + n, iov[*i].iov_base, iov[*i].iov_len);
    n += iov[*i].iov_len;
    (*i)++;
  }
  return n;
}

/* Small buffers (an HTTP head, a chunk header) are gathered so that they share a record
 * and a system call; large ones are written in place, a record per 16 KiB. */
static ssize_t tls_writev(weft_conn *c, const struct iovec *iov, int iovcnt, weft_ctx *ctx,
                          int64_t deadline)
{
  struct tls_conn *t = c->state;
  char scratch[TLS_GATHER];
  size_t total = 0;
  if (iovcnt < 0)
    return -EINVAL;
  int err = t->err ? t->err : t->werr ? t->werr : weft_ctx_err(ctx);
  for (int i = 0; !err && i < iovcnt;) {
    const void *p = iov[i].iov_base;
    size_t n = iov[i].iov_len;
    if (n < TLS_GATHER_MAX)
      n = gather(iov, iovcnt, &i, scratch), p = scratch;
    else
      i++;
    if (n)
      err = tls_write_all(c, p, n, ctx, deadline);
    total += n;
  }
  return err ? err : (ssize_t)total;
}

/* Send close_notify if the socket takes it at once (never waits for the peer's), then
 * free the SSL. Skipped after a fatal error or before the handshake finished. */
static void tls_close(weft_conn *c)
{
  struct tls_conn *t = c->state;
  ERR_clear_error();
  if (!t->err && SSL_is_init_finished(t->ssl))
    (void)SSL_shutdown(t->ssl);
  ERR_clear_error();
  SSL_free(t->ssl);
  free(t);
  c->state = NULL;
}

static const struct conn_ops tls_ops = {
    .read = tls_read,
    .writev = tls_writev,
    .close = tls_close,
    .is_tls = true,
};

/* ---- handshakes ---- */

/* Set the client's SNI and the name its verification expects. host: a DNS name or an IP
 * address (no SNI for those, RFC 6066), or NULL/"" with WEFT_TLS_INSECURE. */
static int set_peer_name(SSL *ssl, const char *host, int flags)
{
  unsigned char addr[16];
  bool insecure = flags & WEFT_TLS_INSECURE;
  if (!host || !*host)
    return insecure ? 0 : -EINVAL;
  bool ip = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
  if (!ip && SSL_set_tlsext_host_name(ssl, host) != 1)
    return -EINVAL;
  if (insecure)
    return 0;
  if (ip)
    return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1 ? 0 : -EINVAL;
  SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  return SSL_set1_host(ssl, host) == 1 ? 0 : -EINVAL;
}

/* Wrap c: a tls_conn with a new SSL on c's socket, installed as c's transport so that
 * weft_conn_close frees it whatever happens next. Returns 0 or a negative error. */
static int tls_wrap(weft_conn *c, weft_tls_config *cfg, const char *host)
{
  bool server = cfg->flags & WEFT_TLS_SERVER;
  struct tls_conn *t = calloc(1, sizeof *t);
  if (!t)
    return -ENOMEM;
  ERR_clear_error();
  if (!(t->ssl = SSL_new(cfg->ssl_ctx)) || SSL_set_fd(t->ssl, c->fd) != 1) {
    ERR_clear_error();
    SSL_free(t->ssl);
    free(t);
    return -ENOMEM;
  }
  c->ops = &tls_ops;
  c->state = t;
  if (server) {
    SSL_set_accept_state(t->ssl);
    return 0;
  }
  SSL_set_connect_state(t->ssl);
  int err = set_peer_name(t->ssl, host, cfg->flags);
  ERR_clear_error();
  return err;
}

static int tls_start(weft_conn **cp, weft_tls_config *cfg, bool server, const char *host,
                     weft_ctx *ctx, int64_t deadline)
{
  if (!cp || !*cp)
    return -EINVAL;
  weft_conn *c = *cp;
  int err = -EINVAL;
  if (!cfg || c->ops->is_tls || server != !!(cfg->flags & WEFT_TLS_SERVER))
    goto err_close;
  if ((err = weft_ctx_err(ctx)) || (err = tls_wrap(c, cfg, host)) ||
      (err = tls_handshake(c, ctx, deadline)))
    goto err_close;
  struct tls_conn *t = c->state;
  const unsigned char *proto = NULL;
  unsigned proto_len = 0;
  SSL_get0_alpn_selected(t->ssl, &proto, &proto_len);
  if (proto && proto_len < sizeof t->alpn)
    memcpy(t->alpn, proto, proto_len);
  return 0;
err_close:
  weft_conn_close(c);
  *cp = NULL;
  return err;
}

int weft_tls_client(weft_conn **c, weft_tls_config *cfg, const char *host, weft_ctx *ctx,
                    int64_t deadline)
{
  return tls_start(c, cfg, false, host, ctx, deadline);
}

int weft_tls_server(weft_conn **c, weft_tls_config *cfg, weft_ctx *ctx, int64_t deadline)
{
  return tls_start(c, cfg, true, NULL, ctx, deadline);
}

const char *weft_tls_alpn(const weft_conn *c)
{
  if (!c || !c->ops->is_tls)
    return "";
  const struct tls_conn *t = c->state;
  return t->alpn;
}
