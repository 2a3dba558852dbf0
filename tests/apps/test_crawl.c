/* Integration tests of weft-crawl (apps/crawl/, contract: shared/specs/crawler.md).
 *
 * Each test starts a local site in the weft runtime: a weft HTTP server on 127.0.0.1:0
 * (reached as two hosts, "127.0.0.1:P" and "localhost:P") and, for the TLS test, an
 * HTTPS server with a self-signed certificate. It then runs the built weft-crawl as a
 * child process (posix_spawn on a blocking-pool thread, stdout, stderr and stdin piped,
 * killed after a timeout), parses every stdout line with jansson and checks the lines
 * against the contract: exactly one line per URL, the right status, error, links, bytes,
 * truncated, attempts, depth and title. The site logs every request, so a test also
 * checks that no request went unreported, and counts its slow pages in flight per host,
 * so that --per-host and --concurrency can be checked. WEFT_CRAWL_BIN runs the tests
 * against another crawler binary (the Go peer passes all but the two rules it reads
 * differently: robots.txt answering 5xx, and the never-started count in the summary).
 *
 * Checks run in the test function after run_weft returns (cmocka's assertions must not
 * run on a coroutine stack); the coroutine side only records what happened. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <zlib.h>

#include "coro_check.h"
#include "weft/weft.h"
#include "fixture.h"
#include "weft_test.h"

extern char **environ;

/* ---- scenarios: what to run, and what happened ---- */

enum {
  MAX_RUNS = 3,
  MAX_ARGS = 96,
  MAX_LINES = 512,
  MAX_LOG = 4096,
  NHOSTS = 3, /* 0: 127.0.0.1:P, 1: localhost:P, 2: the TLS server */
  NKEYS = 16, /* /fail/{k} and /flaky/{k} counters */
};

enum { ROBOTS_RULES, ROBOTS_404, ROBOTS_500 };

/* One run of weft-crawl. Strings are templates: {B} is http://127.0.0.1:P, {L}
 * http://localhost:P, {T} https://localhost:TLSPORT, {X} http://127.0.0.1:<closed port>. */
struct run_spec {
  char *args[MAX_ARGS]; /* owned templates, NULL-terminated */
  int nargs;
  char *stdin_data;  /* owned template, or NULL: stdin is /dev/null */
  int timeout_ms;    /* the child is killed after this */
  int sigint_active; /* > 0: SIGINT once the site has this many requests in flight */
};

struct run_result {
  char *out, *err;  /* the child's stdout and stderr */
  int status;       /* its wait status */
  bool timed_out;   /* killed after timeout_ms */
  bool sigint_sent; /* SIGINT was sent */
  int64_t elapsed_ms;
  int64_t sigint_exit_ms; /* from SIGINT to the child's exit */
  json_t *lines[MAX_LINES];
  int nlines, bad_lines;
  char **log; /* "H TARGET" of every request the site saw during the run */
  int nlog;
  int host_max[NHOSTS], global_max; /* peaks of /slow requests in flight */
  int key_count[NKEYS];
};

struct scenario {
  int robots_mode;
  bool tls;
  int nruns;
  struct run_spec spec[MAX_RUNS];
  struct run_result res[MAX_RUNS];
  char base[64], alt[64], tls_base[64], closed[64];
  int port;
  bool no_binary;
};

static struct test_cert tls_cert;

/* ---- the local site ---- */

struct site {
  struct scenario *sc;
  weft_http_router *router;
  weft_http_server *server, *tls_server;
  weft_tls_config *tls;
  int fd, tls_fd, port, tls_port;
  weft_wg served;
  atomic_int stopping;
  atomic_int active;  /* requests in the handlers */
  atomic_int hanging; /* of them, in h_hang, which end only when the site stops */
  /* /slow requests between arrival and answer (in all and per host), and the peaks: a
   * request counts only while the crawler is surely waiting for it. */
  atomic_int slow_active, slow_max;
  atomic_int host_active[NHOSTS], host_max[NHOSTS];
  atomic_int key_count[NKEYS];
  weft_mutex mu;      /* guards log and nlog */
  char *log[MAX_LOG]; /* guarded by mu */
  int nlog;           /* guarded by mu */
  char host_names[2][64];
};

static struct site *the_site; /* the handlers' argument */

/* Replace every {P} in tmpl by the port; a new string. */
static char *expand_port(const char *tmpl, int port)
{
  size_t cap = strlen(tmpl) * 2 + 64, n = 0;
  char *out = malloc(cap);
  for (const char *p = tmpl; *p; p++) {
    if (n + 16 > cap)
      out = realloc(out, cap *= 2);
    if (strncmp(p, "{P}", 3) == 0) {
      n += (size_t)sprintf(out + n, "%d", port);
      p += 2;
    } else {
      out[n++] = *p;
    }
  }
  out[n] = '\0';
  return out;
}

/* Pages by path: the HTML is a template ({P}: the plain server's port). */
static const struct page {
  const char *path, *html;
} pages[] = {
    {"/site/index.html",
     "<!DOCTYPE html><html><head><title>Index Page</title></head><body>\n"
     "<p><a href=\"a.html\">A</a> and <a href=\"a.html\">A again</a></p>\n"
     "<a href=\"/site/b.html\">B</a>\n"
     "<a href=\"http://127.0.0.1:{P}/site/c.html\">C</a>\n"
     "<a href=\"http://localhost:{P}/site/other.html\">on the other host</a>\n"
     "<a href=\"mailto:someone@example.com\">mail</a>\n"
     "<a href=\"javascript:void(0)\">script</a>\n"
     "<a href=\"/private/secret.html\">secret</a>\n"
     "</body></html>\n"},
    {"/site/a.html",
     "<html><head><title>Page A</title></head><body><a href=\"deep.html\">deep</a>"
     "<a href=\"index.html\">home</a></body></html>"},
    {"/site/b.html",
     "<html><head><base href=\"http://127.0.0.1:{P}/base/\"><title>Page B</title></head>"
     "<body><a href=\"x.html\">x</a></body></html>"},
    {"/site/c.html", "<html><head><title>Page C</title></head><body>no links</body></html>"},
    {"/site/other.html", "<html><head><title>Other</title></head></html>"},
    {"/site/deep.html",
     "<html><head><title>Deep</title></head><body><a href=\"deeper.html\">on</a></body>"},
    {"/site/deeper.html", "<html><head><title>Deeper</title></head></html>"},
    {"/base/x.html", "<html><head><title>X</title></head></html>"},
    {"/private/secret.html", "<html><head><title>Secret</title></head></html>"},
    /* Broken in many ways: unquoted, single-quoted and spaced attributes, upper case,
     * junk attributes and bytes, unclosed and stray tags, non-HTTP schemes, a
     * protocol-relative link to the other host, white space around a URL, a tag cut by
     * the end of the document. 7 distinct http links, 6 of them on this host. */
    {"/m/index.html",
     "<html><head><title>Malformed page</title>\n"
     "<body bgcolor=white <p>unclosed <div><span><table><tr><td>\n"
     "<a href=unquoted.html>one</a>\n"
     "<a href='single.html'>two\n"
     "<A HREF=\"UPPER.html\">three</A>\n"
     "<a  class=x   href = \"spaced.html\"  >four\n"
     "<a href=\"  trimmed.html  \">five</a>\n"
     "<a href=\"//localhost:{P}/m/proto-relative.html\">six</a>\n"
     "<a href=\"javascript:alert(1)\">js</a><a href=\"mailto:x@y\">m</a>"
     "<a href=\"ftp://127.0.0.1/f\">ftp</a><a href=\"data:text/html,hi\">d</a>\n"
     "&&& <<< >>> \x01\x02\xff\xfe junk </p></p></div></table></i></b>\n"
     "<a href=\"unquoted.html\">dup</a>\n"
     "<a href=\"last.html\">seven</a"},
};

