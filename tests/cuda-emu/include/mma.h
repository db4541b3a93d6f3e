/* mma.h (CUDA emulator): nvcuda::wmma for 16x16x16 tiles with 16-bit
 * operands and fp32 accumulators, the shapes kernels/cuda uses.
 *
 * A fragment's element order is unspecified in CUDA; here every lane holds
 * the whole tile, row-major (num_elements = 256), so code that stays within
 * the API (touching x[i] only through mappings learnt from a loaded
 * fragment, as the row-index trick in attention.cu does) behaves as on a GPU,
 * and code that assumes a particular hardware layout does not pass. The
 * load/store calls check CUDA's requirements: a 32-byte aligned pointer and
 * a leading dimension that is a multiple of 8 elements (16-bit) or 4 (fp32).
 * Loads and stores do not synchronize the warp: a lane reading shared memory
 * that other lanes wrote needs the __syncwarp() a GPU needs. */
#ifndef CUEMU_MMA_H
#define CUEMU_MMA_H

#include <cstdio>
#include <cstdlib>

#include "cuda_bf16.h"
#include "cuda_fp16.h"
#include "cuda_runtime.h"

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

static inline float elem_f32(float v) { return v; }
static inline float elem_f32(__nv_bfloat16 v) { return __bfloat162float(v); }
static inline float elem_f32(__half v) { return __half2float(v); }

template <class Use, int M, int N, int K, class T, class Layout = void> struct fragment {
    static_assert(M == 16 && N == 16 && K == 16, "cuda-emu: only 16x16x16 wmma tiles");
    enum { num_elements = 256 };
    T x[256]; /* element (r, c) at x[r * 16 + c] */
};

/* CUDA's requirements, and for device memory that the 16 x 16 tile (rows
 * or columns ldm apart) lies inside one allocation. */
static inline void check_ptr(const void *p, unsigned ldm, size_t elem) {
    if ((uintptr_t)p % 32 != 0 || (ldm * elem) % 16 != 0) {
        fprintf(stderr, "cuda-emu: wmma load/store at %p with ldm %u: CUDA needs a 32-byte "
                        "aligned pointer and ldm a multiple of 16 bytes\n", p, ldm);
        abort();
    }
    if (cuemu::device_range(p, 1) && !cuemu::device_range(p, (15 * (size_t)ldm + 16) * elem)) {
        fprintf(stderr, "cuda-emu: wmma tile at %p (ldm %u) reaches past its device "
                        "allocation\n", p, ldm);
        abort();
    }
}

template <class Use, class T, class Layout>
void load_matrix_sync(fragment<Use, 16, 16, 16, T, Layout> &f, const T *p, unsigned ldm) {
    static_assert(std::is_same<Layout, row_major>::value || std::is_same<Layout, col_major>::value,
                  "matrix_a/matrix_b fragments carry their layout");
    check_ptr(p, ldm, sizeof(T));
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 16; c++)
            f.x[r * 16 + c] = std::is_same<Layout, row_major>::value ? p[r * ldm + c] : p[c * ldm + r];
}

static inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float> &f, const float *p,
                                    unsigned ldm, layout_t l) {
    check_ptr(p, ldm, 4);
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 16; c++) f.x[r * 16 + c] = l == mem_row_major ? p[r * ldm + c] : p[c * ldm + r];
}

static inline void store_matrix_sync(float *p, const fragment<accumulator, 16, 16, 16, float> &f,
                                     unsigned ldm, layout_t l) {
    check_ptr(p, ldm, 4);
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 16; c++) {
            if (l == mem_row_major)
                p[r * ldm + c] = f.x[r * 16 + c];
            else
                p[c * ldm + r] = f.x[r * 16 + c];
        }
}

template <class Use, class T, class Layout>
void fill_fragment(fragment<Use, 16, 16, 16, T, Layout> &f, T v) {
    for (int i = 0; i < 256; i++) f.x[i] = v;
}

/* d = a b + c, products and sums in fp32 */
template <class T, class LA, class LB>
void mma_sync(fragment<accumulator, 16, 16, 16, float> &d,
              const fragment<matrix_a, 16, 16, 16, T, LA> &a,
              const fragment<matrix_b, 16, 16, 16, T, LB> &b,
              const fragment<accumulator, 16, 16, 16, float> &c) {
    float r[256];
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++) {
            float s = c.x[i * 16 + j];
            for (int k = 0; k < 16; k++) s += elem_f32(a.x[i * 16 + k]) * elem_f32(b.x[k * 16 + j]);
            r[i * 16 + j] = s;
        }
    for (int i = 0; i < 256; i++) d.x[i] = r[i];
}

} // namespace wmma
} // namespace nvcuda

#endif
