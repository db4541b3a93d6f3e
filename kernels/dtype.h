/* dtype.h: element types of weights and activations, and scalar conversions.
 *
 * F32 is the compute type on the CPU. F16 and BF16 appear as file dtypes of
 * checkpoints and, on GPUs, as compute types. Conversions are exact in the
 * widening direction and round-to-nearest-even in the narrowing one, as
 * torch does.
 *
 * Q8_0 and Q4_0 are weight-only block types with llama.cpp's block layouts
 * (ggml-common.h), chosen so the bytes are the ones GGUF files hold and the
 * format is documented elsewhere already: a row of K elements (K % 32 == 0)
 * is K/32 blocks of 32 consecutive elements, each block an fp16 scale d and
 *  - Q8_0 (34 bytes): qs[32] int8, x[i] = d * qs[i];
 *  - Q4_0 (18 bytes): qs[16] bytes, x[j] = d * ((qs[j] & 15) - 8) and
 *    x[j + 16] = d * ((qs[j] >> 4) - 8) for j < 16.
 * They are storage types: only matmul weights (and tables read by rows) are
 * ever in them, never activations. Quantization is llama.cpp's reference
 * rounding (quantize_row_q8_0_ref / q4_0_ref) in fp32, so this file, the
 * converter (scripts/convert-lisa.py) and llama-quantize write the same bytes. */
#ifndef LISA_DTYPE_H
#define LISA_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* NOTE: add new types at the end; sizes live in lisa_dtype_size(). */
#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    LISA_DTYPE_F32 = 0,
    LISA_DTYPE_F16,
    LISA_DTYPE_BF16,
    LISA_DTYPE_I32,
    LISA_DTYPE_Q8_0,
    LISA_DTYPE_Q4_0,
    LISA_DTYPE_Q8_0X16, /* CPU-internal packed layouts: see below */
    LISA_DTYPE_Q4_0X16,
    LISA_DTYPE_COUNT
} lisa_dtype;

/* Elements per block of the block types. */
#define LISA_QK 32

typedef struct {
    uint16_t d;        /* fp16 scale */
    int8_t qs[LISA_QK];
} lisa_block_q8_0;     /* 34 bytes */

typedef struct {
    uint16_t d;        /* fp16 scale */
    uint8_t qs[LISA_QK / 2];
} lisa_block_q4_0;     /* 18 bytes */

/* Q8_0X16 and Q4_0X16: the CPU backend's matmul layout of a Q8_0 / Q4_0
 * weight (N, K) with N % 16 == 0, made at load (lisa_dtype_pack_rows) and
 * never written to a file. The same bytes as the source, reordered so that
 * one 64-byte load holds 4 consecutive quants of 16 rows: an integer dot
 * product instruction then gives 16 rows' partial sums in the 16 lanes of
 * one register (kernels/cpu/matmul-cpu.h). Group g (rows 16g .. 16g+15),
 * block b (columns 32b .. 32b+31) is at byte (g * K/32 + b) * 16 * S
 * (S = 34 or 18, the source block size) and holds
 *  - d[16]: uint16 fp16 scale of each row's block, then
 *  - Q8_0X16: u[8][16][4] uint8, u[j][r][i] = qs_r[4j + i] + 128 (offset
 *    binary: x = d * (u - 128));
 *  - Q4_0X16: u[4][16][4] uint8, u[j][r][i] = qs_r[4j + i] (the source's
 *    packed nibbles: low = element 4j + i, high = element 16 + 4j + i).
 * Row sizes (lisa_dtype_row_bytes) are the source type's. */

/* Bytes per element; for block types, bytes per BLOCK (use
 * lisa_dtype_row_bytes for sizes of runs of elements). */
size_t lisa_dtype_size(lisa_dtype t);
/* "F32", "F16", "BF16", "I32", "Q8_0", "Q4_0". */
const char *lisa_dtype_name(lisa_dtype t);
/* Non-zero for the block types (Q8_0, Q4_0), not their packed layouts. */
int lisa_dtype_is_quant(lisa_dtype t);
/* Non-zero for Q8_0X16 and Q4_0X16. */
int lisa_dtype_is_packed(lisa_dtype t);
/* Q8_0X16 for Q8_0, Q4_0X16 for Q4_0, and back; t itself otherwise. */
lisa_dtype lisa_dtype_packed_of(lisa_dtype t);
lisa_dtype lisa_dtype_unpacked_of(lisa_dtype t);
/* Rows in a packed group (16). */
#define LISA_PACK_ROWS 16
/* Elements per block: LISA_QK for block types, 1 otherwise. */
int64_t lisa_dtype_block(lisa_dtype t);
/* Bytes of n consecutive elements (n a multiple of the block). */
size_t lisa_dtype_row_bytes(lisa_dtype t, int64_t n);

static inline float lisa_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t lisa_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float lisa_f16_to_f32(uint16_t h);
uint16_t lisa_f32_to_f16(float f);

/* Widens n elements of type t at src into dst (fp32); block types are
 * dequantized (n a multiple of LISA_QK). */
void lisa_dtype_to_f32(float *dst, const void *src, lisa_dtype t, size_t n);
/* Narrows n fp32 values into dst of type t (round to nearest even; block
 * types are quantized as lisa_quantize_q8_0 / q4_0 do). */
void lisa_dtype_from_f32(void *dst, lisa_dtype t, const float *src, size_t n);
/* llama.cpp's reference quantizers, n a multiple of LISA_QK:
 * Q8_0: amax = max|x|, d = amax / 127, q = roundf(x / d) (0 when d == 0);
 * Q4_0: m = the x of largest |x| (the first on ties), d = m / -8,
 * q = min(15, (int)(x / d + 8.5)). The scale is stored as fp16 of d, the
 * quants are computed with the fp32 d (as llama.cpp does). */
void lisa_quantize_q8_0(lisa_block_q8_0 *dst, const float *x, size_t n);
void lisa_quantize_q4_0(lisa_block_q4_0 *dst, const float *x, size_t n);
/* Packs rows [0, N) of a Q8_0 or Q4_0 weight (N, K) (N % 16 == 0, K % 32
 * == 0) into its X16 layout at dst (not overlapping src), and the inverse. */
void lisa_dtype_pack_rows(void *dst, const void *src, lisa_dtype t, int64_t N, int64_t K);
void lisa_dtype_unpack_rows(void *dst, const void *src, lisa_dtype packed, int64_t N, int64_t K);
/* Converts n elements between types (a copy when they are equal; packed
 * types only to themselves). */
void lisa_dtype_convert(void *dst, lisa_dtype dt, const void *src, lisa_dtype st, size_t n);

#ifdef __cplusplus
}
#endif

#endif
