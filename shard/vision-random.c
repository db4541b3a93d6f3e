/* vision-random.c: random-weight CLIP and SAM through a temporary
 * safetensors file and the normal loaders (see vision-random.h). */
#include "vision-random.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define VR_POOL ((size_t)1 << 20) /* elements per value pool */

typedef enum { VR_W = 0, VR_ONE, VR_ZERO, VR_UNIT, VR_KINDS } vr_kind;

typedef struct vr_tensor {
    char name[192];
    int ndim;
    int64_t shape[LISA_MAX_DIMS];
    vr_kind kind;
} vr_tensor;

typedef struct vr_list {
    vr_tensor *t;
    int n, cap;
    int oom;
} vr_list;

/* Appends a tensor named by fmt (printf-style); on allocation failure sets
 * l->oom and drops it (checked once before writing). */
static void vr_add(vr_list *l, vr_kind kind, int ndim, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void vr_add(vr_list *l, vr_kind kind, int ndim, const int64_t *shape, const char *fmt, ...) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 256;
        vr_tensor *t = realloc(l->t, (size_t)cap * sizeof *t);
        if (!t) {
            l->oom = 1;
            return;
        }
        l->t = t;
        l->cap = cap;
    }
    vr_tensor *e = &l->t[l->n++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->name, sizeof e->name, fmt, ap);
    va_end(ap);
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++) e->shape[i] = shape[i];
    e->kind = kind;
}

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})

static uint64_t vr_next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* Approximately N(0, 1): the centred sum of four uniforms, scaled. */
static float vr_normal(uint64_t *s) {
    float acc = 0;
    for (int i = 0; i < 4; i++) acc += (float)(vr_next(s) >> 40) / (float)(1 << 24);
    return (acc - 2.0f) * 1.7320508f;
}

static void vr_store(void *dst, size_t i, float v, lisa_dtype dt) {
    if (dt == LISA_DTYPE_F32)
        ((float *)dst)[i] = v;
    else if (dt == LISA_DTYPE_BF16)
        ((uint16_t *)dst)[i] = lisa_f32_to_bf16(v);
    else
        ((uint16_t *)dst)[i] = lisa_f32_to_f16(v);
}

static const char *vr_dtype_tag(lisa_dtype dt) {
    return dt == LISA_DTYPE_F32 ? "F32" : dt == LISA_DTYPE_BF16 ? "BF16" : "F16";
}

static size_t vr_nelem(const vr_tensor *t) {
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (size_t)t->shape[i];
    return n;
}

/* Appends printf-style text to a growing buffer; 0 on allocation failure. */
static int vr_cat(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int vr_cat(char **buf, size_t *len, size_t *cap, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(*buf ? *buf + *len : NULL, *buf ? *cap - *len : 0, fmt, ap);
        va_end(ap);
        if (k < 0) return 0;
        if (*buf && *len + (size_t)k < *cap) {
            *len += (size_t)k;
            return 1;
        }
        size_t ncap = (*cap ? 2 * *cap : 65536) + (size_t)k;
        char *b = realloc(*buf, ncap);
        if (!b) return 0;
        *buf = b;
        *cap = ncap;
    }
}

