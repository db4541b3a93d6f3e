/* sam.c: SAM weights, per-request state, image encoder, mask decoder and
 * mask postprocessing (see sam.h). The math follows segment-anything's
 * ImageEncoderViT, PromptEncoder (dense parts), MaskDecoder,
 * TwoWayTransformer and Sam.postprocess_masks in fp32, composed from the
 * backend seam's ops only, so every backend runs it unchanged. Host <->
 * backend traffic is limited to the input image, the prompts, the outputs
 * and a few row indices. */
#include "sam.h"

#include <cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SAM_ENC_EPS 1e-6f  /* encoder LayerNorms, neck and upscaling LayerNorm2d */
#define SAM_DEC_EPS 1e-5f  /* two-way transformer LayerNorms (nn.LayerNorm default) */
#define SAM_DEFAULT_DEC_HEADS 8
#define SAM_NAME 256

/* --- configuration from the tensor shapes --- */

/* Looks up prefix + name (printf-style) and checks its rank; NULL-safe out. */
static lisa_status sam_need(const lisa_st_tensor **out, const lisa_safetensors *st,
                            const char *pfx, int ndim, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static lisa_status sam_need(const lisa_st_tensor **out, const lisa_safetensors *st,
                            const char *pfx, int ndim, const char *fmt, ...) {
    char name[SAM_NAME], full[SAM_NAME + 64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    snprintf(full, sizeof full, "%s%s", pfx, name);
    *out = lisa_safetensors_find(st, full);
    if (!*out)
        return lisa_error_set(LISA_ERR_MISSING, "sam: tensor '%s' not found", full);
    if ((*out)->ndim != ndim)
        return lisa_error_set(LISA_ERR_SHAPE, "sam: tensor '%s': expected %d dims, found %d",
                              full, ndim, (*out)->ndim);
    return LISA_OK;
}

static int sam_has(const lisa_safetensors *st, const char *pfx, const char *fmt, int i) {
    char name[SAM_NAME], full[SAM_NAME + 64];
    snprintf(name, sizeof name, fmt, i);
    snprintf(full, sizeof full, "%s%s", pfx, name);
    return lisa_safetensors_find(st, full) != NULL;
}

static lisa_status sam_config_detect(lisa_sam_config *c, const lisa_safetensors *st,
                                     const char *pfx, const lisa_sam_options *o) {
    const lisa_st_tensor *t;
    memset(c, 0, sizeof *c);
    LISA_TRY(sam_need(&t, st, pfx, 4, "image_encoder.patch_embed.proj.weight"));
    if (t->shape[1] != 3 || t->shape[2] != t->shape[3] || t->shape[2] < 1)
        return lisa_error_set(LISA_ERR_SHAPE,
                              "sam: tensor '%simage_encoder.patch_embed.proj.weight': expected "
                              "(D, 3, p, p)", pfx);
    c->embed_dim = (int)t->shape[0];
    c->patch = (int)t->shape[2];
    LISA_TRY(sam_need(&t, st, pfx, 4, "image_encoder.pos_embed"));
    if (t->shape[0] != 1 || t->shape[1] != t->shape[2] || t->shape[3] != c->embed_dim)
        return lisa_error_set(LISA_ERR_SHAPE,
                              "sam: tensor '%simage_encoder.pos_embed': expected (1, G, G, %d)",
                              pfx, c->embed_dim);
    c->grid = (int)t->shape[1];
    c->img_size = c->grid * c->patch;

    while (sam_has(st, pfx, "image_encoder.blocks.%d.attn.qkv.weight", c->depth)) {
        if (c->depth == LISA_SAM_MAX_BLOCKS)
            return lisa_error_set(LISA_ERR_UNSUPPORTED, "sam: more than %d encoder blocks",
                                  LISA_SAM_MAX_BLOCKS);
        c->depth++;
    }
    if (c->depth == 0)
        return lisa_error_set(LISA_ERR_MISSING,
                              "sam: tensor '%simage_encoder.blocks.0.attn.qkv.weight' not found",
                              pfx);
    for (int i = 0; i < c->depth; i++) {
        LISA_TRY(sam_need(&t, st, pfx, 2, "image_encoder.blocks.%d.attn.rel_pos_h", i));
        int rows = (int)t->shape[0], hd = (int)t->shape[1];
        if (i == 0) c->head_dim = hd;
        if (hd != c->head_dim || hd < 1 || c->embed_dim % hd != 0 || rows % 2 == 0)
            return lisa_error_set(LISA_ERR_SHAPE,
                                  "sam: tensor '%simage_encoder.blocks.%d.attn.rel_pos_h' has "
                                  "shape (%d, %d): expected (2S-1, head dim) with the head dim "
                                  "dividing %d and equal in every block",
                                  pfx, i, rows, hd, c->embed_dim);
        if (rows == 2 * c->grid - 1) {
            c->global[i] = 1;
            c->n_global++;
        } else {
            int ws = (rows + 1) / 2;
            if (ws > c->grid)
                return lisa_error_set(LISA_ERR_SHAPE,
                                      "sam: tensor '%simage_encoder.blocks.%d.attn.rel_pos_h' has "
                                      "%d rows: neither global on the %dx%d grid of "
                                      "'%simage_encoder.pos_embed' (%d rows) nor a window of at "
                                      "most %d",
                                      pfx, i, rows, c->grid, c->grid, pfx, 2 * c->grid - 1,
                                      c->grid);
            if (c->window && ws != c->window)
                return lisa_error_set(LISA_ERR_SHAPE,
                                      "sam: tensor '%simage_encoder.blocks.%d.attn.rel_pos_h': "
                                      "window %d differs from the other blocks' %d",
                                      pfx, i, ws, c->window);
            c->window = ws;
        }
    }
    c->num_heads = c->embed_dim / c->head_dim;
    if (o && o->encoder_heads && o->encoder_heads != c->num_heads)
        return lisa_error_set(LISA_ERR_SHAPE,
                              "sam: encoder_heads %d given, but the rel_pos_h head dim %d of "
                              "'%simage_encoder.blocks.0.attn.rel_pos_h' implies %d heads",
                              o->encoder_heads, c->head_dim, pfx, c->num_heads);
    LISA_TRY(sam_need(&t, st, pfx, 2, "image_encoder.blocks.0.mlp.lin1.weight"));
    c->mlp_dim = (int)t->shape[0];
    LISA_TRY(sam_need(&t, st, pfx, 4, "image_encoder.neck.0.weight"));
    c->dim = (int)t->shape[0];
    if (c->dim % 2 != 0)
        return lisa_error_set(LISA_ERR_SHAPE,
                              "sam: tensor '%simage_encoder.neck.0.weight': odd width %d", pfx,
                              c->dim);

    while (sam_has(st, pfx, "mask_decoder.transformer.layers.%d.norm1.weight", c->dec_depth)) {
        if (c->dec_depth == LISA_SAM_MAX_DEC_LAYERS)
            return lisa_error_set(LISA_ERR_UNSUPPORTED, "sam: more than %d decoder layers",
                                  LISA_SAM_MAX_DEC_LAYERS);
        c->dec_depth++;
    }
    if (c->dec_depth == 0)
        return lisa_error_set(LISA_ERR_MISSING,
                              "sam: tensor '%smask_decoder.transformer.layers.0.norm1.weight' "
                              "not found", pfx);
    LISA_TRY(sam_need(&t, st, pfx, 2, "mask_decoder.transformer.layers.0.mlp.lin1.weight"));
    c->dec_mlp_dim = (int)t->shape[0];
    LISA_TRY(sam_need(&t, st, pfx, 2,
                      "mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight"));
    c->dec_cross_dim = (int)t->shape[0];
    LISA_TRY(sam_need(&t, st, pfx, 2, "mask_decoder.mask_tokens.weight"));
    c->num_mask_tokens = (int)t->shape[0];
    LISA_TRY(sam_need(&t, st, pfx, 2, "mask_decoder.iou_prediction_head.layers.0.weight"));
    c->iou_hidden = (int)t->shape[0];
    LISA_TRY(sam_need(&t, st, pfx, 4, "mask_decoder.output_upscaling.0.weight"));
    c->up1 = (int)t->shape[1];
    LISA_TRY(sam_need(&t, st, pfx, 4, "mask_decoder.output_upscaling.3.weight"));
    c->up2 = (int)t->shape[1];
    c->dec_heads = (o && o->decoder_heads) ? o->decoder_heads : SAM_DEFAULT_DEC_HEADS;
    if (c->dec_heads < 1 || c->dim % c->dec_heads || c->dec_cross_dim % c->dec_heads)
        return lisa_error_set(LISA_ERR_SHAPE,
                              "sam: %d decoder heads do not divide the decoder widths %d and %d "
                              "('%smask_decoder.transformer.layers.0.cross_attn_token_to_image."
                              "q_proj.weight')",
                              c->dec_heads, c->dim, c->dec_cross_dim, pfx);
    if (c->num_mask_tokens < 1)
        return lisa_error_set(LISA_ERR_SHAPE, "sam: tensor '%smask_decoder.mask_tokens.weight' "
                              "holds no token", pfx);
    return LISA_OK;
}

/* --- weight table --- */

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})
/* Appends one entry to the table `sp` (count n, capacity cap in scope). */
#define SPEC(...) (n = lisa_weight_spec_add(sp, n, cap, __VA_ARGS__))

