/* test_debug_server.c: the debug server's endpoints over real loopback connections: status,
 * content type and body shape of /, /debug/coroutines (grouped by default and with debug=1,
 * full with debug=2, 400 for other values), /metrics (every line checked against the text
 * format), /debug/vars (valid JSON, keys sorted, the runtime's numbers and the registry's
 * families) and /debug/dashboard (the embedded page, no external URL); 404 and 405; HEAD;
 * the loopback default and bare ports; start's errors; and a clean stop with an idle
 * keep-alive connection open (the leak check of every run_weft proves no coroutine is
 * left behind). */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coro_check.h"
#include "weft/debug_server.h"
#include "weft_test.h"

#define DL()       (weft_now() + MS(10000))
#define TEXT_PLAIN "text/plain; charset=utf-8"

extern const unsigned char weft__dashboard_html[];
extern const size_t weft__dashboard_html_len;

enum { PARKED = 23 };

struct world {
  weft_chan *gate; /* parked coroutines wait on it until it closes */
  weft_wg parked;  /* the parked coroutines, until they return */
  weft_metrics_registry *reg;
  weft_debug_server *srv;
  weft_http_client *client;
  char base[64]; /* "http://127.0.0.1:PORT" */
};

static void parked(void *arg)
{
  struct world *w = arg;
  int v;
  weft_chan_recv(w->gate, &v, WEFT_NO_DEADLINE);
  weft_wg_done(&w->parked);
}

/* park: PARKED coroutines named "dbg-parked", parked on w->gate. */
static void park(struct world *w)
{
  w->gate = weft_chan_new(sizeof(int), 0);
  weft_wg_init(&w->parked);
  weft_wg_add(&w->parked, PARKED);
  for (int i = 0; i < PARKED; i++)
    CHECK_EQ(weft_go_named(parked, w, "dbg-parked"), 0);
  weft_sleep(MS(20)); /* all parked */
}

static void unpark(struct world *w)
{
  weft_chan_close(w->gate);
  weft_wg_wait(&w->parked);
  weft_chan_release(w->gate);
}

/* get: method path on the server; returns the response (NULL after a failed CHECK). */
static weft_http_client_response *request(struct world *w, const char *method, const char *path)
{
  char url[256];
  snprintf(url, sizeof url, "%s%s", w->base, path);
  weft_http_client_request req = {.method = method, .url = url};
  weft_http_client_response *resp = NULL;
  int err = weft_http_client_do(w->client, NULL, &req, &resp);
  if (err)
    fprintf(stderr, "%s %s: %s\n", method, url, weft_strerror(err));
  CHECK_EQ(err, 0);
  return resp;
}

/* expect: GET path answers status with content type ctype (NULL: not checked); returns
 * the response for further checks (free it), or NULL. */
static weft_http_client_response *expect(struct world *w, const char *path, int status,
                                         const char *ctype)
{
  weft_http_client_response *resp = request(w, "GET", path);
  if (!resp)
    return NULL;
  int got = weft_http_client_response_status(resp);
  const char *ct = weft_http_client_response_header(resp, "Content-Type");
  if (got != status || (ctype && (!ct || strcmp(ct, ctype)))) {
    fprintf(stderr, "GET %s: status %d (want %d), Content-Type \"%s\" (want \"%s\")\n", path,
            got, status, ct ? ct : "(none)", ctype ? ctype : "any");
    CHECK(0);
  }
  return resp;
}

static const char *body(weft_http_client_response *resp)
{
  return resp ? weft_http_client_response_body(resp, NULL) : "";
}

static int count_of(const char *hay, const char *needle)
{
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
    n++;
  return n;
}

/* ---- the Prometheus text format, line by line ---- */

static const char *skip_name(const char *p)
{
  if (!(isalpha((unsigned char)*p) || *p == '_' || *p == ':'))
    return NULL;
  while (isalnum((unsigned char)*p) || *p == '_' || *p == ':')
    p++;
  return p;
}

