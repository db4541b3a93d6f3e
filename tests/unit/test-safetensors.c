/* test-safetensors.c: the safetensors reader against files written here.
 *
 * Good files (single and sharded) are built from C in a mkdtemp folder and
 * read back; then each malformed input (short, bad header, bad offsets,
 * unsupported dtype, bad shapes, bad index, badly stored quantized weights)
 * must fail with a non-OK status and a message naming the problem. When the
 * fixtures folder holds llama-gqa/ with .safetensors files, truncated copies
 * of one must fail cleanly too.
 * Deliberately not here: model semantics of the fixture tensors. */
#include "safetensors.h"

#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

static char g_tmp[256];

/* One tensor to write: name, dtype string, shape and raw bytes. */
typedef struct tspec {
    const char *name;
    const char *dtype;
    int ndim;
    int64_t shape[LISA_MAX_DIMS];
    const void *data;
    size_t nbytes;
} tspec;

/* Writes an 8-byte little-endian length, the header and the data. */
static void write_raw(const char *path, uint64_t hlen_field, const char *header, size_t hlen,
                      const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(hlen_field >> (8 * i));
    fwrite(len8, 1, 8, f);
    if (hlen) fwrite(header, 1, hlen, f);
    if (n) fwrite(data, 1, n, f);
    fclose(f);
}

/* Writes a header-only file whose length field matches the header. */
static void write_header(const char *path, const char *header, const void *data, size_t n) {
    write_raw(path, strlen(header), header, strlen(header), data, n);
}

/* Builds a valid safetensors file from specs: contiguous offsets in spec
 * order, header padded with spaces to a multiple of 8 like the HF writer;
 * meta is appended to the "__metadata__" members (",\"k\":\"v\"" or ""). */
static void write_st_meta(const char *path, const tspec *ts, int n, const char *meta) {
    char header[8192];
    size_t k = 0, off = 0;
    k += (size_t)snprintf(header + k, sizeof header - k,
                          "{\"__metadata__\":{\"format\":\"pt\"%s}", meta);
    for (int i = 0; i < n; i++) {
        k += (size_t)snprintf(header + k, sizeof header - k, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[",
                              ts[i].name, ts[i].dtype);
        for (int d = 0; d < ts[i].ndim; d++)
            k += (size_t)snprintf(header + k, sizeof header - k, "%s%lld", d ? "," : "",
                                  (long long)ts[i].shape[d]);
        k += (size_t)snprintf(header + k, sizeof header - k, "],\"data_offsets\":[%zu,%zu]}", off,
                              off + ts[i].nbytes);
        off += ts[i].nbytes;
    }
    k += (size_t)snprintf(header + k, sizeof header - k, "}");
    while (k % 8) header[k++] = ' ';
    unsigned char *data = malloc(off ? off : 1);
    size_t pos = 0;
    for (int i = 0; i < n; i++) {
        memcpy(data + pos, ts[i].data, ts[i].nbytes);
        pos += ts[i].nbytes;
    }
    write_raw(path, k, header, k, data, off);
    free(data);
}

static void write_st(const char *path, const tspec *ts, int n) { write_st_meta(path, ts, n, ""); }

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
    fputs(text, f);
    fclose(f);
}

/* A fresh path under the temp folder (static buffer, one use at a time). */
static const char *tmp_path(const char *name) { return test_path(g_tmp, name); }

/* Opening path must fail with status want (or any non-OK when want is OK)
 * and a message containing token. */
static void expect_open_fail(const char *path, lisa_status want, const char *token,
                             const char *what) {
    lisa_safetensors *st = (lisa_safetensors *)1;
    lisa_error_set(LISA_OK, "%s", "");
    lisa_status s = lisa_safetensors_open(&st, path);
    CHECK(s != LISA_OK, "%s: open succeeded", what);
    if (want != LISA_OK)
        CHECK(s == want, "%s: status %s, want %s", what, lisa_status_str(s),
              lisa_status_str(want));
    CHECK(st == NULL, "%s: out not NULL on failure", what);
    CHECK(strstr(lisa_error_get(), token) != NULL, "%s: message '%s' lacks '%s'", what,
          lisa_error_get(), token);
    if (s == LISA_OK) lisa_safetensors_close(st);
}

/* A bad single-tensor header: writes it with `data` bytes and expects a
 * format error mentioning token. */
static void expect_header_fail(const char *header, size_t ndata, const char *token,
                               const char *what) {
    unsigned char data[64] = {0};
    const char *p = tmp_path("bad.safetensors");
    write_header(p, header, data, ndata);
    expect_open_fail(p, LISA_ERR_FORMAT, token, what);
}

