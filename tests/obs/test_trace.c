/* test_trace.c: W3C trace context (weft/trace.h): traceparent parsing and formatting,
 * ids, contexts, and the trace flowing through weft's HTTP server and client into the
 * logs of two services. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coro_check.h"
#include "weft/weft.h"
#include "weft_test.h"

#define TP_TRACE "4bf92f3577b34da6a3ce929d0e0e4736"
#define TP_SPAN  "00f067aa0ba902b7"
#define TP       "00-" TP_TRACE "-" TP_SPAN "-01"

static void test_parse_format(void **state)
{
  weft_trace t;
  char buf[WEFT_TRACEPARENT_SIZE], hex[33];
  assert_int_equal(weft_trace_parse(TP, &t), 0);
  assert_string_equal(weft_trace_id_hex(t.trace_id, hex), TP_TRACE);
  assert_string_equal(weft_trace_span_hex(t.span_id, hex), TP_SPAN);
  assert_int_equal(t.flags, WEFT_TRACE_SAMPLED);
  for (int i = 0; i < 8; i++)
    assert_int_equal(t.parent_id[i], 0);
  assert_int_equal(weft_trace_format(&t, buf, sizeof buf), WEFT_TRACEPARENT_LEN);
  assert_string_equal(buf, TP);
  assert_int_equal(weft_trace_format(&t, buf, WEFT_TRACEPARENT_LEN), -EINVAL);
  /* not sampled; trailing whitespace (OWS) */
  assert_int_equal(weft_trace_parse("00-" TP_TRACE "-" TP_SPAN "-00 \t", &t), 0);
  assert_int_equal(t.flags, 0);
  /* a later version may carry more fields after a '-' */
  assert_int_equal(weft_trace_parse("01-" TP_TRACE "-" TP_SPAN "-01-what-ever", &t), 0);
  assert_int_equal(weft_trace_parse("cc-" TP_TRACE "-" TP_SPAN "-09", &t), 0);
  assert_int_equal(t.flags, 9);
}

static void test_parse_invalid(void **state)
{
  static const char *bad[] = {
      "",
      "00",
      "ff-" TP_TRACE "-" TP_SPAN "-01",                     /* version ff */
      "00-00000000000000000000000000000000-" TP_SPAN "-01", /* zero trace id */
      "00-" TP_TRACE "-0000000000000000-01",                /* zero parent id */
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-" TP_SPAN "-01", /* upper case */
      "00-" TP_TRACE "-00F067AA0BA902B7-01",                /* upper case */
      "0A-" TP_TRACE "-" TP_SPAN "-01",                     /* upper case version */
      "00-" TP_TRACE "-" TP_SPAN "-1",                      /* short flags */
      "00-" TP_TRACE "-" TP_SPAN "-01-",                    /* 00 is exactly 55 */
      "00-" TP_TRACE "-" TP_SPAN "-010",                    /* too long */
      "00_" TP_TRACE "-" TP_SPAN "-01",                     /* separators */
      "00-" TP_TRACE "_" TP_SPAN "-01",
      "00-" TP_TRACE "-" TP_SPAN "_01",
      "00-4bf92f3577b34da6a3ce929d0e0e473-" TP_SPAN "-01x", /* short trace id */
      "00-" TP_TRACE "-" TP_SPAN "-0g",                     /* not hex */
      "0x-" TP_TRACE "-" TP_SPAN "-01",
      "01-" TP_TRACE "-" TP_SPAN "-01x", /* later version, no '-' */
      " 00-" TP_TRACE "-" TP_SPAN "-01", /* leading space */
  };
  weft_trace t = {.flags = 0x77};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (weft_trace_parse(bad[i], &t) != -EINVAL)
      fail_msg("accepted \"%s\"", bad[i]);
    assert_int_equal(t.flags, 0x77); /* untouched */
  }
  assert_int_equal(weft_trace_parse(NULL, &t), -EINVAL);
}

static void test_new_child(void **state)
{
  weft_trace a, b, c;
  weft_trace_new(&a);
  weft_trace_new(&b);
  assert_true(weft_trace_is_valid(&a));
  assert_memory_not_equal(a.trace_id, b.trace_id, 16);
  assert_int_equal(a.flags, WEFT_TRACE_SAMPLED);
  weft_trace_child(&a, &c);
  assert_memory_equal(c.trace_id, a.trace_id, 16);
  assert_memory_equal(c.parent_id, a.span_id, 8);
  assert_memory_not_equal(c.span_id, a.span_id, 8);
  weft_trace in_place = a;
  weft_trace_child(&in_place, &in_place); /* out may be parent */
  assert_memory_equal(in_place.parent_id, a.span_id, 8);
  assert_memory_equal(in_place.trace_id, a.trace_id, 16);
  weft_trace zero = {0};
  assert_false(weft_trace_is_valid(&zero));
  assert_false(weft_trace_is_valid(NULL));
}

