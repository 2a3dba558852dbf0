/* ctx.c: the context tree (weft/ctx.h).
 *
 * Kinds: the static background; cancel nodes (with_cancel, with_deadline); value nodes;
 * without-cancel nodes. Only cancel nodes can be done: every context points at its
 * `canceller`, the nearest cancel node at or above it (NULL: it can never be done), and
 * answers err, cause and done from there.
 *
 * A cancel node links itself into its parent's canceller's `children` while both are not
 * done; cancel detaches the children (taking a reference on each under the lock) and
 * cancels them after releasing its own lock, so no two context locks are ever held at
 * once. A released child unlinks itself, which keeps a long-lived parent's list short.
 *
 * Invariants, under a cancel node's lock: err == 0 iff not done; once done, children and
 * listeners are empty and stay so; `linked` says whether the node is in its parent
 * canceller's children. err is also read without the lock (atomic).
 *
 * Lock order: a context lock is above channel locks (closing done) and timer heap locks
 * (arming the deadline), and is never held while another context's lock is taken. */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>

#include "core/clock.h"
#include "core/core.h"
#include "core/sched.h"
#include "ctx/ctx_hook.h"
#include "weft/ctx.h"
#include "weft/runtime.h"

enum ctx_kind { CTX_BACKGROUND, CTX_CANCEL, CTX_VALUE, CTX_WITHOUT };

/* An after-func registration. Two references: the registration's (dropped when it runs
 * or is stopped) and the caller's stop handle (dropped by weft_ctx_stop_func). */
struct listener {
  void (*fn)(void *arg);
  void *arg;
  struct weft_ctx *ctx; /* the cancel node it is registered on; a reference */
  atomic_int refs;
  bool registered; /* guarded by ctx->lock */
  struct listener *next, *prev;
};

struct weft_ctx {
  atomic_long refs;
  enum ctx_kind kind;         /* immutable */
  struct weft_ctx *parent;    /* holds a reference; NULL for background */
  struct weft_ctx *canceller; /* nearest cancel node at or above, or NULL; immutable */
  const void *key;            /* value nodes; immutable */
  void *value;
  void (*free_value)(void *value); /* value nodes: run when freed, or NULL; immutable */
  int64_t deadline;                /* immutable after creation */

  /* Cancel nodes only. */
  spinlock lock;
  atomic_int err;            /* 0 until done; written under lock */
  int cause;                 /* guarded by lock */
  weft_chan *done;           /* created on demand, closed when done; guarded by lock */
  struct weft_ctx *children; /* guarded by lock */
  struct weft_ctx *sib_prev, *sib_next; /* links in the parent canceller's children;
                                           guarded by the parent canceller's lock */
  bool linked;                          /* guarded by the parent canceller's lock */
  struct listener *listeners;           /* guarded by lock */
  struct ctx_hook *hooks;               /* blocking calls waiting on it; guarded by lock */
  struct timer timer;                   /* the deadline, when this node set one */
  bool timer_armed;                     /* immutable after creation */
};

static struct weft_ctx background = {.kind = CTX_BACKGROUND, .deadline = WEFT_NO_DEADLINE};

weft_ctx *weft_ctx_background(void)
{
  return &background;
}

weft_ctx *weft_ctx_retain(weft_ctx *c)
{
  if (c && c != &background)
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
  return c;
}

static struct weft_ctx *new_ctx(struct weft_ctx *parent, enum ctx_kind kind)
{
  struct weft_ctx *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  atomic_init(&c->refs, 1);
  c->kind = kind;
  c->parent = weft_ctx_retain(parent ? parent : &background);
  c->deadline = c->parent->deadline;
  c->canceller = c->parent->canceller;
  return c;
}

/* ---- cancellation ---- */

/* Take a reference unless the count already reached zero (the context is being freed). */
static bool try_retain(struct weft_ctx *c)
{
  long r = atomic_load_explicit(&c->refs, memory_order_relaxed);
  while (r > 0)
    if (atomic_compare_exchange_weak_explicit(&c->refs, &r, r + 1, memory_order_relaxed,
                                              memory_order_relaxed))
      return true;
  return false;
}

static void cancel_node(struct weft_ctx *c, int err, int cause, bool from_timer);
static void cancel_node_held(struct weft_ctx *c, int err, int cause, bool from_timer);

/* Remove c from its parent canceller's children, if it is there. */
static void unlink_from_parent(struct weft_ctx *c)
{
  struct weft_ctx *p = c->parent ? c->parent->canceller : NULL;
  if (!p)
    return;
  spin_lock(&p->lock);
  if (c->linked) {
    if (c->sib_prev)
      c->sib_prev->sib_next = c->sib_next;
    else
      p->children = c->sib_next;
    if (c->sib_next)
      c->sib_next->sib_prev = c->sib_prev;
    c->sib_prev = c->sib_next = NULL;
    c->linked = false;
  }
  spin_unlock(&p->lock);
}

