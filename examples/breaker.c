/* breaker.c: a circuit breaker in front of a flaky upstream.
 *
 * The "upstream" is a function that sleeps a millisecond and fails while it is down. A
 * breaker (one per endpoint, from a registry) counts the results: after 6 failures in a
 * row it opens and calls fail fast with -WEFT_EOPEN without touching the upstream; after
 * its timeout (here 200 ms) one probe is let through: a failure reopens it, a success
 * closes it. The program prints each call and each state change, then the breaker's
 * metrics as Prometheus text.
 *
 *   build/release/examples/breaker */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weft/weft.h>

#define MS(n) ((int64_t)(n)*1000000)

static bool upstream_down;
static int upstream_hits;

/* The upstream call: 0 or a negative errno, as every weft call. */
static int call_upstream(void *arg)
{
  (void)arg;
  upstream_hits++;
  weft_sleep(MS(1)); /* the network */
  return upstream_down ? -ECONNREFUSED : 0;
}

static void on_change(const char *name, weft_breaker_state from, weft_breaker_state to,
                      void *arg)
{
  (void)arg; /* runs under the breaker's lock: print, never call the breaker */
  printf("    [%s] %s -> %s\n", name, weft_breaker_state_name(from),
         weft_breaker_state_name(to));
}

/* n calls through the breaker, one every 20 ms. */
static void calls(weft_breaker *b, int n)
{
  for (int i = 0; i < n; i++) {
    int rc = weft_breaker_execute(b, call_upstream, NULL);
    printf("  call: %-28s (upstream hit %d times)\n", rc ? weft_strerror(rc) : "ok",
           upstream_hits);
    weft_sleep(MS(20));
  }
}

static int run(void *arg)
{
  (void)arg;
  weft_metrics_registry *metrics = weft_metrics_registry_new();
  /* Every endpoint gets its own breaker with these settings. */
  weft_breaker_registry *breakers = weft_breaker_registry_new(&(weft_breaker_options){
      .timeout = MS(200), /* open for 200 ms, then one probe (max_requests 0 -> 1) */
      .on_state_change = on_change,
      .metrics = metrics,
  });
  weft_breaker *b = weft_breaker_registry_get(breakers, "payments-api");

  puts("upstream healthy:");
  calls(b, 2);
  puts("upstream down: six failures trip the breaker, then calls fail fast:");
  upstream_down = true;
  calls(b, 9);
  puts("still down after the timeout: the probe fails and the breaker reopens:");
  weft_sleep(MS(200));
  calls(b, 2);
  puts("upstream back: the next probe succeeds and closes the breaker:");
  upstream_down = false;
  weft_sleep(MS(200));
  calls(b, 3);

  weft_breaker_counts c = weft_breaker_counts_get(b);
  printf("counts since closing: %llu requests, %llu successes\n",
         (unsigned long long)c.requests, (unsigned long long)c.total_successes);
  puts("metrics:");
  char *text = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&text, &len);
  weft_metrics_write_prometheus(metrics, m);
  fclose(m);
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
    if (line[0] != '#')
      printf("  %s\n", line);
  free(text);
  weft_breaker_registry_free(breakers);
  weft_metrics_registry_free(metrics);
  return 0;
}

int main(void)
{
  return weft_main(run, NULL);
}
