/* vision.c: loading LISA's vision parts and decoding masks (see vision.h). */
#include "vision.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "config-file.h"

/* Reads config.json's optional LLaVA and SAM fields. */
static lisa_status vision_read_config(const char *dir, int *select_layer, lisa_projector_kind *kind,
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
        /* CLIP's patch rows are what LISA feeds the LLM; LLaVA's other
         * choice (cls_patch) would need one more row per image. */
        const cJSON *sf = cJSON_GetObjectItem(root, "mm_vision_select_feature");
        if (sf && st == LISA_OK && !(cJSON_IsString(sf) && !strcmp(sf->valuestring, "patch")))
            st = lisa_error_set(LISA_ERR_UNSUPPORTED,
                                "%s/config.json: mm_vision_select_feature must be \"patch\" "
                                "(as LISA's)", dir);
        const cJSON *sl = cJSON_GetObjectItem(root, "mm_vision_select_layer");
        *select_layer = cJSON_IsNumber(sl) ? sl->valueint : -2;
        const cJSON *pt = cJSON_GetObjectItem(root, "mm_projector_type");
        *kind = LISA_PROJECTOR_LINEAR;
        if (cJSON_IsString(pt) && st == LISA_OK) st = lisa_projector_kind_parse(pt->valuestring, kind);
    }
    cJSON_Delete(root);
    return st;
}

lisa_status lisa_vision_load(lisa_vision *v, const char *dir, lisa_backend *be, lisa_dtype dtype,
                             int slots, int llm_hidden) {
    memset(v, 0, sizeof *v);
    int select_layer = -2;
    lisa_projector_kind kind = LISA_PROJECTOR_LINEAR;
    lisa_sam_options sam_opts = {LISA_VISION_SAM_PREFIX, 0, 0};
    lisa_status st = vision_read_config(dir, &select_layer, &kind, &sam_opts);
    if (st == LISA_OK) st = lisa_clip_config_load(&v->clip_cfg, dir);
    if (st == LISA_OK)
        st = lisa_clip_model_load(&v->clip, &v->clip_cfg, dir, LISA_VISION_CLIP_PREFIX, select_layer,
                                  be, dtype);
    v->have_clip = st == LISA_OK;
    if (st == LISA_OK)
        st = lisa_projector_load(&v->proj, dir, LISA_VISION_PROJ_PREFIX, kind,
                                 v->clip_cfg.hidden_size, be, dtype);
    v->have_proj = st == LISA_OK;
    if (st == LISA_OK && v->proj.out_dim != llm_hidden)
        st = lisa_error_set(LISA_ERR_SHAPE, "projector outputs %d, the LLM's hidden size is %d",
                            v->proj.out_dim, llm_hidden);
    if (st == LISA_OK)
        st = lisa_clip_state_init(&v->clip_state, &v->clip, &v->proj, slots < 8 ? slots : 8);
    v->have_clip_state = st == LISA_OK;
    if (st == LISA_OK) v->n_patches = lisa_clip_num_patches(&v->clip_cfg);
    if (st == LISA_OK) st = lisa_sam_model_load(&v->sam, dir, be, dtype, &sam_opts);
    v->have_sam = st == LISA_OK;
    if (st == LISA_OK)
        st = lisa_seg_head_load(&v->seg_head, dir, be, dtype, llm_hidden, LISA_VISION_MAX_SEG);
    v->have_seg_head = st == LISA_OK;
    if (st == LISA_OK) v->seg_dim = v->seg_head.dim;
    if (st == LISA_OK) {
        int si = slots < LISA_VISION_SAM_IMAGES ? slots : LISA_VISION_SAM_IMAGES;
        st = lisa_sam_state_init_batch(&v->sam_state, &v->sam, si, 4, 1,
                                       LISA_VISION_MAX_POSTPROCESS_PIXELS);
    }
    v->have_sam_state = st == LISA_OK;
    if (st == LISA_OK) {
        size_t U = 4 * (size_t)v->sam.cfg.grid, B = (size_t)v->sam_state.max_batch;
        v->low = malloc(B * U * U * sizeof(float));
        v->iou = malloc(B * sizeof(float));
        if (!v->low || !v->iou) st = lisa_error_set(LISA_ERR_NOMEM, "vision: out of memory");
    }
    if (st != LISA_OK) lisa_vision_free(v);
    return st;
}

void lisa_vision_free(lisa_vision *v) {
    free(v->low);
    free(v->iou);
    if (v->have_seg_head) lisa_seg_head_free(&v->seg_head);
    if (v->have_sam_state) lisa_sam_state_free(&v->sam_state);
    if (v->have_sam) lisa_sam_model_free(&v->sam);
    if (v->have_clip_state) lisa_clip_state_free(&v->clip_state);
    if (v->have_proj) lisa_projector_free(&v->proj);
    if (v->have_clip) lisa_clip_model_free(&v->clip);
    memset(v, 0, sizeof *v);
}

lisa_status lisa_vision_masks(lisa_vision *v, const float *seg_emb, int n_seg, int rh, int rw,
                              int h, int w, int keep_lowres, lisa_seg_mask *masks) {
    int B = v->sam_state.max_batch;
    int64_t U = 4 * (int64_t)v->sam.cfg.grid, UU = U * U, pix = (int64_t)w * h;
    for (int j0 = 0; j0 < n_seg; j0 += B) {
        int m = n_seg - j0 < B ? n_seg - j0 : B;
        LISA_TRY(lisa_sam_decode(&v->sam, &v->sam_state, seg_emb + (size_t)j0 * v->seg_dim, m, 1, 0,
                                 v->low, v->iou));
        for (int j = 0; j < m; j++) {
            lisa_seg_mask *mk = &masks[j0 + j];
            mk->iou = v->iou[j];
            mk->mask = malloc((size_t)pix);
            if (!mk->mask) return lisa_error_set(LISA_ERR_NOMEM, "vision: out of memory");
            LISA_TRY(lisa_sam_postprocess(&v->sam, &v->sam_state, v->low + (size_t)j * UU, rh, rw, h,
                                          w, NULL, mk->mask));
            if (keep_lowres) {
                mk->lowres = malloc((size_t)UU * sizeof(float));
                if (!mk->lowres) return lisa_error_set(LISA_ERR_NOMEM, "vision: out of memory");
                memcpy(mk->lowres, v->low + (size_t)j * UU, (size_t)UU * sizeof(float));
            }
        }
    }
    return LISA_OK;
}
