/* test-preprocess.c: the Pillow-exact resampler and the CLIP/SAM branches
 * against Pillow 9.4 / transformers 4.31 / torch references
 * (tests/reference/gen_images.py).
 *
 * Checks: resample.txt (a noise image and a 1-D row resized to many sizes
 * with BILINEAR and BICUBIC, checksums of Pillow's output); for every
 * fixture image, the CLIP crop and SAM resize (uint8) and both float32
 * tensors (checksums, so bit-exact); norm.txt (every channel x uint8 value
 * of both normalisations, within 1e-6 and counted exact); sizes, padding
 * and argument errors. It does not test decoding (test-image.c does). */
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "image.h"
#include "preprocess.h"
#include "resample.h"
#include "testutil.h"

static const char *g_dir; /* tests/fixtures/images */

/* gen_images.py's wsum64 checksum. */
static uint64_t wsum64(const void *p, size_t n) {
    const uint8_t *b = p;
    uint64_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += (uint64_t)b[i] * (((uint64_t)i * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull) | 1);
    return s ^ (uint64_t)n;
}

static void test_resample_cases(void) {
    FILE *f = fopen(test_path(g_dir, "resample.txt"), "r");
    CHECK(f != NULL, "resample.txt missing");
    if (!f) return;
    char line[512];
    lisa_image src = {0, 0, NULL};
    int n = 0, exact = 0;
    while (fgets(line, sizeof line, f)) {
        char a[256];
        int w, h;
        uint64_t want;
        if (line[0] == '#') continue;
        if (sscanf(line, "src %255s %d %d", a, &w, &h) == 3) {
            lisa_image_free(&src);
            CHECK(lisa_image_load(&src, test_path(g_dir, a), NULL) == LISA_OK && src.w == w &&
                      src.h == h,
                  "%s: %s", a, lisa_error_get());
            continue;
        }
        if (sscanf(line, "%255s %d %d %" SCNx64, a, &w, &h, &want) != 4 || !src.rgb) {
            CHECK(0, "bad resample.txt line: %s", line);
            continue;
        }
        lisa_resample_filter filt =
            !strcmp(a, "bicubic") ? LISA_RESAMPLE_BICUBIC : LISA_RESAMPLE_BILINEAR;
        lisa_image out;
        CHECK(lisa_resample_image(&src, w, h, filt, &out) == LISA_OK, "%s", lisa_error_get());
        uint64_t got = wsum64(out.rgb, (size_t)w * h * 3);
        CHECK(got == want, "%s %dx%d -> %s %dx%d differs from Pillow", a, src.w, src.h, a, w, h);
        n++;
        exact += got == want;
        lisa_image_free(&out);
    }
    lisa_image_free(&src);
    fclose(f);
    CHECK(n >= 40, "only %d resample cases", n);
    fprintf(stderr, "resample: %d/%d cases byte-equal to Pillow\n", exact, n);

    /* The 1-D examples of spec vision.md section 5.1, validated on Pillow 9.4. */
    static const uint8_t row[8] = {0, 10, 200, 255, 30, 40, 250, 5};
    uint8_t out[13];
    static const uint8_t bc3[3] = {70, 142, 103}, bl3[3] = {71, 134, 112};
    static const uint8_t bc13[13] = {0, 0, 14, 137, 232, 255, 145, 19, 17, 116, 250, 108, 0};
    lisa_resample_u8(row, 8, 1, 1, out, 3, 1, LISA_RESAMPLE_BICUBIC);
    CHECK(!memcmp(out, bc3, 3), "row bicubic 8->3: %d %d %d", out[0], out[1], out[2]);
    lisa_resample_u8(row, 8, 1, 1, out, 3, 1, LISA_RESAMPLE_BILINEAR);
    CHECK(!memcmp(out, bl3, 3), "row bilinear 8->3: %d %d %d", out[0], out[1], out[2]);
    lisa_resample_u8(row, 8, 1, 1, out, 13, 1, LISA_RESAMPLE_BICUBIC);
    CHECK(!memcmp(out, bc13, 13), "row bicubic 8->13");
    /* Vertical only: a column resized equals the row resized. */
    lisa_resample_u8(row, 1, 8, 1, out, 1, 13, LISA_RESAMPLE_BICUBIC);
    CHECK(!memcmp(out, bc13, 13), "column bicubic 8->13");
    /* Same size copies. */
    lisa_resample_u8(row, 8, 1, 1, out, 8, 1, LISA_RESAMPLE_BICUBIC);
    CHECK(!memcmp(out, row, 8), "same-size copy");

    CHECK(lisa_resample_u8(row, 8, 1, 1, out, 0, 1, LISA_RESAMPLE_BICUBIC) == LISA_ERR_ARG,
          "zero width");
    CHECK(lisa_resample_u8(row, 8, 1, 5, out, 1, 1, LISA_RESAMPLE_BICUBIC) == LISA_ERR_ARG,
          "5 channels");
    CHECK(lisa_resample_u8(row, 8, 1, 1, out, 1, 1, (lisa_resample_filter)7) == LISA_ERR_ARG,
          "unknown filter");
}

