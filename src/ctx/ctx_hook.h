/* ctx_hook.h: how blocking calls in the layers below learn that a context is done.
 *
 * A parking call registers a hook on the context before it parks and removes it after
 * it wakes. When the context is cancelled, the cancelling thread runs every registered
 * hook's fn (with the context's error) after releasing the context's lock; fn must not
 * park and typically claims the wait and readies the coroutine, as a deadline timer does.
 *
 * States: IDLE --add--> ARMED --cancel--> FIRING --fn returned--> DONE
 *                          +------remove------> IDLE
 * weft__ctx_hook_remove waits while the hook is FIRING, so the hook's memory (on the
 * parked coroutine's stack) is never touched after remove returns. */
#ifndef WEFT_CTX_HOOK_H
#define WEFT_CTX_HOOK_H

#include <stdatomic.h>
#include <stdbool.h>

#include "weft/ctx.h"

enum ctx_hook_state { HOOK_IDLE, HOOK_ARMED, HOOK_FIRING, HOOK_DONE };

struct ctx_hook {
  void (*fn)(struct ctx_hook *h, int err);
  void *arg;
  struct weft_ctx *node;        /* the cancel node it is armed on */
  atomic_int state;             /* enum ctx_hook_state */
  struct ctx_hook *next, *prev; /* guarded by node's lock */
};

/* weft__ctx_can_be_done: whether ctx has a cancel node at or above it (else no hook ever
 * fires), without creating its done channel as weft_ctx_done would. Any thread. */
bool weft__ctx_can_be_done(const weft_ctx *ctx);

/* weft__ctx_hook_add: arm h (fn and arg set) on ctx. Returns 0 when armed or when ctx can
 * never be done (then h stays IDLE and never fires), or ctx's error if it is already
 * done (h not armed). Any thread; never parks. */
int weft__ctx_hook_add(weft_ctx *ctx, struct ctx_hook *h);

/* weft__ctx_hook_remove: disarm h; returns once its fn is not running and never will.
 * Any thread; never parks (spins while fn runs). */
void weft__ctx_hook_remove(struct ctx_hook *h);

#endif
