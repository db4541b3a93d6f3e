/* fuzz-rle.c: libFuzzer harness for COCO RLE (coordinator/results/masks.h):
 * the compressed counts strings a result carries and `lisa result` decodes.
 * Input: two bytes giving the mask size (1..64 each way), then the counts
 * string; the same bytes are also read as a mask's pixels.
 *
 * Invariants checked: a decode fails with a message or fills every pixel
 * with 0/1; encoding that mask and decoding the encoding gives the mask
 * back, and re-encoding gives the same string (canonical form); area and
 * bounding box agree with the pixels; any mask encodes and decodes back to
 * itself.
 *
 * Deliberately not here: job-codec's own checks on a result's RLE
 * (fuzz-job-result.c). */
#include <string.h>

#include "fuzz-util.h"
#include "masks.h"

/* encode -> decode -> encode on mask (w x h, 0/1). */
static void round_trip(const uint8_t *mask, int w, int h) {
    size_t n = (size_t)w * (size_t)h;
    char *s = NULL, *s2 = NULL;
    FUZZ_CHECK(lisa_mask_rle_encode(mask, w, h, &s) == LISA_OK, "encode failed");
    uint8_t *back = malloc(n);
    FUZZ_CHECK(back != NULL, "out of memory");
    FUZZ_CHECK(lisa_mask_rle_decode(s, w, h, back) == LISA_OK, "own encoding does not decode");
    FUZZ_CHECK(!memcmp(back, mask, n), "encode -> decode changed the mask");
    FUZZ_CHECK(lisa_mask_rle_encode(back, w, h, &s2) == LISA_OK && !strcmp(s, s2),
               "encoding is not canonical");
    int64_t area = 0, bb[4];
    lisa_mask_stats(mask, w, h, &area, bb);
    int64_t ones = 0, x0 = w, y0 = h, x1 = -1, y1 = -1;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            if (mask[(size_t)y * (size_t)w + (size_t)x]) {
                ones++;
                if (x < x0) x0 = x;
                if (y < y0) y0 = y;
                if (x > x1) x1 = x;
                if (y > y1) y1 = y;
            }
    FUZZ_CHECK(area == ones, "area is not the pixel count");
    if (ones)
        FUZZ_CHECK(bb[0] == x0 && bb[1] == y0 && bb[2] == x1 - x0 + 1 && bb[3] == y1 - y0 + 1,
                   "bbox does not bound the pixels");
    else FUZZ_CHECK(!bb[0] && !bb[1] && !bb[2] && !bb[3], "empty mask with a bbox");
    free(s);
    free(s2);
    free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    int w = 1 + data[0] % 64, h = 1 + data[1] % 64;
    size_t n = (size_t)w * (size_t)h;
    char *counts = fuzz_strndup(data + 2, size - 2);
    uint8_t *mask = malloc(n);
    FUZZ_CHECK(mask != NULL, "out of memory");
    memset(mask, 0xEE, n);
    fuzz_error_clear();
    lisa_status st = lisa_mask_rle_decode(counts, w, h, mask);
    FUZZ_CHECK_ERROR(st);
    if (st == LISA_OK) {
        for (size_t i = 0; i < n; i++) FUZZ_CHECK(mask[i] <= 1, "pixel not 0/1 (or not written)");
        round_trip(mask, w, h);
    }
    /* the same bytes as pixels */
    for (size_t i = 0; i < n; i++) mask[i] = i + 2 < size && (data[i + 2] & 1);
    round_trip(mask, w, h);
    free(mask);
    free(counts);
    return 0;
}
