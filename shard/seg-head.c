/* seg-head.c: text_hidden_fcs, LISA's [SEG] head (see seg-head.h). */
#include "seg-head.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

static lisa_status seg_head_alloc(lisa_seg_head *h, lisa_tensor *t, lisa_dtype dt, int64_t cols) {
    int64_t shape[2] = {h->max_rows, cols};
    lisa_status st = lisa_backend_tensor_alloc(h->be, t, dt, 2, shape);
    if (st != LISA_OK)
        return lisa_error_set(st, "seg head: cannot reserve %zu bytes (%s)",
                              (size_t)h->max_rows * (size_t)cols * lisa_dtype_size(dt),
                              lisa_error_get());
    return LISA_OK;
}

static lisa_status seg_head_load(lisa_seg_head *h, const char *dir) {
    LISA_TRY(lisa_safetensors_open(&h->st, dir));
    char name[256];
    snprintf(name, sizeof name, "%s2.weight", LISA_SEG_HEAD_PREFIX);
    const lisa_st_tensor *t2 = lisa_safetensors_find(h->st, name);
    if (!t2) return lisa_error_set(LISA_ERR_MISSING, "tensor '%s' not found in %s", name, dir);
    if (t2->ndim != 2 || t2->shape[0] < 1 || t2->shape[0] > INT_MAX)
        return lisa_error_set(LISA_ERR_SHAPE, "tensor '%s': expected shape [E, %d], found %d dims",
                              name, h->hidden, t2->ndim);
    int64_t C = h->hidden, E = t2->shape[0];
    h->dim = (int)E;
    lisa_weight_spec specs[4];
    int n = 0;
    int64_t s_cc[2] = {C, C}, s_c[1] = {C}, s_ec[2] = {E, C}, s_e[1] = {E};
    n = lisa_weight_spec_add(specs, n, 4, &h->fc1_w, LISA_WEIGHT_MATMUL, 2, s_cc, "0.weight");
    n = lisa_weight_spec_add(specs, n, 4, &h->fc1_b, LISA_WEIGHT_PARAM, 1, s_c, "0.bias");
    n = lisa_weight_spec_add(specs, n, 4, &h->fc2_w, LISA_WEIGHT_MATMUL, 2, s_ec, "2.weight");
    n = lisa_weight_spec_add(specs, n, 4, &h->fc2_b, LISA_WEIGHT_PARAM, 1, s_e, "2.bias");
    LISA_TRY(lisa_weights_load(&h->weights, h->be, h->st, LISA_SEG_HEAD_PREFIX, specs, n,
                               h->dtype));
    LISA_TRY(seg_head_alloc(h, &h->in, h->dtype, C));
    LISA_TRY(seg_head_alloc(h, &h->mid, h->dtype, C));
    LISA_TRY(seg_head_alloc(h, &h->out, h->dtype, E));
    return seg_head_alloc(h, &h->io, LISA_DTYPE_F32, C > E ? C : E);
}

lisa_status lisa_seg_head_load(lisa_seg_head *h, const char *dir, lisa_backend *be,
                               lisa_dtype dtype, int hidden_size, int max_rows) {
    memset(h, 0, sizeof *h);
    if (hidden_size < 1 || max_rows < 1)
        return lisa_error_set(LISA_ERR_ARG, "seg head: hidden size %d and max rows %d must be >= 1",
                              hidden_size, max_rows);
    h->be = be;
    h->dtype = dtype;
    h->hidden = hidden_size;
    h->max_rows = max_rows;
    lisa_status st = seg_head_load(h, dir);
    if (st != LISA_OK) lisa_seg_head_free(h);
    return st;
}

void lisa_seg_head_free(lisa_seg_head *h) {
    if (h->be) {
        lisa_backend_tensor_free(h->be, &h->in);
        lisa_backend_tensor_free(h->be, &h->mid);
        lisa_backend_tensor_free(h->be, &h->out);
        lisa_backend_tensor_free(h->be, &h->io);
    }
    lisa_weights_free(&h->weights);
    if (h->st) lisa_safetensors_close(h->st);
    memset(h, 0, sizeof *h);
}

lisa_status lisa_seg_head_forward(lisa_seg_head *h, const float *hidden, int n, float *out) {
    lisa_backend *be = h->be;
    const lisa_backend_ops *op = be->ops;
    int64_t C = h->hidden, E = h->dim;
    for (int r0 = 0; r0 < n; r0 += h->max_rows) {
        int m = n - r0 < h->max_rows ? n - r0 : h->max_rows;
        lisa_tensor in = lisa_tensor_2d(h->in.data, h->in.dtype, m, C);
        lisa_tensor mid = lisa_tensor_2d(h->mid.data, h->mid.dtype, m, C);
        lisa_tensor o = lisa_tensor_2d(h->out.data, h->out.dtype, m, E);
        const float *src = hidden + (size_t)r0 * (size_t)C;
        if (in.dtype == LISA_DTYPE_F32) {
            LISA_TRY(op->copy_to_backend(be, in.data, 0, src, (size_t)(m * C) * 4));
        } else {
            lisa_tensor io = lisa_tensor_2d(h->io.data, LISA_DTYPE_F32, m, C);
            LISA_TRY(op->copy_to_backend(be, io.data, 0, src, (size_t)(m * C) * 4));
            LISA_TRY(op->convert(be, &in, &io));
        }
        LISA_TRY(op->matmul(be, &mid, &in, &h->fc1_w, &h->fc1_b));
        LISA_TRY(op->activation(be, &mid, &mid, LISA_ACT_RELU));
        LISA_TRY(op->matmul(be, &o, &mid, &h->fc2_w, &h->fc2_b));
        float *dst = out + (size_t)r0 * (size_t)E;
        if (o.dtype == LISA_DTYPE_F32) {
            LISA_TRY(op->copy_to_host(be, dst, o.data, 0, (size_t)(m * E) * 4));
        } else {
            lisa_tensor io = lisa_tensor_2d(h->io.data, LISA_DTYPE_F32, m, E);
            LISA_TRY(op->convert(be, &io, &o));
            LISA_TRY(op->copy_to_host(be, dst, io.data, 0, (size_t)(m * E) * 4));
        }
        LISA_TRY(op->synchronize(be));
    }
    return LISA_OK;
}
