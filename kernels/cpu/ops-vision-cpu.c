/* ops-vision-cpu.c: the CPU backend's vision ops (CLIP and SAM): LayerNorm,
 * activations, bias add, non-causal attention with SAM's decomposed relative
 * positions, im2col, the 2x2 transposed convolution, SAM's window
 * partitioning, torch-exact bilinear resize, column copies and transposes.
 * fp32 activations; weights in any float dtype. These are the oracles for
 * the CUDA twins. Scratch comes from the backend's reservation
 * (cpu-internal.h); nothing here allocates. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "cpu-internal.h"

lisa_status cpu_layernorm(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x,
                          const lisa_tensor *w, const lisa_tensor *b, float eps) {
    int64_t C = x->shape[x->ndim - 1], n = lisa_tensor_nelem(x) / C;
    LISA_ASSERT(lisa_tensor_nelem(w) == C && lisa_tensor_nelem(b) == C);
    LISA_ASSERT(lisa_tensor_nelem(out) == n * C && x->dtype == LISA_DTYPE_F32);
    cpu_ctx *cx = cpu_ctx_of(be);
    LISA_TRY(cpu_scratch_fits(cx, "layernorm", 0, 2 * cpu_r16((size_t)C), NULL));
    float *sh = cpu_shared_scratch(cx);
    const float *wf = cpu_vec_f32(w, cpu_carve(&sh, (size_t)C)),
                *bf = cpu_vec_f32(b, cpu_carve(&sh, (size_t)C));
    const float *xd = (const float *)x->data;
    float *od = (float *)out->data;
#pragma omp parallel for num_threads(cx->nthreads) schedule(static) if (n > 16)
    for (int64_t i = 0; i < n; i++) {
        const float *xr = xd + i * C;
        double s = 0, ss = 0;
        for (int64_t j = 0; j < C; j++) s += xr[j];
        double mean = s / (double)C;
        for (int64_t j = 0; j < C; j++) ss += ((double)xr[j] - mean) * ((double)xr[j] - mean);
        float m = (float)mean, r = 1.0f / sqrtf((float)(ss / (double)C) + eps);
        for (int64_t j = 0; j < C; j++) od[i * C + j] = (xr[j] - m) * r * wf[j] + bf[j];
    }
    return LISA_OK;
}

lisa_status cpu_activation(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x, lisa_act act) {
    int64_t n = lisa_tensor_nelem(x);
    LISA_ASSERT(lisa_tensor_nelem(out) == n && x->dtype == LISA_DTYPE_F32);
    const float *xd = (const float *)x->data;
    float *od = (float *)out->data;
#pragma omp parallel for num_threads(cpu_ctx_of(be)->nthreads) schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float v = xd[i];
        switch (act) {
        case LISA_ACT_GELU: od[i] = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); break;
        case LISA_ACT_QUICK_GELU: od[i] = v * (1.0f / (1.0f + expf(-1.702f * v))); break;
        case LISA_ACT_RELU: od[i] = v > 0.0f ? v : 0.0f; break;
        case LISA_ACT_SILU: od[i] = v * (1.0f / (1.0f + expf(-v))); break;
        }
    }
    return LISA_OK;
}

lisa_status cpu_add_bias(lisa_backend *be, lisa_tensor *out, const lisa_tensor *bias) {
    int64_t N = lisa_tensor_nelem(bias), M = lisa_tensor_nelem(out) / N;
    LISA_ASSERT(M * N == lisa_tensor_nelem(out) && out->dtype == LISA_DTYPE_F32);
    cpu_ctx *cx = cpu_ctx_of(be);
    LISA_TRY(cpu_scratch_fits(cx, "add_bias", 0, (size_t)N, NULL));
    const float *b = cpu_vec_f32(bias, cpu_shared_scratch(cx));
    float *od = (float *)out->data;
    for (int64_t m = 0; m < M; m++)
        for (int64_t j = 0; j < N; j++) od[m * N + j] += b[j];
    return LISA_OK;
}

#define ATT_QBLOCK 64

/* Per thread: the scaled q rows (ATT_QBLOCK, D), the scores (ATT_QBLOCK,
 * Lk) and the relative terms (2 S <= 2 Lk). */
