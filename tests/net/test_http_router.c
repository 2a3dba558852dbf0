/* test_http_router.c: the router's lookups through weft_http_router_match, without a
 * server: Go 1.22 ServeMux's precedence rules (a literal beats a wildcard, a longer subtree
 * beats a shorter one, a method beats none, HEAD beats GET, a host beats none), the
 * registrations it refuses (conflicts: -EEXIST; malformed patterns: -EINVAL), wildcards
 * and their decoded values ("%2F" stays inside a segment), "{$}", GET answering HEAD, 405
 * with a sorted Allow list, the trailing-slash and clean-path redirects (query kept),
 * small buffers (-ENOSPC says how much would do), and 1,000 patterns registered in a
 * seeded random order then each matched. Last, weft_http_router_serve behind a real
 * server: path values and the pattern reach the handler, default 404 and 405 (with
 * Allow) bodies, a custom 404 in a router mounted under another, and 301 with Location. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coro_check.h"
#include "weft_test.h"

/* Handlers are never called here; their args tell routes apart. */
static void handler(weft_http_response *w, weft_http_request *r, void *arg)
{
  (void)w;
  (void)r;
  (void)arg;
}

struct lookup {
  int rc;
  weft_http_route_match m;
  weft_http_route_param params[8];
  char buf[1024];
};

static int lookup(const weft_http_router *rt, const char *method, const char *host,
                  const char *path, struct lookup *l)
{
  memset(l, 0, sizeof *l);
  l->m.params = l->params;
  l->m.max_params = 8;
  l->m.buf = l->buf;
  l->m.buf_len = sizeof l->buf;
  l->rc = weft_http_router_match(rt, method, host, path, &l->m);
  return l->rc;
}

static weft_http_router *router_with(const char *const *patterns)
{
  weft_http_router *rt = weft_http_router_new();
  assert_non_null(rt);
  for (size_t i = 0; patterns[i]; i++) {
    int err = weft_http_router_handle(rt, patterns[i], handler, (void *)patterns[i]);
    if (err)
      fail_msg("registering \"%s\": %s", patterns[i], weft_strerror(err));
  }
  return rt;
}

/* method host path must match want (a pattern); host may be NULL. */
static void expect_route(const weft_http_router *rt, const char *method, const char *host,
                         const char *path, const char *want)
{
  struct lookup l;
  if (lookup(rt, method, host, path, &l) != WEFT_HTTP_ROUTE_FOUND)
    fail_msg("%s %s%s: got %d, want pattern \"%s\"", method, host ? host : "", path, l.rc,
             want);
  if (strcmp(l.m.pattern, want))
    fail_msg("%s %s%s: got \"%s\", want \"%s\"", method, host ? host : "", path, l.m.pattern,
             want);
  assert_ptr_equal(l.m.fn, handler);
  assert_string_equal((const char *)l.m.arg, want);
}

static void expect_rc(const weft_http_router *rt, const char *method, const char *host,
                      const char *path, int want)
{
  struct lookup l;
  if (lookup(rt, method, host, path, &l) != want)
    fail_msg("%s %s%s: got %d (%s), want %d", method, host ? host : "", path, l.rc,
             l.rc == 0 ? l.m.pattern : "", want);
  if (want != WEFT_HTTP_ROUTE_FOUND)
    assert_null(l.m.pattern);
}

static void expect_redirect(const weft_http_router *rt, const char *method, const char *path,
                            const char *location)
{
  struct lookup l;
  if (lookup(rt, method, NULL, path, &l) != WEFT_HTTP_ROUTE_REDIRECT)
    fail_msg("%s %s: got %d, want a redirect to %s", method, path, l.rc, location);
  assert_string_equal(l.m.location, location);
}

static void expect_allow(const weft_http_router *rt, const char *method, const char *host,
                         const char *path, const char *allow)
{
  struct lookup l;
  if (lookup(rt, method, host, path, &l) != WEFT_HTTP_ROUTE_METHOD_NOT_ALLOWED)
    fail_msg("%s %s: got %d, want 405 with Allow: %s", method, path, l.rc, allow);
  assert_string_equal(l.m.allow, allow);
}

/* The value of wildcard name in l (NULL when not captured). */
static const char *param(const struct lookup *l, const char *name)
{
  for (size_t i = 0; i < l->m.nparams; i++)
    if (!strcmp(l->params[i].name, name))
      return l->params[i].value;
  return NULL;
}

/* ---- tests ---- */

