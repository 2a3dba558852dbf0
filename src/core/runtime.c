/* runtime.c: weft_main: settings, starting and stopping the workers, the leak report.
 *
 * Lifecycle: weft_main initialises the modules, makes the calling thread worker 0 and
 * starts workers 1..P-1, spawns main and runs worker 0's loop. When main returns it sets
 * sched.stopping and wakes everyone; each worker leaves its loop at its next scheduling
 * point. Worker 0 joins the others, reports leaks, frees every record and stack (including
 * those of coroutines still parked, which never run again) and returns main's result.
 * weft_main may run again afterwards (tests do), never concurrently. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/clock.h"
#include "core/sched.h"
#include "weft/runtime.h"

struct runtime_config weft__config;

static atomic_bool running;
static long last_leaked;

struct main_call {
  int (*fn)(void *);
  void *arg;
  int result;
};

void weft__coro_cache_drain(struct worker *w);
void weft__coro_pool_drain(void);
void weft__coro_release(struct worker *w, struct coro *c);
int weft__overflow_handler_install(struct worker *w);
void weft__overflow_handler_remove(struct worker *w);

static long env_long(const char *name, long dflt)
{
  const char *v = getenv(name);
  if (!v || !*v)
    return dflt;
  char *end;
  long n = strtol(v, &end, 10);
  return *end == '\0' ? n : dflt;
}

static int affinity_cpus(void)
{
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
    return CPU_COUNT(&set);
  return 1;
}

static int leak_mode_from_env(int dflt)
{
  const char *v = getenv("WEFT_LEAK_CHECK");
  if (!v)
    return dflt;
  if (!strcasecmp(v, "report") || !strcmp(v, "1"))
    return WEFT_LEAK_REPORT;
  if (!strcasecmp(v, "fail"))
    return WEFT_LEAK_FAIL;
  return WEFT_LEAK_IGNORE;
}

/* Explicit settings win; the environment fills what the program left at zero. */
static void resolve_config(const weft_config *cfg)
{
  weft_config c = cfg ? *cfg : (weft_config){.stack_guard = 1};
  if (!cfg)
    c.stack_guard = (int)env_long("WEFT_STACK_GUARD", 1);
  weft__config.procs = c.procs > 0 ? c.procs : (int)env_long("WEFT_PROCS", affinity_cpus());
  if (weft__config.procs < 1)
    weft__config.procs = 1;
  if (weft__config.procs > 256)
    weft__config.procs = 256;
  weft__config.stack_size =
      c.stack_size ? c.stack_size : (size_t)env_long("WEFT_STACK_SIZE", 128 * 1024);
  weft__config.stack_guard = c.stack_guard;
  weft__config.leak_check = c.leak_check ? (int)c.leak_check : leak_mode_from_env(0);
  weft__config.blocking_threads =
      c.blocking_threads > 0 ? c.blocking_threads : (int)env_long("WEFT_BLOCKING_THREADS", 64);
}

static void main_entry(void *arg)
{
  struct main_call *call = arg;
  call->result = call->fn(call->arg);
  atomic_store(&weft__sched.stopping, true);
  weft__wake_all();
}

static void *worker_thread(void *arg)
{
  struct worker *w = arg;
  weft__set_this_worker(w);
  weft__overflow_handler_install(w);
  weft__sched_loop(w);
  weft__overflow_handler_remove(w);
  weft__set_this_worker(NULL);
  return NULL;
}

static int init_workers(int n)
{
  struct scheduler *s = &weft__sched;
  s->workers = aligned_alloc(64, sizeof(struct worker) * (size_t)n);
  if (!s->workers)
    return -ENOMEM;
  memset(s->workers, 0, sizeof(struct worker) * (size_t)n);
  s->nworkers = n;
  for (int i = 0; i < n; i++) {
    struct worker *w = &s->workers[i];
    w->index = i;
    w->rng = 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1);
    weft__timer_heap_init(&w->timers);
    weft__registry_init(&w->reg);
    atomic_init(&w->g0.state, CORO_RUNNING);
  }
  return 0;
}

static void reset_scheduler(void)
{
  struct scheduler *s = &weft__sched;
  memset(s, 0, sizeof *s);
  atomic_init(&s->next_id, 1);
  atomic_init(&s->poll_until, INT64_MAX);
  weft__registry_init(&s->foreign_reg);
}

/* Coroutines alive when main returned (main itself has exited by then). */
static long report_leaks(void)
{
  long leaked = weft__live_coroutines();
  if (leaked > 0 && weft__config.leak_check != WEFT_LEAK_IGNORE) {
    fprintf(stderr, "weft: %ld coroutine%s still alive when main returned:\n", leaked,
            leaked == 1 ? "" : "s");
    long shown = weft__dump_all(stderr);
    if (shown < leaked)
      fprintf(stderr, "and %ld spawned that never ran\n", leaked - shown);
  }
  return leaked;
}

static void free_registry(struct registry *r)
{
  while (r->head.reg_next != &r->head) {
    struct coro *c = r->head.reg_next;
    if (atomic_load(&c->state) == CORO_PARKED && c->wait_reason &&
        !strcmp(c->wait_reason, "blocking call")) {
      /* A pool thread still owns a pointer to it: keep the record, drop the link. */
      weft__registry_remove(c);
      continue;
    }
    weft__coro_release(NULL, c);
  }
}

