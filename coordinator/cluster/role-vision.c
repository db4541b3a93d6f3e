/* role-vision.c: the vision rank: CLIP + projector for each admitted
 * request's image (features to stage 1), SAM's image encoder for those
 * images while the LLM works (eagerly, when no message waits), and at the
 * end of a request's generation text_hidden_fcs over its [SEG] hidden
 * states, the mask decoder and the postprocess to the original size
 * (masks to the coordinator). CLIP features and SAM embeddings are cached
 * by image content (image-cache.h), so requests sharing an image pay once.
 *
 * The [SEG] hidden states come from the last stage and the request's end
 * from the coordinator, in either order: a request is decoded once both its
 * VisionFinish and all of its n_seg hidden states are here.
 *
 * Deliberately not here: the LLM, tokens, result files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster-internal.h"
#include "image-cache.h"
#include "preprocess.h"
#include "vision.h"

typedef struct vis_req {
    int64_t handle;
    uint8_t *bytes;
    size_t n_bytes;
    uint64_t hash;
    lisa_image img;
    int rh, rw;                  /* the image resized for SAM */
    float *hidden;               /* (MAX_SEG, C) */
    uint64_t got;                /* bit j: hidden state j arrived */
    int n_seg;                   /* -1 until VisionFinish */
    int encoded;                 /* its image's SAM embedding is in the cache */
} vis_req;

struct vision_role {
    lisa_vision v;
    lisa_image_cache cache;
    int stage1_rank;
    int64_t C;
    vis_req **reqs;
    int n_reqs, cap_reqs;
    float *clip_pix, *clip_out;  /* (3, S, S), (N, C) */
    float *sam_chw, *sam_emb;    /* (Bi, 3, 1024, 1024), (Bi, G*G*D) */
    float *seg_emb;              /* (MAX_SEG, E) */
    size_t emb_n;                /* G*G*D */
};

lisa_status vision_init(cluster_ctx *x) {
    vision_role *r = calloc(1, sizeof *r);
    if (!r) return lisa_error_set(LISA_ERR_NOMEM, "vision: out of memory");
    x->vis = r;
    r->stage1_rank = lisa_cluster_stage_rank(x->cfg, 0);
    r->C = x->llm_cfg.hidden_size;
    lisa_image_cache_init(&r->cache, (size_t)512 << 20);
    LISA_TRY(lisa_vision_load(&r->v, x->cfg->model_dir, x->be, x->dtype, x->cfg->slots, (int)r->C));
    size_t cs = (size_t)r->v.clip_cfg.image_size, N = (size_t)r->v.n_patches;
    size_t Bi = (size_t)r->v.sam_state.max_images, SS = LISA_VISION_SAM_SIZE;
    r->emb_n = (size_t)r->v.sam.cfg.grid * (size_t)r->v.sam.cfg.grid * (size_t)r->v.sam.cfg.dim;
    r->clip_pix = malloc(3 * cs * cs * sizeof(float));
    r->clip_out = malloc(N * (size_t)r->C * sizeof(float));
    r->sam_chw = malloc(Bi * 3 * SS * SS * sizeof(float));
    r->sam_emb = malloc(Bi * r->emb_n * sizeof(float));
    r->seg_emb = malloc((size_t)LISA_VISION_MAX_SEG * (size_t)r->v.seg_dim * sizeof(float));
    if (!r->clip_pix || !r->clip_out || !r->sam_chw || !r->sam_emb || !r->seg_emb)
        return lisa_error_set(LISA_ERR_NOMEM, "vision: out of memory reserving buffers");
    return LISA_OK;
}

static void vis_req_free(vis_req *q) {
    free(q->bytes);
    lisa_image_free(&q->img);
    free(q->hidden);
    free(q);
}

static void vision_drop(vision_role *r, int i) {
    vis_req_free(r->reqs[i]);
    memmove(r->reqs + i, r->reqs + i + 1, (size_t)(r->n_reqs - i - 1) * sizeof *r->reqs);
    r->n_reqs--;
}

void vision_free(cluster_ctx *x) {
    vision_role *r = x->vis;
    if (!r) return;
    while (r->n_reqs) vision_drop(r, r->n_reqs - 1);
    free(r->reqs);
    lisa_image_cache_free(&r->cache);
    lisa_vision_free(&r->v);
    free(r->clip_pix);
    free(r->clip_out);
    free(r->sam_chw);
    free(r->sam_emb);
    free(r->seg_emb);
    free(r);
    x->vis = NULL;
}

