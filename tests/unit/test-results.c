/* test-results.c: result-write.h on hand-made responses: the JSON fields
 * (RLE against lisa_mask_rle_encode, area, bbox, IoU), the results.jsonl
 * line, mask_K.png and overlay.png pixels read back with lisa_image_load,
 * a failed result (result.json only), and directory names from ids. */
#include <stdint.h>
#include <unistd.h>

#include <cJSON.h>

#include "masks.h"
#include "result-write.h"
#include "testutil.h"

enum { W = 5, H = 4 };

static int file_exists(const char *dir, const char *name) {
    return access(test_path(dir, name), F_OK) == 0;
}

static cJSON *json_read(const char *path) {
    char *text = test_read_file(path, NULL);
    cJSON *o = text ? cJSON_Parse(text) : NULL;
    free(text);
    return o;
}

static const char *json_str(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItem(o, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

/* The mask entries of an ok result against the response they came from. */
static void check_masks(const cJSON *o, const lisa_response *r, const char *what) {
    const cJSON *ms = cJSON_GetObjectItem(o, "masks");
    CHECK(cJSON_GetArraySize(ms) == r->n_masks, "%s: %d masks", what, cJSON_GetArraySize(ms));
    for (int k = 0; k < r->n_masks && k < cJSON_GetArraySize(ms); k++) {
        const cJSON *m = cJSON_GetArrayItem(ms, k);
        char file[32], *counts = NULL;
        snprintf(file, sizeof file, "mask_%d.png", k);
        CHECK(cJSON_GetObjectItem(m, "index")->valueint == k, "%s: mask %d index", what, k);
        CHECK(!strcmp(json_str(m, "file"), file), "%s: mask %d file '%s'", what, k, json_str(m, "file"));
        CHECK(lisa_mask_rle_encode(r->masks[k].mask, r->w, r->h, &counts) == LISA_OK, "encode");
        const cJSON *rle = cJSON_GetObjectItem(m, "rle");
        const cJSON *size = cJSON_GetObjectItem(rle, "size");
        CHECK(cJSON_GetArraySize(size) == 2 && cJSON_GetArrayItem(size, 0)->valueint == r->h &&
                  cJSON_GetArrayItem(size, 1)->valueint == r->w,
              "%s: mask %d rle size is not [h, w]", what, k);
        CHECK(counts && !strcmp(json_str(rle, "counts"), counts), "%s: mask %d counts '%s', want '%s'",
              what, k, json_str(rle, "counts"), counts ? counts : "");
        free(counts);
        int64_t area, bbox[4];
        lisa_mask_stats(r->masks[k].mask, r->w, r->h, &area, bbox);
        CHECK(cJSON_GetObjectItem(m, "area")->valuedouble == (double)area, "%s: mask %d area", what, k);
        const cJSON *bb = cJSON_GetObjectItem(m, "bbox");
        for (int i = 0; i < 4; i++)
            CHECK(cJSON_GetArrayItem(bb, i) && cJSON_GetArrayItem(bb, i)->valuedouble == (double)bbox[i],
                  "%s: mask %d bbox[%d]", what, k, i);
        CHECK(cJSON_GetObjectItem(m, "iou")->valuedouble == (double)r->masks[k].iou, "%s: mask %d iou",
              what, k);
    }
}

int main(void) {
    char tmpl[] = "/tmp/lisa-test-results-XXXXXX";
    const char *tmp = mkdtemp(tmpl);
    CHECK(tmp != NULL, "mkdtemp");
    if (!tmp) return test_finish("test-results");

    /* Two masks on a 5x4 image: a 2x3 block and a single pixel. */
    uint8_t m0[W * H] = {0}, m1[W * H] = {0};
    for (int y = 1; y < 4; y++)
        for (int x = 2; x < 4; x++) m0[y * W + x] = 1;
    m1[0 * W + 4] = 1;
    lisa_seg_mask masks[2] = {{m0, 0.75f, NULL}, {m1, 0.125f, NULL}};
    int32_t ids[3] = {29871, 32000, 29889};
    lisa_response r;
    memset(&r, 0, sizeof r);
    r.status = LISA_OK;
    r.text = "[SEG].";
    r.ids = ids;
    r.n_ids = 3;
    r.w = W;
    r.h = H;
    r.n_masks = 2;
    r.masks = masks;
    lisa_image img;
    CHECK(lisa_image_init(&img, W, H) == LISA_OK, "image init");
    for (int i = 0; i < W * H * 3; i++) img.rgb[i] = (uint8_t)(i * 7);

    const lisa_result_ident who = {"job/1", "images/x.png", "Where is it?"};
    CHECK(lisa_result_write(tmp, &who, &r, &img) == LISA_OK, "write: %s", lisa_error_get());
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/job_1", tmp);
    CHECK(file_exists(dir, "answer.txt"), "answer.txt missing");
    char *answer = test_read_file(test_path(dir, "answer.txt"), NULL);
    CHECK(answer && !strcmp(answer, "[SEG].\n"), "answer.txt '%s'", answer ? answer : "");
    free(answer);

    cJSON *o = json_read(test_path(dir, "result.json"));
    CHECK(o != NULL, "result.json does not parse");
    if (o) {
        CHECK(!strcmp(json_str(o, "custom_id"), "job/1"), "custom_id");
        CHECK(!strcmp(json_str(o, "image"), "images/x.png"), "image");
        CHECK(!strcmp(json_str(o, "prompt"), "Where is it?"), "prompt");
        CHECK(!strcmp(json_str(o, "status"), "ok"), "status '%s'", json_str(o, "status"));
        CHECK(!strcmp(json_str(o, "answer"), "[SEG]."), "answer");
        CHECK(!cJSON_GetObjectItem(o, "error"), "an ok result has no error");
        const cJSON *oi = cJSON_GetObjectItem(o, "output_ids");
        CHECK(cJSON_GetArraySize(oi) == 3, "output_ids size");
        for (int i = 0; i < 3 && i < cJSON_GetArraySize(oi); i++)
            CHECK(cJSON_GetArrayItem(oi, i)->valueint == ids[i], "output_ids[%d]", i);
        check_masks(o, &r, "result.json");
        cJSON_Delete(o);
    }

    /* The results.jsonl line: one line, the same result. */
    char *line = NULL;
    CHECK(lisa_result_format(&who, &r, 0, &line) == LISA_OK, "format: %s", lisa_error_get());
    CHECK(line && !strchr(line, '\n'), "a results.jsonl line has no newline");
    cJSON *lo = line ? cJSON_Parse(line) : NULL;
    CHECK(lo != NULL, "line does not parse");
    if (lo) {
        CHECK(!strcmp(json_str(lo, "status"), "ok"), "line status");
        check_masks(lo, &r, "line");
        cJSON_Delete(lo);
    }
    free(line);

    /* mask_K.png: 0/255 gray, read back as RGB with R = G = B. */
    for (int k = 0; k < 2; k++) {
        char name[32];
        snprintf(name, sizeof name, "mask_%d.png", k);
        lisa_image back;
        lisa_status st = lisa_image_load(&back, test_path(dir, name), NULL);
        CHECK(st == LISA_OK, "%s: %s", name, lisa_error_get());
        if (st != LISA_OK) continue;
        CHECK(back.w == W && back.h == H, "%s: %dx%d", name, back.w, back.h);
        int bad = 0;
        for (int i = 0; back.w == W && back.h == H && i < W * H; i++) {
            uint8_t want = masks[k].mask[i] ? 255 : 0;
            for (int c = 0; c < 3; c++) bad += back.rgb[3 * i + c] != want;
        }
        CHECK(bad == 0, "%s: %d wrong channel values", name, bad);
        lisa_image_free(&back);
    }

    /* overlay.png: lisa_mask_overlay of the union of the masks. */
    uint8_t uni[W * H];
    for (int i = 0; i < W * H; i++) uni[i] = m0[i] | m1[i];
    lisa_image want, got;
    CHECK(lisa_image_init(&want, W, H) == LISA_OK, "image init");
    lisa_mask_overlay(&img, uni, &want);
    lisa_status st = lisa_image_load(&got, test_path(dir, "overlay.png"), NULL);
    CHECK(st == LISA_OK, "overlay.png: %s", lisa_error_get());
    if (st == LISA_OK) {
        CHECK(got.w == W && got.h == H && !memcmp(got.rgb, want.rgb, (size_t)W * H * 3),
              "overlay.png differs from lisa_mask_overlay");
        lisa_image_free(&got);
    }
    CHECK(img.rgb[0] == 0 && img.rgb[3] == 21, "the caller's image is not modified");
    lisa_image_free(&want);

    /* No image, or one of another size: no overlay, the rest written. */
    const lisa_result_ident noimg = {"noimg", NULL, NULL};
    CHECK(lisa_result_write(tmp, &noimg, &r, NULL) == LISA_OK, "write without image: %s", lisa_error_get());
    snprintf(dir, sizeof dir, "%s/noimg", tmp);
    CHECK(!file_exists(dir, "overlay.png") && file_exists(dir, "mask_1.png"), "no image: no overlay only");
    o = json_read(test_path(dir, "result.json"));
    CHECK(o && !cJSON_GetObjectItem(o, "image") && !cJSON_GetObjectItem(o, "prompt"),
          "NULL image and prompt are left out");
    cJSON_Delete(o);
    lisa_image other;
    CHECK(lisa_image_init(&other, W + 1, H) == LISA_OK, "image init");
    const lisa_result_ident wrong = {"wrong", NULL, NULL};
    CHECK(lisa_result_write(tmp, &wrong, &r, &other) == LISA_OK, "write: %s", lisa_error_get());
    snprintf(dir, sizeof dir, "%s/wrong", tmp);
    CHECK(!file_exists(dir, "overlay.png"), "an image of another size gives no overlay");
    lisa_image_free(&other);

    /* A failed request: status, error, only result.json. */
    lisa_response f;
    memset(&f, 0, sizeof f);
    f.status = LISA_ERR_ARG;
    snprintf(f.error, sizeof f.error, "empty prompt");
    const lisa_result_ident fw = {".hidden", "x.jpg", ""};
    CHECK(lisa_result_write(tmp, &fw, &f, &img) == LISA_OK, "write failed: %s", lisa_error_get());
    snprintf(dir, sizeof dir, "%s/_hidden", tmp);
    CHECK(file_exists(dir, "result.json"), "failed: result.json missing");
    CHECK(!file_exists(dir, "answer.txt") && !file_exists(dir, "mask_0.png") &&
              !file_exists(dir, "overlay.png"),
          "failed: only result.json");
    o = json_read(test_path(dir, "result.json"));
    CHECK(o != NULL, "failed result.json does not parse");
    if (o) {
        CHECK(!strcmp(json_str(o, "status"), "failed"), "failed status");
        CHECK(!strcmp(json_str(o, "error"), "empty prompt"), "error '%s'", json_str(o, "error"));
        CHECK(!strcmp(json_str(o, "custom_id"), ".hidden") && !strcmp(json_str(o, "image"), "x.jpg"),
              "failed ids");
        CHECK(!cJSON_GetObjectItem(o, "masks") && !cJSON_GetObjectItem(o, "answer"),
              "a failed result has no answer or masks");
        cJSON_Delete(o);
    }
    line = NULL;
    CHECK(lisa_result_format(&(lisa_result_ident){NULL, NULL, NULL}, &f, 0, &line) == LISA_OK, "format");
    CHECK(line && !strcmp(line, "{\"custom_id\":\"\",\"status\":\"failed\",\"error\":\"empty prompt\"}"),
          "failed line '%s'", line ? line : "");
    free(line);

    /* Directory names; an id-less result goes to OUT/0. */
    char name[8];
    lisa_result_dir_name(name, sizeof name, "../a\\b/c");
    CHECK(!strcmp(name, "_._a_b_"), "dir name '%s'", name);
    CHECK(lisa_result_write(tmp, &(lisa_result_ident){NULL, NULL, NULL}, &f, NULL) == LISA_OK, "write");
    snprintf(dir, sizeof dir, "%s/0", tmp);
    CHECK(file_exists(dir, "result.json"), "no id: OUT/0/result.json");
    CHECK(lisa_result_write("/proc/no-such-dir", &who, &r, NULL) == LISA_ERR_IO &&
              strstr(lisa_error_get(), "cannot create"),
          "an uncreatable directory is LISA_ERR_IO: %s", lisa_error_get());

    lisa_image_free(&img);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    CHECK(system(cmd) == 0, "cleanup");
    return test_finish("test-results");
}
