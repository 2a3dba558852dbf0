/* poller.c: the epoll network poller and fd readiness waits.
 *
 * Every registered fd has a poll descriptor (struct pollfd_desc) with one slot per
 * direction. A slot holds
 *   0           nothing happened, nobody waits
 *   SLOT_READY  the fd became ready and nobody has consumed that yet
 *   a coro *    that coroutine is parked waiting for readiness
 * epoll is edge-triggered, so readiness is recorded in the slot when it arrives and
 * consumed by the next waiter; no event is lost between a failed read and the park.
 *
 * Protocol (all slot changes are CAS, no lock):
 *   waiter:  read gen, then check the registration; READY -> 0 and return; or, in the
 *            park commit step, 0 -> self (if the CAS fails readiness arrived meanwhile:
 *            the park is abandoned and it retries), then re-read gen and withdraw
 *            (self -> 0) if it moved.
 *   event:   anything -> READY; if it displaced a coroutine, ready it.
 *   timeout: self -> 0, then ready it with -ETIMEDOUT.
 *   forget:  clear registered, bump gen, then wake any waiter; waiters that see a new gen
 *            return -EBADF. weft_close forgets and closes under the fd's reg_lock.
 * Exactly one of event, timeout and forget wins the CAS away from a parked coroutine, and
 * only the winner readies it.
 *
 * Descriptors live in a two-level table indexed by fd and are never freed while the
 * runtime runs (a late event for a forgotten fd finds a harmless, idle descriptor). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/sanitizer.h"
#include "core/sched.h"
#include "weft/io.h"

#define SLOT_READY  ((uintptr_t)1)
#define SLOT_CANCEL ((uintptr_t)2) /* a canceller fired before the waiter was in the slot */
#define CHUNK_BITS  12
#define CHUNK_SIZE  (1 << CHUNK_BITS)
#define MAX_CHUNKS  1024 /* fds below 4,194,304 */
#define MAX_EVENTS  128

/* Descriptors of the fd table are PD_FD from calloc and never change: registration writes
 * no kind, since the poller may still be reading it for a late event of the fd's previous
 * registration (a data race on every re-registration otherwise, though a benign one). */
enum pd_kind { PD_FD = 0, PD_WAKE, PD_SIGNAL };

struct pollfd_desc {
  int fd;
  enum pd_kind kind;
  atomic_uint gen;           /* bumped by forget; waiters compare */
  atomic_bool registered;    /* in the epoll set */
  _Atomic uintptr_t slot[2]; /* [0] read, [1] write */
  spinlock reg_lock;         /* serialises register and forget of this fd */
};

struct io_wait {
  struct pollfd_desc *pd;
  int dir;
  struct coro *self;
  unsigned gen; /* pd->gen when the wait began: a forget since then ends it */
  struct timer timer;
  int cancel_err; /* set by io_cancel_fired before it marks the slot SLOT_CANCEL */
};

static int epfd = -1;
static int wake_fd = -1;
static atomic_bool wake_pending;
static struct pollfd_desc wake_desc;
static struct pollfd_desc *_Atomic chunks[MAX_CHUNKS];

/* ---- descriptor table ---- */

static struct pollfd_desc *pd_lookup(int fd, bool create)
{
  if (fd < 0 || fd >= MAX_CHUNKS * CHUNK_SIZE)
    return NULL;
  struct pollfd_desc *chunk =
      atomic_load_explicit(&chunks[fd >> CHUNK_BITS], memory_order_acquire);
  if (!chunk) {
    if (!create)
      return NULL;
    struct pollfd_desc *fresh = calloc(CHUNK_SIZE, sizeof *fresh);
    if (!fresh)
      return NULL;
    for (int i = 0; i < CHUNK_SIZE; i++)
      fresh[i].fd = (fd & ~(CHUNK_SIZE - 1)) + i;
    if (!atomic_compare_exchange_strong(&chunks[fd >> CHUNK_BITS], &chunk, fresh))
      free(fresh); /* another thread installed one: use it */
    else
      chunk = fresh;
  }
  return &chunk[fd & (CHUNK_SIZE - 1)];
}

