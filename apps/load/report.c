/* report.c: the summary of a run, as text for people and JSON for programs. Both read the
 * recorder after every request coroutine has ended, so no lock is needed. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <string.h>

#include "load.h"

static const struct {
  const char *name; /* JSON key, and text label */
  double q;
} quantiles[] = {{"min", 0},  {"p50", 50},     {"p90", 90},
                 {"p99", 99}, {"p99.9", 99.9}, {"max", 100}};

static double ms(int64_t ns)
{
  return (double)ns / 1e6;
}

static double throughput(const struct load_run *run)
{
  const struct load_recorder *r = &run->rec;
  return run->elapsed > 0 ? (double)(r->answered + r->errors) * 1e9 / (double)run->elapsed : 0;
}

void load_report_text(const struct load_run *run, FILE *out)
{
  const struct load_recorder *r = &run->rec;
  const struct load_config *cfg = run->cfg;
  fprintf(out, "weft-load: %s %s\n", cfg->method, cfg->url);
  if (cfg->rate > 0)
    fprintf(out, "  mode        open loop, %.1f req/s, up to %d connections (%d used)\n",
            cfg->rate, cfg->max_connections, run->max_workers);
  else
    fprintf(out, "  mode        closed loop, %d connections\n", cfg->connections);
  fprintf(out, "  requests    %" PRIu64 " (%" PRIu64 " answered, %" PRIu64 " errors)%s\n",
          r->answered + r->errors, r->answered, r->errors,
          run->interrupted ? ", interrupted" : "");
  fprintf(out, "  duration    %.3f s\n", (double)run->elapsed / 1e9);
  fprintf(out, "  throughput  %.1f req/s\n", throughput(run));
  if (cfg->rate > 0)
    fprintf(out, "  late starts %" PRIu64 " (sent > 1 ms after their intended time)\n",
            r->late);
  fprintf(out, "  status     ");
  for (int s = 0; s < LOAD_MAX_STATUS; s++)
    if (r->status[s])
      fprintf(out, " %d: %" PRIu64, s, r->status[s]);
  fprintf(out, "%s\n", r->answered ? "" : " none");
  for (int i = 0; i < r->nerr; i++)
    fprintf(out, "  error       %s: %" PRIu64 " (%s)\n", weft_errname(r->err[i].code),
            r->err[i].n, weft_strerror(r->err[i].code));
  fprintf(out, "  latency ms  mean %.3f", ms((int64_t)hist_mean(&r->lat)));
  for (size_t i = 0; i < sizeof quantiles / sizeof *quantiles; i++)
    fprintf(out, "  %s %.3f", quantiles[i].name, ms(hist_percentile(&r->lat, quantiles[i].q)));
  fprintf(out, "\n");
}

static json_t *report_json(const struct load_run *run)
{
  const struct load_recorder *r = &run->rec;
  const struct load_config *cfg = run->cfg;
  json_t *status = json_object(), *errors = json_object(), *lat = json_object();
  for (int s = 0; s < LOAD_MAX_STATUS; s++)
    if (r->status[s]) {
      char key[16];
      snprintf(key, sizeof key, "%d", s);
      json_object_set_new(status, key, json_integer((json_int_t)r->status[s]));
    }
  for (int i = 0; i < r->nerr; i++)
    json_object_set_new(errors, weft_errname(r->err[i].code),
                        json_integer((json_int_t)r->err[i].n));
  json_object_set_new(lat, "mean", json_real(ms((int64_t)hist_mean(&r->lat))));
  for (size_t i = 0; i < sizeof quantiles / sizeof *quantiles; i++)
    json_object_set_new(lat, quantiles[i].name,
                        json_real(ms(hist_percentile(&r->lat, quantiles[i].q))));
  return json_pack("{s:s, s:s, s:s, s:f, s:i, s:i, s:I, s:I, s:I, s:I, s:f, s:f, s:b, s:o, "
                   "s:o, s:o}",
                   "url", cfg->url, "method", cfg->method, "mode",
                   cfg->rate > 0 ? "open" : "closed", "rate", cfg->rate, "connections",
                   cfg->rate > 0 ? cfg->max_connections : cfg->connections, "connections_used",
                   run->max_workers, "requests", (json_int_t)(r->answered + r->errors),
                   "answered", (json_int_t)r->answered, "errors_total", (json_int_t)r->errors,
                   "late_starts", (json_int_t)r->late, "duration_s", (double)run->elapsed / 1e9,
                   "throughput_rps", throughput(run), "interrupted", run->interrupted, "status",
                   status, "errors", errors, "latency_ms", lat);
}

int load_report_json(const struct load_run *run, const char *path)
{
  json_t *j = report_json(run);
  if (!j)
    return -ENOMEM;
  int flags = JSON_INDENT(2) | JSON_PRESERVE_ORDER;
  int rc =
      strcmp(path, "-") == 0 ? json_dumpf(j, stdout, flags) : json_dump_file(j, path, flags);
  if (rc == 0 && strcmp(path, "-") == 0)
    fputc('\n', stdout);
  json_decref(j);
  return rc == 0 ? 0 : -EIO;
}
