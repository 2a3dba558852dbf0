/* weft/pipeline.h: pipeline stages joined by bounded channels, under one error group.
 *
 *   source(s) ──edge──▶ map ──edge──▶ batch ──edge──▶ sink
 *
 *   weft_pipeline *p = weft_pipeline_new(ctx, &(weft_pipeline_options){.name = "etl"});
 *   weft_pipeline_add_source(p, read_lines, file, &(weft_pipeline_stage_options){
 *                                .name = "source", .free_item = free});
 *   weft_pipeline_add_map(p, decode, NULL, &(weft_pipeline_stage_options){
 *                             .name = "decode", .workers = 8, .flags = WEFT_PIPELINE_ORDERED,
 *                             .free_item = event_free});
 *   weft_pipeline_add_batch(p, &(weft_pipeline_batch_options){.name = "batch",
 *                               .max_items = 500, .max_wait = 50 * 1000000});
 *   weft_pipeline_add_sink(p, write_rows, db, &(weft_pipeline_stage_options){.name = "sink"});
 *   int err = weft_pipeline_run(p);     // 0 once everything drained, else the first error
 *   weft_pipeline_free(p);
 *
 * Items are pointers (void *, never NULL). Whoever holds an item owns it: a stage function
 * is handed each item it receives and must pass it on (weft_pipeline_emit), free it, or
 * keep it. Items the pipeline itself drops (still in an edge, or refused by a cancelled
 * emit) are freed with the free_item function of the stage that emitted them, so a
 * pipeline cancelled mid-flight leaks nothing; with free_item NULL they are left alone.
 *
 * Semantics:
 * - Stages are added in order: one or more sources (several sources merge into one edge:
 *   fan-in), then map and batch stages, then exactly one sink, which ends the pipeline.
 * - Every stage writes into its own output edge, a bounded channel (backpressure: a slow
 *   stage parks the ones before it), and closes it once all its workers have finished;
 *   nobody else closes it. A stage ends when its input edge is closed and drained, or when
 *   the pipeline's context is done.
 * - A map or sink stage runs `workers` coroutines (fan-out). UNORDERED: each worker emits
 *   as it finishes. ORDERED: outputs leave in the order the inputs arrived, through a
 *   reorder window of `window` items (those being worked on and those waiting for an
 *   earlier one); a slow item stalls the stage once the window is full.
 * - All coroutines run in one error group (weft/group.h): the first stage function that
 *   returns an error cancels the pipeline's context, every stage stops promptly, and
 *   weft_pipeline_wait returns that error. Cancelling the parent context stops them too
 *   (wait then returns -ECANCELED or -ETIMEDOUT).
 * - Graceful drain (weft_pipeline_drain): the sources' context is cancelled, a source that
 *   then returns counts as having ended cleanly, and everything already emitted flows
 *   through to the sink; wait returns 0.
 * - Bound on memory: the items alive inside a pipeline never exceed the sum of the edge
 *   capacities, plus one per source worker, one per unordered map or sink worker, the
 *   window of every ordered stage and max_items for the batch stage (items it is
 *   gathering; the batch being sent counts as one item of its edge).
 *
 * Metrics, when the options give a registry (NULL: none; pass weft_metrics_default() to see
 * them on /metrics and the dashboard): weft_pipeline_items_total{pipeline, stage,
 * result="in|out|error|dropped"}, and every edge's depth as weft_chan_length{chan=
 * "<pipeline>/<producing stage>"} (merged sources: the first source's name) and
 * weft_chan_capacity (weft_metrics_register_chan).
 * Registration is best effort: a name already taken leaves that series out.
 *
 * Ownership: weft_pipeline_new returns a pipeline owned by the caller, freed with
 * weft_pipeline_free after weft_pipeline_wait returned (or if it never started). The
 * building calls (add_*) must not race with each other or with start. */
#ifndef WEFT_PIPELINE_H
#define WEFT_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "clock.h"
#include "common.h"
#include "ctx.h"
#include "metrics.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_pipeline weft_pipeline;
/* An emitter: where a stage function sends its outputs (borrowed for the call). */
typedef struct weft_pipeline_emitter weft_pipeline_emitter;

/* Frees an item the pipeline drops. */
typedef void (*weft_pipeline_free_fn)(void *item);

/* The default capacity of every edge. */
#define WEFT_PIPELINE_DEFAULT_CAPACITY 64

typedef struct weft_pipeline_options {
  const char *name;               /* metric label and edge name prefix; copied; default
                                     "pipeline" */
  weft_metrics_registry *metrics; /* NULL: no metrics (see above) */
  weft_clock *clock;              /* batch max_wait runs on it; NULL: the real clock */
  size_t capacity;                /* default edge capacity; 0: WEFT_PIPELINE_DEFAULT_CAPACITY */
} weft_pipeline_options;

