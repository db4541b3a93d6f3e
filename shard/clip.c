/* clip.c: CLIP vision tower and LLaVA projector (see clip.h). The math
 * follows HF transformers 4.31's CLIPVisionTransformer in fp32: Conv2d patch
 * embedding (as im2col + matmul), class token, position embedding,
 * pre_layrnorm, pre-norm encoder layers with q scaled before q k^T and
 * quick_gelu MLPs; then LLaVA's feature selection (hidden_states[k], CLS
 * dropped) and mm_projector. Only backend ops touch activations, so any
 * backend runs it unchanged. */
#include "clip.h"

#include "config-file.h"

#include <cJSON.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>


/* --- config --- */

static lisa_status clip_cfg_int(const cJSON *o, const char *key, int *out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!it || cJSON_IsNull(it)) return LISA_OK;
    if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) ||
        it->valuedouble < 1 || it->valuedouble > (double)INT_MAX)
        return lisa_error_set(LISA_ERR_FORMAT, "clip config.json: '%s' must be a positive integer",
                              key);
    *out = (int)it->valuedouble;
    return LISA_OK;
}

lisa_status lisa_clip_config_parse(lisa_clip_config *cfg, const char *json, size_t len) {
    /* CLIPVisionConfig defaults (transformers 4.31) */
    *cfg = (lisa_clip_config){.hidden_size = 768, .intermediate_size = 3072,
                              .num_hidden_layers = 12, .num_attention_heads = 12,
                              .image_size = 224, .patch_size = 32, .num_channels = 3,
                              .layer_norm_eps = 1e-5f};
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return lisa_error_set(LISA_ERR_FORMAT, "clip config.json: not a JSON object");
    }
    const cJSON *o = root, *vc = cJSON_GetObjectItemCaseSensitive(root, "vision_config");
    /* a LISA model directory's config.json has the LLM's hidden_size at the
     * top level and CLIP's under "vision_config": the nested one wins */
    if (cJSON_IsObject(vc)) o = vc;
    lisa_status s = LISA_OK;
    static const char *keys[] = {"hidden_size", "intermediate_size", "num_hidden_layers",
                                 "num_attention_heads", "image_size", "patch_size",
                                 "num_channels"};
    int *dst[] = {&cfg->hidden_size, &cfg->intermediate_size, &cfg->num_hidden_layers,
                  &cfg->num_attention_heads, &cfg->image_size, &cfg->patch_size,
                  &cfg->num_channels};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0] && s == LISA_OK; i++)
        s = clip_cfg_int(o, keys[i], dst[i]);
    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(o, "layer_norm_eps");
    if (s == LISA_OK && eps && !cJSON_IsNull(eps)) {
        /* as a float: 1e-51 would be 0, 1e39 inf */
        if (!cJSON_IsNumber(eps) || !(eps->valuedouble >= FLT_MIN) || !(eps->valuedouble <= FLT_MAX))
            s = lisa_error_set(LISA_ERR_FORMAT, "clip config.json: 'layer_norm_eps' must be a "
                                                "positive number within float range");
        else
            cfg->layer_norm_eps = (float)eps->valuedouble;
    }
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(o, "hidden_act");
    if (s == LISA_OK && act && !cJSON_IsNull(act) &&
        (!cJSON_IsString(act) || strcmp(act->valuestring, "quick_gelu") != 0))
        s = lisa_error_set(LISA_ERR_UNSUPPORTED, "clip config.json: hidden_act '%s' (only "
                           "quick_gelu, as in CLIP ViT-L/14)",
                           cJSON_IsString(act) ? act->valuestring : "?");
    if (s == LISA_OK && cfg->hidden_size % cfg->num_attention_heads != 0)
        s = lisa_error_set(LISA_ERR_FORMAT, "clip config.json: hidden_size %d not divisible by "
                           "num_attention_heads %d", cfg->hidden_size, cfg->num_attention_heads);
    if (s == LISA_OK && cfg->patch_size > cfg->image_size)
        s = lisa_error_set(LISA_ERR_FORMAT, "clip config.json: patch_size %d > image_size %d",
                           cfg->patch_size, cfg->image_size);
    cfg->head_dim = s == LISA_OK ? cfg->hidden_size / cfg->num_attention_heads : 0;
    cJSON_Delete(root);
    return s;
}

