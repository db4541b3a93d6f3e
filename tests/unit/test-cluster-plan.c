/* test-cluster-plan.c: the plan's sizes are the loaders' and its simulation
 * adds up.
 *
 * Memory: for the tiny LISA model split over 1 and 2 stages, every stage's
 * weight bytes (lisa_llama_model_bytes, in the checkpoint's bf16: the CPU
 * uses the file in place) equal what lisa_llama_model_load holds, and its
 * KV-cache and scratch bytes (lisa_llama_kv_bytes, lisa_llama_state_bytes)
 * what lisa_llama_state_init allocates; the plan's ranks carry exactly
 * those numbers. Random-weight models in fp32/bf16/fp16, tied and untied,
 * on several ranges, check the layout against the real buffer carved by
 * the loader (its extent) as well. With a CUDA device the same runs in bf16
 * on the GPU, where the io/logits32 staging exists. The vision parameter
 * counts are checked against the fixture checkpoints' tensors and SAM
 * ViT-H's published counts.
 * Simulation: costs chosen so the answers are known (busy time = tokens x
 * layers x cost; one stage, one micro-batch, fixed cost: makespan = micro-
 * batches x layers x cost), and invariants (utilisation <= 1, every
 * request done, throughput = requests / makespan).
 * Deliberately not here: the CLI's printing (tests/cli/cluster-plan.sh). */
#include "cluster-plan.h"

#include <stdint.h>

#include "llama.h"
#include "safetensors.h"
#include "sam.h"
#include "testutil.h"

static const char *g_fixtures;

static size_t round256(size_t b) { return (b + 255) / 256 * 256; }

/* The loader's carved buffer: the end of its last tensor, rounded. */
static size_t buffer_extent(const lisa_llama_model *m) {
    const char *base = m->weights.buffer;
    size_t end = 0;
    const lisa_tensor *t[3] = {&m->tok_embeddings, &m->norm, &m->output};
    for (int i = 0; i < 3; i++)
        if (t[i]->data) {
            size_t e = (size_t)((const char *)t[i]->data - base) + round256(lisa_tensor_nbytes(t[i]));
            if (e > end) end = e;
        }
    for (int l = 0; l < m->layer_end - m->layer_begin; l++) {
        const lisa_llama_layer *L = &m->layers[l];
        const lisa_tensor *w[9] = {&L->attn_norm, &L->wq, &L->wk, &L->wv, &L->wo,
                                   &L->ffn_norm, &L->w_gate, &L->w_up, &L->w_down};
        for (int i = 0; i < 9; i++) {
            size_t e = (size_t)((const char *)w[i]->data - base) + round256(lisa_tensor_nbytes(w[i]));
            if (e > end) end = e;
        }
    }
    return end;
}

/* One state for m at the plan's sizes: its allocation equals the formulas. */
static void check_state(const lisa_llama_model *m, lisa_dtype dt, int slots, int ctx, int budget,
                        int out, const char *what) {
    lisa_llama_state s;
    lisa_status st = lisa_llama_state_init(&s, m, slots, ctx, budget, out);
    CHECK(st == LISA_OK, "%s: state init: %s", what, lisa_error_get());
    if (st != LISA_OK) return;
    size_t want = lisa_llama_state_bytes(&m->cfg, dt, m->layer_begin, m->layer_end, slots, ctx,
                                         budget, out);
    size_t kv = lisa_llama_kv_bytes(&m->cfg, dt, m->layer_begin, m->layer_end, slots, ctx);
    size_t got = lisa_llama_state_alloc_bytes(&s);
    size_t got_kv = 0;
    for (int l = 0; l < s.k_cache_n; l++)
        got_kv += lisa_tensor_nbytes(&s.k_cache[l]) + lisa_tensor_nbytes(&s.v_cache[l]);
    CHECK(got == want, "%s: state allocates %zu bytes, lisa_llama_state_bytes says %zu", what, got,
          want);
    CHECK(got_kv == kv, "%s: KV cache %zu bytes, lisa_llama_kv_bytes says %zu", what, got_kv, kv);
    lisa_llama_state_free(&s);
}

/* The tiny checkpoint, loaded per stage as the cluster would, against the
 * plan for the same configuration. */
