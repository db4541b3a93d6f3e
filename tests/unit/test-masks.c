/* test-masks.c: COCO RLE, area and bbox against pycocotools, and LISA's
 * overlay against chat.py's numpy expression (fixtures from
 * tests/reference/gen_masks.py); RLE decode round trips and rejects
 * malformed strings. */
#include <cJSON.h>

#include "masks.h"
#include "testutil.h"

static uint8_t *mask_from_rows(const cJSON *rows, int w, int h) {
    uint8_t *m = calloc((size_t)w * (size_t)h, 1);
    for (int y = 0; y < h; y++) {
        const char *r = cJSON_GetArrayItem(rows, y)->valuestring;
        for (int x = 0; x < w; x++) m[y * w + x] = r[x] == '1';
    }
    return m;
}

int main(int argc, char **argv) {
    const char *fix = argc > 1 ? argv[1] : "tests/fixtures";
    char *text = test_read_file(test_path(fix, "masks/cases.json"), NULL);
    CHECK(text != NULL, "masks/cases.json missing");
    if (!text) return test_finish("test-masks");
    cJSON *root = cJSON_Parse(text);
    const cJSON *c;
    int k = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "rle")) {
        int w = cJSON_GetObjectItem(c, "w")->valueint, h = cJSON_GetObjectItem(c, "h")->valueint;
        uint8_t *m = mask_from_rows(cJSON_GetObjectItem(c, "rows"), w, h);
        char *counts = NULL;
        CHECK(lisa_mask_rle_encode(m, w, h, &counts) == LISA_OK, "encode");
        const char *want = cJSON_GetObjectItem(c, "counts")->valuestring;
        CHECK(counts && !strcmp(counts, want), "case %d: counts '%s', pycocotools '%s'", k,
              counts ? counts : "", want);
        int64_t area, bbox[4];
        lisa_mask_stats(m, w, h, &area, bbox);
        CHECK(area == cJSON_GetObjectItem(c, "area")->valueint, "case %d: area %lld", k, (long long)area);
        const cJSON *bb = cJSON_GetObjectItem(c, "bbox");
        for (int i = 0; i < 4; i++)
            CHECK(bbox[i] == cJSON_GetArrayItem(bb, i)->valueint, "case %d: bbox[%d] = %lld", k, i,
                  (long long)bbox[i]);
        uint8_t *back = calloc((size_t)w * (size_t)h, 1);
        CHECK(lisa_mask_rle_decode(want, w, h, back) == LISA_OK, "decode: %s", lisa_error_get());
        CHECK(!memcmp(back, m, (size_t)w * (size_t)h), "case %d: decode(encode) differs", k);
        free(back);
        free(counts);
        free(m);
        k++;
    }
    CHECK(k >= 8, "%d rle cases", k);

    uint8_t tiny[12];
    CHECK(lisa_mask_rle_decode("2", 3, 4, tiny) == LISA_ERR_FORMAT, "runs short of the mask");
    CHECK(lisa_mask_rle_decode("`", 3, 4, tiny) == LISA_ERR_FORMAT, "truncated group");
    CHECK(lisa_mask_rle_decode(" ", 3, 4, tiny) == LISA_ERR_FORMAT, "bad character");
    CHECK(lisa_mask_rle_decode("j0", 3, 4, tiny) == LISA_ERR_FORMAT, "run beyond the mask");
    /* 13 continuation characters: the shift would pass 63 bits (UBSan) */
    CHECK(lisa_mask_rle_decode("ooooooooooooO", 3, 4, tiny) == LISA_ERR_FORMAT &&
              strstr(lisa_error_get(), "longer than 7"),
          "over-long count: %s", lisa_error_get());

    const cJSON *o = cJSON_GetObjectItem(root, "overlay");
    int w = cJSON_GetObjectItem(o, "w")->valueint, h = cJSON_GetObjectItem(o, "h")->valueint;
    lisa_image img, out;
    CHECK(lisa_image_init(&img, w, h) == LISA_OK && lisa_image_init(&out, w, h) == LISA_OK, "init");
    const cJSON *px = cJSON_GetObjectItem(o, "image"), *ex = cJSON_GetObjectItem(o, "expected");
    for (int i = 0; i < w * h * 3; i++) img.rgb[i] = (uint8_t)cJSON_GetArrayItem(px, i)->valueint;
    uint8_t *m = mask_from_rows(cJSON_GetObjectItem(o, "rows"), w, h);
    lisa_mask_overlay(&img, m, &out);
    int bad = 0;
    for (int i = 0; i < w * h * 3; i++) bad += out.rgb[i] != cJSON_GetArrayItem(ex, i)->valueint;
    CHECK(bad == 0, "overlay: %d channel values differ from chat.py's", bad);
    free(m);
    lisa_image_free(&img);
    lisa_image_free(&out);
    cJSON_Delete(root);
    free(text);
    return test_finish("test-masks");
}
