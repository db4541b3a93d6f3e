/* backend-cpu.c: the CPU backend, the numerical oracle for every other one.
 *
 * fp32 compute and OpenMP. Weights stay in their checkpoint dtype (F32, F16,
 * BF16, or the Q8_0/Q4_0 block types) so a checkpoint costs its file size in
 * memory, not more:
 *  - matmul: the backend's own kernels (matmul-cpu.h; AVX-512, AVX2 or
 *    portable, chosen at run time). Panels of a few weight rows are widened
 *    exactly to fp32 chunk by chunk into L1 and multiplied with blocks of
 *    activation rows, so batch-1 decode streams every weight once, straight
 *    from the mmap, at close to the memory's bandwidth. Threads split the
 *    weight rows.
 *  - batch invariance: a row's result must not depend on which other rows
 *    share its call (continuous batching and pipeline micro-batches mix
 *    requests differently from one run to the next, and the cluster must
 *    give bit for bit what one process gives). The kernels give it by
 *    construction: each output's lane sums run over k in one fixed order
 *    whatever M, the blocking or the threads (test-matmul checks it).
 *    An sgemm cannot promise that (OpenBLAS 0.3.21 sums odd-M remainder rows
 *    in another order), which is why matmul no longer calls OpenBLAS.
 * cblas_sbgemm and AVX512-BF16 dot products were rejected: they round the
 * fp32 activations to bf16 and lose the exactness the reference comparisons
 * need. OpenBLAS still serves the vision ops' attention and transposed
 * convolution (ops-vision-cpu.c), kept single-threaded so its pool and
 * OpenMP's never compete for cores.
 *
 * Memory is plain host memory (64-byte aligned); copies are memcpy and the
 * backend is synchronous, so its events are done when recorded. Ops take
 * their scratch from the reservation in cpu_ctx (cpu-internal.h), made at
 * init for LISA_CPU_SCRATCH_* and grown by cpu_reserve; none allocates.
 * Deliberately not here: any model knowledge. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "cpu-internal.h"
#include "fault.h"
#include "matmul-cpu.h"

/* The default reservation: per thread 4 MB (the matmul's panel and lane
 * sums, about 60 KB; attention scores for 1M positions; attention_full
 * blocks up to Lk = 16K at D = 128); shared 4 MB (weight vectors, small
 * transposed convs). */
#define LISA_CPU_SCRATCH_THREAD_ELEMS (((size_t)4 << 20) / sizeof(float))
#define LISA_CPU_SCRATCH_SHARED_ELEMS ((size_t)1 << 20)


/* --- memory --- */

static lisa_status cpu_buffer_alloc(lisa_backend *be, size_t nbytes, void **out) {
    (void)be;
    size_t n = (nbytes + 63) & ~(size_t)63;
    void *p = lisa_fault_hit(LISA_FAULT_BACKEND) ? NULL : aligned_alloc(64, n ? n : 64);
    if (!p) return lisa_error_set(LISA_ERR_NOMEM, "cpu: cannot allocate %zu bytes", nbytes);
    memset(p, 0, n);
    *out = p;
    return LISA_OK;
}

static void cpu_buffer_free(lisa_backend *be, void *ptr) {
    (void)be;
    free(ptr);
}

static lisa_status cpu_copy_to_backend(lisa_backend *be, void *dst, size_t offset, const void *src,
                                       size_t n) {
    (void)be;
    memcpy((char *)dst + offset, src, n);
    return LISA_OK;
}

static lisa_status cpu_copy_to_host(lisa_backend *be, void *dst, const void *src, size_t offset,
                                    size_t n) {
    (void)be;
    memcpy(dst, (const char *)src + offset, n);
    return LISA_OK;
}

static lisa_status cpu_copy_backend(lisa_backend *be, void *dst, size_t dst_offset, const void *src,
                                    size_t src_offset, size_t n) {
    (void)be;
    memcpy((char *)dst + dst_offset, (const char *)src + src_offset, n);
    return LISA_OK;
}

