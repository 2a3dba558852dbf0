/* serve.h: the serving loop the benchmark servers share (weft-hello, weft-slow-server):
 * listen, announce the bound address, serve until SIGINT or SIGTERM, then shut down
 * gracefully (requests in flight get 5 s). Header-only: each server is one program. */
#ifndef WEFT_BENCH_SERVE_H
#define WEFT_BENCH_SERVE_H

#include <signal.h>
#include <stdio.h>

#include <weft/weft.h>

struct bench_serve {
  weft_http_server *srv;
  weft_ctx *stop; /* cancelled when serving is over: the signal watcher leaves */
  weft_wg watcher;
};

static void bench_stop_on_signal(void *arg)
{
  struct bench_serve *bs = arg;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  if (weft_signal_wait_ctx(&set, bs->stop) > 0)
    weft_http_server_shutdown(bs->srv, weft_now() + 5000000000ll);
  weft_wg_done(&bs->watcher);
}

/* bench_serve: serve cfg on listen ("host:port"; port 0 picks one) until a signal; writes
 * "listening on HOST:PORT" to announce once accepting. Returns the exit status. Coroutine. */
static int bench_serve(const char *prog, const char *listen, const weft_http_server_config *cfg,
                       FILE *announce)
{
  char host[256], port[32];
  int fd = weft_listen("tcp", listen, 0);
  if (fd < 0 || weft_split_host_port(listen, host, sizeof host, port, sizeof port) != 0) {
    fprintf(stderr, "%s: listen %s: %s\n", prog, listen, weft_strerror(fd < 0 ? fd : -EINVAL));
    if (fd >= 0)
      weft_close(fd);
    return 1;
  }
  struct bench_serve bs = {.srv = weft_http_server_new(cfg)};
  if (!bs.srv || !(bs.stop = weft_ctx_with_cancel(NULL))) {
    weft_http_server_free(bs.srv);
    weft_close(fd);
    return 1;
  }
  weft_signal_watch(SIGINT);
  weft_signal_watch(SIGTERM);
  weft_wg_init(&bs.watcher);
  weft_wg_add(&bs.watcher, 1);
  weft_go(bench_stop_on_signal, &bs);
  fprintf(announce, "listening on %s:%d\n", host, weft_local_port(fd));
  fflush(announce);
  int err = weft_http_server_serve(bs.srv, fd);
  weft_close(fd);
  weft_http_server_shutdown(bs.srv, weft_now() + 5000000000ll);
  weft_ctx_cancel(bs.stop);
  weft_wg_wait(&bs.watcher);
  weft_ctx_release(bs.stop);
  weft_http_server_free(bs.srv);
  if (err)
    fprintf(stderr, "%s: %s\n", prog, weft_strerror(err));
  return err ? 1 : 0;
}

#endif
