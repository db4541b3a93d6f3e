/* elementwise.cu: CUDA twins of the CPU backend's data-movement and
 * elementwise ops: embedding, get_rows, kv_store, swiglu, add, bias add,
 * convert. Grid-stride loops; arithmetic in fp32, stored in the tensor's
 * dtype. */
#include "cuda-common.cuh"

template <typename T>
__global__ void embedding_kernel(T *out, const void *table, lisa_dtype tt, const int32_t *ids,
                                 int64_t n, int64_t C) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n * C;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / C, j = i % C;
        cu_st(out, i, ld_any(table, tt, (int64_t)ids[r] * C + j));
    }
}

lisa_status cuda_op_embedding(lisa_backend *be, lisa_tensor *out, const lisa_tensor *table,
                              const lisa_tensor *ids) {
    cuda_ctx *c = cuda_ctx_of(be);
    int64_t n = lisa_tensor_nelem(ids), C = table->shape[1];
    LISA_ASSERT(ids->dtype == LISA_DTYPE_I32 && lisa_tensor_nelem(out) == n * C);
    CUDA_DISPATCH_FLOAT(out->dtype, CUDA_KERNEL(embedding_kernel<T>, cuda_blocks(n * C, 256), 256, 0, c->stream)(
                                        (T *)out->data, table->data, table->dtype,
                                        (const int32_t *)ids->data, n, C));
    CUDA_LAUNCH_CHECK(c);
    return LISA_OK;
}

template <typename T>
__global__ void get_rows_kernel(T *out, const T *src, const int32_t *idx, int64_t n, int64_t C) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n * C;
         i += (int64_t)gridDim.x * blockDim.x)
        out[i] = src[(int64_t)idx[i / C] * C + i % C];
}

lisa_status cuda_op_get_rows(lisa_backend *be, lisa_tensor *out, const lisa_tensor *src,
                             const lisa_tensor *idx) {
    cuda_ctx *c = cuda_ctx_of(be);
    int64_t C = src->shape[src->ndim - 1], n = lisa_tensor_nelem(idx);
    LISA_ASSERT(lisa_tensor_nelem(out) == n * C && out->dtype == src->dtype);
    LISA_ASSERT(idx->dtype == LISA_DTYPE_I32);
    CUDA_DISPATCH_FLOAT(out->dtype, CUDA_KERNEL(get_rows_kernel<T>, cuda_blocks(n * C, 256), 256, 0, c->stream)(
                                        (T *)out->data, (const T *)src->data,
                                        (const int32_t *)idx->data, n, C));
    CUDA_LAUNCH_CHECK(c);
    return LISA_OK;
}

/* caches (S, Tmax, KVH*D) [seq[i], pos[i]] = k, v (n, KVH*D) */
template <typename T>
__global__ void kv_store_kernel(T *kc, T *vc, const T *k, const T *v, const int32_t *seq,
                                const int32_t *pos, int64_t n, int64_t row, int64_t Tmax) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n * row;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / row, j = i % row;
        int64_t off = ((int64_t)seq[r] * Tmax + pos[r]) * row + j;
        kc[off] = k[i];
        vc[off] = v[i];
    }
}

lisa_status cuda_op_kv_store(lisa_backend *be, lisa_tensor *kc, lisa_tensor *vc,
                             const lisa_tensor *k, const lisa_tensor *v, const lisa_tensor *seq,
                             const lisa_tensor *pos) {
    cuda_ctx *c = cuda_ctx_of(be);
    int64_t Tmax = kc->shape[1], row = kc->shape[2] * kc->shape[3], n = lisa_tensor_nelem(seq);
    LISA_ASSERT(kc->dtype == k->dtype && lisa_tensor_nelem(k) == n * row);
    LISA_ASSERT(vc->dtype == kc->dtype && v->dtype == kc->dtype && lisa_tensor_nelem(v) == n * row);
    LISA_ASSERT(seq->dtype == LISA_DTYPE_I32 && pos->dtype == LISA_DTYPE_I32);
    CUDA_DISPATCH_FLOAT(kc->dtype, CUDA_KERNEL(kv_store_kernel<T>, cuda_blocks(n * row, 256), 256, 0, c->stream)(
                                       (T *)kc->data, (T *)vc->data, (const T *)k->data,
                                       (const T *)v->data, (const int32_t *)seq->data,
                                       (const int32_t *)pos->data, n, row, Tmax));
    CUDA_LAUNCH_CHECK(c);
    return LISA_OK;
}

