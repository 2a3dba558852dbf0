/* clock.c: the real clock and a fake one for tests (weft/clock.h).
 *
 * A fake clock's sleeper waits on a channel of its own (capacity 1) listed with its
 * deadline; advance moves time and, for each sleeper now due, unlists it and sends on its
 * channel without waiting. The list holds its own reference to each channel, so a sleeper
 * that gives up (its context done) and frees its reference never frees a channel that
 * advance is sending on. fc->lock (a pthread mutex, a leaf: nothing parks or locks
 * under it but a non-blocking send) guards now and the list. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include <stdbool.h>

#include "weft/chan.h"
#include "weft/clock.h"
#include "weft/runtime.h"

struct weft_clock {
  int64_t (*now)(weft_clock *c);
  int (*sleep_until)(weft_clock *c, weft_ctx *ctx, int64_t deadline);
};

/* ---- real ---- */

static int64_t real_now(weft_clock *c)
{
  return weft_now();
}

static int real_sleep_until(weft_clock *c, weft_ctx *ctx, int64_t deadline)
{
  int64_t left = deadline - weft_now();
  return weft_sleep_ctx(ctx, left > 0 ? left : 0);
}

static weft_clock real_clock = {real_now, real_sleep_until};

weft_clock *weft_clock_real(void)
{
  return &real_clock;
}

int64_t weft_clock_now(weft_clock *c)
{
  return (c ? c : &real_clock)->now(c ? c : &real_clock);
}

int weft_clock_sleep_until(weft_clock *c, weft_ctx *ctx, int64_t deadline)
{
  return (c ? c : &real_clock)->sleep_until(c ? c : &real_clock, ctx, deadline);
}

int weft_clock_sleep(weft_clock *c, weft_ctx *ctx, int64_t ns)
{
  int64_t now = weft_clock_now(c);
  int64_t deadline = ns > INT64_MAX - now ? INT64_MAX : now + (ns > 0 ? ns : 0);
  return weft_clock_sleep_until(c, ctx, deadline);
}

/* ---- fake ---- */

struct sleeper {
  int64_t deadline;
  weft_chan *wake; /* capacity 1; the sleeper's reference and one for the list */
  struct sleeper *next;
};

struct weft_fake_clock {
  weft_clock base; /* first: weft_fake_clock_clock returns it */
  pthread_mutex_t lock;
  int64_t now;              /* guarded by lock */
  struct sleeper *sleepers; /* guarded by lock */
  int nsleepers;            /* guarded by lock */
};

static int64_t fake_now(weft_clock *c)
{
  weft_fake_clock *fc = (weft_fake_clock *)c;
  pthread_mutex_lock(&fc->lock);
  int64_t now = fc->now;
  pthread_mutex_unlock(&fc->lock);
  return now;
}

/* Take s off the list if it is still there (the sleeper gave up). */
static void unlist(weft_fake_clock *fc, struct sleeper *s)
{
  pthread_mutex_lock(&fc->lock);
  for (struct sleeper **p = &fc->sleepers; *p; p = &(*p)->next) {
    if (*p == s) {
      *p = s->next;
      fc->nsleepers--;
      weft_chan_release(s->wake); /* the list's reference */
      break;
    }
  }
  pthread_mutex_unlock(&fc->lock);
}

static int fake_sleep_until(weft_clock *c, weft_ctx *ctx, int64_t deadline)
{
  weft_fake_clock *fc = (weft_fake_clock *)c;
  int err = weft_ctx_err(ctx);
  if (err)
    return err;
  struct sleeper s = {.deadline = deadline, .wake = weft_chan_new(1, 1)};
  if (!s.wake)
    return -ENOMEM;
  pthread_mutex_lock(&fc->lock);
  bool due = fc->now >= deadline;
  if (!due) {
    weft_chan_retain(s.wake); /* the list's reference, dropped by whoever unlists it */
    s.next = fc->sleepers;
    fc->sleepers = &s;
    fc->nsleepers++;
  }
  pthread_mutex_unlock(&fc->lock);
  if (!due) {
    char token;
    err = weft_chan_recv_ctx(s.wake, &token, ctx);
    if (err < 0)
      unlist(fc, &s); /* advance may have unlisted it meanwhile: then it is a no-op */
    err = err < 0 ? err : 0;
  }
  weft_chan_release(s.wake);
  return err;
}

weft_fake_clock *weft_fake_clock_new(int64_t start)
{
  weft_fake_clock *fc = calloc(1, sizeof *fc);
  if (!fc)
    return NULL;
  fc->base = (weft_clock){fake_now, fake_sleep_until};
  pthread_mutex_init(&fc->lock, NULL);
  fc->now = start;
  return fc;
}

void weft_fake_clock_free(weft_fake_clock *fc)
{
  if (!fc)
    return;
  pthread_mutex_destroy(&fc->lock);
  free(fc);
}

weft_clock *weft_fake_clock_clock(weft_fake_clock *fc)
{
  return &fc->base;
}

void weft_fake_clock_set(weft_fake_clock *fc, int64_t t)
{
  pthread_mutex_lock(&fc->lock);
  if (t > fc->now)
    fc->now = t;
  for (struct sleeper **p = &fc->sleepers; *p;) {
    struct sleeper *s = *p;
    if (s->deadline <= fc->now) {
      *p = s->next;
      fc->nsleepers--;
      char token = 1;
      weft_chan *wake = s->wake; /* s lives on its sleeper's stack: done with it after this */
      weft_chan_try_send(wake, &token); /* capacity 1, sent once: never full */
      weft_chan_release(wake);          /* the list's reference */
    } else {
      p = &s->next;
    }
  }
  pthread_mutex_unlock(&fc->lock);
}

void weft_fake_clock_advance(weft_fake_clock *fc, int64_t ns)
{
  pthread_mutex_lock(&fc->lock);
  int64_t t = fc->now + (ns > 0 ? ns : 0);
  pthread_mutex_unlock(&fc->lock);
  weft_fake_clock_set(fc, t);
}

int weft_fake_clock_sleepers(weft_fake_clock *fc)
{
  pthread_mutex_lock(&fc->lock);
  int n = fc->nsleepers;
  pthread_mutex_unlock(&fc->lock);
  return n;
}
