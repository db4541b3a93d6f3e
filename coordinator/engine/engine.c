/* engine.c: LISA end to end in one process (see engine.h).
 *
 * Model directory layout (docs/model-format.md): config.json (LISA: LLaMA
 * fields at the top level plus mm_* fields), tokenizer.model,
 * added_tokens.json, safetensors shards holding the LLM (model.*, lm_head),
 * the projector (model.mm_projector.*), SAM (model.visual_model.*),
 * text_hidden_fcs (model.text_hidden_fcs.0.*) and the CLIP tower
 * (LISA_ENGINE_CLIP_PREFIX), whose config is config.json's "vision_config";
 * SAM's head counts are in "sam_config". */
#include "engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "clip.h"
#include "config-file.h"
#include "llama.h"
#include "masks.h"
#include "preprocess.h"
#include "prompt.h"
#include "sam.h"
#include "tokenizer.h"
#include "weights.h"

#define LISA_ENGINE_CLIP_PREFIX "model.vision_tower.vision_model."
#define LISA_ENGINE_SAM_PREFIX "model.visual_model."
#define LISA_ENGINE_FCS_PREFIX "model.text_hidden_fcs.0."
#define LISA_ENGINE_PROJ_PREFIX "model.mm_projector."
#define LISA_ENGINE_CLIP_SIZE 224
#define LISA_ENGINE_SAM_SIZE 1024
#define LISA_ENGINE_CHUNK 512
#define LISA_ENGINE_MAX_POSTPROCESS_PIXELS ((int64_t)4096 * 4096)
#define LISA_ENGINE_MAX_SEG 32
/* Images per SAM encoder pass. The encoder scratch grows by ~410 MB per
 * image for ViT-H in fp32 (half in fp16/bf16; sam.h), so 2 keeps it under
 * 1 GB while still batching images that share a request batch. */
#define LISA_ENGINE_SAM_IMAGES 2

struct lisa_engine {
    lisa_engine_params p;
    lisa_backend *be;
    lisa_tokenizer *tok;
    lisa_llama_model llm;
    lisa_llama_state llm_state;
    lisa_clip_config clip_cfg;
    lisa_clip_model clip;
    lisa_projector proj;
    lisa_clip_state clip_state;
    lisa_sam_model sam;
    lisa_sam_state sam_state;
    lisa_safetensors *st;       /* for text_hidden_fcs */
    lisa_weights fcs_weights;
    lisa_tensor fc1_w, fc1_b;   /* model.text_hidden_fcs.0.0.{weight (C, C), bias (C)} */
    lisa_tensor fc2_w, fc2_b;   /* model.text_hidden_fcs.0.2.{weight (E, C), bias (E)} */
    lisa_tensor fc_in, fc_mid, fc_out, fc_io;  /* (MAX_SEG, C / C / E / max(C, E)) */
    int have_llm, have_llm_state, have_clip, have_proj, have_clip_state, have_sam,
        have_sam_state;
    int32_t seg_id;
    int n_patches;              /* N: CLIP features spliced per image */
    int seg_dim;                /* E */
    int keep_lowres;
};

static char *engine_path(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s/%s", dir, name);
    return s;
}

/* Reads an optional int / string field of config.json. */
static lisa_status engine_read_config(const char *dir, int *select_layer, lisa_projector_kind *kind,
                                      lisa_sam_options *sam) {
    char *text = NULL;
    size_t got = 0;
    LISA_TRY(lisa_config_file_read(dir, &text, &got));
    cJSON *root = cJSON_ParseWithLength(text, got);
    /* SAM's decoder head count is in no tensor shape: the converter records
     * the architecture under "sam_config" */
    lisa_status st = root ? lisa_sam_options_parse(sam, text, got) : LISA_OK;
    free(text);
    if (!root) {
        st = lisa_error_set(LISA_ERR_FORMAT, "%s/config.json: not valid JSON", dir);
    } else {
        const cJSON *sl = cJSON_GetObjectItem(root, "mm_vision_select_layer");
        *select_layer = cJSON_IsNumber(sl) ? sl->valueint : -2;
        const cJSON *pt = cJSON_GetObjectItem(root, "mm_projector_type");
        *kind = LISA_PROJECTOR_LINEAR;
        if (cJSON_IsString(pt) && st == LISA_OK) st = lisa_projector_kind_parse(pt->valuestring, kind);
    }
    cJSON_Delete(root);
    return st;
}

