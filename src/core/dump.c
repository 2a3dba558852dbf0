/* dump.c: coroutine dumps: the one-line form (weft_dump, the deadlock and leak reports),
 * the full and grouped forms with backtraces (weft_dump_full, weft_dump_grouped, like
 * pprof's goroutine?debug=2 and debug=1), the SIGQUIT dump thread, fatal errors, and the
 * SIGSEGV handler that names a coroutine that overflowed into its guard page.
 *
 * A one-line dump reads
 *   coroutine 7 "fetcher" [io wait, 2.31s]: created at crawl.c:88 in fetch_one
 * Dumps take each registry's lock in turn and never park; they may run on any thread.
 *
 * Reading a stack that may start running (the pin protocol). A parked or runnable
 * coroutine's stack is stable only until a scheduler switches to it. The scheduler stores
 * RUNNABLE or PARKED only after the context is saved (after_switch, weft__ready), stores
 * RUNNING just before switching to it, and then waits while the coroutine's dump_pin is
 * set. A snapshot, holding the registry lock (so no record is freed under it):
 *   1. sets dump_pin on every coroutine it will unwind;
 *   2. issues membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED), a memory barrier on every
 *      thread of the process (Linux 4.14);
 *   3. reads each state: PARKED or RUNNABLE -> unwind the saved context (it cannot run
 *      now), RUNNING -> "running on other thread"; then clears that pin.
 * This is Dekker's protocol with the costly fence moved to the rare side: either the
 * scheduler's load of the pin follows the barrier and sees it, or its RUNNING store was
 * made visible by the barrier and the dump sees it. The switch costs a compiler barrier
 * and one load of a line it has just written. A scheduler that finds a pin spins for as
 * long as one coroutine's unwinding takes (microseconds); one membarrier is paid per
 * registry, not per coroutine.
 * Lost alternatives: a seq_cst fence (or an exchange) on every switch, to pay per switch
 * what the dump should pay; stopping the world, which would need a safe point in every
 * worker (weft has no preemption) and freeze the program for the whole dump; copying the
 * stack and validating afterwards, which needs a remote-unwinding address space and a
 * switch counter. Without membarrier (seccomp may forbid it) other coroutines' stacks are
 * left out (WEFT__BT_NO_MEMBARRIER). */
#include <errno.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/dump.h"
#include "core/sched.h"
#include "weft/debug.h"
#include "weft/runtime.h"

#define ALTSTACK_SIZE (64 * 1024)

static const char *state_name(const struct coro *c)
{
  const char *reason;
  switch (atomic_load_explicit(&c->state, memory_order_relaxed)) {
  case CORO_NEW:
    return "runnable, not started";
  case CORO_RUNNABLE:
    return "runnable";
  case CORO_RUNNING:
    return "running";
  case CORO_PARKED:
    reason = atomic_load_explicit(&c->wait_reason, memory_order_relaxed);
    return reason ? reason : "parked";
  default:
    return "dead";
  }
}

void weft__dump_coro(FILE *out, const struct coro *c, int64_t now)
{
  fprintf(out, "coroutine %llu", (unsigned long long)c->id);
  if (c->name[0])
    fprintf(out, " \"%s\"", c->name);
  fprintf(out, " [%s", state_name(c));
  int64_t since = atomic_load_explicit(&c->wait_since, memory_order_relaxed);
  if (atomic_load_explicit(&c->state, memory_order_relaxed) == CORO_PARKED && since)
    fprintf(out, ", %.2fs", (double)(now - since) / 1e9);
  fprintf(out, "]: created at %s:%d in %s\n", c->file ? c->file : "?", c->line,
          c->func ? c->func : "?");
}

static long dump_registry(FILE *out, struct registry *r, int64_t now)
{
  long n = 0;
  spin_lock(&r->lock);
  for (struct coro *c = r->head.reg_next; c != &r->head; c = c->reg_next, n++)
    weft__dump_coro(out, c, now);
  spin_unlock(&r->lock);
  return n;
}

long weft__dump_all(FILE *out)
{
  long n = 0;
  int64_t now = now_ns();
  if (!weft__sched.workers)
    return 0;
  for (int i = 0; i < weft__sched.nworkers; i++)
    n += dump_registry(out, &weft__sched.workers[i].reg, now);
  n += dump_registry(out, &weft__sched.foreign_reg, now);
  fflush(out);
  return n;
}

