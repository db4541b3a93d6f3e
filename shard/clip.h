/* clip.h: the CLIP ViT vision tower as LLaVA/LISA use it, and LLaVA's
 * mm_projector (linear or mlp2x_gelu).
 *
 * lisa_clip_model holds read-only weights in HF CLIPVisionModel layout under
 * a caller-given prefix ("vision_model." for openai/clip-vit-large-patch14,
 * e.g. "model.vision_tower.vision_tower.vision_model." inside a merged
 * checkpoint), for only the layers a feature layer needs. lisa_clip_state
 * holds scratch reserved once for a maximum batch. The forward pass turns
 * preprocessed pixels (B, 3, S, S) into LLaVA's image features:
 * hidden_states[select_layer] without the CLS token, (B, N, C) with
 * N = (S / P)^2, and the projector maps them to (B, N, Hout).
 *
 * Shapes: C hidden, I intermediate, H heads, D = C / H, P patch, S image,
 * N patches, T = N + 1 tokens, B images.
 *
 * Deliberately not here: image decoding and CLIPImageProcessor
 * (coordinator/preprocess.*), post_layernorm and the pooled output (unused
 * by LLaVA), 'cls_patch' feature selection, splicing into the prompt. */
#ifndef LISA_CLIP_H
#define LISA_CLIP_H

#include "backend.h"
#include "safetensors.h"
#include "weights.h"

typedef struct lisa_clip_config {
    int hidden_size;           /* C */
    int intermediate_size;     /* I */
    int num_hidden_layers;     /* L */
    int num_attention_heads;   /* H */
    int head_dim;              /* D = C / H (derived) */
    int image_size;            /* S */
    int patch_size;            /* P */
    int num_channels;          /* 3 */
    float layer_norm_eps;
} lisa_clip_config;

/* Parses a HF CLIPVisionConfig config.json (keys at the top level) or a
 * CLIPConfig one (keys under "vision_config"); missing keys take
 * CLIPVisionConfig's defaults (768, 3072, 12 layers, 12 heads, 224, 32, 3,
 * 1e-5, quick_gelu). A hidden_act other than quick_gelu is
 * LISA_ERR_UNSUPPORTED; bad types and inconsistent sizes are
 * LISA_ERR_FORMAT naming the key. */
lisa_status lisa_clip_config_parse(lisa_clip_config *cfg, const char *json, size_t len);
/* Reads a config.json path, or a directory holding one. */
lisa_status lisa_clip_config_load(lisa_clip_config *cfg, const char *path);

typedef struct lisa_clip_layer {
    lisa_tensor ln1_w, ln1_b; /* vision_model.encoder.layers.N.layer_norm1.{weight,bias} (C) */
    lisa_tensor wq, bq;       /* vision_model.encoder.layers.N.self_attn.q_proj.{weight (C, C), bias (C)} */
    lisa_tensor wk, bk;       /* vision_model.encoder.layers.N.self_attn.k_proj.{weight (C, C), bias (C)} */
    lisa_tensor wv, bv;       /* vision_model.encoder.layers.N.self_attn.v_proj.{weight (C, C), bias (C)} */
    lisa_tensor wo, bo;       /* vision_model.encoder.layers.N.self_attn.out_proj.{weight (C, C), bias (C)} */
    lisa_tensor ln2_w, ln2_b; /* vision_model.encoder.layers.N.layer_norm2.{weight,bias} (C) */
    lisa_tensor fc1_w, fc1_b; /* vision_model.encoder.layers.N.mlp.fc1.{weight (I, C), bias (I)} */
    lisa_tensor fc2_w, fc2_b; /* vision_model.encoder.layers.N.mlp.fc2.{weight (C, I), bias (C)} */
} lisa_clip_layer;

typedef struct lisa_clip_model {
    lisa_clip_config cfg;
    int select_layer;          /* index into hidden_states; negative counts from the end */
    int n_layers;              /* layers run (and loaded): hidden_states[k] needs k layers */
    lisa_tensor class_emb;     /* vision_model.embeddings.class_embedding (C) */
    lisa_tensor patch_w;       /* vision_model.embeddings.patch_embedding.weight (C, 3, P, P),
                                  viewed as (C, 3*P*P); no bias */
    lisa_tensor pos_emb;       /* vision_model.embeddings.position_embedding.weight (T, C) */
    lisa_tensor pre_ln_w;      /* vision_model.pre_layrnorm.weight (C) (sic) */
    lisa_tensor pre_ln_b;      /* vision_model.pre_layrnorm.bias (C) */
    lisa_clip_layer *layers;   /* (n_layers) */
    lisa_dtype dtype;          /* activations (F32 on the CPU) */
    lisa_backend *be;          /* not owned */
    lisa_safetensors *st;      /* owned: weights may be used in place from the mmap */
    lisa_weights weights;      /* owned backend copies */
} lisa_clip_model;

