/* test-quant.c: the Q8_0 / Q4_0 quantizers and dequantizers of dtype.h
 * against llama.cpp's reference (the gguf package), and the converter's
 * quantized model directories against the C quantizer.
 *
 * 1. quant/rows.safetensors (tests/reference/gen_quant.py): for every edge
 *    case row set C, lisa_quantize_q8_0 / q4_0 of C.x give exactly the bytes
 *    of C.q8_0 / C.q4_0, and lisa_dtype_to_f32 of those bytes gives exactly
 *    C.deq_q8_0 / C.deq_q4_0 (bit for bit; NaN where gguf has NaN, from an
 *    fp16-overflowing scale times 0); lisa_dtype_convert F32 -> Q8_0 / Q4_0
 *    (its 1024-element chunks) gives the same bytes.
 * 2. quant/llama-{gqa,tc}-{q8_0,q4_0}/ (scripts/convert-lisa.py --llama
 *    --quantize): every tensor of the source fixture is there; each Q8_0 /
 *    Q4_0 one has the source's shape [rows, K] and holds lisa_quantize_* of
 *    the source widened to fp32 (converter == C quantizer); every other
 *    tensor has the source's dtype, shape and bytes; the quantized names are
 *    exactly the LLM matmul weights with K % 32 == 0, and config.json's
 *    lisa_model_format.quantization counts them.
 * 3. lisa_llama_model_load_quant of the float fixtures (load-time
 *    quantization) gives the same weights, block for block, as
 *    lisa_llama_model_load of the converted directories.
 * Deliberately not here: matmul kernels on quantized weights (test-ops,
 * test-backend-ops) and model accuracy. */
#include <cJSON.h>

#include "dtype.h"
#include "llama.h"
#include "safetensors.h"
#include "testutil.h"

/* Bitwise float equality, NaN matching any NaN. */
static int same_float(float a, float b) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    uint32_t x, y;
    memcpy(&x, &a, 4);
    memcpy(&y, &b, 4);
    return x == y;
}

/* The fixture tensor `name` of dtype want (NULL and a failed check when it
 * is absent or of another dtype). */
static const lisa_st_tensor *rows_get(const lisa_safetensors *st, const char *name,
                                      lisa_dtype want) {
    const lisa_st_tensor *t = lisa_safetensors_find(st, name);
    CHECK(t != NULL, "rows.safetensors: no tensor %s", name);
    if (!t) return NULL;
    CHECK(t->dtype == want, "%s: dtype %s, want %s", name, lisa_dtype_name(t->dtype),
          lisa_dtype_name(want));
    return t->dtype == want ? t : NULL;
}

