/* engine.c: LISA end to end in one process (see engine.h).
 *
 * Model directory layout (docs/model-format.md): config.json (LISA: LLaMA
 * fields at the top level plus mm_* fields), tokenizer.model,
 * added_tokens.json, safetensors shards holding the LLM (model.*, lm_head),
 * the projector (model.mm_projector.*), SAM (model.visual_model.*),
 * text_hidden_fcs (model.text_hidden_fcs.0.*) and the CLIP tower
 * (LISA_VISION_CLIP_PREFIX), whose config is config.json's "vision_config";
 * SAM's head counts are in "sam_config"; vision.h loads all but the LLM. */
#include "engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"
#include "masks.h"
#include "preprocess.h"
#include "prompt.h"
#include "tokenizer.h"
#include "image-cache.h"
#include "vision.h"

#define LISA_ENGINE_BUDGET 512      /* default tokens per step */
#define LISA_ENGINE_MAX_SLOTS 256
#define LISA_ENGINE_CACHE_BYTES ((size_t)512 << 20)

/* A request from submit to finish. */
typedef struct engine_req {
    int64_t handle;
    char *id, *label;           /* caller's id; image path for messages (may be NULL) */
    uint8_t *bytes;             /* encoded image, until the request ends */
    size_t n_bytes;
    uint64_t hash;
    int32_t *ids;               /* prompt ids with the image placeholder */
    size_t n_ids, image_pos;
    int L;                      /* prompt rows with the image expanded to N */
    int teacher_forced;
    char *answer;
    int max_new;
    lisa_image img;             /* decoded at admission */
    int rh, rw;                 /* the image resized for SAM */
    float *embd;                /* (L, C) from admission to the end of the prefill */
    int32_t *tokens;            /* generated ids */
    int n_tokens, cap_tokens;
    float *seg_hidden;          /* (n_seg, C) hidden states that predicted each [SEG] */
    int n_seg, cap_seg;
    int *tf_rows;               /* teacher-forced: (n_seg) rows whose outputs predict [SEG] */
    int len;                    /* positions in the KV cache */
    int in_sched, admitted, llm_done, wants_sam, cancel;
    lisa_stop_reason stop;
    struct engine_req *prev, *next;
} engine_req;

struct lisa_engine {
    lisa_engine_params p;
    lisa_backend *be;
    lisa_tokenizer *tok;
    lisa_llama_model llm;
    lisa_llama_state llm_state;
    lisa_vision vis;            /* CLIP, projector, SAM, text_hidden_fcs */
    int have_llm, have_llm_state, have_vis;
    int32_t seg_id;
    int keep_lowres;
    /* continuous batching */
    lisa_sched *sched;
    lisa_image_cache cache;
    engine_req *live_head, *live_tail;  /* submitted, not finished, in submission order */
    lisa_response *done;                /* finished, not yet taken: a FIFO ring */
    int done_head, n_done, cap_done;
    int n_live;
    int64_t next_handle;
    lisa_status failed;                 /* a backend failure ended the engine */
    char failed_msg[256];
    lisa_engine_stats stats;
    /* step scratch, reserved at init: T = token budget, S = slots */
    float *step_embd;                   /* (T, C) input rows */
    float *step_hid;                    /* (T, C) output hidden rows */
    int32_t *step_seq, *step_pos, *step_rows, *step_next;  /* (T) */
    engine_req **step_row_req;          /* (T) request of each output row */
    int *step_row_seg;                  /* (T) teacher-forced [SEG] index, or -1 */
    int32_t *step_tok;                  /* (S) decode tokens */
    float *step_tok_embd;               /* (S, C) their embeddings */
    float *clip_pix, *clip_out;         /* (Bc, 3*224*224), (Bc, N, C) */
    float *sam_chw, *sam_emb;           /* (Bi, 3, S, S), (Bi, G*G*C) */
};

static void *engine_alloc(size_t n) { return malloc(n ? n : 1); }

/* Fails r with st and a message (copied). */
static void response_fail(lisa_response *r, lisa_status st, const char *msg) {
    r->status = st;
    r->stop = LISA_STOP_ERROR;
    size_t n = strlen(msg);
    if (n >= sizeof r->error) n = sizeof r->error - 1;
    memcpy(r->error, msg, n);
    r->error[n] = 0;
}

/* --- the request list and the finished queue --- */

static void req_unlink(lisa_engine *e, engine_req *q) {
    if (q->prev) q->prev->next = q->next;
    else e->live_head = q->next;
    if (q->next) q->next->prev = q->prev;
    else e->live_tail = q->prev;
    e->n_live--;
}

static void req_free(engine_req *q) {
    free(q->id);
    free(q->label);
    free(q->bytes);
    free(q->ids);
    free(q->answer);
    lisa_image_free(&q->img);
    free(q->embd);
    free(q->tokens);
    free(q->seg_hidden);
    free(q->tf_rows);
    free(q);
}

/* Step scratch for the worst case: a full token budget, every slot
 * decoding, a full CLIP batch and SAM encoder batch. */
