/* weft/signal.h: deliver POSIX signals to coroutines.
 *
 * weft_signal_watch() installs weft's handler for a signal; the handler only records the
 * signal and wakes the poller, which hands it to coroutines parked in weft_signal_wait().
 * A signal that arrives while nobody waits is kept (one pending delivery per signal, as a
 * POSIX pending signal) for the next waiter. */
#ifndef WEFT_SIGNAL_H
#define WEFT_SIGNAL_H

#include <signal.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* weft_signal_watch: start catching signo (not SIGKILL, SIGSTOP, SIGSEGV, SIGBUS, SIGFPE,
 * SIGILL). Idempotent. Returns 0 or -EINVAL. Any thread while the runtime runs. */
WEFT_API int weft_signal_watch(int signo);

/* weft_signal_unwatch: restore the signal's default disposition and drop any pending
 * delivery. Coroutines waiting only for it keep waiting (for their deadline). */
WEFT_API int weft_signal_unwatch(int signo);

/* weft_signal_wait: park until one of the watched signals in set arrives or the deadline.
 * Returns the signal number, -ETIMEDOUT, or -EINVAL if set holds no watched signal.
 * Coroutine, may park (wait reason "signal wait"). */
WEFT_API int weft_signal_wait(const sigset_t *set, int64_t deadline);

#ifdef __cplusplus
}
#endif
#endif
