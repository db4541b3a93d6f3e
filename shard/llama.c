/* llama.c: LLaMA decoder weights, per-request state and the forward pass for
 * one layer range (see llama.h). The math follows HF transformers 4.31's
 * LlamaForCausalLM in fp32: pre-norm RMSNorm, rotate-half RoPE, grouped-query
 * attention, SiLU-gated MLP, final RMSNorm, LM head. Both forward entry
 * points (host fp32 and backend tensors) enqueue the same inputs and ops
 * (llama_forward_enqueue) and differ only in where outputs go. Nothing here
 * prints or reads the environment. */
#include "llama.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LLAMA_ALIGN 256

int lisa_llama_model_is_first(const lisa_llama_model *m) { return m->layer_begin == 0; }
int lisa_llama_model_is_last(const lisa_llama_model *m) {
    return m->layer_end == m->cfg.num_hidden_layers;
}

/* Fills the weight table for m's range; returns the count. `specs` must hold
 * 3 + 9 * nlayers entries. Every entry is a MATMUL weight for the loader:
 * used in place from the mmap in its file dtype on host backends (the CPU's
 * rmsnorm widens any dtype too), converted to the compute dtype elsewhere.
 * The projections and the LM head are MATMUL_QUANT (load-time quantization
 * applies to them); the embedding table and norms never are quantized.
 * Tied LM heads point `output` at the embedding (llama_finish). */
static int llama_weight_table(lisa_llama_model *m, lisa_weight_spec *specs, int has_lm_head) {
    const lisa_llama_config *c = &m->cfg;
    int64_t C = c->hidden_size, I = c->intermediate_size, V = c->vocab_size;
    int64_t HD = (int64_t)c->num_attention_heads * c->head_dim;
    int64_t KVD = (int64_t)c->num_key_value_heads * c->head_dim;
    int n = 0;
    int cap = 3 + 9 * (m->layer_end - m->layer_begin);
#define SPECK(kind_, dst_, nd_, s0_, s1_, ...)                                \
    do {                                                                      \
        int64_t shape_[2] = {(s0_), (s1_)};                                   \
        n = lisa_weight_spec_add(specs, n, cap, (dst_), (kind_), (nd_), shape_, \
                                 __VA_ARGS__);                                \
    } while (0)
#define SPEC(...) SPECK(LISA_WEIGHT_MATMUL, __VA_ARGS__)
#define SPECQ(...) SPECK(LISA_WEIGHT_MATMUL_QUANT, __VA_ARGS__)
    int need_embed = lisa_llama_model_is_first(m) ||
                     (lisa_llama_model_is_last(m) && !has_lm_head);
    if (need_embed) SPEC(&m->tok_embeddings, 2, V, C, "model.embed_tokens.weight");
    for (int l = m->layer_begin; l < m->layer_end; l++) {
        lisa_llama_layer *L = &m->layers[l - m->layer_begin];
        SPEC(&L->attn_norm, 1, C, 0, "model.layers.%d.input_layernorm.weight", l);
        SPECQ(&L->wq, 2, HD, C, "model.layers.%d.self_attn.q_proj.weight", l);
        SPECQ(&L->wk, 2, KVD, C, "model.layers.%d.self_attn.k_proj.weight", l);
        SPECQ(&L->wv, 2, KVD, C, "model.layers.%d.self_attn.v_proj.weight", l);
        SPECQ(&L->wo, 2, C, HD, "model.layers.%d.self_attn.o_proj.weight", l);
        SPEC(&L->ffn_norm, 1, C, 0, "model.layers.%d.post_attention_layernorm.weight", l);
        SPECQ(&L->w_gate, 2, I, C, "model.layers.%d.mlp.gate_proj.weight", l);
        SPECQ(&L->w_up, 2, I, C, "model.layers.%d.mlp.up_proj.weight", l);
        SPECQ(&L->w_down, 2, C, I, "model.layers.%d.mlp.down_proj.weight", l);
    }
    if (lisa_llama_model_is_last(m)) {
        SPEC(&m->norm, 1, C, 0, "model.norm.weight");
        if (has_lm_head) SPECQ(&m->output, 2, V, C, "lm_head.weight");
    }
#undef SPECQ
#undef SPEC
#undef SPECK
    return n;
}

static lisa_status llama_range_set(lisa_llama_model *m, lisa_backend *be, int l0, int l1) {
    int L = m->cfg.num_hidden_layers;
    if (l1 < 0) l1 = L;
    if (l0 < 0 || l0 >= l1 || l1 > L)
        return lisa_error_set(LISA_ERR_ARG, "layer range [%d, %d) invalid for a %d-layer model",
                              l0, l1, L);
    m->layer_begin = l0;
    m->layer_end = l1;
    m->be = be;
    m->layers = calloc((size_t)(l1 - l0), sizeof *m->layers);
    if (!m->layers) return lisa_error_set(LISA_ERR_NOMEM, "llama: cannot allocate layer table");
    return LISA_OK;
}

/* Carves one backend buffer for every tensor of the table (llm.c style):
 * returns the total size and sets each dst's data to its offset (as a
 * pointer relative to NULL) until `base` is known. */
static size_t llama_carve(lisa_weight_spec *specs, int n, const lisa_dtype *dtypes) {
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        *specs[i].dst = lisa_tensor_view(NULL, dtypes[i], specs[i].ndim, specs[i].shape);
        size_t bytes = lisa_tensor_nbytes(specs[i].dst);
        specs[i].dst->data = (void *)(uintptr_t)off;
        off += (bytes + LLAMA_ALIGN - 1) / LLAMA_ALIGN * LLAMA_ALIGN;
    }
    return off;
}

static void llama_rebase(lisa_weight_spec *specs, int n, void *base) {
    for (int i = 0; i < n; i++)
        specs[i].dst->data = (char *)base + (uintptr_t)specs[i].dst->data;
}

/* The view over n back-to-back (rows_i, C) weights of one dtype, as one
 * (sum rows_i, C) matrix; data NULL when they are not adjacent. */
