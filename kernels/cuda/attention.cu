/* attention.cu: causal attention over the KV cache, the CUDA twin of
 * cpu_attention, for prefill and decode alike.
 *
 * One warp per (query row, head, key split); the warp visits its keys in
 * chunks of 32, one key per lane, with an online (flash-style) softmax: a
 * running maximum, a running sum and D output accumulators spread over the
 * lanes (lane l owns dims l, l+32, ...). No score matrix is written to
 * global memory. Grouped-query heads read kv head h / (H / KVH). Head dims up
 * to 256.
 *
 * Few rows (batch-1 decode: n * H is one warp per head) would leave most of
 * the GPU idle, so the keys are then split over several warps
 * (flash-decoding): each writes its partial (max, sum, accumulators) to the
 * backend's scratch and a second kernel merges the splits of each row. With
 * many rows (prefill, large batches) one warp takes all keys of its row.
 *
 * Prefill in bf16/fp16 (head dims 64 and 128) goes through tensor cores
 * instead (attention_tc_kernel, flash-attention style): a warp takes 16
 * consecutive rows of one sequence and one head, computes their scores
 * against 16 keys at a time with WMMA (fp32 accumulate), keeps the online
 * softmax per row in fp32 and accumulates P V with WMMA again, so each K/V
 * tile is read once per 16 rows, not once per row, and nothing T x T
 * reaches global memory. Rows in a tile that mixes sequences (or in the
 * batch's last partial tile) are left to the row kernel, which skips every
 * row the tensor-core kernel took: one launch each, no host round trip to
 * learn the batch layout. */
#include "attend-tc.cuh"
#include "attend.cuh"

#define ATT_WARPS 4
#define ATT_MAX_D ATTEND_MAX_D
#define ATT_MAX_SPLITS 32
#define ATT_TARGET_WARPS 512  /* enough warps in flight to cover the SMs */
#define ATT_MIN_KEYS_PER_SPLIT 32
#define ATT_TILE TC_TILE      /* rows per warp and keys per step, tensor-core path */

/* Rows [i0, i0 + ATT_TILE) are a tile the tensor-core kernel takes: all in
 * the batch and of one sequence. */
__device__ __forceinline__ bool att_tile_uniform(const int32_t *seq, int64_t i0, int64_t n) {
    if (i0 + ATT_TILE > n) return false;
    int32_t s = seq[i0];
    for (int r = 1; r < ATT_TILE; r++)
        if (seq[i0 + r] != s) return false;
    return true;
}

/* splits == 1: writes the normalized output. splits > 1: writes the partial
 * (m, l, acc[D]) of split s of task t to part[(t * splits + s) * (D + 2)]. */
template <typename T>
__global__ void attention_kernel(T *out, float *part, const T *q, const T *kc, const T *vc,
                                 const int32_t *seq, const int32_t *pos, int64_t n, int64_t H,
                                 int64_t KVH, int64_t D, int64_t Tmax, float scale, int splits,
                                 int skip_tiles) {
    __shared__ float qs[ATT_WARPS][ATT_MAX_D];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int64_t job = (int64_t)blockIdx.x * ATT_WARPS + warp; /* (row, head, split) */
    if (job >= n * H * splits) return;
    int64_t task = job / splits, split = job % splits;
    int64_t i = task / H, h = task % H, kvh = h / (H / KVH);
    if (skip_tiles && att_tile_uniform(seq, i - i % ATT_TILE, n)) return;
    const T *qr = q + (i * H + h) * D;
    for (int64_t d = lane; d < D; d += 32) qs[warp][d] = cu_ld(qr, d) * scale;
    __syncwarp();
    int64_t len = (int64_t)pos[i] + 1, stride = KVH * D;
    int64_t seg = (Tmax + splits - 1) / splits;
    int64_t k_begin = split * seg, k_end = k_begin + seg < len ? k_begin + seg : len;
    const T *kb = kc + ((int64_t)seq[i] * Tmax * KVH + kvh) * D;
    const T *vb = vc + ((int64_t)seq[i] * Tmax * KVH + kvh) * D;
    float acc[ATT_MAX_D / 32], m, l;
    attend_range(qs[warp], kb, vb, stride, D, k_begin, k_end, lane, &m, &l, acc,
                 attend_no_bias());
    if (splits == 1) {
        T *o = out + (i * H + h) * D;
        float inv = 1.0f / l;
        for (int r = 0; r < ATT_MAX_D / 32; r++) {
            int64_t d = lane + 32 * r;
            if (d < D) cu_st(o, d, acc[r] * inv);
        }
        return;
    }
    float *pp = part + job * (D + 2);
    if (lane == 0) {
        pp[0] = m;
        pp[1] = l;
    }
    for (int r = 0; r < ATT_MAX_D / 32; r++) {
        int64_t d = lane + 32 * r;
        if (d < D) pp[2 + d] = acc[r];
    }
}

