/* test_log.c: structured logging (weft/log.h), byte for byte against what Go's log/slog
 * writes for the same record (TextHandler and JSONHandler, worked out from slog's
 * documented rules and its strconv/encoding/json/time.Duration formatting), levels,
 * groups, context attributes, and whole records under concurrency. */
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coro_check.h"
#include "weft/weft.h"
#include "weft_test.h"

/* ---- capture: a handler writing into a pipe, read back after each record ---- */

struct cap {
  int fd[2];
  weft_log_handler *h;
  weft_logger *l;
  char out[65536];
};

static weft_logger *cap_open(struct cap *c, bool json, int level, int flags)
{
  assert_int_equal(pipe2(c->fd, O_NONBLOCK), 0);
  weft_log_options o = {.level = level, .flags = flags | WEFT_LOG_NO_TIME, .fd = c->fd[1]};
  c->h = json ? weft_log_json_handler_new(&o) : weft_log_text_handler_new(&o);
  assert_non_null(c->h);
  c->l = weft_logger_new(c->h);
  assert_non_null(c->l);
  return c->l;
}

/* Everything written since the last call (NUL-terminated). */
static const char *cap_read(struct cap *c)
{
  ssize_t n = read(c->fd[0], c->out, sizeof c->out - 1);
  c->out[n > 0 ? n : 0] = '\0';
  return c->out;
}

static void cap_close(struct cap *c)
{
  weft_logger_release(c->l);
  weft_log_handler_release(c->h);
  close(c->fd[0]);
  close(c->fd[1]);
}

#define EXPECT_LINE(c, want) assert_string_equal(cap_read(c), want "\n")

/* ---- text ---- */

static void test_text_basic(void **state)
{
  struct cap c;
  weft_logger *l = cap_open(&c, false, WEFT_LOG_INFO, 0);
  weft_log_info(l, NULL, "hello world", WEFT_INT("count", 3), WEFT_STR("user", "ann"));
  EXPECT_LINE(&c, "level=INFO msg=\"hello world\" count=3 user=ann");
  weft_log_warn(l, NULL, "no attrs");
  EXPECT_LINE(&c, "level=WARN msg=\"no attrs\"");
  weft_log_error(l, NULL, "x", WEFT_UINT("u", UINT64_MAX), WEFT_INT("i", INT64_MIN),
                 WEFT_BOOL("t", true), WEFT_BOOL("f", false), WEFT_STRN("s", "abcdef", 3));
  EXPECT_LINE(&c, "level=ERROR msg=x u=18446744073709551615 i=-9223372036854775808 t=true "
                  "f=false s=abc");
  weft_log(l, NULL, WEFT_LOG_INFO + 2, "odd");
  EXPECT_LINE(&c, "level=INFO+2 msg=odd");
  cap_close(&c);
}