int weft_fd_register(int fd)
{
  struct pollfd_desc *pd = pd_lookup(fd, true);
  int err = 0;
  if (!pd)
    return fd < 0 ? -EBADF : (fd >= MAX_CHUNKS * CHUNK_SIZE ? -EINVAL : -ENOMEM);
  if (atomic_load_explicit(&pd->registered, memory_order_acquire))
    return 0;
  spin_lock(&pd->reg_lock);
  if (!atomic_load(&pd->registered)) {
    int flags = fcntl(fd, F_GETFL);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                             .data.ptr = pd};
    /* The poller reaches pd through the event, an edge ThreadSanitizer cannot see: it
     * does not intercept epoll_pwait2. Pairs with the acquire in handle_event. */
    TSAN_RELEASE(pd);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
      err = -errno;
    } else if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0 && errno != EEXIST) {
      /* EPERM: a regular file; it never blocks, so treat it as always ready. */
      err = errno == EPERM ? 0 : -errno;
      if (!err) {
        atomic_store(&pd->slot[0], SLOT_READY);
        atomic_store(&pd->slot[1], SLOT_READY);
      }
    }
    if (!err)
      atomic_store_explicit(&pd->registered, true, memory_order_release);
  }
  spin_unlock(&pd->reg_lock);
  return err;
}

/* Wake whoever waits in slot with result; the caller has made the slot's new value. */
static void wake_slot(struct pollfd_desc *pd, int dir, uintptr_t newval, int result)
{
  uintptr_t old = atomic_load(&pd->slot[dir]);
  for (;;) {
    if (old == newval)
      return;
    if (atomic_compare_exchange_weak(&pd->slot[dir], &old, newval))
      break;
  }
  if (old > SLOT_CANCEL) { /* a coroutine, not a mark */
    struct coro *c = (struct coro *)old;
    c->wake_result = result;
    weft__ready(c);
  }
}

/* Forget pd's registration and wake its waiters with -EBADF; pd->reg_lock held. */
static void forget_locked(struct pollfd_desc *pd, int fd)
{
  if (!atomic_load(&pd->registered))
    return;
  /* registered before gen: fd_wait reads gen before it checks the registration, so a
   * waiter that sees the new gen also sees the fd unregistered and does not wait on it */
  atomic_store(&pd->registered, false);
  atomic_fetch_add(&pd->gen, 1);
  epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
  wake_slot(pd, 0, 0, -EBADF);
  wake_slot(pd, 1, 0, -EBADF);
}

void weft_fd_forget(int fd)
{
  struct pollfd_desc *pd = pd_lookup(fd, false);
  if (!pd || !atomic_load(&pd->registered))
    return;
  spin_lock(&pd->reg_lock);
  forget_locked(pd, fd);
  spin_unlock(&pd->reg_lock);
}

/* Forget and close under reg_lock, so that a call racing with the close (one that began
 * before it) either registers the fd first, and is forgotten here, or registers it after
 * the close and fails on the closed fd. Forgetting and then closing left a window in which
 * such a call registered the fd again between the two: the stale mark then made the next
 * fd given that number look registered, so it stayed blocking and outside epoll and its
 * first read blocked a scheduler thread for good. A close that blocks (SO_LINGER) holds up
 * only registrations of this same fd number. */
int weft_close(int fd)
{
  struct pollfd_desc *pd = pd_lookup(fd, true);
  if (!pd)
    return close(fd) == 0 ? 0 : -errno;
  spin_lock(&pd->reg_lock);
  forget_locked(pd, fd);
  int rc = close(fd) == 0 ? 0 : -errno;
  spin_unlock(&pd->reg_lock);
  return rc;
}

/* ---- waiting ---- */

/* wt lives on c's stack. Once c is in the slot, an event may ready it and another worker
 * resume it, return from fd_wait and reuse that memory while we are still here. So read
 * wt and arm its timer before the CAS that publishes c; after it touch only c, pd and
 * locals. A timer that fires before the CAS finds no c in the slot and does nothing:
 * the deadline check after the CAS stands in for it. */