static int vision_find(const vision_role *r, int64_t handle) {
    for (int i = 0; i < r->n_reqs; i++)
        if (r->reqs[i]->handle == handle) return i;
    return -1;
}

static lisa_status vision_ready(cluster_ctx *x, int64_t handle, lisa_status st, const char *err,
                                const lisa_image *img) {
    Lisa__Cluster__VisionReady m = LISA__CLUSTER__VISION_READY__INIT;
    m.handle = handle;
    m.status = (int32_t)st;
    m.error = (char *)(err ? err : "");
    m.w = img ? img->w : 0;
    m.h = img ? img->h : 0;
    return cluster_send_msg(x, 0, LISA_TAG_VISION_READY, &m.base);
}

/* CLIP features of q's image (cached by content), sent to stage 1. */
static lisa_status vision_features(cluster_ctx *x, vision_role *r, vis_req *q) {
    size_t feat_n = (size_t)r->v.n_patches * (size_t)r->C;
    lisa_image_entry *ce = lisa_image_cache_find(&r->cache, q->hash, q->bytes, q->n_bytes);
    const float *feats = ce && ce->clip ? ce->clip : NULL;
    if (!feats) {
        double t0 = cluster_now();
        int S = r->v.clip_cfg.image_size;
        lisa_preprocessed pp;
        memset(&pp, 0, sizeof pp);
        lisa_status st = lisa_preprocess_clip(&q->img, S, &pp);
        if (st == LISA_OK) memcpy(r->clip_pix, pp.chw, 3 * (size_t)S * (size_t)S * sizeof(float));
        lisa_preprocessed_free(&pp);
        LISA_TRY(st);
        LISA_TRY(lisa_clip_forward(&r->v.clip, &r->v.clip_state, r->clip_pix, 1, NULL));
        LISA_TRY(lisa_clip_project(&r->v.proj, &r->v.clip_state, r->clip_out));
        x->stats.clip_images++;
        x->stats.busy_s += cluster_now() - t0;
        feats = r->clip_out;
        lisa_image_cache_store_clip(&r->cache, q->hash, q->bytes, q->n_bytes, feats, feat_n);
    }
    Lisa__Cluster__Features f = LISA__CLUSTER__FEATURES__INIT;
    f.handle = q->handle;
    f.n = r->v.n_patches;
    f.dim = (int32_t)r->C;
    LISA_TRY(cluster_send_msg(x, r->stage1_rank, LISA_TAG_FEATURES, &f.base));
    return cluster_send_data(x, r->stage1_rank, feats, feat_n * sizeof(float));
}

lisa_status vision_on_prepare(cluster_ctx *x, const Lisa__Cluster__VisionPrepare *m) {
    vision_role *r = x->vis;
    vis_req *q = calloc(1, sizeof *q);
    if (!q) return lisa_error_set(LISA_ERR_NOMEM, "vision: out of memory");
    q->handle = m->handle;
    q->n_seg = -1;
    q->n_bytes = m->image.len;
    q->bytes = malloc(q->n_bytes ? q->n_bytes : 1);
    q->hidden = malloc((size_t)LISA_VISION_MAX_SEG * (size_t)r->C * sizeof(float));
    if (!q->bytes || !q->hidden) {
        vis_req_free(q);
        return lisa_error_set(LISA_ERR_NOMEM, "vision: out of memory");
    }
    memcpy(q->bytes, m->image.data, q->n_bytes);
    q->hash = lisa_image_hash(q->bytes, q->n_bytes);
    lisa_status st = lisa_image_decode(&q->img, q->bytes, q->n_bytes, &x->opt->limits);
    if (st != LISA_OK) {
        char msg[512];
        if (m->label && *m->label) snprintf(msg, sizeof msg, "%s: %s", m->label, lisa_error_get());
        else snprintf(msg, sizeof msg, "%s", lisa_error_get());
        vis_req_free(q);
        return vision_ready(x, m->handle, LISA_ERR_FORMAT, msg, NULL);
    }
    lisa_preprocess_sam_size(q->img.h, q->img.w, LISA_VISION_SAM_SIZE, &q->rh, &q->rw);
    if (r->n_reqs == r->cap_reqs) {
        int cap = r->cap_reqs ? 2 * r->cap_reqs : 16;
        vis_req **p = realloc(r->reqs, (size_t)cap * sizeof *p);
        if (!p) {
            vis_req_free(q);
            return lisa_error_set(LISA_ERR_NOMEM, "vision: out of memory");
        }
        r->reqs = p;
        r->cap_reqs = cap;
    }
    r->reqs[r->n_reqs++] = q;
    LISA_TRY(vision_features(x, r, q));
    return vision_ready(x, q->handle, LISA_OK, NULL, &q->img);
}

