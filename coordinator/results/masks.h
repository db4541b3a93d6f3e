/* masks.h: what a segmentation result is written as: COCO RLE (the
 * pycocotools compressed string), area and bounding box of a binary mask, and
 * LISA's red overlay.
 *
 * Masks are row-major uint8 (0 = background, non-zero = mask), h x w, as the
 * engine produces them. Deliberately not here: file layout of a result
 * directory, JSON (result-write.h), PNG encoding (image.h). */
#ifndef LISA_MASKS_H
#define LISA_MASKS_H

#include <stddef.h>
#include <stdint.h>

#include "image.h"
#include "status.h"

/* COCO RLE of a mask, as pycocotools.mask.encode(np.asfortranarray(m))
 * gives it: column-major run lengths starting with a (possibly empty) run of
 * zeros, compressed into its ASCII string form. `*counts` is malloc'd,
 * NUL-terminated. */
lisa_status lisa_mask_rle_encode(const uint8_t *mask, int w, int h, char **counts);

/* Decodes a compressed RLE string back into a mask (w x h, 0/1). For tests
 * and for reading results back; malformed strings are LISA_ERR_FORMAT. */
lisa_status lisa_mask_rle_decode(const char *counts, int w, int h, uint8_t *mask);

/* Pixel count and the bounding box [x, y, width, height] as pycocotools'
 * area() and toBbox() report them (all zeros for an empty mask). */
void lisa_mask_stats(const uint8_t *mask, int w, int h, int64_t *area, int64_t bbox[4]);

/* LISA chat.py's overlay: for every masked pixel, each channel becomes
 * trunc(0.5 * c + 0.5 * red_c) with red = (255, 0, 0), computed in double as
 * numpy does; other pixels keep the image. `out` must be an initialized image
 * of the same size (it may be `img` itself). */
void lisa_mask_overlay(const lisa_image *img, const uint8_t *mask, lisa_image *out);

#endif
