/* cluster-config.h: what a `lisa cluster` job is made of, before any MPI:
 * the configuration (a JSON file under configs/ overridden by flags), the
 * LLM layer split across the P pipeline stages, and which MPI rank plays
 * which role.
 *
 * Roles: the coordinator (reads jobs, tokenizes, schedules micro-batches,
 * writes results), P LLM stages (stage s holds layers [split[s],
 * split[s+1]); the first also the embedding table, the last the final norm
 * and LM head), and the vision role (CLIP + projector, SAM, text_hidden_fcs,
 * mask decoder). Default placement: rank 0 coordinator, ranks 1..P the
 * stages, rank P+1 vision (P + 2 ranks); "vision": "coordinator" puts the
 * vision role on rank 0 (P + 1 ranks).
 *
 * Deliberately not here: MPI (cluster.h), model loading, the plan's cost
 * model (cluster-plan.h). */
#ifndef LISA_CLUSTER_CONFIG_H
#define LISA_CLUSTER_CONFIG_H

#include <stddef.h>

#include "backend.h"
#include "dtype.h"
#include "llama-config.h"
#include "status.h"

#define LISA_CLUSTER_MAX_STAGES 64
#define LISA_CLUSTER_MAX_RANKS (LISA_CLUSTER_MAX_STAGES + 2)

typedef enum {
    LISA_CLUSTER_VISION_OWN = 0,      /* its own rank, P + 1 */
    LISA_CLUSTER_VISION_COORDINATOR   /* shares rank 0 */
} lisa_cluster_vision_placement;

typedef enum {
    LISA_CLUSTER_ROLE_COORDINATOR = 1,
    LISA_CLUSTER_ROLE_STAGE = 2,
    LISA_CLUSTER_ROLE_VISION = 4
} lisa_cluster_role;

typedef struct lisa_cluster_config {
    char model_dir[4096];     /* "model" */
    int stages;               /* "stages": P >= 1 */
    /* "layers": "" or "balanced" (by parameter bytes, the LM head counted as
     * half a layer, the embedding as none), counts "20,20" (like
     * VLLM_PP_LAYER_PARTITION) or ranges "0-19,20-39" (inclusive) */
    char layers[512];
    int micro_batches;        /* "micro_batches": M, 0: P */
    int token_budget;         /* "token_budget": tokens per micro-batch (default 512) */
    int slots;                /* "slots": KV-cache sequences per stage (default 8) */
    int max_ctx;              /* "context": positions per sequence (default 1024) */
    int max_new_tokens;       /* "max_new_tokens" (default 512) */
    char device[32];          /* "device": "cpu" or "cuda" */
    char dtype[8];            /* "dtype": fp32, bf16, fp16 ("" : fp32 cpu, bf16 cuda) */
    char quantize[8];         /* "quantize": q8_0, q4_0: the stages' projections and LM
                                 head quantized at load ("" or "none": the file's types) */
    /* "gpus": explicit GPU index per rank ([-1, 0, 1, 0]: -1 none); empty
     * (n_gpu_map 0): the local rank among the node's ranks that use a GPU */
    int gpu_map[LISA_CLUSTER_MAX_RANKS];
    int n_gpu_map;
    int threads;              /* "threads": CPU threads per rank (0: all cores) */
    lisa_cluster_vision_placement vision;  /* "vision": "own" | "coordinator" */
    double startup_timeout_s; /* "startup_timeout_s": handshake bound (default 300) */
    double stall_timeout_s;   /* "stall_timeout_s": rank 0 ends the job when no rank answered
                               * for this long with requests in flight (default 120; 0 never) */
    double device_memory_gb;  /* "device_memory_gb": per GPU, for the plan (0: unknown) */
} lisa_cluster_config;

/* Defaults: P 1, M = P, budget 512, 8 slots, context 1024, 512 new tokens,
 * cpu, vision on its own rank, 300 s startup timeout, 120 s stall timeout. */
void lisa_cluster_config_defaults(lisa_cluster_config *c);

/* Reads a JSON configuration over c (keys as in the field comments; keys
 * the file lacks keep their value, keys starting with '_' such as
 * "_comment" are notes and ignored). An unknown key, a value of the wrong
 * type or out of range is LISA_ERR_FORMAT naming the file and the key; a
 * missing file LISA_ERR_IO. A relative "model" is taken relative to the
 * file's directory. */
lisa_status lisa_cluster_config_load(lisa_cluster_config *c, const char *path);

/* Checks the values that do not need the model: P in [1, MAX_STAGES],
 * M >= 1 (0 becomes P), budget >= slots >= 1, context >= 2, dtype and
 * device spelled right (dtype "" becomes fp32 on cpu, bf16 on cuda; a
 * non-fp32 dtype on cpu is LISA_ERR_UNSUPPORTED), "gpus", when given,
 * listing exactly lisa_cluster_world_size ranks, startup timeout > 0.
 * Other failures are LISA_ERR_ARG naming the key. */
/* The block type of c->quantize (Q8_0, Q4_0), or F32 when none. */
lisa_dtype lisa_cluster_config_quant(const lisa_cluster_config *c);
lisa_status lisa_cluster_config_check(lisa_cluster_config *c);

/* The layer split for a model of cfg's shape: bounds (P + 1) with stage s
 * holding [bounds[s], bounds[s+1]). Errors are LISA_ERR_ARG quoting the
 * "layers" value and naming what is wrong (stages numbered from 1): a
 * syntax error, a range list out of order or past the last layer, a range list
 * with a gap or an overlap ("layers 10-11 are in no stage", "layer 12 is in
 * stages 1 and 2"), a count list whose sum is not the layer count, a count
 * that does not match P, more stages than layers, a zero-layer stage.
 * Balanced: contiguous ranges that minimise the heaviest stage's parameter
 * bytes, the last stage's LM head (+ final norm) counted as half a layer
 * (it runs on the output rows only), the embedding (a lookup) as none.
 * Ties go to the split with the fewest layers on the last stage, then on
 * the one before it, and so on: LISA-13B's 40 layers split 40, 20+20,
 * 14+14+12 and 10+10+10+10 on 1 to 4 stages. */
lisa_status lisa_cluster_split_resolve(const lisa_cluster_config *c, const lisa_llama_config *cfg,
                                       int *bounds);

/* Which roles rank r plays (a lisa_cluster_role bit mask; 0: none) and,
 * for a stage rank, its stage index (0-based) in *stage. */
int lisa_cluster_rank_roles(const lisa_cluster_config *c, int rank, int *stage);
/* Ranks the configuration needs: P + 2, or P + 1 with vision on rank 0. */
int lisa_cluster_world_size(const lisa_cluster_config *c);
/* Rank of stage s (0-based), of the vision role, of the coordinator. */
int lisa_cluster_stage_rank(const lisa_cluster_config *c, int s);
int lisa_cluster_vision_rank(const lisa_cluster_config *c);

#endif
