/* http_client_pool.c: the HTTP client's per-host connection pool (invariants and the
 * argument for the connection cap in http_client_pool.h).
 *
 * Lock: p->mu (a weft_mutex: short critical sections, no parking and no I/O inside, so
 * connections are closed after it is released). It is a leaf: nothing else is locked
 * while it is held. The per-host semaphore is waited on without it.
 *
 * The design that lost: a token per open connection (idle ones included). A request
 * waiting for a token would then not wake when another request returns its connection
 * to the idle list, since the token stays with the idle connection; it would need a
 * second wake-up path next to the semaphore. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "net/http_client_pool.h"
#include "weft/ctx.h"
#include "weft/runtime.h"

#define FIRST_BUCKETS 16
#define SWEEP_EVERY   ((int64_t)1000000000)

struct pool_host {
  struct pool_host *next;       /* bucket chain; guarded by mu */
  uint64_t hash;                /* of key; fixed */
  char *key;                    /* fixed */
  weft_sem *sem;                /* max_conns tokens; fixed */
  struct weft__pool_conn *idle; /* newest first; guarded by mu */
  int nidle;                    /* guarded by mu */
  int refs;                     /* requests between enter and leave; guarded by mu */
};

static uint64_t hash_key(const char *s)
{
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

int weft__pool_init(struct weft__pool *p, int max_conns, int max_idle, int64_t idle_timeout)
{
  memset(p, 0, sizeof *p);
  weft_mutex_init(&p->mu);
  p->table = calloc(FIRST_BUCKETS, sizeof *p->table);
  if (!p->table)
    return -ENOMEM;
  p->nbuckets = FIRST_BUCKETS;
  p->max_conns = max_conns;
  p->max_idle = max_idle;
  p->idle_timeout = idle_timeout;
  return 0;
}

struct weft__pool_conn *weft__pool_conn_new(weft_conn *c)
{
  struct weft__pool_conn *pc = malloc(sizeof *pc);
  if (!pc) {
    weft_conn_close(c);
    return NULL;
  }
  pc->next = NULL;
  pc->c = c;
  pc->since = 0;
  return pc;
}

void weft__pool_conn_close(struct weft__pool_conn *pc)
{
  if (!pc)
    return;
  weft_conn_close(pc->c);
  free(pc);
}

/* Close a list of idle connections (after mu is released). */
static void close_list(struct weft__pool_conn *pc)
{
  while (pc) {
    struct weft__pool_conn *next = pc->next;
    weft__pool_conn_close(pc);
    pc = next;
  }
}

static void host_free(struct pool_host *h)
{
  weft_sem_free(h->sem);
  free(h->key);
  free(h);
}

void weft__pool_destroy(struct weft__pool *p)
{
  for (size_t i = 0; i < p->nbuckets; i++) {
    for (struct pool_host *h = p->table[i], *next; h; h = next) {
      next = h->next;
      close_list(h->idle);
      host_free(h);
    }
  }
  free(p->table);
  p->table = NULL;
}

/* Double the table once it holds twice as many hosts as buckets. Under mu. */
static void grow_locked(struct weft__pool *p)
{
  size_t n = p->nbuckets * 2;
  struct pool_host **t = calloc(n, sizeof *t);
  if (!t)
    return; /* longer chains: still correct */
  for (size_t i = 0; i < p->nbuckets; i++) {
    for (struct pool_host *h = p->table[i], *next; h; h = next) {
      next = h->next;
      h->next = t[h->hash & (n - 1)];
      t[h->hash & (n - 1)] = h;
    }
  }
  free(p->table);
  p->table = t;
  p->nbuckets = n;
}

static struct pool_host *find_locked(struct weft__pool *p, const char *key, uint64_t hash)
{
  for (struct pool_host *h = p->table[hash & (p->nbuckets - 1)]; h; h = h->next)
    if (h->hash == hash && strcmp(h->key, key) == 0)
      return h;
  return NULL;
}

static struct pool_host *host_new(struct weft__pool *p, const char *key, uint64_t hash)
{
  struct pool_host *h = calloc(1, sizeof *h);
  if (!h)
    return NULL;
  h->hash = hash;
  h->key = strdup(key);
  h->sem = weft_sem_new(p->max_conns);
  if (!h->key || !h->sem) {
    host_free(h);
    return NULL;
  }
  return h;
}

static void unlink_locked(struct weft__pool *p, struct pool_host *h)
{
  struct pool_host **pp = &p->table[h->hash & (p->nbuckets - 1)];
  while (*pp != h)
    pp = &(*pp)->next;
  *pp = h->next;
  p->nhosts--;
}

/* Cut the idle connections of h older than the timeout off its list; returns them. */
static struct weft__pool_conn *expire_locked(struct weft__pool *p, struct pool_host *h,
                                             int64_t now)
{
  struct weft__pool_conn **pp = &h->idle;
  while (*pp && now - (*pp)->since < p->idle_timeout)
    pp = &(*pp)->next;
  struct weft__pool_conn *old = *pp;
  *pp = NULL;
  for (struct weft__pool_conn *ic = old; ic; ic = ic->next)
    h->nidle--;
  return old;
}

/* Expire idle connections everywhere and drop unused hosts; returns what to close. */
static struct weft__pool_conn *sweep_locked(struct weft__pool *p, int64_t now)
{
  struct weft__pool_conn *dead = NULL;
  p->last_sweep = now;
  for (size_t i = 0; i < p->nbuckets; i++) {
    for (struct pool_host *h = p->table[i], *next; h; h = next) {
      next = h->next;
      struct weft__pool_conn *old = expire_locked(p, h, now);
      while (old) {
        struct weft__pool_conn *n = old->next;
        old->next = dead;
        dead = old;
        old = n;
      }
      if (h->refs == 0 && h->nidle == 0) {
        unlink_locked(p, h);
        host_free(h);
      }
    }
  }
  return dead;
}

/* Find or add the entry for key and take a reference to it. */
static int host_ref(struct weft__pool *p, const char *key, struct pool_host **out)
{
  uint64_t hash = hash_key(key);
  int64_t now = weft_now();
  struct weft__pool_conn *dead = NULL;
  weft_mutex_lock(&p->mu);
  if (now - p->last_sweep >= SWEEP_EVERY)
    dead = sweep_locked(p, now);
  struct pool_host *h = find_locked(p, key, hash);
  if (!h && (h = host_new(p, key, hash)) != NULL) {
    h->next = p->table[hash & (p->nbuckets - 1)];
    p->table[hash & (p->nbuckets - 1)] = h;
    if (++p->nhosts > 2 * p->nbuckets)
      grow_locked(p);
  }
  if (h)
    h->refs++;
  weft_mutex_unlock(&p->mu);
  close_list(dead);
  *out = h;
  return h ? 0 : -ENOMEM;
}

static void host_unref(struct weft__pool *p, struct pool_host *h)
{
  weft_mutex_lock(&p->mu);
  bool unused = --h->refs == 0 && h->nidle == 0;
  if (unused)
    unlink_locked(p, h);
  weft_mutex_unlock(&p->mu);
  if (unused)
    host_free(h);
}

/* Take a token: at once when one is free, else parking under ctx and deadline (a child
 * context carries the deadline, since the semaphore's context wait has none). */
static int take_token(struct pool_host *h, weft_ctx *ctx, int64_t deadline)
{
  int err = weft_ctx_err(ctx);
  if (err)
    return err;
  if (weft_sem_try_acquire(h->sem, 1) == 0)
    return 0;
  if (deadline == WEFT_NO_DEADLINE)
    return weft_sem_acquire_ctx(h->sem, 1, ctx);
  weft_ctx *wait = weft_ctx_with_deadline(ctx, deadline);
  if (!wait)
    return -ENOMEM;
  err = weft_sem_acquire_ctx(h->sem, 1, wait);
  weft_ctx_release(wait);
  return err;
}

int weft__pool_enter(struct weft__pool *p, const char *key, weft_ctx *ctx, int64_t deadline,
                     struct pool_host **out)
{
  struct pool_host *h;
  int err = host_ref(p, key, &h);
  if (err)
    return err;
  err = take_token(h, ctx, deadline);
  if (err) {
    host_unref(p, h);
    return err;
  }
  *out = h;
  return 0;
}

/* Whether an idle connection still looks usable: the peer has not closed it and, on a
 * plain connection, sent nothing unasked (TLS may carry records such as session
 * tickets, which its layer consumes). Never parks. */
static bool still_open(weft_conn *c)
{
  char b;
  ssize_t n = recv(weft_conn_fd(c), &b, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0)
    return errno == EAGAIN || errno == EWOULDBLOCK;
  return n > 0 && weft_conn_is_tls(c);
}

/* Whether pc may be handed out without looking (weft__pool_take's rule). */
static bool is_trusted(const struct weft__pool_conn *pc, int flags, int64_t now)
{
  return (flags & WEFT__POOL_RETRYABLE) && now - pc->since < WEFT__POOL_TRUST_IDLE;
}

struct weft__pool_conn *weft__pool_take(struct weft__pool *p, struct pool_host *h, int flags)
{
  for (;;) {
    int64_t now = weft_now();
    weft_mutex_lock(&p->mu);
    /* The list is newest first: when its head is too old, so is every one behind it.
     * Otherwise the head is taken and older ones past the timeout are left to the sweep
     * (host_ref, every SWEEP_EVERY): walking the list here touched every idle
     * connection, a cache miss each, on every request. */
    struct weft__pool_conn *pc = h->idle, *dead = NULL;
    if (pc && now - pc->since >= p->idle_timeout) {
      dead = pc;
      pc = NULL;
      h->idle = NULL;
      h->nidle = 0;
    } else if (pc) {
      h->idle = pc->next;
      h->nidle--;
    }
    weft_mutex_unlock(&p->mu);
    close_list(dead);
    if (!pc)
      return NULL;
    pc->next = NULL;
    if (is_trusted(pc, flags, now) || still_open(pc->c))
      return pc;
    weft__pool_conn_close(pc);
  }
}

/* Put pc on h's idle list (newest first), dropping the oldest beyond max_idle. */
static void put_idle(struct weft__pool *p, struct pool_host *h, struct weft__pool_conn *pc)
{
  struct weft__pool_conn *drop = NULL;
  pc->since = weft_now();
  weft_mutex_lock(&p->mu);
  pc->next = h->idle;
  h->idle = pc;
  if (++h->nidle > p->max_idle) {
    struct weft__pool_conn **pp = &h->idle;
    while ((*pp)->next)
      pp = &(*pp)->next;
    drop = *pp;
    *pp = NULL;
    h->nidle--;
  }
  weft_mutex_unlock(&p->mu);
  close_list(drop);
}

void weft__pool_leave(struct weft__pool *p, struct pool_host *h, struct weft__pool_conn *pc)
{
  if (pc)
    put_idle(p, h, pc); /* before the token goes back: see http_client_pool.h */
  weft_sem_release(h->sem, 1);
  host_unref(p, h);
}

int weft__pool_idle_count(struct weft__pool *p, const char *key)
{
  weft_mutex_lock(&p->mu);
  struct pool_host *h = find_locked(p, key, hash_key(key));
  int n = h ? h->nidle : 0;
  weft_mutex_unlock(&p->mu);
  return n;
}
