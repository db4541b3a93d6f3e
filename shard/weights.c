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

lisa_status lisa_weights_load(lisa_weights *w, lisa_backend *be, const lisa_safetensors *st,
                              const char *prefix, lisa_weight_spec *specs, int n,
                              lisa_dtype dtype) {
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
        int in_place = be->ops->host_memory && specs[i].kind == LISA_WEIGHT_MATMUL;
        lisa_dtype dt = in_place ? src[i]->dtype : dtype;
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
        int in_place = be->ops->host_memory && specs[i].kind == LISA_WEIGHT_MATMUL;
        if (in_place) continue;
        lisa_tensor *t = specs[i].dst;
        t->data = (char *)w->buffer + ((uintptr_t)t->data - 1);
        s = be->ops->upload_convert(be, t->data, t->dtype, src[i]->data, src[i]->dtype,
                                    (size_t)lisa_tensor_nelem(t));
    }
    free(src);
    if (s != LISA_OK) lisa_weights_free(w);
    return s;
}

void lisa_weights_free(lisa_weights *w) {
    if (w->buffer && w->be) w->be->ops->buffer_free(w->be, w->buffer);
    w->buffer = NULL;
}