static void test_tiny_stages(lisa_backend *be, lisa_dtype dt, const char *dev) {
    char model[4096];
    snprintf(model, sizeof model, "%s/lisa-tiny/model", g_fixtures);
    lisa_llama_config cfg;
    lisa_status st = lisa_llama_config_load(&cfg, model);
    CHECK(st == LISA_OK, "tiny config: %s", lisa_error_get());
    if (st != LISA_OK) return;
    int host = be->ops->host_memory;
    lisa_dtype wdt = host ? LISA_DTYPE_BF16 : dt; /* the file is bf16, used in place on the CPU */
    for (int P = 1; P <= 2; P++) {
        lisa_cluster_config c;
        lisa_cluster_config_defaults(&c);
        c.stages = P;
        c.slots = 3;
        c.token_budget = 40;
        c.max_ctx = 100;
        snprintf(c.device, sizeof c.device, "%s", host ? "cpu" : "cuda");
        snprintf(c.dtype, sizeof c.dtype, "%s", dt == LISA_DTYPE_F32 ? "fp32" : "bf16");
        st = lisa_cluster_config_check(&c);
        CHECK(st == LISA_OK, "check: %s", lisa_error_get());
        lisa_cluster_plan_params p;
        lisa_cluster_plan_params_defaults(&p, &c, &cfg);
        p.weight_dtype = wdt;
        p.prompt_tokens = 50;
        p.new_tokens = 10;
        lisa_cluster_plan *plan = malloc(sizeof *plan);
        st = plan ? lisa_cluster_plan_build(plan, &p, NULL) : LISA_ERR_NOMEM;
        CHECK(st == LISA_OK, "%s P %d plan: %s", dev, P, lisa_error_get());
        for (int s = 0; st == LISA_OK && s < P; s++) {
            const lisa_cluster_plan_rank *r = &plan->ranks[lisa_cluster_stage_rank(&c, s)];
            CHECK(r->stage == s && r->l0 == plan->bounds[s] && r->l1 == plan->bounds[s + 1],
                  "%s P %d rank of stage %d: stage %d layers %d-%d", dev, P, s, r->stage, r->l0,
                  r->l1);
            lisa_llama_model m;
            lisa_status ls = lisa_llama_model_load(&m, model, be, dt, r->l0, r->l1);
            CHECK(ls == LISA_OK, "%s load [%d, %d): %s", dev, r->l0, r->l1, lisa_error_get());
            if (ls != LISA_OK) continue;
            size_t held = lisa_llama_model_weight_bytes(&m);
            CHECK(held == r->weight_bytes, "%s P %d stage %d: the loader holds %zu weight bytes, "
                  "the plan says %zu", dev, P, s, held, r->weight_bytes);
            CHECK(held == lisa_llama_model_bytes(&cfg, wdt, r->l0, r->l1), "%s: model bytes", dev);
            if (!host)
                CHECK(buffer_extent(&m) == held, "%s P %d stage %d: weight buffer %zu bytes, "
                      "counted %zu", dev, P, s, buffer_extent(&m), held);
            lisa_llama_state ss;
            ls = lisa_llama_state_init(&ss, &m, c.slots, c.max_ctx, c.token_budget,
                                       c.token_budget);
            CHECK(ls == LISA_OK, "%s state: %s", dev, lisa_error_get());
            if (ls == LISA_OK) {
                size_t got = lisa_llama_state_alloc_bytes(&ss);
                CHECK(got == r->kv_bytes + r->scratch_bytes, "%s P %d stage %d: state allocates "
                      "%zu bytes, the plan says %zu KV + %zu scratch", dev, P, s, got, r->kv_bytes,
                      r->scratch_bytes);
                lisa_llama_state_free(&ss);
            }
            lisa_llama_model_free(&m);
        }
        free(plan);
    }
}

/* Random weights in each storage dtype, tied and untied heads, several
 * ranges: the loader's real buffer is what lisa_llama_model_bytes counts. */
