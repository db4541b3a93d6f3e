/* sam.h: Segment Anything (SAM) on one backend: ViT image encoder, the
 * prompt encoder's dense parts and the two-way mask decoder, plus mask
 * postprocessing, as LISA uses them.
 *
 * A lisa_sam_model holds read-only weights in the original checkpoint
 * layout (`image_encoder.*`, `prompt_encoder.*`, `mask_decoder.*`) under an
 * optional name prefix (LISA: "model.visual_model."). The configuration is
 * read from the tensor shapes (ViT-B/L/H or any other size):
 *   - embed dim D and patch size from image_encoder.patch_embed.proj.weight
 *     (D, 3, p, p); the grid from image_encoder.pos_embed (1, G, G, D), so
 *     the input is G*p pixels square (1024 for SAM);
 *   - depth by counting image_encoder.blocks.N;
 *   - per block, global attention when rel_pos_h has 2G-1 rows, else
 *     windowed with window (rows+1)/2 (14 for SAM);
 *   - encoder heads = D / rel_pos_h's second dim (the head dim): 1280/80 =
 *     16 (H), 1024/64 = 16 (L), 768/64 = 12 (B). SAM does not store its
 *     num_heads, but with use_rel_pos (always true in SAM) the head dim is in
 *     the tensors. An explicit lisa_sam_options.encoder_heads is checked
 *     against it;
 *   - neck / prompt dim C from image_encoder.neck.0.weight (C, D, 1, 1);
 *   - decoder depth by counting mask_decoder.transformer.layers.N, MLP width
 *     from mlp.lin1, attention downsample from the cross-attention q_proj
 *     (C/r, C), mask tokens from mask_decoder.mask_tokens.weight (M, C),
 *     upscaling widths from output_upscaling.{0,3}.weight.
 *   - decoder heads are NOT derivable from any shape: SAM uses 8 for every
 *     variant, the default here; lisa_sam_options.decoder_heads overrides it
 *     (small test models).
 *
 * The per-request lisa_sam_state holds scratch reserved once at init (the
 * hot path never allocates), the image embeddings of the last encoder pass
 * and the last decoder outputs. The image encoder runs once per image, on a
 * batch of up to max_images images in one pass (lisa_sam_encode_batch;
 * lisa_sam_encode is a batch of one); lisa_sam_select_embedding picks the
 * image the decoder reads, which then runs for any number of sparse prompts
 * against that one embedding (lisa_sam_decode, batched max_batch at a time),
 * and lisa_sam_postprocess turns a prompt's low-res logits into
 * original-size logits and a binary mask.
 *
 * Encoder scratch grows linearly with max_images: per image 3 S^2 (input)
 * + T max(3 p^2, 9 C) (im2col) + 2 T D + 9 Tw D (windows, qkv, q, k, v,
 * attention, projection; Tw = 4900 padded window rows for T = 4096) + T 4D
 * (MLP) + 2 T C elements: ~410 MB for ViT-H in fp32 (~340 MB ViT-L, ~270 MB
 * ViT-B; half in fp16/bf16).
 *
 * Shapes (channels-last throughout): B images per encoder pass, G grid
 * (64), T = G*G tokens, D encoder width, C prompt/decoder width (256), M mask
 * tokens (4), n prompts, Ns sparse tokens per prompt, U = 4G (256) low-res
 * mask side.
 *
 * Deliberately not here: image decoding and preprocessing (coordinator/
 * preprocess.h makes the (3, 1024, 1024) input), point/box prompts and mask
 * prompts (LISA's sparse prompt is the [SEG] embedding and its dense prompt
 * is no_mask_embed; prompt_encoder.point_embeddings, not_a_point_embed and
 * mask_downscaling are not loaded), the text_hidden_fcs projection that
 * makes LISA's [SEG] embeddings, and batching the decoder's prompts across
 * images (each decode pass reads one selected embedding).
 * Reduced precision follows LISA's get_dense_pe (computed in the compute
 * dtype: the Gaussian matrix, the product and 2pi z rounded to it) but not
 * its fp16 neck, which LISA runs in fp32 under autocast (lisa-inference.md
 * §1.8); here the neck runs in the compute dtype. */
