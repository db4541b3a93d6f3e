/* backend-cuda.cu: the CUDA backend: device memory, the stream, pinned
 * staging for uploads, pinned host buffers, events, device-to-device
 * copies, scratch reservation, and the ops table whose entries live in the
 * other files of this folder (gemm.cu, gemm-quant.cu, norm.cu, rope.cu,
 * attention.cu, elementwise.cu, reduce.cu, vision.cu). Each op mirrors the
 * CPU backend's function of the same name, which is its oracle
 * (tests/unit/test-backend-ops.c).
 *
 * One stream per backend; everything is enqueued on it. Its switches come
 * from lisa_backend_params (no environment is read here). Deliberately not
 * here: multi-GPU, model knowledge (which calls are worth a graph is the
 * caller's choice: shard/llama.c records decode-sized forward calls). */
#include <stdlib.h>
#include <string.h>

#include "cuda-common.cuh"
#include "fault.h"

#define CUDA_STAGING_BYTES ((size_t)32 << 20)
#define CUDA_WORKSPACE_BYTES ((size_t)32 << 20)
#define CUDA_ATT_SCRATCH_BYTES ((size_t)16 << 20)
/* Dequantized weight tiles of quantized matmuls (gemm-quant.cu): 32 MB holds
 * the whole of most LLaMA matrices in bf16 (4096 x 4096) and a few tiles of
 * the largest (lm_head, gate|up); lisa_backend_reserve grows it when a K
 * needs more for one tile. */
#define CUDA_QUANT_SCRATCH_BYTES ((size_t)32 << 20)

/* cudaMalloc with the error a user can act on: what was asked for, for
 * what, and how much the device has free. */
static lisa_status cuda_device_alloc(cuda_ctx *c, size_t nbytes, const char *what, void **out) {
    void *p = NULL;
    cudaError_t e = lisa_fault_hit(LISA_FAULT_BACKEND) ? cudaErrorMemoryAllocation
                                                       : cudaMalloc(&p, nbytes ? nbytes : 1);
    if (e != cudaSuccess) {
        size_t free_b = 0, total_b = 0;
        cudaGetLastError();
        cudaMemGetInfo(&free_b, &total_b);
        return lisa_error_set(LISA_ERR_NOMEM,
                              "cuda:%d: cannot allocate %zu bytes (%.2f GiB) for %s: %s; device "
                              "has %.2f GiB free of %.2f GiB",
                              c->device, nbytes, nbytes / 1073741824.0, what,
                              cudaGetErrorString(e), free_b / 1073741824.0,
                              total_b / 1073741824.0);
    }
    *out = p;
    return LISA_OK;
}

static lisa_status cuda_buffer_alloc(lisa_backend *be, size_t nbytes, void **out) {
    cuda_ctx *c = cuda_ctx_of(be);
    void *p = NULL;
    LISA_TRY(cuda_device_alloc(c, nbytes, "a model or state buffer", &p));
    cudaError_t e = cudaMemsetAsync(p, 0, nbytes, c->stream);
    if (e != cudaSuccess) {
        cudaFree(p);
        CUDA_TRY(e);
    }
    *out = p;
    return LISA_OK;
}

static void cuda_buffer_free(lisa_backend *be, void *ptr) {
    cuda_ctx *c = cuda_ctx_of(be);
    /* pending work may still read it */
    cudaStreamSynchronize(c->stream);
    cudaFree(ptr);
}

static lisa_status cuda_copy_to_backend(lisa_backend *be, void *dst, size_t offset, const void *src,
                                        size_t n) {
    cuda_ctx *c = cuda_ctx_of(be);
    CUDA_TRY(cudaMemcpyAsync((char *)dst + offset, src, n, cudaMemcpyHostToDevice, c->stream));
    return LISA_OK;
}

static lisa_status cuda_copy_to_host(lisa_backend *be, void *dst, const void *src, size_t offset,
                                     size_t n) {
    cuda_ctx *c = cuda_ctx_of(be);
    CUDA_TRY(cudaMemcpyAsync(dst, (const char *)src + offset, n, cudaMemcpyDeviceToHost, c->stream));
    return LISA_OK;
}

static lisa_status cuda_copy_backend(lisa_backend *be, void *dst, size_t dst_offset, const void *src,
                                     size_t src_offset, size_t n) {
    cuda_ctx *c = cuda_ctx_of(be);
    CUDA_TRY(cudaMemcpyAsync((char *)dst + dst_offset, (const char *)src + src_offset, n,
                             cudaMemcpyDeviceToDevice, c->stream));
    return LISA_OK;
}