static lisa_tensor llama_fuse(const lisa_tensor *const *w, int n) {
    lisa_tensor f;
    memset(&f, 0, sizeof f);
    int64_t rows = 0;
    for (int i = 0; i < n; i++) {
        if (!w[i]->data || w[i]->dtype != w[0]->dtype || w[i]->shape[1] != w[0]->shape[1])
            return f;
        if (i > 0 && (const char *)w[i]->data !=
                         (const char *)w[i - 1]->data + lisa_tensor_nbytes(w[i - 1]))
            return f;
        rows += w[i]->shape[0];
    }
    return lisa_tensor_2d(w[0]->data, w[0]->dtype, rows, w[0]->shape[1]);
}

/* After loading: tied LM heads point `output` at the embedding; the fused
 * q|k|v and gate|up views where the weights lie back to back. */
static void llama_finish(lisa_llama_model *m, int has_lm_head) {
    if (lisa_llama_model_is_last(m) && !has_lm_head) m->output = m->tok_embeddings;
    for (int l = 0; l < m->layer_end - m->layer_begin; l++) {
        lisa_llama_layer *L = &m->layers[l];
        const lisa_tensor *qkv[3] = {&L->wq, &L->wk, &L->wv}, *gu[2] = {&L->w_gate, &L->w_up};
        L->wqkv = llama_fuse(qkv, 3);
        L->w_gate_up = llama_fuse(gu, 2);
    }
}

static lisa_status llama_dtype_check(const lisa_backend *be, lisa_dtype dtype) {
    if (dtype != LISA_DTYPE_F32 && dtype != LISA_DTYPE_F16 && dtype != LISA_DTYPE_BF16)
        return lisa_error_set(LISA_ERR_ARG, "llama: compute dtype must be F32, F16 or BF16");
    if (be->ops->host_memory && dtype != LISA_DTYPE_F32)
        return lisa_error_set(LISA_ERR_UNSUPPORTED,
                              "the %s backend computes in fp32 only (asked for %s)", be->ops->name,
                              lisa_dtype_name(dtype));
    return LISA_OK;
}

lisa_status lisa_llama_model_load(lisa_llama_model *m, const char *dir, lisa_backend *be,
                                  lisa_dtype dtype, int layer_begin, int layer_end) {
    return lisa_llama_model_load_quant(m, dir, be, dtype, LISA_DTYPE_F32, layer_begin, layer_end);
}

lisa_status lisa_llama_model_load_quant(lisa_llama_model *m, const char *dir, lisa_backend *be,
                                        lisa_dtype dtype, lisa_dtype quant, int layer_begin,
                                        int layer_end) {
    memset(m, 0, sizeof *m);
    LISA_TRY(llama_dtype_check(be, dtype));
    m->dtype = dtype;
    lisa_status st = lisa_llama_config_load(&m->cfg, dir);
    if (st != LISA_OK) return st;
    if ((st = llama_range_set(m, be, layer_begin, layer_end)) != LISA_OK) goto fail;
    if ((st = lisa_safetensors_open(&m->st, dir)) != LISA_OK) goto fail;

    int has_lm_head = lisa_safetensors_find(m->st, "lm_head.weight") != NULL;
    if (!has_lm_head && !m->cfg.tie_word_embeddings && lisa_llama_model_is_last(m)) {
        st = lisa_error_set(LISA_ERR_MISSING,
                            "tensor 'lm_head.weight' not found in %s (config has "
                            "tie_word_embeddings=false)", dir);
        goto fail;
    }
    int cap = 3 + 9 * (m->layer_end - m->layer_begin);
    lisa_weight_spec *specs = calloc((size_t)cap, sizeof *specs);
    if (!specs) {
        st = lisa_error_set(LISA_ERR_NOMEM, "llama: cannot allocate weight table");
        goto fail;
    }
    int n = llama_weight_table(m, specs, has_lm_head);
    st = lisa_weights_load_quant(&m->weights, be, m->st, "", specs, n, dtype, quant);
    free(specs);
    if (st != LISA_OK) goto fail;
    llama_finish(m, has_lm_head);
    return LISA_OK;
fail:
    lisa_llama_model_free(m);
    return st;
}

