/* test-backend-ops.c: the cross-backend op test. Every op of the seam runs on
 * random inputs of odd and even shapes on the CPU (the oracle) and on CUDA,
 * in fp32, bf16 and fp16, and the outputs are compared by normalized error
 * NMSE = sum((a - b)^2) / sum(b^2) against per-op, per-dtype thresholds.
 * Every output buffer carries guard bytes before and after it; an op that
 * writes outside its tensor fails, on the CPU as well as on CUDA.
 *
 * Inputs are drawn in fp32 and rounded to the dtype under test first, so the
 * CPU computes on exactly the values the GPU sees; what remains is the
 * kernel's own error plus the rounding of its output. Thresholds: fp32 from
 * accumulation order (1e-10, 1e-9 for long reductions); bf16 and fp16 from
 * one output rounding (unit roundoff 2^-8 and 2^-11; NMSE about u^2 / 3)
 * with margin. They were set by analysis; a GPU run that trips one is to be
 * looked at by hand, not loosened.
 *
 * The seam's memory and stream parts run the same way: device-to-device
 * copies at offsets (copy_backend), a copy ordered by an event (record,
 * wait, synchronize, query), and pinned host buffers as the source and
 * destination of uploads and downloads (host_alloc); their outputs must be
 * equal. The CPU's op scratch reservation is checked too: an op beyond it
 * fails cleanly, and lisa_backend_reserve makes it fit.
 *
 * Quantized weights (Q8_0, Q4_0) have their own cases (check_quant): CUDA's
 * GEMV and dequantized-tile paths against the CPU's fp32 dequantization, in
 * every activation dtype, with row views, biases, graphs, the refusal to
 * convert on upload and the dequantization scratch's reservation.
 *
 * Without a GPU (or in a build without CUDA) the CUDA cases are reported as
 * SKIPPED and only the CPU guard checks run. With LISA_REQUIRE_CUDA=1 in the
 * environment a skip is a failure (scripts/gpu-check.sh sets it). */
#include <stdint.h>

#include "backend.h"
#include "testutil.h"

#define GUARD 256
#define GUARD_BYTE 0xA5

typedef struct {
    lisa_tensor t;
    void *base;
    size_t nbytes;
} gtensor;

static uint64_t g_rng = 0x1234567887654321ULL;
static float rnd(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((g_rng >> 40) / (double)(1 << 24)) * 2.0f - 1.0f;
}

static float round_to(float v, lisa_dtype dt) {
    if (dt == LISA_DTYPE_BF16) return lisa_bf16_to_f32(lisa_f32_to_bf16(v));
    if (dt == LISA_DTYPE_F16) return lisa_f16_to_f32(lisa_f32_to_f16(v));
    return v;
}

static float *rand_vec(size_t n, float scale, lisa_dtype dt) {
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = round_to(scale * rnd(), dt);
    return v;
}

static void host_from_f32(void *dst, lisa_dtype dt, const float *src, size_t n) {
    uint16_t *h = dst;
    for (size_t i = 0; i < n; i++) {
        if (dt == LISA_DTYPE_F32) ((float *)dst)[i] = src[i];
        else if (dt == LISA_DTYPE_BF16) h[i] = lisa_f32_to_bf16(src[i]);
        else if (dt == LISA_DTYPE_F16) h[i] = lisa_f32_to_f16(src[i]);
        else ((int32_t *)dst)[i] = (int32_t)src[i];
    }
}

/* A backend tensor with GUARD sentinel bytes on both sides. */
static gtensor gt_alloc(lisa_backend *be, lisa_dtype dt, int ndim, const int64_t *shape) {
    gtensor g;
    g.t = lisa_tensor_view(NULL, dt, ndim, shape);
    g.nbytes = lisa_tensor_nbytes(&g.t);
    size_t total = g.nbytes + 2 * GUARD;
    LISA_ASSERT(be->ops->buffer_alloc(be, total, &g.base) == LISA_OK);
    unsigned char *fill = malloc(total);
    memset(fill, GUARD_BYTE, total);
    LISA_ASSERT(be->ops->copy_to_backend(be, g.base, 0, fill, total) == LISA_OK);
    LISA_ASSERT(be->ops->synchronize(be) == LISA_OK);
    free(fill);
    g.t.data = (char *)g.base + GUARD;
    return g;
}

/* Uploads fp32 values (or ids, for I32) converted to the tensor's dtype. */
static void gt_set(lisa_backend *be, gtensor *g, const float *v) {
    size_t n = (size_t)lisa_tensor_nelem(&g->t);
    void *h = malloc(g->nbytes ? g->nbytes : 1);
    host_from_f32(h, g->t.dtype, v, n);
    LISA_ASSERT(be->ops->copy_to_backend(be, g->t.data, 0, h, g->nbytes) == LISA_OK);
    LISA_ASSERT(be->ops->synchronize(be) == LISA_OK);
    free(h);
}

/* Downloads as fp32 and checks the guards; returns 0 when they were hit. */
static int gt_get(lisa_backend *be, const gtensor *g, float *out) {
    size_t total = g->nbytes + 2 * GUARD;
    unsigned char *h = malloc(total);
    LISA_ASSERT(be->ops->copy_to_host(be, h, g->base, 0, total) == LISA_OK);
    LISA_ASSERT(be->ops->synchronize(be) == LISA_OK);
    int ok = 1;
    for (size_t i = 0; i < GUARD; i++)
        if (h[i] != GUARD_BYTE || h[GUARD + g->nbytes + i] != GUARD_BYTE) ok = 0;
    size_t n = (size_t)lisa_tensor_nelem(&g->t);
    if (g->t.dtype == LISA_DTYPE_I32)
        for (size_t i = 0; i < n; i++) out[i] = (float)((int32_t *)(h + GUARD))[i];
    else
        lisa_dtype_to_f32(out, h + GUARD, g->t.dtype, n);
    free(h);
    return ok;
}

static void gt_free(lisa_backend *be, gtensor *g) { be->ops->buffer_free(be, g->base); }

static double nmse(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        if (isnan(a[i]) != isnan(b[i])) return INFINITY;
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? num / den : num;
}

/* per-op thresholds, indexed by dtype F32, F16, BF16 */
typedef struct {
    const char *op;
    double tol[3];
} op_tol;
static const op_tol k_tols[] = {
    {"matmul", {1e-9, 2e-6, 1e-4}},   {"matmul_rows", {1e-9, 2e-6, 1e-4}},
    {"embedding", {0, 0, 0}},
    {"rmsnorm", {1e-10, 2e-6, 1e-4}}, {"add_rmsnorm", {1e-10, 4e-6, 2e-4}},
    {"rope", {1e-10, 2e-6, 1e-4}},    {"attention", {1e-9, 4e-6, 2e-4}},
    {"attention_prefill", {1e-9, 4e-6, 2e-4}},
    {"swiglu", {1e-10, 2e-6, 1e-4}},  {"add", {1e-12, 2e-6, 1e-4}},
    {"softmax", {1e-10, 2e-6, 1e-4}}, {"argmax", {0, 0, 0}},
    {"get_rows", {0, 0, 0}},          {"convert", {0, 0, 0}},
    {"layernorm", {1e-10, 2e-6, 1e-4}}, {"activation", {1e-10, 2e-6, 1e-4}},
    {"add_bias", {1e-12, 2e-6, 1e-4}},  {"attention_full", {1e-9, 4e-6, 2e-4}},
    {"im2col", {0, 0, 0}},              {"im2col_cf", {0, 0, 0}},
    {"conv_t2x2", {1e-10, 2e-6, 1e-4}}, {"windows", {0, 0, 0}},
    {"bilinear", {1e-12, 2e-6, 1e-4}},  {"copy_cols", {0, 0, 0}},
    {"transpose", {0, 0, 0}},
    {"copy_backend", {0, 0, 0}},        {"events", {0, 0, 0}},
    {"host_alloc", {0, 0, 0}},
};