size_t cpu_attention_full_need(int64_t Lk, int64_t D) {
    return cpu_r16((size_t)(ATT_QBLOCK * D)) + cpu_r16((size_t)(ATT_QBLOCK * Lk)) +
           cpu_r16((size_t)(2 * Lk));
}

/* One (batch, head, query block) of attention_full: scores by sgemm on a
 * scaled copy of the q rows, relative terms, softmax, then P @ V. */
static void attention_block(float *o, const float *q, const float *k, const float *v, int64_t nq,
                            int64_t Lk, int64_t D, int64_t ld, float scale, const float *rh,
                            const float *rw, int64_t S, int64_t i0, float *qs, float *sc,
                            float *rel) {
    for (int64_t i = 0; i < nq; i++)
        for (int64_t d = 0; d < D; d++) qs[i * D + d] = q[i * ld + d] * scale;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)Lk, (int)D, 1.0f, qs, (int)D,
                k, (int)ld, 0.0f, sc, (int)Lk);
    for (int64_t i = 0; i < nq; i++) {
        float *s = sc + i * Lk;
        if (rh) {
            /* rel_h[yj] and rel_w[xj] for this query, from the unscaled q */
            int64_t qi = i0 + i, yi = qi / S, xi = qi % S;
            const float *qr = q + i * ld;
            for (int64_t t = 0; t < S; t++) {
                const float *a = rh + (yi - t + S - 1) * D, *b = rw + (xi - t + S - 1) * D;
                float da = 0, db = 0;
                for (int64_t d = 0; d < D; d++) {
                    da += qr[d] * a[d];
                    db += qr[d] * b[d];
                }
                rel[t] = da;
                rel[S + t] = db;
            }
            for (int64_t j = 0; j < Lk; j++) s[j] = (s[j] + rel[j / S]) + rel[S + j % S];
        }
        float mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j < Lk; j++)
            if (s[j] > mx) mx = s[j];
        for (int64_t j = 0; j < Lk; j++) {
            s[j] = expf(s[j] - mx);
            sum += s[j];
        }
        float inv = 1.0f / sum;
        for (int64_t j = 0; j < Lk; j++) s[j] *= inv;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nq, (int)D, (int)Lk, 1.0f, sc,
                (int)Lk, v, (int)ld, 0.0f, o, (int)ld);
}

lisa_status cpu_attention_full(lisa_backend *be, lisa_tensor *out, const lisa_tensor *q,
                               const lisa_tensor *k, const lisa_tensor *v, float scale,
                               const lisa_tensor *rel_h, const lisa_tensor *rel_w) {
    LISA_ASSERT(q->ndim == 4 && k->ndim == 4 && v->ndim == 4);
    int64_t B = q->shape[0], Lq = q->shape[1], H = q->shape[2], D = q->shape[3];
    int64_t Lk = k->shape[1];
    LISA_ASSERT(k->shape[0] == B && k->shape[2] == H && k->shape[3] == D);
    LISA_ASSERT(lisa_tensor_nelem(v) == lisa_tensor_nelem(k));
    LISA_ASSERT(lisa_tensor_nelem(out) == B * Lq * H * D && q->dtype == LISA_DTYPE_F32);
    cpu_ctx *cx = cpu_ctx_of(be);
    int64_t S = 0;
    const float *rh = NULL, *rw = NULL;
    size_t nrel = 0;
    if (rel_h) {
        LISA_ASSERT(rel_w && rel_h->ndim == 2 && rel_h->shape[1] == D);
        S = (rel_h->shape[0] + 1) / 2;
        LISA_ASSERT(S * S == Lq && Lq == Lk && lisa_tensor_nelem(rel_w) == rel_h->shape[0] * D);
        nrel = (size_t)lisa_tensor_nelem(rel_h);
    }
    LISA_TRY(cpu_scratch_fits(cx, "attention_full", cpu_attention_full_need(Lk, D), 2 * cpu_r16(nrel),
                              "attention_full_lk/_d"));
    if (rel_h) {
        float *sh = cpu_shared_scratch(cx);
        rh = cpu_vec_f32(rel_h, cpu_carve(&sh, nrel));
        rw = cpu_vec_f32(rel_w, cpu_carve(&sh, nrel));
    }
    int64_t nblk = (Lq + ATT_QBLOCK - 1) / ATT_QBLOCK, ntask = B * H * nblk, ld = H * D;
    const float *qd = (const float *)q->data, *kd = (const float *)k->data,
                *vd = (const float *)v->data;
    float *od = (float *)out->data;
#pragma omp parallel num_threads(cx->nthreads)
    {
        float *ts = cpu_thread_scratch(cx, omp_get_thread_num());
        float *qs = cpu_carve(&ts, (size_t)(ATT_QBLOCK * D));
        float *sc = cpu_carve(&ts, (size_t)(ATT_QBLOCK * Lk));
        float *rel = cpu_carve(&ts, (size_t)(2 * Lk));
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < ntask; t++) {
            int64_t b = t / (H * nblk), h = (t / nblk) % H, i0 = (t % nblk) * ATT_QBLOCK;
            int64_t nq = Lq - i0 < ATT_QBLOCK ? Lq - i0 : ATT_QBLOCK;
            attention_block(od + (b * Lq + i0) * ld + h * D, qd + (b * Lq + i0) * ld + h * D,
                            kd + b * Lk * ld + h * D, vd + b * Lk * ld + h * D, nq, Lk, D, ld,
                            scale, rh, rw, S, i0, qs, sc, rel);
        }
    }
    return LISA_OK;
}