#ifndef LISA_SAM_H
#define LISA_SAM_H

#include <stdint.h>

#include "backend.h"
#include "safetensors.h"
#include "weights.h"

#define LISA_SAM_MAX_BLOCKS 64
#define LISA_SAM_MAX_DEC_LAYERS 8

typedef struct lisa_sam_config {
    /* image encoder */
    int embed_dim;        /* D */
    int depth;            /* blocks */
    int num_heads;        /* encoder heads */
    int head_dim;         /* D / num_heads */
    int mlp_dim;          /* 4D */
    int patch;            /* 16 */
    int grid;             /* G: 64 */
    int img_size;         /* G * patch: 1024 */
    int window;           /* 14 (windowed blocks) */
    int n_global;         /* global blocks */
    int global[LISA_SAM_MAX_BLOCKS];  /* 1 when block N attends globally */
    /* prompt encoder and mask decoder */
    int dim;              /* C: neck output, prompt and decoder width (256) */
    int dec_depth;        /* two-way transformer layers (2) */
    int dec_heads;        /* 8 */
    int dec_mlp_dim;      /* 2048 */
    int dec_cross_dim;    /* cross-attention internal width C / downsample (128) */
    int num_mask_tokens;  /* M: 4 */
    int iou_hidden;       /* 256 */
    int up1, up2;         /* output upscaling widths C/4, C/8 (64, 32) */
} lisa_sam_config;

/* Load options; zero fields take the defaults. */
typedef struct lisa_sam_options {
    const char *prefix;   /* prepended to every tensor name; NULL = "" */
    int encoder_heads;    /* 0: from rel_pos_h (D / head dim); else checked */
    int decoder_heads;    /* 0: 8 (SAM) */
} lisa_sam_options;

typedef struct lisa_sam_block {
    lisa_tensor norm1_w, norm1_b;  /* image_encoder.blocks.N.norm1.{weight,bias} (D) */
    lisa_tensor qkv_w;             /* image_encoder.blocks.N.attn.qkv.weight (3D, D) */
    lisa_tensor qkv_b;             /* image_encoder.blocks.N.attn.qkv.bias (3D) */
    lisa_tensor proj_w;            /* image_encoder.blocks.N.attn.proj.weight (D, D) */
    lisa_tensor proj_b;            /* image_encoder.blocks.N.attn.proj.bias (D) */
    lisa_tensor rel_pos_h;         /* image_encoder.blocks.N.attn.rel_pos_h (2S-1, D/heads) */
    lisa_tensor rel_pos_w;         /* image_encoder.blocks.N.attn.rel_pos_w (2S-1, D/heads) */
    lisa_tensor norm2_w, norm2_b;  /* image_encoder.blocks.N.norm2.{weight,bias} (D) */
    lisa_tensor lin1_w, lin1_b;    /* image_encoder.blocks.N.mlp.lin1.{weight (4D, D), bias (4D)} */
    lisa_tensor lin2_w, lin2_b;    /* image_encoder.blocks.N.mlp.lin2.{weight (D, 4D), bias (D)} */
} lisa_sam_block;

/* One decoder Attention module (q/k/v/out projections with bias). */
typedef struct lisa_sam_attn {
    lisa_tensor q_w, q_b;   /* PFX.q_proj.{weight (I, C), bias (I)} */
    lisa_tensor k_w, k_b;   /* PFX.k_proj.{weight (I, C), bias (I)} */
    lisa_tensor v_w, v_b;   /* PFX.v_proj.{weight (I, C), bias (I)} */
    lisa_tensor o_w, o_b;   /* PFX.out_proj.{weight (C, I), bias (C)} */
    int inner;              /* I: C (self) or C / downsample (cross) */
} lisa_sam_attn;

typedef struct lisa_sam_dec_layer {
    /* mask_decoder.transformer.layers.L.* */
    lisa_sam_attn self_attn;       /* .self_attn (I = C) */
    lisa_sam_attn cross_t2i;       /* .cross_attn_token_to_image (I = C/2) */
    lisa_sam_attn cross_i2t;       /* .cross_attn_image_to_token (I = C/2) */
    lisa_tensor norm_w[4], norm_b[4];  /* .norm{1,2,3,4}.{weight,bias} (C) */
    lisa_tensor lin1_w, lin1_b;    /* .mlp.lin1.{weight (mlp, C), bias (mlp)} */
    lisa_tensor lin2_w, lin2_b;    /* .mlp.lin2.{weight (C, mlp), bias (C)} */
} lisa_sam_dec_layer;

