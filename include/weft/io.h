/* weft/io.h: file-descriptor I/O that parks the coroutine instead of blocking the thread.
 *
 * Any fd that epoll accepts works: sockets, pipes, eventfd, signalfd, timerfd, ttys.
 * The first weft call on an fd registers it with the poller and switches it to
 * non-blocking mode. Close a registered fd with weft_close() (it wakes every coroutine
 * waiting on it with -EBADF and forgets the registration); an fd closed with close(2)
 * must first be released with weft_fd_forget(). Regular files never report "would block":
 * do file I/O through weft_blocking() (weft/blocking.h).
 *
 * At most one coroutine at a time may wait on each direction of an fd (one reader, one
 * writer): another gets -EBUSY at once rather than waiting behind it. Serialise readers
 * of one fd with a mutex, or accept on a listener from one coroutine.
 *
 * Each call takes an absolute deadline (weft_now() nanoseconds, WEFT_NO_DEADLINE for none)
 * and returns a count >= 0 or a negative errno: -ETIMEDOUT at the deadline, -EBADF when the
 * fd is closed under the waiter, otherwise the system call's error. Calls from a thread
 * that is not running a coroutine block that thread in poll(2) instead.
 * All: coroutine, may park (wait reason "io wait"). */
#ifndef WEFT_IO_H
#define WEFT_IO_H

#include <sys/socket.h>
#include <sys/types.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* weft_fd_register: register fd with the poller now (also done lazily by every call below)
 * and make it non-blocking. Returns 0, -EBADF, -EINVAL (fd out of range) or -ENOMEM. */
WEFT_API int weft_fd_register(int fd);

/* weft_fd_forget: forget fd's registration without closing it; waiters get -EBADF. */
WEFT_API void weft_fd_forget(int fd);

/* weft_close: forget fd and close it. Returns 0 or close's negative errno. */
WEFT_API int weft_close(int fd);

/* weft_wait_readable / weft_wait_writable: park until fd is readable (writable), or the
 * deadline. Returns 0, -ETIMEDOUT or -EBADF. */
WEFT_API int weft_wait_readable(int fd, int64_t deadline);
WEFT_API int weft_wait_writable(int fd, int64_t deadline);

WEFT_API ssize_t weft_read(int fd, void *buf, size_t len, int64_t deadline);
WEFT_API ssize_t weft_write(int fd, const void *buf, size_t len, int64_t deadline);
/* weft_write_all: write all len bytes (looping over short writes); returns len or error. */
WEFT_API ssize_t weft_write_all(int fd, const void *buf, size_t len, int64_t deadline);
WEFT_API ssize_t weft_recv(int fd, void *buf, size_t len, int flags, int64_t deadline);
WEFT_API ssize_t weft_send(int fd, const void *buf, size_t len, int flags, int64_t deadline);

/* weft_accept: accept a connection; the new fd is non-blocking and close-on-exec.
 * Returns the fd or a negative errno. */
WEFT_API int weft_accept(int fd, struct sockaddr *addr, socklen_t *addrlen, int64_t deadline);

/* weft_connect: connect a (non-blocking) socket, parking until done. Returns 0 or
 * a negative errno (-ECONNREFUSED, -ETIMEDOUT, ...). After -ETIMEDOUT (or a context's
 * error) the attempt goes on in the kernel: call again to wait for it, or close fd. */
WEFT_API int weft_connect(int fd, const struct sockaddr *addr, socklen_t addrlen,
                          int64_t deadline);

#ifdef __cplusplus
}
#endif
#endif