/* Shared tensors of the good files. */
static const float k_f32[6] = {1.0f, -2.5f, 3.25f, 0.0f, 1e-3f, -7.0f};
static const float k_f16_vals[4] = {0.5f, -1.25f, 3.0f, 1024.0f};
static const float k_bf16_vals[4] = {1.0f, -0.15625f, 256.0f, -3.5f};
static uint16_t g_f16[4], g_bf16[4];

static void test_good_single(void) {
    for (int i = 0; i < 4; i++) {
        g_f16[i] = lisa_f32_to_f16(k_f16_vals[i]);
        g_bf16[i] = lisa_f32_to_bf16(k_bf16_vals[i]);
    }
    tspec ts[3] = {
        {"model.layers.0.mlp.up_proj.weight", "F32", 2, {2, 3}, k_f32, sizeof k_f32},
        {"model.norm.weight", "F16", 1, {4}, g_f16, sizeof g_f16},
        {"lm_head.weight", "BF16", 2, {2, 2}, g_bf16, sizeof g_bf16},
    };
    write_st(tmp_path("one.safetensors"), ts, 3);

    lisa_safetensors *st = NULL;
    lisa_status s = lisa_safetensors_open(&st, tmp_path("one.safetensors"));
    CHECK(s == LISA_OK, "open good file: %s", lisa_error_get());
    if (s != LISA_OK) return;
    CHECK(lisa_safetensors_count(st) == 3, "count %zu", lisa_safetensors_count(st));
    CHECK(lisa_safetensors_at(st, 3) == NULL, "at(count) not NULL");
    for (size_t i = 0; i < lisa_safetensors_count(st); i++) {
        const lisa_st_tensor *t = lisa_safetensors_at(st, i);
        CHECK(t && lisa_safetensors_find(st, t->name) == t, "at(%zu) not findable", i);
    }

    const float *want[3] = {k_f32, k_f16_vals, k_bf16_vals};
    const lisa_dtype dts[3] = {LISA_DTYPE_F32, LISA_DTYPE_F16, LISA_DTYPE_BF16};
    for (int i = 0; i < 3; i++) {
        const lisa_st_tensor *t = lisa_safetensors_find(st, ts[i].name);
        CHECK(t != NULL, "find %s", ts[i].name);
        if (!t) continue;
        CHECK(t->dtype == dts[i], "%s dtype %s", ts[i].name, lisa_dtype_name(t->dtype));
        CHECK(t->ndim == ts[i].ndim, "%s ndim %d", ts[i].name, t->ndim);
        for (int d = 0; d < t->ndim; d++)
            CHECK(t->shape[d] == ts[i].shape[d], "%s shape[%d] %lld", ts[i].name, d,
                  (long long)t->shape[d]);
        CHECK(t->nbytes == ts[i].nbytes, "%s nbytes %zu", ts[i].name, t->nbytes);
        CHECK(t->file_index == 0, "%s file_index %d", ts[i].name, t->file_index);
        size_t n = t->nbytes / lisa_dtype_size(t->dtype);
        float got[8];
        lisa_dtype_to_f32(got, t->data, t->dtype, n);
        for (size_t j = 0; j < n; j++)
            CHECK(got[j] == want[i][j], "%s[%zu] = %g, want %g", ts[i].name, j, got[j],
                  want[i][j]);
        lisa_tensor v = lisa_st_tensor_view(t);
        CHECK(v.data == t->data && v.dtype == t->dtype && v.ndim == t->ndim &&
                  v.shape[0] == t->shape[0],
              "view of %s", ts[i].name);
    }
    CHECK(lisa_safetensors_find(st, "nope") == NULL, "find absent");
    CHECK(lisa_safetensors_find(st, "__metadata__") == NULL, "metadata is not a tensor");

    const lisa_st_tensor *t = NULL;
    const int64_t good[2] = {2, 3}, bad[2] = {3, 2};
    s = lisa_safetensors_get(st, "model.layers.0.mlp.up_proj.weight", 2, good, &t);
    CHECK(s == LISA_OK && t != NULL, "get with right shape: %s", lisa_error_get());
    s = lisa_safetensors_get(st, "model.layers.0.mlp.up_proj.weight", 2, bad, &t);
    CHECK(s == LISA_ERR_SHAPE && t == NULL, "get wrong shape: %s", lisa_status_str(s));
    CHECK(strstr(lisa_error_get(), "expected shape [3, 2], found [2, 3]") != NULL,
          "shape message '%s'", lisa_error_get());
    CHECK(strstr(lisa_error_get(), "up_proj") != NULL, "shape message names tensor");
    s = lisa_safetensors_get(st, "model.norm.weight", 2, good, &t);
    CHECK(s == LISA_ERR_SHAPE && strstr(lisa_error_get(), "found [4]"),
          "get wrong rank: '%s'", lisa_error_get());
    s = lisa_safetensors_get(st, "model.embed_tokens.weight", 2, good, &t);
    CHECK(s == LISA_ERR_MISSING, "get missing: %s", lisa_status_str(s));
    CHECK(strstr(lisa_error_get(), "'model.embed_tokens.weight' not found in") != NULL,
          "missing message '%s'", lisa_error_get());
    lisa_safetensors_close(st);
}