lisa_status lisa_clip_config_load(lisa_clip_config *cfg, const char *path) {
    char *text;
    size_t n;
    LISA_TRY(lisa_config_file_read(path, &text, &n));
    lisa_status s = lisa_clip_config_parse(cfg, text, n);
    free(text);
    return s;
}

int lisa_clip_num_patches(const lisa_clip_config *cfg) {
    int g = cfg->image_size / cfg->patch_size;
    return g * g;
}

/* --- model --- */

static lisa_status clip_dtype_check(const lisa_backend *be, lisa_dtype dtype) {
    if (dtype != LISA_DTYPE_F32 && dtype != LISA_DTYPE_F16 && dtype != LISA_DTYPE_BF16)
        return lisa_error_set(LISA_ERR_ARG, "clip: compute dtype must be F32, F16 or BF16");
    if (be->ops->host_memory && dtype != LISA_DTYPE_F32)
        return lisa_error_set(LISA_ERR_UNSUPPORTED, "the %s backend computes in fp32 only "
                              "(asked for %s)", be->ops->name, lisa_dtype_name(dtype));
    return LISA_OK;
}

lisa_status lisa_clip_model_load(lisa_clip_model *m, const lisa_clip_config *cfg,
                                 const char *path, const char *prefix, int select_layer,
                                 lisa_backend *be, lisa_dtype dtype) {
    memset(m, 0, sizeof *m);
    LISA_TRY(clip_dtype_check(be, dtype));
    int L = cfg->num_hidden_layers;
    int nrun = select_layer >= 0 ? select_layer : L + 1 + select_layer;
    if (nrun < 0 || nrun > L)
        return lisa_error_set(LISA_ERR_ARG, "clip: select_layer %d out of range for %d layers "
                              "(hidden_states has %d entries)", select_layer, L, L + 1);
    m->cfg = *cfg;
    m->select_layer = select_layer;
    m->n_layers = nrun;
    m->dtype = dtype;
    m->be = be;
    int64_t C = cfg->hidden_size, I = cfg->intermediate_size, P = cfg->patch_size,
            Cin = cfg->num_channels, T = lisa_clip_num_patches(cfg) + 1;
    int cap = 5 + 16 * nrun;
    lisa_weight_spec *specs = calloc((size_t)cap, sizeof *specs);
    m->layers = calloc((size_t)(nrun ? nrun : 1), sizeof *m->layers);
    lisa_status st = LISA_OK;
    if (!specs || !m->layers) {
        st = lisa_error_set(LISA_ERR_NOMEM, "clip: cannot allocate weight table");
        goto out;
    }
    int64_t sc[1] = {C}, si[1] = {I}, scc[2] = {C, C}, sic[2] = {I, C}, sci[2] = {C, I};
    int64_t spatch[4] = {C, Cin, P, P}, spos[2] = {T, C};
    int n = 0;
    n = lisa_weight_spec_add(specs, n, cap, &m->class_emb, LISA_WEIGHT_PARAM, 1, sc,
                             "embeddings.class_embedding");
    n = lisa_weight_spec_add(specs, n, cap, &m->patch_w, LISA_WEIGHT_MATMUL, 4, spatch,
                             "embeddings.patch_embedding.weight");
    n = lisa_weight_spec_add(specs, n, cap, &m->pos_emb, LISA_WEIGHT_PARAM, 2, spos,
                             "embeddings.position_embedding.weight");
    n = lisa_weight_spec_add(specs, n, cap, &m->pre_ln_w, LISA_WEIGHT_PARAM, 1, sc,
                             "pre_layrnorm.weight");
    n = lisa_weight_spec_add(specs, n, cap, &m->pre_ln_b, LISA_WEIGHT_PARAM, 1, sc,
                             "pre_layrnorm.bias");
    for (int l = 0; l < nrun; l++) {
        lisa_clip_layer *y = &m->layers[l];
        const char *e = "encoder.layers";
        n = lisa_weight_spec_add(specs, n, cap, &y->ln1_w, LISA_WEIGHT_PARAM, 1, sc,
                                 "%s.%d.layer_norm1.weight", e, l);
        n = lisa_weight_spec_add(specs, n, cap, &y->ln1_b, LISA_WEIGHT_PARAM, 1, sc,
                                 "%s.%d.layer_norm1.bias", e, l);
        lisa_tensor *pw[4] = {&y->wq, &y->wk, &y->wv, &y->wo};
        lisa_tensor *pb[4] = {&y->bq, &y->bk, &y->bv, &y->bo};
        static const char *pn[4] = {"q_proj", "k_proj", "v_proj", "out_proj"};
        for (int j = 0; j < 4; j++) {
            n = lisa_weight_spec_add(specs, n, cap, pw[j], LISA_WEIGHT_MATMUL, 2, scc,
                                     "%s.%d.self_attn.%s.weight", e, l, pn[j]);
            n = lisa_weight_spec_add(specs, n, cap, pb[j], LISA_WEIGHT_PARAM, 1, sc,
                                     "%s.%d.self_attn.%s.bias", e, l, pn[j]);
        }
        n = lisa_weight_spec_add(specs, n, cap, &y->ln2_w, LISA_WEIGHT_PARAM, 1, sc,
                                 "%s.%d.layer_norm2.weight", e, l);
        n = lisa_weight_spec_add(specs, n, cap, &y->ln2_b, LISA_WEIGHT_PARAM, 1, sc,
                                 "%s.%d.layer_norm2.bias", e, l);
        n = lisa_weight_spec_add(specs, n, cap, &y->fc1_w, LISA_WEIGHT_MATMUL, 2, sic,
                                 "%s.%d.mlp.fc1.weight", e, l);
        n = lisa_weight_spec_add(specs, n, cap, &y->fc1_b, LISA_WEIGHT_PARAM, 1, si,
                                 "%s.%d.mlp.fc1.bias", e, l);
        n = lisa_weight_spec_add(specs, n, cap, &y->fc2_w, LISA_WEIGHT_MATMUL, 2, sci,
                                 "%s.%d.mlp.fc2.weight", e, l);
        n = lisa_weight_spec_add(specs, n, cap, &y->fc2_b, LISA_WEIGHT_PARAM, 1, sc,
                                 "%s.%d.mlp.fc2.bias", e, l);
    }
    if ((st = lisa_safetensors_open(&m->st, path)) != LISA_OK) goto out;
    if ((st = lisa_weights_load(&m->weights, be, m->st, prefix, specs, n, dtype)) != LISA_OK)
        goto out;
    /* the conv weight (C, Cin, P, P) as a matmul weight (C, Cin*P*P) */
    m->patch_w.ndim = 2;
    m->patch_w.shape[1] = Cin * P * P;
out:
    free(specs);
    if (st != LISA_OK) lisa_clip_model_free(m);
    return st;
}

