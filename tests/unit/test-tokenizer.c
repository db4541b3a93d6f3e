/* test-tokenizer.c: checks coordinator/request/tokenizer.c against reference ids.
 *
 * Reads <fixtures>/tokenizer/cases.json (made by
 * tests/reference/gen_tokenizer.py from the sentencepiece library and
 * transformers 4.31's slow LlamaTokenizer) and, for every case, checks:
 * pure-SentencePiece encode == sp_ids; decode(sp_ids) == sp_decoded (and ==
 * the text, except where the sentencepiece library itself does not round-trip,
 * which is reported); encode with added tokens == hf_ids. Raw-byte cases
 * (NUL, malformed UTF-8) are compared the same way from hex. Also checks the
 * vocabulary queries and that corrupt, truncated, empty and missing model
 * files and malformed added_tokens.json fail cleanly with a message. Models
 * with one broken field (bad UTF-8, empty or repeated pieces, NaN scores,
 * unknown types, bad byte pieces, unk/bos/eos wrong, unsupported trainer or
 * normalizer options) are made from the fixture by editing its protobuf with
 * protobuf-c; each must be refused with a message naming the piece or field.
 *
 * It does not test BOS policy of the prompt builder or anything model-side. */
#include <cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sentencepiece_model.pb-c.h"
#include "testutil.h"
#include "tokenizer.h"

static char g_dir[2048]; /* <fixtures>/tokenizer */

/* Path of a fixture file in the tokenizer fixture folder (static buffer). */
static const char *fixture(const char *name) { return test_path(g_dir, name); }

/* Reads a JSON int array into a malloc'd buffer; *n its length. */
static int32_t *json_ids(const cJSON *arr, size_t *n) {
    int m = cJSON_GetArraySize(arr);
    int32_t *ids = malloc(((size_t)m + 1) * sizeof *ids);
    if (!ids) return NULL;
    for (int i = 0; i < m; i++) ids[i] = (int32_t)cJSON_GetArrayItem(arr, i)->valueint;
    *n = (size_t)m;
    return ids;
}

static int ids_equal(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    return na == nb && (na == 0 || !memcmp(a, b, na * sizeof *a));
}

/* Formats up to the first 24 ids of a list for a failure message. */
static const char *ids_str(const int32_t *ids, size_t n) {
    static char buf[2][512];
    static int which;
    char *b = buf[which ^= 1];
    size_t o = 0;
    b[0] = 0;
    for (size_t i = 0; i < n && i < 24 && o < sizeof buf[0] - 16; i++)
        o += (size_t)snprintf(b + o, sizeof buf[0] - o, "%s%d", i ? " " : "", (int)ids[i]);
    if (n > 24) snprintf(b + o, sizeof buf[0] - o, " ... (%zu ids)", n);
    return b;
}

/* Decodes a hex string into a malloc'd buffer; *n its length. */
static char *hex_bytes(const char *hex, size_t *n) {
    size_t m = strlen(hex) / 2;
    char *b = malloc(m + 1);
    if (!b) return NULL;
    for (size_t i = 0; i < m; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        b[i] = (char)v;
    }
    b[m] = 0;
    *n = m;
    return b;
}

/* Encodes text with `tok` and compares to the JSON id array `want`. */
static void check_encode(const lisa_tokenizer *tok, const char *what, const char *text,
                         size_t len, const cJSON *want, int idx) {
    size_t n_want = 0, n_got = 0;
    int32_t *w = json_ids(want, &n_want), *got = NULL;
    lisa_status st = lisa_tokenizer_encode(tok, text, len, 0, &got, &n_got);
    CHECK(st == LISA_OK, "case %d %s: encode failed: %s", idx, what, lisa_error_get());
    if (st == LISA_OK)
        CHECK(ids_equal(got, n_got, w, n_want), "case %d %s %.60s: got [%s] want [%s]", idx,
              what, text, ids_str(got, n_got), ids_str(w, n_want));
    free(w);
    free(got);
}

/* Decodes the JSON id array `ids` and compares to want[0..want_len). A NUL
 * inside the decoded text cannot be seen through the API's C string, so only
 * the part before the first NUL is compared then. */