/* Stage flags. */
#define WEFT_PIPELINE_UNORDERED 0 /* outputs leave as workers finish (the default) */
#define WEFT_PIPELINE_ORDERED   1 /* outputs leave in input order (map stages) */

typedef struct weft_pipeline_stage_options {
  const char *name;                /* unique in the pipeline; copied; default "stage<index>" */
  int workers;                     /* coroutines running the function; 0: 1 */
  int flags;                       /* WEFT_PIPELINE_ORDERED or _UNORDERED */
  size_t capacity;                 /* of the stage's output edge; 0: the pipeline's */
  size_t window;                   /* ORDERED reorder window; 0: max(workers, capacity) */
  weft_pipeline_free_fn free_item; /* frees items this stage emitted that are dropped */
} weft_pipeline_stage_options;

typedef struct weft_pipeline_batch_options {
  const char *name; /* as above */
  size_t max_items; /* a batch is sent once it holds this many items (>= 1) */
  int64_t max_wait; /* ns: a partial batch is sent this long after its first item
                       arrived (on the pipeline's clock); 0: only by size */
  size_t capacity;  /* of the output edge, in batches; 0: the pipeline's */
} weft_pipeline_batch_options;

/* What a batch stage emits. The receiver owns it and frees it with
 * weft_pipeline_batch_free, which frees every items[i] still not NULL with free_item (the
 * upstream stage's): set items[i] to NULL to keep one. */
typedef struct weft_pipeline_batch {
  size_t len;                      /* items in items[] (1 .. max_items) */
  weft_pipeline_free_fn free_item; /* the upstream stage's free_item (may be NULL) */
  void *items[];                   /* in arrival order */
} weft_pipeline_batch;

/* A source: emits items with weft_pipeline_emit until it has no more (return 0) or fails
 * (return a negative errno: fatal). ctx is the sources' context: done when the pipeline
 * is cancelled or drained; a source that returns ctx's error after weft_pipeline_drain
 * has ended cleanly. */
typedef int (*weft_pipeline_source_fn)(weft_ctx *ctx, weft_pipeline_emitter *out, void *arg);
/* A map: handed item (owned from now on, whatever it returns), emits zero or more items;
 * returns 0, or a negative errno that stops the pipeline. ctx: the pipeline's. */
typedef int (*weft_pipeline_map_fn)(weft_ctx *ctx, void *item, weft_pipeline_emitter *out,
                                    void *arg);
/* A sink: handed item (owned); returns 0 or a negative errno that stops the pipeline. */
typedef int (*weft_pipeline_sink_fn)(weft_ctx *ctx, void *item, void *arg);

/* weft_pipeline_new: an empty pipeline whose context is a child of parent (NULL:
 * background). opts may be NULL (all defaults); its strings are copied, the registry
 * and clock borrowed (they must outlive the pipeline). Returns NULL when out of memory.
 * Any thread; never parks. */
WEFT_API weft_pipeline *weft_pipeline_new(weft_ctx *parent, const weft_pipeline_options *opts);

/* weft_pipeline_add_source: add a source running fn(ctx, out, arg) in opts->workers
 * coroutines (each calls fn once). Sources must come before every other stage; several
 * merge into one edge (fan-in) whose capacity is the largest they ask for; they must all
 * give the same free_item. flags and window are ignored. opts may be NULL.
 * Returns 0; -EINVAL (fn NULL, workers < 0, a stage already follows the sources, a
 * different free_item); -EEXIST (name taken); -EBUSY (started); -ENOMEM.
 * Any thread; never parks. */
WEFT_API int weft_pipeline_add_source(weft_pipeline *p, weft_pipeline_source_fn fn, void *arg,
                                      const weft_pipeline_stage_options *opts);

/* weft_pipeline_add_map: add a map stage running fn(ctx, item, out, arg) for every item in
 * opts->workers coroutines. Returns 0; -EINVAL (fn NULL, no source yet, after the sink,
 * workers < 0, unknown flags); -EEXIST; -EBUSY; -ENOMEM. Any thread; never parks. */
WEFT_API int weft_pipeline_add_map(weft_pipeline *p, weft_pipeline_map_fn fn, void *arg,
                                   const weft_pipeline_stage_options *opts);

/* weft_pipeline_add_batch: add a stage that gathers items into weft_pipeline_batch
 * records of up to max_items, sent when full, when max_wait has passed since the batch's
 * first item, and (partial) when the input ends. One coroutine, plus one that sleeps on
 * the clock when max_wait > 0. Returns 0; -EINVAL (max_items 0, max_wait < 0, no source
 * yet, after the sink); -EEXIST; -EBUSY; -ENOMEM. Any thread; never parks. */