static lisa_status engine_load_fcs(lisa_engine *e, const char *dir) {
    LISA_TRY(lisa_safetensors_open(&e->st, dir));
    const lisa_st_tensor *t2;
    char name[256];
    snprintf(name, sizeof name, "%s2.weight", LISA_ENGINE_FCS_PREFIX);
    t2 = lisa_safetensors_find(e->st, name);
    if (!t2 || t2->ndim != 2)
        return lisa_error_set(LISA_ERR_MISSING, "tensor '%s' not found in %s", name, dir);
    int64_t C = e->llm.cfg.hidden_size, E = t2->shape[0];
    e->seg_dim = (int)E;
    lisa_weight_spec specs[4];
    int n = 0;
    int64_t s_cc[2] = {C, C}, s_c[1] = {C}, s_ec[2] = {E, C}, s_e[1] = {E};
    n = lisa_weight_spec_add(specs, n, 4, &e->fc1_w, LISA_WEIGHT_MATMUL, 2, s_cc, "0.weight");
    n = lisa_weight_spec_add(specs, n, 4, &e->fc1_b, LISA_WEIGHT_PARAM, 1, s_c, "0.bias");
    n = lisa_weight_spec_add(specs, n, 4, &e->fc2_w, LISA_WEIGHT_MATMUL, 2, s_ec, "2.weight");
    n = lisa_weight_spec_add(specs, n, 4, &e->fc2_b, LISA_WEIGHT_PARAM, 1, s_e, "2.bias");
    LISA_TRY(lisa_weights_load(&e->fcs_weights, e->be, e->st, LISA_ENGINE_FCS_PREFIX, specs, n,
                               e->p.dtype));
    int64_t s_in[2] = {LISA_ENGINE_MAX_SEG, C}, s_out[2] = {LISA_ENGINE_MAX_SEG, E},
            s_io[2] = {LISA_ENGINE_MAX_SEG, C > E ? C : E};
    LISA_TRY(lisa_backend_tensor_alloc(e->be, &e->fc_in, e->p.dtype, 2, s_in));
    LISA_TRY(lisa_backend_tensor_alloc(e->be, &e->fc_mid, e->p.dtype, 2, s_in));
    LISA_TRY(lisa_backend_tensor_alloc(e->be, &e->fc_out, e->p.dtype, 2, s_out));
    return lisa_backend_tensor_alloc(e->be, &e->fc_io, LISA_DTYPE_F32, 2, s_io);
}

lisa_status lisa_engine_init(lisa_engine **out, const lisa_engine_params *params) {
    lisa_engine *e = calloc(1, sizeof *e);
    if (!e) return lisa_error_set(LISA_ERR_NOMEM, "engine: out of memory");
    e->p = *params;
    if (e->p.max_batch <= 0) e->p.max_batch = 8;
    if (e->p.max_new_tokens <= 0) e->p.max_new_tokens = 512;
    if (e->p.max_ctx <= 0) e->p.max_ctx = 1024;
    const char *dir = e->p.model_dir;
    char *tok_path = engine_path(dir, "tokenizer.model"), *added = engine_path(dir, "added_tokens.json");
    char *clip_cfg = engine_path(dir, "config.json");
    int select_layer = -2;
    lisa_projector_kind kind = LISA_PROJECTOR_LINEAR;
    lisa_sam_options sam_opts = {LISA_ENGINE_SAM_PREFIX, 0, 0};
    lisa_status st = (tok_path && added && clip_cfg) ? LISA_OK
                                                      : lisa_error_set(LISA_ERR_NOMEM, "engine: out of memory");
    if (st == LISA_OK) st = lisa_backend_init(&e->be, e->p.backend, e->p.device, e->p.threads);
    if (st == LISA_OK) st = lisa_tokenizer_load(&e->tok, tok_path, added);
    if (st == LISA_OK) {
        e->seg_id = lisa_tokenizer_piece_id(e->tok, "[SEG]");
        if (e->seg_id < 0)
            st = lisa_error_set(LISA_ERR_MISSING, "%s has no [SEG] token", added);
    }
    if (st == LISA_OK) st = engine_read_config(dir, &select_layer, &kind, &sam_opts);
    if (st == LISA_OK) st = lisa_llama_model_load(&e->llm, dir, e->be, e->p.dtype, 0, -1);
    e->have_llm = st == LISA_OK;
    if (st == LISA_OK && e->p.max_ctx > e->llm.cfg.max_position_embeddings)
        e->p.max_ctx = e->llm.cfg.max_position_embeddings;
    if (st == LISA_OK)
        st = lisa_llama_state_init(&e->llm_state, &e->llm, e->p.max_batch, e->p.max_ctx,
                                   LISA_ENGINE_CHUNK,
                                   e->p.max_batch > LISA_ENGINE_MAX_SEG ? e->p.max_batch
                                                                         : LISA_ENGINE_MAX_SEG);
    e->have_llm_state = st == LISA_OK;
    if (st == LISA_OK) st = lisa_clip_config_load(&e->clip_cfg, clip_cfg);
    if (st == LISA_OK)
        st = lisa_clip_model_load(&e->clip, &e->clip_cfg, dir, LISA_ENGINE_CLIP_PREFIX,
                                  select_layer, e->be, e->p.dtype);
    e->have_clip = st == LISA_OK;
    if (st == LISA_OK)
        st = lisa_projector_load(&e->proj, dir, LISA_ENGINE_PROJ_PREFIX, kind,
                                 e->clip_cfg.hidden_size, e->be, e->p.dtype);
    e->have_proj = st == LISA_OK;
    if (st == LISA_OK && e->proj.out_dim != e->llm.cfg.hidden_size)
        st = lisa_error_set(LISA_ERR_SHAPE, "projector outputs %d, the LLM's hidden size is %d",
                            e->proj.out_dim, e->llm.cfg.hidden_size);
    if (st == LISA_OK)
        st = lisa_clip_state_init(&e->clip_state, &e->clip, &e->proj,
                                  e->p.max_batch < 8 ? e->p.max_batch : 8);
    e->have_clip_state = st == LISA_OK;
    if (st == LISA_OK) e->n_patches = lisa_clip_num_patches(&e->clip_cfg);
    if (st == LISA_OK) st = lisa_sam_model_load(&e->sam, dir, e->be, e->p.dtype, &sam_opts);
    e->have_sam = st == LISA_OK;
    if (st == LISA_OK) st = engine_load_fcs(e, dir);
    if (st == LISA_OK) {
        int64_t maxpix = LISA_ENGINE_MAX_POSTPROCESS_PIXELS;
        int si = e->p.max_batch < LISA_ENGINE_SAM_IMAGES ? e->p.max_batch : LISA_ENGINE_SAM_IMAGES;
        st = lisa_sam_state_init_batch(&e->sam_state, &e->sam, si, 4, 1, maxpix);
    }
    e->have_sam_state = st == LISA_OK;
    free(tok_path);
    free(added);
    free(clip_cfg);
    if (st != LISA_OK) {
        lisa_engine_free(e);
        return st;
    }
    *out = e;
    return LISA_OK;
}

