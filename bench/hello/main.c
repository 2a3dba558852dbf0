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
  weft_http_server *srv;
  weft_ctx *stop; /* cancelled when serving is over: the signal watcher leaves */
  weft_wg watcher;
};

static void stop_on_signal(void *arg)
{
  struct server *sv = arg;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  if (weft_signal_wait_ctx(&set, sv->stop) > 0)
    weft_http_server_shutdown(sv->srv, weft_now() + 5000000000ll);
  weft_wg_done(&sv->watcher);
}

static int run(void *arg)
{
  struct server *sv = arg;
  int fd = weft_listen("tcp", sv->listen, 0);
  if (fd < 0) {
    fprintf(stderr, "weft-hello: listen %s: %s\n", sv->listen, weft_strerror(fd));
    return 1;
  }
  sv->srv = weft_http_server_new(&(weft_http_server_config){.handler = hello});
  if (!sv->srv) {
    weft_close(fd);
    return 1;
  }
  weft_signal_watch(SIGINT);
  weft_signal_watch(SIGTERM);
  sv->stop = weft_ctx_with_cancel(NULL);
  weft_wg_init(&sv->watcher);
  weft_wg_add(&sv->watcher, 1);
  weft_go(stop_on_signal, sv);
  fprintf(stderr, "weft-hello: listening on %s\n", sv->listen);
  int err = weft_http_server_serve(sv->srv, fd);
  weft_close(fd);
  weft_http_server_shutdown(sv->srv, weft_now() + 5000000000ll);
  weft_ctx_cancel(sv->stop);
  weft_wg_wait(&sv->watcher);
  weft_ctx_release(sv->stop);
  weft_http_server_free(sv->srv);
  if (err)
    fprintf(stderr, "weft-hello: %s\n", weft_strerror(err));
  return err ? 1 : 0;
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