/* One case of rows.safetensors for one block type. */
static void check_rows_case(const lisa_safetensors *st, const char *c, const float *x, int64_t r,
                            int64_t k, lisa_dtype qt, int *worst) {
    const char *q = qt == LISA_DTYPE_Q8_0 ? "q8_0" : "q4_0";
    char name[256];
    snprintf(name, sizeof name, "%s.%s", c, q);
    const lisa_st_tensor *tq = rows_get(st, name, qt);
    snprintf(name, sizeof name, "%s.deq_%s", c, q);
    const lisa_st_tensor *td = rows_get(st, name, LISA_DTYPE_F32);
    if (!tq || !td) return;
    CHECK(tq->ndim == 2 && tq->shape[0] == r && tq->shape[1] == k, "%s.%s: shape [%lld, %lld]",
          c, q, (long long)tq->shape[0], (long long)tq->shape[1]);
    size_t n = (size_t)(r * k), nb = lisa_dtype_row_bytes(qt, (int64_t)n);
    if (tq->nbytes != nb || td->nbytes != n * 4) {
        CHECK(0, "%s.%s: %zu bytes, want %zu", c, q, tq->nbytes, nb);
        return;
    }
    unsigned char *mine = malloc(nb), *conv = malloc(nb);
    float *deq = malloc(n * 4);
    if (qt == LISA_DTYPE_Q8_0) lisa_quantize_q8_0((lisa_block_q8_0 *)mine, x, n);
    else lisa_quantize_q4_0((lisa_block_q4_0 *)mine, x, n);
    size_t bs = lisa_dtype_size(qt), bad = 0, first = 0;
    for (size_t b = 0; b < nb / bs; b++)
        if (memcmp(mine + b * bs, (const unsigned char *)tq->data + b * bs, bs) != 0 && !bad++)
            first = b;
    CHECK(bad == 0, "%s: lisa_quantize_%s differs from gguf in %zu of %zu blocks (first: block "
          "%zu, d 0x%04x vs 0x%04x)", c, q, bad, nb / bs, first,
          (unsigned)(mine[first * bs] | mine[first * bs + 1] << 8),
          (unsigned)(((const unsigned char *)tq->data)[first * bs] |
                     ((const unsigned char *)tq->data)[first * bs + 1] << 8));
    lisa_dtype_convert(conv, qt, x, LISA_DTYPE_F32, n);
    CHECK(memcmp(conv, tq->data, nb) == 0, "%s: lisa_dtype_convert F32 -> %s differs from gguf",
          c, lisa_dtype_name(qt));

    lisa_dtype_to_f32(deq, tq->data, qt, n);
    const float *want = td->data;
    size_t dbad = 0, dfirst = 0;
    for (size_t i = 0; i < n; i++)
        if (!same_float(deq[i], want[i]) && !dbad++) dfirst = i;
    CHECK(dbad == 0, "%s: lisa_dtype_to_f32 of %s differs from gguf at %zu of %zu values "
          "(first [%zu]: %.9g vs %.9g)", c, lisa_dtype_name(qt), dbad, n, dfirst, deq[dfirst],
          want[dfirst]);
    /* How far the round trip lands from the input, in hundredths of the
     * block's stored scale, for blocks whose fp16 scale is normal and
     * finite (a subnormal one is too coarse to bound anything). */
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, (const unsigned char *)tq->data + (i / LISA_QK) * bs, 2);
        float d = fabsf(lisa_f16_to_f32(h));
        if (!isfinite(d) || d < 0x1p-14f) continue;
        int e = (int)ceil(fabs((double)deq[i] - x[i]) / d * 100.0);
        if (e > *worst) *worst = e;
    }
    free(mine);
    free(conv);
    free(deq);
}

static void test_rows(const char *fixtures) {
    char path[4096];
    snprintf(path, sizeof path, "%s/quant/rows.safetensors", fixtures);
    lisa_safetensors *st = NULL;
    lisa_status s = lisa_safetensors_open(&st, path);
    CHECK(s == LISA_OK, "open %s: %s", path, lisa_error_get());
    if (s != LISA_OK) return;
    int ncases = 0, worst8 = 0, worst4 = 0;
    for (size_t i = 0; i < lisa_safetensors_count(st); i++) {
        const lisa_st_tensor *t = lisa_safetensors_at(st, i);
        size_t len = strlen(t->name);
        if (len < 3 || strcmp(t->name + len - 2, ".x") != 0) continue;
        char c[200];
        snprintf(c, sizeof c, "%.*s", (int)(len - 2), t->name);
        CHECK(t->dtype == LISA_DTYPE_F32 && t->ndim == 2 && t->shape[1] % LISA_QK == 0,
              "%s: want F32 [R, K] with K %% 32 == 0", t->name);
        if (t->dtype != LISA_DTYPE_F32 || t->ndim != 2 || t->shape[1] % LISA_QK) continue;
        check_rows_case(st, c, t->data, t->shape[0], t->shape[1], LISA_DTYPE_Q8_0, &worst8);
        check_rows_case(st, c, t->data, t->shape[0], t->shape[1], LISA_DTYPE_Q4_0, &worst4);
        ncases++;
    }
    /* gen_quant.py writes 16 cases; fewer means the file is not the one
     * this test was written against. */
    CHECK(ncases >= 16, "rows.safetensors: %d cases", ncases);
    fprintf(stderr, "test-quant: %d row cases equal to gguf; worst |dequant - x| %.2f d (Q8_0), "
            "%.2f d (Q4_0)\n", ncases, worst8 / 100.0, worst4 / 100.0);
    /* Q8_0 rounds x / d32 to nearest, Q4_0 truncates x / d32 + 8.5 and
     * clamps at 15 (the top of a block led by a negative max is one step
     * short); the stored d16 differs from d32 by up to 2^-11 relative, over
     * up to 127 (8) steps: bounds 0.5 + 0.062 and 1 + 0.004 scales. */
    CHECK(worst8 <= 57, "Q8_0 round trip off by %.2f d", worst8 / 100.0);
    CHECK(worst4 <= 101, "Q4_0 round trip off by %.2f d", worst4 / 100.0);
    lisa_safetensors_close(st);
}

