/* cuda_bf16.h (CUDA emulator): __nv_bfloat16 as its bits, converted with
 * the engine's round-to-nearest-even conversions (dtype.h), as CUDA's
 * __float2bfloat16 rounds. */
#ifndef CUEMU_CUDA_BF16_H
#define CUEMU_CUDA_BF16_H

#include "dtype.h"

struct __nv_bfloat16 {
    uint16_t x;
};
static inline float __bfloat162float(__nv_bfloat16 h) { return lisa_bf16_to_f32(h.x); }
static inline __nv_bfloat16 __float2bfloat16(float f) {
    __nv_bfloat16 h;
    h.x = lisa_f32_to_bf16(f);
    return h;
}

#endif
