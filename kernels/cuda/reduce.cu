/* reduce.cu: row reductions, CUDA twins of cpu_softmax and cpu_argmax. One
 * block per row; fp32 arithmetic; argmax ties go to the lowest index. */
#include "cuda-common.cuh"

#define REDUCE_THREADS 256

template <typename T>
__global__ void softmax_kernel(T *x, int64_t V) {
    __shared__ float sh[32];
    T *r = x + (int64_t)blockIdx.x * V;
    float mx = -INFINITY;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) mx = fmaxf(mx, cu_ld(r, j));
    mx = block_max(mx, sh);
    float sum = 0.0f;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) sum += expf(cu_ld(r, j) - mx);
    sum = block_sum(sum, sh);
    float inv = 1.0f / sum;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) cu_st(r, j, expf(cu_ld(r, j) - mx) * inv);
}

lisa_status cuda_op_softmax(lisa_backend *be, lisa_tensor *x) {
    cuda_ctx *c = cuda_ctx_of(be);
    int64_t V = x->shape[x->ndim - 1], n = lisa_tensor_nelem(x) / V;
    if (n == 0) return LISA_OK;
    CUDA_DISPATCH_FLOAT(x->dtype, CUDA_KERNEL(softmax_kernel<T>, (unsigned)n, REDUCE_THREADS, 0, c->stream)(
                                      (T *)x->data, V));
    CUDA_LAUNCH_CHECK(c);
    return LISA_OK;
}

/* (value, index) pair order: larger value wins, equal values the lower index. */
__device__ __forceinline__ void argmax_merge(float &v, int64_t &i, float ov, int64_t oi) {
    if (ov > v || (ov == v && oi < i)) {
        v = ov;
        i = oi;
    }
}

template <typename T>
__global__ void argmax_kernel(int32_t *out, const T *x, int64_t V) {
    __shared__ float sv[32];
    __shared__ int64_t si[32];
    const T *r = x + (int64_t)blockIdx.x * V;
    float bv = -INFINITY;
    int64_t bi = V;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) argmax_merge(bv, bi, cu_ld(r, j), j);
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        int64_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
        argmax_merge(bv, bi, ov, oi);
    }
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    if (lane == 0) {
        sv[wid] = bv;
        si[wid] = bi;
    }
    __syncthreads();
    if (wid == 0) {
        bv = lane < nw ? sv[lane] : -INFINITY;
        bi = lane < nw ? si[lane] : V;
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            int64_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
            argmax_merge(bv, bi, ov, oi);
        }
        /* a row of NaNs or -inf only: index 0, as the CPU loop gives */
        if (lane == 0) out[blockIdx.x] = (int32_t)(bi < V ? bi : 0);
    }
}

lisa_status cuda_op_argmax(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x) {
    cuda_ctx *c = cuda_ctx_of(be);
    int64_t V = x->shape[x->ndim - 1], n = lisa_tensor_nelem(x) / V;
    LISA_ASSERT(out->dtype == LISA_DTYPE_I32 && lisa_tensor_nelem(out) == n);
    if (n == 0) return LISA_OK;
    CUDA_DISPATCH_FLOAT(x->dtype, CUDA_KERNEL(argmax_kernel<T>, (unsigned)n, REDUCE_THREADS, 0, c->stream)(
                                      (int32_t *)out->data, (const T *)x->data, V));
    CUDA_LAUNCH_CHECK(c);
    return LISA_OK;
}
