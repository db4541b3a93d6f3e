/* image.h: image input and output for the vision path.
 *
 * Decodes JPEG (libjpeg-turbo) and PNG (libpng) files or memory buffers into
 * 8-bit RGB, the way LISA's `cv2.imread(path)` + BGR->RGB does:
 *   - JPEG: ISLOW DCT, fancy upsampling (libjpeg defaults, as cv2 and
 *     Pillow use), grayscale replicated to RGB, and the EXIF Orientation tag
 *     (APP1, values 2..8) applied. A malformed EXIF segment is ignored
 *     (orientation 1), as cv2 does. CMYK/YCCK JPEGs are refused
 *     (LISA_ERR_UNSUPPORTED). libjpeg's corrupt-data warnings (premature
 *     end of data, bad Huffman code, ...) are errors here.
 *   - PNG: palette expanded, gray replicated, 1/2/4-bit gray scaled to 8,
 *     16-bit reduced by dropping the low byte (value >> 8, cv2's
 *     png_set_strip_16), alpha and tRNS dropped without compositing (what
 *     cv2 IMREAD_COLOR and Pillow's convert("RGB") do). No gamma handling.
 * Hostile input is bounded by lisa_image_limits (file size, pixel count)
 * and never crashes: libjpeg/libpng errors longjmp back to a status.
 *
 * It also writes 8-bit PNGs (RGB images, gray masks) and binary PPMs.
 *
 * Deliberately not here: resizing (resample.h), normalisation
 * (preprocess.h), EXIF orientation for PNG eXIf chunks, colour management
 * (ICC profiles are ignored, as by cv2 and Pillow's convert). */
#ifndef LISA_IMAGE_H
#define LISA_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An 8-bit RGB image, rows top to bottom, pixels interleaved R,G,B;
 * row stride is 3*w bytes. Owned: release with lisa_image_free. */
typedef struct {
    int w, h;
    uint8_t *rgb;
} lisa_image;

/* Bounds against hostile files. Zero fields mean "use the default". */
typedef struct {
    size_t max_file_bytes; /* default 100 MB */
    uint64_t max_pixels;   /* w*h, default 100 million */
} lisa_image_limits;

#define LISA_IMAGE_DEFAULT_MAX_FILE_BYTES ((size_t)100 * 1000 * 1000)
#define LISA_IMAGE_DEFAULT_MAX_PIXELS ((uint64_t)100 * 1000 * 1000)

/* Allocates a w x h image, all zero. w, h >= 1 and w*h*3 must fit
 * (LISA_ERR_ARG otherwise). On failure *img is left empty. */
lisa_status lisa_image_init(lisa_image *img, int w, int h);
/* Releases the pixels and empties *img. Safe on an empty or freed image. */
void lisa_image_free(lisa_image *img);

/* Decodes a JPEG or PNG file (format chosen by its magic bytes) into *img.
 * limits may be NULL (defaults). On failure *img is empty, the status is
 * LISA_ERR_IO (cannot read), LISA_ERR_FORMAT (corrupt, truncated, unknown
 * format), LISA_ERR_UNSUPPORTED (CMYK JPEG), LISA_ERR_ARG (over a limit) or
 * LISA_ERR_NOMEM, and lisa_error_get() names the file and the reason. */
lisa_status lisa_image_load(lisa_image *img, const char *path,
                            const lisa_image_limits *limits);

/* Reads a whole image file into *out (malloc'd, *len bytes) without
 * decoding it, refusing what is not a regular file, empty, or larger than
 * limits->max_file_bytes (limits may be NULL: defaults). Errors name the
 * file; *out is NULL on failure. */
lisa_status lisa_image_read_file(const char *path, const lisa_image_limits *limits,
                                 uint8_t **out, size_t *len);

/* Same as lisa_image_load from a memory buffer (not retained). */
lisa_status lisa_image_decode(lisa_image *img, const uint8_t *data, size_t len,
                              const lisa_image_limits *limits);

/* The EXIF Orientation (1..8) in the payload of a JPEG APP1 segment (the
 * bytes after the length field, starting "Exif\0\0"). Returns 1 when the
 * payload is not EXIF, has no Orientation, is malformed, or holds a value
 * outside 1..8. Reads only data[0..len). */
int lisa_image_exif_orientation(const uint8_t *data, size_t len);

/* Applies an EXIF orientation (2..8) to *img in place (5..8 swap w and h);
 * 1 or an out-of-range value leaves it unchanged. Matches Pillow's
 * ImageOps.exif_transpose. */
lisa_status lisa_image_orient(lisa_image *img, int orientation);

/* Writes *img as an 8-bit RGB PNG. LISA_ERR_IO on failure. */
lisa_status lisa_image_write_png(const lisa_image *img, const char *path);
/* Writes a w x h 8-bit grayscale PNG (masks: 0/255) from gray[h*w]. */
lisa_status lisa_image_write_gray_png(const uint8_t *gray, int w, int h,
                                      const char *path);
/* Writes *img as a binary PPM ("P6\n<w> <h>\n255\n" + raw RGB): a format
 * whose bytes are fully determined by the pixels, for byte comparisons. */
lisa_status lisa_image_write_ppm(const lisa_image *img, const char *path);

#ifdef __cplusplus
}
#endif

#endif
