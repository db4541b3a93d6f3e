/* cpu-internal.h: what the CPU backend's files share: its context and the
 * entry points of the op families kept in their own files. Not a public
 * header: models use backend.h only. */
#ifndef LISA_CPU_INTERNAL_H
#define LISA_CPU_INTERNAL_H

#include "backend.h"

/* Op scratch: one block, reserved at init for the default worst case
 * (backend-cpu.c) and grown only by the reserve op, never by an op. It
 * holds nthreads per-thread slices of thread_elems floats (slice t for
 * OpenMP thread t of an op's parallel region: matmul panels and lane sums,
 * attention scores) and then one shared slice of shared_elems floats
 * (widened weight vectors, conv_transpose's product), all 64-byte aligned. */
struct cpu_mm_isa;

typedef struct {
    int nthreads;
    const struct cpu_mm_isa *mm; /* the matmul kernels (matmul-cpu.h) */
    /* the bf16 dot-product path (matmul-cpu.h), NULL when not in use */
    void (*bf16_dot)(float *out, const uint16_t *xb, int64_t M, int64_t K,
                     const lisa_tensor *w, int64_t p0, int64_t p1, float *acc);
    void (*bf16_round)(uint16_t *dst, const float *x, int64_t K);
    float *scratch;
    size_t thread_elems, shared_elems;
} cpu_ctx;

static inline cpu_ctx *cpu_ctx_of(lisa_backend *be) { return (cpu_ctx *)be->ctx; }

/* n floats rounded up to a 64-byte multiple: how the scratch is carved. */
static inline size_t cpu_r16(size_t n) { return (n + 15) & ~(size_t)15; }
static inline float *cpu_thread_scratch(const cpu_ctx *c, int t) {
    return c->scratch + (size_t)t * c->thread_elems;
}
static inline float *cpu_shared_scratch(const cpu_ctx *c) {
    return c->scratch + (size_t)c->nthreads * c->thread_elems;
}
/* Takes n floats off the front of *p (a carving cursor). */
static inline float *cpu_carve(float **p, size_t n) {
    float *r = *p;
    *p += cpu_r16(n);
    return r;
}
/* LISA_OK when an op needing `per_thread` floats in each thread slice and
 * `shared` in the shared one fits the reservation; otherwise LISA_ERR_ARG
 * naming the op, the need, and the lisa_backend_reserve_req field to raise
 * (NULL for needs no field grows: weight vectors beyond the default). */
lisa_status cpu_scratch_fits(const cpu_ctx *c, const char *op, size_t per_thread, size_t shared,
                             const char *field);
/* The fp32 values of a small weight vector t: its data when t is F32, else
 * t widened into dst (nelem(t) floats). */
static inline const float *cpu_vec_f32(const lisa_tensor *t, float *dst) {
    if (t->dtype == LISA_DTYPE_F32) return (const float *)t->data;
    lisa_dtype_to_f32(dst, t->data, t->dtype, (size_t)lisa_tensor_nelem(t));
    return dst;
}
/* Per-thread floats attention_full needs for keys (Lk) and head dim D. */
size_t cpu_attention_full_need(int64_t Lk, int64_t D);

/* ops-vision-cpu.c */
lisa_status cpu_layernorm(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x,
                          const lisa_tensor *w, const lisa_tensor *b, float eps);
lisa_status cpu_activation(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x, lisa_act act);
lisa_status cpu_add_bias(lisa_backend *be, lisa_tensor *out, const lisa_tensor *bias);
lisa_status cpu_attention_full(lisa_backend *be, lisa_tensor *out, const lisa_tensor *q,
                               const lisa_tensor *k, const lisa_tensor *v, float scale,
                               const lisa_tensor *rel_h, const lisa_tensor *rel_w);
lisa_status cpu_im2col(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x, int k, int stride,
                       int pad, int channels_first);
lisa_status cpu_conv_transpose_2x2(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x,
                                   const lisa_tensor *w, const lisa_tensor *bias);
lisa_status cpu_window_partition(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x, int ws);
lisa_status cpu_window_unpartition(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x, int ws);
lisa_status cpu_resize_bilinear(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x, int hc,
                                int wc);
lisa_status cpu_copy_cols(lisa_backend *be, lisa_tensor *out, const lisa_tensor *src, int c0);
lisa_status cpu_transpose(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x);

#endif