static lisa_status engine_scratch_init(lisa_engine *e) {
    size_t T = (size_t)e->p.token_budget, S = (size_t)e->p.max_batch;
    size_t C = (size_t)e->llm.cfg.hidden_size, N = (size_t)e->vis.n_patches;
    size_t cs = (size_t)e->vis.clip_cfg.image_size, Bc = (size_t)e->vis.clip_state.max_batch;
    size_t Bi = (size_t)e->vis.sam_state.max_images;
    size_t G = (size_t)e->vis.sam.cfg.grid, SS = LISA_VISION_SAM_SIZE;
    e->step_embd = malloc(T * C * sizeof(float));
    e->step_hid = malloc(T * C * sizeof(float));
    e->step_seq = malloc(T * sizeof(int32_t));
    e->step_pos = malloc(T * sizeof(int32_t));
    e->step_rows = malloc(T * sizeof(int32_t));
    e->step_next = malloc(T * sizeof(int32_t));
    e->step_row_req = malloc(T * sizeof *e->step_row_req);
    e->step_row_seg = malloc(T * sizeof(int));
    e->step_tok = malloc(S * sizeof(int32_t));
    e->step_tok_embd = malloc(S * C * sizeof(float));
    e->clip_pix = malloc(Bc * 3 * cs * cs * sizeof(float));
    e->clip_out = malloc(Bc * N * C * sizeof(float));
    e->sam_chw = malloc(Bi * 3 * SS * SS * sizeof(float));
    e->sam_emb = malloc(Bi * G * G * (size_t)e->vis.sam.cfg.dim * sizeof(float));
    if (!e->step_embd || !e->step_hid || !e->step_seq || !e->step_pos || !e->step_rows ||
        !e->step_next || !e->step_row_req || !e->step_row_seg || !e->step_tok ||
        !e->step_tok_embd || !e->clip_pix || !e->clip_out || !e->sam_chw || !e->sam_emb)
        return lisa_error_set(LISA_ERR_NOMEM, "engine: out of memory reserving step buffers");
    return LISA_OK;
}

lisa_status lisa_engine_init(lisa_engine **out, const lisa_engine_params *params) {
    lisa_engine *e = calloc(1, sizeof *e);
    if (!e) return lisa_error_set(LISA_ERR_NOMEM, "engine: out of memory");
    e->p = *params;
    if (e->p.max_batch <= 0) e->p.max_batch = 8;
    if (e->p.max_batch > LISA_ENGINE_MAX_SLOTS) {
        free(e);
        return lisa_error_set(LISA_ERR_ARG, "engine: at most %d slots (asked for %d)",
                              LISA_ENGINE_MAX_SLOTS, params->max_batch);
    }
    if (e->p.token_budget <= 0) e->p.token_budget = LISA_ENGINE_BUDGET;
    if (e->p.token_budget < e->p.max_batch) e->p.token_budget = e->p.max_batch;
    if (e->p.cache_bytes == 0) e->p.cache_bytes = LISA_ENGINE_CACHE_BYTES;
    lisa_image_cache_init(&e->cache, e->p.cache_bytes);
    if (e->p.max_new_tokens <= 0) e->p.max_new_tokens = 512;
    if (e->p.max_ctx <= 0) e->p.max_ctx = 1024;
    const char *dir = e->p.model_dir;
    lisa_backend_params bp = e->p.switches;
    bp.kind = e->p.backend;
    bp.device = e->p.device;
    bp.threads = e->p.threads;
    lisa_status st = lisa_backend_init_params(&e->be, &bp);
    if (st == LISA_OK) st = lisa_prompt_tokenizer_load(dir, &e->tok, &e->seg_id);
    if (st == LISA_OK) st = lisa_llama_model_load_quant(&e->llm, dir, e->be, e->p.dtype, e->p.quantize, 0, -1);
    e->have_llm = st == LISA_OK;
    /* Every id the tokenizer makes must have an embedding row and every row
     * a piece to print, so the two sizes must agree exactly. */
    if (st == LISA_OK && lisa_tokenizer_n_vocab(e->tok) != e->llm.cfg.vocab_size)
        st = lisa_error_set(LISA_ERR_FORMAT,
                            "%s: the tokenizer has %d tokens (tokenizer.model + added_tokens.json) "
                            "but config.json vocab_size is %d",
                            dir, lisa_tokenizer_n_vocab(e->tok), e->llm.cfg.vocab_size);
    /* Generation stops at eos_token_id: one that is no token would never
     * come, and every answer would run to max_new_tokens. */
    if (st == LISA_OK && (e->llm.cfg.eos_token_id < 0 ||
                          e->llm.cfg.eos_token_id >= e->llm.cfg.vocab_size))
        st = lisa_error_set(LISA_ERR_FORMAT,
                            "%s: config.json eos_token_id %d is not a token id (vocab_size %d)",
                            dir, e->llm.cfg.eos_token_id, e->llm.cfg.vocab_size);
    if (st == LISA_OK && e->p.max_ctx > e->llm.cfg.max_position_embeddings)
        e->p.max_ctx = e->llm.cfg.max_position_embeddings;
    if (st == LISA_OK)
        st = lisa_llama_state_init(&e->llm_state, &e->llm, e->p.max_batch, e->p.max_ctx,
                                   e->p.token_budget, e->p.token_budget);
    e->have_llm_state = st == LISA_OK;
    if (st == LISA_OK)
        st = lisa_vision_load(&e->vis, dir, e->be, e->p.dtype, e->p.max_batch, e->llm.cfg.hidden_size);
    e->have_vis = st == LISA_OK;
    if (st == LISA_OK) {
        lisa_sched_params sp = {e->p.max_batch, e->p.max_ctx, e->p.token_budget, e->p.policy, 0};
        st = lisa_sched_init(&e->sched, &sp);
    }
    if (st == LISA_OK) st = engine_scratch_init(e);
    if (st != LISA_OK) {
        lisa_engine_free(e);
        return st;
    }
    *out = e;
    return LISA_OK;
}

