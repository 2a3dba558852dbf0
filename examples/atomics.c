/* atomics.c: C11 atomics between coroutines on several threads (Go: sync/atomic).
 *
 *   examples/atomics [coroutines]                  default 8
 *
 * Coroutines run on several scheduler threads at once (4 here, set in main), so memory
 * they share is shared between threads, exactly as between goroutines. Two uses:
 *
 * 1. A counter: atomic_fetch_add, relaxed. Relaxed is enough because nobody reads the
 *    count until after weft_wg_wait, and the wait group orders every increment before
 *    that read (as Go's WaitGroup does). Go: atomic.Int64.Add.
 * 2. A pointer published once: each coroutine builds a config and tries to install it
 *    with a compare-and-swap (release); the first wins, the losers free theirs. Readers
 *    load it with acquire, so once they see the pointer they also see every field written
 *    before the release. Go: atomic.Pointer[T].CompareAndSwap and Load.
 *
 * What a data race looks like (described, not run: it is undefined behaviour): make the
 * counter a plain `long` and `hits++` from every coroutine. The increment is a load, an
 * add and a store; two threads interleave them and updates are lost (the total comes out
 * short, and differently each run), and the compiler may keep the value in a register
 * across a whole loop. Publish the config through a plain pointer and a reader on another
 * thread may see the pointer before the fields it points to. The tsan build
 * (scripts/build.sh tsan) reports both, as `go test -race` would. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include <weft/weft.h>

#define INCREMENTS 100000

struct config {
  int version; /* written before publication, read-only after */
  int owner;   /* which coroutine built it */
  char name[16];
};

struct shared {
  int n;                              /* coroutines of each kind */
  atomic_long hits;                   /* relaxed: read only after the wait group */
  _Atomic(struct config *) config;    /* NULL until published; then never changes */
  atomic_int winners, complete_reads; /* relaxed, read after the wait group */
  weft_wg wg;
};

static void count(void *arg)
{
  struct shared *s = arg;
  for (int i = 0; i < INCREMENTS; i++) {
    atomic_fetch_add_explicit(&s->hits, 1, memory_order_relaxed);
    if (i % 4096 == 0)
      weft_yield(); /* let the others interleave, on this thread too */
  }
  weft_wg_done(&s->wg);
}

static void publish(void *arg)
{
  struct shared *s = arg;
  struct config *mine = malloc(sizeof *mine);
  if (mine) {
    *mine = (struct config){.version = 3, .owner = (int)weft_self_id(), .name = "prod"};
    struct config *expected = NULL;
    if (atomic_compare_exchange_strong_explicit(&s->config, &expected, mine,
                                                memory_order_release, memory_order_relaxed))
      atomic_fetch_add_explicit(&s->winners, 1, memory_order_relaxed);
    else
      free(mine); /* someone else's is installed: ours was never visible */
  }
  weft_wg_done(&s->wg);
}

static void read_config(void *arg)
{
  struct shared *s = arg;
  struct config *c;
  while (!(c = atomic_load_explicit(&s->config, memory_order_acquire)))
    weft_yield(); /* not published yet */
  if (c->version == 3 && c->owner > 0 && c->name[0] == 'p')
    atomic_fetch_add_explicit(&s->complete_reads, 1, memory_order_relaxed);
  weft_wg_done(&s->wg);
}

static int atomics_main(void *arg)
{
  struct shared *s = arg;
  weft_wg_add(&s->wg, s->n);
  for (int i = 0; i < s->n; i++)
    weft_go(count, s);
  weft_wg_wait(&s->wg);
  long hits = atomic_load_explicit(&s->hits, memory_order_relaxed);
  printf("counter: %d coroutines x %d increments on %d threads = %ld (want %ld)\n", s->n,
         INCREMENTS, weft_procs(), hits, (long)s->n * INCREMENTS);

  weft_wg_add(&s->wg, 3 * s->n);
  for (int i = 0; i < 2 * s->n; i++) /* readers first: they wait for the pointer */
    weft_go(read_config, s);
  for (int i = 0; i < s->n; i++)
    weft_go(publish, s);
  weft_wg_wait(&s->wg);
  int winners = atomic_load(&s->winners), reads = atomic_load(&s->complete_reads);
  printf("publish: %d winner of %d publishers; %d of %d readers saw a complete config\n",
         winners, s->n, reads, 2 * s->n);
  free(atomic_load(&s->config));
  return hits == (long)s->n * INCREMENTS && winners == 1 && reads == 2 * s->n ? 0 : 1;
}

int main(int argc, char **argv)
{
  struct shared s = {.n = argc > 1 ? atoi(argv[1]) : 8, .wg = WEFT_WG_INIT};
  if (s.n < 1) {
    fprintf(stderr, "usage: %s [coroutines]\n", argv[0]);
    return 2;
  }
  weft_config cfg = {.procs = 4}; /* several threads even on a small machine */
  int rc = weft_main_with(&cfg, atomics_main, &s);
  return rc < 0 ? 2 : rc;
}
