/* cluster-plan.h: sizing a `lisa cluster` job before running it: what each
 * rank holds in memory, whether it fits its device, and how busy each
 * pipeline stage would be and how many requests per second the job would
 * serve, predicted from shapes alone (no checkpoint, no MPI, no GPU).
 *
 * Memory is counted with the loaders' own accounting: a stage's weights
 * and state are lisa_llama_model_bytes / lisa_llama_state_bytes, the same
 * numbers lisa_llama_model_load and lisa_llama_state_init allocate (tested
 * against them). The vision rank's weights are parameter counts from the
 * CLIP and SAM shapes; its state is an estimate from the buffer lists in
 * clip.h and sam.h.
 *
 * Throughput comes from a discrete-event simulation that drives the real
 * scheduler (scheduler.h, hold_in_flight, up to M micro-batches in flight)
 * over a synthetic workload: N requests of T prompt tokens and G generated
 * tokens, one image each (CLIP before the prompt, then the SAM encoder
 * while the LLM works, as the vision rank does it eagerly, and one mask
 * decode after the answer), at most `window` requests inside the job at a
 * time. Every piece of work runs on its rank's device, first come first
 * served; ranks that share a GPU share its time. Work durations come from a
 * cost model (lisa_cluster_plan_costs): per layer and micro-batch of n
 * tokens
 *     fixed + token * n + ctx * (positions read) + pair * (token, position
 *     pairs),
 * plus the LM head per output row on the last stage and one link hop of
 * (n, C) activations into every stage after the first.
 *
 * Deliberately not here: MPI, loading anything but JSON, measuring costs
 * (`lisa bench llm --layer-costs`), printing (cmd-cluster-plan.c). */
#ifndef LISA_CLUSTER_PLAN_H
#define LISA_CLUSTER_PLAN_H

#include <stddef.h>

#include "cluster-config.h"
#include "vision-random.h"

/* Seconds per unit of work on one device class and one model shape. */
typedef struct lisa_cluster_plan_costs {
    char device[64];          /* "device": what the costs are for */
    char source[32];          /* "source": "measured" or "estimate" */
    int hidden_size;          /* "hidden_size", "intermediate_size": the layer */
    int intermediate_size;    /*   shape measured (0: not stated) */
    double layer_fixed_s;     /* "layer_fixed_s": per layer per forward call */
    double layer_token_s;     /* "layer_token_s": per layer per token */
    double layer_ctx_s;       /* "layer_ctx_s": per layer per cached position an item reads */
    double layer_pair_s;      /* "layer_pair_s": per layer per (token, attended position) */
    double head_fixed_s;      /* "head_fixed_s": final norm + LM head per call */
    double head_row_s;        /* "head_row_s": per output row */
    double link_latency_s;    /* "link_latency_s": one stage-to-stage hop */
    double link_bytes_per_s;  /* "link_bytes_per_s" (0: free) */
    double clip_image_s;      /* "clip_image_s": CLIP + projector per image */
    double sam_encoder_s;     /* "sam_encoder_s": SAM image encoder per image */
    double sam_decoder_s;     /* "sam_decoder_s": SEG head + mask decoder per mask */
} lisa_cluster_plan_costs;

/* Reads a cost file (keys as in the field comments, '_' keys are notes).
 * An unknown key, a non-number or a negative cost is LISA_ERR_FORMAT
 * naming the file and the key. Keys the file lacks are 0. */
lisa_status lisa_cluster_plan_costs_load(lisa_cluster_plan_costs *c, const char *path);

