/* weft/ctx.h: contexts, Go's context package: cancellation, deadlines and values that
 * flow down a tree of calls.
 *
 * A context is done once it is cancelled, its deadline passes, or its parent is done;
 * cancelling a parent cancels every descendant, synchronously. weft_ctx_err then says why
 * (-ECANCELED or -ETIMEDOUT) and weft_ctx_cause what cancelled it (the first cause wins).
 *
 * Ownership: every constructor returns a new reference; weft_ctx_release drops one. A
 * child holds a reference to its parent. Releasing the last reference to a child that is
 * not done unlinks it from its parent (it is then never cancelled by it, and its memory
 * is freed), so short-lived children under a long-lived parent keep memory flat. The
 * background context is static: retain and release do nothing to it.
 *
 * Thread safety: every call may be made from any thread; only weft_ctx_wait parks. */
#ifndef WEFT_CTX_H
#define WEFT_CTX_H

#include "chan.h"
#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_ctx weft_ctx;

/* weft_ctx_background: never done, no deadline, no values. Never NULL. */
WEFT_API weft_ctx *weft_ctx_background(void);

/* weft_ctx_with_cancel: a child of parent (NULL: background) done when weft_ctx_cancel is
 * called on it or parent is done. A parent already done cancels the child at once.
 * Returns NULL when out of memory. */
WEFT_API weft_ctx *weft_ctx_with_cancel(weft_ctx *parent);

/* weft_ctx_with_deadline: with_cancel that is also done (-ETIMEDOUT) at deadline
 * (weft_now() ns). An earlier parent deadline wins; a past deadline cancels at once.
 * Needs the runtime for its timer unless the deadline has passed or the parent's is
 * earlier. Returns NULL when out of memory. */
WEFT_API weft_ctx *weft_ctx_with_deadline(weft_ctx *parent, int64_t deadline);

/* weft_ctx_with_timeout: with_deadline(parent, weft_now() + ns). */
WEFT_API weft_ctx *weft_ctx_with_timeout(weft_ctx *parent, int64_t ns);

/* weft_ctx_with_value: a child carrying key -> value (borrowed pointers; keys compare by
 * address). Done exactly when parent is. Returns NULL when out of memory. */
WEFT_API weft_ctx *weft_ctx_with_value(weft_ctx *parent, const void *key, void *value);

/* weft_ctx_with_value_free: weft_ctx_with_value that owns value: free_value(value) runs
 * (on the thread that drops the last reference) when the context is freed. Returns NULL
 * when out of memory; free_value is then not called and value is still the caller's. */
WEFT_API weft_ctx *weft_ctx_with_value_free(weft_ctx *parent, const void *key, void *value,
                                            void (*free_value)(void *value));

/* weft_ctx_without_cancel: keeps parent's values but is never done and has no deadline. */
WEFT_API weft_ctx *weft_ctx_without_cancel(weft_ctx *parent);

/* weft_ctx_cancel: cancel ctx (and its descendants) with -ECANCELED. Idempotent; does not
 * wait for anything. Only contexts made by with_cancel/with_deadline/with_timeout can be
 * cancelled; on others it does nothing. */
WEFT_API void weft_ctx_cancel(weft_ctx *ctx);

/* weft_ctx_cancel_cause: weft_ctx_cancel recording cause (an error code, e.g. the
 * first failure of a group, or a signal's negated number). The first cause wins; err
 * stays -ECANCELED. */
WEFT_API void weft_ctx_cancel_cause(weft_ctx *ctx, int cause);

/* weft_ctx_err: 0 while not done, then -ECANCELED or -ETIMEDOUT. */
WEFT_API int weft_ctx_err(weft_ctx *ctx);

/* weft_ctx_cause: 0 while not done, then the cause given to cancel_cause on ctx or the
 * ancestor that cancelled it, else weft_ctx_err. */
WEFT_API int weft_ctx_cause(weft_ctx *ctx);

/* weft_ctx_deadline: the deadline (weft_now() ns) or WEFT_NO_DEADLINE. */
WEFT_API int64_t weft_ctx_deadline(weft_ctx *ctx);

/* weft_ctx_value: the value for key on ctx or its nearest ancestor, or NULL. */
WEFT_API void *weft_ctx_value(weft_ctx *ctx, const void *key);

/* weft_ctx_done: a channel that is closed when ctx is done, for select cases (borrowed:
 * valid while the caller holds ctx). NULL (never ready, as Go's nil Done) for contexts that
 * can never be done. NULL also if out of memory. */
