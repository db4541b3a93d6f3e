/* weights.c: table-driven tensor loading (see weights.h). */
#include "weights.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WEIGHTS_ALIGN 256

int lisa_weight_spec_add(lisa_weight_spec *specs, int n, int cap, lisa_tensor *dst,
                         lisa_weight_kind kind, int ndim, const int64_t *shape, const char *fmt,
                         ...) {
    LISA_ASSERT(n < cap && ndim >= 0 && ndim <= LISA_MAX_DIMS);
    lisa_weight_spec *s = &specs[n];
    memset(s, 0, sizeof *s);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->name, sizeof s->name, fmt, ap);
    va_end(ap);
    s->ndim = ndim;
    for (int i = 0; i < ndim; i++) s->shape[i] = shape[i];
    s->dst = dst;
    s->kind = kind;
    return n + 1;
}

/* The dtype entry i gets in memory and whether it is used in place from the
 * file; LISA_ERR_ARG when its file dtype cannot become what is asked. */
static lisa_status weights_placement(const lisa_backend *be, const lisa_weight_spec *sp,
                                     const lisa_st_tensor *src, lisa_dtype dtype,
                                     lisa_dtype quant, lisa_dtype *dt, int *in_place) {
    int matmul = sp->kind != LISA_WEIGHT_PARAM;
    int want_q = sp->kind == LISA_WEIGHT_MATMUL_QUANT && lisa_dtype_is_quant(quant);
    if (lisa_dtype_is_quant(src->dtype)) {
        if (!matmul)
            return lisa_error_set(LISA_ERR_ARG, "tensor '%s' is %s but must be a float dtype",
                                  src->name, lisa_dtype_name(src->dtype));
        if (want_q && quant != src->dtype)
            return lisa_error_set(LISA_ERR_ARG,
                                  "tensor '%s' is already %s in the file; cannot quantize it to %s "
                                  "(convert the float checkpoint instead)",
                                  src->name, lisa_dtype_name(src->dtype), lisa_dtype_name(quant));
        *dt = src->dtype;
        *in_place = be->ops->host_memory;
        return LISA_OK;
    }
    /* Rows whose length is not a whole number of blocks keep their float
     * dtype, as llama-quantize falls back for such tensors. */
    if (want_q && sp->ndim == 2 && sp->shape[1] % LISA_QK == 0) {
        *dt = quant;
        *in_place = 0;
        return LISA_OK;
    }
    *in_place = be->ops->host_memory && matmul;
    *dt = *in_place ? src->dtype : dtype;
    return LISA_OK;
}

/* Whether entry sp, placed in dtype dt, is kept in the packed layout of dt
 * instead (backends with packs_quant; rows a multiple of LISA_PACK_ROWS). */
static int weights_packs(const lisa_backend *be, const lisa_weight_spec *sp, lisa_dtype dt) {
    return be->ops->packs_quant && be->ops->host_memory && sp->kind != LISA_WEIGHT_PARAM &&
           lisa_dtype_is_quant(dt) && sp->ndim == 2 && sp->shape[0] % LISA_PACK_ROWS == 0;
}

/* Fills packed tensor t (host memory, N rows of K) from src: block rows
 * packed as they are, float rows quantized group by group first. */
static lisa_status weights_pack(lisa_tensor *t, const lisa_st_tensor *src) {
    lisa_dtype q = lisa_dtype_unpacked_of(t->dtype);
    int64_t N = t->shape[0], K = t->shape[1];
    if (lisa_dtype_is_quant(src->dtype)) {
        lisa_dtype_pack_rows(t->data, src->data, q, N, K);
        return LISA_OK;
    }
    size_t gin = (size_t)LISA_PACK_ROWS * lisa_dtype_row_bytes(src->dtype, K);
    size_t gout = (size_t)LISA_PACK_ROWS * lisa_dtype_row_bytes(q, K);
    void *stage = malloc(gout);
    if (!stage) return lisa_error_set(LISA_ERR_NOMEM, "weights: cannot stage %zu bytes", gout);
    for (int64_t g = 0; g < N / LISA_PACK_ROWS; g++) {
        lisa_dtype_convert(stage, q, (const char *)src->data + (size_t)g * gin, src->dtype,
                           (size_t)(LISA_PACK_ROWS * K));
        lisa_dtype_pack_rows((char *)t->data + (size_t)g * gout, stage, q, LISA_PACK_ROWS, K);
    }
    free(stage);
    return LISA_OK;
}

/* Quantizes n elements of src (a float dtype) into dst (backend memory) of
 * block type q, through host staging when the backend's memory is not the
 * host's. */