static const char *page_html(const char *path)
{
  for (size_t i = 0; i < sizeof pages / sizeof pages[0]; i++)
    if (strcmp(pages[i].path, path) == 0)
      return pages[i].html;
  return NULL;
}

static void send_html(weft_http_response *w, int status, const char *html)
{
  weft_http_response_send(w, status, "text/html; charset=utf-8", html, strlen(html));
}

static void h_page(weft_http_response *w, weft_http_request *r, void *arg)
{
  const char *html = page_html(weft_http_request_path(r));
  char buf[256];
  if (!html && strncmp(weft_http_request_path(r), "/m/", 3) == 0) {
    /* Any other page under /m/: a small page named after itself. */
    snprintf(buf, sizeof buf, "<html><head><title>%s</title></head></html>",
             weft_http_request_path_value(r, "name"));
    html = buf;
  }
  if (!html) {
    weft_http_response_error(w, 404, NULL);
    return;
  }
  char *body = expand_port(html, the_site->port);
  send_html(w, 200, body);
  free(body);
}

static void h_robots(weft_http_response *w, weft_http_request *r, void *arg)
{
  static const char rules[] = "# test rules\n"
                              "User-agent: *\n"
                              "Disallow: /private/\n"
                              "\n"
                              "User-agent: some-other-bot\n"
                              "Disallow: /\n";
  switch (the_site->sc->robots_mode) {
  case ROBOTS_RULES:
    weft_http_response_send(w, 200, "text/plain", rules, sizeof rules - 1);
    break;
  case ROBOTS_404:
    weft_http_response_error(w, 404, NULL);
    break;
  default:
    weft_http_response_error(w, 500, NULL);
    break;
  }
}

/* Sleep ms milliseconds in steps, giving up when the site stops. */
static void nap(int ms)
{
  int64_t end = weft_now() + MS(ms);
  while (weft_now() < end && !atomic_load(&the_site->stopping))
    weft_sleep(MS(10));
}

static void raise_max(atomic_int *max, int v)
{
  int m = atomic_load(max);
  while (v > m && !atomic_compare_exchange_weak(max, &m, v))
    ;
}

static int host_index(struct site *s, weft_http_request *r, bool tls)
{
  if (tls)
    return 2;
  return strcmp(weft_http_request_host(r), s->host_names[1]) == 0 ? 1 : 0;
}

/* Answers after ?ms= milliseconds; counted in flight until just before it answers (the
 * crawler cannot send its next request on this connection before that). */
static void h_slow(weft_http_response *w, weft_http_request *r, void *arg)
{
  struct site *s = the_site;
  char ms[16] = "100";
  int h = host_index(s, r, false);
  raise_max(&s->slow_max, atomic_fetch_add(&s->slow_active, 1) + 1);
  raise_max(&s->host_max[h], atomic_fetch_add(&s->host_active[h], 1) + 1);
  weft_http_request_query_value(r, "ms", ms, sizeof ms);
  nap(atoi(ms));
  atomic_fetch_sub(&s->host_active[h], 1);
  atomic_fetch_sub(&s->slow_active, 1);
  send_html(w, 200, "<html><head><title>slow</title></head></html>");
}

/* Never answers: holds the request until the site stops. */
static void h_hang(weft_http_response *w, weft_http_request *r, void *arg)
{
  atomic_fetch_add(&the_site->hanging, 1);
  while (!atomic_load(&the_site->stopping))
    weft_sleep(MS(10));
  atomic_fetch_sub(&the_site->hanging, 1);
  weft_http_response_close_after(w);
  weft_http_response_error(w, 503, NULL);
}

static int key_of(weft_http_request *r)
{
  int k = atoi(weft_http_request_path_value(r, "k"));
  return k >= 0 && k < NKEYS ? k : 0;
}

/* Always 500; counts the attempts. */
static void h_fail(weft_http_response *w, weft_http_request *r, void *arg)
{
  atomic_fetch_add(&the_site->key_count[key_of(r)], 1);
  weft_http_response_error(w, 500, NULL);
}

/* 500 twice, then a page. */
static void h_flaky(weft_http_response *w, weft_http_request *r, void *arg)
{
  if (atomic_fetch_add(&the_site->key_count[key_of(r)], 1) < 2)
    weft_http_response_error(w, 503, NULL);
  else
    send_html(w, 200, "<html><head><title>Third time</title></head></html>");
}

static void h_status(weft_http_response *w, weft_http_request *r, void *arg)
{
  weft_http_response_error(w, atoi(weft_http_request_path_value(r, "code")), NULL);
}

static void redirect(weft_http_response *w, const char *location)
{
  weft_http_response_set_header(w, "Location", location);
  weft_http_response_send(w, 302, "text/plain", "moved\n", 6);
}

/* /redir/N: a relative redirect to /redir/N-1; /redir/0 is a page. */
static void h_redir(weft_http_response *w, weft_http_request *r, void *arg)
{
  int n = atoi(weft_http_request_path_value(r, "n"));
  char loc[64];
  if (n <= 0) {
    send_html(w, 200, "<html><head><title>Arrived</title></head></html>");
    return;
  }
  snprintf(loc, sizeof loc, "/redir/%d", n - 1);
  redirect(w, loc);
}

static void h_loop(weft_http_response *w, weft_http_request *r, void *arg)
{
  redirect(w, "/loop");
}

/* To the other host, absolute. */
static void h_redir_other(weft_http_response *w, weft_http_request *r, void *arg)
{
  char loc[96];
  snprintf(loc, sizeof loc, "http://localhost:%d/site/c.html", the_site->port);
  redirect(w, loc);
}

enum { HUGE_LEN = 1000000, MAX_BODY = 100000, TEXT_LEN = 20000 };

/* A body of len bytes, written in pieces (it goes out chunked). */
static void send_big(weft_http_response *w, size_t len)
{
  char chunk[8192];
  memset(chunk, 'x', sizeof chunk);
  weft_http_response_set_header(w, "Content-Type", "text/plain");
  for (size_t done = 0; done < len;) {
    size_t n = len - done < sizeof chunk ? len - done : sizeof chunk;
    if (weft_http_response_write(w, chunk, n) < 0)
      return;
    done += n;
  }
}

static void h_huge(weft_http_response *w, weft_http_request *r, void *arg)
{
  send_big(w, HUGE_LEN);
}

static void h_exact(weft_http_response *w, weft_http_request *r, void *arg)
{
  send_big(w, MAX_BODY);
}

/* The HTML page the compressed endpoints serve: a title, one link, TEXT_LEN bytes in
 * all. */
static char *compressible_page(const char *title, size_t *len)
{
  char *page = malloc(TEXT_LEN + 1);
  int n = snprintf(page, TEXT_LEN,
                   "<html><head><title>%s</title></head><body>"
                   "<a href=\"/site/c.html\">c</a><p>",
                   title);
  memset(page + n, 'z', TEXT_LEN - (size_t)n);
  memcpy(page + TEXT_LEN - 5, "</p>\n", 5);
  page[TEXT_LEN] = '\0';
  *len = TEXT_LEN;
  return page;
}

