/* preprocess.h: LISA's two image preprocessing branches, bit-exact.
 *
 * CLIP branch (transformers 4.31 CLIPImageProcessor with the
 * openai/clip-vit-large-patch14 settings, as LISA's chat.py calls it on the
 * RGB array): short side to `size` with Pillow BICUBIC, long side
 * int(size*long/short) (truncated); center crop size x size at
 * top=(h-size)//2, left=(w-size)//2; x = (float)((double)u8 * (1/255));
 * (x - mean) / std in float32; CHW.
 *
 * SAM branch (segment-anything ResizeLongestSide + chat.py's preprocess):
 * scale = long_side/max(h,w), newh = int(h*scale+0.5), neww likewise;
 * Pillow BILINEAR resize; ((float)u8 - mean) / std in float32 with SAM's
 * pixel mean/std on 0..255 values; CHW, zero-padded right and bottom to
 * pad x pad (after normalisation, so padding is 0.0).
 *
 * Both match the Python float32 results exactly (no FMA; ISO C float
 * evaluation). Deliberately not here: the bf16/fp16 cast of the run dtype,
 * LLaVA-1.5's expand2square padding, transformers' channel-format guess
 * that treats an HWC array whose height is 1 or 3 as CHW (a transformers
 * quirk for images 1 or 3 pixels tall; we always treat input as HWC), and
 * mask postprocessing (the resize/original sizes are returned for it). */
#ifndef LISA_PREPROCESS_H
#define LISA_PREPROCESS_H

#include "image.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One branch's output. Owned: release with lisa_preprocessed_free. */
typedef struct {
    lisa_image resized;       /* uint8 image the model sees before normalising:
                                 CLIP: the size x size crop; SAM: new_h x new_w,
                                 unpadded */
    float *chw;               /* 3 x tensor_h x tensor_w, normalised */
    int tensor_h, tensor_w;   /* CLIP: size x size; SAM: pad x pad */
    int orig_h, orig_w;       /* input image size */
    int resize_h, resize_w;   /* size after the resize (CLIP: before the crop) */
} lisa_preprocessed;

/* CLIP's shortest-edge resize size for an h x w image: (*rh, *rw). */
void lisa_preprocess_clip_size(int h, int w, int size, int *rh, int *rw);
/* SAM's ResizeLongestSide size for an h x w image: (*nh, *nw). */
void lisa_preprocess_sam_size(int h, int w, int long_side, int *nh, int *nw);

/* The normalised value of uint8 v in channel c (0..2) for each branch:
 * the elementwise maps the tensors are made of. */
float lisa_preprocess_clip_value(int c, uint8_t v);
float lisa_preprocess_sam_value(int c, uint8_t v);

/* CLIP branch of img (size: 224 for ViT-L/14, 336 for -336). On failure
 * *out is empty. LISA_ERR_ARG for size < 1 or an empty image. */
lisa_status lisa_preprocess_clip(const lisa_image *img, int size, lisa_preprocessed *out);

/* SAM branch of img: long side to long_side (1024), padded to pad x pad
 * (1024; pad >= long_side, LISA_ERR_ARG otherwise). On failure *out is
 * empty. */
lisa_status lisa_preprocess_sam(const lisa_image *img, int long_side, int pad,
                                lisa_preprocessed *out);

/* Releases *p's buffers and empties it. Safe on an empty one. */
void lisa_preprocessed_free(lisa_preprocessed *p);

#ifdef __cplusplus
}
#endif

#endif
