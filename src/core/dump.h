/* dump.h: coroutine snapshots with backtraces, shared by dump.c, leak.c and the watchdog
 * (src/obs/watchdog.c).
 *
 * A snapshot copies, for each coroutine in the registries (every coroutine that has
 * started and not returned), what a dump shows: id, name, state, wait reason and since
 * when, creation site and, when asked, the program counters of its stack. Stacks are read
 * only while the coroutine cannot run (dump.c explains the pin protocol). Symbolizing the
 * counters is separate (backtrace.c) and runs with no lock held. */
#ifndef WEFT_CORE_DUMP_H
#define WEFT_CORE_DUMP_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "core/core.h"

#define WEFT__BT_MAX 48 /* frames kept per coroutine */

/* npcs values that say why there is no stack. */
#define WEFT__BT_NONE          0  /* not asked for, or the walk found nothing */
#define WEFT__BT_OTHER_THREAD  -1 /* running on another thread: stack unavailable */
#define WEFT__BT_UNSUPPORTED   -2 /* built without libunwind */
#define WEFT__BT_NO_MEMBARRIER -3 /* cannot stop it from running while unwinding */

struct weft__dump_entry {
  uint64_t id;
  char name[CORO_NAME_MAX];
  int state;          /* enum coro_state at the time of the copy */
  const char *reason; /* wait reason (static string) when PARKED, else NULL */
  int64_t since;      /* monotonic ns the wait began; 0 if unknown */
  const char *file;   /* creation site (static strings) */
  int line;
  const char *func;     /* name given to weft_go_at (the spawned function's, by weft_go) */
  uintptr_t creator_pc; /* return address in the creator; 0 if unknown */
  bool self;            /* the coroutine that took the snapshot */
  int npcs;             /* frames in pcs, or one of WEFT__BT_* (<= 0) */
  uintptr_t pcs[WEFT__BT_MAX]; /* pcs[0] is exact for self, else return addresses */
};

struct weft__dump_snap {
  struct weft__dump_entry *e; /* n entries, malloc'd */
  long n;
  long live;   /* weft_coroutine_count() when the snapshot began */
  int64_t now; /* monotonic ns of the snapshot */
};

/* Which coroutines to copy: called under a registry lock with the record; must not block
 * or take locks. NULL: all. */
typedef bool (*weft__dump_filter)(const struct coro *c, void *arg);

#define WEFT__SNAP_STACKS 1u /* unwind stacks (else npcs = WEFT__BT_NONE) */

/* weft__dump_snapshot: copy every registered coroutine that filter accepts. skip_pc: for
 * the calling coroutine's own stack, frames above the one returning to skip_pc are left
 * out (0: keep all). Returns 0 or -ENOMEM, -EPERM if the runtime is not running. Any
 * thread; never parks; holds each registry lock in turn. */
int weft__dump_snapshot(struct weft__dump_snap *s, unsigned flags, weft__dump_filter filter,
                        void *arg, uintptr_t skip_pc);
void weft__dump_snap_free(struct weft__dump_snap *s);

/* ---- backtrace.c ---- */

/* Unwind a saved context (the coroutine must not run meanwhile) or the current one.
 * Return the frames written, or a WEFT__BT_* value. */
int weft__bt_saved(const struct ctx *ctx, uintptr_t *pcs, int max);
int weft__bt_self(uintptr_t *pcs, int max, uintptr_t skip_pc);
/* The target of the direct call returning to ret, or 0. Reads code; any thread. */
uintptr_t weft__bt_call_target(uintptr_t ret);

/* A symbol table for the running process; one user at a time. */
struct weft__sym;
struct weft__frame {
  const char *func; /* "?" if unknown */
  uintptr_t off;    /* pc - function start */
  const char *file; /* NULL if unknown */
  int line;
};
/* weft__sym_open: load the process's symbols and resolve every pc of snap (may be NULL)
 * on a helper thread (libdw needs a deep stack); the caller's thread waits, never parks.
 * From a coroutine, later lookups of other pcs give "?". NULL if out of memory (lookups
 * accept NULL and give "?"). */
struct weft__sym *weft__sym_open(const struct weft__dump_snap *snap);
/* Look up pc; ret_addr: pc is a return address (the call is at pc - 1). Strings live
 * until weft__sym_close. */
void weft__sym_lookup(struct weft__sym *s, uintptr_t pc, bool ret_addr, struct weft__frame *f);
void weft__sym_close(struct weft__sym *s);

/* ---- dump.c: writers ---- */

/* One coroutine in the full form (pprof debug=2), frames included. */
void weft__dump_write_entry(FILE *out, struct weft__sym *sym, const struct weft__dump_entry *e,
                            int64_t now);
/* The name of the top function outside weft (see weft_leak_options.ignore_top), or NULL. */
const char *weft__dump_top_func(struct weft__sym *sym, const struct weft__dump_entry *e);
/* The creator's function name: symbolized creator_pc, else the record's func. */
const char *weft__dump_creator(struct weft__sym *sym, const struct weft__dump_entry *e);

#endif