static char *check_decode(const lisa_tokenizer *tok, const cJSON *ids, const char *want,
                          size_t want_len, int idx) {
    size_t n = 0;
    int32_t *v = json_ids(ids, &n);
    char *got = NULL;
    lisa_status st = lisa_tokenizer_decode(tok, v, n, &got);
    free(v);
    CHECK(st == LISA_OK, "case %d: decode failed: %s", idx, lisa_error_get());
    if (st != LISA_OK) return NULL;
    size_t cmp = strlen(want) < want_len ? strlen(want) : want_len;
    CHECK(strlen(got) == cmp && !memcmp(got, want, cmp), "case %d: decoded '%.60s' want '%.60s'",
          idx, got, want);
    return got;
}

static void test_cases(const lisa_tokenizer *sp, const lisa_tokenizer *hf) {
    size_t len;
    char *json = test_read_file(fixture("cases.json"), &len);
    CHECK(json != NULL, "cannot read %s", fixture("cases.json"));
    if (!json) return;
    cJSON *root = cJSON_ParseWithLength(json, len);
    free(json);
    CHECK(root != NULL, "cases.json does not parse");
    if (!root) return;

    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), *a;
    cJSON_ArrayForEach(a, added)
        CHECK(lisa_tokenizer_piece_id(hf, a->string) == a->valueint, "added token %s id %d",
              a->string, lisa_tokenizer_piece_id(hf, a->string));

    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(root, "cases"), *c;
    int idx = 0, n_noroundtrip = 0;
    cJSON_ArrayForEach(c, cases) {
        const char *text = cJSON_GetObjectItemCaseSensitive(c, "text")->valuestring;
        const char *dec = cJSON_GetObjectItemCaseSensitive(c, "sp_decoded")->valuestring;
        check_encode(sp, "sp", text, strlen(text), cJSON_GetObjectItemCaseSensitive(c, "sp_ids"),
                     idx);
        check_encode(hf, "hf", text, strlen(text), cJSON_GetObjectItemCaseSensitive(c, "hf_ids"),
                     idx);
        char *got = check_decode(sp, cJSON_GetObjectItemCaseSensitive(c, "sp_ids"), dec,
                                 strlen(dec), idx);
        if (got && strcmp(dec, text)) {
            /* sentencepiece itself does not give the text back (e.g. a
             * literal U+2581 decodes to a space): the check above holds us
             * to the library; just report it. */
            n_noroundtrip++;
            fprintf(stderr, "note: case %d does not round-trip in sentencepiece either: '%s'\n",
                    idx, text);
        } else if (got) {
            CHECK(!strcmp(got, text), "case %d: decode(encode(s)) != s", idx);
        }
        free(got);
        idx++;
    }
    fprintf(stderr, "%d text cases (%d do not round-trip, as in sentencepiece)\n", idx,
            n_noroundtrip);
    CHECK(idx >= 300, "only %d cases in the fixture", idx);

    const cJSON *bcases = cJSON_GetObjectItemCaseSensitive(root, "byte_cases");
    int bidx = 0;
    cJSON_ArrayForEach(c, bcases) {
        size_t n = 0, dn = 0;
        char *in = hex_bytes(cJSON_GetObjectItemCaseSensitive(c, "hex")->valuestring, &n);
        char *dec =
            hex_bytes(cJSON_GetObjectItemCaseSensitive(c, "sp_decoded_hex")->valuestring, &dn);
        check_encode(sp, "sp-bytes", in, n, cJSON_GetObjectItemCaseSensitive(c, "sp_ids"),
                     1000 + bidx);
        const cJSON *hf_ids = cJSON_GetObjectItemCaseSensitive(c, "hf_ids");
        if (hf_ids) check_encode(hf, "hf-bytes", in, n, hf_ids, 1000 + bidx);
        free(check_decode(sp, cJSON_GetObjectItemCaseSensitive(c, "sp_ids"), dec, dn,
                          1000 + bidx));
        free(in);
        free(dec);
        bidx++;
    }
    fprintf(stderr, "%d raw-byte cases\n", bidx);
    cJSON_Delete(root);
}

