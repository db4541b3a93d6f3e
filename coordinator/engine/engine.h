/* engine.h: LISA end to end in one process, as a step-driven engine with
 * continuous batching.
 *
 * Requests are submitted one by one (image bytes, prompt, optional
 * teacher-forced answer) and join the running batch between steps; each
 * lisa_engine_step runs one scheduler step (scheduler.h): decode tokens of
 * the running requests mixed with prefill chunks of new ones under a token
 * budget; finished responses are taken with lisa_engine_take_finished. A
 * request's life:
 *   1. submit: its llava_v1 prompt is tokenized (prompt.h); an empty or too
 *      long prompt fails here, alone; the image bytes are copied;
 *   2. admission (a KV-cache slot is free): the image is decoded (EXIF
 *      applied), CLIP + projector give 256 features (once per distinct
 *      image: image-cache.h) spliced at the image placeholder;
 *   3. prefill in chunks, then greedy decoding with the KV cache, or for a
 *      teacher-forced answer (LISA's evaluation) the prefill alone;
 *   4. for each [SEG]: the final-norm hidden state of the position that
 *      predicted it -> text_hidden_fcs (seg-head.h) -> the SAM decoder's
 *      sparse prompt (dense prompt: no_mask_embed; mask token 0);
 *   5. the SAM image encoder runs for an image as soon as one of its
 *      requests emits [SEG] (once per distinct image, cached), the decoder
 *      for every [SEG] of a request when its generation ends, postprocess
 *      to the original size, threshold > 0.
 * A bad request (image missing or corrupt, prompt empty or too long) fails
 * alone with its reason in its response; a backend failure fails every
 * live request. lisa_engine_run is a loop over submit/step/take for
 * callers that have all requests up front.
 *
 * Deliberately not here: file output (results/result-write.h), queues,
 * MPI, threads (one engine is driven by one thread). */
#ifndef LISA_ENGINE_H
#define LISA_ENGINE_H

#include <stdint.h>

#include "backend.h"
#include "generate.h"
#include "image.h"
#include "scheduler.h"
#include "tokenizer.h"

typedef struct lisa_engine lisa_engine;

typedef struct lisa_engine_params {
    const char *model_dir;        /* converted model directory (docs/model-format.md) */
    lisa_backend_kind backend;
    int device;                   /* CUDA device index */
    int threads;                  /* CPU threads, <= 0: all cores */
    lisa_backend_params switches; /* the backend's switches (sync_each_launch, no_gemv,
                                     no_graphs); its kind, device and threads are
                                     the three fields above */
    lisa_dtype dtype;             /* compute dtype (F32 on the CPU) */
    lisa_dtype quantize;          /* Q8_0 / Q4_0: the LLM's projections and LM head
                                     quantized at load (lisa_llama_model_load_quant);
                                     F32 (zero): the file's types */
    int max_batch;                /* KV-cache slots: requests running at once (default 8) */
    int token_budget;             /* tokens per step, prefill chunks plus decode tokens
                                     (default 512; at least max_batch) */
    lisa_sched_policy policy;     /* continuous (default) or static batching */
    size_t cache_bytes;           /* per-image cache budget (default 512 MiB) */
    int keep_images;              /* responses carry their decoded image (overlays) */
    int ignore_eos;               /* benchmarks: generate max_new_tokens whatever the
                                     model emits (vLLM's ignore_eos) */
    int max_new_tokens;           /* default for requests that give 0 (LISA: 512) */
    int max_ctx;                  /* context reserved per sequence (default: 1024,
                                     at most max_position_embeddings) */
    lisa_image_limits limits;     /* hostile-image limits (zeros: defaults) */
} lisa_engine_params;

typedef struct lisa_request {
    const char *id;               /* caller's id (manifest custom_id), may be NULL */
    const uint8_t *image;         /* the encoded JPEG/PNG bytes (copied at submit) */
    size_t image_size;
    const char *image_path;       /* read at submit when image is NULL; also names
                                     the image in error messages */
    const char *prompt;           /* the user's instruction */
    const char *answer;           /* teacher-forced answer (e.g. "[SEG]."), or NULL */
    int max_new_tokens;           /* 0: the engine default */
} lisa_request;

typedef struct lisa_seg_mask {
    uint8_t *mask;                /* (h, w) 0/1 at the original image size */
    float iou;                    /* SAM's IoU prediction */
    float *lowres;                /* (256, 256) low-res logits, only if keep_lowres */
} lisa_seg_mask;