/* True for the names convert-lisa.py --quantize quantizes (its QUANT_SCOPE). */
static int in_quant_scope(const char *name) {
    if (strcmp(name, "lm_head.weight") == 0) return 1;
    if (strncmp(name, "model.layers.", 13) != 0) return 0;
    const char *p = name + 13;
    if (*p < '0' || *p > '9') return 0;
    while (*p >= '0' && *p <= '9') p++;
    static const char *const tails[] = {
        ".self_attn.q_proj.weight", ".self_attn.k_proj.weight", ".self_attn.v_proj.weight",
        ".self_attn.o_proj.weight", ".mlp.gate_proj.weight",     ".mlp.up_proj.weight",
        ".mlp.down_proj.weight"};
    for (size_t i = 0; i < sizeof tails / sizeof tails[0]; i++)
        if (strcmp(p, tails[i]) == 0) return 1;
    return 0;
}

static int is_ignored(const char *name) {
    size_t n = strlen(name);
    return n >= 19 && strcmp(name + n - 19, "rotary_emb.inv_freq") == 0;
}

/* lisa_model_format.quantization of dir/config.json: its "tensors" count
 * and "type" (into type[8]); -1 when absent. */
static int config_quant_count(const char *dir, char *type) {
    size_t len = 0;
    char *text = test_read_file(test_path(dir, "config.json"), &len);
    int n = -1;
    type[0] = 0;
    cJSON *root = text ? cJSON_ParseWithLength(text, len) : NULL;
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(root, "lisa_model_format"), "quantization");
    const cJSON *jn = cJSON_GetObjectItemCaseSensitive(q, "tensors");
    const cJSON *jt = cJSON_GetObjectItemCaseSensitive(q, "type");
    const cJSON *jb = cJSON_GetObjectItemCaseSensitive(q, "block_size");
    if (cJSON_IsNumber(jn) && cJSON_IsString(jt) && cJSON_IsNumber(jb) && jb->valueint == 32) {
        n = jn->valueint;
        snprintf(type, 8, "%s", jt->valuestring);
    }
    cJSON_Delete(root);
    free(text);
    return n;
}