/* Writing to a pipe or socket whose reader has gone must be an -EPIPE from weft_write,
 * not a process killed by SIGPIPE (Go makes the same choice). If the program left
 * SIGPIPE at its default, it is ignored while the runtime runs. */
static struct sigaction saved_sigpipe;
static bool sigpipe_changed;

static void ignore_sigpipe(void)
{
  struct sigaction ign = {.sa_handler = SIG_IGN};
  sigpipe_changed = false;
  if (sigaction(SIGPIPE, NULL, &saved_sigpipe) == 0 && saved_sigpipe.sa_handler == SIG_DFL &&
      !(saved_sigpipe.sa_flags & SA_SIGINFO)) {
    sigemptyset(&ign.sa_mask);
    sigpipe_changed = sigaction(SIGPIPE, &ign, NULL) == 0;
  }
}

static void restore_sigpipe(void)
{
  if (sigpipe_changed)
    sigaction(SIGPIPE, &saved_sigpipe, NULL);
  sigpipe_changed = false;
}

/* Free coroutines that never ran: they are in run queues, not in a registry. Every
 * worker has stopped. */
static void free_unstarted(void)
{
  struct scheduler *s = &weft__sched;
  struct coro *c;
  for (int i = 0; i < s->nworkers; i++) {
    struct worker *w = &s->workers[i];
    uint32_t h = atomic_load(&w->rq_head), t = atomic_load(&w->rq_tail);
    for (; h != t; h++) {
      c = atomic_load(&w->rq[h % RUNQ_SIZE]);
      if (atomic_load(&c->state) == CORO_NEW)
        weft__coro_release(NULL, c);
    }
    atomic_store(&w->rq_head, t);
    c = atomic_exchange(&w->runnext, NULL);
    if (c && atomic_load(&c->state) == CORO_NEW)
      weft__coro_release(NULL, c);
  }
  for (struct coro **q = &s->gq_head; q; q = q == &s->gq_head ? &s->sq_head : NULL) {
    while ((c = *q)) {
      *q = c->next;
      if (atomic_load(&c->state) == CORO_NEW)
        weft__coro_release(NULL, c);
    }
  }
  s->gq_tail = s->sq_tail = NULL;
}

static void teardown(void)
{
  struct scheduler *s = &weft__sched;
  weft__blocking_fini();
  weft__signal_fini();
  weft__sigquit_stop(); /* after signal_fini: it restores SIGQUIT's first disposition */
  free_unstarted();
  for (int i = 0; i < s->nworkers; i++)
    free_registry(&s->workers[i].reg);
  free_registry(&s->foreign_reg);
  for (int i = 0; i < s->nworkers; i++) {
    struct worker *w = &s->workers[i];
    weft__timer_heap_fini(&w->timers);
    weft__stack_cache_drain(&w->stacks);
    weft__coro_cache_drain(w);
  }
  weft__coro_pool_drain();
  weft__poller_fini();
  weft__stack_module_fini();
  restore_sigpipe();
  free(s->workers);
  s->workers = NULL;
}

static int start_runtime(void)
{
  ignore_sigpipe();
  int err;
  reset_scheduler();
  if ((err = weft__stack_module_init(weft__config.stack_size, weft__config.stack_guard)))
    return err;
  if ((err = init_workers(weft__config.procs)))
    return err;
  if ((err = weft__poller_init()))
    return err;
  if ((err = weft__signal_init()))
    return err;
  weft__sigquit_start();
  return weft__blocking_init(weft__config.blocking_threads);
}

int weft_main_with(const weft_config *cfg, int (*fn)(void *arg), void *arg)
{
  struct main_call call = {fn, arg, 0};
  struct scheduler *s = &weft__sched;
  bool expected = false;
  int err;

  if (!fn)
    return -EINVAL;
  if (!atomic_compare_exchange_strong(&running, &expected, true))
    return -EBUSY;
  resolve_config(cfg);
  if ((err = start_runtime())) {
    teardown();
    atomic_store(&running, false);
    return err;
  }
  struct worker *w0 = &s->workers[0];
  s->start_ns = weft_now();
  weft__set_this_worker(w0);
  weft__overflow_handler_install(w0);
  err = weft_go_at(main_entry, &call, &(weft_go_options){.name = "main"}, __FILE__, __LINE__,
                   "main");
  for (int i = 1; i < s->nworkers && !err; i++)
    if (pthread_create(&s->workers[i].thread, NULL, worker_thread, &s->workers[i]) != 0)
      weft__die("weft: cannot start scheduler thread %d", i);
  if (!err)
    weft__sched_loop(w0);
  for (int i = 1; i < s->nworkers; i++)
    pthread_join(s->workers[i].thread, NULL);
  weft__overflow_handler_remove(w0);
  weft__set_this_worker(NULL);
  last_leaked = report_leaks();
  teardown();
  atomic_store(&running, false);
  if (err)
    return err;
  if (last_leaked > 0 && weft__config.leak_check == WEFT_LEAK_FAIL)
    return -EBUSY;
  return call.result;
}

int weft_main(int (*fn)(void *arg), void *arg)
{
  return weft_main_with(NULL, fn, arg);
}

long weft_leaked(void)
{
  return last_leaked;
}