void lisa_engine_free(lisa_engine *e) {
    if (!e) return;
    while (e->live_head) {
        engine_req *q = e->live_head;
        req_unlink(e, q);
        req_free(q);
    }
    for (int i = 0; i < e->n_done; i++) lisa_response_free(&e->done[(e->done_head + i) % e->cap_done]);
    free(e->done);
    lisa_sched_free(e->sched);
    lisa_image_cache_free(&e->cache);
    free(e->step_embd);
    free(e->step_hid);
    free(e->step_seq);
    free(e->step_pos);
    free(e->step_rows);
    free(e->step_next);
    free(e->step_row_req);
    free(e->step_row_seg);
    free(e->step_tok);
    free(e->step_tok_embd);
    free(e->clip_pix);
    free(e->clip_out);
    free(e->sam_chw);
    free(e->sam_emb);
    if (e->have_vis) lisa_vision_free(&e->vis);
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
    free(r->id);
    lisa_image_free(&r->image);
    memset(r, 0, sizeof *r);
}


/* Grows the finished ring to hold need responses. */
static lisa_status engine_done_reserve(lisa_engine *e, int need) {
    if (need <= e->cap_done) return LISA_OK;
    int cap = e->cap_done ? e->cap_done : 16;
    while (cap < need) cap *= 2;
    lisa_response *d = malloc((size_t)cap * sizeof *d);
    if (!d) return lisa_error_set(LISA_ERR_NOMEM, "engine: out of memory");
    for (int i = 0; i < e->n_done; i++) d[i] = e->done[(e->done_head + i) % e->cap_done];
    free(e->done);
    e->done = d;
    e->done_head = 0;
    e->cap_done = cap;
    return LISA_OK;
}

/* Appends a response to the finished ring (the response is moved). Submit
 * reserved room for every live request, so this does not allocate: a
 * finished request always has its response. */
static lisa_status engine_push_done(lisa_engine *e, lisa_response *r) {
    LISA_TRY(engine_done_reserve(e, e->n_done + 1));
    e->done[(e->done_head + e->n_done) % e->cap_done] = *r;
    e->n_done++;
    return LISA_OK;
}

/* Ends q: takes it out of the scheduler and the live list, finishes r (its
 * response, filled by the caller) and frees q. */
static lisa_status engine_finish(lisa_engine *e, engine_req *q, lisa_response *r) {
    if (q->in_sched) lisa_sched_finish(e->sched, q->handle);
    q->in_sched = 0;
    r->handle = q->handle;
    r->id = q->id;
    q->id = NULL;
    if (q->img.rgb && r->status == LISA_OK) {
        r->w = q->img.w;
        r->h = q->img.h;
    }
    if (e->p.keep_images && r->status == LISA_OK) {
        r->image = q->img;
        memset(&q->img, 0, sizeof q->img);
    }
    req_unlink(e, q);
    req_free(q);
    lisa_status st = engine_push_done(e, r);
    if (st != LISA_OK) lisa_response_free(r);
    return st;
}

static lisa_status engine_finish_failed(lisa_engine *e, engine_req *q, lisa_status why,
                                        const char *msg) {
    lisa_response r;
    memset(&r, 0, sizeof r);
    response_fail(&r, why, msg);
    return engine_finish(e, q, &r);
}

/* After a failed step: every live request fails with its message. A
 * backend failure ends the engine (later submissions fail at once); an
 * allocation failure does not: what the step left half done belongs to
 * the requests it fails (retryable in a worker), and the engine serves on.
 * LISA_OK after an allocation failure, else st. */
static lisa_status engine_fail_all(lisa_engine *e, lisa_status st) {
    char msg[sizeof e->failed_msg];
    snprintf(msg, sizeof msg, "%s", lisa_error_get());
    if (st != LISA_ERR_NOMEM) {
        e->failed = st;
        snprintf(e->failed_msg, sizeof e->failed_msg, "%s", msg);
    }
    while (e->live_head) engine_finish_failed(e, e->live_head, st, msg);
    lisa_error_set(st, "%s", msg);
    return st == LISA_ERR_NOMEM ? LISA_OK : st;
}

/* --- submit, cancel, take --- */

static char *engine_strdup(const char *s) { return s ? strdup(s) : NULL; }

