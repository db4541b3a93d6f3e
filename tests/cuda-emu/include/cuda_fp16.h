/* cuda_fp16.h (CUDA emulator): __half; see cuemu_half.h. */
#include "cuemu_half.h"
