/* weft/group.h: error groups, golang.org/x/sync/errgroup: run functions in coroutines,
 * wait for them all, keep the first error, and cancel the others through a context.
 *
 *   weft_group *g = weft_group_new(ctx);        // ctx: the caller's context, or NULL
 *   weft_group_go(g, fetch, &urls[0]);          // each gets weft_group_ctx(g)
 *   weft_group_go(g, fetch, &urls[1]);
 *   int err = weft_group_wait(g);               // 0, or the first error returned
 *   weft_group_free(g);
 *
 * Semantics (x/sync/errgroup):
 * - The group owns a context derived from the parent (weft_group_ctx). The first function
 *   that returns non-zero (a negative errno) cancels it with that error as its cause
 *   (weft_ctx_cause); weft_group_wait returning cancels it too (cause -ECANCELED when no
 *   function failed). Functions should watch it (weft_ctx_done, weft_ctx_err) and return
 *   early once it is done.
 * - The error kept is the first one *returned*, not the first one noticed.
 * - A limit (weft_group_set_limit) bounds how many functions run at once: weft_group_go
 *   parks while that many are active, taking its slot (FIFO) before the function is counted
 *   in the group; weft_group_try_go fails instead. No limit by default.
 * - A group with a NULL parent is valid: no limit, and its cancellation reaches nobody the
 *   caller can see.
 *
 * Ownership: weft_group_new returns a group owned by the caller, who frees it with
 * weft_group_free after weft_group_wait has returned. The group is not reference counted:
 * functions borrow it (and its context) only while they run. The context is borrowed
 * from the group: retain it (weft_ctx_retain) to keep it past weft_group_free.
 *
 * Misuse aborts with a message and a coroutine dump, as Go panics: changing the limit
 * while functions are active or waiting for a slot, freeing a group whose functions still
 * run. */
#ifndef WEFT_GROUP_H
#define WEFT_GROUP_H

#include "common.h"
#include "ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_group weft_group;

/* A function run by the group: ctx is the group's context (borrowed for the call); arg is
 * the caller's. Returns 0 or a negative errno; the first non-zero one is the group's. */
typedef int (*weft_group_fn)(weft_ctx *ctx, void *arg);

/* weft_group_new: a group whose context is a child of parent (NULL: background).
 * parent: borrowed; the group's context holds its own reference to it.
 * Returns a new group, or NULL when out of memory. Any thread; never parks. */
WEFT_API weft_group *weft_group_new(weft_ctx *parent);

/* weft_group_ctx: the group's context: cancelled by the first error and by wait.
 * Returns a borrowed reference, valid until weft_group_free. Any thread; never parks. */
WEFT_API weft_ctx *weft_group_ctx(weft_group *g);

/* weft_group_set_limit: allow at most n functions to be active at once; n < 0: no limit,
 * n == 0: weft_group_go parks forever (and try_go always fails). Must not race with go,
 * try_go or wait on the same group. Changing the limit while any function is active (or
 * a go waits for a slot) is a misuse: weft aborts with a message and a dump. Returns 0 or
 * -ENOMEM (the old limit then stays). Any thread; never parks. */
WEFT_API int weft_group_set_limit(weft_group *g, long n);

/* weft_group_go: run fn(weft_group_ctx(g), arg) in a new coroutine (named "group fn").
 * At the limit, parks until a slot frees (FIFO; wait reason "semaphore"), like Go's
 * errgroup.Go; with limit 0 it parks forever. fn must not be NULL; arg is passed through
 * untouched (the group owns nothing of it).
 * Returns 0 once fn is started, -EINVAL if fn is NULL, -ENOMEM or -EPERM (runtime not
 * running) if the coroutine could not be spawned: fn is then never run and the group is
 * unchanged. Coroutine, may park; does not honour the group's context (as in Go). */
WEFT_API int weft_group_go(weft_group *g, weft_group_fn fn, void *arg);

/* weft_group_go_until: weft_group_go that waits for a slot only until deadline
 * (weft_now() ns; WEFT_NO_DEADLINE: as weft_group_go). Returns what weft_group_go returns,
 * or -ETIMEDOUT when no slot freed by the deadline (fn not run). Coroutine, may park. */
WEFT_API int weft_group_go_until(weft_group *g, weft_group_fn fn, void *arg, int64_t deadline);

/* weft_group_try_go: weft_group_go only if a slot is free now and nobody waits for one.
 * Returns 0 once fn is started, -EAGAIN at the limit (fn not run), or go's errors.
 * Any thread while the runtime runs; never parks. */
WEFT_API int weft_group_try_go(weft_group *g, weft_group_fn fn, void *arg);

/* weft_group_wait: park until every function started on g has returned, then cancel the
 * group's context (cause: the first error, else -ECANCELED). Functions may start others
 * while it waits; the first go must happen before wait. May be called again (returns the
 * same). Returns the first non-zero value a function returned, or 0.
 * Coroutine, may park (wait reason "wait group"); does not honour a context. */
WEFT_API int weft_group_wait(weft_group *g);

/* weft_group_free: free g (and release its context). Call after weft_group_wait returned;
 * a group with functions still running is a misuse (abort). NULL is ignored.
 * Any thread; never parks. */
WEFT_API void weft_group_free(weft_group *g);

#ifdef __cplusplus
}
#endif
#endif