static void test_random_layouts(lisa_backend *be) {
    lisa_llama_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.hidden_size = 48;
    cfg.intermediate_size = 100;
    cfg.num_hidden_layers = 4;
    cfg.num_attention_heads = 4;
    cfg.num_key_value_heads = 2;
    cfg.head_dim = 12;
    cfg.vocab_size = 301;
    cfg.max_position_embeddings = 256;
    cfg.rms_norm_eps = 1e-5f;
    cfg.rope_theta = 10000;
    const int ranges[][2] = {{0, 4}, {0, 1}, {1, 3}, {3, 4}, {2, 4}};
    const lisa_dtype dts[] = {LISA_DTYPE_F32, LISA_DTYPE_BF16, LISA_DTYPE_F16};
    for (int tied = 0; tied <= 1; tied++)
        for (int d = 0; d < 3; d++)
            for (size_t r = 0; r < sizeof ranges / sizeof ranges[0]; r++) {
                cfg.tie_word_embeddings = tied;
                int l0 = ranges[r][0], l1 = ranges[r][1];
                lisa_llama_model m;
                lisa_status st = lisa_llama_model_init_random(&m, &cfg, be, dts[d], LISA_DTYPE_F32,
                                                              l0, l1, 5);
                CHECK(st == LISA_OK, "random [%d, %d) %s tied %d: %s", l0, l1,
                      lisa_dtype_name(dts[d]), tied, lisa_error_get());
                if (st != LISA_OK) continue;
                size_t want = lisa_llama_model_bytes(&cfg, dts[d], l0, l1);
                CHECK(buffer_extent(&m) == want && lisa_llama_model_weight_bytes(&m) == want,
                      "random [%d, %d) %s tied %d: buffer %zu, tensors %zu, counted %zu", l0, l1,
                      lisa_dtype_name(dts[d]), tied, buffer_extent(&m),
                      lisa_llama_model_weight_bytes(&m), want);
                check_state(&m, LISA_DTYPE_F32, 3, 37, 19, 5, "random state");
                check_state(&m, LISA_DTYPE_F32, 1, 16, 4, 9, "random state, out > tokens");
                lisa_llama_model_free(&m);
            }
    /* block types: the projections and LM head whose rows are whole blocks
     * in Q8_0/Q4_0 (K = 64 and 96 here; down_proj's K = 100 falls back),
     * embeddings and norms BF16 on the host; the buffer is what
     * lisa_llama_model_bytes_quant counts */
    lisa_llama_config qc = cfg;
    qc.hidden_size = 64;
    qc.head_dim = 16;
    const int inters[2] = {96, 100};
    const lisa_dtype qs[2] = {LISA_DTYPE_Q8_0, LISA_DTYPE_Q4_0};
    for (int qi = 0; qi < 2; qi++)
        for (int ii = 0; ii < 2; ii++)
            for (size_t r = 0; r < sizeof ranges / sizeof ranges[0]; r++) {
                qc.intermediate_size = inters[ii];
                qc.tie_word_embeddings = (int)(r % 2);
                int l0 = ranges[r][0], l1 = ranges[r][1];
                lisa_llama_model m;
                lisa_status st = lisa_llama_model_init_random(&m, &qc, be, qs[qi], LISA_DTYPE_F32,
                                                              l0, l1, 5);
                CHECK(st == LISA_OK, "random %s [%d, %d): %s", lisa_dtype_name(qs[qi]), l0, l1,
                      lisa_error_get());
                if (st != LISA_OK) continue;
                size_t want = lisa_llama_model_bytes_quant(&qc, LISA_DTYPE_BF16, qs[qi], l0, l1);
                CHECK(buffer_extent(&m) == want && lisa_llama_model_weight_bytes(&m) == want,
                      "random %s I %d [%d, %d): buffer %zu, tensors %zu, counted %zu",
                      lisa_dtype_name(qs[qi]), inters[ii], l0, l1, buffer_extent(&m),
                      lisa_llama_model_weight_bytes(&m), want);
                /* the CPU keeps block weights packed (same bytes, reordered) */
                CHECK(lisa_dtype_unpacked_of(m.layers[0].wq.dtype) == qs[qi] &&
                          lisa_dtype_unpacked_of(m.layers[0].w_down.dtype) ==
                              (inters[ii] % 32 ? LISA_DTYPE_BF16 : qs[qi]),
                      "random %s I %d: wq %s, w_down %s", lisa_dtype_name(qs[qi]), inters[ii],
                      lisa_dtype_name(m.layers[0].wq.dtype), lisa_dtype_name(m.layers[0].w_down.dtype));
                CHECK(want < lisa_llama_model_bytes(&qc, LISA_DTYPE_BF16, l0, l1),
                      "random %s: no smaller than bf16", lisa_dtype_name(qs[qi]));
                lisa_llama_model_free(&m);
            }
    /* a tied single range holds the embedding once */
    cfg.tie_word_embeddings = 1;
    size_t tied_all = lisa_llama_model_bytes(&cfg, LISA_DTYPE_F32, 0, 4);
    cfg.tie_word_embeddings = 0;
    size_t untied_all = lisa_llama_model_bytes(&cfg, LISA_DTYPE_F32, 0, 4);
    CHECK(untied_all - tied_all == round256(301 * 48 * 4), "tied saves one (V, C): %zu vs %zu",
          tied_all, untied_all);
    CHECK(lisa_llama_model_bytes(&cfg, LISA_DTYPE_F32, 2, 2) == 0 &&
          lisa_llama_model_bytes(&cfg, LISA_DTYPE_F32, 0, 5) == 0, "invalid ranges are 0");
}