long weft_dump(FILE *out)
{
  return weft__dump_all(out ? out : stderr);
}

/* ---- snapshots (see the pin protocol at the top) ---- */

static pthread_once_t membarrier_once = PTHREAD_ONCE_INIT;
static bool membarrier_ok;

static void membarrier_register(void)
{
  membarrier_ok =
      syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0 &&
      syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0;
}

/* Every thread of the process executes a full memory barrier before this returns. */
static bool barrier_all_threads(void)
{
  pthread_once(&membarrier_once, membarrier_register);
  if (!membarrier_ok)
    return false;
  return syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0;
}

static void copy_record(struct weft__dump_entry *e, const struct coro *c)
{
  e->id = c->id;
  memcpy(e->name, c->name, sizeof e->name);
  e->name[sizeof e->name - 1] = '\0';
  e->file = c->file;
  e->line = c->line;
  e->func = c->func;
  e->creator_pc = (uintptr_t)c->creator_pc;
  e->npcs = WEFT__BT_NONE;
}

/* State and stack of the pinned coroutine c; clears the pin. */
static void read_pinned(struct weft__dump_entry *e, struct coro *c, bool stacks, bool barrier,
                        uintptr_t skip_pc)
{
  int st = atomic_load_explicit(&c->state, memory_order_acquire);
  e->state = st;
  e->reason =
      st == CORO_PARKED ? atomic_load_explicit(&c->wait_reason, memory_order_relaxed) : NULL;
  e->since = st == CORO_PARKED ? atomic_load_explicit(&c->wait_since, memory_order_relaxed) : 0;
  if (!stacks)
    return;
  if (e->self)
    e->npcs = weft__bt_self(e->pcs, WEFT__BT_MAX, skip_pc);
  else if (st == CORO_RUNNING)
    e->npcs = WEFT__BT_OTHER_THREAD;
  else if ((st == CORO_PARKED || st == CORO_RUNNABLE) && !barrier)
    e->npcs = WEFT__BT_NO_MEMBARRIER;
  else if (st == CORO_PARKED || st == CORO_RUNNABLE)
    e->npcs = weft__bt_saved(&c->ctx, e->pcs, WEFT__BT_MAX);
  atomic_store_explicit(&c->dump_pin, 0, memory_order_release);
}

/* Copy r's coroutines into s (room for cap entries in all); cs is scratch of cap. */
static void snap_registry(struct weft__dump_snap *s, long cap, struct coro **cs,
                          struct registry *r, unsigned flags, weft__dump_filter filter,
                          void *arg, uintptr_t skip_pc)
{
  struct coro *self = weft__current();
  bool stacks = flags & WEFT__SNAP_STACKS;
  long first = s->n;
  spin_lock(&r->lock);
  for (struct coro *c = r->head.reg_next; c != &r->head && s->n < cap; c = c->reg_next) {
    if (filter && !filter(c, arg))
      continue;
    struct weft__dump_entry *e = &s->e[s->n];
    copy_record(e, c);
    e->self = c == self;
    if (stacks && !e->self)
      atomic_store_explicit(&c->dump_pin, 1, memory_order_relaxed);
    cs[s->n++] = c;
  }
  bool barrier = stacks && s->n > first && barrier_all_threads();
  for (long i = first; i < s->n; i++)
    read_pinned(&s->e[i], cs[i], stacks, barrier, skip_pc);
  spin_unlock(&r->lock);
}

static long registry_count(struct registry *r)
{
  long n = 0;
  spin_lock(&r->lock);
  for (struct coro *c = r->head.reg_next; c != &r->head; c = c->reg_next)
    n++;
  spin_unlock(&r->lock);
  return n;
}

int weft__dump_snapshot(struct weft__dump_snap *s, unsigned flags, weft__dump_filter filter,
                        void *arg, uintptr_t skip_pc)
{
  struct scheduler *sch = &weft__sched;
  memset(s, 0, sizeof *s);
  if (!sch->workers)
    return -EPERM;
  s->now = now_ns();
  s->live = weft__live_coroutines();
  int nreg = sch->nworkers + 1;
  long cap = 0;
  for (int i = 0; i < nreg; i++) {
    struct registry *r = i < sch->nworkers ? &sch->workers[i].reg : &sch->foreign_reg;
    long n = registry_count(r);
    /* Room for what may start meanwhile; what does not fit is left out. */
    long room = cap + n + n / 4 + 16;
    struct weft__dump_entry *e = realloc(s->e, sizeof *e * (size_t)room);
    struct coro **cs = malloc(sizeof *cs * (size_t)room);
    if (!e || !cs) {
      free(cs);
      s->e = e ? e : s->e;
      weft__dump_snap_free(s);
      return -ENOMEM;
    }
    s->e = e;
    cap = room;
    snap_registry(s, cap, cs, r, flags, filter, arg, skip_pc);
    free(cs);
  }
  return 0;
}