static double tol_of(const char *op, lisa_dtype dt) {
    for (size_t i = 0; i < sizeof k_tols / sizeof k_tols[0]; i++)
        if (!strcmp(k_tols[i].op, op)) return k_tols[i].tol[dt == LISA_DTYPE_F32 ? 0 : dt == LISA_DTYPE_F16 ? 1 : 2];
    LISA_ASSERT(!"no tolerance for op");
    return 0;
}

/* One op case: `run` builds inputs on backend `be` in dtype `dt` from the
 * shared fp32 values in the case, runs the op, and writes the output as fp32
 * into `out`; it returns 0 when a guard was hit. */
typedef struct op_case op_case;
typedef int (*op_run_fn)(const op_case *c, lisa_backend *be, lisa_dtype dt, float *out);
struct op_case {
    const char *op;
    int64_t a, b, c;     /* shape parameters, meaning per op */
    op_run_fn run;
    size_t out_n;
    float *in[4];        /* inputs, fp32 values already rounded per run */
};

/* Activations are fp32 on host backends; weights are in dt everywhere (the
 * CPU reads any weight dtype). */
static lisa_dtype adt(lisa_backend *be, lisa_dtype dt) {
    return be->ops->host_memory ? LISA_DTYPE_F32 : dt;
}

/* matmul: x (a, c) @ w (b, c)^T + bias (b). matmul_rows: x, w and out are
 * row views starting at row 1 of (a+1, c), (b+1, c), (a+1, b) buffers, so
 * their pointers are less than 256-byte aligned, as the models' row views
 * (CLIP's patch rows, SAM's hypernetwork rows) are; row 0 of out is zeroed
 * first and must stay zero (it is compared too). With a <= 4 and c % 8 == 0
 * CUDA's half-precision matmul takes its GEMV kernel instead of cuBLASLt. */
static int run_matmul(const op_case *k, lisa_backend *be, lisa_dtype dt, float *out) {
    int64_t r = !strcmp(k->op, "matmul_rows");
    int64_t sx[2] = {k->a + r, k->c}, sw[2] = {k->b + r, k->c}, so[2] = {k->a + r, k->b},
            sb[1] = {k->b};
    gtensor x = gt_alloc(be, adt(be, dt), 2, sx), w = gt_alloc(be, dt, 2, sw),
            o = gt_alloc(be, adt(be, dt), 2, so), b = gt_alloc(be, dt, 1, sb);
    gt_set(be, &x, k->in[0]);
    gt_set(be, &w, k->in[1]);
    gt_set(be, &b, k->in[2]);
    if (r) { /* row 0 of out: zeros in every dtype, so both backends read back the same */
        float *z = calloc((size_t)((k->a + r) * k->b), sizeof *z);
        gt_set(be, &o, z);
        free(z);
    }
    lisa_tensor xv = lisa_tensor_rows(&x.t, r, k->a), wv = lisa_tensor_rows(&w.t, r, k->b),
                ov = lisa_tensor_rows(&o.t, r, k->a);
    CHECK(be->ops->matmul(be, &ov, &xv, &wv, k->in[3] ? &b.t : NULL) == LISA_OK, "%s", lisa_error_get());
    int ok = gt_get(be, &o, out);
    gt_free(be, &x), gt_free(be, &w), gt_free(be, &o), gt_free(be, &b);
    return ok;
}

/* embedding: table (b, c)[ids (a)] */
static int run_embedding(const op_case *k, lisa_backend *be, lisa_dtype dt, float *out) {
    int64_t st[2] = {k->b, k->c}, si[1] = {k->a}, so[2] = {k->a, k->c};
    gtensor t = gt_alloc(be, dt, 2, st), ids = gt_alloc(be, LISA_DTYPE_I32, 1, si),
            o = gt_alloc(be, adt(be, dt), 2, so);
    gt_set(be, &t, k->in[0]);
    gt_set(be, &ids, k->in[1]);
    CHECK(be->ops->embedding(be, &o.t, &t.t, &ids.t) == LISA_OK, "%s", lisa_error_get());
    int ok = gt_get(be, &o, out);
    gt_free(be, &t), gt_free(be, &ids), gt_free(be, &o);
    return ok;
}

/* rmsnorm (x (a, c), w (c)); add_rmsnorm adds d (a, c) first; out is
 * [normed ; new x] for add_rmsnorm */
static int run_norm(const op_case *k, lisa_backend *be, lisa_dtype dt, float *out) {
    int64_t sx[2] = {k->a, k->c}, sw[1] = {k->c};
    gtensor x = gt_alloc(be, adt(be, dt), 2, sx), d = gt_alloc(be, adt(be, dt), 2, sx),
            w = gt_alloc(be, dt, 1, sw), o = gt_alloc(be, adt(be, dt), 2, sx);
    gt_set(be, &x, k->in[0]);
    gt_set(be, &d, k->in[1]);
    gt_set(be, &w, k->in[2]);
    int fused = !strcmp(k->op, "add_rmsnorm");
    if (fused)
        CHECK(be->ops->add_rmsnorm(be, &x.t, &d.t, &o.t, &w.t, 1e-5f) == LISA_OK, "%s", lisa_error_get());
    else
        CHECK(be->ops->rmsnorm(be, &o.t, &x.t, &w.t, 1e-6f) == LISA_OK, "%s", lisa_error_get());
    int ok = gt_get(be, &o, out);
    if (fused) ok &= gt_get(be, &x, out + k->a * k->c);
    gt_free(be, &x), gt_free(be, &d), gt_free(be, &w), gt_free(be, &o);
    return ok;
}

/* rope on x (a, b heads, c dims), positions in[1] */
static int run_rope(const op_case *k, lisa_backend *be, lisa_dtype dt, float *out) {
    int64_t sx[3] = {k->a, k->b, k->c}, sp[1] = {k->a};
    gtensor x = gt_alloc(be, adt(be, dt), 3, sx), p = gt_alloc(be, LISA_DTYPE_I32, 1, sp);
    gt_set(be, &x, k->in[0]);
    gt_set(be, &p, k->in[1]);
    CHECK(be->ops->rope(be, &x.t, &p.t, 10000.0f) == LISA_OK, "%s", lisa_error_get());
    int ok = gt_get(be, &x, out);
    gt_free(be, &x), gt_free(be, &p);
    return ok;
}

/* kv_store + attention: a rows over 2 sequences, H = b heads, KVH = b / 2,
 * D = c, context max(64, a); rows are sequence 0 positions 0..a/2-1 and
 * sequence 1 positions 0..a-a/2-1, interleaved, so prefill and
 * cross-sequence packing are both exercised. Few rows take CUDA's split-key
 * path, many rows (a * b >= 512) its one-warp-per-row path.
 * "attention_prefill": the rows of each sequence contiguous instead (3/5 of
 * them sequence 0), context rounded up to a multiple of 16: in bf16/f16 with
 * D 64 or 128 CUDA's tensor-core path takes the 16-row tiles of one
 * sequence and the row kernel the tile that straddles the two and the
 * partial last one. */