/* Merges the splits of each (row, head): one warp per task. Split 0 always
 * holds key 0, so the overall maximum is finite; empty splits have m = -inf
 * and l = 0 and weigh nothing. */
template <typename T>
__global__ void attention_merge_kernel(T *out, const float *part, const int32_t *seq, int64_t n,
                                       int64_t H, int64_t D, int splits, int skip_tiles) {
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int64_t task = (int64_t)blockIdx.x * ATT_WARPS + warp;
    if (task >= n * H) return;
    int64_t i = task / H;
    if (skip_tiles && att_tile_uniform(seq, i - i % ATT_TILE, n)) return;
    const float *pp = part + task * splits * (D + 2);
    float M = -INFINITY;
    for (int s = 0; s < splits; s++) M = fmaxf(M, pp[s * (D + 2)]);
    float L = 0.0f;
    for (int s = 0; s < splits; s++) L += pp[s * (D + 2) + 1] * expf(pp[s * (D + 2)] - M);
    float inv = 1.0f / L;
    T *o = out + task * D;
    for (int64_t d = lane; d < D; d += 32) {
        float a = 0.0f;
        for (int s = 0; s < splits; s++)
            a += pp[s * (D + 2) + 2 + d] * expf(pp[s * (D + 2)] - M);
        cu_st(o, d, a * inv);
    }
}

/* The tensor-core path: one warp per (16-row tile, head), the steps of
 * attend-tc.cuh with Q read straight from q and K/V tiles from the cache;
 * key kk is masked for row r past pos[r]. Needs Tmax % 16 == 0 (the last key
 * tile stays inside the sequence's cache rows). */
template <typename T, int D>
__global__ void attention_tc_kernel(T *out, const T *q, const T *kc, const T *vc,
                                    const int32_t *seq, const int32_t *pos, int64_t n, int64_t H,
                                    int64_t KVH, int64_t Tmax, float scale) {
    using namespace nvcuda;
    __shared__ tc_smem<T> smem[ATT_WARPS];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    /* (head, tile), tiles fastest: a block's warps walk the same keys of one
     * head side by side, so their K/V tiles meet in L1 */
    int64_t tiles = n / ATT_TILE, job = (int64_t)blockIdx.x * ATT_WARPS + warp;
    if (job >= tiles * H) return;
    int64_t i0 = job % tiles * ATT_TILE, h = job / tiles, kvh = h / (H / KVH);
    if (!att_tile_uniform(seq, i0, n)) return;
    tc_smem<T> &sm = smem[warp];
    tc_state<D> w;
    tc_init<T, D>(w, sm, lane);
    int last = 0; /* the tile's largest position: keys [0, last] are visited */
    for (int r = 0; r < ATT_TILE; r++) last = max(last, (int)pos[i0 + r]);
    int rpos = pos[i0 + w.row];

    int64_t ldq = H * D, ldkv = KVH * D;
    wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> qf[D / 16];
    for (int ds = 0; ds < D / 16; ds++)
        wmma::load_matrix_sync(qf[ds], q + (i0 * H + h) * D + ds * 16, (unsigned)ldq);
    const T *kb = kc + ((int64_t)seq[i0] * Tmax * KVH + kvh) * D;
    const T *vb = vc + ((int64_t)seq[i0] * Tmax * KVH + kvh) * D;
    for (int64_t k0 = 0; k0 <= last; k0 += ATT_TILE) {
        tc_scores<T, D>(sm, qf, kb + k0 * ldkv, (unsigned)ldkv);
        float sv[8]; /* key 0 is in every row's range */
        for (int j = 0; j < 8; j++)
            sv[j] = k0 + w.c0 + j <= rpos ? sm.s[w.row * ATT_TILE + w.c0 + j] * scale : -INFINITY;
        tc_softmax_pv<T, D>(w, sm, sv, vb + k0 * ldkv, (unsigned)ldkv, lane);
    }
    tc_finish<T, D>(w, sm, lane, [&](int r, int d, float v) {
        cu_st(out + ((i0 + r) * H + h) * D, d, v);
    });
}

/* Whether the tensor-core kernel can serve this call (see its comment);
 * WMMA loads need 32-byte aligned rows. */
static bool attention_tc_fits(const lisa_tensor *q, const lisa_tensor *kc, const lisa_tensor *vc,
                              int64_t n, int64_t D, int64_t Tmax) {
    if ((D != 64 && D != 128) || n < ATT_TILE || Tmax % ATT_TILE != 0) return false;
    return tc_operands_fit(q, kc, vc);
}

