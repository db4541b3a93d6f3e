/* matmul-cpu.h: the CPU backend's own matmul kernels, shared between the
 * driver (matmul-cpu.c) and the instruction-set files (matmul-avx512.c,
 * matmul-avx2.c), which are compiled with their own -m flags and only called
 * after a run-time check of the CPU.
 *
 * The scheme (llm.c's matmul_forward, blocked): out (M, N) = x (M, K) @
 * w (N, K)^T is cut into panels of NR weight rows. A panel's rows are widened
 * to fp32 (exactly: bf16/f16 and d * q of Q8_0/Q4_0 are all representable)
 * chunk by chunk of KC columns into a small per-thread buffer that stays in
 * L1, and every block of MR activation rows is multiplied with it in vector
 * registers. Each output keeps VL lane sums (lane l sums k = l mod VL in
 * order of k) carried across chunks in the per-thread accumulator buffer,
 * and is reduced in one fixed order at the end. Where an isa's direct
 * kernel takes the call (a few rows always; with AVX2 every call, in tiles
 * of panels), a panel's rows are widened in registers instead, with the
 * same lane sums. So a row's result depends on nothing but its own x row
 * and w: not on M, on which rows share the call, on the blocking or on the
 * threads (batch invariance: see backend-cpu.c).
 *
 * Packed block weights (Q8_0X16 / Q4_0X16, dtype.h) take another path,
 * llama.cpp's for Q8_0/Q4_0 weights: every activation row is quantized to
 * Q8_0 per block of 32 (cpu_mm_quantize_row, the reference rounding), and
 * each 16-row group of w is multiplied with it in integers, 16 rows in the
 * 16 lanes of a register (an AVX-512 VNNI dpbusd takes 4 quants of 16 rows
 * at once). Per output, block by block in order of k:
 *   acc = fmaf((float)I_b, dw_b * dx_b, acc)
 * with I_b the exact integer dot product of the block's quants and dw_b *
 * dx_b exact (two fp16 values), so every instruction set gives the same
 * bits, and a row's result again depends on its own x row and w only.
 *
 * Deliberately not here: any model knowledge. */
#ifndef LISA_MATMUL_CPU_H
#define LISA_MATMUL_CPU_H

#include <math.h>
#include <string.h>

#include "backend.h"

/* Columns of w widened per panel chunk (a multiple of every VL and of
 * LISA_QK), unless an isa sets its own (cpu_mm_isa.kc): 3 rows x 512 fp32
 * = 6 KB for AVX2. The chunk width changes no bits: lane sums carry
 * across chunks exactly. */
#define CPU_MM_KC 512
/* Activation rows per pass over a panel chunk: bounds the accumulator
 * buffer (MB x NR x VL floats per thread). */
#define CPU_MM_MB 128

/* Activation rows multiplied with one packed group per kernel call. */
#define CPU_QMR 8

/* One block of an activation row quantized to Q8_0 (cpu_mm_quantize_row):
 * x ~ d * qs, sum = the sum of qs (for the weights' offset). */
typedef struct cpu_xq_block {
    int8_t qs[LISA_QK];
    float d; /* fp16 of the scale, widened */
    int32_t sum;
} cpu_xq_block;