static int sam_attn_specs(lisa_weight_spec *sp, int n, int cap, lisa_sam_attn *a, int64_t C,
                          int64_t I, const char *base) {
    a->inner = (int)I;
    SPEC(&a->q_w, LISA_WEIGHT_MATMUL, 2, SHAPE(I, C), "%s.q_proj.weight", base);
    SPEC(&a->q_b, LISA_WEIGHT_PARAM, 1, SHAPE(I), "%s.q_proj.bias", base);
    SPEC(&a->k_w, LISA_WEIGHT_MATMUL, 2, SHAPE(I, C), "%s.k_proj.weight", base);
    SPEC(&a->k_b, LISA_WEIGHT_PARAM, 1, SHAPE(I), "%s.k_proj.bias", base);
    SPEC(&a->v_w, LISA_WEIGHT_MATMUL, 2, SHAPE(I, C), "%s.v_proj.weight", base);
    SPEC(&a->v_b, LISA_WEIGHT_PARAM, 1, SHAPE(I), "%s.v_proj.bias", base);
    SPEC(&a->o_w, LISA_WEIGHT_MATMUL, 2, SHAPE(C, I), "%s.out_proj.weight", base);
    SPEC(&a->o_b, LISA_WEIGHT_PARAM, 1, SHAPE(C), "%s.out_proj.bias", base);
    return n;
}

static int sam_mlp3_specs(lisa_weight_spec *sp, int n, int cap, lisa_sam_mlp3 *p, int64_t in,
                          int64_t hid, int64_t out, const char *base) {
    int64_t rows[3] = {hid, hid, out}, cols[3] = {in, hid, hid};
    for (int i = 0; i < 3; i++) {
        SPEC(&p->w[i], LISA_WEIGHT_MATMUL, 2,
                                 SHAPE(rows[i], cols[i]), "%s.layers.%d.weight", base, i);
        SPEC(&p->b[i], LISA_WEIGHT_PARAM, 1, SHAPE(rows[i]),
                                 "%s.layers.%d.bias", base, i);
    }
    return n;
}

/* Fills the table for every tensor the model uses; returns the count. */
static int sam_weight_table(lisa_sam_model *m, lisa_weight_spec *sp, int cap) {
    const lisa_sam_config *c = &m->cfg;
    int64_t D = c->embed_dim, p = c->patch, G = c->grid, hd = c->head_dim, Mlp = c->mlp_dim;
    int64_t C = c->dim, M = c->num_mask_tokens;
    const lisa_weight_kind MM = LISA_WEIGHT_MATMUL, PA = LISA_WEIGHT_PARAM;
    int n = 0;
    SPEC(&m->patch_w, MM, 4, SHAPE(D, 3, p, p), "image_encoder.patch_embed.proj.weight");
    SPEC(&m->patch_b, PA, 1, SHAPE(D), "image_encoder.patch_embed.proj.bias");
    SPEC(&m->pos_embed, PA, 4, SHAPE(1, G, G, D), "image_encoder.pos_embed");
    for (int i = 0; i < c->depth; i++) {
        lisa_sam_block *b = &m->blocks[i];
        int64_t R = c->global[i] ? 2 * G - 1 : 2 * (int64_t)c->window - 1;
        const char *f = "image_encoder.blocks.%d.%s";
        SPEC(&b->norm1_w, PA, 1, SHAPE(D), f, i, "norm1.weight");
        SPEC(&b->norm1_b, PA, 1, SHAPE(D), f, i, "norm1.bias");
        SPEC(&b->qkv_w, MM, 2, SHAPE(3 * D, D), f, i, "attn.qkv.weight");
        SPEC(&b->qkv_b, PA, 1, SHAPE(3 * D), f, i, "attn.qkv.bias");
        SPEC(&b->proj_w, MM, 2, SHAPE(D, D), f, i, "attn.proj.weight");
        SPEC(&b->proj_b, PA, 1, SHAPE(D), f, i, "attn.proj.bias");
        SPEC(&b->rel_pos_h, PA, 2, SHAPE(R, hd), f, i, "attn.rel_pos_h");
        SPEC(&b->rel_pos_w, PA, 2, SHAPE(R, hd), f, i, "attn.rel_pos_w");
        SPEC(&b->norm2_w, PA, 1, SHAPE(D), f, i, "norm2.weight");
        SPEC(&b->norm2_b, PA, 1, SHAPE(D), f, i, "norm2.bias");
        SPEC(&b->lin1_w, MM, 2, SHAPE(Mlp, D), f, i, "mlp.lin1.weight");
        SPEC(&b->lin1_b, PA, 1, SHAPE(Mlp), f, i, "mlp.lin1.bias");
        SPEC(&b->lin2_w, MM, 2, SHAPE(D, Mlp), f, i, "mlp.lin2.weight");
        SPEC(&b->lin2_b, PA, 1, SHAPE(D), f, i, "mlp.lin2.bias");
    }
    SPEC(&m->neck0_w, MM, 4, SHAPE(C, D, 1, 1), "image_encoder.neck.0.weight");
    SPEC(&m->neck1_w, PA, 1, SHAPE(C), "image_encoder.neck.1.weight");
    SPEC(&m->neck1_b, PA, 1, SHAPE(C), "image_encoder.neck.1.bias");
    SPEC(&m->neck2_w, MM, 4, SHAPE(C, C, 3, 3), "image_encoder.neck.2.weight");
    SPEC(&m->neck3_w, PA, 1, SHAPE(C), "image_encoder.neck.3.weight");
    SPEC(&m->neck3_b, PA, 1, SHAPE(C), "image_encoder.neck.3.bias");
    SPEC(&m->no_mask_embed, PA, 2, SHAPE(1, C), "prompt_encoder.no_mask_embed.weight");

    char base[SAM_NAME];
    const char *layers = "mask_decoder.transformer.layers";
    int64_t X = c->dec_cross_dim, Md = c->dec_mlp_dim;
    for (int l = 0; l < c->dec_depth; l++) {
        lisa_sam_dec_layer *L = &m->dec_layers[l];
        snprintf(base, sizeof base, "%s.%d.self_attn", layers, l);
        n = sam_attn_specs(sp, n, cap, &L->self_attn, C, C, base);
        snprintf(base, sizeof base, "%s.%d.cross_attn_token_to_image", layers, l);
        n = sam_attn_specs(sp, n, cap, &L->cross_t2i, C, X, base);
        snprintf(base, sizeof base, "%s.%d.cross_attn_image_to_token", layers, l);
        n = sam_attn_specs(sp, n, cap, &L->cross_i2t, C, X, base);
        const char *f = "mask_decoder.transformer.layers.%d.%s";
        for (int k = 0; k < 4; k++) {
            char nm[32];
            snprintf(nm, sizeof nm, "norm%d.weight", k + 1);
            SPEC(&L->norm_w[k], PA, 1, SHAPE(C), f, l, nm);
            snprintf(nm, sizeof nm, "norm%d.bias", k + 1);
            SPEC(&L->norm_b[k], PA, 1, SHAPE(C), f, l, nm);
        }
        SPEC(&L->lin1_w, MM, 2, SHAPE(Md, C), f, l, "mlp.lin1.weight");
        SPEC(&L->lin1_b, PA, 1, SHAPE(Md), f, l, "mlp.lin1.bias");
        SPEC(&L->lin2_w, MM, 2, SHAPE(C, Md), f, l, "mlp.lin2.weight");
        SPEC(&L->lin2_b, PA, 1, SHAPE(C), f, l, "mlp.lin2.bias");
    }
    n = sam_attn_specs(sp, n, cap, &m->final_attn, C, X,
                       "mask_decoder.transformer.final_attn_token_to_image");
    SPEC(&m->final_norm_w, PA, 1, SHAPE(C), "mask_decoder.transformer.norm_final_attn.weight");
    SPEC(&m->final_norm_b, PA, 1, SHAPE(C), "mask_decoder.transformer.norm_final_attn.bias");
    int64_t U1 = c->up1, U2 = c->up2;
    SPEC(&m->up0_w, PA, 4, SHAPE(C, U1, 2, 2), "mask_decoder.output_upscaling.0.weight");
    SPEC(&m->up0_b, PA, 1, SHAPE(U1), "mask_decoder.output_upscaling.0.bias");
    SPEC(&m->up1_w, PA, 1, SHAPE(U1), "mask_decoder.output_upscaling.1.weight");
    SPEC(&m->up1_b, PA, 1, SHAPE(U1), "mask_decoder.output_upscaling.1.bias");
    SPEC(&m->up3_w, PA, 4, SHAPE(U1, U2, 2, 2), "mask_decoder.output_upscaling.3.weight");
    SPEC(&m->up3_b, PA, 1, SHAPE(U2), "mask_decoder.output_upscaling.3.bias");
    for (int i = 0; i < M; i++) {
        snprintf(base, sizeof base, "mask_decoder.output_hypernetworks_mlps.%d", i);
        n = sam_mlp3_specs(sp, n, cap, &m->hyper[i], C, C, U2, base);
    }
    n = sam_mlp3_specs(sp, n, cap, &m->iou_head, C, c->iou_hidden, M,
                       "mask_decoder.iou_prediction_head");
    return n;
}