static void test_ctx(void **state)
{
  weft_trace t, got;
  char buf[WEFT_TRACEPARENT_SIZE];
  assert_int_equal(weft_trace_from_ctx(NULL, &got), -ENOENT);
  assert_int_equal(weft_trace_from_ctx(weft_ctx_background(), &got), -ENOENT);
  assert_int_equal(weft_trace_outgoing(NULL, buf, sizeof buf, NULL), -ENOENT);
  assert_int_equal(weft_trace_parse(TP, &t), 0);
  weft_ctx *c = weft_trace_ctx_with(NULL, &t);
  weft_ctx *v = weft_ctx_with_value(c, "k", "v"); /* found through other values */
  assert_int_equal(weft_trace_from_ctx(v, &got), 0);
  assert_memory_equal(&got, &t, sizeof t);
  weft_trace out, parsed;
  assert_int_equal(weft_trace_outgoing(v, buf, sizeof buf, &out), WEFT_TRACEPARENT_LEN);
  assert_int_equal(weft_trace_parse(buf, &parsed), 0);
  assert_memory_equal(parsed.trace_id, t.trace_id, 16);
  assert_memory_equal(parsed.span_id, out.span_id, 8);
  assert_memory_equal(out.parent_id, t.span_id, 8);
  assert_int_equal(weft_trace_outgoing(v, buf, 10, NULL), -EINVAL);

  /* A server span: the child of the header's span, or a new trace; cancellable. */
  weft_ctx *s = weft_trace_server_ctx(NULL, TP);
  assert_int_equal(weft_trace_from_ctx(s, &got), 0);
  assert_memory_equal(got.trace_id, t.trace_id, 16);
  assert_memory_equal(got.parent_id, t.span_id, 8);
  weft_ctx_cancel(s);
  assert_int_equal(weft_ctx_err(s), -ECANCELED);
  weft_ctx_release(s);
  s = weft_trace_server_ctx(NULL, "00-garbage");
  assert_int_equal(weft_trace_from_ctx(s, &got), 0);
  assert_true(weft_trace_is_valid(&got));
  assert_memory_not_equal(got.trace_id, t.trace_id, 16);
  weft_ctx_release(s);
  weft_ctx_release(v);
  weft_ctx_release(c);
}

/* ---- end to end: client -> A -> (weft's client) -> B, both logging ---- */

struct svc {
  weft_http_server *server;
  int fd, port;
  weft_wg served;
};

struct e2e {
  struct svc a, b;
  weft_http_client *cl;
  weft_logger *log;
  int logfd[2];
  weft_trace a_span, b_span, sent; /* as A and B saw them; the span A's call sent */
  char sent_header[WEFT_TRACEPARENT_SIZE];
  const char *user_tp; /* a traceparent A's call sets itself, or NULL */
  int b_status;
};

static void handler_b(weft_http_response *w, weft_http_request *r, void *arg)
{
  struct e2e *e = arg;
  weft_ctx *ctx = weft_http_request_ctx(r);
  CHECK_EQ(weft_trace_from_ctx(ctx, &e->b_span), 0);
  const char *h = weft_http_request_header(r, "traceparent");
  CHECK(h != NULL);
  snprintf(e->sent_header, sizeof e->sent_header, "%s", h ? h : "");
  CHECK_EQ(weft_trace_parse(e->sent_header, &e->sent), 0);
  weft_log_info(e->log, ctx, "in b");
  weft_http_response_send(w, 200, "text/plain", "b", 1);
}

static void handler_a(weft_http_response *w, weft_http_request *r, void *arg)
{
  struct e2e *e = arg;
  weft_ctx *ctx = weft_http_request_ctx(r);
  CHECK_EQ(weft_trace_from_ctx(ctx, &e->a_span), 0);
  weft_log_info(e->log, ctx, "in a", WEFT_STR("path", weft_http_request_path(r)));
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/b", e->b.port);
  const char *hdrs[] = {"TraceParent", e->user_tp, NULL};
  weft_http_client_request req = {.url = url, .headers = e->user_tp ? hdrs : NULL};
  weft_http_client_response *resp = NULL;
  CHECK_EQ(weft_http_client_do(e->cl, ctx, &req, &resp), 0);
  e->b_status = resp ? weft_http_client_response_status(resp) : -1;
  weft_http_client_response_free(resp);
  weft_http_response_send(w, 200, "text/plain", "a", 1);
}

static void serve(void *arg)
{
  struct svc *s = arg;
  CHECK_EQ(weft_http_server_serve(s->server, s->fd), 0);
  weft_wg_done(&s->served);
}

static void svc_start(struct svc *s, weft_http_handler_fn fn, void *arg)
{
  s->server =
      weft_http_server_new(&(weft_http_server_config){.handler = fn, .handler_arg = arg});
  s->fd = weft_listen("tcp", "127.0.0.1:0", 0);
  CHECK(s->fd >= 0);
  s->port = weft_local_port(s->fd);
  weft_wg_init(&s->served);
  weft_wg_add(&s->served, 1);
  weft_go(serve, s);
}

