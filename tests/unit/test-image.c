/* test-image.c: image decoding against Pillow, hostile inputs, EXIF and the
 * writers (coordinator/request/image.h).
 *
 * Every fixture in images/images.txt must decode to exactly Pillow's RGB
 * (checksum of the whole buffer; see tests/reference/gen_images.py), from a
 * file and from memory. Hostile inputs (every truncation of small files,
 * truncations of large ones, byte mutations, wrong magic, empty file, CMYK,
 * a 60000x60000 header, malformed EXIF, limits) must give a non-OK status
 * with a message, or for mutations at least not crash; run it under ASan
 * too. It does not test resizing (test-preprocess.c does). */
#include <inttypes.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "image.h"
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

static uint8_t *read_fixture(const char *name, size_t *len) {
    return (uint8_t *)test_read_file(test_path(g_dir, name), len);
}

static void test_fixtures(void) {
    FILE *f = fopen(test_path(g_dir, "images.txt"), "r");
    CHECK(f != NULL, "images.txt missing");
    if (!f) return;
    char line[1024];
    int n = 0, exact = 0, jpegs = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        char name[256];
        int w, h;
        uint64_t want;
        if (sscanf(line, "%255s %d %d %" SCNx64, name, &w, &h, &want) != 4) {
            CHECK(0, "bad images.txt line: %s", line);
            continue;
        }
        n++;
        int is_jpeg = strstr(name, ".jpg") != NULL;
        jpegs += is_jpeg;
        lisa_image img;
        lisa_status st = lisa_image_load(&img, test_path(g_dir, name), NULL);
        CHECK(st == LISA_OK, "%s: %s", name, lisa_error_get());
        if (st != LISA_OK) continue;
        CHECK(img.w == w && img.h == h, "%s: %dx%d, Pillow %dx%d", name, img.w, img.h, w, h);
        uint64_t got = img.w == w && img.h == h ? wsum64(img.rgb, (size_t)w * h * 3) : 0;
        CHECK(got == want, "%s: decoded RGB differs from Pillow's", name);
        exact += got == want;

        size_t len = 0;
        uint8_t *buf = read_fixture(name, &len);
        lisa_image mem;
        st = lisa_image_decode(&mem, buf, len, NULL);
        CHECK(st == LISA_OK && mem.w == img.w && mem.h == img.h &&
                  !memcmp(mem.rgb, img.rgb, (size_t)w * h * 3),
              "%s: memory decode differs from file decode", name);
        lisa_image_free(&mem);
        free(buf);
        lisa_image_free(&img);
    }
    fclose(f);
    CHECK(n >= 20, "only %d fixture images", n);
    fprintf(stderr, "decode: %d/%d images byte-equal to Pillow (%d JPEG)\n", exact, n, jpegs);
}

/* Decoding prefixes of a file must fail cleanly. `all` tries every length. */
static void test_truncations(const char *name, int all) {
    size_t len = 0;
    uint8_t *buf = read_fixture(name, &len);
    CHECK(buf != NULL, "%s missing", name);
    if (!buf) return;
    size_t cuts[] = {0, 1, 2, 3, 8, 16, 33, 100, 300, len / 4, len / 2, len * 3 / 4,
                     len - 100, len - 3, len - 2, len - 1};
    size_t ncut = all ? len : sizeof cuts / sizeof cuts[0];
    int failed_ok = 0;
    for (size_t i = 0; i < ncut; i++) {
        size_t cut = all ? i : cuts[i];
        if (cut >= len) continue;
        /* An exact-size heap copy so ASan sees any read past the end. */
        uint8_t *p = malloc(cut ? cut : 1);
        memcpy(p, buf, cut);
        lisa_image img;
        lisa_status st = lisa_image_decode(&img, p, cut, NULL);
        if (st == LISA_OK || lisa_error_get()[0] == 0 || img.rgb != NULL) {
            failed_ok++;
            CHECK(0, "%s cut to %zu bytes: status %d, message '%s'", name, cut, st,
                  lisa_error_get());
        }
        lisa_image_free(&img);
        free(p);
    }
    (void)failed_ok;
    free(buf);
}

/* Deterministic byte mutations: decode must return (any status), never crash;
 * an OK result has the fixture's size. */