WEFT_API weft_chan *weft_ctx_done(weft_ctx *ctx);

/* weft_ctx_wait: park until ctx is done or deadline. Returns ctx's error, or -ETIMEDOUT
 * at deadline while ctx is not done. Coroutine, may park (wait reason "select"). */
WEFT_API int weft_ctx_wait(weft_ctx *ctx, int64_t deadline);

/* weft_ctx_retain / weft_ctx_release: reference counting (NULL ignored). */
WEFT_API weft_ctx *weft_ctx_retain(weft_ctx *ctx);
WEFT_API void weft_ctx_release(weft_ctx *ctx);

/* A function run once ctx is done (weft_ctx_after_func). */
typedef struct weft_ctx_stop weft_ctx_stop;

/* weft_ctx_after_func: run fn(arg) in its own coroutine once ctx is done (at once if it
 * already is). Returns a handle for weft_ctx_stop_func, or NULL when out of memory or if
 * ctx can never be done. Needs the runtime. */
WEFT_API weft_ctx_stop *weft_ctx_after_func(weft_ctx *ctx, void (*fn)(void *arg), void *arg);

/* weft_ctx_stop_func: stop fn from being run; returns 1 if that prevented it, 0 if it
 * had already been started. Frees the handle. Does not wait for fn. */
WEFT_API int weft_ctx_stop_func(weft_ctx_stop *stop);

/* ---- blocking calls that honour a context ----
 * Each parks like its deadline-only form, and returns the context's error (-ECANCELED,
 * -ETIMEDOUT) promptly once ctx is done; a ctx already done fails at once. A context
 * deadline bounds the wait; ctx NULL means background (never done). Coroutine, may park. */
#include <sys/socket.h>
#include <sys/types.h>

/* weft_sleep_ctx: sleep ns; 0 when slept the whole time, else ctx's error. */
WEFT_API int weft_sleep_ctx(weft_ctx *ctx, int64_t ns);
WEFT_API int weft_chan_send_ctx(weft_chan *ch, const void *elem, weft_ctx *ctx);
WEFT_API int weft_chan_recv_ctx(weft_chan *ch, void *elem, weft_ctx *ctx);
/* weft_select_ctx: weft_select that also returns ctx's error when ctx is done first. */
WEFT_API int weft_select_ctx(weft_select_case *cases, size_t n, int flags, weft_ctx *ctx);
WEFT_API int weft_wait_readable_ctx(int fd, weft_ctx *ctx);
WEFT_API int weft_wait_writable_ctx(int fd, weft_ctx *ctx);
WEFT_API ssize_t weft_read_ctx(int fd, void *buf, size_t len, weft_ctx *ctx);
WEFT_API ssize_t weft_write_ctx(int fd, const void *buf, size_t len, weft_ctx *ctx);
WEFT_API ssize_t weft_write_all_ctx(int fd, const void *buf, size_t len, weft_ctx *ctx);
WEFT_API int weft_accept_ctx(int fd, struct sockaddr *addr, socklen_t *addrlen, weft_ctx *ctx);
WEFT_API int weft_connect_ctx(int fd, const struct sockaddr *addr, socklen_t addrlen,
                              weft_ctx *ctx);
struct weft_sem;
WEFT_API int weft_sem_acquire_ctx(struct weft_sem *s, int64_t n, weft_ctx *ctx);
/* weft_signal_wait_ctx: weft_signal_wait (weft/signal.h) until ctx is done. */
#include <signal.h>
WEFT_API int weft_signal_wait_ctx(const sigset_t *set, weft_ctx *ctx);
/* weft_blocking_ctx: run fn(arg) on the blocking pool; returns 0 with *result set when it
 * completed, or ctx's error once ctx is done, without waiting for fn: fn runs on (if it
 * had not started it never runs), so arg must outlive it. Whenever it returns ctx's error,
 * on_abandon (may be NULL) is called exactly once with arg and fn's result, -ECANCELED if
 * fn never ran, to free arg: on the pool thread when fn ends, or on the caller before the
 * call returns when fn was never handed to the pool (ctx already done). A call that
 * returns 0 never calls it, nor does one that fails with -EINVAL (fn or result NULL) or
 * -ENOMEM: arg is then still the caller's. */
WEFT_API int weft_blocking_ctx(weft_ctx *ctx, long (*fn)(void *arg), void *arg, long *result,
                               void (*on_abandon)(void *arg, long result));

#ifdef __cplusplus
}
#endif
#endif