static void listener_unref(struct listener *l)
{
  if (atomic_fetch_sub_explicit(&l->refs, 1, memory_order_acq_rel) == 1) {
    weft_ctx_release(l->ctx);
    free(l);
  }
}

static void run_listener(struct listener *l)
{
  if (weft_go_named(l->fn, l->arg, "ctx after-func") != 0)
    l->fn(l->arg); /* no coroutine to be had: run it here rather than lose it */
  listener_unref(l);
}

/* Hold a reference while cancelling: the hooks wake waiters that may drop the last
 * reference the moment they run. Not from the deadline timer: a release that drops the
 * last reference waits in weft__timer_stop for that callback instead. */
static void cancel_node(struct weft_ctx *c, int err, int cause, bool from_timer)
{
  if (!from_timer)
    weft_ctx_retain(c);
  cancel_node_held(c, err, cause, from_timer);
  if (!from_timer)
    weft_ctx_release(c);
}

/* Cancel c alone: mark it done, wake its waiters and after-funcs, unlink it. Returns its
 * children that still need cancelling, each held by a reference and linked through
 * sib_next (no longer in c's list), or NULL if c was done already. */
static struct weft_ctx *cancel_one(struct weft_ctx *c, int err, int cause, bool from_timer)
{
  spin_lock(&c->lock);
  if (atomic_load_explicit(&c->err, memory_order_relaxed)) {
    spin_unlock(&c->lock);
    return NULL;
  }
  c->cause = cause ? cause : err;
  atomic_store_explicit(&c->err, err, memory_order_release);
  /* Detach the children, keeping alive (by a reference) those to cancel below. A child
   * whose count already reached zero is being released and waits for this lock to unlink
   * itself: it is only marked unlinked, never touched again here. */
  struct weft_ctx *children = NULL, *next;
  for (struct weft_ctx *k = c->children; k; k = next) {
    next = k->sib_next;
    k->linked = false;
    k->sib_prev = k->sib_next = NULL;
    if (try_retain(k)) {
      k->sib_next = children;
      children = k;
    }
  }
  c->children = NULL;
  struct listener *listeners = c->listeners;
  c->listeners = NULL;
  for (struct listener *l = listeners; l; l = l->next)
    l->registered = false;
  struct ctx_hook *hooks = c->hooks;
  c->hooks = NULL;
  for (struct ctx_hook *h = hooks; h; h = h->next)
    atomic_store_explicit(&h->state, HOOK_FIRING, memory_order_relaxed);
  if (c->done)
    weft_chan_close(c->done);
  spin_unlock(&c->lock);

  while (hooks) {
    struct ctx_hook *h = hooks;
    hooks = h->next; /* read before fn: once DONE the hook's memory may go */
    h->fn(h, err);
    atomic_store_explicit(&h->state, HOOK_DONE, memory_order_release);
  }
  while (listeners) {
    struct listener *l = listeners;
    listeners = l->next;
    run_listener(l);
  }
  unlink_from_parent(c);
  if (c->timer_armed && !from_timer)
    weft__timer_stop(&c->timer);
  return children;
}

/* Cancel c and its descendants, iteratively (a chain of any depth needs no stack): each
 * node's children join the work list, and each node is released once cancelled. */
static void cancel_node_held(struct weft_ctx *c, int err, int cause, bool from_timer)
{
  struct weft_ctx *work = cancel_one(c, err, cause, from_timer);
  cause = c->cause; /* set by cancel_one if it cancelled c; every descendant shares it */
  while (work) {
    struct weft_ctx *k = work;
    work = k->sib_next;
    k->sib_next = NULL;
    struct weft_ctx *kids = cancel_one(k, err, cause, false);
    while (kids) {
      struct weft_ctx *next = kids->sib_next;
      kids->sib_next = work;
      work = kids;
      kids = next;
    }
    weft_ctx_release(k);
  }
}

static void cancel_on_deadline(void *arg)
{
  cancel_node(arg, -ETIMEDOUT, 0, false);
  weft_ctx_release(arg);
}

/* The callback must not drop the last reference to anything that holds this node: the
 * cancel releases children, whose release may free the node itself (its own weft__timer_stop
 * would then wait for this very callback). So the callback only takes a reference and
 * hands the cancel to a coroutine; a release that already reached zero is waiting in
 * weft__timer_stop for this callback and the node must not be touched further. */