static bool io_wait_commit(struct coro *c, void *arg)
{
  struct io_wait *wt = arg;
  struct pollfd_desc *pd = wt->pd;
  _Atomic uintptr_t *slot = &pd->slot[wt->dir];
  unsigned gen = wt->gen;
  int64_t deadline = wt->timer.when;
  bool timed = deadline != INT64_MAX;
  uintptr_t expected = 0;
  if (timed && weft__timer_start(&wt->timer, deadline) != 0) {
    c->wake_result = -ENOMEM;
    return false;
  }
  if (!atomic_compare_exchange_strong(slot, &expected, (uintptr_t)c)) {
    if (timed)
      weft__timer_stop(&wt->timer); /* c is not published yet: wt is still alive */
    return false;                   /* readiness arrived while we were switching out */
  }
  /* A forget since fd_wait read gen may have found the slot still empty and woken nobody.
   * It bumps gen before it looks at the slot, and we put ourselves in the slot before
   * looking at gen (all seq_cst): either it saw us and readies us, or we see its gen. */
  if (atomic_load(&pd->gen) != gen) {
    expected = (uintptr_t)c;
    if (atomic_compare_exchange_strong(slot, &expected, 0))
      return false; /* withdrawn: fd_wait stops the timer, sees the new gen: -EBADF */
    return true;    /* an event or the forget took us out of the slot and readies us */
  }
  if (timed && deadline <= now_ns()) {
    expected = (uintptr_t)c;
    if (atomic_compare_exchange_strong(slot, &expected, 0)) {
      c->wake_result = -ETIMEDOUT;
      weft__ready(c);
    }
  }
  return true;
}

static void io_timeout_fired(struct timer *t)
{
  struct io_wait *wt = t->arg;
  uintptr_t expected = (uintptr_t)wt->self;
  if (atomic_compare_exchange_strong(&wt->pd->slot[wt->dir], &expected, 0)) {
    wt->self->wake_result = -ETIMEDOUT;
    weft__ready(wt->self);
  }
}

/* A canceller (a context) fired: wake the waiter with err if it is in the slot, or mark
 * the slot so that its park is abandoned if it is not there yet. A READY slot is left:
 * the waiter proceeds, and its next wait sees the canceller already fired. */
static void io_cancel_fired(void *waiter, int err)
{
  struct io_wait *wt = waiter;
  _Atomic uintptr_t *slot = &wt->pd->slot[wt->dir];
  uintptr_t old = atomic_load(slot);
  for (;;) {
    if (old == (uintptr_t)wt->self) {
      if (atomic_compare_exchange_weak(slot, &old, 0)) {
        wt->self->wake_result = err;
        weft__ready(wt->self);
        return;
      }
    } else if (old == 0) {
      wt->cancel_err = err;
      if (atomic_compare_exchange_weak(slot, &old, SLOT_CANCEL))
        return;
    } else {
      return; /* READY, or already marked */
    }
  }
}

/* Wait outside a coroutine: plain poll(2) on the calling thread. */
static int thread_wait(int fd, int dir, int64_t deadline)
{
  struct pollfd p = {.fd = fd, .events = dir ? POLLOUT : POLLIN};
  for (;;) {
    int64_t left = deadline == WEFT_NO_DEADLINE ? -1 : (deadline - now_ns()) / 1000000;
    if (deadline != WEFT_NO_DEADLINE && left < 0)
      return -ETIMEDOUT;
    int n = poll(&p, 1, (int)(left > 1000000 ? 1000000 : left));
    if (n > 0)
      return 0;
    if (n < 0 && errno != EINTR)
      return -errno;
  }
}

