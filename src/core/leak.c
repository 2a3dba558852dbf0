/* leak.c: weft_leak_verify and weft_leak_snapshot, the leak check for tests (in the
 * spirit of uber-go/goleak).
 *
 * A verify takes a snapshot of the registries (dump.h) leaving out the caller and the
 * ignored set, drops the coroutines that a name filter ignores, and counts coroutines
 * spawned but not yet started (alive, yet in no registry). Anything left is a leak unless
 * a later look, after a doubling sleep, finds it gone: a coroutine that has signalled its
 * wait group is still alive for a moment, on its way out. The ignored set and the options
 * are only read. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/dump.h"
#include "core/sched.h"
#include "weft/debug.h"
#include "weft/runtime.h"

#define DEFAULT_RETRIES   20
#define DEFAULT_MAX_SLEEP (100 * (int64_t)1000000)

struct weft_leak_set {
  long n;
  uint64_t ids[]; /* sorted */
};

static int cmp_id(const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

weft_leak_set *weft_leak_snapshot(void)
{
  struct weft__dump_snap s;
  if (weft__dump_snapshot(&s, 0, NULL, NULL, 0))
    return NULL;
  weft_leak_set *set = malloc(sizeof *set + sizeof(uint64_t) * (size_t)s.n);
  if (set) {
    set->n = s.n;
    for (long i = 0; i < s.n; i++)
      set->ids[i] = s.e[i].id;
    qsort(set->ids, (size_t)set->n, sizeof set->ids[0], cmp_id);
  }
  weft__dump_snap_free(&s);
  return set;
}

void weft_leak_set_free(weft_leak_set *set)
{
  free(set);
}

struct verify {
  const weft_leak_options *o;
  uint64_t self; /* the caller's id, 0 outside a coroutine */
  long excluded; /* registered but left out by filter_out */
};

/* Snapshot filter, under a registry lock: leave out the caller and the ignored set. */
static bool keep(const struct coro *c, void *arg)
{
  struct verify *v = arg;
  const weft_leak_set *set = v->o->ignore_set;
  if ((v->self && c->id == v->self) ||
      (set && bsearch(&c->id, set->ids, (size_t)set->n, sizeof set->ids[0], cmp_id))) {
    v->excluded++;
    return false;
  }
  return true;
}

static bool in_list(const char *const *list, const char *name)
{
  for (; list && *list && name; list++)
    if (strcmp(*list, name) == 0)
      return true;
  return false;
}

static bool ignored(const weft_leak_options *o, struct weft__sym *sym,
                    const struct weft__dump_entry *e)
{
  if (o->ignore_creator && (in_list(o->ignore_creator, weft__dump_creator(sym, e)) ||
                            in_list(o->ignore_creator, e->func)))
    return true;
  if (o->ignore_top && in_list(o->ignore_top, weft__dump_top_func(sym, e)))
    return true;
  for (int i = 0; o->ignore_any && i < e->npcs; i++) {
    struct weft__frame f;
    weft__sym_lookup(sym, e->pcs[i], true, &f);
    if (in_list(o->ignore_any, f.func))
      return true;
  }
  return false;
}

/* One look: fills s with the leaked coroutines (ignored ones removed; stacks included, so
 * a failure can be reported from the same look) and returns how many more are alive but
 * not started, or a negative errno. */
static long look(const weft_leak_options *o, struct weft__dump_snap *s, uintptr_t skip_pc)
{
  struct coro *self = weft__current();
  struct verify v = {.o = o, .self = self ? self->id : 0};
  bool names = o->ignore_top || o->ignore_any || o->ignore_creator;
  int err = weft__dump_snapshot(s, WEFT__SNAP_STACKS, keep, &v, skip_pc);
  if (err)
    return err;
  long registered = s->n + v.excluded, kept = 0;
  struct weft__sym *sym = names && s->n ? weft__sym_open(s) : NULL;
  for (long i = 0; i < s->n; i++)
    if (!names || !ignored(o, sym, &s->e[i]))
      s->e[kept++] = s->e[i];
  s->n = kept;
  weft__sym_close(sym);
  return s->live > registered ? s->live - registered : 0;
}

static void report(FILE *out, struct weft__sym *sym, const struct weft__dump_snap *s,
                   long unstarted)
{
  long total = s->n + unstarted;
  fprintf(out, "weft: %ld leaked coroutine%s:\n\n", total, total == 1 ? "" : "s");
  for (long i = 0; i < s->n; i++) {
    weft__dump_write_entry(out, sym, &s->e[i], s->now);
    fputc('\n', out);
  }
  if (unstarted > 0)
    fprintf(out, "and %ld spawned that never started\n", unstarted);
  fflush(out);
}

int weft_leak_verify(const weft_leak_options *opts)
{
  weft_leak_options o = opts ? *opts : (weft_leak_options){0};
  uintptr_t caller = (uintptr_t)__builtin_return_address(0);
  int retries = o.max_retries > 0 ? o.max_retries : DEFAULT_RETRIES;
  int64_t cap = o.max_sleep_ns > 0 ? o.max_sleep_ns : DEFAULT_MAX_SLEEP, sleep = 1000;
  struct weft__dump_snap s = {0};
  int rc = 0;
  if (!weft__sched.workers)
    return -EPERM;
  for (int attempt = 0;; attempt++) {
    weft__dump_snap_free(&s);
    long unstarted = look(&o, &s, caller);
    if (unstarted < 0) {
      rc = (int)unstarted;
      break;
    }
    if (s.n == 0 && unstarted == 0)
      break;
    if (attempt == retries) {
      struct weft__sym *sym = weft__sym_open(&s);
      report(o.out ? o.out : stderr, sym, &s, unstarted);
      weft__sym_close(sym);
      rc = -EBUSY;
      break;
    }
    weft_sleep(sleep);
    sleep = sleep * 2 < cap ? sleep * 2 : cap;
  }
  weft__dump_snap_free(&s);
  return rc;
}