/* Marks every request on the image of q (the same bytes) as encoded. */
static void vision_mark_encoded(vision_role *r, const vis_req *q) {
    for (int i = 0; i < r->n_reqs; i++) {
        vis_req *o = r->reqs[i];
        if (lisa_image_bytes_same(o->hash, o->bytes, o->n_bytes, q->hash, q->bytes, q->n_bytes))
            o->encoded = 1;
    }
}

/* The SAM encoder over up to Bi distinct images of requests not yet
 * encoded, q's first when given; embeddings into the cache. An image SAM
 * cannot take fails its requests at their finish. Returns images encoded. */
static lisa_status vision_encode(cluster_ctx *x, vision_role *r, vis_req *first, int *n_done) {
    const size_t SS = LISA_VISION_SAM_SIZE, px = 3 * SS * SS;
    vis_req *batch[LISA_VISION_SAM_IMAGES];
    int nb = 0, Bi = r->v.sam_state.max_images;
    *n_done = 0;
    for (int i = -1; i < r->n_reqs && nb < Bi; i++) {
        vis_req *q = i < 0 ? first : r->reqs[i];
        if (!q || q->encoded) continue;
        lisa_image_entry *ce = lisa_image_cache_find(&r->cache, q->hash, q->bytes, q->n_bytes);
        if (ce && ce->sam) {
            vision_mark_encoded(r, q);
            continue;
        }
        if ((int64_t)q->img.w * q->img.h > LISA_VISION_MAX_POSTPROCESS_PIXELS) continue;
        int dup = 0;
        for (int b = 0; b < nb && !dup; b++)
            dup = lisa_image_bytes_same(batch[b]->hash, batch[b]->bytes, batch[b]->n_bytes, q->hash,
                                        q->bytes, q->n_bytes);
        if (dup) continue;
        lisa_preprocessed pp;
        memset(&pp, 0, sizeof pp);
        lisa_status st = lisa_preprocess_sam(&q->img, (int)SS, (int)SS, &pp);
        if (st == LISA_OK) memcpy(r->sam_chw + (size_t)nb * px, pp.chw, px * sizeof(float));
        lisa_preprocessed_free(&pp);
        if (st == LISA_ERR_NOMEM) return st;
        if (st != LISA_OK) continue;
        batch[nb++] = q;
    }
    if (nb == 0) return LISA_OK;
    double t0 = cluster_now();
    LISA_TRY(lisa_sam_encode_batch(&r->v.sam, &r->v.sam_state, r->sam_chw, nb, r->sam_emb));
    x->stats.sam_images += nb;
    x->stats.busy_s += cluster_now() - t0;
    for (int b = 0; b < nb; b++) {
        lisa_image_cache_store_sam(&r->cache, batch[b]->hash, batch[b]->bytes, batch[b]->n_bytes,
                                   r->sam_emb + (size_t)b * r->emb_n, r->emb_n);
        vision_mark_encoded(r, batch[b]);
    }
    *n_done = nb;
    return LISA_OK;
}

/* The masks of q, whose n_seg hidden states are all here, to the
 * coordinator; q is dropped. */
