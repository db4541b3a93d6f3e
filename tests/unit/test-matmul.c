/* test-matmul.c: the CPU backend's own matmul kernels (kernels/cpu/
 * matmul-cpu.h) for every weight dtype and every instruction set this CPU
 * runs (avx512, avx2, generic), on shapes that hit every edge of the
 * blocking: M around the row block and the 128-row pass, K below, at and
 * above the panel chunk (512 columns for avx2 and generic, 1024 for avx512
 * and the bf16 dot path) and (for float weights) not a multiple of the
 * vector width, N around the panel width.
 *
 * What is checked, per case:
 *  - against out = x @ dequant(w)^T summed in double, with dequant the
 *    exact widening lisa_dtype_to_f32 (whose Q8_0/Q4_0 values test-quant
 *    holds to gguf's): per output |diff| / sum_k |x_k w_k| <= TOL (the
 *    scale of fp32 summation error, well defined where the sum cancels).
 *    Measured worst (Xeon with AVX-512, GCC 12, all three sets): 1.25e-7.
 *  - batch invariance, bit for bit: rows of the M-row call (all of them up
 *    to M = 8; the first, middle and last beyond) equal the same
 *    row run alone (M = 1), and the rows [1, M) run as their own call,
 *    and the same call on 1 thread instead of 2 (the property the engine's
 *    continuous batching and the cluster's equality with one process rely
 *    on; see backend-cpu.c).
 *  - bias is added after the product (the same bits as product + bias).
 *  - the bf16 dot-product path (cpu_bf16_dot, where the CPU has
 *    AVX512-BF16) on bf16 weights, the same way, against x rounded to bf16.
 * The op-level fixtures from torch are in test-ops.c; this file adds the
 * dtypes and shapes torch cannot give (block types) and the invariance. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cpu/matmul-cpu.h"
#include "testutil.h"

#define TOL 1e-6

static uint64_t g_rng = 0x243F6A8885A308D3ULL;

static float frand(void) {
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return (float)((g_rng * 0x2545F4914F6CDD1DULL) >> 40) / (float)(1 << 24) * 2.0f - 1.0f;
}

/* w (N, K) in dtype dt made from random fp32 values (quantized or
 * narrowed); wf gets its exact fp32 values. */
static void *make_weight(lisa_dtype dt, int64_t N, int64_t K, float *wf) {
    lisa_dtype base = lisa_dtype_unpacked_of(dt);
    for (int64_t i = 0; i < N * K; i++) wf[i] = frand() * 0.5f;
    size_t bytes = lisa_dtype_row_bytes(base, N * K);
    void *w = malloc(bytes ? bytes : 1);
    lisa_dtype_from_f32(w, base, wf, (size_t)(N * K));
    lisa_dtype_to_f32(wf, w, base, (size_t)(N * K));
    if (base != dt) { /* packed: the same blocks, reordered */
        void *p = malloc(bytes ? bytes : 1), *back = malloc(bytes ? bytes : 1);
        lisa_dtype_pack_rows(p, w, base, N, K);
        lisa_dtype_unpack_rows(back, p, dt, N, K);
        CHECK(!memcmp(back, w, bytes), "%s: unpack(pack(w)) != w", lisa_dtype_name(dt));
        free(back);
        free(w);
        w = p;
    }
    return w;
}

/* Packed weights see x rounded to Q8_0 per block (matmul-cpu.h): x gets
 * those values, so the double reference below is of what is computed. */
static void round_x_q8(float *x, int64_t M, int64_t K) {
    lisa_block_q8_0 b;
    for (int64_t i = 0; i < M * K; i += LISA_QK) {
        lisa_quantize_q8_0(&b, x + i, LISA_QK);
        for (int j = 0; j < LISA_QK; j++) x[i + j] = lisa_f16_to_f32(b.d) * (float)b.qs[j];
    }
}

static lisa_backend *g_generic; /* packed results must equal its bits */

static lisa_status run(lisa_backend *be, float *out, const float *x, int64_t M, int64_t K,
                       void *w, lisa_dtype dt, int64_t N, const float *bias) {
    lisa_tensor tx = lisa_tensor_2d((void *)x, LISA_DTYPE_F32, M, K);
    lisa_tensor tw = lisa_tensor_2d(w, dt, N, K);
    lisa_tensor to = lisa_tensor_2d(out, LISA_DTYPE_F32, M, N);
    lisa_tensor tb = lisa_tensor_1d((void *)bias, LISA_DTYPE_F32, N);
    return be->ops->matmul(be, &to, &tx, &tw, bias ? &tb : NULL);
}

