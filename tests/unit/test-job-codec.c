/* test-job-codec.c: job-codec.h: requests (inline bytes, path) and results
 * (0, 1, 2 masks, failed) round trip; a decoded result formats to the same
 * result JSON, byte for byte, as the response it was encoded from (random
 * masks, fixed seeds); and each kind of bad message is refused with its
 * reason: malformed or truncated protobuf, oversized message, image over
 * the cap, text not UTF-8 or with a NUL, both or neither image source,
 * wrong version, masks whose RLE does not fit the image, too many masks, a
 * message that would unpack into too much memory. Image paths resolve
 * under roots in a mkdtemp folder, refusing "..", symlinks out, absolute
 * paths elsewhere and a root's prefix that is not at a '/'.
 *
 * The bad messages are written here with a tiny protobuf wire writer, since
 * the encoder refuses to make them (and the generated code is the
 * library's). */
#include <limits.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "job-codec.h"
#include "masks.h"
#include "result-write.h"
#include "testutil.h"

/* ---- a protobuf wire writer ------------------------------------------- */

typedef struct {
    uint8_t *p;
    size_t n, cap;
} wire;

static void wire_byte(wire *w, uint8_t b) {
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 256;
        w->p = realloc(w->p, w->cap);
        if (!w->p) abort();
    }
    w->p[w->n++] = b;
}

static void wire_varint(wire *w, uint64_t v) {
    while (v >= 0x80) {
        wire_byte(w, (uint8_t)(v | 0x80));
        v >>= 7;
    }
    wire_byte(w, (uint8_t)v);
}

static void wire_uint(wire *w, int field, uint64_t v) {
    wire_varint(w, (uint64_t)field << 3);
    wire_varint(w, v);
}

static void wire_bytes(wire *w, int field, const void *data, size_t len) {
    wire_varint(w, (uint64_t)field << 3 | 2);
    wire_varint(w, len);
    for (size_t i = 0; i < len; i++) wire_byte(w, ((const uint8_t *)data)[i]);
}

static void wire_str(wire *w, int field, const char *s) { wire_bytes(w, field, s, strlen(s)); }

/* JobRequest field numbers (proto/job.proto). */
enum { RQ_VERSION = 1, RQ_CUSTOM_ID, RQ_IMAGE_BYTES, RQ_IMAGE_PATH, RQ_IMAGE_LABEL, RQ_PROMPT };
/* JobResult and Mask field numbers. */
enum { RS_VERSION = 1, RS_STATUS, RS_WIDTH = 7, RS_HEIGHT = 8, RS_MASKS = 9 };
enum { MK_H = 1, MK_W, MK_RLE, MK_AREA };

/* ---- helpers ------------------------------------------------------------ */

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;

static void rng_seed(uint64_t s) { g_rng = s * 0x9E3779B97F4A7C15ull + 1; }

static uint32_t rng_next(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 16);
}

static int same_str(const char *a, const char *b) {
    return (!a && !b) || (a && b && !strcmp(a, b));
}

/* The last error contains want. */
static int error_says(const char *want) { return strstr(lisa_error_get(), want) != NULL; }

/* Decoding buf as a request fails with st and a message containing want. */
static void check_request_refused(const uint8_t *buf, size_t len, const lisa_job_limits *l,
                                  lisa_status want_st, const char *want, const char *what) {
    lisa_job_request r;
    lisa_status st = lisa_job_request_decode(buf, len, l, &r);
    CHECK(st == want_st, "%s: status %s, want %s (%s)", what, lisa_status_str(st),
          lisa_status_str(want_st), lisa_error_get());
    CHECK(error_says(want), "%s: error '%s' does not say '%s'", what, lisa_error_get(), want);
    CHECK(!r.custom_id && !r.image && !r.prompt, "%s: a refused request has no fields", what);
    lisa_job_request_free(&r);
}

static void check_result_refused(const uint8_t *buf, size_t len, const lisa_job_limits *l,
                                 lisa_status want_st, const char *want, const char *what) {
    lisa_response r;
    lisa_status st = lisa_job_result_decode(buf, len, l, &r, NULL);
    CHECK(st == want_st, "%s: status %s, want %s (%s)", what, lisa_status_str(st),
          lisa_status_str(want_st), lisa_error_get());
    CHECK(error_says(want), "%s: error '%s' does not say '%s'", what, lisa_error_get(), want);
    CHECK(r.n_masks == 0 && !r.masks && !r.text, "%s: a refused result is left empty", what);
    lisa_response_free(&r);
}

/* A response with n random masks of w x h (masks[0] empty and masks[1]
 * full when n > 2), random IoUs, ids and a text with JSON-hostile bytes. */
