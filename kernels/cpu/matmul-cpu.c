/* matmul-cpu.c: the driver of the CPU backend's own matmul (see
 * matmul-cpu.h), the portable kernels every other instruction set must
 * agree with to fp32 rounding, and the run-time choice between them.
 * Deliberately not here: threads (the op in backend-cpu.c splits panels
 * over them) and instruction-set intrinsics (matmul-avx512.c,
 * matmul-avx2.c). */
#include "matmul-cpu.h"

#include <stdlib.h>
#include <string.h>

#include "cpu-internal.h"

#define GEN_MR 2
#define GEN_NR 4
#define GEN_VL 8

static void gen_panel_fill(float *panel, int64_t kcp, const lisa_tensor *w, int64_t n0, int nv,
                           int64_t k0, int64_t kc) {
    int64_t K = w->shape[1];
    size_t row = lisa_dtype_row_bytes(w->dtype, K), off = lisa_dtype_row_bytes(w->dtype, k0);
    for (int j = 0; j < GEN_NR; j++) {
        float *p = panel + j * kcp;
        if (j < nv) {
            lisa_dtype_to_f32(p, (const char *)w->data + (size_t)(n0 + j) * row + off, w->dtype,
                              (size_t)kc);
            memset(p + kc, 0, (size_t)(kcp - kc) * sizeof *p);
        } else {
            memset(p, 0, (size_t)kcp * sizeof *p);
        }
    }
}

/* The fixed reduction order of GEN_VL lane sums. */
static float gen_hsum(const float *a) {
    return ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
}

static void gen_block(const float *x, int64_t ldx, int mr, const float *panel, int64_t kcp,
                      int64_t kc, float *acc, int first, int last, float *out, int64_t ldo,
                      int nv) {
    float a[GEN_MR][GEN_NR][GEN_VL];
    if (first) memset(a, 0, sizeof a);
    else memcpy(a, acc, (size_t)mr * sizeof a[0]);
    int64_t kv = kc / GEN_VL * GEN_VL;
    for (int i = 0; i < mr; i++) {
        const float *xr = x + i * ldx;
        for (int64_t k = 0; k < kv; k += GEN_VL)
            for (int j = 0; j < GEN_NR; j++)
                for (int l = 0; l < GEN_VL; l++) a[i][j][l] += xr[k + l] * panel[j * kcp + k + l];
        /* the tail: lanes past kc see x = 0 and a zeroed panel */
        for (int64_t k = kv; k < kc; k++)
            for (int j = 0; j < GEN_NR; j++) a[i][j][k - kv] += xr[k] * panel[j * kcp + k];
    }
    if (!last) {
        memcpy(acc, a, (size_t)mr * sizeof a[0]);
        return;
    }
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nv; j++) out[i * ldo + j] = gen_hsum(a[i][j]);
}

void cpu_mm_quantize_row(cpu_xq_block *dst, const float *x, int64_t K) {
    for (int64_t b = 0; b < K / LISA_QK; b++) {
        lisa_block_q8_0 q;
        lisa_quantize_q8_0(&q, x + b * LISA_QK, LISA_QK);
        int32_t s = 0;
        for (int i = 0; i < LISA_QK; i++) s += q.qs[i];
        memcpy(dst[b].qs, q.qs, sizeof q.qs);
        dst[b].d = lisa_f16_to_f32(q.d);
        dst[b].sum = s;
    }
}

static const cpu_mm_isa k_generic = {"generic", GEN_MR, GEN_NR, GEN_VL, CPU_MM_KC,
                                     gen_panel_fill, gen_block, NULL, cpu_qgroup_c,
                                     cpu_mm_quantize_row, 0, 0};

void cpu_mm_qrun(const cpu_mm_isa *isa, float *out, const cpu_xq_block *xq, int64_t M, int64_t K,
                 const lisa_tensor *w, int64_t g0, int64_t g1) {
    int64_t N = w->shape[0], nb = K / LISA_QK;
    size_t gbytes = (size_t)nb * LISA_PACK_ROWS * lisa_dtype_size(w->dtype);
    for (int64_t g = g0; g < g1; g++) {
        const uint8_t *wg = (const uint8_t *)w->data + (size_t)g * gbytes;
        for (int64_t i = 0; i < M; i += CPU_QMR) {
            int mr = (int)(M - i < CPU_QMR ? M - i : CPU_QMR);
            isa->qgroup(xq + (size_t)i * (size_t)nb, nb, mr, wg, w->dtype,
                        out + i * N + g * LISA_PACK_ROWS, N);
        }
    }
}