/* skip_labels: {name="value",...} with escapes \\ \" \n. Returns past '}' or NULL. */
static const char *skip_labels(const char *p)
{
  if (*p != '{')
    return p;
  p++;
  while (*p != '}') {
    if (!(p = skip_name(p)) || *p++ != '=' || *p++ != '"')
      return NULL;
    while (*p != '"') {
      if (*p == '\0' || *p == '\n')
        return NULL;
      if (*p == '\\' && !strchr("\\\"n", *++p))
        return NULL;
      p++;
    }
    p++;
    if (*p == ',')
      p++;
    else if (*p != '}')
      return NULL;
  }
  return p + 1;
}

static int valid_value(const char *v)
{
  if (!strcmp(v, "NaN") || !strcmp(v, "+Inf") || !strcmp(v, "-Inf"))
    return 1;
  char *end;
  strtod(v, &end);
  return end != v && *end == '\0';
}

/* valid_line: one line of the text format (without its "\n"). */
static int valid_line(const char *line)
{
  if (!strncmp(line, "# HELP ", 7))
    return skip_name(line + 7) != NULL;
  if (!strncmp(line, "# TYPE ", 7)) {
    const char *p = skip_name(line + 7);
    if (!p || *p++ != ' ')
      return 0;
    return !strcmp(p, "counter") || !strcmp(p, "gauge") || !strcmp(p, "histogram") ||
           !strcmp(p, "summary") || !strcmp(p, "untyped");
  }
  const char *p = skip_name(line);
  if (!p || !(p = skip_labels(p)) || *p++ != ' ')
    return 0;
  char value[64];
  snprintf(value, sizeof value, "%.*s", (int)strcspn(p, " "), p);
  return valid_value(value); /* a timestamp after it is not written by weft */
}

static void check_prometheus(const char *text)
{
  CHECK(*text != '\0');
  CHECK(text[strlen(text) - 1] == '\n');
  char *copy = strdup(text), *save = NULL;
  for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    if (!valid_line(line)) {
      fprintf(stderr, "not the text format: \"%s\"\n", line);
      CHECK(0);
    }
  }
  free(copy);
}

/* ---- the scenario ---- */

static void check_index(struct world *w)
{
  weft_http_client_response *r = expect(w, "/", 200, "text/html; charset=utf-8");
  const char *want[] = {"/debug/dashboard", "/debug/coroutines?debug=1",
                        "/debug/coroutines?debug=2", "/debug/vars", "/metrics"};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    CHECK(strstr(body(r), want[i]) != NULL);
  CHECK(strcmp(weft_http_client_response_header(r, "Cache-Control"), "no-store") == 0);
  weft_http_client_response_free(r);
}

static void check_coroutines(struct world *w)
{
  weft_http_client_response *full = expect(w, "/debug/coroutines?debug=2", 200, TEXT_PLAIN);
  if (count_of(body(full), "dbg-parked") < PARKED) {
    fprintf(stderr, "debug=2: fewer than %d \"dbg-parked\" in:\n%s\n", PARKED, body(full));
    CHECK(0);
  }
  CHECK(strstr(body(full), "chan receive") != NULL);
  weft_http_client_response_free(full);

  /* Grouped: a header with the total, then "N @ pcs..." per group, the largest first.
   * The parked coroutines share one stack, so one group holds them all (without libunwind
   * every coroutine is in one group). */
  const char *grouped_paths[] = {"/debug/coroutines", "/debug/coroutines?debug=1"};
  for (int i = 0; i < 2; i++) {
    weft_http_client_response *g = expect(w, grouped_paths[i], 200, TEXT_PLAIN);
    const char *text = body(g);
    long total = 0, biggest = 0, n;
    CHECK(sscanf(text, "coroutine profile: total %ld", &total) == 1);
    for (const char *line = text; line;
         line = strchr(line, '\n'), line = line ? line + 1 : NULL)
      if (sscanf(line, "%ld @", &n) == 1 && n > biggest)
        biggest = n;
    if (total < PARKED + 2 || biggest < PARKED) {
      fprintf(stderr, "%s: no group of %d in:\n%s\n", grouped_paths[i], PARKED, text);
      CHECK(0);
    }
    weft_http_client_response_free(g);
  }
  const char *bad[] = {"/debug/coroutines?debug=0", "/debug/coroutines?debug=3",
                       "/debug/coroutines?debug=x", "/debug/coroutines?debug="};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    weft_http_client_response_free(expect(w, bad[i], 400, TEXT_PLAIN));
}

