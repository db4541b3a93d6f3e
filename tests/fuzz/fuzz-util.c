/* fuzz-util.c: helpers shared by the fuzz harnesses (see fuzz-util.h). */
#include "fuzz-util.h"

#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "sentencepiece_model.pb-c.h"

uint64_t fuzz_touch(const void *p, size_t n) {
    const volatile uint8_t *b = p;
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) sum += b[i];
    return sum;
}

char *fuzz_strndup(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    FUZZ_CHECK(s != NULL, "out of memory");
    if (size) memcpy(s, data, size);
    s[size] = 0;
    return s;
}

/* ---- SentencePiece model ---- */

typedef Sentencepiece__ModelProto__SentencePiece spm_piece;

void fuzz_spm_build(uint8_t **buf, size_t *len) {
    /* Merges of "hello world" and LISA's bracket tokens, best score first. */
    static const char *const merges[] = {
        "\xe2\x96\x81", "l", "o", "e", "h", "w", "r", "d", "[", "]", "S", "E", "G",
        "ll", "he", "\xe2\x96\x81h", "\xe2\x96\x81w", "or", "ld", "hell", "\xe2\x96\x81hell",
        "\xe2\x96\x81hello", "\xe2\x96\x81wor", "\xe2\x96\x81world"};
    enum { n_merges = sizeof merges / sizeof merges[0], n = 3 + 256 + n_merges };
    static char bytes[256][8];
    spm_piece *pieces = calloc(n, sizeof *pieces);
    spm_piece **ptrs = calloc(n, sizeof *ptrs);
    FUZZ_CHECK(pieces && ptrs, "out of memory");
    for (int i = 0; i < n; i++) {
        sentencepiece__model_proto__sentence_piece__init(&pieces[i]);
        ptrs[i] = &pieces[i];
        pieces[i].has_score = 1;
        pieces[i].has_type = 1;
        pieces[i].type = SENTENCEPIECE__MODEL_PROTO__SENTENCE_PIECE__TYPE__NORMAL;
    }
    pieces[0].piece = "<unk>";
    pieces[0].type = SENTENCEPIECE__MODEL_PROTO__SENTENCE_PIECE__TYPE__UNKNOWN;
    pieces[1].piece = "<s>";
    pieces[1].type = SENTENCEPIECE__MODEL_PROTO__SENTENCE_PIECE__TYPE__CONTROL;
    pieces[2].piece = "</s>";
    pieces[2].type = SENTENCEPIECE__MODEL_PROTO__SENTENCE_PIECE__TYPE__CONTROL;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        pieces[3 + b].piece = bytes[b];
        pieces[3 + b].type = SENTENCEPIECE__MODEL_PROTO__SENTENCE_PIECE__TYPE__BYTE;
    }
    for (int k = 0; k < n_merges; k++) {
        pieces[259 + k].piece = (char *)merges[k];
        pieces[259 + k].score = -(float)k;
    }
    Sentencepiece__TrainerSpec ts;
    sentencepiece__trainer_spec__init(&ts);
    ts.has_model_type = 1;
    ts.model_type = SENTENCEPIECE__TRAINER_SPEC__MODEL_TYPE__BPE;
    ts.has_byte_fallback = 1;
    ts.byte_fallback = 1;
    ts.has_unk_id = ts.has_bos_id = ts.has_eos_id = 1;
    ts.unk_id = 0;
    ts.bos_id = 1;
    ts.eos_id = 2;
    Sentencepiece__NormalizerSpec ns;
    sentencepiece__normalizer_spec__init(&ns);
    ns.has_add_dummy_prefix = ns.has_remove_extra_whitespaces = ns.has_escape_whitespaces = 1;
    ns.add_dummy_prefix = ns.remove_extra_whitespaces = ns.escape_whitespaces = 1;
    Sentencepiece__ModelProto mp;
    sentencepiece__model_proto__init(&mp);
    mp.n_pieces = n;
    mp.pieces = ptrs;
    mp.trainer_spec = &ts;
    mp.normalizer_spec = &ns;
    *len = sentencepiece__model_proto__get_packed_size(&mp);
    *buf = malloc(*len);
    FUZZ_CHECK(*buf != NULL, "out of memory");
    sentencepiece__model_proto__pack(&mp, *buf);
    free(ptrs);
    free(pieces);
}

/* ---- safetensors ---- */

void fuzz_safetensors_write(const char *path, const char *const *names, int n) {
    char header[4096];
    size_t k = 0, off = 0;
    k += (size_t)snprintf(header + k, sizeof header - k, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < n; i++) {
        size_t bytes = (size_t)(i + 1) * 4;
        k += (size_t)snprintf(header + k, sizeof header - k,
                              ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%d],\"data_offsets\":[%zu,%zu]}",
                              names[i], i + 1, off, off + bytes);
        off += bytes;
    }
    k += (size_t)snprintf(header + k, sizeof header - k, "}");
    FUZZ_CHECK(k < sizeof header, "header too long");
    while (k % 8) header[k++] = ' ';
    FILE *f = fopen(path, "wb");
    FUZZ_CHECK(f != NULL, "cannot create a safetensors file");
    uint8_t len8[8];
    for (int b = 0; b < 8; b++) len8[b] = (uint8_t)((uint64_t)k >> (8 * b));
    fwrite(len8, 1, 8, f);
    fwrite(header, 1, k, f);
    for (int i = 0; i < n; i++)
        for (int j = 0; j <= i; j++) {
            float v = (float)i;
            fwrite(&v, sizeof v, 1, f);
        }
    FUZZ_CHECK(fclose(f) == 0, "cannot write a safetensors file");
    fuzz_tmp_track(path);
}

