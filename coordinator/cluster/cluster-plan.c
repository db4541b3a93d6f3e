/* cluster-plan.c: memory sizing and the pipeline simulation behind `lisa
 * cluster plan` (see cluster-plan.h).
 *
 * The simulation is a plain event loop: a binary heap of completion times,
 * one "free at" time per device (work runs first come first served, never
 * preempted), the real scheduler deciding every micro-batch. It models no
 * overlap of a link hop with compute and no coordinator time per step. */
#include "cluster-plan.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "config-file.h"
#include "llama.h"
#include "scheduler.h"
#include "vision.h"

/* Fixed per-process backend memory, as kernels/ allocates it at init: the
 * CUDA backend's cuBLASLt workspace (32 MiB) and attention scratch
 * (16 MiB); the CPU backend's op scratch, 4 MiB per thread plus 4 MiB
 * shared (LLaMA's and the vision models' shapes never grow it). */
#define PLAN_CUDA_BACKEND_BYTES ((size_t)48 << 20)
#define PLAN_CPU_THREAD_BYTES ((size_t)4 << 20)
#define PLAN_CPU_SHARED_BYTES ((size_t)4 << 20)
#define PLAN_GIB 1073741824.0

/* ---- costs -------------------------------------------------------------- */

lisa_status lisa_cluster_plan_costs_load(lisa_cluster_plan_costs *c, const char *path) {
    memset(c, 0, sizeof *c);
    char *text = NULL;
    size_t len = 0;
    LISA_TRY(lisa_config_file_read(path, &text, &len));
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    struct {
        const char *key;
        double *dst;
    } nums[] = {
        {"layer_fixed_s", &c->layer_fixed_s},   {"layer_token_s", &c->layer_token_s},
        {"layer_ctx_s", &c->layer_ctx_s},       {"layer_pair_s", &c->layer_pair_s},
        {"head_fixed_s", &c->head_fixed_s},     {"head_row_s", &c->head_row_s},
        {"link_latency_s", &c->link_latency_s}, {"link_bytes_per_s", &c->link_bytes_per_s},
        {"clip_image_s", &c->clip_image_s},     {"sam_encoder_s", &c->sam_encoder_s},
        {"sam_decoder_s", &c->sam_decoder_s},
    };
    lisa_status st = LISA_OK;
    if (!cJSON_IsObject(root)) st = lisa_error_set(LISA_ERR_FORMAT, "%s: not a JSON object", path);
    const cJSON *v;
    for (v = cJSON_IsObject(root) ? root->child : NULL; v && st == LISA_OK; v = v->next) {
        const char *k = v->string;
        if (k[0] == '_') continue;
        if (!strcmp(k, "device") || !strcmp(k, "source")) {
            char *dst = k[0] == 'd' ? c->device : c->source;
            size_t size = k[0] == 'd' ? sizeof c->device : sizeof c->source;
            if (!cJSON_IsString(v) || strlen(v->valuestring) >= size)
                st = lisa_error_set(LISA_ERR_FORMAT, "%s: \"%s\" must be a string of at most %zu "
                                    "characters", path, k, size - 1);
            else
                memcpy(dst, v->valuestring, strlen(v->valuestring) + 1);
            continue;
        }
        if (!strcmp(k, "hidden_size") || !strcmp(k, "intermediate_size")) {
            if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1 << 24 ||
                v->valuedouble != floor(v->valuedouble))
                st = lisa_error_set(LISA_ERR_FORMAT, "%s: \"%s\" must be a non-negative integer",
                                    path, k);
            else if (k[0] == 'h')
                c->hidden_size = (int)v->valuedouble;
            else
                c->intermediate_size = (int)v->valuedouble;
            continue;
        }
        size_t i;
        for (i = 0; i < sizeof nums / sizeof nums[0]; i++)
            if (!strcmp(k, nums[i].key)) break;
        if (i == sizeof nums / sizeof nums[0])
            st = lisa_error_set(LISA_ERR_FORMAT, "%s: unknown key \"%s\"", path, k);
        else if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0) || isinf(v->valuedouble))
            st = lisa_error_set(LISA_ERR_FORMAT, "%s: \"%s\" must be a non-negative number", path,
                                k);
        else
            *nums[i].dst = v->valuedouble;
    }
    cJSON_Delete(root);
    return st;
}

/* ---- vision sizes ------------------------------------------------------- */

