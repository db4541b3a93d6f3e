/* attention.cu: causal attention over the KV cache, the CUDA twin of
 * cpu_attention, for prefill and decode alike.
 *
 * One warp per (query row, head); the row's keys are visited in chunks of 32,
 * one key per lane, with an online (flash-style) softmax: a running maximum,
 * a running sum and D output accumulators spread over the lanes (lane l owns
 * dims l, l+32, ...). No score matrix is written to global memory, so memory
 * is O(n * H * D) whatever the context length. Grouped-query heads read kv
 * head h / (H / KVH). Head dims up to 256. */
#include "cuda-common.cuh"

#define ATT_WARPS 4
#define ATT_MAX_D 256

template <typename T>
__global__ void attention_kernel(T *out, const T *q, const T *kc, const T *vc, const int32_t *seq,
                                 const int32_t *pos, int64_t n, int64_t H, int64_t KVH, int64_t D,
                                 int64_t Tmax, float scale) {
    __shared__ float qs[ATT_WARPS][ATT_MAX_D];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int64_t task = (int64_t)blockIdx.x * ATT_WARPS + warp; /* (row, head) */
    if (task >= n * H) return;
    int64_t i = task / H, h = task % H, kvh = h / (H / KVH);
    const T *qr = q + (i * H + h) * D;
    for (int64_t d = lane; d < D; d += 32) qs[warp][d] = cu_ld(qr, d) * scale;
    __syncwarp();
    int64_t len = (int64_t)pos[i] + 1, stride = KVH * D;
    const T *kb = kc + ((int64_t)seq[i] * Tmax * KVH + kvh) * D;
    const T *vb = vc + ((int64_t)seq[i] * Tmax * KVH + kvh) * D;
    float acc[ATT_MAX_D / 32];
    for (int r = 0; r < ATT_MAX_D / 32; r++) acc[r] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    for (int64_t k0 = 0; k0 < len; k0 += 32) {
        int64_t kk = k0 + lane;
        float s = -INFINITY;
        if (kk < len) {
            const T *kr = kb + kk * stride;
            s = 0.0f;
            for (int64_t d = 0; d < D; d++) s += qs[warp][d] * cu_ld(kr, d);
        }
        float cm = s;
        for (int o = 16; o > 0; o >>= 1) cm = fmaxf(cm, __shfl_xor_sync(0xffffffffu, cm, o));
        float mn = fmaxf(m, cm);
        float corr = expf(m - mn); /* m = -inf on the first chunk: corr = 0 */
        float p = kk < len ? expf(s - mn) : 0.0f;
        float ps = p;
        for (int o = 16; o > 0; o >>= 1) ps += __shfl_xor_sync(0xffffffffu, ps, o);
        l = l * corr + ps;
        for (int r = 0; r < ATT_MAX_D / 32; r++) acc[r] *= corr;
        int64_t cnt = len - k0 < 32 ? len - k0 : 32;
        for (int t = 0; t < cnt; t++) {
            float pt = __shfl_sync(0xffffffffu, p, t);
            const T *vr = vb + (k0 + t) * stride;
            for (int r = 0; r < ATT_MAX_D / 32; r++) {
                int64_t d = lane + 32 * r;
                if (d < D) acc[r] += pt * cu_ld(vr, d);
            }
        }
        m = mn;
    }
    T *o = out + (i * H + h) * D;
    float inv = 1.0f / l;
    for (int r = 0; r < ATT_MAX_D / 32; r++) {
        int64_t d = lane + 32 * r;
        if (d < D) cu_st(o, d, acc[r] * inv);
    }
}

lisa_status cuda_op_attention(lisa_backend *be, lisa_tensor *out, const lisa_tensor *q,
                              const lisa_tensor *kc, const lisa_tensor *vc,
                              const lisa_tensor *seq, const lisa_tensor *pos) {
    cuda_ctx *c = cuda_ctx_of(be);
    int64_t n = q->shape[0], H = q->shape[1], D = q->shape[2];
    int64_t Tmax = kc->shape[1], KVH = kc->shape[2];
    LISA_ASSERT(H % KVH == 0 && kc->shape[3] == D && lisa_tensor_nelem(out) == n * H * D);
    LISA_ASSERT(q->dtype == kc->dtype && out->dtype == q->dtype);
    if (D > ATT_MAX_D)
        return lisa_error_set(LISA_ERR_UNSUPPORTED, "cuda attention: head dim %lld > %d",
                              (long long)D, ATT_MAX_D);
    if (n == 0) return LISA_OK;
    unsigned blocks = (unsigned)((n * H + ATT_WARPS - 1) / ATT_WARPS);
    float scale = 1.0f / sqrtf((float)D);
    CUDA_DISPATCH_FLOAT(q->dtype, attention_kernel<T><<<blocks, 32 * ATT_WARPS, 0, c->stream>>>(
                                      (T *)out->data, (const T *)q->data, (const T *)kc->data,
                                      (const T *)vc->data, (const int32_t *)seq->data,
                                      (const int32_t *)pos->data, n, H, KVH, D, Tmax, scale));
    CUDA_LAUNCH_CHECK(c);
    return LISA_OK;
}
