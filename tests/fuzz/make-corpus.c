/* make-corpus.c: writes the fuzz harnesses' seed corpora
 * (tests/fuzz/corpus/<harness>/) from the test fixtures plus a few edge
 * cases shaped here, with the project's own encoders, so no seed is typed
 * by hand. tests/fuzz/make-corpus.sh runs it; its output is committed.
 *
 * Usage: fuzz-make-corpus FIXTURES_DIR OUT_DIR
 *
 * Deliberately not here: inputs that crashed (tests/fuzz/regress/ keeps
 * those, each with its fix). */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include <cJSON.h>

#include "cluster.pb-c.h"
#include "fuzz-util.h"
#include "job-codec.h"
#include "masks.h"
#include "sentencepiece_model.pb-c.h"

static const char *g_fix, *g_out;

static void seed_write(const char *harness, const char *name, const void *data, size_t len) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", g_out, harness);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "make-corpus: cannot create %s\n", path);
        exit(1);
    }
    snprintf(path, sizeof path, "%s/%s/%s", g_out, harness, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "make-corpus: cannot write %s\n", path);
        exit(1);
    }
}

static void seed_text(const char *harness, const char *name, const char *text) {
    seed_write(harness, name, text, strlen(text));
}

/* A fixture's bytes (malloc'd); exits when it is missing. */
static uint8_t *fixture_read(const char *rel, size_t *len) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", g_fix, rel);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "make-corpus: cannot open %s\n", path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    if (!b || fread(b, 1, (size_t)n, f) != (size_t)n) exit(1);
    fclose(f);
    b[n] = 0;
    *len = (size_t)n;
    return b;
}

/* A fixture copied as a seed (its base name, or name). */
static void seed_fixture(const char *harness, const char *rel, const char *name) {
    size_t n;
    uint8_t *b = fixture_read(rel, &n);
    const char *base = strrchr(rel, '/');
    seed_write(harness, name ? name : base ? base + 1 : rel, b, n);
    free(b);
}

static void seeds_image(void) {
    static const char *const files[] = {
        "images/tiny.jpg", "images/tiny.png", "images/exif2.jpg", "images/exif3.jpg",
        "images/exif4.jpg", "images/exif5.jpg", "images/exif6.jpg", "images/exif6-mm.jpg",
        "images/exif7.jpg", "images/exif8.jpg", "images/bilevel.png", "images/resample-row.png",
        "images/resample-noise.png", "images/camera-gray.jpg", "images/gray16.png",
        "images/rgba-synth.png", "images/chelsea-palette.png", "images/horse-rgba.png",
        "images/hubble-progressive.jpg", "images/hostile/cmyk.jpg", "images/hostile/exif-bad.jpg",
        "images/hostile/exif-bad2.jpg", "images/hostile/huge.png"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) seed_fixture("image", files[i], NULL);
    size_t n;
    uint8_t *b = fixture_read("images/tiny.jpg", &n);
    seed_write("image", "tiny-truncated.jpg", b, n / 2);
    free(b);
    b = fixture_read("images/tiny.png", &n);
    seed_write("image", "tiny-truncated.png", b, n - 16);
    free(b);
    /* SOI, the APP1 EXIF segment of exif6.jpg, EOI: orientation, no image */
    b = fixture_read("images/exif6.jpg", &n);
    size_t seg = ((size_t)b[4] << 8) | b[5];
    if (b[3] == 0xE1 && 4 + seg <= n) {
        uint8_t *o = malloc(seg + 6);
        memcpy(o, b, 4 + seg);
        o[4 + seg] = 0xFF;
        o[5 + seg] = 0xD9;
        seed_write("image", "exif-only.jpg", o, seg + 6);
        free(o);
    }
    free(b);
}