static void check_metrics(struct world *w)
{
  weft_http_client_response *r = expect(w, "/metrics", 200, WEFT_METRICS_CONTENT_TYPE);
  check_prometheus(body(r));
  CHECK(strstr(body(r), "# TYPE dbg_requests_total counter\n") != NULL);
  CHECK(strstr(body(r), "dbg_requests_total{code=\"200\"} 7\n") != NULL);
  CHECK(strstr(body(r), "dbg_parked 23\n") != NULL);
  CHECK(strstr(body(r), "dbg_latency_seconds_count 3\n") != NULL);
  weft_http_client_response_free(r);
}

/* keys_sorted: every object in j, at every level, lists its keys in ascending order. */
static int keys_sorted(json_t *j)
{
  if (json_is_array(j)) {
    for (size_t i = 0; i < json_array_size(j); i++)
      if (!keys_sorted(json_array_get(j, i)))
        return 0;
    return 1;
  }
  if (!json_is_object(j))
    return 1;
  const char *prev = NULL, *key;
  json_t *v;
  json_object_foreach(j, key, v)
  {
    if ((prev && strcmp(prev, key) >= 0) || !keys_sorted(v))
      return 0;
    prev = key;
  }
  return 1;
}

static void check_vars(struct world *w)
{
  weft_http_client_response *r = expect(w, "/debug/vars", 200, WEFT_METRICS_JSON_CONTENT_TYPE);
  json_error_t jerr;
  json_t *j = json_loads(body(r), JSON_PRESERVE_ORDER, &jerr);
  if (!j)
    fprintf(stderr, "/debug/vars is not JSON: %s at %d:%d\n%s\n", jerr.text, jerr.line,
            jerr.column, body(r));
  CHECK(json_is_object(j));
  CHECK(keys_sorted(j));
  json_t *rt = json_object_get(j, "runtime");
  CHECK(json_is_object(rt));
  CHECK(json_integer_value(json_object_get(rt, "coroutines")) >= PARKED + 2);
  CHECK_EQ(json_integer_value(json_object_get(rt, "procs")), weft_procs());
  CHECK_EQ(json_array_size(json_object_get(rt, "proc_idle_ns")), weft_procs());
  CHECK(json_is_array(json_object_get(j, "cmdline")));
  CHECK_EQ(json_integer_value(json_object_get(j, "dbg_parked")), PARKED);
  json_t *req = json_object_get(j, "dbg_requests_total");
  CHECK_EQ(json_integer_value(json_object_get(req, "code=\"200\"")), 7);
  json_t *lat = json_object_get(j, "dbg_latency_seconds");
  CHECK_EQ(json_integer_value(json_object_get(lat, "count")), 3);
  CHECK(json_is_array(json_object_get(lat, "buckets")));
  json_decref(j);
  weft_http_client_response_free(r);
}

static void check_dashboard(struct world *w)
{
  weft_http_client_response *r = expect(w, "/debug/dashboard", 200, "text/html; charset=utf-8");
  size_t len = 0;
  const char *page = r ? weft_http_client_response_body(r, &len) : "";
  CHECK_EQ(len, weft__dashboard_html_len);
  CHECK(memcmp(page, weft__dashboard_html, len) == 0);
  CHECK(strstr(page, "<canvas") || strstr(page, "createElement('canvas')"));
  CHECK(strstr(page, "/debug/vars") != NULL);
  /* Self-contained: nothing fetched from elsewhere. */
  CHECK(strstr(page, "http://") == NULL && strstr(page, "https://") == NULL);
  CHECK(strstr(page, "src=") == NULL && strstr(page, "@import") == NULL);
  weft_http_client_response_free(r);
}

