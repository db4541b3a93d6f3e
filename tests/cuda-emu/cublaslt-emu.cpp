/* cublaslt-emu.cpp: the CUDA emulator's cuBLASLt (include/cublasLt.h).
 *
 * D = alpha * op(A) op(B) + beta * C on column-major layouts, computed by
 * widening the operands to fp32, calling cblas_sgemm and rounding D to its
 * type: what cuBLASLt does with CUBLAS_COMPUTE_32F up to summation order.
 * The heuristic "chooses" an algorithm that remembers the minimum pointer
 * alignments it was asked for; cublasLtMatmul then refuses pointers that
 * are less aligned, operands that reach past their allocation, and host
 * pointers, each with a message naming the operand.
 *
 * Deliberately not here: epilogues, batched or strided layouts, TF32, any
 * compute type other than 32F. */
#include <cblas.h>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "cublasLt.h"
#include "dtype.h"


struct cuemu_lt_handle {
    int unused;
};
struct cuemu_lt_desc {
    cublasComputeType_t compute;
    cudaDataType_t scale;
    cublasOperation_t ta, tb;
};
struct cuemu_lt_layout {
    cudaDataType_t type;
    uint64_t rows, cols;
    int64_t ld;
};
struct cuemu_lt_pref {
    size_t workspace;
    uint32_t align[4]; /* A, B, C, D */
};

static size_t type_size(cudaDataType_t t) { return t == CUDA_R_32F ? 4 : 2; }

static float widen(const void *p, cudaDataType_t t, size_t i) {
    if (t == CUDA_R_32F) return ((const float *)p)[i];
    uint16_t h = ((const uint16_t *)p)[i];
    return t == CUDA_R_16BF ? lisa_bf16_to_f32(h) : lisa_f16_to_f32(h);
}

static void narrow(void *p, cudaDataType_t t, size_t i, float v) {
    if (t == CUDA_R_32F)
        ((float *)p)[i] = v;
    else
        ((uint16_t *)p)[i] = t == CUDA_R_16BF ? lisa_f32_to_bf16(v) : lisa_f32_to_f16(v);
}

static bool type_ok(cudaDataType_t t) { return t == CUDA_R_32F || t == CUDA_R_16F || t == CUDA_R_16BF; }

cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) {
    *h = new cuemu_lt_handle{0};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) {
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t compute,
                                        cudaDataType_t scale) {
    if (compute != CUBLAS_COMPUTE_32F || scale != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
    *d = new cuemu_lt_desc{compute, scale, CUBLAS_OP_N, CUBLAS_OP_N};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
    delete d;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d,
                                              cublasLtMatmulDescAttributes_t attr,
                                              const void *buf, size_t size) {
    if (size != sizeof(cublasOperation_t)) return CUBLAS_STATUS_INVALID_VALUE;
    cublasOperation_t op;
    memcpy(&op, buf, sizeof op);
    if (op != CUBLAS_OP_N && op != CUBLAS_OP_T) return CUBLAS_STATUS_INVALID_VALUE;
    if (attr == CUBLASLT_MATMUL_DESC_TRANSA)
        d->ta = op;
    else if (attr == CUBLASLT_MATMUL_DESC_TRANSB)
        d->tb = op;
    else
        return CUBLAS_STATUS_NOT_SUPPORTED;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType_t type,
                                          uint64_t rows, uint64_t cols, int64_t ld) {
    if (!type_ok(type) || ld < (int64_t)rows || ld < 1) return CUBLAS_STATUS_INVALID_VALUE;
    *l = new cuemu_lt_layout{type, rows, cols, ld};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
    delete l;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) {
    *p = new cuemu_lt_pref{0, {256, 256, 256, 256}};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
    delete p;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                    cublasLtMatmulPreferenceAttributes_t attr,
                                                    const void *buf, size_t size) {
    if (attr == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES) {
        if (size != sizeof(uint64_t)) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&p->workspace, buf, sizeof p->workspace);
        return CUBLAS_STATUS_SUCCESS;
    }
    if (attr >= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES &&
        attr <= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES) {
        if (size != sizeof(uint32_t)) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&p->align[attr - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES], buf, sizeof(uint32_t));
        return CUBLAS_STATUS_SUCCESS;
    }
    return CUBLAS_STATUS_NOT_SUPPORTED;
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t,
                                              cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                              cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d,
                                              cublasLtMatmulPreference_t pref, int requested,
                                              cublasLtMatmulHeuristicResult_t *results,
                                              int *found) {
    if (requested < 1) return CUBLAS_STATUS_INVALID_VALUE;
    if (a->type != b->type || c->type != d->type) return CUBLAS_STATUS_NOT_SUPPORTED;
    memset(results, 0, sizeof *results);
    /* the "algorithm" is the minimum alignment of each operand it may
     * assume (256 bytes unless the preference says otherwise, as on a GPU) */
    for (int i = 0; i < 4; i++) results->algo.data[i] = pref->align[i];
    results->state = CUBLAS_STATUS_SUCCESS;
    *found = 1;
    return CUBLAS_STATUS_SUCCESS;
}