lisa_status lisa_engine_submit(lisa_engine *e, const lisa_request *r, int64_t *handle) {
    LISA_TRY(engine_done_reserve(e, e->n_live + e->n_done + 1));
    engine_req *q = calloc(1, sizeof *q);
    if (!q) return lisa_error_set(LISA_ERR_NOMEM, "engine: out of memory");
    q->handle = e->next_handle++;
    if (handle) *handle = q->handle;
    q->id = engine_strdup(r->id);
    q->label = engine_strdup(r->image_path);
    q->teacher_forced = r->answer && *r->answer;
    q->answer = q->teacher_forced ? strdup(r->answer) : NULL;
    q->max_new = r->max_new_tokens > 0 ? r->max_new_tokens : e->p.max_new_tokens;
    q->prev = e->live_tail;
    if (e->live_tail) e->live_tail->next = q;
    else e->live_head = q;
    e->live_tail = q;
    e->n_live++;
    if ((r->id && !q->id) || (r->image_path && !q->label) || (q->teacher_forced && !q->answer))
        return engine_finish_failed(e, q, LISA_ERR_NOMEM, "engine: out of memory");
    if (e->failed) return engine_finish_failed(e, q, e->failed, e->failed_msg);

    lisa_status st = LISA_OK;
    if (r->image && r->image_size) {
        q->bytes = malloc(r->image_size);
        if (!q->bytes) return engine_finish_failed(e, q, LISA_ERR_NOMEM, "engine: out of memory");
        memcpy(q->bytes, r->image, r->image_size);
        q->n_bytes = r->image_size;
    } else if (r->image_path && *r->image_path) {
        st = lisa_image_read_file(r->image_path, &e->p.limits, &q->bytes, &q->n_bytes);
        if (st != LISA_OK) return engine_finish_failed(e, q, st, lisa_error_get());
    } else {
        return engine_finish_failed(e, q, LISA_ERR_ARG, "no image given");
    }
    q->hash = lisa_image_hash(q->bytes, q->n_bytes);
    lisa_prompt_rows rows;
    st = lisa_prompt_rows_make(&rows, e->tok, r->prompt, q->answer, e->vis.n_patches, e->p.max_ctx,
                               e->seg_id, LISA_VISION_MAX_SEG);
    if (st != LISA_OK) return engine_finish_failed(e, q, st, lisa_error_get());
    q->ids = rows.ids;
    q->n_ids = rows.n_ids;
    q->image_pos = rows.image_pos;
    q->L = rows.L;
    q->tf_rows = rows.tf_rows;
    if (q->teacher_forced) {
        q->n_seg = q->cap_seg = rows.n_seg;
        q->seg_hidden = engine_alloc((size_t)q->n_seg * (size_t)e->llm.cfg.hidden_size * sizeof(float));
        if (!q->seg_hidden) return engine_finish_failed(e, q, LISA_ERR_NOMEM, "engine: out of memory");
    } else if (q->max_new < 1) {
        lisa_response res;
        memset(&res, 0, sizeof res);
        res.stop = LISA_STOP_LENGTH;
        res.text = strdup("");
        return engine_finish(e, q, &res);
    }
    st = lisa_sched_add(e->sched, q->handle, q, q->L);
    if (st != LISA_OK) return engine_finish_failed(e, q, st, lisa_error_get());
    q->in_sched = 1;
    return LISA_OK;
}

lisa_status lisa_engine_cancel(lisa_engine *e, int64_t handle) {
    for (engine_req *q = e->live_head; q; q = q->next)
        if (q->handle == handle) {
            q->cancel = 1;
            return LISA_OK;
        }
    return lisa_error_set(LISA_ERR_ARG, "engine: no unfinished request %lld", (long long)handle);
}

int lisa_engine_pending(const lisa_engine *e) { return e->n_live; }

int lisa_engine_take_finished(lisa_engine *e, lisa_response *out, int max) {
    int n = 0;
    while (n < max && e->n_done) {
        out[n++] = e->done[e->done_head];
        e->done_head = (e->done_head + 1) % e->cap_done;
        e->n_done--;
    }
    return n;
}

void lisa_engine_stats_get(const lisa_engine *e, lisa_engine_stats *out) {
    *out = e->stats;
    out->cache_hits = e->cache.hits;
    out->cache_misses = e->cache.misses;
    out->cache_evictions = e->cache.evictions;
}

/* --- admission: image decode, CLIP, splice --- */

/* Prompt embeddings: embed(ids[:p]) ++ feats (N, C) ++ embed(ids[p+1:]). */
static lisa_status engine_splice(lisa_engine *e, engine_req *q, const float *feats) {
    size_t C = (size_t)e->llm.cfg.hidden_size;
    q->embd = malloc((size_t)q->L * C * sizeof(float));
    if (!q->embd) return lisa_error_set(LISA_ERR_NOMEM, "engine: out of memory");
    return lisa_llama_embed_splice(&e->llm, &e->llm_state, q->ids, q->n_ids, q->image_pos, feats,
                                   (size_t)e->vis.n_patches, q->embd);
}

static int same_image(const engine_req *a, const engine_req *b) {
    return lisa_image_bytes_same(a->hash, a->bytes, a->n_bytes, b->hash, b->bytes, b->n_bytes);
}

/* Decodes the images of the requests admitted this step and splices their
 * prompts: CLIP features come from the cache or from batched CLIP passes
 * over the distinct missing images. A request whose image does not decode
 * fails alone (its slot is freed, its item's user cleared). Returns backend
 * and memory errors. */
