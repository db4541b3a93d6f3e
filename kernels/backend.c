/* backend.c: backend-independent helpers of the seam (tensor headers, the
 * backend factory and its params, whole-tensor copies, scratch reservation).
 * No op is implemented here. lisa_backend_params_from_env is the one place
 * that reads the environment's switches; nothing in the library calls it. */
#include "backend.h"

#include <stdlib.h>
#include <string.h>

int64_t lisa_tensor_nelem(const lisa_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t lisa_tensor_nbytes(const lisa_tensor *t) {
    return lisa_dtype_row_bytes(t->dtype, lisa_tensor_nelem(t));
}

lisa_tensor lisa_tensor_view(void *data, lisa_dtype dtype, int ndim, const int64_t *shape) {
    LISA_ASSERT(ndim >= 0 && ndim <= LISA_MAX_DIMS);
    lisa_tensor t;
    memset(&t, 0, sizeof t);
    t.data = data;
    t.dtype = dtype;
    t.ndim = ndim;
    for (int i = 0; i < ndim; i++) t.shape[i] = shape[i];
    return t;
}

lisa_tensor lisa_tensor_1d(void *data, lisa_dtype dtype, int64_t n0) {
    return lisa_tensor_view(data, dtype, 1, &n0);
}

lisa_tensor lisa_tensor_2d(void *data, lisa_dtype dtype, int64_t n0, int64_t n1) {
    int64_t shape[2] = {n0, n1};
    return lisa_tensor_view(data, dtype, 2, shape);
}

lisa_tensor lisa_tensor_rows(const lisa_tensor *t, int64_t r0, int64_t n) {
    LISA_ASSERT(t->ndim >= 1 && r0 >= 0 && r0 + n <= t->shape[0]);
    lisa_tensor v = *t;
    size_t row_bytes = lisa_tensor_nbytes(t) / (size_t)(t->shape[0] ? t->shape[0] : 1);
    v.data = (char *)t->data + (size_t)r0 * row_bytes;
    v.shape[0] = n;
    return v;
}

int lisa_backend_has_cuda(void) {
#ifdef LISA_HAVE_CUDA
    return 1;
#else
    return 0;
#endif
}

lisa_backend_params lisa_backend_params_default(lisa_backend_kind kind, int device, int threads) {
    lisa_backend_params p;
    memset(&p, 0, sizeof p);
    p.kind = kind;
    p.device = device;
    p.threads = threads;
    return p;
}

void lisa_backend_params_from_env(lisa_backend_params *p) {
    const char *e = getenv("LISA_CUDA_SYNC");
    if (e && *e && strcmp(e, "0") != 0) p->sync_each_launch = 1;
    e = getenv("LISA_GEMV");
    if (e && !strcmp(e, "0")) p->no_gemv = 1;
    e = getenv("LISA_GRAPHS");
    if (e && !strcmp(e, "0")) p->no_graphs = 1;
    e = getenv("LISA_CPU_ISA");
    if (e && !strcmp(e, "avx512")) p->cpu_isa = LISA_CPU_ISA_AVX512;
    else if (e && !strcmp(e, "avx2")) p->cpu_isa = LISA_CPU_ISA_AVX2;
    else if (e && !strcmp(e, "generic")) p->cpu_isa = LISA_CPU_ISA_GENERIC;
    e = getenv("LISA_CPU_BF16_DOT");
    if (e && *e && strcmp(e, "0") != 0) p->cpu_bf16_dot = 1;
}

lisa_status lisa_backend_init_params(lisa_backend **out, const lisa_backend_params *p) {
    switch (p->kind) {
    case LISA_BACKEND_CPU:
        return lisa_backend_cpu_init_params(out, p);
    case LISA_BACKEND_CUDA:
#ifdef LISA_HAVE_CUDA
        return lisa_backend_cuda_init_params(out, p);
#else
        return lisa_error_set(LISA_ERR_UNSUPPORTED,
                              "this build has no CUDA backend (configure with -DLISA_CUDA=ON)");
#endif
    }
    return lisa_error_set(LISA_ERR_ARG, "unknown backend kind %d", (int)p->kind);
}

lisa_status lisa_backend_init(lisa_backend **out, lisa_backend_kind kind, int device, int nthreads) {
    lisa_backend_params p = lisa_backend_params_default(kind, device, nthreads);
    return lisa_backend_init_params(out, &p);
}

void lisa_backend_free(lisa_backend *be) {
    if (be) be->ops->free(be);
}

int lisa_backend_graphs_enabled(const lisa_backend *be) {
    return be->ops->graph_begin != NULL && !be->params.no_graphs;
}

lisa_status lisa_backend_reserve(lisa_backend *be, const lisa_backend_reserve_req *r) {
    return be->ops->reserve ? be->ops->reserve(be, r) : LISA_OK;
}

lisa_status lisa_backend_tensor_alloc(lisa_backend *be, lisa_tensor *t, lisa_dtype dtype, int ndim,
                                      const int64_t *shape) {
    *t = lisa_tensor_view(NULL, dtype, ndim, shape);
    size_t n = lisa_tensor_nbytes(t);
    return be->ops->buffer_alloc(be, n ? n : 1, &t->data);
}

void lisa_backend_tensor_free(lisa_backend *be, lisa_tensor *t) {
    if (t->data) be->ops->buffer_free(be, t->data);
    t->data = NULL;
}

lisa_status lisa_backend_tensor_set(lisa_backend *be, lisa_tensor *t, const void *host) {
    LISA_TRY(be->ops->copy_to_backend(be, t->data, 0, host, lisa_tensor_nbytes(t)));
    return be->ops->synchronize(be);
}

lisa_status lisa_backend_tensor_get(lisa_backend *be, const lisa_tensor *t, void *host) {
    LISA_TRY(be->ops->copy_to_host(be, host, t->data, 0, lisa_tensor_nbytes(t)));
    return be->ops->synchronize(be);
}

lisa_status lisa_backend_synchronize(lisa_backend *be) { return be->ops->synchronize(be); }
