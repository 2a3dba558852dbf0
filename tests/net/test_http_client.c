/* test_http_client.c: the HTTP/1.1 client against tiny scripted servers on loopback that
 * send exact bytes: URL parsing and reference resolution, the response parser on its own
 * (byte by byte), Content-Length, chunked and close-delimited bodies, HEAD/204/304/1xx,
 * gzip and deflate (zlib-wrapped and raw), a gzip bomb against the body cap, keep-alive
 * reuse, the per-host connection cap (P = 1..4), redirects (relative, absolute, 303 ->
 * GET, 307 keeps the body, loops -> -ELOOP, credentials dropped across hosts), timeouts,
 * refused ports, unresolvable names, malformed responses, cancellation, the transparent
 * retry of a stale pooled connection, request validation, and HTTPS with a self-signed
 * certificate made for the test.
 *
 * Coroutines check with CHECK/CHECK_EQ (coro_check.h); each test asserts afterwards that
 * none failed. Every wait has a deadline, so a hang fails the test instead of hanging it. */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <zlib.h>

#include "coro_check.h"
#include "net/http_client_parse.h"
#include "net/http_client_pool.h"
#include "net/url.h"
#include "weft_test.h"

#define DL() (weft_now() + MS(20000)) /* a hang fails instead of hanging */
#define LATE MS(3000)                 /* generous bound for "on time" on a loaded VM */
#define SBUF (128 * 1024)