static lisa_status engine_admit(lisa_engine *e, lisa_sched_item **items, int n) {
    engine_req *adm[LISA_ENGINE_MAX_SLOTS];
    for (int i = 0; i < n; i++) adm[i] = items[i]->user;
    int64_t C = e->llm.cfg.hidden_size, N = e->vis.n_patches;
    size_t feat_n = (size_t)N * (size_t)C;
    int S = e->vis.clip_cfg.image_size, Bc = e->vis.clip_state.max_batch;
    size_t px = 3 * (size_t)S * (size_t)S;
    for (int i = 0; i < n; i++) {
        engine_req *q = adm[i];
        q->admitted = 1;
        lisa_status st = lisa_image_decode(&q->img, q->bytes, q->n_bytes, &e->p.limits);
        if (st != LISA_OK) {
            char msg[512];
            if (q->label) snprintf(msg, sizeof msg, "%s: %s", q->label, lisa_error_get());
            else snprintf(msg, sizeof msg, "%s", lisa_error_get());
            items[i]->user = NULL;  /* the forward skips it */
            /* out of memory is not the image's fault: a worker retries it */
            LISA_TRY(engine_finish_failed(e, q, st == LISA_ERR_NOMEM ? st : LISA_ERR_FORMAT, msg));
            adm[i] = NULL;
            continue;
        }
        lisa_preprocess_sam_size(q->img.h, q->img.w, LISA_VISION_SAM_SIZE, &q->rh, &q->rw);
        lisa_image_entry *ce = lisa_image_cache_find(&e->cache, q->hash, q->bytes, q->n_bytes);
        if (ce && ce->clip) {
            LISA_TRY(engine_splice(e, q, ce->clip));
            adm[i] = NULL;
        }
    }
    /* the rest need CLIP: distinct images, Bc per pass */
    for (int i = 0; i < n;) {
        engine_req *batch[64];
        int nb = 0;
        for (; i < n && nb < Bc; i++) {
            if (!adm[i]) continue;
            int dup = 0;
            for (int b = 0; b < nb && !dup; b++) dup = same_image(batch[b], adm[i]);
            if (dup) continue;
            lisa_preprocessed pp;
            memset(&pp, 0, sizeof pp);
            lisa_status st = lisa_preprocess_clip(&adm[i]->img, S, &pp);
            if (st == LISA_OK) memcpy(e->clip_pix + (size_t)nb * px, pp.chw, px * sizeof(float));
            lisa_preprocessed_free(&pp);
            LISA_TRY(st);
            batch[nb++] = adm[i];
        }
        if (nb == 0) break;
        LISA_TRY(lisa_clip_forward(&e->vis.clip, &e->vis.clip_state, e->clip_pix, nb, NULL));
        LISA_TRY(lisa_clip_project(&e->vis.proj, &e->vis.clip_state, e->clip_out));
        e->stats.clip_passes++;
        e->stats.clip_images += nb;
        for (int b = 0; b < nb; b++) {
            const float *feats = e->clip_out + (size_t)b * feat_n;
            for (int j = 0; j < n; j++)
                if (adm[j] && same_image(adm[j], batch[b])) {
                    if (adm[j] != batch[b]) {
                        LISA_TRY(engine_splice(e, adm[j], feats));
                        adm[j] = NULL;
                    }
                }
            LISA_TRY(engine_splice(e, batch[b], feats));
            lisa_image_cache_store_clip(&e->cache, batch[b]->hash, batch[b]->bytes,
                                        batch[b]->n_bytes, feats, feat_n);
            for (int j = 0; j < n; j++)
                if (adm[j] == batch[b]) adm[j] = NULL;
        }
    }
    return LISA_OK;
}

/* --- the LLM step --- */

/* Records a generated token; decides whether q's generation ends. */
static lisa_status engine_accept(lisa_engine *e, engine_req *q, int32_t tok, const float *h) {
    int64_t C = e->llm.cfg.hidden_size;
    if (q->n_tokens == q->cap_tokens) {
        int cap = q->cap_tokens ? q->cap_tokens * 2 : 64;
        int32_t *t = realloc(q->tokens, (size_t)cap * sizeof *t);
        if (!t) return lisa_error_set(LISA_ERR_NOMEM, "engine: out of memory");
        q->tokens = t;
        q->cap_tokens = cap;
    }
    q->tokens[q->n_tokens++] = tok;
    if (tok == e->seg_id) {
        if (q->n_seg == q->cap_seg) {
            int cap = q->cap_seg ? q->cap_seg * 2 : 4;
            float *s = realloc(q->seg_hidden, (size_t)cap * (size_t)C * sizeof *s);
            if (!s) return lisa_error_set(LISA_ERR_NOMEM, "engine: out of memory");
            q->seg_hidden = s;
            q->cap_seg = cap;
        }
        memcpy(q->seg_hidden + (size_t)q->n_seg++ * (size_t)C, h, (size_t)C * sizeof(float));
        q->wants_sam = 1;
    }
    q->stop = lisa_stop_after(tok, e->p.ignore_eos ? -1 : e->llm.cfg.eos_token_id, q->n_tokens,
                              q->max_new, q->len, e->p.max_ctx);
    q->llm_done = q->stop != LISA_STOP_NONE;
    return LISA_OK;
}

/* One forward over the step's items (requests failed at admission are
 * skipped), then the outputs: generated tokens, teacher-forced [SEG] rows. */