static void test_vocab(const lisa_tokenizer *sp, const lisa_tokenizer *hf) {
    CHECK(lisa_tokenizer_n_vocab(sp) == 32000, "sp n_vocab %d", lisa_tokenizer_n_vocab(sp));
    CHECK(lisa_tokenizer_n_vocab(hf) == 32003, "hf n_vocab %d", lisa_tokenizer_n_vocab(hf));
    CHECK(lisa_tokenizer_bos_id(hf) == 1 && lisa_tokenizer_eos_id(hf) == 2, "bos/eos");
    CHECK(lisa_tokenizer_piece_id(sp, "[SEG]") == -1, "no [SEG] without added tokens");
    CHECK(lisa_tokenizer_piece_id(sp, "<s>") == 1, "<s>");
    CHECK(lisa_tokenizer_piece_id(sp, "\xe2\x96\x81the") == 278, "piece ▁the");
    CHECK(lisa_tokenizer_piece_id(hf, "<0x0A>") == 13, "byte piece");
    CHECK(!strcmp(lisa_tokenizer_piece(hf, 32002), "<im_end>"), "piece 32002");
    CHECK(!strcmp(lisa_tokenizer_piece(hf, 29871), "\xe2\x96\x81"), "piece 29871");
    CHECK(lisa_tokenizer_piece(hf, 32003) == NULL && lisa_tokenizer_piece(sp, 32000) == NULL &&
              lisa_tokenizer_piece(sp, -1) == NULL,
          "out-of-range piece");

    int32_t *ids = NULL;
    size_t n = 0;
    CHECK(lisa_tokenizer_encode(hf, "Hi", 2, 1, &ids, &n) == LISA_OK && n == 2 && ids[0] == 1,
          "add_bos");
    free(ids);
    CHECK(lisa_tokenizer_encode(sp, "", 0, 0, &ids, &n) == LISA_OK && n == 0 && ids != NULL,
          "empty text gives an empty (non-NULL) list");
    free(ids);

    /* Decoding: added tokens as literal text, control pieces invisible,
     * unk surface, bad ids rejected. */
    const int32_t seq[] = {1, 18585, 29892, 372, 338, 32000, 29889, 2};
    char *text = NULL;
    CHECK(lisa_tokenizer_decode(hf, seq, 8, &text) == LISA_OK && !strcmp(text, "Sure, it is[SEG]."),
          "decode with [SEG]: '%s'", text ? text : "(null)");
    free(text);
    text = NULL;
    const int32_t unk[] = {0, 29871, 263};
    CHECK(lisa_tokenizer_decode(sp, unk, 3, &text) == LISA_OK &&
              !strcmp(text, " \xe2\x81\x87   a"),
          "decode unk: '%s'", text ? text : "(null)");
    free(text);
    text = NULL;
    const int32_t bad[] = {263, 32000};
    CHECK(lisa_tokenizer_decode(sp, bad, 2, &text) == LISA_ERR_ARG && text == NULL &&
              lisa_error_get()[0],
          "out-of-range id rejected");
    const int32_t neg[] = {-200};
    CHECK(lisa_tokenizer_decode(hf, neg, 1, &text) == LISA_ERR_ARG, "negative id rejected");
}

/* A long input must not take quadratic time: 1 MB of text in well under a
 * second per 100 KB on any machine. Also compares with the short encodes. */
static void test_long(const lisa_tokenizer *sp) {
    const char *unit = "The quick brown fox jumps over the lazy dog. \xe6\x97\xa5\xe6\x9c\xac ";
    size_t ul = strlen(unit), reps = 1 << 14, n_unit = 0, n_all = 0;
    char *big = malloc(ul * reps + 1);
    if (!big) return;
    for (size_t i = 0; i < reps; i++) memcpy(big + i * ul, unit, ul);
    big[ul * reps] = 0;
    int32_t *ids = NULL, *one = NULL;
    clock_t t0 = clock();
    lisa_status st = lisa_tokenizer_encode(sp, big, ul * reps, 0, &ids, &n_all);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    CHECK(st == LISA_OK, "long encode: %s", lisa_error_get());
    CHECK(lisa_tokenizer_encode(sp, unit, ul, 0, &one, &n_unit) == LISA_OK, "unit encode");
    /* Repeats of "... ▁" tokenize as the unit's ids with a leading-space
     * piece merged; just bound the count and the time. */
    CHECK(n_all > reps * (n_unit - 2) && n_all < reps * (n_unit + 2), "long encode: %zu ids",
          n_all);
    CHECK(secs < 20.0, "long encode took %.2f s", secs);
    fprintf(stderr, "encoded %zu bytes into %zu ids in %.3f s\n", ul * reps, n_all, secs);
    char *back = NULL;
    CHECK(lisa_tokenizer_decode(sp, ids, n_all, &back) == LISA_OK && back && !strcmp(back, big),
          "long round trip");
    free(back);
    free(ids);
    free(one);
    free(big);
}

