/* pipeline.c: pipeline stages, the shape of the enrichment service in miniature.
 *
 *   source -> decode (2 workers) -> enrich (8 workers) -> batch (50 rows or 20 ms) -> db
 *
 * The source reads 1000 "events" as text lines. decode parses them: a bad line is counted
 * as a dead letter and dropped, it never stops the pipeline. enrich stands in for a slow
 * HTTP lookup (1-3 ms each) with 8 lookups in flight. Both are ORDERED, so events leave in
 * the order they were read (UNORDERED would let fast items overtake slow ones). The batch
 * stage groups rows for the "database", which writes a batch at a time. Bounded channels
 * join the stages, so the database's pace holds back everything before it. It ends with
 * the per-stage counts and the depth of every edge, as /metrics shows them.
 *
 *   build/release/examples/pipeline          (WEFT_PROCS sets the thread count) */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weft/weft.h>

#define N_LINES 1000

struct event {
  long id;
  long amount_cents;
  long usd_cents; /* set by enrich */
};

static atomic_long dead_letters;

/* source: one malloc'd line per event; every 97th line is garbage. */
static int read_lines(weft_ctx *ctx, weft_pipeline_emitter *out, void *arg)
{
  (void)ctx;
  (void)arg;
  for (long i = 0; i < N_LINES; i++) {
    char *line = malloc(48);
    if (i % 97 == 96)
      snprintf(line, 48, "garbage %ld", i);
    else
      snprintf(line, 48, "id=%ld amount=%ld", i, 100 + i % 900);
    int rc = weft_pipeline_emit(out, line); /* parks while the edge is full */
    if (rc != 0)
      return rc; /* the pipeline stopped: the line was freed for us */
  }
  return 0; /* end of input: the pipeline drains and ends */
}

/* decode: text -> struct event; a bad line is a dead letter, not a failure. */
static int decode(weft_ctx *ctx, void *item, weft_pipeline_emitter *out, void *arg)
{
  (void)ctx;
  (void)arg;
  char *line = item;
  struct event ev;
  int ok = sscanf(line, "id=%ld amount=%ld", &ev.id, &ev.amount_cents) == 2;
  free(line);
  if (!ok) {
    atomic_fetch_add(&dead_letters, 1);
    return 0;
  }
  struct event *e = malloc(sizeof *e);
  *e = ev;
  return weft_pipeline_emit(out, e);
}

/* enrich: a 1-3 ms "lookup" of an exchange rate. */
static int enrich(weft_ctx *ctx, void *item, weft_pipeline_emitter *out, void *arg)
{
  (void)arg;
  struct event *e = item;
  int rc = weft_sleep_ctx(ctx, (1 + e->id % 3) * 1000000);
  if (rc != 0) {
    free(e);
    return rc;
  }
  e->usd_cents = e->amount_cents * 108 / 100;
  return weft_pipeline_emit(out, e);
}

struct db {
  long rows, batches, last_id, out_of_order;
};

/* sink: "write" a batch of rows; the batch and its rows are ours to free. */
static int write_batch(weft_ctx *ctx, void *item, void *arg)
{
  (void)ctx;
  struct db *db = arg;
  weft_pipeline_batch *b = item;
  for (size_t i = 0; i < b->len; i++) {
    struct event *e = b->items[i];
    db->out_of_order += e->id < db->last_id;
    db->last_id = e->id;
  }
  db->rows += (long)b->len;
  if (db->batches++ < 3)
    printf("  batch %ld: %zu rows, events %ld..%ld\n", db->batches, b->len,
           ((struct event *)b->items[0])->id, ((struct event *)b->items[b->len - 1])->id);
  weft_pipeline_batch_free(b); /* frees the rows with enrich's free_item (free) */
  weft_sleep(500000);          /* a slow database: 0.5 ms per batch */
  return 0;
}

static void print_metrics(weft_metrics_registry *reg)
{
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  weft_metrics_write_prometheus(reg, f);
  fclose(f);
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
    if (line[0] != '#')
      printf("  %s\n", line);
  free(text);
}

static int run(void *arg)
{
  (void)arg;
  weft_metrics_registry *reg = weft_metrics_registry_new();
  struct db db = {.last_id = -1};
  weft_pipeline *p = weft_pipeline_new(
      NULL, &(weft_pipeline_options){.name = "etl", .metrics = reg, .capacity = 100});
  weft_pipeline_add_source(p, read_lines, NULL,
                           &(weft_pipeline_stage_options){.name = "source", .free_item = free});
  weft_pipeline_add_map(p, decode, NULL,
                        &(weft_pipeline_stage_options){
                            .name = "decode",
                            .workers = 2,
                            .flags = WEFT_PIPELINE_ORDERED, /* unordered would reorder */
                            .free_item = free});
  weft_pipeline_add_map(
      p, enrich, NULL,
      &(weft_pipeline_stage_options){
          .name = "enrich", .workers = 8, .flags = WEFT_PIPELINE_ORDERED, .free_item = free});
  weft_pipeline_add_batch(p, &(weft_pipeline_batch_options){
                                 .name = "batch", .max_items = 50, .max_wait = 20000000});
  weft_pipeline_add_sink(p, write_batch, &db, &(weft_pipeline_stage_options){.name = "db"});

  printf("running source -> decode -> enrich x8 (ordered) -> batch -> db\n");
  int64_t t0 = weft_now();
  int err = weft_pipeline_run(p); /* start, then wait: 0 once everything drained */
  double ms = (weft_now() - t0) / 1e6;
  printf("pipeline ended: %s in %.0f ms\n", err ? weft_strerror(err) : "ok", ms);
  printf("rows written %ld in %ld batches, dead letters %ld, out of order %ld\n", db.rows,
         db.batches, atomic_load(&dead_letters), db.out_of_order);
  printf("(8 enrich workers: ~%d ms of lookups took %.0f ms)\n", (N_LINES - 10) * 2, ms);
  printf("metrics:\n");
  print_metrics(reg);
  weft_pipeline_free(p);
  weft_metrics_registry_free(reg);
  return err || db.rows + atomic_load(&dead_letters) != N_LINES || db.out_of_order ? 1 : 0;
}

int main(void)
{
  return weft_main(run, NULL);
}
