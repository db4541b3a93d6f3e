/* llama.h: the LLaMA decoder for one contiguous layer range on one backend.
 *
 * A lisa_llama_model holds read-only weights for layers [layer_begin,
 * layer_end) plus the token embedding (first range) and the final norm and LM
 * head (last range). Loading one range per rank is how the cluster splits a
 * 13B model; a single process loads [0, L). Per-request state (KV cache
 * slots, scratch activations) lives in lisa_llama_state, reserved once for a
 * worst case (max sequences, max context, max tokens per forward) so the hot
 * path never allocates.
 *
 * Shapes: C hidden, I intermediate, H heads, KVH kv heads, D head dim,
 * V vocab, S sequence slots, Tmax context per slot, n tokens in a batch.
 *
 * Deliberately not here: tokenization, sampling policy, prompts, images. */
#ifndef LISA_LLAMA_H
#define LISA_LLAMA_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "llama-config.h"
#include "safetensors.h"
#include "weights.h"

typedef struct lisa_llama_layer {
    lisa_tensor attn_norm;  /* model.layers.N.input_layernorm.weight (C) */
    lisa_tensor wq;         /* model.layers.N.self_attn.q_proj.weight (H*D, C) */
    lisa_tensor wk;         /* model.layers.N.self_attn.k_proj.weight (KVH*D, C) */
    lisa_tensor wv;         /* model.layers.N.self_attn.v_proj.weight (KVH*D, C) */
    lisa_tensor wo;         /* model.layers.N.self_attn.o_proj.weight (C, H*D) */
    lisa_tensor ffn_norm;   /* model.layers.N.post_attention_layernorm.weight (C) */
    lisa_tensor w_gate;     /* model.layers.N.mlp.gate_proj.weight (I, C) */
    lisa_tensor w_up;       /* model.layers.N.mlp.up_proj.weight (I, C) */
    lisa_tensor w_down;     /* model.layers.N.mlp.down_proj.weight (C, I) */
    /* Views over wq|wk|wv (H*D + 2*KVH*D, C) and w_gate|w_up (2*I, C) where the
     * loader placed them back to back (data NULL otherwise): one-row calls
     * (batch-1 decode) then make one matmul of each group instead of 3 and 2. */
    lisa_tensor wqkv, w_gate_up;
} lisa_llama_layer;

typedef struct lisa_llama_model {
    lisa_llama_config cfg;
    int layer_begin, layer_end;   /* [l0, l1) of cfg.num_hidden_layers */
    lisa_tensor tok_embeddings;   /* model.embed_tokens.weight (V, C); first range only */
    lisa_tensor norm;             /* model.norm.weight (C); last range only */
    lisa_tensor output;           /* lm_head.weight (V, C), embed_tokens when tied; last range only */
    lisa_llama_layer *layers;     /* (l1 - l0) */
    lisa_dtype dtype;             /* activations and KV cache (F32 on the CPU) */
    lisa_backend *be;             /* not owned */
    lisa_safetensors *st;         /* owned when weights are used in place from the mmap */
    lisa_weights weights;         /* owned backend buffer holding every weight, when not
                                     used in place */
} lisa_llama_model;

/* Loads layers [layer_begin, layer_end) (layer_end < 0 means all) from a HF
 * LLaMA directory (config.json + safetensors), to compute in `dtype`. On a
 * host-memory backend (CPU: dtype must be F32) the tensors are used in place
 * from the mmap in their file dtype; otherwise they are converted to `dtype`
 * and uploaded once into one backend buffer carved by a size table. A missing
 * or mis-shaped tensor is an error naming it and both shapes. */
lisa_status lisa_llama_model_load(lisa_llama_model *m, const char *dir, lisa_backend *be,
                                  lisa_dtype dtype, int layer_begin, int layer_end);
/* lisa_llama_model_load with load-time quantization: `quant` Q8_0 or Q4_0
 * quantizes the projections and the LM head (not the embedding table or
 * norms) of a float checkpoint, byte for byte as `convert-lisa.py
 * --quantize` does; F32 keeps the file's types. Block-quantized tensors in
 * the file are used as they are, on every backend. */
lisa_status lisa_llama_model_load_quant(lisa_llama_model *m, const char *dir, lisa_backend *be,
                                        lisa_dtype dtype, lisa_dtype quant, int layer_begin,
                                        int layer_end);
/* Random weights for benchmarks: normal(0, 0.02)-like values, norms 1, stored
 * in `wdtype`, computing in `dtype` (on non-host backends a float wdtype must
 * equal dtype), for the given config and layer range. A block wdtype (Q8_0,
 * Q4_0) is given to the projections and LM head only; the embedding table
 * and norms are then BF16 on host backends and `dtype` elsewhere. */
lisa_status lisa_llama_model_init_random(lisa_llama_model *m, const lisa_llama_config *cfg,
                                         lisa_backend *be, lisa_dtype wdtype, lisa_dtype dtype,
                                         int layer_begin, int layer_end, uint64_t seed);