static void test_norm_tables(void) {
    FILE *f = fopen(test_path(g_dir, "norm.txt"), "r");
    CHECK(f != NULL, "norm.txt missing");
    if (!f) return;
    char line[256], branch[16];
    int c, v, n = 0, exact = 0;
    unsigned bits;
    double maxd = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#') continue;
        if (sscanf(line, "%15s %d %d %x", branch, &c, &v, &bits) != 4 || c < 0 || c > 2 ||
            v < 0 || v > 255) {
            CHECK(0, "bad norm.txt line: %s", line);
            continue;
        }
        float want;
        uint32_t b = bits;
        memcpy(&want, &b, 4);
        float got = !strcmp(branch, "clip") ? lisa_preprocess_clip_value(c, (uint8_t)v)
                                            : lisa_preprocess_sam_value(c, (uint8_t)v);
        double d = fabs((double)got - (double)want);
        if (d > maxd) maxd = d;
        CHECK(d <= 1e-6, "%s c%d v%d: %.9g vs %.9g", branch, c, v, got, want);
        exact += !memcmp(&got, &want, 4);
        n++;
    }
    fclose(f);
    CHECK(n == 2 * 3 * 256, "norm.txt has %d entries", n);
    fprintf(stderr, "normalisation: %d/%d values bit-exact, max |diff| %.3g\n", exact, n, maxd);
}

static void test_images(void) {
    FILE *f = fopen(test_path(g_dir, "images.txt"), "r");
    CHECK(f != NULL, "images.txt missing");
    if (!f) return;
    char line[1024];
    int n = 0, ok_clip = 0, ok_sam = 0, ok_ct = 0, ok_st = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        char name[256];
        int w, h, rh, rw, nh, nw;
        uint64_t rgb, cu8, cf32, su8, sf32;
        if (sscanf(line,
                   "%255s %d %d %" SCNx64 " clip %d %d %" SCNx64 " %" SCNx64 " sam %d %d %" SCNx64
                   " %" SCNx64,
                   name, &w, &h, &rgb, &rh, &rw, &cu8, &cf32, &nh, &nw, &su8, &sf32) != 12) {
            CHECK(0, "bad images.txt line: %s", line);
            continue;
        }
        n++;
        lisa_image img;
        if (lisa_image_load(&img, test_path(g_dir, name), NULL) != LISA_OK) {
            CHECK(0, "%s: %s", name, lisa_error_get());
            continue;
        }
        lisa_preprocessed p;
        lisa_status st = lisa_preprocess_clip(&img, 224, &p);
        CHECK(st == LISA_OK, "%s clip: %s", name, lisa_error_get());
        if (st == LISA_OK) {
            CHECK(p.resize_h == rh && p.resize_w == rw, "%s clip resize %dx%d, want %dx%d", name,
                  p.resize_h, p.resize_w, rh, rw);
            CHECK(p.orig_h == h && p.orig_w == w && p.tensor_h == 224 && p.tensor_w == 224,
                  "%s clip sizes", name);
            int a = wsum64(p.resized.rgb, 224 * 224 * 3) == cu8;
            int b = wsum64(p.chw, sizeof(float) * 3 * 224 * 224) == cf32;
            CHECK(a, "%s: CLIP crop differs from Pillow/transformers", name);
            CHECK(b, "%s: CLIP tensor differs from transformers", name);
            ok_clip += a;
            ok_ct += b;
            lisa_preprocessed_free(&p);
        }
        st = lisa_preprocess_sam(&img, 1024, 1024, &p);
        CHECK(st == LISA_OK, "%s sam: %s", name, lisa_error_get());
        if (st == LISA_OK) {
            CHECK(p.resize_h == nh && p.resize_w == nw && p.resized.h == nh && p.resized.w == nw,
                  "%s sam resize %dx%d, want %dx%d", name, p.resize_h, p.resize_w, nh, nw);
            int a = p.resized.h == nh && p.resized.w == nw &&
                    wsum64(p.resized.rgb, (size_t)nh * nw * 3) == su8;
            int b = wsum64(p.chw, sizeof(float) * 3 * 1024 * 1024) == sf32;
            CHECK(a, "%s: SAM resize differs from Pillow", name);
            CHECK(b, "%s: SAM tensor differs from torch", name);
            ok_sam += a;
            ok_st += b;
            /* Padding is 0.0 right of and below the image, in every channel. */
            int pad_ok = 1;
            for (int c = 0; c < 3 && pad_ok; c++)
                for (int y = 0; y < 1024 && pad_ok; y++)
                    for (int x = (y < nh ? nw : 0); x < 1024; x++)
                        if (p.chw[((size_t)c * 1024 + y) * 1024 + x] != 0.0f) {
                            pad_ok = 0;
                            break;
                        }
            CHECK(pad_ok, "%s: SAM padding not zero", name);
            lisa_preprocessed_free(&p);
        }
        lisa_image_free(&img);
    }
    fclose(f);
    CHECK(n >= 20, "only %d images", n);
    fprintf(stderr,
            "images: %d; CLIP crop exact %d, tensor exact %d; SAM resize exact %d, tensor exact %d\n",
            n, ok_clip, ok_ct, ok_sam, ok_st);
}

