/* attend.cuh: the one-warp online-softmax loop shared by the causal
 * attention over the KV cache (attention.cu) and the non-causal vision
 * attention (vision.cu): a warp owns one (query row, head), visits keys 32
 * at a time (one key per lane for the scores, then every lane accumulates
 * its output dims over the 32 keys) and keeps a running maximum and sum, so
 * no score matrix is ever stored. The callers differ only in where keys
 * come from and in an additive score term (SAM's relative positions), which
 * the Bias functor supplies. */
#ifndef LISA_CUDA_ATTEND_CUH
#define LISA_CUDA_ATTEND_CUH

#include "cuda-common.cuh"

#define ATTEND_MAX_D 256 /* head dims; acc holds ATTEND_MAX_D / 32 per lane */

/* q . k over D dims in fp32, in order d = 0, 1, ...; 16-bit key rows that
 * are 16-byte aligned with D % 8 == 0 are read 8 elements per load (a lane
 * reads a whole row, so scalar loads would be 8x the instructions). */
template <typename T>
__device__ __forceinline__ float cu_dot_row(const float *qs, const T *kr, int64_t D) {
    float s = 0.0f;
    if (sizeof(T) == 2 && D % 8 == 0 && ((uintptr_t)kr & 15) == 0) {
        const uint4 *k8 = (const uint4 *)kr;
        for (int64_t c = 0; c < D / 8; c++) {
            uint4 u = k8[c];
            T e[8];
            memcpy(e, &u, sizeof e);
            for (int j = 0; j < 8; j++) s += qs[c * 8 + j] * cu_ld(e, j);
        }
    } else {
        for (int64_t d = 0; d < D; d++) s += qs[d] * cu_ld(kr, d);
    }
    return s;
}

/* No additive score term. */
struct attend_no_bias {
    __device__ float operator()(float s, int64_t) const { return s; }
};

/* Online softmax over keys [k_begin, k_end) of one (row, head); key t at
 * kb + t * stride (values likewise). qs: the row's query, already scaled.
 * Out: the running max *m, sum *l and acc, the unnormalized output with
 * lane l holding dims l, l + 32, ... An empty range leaves m = -inf, l = 0. */
template <typename T, typename Bias>
__device__ void attend_range(const float *qs, const T *kb, const T *vb, int64_t stride, int64_t D,
                             int64_t k_begin, int64_t k_end, int lane, float *m, float *l,
                             float *acc, Bias bias) {
    *m = -INFINITY;
    *l = 0.0f;
    for (int r = 0; r < ATTEND_MAX_D / 32; r++) acc[r] = 0.0f;
    for (int64_t k0 = k_begin; k0 < k_end; k0 += 32) {
        int64_t kk = k0 + lane;
        float s = -INFINITY;
        if (kk < k_end) s = bias(cu_dot_row(qs, kb + kk * stride, D), kk);
        float cm = s;
        for (int o = 16; o > 0; o >>= 1) cm = fmaxf(cm, __shfl_xor_sync(0xffffffffu, cm, o));
        float mn = fmaxf(*m, cm);
        float corr = expf(*m - mn); /* *m = -inf on the first chunk: corr = 0 */
        float p = kk < k_end ? expf(s - mn) : 0.0f;
        float ps = p;
        for (int o = 16; o > 0; o >>= 1) ps += __shfl_xor_sync(0xffffffffu, ps, o);
        *l = *l * corr + ps;
        for (int r = 0; r < ATTEND_MAX_D / 32; r++) acc[r] *= corr;
        int64_t cnt = k_end - k0 < 32 ? k_end - k0 : 32;
        for (int t = 0; t < cnt; t++) {
            float pt = __shfl_sync(0xffffffffu, p, t);
            const T *vr = vb + (k0 + t) * stride;
            for (int r = 0; r < ATTEND_MAX_D / 32; r++) {
                int64_t d = lane + 32 * r;
                if (d < D) acc[r] += pt * cu_ld(vr, d);
            }
        }
        *m = mn;
    }
}

#endif
