/* pipeline_internal.h: the structures pipeline.c and pipeline_batch.c share.
 *
 * Invariants (once started):
 * - Every edge is closed exactly once, by the last of its producing coroutines to finish
 *   (edge.producers counts them down); consumers never close it.
 * - Every item is owned by exactly one party at a time: an edge's buffer, one coroutine, an
 *   ORDERED slot, or a batch being gathered. Whoever owns an item when the pipeline stops
 *   frees it (counted as dropped); weft_pipeline_wait frees what the edges still hold.
 * - An ORDERED stage holds at most `window` items: its reader takes a token of sem before
 *   it receives an item, and its sequencer gives the token back once that item's outputs
 *   have left (or were dropped). Every slot put on `order` is marked done exactly once, by
 *   the worker that took it from `work` or by the reader when the hand-off failed, so the
 *   sequencer's waits always end.
 * - Coroutines that must run to the end (ORDERED workers and sequencer) wait only on
 *   channels that their own stage always closes; every other wait honours the context. */
#ifndef WEFT_PATTERNS_PIPELINE_INTERNAL_H
#define WEFT_PATTERNS_PIPELINE_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>

#include "weft/chan.h"
#include "weft/group.h"
#include "weft/pipeline.h"
#include "weft/sync.h"

enum stage_kind { KIND_SOURCE, KIND_MAP, KIND_BATCH, KIND_SINK };

#define NCOUNTS 4 /* weft_pipeline_count values */

struct stage;

/* An edge: the bounded channel a stage (or the merged sources) writes into. */
struct edge {
  weft_chan *ch;          /* void * items; owned; created by start, immutable after */
  struct stage *producer; /* the (first) producing stage: its free_item frees the items */
  size_t capacity;        /* set while building */
  atomic_int producers;   /* producing coroutines not finished; the last closes ch */
  bool registered;        /* ch exposed on the registry (start and free only) */
};

struct stage {
  weft_pipeline *p;                /* the owner; immutable */
  enum stage_kind kind;            /* immutable, as every field down to out */
  char *name;                      /* owned copy */
  int workers;                     /* coroutines running fn */
  int flags;                       /* WEFT_PIPELINE_ORDERED */
  size_t window;                   /* ORDERED: reorder window */
  weft_pipeline_free_fn free_item; /* frees this stage's outputs */
  union {
    weft_pipeline_source_fn source;
    weft_pipeline_map_fn map;
    weft_pipeline_sink_fn sink;
  } fn;
  void *arg;
  size_t max_items;              /* batch */
  int64_t max_wait;              /* batch, ns; 0: size only */
  struct edge *in, *out;         /* in: NULL for sources; out: NULL for the sink */
  atomic_llong counts[NCOUNTS];  /* atomic, relaxed: statistics only */
  weft_counter *metric[NCOUNTS]; /* borrowed from the registry, or NULL; set by start */
  /* ORDERED, created by start: */
  weft_sem *sem;    /* window tokens */
  weft_chan *order; /* struct slot *, in input order, capacity window */
  weft_chan *work;  /* struct slot *, unbuffered hand-off to the workers */
  /* batch with max_wait, created by start: */
  weft_chan *doorbell; /* int, capacity 1: "a deadline was armed" (batcher -> timer) */
  weft_chan *tick;     /* int, capacity 1: "a deadline may have passed" (timer -> batcher) */
  weft_ctx *timer_ctx; /* owned; cancelled by the batcher when it ends */
  _Atomic int64_t deadline; /* the gathering batch's flush time; 0: none */
};

struct weft_pipeline_emitter {
  struct stage *st;  /* the emitting stage */
  weft_ctx *ctx;     /* the pipeline group's context */
  struct slot *slot; /* ORDERED: outputs wait here for their turn; else NULL */
};

struct weft_pipeline {
  char *name;                     /* owned copy */
  weft_metrics_registry *metrics; /* borrowed, or NULL */
  weft_clock *clock;              /* borrowed; never NULL */
  size_t capacity;                /* default edge capacity */
  weft_ctx *ctx;                  /* owned; child of the parent */
  weft_group *group;              /* owned; created by start */
  weft_ctx *src_ctx;              /* owned; the sources' context, child of the group's */
  struct stage **stages;          /* owned, in order; building only, then immutable */
  size_t nstages, stages_cap;
  struct edge **edges; /* owned, in order */
  size_t nedges, edges_cap;
  bool has_sink;        /* building only */
  int state;            /* BUILDING, RUNNING, DONE: owner only (start, wait, free) */
  atomic_bool draining; /* weft_pipeline_drain was called */
  int result;           /* wait's result; owner only */
};

/* Count n items of stage st as which (statistics and the metric). Any thread. */
void weft__pipeline_count(struct stage *st, int which, long long n);
/* Free an item st emitted (or its input, in_edge true) that the pipeline drops. */
void weft__pipeline_drop(struct stage *st, void *item, bool in_edge);
/* The last producer of an edge closes it. */
void weft__pipeline_producer_done(struct edge *e);
/* Name the running coroutine after the stage, for dumps. */
void weft__pipeline_name_self(struct stage *st);

/* pipeline_batch.c: create the channels and start the coroutines of a batch stage. */
int weft__pipeline_batch_prepare(struct stage *st, weft_ctx *group_ctx);
int weft__pipeline_batch_start(struct stage *st);
void weft__pipeline_batch_release(struct stage *st);
/* The free_item of a batch stage. */
void weft__pipeline_batch_free_cb(void *batch);

#endif