static void test_model_dir(const char *fixtures, const char *src_name, lisa_dtype qt) {
    const char *q = qt == LISA_DTYPE_Q8_0 ? "q8_0" : "q4_0";
    char src[4096], dir[4096];
    snprintf(src, sizeof src, "%s/%s", fixtures, src_name);
    snprintf(dir, sizeof dir, "%s/quant/%s-%s", fixtures, src_name, q);
    lisa_safetensors *a = NULL, *b = NULL;
    lisa_status s = lisa_safetensors_open(&a, src);
    CHECK(s == LISA_OK, "open %s: %s", src, lisa_error_get());
    if (s == LISA_OK) {
        s = lisa_safetensors_open(&b, dir);
        CHECK(s == LISA_OK, "open %s: %s", dir, lisa_error_get());
    }
    if (s != LISA_OK) {
        lisa_safetensors_close(a);
        return;
    }
    int nquant = 0, nkept = 0, nsrc = 0;
    for (size_t i = 0; i < lisa_safetensors_count(a); i++) {
        const lisa_st_tensor *ts = lisa_safetensors_at(a, i);
        if (is_ignored(ts->name)) {
            CHECK(lisa_safetensors_find(b, ts->name) == NULL, "%s: %s not dropped", dir,
                  ts->name);
            continue;
        }
        nsrc++;
        const lisa_st_tensor *tq = lisa_safetensors_find(b, ts->name);
        CHECK(tq != NULL, "%s: %s missing", dir, ts->name);
        if (!tq) continue;
        CHECK(tq->ndim == ts->ndim && memcmp(tq->shape, ts->shape, sizeof ts->shape) == 0,
              "%s: %s shape differs from the source", dir, ts->name);
        int want_quant = in_quant_scope(ts->name) && ts->ndim == 2 && ts->shape[1] % LISA_QK == 0;
        if (!want_quant) {
            CHECK(tq->dtype == ts->dtype && tq->nbytes == ts->nbytes &&
                      memcmp(tq->data, ts->data, ts->nbytes) == 0,
                  "%s: %s (not quantized) is not the source's %s bytes", dir, ts->name,
                  lisa_dtype_name(ts->dtype));
            nkept += in_quant_scope(ts->name);
            continue;
        }
        CHECK(tq->dtype == qt, "%s: %s is %s, want %s", dir, ts->name,
              lisa_dtype_name(tq->dtype), lisa_dtype_name(qt));
        if (tq->dtype != qt) continue;
        size_t n = (size_t)(ts->shape[0] * ts->shape[1]);
        size_t nb = lisa_dtype_row_bytes(qt, (int64_t)n);
        float *x = malloc(n * 4);
        unsigned char *mine = malloc(nb);
        lisa_dtype_to_f32(x, ts->data, ts->dtype, n);
        if (qt == LISA_DTYPE_Q8_0) lisa_quantize_q8_0((lisa_block_q8_0 *)mine, x, n);
        else lisa_quantize_q4_0((lisa_block_q4_0 *)mine, x, n);
        CHECK(tq->nbytes == nb && memcmp(mine, tq->data, nb) == 0,
              "%s: %s: converter bytes differ from lisa_quantize_%s of the source", dir,
              ts->name, q);
        free(x);
        free(mine);
        nquant++;
    }
    CHECK(lisa_safetensors_count(b) == (size_t)nsrc, "%s: %zu tensors, source has %d", dir,
          lisa_safetensors_count(b), nsrc);
    char type[8];
    int ncfg = config_quant_count(dir, type);
    CHECK(ncfg == nquant && strcmp(type, q) == 0,
          "%s: config.json quantization says %d %s tensors, found %d %s", dir, ncfg, type,
          nquant, q);
    CHECK(nquant > 0, "%s: nothing quantized", dir);
    fprintf(stderr, "test-quant: %s-%s: %d tensors = lisa_quantize_%s of the source, %d in scope "
            "kept (K %% 32 != 0), %d others unchanged\n", src_name, q, nquant, q, nkept,
            nsrc - nquant - nkept);
    lisa_safetensors_close(a);
    lisa_safetensors_close(b);
}

/* 3. Load-time quantization (lisa_llama_model_load_quant of the float
 * fixture) gives the same blocks as loading the converted directory. */
static int same_weight(const lisa_tensor *a, const lisa_tensor *b) {
    if (a->dtype != b->dtype || a->ndim != b->ndim || a->shape[0] != b->shape[0] ||
        a->shape[1] != b->shape[1] || !a->data || !b->data)
        return 0;
    size_t n = lisa_dtype_row_bytes(a->dtype, a->shape[0] * a->shape[1]);
    return memcmp(a->data, b->data, n) == 0;
}

