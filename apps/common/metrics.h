/* metrics.h: the Prometheus set-up every service in apps/ repeats, on weft/metrics.h. */
#ifndef WEFT_APPS_COMMON_METRICS_H
#define WEFT_APPS_COMMON_METRICS_H

#include <stddef.h>

#include <weft/metrics.h>

/* Register the runtime's and the process's families and collect(em, arg) in reg, each
 * tolerated when already there (a registry keeps them for the process). Returns 0 or a
 * negative errno. Unregister collect with weft_metrics_unregister_collector. Any thread. */
int app_metrics_register_std(weft_metrics_registry *reg, weft_metrics_collect_fn collect,
                             void *arg);

/* reg in Prometheus text format: a malloc'd buffer of *len bytes (the caller frees), or
 * NULL when out of memory. Any thread. */
char *app_metrics_text(weft_metrics_registry *reg, size_t *len);

#endif
