/* role-coord.c: the coordinator (rank 0): takes requests from the job
 * source, tokenizes them (llava_v1 prompts, as engine.c), has the vision
 * rank decode each image and run CLIP, then schedules every admitted request
 * with the engine's scheduler: each plan is one micro-batch, at most M are
 * in the pipeline at once, and a request is in at most one (hold_in_flight),
 * so chunked prefill and decode tokens of many requests flow through the
 * stages together. Greedy ids come back from the last stage; the stop
 * rules, the response text and the teacher-forced [SEG] rows are engine.c's;
 * the masks come back from the vision rank.
 *
 * A job source with none ready now (next() -1: the Redis queue) is asked
 * again on a later pass; its tick() runs on every pass.
 *
 * A bad request (unreadable or corrupt image, empty or too long prompt)
 * fails alone with engine.c's message; a rank failure fails every
 * unfinished request with the rank named (coord_fail_all).
 *
 * Deliberately not here: MPI details (transport.h), model weights. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clip.h"
#include "cluster-internal.h"
#include "image.h"
#include "prompt.h"
#include "scheduler.h"
#include "tokenizer.h"
#include "vision.h"

typedef enum { CREQ_VISION = 0, CREQ_LLM, CREQ_MASKS } creq_state;

typedef struct creq {
    int64_t handle;
    void *tag;                   /* the job source's token */
    char *label;                 /* image path for messages, or NULL */
    uint8_t *bytes;              /* encoded image */
    size_t n_bytes;
    int32_t *ids;                /* prompt ids with the image placeholder */
    size_t n_ids, image_pos;
    int L;                       /* prompt rows with the image expanded to N */
    int teacher_forced, max_new;
    char *answer;
    int *tf_rows;                /* teacher-forced: rows whose outputs predict each [SEG] */
    int n_seg;
    int32_t *tokens;
    int n_tokens, cap_tokens;
    int len;                     /* positions in the KV cache */
    lisa_stop_reason stop;
    int w, h;
    creq_state state;
    int in_sched;
} creq;

/* An output row of a micro-batch in flight. */
typedef struct coord_row {
    creq *q;
    int sampled, pos;
} coord_row;

typedef struct coord_mb {
    int64_t id;
    creq **items;                /* (n_items) the requests in it */
    int *tf_last;                /* (n_items) a teacher-forced prompt's last chunk */
    int n_items;
    coord_row *rows;
    int n_rows;
} coord_mb;

struct coord_role {
    const lisa_cluster_jobs *jobs;
    lisa_tokenizer *tok;
    int32_t seg_id;
    int n_patches, eos, M, window, vision_rank, stage1_rank;
    lisa_sched *sched;
    creq **live;
    int n_live, cap_live;
    coord_mb *mbs;               /* (M) in flight */
    int n_mbs;
    int64_t next_handle, next_mb;
    int source_done, n_done, n_failed;
    int64_t generated;           /* tokens */
};

lisa_status coord_init(cluster_ctx *x, const lisa_cluster_jobs *jobs) {
    coord_role *c = calloc(1, sizeof *c);
    if (!c) return lisa_error_set(LISA_ERR_NOMEM, "coordinator: out of memory");
    x->coord = c;
    const lisa_cluster_config *cfg = x->cfg;
    c->jobs = jobs;
    c->M = cfg->micro_batches > 0 ? cfg->micro_batches : cfg->stages;
    c->window = x->opt->window > 0 ? x->opt->window : 2 * cfg->slots;
    c->eos = x->llm_cfg.eos_token_id;
    c->vision_rank = lisa_cluster_vision_rank(cfg);
    c->stage1_rank = lisa_cluster_stage_rank(cfg, 0);
    c->mbs = calloc((size_t)c->M, sizeof *c->mbs);
    if (!c->mbs) return lisa_error_set(LISA_ERR_NOMEM, "coordinator: out of memory");
    LISA_TRY(lisa_prompt_tokenizer_load(cfg->model_dir, &c->tok, &c->seg_id));
    if (lisa_tokenizer_n_vocab(c->tok) != x->llm_cfg.vocab_size)
        return lisa_error_set(LISA_ERR_FORMAT,
                              "%s: the tokenizer has %d tokens (tokenizer.model + "
                              "added_tokens.json) but config.json vocab_size is %d",
                              cfg->model_dir, lisa_tokenizer_n_vocab(c->tok),
                              x->llm_cfg.vocab_size);
    if (c->eos < 0 || c->eos >= x->llm_cfg.vocab_size)
        return lisa_error_set(LISA_ERR_FORMAT,
                              "%s: config.json eos_token_id %d is not a token id (vocab_size %d)",
                              cfg->model_dir, c->eos, x->llm_cfg.vocab_size);
    lisa_clip_config cc;
    LISA_TRY(lisa_clip_config_load(&cc, cfg->model_dir));
    c->n_patches = lisa_clip_num_patches(&cc);
    lisa_sched_params sp = {cfg->slots, x->max_ctx, cfg->token_budget, LISA_SCHED_CONTINUOUS, 1};
    return lisa_sched_init(&c->sched, &sp);
}