void lisa_llama_model_free(lisa_llama_model *m);
int lisa_llama_model_is_first(const lisa_llama_model *m);
int lisa_llama_model_is_last(const lisa_llama_model *m);

/* A recorded forward call (backend graph) and the shape it was recorded for. */
typedef struct lisa_llama_graph {
    const void *model;
    void *graph;
    int64_t n, n_out;
    int tokens, next;
} lisa_llama_graph;

#define LISA_LLAMA_GRAPHS 64            /* recorded shapes per state */
#define LISA_LLAMA_GRAPH_MAX_TOKENS 64  /* larger calls run op by op */

typedef struct lisa_llama_state {
    int max_seqs;     /* S */
    int max_ctx;      /* Tmax */
    int max_tokens;   /* n per forward call */
    int max_out;      /* rows per forward call whose outputs are wanted */
    lisa_tensor *k_cache, *v_cache;  /* per layer (S, Tmax, KVH, D), model dtype */
    /* scratch in the model dtype, (max_tokens, ...) */
    lisa_tensor x;      /* (n, C) residual stream */
    lisa_tensor xb;     /* (n, C) normed */
    lisa_tensor qkv;    /* q (n, H, D), k (n, KVH, D), v (n, KVH, D) of a call of n
                           rows, one after another (k at n*H*D) */
    lisa_tensor att;    /* (n, H*D) */
    lisa_tensor gate_up; /* gate (n, I) then up (n, I) */
    lisa_tensor ids;    /* (n) I32 */
    lisa_tensor seq;    /* (n) I32 */
    lisa_tensor pos;    /* (n) I32 */
    lisa_tensor out_idx;  /* (max_out) I32 */
    lisa_tensor hout;     /* (max_out, C) */
    lisa_tensor logits;   /* (max_out, V) */
    lisa_tensor io;       /* (max_tokens, C) F32 host-exchange staging; non-F32 models */
    lisa_tensor logits32; /* (max_out, V) F32; non-F32 models */
    lisa_tensor argmax;   /* (max_out) I32 */
    int k_cache_n;        /* layers with a cache */
    /* decode-sized forward calls recorded as backend graphs (CUDA); off
     * when the backend records none (lisa_backend_graphs_enabled: its
     * no_graphs param) or after a failed recording */
    lisa_llama_graph graphs[LISA_LLAMA_GRAPHS];
    int n_graphs, graphs_off;
    char warning[320];    /* pending warning, "" when none (lisa_llama_warning_take) */
    lisa_backend *be;
} lisa_llama_state;

/* Reserves KV cache and scratch for the worst case, in the model's dtype,
 * and the backend's op scratch for it (lisa_backend_reserve). Fails cleanly
 * (with the byte count) when memory is short. */
lisa_status lisa_llama_state_init(lisa_llama_state *s, const lisa_llama_model *m, int max_seqs,
                                  int max_ctx, int max_tokens, int max_out);
void lisa_llama_state_free(lisa_llama_state *s);

/* One forward call over n packed tokens of any mix of sequences.
 * Input: `tokens` (n) on the first range (or `embd` (n, C) given instead:
 * LISA splices image features this way; on later ranges the previous range's
 * residual). Each token i belongs to slot seq[i] at position pos[i] and its
 * K/V are written there; a sequence's earlier positions must already be in
 * the cache (or in this batch, before it).
 * Output, for the `n_out` rows out_rows[]:
 *  - last range: `logits` (n_out, V), `hidden` (n_out, C) final-norm hidden
 *    states, `next` (n_out) greedy ids (argmax, ties to the lowest id); each
 *    may be NULL when not wanted;
 *  - other ranges: `hidden` (n, C) residual stream of every token (n_out
 *    ignored), for the next range.
 * Host pointers throughout. Invalid ids, slots or positions are LISA_ERR_ARG. */
typedef struct lisa_llama_batch {
    int n;
    const int32_t *tokens;   /* (n) or NULL */
    const float *embd;       /* (n, C) or NULL */
    const int32_t *seq;      /* (n) */
    const int32_t *pos;      /* (n) */
    int n_out;
    const int32_t *out_rows; /* (n_out) indices into the batch */
} lisa_llama_batch;

lisa_status lisa_llama_forward(const lisa_llama_model *m, lisa_llama_state *s,
                               const lisa_llama_batch *b, float *logits, float *hidden,
                               int32_t *next);

