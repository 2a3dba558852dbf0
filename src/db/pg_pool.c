/* pg_pool.c: a pool of PostgreSQL connections (weft/pg.h).
 *
 * The bound is a semaphore: `slots` holds max_conns tokens and every holder of a
 * connection (or a caller opening one for itself) holds one. Acquire takes a token first,
 * parking FIFO with the caller's context (weft_sem_acquire_ctx), then pops an idle
 * connection or, when none is idle, opens a new one outside the lock. Release pushes the
 * connection back (or closes it when broken) and then returns the token, which lets the
 * oldest parked acquirer in.
 *
 * Invariants (mu held): idle connections + connections held + callers opening one <=
 * max_conns, because a connection is opened only by a token holder that found the idle
 * stack empty, and each token covers one held or opening connection; nidle <= max_conns
 * (the idle array is that large); once closing is set nothing is handed out (an acquirer
 * that got its token sees it under mu and gives the token back with -EPIPE).
 *
 * Free: sets closing, then takes all max_conns tokens at once, which it gets only when
 * every connection has been released; the idle ones are then all the open ones.
 *
 * Locks: mu (a weft_mutex) guards idle, nidle and closing, and is held only for a few
 * loads and stores: connections are opened and closed, and tokens released, after it is
 * dropped. It is below nothing and takes nothing (see docs/internals/lock-order.md); the
 * semaphore's own lock is never taken while mu is held.
 *
 * The design that lost: a weft_cond on mu for "a connection was released". A cond wait
 * cannot be cut short by a context, and the FIFO order of the semaphore keeps an acquirer
 * from being overtaken forever by newcomers. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "weft/ctx.h"
#include "weft/error.h"
#include "weft/pg.h"
#include "weft/runtime.h"
#include "weft/sync.h"

#define DEFAULT_MAX_CONNS       4
#define DEFAULT_CONNECT_TIMEOUT ((int64_t)5 * 1000000000)

struct weft_pg_pool {
  char *conninfo;          /* immutable; owned */
  int max_conns;           /* immutable */
  int64_t connect_timeout; /* immutable; ns per connection attempt */
  weft_sem *slots;         /* max_conns tokens, one per held or opening connection; owned */
  weft_mutex mu;           /* guards idle, nidle, closing */
  weft_pg **idle;          /* stack of max_conns entries, nidle used; guarded by mu */
  int nidle;               /* guarded by mu */
  bool closing;            /* guarded by mu; set once by weft_pg_pool_free */
};

/* Open a new connection within the pool's per-attempt timeout. */
static int open_conn(weft_pg_pool *p, weft_ctx *ctx, weft_pg **out, char *err, size_t errlen)
{
  return weft_pg_connect(p->conninfo, ctx, weft_now() + p->connect_timeout, out, err, errlen);
}

static void pool_destroy(weft_pg_pool *p)
{
  weft_sem_free(p->slots);
  free(p->idle);
  free(p->conninfo);
  free(p);
}

static weft_pg_pool *pool_alloc(const weft_pg_pool_options *o)
{
  weft_pg_pool *p = calloc(1, sizeof *p);
  if (!p)
    return NULL;
  p->max_conns = o->max_conns > 0 ? o->max_conns : DEFAULT_MAX_CONNS;
  p->connect_timeout = o->connect_timeout > 0 ? o->connect_timeout : DEFAULT_CONNECT_TIMEOUT;
  weft_mutex_init(&p->mu);
  p->conninfo = strdup(o->conninfo);
  p->idle = calloc((size_t)p->max_conns, sizeof *p->idle);
  p->slots = weft_sem_new(p->max_conns);
  if (!p->conninfo || !p->idle || !p->slots) {
    pool_destroy(p);
    return NULL;
  }
  return p;
}

int weft_pg_pool_new(const weft_pg_pool_options *o, weft_pg_pool **out, char *err,
                     size_t errlen)
{
  if (err && errlen > 0)
    err[0] = '\0';
  if (!o || !o->conninfo || !out || o->max_conns < 0)
    return -EINVAL;
  *out = NULL;
  weft_pg_pool *p = pool_alloc(o);
  if (!p)
    return -ENOMEM;
  weft_pg *first = NULL;
  int rc = open_conn(p, NULL, &first, err, errlen);
  if (rc != 0) {
    pool_destroy(p);
    return rc == -ENOMEM ? rc : -WEFT_EDBCONN; /* a timeout is a failure to connect too */
  }
  p->idle[p->nidle++] = first; /* not shared yet: no lock needed */
  *out = p;
  return 0;
}

/* Under mu: NULL and -EPIPE when closing, else an idle connection or NULL and 0. */
static int take_idle(weft_pg_pool *p, weft_pg **c)
{
  weft_mutex_lock(&p->mu);
  int rc = p->closing ? -EPIPE : 0;
  *c = rc == 0 && p->nidle > 0 ? p->idle[--p->nidle] : NULL;
  weft_mutex_unlock(&p->mu);
  return rc;
}

int weft_pg_pool_acquire(weft_pg_pool *p, weft_ctx *ctx, weft_pg **out)
{
  if (!out)
    return -EINVAL;
  *out = NULL;
  if (!p)
    return -EINVAL;
  int rc = weft_sem_acquire_ctx(p->slots, 1, ctx);
  if (rc != 0)
    return rc;
  weft_pg *c = NULL;
  rc = take_idle(p, &c);
  if (rc == 0 && !c) {
    rc = open_conn(p, ctx, &c, NULL, 0);
    if (rc == -ETIMEDOUT && weft_ctx_err(ctx) == 0)
      rc = -WEFT_EDBCONN; /* the pool's connect timeout, not the caller's context */
  }
  if (rc != 0) {
    weft_sem_release(p->slots, 1);
    return rc;
  }
  *out = c;
  return 0;
}

void weft_pg_pool_release(weft_pg_pool *p, weft_pg *c)
{
  if (!p || !c)
    return;
  if (weft_pg_broken(c)) {
    weft_pg_close(c); /* the next acquirer opens a fresh one in its place */
  } else {
    weft_mutex_lock(&p->mu);
    p->idle[p->nidle++] = c; /* room: see the invariants at the top */
    weft_mutex_unlock(&p->mu);
  }
  weft_sem_release(p->slots, 1); /* after mu is dropped: it may wake an acquirer */
}

int weft_pg_pool_exec(weft_pg_pool *p, weft_ctx *ctx, int64_t deadline, const char *sql,
                      int nparams, const char *const *values, PGresult **out)
{
  if (!out)
    return -EINVAL;
  *out = NULL;
  weft_pg *c = NULL;
  int rc = weft_pg_pool_acquire(p, ctx, &c);
  if (rc != 0)
    return rc;
  rc = weft_pg_exec(c, ctx, deadline, sql, nparams, values, out);
  weft_pg_pool_release(p, c);
  return rc;
}

void weft_pg_pool_free(weft_pg_pool *p)
{
  if (!p)
    return;
  weft_mutex_lock(&p->mu);
  p->closing = true;
  weft_mutex_unlock(&p->mu);
  /* Every token back means every connection released: all open ones are idle now. */
  weft_sem_acquire(p->slots, p->max_conns, WEFT_NO_DEADLINE);
  for (int i = 0; i < p->nidle; i++)
    weft_pg_close(p->idle[i]);
  weft_sem_release(p->slots, p->max_conns);
  pool_destroy(p);
}