/* Pinned and portable (pinned for every device's context). */
static lisa_status cuda_host_alloc(lisa_backend *be, size_t nbytes, void **out) {
    cuda_ctx *c = cuda_ctx_of(be);
    void *p = NULL;
    cudaError_t e = lisa_fault_hit(LISA_FAULT_BACKEND)
                        ? cudaErrorMemoryAllocation
                        : cudaHostAlloc(&p, nbytes ? nbytes : 1, cudaHostAllocPortable);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return lisa_error_set(LISA_ERR_NOMEM, "cuda:%d: cannot allocate %zu bytes of pinned host "
                              "memory: %s", c->device, nbytes, cudaGetErrorString(e));
    }
    *out = p;
    return LISA_OK;
}

static void cuda_host_free(lisa_backend *be, void *ptr) {
    (void)be;
    if (ptr) cudaFreeHost(ptr);
}

static lisa_status cuda_synchronize(lisa_backend *be) {
    CUDA_TRY(cudaStreamSynchronize(cuda_ctx_of(be)->stream));
    return LISA_OK;
}

/* Events are cudaEvent_t handles (no timing), cast to lisa_event. */
static lisa_status cuda_event_create(lisa_backend *be, lisa_event **out) {
    (void)be;
    cudaEvent_t e = NULL;
    CUDA_TRY(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    *out = (lisa_event *)e;
    return LISA_OK;
}

static void cuda_event_free(lisa_backend *be, lisa_event *ev) {
    (void)be;
    if (ev) cudaEventDestroy((cudaEvent_t)ev);
}

static lisa_status cuda_event_record(lisa_backend *be, lisa_event *ev) {
    CUDA_TRY(cudaEventRecord((cudaEvent_t)ev, cuda_ctx_of(be)->stream));
    return LISA_OK;
}

static lisa_status cuda_event_wait(lisa_backend *be, lisa_event *ev) {
    CUDA_TRY(cudaStreamWaitEvent(cuda_ctx_of(be)->stream, (cudaEvent_t)ev, 0));
    return LISA_OK;
}

static lisa_status cuda_event_query(lisa_backend *be, lisa_event *ev, int *done) {
    (void)be;
    cudaError_t e = cudaEventQuery((cudaEvent_t)ev);
    if (e == cudaErrorNotReady) {
        *done = 0;
        return LISA_OK;
    }
    CUDA_TRY(e);
    *done = 1;
    return LISA_OK;
}

static lisa_status cuda_event_synchronize(lisa_backend *be, lisa_event *ev) {
    (void)be;
    CUDA_TRY(cudaEventSynchronize((cudaEvent_t)ev));
    return LISA_OK;
}

/* Graphs: stream capture in thread-local mode (other threads' CUDA calls are
 * unaffected), instantiated once, replayed on the backend's stream. Not
 * offered with no_graphs, nor with sync_each_launch, whose per-launch
 * synchronize would break a capture. */
static lisa_status cuda_graph_begin(lisa_backend *be) {
    cuda_ctx *c = cuda_ctx_of(be);
    if (be->params.no_graphs)
        return lisa_error_set(LISA_ERR_UNSUPPORTED, "cuda graphs are switched off (no_graphs)");
    if (c->debug_sync)
        return lisa_error_set(LISA_ERR_UNSUPPORTED,
                              "cuda graphs are off with a synchronize after every launch");
    CUDA_TRY(cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal));
    return LISA_OK;
}

static lisa_status cuda_graph_end(lisa_backend *be, void **out) {
    cuda_ctx *c = cuda_ctx_of(be);
    cudaGraph_t g = NULL;
    cudaGraphExec_t exec = NULL;
    cudaError_t e = cudaStreamEndCapture(c->stream, &g);
    if (e == cudaSuccess) e = cudaGraphInstantiate(&exec, g, 0);
    if (g) cudaGraphDestroy(g);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return lisa_error_set(LISA_ERR_BACKEND, "cuda: recording a graph failed: %s",
                              cudaGetErrorString(e));
    }
    *out = (void *)exec;
    return LISA_OK;
}

static lisa_status cuda_graph_launch(lisa_backend *be, void *graph) {
    CUDA_TRY(cudaGraphLaunch((cudaGraphExec_t)graph, cuda_ctx_of(be)->stream));
    return LISA_OK;
}

static void cuda_graph_free(lisa_backend *be, void *graph) {
    cudaStreamSynchronize(cuda_ctx_of(be)->stream);
    if (graph) cudaGraphExecDestroy((cudaGraphExec_t)graph);
}

/* Double-buffered: the CPU converts chunk i+1 while chunk i is in flight.
 * A block type (Q8_0, Q4_0) is uploaded only as itself, as a plain copy of
 * its blocks: converting to or from one here would hide a loader asking for
 * the wrong dtype. */