void weft__dump_snap_free(struct weft__dump_snap *s)
{
  free(s->e);
  s->e = NULL;
  s->n = 0;
}

/* ---- writers ---- */

static const char *entry_state(const struct weft__dump_entry *e)
{
  switch (e->state) {
  case CORO_NEW:
    return "runnable, not started";
  case CORO_RUNNABLE:
    return "runnable";
  case CORO_RUNNING:
    return "running";
  case CORO_PARKED:
    return e->reason ? e->reason : "parked";
  default:
    return "dead";
  }
}

const char *weft__dump_creator(struct weft__sym *sym, const struct weft__dump_entry *e)
{
  struct weft__frame f = {.func = "?"};
  if (e->creator_pc)
    weft__sym_lookup(sym, e->creator_pc, true, &f);
  if (strcmp(f.func, "?") != 0)
    return f.func;
  return e->func ? e->func : "?";
}

static bool is_weft_name(const char *name)
{
  return strncmp(name, "weft_", 5) == 0;
}

static bool is_public_weft(const char *name)
{
  return is_weft_name(name) && name[5] != '_';
}

/* The first frame below weft's: below the first public weft_ frame and the weft_ frames
 * under it; or, where that frame is gone (a tail call inside it), the first frame that
 * is not weft's own and calls a public weft_ function directly. */
const char *weft__dump_top_func(struct weft__sym *sym, const struct weft__dump_entry *e)
{
  struct weft__frame f, callee;
  int i = 0;
  for (; i < e->npcs; i++) {
    weft__sym_lookup(sym, e->pcs[i], true, &f);
    if (is_public_weft(f.func))
      break;
    uintptr_t target = weft__bt_call_target(e->pcs[i]);
    if (i > 0 && target && !is_weft_name(f.func)) {
      weft__sym_lookup(sym, target, false, &callee);
      if (is_public_weft(callee.func))
        return f.func;
    }
  }
  if (i == e->npcs)
    i = 0; /* no weft call on the stack: its top is its own */
  for (; i < e->npcs; i++) {
    weft__sym_lookup(sym, e->pcs[i], true, &f);
    if (!is_weft_name(f.func))
      return f.func;
  }
  return NULL;
}

static void write_no_stack(FILE *out, int npcs, const char *prefix)
{
  switch (npcs) {
  case WEFT__BT_OTHER_THREAD:
    fprintf(out, "%scoroutine running on other thread; stack unavailable\n", prefix);
    break;
  case WEFT__BT_UNSUPPORTED:
    fprintf(out, "%sstack unavailable: weft was built without libunwind\n", prefix);
    break;
  case WEFT__BT_NO_MEMBARRIER:
    fprintf(out, "%sstack unavailable: membarrier(2) is not permitted\n", prefix);
    break;
  default:
    break;
  }
}

void weft__dump_write_entry(FILE *out, struct weft__sym *sym, const struct weft__dump_entry *e,
                            int64_t now)
{
  fprintf(out, "coroutine %llu", (unsigned long long)e->id);
  if (e->name[0])
    fprintf(out, " \"%s\"", e->name);
  fprintf(out, " [%s", entry_state(e));
  if (e->state == CORO_PARKED && e->since && now - e->since >= 60 * (int64_t)1000000000)
    fprintf(out, ", %lld minutes", (long long)((now - e->since) / (60 * (int64_t)1000000000)));
  fprintf(out, "]:\n");
  for (int i = 0; i < e->npcs; i++) {
    struct weft__frame f;
    weft__sym_lookup(sym, e->pcs[i], true, &f);
    if (f.file)
      fprintf(out, "%s(...)\n\t%s:%d +0x%lx\n", f.func, f.file, f.line, (unsigned long)f.off);
    else
      fprintf(out, "%s(...)\n\t%s+0x%lx\n", f.func, f.func, (unsigned long)f.off);
  }
  write_no_stack(out, e->npcs, "\t");
  fprintf(out, "created by %s at %s:%d\n", weft__dump_creator(sym, e), e->file ? e->file : "?",
          e->line);
}