void lisa_engine_free(lisa_engine *e) {
    if (!e) return;
    if (e->be) {
        lisa_backend_tensor_free(e->be, &e->fc_in);
        lisa_backend_tensor_free(e->be, &e->fc_mid);
        lisa_backend_tensor_free(e->be, &e->fc_out);
        lisa_backend_tensor_free(e->be, &e->fc_io);
    }
    lisa_weights_free(&e->fcs_weights);
    if (e->st) lisa_safetensors_close(e->st);
    if (e->have_sam_state) lisa_sam_state_free(&e->sam_state);
    if (e->have_sam) lisa_sam_model_free(&e->sam);
    if (e->have_clip_state) lisa_clip_state_free(&e->clip_state);
    if (e->have_proj) lisa_projector_free(&e->proj);
    if (e->have_clip) lisa_clip_model_free(&e->clip);
    if (e->have_llm_state) lisa_llama_state_free(&e->llm_state);
    if (e->have_llm) lisa_llama_model_free(&e->llm);
    lisa_tokenizer_free(e->tok);
    lisa_backend_free(e->be);
    free(e);
}

void lisa_engine_keep_lowres(lisa_engine *e, int keep) { e->keep_lowres = keep; }

void lisa_response_free(lisa_response *r) {
    for (int i = 0; i < r->n_masks; i++) {
        free(r->masks[i].mask);
        free(r->masks[i].lowres);
    }
    free(r->masks);
    free(r->text);
    free(r->ids);
    free(r->seg_embeddings);
    memset(r, 0, sizeof *r);
}

/* Per-request working state inside one batch. */
typedef struct {
    int ok;
    int img;              /* index into the batch's distinct images */
    int32_t *ids;         /* prompt ids with the image placeholder */
    size_t n_ids, image_pos;
    float *embd;          /* (L, C) spliced prompt embeddings */
    int L;
    float *seg_hidden;    /* (n_seg, C) */
    int n_seg;
} engine_item;

typedef struct {
    const char *path;
    lisa_image img;
    int ok;
    char error[256];
    float *feats;         /* (N, C) projected CLIP features */
} engine_image;

static void item_fail(lisa_response *r, engine_item *it, lisa_status st, const char *msg) {
    it->ok = 0;
    r->status = st;
    r->stop = LISA_STOP_ERROR;
    snprintf(r->error, sizeof r->error, "%s", msg);
}