/* LISA-13B in bf16 by hand: 40 layers of 317,204,480 parameters, the
 * embedding and LM head 163,855,360 each, the norm 5120 (every tensor a
 * multiple of 256 bytes). */
static void test_13b_numbers(void) {
    lisa_llama_config cfg;
    char path[4200];
    snprintf(path, sizeof path, "%s/../../configs/llama-13b.json", g_fixtures);
    lisa_status st = lisa_llama_config_load(&cfg, path);
    CHECK(st == LISA_OK, "llama-13b.json: %s", lisa_error_get());
    if (st != LISA_OK) return;
    size_t layer = 317204480, head = 163855360;
    size_t all = lisa_llama_model_bytes(&cfg, LISA_DTYPE_BF16, 0, -1);
    CHECK(all == 2 * (40 * layer + 2 * head + 5120), "13B bf16: %zu bytes", all);
    CHECK(lisa_llama_model_bytes(&cfg, LISA_DTYPE_BF16, 10, 20) == 2 * 10 * layer, "13B middle");
    size_t kv = lisa_llama_kv_bytes(&cfg, LISA_DTYPE_BF16, 0, 20, 32, 1000);
    CHECK(kv == (size_t)20 * 2 * 32 * 1008 * 5120 * 2, "13B KV (context rounded to 16): %zu", kv);
}

