/* tsan_rdkafka.c: lets librdkafka run in a ThreadSanitizer build (compiled only when
 * CMAKE_BUILD_TYPE is tsan; linked into weft-etl and into every test that uses
 * librdkafka, through the etl_tsan_rdkafka target of apps/etl/CMakeLists.txt).
 *
 * Why it exists: librdkafka (Debian's, not instrumented) makes its threads, mutexes and
 * condition variables with glibc's C11 threads (thrd_create, mtx_lock, cnd_wait, ...),
 * which this ThreadSanitizer does not intercept. Its threads then start without TSan
 * state and crash in their first malloc, and its locking is invisible to TSan, which
 * then reports every access it orders as a race. The definitions below, in the program
 * itself, interpose glibc's for librdkafka and route them to the pthread calls TSan does
 * intercept (glibc's C11 types have the pthread layouts: mtx_t is a pthread_mutex_t,
 * cnd_t a pthread_cond_t, thrd_t a pthread_t).
 *
 * The suppressions: races with a frame inside librdkafka, and only those. Its atomics
 * (reference counts of fetch buffers, rwlock lifetimes) are not instrumented, so TSan
 * misses the order they impose. ASan checks the same runs for real use-after-free. They
 * are built in (__tsan_default_suppressions) rather than in a file named by TSAN_OPTIONS
 * so that neither ctest nor an operator needs any environment. */
#if !defined(__SANITIZE_THREAD__)
#error "tsan_rdkafka.c belongs in ThreadSanitizer builds only"
#endif

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <pthread.h>
#include <threads.h>

typedef struct thrd_trampoline {
  thrd_start_t fn;
  void *arg;
} thrd_trampoline;

static void *thrd_trampoline_run(void *p)
{
  thrd_trampoline t = *(thrd_trampoline *)p;
  free(p);
  return (void *)(intptr_t)t.fn(t.arg);
}

static int thrd_result(int rc)
{
  return rc == 0           ? thrd_success
         : rc == ENOMEM    ? thrd_nomem
         : rc == EBUSY     ? thrd_busy
         : rc == ETIMEDOUT ? thrd_timedout
                           : thrd_error;
}

int thrd_create(thrd_t *thr, thrd_start_t fn, void *arg)
{
  thrd_trampoline *t = malloc(sizeof *t);
  if (!t)
    return thrd_nomem;
  *t = (thrd_trampoline){fn, arg};
  int rc = pthread_create(thr, NULL, thrd_trampoline_run, t);
  if (rc != 0)
    free(t);
  return thrd_result(rc);
}

int thrd_join(thrd_t thr, int *res)
{
  void *r;
  int rc = pthread_join(thr, &r);
  if (rc == 0 && res)
    *res = (int)(intptr_t)r;
  return thrd_result(rc);
}

int thrd_detach(thrd_t thr)
{
  return thrd_result(pthread_detach(thr));
}

int mtx_init(mtx_t *m, int type)
{
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  if (type & mtx_recursive)
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
  int rc = pthread_mutex_init((pthread_mutex_t *)m, &a);
  pthread_mutexattr_destroy(&a);
  return thrd_result(rc);
}

int mtx_lock(mtx_t *m)
{
  return thrd_result(pthread_mutex_lock((pthread_mutex_t *)m));
}

int mtx_trylock(mtx_t *m)
{
  return thrd_result(pthread_mutex_trylock((pthread_mutex_t *)m));
}

int mtx_timedlock(mtx_t *restrict m, const struct timespec *restrict ts)
{
  return thrd_result(pthread_mutex_timedlock((pthread_mutex_t *)m, ts));
}

int mtx_unlock(mtx_t *m)
{
  return thrd_result(pthread_mutex_unlock((pthread_mutex_t *)m));
}

void mtx_destroy(mtx_t *m)
{
  pthread_mutex_destroy((pthread_mutex_t *)m);
}

int cnd_init(cnd_t *c)
{
  return thrd_result(pthread_cond_init((pthread_cond_t *)c, NULL));
}

int cnd_signal(cnd_t *c)
{
  return thrd_result(pthread_cond_signal((pthread_cond_t *)c));
}

int cnd_broadcast(cnd_t *c)
{
  return thrd_result(pthread_cond_broadcast((pthread_cond_t *)c));
}

int cnd_wait(cnd_t *c, mtx_t *m)
{
  return thrd_result(pthread_cond_wait((pthread_cond_t *)c, (pthread_mutex_t *)m));
}

int cnd_timedwait(cnd_t *restrict c, mtx_t *restrict m, const struct timespec *restrict ts)
{
  return thrd_result(pthread_cond_timedwait((pthread_cond_t *)c, (pthread_mutex_t *)m, ts));
}

void cnd_destroy(cnd_t *c)
{
  pthread_cond_destroy((pthread_cond_t *)c);
}

/* Races with a frame inside librdkafka, and only those: its atomics (reference counts of
 * fetch buffers, rwlock lifetimes) are not instrumented, so TSan misses the order they
 * impose. ASan checks the same runs for real use-after-free. Built in here rather than in
 * a file named by TSAN_OPTIONS so that ctest's run needs no environment. */
const char *__tsan_default_suppressions(void);
const char *__tsan_default_suppressions(void)
{
  return "race:librdkafka.so.1\n"
         "called_from_lib:librdkafka.so.1\n";
}