void lisa_clip_model_free(lisa_clip_model *m) {
    lisa_weights_free(&m->weights);
    if (m->st) lisa_safetensors_close(m->st);
    free(m->layers);
    memset(m, 0, sizeof *m);
}

/* --- projector --- */

lisa_status lisa_projector_kind_parse(const char *s, lisa_projector_kind *out) {
    if (s && !strcmp(s, "linear")) {
        *out = LISA_PROJECTOR_LINEAR;
        return LISA_OK;
    }
    if (s && !strcmp(s, "mlp2x_gelu")) {
        *out = LISA_PROJECTOR_MLP2X_GELU;
        return LISA_OK;
    }
    return lisa_error_set(LISA_ERR_UNSUPPORTED, "mm_projector_type '%s' (supported: linear, "
                          "mlp2x_gelu)", s ? s : "(null)");
}

lisa_status lisa_projector_load(lisa_projector *p, const char *path, const char *prefix,
                                lisa_projector_kind kind, int in_dim, lisa_backend *be,
                                lisa_dtype dtype) {
    memset(p, 0, sizeof *p);
    LISA_TRY(clip_dtype_check(be, dtype));
    p->kind = kind;
    p->in_dim = in_dim;
    p->dtype = dtype;
    p->be = be;
    if (!prefix) prefix = "";
    lisa_status st = lisa_safetensors_open(&p->st, path);
    if (st != LISA_OK) return st;
    int mlp = kind == LISA_PROJECTOR_MLP2X_GELU;
    char first[256];
    snprintf(first, sizeof first, "%s%s", prefix, mlp ? "0.weight" : "weight");
    const lisa_st_tensor *t = lisa_safetensors_find(p->st, first);
    if (!t) {
        st = lisa_error_set(LISA_ERR_MISSING, "tensor '%s' not found in %s (%s projector)",
                            first, path, mlp ? "mlp2x_gelu" : "linear");
    } else if (t->ndim != 2 || t->shape[1] != in_dim || t->shape[0] < 1 ||
               t->shape[0] > INT_MAX) {
        st = lisa_error_set(LISA_ERR_SHAPE, "tensor '%s': expected shape [Hout, %d], found %d "
                            "dims [%lld, %lld]", first, in_dim, t->ndim,
                            (long long)t->shape[0], (long long)(t->ndim > 1 ? t->shape[1] : 0));
    }
    if (st != LISA_OK) {
        lisa_projector_free(p);
        return st;
    }
    p->out_dim = (int)t->shape[0];
    int64_t H = p->out_dim, s1[2] = {H, in_dim}, s2[2] = {H, H}, sb[1] = {H};
    lisa_weight_spec specs[4];
    int n = 0;
    n = lisa_weight_spec_add(specs, n, 4, &p->w1, LISA_WEIGHT_MATMUL, 2, s1, "%s",
                             mlp ? "0.weight" : "weight");
    n = lisa_weight_spec_add(specs, n, 4, &p->b1, LISA_WEIGHT_PARAM, 1, sb, "%s",
                             mlp ? "0.bias" : "bias");
    if (mlp) {
        n = lisa_weight_spec_add(specs, n, 4, &p->w2, LISA_WEIGHT_MATMUL, 2, s2, "2.weight");
        n = lisa_weight_spec_add(specs, n, 4, &p->b2, LISA_WEIGHT_PARAM, 1, sb, "2.bias");
    }
    st = lisa_weights_load(&p->weights, be, p->st, prefix, specs, n, dtype);
    if (st != LISA_OK) lisa_projector_free(p);
    return st;
}