static void test_literal_and_subtree(void **state)
{
  (void)state;
  static const char *const pats[] = {"/index.html", "/static/", "/", NULL};
  weft_http_router *rt = router_with(pats);
  expect_route(rt, "GET", NULL, "/index.html", "/index.html");
  expect_route(rt, "POST", NULL, "/index.html", "/index.html"); /* no method: any */
  expect_route(rt, "GET", NULL, "/static/", "/static/");
  expect_route(rt, "GET", NULL, "/static/css/site.css", "/static/");
  expect_route(rt, "GET", NULL, "/index.html/x", "/"); /* a literal is exact */
  expect_route(rt, "GET", NULL, "/", "/");
  expect_route(rt, "GET", NULL, "/anything/else", "/");
  expect_route(rt, "GET", NULL, "/index.html?x=1", "/index.html"); /* query ignored */
  /* A path with no '/' (asterisk or authority form) matches nothing. */
  expect_rc(rt, "OPTIONS", NULL, "*", WEFT_HTTP_ROUTE_NOT_FOUND);
  expect_rc(rt, "GET", NULL, "", WEFT_HTTP_ROUTE_NOT_FOUND);
  weft_http_router_free(rt);

  static const char *const none[] = {"/a", NULL};
  rt = router_with(none);
  expect_rc(rt, "GET", NULL, "/b", WEFT_HTTP_ROUTE_NOT_FOUND);
  expect_rc(rt, "GET", NULL, "/a/", WEFT_HTTP_ROUTE_NOT_FOUND);
  weft_http_router_free(rt);
  weft_http_router_free(NULL);
}

/* The examples of Go's documentation, "Precedence". */
static void test_precedence(void **state)
{
  (void)state;
  static const char *const pats[] = {"/images/",
                                     "/images/thumbnails/",
                                     "/posts/{id}",
                                     "/posts/latest",
                                     "GET /x",
                                     "/x",
                                     "HEAD /h",
                                     "GET /h",
                                     "/a/{x}/c",
                                     "/a/b/z",
                                     "/files/{path...}",
                                     "/files/special/{name}",
                                     NULL};
  weft_http_router *rt = router_with(pats);
  /* A longer subtree beats a shorter one. */
  expect_route(rt, "GET", NULL, "/images/thumbnails/a.png", "/images/thumbnails/");
  expect_route(rt, "GET", NULL, "/images/a.png", "/images/");
  /* ... and "/images/thumbnails" is redirected to the subtree that matches it exactly. */
  expect_redirect(rt, "GET", "/images/thumbnails", "/images/thumbnails/");
  /* A literal beats a wildcard, whichever was registered first. */
  expect_route(rt, "GET", NULL, "/posts/latest", "/posts/latest");
  expect_route(rt, "GET", NULL, "/posts/42", "/posts/{id}");
  /* A method beats none: "GET /x" and "/x" both register. */
  expect_route(rt, "GET", NULL, "/x", "GET /x");
  expect_route(rt, "HEAD", NULL, "/x", "GET /x");
  expect_route(rt, "POST", NULL, "/x", "/x");
  /* HEAD beats GET for HEAD; GET answers GET. */
  expect_route(rt, "HEAD", NULL, "/h", "HEAD /h");
  expect_route(rt, "GET", NULL, "/h", "GET /h");
  expect_allow(rt, "POST", NULL, "/h", "GET, HEAD");
  /* Backtracking: /a/b/c tries /a/b/z first, then /a/{x}/c. */
  expect_route(rt, "GET", NULL, "/a/b/c", "/a/{x}/c");
  expect_route(rt, "GET", NULL, "/a/b/z", "/a/b/z");
  expect_route(rt, "GET", NULL, "/a/q/c", "/a/{x}/c");
  expect_rc(rt, "GET", NULL, "/a/b/q", WEFT_HTTP_ROUTE_NOT_FOUND);
  /* A single wildcard beats a multi. */
  expect_route(rt, "GET", NULL, "/files/special/x", "/files/special/{name}");
  expect_route(rt, "GET", NULL, "/files/special/x/y", "/files/{path...}");
  expect_route(rt, "GET", NULL, "/files/other", "/files/{path...}");
  weft_http_router_free(rt);
}

static void test_hosts(void **state)
{
  (void)state;
  static const char *const pats[] = {
      "example.com/",      "/a",         "GET api.test/{$}", "/", "::1/six",
      "example.com/b/{x}", "GET /b/{x}", "other.org/only",   NULL};
  weft_http_router *rt = router_with(pats);
  /* A host beats no host, even for a less specific path. */
  expect_route(rt, "GET", "example.com", "/a", "example.com/");
  expect_route(rt, "GET", "example.com:8080", "/a", "example.com/"); /* port stripped */
  expect_route(rt, "GET", "example.com", "/b/1", "example.com/b/{x}");
  expect_route(rt, "GET", "elsewhere.net", "/a", "/a");
  expect_route(rt, "GET", NULL, "/a", "/a");
  expect_route(rt, "GET", "", "/a", "/a");
  expect_route(rt, "GET", "elsewhere.net", "/b/1", "GET /b/{x}");
  /* Hosts compare exactly, as in Go. */
  expect_route(rt, "GET", "EXAMPLE.COM", "/a", "/a");
  /* A host pattern that does not match the path falls back to hostless ones. */
  expect_route(rt, "GET", "api.test", "/", "GET api.test/{$}");
  expect_route(rt, "GET", "api.test", "/zzz", "/");
  expect_route(rt, "GET", "other.org", "/only", "other.org/only");
  expect_route(rt, "GET", "other.org", "/else", "/");
  /* IPv6 literals lose their brackets with their port. */
  expect_route(rt, "GET", "[::1]:8080", "/six", "::1/six");
  expect_route(rt, "GET", "[::1]", "/six", "/"); /* no port: kept as it is, like Go */
  weft_http_router_free(rt);
}

