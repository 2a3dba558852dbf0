/* dump.c: coroutine dumps (weft_dump, the deadlock and leak reports), fatal errors, and
 * the SIGSEGV handler that names a coroutine that overflowed into its guard page.
 *
 * A dump line reads
 *   coroutine 7 "fetcher" [io wait, 2.31s]: created at crawl.c:88 in fetch_one
 * Dumps take each registry's lock in turn and never park; they may run on any thread. */
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/sched.h"
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