lisa_status cpu_im2col(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x, int k, int stride,
                       int pad, int channels_first) {
    LISA_ASSERT(x->ndim == 4 && k > 0 && stride > 0 && pad >= 0 && x->dtype == LISA_DTYPE_F32);
    int64_t B = x->shape[0];
    int64_t H = channels_first ? x->shape[2] : x->shape[1];
    int64_t W = channels_first ? x->shape[3] : x->shape[2];
    int64_t C = channels_first ? x->shape[1] : x->shape[3];
    int64_t Ho = (H + 2 * pad - k) / stride + 1, Wo = (W + 2 * pad - k) / stride + 1;
    int64_t cols = C * k * k;
    LISA_ASSERT(lisa_tensor_nelem(out) == B * Ho * Wo * cols);
    const float *xd = (const float *)x->data;
    float *od = (float *)out->data;
#pragma omp parallel for num_threads(cpu_ctx_of(be)->nthreads) schedule(static)
    for (int64_t r = 0; r < B * Ho * Wo; r++) {
        int64_t b = r / (Ho * Wo), oy = (r / Wo) % Ho, ox = r % Wo;
        float *o = od + r * cols;
        for (int64_t c = 0; c < C; c++)
            for (int64_t ky = 0; ky < k; ky++)
                for (int64_t kx = 0; kx < k; kx++) {
                    int64_t y = oy * stride - pad + ky, xx = ox * stride - pad + kx;
                    float val = 0.0f;
                    if (y >= 0 && y < H && xx >= 0 && xx < W)
                        val = channels_first ? xd[((b * C + c) * H + y) * W + xx]
                                             : xd[((b * H + y) * W + xx) * C + c];
                    o[(c * k + ky) * k + kx] = val;
                }
    }
    return LISA_OK;
}