/* text_hidden_fcs on n hidden rows (n, C) -> out (n, E), host fp32. */
static lisa_status engine_fcs(lisa_engine *e, const float *hidden, int n, float *out) {
    lisa_backend *be = e->be;
    const lisa_backend_ops *op = be->ops;
    int64_t C = e->llm.cfg.hidden_size, E = e->seg_dim;
    for (int r0 = 0; r0 < n; r0 += LISA_ENGINE_MAX_SEG) {
        int m = n - r0 < LISA_ENGINE_MAX_SEG ? n - r0 : LISA_ENGINE_MAX_SEG;
        lisa_tensor in = lisa_tensor_2d(e->fc_in.data, e->fc_in.dtype, m, C);
        lisa_tensor mid = lisa_tensor_2d(e->fc_mid.data, e->fc_mid.dtype, m, C);
        lisa_tensor o = lisa_tensor_2d(e->fc_out.data, e->fc_out.dtype, m, E);
        const float *src = hidden + (size_t)r0 * (size_t)C;
        if (in.dtype == LISA_DTYPE_F32) {
            LISA_TRY(op->copy_to_backend(be, in.data, 0, src, (size_t)(m * C) * 4));
        } else {
            lisa_tensor io = lisa_tensor_2d(e->fc_io.data, LISA_DTYPE_F32, m, C);
            LISA_TRY(op->copy_to_backend(be, io.data, 0, src, (size_t)(m * C) * 4));
            LISA_TRY(op->convert(be, &in, &io));
        }
        LISA_TRY(op->matmul(be, &mid, &in, &e->fc1_w, &e->fc1_b));
        LISA_TRY(op->activation(be, &mid, &mid, LISA_ACT_RELU));
        LISA_TRY(op->matmul(be, &o, &mid, &e->fc2_w, &e->fc2_b));
        float *dst = out + (size_t)r0 * (size_t)E;
        if (o.dtype == LISA_DTYPE_F32) {
            LISA_TRY(op->copy_to_host(be, dst, o.data, 0, (size_t)(m * E) * 4));
        } else {
            lisa_tensor io = lisa_tensor_2d(e->fc_io.data, LISA_DTYPE_F32, m, E);
            LISA_TRY(op->convert(be, &io, &o));
            LISA_TRY(op->copy_to_host(be, dst, io.data, 0, (size_t)(m * E) * 4));
        }
        LISA_TRY(op->synchronize(be));
    }
    return LISA_OK;
}

/* Prompt embeddings: embed(ids[:p]) ++ feats (N, C) ++ embed(ids[p+1:]). */
static lisa_status engine_splice(lisa_engine *e, engine_item *it, const float *feats) {
    int64_t C = e->llm.cfg.hidden_size;
    int N = e->n_patches;
    it->L = (int)it->n_ids - 1 + N;
    it->embd = malloc((size_t)it->L * (size_t)C * sizeof(float));
    if (!it->embd) return lisa_error_set(LISA_ERR_NOMEM, "engine: out of memory");
    size_t p = it->image_pos;
    for (size_t i = 0; i < it->n_ids;) {
        if (i == p) {
            memcpy(it->embd + (size_t)p * C, feats, (size_t)N * (size_t)C * sizeof(float));
            i++;
            continue;
        }
        size_t end = i < p ? p : it->n_ids;
        size_t cnt = end - i < LISA_ENGINE_CHUNK ? end - i : LISA_ENGINE_CHUNK;
        size_t row = i < p ? i : i - 1 + (size_t)N;
        LISA_TRY(lisa_llama_embed(&e->llm, &e->llm_state, it->ids + i, (int)cnt,
                                  it->embd + row * (size_t)C));
        i += cnt;
    }
    return LISA_OK;
}

/* Expanded position of prompt id index j (the image placeholder becomes N rows). */
static int engine_expanded(const engine_item *it, size_t j, int N) {
    return j < it->image_pos ? (int)j : (int)j - 1 + N;
}

/* Teacher-forced: one forward over the prompt (slot 0); the hidden states of
 * the positions before each [SEG] in the prompt ids. */
