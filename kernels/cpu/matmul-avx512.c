/* matmul-avx512.c: the matmul kernels for AVX-512 (F, BW, VL) with FMA and
 * F16C, built with those -m flags and called only when the CPU has them
 * (cpu_mm_isa_get). Blocks of 4 activation rows x 6 weight rows keep 24
 * zmm accumulators; weight panels are widened from bf16, f16, Q8_0 or Q4_0
 * with vector conversions that are exact (see matmul-cpu.h). Deliberately
 * not here: anything that must agree bit for bit with other instruction
 * sets (only fp32 rounding separates them). */
#include "matmul-cpu.h"

#if defined(__x86_64__) && defined(LISA_CPU_AVX512)

#include <cpuid.h>
#include <immintrin.h>
#include <string.h>

#define MR 4
#define NR 6 /* = CPU_BF16_NR */
#define VL 16
/* Panel chunk: 6 rows x 1024 fp32 = 24 KB of L1 (48 KB on Zen 4/5 and on
 * recent Xeons), the x chunk of a 128-row pass 512 KB of L2. Measured on a
 * Zen 5 EPYC, one thread, bf16 weights: M = 128, K = N = 2048 at kc 512
 * 172 GFLOP/s, 768 180, 1024 189, 1536 163; M = 16: 108 at 512, 143 at
 * 1024. */
#define KC 1024
/* direct_x_bytes: the direct kernel in groups of 4 rows beats panels up to
 * about 2 MB of activations. Zen 5, one thread, bf16 weights, GFLOP/s
 * panels -> direct: M = 16, K = 2048 (weights out of the caches) 122 ->
 * 150, K = 5632 136 -> 176; M = 32 161 -> 181 (K = 5632 171 -> 196); M = 64
 * 189 -> 203 (182 -> 195); M = 128, K = 2048 197 -> 202; at M = 128,
 * K = 5632 (2.9 MB) 185 -> 183. */
#define DIRECT_X_BYTES ((size_t)2 << 20)

/* Software prefetch distances of the decode kernels (as in matmul-avx2.c):
 * weight bytes ahead in each row of direct, packed blocks ahead in qgroup
 * with one row. Measured on a 2-core AMD EPYC (Zen 5), bf16 decode of the
 * 1.1B shape, best of 6 interleaved runs: none 21.9 tok/s, 1024 bytes 25.8,
 * 2048 23.7, 3072 21.9; q4_0 decode, best of 5: no blocks ahead 63, 4
 * ahead 68, 8 ahead 72 (q8_0 the same for all: 57). Near a row's end the
 * row prefetch moves on to the same row of the next panel (NR rows on): the
 * first PF_ROW_BYTES of a panel's rows were demand misses before (one
 * thread, M = 16, K = 2048, weights out of the caches: 148 -> 157..166
 * GFLOP/s; M = 1 on 2 threads 52..58 -> 63..67 GB/s of bf16; packed groups
 * run on into the next group by themselves). A prefetch never faults, so
 * running past a tensor's end is harmless. */
#ifndef PF_ROW_BYTES
#define PF_ROW_BYTES 1024
#endif
#ifndef PF_BLOCKS
#define PF_BLOCKS 8
#endif
/* ... and in each row a panel fill widens: 2048 bytes ahead is the next
 * chunk of the row (kc 1024 of 16-bit weights) or, for a row inside one
 * chunk, the rows after it. bf16 weights, one thread, M = 16, K = 2048,
 * N = 32768 (128 MB, out of the caches): none 88 GFLOP/s, 512 bytes 95,
 * 1024 97, 2048 117, 3072 111, 4096 118, the next fill's own rows 113;
 * K = 5632: none 92, 2048 125, 4096 118; M = 128: none 181, 2048 191. */
