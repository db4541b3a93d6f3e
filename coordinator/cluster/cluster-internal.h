/* cluster-internal.h: what the cluster's roles share inside one process:
 * the rank's context (configuration, transport, backend, peers) and each
 * role's entry points, called by cluster.c's event loop.
 *
 * Contract of the roles: a handler takes one received control message
 * (already unpacked by the caller's tag dispatch; it receives any data
 * buffer that follows it itself), never blocks on another rank, and parks
 * what cannot run yet; work() does at most one unit of deferred work (a
 * micro-batch forward, an eager SAM encode, filling the pipeline) and
 * returns 1 when it did something. Errors that end the rank (backend,
 * memory) are returned as a status; request errors travel in messages.
 *
 * Checklist for a new message kind: a message in proto/cluster.proto, a
 * tag in transport.h (and its name), a case in cluster.c's dispatch, the
 * handler in the role that receives it. */
#ifndef LISA_CLUSTER_INTERNAL_H
#define LISA_CLUSTER_INTERNAL_H

#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "cluster-config.h"
#include "cluster.h"
#include "cluster.pb-c.h"
#include "llama-config.h"
#include "transport.h"

typedef struct coord_role coord_role;
typedef struct stage_role stage_role;
typedef struct vision_role vision_role;

/* What the coordinator learnt of each rank at the handshake. */
typedef struct cluster_peer {
    int hello;              /* its Hello arrived */
    int pid;
    char host[300];
} cluster_peer;

/* Per-rank statistics (Stats in cluster.proto). */
typedef struct cluster_stats {
    double busy_s, active_s, wait_s;
    double first_in, last_out;     /* clock of the first micro-batch in, the last out */
    int64_t micro_batches, tokens, clip_images, sam_images, masks;
    int min_tokens, max_tokens;
} cluster_stats;

typedef struct cluster_ctx {
    const lisa_cluster_config *cfg;
    const lisa_cluster_options *opt;
    lisa_transport tr;
    int rank, world, roles, stage;  /* stage: 0-based index, -1 when not a stage */
    int bounds[LISA_CLUSTER_MAX_STAGES + 1];  /* stage s: layers [bounds[s], bounds[s+1]) */
    int max_ctx;                    /* context per slot, clamped to the model's */
    lisa_llama_config llm_cfg;
    lisa_dtype dtype;
    lisa_dtype quant;            /* the stages' load-time quantization (F32: none) */
    lisa_backend *be;               /* NULL on a coordinator-only rank */
    int gpu;                        /* CUDA device of this rank, -1 on the CPU */
    char host[300];                 /* "hostname (first IPv4 address)" */
    uint64_t model_fp;
    cluster_peer peers[LISA_CLUSTER_MAX_RANKS];
    coord_role *coord;
    stage_role *stg;
    vision_role *vis;
    int stop;                       /* non-coordinator: Shutdown received */
    double heard_at;                /* rank 0: last message, or when requests went in flight */
    int error_reported;             /* a RankError went to rank 0 */
    cluster_stats stats;
} cluster_ctx;

double cluster_now(void);
/* "rank 2 (stage 2, layers 2-3, host h (10.0.0.2))" for messages. */
void cluster_rank_describe(const cluster_ctx *x, int rank, char *buf, size_t n);

/* Rank 0's check of rank src's Hello against its own (mine): 0 when they
 * agree, else 1 with the reason, naming the rank, in why[0..n). Every field
 * of h is the other rank's word and is only compared, never used as an
 * index. */
int cluster_hello_check(const cluster_ctx *x, int src, const Lisa__Cluster__Hello *h,
                        const Lisa__Cluster__Hello *mine, char *why, size_t n);

/* Unpacks a control message of type d from another rank; NULL when it is
 * malformed: protobuf-c refuses it, or it holds a field numbered 0
 * (pb-check.h), which protobuf-c accepts but would not read back once
 * re-packed. Free with protobuf_c_message_free_unpacked. */
ProtobufCMessage *cluster_msg_unpack(const ProtobufCMessageDescriptor *d, size_t n,
                                     const uint8_t *buf);
/* Packs msg and sends it to dest on tag. */
lisa_status cluster_send_msg(cluster_ctx *x, int dest, int tag, const ProtobufCMessage *msg);
/* Sends a raw buffer (copied) on LISA_TAG_DATA after its header. */
lisa_status cluster_send_data(cluster_ctx *x, int dest, const void *buf, size_t n);
/* Reports a rank-ending error to the coordinator (or, on rank 0, records it). */
void cluster_report_error(cluster_ctx *x, lisa_status st, const char *msg);

/* --- coordinator (role-coord.c) --- */
lisa_status coord_init(cluster_ctx *x, const lisa_cluster_jobs *jobs);
void coord_free(cluster_ctx *x);
lisa_status coord_on_vision_ready(cluster_ctx *x, const Lisa__Cluster__VisionReady *m);
lisa_status coord_on_tokens(cluster_ctx *x, const Lisa__Cluster__TokenResult *m);
lisa_status coord_on_masks(cluster_ctx *x, const Lisa__Cluster__Masks *m);
/* Takes new requests and fills the pipeline up to M micro-batches. */
int coord_work(cluster_ctx *x, lisa_status *st);
/* Every request finished and reported. */
int coord_done(const cluster_ctx *x);
/* Requests admitted and not finished (each waits on some rank). */
int coord_in_flight(const cluster_ctx *x);
/* Fails every unfinished request with msg and reports it (rank failure). */
void coord_fail_all(cluster_ctx *x, const char *msg);
/* Requests done and failed so far, tokens generated. */
void coord_counts(const cluster_ctx *x, int *done, int *failed, int64_t *generated);

/* --- LLM stage (role-stage.c) --- */
lisa_status stage_init(cluster_ctx *x);
void stage_free(cluster_ctx *x);
lisa_status stage_on_features(cluster_ctx *x, int src, const Lisa__Cluster__Features *m);
/* raw: the packed MicroBatch (forwarded unchanged to the next stage). */
lisa_status stage_on_micro_batch(cluster_ctx *x, int src, Lisa__Cluster__MicroBatch *m,
                                 uint8_t *raw, size_t n_raw);
int stage_work(cluster_ctx *x, lisa_status *st);

/* --- vision (role-vision.c) --- */
lisa_status vision_init(cluster_ctx *x);
void vision_free(cluster_ctx *x);
lisa_status vision_on_prepare(cluster_ctx *x, const Lisa__Cluster__VisionPrepare *m);
lisa_status vision_on_seg_hidden(cluster_ctx *x, int src, const Lisa__Cluster__SegHidden *m);
lisa_status vision_on_finish(cluster_ctx *x, const Lisa__Cluster__VisionFinish *m);
int vision_work(cluster_ctx *x, lisa_status *st);

#endif
