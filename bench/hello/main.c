/* weft-hello: the hello server of ../shared/specs/bench.md. Every GET / (or HEAD /) gets
 * 200 and the 5-byte body "hello", keep-alive on; other paths 404, other methods 405.
 *
 *   weft-hello [--listen ADDR]     (default 127.0.0.1:8080)
 *
 * SIGINT or SIGTERM shuts it down gracefully (requests in flight get 5 s). */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <weft/weft.h>

#include "../serve.h"

static void hello(weft_http_response *w, weft_http_request *r, void *arg)
{
  if (strcmp(weft_http_request_path(r), "/") != 0) {
    weft_http_response_error(w, 404, "404 page not found");
    return;
  }
  const char *m = weft_http_request_method(r);
  if (strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0) {
    weft_http_response_set_header(w, "Allow", "GET, HEAD");
    weft_http_response_error(w, 405, "method not allowed");
    return;
  }
  weft_http_response_send(w, 200, "text/plain; charset=utf-8", "hello", 5);
}

struct server {
  const char *listen;
};

static int run(void *arg)
{
  struct server *sv = arg;
  return bench_serve("weft-hello", sv->listen, &(weft_http_server_config){.handler = hello},
                     stderr);
}

int main(int argc, char **argv)
{
  struct server sv = {.listen = "127.0.0.1:8080"};
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--listen") && i + 1 < argc) {
      sv.listen = argv[++i];
    } else if (!strncmp(argv[i], "--listen=", 9)) {
      sv.listen = argv[i] + 9;
    } else {
      fprintf(stderr, "usage: weft-hello [--listen ADDR]\n");
      return 2;
    }
  }
  return weft_main(run, &sv);
}
