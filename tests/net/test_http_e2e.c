/* End to end: weft's HTTP client against weft's HTTP server through the router, over
 * plain TCP and TLS, on P = 1..4, and a graceful shutdown with requests in flight. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coro_check.h"
#include "weft/weft.h"
#include "weft_test.h"

/* ---- the service under test ---- */

static void get_item(weft_http_response *w, weft_http_request *r, void *arg)
{
  json_t *j = json_pack("{s:s, s:s}", "id", weft_http_request_path_value(r, "id"), "pattern",
                        weft_http_request_pattern(r));
  weft_http_response_json(w, 200, j);
  json_decref(j);
}

/* Echo the body back, in pieces so that a long one goes out chunked. */
static void echo(weft_http_response *w, weft_http_request *r, void *arg)
{
  char buf[1000];
  ssize_t n;
  weft_http_response_set_header(w, "Content-Type", "application/octet-stream");
  while ((n = weft_http_request_read_body(r, buf, sizeof buf)) > 0)
    weft_http_response_write(w, buf, (size_t)n);
  if (n < 0 && !weft_http_response_head_sent(w))
    weft_http_response_error(w, n == -EFBIG ? 413 : 400, NULL);
}

/* Answer after ms milliseconds (from the query), for the shutdown test. */
static void slow(weft_http_response *w, weft_http_request *r, void *arg)
{
  char ms[16] = "100";
  weft_http_request_query_value(r, "ms", ms, sizeof ms);
  weft_sleep(MS(atoi(ms)));
  weft_http_response_send(w, 200, "text/plain", "done", 4);
}

struct service {
  weft_http_router *router;
  weft_http_server *server;
  weft_tls_config *tls;
  int fd, port;
  weft_wg served;
  int serve_rc;
  char base[64];
};

static void serve(void *arg)
{
  struct service *s = arg;
  s->serve_rc = weft_http_server_serve(s->server, s->fd);
  weft_wg_done(&s->served);
}

static void service_start(struct service *s, weft_tls_config *tls)
{
  memset(s, 0, sizeof *s);
  s->router = weft_http_router_new();
  CHECK_EQ(weft_http_router_handle(s->router, "GET /items/{id}", get_item, NULL), 0);
  CHECK_EQ(weft_http_router_handle(s->router, "POST /echo", echo, NULL), 0);
  CHECK_EQ(weft_http_router_handle(s->router, "GET /slow", slow, NULL), 0);
  s->server = weft_http_server_new(&(weft_http_server_config){
      .handler = weft_http_router_serve, .handler_arg = s->router, .tls = tls});
  s->fd = weft_listen("tcp", "127.0.0.1:0", 0);
  CHECK(s->fd >= 0);
  s->port = weft_local_port(s->fd);
  snprintf(s->base, sizeof s->base, "%s://localhost:%d", tls ? "https" : "http", s->port);
  weft_wg_init(&s->served);
  weft_wg_add(&s->served, 1);
  weft_go(serve, s);
}

static void service_stop(struct service *s)
{
  CHECK_EQ(weft_http_server_shutdown(s->server, weft_now() + MS(2000)), 0);
  weft_wg_wait(&s->served);
  CHECK_EQ(s->serve_rc, 0);
  weft_close(s->fd);
  weft_http_server_free(s->server);
  weft_http_router_free(s->router);
}

/* GET base+path; returns the status (or the error) and copies the body into out. */
static int get(weft_http_client *cl, const struct service *s, const char *path, char *out,
               size_t len)
{
  char url[256];
  snprintf(url, sizeof url, "%s%s", s->base, path);
  weft_http_client_response *resp;
  int rc = weft_http_client_get(cl, NULL, url, &resp);
  if (rc)
    return rc;
  int status = weft_http_client_response_status(resp);
  if (out)
    snprintf(out, len, "%s", weft_http_client_response_body(resp, NULL));
  weft_http_client_response_free(resp);
  return status;
}

/* ---- plain HTTP through the router ---- */

static void check_routes(weft_http_client *cl, struct service *s)
{
  char body[256];
  CHECK_EQ(get(cl, s, "/items/42", body, sizeof body), 200);
  CHECK(strstr(body, "\"id\":\"42\"") != NULL);
  CHECK(strstr(body, "GET /items/{id}") != NULL);
  CHECK_EQ(get(cl, s, "/nowhere", NULL, 0), 404);
  CHECK_EQ(get(cl, s, "/echo", NULL, 0), 405);
}

/* POST size bytes to /echo and check they come back unchanged. */
static void check_echo(weft_http_client *cl, struct service *s, size_t size)
{
  char *data = malloc(size), url[128];
  for (size_t i = 0; i < size; i++)
    data[i] = (char)('a' + i % 26);
  snprintf(url, sizeof url, "%s/echo", s->base);
  weft_http_client_request req = {.method = "POST", .url = url, .body = data, .body_len = size};
  weft_http_client_response *resp = NULL;
  CHECK_EQ(weft_http_client_do(cl, NULL, &req, &resp), 0);
  if (resp) {
    size_t len = 0;
    const char *got = weft_http_client_response_body(resp, &len);
    CHECK_EQ(weft_http_client_response_status(resp), 200);
    CHECK_EQ(len, size);
    CHECK(len == size && memcmp(got, data, size) == 0);
    const char *te = weft_http_client_response_header(resp, "Transfer-Encoding");
    CHECK_EQ(te != NULL, size > 4096); /* long replies go out chunked */
    weft_http_client_response_free(resp);
  }
  free(data);
}