/* (through a pointer: a macro argument cannot hold the template's comma) */
#define ATT_TC_LAUNCH(T, DD)                                                                    \
    do {                                                                                        \
        void (*attention_tc_kernel_)(T *, const T *, const T *, const T *, const int32_t *,    \
                                     const int32_t *, int64_t, int64_t, int64_t, int64_t,      \
                                     float) = attention_tc_kernel<T, DD>;                      \
        CUDA_KERNEL(attention_tc_kernel_, blocks, 32 * ATT_WARPS, 0, c->stream)(               \
            (T *)out->data, (const T *)q->data, (const T *)kc->data, (const T *)vc->data,      \
            (const int32_t *)seq->data, (const int32_t *)pos->data, n, H, KVH, Tmax, scale);   \
    } while (0)

static lisa_status attention_tc(cuda_ctx *c, lisa_tensor *out, const lisa_tensor *q,
                                const lisa_tensor *kc, const lisa_tensor *vc,
                                const lisa_tensor *seq, const lisa_tensor *pos) {
    int64_t n = q->shape[0], H = q->shape[1], D = q->shape[2];
    int64_t Tmax = kc->shape[1], KVH = kc->shape[2];
    unsigned blocks = (unsigned)((n / ATT_TILE * H + ATT_WARPS - 1) / ATT_WARPS);
    float scale = 1.0f / sqrtf((float)D);
    if (q->dtype == LISA_DTYPE_BF16) {
        if (D == 64) ATT_TC_LAUNCH(__nv_bfloat16, 64);
        else ATT_TC_LAUNCH(__nv_bfloat16, 128);
    } else {
        if (D == 64) ATT_TC_LAUNCH(__half, 64);
        else ATT_TC_LAUNCH(__half, 128);
    }
    CUDA_LAUNCH_CHECK(c);
    return LISA_OK;
}

lisa_status cuda_op_attention(lisa_backend *be, lisa_tensor *out, const lisa_tensor *q,
                              const lisa_tensor *kc, const lisa_tensor *vc,
                              const lisa_tensor *seq, const lisa_tensor *pos) {
    cuda_ctx *c = cuda_ctx_of(be);
    int64_t n = q->shape[0], H = q->shape[1], D = q->shape[2];
    int64_t Tmax = kc->shape[1], KVH = kc->shape[2];
    LISA_ASSERT(H % KVH == 0 && kc->shape[3] == D && lisa_tensor_nelem(out) == n * H * D);
    LISA_ASSERT(q->dtype == kc->dtype && vc->dtype == kc->dtype && out->dtype == q->dtype);
    LISA_ASSERT(seq->dtype == LISA_DTYPE_I32 && pos->dtype == LISA_DTYPE_I32);
    if (D > ATT_MAX_D)
        return lisa_error_set(LISA_ERR_UNSUPPORTED, "cuda attention: head dim %lld > %d",
                              (long long)D, ATT_MAX_D);
    if (n == 0) return LISA_OK;
    /* splits: enough warps for the GPU, at least ATT_MIN_KEYS_PER_SPLIT keys
     * each, within the scratch */
    int64_t tasks = n * H;
    int splits = (int)((ATT_TARGET_WARPS + tasks - 1) / tasks);
    int64_t by_keys = (Tmax + ATT_MIN_KEYS_PER_SPLIT - 1) / ATT_MIN_KEYS_PER_SPLIT;
    if (splits > by_keys) splits = (int)by_keys;
    if (splits > ATT_MAX_SPLITS) splits = ATT_MAX_SPLITS;
    if (splits < 1) splits = 1;
    while (splits > 1 && (size_t)(tasks * splits * (D + 2)) * sizeof(float) > c->att_scratch_size)
        splits /= 2;
    int tc = attention_tc_fits(q, kc, vc, n, D, Tmax);
    if (tc) LISA_TRY(attention_tc(c, out, q, kc, vc, seq, pos));
    unsigned blocks = (unsigned)((tasks * splits + ATT_WARPS - 1) / ATT_WARPS);
    float scale = 1.0f / sqrtf((float)D);
    CUDA_DISPATCH_FLOAT(q->dtype, CUDA_KERNEL(attention_kernel<T>, blocks, 32 * ATT_WARPS, 0, c->stream)(
                                      (T *)out->data, (float *)c->att_scratch, (const T *)q->data,
                                      (const T *)kc->data, (const T *)vc->data,
                                      (const int32_t *)seq->data, (const int32_t *)pos->data, n,
                                      H, KVH, D, Tmax, scale, splits, tc));
    CUDA_LAUNCH_CHECK(c);
    if (splits > 1) {
        unsigned mblocks = (unsigned)((tasks + ATT_WARPS - 1) / ATT_WARPS);
        CUDA_DISPATCH_FLOAT(q->dtype, CUDA_KERNEL(attention_merge_kernel<T>, mblocks, 32 * ATT_WARPS, 0, c->stream)(
                                          (T *)out->data, (const float *)c->att_scratch,
                                          (const int32_t *)seq->data, n, H, D, splits, tc));
        CUDA_LAUNCH_CHECK(c);
    }
    return LISA_OK;
}