static void test_good_dir_single(void) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/single", g_tmp);
    mkdir(dir, 0700);
    tspec ts[1] = {{"w", "F32", 1, {6}, k_f32, sizeof k_f32}};
    write_st(test_path(dir, "model.safetensors"), ts, 1);
    lisa_safetensors *st = NULL;
    lisa_status s = lisa_safetensors_open(&st, dir);
    CHECK(s == LISA_OK, "open dir with model.safetensors: %s", lisa_error_get());
    if (s == LISA_OK) {
        CHECK(lisa_safetensors_count(st) == 1 && lisa_safetensors_find(st, "w"), "dir tensors");
        lisa_safetensors_close(st);
    }
}

static void test_sharded(void) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/sharded", g_tmp);
    mkdir(dir, 0700);
    tspec s1[2] = {
        {"a", "F32", 2, {2, 3}, k_f32, sizeof k_f32},
        {"b", "F16", 1, {4}, g_f16, sizeof g_f16},
    };
    tspec s2[1] = {{"c", "BF16", 2, {2, 2}, g_bf16, sizeof g_bf16}};
    write_st(test_path(dir, "model-00001-of-00002.safetensors"), s1, 2);
    write_st(test_path(dir, "model-00002-of-00002.safetensors"), s2, 1);
    /* A decoy single file: the index must be preferred over it. */
    tspec decoy[1] = {{"decoy", "F32", 1, {6}, k_f32, sizeof k_f32}};
    write_st(test_path(dir, "model.safetensors"), decoy, 1);
    write_text(test_path(dir, "model.safetensors.index.json"),
               "{\"metadata\": {\"total_size\": 44}, \"weight_map\": {"
               "\"a\": \"model-00001-of-00002.safetensors\", "
               "\"c\": \"model-00002-of-00002.safetensors\", "
               "\"b\": \"model-00001-of-00002.safetensors\"}}");

    for (int via = 0; via < 2; via++) {
        char p[600];
        if (via == 0) snprintf(p, sizeof p, "%s", dir);
        else snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
        lisa_safetensors *st = NULL;
        lisa_status s = lisa_safetensors_open(&st, p);
        CHECK(s == LISA_OK, "open sharded via %s: %s", via ? "index" : "dir", lisa_error_get());
        if (s != LISA_OK) continue;
        CHECK(lisa_safetensors_count(st) == 3, "sharded count %zu", lisa_safetensors_count(st));
        CHECK(lisa_safetensors_find(st, "decoy") == NULL, "index not preferred over decoy");
        const lisa_st_tensor *a = lisa_safetensors_find(st, "a");
        const lisa_st_tensor *c = lisa_safetensors_find(st, "c");
        CHECK(a && c && a->file_index != c->file_index, "a and c in different shards");
        if (c) {
            float got[4];
            lisa_dtype_to_f32(got, c->data, c->dtype, 4);
            CHECK(got[0] == k_bf16_vals[0] && got[3] == k_bf16_vals[3], "shard 2 data");
        }
        if (a) CHECK(((const float *)a->data)[1] == k_f32[1], "shard 1 data");
        const int64_t sh[1] = {4};
        const lisa_st_tensor *b = NULL;
        CHECK(lisa_safetensors_get(st, "b", 1, sh, &b) == LISA_OK && b, "get b");
        lisa_safetensors_close(st);
    }
}

static void test_bad_index(void) {
    char dir[512], p[600];
    snprintf(dir, sizeof dir, "%s/badidx", g_tmp);
    mkdir(dir, 0700);
    tspec s1[1] = {{"a", "F32", 2, {2, 3}, k_f32, sizeof k_f32}};
    write_st(test_path(dir, "s1.safetensors"), s1, 1);
    write_st(test_path(dir, "s1copy.safetensors"), s1, 1);
    snprintf(p, sizeof p, "%s/index.json", dir);

    write_text(p, "{\"weight_map\": {\"a\": \"s1.safetensors\", \"b\": \"gone.safetensors\"}}");
    expect_open_fail(p, LISA_ERR_IO, "gone.safetensors", "index naming a missing shard");

    write_text(p, "{\"weight_map\": {\"a\": \"s1.safetensors\",");
    expect_open_fail(p, LISA_ERR_FORMAT, "not valid JSON", "malformed index");

    write_text(p, "[\"s1.safetensors\"]");
    expect_open_fail(p, LISA_ERR_FORMAT, "not a JSON object", "index not an object");

    write_text(p, "{\"metadata\": {}}");
    expect_open_fail(p, LISA_ERR_FORMAT, "weight_map", "index without weight_map");

    write_text(p, "{\"weight_map\": {\"a\": 3}}");
    expect_open_fail(p, LISA_ERR_FORMAT, "'a'", "index with non-string file");

    write_text(p, "{\"weight_map\": {\"a\": \"../badidx/s1.safetensors\"}}");
    expect_open_fail(p, LISA_ERR_FORMAT, "not a plain file name", "index with ../");

    write_text(p, "{\"weight_map\": {\"a\": \"/etc/passwd\"}}");
    expect_open_fail(p, LISA_ERR_FORMAT, "not a plain file name", "index with absolute path");

    write_text(p, "{\"weight_map\": {\"a\": \"s1.safetensors\", \"zz\": \"s1.safetensors\"}}");
    expect_open_fail(p, LISA_ERR_FORMAT, "'zz'", "index naming a tensor absent from its shard");

    write_text(p, "{\"weight_map\": {\"a\": \"s1.safetensors\", \"x\": \"s1copy.safetensors\"}}");
    expect_open_fail(p, LISA_ERR_FORMAT, "appears twice", "tensor duplicated across shards");
}

