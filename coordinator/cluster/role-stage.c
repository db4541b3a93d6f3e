/* role-stage.c: an LLM pipeline stage: layers [bounds[s], bounds[s+1]) of
 * the LLM with their own KV cache (slots x context, as the coordinator's
 * scheduler hands out), run over the micro-batches in the order they come.
 *
 * Stage 1 (s = 0) also holds the embedding table: it keeps the CLIP
 * features the vision rank sends for each admitted request, splices them
 * into the prompt's embeddings at the image placeholder on the request's
 * first chunk (as engine.c does), and embeds decode tokens. A micro-batch
 * whose features have not arrived yet is parked until they do. Stage P
 * also holds the final norm and LM head: it returns the greedy ids to the
 * coordinator and sends the [SEG] rows' final-norm hidden states to the
 * vision rank. Between stages the residual stream (n, C) travels in the
 * model dtype: straight from device memory when MPI is CUDA-aware, through
 * the backend's (pinned) host memory otherwise.
 *
 * Deliberately not here: scheduling (the coordinator's), stop rules,
 * sampling other than greedy. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster-internal.h"
#include "llama.h"

/* A request seen by stage 1: its features until its first chunk, then its
 * prompt rows until its last chunk. */
typedef struct stage_req {
    int64_t handle;
    float *feats;        /* (N, C) */
    int n_feats;
    float *embd;         /* (L, C) */
    int L;
} stage_req;

/* A micro-batch received and not yet run; its activations (stages after
 * the first) are still in MPI's queue from src, taken just before the run. */
typedef struct stage_mb {
    Lisa__Cluster__MicroBatch *m;
    uint8_t *raw;        /* packed m, forwarded to the next stage */
    size_t n_raw;
    int src;
    double t_in;
} stage_mb;

struct stage_role {
    lisa_llama_model model;
    lisa_llama_state state;
    int have_model, have_state;
    int first, last, next_rank, vision_rank;
    int64_t C, T;
    size_t es;                   /* bytes per activation element */
    lisa_tensor x_in, x_out;     /* (T, C) model dtype, backend memory */
    void *io;                    /* (T, C) model dtype, host staging */
    float *embd, *hid;           /* (T, C) host fp32: stage-1 input rows, last-stage [SEG] rows */
    int32_t *seq, *pos, *rows, *next;  /* (T) */
    MPI_Request out_req;         /* CUDA-aware send from x_out still in flight */
    int out_pending;
    stage_mb *q;                 /* FIFO of parked micro-batches */
    int n_q, cap_q;
    stage_req *reqs;
    int n_reqs, cap_reqs;
    int64_t fault_after;         /* tests: fail as a backend would after this many runs (-1: never) */
};

static stage_req *stage_req_find(stage_role *r, int64_t handle) {
    for (int i = 0; i < r->n_reqs; i++)
        if (r->reqs[i].handle == handle) return &r->reqs[i];
    return NULL;
}

static stage_req *stage_req_add(stage_role *r, int64_t handle) {
    stage_req *q = stage_req_find(r, handle);
    if (q) return q;
    if (r->n_reqs == r->cap_reqs) {
        int cap = r->cap_reqs ? 2 * r->cap_reqs : 16;
        stage_req *p = realloc(r->reqs, (size_t)cap * sizeof *p);
        if (!p) return NULL;
        r->reqs = p;
        r->cap_reqs = cap;
    }
    q = &r->reqs[r->n_reqs++];
    memset(q, 0, sizeof *q);
    q->handle = handle;
    return q;
}

static void stage_req_drop(stage_role *r, stage_req *q) {
    free(q->feats);
    free(q->embd);
    *q = r->reqs[--r->n_reqs];
}