void lisa_projector_free(lisa_projector *p) {
    lisa_weights_free(&p->weights);
    if (p->st) lisa_safetensors_close(p->st);
    memset(p, 0, sizeof *p);
}

/* --- state --- */

static lisa_status clip_alloc(lisa_clip_state *s, lisa_tensor *t, lisa_dtype dt, int64_t rows,
                              int64_t cols) {
    int64_t shape[2] = {rows, cols};
    lisa_status st = lisa_backend_tensor_alloc(s->be, t, dt, 2, shape);
    if (st != LISA_OK)
        return lisa_error_set(st, "clip state: cannot reserve %zu bytes (%s)",
                              (size_t)rows * (size_t)cols * lisa_dtype_size(dt), lisa_error_get());
    return LISA_OK;
}

lisa_status lisa_clip_state_init(lisa_clip_state *s, const lisa_clip_model *m,
                                 const lisa_projector *proj, int max_batch) {
    memset(s, 0, sizeof *s);
    if (max_batch < 1) return lisa_error_set(LISA_ERR_ARG, "clip state: max_batch must be positive");
    if (proj && proj->in_dim != m->cfg.hidden_size)
        return lisa_error_set(LISA_ERR_ARG, "clip state: projector input %d != CLIP hidden %d",
                              proj->in_dim, m->cfg.hidden_size);
    const lisa_clip_config *c = &m->cfg;
    s->be = m->be;
    s->max_batch = max_batch;
    s->proj_dim = proj ? proj->out_dim : 0;
    int64_t B = max_batch, N = lisa_clip_num_patches(c), T = N + 1, C = c->hidden_size,
            I = c->intermediate_size, P = c->patch_size, S = c->image_size, Cin = c->num_channels,
            Hp = s->proj_dim;
    lisa_dtype dt = m->dtype;
    lisa_status st = clip_alloc(s, &s->pix32, LISA_DTYPE_F32, B, Cin * S * S);
    if (st == LISA_OK && dt != LISA_DTYPE_F32) st = clip_alloc(s, &s->pix, dt, B, Cin * S * S);
    if (st == LISA_OK && dt == LISA_DTYPE_F32) s->pix = s->pix32;
    if (st == LISA_OK) st = clip_alloc(s, &s->cols, dt, B * N, Cin * P * P);
    lisa_tensor *tc[] = {&s->x, &s->xb, &s->q, &s->k, &s->v, &s->att};
    for (size_t i = 0; i < sizeof tc / sizeof tc[0] && st == LISA_OK; i++)
        st = clip_alloc(s, tc[i], dt, B * T, C);
    if (st == LISA_OK) st = clip_alloc(s, &s->h, dt, B * T, I);
    if (st == LISA_OK) st = clip_alloc(s, &s->feat, dt, B * N, C);
    if (st == LISA_OK && Hp) st = clip_alloc(s, &s->ph, dt, B * N, Hp);
    if (st == LISA_OK && Hp) st = clip_alloc(s, &s->pout, dt, B * N, Hp);
    if (st == LISA_OK && dt != LISA_DTYPE_F32)
        st = clip_alloc(s, &s->io, LISA_DTYPE_F32, B * N, C > Hp ? C : Hp);
    if (st == LISA_OK) {
        /* the backend's op scratch for the largest shapes: matmul K (patch
         * columns, C, I or the projector's H) and attention over T tokens */
        lisa_backend_reserve_req r;
        memset(&r, 0, sizeof r);
        int64_t ks[] = {Cin * P * P, C, I, Hp};
        for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++)
            if (ks[i] > r.matmul_k) r.matmul_k = ks[i];
        r.attention_full_lk = T;
        r.attention_full_d = c->head_dim;
        st = lisa_backend_reserve(s->be, &r);
    }
    if (st != LISA_OK) lisa_clip_state_free(s);
    return st;
}

