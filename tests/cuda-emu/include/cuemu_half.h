/* cuemu_half.h (CUDA emulator): __half and __nv_bfloat16 as their bits,
 * converted with the engine's round-to-nearest-even conversions (dtype.h),
 * which is how CUDA's __float2half and __float2bfloat16 round. Included by
 * the emulated cuda_fp16.h and cuda_bf16.h. */
#ifndef CUEMU_HALF_H
#define CUEMU_HALF_H

#include "dtype.h"

struct __half {
    uint16_t x;
};
struct __nv_bfloat16 {
    uint16_t x;
};

static inline float __half2float(__half h) { return lisa_f16_to_f32(h.x); }
static inline float __bfloat162float(__nv_bfloat16 h) { return lisa_bf16_to_f32(h.x); }

static inline __half __float2half(float f) {
    __half h;
    h.x = lisa_f32_to_f16(f);
    return h;
}

static inline __nv_bfloat16 __float2bfloat16(float f) {
    __nv_bfloat16 h;
    h.x = lisa_f32_to_bf16(f);
    return h;
}

#endif