size_t lisa_cluster_plan_clip_params(const lisa_clip_config *c, int layers, int proj_out) {
    size_t C = (size_t)c->hidden_size, I = (size_t)c->intermediate_size,
           P = (size_t)c->patch_size, N = (size_t)(c->image_size / c->patch_size);
    size_t T = N * N + 1;
    size_t layer = 4 * C + 4 * (C * C + C) + (I * C + I) + (C * I + C);
    size_t embed = C + C * 3 * P * P + T * C + 2 * C;
    size_t proj = (size_t)proj_out * C + (size_t)proj_out; /* LISA's linear mm_projector */
    return embed + (size_t)layers * layer + proj;
}

size_t lisa_cluster_plan_sam_params(const lisa_vision_sam_shape *s) {
    size_t D = (size_t)s->embed_dim, p = (size_t)s->patch, G = (size_t)s->grid,
           hd = (size_t)(s->embed_dim / s->num_heads), C = (size_t)s->dim;
    size_t n = D * 3 * p * p + D + G * G * D;
    for (int b = 0; b < s->depth; b++) {
        size_t S = s->global[b] ? G : (size_t)s->window;
        n += 4 * D + (3 * D * D + 3 * D) + (D * D + D) + 2 * (2 * S - 1) * hd + (4 * D * D + 4 * D) +
             (4 * D * D + D);
    }
    n += C * D + 2 * C + C * C * 9 + 2 * C;  /* neck */
    n += C + G * G * C + C;                 /* no_mask_embed, dense PE, Gaussian matrix */
    size_t Ci = C / 2, mlp = (size_t)s->dec_mlp_dim, M = (size_t)s->num_mask_tokens,
           ih = (size_t)s->iou_hidden;
    size_t cross = 3 * (Ci * C + Ci) + C * Ci + C;
    n += (size_t)s->dec_depth * (4 * (C * C + C) + 2 * cross + mlp * C + mlp + C * mlp + C + 8 * C);
    n += cross + 2 * C + C + M * C;         /* final attention and norm, IoU and mask tokens */
    n += C * (C / 4) * 4 + C / 4 + 2 * (C / 4) + (C / 4) * (C / 8) * 4 + C / 8;  /* upscaling */
    n += M * (2 * (C * C + C) + C * (C / 8) + C / 8);  /* hypernetworks */
    n += ih * C + ih + ih * ih + ih + M * ih + M;      /* IoU head */
    return n;
}

/* The vision rank's state, estimated from the buffer lists in clip.h and
 * sam.h at the batch sizes vision.c reserves: CLIP for min(slots, 8)
 * images (residual stream, q/k/v, attention, MLP, projector output), SAM's
 * encoder for min(slots, LISA_VISION_SAM_IMAGES) images (sam.h's formula),
 * its decoder for 4 prompts (streams, upscaled and low-res masks) and the
 * fp32 original-size output of LISA_VISION_MAX_POSTPROCESS_PIXELS. */
static size_t plan_vision_state_bytes(const lisa_cluster_plan_params *p, size_t es) {
    size_t slots = (size_t)p->cfg.slots;
    size_t Bc = slots < 8 ? slots : 8;
    size_t Bi = slots < LISA_VISION_SAM_IMAGES ? slots : LISA_VISION_SAM_IMAGES, B = 4;
    const lisa_clip_config *c = &p->clip;
    size_t S = (size_t)c->image_size, P = (size_t)c->patch_size, N = (S / P) * (S / P);
    size_t T = N + 1, C = (size_t)c->hidden_size, I = (size_t)c->intermediate_size,
           H = (size_t)p->llm.hidden_size;
    size_t clip = Bc * ((3 * S * S + N * 3 * P * P + 6 * T * C + T * I + N * C + 2 * N * H) * es +
                        3 * S * S * 4 + N * (C > H ? C : H) * 4);
    const lisa_vision_sam_shape *s = &p->sam;
    size_t G = (size_t)s->grid, Ss = G * (size_t)s->patch, Ts = G * G, D = (size_t)s->embed_dim,
           Cs = (size_t)s->dim, pp = 3 * (size_t)s->patch * (size_t)s->patch;
    size_t nw = (G + (size_t)s->window - 1) / (size_t)s->window;
    size_t Tw = nw * nw * (size_t)s->window * (size_t)s->window;
    size_t enc = Bi * (3 * Ss * Ss + Ts * (pp > 9 * Cs ? pp : 9 * Cs) + 2 * Ts * D + 9 * Tw * D +
                       4 * Ts * D + 2 * Ts * Cs);
    size_t U = 4 * G, M = (size_t)s->num_mask_tokens;
    size_t dec = B * (7 * Ts * Cs + (2 * G) * (2 * G) * Cs / 4 + U * U * Cs / 8 + M * U * U) +
                 Ss * Ss;
    return clip + (enc + dec) * es + (size_t)LISA_VISION_MAX_POSTPROCESS_PIXELS * 4 + Ts * Cs * 4;
}