void lisa_clip_state_free(lisa_clip_state *s) {
    if (!s->be) return;
    if (s->pix.data == s->pix32.data) s->pix.data = NULL;
    lisa_tensor *all[] = {&s->pix32, &s->pix, &s->cols, &s->x, &s->xb, &s->q,  &s->k,
                          &s->v,     &s->att, &s->h,    &s->feat, &s->ph, &s->pout, &s->io};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) lisa_backend_tensor_free(s->be, all[i]);
    memset(s, 0, sizeof *s);
}

/* --- forward --- */

static lisa_tensor clip_view(const lisa_tensor *t, int ndim, int64_t a, int64_t b, int64_t c,
                             int64_t d) {
    int64_t shape[4] = {a, b, c, d};
    return lisa_tensor_view(t->data, t->dtype, ndim, shape);
}

/* Backend t (rows, cols) in the model dtype -> host fp32, via s->io when needed. */
static lisa_status clip_download(lisa_clip_state *s, const lisa_tensor *t, float *host) {
    lisa_backend *be = s->be;
    size_t ne = (size_t)lisa_tensor_nelem(t);
    if (t->dtype == LISA_DTYPE_F32) return be->ops->copy_to_host(be, host, t->data, 0, ne * 4);
    lisa_tensor f = clip_view(&s->io, 2, t->shape[0], t->shape[1], 0, 0);
    f.dtype = LISA_DTYPE_F32;
    LISA_TRY(be->ops->convert(be, &f, t));
    return be->ops->copy_to_host(be, host, f.data, 0, ne * 4);
}