static void creq_free(creq *q) {
    free(q->label);
    free(q->bytes);
    free(q->ids);
    free(q->answer);
    free(q->tf_rows);
    free(q->tokens);
    free(q);
}

static void coord_mb_clear(coord_mb *mb) {
    free(mb->items);
    free(mb->tf_last);
    free(mb->rows);
    memset(mb, 0, sizeof *mb);
}

void coord_free(cluster_ctx *x) {
    coord_role *c = x->coord;
    if (!c) return;
    for (int i = 0; i < c->n_live; i++) creq_free(c->live[i]);
    free(c->live);
    for (int i = 0; i < c->n_mbs; i++) coord_mb_clear(&c->mbs[i]);
    free(c->mbs);
    lisa_sched_free(c->sched);
    lisa_tokenizer_free(c->tok);
    free(c);
    x->coord = NULL;
}

static creq *coord_find(coord_role *c, int64_t handle) {
    for (int i = 0; i < c->n_live; i++)
        if (c->live[i]->handle == handle) return c->live[i];
    return NULL;
}

/* Hands r to the job sink and forgets q. */
static void coord_finish(cluster_ctx *x, creq *q, lisa_response *r) {
    coord_role *c = x->coord;
    if (q->in_sched) lisa_sched_finish(c->sched, q->handle);
    r->handle = q->handle;
    if (r->status == LISA_OK) {
        r->w = q->w;
        r->h = q->h;
        if (x->opt->keep_images &&
            lisa_image_decode(&r->image, q->bytes, q->n_bytes, &x->opt->limits) != LISA_OK)
            memset(&r->image, 0, sizeof r->image);
    }
    if (r->status == LISA_OK) c->n_done++;
    else c->n_failed++;
    c->jobs->done(c->jobs->user, q->tag, r);
    lisa_response_free(r);
    for (int i = 0; i < c->n_live; i++)
        if (c->live[i] == q) {
            c->live[i] = c->live[--c->n_live];
            break;
        }
    creq_free(q);
}

static void coord_finish_failed(cluster_ctx *x, creq *q, lisa_status why, const char *msg) {
    lisa_response r;
    memset(&r, 0, sizeof r);
    r.status = why;
    r.stop = LISA_STOP_ERROR;
    snprintf(r.error, sizeof r.error, "%s", msg);
    coord_finish(x, q, &r);
}

void coord_fail_all(cluster_ctx *x, const char *msg) {
    coord_role *c = x->coord;
    if (!c) return;
    if (c->jobs->failing) c->jobs->failing(c->jobs->user, msg);
    while (c->n_live) coord_finish_failed(x, c->live[c->n_live - 1], LISA_ERR_BACKEND, msg);
    /* the requests the source still has are accounted for too */
    lisa_request rq;
    void *tag = NULL;
    while (!c->source_done) {
        memset(&rq, 0, sizeof rq);
        if (c->jobs->next(c->jobs->user, &rq, &tag) != 1) {
            c->source_done = 1;
            break;
        }
        lisa_response r;
        memset(&r, 0, sizeof r);
        r.handle = c->next_handle++;
        r.status = LISA_ERR_BACKEND;
        r.stop = LISA_STOP_ERROR;
        snprintf(r.error, sizeof r.error, "not run: %s", msg);
        c->n_failed++;
        c->jobs->done(c->jobs->user, tag, &r);
    }
}

