/* rope.cu: rotary embedding in HF's rotate-half layout, the CUDA twin of
 * cpu_rope. One thread per (row, head, pair); angles in fp32 as HF computes
 * them (pos * inv_freq, inv_freq = 1 / theta^(2j/D)). The inverse
 * frequencies are computed on the host with the same powf as the CPU backend
 * and passed by value: device powf may differ by a few ulp, and at positions
 * in the thousands one ulp of inv_freq moves the angle by ~1e-4 rad. */
#include "cuda-common.cuh"

#define ROPE_MAX_HALF 128

typedef struct {
    float f[ROPE_MAX_HALF];
} rope_freqs;

template <typename T>
__global__ void rope_kernel(T *x, const int32_t *pos, int64_t n, int64_t H, int64_t D,
                            rope_freqs inv) {
    int64_t half = D / 2, total = n * H * half;
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < total;
         t += (int64_t)gridDim.x * blockDim.x) {
        int64_t j = t % half, ih = t / half, i = ih / H;
        float f = (float)pos[i] * inv.f[j];
        float cs = cosf(f), sn = sinf(f);
        T *v = x + ih * D;
        float a = cu_ld(v, j), b = cu_ld(v, j + half);
        cu_st(v, j, a * cs - b * sn);
        cu_st(v, j + half, b * cs + a * sn);
    }
}

lisa_status cuda_op_rope(lisa_backend *be, lisa_tensor *x, const lisa_tensor *pos, float theta) {
    cuda_ctx *c = cuda_ctx_of(be);
    LISA_ASSERT(x->ndim == 3 && pos->dtype == LISA_DTYPE_I32);
    int64_t n = x->shape[0], H = x->shape[1], D = x->shape[2];
    LISA_ASSERT(D % 2 == 0 && lisa_tensor_nelem(pos) == n);
    if (D / 2 > ROPE_MAX_HALF)
        return lisa_error_set(LISA_ERR_UNSUPPORTED, "cuda rope: head dim %lld > %d", (long long)D,
                              2 * ROPE_MAX_HALF);
    if (n == 0) return LISA_OK;
    rope_freqs inv;
    for (int64_t j = 0; j < D / 2; j++) inv.f[j] = 1.0f / powf(theta, (float)(2 * j) / (float)D);
    CUDA_DISPATCH_FLOAT(x->dtype, CUDA_KERNEL(rope_kernel<T>, cuda_blocks(n * H * D / 2, 256), 256, 0, c->stream)(
                                      (T *)x->data, (const int32_t *)pos->data, n, H, D, inv));
    CUDA_LAUNCH_CHECK(c);
    return LISA_OK;
}