static void test_text_quoting(void **state)
{
  struct cap c;
  weft_logger *l = cap_open(&c, false, WEFT_LOG_INFO, 0);
  weft_log_info(l, NULL, "", WEFT_STR("empty", ""), WEFT_STR("null", NULL),
                WEFT_STR("sp", "a b"), WEFT_STR("eq", "a=b"), WEFT_STR("q", "say \"hi\""));
  EXPECT_LINE(&c, "level=INFO msg=\"\" empty=\"\" null=\"\" sp=\"a b\" eq=\"a=b\" "
                  "q=\"say \\\"hi\\\"\"");
  /* Control characters: Go's strconv.Quote escapes. A lone backslash and DEL need no
   * quotes (DEL is in JSON's safe set); once quoted, DEL is \x7f and '\\' doubles. */
  weft_log_info(l, NULL, "m", WEFT_STR("nl", "a\nb"), WEFT_STR("tab", "a\tb"),
                WEFT_STR("ctl", "\x01\x1b\a\b\f\r\v"), WEFT_STR("bs", "a\\b"),
                WEFT_STR("del", "a\x7f"), WEFT_STR("bsq", "\\ x\x7f"));
  EXPECT_LINE(&c, "level=INFO msg=m nl=\"a\\nb\" tab=\"a\\tb\" "
                  "ctl=\"\\x01\\x1b\\a\\b\\f\\r\\v\" bs=a\\b del=a\x7f bsq=\"\\\\ x\\x7f\"");
  /* UTF-8: printable runes stay as they are; invalid bytes, Unicode spaces and format
   * characters quote and escape; U+FFFD quotes but prints as itself. */
  weft_log_info(l, NULL, "m", WEFT_STR("utf8", "h\xc3\xa9llo \xe2\x9c\x93"),
                WEFT_STR("word", "\xc3\xa9t\xc3\xa9"), WEFT_STR("emoji", "\xf0\x9f\x98\x80"),
                WEFT_STR("bad", "a\xff"), WEFT_STR("nbsp", "a\xc2\xa0"),
                WEFT_STR("ls", "\xe2\x80\xa8"), WEFT_STR("zw", "\xe2\x80\x8b"),
                WEFT_STR("fffd", "\xef\xbf\xbd"), WEFT_STR("c1", "\xc2\x85"));
  EXPECT_LINE(&c, "level=INFO msg=m utf8=\"h\xc3\xa9llo \xe2\x9c\x93\" word=\xc3\xa9t\xc3\xa9 "
                  "emoji=\xf0\x9f\x98\x80 bad=\"a\\xff\" nbsp=\"a\\u00a0\" ls=\"\\u2028\" "
                  "zw=\"\\u200b\" fffd=\"\xef\xbf\xbd\" c1=\"\\u0085\"");
  /* Keys quote by the same rules; a truncated sequence is invalid byte by byte. */
  weft_log_info(l, NULL, "m", WEFT_STR("a key", "v"), WEFT_STR("", "v"),
                WEFT_STR("k", "\xe2\x9c"), WEFT_STR("surrogate", "\xed\xa0\x80"));
  EXPECT_LINE(&c, "level=INFO msg=m \"a key\"=v \"\"=v k=\"\\xe2\\x9c\" "
                  "surrogate=\"\\xed\\xa0\\x80\"");
  cap_close(&c);
}

static void test_text_values(void **state)
{
  struct cap c;
  weft_logger *l = cap_open(&c, false, WEFT_LOG_INFO, 0);
  /* time.Duration.String */
  weft_log_info(l, NULL, "d", WEFT_DUR("a", 0), WEFT_DUR("b", 1), WEFT_DUR("c", 1500),
                WEFT_DUR("d", 1500000), WEFT_DUR("e", 1500000000), WEFT_DUR("f", 60000000000),
                WEFT_DUR("g", 3723500000000), WEFT_DUR("h", -1000000000),
                WEFT_DUR("i", 3600000000000), WEFT_DUR("j", 1000), WEFT_DUR("k", INT64_MIN));
  EXPECT_LINE(&c, "level=INFO msg=d a=0s b=1ns c=1.5\xc2\xb5s d=1.5ms e=1.5s f=1m0s "
                  "g=1h2m3.5s h=-1s i=1h0m0s j=1\xc2\xb5s k=-2562047h47m16.854775808s");
  /* strconv.FormatFloat(f, 'g', -1, 64) */
  weft_log_info(l, NULL, "f", WEFT_F64("a", 0.5), WEFT_F64("b", 1e6), WEFT_F64("c", 123456.0),
                WEFT_F64("d", 1e-5), WEFT_F64("e", 3.14), WEFT_F64("f", 1e21),
                WEFT_F64("g", 100), WEFT_F64("h", -0.0), WEFT_F64("i", 0.0001),
                WEFT_F64("j", 1.0 / 3), WEFT_F64("k", 0.0 / 0.0), WEFT_F64("l", 1.0 / 0.0),
                WEFT_F64("m", -1.0 / 0.0), WEFT_F64("n", 123456789.0), WEFT_F64("o", 5e-324));
  EXPECT_LINE(&c, "level=INFO msg=f a=0.5 b=1e+06 c=123456 d=1e-05 e=3.14 f=1e+21 g=100 h=-0 "
                  "i=0.0001 j=0.3333333333333333 k=NaN l=+Inf m=-Inf n=1.23456789e+08 "
                  "o=5e-324");
  /* Times: RFC 3339 with milliseconds, truncated, UTC. */
  weft_log_info(l, NULL, "t", WEFT_TIME("a", 1700000000123456789), WEFT_TIME("b", 0),
                WEFT_TIME("c", -1), WEFT_TIME("d", 951782400999999999));
  EXPECT_LINE(&c, "level=INFO msg=t a=2023-11-14T22:13:20.123Z b=1970-01-01T00:00:00.000Z "
                  "c=1969-12-31T23:59:59.999Z d=2000-02-29T00:00:00.999Z");
  /* Errors: codes as their message, weft_error values as their chain. */
  weft_error *e = weft_error_new(-ECONNREFUSED, NULL, "dial %s", "10.0.0.1:80");
  weft_log_info(l, NULL, "e", WEFT_ERRNO("a", -ECONNREFUSED), WEFT_ERRNO("b", 0),
                WEFT_ERR("c", e), WEFT_ERR("d", NULL), WEFT_ERRNO("e", -ETIMEDOUT));
  EXPECT_LINE(&c, "level=INFO msg=e a=\"connection refused\" b=<nil> c=\"dial 10.0.0.1:80\" "
                  "d=<nil> e=\"deadline exceeded\"");
  weft_error_release(e);
  cap_close(&c);
}