#ifndef PF_PANEL_BYTES
#define PF_PANEL_BYTES 2048
#endif

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
        for (; k + VL <= n; k += VL) {
            if (!(k & 31)) _mm_prefetch((const char *)(s + k) + PF_PANEL_BYTES, _MM_HINT_T0);
            _mm512_storeu_ps(p + k, w16_bf16(s + k));
        }
        for (; k < n; k++) p[k] = lisa_bf16_to_f32(s[k]);
        return;
    }
    case LISA_DTYPE_F16: {
        const uint16_t *s = (const uint16_t *)base + k0;
        for (; k + VL <= n; k += VL) {
            if (!(k & 31)) _mm_prefetch((const char *)(s + k) + PF_PANEL_BYTES, _MM_HINT_T0);
            _mm512_storeu_ps(p + k, w16_f16(s + k));
        }
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
    /* leave no dirty upper state for the SSE code that follows (GCC omits
     * its own vzeroupper below -O2, and then every later SSE instruction
     * pays a transition: 5x slower scalar code in sanitizer builds) */
    _mm256_zeroupper();
}

/* A block's lane sums: zeroed (first chunk) or carried in from acc; at the
 * end stored back to acc, or (last chunk) each output reduced in one fixed
 * order into out[i * ldo + j], j < nv. */
static inline __attribute__((always_inline)) void acc_begin(const int mr, __m512 a[MR][NR],
                                                            const float *acc, int first) {
#pragma GCC unroll 4
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 6
        for (int j = 0; j < NR; j++)
            a[i][j] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(acc + (i * NR + j) * VL);
}

static inline __attribute__((always_inline)) void acc_end(const int mr, __m512 a[MR][NR],
                                                          float *acc, int last, float *out,
                                                          int64_t ldo, int nv) {
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

/* The block for a constant mr (inlined into one function per mr so the
 * accumulators live in registers). */
static inline __attribute__((always_inline)) void block_mr(
    const int mr, const float *x, int64_t ldx, const float *panel, int64_t kcp, int64_t kc,
    float *acc, int first, int last, float *out, int64_t ldo, int nv) {
    __m512 a[MR][NR];
    acc_begin(mr, a, acc, first);
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
    acc_end(mr, a, acc, last, out, ldo, nv);
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
    _mm256_zeroupper(); /* as in the panel fill */
}

/* 16 weights of a row at column k (k % 16 == 0), widened in registers
 * exactly as row_widen does; dt is a constant where this is inlined. */
static inline __attribute__((always_inline)) __m512 wvec(const lisa_dtype dt, const char *row,
                                                         int64_t k) {
    switch (dt) {
    case LISA_DTYPE_BF16: return w16_bf16((const uint16_t *)row + k);
    case LISA_DTYPE_F16: return w16_f16((const uint16_t *)row + k);
    case LISA_DTYPE_Q8_0: {
        const lisa_block_q8_0 *b = (const lisa_block_q8_0 *)row + k / LISA_QK;
        __m512 d = _mm512_set1_ps(_cvtsh_ss(b->d));
        return w16_q(_mm_loadu_si128((const __m128i *)(b->qs + (k & 16))), d);
    }
    case LISA_DTYPE_Q4_0: {
        const lisa_block_q4_0 *b = (const lisa_block_q4_0 *)row + k / LISA_QK;
        __m512 d = _mm512_set1_ps(_cvtsh_ss(b->d));
        __m128i v = _mm_loadu_si128((const __m128i *)b->qs);
        if (k & 16) v = _mm_srli_epi16(v, 4);
        v = _mm_sub_epi8(_mm_and_si128(v, _mm_set1_epi8(15)), _mm_set1_epi8(8));
        return w16_q(v, d);
    }
    default: return _mm512_loadu_ps((const float *)row + k);
    }
}

/* The 32 weights of block k / 32 of a Q8_0 or Q4_0 row (k % 32 == 0) into
 * *lo (weights 0..15) and *hi (16..31): one scale load per block. Q4_0 looks
 * its values up in a 16-entry table d * (n - 8) (vpermps reads an index's
 * low 4 bits, so the nibbles need no masking): the same products d * q as
 * wvec, so the same bits. */
static inline __attribute__((always_inline)) void wblock(const lisa_dtype dt, const char *row,
                                                         int64_t k, __m512 *lo, __m512 *hi) {
    if (dt == LISA_DTYPE_Q8_0) {
        const lisa_block_q8_0 *b = (const lisa_block_q8_0 *)row + k / LISA_QK;
        __m512 d = _mm512_set1_ps(_cvtsh_ss(b->d));
        *lo = w16_q(_mm_loadu_si128((const __m128i *)b->qs), d);
        *hi = w16_q(_mm_loadu_si128((const __m128i *)(b->qs + 16)), d);
        return;
    }
    const lisa_block_q4_0 *b = (const lisa_block_q4_0 *)row + k / LISA_QK;
    const __m512 levels = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
    __m512 t = _mm512_mul_ps(_mm512_set1_ps(_cvtsh_ss(b->d)), levels);
    __m128i v = _mm_loadu_si128((const __m128i *)b->qs);
    *lo = _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(v), t);
    *hi = _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(_mm_srli_epi16(v, 4)), t);
}