static int run_attention(const op_case *k, lisa_backend *be, lisa_dtype dt, float *out) {
    int prefill = !strcmp(k->op, "attention_prefill");
    int64_t n = k->a, H = k->b, KVH = k->b / 2, D = k->c, Tmax = n < 64 ? 64 : n;
    if (prefill) Tmax = (Tmax + 15) / 16 * 16;
    int64_t sq[3] = {n, H, D}, skv[3] = {n, KVH, D}, sc[4] = {2, Tmax, KVH, D}, si[1] = {n};
    int64_t so[2] = {n, H * D};
    gtensor q = gt_alloc(be, adt(be, dt), 3, sq), kk = gt_alloc(be, adt(be, dt), 3, skv),
            v = gt_alloc(be, adt(be, dt), 3, skv), kc = gt_alloc(be, adt(be, dt), 4, sc),
            vc = gt_alloc(be, adt(be, dt), 4, sc), seq = gt_alloc(be, LISA_DTYPE_I32, 1, si),
            pos = gt_alloc(be, LISA_DTYPE_I32, 1, si), o = gt_alloc(be, adt(be, dt), 2, so);
    float *sv = malloc((size_t)n * sizeof *sv), *pv = malloc((size_t)n * sizeof *pv);
    int64_t c0 = 0, c1 = 0;
    for (int64_t i = 0; i < n; i++) {
        int s = prefill ? i >= n * 3 / 5 : (i % 2 == 1 && c1 < n - n / 2) || c0 >= n / 2;
        sv[i] = (float)s;
        pv[i] = (float)(s ? c1++ : c0++);
    }
    gt_set(be, &q, k->in[0]);
    gt_set(be, &kk, k->in[1]);
    gt_set(be, &v, k->in[2]);
    gt_set(be, &seq, sv);
    gt_set(be, &pos, pv);
    CHECK(be->ops->kv_store(be, &kc.t, &vc.t, &kk.t, &v.t, &seq.t, &pos.t) == LISA_OK, "%s", lisa_error_get());
    CHECK(be->ops->attention(be, &o.t, &q.t, &kc.t, &vc.t, &seq.t, &pos.t) == LISA_OK, "%s", lisa_error_get());
    int ok = gt_get(be, &o, out);
    float *tmp = malloc((size_t)(2 * Tmax * KVH * D) * sizeof *tmp);
    ok &= gt_get(be, &kc, tmp);
    ok &= gt_get(be, &vc, tmp);
    free(tmp);
    free(sv);
    free(pv);
    gt_free(be, &q), gt_free(be, &kk), gt_free(be, &v), gt_free(be, &kc), gt_free(be, &vc);
    gt_free(be, &seq), gt_free(be, &pos), gt_free(be, &o);
    return ok;
}

/* elementwise / row ops on (a, c) */
static int run_rowop(const op_case *k, lisa_backend *be, lisa_dtype dt, float *out) {
    int64_t s[2] = {k->a, k->c}, si[1] = {k->a}, sr[1] = {k->b};
    gtensor x = gt_alloc(be, adt(be, dt), 2, s), y = gt_alloc(be, adt(be, dt), 2, s),
            o = gt_alloc(be, adt(be, dt), 2, s), am = gt_alloc(be, LISA_DTYPE_I32, 1, si),
            idx = gt_alloc(be, LISA_DTYPE_I32, 1, sr);
    int64_t sg[2] = {k->b, k->c};
    gtensor g = gt_alloc(be, adt(be, dt), 2, sg);
    gt_set(be, &x, k->in[0]);
    gt_set(be, &y, k->in[1]);
    int ok = 1;
    const lisa_backend_ops *op = be->ops;
    if (!strcmp(k->op, "swiglu")) {
        CHECK(op->swiglu(be, &o.t, &x.t, &y.t) == LISA_OK, "%s", lisa_error_get());
        ok = gt_get(be, &o, out);
    } else if (!strcmp(k->op, "add")) {
        CHECK(op->add(be, &o.t, &x.t, &y.t) == LISA_OK, "%s", lisa_error_get());
        ok = gt_get(be, &o, out);
    } else if (!strcmp(k->op, "softmax")) {
        CHECK(op->softmax(be, &x.t) == LISA_OK, "%s", lisa_error_get());
        ok = gt_get(be, &x, out);
    } else if (!strcmp(k->op, "argmax")) {
        CHECK(op->argmax(be, &am.t, &x.t) == LISA_OK, "%s", lisa_error_get());
        ok = gt_get(be, &am, out);
    } else if (!strcmp(k->op, "get_rows")) {
        gt_set(be, &idx, k->in[2]);
        CHECK(op->get_rows(be, &g.t, &x.t, &idx.t) == LISA_OK, "%s", lisa_error_get());
        ok = gt_get(be, &g, out);
    } else if (!strcmp(k->op, "convert")) {
        /* to fp32 and back into the dtype under test: exact both ways */
        gtensor f = gt_alloc(be, LISA_DTYPE_F32, 2, s);
        CHECK(op->convert(be, &f.t, &x.t) == LISA_OK, "%s", lisa_error_get());
        CHECK(op->convert(be, &o.t, &f.t) == LISA_OK, "%s", lisa_error_get());
        ok = gt_get(be, &o, out) & gt_get(be, &f, out + k->a * k->c);
        gt_free(be, &f);
    }
    gt_free(be, &x), gt_free(be, &y), gt_free(be, &o), gt_free(be, &am), gt_free(be, &idx);
    gt_free(be, &g);
    return ok;
}

/* vision: layernorm / activations / add_bias on (a, c); b selects the activation */
static int run_vrow(const op_case *k, lisa_backend *be, lisa_dtype dt, float *out) {
    int64_t s[2] = {k->a, k->c}, sw[1] = {k->c};
    gtensor x = gt_alloc(be, adt(be, dt), 2, s), o = gt_alloc(be, adt(be, dt), 2, s),
            w = gt_alloc(be, dt, 1, sw), b = gt_alloc(be, dt, 1, sw);
    gt_set(be, &x, k->in[0]);
    gt_set(be, &w, k->in[1]);
    gt_set(be, &b, k->in[2]);
    const lisa_backend_ops *op = be->ops;
    int ok;
    if (!strcmp(k->op, "layernorm")) {
        CHECK(op->layernorm(be, &o.t, &x.t, &w.t, &b.t, 1e-6f) == LISA_OK, "%s", lisa_error_get());
        ok = gt_get(be, &o, out);
    } else if (!strcmp(k->op, "activation")) {
        CHECK(op->activation(be, &o.t, &x.t, (lisa_act)k->b) == LISA_OK, "%s", lisa_error_get());
        ok = gt_get(be, &o, out);
    } else {
        CHECK(op->add_bias(be, &x.t, &b.t) == LISA_OK, "%s", lisa_error_get());
        ok = gt_get(be, &x, out);
    }
    gt_free(be, &x), gt_free(be, &o), gt_free(be, &w), gt_free(be, &b);
    return ok;
}

/* attention_full: B = 2, Lq = a, H = 2, D = c; b = 0: Lk = a; b = 1: Lk =
 * a, a square, with relative positions on its sqrt(a) grid; b = 2: Lk =
 * a + 23 (cross-attention, as SAM's decoder). On CUDA in bf16/f16 with D 32,
 * 64, 80 or 128 the tensor-core kernel runs, with partial query and key
 * tiles at these sizes. */
