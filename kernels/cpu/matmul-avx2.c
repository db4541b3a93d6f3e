/* matmul-avx2.c: the matmul kernels for AVX2 with FMA and F16C, built with
 * those -m flags and called only when the CPU has them (cpu_mm_isa_get).
 * Blocks of 4 activation rows x 3 weight rows keep 12 ymm accumulators (of
 * 16 registers); the weight rows are widened in registers from bf16, f16,
 * Q8_0 or Q4_0 with vector conversions that are exact (see matmul-cpu.h),
 * for every call: no panel buffer (see k_avx2 for why). Deliberately not
 * here: anything that must agree bit for bit with other instruction sets
 * (only fp32 rounding separates them). */
#include "matmul-cpu.h"

#if defined(__x86_64__) && defined(LISA_CPU_AVX2)

#include <cpuid.h>
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define MR 4
#define NR 3
#define VL 8

/* Software prefetch distances of the decode kernels. On the AMD EPYC (Zen 3)
 * machines this was tuned on, the hardware prefetchers alone left decode at
 * about half the read bandwidth `lisa bench memory` measures; prefetching
 * this far ahead (weight bytes of each row in direct, packed blocks in
 * qrows) gave q8_0 decode +30% and bf16 +5..10%. A prefetch never faults, so
 * running past a tensor's end is harmless. */
#define PF_ROW_BYTES 768
#define PF_BLOCKS 4

static inline __m256 w8_bf16(const uint16_t *p) {
    __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
}

static inline __m256 w8_f16(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

/* 8 int8 quants (the low 8 bytes of q) times the block scale: d * q exactly
 * as lisa_dtype_to_f32. */
static inline __m256 w8_q(__m128i q, __m256 d) {
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), d);
}

/* The lanes [0, t) of a maskload (t < 8). */
static inline __m256i tail_mask(int t) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(t), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* The fixed reduction order of the 8 lanes. */
static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* 8 weights of a row at column k (k % 8 == 0), widened in registers
 * exactly as lisa_dtype_to_f32; dt is a constant where this is inlined. A
 * block type's 32 weights are 4 vectors: k % 32 picks the quarter (Q4_0:
 * the low nibbles of bytes 0..15 are weights 0..15, the high ones 16..31). */
static inline __attribute__((always_inline)) __m256 wvec(const lisa_dtype dt, const char *row,
                                                         int64_t k) {
    switch (dt) {
    case LISA_DTYPE_BF16: return w8_bf16((const uint16_t *)row + k);
    case LISA_DTYPE_F16: return w8_f16((const uint16_t *)row + k);
    case LISA_DTYPE_Q8_0: {
        const lisa_block_q8_0 *b = (const lisa_block_q8_0 *)row + k / LISA_QK;
        __m256 d = _mm256_set1_ps(_cvtsh_ss(b->d));
        return w8_q(_mm_loadl_epi64((const __m128i *)(b->qs + (k & 24))), d);
    }
    case LISA_DTYPE_Q4_0: {
        const lisa_block_q4_0 *b = (const lisa_block_q4_0 *)row + k / LISA_QK;
        __m256 d = _mm256_set1_ps(_cvtsh_ss(b->d));
        __m128i v = _mm_loadl_epi64((const __m128i *)(b->qs + (k & 8)));
        if (k & 16) v = _mm_srli_epi16(v, 4);
        v = _mm_sub_epi8(_mm_and_si128(v, _mm_set1_epi8(15)), _mm_set1_epi8(8));
        return w8_q(v, d);
    }
    default: return _mm256_loadu_ps((const float *)row + k);
    }
}

/* The last K - k (< 8) weights of a float row, zeros beyond (AVX2 has no
 * 16-bit masked load: the tail goes through a zeroed copy). */
static inline __attribute__((always_inline)) __m256 wvec_tail(const lisa_dtype dt, const char *row,
                                                              int64_t k, int t, __m256i m) {
    if (dt == LISA_DTYPE_F32) return _mm256_maskload_ps((const float *)row + k, m);
    uint16_t h[VL] = {0};
    memcpy(h, (const uint16_t *)row + k, (size_t)t * sizeof h[0]);
    return dt == LISA_DTYPE_BF16 ? w8_bf16(h) : w8_f16(h);
}

/* One group of mr <= MR activation rows against the NR weight rows of a
 * panel, widened in registers and used at once: the lane sums of
 * matmul-cpu.h in their order (lane l sums k = l mod 8 in order of k; the
 * tail's lanes past K add x = 0 times w = 0), so the bits of the generic
 * kernel's widened panels to fp32 rounding. Rows past nv repeat the last
 * row (their sums are not stored). */