#define CHECK_STR(a, b)                                                          \
  do {                                                                           \
    const char *sa_ = (a), *sb_ = (b);                                           \
    if (!sa_ || strcmp(sa_, sb_) != 0) {                                         \
      fprintf(stderr, "  got \"%s\", want \"%s\"\n", sa_ ? sa_ : "(null)", sb_); \
      check_failed(__FILE__, __LINE__, #a " == " #b, 0, 0);                      \
    }                                                                            \
  } while (0)

static void setup_failed(const char *what, int err)
{
  fprintf(stderr, "test setup failed: %s: %s\n", what, weft_strerror(err));
  abort();
}

/* ---- compression helpers ---- */

/* Compress n bytes (in NULL: zeros) with window bits (16+15 gzip, 15 zlib, -15 raw). */
static unsigned char *zcompress(const void *in, size_t n, int bits, size_t *outn)
{
  static const unsigned char zeros[65536];
  z_stream z = {0};
  if (deflateInit2(&z, 9, Z_DEFLATED, bits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    setup_failed("deflateInit2", -ENOMEM);
  size_t cap = 65536, len = 0, done = 0;
  unsigned char *out = malloc(cap);
  for (;;) {
    size_t take = n - done;
    if (!in && take > sizeof zeros)
      take = sizeof zeros;
    z.next_in = (unsigned char *)(in ? (const unsigned char *)in + done : zeros);
    z.avail_in = (uInt)take;
    done += take;
    int flush = done == n ? Z_FINISH : Z_NO_FLUSH;
    int rc;
    do {
      if (cap - len < 65536)
        out = realloc(out, cap *= 2);
      z.next_out = out + len;
      z.avail_out = (uInt)(cap - len);
      rc = deflate(&z, flush);
      len = cap - z.avail_out;
    } while (z.avail_out == 0 || (flush == Z_FINISH && rc != Z_STREAM_END));
    if (flush == Z_FINISH)
      break;
  }
  deflateEnd(&z);
  *outn = len;
  return out;
}

/* A text payload that compresses well but not trivially. */
static char *payload(size_t n)
{
  char *p = malloc(n + 1);
  for (size_t i = 0; i < n; i++)
    p[i] = "abcdefghij klmnopqrstuvwxyz\n"[(i * 7 + i / 13) % 28];
  p[n] = '\0';
  return p;
}

#define PAYLOAD_LEN 100000

/* ---- scripted servers ---- */

struct srv;

/* One accepted connection, served by its own coroutine. */
struct sconn {
  struct srv *s;
  weft_conn *c;
  int reqno;  /* requests read on this connection so far */
  size_t len; /* bytes in buf */
  char buf[SBUF];
};

/* respond: answer req (head and body, NUL-terminated) on c. Returns 0 to read the next
 * request, 1 to close the connection. */
typedef int (*respond_fn)(struct sconn *c, const char *method, const char *target,
                          const char *req);

struct srv {
  int lfd, port;
  respond_fn respond;
  weft_tls_config *tls; /* TLS server when set */
  atomic_int delay_ms;  /* /slow waits this long */
  weft_wg wg;           /* acceptor and connections */
  atomic_int accepted, open_now, max_open, requests;
  weft_mutex mu;
  char last_req[8192]; /* guarded by mu: the last request read */
};

static ssize_t sc_send(struct sconn *c, const void *p, size_t n)
{
  return weft_conn_write(c->c, p, n, NULL, DL());
}

__attribute__((format(printf, 2, 3))) static void sc_printf(struct sconn *c, const char *fmt,
                                                            ...)
{
  char buf[4096];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  sc_send(c, buf, (size_t)n);
}

/* A response with a body of n bytes and extra header lines hdrs ("" or "X: y\r\n"). */
static void sc_reply(struct sconn *c, int status, const char *hdrs, const void *body, size_t n)
{
  sc_printf(c, "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n%s\r\n", status, n, hdrs);
  if (n)
    sc_send(c, body, n);
}

static size_t content_length(const char *head)
{
  const char *p = strcasestr(head, "\r\nContent-Length:");
  return p ? strtoul(p + 17, NULL, 10) : 0;
}

/* Read the next request into out (NUL-terminated). Returns its length, 0 at end of
 * stream, or a negative error. */
static ssize_t sc_read_request(struct sconn *c, char *out, size_t cap)
{
  for (;;) {
    c->buf[c->len] = '\0';
    char *end = strstr(c->buf, "\r\n\r\n");
    if (end) {
      size_t need = (size_t)(end + 4 - c->buf) + content_length(c->buf);
      if (need < cap && c->len >= need) {
        memcpy(out, c->buf, need);
        out[need] = '\0';
        memmove(c->buf, c->buf + need, c->len - need);
        c->len -= need;
        return (ssize_t)need;
      }
    }
    if (c->len >= SBUF - 1)
      return -EMSGSIZE;
    ssize_t n = weft_conn_read(c->c, c->buf + c->len, SBUF - 1 - c->len, NULL, DL());
    if (n <= 0)
      return n;
    c->len += (size_t)n;
  }
}

static void sc_serve(struct sconn *c)
{
  struct srv *s = c->s;
  char *req = malloc(SBUF);
  for (;;) {
    ssize_t n = sc_read_request(c, req, SBUF);
    if (n <= 0)
      break;
    atomic_fetch_add(&s->requests, 1);
    weft_mutex_lock(&s->mu);
    snprintf(s->last_req, sizeof s->last_req, "%s", req);
    weft_mutex_unlock(&s->mu);
    char method[16] = "", target[1024] = "";
    sscanf(req, "%15s %1023s", method, target);
    target[strcspn(target, "?")] = '\0'; /* routes ignore the query */
    int rc = s->respond(c, method, target, req);
    c->reqno++;
    if (rc)
      break;
  }
  free(req);
}

static void conn_main(void *arg)
{
  struct sconn *c = arg;
  struct srv *s = c->s;
  if (!s->tls || weft_tls_server(&c->c, s->tls, NULL, DL()) == 0)
    sc_serve(c);
  atomic_fetch_sub(&s->open_now, 1);
  weft_conn_close(c->c);
  free(c);
  weft_wg_done(&s->wg);
}

static void acceptor_main(void *arg)
{
  struct srv *s = arg;
  for (;;) {
    int fd = weft_accept(s->lfd, NULL, NULL, DL());
    if (fd < 0)
      break;
    atomic_fetch_add(&s->accepted, 1);
    int open = atomic_fetch_add(&s->open_now, 1) + 1, max = atomic_load(&s->max_open);
    while (open > max && !atomic_compare_exchange_weak(&s->max_open, &max, open))
      ;
    struct sconn *c = calloc(1, sizeof *c);
    c->s = s;
    c->c = weft_conn_new(fd);
    weft_wg_add(&s->wg, 1);
    if (!c->c || weft_go(conn_main, c) != 0)
      setup_failed("server connection", -ENOMEM);
  }
  weft_wg_done(&s->wg);
}

static void srv_start_tls(struct srv *s, respond_fn respond, weft_tls_config *tls)
{
  memset(s, 0, sizeof *s);
  weft_mutex_init(&s->mu);
  s->respond = respond;
  s->tls = tls;
  s->lfd = weft_listen("tcp", "127.0.0.1:0", 0);
  if (s->lfd < 0)
    setup_failed("listen", s->lfd);
  s->port = weft_local_port(s->lfd);
  weft_wg_add(&s->wg, 1);
  if (weft_go(acceptor_main, s) != 0)
    setup_failed("weft_go", -ENOMEM);
}

static void srv_start(struct srv *s, respond_fn respond)
{
  srv_start_tls(s, respond, NULL);
}

/* Stop accepting and wait for every connection to end (clients must have closed theirs:
 * free the client first). */
static void srv_stop(struct srv *s)
{
  weft_close(s->lfd);
  weft_wg_wait(&s->wg);
}

static void srv_last_request(struct srv *s, char *out, size_t len)
{
  weft_mutex_lock(&s->mu);
  snprintf(out, len, "%s", s->last_req);
  weft_mutex_unlock(&s->mu);
}

/* srv_url(s, path): the server's URL for path, in a buffer of the calling block. */
static char *srv_url_in(struct srv *s, const char *path, char *buf, size_t len)
{
  snprintf(buf, len, "%s://127.0.0.1:%d%s", s->tls ? "https" : "http", s->port, path);
  return buf;
}
#define srv_url(s, path) srv_url_in((s), (path), (char[256]){0}, 256)

static weft_http_client *client_new(const weft_http_client_config *cfg)
{
  struct weft_error *err = NULL;
  weft_http_client *cl = weft_http_client_new(cfg, &err);
  if (!cl)
    setup_failed("weft_http_client_new", weft_error_code(err));
  return cl;
}

/* GET url; returns the error, and the response in *r (NULL on error). */
static int get(weft_http_client *cl, const char *url, weft_http_client_response **r)
{
  return weft_http_client_get(cl, NULL, url, r);
}

/* GET url and check status and body. */
static void expect_body(weft_http_client *cl, const char *url, int status, const char *body)
{
  weft_http_client_response *r;
  int err = get(cl, url, &r);
  CHECK_EQ(err, 0);
  if (err) {
    fprintf(stderr, "  GET %s: %s\n", url, weft_strerror(err));
    return;
  }
  CHECK_EQ(weft_http_client_response_status(r), status);
  size_t len;
  const char *b = weft_http_client_response_body(r, &len);
  CHECK_EQ(len, strlen(body));
  CHECK_STR(b, body);
  weft_http_client_response_free(r);
}

/* ---- the scripted responses ---- */

static const char *gzip_body(const char *target, int *bits)
{
  if (strcmp(target, "/gzip") == 0)
    return *bits = 16 + MAX_WBITS, "gzip";
  if (strcmp(target, "/zlib") == 0)
    return *bits = MAX_WBITS, "deflate";
  if (strcmp(target, "/rawdeflate") == 0)
    return *bits = -MAX_WBITS, "deflate";
  return NULL;
}

static int respond_compressed(struct sconn *c, const char *target)
{
  int bits;
  const char *coding = gzip_body(target, &bits);
  char *p = payload(PAYLOAD_LEN), hdr[128];
  size_t zn;
  unsigned char *z = zcompress(p, PAYLOAD_LEN, bits, &zn);
  snprintf(hdr, sizeof hdr, "Content-Encoding: %s\r\n", coding);
  sc_reply(c, 200, hdr, z, zn);
  free(z);
  free(p);
  return 0;
}

/* Bodies: /cl, /chunked, /close, /head, /204, /304, /100, /echo, /slow, /big. */
static int respond_bodies(struct sconn *c, const char *method, const char *target,
                          const char *req)
{
  if (strcmp(target, "/cl") == 0) {
    sc_reply(c, 200, "Content-Type: text/plain\r\n", "hello", 5);
  } else if (strcmp(target, "/chunked") == 0) {
    sc_printf(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "3;ext=1\r\nhel\r\n8\r\nlo world\r\n0\r\nX-Trailer: t\r\n\r\n");
  } else if (strcmp(target, "/close") == 0) {
    sc_printf(c, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close");
    return 1;
  } else if (strcmp(target, "/head") == 0) {
    sc_printf(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n");
  } else if (strcmp(target, "/204") == 0) {
    sc_printf(c, "HTTP/1.1 204 No Content\r\n\r\n");
  } else if (strcmp(target, "/304") == 0) {
    sc_printf(c, "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n");
  } else if (strcmp(target, "/100") == 0) {
    sc_printf(c, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                 "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok");
  } else if (strcmp(target, "/slow") == 0) {
    weft_sleep(MS(atomic_load(&c->s->delay_ms)));
    sc_reply(c, 200, "", "slow", 4);
  } else if (strcmp(target, "/big") == 0) {
    char *p = payload(3 * 1024 * 1024);
    sc_reply(c, 200, "", p, strlen(p));
    free(p);
  } else if (gzip_body(target, &(int){0})) {
    return respond_compressed(c, target);
  } else {
    sc_reply(c, 200, "", req, strlen(req)); /* /echo and the rest: the request itself */
  }
  return 0;
}

/* ---- pure units: URLs and the parser ---- */

static void test_url_parse(void **state)
{
  struct weft__url u;
  assert_int_equal(weft__url_parse("HTTP://Example.COM", &u), 0);
  assert_false(u.https);
  assert_string_equal(u.host, "example.com");
  assert_int_equal(u.port, 80);
  assert_string_equal(u.target, "/");
  weft__url_free(&u);
  assert_int_equal(weft__url_parse("https://u:p@[::1]:8443/a b?q=\xc3\xa9#frag", &u), 0);
  assert_true(u.https && u.host_is_v6);
  assert_string_equal(u.host, "::1");
  assert_int_equal(u.port, 8443);
  assert_string_equal(u.target, "/a%20b?q=%C3%A9");
  char auth[64];
  assert_int_equal(weft__url_authority(&u, false, auth, sizeof auth), 10);
  assert_string_equal(auth, "[::1]:8443");
  weft__url_free(&u);
  assert_int_equal(weft__url_parse("https://h?x=1", &u), 0);
  assert_int_equal(u.port, 443);
  assert_string_equal(u.target, "/?x=1");
  assert_int_equal(weft__url_authority(&u, false, auth, sizeof auth), 1); /* default port */
  assert_string_equal(auth, "h");
  assert_int_equal(weft__url_authority(&u, true, auth, sizeof auth), 5);
  assert_string_equal(auth, "h:443");
  assert_int_equal(weft__url_authority(&u, true, auth, 5), -ENOSPC); /* no room for NUL */
  assert_int_equal(weft__url_authority(&u, true, auth, 6), 5);
  weft__url_free(&u);
  assert_int_equal(weft__url_parse("http://10.0.0.1:1/", &u), 0);
  assert_int_equal(weft__url_authority(&u, false, auth, sizeof auth), 10);
  assert_string_equal(auth, "10.0.0.1:1");
  weft__url_free(&u);
  const char *bad[] = {"ftp://h/",       "http://",       "http:///x",     "http://h:0/",
                       "http://h:65536", "http://h:8x/",  "http://[::1/",  "http://[zz]/",
                       "http://h h/",    "http://h/\n",   "h/x",           "//h/x",
                       "http://h\x7f/",  "http://a:b:c/", "http://[::1]x/"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (weft__url_parse(bad[i], &u) != -EINVAL)
      fail_msg("accepted %s", bad[i]);
  }
}

static void test_url_resolve(void **state)
{
  /* RFC 3986 section 5.4 */
  static const char *cases[][2] = {
      {"g:h", "g:h"},
      {"g", "http://a/b/c/g"},
      {"./g", "http://a/b/c/g"},
      {"g/", "http://a/b/c/g/"},
      {"/g", "http://a/g"},
      {"//g", "http://g"},
      {"?y", "http://a/b/c/d;p?y"},
      {"g?y", "http://a/b/c/g?y"},
      {"#s", "http://a/b/c/d;p?q"},
      {"g#s", "http://a/b/c/g"},
      {";x", "http://a/b/c/;x"},
      {"", "http://a/b/c/d;p?q"},
      {".", "http://a/b/c/"},
      {"./", "http://a/b/c/"},
      {"..", "http://a/b/"},
      {"../g", "http://a/b/g"},
      {"../..", "http://a/"},
      {"../../g", "http://a/g"},
      {"../../../g", "http://a/g"},
      {"/./g", "http://a/g"},
      {"/../g", "http://a/g"},
      {"g.", "http://a/b/c/g."},
      {"..g", "http://a/b/c/..g"},
      {"./../g", "http://a/b/g"},
      {"./g/.", "http://a/b/c/g/"},
      {"g/../h", "http://a/b/c/h"},
      {"g;x=1/../y", "http://a/b/c/y"},
      {"g?y/../x", "http://a/b/c/g?y/../x"},
      {"  /x  ", "http://a/x"},
      {"HTTPS://B/z", "HTTPS://B/z"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *out;
    assert_int_equal(weft__url_resolve("http://a/b/c/d;p?q", cases[i][0], &out), 0);
    if (strcmp(out, cases[i][1]) != 0)
      fail_msg("%s -> %s, want %s", cases[i][0], out, cases[i][1]);
    free(out);
  }
  char *out;
  assert_int_equal(weft__url_resolve("http://h", "x", &out), 0);
  assert_string_equal(out, "http://h/x");
  free(out);
  assert_int_equal(weft__url_resolve("http://h/", "a\nb", &out), -EINVAL);
  assert_int_equal(weft__url_resolve("/relative", "x", &out), -EINVAL);
}

static int parse_all_ways(const char *msg, size_t n, int flags, size_t max, int *status)
{
  int rc = weft__http_response_parse(msg, n, flags, 0, max, status);
  for (size_t chunk = 1; chunk <= 7; chunk += 3) {
    int st = -1, rc2 = weft__http_response_parse(msg, n, flags, chunk, max, &st);
    if (rc2 != rc || (rc == 0 && st != *status))
      fail_msg("chunk %zu: %d (status %d) vs %d (status %d)", chunk, rc2, st, rc, *status);
  }
  return rc;
}

static void test_parser(void **state)
{
  static const struct {
    const char *msg;
    int flags, rc, status;
  } cases[] = {
      {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 0, 0, 200},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 0, 0,
       200},
      {"HTTP/1.1 200 OK\r\n\r\nuntil close", 0, 0, 200},
      {"HTTP/1.0 200 OK\r\n\r\n", 0, 0, 200},
      {"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0, 0, 200},
      {"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", WEFT__HTTP_PARSE_HEAD, 0, 200},
      {"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", 0, 0, 304},
      {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", 0, -ECONNRESET, 0},
      {"HTTP/1.1 200 OK\r\nContent-Le", 0, -ECONNRESET, 0},
      {"", 0, -ECONNRESET, 0},
      {"HTTP/1.1 2x0 OK\r\n\r\n", 0, -EPROTO, 0},
      {"SSH-2.0-OpenSSH\r\n\r\n", 0, -EPROTO, 0},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 0, -EPROTO, 0},
      {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 0, -EPROTO, 0},
      {"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n", 0, -EFBIG, 0},
      {"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nnope",
       WEFT__HTTP_PARSE_DECODE, -EPROTO, 0},
      {"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nnope", 0, 0, 200},
      {"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 4\r\n\r\nnope",
       WEFT__HTTP_PARSE_DECODE, 0, 200},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int st = -1;
    int rc = parse_all_ways(cases[i].msg, strlen(cases[i].msg), cases[i].flags, 20, &st);
    if (rc != cases[i].rc || (rc == 0 && st != cases[i].status))
      fail_msg("case %zu: rc %d status %d", i, rc, st);
  }
  /* the caps on the head: 100 header lines pass, 101 fail; 64 KiB of head */
  char *m = malloc(200000);
  for (int lines = 99; lines <= 100; lines++) {
    int k = sprintf(m, "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < lines; i++)
      k += sprintf(m + k, "X-%d: v\r\n", i);
    k += sprintf(m + k, "Content-Length: 0\r\n\r\n");
    int st;
    assert_int_equal(parse_all_ways(m, (size_t)k, 0, 10, &st), lines == 99 ? 0 : -EPROTO);
  }
  int k = sprintf(m, "HTTP/1.1 200 OK\r\nX: ");
  memset(m + k, 'v', 70000);
  k += 70000;
  k += sprintf(m + k, "\r\nContent-Length: 0\r\n\r\n");
  int st;
  assert_int_equal(parse_all_ways(m, (size_t)k, 0, 10, &st), -EPROTO);
  free(m);
}

static void test_parser_decode(void **state)
{
  char *p = payload(PAYLOAD_LEN);
  int bitss[] = {16 + MAX_WBITS, MAX_WBITS, -MAX_WBITS};
  for (int i = 0; i < 3; i++) {
    size_t zn;
    unsigned char *z = zcompress(p, PAYLOAD_LEN, bitss[i], &zn);
    char *msg = malloc(zn + 200);
    int h =
        sprintf(msg, "HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %zu\r\n\r\n",
                i == 0 ? "gzip" : "deflate", zn);
    memcpy(msg + h, z, zn);
    int st, f = WEFT__HTTP_PARSE_DECODE;
    assert_int_equal(parse_all_ways(msg, h + zn, f, PAYLOAD_LEN, &st), 0);
    assert_int_equal(parse_all_ways(msg, h + zn, f, PAYLOAD_LEN - 1, &st), -EFBIG);
    assert_int_equal(parse_all_ways(msg, h + zn, f | WEFT__HTTP_PARSE_TRUNCATE, 1000, &st), 0);
    /* the stream cut short, with a Content-Length that matches the cut */
    h = sprintf(msg, "HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %zu\r\n\r\n",
                i == 0 ? "gzip" : "deflate", zn / 2);
    memcpy(msg + h, z, zn / 2);
    assert_int_equal(parse_all_ways(msg, h + zn / 2, f, PAYLOAD_LEN, &st), -EPROTO);
    free(msg);
    free(z);
  }
  /* the decoded body itself */
  struct weft__http_parse ps;
  size_t zn;
  unsigned char *z = zcompress(p, PAYLOAD_LEN, 16 + MAX_WBITS, &zn);
  char head[128];
  int h = sprintf(
      head, "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %zu\r\n\r\n", zn);
  weft__http_parse_init(&ps, WEFT__HTTP_PARSE_DECODE, 1 << 20);
  assert_int_equal(weft__http_parse_feed(&ps, head, (size_t)h), h);
  assert_int_equal(weft__http_parse_feed(&ps, (char *)z, zn), (ssize_t)zn);
  assert_true(ps.done && ps.keep_alive);
  assert_int_equal(ps.body.len, PAYLOAD_LEN);
  assert_memory_equal(ps.body.buf, p, PAYLOAD_LEN);
  weft__http_parse_free(&ps);
  free(z);
  free(p);
}

/* ---- bodies, keep-alive ---- */

static int bodies_main(void *arg)
{
  struct srv s;
  srv_start(&s, respond_bodies);
  weft_http_client *cl = client_new(NULL);
  expect_body(cl, srv_url(&s, "/cl"), 200, "hello");
  expect_body(cl, srv_url(&s, "/chunked"), 200, "hello world");
  expect_body(cl, srv_url(&s, "/100"), 201, "ok");
  expect_body(cl, srv_url(&s, "/204"), 204, "");
  expect_body(cl, srv_url(&s, "/304"), 304, "");
  weft_http_client_request head = {.method = "HEAD", .url = srv_url(&s, "/head")};
  weft_http_client_response *r;
  CHECK_EQ(weft_http_client_do(cl, NULL, &head, &r), 0);
  if (r) {
    CHECK_EQ(weft_http_client_response_status(r), 200);
    CHECK_STR(weft_http_client_response_header(r, "content-length"), "100");
    weft_http_client_response_free(r);
  }
  expect_body(cl, srv_url(&s, "/cl"), 200, "hello");
  CHECK_EQ(atomic_load(&s.accepted), 1); /* all of them on one connection */
  expect_body(cl, srv_url(&s, "/close"), 200, "until close");
  expect_body(cl, srv_url(&s, "/cl"), 200, "hello");
  CHECK_EQ(atomic_load(&s.accepted), 2);
  CHECK_EQ(atomic_load(&s.requests), 9);
  char key[64];
  snprintf(key, sizeof key, "http://127.0.0.1:%d", s.port);
  CHECK_EQ(weft__http_client_idle_count(cl, key), 1);
  /* header iteration */
  CHECK_EQ(get(cl, srv_url(&s, "/cl"), &r), 0);
  if (r) {
    CHECK_EQ(weft_http_client_response_header_count(r), 2);
    const char *name, *value;
    CHECK_EQ(weft_http_client_response_header_at(r, 1, &name, &value), 0);
    CHECK_STR(name, "Content-Type");
    CHECK_STR(value, "text/plain");
    CHECK_EQ(weft_http_client_response_header_at(r, 2, &name, &value), -ENOENT);
    CHECK_EQ(weft_http_client_response_truncated(r), 0);
    CHECK_EQ(weft_http_client_response_redirects(r), 0);
    CHECK_STR(weft_http_client_response_url(r), srv_url(&s, "/cl"));
    weft_http_client_response_free(r);
  }
  weft_http_client_free(cl);
  srv_stop(&s);
  return checks_result();
}

static void test_bodies(void **state)
{
  checks_reset();
  run_weft_p1to4(bodies_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

/* The request the client sends. */
static int request_format_main(void *arg)
{
  struct srv s;
  srv_start(&s, respond_bodies);
  weft_http_client *cl = client_new(&(weft_http_client_config){.user_agent = "ua/1"});
  char req[8192], want[256];
  expect_body(cl, srv_url(&s, "/cl?q=1#frag"), 200, "hello");
  srv_last_request(&s, req, sizeof req);
  snprintf(want, sizeof want,
           "GET /cl?q=1 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: ua/1\r\n"
           "Accept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\n\r\n",
           s.port);
  CHECK_STR(req, want);
  const char *hdrs[] = {"X-A", "1", "User-Agent", "mine", NULL};
  weft_http_client_request post = {.method = "POST",
                                   .url = srv_url(&s, "/echo"),
                                   .headers = hdrs,
                                   .body = "abc",
                                   .body_len = 3};
  weft_http_client_response *r;
  CHECK_EQ(weft_http_client_do(cl, NULL, &post, &r), 0);
  snprintf(
      want, sizeof want,
      "POST /echo HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept-Encoding: gzip, deflate\r\n"
      "Content-Length: 3\r\nConnection: keep-alive\r\nX-A: 1\r\nUser-Agent: mine\r\n\r\nabc",
      s.port);
  if (r)
    CHECK_STR(weft_http_client_response_body(r, NULL), want);
  weft_http_client_response_free(r);
  weft_http_client_free(cl);

  /* no compression asked: no Accept-Encoding */
  cl = client_new(&(weft_http_client_config){.flags = WEFT_HTTP_CLIENT_NO_COMPRESSION});
  expect_body(cl, srv_url(&s, "/cl"), 200, "hello");
  srv_last_request(&s, req, sizeof req);
  CHECK(!strcasestr(req, "Accept-Encoding"));
  CHECK(strstr(req, "User-Agent: weft/"));
  weft_http_client_free(cl);
  srv_stop(&s);
  return checks_result();
}

static void test_request_format(void **state)
{
  checks_reset();
  assert_int_equal(run_weft(2, request_format_main, NULL), 0);
  ASSERT_NO_CHECK_FAILED();
}

static int bad_requests_main(void *arg)
{
  weft_http_client *cl = client_new(NULL);
  weft_http_client_response *r = (void *)1;
  const char *urls[] = {"ftp://h/", "http://", "http://h:99999/", "http://a b/", "nope"};
  for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
    CHECK_EQ(get(cl, urls[i], &r), -EINVAL);
    CHECK(r == NULL);
  }
  const char *crlf[] = {"X-A", "a\r\nX-Injected: 1", NULL};
  const char *lf_name[] = {"X-A\n", "v", NULL};
  const char *colon[] = {"X:A", "v", NULL};
  const char *cl_hdr[] = {"Content-Length", "5", NULL};
  const char *odd[] = {"X-A", NULL};
  const char *const *bad[] = {crlf, lf_name, colon, cl_hdr, odd};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    weft_http_client_request req = {.url = "http://127.0.0.1:1/", .headers = bad[i]};
    CHECK_EQ(weft_http_client_do(cl, NULL, &req, &r), -EINVAL);
  }
  weft_http_client_request req = {.method = "G T", .url = "http://127.0.0.1:1/"};
  CHECK_EQ(weft_http_client_do(cl, NULL, &req, &r), -EINVAL);
  req = (weft_http_client_request){.url = "http://127.0.0.1:1/", .body_len = 3};
  CHECK_EQ(weft_http_client_do(cl, NULL, &req, &r), -EINVAL);
  CHECK_EQ(weft_http_client_do(cl, NULL, NULL, &r), -EINVAL);
  weft_http_client_free(cl);
  return checks_result();
}

static void test_bad_requests(void **state)
{
  checks_reset();
  assert_int_equal(run_weft(1, bad_requests_main, NULL), 0);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- compression and the body cap ---- */

static int respond_bomb(struct sconn *c, const char *method, const char *target,
                        const char *req)
{
  static const size_t bomb = 64u << 20;
  size_t zn;
  unsigned char *z = zcompress(NULL, bomb, 16 + MAX_WBITS, &zn);
  sc_reply(c, 200, "Content-Encoding: gzip\r\n", z, zn);
  free(z);
  return 0;
}

static int compression_main(void *arg)
{
  struct srv s;
  srv_start(&s, respond_bodies);
  weft_http_client *cl = client_new(NULL);
  char *p = payload(PAYLOAD_LEN);
  const char *paths[] = {"/gzip", "/zlib", "/rawdeflate"};
  for (int i = 0; i < 3; i++)
    expect_body(cl, srv_url(&s, paths[i]), 200, p);
  CHECK_EQ(atomic_load(&s.accepted), 1);
  weft_http_client_free(cl);

  /* not asked for: passed through undecoded */
  cl = client_new(&(weft_http_client_config){.flags = WEFT_HTTP_CLIENT_NO_COMPRESSION});
  weft_http_client_response *r;
  CHECK_EQ(get(cl, srv_url(&s, "/gzip"), &r), 0);
  if (r) {
    size_t len;
    const unsigned char *b = (const void *)weft_http_client_response_body(r, &len);
    CHECK(len > 2 && len < PAYLOAD_LEN && b[0] == 0x1f && b[1] == 0x8b);
    weft_http_client_response_free(r);
  }
  weft_http_client_free(cl);

  /* the cap counts decoded bytes */
  cl = client_new(&(weft_http_client_config){.max_body = PAYLOAD_LEN - 1});
  CHECK_EQ(get(cl, srv_url(&s, "/gzip"), &r), -EFBIG);
  CHECK_EQ(get(cl, srv_url(&s, "/big"), &r), -EFBIG);
  weft_http_client_free(cl);
  cl = client_new(
      &(weft_http_client_config){.max_body = 1000, .flags = WEFT_HTTP_CLIENT_TRUNCATE});
  int before = atomic_load(&s.accepted);
  CHECK_EQ(get(cl, srv_url(&s, "/big"), &r), 0);
  if (r) {
    size_t len;
    const char *b = weft_http_client_response_body(r, &len);
    CHECK_EQ(len, 1000);
    CHECK(memcmp(b, p, 1000) == 0);
    CHECK_EQ(weft_http_client_response_truncated(r), 1);
    weft_http_client_response_free(r);
  }
  expect_body(cl, srv_url(&s, "/cl"), 200, "hello"); /* the cut connection was not reused */
  CHECK_EQ(atomic_load(&s.accepted) - before, 2);
  weft_http_client_free(cl);
  free(p);
  srv_stop(&s);
  return checks_result();
}

static void test_compression(void **state)
{
  checks_reset();
  assert_int_equal(run_weft(2, compression_main, NULL), 0);
  ASSERT_NO_CHECK_FAILED();
}

static int bomb_main(void *arg)
{
  struct srv s;
  srv_start(&s, respond_bomb);
  weft_http_client *cl = client_new(&(weft_http_client_config){.max_body = 1 << 20});
  weft_http_client_response *r;
  CHECK_EQ(get(cl, srv_url(&s, "/"), &r), -EFBIG);
  weft_http_client_free(cl);
  cl = client_new(
      &(weft_http_client_config){.max_body = 1 << 20, .flags = WEFT_HTTP_CLIENT_TRUNCATE});
  CHECK_EQ(get(cl, srv_url(&s, "/"), &r), 0);
  if (r) {
    size_t len;
    weft_http_client_response_body(r, &len);
    CHECK_EQ(len, 1 << 20);
    CHECK_EQ(weft_http_client_response_truncated(r), 1);
    weft_http_client_response_free(r);
  }
  weft_http_client_free(cl);
  srv_stop(&s);
  return checks_result();
}

static void test_gzip_bomb(void **state)
{
  checks_reset();
  assert_int_equal(run_weft(2, bomb_main, NULL), 0);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- the per-host cap ---- */

struct cap_run {
  struct srv *s;
  weft_http_client *cl;
  weft_wg wg;
  atomic_int ok;
};

static void cap_worker(void *arg)
{
  struct cap_run *cr = arg;
  weft_http_client_response *r;
  int err = get(cr->cl, srv_url(cr->s, "/slow"), &r);
  CHECK_EQ(err, 0);
  if (!err) {
    CHECK_STR(weft_http_client_response_body(r, NULL), "slow");
    atomic_fetch_add(&cr->ok, 1);
  }
  weft_http_client_response_free(r);
  weft_wg_done(&cr->wg);
}

static int cap_main(void *arg)
{
  struct srv s;
  srv_start(&s, respond_bodies);
  atomic_store(&s.delay_ms, 30);
  struct cap_run cr = {.s = &s};
  cr.cl = client_new(&(weft_http_client_config){.max_conns_per_host = 2});
  enum { N = 8 };
  weft_wg_add(&cr.wg, N);
  for (int i = 0; i < N; i++)
    if (weft_go(cap_worker, &cr) != 0)
      setup_failed("weft_go", -ENOMEM);
  weft_wg_wait(&cr.wg);
  CHECK_EQ(atomic_load(&cr.ok), N);
  CHECK(atomic_load(&s.max_open) <= 2);
  CHECK(atomic_load(&s.accepted) <= 2);
  CHECK_EQ(atomic_load(&s.requests), N);

  /* a waiter beyond the cap gives up at its context's deadline */
  weft_http_client_free(cr.cl);
  cr.cl = client_new(&(weft_http_client_config){.max_conns_per_host = 1});
  atomic_store(&s.delay_ms, 600);
  weft_wg_add(&cr.wg, 1);
  atomic_store(&cr.ok, 0);
  weft_go(cap_worker, &cr);
  weft_sleep(MS(50));
  weft_ctx *ctx = weft_ctx_with_timeout(NULL, MS(100));
  int64_t t0 = weft_now();
  weft_http_client_response *r;
  CHECK_EQ(weft_http_client_get(cr.cl, ctx, srv_url(&s, "/slow"), &r), -ETIMEDOUT);
  CHECK(weft_now() - t0 < MS(500));
  weft_ctx_release(ctx);
  weft_wg_wait(&cr.wg);
  CHECK_EQ(atomic_load(&cr.ok), 1);
  weft_http_client_free(cr.cl);
  srv_stop(&s);
  return checks_result();
}

static void test_per_host_cap(void **state)
{
  checks_reset();
  run_weft_p1to4(cap_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- redirects ---- */

static int respond_redirects(struct sconn *c, const char *method, const char *target,
                             const char *req)
{
  char hdr[256];
  int port = c->s->port;
  if (strcmp(target, "/dir/rel") == 0) {
    sc_reply(c, 302, "Location: ../final?x=1\r\n", "moved", 5);
  } else if (strcmp(target, "/abs") == 0) {
    snprintf(hdr, sizeof hdr, "Location: http://127.0.0.1:%d/final\r\n", port);
    sc_reply(c, 301, hdr, "", 0);
  } else if (strcmp(target, "/303") == 0) {
    sc_reply(c, 303, "Location: /final\r\n", "", 0);
  } else if (strcmp(target, "/307") == 0) {
    sc_reply(c, 307, "Location: /final\r\n", "", 0);
  } else if (strncmp(target, "/loop/", 6) == 0) {
    snprintf(hdr, sizeof hdr, "Location: /loop/%d\r\n", atoi(target + 6) + 1);
    sc_reply(c, 302, hdr, "", 0);
  } else if (strcmp(target, "/other-host") == 0) {
    snprintf(hdr, sizeof hdr, "Location: http://localhost:%d/final\r\n", port);
    sc_reply(c, 302, hdr, "", 0);
  } else if (strcmp(target, "/mailto") == 0) {
    sc_reply(c, 302, "Location: mailto:a@b\r\n", "", 0);
  } else {
    sc_reply(c, 200, "", req, strlen(req)); /* /final: the request itself */
  }
  return 0;
}

/* Do req and return the final response's body (the request the server saw), or NULL. */
static char *redirected(weft_http_client *cl, weft_http_client_request *req, int *redirects,
                        char *url, size_t url_len)
{
  weft_http_client_response *r;
  int err = weft_http_client_do(cl, NULL, req, &r);
  CHECK_EQ(err, 0);
  if (err)
    return NULL;
  CHECK_EQ(weft_http_client_response_status(r), 200);
  *redirects = weft_http_client_response_redirects(r);
  snprintf(url, url_len, "%s", weft_http_client_response_url(r));
  char *body = strdup(weft_http_client_response_body(r, NULL));
  weft_http_client_response_free(r);
  return body;
}

static int redirects_main(void *arg)
{
  struct srv s;
  srv_start(&s, respond_redirects);
  weft_http_client *cl = client_new(&(weft_http_client_config){.max_redirects = 3});
  char url[256], want[256], *seen;
  int n;
  weft_http_client_request req = {.url = srv_url(&s, "/dir/rel")};
  if ((seen = redirected(cl, &req, &n, url, sizeof url))) {
    CHECK(strncmp(seen, "GET /final?x=1 HTTP/1.1\r\n", 25) == 0);
    CHECK_EQ(n, 1);
    CHECK_STR(url, srv_url(&s, "/final?x=1"));
    free(seen);
  }
  req = (weft_http_client_request){.url = srv_url(&s, "/abs")};
  if ((seen = redirected(cl, &req, &n, url, sizeof url))) {
    CHECK(strncmp(seen, "GET /final HTTP/1.1\r\n", 21) == 0);
    free(seen);
  }
  /* 303: POST becomes a GET without body; 307: method and body kept */
  req = (weft_http_client_request){
      .method = "POST", .url = srv_url(&s, "/303"), .body = "data", .body_len = 4};
  if ((seen = redirected(cl, &req, &n, url, sizeof url))) {
    CHECK(strncmp(seen, "GET /final HTTP/1.1\r\n", 21) == 0);
    CHECK(!strstr(seen, "data") && !strstr(seen, "Content-Length"));
    free(seen);
  }
  req.url = srv_url(&s, "/307");
  if ((seen = redirected(cl, &req, &n, url, sizeof url))) {
    CHECK(strncmp(seen, "POST /final HTTP/1.1\r\n", 22) == 0);
    CHECK(strstr(seen, "Content-Length: 4\r\n") && strstr(seen, "\r\n\r\ndata"));
    free(seen);
  }
  /* credentials do not follow to another host */
  const char *auth[] = {"Authorization", "Bearer x", "X-Keep", "1", NULL};
  req = (weft_http_client_request){.url = srv_url(&s, "/abs"), .headers = auth};
  if ((seen = redirected(cl, &req, &n, url, sizeof url))) {
    CHECK(strstr(seen, "Authorization: Bearer x\r\n")); /* same host */
    free(seen);
  }
  req.url = srv_url(&s, "/other-host");
  if ((seen = redirected(cl, &req, &n, url, sizeof url))) {
    CHECK(!strstr(seen, "Authorization"));
    CHECK(strstr(seen, "X-Keep: 1\r\n"));
    snprintf(want, sizeof want, "Host: localhost:%d\r\n", s.port);
    CHECK(strstr(seen, want));
    free(seen);
  }
  /* a loop: 3 redirects followed, the 4th fails */
  weft_http_client_response *r;
  int64_t before = atomic_load(&s.requests);
  CHECK_EQ(get(cl, srv_url(&s, "/loop/0"), &r), -ELOOP);
  CHECK_EQ(atomic_load(&s.requests) - before, 4);
  /* not an http(s) Location: the 3xx is the answer */
  CHECK_EQ(get(cl, srv_url(&s, "/mailto"), &r), 0);
  if (r) {
    CHECK_EQ(weft_http_client_response_status(r), 302);
    weft_http_client_response_free(r);
  }
  weft_http_client_free(cl);

  /* max_redirects 0: the 3xx is returned */
  cl = client_new(NULL);
  CHECK_EQ(get(cl, srv_url(&s, "/dir/rel"), &r), 0);
  if (r) {
    CHECK_EQ(weft_http_client_response_status(r), 302);
    CHECK_STR(weft_http_client_response_header(r, "location"), "../final?x=1");
    CHECK_STR(weft_http_client_response_body(r, NULL), "moved");
    weft_http_client_response_free(r);
  }
  weft_http_client_free(cl);
  srv_stop(&s);
  return checks_result();
}

static void test_redirects(void **state)
{
  checks_reset();
  assert_int_equal(run_weft(2, redirects_main, NULL), 0);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- failures ---- */

/* Read requests and never answer: /stall waits for the client to go. */
static int respond_stall(struct sconn *c, const char *method, const char *target,
                         const char *req)
{
  return 0;
}

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

static int timeout_main(void *arg)
{
  struct srv s;
  srv_start(&s, respond_stall);
  weft_http_client *cl = client_new(&(weft_http_client_config){.timeout = MS(200)});
  weft_http_client_response *r;
  int64_t t0 = weft_now();
  CHECK_EQ(get(cl, srv_url(&s, "/"), &r), -ETIMEDOUT);
  int64_t took = weft_now() - t0;
  CHECK(took >= MS(190) && took < LATE);
  /* a context deadline shorter than the client's timeout */
  weft_ctx *ctx = weft_ctx_with_timeout(NULL, MS(50));
  t0 = weft_now();
  CHECK_EQ(weft_http_client_get(cl, ctx, srv_url(&s, "/"), &r), -ETIMEDOUT);
  CHECK(weft_now() - t0 < MS(190));
  weft_ctx_release(ctx);
  /* cancellation mid-request */
  struct canceller k = {.ctx = weft_ctx_with_cancel(NULL), .after = MS(50)};
  weft_http_client_free(cl);
  cl = client_new(&(weft_http_client_config){.timeout = MS(10000)});
  weft_wg_add(&k.wg, 1);
  weft_go(cancel_later, &k);
  t0 = weft_now();
  CHECK_EQ(weft_http_client_get(cl, k.ctx, srv_url(&s, "/"), &r), -ECANCELED);
  CHECK(weft_now() - t0 < LATE);
  weft_wg_wait(&k.wg);
  /* a context already done fails at once */
  CHECK_EQ(weft_http_client_get(cl, k.ctx, srv_url(&s, "/"), &r), -ECANCELED);
  weft_ctx_release(k.ctx);
  weft_http_client_free(cl);
  srv_stop(&s);
  return checks_result();
}

static void test_timeout_cancel(void **state)
{
  checks_reset();
  run_weft_p1to4(timeout_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

static int connect_errors_main(void *arg)
{
  weft_http_client *cl = client_new(&(weft_http_client_config){.timeout = MS(15000)});
  weft_http_client_response *r;
  int lfd = weft_listen("tcp", "127.0.0.1:0", 0);
  int port = weft_local_port(lfd);
  weft_close(lfd);
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
  CHECK_EQ(get(cl, url, &r), -ECONNREFUSED);
  CHECK_EQ(get(cl, "http://no-such-host.invalid/", &r), -WEFT_EDNS);
  weft_http_client_free(cl);
  return checks_result();
}

static void test_connect_errors(void **state)
{
  checks_reset();
  assert_int_equal(run_weft(2, connect_errors_main, NULL), 0);
  ASSERT_NO_CHECK_FAILED();
}

static int respond_malformed(struct sconn *c, const char *method, const char *target,
                             const char *req)
{
  if (strcmp(target, "/status") == 0) {
    sc_printf(c, "HTTP/1.1 2x0 OK\r\n\r\n");
  } else if (strcmp(target, "/chunk") == 0) {
    sc_printf(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
  } else if (strcmp(target, "/headers") == 0) {
    char *m = malloc(8192);
    int k = sprintf(m, "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < 101; i++)
      k += sprintf(m + k, "X-%d: v\r\n", i);
    k += sprintf(m + k, "Content-Length: 0\r\n\r\n");
    sc_send(c, m, (size_t)k);
    free(m);
  } else if (strcmp(target, "/bighead") == 0) {
    char *m = calloc(1, 70000);
    memset(m, 'v', 69999);
    sc_printf(c, "HTTP/1.1 200 OK\r\nX: ");
    sc_send(c, m, 69999);
    sc_printf(c, "\r\nContent-Length: 0\r\n\r\n");
    free(m);
  } else if (strcmp(target, "/gzip") == 0) {
    sc_reply(c, 200, "Content-Encoding: gzip\r\n", "not gzip at all", 15);
  } else if (strcmp(target, "/short") == 0) {
    sc_printf(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
  } else if (strcmp(target, "/extra") == 0) {
    sc_printf(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n\r\n");
    return 0;
  } else if (strcmp(target, "/empty") != 0) {
    sc_reply(c, 200, "", "fine", 4);
    return 0;
  }
  return 1; /* /empty: closed without a byte */
}

static int malformed_main(void *arg)
{
  struct srv s;
  srv_start(&s, respond_malformed);
  weft_http_client *cl = client_new(NULL);
  weft_http_client_response *r;
  const char *proto[] = {"/status", "/chunk", "/headers", "/bighead", "/gzip"};
  for (size_t i = 0; i < sizeof proto / sizeof proto[0]; i++)
    CHECK_EQ(get(cl, srv_url(&s, proto[i]), &r), -EPROTO);
  CHECK_EQ(get(cl, srv_url(&s, "/short"), &r), -ECONNRESET);
  CHECK_EQ(get(cl, srv_url(&s, "/empty"), &r), -ECONNRESET);
  /* bytes after the response: answered, but the connection is not reused */
  int before = atomic_load(&s.accepted);
  expect_body(cl, srv_url(&s, "/extra"), 200, "ok");
  expect_body(cl, srv_url(&s, "/fine"), 200, "fine");
  CHECK_EQ(atomic_load(&s.accepted) - before, 2);
  weft_http_client_free(cl);
  srv_stop(&s);
  return checks_result();
}

static void test_malformed(void **state)
{
  checks_reset();
  assert_int_equal(run_weft(2, malformed_main, NULL), 0);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- stale pooled connections ---- */

/* /stale: the first request on a connection is answered; a later one read and dropped
 * without a byte (a server that timed the idle connection out just as it arrived).
 * /gone: answered, then the connection is closed at once (keep-alive promised). */
static int respond_stale(struct sconn *c, const char *method, const char *target,
                         const char *req)
{
  if (strcmp(target, "/stale") == 0 && c->reqno > 0)
    return 1;
  sc_reply(c, 200, "", "fresh", 5);
  return strcmp(target, "/gone") == 0;
}

static int stale_main(void *arg)
{
  struct srv s;
  srv_start(&s, respond_stale);
  weft_http_client *cl = client_new(NULL);
  expect_body(cl, srv_url(&s, "/stale"), 200, "fresh");
  expect_body(cl, srv_url(&s, "/stale"), 200, "fresh"); /* retried on a new connection */
  CHECK_EQ(atomic_load(&s.accepted), 2);
  CHECK_EQ(atomic_load(&s.requests), 3);
  /* not idempotent: not retried */
  weft_http_client_request post = {.method = "POST", .url = srv_url(&s, "/stale")};
  weft_http_client_response *r;
  CHECK_EQ(weft_http_client_do(cl, NULL, &post, &r), -ECONNRESET);
  CHECK_EQ(atomic_load(&s.accepted), 2);
  /* closed while idle: noticed before use */
  expect_body(cl, srv_url(&s, "/gone"), 200, "fresh");
  weft_sleep(MS(50));
  expect_body(cl, srv_url(&s, "/gone"), 200, "fresh");
  CHECK_EQ(atomic_load(&s.accepted), 4);
  CHECK_EQ(atomic_load(&s.requests), 6);
  weft_http_client_free(cl);

  /* idle timeout: an old idle connection is not used */
  cl = client_new(&(weft_http_client_config){.idle_timeout = MS(30)});
  expect_body(cl, srv_url(&s, "/x"), 200, "fresh");
  weft_sleep(MS(60));
  expect_body(cl, srv_url(&s, "/x"), 200, "fresh");
  CHECK_EQ(atomic_load(&s.accepted), 6);
  weft_http_client_free(cl);
  srv_stop(&s);
  return checks_result();
}

static void test_stale_retry(void **state)
{
  checks_reset();
  run_weft_p1to4(stale_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- HTTPS ---- */

static struct test_cert tls_cert;

static int https_main(void *arg)
{
  const char *cert = tls_cert.cert, *key = tls_cert.key;
  struct srv s;
  weft_tls_config *tls = weft_tls_config_new(
      &(weft_tls_options){.flags = WEFT_TLS_SERVER, .cert_file = cert, .key_file = key}, NULL);
  if (!tls)
    setup_failed("server TLS config", -EINVAL);
  srv_start_tls(&s, respond_bodies, tls);
  weft_http_client *cl = client_new(&(weft_http_client_config){.ca_file = cert});
  expect_body(cl, srv_url(&s, "/cl"), 200, "hello");
  expect_body(cl, srv_url(&s, "/chunked"), 200, "hello world");
  char *p = payload(PAYLOAD_LEN);
  expect_body(cl, srv_url(&s, "/gzip"), 200, p);
  free(p);
  char url[128];
  snprintf(url, sizeof url, "https://localhost:%d/cl", s.port);
  expect_body(cl, url, 200, "hello");
  CHECK_EQ(atomic_load(&s.accepted), 2); /* 127.0.0.1 and localhost are two pool keys */
  weft_http_client_free(cl);

  weft_http_client_response *r;
  cl = client_new(NULL); /* the system's trust store does not know the certificate */
  CHECK_EQ(get(cl, srv_url(&s, "/cl"), &r), -WEFT_ECERT);
  weft_http_client_free(cl);
  cl = client_new(&(weft_http_client_config){.flags = WEFT_HTTP_CLIENT_INSECURE});
  expect_body(cl, srv_url(&s, "/cl"), 200, "hello");
  weft_http_client_free(cl);
  /* a plain HTTP request to a TLS port fails cleanly */
  cl = client_new(&(weft_http_client_config){.timeout = MS(2000)});
  snprintf(url, sizeof url, "http://127.0.0.1:%d/cl", s.port);
  int err = get(cl, url, &r);
  CHECK(err == -EPROTO || err == -ECONNRESET);
  weft_http_client_free(cl);
  srv_stop(&s);
  weft_tls_config_free(tls);
  return checks_result();
}

static void test_https(void **state)
{
  if (test_cert_make(&tls_cert) != 0) {
    test_cert_remove(&tls_cert);
    skip();
  }
  checks_reset();
  int rc = run_weft(2, https_main, NULL);
  test_cert_remove(&tls_cert);
  assert_int_equal(rc, 0);
  ASSERT_NO_CHECK_FAILED();
}

static void test_client_new(void **state)
{
  struct weft_error *err = NULL;
  weft_http_client *cl =
      weft_http_client_new(&(weft_http_client_config){.ca_file = "/nonexistent/ca.pem"}, &err);
  assert_null(cl);
  assert_non_null(err);
  assert_int_not_equal(weft_error_code(err), 0);
  weft_error_release(err);
  weft_http_client_free(NULL);
  weft_http_client_response_free(NULL);
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_url_parse),      cmocka_unit_test(test_url_resolve),
      cmocka_unit_test(test_parser),         cmocka_unit_test(test_parser_decode),
      cmocka_unit_test(test_client_new),     cmocka_unit_test(test_bodies),
      cmocka_unit_test(test_request_format), cmocka_unit_test(test_bad_requests),
      cmocka_unit_test(test_compression),    cmocka_unit_test(test_gzip_bomb),
      cmocka_unit_test(test_per_host_cap),   cmocka_unit_test(test_redirects),
      cmocka_unit_test(test_timeout_cancel), cmocka_unit_test(test_connect_errors),
      cmocka_unit_test(test_malformed),      cmocka_unit_test(test_stale_retry),
      cmocka_unit_test(test_https),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
