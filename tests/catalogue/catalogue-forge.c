/* catalogue-forge.c: makes the malformed inputs of tests/catalogue/catalogue.sh
 * from the good fixtures, with the real parsers' own formats.
 *
 *   catalogue-forge spm IN OUT EDIT...   SentencePiece model, fields edited
 *                                        with protobuf-c: piece.I=TEXT,
 *                                        type.I=N, score.I=F (nan, inf),
 *                                        unk_id=N, bos_id=N, eos_id=N,
 *                                        byte_fallback=0|1, model_type=N
 *   catalogue-forge json IN OUT EDIT...  a JSON file edited with cJSON:
 *                                        a/b/c=JSON sets, -a/b/c deletes
 *                                        ('/' separates keys: tensor names
 *                                        hold dots)
 *   catalogue-forge st IN OUT EDIT...    a safetensors file whose JSON header
 *                                        is edited so (as json), its length
 *                                        re-measured, the data kept
 *   catalogue-forge job OUT FIELD...     a JobRequest protobuf message:
 *                                        version=N, custom_id=, prompt=,
 *                                        answer=, image_path=, image_label=,
 *                                        image_file=FILE (its bytes inline),
 *                                        image_bytes= (literal), max_new_tokens=N
 *   catalogue-forge sof IN OUT W H [M]   a JPEG with its first SOF's size
 *                                        (and marker M, e.g. 0xC3) rewritten
 *   catalogue-forge ihdr IN OUT W H D C  a PNG with its IHDR's size, depth
 *                                        and colour type rewritten, CRC fixed
 * TEXT values take \xNN escapes (for bytes that are not UTF-8). It does not
 * judge anything: the lisa commands the catalogue runs do that. Exit 0 when
 * the output was written, 2 on a usage or I/O problem. */
#include <cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job.pb-c.h"
#include "sentencepiece_model.pb-c.h"

static void die(const char *fmt, const char *arg) {
    fprintf(stderr, "catalogue-forge: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    exit(2);
}

static uint8_t *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open %s", path);
    size_t cap = 1 << 16, n = 0, got;
    uint8_t *b = malloc(cap + 1);
    while (b && (got = fread(b + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) b = realloc(b, (cap *= 2) + 1);
    }
    fclose(f);
    if (!b) die("out of memory reading %s", path);
    b[n] = 0;
    *len = n;
    return b;
}

static void write_all(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(p, 1, n, f) != n) || fclose(f)) die("cannot write %s", path);
}

/* A malloc'd copy of s with \xNN escapes decoded; *n its length. */
static char *unescape(const char *s, size_t *n) {
    char *o = malloc(strlen(s) + 1);
    size_t k = 0;
    for (const char *p = s; *p;) {
        unsigned v;
        if (p[0] == '\\' && p[1] == 'x' && sscanf(p + 2, "%2x", &v) == 1) {
            o[k++] = (char)v;
            p += 4;
        } else {
            o[k++] = *p++;
        }
    }
    o[k] = 0;
    if (n) *n = k;
    return o;
}

/* Splits "key=value" (value after the first '='); NULL value when none. */
static char *split_kv(char *arg) {
    char *eq = strchr(arg, '=');
    if (!eq) return NULL;
    *eq = 0;
    return eq + 1;
}

static int spm_index(const Sentencepiece__ModelProto *mp, const char *key) {
    const char *dot = strchr(key, '.');
    long i = dot ? strtol(dot + 1, NULL, 10) : -1;
    if (i < 0 || (size_t)i >= mp->n_pieces) die("no piece in %s", key);
    return (int)i;
}