lisa_status stage_init(cluster_ctx *x) {
    stage_role *r = calloc(1, sizeof *r);
    if (!r) return lisa_error_set(LISA_ERR_NOMEM, "stage: out of memory");
    x->stg = r;
    const lisa_cluster_config *c = x->cfg;
    int s = x->stage;
    r->first = s == 0;
    r->last = s == c->stages - 1;
    r->next_rank = r->last ? 0 : lisa_cluster_stage_rank(c, s + 1);
    r->vision_rank = lisa_cluster_vision_rank(c);
    /* Fault injection for the failure tests (a GPU fault is hard to order
     * up): LISA_CLUSTER_FAULT="RANK:N" makes rank RANK's stage fail after N
     * micro-batches with LISA_ERR_BACKEND. */
    r->fault_after = -1;
    const char *fault = getenv("LISA_CLUSTER_FAULT");
    int fr = -1;
    long fn = -1;
    if (fault && sscanf(fault, "%d:%ld", &fr, &fn) == 2 && fr == x->rank && fn >= 0) r->fault_after = fn;
    LISA_TRY(lisa_llama_model_load_quant(&r->model, c->model_dir, x->be, x->dtype, x->quant, x->bounds[s],
                                   x->bounds[s + 1]));
    r->have_model = 1;
    r->C = r->model.cfg.hidden_size;
    r->T = c->token_budget;
    LISA_TRY(lisa_llama_state_init(&r->state, &r->model, c->slots, x->max_ctx, (int)r->T,
                                   (int)r->T));
    r->have_state = 1;
    r->es = lisa_dtype_size(r->model.dtype);
    int64_t shape[2] = {r->T, r->C};
    LISA_TRY(lisa_backend_tensor_alloc(x->be, &r->x_in, r->model.dtype, 2, shape));
    LISA_TRY(lisa_backend_tensor_alloc(x->be, &r->x_out, r->model.dtype, 2, shape));
    LISA_TRY(x->be->ops->host_alloc(x->be, (size_t)(r->T * r->C) * r->es, &r->io));
    size_t rows = (size_t)r->T;
    r->embd = malloc(rows * (size_t)r->C * sizeof(float));
    r->hid = malloc(rows * (size_t)r->C * sizeof(float));
    r->seq = malloc(rows * sizeof(int32_t));
    r->pos = malloc(rows * sizeof(int32_t));
    r->rows = malloc(rows * sizeof(int32_t));
    r->next = malloc(rows * sizeof(int32_t));
    if (!r->embd || !r->hid || !r->seq || !r->pos || !r->rows || !r->next)
        return lisa_error_set(LISA_ERR_NOMEM, "stage: out of memory reserving step buffers");
    return LISA_OK;
}

void stage_free(cluster_ctx *x) {
    stage_role *r = x->stg;
    if (!r) return;
    if (r->out_pending) MPI_Wait(&r->out_req, MPI_STATUS_IGNORE);
    for (int i = 0; i < r->n_q; i++) {
        lisa__cluster__micro_batch__free_unpacked(r->q[i].m, NULL);
        free(r->q[i].raw);
    }
    free(r->q);
    while (r->n_reqs) stage_req_drop(r, &r->reqs[0]);
    free(r->reqs);
    if (r->io) x->be->ops->host_free(x->be, r->io);
    if (r->x_in.data) lisa_backend_tensor_free(x->be, &r->x_in);
    if (r->x_out.data) lisa_backend_tensor_free(x->be, &r->x_out);
    free(r->embd);
    free(r->hid);
    free(r->seq);
    free(r->pos);
    free(r->rows);
    free(r->next);
    if (r->have_state) lisa_llama_state_free(&r->state);
    if (r->have_model) lisa_llama_model_free(&r->model);
    free(r);
    x->stg = NULL;
}

lisa_status stage_on_features(cluster_ctx *x, int src, const Lisa__Cluster__Features *m) {
    stage_role *r = x->stg;
    size_t n = (size_t)m->n * (size_t)m->dim;
    if (m->dim != r->C || m->n <= 0)
        return lisa_error_set(LISA_ERR_FORMAT, "stage 1: features (%d, %d) for request %lld, the "
                              "LLM is %lld wide", m->n, m->dim, (long long)m->handle,
                              (long long)r->C);
    float *f = malloc(n * sizeof(float));
    if (!f) return lisa_error_set(LISA_ERR_NOMEM, "stage 1: out of memory for features");
    lisa_status st = lisa_transport_recv(&x->tr, src, LISA_TAG_DATA, f, n * sizeof(float));
    stage_req *q = st == LISA_OK ? stage_req_add(r, m->handle) : NULL;
    if (st == LISA_OK && !q) st = lisa_error_set(LISA_ERR_NOMEM, "stage 1: out of memory");
    if (st != LISA_OK) {
        free(f);
        return st;
    }
    free(q->feats);
    q->feats = f;
    q->n_feats = m->n;
    return LISA_OK;
}

