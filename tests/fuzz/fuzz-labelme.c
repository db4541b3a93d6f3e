/* fuzz-labelme.c: libFuzzer harness for a ReasonSeg labelme annotation
 * (coordinator/eval/reasonseg.h): the .json next to each image `lisa eval`
 * reads, UTF-8 or cp1252, and the ground-truth mask rasterized from it.
 *
 * Invariants checked: a parse fails with a message and an empty annotation,
 * or gives a query, a user message that contains it, shapes with a label
 * and >= 1 point each within LISA_REASONSEG_MAX_COORD; the ground truth for
 * a small image, in both OpenCV variants, is all 0/1/255, has no 255 unless
 * some label contains "ignore", and no 1 unless some shape is drawn with 1;
 * scoring a mask against itself gives intersection = union.
 *
 * Deliberately not here: pixel-exactness against OpenCV (the unit tests
 * compare with cv2's masks). */
#include <string.h>

#include "fuzz-util.h"
#include "reasonseg.h"

#define FUZZ_W 37
#define FUZZ_H 23

/* needle (lower-case ASCII) in s with ASCII case folded; whole: all of s. */
static int fold_find(const char *s, const char *needle, int whole) {
    size_t n = strlen(s), k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++) {
        size_t j = 0;
        while (j < k && (s[i + j] | (s[i + j] >= 'A' && s[i + j] <= 'Z' ? 32 : 0)) == needle[j]) j++;
        if (j == k && (!whole || n == k)) return 1;
        if (whole) break;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size ? size : 1);
    FUZZ_CHECK(text != NULL, "out of memory");
    if (size) memcpy(text, data, size);
    lisa_reasonseg_anno a;
    fuzz_error_clear();
    lisa_status st = lisa_reasonseg_anno_parse(&a, text, size);
    free(text);
    FUZZ_CHECK_ERROR(st);
    if (st != LISA_OK) {
        FUZZ_CHECK(!a.query && !a.user_message && !a.shapes && !a.n_shapes,
                   "a failed parse left fields");
        return 0;
    }
    FUZZ_CHECK(a.query && a.user_message && strstr(a.user_message, a.query),
               "user message lacks the query");
    FUZZ_CHECK(a.n_shapes >= 0 && (a.n_shapes == 0 || a.shapes), "shape count without shapes");
    int ignore = 0, drawn = 0;
    for (int i = 0; i < a.n_shapes; i++) {
        const lisa_reasonseg_shape *s = &a.shapes[i];
        FUZZ_CHECK(s->label && s->n_points >= 1 && s->xy, "a shape without label or points");
        for (int k = 0; k < 2 * s->n_points; k++)
            FUZZ_CHECK(s->xy[k] >= -LISA_REASONSEG_MAX_COORD && s->xy[k] <= LISA_REASONSEG_MAX_COORD,
                       "a coordinate beyond the limit");
        if (fold_find(s->label, "flag", 1)) continue;
        if (fold_find(s->label, "ignore", 0)) ignore = 1;
        else drawn = 1;
    }
    uint8_t gt[FUZZ_W * FUZZ_H];
    for (int v = 0; v < 2; v++) {
        memset(gt, 0xEE, sizeof gt);
        st = lisa_reasonseg_gt_mask(&a, FUZZ_W, FUZZ_H, (lisa_raster_variant)v, gt);
        FUZZ_CHECK(st == LISA_OK, "rasterizing a parsed annotation failed");
        for (size_t i = 0; i < sizeof gt; i++) {
            FUZZ_CHECK(gt[i] == 0 || gt[i] == 1 || gt[i] == 255, "GT value not 0/1/255");
            FUZZ_CHECK(gt[i] != 255 || ignore, "255 without an ignore label");
            FUZZ_CHECK(gt[i] != 1 || drawn, "1 without a drawn shape");
        }
        uint8_t pred[FUZZ_W * FUZZ_H];
        for (size_t i = 0; i < sizeof gt; i++) pred[i] = gt[i] == 1;
        lisa_reasonseg_score sc;
        lisa_reasonseg_score_mask(pred, gt, sizeof gt, &sc);
        FUZZ_CHECK(sc.intersection == sc.union_, "a mask scored against itself is not IoU 1");
    }
    lisa_reasonseg_anno_free(&a);
    return 0;
}