typedef struct lisa_cluster_plan_params {
    lisa_cluster_config cfg;      /* checked (lisa_cluster_config_check) */
    lisa_llama_config llm;
    lisa_dtype dtype;             /* compute dtype (cfg.dtype) */
    lisa_dtype weight_dtype;      /* dtype the stage weights occupy: dtype on cuda,
                                     the checkpoint's on cpu (used in place) */
    lisa_dtype quant;             /* Q8_0 / Q4_0: the stages' projections and LM head
                                     in that type (cfg.quantize, or a converted
                                     checkpoint's); F32: none */
    lisa_clip_config clip;        /* the vision rank's models */
    int clip_layers;              /* CLIP layers loaded (L - 1 for LISA's select -2) */
    lisa_vision_sam_shape sam;
    double reserve_gb;            /* per process on a GPU: CUDA context, cuBLASLt,
                                     fragmentation (GiB) */
    /* workload */
    int n_requests, prompt_tokens, new_tokens;
    int window;                   /* requests inside the job at once (0: 2 x slots) */
} lisa_cluster_plan_params;

/* Defaults: everything zero but LISA's vision (CLIP ViT-L/14 at 224, 23
 * layers, SAM ViT-H), 1 GiB reserve, 256 requests of 300 prompt tokens (256
 * of them image tokens) and 30 generated tokens. cfg is taken as given. */
void lisa_cluster_plan_params_defaults(lisa_cluster_plan_params *p, const lisa_cluster_config *cfg,
                                       const lisa_llama_config *llm);

typedef struct lisa_cluster_plan_rank {
    int rank, roles, stage;       /* roles: lisa_cluster_role bits; stage -1 if none */
    int gpu;                      /* -1: host */
    int l0, l1;                   /* stage layers [l0, l1) */
    size_t weight_bytes;          /* stage: LLaMA range; vision: CLIP, projector, SAM, SEG head */
    size_t kv_bytes;              /* stage KV cache */
    size_t scratch_bytes;         /* stage: the state's scratch for (slots, context,
                                     budget, budget); vision: estimated state */
    size_t pipe_bytes;            /* stage: the (budget, C) activations in and out */
    size_t backend_bytes;         /* the backend's fixed op scratch */
    size_t total_bytes;
    double busy_s, utilisation;   /* simulated */
} lisa_cluster_plan_rank;

/* One memory pool: a GPU, or the host for cpu jobs. */
typedef struct lisa_cluster_plan_device {
    int gpu;                      /* -1: host */
    int n_ranks;
    size_t bytes;                 /* its ranks' totals + reserve per GPU process */
    int fits;                     /* 1 fits, 0 does not, -1 capacity unknown */
    double busy_s, utilisation;
} lisa_cluster_plan_device;

typedef struct lisa_cluster_plan {
    int bounds[LISA_CLUSTER_MAX_STAGES + 1];
    int n_ranks, n_devices;
    lisa_cluster_plan_rank ranks[LISA_CLUSTER_MAX_RANKS];
    lisa_cluster_plan_device devices[LISA_CLUSTER_MAX_RANKS];
    int fits;                     /* every device with a known capacity fits */
    /* simulation (simulated 0 when no costs were given) */
    int simulated;
    double makespan_s, requests_per_s, tokens_per_s, prompt_tokens_per_s;
    double latency_p50_s, latency_p95_s;
    long micro_batches;           /* planned */
    double mean_tokens, mean_items;  /* per micro-batch */
    char warning[256];            /* e.g. the costs' layer shape is not the model's */
} lisa_cluster_plan;

/* Sizes every rank (split resolved from the configuration) and, when
 * costs is not NULL, simulates the workload. LISA_ERR_ARG for a workload
 * that cannot run (prompt + generated tokens over the context, more new
 * tokens than max_new_tokens, a non-positive count) or a bad split. */
lisa_status lisa_cluster_plan_build(lisa_cluster_plan *plan, const lisa_cluster_plan_params *p,
                                    const lisa_cluster_plan_costs *costs);

/* Parameter counts of the vision models (for the plan and its tests). */
size_t lisa_cluster_plan_clip_params(const lisa_clip_config *c, int layers, int proj_out);
size_t lisa_cluster_plan_sam_params(const lisa_vision_sam_shape *s);

#endif
