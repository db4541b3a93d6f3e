/* resample.h: Pillow-exact image resizing of 8-bit images.
 *
 * Reproduces Pillow 9.4's Image.resize(size, filter) for 8-bit modes with
 * the default box and reducing_gap=None (what torchvision and transformers
 * call): the separable convolution resampler of src/libImaging/Resample.c.
 * Coefficients are computed in double precision with the filter support
 * stretched by the scale when downscaling (antialiasing), renormalised, and
 * converted to 22-bit fixed point (round half away from zero); a horizontal
 * pass then a vertical pass each round ((1<<21) + sum) >> 22 and clip to
 * 0..255, so the intermediate image is 8-bit. An axis whose size does not
 * change is not resampled. Channels are independent. The result is equal to
 * Pillow's byte for byte (tests/unit/test-preprocess.c checks it).
 *
 * Deliberately not here: Pillow's NEAREST/BOX/HAMMING/LANCZOS filters, crop
 * boxes, reducing_gap, 16-bit and float modes, and premultiplied alpha
 * (callers pass RGB or gray). Built with ISO C floating point (no FMA
 * contraction), which the bit-exact coefficients rely on. */
#ifndef LISA_RESAMPLE_H
#define LISA_RESAMPLE_H

#include <stdint.h>

#include "image.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    LISA_RESAMPLE_BILINEAR, /* PIL.Image.BILINEAR (2): triangle, support 1 */
    LISA_RESAMPLE_BICUBIC   /* PIL.Image.BICUBIC (3): cubic a=-0.5, support 2 */
} lisa_resample_filter;

/* Resizes src (sw x sh, `channels` interleaved 8-bit channels, 1..4) to
 * dst (dw x dh, same channels; caller-allocated, not overlapping src).
 * LISA_ERR_ARG for non-positive sizes or a bad channel count,
 * LISA_ERR_NOMEM when scratch cannot be allocated. */
lisa_status lisa_resample_u8(const uint8_t *src, int sw, int sh, int channels, uint8_t *dst,
                             int dw, int dh, lisa_resample_filter filter);

/* lisa_resample_u8 on RGB images: allocates *dst (dw x dh) with
 * lisa_image_init; on failure *dst is empty. */
lisa_status lisa_resample_image(const lisa_image *src, int dw, int dh,
                                lisa_resample_filter filter, lisa_image *dst);

#ifdef __cplusplus
}
#endif

#endif
