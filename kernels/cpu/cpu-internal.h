/* cpu-internal.h: what the CPU backend's files share: its context and the
 * entry points of the op families kept in their own files. Not a public
 * header: models use backend.h only. */
#ifndef LISA_CPU_INTERNAL_H
#define LISA_CPU_INTERNAL_H

#include "backend.h"

typedef struct {
    int nthreads;
    size_t tile_elems;  /* fp32 elements of a widened weight tile */
} cpu_ctx;

static inline cpu_ctx *cpu_ctx_of(lisa_backend *be) { return (cpu_ctx *)be->ctx; }

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
