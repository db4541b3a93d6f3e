/* gemm-quant.cu: matmul with a weight-only quantized weight, the CUDA twin of
 * cpu_matmul for Q8_0 / Q4_0 (dtype.h's llama.cpp block layouts):
 * out (M, N) = x (M, K) @ dequant(w (N, K))^T [+ bias (N)], x and out in the
 * activation dtype (F32, F16 or BF16), sums in fp32.
 *
 * Decode (M <= QGEMV_MAX_M, the GEMV switch on): qgemv_kernel, the quantized
 * sibling of gemm.cu's gemv_kernel. One warp per weight row (output column
 * n), QGEMV_WARPS rows per block. The block stages QGEMV_KC columns of all M
 * x rows in shared memory as fp32 (read once per block, not once per warp),
 * each warp copies the matching 32 blocks of its weight row into shared
 * memory with coalesced loads as wide as the row's alignment allows (16
 * bytes for every LLaMA shape: K % 256 == 0 keeps rows 16-byte aligned), then
 * dequantizes from there (d * q in fp32: exact, as the CPU's dequantization)
 * and applies each weight to the M rows; the M fp32 sums are reduced over
 * the warp together (warp_sum_rows) and the bias is added before the single
 * rounding to the output dtype.
 * Batch-1 decode is bound by reading the weights: this reads each block once
 * (1.06 bytes per weight for Q8_0, 0.56 for Q4_0, against 2 for bf16).
 * Up to 8 rows: beyond that the fp32 FMAs per weight byte, not the bytes,
 * bound the kernel, and tensor cores on dequantized tiles win.
 *
 * Prefill (more rows, or no_gemv): tiles of w's rows are dequantized into the
 * backend's reserved scratch in the activation dtype (dequant_kernel) and
 * each tile is multiplied by cuBLASLt (cuda_gemm) into its column range of
 * out; the whole matrix is one tile when the scratch holds it (32 MB by
 * default: 8192 rows of K 2048 in bf16). The scratch is reserved at init and
 * grown only by lisa_backend_reserve (matmul_k); a weight whose tile of
 * QUANT_TILE_ROWS rows does not fit fails with LISA_ERR_ARG naming
 * matmul_k. In bf16/fp16 this path rounds each dequantized weight to the
 * activation dtype (tensor cores need both operands in it): an error of the
 * size of the output's own rounding; fp32 dequantizes exactly.
 *
 * Both paths are capturable in a graph: no allocation, no synchronize (but
 * with sync_each_launch, which switches graphs off).
 *
 * Deliberately not here: quantized activations (int8 dot products): the CPU
 * oracle dequantizes in fp32 and so does this file; other block types; K
 * not a multiple of 32 (a programmer error, asserted). */
#include <string.h>

#include "cuda-common.cuh"

#define QGEMV_MAX_M 8
#define QGEMV_WARPS 8                        /* weight rows (output columns) per block */
#define QGEMV_KC 1024                        /* x columns staged per step */
#define QGEMV_NB (QGEMV_KC / LISA_QK)        /* blocks of a weight row per step: one per lane */
#define QUANT_TILE_ROWS 64                   /* prefill tiles: a multiple of this many rows */
#define DEQUANT_MAX_BLOCKS 1024              /* about one resident wave of 256-thread blocks on
                                                an H100 (132 SMs x 8); the grid strides beyond */

/* Bytes of one block of Q (34 for Q8_0, 18 for Q4_0). */
template <lisa_dtype Q> struct qblock_bytes;
template <> struct qblock_bytes<LISA_DTYPE_Q8_0> {
    static const int n = (int)sizeof(lisa_block_q8_0);
};
template <> struct qblock_bytes<LISA_DTYPE_Q4_0> {
    static const int n = (int)sizeof(lisa_block_q4_0);
};

/* A block's fp16 scale from its bits. */
__device__ __forceinline__ float qscale(uint16_t bits) {
    __half h;
    memcpy(&h, &bits, sizeof h);
    return __half2float(h);
}

/* Copies n bytes as words of W by the 32 lanes of a warp; returns how many
 * bytes that covered (n rounded down to a multiple of sizeof(W)). */
template <typename W>
__device__ __forceinline__ int warp_copy_as(unsigned char *dst, const unsigned char *src, int n,
                                            int lane) {
    int nw = n / (int)sizeof(W);
    for (int i = lane; i < nw; i += 32) ((W *)dst)[i] = ((const W *)src)[i];
    return nw * (int)sizeof(W);
}