/* Park until fd is ready in direction dir (0 read, 1 write) or deadline. */
static int fd_wait(int fd, int dir, int64_t deadline, struct weft__canceller *cn)
{
  struct coro *self = weft__current();
  if (!self)
    return thread_wait(fd, dir, deadline);
  /* gen first: a forget between a registration check that passed and the read of gen
   * would otherwise go unseen, and the wait would sleep on a forgotten fd (see
   * forget_locked for the order on its side). */
  struct pollfd_desc *pd = pd_lookup(fd, true);
  unsigned gen = pd ? atomic_load(&pd->gen) : 0;
  int err = weft_fd_register(fd);
  if (err)
    return err;
  for (;;) {
    uintptr_t ready = SLOT_READY;
    if (atomic_compare_exchange_strong(&pd->slot[dir], &ready, 0))
      return 0;
    if (atomic_load(&pd->gen) != gen)
      return -EBADF;
    if (ready > SLOT_CANCEL && ready != (uintptr_t)self)
      return -EBUSY; /* another coroutine waits on this direction already */
    if (deadline != WEFT_NO_DEADLINE && deadline <= now_ns())
      return -ETIMEDOUT;
    struct io_wait wt = {.pd = pd, .dir = dir, .self = self, .gen = gen};
    wt.timer.fn = io_timeout_fired;
    wt.timer.arg = &wt;
    wt.timer.when = deadline;
    self->wake_result = 0;
    if (cn && (err = cn->arm(cn, io_cancel_fired, &wt)))
      return err;
    weft__io_waiters_add(1);
    weft__park(dir ? "io wait (write)" : "io wait (read)", io_wait_commit, &wt);
    weft__io_waiters_add(-1);
    if (cn)
      cn->disarm(cn); /* io_cancel_fired is not running and never will */
    if (deadline != WEFT_NO_DEADLINE)
      weft__timer_stop(&wt.timer);
    uintptr_t mark = SLOT_CANCEL;
    if (atomic_compare_exchange_strong(&pd->slot[dir], &mark, 0))
      return wt.cancel_err; /* cancelled before we were in the slot */
    if (self->wake_result)
      return self->wake_result;
    /* woken by an event: loop to consume the READY mark */
  }
}

/* weft_wait_readable and weft_wait_writable promise a state, not an edge: data already
 * in the fd counts, even when an earlier call consumed the READY mark and left it unread
 * (epoll, edge-triggered, then reports nothing new and fd_wait alone would wait for more).
 * So look with poll(2) first, and again after each wake-up, since a mark can be stale. */
static int wait_ready(int fd, int dir, int64_t deadline, struct weft__canceller *cn)
{
  struct pollfd p = {.fd = fd, .events = dir ? POLLOUT : POLLIN};
  for (;;) {
    int n = poll(&p, 1, 0);
    if (n > 0)
      return p.revents & POLLNVAL ? -EBADF : 0;
    if (n < 0 && errno != EINTR)
      return -errno;
    int err = fd_wait(fd, dir, deadline, cn);
    if (err)
      return err;
  }
}

int weft_wait_readable(int fd, int64_t deadline)
{
  return wait_ready(fd, 0, deadline, NULL);
}

int weft_wait_writable(int fd, int64_t deadline)
{
  return wait_ready(fd, 1, deadline, NULL);
}

/* ---- the poller ---- */

int weft__poller_init(void)
{
  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0)
    return -errno;
  wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd < 0)
    return -errno;
  wake_desc.fd = wake_fd;
  wake_desc.kind = PD_WAKE;
  atomic_store(&wake_pending, false);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &wake_desc};
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, wake_fd, &ev) < 0)
    return -errno;
  return 0;
}

/* Register an internal fd (the signal pipe) whose readiness runs a dispatcher. */
int weft__poller_add_internal(int fd)
{
  static struct pollfd_desc signal_desc;
  signal_desc.fd = fd;
  signal_desc.kind = PD_SIGNAL;
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &signal_desc};
  return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

void weft__poller_fini(void)
{
  for (int i = 0; i < MAX_CHUNKS; i++) {
    struct pollfd_desc *chunk = atomic_exchange(&chunks[i], NULL);
    free(chunk);
  }
  if (wake_fd >= 0)
    close(wake_fd);
  if (epfd >= 0)
    close(epfd);
  wake_fd = epfd = -1;
}

void weft__poller_wake(void)
{
  if (wake_fd < 0 || atomic_exchange(&wake_pending, true))
    return;
  uint64_t one = 1;
  (void)!write(wake_fd, &one, sizeof one);
}