/* A 3-layer MLP with ReLU between layers (hypernetworks, IoU head). */
typedef struct lisa_sam_mlp3 {
    lisa_tensor w[3], b[3];   /* PFX.layers.{0,1,2}.{weight,bias}: (h, C), (h, h), (out, h) */
} lisa_sam_mlp3;

typedef struct lisa_sam_model {
    lisa_sam_config cfg;
    /* image encoder */
    lisa_tensor patch_w;      /* image_encoder.patch_embed.proj.weight (D, 3, p, p) */
    lisa_tensor patch_b;      /* image_encoder.patch_embed.proj.bias (D) */
    lisa_tensor pos_embed;    /* image_encoder.pos_embed (1, G, G, D) */
    lisa_sam_block *blocks;   /* (depth) */
    lisa_tensor neck0_w;      /* image_encoder.neck.0.weight (C, D, 1, 1), no bias */
    lisa_tensor neck1_w, neck1_b;  /* image_encoder.neck.1.{weight,bias} (C): LayerNorm2d */
    lisa_tensor neck2_w;      /* image_encoder.neck.2.weight (C, C, 3, 3), no bias */
    lisa_tensor neck3_w, neck3_b;  /* image_encoder.neck.3.{weight,bias} (C): LayerNorm2d */
    /* prompt encoder */
    lisa_tensor no_mask_embed;  /* prompt_encoder.no_mask_embed.weight (1, C) */
    lisa_tensor dense_pe;       /* get_dense_pe() (T, C) channels-last, computed at load
                                   from prompt_encoder.pe_layer.positional_encoding_gaussian_matrix
                                   (2, C/2) */
    /* mask decoder */
    lisa_sam_dec_layer dec_layers[LISA_SAM_MAX_DEC_LAYERS];
    lisa_sam_attn final_attn;       /* mask_decoder.transformer.final_attn_token_to_image */
    lisa_tensor final_norm_w, final_norm_b;  /* mask_decoder.transformer.norm_final_attn (C) */
    lisa_tensor up0_w, up0_b;   /* mask_decoder.output_upscaling.0.{weight (C, C/4, 2, 2), bias} */
    lisa_tensor up1_w, up1_b;   /* mask_decoder.output_upscaling.1.{weight,bias} (C/4), LN2d */
    lisa_tensor up3_w, up3_b;   /* mask_decoder.output_upscaling.3.{weight (C/4, C/8, 2, 2),
                                   bias (C/8)} */
    lisa_sam_mlp3 *hyper;       /* mask_decoder.output_hypernetworks_mlps.i, i < M:
                                   C -> C -> C -> C/8 */
    lisa_sam_mlp3 iou_head;     /* mask_decoder.iou_prediction_head: C -> h -> h -> M */
    float *tokens_host;         /* (1 + M, C) fp32: mask_decoder.iou_token.weight (1, C) then
                                   mask_decoder.mask_tokens.weight (M, C) */
    float *dense_pe_host;       /* (T, C) fp32: the same as dense_pe, on the host */
    lisa_dtype dtype;           /* activations (F32 on the CPU) */
    lisa_backend *be;           /* not owned */
    lisa_safetensors *st;       /* owned: MATMUL weights may point into its mmap */
    lisa_weights weights;       /* owned backend buffer of converted weights */
    void *pe_buffer;            /* owned backend buffer behind dense_pe */
} lisa_sam_model;

/* Reads the head counts a converted LISA model directory records in its
 * config.json text (len bytes) under "sam_config" (encoder_num_heads,
 * decoder_num_heads) into o; absent members leave o unchanged. Text that is
 * not JSON is LISA_ERR_FORMAT. (docs/model-format.md) */
lisa_status lisa_sam_options_parse(lisa_sam_options *o, const char *json, size_t len);