static lisa_status cpu_host_alloc(lisa_backend *be, size_t nbytes, void **out) {
    (void)be;
    size_t n = (nbytes + 63) & ~(size_t)63;
    void *p = lisa_fault_hit(LISA_FAULT_BACKEND) ? NULL : aligned_alloc(64, n ? n : 64);
    if (!p) return lisa_error_set(LISA_ERR_NOMEM, "cpu: cannot allocate %zu bytes of host memory", nbytes);
    *out = p;
    return LISA_OK;
}

static void cpu_host_free(lisa_backend *be, void *ptr) {
    (void)be;
    free(ptr);
}

static lisa_status cpu_synchronize(lisa_backend *be) {
    (void)be;
    return LISA_OK;
}

/* --- events: everything is finished when enqueued, so every event is done --- */

typedef struct {
    int recorded;
} cpu_event;

static lisa_status cpu_event_create(lisa_backend *be, lisa_event **out) {
    (void)be;
    cpu_event *e = calloc(1, sizeof *e);
    if (!e) return lisa_error_set(LISA_ERR_NOMEM, "cpu: cannot allocate an event");
    *out = (lisa_event *)e;
    return LISA_OK;
}

static void cpu_event_free(lisa_backend *be, lisa_event *ev) {
    (void)be;
    free(ev);
}

static lisa_status cpu_event_record(lisa_backend *be, lisa_event *ev) {
    (void)be;
    ((cpu_event *)ev)->recorded = 1;
    return LISA_OK;
}

static lisa_status cpu_event_wait(lisa_backend *be, lisa_event *ev) {
    (void)be;
    (void)ev;
    return LISA_OK;
}

static lisa_status cpu_event_query(lisa_backend *be, lisa_event *ev, int *done) {
    (void)be;
    (void)ev;
    *done = 1;
    return LISA_OK;
}

static lisa_status cpu_event_synchronize(lisa_backend *be, lisa_event *ev) {
    (void)be;
    (void)ev;
    return LISA_OK;
}

/* --- scratch --- */

lisa_status cpu_scratch_fits(const cpu_ctx *c, const char *op, size_t per_thread, size_t shared,
                             const char *field) {
    if (per_thread <= c->thread_elems && shared <= c->shared_elems) return LISA_OK;
    return lisa_error_set(LISA_ERR_ARG,
                          "cpu %s: needs %zu floats of scratch per thread and %zu shared, %zu and "
                          "%zu reserved%s%s%s",
                          op, per_thread, shared, c->thread_elems, c->shared_elems,
                          field ? " (raise " : "", field ? field : "",
                          field ? " in lisa_backend_reserve)" : "");
}

/* (Re)allocates the scratch block for at least the given slice sizes. */
static lisa_status cpu_scratch_alloc(cpu_ctx *c, size_t thread_elems, size_t shared_elems) {
    thread_elems = cpu_r16(thread_elems);
    shared_elems = cpu_r16(shared_elems);
    size_t bytes = ((size_t)c->nthreads * thread_elems + shared_elems) * sizeof(float);
    float *p = aligned_alloc(64, bytes);
    if (!p)
        return lisa_error_set(LISA_ERR_NOMEM, "cpu backend: cannot reserve %zu bytes of op scratch",
                              bytes);
    free(c->scratch);
    c->scratch = p;
    c->thread_elems = thread_elems;
    c->shared_elems = shared_elems;
    return LISA_OK;
}

static size_t max_size(size_t a, int64_t b) { return b > 0 && (size_t)b > a ? (size_t)b : a; }

/* Per-thread: the attention scores (Tmax), attention_full's blocks (the
 * matmul's panel need is fixed and inside the default). Shared: a pass of
 * activation rows quantized for packed weights (matmul_k), the transposed
 * conv's product, widened weight and bias (O <= C*O*4). */
