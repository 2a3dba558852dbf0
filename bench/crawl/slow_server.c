/* weft-slow-server: the site for the crawler benchmark (scripts/bench-crawl.sh).
 *
 * Every GET (or HEAD) of /page/<n>, 0 <= n < --pages, is answered after --delay ms with
 * 200 and a small HTML page (a title and two links), keep-alive on; /robots.txt and
 * every other path get 404 at once. The delay is a weft_sleep in the handler: it stands
 * for a remote server's think time, so a crawler's throughput is bounded by how many
 * requests it keeps in flight and not by this server.
 *
 *   weft-slow-server [--listen ADDR] [--delay MS] [--pages N]
 *                    (defaults 127.0.0.1:8090, 20, 10000; port 0 picks a free one)
 *
 * Prints "listening on HOST:PORT" on stdout once it accepts connections. SIGINT or
 * SIGTERM shuts it down gracefully (requests in flight get 5 s). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weft/weft.h>

#include "../serve.h"

struct server {
  const char *listen;
  int64_t delay_ns; /* think time before each page */
  long pages;       /* /page/0 .. /page/<pages - 1> exist */
};

/* The page number of /page/<n>, or -1. */
static long page_number(const char *path, long pages)
{
  if (strncmp(path, "/page/", 6) != 0 || path[6] < '0' || path[6] > '9')
    return -1;
  char *end;
  errno = 0;
  long n = strtol(path + 6, &end, 10);
  return *end == '\0' && errno == 0 && n < pages ? n : -1;
}

static void page(weft_http_response *w, weft_http_request *r, void *arg)
{
  struct server *sv = arg;
  const char *m = weft_http_request_method(r);
  if (strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0) {
    weft_http_response_set_header(w, "Allow", "GET, HEAD");
    weft_http_response_error(w, 405, "method not allowed");
    return;
  }
  long n = page_number(weft_http_request_path(r), sv->pages);
  if (n < 0) {
    weft_http_response_error(w, 404, "404 page not found");
    return;
  }
  /* The request's context ends when the client goes away or the server shuts down. */
  if (weft_sleep_ctx(weft_http_request_ctx(r), sv->delay_ns) != 0)
    return;
  char body[256];
  int len = snprintf(body, sizeof body,
                     "<!doctype html><html><head><title>page %ld</title></head><body>"
                     "<a href=\"/page/%ld\">next</a> <a href=\"/page/0\">first</a>"
                     "</body></html>\n",
                     n, (n + 1) % sv->pages);
  weft_http_response_send(w, 200, "text/html; charset=utf-8", body, (size_t)len);
}

static int run(void *arg)
{
  struct server *sv = arg;
  weft_http_server_config cfg = {.handler = page, .handler_arg = sv, .max_requests = 1000000};
  return bench_serve("weft-slow-server", sv->listen, &cfg, stdout);
}

static int usage(void)
{
  fprintf(stderr, "usage: weft-slow-server [--listen ADDR] [--delay MS] [--pages N]\n");
  return 2;
}

int main(int argc, char **argv)
{
  struct server sv = {.listen = "127.0.0.1:8090", .delay_ns = 20000000, .pages = 10000};
  for (int i = 1; i < argc; i++) {
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(argv[i], "--listen") && v)
      sv.listen = v;
    else if (!strcmp(argv[i], "--delay") && v && atol(v) >= 0)
      sv.delay_ns = atol(v) * 1000000;
    else if (!strcmp(argv[i], "--pages") && v && atol(v) > 0)
      sv.pages = atol(v);
    else
      return usage();
    i++;
  }
  return weft_main(run, &sv);
}