static void seeds_safetensors(void) {
    seed_fixture("safetensors", "clip/projector.safetensors", NULL);
    const char *dir = fuzz_tmp_dir();
    char path[700];
    snprintf(path, sizeof path, "%s/small.safetensors", dir);
    static const char *const names[] = {"a.weight", "b.bias", "c"};
    fuzz_safetensors_write(path, names, 3);
    size_t n;
    FILE *f = fopen(path, "rb");
    uint8_t buf[8192];
    n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    seed_write("safetensors", "small.safetensors", buf, n);
    seed_write("safetensors", "small-truncated.safetensors", buf, n - 5);
    /* other dtypes, a scalar, an empty tensor, 4 dims, whitespace padding */
    const char *hdr = "{\"h\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]},"
                      "\"b\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[8,10]},"
                      "\"e\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[10,10]},"
                      "\"q\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1],\"data_offsets\":[10,14]}}   ";
    size_t hl = strlen(hdr);
    uint8_t *o = calloc(1, 8 + hl + 14);
    for (int i = 0; i < 8; i++) o[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(o + 8, hdr, hl);
    seed_write("safetensors", "dtypes.safetensors", o, 8 + hl + 14);
    free(o);
    /* quantized weights: U8 blocks named in __metadata__ (Q8_0 2 x 64, Q4_0
     * 1 x 32) next to an F32 tensor, the blocks from the engine's quantizer */
    float x[128];
    for (int i = 0; i < 128; i++) x[i] = (float)((i * 37) % 23) - 11.0f;
    lisa_block_q8_0 b8[4];
    lisa_block_q4_0 b4[1];
    lisa_quantize_q8_0(b8, x, 128);
    lisa_quantize_q4_0(b4, x, 32);
    const char *qh = "{\"__metadata__\":{\"format\":\"pt\",\"lisa.quant.w8\":\"q8_0\","
                     "\"lisa.quant.w4\":\"q4_0\"},"
                     "\"w8\":{\"dtype\":\"U8\",\"shape\":[2,2,34],\"data_offsets\":[0,136]},"
                     "\"w4\":{\"dtype\":\"U8\",\"shape\":[1,1,18],\"data_offsets\":[136,154]},"
                     "\"n\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[154,162]}}";
    hl = strlen(qh);
    o = calloc(1, 8 + hl + 162);
    for (int i = 0; i < 8; i++) o[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(o + 8, qh, hl);
    memcpy(o + 8 + hl, b8, 136);
    memcpy(o + 8 + hl + 136, b4, 18);
    memcpy(o + 8 + hl + 154, x, 8);
    seed_write("safetensors", "quant.safetensors", o, 8 + hl + 162);
    free(o);
}

static void seeds_st_index(void) {
    seed_fixture("st-index", "llama-gqa/model.safetensors.index.json", "llama-gqa.index.json");
    seed_text("st-index", "all.json",
              "{\"metadata\":{\"total_size\":48},\"weight_map\":{"
              "\"model.embed_tokens.weight\":\"model-00001-of-00003.safetensors\","
              "\"model.norm.weight\":\"model-00001-of-00003.safetensors\","
              "\"model.layers.0.self_attn.q_proj.weight\":\"model-00002-of-00003.safetensors\","
              "\"lm_head.weight\":\"model-00003-of-00003.safetensors\","
              "\"model.layers.0.mlp.up_proj.weight\":\"model-00003-of-00003.safetensors\","
              "\"text_hidden_fcs.0.0.bias\":\"model-00003-of-00003.safetensors\"}}");
    seed_text("st-index", "subset.json",
              "{\"weight_map\":{\"lm_head.weight\":\"model-00003-of-00003.safetensors\"}}");
    seed_text("st-index", "wrong-shard.json",
              "{\"weight_map\":{\"lm_head.weight\":\"model-00001-of-00003.safetensors\"}}");
    seed_text("st-index", "escape.json", "{\"weight_map\":{\"x\":\"../model-00001-of-00003.safetensors\"}}");
    seed_text("st-index", "missing.json", "{\"weight_map\":{\"x\":\"model-00009-of-00009.safetensors\"}}");
}

static void seeds_config(void) {
    seed_fixture("config", "lisa-tiny/model/config.json", "lisa-tiny.json");
    seed_fixture("config", "lisa-tiny/clip/config.json", "lisa-tiny-clip.json");
    seed_fixture("config", "clip/config.json", "clip.json");
    seed_fixture("config", "llama-gqa/config.json", "llama-gqa.json");
    seed_fixture("config", "llama-mha/config.json", "llama-mha.json");
    seed_fixture("config", "lisa-tiny/model/generation_config.json", NULL);
    seed_text("config", "edge.json",
              "{\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,"
              "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"vocab_size\":300,"
              "\"eos_token_id\":[2,3],\"bos_token_id\":null,\"head_dim\":16,\"rope_theta\":1e4,"
              "\"rms_norm_eps\":1e-5,\"tie_word_embeddings\":true,\"mm_projector_type\":\"mlp2x_gelu\","
              "\"sam_config\":{\"encoder_num_heads\":2,\"decoder_num_heads\":1},"
              "\"vision_config\":{\"hidden_size\":32,\"num_attention_heads\":2,\"image_size\":28,"
              "\"patch_size\":14,\"hidden_act\":\"quick_gelu\",\"layer_norm_eps\":1e-5}}");
    seed_text("config", "rope-scaling.json",
              "{\"hidden_size\":8,\"intermediate_size\":8,\"num_hidden_layers\":1,"
              "\"num_attention_heads\":1,\"vocab_size\":8,\"rope_scaling\":{\"type\":\"linear\"}}");
}

/* The fixture's LLaMA tokenizer.model cut to its first n pieces (the
 * control and byte pieces and the best merges). */
static void seed_spm_cut(size_t keep) {
    size_t n;
    uint8_t *b = fixture_read("tokenizer/tokenizer.model", &n);
    Sentencepiece__ModelProto *mp = sentencepiece__model_proto__unpack(NULL, n, b);
    free(b);
    if (!mp) {
        fprintf(stderr, "make-corpus: the fixture tokenizer.model does not unpack\n");
        exit(1);
    }
    size_t all = mp->n_pieces;
    if (mp->n_pieces > keep) mp->n_pieces = keep;
    size_t kept = mp->n_pieces;
    size_t len = sentencepiece__model_proto__get_packed_size(mp);
    uint8_t *o = malloc(len);
    sentencepiece__model_proto__pack(mp, o);
    char name[64];
    snprintf(name, sizeof name, "llama-first-%zu.model", kept);
    seed_write("tokenizer", name, o, len);
    free(o);
    mp->n_pieces = all; /* freed by count */
    sentencepiece__model_proto__free_unpacked(mp, NULL);
}

static void seeds_tokenizer(void) {
    uint8_t *m;
    size_t n;
    fuzz_spm_build(&m, &n);
    seed_write("tokenizer", "small-bpe.model", m, n);
    seed_write("tokenizer", "small-bpe-truncated.model", m, n / 2);
    free(m);
    seed_spm_cut(300);
    seed_fixture("added-tokens", "tokenizer/added_tokens.json", "lisa.json");
    seed_fixture("added-tokens", "lisa-tiny/model/added_tokens.json", "lisa-tiny.json");
    seed_text("added-tokens", "low-ids.json", "{\"[SEG]\": 290, \"<im_start>\": 291, \"<im_end>\": 292}");
    seed_text("added-tokens", "below-vocab.json", "{\"[SEG]\": 3}");
    seed_text("added-tokens", "repeated.json", "{\"a\": 400, \"b\": 400}");
    seed_text("added-tokens", "empty.json", "{}");
}

static void seeds_manifest(void) {
    seed_text("manifest", "lines.jsonl",
              "{\"custom_id\": \"a1\", \"image\": \"photos/a.jpg\", \"prompt\": \"Where is the cup?\", "
              "\"answer\": \"[SEG].\"}\n"
              "{\"custom_id\": 7, \"image\": \"/abs/b.png\", \"prompt\": \"p\", \"max_new_tokens\": 16}\n"
              "{\"image\": \"c.jpg\", \"prompt\": \"no id\", \"answer\": null}\n");
    seed_text("manifest", "bad-lines.jsonl",
              "not json\n[1,2]\n{\"image\": 3, \"prompt\": \"p\"}\n"
              "{\"custom_id\": \"x\", \"image\": \"i\", \"prompt\": \"p\", \"max_new_tokens\": 0.5}\n"
              "{\"custom_id\": \"\", \"image\": \"i\"}\n\n");
}

static void seed_request(const char *name, const lisa_job_request *r) {
    uint8_t *buf;
    size_t len;
    if (lisa_job_request_encode(r, NULL, &buf, &len) != LISA_OK) {
        fprintf(stderr, "make-corpus: %s: %s\n", name, lisa_error_get());
        exit(1);
    }
    seed_write("job-request", name, buf, len);
    free(buf);
}

static void seeds_job(void) {
    size_t n;
    uint8_t *png = fixture_read("images/tiny.png", &n);
    lisa_job_request r = {.custom_id = "a1", .image = png, .image_size = n,
                          .image_label = "tiny.png", .prompt = "What is this? [SEG]",
                          .answer = "It is [SEG].", .max_new_tokens = 32};
    seed_request("inline.bin", &r);
    lisa_job_request p = {.custom_id = "caf\xc3\xa9", .image_path = "photos/a.jpg",
                          .prompt = "Segment the cup."};
    seed_request("path.bin", &p);
    free(png);

    /* results: done with two masks, failed */
    enum { W = 7, H = 5 };
    uint8_t m0[W * H], m1[W * H];
    for (int i = 0; i < W * H; i++) {
        m0[i] = (uint8_t)(i % 3 == 0);
        m1[i] = (uint8_t)(i >= 10 && i < 20);
    }
    lisa_seg_mask masks[2] = {{m0, 0.75f, NULL}, {m1, 0.5f, NULL}};
    int32_t ids[3] = {1, 32000, 2};
    lisa_response d;
    memset(&d, 0, sizeof d);
    d.text = "It is [SEG] and [SEG].";
    d.ids = ids;
    d.n_ids = 3;
    d.w = W;
    d.h = H;
    d.n_masks = 2;
    d.masks = masks;
    lisa_job_result_meta meta = {"worker-1", 2, 1.5, 20.25};
    uint8_t *buf;
    size_t len;
    if (lisa_job_result_encode(&d, &meta, &buf, &len) != LISA_OK) exit(1);
    seed_write("job-result", "done.bin", buf, len);
    free(buf);
    lisa_response f;
    memset(&f, 0, sizeof f);
    f.status = LISA_ERR_FORMAT;
    snprintf(f.error, sizeof f.error, "%s", "image: unrecognized image format");
    if (lisa_job_result_encode(&f, NULL, &buf, &len) != LISA_OK) exit(1);
    seed_write("job-result", "failed.bin", buf, len);
    free(buf);
}

/* Two size bytes and a counts string, as fuzz-rle.c reads them. */
static void seed_rle(const char *name, int w, int h, const char *counts) {
    size_t n = strlen(counts);
    uint8_t *b = malloc(n + 2);
    b[0] = (uint8_t)(w - 1);
    b[1] = (uint8_t)(h - 1);
    memcpy(b + 2, counts, n);
    seed_write("rle", name, b, n + 2);
    free(b);
}

static void seeds_rle(void) {
    size_t n;
    char *text = (char *)fixture_read("masks/cases.json", &n);
    cJSON *root = cJSON_Parse(text);
    free(text);
    const cJSON *c;
    int k = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "rle")) {
        int w = cJSON_GetObjectItem(c, "w")->valueint, h = cJSON_GetObjectItem(c, "h")->valueint;
        if (w > 64 || h > 64) continue;
        char name[32];
        snprintf(name, sizeof name, "case%d.rle", k++);
        seed_rle(name, w, h, cJSON_GetObjectItem(c, "counts")->valuestring);
    }
    cJSON_Delete(root);
    /* a full 64x64 checkerboard, and two malformed strings */
    uint8_t m[64 * 64];
    for (int i = 0; i < 64 * 64; i++) m[i] = (uint8_t)((i / 64 + i % 64) & 1);
    char *s;
    if (lisa_mask_rle_encode(m, 64, 64, &s) != LISA_OK) exit(1);
    seed_rle("checker64.rle", 64, 64, s);
    free(s);
    seed_rle("truncated.rle", 5, 5, "0k");
    seed_rle("badchar.rle", 5, 5, "5~");
}