static lisa_status cpu_reserve(lisa_backend *be, const lisa_backend_reserve_req *r) {
    cpu_ctx *c = cpu_ctx_of(be);
    size_t t = max_size(c->thread_elems, r->attention_ctx);
    if (r->attention_full_lk > 0 && r->attention_full_d > 0)
        t = max_size(t, (int64_t)cpu_attention_full_need(r->attention_full_lk, r->attention_full_d));
    size_t sh = c->shared_elems;
    if (r->matmul_k > 0) /* a pass of quantized activation rows (packed weights) */
        sh = max_size(sh, (int64_t)(CPU_MM_MB * (((size_t)(r->matmul_k / LISA_QK) *
                                                     sizeof(cpu_xq_block) + 3) / 4)));
    if (r->conv_t_out > 0)
        sh = max_size(sh, (int64_t)(cpu_r16((size_t)r->conv_t_out) + 2 * cpu_r16((size_t)r->conv_t_w)));
    if (t == c->thread_elems && sh == c->shared_elems) return LISA_OK;
    return cpu_scratch_alloc(c, t, sh);
}

static lisa_status cpu_upload_convert(lisa_backend *be, void *dst, lisa_dtype dst_dtype,
                                      const void *src, lisa_dtype src_dtype, size_t n) {
    (void)be;
    lisa_dtype_convert(dst, dst_dtype, src, src_dtype, n);
    return LISA_OK;
}

static lisa_status cpu_convert(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x) {
    (void)be;
    LISA_ASSERT(lisa_tensor_nelem(out) == lisa_tensor_nelem(x));
    lisa_dtype_convert(out->data, out->dtype, x->data, x->dtype, (size_t)lisa_tensor_nelem(x));
    return LISA_OK;
}

/* --- helpers --- */

/* Dot product with 8 independent partial sums so the compiler vectorizes it
 * without -ffast-math. */