lisa_status stage_on_micro_batch(cluster_ctx *x, int src, Lisa__Cluster__MicroBatch *m,
                                 uint8_t *raw, size_t n_raw) {
    stage_role *r = x->stg;
    if (m->n_tokens <= 0 || m->n_tokens > r->T) {
        lisa__cluster__micro_batch__free_unpacked(m, NULL);
        free(raw);
        return lisa_error_set(LISA_ERR_FORMAT, "stage: micro-batch of %d tokens, the budget is %lld",
                              m->n_tokens, (long long)r->T);
    }
    if (r->n_q == r->cap_q) {
        int cap = r->cap_q ? 2 * r->cap_q : 8;
        stage_mb *p = realloc(r->q, (size_t)cap * sizeof *p);
        if (!p) {
            lisa__cluster__micro_batch__free_unpacked(m, NULL);
            free(raw);
            return lisa_error_set(LISA_ERR_NOMEM, "stage: out of memory");
        }
        r->q = p;
        r->cap_q = cap;
    }
    r->q[r->n_q++] = (stage_mb){m, raw, n_raw, src, cluster_now()};
    return LISA_OK;
}

/* Stage 1: the prompt rows (L, C) of a request on its first chunk:
 * embed(ids[:p]) ++ features (N, C) ++ embed(ids[p+1:]). */
static lisa_status stage_splice(stage_role *r, stage_req *q, const Lisa__Cluster__Item *it) {
    size_t p = (size_t)it->image_pos, n_ids = it->n_prompt_ids, C = (size_t)r->C;
    size_t N = (size_t)q->n_feats;
    if (p >= n_ids)
        return lisa_error_set(LISA_ERR_FORMAT, "stage 1: image position %zu of a %zu-id prompt", p,
                              n_ids);
    q->L = (int)(n_ids - 1 + N);
    free(q->embd);
    q->embd = malloc((size_t)q->L * C * sizeof(float));
    if (!q->embd) return lisa_error_set(LISA_ERR_NOMEM, "stage 1: out of memory");
    LISA_TRY(lisa_llama_embed_splice(&r->model, &r->state, it->prompt_ids, n_ids, p, q->feats, N,
                                     q->embd));
    free(q->feats);
    q->feats = NULL;
    return LISA_OK;
}

/* Stage 1 can run m once every request starting in it has its features. */
static int stage_ready(stage_role *r, const Lisa__Cluster__MicroBatch *m) {
    if (!r->first) return 1;
    for (size_t k = 0; k < m->n_items; k++) {
        const Lisa__Cluster__Item *it = m->items[k];
        if (!it->first) continue;
        stage_req *q = stage_req_find(r, it->handle);
        if (!q || !q->feats) return 0;
    }
    return 1;
}

/* Stage 1's input rows into r->embd; seq and pos of every stage. */
static lisa_status stage_inputs(cluster_ctx *x, stage_role *r, const Lisa__Cluster__MicroBatch *m) {
    int n = 0;
    size_t row_bytes = (size_t)r->C * sizeof(float);
    for (size_t k = 0; k < m->n_items; k++) {
        const Lisa__Cluster__Item *it = m->items[k];
        if (it->n <= 0 || n + it->n > m->n_tokens || it->slot < 0 || it->slot >= x->cfg->slots)
            return lisa_error_set(LISA_ERR_FORMAT, "stage: micro-batch %lld item %zu out of range",
                                  (long long)m->id, k);
        for (int i = 0; i < it->n; i++) {
            r->seq[n + i] = it->slot;
            r->pos[n + i] = it->pos0 + i;
        }
        if (r->first) {
            if (it->decode) {
                LISA_TRY(lisa_llama_embed(&r->model, &r->state, &it->token, 1,
                                          r->embd + (size_t)n * r->C));
            } else {
                stage_req *q = stage_req_find(r, it->handle);
                if (q && it->first) LISA_TRY(stage_splice(r, q, it));
                if (!q || !q->embd || it->pos0 + it->n > q->L)
                    return lisa_error_set(LISA_ERR_FORMAT, "stage 1: no prompt rows %d..%d for "
                                          "request %lld", it->pos0, it->pos0 + it->n,
                                          (long long)it->handle);
                memcpy(r->embd + (size_t)n * r->C, q->embd + (size_t)it->pos0 * r->C,
                       (size_t)it->n * row_bytes);
                if (it->last_chunk) stage_req_drop(r, q);
            }
        }
        n += it->n;
    }
    if (n != m->n_tokens)
        return lisa_error_set(LISA_ERR_FORMAT, "stage: micro-batch %lld says %d tokens, its items "
                              "have %d", (long long)m->id, m->n_tokens, n);
    for (size_t i = 0; i < m->n_rows; i++) {
        if (m->rows[i]->row < 0 || m->rows[i]->row >= n)
            return lisa_error_set(LISA_ERR_FORMAT, "stage: micro-batch %lld output row %d of %d",
                                  (long long)m->id, m->rows[i]->row, n);
        r->rows[i] = m->rows[i]->row;
    }
    return LISA_OK;
}