int coord_done(const cluster_ctx *x) {
    const coord_role *c = x->coord;
    return c->source_done && c->n_live == 0;
}

int coord_in_flight(const cluster_ctx *x) { return x->coord ? x->coord->n_live : 0; }

void coord_counts(const cluster_ctx *x, int *done, int *failed, int64_t *generated) {
    *done = x->coord ? x->coord->n_done : 0;
    *failed = x->coord ? x->coord->n_failed : 0;
    *generated = x->coord ? x->coord->generated : 0;
}

/* A request in: the checks of lisa_engine_submit, then its image to the
 * vision rank. Request errors finish it at once; the status is for
 * rank-ending failures. */
static lisa_status coord_submit(cluster_ctx *x, const lisa_request *rq, void *tag) {
    coord_role *c = x->coord;
    creq *q = calloc(1, sizeof *q);
    if (!q) return lisa_error_set(LISA_ERR_NOMEM, "coordinator: out of memory");
    if (c->n_live == c->cap_live) {
        int cap = c->cap_live ? 2 * c->cap_live : 32;
        creq **p = realloc(c->live, (size_t)cap * sizeof *p);
        if (!p) {
            free(q);
            return lisa_error_set(LISA_ERR_NOMEM, "coordinator: out of memory");
        }
        c->live = p;
        c->cap_live = cap;
    }
    c->live[c->n_live++] = q;
    q->handle = c->next_handle++;
    q->tag = tag;
    q->label = rq->image_path ? strdup(rq->image_path) : NULL;
    q->answer = rq->answer && *rq->answer ? strdup(rq->answer) : NULL;
    q->teacher_forced = q->answer != NULL;
    q->max_new = rq->max_new_tokens > 0 ? rq->max_new_tokens : x->cfg->max_new_tokens;
    if ((rq->image_path && !q->label) || (rq->answer && *rq->answer && !q->answer)) {
        coord_finish_failed(x, q, LISA_ERR_NOMEM, "coordinator: out of memory");
        return LISA_OK;
    }
    lisa_status st = LISA_OK;
    if (rq->image && rq->image_size) {
        q->bytes = malloc(rq->image_size);
        if (!q->bytes) {
            coord_finish_failed(x, q, LISA_ERR_NOMEM, "coordinator: out of memory");
            return LISA_OK;
        }
        memcpy(q->bytes, rq->image, rq->image_size);
        q->n_bytes = rq->image_size;
    } else if (rq->image_path && *rq->image_path) {
        st = lisa_image_read_file(rq->image_path, &x->opt->limits, &q->bytes, &q->n_bytes);
        if (st != LISA_OK) {
            coord_finish_failed(x, q, st, lisa_error_get());
            return LISA_OK;
        }
    } else {
        coord_finish_failed(x, q, LISA_ERR_ARG, "no image given");
        return LISA_OK;
    }
    lisa_prompt_rows rows;
    st = lisa_prompt_rows_make(&rows, c->tok, rq->prompt, q->answer, c->n_patches, x->max_ctx,
                               c->seg_id, LISA_VISION_MAX_SEG);
    if (st != LISA_OK) {
        coord_finish_failed(x, q, st, lisa_error_get());
        return LISA_OK;
    }
    q->ids = rows.ids;
    q->n_ids = rows.n_ids;
    q->image_pos = rows.image_pos;
    q->L = rows.L;
    q->tf_rows = rows.tf_rows;
    q->n_seg = rows.n_seg;
    if (!q->teacher_forced && q->max_new < 1) {
        lisa_response r;
        memset(&r, 0, sizeof r);
        r.stop = LISA_STOP_LENGTH;
        r.text = strdup("");
        coord_finish(x, q, &r);
        return LISA_OK;
    }
    Lisa__Cluster__VisionPrepare m = LISA__CLUSTER__VISION_PREPARE__INIT;
    m.handle = q->handle;
    m.image.data = q->bytes;
    m.image.len = q->n_bytes;
    m.label = q->label ? q->label : "";
    q->state = CREQ_VISION;
    return cluster_send_msg(x, c->vision_rank, LISA_TAG_VISION_PREPARE, &m.base);
}

