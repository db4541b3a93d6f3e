/* backend.h: the backend seam. Tensors, device memory, streams and the ops
 * the models are built from.
 *
 * A backend is a struct of function pointers (lisa_backend_ops) plus an
 * opaque context, in the manner of ggml-backend. The CPU backend (cpu/) is
 * the oracle: every other backend (cuda/) is tested op by op against it.
 *
 * Conventions
 *  - Shapes are written in torch order, outermost first: a (T, C) tensor has
 *    shape[0] = T rows of C contiguous elements. All tensors are contiguous.
 *  - Activations are F32 on the CPU; the CUDA backend runs them in F32, F16
 *    or BF16 (arithmetic inside a kernel is fp32 either way). CPU weights may
 *    be F32, F16, BF16, Q8_0 or Q4_0 (kept in the file dtype); CUDA matmul
 *    weights must have the activations' dtype (converted once at upload) or
 *    be Q8_0/Q4_0 (kept, dequantized inside the matmul). A block-type
 *    weight's product is x @ dequant(w)^T with dequant exact in fp32 (see
 *    dtype.h), on every backend; the CPU's packed layouts of them
 *    (Q8_0X16/Q4_0X16, made at load) give q8(x) @ dequant(w)^T instead,
 *    each activation row rounded to Q8_0 per block as llama.cpp does.
 *  - Every op is enqueued on the backend's stream: it may return before the
 *    result is ready; lisa_backend_synchronize() waits. The CPU backend is
 *    synchronous.
 *  - Ops return LISA_OK or a status with lisa_error_set() called; shape
 *    mismatches are programmer errors in the model code and are asserted.
 *  - Ops do not allocate. Scratch an op needs (the CPU's widened weight
 *    tiles, attention scores, ...) is reserved at init for a stated default
 *    worst case and grows only through lisa_backend_reserve(), which model
 *    states call from their init with their largest shapes; an op whose need
 *    exceeds the reservation fails with LISA_ERR_ARG naming the field of
 *    lisa_backend_reserve to raise.
 *  - A backend is used by one host thread at a time.
 *  - Behaviour switches (CUDA's GEMV kernel, per-launch synchronize, graph
 *    recording) are fields of lisa_backend_params; the library never reads
 *    the environment (lisa_backend_params_from_env() is for programs).
 *
 * This file deliberately knows nothing of models, tokens, requests, MPI or
 * Redis.
 *
 * Checklist when adding an op:
 *  1. a member in lisa_backend_ops with a contract comment (shapes);
 *  2. the CPU implementation in cpu/ (the reference), with any scratch it
 *     needs taken from the reservation (cpu-internal.h), never malloc'd;
 *  3. the CUDA twin in cuda/ and a case in the cross-backend op test;
 *  4. a unit test in tests/unit/test-ops.c. */
#ifndef LISA_BACKEND_H
#define LISA_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LISA_MAX_DIMS 4

typedef struct lisa_backend lisa_backend;
/* A point in a backend's stream (cudaEvent_t on CUDA); opaque. */
typedef struct lisa_event lisa_event;

/* Elementwise activations. NOTE: add new kinds at the end. */
typedef enum {
    LISA_ACT_GELU = 0,    /* exact: 0.5 x (1 + erf(x / sqrt 2)) (torch nn.GELU) */
    LISA_ACT_QUICK_GELU,  /* x * sigmoid(1.702 x) (CLIP) */
    LISA_ACT_RELU,
    LISA_ACT_SILU
} lisa_act;

typedef struct lisa_tensor {
    void *data;                     /* backend memory (host for CPU) */
    lisa_dtype dtype;
    int ndim;
    int64_t shape[LISA_MAX_DIMS];   /* torch order, outermost first */
} lisa_tensor;

/* Number of elements and of bytes of t. */
int64_t lisa_tensor_nelem(const lisa_tensor *t);
size_t lisa_tensor_nbytes(const lisa_tensor *t);
/* A tensor header over existing memory; shape given as ndim int64 values. */
lisa_tensor lisa_tensor_view(void *data, lisa_dtype dtype, int ndim, const int64_t *shape);
/* Shorthands for 1-D and 2-D views. */
lisa_tensor lisa_tensor_1d(void *data, lisa_dtype dtype, int64_t n0);
lisa_tensor lisa_tensor_2d(void *data, lisa_dtype dtype, int64_t n0, int64_t n1);
/* Rows [r0, r0+n) of a tensor, viewed as a tensor with shape[0] = n. */
lisa_tensor lisa_tensor_rows(const lisa_tensor *t, int64_t r0, int64_t n);