static void test_mutations(const char *name, int count) {
    size_t len = 0;
    uint8_t *buf = read_fixture(name, &len);
    CHECK(buf != NULL, "%s missing", name);
    if (!buf) return;
    lisa_image ref;
    CHECK(lisa_image_decode(&ref, buf, len, NULL) == LISA_OK, "%s", lisa_error_get());
    uint64_t state = 0x2545F4914F6CDD1Dull;
    int rejected = 0;
    uint8_t *p = malloc(len);
    for (int i = 0; i < count; i++) {
        memcpy(p, buf, len);
        for (int k = 0; k < 1 + i % 3; k++) {
            state ^= state << 13, state ^= state >> 7, state ^= state << 17;
            size_t pos = 2 + (size_t)(state % (len - 2)); /* keep the magic */
            p[pos] ^= (uint8_t)(1u << (state >> 60 & 7)) | (uint8_t)(i & 0xF0);
        }
        lisa_image img;
        lisa_status st = lisa_image_decode(&img, p, len, NULL);
        if (st == LISA_OK) {
            CHECK(img.rgb && img.w > 0 && img.h > 0 && (uint64_t)img.w * img.h <= 100000000u,
                  "%s mutation %d: OK with %dx%d", name, i, img.w, img.h);
        } else {
            rejected++;
            CHECK(lisa_error_get()[0] != 0 && img.rgb == NULL, "%s mutation %d: no message",
                  name, i);
        }
        lisa_image_free(&img);
    }
    fprintf(stderr, "mutations of %s: %d/%d rejected, the rest decoded\n", name, rejected, count);
    free(p);
    lisa_image_free(&ref);
    free(buf);
}

static void expect_fail(const char *what, lisa_status st, lisa_status want, const char *needle) {
    CHECK(st == want, "%s: status %d (%s), want %d: %s", what, st, lisa_status_str(st), want,
          lisa_error_get());
    CHECK(strstr(lisa_error_get(), needle) != NULL, "%s: message '%s' lacks '%s'", what,
          lisa_error_get(), needle);
}

static void test_hostile(void) {
    lisa_image img;
    char tmpl[] = "/tmp/lisa-test-image-XXXXXX";
    int fd = mkstemp(tmpl);
    CHECK(fd >= 0, "mkstemp");
    if (fd >= 0) {
        close(fd);
        expect_fail("empty file", lisa_image_load(&img, tmpl, NULL), LISA_ERR_FORMAT, "empty");
        CHECK(img.rgb == NULL, "empty file left pixels");
        FILE *f = fopen(tmpl, "wb");
        fputs("GIF89a this is not a JPEG or PNG", f);
        fclose(f);
        expect_fail("wrong magic", lisa_image_load(&img, tmpl, NULL), LISA_ERR_FORMAT,
                    "unrecognized");
        unlink(tmpl);
    }
    expect_fail("missing file", lisa_image_load(&img, test_path(g_dir, "no-such.png"), NULL),
                LISA_ERR_IO, "no-such.png");
    expect_fail("directory", lisa_image_load(&img, g_dir, NULL), LISA_ERR_IO, "regular");
    expect_fail("NULL data", lisa_image_decode(&img, NULL, 0, NULL), LISA_ERR_FORMAT, "empty");
    static const uint8_t soi[] = {0xFF, 0xD8, 0xFF};
    expect_fail("bare SOI", lisa_image_decode(&img, soi, 3, NULL), LISA_ERR_FORMAT, "JPEG");
    expect_fail("CMYK JPEG", lisa_image_load(&img, test_path(g_dir, "hostile/cmyk.jpg"), NULL),
                LISA_ERR_UNSUPPORTED, "CMYK");
    expect_fail("60000x60000 PNG",
                lisa_image_load(&img, test_path(g_dir, "hostile/huge.png"), NULL), LISA_ERR_ARG,
                "limit");
    CHECK(img.rgb == NULL, "huge.png left pixels");

    lisa_image_limits lim = {0, 1000};
    expect_fail("pixel limit", lisa_image_load(&img, test_path(g_dir, "astronaut.jpg"), &lim),
                LISA_ERR_ARG, "limit");
    expect_fail("pixel limit png", lisa_image_load(&img, test_path(g_dir, "chelsea.png"), &lim),
                LISA_ERR_ARG, "limit");
    lisa_image_limits lim2 = {100, 0};
    expect_fail("file limit", lisa_image_load(&img, test_path(g_dir, "astronaut.jpg"), &lim2),
                LISA_ERR_ARG, "limit");

    /* Malformed EXIF is ignored, as cv2 does: the image decodes unrotated. */
    const char *bad[] = {"hostile/exif-bad.jpg", "hostile/exif-bad2.jpg"};
    for (int i = 0; i < 2; i++) {
        lisa_status st = lisa_image_load(&img, test_path(g_dir, bad[i]), NULL);
        CHECK(st == LISA_OK && img.w == 24 && img.h == 16, "%s: %s (%dx%d)", bad[i],
              lisa_error_get(), img.w, img.h);
        lisa_image_free(&img);
    }

    test_truncations("tiny.jpg", 1);
    test_truncations("tiny.png", 1);
    test_truncations("exif6.jpg", 1);
    test_truncations("astronaut.jpg", 0);
    test_truncations("hubble-progressive.jpg", 0);
    test_truncations("rocket.jpg", 0);
    test_truncations("chelsea.png", 0);
    test_truncations("rgb16.png", 0);
    test_truncations("chelsea-palette.png", 0);
    test_mutations("tiny.jpg", 300);
    test_mutations("hubble-progressive.jpg", 40);
    test_mutations("exif6.jpg", 300);
    test_mutations("chelsea-palette.png", 100);
    test_mutations("tiny.png", 300);
}