static int plain_main(void *arg)
{
  struct service s;
  service_start(&s, NULL);
  weft_http_client *cl = weft_http_client_new(NULL, NULL);
  check_routes(cl, &s);
  check_echo(cl, &s, 10);
  check_echo(cl, &s, 100000);
  CHECK_EQ(weft_http_server_conns(s.server), 1); /* every request on one connection */
  weft_http_client_free(cl);
  service_stop(&s);
  return 0;
}

static void test_plain(void **state)
{
  checks_reset();
  run_weft_p1to4(plain_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- many clients at once ---- */

enum { CLIENTS = 16, REQUESTS = SANITIZED ? 20 : 100 };

struct load {
  weft_http_client *cl;
  struct service *s;
  weft_wg done;
};

static void load_client(void *arg)
{
  struct load *l = arg;
  for (int i = 0; i < REQUESTS; i++) {
    char path[32], body[128], want[32];
    snprintf(path, sizeof path, "/items/%d", i);
    snprintf(want, sizeof want, "\"id\":\"%d\"", i);
    CHECK_EQ(get(l->cl, l->s, path, body, sizeof body), 200);
    CHECK(strstr(body, want) != NULL);
  }
  weft_wg_done(&l->done);
}

static int load_main(void *arg)
{
  struct service s;
  service_start(&s, NULL);
  struct load l = {.s = &s};
  l.cl = weft_http_client_new(&(weft_http_client_config){.max_conns_per_host = 8}, NULL);
  weft_wg_init(&l.done);
  weft_wg_add(&l.done, CLIENTS);
  for (int i = 0; i < CLIENTS; i++)
    weft_go(load_client, &l);
  weft_wg_wait(&l.done);
  CHECK(weft_http_server_conns(s.server) <= 8);
  /* A request counts once its connection is done with it, just after the client has
   * its answer: give the last ones a moment. */
  uint64_t want = (uint64_t)CLIENTS * REQUESTS;
  for (int i = 0; i < 200 && weft_http_server_requests(s.server) < want; i++)
    weft_sleep(MS(5));
  CHECK_EQ(weft_http_server_requests(s.server), want);
  weft_http_client_free(l.cl);
  service_stop(&s);
  return 0;
}

static void test_load(void **state)
{
  checks_reset();
  run_weft_p1to4(load_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- HTTPS ---- */

static struct test_cert tls_cert;

static int https_main(void *arg)
{
  const char *cert = tls_cert.cert, *key = tls_cert.key;
  weft_tls_config *tls = weft_tls_config_new(
      &(weft_tls_options){.flags = WEFT_TLS_SERVER, .cert_file = cert, .key_file = key}, NULL);
  CHECK(tls != NULL);
  struct service s;
  service_start(&s, tls);

  /* Trusting the certificate: served, over one kept-alive connection. */
  weft_http_client *cl =
      weft_http_client_new(&(weft_http_client_config){.ca_file = cert}, NULL);
  check_routes(cl, &s);
  check_echo(cl, &s, 50000);
  CHECK_EQ(weft_http_server_conns(s.server), 1);
  weft_http_client_free(cl);

  /* The system's trust store does not know it: refused as a certificate failure. */
  cl = weft_http_client_new(NULL, NULL);
  CHECK_EQ(get(cl, &s, "/items/1", NULL, 0), -WEFT_ECERT);
  weft_http_client_free(cl);

  /* Plain HTTP to the TLS port fails cleanly on both sides. */
  cl = weft_http_client_new(NULL, NULL);
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/items/1", s.port);
  weft_http_client_response *resp = NULL;
  int rc = weft_http_client_get(cl, NULL, url, &resp);
  CHECK(rc < 0 || weft_http_client_response_status(resp) == 400);
  weft_http_client_response_free(resp);
  weft_http_client_free(cl);

  service_stop(&s);
  weft_tls_config_free(tls);
  return 0;
}

static void test_https(void **state)
{
  if (test_cert_make(&tls_cert) != 0) {
    test_cert_remove(&tls_cert);
    skip();
  }
  checks_reset();
  run_weft(2, https_main, NULL);
  run_weft(1, https_main, NULL);
  test_cert_remove(&tls_cert);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- graceful shutdown with requests in flight ---- */

struct inflight {
  weft_http_client *cl;
  struct service *s;
  weft_wg done;
  int ok;
};

static void slow_client(void *arg)
{
  struct inflight *f = arg;
  char body[16];
  if (get(f->cl, f->s, "/slow?ms=300", body, sizeof body) == 200 && !strcmp(body, "done"))
    __atomic_add_fetch(&f->ok, 1, __ATOMIC_RELAXED);
  weft_wg_done(&f->done);
}

static int shutdown_main(void *arg)
{
  struct service s;
  service_start(&s, NULL);
  struct inflight f = {.s = &s};
  f.cl = weft_http_client_new(NULL, NULL);
  weft_wg_init(&f.done);
  weft_wg_add(&f.done, 8);
  for (int i = 0; i < 8; i++)
    weft_go(slow_client, &f);
  while (weft_http_server_active(s.server) < 8)
    weft_sleep(MS(5));
  int64_t start = weft_now();
  service_stop(&s); /* waits for the eight, which all get their answer */
  CHECK(weft_now() - start >= MS(200));
  weft_wg_wait(&f.done);
  CHECK_EQ(f.ok, 8);
  /* The server is gone: a new request is refused. */
  CHECK_EQ(get(f.cl, &s, "/items/1", NULL, 0), -ECONNREFUSED);
  weft_http_client_free(f.cl);
  return 0;
}

static void test_shutdown_in_flight(void **state)
{
  checks_reset();
  run_weft_p1to4(shutdown_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_plain),
      cmocka_unit_test(test_load),
      cmocka_unit_test(test_https),
      cmocka_unit_test(test_shutdown_in_flight),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