/* Widens prefix + name, checked against shape, into dst (fp32 host). */
static lisa_status sam_host_f32(const lisa_safetensors *st, const char *pfx, const char *name,
                                int ndim, const int64_t *shape, float *dst) {
    char full[SAM_NAME + 64];
    snprintf(full, sizeof full, "%s%s", pfx, name);
    const lisa_st_tensor *t;
    LISA_TRY(lisa_safetensors_get(st, full, ndim, shape, &t));
    int64_t ne = 1;
    for (int i = 0; i < ndim; i++) ne *= shape[i];
    lisa_dtype_to_f32(dst, t->data, t->dtype, (size_t)ne);
    return LISA_OK;
}

/* v rounded to dtype's precision (identity for F32). */
static float sam_round(float v, lisa_dtype dt) {
    if (dt == LISA_DTYPE_BF16) return lisa_bf16_to_f32(lisa_f32_to_bf16(v));
    if (dt == LISA_DTYPE_F16) return lisa_f16_to_f32(lisa_f32_to_f16(v));
    return v;
}

/* PositionEmbeddingRandom.forward((G, G)) channels-last: for the cell (i, j),
 * u = 2 * ((j + 0.5) / G, (i + 0.5) / G) - 1, z = 2pi (u @ gauss (2, C/2)),
 * pe = [sin z, cos z]. 2pi is rounded to fp32 as torch does; the K=2
 * product is accumulated as torch's matmul does it, fma(u_y, g1, u_x * g0),
 * which makes z bit-identical to the fp32 reference. LISA runs SAM in its
 * compute dtype, so in bf16/fp16 the Gaussian matrix, the product and 2pi z
 * are each rounded to that dtype (u is exact in both for SAM's 64 grid);
 * sin and cos are rounded when the table is uploaded. */
static void sam_dense_pe(float *pe, const float *gauss, int G, int C, lisa_dtype dt) {
    int h = C / 2;
    const float two_pi = (float)(2.0 * 3.141592653589793);
    for (int i = 0; i < G; i++)
        for (int j = 0; j < G; j++) {
            float ux = sam_round(2.0f * (((float)j + 0.5f) / (float)G) - 1.0f, dt);
            float uy = sam_round(2.0f * (((float)i + 0.5f) / (float)G) - 1.0f, dt);
            float *o = pe + ((int64_t)i * G + j) * C;
            for (int k = 0; k < h; k++) {
                float z = sam_round(fmaf(uy, sam_round(gauss[h + k], dt),
                                         ux * sam_round(gauss[k], dt)), dt);
                z = sam_round(two_pi * z, dt);
                o[k] = sinf(z);
                o[h + k] = cosf(z);
            }
        }
}

