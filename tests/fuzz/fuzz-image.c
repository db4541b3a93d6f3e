/* fuzz-image.c: libFuzzer harness for image decoding (JPEG and PNG with the
 * EXIF orientation, coordinator/request/image.h), the bytes a submitter
 * sends as a request's image.
 *
 * Invariants checked: a decode either fails with a message and an empty
 * image, or gives w, h >= 1 within the pixel limit and a w*h*3 buffer that
 * is fully readable; the EXIF parser, run on every APP1 segment found and
 * on the raw input, returns an orientation in 1..8; orienting the image
 * with every orientation keeps (or, for 5..8, swaps) its size and its
 * pixels' sum, and orientation 1 leaves it byte for byte.
 *
 * Deliberately not here: pixel values against a reference decoder (the
 * unit tests compare with cv2's); the 100-megapixel default limit (a
 * 4-megapixel one keeps each run fast). */
#include <string.h>

#include "fuzz-util.h"
#include "image.h"

#define FUZZ_IMAGE_MAX_PIXELS ((uint64_t)4 << 20)

/* Every APP1 payload of a JPEG byte stream (markers scanned up to SOS). */
static void fuzz_exif_segments(const uint8_t *d, size_t n) {
    if (n < 4 || d[0] != 0xFF || d[1] != 0xD8) return;
    size_t p = 2;
    while (p + 4 <= n && d[p] == 0xFF) {
        uint8_t marker = d[p + 1];
        size_t seg = ((size_t)d[p + 2] << 8) | d[p + 3];
        if (marker == 0xDA || seg < 2 || p + 2 + seg > n) break;
        if (marker == 0xE1) {
            int o = lisa_image_exif_orientation(d + p + 4, seg - 2);
            FUZZ_CHECK(o >= 1 && o <= 8, "EXIF orientation out of 1..8");
        }
        p += 2 + seg;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int o = lisa_image_exif_orientation(data, size);
    FUZZ_CHECK(o >= 1 && o <= 8, "EXIF orientation out of 1..8");
    fuzz_exif_segments(data, size);

    lisa_image_limits limits = {0, FUZZ_IMAGE_MAX_PIXELS};
    lisa_image img;
    memset(&img, 0xA5, sizeof img); /* decode must empty it on failure */
    fuzz_error_clear();
    lisa_status st = lisa_image_decode(&img, data, size, &limits);
    FUZZ_CHECK_ERROR(st);
    if (st != LISA_OK) {
        FUZZ_CHECK(img.rgb == NULL, "a failed decode left pixels");
        return 0;
    }
    FUZZ_CHECK(img.w >= 1 && img.h >= 1, "decoded image has no pixels");
    FUZZ_CHECK((uint64_t)img.w * (uint64_t)img.h <= FUZZ_IMAGE_MAX_PIXELS,
               "decoded image is over the pixel limit");
    size_t n = (size_t)img.w * (size_t)img.h * 3;
    uint64_t sum = fuzz_touch(img.rgb, n);

    /* Each orientation on a copy: sizes swap for 5..8, pixels only move. */
    for (int k = 1; k <= 8; k++) {
        lisa_image c;
        FUZZ_CHECK(lisa_image_init(&c, img.w, img.h) == LISA_OK, "cannot copy the image");
        memcpy(c.rgb, img.rgb, n);
        FUZZ_CHECK(lisa_image_orient(&c, k) == LISA_OK, "orienting failed");
        int swap = k >= 5;
        FUZZ_CHECK(c.w == (swap ? img.h : img.w) && c.h == (swap ? img.w : img.h),
                   "orientation gave the wrong size");
        FUZZ_CHECK(fuzz_touch(c.rgb, n) == sum, "orientation changed the pixels' sum");
        if (k == 1) FUZZ_CHECK(memcmp(c.rgb, img.rgb, n) == 0, "orientation 1 changed pixels");
        lisa_image_free(&c);
        FUZZ_CHECK(c.rgb == NULL && c.w == 0 && c.h == 0, "free left the image set");
    }
    lisa_image_free(&img);
    return 0;
}
