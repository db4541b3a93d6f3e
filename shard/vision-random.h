/* vision-random.h: CLIP and SAM models with random weights in named shapes,
 * for benchmarks (`lisa bench vision`) and tests.
 *
 * The models are built through the normal loaders: a safetensors file with
 * every tensor the loader's weight table names, at the preset's shapes, is
 * written to a fresh temporary folder ($TMPDIR, else /tmp), loaded, and
 * removed again before the call returns (on the CPU the weights stay usable
 * from the unlinked file's mapping). That keeps one loading path for real
 * and random models, at the price of writing the file once (1.3 GB for SAM
 * ViT-H in bf16).
 *
 * Values: linear/conv weights, embeddings, relative positions, tokens and
 * biases N(0, 0.02) (Irwin-Hall approximation, drawn from one pool reused
 * cyclically: the benchmark needs shapes, not independent weights); norm
 * scales 1, norm shifts 0; SAM's Fourier matrix N(0, 1).
 *
 * Presets:
 *   CLIP (HF CLIPVisionModel layout, quick_gelu, eps 1e-5):
 *     l14   openai/clip-vit-large-patch14: C 1024, 24 layers, 16 heads,
 *           I 4096, image 224, patch 14 (LISA's tower)
 *     b16   openai/clip-vit-base-patch16: C 768, 12 layers, 12 heads,
 *           I 3072, image 224, patch 16
 *     tiny  tests: C 32, 2 layers, 2 heads, I 64, image 224, patch 14
 *   SAM (segment-anything's build_sam shapes, input 1024, patch 16,
 *   window 14, MLP 4D; mask decoder C 256, 2 layers, 8 heads, MLP 2048,
 *   4 mask tokens, IoU head 256):
 *     vit_b  D 768, depth 12, 12 heads, global blocks 2, 5, 8, 11
 *     vit_l  D 1024, depth 24, 16 heads, global blocks 5, 11, 17, 23
 *     vit_h  D 1280, depth 32, 16 heads, global blocks 7, 15, 23, 31
 *     tiny   tests: D 32, depth 2, 2 heads, global block 1, neck/decoder
 *            C 32, decoder 2 heads, MLP 64, IoU head 32 (the real 1024 input)
 *
 * Deliberately not here: timing (coordinator/cli/cmd-bench.c), the LLaMA
 * decoder (lisa_llama_model_init_random fills its buffers directly). */
#ifndef LISA_VISION_RANDOM_H
#define LISA_VISION_RANDOM_H

#include <stdint.h>

#include "clip.h"
#include "sam.h"

/* The CLIP tower of preset `name` and the hidden_states index LISA reads
 * (select_layer, -2). LISA_ERR_ARG naming the presets for an unknown name. */
lisa_status lisa_vision_clip_preset(const char *name, lisa_clip_config *cfg, int *select_layer);

/* A SAM shape: everything the checkpoint's tensor shapes encode, plus the
 * decoder heads (not in the shapes; lisa_sam_options.decoder_heads). */
typedef struct lisa_vision_sam_shape {
    int embed_dim;                      /* D */
    int depth;
    int num_heads;
    int patch;                          /* 16 */
    int grid;                           /* 64: input grid * patch = 1024 */
    int window;                         /* 14 */
    int global[LISA_SAM_MAX_BLOCKS];    /* 1 when block N attends globally */
    int dim;                            /* C: neck, prompt and decoder width */
    int dec_depth;                      /* 2 */
    int dec_heads;                      /* 8 */
    int dec_mlp_dim;                    /* 2048 */
    int num_mask_tokens;                /* 4 */
    int iou_hidden;                     /* 256 */
} lisa_vision_sam_shape;

/* The SAM shape of preset `name`; LISA_ERR_ARG for an unknown name. */
lisa_status lisa_vision_sam_preset(const char *name, lisa_vision_sam_shape *shape);

/* Random CLIP tower with config cfg for hidden_states[select_layer] (only
 * the layers that needs are made), weights stored in wdtype (host backends
 * use them in that dtype; others convert them to `dtype` on upload),
 * computing in dtype. The model is as lisa_clip_model_load leaves it. */
lisa_status lisa_vision_random_clip(lisa_clip_model *m, const lisa_clip_config *cfg,
                                    int select_layer, lisa_backend *be, lisa_dtype wdtype,
                                    lisa_dtype dtype, uint64_t seed);

/* Random SAM (image encoder, the prompt encoder's dense parts, mask
 * decoder) of `shape`, weights stored in wdtype, computing in dtype. The
 * model is as lisa_sam_model_load leaves it. */
lisa_status lisa_vision_random_sam(lisa_sam_model *m, const lisa_vision_sam_shape *shape,
                                   lisa_backend *be, lisa_dtype wdtype, lisa_dtype dtype,
                                   uint64_t seed);

#endif