static bool operand_ok(const char *name, const void *p, const cuemu_lt_layout *l,
                       uint64_t min_align) {
    size_t es = type_size(l->type);
    size_t extent = l->cols == 0 ? 0 : ((size_t)(l->cols - 1) * (size_t)l->ld + l->rows) * es;
    if (extent && !cuemu::device_range(p, extent)) {
        fprintf(stderr, "cuda-emu: cublasLtMatmul: %s (%p, %llu x %llu, ld %lld) is not inside "
                        "one device allocation\n", name, p, (unsigned long long)l->rows,
                (unsigned long long)l->cols, (long long)l->ld);
        return false;
    }
    if (min_align && (uintptr_t)p % min_align != 0) {
        fprintf(stderr, "cuda-emu: cublasLtMatmul: %s at %p is not aligned to the %llu bytes "
                        "its algorithm was chosen for\n", name, p, (unsigned long long)min_align);
        return false;
    }
    return true;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t d, const void *alpha,
                              const void *A, cublasLtMatrixLayout_t a, const void *B,
                              cublasLtMatrixLayout_t b, const void *beta, const void *C,
                              cublasLtMatrixLayout_t c, void *D, cublasLtMatrixLayout_t dl,
                              const cublasLtMatmulAlgo_t *algo, void *, size_t, cudaStream_t) {
    uint64_t m = d->ta == CUBLAS_OP_N ? a->rows : a->cols, k = d->ta == CUBLAS_OP_N ? a->cols : a->rows;
    uint64_t kb = d->tb == CUBLAS_OP_N ? b->rows : b->cols, n = d->tb == CUBLAS_OP_N ? b->cols : b->rows;
    if (k != kb || c->rows != m || c->cols != n || dl->rows != m || dl->cols != n ||
        a->type != b->type || c->type != dl->type) {
        fprintf(stderr, "cuda-emu: cublasLtMatmul: layouts disagree (op(A) %llu x %llu, op(B) "
                        "%llu x %llu, C %llu x %llu, D %llu x %llu)\n",
                (unsigned long long)m, (unsigned long long)k, (unsigned long long)kb,
                (unsigned long long)n, (unsigned long long)c->rows, (unsigned long long)c->cols,
                (unsigned long long)dl->rows, (unsigned long long)dl->cols);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (!operand_ok("A", A, a, algo->data[0]) || !operand_ok("B", B, b, algo->data[1]) ||
        !operand_ok("C", C, c, algo->data[2]) || !operand_ok("D", D, dl, algo->data[3]))
        return CUBLAS_STATUS_EXECUTION_FAILED;
    if (cuemu::capturing()) {
        /* recorded with everything by value: descriptors may be gone at replay */
        cuemu_lt_desc dd = *d;
        cuemu_lt_layout la = *a, lb = *b, lc = *c, ld = *dl;
        float al, be;
        memcpy(&al, alpha, sizeof al);
        memcpy(&be, beta, sizeof be);
        cublasLtMatmulAlgo_t alg = *algo;
        cuemu::capture_add([=]() mutable {
            cublasLtMatmul(NULL, &dd, &al, A, &la, B, &lb, &be, C, &lc, D, &ld, &alg, NULL, 0,
                           NULL);
        });
        return CUBLAS_STATUS_SUCCESS;
    }
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    float al, be;
    memcpy(&al, alpha, sizeof al);
    memcpy(&be, beta, sizeof be);
    /* dense fp32 copies: fa (a->rows, a->cols), fb likewise, fc (m, n) */
    std::vector<float> fa(a->rows * a->cols), fb(b->rows * b->cols), fc(m * n);
    for (uint64_t j = 0; j < a->cols; j++)
        for (uint64_t i = 0; i < a->rows; i++) fa[j * a->rows + i] = widen(A, a->type, j * a->ld + i);
    for (uint64_t j = 0; j < b->cols; j++)
        for (uint64_t i = 0; i < b->rows; i++) fb[j * b->rows + i] = widen(B, b->type, j * b->ld + i);
    if (be != 0.0f)
        for (uint64_t j = 0; j < n; j++)
            for (uint64_t i = 0; i < m; i++) fc[j * m + i] = widen(C, c->type, j * c->ld + i);
    if (k == 0) {
        for (auto &v : fc) v *= be;
    } else {
        cblas_sgemm(CblasColMajor, d->ta == CUBLAS_OP_N ? CblasNoTrans : CblasTrans,
                    d->tb == CUBLAS_OP_N ? CblasNoTrans : CblasTrans, (int)m, (int)n, (int)k, al,
                    fa.data(), (int)a->rows, fb.data(), (int)b->rows, be, fc.data(), (int)m);
    }
    for (uint64_t j = 0; j < n; j++)
        for (uint64_t i = 0; i < m; i++) narrow(D, dl->type, j * dl->ld + i, fc[j * m + i]);
    return CUBLAS_STATUS_SUCCESS;
}
