/* metrics.c: the registry set-up and scrape text shared by paymentd and weft-etl
 * (metrics.h). Neither keeps state: the registry owns everything. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "metrics.h"

/* Tolerate families that exist already (a registry keeps them for the process). */
static int ok(int rc)
{
  return rc == -EEXIST ? 0 : rc;
}

int app_metrics_register_std(weft_metrics_registry *reg, weft_metrics_collect_fn collect,
                             void *arg)
{
  int rc = ok(weft_metrics_register_runtime(reg));
  rc = rc ? rc : ok(weft_metrics_register_process(reg));
  return rc ? rc : ok(weft_metrics_register_collector(reg, collect, arg));
}

char *app_metrics_text(weft_metrics_registry *reg, size_t *len)
{
  char *buf = NULL;
  FILE *f = open_memstream(&buf, len);
  if (!f)
    return NULL;
  int rc = weft_metrics_write_prometheus(reg, f);
  if (fclose(f) != 0 || rc < 0) {
    free(buf);
    return NULL;
  }
  return buf;
}