static void test_wildcards(void **state)
{
  (void)state;
  static const char *const pats[] = {"/b/{bucket}/o/{objectname...}",
                                     "/u/{id}",
                                     "/u/{id}/posts/{post}",
                                     "/rest/{all...}",
                                     "/lit%20eral/x",
                                     NULL};
  weft_http_router *rt = router_with(pats);
  struct lookup l;
  assert_int_equal(lookup(rt, "GET", NULL, "/b/photos/o/2024/jan/a.jpg", &l), 0);
  assert_string_equal(l.m.pattern, "/b/{bucket}/o/{objectname...}");
  assert_int_equal(l.m.nparams, 2);
  assert_string_equal(l.params[0].name, "bucket");
  assert_string_equal(l.params[0].value, "photos");
  assert_string_equal(l.params[1].name, "objectname");
  assert_string_equal(l.params[1].value, "2024/jan/a.jpg");
  /* Segments are decoded one by one: %2F stays inside its segment. */
  assert_int_equal(lookup(rt, "GET", NULL, "/b/my%2Fbucket/o/a%2Fb%20c", &l), 0);
  assert_string_equal(param(&l, "bucket"), "my/bucket");
  assert_string_equal(param(&l, "objectname"), "a/b c");
  assert_int_equal(lookup(rt, "GET", NULL, "/u/a%2Fb", &l), 0);
  assert_string_equal(l.m.pattern, "/u/{id}");
  assert_string_equal(param(&l, "id"), "a/b");
  /* A malformed escape leaves the segment as it is (Go's PathUnescape failing). */
  assert_int_equal(lookup(rt, "GET", NULL, "/u/100%", &l), 0);
  assert_string_equal(param(&l, "id"), "100%");
  assert_int_equal(lookup(rt, "GET", NULL, "/u/7/posts/hello%21", &l), 0);
  assert_string_equal(l.m.pattern, "/u/{id}/posts/{post}");
  assert_string_equal(param(&l, "id"), "7");
  assert_string_equal(param(&l, "post"), "hello!");
  /* {name} does not match a trailing slash or an empty rest. */
  expect_rc(rt, "GET", NULL, "/u/", WEFT_HTTP_ROUTE_NOT_FOUND);
  expect_rc(rt, "GET", NULL, "/u/7/", WEFT_HTTP_ROUTE_NOT_FOUND);
  /* {name...} takes the rest, which may be empty. */
  assert_int_equal(lookup(rt, "GET", NULL, "/rest/", &l), 0);
  assert_string_equal(param(&l, "all"), "");
  assert_int_equal(lookup(rt, "GET", NULL, "/rest/a/b/", &l), 0);
  assert_string_equal(param(&l, "all"), "a/b/");
  /* Literal segments of a pattern are decoded too, and so compared decoded. */
  expect_route(rt, "GET", NULL, "/lit%20eral/x", "/lit%20eral/x");
  expect_route(rt, "GET", NULL, "/lit eral/x", "/lit%20eral/x");
  expect_route(rt, "GET", NULL, "/l%69t%20eral/x", "/lit%20eral/x");
  /* Nothing captured for a literal route. */
  assert_int_equal(lookup(rt, "GET", NULL, "/lit%20eral/x", &l), 0);
  assert_int_equal(l.m.nparams, 0);
  weft_http_router_free(rt);
}

static void test_dollar(void **state)
{
  (void)state;
  static const char *const pats[] = {"/{$}", "/a/{$}", "/a/b", "/c/", "/c/{$}", NULL};
  weft_http_router *rt = router_with(pats);
  expect_route(rt, "GET", NULL, "/", "/{$}");
  expect_rc(rt, "GET", NULL, "/x", WEFT_HTTP_ROUTE_NOT_FOUND);
  expect_route(rt, "GET", NULL, "/a/", "/a/{$}");
  expect_route(rt, "GET", NULL, "/a/b", "/a/b");
  expect_rc(rt, "GET", NULL, "/a/c", WEFT_HTTP_ROUTE_NOT_FOUND);
  expect_redirect(rt, "GET", "/a", "/a/");        /* "/a/{$}" would match exactly */
  expect_route(rt, "GET", NULL, "/c/", "/c/{$}"); /* {$} beats the subtree */
  expect_route(rt, "GET", NULL, "/c/d", "/c/");
  weft_http_router_free(rt);
}