/* Builds an APP1 payload with one IFD0 entry. */
static size_t exif_make(uint8_t *b, int little, uint16_t type, uint32_t count, uint32_t value) {
    size_t n = 0;
    memcpy(b, "Exif\0\0", 6);
    n = 6;
#define PUT(v, bytes)                                                                   \
    do {                                                                                \
        for (int i_ = 0; i_ < (bytes); i_++)                                            \
            b[n + i_] = (uint8_t)((uint32_t)(v) >> (8 * (little ? i_ : (bytes) - 1 - i_))); \
        n += (bytes);                                                                   \
    } while (0)
    b[n++] = little ? 'I' : 'M';
    b[n++] = little ? 'I' : 'M';
    PUT(42, 2);
    PUT(8, 4);
    PUT(2, 2);          /* two entries: Make, then Orientation */
    PUT(0x010F, 2);
    PUT(2, 2);
    PUT(4, 4);
    PUT(0x41424300, 4);
    PUT(0x0112, 2);
    PUT(type, 2);
    PUT(count, 4);
    if (type == 3) {
        PUT(value, 2);
        PUT(0, 2);
    } else {
        PUT(value, 4);
    }
    PUT(0, 4);
#undef PUT
    return n;
}

static void test_exif(void) {
    uint8_t b[128];
    for (int little = 0; little < 2; little++) {
        for (int o = 1; o <= 8; o++) {
            size_t n = exif_make(b, little, 3, 1, (uint32_t)o);
            CHECK(lisa_image_exif_orientation(b, n) == o, "orientation %d (little %d)", o, little);
        }
        size_t n = exif_make(b, little, 4, 1, 6);
        CHECK(lisa_image_exif_orientation(b, n) == 6, "LONG orientation");
        n = exif_make(b, little, 3, 1, 9);
        CHECK(lisa_image_exif_orientation(b, n) == 1, "orientation 9 -> 1");
        n = exif_make(b, little, 3, 1, 0);
        CHECK(lisa_image_exif_orientation(b, n) == 1, "orientation 0 -> 1");
        n = exif_make(b, little, 3, 2, 6);
        CHECK(lisa_image_exif_orientation(b, n) == 1, "count 2 -> 1");
        n = exif_make(b, little, 7, 1, 6);
        CHECK(lisa_image_exif_orientation(b, n) == 1, "UNDEFINED type -> 1");
        /* Every prefix, in an exact-size buffer: never reads past the end. */
        n = exif_make(b, little, 3, 1, 6);
        for (size_t cut = 0; cut < n; cut++) {
            uint8_t *p = malloc(cut ? cut : 1);
            memcpy(p, b, cut);
            int o = lisa_image_exif_orientation(p, cut);
            CHECK(o == 1 || (o == 6 && cut >= n - 6), "prefix %zu gives %d", cut, o);
            free(p);
        }
    }
    CHECK(lisa_image_exif_orientation(NULL, 0) == 1, "NULL");
    CHECK(lisa_image_exif_orientation((const uint8_t *)"http://ns.adobe.com/xap/1.0/", 28) == 1,
          "XMP APP1");
}

