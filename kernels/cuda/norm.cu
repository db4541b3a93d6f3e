/* norm.cu: RMSNorm and the fused residual-add + RMSNorm, CUDA twins of
 * cpu_rmsnorm / cpu_add_rmsnorm. One block per row; the sum of squares in
 * fp32. Rounding follows HF LlamaRMSNorm in half precision: the normalized
 * row is cast to the activation dtype before the weight multiplies it. */
#include "cuda-common.cuh"

#define NORM_THREADS 256

template <typename T>
__global__ void rmsnorm_kernel(T *out, T *x, const T *d, const void *w, lisa_dtype wt, int64_t C,
                               float eps) {
    __shared__ float sh[32];
    int64_t r = blockIdx.x;
    T *xr = x + r * C;
    float ss = 0.0f;
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x) {
        float v = cu_ld(xr, j);
        if (d) {
            v = cu_round<T>(v + cu_ld(d + r * C, j));
            cu_st(xr, j, v);
        }
        ss += v * v;
    }
    ss = block_sum(ss, sh);
    float rs = rsqrtf(ss / (float)C + eps);
    /* every thread has read its own d/x elements before anyone writes out,
     * which may alias d: block_sum's barriers order the two loops */
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x)
        cu_st(out + r * C, j, ld_any(w, wt, j) * cu_round<T>(cu_ld(xr, j) * rs));
}

lisa_status cuda_op_rmsnorm(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x,
                            const lisa_tensor *w, float eps) {
    cuda_ctx *c = cuda_ctx_of(be);
    int64_t C = x->shape[x->ndim - 1], n = lisa_tensor_nelem(x) / C;
    LISA_ASSERT(lisa_tensor_nelem(w) == C && out->dtype == x->dtype);
    if (n == 0) return LISA_OK;
    CUDA_DISPATCH_FLOAT(x->dtype, CUDA_KERNEL(rmsnorm_kernel<T>, (unsigned)n, NORM_THREADS, 0, c->stream)(
                                      (T *)out->data, (T *)x->data, (const T *)NULL, w->data,
                                      w->dtype, C, eps));
    CUDA_LAUNCH_CHECK(c);
    return LISA_OK;
}

lisa_status cuda_op_add_rmsnorm(lisa_backend *be, lisa_tensor *x, const lisa_tensor *d,
                                lisa_tensor *out, const lisa_tensor *w, float eps) {
    cuda_ctx *c = cuda_ctx_of(be);
    int64_t C = x->shape[x->ndim - 1], n = lisa_tensor_nelem(x) / C;
    LISA_ASSERT(lisa_tensor_nelem(w) == C && out->dtype == x->dtype && d->dtype == x->dtype);
    if (n == 0) return LISA_OK;
    CUDA_DISPATCH_FLOAT(x->dtype, CUDA_KERNEL(rmsnorm_kernel<T>, (unsigned)n, NORM_THREADS, 0, c->stream)(
                                      (T *)out->data, (T *)x->data, (const T *)d->data, w->data,
                                      w->dtype, C, eps));
    CUDA_LAUNCH_CHECK(c);
    return LISA_OK;
}