lisa_status coord_on_vision_ready(cluster_ctx *x, const Lisa__Cluster__VisionReady *m) {
    coord_role *c = x->coord;
    creq *q = coord_find(c, m->handle);
    if (!q || q->state != CREQ_VISION)
        return lisa_error_set(LISA_ERR_FORMAT, "coordinator: vision-ready for unknown request %lld",
                              (long long)m->handle);
    if (m->status != LISA_OK) {
        coord_finish_failed(x, q, (lisa_status)m->status, m->error);
        return LISA_OK;
    }
    q->w = m->w;
    q->h = m->h;
    q->state = CREQ_LLM;
    lisa_status st = lisa_sched_add(c->sched, q->handle, q, q->L);
    if (st != LISA_OK) {
        /* the image went to the vision rank: free it there */
        Lisa__Cluster__VisionFinish f = LISA__CLUSTER__VISION_FINISH__INIT;
        f.handle = q->handle;
        coord_finish_failed(x, q, st, lisa_error_get());
        return cluster_send_msg(x, c->vision_rank, LISA_TAG_VISION_FINISH, &f.base);
    }
    q->in_sched = 1;
    return LISA_OK;
}

/* q's generation ended: masks from the vision rank when it has [SEG]s,
 * else its response now. */
static lisa_status coord_llm_done(cluster_ctx *x, creq *q) {
    coord_role *c = x->coord;
    lisa_sched_finish(c->sched, q->handle);
    q->in_sched = 0;
    Lisa__Cluster__VisionFinish f = LISA__CLUSTER__VISION_FINISH__INIT;
    f.handle = q->handle;
    f.n_seg = q->n_seg;
    LISA_TRY(cluster_send_msg(x, c->vision_rank, LISA_TAG_VISION_FINISH, &f.base));
    if (q->n_seg > 0) {
        q->state = CREQ_MASKS;
        return LISA_OK;
    }
    lisa_response r;
    LISA_TRY(lisa_response_begin(&r, c->tok, q->teacher_forced ? q->answer : NULL, &q->tokens,
                                 q->n_tokens, q->stop));
    coord_finish(x, q, &r);
    return LISA_OK;
}

/* Records a generated token (engine_accept's stop rules). */
static lisa_status coord_accept(cluster_ctx *x, creq *q, int32_t tok) {
    coord_role *c = x->coord;
    if (q->n_tokens == q->cap_tokens) {
        int cap = q->cap_tokens ? q->cap_tokens * 2 : 64;
        int32_t *t = realloc(q->tokens, (size_t)cap * sizeof *t);
        if (!t) return lisa_error_set(LISA_ERR_NOMEM, "coordinator: out of memory");
        q->tokens = t;
        q->cap_tokens = cap;
    }
    q->tokens[q->n_tokens++] = tok;
    c->generated++;
    if (tok == c->seg_id) q->n_seg++;
    q->stop = lisa_stop_after(tok, c->eos, q->n_tokens, q->max_new, q->len, x->max_ctx);
    return LISA_OK;
}

lisa_status coord_on_tokens(cluster_ctx *x, const Lisa__Cluster__TokenResult *m) {
    coord_role *c = x->coord;
    int k = 0;
    while (k < c->n_mbs && c->mbs[k].id != m->id) k++;
    if (k == c->n_mbs)
        return lisa_error_set(LISA_ERR_FORMAT, "coordinator: tokens for unknown micro-batch %lld",
                              (long long)m->id);
    coord_mb mb = c->mbs[k];
    c->mbs[k] = c->mbs[--c->n_mbs];
    lisa_status st = LISA_OK;
    if ((int)m->n_next != mb.n_rows)
        st = lisa_error_set(LISA_ERR_FORMAT, "coordinator: micro-batch %lld came back with %zu ids "
                            "for %d rows", (long long)m->id, m->n_next, mb.n_rows);
    for (int i = 0; i < mb.n_rows && st == LISA_OK; i++) {
        if (!mb.rows[i].sampled) continue;
        creq *q = mb.rows[i].q;
        q->len = mb.rows[i].pos + 1;
        st = coord_accept(x, q, m->next[i]);
    }
    for (int i = 0; i < mb.n_items && st == LISA_OK; i++) {
        creq *q = mb.items[i];
        if (mb.tf_last[i]) q->stop = LISA_STOP_EOS;
        if (q->stop != LISA_STOP_NONE) st = coord_llm_done(x, q);
        else st = lisa_sched_release(c->sched, q->handle);
    }
    coord_mb_clear(&mb);
    return st;
}