lisa_status lisa_sam_model_load(lisa_sam_model *m, const char *path, lisa_backend *be,
                                lisa_dtype dtype, const lisa_sam_options *opts) {
    memset(m, 0, sizeof *m);
    if (dtype != LISA_DTYPE_F32 && dtype != LISA_DTYPE_F16 && dtype != LISA_DTYPE_BF16)
        return lisa_error_set(LISA_ERR_ARG, "sam: compute dtype must be F32, F16 or BF16");
    if (be->ops->host_memory && dtype != LISA_DTYPE_F32)
        return lisa_error_set(LISA_ERR_UNSUPPORTED,
                              "the %s backend computes in fp32 only (asked for %s)", be->ops->name,
                              lisa_dtype_name(dtype));
    m->be = be;
    m->dtype = dtype;
    const char *pfx = (opts && opts->prefix) ? opts->prefix : "";
    lisa_status st = lisa_safetensors_open(&m->st, path);
    if (st != LISA_OK) return st;
    lisa_weight_spec *specs = NULL;
    float *gauss = NULL;
    if ((st = sam_config_detect(&m->cfg, m->st, pfx, opts)) != LISA_OK) goto fail;
    const lisa_sam_config *c = &m->cfg;
    int64_t C = c->dim, M = c->num_mask_tokens, T = (int64_t)c->grid * c->grid;
    m->blocks = calloc((size_t)c->depth, sizeof *m->blocks);
    m->hyper = calloc((size_t)M, sizeof *m->hyper);
    int cap = 64 + 14 * c->depth + 36 * c->dec_depth + 6 * (int)M;
    specs = calloc((size_t)cap, sizeof *specs);
    m->tokens_host = malloc((size_t)((1 + M) * C) * sizeof(float));
    m->dense_pe_host = malloc((size_t)(T * C) * sizeof(float));
    gauss = malloc((size_t)C * sizeof(float));
    if (!m->blocks || !m->hyper || !specs || !m->tokens_host || !m->dense_pe_host || !gauss) {
        st = lisa_error_set(LISA_ERR_NOMEM, "sam: cannot allocate the model tables");
        goto fail;
    }
    int n = sam_weight_table(m, specs, cap);
    st = lisa_weights_load(&m->weights, be, m->st, pfx, specs, n, dtype);
    if (st != LISA_OK) goto fail;
    st = sam_host_f32(m->st, pfx, "mask_decoder.iou_token.weight", 2, SHAPE(1, C), m->tokens_host);
    if (st == LISA_OK)
        st = sam_host_f32(m->st, pfx, "mask_decoder.mask_tokens.weight", 2, SHAPE(M, C),
                          m->tokens_host + C);
    if (st == LISA_OK)
        st = sam_host_f32(m->st, pfx, "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
                          2, SHAPE(2, C / 2), gauss);
    if (st != LISA_OK) goto fail;
    sam_dense_pe(m->dense_pe_host, gauss, c->grid, (int)C, dtype);
    m->dense_pe = lisa_tensor_2d(NULL, dtype, T, C);
    st = be->ops->buffer_alloc(be, lisa_tensor_nbytes(&m->dense_pe), &m->pe_buffer);
    if (st != LISA_OK) goto fail;
    m->dense_pe.data = m->pe_buffer;
    st = be->ops->upload_convert(be, m->pe_buffer, dtype, m->dense_pe_host, LISA_DTYPE_F32,
                                 (size_t)(T * C));
    if (st != LISA_OK) goto fail;
    free(specs);
    free(gauss);
    return LISA_OK;
fail:
    free(specs);
    free(gauss);
    lisa_sam_model_free(m);
    return st;
}

void lisa_sam_model_free(lisa_sam_model *m) {
    lisa_weights_free(&m->weights);
    if (m->pe_buffer && m->be) m->be->ops->buffer_free(m->be, m->pe_buffer);
    if (m->st) lisa_safetensors_close(m->st);
    free(m->blocks);
    free(m->hyper);
    free(m->tokens_host);
    free(m->dense_pe_host);
    memset(m, 0, sizeof *m);
}

/* --- state --- */

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

static lisa_status sam_alloc(lisa_sam_state *s, lisa_tensor *t, lisa_dtype dt, int64_t rows,
                             int64_t cols) {
    int64_t shape[2] = {rows, cols};
    lisa_status st = lisa_backend_tensor_alloc(s->be, t, dt, 2, shape);
    if (st != LISA_OK)
        return lisa_error_set(st, "sam state: cannot reserve %zu bytes (%s)",
                              (size_t)(rows * cols) * lisa_dtype_size(dt), lisa_error_get());
    return LISA_OK;
}

/* Rows of windows after padding the grid to multiples of the window. */
static int64_t sam_window_rows(const lisa_sam_config *c) {
    int64_t G = c->grid, T = G * G;
    if (!c->window) return T;
    int64_t nw = (G + c->window - 1) / c->window;
    return max64(T, nw * nw * c->window * c->window);
}

lisa_status lisa_sam_state_init_batch(lisa_sam_state *s, const lisa_sam_model *m, int max_images,
                                      int max_batch, int max_sparse, int64_t max_pixels) {
    memset(s, 0, sizeof *s);
    if (max_images < 1 || max_batch < 1 || max_sparse < 1 || max_pixels < 1)
        return lisa_error_set(LISA_ERR_ARG, "sam state: sizes must be positive");
    const lisa_sam_config *c = &m->cfg;
    s->be = m->be;
    s->max_images = max_images;
    s->max_batch = max_batch;
    s->max_sparse = max_sparse;
    s->max_pixels = max_pixels;
    lisa_dtype dt = m->dtype, f32 = LISA_DTYPE_F32;
    int64_t G = c->grid, T = G * G, D = c->embed_dim, C = c->dim, S = c->img_size;
    int64_t p = c->patch, Tw = sam_window_rows(c), B = max_batch, M = c->num_mask_tokens;
    int64_t Bi = max_images;
    int64_t Nt = 1 + M + max_sparse, U = 4 * G;
    int64_t tw = max64(max64(c->dec_mlp_dim, c->iou_hidden), C);
    lisa_status st = LISA_OK;
    struct {
        lisa_tensor *t;
        lisa_dtype dt;
        int64_t rows, cols;
    } plan[] = {
        {&s->image, dt, Bi * 3, S * S},     {&s->cols, dt, Bi * T, max64(3 * p * p, 9 * C)},
        {&s->x, dt, Bi * T, D},             {&s->xn, dt, Bi * T, D},
        {&s->win, dt, Bi * Tw, D},          {&s->qkv, dt, Bi * Tw, 3 * D},
        {&s->q, dt, Bi * Tw, D},            {&s->k, dt, Bi * Tw, D},
        {&s->v, dt, Bi * Tw, D},            {&s->att, dt, Bi * Tw, D},
        {&s->proj, dt, Bi * Tw, D},         {&s->hid, dt, Bi * T, c->mlp_dim},
        {&s->neck, dt, Bi * T, C},          {&s->embed, dt, Bi * T, C},
        {&s->keys, dt, B * T, C},           {&s->keys_pe, dt, B * T, C},
        {&s->big_out, dt, B * T, C},        {&s->pq, dt, B * max64(T, Nt), C},
        {&s->pk, dt, B * max64(T, Nt), C},  {&s->pv, dt, B * max64(T, Nt), C},
        {&s->pa, dt, B * max64(T, Nt), C},  {&s->tok, dt, B * Nt, C},
        {&s->tok_pe, dt, B * Nt, C},        {&s->tq, dt, B * Nt, C},
        {&s->tout, dt, B * Nt, C},          {&s->tmlp, dt, B * Nt, tw},
        {&s->tmlp2, dt, B * Nt, tw},        {&s->rows, dt, B, C},
        {&s->hyper, dt, M * B, c->up2},     {&s->iou, dt, B, M},
        {&s->idx, LISA_DTYPE_I32, B, M + 1}, {&s->up_a, dt, B * 4 * T, c->up1},
        {&s->up_b, dt, B * U * U, c->up2},  {&s->lowres, dt, B * M, U * U},
        {&s->pp_low, f32, 1, U * U},        {&s->full, f32, 1, S * S},
        {&s->orig, f32, 1, max_pixels},
    };
    for (size_t i = 0; i < sizeof plan / sizeof plan[0] && st == LISA_OK; i++)
        st = sam_alloc(s, plan[i].t, plan[i].dt, plan[i].rows, plan[i].cols);
    if (st == LISA_OK && dt != LISA_DTYPE_F32) st = sam_alloc(s, &s->io, f32, 1, T * C);
    if (st == LISA_OK) {
        s->host_tok = malloc((size_t)(B * Nt * C) * sizeof(float));
        s->host_iou = malloc((size_t)(B * M) * sizeof(float));
        s->host_idx = malloc((size_t)(B * (M + 1)) * sizeof(int32_t));
        s->host_logits = malloc((size_t)max_pixels * sizeof(float));
        if (!s->host_tok || !s->host_iou || !s->host_idx || !s->host_logits)
            st = lisa_error_set(LISA_ERR_NOMEM, "sam state: cannot allocate host staging");
    }
    if (st == LISA_OK) {
        /* the backend's op scratch for the largest shapes: matmul K,
         * attention_full over the grid, a window or the decoder's tokens,
         * and the two transposed convs of the output upscaling */
        lisa_backend_reserve_req r;
        memset(&r, 0, sizeof r);
        r.matmul_k = max64(max64(3 * p * p, 9 * C), max64(max64(c->mlp_dim, D), tw));
        r.attention_full_lk = max64(max64(T, Nt), (int64_t)c->window * c->window);
        r.attention_full_d = max64(c->head_dim, C / c->dec_heads);
        r.conv_t_out = max64(B * 4 * T * c->up1, B * U * U * c->up2);
        r.conv_t_w = max64(C * c->up1 * 4, (int64_t)c->up1 * c->up2 * 4);
        st = lisa_backend_reserve(s->be, &r);
    }
    if (st != LISA_OK) lisa_sam_state_free(s);
    return st;
}