/* The activations of a micro-batch from the previous stage, into x_in. */
static lisa_status stage_take_input(cluster_ctx *x, stage_role *r, const stage_mb *mb,
                                    lisa_tensor *in) {
    size_t nbytes = (size_t)mb->m->n_tokens * (size_t)r->C * r->es;
    if (x->tr.cuda_aware && !x->be->ops->host_memory)
        return lisa_transport_recv(&x->tr, mb->src, LISA_TAG_DATA, in->data, nbytes);
    LISA_TRY(lisa_transport_recv(&x->tr, mb->src, LISA_TAG_DATA, r->io, nbytes));
    LISA_TRY(x->be->ops->copy_to_backend(x->be, in->data, 0, r->io, nbytes));
    return lisa_backend_synchronize(x->be);
}

/* Hands the residual stream (n, C) and the micro-batch on to the next stage. */
static lisa_status stage_send_on(cluster_ctx *x, stage_role *r, stage_mb *mb) {
    size_t nbytes = (size_t)mb->m->n_tokens * (size_t)r->C * r->es;
    uint8_t *raw = mb->raw;
    mb->raw = NULL;
    LISA_TRY(lisa_transport_send(&x->tr, r->next_rank, LISA_TAG_MICRO_BATCH, raw, mb->n_raw));
    LISA_TRY(lisa_backend_synchronize(x->be));
    if (x->tr.cuda_aware && !x->be->ops->host_memory) {
        if (MPI_Isend(r->x_out.data, (int)nbytes, MPI_BYTE, r->next_rank, LISA_TAG_DATA,
                      x->tr.data, &r->out_req) != MPI_SUCCESS)
            return lisa_error_set(LISA_ERR_IO, "stage: sending activations to rank %d failed",
                                  r->next_rank);
        r->out_pending = 1;
        x->tr.bytes_sent += (int64_t)nbytes;
        x->tr.messages_sent++;
        return LISA_OK;
    }
    void *buf = malloc(nbytes);
    if (!buf) return lisa_error_set(LISA_ERR_NOMEM, "stage: out of memory for activations");
    lisa_status st = x->be->ops->copy_to_host(x->be, buf, r->x_out.data, 0, nbytes);
    if (st == LISA_OK) st = lisa_backend_synchronize(x->be);
    if (st != LISA_OK) {
        free(buf);
        return st;
    }
    return lisa_transport_send(&x->tr, r->next_rank, LISA_TAG_DATA, buf, nbytes);
}