/* xorshift64* and a 4-uniform sum: cheap, deterministic, roughly normal. */
static uint64_t rng_next(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

static float rng_normalish(uint64_t *s) {
    float acc = 0;
    for (int i = 0; i < 4; i++) acc += (float)(rng_next(s) >> 40) / (float)(1 << 24);
    return (acc - 2.0f) * 1.7320508f; /* unit variance */
}

/* One pool of random values in dtype dt for init_random: `vals` (pool_elems
 * values) and `ones` (pool_elems ones; float types only). */
typedef struct {
    lisa_dtype dt;
    char *vals, *ones;
} llama_pool;

static lisa_status llama_pool_make(llama_pool *p, lisa_dtype dt, const float *vals,
                                   const float *ones, size_t pool_elems) {
    p->dt = dt;
    size_t bytes = lisa_dtype_row_bytes(dt, (int64_t)pool_elems);
    p->vals = malloc(bytes);
    p->ones = lisa_dtype_is_quant(dt) ? NULL : malloc(bytes);
    if (!p->vals || (!lisa_dtype_is_quant(dt) && !p->ones))
        return lisa_error_set(LISA_ERR_NOMEM, "llama: staging allocation failed");
    lisa_dtype_convert(p->vals, dt, vals, LISA_DTYPE_F32, pool_elems);
    if (p->ones) lisa_dtype_convert(p->ones, dt, ones, LISA_DTYPE_F32, pool_elems);
    return LISA_OK;
}

lisa_status lisa_llama_model_init_random(lisa_llama_model *m, const lisa_llama_config *cfg,
                                         lisa_backend *be, lisa_dtype wdtype, lisa_dtype dtype,
                                         int layer_begin, int layer_end, uint64_t seed) {
    memset(m, 0, sizeof *m);
    LISA_TRY(llama_dtype_check(be, dtype));
    int quant = lisa_dtype_is_quant(wdtype);
    if (!be->ops->host_memory && !quant && wdtype != dtype)
        return lisa_error_set(LISA_ERR_ARG, "llama: on %s weights must be in the compute dtype",
                              be->ops->name);
    m->cfg = *cfg;
    m->dtype = dtype;
    lisa_status st = llama_range_set(m, be, layer_begin, layer_end);
    if (st != LISA_OK) return st;
    int has_lm_head = !cfg->tie_word_embeddings;
    int cap = 3 + 9 * (m->layer_end - m->layer_begin);
    lisa_weight_spec *specs = calloc((size_t)cap, sizeof *specs);
    lisa_dtype *dtypes = calloc((size_t)cap, sizeof *dtypes);
    if (!specs || !dtypes) {
        free(specs);
        free(dtypes);
        lisa_llama_model_free(m);
        return lisa_error_set(LISA_ERR_NOMEM, "llama: cannot allocate weight table");
    }
    int n = llama_weight_table(m, specs, has_lm_head);
    lisa_dtype other = be->ops->host_memory ? LISA_DTYPE_BF16 : dtype;
    /* a block wdtype goes to the MATMUL_QUANT entries whose rows are whole
     * blocks (the others fall back to `other`, as at load) */
    for (int i = 0; i < n; i++)
        dtypes[i] = !quant || (specs[i].kind == LISA_WEIGHT_MATMUL_QUANT &&
                               specs[i].shape[1] % LISA_QK == 0)
                        ? wdtype
                        : other;
    size_t total = llama_carve(specs, n, dtypes);
    m->weights.be = be;
    st = be->ops->buffer_alloc(be, total, &m->weights.buffer);
    if (st == LISA_OK) llama_rebase(specs, n, m->weights.buffer);
    /* One pool of random values, reused cyclically at a different offset per
     * tensor: filling 13B parameters one by one would take minutes, and a
     * benchmark does not need independent weights. Norms are ones. The pool
     * is made once per dtype in use; offsets count whole blocks. */
    uint64_t rs = seed ? seed : 0x9E3779B97F4A7C15ULL;
    size_t pool_elems = (size_t)1 << 22;
    float *f32 = st == LISA_OK ? malloc(2 * pool_elems * sizeof *f32) : NULL;
    if (st == LISA_OK && !f32) st = lisa_error_set(LISA_ERR_NOMEM, "llama: staging allocation failed");
    for (size_t j = 0; f32 && j < pool_elems; j++) {
        f32[j] = 0.02f * rng_normalish(&rs);
        f32[pool_elems + j] = 1.0f;
    }
    llama_pool pools[2];
    memset(pools, 0, sizeof pools);
    if (st == LISA_OK) st = llama_pool_make(&pools[0], wdtype, f32, f32 + pool_elems, pool_elems);
    if (st == LISA_OK && quant)
        st = llama_pool_make(&pools[1], other, f32, f32 + pool_elems, pool_elems);
    free(f32);
    for (int i = 0; i < n && st == LISA_OK; i++) {
        lisa_tensor *t = specs[i].dst;
        const llama_pool *p = t->dtype == pools[0].dt ? &pools[0] : &pools[1];
        int is_norm = t->ndim == 1;
        int64_t blk = lisa_dtype_block(t->dtype);
        size_t ub = lisa_dtype_size(t->dtype); /* bytes per unit (element or block) */
        size_t units = (size_t)(lisa_tensor_nelem(t) / blk), pool_units = pool_elems / (size_t)blk;
        size_t start = ((size_t)i * 7919u) % (pool_units / 2);
        for (size_t off = 0; off < units && st == LISA_OK;) {
            size_t src0 = is_norm ? 0 : (start + off) % pool_units;
            size_t cnt = pool_units - src0;
            if (cnt > units - off) cnt = units - off;
            st = be->ops->copy_to_backend(be, t->data, off * ub,
                                          (is_norm ? p->ones : p->vals) + src0 * ub, cnt * ub);
            off += cnt;
        }
    }
    if (st == LISA_OK) st = be->ops->synchronize(be);
    for (int i = 0; i < n && st == LISA_OK; i++)
        if (specs[i].kind != LISA_WEIGHT_PARAM) st = lisa_weights_pack_in_place(be, specs[i].dst);
    for (int k = 0; k < 2; k++) {
        free(pools[k].vals);
        free(pools[k].ones);
    }
    free(specs);
    free(dtypes);
    if (st != LISA_OK) {
        lisa_llama_model_free(m);
        return st;
    }
    llama_finish(m, has_lm_head);
    return LISA_OK;
}

void lisa_llama_model_free(lisa_llama_model *m) {
    lisa_weights_free(&m->weights);
    if (m->st) lisa_safetensors_close(m->st);
    free(m->layers);
    memset(m, 0, sizeof *m);
}

/* --- state --- */

static lisa_status state_alloc(lisa_llama_state *s, lisa_tensor *t, lisa_dtype dt, int ndim,
                               int64_t a, int64_t b, int64_t c, int64_t d) {
    int64_t shape[4] = {a, b, c, d};
    lisa_status st = lisa_backend_tensor_alloc(s->be, t, dt, ndim, shape);
    if (st != LISA_OK) {
        size_t bytes = (size_t)a * (size_t)(ndim > 1 ? b : 1) * (size_t)(ndim > 2 ? c : 1) *
                       (size_t)(ndim > 3 ? d : 1) * lisa_dtype_size(dt);
        return lisa_error_set(st, "llama state: cannot reserve %zu bytes (%s)", bytes,
                              lisa_error_get());
    }
    return LISA_OK;
}

lisa_status lisa_llama_state_init(lisa_llama_state *s, const lisa_llama_model *m, int max_seqs,
                                  int max_ctx, int max_tokens, int max_out) {
    memset(s, 0, sizeof *s);
    const lisa_llama_config *c = &m->cfg;
    if (max_seqs < 1 || max_ctx < 1 || max_tokens < 1 || max_out < 1)
        return lisa_error_set(LISA_ERR_ARG, "llama state: sizes must be positive");
    if (max_ctx > c->max_position_embeddings)
        return lisa_error_set(LISA_ERR_ARG, "llama state: context %d exceeds max_position_embeddings %d",
                              max_ctx, c->max_position_embeddings);
    if (max_out > max_tokens) max_out = max_tokens;
    s->be = m->be;
    s->max_seqs = max_seqs;
    s->max_ctx = max_ctx;
    s->max_tokens = max_tokens;
    s->max_out = max_out;
    s->graphs_off = !lisa_backend_graphs_enabled(m->be);
    int nl = m->layer_end - m->layer_begin;
    int64_t C = c->hidden_size, I = c->intermediate_size, H = c->num_attention_heads,
            KVH = c->num_key_value_heads, D = c->head_dim, V = c->vocab_size, n = max_tokens;
    s->k_cache = calloc((size_t)nl, sizeof(lisa_tensor));
    s->v_cache = calloc((size_t)nl, sizeof(lisa_tensor));
    if (!s->k_cache || !s->v_cache) {
        lisa_llama_state_free(s);
        return lisa_error_set(LISA_ERR_NOMEM, "llama state: cannot allocate cache table");
    }
    lisa_status st = LISA_OK;
    lisa_dtype dt = m->dtype;
    /* cache rows per sequence rounded up to 16: the CUDA tensor-core
     * attention reads keys 16 at a time (positions stay below max_ctx) */
    int64_t rows = ((int64_t)max_ctx + 15) / 16 * 16;
    for (int l = 0; l < nl && st == LISA_OK; l++) {
        st = state_alloc(s, &s->k_cache[l], dt, 4, max_seqs, rows, KVH, D);
        if (st == LISA_OK) st = state_alloc(s, &s->v_cache[l], dt, 4, max_seqs, rows, KVH, D);
    }
    if (st == LISA_OK) st = state_alloc(s, &s->x, dt, 2, n, C, 0, 0);
    if (st == LISA_OK) st = state_alloc(s, &s->xb, dt, 2, n, C, 0, 0);
    if (st == LISA_OK) st = state_alloc(s, &s->qkv, dt, 2, n, (H + 2 * KVH) * D, 0, 0);
    if (st == LISA_OK) st = state_alloc(s, &s->att, dt, 2, n, H * D, 0, 0);
    if (st == LISA_OK) st = state_alloc(s, &s->gate_up, dt, 2, n, 2 * I, 0, 0);
    if (st == LISA_OK) st = state_alloc(s, &s->ids, LISA_DTYPE_I32, 1, n, 0, 0, 0);
    if (st == LISA_OK) st = state_alloc(s, &s->seq, LISA_DTYPE_I32, 1, n, 0, 0, 0);
    if (st == LISA_OK) st = state_alloc(s, &s->pos, LISA_DTYPE_I32, 1, n, 0, 0, 0);
    if (st == LISA_OK) st = state_alloc(s, &s->out_idx, LISA_DTYPE_I32, 1, max_out, 0, 0, 0);
    if (st == LISA_OK) st = state_alloc(s, &s->hout, dt, 2, max_out, C, 0, 0);
    if (st == LISA_OK && lisa_llama_model_is_last(m))
        st = state_alloc(s, &s->logits, dt, 2, max_out, V, 0, 0);
    if (st == LISA_OK && dt != LISA_DTYPE_F32)
        st = state_alloc(s, &s->io, LISA_DTYPE_F32, 2, n, C, 0, 0);
    if (st == LISA_OK && dt != LISA_DTYPE_F32 && lisa_llama_model_is_last(m))
        st = state_alloc(s, &s->logits32, LISA_DTYPE_F32, 2, max_out, V, 0, 0);
    if (st == LISA_OK) st = state_alloc(s, &s->argmax, LISA_DTYPE_I32, 1, max_out, 0, 0, 0);
    s->k_cache_n = nl;
    if (st == LISA_OK) {
        /* the largest op shapes of a forward call: K of the matmuls (C, H*D
         * or I) and the cache rows attention reads */
        lisa_backend_reserve_req r;
        memset(&r, 0, sizeof r);
        r.matmul_k = C > I ? C : I;
        if (H * D > r.matmul_k) r.matmul_k = H * D;
        r.attention_ctx = rows;
        st = lisa_backend_reserve(s->be, &r);
    }
    if (st != LISA_OK) lisa_llama_state_free(s);
    return st;
}

void lisa_llama_state_free(lisa_llama_state *s) {
    if (!s->be) return;
    for (int i = 0; i < s->n_graphs; i++) s->be->ops->graph_free(s->be, s->graphs[i].graph);
    for (int l = 0; l < s->k_cache_n; l++) {
        if (s->k_cache) lisa_backend_tensor_free(s->be, &s->k_cache[l]);
        if (s->v_cache) lisa_backend_tensor_free(s->be, &s->v_cache[l]);
    }
    lisa_tensor *scratch[] = {&s->x,   &s->xb,  &s->qkv, &s->att,     &s->gate_up,
                              &s->ids, &s->seq, &s->pos, &s->out_idx,
                              &s->hout, &s->logits, &s->argmax, &s->io, &s->logits32};
    for (size_t i = 0; i < sizeof scratch / sizeof scratch[0]; i++)
        lisa_backend_tensor_free(s->be, scratch[i]);
    free(s->k_cache);
    free(s->v_cache);
    memset(s, 0, sizeof *s);
}

/* --- forward --- */

static lisa_tensor view3(const lisa_tensor *t, int64_t n, int64_t a, int64_t b) {
    int64_t shape[3] = {n, a, b};
    return lisa_tensor_view(t->data, t->dtype, 3, shape);
}

static lisa_tensor view2(const lisa_tensor *t, int64_t n, int64_t a) {
    return lisa_tensor_2d(t->data, t->dtype, n, a);
}

/* `x_in`: the input comes as a backend tensor instead of tokens/embd. */
static lisa_status llama_validate_batch(const lisa_llama_model *m, const lisa_llama_state *s,
                                        const lisa_llama_batch *b, int x_in) {
    if (b->n < 1 || b->n > s->max_tokens)
        return lisa_error_set(LISA_ERR_ARG, "llama forward: %d tokens, state reserved for 1..%d",
                              b->n, s->max_tokens);
    if (lisa_llama_model_is_last(m) && (b->n_out < 0 || b->n_out > s->max_out))
        return lisa_error_set(LISA_ERR_ARG, "llama forward: %d output rows, state reserved for %d",
                              b->n_out, s->max_out);
    if (x_in && (b->tokens || b->embd))
        return lisa_error_set(LISA_ERR_ARG, "llama forward: an input tensor and tokens or "
                                            "embeddings given");
    if (!x_in && !b->tokens && !b->embd)
        return lisa_error_set(LISA_ERR_ARG, "llama forward: neither tokens nor embeddings given");
    if (b->tokens && !lisa_llama_model_is_first(m))
        return lisa_error_set(LISA_ERR_ARG, "llama forward: token ids given to a range that "
                                            "does not start at layer 0");
    for (int i = 0; i < b->n; i++) {
        if (b->tokens && (b->tokens[i] < 0 || b->tokens[i] >= m->cfg.vocab_size))
            return lisa_error_set(LISA_ERR_ARG, "llama forward: token id %d out of range [0, %d)",
                                  b->tokens[i], m->cfg.vocab_size);
        if (b->seq[i] < 0 || b->seq[i] >= s->max_seqs)
            return lisa_error_set(LISA_ERR_ARG, "llama forward: sequence slot %d out of range [0, %d)",
                                  b->seq[i], s->max_seqs);
        if (b->pos[i] < 0 || b->pos[i] >= s->max_ctx)
            return lisa_error_set(LISA_ERR_ARG, "llama forward: position %d beyond the context of %d",
                                  b->pos[i], s->max_ctx);
    }
    if (lisa_llama_model_is_last(m))
        for (int i = 0; i < b->n_out; i++)
            if (b->out_rows[i] < 0 || b->out_rows[i] >= b->n)
                return lisa_error_set(LISA_ERR_ARG, "llama forward: output row %d not in the batch",
                                      b->out_rows[i]);
    return LISA_OK;
}

/* Host fp32 (rows, C) -> backend tensor t (rows, C) in the model dtype. */
static lisa_status llama_upload_rows(lisa_llama_state *s, lisa_tensor *t, const float *host) {
    lisa_backend *be = s->be;
    size_t ne = (size_t)lisa_tensor_nelem(t);
    if (t->dtype == LISA_DTYPE_F32) return be->ops->copy_to_backend(be, t->data, 0, host, ne * 4);
    lisa_tensor io = lisa_tensor_2d(s->io.data, LISA_DTYPE_F32, t->shape[0], t->shape[1]);
    LISA_TRY(be->ops->copy_to_backend(be, io.data, 0, host, ne * 4));
    return be->ops->convert(be, t, &io);
}

/* Backend tensor t (rows, cols) in the model dtype -> host fp32, through
 * `stage` (an F32 tensor at least as large) when t is not F32. */
static lisa_status llama_download(lisa_llama_state *s, const lisa_tensor *t, const lisa_tensor *stage,
                                  float *host) {
    lisa_backend *be = s->be;
    size_t ne = (size_t)lisa_tensor_nelem(t);
    if (t->dtype == LISA_DTYPE_F32) return be->ops->copy_to_host(be, host, t->data, 0, ne * 4);
    lisa_tensor f = lisa_tensor_2d(stage->data, LISA_DTYPE_F32, t->shape[0], t->shape[1]);
    LISA_TRY(be->ops->convert(be, &f, t));
    return be->ops->copy_to_host(be, host, f.data, 0, ne * 4);
}

lisa_status lisa_llama_embed(const lisa_llama_model *m, lisa_llama_state *s, const int32_t *tokens,
                             int n, float *out) {
    lisa_backend *be = s->be;
    if (!lisa_llama_model_is_first(m))
        return lisa_error_set(LISA_ERR_ARG, "llama embed: range does not hold the embedding");
    if (n < 1 || n > s->max_tokens)
        return lisa_error_set(LISA_ERR_ARG, "llama embed: %d tokens, reserved for 1..%d", n,
                              s->max_tokens);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= m->cfg.vocab_size)
            return lisa_error_set(LISA_ERR_ARG, "llama embed: token id %d out of range", tokens[i]);
    int64_t C = m->cfg.hidden_size;
    lisa_tensor ids = lisa_tensor_1d(s->ids.data, LISA_DTYPE_I32, n);
    lisa_tensor x = view2(&s->x, n, C);
    LISA_TRY(be->ops->copy_to_backend(be, ids.data, 0, tokens, (size_t)n * 4));
    LISA_TRY(be->ops->embedding(be, &x, &m->tok_embeddings, &ids));
    LISA_TRY(llama_download(s, &x, &s->io, out));
    return be->ops->synchronize(be);
}