static inline float dot_f32(const float *a, const float *b, int64_t n) {
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += a[i + j] * b[i + j];
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static void widen_rows(float *dst, const lisa_tensor *w, int64_t r0, int64_t nrows, int64_t K) {
    const char *src = (const char *)w->data + (size_t)r0 * lisa_dtype_row_bytes(w->dtype, K);
    lisa_dtype_to_f32(dst, src, w->dtype, (size_t)(nrows * K));
}

/* --- ops --- */

/* The widened-panel path (matmul-cpu.h): float weights, and block weights
 * left unpacked. */
static lisa_status cpu_matmul_float(cpu_ctx *c, float *od, const float *xd, int64_t M, int64_t K,
                                    const lisa_tensor *w) {
    const cpu_mm_isa *isa = c->mm;
    int64_t N = w->shape[0];
    int64_t kc = isa->kc;
    LISA_TRY(cpu_scratch_fits(c, "matmul", cpu_mm_scratch_need(isa, kc), 0, NULL));
    /* panels of isa->nr weight rows, a contiguous run per thread: each
     * thread streams its own part of w once per call (decode reads every
     * weight exactly once) and writes its own columns of out */
    int64_t P = (N + isa->nr - 1) / isa->nr;
    /* below ~64K multiply-adds a parallel region costs more than it saves */
    int par = P > 1 && M * N * K >= ((int64_t)1 << 16);
#pragma omp parallel num_threads(c->nthreads) if (par)
    {
        int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
        cpu_mm_run(isa, od, xd, M, K, w, P * t / T, P * (t + 1) / T, kc,
                   cpu_thread_scratch(c, (int)t));
    }
    return LISA_OK;
}


/* BF16 weights on the bf16 dot-product path (matmul-cpu.h): passes of up
 * to CPU_MM_MB activation rows are rounded to bf16 into the shared scratch
 * (rows split over the threads), then each thread multiplies them with its
 * own run of weight panels. */
static lisa_status cpu_matmul_bf16_dot(cpu_ctx *c, float *od, const float *xd, int64_t M,
                                       int64_t K, const lisa_tensor *w) {
    int64_t N = w->shape[0];
    size_t row_floats = ((size_t)K * sizeof(uint16_t) + sizeof(float) - 1) / sizeof(float);
    size_t acc = (size_t)CPU_MM_MB * CPU_BF16_NR * 16;
    LISA_TRY(cpu_scratch_fits(c, "matmul (bf16 activations)", acc, row_floats, "matmul_k"));
    int64_t mb = (int64_t)(c->shared_elems / row_floats);
    if (mb > CPU_MM_MB) mb = CPU_MM_MB;
    uint16_t *xb = (uint16_t *)(void *)cpu_shared_scratch(c);
    int64_t P = (N + CPU_BF16_NR - 1) / CPU_BF16_NR;
    int par = P > 1 && M * N * K >= ((int64_t)1 << 16);
#pragma omp parallel num_threads(c->nthreads) if (par)
    {
        int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
        for (int64_t m0 = 0; m0 < M; m0 += mb) {
            int64_t rows = M - m0 < mb ? M - m0 : mb;
#pragma omp for schedule(static)
            for (int64_t m = 0; m < rows; m++) c->bf16_round(xb + m * K, xd + (m0 + m) * K, K);
            c->bf16_dot(od + m0 * N, xb, rows, K, w, P * t / T, P * (t + 1) / T,
                        cpu_thread_scratch(c, (int)t));
#pragma omp barrier
        }
    }
    return LISA_OK;
}

/* Packed Q8_0X16 / Q4_0X16 weights: passes of up to CPU_MM_MB activation
 * rows are quantized into the shared scratch (rows split over the threads),
 * then each thread multiplies them with its own run of 16-row groups. */
static lisa_status cpu_matmul_packed(cpu_ctx *c, float *od, const float *xd, int64_t M,
                                     int64_t K, const lisa_tensor *w) {
    const cpu_mm_isa *isa = c->mm;
    int64_t N = w->shape[0], nb = K / LISA_QK;
    LISA_ASSERT(N % LISA_PACK_ROWS == 0 && K % LISA_QK == 0);
    size_t row_floats = ((size_t)nb * sizeof(cpu_xq_block) + sizeof(float) - 1) / sizeof(float);
    LISA_TRY(cpu_scratch_fits(c, "matmul (quantized activations)", 0, row_floats, "matmul_k"));
    int64_t mb = (int64_t)(c->shared_elems / row_floats);
    if (mb > CPU_MM_MB) mb = CPU_MM_MB;
    cpu_xq_block *xq = (cpu_xq_block *)(void *)cpu_shared_scratch(c);
    int64_t G = N / LISA_PACK_ROWS;
    int par = G > 1 && M * N * K >= ((int64_t)1 << 16);
#pragma omp parallel num_threads(c->nthreads) if (par)
    {
        int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
        for (int64_t m0 = 0; m0 < M; m0 += mb) {
            int64_t rows = M - m0 < mb ? M - m0 : mb;
#pragma omp for schedule(static)
            for (int64_t m = 0; m < rows; m++)
                isa->quantize_row(xq + m * nb, xd + (m0 + m) * K, K);
            cpu_mm_qrun(isa, od + m0 * N, xq, rows, K, w, G * t / T, G * (t + 1) / T);
#pragma omp barrier
        }
    }
    return LISA_OK;
}

/* out (M, N) = x (M, K) @ w (N, K)^T + bias (N) */
static lisa_status cpu_matmul(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x,
                              const lisa_tensor *w, const lisa_tensor *bias) {
    cpu_ctx *c = cpu_ctx_of(be);
    int64_t M = x->shape[0], K = x->shape[x->ndim - 1], N = w->shape[0];
    LISA_ASSERT(w->ndim == 2 && w->shape[1] == K && lisa_tensor_nelem(x) == M * K);
    LISA_ASSERT(lisa_tensor_nelem(out) == M * N && x->dtype == LISA_DTYPE_F32);
    const float *xd = (const float *)x->data;
    float *od = (float *)out->data;
    if (M == 0) return LISA_OK;

    if (bias) {
        LISA_ASSERT(lisa_tensor_nelem(bias) == N);
        LISA_TRY(cpu_scratch_fits(c, "matmul bias", 0, (size_t)N, NULL));
    }
    LISA_ASSERT(!lisa_dtype_is_quant(w->dtype) || K % LISA_QK == 0);
    if (lisa_dtype_is_packed(w->dtype)) {
        LISA_TRY(cpu_matmul_packed(c, od, xd, M, K, w));
    } else if (w->dtype == LISA_DTYPE_BF16 && c->bf16_dot) {
        LISA_TRY(cpu_matmul_bf16_dot(c, od, xd, M, K, w));
    } else {
        LISA_TRY(cpu_matmul_float(c, od, xd, M, K, w));
    }
    if (bias) {
        const float *b = cpu_vec_f32(bias, cpu_shared_scratch(c));
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) od[m * N + n] += b[n];
    }
    return LISA_OK;
}

