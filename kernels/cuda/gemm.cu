/* gemm.cu: matmul through cuBLASLt: out (M, N) = x (M, K) @ w (N, K)^T
 * [+ bias (N)], the CUDA twin of cpu_matmul.
 *
 * Row-major out^T is column-major (N, M), so cuBLASLt computes
 * out^T = op(W) x^T with W as a column-major (K, N) matrix transposed.
 * bf16/f16 operands accumulate in fp32 (CUBLAS_COMPUTE_32F); the fp32 path
 * uses CUBLAS_COMPUTE_32F too, i.e. no TF32, so it can be held to the CPU
 * oracle's tolerance. Descriptors and the heuristic's algorithm are cached
 * per (M, N, K, out's leading dimension, dtype, pointer alignments): decode
 * calls the same shapes
 * every step.
 *
 * Pointer alignment: the heuristic assumes 256-byte aligned A/B/C/D unless
 * told otherwise (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*_BYTES), and the models
 * pass row views into the middle of buffers (CLIP's patch rows at row 1 of
 * each image, SAM's per-mask hypernetwork rows), so the actual alignment of
 * each pointer (a power of two up to 256) is given to the heuristic and is
 * part of the cache key: an algorithm picked for aligned pointers is never
 * reused on less aligned ones.
 *
 * Quantized weights (Q8_0, Q4_0) are gemm-quant.cu's: cuda_op_matmul hands
 * them on, and that file calls cuda_gemm here for its dequantized tiles,
 * which write a column range of out (hence the leading dimension ldo). */
#include <string.h>

#include "cuda-common.cuh"

static cudaDataType_t cuda_type(lisa_dtype t) {
    switch (t) {
    case LISA_DTYPE_BF16: return CUDA_R_16BF;
    case LISA_DTYPE_F16: return CUDA_R_16F;
    default: return CUDA_R_32F;
    }
}

static void gemm_entry_free(cuda_gemm_entry *e) {
    if (!e->used) return;
    if (e->desc) cublasLtMatmulDescDestroy(e->desc);
    if (e->a) cublasLtMatrixLayoutDestroy(e->a);
    if (e->b) cublasLtMatrixLayoutDestroy(e->b);
    if (e->c) cublasLtMatrixLayoutDestroy(e->c);
    memset(e, 0, sizeof *e);
}

void cuda_gemm_cache_free(cuda_ctx *c) {
    for (int i = 0; i < LISA_CUDA_GEMM_CACHE; i++) gemm_entry_free(&c->gemm[i]);
}

/* The largest power of two (at most 256) that divides the address. */
static uint32_t ptr_align(const void *p) {
    uintptr_t a = (uintptr_t)p;
    if (a == 0) return 256;
    uintptr_t low = a & (~a + 1);
    return low >= 256 ? 256u : (uint32_t)low;
}