static lisa_status engine_teacher_forced(lisa_engine *e, engine_item *it) {
    int64_t C = e->llm.cfg.hidden_size;
    int N = e->n_patches, rows[LISA_ENGINE_MAX_SEG], nseg = 0;
    for (size_t j = it->image_pos + 1; j < it->n_ids; j++)
        if (it->ids[j] == e->seg_id) {
            if (nseg == LISA_ENGINE_MAX_SEG)
                return lisa_error_set(LISA_ERR_ARG, "more than %d [SEG] tokens in one answer",
                                      LISA_ENGINE_MAX_SEG);
            rows[nseg++] = engine_expanded(it, j, N) - 1;
        }
    it->n_seg = nseg;
    it->seg_hidden = malloc((size_t)(nseg ? nseg : 1) * (size_t)C * sizeof(float));
    int32_t *seq = calloc(LISA_ENGINE_CHUNK, 4), *pos = malloc(LISA_ENGINE_CHUNK * 4),
            *outr = malloc(LISA_ENGINE_MAX_SEG * 4);
    float *h = malloc((size_t)LISA_ENGINE_MAX_SEG * (size_t)C * sizeof(float));
    lisa_status st = (it->seg_hidden && seq && pos && outr && h)
                         ? LISA_OK
                         : lisa_error_set(LISA_ERR_NOMEM, "engine: out of memory");
    for (int p0 = 0; p0 < it->L && st == LISA_OK; p0 += LISA_ENGINE_CHUNK) {
        int n = it->L - p0 < LISA_ENGINE_CHUNK ? it->L - p0 : LISA_ENGINE_CHUNK, no = 0, which[LISA_ENGINE_MAX_SEG];
        for (int i = 0; i < n; i++) pos[i] = p0 + i;
        for (int k = 0; k < nseg; k++)
            if (rows[k] >= p0 && rows[k] < p0 + n) {
                which[no] = k;
                outr[no++] = rows[k] - p0;
            }
        lisa_llama_batch b = {n, NULL, it->embd + (size_t)p0 * C, seq, pos, no, outr};
        st = lisa_llama_forward(&e->llm, &e->llm_state, &b, NULL, h, NULL);
        for (int k = 0; k < no && st == LISA_OK; k++)
            memcpy(it->seg_hidden + (size_t)which[k] * C, h + (size_t)k * C, (size_t)C * sizeof(float));
    }
    free(seq);
    free(pos);
    free(outr);
    free(h);
    return st;
}

/* CLIP features (N, C) host for the images whose `need` flag is set, up to
 * the CLIP state's batch per forward pass. */
static lisa_status engine_clip(lisa_engine *e, engine_image *imgs, const int *need, int nimg) {
    int B = e->clip_state.max_batch, S = e->clip_cfg.image_size;
    int64_t C = e->llm.cfg.hidden_size, N = e->n_patches, px = 3 * (int64_t)S * S;
    float *pix = malloc((size_t)B * (size_t)px * sizeof(float));
    float *out = malloc((size_t)B * (size_t)N * (size_t)C * sizeof(float));
    int *which = malloc((size_t)B * sizeof(int));
    lisa_status st = (pix && out && which) ? LISA_OK : lisa_error_set(LISA_ERR_NOMEM, "engine: out of memory");
    int k = 0;
    while (st == LISA_OK && k < nimg) {
        int b = 0;
        for (; k < nimg && b < B && st == LISA_OK; k++) {
            if (!need[k]) continue;
            lisa_preprocessed pp;
            memset(&pp, 0, sizeof pp);
            st = lisa_preprocess_clip(&imgs[k].img, S, &pp);
            if (st == LISA_OK) memcpy(pix + (size_t)b * px, pp.chw, (size_t)px * sizeof(float));
            lisa_preprocessed_free(&pp);
            which[b++] = k;
        }
        if (st != LISA_OK || b == 0) break;
        st = lisa_clip_forward(&e->clip, &e->clip_state, pix, b, NULL);
        if (st == LISA_OK) st = lisa_clip_project(&e->proj, &e->clip_state, out);
        for (int i = 0; i < b && st == LISA_OK; i++) {
            engine_image *im = &imgs[which[i]];
            im->feats = malloc((size_t)N * (size_t)C * sizeof(float));
            if (!im->feats) {
                st = lisa_error_set(LISA_ERR_NOMEM, "engine: out of memory");
                break;
            }
            memcpy(im->feats, out + (size_t)i * N * C, (size_t)(N * C) * sizeof(float));
        }
    }
    free(pix);
    free(out);
    free(which);
    return st;
}

/* SAM decoder for one request against the selected image embedding: its n
 * prompts (n, E), max_batch at a time, postprocessed to masks of the
 * original size; the image was resized to rh x rw. low (max_batch, U, U) and
 * iou (max_batch) are scratch. */
