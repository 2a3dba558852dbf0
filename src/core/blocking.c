/* blocking.c: the pool of threads that run calls which must block (weft_blocking).
 *
 * A caller's job lives on its own (parked) stack. The park commit step queues it, so a
 * pool thread can only finish it — and ready the caller — after the caller is off its
 * stack. Threads are started on demand up to the bound and leave after IDLE_EXIT_NS idle.
 *
 * pool.lock guards everything in struct pool; it is a leaf lock (weft__ready is called
 * after releasing it). */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "core/clock.h"
#include "core/sched.h"
#include "weft/blocking.h"

#define IDLE_EXIT_NS (10ll * 1000000000)

struct job {
  long (*fn)(void *);
  void *arg;
  long result;
  struct coro *caller;
  unsigned gen; /* pool.gen when queued */
  struct job *next;
  /* Jobs whose caller may stop waiting (a canceller) live on the heap; the caller's
   * outcome goes through these pointers into its (parked) stack, written under pool.lock
   * by whoever wakes it: the pool thread (done) or the canceller (abandoned). */
  bool heap;
  bool done, abandoned; /* guarded by pool.lock */
  long *result_out;
  int *err_out;
  bool *queued_out; /* set by the commit step when the job is to be queued */
  void (*on_abandon)(void *arg, long result);
  struct weft__canceller *cn;
};

static struct pool {
  pthread_mutex_t lock;
  pthread_cond_t cond;     /* signalled when a job is queued or on shutdown */
  pthread_cond_t drained;  /* signalled when a thread exits */
  struct job *head, *tail; /* queued jobs, FIFO */
  int threads, idle, max;
  bool stopping;
  unsigned gen; /* bumped when a runtime stops: its callers are gone */
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER,
          .cond = PTHREAD_COND_INITIALIZER,
          .drained = PTHREAD_COND_INITIALIZER};

static struct job *take_job_locked(void)
{
  struct job *j = pool.head;
  if (j) {
    pool.head = j->next;
    if (!pool.head)
      pool.tail = NULL;
  }
  return j;
}

/* Run a job whose caller may have stopped waiting; pool.lock held on entry and exit. A
 * job abandoned before it started never runs.
 *
 * Who frees j: a job that completes and wakes its caller is the caller's (its canceller
 * stays armed until the caller disarms it, and may fire until then: it reads j); one
 * abandoned, or left by a stopped runtime, is freed here. Freeing a completed job here let
 * a cancel that came between the wake-up and the caller's disarm read freed memory. */
static void run_heap_job(struct job *j)
{
  long result = -ECANCELED;
  bool run = !j->abandoned;
  pthread_mutex_unlock(&pool.lock);
  if (run)
    result = j->fn(j->arg);
  pthread_mutex_lock(&pool.lock);
  bool wake = !j->abandoned && j->gen == pool.gen;
  if (wake) {
    j->done = true;
    *j->result_out = result;
    weft__ready(j->caller);
    weft__blocking_add(-1);
  }
  if (!wake && j->abandoned && j->on_abandon) {
    pthread_mutex_unlock(&pool.lock);
    j->on_abandon(j->arg, result);
    pthread_mutex_lock(&pool.lock);
  }
  if (!wake)
    free(j); /* else the caller frees it, after disarming its canceller */
}

static void *pool_thread(void *unused)
{
  pthread_mutex_lock(&pool.lock);
  for (;;) {
    struct job *j = take_job_locked();
    if (j && j->heap) {
      run_heap_job(j); /* drops and retakes pool.lock */
      continue;
    }
    if (j) {
      pthread_mutex_unlock(&pool.lock);
      j->result = j->fn(j->arg);
      pthread_mutex_lock(&pool.lock);
      if (j->gen == pool.gen) {
        /* The runtime that queued it still runs (fini takes this lock to end it). */
        weft__ready(j->caller);
        weft__blocking_add(-1); /* after ready: see deadlock detection */
      }
      continue;
    }
    if (pool.stopping)
      break;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += IDLE_EXIT_NS / 1000000000;
    pool.idle++;
    int rc = pthread_cond_timedwait(&pool.cond, &pool.lock, &until);
    pool.idle--;
    if (rc == ETIMEDOUT && !pool.head)
      break;
  }
  pool.threads--;
  pthread_cond_broadcast(&pool.drained);
  pthread_mutex_unlock(&pool.lock);
  return NULL;
}