static int run_attn_full(const op_case *k, lisa_backend *be, lisa_dtype dt, float *out) {
    int64_t L = k->a, H = 2, D = k->c, S = 0, Lk = k->b == 2 ? k->a + 23 : k->a;
    while ((S + 1) * (S + 1) <= L) S++;
    int64_t sq[4] = {2, L, H, D}, sk[4] = {2, Lk, H, D}, so[3] = {2, L, H * D},
            sr[2] = {2 * S - 1, D};
    gtensor q = gt_alloc(be, adt(be, dt), 4, sq), kk = gt_alloc(be, adt(be, dt), 4, sk),
            v = gt_alloc(be, adt(be, dt), 4, sk), o = gt_alloc(be, adt(be, dt), 3, so),
            rh = gt_alloc(be, dt, 2, sr), rw = gt_alloc(be, dt, 2, sr);
    gt_set(be, &q, k->in[0]);
    gt_set(be, &kk, k->in[1]);
    gt_set(be, &v, k->in[2]);
    gt_set(be, &rh, k->in[3]);
    gt_set(be, &rw, k->in[3] + (2 * S - 1) * D);
    int rel = k->b == 1;
    CHECK(be->ops->attention_full(be, &o.t, &q.t, &kk.t, &v.t, 0.125f, rel ? &rh.t : NULL,
                                  rel ? &rw.t : NULL) == LISA_OK, "%s", lisa_error_get());
    int ok = gt_get(be, &o, out);
    gt_free(be, &q), gt_free(be, &kk), gt_free(be, &v), gt_free(be, &o), gt_free(be, &rh), gt_free(be, &rw);
    return ok;
}

/* image-shaped ops on x (1, a, b, c) channels-last (or (1, c, a, b) for
 * im2col_cf): im2col 3x3 pad 1, im2col 4x4 stride 4 channels-first,
 * conv_transpose_2x2 to 5 channels, windows of 4, bilinear of the c planes
 * (a, b) cropped to (a-1, b-2) and resized to (2a+1, b+3), copy_cols,
 * transpose */
static int run_image(const op_case *k, lisa_backend *be, lisa_dtype dt, float *out) {
    int64_t A = k->a, Bw = k->b, C = k->c;
    int64_t sx[4] = {1, A, Bw, C}, sxc[4] = {1, C, A, Bw};
    const lisa_backend_ops *op = be->ops;
    lisa_dtype d = adt(be, dt);
    int ok = 1;
    if (!strcmp(k->op, "im2col") || !strcmp(k->op, "im2col_cf")) {
        int cf = !strcmp(k->op, "im2col_cf"), kk = cf ? 4 : 3, st = cf ? 4 : 1, pad = cf ? 0 : 1;
        int64_t Ho = (A + 2 * pad - kk) / st + 1, Wo = (Bw + 2 * pad - kk) / st + 1;
        int64_t so[2] = {Ho * Wo, C * kk * kk};
        gtensor x = gt_alloc(be, d, 4, cf ? sxc : sx), o = gt_alloc(be, d, 2, so);
        gt_set(be, &x, k->in[0]);
        CHECK(op->im2col(be, &o.t, &x.t, kk, st, pad, cf) == LISA_OK, "%s", lisa_error_get());
        ok = gt_get(be, &o, out);
        gt_free(be, &x), gt_free(be, &o);
    } else if (!strcmp(k->op, "conv_t2x2")) {
        int64_t sw[4] = {C, 5, 2, 2}, sb[1] = {5}, so[4] = {1, 2 * A, 2 * Bw, 5};
        gtensor x = gt_alloc(be, d, 4, sx), w = gt_alloc(be, dt, 4, sw),
                b = gt_alloc(be, dt, 1, sb), o = gt_alloc(be, d, 4, so);
        gt_set(be, &x, k->in[0]);
        gt_set(be, &w, k->in[1]);
        gt_set(be, &b, k->in[2]);
        CHECK(op->conv_transpose_2x2(be, &o.t, &x.t, &w.t, &b.t) == LISA_OK, "%s", lisa_error_get());
        ok = gt_get(be, &o, out);
        gt_free(be, &x), gt_free(be, &w), gt_free(be, &b), gt_free(be, &o);
    } else if (!strcmp(k->op, "windows")) {
        int64_t nw = ((A + 3) / 4) * ((Bw + 3) / 4), sw[3] = {nw, 16, C};
        gtensor x = gt_alloc(be, d, 4, sx), w = gt_alloc(be, d, 3, sw), o = gt_alloc(be, d, 4, sx);
        gt_set(be, &x, k->in[0]);
        CHECK(op->window_partition(be, &w.t, &x.t, 4) == LISA_OK, "%s", lisa_error_get());
        CHECK(op->window_unpartition(be, &o.t, &w.t, 4) == LISA_OK, "%s", lisa_error_get());
        ok = gt_get(be, &w, out) & gt_get(be, &o, out + nw * 16 * C);
        gt_free(be, &x), gt_free(be, &w), gt_free(be, &o);
    } else if (!strcmp(k->op, "bilinear")) {
        int64_t si[3] = {C, A, Bw}, so[3] = {C, 2 * A + 1, Bw + 3};
        gtensor x = gt_alloc(be, d, 3, si), o = gt_alloc(be, d, 3, so);
        gt_set(be, &x, k->in[0]);
        CHECK(op->resize_bilinear(be, &o.t, &x.t, (int)A - 1, (int)Bw - 2) == LISA_OK, "%s", lisa_error_get());
        ok = gt_get(be, &o, out);
        gt_free(be, &x), gt_free(be, &o);
    } else if (!strcmp(k->op, "copy_cols")) {
        int64_t si[2] = {A * Bw, C}, so[2] = {A * Bw, C / 2};
        gtensor x = gt_alloc(be, d, 2, si), o = gt_alloc(be, d, 2, so);
        gt_set(be, &x, k->in[0]);
        CHECK(op->copy_cols(be, &o.t, &x.t, (int)(C / 3)) == LISA_OK, "%s", lisa_error_get());
        ok = gt_get(be, &o, out);
        gt_free(be, &x), gt_free(be, &o);
    } else {
        int64_t si[3] = {A, Bw, C}, so[3] = {A, C, Bw};
        gtensor x = gt_alloc(be, d, 3, si), o = gt_alloc(be, d, 3, so);
        gt_set(be, &x, k->in[0]);
        CHECK(op->transpose(be, &o.t, &x.t) == LISA_OK, "%s", lisa_error_get());
        ok = gt_get(be, &o, out);
        gt_free(be, &x), gt_free(be, &o);
    }
    return ok;
}

/* The seam's memory and stream parts on x (a, c):
 *  - copy_backend: rows [1, a) of x into rows [2, a + 1) of a zeroed
 *    (a + 2, c) tensor, both at byte offsets; out is all of it;
 *  - events: x copied to y, an event recorded and waited for on the same
 *    stream, then synchronized; it must then be done, as must an event
 *    never recorded; out is y;
 *  - host_alloc: x uploaded from a pinned buffer, copied on the device,
 *    downloaded into another pinned buffer; out is what arrived. */