static double g_worst = 0;

static void one_case(lisa_backend *be, lisa_backend *be1, const char *isa, lisa_dtype dt,
                     int64_t M, int64_t K, int64_t N) {
    float *x = malloc((size_t)(M * K) * sizeof *x), *wf = malloc((size_t)(N * K) * sizeof *wf);
    float *out = malloc((size_t)(M * N) * sizeof *out), *row = malloc((size_t)N * sizeof *row);
    float *rest = malloc((size_t)(M * N) * sizeof *rest), *bias = malloc((size_t)N * sizeof *bias);
    float *ob = malloc((size_t)(M * N) * sizeof *ob);
    for (int64_t i = 0; i < M * K; i++) x[i] = frand();
    for (int64_t i = 0; i < N; i++) bias[i] = frand();
    void *w = make_weight(dt, N, K, wf);
    char tag[128];
    snprintf(tag, sizeof tag, "%s %s M=%lld K=%lld N=%lld", isa, lisa_dtype_name(dt),
             (long long)M, (long long)K, (long long)N);

    CHECK(run(be, out, x, M, K, w, dt, N, NULL) == LISA_OK, "%s: %s", tag, lisa_error_get());
    if (lisa_dtype_is_packed(dt)) {
        CHECK(run(g_generic, rest, x, M, K, w, dt, N, NULL) == LISA_OK, "%s", tag);
        CHECK(!memcmp(rest, out, (size_t)(M * N) * sizeof *rest),
              "%s: differs from the generic kernels' bits", tag);
        float *xr = malloc((size_t)(M * K) * sizeof *xr);
        memcpy(xr, x, (size_t)(M * K) * sizeof *xr);
        round_x_q8(xr, M, K);
        CHECK(run(be, rest, xr, M, K, w, dt, N, NULL) == LISA_OK, "%s", tag);
        CHECK(!memcmp(rest, out, (size_t)(M * N) * sizeof *rest),
              "%s: x already on the Q8_0 grid gives other bits", tag);
        memcpy(x, xr, (size_t)(M * K) * sizeof *xr);
        free(xr);
    }
    if (dt == LISA_DTYPE_BF16 && lisa_backend_cpu_bf16_dot(be)) {
        /* the bf16 dot path sees x rounded to bf16: so does the reference */
        float *xr = malloc((size_t)(M * K) * sizeof *xr);
        for (int64_t i = 0; i < M * K; i++) xr[i] = lisa_bf16_to_f32(lisa_f32_to_bf16(x[i]));
        CHECK(run(be, rest, xr, M, K, w, dt, N, NULL) == LISA_OK, "%s", tag);
        CHECK(!memcmp(rest, out, (size_t)(M * N) * sizeof *rest),
              "%s: x already on the bf16 grid gives other bits", tag);
        memcpy(x, xr, (size_t)(M * K) * sizeof *xr);
        free(xr);
    }
    double rel = 0;
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double r = 0, mag = 0;
            for (int64_t k = 0; k < K; k++) {
                double t = (double)x[m * K + k] * (double)wf[n * K + k];
                r += t;
                mag += fabs(t);
            }
            double e = mag > 0 ? fabs((double)out[m * N + n] - r) / mag : 0;
            if (e > rel) rel = e;
        }
    if (rel > g_worst) g_worst = rel;
    CHECK(rel <= TOL, "%s: max |diff| / sum |x w| = %.3g > %.1g", tag, rel, TOL);

    /* rows alone: all of a small call, the ends and the middle of a big one */
    int same = 1;
    for (int64_t m = 0; m < M && same; m = M <= 8 || m + 1 == M ? m + 1 : m < M / 2 ? M / 2 : M - 1) {
        CHECK(run(be, row, x + m * K, 1, K, w, dt, N, NULL) == LISA_OK, "%s", tag);
        same = !memcmp(row, out + m * N, (size_t)N * sizeof *row);
        CHECK(same, "%s: row %lld alone differs from the %lld-row call", tag, (long long)m,
              (long long)M);
    }
    if (M > 1) {
        CHECK(run(be, rest, x + K, M - 1, K, w, dt, N, NULL) == LISA_OK, "%s", tag);
        CHECK(!memcmp(rest, out + N, (size_t)((M - 1) * N) * sizeof *rest),
              "%s: rows [1, M) as their own call differ", tag);
    }
    CHECK(run(be1, rest, x, M, K, w, dt, N, NULL) == LISA_OK, "%s", tag);
    CHECK(!memcmp(rest, out, (size_t)(M * N) * sizeof *rest), "%s: 1 thread differs from 2", tag);
    CHECK(run(be, ob, x, M, K, w, dt, N, bias) == LISA_OK, "%s", tag);
    int bias_ok = 1;
    for (int64_t i = 0; i < M * N && bias_ok; i++) bias_ok = ob[i] == out[i] + bias[i % N];
    CHECK(bias_ok, "%s: bias is not added to the product", tag);
    free(x);
    free(wf);
    free(out);
    free(row);
    free(rest);
    free(bias);
    free(ob);
    free(w);
}