lisa_status lisa_sam_state_init(lisa_sam_state *s, const lisa_sam_model *m, int max_batch,
                                int max_sparse, int64_t max_pixels) {
    return lisa_sam_state_init_batch(s, m, 1, max_batch, max_sparse, max_pixels);
}

void lisa_sam_state_free(lisa_sam_state *s) {
    if (!s->be) return;
    lisa_tensor *all[] = {&s->image, &s->cols,   &s->x,     &s->xn,      &s->win,   &s->qkv,
                          &s->q,     &s->k,      &s->v,     &s->att,     &s->proj,  &s->hid,
                          &s->neck,  &s->embed,  &s->keys,  &s->keys_pe, &s->big_out, &s->pq,
                          &s->pk,    &s->pv,     &s->pa,    &s->tok,     &s->tok_pe, &s->tq,
                          &s->tout,  &s->tmlp,   &s->tmlp2, &s->rows,    &s->hyper, &s->iou,
                          &s->idx,   &s->up_a,   &s->up_b,  &s->lowres,  &s->pp_low, &s->full,
                          &s->orig,  &s->io};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) lisa_backend_tensor_free(s->be, all[i]);
    free(s->host_tok);
    free(s->host_iou);
    free(s->host_idx);
    free(s->host_logits);
    memset(s, 0, sizeof *s);
}

/* --- host <-> backend --- */

/* A 2-D view of t's memory from element `off`. */
static lisa_tensor sam_view2(const lisa_tensor *t, int64_t off, int64_t rows, int64_t cols) {
    return lisa_tensor_2d((char *)t->data + (size_t)off * lisa_dtype_size(t->dtype), t->dtype,
                          rows, cols);
}

static lisa_tensor sam_view3(const lisa_tensor *t, int64_t off, int64_t a, int64_t b, int64_t c) {
    int64_t shape[3] = {a, b, c};
    return lisa_tensor_view((char *)t->data + (size_t)off * lisa_dtype_size(t->dtype), t->dtype,
                            3, shape);
}

static lisa_tensor sam_view4(const lisa_tensor *t, int64_t a, int64_t b, int64_t c, int64_t d) {
    int64_t shape[4] = {a, b, c, d};
    return lisa_tensor_view(t->data, t->dtype, 4, shape);
}

/* Host fp32 (n) -> t's first n elements in t's dtype; through s->io in
 * chunks when t is not F32. */
static lisa_status sam_upload(lisa_sam_state *s, const lisa_tensor *t, const float *host,
                              int64_t n) {
    lisa_backend *be = s->be;
    if (t->dtype == LISA_DTYPE_F32)
        return be->ops->copy_to_backend(be, t->data, 0, host, (size_t)n * sizeof(float));
    int64_t chunk = lisa_tensor_nelem(&s->io);
    for (int64_t off = 0; off < n; off += chunk) {
        int64_t cnt = n - off < chunk ? n - off : chunk;
        lisa_tensor io = sam_view2(&s->io, 0, 1, cnt), dst = sam_view2(t, off, 1, cnt);
        LISA_TRY(be->ops->copy_to_backend(be, io.data, 0, host + off, (size_t)cnt * sizeof(float)));
        LISA_TRY(be->ops->convert(be, &dst, &io));
    }
    return LISA_OK;
}

/* t's first n elements -> host fp32, as sam_upload in reverse. */
static lisa_status sam_download(lisa_sam_state *s, const lisa_tensor *t, float *host, int64_t n) {
    lisa_backend *be = s->be;
    if (t->dtype == LISA_DTYPE_F32)
        return be->ops->copy_to_host(be, host, t->data, 0, (size_t)n * sizeof(float));
    int64_t chunk = lisa_tensor_nelem(&s->io);
    for (int64_t off = 0; off < n; off += chunk) {
        int64_t cnt = n - off < chunk ? n - off : chunk;
        lisa_tensor io = sam_view2(&s->io, 0, 1, cnt), src = sam_view2(t, off, 1, cnt);
        LISA_TRY(be->ops->convert(be, &io, &src));
        LISA_TRY(be->ops->copy_to_host(be, host + off, io.data, 0, (size_t)cnt * sizeof(float)));
        /* io is reused by the next chunk: the copy must land first */
        LISA_TRY(be->ops->synchronize(be));
    }
    return LISA_OK;
}

/* --- image encoder --- */

/* One ViT block on s->x (nb*T, D), nb images, in place. */
static lisa_status sam_block_forward(const lisa_sam_model *m, lisa_sam_state *s, int i,
                                     int64_t nb) {
    const lisa_sam_config *c = &m->cfg;
    const lisa_sam_block *b = &m->blocks[i];
    lisa_backend *be = s->be;
    const lisa_backend_ops *op = be->ops;
    int64_t G = c->grid, T = G * G, D = c->embed_dim, H = c->num_heads, hd = c->head_dim;
    int ws = c->window;
    lisa_tensor x = sam_view2(&s->x, 0, nb * T, D), xn = sam_view2(&s->xn, 0, nb * T, D);
    LISA_TRY(op->layernorm(be, &xn, &x, &b->norm1_w, &b->norm1_b, SAM_ENC_EPS));

    /* attention over the windows of every image (zero-padded AFTER norm1,
     * padding unmasked) or each image's whole grid: nwin (nb * windows, or
     * nb) independent sequences of L tokens in attention_full's batch */
    int64_t nwin = nb, L = T;
    lisa_tensor src = xn;
    if (!c->global[i]) {
        int64_t nw = (G + ws - 1) / ws;
        nwin = nb * nw * nw;
        L = (int64_t)ws * ws;
        src = sam_view2(&s->win, 0, nwin * L, D);
        lisa_tensor x4 = sam_view4(&xn, nb, G, G, D);
        LISA_TRY(op->window_partition(be, &src, &x4, ws));
    }
    int64_t R = nwin * L;
    lisa_tensor qkv = sam_view2(&s->qkv, 0, R, 3 * D);
    lisa_tensor q = sam_view2(&s->q, 0, R, D), k = sam_view2(&s->k, 0, R, D),
                v = sam_view2(&s->v, 0, R, D);
    LISA_TRY(op->matmul(be, &qkv, &src, &b->qkv_w, &b->qkv_b));
    LISA_TRY(op->copy_cols(be, &q, &qkv, 0));
    LISA_TRY(op->copy_cols(be, &k, &qkv, (int)D));
    LISA_TRY(op->copy_cols(be, &v, &qkv, (int)(2 * D)));
    lisa_tensor q4 = sam_view4(&q, nwin, L, H, hd), k4 = sam_view4(&k, nwin, L, H, hd),
                v4 = sam_view4(&v, nwin, L, H, hd);
    lisa_tensor att = sam_view3(&s->att, 0, nwin, L, D), att2 = sam_view2(&s->att, 0, R, D);
    float scale = (float)pow((double)hd, -0.5);  /* head_dim ** -0.5 in Python */
    LISA_TRY(op->attention_full(be, &att, &q4, &k4, &v4, scale, &b->rel_pos_h, &b->rel_pos_w));
    lisa_tensor proj = sam_view2(&s->proj, 0, R, D);
    LISA_TRY(op->matmul(be, &proj, &att2, &b->proj_w, &b->proj_b));
    if (c->global[i]) {
        LISA_TRY(op->add(be, &x, &x, &proj));
    } else {
        lisa_tensor out4 = sam_view4(&xn, nb, G, G, D);
        LISA_TRY(op->window_unpartition(be, &out4, &proj, ws));
        LISA_TRY(op->add(be, &x, &x, &xn));
    }

    /* MLP: x += lin2(GELU(lin1(norm2(x)))) */
    lisa_tensor hid = sam_view2(&s->hid, 0, nb * T, c->mlp_dim);
    LISA_TRY(op->layernorm(be, &xn, &x, &b->norm2_w, &b->norm2_b, SAM_ENC_EPS));
    LISA_TRY(op->matmul(be, &hid, &xn, &b->lin1_w, &b->lin1_b));
    LISA_TRY(op->activation(be, &hid, &hid, LISA_ACT_GELU));
    LISA_TRY(op->matmul(be, &xn, &hid, &b->lin2_w, &b->lin2_b));
    return op->add(be, &x, &x, &xn);
}