lisa_status lisa_llama_embed_splice(const lisa_llama_model *m, lisa_llama_state *s,
                                    const int32_t *ids, size_t n_ids, size_t pos,
                                    const float *extra, size_t n_extra, float *out) {
    size_t C = (size_t)m->cfg.hidden_size, T = (size_t)s->max_tokens;
    if (pos >= n_ids)
        return lisa_error_set(LISA_ERR_ARG, "llama: placeholder at %zu of %zu ids", pos, n_ids);
    for (size_t i = 0; i < n_ids;) {
        if (i == pos) {
            memcpy(out + pos * C, extra, n_extra * C * sizeof(float));
            i++;
            continue;
        }
        size_t end = i < pos ? pos : n_ids, cnt = end - i < T ? end - i : T;
        size_t row = i < pos ? i : i - 1 + n_extra;
        LISA_TRY(lisa_llama_embed(m, s, ids + i, (int)cnt, out + row * C));
        i += cnt;
    }
    return LISA_OK;
}

/* The ops of one forward call between its input uploads and its output
 * downloads: the embedding gather (token input), every layer, and on the
 * last range the output rows' final norm, lm_head and argmax. Only ops, so
 * that it can be recorded once as a backend graph (llama_run_ops). */
static lisa_status llama_forward_ops(const lisa_llama_model *m, lisa_llama_state *s, int64_t n,
                                     int64_t no, int tokens, int want_next) {
    lisa_backend *be = s->be;
    const lisa_backend_ops *op = be->ops;
    const lisa_llama_config *c = &m->cfg;
    int64_t C = c->hidden_size, I = c->intermediate_size, H = c->num_attention_heads,
            KVH = c->num_key_value_heads, D = c->head_dim, V = c->vocab_size;
    int nl = m->layer_end - m->layer_begin;

    lisa_tensor ids = lisa_tensor_1d(s->ids.data, LISA_DTYPE_I32, n);
    lisa_tensor seq = lisa_tensor_1d(s->seq.data, LISA_DTYPE_I32, n);
    lisa_tensor pos = lisa_tensor_1d(s->pos.data, LISA_DTYPE_I32, n);
    lisa_tensor x = view2(&s->x, n, C), xb = view2(&s->xb, n, C);
    /* q, k, v and gate, up packed per call (k at n*H*D, up at n*I): a
     * one-row call's fused matmul writes exactly this layout */
    size_t es = lisa_dtype_size(s->qkv.dtype);
    char *qb = s->qkv.data, *gb = s->gate_up.data;
    lisa_tensor q2 = lisa_tensor_2d(qb, s->qkv.dtype, n, H * D),
                k2 = lisa_tensor_2d(qb + (size_t)(n * H * D) * es, s->qkv.dtype, n, KVH * D),
                v2 = lisa_tensor_2d(qb + (size_t)(n * (H + KVH) * D) * es, s->qkv.dtype, n, KVH * D);
    lisa_tensor q = view3(&q2, n, H, D), k = view3(&k2, n, KVH, D), v = view3(&v2, n, KVH, D);
    lisa_tensor qkv = lisa_tensor_2d(qb, s->qkv.dtype, n, (H + 2 * KVH) * D);
    lisa_tensor att = view2(&s->att, n, H * D);
    lisa_tensor gate = lisa_tensor_2d(gb, s->gate_up.dtype, n, I),
                up = lisa_tensor_2d(gb + (size_t)(n * I) * es, s->gate_up.dtype, n, I);
    lisa_tensor gate_up = lisa_tensor_2d(gb, s->gate_up.dtype, n, 2 * I);

    if (tokens) LISA_TRY(op->embedding(be, &x, &m->tok_embeddings, &ids));
    /* Residual adds are fused into the following norm: xb holds a block's
     * output until the next add_rmsnorm folds it into x. */
    if (nl > 0) LISA_TRY(op->rmsnorm(be, &xb, &x, &m->layers[0].attn_norm, c->rms_norm_eps));
    for (int l = 0; l < nl; l++) {
        const lisa_llama_layer *L = &m->layers[l];
        /* attention block: xb = attn_norm(x) on entry */
        if (n == 1 && L->wqkv.data) {
            LISA_TRY(op->matmul(be, &qkv, &xb, &L->wqkv, NULL));
        } else {
            LISA_TRY(op->matmul(be, &q2, &xb, &L->wq, NULL));
            LISA_TRY(op->matmul(be, &k2, &xb, &L->wk, NULL));
            LISA_TRY(op->matmul(be, &v2, &xb, &L->wv, NULL));
        }
        LISA_TRY(op->rope(be, &q, &pos, c->rope_theta));
        LISA_TRY(op->rope(be, &k, &pos, c->rope_theta));
        LISA_TRY(op->kv_store(be, &s->k_cache[l], &s->v_cache[l], &k, &v, &seq, &pos));
        LISA_TRY(op->attention(be, &att, &q, &s->k_cache[l], &s->v_cache[l], &seq, &pos));
        LISA_TRY(op->matmul(be, &xb, &att, &L->wo, NULL));
        /* MLP block: x += attn; xb = ffn_norm(x) */
        LISA_TRY(op->add_rmsnorm(be, &x, &xb, &xb, &L->ffn_norm, c->rms_norm_eps));
        if (n == 1 && L->w_gate_up.data) {
            LISA_TRY(op->matmul(be, &gate_up, &xb, &L->w_gate_up, NULL));
        } else {
            LISA_TRY(op->matmul(be, &gate, &xb, &L->w_gate, NULL));
            LISA_TRY(op->matmul(be, &up, &xb, &L->w_up, NULL));
        }
        LISA_TRY(op->swiglu(be, &gate, &gate, &up));
        LISA_TRY(op->matmul(be, &xb, &gate, &L->w_down, NULL));
        if (l + 1 < nl)
            LISA_TRY(op->add_rmsnorm(be, &x, &xb, &xb, &m->layers[l + 1].attn_norm, c->rms_norm_eps));
        else
            LISA_TRY(op->add(be, &x, &x, &xb));
    }
    if (!lisa_llama_model_is_last(m) || no == 0) return LISA_OK;
    lisa_tensor oidx = lisa_tensor_1d(s->out_idx.data, LISA_DTYPE_I32, no);
    lisa_tensor hout = view2(&s->hout, no, C);
    lisa_tensor lg = view2(&s->logits, no, V);
    lisa_tensor am = lisa_tensor_1d(s->argmax.data, LISA_DTYPE_I32, no);
    LISA_TRY(op->get_rows(be, &hout, &x, &oidx));
    LISA_TRY(op->rmsnorm(be, &hout, &hout, &m->norm, c->rms_norm_eps));
    LISA_TRY(op->matmul(be, &lg, &hout, &m->output, NULL));
    /* argmax on the logits in the compute dtype, as LISA does in bf16 */
    if (want_next) LISA_TRY(op->argmax(be, &am, &lg));
    return LISA_OK;
}