/* zlib's deflate of data: window_bits 31 for gzip, 15 for the zlib format. */
static unsigned char *compress_with(const void *data, size_t len, int window_bits,
                                    size_t *out_len)
{
  z_stream z = {0};
  if (deflateInit2(&z, 6, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return NULL;
  size_t cap = deflateBound(&z, (uLong)len) + 32;
  unsigned char *out = malloc(cap);
  z.next_in = (unsigned char *)data;
  z.avail_in = (uInt)len;
  z.next_out = out;
  z.avail_out = (uInt)cap;
  int rc = deflate(&z, Z_FINISH);
  *out_len = z.total_out;
  deflateEnd(&z);
  if (rc != Z_STREAM_END) {
    free(out);
    return NULL;
  }
  return out;
}

static void send_encoded(weft_http_response *w, const char *coding, const char *type,
                         const void *data, size_t len, int window_bits)
{
  size_t zlen = 0;
  unsigned char *z = compress_with(data, len, window_bits, &zlen);
  if (!z) {
    weft_http_response_error(w, 500, "compression failed");
    return;
  }
  weft_http_response_set_header(w, "Content-Encoding", coding);
  weft_http_response_send(w, 200, type, z, zlen);
  free(z);
}

static void h_gzip(weft_http_response *w, weft_http_request *r, void *arg)
{
  size_t len;
  char *page = compressible_page("Gzipped", &len);
  send_encoded(w, "gzip", "text/html", page, len, 31);
  free(page);
}

static void h_deflate(weft_http_response *w, weft_http_request *r, void *arg)
{
  size_t len;
  char *page = compressible_page("Deflated", &len);
  send_encoded(w, "deflate", "text/html", page, len, 15);
  free(page);
}

/* HUGE_LEN zeros, gzipped to about a kilobyte: the cap counts decoded bytes. */
static void h_gzip_huge(weft_http_response *w, weft_http_request *r, void *arg)
{
  char *zeros = calloc(1, HUGE_LEN);
  send_encoded(w, "gzip", "application/octet-stream", zeros, HUGE_LEN, 31);
  free(zeros);
}

static void h_bad_gzip(weft_http_response *w, weft_http_request *r, void *arg)
{
  static const char junk[] = "this is not gzip at all, just text pretending to be";
  weft_http_response_set_header(w, "Content-Encoding", "gzip");
  weft_http_response_send(w, 200, "text/html", junk, sizeof junk - 1);
}

static const struct route {
  const char *pattern;
  weft_http_handler_fn fn;
} routes[] = {
    {"GET /robots.txt", h_robots},
    {"GET /site/{name}", h_page},
    {"GET /base/{name}", h_page},
    {"GET /private/{name}", h_page},
    {"GET /m/{name}", h_page},
    {"GET /slow", h_slow},
    {"GET /hang", h_hang},
    {"GET /fail/{k}", h_fail},
    {"GET /flaky/{k}", h_flaky},
    {"GET /status/{code}", h_status},
    {"GET /redir/{n}", h_redir},
    {"GET /loop", h_loop},
    {"GET /redir-other", h_redir_other},
    {"GET /huge", h_huge},
    {"GET /exact", h_exact},
    {"GET /gzip", h_gzip},
    {"GET /deflate", h_deflate},
    {"GET /gzip-huge", h_gzip_huge},
    {"GET /bad-gzip", h_bad_gzip},
};

/* Every request: logged and counted while in the handler, then routed. */
static void site_handler(weft_http_response *w, weft_http_request *r, void *arg)
{
  struct site *s = the_site;
  int h = host_index(s, r, arg != NULL);
  char *entry = malloc(strlen(weft_http_request_target(r)) + 4);
  sprintf(entry, "%d %s", h, weft_http_request_target(r));
  weft_mutex_lock(&s->mu);
  if (s->nlog < MAX_LOG)
    s->log[s->nlog++] = entry;
  else
    free(entry);
  weft_mutex_unlock(&s->mu);
  atomic_fetch_add(&s->active, 1);
  weft_http_router_serve(w, r, s->router);
  atomic_fetch_sub(&s->active, 1);
}

static void serve_plain(void *arg)
{
  struct site *s = arg;
  CHECK_EQ(weft_http_server_serve(s->server, s->fd), 0);
  weft_wg_done(&s->served);
}

static void serve_tls(void *arg)
{
  struct site *s = arg;
  CHECK_EQ(weft_http_server_serve(s->tls_server, s->tls_fd), 0);
  weft_wg_done(&s->served);
}

/* A port nothing listens on: bound, then closed. */
static int closed_port(void)
{
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t alen = sizeof a;
  int port = 0;
  if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
      getsockname(fd, (struct sockaddr *)&a, &alen) == 0)
    port = ntohs(a.sin_port);
  close(fd);
  return port;
}

static void site_start(struct site *s, struct scenario *sc)
{
  memset(s, 0, sizeof *s);
  s->sc = sc;
  the_site = s;
  weft_mutex_init(&s->mu);
  s->router = weft_http_router_new();
  for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
    CHECK_EQ(weft_http_router_handle(s->router, routes[i].pattern, routes[i].fn, NULL), 0);
  s->server = weft_http_server_new(&(weft_http_server_config){.handler = site_handler});
  s->fd = weft_listen("tcp", "127.0.0.1:0", 0);
  CHECK(s->fd >= 0);
  s->port = weft_local_port(s->fd);
  snprintf(s->host_names[0], sizeof s->host_names[0], "127.0.0.1:%d", s->port);
  snprintf(s->host_names[1], sizeof s->host_names[1], "localhost:%d", s->port);
  weft_wg_init(&s->served);
  weft_wg_add(&s->served, 1);
  weft_go(serve_plain, s);
  sc->port = s->port;
  snprintf(sc->base, sizeof sc->base, "http://127.0.0.1:%d", s->port);
  snprintf(sc->alt, sizeof sc->alt, "http://localhost:%d", s->port);
  snprintf(sc->closed, sizeof sc->closed, "http://127.0.0.1:%d", closed_port());
  if (!sc->tls)
    return;
  s->tls = weft_tls_config_new(&(weft_tls_options){.flags = WEFT_TLS_SERVER,
                                                   .cert_file = tls_cert.cert,
                                                   .key_file = tls_cert.key},
                               NULL);
  CHECK(s->tls != NULL);
  s->tls_server = weft_http_server_new(
      &(weft_http_server_config){.handler = site_handler, .handler_arg = s, .tls = s->tls});
  s->tls_fd = weft_listen("tcp", "127.0.0.1:0", 0);
  CHECK(s->tls_fd >= 0);
  s->tls_port = weft_local_port(s->tls_fd);
  snprintf(sc->tls_base, sizeof sc->tls_base, "https://localhost:%d", s->tls_port);
  weft_wg_add(&s->served, 1);
  weft_go(serve_tls, s);
}

static void site_stop(struct site *s)
{
  atomic_store(&s->stopping, 1);
  weft_http_server_shutdown(s->server, weft_now() + MS(3000));
  if (s->tls_server)
    weft_http_server_shutdown(s->tls_server, weft_now() + MS(3000));
  weft_wg_wait(&s->served);
  weft_close(s->fd);
  weft_http_server_free(s->server);
  if (s->tls_server) {
    weft_close(s->tls_fd);
    weft_http_server_free(s->tls_server);
    weft_tls_config_free(s->tls);
  }
  weft_http_router_free(s->router);
  for (int i = 0; i < s->nlog; i++)
    free(s->log[i]);
  the_site = NULL;
}

/* Move what the site saw during a run into res, and start counting afresh. */
static void site_snapshot(struct site *s, struct run_result *res)
{
  weft_mutex_lock(&s->mu);
  res->log = malloc(sizeof(char *) * (size_t)(s->nlog + 1));
  memcpy(res->log, s->log, sizeof(char *) * (size_t)s->nlog);
  res->nlog = s->nlog;
  s->nlog = 0;
  weft_mutex_unlock(&s->mu);
  res->global_max = atomic_exchange(&s->slow_max, 0);
  for (int h = 0; h < NHOSTS; h++)
    res->host_max[h] = atomic_exchange(&s->host_max[h], 0);
  for (int k = 0; k < NKEYS; k++)
    res->key_count[k] = atomic_exchange(&s->key_count[k], 0);
}

/* ---- running weft-crawl ---- */

/* Replace {B}, {L}, {T} and {X} in tmpl; a new string. */
static char *expand(const struct scenario *sc, const char *tmpl)
{
  size_t cap = strlen(tmpl) + 256, n = 0;
  char *out = malloc(cap);
  for (const char *p = tmpl; *p; p++) {
    const char *sub = NULL;
    if (p[0] == '{' && p[1] && p[2] == '}') {
      switch (p[1]) {
      case 'B':
        sub = sc->base;
        break;
      case 'L':
        sub = sc->alt;
        break;
      case 'T':
        sub = sc->tls_base;
        break;
      case 'X':
        sub = sc->closed;
        break;
      }
    }
    if (n + 80 > cap)
      out = realloc(out, cap *= 2);
    if (sub) {
      n += (size_t)sprintf(out + n, "%s", sub);
      p += 2;
    } else {
      out[n++] = *p;
    }
  }
  out[n] = '\0';
  return out;
}

struct runner {
  char **argv;
  const char *stdin_data;
  const struct run_spec *spec;
  struct run_result *res;
  atomic_int *active; /* the site's in-flight count, for sigint_active */
};

struct buf {
  char *data;
  size_t len, cap;
};

/* Read what fd has into b; false at the end (or on error). */
static bool drain(int fd, struct buf *b)
{
  if (b->len + 65536 > b->cap) {
    b->cap = b->cap ? b->cap * 2 : 131072;
    b->data = realloc(b->data, b->cap);
  }
  ssize_t r = read(fd, b->data + b->len, b->cap - b->len - 1);
  if (r < 0 && (errno == EINTR || errno == EAGAIN))
    return true;
  if (r <= 0)
    return false;
  b->len += (size_t)r;
  return true;
}

static pid_t spawn_crawl(struct runner *rn, int in[2], int out[2], int err[2])
{
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  sigset_t none, defaults;
  pid_t pid = -1;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  posix_spawnattr_init(&attr);
  /* This pool thread may block signals the runtime handles: the child starts clean. */
  sigemptyset(&none);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGPIPE);
  sigaddset(&defaults, SIGTERM);
  sigaddset(&defaults, SIGCHLD);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  if (posix_spawn(&pid, app_bin, &fa, &attr, rn->argv, environ) != 0)
    pid = -1;
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  return pid;
}