static void response_random(lisa_response *r, int w, int h, int n, uint64_t seed) {
    rng_seed(seed);
    memset(r, 0, sizeof *r);
    r->status = LISA_OK;
    r->text = strdup("Sure, \"it\" is [SEG] \xc3\xa9\\ and [SEG].\n");
    r->n_ids = 5 + (int)(rng_next() % 20);
    r->ids = malloc((size_t)r->n_ids * sizeof *r->ids);
    for (int i = 0; i < r->n_ids; i++) r->ids[i] = (int32_t)(rng_next() % 32005);
    r->stop = LISA_STOP_EOS;
    r->w = w;
    r->h = h;
    r->n_masks = n;
    r->masks = n ? calloc((size_t)n, sizeof *r->masks) : NULL;
    for (int k = 0; k < n; k++) {
        uint8_t *m = malloc((size_t)w * (size_t)h);
        uint32_t density = rng_next() % 100;
        for (int i = 0; i < w * h; i++) {
            m[i] = rng_next() % 100 < density;
            if (n > 2 && k == 0) m[i] = 0;
            if (n > 2 && k == 1) m[i] = 1;
        }
        r->masks[k].mask = m;
        r->masks[k].iou = (float)(rng_next() % 1000000) / 999983.0f;
    }
}

/* Encodes r, decodes it back and checks every field that travels. */
static void check_result_round_trip(const lisa_response *r, const char *what) {
    lisa_job_result_meta meta = {.attempt = 3, .queued_ms = 12.5, .run_ms = 1234.25};
    snprintf(meta.worker, sizeof meta.worker, "gpu-node-7:4242");
    uint8_t *buf = NULL;
    size_t len = 0;
    lisa_status st = lisa_job_result_encode(r, &meta, &buf, &len);
    CHECK(st == LISA_OK, "%s: encode: %s", what, lisa_error_get());
    lisa_response d;
    lisa_job_result_meta dm;
    st = lisa_job_result_decode(buf, len, NULL, &d, &dm);
    CHECK(st == LISA_OK, "%s: decode: %s", what, lisa_error_get());
    free(buf);
    if (st != LISA_OK) return;
    CHECK(d.status == r->status, "%s: status %d", what, d.status);
    CHECK(!strcmp(d.error, r->error), "%s: error '%s'", what, d.error);
    if (r->status == LISA_OK) {
        CHECK(same_str(d.text, r->text), "%s: text '%s'", what, d.text ? d.text : "(null)");
        CHECK(d.n_ids == r->n_ids && (!r->n_ids || !memcmp(d.ids, r->ids, (size_t)r->n_ids * 4)),
              "%s: ids", what);
        CHECK(d.w == r->w && d.h == r->h, "%s: size %dx%d", what, d.w, d.h);
        CHECK(d.n_masks == r->n_masks, "%s: %d masks", what, d.n_masks);
        for (int k = 0; k < d.n_masks && k < r->n_masks; k++) {
            int bad = 0;
            for (int i = 0; i < r->w * r->h; i++) bad += d.masks[k].mask[i] != (r->masks[k].mask[i] != 0);
            CHECK(bad == 0, "%s: mask %d: %d pixels differ", what, k, bad);
            CHECK(d.masks[k].iou == r->masks[k].iou, "%s: mask %d iou", what, k);
        }
    }
    CHECK(d.stop == r->stop, "%s: stop %d", what, d.stop);
    CHECK(!strcmp(dm.worker, "gpu-node-7:4242") && dm.attempt == 3 && dm.queued_ms == 12.5 &&
              dm.run_ms == 1234.25,
          "%s: meta %s %d %g %g", what, dm.worker, dm.attempt, dm.queued_ms, dm.run_ms);
    /* the result JSON (results.jsonl line and result.json) byte for byte */
    const lisa_result_ident who = {"job-1", "photos/a b.jpg", "Where is \"it\"?"};
    for (int pretty = 0; pretty < 2; pretty++) {
        char *a = NULL, *b = NULL;
        CHECK(lisa_result_format(&who, r, pretty, &a) == LISA_OK, "format original");
        CHECK(lisa_result_format(&who, &d, pretty, &b) == LISA_OK, "format decoded");
        CHECK(a && b && !strcmp(a, b), "%s: JSON differs (pretty %d):\n%s\n%s", what, pretty,
              a ? a : "", b ? b : "");
        free(a);
        free(b);
    }
    lisa_response_free(&d);
}

/* ---- requests ----------------------------------------------------------- */