static void seeds_labelme(void) {
    static const char *const files[] = {
        "reasonseg/data/img01.json", "reasonseg/data/img02.json", "reasonseg/data/img03.json",
        "reasonseg/data/img04.json", "reasonseg/bad/huge-coordinate.json",
        "reasonseg/bad/malformed.json", "reasonseg/bad/no-label.json",
        "reasonseg/bad/no-points.json", "reasonseg/bad/point-not-pair.json",
        "reasonseg/bad/text-not-list.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) seed_fixture("labelme", files[i], NULL);
    seed_text("labelme", "cp1252-ignore.json",
              "{\"text\": [\"caf\xe9\"], \"is_sentence\": true, \"shapes\": ["
              "{\"label\": \"Ignore\", \"points\": [[1, 1], [30, 2], [20, 20]]},"
              "{\"label\": \"flag\", \"points\": [[0, 0]]},"
              "{\"label\": \"t\", \"points\": [[-5, -5], [50, 3], [4, 40]]}]}");
}

/* One packed cluster message behind its tag byte, as fuzz-cluster.c reads it. */
static void seed_cluster(const char *name, int tag, const ProtobufCMessage *m) {
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(n + 1);
    b[0] = (uint8_t)(tag - 1);
    protobuf_c_message_pack(m, b + 1);
    seed_write("cluster", name, b, n + 1);
    free(b);
}

static void seeds_cluster(void) {
    Lisa__Cluster__Hello h = LISA__CLUSTER__HELLO__INIT;
    h.rank = 1;
    h.roles = 2; /* LISA_CLUSTER_ROLE_STAGE */
    h.stage = 0;
    h.host = "h1";
    h.pid = 1234;
    h.version = "lisa-fuzz";
    h.model_fp = 42;
    h.layer_begin = 0;
    h.layer_end = 2;
    h.world = 4;
    seed_cluster("hello-stage1.bin", 1, &h.base);
    h.rank = 3;
    h.roles = 4;
    h.stage = -1;
    seed_cluster("hello-vision.bin", 1, &h.base);
    Lisa__Cluster__RankError e = LISA__CLUSTER__RANK_ERROR__INIT;
    e.rank = 2;
    e.status = LISA_ERR_BACKEND;
    e.error = "out of device memory";
    seed_cluster("rank-error.bin", 10, &e.base);
    Lisa__Cluster__VisionPrepare vp = LISA__CLUSTER__VISION_PREPARE__INIT;
    vp.handle = 5;
    vp.image.data = (uint8_t *)"\xff\xd8\xff";
    vp.image.len = 3;
    vp.label = "a.jpg";
    seed_cluster("vision-prepare.bin", 2, &vp.base);
    Lisa__Cluster__Item it = LISA__CLUSTER__ITEM__INIT;
    it.handle = 5;
    it.slot = 1;
    it.n = 3;
    Lisa__Cluster__Item *items[1] = {&it};
    Lisa__Cluster__MicroBatch mb = LISA__CLUSTER__MICRO_BATCH__INIT;
    mb.id = 9;
    mb.n_items = 1;
    mb.items = items;
    mb.n_tokens = 3;
    seed_cluster("micro-batch.bin", 5, &mb.base);
    int32_t next[2] = {32000, 2};
    Lisa__Cluster__TokenResult tr = LISA__CLUSTER__TOKEN_RESULT__INIT;
    tr.id = 9;
    tr.n_next = 2;
    tr.next = next;
    seed_cluster("tokens.bin", 6, &tr.base);
    float iou[1] = {0.5f};
    ProtobufCBinaryData mask[1] = {{4, (uint8_t *)"\x01\x00\x01\x01"}};
    Lisa__Cluster__Masks ms = LISA__CLUSTER__MASKS__INIT;
    ms.handle = 5;
    ms.n_iou = 1;
    ms.iou = iou;
    ms.n_mask = 1;
    ms.mask = mask;
    seed_cluster("masks.bin", 9, &ms.base);
    Lisa__Cluster__Stats stx = LISA__CLUSTER__STATS__INIT;
    stx.rank = 1;
    stx.busy_s = 0.25;
    stx.tokens = 100;
    seed_cluster("stats.bin", 12, &stx.base);
    Lisa__Cluster__Shutdown sd = LISA__CLUSTER__SHUTDOWN__INIT;
    seed_cluster("shutdown.bin", 11, &sd.base);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s FIXTURES_DIR OUT_DIR\n", argv[0]);
        return 2;
    }
    g_fix = argv[1];
    g_out = argv[2];
    seeds_image();
    seeds_safetensors();
    seeds_st_index();
    seeds_config();
    seeds_tokenizer();
    seeds_manifest();
    seeds_job();
    seeds_rle();
    seeds_labelme();
    seeds_cluster();
    return 0;
}