lisa_status coord_on_masks(cluster_ctx *x, const Lisa__Cluster__Masks *m) {
    coord_role *c = x->coord;
    creq *q = coord_find(c, m->handle);
    if (!q || q->state != CREQ_MASKS)
        return lisa_error_set(LISA_ERR_FORMAT, "coordinator: masks for unknown request %lld",
                              (long long)m->handle);
    lisa_response r;
    LISA_TRY(lisa_response_begin(&r, c->tok, q->teacher_forced ? q->answer : NULL, &q->tokens,
                                 q->n_tokens, q->stop));
    size_t pix = (size_t)q->w * (size_t)q->h;
    if (r.status == LISA_OK && m->status != LISA_OK) {
        r.status = (lisa_status)m->status;
        r.stop = LISA_STOP_ERROR;
        snprintf(r.error, sizeof r.error, "%s", m->error);
    } else if (r.status == LISA_OK) {
        int n = q->n_seg;
        int ok = (int)m->n_mask == n && (int)m->n_iou == n && m->seg_dim > 0 &&
                 m->n_seg_embeddings == (size_t)n * (size_t)m->seg_dim;
        for (int j = 0; ok && j < n; j++) ok = m->mask[j].len == pix;
        if (!ok) {
            lisa_response_free(&r);
            return lisa_error_set(LISA_ERR_FORMAT, "coordinator: request %lld: masks message does "
                                  "not match its %d [SEG]s of %dx%d", (long long)q->handle, n,
                                  q->w, q->h);
        }
        r.masks = calloc((size_t)n, sizeof *r.masks);
        r.seg_embeddings = malloc(m->n_seg_embeddings * sizeof(float));
        if (!r.masks || !r.seg_embeddings) {
            lisa_response_free(&r);
            return lisa_error_set(LISA_ERR_NOMEM, "coordinator: out of memory");
        }
        memcpy(r.seg_embeddings, m->seg_embeddings, m->n_seg_embeddings * sizeof(float));
        r.seg_dim = m->seg_dim;
        for (int j = 0; j < n; j++) {
            r.masks[j].mask = malloc(pix);
            if (!r.masks[j].mask) {
                r.n_masks = j;
                lisa_response_free(&r);
                return lisa_error_set(LISA_ERR_NOMEM, "coordinator: out of memory");
            }
            memcpy(r.masks[j].mask, m->mask[j].data, pix);
            r.masks[j].iou = m->iou[j];
        }
        r.n_masks = n;
    }
    coord_finish(x, q, &r);
    return LISA_OK;
}

/* Output row `row` of a micro-batch: the coordinator's record of it in
 * mb->rows and its OutRow for the last stage, both at index *no. */
static void coord_add_row(coord_mb *mb, Lisa__Cluster__OutRow *rows, Lisa__Cluster__OutRow **ptrs,
                          int *no, creq *q, int sampled, int pos, int row, int seg_index) {
    mb->rows[*no] = (coord_row){q, sampled, pos};
    Lisa__Cluster__OutRow *o = &rows[*no];
    lisa__cluster__out_row__init(o);
    o->row = row;
    o->handle = q->handle;
    o->seg_index = seg_index;
    o->sampled = sampled;
    ptrs[(*no)++] = o;
}