/* Loads SAM from `path` (a .safetensors file, an index or a directory, see
 * safetensors.h) to compute in `dtype` (F32 on host backends; F32/F16/BF16
 * elsewhere). opts may be NULL. A missing or mis-shaped tensor is an error
 * naming it (with the prefix) and both shapes; an inconsistent configuration
 * (e.g. a head count that does not divide D) is LISA_ERR_SHAPE naming the
 * tensor it came from. */
lisa_status lisa_sam_model_load(lisa_sam_model *m, const char *path, lisa_backend *be,
                                lisa_dtype dtype, const lisa_sam_options *opts);
void lisa_sam_model_free(lisa_sam_model *m);

typedef struct lisa_sam_state {
    int max_images;       /* Bi: images per encoder pass */
    int max_batch;        /* prompts per decoder pass */
    int max_sparse;       /* Ns: sparse tokens per prompt */
    int64_t max_pixels;   /* H0 * W0 of the largest original image for postprocess */
    int n_embeddings;     /* images whose embeddings are held (0: none) */
    int selected;         /* the embedding the decoder reads, 0..n_embeddings-1 */
    /* encoder scratch, model dtype; S = img_size, p = patch, Bi = max_images */
    lisa_tensor image;    /* (Bi*3, S*S) input */
    lisa_tensor cols;     /* (Bi*T, max(3 p p, 9 C)) im2col */
    lisa_tensor x;        /* (Bi*T, D) residual stream */
    lisa_tensor xn;       /* (Bi*T, D) normed / block outputs */
    lisa_tensor win;      /* (Bi*Tw, D) windows, Tw = windows * window^2 (>= T) */
    lisa_tensor qkv;      /* (Bi*Tw, 3D) */
    lisa_tensor q, k, v;  /* (Bi*Tw, D) each */
    lisa_tensor att;      /* (Bi*Tw, D) */
    lisa_tensor proj;     /* (Bi*Tw, D) */
    lisa_tensor hid;      /* (Bi*T, 4D) MLP hidden */
    lisa_tensor neck;     /* (Bi*T, C) */
    lisa_tensor embed;    /* (Bi*T, C) the image embeddings, image-major */
    /* decoder scratch, model dtype; B = max_batch, Nt = 1 + M + Ns */
    lisa_tensor keys;     /* (B*T, C) image-side stream */
    lisa_tensor keys_pe;  /* (B*T, C) keys + dense PE */
    lisa_tensor big_out;  /* (B*T, C) image -> token attention output */
    lisa_tensor pq, pk, pv, pa;  /* (B*max(T, Nt), C) projections and attention (inner <= C) */
    lisa_tensor tok;      /* (B*Nt, C) queries */
    lisa_tensor tok_pe;   /* (B*Nt, C) the original tokens (query PE) */
    lisa_tensor tq;       /* (B*Nt, C) queries + PE */
    lisa_tensor tout;     /* (B*Nt, C) */
    lisa_tensor tmlp;     /* (B*Nt, max(mlp, iou hidden, C)) */
    lisa_tensor tmlp2;    /* (B*Nt, max(mlp, iou hidden, C)) */
    lisa_tensor rows;     /* (B, C) gathered token rows */
    lisa_tensor hyper;    /* (M*B, C/8) hypernetwork outputs, mask-major */
    lisa_tensor iou;      /* (B, M) */
    lisa_tensor idx;      /* (B, M+1) I32 row indices */
    lisa_tensor up_a;     /* (B*2G*2G, C/4) */
    lisa_tensor up_b;     /* (B*U*U, C/8) */
    lisa_tensor lowres;   /* (B*M, U*U) low-res mask logits of a decode batch */
    /* postprocess scratch, always F32 (LISA postprocesses masks.float()) */
    lisa_tensor pp_low;   /* (1, U*U) */
    lisa_tensor full;     /* (1, S*S) */
    lisa_tensor orig;     /* (1, max_pixels) */
    lisa_tensor io;       /* (1, T*C) F32 staging for non-F32 models, else empty */
    /* host staging */
    float *host_tok;      /* (B*Nt, C) */
    float *host_iou;      /* (B, M) */
    int32_t *host_idx;    /* (B, M+1) */
    float *host_logits;   /* (max_pixels) */
    lisa_backend *be;
} lisa_sam_state;