static void test_levels(void **state)
{
  char buf[WEFT_LOG_LEVEL_SIZE];
  static const struct {
    int level;
    const char *s;
  } cases[] = {{-4, "DEBUG"},
               {-6, "DEBUG-2"},
               {-3, "DEBUG+1"},
               {0, "INFO"},
               {2, "INFO+2"},
               {3, "INFO+3"},
               {4, "WARN"},
               {5, "WARN+1"},
               {8, "ERROR"},
               {12, "ERROR+4"},
               {INT32_MIN, "DEBUG-2147483644"}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    assert_string_equal(weft_log_level_string(cases[i].level, buf), cases[i].s);
}

static int evaluated;
static int64_t count_eval(void)
{
  return ++evaluated;
}

static void test_level_filter(void **state)
{
  struct cap c;
  weft_logger *l = cap_open(&c, false, WEFT_LOG_INFO, 0);
  evaluated = 0;
  weft_log_debug(l, NULL, "hidden", WEFT_INT("n", count_eval()));
  assert_int_equal(evaluated, 0); /* attributes are not evaluated when off */
  assert_string_equal(cap_read(&c), "");
  assert_int_equal(weft_log_enabled(l, WEFT_LOG_DEBUG), 0);
  assert_int_equal(weft_log_enabled(l, WEFT_LOG_INFO), 1);
  weft_log_handler_set_level(c.h, WEFT_LOG_DEBUG); /* at run time, on derived loggers too */
  weft_logger *g = weft_logger_with_group(l, "g");
  assert_int_equal(weft_log_handler_level(c.h), WEFT_LOG_DEBUG);
  weft_log_debug(g, NULL, "shown", WEFT_INT("n", count_eval()));
  assert_int_equal(evaluated, 1);
  EXPECT_LINE(&c, "level=DEBUG msg=shown g.n=1");
  weft_log_handler_set_level(c.h, WEFT_LOG_ERROR);
  weft_log_warn(g, NULL, "hidden");
  weft_log_error(g, NULL, "shown");
  EXPECT_LINE(&c, "level=ERROR msg=shown");
  weft_logger_release(g);
  cap_close(&c);
}

/* ---- groups ---- */

static void test_groups(void **state)
{
  struct cap t, j;
  weft_logger *lt = cap_open(&t, false, WEFT_LOG_INFO, 0);
  weft_logger *lj = cap_open(&j, true, WEFT_LOG_INFO, 0);
  weft_logger *ls[2] = {lt, lj};
  for (int i = 0; i < 2; i++)
    weft_log_info(ls[i], NULL, "g", WEFT_INT("a", 1),
                  WEFT_GROUP("req", WEFT_STR("method", "GET"),
                             WEFT_GROUP("url", WEFT_STR("path", "/x")), WEFT_INT("n", 2)),
                  WEFT_GROUP("", WEFT_INT("inline", 3)), WEFT_INT("z", 4));
  EXPECT_LINE(&t, "level=INFO msg=g a=1 req.method=GET req.url.path=/x req.n=2 inline=3 z=4");
  EXPECT_LINE(&j, "{\"level\":\"INFO\",\"msg\":\"g\",\"a\":1,\"req\":{\"method\":\"GET\","
                  "\"url\":{\"path\":\"/x\"},\"n\":2},\"inline\":3,\"z\":4}");

  /* Logger groups: later attributes go inside; JSON closes them at the end; groups that
   * end up empty are left out. */
  for (int i = 0; i < 2; i++) {
    weft_logger *a = weft_logger_with(ls[i], WEFT_STR("svc", "api"));
    weft_logger *g = weft_logger_with_group(a, "http");
    weft_logger *b = weft_logger_with(g, WEFT_INT("port", 80));
    weft_logger *h = weft_logger_with_group(b, "req");
    weft_log_info(h, NULL, "m", WEFT_INT("status", 200));
    weft_log_info(h, NULL, "none");
    weft_logger *e = weft_logger_with_group(a, "empty");
    weft_logger *e2 = weft_logger_with_group(e, "deeper");
    weft_log_info(e2, NULL, "empty");
    weft_log_info(e2, NULL, "empty", WEFT_GROUP("g", WEFT_GROUP("h", (weft_log_attr){0})));
    weft_logger *same = weft_logger_with_group(a, "");
    assert_ptr_equal(same, a);
    weft_logger_release(same);
    weft_logger_release(e2);
    weft_logger_release(e);
    weft_logger_release(h);
    weft_logger_release(b);
    weft_logger_release(g);
    weft_logger_release(a);
  }
  assert_string_equal(cap_read(&t),
                      "level=INFO msg=m svc=api http.port=80 http.req.status=200\n"
                      "level=INFO msg=none svc=api http.port=80\n"
                      "level=INFO msg=empty svc=api\n"
                      "level=INFO msg=empty svc=api\n");
  assert_string_equal(
      cap_read(&j),
      "{\"level\":\"INFO\",\"msg\":\"m\",\"svc\":\"api\",\"http\":{\"port\":80,"
      "\"req\":{\"status\":200}}}\n"
      "{\"level\":\"INFO\",\"msg\":\"none\",\"svc\":\"api\",\"http\":{\"port\":80}}\n"
      "{\"level\":\"INFO\",\"msg\":\"empty\",\"svc\":\"api\"}\n"
      "{\"level\":\"INFO\",\"msg\":\"empty\",\"svc\":\"api\"}\n");
  cap_close(&t);
  cap_close(&j);
}

/* ---- JSON ---- */

static void test_json(void **state)
{
  struct cap c;
  weft_logger *l = cap_open(&c, true, WEFT_LOG_DEBUG, 0);
  weft_log_debug(l, NULL, "hi", WEFT_STR("s", "v"), WEFT_INT("i", -3), WEFT_UINT("u", 7),
                 WEFT_BOOL("b", true), WEFT_DUR("d", 1500000000), WEFT_F64("f", 0.25),
                 WEFT_TIME("t", 1700000000123456789), WEFT_TIME("t0", 1700000000000000000),
                 WEFT_TIME("t1", 1700000000100000000), WEFT_ERRNO("e", -EPIPE));
  EXPECT_LINE(&c, "{\"level\":\"DEBUG\",\"msg\":\"hi\",\"s\":\"v\",\"i\":-3,\"u\":7,\"b\":true,"
                  "\"d\":1500000000,\"f\":0.25,\"t\":\"2023-11-14T22:13:20.123456789Z\","
                  "\"t0\":\"2023-11-14T22:13:20Z\",\"t1\":\"2023-11-14T22:13:20.1Z\","
                  "\"e\":\"channel or connection closed\"}");
  /* encoding/json floats: 'f' between 1e-6 and 1e21, else 'e' with e-7 not e-07. */
  weft_log_info(l, NULL, "f", WEFT_F64("a", 1e6), WEFT_F64("b", 1e-7), WEFT_F64("c", 1e21),
                WEFT_F64("d", 0.000001), WEFT_F64("e", 123456789.5), WEFT_F64("g", -2.5e-10),
                WEFT_F64("h", 1e100), WEFT_F64("n", 0.0 / 0.0), WEFT_F64("z", 0));
  EXPECT_LINE(&c, "{\"level\":\"INFO\",\"msg\":\"f\",\"a\":1000000,\"b\":1e-7,\"c\":1e+21,"
                  "\"d\":0.000001,\"e\":123456789.5,\"g\":-2.5e-10,\"h\":1e+100,"
                  "\"n\":\"NaN\",\"z\":0}");
  /* Escaping as slog's appendEscapedJSONString: no HTML escaping, \b and \f as \u00XX,
   * DEL as itself, invalid UTF-8 as \ufffd, U+2028/9 escaped. */
  weft_log_info(l, NULL, "line1\nline2", WEFT_STR("q", "a\"b\\c"),
                WEFT_STR("c", "\t\r\b\f\x01"), WEFT_STR("h", "<a&b>"), WEFT_STR("del", "\x7f"),
                WEFT_STR("bad", "a\xff"
                                "b"),
                WEFT_STR("u", "\xc3\xa9\xe2\x80\xa8\xe2\x80\xa9\xf0\x9f\x98\x80"),
                WEFT_STR("k\"ey", ""), WEFT_STR("", "x"));
  EXPECT_LINE(&c, "{\"level\":\"INFO\",\"msg\":\"line1\\nline2\",\"q\":\"a\\\"b\\\\c\","
                  "\"c\":\"\\t\\r\\u0008\\u000c\\u0001\",\"h\":\"<a&b>\",\"del\":\"\x7f\","
                  "\"bad\":\"a\\ufffdb\",\"u\":\"\xc3\xa9\\u2028\\u2029\xf0\x9f\x98\x80\","
                  "\"k\\\"ey\":\"\",\"\":\"x\"}");
  cap_close(&c);
}

/* ---- source and time ---- */

static void test_source_and_time(void **state)
{
  struct cap c;
  assert_int_equal(pipe2(c.fd, O_NONBLOCK), 0);
  weft_log_options o = {.flags = WEFT_LOG_ADD_SOURCE, .fd = c.fd[1]};
  weft_log_handler *hs[2] = {weft_log_text_handler_new(&o), weft_log_json_handler_new(&o)};
  for (int i = 0; i < 2; i++) {
    weft_logger *l = weft_logger_new(hs[i]);
    int line = __LINE__ + 1;
    weft_log_info(l, NULL, "src");
    const char *out = cap_read(&c);
    char want[512];
    if (i == 0) {
      /* time=2024-01-02T03:04:05.678Z level=INFO source=/path/test_log.c:N msg=src */
      assert_int_equal(strncmp(out, "time=", 5), 0);
      assert_int_equal(out[15], 'T');
      assert_int_equal(out[28], 'Z');
      snprintf(want, sizeof want, " level=INFO source=%s:%d msg=src\n", __FILE__, line);
      assert_string_equal(out + 29, want);
    } else {
      assert_int_equal(strncmp(out, "{\"time\":\"", 9), 0);
      const char *z = strstr(out, "Z\",");
      assert_non_null(z);
      snprintf(want, sizeof want,
               "Z\",\"level\":\"INFO\",\"source\":{\"function\":\"test_source_and_time\","
               "\"file\":\"%s\",\"line\":%d},\"msg\":\"src\"}\n",
               __FILE__, line);
      assert_string_equal(z, want);
    }
    weft_logger_release(l);
    weft_log_handler_release(hs[i]);
  }
  close(c.fd[0]);
  close(c.fd[1]);
}

/* ---- copies, FILE output, the default logger ---- */

static void test_with_copies(void **state)
{
  struct cap c;
  weft_logger *l = cap_open(&c, false, WEFT_LOG_INFO, 0);
  char key[8] = "k", val[8] = "before";
  weft_error *e = weft_error_new(-EINVAL, NULL, "bad");
  weft_logger *w = weft_logger_with(l, WEFT_STR(key, val), WEFT_GROUP("g", WEFT_STR("s", val)),
                                    WEFT_ERR("err", e));
  weft_error_release(e); /* the logger holds its own reference */
  strcpy(key, "x");
  strcpy(val, "after");
  weft_log_info(w, NULL, "m");
  EXPECT_LINE(&c, "level=INFO msg=m k=before g.s=before err=bad");
  weft_logger_release(w);
  cap_close(&c);
}

static void test_file_output(void **state)
{
  char *mem = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&mem, &len);
  weft_log_handler *h =
      weft_log_json_handler_new(&(weft_log_options){.flags = WEFT_LOG_NO_TIME, .file = f});
  weft_logger *l = weft_logger_new(h);
  weft_log_handler_release(h); /* the logger keeps it */
  weft_log_info(l, NULL, "to a FILE", WEFT_INT("n", 1));
  assert_string_equal(mem, "{\"level\":\"INFO\",\"msg\":\"to a FILE\",\"n\":1}\n");
  weft_logger_release(l);
  fclose(f);
  free(mem);
}