/* ---- memory ------------------------------------------------------------- */

void lisa_cluster_plan_params_defaults(lisa_cluster_plan_params *p, const lisa_cluster_config *cfg,
                                       const lisa_llama_config *llm) {
    memset(p, 0, sizeof *p);
    p->cfg = *cfg;
    p->llm = *llm;
    p->dtype = !strcmp(cfg->dtype, "bf16") ? LISA_DTYPE_BF16
               : !strcmp(cfg->dtype, "fp16") ? LISA_DTYPE_F16 : LISA_DTYPE_F32;
    p->weight_dtype = p->dtype;
    p->quant = lisa_cluster_config_quant(cfg);
    int sel = -2;
    if (lisa_vision_clip_preset("l14", &p->clip, &sel) == LISA_OK)
        p->clip_layers = p->clip.num_hidden_layers + 1 + sel;
    lisa_vision_sam_preset("vit_h", &p->sam);
    p->reserve_gb = 1.0;
    p->n_requests = 256;
    p->prompt_tokens = 300;
    p->new_tokens = 30;
}

/* The GPU of rank r: the configuration's map, else its index among the
 * ranks that use one (stages and the vision rank), -1 on the host. */
static int plan_gpu_of(const lisa_cluster_config *c, int r) {
    if (strcmp(c->device, "cuda")) return -1;
    if (c->n_gpu_map) return c->gpu_map[r];
    int k = 0;
    for (int q = 0; q < r; q++)
        if (lisa_cluster_rank_roles(c, q, NULL) & (LISA_CLUSTER_ROLE_STAGE | LISA_CLUSTER_ROLE_VISION))
            k++;
    return (lisa_cluster_rank_roles(c, r, NULL) &
            (LISA_CLUSTER_ROLE_STAGE | LISA_CLUSTER_ROLE_VISION)) ? k : -1;
}

static int plan_device_index(lisa_cluster_plan *plan, int gpu) {
    for (int i = 0; i < plan->n_devices; i++)
        if (plan->devices[i].gpu == gpu) return i;
    lisa_cluster_plan_device *d = &plan->devices[plan->n_devices];
    memset(d, 0, sizeof *d);
    d->gpu = gpu;
    return plan->n_devices++;
}