lisa_status lisa_clip_forward(const lisa_clip_model *m, lisa_clip_state *s, const float *pixels,
                              int B, float *features) {
    if (B < 1 || B > s->max_batch)
        return lisa_error_set(LISA_ERR_ARG, "clip forward: %d images, state reserved for 1..%d", B,
                              s->max_batch);
    lisa_backend *be = s->be;
    const lisa_backend_ops *op = be->ops;
    const lisa_clip_config *c = &m->cfg;
    int64_t N = lisa_clip_num_patches(c), T = N + 1, C = c->hidden_size, I = c->intermediate_size,
            H = c->num_attention_heads, D = c->head_dim, P = c->patch_size, S = c->image_size,
            Cin = c->num_channels;
    float eps = c->layer_norm_eps;
    /* transformers: self.scale = head_dim ** -0.5 (a Python float), applied in fp32 */
    float scale = (float)pow((double)D, -0.5);
    s->n_feat = 0;

    lisa_tensor pix32 = clip_view(&s->pix32, 4, B, Cin, S, S);
    lisa_tensor pix = clip_view(&s->pix, 4, B, Cin, S, S);
    LISA_TRY(op->copy_to_backend(be, pix32.data, 0, pixels, (size_t)lisa_tensor_nelem(&pix32) * 4));
    if (m->dtype != LISA_DTYPE_F32) LISA_TRY(op->convert(be, &pix, &pix32));

    /* embeddings: x[b] = [class | patches] + position, (T, C) per image */
    lisa_tensor cols = clip_view(&s->cols, 2, B * N, Cin * P * P, 0, 0);
    lisa_tensor x = clip_view(&s->x, 2, B * T, C, 0, 0), xb = clip_view(&s->xb, 2, B * T, C, 0, 0);
    lisa_tensor cls = clip_view(&m->class_emb, 2, 1, C, 0, 0);
    LISA_TRY(op->im2col(be, &cols, &pix, (int)P, (int)P, 0, 1));
    for (int64_t b = 0; b < B; b++) {
        lisa_tensor xp = lisa_tensor_rows(&x, b * T + 1, N), cp = lisa_tensor_rows(&cols, b * N, N);
        lisa_tensor x0 = lisa_tensor_rows(&x, b * T, 1), xt = lisa_tensor_rows(&x, b * T, T);
        LISA_TRY(op->matmul(be, &xp, &cp, &m->patch_w, NULL));
        LISA_TRY(op->copy_cols(be, &x0, &cls, 0));
        LISA_TRY(op->add(be, &xt, &xt, &m->pos_emb));
    }
    LISA_TRY(op->layernorm(be, &x, &x, &m->pre_ln_w, &m->pre_ln_b, eps));

    lisa_tensor q = clip_view(&s->q, 2, B * T, C, 0, 0), k = clip_view(&s->k, 2, B * T, C, 0, 0),
                v = clip_view(&s->v, 2, B * T, C, 0, 0);
    lisa_tensor q4 = clip_view(&s->q, 4, B, T, H, D), k4 = clip_view(&s->k, 4, B, T, H, D),
                v4 = clip_view(&s->v, 4, B, T, H, D);
    lisa_tensor att = clip_view(&s->att, 2, B * T, C, 0, 0), h = clip_view(&s->h, 2, B * T, I, 0, 0);
    for (int l = 0; l < m->n_layers; l++) {
        const lisa_clip_layer *y = &m->layers[l];
        /* x += out_proj(attention(layer_norm1(x))) */
        LISA_TRY(op->layernorm(be, &xb, &x, &y->ln1_w, &y->ln1_b, eps));
        LISA_TRY(op->matmul(be, &q, &xb, &y->wq, &y->bq));
        LISA_TRY(op->matmul(be, &k, &xb, &y->wk, &y->bk));
        LISA_TRY(op->matmul(be, &v, &xb, &y->wv, &y->bv));
        LISA_TRY(op->attention_full(be, &att, &q4, &k4, &v4, scale, NULL, NULL));
        LISA_TRY(op->matmul(be, &xb, &att, &y->wo, &y->bo));
        LISA_TRY(op->add(be, &x, &x, &xb));
        /* x += fc2(quick_gelu(fc1(layer_norm2(x)))) */
        LISA_TRY(op->layernorm(be, &xb, &x, &y->ln2_w, &y->ln2_b, eps));
        LISA_TRY(op->matmul(be, &h, &xb, &y->fc1_w, &y->fc1_b));
        LISA_TRY(op->activation(be, &h, &h, LISA_ACT_QUICK_GELU));
        LISA_TRY(op->matmul(be, &xb, &h, &y->fc2_w, &y->fc2_b));
        LISA_TRY(op->add(be, &x, &x, &xb));
    }

    /* select_feature 'patch': drop the CLS row of every image */
    lisa_tensor feat = clip_view(&s->feat, 2, B * N, C, 0, 0);
    for (int64_t b = 0; b < B; b++) {
        lisa_tensor dst = lisa_tensor_rows(&feat, b * N, N), src = lisa_tensor_rows(&x, b * T + 1, N);
        LISA_TRY(op->copy_cols(be, &dst, &src, 0));
    }
    if (features) LISA_TRY(clip_download(s, &feat, features));
    LISA_TRY(op->synchronize(be));
    s->n_feat = B;
    return LISA_OK;
}