/* Writes n bytes to dir/name; returns the path (static buffer). */
static const char *write_tmp(const char *dir, const char *name, const void *data, size_t n) {
    const char *p = test_path(dir, name);
    FILE *f = fopen(p, "wb");
    if (f) {
        if (n) fwrite(data, 1, n, f);
        fclose(f);
    }
    return p;
}

/* Loading must fail with a status and message, without crashing. */
static void expect_load_fail(const char *model, const char *added, const char *what) {
    lisa_tokenizer *t = (lisa_tokenizer *)1;
    lisa_error_set(LISA_OK, "%s", "");
    lisa_status st = lisa_tokenizer_load(&t, model, added);
    CHECK(st != LISA_OK && t == NULL, "%s: load did not fail (status %d)", what, (int)st);
    CHECK(lisa_error_get()[0] != 0, "%s: no error message", what);
    if (st == LISA_OK) lisa_tokenizer_free(t);
}

static void test_bad_inputs(void) {
    char dir[] = "/tmp/lisa-tok-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    size_t len;
    char *model = test_read_file(fixture("tokenizer.model"), &len);
    CHECK(model != NULL && len > 1000, "read tokenizer.model");
    if (!model) return;
    char path[8192];

    expect_load_fail(test_path(dir, "does-not-exist.model"), NULL, "missing file");
    lisa_tokenizer *t = NULL;
    CHECK(lisa_tokenizer_load(&t, test_path(dir, "nope"), NULL) == LISA_ERR_IO, "missing is IO");

    snprintf(path, sizeof path, "%s", write_tmp(dir, "empty.model", "", 0));
    expect_load_fail(path, NULL, "empty file");

    /* Seeded pseudo-random bytes, several sizes. */
    uint32_t s = 12345;
    char *junk = malloc(len);
    for (size_t i = 0; i < len; i++) {
        s = s * 1103515245u + 12345u;
        junk[i] = (char)(s >> 16);
    }
    const size_t junk_sizes[] = {1, 7, 100, 4096, len};
    for (size_t k = 0; k < sizeof junk_sizes / sizeof *junk_sizes; k++) {
        snprintf(path, sizeof path, "%s", write_tmp(dir, "junk.model", junk, junk_sizes[k]));
        expect_load_fail(path, NULL, "random bytes");
    }
    free(junk);

    /* Truncated copies of the real model, including cut points inside and
     * at the end of the piece list. */
    const size_t cuts[] = {1, 2, 10, 1000, len / 3, len / 2, len - 200, len - 1};
    for (size_t k = 0; k < sizeof cuts / sizeof *cuts; k++) {
        snprintf(path, sizeof path, "%s", write_tmp(dir, "trunc.model", model, cuts[k]));
        lisa_error_set(LISA_OK, "%s", "");
        lisa_tokenizer *tt = NULL;
        lisa_status st = lisa_tokenizer_load(&tt, path, NULL);
        CHECK(st == LISA_ERR_FORMAT, "truncated at %zu: status %d", cuts[k], (int)st);
        CHECK(strstr(lisa_error_get(), "trunc.model") != NULL, "message names the file: '%s'",
              lisa_error_get());
        lisa_tokenizer_free(tt);
    }
    /* Every byte-flip near the start must not crash (status may be OK). */
    char *flip = malloc(len);
    memcpy(flip, model, len);
    for (size_t i = 0; i < 64; i++) {
        flip[i * 7] ^= 0x5A;
        snprintf(path, sizeof path, "%s", write_tmp(dir, "flip.model", flip, len));
        lisa_tokenizer *tt = NULL;
        if (lisa_tokenizer_load(&tt, path, NULL) == LISA_OK) {
            int32_t *ids = NULL;
            size_t n;
            if (lisa_tokenizer_encode(tt, "hello world", 11, 1, &ids, &n) == LISA_OK) free(ids);
            lisa_tokenizer_free(tt);
        }
    }
    free(flip);
    unlink(test_path(dir, "flip.model"));

    /* Malformed added_tokens.json. */
    static const char *bad_added[] = {
        "", "{", "[1,2]", "{\"[SEG]\": \"32000\"}", "{\"[SEG]\": 31999}", "{\"[SEG]\": 32000.5}",
        "{\"[SEG]\": 32000, \"x\": 32000}", "{\"[SEG]\": 32000, \"[SEG]\": 32001}", "{\"\": 32000}",
        "{\"[SEG]\": -1}", "{\"[SEG]\": 1e30}", "null"};
    snprintf(path, sizeof path, "%s", fixture("tokenizer.model"));
    for (size_t k = 0; k < sizeof bad_added / sizeof *bad_added; k++) {
        char added[8192];
        snprintf(added, sizeof added, "%s",
                 write_tmp(dir, "added_tokens.json", bad_added[k], strlen(bad_added[k])));
        expect_load_fail(path, added, bad_added[k]);
        CHECK(strstr(lisa_error_get(), "added_tokens.json") != NULL, "message names the file");
    }
    expect_load_fail(path, test_path(dir, "missing.json"), "missing added_tokens.json");

    unlink(test_path(dir, "empty.model"));
    unlink(test_path(dir, "junk.model"));
    unlink(test_path(dir, "trunc.model"));
    unlink(test_path(dir, "added_tokens.json"));
    rmdir(dir);
    free(model);
}