static void deadline_fired(struct timer *t)
{
  struct weft_ctx *c = t->arg;
  if (!try_retain(c))
    return;
  if (weft_go_named(cancel_on_deadline, c, "ctx deadline") != 0)
    cancel_node_held(c, -ETIMEDOUT, 0, true); /* runtime stopping: inline; the reference
                                                 is kept (leaked) rather than dropped here */
}

/* Link a new cancel node under its parent's canceller, or cancel it at once if that is
 * done already. */
static void attach(struct weft_ctx *c)
{
  struct weft_ctx *p = c->canceller; /* still the parent's canceller here */
  c->canceller = c;
  if (!p)
    return;
  spin_lock(&p->lock);
  int err = atomic_load_explicit(&p->err, memory_order_relaxed);
  int cause = p->cause;
  if (!err) {
    c->sib_next = p->children;
    if (p->children)
      p->children->sib_prev = c;
    p->children = c;
    c->linked = true;
  }
  spin_unlock(&p->lock);
  if (err)
    cancel_node(c, err, cause, false);
}

weft_ctx *weft_ctx_with_cancel(weft_ctx *parent)
{
  struct weft_ctx *c = new_ctx(parent, CTX_CANCEL);
  if (c)
    attach(c);
  return c;
}

weft_ctx *weft_ctx_with_deadline(weft_ctx *parent, int64_t deadline)
{
  struct weft_ctx *c = new_ctx(parent, CTX_CANCEL);
  if (!c)
    return NULL;
  bool own = deadline < c->deadline; /* an earlier parent deadline wins */
  if (own) {
    c->deadline = deadline;
    c->timer.fn = deadline_fired; /* before attach makes c visible to a parent's cancel */
    c->timer.arg = c;
    c->timer_armed = deadline > now_ns();
  }
  attach(c);
  if (own && !atomic_load(&c->err)) {
    if (!c->timer_armed) {
      cancel_node(c, -ETIMEDOUT, 0, false);
    } else {
      if (!weft__sched.workers || weft__timer_start(&c->timer, deadline) != 0) {
        c->timer_armed = false;
        weft_ctx_release(c);
        return NULL;
      }
    }
  }
  return c;
}

weft_ctx *weft_ctx_with_timeout(weft_ctx *parent, int64_t ns)
{
  int64_t now = now_ns();
  return weft_ctx_with_deadline(parent, ns > INT64_MAX - now ? WEFT_NO_DEADLINE : now + ns);
}

weft_ctx *weft_ctx_with_value(weft_ctx *parent, const void *key, void *value)
{
  struct weft_ctx *c = new_ctx(parent, CTX_VALUE);
  if (c) {
    c->key = key;
    c->value = value;
  }
  return c;
}

weft_ctx *weft_ctx_with_value_free(weft_ctx *parent, const void *key, void *value,
                                   void (*free_value)(void *value))
{
  struct weft_ctx *c = weft_ctx_with_value(parent, key, value);
  if (c)
    c->free_value = free_value;
  return c;
}

weft_ctx *weft_ctx_without_cancel(weft_ctx *parent)
{
  struct weft_ctx *c = new_ctx(parent, CTX_WITHOUT);
  if (c) {
    c->canceller = NULL;
    c->deadline = WEFT_NO_DEADLINE;
  }
  return c;
}

void weft_ctx_cancel(weft_ctx *c)
{
  weft_ctx_cancel_cause(c, 0);
}

void weft_ctx_cancel_cause(weft_ctx *c, int cause)
{
  if (c && c->kind == CTX_CANCEL)
    cancel_node(c, -ECANCELED, cause, false);
}

/* Iterative up the parent chain: releasing a deep chain leaf-first needs no stack. */
void weft_ctx_release(weft_ctx *c)
{
  while (c && c != &background &&
         atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1) {
    if (c->kind == CTX_CANCEL) {
      unlink_from_parent(c);
      if (c->timer_armed)
        weft__timer_stop(&c->timer); /* waits for a firing callback */
      weft_chan_release(c->done);
    }
    if (c->kind == CTX_VALUE && c->free_value)
      c->free_value(c->value);
    struct weft_ctx *parent = c->parent;
    free(c);
    c = parent;
  }
}

/* ---- queries ---- */

int weft_ctx_err(weft_ctx *c)
{
  struct weft_ctx *k = c ? c->canceller : NULL;
  return k ? atomic_load_explicit(&k->err, memory_order_acquire) : 0;
}

int weft_ctx_cause(weft_ctx *c)
{
  struct weft_ctx *k = c ? c->canceller : NULL;
  if (!k || !atomic_load_explicit(&k->err, memory_order_acquire))
    return 0;
  spin_lock(&k->lock);
  int cause = k->cause;
  spin_unlock(&k->lock);
  return cause;
}

