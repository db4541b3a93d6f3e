/* dtype.c: dtype sizes, f16/bf16 <-> f32 conversion and the reference
 * Q8_0 / Q4_0 quantizers (see dtype.h). */
#include "dtype.h"

#include <math.h>

size_t lisa_dtype_size(lisa_dtype t) {
    switch (t) {
    case LISA_DTYPE_F32: return 4;
    case LISA_DTYPE_F16: return 2;
    case LISA_DTYPE_BF16: return 2;
    case LISA_DTYPE_I32: return 4;
    case LISA_DTYPE_Q8_0: return sizeof(lisa_block_q8_0);
    case LISA_DTYPE_Q4_0: return sizeof(lisa_block_q4_0);
    case LISA_DTYPE_Q8_0X16: return sizeof(lisa_block_q8_0);
    case LISA_DTYPE_Q4_0X16: return sizeof(lisa_block_q4_0);
    case LISA_DTYPE_COUNT: break;
    }
    return 0;
}

int lisa_dtype_is_quant(lisa_dtype t) { return t == LISA_DTYPE_Q8_0 || t == LISA_DTYPE_Q4_0; }

int lisa_dtype_is_packed(lisa_dtype t) {
    return t == LISA_DTYPE_Q8_0X16 || t == LISA_DTYPE_Q4_0X16;
}

lisa_dtype lisa_dtype_packed_of(lisa_dtype t) {
    return t == LISA_DTYPE_Q8_0 ? LISA_DTYPE_Q8_0X16 : t == LISA_DTYPE_Q4_0 ? LISA_DTYPE_Q4_0X16 : t;
}

lisa_dtype lisa_dtype_unpacked_of(lisa_dtype t) {
    return t == LISA_DTYPE_Q8_0X16 ? LISA_DTYPE_Q8_0 : t == LISA_DTYPE_Q4_0X16 ? LISA_DTYPE_Q4_0 : t;
}

int64_t lisa_dtype_block(lisa_dtype t) {
    return lisa_dtype_is_quant(t) || lisa_dtype_is_packed(t) ? LISA_QK : 1;
}

size_t lisa_dtype_row_bytes(lisa_dtype t, int64_t n) {
    return (size_t)(n / lisa_dtype_block(t)) * lisa_dtype_size(t);
}

const char *lisa_dtype_name(lisa_dtype t) {
    switch (t) {
    case LISA_DTYPE_F32: return "F32";
    case LISA_DTYPE_F16: return "F16";
    case LISA_DTYPE_BF16: return "BF16";
    case LISA_DTYPE_I32: return "I32";
    case LISA_DTYPE_Q8_0: return "Q8_0";
    case LISA_DTYPE_Q4_0: return "Q4_0";
    case LISA_DTYPE_Q8_0X16: return "Q8_0X16";
    case LISA_DTYPE_Q4_0X16: return "Q4_0X16";
    case LISA_DTYPE_COUNT: break;
    }
    return "?";
}

float lisa_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: renormalize */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while ((man & 0x400u) == 0);
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 112u) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t lisa_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t absu = u & 0x7fffffffu;
    if (absu > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);
    if (absu >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* overflow to inf */
    if (absu < 0x38800000u) { /* subnormal or zero in f16 */
        float a;
        memcpy(&a, &absu, 4);
        /* 2^24 scales the smallest subnormal to 1; rint keeps ties-to-even. */
        return (uint16_t)(sign | (uint32_t)rintf(a * 16777216.0f));
    }
    uint32_t r = absu + 0xfffu + ((absu >> 13) & 1u) - 0x38000000u;
    return (uint16_t)(sign | (r >> 13));
}