template <typename T>
__global__ void swiglu_kernel(T *out, const T *g, const T *u, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float a = cu_ld(g, i);
        cu_st(out, i, a / (1.0f + expf(-a)) * cu_ld(u, i));
    }
}

lisa_status cuda_op_swiglu(lisa_backend *be, lisa_tensor *out, const lisa_tensor *gate,
                           const lisa_tensor *up) {
    cuda_ctx *c = cuda_ctx_of(be);
    int64_t n = lisa_tensor_nelem(gate);
    LISA_ASSERT(lisa_tensor_nelem(up) == n && lisa_tensor_nelem(out) == n);
    LISA_ASSERT(gate->dtype == out->dtype && up->dtype == out->dtype);
    CUDA_DISPATCH_FLOAT(out->dtype, CUDA_KERNEL(swiglu_kernel<T>, cuda_blocks(n, 256), 256, 0, c->stream)(
                                        (T *)out->data, (const T *)gate->data,
                                        (const T *)up->data, n));
    CUDA_LAUNCH_CHECK(c);
    return LISA_OK;
}

template <typename T>
__global__ void add_kernel(T *out, const T *a, const T *b, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        cu_st(out, i, cu_ld(a, i) + cu_ld(b, i));
}

lisa_status cuda_op_add(lisa_backend *be, lisa_tensor *out, const lisa_tensor *a,
                        const lisa_tensor *b) {
    cuda_ctx *c = cuda_ctx_of(be);
    int64_t n = lisa_tensor_nelem(a);
    LISA_ASSERT(lisa_tensor_nelem(b) == n && lisa_tensor_nelem(out) == n);
    LISA_ASSERT(a->dtype == out->dtype && b->dtype == out->dtype);
    CUDA_DISPATCH_FLOAT(out->dtype, CUDA_KERNEL(add_kernel<T>, cuda_blocks(n, 256), 256, 0, c->stream)(
                                        (T *)out->data, (const T *)a->data, (const T *)b->data, n));
    CUDA_LAUNCH_CHECK(c);
    return LISA_OK;
}

template <typename T>
__global__ void add_bias_kernel(T *out, const void *bias, lisa_dtype bt, int64_t M, int64_t N) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < M * N;
         i += (int64_t)gridDim.x * blockDim.x)
        cu_st(out, i, cu_ld(out, i) + ld_any(bias, bt, i % N));
}

lisa_status cuda_op_add_bias(lisa_backend *be, lisa_tensor *out, const lisa_tensor *bias) {
    cuda_ctx *c = cuda_ctx_of(be);
    int64_t N = lisa_tensor_nelem(bias), M = lisa_tensor_nelem(out) / N;
    CUDA_DISPATCH_FLOAT(out->dtype, CUDA_KERNEL(add_bias_kernel<T>, cuda_blocks(M * N, 256), 256, 0, c->stream)(
                                        (T *)out->data, bias->data, bias->dtype, M, N));
    CUDA_LAUNCH_CHECK(c);
    return LISA_OK;
}

template <typename T>
__global__ void convert_kernel(T *out, const void *x, lisa_dtype xt, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        cu_st(out, i, ld_any(x, xt, i));
}

lisa_status cuda_op_convert(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x) {
    cuda_ctx *c = cuda_ctx_of(be);
    int64_t n = lisa_tensor_nelem(x);
    LISA_ASSERT(lisa_tensor_nelem(out) == n);
    CUDA_DISPATCH_FLOAT(out->dtype, CUDA_KERNEL(convert_kernel<T>, cuda_blocks(n, 256), 256, 0, c->stream)(
                                        (T *)out->data, x->data, x->dtype, n));
    CUDA_LAUNCH_CHECK(c);
    return LISA_OK;
}
