/* weft/blocking.h: run a call that must block (file I/O, getaddrinfo, SQLite) on a
 * bounded pool of threads while the calling coroutine is parked, so the scheduler thread
 * keeps running other coroutines. */
#ifndef WEFT_BLOCKING_H
#define WEFT_BLOCKING_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* weft_blocking: run fn(arg) on a pool thread and return its result. fn runs on another
 * thread: report errors through the return value (e.g. -errno), not errno. The pool has
 * at most weft_config.blocking_threads threads; further calls queue in FIFO order.
 * Coroutine, may park (wait reason "blocking call"); outside a coroutine fn runs on the
 * caller's thread. fn must not call weft functions that park. */
WEFT_API long weft_blocking(long (*fn)(void *arg), void *arg);

#ifdef __cplusplus
}
#endif
#endif