static void test_default_logger(void **state)
{
  struct cap c;
  weft_logger *builtin = weft_log_default();
  assert_non_null(builtin);
  assert_int_equal(weft_log_enabled(NULL, WEFT_LOG_INFO), 1);
  assert_int_equal(weft_log_enabled(NULL, WEFT_LOG_DEBUG), 0);
  weft_logger *l = cap_open(&c, false, WEFT_LOG_INFO, 0);
  weft_log_set_default(l);
  assert_ptr_equal(weft_log_default(), l);
  weft_log_info(NULL, NULL, "via default", WEFT_INT("n", 1));
  EXPECT_LINE(&c, "level=INFO msg=\"via default\" n=1");
  weft_logger *w = weft_logger_with(NULL, WEFT_STR("from", "default"));
  weft_log_info(w, NULL, "derived");
  EXPECT_LINE(&c, "level=INFO msg=derived from=default");
  weft_logger_release(w);
  weft_log_set_default(NULL);
  assert_ptr_equal(weft_log_default(), builtin);
  cap_close(&c); /* the default kept its own reference */
}

/* ---- context attributes ---- */

static void test_ctx_attrs(void **state)
{
  struct cap t, j;
  weft_logger *lt = cap_open(&t, false, WEFT_LOG_INFO, 0);
  weft_logger *lj = cap_open(&j, true, WEFT_LOG_INFO, 0);
  char rid[8] = "r-1";
  weft_ctx *c1 = weft_log_ctx_with(NULL, WEFT_STR("request_id", rid));
  strcpy(rid, "gone"); /* copied */
  weft_ctx *mid = weft_ctx_with_cancel(c1);
  weft_ctx *c2 =
      weft_log_ctx_with(mid, WEFT_INT("user", 7), WEFT_GROUP("db", WEFT_INT("q", 1)));
  weft_trace tr = {.trace_id = {1, 2, 3}, .span_id = {0xab}, .flags = 1};
  weft_ctx *c3 = weft_trace_ctx_with(c2, &tr);
  weft_logger *gt = weft_logger_with_group(lt, "g"), *gj = weft_logger_with_group(lj, "g");
  weft_log_info(gt, c1, "one", WEFT_INT("a", 1));
  weft_log_info(gt, c3, "three", WEFT_INT("a", 1));
  weft_log_info(gj, c3, "three", WEFT_INT("a", 1));
  assert_string_equal(cap_read(&t),
                      "level=INFO msg=one request_id=r-1 g.a=1\n"
                      "level=INFO msg=three trace_id=01020300000000000000000000000000 "
                      "span_id=ab00000000000000 request_id=r-1 user=7 db.q=1 g.a=1\n");
  EXPECT_LINE(&j, "{\"level\":\"INFO\",\"msg\":\"three\","
                  "\"trace_id\":\"01020300000000000000000000000000\","
                  "\"span_id\":\"ab00000000000000\",\"request_id\":\"r-1\",\"user\":7,"
                  "\"db\":{\"q\":1},\"g\":{\"a\":1}}");
  weft_logger_release(gt);
  weft_logger_release(gj);
  weft_ctx_release(c3);
  weft_ctx_release(c2);
  weft_ctx_release(mid);
  weft_ctx_release(c1);
  cap_close(&t);
  cap_close(&j);
}