static lisa_status cuda_upload_convert(lisa_backend *be, void *dst, lisa_dtype dst_dtype,
                                       const void *src, lisa_dtype src_dtype, size_t n) {
    cuda_ctx *c = cuda_ctx_of(be);
    int quant = lisa_dtype_is_quant(dst_dtype) || lisa_dtype_is_quant(src_dtype);
    if (quant && dst_dtype != src_dtype)
        return lisa_error_set(LISA_ERR_UNSUPPORTED,
                              "cuda upload: %s -> %s: quantized weights are uploaded in their own "
                              "dtype, not converted",
                              lisa_dtype_name(src_dtype), lisa_dtype_name(dst_dtype));
    /* elements go in whole blocks; for a block type an "element" of the
     * loop below is one block */
    int64_t blk = lisa_dtype_block(dst_dtype);
    LISA_ASSERT(n % (size_t)blk == 0);
    size_t units = n / (size_t)blk;
    size_t ds = lisa_dtype_size(dst_dtype), ss = lisa_dtype_size(src_dtype);
    size_t chunk = c->staging_size / ds;
    int b = 0;
    for (size_t i = 0; i < units; i += chunk, b ^= 1) {
        size_t cnt = units - i < chunk ? units - i : chunk;
        CUDA_TRY(cudaEventSynchronize(c->staging_done[b]));
        if (dst_dtype == src_dtype)
            memcpy(c->staging[b], (const char *)src + i * ss, cnt * ss);
        else
            lisa_dtype_convert(c->staging[b], dst_dtype, (const char *)src + i * ss, src_dtype,
                               cnt);
        CUDA_TRY(cudaMemcpyAsync((char *)dst + i * ds, c->staging[b], cnt * ds,
                                 cudaMemcpyHostToDevice, c->stream));
        CUDA_TRY(cudaEventRecord(c->staging_done[b], c->stream));
    }
    CUDA_TRY(cudaStreamSynchronize(c->stream));
    return LISA_OK;
}

/* Grows the dequantization scratch so one prefill tile of a quantized
 * matmul with K = matmul_k fits; the other fields need nothing here (the
 * attention scratch is sized for its worst case at init). Called at model
 * init, never while recording a graph. */
static lisa_status cuda_reserve(lisa_backend *be, const lisa_backend_reserve_req *r) {
    cuda_ctx *c = cuda_ctx_of(be);
    size_t need = cuda_quant_scratch_bytes(r->matmul_k);
    if (need <= c->quant_scratch_size) return LISA_OK;
    CUDA_TRY(cudaStreamSynchronize(c->stream)); /* queued matmuls may still read it */
    void *p = NULL;
    LISA_TRY(cuda_device_alloc(c, need, "the quantized matmul scratch (matmul_k)", &p));
    void *old = c->quant_scratch;
    c->quant_scratch = p;
    c->quant_scratch_size = need;
    CUDA_TRY(cudaFree(old));
    return LISA_OK;
}

static void cuda_free(lisa_backend *be) {
    cuda_ctx *c = cuda_ctx_of(be);
    cudaStreamSynchronize(c->stream);
    cuda_gemm_cache_free(c);
    for (int i = 0; i < 2; i++) {
        if (c->staging[i]) cudaFreeHost(c->staging[i]);
        if (c->staging_done[i]) cudaEventDestroy(c->staging_done[i]);
    }
    if (c->workspace) cudaFree(c->workspace);
    if (c->att_scratch) cudaFree(c->att_scratch);
    if (c->quant_scratch) cudaFree(c->quant_scratch);
    if (c->lt) cublasLtDestroy(c->lt);
    if (c->stream) cudaStreamDestroy(c->stream);
    free(c);
    free(be);
}