static lisa_status engine_sam_decode(lisa_engine *e, const engine_image *im, int rh, int rw,
                                     const float *prompts, int n, lisa_seg_mask *masks,
                                     float *low, float *iou) {
    int B = e->sam_state.max_batch;
    int64_t U = 4 * (int64_t)e->sam.cfg.grid, UU = U * U, pix = (int64_t)im->img.w * im->img.h;
    lisa_status st = LISA_OK;
    for (int j0 = 0; j0 < n && st == LISA_OK; j0 += B) {
        int m = n - j0 < B ? n - j0 : B;
        st = lisa_sam_decode(&e->sam, &e->sam_state, prompts + (size_t)j0 * e->seg_dim, m, 1, 0,
                             low, iou);
        for (int j = 0; j < m && st == LISA_OK; j++) {
            lisa_seg_mask *mk = &masks[j0 + j];
            mk->iou = iou[j];
            mk->mask = malloc((size_t)pix);
            if (!mk->mask) {
                st = lisa_error_set(LISA_ERR_NOMEM, "engine: out of memory");
                break;
            }
            st = lisa_sam_postprocess(&e->sam, &e->sam_state, low + (size_t)j * UU, rh, rw,
                                      im->img.h, im->img.w, NULL, mk->mask);
            if (e->keep_lowres && st == LISA_OK) {
                mk->lowres = malloc((size_t)UU * sizeof(float));
                if (mk->lowres) memcpy(mk->lowres, low + (size_t)j * UU, (size_t)UU * sizeof(float));
            }
        }
    }
    return st;
}

/* The SAM step of every live request with a [SEG] on image k: when ss is
 * LISA_OK its prompts are decoded against the selected embedding (image k
 * resized to rh x rw), else it fails alone with ss. Returns backend and
 * memory errors, which end the batch. */
static lisa_status engine_sam_image(lisa_engine *e, const engine_image *imgs, int k,
                                    engine_item *items, lisa_response *res, int n,
                                    lisa_status ss, int rh, int rw, float *low, float *iou) {
    if (ss == LISA_ERR_BACKEND || ss == LISA_ERR_NOMEM) return ss;
    for (int i = 0; i < n; i++) {
        engine_item *it = &items[i];
        if (!it->ok || it->img != k || it->n_seg == 0) continue;
        lisa_status rs = ss;
        if (rs == LISA_OK)
            rs = engine_sam_decode(e, &imgs[k], rh, rw, res[i].seg_embeddings, it->n_seg,
                                   res[i].masks, low, iou);
        if (rs != LISA_OK)
            for (int j = 0; j < it->n_seg; j++) { /* masks decoded before the failure */
                free(res[i].masks[j].mask);
                free(res[i].masks[j].lowres);
                res[i].masks[j].mask = NULL;
                res[i].masks[j].lowres = NULL;
            }
        if (rs == LISA_ERR_BACKEND || rs == LISA_ERR_NOMEM) return rs;
        if (rs != LISA_OK) item_fail(&res[i], it, rs, lisa_error_get());
        else res[i].n_masks = it->n_seg;
    }
    return LISA_OK;
}

/* SAM over a batch: the image encoder once per distinct image that got a
 * [SEG], up to the state's max_images images per pass; then, image by
 * image, its embedding is selected and each of its requests' prompts are
 * decoded and postprocessed. An image too large for the mask buffers or
 * failing preprocessing fails its requests alone. */
static lisa_status engine_sam(lisa_engine *e, engine_image *imgs, int nimg, engine_item *items,
                              lisa_response *res, int n) {
    const int64_t S = LISA_ENGINE_SAM_SIZE, px = 3 * S * S;
    const int64_t UU = 16 * (int64_t)e->sam.cfg.grid * e->sam.cfg.grid;
    int Bi = e->sam_state.max_images, B = e->sam_state.max_batch;
    float *chw = malloc((size_t)(Bi * px) * sizeof(float));   /* (Bi, 3, S, S) */
    float *low = malloc((size_t)B * (size_t)UU * sizeof(float));
    float *iou = malloc((size_t)B * sizeof(float));
    int *which = malloc((size_t)Bi * sizeof(int)), *rh = malloc((size_t)Bi * sizeof(int)),
        *rw = malloc((size_t)Bi * sizeof(int));
    lisa_status st = (chw && low && iou && which && rh && rw)
                         ? LISA_OK
                         : lisa_error_set(LISA_ERR_NOMEM, "engine: out of memory");
    for (int k = 0; k < nimg && st == LISA_OK;) {
        int nb = 0;
        for (; k < nimg && nb < Bi && st == LISA_OK; k++) {
            int need = 0;
            for (int i = 0; i < n; i++) need |= items[i].ok && items[i].img == k && items[i].n_seg;
            if (!need) continue;
            engine_image *im = &imgs[k];
            lisa_status ps = LISA_OK;
            if ((int64_t)im->img.w * im->img.h > LISA_ENGINE_MAX_POSTPROCESS_PIXELS)
                ps = lisa_error_set(LISA_ERR_ARG, "image %dx%d is larger than the %lld pixels "
                                    "masks are reserved for", im->img.w, im->img.h,
                                    (long long)LISA_ENGINE_MAX_POSTPROCESS_PIXELS);
            lisa_preprocessed pp;
            memset(&pp, 0, sizeof pp);
            if (ps == LISA_OK) ps = lisa_preprocess_sam(&im->img, (int)S, (int)S, &pp);
            if (ps == LISA_OK) {
                memcpy(chw + (size_t)nb * px, pp.chw, (size_t)px * sizeof(float));
                rh[nb] = pp.resize_h;
                rw[nb] = pp.resize_w;
                which[nb++] = k;
            } else {
                st = engine_sam_image(e, imgs, k, items, res, n, ps, 0, 0, low, iou);
            }
            lisa_preprocessed_free(&pp);
        }
        if (st != LISA_OK || nb == 0) continue;
        lisa_status es = lisa_sam_encode_batch(&e->sam, &e->sam_state, chw, nb, NULL);
        for (int b = 0; b < nb && st == LISA_OK; b++) {
            if (es == LISA_OK) es = lisa_sam_select_embedding(&e->sam_state, b);
            st = engine_sam_image(e, imgs, which[b], items, res, n, es, rh[b], rw[b], low, iou);
        }
    }
    free(chw);
    free(low);
    free(iou);
    free(which);
    free(rh);
    free(rw);
    return st;
}