/* ------------------------------------------------------------------ */
/* models with one field broken, made from the fixture with protobuf-c  */

typedef Sentencepiece__ModelProto model_proto;

/* Replaces the text of piece i (protobuf-c frees it with the model). */
static void set_piece(model_proto *mp, int i, const char *text) {
    free(mp->pieces[i]->piece);
    mp->pieces[i]->piece = strdup(text);
}

static void set_type(model_proto *mp, int i, int type) {
    mp->pieces[i]->type = (Sentencepiece__ModelProto__SentencePiece__Type)type;
    mp->pieces[i]->has_type = 1;
}

static void set_score(model_proto *mp, int i, float score) {
    mp->pieces[i]->score = score;
    mp->pieces[i]->has_score = 1;
}

static void e_utf8(model_proto *mp) { set_piece(mp, 300, "ab\xff"); }
static void e_overlong(model_proto *mp) { set_piece(mp, 301, "\xc0\xaf"); }
static void e_surrogate(model_proto *mp) { set_piece(mp, 302, "\xed\xa0\x80"); }
static void e_empty(model_proto *mp) { set_piece(mp, 310, ""); }
static void e_dup(model_proto *mp) { set_piece(mp, 401, mp->pieces[400]->piece); }
static void e_dup_reserved(model_proto *mp) { set_piece(mp, 500, "<s>"); }
static void e_nan(model_proto *mp) { set_score(mp, 600, NAN); }
static void e_inf(model_proto *mp) { set_score(mp, 601, -INFINITY); }
static void e_type_hi(model_proto *mp) { set_type(mp, 700, 7); }
static void e_type_zero(model_proto *mp) { set_type(mp, 701, 0); }
static void e_byte_form(model_proto *mp) { set_piece(mp, 3, "<0x0>"); }
static void e_byte_lower(model_proto *mp) { set_piece(mp, 13, "<0x0a>"); }
static void e_byte_type(model_proto *mp) { set_type(mp, 800, 6); }
static void e_byte_missing(model_proto *mp) { set_type(mp, 3, 1); }
static void e_no_fallback(model_proto *mp) {
    mp->trainer_spec->byte_fallback = 0;
    mp->trainer_spec->has_byte_fallback = 1;
}
static void e_no_unk(model_proto *mp) { set_type(mp, 0, 3); }
static void e_two_unk(model_proto *mp) { set_type(mp, 1000, 2); }
static void e_unk_id(model_proto *mp) {
    mp->trainer_spec->unk_id = 5;
    mp->trainer_spec->has_unk_id = 1;
}
static void e_no_bos(model_proto *mp) {
    mp->trainer_spec->bos_id = -1;
    mp->trainer_spec->has_bos_id = 1;
}
static void e_eos_range(model_proto *mp) {
    mp->trainer_spec->eos_id = 32000;
    mp->trainer_spec->has_eos_id = 1;
}
static void e_bos_normal(model_proto *mp) {
    mp->trainer_spec->bos_id = 278;
    mp->trainer_spec->has_bos_id = 1;
}
static void e_bos_eos(model_proto *mp) {
    mp->trainer_spec->eos_id = mp->trainer_spec->bos_id;
    mp->trainer_spec->has_eos_id = 1;
}
static void e_unk_surface(model_proto *mp) {
    free(mp->trainer_spec->unk_surface);
    mp->trainer_spec->unk_surface = strdup("\xe2\x81");
}
static void e_unigram(model_proto *mp) {
    mp->trainer_spec->model_type = SENTENCEPIECE__TRAINER_SPEC__MODEL_TYPE__UNIGRAM;
    mp->trainer_spec->has_model_type = 1;
}
static void e_suffix(model_proto *mp) {
    mp->trainer_spec->treat_whitespace_as_suffix = 1;
    mp->trainer_spec->has_treat_whitespace_as_suffix = 1;
}
static void e_charsmap(model_proto *mp) {
    static uint8_t rules[4] = {1, 2, 3, 4};
    /* protobuf-c frees the bytes with the model: give it its own copy */
    uint8_t *b = malloc(sizeof rules);
    memcpy(b, rules, sizeof rules);
    free(mp->normalizer_spec->precompiled_charsmap.data);
    mp->normalizer_spec->precompiled_charsmap.data = b;
    mp->normalizer_spec->precompiled_charsmap.len = sizeof rules;
    mp->normalizer_spec->has_precompiled_charsmap = 1;
}
static void e_no_trainer(model_proto *mp) {
    sentencepiece__trainer_spec__free_unpacked(mp->trainer_spec, NULL);
    mp->trainer_spec = NULL;
}
static void e_no_pieces(model_proto *mp) {
    for (size_t i = 0; i < mp->n_pieces; i++)
        protobuf_c_message_free_unpacked(&mp->pieces[i]->base, NULL);
    mp->n_pieces = 0;
}