static int run_seam(const op_case *k, lisa_backend *be, lisa_dtype dt, float *out) {
    const lisa_backend_ops *op = be->ops;
    lisa_dtype d = adt(be, dt);
    int64_t A = k->a, Cc = k->c, sx[2] = {A, Cc}, sd[2] = {A + 2, Cc};
    size_t row = (size_t)Cc * lisa_dtype_size(d);
    gtensor x = gt_alloc(be, d, 2, sx);
    gt_set(be, &x, k->in[0]);
    int ok = 1;
    if (!strcmp(k->op, "copy_backend")) {
        gtensor y = gt_alloc(be, d, 2, sd);
        float *z = calloc((size_t)((A + 2) * Cc), sizeof *z);
        gt_set(be, &y, z);
        free(z);
        CHECK(op->copy_backend(be, y.t.data, 2 * row, x.t.data, row, (size_t)(A - 1) * row) == LISA_OK,
              "%s", lisa_error_get());
        ok = gt_get(be, &y, out);
        gt_free(be, &y);
    } else if (!strcmp(k->op, "events")) {
        gtensor y = gt_alloc(be, d, 2, sx);
        lisa_event *e = NULL, *never = NULL;
        CHECK(op->event_create(be, &e) == LISA_OK && op->event_create(be, &never) == LISA_OK, "%s",
              lisa_error_get());
        CHECK(op->copy_backend(be, y.t.data, 0, x.t.data, 0, (size_t)A * row) == LISA_OK, "%s",
              lisa_error_get());
        CHECK(op->event_record(be, e) == LISA_OK, "%s", lisa_error_get());
        CHECK(op->event_wait(be, e) == LISA_OK, "%s", lisa_error_get());
        int done = -1;
        CHECK(op->event_query(be, e, &done) == LISA_OK && (done == 0 || done == 1), "query");
        CHECK(op->event_synchronize(be, e) == LISA_OK, "%s", lisa_error_get());
        CHECK(op->event_query(be, e, &done) == LISA_OK && done == 1, "%s: done after synchronize",
              op->name);
        CHECK(op->event_query(be, never, &done) == LISA_OK && done == 1,
              "%s: an event never recorded is done", op->name);
        ok = gt_get(be, &y, out);
        op->event_free(be, e);
        op->event_free(be, never);
        gt_free(be, &y);
    } else {
        gtensor y = gt_alloc(be, d, 2, sx);
        size_t nb = (size_t)A * row;
        void *h_in = NULL, *h_out = NULL;
        CHECK(op->host_alloc(be, nb, &h_in) == LISA_OK && op->host_alloc(be, nb, &h_out) == LISA_OK,
              "%s", lisa_error_get());
        CHECK(((uintptr_t)h_in & 63) == 0 && ((uintptr_t)h_out & 63) == 0, "host_alloc alignment");
        host_from_f32(h_in, d, k->in[0], (size_t)(A * Cc));
        CHECK(op->copy_to_backend(be, y.t.data, 0, h_in, nb) == LISA_OK, "%s", lisa_error_get());
        CHECK(op->copy_backend(be, x.t.data, 0, y.t.data, 0, nb) == LISA_OK, "%s", lisa_error_get());
        CHECK(op->copy_to_host(be, h_out, x.t.data, 0, nb) == LISA_OK, "%s", lisa_error_get());
        CHECK(op->synchronize(be) == LISA_OK, "%s", lisa_error_get());
        lisa_dtype_to_f32(out, h_out, d, (size_t)(A * Cc));
        ok = gt_get(be, &y, out + A * Cc);
        op->host_free(be, h_in);
        op->host_free(be, h_out);
        gt_free(be, &y);
    }
    gt_free(be, &x);
    return ok;
}

/* The CPU's op scratch: attention over a cache longer than the default
 * reservation fails with LISA_ERR_ARG naming the field to raise, and runs
 * once lisa_backend_reserve has grown it. (A 1-head, 1-dim cache, so the
 * test stays small.) */
static void check_reserve(void) {
    lisa_backend *be;
    CHECK(lisa_backend_cpu_init(&be, 2) == LISA_OK, "cpu backend");
    int64_t Tmax = ((int64_t)1 << 20) + 16, sq[3] = {1, 1, 1}, sc[4] = {1, Tmax, 1, 1}, so[2] = {1, 1};
    lisa_tensor q, kc, vc, seq, pos, o;
    CHECK(lisa_backend_tensor_alloc(be, &q, LISA_DTYPE_F32, 3, sq) == LISA_OK, "q");
    CHECK(lisa_backend_tensor_alloc(be, &kc, LISA_DTYPE_F32, 4, sc) == LISA_OK, "k cache");
    CHECK(lisa_backend_tensor_alloc(be, &vc, LISA_DTYPE_F32, 4, sc) == LISA_OK, "v cache");
    CHECK(lisa_backend_tensor_alloc(be, &seq, LISA_DTYPE_I32, 1, sq) == LISA_OK, "seq");
    CHECK(lisa_backend_tensor_alloc(be, &pos, LISA_DTYPE_I32, 1, sq) == LISA_OK, "pos");
    CHECK(lisa_backend_tensor_alloc(be, &o, LISA_DTYPE_F32, 2, so) == LISA_OK, "out");
    ((int32_t *)pos.data)[0] = 3;
    for (int t = 0; t < 4; t++) ((float *)vc.data)[t] = 2.0f;
    lisa_status st = be->ops->attention(be, &o, &q, &kc, &vc, &seq, &pos);
    CHECK(st == LISA_ERR_ARG && strstr(lisa_error_get(), "attention_ctx"),
          "attention beyond the reservation: status %d, %s", (int)st, lisa_error_get());
    lisa_backend_reserve_req r;
    memset(&r, 0, sizeof r);
    r.attention_ctx = Tmax;
    CHECK(lisa_backend_reserve(be, &r) == LISA_OK, "reserve: %s", lisa_error_get());
    st = be->ops->attention(be, &o, &q, &kc, &vc, &seq, &pos);
    CHECK(st == LISA_OK && ((float *)o.data)[0] == 2.0f, "attention after reserving: %s",
          lisa_error_get());
    lisa_tensor *all[] = {&q, &kc, &vc, &seq, &pos, &o};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) lisa_backend_tensor_free(be, all[i]);
    lisa_backend_free(be);
}

/* Quantized matmul: out (M, N) = x (M, K) @ dequant(w (N, K))^T [+ bias],
 * w random in [-0.5, 0.5) quantized by lisa_quantize_q8_0 / q4_0 (the same
 * blocks on both backends, uploaded with upload_convert as themselves), x
 * and bias rounded to the activation dtype. `rows`: x, w and out are row
 * views from row 1, as in matmul_rows (w's rows then start 2-byte aligned
 * when K / 32 is odd, which the CUDA GEMV must read with 2-byte loads);
 * `graph`: recorded into a graph and replayed where the backend records
 * graphs. On CUDA M <= 8 takes the GEMV kernel, more rows (or a backend
 * without GEMV) the dequantized tiles through cuBLASLt. */
typedef struct {
    lisa_dtype q;
    int64_t M, N, K;
    int bias, rows, graph;
} qcase;

/* (N + rows, K) blocks of q from fixed random weights; *n_out their element count. */
static void *qweights(const qcase *k, size_t *n_out) {
    int64_t R = k->N + k->rows;
    size_t n = (size_t)(R * k->K);
    float *v = rand_vec(n, 0.5f, LISA_DTYPE_F32);
    void *b = malloc(lisa_dtype_row_bytes(k->q, (int64_t)n));
    if (k->q == LISA_DTYPE_Q8_0)
        lisa_quantize_q8_0(b, v, n);
    else
        lisa_quantize_q4_0(b, v, n);
    free(v);
    *n_out = n;
    return b;
}

/* Runs one quantized case on `be`; out gets all (M + rows, N) outputs
 * (row 0 of a rows case is zeroed first and must stay zero). Returns 0
 * when a guard was hit. */