static lisa_status engine_forward(lisa_engine *e, const lisa_sched_step *step) {
    int64_t C = e->llm.cfg.hidden_size;
    size_t row_bytes = (size_t)C * sizeof(float);
    int n = 0, no = 0, nd = 0;
    for (int k = 0; k < step->n_items; k++) {
        const lisa_sched_item *it = &step->items[k];
        engine_req *q = it->user;
        if (!q) continue;  /* failed at admission */
        if (it->kind == LISA_SCHED_DECODE) e->step_tok[nd++] = q->tokens[q->n_tokens - 1];
    }
    if (nd) LISA_TRY(lisa_llama_embed(&e->llm, &e->llm_state, e->step_tok, nd, e->step_tok_embd));
    nd = 0;
    for (int k = 0; k < step->n_items; k++) {
        const lisa_sched_item *it = &step->items[k];
        engine_req *q = it->user;
        if (!q) continue;
        if (it->kind == LISA_SCHED_DECODE) {
            memcpy(e->step_embd + (size_t)n * C, e->step_tok_embd + (size_t)nd++ * C, row_bytes);
            e->step_seq[n] = it->slot;
            e->step_pos[n] = it->pos0;
            e->step_row_req[no] = q;
            e->step_row_seg[no] = -1;
            e->step_rows[no++] = n++;
            e->stats.decode_tokens++;
            continue;
        }
        memcpy(e->step_embd + (size_t)n * C, q->embd + (size_t)it->pos0 * C, (size_t)it->n * row_bytes);
        for (int i = 0; i < it->n; i++) {
            e->step_seq[n + i] = it->slot;
            e->step_pos[n + i] = it->pos0 + i;
        }
        if (q->teacher_forced) {
            for (int j = 0; j < q->n_seg; j++)
                if (q->tf_rows[j] >= it->pos0 && q->tf_rows[j] < it->pos0 + it->n) {
                    e->step_row_req[no] = q;
                    e->step_row_seg[no] = j;
                    e->step_rows[no++] = n + q->tf_rows[j] - it->pos0;
                }
        } else if (it->last_chunk) {
            e->step_row_req[no] = q;
            e->step_row_seg[no] = -1;
            e->step_rows[no++] = n + it->n - 1;
        }
        n += it->n;
        e->stats.prefill_tokens += it->n;
    }
    if (n == 0) return LISA_OK;
    lisa_llama_batch b = {n, NULL, e->step_embd, e->step_seq, e->step_pos, no, e->step_rows};
    LISA_TRY(lisa_llama_forward(&e->llm, &e->llm_state, &b, NULL, e->step_hid, e->step_next));
    e->stats.steps++;
    for (int i = 0; i < no; i++) {
        engine_req *q = e->step_row_req[i];
        const float *h = e->step_hid + (size_t)i * C;
        if (e->step_row_seg[i] >= 0) {
            memcpy(q->seg_hidden + (size_t)e->step_row_seg[i] * C, h, row_bytes);
        } else {
            q->len = e->step_pos[e->step_rows[i]] + 1;
            LISA_TRY(engine_accept(e, q, e->step_next[i], h));
        }
    }
    for (int k = 0; k < step->n_items; k++) {
        const lisa_sched_item *it = &step->items[k];
        engine_req *q = it->user;
        if (!q || it->kind != LISA_SCHED_PREFILL || !it->last_chunk) continue;
        free(q->embd);
        q->embd = NULL;
        if (q->teacher_forced) {
            q->llm_done = 1;
            q->stop = LISA_STOP_EOS;
            q->wants_sam = q->n_seg > 0;
        }
    }
    return LISA_OK;
}

/* --- SAM --- */

/* SAM decoder for q's [SEG] prompts (n_seg, E) in r against the selected
 * embedding, postprocessed to masks of the original size. */
static lisa_status engine_sam_decode(lisa_engine *e, const engine_req *q, lisa_response *r) {
    e->stats.sam_decodes += q->n_seg;
    return lisa_vision_masks(&e->vis, r->seg_embeddings, q->n_seg, q->rh, q->rw, q->img.h, q->img.w,
                             e->keep_lowres, r->masks);
}

/* The response of a request whose generation ended: ids and text; for
 * [SEG]s, text_hidden_fcs and (n_seg) empty masks the SAM step fills. */
lisa_status lisa_response_begin(lisa_response *r, const lisa_tokenizer *tok, const char *answer,
                                int32_t **ids, int n, lisa_stop_reason stop) {
    memset(r, 0, sizeof *r);
    r->stop = stop;
    if (answer) {
        r->text = strdup(answer);
        return r->text ? LISA_OK : lisa_error_set(LISA_ERR_NOMEM, "out of memory");
    }
    r->ids = *ids;
    r->n_ids = n;
    *ids = NULL;
    int n_text = n - (stop == LISA_STOP_EOS ? 1 : 0);
    lisa_status ds = lisa_tokenizer_decode_hf(tok, r->ids, (size_t)(n_text > 0 ? n_text : 0), &r->text);
    if (ds != LISA_OK) response_fail(r, ds, lisa_error_get());
    return LISA_OK;
}