static void test_sizes_and_args(void) {
    int a, b;
    lisa_preprocess_clip_size(480, 640, 224, &a, &b);
    CHECK(a == 224 && b == 298, "clip 480x640 -> %dx%d", a, b);
    lisa_preprocess_clip_size(640, 427, 224, &a, &b);
    CHECK(a == 335 && b == 224, "clip 640x427 -> %dx%d", a, b);
    lisa_preprocess_sam_size(480, 640, 1024, &a, &b);
    CHECK(a == 768 && b == 1024, "sam 480x640 -> %dx%d", a, b);
    lisa_preprocess_sam_size(427, 640, 1024, &a, &b);
    CHECK(a == 683 && b == 1024, "sam 427x640 -> %dx%d", a, b);
    lisa_preprocess_sam_size(5, 3, 1024, &a, &b);
    CHECK(a == 1024 && b == 614, "sam 5x3 -> %dx%d", a, b);

    lisa_image img;
    lisa_preprocessed p;
    CHECK(lisa_image_init(&img, 40, 30) == LISA_OK, "init");
    CHECK(lisa_preprocess_sam(&img, 1024, 512, &p) == LISA_ERR_ARG && p.chw == NULL,
          "pad < long side");
    CHECK(lisa_preprocess_clip(&img, 0, &p) == LISA_ERR_ARG && p.chw == NULL, "clip size 0");
    /* A non-default size (CLIP-336, SAM long side 512 in 1024 padding). */
    CHECK(lisa_preprocess_clip(&img, 336, &p) == LISA_OK && p.resized.w == 336 &&
              p.tensor_h == 336 && p.resize_w == 448,
          "clip 336");
    lisa_preprocessed_free(&p);
    CHECK(lisa_preprocess_sam(&img, 512, 1024, &p) == LISA_OK && p.resize_w == 512 &&
              p.resize_h == 384 && p.tensor_w == 1024,
          "sam 512 in 1024");
    lisa_preprocessed_free(&p);
    lisa_preprocessed_free(&p);
    lisa_image_free(&img);
    lisa_image empty = {0, 0, NULL};
    CHECK(lisa_preprocess_sam(&empty, 1024, 1024, &p) == LISA_ERR_ARG, "empty image");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test-preprocess FIXTURES_DIR\n");
        return 2;
    }
    static char dir[4096];
    snprintf(dir, sizeof dir, "%s/images", argv[1]);
    g_dir = dir;
    test_resample_cases();
    test_norm_tables();
    test_images();
    test_sizes_and_args();
    return test_finish("test-preprocess");
}
