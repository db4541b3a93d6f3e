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
 * and is reduced in one fixed order at the end. So a row's result depends
 * on nothing but its own x row and w: not on M, on which rows share the
 * call, on the blocking or on the threads (batch invariance: see
 * backend-cpu.c).
 *
 * Deliberately not here: quantized activations (the weights are widened,
 * the arithmetic is fp32) and any model knowledge. */
#ifndef LISA_MATMUL_CPU_H
#define LISA_MATMUL_CPU_H

#include "backend.h"

/* Columns of w widened per panel chunk (a multiple of every VL and of
 * LISA_QK): 6 rows x 512 fp32 = 12 KB. */
#define CPU_MM_KC 512
/* Activation rows per pass over a panel chunk: bounds the accumulator
 * buffer (MB x NR x VL floats per thread). */
#define CPU_MM_MB 128

typedef struct cpu_mm_isa {
    const char *name;  /* "avx512", "avx2", "generic" */
    int mr, nr, vl;    /* rows per block, weight rows per panel, lanes */
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
} cpu_mm_isa;

/* The kernels of the best instruction set this CPU runs (checked once),
 * or the portable ones; `want` "avx512", "avx2" or "generic" forces one
 * (NULL: the best), falling back to generic when the CPU lacks it. */
const cpu_mm_isa *cpu_mm_isa_get(const char *want);

/* The columns widened per panel chunk for a call of M rows and K columns
 * (CPU_MM_KC: whole rows were tried for small M and lost, the widened
 * panel then leaves L1; calls of up to mr rows take the direct kernel where
 * there is one). Chunking changes no result (the lane sums run in the same
 * order). */
int64_t cpu_mm_chunk(int64_t M, int64_t K);

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

#endif