/* ---- long records from many coroutines on P = 4 never interleave ---- */

enum { WRITERS = 32, RECORDS = 40, LONG = 6000 };

struct race {
  int fd[2];
  weft_logger *l;
  char *filler;
  weft_wg done;
  int lines, bad;
};

static void *race_reader(void *arg)
{
  struct race *r = arg;
  size_t cap = 1 << 20, n = 0;
  char *buf = malloc(cap);
  ssize_t k;
  while ((k = read(r->fd[0], buf + n, cap - n - 1)) > 0) {
    n += (size_t)k;
    buf[n] = '\0';
    char *nl;
    while ((nl = memchr(buf, '\n', n))) {
      *nl = '\0';
      json_error_t err;
      json_t *j = json_loads(buf, 0, &err);
      const char *msg = j ? json_string_value(json_object_get(j, "msg")) : NULL;
      const char *fill = j ? json_string_value(json_object_get(j, "fill")) : NULL;
      if (!msg || strcmp(msg, "race") || !fill || strlen(fill) != LONG)
        r->bad++;
      r->lines++;
      json_decref(j);
      n -= (size_t)(nl + 1 - buf);
      memmove(buf, nl + 1, n);
    }
    if (cap - n < 65536)
      buf = realloc(buf, cap *= 2);
  }
  free(buf);
  return NULL;
}