static lisa_backend_ops cuda_ops_table(void) {
    lisa_backend_ops o;
    memset(&o, 0, sizeof o);
    o.name = "cuda";
    o.host_memory = 0;
    o.buffer_alloc = cuda_buffer_alloc;
    o.buffer_free = cuda_buffer_free;
    o.copy_to_backend = cuda_copy_to_backend;
    o.copy_to_host = cuda_copy_to_host;
    o.synchronize = cuda_synchronize;
    o.copy_backend = cuda_copy_backend;
    o.host_alloc = cuda_host_alloc;
    o.host_free = cuda_host_free;
    o.event_create = cuda_event_create;
    o.event_free = cuda_event_free;
    o.event_record = cuda_event_record;
    o.event_wait = cuda_event_wait;
    o.event_query = cuda_event_query;
    o.event_synchronize = cuda_event_synchronize;
    o.upload_convert = cuda_upload_convert;
    o.reserve = cuda_reserve;
    o.graph_begin = cuda_graph_begin;
    o.graph_end = cuda_graph_end;
    o.graph_launch = cuda_graph_launch;
    o.graph_free = cuda_graph_free;
    o.matmul = cuda_op_matmul;
    o.embedding = cuda_op_embedding;
    o.rmsnorm = cuda_op_rmsnorm;
    o.add_rmsnorm = cuda_op_add_rmsnorm;
    o.rope = cuda_op_rope;
    o.kv_store = cuda_op_kv_store;
    o.attention = cuda_op_attention;
    o.swiglu = cuda_op_swiglu;
    o.add = cuda_op_add;
    o.softmax = cuda_op_softmax;
    o.argmax = cuda_op_argmax;
    o.get_rows = cuda_op_get_rows;
    o.convert = cuda_op_convert;
    o.layernorm = cuda_op_layernorm;
    o.activation = cuda_op_activation;
    o.add_bias = cuda_op_add_bias;
    o.attention_full = cuda_op_attention_full;
    o.im2col = cuda_op_im2col;
    o.conv_transpose_2x2 = cuda_op_conv_transpose_2x2;
    o.window_partition = cuda_op_window_partition;
    o.window_unpartition = cuda_op_window_unpartition;
    o.resize_bilinear = cuda_op_resize_bilinear;
    o.copy_cols = cuda_op_copy_cols;
    o.transpose = cuda_op_transpose;
    o.free = cuda_free;
    return o;
}

static lisa_backend_ops g_cuda_ops;

/* Sets up stream, cuBLASLt, workspace and staging; on failure the caller
 * frees what was made through cuda_free. */
static lisa_status cuda_ctx_setup(cuda_ctx *c) {
    CUDA_TRY(cudaSetDevice(c->device));
    CUDA_TRY(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    CUBLAS_TRY(cublasLtCreate(&c->lt));
    c->workspace_size = CUDA_WORKSPACE_BYTES;
    LISA_TRY(cuda_device_alloc(c, c->workspace_size, "the cuBLASLt workspace", &c->workspace));
    c->att_scratch_size = CUDA_ATT_SCRATCH_BYTES;
    LISA_TRY(cuda_device_alloc(c, c->att_scratch_size, "the attention scratch", &c->att_scratch));
    c->quant_scratch_size = CUDA_QUANT_SCRATCH_BYTES;
    LISA_TRY(cuda_device_alloc(c, c->quant_scratch_size, "the quantized matmul scratch",
                               &c->quant_scratch));
    c->staging_size = CUDA_STAGING_BYTES;
    for (int i = 0; i < 2; i++) {
        CUDA_TRY(cudaMallocHost(&c->staging[i], c->staging_size));
        CUDA_TRY(cudaEventCreateWithFlags(&c->staging_done[i], cudaEventDisableTiming));
        CUDA_TRY(cudaEventRecord(c->staging_done[i], c->stream));
    }
    return LISA_OK;
}

extern "C" lisa_status lisa_backend_cuda_init(lisa_backend **out, int device) {
    lisa_backend_params p = lisa_backend_params_default(LISA_BACKEND_CUDA, device, 0);
    return lisa_backend_cuda_init_params(out, &p);
}

extern "C" lisa_status lisa_backend_cuda_init_params(lisa_backend **out,
                                                     const lisa_backend_params *p) {
    int device = p->device;
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        cudaGetLastError();
        return lisa_error_set(LISA_ERR_UNSUPPORTED, "no CUDA device available (%s)",
                              e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    }
    if (device < 0 || device >= count)
        return lisa_error_set(LISA_ERR_ARG, "cuda:%d requested but %d device(s) present", device,
                              count);
    lisa_backend *be = (lisa_backend *)calloc(1, sizeof *be);
    cuda_ctx *c = (cuda_ctx *)calloc(1, sizeof *c);
    if (!be || !c) {
        free(be);
        free(c);
        return lisa_error_set(LISA_ERR_NOMEM, "cuda backend: allocation failed");
    }
    c->device = device;
    c->debug_sync = p->sync_each_launch != 0;
    c->gemv = !p->no_gemv;
    g_cuda_ops = cuda_ops_table();
    be->ops = &g_cuda_ops;
    be->ctx = c;
    be->params = *p;
    be->params.kind = LISA_BACKEND_CUDA;
    lisa_status st = cuda_ctx_setup(c);
    if (st != LISA_OK) {
        cuda_free(be);
        return st;
    }
    *out = be;
    return LISA_OK;
}