/* Global src (2-byte aligned, n even) -> shared dst (16-byte aligned) by one
 * warp, with 16-byte loads when src allows, else 4-byte, the rest 2-byte. */
__device__ __forceinline__ void warp_copy(unsigned char *dst, const unsigned char *src, int n,
                                          int lane) {
    uintptr_t a = (uintptr_t)src;
    int done = 0;
    if ((a & 15) == 0)
        done = warp_copy_as<uint4>(dst, src, n, lane);
    else if ((a & 3) == 0)
        done = warp_copy_as<uint32_t>(dst, src, n, lane);
    for (int i = done / 2 + lane; i < n / 2; i += 32)
        ((uint16_t *)dst)[i] = ((const uint16_t *)src)[i];
}

/* Four fp32 values of a shared x row. */
__device__ __forceinline__ float4 ld4(const float *p) { return *(const float4 *)p; }

/* Q8_0: lane l takes quants 4*(l%8) .. +4 of block l/8 of every group of 4
 * blocks (8 steps over QGEMV_NB blocks), so a warp reads 32 contiguous words
 * of x per row and 4 blocks' quants. acc[m] += w . x[m] over those. */
template <int M>
__device__ __forceinline__ void qgemv_chunk_q8(float *acc, const unsigned char *sw, int nb,
                                               int lane, const float (*sx)[QGEMV_KC]) {
    for (int s = 0; s < QGEMV_NB / 4; s++) {
        int b = s * 4 + (lane >> 3), e = (lane & 7) * 4;
        if (b >= nb) break;
        const unsigned char *blk = sw + b * 34;
        float d = qscale(*(const uint16_t *)blk);
        unsigned q01 = *(const uint16_t *)(blk + 2 + e), q23 = *(const uint16_t *)(blk + 4 + e);
        float w0 = d * (float)(int8_t)(q01 & 0xffu), w1 = d * (float)(int8_t)(q01 >> 8);
        float w2 = d * (float)(int8_t)(q23 & 0xffu), w3 = d * (float)(int8_t)(q23 >> 8);
#pragma unroll
        for (int m = 0; m < M; m++) {
            float4 xv = ld4(&sx[m][b * LISA_QK + e]);
            acc[m] += w0 * xv.x;
            acc[m] += w1 * xv.y;
            acc[m] += w2 * xv.z;
            acc[m] += w3 * xv.w;
        }
    }
}

/* Q4_0: lane l takes quant bytes 4*(l%4) .. +4 of block l/4 of every group
 * of 8 blocks (4 steps), i.e. elements j..j+3 (low nibbles) and j+16..j+19
 * (high nibbles), j = 4*(l%4). */
template <int M>
__device__ __forceinline__ void qgemv_chunk_q4(float *acc, const unsigned char *sw, int nb,
                                               int lane, const float (*sx)[QGEMV_KC]) {
    for (int s = 0; s < QGEMV_NB / 8; s++) {
        int b = s * 8 + (lane >> 2), j = (lane & 3) * 4;
        if (b >= nb) break;
        const unsigned char *blk = sw + b * 18;
        float d = qscale(*(const uint16_t *)blk);
        unsigned q = *(const uint16_t *)(blk + 2 + j) |
                     (unsigned)*(const uint16_t *)(blk + 4 + j) << 16;
        float lo[4], hi[4];
#pragma unroll
        for (int k = 0; k < 4; k++) {
            unsigned byte = q >> (8 * k) & 0xffu;
            lo[k] = d * (float)((int)(byte & 15u) - 8);
            hi[k] = d * (float)((int)(byte >> 4) - 8);
        }
#pragma unroll
        for (int m = 0; m < M; m++) {
            float4 xl = ld4(&sx[m][b * LISA_QK + j]), xh = ld4(&sx[m][b * LISA_QK + 16 + j]);
            acc[m] += lo[0] * xl.x;
            acc[m] += lo[1] * xl.y;
            acc[m] += lo[2] * xl.z;
            acc[m] += lo[3] * xl.w;
            acc[m] += hi[0] * xh.x;
            acc[m] += hi[1] * xh.y;
            acc[m] += hi[2] * xh.z;
            acc[m] += hi[3] * xh.w;
        }
    }
}

/* M rounded up to a power of two (M <= 8). */
template <int M> struct qrows_pow2 {
    static const int n = M <= 1 ? 1 : M <= 2 ? 2 : M <= 4 ? 4 : 8;
};

