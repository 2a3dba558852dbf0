/* ratelimit.c: a token bucket in front of work (weft/ratelimit.h).
 *
 * 1. Shedding: a burst of 30 requests arrives at once at a limiter of 20/s with burst 5.
 *    allow() never waits: the bucket's 5 tokens admit 5, the rest would get a 429.
 * 2. Pacing: three workers share a limiter of 20/s; each waits for a token before each
 *    job. The first 5 jobs go at once (the burst), then one every 50 ms, whatever the
 *    number of workers.
 * 3. Reservations: reserve says how long to wait, and cancel gives the token back.
 *
 *   build/release/examples/ratelimit */
#include <stdio.h>

#include <weft/weft.h>

struct shared {
  weft_limiter *lim;
  weft_wg wg;
  int64_t t0;
  int jobs_each;
};

static void worker(void *arg)
{
  struct shared *s = arg;
  for (int i = 0; i < s->jobs_each; i++) {
    if (weft_limiter_wait(s->lim, NULL) != 0) /* parks until a token is due */
      break;
    printf("  %4.0f ms  worker %llu runs a job\n", (double)(weft_now() - s->t0) / 1e6,
           (unsigned long long)weft_self_id());
  }
  weft_wg_done(&s->wg);
}

static int ratelimit_main(void *arg)
{
  printf("1. 30 requests at once, limit 20/s, burst 5:\n");
  weft_limiter *lim = weft_limiter_new(20, 5, NULL);
  int admitted = 0;
  for (int i = 0; i < 30; i++)
    admitted += weft_limiter_allow(lim);
  printf("   %d admitted, %d shed (429)\n", admitted, 30 - admitted);
  weft_limiter_release(lim);

  printf("2. three workers, 6 jobs each, sharing 20/s with burst 5:\n");
  struct shared s = {.lim = weft_limiter_new(20, 5, NULL), .t0 = weft_now(), .jobs_each = 6};
  weft_wg_init(&s.wg);
  weft_wg_add(&s.wg, 3);
  for (int i = 0; i < 3; i++)
    weft_go_named(worker, &s, "worker");
  weft_wg_wait(&s.wg);
  double took = (double)(weft_now() - s.t0) / 1e9;
  printf("   18 jobs in %.2f s: (18 - 5 burst) / 20 per s = 0.65 s\n", took);

  printf("3. a reservation:\n");
  weft_reservation r;
  weft_limiter_reserve(s.lim, &r);
  printf("   reserved a token due in %.0f ms; tokens now %.2f\n",
         (double)weft_reservation_delay(&r) / 1e6, weft_limiter_tokens(s.lim));
  weft_reservation_cancel(&r);
  printf("   cancelled it: tokens back to %.2f\n", weft_limiter_tokens(s.lim));
  weft_limiter_release(s.lim);
  return 0;
}

int main(void)
{
  return weft_main(ratelimit_main, NULL) == 0 ? 0 : 1;
}