static void check_errors(struct world *w)
{
  const char *missing[] = {"/nope", "/debug", "/debug/", "/debug/vars/x", "/metricsx"};
  for (size_t i = 0; i < sizeof missing / sizeof missing[0]; i++)
    weft_http_client_response_free(expect(w, missing[i], 404, NULL));
  weft_http_client_response *r = request(w, "POST", "/metrics");
  CHECK_EQ(r ? weft_http_client_response_status(r) : 0, 405);
  weft_http_client_response_free(r);
  r = request(w, "HEAD", "/debug/vars");
  CHECK_EQ(r ? weft_http_client_response_status(r) : 0, 200);
  size_t len = 1;
  if (r)
    weft_http_client_response_body(r, &len);
  CHECK_EQ(len, 0);
  weft_http_client_response_free(r);
}

/* The registry the scenario exposes: one family of each type, with known values. */
static weft_metrics_registry *make_registry(void)
{
  weft_metrics_registry *reg = weft_metrics_registry_new();
  weft_counter_vec *req = NULL;
  weft_gauge *g = NULL;
  weft_histogram *h = NULL;
  CHECK_EQ(weft_metrics_register_runtime(reg), 0);
  CHECK_EQ(weft_counter_vec_new(reg, "dbg_requests_total", "Requests served.", 1,
                                (const char *[]){"code"}, &req),
           0);
  weft_counter_add_u64(weft_counter_vec_with(req, "200"), 7);
  CHECK_EQ(weft_gauge_new(reg, "dbg_parked", "Coroutines parked by the test.", &g), 0);
  weft_gauge_set(g, PARKED);
  CHECK_EQ(weft_histogram_new(reg, "dbg_latency_seconds", "Latency.", 0, NULL, &h), 0);
  weft_histogram_observe(h, 0.002);
  weft_histogram_observe(h, 0.2);
  weft_histogram_observe(h, 2);
  return reg;
}

static int endpoints_main(void *arg)
{
  struct world w = {.reg = make_registry()};
  park(&w);
  weft_debug_server_options opts = {.addr = "127.0.0.1:0", .registry = w.reg};
  CHECK_EQ(weft_debug_server_start(&opts, &w.srv), 0);
  if (!w.srv)
    goto out;
  snprintf(w.base, sizeof w.base, "http://%s", weft_debug_server_addr(w.srv));
  w.client = weft_http_client_new(NULL, NULL);
  check_index(&w);
  check_coroutines(&w);
  check_metrics(&w);
  check_vars(&w);
  check_dashboard(&w);
  check_errors(&w);
  /* The client still holds an idle keep-alive connection: stop closes it. */
  CHECK_EQ(weft_debug_server_stop(w.srv, DL()), 0);
  weft_http_client_free(w.client);
out:
  unpark(&w);
  weft_metrics_registry_free(w.reg);
  return 0;
}