static void plan_memory(lisa_cluster_plan *plan, const lisa_cluster_plan_params *p) {
    const lisa_cluster_config *c = &p->cfg;
    const lisa_llama_config *m = &p->llm;
    int cuda = !strcmp(c->device, "cuda");
    size_t es = lisa_dtype_size(p->dtype);
    int threads = c->threads > 0 ? c->threads : 1;
    size_t backend = cuda ? PLAN_CUDA_BACKEND_BYTES
                          : (size_t)threads * PLAN_CPU_THREAD_BYTES + PLAN_CPU_SHARED_BYTES;
    plan->n_ranks = lisa_cluster_world_size(c);
    for (int r = 0; r < plan->n_ranks; r++) {
        lisa_cluster_plan_rank *k = &plan->ranks[r];
        memset(k, 0, sizeof *k);
        k->rank = r;
        k->roles = lisa_cluster_rank_roles(c, r, &k->stage);
        k->gpu = plan_gpu_of(c, r);
        k->l0 = k->l1 = -1;
        int works = 0;
        if (k->roles & LISA_CLUSTER_ROLE_STAGE) {
            int s = k->stage;
            k->l0 = plan->bounds[s];
            k->l1 = plan->bounds[s + 1];
            k->weight_bytes = lisa_llama_model_bytes_quant(m, p->weight_dtype, p->quant, k->l0,
                                                           k->l1);
            k->kv_bytes = lisa_llama_kv_bytes(m, p->dtype, k->l0, k->l1, c->slots, c->max_ctx);
            /* as role-stage.c sizes its state: every row of a micro-batch may
             * be an output row */
            k->scratch_bytes = lisa_llama_state_bytes(m, p->dtype, k->l0, k->l1, c->slots,
                                                      c->max_ctx, c->token_budget,
                                                      c->token_budget) -
                               k->kv_bytes;
            /* role-stage.c's x_in and x_out, (budget, C) each */
            k->pipe_bytes = 2 * (size_t)c->token_budget * (size_t)m->hidden_size * es;
            works = 1;
        }
        if (k->roles & LISA_CLUSTER_ROLE_VISION) {
            size_t params = lisa_cluster_plan_clip_params(&p->clip, p->clip_layers, m->hidden_size) +
                            lisa_cluster_plan_sam_params(&p->sam) +
                            (size_t)m->hidden_size * (size_t)m->hidden_size +
                            (size_t)m->hidden_size + (size_t)m->hidden_size * (size_t)p->sam.dim +
                            (size_t)p->sam.dim; /* text_hidden_fcs */
            k->weight_bytes += params * lisa_dtype_size(p->weight_dtype);
            k->scratch_bytes += plan_vision_state_bytes(p, es);
            works = 1;
        }
        if (works) k->backend_bytes = backend;
        k->total_bytes = k->weight_bytes + k->kv_bytes + k->scratch_bytes + k->pipe_bytes +
                         k->backend_bytes;
        lisa_cluster_plan_device *d = &plan->devices[plan_device_index(plan, k->gpu)];
        d->n_ranks++;
        d->bytes += k->total_bytes + (k->gpu >= 0 ? (size_t)(p->reserve_gb * PLAN_GIB) : 0);
    }
    plan->fits = 1;
    for (int i = 0; i < plan->n_devices; i++) {
        lisa_cluster_plan_device *d = &plan->devices[i];
        if (c->device_memory_gb <= 0 || (d->gpu < 0 && !strcmp(c->device, "cuda"))) {
            d->fits = -1; /* unknown, or the host of a GPU job (not what the key sizes) */
            continue;
        }
        d->fits = (double)d->bytes <= c->device_memory_gb * PLAN_GIB;
        if (!d->fits) plan->fits = 0;
    }
}

/* ---- simulation --------------------------------------------------------- */

typedef enum { EV_CLIP, EV_STAGE, EV_SAM_ENCODER, EV_SAM_DECODER } plan_ev_kind;

typedef struct {
    double t;
    long seq;         /* ties in time: in the order they were made */
    plan_ev_kind kind;
    int arg, stage;   /* request (CLIP, SAM) or micro-batch slot (STAGE) */
} plan_event;

typedef struct {
    plan_event *a;
    int n, cap;
    long seq;
} plan_heap;

static int plan_ev_less(const plan_event *x, const plan_event *y) {
    return x->t < y->t || (x->t == y->t && x->seq < y->seq);
}

