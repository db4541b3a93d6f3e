/* resample.c: Pillow 9.4's 8-bit convolution resampler (see resample.h).
 *
 * The arithmetic follows Resample.c operation for operation where the
 * result depends on it: the float box edges, the order of the double
 * expressions in the coefficient and filter formulas, (int) truncation,
 * and the 32-bit fixed-point accumulation. Loop order and buffer layout are
 * our own. It deliberately has no SIMD or threading yet: preprocessing is a
 * few milliseconds next to the vision towers. */
#include "resample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PRECISION_BITS (32 - 8 - 2)

typedef struct {
    double (*fn)(double x);
    double support;
} resample_kernel;

static double kernel_bilinear(double x) {
    if (x < 0.0) x = -x;
    if (x < 1.0) return 1.0 - x;
    return 0.0;
}

static double kernel_bicubic(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

/* Per output index: first input index, tap count, and ksize fixed-point
 * weights at k[i*ksize]. */
typedef struct {
    int ksize;
    int *xmin, *xcount;
    int32_t *k;
} resample_coeffs;

static void coeffs_free(resample_coeffs *c) {
    free(c->xmin);
    free(c->xcount);
    free(c->k);
    memset(c, 0, sizeof *c);
}

static lisa_status coeffs_init(resample_coeffs *c, int in_size, int out_size,
                               const resample_kernel *kern) {
    memset(c, 0, sizeof *c);
    /* Pillow's box is float[4] = (0, 0, w, h); the span is a float difference. */
    float in0 = 0.0f, in1 = (float)in_size;
    double scale = (double)(in1 - in0) / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = kern->support * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    c->ksize = ksize;
    c->xmin = malloc(sizeof(int) * (size_t)out_size);
    c->xcount = malloc(sizeof(int) * (size_t)out_size);
    c->k = calloc((size_t)out_size * (size_t)ksize, sizeof(int32_t));
    double *w = malloc(sizeof(double) * (size_t)ksize);
    if (!c->xmin || !c->xcount || !c->k || !w) {
        free(w);
        coeffs_free(c);
        return lisa_error_set(LISA_ERR_NOMEM, "out of memory for resampling coefficients");
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = in0 + (xx + 0.5) * scale;
        double ww = 0.0;
        double ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        for (int x = 0; x < xmax; x++) {
            double v = kern->fn((x + xmin - center + 0.5) * ss);
            w[x] = v;
            ww += v;
        }
        int32_t *k = c->k + (size_t)xx * ksize;
        for (int x = 0; x < xmax; x++) {
            double v = ww != 0.0 ? w[x] / ww : w[x];
            k[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PRECISION_BITS))
                         : (int32_t)(0.5 + v * (1 << PRECISION_BITS));
        }
        c->xmin[xx] = xmin;
        c->xcount[xx] = xmax;
    }
    free(w);
    return LISA_OK;
}

/* Pillow's clip8 of ((1<<21) + sum) >> 22: a negative sum gives 0 (so the
 * shift only ever sees non-negative values), above 255 gives 255. */
static inline uint8_t clip8(int32_t ss) {
    if (ss < 0) return 0;
    ss >>= PRECISION_BITS;
    return ss > 255 ? 255 : (uint8_t)ss;
}

/* Horizontal pass over rows [y0, y0+rows) of src into dst (rows x dw). */
static void pass_horizontal(const uint8_t *src, int sw, int y0, int rows, int ch,
                            uint8_t *dst, int dw, const resample_coeffs *c) {
    for (int y = 0; y < rows; y++) {
        const uint8_t *in = src + (size_t)(y0 + y) * sw * ch;
        uint8_t *out = dst + (size_t)y * dw * ch;
        for (int xx = 0; xx < dw; xx++) {
            const int32_t *k = c->k + (size_t)xx * c->ksize;
            const uint8_t *p = in + (size_t)c->xmin[xx] * ch;
            int n = c->xcount[xx];
            for (int b = 0; b < ch; b++) {
                int32_t ss = 1 << (PRECISION_BITS - 1);
                for (int x = 0; x < n; x++) ss += (int32_t)p[x * ch + b] * k[x];
                out[xx * ch + b] = clip8(ss);
            }
        }
    }
}