static lisa_status weights_quantize(lisa_backend *be, void *dst, lisa_dtype q, const void *src,
                                    lisa_dtype sdt, size_t n) {
    if (be->ops->host_memory) {
        lisa_dtype_convert(dst, q, src, sdt, n);
        return LISA_OK;
    }
    size_t bytes = lisa_dtype_row_bytes(q, (int64_t)n);
    void *stage = malloc(bytes ? bytes : 1);
    if (!stage) return lisa_error_set(LISA_ERR_NOMEM, "weights: cannot stage %zu bytes", bytes);
    lisa_dtype_convert(stage, q, src, sdt, n);
    lisa_status s = be->ops->copy_to_backend(be, dst, 0, stage, bytes);
    if (s == LISA_OK) s = be->ops->synchronize(be);
    free(stage);
    return s;
}

lisa_status lisa_weights_load(lisa_weights *w, lisa_backend *be, const lisa_safetensors *st,
                              const char *prefix, lisa_weight_spec *specs, int n,
                              lisa_dtype dtype) {
    return lisa_weights_load_quant(w, be, st, prefix, specs, n, dtype, LISA_DTYPE_F32);
}

lisa_status lisa_weights_load_quant(lisa_weights *w, lisa_backend *be,
                                    const lisa_safetensors *st, const char *prefix,
                                    lisa_weight_spec *specs, int n, lisa_dtype dtype,
                                    lisa_dtype quant) {
    memset(w, 0, sizeof *w);
    w->be = be;
    const lisa_st_tensor **src = calloc((size_t)(n ? n : 1), sizeof *src);
    if (!src) return lisa_error_set(LISA_ERR_NOMEM, "weights: allocation failed");
    lisa_status s = LISA_OK;
    char full[256];
    for (int i = 0; i < n && s == LISA_OK; i++) {
        snprintf(full, sizeof full, "%s%s", prefix ? prefix : "", specs[i].name);
        s = lisa_safetensors_get(st, full, specs[i].ndim, specs[i].shape, &src[i]);
    }
    /* size table: what gets a copy in backend memory, and in which dtype */
    size_t total = 0;
    for (int i = 0; i < n && s == LISA_OK; i++) {
        int in_place = 0;
        lisa_dtype dt = dtype;
        s = weights_placement(be, &specs[i], src[i], dtype, quant, &dt, &in_place);
        if (s != LISA_OK) break;
        if (weights_packs(be, &specs[i], dt)) {
            dt = lisa_dtype_packed_of(dt);
            in_place = 0;
        }
        *specs[i].dst = lisa_tensor_view(in_place ? (void *)src[i]->data : NULL, dt,
                                         specs[i].ndim, specs[i].shape);
        if (!in_place) {
            specs[i].dst->data = (void *)(uintptr_t)(total + 1); /* offset + 1: 0 means in place */
            total += (lisa_tensor_nbytes(specs[i].dst) + WEIGHTS_ALIGN - 1) / WEIGHTS_ALIGN *
                     WEIGHTS_ALIGN;
        }
    }
    if (s == LISA_OK && total) s = be->ops->buffer_alloc(be, total, &w->buffer);
    for (int i = 0; i < n && s == LISA_OK; i++) {
        lisa_tensor *t = specs[i].dst;
        if ((const void *)t->data == src[i]->data) continue; /* in place */
        t->data = (char *)w->buffer + ((uintptr_t)t->data - 1);
        size_t ne = (size_t)lisa_tensor_nelem(t);
        if (lisa_dtype_is_packed(t->dtype)) {
            s = weights_pack(t, src[i]);
            /* the packed copy is the one kept: the source pages go */
            lisa_safetensors_release(st, src[i]);
        } else if (lisa_dtype_is_quant(t->dtype) && !lisa_dtype_is_quant(src[i]->dtype))
            s = weights_quantize(be, t->data, t->dtype, src[i]->data, src[i]->dtype, ne);
        else
            s = be->ops->upload_convert(be, t->data, t->dtype, src[i]->data, src[i]->dtype, ne);
    }
    free(src);
    if (s != LISA_OK) lisa_weights_free(w);
    return s;
}

lisa_status lisa_weights_pack_in_place(lisa_backend *be, lisa_tensor *t) {
    if (!be->ops->packs_quant || !be->ops->host_memory || !lisa_dtype_is_quant(t->dtype) ||
        t->ndim != 2 || t->shape[0] % LISA_PACK_ROWS != 0)
        return LISA_OK;
    size_t bytes = (size_t)lisa_tensor_nbytes(t);
    void *tmp = malloc(bytes ? bytes : 1);
    if (!tmp) return lisa_error_set(LISA_ERR_NOMEM, "weights: cannot stage %zu bytes", bytes);
    lisa_dtype_pack_rows(tmp, t->data, t->dtype, t->shape[0], t->shape[1]);
    memcpy(t->data, tmp, bytes);
    free(tmp);
    t->dtype = lisa_dtype_packed_of(t->dtype);
    return LISA_OK;
}

void lisa_weights_free(lisa_weights *w) {
    if (w->buffer && w->be) w->be->ops->buffer_free(w->be, w->buffer);
    w->buffer = NULL;
}