/* The largest op shapes a model state will run, in the seam's terms, so a
 * backend can reserve its scratch once (lisa_backend_reserve). A zero field
 * asks for nothing beyond the backend's default; reservations only grow. */
typedef struct lisa_backend_reserve_req {
    int64_t matmul_k;          /* largest K of matmul (x (M, K)) */
    int64_t attention_ctx;     /* largest Tmax of attention's caches (S, Tmax, KVH, D) */
    int64_t attention_full_lk; /* largest Lk of attention_full */
    int64_t attention_full_d;  /* largest D of attention_full */
    int64_t conv_t_out;        /* largest out element count of conv_transpose_2x2 */
    int64_t conv_t_w;          /* largest weight element count (C*O*4) of conv_transpose_2x2 */
} lisa_backend_reserve_req;

typedef struct lisa_backend_ops {
    const char *name;
    /* Non-zero when backend memory is host memory: read-only weights may then
     * be used in place from the mmap'd checkpoint instead of uploaded. */
    int host_memory;
    /* Non-zero (host backends only): Q8_0/Q4_0 matmul weights with a
     * multiple of LISA_PACK_ROWS rows are kept in their packed layouts
     * (Q8_0X16/Q4_0X16, dtype.h), made by the loader, for kernels that
     * quantize the activations too (kernels/cpu/matmul-cpu.h). */
    int packs_quant;

    /* --- memory and streams --- */
    /* Allocates nbytes of backend memory (zeroed), aligned to 64 bytes. */
    lisa_status (*buffer_alloc)(lisa_backend *be, size_t nbytes, void **out);
    void (*buffer_free)(lisa_backend *be, void *ptr);
    /* Host -> backend copy of n bytes into dst + offset. Asynchronous: `src`
     * must stay valid until the next synchronize. */
    lisa_status (*copy_to_backend)(lisa_backend *be, void *dst, size_t offset,
                                   const void *src, size_t n);
    /* Backend -> host copy. Asynchronous like copy_to_backend. */
    lisa_status (*copy_to_host)(lisa_backend *be, void *dst, const void *src,
                                size_t offset, size_t n);
    /* Waits until everything enqueued has finished. */
    lisa_status (*synchronize)(lisa_backend *be);
    /* Optional (NULL where a backend has none): ops called between
     * graph_begin and graph_end are recorded, not run, into a graph that
     * graph_launch replays with the same tensors (their contents may change
     * between replays, their addresses and shapes may not). Only ops may be
     * called while recording: no copies, no synchronize. Replaying saves the
     * per-op launch cost of decode steps. On a graph_end failure nothing is
     * left recording and the caller runs the ops directly. */
    lisa_status (*graph_begin)(lisa_backend *be);
    lisa_status (*graph_end)(lisa_backend *be, void **graph);
    lisa_status (*graph_launch)(lisa_backend *be, void *graph);
    void (*graph_free)(lisa_backend *be, void *graph);
    /* Backend -> backend copy of n bytes from src + src_offset to dst +
     * dst_offset, asynchronous on the stream. src may be memory of another
     * backend of the same kind (another stream or GPU: a pipeline stage
     * handing on its output); ranges must not overlap. */
    lisa_status (*copy_backend)(lisa_backend *be, void *dst, size_t dst_offset, const void *src,
                                size_t src_offset, size_t n);
    /* Host memory the backend copies to and from fastest (CUDA: pinned,
     * cudaHostAlloc; CPU: plain), nbytes at least, 64-byte aligned, contents
     * undefined. For staging activations between stages or ranks. */
    lisa_status (*host_alloc)(lisa_backend *be, size_t nbytes, void **out);
    void (*host_free)(lisa_backend *be, void *ptr);
    /* Events: event_record marks the current end of the stream; the event
     * is done once everything enqueued before it has finished. event_wait
     * makes this backend's stream wait for an event recorded on any backend
     * of the same kind (cudaStreamWaitEvent) without blocking the host.
     * event_query sets *done (1 done, 0 not yet) without blocking; an event
     * never recorded is done. event_synchronize blocks the host until the
     * event is done. The CPU backend is synchronous: its events are done
     * when recorded. Not while recording a graph. */
    lisa_status (*event_create)(lisa_backend *be, lisa_event **out);
    void (*event_free)(lisa_backend *be, lisa_event *ev);
    lisa_status (*event_record)(lisa_backend *be, lisa_event *ev);
    lisa_status (*event_wait)(lisa_backend *be, lisa_event *ev);
    lisa_status (*event_query)(lisa_backend *be, lisa_event *ev, int *done);
    lisa_status (*event_synchronize)(lisa_backend *be, lisa_event *ev);
    /* Optional (NULL: the backend needs no scratch beyond its default):
     * grows the op scratch to cover r (see lisa_backend_reserve). */
    lisa_status (*reserve)(lisa_backend *be, const lisa_backend_reserve_req *r);
    /* Host -> backend copy of n elements, converting from src_dtype (host)
     * to dst_dtype (backend), through staging memory. Used to upload weights
     * once in the compute dtype. Synchronous. */
    lisa_status (*upload_convert)(lisa_backend *be, void *dst, lisa_dtype dst_dtype,
                                  const void *src, lisa_dtype src_dtype, size_t n);

    /* --- ops --- */
    /* out (M, N) = x (M, K) @ w (N, K)^T [+ bias (N)]. w in any dtype
     * (a block type needs K % 32 == 0); bias may be NULL. out may not
     * alias x. The CPU's result for a row does not depend on the other rows
     * of the call (batch invariance, kernels/cpu/matmul-cpu.h). */
    lisa_status (*matmul)(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x,
                          const lisa_tensor *w, const lisa_tensor *bias);
    /* out (n, C) = table (V, C)[ids (n)]. Ids are validated by the caller. */
    lisa_status (*embedding)(lisa_backend *be, lisa_tensor *out, const lisa_tensor *table,
                             const lisa_tensor *ids);
    /* out (n, C) = x / sqrt(mean(x^2) + eps) * w (C). out may alias x. */
    lisa_status (*rmsnorm)(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x,
                           const lisa_tensor *w, float eps);
    /* Fused residual add and RMSNorm: x (n, C) += d (n, C), rounded to x's
     * dtype; then out (n, C) = rmsnorm(x) * w as in rmsnorm. out may alias d. */
    lisa_status (*add_rmsnorm)(lisa_backend *be, lisa_tensor *x, const lisa_tensor *d,
                               lisa_tensor *out, const lisa_tensor *w, float eps);
    /* In place rotary embedding in HF's rotate-half layout on x (n, H, D),
     * position pos (n) per row, inv_freq[i] = theta^(-2i/D). */
    lisa_status (*rope)(lisa_backend *be, lisa_tensor *x, const lisa_tensor *pos, float theta);
    /* Writes k, v (n, KVH, D) into the caches (S, Tmax, KVH, D) at
     * [seq[i], pos[i]]. Positions are validated by the caller. */
    lisa_status (*kv_store)(lisa_backend *be, lisa_tensor *kcache, lisa_tensor *vcache,
                            const lisa_tensor *k, const lisa_tensor *v,
                            const lisa_tensor *seq, const lisa_tensor *pos);
    /* Causal attention over the cache. q (n, H, D); row i attends to
     * cache[seq[i], 0..pos[i]] inclusive; H % KVH == 0, head h reads kv head
     * h / (H / KVH). out (n, H*D). Scale 1/sqrt(D), softmax in fp32. */
    lisa_status (*attention)(lisa_backend *be, lisa_tensor *out, const lisa_tensor *q,
                             const lisa_tensor *kcache, const lisa_tensor *vcache,
                             const lisa_tensor *seq, const lisa_tensor *pos);
    /* out (n, I) = silu(gate (n, I)) * up (n, I). out may alias gate. */
    lisa_status (*swiglu)(lisa_backend *be, lisa_tensor *out, const lisa_tensor *gate,
                          const lisa_tensor *up);
    /* out = a + b, same shapes. out may alias a or b. */
    lisa_status (*add)(lisa_backend *be, lisa_tensor *out, const lisa_tensor *a,
                       const lisa_tensor *b);
    /* Row-wise softmax of x (n, V) in place. */
    lisa_status (*softmax)(lisa_backend *be, lisa_tensor *x);
    /* out (n) I32 = argmax over each row of x (n, V); ties go to the lowest index. */
    lisa_status (*argmax)(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x);
    /* out (n, C) = src (S, C) rows idx (n): gathers activation rows. */
    lisa_status (*get_rows)(lisa_backend *be, lisa_tensor *out, const lisa_tensor *src,
                            const lisa_tensor *idx);

    /* --- vision ops: images and tokens are channels-last, (B, H, W, C) --- */
    /* out (n, C) = (x - mean) / sqrt(var + eps) * w + b over the last dim,
     * biased variance (nn.LayerNorm; also SAM's LayerNorm2d on channels-last
     * data). w, b (C). out may alias x. */
    lisa_status (*layernorm)(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x,
                             const lisa_tensor *w, const lisa_tensor *b, float eps);
    /* out = act(x) elementwise. out may alias x. */
    lisa_status (*activation)(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x,
                              lisa_act act);
    /* out (n, N) += bias (N) broadcast over rows. */
    lisa_status (*add_bias)(lisa_backend *be, lisa_tensor *out, const lisa_tensor *bias);
    /* Non-causal batched attention. q (B, Lq, H, D); k, v (B, Lk, H, D);
     * out (B, Lq, H*D). score[i][j] = (q_i * scale) . k_j, plus, when rel_h
     * and rel_w (2*S-1, D) are given (SAM's decomposed relative positions,
     * Lq = Lk = S*S on an S x S grid, i = yi*S + xi), q_i . rel_h[yi - yj + S - 1]
     * + q_i . rel_w[xi - xj + S - 1] with the UNSCALED q. Softmax in fp32
     * over j. No score matrix is kept beyond one row. */
    lisa_status (*attention_full)(lisa_backend *be, lisa_tensor *out, const lisa_tensor *q,
                                  const lisa_tensor *k, const lisa_tensor *v, float scale,
                                  const lisa_tensor *rel_h, const lisa_tensor *rel_w);
    /* Patches for a convolution as a matmul. x (B, H, W, C) channels-last, or
     * (B, C, H, W) when channels_first; kernel k x k, stride s, zero padding
     * p. out (B*Ho*Wo, C*k*k), columns ordered (c, ky, kx) so a torch conv
     * weight (O, C, k, k) viewed as (O, C*k*k) multiplies it. */
    lisa_status (*im2col)(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x, int k,
                          int stride, int pad, int channels_first);
    /* ConvTranspose2d, kernel 2, stride 2: x (B, H, W, C) -> out (B, 2H, 2W, O),
     * w (C, O, 2, 2) in torch layout, bias (O) or NULL:
     * out[2y+a][2x+b][o] = bias[o] + sum_c x[y][x][c] * w[c][o][a][b]. */
    lisa_status (*conv_transpose_2x2)(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x,
                                      const lisa_tensor *w, const lisa_tensor *bias);
    /* SAM window partition: x (B, H, W, C) zero-padded at the bottom/right to
     * multiples of ws -> out (B*nh*nw, ws*ws, C), window index wy*nw + wx. */
    lisa_status (*window_partition)(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x,
                                    int ws);
    /* Inverse of window_partition, cropping the padding: x (B*nh*nw, ws*ws, C)
     * -> out (B, H, W, C) with H, W taken from out. */
    lisa_status (*window_unpartition)(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x,
                                      int ws);
    /* torch F.interpolate(mode="bilinear", align_corners=False, no antialias)
     * of the top-left crop [0, hc) x [0, wc) of planes x (N, H, W) to
     * out (N, Ho, Wo). hc = H, wc = W resizes the whole plane. */
    lisa_status (*resize_bilinear)(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x,
                                   int hc, int wc);
    /* out (n, c) = columns [c0, c0 + c) of src (n, C). */
    lisa_status (*copy_cols)(lisa_backend *be, lisa_tensor *out, const lisa_tensor *src, int c0);
    /* out (B, C, R) = x (B, R, C) transposed per batch (tokens <-> planes). */
    lisa_status (*transpose)(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x);

    /* out = x converted to out's dtype (same element count; F32/F16/BF16). */
    lisa_status (*convert)(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x);

    void (*free)(lisa_backend *be);
} lisa_backend_ops;