static int run_qmatmul(const qcase *k, lisa_backend *be, lisa_dtype dt, const float *xin,
                       const void *wq, size_t wn, const float *bin, float *out) {
    int64_t r = k->rows, sx[2] = {k->M + r, k->K}, sw[2] = {k->N + r, k->K},
            so[2] = {k->M + r, k->N}, sb[1] = {k->N};
    gtensor x = gt_alloc(be, adt(be, dt), 2, sx), w = gt_alloc(be, k->q, 2, sw),
            o = gt_alloc(be, adt(be, dt), 2, so), b = gt_alloc(be, dt, 1, sb);
    gt_set(be, &x, xin);
    gt_set(be, &b, bin);
    CHECK(be->ops->upload_convert(be, w.t.data, k->q, wq, k->q, wn) == LISA_OK, "%s",
          lisa_error_get());
    if (r) {
        float *z = calloc((size_t)((k->M + r) * k->N), sizeof *z);
        gt_set(be, &o, z);
        free(z);
    }
    lisa_tensor xv = lisa_tensor_rows(&x.t, r, k->M), wv = lisa_tensor_rows(&w.t, r, k->N),
                ov = lisa_tensor_rows(&o.t, r, k->M);
    const lisa_tensor *bias = k->bias ? &b.t : NULL;
    if (k->graph && lisa_backend_graphs_enabled(be)) {
        void *g = NULL;
        CHECK(be->ops->graph_begin(be) == LISA_OK, "%s", lisa_error_get());
        CHECK(be->ops->matmul(be, &ov, &xv, &wv, bias) == LISA_OK, "%s", lisa_error_get());
        CHECK(be->ops->graph_end(be, &g) == LISA_OK, "%s", lisa_error_get());
        if (g) {
            CHECK(be->ops->graph_launch(be, g) == LISA_OK, "%s", lisa_error_get());
            be->ops->graph_free(be, g);
        }
    } else {
        CHECK(be->ops->matmul(be, &ov, &xv, &wv, bias) == LISA_OK, "%s", lisa_error_get());
    }
    int ok = gt_get(be, &o, out);
    gt_free(be, &x), gt_free(be, &w), gt_free(be, &o), gt_free(be, &b);
    return ok;
}

/* max |a - b| / max |b|: the error relative to the output's scale */
static double max_rel(const float *a, const float *b, size_t n) {
    double e = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) != isnan(b[i])) return INFINITY;
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > e) e = d;
        if (fabs((double)b[i]) > s) s = fabs((double)b[i]);
    }
    return s > 0 ? e / s : e;
}

/* Tolerances of the quantized cases. Both backends dequantize exactly in
 * fp32, so in F32 only the summation order differs: max_rel, measured on
 * the emulator at most 4e-7 over the cases below and 1.9e-6 at K 131104.
 * F16 / BF16: NMSE, the "matmul" cases' thresholds; measured: GEMV (one
 * output rounding) f16 7e-9, bf16 0; tiles, which also round each
 * dequantized weight to the dtype, f16 2e-7, bf16 1.4e-5. */
#define QTOL_F32 1e-5
static const double k_qtol[3] = {QTOL_F32, 2e-6, 1e-4};

/* Checks one case on gpu against the CPU in the first ndt activation dtypes
 * of F32, F16, BF16. */
static void check_qcase(const qcase *k, lisa_backend *cpu, lisa_backend *gpu, const char *tag,
                        int ndt) {
    static const lisa_dtype dts[] = {LISA_DTYPE_F32, LISA_DTYPE_F16, LISA_DTYPE_BF16};
    size_t wn;
    void *wq = qweights(k, &wn);
    size_t on = (size_t)((k->M + k->rows) * k->N);
    for (int di = 0; di < ndt; di++) {
        lisa_dtype dt = dts[di];
        float *xin = rand_vec((size_t)((k->M + k->rows) * k->K), 1.0f, dt);
        float *bin = rand_vec((size_t)k->N, 0.5f, dt);
        float *ref = calloc(on, sizeof *ref), *got = calloc(on, sizeof *got);
        CHECK(run_qmatmul(k, cpu, dt, xin, wq, wn, bin, ref), "%s: cpu wrote outside its output",
              tag);
        CHECK(run_qmatmul(k, gpu, dt, xin, wq, wn, bin, got), "%s: cuda wrote outside its output",
              tag);
        if (dt != LISA_DTYPE_F32) /* the CPU computes in fp32; CUDA rounds its output to dt */
            for (size_t i = 0; i < on; i++) ref[i] = round_to(ref[i], dt);
        double e = nmse(got, ref, on), mr = max_rel(got, ref, on);
        double err = dt == LISA_DTYPE_F32 ? mr : e, tol = k_qtol[di];
        CHECK(err <= tol, "%s (%lld,%lld,%lld) %s%s%s%s: %s %.3g > %.3g", lisa_dtype_name(k->q),
              (long long)k->M, (long long)k->N, (long long)k->K, lisa_dtype_name(dt),
              k->bias ? " bias" : "", k->rows ? " rows" : "", tag,
              dt == LISA_DTYPE_F32 ? "max_rel" : "nmse", err, tol);
        printf("matmul_%-5s (%4lld,%4lld,%5lld) %-4s%s%s%s nmse %.3g max_rel %.3g (tol %s %.1g) %s\n",
               !strcmp(lisa_dtype_name(k->q), "Q8_0") ? "q8_0" : "q4_0", (long long)k->M,
               (long long)k->N, (long long)k->K, lisa_dtype_name(dt), k->bias ? " bias" : "",
               k->rows ? " rows" : "", tag, e, mr, dt == LISA_DTYPE_F32 ? "max_rel" : "nmse", tol,
               err <= tol ? "ok" : "FAIL");
        free(xin), free(bin), free(ref), free(got);
    }
    free(wq);
}

/* upload_convert copies a block type only as itself: to or from any other
 * dtype it refuses with LISA_ERR_UNSUPPORTED. */
static void check_quant_upload(lisa_backend *gpu) {
    static const lisa_dtype qs[] = {LISA_DTYPE_Q8_0, LISA_DTYPE_Q4_0};
    static const lisa_dtype others[] = {LISA_DTYPE_F32, LISA_DTYPE_F16, LISA_DTYPE_BF16,
                                        LISA_DTYPE_Q8_0, LISA_DTYPE_Q4_0};
    void *dev = NULL, *host = calloc(64, sizeof(float));
    CHECK(gpu->ops->buffer_alloc(gpu, 64 * sizeof(float), &dev) == LISA_OK, "%s", lisa_error_get());
    for (int qi = 0; qi < 2; qi++)
        for (int oi = 0; oi < 5; oi++) {
            if (others[oi] == qs[qi]) continue;
            lisa_status a = gpu->ops->upload_convert(gpu, dev, qs[qi], host, others[oi], 32);
            lisa_status b = gpu->ops->upload_convert(gpu, dev, others[oi], host, qs[qi], 32);
            CHECK(a == LISA_ERR_UNSUPPORTED && b == LISA_ERR_UNSUPPORTED,
                  "cuda upload %s <-> %s: statuses %d, %d (%s)", lisa_dtype_name(qs[qi]),
                  lisa_dtype_name(others[oi]), (int)a, (int)b, lisa_error_get());
        }
    gpu->ops->buffer_free(gpu, dev);
    free(host);
}

/* The dequantization scratch: fp32 tiles of 64 rows of K 131104 need more
 * than the 32 MB reserved at init, so the matmul fails with LISA_ERR_ARG
 * naming matmul_k; lisa_backend_reserve makes room for exactly one 64-row
 * tile, and N = 65 then runs as two tiles (64 rows and 1). */