static lisa_status engine_response_begin(lisa_engine *e, engine_req *q, lisa_response *r) {
    LISA_TRY(lisa_response_begin(r, e->tok, q->teacher_forced ? q->answer : NULL, &q->tokens,
                                 q->n_tokens, q->stop));
    if (r->status != LISA_OK || q->n_seg == 0) return LISA_OK;
    r->seg_dim = e->vis.seg_dim;
    r->seg_embeddings = malloc((size_t)q->n_seg * (size_t)e->vis.seg_dim * sizeof(float));
    r->masks = calloc((size_t)q->n_seg, sizeof *r->masks);
    if (!r->seg_embeddings || !r->masks) return lisa_error_set(LISA_ERR_NOMEM, "engine: out of memory");
    return lisa_seg_head_forward(&e->vis.seg_head, q->seg_hidden, q->n_seg, r->seg_embeddings);
}

/* Frees the masks decoded before a failure. */
static void response_drop_masks(lisa_response *r, int n) {
    for (int j = 0; r->masks && j < n; j++) {
        free(r->masks[j].mask);
        free(r->masks[j].lowres);
        r->masks[j].mask = NULL;
        r->masks[j].lowres = NULL;
    }
    r->n_masks = 0;
}

/* Clears the encoder request of every live request on img's image. */
static void engine_sam_served(lisa_engine *e, const engine_req *img) {
    for (engine_req *q = e->live_head; q; q = q->next)
        if (q != img && same_image(q, img)) q->wants_sam = 0;
    ((engine_req *)img)->wants_sam = 0;
}

/* Marks (mark[i] = 1) the finished requests on img's image; returns how
 * many. Marking first lets the caller finish (and free) them, img included. */
static int engine_sam_mark(const engine_req *img, engine_req **fin, int nf, int *mark) {
    int n = 0;
    for (int i = 0; i < nf; i++) {
        mark[i] = fin[i] && same_image(fin[i], img);
        n += mark[i];
    }
    return n;
}

/* Finishes the marked requests: their masks are decoded against the
 * selected embedding when why is LISA_OK, else they fail with why and msg.
 * A decoding failure other than backend or memory fails the request alone. */
static lisa_status engine_sam_finish(lisa_engine *e, engine_req **fin, lisa_response *res, int nf,
                                     const int *mark, lisa_status why, const char *msg) {
    for (int i = 0; i < nf; i++) {
        if (!mark[i]) continue;
        lisa_status st = why;
        if (st == LISA_OK) {
            st = engine_sam_decode(e, fin[i], &res[i]);
            if (st == LISA_ERR_BACKEND || st == LISA_ERR_NOMEM) return st;
            msg = lisa_error_get();
        }
        if (st != LISA_OK) {
            response_drop_masks(&res[i], fin[i]->n_seg);
            response_fail(&res[i], st, msg);
        } else {
            res[i].n_masks = fin[i]->n_seg;
        }
        engine_req *q = fin[i];
        fin[i] = NULL;
        LISA_TRY(engine_finish(e, q, &res[i]));
    }
    return LISA_OK;
}

/* SAM for this step: the image encoder for every image that a request asked
 * for with a [SEG] and the cache lacks (batched, up to max_images per pass),
 * then the mask decoder for the requests whose generation ended. */