/* out (n, C) = table (V, C)[ids] */
static lisa_status cpu_embedding(lisa_backend *be, lisa_tensor *out, const lisa_tensor *table,
                                 const lisa_tensor *ids) {
    (void)be;
    int64_t n = lisa_tensor_nelem(ids), V = table->shape[0], C = table->shape[1];
    LISA_ASSERT(ids->dtype == LISA_DTYPE_I32 && lisa_tensor_nelem(out) == n * C);
    const int32_t *id = (const int32_t *)ids->data;
    for (int64_t i = 0; i < n; i++) {
        LISA_ASSERT(id[i] >= 0 && id[i] < V);
        widen_rows((float *)out->data + i * C, table, id[i], 1, C);
    }
    return LISA_OK;
}

/* out (n, C) = x * rsqrt(mean(x^2) + eps) * w */
static lisa_status cpu_rmsnorm(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x,
                               const lisa_tensor *w, float eps) {
    int64_t C = x->shape[x->ndim - 1], n = lisa_tensor_nelem(x) / C;
    LISA_ASSERT(lisa_tensor_nelem(w) == C && lisa_tensor_nelem(out) == n * C);
    cpu_ctx *c = cpu_ctx_of(be);
    LISA_TRY(cpu_scratch_fits(c, "rmsnorm", 0, (size_t)C, NULL));
    const float *wf = cpu_vec_f32(w, cpu_shared_scratch(c));
    const float *xd = (const float *)x->data;
    float *od = (float *)out->data;
#pragma omp parallel for num_threads(c->nthreads) schedule(static) if (n > 4)
    for (int64_t i = 0; i < n; i++) {
        const float *xr = xd + i * C;
        double ss = 0;
        for (int64_t j = 0; j < C; j++) ss += (double)xr[j] * xr[j];
        float r = 1.0f / sqrtf((float)(ss / (double)C) + eps);
        for (int64_t j = 0; j < C; j++) od[i * C + j] = wf[j] * (xr[j] * r);
    }
    return LISA_OK;
}

/* x (n, C) += d; out (n, C) = rmsnorm(x) * w. Row by row, so out may alias d. */
static lisa_status cpu_add_rmsnorm(lisa_backend *be, lisa_tensor *x, const lisa_tensor *d,
                                   lisa_tensor *out, const lisa_tensor *w, float eps) {
    int64_t n = lisa_tensor_nelem(x);
    LISA_ASSERT(lisa_tensor_nelem(d) == n && d->dtype == LISA_DTYPE_F32);
    float *xd = (float *)x->data;
    const float *dd = (const float *)d->data;
    for (int64_t i = 0; i < n; i++) xd[i] += dd[i];
    return cpu_rmsnorm(be, out, x, w, eps);
}

/* x (n, H, D) in place; HF rotate-half: pairs (j, j + D/2). */
static lisa_status cpu_rope(lisa_backend *be, lisa_tensor *x, const lisa_tensor *pos, float theta) {
    (void)be;
    LISA_ASSERT(x->ndim == 3 && pos->dtype == LISA_DTYPE_I32);
    int64_t n = x->shape[0], H = x->shape[1], D = x->shape[2], half = D / 2;
    LISA_ASSERT(D % 2 == 0 && lisa_tensor_nelem(pos) == n);
    float inv_freq[512];
    LISA_ASSERT(half <= 512);
    /* HF: 1 / base ** (arange(0, D, 2).float() / D), all in fp32. */
    for (int64_t j = 0; j < half; j++) inv_freq[j] = 1.0f / powf(theta, (float)(2 * j) / (float)D);
    const int32_t *p = (const int32_t *)pos->data;
    float *xd = (float *)x->data;
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < half; j++) {
            float f = (float)p[i] * inv_freq[j];
            float cs = cosf(f), sn = sinf(f);
            for (int64_t h = 0; h < H; h++) {
                float *v = xd + (i * H + h) * D;
                float a = v[j], b = v[j + half];
                v[j] = a * cs - b * sn;
                v[j + half] = b * cs + a * sn;
            }
        }
    }
    return LISA_OK;
}