static void check_quant_reserve(lisa_backend *cpu, lisa_backend *gpu) {
    qcase k = {LISA_DTYPE_Q8_0, 9, 65, 131104, 1, 0, 0};
    size_t wn;
    void *wq = qweights(&k, &wn);
    int64_t sx[2] = {k.M, k.K}, sw[2] = {k.N, k.K}, so[2] = {k.M, k.N};
    lisa_tensor x, w, o;
    CHECK(lisa_backend_tensor_alloc(gpu, &x, LISA_DTYPE_F32, 2, sx) == LISA_OK, "x");
    CHECK(lisa_backend_tensor_alloc(gpu, &w, k.q, 2, sw) == LISA_OK, "w");
    CHECK(lisa_backend_tensor_alloc(gpu, &o, LISA_DTYPE_F32, 2, so) == LISA_OK, "out");
    CHECK(gpu->ops->upload_convert(gpu, w.data, k.q, wq, k.q, wn) == LISA_OK, "%s", lisa_error_get());
    lisa_status st = gpu->ops->matmul(gpu, &o, &x, &w, NULL);
    CHECK(st == LISA_ERR_ARG && strstr(lisa_error_get(), "matmul_k"),
          "quantized matmul beyond the reservation: status %d, %s", (int)st, lisa_error_get());
    lisa_backend_reserve_req r;
    memset(&r, 0, sizeof r);
    r.matmul_k = k.K;
    CHECK(lisa_backend_reserve(gpu, &r) == LISA_OK, "reserve: %s", lisa_error_get());
    lisa_backend_tensor_free(gpu, &x), lisa_backend_tensor_free(gpu, &w);
    lisa_backend_tensor_free(gpu, &o);
    free(wq);
    check_qcase(&k, cpu, gpu, " two tiles", 1);
}

/* The quantized cases: every M of {1, 2, 5, 8, 9, 17, 64} (GEMV up to 8,
 * tiles beyond) with every K of {32, 96, 256, 2048} (K 2048: two GEMV steps
 * of 1024 columns) for both block types, N cycling through 37, 64, 6, 17
 * (odd and even; full, partial and single blocks of 8 GEMV warps) with a
 * bias on the first two, two in three as row views; then the tiled path
 * for small M (a backend without GEMV), graphs of both paths, the upload
 * refusals, and the scratch reservation with a weight in two tiles. */
static void check_quant(lisa_backend *cpu, lisa_backend *gpu) {
    static const int64_t Ms[] = {1, 2, 5, 8, 9, 17, 64}, Ks[] = {32, 96, 256, 2048},
                         Ns[] = {37, 64, 6, 17};
    static const lisa_dtype qs[] = {LISA_DTYPE_Q8_0, LISA_DTYPE_Q4_0};
    for (int qi = 0; qi < 2; qi++) {
        int i = 0;
        for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++)
            for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++, i++) {
                qcase k = {qs[qi], Ms[mi], Ns[(i + qi) % 4], Ks[ki], (i + qi) % 4 < 2, i % 3 != 0, 0};
                check_qcase(&k, cpu, gpu, "", 3);
            }
    }
    lisa_backend_params p = lisa_backend_params_default(LISA_BACKEND_CUDA, 0, 0);
    p.no_gemv = 1;
    lisa_backend *tiled = NULL;
    CHECK(lisa_backend_init_params(&tiled, &p) == LISA_OK, "cuda without gemv: %s", lisa_error_get());
    if (tiled) {
        qcase a = {LISA_DTYPE_Q8_0, 1, 37, 96, 1, 1, 0}, b = {LISA_DTYPE_Q4_0, 8, 64, 256, 0, 1, 0};
        check_qcase(&a, cpu, tiled, " no_gemv", 3);
        check_qcase(&b, cpu, tiled, " no_gemv", 3);
        lisa_backend_free(tiled);
    }
    qcase g1 = {LISA_DTYPE_Q8_0, 1, 37, 256, 1, 1, 1}, g2 = {LISA_DTYPE_Q4_0, 17, 64, 96, 1, 1, 1};
    check_qcase(&g1, cpu, gpu, " graph", 3);
    check_qcase(&g2, cpu, gpu, " graph", 3);
    check_quant_upload(gpu);
    check_quant_reserve(cpu, gpu);
}

/* Builds case inputs rounded to dt. */
static void case_inputs(op_case *k, lisa_dtype dt) {
    int64_t a = k->a, b = k->b, c = k->c;
    for (int i = 0; i < 4; i++) k->in[i] = NULL;
    if (!strcmp(k->op, "matmul") || !strcmp(k->op, "matmul_rows")) {
        int64_t r = !strcmp(k->op, "matmul_rows");
        k->in[0] = rand_vec((size_t)((a + r) * c), 1.0f, dt);
        k->in[1] = rand_vec((size_t)((b + r) * c), 0.5f, dt);
        k->in[2] = rand_vec((size_t)b, 0.5f, dt);
        k->in[3] = (b % 2) ? k->in[2] : NULL; /* odd N: with bias */
        k->out_n = (size_t)((a + r) * b);
    } else if (!strcmp(k->op, "embedding")) {
        k->in[0] = rand_vec((size_t)(b * c), 1.0f, dt);
        k->in[1] = malloc((size_t)a * sizeof(float));
        for (int64_t i = 0; i < a; i++) k->in[1][i] = (float)((i * 7 + 3) % b);
        k->out_n = (size_t)(a * c);
    } else if (!strcmp(k->op, "rmsnorm") || !strcmp(k->op, "add_rmsnorm")) {
        k->in[0] = rand_vec((size_t)(a * c), 2.0f, dt);
        k->in[1] = rand_vec((size_t)(a * c), 1.0f, dt);
        k->in[2] = rand_vec((size_t)c, 1.0f, dt);
        k->out_n = (size_t)(2 * a * c);
    } else if (!strcmp(k->op, "rope")) {
        k->in[0] = rand_vec((size_t)(a * b * c), 1.0f, dt);
        k->in[1] = malloc((size_t)a * sizeof(float));
        for (int64_t i = 0; i < a; i++) k->in[1][i] = (float)((i * 37) % 2000);
        k->out_n = (size_t)(a * b * c);
    } else if (!strcmp(k->op, "attention") || !strcmp(k->op, "attention_prefill")) {
        k->in[0] = rand_vec((size_t)(a * b * c), 1.0f, dt);
        k->in[1] = rand_vec((size_t)(a * (b / 2) * c), 1.0f, dt);
        k->in[2] = rand_vec((size_t)(a * (b / 2) * c), 1.0f, dt);
        k->out_n = (size_t)(a * b * c);
    } else if (k->run == run_vrow) {
        k->in[0] = rand_vec((size_t)(a * c), 3.0f, dt);
        k->in[1] = rand_vec((size_t)c, 1.0f, dt);
        k->in[2] = rand_vec((size_t)c, 1.0f, dt);
        k->out_n = (size_t)(a * c);
    } else if (k->run == run_attn_full) {
        int64_t S = 0;
        while ((S + 1) * (S + 1) <= a) S++;
        for (int i = 0; i < 3; i++)
            k->in[i] = rand_vec((size_t)(2 * (i > 0 && b == 2 ? a + 23 : a) * 2 * c), 1.0f, dt);
        free(k->in[3]);
        k->in[3] = rand_vec((size_t)(2 * (2 * S - 1) * c), 0.5f, dt);
        k->out_n = (size_t)(2 * a * 2 * c);
    } else if (k->run == run_image) {
        k->in[0] = rand_vec((size_t)(a * b * c), 1.0f, dt);
        k->in[1] = rand_vec((size_t)(c * 5 * 4), 0.5f, dt);
        k->in[2] = rand_vec(5, 0.5f, dt);
        size_t nw = (size_t)(((a + 3) / 4) * ((b + 3) / 4));
        size_t m1 = (size_t)(a * b * c * 16), m2 = nw * 16 * (size_t)c + (size_t)(a * b * c);
        size_t m3 = (size_t)((2 * a + 1) * (b + 3) * c), m4 = (size_t)(4 * a * b * 5);
        k->out_n = m1 > m2 ? m1 : m2;
        if (m3 > k->out_n) k->out_n = m3;
        if (m4 > k->out_n) k->out_n = m4;
    } else if (k->run == run_seam) {
        k->in[0] = rand_vec((size_t)(a * c), 1.0f, dt);
        k->out_n = (size_t)((a + 2) * c + a * c);
    } else {
        float scale = !strcmp(k->op, "softmax") ? 8.0f : 3.0f;
        k->in[0] = rand_vec((size_t)(a * c), scale, dt);
        k->in[1] = rand_vec((size_t)(a * c), 1.0f, dt);
        if (!strcmp(k->op, "argmax") && a > 1 && c > 5) { /* a tie: lowest index wins */
            k->in[0][c + 5] = 100.0f;
            k->in[0][c + 2] = 100.0f;
        }
        k->in[2] = malloc((size_t)b * sizeof(float));
        for (int64_t i = 0; i < b; i++) k->in[2][i] = (float)((i * 5 + 1) % a);
        k->out_n = (size_t)(2 * (a > b ? a : b) * c);
    }
}