static void test_vision_params(void) {
    /* CLIP: every vision_model.* tensor of the fixture but post_layernorm
     * (which LISA's tower does not use), at all its layers. */
    char path[4200];
    snprintf(path, sizeof path, "%s/lisa-tiny/clip", g_fixtures);
    lisa_clip_config cc;
    lisa_status st = lisa_clip_config_load(&cc, path);
    CHECK(st == LISA_OK, "tiny clip config: %s", lisa_error_get());
    lisa_safetensors *sf = NULL;
    snprintf(path, sizeof path, "%s/lisa-tiny/clip/model.safetensors", g_fixtures);
    if (st == LISA_OK) st = lisa_safetensors_open(&sf, path);
    CHECK(st == LISA_OK, "tiny clip: %s", lisa_error_get());
    if (st == LISA_OK) {
        size_t n = 0;
        for (size_t i = 0; i < lisa_safetensors_count(sf); i++) {
            const lisa_st_tensor *t = lisa_safetensors_at(sf, i);
            if (strncmp(t->name, "vision_model.", 13) || strstr(t->name, "post_layernorm")) continue;
            size_t e = 1;
            for (int d = 0; d < t->ndim; d++) e *= (size_t)t->shape[d];
            n += e;
        }
        size_t f = lisa_cluster_plan_clip_params(&cc, cc.num_hidden_layers, 0);
        CHECK(f == n, "CLIP parameters: formula %zu, checkpoint %zu", f, n);
        lisa_safetensors_close(sf);
    }
    /* SAM ViT-H: segment-anything's image encoder 637,026,048 and mask
     * decoder 4,058,340 parameters, plus what the loader keeps of the
     * prompt encoder (no_mask_embed, the Gaussian matrix) and the dense PE
     * it computes (64 x 64 x 256). */
    lisa_vision_sam_shape vh;
    st = lisa_vision_sam_preset("vit_h", &vh);
    CHECK(st == LISA_OK, "vit_h: %s", lisa_error_get());
    size_t sam = lisa_cluster_plan_sam_params(&vh);
    CHECK(sam == 637026048u + 4058340u + 256 + 256 + 4096 * 256, "SAM ViT-H parameters %zu", sam);
    /* and the fixture SAM, shaped as the loader reads it */
    lisa_backend *cpu = NULL;
    snprintf(path, sizeof path, "%s/sam/model.safetensors", g_fixtures);
    if (lisa_backend_init(&cpu, LISA_BACKEND_CPU, 0, 1) != LISA_OK) return;
    lisa_sam_model m;
    lisa_sam_options o = {"model.visual_model.", 0, 2};
    st = lisa_sam_model_load(&m, path, cpu, LISA_DTYPE_F32, &o);
    CHECK(st == LISA_OK, "fixture SAM: %s", lisa_error_get());
    if (st == LISA_OK) {
        lisa_vision_sam_shape s;
        memset(&s, 0, sizeof s);
        s.embed_dim = m.cfg.embed_dim;
        s.depth = m.cfg.depth;
        s.num_heads = m.cfg.num_heads;
        s.patch = m.cfg.patch;
        s.grid = m.cfg.grid;
        s.window = m.cfg.window;
        memcpy(s.global, m.cfg.global, sizeof s.global);
        s.dim = m.cfg.dim;
        s.dec_depth = m.cfg.dec_depth;
        s.dec_heads = m.cfg.dec_heads;
        s.dec_mlp_dim = m.cfg.dec_mlp_dim;
        s.num_mask_tokens = m.cfg.num_mask_tokens;
        s.iou_hidden = m.cfg.iou_hidden;
        lisa_safetensors *st2 = NULL;
        if (lisa_safetensors_open(&st2, path) == LISA_OK) {
            size_t n = (size_t)s.grid * s.grid * s.dim; /* dense PE */
            for (size_t i = 0; i < lisa_safetensors_count(st2); i++) {
                const lisa_st_tensor *t = lisa_safetensors_at(st2, i);
                const char *k = t->name + strlen("model.visual_model.");
                if (strncmp(k, "image_encoder.", 14) && strncmp(k, "mask_decoder.", 13) &&
                    strcmp(k, "prompt_encoder.no_mask_embed.weight") &&
                    strcmp(k, "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"))
                    continue;
                size_t e = 1;
                for (int d = 0; d < t->ndim; d++) e *= (size_t)t->shape[d];
                n += e;
            }
            size_t f = lisa_cluster_plan_sam_params(&s);
            CHECK(f == n, "fixture SAM parameters: formula %zu, checkpoint %zu", f, n);
            lisa_safetensors_close(st2);
        }
        lisa_sam_model_free(&m);
    }
    lisa_backend_free(cpu);
}

/* ---- simulation --------------------------------------------------------- */

static lisa_llama_config sim_model(void) {
    lisa_llama_config m;
    memset(&m, 0, sizeof m);
    m.hidden_size = 64;
    m.intermediate_size = 128;
    m.num_hidden_layers = 6;
    m.num_attention_heads = 4;
    m.num_key_value_heads = 4;
    m.head_dim = 16;
    m.vocab_size = 100;
    m.max_position_embeddings = 4096;
    return m;
}

static lisa_status sim(lisa_cluster_plan *plan, int P, int M, int slots, int budget,
                       lisa_cluster_vision_placement vision, const lisa_cluster_plan_costs *k,
                       int N, int T, int G) {
    lisa_cluster_config c;
    lisa_cluster_config_defaults(&c);
    c.stages = P;
    c.micro_batches = M;
    c.slots = slots;
    c.token_budget = budget;
    c.max_ctx = 1024;
    c.vision = vision;
    snprintf(c.device, sizeof c.device, "cuda");
    lisa_status st = lisa_cluster_config_check(&c);
    if (st != LISA_OK) return st;
    lisa_llama_config m = sim_model();
    lisa_cluster_plan_params p;
    lisa_cluster_plan_params_defaults(&p, &c, &m);
    p.n_requests = N;
    p.prompt_tokens = T;
    p.new_tokens = G;
    return lisa_cluster_plan_build(plan, &p, k);
}