lisa_status lisa_sam_encode_batch(const lisa_sam_model *m, lisa_sam_state *s, const float *images,
                                  int B, float *embeddings) {
    const lisa_sam_config *c = &m->cfg;
    lisa_backend *be = s->be;
    const lisa_backend_ops *op = be->ops;
    int64_t G = c->grid, T = G * G, D = c->embed_dim, C = c->dim, S = c->img_size, p = c->patch;
    s->n_embeddings = 0;
    s->selected = 0;
    if (B < 1 || B > s->max_images)
        return lisa_error_set(LISA_ERR_ARG, "sam encode: %d images (state: 1..%d per pass)", B,
                              s->max_images);
    int64_t nb = B;

    /* patch embedding: conv k = s = p as im2col over all images + one
     * matmul (nb*T, D), then + pos_embed (T, D) per image */
    lisa_tensor img = sam_view4(&s->image, nb, 3, S, S);
    LISA_TRY(sam_upload(s, &img, images, nb * 3 * S * S));
    lisa_tensor cols = sam_view2(&s->cols, 0, nb * T, 3 * p * p);
    LISA_TRY(op->im2col(be, &cols, &img, (int)p, (int)p, 0, 1));
    lisa_tensor x = sam_view2(&s->x, 0, nb * T, D);
    lisa_tensor pw = sam_view2(&m->patch_w, 0, D, 3 * p * p);
    LISA_TRY(op->matmul(be, &x, &cols, &pw, &m->patch_b));
    lisa_tensor pos = sam_view2(&m->pos_embed, 0, T, D);
    for (int64_t b = 0; b < nb; b++) {
        lisa_tensor xb = sam_view2(&s->x, b * T * D, T, D);
        LISA_TRY(op->add(be, &xb, &xb, &pos));
    }

    for (int i = 0; i < c->depth; i++) LISA_TRY(sam_block_forward(m, s, i, nb));

    /* neck over all nb*T rows: 1x1 conv -> LayerNorm2d -> 3x3 conv (pad 1,
     * per image) -> LayerNorm2d */
    lisa_tensor neck = sam_view2(&s->neck, 0, nb * T, C), emb = sam_view2(&s->embed, 0, nb * T, C);
    lisa_tensor w0 = sam_view2(&m->neck0_w, 0, C, D), w2 = sam_view2(&m->neck2_w, 0, C, 9 * C);
    LISA_TRY(op->matmul(be, &neck, &x, &w0, NULL));
    LISA_TRY(op->layernorm(be, &neck, &neck, &m->neck1_w, &m->neck1_b, SAM_ENC_EPS));
    lisa_tensor neck4 = sam_view4(&neck, nb, G, G, C);
    lisa_tensor cols3 = sam_view2(&s->cols, 0, nb * T, 9 * C);
    LISA_TRY(op->im2col(be, &cols3, &neck4, 3, 1, 1, 0));
    LISA_TRY(op->matmul(be, &emb, &cols3, &w2, NULL));
    LISA_TRY(op->layernorm(be, &emb, &emb, &m->neck3_w, &m->neck3_b, SAM_ENC_EPS));
    if (embeddings) LISA_TRY(sam_download(s, &emb, embeddings, nb * T * C));
    LISA_TRY(op->synchronize(be));
    s->n_embeddings = B;
    return LISA_OK;
}

lisa_status lisa_sam_encode(const lisa_sam_model *m, lisa_sam_state *s, const float *image,
                            float *embedding) {
    return lisa_sam_encode_batch(m, s, image, 1, embedding);
}

lisa_status lisa_sam_select_embedding(lisa_sam_state *s, int b) {
    if (b < 0 || b >= s->n_embeddings)
        return lisa_error_set(LISA_ERR_ARG, "sam select: image %d of %d encoded", b,
                              s->n_embeddings);
    s->selected = b;
    return LISA_OK;
}

lisa_status lisa_sam_set_embedding(const lisa_sam_model *m, lisa_sam_state *s,
                                   const float *embedding) {
    int64_t T = (int64_t)m->cfg.grid * m->cfg.grid;
    s->n_embeddings = 0;
    s->selected = 0;
    LISA_TRY(sam_upload(s, &s->embed, embedding, T * m->cfg.dim));
    LISA_TRY(s->be->ops->synchronize(s->be));
    s->n_embeddings = 1;
    return LISA_OK;
}

/* --- mask decoder --- */

/* Decoder Attention: out (nb*Lq, C) = out_proj(attn(q_proj(qin), k_proj(kin),
 * v_proj(vin))) with heads split from the inner width; qin (nb*Lq, C), kin
 * and vin (nb*Lk, C). out may alias an input. */
static lisa_status sam_attn(const lisa_sam_model *m, lisa_sam_state *s, const lisa_sam_attn *a,
                            lisa_tensor *out, const lisa_tensor *qin, const lisa_tensor *kin,
                            const lisa_tensor *vin, int64_t nb, int64_t Lq, int64_t Lk) {
    lisa_backend *be = s->be;
    const lisa_backend_ops *op = be->ops;
    int64_t I = a->inner, H = m->cfg.dec_heads, ch = I / H;
    lisa_tensor pq = sam_view2(&s->pq, 0, nb * Lq, I), pk = sam_view2(&s->pk, 0, nb * Lk, I),
                pv = sam_view2(&s->pv, 0, nb * Lk, I), pa = sam_view2(&s->pa, 0, nb * Lq, I);
    LISA_TRY(op->matmul(be, &pq, qin, &a->q_w, &a->q_b));
    LISA_TRY(op->matmul(be, &pk, kin, &a->k_w, &a->k_b));
    LISA_TRY(op->matmul(be, &pv, vin, &a->v_w, &a->v_b));
    lisa_tensor q4 = sam_view4(&pq, nb, Lq, H, ch), k4 = sam_view4(&pk, nb, Lk, H, ch),
                v4 = sam_view4(&pv, nb, Lk, H, ch), pa3 = sam_view3(&pa, 0, nb, Lq, I);
    /* torch divides the scores by sqrt(c_per_head); q is scaled instead */
    float scale = (float)(1.0 / sqrt((double)ch));
    LISA_TRY(op->attention_full(be, &pa3, &q4, &k4, &v4, scale, NULL, NULL));
    return op->matmul(be, out, &pa, &a->o_w, &a->o_b);
}

