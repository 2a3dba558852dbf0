/* ctx_calls.c: the blocking calls of the layers below, honouring a context.
 *
 * Channel-shaped waits (sleep, send, receive, select) add the context's done channel as
 * one more select case. The others (fd waits, the semaphore, the blocking pool) hand the
 * core a weft__canceller built on a context hook (ctx_hook.h): when the context is done,
 * the hook claims the wait as a deadline timer would. The context's deadline needs no
 * timer of its own here: it cancels the context, which fires the hook. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "ctx/ctx_hook.h"
#include "ctx/ctx_io.h"
#include "weft/ctx.h"
#include "weft/runtime.h"
#include "weft/sync.h"

/* ---- channel-shaped waits ---- */

int weft_select_ctx(weft_select_case *cases, size_t n, int flags, weft_ctx *ctx)
{
  enum { STACK_CASES = 8 };
  weft_select_case buf[STACK_CASES + 1], *all = buf;
  int err = weft_ctx_err(ctx);
  if (err)
    return err;
  weft_chan *done = weft_ctx_done(ctx); /* NULL: never done, a case that never fires */
  if (n > STACK_CASES && !(all = malloc((n + 1) * sizeof *all)))
    return -ENOMEM;
  if (n)
    memcpy(all, cases, n * sizeof *all);
  all[n] = (weft_select_case){.ch = done, .dir = WEFT_SELECT_RECV};
  int rc = weft_select(all, n + 1, flags, WEFT_NO_DEADLINE);
  if (rc >= 0 && (size_t)rc < n)
    cases[rc].result = all[rc].result;
  if (all != buf)
    free(all);
  return (size_t)rc == n ? weft_ctx_err(ctx) : rc;
}

int weft_chan_send_ctx(weft_chan *ch, const void *elem, weft_ctx *ctx)
{
  weft_select_case c = {.ch = ch, .dir = WEFT_SELECT_SEND, .elem = (void *)elem};
  int rc = weft_select_ctx(&c, 1, 0, ctx);
  return rc == 0 ? c.result : rc;
}

int weft_chan_recv_ctx(weft_chan *ch, void *elem, weft_ctx *ctx)
{
  weft_select_case c = {.ch = ch, .dir = WEFT_SELECT_RECV, .elem = elem};
  int rc = weft_select_ctx(&c, 1, 0, ctx);
  return rc == 0 ? c.result : rc;
}

int weft_sleep_ctx(weft_ctx *ctx, int64_t ns)
{
  int err = weft_ctx_err(ctx);
  if (err)
    return err;
  weft_chan *done = weft_ctx_done(ctx);
  int64_t now = weft_now();
  int64_t until = ns > INT64_MAX - now ? WEFT_NO_DEADLINE : now + (ns > 0 ? ns : 0);
  if (!done) {
    weft_sleep_until(until);
    return 0;
  }
  weft_select_case c = {.ch = done, .dir = WEFT_SELECT_RECV};
  int rc = weft_select(&c, 1, 0, until);
  return rc == -ETIMEDOUT ? 0 : weft_ctx_err(ctx);
}

/* ---- waits through a canceller ---- */

struct ctx_canceller {
  struct weft__canceller base; /* first: the core sees only this */
  weft_ctx *ctx;
  struct ctx_hook hook;
  void (*fire)(void *waiter, int err);
  void *waiter;
};

static void hook_fired(struct ctx_hook *h, int err)
{
  struct ctx_canceller *cc = h->arg;
  cc->fire(cc->waiter, err);
}

static int cc_arm(struct weft__canceller *cn, void (*fire)(void *, int), void *waiter)
{
  struct ctx_canceller *cc = (struct ctx_canceller *)cn;
  cc->fire = fire;
  cc->waiter = waiter;
  cc->hook.fn = hook_fired;
  cc->hook.arg = cc;
  return weft__ctx_hook_add(cc->ctx, &cc->hook);
}

static void cc_disarm(struct weft__canceller *cn)
{
  weft__ctx_hook_remove(&((struct ctx_canceller *)cn)->hook);
}

/* A canceller for ctx, or NULL when ctx can never be done (the plain call then). */
#define CTX_CANCELLER(name, ctx)                                                     \
  struct ctx_canceller name##_storage = {.base = {cc_arm, cc_disarm}, .ctx = (ctx)}; \
  struct weft__canceller *name = weft__ctx_can_be_done(ctx) ? &name##_storage.base : NULL