/* SIGINT to the crawler, as a terminal's ^C sends it. Under TSan, to each of its threads:
 * TSan runs a handler only when the thread the kernel picked next enters an intercepted
 * call, and weft's idle workers park in a raw futex syscall, so a process-directed signal
 * could wait until some response wakes that thread (and race with it); the thread in
 * epoll_wait takes it at once. */
static void send_sigint(pid_t pid)
{
  if (!TSAN) {
    kill(pid, SIGINT);
    return;
  }
  char dir[64];
  snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
  DIR *d = opendir(dir);
  if (!d) {
    kill(pid, SIGINT);
    return;
  }
  for (struct dirent *e; (e = readdir(d));)
    if (e->d_name[0] != '.')
      syscall(SYS_tgkill, (int)pid, atoi(e->d_name), SIGINT);
  closedir(d);
}

/* On a blocking-pool thread: run the crawler to its end (or the timeout), feeding stdin
 * and collecting stdout and stderr. */
static long run_child(void *arg)
{
  struct runner *rn = arg;
  struct run_result *res = rn->res;
  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC))
    return -errno;
  int64_t start = mono_ms(), sigint_at = 0;
  pid_t pid = spawn_crawl(rn, in, out, err);
  close(in[0]);
  close(out[1]);
  close(err[1]);
  if (pid < 0) {
    close(in[1]), close(out[0]), close(err[0]);
    return -ENOEXEC;
  }
  const char *feed = rn->stdin_data ? rn->stdin_data : "";
  size_t feed_left = strlen(feed);
  struct buf bo = {0}, be = {0};
  bool out_open = true, err_open = true, in_open = true;
  signal(SIGPIPE, SIG_IGN);
  while (out_open || err_open) {
    if (in_open && feed_left == 0) {
      close(in[1]);
      in_open = false;
    }
    struct pollfd p[3] = {{out_open ? out[0] : -1, POLLIN, 0},
                          {err_open ? err[0] : -1, POLLIN, 0},
                          {in_open ? in[1] : -1, POLLOUT, 0}};
    poll(p, 3, 10);
    int64_t now = mono_ms();
    if (p[0].revents && !drain(out[0], &bo))
      out_open = false;
    if (p[1].revents && !drain(err[0], &be))
      err_open = false;
    if (p[2].revents) {
      ssize_t w = write(in[1], feed, feed_left);
      if (w > 0)
        feed += w, feed_left -= (size_t)w;
      else
        feed_left = 0;
    }
    if (rn->spec->sigint_active > 0 && !res->sigint_sent &&
        atomic_load(rn->active) >= rn->spec->sigint_active) {
      send_sigint(pid);
      res->sigint_sent = true;
      sigint_at = now;
    }
    if (!res->timed_out && now - start > rn->spec->timeout_ms) {
      kill(pid, SIGKILL);
      res->timed_out = true;
    }
  }
  if (in_open)
    close(in[1]);
  close(out[0]);
  close(err[0]);
  waitpid(pid, &res->status, 0);
  int64_t end = mono_ms();
  res->elapsed_ms = end - start;
  res->sigint_exit_ms = res->sigint_sent ? end - sigint_at : -1;
  res->out = bo.data ? bo.data : calloc(1, 1);
  res->err = be.data ? be.data : calloc(1, 1);
  res->out[bo.len] = '\0';
  res->err[be.len] = '\0';
  return 0;
}

static void parse_lines(struct run_result *res)
{
  char *save = NULL;
  char *copy = strdup(res->out);
  for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    json_error_t e;
    json_t *j = json_loads(line, 0, &e);
    if (!j || !json_is_object(j) || res->nlines == MAX_LINES) {
      fprintf(stderr, "not a JSON object line: %s\n", line);
      res->bad_lines++;
      json_decref(j);
      continue;
    }
    res->lines[res->nlines++] = j;
  }
  free(copy);
}

static void run_one(struct scenario *sc, struct site *s, int i)
{
  struct run_spec *spec = &sc->spec[i];
  struct run_result *res = &sc->res[i];
  char *argv[MAX_ARGS + 2] = {app_bin};
  for (int a = 0; a < spec->nargs; a++)
    argv[a + 1] = expand(sc, spec->args[a]);
  char *in = spec->stdin_data ? expand(sc, spec->stdin_data) : NULL;
  struct runner rn = {argv, in, spec, res, &s->active};
  long rc = weft_blocking(run_child, &rn);
  CHECK_EQ(rc, 0);
  if (rc == 0)
    parse_lines(res);
  /* Requests the crawler abandoned may still be in the handlers: let them finish. */
  for (int t = 0; t < 300 && atomic_load(&s->active) > atomic_load(&s->hanging); t++)
    weft_sleep(MS(10));
  site_snapshot(s, res);
  for (int a = 0; a < spec->nargs; a++)
    free(argv[a + 1]);
  free(in);
}

static int scenario_main(void *arg)
{
  struct scenario *sc = arg;
  struct site *s = calloc(1, sizeof *s);
  site_start(s, sc);
  for (int i = 0; i < sc->nruns; i++) {
    run_one(sc, s, i);
  }
  site_stop(s);
  free(s);
  return 0;
}