/* caches (S, Tmax, KVH, D) [seq[i], pos[i]] = k, v (n, KVH, D) */
static lisa_status cpu_kv_store(lisa_backend *be, lisa_tensor *kc, lisa_tensor *vc,
                                const lisa_tensor *k, const lisa_tensor *v, const lisa_tensor *seq,
                                const lisa_tensor *pos) {
    (void)be;
    int64_t S = kc->shape[0], Tmax = kc->shape[1], row = kc->shape[2] * kc->shape[3];
    int64_t n = lisa_tensor_nelem(seq);
    LISA_ASSERT(kc->dtype == LISA_DTYPE_F32 && lisa_tensor_nelem(k) == n * row);
    const int32_t *s = (const int32_t *)seq->data, *p = (const int32_t *)pos->data;
    for (int64_t i = 0; i < n; i++) {
        LISA_ASSERT(s[i] >= 0 && s[i] < S && p[i] >= 0 && p[i] < Tmax);
        size_t off = ((size_t)s[i] * (size_t)Tmax + (size_t)p[i]) * (size_t)row;
        memcpy((float *)kc->data + off, (const float *)k->data + i * row, (size_t)row * 4);
        memcpy((float *)vc->data + off, (const float *)v->data + i * row, (size_t)row * 4);
    }
    return LISA_OK;
}

static lisa_status cpu_attention(lisa_backend *be, lisa_tensor *out, const lisa_tensor *q,
                                 const lisa_tensor *kc, const lisa_tensor *vc,
                                 const lisa_tensor *seq, const lisa_tensor *pos) {
    int64_t n = q->shape[0], H = q->shape[1], D = q->shape[2];
    int64_t Tmax = kc->shape[1], KVH = kc->shape[2];
    LISA_ASSERT(H % KVH == 0 && kc->shape[3] == D && lisa_tensor_nelem(out) == n * H * D);
    int64_t group = H / KVH;
    const int32_t *s = (const int32_t *)seq->data, *p = (const int32_t *)pos->data;
    const float *qd = (const float *)q->data, *kd = (const float *)kc->data,
                *vd = (const float *)vc->data;
    float *od = (float *)out->data;
    float scale = 1.0f / sqrtf((float)D);
    cpu_ctx *c = cpu_ctx_of(be);
    LISA_TRY(cpu_scratch_fits(c, "attention", (size_t)Tmax, 0, "attention_ctx"));
#pragma omp parallel num_threads(c->nthreads)
    {
        float *sc = cpu_thread_scratch(c, omp_get_thread_num());
#pragma omp for collapse(2) schedule(dynamic, 4)
        for (int64_t i = 0; i < n; i++) {
            for (int64_t h = 0; h < H; h++) {
                const float *qr = qd + (i * H + h) * D;
                int64_t kvh = h / group, len = (int64_t)p[i] + 1;
                const float *kbase = kd + ((size_t)s[i] * (size_t)Tmax * (size_t)KVH + (size_t)kvh) * (size_t)D;
                const float *vbase = vd + ((size_t)s[i] * (size_t)Tmax * (size_t)KVH + (size_t)kvh) * (size_t)D;
                float mx = -INFINITY;
                for (int64_t t = 0; t < len; t++) {
                    sc[t] = dot_f32(qr, kbase + t * KVH * D, D) * scale;
                    if (sc[t] > mx) mx = sc[t];
                }
                float sum = 0;
                for (int64_t t = 0; t < len; t++) {
                    sc[t] = expf(sc[t] - mx);
                    sum += sc[t];
                }
                float inv = 1.0f / sum;
                float *o = od + (i * H + h) * D;
                for (int64_t d = 0; d < D; d++) o[d] = 0;
                for (int64_t t = 0; t < len; t++) {
                    float wgt = sc[t] * inv;
                    const float *vr = vbase + t * KVH * D;
                    for (int64_t d = 0; d < D; d++) o[d] += wgt * vr[d];
                }
            }
        }
    }
    return LISA_OK;
}