static void test_bad_files(void) {
    const char *p = tmp_path("bad.safetensors");

    write_text(p, "");
    expect_open_fail(p, LISA_ERR_FORMAT, "shorter", "empty file");
    FILE *f = fopen(p, "wb");
    fwrite("\x05\x00\x00", 1, 3, f);
    fclose(f);
    expect_open_fail(p, LISA_ERR_FORMAT, "file is 3 bytes, shorter", "3-byte file");

    write_raw(p, 100, "{}", 2, NULL, 0);
    expect_open_fail(p, LISA_ERR_FORMAT, "header length", "header length beyond the file");
    write_raw(p, (uint64_t)1 << 40, "{}", 2, NULL, 0);
    expect_open_fail(p, LISA_ERR_FORMAT, "header length", "absurd header length");
    write_raw(p, UINT64_MAX, "{}", 2, NULL, 0);
    expect_open_fail(p, LISA_ERR_FORMAT, "header length", "header length 2^64-1");
    write_raw(p, 0, "", 0, NULL, 0);
    expect_open_fail(p, LISA_ERR_FORMAT, "not valid JSON", "zero-length header");

    expect_header_fail("this is not json", 0, "not valid JSON", "header not JSON");
    expect_header_fail("{\"x\": {\"dtype\": \"F32\"", 0, "not valid JSON", "truncated JSON");
    expect_header_fail("{}  x", 0, "trailing bytes", "junk after the header JSON");
    expect_header_fail("{} {}", 0, "trailing bytes", "two JSON values in the header");
    expect_header_fail("[1, 2, 3]", 0, "not a JSON object", "header is an array");
    expect_header_fail("{\"x\": 5}", 0, "not an object", "entry not an object");
    expect_header_fail("{\"x\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4, "dtype",
                       "missing dtype");
    expect_header_fail("{\"x\": {\"dtype\": \"I8\", \"shape\": [4], \"data_offsets\": [0, 4]}}",
                       4, "tensor 'x' in", "dtype I8 names tensor");
    expect_header_fail("{\"x\": {\"dtype\": \"I8\", \"shape\": [4], \"data_offsets\": [0, 4]}}",
                       4, "unsupported dtype 'I8'", "dtype I8");
    expect_header_fail("{\"y\": {\"dtype\": \"F64\", \"shape\": [1], \"data_offsets\": [0, 8]}}",
                       8, "unsupported dtype 'F64'", "dtype F64");
    expect_header_fail("{\"x\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}",
                       4, "shape[0]", "negative shape");
    expect_header_fail("{\"x\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 4]}}",
                       4, "shape[0]", "fractional shape");
    expect_header_fail(
        "{\"x\": {\"dtype\": \"F32\", \"shape\": [1, \"2\"], \"data_offsets\": [0, 8]}}", 8,
        "shape[1]", "string in shape");
    expect_header_fail("{\"x\": {\"dtype\": \"F32\", \"shape\": 4, \"data_offsets\": [0, 16]}}",
                       16, "shape", "shape not an array");
    expect_header_fail(
        "{\"x\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1], \"data_offsets\": [0, 4]}}", 4,
        "5 dims", "five dims");
    expect_header_fail("{\"x\": {\"dtype\": \"F32\", \"shape\": [4503599627370496, "
                       "4503599627370496, 4503599627370496], \"data_offsets\": [0, 4]}}",
                       4, "overflows", "shape product overflow");
    expect_header_fail("{\"x\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}",
                       4, "data_offsets [0, 8] beyond the data section (4 bytes)",
                       "offsets out of range");
    expect_header_fail("{\"x\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}",
                       4, "tensor 'x' in", "offsets out of range names tensor");
    expect_header_fail("{\"x\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}",
                       8, "needs 12", "offsets disagree with shape");
    expect_header_fail("{\"x\": {\"dtype\": \"BF16\", \"shape\": [2], \"data_offsets\": [4, 4]}}",
                       8, "needs 4", "empty span for non-empty shape");
    expect_header_fail("{\"x\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 4]}}",
                       8, "begin > end", "begin after end");
    expect_header_fail("{\"x\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0]}}", 8,
                       "data_offsets", "one offset");
    expect_header_fail(
        "{\"x\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, -4]}}", 8,
        "data_offsets", "negative offset");
    expect_header_fail("{\"x\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}, "
                       "\"x\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}",
                       8, "appears twice", "duplicate name in one file");

    /* Edge cases that are valid: an empty tensor and a scalar. */
    write_header(p,
                 "{\"e\": {\"dtype\": \"F32\", \"shape\": [0, 5], \"data_offsets\": [0, 0]}, "
                 "\"s\": {\"dtype\": \"F32\", \"shape\": [], \"data_offsets\": [0, 4]}}",
                 k_f32, 4);
    lisa_safetensors *st = NULL;
    lisa_status s = lisa_safetensors_open(&st, p);
    CHECK(s == LISA_OK, "empty tensor and scalar: %s", lisa_error_get());
    if (s == LISA_OK) {
        const lisa_st_tensor *sc = lisa_safetensors_find(st, "s");
        CHECK(sc && sc->ndim == 0 && sc->nbytes == 4 && *(const float *)sc->data == k_f32[0],
              "scalar tensor");
        lisa_safetensors_close(st);
    }

    char missing[512];
    snprintf(missing, sizeof missing, "%s/does-not-exist.safetensors", g_tmp);
    expect_open_fail(missing, LISA_ERR_IO, "does-not-exist", "nonexistent path");
    char empty_dir[512];
    snprintf(empty_dir, sizeof empty_dir, "%s/emptydir", g_tmp);
    mkdir(empty_dir, 0700);
    expect_open_fail(empty_dir, LISA_ERR_IO, "model.safetensors", "directory without model");
}

