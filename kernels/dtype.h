/* dtype.h: element types of weights and activations, and scalar conversions.
 *
 * F32 is the compute type on the CPU. F16 and BF16 appear as file dtypes of
 * checkpoints and, on GPUs, as compute types. Conversions are exact in the
 * widening direction and round-to-nearest-even in the narrowing one, as
 * torch does. */
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
    LISA_DTYPE_COUNT
} lisa_dtype;

size_t lisa_dtype_size(lisa_dtype t);
const char *lisa_dtype_name(lisa_dtype t);

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

/* Widens n elements of type t at src into dst (fp32). */
void lisa_dtype_to_f32(float *dst, const void *src, lisa_dtype t, size_t n);
/* Narrows n fp32 values into dst of float type t (round to nearest even). */
void lisa_dtype_from_f32(void *dst, lisa_dtype t, const float *src, size_t n);
/* Converts n elements between float types (a copy when they are equal). */
void lisa_dtype_convert(void *dst, lisa_dtype dt, const void *src, lisa_dtype st, size_t n);

#ifdef __cplusplus
}
#endif

#endif