/* keys_pe (nb*T, C) = keys + dense PE, per prompt. */
static lisa_status sam_keys_pe(const lisa_sam_model *m, lisa_sam_state *s, int64_t nb) {
    int64_t T = (int64_t)m->cfg.grid * m->cfg.grid, C = m->cfg.dim;
    for (int64_t b = 0; b < nb; b++) {
        lisa_tensor kp = sam_view2(&s->keys_pe, b * T * C, T, C),
                    k = sam_view2(&s->keys, b * T * C, T, C);
        LISA_TRY(s->be->ops->add(s->be, &kp, &k, &m->dense_pe));
    }
    return LISA_OK;
}

/* out (rows, out) = MLP3(in (rows, C)) with ReLU between layers. */
static lisa_status sam_mlp3(lisa_sam_state *s, const lisa_sam_mlp3 *p, lisa_tensor *out,
                            const lisa_tensor *in, int64_t rows) {
    lisa_backend *be = s->be;
    const lisa_backend_ops *op = be->ops;
    lisa_tensor t1 = sam_view2(&s->tmlp, 0, rows, p->w[0].shape[0]);
    lisa_tensor t2 = sam_view2(&s->tmlp2, 0, rows, p->w[1].shape[0]);
    LISA_TRY(op->matmul(be, &t1, in, &p->w[0], &p->b[0]));
    LISA_TRY(op->activation(be, &t1, &t1, LISA_ACT_RELU));
    LISA_TRY(op->matmul(be, &t2, &t1, &p->w[1], &p->b[1]));
    LISA_TRY(op->activation(be, &t2, &t2, LISA_ACT_RELU));
    return op->matmul(be, out, &t2, &p->w[2], &p->b[2]);
}

/* One decoder pass over nb <= max_batch prompts: leaves the low-res logits
 * of mask tokens first .. first+nm-1 in s->lowres (nb*nm, U*U) and every
 * IoU prediction in s->iou (nb, M). */
static lisa_status sam_decode_batch(const lisa_sam_model *m, lisa_sam_state *s,
                                    const float *sparse, int64_t nb, int64_t ns, int first,
                                    int nm) {
    const lisa_sam_config *c = &m->cfg;
    lisa_backend *be = s->be;
    const lisa_backend_ops *op = be->ops;
    int64_t G = c->grid, T = G * G, C = c->dim, M = c->num_mask_tokens, Nt = 1 + M + ns;
    int64_t U = 4 * G, U1 = c->up1, U2 = c->up2, nt = nb * Nt;

    /* tokens: [iou token, mask tokens, sparse prompt] per prompt; the
     * original tokens are also the query PE */
    for (int64_t b = 0; b < nb; b++) {
        memcpy(s->host_tok + b * Nt * C, m->tokens_host, (size_t)((1 + M) * C) * sizeof(float));
        memcpy(s->host_tok + (b * Nt + 1 + M) * C, sparse + b * ns * C,
               (size_t)(ns * C) * sizeof(float));
    }
    lisa_tensor tok = sam_view2(&s->tok, 0, nt, C), tpe = sam_view2(&s->tok_pe, 0, nt, C);
    lisa_tensor tq = sam_view2(&s->tq, 0, nt, C), tout = sam_view2(&s->tout, 0, nt, C);
    LISA_TRY(sam_upload(s, &tok, s->host_tok, nt * C));
    LISA_TRY(op->copy_cols(be, &tpe, &tok, 0));

    /* keys: the selected image embedding + dense prompt (no_mask_embed), per
     * prompt */
    lisa_tensor keys = sam_view2(&s->keys, 0, nb * T, C);
    lisa_tensor kpe = sam_view2(&s->keys_pe, 0, nb * T, C);
    lisa_tensor emb = sam_view2(&s->embed, (int64_t)s->selected * T * C, T, C);
    lisa_tensor big = sam_view2(&s->big_out, 0, nb * T, C);
    for (int64_t b = 0; b < nb; b++) {
        lisa_tensor kb = sam_view2(&s->keys, b * T * C, T, C);
        LISA_TRY(op->copy_cols(be, &kb, &emb, 0));
    }
    LISA_TRY(op->add_bias(be, &keys, &m->no_mask_embed));

    for (int l = 0; l < c->dec_depth; l++) {
        const lisa_sam_dec_layer *L = &m->dec_layers[l];
        /* self-attention; layer 0 replaces the queries (no residual, no PE) */
        if (l == 0) {
            LISA_TRY(sam_attn(m, s, &L->self_attn, &tok, &tok, &tok, &tok, nb, Nt, Nt));
        } else {
            LISA_TRY(op->add(be, &tq, &tok, &tpe));
            LISA_TRY(sam_attn(m, s, &L->self_attn, &tout, &tq, &tq, &tok, nb, Nt, Nt));
            LISA_TRY(op->add(be, &tok, &tok, &tout));
        }
        LISA_TRY(op->layernorm(be, &tok, &tok, &L->norm_w[0], &L->norm_b[0], SAM_DEC_EPS));
        /* token -> image */
        LISA_TRY(op->add(be, &tq, &tok, &tpe));
        LISA_TRY(sam_keys_pe(m, s, nb));
        LISA_TRY(sam_attn(m, s, &L->cross_t2i, &tout, &tq, &kpe, &keys, nb, Nt, T));
        LISA_TRY(op->add(be, &tok, &tok, &tout));
        LISA_TRY(op->layernorm(be, &tok, &tok, &L->norm_w[1], &L->norm_b[1], SAM_DEC_EPS));
        /* MLP (ReLU) */
        lisa_tensor hm = sam_view2(&s->tmlp, 0, nt, c->dec_mlp_dim);
        LISA_TRY(op->matmul(be, &hm, &tok, &L->lin1_w, &L->lin1_b));
        LISA_TRY(op->activation(be, &hm, &hm, LISA_ACT_RELU));
        LISA_TRY(op->matmul(be, &tout, &hm, &L->lin2_w, &L->lin2_b));
        LISA_TRY(op->add(be, &tok, &tok, &tout));
        LISA_TRY(op->layernorm(be, &tok, &tok, &L->norm_w[2], &L->norm_b[2], SAM_DEC_EPS));
        /* image -> token (keys_pe is still keys + PE: keys unchanged since) */
        LISA_TRY(op->add(be, &tq, &tok, &tpe));
        LISA_TRY(sam_attn(m, s, &L->cross_i2t, &big, &kpe, &tq, &tok, nb, T, Nt));
        LISA_TRY(op->add(be, &keys, &keys, &big));
        LISA_TRY(op->layernorm(be, &keys, &keys, &L->norm_w[3], &L->norm_b[3], SAM_DEC_EPS));
    }
    /* final token -> image attention */
    LISA_TRY(op->add(be, &tq, &tok, &tpe));
    LISA_TRY(sam_keys_pe(m, s, nb));
    LISA_TRY(sam_attn(m, s, &m->final_attn, &tout, &tq, &kpe, &keys, nb, Nt, T));
    LISA_TRY(op->add(be, &tok, &tok, &tout));
    LISA_TRY(op->layernorm(be, &tok, &tok, &m->final_norm_w, &m->final_norm_b, SAM_DEC_EPS));

    /* output upscaling: (nb, G, G, C) -> (nb, 2G, 2G, C/4) -> (nb, 4G, 4G, C/8) */
    lisa_tensor k4 = sam_view4(&keys, nb, G, G, C);
    lisa_tensor ua = sam_view4(&s->up_a, nb, 2 * G, 2 * G, U1);
    lisa_tensor ub = sam_view4(&s->up_b, nb, U, U, U2);
    LISA_TRY(op->conv_transpose_2x2(be, &ua, &k4, &m->up0_w, &m->up0_b));
    LISA_TRY(op->layernorm(be, &ua, &ua, &m->up1_w, &m->up1_b, SAM_ENC_EPS));
    LISA_TRY(op->activation(be, &ua, &ua, LISA_ACT_GELU));
    LISA_TRY(op->conv_transpose_2x2(be, &ub, &ua, &m->up3_w, &m->up3_b));
    LISA_TRY(op->activation(be, &ub, &ub, LISA_ACT_GELU));

    /* row indices: for each kept mask token its rows, then the IoU token rows */
    for (int jj = 0; jj < nm; jj++)
        for (int64_t b = 0; b < nb; b++)
            s->host_idx[jj * nb + b] = (int32_t)(b * Nt + 1 + first + jj);
    for (int64_t b = 0; b < nb; b++) s->host_idx[nm * nb + b] = (int32_t)(b * Nt);
    LISA_TRY(op->copy_to_backend(be, s->idx.data, 0, s->host_idx,
                                 (size_t)((nm + 1) * nb) * sizeof(int32_t)));

    /* hypernetworks and masks = hyper_in . upscaled, per prompt and mask */
    lisa_tensor rows = sam_view2(&s->rows, 0, nb, C);
    for (int jj = 0; jj < nm; jj++) {
        lisa_tensor idx = lisa_tensor_1d((int32_t *)s->idx.data + jj * nb, LISA_DTYPE_I32, nb);
        lisa_tensor hy = sam_view2(&s->hyper, jj * nb * U2, nb, U2);
        LISA_TRY(op->get_rows(be, &rows, &tok, &idx));
        LISA_TRY(sam_mlp3(s, &m->hyper[first + jj], &hy, &rows, nb));
    }
    for (int64_t b = 0; b < nb; b++)
        for (int jj = 0; jj < nm; jj++) {
            lisa_tensor up = sam_view2(&s->up_b, b * U * U * U2, U * U, U2);
            lisa_tensor w = sam_view2(&s->hyper, (jj * nb + b) * U2, 1, U2);
            lisa_tensor out = sam_view2(&s->lowres, (b * nm + jj) * U * U, U * U, 1);
            LISA_TRY(op->matmul(be, &out, &up, &w, NULL));
        }

    /* IoU head on the IoU token */
    lisa_tensor idx = lisa_tensor_1d((int32_t *)s->idx.data + nm * nb, LISA_DTYPE_I32, nb);
    lisa_tensor iou = sam_view2(&s->iou, 0, nb, M);
    LISA_TRY(op->get_rows(be, &rows, &tok, &idx));
    return sam_mlp3(s, &m->iou_head, &iou, &rows, nb);
}