static inline __attribute__((always_inline)) void direct_mr(
    const int mr, const lisa_dtype dt, const float *x, int64_t ldx, const lisa_tensor *w,
    int64_t n0, int nv, float *out, int64_t ldo) {
    int64_t K = w->shape[1];
    size_t rb = lisa_dtype_row_bytes(dt, K);
    const char *rows[NR];
    for (int j = 0; j < NR; j++)
        rows[j] = (const char *)w->data + (size_t)(n0 + (j < nv ? j : nv - 1)) * rb;
    __m256 a[MR][NR];
#pragma GCC unroll 4
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 3
        for (int j = 0; j < NR; j++) a[i][j] = _mm256_setzero_ps();
    int64_t kv = K / VL * VL;
    for (int64_t k = 0; k < kv; k += VL) {
        __m256 wv[NR];
        if (!(k & 31)) {
            /* float rows: near a row's end, the same row of the next panel
             * (NR rows on), as matmul-avx512.c's direct_mr; block rows keep
             * k bytes as an estimate */
            int fl = dt == LISA_DTYPE_BF16 || dt == LISA_DTYPE_F16 || dt == LISA_DTYPE_F32;
            size_t off = (size_t)(dt == LISA_DTYPE_F32 ? 4 * k : fl ? 2 * k : k) + PF_ROW_BYTES;
            size_t at = fl && off >= rb ? (size_t)NR * rb + (off - rb) : off;
#pragma GCC unroll 3
            for (int j = 0; j < NR; j++) _mm_prefetch(rows[j] + at, _MM_HINT_T0);
        }
#pragma GCC unroll 3
        for (int j = 0; j < NR; j++) wv[j] = wvec(dt, rows[j], k);
#pragma GCC unroll 4
        for (int i = 0; i < mr; i++) {
            __m256 xv = _mm256_loadu_ps(x + i * ldx + k);
#pragma GCC unroll 3
            for (int j = 0; j < NR; j++) a[i][j] = _mm256_fmadd_ps(xv, wv[j], a[i][j]);
        }
    }
    if (kv < K) { /* float types only: block types have K % 32 == 0 */
        int t = (int)(K - kv);
        __m256i m = tail_mask(t);
        __m256 wv[NR];
#pragma GCC unroll 3
        for (int j = 0; j < NR; j++) wv[j] = wvec_tail(dt, rows[j], kv, t, m);
#pragma GCC unroll 4
        for (int i = 0; i < mr; i++) {
            __m256 xv = _mm256_maskload_ps(x + i * ldx + kv, m);
#pragma GCC unroll 3
            for (int j = 0; j < NR; j++) a[i][j] = _mm256_fmadd_ps(xv, wv[j], a[i][j]);
        }
    }
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nv; j++) out[i * ldo + j] = hsum8(a[i][j]);
}

#define DIRECT_DT(dt_)                                                                    \
    switch (mr) {                                                                         \
    case 4: direct_mr(4, dt_, x, ldx, w, n0, nv, out, ldo); break;                        \
    case 3: direct_mr(3, dt_, x, ldx, w, n0, nv, out, ldo); break;                        \
    case 2: direct_mr(2, dt_, x, ldx, w, n0, nv, out, ldo); break;                        \
    default: direct_mr(1, dt_, x, ldx, w, n0, nv, out, ldo); break;                       \
    }

static void avx2_direct(const float *x, int64_t ldx, int mr, const lisa_tensor *w, int64_t n0,
                        int nv, float *out, int64_t ldo) {
    switch (w->dtype) {
    case LISA_DTYPE_BF16: DIRECT_DT(LISA_DTYPE_BF16) break;
    case LISA_DTYPE_F16: DIRECT_DT(LISA_DTYPE_F16) break;
    case LISA_DTYPE_Q8_0: DIRECT_DT(LISA_DTYPE_Q8_0) break;
    case LISA_DTYPE_Q4_0: DIRECT_DT(LISA_DTYPE_Q4_0) break;
    default: DIRECT_DT(LISA_DTYPE_F32) break;
    }
    /* leave no dirty upper state for the SSE code that follows (GCC omits
     * its own vzeroupper below -O2, and then every later SSE instruction
     * pays a transition: 5x slower scalar code in sanitizer builds) */
    _mm256_zeroupper();
}