/* The last kc - k (< 16) weights of a float row, zeros beyond. */
static inline __attribute__((always_inline)) __m512 wvec_tail(const lisa_dtype dt, const char *row,
                                                              int64_t k, __mmask16 m) {
    switch (dt) {
    case LISA_DTYPE_BF16: {
        __m512i u = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, (const uint16_t *)row + k));
        return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
    }
    case LISA_DTYPE_F16:
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)row + k));
    default: return _mm512_maskz_loadu_ps(m, (const float *)row + k);
    }
}

/* Small calls (mr <= MR rows in all): the NR weight rows of a panel are
 * widened in registers and used at once, with no panel buffer: the same
 * lane sums in the same order as block_mr over a widened panel, so the same
 * bits. Rows past nv repeat the last row (their sums are not stored). */
static inline __attribute__((always_inline)) void direct_mr(
    const int mr, const lisa_dtype dt, const float *x, int64_t ldx, const lisa_tensor *w,
    int64_t n0, int nv, float *out, int64_t ldo) {
    int64_t K = w->shape[1];
    size_t rb = lisa_dtype_row_bytes(dt, K);
    const char *rows[NR];
    for (int j = 0; j < NR; j++)
        rows[j] = (const char *)w->data + (size_t)(n0 + (j < nv ? j : nv - 1)) * rb;
    __m512 a[MR][NR];
#pragma GCC unroll 4
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 6
        for (int j = 0; j < NR; j++) a[i][j] = _mm512_setzero_ps();
    int64_t kv = K / VL * VL;
    if (dt == LISA_DTYPE_Q8_0 || dt == LISA_DTYPE_Q4_0) {
        /* whole blocks: lanes see k, then k + 16, as in the loop below */
        for (int64_t k = 0; k < K; k += LISA_QK) {
            __m512 wl[NR], wh[NR];
#pragma GCC unroll 6
            for (int j = 0; j < NR; j++) wblock(dt, rows[j], k, &wl[j], &wh[j]);
#pragma GCC unroll 4
            for (int i = 0; i < mr; i++) {
                __m512 xl = _mm512_loadu_ps(x + i * ldx + k), xh = _mm512_loadu_ps(x + i * ldx + k + 16);
#pragma GCC unroll 6
                for (int j = 0; j < NR; j++)
                    a[i][j] = _mm512_fmadd_ps(xh, wh[j], _mm512_fmadd_ps(xl, wl[j], a[i][j]));
            }
        }
        kv = K;
    }
    for (int64_t k = 0; k < kv && !(dt == LISA_DTYPE_Q8_0 || dt == LISA_DTYPE_Q4_0); k += VL) {
        __m512 wv[NR];
        if (!(k & 31) || dt == LISA_DTYPE_F32) {
            /* near a row's end, the same row of the next panel (NR rows on) */
            size_t off = (size_t)(dt == LISA_DTYPE_F32 ? 4 * k : 2 * k) + PF_ROW_BYTES;
            size_t at = off < rb ? off : (size_t)NR * rb + (off - rb);
#pragma GCC unroll 6
            for (int j = 0; j < NR; j++) _mm_prefetch(rows[j] + at, _MM_HINT_T0);
        }
#pragma GCC unroll 6
        for (int j = 0; j < NR; j++) wv[j] = wvec(dt, rows[j], k);
#pragma GCC unroll 4
        for (int i = 0; i < mr; i++) {
            __m512 xv = _mm512_loadu_ps(x + i * ldx + k);
#pragma GCC unroll 6
            for (int j = 0; j < NR; j++) a[i][j] = _mm512_fmadd_ps(xv, wv[j], a[i][j]);
        }
    }
    if (kv < K) { /* float types only: block types have K % 32 == 0 */
        __mmask16 m = (__mmask16)((1u << (K - kv)) - 1u);
        __m512 wv[NR];
#pragma GCC unroll 6
        for (int j = 0; j < NR; j++) wv[j] = wvec_tail(dt, rows[j], kv, m);
#pragma GCC unroll 4
        for (int i = 0; i < mr; i++) {
            __m512 xv = _mm512_maskz_loadu_ps(m, x + i * ldx + kv);
#pragma GCC unroll 6
            for (int j = 0; j < NR; j++) a[i][j] = _mm512_fmadd_ps(xv, wv[j], a[i][j]);
        }
    }
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nv; j++) out[i * ldo + j] = _mm512_reduce_add_ps(a[i][j]);
}