/* ---- building scenarios, and checking what came out ---- */

static struct run_spec *add_run(struct scenario *sc, int timeout_ms)
{
  struct run_spec *spec = &sc->spec[sc->nruns++];
  spec->timeout_ms = timeout_ms;
  return spec;
}

__attribute__((format(printf, 2, 3))) static void arg(struct run_spec *spec, const char *fmt,
                                                      ...)
{
  va_list ap;
  va_start(ap, fmt);
  assert_true(spec->nargs < MAX_ARGS);
  assert_true(vasprintf(&spec->args[spec->nargs++], fmt, ap) >= 0);
  va_end(ap);
}

/* Several arguments at once, NULL-terminated. */
static void args(struct run_spec *spec, ...)
{
  va_list ap;
  va_start(ap, spec);
  for (const char *a; (a = va_arg(ap, const char *));)
    arg(spec, "%s", a);
  va_end(ap);
}

/* The crawler: <build>/apps/crawl/weft-crawl beside this test's build directory, or
 * WEFT_CRAWL_BIN (to run these tests against another build, or the Go peer). */
static bool find_crawler(void)
{
  return app_find_bin("WEFT_CRAWL_BIN", "apps/crawl/weft-crawl");
}

static void dump_run(const struct run_result *r)
{
  fprintf(stderr,
          "---- weft-crawl: status %d%s, %lld ms\n---- stdout:\n%s---- stderr:\n%s----\n",
          r->status, r->timed_out ? " (killed: timeout)" : "", (long long)r->elapsed_ms,
          r->out ? r->out : "", r->err ? r->err : "");
}

/* Run the scenario in the runtime; false (the test skips) without the binary. */
static void run_scenario(struct scenario *sc)
{
  if (!find_crawler()) {
    sc->no_binary = true;
    return;
  }
  checks_reset();
  assert_int_equal(run_weft(2, scenario_main, sc), 0);
  for (int i = 0; i < sc->nruns; i++)
    if (sc->res[i].timed_out || sc->res[i].bad_lines)
      dump_run(&sc->res[i]);
  ASSERT_NO_CHECK_FAILED();
}

static void scenario_free(struct scenario *sc)
{
  for (int i = 0; i < sc->nruns; i++) {
    struct run_result *r = &sc->res[i];
    for (int a = 0; a < sc->spec[i].nargs; a++)
      free(sc->spec[i].args[a]);
    free(sc->spec[i].stdin_data);
    for (int l = 0; l < r->nlines; l++)
      json_decref(r->lines[l]);
    for (int l = 0; l < r->nlog; l++)
      free(r->log[l]);
    free(r->log);
    free(r->out);
    free(r->err);
  }
  free(sc);
}

/* A URL template expanded for checks (valid until 64 more calls). */
static const char *U(const struct scenario *sc, const char *tmpl)
{
  static char ring[64][256];
  static int next;
  char *e = expand(sc, tmpl);
  char *slot = ring[next++ % 64];
  snprintf(slot, 256, "%s", e);
  free(e);
  return slot;
}

static const char *str_field(json_t *line, const char *key)
{
  json_t *v = json_object_get(line, key);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

static long long int_field(json_t *line, const char *key)
{
  json_t *v = json_object_get(line, key);
  if (json_is_integer(v))
    return json_integer_value(v);
  if (json_is_real(v))
    return (long long)json_real_value(v);
  return -1;
}

static bool truncated_field(json_t *line)
{
  return json_is_true(json_object_get(line, "truncated"));
}

/* The one line for url; fails the test when there is none or more than one. */
static json_t *line_for(const struct run_result *r, const char *url)
{
  json_t *found = NULL;
  int n = 0;
  for (int i = 0; i < r->nlines; i++) {
    const char *u = str_field(r->lines[i], "url");
    if (u && strcmp(u, url) == 0) {
      found = r->lines[i];
      n++;
    }
  }
  if (n != 1) {
    dump_run(r);
    fail_msg("%d result lines for %s (want exactly 1)", n, url);
  }
  return found;
}

static void dump_and_fail(const struct run_result *r, json_t *line, const char *what)
{
  char *s = json_dumps(line, JSON_COMPACT);
  dump_run(r);
  fail_msg("%s: %s", what, s ? s : "?");
}

/* The fields of a line: present with the contract's types; error present only on failure
 * and then one of the contract's names. */
static void check_line_shape(const struct run_result *r, json_t *line)
{
  static const char *const ints[] = {"status", "bytes", "attempts", "depth", "links"};
  static const char *const strs[] = {"final_url", "content_type", "title"};
  static const char *const errors[] = {
      "invalid_url",        "dns",         "connect",           "tls",    "timeout",
      "too_many_redirects", "http_status", "robots_disallowed", "decode", "cancelled"};
  if (!str_field(line, "url"))
    dump_and_fail(r, line, "no url");
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
    if (!json_is_integer(json_object_get(line, ints[i])))
      dump_and_fail(r, line, ints[i]);
  for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
    json_t *v = json_object_get(line, strs[i]);
    if (!json_is_string(v) && !json_is_null(v))
      dump_and_fail(r, line, strs[i]);
  }
  if (!json_is_number(json_object_get(line, "duration_ms")) ||
      json_number_value(json_object_get(line, "duration_ms")) < 0)
    dump_and_fail(r, line, "duration_ms");
  json_t *t = json_object_get(line, "truncated");
  if (t && !json_is_boolean(t))
    dump_and_fail(r, line, "truncated");
  json_t *e = json_object_get(line, "error");
  if (!e)
    return;
  bool known = false;
  for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++)
    known |= json_is_string(e) && strcmp(json_string_value(e), errors[i]) == 0;
  if (!known)
    dump_and_fail(r, line, "error is not one of the contract's");
}

/* Every line well formed, no URL twice, and nlines lines in all. */
static void check_lines(const struct run_result *r, int nlines)
{
  if (r->timed_out || r->bad_lines || r->nlines != nlines) {
    dump_run(r);
    fail_msg("%d lines (want %d), %d not JSON objects%s", r->nlines, nlines, r->bad_lines,
             r->timed_out ? ", killed after the timeout" : "");
  }
  for (int i = 0; i < r->nlines; i++) {
    check_line_shape(r, r->lines[i]);
    line_for(r, str_field(r->lines[i], "url"));
  }
}

static void expect_exit(const struct run_result *r, int code)
{
  if (!WIFEXITED(r->status) || WEXITSTATUS(r->status) != code) {
    dump_run(r);
    fail_msg("weft-crawl ended with wait status %#x (want exit %d)", r->status, code);
  }
}

/* A successful fetch: status, no error, and the given fields (< 0 / NULL: not checked). */
static json_t *expect_ok(const struct run_result *r, const char *url, int status, int depth,
                         int links, const char *title)
{
  json_t *l = line_for(r, url);
  if (json_object_get(l, "error"))
    dump_and_fail(r, l, "unexpected error");
  if (int_field(l, "status") != status)
    dump_and_fail(r, l, "status");
  if (depth >= 0 && int_field(l, "depth") != depth)
    dump_and_fail(r, l, "depth");
  if (links >= 0 && int_field(l, "links") != links)
    dump_and_fail(r, l, "links");
  if (title && (!str_field(l, "title") || strcmp(str_field(l, "title"), title) != 0))
    dump_and_fail(r, l, "title");
  if (int_field(l, "attempts") < 1)
    dump_and_fail(r, l, "attempts");
  return l;
}

static json_t *expect_error(const struct run_result *r, const char *url, const char *error)
{
  json_t *l = line_for(r, url);
  const char *e = str_field(l, "error");
  if (!e || strcmp(e, error) != 0) {
    char what[96];
    snprintf(what, sizeof what, "want error %s", error);
    dump_and_fail(r, l, what);
  }
  return l;
}