/* Quantized weights: U8 (rows, K/32, 34 | 18) named in __metadata__ as
 * "lisa.quant.<name>": "q8_0" | "q4_0", handed out as Q8_0 / Q4_0 (rows, K). */
static void test_quant_good(void) {
    float x8[128], x4[96];
    for (int i = 0; i < 128; i++) x8[i] = sinf((float)i * 0.37f) * (float)(1 + i % 5);
    for (int i = 0; i < 96; i++) x4[i] = cosf((float)i * 0.21f) * (float)(1 + i % 3) - 0.5f;
    static lisa_block_q8_0 b8[4];
    static lisa_block_q4_0 b4[3];
    lisa_quantize_q8_0(b8, x8, 128);
    lisa_quantize_q4_0(b4, x4, 96);
    tspec ts[3] = {
        {"model.layers.0.mlp.up_proj.weight", "U8", 3, {2, 2, 34}, b8, sizeof b8},
        {"model.layers.0.mlp.down_proj.weight", "U8", 3, {3, 1, 18}, b4, sizeof b4},
        {"model.norm.weight", "F32", 1, {6}, k_f32, sizeof k_f32},
    };
    const char *p = tmp_path("quant.safetensors");
    write_st_meta(p, ts, 3,
                  ",\"lisa.quant.model.layers.0.mlp.up_proj.weight\":\"q8_0\","
                  "\"lisa.quant.model.layers.0.mlp.down_proj.weight\":\"q4_0\","
                  "\"lisa.quant.not.a.tensor\":\"q8_0\"");
    size_t len = 0;
    char *bytes = test_read_file(p, &len);
    for (int via = 0; via < 2; via++) {
        lisa_safetensors *st = NULL;
        lisa_status s = via == 0 ? lisa_safetensors_open(&st, p)
                                 : lisa_safetensors_open_memory(&st, "quant-mem", bytes, len);
        CHECK(s == LISA_OK, "open quantized file (%s): %s", via ? "memory" : "mapped",
              lisa_error_get());
        if (s != LISA_OK) continue;
        CHECK(lisa_safetensors_count(st) == 3, "quantized file count %zu",
              lisa_safetensors_count(st));
        const lisa_st_tensor *q8 = NULL, *q4 = NULL, *f = NULL;
        const int64_t sh8[2] = {2, 64}, sh4[2] = {3, 32}, raw[3] = {2, 2, 34}, shf[1] = {6};
        CHECK(lisa_safetensors_get(st, ts[0].name, 2, sh8, &q8) == LISA_OK,
              "get Q8_0 as [2, 64]: %s", lisa_error_get());
        CHECK(lisa_safetensors_get(st, ts[1].name, 2, sh4, &q4) == LISA_OK,
              "get Q4_0 as [3, 32]: %s", lisa_error_get());
        CHECK(lisa_safetensors_get(st, "model.norm.weight", 1, shf, &f) == LISA_OK && f &&
                  f->dtype == LISA_DTYPE_F32,
              "F32 next to quantized tensors");
        const lisa_st_tensor *t = NULL;
        CHECK(lisa_safetensors_get(st, ts[0].name, 3, raw, &t) == LISA_ERR_SHAPE &&
                  strstr(lisa_error_get(), "found [2, 64]"),
              "the stored U8 shape is not the tensor's: '%s'", lisa_error_get());
        if (q8) {
            CHECK(q8->dtype == LISA_DTYPE_Q8_0 && q8->nbytes == sizeof b8 &&
                      memcmp(q8->data, b8, sizeof b8) == 0,
                  "Q8_0 tensor: dtype %s, %zu bytes", lisa_dtype_name(q8->dtype), q8->nbytes);
            float got[128], want[128];
            lisa_dtype_to_f32(got, q8->data, q8->dtype, 128);
            lisa_dtype_to_f32(want, b8, LISA_DTYPE_Q8_0, 128);
            CHECK(memcmp(got, want, sizeof got) == 0, "Q8_0 dequantized from the file");
            lisa_tensor v = lisa_st_tensor_view(q8);
            CHECK(v.dtype == LISA_DTYPE_Q8_0 && v.ndim == 2 && v.shape[1] == 64,
                  "view of a Q8_0 tensor");
        }
        if (q4)
            CHECK(q4->dtype == LISA_DTYPE_Q4_0 && q4->nbytes == sizeof b4 &&
                      memcmp(q4->data, b4, sizeof b4) == 0,
                  "Q4_0 tensor: dtype %s, %zu bytes", lisa_dtype_name(q4->dtype), q4->nbytes);
        lisa_safetensors_close(st);
    }
    free(bytes);

    /* The key belongs to the file holding the tensor: a shard's metadata
     * does not quantize a tensor of another shard. */
    char dir[512];
    snprintf(dir, sizeof dir, "%s/quantsharded", g_tmp);
    mkdir(dir, 0700);
    tspec s1[1] = {{"a", "F32", 1, {6}, k_f32, sizeof k_f32}};
    tspec s2[1] = {{"w", "U8", 3, {1, 1, 34}, b8, 34}};
    write_st_meta(test_path(dir, "s1.safetensors"), s1, 1, ",\"lisa.quant.w\":\"q8_0\"");
    write_st(test_path(dir, "s2.safetensors"), s2, 1);
    write_text(test_path(dir, "model.safetensors.index.json"),
               "{\"weight_map\": {\"a\": \"s1.safetensors\", \"w\": \"s2.safetensors\"}}");
    expect_open_fail(dir, LISA_ERR_FORMAT, "tensor 'w' in", "quant key in another shard");
    expect_open_fail(dir, LISA_ERR_FORMAT, "unsupported dtype 'U8'", "quant key in another shard");
    write_st_meta(test_path(dir, "s2.safetensors"), s2, 1, ",\"lisa.quant.w\":\"q8_0\"");
    lisa_safetensors *st = NULL;
    lisa_status s = lisa_safetensors_open(&st, dir);
    CHECK(s == LISA_OK, "quantized tensor in shard 2: %s", lisa_error_get());
    if (s == LISA_OK) {
        const lisa_st_tensor *w = lisa_safetensors_find(st, "w");
        CHECK(w && w->dtype == LISA_DTYPE_Q8_0 && w->shape[0] == 1 && w->shape[1] == 32 &&
                  w->file_index == 1,
              "shard 2's Q8_0 tensor");
        lisa_safetensors_close(st);
    }
}

