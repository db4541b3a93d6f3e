/* engine.h: LISA end to end in one process: N (image, prompt) requests in,
 * N results (answer text, one mask per generated [SEG]) out.
 *
 * The same entry point serves `lisa segment`, `lisa eval`, and later the
 * Redis worker and the cluster's coordinator. Per batch of requests:
 *   1. decode every distinct image once (EXIF applied); tokenize the llava_v1
 *      prompt (prompt.h); a request whose image or prompt is bad fails alone;
 *   2. CLIP on the 224 crop -> projector -> 256 features spliced at the
 *      image placeholder (one CLIP pass per distinct image);
 *   3. greedy generation with a KV cache (all requests batched), or a single
 *      teacher-forced forward when an answer is given (LISA's evaluation);
 *   4. for each [SEG]: the final-norm hidden state of the position that
 *      predicted it -> text_hidden_fcs -> the SAM decoder's sparse prompt
 *      (dense prompt: no_mask_embed; mask token 0);
 *   5. the SAM image encoder once per distinct image that got a [SEG], the
 *      decoder for all of that image's prompts, postprocess to the original
 *      size, threshold > 0.
 *
 * Deliberately not here: file output (PNG, RLE, JSON), queues, MPI. */
#ifndef LISA_ENGINE_H
#define LISA_ENGINE_H

#include <stdint.h>

#include "backend.h"
#include "generate.h"
#include "image.h"

typedef struct lisa_engine lisa_engine;

typedef struct lisa_engine_params {
    const char *model_dir;        /* converted model directory (docs/model-format.md) */
    lisa_backend_kind backend;
    int device;                   /* CUDA device index */
    int threads;                  /* CPU threads, <= 0: all cores */
    lisa_dtype dtype;             /* compute dtype (F32 on the CPU) */
    int max_batch;                /* requests decoded together (default 8) */
    int max_new_tokens;           /* default for requests that give 0 (LISA: 512) */
    int max_ctx;                  /* context reserved per sequence (default: 1024,
                                     at most max_position_embeddings) */
    lisa_image_limits limits;     /* hostile-image limits (zeros: defaults) */
} lisa_engine_params;

typedef struct lisa_request {
    const char *id;               /* caller's id (manifest custom_id), may be NULL */
    const char *image_path;
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
    lisa_status status;           /* LISA_OK, or why this request failed */
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
} lisa_response;

/* Called after each request finishes (done of total), for progress bars. */
typedef void (*lisa_engine_progress_fn)(void *user, int done, int total);

/* Loads the model and reserves every buffer for params' worst case.
 * Errors name the missing file or tensor. */
lisa_status lisa_engine_init(lisa_engine **out, const lisa_engine_params *params);
void lisa_engine_free(lisa_engine *e);

/* Keeps each mask's low-res logits in the responses (tests, debugging). */
void lisa_engine_keep_lowres(lisa_engine *e, int keep);

/* Runs every request; responses[i] answers reqs[i]. Returns LISA_OK unless
 * the backend itself failed; per-request failures are in the responses. */
lisa_status lisa_engine_run(lisa_engine *e, const lisa_request *reqs, int n,
                            lisa_response *responses, lisa_engine_progress_fn progress,
                            void *user);

void lisa_response_free(lisa_response *r);

#endif