/* Sums acc[0..M) over the warp. Instead of 5 shuffles per row, each of the
 * first log2(P) steps (P = qrows_pow2<M>) sends half of the rows a lane
 * still holds to its partner and keeps the other half, so a lane ends with
 * one row: P - 1 + 5 - log2(P) shuffles in all (9 for 8 rows, not 40). Every
 * lane returns the warp's total of row *row; the lanes with lane % (32 / P)
 * == 0 hold rows 0..P-1 once each. */
template <int M>
__device__ __forceinline__ float warp_sum_rows(const float *acc, int lane, int *row) {
    const int P = qrows_pow2<M>::n;
    float v[P];
#pragma unroll
    for (int i = 0; i < P; i++) v[i] = i < M ? acc[i] : 0.0f;
    int r = 0, o = 16;
#pragma unroll
    for (int h = P / 2; h >= 1; h /= 2, o /= 2) {
        bool up = (lane & o) != 0;
#pragma unroll
        for (int i = 0; i < h; i++) {
            float send = up ? v[i] : v[i + h], keep = up ? v[i + h] : v[i];
            v[i] = keep + __shfl_xor_sync(0xffffffffu, send, o);
        }
        if (up) r += h;
    }
    float s = v[0];
    for (; o > 0; o /= 2) s += __shfl_xor_sync(0xffffffffu, s, o);
    *row = r;
    return s;
}

/* out (M, N) = x (M, K) @ dequant(w)^T + bias; blockDim.x = 32 * QGEMV_WARPS,
 * grid ceil(N / QGEMV_WARPS). Every thread reaches every barrier: warps past
 * N stage x with the others and skip only their own row's work. */
template <typename T, int M, lisa_dtype Q>
__global__ void qgemv_kernel(T *out, const T *x, const unsigned char *w, const void *bias,
                             lisa_dtype bias_dtype, int64_t N, int64_t K) {
    const int BB = qblock_bytes<Q>::n;
    __shared__ __align__(16) float sx[M][QGEMV_KC];
    __shared__ __align__(16) unsigned char sw[QGEMV_WARPS][QGEMV_NB * BB];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int64_t n = (int64_t)blockIdx.x * QGEMV_WARPS + warp;
    bool live = n < N;
    const unsigned char *row = w + (live ? n : 0) * (K / LISA_QK) * BB;
    float acc[M];
    for (int m = 0; m < M; m++) acc[m] = 0.0f;
    for (int64_t k0 = 0; k0 < K; k0 += QGEMV_KC) {
        int kc = (int)(K - k0 < QGEMV_KC ? K - k0 : QGEMV_KC), nb = kc / LISA_QK;
        __syncthreads(); /* the previous step's x and blocks are consumed */
        for (int m = 0; m < M; m++)
            for (int j = threadIdx.x; j < kc; j += blockDim.x) sx[m][j] = cu_ld(x, m * K + k0 + j);
        if (live) warp_copy(sw[warp], row + k0 / LISA_QK * BB, nb * BB, lane);
        __syncthreads();
        if (live && Q == LISA_DTYPE_Q8_0)
            qgemv_chunk_q8<M>(acc, sw[warp], nb, lane, sx);
        else if (live)
            qgemv_chunk_q4<M>(acc, sw[warp], nb, lane, sx);
    }
    if (!live) return;
    int r;
    float v = warp_sum_rows<M>(acc, lane, &r);
    if (lane % (32 / qrows_pow2<M>::n) == 0 && r < M)
        cu_st(out, r * N + n, v + (bias ? ld_any(bias, bias_dtype, n) : 0.0f));
}

/* dst (rows, K) = dequant(w rows), flat over ngroups = rows * K / 8 groups
 * of 8 elements: a thread writes one group (one 16-byte store for 16-bit T),
 * so a warp's stores cover 8 whole blocks contiguously. */