/* The same forward call for a pipeline stage, with the residual stream
 * passed as backend tensors in the model dtype, never through host fp32.
 *  - x_in (n, C): the previous range's x_out, in memory of s's backend or
 *    of another backend of the same kind (copied in with copy_backend); NULL
 *    on the first range, which then takes b->tokens or b->embd as above.
 *  - x_out: other ranges: (n, C) residual stream for the next range
 *    (required); last range: (n_out, C) final-norm hidden states of the
 *    out_rows, or NULL. Its memory belongs to the caller.
 *  - logits (n_out, V) and next (n_out), host, last range only, may be NULL.
 * b gives n, seq, pos, n_out and out_rows as for lisa_llama_forward.
 * Asynchronous unless logits or next are wanted: it returns once the work
 * is enqueued on s's backend, so the caller records an event (or
 * synchronizes) before another stream reads x_out; b's arrays (and
 * tokens/embd) must stay valid until then. Validation as for
 * lisa_llama_forward; a tensor of the wrong dtype or size is LISA_ERR_SHAPE. */
lisa_status lisa_llama_forward_tensors(const lisa_llama_model *m, lisa_llama_state *s,
                                       const lisa_llama_batch *b, const lisa_tensor *x_in,
                                       lisa_tensor *x_out, float *logits, int32_t *next);

/* Copies the pending warning of s (a failed graph recording that turned
 * graphs off, say) into buf, NUL-terminated and cut to size, and clears it;
 * returns 1 when there was one, 0 otherwise. For the caller to show: the
 * library does not print. */
int lisa_llama_warning_take(lisa_llama_state *s, char *buf, size_t size);

/* Embedding rows for tokens (n) into out (n, C), host memory; first range only. */
lisa_status lisa_llama_embed(const lisa_llama_model *m, lisa_llama_state *s, const int32_t *tokens,
                             int n, float *out);
/* Input rows of a prompt with extra rows spliced in at a placeholder (LLaVA's
 * image features): out (n_ids - 1 + n_extra, C) = embed(ids[:pos]) ++ extra
 * (n_extra, C) ++ embed(ids[pos+1:]), host memory; ids[pos] is not embedded.
 * Embeds max_tokens ids at a time. First range only. */
lisa_status lisa_llama_embed_splice(const lisa_llama_model *m, lisa_llama_state *s,
                                    const int32_t *ids, size_t n_ids, size_t pos,
                                    const float *extra, size_t n_extra, float *out);

/* --- sizing without a model (lisa cluster plan) --- */

/* Weight bytes of layers [l0, l1) (l1 < 0: all) of a model of cfg's shape
 * converted to dtype, as the loader lays them out in one backend buffer on
 * a non-host backend: each tensor rounded up to the loader's 256-byte
 * alignment; the embedding on the first range, the final norm and LM head
 * on the last, and on a last range without its own LM head (tied
 * embeddings, cfg->tie_word_embeddings) the embedding instead, once when
 * the range is also the first. 0 for an invalid range. */
size_t lisa_llama_model_bytes(const lisa_llama_config *cfg, lisa_dtype dtype, int l0, int l1);
/* lisa_llama_model_bytes with the projections and LM head in the block
 * type `quant` where their rows are whole blocks (load-time quantization or
 * a converted --quantize checkpoint; random weights of that type on a
 * non-host backend); embeddings and norms in dtype. quant F32: as above. */
size_t lisa_llama_model_bytes_quant(const lisa_llama_config *cfg, lisa_dtype dtype,
                                    lisa_dtype quant, int l0, int l1);
/* KV-cache bytes lisa_llama_state_init reserves for that range in dtype:
 * per layer K and V of (max_seqs, max_ctx rounded up to 16, KVH, D). */
size_t lisa_llama_kv_bytes(const lisa_llama_config *cfg, lisa_dtype dtype, int l0, int l1,
                           int max_seqs, int max_ctx);
/* Every byte lisa_llama_state_init allocates for that range and sizes:
 * the KV cache above plus the scratch tensors (residual stream, q|k|v,
 * attention, gate|up, index vectors, output rows, logits on the last range,
 * the fp32 io and logits32 staging of non-F32 models). max_out is clamped
 * to max_tokens as init does. It does not include the backend's own op
 * scratch, which lisa_backend_reserve may grow but which LLaMA's shapes
 * (K <= 1M elements, context <= 1M) never do: that is fixed per backend. */
size_t lisa_llama_state_bytes(const lisa_llama_config *cfg, lisa_dtype dtype, int l0, int l1,
                              int max_seqs, int max_ctx, int max_tokens, int max_out);
/* What a loaded model's distinct weight tensors occupy, each rounded up to
 * 256 bytes, in the dtypes they hold: on a non-host backend the size of its
 * weight buffer (equal to lisa_llama_model_bytes in the compute dtype); on
 * the CPU the mmap'd bytes in the file's dtype. */
size_t lisa_llama_model_weight_bytes(const lisa_llama_model *m);
/* The bytes of the tensors an initialised state holds (KV cache and
 * scratch), from their shapes: equal to lisa_llama_state_bytes for the
 * state's model and sizes. */
size_t lisa_llama_state_alloc_bytes(const lisa_llama_state *s);

#endif