#define DIRECT_DT(dt_)                                                                    \
    switch (mr) {                                                                         \
    case 4: direct_mr(4, dt_, x, ldx, w, n0, nv, out, ldo); break;                        \
    case 3: direct_mr(3, dt_, x, ldx, w, n0, nv, out, ldo); break;                        \
    case 2: direct_mr(2, dt_, x, ldx, w, n0, nv, out, ldo); break;                        \
    default: direct_mr(1, dt_, x, ldx, w, n0, nv, out, ldo); break;                       \
    }

static void avx512_direct(const float *x, int64_t ldx, int mr, const lisa_tensor *w, int64_t n0,
                          int nv, float *out, int64_t ldo) {
    switch (w->dtype) {
    case LISA_DTYPE_BF16: DIRECT_DT(LISA_DTYPE_BF16) break;
    case LISA_DTYPE_F16: DIRECT_DT(LISA_DTYPE_F16) break;
    case LISA_DTYPE_Q8_0: DIRECT_DT(LISA_DTYPE_Q8_0) break;
    case LISA_DTYPE_Q4_0: DIRECT_DT(LISA_DTYPE_Q4_0) break;
    default: DIRECT_DT(LISA_DTYPE_F32) break;
    }
    _mm256_zeroupper(); /* as in the panel fill */
}

/* Packed weights with AVX-512 VNNI: the 16 lanes are the group's 16 rows.
 * A 64-byte load holds 4 consecutive quants of every row (unsigned: Q8_0's
 * offset by 128, Q4_0's nibbles 0..15) and dpbusd adds their products with
 * 4 broadcast activation quants (signed) into each lane; starting the sum
 * at -offset * sum(qs) makes it the exact dot product of the signed values.
 * Two chains of 4 dpbusd each (integer sums: the order changes nothing)
 * halve the dependency latency. Then acc = fma(float(I), dw * dx, acc) as
 * cpu_qgroup_c does, so the same bits. */
static inline __attribute__((always_inline, target("avx512vnni"))) void qgroup_mr(
    const int mr, const int q8, const cpu_xq_block *xq, int64_t nb, const uint8_t *wg,
    float *out, int64_t ldo) {
    const size_t gbytes = (size_t)LISA_PACK_ROWS * (q8 ? sizeof(lisa_block_q8_0)
                                                       : sizeof(lisa_block_q4_0));
    const int32_t off = q8 ? 128 : 8;
    const __m512i lo4 = _mm512_set1_epi8(15);
    __m512 acc[CPU_QMR];
#pragma GCC unroll 8
    for (int i = 0; i < mr; i++) acc[i] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *gb = wg + (size_t)b * gbytes;
        if (mr == 1 && PF_BLOCKS > 0)
            for (size_t o = 0; o < gbytes; o += 64)
                _mm_prefetch((const char *)gb + PF_BLOCKS * gbytes + o, _MM_HINT_T0);
        __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)gb));
        __m512i u[8];
        if (q8) {
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++) u[j] = _mm512_loadu_si512(gb + 32 + 64 * j);
        } else {
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                __m512i v = _mm512_loadu_si512(gb + 32 + 64 * j);
                u[j] = _mm512_and_si512(v, lo4);
                u[j + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), lo4);
            }
        }