/* How many requests for target the site saw on host h. */
static int requests_for(const struct run_result *r, int h, const char *target)
{
  char want[512];
  int n = 0;
  snprintf(want, sizeof want, "%d %s", h, target);
  for (int i = 0; i < r->nlog; i++)
    n += strcmp(r->log[i], want) == 0;
  return n;
}

/* No result lost: every page the site was asked for (robots.txt and redirect hops
 * aside) has its line. */
static void check_log_covered(const struct scenario *sc, const struct run_result *r)
{
  for (int i = 0; i < r->nlog; i++) {
    int h = r->log[i][0] - '0';
    const char *target = r->log[i] + 2;
    if (!strcmp(target, "/robots.txt") || !strncmp(target, "/redir", 6) ||
        !strcmp(target, "/loop"))
      continue;
    char url[512];
    const char *base = h == 0 ? sc->base : h == 1 ? sc->alt : sc->tls_base;
    snprintf(url, sizeof url, "%s%s", base, target);
    line_for(r, url);
  }
}

/* The number the summary on stderr gives before word (e.g. "never started"), or -1. */
static long summary_count(const char *err, const char *word)
{
  const char *p = strstr(err, word);
  if (!p)
    return -1;
  while (p > err && (p[-1] == ' ' || p[-1] == '='))
    p--;
  const char *digits = p;
  while (digits > err && digits[-1] >= '0' && digits[-1] <= '9')
    digits--;
  return digits < p ? strtol(digits, NULL, 10) : -1;
}

static struct scenario *scenario_new(int robots_mode)
{
  struct scenario *sc = calloc(1, sizeof *sc);
  sc->robots_mode = robots_mode;
  return sc;
}

#define SKIP_WITHOUT_BINARY(sc) \
  do {                          \
    if ((sc)->no_binary) {      \
      scenario_free(sc);        \
      skip();                   \
    }                           \
  } while (0)

/* ---- the tests ---- */

/* --depth 2 from the index: relative, absolute-path and absolute links, <base href>,
 * duplicates counted once, mailto: and javascript: skipped, the other host not followed
 * (--same-host is on with --depth), robots.txt's Disallow honoured, nothing past depth 2. */
static void test_depth_links_robots(void **state)
{
  struct scenario *sc = scenario_new(ROBOTS_RULES);
  struct run_spec *s = add_run(sc, 30000);
  args(s, "--depth", "2", "--timeout", "5s", "--concurrency", "4", "--per-host", "2", "--out",
       "-", "{B}/site/index.html", NULL);
  run_scenario(sc);
  SKIP_WITHOUT_BINARY(sc);
  const struct run_result *r = &sc->res[0];
  expect_exit(r, 0);
  check_lines(r, 7);
  json_t *idx = expect_ok(r, U(sc, "{B}/site/index.html"), 200, 0, 5, "Index Page");
  assert_string_equal(str_field(idx, "final_url"), U(sc, "{B}/site/index.html"));
  assert_non_null(strstr(str_field(idx, "content_type"), "text/html"));
  assert_false(truncated_field(idx));
  assert_int_equal(int_field(idx, "attempts"), 1);
  assert_true(int_field(idx, "bytes") > 300);
  expect_ok(r, U(sc, "{B}/site/a.html"), 200, 1, 2, "Page A");
  expect_ok(r, U(sc, "{B}/site/b.html"), 200, 1, 1, "Page B");
  expect_ok(r, U(sc, "{B}/site/c.html"), 200, 1, 0, "Page C");
  json_t *secret = expect_error(r, U(sc, "{B}/private/secret.html"), "robots_disallowed");
  assert_int_equal(int_field(secret, "depth"), 1);
  expect_ok(r, U(sc, "{B}/site/deep.html"), 200, 2, 1, "Deep");
  expect_ok(r, U(sc, "{B}/base/x.html"), 200, 2, 0, "X");
  /* What the site saw: robots.txt once, never the disallowed page, the other host or
   * anything at depth 3. */
  assert_int_equal(requests_for(r, 0, "/robots.txt"), 1);
  assert_int_equal(requests_for(r, 0, "/private/secret.html"), 0);
  assert_int_equal(requests_for(r, 0, "/site/deeper.html"), 0);
  assert_int_equal(requests_for(r, 1, "/site/other.html"), 0);
  assert_int_equal(requests_for(r, 0, "/site/index.html"), 1);
  check_log_covered(sc, r);
  /* stderr is no terminal: a summary but no progress line. */
  assert_null(strchr(r->err, '\r'));
  assert_true(strlen(r->err) > 0);
  scenario_free(sc);
}

/* robots.txt answering 404 allows everything; answering 500 disallows the whole host. */
static void test_robots_status(void **state)
{
  struct scenario *sc = scenario_new(ROBOTS_404);
  struct run_spec *s = add_run(sc, 30000);
  args(s, "--depth", "1", "--timeout", "5s", "{B}/site/index.html", NULL);
  run_scenario(sc);
  SKIP_WITHOUT_BINARY(sc);
  const struct run_result *r = &sc->res[0];
  expect_exit(r, 0);
  check_lines(r, 5);
  expect_ok(r, U(sc, "{B}/site/index.html"), 200, 0, 5, "Index Page");
  expect_ok(r, U(sc, "{B}/private/secret.html"), 200, 1, 0, "Secret");
  check_log_covered(sc, r);
  scenario_free(sc);

  sc = scenario_new(ROBOTS_500);
  s = add_run(sc, 30000);
  args(s, "--depth", "1", "--timeout", "5s", "--retries", "0", "{B}/site/index.html", NULL);
  run_scenario(sc);
  r = &sc->res[0];
  expect_exit(r, 0);
  check_lines(r, 1);
  expect_error(r, U(sc, "{B}/site/index.html"), "robots_disallowed");
  assert_int_equal(requests_for(r, 0, "/site/index.html"), 0);
  assert_true(requests_for(r, 0, "/robots.txt") >= 1);
  scenario_free(sc);
}

/* Malformed HTML: every link an HTML5 parser finds is counted and followed, the non-HTTP
 * ones are not, and the crawl survives the junk. */
static void test_malformed_html(void **state)
{
  struct scenario *sc = scenario_new(ROBOTS_404);
  struct run_spec *s = add_run(sc, 30000);
  args(s, "--depth", "1", "--timeout", "5s", "{B}/m/index.html", NULL);
  run_scenario(sc);
  SKIP_WITHOUT_BINARY(sc);
  const struct run_result *r = &sc->res[0];
  expect_exit(r, 0);
  check_lines(r, 7);
  expect_ok(r, U(sc, "{B}/m/index.html"), 200, 0, 7, "Malformed page");
  static const char *const found[] = {"unquoted.html", "single.html",  "UPPER.html",
                                      "spaced.html",   "trimmed.html", "last.html"};
  for (size_t i = 0; i < sizeof found / sizeof found[0]; i++) {
    char tmpl[128];
    snprintf(tmpl, sizeof tmpl, "{B}/m/%s", found[i]);
    expect_ok(r, U(sc, tmpl), 200, 1, 0, found[i]);
  }
  assert_int_equal(requests_for(r, 1, "/m/proto-relative.html"), 0); /* other host */
  check_log_covered(sc, r);
  scenario_free(sc);
}