typedef struct lisa_response {
    int64_t handle;               /* lisa_engine_submit's handle */
    char *id;                     /* copy of the request's id, or NULL */
    lisa_status status;           /* LISA_OK, LISA_ERR_CANCELLED, or why this request failed */
    char error[256];
    char *text;                   /* decoded answer (EOS not included), as
                                     transformers' decode spells it */
    int32_t *ids;                 /* generated ids (teacher-forced: the answer's ids) */
    int n_ids;
    lisa_stop_reason stop;
    int w, h;                     /* original image size */
    int n_masks;                  /* one per [SEG], in order */
    lisa_seg_mask *masks;
    float *seg_embeddings;        /* (n_masks, prompt dim) text_hidden_fcs outputs */
    int seg_dim;
    lisa_image image;             /* the decoded image when params.keep_images, else empty */
} lisa_response;

/* Work counters since init (tests and benchmarks). */
typedef struct lisa_engine_stats {
    int64_t steps;                /* scheduler steps that ran the LLM */
    int64_t prefill_tokens, decode_tokens;
    int64_t clip_passes, clip_images;   /* CLIP forward calls and images in them */
    int64_t sam_passes, sam_images;     /* SAM encoder calls and images in them */
    int64_t sam_decodes;                /* masks decoded */
    int64_t cache_hits, cache_misses, cache_evictions;
} lisa_engine_stats;

/* Called after each request finishes (done of total), for progress bars. */
typedef void (*lisa_engine_progress_fn)(void *user, int done, int total);

/* Loads the model and reserves every buffer for params' worst case.
 * Errors name the missing file or tensor. */
lisa_status lisa_engine_init(lisa_engine **out, const lisa_engine_params *params);
void lisa_engine_free(lisa_engine *e);

/* Keeps each mask's low-res logits in the responses (tests, debugging). */
void lisa_engine_keep_lowres(lisa_engine *e, int keep);

/* Queues a request; *handle (may be NULL) names it in its response and for
 * lisa_engine_cancel. Everything the request points to is copied. A request
 * that cannot run (no image, unreadable file, empty or too long prompt)
 * still gets a handle: it is finished at once, failed with the reason.
 * Returns LISA_ERR_NOMEM only when the request could not be recorded. */
lisa_status lisa_engine_submit(lisa_engine *e, const lisa_request *r, int64_t *handle);

/* Runs one step: cancellations, admission (image decode, CLIP), one LLM
 * forward over the scheduled prefill chunks and decode tokens, then the SAM
 * encoder for images that got a [SEG] and the mask decoder for requests
 * whose generation ended. Returns LISA_OK unless the backend failed; then
 * every live request is finished with the error and later submissions fail
 * at once. An allocation failure inside a step finishes every live request
 * with LISA_ERR_NOMEM and its message, and the engine serves on (LISA_OK).
 * A step with nothing to run returns LISA_OK at once. */
lisa_status lisa_engine_step(lisa_engine *e);

/* Requests submitted and not yet finished (finished ones may still be
 * waiting to be taken). */
int lisa_engine_pending(const lisa_engine *e);

/* Moves up to max finished responses, in the order they finished, into out;
 * returns how many. The caller frees each with lisa_response_free. */
int lisa_engine_take_finished(lisa_engine *e, lisa_response *out, int max);

/* Cancels a queued or running request, effective at the next step: it
 * finishes with status LISA_ERR_CANCELLED and frees its slot. LISA_ERR_ARG
 * when no unfinished request has that handle. */
lisa_status lisa_engine_cancel(lisa_engine *e, int64_t handle);

void lisa_engine_stats_get(const lisa_engine *e, lisa_engine_stats *out);

/* Runs every request on an engine with nothing pending: submits them all,
 * steps until they finish; responses[i] answers reqs[i]. Returns LISA_OK
 * unless the backend itself failed; per-request failures are in the
 * responses. */
lisa_status lisa_engine_run(lisa_engine *e, const lisa_request *reqs, int n,
                            lisa_response *responses, lisa_engine_progress_fn progress,
                            void *user);

void lisa_response_free(lisa_response *r);

/* Starts the response of a request whose generation ended with `stop`
 * (r is cleared first): a teacher-forced answer's text is the answer
 * itself; otherwise r takes over the generated ids (*ids, n; *ids is then
 * NULL) and its text is their decoding without a final EOS, as
 * transformers' decode spells it. A decoding failure fails r with its
 * reason and is not an error; LISA_ERR_NOMEM is. The engine and the cluster
 * coordinator both answer through it. */
lisa_status lisa_response_begin(lisa_response *r, const lisa_tokenizer *tok, const char *answer,
                                int32_t **ids, int n, lisa_stop_reason stop);

#endif
