/* vision.h: LISA's parts around the LLM, loaded together from one model
 * directory: the CLIP tower and the projector (image -> N features of the
 * LLM's width), SAM's image encoder, prompt encoder and mask decoder, and
 * text_hidden_fcs (the [SEG] head). The one-process engine and the
 * cluster's vision rank hold one each, so both load, size and decode masks
 * the same way.
 *
 * Model directory layout: docs/model-format.md. config.json's
 * "vision_config" is CLIP's, "sam_config" SAM's head counts,
 * mm_vision_select_layer and mm_projector_type LLaVA's.
 *
 * Deliberately not here: image decoding, caches, which images to encode
 * when (engine.c and the cluster's vision role decide), the LLM. */
#ifndef LISA_VISION_H
#define LISA_VISION_H

#include <stdint.h>

#include "backend.h"
#include "clip.h"
#include "engine.h"
#include "sam.h"
#include "seg-head.h"

#define LISA_VISION_CLIP_PREFIX "model.vision_tower.vision_model."
#define LISA_VISION_SAM_PREFIX "model.visual_model."
#define LISA_VISION_PROJ_PREFIX "model.mm_projector."
#define LISA_VISION_SAM_SIZE 1024
#define LISA_VISION_MAX_SEG 32   /* [SEG] prompts per request */
/* Images per SAM encoder pass. The encoder scratch grows by ~410 MB per
 * image for ViT-H in fp32 (half in fp16/bf16; sam.h), so 2 keeps it under
 * 1 GB while still batching images that share a request batch. */
#define LISA_VISION_SAM_IMAGES 2
#define LISA_VISION_MAX_POSTPROCESS_PIXELS ((int64_t)4096 * 4096)

typedef struct lisa_vision {
    lisa_clip_config clip_cfg;
    lisa_clip_model clip;
    lisa_projector proj;
    lisa_clip_state clip_state;  /* up to min(slots, 8) images per CLIP pass */
    lisa_sam_model sam;
    lisa_sam_state sam_state;
    lisa_seg_head seg_head;      /* text_hidden_fcs */
    int have_clip, have_proj, have_clip_state, have_sam, have_sam_state, have_seg_head;
    int n_patches;               /* N: CLIP features per image */
    int seg_dim;                 /* E: SAM prompt width */
    float *low, *iou;            /* decoder outputs (B, U*U), (B), B = sam_state.max_batch */
} lisa_vision;

/* Loads every vision part of the model in dir onto be, computing in dtype,
 * with scratch for `slots` requests at once; llm_hidden is the LLM's width
 * (the projector must output it, text_hidden_fcs takes it). Errors name the
 * missing file or tensor; on failure v holds nothing. */
lisa_status lisa_vision_load(lisa_vision *v, const char *dir, lisa_backend *be, lisa_dtype dtype,
                             int slots, int llm_hidden);
void lisa_vision_free(lisa_vision *v);

/* Masks for n_seg SAM prompts seg_emb (n_seg, E) against the selected (or
 * set) image embedding, max_batch at a time, postprocessed from the
 * (rh, rw) resize to the original (h, w): masks[j].mask (h*w, malloc'd)
 * and masks[j].iou, plus masks[j].lowres when keep_lowres. On failure the
 * masks filled so far stay for the caller to free. */
lisa_status lisa_vision_masks(lisa_vision *v, const float *seg_emb, int n_seg, int rh, int rw,
                              int h, int w, int keep_lowres, lisa_seg_mask *masks);

#endif
