/* weft/signal_ctx.h: contexts cancelled by POSIX signals, Go's signal.NotifyContext, for
 * graceful shutdown on Ctrl-C or SIGTERM.
 *
 *   weft_signal_ctx *sc = weft_signal_ctx_new(NULL, NULL, 0);   // SIGINT and SIGTERM
 *   weft_ctx *ctx = weft_signal_ctx_ctx(sc);
 *   ... run the program under ctx; when it is done, shut down gracefully ...
 *   // a second signal arrives on weft_signal_ctx_again(sc): exit at once
 *   weft_signal_ctx_stop(sc);                                     // default behaviour again
 *
 * The context is done on the first arrival of one of the signals, when the parent is done,
 * or on weft_signal_ctx_stop. Which signal fired is in its cause: weft_ctx_cause returns
 * WEFT_CAUSE_SIGNAL(signo), a value no errno can take, so an error group or anything else
 * that reads causes can tell it apart; weft_ctx_signal decodes it on the context or any
 * descendant. Arrivals keep being counted after the first (weft_signal_ctx_count), and each
 * further one is also sent on weft_signal_ctx_again, until stop.
 *
 * Several signal contexts may watch the same signal: each arrival reaches every one of them
 * (Go's signal.Notify fan-out). While any signal context is live weft catches its signals
 * (weft_signal_watch); stopping the last one that watches a signal restores that signal's
 * previous disposition (weft_signal_unwatch), which also undoes a weft_signal_watch the
 * program made itself for that signal.
 *
 * A coroutine per signal context ("signal ctx") waits for the signals
 * (weft_signal_wait_ctx), and ends at once on stop or a done parent;
 * weft_signal_ctx_stop waits for it, so no coroutine outlives the signal context.
 *
 * Ownership: weft_signal_ctx_new returns a handle owned by the caller, freed by
 * weft_signal_ctx_stop (exactly once, before the runtime stops). The context and channel it
 * hands out are borrowed from it: retain them to use them after stop. */
#ifndef WEFT_SIGNAL_CTX_H
#define WEFT_SIGNAL_CTX_H

#include "chan.h"
#include "common.h"
#include "ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The cause of a context cancelled by signal signo: -(4096 + signo). Error codes are
 * negated errno values, all above -4096 (the kernel's MAX_ERRNO), so the two never meet. */
#define WEFT_CAUSE_SIGNAL_BASE   4096
#define WEFT_CAUSE_SIGNAL(signo) (-(WEFT_CAUSE_SIGNAL_BASE + (signo)))

/* weft_cause_signal: the signal number encoded in cause (WEFT_CAUSE_SIGNAL), else 0.
 * Any thread, signal-safe; never parks. */
static inline int weft_cause_signal(int cause)
{
  return cause <= -(WEFT_CAUSE_SIGNAL_BASE + 1) && cause >= -(WEFT_CAUSE_SIGNAL_BASE + 64)
             ? -cause - WEFT_CAUSE_SIGNAL_BASE
             : 0;
}

typedef struct weft_signal_ctx weft_signal_ctx;

/* weft_signal_ctx_new: a signal context: a child of parent (NULL: background) done on the
 * first arrival of one of the n signals in signos (n == 0, signos may be NULL: SIGINT and
 * SIGTERM), when parent is done, or on stop. Installs weft's handler for those signals.
 * parent: borrowed (the context holds its own reference).
 * Returns a new handle, or NULL when n < 0 (or n > 0 with signos NULL), a signal cannot be
 * caught (SIGKILL, SIGSTOP, SIGSEGV, SIGBUS, SIGFPE, SIGILL, out of range), the caller is
 * not a coroutine, or out of memory; nothing changes then.
 * Coroutine, may park (briefly, on the registry's mutex). */
WEFT_API weft_signal_ctx *weft_signal_ctx_new(weft_ctx *parent, const int *signos, int n);

/* weft_signal_ctx_ctx: the context (borrowed: valid until stop). Any thread; never parks. */
WEFT_API weft_ctx *weft_signal_ctx_ctx(weft_signal_ctx *sc);

/* weft_signal_ctx_signal: the signal that cancelled the context, or 0 (not done, or done
 * by its parent or stop). Any thread; never parks. */
WEFT_API int weft_signal_ctx_signal(weft_signal_ctx *sc);

/* weft_signal_ctx_count: how many of its signals have arrived so far (arrivals that come
 * while one of the same signal is still pending may merge, as POSIX signals do).
 * Any thread; never parks. */
WEFT_API long weft_signal_ctx_count(weft_signal_ctx *sc);

/* weft_signal_ctx_again: a channel of int receiving the number of every signal that
 * arrives after the first (which cancels the context instead), for "a second Ctrl-C exits
 * at once". Buffers 16; further arrivals while it is full are only counted. Never closed.
 * Borrowed: valid until stop. Any thread; never parks. */
WEFT_API weft_chan *weft_signal_ctx_again(weft_signal_ctx *sc);

/* weft_ctx_signal: the signal that cancelled ctx or the ancestor that cancelled it (from
 * weft_ctx_cause), or 0. Works on descendants of a signal context. Any thread; never parks.
 */
WEFT_API int weft_ctx_signal(weft_ctx *ctx);

/* weft_signal_ctx_stop: cancel the context (if not yet done), stop catching its signals
 * unless another signal context still watches them (their previous disposition, normally
 * the default, is restored), wait for the waiting coroutine to end, and free sc (dropping
 * its reference to the context). NULL is ignored.
 * Coroutine, may park briefly (wait reason "wait group"). */
WEFT_API void weft_signal_ctx_stop(weft_signal_ctx *sc);

#ifdef __cplusplus
}
#endif
#endif
