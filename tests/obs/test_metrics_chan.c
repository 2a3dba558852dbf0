/* test_metrics_chan.c: registered channels appear as weft_chan_length/capacity gauges. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coro_check.h"
#include "weft/weft.h"
#include "weft_test.h"

/* The Prometheus text of reg, malloc'd. */
static char *scrape(weft_metrics_registry *reg)
{
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  CHECK_EQ(weft_metrics_write_prometheus(reg, f), 0);
  fclose(f);
  return text;
}

static int chan_main(void *arg)
{
  weft_metrics_registry *reg = weft_metrics_registry_new();
  weft_chan *jobs = weft_chan_new(sizeof(int), 8), *results = weft_chan_new(sizeof(int), 2);
  CHECK_EQ(weft_metrics_register_chan(reg, "jobs", jobs), 0);
  CHECK_EQ(weft_metrics_register_chan(reg, "results", results), 0);
  CHECK_EQ(weft_metrics_register_chan(reg, "jobs", results), -EEXIST); /* name taken */
  CHECK_EQ(weft_metrics_register_chan(reg, "other", jobs), -EEXIST);   /* chan taken */
  CHECK_EQ(weft_metrics_register_chan(reg, NULL, jobs), -EINVAL);
  for (int i = 0; i < 3; i++)
    CHECK_EQ(weft_chan_send(jobs, &i, WEFT_NO_DEADLINE), 0);

  char *text = scrape(reg);
  CHECK(strstr(text, "# TYPE weft_chan_length gauge\n") != NULL);
  CHECK(strstr(text, "weft_chan_length{chan=\"jobs\"} 3\n") != NULL);
  CHECK(strstr(text, "weft_chan_length{chan=\"results\"} 0\n") != NULL);
  CHECK(strstr(text, "weft_chan_capacity{chan=\"jobs\"} 8\n") != NULL);
  CHECK(strstr(text, "weft_chan_capacity{chan=\"results\"} 2\n") != NULL);
  free(text);

  /* Unregistered: gone from the scrape, and the registry's reference is dropped (the
   * leak check and ASan see to the rest). */
  CHECK_EQ(weft_metrics_unregister_chan(reg, results), 0);
  CHECK_EQ(weft_metrics_unregister_chan(reg, results), -ENOENT);
  text = scrape(reg);
  CHECK(strstr(text, "chan=\"results\"") == NULL);
  CHECK(strstr(text, "weft_chan_length{chan=\"jobs\"} 3\n") != NULL);
  free(text);
  CHECK_EQ(weft_metrics_unregister_chan(reg, jobs), 0);
  weft_metrics_registry_free(reg);
  weft_chan_release(jobs);
  weft_chan_release(results);
  return 0;
}

static void test_registered_chans(void **state)
{
  checks_reset();
  CHECK_EQ(run_weft(2, chan_main, NULL), 0);
  ASSERT_NO_CHECK_FAILED();
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_registered_chans),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