const cpu_mm_isa *cpu_mm_isa_get(const char *want) {
    const cpu_mm_isa *best = cpu_mm_isa_avx512();
    if (!best) best = cpu_mm_isa_avx2();
    if (!best) best = &k_generic;
    if (!want) return best;
    if (!strcmp(want, "avx512") && cpu_mm_isa_avx512()) return cpu_mm_isa_avx512();
    if (!strcmp(want, "avx2") && cpu_mm_isa_avx2()) return cpu_mm_isa_avx2();
    if (!strcmp(want, "generic")) return &k_generic;
    return best;
}

/* The panel's floats for chunks of kc columns: nr rows of kc rounded up to
 * the widest vector (16 lanes). */
static size_t mm_panel_floats(const cpu_mm_isa *isa, int64_t kc) {
    return cpu_r16((size_t)isa->nr * (((size_t)kc + 15) / 16 * 16));
}

size_t cpu_mm_scratch_need(const cpu_mm_isa *isa, int64_t kc) {
    size_t acc = (size_t)CPU_MM_MB * (size_t)isa->nr * (size_t)isa->vl;
    return mm_panel_floats(isa, kc) + cpu_r16(acc);
}

void cpu_mm_run(const cpu_mm_isa *isa, float *out, const float *x, int64_t M, int64_t K,
                const lisa_tensor *w, int64_t p0, int64_t p1, int64_t KC, float *scratch) {
    int64_t N = w->shape[0];
    float *panel = scratch, *acc = scratch + mm_panel_floats(isa, KC);
    if (isa->direct && (M <= isa->mr || (size_t)(M * K) * sizeof *x <= isa->direct_x_bytes)) {
        int64_t tile = isa->direct_tile > 1 ? isa->direct_tile : 1;
        for (int64_t t0 = p0; t0 < p1; t0 += tile) {
            int64_t t1 = p1 - t0 < tile ? p1 : t0 + tile;
            for (int64_t i = 0; i < M; i += isa->mr) {
                int mr = (int)(M - i < isa->mr ? M - i : isa->mr);
                for (int64_t p = t0; p < t1; p++) {
                    int64_t n0 = p * isa->nr;
                    int nv = (int)(N - n0 < isa->nr ? N - n0 : isa->nr);
                    isa->direct(x + i * K, K, mr, w, n0, nv, out + i * N + n0, N);
                }
            }
        }
        return;
    }
    for (int64_t p = p0; p < p1; p++) {
        int64_t n0 = p * isa->nr;
        int nv = (int)(N - n0 < isa->nr ? N - n0 : isa->nr);
        for (int64_t m0 = 0; m0 < M; m0 += CPU_MM_MB) {
            int64_t mb = M - m0 < CPU_MM_MB ? M - m0 : CPU_MM_MB;
            for (int64_t k0 = 0; k0 < K; k0 += KC) {
                int64_t kc = K - k0 < KC ? K - k0 : KC;
                int64_t kcp = (kc + isa->vl - 1) / isa->vl * isa->vl;
                /* one chunk covering K is widened once per panel */
                if (m0 == 0 || K > KC) isa->panel_fill(panel, kcp, w, n0, nv, k0, kc);
                int first = k0 == 0, last = k0 + kc == K;
                for (int64_t i = 0; i < mb; i += isa->mr) {
                    int mr = (int)(mb - i < isa->mr ? mb - i : isa->mr);
                    int64_t m = m0 + i;
                    isa->block(x + m * K + k0, K, mr, panel, kcp, kc,
                               acc + (size_t)i * (size_t)(isa->nr * isa->vl), first, last,
                               out + m * N + n0, N, nv);
                }
            }
        }
    }
}
