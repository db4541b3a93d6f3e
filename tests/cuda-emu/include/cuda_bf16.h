/* cuda_bf16.h (CUDA emulator): __nv_bfloat16; see cuemu_half.h. */
#include "cuemu_half.h"