/* llama_forward_ops through a backend graph when the backend records them
 * and the call is decode-sized (n <= LISA_LLAMA_GRAPH_MAX_TOKENS): the first
 * call of each shape records its graph, later ones replay it, which saves
 * the per-op launch cost that dominates small batches. Any trouble
 * recording turns graphs off for the state and runs the ops directly. */
static lisa_status llama_run_ops(const lisa_llama_model *m, lisa_llama_state *s, int64_t n,
                                 int64_t no, int tokens, int want_next) {
    lisa_backend *be = s->be;
    const lisa_backend_ops *op = be->ops;
    if (!op->graph_begin || s->graphs_off || n > LISA_LLAMA_GRAPH_MAX_TOKENS)
        return llama_forward_ops(m, s, n, no, tokens, want_next);
    for (int i = 0; i < s->n_graphs; i++) {
        const lisa_llama_graph *g = &s->graphs[i];
        if (g->model == m && g->n == n && g->n_out == no && g->tokens == tokens &&
            g->next == want_next)
            return op->graph_launch(be, g->graph);
    }
    if (s->n_graphs == LISA_LLAMA_GRAPHS) return llama_forward_ops(m, s, n, no, tokens, want_next);
    void *graph = NULL;
    lisa_status st = op->graph_begin(be);
    if (st == LISA_OK) {
        /* recorded, not run: a failure here has no side effects */
        st = llama_forward_ops(m, s, n, no, tokens, want_next);
        lisa_status ge = op->graph_end(be, &graph);
        if (st == LISA_OK) st = ge;
        else if (ge == LISA_OK) op->graph_free(be, graph);
    }
    if (st != LISA_OK) {
        /* left for the caller to show, once (unless graphs are off by
         * choice): a silent fallback would hide a slow decode */
        if (st != LISA_ERR_UNSUPPORTED)
            snprintf(s->warning, sizeof s->warning,
                     "recording a %s graph failed, running op by op: %s", op->name,
                     lisa_error_get());
        s->graphs_off = 1;
        return llama_forward_ops(m, s, n, no, tokens, want_next);
    }
    lisa_llama_graph *g = &s->graphs[s->n_graphs++];
    g->model = m;
    g->graph = graph;
    g->n = n;
    g->n_out = no;
    g->tokens = tokens;
    g->next = want_next;
    return op->graph_launch(be, graph);
}