static lisa_status cpu_swiglu(lisa_backend *be, lisa_tensor *out, const lisa_tensor *gate,
                              const lisa_tensor *up) {
    int64_t n = lisa_tensor_nelem(gate);
    LISA_ASSERT(lisa_tensor_nelem(up) == n && lisa_tensor_nelem(out) == n);
    const float *g = (const float *)gate->data, *u = (const float *)up->data;
    float *o = (float *)out->data;
#pragma omp parallel for num_threads(cpu_ctx_of(be)->nthreads) schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) o[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
    return LISA_OK;
}

static lisa_status cpu_add(lisa_backend *be, lisa_tensor *out, const lisa_tensor *a,
                           const lisa_tensor *b) {
    (void)be;
    int64_t n = lisa_tensor_nelem(a);
    LISA_ASSERT(lisa_tensor_nelem(b) == n && lisa_tensor_nelem(out) == n);
    const float *x = (const float *)a->data, *y = (const float *)b->data;
    float *o = (float *)out->data;
    for (int64_t i = 0; i < n; i++) o[i] = x[i] + y[i];
    return LISA_OK;
}

static lisa_status cpu_softmax(lisa_backend *be, lisa_tensor *x) {
    (void)be;
    int64_t V = x->shape[x->ndim - 1], n = lisa_tensor_nelem(x) / V;
    float *d = (float *)x->data;
    for (int64_t i = 0; i < n; i++) {
        float *r = d + i * V, mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j < V; j++)
            if (r[j] > mx) mx = r[j];
        for (int64_t j = 0; j < V; j++) {
            r[j] = expf(r[j] - mx);
            sum += r[j];
        }
        float inv = 1.0f / sum;
        for (int64_t j = 0; j < V; j++) r[j] *= inv;
    }
    return LISA_OK;
}

static lisa_status cpu_argmax(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x) {
    (void)be;
    int64_t V = x->shape[x->ndim - 1], n = lisa_tensor_nelem(x) / V;
    LISA_ASSERT(out->dtype == LISA_DTYPE_I32 && lisa_tensor_nelem(out) == n);
    const float *d = (const float *)x->data;
    int32_t *o = (int32_t *)out->data;
    for (int64_t i = 0; i < n; i++) {
        const float *r = d + i * V;
        int64_t best = 0;
        for (int64_t j = 1; j < V; j++)
            if (r[j] > r[best]) best = j;
        o[i] = (int32_t)best;
    }
    return LISA_OK;
}

static lisa_status cpu_get_rows(lisa_backend *be, lisa_tensor *out, const lisa_tensor *src,
                                const lisa_tensor *idx) {
    (void)be;
    int64_t C = src->shape[src->ndim - 1], S = lisa_tensor_nelem(src) / C;
    int64_t n = lisa_tensor_nelem(idx);
    LISA_ASSERT(lisa_tensor_nelem(out) == n * C && idx->dtype == LISA_DTYPE_I32);
    const int32_t *id = (const int32_t *)idx->data;
    for (int64_t i = 0; i < n; i++) {
        LISA_ASSERT(id[i] >= 0 && id[i] < S);
        memcpy((float *)out->data + i * C, (const float *)src->data + (int64_t)id[i] * C,
               (size_t)C * sizeof(float));
    }
    return LISA_OK;
}

static void cpu_free(lisa_backend *be) {
    free(cpu_ctx_of(be)->scratch);
    free(cpu_ctx_of(be));
    free(be);
}