static int cmd_spm(int argc, char **argv) {
    size_t len;
    uint8_t *in = read_all(argv[2], &len);
    Sentencepiece__ModelProto *mp = sentencepiece__model_proto__unpack(NULL, len, in);
    free(in);
    if (!mp || !mp->trainer_spec) die("%s is not a SentencePiece model", argv[2]);
    Sentencepiece__TrainerSpec *ts = mp->trainer_spec;
    for (int a = 4; a < argc; a++) {
        char *key = argv[a], *val = split_kv(key);
        if (!val) die("edit %s needs =VALUE", key);
        if (!strncmp(key, "piece.", 6)) {
            Sentencepiece__ModelProto__SentencePiece *sp = mp->pieces[spm_index(mp, key)];
            free(sp->piece);
            sp->piece = unescape(val, NULL);
        } else if (!strncmp(key, "type.", 5)) {
            Sentencepiece__ModelProto__SentencePiece *sp = mp->pieces[spm_index(mp, key)];
            sp->type = (Sentencepiece__ModelProto__SentencePiece__Type)atoi(val);
            sp->has_type = 1;
        } else if (!strncmp(key, "score.", 6)) {
            Sentencepiece__ModelProto__SentencePiece *sp = mp->pieces[spm_index(mp, key)];
            sp->score = strtof(val, NULL);
            sp->has_score = 1;
        } else if (!strcmp(key, "unk_id")) {
            ts->unk_id = atoi(val);
            ts->has_unk_id = 1;
        } else if (!strcmp(key, "bos_id")) {
            ts->bos_id = atoi(val);
            ts->has_bos_id = 1;
        } else if (!strcmp(key, "eos_id")) {
            ts->eos_id = atoi(val);
            ts->has_eos_id = 1;
        } else if (!strcmp(key, "byte_fallback")) {
            ts->byte_fallback = atoi(val) != 0;
            ts->has_byte_fallback = 1;
        } else if (!strcmp(key, "model_type")) {
            ts->model_type = (Sentencepiece__TrainerSpec__ModelType)atoi(val);
            ts->has_model_type = 1;
        } else {
            die("unknown spm edit %s", key);
        }
    }
    size_t n = sentencepiece__model_proto__get_packed_size(mp);
    uint8_t *out = malloc(n ? n : 1);
    sentencepiece__model_proto__pack(mp, out);
    write_all(argv[3], out, n);
    free(out);
    sentencepiece__model_proto__free_unpacked(mp, NULL);
    return 0;
}

/* Applies argv[first..argc) edits (a/b=JSON sets, -a/b deletes) to root. */
static void json_edit(cJSON *root, int argc, char **argv, int first) {
    for (int a = first; a < argc; a++) {
        char *path = argv[a], *val = NULL;
        int del = path[0] == '-';
        if (del) path++;
        else if (!(val = split_kv(path))) die("edit %s needs =JSON or a leading -", path);
        cJSON *obj = root;
        char *key = path, *slash;
        while ((slash = strchr(key, '/'))) {
            *slash = 0;
            obj = cJSON_GetObjectItemCaseSensitive(obj, key);
            if (!obj) die("no object %s", key);
            key = slash + 1;
        }
        if (del) {
            if (!cJSON_GetObjectItemCaseSensitive(obj, key)) die("no key %s to delete", key);
            cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
            continue;
        }
        cJSON *v = cJSON_Parse(val);
        if (!v) die("value %s is not JSON", val);
        if (cJSON_GetObjectItemCaseSensitive(obj, key))
            cJSON_ReplaceItemInObjectCaseSensitive(obj, key, v);
        else
            cJSON_AddItemToObject(obj, key, v);
    }
}

static int cmd_json(int argc, char **argv) {
    size_t len;
    char *in = (char *)read_all(argv[2], &len);
    cJSON *root = cJSON_ParseWithLength(in, len);
    free(in);
    if (!root) die("%s is not JSON", argv[2]);
    json_edit(root, argc, argv, 4);
    char *text = cJSON_Print(root);
    write_all(argv[3], text, strlen(text));
    free(text);
    cJSON_Delete(root);
    return 0;
}

/* A safetensors file with its JSON header edited and re-measured; the data
 * section is kept byte for byte. */
static int cmd_st(int argc, char **argv) {
    size_t len;
    uint8_t *in = read_all(argv[2], &len);
    uint64_t hl = 0;
    for (int k = 7; k >= 0 && len >= 8; k--) hl = hl << 8 | in[k];
    if (len < 8 || hl > len - 8) die("%s is not a safetensors file", argv[2]);
    cJSON *root = cJSON_ParseWithLength((const char *)in + 8, (size_t)hl);
    if (!root) die("%s: header is not JSON", argv[2]);
    json_edit(root, argc, argv, 4);
    char *text = cJSON_PrintUnformatted(root);
    size_t tl = strlen(text), dl = len - 8 - (size_t)hl;
    uint8_t *out = malloc(8 + tl + dl);
    if (!out) die("out of memory for %s", argv[3]);
    for (int k = 0; k < 8; k++) out[k] = (uint8_t)((uint64_t)tl >> (8 * k));
    memcpy(out + 8, text, tl);
    memcpy(out + 8 + tl, in + 8 + hl, dl);
    write_all(argv[3], out, 8 + tl + dl);
    free(out);
    free(text);
    free(in);
    cJSON_Delete(root);
    return 0;
}