static bool enqueue_commit(struct coro *c, void *arg)
{
  struct job *j = arg;
  bool start_thread = false;
  pthread_mutex_lock(&pool.lock);
  j->next = NULL;
  j->gen = pool.gen;
  if (pool.tail)
    pool.tail->next = j;
  else
    pool.head = j;
  pool.tail = j;
  if (pool.idle > 0) {
    pthread_cond_signal(&pool.cond);
  } else if (pool.threads < pool.max) {
    pool.threads++;
    start_thread = true;
  }
  pthread_mutex_unlock(&pool.lock);
  if (start_thread) {
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, pool_thread, NULL) != 0) {
      pthread_mutex_lock(&pool.lock);
      pool.threads--;
      bool none = pool.threads == 0;
      pthread_mutex_unlock(&pool.lock);
      if (none)
        weft__die("weft: cannot start a blocking-pool thread");
    }
    pthread_attr_destroy(&attr);
  }
  return true;
}

long weft_blocking(long (*fn)(void *arg), void *arg)
{
  struct coro *self = weft__current();
  if (!fn)
    return -EINVAL;
  if (!self)
    return fn(arg);
  struct job j = {.fn = fn, .arg = arg, .caller = self};
  weft__blocking_add(1);
  weft__park("blocking call", enqueue_commit, &j);
  return j.result;
}

int weft__blocking_init(int max_threads)
{
  pthread_mutex_lock(&pool.lock);
  pool.max = max_threads;
  pool.stopping = false;
  pthread_mutex_unlock(&pool.lock);
  return 0;
}

/* Stop the pool: idle threads leave now; a thread still inside a call leaves after it.
 * Waits for threads that are not inside a call. */
void weft__blocking_fini(void)
{
  pthread_mutex_lock(&pool.lock);
  pool.stopping = true;
  pool.gen++;
  while (pool.head) /* queued, never started: their callers are abandoned with them */
    take_job_locked();
  pthread_cond_broadcast(&pool.cond);
  while (pool.threads > 0 && pool.idle > 0)
    pthread_cond_wait(&pool.drained, &pool.lock);
  pthread_mutex_unlock(&pool.lock);
}

/* The canceller fired: the caller stops waiting unless its job is already done. */
static void blocking_cancel_fired(void *waiter, int err)
{
  struct job *j = waiter;
  pthread_mutex_lock(&pool.lock);
  if (!j->done && !j->abandoned) {
    j->abandoned = true;
    *j->err_out = err;
    weft__ready(j->caller);
    weft__blocking_add(-1);
  }
  pthread_mutex_unlock(&pool.lock);
}

/* Arm the canceller once off the stack, then queue; an already-fired canceller abandons
 * the park before the job is queued (the caller then frees it).
 *
 * queued is set before arming: once armed, the canceller may fire and resume the caller
 * on another thread before this step returns, and the caller must then find that j
 * belongs to the pool (it is queued below, abandoned, and the pool thread calls on_abandon
 * and frees it). Setting it after arming let such a caller free j while this step still
 * used it, and write to its stack after it had returned. */
static bool enqueue_cn_commit(struct coro *c, void *arg)
{
  struct job *j = arg;
  bool *queued = j->queued_out;
  *queued = true;
  int err = j->cn->arm(j->cn, blocking_cancel_fired, j);
  if (err) {
    *queued = false; /* not armed: nobody else can resume the caller */
    *j->err_out = err;
    return false;
  }
  return enqueue_commit(c, j);
}

int weft__blocking(long (*fn)(void *arg), void *arg, long *result,
                   void (*on_abandon)(void *arg, long result), struct weft__canceller *cn)
{
  struct coro *self = weft__current();
  int err = 0;
  bool queued = false;
  if (!fn || !result)
    return -EINVAL;
  if (!self || !cn) {
    *result = weft_blocking(fn, arg);
    return 0;
  }
  struct job *j = calloc(1, sizeof *j);
  if (!j)
    return -ENOMEM;
  *j = (struct job){.fn = fn,
                    .arg = arg,
                    .caller = self,
                    .heap = true,
                    .result_out = result,
                    .err_out = &err,
                    .queued_out = &queued,
                    .on_abandon = on_abandon,
                    .cn = cn};
  weft__blocking_add(1);
  weft__park("blocking call", enqueue_cn_commit, j);
  cn->disarm(cn);
  if (!queued) {
    /* never queued (the canceller had fired before we parked): j is still ours. Once
     * queued, the pool thread frees it unless it completed. fn never runs: on_abandon is
     * told so here, as the pool thread would have, so that every call that returns the
     * canceller's error calls it exactly once. */
    weft__blocking_add(-1);
    free(j);
    if (on_abandon)
      on_abandon(arg, -ECANCELED);
  } else if (!err) {
    free(j); /* completed: the pool thread left it to us (see run_heap_job) */
  }
  return err;
}

void weft__blocking_stats(int *threads, int *busy, long *queued)
{
  pthread_mutex_lock(&pool.lock);
  long n = 0;
  for (struct job *j = pool.head; j; j = j->next)
    n++;
  *threads = pool.threads;
  *busy = pool.threads - pool.idle;
  *queued = n;
  pthread_mutex_unlock(&pool.lock);
}
