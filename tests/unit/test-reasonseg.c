/* test-reasonseg.c: the ReasonSeg evaluation against tests/fixtures/reasonseg
 * (made by tests/reference/gen_reasonseg.py with cv2 4.6 and 4.8):
 *   - the GT mask of every fixture image equals cv2's byte for byte, for both
 *     OpenCV releases (outline + fill, clipping, ties among >16 polygons);
 *   - prompts (strip, cp1252 fallback, both wordings) equal LISA's;
 *   - per-image intersection/union exactly, iou, gIoU and cIoU to 1e-6 and
 *     as printed with %.8f;
 *   - malformed annotations give LISA_ERR_FORMAT with a message, no crash;
 *   - the metric's corner cases (empty union, ignore pixels).
 * It does not re-derive the fixtures; gen_reasonseg.py does. */
#include <cJSON.h>
#include <stdint.h>

#include "image.h"
#include "reasonseg.h"
#include "testutil.h"

static const char *g_fix;

static char *fix_path(const char *fmt, const char *a, const char *b) {
    static char buf[8192];
    char rel[4096];
    snprintf(rel, sizeof rel, fmt, a, b);
    snprintf(buf, sizeof buf, "%s/reasonseg/%s", g_fix, rel);
    return buf;
}

/* Loads an 8-bit gray PNG (decoded as RGB) into a w*h buffer (R channel). */
static uint8_t *load_gray(const char *path, int *w, int *h) {
    lisa_image img;
    if (lisa_image_load(&img, path, NULL) != LISA_OK) return NULL;
    uint8_t *g = malloc((size_t)img.w * (size_t)img.h);
    if (g)
        for (size_t i = 0; i < (size_t)img.w * (size_t)img.h; i++) g[i] = img.rgb[3 * i];
    *w = img.w;
    *h = img.h;
    lisa_image_free(&img);
    return g;
}