#pragma GCC unroll 8
        for (int i = 0; i < mr; i++) {
            const cpu_xq_block *xb = xq + (size_t)i * (size_t)nb + b;
            /* each 4 x quants broadcast straight from memory (vpbroadcastd
             * of a load): copied out as one array they went through general
             * registers, a cross-domain move per dpbusd */
            __m512i i0 = _mm512_set1_epi32(-off * xb->sum), i1 = _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int j = 0; j < 8; j += 2) {
                int32_t x0, x1;
                memcpy(&x0, xb->qs + 4 * j, 4);
                memcpy(&x1, xb->qs + 4 * j + 4, 4);
                i0 = _mm512_dpbusd_epi32(i0, u[j], _mm512_set1_epi32(x0));
                i1 = _mm512_dpbusd_epi32(i1, u[j + 1], _mm512_set1_epi32(x1));
            }
            __m512 sc = _mm512_mul_ps(dw, _mm512_set1_ps(xb->d));
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(i0, i1)), sc, acc[i]);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < mr; i++) _mm512_storeu_ps(out + (size_t)i * (size_t)ldo, acc[i]);
}

#define QGROUP_Q8(q8_)                                                                    \
    switch (mr) {                                                                         \
    case 8: qgroup_mr(8, q8_, xq, nb, wg, out, ldo); break;                               \
    case 7: qgroup_mr(7, q8_, xq, nb, wg, out, ldo); break;                               \
    case 6: qgroup_mr(6, q8_, xq, nb, wg, out, ldo); break;                               \
    case 5: qgroup_mr(5, q8_, xq, nb, wg, out, ldo); break;                               \
    case 4: qgroup_mr(4, q8_, xq, nb, wg, out, ldo); break;                               \
    case 3: qgroup_mr(3, q8_, xq, nb, wg, out, ldo); break;                               \
    case 2: qgroup_mr(2, q8_, xq, nb, wg, out, ldo); break;                               \
    default: qgroup_mr(1, q8_, xq, nb, wg, out, ldo); break;                              \
    }

__attribute__((target("avx512vnni"))) static void avx512_qgroup_vnni(
    const cpu_xq_block *xq, int64_t nb, int mr, const uint8_t *wg, lisa_dtype dt, float *out,
    int64_t ldo) {
    if (dt == LISA_DTYPE_Q8_0X16) QGROUP_Q8(1)
    else QGROUP_Q8(0)
    _mm256_zeroupper(); /* as in the panel fill */
}

/* Without VNNI: the portable kernel with this file's flags. */
static void avx512_qgroup(const cpu_xq_block *xq, int64_t nb, int mr, const uint8_t *wg,
                          lisa_dtype dt, float *out, int64_t ldo) {
    cpu_qgroup_c(xq, nb, mr, wg, dt, out, ldo);
    _mm256_zeroupper();
}

/* cpu_mm_quantize_row with 16 lanes, step for step: the block's amax (vmaxps
 * returns its second operand when one is NaN, so NaNs drop out as fmaxf
 * drops them), d, 1 / d and the fp16 scale in scalar code as the reference
 * computes them, then v = x * id with NaN -> 0, the clamp, and roundf as
 * trunc(v) plus the sign where |v - trunc(v)| >= 0.5 (v - trunc(v) is exact
 * for |v| <= 127): the same bits. */
static void avx512_quantize_row(cpu_xq_block *dst, const float *x, int64_t K) {
    const __m512i sgnm = _mm512_set1_epi32((int)0x80000000u), onei = _mm512_set1_epi32(0x3f800000);
    const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    const __m512 half = _mm512_set1_ps(0.5f);
    for (int64_t b = 0; b < K / LISA_QK; b++, x += LISA_QK) {
        __m512 v[2] = {_mm512_loadu_ps(x), _mm512_loadu_ps(x + 16)};
        __m512 m = _mm512_max_ps(_mm512_abs_ps(v[0]), _mm512_setzero_ps());
        m = _mm512_max_ps(_mm512_abs_ps(v[1]), m);
        const float amax = _mm512_reduce_max_ps(m);
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        dst[b].d = lisa_f16_to_f32(lisa_f32_to_f16(d));
        __m512i q[2];
        for (int h = 0; h < 2; h++) {
            __m512 p = _mm512_mul_ps(v[h], _mm512_set1_ps(id));
            p = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(p, p, _CMP_ORD_Q), p);
            p = _mm512_min_ps(_mm512_max_ps(p, lo), hi);
            __m512 t = _mm512_roundscale_ps(p, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            __mmask16 up = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(p, t)), half,
                                              _CMP_GE_OQ);
            __m512i sgn1 = _mm512_or_si512(_mm512_and_si512(_mm512_castps_si512(p), sgnm), onei);
            t = _mm512_mask_add_ps(t, up, t, _mm512_castsi512_ps(sgn1)); /* t +- 1 */
            q[h] = _mm512_cvtps_epi32(t);
            _mm_storeu_si128((__m128i *)(dst[b].qs + 16 * h), _mm512_cvtepi32_epi8(q[h]));
        }
        dst[b].sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q[0], q[1]));
    }
    _mm256_zeroupper(); /* as in the panel fill */
}