static void test_quant_bad(void) {
#define QHDR(meta, dt, shape, offs) \
    "{\"__metadata__\":{\"format\":\"pt\"" meta "},\"w\":{\"dtype\":\"" dt "\",\"shape\":" shape \
    ",\"data_offsets\":" offs "}}"
    expect_header_fail(QHDR("", "U8", "[1,1,34]", "[0,34]"), 34, "unsupported dtype 'U8'",
                       "U8 without a lisa.quant key");
    expect_header_fail(QHDR(",\"lisa.quant.x\":\"q8_0\"", "U8", "[1,1,34]", "[0,34]"), 34,
                       "unsupported dtype 'U8'", "U8 with another tensor's key");
    expect_header_fail("{\"__metadata__\":5,\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,34],"
                       "\"data_offsets\":[0,34]}}",
                       34, "unsupported dtype 'U8'", "U8 with a non-object __metadata__");
    expect_header_fail(QHDR(",\"lisa.quant.w\":\"q5_1\"", "U8", "[1,1,24]", "[0,24]"), 24,
                       "'lisa.quant.w' must be \"q8_0\" or \"q4_0\"", "quant type q5_1");
    expect_header_fail(QHDR(",\"lisa.quant.w\":\"Q8_0\"", "U8", "[1,1,34]", "[0,34]"), 34,
                       "'lisa.quant.w' must be", "quant type in capitals");
    expect_header_fail("{\"__metadata__\":{\"lisa.quant.w\":8},\"w\":{\"dtype\":\"U8\","
                       "\"shape\":[1,1,34],\"data_offsets\":[0,34]}}",
                       34, "'lisa.quant.w' must be", "non-string quant type");
    expect_header_fail(QHDR(",\"lisa.quant.w\":\"q8_0\"", "U8", "[1,1,18]", "[0,18]"), 18,
                       "a Q8_0 tensor is stored as U8 [rows, blocks, 34], found [1, 1, 18]",
                       "q8_0 with Q4_0's block bytes");
    expect_header_fail(QHDR(",\"lisa.quant.w\":\"q4_0\"", "U8", "[1,1,34]", "[0,34]"), 34,
                       "a Q4_0 tensor is stored as U8 [rows, blocks, 18], found [1, 1, 34]",
                       "q4_0 with Q8_0's block bytes");
    expect_header_fail(QHDR(",\"lisa.quant.w\":\"q8_0\"", "U8", "[1,34]", "[0,34]"), 34,
                       "found [1, 34]", "2-D U8 quantized tensor");
    expect_header_fail(QHDR(",\"lisa.quant.w\":\"q8_0\"", "U8", "[34]", "[0,34]"), 34,
                       "found [34]", "1-D U8 quantized tensor");
    expect_header_fail(QHDR(",\"lisa.quant.w\":\"q8_0\"", "U8", "[1,1,1,34]", "[0,34]"), 34,
                       "found [1, 1, 1, 34]", "4-D U8 quantized tensor");
    expect_header_fail(QHDR(",\"lisa.quant.w\":\"q8_0\"", "U8",
                            "[1125899906842624,1125899906842624,34]", "[0,34]"),
                       34, "overflows a size", "quantized shape overflowing a size");
    expect_header_fail(QHDR(",\"lisa.quant.w\":\"q8_0\"", "U8", "[1,1,34]", "[0,32]"), 34,
                       "span 32 bytes but shape [1, 32] of Q8_0 needs 34",
                       "q8_0 byte count short");
    expect_header_fail(QHDR(",\"lisa.quant.w\":\"q4_0\"", "U8", "[2,1,18]", "[0,18]"), 36,
                       "needs 36", "q4_0 byte count short");
    expect_header_fail(QHDR(",\"lisa.quant.w\":\"q4_0\"", "U8", "[1,2,18]", "[0,40]"), 40,
                       "needs 36", "q4_0 byte count long");
    expect_header_fail(QHDR(",\"lisa.quant.w\":\"q8_0\"", "U8", "[1,1,34]", "[0,34]"), 20,
                       "beyond the data section", "q8_0 past the end of the file");
#undef QHDR
}