/* A forward call up to its outputs: validates b, enqueues the inputs (seq,
 * pos, out_rows; tokens, host embeddings or the backend tensor x_in into
 * s->x) and the ops. Afterwards s->x holds the residual stream (n, C) and,
 * on the last range, s->hout, s->logits and s->argmax the n_out rows. */
static lisa_status llama_forward_enqueue(const lisa_llama_model *m, lisa_llama_state *s,
                                         const lisa_llama_batch *b, const lisa_tensor *x_in,
                                         int want_next) {
    LISA_TRY(llama_validate_batch(m, s, b, x_in != NULL));
    lisa_backend *be = s->be;
    const lisa_backend_ops *op = be->ops;
    int64_t n = b->n, C = m->cfg.hidden_size;
    int64_t no = lisa_llama_model_is_last(m) ? b->n_out : 0;
    lisa_tensor x = view2(&s->x, n, C);
    if (x_in && (x_in->dtype != m->dtype || lisa_tensor_nelem(x_in) != n * C))
        return lisa_error_set(LISA_ERR_SHAPE, "llama forward: input tensor of %lld %s values, "
                              "expected (%lld, %lld) %s", (long long)lisa_tensor_nelem(x_in),
                              lisa_dtype_name(x_in->dtype), (long long)n, (long long)C,
                              lisa_dtype_name(m->dtype));

    LISA_TRY(op->copy_to_backend(be, s->seq.data, 0, b->seq, (size_t)n * 4));
    LISA_TRY(op->copy_to_backend(be, s->pos.data, 0, b->pos, (size_t)n * 4));
    if (x_in)
        LISA_TRY(op->copy_backend(be, x.data, 0, x_in->data, 0, lisa_tensor_nbytes(&x)));
    else if (b->tokens)
        LISA_TRY(op->copy_to_backend(be, s->ids.data, 0, b->tokens, (size_t)n * 4));
    else
        LISA_TRY(llama_upload_rows(s, &x, b->embd));
    if (no > 0) LISA_TRY(op->copy_to_backend(be, s->out_idx.data, 0, b->out_rows, (size_t)no * 4));
    return llama_run_ops(m, s, n, no, !x_in && b->tokens != NULL, want_next);
}