/* Loads the tower from `path` (a .safetensors file, an index or a directory)
 * with tensor names prefix + "embeddings.class_embedding" etc. (prefix ends
 * in "vision_model." for HF layouts), for hidden_states[select_layer]
 * (LLaVA/LISA: -2; 0 is the pre_layrnorm output; the range is -L-1..L).
 * Only layers [0, n_layers) are loaded. Computes in `dtype` (CPU: F32). A
 * missing or mis-shaped tensor is an error naming it and both shapes. */
lisa_status lisa_clip_model_load(lisa_clip_model *m, const lisa_clip_config *cfg,
                                 const char *path, const char *prefix, int select_layer,
                                 lisa_backend *be, lisa_dtype dtype);
void lisa_clip_model_free(lisa_clip_model *m);
/* Patches per image, N. */
int lisa_clip_num_patches(const lisa_clip_config *cfg);

typedef enum {
    LISA_PROJECTOR_LINEAR = 0,   /* Linear(Cin, Hout) */
    LISA_PROJECTOR_MLP2X_GELU    /* Linear(Cin, Hout), GELU (erf), Linear(Hout, Hout) */
} lisa_projector_kind;

typedef struct lisa_projector {
    lisa_projector_kind kind;
    int in_dim, out_dim;       /* Cin, Hout */
    lisa_tensor w1, b1;        /* linear: model.mm_projector.{weight (Hout, Cin), bias (Hout)};
                                  mlp2x_gelu: model.mm_projector.0.{weight, bias} */
    lisa_tensor w2, b2;        /* mlp2x_gelu: model.mm_projector.2.{weight (Hout, Hout), bias (Hout)} */
    lisa_dtype dtype;
    lisa_backend *be;          /* not owned */
    lisa_safetensors *st;      /* owned */
    lisa_weights weights;      /* owned */
} lisa_projector;

/* Parses "linear" or "mlp2x_gelu" (LLaVA's mm_projector_type). */
lisa_status lisa_projector_kind_parse(const char *s, lisa_projector_kind *out);
/* Loads a projector of `kind` with input width in_dim from `path`; names are
 * prefix + "weight"/"bias" (linear) or prefix + "0.weight" ... "2.bias"
 * (mlp2x_gelu), prefix e.g. "model.mm_projector.". Hout is read from the
 * first weight's shape. */
lisa_status lisa_projector_load(lisa_projector *p, const char *path, const char *prefix,
                                lisa_projector_kind kind, int in_dim, lisa_backend *be,
                                lisa_dtype dtype);
void lisa_projector_free(lisa_projector *p);

typedef struct lisa_clip_state {
    int max_batch;
    int proj_dim;          /* Hout of the projector reserved for, or 0 */
    lisa_tensor pix32;     /* (Bmax, 3, S, S) F32 upload staging */
    lisa_tensor pix;       /* (Bmax, 3, S, S) model dtype (aliases pix32 for F32) */
    lisa_tensor cols;      /* (Bmax*N, 3*P*P) */
    lisa_tensor x;         /* (Bmax*T, C) residual stream */
    lisa_tensor xb;        /* (Bmax*T, C) normed / block output */
    lisa_tensor q, k, v;   /* (Bmax*T, C) = (Bmax, T, H, D) */
    lisa_tensor att;       /* (Bmax*T, C) */
    lisa_tensor h;         /* (Bmax*T, I) MLP hidden */
    lisa_tensor feat;      /* (Bmax*N, C) features without CLS */
    lisa_tensor ph;        /* (Bmax*N, Hout) projector hidden */
    lisa_tensor pout;      /* (Bmax*N, Hout) projector output */
    lisa_tensor io;        /* (Bmax*N, max(C, Hout)) F32 download staging, non-F32 models */
    int n_feat;            /* images whose features `feat` holds (after a forward) */
    lisa_backend *be;
} lisa_clip_state;

/* Reserves scratch for up to max_batch images, and for projecting them when
 * `proj` is non-NULL. Fails cleanly when memory is short. */
lisa_status lisa_clip_state_init(lisa_clip_state *s, const lisa_clip_model *m,
                                 const lisa_projector *proj, int max_batch);
void lisa_clip_state_free(lisa_clip_state *s);

/* pixels (B, 3, S, S) host fp32 CHW (CLIPImageProcessor output) ->
 * features (B, N, C) host fp32 when non-NULL; the features also stay in
 * s->feat for lisa_clip_project. 1 <= B <= max_batch. */
lisa_status lisa_clip_forward(const lisa_clip_model *m, lisa_clip_state *s, const float *pixels,
                              int B, float *features);
/* Projects the features of the last forward: out (B, N, Hout) host fp32. */
lisa_status lisa_clip_project(const lisa_projector *p, lisa_clip_state *s, float *out);

#endif