static lisa_status vision_finish(cluster_ctx *x, vision_role *r, int i) {
    vis_req *q = r->reqs[i];
    int n = q->n_seg, E = r->v.seg_dim;
    Lisa__Cluster__Masks mk = LISA__CLUSTER__MASKS__INIT;
    mk.handle = q->handle;
    mk.seg_dim = E;
    lisa_seg_mask masks[LISA_VISION_MAX_SEG];
    memset(masks, 0, sizeof masks);
    ProtobufCBinaryData bins[LISA_VISION_MAX_SEG];
    float iou[LISA_VISION_MAX_SEG];
    char err[512] = "";
    lisa_status st = LISA_OK, req_st = LISA_OK;
    double t0 = cluster_now();
    if ((int64_t)q->img.w * q->img.h > LISA_VISION_MAX_POSTPROCESS_PIXELS) {
        req_st = LISA_ERR_ARG;
        snprintf(err, sizeof err, "image %dx%d is larger than the %lld pixels masks are reserved "
                 "for", q->img.w, q->img.h, (long long)LISA_VISION_MAX_POSTPROCESS_PIXELS);
    }
    lisa_image_entry *ce = NULL;
    if (req_st == LISA_OK) {
        ce = lisa_image_cache_find(&r->cache, q->hash, q->bytes, q->n_bytes);
        if (!ce || !ce->sam) {
            int nd = 0;
            q->encoded = 0;
            st = vision_encode(x, r, q, &nd);
            ce = st == LISA_OK ? lisa_image_cache_find(&r->cache, q->hash, q->bytes, q->n_bytes)
                               : NULL;
            if (st == LISA_OK && (!ce || !ce->sam))
                st = lisa_error_set(LISA_ERR_NOMEM, "vision: no room for the image embedding");
        }
    }
    if (st == LISA_OK && req_st == LISA_OK) st = lisa_sam_set_embedding(&r->v.sam, &r->v.sam_state, ce->sam);
    if (st == LISA_OK && req_st == LISA_OK)
        st = lisa_seg_head_forward(&r->v.seg_head, q->hidden, n, r->seg_emb);
    if (st == LISA_OK && req_st == LISA_OK) {
        st = lisa_vision_masks(&r->v, r->seg_emb, n, q->rh, q->rw, q->img.h, q->img.w, 0, masks);
        if (st != LISA_OK && st != LISA_ERR_BACKEND && st != LISA_ERR_NOMEM) {
            req_st = st;
            snprintf(err, sizeof err, "%s", lisa_error_get());
            st = LISA_OK;
        }
    }
    x->stats.busy_s += cluster_now() - t0;
    if (st == LISA_OK) {
        mk.status = (int32_t)req_st;
        mk.error = err;
        if (req_st == LISA_OK) {
            for (int j = 0; j < n; j++) {
                bins[j].data = masks[j].mask;
                bins[j].len = (size_t)q->img.w * (size_t)q->img.h;
                iou[j] = masks[j].iou;
            }
            mk.n_mask = (size_t)n;
            mk.mask = bins;
            mk.n_iou = (size_t)n;
            mk.iou = iou;
            mk.n_seg_embeddings = (size_t)n * (size_t)E;
            mk.seg_embeddings = r->seg_emb;
            x->stats.masks += n;
        }
        st = cluster_send_msg(x, 0, LISA_TAG_MASKS, &mk.base);
    }
    for (int j = 0; j < n; j++) free(masks[j].mask);
    vision_drop(r, i);
    return st;
}

static lisa_status vision_try_finish(cluster_ctx *x, vision_role *r, int i) {
    vis_req *q = r->reqs[i];
    if (q->n_seg < 0) return LISA_OK;
    uint64_t want = q->n_seg >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << q->n_seg) - 1);
    if ((q->got & want) != want) return LISA_OK;
    return vision_finish(x, r, i);
}

lisa_status vision_on_seg_hidden(cluster_ctx *x, int src, const Lisa__Cluster__SegHidden *m) {
    vision_role *r = x->vis;
    size_t C = (size_t)r->C;
    int i = vision_find(r, m->handle);
    if (i < 0 || m->index < 0 || m->index >= LISA_VISION_MAX_SEG) {
        /* take the data off the wire first, so the stream from src stays in step */
        float *junk = malloc(C * sizeof(float));
        if (junk) lisa_transport_recv(&x->tr, src, LISA_TAG_DATA, junk, C * sizeof(float));
        free(junk);
        return lisa_error_set(LISA_ERR_FORMAT, "vision: [SEG] %d for unknown request %lld",
                              m->index, (long long)m->handle);
    }
    float *dst = r->reqs[i]->hidden + (size_t)m->index * C;
    LISA_TRY(lisa_transport_recv(&x->tr, src, LISA_TAG_DATA, dst, C * sizeof(float)));
    r->reqs[i]->got |= (uint64_t)1 << m->index;
    return vision_try_finish(x, r, i);
}

lisa_status vision_on_finish(cluster_ctx *x, const Lisa__Cluster__VisionFinish *m) {
    vision_role *r = x->vis;
    int i = vision_find(r, m->handle);
    if (i < 0)
        return lisa_error_set(LISA_ERR_FORMAT, "vision: finish for unknown request %lld",
                              (long long)m->handle);
    if (m->n_seg <= 0) {
        vision_drop(r, i);
        return LISA_OK;
    }
    if (m->n_seg > LISA_VISION_MAX_SEG)
        return lisa_error_set(LISA_ERR_FORMAT, "vision: %d [SEG]s for request %lld", m->n_seg,
                              (long long)m->handle);
    r->reqs[i]->n_seg = m->n_seg;
    return vision_try_finish(x, r, i);
}

int vision_work(cluster_ctx *x, lisa_status *st) {
    vision_role *r = x->vis;
    if (!r) return 0;
    int nd = 0;
    *st = vision_encode(x, r, NULL, &nd);
    return nd > 0 || *st != LISA_OK;
}