static void case_free(op_case *k) {
    for (int i = 0; i < 3; i++) free(k->in[i]);
    if (k->run == run_attn_full) free(k->in[3]);
}

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    lisa_backend *cpu = NULL, *gpu = NULL;
    CHECK(lisa_backend_cpu_init(&cpu, 2) == LISA_OK, "cpu backend");
    char skip_reason[256] = "";
    if (lisa_backend_init(&gpu, LISA_BACKEND_CUDA, 0, 0) != LISA_OK) {
        snprintf(skip_reason, sizeof skip_reason, "%s", lisa_error_get());
        gpu = NULL;
    }
    const char *req = getenv("LISA_REQUIRE_CUDA");
    if (!gpu && req && *req && strcmp(req, "0"))
        CHECK(0, "LISA_REQUIRE_CUDA is set but CUDA is unavailable: %s", skip_reason);

    op_case cases[] = {
        {"matmul", 1, 19, 37, run_matmul, 0, {0}},   {"matmul", 3, 64, 128, run_matmul, 0, {0}},
        {"matmul", 8, 33, 96, run_matmul, 0, {0}},   {"matmul", 37, 130, 200, run_matmul, 0, {0}},
        {"matmul", 1, 77, 512, run_matmul, 0, {0}},  {"matmul", 3, 40, 264, run_matmul, 0, {0}},
        {"matmul", 4, 9, 2056, run_matmul, 0, {0}},
        {"matmul_rows", 5, 6, 12, run_matmul, 0, {0}}, {"matmul_rows", 300, 1, 32, run_matmul, 0, {0}},
        {"embedding", 5, 50, 37, run_embedding, 0, {0}},
        {"rmsnorm", 1, 0, 37, run_norm, 0, {0}},     {"rmsnorm", 7, 0, 1000, run_norm, 0, {0}},
        {"add_rmsnorm", 5, 0, 333, run_norm, 0, {0}},
        {"rope", 6, 3, 8, run_rope, 0, {0}},         {"rope", 5, 4, 128, run_rope, 0, {0}},
        {"attention", 9, 4, 8, run_attention, 0, {0}},
        {"attention", 40, 8, 128, run_attention, 0, {0}},
        {"attention", 5, 2, 64, run_attention, 0, {0}},
        {"attention", 130, 4, 8, run_attention, 0, {0}},
        {"attention_prefill", 100, 4, 128, run_attention, 0, {0}},
        {"attention_prefill", 77, 2, 64, run_attention, 0, {0}},
        {"attention_prefill", 48, 2, 8, run_attention, 0, {0}},
        {"swiglu", 3, 0, 77, run_rowop, 0, {0}},     {"add", 4, 0, 129, run_rowop, 0, {0}},
        {"softmax", 3, 0, 1001, run_rowop, 0, {0}},  {"argmax", 4, 0, 32003, run_rowop, 0, {0}},
        {"get_rows", 6, 3, 37, run_rowop, 0, {0}},   {"convert", 3, 0, 45, run_rowop, 0, {0}},
        {"layernorm", 7, 0, 333, run_vrow, 0, {0}},
        {"activation", 5, LISA_ACT_GELU, 100, run_vrow, 0, {0}},
        {"activation", 5, LISA_ACT_QUICK_GELU, 100, run_vrow, 0, {0}},
        {"activation", 5, LISA_ACT_RELU, 100, run_vrow, 0, {0}},
        {"activation", 5, LISA_ACT_SILU, 100, run_vrow, 0, {0}},
        {"add_bias", 3, 0, 65, run_vrow, 0, {0}},
        {"attention_full", 37, 0, 16, run_attn_full, 0, {0}},
        {"attention_full", 49, 1, 80, run_attn_full, 0, {0}},
        {"attention_full", 196, 1, 64, run_attn_full, 0, {0}},
        {"attention_full", 21, 2, 32, run_attn_full, 0, {0}},
        {"attention_full", 40, 0, 128, run_attn_full, 0, {0}},
        {"im2col", 9, 7, 3, run_image, 0, {0}},      {"im2col_cf", 12, 8, 3, run_image, 0, {0}},
        {"conv_t2x2", 5, 6, 7, run_image, 0, {0}},   {"windows", 9, 6, 3, run_image, 0, {0}},
        {"bilinear", 9, 8, 2, run_image, 0, {0}},    {"copy_cols", 3, 5, 12, run_image, 0, {0}},
        {"transpose", 3, 5, 7, run_image, 0, {0}},
        {"copy_backend", 5, 0, 33, run_seam, 0, {0}}, {"events", 4, 0, 17, run_seam, 0, {0}},
        {"host_alloc", 3, 0, 129, run_seam, 0, {0}},
    };
    const lisa_dtype dts[] = {LISA_DTYPE_F32, LISA_DTYPE_F16, LISA_DTYPE_BF16};
    int skipped = 0;
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        for (size_t di = 0; di < 3; di++) {
            op_case *k = &cases[ci];
            lisa_dtype dt = dts[di];
            case_inputs(k, dt);
            float *ref = calloc(k->out_n, sizeof *ref), *got = calloc(k->out_n, sizeof *got);
            int ok = k->run(k, cpu, dt, ref);
            CHECK(ok, "%s (%lld,%lld,%lld) %s: cpu wrote outside its output", k->op,
                  (long long)k->a, (long long)k->b, (long long)k->c, lisa_dtype_name(dt));
            if (gpu) {
                ok = k->run(k, gpu, dt, got);
                CHECK(ok, "%s %s: cuda wrote outside its output", k->op, lisa_dtype_name(dt));
                if (!strcmp(k->op, "rmsnorm") || !strcmp(k->op, "add_rmsnorm")) {
                    /* the CPU computes in fp32; CUDA rounds its outputs to dt */
                    for (size_t i = 0; i < k->out_n; i++) ref[i] = round_to(ref[i], dt);
                }
                double e = nmse(got, ref, k->out_n), tol = tol_of(k->op, dt);
                CHECK(e <= tol, "%s (%lld,%lld,%lld) %s: nmse %.3g > %.3g", k->op, (long long)k->a,
                      (long long)k->b, (long long)k->c, lisa_dtype_name(dt), e, tol);
                printf("%-12s (%4lld,%4lld,%5lld) %-4s nmse %.3g (tol %.1g) %s\n", k->op,
                       (long long)k->a, (long long)k->b, (long long)k->c, lisa_dtype_name(dt), e,
                       tol, e <= tol ? "ok" : "FAIL");
            } else {
                skipped++;
            }
            free(ref);
            free(got);
            case_free(k);
        }
    }
    if (gpu) check_quant(cpu, gpu);
    check_reserve();
    if (!gpu) printf("cuda: SKIPPED %d cases (%s)\n", skipped, skip_reason);
    lisa_backend_free(gpu);
    lisa_backend_free(cpu);
    return test_finish("test-backend-ops");
}