static void check_release(const char *cv, lisa_raster_variant variant, const cJSON *prompts) {
    size_t len;
    char *exp = test_read_file(fix_path("expected-%s.txt", cv, ""), &len);
    CHECK(exp != NULL, "cannot read expected-%s.txt", cv);
    if (!exp) return;
    lisa_reasonseg_meter meter;
    lisa_reasonseg_meter_init(&meter);
    int n_images = 0;
    double want_giou = -1, want_ciou = -1;
    char want_giou_s[32] = "", want_ciou_s[32] = "";
    for (char *line = strtok(exp, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#') continue;
        char stem[64], iou_s[32];
        int w, h;
        long long wi, wu;
        if (sscanf(line, "gIoU %31s", want_giou_s) == 1) {
            want_giou = atof(want_giou_s);
            continue;
        }
        if (sscanf(line, "cIoU %31s", want_ciou_s) == 1) {
            want_ciou = atof(want_ciou_s);
            continue;
        }
        if (sscanf(line, "%63s %d %d %lld %lld %31s", stem, &w, &h, &wi, &wu, iou_s) != 6) {
            CHECK(0, "bad line in expected-%s.txt: %s", cv, line);
            continue;
        }
        n_images++;
        lisa_reasonseg_anno anno;
        lisa_status st = lisa_reasonseg_anno_load(&anno, fix_path("data/%s.json", stem, ""));
        CHECK(st == LISA_OK, "%s: %s", stem, lisa_error_get());
        if (st != LISA_OK) continue;

        const cJSON *p = cJSON_GetObjectItemCaseSensitive(prompts, stem);
        const cJSON *q = cJSON_GetObjectItemCaseSensitive(p, "query");
        const cJSON *um = cJSON_GetObjectItemCaseSensitive(p, "user_message");
        const cJSON *sent = cJSON_GetObjectItemCaseSensitive(p, "is_sentence");
        const cJSON *cp = cJSON_GetObjectItemCaseSensitive(p, "from_cp1252");
        CHECK(cJSON_IsString(q) && !strcmp(q->valuestring, anno.query), "%s query '%s'", stem,
              anno.query);
        CHECK(cJSON_IsString(um) && !strcmp(um->valuestring, anno.user_message),
              "%s user message '%s'", stem, anno.user_message);
        CHECK(cJSON_IsBool(sent) && cJSON_IsTrue(sent) == anno.is_sentence, "%s is_sentence",
              stem);
        CHECK(cJSON_IsBool(cp) && cJSON_IsTrue(cp) == anno.from_cp1252, "%s from_cp1252", stem);

        lisa_image img;
        st = lisa_image_load(&img, fix_path("data/%s.jpg", stem, ""), NULL);
        CHECK(st == LISA_OK && img.w == w && img.h == h, "%s image size", stem);
        if (st != LISA_OK) {
            lisa_reasonseg_anno_free(&anno);
            continue;
        }
        lisa_image_free(&img);

        size_t n = (size_t)w * (size_t)h;
        uint8_t *gt = malloc(n);
        st = lisa_reasonseg_gt_mask(&anno, w, h, variant, gt);
        CHECK(st == LISA_OK, "%s gt: %s", stem, lisa_error_get());
        char rel[128];
        snprintf(rel, sizeof rel, "gt-%s/%s.png", cv, stem);
        int rw, rh;
        uint8_t *ref = load_gray(fix_path("%s", rel, ""), &rw, &rh);
        CHECK(ref && rw == w && rh == h, "cannot read %s", rel);
        if (ref && rw == w && rh == h) {
            size_t diff = 0, first = 0;
            for (size_t i = 0; i < n; i++)
                if (gt[i] != ref[i] && diff++ == 0) first = i;
            CHECK(diff == 0, "%s (OpenCV %s): %zu pixels differ from cv2, first at (%zu, %zu): %d vs %d",
                  stem, cv, diff, first % (size_t)w, first / (size_t)w, gt[first], ref[first]);
        }
        free(ref);

        int pw, ph;
        lisa_image pimg;
        st = lisa_image_load(&pimg, fix_path("predictions/%s.png", stem, ""), NULL);
        CHECK(st == LISA_OK, "%s prediction: %s", stem, lisa_error_get());
        if (st == LISA_OK) {
            pw = pimg.w;
            ph = pimg.h;
            CHECK(pw == w && ph == h, "%s prediction size", stem);
            uint8_t *pred = malloc(n);
            for (size_t i = 0; i < n; i++)
                pred[i] = (pimg.rgb[3 * i] | pimg.rgb[3 * i + 1] | pimg.rgb[3 * i + 2]) != 0;
            lisa_reasonseg_score s;
            lisa_reasonseg_score_mask(pred, gt, n, &s);
            char got_s[32];
            snprintf(got_s, sizeof got_s, "%.8f", (double)s.iou);
            CHECK(s.intersection == wi && s.union_ == wu, "%s: I %lld U %lld, want %lld %lld",
                  stem, (long long)s.intersection, (long long)s.union_, wi, wu);
            CHECK(!strcmp(got_s, iou_s) && fabs(s.iou - atof(iou_s)) <= 1e-6,
                  "%s: iou %s, want %s", stem, got_s, iou_s);
            lisa_reasonseg_meter_add(&meter, &s);
            free(pred);
            lisa_image_free(&pimg);
        }
        free(gt);
        lisa_reasonseg_anno_free(&anno);
    }
    CHECK(n_images == 8, "expected-%s.txt has %d images", cv, n_images);
    char g[32], c[32];
    snprintf(g, sizeof g, "%.8f", (double)lisa_reasonseg_meter_giou(&meter));
    snprintf(c, sizeof c, "%.8f", (double)lisa_reasonseg_meter_ciou(&meter));
    CHECK(!strcmp(g, want_giou_s) && fabs(atof(g) - want_giou) <= 1e-6, "gIoU %s want %s (%s)", g,
          want_giou_s, cv);
    CHECK(!strcmp(c, want_ciou_s) && fabs(atof(c) - want_ciou) <= 1e-6, "cIoU %s want %s (%s)", c,
          want_ciou_s, cv);
    free(exp);
}

static void check_bad_files(void) {
    static const struct {
        const char *file, *needle;
    } cases[] = {
        {"malformed.json", "malformed JSON"},
        {"no-shapes.json", "\"shapes\""},
        {"no-text.json", "\"text\""},
        {"text-not-list.json", "\"text\""},
        {"point-not-number.json", "not a number"},
        {"point-not-pair.json", "[x, y]"},
        {"no-points.json", "no points"},
        {"no-label.json", "\"label\""},
        {"huge-coordinate.json", "out of range"},
        {"not-object.json", "object"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lisa_reasonseg_anno a;
        lisa_status st = lisa_reasonseg_anno_load(&a, fix_path("bad/%s", cases[i].file, ""));
        CHECK(st == LISA_ERR_FORMAT, "%s: status %d", cases[i].file, (int)st);
        CHECK(strstr(lisa_error_get(), cases[i].needle) && strstr(lisa_error_get(), cases[i].file),
              "%s: message '%s' lacks '%s' or the file name", cases[i].file, lisa_error_get(),
              cases[i].needle);
        CHECK(a.shapes == NULL && a.query == NULL, "%s: annotation not emptied", cases[i].file);
        lisa_reasonseg_anno_free(&a);
    }
    lisa_reasonseg_anno a;
    CHECK(lisa_reasonseg_anno_load(&a, fix_path("bad/%s", "absent.json", "")) == LISA_ERR_IO,
          "missing file: want io error");
    /* 0x81 is undefined in cp1252 (and not UTF-8) */
    const char undef[] = "{\"text\": [\"a\x81\"], \"is_sentence\": false, \"shapes\": []}";
    CHECK(lisa_reasonseg_anno_parse(&a, undef, sizeof undef - 1) == LISA_ERR_FORMAT &&
              strstr(lisa_error_get(), "cp1252"),
          "undefined cp1252 byte: '%s'", lisa_error_get());
    CHECK(lisa_reasonseg_anno_parse(&a, "", 0) == LISA_ERR_FORMAT, "empty file accepted");
    const char nul[] = "{\"text\": [\"a\"]\0}";
    CHECK(lisa_reasonseg_anno_parse(&a, nul, sizeof nul - 1) == LISA_ERR_FORMAT, "NUL accepted");
    const char ok[] = "{\"text\": [\"  x\\u2003 \", \"y\"], \"is_sentence\": 1, \"shapes\": "
                      "[{\"label\": \"t\", \"points\": [[-1.9, 2.99], [3, -0.5]]}]}";
    lisa_status st = lisa_reasonseg_anno_parse(&a, ok, sizeof ok - 1);
    CHECK(st == LISA_OK, "ok case: %s", lisa_error_get());
    if (st == LISA_OK) {
        CHECK(!strcmp(a.query, "x"), "strip: '%s'", a.query);
        CHECK(a.is_sentence == 1 && a.n_shapes == 1 && a.shapes[0].n_points == 2, "fields");
        CHECK(a.shapes[0].xy[0] == -1 && a.shapes[0].xy[1] == 2 && a.shapes[0].xy[3] == 0,
              "truncation toward zero: %d %d %d", a.shapes[0].xy[0], a.shapes[0].xy[1],
              a.shapes[0].xy[3]);
        lisa_reasonseg_anno_free(&a);
    }
}

static void check_metric_corners(void) {
    uint8_t gt[6] = {0, 1, 255, 255, 1, 0}, pred[6] = {1, 1, 1, 0, 0, 0};
    lisa_reasonseg_score s;
    lisa_reasonseg_score_mask(pred, gt, 6, &s);
    /* pred fg outside ignore: pixels 0,1 -> 2; gt fg: 2; I = 1; U = 3 */
    CHECK(s.intersection == 1 && s.union_ == 3, "I %lld U %lld", (long long)s.intersection,
          (long long)s.union_);
    CHECK(s.iou == (float)1 / ((float)3 + 1e-5f), "iou %.9g", (double)s.iou);
    uint8_t z[4] = {0, 0, 255, 0}, p2[4] = {0, 0, 1, 0};
    lisa_reasonseg_score_mask(p2, z, 4, &s);
    CHECK(s.union_ == 0 && s.iou == 1.0f, "empty union: iou %g", (double)s.iou);
    lisa_reasonseg_meter m;
    lisa_reasonseg_meter_init(&m);
    lisa_reasonseg_meter_add(&m, &s);
    CHECK(lisa_reasonseg_meter_giou(&m) == 1.0f / (float)(1.0 + 1e-5), "giou of one image");
    CHECK(lisa_reasonseg_meter_ciou(&m) == 0.0f, "ciou with zero union");
}

static void check_list(void) {
    lisa_reasonseg_list l;
    lisa_status st = lisa_reasonseg_list_init(&l, fix_path("data", "", ""));
    CHECK(st == LISA_OK && l.n == 8, "list: %s, %zu", lisa_error_get(), l.n);
    for (size_t i = 0; st == LISA_OK && i < l.n; i++) {
        char want[32];
        snprintf(want, sizeof want, "img%02zu", i + 1);
        CHECK(!strcmp(l.stems[i], want), "stem %zu: %s", i, l.stems[i]);
    }
    lisa_reasonseg_list_free(&l);
    CHECK(lisa_reasonseg_list_init(&l, fix_path("no-such-dir", "", "")) == LISA_ERR_IO &&
              strstr(lisa_error_get(), "no-such-dir"),
          "missing folder: '%s'", lisa_error_get());
}

/* Rasterizer corner cases that need no fixture: a single point, a segment,
 * a polygon entirely outside, and a 1x1 image. */
static void check_raster_corners(void) {
    uint8_t m[12 * 10];
    memset(m, 0, sizeof m);
    const int32_t one[2] = {3, 2};
    lisa_raster_polylines(m, 12, 10, one, 1, 1);
    CHECK(lisa_raster_fill_poly(m, 12, 10, one, 1, 1, LISA_RASTER_OPENCV_4_8) == LISA_OK, "fill");
    size_t sum = 0;
    for (size_t i = 0; i < sizeof m; i++) sum += m[i];
    CHECK(sum == 1 && m[2 * 12 + 3] == 1, "single point: %zu pixels", sum);
    memset(m, 0, sizeof m);
    const int32_t seg[4] = {1, 1, 8, 5};
    lisa_raster_polylines(m, 12, 10, seg, 2, 1);
    lisa_raster_fill_poly(m, 12, 10, seg, 2, 1, LISA_RASTER_OPENCV_4_6);
    sum = 0;
    for (size_t i = 0; i < sizeof m; i++) sum += m[i];
    CHECK(sum == 8, "segment: %zu pixels (cv2: 8)", sum);
    memset(m, 0, sizeof m);
    const int32_t out[6] = {-5, -5, -1, -2, -3, -8};
    lisa_raster_polylines(m, 12, 10, out, 3, 1);
    lisa_raster_fill_poly(m, 12, 10, out, 3, 1, LISA_RASTER_OPENCV_4_8);
    sum = 0;
    for (size_t i = 0; i < sizeof m; i++) sum += m[i];
    CHECK(sum == 0, "outside polygon drew %zu pixels", sum);
    uint8_t px = 0;
    const int32_t big[6] = {-100, -100, 100, -100, 0, 100};
    lisa_raster_polylines(&px, 1, 1, big, 3, 7);
    lisa_raster_fill_poly(&px, 1, 1, big, 3, 7, LISA_RASTER_OPENCV_4_8);
    CHECK(px == 7, "1x1 image covered: %d", px);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test-reasonseg FIXTURES_DIR\n");
        return 2;
    }
    g_fix = argv[1];
    size_t len;
    char *pj = test_read_file(fix_path("prompts.json", "", ""), &len);
    cJSON *prompts = pj ? cJSON_ParseWithLength(pj, len) : NULL;
    CHECK(prompts != NULL, "cannot read prompts.json");
    check_release("4.8", LISA_RASTER_OPENCV_4_8, prompts);
    check_release("4.6", LISA_RASTER_OPENCV_4_6, prompts);
    cJSON_Delete(prompts);
    free(pj);
    check_bad_files();
    check_metric_corners();
    check_list();
    check_raster_corners();
    return test_finish("test-reasonseg");
}
