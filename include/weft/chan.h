/* weft/chan.h: channels and select, with Go's semantics.
 *
 * A channel carries fixed-size elements (any size, copied by value). Capacity 0 is a
 * synchronous hand-off: a send completes only when a receiver takes the value. Waiting
 * senders and receivers are served first come, first served, and a receiver takes a
 * parked sender's value directly.
 *
 * Closing: receivers drain what is buffered, then get -EPIPE (and a zeroed element) at
 * once, forever; senders get -EPIPE (never undefined behaviour, unlike Go's panic).
 * Closing a closed channel is a misuse: weft aborts with a message and a dump.
 *
 * A NULL channel is never ready (Go's nil channel): sends and receives on it block until
 * their deadline, and a select case on it is switched off.
 *
 * Ownership: weft_chan_new returns a channel holding one reference; weft_chan_retain adds
 * one, weft_chan_release drops one and frees the channel with the last. Each coroutine
 * that keeps a channel should hold its own reference. Waiters keep the channel alive while
 * they wait only if their caller holds a reference. */
#ifndef WEFT_CHAN_H
#define WEFT_CHAN_H

#include <stdbool.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_chan weft_chan;

/* weft_chan_new: a channel of elements of elem_size bytes (1 .. 65536) buffering cap of
 * them (0: unbuffered). Returns NULL if out of memory or the sizes are invalid. Any thread. */
WEFT_API weft_chan *weft_chan_new(size_t elem_size, size_t cap);

/* weft_chan_retain / weft_chan_release: take or drop a reference. NULL is ignored. Any
 * thread; never park. */
WEFT_API weft_chan *weft_chan_retain(weft_chan *ch);
WEFT_API void weft_chan_release(weft_chan *ch);

/* weft_chan_send: copy *elem into the channel, parking while it is full (or, unbuffered,
 * until a receiver takes it). Returns 0, -EPIPE if the channel is or becomes closed,
 * -ETIMEDOUT at deadline, -EINVAL if elem is NULL. Debug builds log the caller of the
 * first ten sends on closed channels. Coroutine, may park (wait reason "chan send"). */
WEFT_API int weft_chan_send(weft_chan *ch, const void *elem, int64_t deadline);

/* weft_chan_recv: receive into *elem (elem may be NULL to discard). Returns 0 with a value,
 * -EPIPE if the channel is closed and drained (*elem zeroed), -ETIMEDOUT at deadline.
 * Coroutine, may park (wait reason "chan receive"). */
WEFT_API int weft_chan_recv(weft_chan *ch, void *elem, int64_t deadline);

/* weft_chan_try_send / weft_chan_try_recv: as above but never park: -EAGAIN when the
 * operation would block. Any thread (also timer callbacks and plain threads). */
WEFT_API int weft_chan_try_send(weft_chan *ch, const void *elem);
WEFT_API int weft_chan_try_recv(weft_chan *ch, void *elem);

/* weft_chan_close: close the channel, waking every parked receiver (-EPIPE) and every
 * parked sender (-EPIPE). Closing a closed or NULL channel aborts. Any thread. */
WEFT_API void weft_chan_close(weft_chan *ch);

/* weft_chan_len / weft_chan_cap: buffered elements now / capacity (0 for NULL). */
WEFT_API size_t weft_chan_len(weft_chan *ch);
WEFT_API size_t weft_chan_cap(weft_chan *ch);
/* weft_chan_is_closed: true once closed (buffered values may remain). */
WEFT_API bool weft_chan_is_closed(weft_chan *ch);
/* weft_chan_elem_size: the element size given at creation (0 for NULL). */
WEFT_API size_t weft_chan_elem_size(weft_chan *ch);

/* Typed helpers that check the element size (a mismatch returns -EINVAL):
 *   WEFT_CHAN_NEW(int, 16)           weft_chan_new(sizeof(int), 16)
 *   WEFT_CHAN_SEND(ch, int, 42)      send a value of type int, no deadline
 *   WEFT_CHAN_RECV(ch, &x)           receive into x, no deadline */
WEFT_API int weft_chan_send_sized(weft_chan *ch, const void *elem, size_t size,
                                  int64_t deadline);
WEFT_API int weft_chan_recv_sized(weft_chan *ch, void *elem, size_t size, int64_t deadline);
#define WEFT_CHAN_NEW(T, cap) weft_chan_new(sizeof(T), (cap))
#define WEFT_CHAN_SEND(ch, T, value) \
  weft_chan_send_sized((ch), &(T){value}, sizeof(T), WEFT_NO_DEADLINE)
#define WEFT_CHAN_RECV(ch, ptr) \
  weft_chan_recv_sized((ch), (ptr), sizeof *(ptr), WEFT_NO_DEADLINE)

/* ---- select ---- */

enum weft_select_dir { WEFT_SELECT_RECV = 0, WEFT_SELECT_SEND = 1 };

/* One case of a select. Set ch, dir and elem; weft_select sets result for the case it
 * chose: 0, or -EPIPE if the channel was closed (a receive then got a zeroed element). */
typedef struct weft_select_case {
  weft_chan *ch; /* NULL: the case is never ready */
  enum weft_select_dir dir;
  void *elem; /* send: the value to send; receive: where to put it (or NULL) */
  int result; /* out */
} weft_select_case;

/* Flags for weft_select. */
#define WEFT_SELECT_DEFAULT 1 /* never park: return -EAGAIN when no case is ready */

/* weft_select: wait until one of n cases can proceed, perform it and return its index.
 * Among ready cases one is chosen uniformly at random. Returns the index, -EAGAIN with
 * WEFT_SELECT_DEFAULT when none is ready, -ETIMEDOUT at deadline, -EINVAL for n > 65536
 * or a bad case (an unknown dir, or a send case with a NULL elem). With no deadline and only
 * NULL channels it never returns (deadlock detection reports it if nothing else runs).
 * Coroutine, may park (wait reason "select"; with WEFT_SELECT_DEFAULT it never parks and any
 * thread may call it). */
WEFT_API int weft_select(weft_select_case *cases, size_t n, int flags, int64_t deadline);

/* ---- timer channels ---- */

/* weft_after: a channel (elem int64_t, capacity 1) that receives the monotonic time once,
 * ns nanoseconds from now. The caller owns the returned reference; releasing it before it
 * fires cancels the timer. Returns NULL if out of memory. Any thread while the runtime runs. */
WEFT_API weft_chan *weft_after(int64_t ns);

typedef struct weft_ticker weft_ticker;

/* weft_ticker_new: a ticker that sends the monotonic time (int64_t) on its channel every
 * period ns (period > 0); ticks are dropped while the channel's one slot is full, as in
 * Go. Returns NULL on bad period or out of memory. Any thread while the runtime runs. */
WEFT_API weft_ticker *weft_ticker_new(int64_t period);
/* weft_ticker_chan: the ticker's channel (borrowed; valid until weft_ticker_stop). */
WEFT_API weft_chan *weft_ticker_chan(weft_ticker *t);
/* weft_ticker_stop: stop the ticker and free it (and its channel reference). NULL is
 * ignored. Any thread; never parks. */
WEFT_API void weft_ticker_stop(weft_ticker *t);

#ifdef __cplusplus
}
#endif
#endif