template <typename T, lisa_dtype Q>
__global__ void dequant_kernel(T *dst, const unsigned char *w, int64_t ngroups) {
    const int BB = qblock_bytes<Q>::n;
    for (int64_t g = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; g < ngroups;
         g += (int64_t)gridDim.x * blockDim.x) {
        int part = (int)(g & 3);
        const uint16_t *blk = (const uint16_t *)(w + (g >> 2) * BB);
        float d = qscale(blk[0]);
        float v[8];
        if (Q == LISA_DTYPE_Q8_0) {
            /* quants 8*part .. +8: bytes 2 + 8*part of the block */
            for (int k = 0; k < 4; k++) {
                unsigned u = blk[1 + part * 4 + k];
                v[2 * k] = d * (float)(int8_t)(u & 0xffu);
                v[2 * k + 1] = d * (float)(int8_t)(u >> 8);
            }
        } else {
            /* parts 0, 1: low nibbles of quant bytes 0..7, 8..15; parts 2, 3: high nibbles */
            int shift = (part >> 1) * 4;
            for (int k = 0; k < 4; k++) {
                unsigned u = blk[1 + (part & 1) * 4 + k];
                v[2 * k] = d * (float)((int)((u & 0xffu) >> shift & 15u) - 8);
                v[2 * k + 1] = d * (float)((int)((u >> 8) >> shift & 15u) - 8);
            }
        }
        const int NV = (int)(8 * sizeof(T) / sizeof(uint4)); /* 16-byte stores per group */
        T t[8];
        for (int k = 0; k < 8; k++) cu_st(t, k, v[k]);
        uint4 u4[NV];
        memcpy(u4, t, sizeof t);
        uint4 *o = (uint4 *)(dst + g * 8);
        for (int i = 0; i < NV; i++) o[i] = u4[i];
    }
}

/* (through a pointer: a macro argument cannot hold the template's commas) */
#define QGEMV_LAUNCH(T, MM, Q)                                                                    \
    do {                                                                                          \
        void (*qgemv_kernel_)(T *, const T *, const unsigned char *, const void *, lisa_dtype,    \
                              int64_t, int64_t) = qgemv_kernel<T, MM, Q>;                         \
        CUDA_KERNEL(qgemv_kernel_, blocks, 32 * QGEMV_WARPS, 0, c->stream)(                      \
            (T *)out->data, (const T *)x->data, (const unsigned char *)w->data,                   \
            bias ? bias->data : NULL, bias ? bias->dtype : LISA_DTYPE_F32, N, K);                 \
    } while (0)

#define QGEMV_DISPATCH_M(T, Q)                                                                    \
    do {                                                                                          \
        switch (M) {                                                                              \
        case 1: QGEMV_LAUNCH(T, 1, Q); break;                                                     \
        case 2: QGEMV_LAUNCH(T, 2, Q); break;                                                     \
        case 3: QGEMV_LAUNCH(T, 3, Q); break;                                                     \
        case 4: QGEMV_LAUNCH(T, 4, Q); break;                                                     \
        case 5: QGEMV_LAUNCH(T, 5, Q); break;                                                     \
        case 6: QGEMV_LAUNCH(T, 6, Q); break;                                                     \
        case 7: QGEMV_LAUNCH(T, 7, Q); break;                                                     \
        default: QGEMV_LAUNCH(T, 8, Q); break;                                                    \
        }                                                                                         \
    } while (0)

/* The decode path: M in 1..QGEMV_MAX_M, bias fused. */
static lisa_status qgemv(cuda_ctx *c, lisa_tensor *out, const lisa_tensor *x, const lisa_tensor *w,
                         const lisa_tensor *bias, int64_t M, int64_t N, int64_t K) {
    unsigned blocks = (unsigned)((N + QGEMV_WARPS - 1) / QGEMV_WARPS);
    if (w->dtype == LISA_DTYPE_Q8_0)
        CUDA_DISPATCH_FLOAT(x->dtype, QGEMV_DISPATCH_M(T, LISA_DTYPE_Q8_0));
    else
        CUDA_DISPATCH_FLOAT(x->dtype, QGEMV_DISPATCH_M(T, LISA_DTYPE_Q4_0));
    CUDA_LAUNCH_CHECK(c);
    return LISA_OK;
}

#define DEQUANT_LAUNCH(T, Q)                                                                      \
    do {                                                                                          \
        void (*dequant_kernel_)(T *, const unsigned char *, int64_t) = dequant_kernel<T, Q>;      \
        CUDA_KERNEL(dequant_kernel_, blocks, 256, 0, c->stream)((T *)c->quant_scratch, src,       \
                                                                ngroups);                         \
    } while (0)