lisa_status lisa_llama_forward_tensors(const lisa_llama_model *m, lisa_llama_state *s,
                                       const lisa_llama_batch *b, const lisa_tensor *x_in,
                                       lisa_tensor *x_out, float *logits, int32_t *next) {
    lisa_backend *be = s->be;
    const lisa_backend_ops *op = be->ops;
    int64_t C = m->cfg.hidden_size, V = m->cfg.vocab_size;
    int last = lisa_llama_model_is_last(m);
    if (!last && !x_out)
        return lisa_error_set(LISA_ERR_ARG, "llama forward: layers [%d, %d) need an output "
                              "tensor for the next range", m->layer_begin, m->layer_end);
    int64_t rows = last ? b->n_out : b->n;
    if (x_out && (x_out->dtype != m->dtype || lisa_tensor_nelem(x_out) != rows * C))
        return lisa_error_set(LISA_ERR_SHAPE, "llama forward: output tensor of %lld %s values, "
                              "expected (%lld, %lld) %s", (long long)lisa_tensor_nelem(x_out),
                              lisa_dtype_name(x_out->dtype), (long long)rows, (long long)C,
                              lisa_dtype_name(m->dtype));
    LISA_TRY(llama_forward_enqueue(m, s, b, x_in, next != NULL));
    const lisa_tensor *src = last ? &s->hout : &s->x;
    if (x_out && rows > 0)
        LISA_TRY(op->copy_backend(be, x_out->data, 0, src->data, 0, lisa_tensor_nbytes(x_out)));
    if (!last || rows == 0 || (!logits && !next)) return LISA_OK;
    lisa_tensor lg = view2(&s->logits, rows, V);
    if (logits) LISA_TRY(llama_download(s, &lg, &s->logits32, logits));
    if (next) LISA_TRY(op->copy_to_host(be, next, s->argmax.data, 0, (size_t)rows * 4));
    return op->synchronize(be);
}

int lisa_llama_warning_take(lisa_llama_state *s, char *buf, size_t size) {
    if (!s->warning[0]) return 0;
    if (size > 0) snprintf(buf, size, "%s", s->warning);
    s->warning[0] = 0;
    return 1;
}

lisa_status lisa_llama_forward(const lisa_llama_model *m, lisa_llama_state *s,
                               const lisa_llama_batch *b, float *logits, float *hidden,
                               int32_t *next) {
    lisa_backend *be = s->be;
    const lisa_backend_ops *op = be->ops;
    const lisa_llama_config *c = &m->cfg;
    int64_t n = b->n, C = c->hidden_size, V = c->vocab_size;
    int64_t no = lisa_llama_model_is_last(m) ? b->n_out : 0;
    LISA_TRY(llama_forward_enqueue(m, s, b, NULL, next != NULL));

    if (!lisa_llama_model_is_last(m)) {
        lisa_tensor x = view2(&s->x, n, C);
        if (hidden) LISA_TRY(llama_download(s, &x, &s->io, hidden));
        return op->synchronize(be);
    }
    if (no == 0) return op->synchronize(be);
    lisa_tensor hout = view2(&s->hout, no, C);
    lisa_tensor lg = view2(&s->logits, no, V);
    if (hidden) LISA_TRY(llama_download(s, &hout, &s->io, hidden));
    if (logits) LISA_TRY(llama_download(s, &lg, &s->logits32, logits));
    if (next) LISA_TRY(op->copy_to_host(be, next, s->argmax.data, 0, (size_t)no * 4));
    return op->synchronize(be);
}

/* --- sizing without a model --- */

static size_t llama_round(size_t bytes) {
    return (bytes + LLAMA_ALIGN - 1) / LLAMA_ALIGN * LLAMA_ALIGN;
}

size_t lisa_llama_model_bytes(const lisa_llama_config *cfg, lisa_dtype dtype, int l0, int l1) {
    return lisa_llama_model_bytes_quant(cfg, dtype, LISA_DTYPE_F32, l0, l1);
}