typedef struct cpu_mm_isa {
    const char *name;  /* "avx512", "avx2", "generic" */
    int mr, nr, vl;    /* rows per block, weight rows per panel, lanes */
    int kc;            /* columns per panel chunk (cpu_matmul_float's) */
    /* Widens columns [k0, k0 + kc) of rows [n0, n0 + nv) of w (N, K) into
     * panel (nr, kcp) fp32 (kcp = kc rounded up to vl); rows nv..nr and
     * columns kc..kcp are zeroed. k0 and kc are multiples of LISA_QK for
     * block types. */
    void (*panel_fill)(float *panel, int64_t kcp, const lisa_tensor *w, int64_t n0, int nv,
                       int64_t k0, int64_t kc);
    /* One block: rows x (mr, kc) with row stride ldx against panel (nr, kcp).
     * acc (mr, nr, vl) holds the lane sums: zeroed first when `first`,
     * reduced into out[i * ldo + j] (j < nv) when `last`, else stored. */
    void (*block)(const float *x, int64_t ldx, int mr, const float *panel, int64_t kcp,
                  int64_t kc, float *acc, int first, int last, float *out, int64_t ldo, int nv);
    /* Optional (NULL: small calls use panels too): a whole call of mr <=
     * this->mr rows against the panel of rows [n0, n0 + nv) of w, weights
     * widened in registers, no panel buffer (decode: one pass over the
     * weights and nothing else), giving the same bits as block over panels. */
    void (*direct)(const float *x, int64_t ldx, int mr, const lisa_tensor *w, int64_t n0, int nv,
                   float *out, int64_t ldo);
    /* Packed weights: out[i * ldo + r] (i < mr <= CPU_QMR, r < 16) = row i
     * of xq (mr rows of nb blocks) dotted with row r of the group at wg
     * (nb packed blocks of dtype dt), as the file header says. */
    void (*qgroup)(const cpu_xq_block *xq, int64_t nb, int mr, const uint8_t *wg, lisa_dtype dt,
                   float *out, int64_t ldo);
    /* x (K, a multiple of LISA_QK) -> K / 32 blocks, the same bits as
     * cpu_mm_quantize_row (prefill quantizes every activation row of every
     * packed matmul: the scalar rounding cost half as much as the products). */
    void (*quantize_row)(cpu_xq_block *dst, const float *x, int64_t K);
    /* direct also takes calls of more than mr rows, in groups of mr, while
     * x (M, K) fp32 is at most this many bytes (0: only M <= mr; SIZE_MAX:
     * every call, and block and panel_fill may be NULL). Each group reads
     * the panel's weight rows again, from the caches after the first; it
     * saves the panel's stores and loads, and the same bits. */
    size_t direct_x_bytes;
    /* Panels per tile of such a call (0 or 1: one panel at a time): every
     * group of mr x rows runs against the tile's panels before the next
     * group, so a group is read from farther out once per tile instead of
     * once per panel, and the tile's weight rows stay in L2. The same bits
     * (each output is still one direct call's). */
    int direct_tile;
} cpu_mm_isa;

/* x (K) -> K / 32 blocks: lisa_quantize_q8_0's rounding, the scale kept as
 * its fp16 value (what llama.cpp's q8_0 activations hold). The portable
 * reference of every isa's quantize_row. */
void cpu_mm_quantize_row(cpu_xq_block *dst, const float *x, int64_t K);

/* out (M, N) = xq (M rows of K / 32 blocks) @ w^T for w packed (N % 16 ==
 * 0), the 16-row groups [g0, g1) only. */
void cpu_mm_qrun(const cpu_mm_isa *isa, float *out, const cpu_xq_block *xq, int64_t M, int64_t K,
                 const lisa_tensor *w, int64_t g0, int64_t g1);

/* The portable packed kernel (the qgroup of "generic", and the one the
 * others must equal bit for bit); static inline so each instruction-set
 * file compiles it with its own flags. */
static inline void cpu_qgroup_c(const cpu_xq_block *xq, int64_t nb, int mr, const uint8_t *wg,
                                lisa_dtype dt, float *out, int64_t ldo) {
    const int q8 = dt == LISA_DTYPE_Q8_0X16;
    const size_t gbytes = (size_t)LISA_PACK_ROWS * (q8 ? sizeof(lisa_block_q8_0)
                                                       : sizeof(lisa_block_q4_0));
    const int32_t off = q8 ? 128 : 8;
    float acc[CPU_QMR][LISA_PACK_ROWS];
    memset(acc, 0, sizeof acc);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *gb = wg + (size_t)b * gbytes, *u = gb + 2 * LISA_PACK_ROWS;
        float dw[LISA_PACK_ROWS];
        for (int r = 0; r < LISA_PACK_ROWS; r++) {
            uint16_t h;
            memcpy(&h, gb + 2 * r, 2);
            dw[r] = lisa_f16_to_f32(h);
        }
        for (int i = 0; i < mr; i++) {
            const cpu_xq_block *xb = xq + (size_t)i * (size_t)nb + b;
            int32_t dot[LISA_PACK_ROWS];
            for (int r = 0; r < LISA_PACK_ROWS; r++) dot[r] = -off * xb->sum;
            if (q8) {
                for (int j = 0; j < LISA_QK / 4; j++)
                    for (int r = 0; r < LISA_PACK_ROWS; r++)
                        for (int k = 0; k < 4; k++)
                            dot[r] += (int32_t)u[(j * LISA_PACK_ROWS + r) * 4 + k] * xb->qs[4 * j + k];
            } else {
                for (int j = 0; j < LISA_QK / 8; j++)
                    for (int r = 0; r < LISA_PACK_ROWS; r++)
                        for (int k = 0; k < 4; k++) {
                            int32_t v = u[(j * LISA_PACK_ROWS + r) * 4 + k];
                            dot[r] += (v & 15) * xb->qs[4 * j + k] + (v >> 4) * xb->qs[16 + 4 * j + k];
                        }
            }
            for (int r = 0; r < LISA_PACK_ROWS; r++)
                acc[i][r] = fmaf((float)dot[r], dw[r] * xb->d, acc[i][r]);
        }
    }
    for (int i = 0; i < mr; i++) memcpy(out + (size_t)i * (size_t)ldo, acc[i], sizeof acc[i]);
}