/* Vertical pass: src (w wide, starting at source row y_first) to dst (dh rows). */
static void pass_vertical(const uint8_t *src, int w, int y_first, int ch, uint8_t *dst, int dh,
                          const resample_coeffs *c) {
    size_t stride = (size_t)w * ch;
    for (int yy = 0; yy < dh; yy++) {
        const int32_t *k = c->k + (size_t)yy * c->ksize;
        const uint8_t *in = src + (size_t)(c->xmin[yy] - y_first) * stride;
        int n = c->xcount[yy];
        uint8_t *out = dst + (size_t)yy * stride;
        for (size_t i = 0; i < stride; i++) {
            int32_t ss = 1 << (PRECISION_BITS - 1);
            for (int y = 0; y < n; y++) ss += (int32_t)in[(size_t)y * stride + i] * k[y];
            out[i] = clip8(ss);
        }
    }
}

lisa_status lisa_resample_u8(const uint8_t *src, int sw, int sh, int channels, uint8_t *dst,
                             int dw, int dh, lisa_resample_filter filter) {
    static const resample_kernel bilinear = {kernel_bilinear, 1.0};
    static const resample_kernel bicubic = {kernel_bicubic, 2.0};
    if (!src || !dst || sw < 1 || sh < 1 || dw < 1 || dh < 1 || channels < 1 || channels > 4)
        return lisa_error_set(LISA_ERR_ARG, "resample: bad sizes %dx%d -> %dx%d (%d channels)",
                              sw, sh, dw, dh, channels);
    const resample_kernel *kern;
    if (filter == LISA_RESAMPLE_BILINEAR) kern = &bilinear;
    else if (filter == LISA_RESAMPLE_BICUBIC) kern = &bicubic;
    else return lisa_error_set(LISA_ERR_ARG, "resample: unknown filter %d", (int)filter);

    int need_h = dw != sw, need_v = dh != sh;
    if (!need_h && !need_v) {
        memcpy(dst, src, (size_t)sw * sh * channels);
        return LISA_OK;
    }
    resample_coeffs cv = {0}, chz = {0};
    uint8_t *tmp = NULL;
    lisa_status st = coeffs_init(&cv, sh, dh, kern);
    if (st != LISA_OK) return st;
    /* Rows of the source the vertical pass reads (Pillow's ybox). */
    int y_first = cv.xmin[0];
    int y_last = cv.xmin[dh - 1] + cv.xcount[dh - 1];
    if (need_h) {
        st = coeffs_init(&chz, sw, dw, kern);
        if (st != LISA_OK) goto done;
        if (!need_v) {
            pass_horizontal(src, sw, 0, sh, channels, dst, dw, &chz);
            goto done;
        }
        tmp = malloc((size_t)dw * (size_t)(y_last - y_first) * channels);
        if (!tmp) {
            st = lisa_error_set(LISA_ERR_NOMEM, "resample: out of memory");
            goto done;
        }
        pass_horizontal(src, sw, y_first, y_last - y_first, channels, tmp, dw, &chz);
        pass_vertical(tmp, dw, y_first, channels, dst, dh, &cv);
    } else {
        pass_vertical(src, sw, 0, channels, dst, dh, &cv);
    }
done:
    free(tmp);
    coeffs_free(&cv);
    coeffs_free(&chz);
    return st;
}

lisa_status lisa_resample_image(const lisa_image *src, int dw, int dh,
                                lisa_resample_filter filter, lisa_image *dst) {
    LISA_TRY(lisa_image_init(dst, dw, dh));
    lisa_status st = lisa_resample_u8(src->rgb, src->w, src->h, 3, dst->rgb, dw, dh, filter);
    if (st != LISA_OK) lisa_image_free(dst);
    return st;
}