/* Bytes of a (rows, K) weight: in the block type q when it quantizes (q a
 * block type and K whole blocks), else in dtype; rounded as carved. */
static size_t llama_matrix_bytes(size_t rows, size_t K, lisa_dtype dtype, lisa_dtype q) {
    lisa_dtype t = lisa_dtype_is_quant(q) && K % LISA_QK == 0 ? q : dtype;
    return llama_round(rows * lisa_dtype_row_bytes(t, (int64_t)K));
}

size_t lisa_llama_model_bytes_quant(const lisa_llama_config *cfg, lisa_dtype dtype,
                                    lisa_dtype quant, int l0, int l1) {
    int L = cfg->num_hidden_layers;
    if (l1 < 0) l1 = L;
    if (l0 < 0 || l0 >= l1 || l1 > L) return 0;
    size_t es = lisa_dtype_size(dtype);
    size_t C = (size_t)cfg->hidden_size, I = (size_t)cfg->intermediate_size,
           V = (size_t)cfg->vocab_size;
    size_t HD = (size_t)cfg->num_attention_heads * (size_t)cfg->head_dim;
    size_t KVD = (size_t)cfg->num_key_value_heads * (size_t)cfg->head_dim;
    int first = l0 == 0, last = l1 == L, has_lm_head = !cfg->tie_word_embeddings;
    lisa_dtype q = quant;
    size_t layer = 2 * llama_round(C * es) + llama_matrix_bytes(HD, C, dtype, q) +
                   2 * llama_matrix_bytes(KVD, C, dtype, q) + llama_matrix_bytes(C, HD, dtype, q) +
                   2 * llama_matrix_bytes(I, C, dtype, q) + llama_matrix_bytes(C, I, dtype, q);
    size_t total = (size_t)(l1 - l0) * layer;
    if (first || (last && !has_lm_head)) total += llama_round(V * C * es);
    if (last)
        total += llama_round(C * es) + (has_lm_head ? llama_matrix_bytes(V, C, dtype, q) : 0);
    return total;
}

size_t lisa_llama_kv_bytes(const lisa_llama_config *cfg, lisa_dtype dtype, int l0, int l1,
                           int max_seqs, int max_ctx) {
    int L = cfg->num_hidden_layers;
    if (l1 < 0) l1 = L;
    if (l0 < 0 || l0 >= l1 || l1 > L || max_seqs < 1 || max_ctx < 1) return 0;
    size_t rows = ((size_t)max_ctx + 15) / 16 * 16;
    size_t kv = (size_t)max_seqs * rows * (size_t)cfg->num_key_value_heads *
                (size_t)cfg->head_dim * lisa_dtype_size(dtype);
    return (size_t)(l1 - l0) * 2 * kv;
}

size_t lisa_llama_state_bytes(const lisa_llama_config *cfg, lisa_dtype dtype, int l0, int l1,
                              int max_seqs, int max_ctx, int max_tokens, int max_out) {
    size_t kv = lisa_llama_kv_bytes(cfg, dtype, l0, l1, max_seqs, max_ctx);
    if (!kv || max_tokens < 1 || max_out < 1) return 0;
    if (l1 < 0) l1 = cfg->num_hidden_layers;
    if (max_out > max_tokens) max_out = max_tokens;
    int last = l1 == cfg->num_hidden_layers;
    size_t es = lisa_dtype_size(dtype), i32 = 4, f32 = 4;
    size_t C = (size_t)cfg->hidden_size, I = (size_t)cfg->intermediate_size,
           V = (size_t)cfg->vocab_size, n = (size_t)max_tokens, no = (size_t)max_out;
    size_t H = (size_t)cfg->num_attention_heads, KVH = (size_t)cfg->num_key_value_heads,
           D = (size_t)cfg->head_dim;
    size_t b = 0;
    b += 2 * n * C * es;            /* x, xb */
    b += n * (H + 2 * KVH) * D * es; /* qkv */
    b += n * H * D * es;            /* att */
    b += n * 2 * I * es;            /* gate_up */
    b += 3 * n * i32;               /* ids, seq, pos */
    b += no * i32;                  /* out_idx */
    b += no * C * es;               /* hout */
    if (last) b += no * V * es;     /* logits */
    if (dtype != LISA_DTYPE_F32) {
        b += n * C * f32;           /* io */
        if (last) b += no * V * f32; /* logits32 */
    }
    b += no * i32;                  /* argmax */
    return kv + b;
}

size_t lisa_llama_model_weight_bytes(const lisa_llama_model *m) {
    size_t total = 0;
    const lisa_tensor *t[3] = {&m->tok_embeddings, &m->norm, &m->output};
    for (int i = 0; i < 3; i++) {
        if (!t[i]->data || (i == 2 && t[2]->data == t[0]->data)) continue;
        total += llama_round(lisa_tensor_nbytes(t[i]));
    }
    for (int l = 0; l < m->layer_end - m->layer_begin; l++) {
        const lisa_llama_layer *L = &m->layers[l];
        const lisa_tensor *w[9] = {&L->attn_norm, &L->wq,     &L->wk,   &L->wv,    &L->wo,
                                   &L->ffn_norm,  &L->w_gate, &L->w_up, &L->w_down};
        for (int i = 0; i < 9; i++)
            if (w[i]->data) total += llama_round(lisa_tensor_nbytes(w[i]));
    }
    return total;
}

size_t lisa_llama_state_alloc_bytes(const lisa_llama_state *s) {
    size_t total = 0;
    for (int l = 0; l < s->k_cache_n; l++) {
        if (s->k_cache[l].data) total += lisa_tensor_nbytes(&s->k_cache[l]);
        if (s->v_cache[l].data) total += lisa_tensor_nbytes(&s->v_cache[l]);
    }
    const lisa_tensor *scratch[] = {&s->x,   &s->xb,  &s->qkv, &s->att,     &s->gate_up,
                                    &s->ids, &s->seq, &s->pos, &s->out_idx, &s->hout,
                                    &s->logits, &s->argmax, &s->io, &s->logits32};
    for (size_t i = 0; i < sizeof scratch / sizeof scratch[0]; i++)
        if (scratch[i]->data) total += lisa_tensor_nbytes(scratch[i]);
    return total;
}