static lisa_status engine_sam(lisa_engine *e) {
    size_t cnt = (size_t)(e->n_live ? e->n_live : 1);
    engine_req **fin = calloc(cnt, sizeof *fin), **enc = calloc(cnt, sizeof *enc);
    lisa_response *res = calloc(cnt, sizeof *res);
    int *mark = calloc(cnt, sizeof *mark);
    lisa_status st = fin && enc && res && mark ? LISA_OK
                                               : lisa_error_set(LISA_ERR_NOMEM, "engine: out of memory");
    int k = 0, ne = 0, nf;
    for (engine_req *q = e->live_head; q && st == LISA_OK;) {
        engine_req *next = q->next;
        if (q->llm_done) {
            st = engine_response_begin(e, q, &res[k]);
            if (st != LISA_OK) lisa_response_free(&res[k]); /* q fails with the step */
            else if (res[k].status != LISA_OK || q->n_seg == 0)
                st = engine_finish(e, q, &res[k]);
            else
                fin[k++] = q;
        }
        q = next;
    }
    nf = k;
    /* images to encode: finished requests' first, then those still generating */
    for (int pass = 0; pass < 2 && st == LISA_OK; pass++)
        for (engine_req *q = e->live_head; q; q = q->next) {
            int want = pass == 0 ? q->llm_done && q->n_seg > 0 : !q->llm_done && q->wants_sam;
            int dup = 0;
            for (int j = 0; want && j < ne && !dup; j++) dup = same_image(enc[j], q);
            if (want && !dup) enc[ne++] = q;
        }
    /* cached embeddings */
    for (int j = 0; j < ne && st == LISA_OK; j++) {
        lisa_image_entry *ce = lisa_image_cache_find(&e->cache, enc[j]->hash, enc[j]->bytes,
                                                     enc[j]->n_bytes);
        if (!ce || !ce->sam) continue;
        engine_sam_served(e, enc[j]);
        if (engine_sam_mark(enc[j], fin, nf, mark)) {
            st = lisa_sam_set_embedding(&e->vis.sam, &e->vis.sam_state, ce->sam);
            if (st == LISA_OK) st = engine_sam_finish(e, fin, res, nf, mark, LISA_OK, NULL);
        }
        enc[j] = NULL;
    }
    const int64_t S = LISA_VISION_SAM_SIZE;
    const size_t px = 3 * (size_t)S * (size_t)S;
    size_t emb_n = (size_t)e->vis.sam.cfg.grid * (size_t)e->vis.sam.cfg.grid * (size_t)e->vis.sam.cfg.dim;
    int Bi = e->vis.sam_state.max_images;
    for (int j = 0; j < ne && st == LISA_OK;) {
        engine_req *batch[LISA_VISION_SAM_IMAGES];
        int nb = 0;
        for (; j < ne && nb < Bi && st == LISA_OK; j++) {
            engine_req *q = enc[j];
            if (!q) continue;
            lisa_status ps = LISA_OK;
            if ((int64_t)q->img.w * q->img.h > LISA_VISION_MAX_POSTPROCESS_PIXELS)
                ps = lisa_error_set(LISA_ERR_ARG, "image %dx%d is larger than the %lld pixels "
                                    "masks are reserved for", q->img.w, q->img.h,
                                    (long long)LISA_VISION_MAX_POSTPROCESS_PIXELS);
            lisa_preprocessed pp;
            memset(&pp, 0, sizeof pp);
            if (ps == LISA_OK) ps = lisa_preprocess_sam(&q->img, (int)S, (int)S, &pp);
            if (ps == LISA_OK) {
                memcpy(e->sam_chw + (size_t)nb * px, pp.chw, px * sizeof(float));
                batch[nb++] = q;
            } else if (ps == LISA_ERR_NOMEM) {
                st = ps;
            } else {
                char msg[256];
                snprintf(msg, sizeof msg, "%s", lisa_error_get());
                engine_sam_served(e, q);
                engine_sam_mark(q, fin, nf, mark);
                st = engine_sam_finish(e, fin, res, nf, mark, ps, msg);
            }
            lisa_preprocessed_free(&pp);
        }
        if (st != LISA_OK || nb == 0) continue;
        st = lisa_sam_encode_batch(&e->vis.sam, &e->vis.sam_state, e->sam_chw, nb, e->sam_emb);
        e->stats.sam_passes++;
        e->stats.sam_images += nb;
        for (int b = 0; b < nb && st == LISA_OK; b++) {
            lisa_image_cache_store_sam(&e->cache, batch[b]->hash, batch[b]->bytes, batch[b]->n_bytes,
                                       e->sam_emb + (size_t)b * emb_n, emb_n);
            engine_sam_served(e, batch[b]);
            engine_sam_mark(batch[b], fin, nf, mark);
            st = lisa_sam_select_embedding(&e->vis.sam_state, b);
            if (st == LISA_OK) st = engine_sam_finish(e, fin, res, nf, mark, LISA_OK, NULL);
        }
    }
    for (int i = 0; i < nf; i++)  /* left over only when the step failed */
        if (fin[i]) lisa_response_free(&res[i]);
    free(fin);
    free(enc);
    free(res);
    free(mark);
    return st;
}

/* --- the step --- */

lisa_status lisa_engine_step(lisa_engine *e) {
    if (e->failed) return lisa_error_set(e->failed, "%s", e->failed_msg);
    for (engine_req *q = e->live_head; q;) {
        engine_req *next = q->next;
        if (q->cancel) LISA_TRY(engine_finish_failed(e, q, LISA_ERR_CANCELLED, "cancelled"));
        q = next;
    }
    lisa_sched_step step;
    int ni = lisa_sched_plan(e->sched, &step);
    if (ni == 0) return LISA_OK;
    lisa_sched_item *adm[LISA_ENGINE_MAX_SLOTS];
    int na = 0;
    for (int k = 0; k < ni; k++)
        if (step.items[k].first) adm[na++] = &step.items[k];
    lisa_status st = engine_admit(e, adm, na);
    if (st == LISA_OK) st = engine_forward(e, &step);
    if (st == LISA_OK) st = engine_sam(e);
    if (st != LISA_OK) return engine_fail_all(e, st);
    return LISA_OK;
}

lisa_status lisa_engine_run(lisa_engine *e, const lisa_request *reqs, int n,
                            lisa_response *responses, lisa_engine_progress_fn progress,
                            void *user) {
    memset(responses, 0, (size_t)n * sizeof *responses);
    int64_t base = e->next_handle;
    lisa_status st = LISA_OK;
    int ns = 0, done = 0;
    while (ns < n && st == LISA_OK) {
        st = lisa_engine_submit(e, &reqs[ns], NULL);
        if (st == LISA_OK) ns++;
    }
    for (int i = ns; i < n; i++) {
        responses[i].handle = base + i;
        response_fail(&responses[i], st, "not run: the engine could not record it");
        done++;
    }
    lisa_response r;
    while (done < n) {
        while (lisa_engine_take_finished(e, &r, 1) == 1) {
            int64_t i = r.handle - base;
            if (i >= 0 && i < ns) {
                responses[i] = r;
                done++;
                if (progress) progress(user, done, n);
            } else {
                lisa_response_free(&r);
            }
        }
        if (done == n || lisa_engine_pending(e) == 0) break;
        lisa_status ss = lisa_engine_step(e);
        if (st == LISA_OK) st = ss;
    }
    return st;
}
