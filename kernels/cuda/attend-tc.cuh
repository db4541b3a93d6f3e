/* attend-tc.cuh: the tensor-core flash-attention steps shared by the causal
 * prefill kernel (attention.cu) and the non-causal vision kernel
 * (vision.cu). A warp owns 16 query rows and walks the keys 16 at a time:
 * scores Q K^T by WMMA into shared memory, the online softmax in fp32 (lane
 * l keeps the state of row l / 2 and scores columns (l % 2) * 8 .. + 8),
 * then O += P V by WMMA. The callers supply the tiles (from global memory or
 * staged) and turn raw scores into final ones (scale, mask, bias).
 *
 * WMMA leaves the accumulator's element-to-row mapping unspecified, so it is
 * learnt once by loading a fragment of row indices; per-row factors (the
 * softmax correction, 1 / sum) are then applied element by element. P is
 * rounded to T for the P V product and the row sums add the rounded values,
 * so the weights that multiply V are normalized exactly. */
#ifndef LISA_CUDA_ATTEND_TC_CUH
#define LISA_CUDA_ATTEND_TC_CUH

#include <mma.h>

#include "cuda-common.cuh"

#define TC_TILE 16

typedef nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> tc_acc;

/* One warp's shared scratch. */
/* The operands the tensor-core kernels load tiles from: half precision,
 * and 32-byte aligned as WMMA loads need (the callers check the rows' own
 * alignment, which depends on their layout). */
static inline bool tc_operands_fit(const lisa_tensor *q, const lisa_tensor *k,
                                   const lisa_tensor *v) {
    if (q->dtype != LISA_DTYPE_BF16 && q->dtype != LISA_DTYPE_F16) return false;
    return (uintptr_t)q->data % 32 == 0 && (uintptr_t)k->data % 32 == 0 &&
           (uintptr_t)v->data % 32 == 0;
}

template <typename T> struct tc_smem {
    __align__(32) float s[TC_TILE * TC_TILE]; /* scores; output staging */
    __align__(32) T p[TC_TILE * TC_TILE];     /* probabilities */
    float rowf[TC_TILE];                      /* a per-row factor */
};

/* One warp's running state: output accumulators (16, D), the row-index
 * fragment, and this lane's row's max and sum. */
template <int D> struct tc_state {
    tc_acc rowid;
    tc_acc o[D / 16];
    float m, l;
    int row, c0;
};

template <typename T, int D>
__device__ __forceinline__ void tc_init(tc_state<D> &w, tc_smem<T> &sm, int lane) {
    for (int e = lane; e < TC_TILE * TC_TILE; e += 32) sm.s[e] = (float)(e / TC_TILE);
    __syncwarp();
    nvcuda::wmma::load_matrix_sync(w.rowid, sm.s, TC_TILE, nvcuda::wmma::mem_row_major);
    for (int ds = 0; ds < D / 16; ds++) nvcuda::wmma::fill_fragment(w.o[ds], 0.0f);
    w.m = -INFINITY;
    w.l = 0.0f;
    w.row = lane >> 1;
    w.c0 = (lane & 1) * 8;
    __syncwarp(); /* everyone has loaded rowid before sm.s is reused */
}

/* Raw scores Q K^T of the 16 rows against keys kt[0..16) (rows ldk apart)
 * into sm.s (16 x 16, row-major). */
template <typename T, int D>
__device__ __forceinline__ void tc_scores(
    tc_smem<T> &sm,
    const nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 16, T, nvcuda::wmma::row_major> *qf,
    const T *kt, unsigned ldk) {
    using namespace nvcuda;
    tc_acc sf;
    wmma::fill_fragment(sf, 0.0f);
    for (int ds = 0; ds < D / 16; ds++) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> kf;
        wmma::load_matrix_sync(kf, kt + ds * 16, ldk);
        wmma::mma_sync(sf, qf[ds], kf, sf);
    }
    wmma::store_matrix_sync(sm.s, sf, TC_TILE, wmma::mem_row_major);
    __syncwarp();
}

/* One softmax step on this lane's 8 final scores sv (-inf where masked; at
 * least one key of every row is unmasked in the first step), then O = O *
 * correction + P V with values vt[0..16) (rows ldv apart). */
template <typename T, int D>
__device__ __forceinline__ void tc_softmax_pv(tc_state<D> &w, tc_smem<T> &sm, const float *sv,
                                              const T *vt, unsigned ldv, int lane) {
    using namespace nvcuda;
    float mx = -INFINITY;
    for (int j = 0; j < 8; j++) mx = fmaxf(mx, sv[j]);
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    float mn = fmaxf(w.m, mx), corr = expf(w.m - mn), ps = 0.0f;
    for (int j = 0; j < 8; j++) {
        float p = cu_round<T>(sv[j] == -INFINITY ? 0.0f : expf(sv[j] - mn));
        cu_st(sm.p, w.row * TC_TILE + w.c0 + j, p);
        ps += p;
    }
    ps += __shfl_xor_sync(0xffffffffu, ps, 1);
    w.l = w.l * corr + ps;
    w.m = mn;
    if ((lane & 1) == 0) sm.rowf[w.row] = corr;
    __syncwarp();
    wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> pf;
    wmma::load_matrix_sync(pf, sm.p, TC_TILE);
    for (int ds = 0; ds < D / 16; ds++) {
        for (int e = 0; e < w.o[ds].num_elements; e++) w.o[ds].x[e] *= sm.rowf[(int)w.rowid.x[e]];
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> vf;
        wmma::load_matrix_sync(vf, vt + ds * 16, ldv);
        wmma::mma_sync(w.o[ds], pf, vf, w.o[ds]);
    }
    __syncwarp(); /* sm.s, sm.p and sm.rowf are free for the next step */
}

/* Normalizes the output and hands element (r, d), r < 16, d < D, to
 * store(r, d, value). */
template <typename T, int D, typename Store>
__device__ __forceinline__ void tc_finish(tc_state<D> &w, tc_smem<T> &sm, int lane, Store store) {
    if ((lane & 1) == 0) sm.rowf[w.row] = 1.0f / w.l;
    __syncwarp();
    for (int ds = 0; ds < D / 16; ds++) {
        for (int e = 0; e < w.o[ds].num_elements; e++) w.o[ds].x[e] *= sm.rowf[(int)w.rowid.x[e]];
        nvcuda::wmma::store_matrix_sync(sm.s, w.o[ds], TC_TILE, nvcuda::wmma::mem_row_major);
        __syncwarp();
        for (int e = lane; e < TC_TILE * TC_TILE; e += 32)
            store(e / TC_TILE, ds * 16 + e % TC_TILE, sm.s[e]);
        __syncwarp();
    }
}

#endif