/* The next plan as a micro-batch to stage 1 (engine_forward's rows). */
static lisa_status coord_send_plan(cluster_ctx *x, const lisa_sched_step *step) {
    coord_role *c = x->coord;
    int ni = step->n_items;
    coord_mb *mb = &c->mbs[c->n_mbs];
    memset(mb, 0, sizeof *mb);
    mb->id = c->next_mb++;
    mb->items = calloc((size_t)ni, sizeof *mb->items);
    mb->tf_last = calloc((size_t)ni, sizeof *mb->tf_last);
    mb->rows = calloc((size_t)step->n_tokens, sizeof *mb->rows);
    Lisa__Cluster__Item *items = calloc((size_t)ni, sizeof *items);
    Lisa__Cluster__Item **item_ptrs = calloc((size_t)ni, sizeof *item_ptrs);
    Lisa__Cluster__OutRow *rows = calloc((size_t)step->n_tokens, sizeof *rows);
    Lisa__Cluster__OutRow **row_ptrs = calloc((size_t)step->n_tokens, sizeof *row_ptrs);
    lisa_status st = LISA_OK;
    if (!mb->items || !mb->tf_last || !mb->rows || !items || !item_ptrs || !rows || !row_ptrs)
        st = lisa_error_set(LISA_ERR_NOMEM, "coordinator: out of memory");
    int n = 0, no = 0;
    for (int k = 0; k < ni && st == LISA_OK; k++) {
        const lisa_sched_item *it = &step->items[k];
        creq *q = it->user;
        Lisa__Cluster__Item *pi = &items[k];
        lisa__cluster__item__init(pi);
        item_ptrs[k] = pi;
        pi->handle = q->handle;
        pi->slot = it->slot;
        pi->decode = it->kind == LISA_SCHED_DECODE;
        pi->pos0 = it->pos0;
        pi->n = it->n;
        pi->first = it->first;
        pi->last_chunk = it->last_chunk;
        mb->items[k] = q;
        if (pi->decode) {
            pi->token = q->tokens[q->n_tokens - 1];
            coord_add_row(mb, rows, row_ptrs, &no, q, 1, it->pos0, n, q->n_seg);
        } else {
            if (it->first) {
                pi->n_prompt_ids = q->n_ids;
                pi->prompt_ids = q->ids;
                pi->image_pos = (int32_t)q->image_pos;
            }
            if (q->teacher_forced) {
                for (int j = 0; j < q->n_seg; j++)
                    if (q->tf_rows[j] >= it->pos0 && q->tf_rows[j] < it->pos0 + it->n)
                        coord_add_row(mb, rows, row_ptrs, &no, q, 0, q->tf_rows[j],
                                      n + q->tf_rows[j] - it->pos0, j);
                mb->tf_last[k] = it->last_chunk;
            } else if (it->last_chunk) {
                coord_add_row(mb, rows, row_ptrs, &no, q, 1, it->pos0 + it->n - 1, n + it->n - 1,
                              q->n_seg);
            }
        }
        n += it->n;
    }
    mb->n_items = ni;
    mb->n_rows = no;
    if (st == LISA_OK) {
        Lisa__Cluster__MicroBatch m = LISA__CLUSTER__MICRO_BATCH__INIT;
        m.id = mb->id;
        m.n_items = (size_t)ni;
        m.items = item_ptrs;
        m.n_rows = (size_t)no;
        m.rows = row_ptrs;
        m.n_tokens = n;
        m.seg_id = c->seg_id;
        st = cluster_send_msg(x, c->stage1_rank, LISA_TAG_MICRO_BATCH, &m.base);
    }
    free(items);
    free(item_ptrs);
    free(rows);
    free(row_ptrs);
    if (st != LISA_OK) {
        coord_mb_clear(mb);
        return st;
    }
    c->n_mbs++;
    x->stats.micro_batches++;
    x->stats.tokens += n;
    if (x->stats.micro_batches == 1 || n < x->stats.min_tokens) x->stats.min_tokens = n;
    if (n > x->stats.max_tokens) x->stats.max_tokens = n;
    return LISA_OK;
}

int coord_work(cluster_ctx *x, lisa_status *st) {
    coord_role *c = x->coord;
    int did = 0;
    *st = LISA_OK;
    if (c->jobs->tick) c->jobs->tick(c->jobs->user);
    while (!c->source_done && c->n_live < c->window && *st == LISA_OK) {
        lisa_request rq;
        void *tag = NULL;
        memset(&rq, 0, sizeof rq);
        int k = c->jobs->next(c->jobs->user, &rq, &tag);
        if (k == -1) break;  /* none ready now: ask again on a later pass */
        if (k != 1) {
            c->source_done = 1;
            break;
        }
        *st = coord_submit(x, &rq, tag);
        did = 1;
    }
    while (*st == LISA_OK && c->n_mbs < c->M) {
        lisa_sched_step step;
        if (lisa_sched_plan(c->sched, &step) == 0) break;
        *st = coord_send_plan(x, &step);
        did = 1;
    }
    return did;
}