static void svc_stop(struct svc *s)
{
  CHECK_EQ(weft_http_server_shutdown(s->server, weft_now() + MS(2000)), 0);
  weft_wg_wait(&s->served);
  weft_close(s->fd);
  weft_http_server_free(s->server);
}

/* One request to A (with traceparent tp, or none); returns A's status. */
static int call_a(struct e2e *e, const char *tp)
{
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/a", e->a.port);
  const char *hdrs[] = {"traceparent", tp, NULL};
  weft_http_client_request req = {.url = url, .headers = tp ? hdrs : NULL};
  weft_http_client_response *resp = NULL;
  int rc = weft_http_client_do(e->cl, NULL, &req, &resp);
  int status = rc ? rc : weft_http_client_response_status(resp);
  weft_http_client_response_free(resp);
  return status;
}

static int e2e_main(void *arg)
{
  struct e2e *e = arg;
  svc_start(&e->a, handler_a, e);
  svc_start(&e->b, handler_b, e);
  e->cl = weft_http_client_new(NULL, NULL);
  CHECK(e->cl != NULL);
  int status = call_a(e, e->user_tp ? NULL : TP);
  weft_http_client_free(e->cl);
  svc_stop(&e->a);
  svc_stop(&e->b);
  CHECK_EQ(status, 200);
  CHECK_EQ(e->b_status, 200);
  return 0;
}

static void e2e_setup(struct e2e *e)
{
  memset(e, 0, sizeof *e);
  assert_int_equal(pipe2(e->logfd, O_NONBLOCK), 0);
  weft_log_handler *h = weft_log_text_handler_new(
      &(weft_log_options){.flags = WEFT_LOG_NO_TIME, .fd = e->logfd[1]});
  e->log = weft_logger_new(h);
  weft_log_handler_release(h);
}

static void e2e_teardown(struct e2e *e)
{
  weft_logger_release(e->log);
  close(e->logfd[0]);
  close(e->logfd[1]);
}

static void test_http_e2e(void **state)
{
  struct e2e e;
  e2e_setup(&e);
  checks_reset();
  assert_int_equal(run_weft(2, e2e_main, &e), 0);
  assert_int_equal(checks_result(), 0);
  char hex[33], a_span[17], b_span[17], want[512], logs[4096];
  /* A continues the caller's trace, as a child of the caller's span. */
  assert_string_equal(weft_trace_id_hex(e.a_span.trace_id, hex), TP_TRACE);
  assert_string_equal(weft_trace_span_hex(e.a_span.parent_id, a_span), TP_SPAN);
  weft_trace_span_hex(e.a_span.span_id, a_span);
  assert_string_not_equal(a_span, TP_SPAN);
  /* B: the same trace; its parent is the span A's client sent, itself A's child. */
  assert_memory_equal(e.b_span.trace_id, e.a_span.trace_id, 16);
  assert_memory_equal(e.sent.trace_id, e.a_span.trace_id, 16);
  assert_memory_equal(e.b_span.parent_id, e.sent.span_id, 8);
  assert_memory_not_equal(e.sent.span_id, e.a_span.span_id, 8);
  assert_memory_not_equal(e.b_span.span_id, e.sent.span_id, 8);
  assert_int_equal(e.sent.flags, WEFT_TRACE_SAMPLED);
  /* Both log lines carry the trace id and their own span. */
  ssize_t n = read(e.logfd[0], logs, sizeof logs - 1);
  assert_true(n > 0);
  logs[n] = '\0';
  weft_trace_span_hex(e.b_span.span_id, b_span);
  snprintf(want, sizeof want,
           "level=INFO msg=\"in a\" trace_id=%s span_id=%s path=/a\n"
           "level=INFO msg=\"in b\" trace_id=%s span_id=%s\n",
           TP_TRACE, a_span, TP_TRACE, b_span);
  assert_string_equal(logs, want);
  e2e_teardown(&e);
}

/* Without a traceparent A starts a trace; a traceparent A sets itself is sent as is. */
static void test_http_new_trace_and_user_header(void **state)
{
  struct e2e e;
  e2e_setup(&e);
  static const char user[] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
  e.user_tp = user;
  checks_reset();
  assert_int_equal(run_weft(1, e2e_main, &e), 0);
  assert_int_equal(checks_result(), 0);
  assert_true(weft_trace_is_valid(&e.a_span));
  for (int i = 0; i < 8; i++)
    assert_int_equal(e.a_span.parent_id[i], 0); /* a root span */
  assert_string_equal(e.sent_header, user);
  char hex[33];
  assert_string_equal(weft_trace_id_hex(e.b_span.trace_id, hex),
                      "0af7651916cd43dd8448eb211c80319c");
  assert_int_equal(e.b_span.flags, 0); /* the caller's unsampled flag carries on */
  e2e_teardown(&e);
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_format),
      cmocka_unit_test(test_parse_invalid),
      cmocka_unit_test(test_new_child),
      cmocka_unit_test(test_ctx),
      cmocka_unit_test(test_http_e2e),
      cmocka_unit_test(test_http_new_trace_and_user_header),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