/* Truncated copies of a real fixture must fail cleanly. */
static void test_truncated_fixture(const char *fixtures) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/llama-gqa", fixtures);
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "note: %s absent, truncated-fixture checks skipped\n", dir);
        return;
    }
    char src[2048] = "";
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n > 12 && strcmp(e->d_name + n - 12, ".safetensors") == 0) {
            snprintf(src, sizeof src, "%s/%s", dir, e->d_name);
            break;
        }
    }
    closedir(d);
    if (!src[0]) {
        fprintf(stderr, "note: no .safetensors in %s, truncated-fixture checks skipped\n", dir);
        return;
    }
    size_t len = 0;
    char *buf = test_read_file(src, &len);
    CHECK(buf && len >= 8, "read fixture %s", src);
    if (!buf || len < 8) {
        free(buf);
        return;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | (unsigned char)buf[i];
    CHECK(hlen <= len - 8, "fixture header length sane");

    const char *p = tmp_path("trunc.safetensors");
    FILE *f = fopen(p, "wb");
    fwrite(buf, 1, len, f);
    fclose(f);
    lisa_safetensors *st = NULL;
    lisa_status s = lisa_safetensors_open(&st, p);
    CHECK(s == LISA_OK, "untruncated fixture copy opens: %s", lisa_error_get());
    if (s == LISA_OK) lisa_safetensors_close(st);

    size_t cuts[4] = {0, 4, 8 + (size_t)hlen / 2, 8 + (size_t)hlen + (len - 8 - (size_t)hlen) / 2};
    int ncuts = (len - 8 - hlen) > 0 ? 4 : 3;
    for (int i = 0; i < ncuts && hlen <= len - 8; i++) {
        f = fopen(p, "wb");
        fwrite(buf, 1, cuts[i], f);
        fclose(f);
        char what[64];
        snprintf(what, sizeof what, "fixture truncated to %zu bytes", cuts[i]);
        expect_open_fail(p, LISA_ERR_FORMAT, "trunc.safetensors", what);
    }
    free(buf);
}

