/* scheduler.h: what the next engine step (in the cluster: the next
 * micro-batch) contains.
 *
 * Requests wait in a FIFO queue until a KV-cache slot and token budget are
 * free; then they are prefilled in chunks and decoded one token per step.
 * Each step is a list of items, at most one per running request: a prefill
 * chunk [pos0, pos0 + n) of its prompt, or one decode token at pos0. The
 * token count of a step never exceeds the budget, and a slot belongs to one
 * request from admission until lisa_sched_finish or a cancellation.
 *
 * Policies:
 *  - CONTINUOUS (vLLM's chunked prefill): every decoding request gets its
 *    token first, then prefilling requests get chunks in admission order
 *    from what is left of the budget, then waiting requests are admitted
 *    FIFO while a slot and budget remain. Requests join and leave between
 *    steps, so a long prompt or a long answer never stalls the others.
 *  - STATIC (the engine before continuous batching, kept for comparison):
 *    a batch of up to max_slots requests is admitted only when no request
 *    is running; the batch is prefilled (chunked under the budget) before
 *    any of it decodes, and runs until its last member finishes.
 *
 * No starvation: admission is FIFO, decode tokens always fit (the budget is
 * at least the slot count), and the oldest prefilling request gets budget
 * before younger ones.
 *
 * In a pipeline (hold_in_flight) each plan is one micro-batch: the requests
 * in it are held until their outputs come back, so the next plan is formed
 * from the others (TensorRT-LLM's in-flight request set); the budget is
 * per micro-batch.
 *
 * Deliberately not here: model code, tokens, stop conditions (the caller
 * decides a request is done and calls lisa_sched_finish), clocks, MPI. */
#ifndef LISA_SCHEDULER_H
#define LISA_SCHEDULER_H

#include <stdint.h>

#include "status.h"

typedef enum {
    LISA_SCHED_CONTINUOUS = 0,
    LISA_SCHED_STATIC
} lisa_sched_policy;

typedef struct lisa_sched_params {
    int max_slots;        /* KV-cache slots (sequences running at once) */
    int max_ctx;          /* positions per slot; a prompt must be shorter */
    int token_budget;     /* tokens per step, >= max_slots */
    lisa_sched_policy policy;
    int hold_in_flight;   /* pipelines: a planned request is held (left out of
                             later plans) until lisa_sched_release, so it is in
                             at most one micro-batch at a time */
} lisa_sched_params;

typedef enum {
    LISA_SCHED_PREFILL = 0,  /* prompt positions [pos0, pos0 + n) */
    LISA_SCHED_DECODE        /* one token at pos0 (the request's last output) */
} lisa_sched_kind;

typedef struct lisa_sched_item {
    int64_t id;           /* the caller's request id */
    void *user;           /* the caller's pointer given to lisa_sched_add */
    int slot;
    lisa_sched_kind kind;
    int pos0, n;
    int first;            /* the request's first item (admitted this step) */
    int last_chunk;       /* prefill reaching the prompt's end: its last row
                             predicts the first generated token */
} lisa_sched_item;

typedef struct lisa_sched_step {
    lisa_sched_item *items;  /* (n_items), owned by the scheduler, valid until
                                the next lisa_sched_plan */
    int n_items;
    int n_tokens;            /* sum of items' n */
} lisa_sched_step;

typedef struct lisa_sched lisa_sched;

/* LISA_ERR_ARG when a size is not positive or token_budget < max_slots. */
lisa_status lisa_sched_init(lisa_sched **out, const lisa_sched_params *p);
void lisa_sched_free(lisa_sched *s);

/* Queues a request with an n_prompt-token prompt. A prompt that cannot run
 * (empty, or not shorter than max_ctx) is LISA_ERR_ARG with the reason and
 * is not queued: it fails alone. ids must be unique among queued and
 * running requests (programmer error otherwise). */
lisa_status lisa_sched_add(lisa_sched *s, int64_t id, void *user, int n_prompt);

/* Decides the next step and advances the requests in it as if it ran
 * (prefill progress, decode positions). Returns the number of items (0:
 * nothing runnable). */
int lisa_sched_plan(lisa_sched *s, lisa_sched_step *step);

/* The request is done (or failed): its slot is free for the next plan.
 * A queued request is removed. LISA_ERR_ARG for an unknown id. */
lisa_status lisa_sched_finish(lisa_sched *s, int64_t id);

/* The micro-batch holding request id came back (hold_in_flight): it may be
 * planned again. LISA_ERR_ARG for an id that is not running. */
lisa_status lisa_sched_release(lisa_sched *s, int64_t id);

/* Removes a queued or running request before the next plan (the same as
 * finish; kept separate so traces read as what happened). */
lisa_status lisa_sched_cancel(lisa_sched *s, int64_t id);

/* Counts for callers and tests. */
int lisa_sched_n_waiting(const lisa_sched *s);
int lisa_sched_n_running(const lisa_sched *s);
int lisa_sched_n_held(const lisa_sched *s);

#endif
