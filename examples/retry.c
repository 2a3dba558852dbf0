/* retry.c: retry a flaky call with exponential back-off and jitter (weft/retry.h).
 *
 * A pretend API refuses the first four connections, then answers. weft_retry calls it
 * until it succeeds, sleeping 20, 40, 80 ... ms (each ±20% jitter) in between and
 * printing each failure from the notify hook. Then two ways a retry ends early: a
 * permanent error (a 400 is not worth retrying) and the context's deadline.
 *
 *   build/release/examples/retry */
#include <stdio.h>

#include <weft/weft.h>

struct api {
  int calls;
  int fail_first; /* refuse this many calls */
  int64_t t0;
};

/* The operation: 0 on success, a negative error to retry, weft_retry_permanent(err) to
 * give up at once. */
static int call_api(weft_ctx *ctx, void *arg)
{
  struct api *a = arg;
  a->calls++;
  if (a->fail_first < 0)
    return weft_retry_permanent(-EINVAL); /* "400 Bad Request": retrying cannot help */
  if (a->calls <= a->fail_first)
    return -ECONNREFUSED;
  return 0;
}

static void on_retry(int err, int64_t delay, void *arg)
{
  struct api *a = arg;
  printf("  %4.0f ms  call %d failed (%s); retrying in %.0f ms\n",
         (double)(weft_now() - a->t0) / 1e6, a->calls, weft_strerror(err), (double)delay / 1e6);
}

static int retry_main(void *arg)
{
  weft_backoff_options o = WEFT_BACKOFF_DEFAULTS; /* cenkalti's defaults, then: */
  o.initial_interval = 20 * 1000000;              /* 20 ms */
  o.multiplier = 2;
  o.randomization_factor = 0.2;
  o.max_attempts = 8;

  struct api a = {.fail_first = 4, .t0 = weft_now()};
  weft_retry_stats st;
  printf("1. a flaky API that refuses four calls:\n");
  int rc = weft_retry(NULL, &o, call_api, &a, on_retry, &st);
  printf("   -> %s after %d attempts, %.0f ms of back-off\n", rc ? weft_strerror(rc) : "ok",
         st.attempts, (double)st.total_delay / 1e6);

  printf("2. a permanent error stops at once:\n");
  a = (struct api){.fail_first = -1, .t0 = weft_now()};
  rc = weft_retry(NULL, &o, call_api, &a, on_retry, &st);
  printf("   -> %s after %d attempt\n", weft_strerror(rc), st.attempts);

  printf("3. the caller's deadline (100 ms) ends the back-off:\n");
  a = (struct api){.fail_first = 1000, .t0 = weft_now()};
  weft_ctx *ctx = weft_ctx_with_timeout(NULL, 100 * 1000000);
  rc = weft_retry(ctx, &o, call_api, &a, on_retry, &st);
  printf("   -> %s after %d attempts, at %.0f ms\n", weft_strerror(rc), st.attempts,
         (double)(weft_now() - a.t0) / 1e6);
  weft_ctx_release(ctx);

  printf("4. the delays alone (no jitter, defaults otherwise): ");
  o = WEFT_BACKOFF_DEFAULTS;
  o.randomization_factor = 0;
  weft_backoff *b = NULL;
  if (weft_backoff_new(&o, &b) == 0) {
    for (int i = 0; i < 6; i++)
      printf("%.1f%s", (double)weft_backoff_next(b) / 1e6, i < 5 ? ", " : " ms ...\n");
    weft_backoff_free(b);
  }
  return 0;
}

int main(void)
{
  return weft_main(retry_main, NULL) == 0 ? 0 : 1;
}
