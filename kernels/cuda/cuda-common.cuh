/* cuda-common.cuh: shared internals of the CUDA backend: the context, the
 * error-checking macros, dtype load/store helpers and the op entry points
 * that backend-cuda.cu puts in the ops table.
 *
 * Every CUDA/cuBLAS call goes through CUDA_TRY/CUBLAS_TRY, which turn a
 * failure into LISA_ERR_BACKEND with the statement text, file and line. With
 * sync_each_launch in the backend's params (LISA_CUDA_SYNC=1 for the CLI)
 * every launch is followed by a stream synchronize, so asynchronous faults
 * are reported at the kernel that caused them. Deliberately not here: model
 * knowledge. */
#ifndef LISA_CUDA_COMMON_CUH
#define LISA_CUDA_COMMON_CUH

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "backend.h"

#define CUDA_TRY(stmt)                                                              \
    do {                                                                            \
        cudaError_t e_ = (stmt);                                                    \
        if (e_ != cudaSuccess)                                                      \
            return lisa_error_set(LISA_ERR_BACKEND, "cuda: %s failed: %s (%s:%d)",  \
                                  #stmt, cudaGetErrorString(e_), __FILE__, __LINE__); \
    } while (0)

#define CUBLAS_TRY(stmt)                                                            \
    do {                                                                            \
        cublasStatus_t e_ = (stmt);                                                 \
        if (e_ != CUBLAS_STATUS_SUCCESS)                                            \
            return lisa_error_set(LISA_ERR_BACKEND, "cublas: %s failed: status %d (%s:%d)", \
                                  #stmt, (int)e_, __FILE__, __LINE__);              \
    } while (0)

/* After a kernel launch: the launch error, and in debug mode the kernel's. */
#define CUDA_LAUNCH_CHECK(ctx)                                                      \
    do {                                                                            \
        CUDA_TRY(cudaGetLastError());                                               \
        if ((ctx)->debug_sync) CUDA_TRY(cudaStreamSynchronize((ctx)->stream));      \
    } while (0)

/* kernel<<<grid, block, smem, stream>>>(args), spelled as a macro so that
 * the CPU emulator (tests/cuda-emu), whose cuda_runtime.h defines it first,
 * can compile these files as plain C++ and run every kernel on the host. */
#ifndef CUDA_KERNEL
#define CUDA_KERNEL(kernel, grid, block, smem, stream) kernel<<<grid, block, smem, stream>>>
#endif

#define LISA_CUDA_GEMM_CACHE 64

typedef struct cuda_gemm_entry {
    int used;
    int64_t M, N, K;
    int64_t ldo;                /* leading dimension of out (N unless a column range) */
    lisa_dtype dtype;
    uint32_t align_w, align_x, align_out; /* pointer alignment classes (bytes, <= 256) */
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, c;
    cublasLtMatmulAlgo_t algo;
} cuda_gemm_entry;

typedef struct cuda_ctx {
    int device;
    int debug_sync;             /* params.sync_each_launch */
    int gemv;                   /* decode-sized matmuls by gemv_kernel (gemm.cu); !params.no_gemv */
    cudaStream_t stream;
    cublasLtHandle_t lt;
    void *workspace;            /* cuBLASLt workspace */
    size_t workspace_size;
    void *att_scratch;          /* split-key attention partials (attention.cu) */
    size_t att_scratch_size;
    void *quant_scratch;        /* dequantized weight tiles (gemm-quant.cu) */
    size_t quant_scratch_size;
    void *staging[2];           /* pinned host staging for uploads */
    cudaEvent_t staging_done[2];
    size_t staging_size;
    cuda_gemm_entry gemm[LISA_CUDA_GEMM_CACHE];
    int gemm_next;              /* round-robin eviction */
    char name[64];
} cuda_ctx;

static inline cuda_ctx *cuda_ctx_of(lisa_backend *be) { return (cuda_ctx *)be->ctx; }

/* fp32 load/store of activation types inside kernels. */
__device__ __forceinline__ float cu_ld(const float *p, int64_t i) { return p[i]; }
__device__ __forceinline__ float cu_ld(const __nv_bfloat16 *p, int64_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ float cu_ld(const __half *p, int64_t i) { return __half2float(p[i]); }
__device__ __forceinline__ void cu_st(float *p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void cu_st(__nv_bfloat16 *p, int64_t i, float v) { p[i] = __float2bfloat16(v); }
__device__ __forceinline__ void cu_st(__half *p, int64_t i, float v) { p[i] = __float2half(v); }

/* Reads element i of a tensor in any float dtype (weights, biases). */
__device__ __forceinline__ float ld_any(const void *p, lisa_dtype t, int64_t i) {
    if (t == LISA_DTYPE_BF16) return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    if (t == LISA_DTYPE_F16) return __half2float(((const __half *)p)[i]);
    return ((const float *)p)[i];
}

/* v rounded to T's precision, returned as fp32 (torch's cast to T and back). */
template <typename T> __device__ __forceinline__ float cu_round(float v) {
    T t[1];
    cu_st(t, 0, v);
    return cu_ld(t, 0);
}

/* A zero of type T (window padding). */
template <typename T> __device__ __forceinline__ T cu_round_zero() {
    T t[1];
    cu_st(t, 0, 0.0f);
    return t[0];
}

/* Sum over the block (blockDim.x a multiple of 32, at most 1024); every
 * thread gets the result. `sh` holds 32 floats. */
__device__ __forceinline__ float block_sum(float v, float *sh) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Maximum over the block, as block_sum. */
__device__ __forceinline__ float block_max(float v, float *sh) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : -INFINITY;
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Dispatches a templated launch over the activation dtype `dt`: the body
 * sees `T` as float, __nv_bfloat16 or __half. */
#define CUDA_DISPATCH_FLOAT(dt, ...)                                               \
    do {                                                                            \
        switch (dt) {                                                               \
        case LISA_DTYPE_F32: { typedef float T; __VA_ARGS__; } break;              \
        case LISA_DTYPE_BF16: { typedef __nv_bfloat16 T; __VA_ARGS__; } break;     \
        case LISA_DTYPE_F16: { typedef __half T; __VA_ARGS__; } break;             \
        default:                                                                    \
            return lisa_error_set(LISA_ERR_UNSUPPORTED, "cuda: dtype %s is not a float type", \
                                  lisa_dtype_name(dt));                             \
        }                                                                           \
    } while (0)

static inline unsigned cuda_blocks(int64_t n, int threads) {
    int64_t b = (n + threads - 1) / threads;
    return (unsigned)(b > 65535 * 16 ? 65535 * 16 : (b < 1 ? 1 : b));
}

/* op entry points (one family per .cu file) */
lisa_status cuda_op_matmul(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x,
                           const lisa_tensor *w, const lisa_tensor *bias);
void cuda_gemm_cache_free(cuda_ctx *c);
/* cuBLASLt: out (M, N), row m at out + m * ldo, = x (M, K) @ w (N, K)^T, all
 * in the activation dtype dt; no bias. */
lisa_status cuda_gemm(cuda_ctx *c, void *out, int64_t ldo, const void *x, const void *w, int64_t M,
                      int64_t N, int64_t K, lisa_dtype dt);
/* gemm-quant.cu: matmul with a Q8_0 / Q4_0 weight (cuda_op_matmul's
 * contract); the dequantization scratch that a matmul of K = matmul_k needs
 * in any activation dtype (one prefill tile). */
lisa_status cuda_matmul_quant(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x,
                              const lisa_tensor *w, const lisa_tensor *bias);
size_t cuda_quant_scratch_bytes(int64_t matmul_k);
lisa_status cuda_op_embedding(lisa_backend *be, lisa_tensor *out, const lisa_tensor *table,
                              const lisa_tensor *ids);
lisa_status cuda_op_get_rows(lisa_backend *be, lisa_tensor *out, const lisa_tensor *src,
                             const lisa_tensor *idx);
lisa_status cuda_op_swiglu(lisa_backend *be, lisa_tensor *out, const lisa_tensor *gate,
                           const lisa_tensor *up);
lisa_status cuda_op_add(lisa_backend *be, lisa_tensor *out, const lisa_tensor *a,
                        const lisa_tensor *b);
lisa_status cuda_op_convert(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x);
lisa_status cuda_op_kv_store(lisa_backend *be, lisa_tensor *kc, lisa_tensor *vc,
                             const lisa_tensor *k, const lisa_tensor *v, const lisa_tensor *seq,
                             const lisa_tensor *pos);
lisa_status cuda_op_add_bias(lisa_backend *be, lisa_tensor *out, const lisa_tensor *bias);
lisa_status cuda_op_rmsnorm(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x,
                            const lisa_tensor *w, float eps);
lisa_status cuda_op_add_rmsnorm(lisa_backend *be, lisa_tensor *x, const lisa_tensor *d,
                                lisa_tensor *out, const lisa_tensor *w, float eps);
lisa_status cuda_op_rope(lisa_backend *be, lisa_tensor *x, const lisa_tensor *pos, float theta);
lisa_status cuda_op_attention(lisa_backend *be, lisa_tensor *out, const lisa_tensor *q,
                              const lisa_tensor *kc, const lisa_tensor *vc,
                              const lisa_tensor *seq, const lisa_tensor *pos);
lisa_status cuda_op_softmax(lisa_backend *be, lisa_tensor *x);
lisa_status cuda_op_argmax(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x);
/* vision.cu */
lisa_status cuda_op_layernorm(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x,
                              const lisa_tensor *w, const lisa_tensor *b, float eps);
lisa_status cuda_op_activation(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x,
                               lisa_act act);
lisa_status cuda_op_attention_full(lisa_backend *be, lisa_tensor *out, const lisa_tensor *q,
                                   const lisa_tensor *k, const lisa_tensor *v, float scale,
                                   const lisa_tensor *rel_h, const lisa_tensor *rel_w);
lisa_status cuda_op_im2col(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x, int k,
                           int stride, int pad, int channels_first);
lisa_status cuda_op_conv_transpose_2x2(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x,
                                       const lisa_tensor *w, const lisa_tensor *bias);
lisa_status cuda_op_window_partition(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x,
                                     int ws);
lisa_status cuda_op_window_unpartition(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x,
                                       int ws);
lisa_status cuda_op_resize_bilinear(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x,
                                    int hc, int wc);
lisa_status cuda_op_copy_cols(lisa_backend *be, lisa_tensor *out, const lisa_tensor *src, int c0);
lisa_status cuda_op_transpose(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x);

#endif