static void test_head_and_405(void **state)
{
  (void)state;
  static const char *const pats[] = {"GET /items",
                                     "POST /items",
                                     "DELETE /items/{id}",
                                     "PUT /items/{id}",
                                     "GET /dir/",
                                     "PATCH host.a/items",
                                     "/any",
                                     "OPTIONS /opt",
                                     NULL};
  weft_http_router *rt = router_with(pats);
  expect_route(rt, "HEAD", NULL, "/items", "GET /items"); /* GET answers HEAD */
  expect_allow(rt, "PUT", NULL, "/items", "GET, HEAD, POST");
  expect_allow(rt, "HEAD", NULL, "/items/3", "DELETE, PUT");
  expect_allow(rt, "GET", NULL, "/items/3", "DELETE, PUT");
  /* The methods of host patterns count for that host only. */
  expect_allow(rt, "PUT", "host.a", "/items", "GET, HEAD, PATCH, POST");
  expect_route(rt, "PATCH", "host.a:80", "/items", "PATCH host.a/items");
  /* Allow also looks at the path with a trailing slash, as Go does. */
  expect_allow(rt, "POST", NULL, "/dir", "GET, HEAD");
  expect_allow(rt, "POST", NULL, "/dir/x", "GET, HEAD");
  expect_redirect(rt, "GET", "/dir", "/dir/");
  expect_allow(rt, "GET", NULL, "/opt", "OPTIONS");
  expect_route(rt, "BREW", NULL, "/any", "/any");
  expect_rc(rt, "GET", NULL, "/nothing", WEFT_HTTP_ROUTE_NOT_FOUND);
  struct lookup l;
  assert_int_equal(lookup(rt, "PUT", NULL, "/items", &l), WEFT_HTTP_ROUTE_METHOD_NOT_ALLOWED);
  assert_null(l.m.pattern);
  assert_null(l.m.fn);
  assert_null(l.m.location);
  weft_http_router_free(rt);
}

static void test_redirects(void **state)
{
  (void)state;
  static const char *const pats[] = {"/tree/", "/a/b", "GET /s/{x}/", "/c/{$}", "/", NULL};
  weft_http_router *rt = router_with(pats);
  /* "/tree" has no exact match, "/tree/" would: 301 there, the query kept. */
  expect_redirect(rt, "GET", "/tree", "/tree/");
  expect_redirect(rt, "POST", "/tree?q=1&r=%20", "/tree/?q=1&r=%20");
  expect_redirect(rt, "GET", "/tree?", "/tree/"); /* an empty query is dropped */
  expect_redirect(rt, "GET", "/s/v", "/s/v/");
  expect_route(rt, "GET", NULL, "/s/v/", "GET /s/{x}/");
  expect_redirect(rt, "GET", "/c", "/c/");
  /* A redirect only when the slash path matches for this method. */
  expect_route(rt, "POST", NULL, "/s/v", "/");
  /* Unclean paths: 301 to the cleaned path, a trailing slash kept. */
  expect_redirect(rt, "GET", "/a//b", "/a/b");
  expect_redirect(rt, "GET", "/a/./b", "/a/b");
  expect_redirect(rt, "GET", "/x/../a/b?k=v", "/a/b?k=v");
  expect_redirect(rt, "GET", "/../../a/b", "/a/b");
  expect_redirect(rt, "GET", "/a/b/.", "/a/b");
  expect_redirect(rt, "GET", "/a/b/..", "/a");
  expect_redirect(rt, "GET", "/x//", "/x/");
  expect_redirect(rt, "GET", "//", "/");
  expect_redirect(rt, "GET", "/nothing/here/./", "/nothing/here/");
  /* Cleaning and the trailing slash together, as Go. */
  expect_redirect(rt, "GET", "/x/../tree", "/tree/");
  expect_redirect(rt, "GET", "/x/../tree?a=b", "/tree/?a=b");
  /* Escaped dots are not path elements. */
  expect_route(rt, "GET", NULL, "/a/%2e%2e/b", "/");
  weft_http_router_free(rt);

  /* CONNECT paths are not cleaned; a CONNECT pattern may be unclean. */
  static const char *const conn[] = {"CONNECT /a//b", "/", NULL};
  rt = router_with(conn);
  expect_route(rt, "CONNECT", NULL, "/a//b", "CONNECT /a//b");
  expect_route(rt, "CONNECT", NULL, "/x/../y", "/");
  expect_redirect(rt, "GET", "/a//b", "/a/b");
  weft_http_router_free(rt);
}

static void expect_refused(const char *pattern, int err)
{
  weft_http_router *rt = weft_http_router_new();
  assert_non_null(rt);
  int got = weft_http_router_handle(rt, pattern, handler, NULL);
  if (got != err)
    fail_msg("\"%s\": got %d, want %d", pattern, got, err);
  /* Nothing registered: the root does not match. */
  expect_rc(rt, "GET", NULL, "/", WEFT_HTTP_ROUTE_NOT_FOUND);
  weft_http_router_free(rt);
}