static void test_orient(void) {
    lisa_image a, b;
    CHECK(lisa_image_init(&a, 5, 3) == LISA_OK, "init");
    for (int i = 0; i < 5 * 3 * 3; i++) a.rgb[i] = (uint8_t)i;
    /* Each orientation's inverse: 6 and 8 undo each other, the rest are involutions. */
    const int inv[9] = {0, 1, 2, 3, 4, 5, 8, 7, 6};
    for (int o = 1; o <= 8; o++) {
        CHECK(lisa_image_init(&b, 5, 3) == LISA_OK, "init");
        memcpy(b.rgb, a.rgb, 45);
        CHECK(lisa_image_orient(&b, o) == LISA_OK, "orient %d", o);
        CHECK((o >= 5) == (b.w == 3 && b.h == 5), "orient %d size %dx%d", o, b.w, b.h);
        CHECK(lisa_image_orient(&b, inv[o]) == LISA_OK, "orient back");
        CHECK(b.w == 5 && b.h == 3 && !memcmp(a.rgb, b.rgb, 45), "orient %d not undone", o);
        lisa_image_free(&b);
    }
    /* Orientation 6 (rotate 90 clockwise): output (0,0) is input (0, h-1). */
    CHECK(lisa_image_init(&b, 5, 3) == LISA_OK, "init");
    memcpy(b.rgb, a.rgb, 45);
    lisa_image_orient(&b, 6);
    CHECK(!memcmp(b.rgb, a.rgb + (2 * 5 + 0) * 3, 3), "rotate 90 cw corner");
    lisa_image_free(&b);
    lisa_image_free(&a);
    lisa_image_free(&a);
    CHECK(a.rgb == NULL && a.w == 0, "double free leaves empty");
    CHECK(lisa_image_init(&a, 0, 3) == LISA_ERR_ARG && a.rgb == NULL, "zero width");
    CHECK(lisa_image_init(&a, 4, -1) == LISA_ERR_ARG && a.rgb == NULL, "negative height");
}

static void test_writers(void) {
    lisa_image img, back;
    CHECK(lisa_image_load(&img, test_path(g_dir, "chelsea-palette.png"), NULL) == LISA_OK, "%s",
          lisa_error_get());
    char path[] = "/tmp/lisa-test-write-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    if (fd < 0) return;
    close(fd);
    CHECK(lisa_image_write_png(&img, path) == LISA_OK, "%s", lisa_error_get());
    CHECK(lisa_image_load(&back, path, NULL) == LISA_OK, "%s", lisa_error_get());
    CHECK(back.w == img.w && back.h == img.h &&
              !memcmp(back.rgb, img.rgb, (size_t)img.w * img.h * 3),
          "RGB PNG round trip");
    lisa_image_free(&back);

    int w = 7, h = 4;
    uint8_t mask[28];
    for (int i = 0; i < w * h; i++) mask[i] = (i * 37 % 5) ? 255 : 0;
    CHECK(lisa_image_write_gray_png(mask, w, h, path) == LISA_OK, "%s", lisa_error_get());
    CHECK(lisa_image_load(&back, path, NULL) == LISA_OK, "%s", lisa_error_get());
    int same = back.w == w && back.h == h;
    for (int i = 0; same && i < w * h; i++)
        same = back.rgb[i * 3] == mask[i] && back.rgb[i * 3 + 1] == mask[i] &&
               back.rgb[i * 3 + 2] == mask[i];
    CHECK(same, "gray PNG round trip");
    lisa_image_free(&back);

    CHECK(lisa_image_write_ppm(&img, path) == LISA_OK, "%s", lisa_error_get());
    size_t len = 0;
    char *ppm = test_read_file(path, &len);
    char head[64];
    int hl = snprintf(head, sizeof head, "P6\n%d %d\n255\n", img.w, img.h);
    CHECK(ppm && len == (size_t)hl + (size_t)img.w * img.h * 3 && !memcmp(ppm, head, (size_t)hl) &&
              !memcmp(ppm + hl, img.rgb, (size_t)img.w * img.h * 3),
          "PPM bytes");
    free(ppm);
    unlink(path);
    expect_fail("write to missing dir", lisa_image_write_png(&img, "/nonexistent-dir/x.png"),
                LISA_ERR_IO, "nonexistent-dir");
    expect_fail("ppm to missing dir", lisa_image_write_ppm(&img, "/nonexistent-dir/x.ppm"),
                LISA_ERR_IO, "nonexistent-dir");
    lisa_image_free(&img);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test-image FIXTURES_DIR\n");
        return 2;
    }
    static char dir[4096];
    snprintf(dir, sizeof dir, "%s/images", argv[1]);
    g_dir = dir;
    test_fixtures();
    test_hostile();
    test_exif();
    test_orient();
    test_writers();
    return test_finish("test-image");
}
