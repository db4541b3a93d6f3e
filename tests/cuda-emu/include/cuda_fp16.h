/* cuda_fp16.h (CUDA emulator): __half as its bits, converted with the
 * engine's round-to-nearest-even conversions (dtype.h), which CUDA's
 * __float2half also uses. */
#ifndef CUEMU_CUDA_FP16_H
#define CUEMU_CUDA_FP16_H

#include "dtype.h"

struct __half {
    uint16_t x;
};
static inline float __half2float(__half h) { return lisa_f16_to_f32(h.x); }
static inline __half __float2half(float f) {
    __half h;
    h.x = lisa_f32_to_f16(f);
    return h;
}

#endif