/* Writes the tensors of l to path as a safetensors file in dtype dt. */
static lisa_status vr_write(const char *path, const vr_list *l, lisa_dtype dt, uint64_t seed) {
    if (l->oom) return lisa_error_set(LISA_ERR_NOMEM, "random weights: out of memory");
    size_t es = lisa_dtype_size(dt), off = 0, len = 0, cap = 0;
    char *hdr = NULL;
    int ok = vr_cat(&hdr, &len, &cap, "{");
    for (int i = 0; i < l->n && ok; i++) {
        const vr_tensor *t = &l->t[i];
        size_t nb = vr_nelem(t) * es;
        ok = vr_cat(&hdr, &len, &cap, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", i ? "," : "",
                    t->name, vr_dtype_tag(dt));
        for (int d = 0; d < t->ndim && ok; d++)
            ok = vr_cat(&hdr, &len, &cap, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        ok = ok && vr_cat(&hdr, &len, &cap, "],\"data_offsets\":[%zu,%zu]}", off, off + nb);
        off += nb;
    }
    ok = ok && vr_cat(&hdr, &len, &cap, "}");
    while (ok && len % 8) ok = vr_cat(&hdr, &len, &cap, " ");
    char *pool = ok ? malloc(VR_KINDS * VR_POOL * es) : NULL;
    if (!pool) {
        free(hdr);
        return lisa_error_set(LISA_ERR_NOMEM, "random weights: out of memory");
    }
    uint64_t rs = seed ? seed : 0x9E3779B97F4A7C15ULL;
    for (size_t j = 0; j < VR_POOL; j++) {
        float z = vr_normal(&rs);
        vr_store(pool + VR_W * VR_POOL * es, j, 0.02f * z, dt);
        vr_store(pool + VR_ONE * VR_POOL * es, j, 1.0f, dt);
        vr_store(pool + VR_ZERO * VR_POOL * es, j, 0.0f, dt);
        vr_store(pool + VR_UNIT * VR_POOL * es, j, z, dt);
    }
    lisa_status st = LISA_OK;
    FILE *f = fopen(path, "wb");
    if (!f) st = lisa_error_set(LISA_ERR_IO, "cannot create %s: %s", path, strerror(errno));
    unsigned char n8[8];
    for (int b = 0; b < 8; b++) n8[b] = (unsigned char)((uint64_t)len >> (8 * b));
    if (st == LISA_OK && (fwrite(n8, 1, 8, f) != 8 || fwrite(hdr, 1, len, f) != len))
        st = lisa_error_set(LISA_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    for (int i = 0; i < l->n && st == LISA_OK; i++) {
        const vr_tensor *t = &l->t[i];
        const char *src = pool + (size_t)t->kind * VR_POOL * es;
        size_t ne = vr_nelem(t), pos = ((size_t)i * 7919u) % (VR_POOL / 2);
        for (size_t done = 0; done < ne && st == LISA_OK;) {
            size_t cnt = VR_POOL - pos;
            if (cnt > ne - done) cnt = ne - done;
            if (fwrite(src + pos * es, es, cnt, f) != cnt)
                st = lisa_error_set(LISA_ERR_IO, "cannot write %s: %s", path, strerror(errno));
            done += cnt;
            pos = 0;
        }
    }
    if (f && fclose(f) != 0 && st == LISA_OK)
        st = lisa_error_set(LISA_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    free(pool);
    free(hdr);
    return st;
}

/* A fresh temporary folder: dir receives its path, file the model file's. */
static lisa_status vr_tempdir(char *dir, size_t dn, char *file, size_t fn) {
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp) tmp = "/tmp";
    if ((size_t)snprintf(dir, dn, "%s/lisa-random-XXXXXX", tmp) >= dn)
        return lisa_error_set(LISA_ERR_ARG, "TMPDIR path too long");
    if (!mkdtemp(dir))
        return lisa_error_set(LISA_ERR_IO, "cannot create a folder in %s: %s", tmp,
                              strerror(errno));
    snprintf(file, fn, "%s/model.safetensors", dir);
    return LISA_OK;
}

static lisa_status vr_check_dtype(lisa_dtype dt) {
    if (dt != LISA_DTYPE_F32 && dt != LISA_DTYPE_BF16 && dt != LISA_DTYPE_F16)
        return lisa_error_set(LISA_ERR_ARG, "random weights: dtype must be F32, BF16 or F16");
    return LISA_OK;
}

lisa_status lisa_vision_clip_preset(const char *name, lisa_clip_config *cfg, int *select_layer) {
    memset(cfg, 0, sizeof *cfg);
    if (!strcmp(name, "l14")) {
        *cfg = (lisa_clip_config){1024, 4096, 24, 16, 64, 224, 14, 3, 1e-5f};
    } else if (!strcmp(name, "b16")) {
        *cfg = (lisa_clip_config){768, 3072, 12, 12, 64, 224, 16, 3, 1e-5f};
    } else if (!strcmp(name, "tiny")) {
        *cfg = (lisa_clip_config){32, 64, 2, 2, 16, 224, 14, 3, 1e-5f};
    } else {
        return lisa_error_set(LISA_ERR_ARG, "unknown CLIP preset '%s' (l14, b16, tiny)", name);
    }
    *select_layer = -2;
    return LISA_OK;
}

lisa_status lisa_vision_sam_preset(const char *name, lisa_vision_sam_shape *s) {
    static const struct {
        const char *name;
        int dim, depth, heads, globals[4];
    } enc[] = {
        {"vit_b", 768, 12, 12, {2, 5, 8, 11}},
        {"vit_l", 1024, 24, 16, {5, 11, 17, 23}},
        {"vit_h", 1280, 32, 16, {7, 15, 23, 31}},
        {"tiny", 32, 2, 2, {1, -1, -1, -1}},
    };
    memset(s, 0, sizeof *s);
    for (size_t i = 0; i < sizeof enc / sizeof enc[0]; i++) {
        if (strcmp(name, enc[i].name)) continue;
        int tiny = !strcmp(name, "tiny");
        s->embed_dim = enc[i].dim;
        s->depth = enc[i].depth;
        s->num_heads = enc[i].heads;
        s->patch = 16;
        s->grid = 64;
        s->window = 14;
        for (int g = 0; g < 4; g++)
            if (enc[i].globals[g] >= 0) s->global[enc[i].globals[g]] = 1;
        s->dim = tiny ? 32 : 256;
        s->dec_depth = 2;
        s->dec_heads = tiny ? 2 : 8;
        s->dec_mlp_dim = tiny ? 64 : 2048;
        s->num_mask_tokens = 4;
        s->iou_hidden = tiny ? 32 : 256;
        return LISA_OK;
    }
    return lisa_error_set(LISA_ERR_ARG, "unknown SAM preset '%s' (vit_b, vit_l, vit_h, tiny)",
                          name);
}

lisa_status lisa_vision_random_clip(lisa_clip_model *m, const lisa_clip_config *cfg,
                                    int select_layer, lisa_backend *be, lisa_dtype wdtype,
                                    lisa_dtype dtype, uint64_t seed) {
    memset(m, 0, sizeof *m);
    LISA_TRY(vr_check_dtype(wdtype));
    int L = cfg->num_hidden_layers, nrun = select_layer >= 0 ? select_layer : L + 1 + select_layer;
    if (nrun < 0 || nrun > L)
        return lisa_error_set(LISA_ERR_ARG, "clip: select_layer %d out of range for %d layers",
                              select_layer, L);
    int64_t C = cfg->hidden_size, I = cfg->intermediate_size, P = cfg->patch_size;
    int64_t T = lisa_clip_num_patches(cfg) + 1;
    const char *p = "vision_model.";
    vr_list l = {0};
    vr_add(&l, VR_W, 1, SHAPE(C), "%sembeddings.class_embedding", p);
    vr_add(&l, VR_W, 4, SHAPE(C, cfg->num_channels, P, P), "%sembeddings.patch_embedding.weight",
           p);
    vr_add(&l, VR_W, 2, SHAPE(T, C), "%sembeddings.position_embedding.weight", p);
    vr_add(&l, VR_ONE, 1, SHAPE(C), "%spre_layrnorm.weight", p);
    vr_add(&l, VR_ZERO, 1, SHAPE(C), "%spre_layrnorm.bias", p);
    static const char *proj[4] = {"q_proj", "k_proj", "v_proj", "out_proj"};
    for (int i = 0; i < nrun; i++) {
        const char *f = "%sencoder.layers.%d.%s";
        vr_add(&l, VR_ONE, 1, SHAPE(C), f, p, i, "layer_norm1.weight");
        vr_add(&l, VR_ZERO, 1, SHAPE(C), f, p, i, "layer_norm1.bias");
        for (int j = 0; j < 4; j++) {
            vr_add(&l, VR_W, 2, SHAPE(C, C), "%sencoder.layers.%d.self_attn.%s.weight", p, i,
                   proj[j]);
            vr_add(&l, VR_W, 1, SHAPE(C), "%sencoder.layers.%d.self_attn.%s.bias", p, i, proj[j]);
        }
        vr_add(&l, VR_ONE, 1, SHAPE(C), f, p, i, "layer_norm2.weight");
        vr_add(&l, VR_ZERO, 1, SHAPE(C), f, p, i, "layer_norm2.bias");
        vr_add(&l, VR_W, 2, SHAPE(I, C), f, p, i, "mlp.fc1.weight");
        vr_add(&l, VR_W, 1, SHAPE(I), f, p, i, "mlp.fc1.bias");
        vr_add(&l, VR_W, 2, SHAPE(C, I), f, p, i, "mlp.fc2.weight");
        vr_add(&l, VR_W, 1, SHAPE(C), f, p, i, "mlp.fc2.bias");
    }
    char dir[512], file[600];
    lisa_status st = vr_tempdir(dir, sizeof dir, file, sizeof file);
    if (st == LISA_OK) {
        st = vr_write(file, &l, wdtype, seed);
        if (st == LISA_OK) st = lisa_clip_model_load(m, cfg, file, p, select_layer, be, dtype);
        unlink(file);
        rmdir(dir);
    }
    free(l.t);
    return st;
}

/* q/k/v/out projections of one decoder Attention module with inner width I. */
static void vr_sam_attn(vr_list *l, int64_t C, int64_t I, const char *base) {
    static const char *proj[4] = {"q_proj", "k_proj", "v_proj", "out_proj"};
    for (int j = 0; j < 4; j++) {
        int out = j == 3;
        vr_add(l, VR_W, 2, out ? SHAPE(C, I) : SHAPE(I, C), "%s.%s.weight", base, proj[j]);
        vr_add(l, VR_W, 1, SHAPE(out ? C : I), "%s.%s.bias", base, proj[j]);
    }
}

static void vr_sam_mlp3(vr_list *l, int64_t in, int64_t hid, int64_t out, const char *base) {
    int64_t rows[3] = {hid, hid, out}, cols[3] = {in, hid, hid};
    for (int i = 0; i < 3; i++) {
        vr_add(l, VR_W, 2, SHAPE(rows[i], cols[i]), "%s.layers.%d.weight", base, i);
        vr_add(l, VR_W, 1, SHAPE(rows[i]), "%s.layers.%d.bias", base, i);
    }
}

lisa_status lisa_vision_random_sam(lisa_sam_model *m, const lisa_vision_sam_shape *s,
                                   lisa_backend *be, lisa_dtype wdtype, lisa_dtype dtype,
                                   uint64_t seed) {
    memset(m, 0, sizeof *m);
    LISA_TRY(vr_check_dtype(wdtype));
    if (s->depth < 1 || s->depth > LISA_SAM_MAX_BLOCKS || s->num_heads < 1 ||
        s->embed_dim % s->num_heads || s->dim % 8 || s->dec_depth < 1 ||
        s->dec_depth > LISA_SAM_MAX_DEC_LAYERS)
        return lisa_error_set(LISA_ERR_ARG, "sam: inconsistent random-weight shape");
    int64_t D = s->embed_dim, hd = D / s->num_heads, p = s->patch, G = s->grid, C = s->dim;
    int64_t X = C / 2, M = s->num_mask_tokens, U1 = C / 4, U2 = C / 8;
    vr_list l = {0};
    const char *e = "image_encoder";
    vr_add(&l, VR_W, 4, SHAPE(D, 3, p, p), "%s.patch_embed.proj.weight", e);
    vr_add(&l, VR_W, 1, SHAPE(D), "%s.patch_embed.proj.bias", e);
    vr_add(&l, VR_W, 4, SHAPE(1, G, G, D), "%s.pos_embed", e);
    for (int i = 0; i < s->depth; i++) {
        int64_t R = s->global[i] ? 2 * G - 1 : 2 * (int64_t)s->window - 1;
        const char *f = "image_encoder.blocks.%d.%s";
        vr_add(&l, VR_ONE, 1, SHAPE(D), f, i, "norm1.weight");
        vr_add(&l, VR_ZERO, 1, SHAPE(D), f, i, "norm1.bias");
        vr_add(&l, VR_W, 2, SHAPE(3 * D, D), f, i, "attn.qkv.weight");
        vr_add(&l, VR_W, 1, SHAPE(3 * D), f, i, "attn.qkv.bias");
        vr_add(&l, VR_W, 2, SHAPE(D, D), f, i, "attn.proj.weight");
        vr_add(&l, VR_W, 1, SHAPE(D), f, i, "attn.proj.bias");
        vr_add(&l, VR_W, 2, SHAPE(R, hd), f, i, "attn.rel_pos_h");
        vr_add(&l, VR_W, 2, SHAPE(R, hd), f, i, "attn.rel_pos_w");
        vr_add(&l, VR_ONE, 1, SHAPE(D), f, i, "norm2.weight");
        vr_add(&l, VR_ZERO, 1, SHAPE(D), f, i, "norm2.bias");
        vr_add(&l, VR_W, 2, SHAPE(4 * D, D), f, i, "mlp.lin1.weight");
        vr_add(&l, VR_W, 1, SHAPE(4 * D), f, i, "mlp.lin1.bias");
        vr_add(&l, VR_W, 2, SHAPE(D, 4 * D), f, i, "mlp.lin2.weight");
        vr_add(&l, VR_W, 1, SHAPE(D), f, i, "mlp.lin2.bias");
    }
    vr_add(&l, VR_W, 4, SHAPE(C, D, 1, 1), "%s.neck.0.weight", e);
    vr_add(&l, VR_ONE, 1, SHAPE(C), "%s.neck.1.weight", e);
    vr_add(&l, VR_ZERO, 1, SHAPE(C), "%s.neck.1.bias", e);
    vr_add(&l, VR_W, 4, SHAPE(C, C, 3, 3), "%s.neck.2.weight", e);
    vr_add(&l, VR_ONE, 1, SHAPE(C), "%s.neck.3.weight", e);
    vr_add(&l, VR_ZERO, 1, SHAPE(C), "%s.neck.3.bias", e);
    vr_add(&l, VR_UNIT, 2, SHAPE(2, C / 2), "%s",
           "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix");
    vr_add(&l, VR_W, 2, SHAPE(1, C), "prompt_encoder.no_mask_embed.weight");
    char base[160];
    for (int i = 0; i < s->dec_depth; i++) {
        const char *f = "mask_decoder.transformer.layers.%d.%s";
        snprintf(base, sizeof base, "mask_decoder.transformer.layers.%d.self_attn", i);
        vr_sam_attn(&l, C, C, base);
        snprintf(base, sizeof base, "mask_decoder.transformer.layers.%d.cross_attn_token_to_image",
                 i);
        vr_sam_attn(&l, C, X, base);
        snprintf(base, sizeof base, "mask_decoder.transformer.layers.%d.cross_attn_image_to_token",
                 i);
        vr_sam_attn(&l, C, X, base);
        for (int k = 1; k <= 4; k++) {
            const char *nf = "mask_decoder.transformer.layers.%d.norm%d.%s";
            vr_add(&l, VR_ONE, 1, SHAPE(C), nf, i, k, "weight");
            vr_add(&l, VR_ZERO, 1, SHAPE(C), nf, i, k, "bias");
        }
        vr_add(&l, VR_W, 2, SHAPE(s->dec_mlp_dim, C), f, i, "mlp.lin1.weight");
        vr_add(&l, VR_W, 1, SHAPE(s->dec_mlp_dim), f, i, "mlp.lin1.bias");
        vr_add(&l, VR_W, 2, SHAPE(C, s->dec_mlp_dim), f, i, "mlp.lin2.weight");
        vr_add(&l, VR_W, 1, SHAPE(C), f, i, "mlp.lin2.bias");
    }
    vr_sam_attn(&l, C, X, "mask_decoder.transformer.final_attn_token_to_image");
    vr_add(&l, VR_ONE, 1, SHAPE(C), "mask_decoder.transformer.norm_final_attn.weight");
    vr_add(&l, VR_ZERO, 1, SHAPE(C), "mask_decoder.transformer.norm_final_attn.bias");
    vr_add(&l, VR_W, 2, SHAPE(1, C), "mask_decoder.iou_token.weight");
    vr_add(&l, VR_W, 2, SHAPE(M, C), "mask_decoder.mask_tokens.weight");
    vr_add(&l, VR_W, 4, SHAPE(C, U1, 2, 2), "mask_decoder.output_upscaling.0.weight");
    vr_add(&l, VR_W, 1, SHAPE(U1), "mask_decoder.output_upscaling.0.bias");
    vr_add(&l, VR_ONE, 1, SHAPE(U1), "mask_decoder.output_upscaling.1.weight");
    vr_add(&l, VR_ZERO, 1, SHAPE(U1), "mask_decoder.output_upscaling.1.bias");
    vr_add(&l, VR_W, 4, SHAPE(U1, U2, 2, 2), "mask_decoder.output_upscaling.3.weight");
    vr_add(&l, VR_W, 1, SHAPE(U2), "mask_decoder.output_upscaling.3.bias");
    for (int i = 0; i < M; i++) {
        snprintf(base, sizeof base, "mask_decoder.output_hypernetworks_mlps.%d", i);
        vr_sam_mlp3(&l, C, C, U2, base);
    }
    vr_sam_mlp3(&l, C, s->iou_hidden, M, "mask_decoder.iou_prediction_head");
    char dir[512], file[600];
    lisa_status st = vr_tempdir(dir, sizeof dir, file, sizeof file);
    if (st == LISA_OK) {
        st = vr_write(file, &l, wdtype, seed);
        lisa_sam_options o = {NULL, s->num_heads, s->dec_heads};
        if (st == LISA_OK) st = lisa_sam_model_load(m, file, be, dtype, &o);
        unlink(file);
        rmdir(dir);
    }
    free(l.t);
    return st;
}