static void test_simulation(void) {
    lisa_cluster_plan *plan = malloc(sizeof *plan);
    if (!plan) return;
    lisa_cluster_plan_costs k;
    /* per-token cost only: every stage is busy tokens x its layers x cost */
    memset(&k, 0, sizeof k);
    k.layer_token_s = 1e-6;
    k.clip_image_s = 1e-3;
    k.sam_encoder_s = 2e-3;
    k.sam_decoder_s = 1e-3;
    int N = 40, T = 70, G = 9;
    for (int P = 1; P <= 3; P++) {
        lisa_status st = sim(plan, P, P, 8, 64, LISA_CLUSTER_VISION_OWN, &k, N, T, G);
        CHECK(st == LISA_OK, "sim P %d: %s", P, lisa_error_get());
        if (st != LISA_OK) continue;
        double tokens = (double)N * (T + G - 1);
        for (int s = 0; s < P; s++) {
            const lisa_cluster_plan_rank *r = &plan->ranks[1 + s];
            double want = tokens * (plan->bounds[s + 1] - plan->bounds[s]) * 1e-6;
            CHECK(fabs(r->busy_s - want) < 1e-9 * want + 1e-12, "P %d stage %d busy %.9f, want %.9f",
                  P, s, r->busy_s, want);
            CHECK(r->utilisation > 0 && r->utilisation <= 1 + 1e-12, "P %d stage %d utilisation %g",
                  P, s, r->utilisation);
        }
        const lisa_cluster_plan_rank *v = &plan->ranks[P + 1];
        CHECK(fabs(v->busy_s - N * 4e-3) < 1e-9, "P %d vision busy %g, want %g", P, v->busy_s, N * 4e-3);
        CHECK(plan->simulated && fabs(plan->requests_per_s * plan->makespan_s - N) < 1e-6,
              "P %d: %g requests/s over %g s", P, plan->requests_per_s, plan->makespan_s);
        CHECK(fabs(plan->tokens_per_s * plan->makespan_s - (double)N * G) < 1e-6, "P %d tokens/s", P);
        CHECK(plan->latency_p50_s > 0 && plan->latency_p50_s <= plan->latency_p95_s &&
              plan->latency_p95_s <= plan->makespan_s, "P %d latencies %g %g", P,
              plan->latency_p50_s, plan->latency_p95_s);
        CHECK(plan->mean_tokens <= 64 && plan->mean_items <= 8 && plan->mean_items >= 1,
              "P %d: micro-batches average %g tokens, %g items", P, plan->mean_tokens,
              plan->mean_items);
    }
    /* one stage, one micro-batch in flight, a fixed cost per layer only:
     * the stage never waits once started, so makespan = batches x L x cost
     * (plus the first CLIP and the last SAM, here free) */
    memset(&k, 0, sizeof k);
    k.layer_fixed_s = 1e-3;
    lisa_status st = sim(plan, 1, 1, 4, 32, LISA_CLUSTER_VISION_OWN, &k, 10, 50, 5);
    CHECK(st == LISA_OK, "fixed sim: %s", lisa_error_get());
    if (st == LISA_OK) {
        double want = (double)plan->micro_batches * 6 * 1e-3;
        CHECK(fabs(plan->makespan_s - want) < 1e-9 && fabs(plan->ranks[1].busy_s - want) < 1e-9,
              "fixed: makespan %g, busy %g, want %g (%ld micro-batches)", plan->makespan_s,
              plan->ranks[1].busy_s, want, plan->micro_batches);
        /* prompts of 50 in chunks of <= 32 tokens, 4 slots: at least
         * ceil(10 * 50 / 32) prefill batches and 4 decode steps a request */
        CHECK(plan->micro_batches >= 16, "fixed: only %ld micro-batches", plan->micro_batches);
    }
    /* vision sharing rank 0's device (none: rank 0 has no GPU) vs a GPU
     * shared with stage 0: sharing can only slow the job down */
    memset(&k, 0, sizeof k);
    k.layer_token_s = 1e-6;
    k.sam_encoder_s = 5e-3;
    double own = 0;
    st = sim(plan, 2, 2, 8, 64, LISA_CLUSTER_VISION_OWN, &k, 30, 60, 8);
    if (st == LISA_OK) own = plan->makespan_s;
    CHECK(st == LISA_OK && plan->n_devices == 4, "own vision: %s, %d devices", lisa_error_get(),
          plan->n_devices);
    lisa_cluster_config c;
    lisa_cluster_config_defaults(&c);
    c.stages = 2;
    c.slots = 8;
    c.token_budget = 64;
    c.max_ctx = 1024;
    snprintf(c.device, sizeof c.device, "cuda");
    c.n_gpu_map = 4;
    c.gpu_map[0] = -1;
    c.gpu_map[1] = 0;
    c.gpu_map[2] = 1;
    c.gpu_map[3] = 0;
    st = lisa_cluster_config_check(&c);
    lisa_llama_config m = sim_model();
    lisa_cluster_plan_params p;
    lisa_cluster_plan_params_defaults(&p, &c, &m);
    p.n_requests = 30;
    p.prompt_tokens = 60;
    p.new_tokens = 8;
    if (st == LISA_OK) st = lisa_cluster_plan_build(plan, &p, &k);
    CHECK(st == LISA_OK, "shared GPU: %s", lisa_error_get());
    if (st == LISA_OK) {
        CHECK(plan->makespan_s > own, "sharing GPU 0: makespan %g, own GPU %g", plan->makespan_s,
              own);
        const lisa_cluster_plan_device *g0 = NULL;
        for (int d = 0; d < plan->n_devices; d++)
            if (plan->devices[d].gpu == 0) g0 = &plan->devices[d];
        CHECK(g0 && g0->n_ranks == 2 &&
                  fabs(g0->busy_s - plan->ranks[1].busy_s - plan->ranks[3].busy_s) < 1e-12 &&
                  g0->utilisation <= 1 + 1e-12,
              "GPU 0 holds stage 0 and vision");
        CHECK(g0 && g0->bytes == plan->ranks[1].total_bytes + plan->ranks[3].total_bytes +
                                     2 * (size_t)1073741824, "GPU 0 bytes: its ranks + 2 reserves");
    }
    /* the workload must fit the context and max_new_tokens */
    memset(&k, 0, sizeof k);
    st = sim(plan, 1, 1, 4, 32, LISA_CLUSTER_VISION_OWN, &k, 4, 1000, 30);
    CHECK(st == LISA_ERR_ARG && strstr(lisa_error_get(), "do not fit a context of 1024"),
          "too long: %s", lisa_error_get());
    free(plan);
}