/* One edit and two texts its error message must hold (what and where). */
typedef struct {
    const char *name;
    void (*edit)(model_proto *);
    const char *want1, *want2;
} model_edit;

static const model_edit k_edits[] = {
    {"invalid UTF-8", e_utf8, "piece 300 ", "not valid UTF-8"},
    {"overlong UTF-8", e_overlong, "piece 301 ", "not valid UTF-8"},
    {"UTF-8 surrogate", e_surrogate, "piece 302 ", "not valid UTF-8"},
    {"empty piece", e_empty, "piece 310 ", "is empty"},
    {"repeated piece", e_dup, "piece 401 ", "duplicates piece 400"},
    {"normal piece repeats a control piece", e_dup_reserved, "piece 500 ", "duplicates piece 1"},
    {"NaN score", e_nan, "piece 600 ", "non-finite score"},
    {"-inf score", e_inf, "piece 601 ", "non-finite score"},
    {"type 7", e_type_hi, "piece 700 ", "unknown type 7"},
    {"type 0", e_type_zero, "piece 701 ", "unknown type 0"},
    {"byte piece <0x0>", e_byte_form, "piece 3 ", "not of the form <0xNN>"},
    {"byte piece lower case", e_byte_lower, "piece 13 ", "not of the form <0xNN>"},
    {"normal piece typed BYTE", e_byte_type, "piece 800 ", "not of the form <0xNN>"},
    {"byte piece missing", e_byte_missing, "<0x00>", "missing"},
    {"byte piece without byte_fallback", e_no_fallback, "piece 3 ", "byte_fallback is false"},
    {"no unk piece", e_no_unk, "UNKNOWN", "unk"},
    {"two unk pieces", e_two_unk, "piece 1000 ", "second unk"},
    {"unk_id not the unk piece", e_unk_id, "trainer_spec.unk_id 5", "piece 0"},
    {"no bos", e_no_bos, "trainer_spec.bos_id -1", "names no piece"},
    {"eos out of range", e_eos_range, "trainer_spec.eos_id 32000", "names no piece"},
    {"bos a normal piece", e_bos_normal, "trainer_spec.bos_id 278", "not a CONTROL piece"},
    {"bos == eos", e_bos_eos, "bos_id and eos_id", "both 1"},
    {"unk_surface invalid UTF-8", e_unk_surface, "unk_surface", "not valid UTF-8"},
    {"unigram model", e_unigram, "model_type 1", "not BPE"},
    {"whitespace as suffix", e_suffix, "treat_whitespace_as_suffix", "not supported"},
    {"precompiled charsmap", e_charsmap, "precompiled_charsmap", "not supported"},
    {"no trainer_spec", e_no_trainer, "trainer_spec", "lacks"},
    {"no pieces", e_no_pieces, "no pieces", "SentencePiece"},
};