lisa_status lisa_sam_decode(const lisa_sam_model *m, lisa_sam_state *s, const float *sparse,
                            int n, int ns, int multimask, float *lowres, float *iou) {
    const lisa_sam_config *c = &m->cfg;
    if (s->n_embeddings < 1)
        return lisa_error_set(LISA_ERR_ARG, "sam decode: no image embedding (encode first)");
    if (n < 1 || ns < 1 || ns > s->max_sparse)
        return lisa_error_set(LISA_ERR_ARG,
                              "sam decode: %d prompts of %d sparse tokens (state: 1..%d tokens)",
                              n, ns, s->max_sparse);
    int M = c->num_mask_tokens;
    if (multimask && M < 2)
        return lisa_error_set(LISA_ERR_ARG, "sam decode: multimask needs more than one mask token");
    int first = multimask ? 1 : 0, nm = multimask ? M - 1 : 1;
    int64_t UU = (int64_t)16 * c->grid * c->grid, C = c->dim;
    for (int b0 = 0; b0 < n; b0 += s->max_batch) {
        int nb = n - b0 < s->max_batch ? n - b0 : s->max_batch;
        LISA_TRY(sam_decode_batch(m, s, sparse + (int64_t)b0 * ns * C, nb, ns, first, nm));
        if (lowres)
            LISA_TRY(sam_download(s, &s->lowres, lowres + (int64_t)b0 * nm * UU,
                                  (int64_t)nb * nm * UU));
        LISA_TRY(sam_download(s, &s->iou, s->host_iou, (int64_t)nb * M));
        /* the host token and index staging is rewritten by the next batch */
        LISA_TRY(s->be->ops->synchronize(s->be));
        if (iou)
            for (int b = 0; b < nb; b++)
                for (int jj = 0; jj < nm; jj++)
                    iou[(int64_t)(b0 + b) * nm + jj] = s->host_iou[b * M + first + jj];
    }
    return LISA_OK;
}

lisa_status lisa_sam_postprocess(const lisa_sam_model *m, lisa_sam_state *s, const float *lowres,
                                 int rh, int rw, int h0, int w0, float *logits, uint8_t *mask) {
    const lisa_sam_config *c = &m->cfg;
    int64_t U = 4 * (int64_t)c->grid, S = c->img_size;
    if (rh < 1 || rw < 1 || rh > S || rw > S || h0 < 1 || w0 < 1 ||
        (int64_t)h0 * w0 > s->max_pixels)
        return lisa_error_set(LISA_ERR_ARG,
                              "sam postprocess: resized %dx%d (max %lld), original %dx%d "
                              "(state: %lld pixels)",
                              rh, rw, (long long)S, h0, w0, (long long)s->max_pixels);
    lisa_backend *be = s->be;
    const lisa_backend_ops *op = be->ops;
    int64_t npix = (int64_t)h0 * w0;
    lisa_tensor low = sam_view3(&s->pp_low, 0, 1, U, U);
    lisa_tensor full = sam_view3(&s->full, 0, 1, S, S);
    lisa_tensor orig = sam_view3(&s->orig, 0, 1, h0, w0);
    LISA_TRY(op->copy_to_backend(be, low.data, 0, lowres, (size_t)(U * U) * sizeof(float)));
    LISA_TRY(op->resize_bilinear(be, &full, &low, (int)U, (int)U));
    LISA_TRY(op->resize_bilinear(be, &orig, &full, rh, rw));
    LISA_TRY(op->copy_to_host(be, s->host_logits, orig.data, 0, (size_t)npix * sizeof(float)));
    LISA_TRY(op->synchronize(be));
    if (logits) memcpy(logits, s->host_logits, (size_t)npix * sizeof(float));
    if (mask)
        for (int64_t i = 0; i < npix; i++) mask[i] = s->host_logits[i] > 0.0f;
    return LISA_OK;
}

lisa_status lisa_sam_options_parse(lisa_sam_options *o, const char *json, size_t len) {
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) return lisa_error_set(LISA_ERR_FORMAT, "config.json: not valid JSON");
    const cJSON *sc = cJSON_GetObjectItem(root, "sam_config");
    const cJSON *eh = cJSON_GetObjectItem(sc, "encoder_num_heads");
    const cJSON *dh = cJSON_GetObjectItem(sc, "decoder_num_heads");
    /* 0 means "the default" inside lisa_sam_options, so a 0 (or a negative
     * or fractional count) written here would silently become SAM ViT-H's
     * heads: refuse it. */
    const cJSON *given[2] = {eh, dh};
    static const char *const name[2] = {"encoder_num_heads", "decoder_num_heads"};
    for (int k = 0; k < 2; k++)
        if (given[k] && !(cJSON_IsNumber(given[k]) && given[k]->valuedouble >= 1 &&
                          given[k]->valuedouble <= 4096 &&
                          given[k]->valuedouble == (double)given[k]->valueint)) {
            cJSON_Delete(root);
            return lisa_error_set(LISA_ERR_FORMAT,
                                  "config.json: sam_config.%s must be a positive integer",
                                  name[k]);
        }
    if (eh) o->encoder_heads = eh->valueint;
    if (dh) o->decoder_heads = dh->valueint;
    cJSON_Delete(root);
    return LISA_OK;
}