static const lisa_backend_ops k_cpu_ops = {
    .name = "cpu",
    .host_memory = 1,
    .packs_quant = 1,
    .buffer_alloc = cpu_buffer_alloc,
    .buffer_free = cpu_buffer_free,
    .copy_to_backend = cpu_copy_to_backend,
    .copy_to_host = cpu_copy_to_host,
    .synchronize = cpu_synchronize,
    .copy_backend = cpu_copy_backend,
    .host_alloc = cpu_host_alloc,
    .host_free = cpu_host_free,
    .event_create = cpu_event_create,
    .event_free = cpu_event_free,
    .event_record = cpu_event_record,
    .event_wait = cpu_event_wait,
    .event_query = cpu_event_query,
    .event_synchronize = cpu_event_synchronize,
    .reserve = cpu_reserve,
    .upload_convert = cpu_upload_convert,
    .matmul = cpu_matmul,
    .embedding = cpu_embedding,
    .rmsnorm = cpu_rmsnorm,
    .add_rmsnorm = cpu_add_rmsnorm,
    .rope = cpu_rope,
    .kv_store = cpu_kv_store,
    .attention = cpu_attention,
    .swiglu = cpu_swiglu,
    .add = cpu_add,
    .softmax = cpu_softmax,
    .argmax = cpu_argmax,
    .get_rows = cpu_get_rows,
    .convert = cpu_convert,
    .layernorm = cpu_layernorm,
    .activation = cpu_activation,
    .add_bias = cpu_add_bias,
    .attention_full = cpu_attention_full,
    .im2col = cpu_im2col,
    .conv_transpose_2x2 = cpu_conv_transpose_2x2,
    .window_partition = cpu_window_partition,
    .window_unpartition = cpu_window_unpartition,
    .resize_bilinear = cpu_resize_bilinear,
    .copy_cols = cpu_copy_cols,
    .transpose = cpu_transpose,
    .free = cpu_free,
};

lisa_status lisa_backend_cpu_init(lisa_backend **out, int nthreads) {
    lisa_backend_params p = lisa_backend_params_default(LISA_BACKEND_CPU, 0, nthreads);
    return lisa_backend_cpu_init_params(out, &p);
}

const char *lisa_backend_cpu_isa_name(const lisa_backend *be) {
    return be->ops == &k_cpu_ops ? cpu_ctx_of((lisa_backend *)be)->mm->name : NULL;
}

int lisa_backend_cpu_bf16_dot(const lisa_backend *be) {
    return be->ops == &k_cpu_ops && cpu_ctx_of((lisa_backend *)be)->bf16_dot != NULL;
}

lisa_status lisa_backend_cpu_init_params(lisa_backend **out, const lisa_backend_params *p) {
    int nthreads = p->threads;
    lisa_backend *be = calloc(1, sizeof *be);
    cpu_ctx *c = calloc(1, sizeof *c);
    if (!be || !c) {
        free(be);
        free(c);
        return lisa_error_set(LISA_ERR_NOMEM, "cpu backend: allocation failed");
    }
    c->nthreads = nthreads > 0 ? nthreads : omp_get_num_procs();
    static const char *const isa_names[] = {NULL, "avx512", "avx2", "generic"};
    c->mm = cpu_mm_isa_get(p->cpu_isa >= LISA_CPU_ISA_BEST && p->cpu_isa <= LISA_CPU_ISA_GENERIC
                               ? isa_names[p->cpu_isa]
                               : NULL);
    /* only with the AVX-512 kernels: a forced avx2 or generic run is a run
     * without this instruction set */
    if (p->cpu_bf16_dot && !strcmp(c->mm->name, "avx512")) {
        c->bf16_dot = cpu_mm_bf16_dot_avx512();
        c->bf16_round = cpu_mm_bf16_round_avx512();
    }
    lisa_status st = cpu_scratch_alloc(c, LISA_CPU_SCRATCH_THREAD_ELEMS, LISA_CPU_SCRATCH_SHARED_ELEMS);
    if (st != LISA_OK) {
        free(be);
        free(c);
        return st;
    }
    openblas_set_num_threads(1);
    be->ops = &k_cpu_ops;
    be->ctx = c;
    be->params = *p;
    *out = be;
    return LISA_OK;
}