static int cmd_job(int argc, char **argv) {
    Lisa__Job__JobRequest m = LISA__JOB__JOB_REQUEST__INIT;
    for (int a = 3; a < argc; a++) {
        char *key = argv[a], *val = split_kv(key);
        if (!val) die("field %s needs =VALUE", key);
        size_t n;
        if (!strcmp(key, "version")) {
            m.version = (uint32_t)strtoul(val, NULL, 10);
            m.has_version = 1;
        } else if (!strcmp(key, "max_new_tokens")) {
            m.max_new_tokens = (uint32_t)strtoul(val, NULL, 10);
            m.has_max_new_tokens = 1;
        } else if (!strcmp(key, "custom_id")) {
            m.custom_id = unescape(val, NULL);
        } else if (!strcmp(key, "prompt")) {
            m.prompt = unescape(val, NULL);
        } else if (!strcmp(key, "answer")) {
            m.answer = unescape(val, NULL);
        } else if (!strcmp(key, "image_path")) {
            m.image_path = unescape(val, NULL);
        } else if (!strcmp(key, "image_label")) {
            m.image_label = unescape(val, NULL);
        } else if (!strcmp(key, "image_file")) {
            m.image_bytes.data = read_all(val, &n);
            m.image_bytes.len = n;
            m.has_image_bytes = 1;
        } else if (!strcmp(key, "image_bytes")) {
            m.image_bytes.data = (uint8_t *)unescape(val, &n);
            m.image_bytes.len = n;
            m.has_image_bytes = 1;
        } else {
            die("unknown job field %s", key);
        }
    }
    size_t n = lisa__job__job_request__get_packed_size(&m);
    uint8_t *out = malloc(n ? n : 1);
    lisa__job__job_request__pack(&m, out);
    write_all(argv[2], out, n);
    free(out);
    free(m.custom_id);
    free(m.prompt);
    free(m.answer);
    free(m.image_path);
    free(m.image_label);
    free(m.image_bytes.data);
    return 0;
}

static void put_be16(uint8_t *p, unsigned v) {
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put_be32(uint8_t *p, uint32_t v) {
    for (int k = 0; k < 4; k++) p[k] = (uint8_t)(v >> (24 - 8 * k));
}

static int cmd_sof(int argc, char **argv) {
    size_t len;
    uint8_t *b = read_all(argv[2], &len);
    unsigned w = (unsigned)strtoul(argv[4], NULL, 0), h = (unsigned)strtoul(argv[5], NULL, 0);
    /* walk the marker segments up to the first SOFn (C0..CF but C4, C8, CC) */
    for (size_t i = 2; i + 9 < len;) {
        if (b[i] != 0xFF) die("%s: lost the marker chain", argv[2]);
        uint8_t m = b[i + 1];
        if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
            if (argc > 6) b[i + 1] = (uint8_t)strtoul(argv[6], NULL, 0);
            put_be16(b + i + 5, h);
            put_be16(b + i + 7, w);
            write_all(argv[3], b, len);
            free(b);
            return 0;
        }
        i += 2 + ((size_t)b[i + 2] << 8 | b[i + 3]);
    }
    die("%s: no SOF marker", argv[2]);
    return 2;
}

static uint32_t crc32_png(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
    }
    return c ^ 0xFFFFFFFFu;
}

static int cmd_ihdr(int argc, char **argv) {
    (void)argc;
    size_t len;
    uint8_t *b = read_all(argv[2], &len);
    if (len < 33 || memcmp(b + 12, "IHDR", 4)) die("%s: no IHDR first", argv[2]);
    put_be32(b + 16, (uint32_t)strtoul(argv[4], NULL, 0));
    put_be32(b + 20, (uint32_t)strtoul(argv[5], NULL, 0));
    b[24] = (uint8_t)atoi(argv[6]);
    b[25] = (uint8_t)atoi(argv[7]);
    put_be32(b + 29, crc32_png(b + 12, 17));
    write_all(argv[3], b, len);
    free(b);
    return 0;
}

int main(int argc, char **argv) {
    const char *c = argc > 1 ? argv[1] : "";
    if (!strcmp(c, "spm") && argc >= 4) return cmd_spm(argc, argv);
    if (!strcmp(c, "json") && argc >= 4) return cmd_json(argc, argv);
    if (!strcmp(c, "st") && argc >= 4) return cmd_st(argc, argv);
    if (!strcmp(c, "job") && argc >= 3) return cmd_job(argc, argv);
    if (!strcmp(c, "sof") && argc >= 6) return cmd_sof(argc, argv);
    if (!strcmp(c, "ihdr") && argc >= 8) return cmd_ihdr(argc, argv);
    fprintf(stderr, "usage: catalogue-forge spm|json|st|job|sof|ihdr ... (see the source)\n");
    return 2;
}