/* Reserves every buffer for up to max_images images per encoder pass (the
 * encoder scratch scales with it, see above), prompts of up to max_sparse
 * tokens decoded max_batch at a time and original images of up to
 * max_pixels pixels. LISA_ERR_ARG when a size is not positive; fails
 * cleanly (with the byte count) when memory is short, leaving s empty. */
lisa_status lisa_sam_state_init_batch(lisa_sam_state *s, const lisa_sam_model *m, int max_images,
                                      int max_batch, int max_sparse, int64_t max_pixels);
/* lisa_sam_state_init_batch with max_images = 1. */
lisa_status lisa_sam_state_init(lisa_sam_state *s, const lisa_sam_model *m, int max_batch,
                                int max_sparse, int64_t max_pixels);
void lisa_sam_state_free(lisa_sam_state *s);

/* Runs the image encoder on B images in one pass: images (B, 3, S, S) fp32
 * host, each CHW (the SAM preprocessing output, S = img_size). Every op
 * runs over the whole batch (B*T token rows, windows of all images, global
 * attention batched over images), and each image's embedding equals its
 * batch-of-one result up to the backend's matmul rounding. Keeps all B
 * embeddings in s and selects image 0 for the decoder. embeddings, when
 * not NULL, receives them on the host: (B, G, G, C) fp32, channels-last
 * (the reference's (B, C, G, G) permuted). LISA_ERR_ARG when B is not in
 * 1..max_images; on any failure s holds no embedding. */
lisa_status lisa_sam_encode_batch(const lisa_sam_model *m, lisa_sam_state *s, const float *images,
                                  int B, float *embeddings);

/* lisa_sam_encode_batch with B = 1: image (3, S, S) -> embedding (G, G, C)
 * or NULL. */
lisa_status lisa_sam_encode(const lisa_sam_model *m, lisa_sam_state *s, const float *image,
                            float *embedding);

/* Makes image b of the last encoder pass the one lisa_sam_decode reads.
 * LISA_ERR_ARG when b is not in 0..n_embeddings-1 (the selection is then
 * unchanged). */
lisa_status lisa_sam_select_embedding(lisa_sam_state *s, int b);

/* Sets the image embedding (G, G, C) fp32 host, channels-last, instead of
 * encoding an image (tests; cached embeddings): s then holds this one
 * embedding, selected. */
lisa_status lisa_sam_set_embedding(const lisa_sam_model *m, lisa_sam_state *s,
                                   const float *embedding);

/* Runs the mask decoder for n prompts against the selected embedding,
 * max_batch prompts per pass. sparse: (n, ns, C) fp32 host (LISA: ns = 1,
 * the [SEG] embedding); the dense prompt is no_mask_embed. multimask 0
 * keeps mask token 0 (LISA's multimask_output=False), otherwise tokens
 * 1..M-1: nm = 1 or M-1 masks per prompt. Outputs, host fp32, either may be
 * NULL: lowres (n, nm, U, U) logits, iou (n, nm). LISA_ERR_ARG when there
 * is no embedding, n < 1, ns is not in 1..max_sparse, or multimask with a
 * single mask token. */
lisa_status lisa_sam_decode(const lisa_sam_model *m, lisa_sam_state *s, const float *sparse,
                            int n, int ns, int multimask, float *lowres, float *iou);

/* Sam.postprocess_masks and the threshold for one mask: lowres (U, U) fp32
 * host logits (one plane of lisa_sam_decode's output) are resized bilinearly
 * (align_corners=False) to S x S, cropped to the resized image (rh, rw) and
 * resized to the original (h0, w0), all in fp32; mask = logits > 0.
 * Outputs, host, either may be NULL: logits (h0, w0) fp32, mask (h0, w0)
 * bytes 0/1. LISA_ERR_ARG when rh, rw are not in 1..S or h0 * w0 is not in
 * 1..max_pixels. */
lisa_status lisa_sam_postprocess(const lisa_sam_model *m, lisa_sam_state *s, const float *lowres,
                                 int rh, int rw, int h0, int w0, float *logits, uint8_t *mask);

#endif
