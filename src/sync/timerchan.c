/* timerchan.c: weft_after and tickers: channels fed by timers.
 *
 * The timer callbacks run on a scheduler thread and never park: they use
 * weft_chan_try_send, so a tick is dropped while the channel's single slot is full.
 *
 * after: the channel owns the timer's record (chan finalize hook). The timer holds no
 * channel reference: the channel's last release stops the timer, waiting for its callback
 * if it is running, then frees the record, so releasing the channel before it fires
 * cancels the timer (nothing is left pending: no leak when the runtime stops, and no
 * phantom wake source for deadlock detection). The design that lost: the callback owned
 * the record and a channel reference, so a channel released unfired lived on until its
 * timer fired, and leaked when the runtime stopped first (ASan, test_timerchan.c).
 *
 * ticker: the callback re-arms the timer itself, so the timer is callback_owns (the timer
 * code never touches it once the callback is called). tk->lock serialises a tick with
 * weft_ticker_stop: a tick checks `stopped`, sends and re-arms under it, so no tick is
 * sent once stop has returned. The record has two references: the user's, dropped by
 * stop, and the timer's, dropped by stop when it removes the pending timer, or by a
 * dispatched tick that finds the ticker stopped (or cannot re-arm); the last one frees
 * the record and its channel reference. The design that lost: a plain timer restarted
 * from its own callback. weft__timer_run_expired's FIRING -> IDLE step after the callback then
 * touched a timer that the restart had made stoppable, after a concurrent stop had removed
 * it and freed the ticker (use after free, ThreadSanitizer, test_timerchan.c).
 *
 * Both kinds belong to the runtime that created them: release an after channel and stop
 * a ticker before weft_main returns (once it has returned, a pending timer died with the
 * runtime and is only freed). */
#include <errno.h>
#include <stdlib.h>

#include "core/clock.h"
#include "core/sched.h"
#include "sync/chan_internal.h"

struct after {
  struct timer timer;
  weft_chan *ch; /* borrowed: the channel owns this record and outlives the timer */
};

/* t + d for a time t >= 0 and a duration d >= 0, saturating: a huge duration never
 * wraps into the past. */
static int64_t time_add(int64_t t, int64_t d)
{
  return d > INT64_MAX - t ? INT64_MAX : t + d;
}

static void after_fired(struct timer *t)
{
  struct after *a = t->arg;
  int64_t now = now_ns();
  weft_chan_try_send(a->ch, &now);
}

/* The channel's last release: cancel the timer, or wait until its callback has returned,
 * and free the record. A timer that has fired is IDLE and needs no stopping (nor its heap,
 * which is gone if the runtime has stopped since); one still pending when the runtime
 * stopped died with it. */
static void after_finalize(weft_chan *ch)
{
  struct after *a = ch->finalize_arg;
  if (atomic_load_explicit(&a->timer.state, memory_order_acquire) != TIMER_IDLE &&
      weft__sched.workers)
    weft__timer_stop(&a->timer);
  free(a);
}

weft_chan *weft_after(int64_t ns)
{
  if (!weft__sched.workers)
    return NULL;
  struct after *a = calloc(1, sizeof *a);
  weft_chan *ch = weft_chan_new(sizeof(int64_t), 1);
  if (!a || !ch) {
    free(a);
    weft_chan_release(ch);
    return NULL;
  }
  a->ch = ch;
  a->timer.fn = after_fired;
  a->timer.arg = a;
  if (weft__timer_start(&a->timer, time_add(now_ns(), ns > 0 ? ns : 0)) != 0) {
    weft_chan_release(ch);
    free(a);
    return NULL;
  }
  ch->finalize = after_finalize; /* before the caller can release it */
  ch->finalize_arg = a;
  return ch;
}

struct weft_ticker {
  struct timer timer; /* callback_owns; re-armed by tick under lock */
  weft_chan *ch;      /* the ticker's reference, dropped with the record */
  int64_t period;     /* immutable */
  atomic_int refs;    /* the user's and the timer's (see above) */
  spinlock lock;      /* guards stopped, timer_ref and re-arming; taken before the
                         channel's lock and the timer heap locks */
  bool stopped;       /* weft_ticker_stop was called */
  bool timer_ref;     /* the timer still holds its reference */
};

static void ticker_unref(struct weft_ticker *tk)
{
  if (atomic_fetch_sub_explicit(&tk->refs, 1, memory_order_acq_rel) == 1) {
    weft_chan_release(tk->ch);
    free(tk);
  }
}

static void tick(struct timer *t)
{
  struct weft_ticker *tk = t->arg;
  bool armed = false;
  spin_lock(&tk->lock);
  if (!tk->stopped) {
    int64_t now = now_ns();
    weft_chan_try_send(tk->ch, &now);
    int64_t next = time_add(t->when, tk->period);
    if (next <= now)
      next = time_add(now, tk->period); /* fell behind: skip the missed ticks */
    armed = weft__timer_start(t, next) == 0;
  }
  if (!armed)
    tk->timer_ref = false;
  spin_unlock(&tk->lock);
  if (!armed)
    ticker_unref(tk); /* the timer's: it will not fire again */
}

weft_ticker *weft_ticker_new(int64_t period)
{
  if (period <= 0 || !weft__sched.workers)
    return NULL;
  struct weft_ticker *tk = calloc(1, sizeof *tk);
  if (!tk || !(tk->ch = weft_chan_new(sizeof(int64_t), 1))) {
    free(tk);
    return NULL;
  }
  tk->period = period;
  atomic_init(&tk->refs, 2);
  tk->timer_ref = true;
  tk->timer.fn = tick;
  tk->timer.arg = tk;
  tk->timer.callback_owns = true;
  if (weft__timer_start(&tk->timer, time_add(now_ns(), period)) != 0) {
    weft_chan_release(tk->ch);
    free(tk);
    return NULL;
  }
  return tk;
}

weft_chan *weft_ticker_chan(weft_ticker *tk)
{
  return tk ? tk->ch : NULL;
}

void weft_ticker_stop(weft_ticker *tk)
{
  if (!tk)
    return;
  spin_lock(&tk->lock);
  tk->stopped = true;
  /* Not removed (it has fired): the tick it dispatched drops the timer's reference. Once
   * the runtime has stopped, nothing fires any more. */
  bool drop_timer = tk->timer_ref && (!weft__sched.workers || weft__timer_stop(&tk->timer));
  if (drop_timer)
    tk->timer_ref = false;
  spin_unlock(&tk->lock);
  if (drop_timer)
    ticker_unref(tk);
  ticker_unref(tk); /* the user's */
}