/* ---- temporary files ---- */

static char g_tmp[512];
static char *g_tracked[16];
static int g_n_tracked;

static void fuzz_tmp_cleanup(void) {
    for (int i = 0; i < g_n_tracked; i++) {
        unlink(g_tracked[i]);
        free(g_tracked[i]);
    }
    if (g_tmp[0]) rmdir(g_tmp);
}

const char *fuzz_tmp_dir(void) {
    if (g_tmp[0]) return g_tmp;
    const char *base = getenv("TMPDIR");
    snprintf(g_tmp, sizeof g_tmp, "%s/lisa-fuzz-XXXXXX", base && *base ? base : "/tmp");
    FUZZ_CHECK(mkdtemp(g_tmp) != NULL, "cannot create a temporary directory");
    atexit(fuzz_tmp_cleanup);
    return g_tmp;
}

void fuzz_tmp_track(const char *path) {
    FUZZ_CHECK(g_n_tracked < (int)(sizeof g_tracked / sizeof g_tracked[0]), "too many files");
    g_tracked[g_n_tracked] = fuzz_strndup((const uint8_t *)path, strlen(path));
    g_n_tracked++;
}

/* ---- tokenizer ---- */

static const char *const k_texts[] = {
    "hello world", "  leading and  double  spaces ", "caf\xc3\xa9 \xe2\x96\x81 \xf0\x9f\x98\x80",
    "\xff\xfe invalid \xc3", "<s> </s> <unk> <0x41>", "[SEG] <im_start><im_end>", ""};

static void fuzz_ids(const lisa_tokenizer *t, const int32_t *ids, size_t n) {
    char *text = NULL;
    FUZZ_CHECK(lisa_tokenizer_decode(t, ids, n, &text) == LISA_OK && text, "decode failed");
    fuzz_touch(text, strlen(text));
    free(text);
    text = NULL;
    FUZZ_CHECK(lisa_tokenizer_decode_hf(t, ids, n, &text) == LISA_OK && text, "HF decode failed");
    fuzz_touch(text, strlen(text));
    free(text);
}

void fuzz_tokenizer_check(const lisa_tokenizer *t) {
    int nv = lisa_tokenizer_n_vocab(t);
    FUZZ_CHECK(nv >= 1, "empty vocabulary");
    int bos = lisa_tokenizer_bos_id(t), eos = lisa_tokenizer_eos_id(t);
    FUZZ_CHECK(bos >= -1 && bos < nv && eos >= -1 && eos < nv, "bos/eos out of range");
    for (int32_t id = 0; id < nv; id++) {
        const char *p = lisa_tokenizer_piece(t, id);
        if (!p) continue; /* an added-token id gap */
        int32_t back = lisa_tokenizer_piece_id(t, p);
        FUZZ_CHECK(back >= 0 && back < nv && !strcmp(lisa_tokenizer_piece(t, back), p),
                   "piece_id of a piece names another text");
        fuzz_ids(t, &id, 1);
    }
    FUZZ_CHECK(lisa_tokenizer_piece(t, nv) == NULL && lisa_tokenizer_piece(t, -1) == NULL,
               "a piece out of range");
    int32_t bad[2] = {0, nv};
    char *text = NULL;
    FUZZ_CHECK(lisa_tokenizer_decode(t, bad, 2, &text) == LISA_ERR_ARG, "bad id decoded");
    free(text);
    for (size_t k = 0; k < sizeof k_texts / sizeof k_texts[0]; k++) {
        for (int add_bos = 0; add_bos < 2; add_bos++) {
            int32_t *ids = NULL;
            size_t n = 0;
            lisa_status st = lisa_tokenizer_encode(t, k_texts[k], strlen(k_texts[k]), add_bos, &ids, &n);
            if (add_bos && bos < 0) {
                /* a model may disable BOS (bos_id -1): asking for it is an error */
                FUZZ_CHECK(st == LISA_ERR_ARG && !ids, "BOS given by a model without one");
                continue;
            }
            FUZZ_CHECK(st == LISA_OK, "encode failed");
            for (size_t i = 0; i < n; i++) FUZZ_CHECK(ids[i] >= 0 && ids[i] < nv, "id out of range");
            if (add_bos && bos >= 0) FUZZ_CHECK(n >= 1 && ids[0] == bos, "BOS not first");
            fuzz_ids(t, ids, n);
            free(ids);
        }
    }
}