/* Unpacks the fixture, applies `edit` (NULL: none), packs it to dir/name. */
static const char *write_edited(const char *dir, const char *name, const uint8_t *model,
                                size_t len, void (*edit)(model_proto *)) {
    model_proto *mp = sentencepiece__model_proto__unpack(NULL, len, model);
    CHECK(mp != NULL, "fixture tokenizer.model does not unpack");
    if (!mp) return NULL;
    if (edit) edit(mp);
    size_t n = sentencepiece__model_proto__get_packed_size(mp);
    uint8_t *buf = malloc(n ? n : 1);
    sentencepiece__model_proto__pack(mp, buf);
    sentencepiece__model_proto__free_unpacked(mp, NULL);
    const char *p = write_tmp(dir, name, buf, n);
    free(buf);
    return p;
}

static void test_bad_fields(void) {
    char dir[] = "/tmp/lisa-tokf-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    size_t len;
    char *model = test_read_file(fixture("tokenizer.model"), &len);
    CHECK(model != NULL, "read tokenizer.model");
    if (!model) return;
    char path[8192];
    /* The unedited round trip must load and encode as the fixture does: the
     * refusals below are then down to the one edit each. */
    const char *p = write_edited(dir, "edited.model", (const uint8_t *)model, len, NULL);
    if (!p) {
        free(model);
        return;
    }
    snprintf(path, sizeof path, "%s", p);
    lisa_tokenizer *t = NULL;
    CHECK(lisa_tokenizer_load(&t, path, NULL) == LISA_OK, "repacked fixture: %s",
          lisa_error_get());
    if (t) CHECK(lisa_tokenizer_n_vocab(t) == 32000, "repacked fixture vocabulary");
    lisa_tokenizer_free(t);
    for (size_t k = 0; k < sizeof k_edits / sizeof *k_edits; k++) {
        const model_edit *e = &k_edits[k];
        write_edited(dir, "edited.model", (const uint8_t *)model, len, e->edit);
        t = NULL;
        lisa_error_set(LISA_OK, "%s", "");
        lisa_status st = lisa_tokenizer_load(&t, path, NULL);
        const char *msg = lisa_error_get();
        CHECK(st != LISA_OK && t == NULL, "%s: load did not fail", e->name);
        CHECK(strstr(msg, "edited.model") && strstr(msg, e->want1) && strstr(msg, e->want2),
              "%s: message '%s' lacks '%s' / '%s'", e->name, msg, e->want1, e->want2);
        lisa_tokenizer_free(t);
    }
    unlink(path);
    rmdir(dir);
    free(model);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s FIXTURES_DIR\n", argv[0]);
        return 2;
    }
    snprintf(g_dir, sizeof g_dir, "%s/tokenizer", argv[1]);
    lisa_tokenizer *sp = NULL, *hf = NULL;
    char model[8192], added[8192];
    snprintf(model, sizeof model, "%s", fixture("tokenizer.model"));
    snprintf(added, sizeof added, "%s", fixture("added_tokens.json"));
    lisa_status st = lisa_tokenizer_load(&sp, model, NULL);
    CHECK(st == LISA_OK, "load %s: %s", model, lisa_error_get());
    st = lisa_tokenizer_load(&hf, model, added);
    CHECK(st == LISA_OK, "load with %s: %s", added, lisa_error_get());
    if (sp && hf) {
        test_vocab(sp, hf);
        test_cases(sp, hf);
        test_long(sp);
    }
    lisa_tokenizer_free(sp);
    lisa_tokenizer_free(hf);
    test_bad_inputs();
    test_bad_fields();
    return test_finish("test-tokenizer");
}