static int handle_event(struct epoll_event *ev)
{
  struct pollfd_desc *pd = ev->data.ptr;
  int readied = 0;
  TSAN_ACQUIRE(pd); /* see weft_fd_register */
  if (pd->kind == PD_WAKE) {
    uint64_t v;
    (void)!read(wake_fd, &v, sizeof v);
    atomic_store(&wake_pending, false);
    return 0;
  }
  if (pd->kind == PD_SIGNAL) {
    weft__signal_dispatch();
    return 1;
  }
  uint32_t e = ev->events;
  if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
    readied += atomic_load(&pd->slot[0]) > SLOT_CANCEL;
    wake_slot(pd, 0, SLOT_READY, 0);
  }
  if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR)) {
    readied += atomic_load(&pd->slot[1]) > SLOT_CANCEL;
    wake_slot(pd, 1, SLOT_READY, 0);
  }
  return readied;
}

/* Set once epoll_pwait2 reports ENOSYS: Linux before 5.11, qemu-user 7.2 (the AArch64
 * CI run) and seccomp filters that predate it lack it. epoll_wait then stands in, with the
 * timeout rounded up to whole milliseconds so that a sub-millisecond wait does not spin.
 * Relaxed: every thread that reads false just makes one more failing call. */
static atomic_bool no_epoll_pwait2;

#if WEFT_TSAN
#define USE_EPOLL_PWAIT2 0
#else
#define USE_EPOLL_PWAIT2 1
#endif

static int epoll_wait_until(struct epoll_event *events, int64_t deadline)
{
  struct timespec ts, *tsp = NULL;
  int64_t left = 0;
  if (deadline != INT64_MAX) {
    left = deadline - now_ns();
    if (left < 0)
      left = 0;
    ts.tv_sec = (time_t)(left / 1000000000);
    ts.tv_nsec = (long)(left % 1000000000);
    tsp = &ts;
  }
  /* ThreadSanitizer intercepts epoll_wait but not epoll_pwait2, and runs a signal's
   * handler only at an intercepted call: use epoll_wait there (millisecond timeouts). */
  if (USE_EPOLL_PWAIT2 && !atomic_load_explicit(&no_epoll_pwait2, memory_order_relaxed)) {
    int n = epoll_pwait2(epfd, events, MAX_EVENTS, tsp, NULL);
    if (n >= 0 || errno != ENOSYS)
      return n;
    atomic_store_explicit(&no_epoll_pwait2, true, memory_order_relaxed);
  }
  int64_t ms = (left + 999999) / 1000000;
  return epoll_wait(epfd, events, MAX_EVENTS, !tsp ? -1 : ms > INT32_MAX ? INT32_MAX : (int)ms);
}

/* Times the poller has waited in epoll (weft_runtime_stats); the poller is one thread
 * at a time, so a relaxed load and store suffice. */
static atomic_ulong poller_waits;

unsigned long weft__poller_waits(void)
{
  return atomic_load_explicit(&poller_waits, memory_order_relaxed);
}

int weft__poller_poll(int64_t deadline)
{
  atomic_store_explicit(&poller_waits,
                        atomic_load_explicit(&poller_waits, memory_order_relaxed) + 1,
                        memory_order_relaxed);
  struct epoll_event events[MAX_EVENTS];
  int n = epoll_wait_until(events, deadline);
  int readied = 0;
  for (int i = 0; i < n; i++)
    readied += handle_event(&events[i]);
  return readied;
}

/* ---- I/O calls ---- */

/* Run call until it does not report EAGAIN, waiting for readiness in dir between tries.
 * Returns call's result, or a negative errno. */
#define IO_LOOP(fd, dir, deadline, cn, call)         \
  for (;;) {                                         \
    ssize_t n_ = (call);                             \
    if (n_ >= 0)                                     \
      return n_;                                     \
    if (errno == EINTR)                              \
      continue;                                      \
    if (errno != EAGAIN)                             \
      return -errno;                                 \
    int err_ = fd_wait((fd), (dir), (deadline), cn); \
    if (err_)                                        \
      return err_;                                   \
  }

static int ensure_registered(int fd)
{
  if (!weft__current())
    return 0; /* blocking use from a plain thread: leave the fd as it is */
  return weft_fd_register(fd);
}

/* The calls with an optional canceller (the ctx layer's weft_*_ctx); the public
 * deadline-only calls pass NULL. */

int weft__wait_fd(int fd, int dir, int64_t deadline, struct weft__canceller *cn)
{
  return wait_ready(fd, dir, deadline, cn);
}