/* Packed weights: up to 4 activation rows against the group's 16 rows (two
 * halves of 8 lanes each). AVX2 has no dpbusd: maddubs multiplies unsigned by
 * signed bytes into int16 pair sums and madd with ones widens them to
 * int32. The pairs must not saturate: Q4_0's nibbles (<= 15) times |x| <=
 * 127 are, even two maddubs summed; Q8_0 uses the sign trick instead of
 * the offset (|w| unsigned, x with w's sign: pairs <= 2 * 128 * 127). The
 * integer sums are exact, then acc = fma(float(I), dw * dx, acc) as in
 * cpu_qgroup_c: the same bits.
 * Several rows (prefill) share each 32-byte piece of weights, loaded and
 * prepared (Q8_0: signed and its magnitude, Q4_0: both nibble planes) once
 * for all of them; one row (decode) prefetches the weights ahead. */
static inline __attribute__((always_inline)) void qrows(const int mr, const int q8,
                                                        const cpu_xq_block *xq, int64_t nb,
                                                        const uint8_t *wg, float *out,
                                                        int64_t ldo) {
    const size_t gbytes = (size_t)LISA_PACK_ROWS * (q8 ? sizeof(lisa_block_q8_0)
                                                       : sizeof(lisa_block_q4_0));
    const __m256i ones = _mm256_set1_epi16(1), lo4 = _mm256_set1_epi8(15),
                  flip = _mm256_set1_epi8((char)0x80);
    __m256 acc[4][2];
#pragma GCC unroll 4
    for (int i = 0; i < mr; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *gb = wg + (size_t)b * gbytes;
        if (mr == 1)
            for (size_t o = 0; o < gbytes; o += 64)
                _mm_prefetch((const char *)gb + PF_BLOCKS * gbytes + o, _MM_HINT_T0);
        int32_t xw[4][8];
#pragma GCC unroll 4
        for (int i = 0; i < mr; i++) memcpy(xw[i], xq[(size_t)i * (size_t)nb + b].qs, sizeof xw[i]);
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(gb + 16 * h)));
            __m256i isum[4];
            if (q8) {
#pragma GCC unroll 4
                for (int i = 0; i < mr; i++) isum[i] = _mm256_setzero_si256();
#pragma GCC unroll 8
                for (int j = 0; j < 8; j++) {
                    __m256i w = _mm256_xor_si256(
                        _mm256_loadu_si256((const __m256i *)(gb + 32 + 64 * j + 32 * h)), flip);
                    __m256i wa = _mm256_sign_epi8(w, w);
#pragma GCC unroll 4
                    for (int i = 0; i < mr; i++) {
                        __m256i p = _mm256_maddubs_epi16(
                            wa, _mm256_sign_epi8(_mm256_set1_epi32(xw[i][j]), w));
                        isum[i] = _mm256_add_epi32(isum[i], _mm256_madd_epi16(p, ones));
                    }
                }
            } else {
#pragma GCC unroll 4
                for (int i = 0; i < mr; i++)
                    isum[i] = _mm256_set1_epi32(-8 * xq[(size_t)i * (size_t)nb + b].sum);
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++) {
                    __m256i v = _mm256_loadu_si256((const __m256i *)(gb + 32 + 64 * j + 32 * h));
                    __m256i lo = _mm256_and_si256(v, lo4),
                            hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), lo4);
#pragma GCC unroll 4
                    for (int i = 0; i < mr; i++) {
                        __m256i p = _mm256_add_epi16(
                            _mm256_maddubs_epi16(lo, _mm256_set1_epi32(xw[i][j])),
                            _mm256_maddubs_epi16(hi, _mm256_set1_epi32(xw[i][j + 4])));
                        isum[i] = _mm256_add_epi32(isum[i], _mm256_madd_epi16(p, ones));
                    }
                }
            }
#pragma GCC unroll 4
            for (int i = 0; i < mr; i++)
                acc[i][h] = _mm256_fmadd_ps(
                    _mm256_cvtepi32_ps(isum[i]),
                    _mm256_mul_ps(dw, _mm256_set1_ps(xq[(size_t)i * (size_t)nb + b].d)),
                    acc[i][h]);
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < mr; i++) {
        _mm256_storeu_ps(out + (size_t)i * (size_t)ldo, acc[i][0]);
        _mm256_storeu_ps(out + (size_t)i * (size_t)ldo + 8, acc[i][1]);
    }
}