static void test_malformed(void **state)
{
  (void)state;
  static const char *const bad[] = {
      "",        "a",           "GET",         "example.com", "G(T /",       "GÉT /x",
      "GE,T /x", "{x}/a",       "ex{ample}/a", "/a{x}",       "/{x}a",       "/{x",
      "/{}",     "/{...}",      "/{1x}",       "/{x-y}",      "/{x.y}",      "/{$}/a",
      "/{$}x",   "/{x...}/a",   "/{x...}/",    "/{x}/{x}",    "/{x}/{x...}", "/{ x}",
      "/{$...}", "GET /a/../b", "GET /a//b",   "POST /a/./b", "GET /a/.",    "/{é}",
      NULL};
  for (size_t i = 0; bad[i]; i++)
    expect_refused(bad[i], -EINVAL);
  assert_int_equal(weft_http_router_handle(NULL, "/", handler, NULL), -EINVAL);
  weft_http_router *rt = weft_http_router_new();
  assert_int_equal(weft_http_router_handle(rt, NULL, handler, NULL), -EINVAL);
  assert_int_equal(weft_http_router_handle(rt, "/", NULL, NULL), -EINVAL);
  /* What Go accepts. */
  static const char *const good[] = {"get /lower",
                                     "GET\t/tab",
                                     "GET  /two-spaces",
                                     "M-SEARCH /ssdp",
                                     "/{_x1}/{Y_2}",
                                     "/r/x/{rest...}",
                                     "/{$}",
                                     "host:8080/port",
                                     "/a}b/c",
                                     "/unclean/../ok",
                                     "CONNECT /x/../y",
                                     "/",
                                     "/%zz/bad-escape",
                                     NULL};
  for (size_t i = 0; good[i]; i++) {
    int err = weft_http_router_handle(rt, good[i], handler, (void *)good[i]);
    if (err)
      fail_msg("\"%s\": %s", good[i], weft_strerror(err));
  }
  expect_route(rt, "GET", NULL, "/lower", "/"); /* "get" is a different method */
  expect_route(rt, "get", NULL, "/lower", "get /lower");
  expect_route(rt, "GET", NULL, "/tab", "GET\t/tab");
  expect_route(rt, "GET", NULL, "/two-spaces", "GET  /two-spaces");
  expect_route(rt, "M-SEARCH", NULL, "/ssdp", "M-SEARCH /ssdp");
  expect_route(rt, "GET", "host:8080", "/port", "/"); /* the request's port is stripped */
  expect_route(rt, "GET", NULL, "/a}b/c", "/a}b/c");
  expect_route(rt, "GET", NULL, "/%zz/bad-escape", "/%zz/bad-escape");
  weft_http_router_free(rt);
}

static void expect_conflict(const char *first, const char *second)
{
  weft_http_router *rt = weft_http_router_new();
  assert_non_null(rt);
  assert_int_equal(weft_http_router_handle(rt, first, handler, (void *)first), 0);
  int err = weft_http_router_handle(rt, second, handler, (void *)second);
  if (err != -EEXIST)
    fail_msg("\"%s\" after \"%s\": got %d, want -EEXIST", second, first, err);
  weft_http_router_free(rt);
}

static void expect_no_conflict(const char *first, const char *second)
{
  weft_http_router *rt = weft_http_router_new();
  assert_non_null(rt);
  assert_int_equal(weft_http_router_handle(rt, first, handler, (void *)first), 0);
  int err = weft_http_router_handle(rt, second, handler, (void *)second);
  if (err)
    fail_msg("\"%s\" after \"%s\": %s", second, first, weft_strerror(err));
  weft_http_router_free(rt);
}

static void test_conflicts(void **state)
{
  (void)state;
  static const char *const pairs[][2] = {
      {"/a/{x}", "/{y}/b"},     /* both match /a/b, neither is more specific */
      {"GET /", "/index.html"}, /* Go's own example */
      {"GET /posts/{id}", "/posts/latest"},
      {"/x", "/x"}, /* the same */
      {"GET /x", "GET /x"},
      {"/a/{x}", "/a/{y}"}, /* the same but for the name */
      {"/a/{x...}", "/a/"},
      {"/{$}", "/{$}"},
      {"example.com/a", "example.com/a"},
      {"GET /{x}", "/a"},
      {"HEAD /{x}", "GET /a"},
      {"/a/{x}/{y...}", "/{z}/b/"},
  };
  for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
    expect_conflict(pairs[i][0], pairs[i][1]);
    expect_conflict(pairs[i][1], pairs[i][0]);
  }
  static const char *const fine[][2] = {
      {"GET /x", "/x"},      /* the method makes it more specific */
      {"GET /x", "POST /x"}, /* disjoint */
      {"HEAD /x", "GET /x"},
      {"/posts/{id}", "/posts/latest"},
      {"/images/", "/images/thumbnails/"},
      {"/", "/{$}"},
      {"example.com/", "/a"}, /* a host beats no host */
      {"a.com/x", "b.com/x"},
      {"/a/{x}", "/a/{x}/"},
      {"/a/{x}", "/a/"},
      {"/{x}/b", "/a/{y}/c"}, /* disjoint by length */
      {"/a/{x}/c", "/a/b/z"},
      {"/{x...}", "/a/{y...}"},
  };
  for (size_t i = 0; i < sizeof fine / sizeof fine[0]; i++) {
    expect_no_conflict(fine[i][0], fine[i][1]);
    expect_no_conflict(fine[i][1], fine[i][0]);
  }
  /* A refused registration changes nothing. */
  static const char *const pats[] = {"/a/{x}", "POST /p", NULL};
  weft_http_router *rt = router_with(pats);
  assert_int_equal(weft_http_router_handle(rt, "/{y}/b", handler, NULL), -EEXIST);
  assert_int_equal(weft_http_router_handle(rt, "GET /p/{bad", handler, NULL), -EINVAL);
  expect_route(rt, "GET", NULL, "/a/b", "/a/{x}");
  expect_rc(rt, "GET", NULL, "/z/b", WEFT_HTTP_ROUTE_NOT_FOUND);
  expect_allow(rt, "GET", NULL, "/p", "POST");
  weft_http_router_free(rt);
}