int64_t weft_ctx_deadline(weft_ctx *c)
{
  return c ? c->deadline : WEFT_NO_DEADLINE;
}

void *weft_ctx_value(weft_ctx *c, const void *key)
{
  for (; c; c = c->parent)
    if (c->kind == CTX_VALUE && c->key == key)
      return c->value;
  return NULL;
}

weft_chan *weft_ctx_done(weft_ctx *c)
{
  struct weft_ctx *k = c ? c->canceller : NULL;
  if (!k)
    return NULL;
  spin_lock(&k->lock);
  if (!k->done && (k->done = weft_chan_new(1, 0)) &&
      atomic_load_explicit(&k->err, memory_order_relaxed))
    weft_chan_close(k->done);
  weft_chan *done = k->done;
  spin_unlock(&k->lock);
  return done;
}

int weft_ctx_wait(weft_ctx *c, int64_t deadline)
{
  int err = weft_ctx_err(c);
  if (err)
    return err;
  weft_chan *done = weft_ctx_done(c);
  if (!done && c && c->canceller)
    return -ENOMEM;
  weft_select_case cs = {.ch = done, .dir = WEFT_SELECT_RECV};
  int rc = weft_select(&cs, 1, 0, deadline);
  return rc == 0 ? weft_ctx_err(c) : rc;
}

/* ---- after-func ---- */

struct weft_ctx_stop {
  struct listener l;
};

weft_ctx_stop *weft_ctx_after_func(weft_ctx *c, void (*fn)(void *arg), void *arg)
{
  struct weft_ctx *k = c ? c->canceller : NULL;
  if (!k || !fn)
    return NULL;
  struct weft_ctx_stop *stop = calloc(1, sizeof *stop);
  if (!stop)
    return NULL;
  struct listener *l = &stop->l;
  l->fn = fn;
  l->arg = arg;
  l->ctx = weft_ctx_retain(k);
  atomic_init(&l->refs, 2);
  spin_lock(&k->lock);
  bool done = atomic_load_explicit(&k->err, memory_order_relaxed) != 0;
  if (!done) {
    l->next = k->listeners;
    if (k->listeners)
      k->listeners->prev = l;
    k->listeners = l;
    l->registered = true;
  }
  spin_unlock(&k->lock);
  if (done)
    run_listener(l);
  return stop;
}

int weft_ctx_stop_func(weft_ctx_stop *stop)
{
  if (!stop)
    return 0;
  struct listener *l = &stop->l;
  struct weft_ctx *k = l->ctx;
  int prevented = 0;
  spin_lock(&k->lock);
  if (l->registered) {
    if (l->prev)
      l->prev->next = l->next;
    else
      k->listeners = l->next;
    if (l->next)
      l->next->prev = l->prev;
    l->registered = false;
    prevented = 1;
  }
  spin_unlock(&k->lock);
  if (prevented)
    listener_unref(l); /* the registration's */
  listener_unref(l);   /* the handle's */
  return prevented;
}

/* ---- hooks for blocking calls (ctx_hook.h) ---- */

bool weft__ctx_can_be_done(const weft_ctx *c)
{
  return c && c->canceller;
}

int weft__ctx_hook_add(weft_ctx *c, struct ctx_hook *h)
{
  struct weft_ctx *k = c ? c->canceller : NULL;
  atomic_init(&h->state, HOOK_IDLE);
  h->node = k;
  if (!k)
    return 0;
  spin_lock(&k->lock);
  int err = atomic_load_explicit(&k->err, memory_order_relaxed);
  if (!err) {
    h->prev = NULL;
    h->next = k->hooks;
    if (k->hooks)
      k->hooks->prev = h;
    k->hooks = h;
    atomic_store_explicit(&h->state, HOOK_ARMED, memory_order_relaxed);
  }
  spin_unlock(&k->lock);
  return err;
}

void weft__ctx_hook_remove(struct ctx_hook *h)
{
  struct weft_ctx *k = h->node;
  if (!k || atomic_load_explicit(&h->state, memory_order_acquire) == HOOK_IDLE)
    return;
  spin_lock(&k->lock);
  if (atomic_load_explicit(&h->state, memory_order_relaxed) == HOOK_ARMED) {
    if (h->prev)
      h->prev->next = h->next;
    else
      k->hooks = h->next;
    if (h->next)
      h->next->prev = h->prev;
    atomic_store_explicit(&h->state, HOOK_IDLE, memory_order_relaxed);
  }
  spin_unlock(&k->lock);
  while (atomic_load_explicit(&h->state, memory_order_acquire) == HOOK_FIRING)
    sched_yield();
}