void lisa_quantize_q8_0(lisa_block_q8_0 *dst, const float *x, size_t n) {
    for (size_t b = 0; b < n / LISA_QK; b++, x += LISA_QK) {
        float amax = 0.0f;
        for (int j = 0; j < LISA_QK; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        dst[b].d = lisa_f32_to_f16(d);
        for (int j = 0; j < LISA_QK; j++) {
            /* |x * id| <= 127 for every finite block; the clamp only keeps
             * a block whose amax is so small that 1 / d overflows (inf * x,
             * 0 * inf = NaN) away from an undefined float-to-int cast */
            float v = x[j] * id;
            v = v != v ? 0.0f : fminf(fmaxf(v, -127.0f), 127.0f);
            dst[b].qs[j] = (int8_t)roundf(v);
        }
    }
}

void lisa_quantize_q4_0(lisa_block_q4_0 *dst, const float *x, size_t n) {
    for (size_t b = 0; b < n / LISA_QK; b++, x += LISA_QK) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < LISA_QK; j++) {
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        const float d = max / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        dst[b].d = lisa_f32_to_f16(d);
        for (int j = 0; j < LISA_QK / 2; j++) {
            /* llama.cpp's MIN(15, (int8_t)(x * id + 8.5f)); the clamp to
             * [0, 15] changes nothing for finite blocks (the value is in
             * [0.5, 16.5]) and keeps the cast defined when 1 / d overflows */
            float x0 = x[j] * id + 8.5f, x1 = x[j + LISA_QK / 2] * id + 8.5f;
            x0 = x0 != x0 ? 8.0f : fminf(fmaxf(x0, 0.0f), 15.0f);
            x1 = x1 != x1 ? 8.0f : fminf(fmaxf(x1, 0.0f), 15.0f);
            int q0 = (int)x0, q1 = (int)x1;
            dst[b].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

static void dequantize_q8_0(float *dst, const lisa_block_q8_0 *b, size_t n) {
    for (size_t i = 0; i < n / LISA_QK; i++) {
        float d = lisa_f16_to_f32(b[i].d);
        for (int j = 0; j < LISA_QK; j++) dst[i * LISA_QK + j] = d * (float)b[i].qs[j];
    }
}

static void dequantize_q4_0(float *dst, const lisa_block_q4_0 *b, size_t n) {
    for (size_t i = 0; i < n / LISA_QK; i++) {
        float d = lisa_f16_to_f32(b[i].d);
        for (int j = 0; j < LISA_QK / 2; j++) {
            dst[i * LISA_QK + j] = d * (float)((b[i].qs[j] & 15) - 8);
            dst[i * LISA_QK + j + LISA_QK / 2] = d * (float)((b[i].qs[j] >> 4) - 8);
        }
    }
}

void lisa_dtype_to_f32(float *dst, const void *src, lisa_dtype t, size_t n) {
    const uint16_t *h = (const uint16_t *)src;
    switch (t) {
    case LISA_DTYPE_Q8_0: dequantize_q8_0(dst, (const lisa_block_q8_0 *)src, n); break;
    case LISA_DTYPE_Q4_0: dequantize_q4_0(dst, (const lisa_block_q4_0 *)src, n); break;
    case LISA_DTYPE_F32: memcpy(dst, src, n * 4); break;
    case LISA_DTYPE_BF16:
        for (size_t i = 0; i < n; i++) dst[i] = lisa_bf16_to_f32(h[i]);
        break;
    case LISA_DTYPE_F16:
        for (size_t i = 0; i < n; i++) dst[i] = lisa_f16_to_f32(h[i]);
        break;
    default: break;
    }
}

void lisa_dtype_from_f32(void *dst, lisa_dtype t, const float *src, size_t n) {
    uint16_t *h = (uint16_t *)dst;
    switch (t) {
    case LISA_DTYPE_Q8_0: lisa_quantize_q8_0((lisa_block_q8_0 *)dst, src, n); break;
    case LISA_DTYPE_Q4_0: lisa_quantize_q4_0((lisa_block_q4_0 *)dst, src, n); break;
    case LISA_DTYPE_F32: memcpy(dst, src, n * 4); break;
    case LISA_DTYPE_BF16:
        for (size_t i = 0; i < n; i++) h[i] = lisa_f32_to_bf16(src[i]);
        break;
    case LISA_DTYPE_F16:
        for (size_t i = 0; i < n; i++) h[i] = lisa_f32_to_f16(src[i]);
        break;
    default: break;
    }
}

/* One row's block b <-> its place in the packed group block gb (see
 * dtype.h); `to_packed` picks the direction. */
static void pack_block(uint8_t *gb, uint8_t *blk, lisa_dtype t, int r, int to_packed) {
    uint16_t *d = (uint16_t *)(void *)gb;
    uint8_t *u = gb + 2 * LISA_PACK_ROWS;
    int q8 = t == LISA_DTYPE_Q8_0;
    int groups = q8 ? LISA_QK / 4 : LISA_QK / 8;
    if (to_packed) memcpy(&d[r], blk, 2);
    else memcpy(blk, &d[r], 2);
    for (int j = 0; j < groups; j++)
        for (int i = 0; i < 4; i++) {
            uint8_t *p = &u[(j * LISA_PACK_ROWS + r) * 4 + i], *q = &blk[2 + 4 * j + i];
            if (to_packed) *p = q8 ? (uint8_t)(*q ^ 0x80u) : *q;
            else *q = q8 ? (uint8_t)(*p ^ 0x80u) : *p;
        }
}

static void pack_rows(uint8_t *packed, uint8_t *plain, lisa_dtype t, int64_t N, int64_t K,
                      int to_packed) {
    size_t S = lisa_dtype_size(t);
    int64_t nb = K / LISA_QK;
    for (int64_t n = 0; n < N; n++) {
        uint8_t *row = plain + (size_t)n * (size_t)nb * S;
        uint8_t *grp = packed + (size_t)(n / LISA_PACK_ROWS) * (size_t)nb * LISA_PACK_ROWS * S;
        for (int64_t b = 0; b < nb; b++)
            pack_block(grp + (size_t)b * LISA_PACK_ROWS * S, row + (size_t)b * S, t,
                       (int)(n % LISA_PACK_ROWS), to_packed);
    }
}

void lisa_dtype_pack_rows(void *dst, const void *src, lisa_dtype t, int64_t N, int64_t K) {
    pack_rows(dst, (uint8_t *)(uintptr_t)src, t, N, K, 1);
}

void lisa_dtype_unpack_rows(void *dst, const void *src, lisa_dtype packed, int64_t N, int64_t K) {
    pack_rows((uint8_t *)(uintptr_t)src, dst, lisa_dtype_unpacked_of(packed), N, K, 0);
}

void lisa_dtype_convert(void *dst, lisa_dtype dt, const void *src, lisa_dtype st, size_t n) {
    if (dt == st) {
        memcpy(dst, src, lisa_dtype_row_bytes(dt, (int64_t)n));
        return;
    }
    /* chunks of 1024 elements: a multiple of every block */
    float buf[1024];
    for (size_t i = 0; i < n; i += 1024) {
        size_t c = n - i < 1024 ? n - i : 1024;
        lisa_dtype_to_f32(buf, (const char *)src + lisa_dtype_row_bytes(st, (int64_t)i), st, c);
        lisa_dtype_from_f32((char *)dst + lisa_dtype_row_bytes(dt, (int64_t)i), dt, buf, c);
    }
}