static void test_small_buffers(void **state)
{
  (void)state;
  static const char *const pats[] = {"/u/{a}/{b}/{c}", "/tree/", "GET /g", NULL};
  weft_http_router *rt = router_with(pats);
  weft_http_route_param params[3];
  char buf[64];
  weft_http_route_match m = {.params = params, .max_params = 2, .buf = buf, .buf_len = 64};
  /* Too few params: nparams says how many. */
  assert_int_equal(weft_http_router_match(rt, "GET", NULL, "/u/x/y/z", &m), -ENOSPC);
  assert_int_equal(m.nparams, 3);
  assert_null(m.pattern);
  m.max_params = 3;
  assert_int_equal(weft_http_router_match(rt, "GET", NULL, "/u/x/y/z", &m), 0);
  assert_int_equal(m.nparams, 3);
  assert_string_equal(params[2].value, "z");
  /* Too small a buf: buf_needed is enough, and strlen(path) + 3 always is. */
  static const char *const paths[] = {"/u/xxxxxxxx/yyyyyyyy/z%20z", "/tree?long=query",
                                      "/a/../tree?q=1", "/g", NULL};
  static const int want[] = {WEFT_HTTP_ROUTE_FOUND, WEFT_HTTP_ROUTE_REDIRECT,
                             WEFT_HTTP_ROUTE_REDIRECT, WEFT_HTTP_ROUTE_METHOD_NOT_ALLOWED};
  for (size_t i = 0; paths[i]; i++) {
    const char *method = i == 3 ? "POST" : "GET";
    m = (weft_http_route_match){.params = params, .max_params = 3, .buf = buf, .buf_len = 4};
    assert_int_equal(weft_http_router_match(rt, method, NULL, paths[i], &m), -ENOSPC);
    assert_true(m.buf_needed > 4);
    assert_true(m.buf_needed <= strlen(paths[i]) + 3 || i == 3);
    m.buf_len = m.buf_needed;
    assert_int_equal(weft_http_router_match(rt, method, NULL, paths[i], &m), want[i]);
  }
  /* No storage at all is fine when nothing is written. */
  m = (weft_http_route_match){0};
  assert_int_equal(weft_http_router_match(rt, "GET", NULL, "/g", &m), 0);
  assert_string_equal(m.pattern, "GET /g");
  assert_int_equal(weft_http_router_match(rt, "GET", NULL, "/none", &m), 1);
  /* Caller mistakes. */
  assert_int_equal(weft_http_router_match(NULL, "GET", NULL, "/g", &m), -EINVAL);
  assert_int_equal(weft_http_router_match(rt, NULL, NULL, "/g", &m), -EINVAL);
  assert_int_equal(weft_http_router_match(rt, "", NULL, "/g", &m), -EINVAL);
  assert_int_equal(weft_http_router_match(rt, "GET", NULL, NULL, &m), -EINVAL);
  assert_int_equal(weft_http_router_match(rt, "GET", NULL, "/g", NULL), -EINVAL);
  m.buf_len = 10;
  assert_int_equal(weft_http_router_match(rt, "GET", NULL, "/g", &m), -EINVAL);
  weft_http_router_free(rt);
}

/* ---- many patterns ---- */

#define NSVC 250 /* four patterns each: 1,000 */