/* One batch of at most max_batch requests. */
static lisa_status engine_batch(lisa_engine *e, const lisa_request *reqs, int n,
                                lisa_response *res, int *done, int total,
                                lisa_engine_progress_fn progress, void *user) {
    int64_t C = e->llm.cfg.hidden_size;
    int N = e->n_patches;
    engine_item *items = calloc((size_t)n, sizeof *items);
    engine_image *imgs = calloc((size_t)n, sizeof *imgs);
    lisa_gen_request *gr = calloc((size_t)n, sizeof *gr);
    lisa_gen_result *gres = calloc((size_t)n, sizeof *gres);
    int *gidx = calloc((size_t)n, sizeof *gidx);
    int nimg = 0, ng = 0;
    lisa_status st = (items && imgs && gr && gres && gidx) ? LISA_OK
                                                           : lisa_error_set(LISA_ERR_NOMEM, "engine: out of memory");
    /* 1. prompts and distinct images */
    for (int i = 0; i < n && st == LISA_OK; i++) {
        engine_item *it = &items[i];
        lisa_response *r = &res[i];
        it->ok = 1;
        if (!reqs[i].image_path || !*reqs[i].image_path) {
            item_fail(r, it, LISA_ERR_ARG, "no image given");
            continue;
        }
        lisa_status ps = lisa_prompt_tokenize(e->tok, reqs[i].prompt, reqs[i].answer, &it->ids,
                                              &it->n_ids, &it->image_pos);
        if (ps != LISA_OK) {
            item_fail(r, it, ps, lisa_error_get());
            continue;
        }
        int L = (int)it->n_ids - 1 + N;
        if (L >= e->p.max_ctx) {
            char msg[200];
            snprintf(msg, sizeof msg, "prompt too long: %d tokens with the %d image tokens; the "
                     "context holds %d", L, N, e->p.max_ctx);
            item_fail(r, it, LISA_ERR_ARG, msg);
            continue;
        }
        int k = 0;
        while (k < nimg && strcmp(imgs[k].path, reqs[i].image_path)) k++;
        if (k == nimg) {
            imgs[k].path = reqs[i].image_path;
            lisa_status is = lisa_image_load(&imgs[k].img, imgs[k].path, &e->p.limits);
            imgs[k].ok = is == LISA_OK;
            if (!imgs[k].ok) snprintf(imgs[k].error, sizeof imgs[k].error, "%s", lisa_error_get());
            nimg++;
        }
        it->img = k;
        if (!imgs[k].ok) item_fail(r, it, LISA_ERR_FORMAT, imgs[k].error);
    }
    /* 2. CLIP once per image that some live request needs, batched */
    if (st == LISA_OK) {
        int *need = calloc((size_t)(nimg ? nimg : 1), sizeof *need);
        if (!need) st = lisa_error_set(LISA_ERR_NOMEM, "engine: out of memory");
        for (int i = 0; need && i < n; i++)
            if (items[i].ok && imgs[items[i].img].ok) need[items[i].img] = 1;
        if (st == LISA_OK) st = engine_clip(e, imgs, need, nimg);
        free(need);
    }
    /* 3. splice, then generate (batched) or teacher-force */
    for (int i = 0; i < n && st == LISA_OK; i++) {
        engine_item *it = &items[i];
        if (!it->ok) continue;
        st = engine_splice(e, it, imgs[it->img].feats);
        if (st != LISA_OK) break;
        if (reqs[i].answer && *reqs[i].answer) {
            lisa_status ts = engine_teacher_forced(e, it);
            if (ts != LISA_OK) item_fail(&res[i], it, ts, lisa_error_get());
            res[i].text = strdup(reqs[i].answer);
            res[i].stop = it->ok ? LISA_STOP_EOS : LISA_STOP_ERROR;
        } else {
            gr[ng].embd = it->embd;
            gr[ng].n_prompt = it->L;
            gr[ng].max_new_tokens = reqs[i].max_new_tokens > 0 ? reqs[i].max_new_tokens
                                                                : e->p.max_new_tokens;
            gr[ng].want_hidden = 1;
            gidx[ng++] = i;
        }
    }
    if (st == LISA_OK && ng)
        st = lisa_generate_greedy(&e->llm, &e->llm_state, gr, ng, e->llm.cfg.eos_token_id, gres);
    for (int g = 0; g < ng && st == LISA_OK; g++) {
        int i = gidx[g];
        engine_item *it = &items[i];
        lisa_gen_result *q = &gres[g];
        lisa_response *r = &res[i];
        if (q->status != LISA_OK) {
            item_fail(r, it, q->status, q->error);
            continue;
        }
        r->stop = q->stop;
        r->ids = q->tokens;
        r->n_ids = q->n_tokens;
        q->tokens = NULL;
        int n_text = r->n_ids - (r->stop == LISA_STOP_EOS ? 1 : 0);
        lisa_status ds = lisa_tokenizer_decode_hf(e->tok, r->ids, (size_t)(n_text > 0 ? n_text : 0), &r->text);
        if (ds != LISA_OK) {
            item_fail(r, it, ds, lisa_error_get());
            continue;
        }
        for (int t = 0; t < r->n_ids; t++) it->n_seg += r->ids[t] == e->seg_id;
        it->seg_hidden = malloc((size_t)(it->n_seg ? it->n_seg : 1) * (size_t)C * sizeof(float));
        if (!it->seg_hidden) {
            st = lisa_error_set(LISA_ERR_NOMEM, "engine: out of memory");
            break;
        }
        for (int t = 0, k = 0; t < r->n_ids; t++)
            if (r->ids[t] == e->seg_id)
                memcpy(it->seg_hidden + (size_t)(k++) * C, q->hidden + (size_t)t * C,
                       (size_t)C * sizeof(float));
    }
    /* 4. text_hidden_fcs, 5. SAM once per image */
    for (int i = 0; i < n && st == LISA_OK; i++) {
        engine_item *it = &items[i];
        lisa_response *r = &res[i];
        r->w = imgs[it->img].img.w;
        r->h = imgs[it->img].img.h;
        if (!it->ok || it->n_seg == 0) continue;
        r->seg_dim = e->seg_dim;
        r->seg_embeddings = malloc((size_t)it->n_seg * (size_t)e->seg_dim * sizeof(float));
        r->masks = calloc((size_t)it->n_seg, sizeof *r->masks);
        if (!r->seg_embeddings || !r->masks) {
            st = lisa_error_set(LISA_ERR_NOMEM, "engine: out of memory");
            break;
        }
        st = engine_fcs(e, it->seg_hidden, it->n_seg, r->seg_embeddings);
    }
    if (st == LISA_OK) st = engine_sam(e, imgs, nimg, items, res, n);
    for (int i = 0; i < n; i++) {
        if (st != LISA_OK && res[i].status == LISA_OK) item_fail(&res[i], &items[i], st, lisa_error_get());
        (*done)++;
        if (progress) progress(user, *done, total);
    }
    for (int i = 0; i < n; i++) {
        free(items ? items[i].ids : NULL);
        free(items ? items[i].embd : NULL);
        free(items ? items[i].seg_hidden : NULL);
    }
    for (int k = 0; k < nimg; k++) {
        lisa_image_free(&imgs[k].img);
        free(imgs[k].feats);
    }
    for (int g = 0; g < ng; g++) lisa_gen_result_free(&gres[g]);
    free(items);
    free(imgs);
    free(gr);
    free(gres);
    free(gidx);
    return st;
}

lisa_status lisa_engine_run(lisa_engine *e, const lisa_request *reqs, int n,
                            lisa_response *responses, lisa_engine_progress_fn progress,
                            void *user) {
    memset(responses, 0, (size_t)n * sizeof *responses);
    int done = 0;
    lisa_status st = LISA_OK;
    for (int i0 = 0; i0 < n && st == LISA_OK; i0 += e->p.max_batch) {
        int m = n - i0 < e->p.max_batch ? n - i0 : e->p.max_batch;
        st = engine_batch(e, reqs + i0, m, responses + i0, &done, n, progress, user);
    }
    return st;
}