long weft_dump_full(FILE *out)
{
  struct weft__dump_snap s;
  int err = weft__dump_snapshot(&s, WEFT__SNAP_STACKS, NULL, NULL,
                                (uintptr_t)__builtin_return_address(0));
  if (err)
    return err;
  out = out ? out : stderr;
  struct weft__sym *sym = weft__sym_open(&s);
  for (long i = 0; i < s.n; i++) {
    weft__dump_write_entry(out, sym, &s.e[i], s.now);
    fputc('\n', out);
  }
  fflush(out);
  weft__sym_close(sym);
  long n = s.n;
  weft__dump_snap_free(&s);
  return n;
}

/* Order by stack (frames, then length), so equal stacks are adjacent. */
static int cmp_stack(const void *a, const void *b)
{
  const struct weft__dump_entry *x = a, *y = b;
  if (x->npcs != y->npcs)
    return x->npcs < y->npcs ? -1 : 1;
  for (int i = 0; i < x->npcs; i++)
    if (x->pcs[i] != y->pcs[i])
      return x->pcs[i] < y->pcs[i] ? -1 : 1;
  return x->id < y->id ? -1 : x->id > y->id;
}

struct group {
  long first, count;
  uint64_t min_id;
};

static int cmp_group(const void *a, const void *b)
{
  const struct group *x = a, *y = b;
  if (x->count != y->count)
    return x->count > y->count ? -1 : 1;
  return x->min_id < y->min_id ? -1 : x->min_id > y->min_id;
}

static void write_group(FILE *out, struct weft__sym *sym, const struct weft__dump_entry *e,
                        long count)
{
  fprintf(out, "%ld @", count);
  for (int i = 0; i < e->npcs; i++)
    fprintf(out, " 0x%lx", (unsigned long)e->pcs[i]);
  fputc('\n', out);
  for (int i = 0; i < e->npcs; i++) {
    struct weft__frame f;
    weft__sym_lookup(sym, e->pcs[i], true, &f);
    fprintf(out, "#\t0x%lx\t%s+0x%lx", (unsigned long)e->pcs[i], f.func, (unsigned long)f.off);
    if (f.file)
      fprintf(out, "\t%s:%d", f.file, f.line);
    fputc('\n', out);
  }
  write_no_stack(out, e->npcs, "#\t");
  fputc('\n', out);
}

long weft_dump_grouped(FILE *out)
{
  struct weft__dump_snap s;
  int err = weft__dump_snapshot(&s, WEFT__SNAP_STACKS, NULL, NULL,
                                (uintptr_t)__builtin_return_address(0));
  if (err)
    return err;
  out = out ? out : stderr;
  qsort(s.e, (size_t)s.n, sizeof *s.e, cmp_stack);
  struct group *g = malloc(sizeof *g * (size_t)(s.n ? s.n : 1));
  if (!g) {
    weft__dump_snap_free(&s);
    return -ENOMEM;
  }
  long ng = 0;
  for (long i = 0; i < s.n; i++) {
    if (ng && s.e[i].npcs == s.e[g[ng - 1].first].npcs &&
        !memcmp(s.e[i].pcs, s.e[g[ng - 1].first].pcs,
                sizeof(uintptr_t) * (size_t)(s.e[i].npcs > 0 ? s.e[i].npcs : 0))) {
      g[ng - 1].count++;
      continue;
    }
    g[ng++] = (struct group){i, 1, s.e[i].id};
  }
  qsort(g, (size_t)ng, sizeof *g, cmp_group);
  struct weft__sym *sym = weft__sym_open(&s);
  fprintf(out, "coroutine profile: total %ld\n", s.n);
  for (long i = 0; i < ng; i++)
    write_group(out, sym, &s.e[g[i].first], g[i].count);
  fflush(out);
  weft__sym_close(sym);
  free(g);
  long n = s.n;
  weft__dump_snap_free(&s);
  return n;
}

/* ---- SIGQUIT ---- */

/* The handler posts quit.sem (async-signal-safe); quit.thread waits on it and writes the
 * dump, so nothing but sem_post runs in signal context and the dump needs no scheduler
 * thread to be free. quit.stop and the rest are written only before the thread starts
 * and after it is joined, by the thread running weft_main. */