int weft_wait_readable_ctx(int fd, weft_ctx *ctx)
{
  CTX_CANCELLER(cn, ctx);
  int err = weft_ctx_err(ctx);
  return err ? err : weft__wait_fd(fd, 0, WEFT_NO_DEADLINE, cn);
}

int weft_wait_writable_ctx(int fd, weft_ctx *ctx)
{
  CTX_CANCELLER(cn, ctx);
  int err = weft_ctx_err(ctx);
  return err ? err : weft__wait_fd(fd, 1, WEFT_NO_DEADLINE, cn);
}

ssize_t weft_read_ctx(int fd, void *buf, size_t len, weft_ctx *ctx)
{
  CTX_CANCELLER(cn, ctx);
  int err = weft_ctx_err(ctx);
  return err ? err : weft__read(fd, buf, len, WEFT_NO_DEADLINE, cn);
}

ssize_t weft_write_ctx(int fd, const void *buf, size_t len, weft_ctx *ctx)
{
  CTX_CANCELLER(cn, ctx);
  int err = weft_ctx_err(ctx);
  return err ? err : weft__write(fd, buf, len, WEFT_NO_DEADLINE, cn);
}

ssize_t weft_write_all_ctx(int fd, const void *buf, size_t len, weft_ctx *ctx)
{
  CTX_CANCELLER(cn, ctx);
  int err = weft_ctx_err(ctx);
  return err ? err : weft__write_all(fd, buf, len, WEFT_NO_DEADLINE, cn);
}

int weft_accept_ctx(int fd, struct sockaddr *addr, socklen_t *addrlen, weft_ctx *ctx)
{
  CTX_CANCELLER(cn, ctx);
  int err = weft_ctx_err(ctx);
  return err ? err : weft__accept(fd, addr, addrlen, WEFT_NO_DEADLINE, cn);
}

int weft_connect_ctx(int fd, const struct sockaddr *addr, socklen_t addrlen, weft_ctx *ctx)
{
  CTX_CANCELLER(cn, ctx);
  int err = weft_ctx_err(ctx);
  return err ? err : weft__connect(fd, addr, addrlen, WEFT_NO_DEADLINE, cn);
}

int weft_sem_acquire_ctx(weft_sem *s, int64_t n, weft_ctx *ctx)
{
  CTX_CANCELLER(cn, ctx);
  int err = weft_ctx_err(ctx);
  return err ? err : weft__sem_acquire(s, n, WEFT_NO_DEADLINE, cn);
}

int weft_blocking_ctx(weft_ctx *ctx, long (*fn)(void *arg), void *arg, long *result,
                      void (*on_abandon)(void *arg, long result))
{
  CTX_CANCELLER(cn, ctx);
  if (!fn || !result)
    return -EINVAL;
  int err = weft_ctx_err(ctx);
  if (err && on_abandon)
    on_abandon(arg, -ECANCELED); /* every return of ctx's error calls it once: weft/ctx.h */
  return err ? err : weft__blocking(fn, arg, result, on_abandon, cn);
}

int weft_signal_wait_ctx(const sigset_t *set, weft_ctx *ctx)
{
  CTX_CANCELLER(cn, ctx);
  int err = weft_ctx_err(ctx);
  return err ? err : weft__signal_wait(set, WEFT_NO_DEADLINE, cn);
}

/* ---- for the net layer: a context and a deadline at once (ctx/ctx_io.h) ---- */

int weft__wait_fd_ctx(int fd, int dir, weft_ctx *ctx, int64_t deadline)
{
  CTX_CANCELLER(cn, ctx);
  int err = weft_ctx_err(ctx);
  return err ? err : weft__wait_fd(fd, dir, deadline, cn);
}

int weft__wait_fd_edge_ctx(int fd, int dir, weft_ctx *ctx, int64_t deadline)
{
  CTX_CANCELLER(cn, ctx);
  int err = weft_ctx_err(ctx);
  return err ? err : weft__wait_fd_edge(fd, dir, deadline, cn);
}

long weft__read_ctx(int fd, void *buf, size_t len, weft_ctx *ctx, int64_t deadline)
{
  CTX_CANCELLER(cn, ctx);
  int err = weft_ctx_err(ctx);
  return err ? err : weft__read(fd, buf, len, deadline, cn);
}

int weft__connect_ctx(int fd, const struct sockaddr *addr, socklen_t addrlen, weft_ctx *ctx,
                      int64_t deadline)
{
  CTX_CANCELLER(cn, ctx);
  int err = weft_ctx_err(ctx);
  return err ? err : weft__connect(fd, addr, addrlen, deadline, cn);
}