typedef enum {
    LISA_BACKEND_CPU = 0,
    LISA_BACKEND_CUDA
} lisa_backend_kind;

/* The CPU matmul's kernels (kernels/cpu/matmul-cpu.h): the best the CPU
 * runs, or one forced (falling back to GENERIC when the CPU lacks it). */
typedef enum {
    LISA_CPU_ISA_BEST = 0,
    LISA_CPU_ISA_AVX512,
    LISA_CPU_ISA_AVX2,
    LISA_CPU_ISA_GENERIC
} lisa_cpu_isa;

/* How to create a backend. Zero switches are the defaults. */
typedef struct lisa_backend_params {
    lisa_backend_kind kind;
    int device;           /* GPU index (CUDA); ignored on the CPU */
    int threads;          /* CPU threads; <= 0: all cores */
    int sync_each_launch; /* CUDA: synchronize after every kernel launch, so an
                             asynchronous fault names its kernel; no graphs then */
    int no_gemv;          /* CUDA: decode-sized bf16/fp16 matmuls on cuBLASLt
                             instead of the GEMV kernel (A/B timing) */
    int no_graphs;        /* record no graphs (graph_begin: LISA_ERR_UNSUPPORTED) */
    lisa_cpu_isa cpu_isa; /* CPU: the matmul kernels' instruction set */
    int cpu_bf16_dot;     /* CPU: bf16 weights multiply activations rounded to
                             bf16 (AVX512-BF16, llama.cpp's BF16 numerics; see
                             cpu/matmul-cpu.h); ignored where the CPU lacks it */
} lisa_backend_params;