static struct {
  sem_t sem;
  pthread_t thread;
  atomic_bool stop;
  bool running;
  struct sigaction saved;
} quit;

static void sigquit_handler(int signo)
{
  int saved_errno = errno;
  (void)signo;
  sem_post(&quit.sem);
  errno = saved_errno;
}

static void *sigquit_thread(void *arg)
{
  (void)arg;
  for (;;) {
    while (sem_wait(&quit.sem) != 0 && errno == EINTR) {
    }
    if (atomic_load(&quit.stop))
      return NULL;
    fprintf(stderr, "SIGQUIT: coroutine dump\n\n");
    weft_dump_full(stderr);
  }
}

void weft__sigquit_start(void)
{
  const char *env = getenv("WEFT_SIGQUIT");
  if (quit.running || (env && strcmp(env, "0") == 0))
    return;
  if (sem_init(&quit.sem, 0, 0) != 0)
    return;
  atomic_store(&quit.stop, false);
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old); /* the thread starts with every signal blocked */
  int err = pthread_create(&quit.thread, NULL, sigquit_thread, NULL);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (err) {
    sem_destroy(&quit.sem);
    return;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = sigquit_handler;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGQUIT, &sa, &quit.saved);
  quit.running = true;
}

void weft__sigquit_stop(void)
{
  if (!quit.running)
    return;
  sigaction(SIGQUIT, &quit.saved, NULL);
  atomic_store(&quit.stop, true);
  sem_post(&quit.sem);
  pthread_join(quit.thread, NULL);
  sem_destroy(&quit.sem);
  quit.running = false;
}

void weft__die(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  struct coro *c = weft__current();
  if (c) {
    fprintf(stderr, "\nin ");
    weft__dump_coro(stderr, c, now_ns());
  }
  fprintf(stderr, "\n");
  weft__dump_all(stderr);
  fflush(stderr);
  abort();
}

/* ---- stack overflow ---- */

static struct sigaction previous_segv;
static atomic_int handler_users;

static void overflow_handler(int sig, siginfo_t *info, void *uctx)
{
  struct worker *w = weft__this_worker();
  struct coro *c = w ? w->current : NULL;
  if (c && c->stack && weft__stack_guard_hit(c->stack, info->si_addr)) {
    char msg[512];
    int n = snprintf(msg, sizeof msg,
                     "weft: coroutine %llu%s%s%s overflowed its %zu-byte stack "
                     "(created at %s:%d in %s)\n"
                     "  raise it with weft_go_options.stack_size or WEFT_STACK_SIZE\n",
                     (unsigned long long)c->id, c->name[0] ? " \"" : "", c->name,
                     c->name[0] ? "\"" : "", c->stack->slot, c->file ? c->file : "?", c->line,
                     c->func ? c->func : "?");
    if (n > 0)
      (void)!write(2, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
    signal(SIGABRT, SIG_DFL);
    abort();
  }
  /* Not ours: hand it to whoever was installed before, or crash as usual. */
  if (previous_segv.sa_flags & SA_SIGINFO && previous_segv.sa_sigaction) {
    previous_segv.sa_sigaction(sig, info, uctx);
    return;
  }
  if (previous_segv.sa_handler != SIG_DFL && previous_segv.sa_handler != SIG_IGN &&
      previous_segv.sa_handler) {
    previous_segv.sa_handler(sig);
    return;
  }
  signal(sig, SIG_DFL);
}

int weft__overflow_handler_install(struct worker *w)
{
  stack_t ss = {.ss_size = ALTSTACK_SIZE};
  w->altstack = malloc(ALTSTACK_SIZE);
  if (!w->altstack)
    return -1;
  ss.ss_sp = w->altstack;
  sigaltstack(&ss, NULL);
  if (atomic_fetch_add(&handler_users, 1) == 0) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = overflow_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &previous_segv);
  }
  return 0;
}

void weft__overflow_handler_remove(struct worker *w)
{
  stack_t ss = {.ss_flags = SS_DISABLE};
  sigaltstack(&ss, NULL);
  free(w->altstack);
  w->altstack = NULL;
  if (atomic_fetch_sub(&handler_users, 1) == 1)
    sigaction(SIGSEGV, &previous_segv, NULL);
}