#define QROWS_Q8(q8_)                                                                     \
    for (int i = 0; i < mr;) {                                                            \
        const cpu_xq_block *xi = xq + (size_t)i * (size_t)nb;                             \
        float *oi = out + i * ldo;                                                        \
        switch (mr - i) {                                                                 \
        case 1: qrows(1, q8_, xi, nb, wg, oi, ldo); i += 1; break;                        \
        case 2: qrows(2, q8_, xi, nb, wg, oi, ldo); i += 2; break;                        \
        case 3: qrows(3, q8_, xi, nb, wg, oi, ldo); i += 3; break;                        \
        default: qrows(4, q8_, xi, nb, wg, oi, ldo); i += 4; break;                       \
        }                                                                                 \
    }

static void avx2_qgroup(const cpu_xq_block *xq, int64_t nb, int mr, const uint8_t *wg,
                        lisa_dtype dt, float *out, int64_t ldo) {
    if (dt == LISA_DTYPE_Q8_0X16) QROWS_Q8(1)
    else QROWS_Q8(0)
    _mm256_zeroupper();
}

/* cpu_mm_quantize_row with 8 lanes, step for step as avx512_quantize_row
 * (see there why these are the reference's bits); the 32 int32 quants are
 * narrowed with saturating packs (|q| <= 127, so exact), whose lane order
 * the final permute undoes. */
static void avx2_quantize_row(cpu_xq_block *dst, const float *x, int64_t K) {
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 sgnm = _mm256_castsi256_ps(_mm256_set1_epi32((int)0x80000000u));
    const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t b = 0; b < K / LISA_QK; b++, x += LISA_QK) {
        __m256 v[4], m = _mm256_setzero_ps();
        for (int h = 0; h < 4; h++) {
            v[h] = _mm256_loadu_ps(x + 8 * h);
            m = _mm256_max_ps(_mm256_and_ps(v[h], absm), m);
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        dst[b].d = lisa_f16_to_f32(lisa_f32_to_f16(d));
        __m256i q[4], s = _mm256_setzero_si256();
        for (int h = 0; h < 4; h++) {
            __m256 p = _mm256_mul_ps(v[h], _mm256_set1_ps(id));
            p = _mm256_and_ps(p, _mm256_cmp_ps(p, p, _CMP_ORD_Q));
            p = _mm256_min_ps(_mm256_max_ps(p, lo), hi);
            __m256 t = _mm256_round_ps(p, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            __m256 up = _mm256_cmp_ps(_mm256_and_ps(_mm256_sub_ps(p, t), absm), half, _CMP_GE_OQ);
            t = _mm256_add_ps(t, _mm256_and_ps(up, _mm256_or_ps(_mm256_and_ps(p, sgnm), one)));
            q[h] = _mm256_cvtps_epi32(t);
            s = _mm256_add_epi32(s, q[h]);
        }
        __m256i q8 = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]),
                                        _mm256_packs_epi32(q[2], q[3]));
        _mm256_storeu_si256((__m256i *)dst[b].qs, _mm256_permutevar8x32_epi32(q8, perm));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
        dst[b].sum = _mm_cvtsi128_si32(s4);
    }
    _mm256_zeroupper(); /* as in avx2_direct */
}

/* No panels: the direct kernel takes every call (direct_x_bytes SIZE_MAX),
 * in tiles of 16 panels (48 weight rows). On the 2-core AMD EPYC (Zen 3)
 * this is tuned on, one thread, bf16 weights out of the caches, best of 4
 * to 8 interleaved runs (the machine's neighbours halve a run at times):
 * M = 128, K = N = 2048 panels 47.5 GFLOP/s, direct a panel at a time 57.5,
 * tiles of 4 61.1, 8 66.9, 16 67.3 (32 and 64 no better); M = 128,
 * K = 5632: panels 52.1, direct 66.0, tiles of 16 69.3; M = 512, K = 13824
 * (LLaMA-13B's down projection): panels 14.5, tiles of 16 51.8. Part of
 * the panels' loss is L1 sets (their 2 KB row stride and the x rows' 8 KB
 * one fall on the same sets: padding the panel rows took 39 to 50), the
 * rest likely the short 2 KB runs a chunk reads along each x row. The FMA
 * peak here is about 86 GFLOP/s per core. */
static const cpu_mm_isa k_avx2 = {"avx2", MR, NR, VL, CPU_MM_KC, NULL, NULL, avx2_direct,
                                  avx2_qgroup, avx2_quantize_row, SIZE_MAX, 16};

/* F16C from CPUID leaf 1 (clang's __builtin_cpu_supports does not know
 * "f16c"). */
static int cpu_has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}

const cpu_mm_isa *cpu_mm_isa_avx2(void) {
    static int ok = -1;
    if (ok < 0)
        ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
    return ok ? &k_avx2 : NULL;
}

#else

const cpu_mm_isa *cpu_mm_isa_avx2(void) { return NULL; }

#endif