struct lisa_backend {
    const lisa_backend_ops *ops;
    void *ctx;
    lisa_backend_params params; /* what it was created with */
};

/* Default params for a kind, device and CPU thread count. */
lisa_backend_params lisa_backend_params_default(lisa_backend_kind kind, int device, int threads);
/* For programs and tests, never called by the library: overlays the
 * environment's switches on p: LISA_CUDA_SYNC=1 (sync_each_launch),
 * LISA_GEMV=0 (no_gemv), LISA_GRAPHS=0 (no_graphs), LISA_CPU_ISA=avx512,
 * avx2 or generic (cpu_isa), LISA_CPU_BF16_DOT=1 (cpu_bf16_dot). */
void lisa_backend_params_from_env(lisa_backend_params *p);
/* Creates a backend. Returns LISA_ERR_UNSUPPORTED when the build lacks the
 * backend (or, for CUDA, no device is present). */
lisa_status lisa_backend_init_params(lisa_backend **out, const lisa_backend_params *p);
/* Shorthand with default switches: `device` selects a GPU for CUDA,
 * `nthreads` <= 0 means all cores (CPU). Reads no environment. */
lisa_status lisa_backend_init(lisa_backend **out, lisa_backend_kind kind, int device, int nthreads);
void lisa_backend_free(lisa_backend *be);
/* Non-zero when the backend records graphs (graph_begin is offered and
 * graphs are not switched off in its params). */
