/* matmul-avx512.c: the matmul kernels for AVX-512 (F, BW, VL) with FMA and
 * F16C, built with those -m flags and called only when the CPU has them
 * (cpu_mm_isa_get). Blocks of 4 activation rows x 6 weight rows keep 24
 * zmm accumulators; weight panels are widened from bf16, f16, Q8_0 or Q4_0
 * with vector conversions that are exact (see matmul-cpu.h). Deliberately
 * not here: anything that must agree bit for bit with other instruction
 * sets (only fp32 rounding separates them). */
#include "matmul-cpu.h"

#if defined(__x86_64__) && defined(LISA_CPU_AVX512)

#include <immintrin.h>
#include <string.h>

#define MR 4
#define NR 6
#define VL 16

static inline __m512 w16_bf16(const uint16_t *p) {
    __m512i u = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
}

static inline __m512 w16_f16(const uint16_t *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

/* 16 int8 quants times the block scale: d * q exactly as lisa_dtype_to_f32. */
static inline __m512 w16_q(__m128i q, __m512 d) {
    return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), d);
}

/* Widens n elements of one row of w, from element k0, into p (n a
 * multiple of LISA_QK for block types; float types convert their tail one
 * by one). */
static void row_widen(float *p, const lisa_tensor *w, int64_t row, int64_t k0, int64_t n) {
    int64_t K = w->shape[1];
    const char *base = (const char *)w->data + (size_t)row * lisa_dtype_row_bytes(w->dtype, K);
    int64_t k = 0;
    switch (w->dtype) {
    case LISA_DTYPE_F32:
        memcpy(p, (const float *)base + k0, (size_t)n * sizeof *p);
        return;
    case LISA_DTYPE_BF16: {
        const uint16_t *s = (const uint16_t *)base + k0;
        for (; k + VL <= n; k += VL) _mm512_storeu_ps(p + k, w16_bf16(s + k));
        for (; k < n; k++) p[k] = lisa_bf16_to_f32(s[k]);
        return;
    }
    case LISA_DTYPE_F16: {
        const uint16_t *s = (const uint16_t *)base + k0;
        for (; k + VL <= n; k += VL) _mm512_storeu_ps(p + k, w16_f16(s + k));
        for (; k < n; k++) p[k] = lisa_f16_to_f32(s[k]);
        return;
    }
    case LISA_DTYPE_Q8_0: {
        const lisa_block_q8_0 *b = (const lisa_block_q8_0 *)base + k0 / LISA_QK;
        for (; k < n; k += LISA_QK, b++) {
            __m512 d = _mm512_set1_ps(_cvtsh_ss(b->d));
            _mm512_storeu_ps(p + k, w16_q(_mm_loadu_si128((const __m128i *)b->qs), d));
            _mm512_storeu_ps(p + k + 16, w16_q(_mm_loadu_si128((const __m128i *)(b->qs + 16)), d));
        }
        return;
    }
    case LISA_DTYPE_Q4_0: {
        const lisa_block_q4_0 *b = (const lisa_block_q4_0 *)base + k0 / LISA_QK;
        const __m128i lo4 = _mm_set1_epi8(15), eight = _mm_set1_epi8(8);
        for (; k < n; k += LISA_QK, b++) {
            __m512 d = _mm512_set1_ps(_cvtsh_ss(b->d));
            __m128i v = _mm_loadu_si128((const __m128i *)b->qs);
            __m128i lo = _mm_sub_epi8(_mm_and_si128(v, lo4), eight);
            __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(v, 4), lo4), eight);
            _mm512_storeu_ps(p + k, w16_q(lo, d));
            _mm512_storeu_ps(p + k + 16, w16_q(hi, d));
        }
        return;
    }
    default: break;
    }
}

static void avx512_panel_fill(float *panel, int64_t kcp, const lisa_tensor *w, int64_t n0, int nv,
                              int64_t k0, int64_t kc) {
    for (int j = 0; j < NR; j++) {
        float *p = panel + j * kcp;
        if (j < nv) {
            row_widen(p, w, n0 + j, k0, kc);
            memset(p + kc, 0, (size_t)(kcp - kc) * sizeof *p);
        } else {
            memset(p, 0, (size_t)kcp * sizeof *p);
        }
    }
}

/* The block for a constant mr (inlined into one function per mr so the
 * accumulators live in registers). */
static inline __attribute__((always_inline)) void block_mr(
    const int mr, const float *x, int64_t ldx, const float *panel, int64_t kcp, int64_t kc,
    float *acc, int first, int last, float *out, int64_t ldo, int nv) {
    __m512 a[MR][NR];
#pragma GCC unroll 4
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 6
        for (int j = 0; j < NR; j++)
            a[i][j] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(acc + (i * NR + j) * VL);
    int64_t kv = kc / VL * VL;
    for (int64_t k = 0; k < kv; k += VL) {
        __m512 wv[NR];
#pragma GCC unroll 6
        for (int j = 0; j < NR; j++) wv[j] = _mm512_loadu_ps(panel + j * kcp + k);
#pragma GCC unroll 4
        for (int i = 0; i < mr; i++) {
            __m512 xv = _mm512_loadu_ps(x + i * ldx + k);
#pragma GCC unroll 6
            for (int j = 0; j < NR; j++) a[i][j] = _mm512_fmadd_ps(xv, wv[j], a[i][j]);
        }
    }
    if (kv < kc) {
        __mmask16 m = (__mmask16)((1u << (kc - kv)) - 1u);
        __m512 wv[NR];
#pragma GCC unroll 6
        for (int j = 0; j < NR; j++) wv[j] = _mm512_loadu_ps(panel + j * kcp + kv);
#pragma GCC unroll 4
        for (int i = 0; i < mr; i++) {
            __m512 xv = _mm512_maskz_loadu_ps(m, x + i * ldx + kv);
#pragma GCC unroll 6
            for (int j = 0; j < NR; j++) a[i][j] = _mm512_fmadd_ps(xv, wv[j], a[i][j]);
        }
    }
    if (!last) {
#pragma GCC unroll 4
        for (int i = 0; i < mr; i++)
#pragma GCC unroll 6
            for (int j = 0; j < NR; j++) _mm512_storeu_ps(acc + (i * NR + j) * VL, a[i][j]);
        return;
    }
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nv; j++) out[i * ldo + j] = _mm512_reduce_add_ps(a[i][j]);
}

static void avx512_block(const float *x, int64_t ldx, int mr, const float *panel, int64_t kcp,
                         int64_t kc, float *acc, int first, int last, float *out, int64_t ldo,
                         int nv) {
    switch (mr) {
    case 4: block_mr(4, x, ldx, panel, kcp, kc, acc, first, last, out, ldo, nv); break;
    case 3: block_mr(3, x, ldx, panel, kcp, kc, acc, first, last, out, ldo, nv); break;
    case 2: block_mr(2, x, ldx, panel, kcp, kc, acc, first, last, out, ldo, nv); break;
    default: block_mr(1, x, ldx, panel, kcp, kc, acc, first, last, out, ldo, nv); break;
    }
}

static const cpu_mm_isa k_avx512 = {"avx512", MR, NR, VL, avx512_panel_fill, avx512_block};

const cpu_mm_isa *cpu_mm_isa_avx512(void) {
    static int ok = -1;
    if (ok < 0)
        ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma") &&
             __builtin_cpu_supports("f16c");
    return ok ? &k_avx512 : NULL;
}

#else

const cpu_mm_isa *cpu_mm_isa_avx512(void) { return NULL; }

#endif