static void test_many_patterns(void **state)
{
  (void)state;
  uint64_t seed = test_seed();
  char(*pats)[64] = calloc(4 * NSVC, sizeof *pats);
  assert_non_null(pats);
  for (int i = 0; i < NSVC; i++) {
    snprintf(pats[4 * i], 64, "/svc%d/items", i);
    snprintf(pats[4 * i + 1], 64, "GET /svc%d/items/{id}", i);
    snprintf(pats[4 * i + 2], 64, "POST /svc%d/items/{id}", i);
    snprintf(pats[4 * i + 3], 64, "/svc%d/items/{id}/tags/{tag...}", i);
  }
  /* Register in a random order: the result must not depend on it. */
  int order[4 * NSVC];
  for (int i = 0; i < 4 * NSVC; i++)
    order[i] = i;
  for (int i = 4 * NSVC - 1; i > 0; i--) {
    int j = (int)(test_rand(&seed) % (uint64_t)(i + 1)), t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  weft_http_router *rt = weft_http_router_new();
  for (int i = 0; i < 4 * NSVC; i++)
    assert_int_equal(weft_http_router_handle(rt, pats[order[i]], handler, pats[order[i]]), 0);
  /* Every one conflicts with itself. */
  for (int i = 0; i < 4 * NSVC; i += 97)
    assert_int_equal(weft_http_router_handle(rt, pats[i], handler, NULL), -EEXIST);
  char path[96];
  struct lookup l;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (int i = 0; i < NSVC; i++) {
    snprintf(path, sizeof path, "/svc%d/items", i);
    expect_route(rt, "DELETE", NULL, path, pats[4 * i]);
    snprintf(path, sizeof path, "/svc%d/items/%d", i, i * 7);
    expect_route(rt, "GET", NULL, path, pats[4 * i + 1]);
    expect_route(rt, "HEAD", NULL, path, pats[4 * i + 1]);
    expect_route(rt, "POST", NULL, path, pats[4 * i + 2]);
    expect_allow(rt, "PUT", NULL, path, "GET, HEAD, POST");
    snprintf(path, sizeof path, "/svc%d/items/%d/tags/a/b", i, i);
    assert_int_equal(lookup(rt, "GET", NULL, path, &l), 0);
    assert_string_equal(l.m.pattern, pats[4 * i + 3]);
    assert_string_equal(param(&l, "tag"), "a/b");
    snprintf(path, sizeof path, "/svc%d/other", i);
    expect_rc(rt, "GET", NULL, path, WEFT_HTTP_ROUTE_NOT_FOUND);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  printf("%d lookups among %d patterns: %.1f us each\n", 6 * NSVC, 4 * NSVC,
         ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / 1e3 /
             (6 * NSVC));
  weft_http_router_free(rt);
  free(pats);
}

/* ---- through a server ---- */

#define DL() (weft_now() + MS(20000)) /* a hang fails instead of hanging */

static void item_handler(weft_http_response *w, weft_http_request *r, void *arg)
{
  const char *id = weft_http_request_path_value(r, "id");
  const char *path = weft_http_request_path_value(r, "path");
  weft_http_response_printf(w, "%s id=%s path=%s pattern=%s", (const char *)arg, id ? id : "-",
                            path ? path : "-", weft_http_request_pattern(r));
}

static void teapot(weft_http_response *w, weft_http_request *r, void *arg)
{
  (void)r;
  (void)arg;
  weft_http_response_error(w, 418, "custom not found");
}

struct served {
  weft_http_server *srv;
  int fd;
  weft_wg done;
};

static void serve_co(void *arg)
{
  struct served *sv = arg;
  CHECK_EQ(weft_http_server_serve(sv->srv, sv->fd), 0);
  weft_wg_done(&sv->done);
}

/* Send req on a new connection ("Connection: close") and return the whole response. */
static char *roundtrip(int port, const char *req)
{
  char addr[32], *buf = calloc(1, 16384);
  snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
  int fd = weft_dial(NULL, "tcp", addr, DL());
  weft_conn *c = fd >= 0 ? weft_conn_new(fd) : NULL;
  CHECK(c != NULL && buf != NULL);
  if (!c || !buf)
    return buf;
  CHECK_EQ(weft_conn_write(c, req, strlen(req), NULL, DL()), (ssize_t)strlen(req));
  size_t len = 0;
  ssize_t n;
  while (len < 16383 && (n = weft_conn_read(c, buf + len, 16383 - len, NULL, DL())) > 0)
    len += (size_t)n;
  weft_conn_close(c);
  return buf;
}

/* The response to "METHOD target" must contain each of the NULL-ended wants. */
static void expect_response(int port, const char *method, const char *target, ...)
{
  char req[512];
  snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n", method,
           target);
  char *resp = roundtrip(port, req);
  va_list ap;
  va_start(ap, target);
  for (const char *want; (want = va_arg(ap, const char *));) {
    if (!resp || !strstr(resp, want)) {
      fprintf(stderr, "%s %s: no \"%s\" in:\n%s\n", method, target, want,
              resp ? resp : "(nothing)");
      CHECK(0);
    }
  }
  va_end(ap);
  free(resp);
}

static int serve_main(void *arg)
{
  weft_http_router *rt = arg;
  weft_http_server_config cfg = {.handler = weft_http_router_serve, .handler_arg = rt};
  struct served sv = {.srv = weft_http_server_new(&cfg), .done = WEFT_WG_INIT};
  sv.fd = weft_listen("tcp", "127.0.0.1:0", 0);
  CHECK(sv.srv != NULL && sv.fd >= 0);
  if (!sv.srv || sv.fd < 0)
    return -1;
  int port = weft_local_port(sv.fd);
  weft_wg_add(&sv.done, 1);
  weft_go(serve_co, &sv);
  expect_response(port, "GET", "/items/a%2Fb", "HTTP/1.1 200",
                  "item id=a/b path=- pattern=GET /items/{id}", NULL);
  expect_response(port, "HEAD", "/items/7", "HTTP/1.1 200", NULL);
  expect_response(port, "GET", "/files/x/y%20z", "HTTP/1.1 200",
                  "files id=- path=x/y z pattern=/files/{path...}", NULL);
  expect_response(port, "GET", "http://test/items/9?q", "item id=9", NULL); /* absolute form */
  expect_response(port, "DELETE", "/items/7", "HTTP/1.1 405", "Allow: GET, HEAD",
                  "Method Not Allowed\n", NULL);
  expect_response(port, "GET", "/files?x=1", "HTTP/1.1 301", "Location: /files/?x=1",
                  "<a href=\"/files/?x=1\">Moved Permanently</a>.", NULL);
  expect_response(port, "POST", "/x/../items/3", "HTTP/1.1 301", "Location: /items/3", NULL);
  expect_response(port, "GET", "/nope", "HTTP/1.1 404", "404 page not found\n", NULL);
  /* "/inner/" hands over to a second router whose 404 handler is custom. */
  expect_response(port, "GET", "/inner/nope", "HTTP/1.1 418", "custom not found\n", NULL);
  CHECK_EQ(weft_http_server_shutdown(sv.srv, weft_now() + MS(5000)), 0);
  weft_wg_wait(&sv.done);
  weft_close(sv.fd);
  weft_http_server_free(sv.srv);
  return 0;
}

static void test_serve(void **state)
{
  (void)state;
  static const char *const none[] = {NULL};
  weft_http_router *rt = router_with(none);
  assert_int_equal(weft_http_router_handle(rt, "GET /items/{id}", item_handler, "item"), 0);
  assert_int_equal(weft_http_router_handle(rt, "/files/{path...}", item_handler, "files"), 0);
  weft_http_router *inner = weft_http_router_new();
  assert_non_null(inner);
  weft_http_router_set_not_found(inner, teapot, NULL);
  assert_int_equal(weft_http_router_handle(rt, "/inner/", weft_http_router_serve, inner), 0);
  checks_reset();
  assert_int_equal(run_weft(2, serve_main, rt), 0);
  ASSERT_NO_CHECK_FAILED();
  weft_http_router_free(rt);
  weft_http_router_free(inner);
}

/* With redirects off, what Go would redirect is answered by the 404 handler. */
static int no_redirects_main(void *arg)
{
  weft_http_router *rt = arg;
  weft_http_server_config cfg = {.handler = weft_http_router_serve, .handler_arg = rt};
  struct served sv = {.srv = weft_http_server_new(&cfg), .done = WEFT_WG_INIT};
  sv.fd = weft_listen("tcp", "127.0.0.1:0", 0);
  CHECK(sv.srv != NULL && sv.fd >= 0);
  if (!sv.srv || sv.fd < 0)
    return -1;
  int port = weft_local_port(sv.fd);
  weft_wg_add(&sv.done, 1);
  weft_go(serve_co, &sv);
  expect_response(port, "GET", "/items/7", "HTTP/1.1 200", "item id=7", NULL);
  expect_response(port, "POST", "/x/../items/3", "HTTP/1.1 418", "custom not found\n", NULL);
  expect_response(port, "GET", "/items//7", "HTTP/1.1 418", NULL);
  expect_response(port, "GET", "/files", "HTTP/1.1 418", NULL); /* trailing slash */
  expect_response(port, "DELETE", "/items/7", "HTTP/1.1 405", NULL);
  CHECK_EQ(weft_http_server_shutdown(sv.srv, weft_now() + MS(5000)), 0);
  weft_wg_wait(&sv.done);
  weft_close(sv.fd);
  weft_http_server_free(sv.srv);
  return 0;
}

static void test_no_redirects(void **state)
{
  (void)state;
  static const char *const none[] = {NULL};
  weft_http_router *rt = router_with(none);
  assert_int_equal(weft_http_router_handle(rt, "GET /items/{id}", item_handler, "item"), 0);
  assert_int_equal(weft_http_router_handle(rt, "/files/{path...}", item_handler, "files"), 0);
  weft_http_router_set_not_found(rt, teapot, NULL);
  weft_http_router_set_redirects(rt, false);
  checks_reset();
  assert_int_equal(run_weft(2, no_redirects_main, rt), 0);
  ASSERT_NO_CHECK_FAILED();
  weft_http_router_free(rt);
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_literal_and_subtree),
      cmocka_unit_test(test_precedence),
      cmocka_unit_test(test_hosts),
      cmocka_unit_test(test_wildcards),
      cmocka_unit_test(test_dollar),
      cmocka_unit_test(test_head_and_405),
      cmocka_unit_test(test_redirects),
      cmocka_unit_test(test_malformed),
      cmocka_unit_test(test_conflicts),
      cmocka_unit_test(test_small_buffers),
      cmocka_unit_test(test_many_patterns),
      cmocka_unit_test(test_serve),
      cmocka_unit_test(test_no_redirects),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
