/* preprocess.c: CLIP and SAM preprocessing branches (see preprocess.h).
 *
 * The float constants are written as (float)<double literal>, the path
 * numpy (np.array(list, float32)) and torch (torch.Tensor(list)) take:
 * decimal to double, then double to float. It deliberately does no
 * resizing of its own: resample.c does Pillow's part. */
#include "preprocess.h"

#include <stdlib.h>
#include <string.h>

#include "resample.h"

static const double k_clip_mean[3] = {0.48145466, 0.4578275, 0.40821073};
static const double k_clip_std[3] = {0.26862954, 0.26130258, 0.27577711};
static const double k_sam_mean[3] = {123.675, 116.28, 103.53};
static const double k_sam_std[3] = {58.395, 57.12, 57.375};

void lisa_preprocess_clip_size(int h, int w, int size, int *rh, int *rw) {
    /* transformers get_resize_output_image_size(default_to_square=False):
     * int(size * long / short) with Python's true division. */
    int sh = w <= h ? w : h, lg = w <= h ? h : w;
    int new_long = (int)((double)((long long)size * lg) / (double)sh);
    if (w <= h) {
        *rw = size;
        *rh = new_long;
    } else {
        *rh = size;
        *rw = new_long;
    }
}

void lisa_preprocess_sam_size(int h, int w, int long_side, int *nh, int *nw) {
    double scale = long_side * 1.0 / (h > w ? h : w);
    double newh = h * scale, neww = w * scale;
    *nh = (int)(newh + 0.5);
    *nw = (int)(neww + 0.5);
}

float lisa_preprocess_clip_value(int c, uint8_t v) {
    float x = (float)((double)v * (1.0 / 255.0));
    return (x - (float)k_clip_mean[c]) / (float)k_clip_std[c];
}

float lisa_preprocess_sam_value(int c, uint8_t v) {
    return ((float)v - (float)k_sam_mean[c]) / (float)k_sam_std[c];
}

void lisa_preprocessed_free(lisa_preprocessed *p) {
    if (!p) return;
    lisa_image_free(&p->resized);
    free(p->chw);
    memset(p, 0, sizeof *p);
}

/* Fills out->chw (3 x th x tw, zeroed first) from the resized image placed
 * at the top-left, with map(c, v). */
static lisa_status fill_tensor(lisa_preprocessed *out, int th, int tw,
                               float (*map)(int, uint8_t)) {
    out->tensor_h = th;
    out->tensor_w = tw;
    out->chw = calloc((size_t)3 * th * tw, sizeof(float));
    if (!out->chw) return lisa_error_set(LISA_ERR_NOMEM, "out of memory for a %dx%d tensor", th, tw);
    float lut[3][256];
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) lut[c][v] = map(c, (uint8_t)v);
    const lisa_image *r = &out->resized;
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < r->h; y++) {
            const uint8_t *row = r->rgb + (size_t)y * r->w * 3 + c;
            float *o = out->chw + ((size_t)c * th + y) * tw;
            for (int x = 0; x < r->w; x++) o[x] = lut[c][row[x * 3]];
        }
    return LISA_OK;
}

lisa_status lisa_preprocess_clip(const lisa_image *img, int size, lisa_preprocessed *out) {
    memset(out, 0, sizeof *out);
    if (!img || !img->rgb || img->w < 1 || img->h < 1 || size < 1)
        return lisa_error_set(LISA_ERR_ARG, "preprocess clip: empty image or size %d", size);
    out->orig_h = img->h;
    out->orig_w = img->w;
    lisa_preprocess_clip_size(img->h, img->w, size, &out->resize_h, &out->resize_w);
    lisa_image full;
    LISA_TRY(lisa_resample_image(img, out->resize_w, out->resize_h, LISA_RESAMPLE_BICUBIC, &full));
    lisa_status st = lisa_image_init(&out->resized, size, size);
    if (st == LISA_OK) {
        /* Both sides are >= size after the resize, so the crop never pads. */
        int top = (full.h - size) / 2, left = (full.w - size) / 2;
        for (int y = 0; y < size; y++)
            memcpy(out->resized.rgb + (size_t)y * size * 3,
                   full.rgb + ((size_t)(top + y) * full.w + left) * 3, (size_t)size * 3);
        st = fill_tensor(out, size, size, lisa_preprocess_clip_value);
    }
    lisa_image_free(&full);
    if (st != LISA_OK) lisa_preprocessed_free(out);
    return st;
}

lisa_status lisa_preprocess_sam(const lisa_image *img, int long_side, int pad,
                                lisa_preprocessed *out) {
    memset(out, 0, sizeof *out);
    if (!img || !img->rgb || img->w < 1 || img->h < 1 || long_side < 1 || pad < long_side)
        return lisa_error_set(LISA_ERR_ARG, "preprocess sam: empty image or long side %d, pad %d",
                              long_side, pad);
    out->orig_h = img->h;
    out->orig_w = img->w;
    lisa_preprocess_sam_size(img->h, img->w, long_side, &out->resize_h, &out->resize_w);
    if (out->resize_h < 1 || out->resize_w < 1)
        return lisa_error_set(LISA_ERR_ARG, "preprocess sam: %dx%d image resizes to nothing",
                              img->w, img->h);
    lisa_status st = lisa_resample_image(img, out->resize_w, out->resize_h,
                                         LISA_RESAMPLE_BILINEAR, &out->resized);
    if (st == LISA_OK) st = fill_tensor(out, pad, pad, lisa_preprocess_sam_value);
    if (st != LISA_OK) lisa_preprocessed_free(out);
    return st;
}