/* scratch (nt, K) in dt = dequant(rows [n0, n0 + nt) of w) */
static lisa_status dequant_tile(cuda_ctx *c, const lisa_tensor *w, lisa_dtype dt, int64_t n0,
                                int64_t nt, int64_t K) {
    const unsigned char *src =
        (const unsigned char *)w->data + (size_t)n0 * lisa_dtype_row_bytes(w->dtype, K);
    int64_t ngroups = nt * (K / 8);
    unsigned blocks = cuda_blocks(ngroups, 256);
    if (blocks > DEQUANT_MAX_BLOCKS) blocks = DEQUANT_MAX_BLOCKS;
    if (w->dtype == LISA_DTYPE_Q8_0)
        CUDA_DISPATCH_FLOAT(dt, DEQUANT_LAUNCH(T, LISA_DTYPE_Q8_0));
    else
        CUDA_DISPATCH_FLOAT(dt, DEQUANT_LAUNCH(T, LISA_DTYPE_Q4_0));
    CUDA_LAUNCH_CHECK(c);
    return LISA_OK;
}

/* The prefill path: tiles of the largest multiple of QUANT_TILE_ROWS rows
 * that the scratch holds (all N rows when it holds them), dequantized and
 * multiplied one after the other on the stream; then the bias. */
static lisa_status quant_tiles(lisa_backend *be, cuda_ctx *c, lisa_tensor *out,
                               const lisa_tensor *x, const lisa_tensor *w, const lisa_tensor *bias,
                               int64_t M, int64_t N, int64_t K) {
    lisa_dtype dt = x->dtype;
    size_t es = lisa_dtype_size(dt), row = (size_t)K * es;
    int64_t fit = (int64_t)(c->quant_scratch_size / row);
    int64_t tile = fit >= N ? N : fit / QUANT_TILE_ROWS * QUANT_TILE_ROWS;
    if (tile < 1) {
        int64_t want = N < QUANT_TILE_ROWS ? N : QUANT_TILE_ROWS;
        return lisa_error_set(LISA_ERR_ARG,
                              "cuda matmul: a %s weight (%lld, %lld) with %s activations needs %zu "
                              "bytes of dequantization scratch for a tile of %lld rows, %zu "
                              "reserved (raise matmul_k in lisa_backend_reserve)",
                              lisa_dtype_name(w->dtype), (long long)N, (long long)K,
                              lisa_dtype_name(dt), (size_t)want * row, (long long)want,
                              c->quant_scratch_size);
    }
    for (int64_t n0 = 0; n0 < N; n0 += tile) {
        int64_t nt = N - n0 < tile ? N - n0 : tile;
        LISA_TRY(dequant_tile(c, w, dt, n0, nt, K));
        LISA_TRY(cuda_gemm(c, (char *)out->data + (size_t)n0 * es, N, x->data, c->quant_scratch, M,
                           nt, K, dt));
    }
    if (bias) LISA_TRY(cuda_op_add_bias(be, out, bias));
    return LISA_OK;
}

lisa_status cuda_matmul_quant(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x,
                              const lisa_tensor *w, const lisa_tensor *bias) {
    cuda_ctx *c = cuda_ctx_of(be);
    int64_t M = x->shape[0], K = x->shape[x->ndim - 1], N = w->shape[0];
    LISA_ASSERT(lisa_dtype_is_quant(w->dtype) && K % LISA_QK == 0);
    LISA_ASSERT(w->ndim == 2 && w->shape[1] == K && lisa_tensor_nelem(x) == M * K);
    LISA_ASSERT(lisa_tensor_nelem(out) == M * N && (!bias || lisa_tensor_nelem(bias) == N));
    lisa_dtype dt = x->dtype;
    if (out->dtype != dt ||
        (dt != LISA_DTYPE_F32 && dt != LISA_DTYPE_F16 && dt != LISA_DTYPE_BF16))
        return lisa_error_set(LISA_ERR_UNSUPPORTED,
                              "cuda matmul: %s weights need input and output in one of F32, F16, "
                              "BF16 (input %s, output %s)",
                              lisa_dtype_name(w->dtype), lisa_dtype_name(dt),
                              lisa_dtype_name(out->dtype));
    if (M == 0) return LISA_OK;
    if (c->gemv && M <= QGEMV_MAX_M) return qgemv(c, out, x, w, bias, M, N, K);
    return quant_tiles(be, c, out, x, w, bias, M, N, K);
}

size_t cuda_quant_scratch_bytes(int64_t matmul_k) {
    return (size_t)QUANT_TILE_ROWS * (size_t)(matmul_k > 0 ? matmul_k : 0) * sizeof(float);
}