static void test_fit(void) {
    lisa_cluster_plan *plan = malloc(sizeof *plan);
    if (!plan) return;
    lisa_llama_config m;
    char path[4200];
    snprintf(path, sizeof path, "%s/../../configs/llama-13b.json", g_fixtures);
    if (lisa_llama_config_load(&m, path) != LISA_OK) {
        CHECK(0, "llama-13b.json: %s", lisa_error_get());
        free(plan);
        return;
    }
    for (int P = 1; P <= 2; P++) {
        lisa_cluster_config c;
        lisa_cluster_config_defaults(&c);
        c.stages = P;
        c.slots = 32;
        c.max_ctx = 1024;
        c.device_memory_gb = 40;
        snprintf(c.device, sizeof c.device, "cuda");
        lisa_cluster_config_check(&c);
        lisa_cluster_plan_params p;
        lisa_cluster_plan_params_defaults(&p, &c, &m);
        lisa_status st = lisa_cluster_plan_build(plan, &p, NULL);
        CHECK(st == LISA_OK && !plan->simulated, "13B P %d: %s", P, lisa_error_get());
        /* 26 GB of weights + 25 GiB of KV do not fit 40 GiB; half each do */
        CHECK(plan->fits == (P == 2), "13B P %d on 40 GiB GPUs: fits %d", P, plan->fits);
    }
    free(plan);
}

int main(int argc, char **argv) {
    g_fixtures = argc > 1 ? argv[1] : "tests/fixtures";
    lisa_backend *cpu = NULL;
    lisa_status st = lisa_backend_init(&cpu, LISA_BACKEND_CPU, 0, 2);
    CHECK(st == LISA_OK, "cpu backend: %s", lisa_error_get());
    if (st == LISA_OK) {
        test_tiny_stages(cpu, LISA_DTYPE_F32, "cpu");
        test_random_layouts(cpu);
        lisa_backend_free(cpu);
    }
    lisa_backend *gpu = test_cuda_open("test-cluster-plan");
    if (gpu) {
        test_tiny_stages(gpu, LISA_DTYPE_BF16, "cuda");
        lisa_backend_free(gpu);
    }
    test_13b_numbers();
    test_vision_params();
    test_simulation();
    test_fit();
    return test_finish("test-cluster-plan");
}