static const cpu_mm_isa k_avx512 = {"avx512", MR, NR, VL, KC, avx512_panel_fill, avx512_block,
                                    avx512_direct, avx512_qgroup, avx512_quantize_row,
                                    DIRECT_X_BYTES, 1};
static const cpu_mm_isa k_avx512_vnni = {"avx512", MR, NR, VL, KC, avx512_panel_fill, avx512_block,
                                         avx512_direct, avx512_qgroup_vnni,
                                         avx512_quantize_row, DIRECT_X_BYTES, 1};

/* --- the bf16 dot-product path (matmul-cpu.h) --- */

_Static_assert(NR == CPU_BF16_NR, "the driver carves panels of CPU_BF16_NR rows");

/* Columns per chunk: 6 weight rows x 1024 bf16 = 12 KB stays in L1 while
 * every block of activation rows passes over it. */
#define BKC 1024

/* lisa_f32_to_bf16 on 16 lanes: round to nearest even by integer addition,
 * NaNs kept quiet. */
static void avx512_bf16_round_row(uint16_t *dst, const float *x, int64_t K) {
    const __m512i lsb = _mm512_set1_epi32(1), bias = _mm512_set1_epi32(0x7fff);
    const __m512i absm = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
    const __m512i quiet = _mm512_set1_epi32(0x40);
    int64_t k = 0;
    for (; k < K; k += 16) {
        __mmask16 m = K - k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (K - k)) - 1u);
        __m512i u = _mm512_castps_si512(_mm512_maskz_loadu_ps(m, x + k));
        __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(bias, _mm512_and_si512(
                                                                   _mm512_srli_epi32(u, 16), lsb)));
        r = _mm512_srli_epi32(r, 16);
        __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, absm), inf);
        r = _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), quiet);
        _mm256_mask_storeu_epi16(dst + k, m, _mm512_cvtepi32_epi16(r));
    }
    _mm256_zeroupper();
}

/* One block: mr activation rows (bf16, row stride ldx) against the NR rows
 * of w (N, K) at rows[], columns [k0, k0 + kc). acc and first / last as block_mr's.
 * A partial last step loads both operands masked (zeros beyond K, so no
 * product of bytes past a row). The first block of a chunk (pf: all of
 * decode's) prefetches the weights; the blocks after it find them cached. */
static inline __attribute__((always_inline, target("avx512bf16"))) void bdot_mr(
    const int mr, const int pf, const uint16_t *xb, int64_t ldx, const uint16_t *const *rows,
    int64_t K, int64_t k0, int64_t kc, float *acc, int first, int last, float *out, int64_t ldo,
    int nv) {
    __m512 a[MR][NR];
    acc_begin(mr, a, acc, first);
    int64_t ke = k0 + kc, kv = k0 + kc / 32 * 32, k = k0;
    for (; k < kv; k += 32) {
        __m512bh wv[NR];
        /* near a row's end, the same row of the next panel, as direct_mr */
        size_t off = 2 * (size_t)k + PF_ROW_BYTES;
        size_t at = off < 2 * (size_t)K ? off : 2 * (size_t)K * (NR - 1) + off;
#pragma GCC unroll 6
        for (int j = 0; j < NR; j++) {
            if (pf) _mm_prefetch((const char *)rows[j] + at, _MM_HINT_T0);
            wv[j] = (__m512bh)_mm512_loadu_si512(rows[j] + k);
        }
#pragma GCC unroll 4
        for (int i = 0; i < mr; i++) {
            __m512bh xv = (__m512bh)_mm512_loadu_si512(xb + i * ldx + k);
#pragma GCC unroll 6
            for (int j = 0; j < NR; j++) a[i][j] = _mm512_dpbf16_ps(a[i][j], xv, wv[j]);
        }
    }
    if (k < ke) {
        __mmask32 m = (__mmask32)((1u << (ke - k)) - 1u);
        __m512bh wv[NR];
#pragma GCC unroll 6
        for (int j = 0; j < NR; j++) wv[j] = (__m512bh)_mm512_maskz_loadu_epi16(m, rows[j] + k);
#pragma GCC unroll 4
        for (int i = 0; i < mr; i++) {
            __m512bh xv = (__m512bh)_mm512_maskz_loadu_epi16(m, xb + i * ldx + k);
#pragma GCC unroll 6
            for (int j = 0; j < NR; j++) a[i][j] = _mm512_dpbf16_ps(a[i][j], xv, wv[j]);
        }
    }
    acc_end(mr, a, acc, last, out, ldo, nv);
}