/* --same-host off: the link to the other host is followed too. */
static void test_other_host(void **state)
{
  struct scenario *sc = scenario_new(ROBOTS_404);
  struct run_spec *s = add_run(sc, 30000);
  args(s, "--depth", "1", "--same-host=false", "--timeout", "5s", "{B}/site/index.html", NULL);
  run_scenario(sc);
  SKIP_WITHOUT_BINARY(sc);
  const struct run_result *r = &sc->res[0];
  expect_exit(r, 0);
  check_lines(r, 6);
  expect_ok(r, U(sc, "{L}/site/other.html"), 200, 1, 0, "Other");
  assert_int_equal(requests_for(r, 1, "/robots.txt"), 1); /* its own robots.txt */
  check_log_covered(sc, r);
  scenario_free(sc);
}

/* 500s are retried --retries times, then reported; a 503 that recovers succeeds on the
 * third attempt; a 404 is not retried. */
static void test_retries(void **state)
{
  struct scenario *sc = scenario_new(ROBOTS_404);
  struct run_spec *s = add_run(sc, 30000);
  args(s, "--retries", "2", "--timeout", "5s", "{B}/fail/1", "{B}/flaky/2", "{B}/status/404",
       "{B}/site/c.html", NULL);
  run_scenario(sc);
  SKIP_WITHOUT_BINARY(sc);
  const struct run_result *r = &sc->res[0];
  expect_exit(r, 0);
  check_lines(r, 4);
  json_t *f = expect_error(r, U(sc, "{B}/fail/1"), "http_status");
  assert_int_equal(int_field(f, "status"), 500);
  assert_int_equal(int_field(f, "attempts"), 3);
  assert_int_equal(r->key_count[1], 3);
  json_t *fl = expect_ok(r, U(sc, "{B}/flaky/2"), 200, 0, 0, "Third time");
  assert_int_equal(int_field(fl, "attempts"), 3);
  assert_int_equal(r->key_count[2], 3);
  json_t *nf = expect_error(r, U(sc, "{B}/status/404"), "http_status");
  assert_int_equal(int_field(nf, "status"), 404);
  assert_int_equal(int_field(nf, "attempts"), 1);
  assert_int_equal(requests_for(r, 0, "/status/404"), 1);
  expect_ok(r, U(sc, "{B}/site/c.html"), 200, 0, 0, "Page C");
  /* No robots.txt without --depth. */
  assert_int_equal(requests_for(r, 0, "/robots.txt"), 0);
  check_log_covered(sc, r);
  scenario_free(sc);
}

/* Bad URLs, a name that does not resolve, a refused port and a page that never answers:
 * each its own line and error, and the crawl goes on. */
static void test_errors(void **state)
{
  struct scenario *sc = scenario_new(ROBOTS_404);
  struct run_spec *s = add_run(sc, 30000);
  args(s, "--retries", "1", "--timeout", "400ms", "not a url", "ftp://127.0.0.1/file",
       "http://", "http://no-such-host.invalid/", "{X}/refused", "{B}/hang", "{B}/site/c.html",
       NULL);
  run_scenario(sc);
  SKIP_WITHOUT_BINARY(sc);
  const struct run_result *r = &sc->res[0];
  expect_exit(r, 0);
  check_lines(r, 7);
  expect_error(r, "not a url", "invalid_url");
  expect_error(r, "ftp://127.0.0.1/file", "invalid_url");
  expect_error(r, "http://", "invalid_url");
  expect_error(r, "http://no-such-host.invalid/", "dns");
  json_t *c = expect_error(r, U(sc, "{X}/refused"), "connect");
  assert_int_equal(int_field(c, "attempts"), 2);
  assert_int_equal(int_field(c, "status"), 0);
  json_t *t = expect_error(r, U(sc, "{B}/hang"), "timeout");
  assert_int_equal(int_field(t, "attempts"), 2);
  assert_int_equal(requests_for(r, 0, "/hang"), 2);
  /* Two attempts of 400 ms each, and the backoff between them. */
  assert_true(json_number_value(json_object_get(t, "duration_ms")) >= 780);
  expect_ok(r, U(sc, "{B}/site/c.html"), 200, 0, 0, "Page C");
  check_log_covered(sc, r);
  scenario_free(sc);
}

/* At most 10 redirects: a chain of 10 arrives, 11 and a loop fail; final_url follows. */
static void test_redirects(void **state)
{
  struct scenario *sc = scenario_new(ROBOTS_404);
  struct run_spec *s = add_run(sc, 30000);
  args(s, "--timeout", "5s", "{B}/redir/10", "{B}/redir/11", "{B}/loop", "{B}/redir-other",
       NULL);
  run_scenario(sc);
  SKIP_WITHOUT_BINARY(sc);
  const struct run_result *r = &sc->res[0];
  expect_exit(r, 0);
  check_lines(r, 4);
  json_t *ok = expect_ok(r, U(sc, "{B}/redir/10"), 200, 0, 0, "Arrived");
  assert_string_equal(str_field(ok, "final_url"), U(sc, "{B}/redir/0"));
  expect_error(r, U(sc, "{B}/redir/11"), "too_many_redirects");
  expect_error(r, U(sc, "{B}/loop"), "too_many_redirects");
  assert_int_equal(requests_for(r, 0, "/loop"), 11); /* the first and 10 redirects */
  json_t *other = expect_ok(r, U(sc, "{B}/redir-other"), 200, 0, 0, "Page C");
  assert_string_equal(str_field(other, "final_url"), U(sc, "{L}/site/c.html"));
  scenario_free(sc);
}

/* --max-body cuts and flags; gzip and deflate bodies are decoded and counted decoded;
 * a broken gzip body is a decode error. */
static void test_bodies(void **state)
{
  struct scenario *sc = scenario_new(ROBOTS_404);
  struct run_spec *s = add_run(sc, 30000);
  arg(s, "--max-body");
  arg(s, "%d", MAX_BODY);
  args(s, "--timeout", "5s", "{B}/huge", "{B}/exact", "{B}/gzip", "{B}/deflate",
       "{B}/gzip-huge", "{B}/bad-gzip", NULL);
  run_scenario(sc);
  SKIP_WITHOUT_BINARY(sc);
  const struct run_result *r = &sc->res[0];
  expect_exit(r, 0);
  check_lines(r, 6);
  json_t *h = expect_ok(r, U(sc, "{B}/huge"), 200, 0, 0, NULL);
  assert_true(truncated_field(h));
  assert_int_equal(int_field(h, "bytes"), MAX_BODY);
  json_t *e = expect_ok(r, U(sc, "{B}/exact"), 200, 0, 0, NULL);
  assert_false(truncated_field(e));
  assert_int_equal(int_field(e, "bytes"), MAX_BODY);
  json_t *g = expect_ok(r, U(sc, "{B}/gzip"), 200, 0, 1, "Gzipped");
  assert_int_equal(int_field(g, "bytes"), TEXT_LEN);
  assert_false(truncated_field(g));
  json_t *d = expect_ok(r, U(sc, "{B}/deflate"), 200, 0, 1, "Deflated");
  assert_int_equal(int_field(d, "bytes"), TEXT_LEN);
  json_t *gh = expect_ok(r, U(sc, "{B}/gzip-huge"), 200, 0, 0, NULL);
  assert_true(truncated_field(gh));
  assert_int_equal(int_field(gh, "bytes"), MAX_BODY);
  expect_error(r, U(sc, "{B}/bad-gzip"), "decode");
  check_log_covered(sc, r);
  scenario_free(sc);
}