int lisa_backend_graphs_enabled(const lisa_backend *be);
/* Grows the backend's op scratch to cover the shapes in r; called by model
 * states at init, never on the hot path. LISA_ERR_NOMEM when it cannot. */
lisa_status lisa_backend_reserve(lisa_backend *be, const lisa_backend_reserve_req *r);

/* Convenience: allocate a tensor of the given shape in backend memory. */
lisa_status lisa_backend_tensor_alloc(lisa_backend *be, lisa_tensor *t, lisa_dtype dtype,
                                      int ndim, const int64_t *shape);
void lisa_backend_tensor_free(lisa_backend *be, lisa_tensor *t);
/* Host <-> backend whole-tensor copies, synchronous. */
lisa_status lisa_backend_tensor_set(lisa_backend *be, lisa_tensor *t, const void *host);
lisa_status lisa_backend_tensor_get(lisa_backend *be, const lisa_tensor *t, void *host);
lisa_status lisa_backend_synchronize(lisa_backend *be);

/* CPU backend constructors (cpu/backend-cpu.c); the first uses default
 * switches. */
lisa_status lisa_backend_cpu_init(lisa_backend **out, int nthreads);
lisa_status lisa_backend_cpu_init_params(lisa_backend **out, const lisa_backend_params *p);
/* The name ("avx512", "avx2", "generic") of the matmul kernels a CPU
 * backend runs; NULL for other backends. */
const char *lisa_backend_cpu_isa_name(const lisa_backend *be);
/* Non-zero when a CPU backend runs bf16 weights on the bf16 dot-product
 * path (asked for with cpu_bf16_dot, and the CPU has AVX512-BF16). */
int lisa_backend_cpu_bf16_dot(const lisa_backend *be);
/* A STREAM-like measure of host memory bandwidth (cpu/stream-cpu.c): the
 * best of `reps` passes, on `threads` threads (<= 0: all cores), over a
 * buffer of `bytes` (source and destination halves). read: bytes read per
 * second by a read-only pass; copy: bytes read plus written per second by
 * memcpy (STREAM's Copy counts both). */
typedef struct lisa_cpu_stream {
    int threads;
    size_t bytes;        /* bytes of the source buffer */
    double read_gb_s, copy_gb_s;
} lisa_cpu_stream;
lisa_status lisa_cpu_stream_measure(int threads, size_t bytes, int reps, lisa_cpu_stream *out);
/* CUDA backend constructors (cuda/backend-cuda.cu); only in CUDA builds.
 * LISA_ERR_UNSUPPORTED when no device is present. The first uses default
 * switches. */
lisa_status lisa_backend_cuda_init(lisa_backend **out, int device);
lisa_status lisa_backend_cuda_init_params(lisa_backend **out, const lisa_backend_params *p);
/* Non-zero when this build includes the CUDA backend. */
int lisa_backend_has_cuda(void);

#ifdef __cplusplus
}
#endif

#endif