/* Panels of NR weight rows, each in chunks of BKC columns, every block of
 * MR activation rows per chunk. Rows past nv repeat the last row (their sums
 * are not stored). */
__attribute__((target("avx512bf16"))) static void avx512_bf16_dot(float *out, const uint16_t *xb,
                                                                  int64_t M, int64_t K,
                                                                  const lisa_tensor *w, int64_t p0,
                                                                  int64_t p1, float *acc) {
    int64_t N = w->shape[0];
    for (int64_t p = p0; p < p1; p++) {
        int64_t n0 = p * NR;
        int nv = (int)(N - n0 < NR ? N - n0 : NR);
        const uint16_t *rows[NR];
        for (int j = 0; j < NR; j++)
            rows[j] = (const uint16_t *)w->data + (size_t)(n0 + (j < nv ? j : nv - 1)) * (size_t)K;
        for (int64_t k0 = 0; k0 < K; k0 += BKC) {
            int64_t kc = K - k0 < BKC ? K - k0 : BKC;
            int first = k0 == 0, last = k0 + kc >= K;
            for (int64_t i = 0; i < M; i += MR) {
                const uint16_t *x = xb + i * K;
                float *ai = acc + (size_t)i * NR * VL, *o = out + i * N + n0;
                const int pf = i == 0;
                switch (M - i < MR ? M - i : MR) {
                case 4: bdot_mr(4, pf, x, K, rows, K, k0, kc, ai, first, last, o, N, nv); break;
                case 3: bdot_mr(3, pf, x, K, rows, K, k0, kc, ai, first, last, o, N, nv); break;
                case 2: bdot_mr(2, pf, x, K, rows, K, k0, kc, ai, first, last, o, N, nv); break;
                default: bdot_mr(1, pf, x, K, rows, K, k0, kc, ai, first, last, o, N, nv); break;
                }
            }
        }
    }
    _mm256_zeroupper();
}

static int cpu_has_avx512bf16(void) {
    unsigned a, b, c, d;
    /* CPUID leaf 7 sub-leaf 1, EAX bit 5 */
    return cpu_mm_isa_avx512() && __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 5));
}

cpu_bf16_dot_fn cpu_mm_bf16_dot_avx512(void) {
    return cpu_has_avx512bf16() ? avx512_bf16_dot : NULL;
}

cpu_bf16_round_row_fn cpu_mm_bf16_round_avx512(void) {
    return cpu_has_avx512bf16() ? avx512_bf16_round_row : NULL;
}

/* F16C from CPUID leaf 1 (clang's __builtin_cpu_supports does not know
 * "f16c"). */
static int cpu_has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}

const cpu_mm_isa *cpu_mm_isa_avx512(void) {
    static int ok = -1;
    if (ok < 0)
        ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma") &&
             cpu_has_f16c();
    if (!ok) return NULL;
    return __builtin_cpu_supports("avx512vnni") ? &k_avx512_vnni : &k_avx512;
}

#else

const cpu_mm_isa *cpu_mm_isa_avx512(void) { return NULL; }
cpu_bf16_dot_fn cpu_mm_bf16_dot_avx512(void) { return NULL; }
cpu_bf16_round_row_fn cpu_mm_bf16_round_avx512(void) { return NULL; }

#endif