/* Flips bytes of the good file at p with a fixed LCG and opens each
 * mutant: any status is fine, but a success must hand out only in-bounds
 * tensors whose byte count is their shape's (the sanitizer build catches
 * reads outside the mapping). */
static void mutate_file(const char *p, const char *what) {
    size_t len = 0;
    char *good = test_read_file(p, &len);
    CHECK(good != NULL, "read back %s", p);
    if (!good) return;
    char *buf = malloc(len);
    uint32_t rng = 12345u;
    int opened = 0;
    for (int iter = 0; iter < 300; iter++) {
        memcpy(buf, good, len);
        for (int k = 0; k < 1 + iter % 3; k++) {
            rng = rng * 1664525u + 1013904223u;
            size_t at = (rng >> 8) % len;
            rng = rng * 1664525u + 1013904223u;
            static const char k_json_chars[] = "0123456789[]{},:\"-";
            if (iter % 2) buf[at] = (char)(rng >> 24);
            else buf[at] = k_json_chars[(rng >> 24) % (sizeof k_json_chars - 1)];
        }
        FILE *f = fopen(p, "wb");
        fwrite(buf, 1, len, f);
        fclose(f);
        lisa_safetensors *st = NULL;
        if (lisa_safetensors_open(&st, p) != LISA_OK) {
            CHECK(lisa_error_get()[0] != 0, "%s mutant %d failed without a message", what, iter);
            continue;
        }
        opened++;
        float sum = 0;
        for (size_t i = 0; i < lisa_safetensors_count(st); i++) {
            const lisa_st_tensor *t = lisa_safetensors_at(st, i);
            int64_t nelem = 1;
            for (int d = 0; d < t->ndim; d++) nelem *= t->shape[d];
            CHECK(t->nbytes == lisa_dtype_row_bytes(t->dtype, nelem) &&
                      (!lisa_dtype_is_quant(t->dtype) || t->shape[t->ndim - 1] % LISA_QK == 0),
                  "%s mutant %d: %s holds %zu bytes for its shape", what, iter, t->name,
                  t->nbytes);
            const unsigned char *d = t->data;
            for (size_t j = 0; j < t->nbytes; j++) sum += d[j];
        }
        CHECK(sum >= 0, "%s mutant %d data", what, iter);
        lisa_safetensors_close(st);
    }
    fprintf(stderr, "note: %d of 300 %s mutants opened\n", opened, what);
    free(buf);
    free(good);
}

static void test_mutations(void) {
    tspec ts[2] = {
        {"a", "F32", 2, {2, 3}, k_f32, sizeof k_f32},
        {"b", "BF16", 1, {4}, g_bf16, sizeof g_bf16},
    };
    const char *p = tmp_path("mut.safetensors");
    write_st(p, ts, 2);
    mutate_file(p, "plain");
    /* the quantized-weight path: U8 blocks named in __metadata__ */
    static unsigned char blocks[2 * 34 + 18];
    for (size_t i = 0; i < sizeof blocks; i++) blocks[i] = (unsigned char)(i * 37u);
    tspec tq[3] = {
        {"a", "F32", 2, {2, 3}, k_f32, sizeof k_f32},
        {"q", "U8", 3, {2, 1, 34}, blocks, 68},
        {"r", "U8", 3, {1, 1, 18}, blocks + 68, 18},
    };
    p = tmp_path("mutq.safetensors");
    write_st_meta(p, tq, 3, ",\"lisa.quant.q\":\"q8_0\",\"lisa.quant.r\":\"q4_0\"");
    mutate_file(p, "quantized");
}

/* Number of open file descriptors of this process (-1 if unknown). */
static int fd_count(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int n = 0;
    while (readdir(d) != NULL) n++;
    closedir(d);
    return n;
}

/* Removes path and, for a folder, everything below it (no symlinks are
 * followed: lstat sees them as files). */
static void rm_tree(const char *path) {
    struct stat sb;
    if (lstat(path, &sb) != 0) return;
    if (S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            char child[1024];
            snprintf(child, sizeof child, "%s/%s", path, e->d_name);
            rm_tree(child);
        }
        if (d) closedir(d);
    }
    remove(path);
}

int main(int argc, char **argv) {
    snprintf(g_tmp, sizeof g_tmp, "%s/lisa-st-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 2;
    }
    int fds = fd_count();
    test_good_single();
    test_good_dir_single();
    test_sharded();
    test_bad_index();
    test_bad_files();
    test_quant_good();
    test_quant_bad();
    test_mutations();
    if (argc > 1) test_truncated_fixture(argv[1]);
    CHECK(fd_count() == fds, "file descriptors leaked: %d before, %d after", fds, fd_count());
    rm_tree(g_tmp);
    return test_finish("test-safetensors");
}