/* HTTPS with a self-signed certificate: refused by default, fetched with --insecure. */
static void test_tls(void **state)
{
  if (test_cert_make(&tls_cert) != 0) {
    test_cert_remove(&tls_cert);
    skip();
  }
  struct scenario *sc = scenario_new(ROBOTS_404);
  sc->tls = true;
  struct run_spec *s = add_run(sc, 30000);
  args(s, "--timeout", "5s", "--retries", "1", "{T}/site/c.html", NULL);
  s = add_run(sc, 30000);
  args(s, "--insecure", "--timeout", "5s", "{T}/site/c.html", "{T}/gzip", NULL);
  run_scenario(sc);
  test_cert_remove(&tls_cert);
  SKIP_WITHOUT_BINARY(sc);
  const struct run_result *r = &sc->res[0];
  expect_exit(r, 0);
  check_lines(r, 1);
  json_t *l = expect_error(r, U(sc, "{T}/site/c.html"), "tls");
  assert_int_equal(int_field(l, "attempts"), 1); /* a bad certificate is not retried */
  r = &sc->res[1];
  expect_exit(r, 0);
  check_lines(r, 2);
  expect_ok(r, U(sc, "{T}/site/c.html"), 200, 0, 0, "Page C");
  expect_ok(r, U(sc, "{T}/gzip"), 200, 0, 1, "Gzipped");
  scenario_free(sc);
}

enum { LIMIT_URLS = 12 };

static void limit_run(struct scenario *sc, const char *conc, const char *per_host)
{
  struct run_spec *s = add_run(sc, 30000);
  args(s, "--concurrency", conc, "--per-host", per_host, "--timeout", "5s", NULL);
  for (int i = 0; i < LIMIT_URLS; i++) {
    arg(s, "{B}/slow?ms=150&i=%d", i);
    arg(s, "{L}/slow?ms=150&i=%d", i);
  }
}

/* The site counts requests in flight per host: never over --per-host, in all never over
 * --concurrency, and the crawler does run them in parallel. */
static void test_limits(void **state)
{
  struct scenario *sc = scenario_new(ROBOTS_404);
  limit_run(sc, "3", "2");
  limit_run(sc, "10", "2");
  run_scenario(sc);
  SKIP_WITHOUT_BINARY(sc);
  for (int i = 0; i < 2; i++) {
    const struct run_result *r = &sc->res[i];
    expect_exit(r, 0);
    check_lines(r, 2 * LIMIT_URLS);
    check_log_covered(sc, r);
    fprintf(stderr, "run %d: at most %d in flight, %d and %d per host, %lld ms\n", i,
            r->global_max, r->host_max[0], r->host_max[1], (long long)r->elapsed_ms);
    assert_true(r->host_max[0] <= 2 && r->host_max[1] <= 2);
    assert_true(r->global_max <= (i == 0 ? 3 : 4));
    assert_true(r->global_max >= 2);
  }
  scenario_free(sc);
}

/* --max-pages stops taking new URLs; the summary counts the ones never started. */
static void test_max_pages(void **state)
{
  struct scenario *sc = scenario_new(ROBOTS_404);
  struct run_spec *s = add_run(sc, 30000);
  args(s, "--max-pages", "3", "--concurrency", "1", "--timeout", "5s", NULL);
  for (int i = 0; i < 10; i++)
    arg(s, "{B}/site/c.html?i=%d", i);
  run_scenario(sc);
  SKIP_WITHOUT_BINARY(sc);
  const struct run_result *r = &sc->res[0];
  expect_exit(r, 0);
  check_lines(r, 3);
  assert_int_equal(r->nlog, 3);
  check_log_covered(sc, r);
  long never = summary_count(r->err, "never started");
  if (never != 7) {
    dump_run(r);
    fail_msg("the summary counts %ld never started (want 7)", never);
  }
  scenario_free(sc);
}

/* URLs from stdin with "-", written to a file with --out. */
static void test_stdin_and_out(void **state)
{
  char path[] = "/tmp/weft-crawl-test-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  struct scenario *sc = scenario_new(ROBOTS_404);
  struct run_spec *s = add_run(sc, 30000);
  args(s, "--timeout", "5s", "--out", path, "-", NULL);
  s->stdin_data = strdup("{B}/site/a.html\nbogus\n{B}/site/c.html\n{L}/site/b.html\n");
  run_scenario(sc);
  if (sc->no_binary)
    unlink(path);
  SKIP_WITHOUT_BINARY(sc);
  struct run_result *r = &sc->res[0];
  assert_int_equal(r->nlines, 0); /* stdout stays empty */
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  char *text = calloc(1, 1 << 20);
  size_t n = fread(text, 1, (1 << 20) - 1, f);
  fclose(f);
  unlink(path);
  text[n] = '\0';
  free(r->out);
  r->out = text;
  parse_lines(r);
  expect_exit(r, 0);
  check_lines(r, 4);
  expect_ok(r, U(sc, "{B}/site/a.html"), 200, 0, 2, "Page A");
  expect_ok(r, U(sc, "{B}/site/c.html"), 200, 0, 0, "Page C");
  expect_ok(r, U(sc, "{L}/site/b.html"), 200, 0, 1, "Page B");
  assert_true(strcmp(str_field(r->lines[0], "url"), "bogus") == 0 ||
              strcmp(str_field(r->lines[1], "url"), "bogus") == 0 ||
              strcmp(str_field(r->lines[2], "url"), "bogus") == 0 ||
              strcmp(str_field(r->lines[3], "url"), "bogus") == 0);
  for (int i = 0; i < r->nlines; i++)
    if (!strcmp(str_field(r->lines[i], "url"), "bogus"))
      expect_error(r, "bogus", "invalid_url");
  scenario_free(sc);
}

enum { SIGINT_URLS = 50, SIGINT_CONC = 10, SIGINT_SLOW_MS = 2000 };

/* SIGINT with 10 requests in flight and 40 waiting: every started URL gets its line
 * (error cancelled), the summary counts the rest, exit 130, promptly. */
static void test_sigint(void **state)
{
  struct scenario *sc = scenario_new(ROBOTS_404);
  struct run_spec *s = add_run(sc, 30000);
  arg(s, "--concurrency");
  arg(s, "%d", SIGINT_CONC);
  args(s, "--per-host", "10", "--timeout", "10s", NULL);
  for (int i = 0; i < SIGINT_URLS; i++)
    arg(s, "{B}/slow?ms=%d&i=%d", SIGINT_SLOW_MS, i);
  s->sigint_active = SIGINT_CONC;
  run_scenario(sc);
  SKIP_WITHOUT_BINARY(sc);
  const struct run_result *r = &sc->res[0];
  assert_true(r->sigint_sent);
  expect_exit(r, 130);
  fprintf(stderr, "exit %lld ms after SIGINT, %d lines\n", (long long)r->sigint_exit_ms,
          r->nlines);
  assert_true(r->sigint_exit_ms < 2000);
  assert_false(r->timed_out);
  assert_int_equal(r->bad_lines, 0);
  assert_true(r->nlines >= SIGINT_CONC && r->nlines <= SIGINT_URLS);
  for (int i = 0; i < r->nlines; i++) {
    check_line_shape(r, r->lines[i]);
    expect_error(r, str_field(r->lines[i], "url"), "cancelled");
  }
  check_log_covered(sc, r); /* every request the site saw has its line */
  long never = summary_count(r->err, "never started");
  if (never != SIGINT_URLS - r->nlines) {
    dump_run(r);
    fail_msg("the summary counts %ld never started (want %d)", never, SIGINT_URLS - r->nlines);
  }
  scenario_free(sc);
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_depth_links_robots),
      cmocka_unit_test(test_robots_status),
      cmocka_unit_test(test_malformed_html),
      cmocka_unit_test(test_other_host),
      cmocka_unit_test(test_retries),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_redirects),
      cmocka_unit_test(test_bodies),
      cmocka_unit_test(test_tls),
      cmocka_unit_test(test_limits),
      cmocka_unit_test(test_max_pages),
      cmocka_unit_test(test_stdin_and_out),
      cmocka_unit_test(test_sigint),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