int weft__wait_fd_edge(int fd, int dir, int64_t deadline, struct weft__canceller *cn)
{
  int err = ensure_registered(fd);
  return err ? err : fd_wait(fd, dir, deadline, cn);
}

ssize_t weft__read(int fd, void *buf, size_t len, int64_t deadline, struct weft__canceller *cn)
{
  int err = ensure_registered(fd);
  if (err)
    return err;
  IO_LOOP(fd, 0, deadline, cn, read(fd, buf, len));
}

ssize_t weft__write(int fd, const void *buf, size_t len, int64_t deadline,
                    struct weft__canceller *cn)
{
  int err = ensure_registered(fd);
  if (err)
    return err;
  IO_LOOP(fd, 1, deadline, cn, write(fd, buf, len));
}

ssize_t weft__write_all(int fd, const void *buf, size_t len, int64_t deadline,
                        struct weft__canceller *cn)
{
  size_t done = 0;
  while (done < len) {
    ssize_t n = weft__write(fd, (const char *)buf + done, len - done, deadline, cn);
    if (n < 0)
      return n;
    done += (size_t)n;
  }
  return (ssize_t)done;
}

int weft__accept(int fd, struct sockaddr *addr, socklen_t *addrlen, int64_t deadline,
                 struct weft__canceller *cn)
{
  int err = ensure_registered(fd);
  if (err)
    return err;
  IO_LOOP(fd, 0, deadline, cn, accept4(fd, addr, addrlen, SOCK_NONBLOCK | SOCK_CLOEXEC));
}

int weft__connect(int fd, const struct sockaddr *addr, socklen_t addrlen, int64_t deadline,
                  struct weft__canceller *cn)
{
  int err = ensure_registered(fd);
  if (err)
    return err;
  /* EALREADY: an earlier attempt on this socket, whose wait timed out or was cancelled,
   * is still in progress: wait for it; EISCONN: it has completed (Go's connect loop). */
  if (connect(fd, addr, addrlen) == 0 || errno == EISCONN)
    return 0;
  if (errno != EINPROGRESS && errno != EINTR && errno != EALREADY)
    return -errno;
  for (;;) {
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    struct sockaddr_storage peer;
    socklen_t pl = sizeof peer;
    if ((err = fd_wait(fd, 1, deadline, cn)))
      return err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
      return -errno;
    if (soerr != 0 && soerr != EINPROGRESS && soerr != EALREADY)
      return -soerr;
    /* A writable mark can predate the connection (a fresh socket polls writable):
     * connected only once the peer is known. */
    if (soerr == 0 && getpeername(fd, (struct sockaddr *)&peer, &pl) == 0)
      return 0;
  }
}

ssize_t weft_read(int fd, void *buf, size_t len, int64_t deadline)
{
  return weft__read(fd, buf, len, deadline, NULL);
}

ssize_t weft_write(int fd, const void *buf, size_t len, int64_t deadline)
{
  return weft__write(fd, buf, len, deadline, NULL);
}

ssize_t weft_recv(int fd, void *buf, size_t len, int flags, int64_t deadline)
{
  int err = ensure_registered(fd);
  if (err)
    return err;
  IO_LOOP(fd, 0, deadline, NULL, recv(fd, buf, len, flags));
}

ssize_t weft_send(int fd, const void *buf, size_t len, int flags, int64_t deadline)
{
  int err = ensure_registered(fd);
  if (err)
    return err;
  IO_LOOP(fd, 1, deadline, NULL, send(fd, buf, len, flags | MSG_NOSIGNAL));
}

ssize_t weft_write_all(int fd, const void *buf, size_t len, int64_t deadline)
{
  return weft__write_all(fd, buf, len, deadline, NULL);
}

int weft_accept(int fd, struct sockaddr *addr, socklen_t *addrlen, int64_t deadline)
{
  return weft__accept(fd, addr, addrlen, deadline, NULL);
}

int weft_connect(int fd, const struct sockaddr *addr, socklen_t addrlen, int64_t deadline)
{
  return weft__connect(fd, addr, addrlen, deadline, NULL);
}