/* The kernels of the best instruction set this CPU runs (checked once),
 * or the portable ones; `want` "avx512", "avx2" or "generic" forces one
 * (NULL: the best), falling back to generic when the CPU lacks it. */
const cpu_mm_isa *cpu_mm_isa_get(const char *want);

/* Per-thread floats cpu_mm_run needs for an isa and chunk width kc. */
size_t cpu_mm_scratch_need(const cpu_mm_isa *isa, int64_t kc);

/* out (M, N) = x (M, K) @ w (N, K)^T, rows of panels [p0, p1) only, in
 * chunks of kc columns (a multiple of LISA_QK unless kc >= K), with scratch
 * (cpu_mm_scratch_need floats) of the calling thread. */
void cpu_mm_run(const cpu_mm_isa *isa, float *out, const float *x, int64_t M, int64_t K,
                const lisa_tensor *w, int64_t p0, int64_t p1, int64_t kc, float *scratch);

/* matmul-avx512.c / matmul-avx2.c: NULL when the file was built without
 * its instruction set (non-x86 targets). */
const cpu_mm_isa *cpu_mm_isa_avx512(void);
const cpu_mm_isa *cpu_mm_isa_avx2(void);

/* The bf16 dot-product path (opt-in: lisa_backend_params.cpu_bf16_dot),
 * llama.cpp's numerics for BF16 weights and what the CUDA backend and torch
 * compute in bf16: activation rows are rounded to bf16 (cpu_bf16_round_row,
 * round to nearest even as lisa_f32_to_bf16) and multiplied with bf16 rows
 * of w as they are, with AVX512-BF16's vdpbf16ps (32 products, exact, added
 * in pairs into 16 fp32 lanes per instruction: twice the multiply-adds of
 * an fp32 FMA). Lane l of an output sums the pairs k = 2l, 2l + 1 of every
 * 32 columns, in order of k, carried across chunks in the accumulator
 * buffer and reduced in one fixed order: a row's result depends on its own
 * x row and w only, as in the fp32 path (batch invariance). Not bit-equal
 * to the fp32 path (x is rounded) and with no portable twin: the engine
 * uses it only where the CPU has AVX512-BF16. */

/* x (K) fp32 -> dst (K) bf16 (the same bits as lisa_f32_to_bf16). */
typedef void (*cpu_bf16_round_row_fn)(uint16_t *dst, const float *x, int64_t K);
/* out (M, N) = xb (M, K) bf16 @ w (N, K)^T for w BF16, rows of panels of
 * CPU_BF16_NR weight rows [p0, p1) only, M <= CPU_MM_MB, with acc (M *
 * CPU_BF16_NR * 16 floats) of the calling thread. */
typedef void (*cpu_bf16_dot_fn)(float *out, const uint16_t *xb, int64_t M, int64_t K,
                                const lisa_tensor *w, int64_t p0, int64_t p1, float *acc);
#define CPU_BF16_NR 6
/* NULL when the CPU (or the build) lacks AVX512-BF16. */
cpu_bf16_dot_fn cpu_mm_bf16_dot_avx512(void);
cpu_bf16_round_row_fn cpu_mm_bf16_round_avx512(void);

#endif
