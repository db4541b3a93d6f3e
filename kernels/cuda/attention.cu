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
 * many rows (prefill, large batches) one warp takes all keys of its row. */
#include "cuda-common.cuh"

#define ATT_WARPS 4
#define ATT_MAX_D 256
#define ATT_MAX_SPLITS 32
#define ATT_TARGET_WARPS 512  /* enough warps in flight to cover the SMs */
#define ATT_MIN_KEYS_PER_SPLIT 32

/* Online softmax over keys [k_begin, k_end) of one (row, head): the running
 * max *m, sum *l and acc (the unnormalized output, lane-strided). */
template <typename T>
__device__ void attend_range(const float *qs, const T *kb, const T *vb, int64_t stride, int64_t D,
                             int64_t k_begin, int64_t k_end, int lane, float *m, float *l,
                             float *acc) {
    *m = -INFINITY;
    *l = 0.0f;
    for (int r = 0; r < ATT_MAX_D / 32; r++) acc[r] = 0.0f;
    for (int64_t k0 = k_begin; k0 < k_end; k0 += 32) {
        int64_t kk = k0 + lane;
        float s = -INFINITY;
        if (kk < k_end) {
            const T *kr = kb + kk * stride;
            s = 0.0f;
            for (int64_t d = 0; d < D; d++) s += qs[d] * cu_ld(kr, d);
        }
        float cm = s;
        for (int o = 16; o > 0; o >>= 1) cm = fmaxf(cm, __shfl_xor_sync(0xffffffffu, cm, o));
        float mn = fmaxf(*m, cm);
        float corr = expf(*m - mn); /* *m = -inf on the first chunk: corr = 0 */
        float p = kk < k_end ? expf(s - mn) : 0.0f;
        float ps = p;
        for (int o = 16; o > 0; o >>= 1) ps += __shfl_xor_sync(0xffffffffu, ps, o);
        *l = *l * corr + ps;
        for (int r = 0; r < ATT_MAX_D / 32; r++) acc[r] *= corr;
        int64_t cnt = k_end - k0 < 32 ? k_end - k0 : 32;
        for (int t = 0; t < cnt; t++) {
            float pt = __shfl_sync(0xffffffffu, p, t);
            const T *vr = vb + (k0 + t) * stride;
            for (int r = 0; r < ATT_MAX_D / 32; r++) {
                int64_t d = lane + 32 * r;
                if (d < D) acc[r] += pt * cu_ld(vr, d);
            }
        }
        *m = mn;
    }
}

/* splits == 1: writes the normalized output. splits > 1: writes the partial
 * (m, l, acc[D]) of split s of task t to part[(t * splits + s) * (D + 2)]. */
template <typename T>
__global__ void attention_kernel(T *out, float *part, const T *q, const T *kc, const T *vc,
                                 const int32_t *seq, const int32_t *pos, int64_t n, int64_t H,
                                 int64_t KVH, int64_t D, int64_t Tmax, float scale, int splits) {
    __shared__ float qs[ATT_WARPS][ATT_MAX_D];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int64_t job = (int64_t)blockIdx.x * ATT_WARPS + warp; /* (row, head, split) */
    if (job >= n * H * splits) return;
    int64_t task = job / splits, split = job % splits;
    int64_t i = task / H, h = task % H, kvh = h / (H / KVH);
    const T *qr = q + (i * H + h) * D;
    for (int64_t d = lane; d < D; d += 32) qs[warp][d] = cu_ld(qr, d) * scale;
    __syncwarp();
    int64_t len = (int64_t)pos[i] + 1, stride = KVH * D;
    int64_t seg = (Tmax + splits - 1) / splits;
    int64_t k_begin = split * seg, k_end = k_begin + seg < len ? k_begin + seg : len;
    const T *kb = kc + ((int64_t)seq[i] * Tmax * KVH + kvh) * D;
    const T *vb = vc + ((int64_t)seq[i] * Tmax * KVH + kvh) * D;
    float acc[ATT_MAX_D / 32], m, l;
    attend_range(qs[warp], kb, vb, stride, D, k_begin, k_end, lane, &m, &l, acc);
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
__global__ void attention_merge_kernel(T *out, const float *part, int64_t tasks, int64_t D,
                                       int splits) {
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int64_t task = (int64_t)blockIdx.x * ATT_WARPS + warp;
    if (task >= tasks) return;
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
    unsigned blocks = (unsigned)((tasks * splits + ATT_WARPS - 1) / ATT_WARPS);
    float scale = 1.0f / sqrtf((float)D);
    CUDA_DISPATCH_FLOAT(q->dtype, CUDA_KERNEL(attention_kernel<T>, blocks, 32 * ATT_WARPS, 0, c->stream)(
                                      (T *)out->data, (float *)c->att_scratch, (const T *)q->data,
                                      (const T *)kc->data, (const T *)vc->data,
                                      (const int32_t *)seq->data, (const int32_t *)pos->data, n,
                                      H, KVH, D, Tmax, scale, splits));
    CUDA_LAUNCH_CHECK(c);
    if (splits > 1) {
        unsigned mblocks = (unsigned)((tasks + ATT_WARPS - 1) / ATT_WARPS);
        CUDA_DISPATCH_FLOAT(q->dtype, CUDA_KERNEL(attention_merge_kernel<T>, mblocks, 32 * ATT_WARPS, 0, c->stream)(
                                          (T *)out->data, (const float *)c->att_scratch, tasks, D,
                                          splits));
        CUDA_LAUNCH_CHECK(c);
    }
    return LISA_OK;
}