static void test_load_time(const char *fixtures, const char *src_name, lisa_dtype qt) {
    const char *q = qt == LISA_DTYPE_Q8_0 ? "q8_0" : "q4_0";
    char src[4096], dir[4096];
    snprintf(src, sizeof src, "%s/%s", fixtures, src_name);
    snprintf(dir, sizeof dir, "%s/quant/%s-%s", fixtures, src_name, q);
    lisa_backend *be = NULL;
    lisa_status s = lisa_backend_init(&be, LISA_BACKEND_CPU, 0, 1);
    CHECK(s == LISA_OK, "cpu backend: %s", lisa_error_get());
    if (s != LISA_OK) return;
    lisa_llama_model a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    s = lisa_llama_model_load_quant(&a, src, be, LISA_DTYPE_F32, qt, 0, -1);
    CHECK(s == LISA_OK, "load %s with --quantize %s: %s", src, q, lisa_error_get());
    lisa_status s2 = lisa_llama_model_load(&b, dir, be, LISA_DTYPE_F32, 0, -1);
    CHECK(s2 == LISA_OK, "load %s: %s", dir, lisa_error_get());
    int nsame = 0, nquant = 0, nall = 0;
    if (s == LISA_OK && s2 == LISA_OK) {
        for (int l = 0; l < a.layer_end - a.layer_begin; l++) {
            const lisa_llama_layer *x = &a.layers[l], *y = &b.layers[l];
            const lisa_tensor *pa[7] = {&x->wq, &x->wk, &x->wv, &x->wo,
                                        &x->w_gate, &x->w_up, &x->w_down};
            const lisa_tensor *pb[7] = {&y->wq, &y->wk, &y->wv, &y->wo,
                                        &y->w_gate, &y->w_up, &y->w_down};
            static const char *const names[7] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                 "gate_proj", "up_proj", "down_proj"};
            for (int i = 0; i < 7; i++) {
                int same = same_weight(pa[i], pb[i]);
                CHECK(same, "%s layer %d %s: load-time %s (%s) differs from the converter's (%s)",
                      src_name, l, names[i], q, lisa_dtype_name(pa[i]->dtype),
                      lisa_dtype_name(pb[i]->dtype));
                nsame += same;
                nquant += lisa_dtype_unpacked_of(pb[i]->dtype) == qt; /* packed on the CPU */
                nall++;
            }
        }
        CHECK(same_weight(&a.output, &b.output), "%s: LM head differs", src_name);
        CHECK(nquant > 0, "%s: no projection loaded as %s", src_name, q);
    }
    if (s == LISA_OK) lisa_llama_model_free(&a);
    if (s2 == LISA_OK) lisa_llama_model_free(&b);
    lisa_backend_free(be);
    fprintf(stderr, "test-quant: %s --quantize %s at load = %s-%s: %d of %d projections "
            "identical (%d quantized)\n", src_name, q, src_name, q, nsame, nall, nquant);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test-quant FIXTURES_DIR\n");
        return 2;
    }
    test_rows(argv[1]);
    test_model_dir(argv[1], "llama-gqa", LISA_DTYPE_Q8_0);
    test_model_dir(argv[1], "llama-gqa", LISA_DTYPE_Q4_0);
    test_model_dir(argv[1], "llama-tc", LISA_DTYPE_Q8_0);
    test_model_dir(argv[1], "llama-tc", LISA_DTYPE_Q4_0);
    test_load_time(argv[1], "llama-gqa", LISA_DTYPE_Q8_0);
    test_load_time(argv[1], "llama-gqa", LISA_DTYPE_Q4_0);
    test_load_time(argv[1], "llama-tc", LISA_DTYPE_Q8_0);
    test_load_time(argv[1], "llama-tc", LISA_DTYPE_Q4_0);
    return test_finish("test-quant");
}