/* Stage P: greedy ids to the coordinator, [SEG] hidden states to vision. */
static lisa_status stage_send_results(cluster_ctx *x, stage_role *r, const stage_mb *mb) {
    const Lisa__Cluster__MicroBatch *m = mb->m;
    Lisa__Cluster__TokenResult tr = LISA__CLUSTER__TOKEN_RESULT__INIT;
    tr.id = m->id;
    tr.n_next = m->n_rows;
    tr.next = r->next;
    LISA_TRY(cluster_send_msg(x, 0, LISA_TAG_TOKENS, &tr.base));
    size_t C = (size_t)r->C;
    int any = 0;
    for (size_t i = 0; i < m->n_rows; i++)
        any |= !m->rows[i]->sampled || r->next[i] == m->seg_id;
    if (!any) return LISA_OK;
    /* the final-norm rows in fp32, as lisa_llama_forward gives them */
    size_t nb = m->n_rows * C * r->es;
    LISA_TRY(x->be->ops->copy_to_host(x->be, r->io, r->x_out.data, 0, nb));
    LISA_TRY(lisa_backend_synchronize(x->be));
    lisa_dtype_convert(r->hid, LISA_DTYPE_F32, r->io, r->model.dtype, m->n_rows * C);
    for (size_t i = 0; i < m->n_rows; i++) {
        const Lisa__Cluster__OutRow *o = m->rows[i];
        if (o->sampled && r->next[i] != m->seg_id) continue;
        Lisa__Cluster__SegHidden sh = LISA__CLUSTER__SEG_HIDDEN__INIT;
        sh.handle = o->handle;
        sh.index = o->seg_index;
        LISA_TRY(cluster_send_msg(x, r->vision_rank, LISA_TAG_SEG_HIDDEN, &sh.base));
        LISA_TRY(cluster_send_data(x, r->vision_rank, r->hid + i * C, C * sizeof(float)));
    }
    return LISA_OK;
}

static lisa_status stage_run(cluster_ctx *x, stage_role *r, stage_mb *mb) {
    const Lisa__Cluster__MicroBatch *m = mb->m;
    int n = m->n_tokens, n_out = (int)m->n_rows;
    if (r->last && n_out > r->T)
        return lisa_error_set(LISA_ERR_FORMAT, "stage: %d output rows", n_out);
    if (r->fault_after >= 0 && x->stats.micro_batches >= r->fault_after)
        return lisa_error_set(LISA_ERR_BACKEND, "injected fault after %lld micro-batches "
                              "(LISA_CLUSTER_FAULT)", (long long)r->fault_after);
    LISA_TRY(stage_inputs(x, r, m));
    lisa_tensor in = lisa_tensor_view(r->x_in.data, r->model.dtype, 2, (int64_t[]){n, r->C});
    if (!r->first) LISA_TRY(stage_take_input(x, r, mb, &in));
    if (r->out_pending) {
        MPI_Wait(&r->out_req, MPI_STATUS_IGNORE);
        r->out_pending = 0;
    }
    lisa_llama_batch b = {n, NULL, r->first ? r->embd : NULL, r->seq, r->pos, n_out, r->rows};
    int64_t out_rows = r->last ? n_out : n;
    lisa_tensor out = lisa_tensor_view(r->x_out.data, r->model.dtype, 2,
                                       (int64_t[]){out_rows, r->C});
    double t0 = cluster_now();
    LISA_TRY(lisa_llama_forward_tensors(&r->model, &r->state, &b, r->first ? NULL : &in,
                                        out_rows ? &out : NULL, NULL, r->last ? r->next : NULL));
    LISA_TRY(lisa_backend_synchronize(x->be));
    double t1 = cluster_now();
    cluster_stats *s = &x->stats;
    s->busy_s += t1 - t0;
    if (s->micro_batches == 0 || n < s->min_tokens) s->min_tokens = n;
    if (n > s->max_tokens) s->max_tokens = n;
    s->micro_batches++;
    s->tokens += n;
    if (s->first_in == 0) s->first_in = mb->t_in;
    if (r->last) LISA_TRY(stage_send_results(x, r, mb));
    else LISA_TRY(stage_send_on(x, r, mb));
    s->last_out = cluster_now();
    return LISA_OK;
}

int stage_work(cluster_ctx *x, lisa_status *st) {
    stage_role *r = x->stg;
    if (!r || r->n_q == 0) return 0;
    stage_mb *mb = &r->q[0];
    if (!stage_ready(r, mb->m)) return 0;
    x->stats.wait_s += cluster_now() - mb->t_in;
    *st = stage_run(x, r, mb);
    lisa__cluster__micro_batch__free_unpacked(mb->m, NULL);
    free(mb->raw);
    memmove(r->q, r->q + 1, (size_t)(r->n_q - 1) * sizeof *r->q);
    r->n_q--;
    return 1;
}