/* Each instruction set's activation quantizer against the portable one, bit
 * for bit (quants, scale, sum), on blocks that reach every branch of the
 * reference: random values; values whose x / d lands exactly on a half
 * (roundf's ties, away from zero, both signs); an all-zero block; NaNs and
 * infinities among finite values; a block so small that 1 / d overflows;
 * subnormals; a block of one value repeated. */
static void check_quantize_rows(void) {
    enum { NB = 12, K = NB * LISA_QK };
    float x[K];
    for (int i = 0; i < K; i++) x[i] = frand() * 8.0f;
    for (int j = 0; j < LISA_QK; j++) /* block 1: amax 127, so x / d = x; halves */
        x[LISA_QK + j] = j == 0 ? 127.0f : (float)((j % 2 ? 1 : -1) * (j * 4 % 127)) + 0.5f;
    for (int j = 0; j < LISA_QK; j++) x[2 * LISA_QK + j] = 0.0f;
    x[3 * LISA_QK + 3] = NAN;
    x[3 * LISA_QK + 9] = -NAN;
    x[4 * LISA_QK + 5] = INFINITY;
    x[4 * LISA_QK + 6] = NAN;
    x[5 * LISA_QK + 0] = -INFINITY;
    for (int j = 0; j < LISA_QK; j++) x[6 * LISA_QK + j] = frand() * 1e-40f;
    for (int j = 0; j < LISA_QK; j++) x[7 * LISA_QK + j] = (float)(j - 16) * 1e-38f;
    for (int j = 0; j < LISA_QK; j++) x[8 * LISA_QK + j] = -3.0f;
    for (int j = 0; j < LISA_QK; j++) /* block 9: halves at another scale */
        x[9 * LISA_QK + j] = j == 0 ? -254.0f : (float)((j % 3 ? -1 : 1) * (2 * j + 1));
    for (int j = 0; j < LISA_QK; j++) x[10 * LISA_QK + j] = (float)j * 0.1f - 1.55f;
    cpu_xq_block want[NB], got[NB];
    cpu_mm_quantize_row(want, x, K);
    static const char *names[] = {"avx512", "avx2", "generic"};
    for (int s = 0; s < 3; s++) {
        const cpu_mm_isa *isa = cpu_mm_isa_get(names[s]);
        if (strcmp(isa->name, names[s])) continue; /* the CPU lacks it */
        memset(got, 0x5a, sizeof got);
        isa->quantize_row(got, x, K);
        for (int b = 0; b < NB; b++)
            CHECK(!memcmp(got[b].qs, want[b].qs, sizeof want[b].qs) && got[b].sum == want[b].sum &&
                      !memcmp(&got[b].d, &want[b].d, sizeof want[b].d),
                  "%s quantize_row: block %d differs from cpu_mm_quantize_row (d %g vs %g, "
                  "sum %d vs %d)", names[s], b, got[b].d, want[b].d, got[b].sum, want[b].sum);
    }
}

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    /* the last pass: AVX-512 with the bf16 dot-product path */
    static const lisa_cpu_isa isas[] = {LISA_CPU_ISA_AVX512, LISA_CPU_ISA_AVX2,
                                        LISA_CPU_ISA_GENERIC, LISA_CPU_ISA_AVX512};
    static const lisa_dtype dts[] = {LISA_DTYPE_F32,  LISA_DTYPE_F16,     LISA_DTYPE_BF16,
                                     LISA_DTYPE_Q8_0, LISA_DTYPE_Q4_0,    LISA_DTYPE_Q8_0X16,
                                     LISA_DTYPE_Q4_0X16};
    static const int64_t Ms[] = {1, 2, 3, 5, 130};
    static const int64_t Ks[] = {32, 96, 512, 544, 1056};
    static const int64_t Kf[] = {7, 24, 40, 520, 1037}; /* float weights only */
    static const int64_t Ns[] = {1, 7, 13};
    static const int64_t Np[] = {16, 48}; /* packed: groups of 16 rows */
    const char *seen[4] = {NULL, NULL, NULL, NULL};
    lisa_backend_params pg = lisa_backend_params_default(LISA_BACKEND_CPU, 0, 1);
    pg.cpu_isa = LISA_CPU_ISA_GENERIC;
    CHECK(lisa_backend_init_params(&g_generic, &pg) == LISA_OK, "cpu init: %s", lisa_error_get());
    if (!g_generic) return test_finish("test-matmul");
    check_quantize_rows();
    for (int s = 0; s < 4; s++) {
        const int bf16dot = s == 3;
        lisa_backend_params p = lisa_backend_params_default(LISA_BACKEND_CPU, 0, 2);
        p.cpu_isa = isas[s];
        p.cpu_bf16_dot = bf16dot;
        lisa_backend *be = NULL, *be1 = NULL;
        CHECK(lisa_backend_init_params(&be, &p) == LISA_OK, "cpu init: %s", lisa_error_get());
        p.threads = 1;
        CHECK(lisa_backend_init_params(&be1, &p) == LISA_OK, "cpu init: %s", lisa_error_get());
        if (!be || !be1) return test_finish("test-matmul");
        const char *isa = bf16dot ? "avx512+bf16dot" : lisa_backend_cpu_isa_name(be);
        int dup = 0;
        for (int j = 0; j < s; j++) dup |= seen[j] && !strcmp(seen[j], isa);
        seen[s] = isa;
        if (bf16dot && !lisa_backend_cpu_bf16_dot(be)) {
            printf("bf16 dot-product path: not on this CPU (no AVX512-BF16)\n");
            dup = 1;
        }
        if (dup) { /* the CPU lacks this one: it fell back to a set already run */
            lisa_backend_free(be);
            lisa_backend_free(be1);
            continue;
        }
        printf("matmul kernels: %s\n", isa);
        for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++) {
            if (bf16dot && dts[d] != LISA_DTYPE_BF16) continue;
            int quant = lisa_dtype_is_quant(dts[d]) || lisa_dtype_is_packed(dts[d]);
            int packed = lisa_dtype_is_packed(dts[d]);
            const int64_t *ns = packed ? Np : Ns;
            size_t nn = packed ? sizeof Np / sizeof Np[0] : sizeof Ns / sizeof Ns[0];
            for (size_t m = 0; m < sizeof Ms / sizeof Ms[0]; m++)
                for (size_t n = 0; n < nn; n++) {
                    for (size_t k = 0; k < sizeof Ks / sizeof Ks[0]; k++)
                        one_case(be, be1, isa, dts[d], Ms[m], Ks[k], ns[n]);
                    for (size_t k = 0; !quant && k < sizeof Kf / sizeof Kf[0]; k++)
                        one_case(be, be1, isa, dts[d], Ms[m], Kf[k], ns[n]);
                }
        }
        /* one case the size of a LLaMA projection */
        one_case(be, be1, isa, LISA_DTYPE_BF16, 130, 2048, 64);
        /* activations over AVX-512's 2 MB (direct_x_bytes): the panels,
         * with their rows alone on the direct kernel (AVX2 has no panels:
         * these are its direct kernel in tiles, against rows alone) */
        for (size_t d = 0; !bf16dot && d < sizeof dts / sizeof dts[0]; d++) {
            int quant = lisa_dtype_is_quant(dts[d]) || lisa_dtype_is_packed(dts[d]);
            one_case(be, be1, isa, dts[d], 130, 4128, lisa_dtype_is_packed(dts[d]) ? 16 : 13);
            if (!quant) one_case(be, be1, isa, dts[d], 130, 4133, 7);
        }
        if (bf16dot) {
            lisa_backend_free(be);
            lisa_backend_free(be1);
            continue;
        }
        one_case(be, be1, isa, LISA_DTYPE_Q4_0, 3, 2048, 64);
        one_case(be, be1, isa, LISA_DTYPE_BF16, 3, 2048, 64);
        one_case(be, be1, isa, LISA_DTYPE_Q4_0X16, 3, 2048, 64);
        one_case(be, be1, isa, LISA_DTYPE_Q8_0X16, 9, 2048, 64);
        lisa_backend_free(be);
        lisa_backend_free(be1);
    }
    lisa_backend_free(g_generic);
    printf("worst |diff| / sum |x w|: %.3g (bound %.1g)\n", g_worst, TOL);
    return test_finish("test-matmul");
}