static void test_endpoints(void **state)
{
  checks_reset();
  assert_int_equal(run_weft(2, endpoints_main, NULL), 0);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- addresses ---- */

static void expect_loopback(weft_debug_server *s, int port)
{
  char want[32];
  snprintf(want, sizeof want, "127.0.0.1:%d", weft_debug_server_port(s));
  CHECK(strcmp(weft_debug_server_addr(s), want) == 0);
  CHECK(port == 0 ? weft_debug_server_port(s) > 0 : weft_debug_server_port(s) == port);
}

static int addresses_main(void *arg)
{
  weft_debug_server *s = NULL, *s2 = NULL;
  /* The default: 127.0.0.1:6060, unless something else on this machine holds it. */
  int err = weft_debug_server_start(NULL, &s);
  CHECK(err == 0 || err == -EADDRINUSE);
  if (err == 0) {
    expect_loopback(s, 6060);
    CHECK(strcmp(weft_debug_server_addr(s), WEFT_DEBUG_SERVER_DEFAULT_ADDR) == 0);
    CHECK_EQ(weft_debug_server_stop(s, DL()), 0);
  }
  /* A bare port means that port on loopback. */
  CHECK_EQ(weft_debug_server_start(&(weft_debug_server_options){.addr = "0"}, &s), 0);
  if (s) {
    expect_loopback(s, 0);
    /* The same port again: taken. */
    char addr[16];
    snprintf(addr, sizeof addr, "%d", weft_debug_server_port(s));
    CHECK_EQ(weft_debug_server_start(&(weft_debug_server_options){.addr = addr}, &s2),
             -EADDRINUSE);
    CHECK(s2 == NULL);
    CHECK_EQ(weft_debug_server_stop(s, DL()), 0);
  }
  /* An explicit address is taken as given. */
  CHECK_EQ(weft_debug_server_start(&(weft_debug_server_options){.addr = "127.0.0.2:0"}, &s), 0);
  if (s) {
    CHECK(strncmp(weft_debug_server_addr(s), "127.0.0.2:", 10) == 0);
    CHECK_EQ(weft_debug_server_stop(s, DL()), 0);
  }
  return 0;
}

static void test_addresses(void **state)
{
  checks_reset();
  assert_int_equal(run_weft(2, addresses_main, NULL), 0);
  ASSERT_NO_CHECK_FAILED();
}

static int errors_main(void *arg)
{
  weft_debug_server *s = (weft_debug_server *)&s;
  CHECK_EQ(weft_debug_server_start(NULL, NULL), -EINVAL);
  CHECK_EQ(
      weft_debug_server_start(&(weft_debug_server_options){.addr = "0", .max_conns = -1}, &s),
      -EINVAL);
  CHECK(s == NULL);
  CHECK_EQ(weft_debug_server_start(&(weft_debug_server_options){.addr = ""}, &s), -EINVAL);
  CHECK(weft_debug_server_start(&(weft_debug_server_options){.addr = "no port"}, &s) < 0);
  CHECK(s == NULL);
  CHECK_EQ(weft_debug_server_stop(NULL, DL()), 0);
  CHECK_EQ(weft_coroutine_count(), 1); /* nothing left running */
  return 0;
}

static void test_errors(void **state)
{
  weft_debug_server *s = NULL;
  /* Outside a runtime: no coroutine to serve from. */
  assert_int_equal(weft_debug_server_start(&(weft_debug_server_options){.addr = "0"}, &s),
                   -EPERM);
  assert_null(s);
  checks_reset();
  assert_int_equal(run_weft(1, errors_main, NULL), 0);
  ASSERT_NO_CHECK_FAILED();
}

/* The default registry is the process's, with the runtime's own metrics. */
static int default_registry_main(void *arg)
{
  struct world w = {0};
  CHECK_EQ(weft_debug_server_start(&(weft_debug_server_options){.addr = "0"}, &w.srv), 0);
  if (!w.srv)
    return 0;
  snprintf(w.base, sizeof w.base, "http://%s", weft_debug_server_addr(w.srv));
  w.client = weft_http_client_new(NULL, NULL);
  weft_http_client_response *r = expect(&w, "/metrics", 200, WEFT_METRICS_CONTENT_TYPE);
  check_prometheus(body(r));
  CHECK(strstr(body(r), "\nweft_coroutines ") != NULL);
  weft_http_client_response_free(r);
  CHECK_EQ(weft_debug_server_stop(w.srv, DL()), 0);
  weft_http_client_free(w.client);
  return 0;
}

static void test_default_registry(void **state)
{
  checks_reset();
  assert_int_equal(run_weft(2, default_registry_main, NULL), 0);
  ASSERT_NO_CHECK_FAILED();
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_endpoints),
      cmocka_unit_test(test_addresses),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_default_registry),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