WEFT_API int weft_pipeline_add_batch(weft_pipeline *p, const weft_pipeline_batch_options *opts);

/* weft_pipeline_add_sink: add the last stage, running fn(ctx, item, arg) for every item in
 * opts->workers coroutines (ORDERED is ignored: a sink emits nothing). Returns as
 * add_map. Any thread; never parks. */
WEFT_API int weft_pipeline_add_sink(weft_pipeline *p, weft_pipeline_sink_fn fn, void *arg,
                                    const weft_pipeline_stage_options *opts);

/* weft_pipeline_emit: pass item downstream (takes it, in every case). Parks while the
 * output edge is full. Returns 0; or, with item freed by the stage's free_item: the
 * pipeline context's error once it is done (-ECANCELED, -ETIMEDOUT), -ENOMEM (ORDERED
 * stages keep outputs until their turn). -EINVAL if out or item is NULL (nothing freed).
 * A stage function should return promptly after an error. Call it only from the stage
 * function that was handed out, during that call. Coroutine, may park; honours the
 * pipeline's context. */
WEFT_API int weft_pipeline_emit(weft_pipeline_emitter *out, void *item);

/* weft_pipeline_start: create the edges and start every stage's coroutines. Needs a
 * source and a sink. Returns 0; -EINVAL (no source or no sink); -EBUSY (started before);
 * -ENOMEM or -EPERM when a coroutine could not start (then whatever started is cancelled
 * and joined before it returns, and wait returns the same error).
 * Coroutine, may park (only on that failure path). */
WEFT_API int weft_pipeline_start(weft_pipeline *p);

/* weft_pipeline_wait: park until every stage has ended, free the items left in the edges,
 * and return the first error a stage returned (see above), or 0 when the sources ended
 * and every item reached the sink. May be called again (returns the same); -EINVAL if
 * never started. Coroutine, may park; does not honour a context (cancel the parent or
 * call weft_pipeline_cancel to make it return sooner). */
WEFT_API int weft_pipeline_wait(weft_pipeline *p);

/* weft_pipeline_run: weft_pipeline_start, then weft_pipeline_wait. Coroutine, may park. */
WEFT_API int weft_pipeline_run(weft_pipeline *p);

/* weft_pipeline_drain: ask the sources to stop (their context is cancelled) and let what
 * they emitted drain to the sink. Idempotent; no effect before start. Does not wait.
 * Any thread; never parks. */
WEFT_API void weft_pipeline_drain(weft_pipeline *p);

/* weft_pipeline_cancel: stop every stage now (wait then returns -ECANCELED, unless a stage
 * failed first); items in flight are freed. Idempotent. Any thread; never parks. */
WEFT_API void weft_pipeline_cancel(weft_pipeline *p);

/* weft_pipeline_ctx: the pipeline's own context, a child of parent (borrowed; valid until
 * weft_pipeline_free). Cancelling it is weft_pipeline_cancel. The stage functions get a
 * child of it that is also cancelled by a failing stage and when wait returns, so this
 * one stays live after a stage failure: use it as the parent of work that should outlive
 * one pipeline run, not to learn whether the pipeline stopped. Any thread; never parks. */
WEFT_API weft_ctx *weft_pipeline_ctx(weft_pipeline *p);

/* What weft_pipeline_stage_count counts for a stage. */
typedef enum weft_pipeline_count {
  WEFT_PIPELINE_IN = 0, /* items received from the input edge (0 for sources) */
  WEFT_PIPELINE_OUT,    /* items emitted downstream (sinks: items handled without error) */
  WEFT_PIPELINE_ERROR,  /* calls of the stage function that returned an error */
  WEFT_PIPELINE_DROPPED /* items freed by the pipeline (cancellation), emitted or received */
} weft_pipeline_count;

/* weft_pipeline_stage_count: one of the counts of the stage named stage (those the metric
 * weft_pipeline_items_total shows, kept with or without a registry). Returns the count
 * (>= 0), -ENOENT for an unknown stage, -EINVAL for a bad which or NULL argument.
 * Any thread; never parks. */
WEFT_API int64_t weft_pipeline_stage_count(weft_pipeline *p, const char *stage,
                                           weft_pipeline_count which);

/* weft_pipeline_batch_free: free b's items that are not NULL (with b->free_item) and b.
 * NULL is ignored. Any thread; never parks. */
WEFT_API void weft_pipeline_batch_free(weft_pipeline_batch *b);

/* weft_pipeline_free: free p with its stages, edges and metric registrations (the metric
 * families stay in the registry). Call after weft_pipeline_wait returned, or if p never
 * started; freeing a running pipeline is a misuse (abort). NULL is ignored.
 * Any thread; never parks. */
WEFT_API void weft_pipeline_free(weft_pipeline *p);

#ifdef __cplusplus
}
#endif
#endif