lisa_status lisa_clip_project(const lisa_projector *p, lisa_clip_state *s, float *out) {
    if (s->n_feat < 1)
        return lisa_error_set(LISA_ERR_ARG, "clip project: no features (run lisa_clip_forward first)");
    if (s->proj_dim != p->out_dim || s->feat.shape[1] != p->in_dim)
        return lisa_error_set(LISA_ERR_ARG, "clip project: state reserved for a %d-wide projector "
                              "of %lld inputs, given %d -> %d", s->proj_dim,
                              (long long)s->feat.shape[1], p->in_dim, p->out_dim);
    lisa_backend *be = s->be;
    const lisa_backend_ops *op = be->ops;
    int64_t n = (int64_t)s->n_feat * (s->feat.shape[0] / s->max_batch);
    lisa_tensor feat = clip_view(&s->feat, 2, n, p->in_dim, 0, 0);
    lisa_tensor ph = clip_view(&s->ph, 2, n, p->out_dim, 0, 0);
    lisa_tensor po = clip_view(&s->pout, 2, n, p->out_dim, 0, 0);
    if (p->kind == LISA_PROJECTOR_LINEAR) {
        LISA_TRY(op->matmul(be, &po, &feat, &p->w1, &p->b1));
    } else {
        LISA_TRY(op->matmul(be, &ph, &feat, &p->w1, &p->b1));
        LISA_TRY(op->activation(be, &ph, &ph, LISA_ACT_GELU));
        LISA_TRY(op->matmul(be, &po, &ph, &p->w2, &p->b2));
    }
    LISA_TRY(clip_download(s, &po, out));
    return op->synchronize(be);
}