lisa_status cpu_conv_transpose_2x2(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x,
                                   const lisa_tensor *w, const lisa_tensor *bias) {
    LISA_ASSERT(x->ndim == 4 && w->ndim == 4 && w->shape[2] == 2 && w->shape[3] == 2);
    int64_t B = x->shape[0], H = x->shape[1], W = x->shape[2], C = x->shape[3], O = w->shape[1];
    LISA_ASSERT(w->shape[0] == C && lisa_tensor_nelem(out) == B * 4 * H * W * O);
    cpu_ctx *cx = cpu_ctx_of(be);
    size_t ny = (size_t)(B * H * W * O * 4), nw = (size_t)(C * O * 4);
    LISA_TRY(cpu_scratch_fits(cx, "conv_transpose_2x2", 0,
                              cpu_r16(ny) + cpu_r16(nw) + cpu_r16((size_t)O), "conv_t_out/_w"));
    float *sh = cpu_shared_scratch(cx);
    float *y = cpu_carve(&sh, ny);
    const float *wf = cpu_vec_f32(w, cpu_carve(&sh, nw));
    const float *bf = bias ? cpu_vec_f32(bias, cpu_carve(&sh, (size_t)O)) : NULL;
    /* y (B*H*W, O*4) = x (B*H*W, C) @ w (C, O*2*2) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(B * H * W), (int)(O * 4), (int)C,
                1.0f, (const float *)x->data, (int)C, wf, (int)(O * 4), 0.0f, y, (int)(O * 4));
    float *od = (float *)out->data;
#pragma omp parallel for num_threads(cx->nthreads) schedule(static)
    for (int64_t p = 0; p < B * H * W; p++) {
        int64_t b = p / (H * W), yy = (p / W) % H, xx = p % W;
        for (int64_t o = 0; o < O; o++)
            for (int a = 0; a < 2; a++)
                for (int c = 0; c < 2; c++)
                    od[((b * 2 * H + 2 * yy + a) * 2 * W + 2 * xx + c) * O + o] =
                        y[p * O * 4 + o * 4 + a * 2 + c] + (bf ? bf[o] : 0.0f);
    }
    return LISA_OK;
}

lisa_status cpu_window_partition(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x, int ws) {
    (void)be;
    LISA_ASSERT(x->ndim == 4 && ws > 0);
    int64_t B = x->shape[0], H = x->shape[1], W = x->shape[2], C = x->shape[3];
    int64_t nh = (H + ws - 1) / ws, nw = (W + ws - 1) / ws;
    LISA_ASSERT(lisa_tensor_nelem(out) == B * nh * nw * ws * ws * C);
    const float *xd = (const float *)x->data;
    float *od = (float *)out->data;
    for (int64_t b = 0; b < B; b++)
        for (int64_t wy = 0; wy < nh; wy++)
            for (int64_t wx = 0; wx < nw; wx++)
                for (int64_t ty = 0; ty < ws; ty++)
                    for (int64_t tx = 0; tx < ws; tx++) {
                        int64_t y = wy * ws + ty, xx = wx * ws + tx;
                        float *o = od + ((((b * nh + wy) * nw + wx) * ws + ty) * ws + tx) * C;
                        if (y < H && xx < W)
                            memcpy(o, xd + ((b * H + y) * W + xx) * C, (size_t)C * sizeof(float));
                        else
                            memset(o, 0, (size_t)C * sizeof(float));
                    }
    return LISA_OK;
}

lisa_status cpu_window_unpartition(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x,
                                   int ws) {
    (void)be;
    LISA_ASSERT(out->ndim == 4 && ws > 0);
    int64_t B = out->shape[0], H = out->shape[1], W = out->shape[2], C = out->shape[3];
    int64_t nh = (H + ws - 1) / ws, nw = (W + ws - 1) / ws;
    LISA_ASSERT(lisa_tensor_nelem(x) == B * nh * nw * ws * ws * C);
    const float *xd = (const float *)x->data;
    float *od = (float *)out->data;
    for (int64_t b = 0; b < B; b++)
        for (int64_t y = 0; y < H; y++)
            for (int64_t xx = 0; xx < W; xx++) {
                int64_t wy = y / ws, wx = xx / ws, ty = y % ws, tx = xx % ws;
                memcpy(od + ((b * H + y) * W + xx) * C,
                       xd + ((((b * nh + wy) * nw + wx) * ws + ty) * ws + tx) * C,
                       (size_t)C * sizeof(float));
            }
    return LISA_OK;
}

/* torch 1.13 upsample_bilinear2d/linear weights on the CPU (align_corners=
 * False): the scale is float, the source index is computed and kept in
 * double (CPU acc_type), lambda1 = (float)(src - i0), lambda0 = 1 - lambda1
 * in float. Rounding src to float first moves lambda by up to an ulp of src
 * (6e-5 near index 1000). */
static void bilinear_axis(int64_t in, int64_t outn, int64_t o0, int64_t n, int64_t *i0, int64_t *i1,
                          float *l0, float *l1) {
    float scale = (float)in / (float)outn;
    for (int64_t j = 0; j < n; j++) {
        double src = (double)scale * ((double)(o0 + j) + 0.5) - 0.5;
        if (src < 0) src = 0;
        int64_t a = (int64_t)src;
        if (a > in - 1) a = in - 1;
        i0[j] = a;
        i1[j] = a + (a < in - 1 ? 1 : 0);
        l1[j] = (float)(src - (double)a);
        l0[j] = 1.0f - l1[j];
    }
}

/* Output columns per chunk of resize_bilinear: each thread keeps the
 * chunk's column table on its stack; a row's entry is computed per row. */
#define BILINEAR_CHUNK 512

lisa_status cpu_resize_bilinear(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x, int hc,
                                int wc) {
    LISA_ASSERT(x->ndim == 3 && out->ndim == 3 && x->shape[0] == out->shape[0]);
    int64_t N = x->shape[0], H = x->shape[1], W = x->shape[2], Ho = out->shape[1], Wo = out->shape[2];
    LISA_ASSERT(hc > 0 && wc > 0 && hc <= H && wc <= W && x->dtype == LISA_DTYPE_F32);
    const float *xd = (const float *)x->data;
    float *od = (float *)out->data;
#pragma omp parallel num_threads(cpu_ctx_of(be)->nthreads)
    {
        int64_t x0[BILINEAR_CHUNK], x1[BILINEAR_CHUNK];
        float wx0[BILINEAR_CHUNK], wx1[BILINEAR_CHUNK];
        for (int64_t c0 = 0; c0 < Wo; c0 += BILINEAR_CHUNK) {
            int64_t nc = Wo - c0 < BILINEAR_CHUNK ? Wo - c0 : BILINEAR_CHUNK;
            bilinear_axis(wc, Wo, c0, nc, x0, x1, wx0, wx1);
#pragma omp for schedule(static)
            for (int64_t r = 0; r < N * Ho; r++) {
                int64_t nn = r / Ho, oy = r % Ho, y0, y1;
                float wy0, wy1;
                bilinear_axis(hc, Ho, oy, 1, &y0, &y1, &wy0, &wy1);
                const float *p0 = xd + (nn * H + y0) * W, *p1 = xd + (nn * H + y1) * W;
                float *o = od + r * Wo + c0;
                for (int64_t j = 0; j < nc; j++)
                    o[j] = (p0[x0[j]] * wx0[j] + p0[x1[j]] * wx1[j]) * wy0 +
                           (p1[x0[j]] * wx0[j] + p1[x1[j]] * wx1[j]) * wy1;
            }
        }
    }
    return LISA_OK;
}

lisa_status cpu_copy_cols(lisa_backend *be, lisa_tensor *out, const lisa_tensor *src, int c0) {
    (void)be;
    int64_t C = src->shape[src->ndim - 1], n = lisa_tensor_nelem(src) / C;
    int64_t c = out->shape[out->ndim - 1];
    LISA_ASSERT(c0 >= 0 && c0 + c <= C && lisa_tensor_nelem(out) == n * c);
    LISA_ASSERT(src->dtype == out->dtype);
    size_t es = lisa_dtype_size(src->dtype);
    for (int64_t i = 0; i < n; i++)
        memcpy((char *)out->data + (size_t)(i * c) * es,
               (const char *)src->data + (size_t)(i * C + c0) * es, (size_t)c * es);
    return LISA_OK;
}

lisa_status cpu_transpose(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x) {
    (void)be;
    LISA_ASSERT(x->ndim == 3 && x->dtype == LISA_DTYPE_F32);
    int64_t B = x->shape[0], R = x->shape[1], C = x->shape[2];
    LISA_ASSERT(lisa_tensor_nelem(out) == B * R * C);
    const float *xd = (const float *)x->data;
    float *od = (float *)out->data;
    for (int64_t b = 0; b < B; b++)
        for (int64_t r = 0; r < R; r++)
            for (int64_t c = 0; c < C; c++) od[(b * C + c) * R + r] = xd[(b * R + r) * C + c];
    return LISA_OK;
}