static lisa_status gemm_entry_make(cuda_ctx *c, cuda_gemm_entry *e, int64_t M, int64_t N, int64_t K,
                                   int64_t ldo, lisa_dtype dt, const uint32_t al[3]) {
    cudaDataType_t ty = cuda_type(dt);
    e->used = 1;
    e->M = M;
    e->N = N;
    e->K = K;
    e->ldo = ldo;
    e->dtype = dt;
    e->align_w = al[0];
    e->align_x = al[1];
    e->align_out = al[2];
    CUBLAS_TRY(cublasLtMatmulDescCreate(&e->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    CUBLAS_TRY(cublasLtMatmulDescSetAttribute(e->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CUBLAS_TRY(cublasLtMatmulDescSetAttribute(e->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    CUBLAS_TRY(cublasLtMatrixLayoutCreate(&e->a, ty, (uint64_t)K, (uint64_t)N, K)); /* W */
    CUBLAS_TRY(cublasLtMatrixLayoutCreate(&e->b, ty, (uint64_t)K, (uint64_t)M, K)); /* x */
    CUBLAS_TRY(cublasLtMatrixLayoutCreate(&e->c, ty, (uint64_t)N, (uint64_t)M, ldo)); /* out */
    cublasLtMatmulPreference_t pref;
    CUBLAS_TRY(cublasLtMatmulPreferenceCreate(&pref));
    size_t ws = c->workspace_size;
    cublasStatus_t s = cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    const cublasLtMatmulPreferenceAttributes_t align_attr[4] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    const uint32_t align_val[4] = {al[0], al[1], al[2], al[2]}; /* A = W, B = x, C = D = out */
    for (int i = 0; i < 4 && s == CUBLAS_STATUS_SUCCESS; i++)
        s = cublasLtMatmulPreferenceSetAttribute(pref, align_attr[i], &align_val[i],
                                                 sizeof align_val[i]);
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulAlgoGetHeuristic(c->lt, e->desc, e->a, e->b, e->c, e->c, pref, 1, &res,
                                           &found);
    cublasLtMatmulPreferenceDestroy(pref);
    CUBLAS_TRY(s);
    if (found < 1)
        return lisa_error_set(LISA_ERR_BACKEND,
                              "cublasLt: no algorithm for %s gemm M=%lld N=%lld K=%lld "
                              "(pointer alignments w %u, x %u, out %u bytes)",
                              lisa_dtype_name(dt), (long long)M, (long long)N, (long long)K,
                              al[0], al[1], al[2]);
    e->algo = res.algo;
    return LISA_OK;
}

static lisa_status gemm_entry_get(cuda_ctx *c, int64_t M, int64_t N, int64_t K, int64_t ldo,
                                  lisa_dtype dt, const uint32_t al[3], cuda_gemm_entry **out) {
    for (int i = 0; i < LISA_CUDA_GEMM_CACHE; i++) {
        cuda_gemm_entry *e = &c->gemm[i];
        if (e->used && e->M == M && e->N == N && e->K == K && e->ldo == ldo && e->dtype == dt &&
            e->align_w == al[0] && e->align_x == al[1] && e->align_out == al[2]) {
            *out = e;
            return LISA_OK;
        }
    }
    cuda_gemm_entry *e = &c->gemm[c->gemm_next];
    c->gemm_next = (c->gemm_next + 1) % LISA_CUDA_GEMM_CACHE;
    gemm_entry_free(e);
    lisa_status st = gemm_entry_make(c, e, M, N, K, ldo, dt, al);
    if (st != LISA_OK) {
        gemm_entry_free(e);
        return st;
    }
    *out = e;
    return LISA_OK;
}

/* Decode-sized products (M <= GEMV_MAX_M rows, 16-bit operands): one warp
 * per output column n streams w's row n once, 16 bytes per lane per step,
 * so every warp load is 512 contiguous bytes, and applies it to all M rows
 * of x (tiny, L1-resident); fp32 sums, reduced over the warp. Batch-1
 * decode is bound by reading the weights, which is all this kernel does.
 * no_gemv in the backend's params (LISA_GEMV=0 for the CLI) sends these to
 * cuBLASLt too (A/B timing). */
#define GEMV_MAX_M 4
#define GEMV_WARPS 8 /* columns per block */

template <typename T, int M>
__global__ void gemv_kernel(T *out, const T *x, const T *w, int64_t N, int64_t K) {
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int64_t n = (int64_t)blockIdx.x * GEMV_WARPS + warp;
    if (n >= N) return;
    const uint4 *wr = (const uint4 *)(w + n * K);
    float acc[M];
    for (int m = 0; m < M; m++) acc[m] = 0.0f;
#pragma unroll 4
    for (int64_t c = lane; c < K / 8; c += 32) {
        uint4 wu = wr[c];
        T we[8];
        memcpy(we, &wu, sizeof we);
        for (int m = 0; m < M; m++) {
            uint4 xu = ((const uint4 *)(x + m * K))[c];
            T xe[8];
            memcpy(xe, &xu, sizeof xe);
            for (int j = 0; j < 8; j++) acc[m] += cu_ld(we, j) * cu_ld(xe, j);
        }
    }
    for (int m = 0; m < M; m++) {
        float v = acc[m];
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0) cu_st(out, m * N + n, v);
    }
}

/* (through a pointer: a macro argument cannot hold the template's comma) */
#define GEMV_LAUNCH(T, MM)                                                                      \
    do {                                                                                        \
        void (*gemv_kernel_)(T *, const T *, const T *, int64_t, int64_t) = gemv_kernel<T, MM>; \
        CUDA_KERNEL(gemv_kernel_, blocks, 32 * GEMV_WARPS, 0, c->stream)(                      \
            (T *)out->data, (const T *)x->data, (const T *)w->data, N, K);                     \
    } while (0)

#define GEMV_DISPATCH_M(T)                                                                      \
    do {                                                                                        \
        if (M == 1) GEMV_LAUNCH(T, 1);                                                         \
        else if (M == 2) GEMV_LAUNCH(T, 2);                                                    \
        else if (M == 3) GEMV_LAUNCH(T, 3);                                                    \
        else GEMV_LAUNCH(T, 4);                                                                \
    } while (0)

static bool gemv_fits(const cuda_ctx *c, const lisa_tensor *out, const lisa_tensor *x,
                      const lisa_tensor *w, int64_t M, int64_t K) {
    if (!c->gemv || M > GEMV_MAX_M || K % 8 != 0) return false;
    if (x->dtype != LISA_DTYPE_BF16 && x->dtype != LISA_DTYPE_F16) return false;
    return (uintptr_t)x->data % 16 == 0 && (uintptr_t)w->data % 16 == 0 && out->data != NULL;
}

static lisa_status gemv(cuda_ctx *c, lisa_tensor *out, const lisa_tensor *x, const lisa_tensor *w,
                        int64_t M, int64_t N, int64_t K) {
    unsigned blocks = (unsigned)((N + GEMV_WARPS - 1) / GEMV_WARPS);
    if (x->dtype == LISA_DTYPE_BF16)
        GEMV_DISPATCH_M(__nv_bfloat16);
    else
        GEMV_DISPATCH_M(__half);
    CUDA_LAUNCH_CHECK(c);
    return LISA_OK;
}

lisa_status cuda_gemm(cuda_ctx *c, void *out, int64_t ldo, const void *x, const void *w, int64_t M,
                      int64_t N, int64_t K, lisa_dtype dt) {
    cuda_gemm_entry *e;
    const uint32_t al[3] = {ptr_align(w), ptr_align(x), ptr_align(out)};
    LISA_TRY(gemm_entry_get(c, M, N, K, ldo, dt, al, &e));
    float alpha = 1.0f, beta = 0.0f;
    CUBLAS_TRY(cublasLtMatmul(c->lt, e->desc, &alpha, w, e->a, x, e->b, &beta, out, e->c, out,
                              e->c, &e->algo, c->workspace, c->workspace_size, c->stream));
    if (c->debug_sync) CUDA_TRY(cudaStreamSynchronize(c->stream));
    return LISA_OK;
}

lisa_status cuda_op_matmul(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x,
                           const lisa_tensor *w, const lisa_tensor *bias) {
    cuda_ctx *c = cuda_ctx_of(be);
    if (lisa_dtype_is_quant(w->dtype)) return cuda_matmul_quant(be, out, x, w, bias);
    int64_t M = x->shape[0], K = x->shape[x->ndim - 1], N = w->shape[0];
    LISA_ASSERT(w->ndim == 2 && w->shape[1] == K && lisa_tensor_nelem(x) == M * K);
    LISA_ASSERT(lisa_tensor_nelem(out) == M * N);
    if (w->dtype != x->dtype || out->dtype != x->dtype)
        return lisa_error_set(LISA_ERR_UNSUPPORTED,
                              "cuda matmul: weights %s, input %s, output %s must share a dtype",
                              lisa_dtype_name(w->dtype), lisa_dtype_name(x->dtype),
                              lisa_dtype_name(out->dtype));
    if (M == 0) return LISA_OK;
    if (gemv_fits(c, out, x, w, M, K)) {
        LISA_TRY(gemv(c, out, x, w, M, N, K));
        if (bias) LISA_TRY(cuda_op_add_bias(be, out, bias));
        return LISA_OK;
    }
    LISA_TRY(cuda_gemm(c, out->data, N, x->data, w->data, M, N, K, x->dtype));
    if (bias) LISA_TRY(cuda_op_add_bias(be, out, bias));
    return LISA_OK;
}