static lisa_status plan_heap_push(plan_heap *h, double t, plan_ev_kind kind, int arg, int stage) {
    if (h->n == h->cap) {
        int cap = h->cap ? 2 * h->cap : 256;
        plan_event *a = realloc(h->a, (size_t)cap * sizeof *a);
        if (!a) return lisa_error_set(LISA_ERR_NOMEM, "plan: out of memory");
        h->a = a;
        h->cap = cap;
    }
    int i = h->n++;
    plan_event e = {t, h->seq++, kind, arg, stage};
    while (i > 0 && plan_ev_less(&e, &h->a[(i - 1) / 2])) {
        h->a[i] = h->a[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->a[i] = e;
    return LISA_OK;
}

static plan_event plan_heap_pop(plan_heap *h) {
    plan_event top = h->a[0], last = h->a[--h->n];
    int i = 0;
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        const plan_event *mv = &last;
        if (l < h->n && plan_ev_less(&h->a[l], mv)) {
            m = l;
            mv = &h->a[l];
        }
        if (r < h->n && plan_ev_less(&h->a[r], mv)) m = r;
        if (m == i) break;
        h->a[i] = h->a[m];
        i = m;
    }
    if (h->n) h->a[i] = last;
    return top;
}

typedef struct {
    int active;
    int n_items, n_tokens, n_out;
    double ctx, pairs;       /* positions read, (token, position) pairs */
    lisa_sched_item *items;  /* (slots) */
} plan_mb;

/* Time is booked on compute resources: one per GPU, and one per rank
 * that runs on the host (each rank has its own cores). */
typedef struct {
    const lisa_cluster_plan_params *p;
    const lisa_cluster_plan_costs *k;
    lisa_cluster_plan *plan;
    lisa_sched *sched;
    plan_heap heap;
    plan_mb *mbs;            /* (M) */
    int in_flight;
    int *generated;          /* (N) */
    int *encoded, *answered; /* (N): SAM embedding ready; answer complete */
    double *t_start, *t_done;  /* (N) */
    int next_req, n_done;
    int rank_res[LISA_CLUSTER_MAX_RANKS];
    double res_free[LISA_CLUSTER_MAX_RANKS];
    double sum_tokens, sum_items;
} plan_sim;

/* Books `dur` seconds of rank r's resource from `now` (first come first
 * served) and queues the completion event. */
static lisa_status plan_run(plan_sim *s, double now, int r, double dur, plan_ev_kind kind, int arg,
                            int stage) {
    int d = s->rank_res[r];
    double start = now > s->res_free[d] ? now : s->res_free[d];
    s->res_free[d] = start + dur;
    s->plan->ranks[r].busy_s += dur;
    return plan_heap_push(&s->heap, start + dur, kind, arg, stage);
}

static double plan_stage_cost(const plan_sim *s, const plan_mb *mb, int stage) {
    const lisa_cluster_plan_costs *k = s->k;
    const lisa_cluster_plan *plan = s->plan;
    int nl = plan->bounds[stage + 1] - plan->bounds[stage];
    double t = nl * (k->layer_fixed_s + k->layer_token_s * mb->n_tokens + k->layer_ctx_s * mb->ctx +
                     k->layer_pair_s * mb->pairs);
    if (stage == s->p->cfg.stages - 1) t += k->head_fixed_s + k->head_row_s * mb->n_out;
    if (stage > 0) {
        double bytes = (double)mb->n_tokens * s->p->llm.hidden_size * lisa_dtype_size(s->p->dtype);
        t += k->link_latency_s + (k->link_bytes_per_s > 0 ? bytes / k->link_bytes_per_s : 0);
    }
    return t;
}

/* Plans micro-batches while fewer than M are in flight and work is ready. */
static lisa_status plan_fill(plan_sim *s, double now) {
    int M = s->p->cfg.micro_batches;
    while (s->in_flight < M) {
        lisa_sched_step step;
        if (lisa_sched_plan(s->sched, &step) == 0) break;
        int slot = 0;
        while (s->mbs[slot].active) slot++;
        plan_mb *mb = &s->mbs[slot];
        mb->active = 1;
        mb->n_items = step.n_items;
        mb->n_tokens = step.n_tokens;
        mb->n_out = 0;
        mb->ctx = mb->pairs = 0;
        for (int i = 0; i < step.n_items; i++) {
            const lisa_sched_item *it = &step.items[i];
            mb->items[i] = *it;
            mb->n_out += it->kind == LISA_SCHED_DECODE || it->last_chunk;
            mb->ctx += it->pos0 + it->n;
            mb->pairs += (double)it->n * it->pos0 + 0.5 * (double)it->n * (it->n + 1);
        }
        s->in_flight++;
        s->plan->micro_batches++;
        s->sum_tokens += step.n_tokens;
        s->sum_items += step.n_items;
        LISA_TRY(plan_run(s, now, lisa_cluster_stage_rank(&s->p->cfg, 0),
                          plan_stage_cost(s, mb, 0), EV_STAGE, slot, 0));
    }
    return LISA_OK;
}

/* The next request enters the job: its image goes to CLIP. */
static lisa_status plan_admit(plan_sim *s, double now) {
    if (s->next_req >= s->p->n_requests) return LISA_OK;
    int r = s->next_req++;
    s->t_start[r] = now;
    return plan_run(s, now, lisa_cluster_vision_rank(&s->p->cfg), s->k->clip_image_s, EV_CLIP, r, 0);
}

/* A micro-batch came back from the last stage: tokens are counted,
 * finished requests go to the mask decoder (once their image is encoded),
 * the rest may be planned again. */
static lisa_status plan_return(plan_sim *s, double now, plan_mb *mb) {
    int G = s->p->new_tokens;
    for (int i = 0; i < mb->n_items; i++) {
        const lisa_sched_item *it = &mb->items[i];
        int r = (int)it->id;
        if (it->kind == LISA_SCHED_DECODE || it->last_chunk) s->generated[r]++;
        if (s->generated[r] >= G) {
            LISA_TRY(lisa_sched_finish(s->sched, it->id));
            s->answered[r] = 1;
            if (s->encoded[r])
                LISA_TRY(plan_run(s, now, lisa_cluster_vision_rank(&s->p->cfg),
                                  s->k->sam_decoder_s, EV_SAM_DECODER, r, 0));
        } else {
            LISA_TRY(lisa_sched_release(s->sched, it->id));
        }
    }
    mb->active = 0;
    s->in_flight--;
    return plan_fill(s, now);
}

static int plan_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static lisa_status plan_events(plan_sim *s) {
    const lisa_cluster_config *c = &s->p->cfg;
    int W = s->p->window > 0 ? s->p->window : 2 * c->slots;
    for (int i = 0; i < W; i++) LISA_TRY(plan_admit(s, 0));
    while (s->heap.n) {
        plan_event e = plan_heap_pop(&s->heap);
        s->plan->makespan_s = e.t;
        if (e.kind == EV_CLIP) {
            /* the prompt can start; SAM encodes the image meanwhile */
            LISA_TRY(lisa_sched_add(s->sched, e.arg, NULL, s->p->prompt_tokens));
            LISA_TRY(plan_run(s, e.t, lisa_cluster_vision_rank(c), s->k->sam_encoder_s,
                              EV_SAM_ENCODER, e.arg, 0));
            LISA_TRY(plan_fill(s, e.t));
        } else if (e.kind == EV_SAM_ENCODER) {
            s->encoded[e.arg] = 1;
            if (s->answered[e.arg])
                LISA_TRY(plan_run(s, e.t, lisa_cluster_vision_rank(c), s->k->sam_decoder_s,
                                  EV_SAM_DECODER, e.arg, 0));
        } else if (e.kind == EV_STAGE && e.stage + 1 < c->stages) {
            LISA_TRY(plan_run(s, e.t, lisa_cluster_stage_rank(c, e.stage + 1),
                              plan_stage_cost(s, &s->mbs[e.arg], e.stage + 1), EV_STAGE, e.arg,
                              e.stage + 1));
        } else if (e.kind == EV_STAGE) {
            LISA_TRY(plan_return(s, e.t, &s->mbs[e.arg]));
        } else {
            s->t_done[e.arg] = e.t;
            s->n_done++;
            LISA_TRY(plan_admit(s, e.t));
        }
    }
    if (s->n_done != s->p->n_requests)
        return lisa_error_set(LISA_ERR_ARG, "plan: the simulation stalled with %d of %d requests "
                              "done", s->n_done, s->p->n_requests);
    return LISA_OK;
}

/* The simulated figures from a finished run. */
static void plan_summarise(plan_sim *s) {
    lisa_cluster_plan *plan = s->plan;
    const lisa_cluster_plan_params *p = s->p;
    int N = p->n_requests;
    double T = plan->makespan_s > 0 ? plan->makespan_s : 1e-30;
    plan->simulated = 1;
    plan->requests_per_s = N / T;
    plan->tokens_per_s = (double)N * p->new_tokens / T;
    plan->prompt_tokens_per_s = (double)N * p->prompt_tokens / T;
    for (int r = 0; r < plan->n_ranks; r++) {
        plan->ranks[r].utilisation = plan->ranks[r].busy_s / T;
        if (plan->ranks[r].gpu >= 0)
            plan->devices[plan_device_index(plan, plan->ranks[r].gpu)].busy_s +=
                plan->ranks[r].busy_s;
    }
    for (int d = 0; d < plan->n_devices; d++)
        plan->devices[d].utilisation = plan->devices[d].gpu >= 0 ? plan->devices[d].busy_s / T : 0;
    for (int r = 0; r < N; r++) s->t_done[r] -= s->t_start[r];
    qsort(s->t_done, (size_t)N, sizeof *s->t_done, plan_cmp_double);
    plan->latency_p50_s = s->t_done[(N - 1) / 2];
    plan->latency_p95_s = s->t_done[(int)ceil(0.95 * N) - 1];
    plan->mean_tokens = plan->micro_batches ? s->sum_tokens / (double)plan->micro_batches : 0;
    plan->mean_items = plan->micro_batches ? s->sum_items / (double)plan->micro_batches : 0;
}

static lisa_status plan_simulate(lisa_cluster_plan *plan, const lisa_cluster_plan_params *p,
                                 const lisa_cluster_plan_costs *k) {
    const lisa_cluster_config *c = &p->cfg;
    plan_sim s;
    memset(&s, 0, sizeof s);
    s.p = p;
    s.k = k;
    s.plan = plan;
    int N = p->n_requests, M = c->micro_batches;
    /* resources: GPUs by index of first appearance, host ranks one each */
    int n_res = 0, res_gpu[LISA_CLUSTER_MAX_RANKS];
    for (int r = 0; r < plan->n_ranks; r++) {
        int g = plan->ranks[r].gpu, i = 0;
        while (g >= 0 && i < n_res && res_gpu[i] != g) i++;
        if (g < 0 || i == n_res) res_gpu[n_res++] = g;
        s.rank_res[r] = g < 0 ? n_res - 1 : i;
    }
    lisa_sched_params sp = {c->slots, c->max_ctx, c->token_budget, LISA_SCHED_CONTINUOUS, 1};
    lisa_status st = lisa_sched_init(&s.sched, &sp);
    if (st != LISA_OK) return st;
    s.mbs = calloc((size_t)M, sizeof *s.mbs);
    s.generated = calloc((size_t)N, sizeof *s.generated);
    s.encoded = calloc((size_t)N, sizeof *s.encoded);
    s.answered = calloc((size_t)N, sizeof *s.answered);
    s.t_start = calloc((size_t)N, sizeof *s.t_start);
    s.t_done = calloc((size_t)N, sizeof *s.t_done);
    int ok = s.mbs && s.generated && s.encoded && s.answered && s.t_start && s.t_done;
    for (int i = 0; ok && i < M; i++)
        ok = (s.mbs[i].items = calloc((size_t)c->slots, sizeof *s.mbs[i].items)) != NULL;
    st = ok ? plan_events(&s) : lisa_error_set(LISA_ERR_NOMEM, "plan: out of memory");
    if (st == LISA_OK) plan_summarise(&s);
    for (int i = 0; s.mbs && i < M; i++) free(s.mbs[i].items);
    free(s.mbs);
    free(s.generated);
    free(s.encoded);
    free(s.answered);
    free(s.t_start);
    free(s.t_done);
    free(s.heap.a);
    lisa_sched_free(s.sched);
    return st;
}

lisa_status lisa_cluster_plan_build(lisa_cluster_plan *plan, const lisa_cluster_plan_params *p,
                                    const lisa_cluster_plan_costs *costs) {
    memset(plan, 0, sizeof *plan);
    const lisa_cluster_config *c = &p->cfg;
    LISA_TRY(lisa_cluster_split_resolve(c, &p->llm, plan->bounds));
    if (p->n_requests < 1 || p->prompt_tokens < 1 || p->new_tokens < 1)
        return lisa_error_set(LISA_ERR_ARG, "plan: requests, prompt tokens and new tokens must be "
                              "at least 1");
    if (p->new_tokens > c->max_new_tokens)
        return lisa_error_set(LISA_ERR_ARG, "plan: %d new tokens is over max_new_tokens %d",
                              p->new_tokens, c->max_new_tokens);
    if (p->prompt_tokens + p->new_tokens > c->max_ctx)
        return lisa_error_set(LISA_ERR_ARG, "plan: %d prompt + %d new tokens do not fit a context "
                              "of %d", p->prompt_tokens, p->new_tokens, c->max_ctx);
    if (c->max_ctx > p->llm.max_position_embeddings && p->llm.max_position_embeddings > 0)
        return lisa_error_set(LISA_ERR_ARG, "plan: context %d is over the model's "
                              "max_position_embeddings %d", c->max_ctx,
                              p->llm.max_position_embeddings);
    plan_memory(plan, p);
    if (!costs) return LISA_OK;
    if ((costs->hidden_size && costs->hidden_size != p->llm.hidden_size) ||
        (costs->intermediate_size && costs->intermediate_size != p->llm.intermediate_size))
        snprintf(plan->warning, sizeof plan->warning,
                 "the costs are for layers of hidden %d, intermediate %d; the model's are %d, %d",
                 costs->hidden_size, costs->intermediate_size, p->llm.hidden_size,
                 p->llm.intermediate_size);
    return plan_simulate(plan, p, costs);
}