static void race_writer(void *arg)
{
  struct race *r = arg;
  for (int i = 0; i < RECORDS; i++) {
    weft_log_info(r->l, NULL, "race", WEFT_INT("i", i), WEFT_STR("fill", r->filler),
                  WEFT_STR("esc", "tab\there \"q\""));
    if (i % 8 == 0)
      weft_yield();
  }
  weft_wg_done(&r->done);
}

static int race_main(void *arg)
{
  struct race *r = arg;
  weft_wg_init(&r->done);
  weft_wg_add(&r->done, WRITERS);
  for (int i = 0; i < WRITERS; i++)
    weft_go(race_writer, r);
  weft_wg_wait(&r->done);
  return 0;
}

static void test_interleaving(void **state)
{
  struct race r = {0};
  assert_int_equal(pipe(r.fd), 0);
  fcntl(r.fd[1], F_SETPIPE_SZ, 4096); /* small: writes split and writers block */
  r.filler = malloc(LONG + 1);
  for (int i = 0; i < LONG; i++)
    r.filler[i] = (char)('a' + i % 26);
  r.filler[LONG] = '\0';
  weft_log_handler *h = weft_log_json_handler_new(&(weft_log_options){.fd = r.fd[1]});
  r.l = weft_logger_new(h);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, race_reader, &r), 0);
  assert_int_equal(run_weft(4, race_main, &r), 0);
  close(r.fd[1]);
  pthread_join(th, NULL);
  close(r.fd[0]);
  assert_int_equal(r.bad, 0);
  assert_int_equal(r.lines, WRITERS * RECORDS);
  weft_logger_release(r.l);
  weft_log_handler_release(h);
  free(r.filler);
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_text_basic),     cmocka_unit_test(test_text_quoting),
      cmocka_unit_test(test_text_values),    cmocka_unit_test(test_levels),
      cmocka_unit_test(test_level_filter),   cmocka_unit_test(test_groups),
      cmocka_unit_test(test_json),           cmocka_unit_test(test_source_and_time),
      cmocka_unit_test(test_with_copies),    cmocka_unit_test(test_file_output),
      cmocka_unit_test(test_default_logger), cmocka_unit_test(test_ctx_attrs),
      cmocka_unit_test(test_interleaving),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