static void test_requests(void) {
    uint8_t img[1500];
    rng_seed(7);
    for (size_t i = 0; i < sizeof img; i++) img[i] = (uint8_t)rng_next();
    lisa_job_request in = {.custom_id = "img-0001", .image = img, .image_size = sizeof img,
                           .image_label = "photos/cat.jpg",
                           .prompt = "Segment the caf\xc3\xa9 sign \xe2\x80\x94 left one.",
                           .answer = "[SEG].", .max_new_tokens = 7};
    uint8_t *buf = NULL;
    size_t len = 0;
    CHECK(lisa_job_request_encode(&in, NULL, &buf, &len) == LISA_OK, "encode inline: %s",
          lisa_error_get());
    lisa_job_request out;
    CHECK(lisa_job_request_decode(buf, len, NULL, &out) == LISA_OK, "decode inline: %s",
          lisa_error_get());
    CHECK(same_str(out.custom_id, in.custom_id) && same_str(out.image_label, in.image_label) &&
              same_str(out.prompt, in.prompt) && same_str(out.answer, in.answer) &&
              !out.image_path && out.max_new_tokens == 7,
          "inline request fields");
    CHECK(out.image_size == sizeof img && out.image && !memcmp(out.image, img, sizeof img),
          "inline image bytes");
    lisa_job_request_free(&out);

    /* truncated anywhere: refused or (cut at a field boundary) a shorter
     * valid request, never a crash; cut inside the image: malformed */
    for (size_t cut = 0; cut < len; cut += cut < 64 || cut > len - 64 ? 1 : 97) {
        lisa_job_request t;
        lisa_status st = lisa_job_request_decode(buf, cut, NULL, &t);
        CHECK(st == LISA_OK || st == LISA_ERR_FORMAT, "truncated to %zu: %s", cut,
              lisa_status_str(st));
        lisa_job_request_free(&t);
    }
    check_request_refused(buf, len / 2, NULL, LISA_ERR_FORMAT, "malformed protobuf",
                          "truncated in the image");

    /* oversized message and image over the cap, both ways */
    lisa_job_limits small = {.max_message_bytes = 1000};
    check_request_refused(buf, len, &small, LISA_ERR_ARG, "over the limit of 1000", "oversized");
    uint8_t *b2 = NULL;
    size_t l2 = 0;
    CHECK(lisa_job_request_encode(&in, &small, &b2, &l2) == LISA_ERR_ARG && error_says("limit of 1000"),
          "encode oversized: %s", lisa_error_get());
    lisa_job_limits capped = {.max_image_bytes = 1000};
    check_request_refused(buf, len, &capped, LISA_ERR_ARG, "image is 1500 bytes, over the limit of 1000",
                          "image over the cap");
    CHECK(lisa_job_request_encode(&in, &capped, &b2, &l2) == LISA_ERR_ARG &&
              error_says("image is 1500 bytes"),
          "encode image over the cap: %s", lisa_error_get());
    free(buf);

    /* by path, no answer: NULL stays NULL */
    lisa_job_request byp = {.custom_id = "7", .image_path = "/data/img/a.jpg",
                            .image_label = "a.jpg", .prompt = "What is it?"};
    CHECK(lisa_job_request_encode(&byp, NULL, &buf, &len) == LISA_OK, "encode path: %s",
          lisa_error_get());
    CHECK(lisa_job_request_decode(buf, len, NULL, &out) == LISA_OK, "decode path: %s",
          lisa_error_get());
    CHECK(same_str(out.image_path, byp.image_path) && !out.image && !out.image_size && !out.answer &&
              out.max_new_tokens == 0 && same_str(out.prompt, byp.prompt),
          "path request fields");
    lisa_job_request_free(&out);
    free(buf);

    /* the encoder refuses what the decoder would */
    lisa_job_request bad = byp;
    bad.prompt = "caf\xe9";
    CHECK(lisa_job_request_encode(&bad, NULL, &buf, &len) == LISA_ERR_ARG &&
              error_says("prompt is not UTF-8"),
          "encode latin-1 prompt: %s", lisa_error_get());
    bad = byp;
    bad.image = img;
    bad.image_size = 10;
    CHECK(lisa_job_request_encode(&bad, NULL, &buf, &len) == LISA_ERR_ARG &&
              error_says("both image bytes and image path"),
          "encode both: %s", lisa_error_get());
    bad = byp;
    bad.image_path = NULL;
    CHECK(lisa_job_request_encode(&bad, NULL, &buf, &len) == LISA_ERR_ARG && error_says("no image"),
          "encode neither: %s", lisa_error_get());

    /* hand-made bad messages */
    static const struct {
        const char *prompt, *why;
    } bad_utf8[] = {
        {"caf\xe9", "latin-1"},        {"\xc0\xaf", "overlong"},  {"\xed\xa0\x80", "surrogate"},
        {"\xf4\x90\x80\x80", "> U+10FFFF"}, {"ab\xe2\x80", "cut short"}, {"\x80", "lone continuation"},
    };
    for (size_t i = 0; i < sizeof bad_utf8 / sizeof bad_utf8[0]; i++) {
        wire w = {0};
        wire_uint(&w, RQ_VERSION, 1);
        wire_str(&w, RQ_IMAGE_PATH, "a.jpg");
        wire_str(&w, RQ_PROMPT, bad_utf8[i].prompt);
        check_request_refused(w.p, w.n, NULL, LISA_ERR_FORMAT, "prompt is not UTF-8", bad_utf8[i].why);
        free(w.p);
    }
    wire w = {0};
    wire_uint(&w, RQ_VERSION, 1);
    wire_str(&w, RQ_CUSTOM_ID, "\xff\xfe");
    wire_str(&w, RQ_IMAGE_PATH, "a.jpg");
    wire_str(&w, RQ_PROMPT, "x");
    check_request_refused(w.p, w.n, NULL, LISA_ERR_FORMAT, "custom_id is not UTF-8", "custom_id");
    free(w.p);

    w = (wire){0};
    wire_uint(&w, RQ_VERSION, 1);
    wire_str(&w, RQ_IMAGE_PATH, "a.jpg");
    wire_bytes(&w, RQ_PROMPT, "seg\0ment", 8);
    check_request_refused(w.p, w.n, NULL, LISA_ERR_FORMAT, "prompt contains a NUL byte", "NUL");
    free(w.p);

    w = (wire){0};
    wire_uint(&w, RQ_VERSION, 1);
    wire_bytes(&w, RQ_IMAGE_BYTES, img, 20);
    wire_str(&w, RQ_IMAGE_PATH, "a.jpg");
    wire_str(&w, RQ_PROMPT, "x");
    check_request_refused(w.p, w.n, NULL, LISA_ERR_FORMAT, "both image bytes and image path", "both");
    free(w.p);

    w = (wire){0};
    wire_uint(&w, RQ_VERSION, 1);
    wire_str(&w, RQ_PROMPT, "x");
    check_request_refused(w.p, w.n, NULL, LISA_ERR_FORMAT, "no image", "neither");
    free(w.p);

    w = (wire){0};
    wire_uint(&w, RQ_VERSION, 1);
    wire_bytes(&w, RQ_IMAGE_BYTES, img, 0);
    wire_str(&w, RQ_PROMPT, "x");
    check_request_refused(w.p, w.n, NULL, LISA_ERR_FORMAT, "image bytes are empty", "empty bytes");
    free(w.p);

    w = (wire){0};
    wire_uint(&w, RQ_VERSION, 1);
    wire_str(&w, RQ_IMAGE_PATH, "a.jpg");
    check_request_refused(w.p, w.n, NULL, LISA_ERR_FORMAT, "no prompt", "no prompt");
    free(w.p);

    w = (wire){0};
    wire_str(&w, RQ_IMAGE_PATH, "a.jpg");
    wire_str(&w, RQ_PROMPT, "x");
    check_request_refused(w.p, w.n, NULL, LISA_ERR_FORMAT, "no protocol version", "no version");
    free(w.p);

    w = (wire){0};
    wire_uint(&w, RQ_VERSION, 2);
    wire_str(&w, RQ_IMAGE_PATH, "a.jpg");
    wire_str(&w, RQ_PROMPT, "x");
    check_request_refused(w.p, w.n, NULL, LISA_ERR_FORMAT, "protocol version 2", "version 2");
    free(w.p);

    w = (wire){0};
    wire_uint(&w, RQ_VERSION, 1);
    wire_str(&w, RQ_IMAGE_PATH, "a.jpg");
    wire_str(&w, RQ_PROMPT, "x");
    wire_uint(&w, 8, 5000000);
    check_request_refused(w.p, w.n, NULL, LISA_ERR_ARG, "max_new_tokens", "max_new_tokens");
    free(w.p);

    char longp[2000];
    memset(longp, 'p', sizeof longp - 1);
    longp[sizeof longp - 1] = 0;
    w = (wire){0};
    wire_uint(&w, RQ_VERSION, 1);
    wire_str(&w, RQ_IMAGE_PATH, "a.jpg");
    wire_str(&w, RQ_PROMPT, longp);
    lisa_job_limits plim = {.max_prompt_bytes = 1000};
    check_request_refused(w.p, w.n, &plim, LISA_ERR_ARG, "prompt is 1999 bytes, over the limit", "long prompt");
    lisa_job_limits idlim = {.max_id_bytes = 3};
    check_request_refused(w.p, w.n, &idlim, LISA_ERR_ARG, "image path is 5 bytes", "long path");
    free(w.p);

    /* random bytes and known-bad wire data */
    for (uint64_t seed = 1; seed <= 200; seed++) {
        uint8_t junk[300];
        rng_seed(seed);
        size_t n = 1 + rng_next() % sizeof junk;
        for (size_t i = 0; i < n; i++) junk[i] = (uint8_t)rng_next();
        lisa_job_request t;
        lisa_status st = lisa_job_request_decode(junk, n, NULL, &t);
        CHECK(st == LISA_ERR_FORMAT || st == LISA_ERR_ARG, "random bytes %llu: %s",
              (unsigned long long)seed, lisa_status_str(st));
        lisa_job_request_free(&t);
        lisa_response rr;
        st = lisa_job_result_decode(junk, n, NULL, &rr, NULL);
        CHECK(st == LISA_ERR_FORMAT || st == LISA_ERR_ARG, "random bytes %llu as a result: %s",
              (unsigned long long)seed, lisa_status_str(st));
        lisa_response_free(&rr);
    }
    static const uint8_t cut_len[] = {0x22, 0x7f, 'a'};      /* image_path of 127 bytes, 1 there */
    check_request_refused(cut_len, sizeof cut_len, NULL, LISA_ERR_FORMAT, "malformed protobuf", "short field");
    static const uint8_t bad_wt[] = {0x0f, 0x01};            /* wire type 7 */
    check_request_refused(bad_wt, sizeof bad_wt, NULL, LISA_ERR_FORMAT, "malformed protobuf", "wire type 7");
    static const uint8_t long_varint[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    check_request_refused(long_varint, sizeof long_varint, NULL, LISA_ERR_FORMAT, "malformed protobuf",
                          "11-byte varint");
    /* a field numbered 0 written as an overlong varint (0x80 0x00), which
     * protobuf-c keeps as an unknown field; without it the request is valid */
    wire z = {0};
    wire_uint(&z, RQ_VERSION, 1);
    wire_str(&z, RQ_IMAGE_PATH, "a.jpg");
    wire_str(&z, RQ_PROMPT, "x");
    lisa_job_request zr;
    CHECK(lisa_job_request_decode(z.p, z.n, NULL, &zr) == LISA_OK, "request before field 0: %s",
          lisa_error_get());
    lisa_job_request_free(&zr);
    wire_byte(&z, 0x80);
    wire_byte(&z, 0x00);
    wire_byte(&z, 0x00);
    check_request_refused(z.p, z.n, NULL, LISA_ERR_FORMAT, "field number 0 in lisa.job.JobRequest",
                          "field 0, overlong");
    free(z.p);
}

/* ---- results ------------------------------------------------------------ */

/* A one-mask JobResult on a width x height image whose mask is mw x mh
 * with the given RLE counts (area < 0: absent). */
static wire result_wire(int width, int height, int mw, int mh, const char *counts, long long area) {
    wire m = {0}, w = {0};
    wire_uint(&m, MK_H, (uint64_t)mh);
    wire_uint(&m, MK_W, (uint64_t)mw);
    wire_str(&m, MK_RLE, counts);
    if (area >= 0) wire_uint(&m, MK_AREA, (uint64_t)area);
    wire_uint(&w, RS_VERSION, 1);
    wire_uint(&w, RS_STATUS, 0);
    wire_uint(&w, RS_WIDTH, (uint64_t)width);
    wire_uint(&w, RS_HEIGHT, (uint64_t)height);
    wire_bytes(&w, RS_MASKS, m.p, m.n);
    free(m.p);
    return w;
}

static void test_results(void) {
    lisa_response r;
    /* done with no mask (an answer without [SEG]), one, two, three */
    response_random(&r, 19, 11, 0, 1);
    check_result_round_trip(&r, "0 masks");
    lisa_response_free(&r);
    response_random(&r, 31, 17, 1, 2);
    check_result_round_trip(&r, "1 mask");
    lisa_response_free(&r);
    response_random(&r, 64, 48, 2, 3);
    check_result_round_trip(&r, "2 masks");
    lisa_response_free(&r);
    response_random(&r, 37, 23, 3, 4);  /* an empty mask, a full one, a random one */
    r.masks[2].mask[0] = 255;            /* non-zero is mask, as in the engine's */
    check_result_round_trip(&r, "3 masks, empty and full");
    lisa_response_free(&r);
    response_random(&r, 1, 1, 2, 5);
    check_result_round_trip(&r, "1x1 image");
    lisa_response_free(&r);
    for (uint64_t seed = 10; seed < 30; seed++) {
        response_random(&r, 1 + (int)(seed * 7 % 90), 1 + (int)(seed * 13 % 70), 1 + (int)(seed % 3), seed);
        check_result_round_trip(&r, "random size");
        lisa_response_free(&r);
    }
    /* a text-only answer: no text at all stays formatted as "" */
    memset(&r, 0, sizeof r);
    check_result_round_trip(&r, "empty done result");

    /* failed, and cancelled */
    memset(&r, 0, sizeof r);
    r.status = LISA_ERR_FORMAT;
    r.stop = LISA_STOP_ERROR;
    snprintf(r.error, sizeof r.error, "image photos/x.jpg: not a JPEG or PNG file \xe2\x9c\x97");
    check_result_round_trip(&r, "failed");
    r.status = LISA_ERR_CANCELLED;
    snprintf(r.error, sizeof r.error, "cancelled");
    check_result_round_trip(&r, "cancelled");

    /* the encoder's refusals */
    memset(&r, 0, sizeof r);
    r.n_masks = 1;
    lisa_seg_mask one = {0};
    r.masks = &one;
    uint8_t *buf = NULL;
    size_t len = 0;
    CHECK(lisa_job_result_encode(&r, NULL, &buf, &len) == LISA_ERR_ARG && error_says("no image size"),
          "encode masks without a size: %s", lisa_error_get());

    /* masks against the image: RLE covering more or fewer pixels, another
     * size, a wrong area, bad characters, an over-long count */
    uint8_t m12[12] = {0, 1, 1, 0, 0, 1, 0, 0, 1, 1, 1, 0}, m16[16] = {0}, m6[6] = {1};
    char *c12 = NULL, *c16 = NULL, *c6 = NULL;
    CHECK(lisa_mask_rle_encode(m12, 4, 3, &c12) == LISA_OK, "rle 4x3");
    CHECK(lisa_mask_rle_encode(m16, 4, 4, &c16) == LISA_OK, "rle 4x4");
    CHECK(lisa_mask_rle_encode(m6, 2, 3, &c6) == LISA_OK, "rle 2x3");
    wire w = result_wire(4, 3, 4, 3, c12, 6);
    lisa_response ok;
    CHECK(lisa_job_result_decode(w.p, w.n, NULL, &ok, NULL) == LISA_OK && ok.n_masks == 1 &&
              !memcmp(ok.masks[0].mask, m12, 12),
          "hand-made 4x3 result: %s", lisa_error_get());
    lisa_response_free(&ok);
    free(w.p);
    w = result_wire(4, 3, 4, 3, c16, -1);
    check_result_refused(w.p, w.n, NULL, LISA_ERR_FORMAT, "RLE inconsistent", "RLE of 16 pixels on 4x3");
    free(w.p);
    w = result_wire(4, 3, 4, 3, c6, -1);
    check_result_refused(w.p, w.n, NULL, LISA_ERR_FORMAT, "runs cover 6 of 12 pixels", "RLE of 6 pixels");
    free(w.p);
    w = result_wire(4, 3, 5, 3, c12, -1);
    check_result_refused(w.p, w.n, NULL, LISA_ERR_FORMAT, "mask 0 is 5x3, the image is 4x3", "mask size");
    free(w.p);
    w = result_wire(4, 3, 4, 3, c12, 7);
    check_result_refused(w.p, w.n, NULL, LISA_ERR_FORMAT, "area 7, but its RLE covers 6", "area");
    free(w.p);
    w = result_wire(4, 3, 4, 3, "1 2", -1);
    check_result_refused(w.p, w.n, NULL, LISA_ERR_FORMAT, "invalid character", "RLE alphabet");
    free(w.p);
    /* a field numbered 0 (overlong varint) one level down, in the mask */
    wire zm = {0};
    wire_uint(&zm, MK_H, 3);
    wire_uint(&zm, MK_W, 4);
    wire_str(&zm, MK_RLE, c12);
    wire_byte(&zm, 0x80);
    wire_byte(&zm, 0x00);
    wire_byte(&zm, 0x00);
    w = (wire){0};
    wire_uint(&w, RS_VERSION, 1);
    wire_uint(&w, RS_STATUS, 0);
    wire_uint(&w, RS_WIDTH, 4);
    wire_uint(&w, RS_HEIGHT, 3);
    wire_bytes(&w, RS_MASKS, zm.p, zm.n);
    check_result_refused(w.p, w.n, NULL, LISA_ERR_FORMAT, "field number 0 in lisa.job.Mask",
                         "mask with field 0");
    free(w.p);
    free(zm.p);
    w = result_wire(4, 3, 4, 3, "oooooooooooooo1", -1);
    check_result_refused(w.p, w.n, NULL, LISA_ERR_FORMAT, "longer than", "RLE count too long");
    free(w.p);
    w = result_wire(0, 0, 4, 3, c12, -1);
    check_result_refused(w.p, w.n, NULL, LISA_ERR_FORMAT, "no image size", "masks, no size");
    free(w.p);
    w = result_wire(100000, 100000, 100000, 100000, "0", -1);
    check_result_refused(w.p, w.n, NULL, LISA_ERR_ARG, "over the limit", "huge empty mask");
    free(w.p);
    free(c12);
    free(c16);
    free(c6);

    /* too many masks */
    response_random(&r, 8, 8, 3, 9);
    CHECK(lisa_job_result_encode(&r, NULL, &buf, &len) == LISA_OK, "encode 3 masks");
    lisa_job_limits two = {.max_masks = 2};
    check_result_refused(buf, len, &two, LISA_ERR_ARG, "too many masks", "3 masks, limit 2");
    lisa_job_limits tiny = {.max_message_bytes = 16};
    check_result_refused(buf, len, &tiny, LISA_ERR_ARG, "over the limit of 16", "oversized result");
    check_result_refused(buf, len / 2, NULL, LISA_ERR_FORMAT, "malformed protobuf", "truncated result");
    free(buf);
    lisa_response_free(&r);

    /* status and stop out of range, no status, no version */
    w = (wire){0};
    wire_uint(&w, RS_VERSION, 1);
    wire_uint(&w, RS_STATUS, 99);
    check_result_refused(w.p, w.n, NULL, LISA_ERR_FORMAT, "status 99", "status 99");
    free(w.p);
    w = (wire){0};
    wire_uint(&w, RS_VERSION, 1);
    check_result_refused(w.p, w.n, NULL, LISA_ERR_FORMAT, "no status", "no status");
    free(w.p);
    w = (wire){0};
    wire_uint(&w, RS_STATUS, 0);
    check_result_refused(w.p, w.n, NULL, LISA_ERR_FORMAT, "no protocol version", "result version");
    free(w.p);
    w = (wire){0};
    wire_uint(&w, RS_VERSION, 1);
    wire_uint(&w, RS_STATUS, 0);
    wire_str(&w, 4, "ok \xc3");
    check_result_refused(w.p, w.n, NULL, LISA_ERR_FORMAT, "result text is not UTF-8", "text UTF-8");
    free(w.p);

    /* a NUL inside a mask's RLE (one level down) */
    w = result_wire(4, 3, 4, 3, "x", -1);
    for (size_t i = 0; i < w.n; i++)
        if (w.p[i] == 'x') w.p[i] = 0;
    check_result_refused(w.p, w.n, NULL, LISA_ERR_FORMAT, "rle_counts contains a NUL byte", "NUL in RLE");
    free(w.p);

    /* 200000 empty masks: 400 KB of wire, ~20 MB of structs: over budget */
    w = (wire){0};
    wire_uint(&w, RS_VERSION, 1);
    wire_uint(&w, RS_STATUS, 0);
    for (int i = 0; i < 200000; i++) wire_bytes(&w, RS_MASKS, "", 0);
    lisa_job_limits many = {.max_masks = 1000000};
    check_result_refused(w.p, w.n, &many, LISA_ERR_FORMAT, "needs more than", "unpack budget");
    free(w.p);
}

/* ---- image paths --------------------------------------------------------- */

static void touch(const char *path) {
    FILE *f = fopen(path, "wb");
    if (f) {
        fputs("x", f);
        fclose(f);
    }
}

static void check_path_ok(const char *const *roots, int n, const char *path, const char *want,
                          const char *what) {
    char out[PATH_MAX], real[PATH_MAX];
    lisa_status st = lisa_job_path_resolve(roots, n, path, out, sizeof out);
    CHECK(st == LISA_OK, "%s: %s refused: %s", what, path, lisa_error_get());
    CHECK(st != LISA_OK || (realpath(want, real) && !strcmp(out, real)), "%s: %s -> %s, want %s",
          what, path, out, want);
}

static void check_path_refused(const char *const *roots, int n, const char *path, lisa_status want_st,
                               const char *want, const char *what) {
    char out[PATH_MAX];
    lisa_status st = lisa_job_path_resolve(roots, n, path, out, sizeof out);
    CHECK(st == want_st, "%s: %s: status %s, want %s (%s)", what, path, lisa_status_str(st),
          lisa_status_str(want_st), lisa_error_get());
    CHECK(error_says(want), "%s: error '%s' does not say '%s'", what, lisa_error_get(), want);
    CHECK(out[0] == 0, "%s: no path on failure", what);
}

static void test_paths(void) {
    char tmpl[] = "/tmp/lisa-test-job-codec-XXXXXX";
    const char *t = mkdtemp(tmpl);
    CHECK(t != NULL, "mkdtemp");
    if (!t) return;
    char img[512], sub[512], out[512], evil[512], other[512], p[1024], q[1024];
    snprintf(img, sizeof img, "%s/img", t);
    snprintf(sub, sizeof sub, "%s/img/sub", t);
    snprintf(out, sizeof out, "%s/out", t);
    snprintf(evil, sizeof evil, "%s/imgevil", t);
    snprintf(other, sizeof other, "%s/other", t);
    mkdir(img, 0755);
    mkdir(sub, 0755);
    mkdir(out, 0755);
    mkdir(evil, 0755);
    mkdir(other, 0755);
    snprintf(p, sizeof p, "%s/a.jpg", img), touch(p);
    snprintf(p, sizeof p, "%s/b.jpg", sub), touch(p);
    snprintf(p, sizeof p, "%s/secret.jpg", out), touch(p);
    snprintf(p, sizeof p, "%s/x.jpg", evil), touch(p);
    snprintf(p, sizeof p, "%s/c.jpg", other), touch(p);
    snprintf(p, sizeof p, "%s/link.jpg", img);
    CHECK(symlink("../out/secret.jpg", p) == 0, "symlink out");
    snprintf(p, sizeof p, "%s/dirlink", img);
    CHECK(symlink(out, p) == 0, "symlink dir out");
    snprintf(p, sizeof p, "%s/inside.jpg", img);
    CHECK(symlink("sub/b.jpg", p) == 0, "symlink inside");
    snprintf(p, sizeof p, "%s/imglink", t);
    CHECK(symlink(img, p) == 0, "symlinked root");

    const char *roots[] = {img, other};
    char want[1024];
    snprintf(want, sizeof want, "%s/a.jpg", img);
    check_path_ok(roots, 2, "a.jpg", want, "relative");
    check_path_ok(roots, 2, want, want, "absolute in the root");
    check_path_ok(roots, 2, "./a.jpg", want, "./");
    snprintf(p, sizeof p, "%s//a.jpg", img);
    check_path_ok(roots, 2, p, want, "double slash");
    snprintf(want, sizeof want, "%s/b.jpg", sub);
    check_path_ok(roots, 2, "sub/b.jpg", want, "subfolder");
    check_path_ok(roots, 2, "inside.jpg", want, "symlink staying inside");
    snprintf(want, sizeof want, "%s/c.jpg", other);
    check_path_ok(roots, 2, want, want, "absolute in the second root");
    snprintf(p, sizeof p, "%s/", img);
    const char *slash_root[] = {p};
    snprintf(want, sizeof want, "%s/a.jpg", img);
    check_path_ok(slash_root, 1, "a.jpg", want, "root with a trailing '/'");
    snprintf(q, sizeof q, "%s/imglink", t);
    const char *link_root[] = {q};
    snprintf(p, sizeof p, "%s/imglink/a.jpg", t);
    check_path_ok(link_root, 1, p, want, "root that is a symlink");
    check_path_ok(link_root, 1, want, want, "resolved path under a symlinked root");

    check_path_refused(roots, 2, "../out/secret.jpg", LISA_ERR_ARG, "outside the image roots", "../");
    check_path_refused(roots, 2, "sub/../a.jpg", LISA_ERR_ARG, "'..'", "inner ..");
    check_path_refused(roots, 2, "..", LISA_ERR_ARG, "'..'", "..");
    snprintf(p, sizeof p, "%s/../out/secret.jpg", img);
    check_path_refused(roots, 2, p, LISA_ERR_ARG, "outside the image roots", "absolute with ..");
    snprintf(p, sizeof p, "%s/secret.jpg", out);
    check_path_refused(roots, 2, p, LISA_ERR_ARG, "outside the image roots", "absolute elsewhere");
    check_path_refused(roots, 2, "/etc/passwd", LISA_ERR_ARG, "outside the image roots", "/etc/passwd");
    snprintf(p, sizeof p, "%s/x.jpg", evil);
    check_path_refused(roots, 2, p, LISA_ERR_ARG, "outside the image roots", "prefix not at a '/'");
    check_path_refused(roots, 2, "link.jpg", LISA_ERR_ARG, "symlink", "symlink out");
    check_path_refused(roots, 2, "dirlink/secret.jpg", LISA_ERR_ARG, "outside the image roots",
                       "symlinked folder out");
    check_path_refused(roots, 2, "missing.jpg", LISA_ERR_IO, "does not exist", "missing");
    snprintf(p, sizeof p, "%s/nope/missing.jpg", out);
    check_path_refused(roots, 2, p, LISA_ERR_ARG, "outside the image roots",
                       "missing outside: refused before looking");
    check_path_refused(roots, 0, "a.jpg", LISA_ERR_ARG, "inline images only", "no roots");
    check_path_refused(roots, 2, "", LISA_ERR_ARG, "empty", "empty path");
    char small[4];
    CHECK(lisa_job_path_resolve(roots, 2, "a.jpg", small, sizeof small) == LISA_ERR_ARG &&
              error_says("too long"),
          "small output buffer: %s", lisa_error_get());

    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", t);
    CHECK(system(cmd) == 0, "cleanup");
}

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    test_requests();
    test_results();
    test_paths();
    return test_finish("test-job-codec");
}
