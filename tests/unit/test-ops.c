/* test-ops.c: every op of the CPU backend against torch/transformers 4.31.
 *
 * Reads tests/fixtures/ops/ops.json (written by tests/reference/gen_ops.py;
 * its "about" member documents the fields) and runs each case through the
 * backend seam: tensors are allocated, filled and read back with
 * lisa_backend_tensor_alloc/set/get. Weights listed with a bf16/f16 dtype are
 * narrowed here (exact: the fixture values are representable) and checked to
 * widen back bit for bit.
 *
 * Error measure: max |diff| / max |ref| per case (test_rel_err). Worst
 * errors measured with OpenBLAS 0.3.21 (Debian 12), 2 threads: matmul 2.2e-7,
 * attention 1.2e-7, rmsnorm 5.6e-8, rope 5.3e-8, softmax 1.5e-8, swiglu
 * 8e-11; embedding, get_rows and add exact. The tolerances leave room for
 * other BLAS kernels and summation orders: 1e-6 for elementwise ops, 1e-5
 * for matmul and attention, 0 for gathers and add; argmax exact.
 * In-place variants the contract allows (rmsnorm, swiglu, add with out
 * aliasing an input) must give the same bits as the out-of-place call.
 *
 * Also the seam's non-op parts on the CPU: params (defaults, the
 * environment's switches read only by lisa_backend_params_from_env),
 * copy_backend at offsets, events (done once recorded), host_alloc. */
#include <cJSON.h>
#include <stdint.h>

#include "backend.h"
#include "testutil.h"

#define TOL_ELEM 1e-6   /* rmsnorm, rope, swiglu, softmax */
#define TOL_MATMUL 1e-5 /* matmul, attention */

static lisa_backend *g_be;


static const cJSON *item(const cJSON *c, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, key);
    if (!v) {
        fprintf(stderr, "ops.json: case lacks \"%s\"\n", key);
        abort();
    }
    return v;
}

static int64_t geti(const cJSON *c, const char *key) { return (int64_t)item(c, key)->valuedouble; }

static const char *case_name(const cJSON *c) {
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(c, "name");
    return cJSON_IsString(n) ? n->valuestring : "?";
}

/* A flat JSON number array as fp32; checks its length is `expect`. */
static float *floats(const cJSON *c, const char *key, int64_t expect) {
    const cJSON *a = item(c, key);
    int n = cJSON_GetArraySize(a);
    LISA_ASSERT(n == expect);
    float *f = malloc((size_t)(n ? n : 1) * sizeof *f);
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a) f[i++] = (float)e->valuedouble;
    return f;
}

static int32_t *ints(const cJSON *c, const char *key, int64_t expect) {
    const cJSON *a = item(c, key);
    int n = cJSON_GetArraySize(a);
    LISA_ASSERT(n == expect);
    int32_t *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a) v[i++] = (int32_t)e->valuedouble;
    return v;
}

static lisa_dtype parse_dtype(const cJSON *c, const char *key) {
    const char *s = item(c, key)->valuestring;
    if (s && !strcmp(s, "bf16")) return LISA_DTYPE_BF16;
    if (s && !strcmp(s, "f16")) return LISA_DTYPE_F16;
    LISA_ASSERT(s && !strcmp(s, "f32"));
    return LISA_DTYPE_F32;
}

/* A backend tensor of `dtype` holding the fp32 values src (narrowed). */
static lisa_tensor upload(const float *src, lisa_dtype dtype, int ndim, const int64_t *shape,
                          const char *what) {
    lisa_tensor t;
    LISA_ASSERT(lisa_backend_tensor_alloc(g_be, &t, dtype, ndim, shape) == LISA_OK);
    size_t n = (size_t)lisa_tensor_nelem(&t);
    if (dtype == LISA_DTYPE_F32) {
        LISA_ASSERT(lisa_backend_tensor_set(g_be, &t, src) == LISA_OK);
        return t;
    }
    uint16_t *h = malloc(n * sizeof *h + 1);
    float *back = malloc(n * sizeof *back + 1);
    for (size_t i = 0; i < n; i++)
        h[i] = dtype == LISA_DTYPE_BF16 ? lisa_f32_to_bf16(src[i]) : lisa_f32_to_f16(src[i]);
    lisa_dtype_to_f32(back, h, dtype, n);
    CHECK(!memcmp(back, src, n * sizeof *back), "%s: values not representable in %s", what,
          lisa_dtype_name(dtype));
    LISA_ASSERT(lisa_backend_tensor_set(g_be, &t, h) == LISA_OK);
    free(h);
    free(back);
    return t;
}

static lisa_tensor upload_i32(const int32_t *src, int64_t n) {
    lisa_tensor t;
    LISA_ASSERT(lisa_backend_tensor_alloc(g_be, &t, LISA_DTYPE_I32, 1, &n) == LISA_OK);
    LISA_ASSERT(lisa_backend_tensor_set(g_be, &t, src) == LISA_OK);
    return t;
}

static lisa_tensor alloc_f32(int ndim, const int64_t *shape) {
    lisa_tensor t;
    LISA_ASSERT(lisa_backend_tensor_alloc(g_be, &t, LISA_DTYPE_F32, ndim, shape) == LISA_OK);
    return t;
}

static float *download(const lisa_tensor *t) {
    float *h = malloc(lisa_tensor_nbytes(t) + 1);
    LISA_ASSERT(lisa_backend_tensor_get(g_be, t, h) == LISA_OK);
    return h;
}

/* Compares got with the case's "out" and records the error under op. */
static void compare(const cJSON *c, const char *op, const float *got, int64_t n, double tol) {
    float *ref = floats(c, "out", n);
    double e = test_rel_err(got, ref, (size_t)n);
    CHECK(e <= tol, "%s: rel err %.3g > %.0e", case_name(c), e, tol);
    test_stat_record(op, e);
    free(ref);
}

static void check_ok(lisa_status st, const cJSON *c) {
    CHECK(st == LISA_OK, "%s: %s (%s)", case_name(c), lisa_status_str(st), lisa_error_get());
}

static void test_matmul(const cJSON *c) {
    int64_t M = geti(c, "M"), K = geti(c, "K"), N = geti(c, "N");
    int64_t sx[2] = {M, K}, sw[2] = {N, K}, so[2] = {M, N};
    float *x = floats(c, "x", M * K), *w = floats(c, "w", N * K);
    lisa_tensor tx = upload(x, LISA_DTYPE_F32, 2, sx, "x");
    lisa_tensor tw = upload(w, parse_dtype(c, "w_dtype"), 2, sw, case_name(c));
    lisa_tensor tb = {0}, to = alloc_f32(2, so);
    int has_bias = !cJSON_IsNull(item(c, "bias"));
    if (has_bias) {
        float *b = floats(c, "bias", N);
        tb = upload(b, parse_dtype(c, "bias_dtype"), 1, &N, case_name(c));
        free(b);
    }
    check_ok(g_be->ops->matmul(g_be, &to, &tx, &tw, has_bias ? &tb : NULL), c);
    LISA_ASSERT(lisa_backend_synchronize(g_be) == LISA_OK);
    float *got = download(&to);
    compare(c, "matmul", got, M * N, TOL_MATMUL);
    free(got);
    free(x);
    free(w);
    lisa_backend_tensor_free(g_be, &tx);
    lisa_backend_tensor_free(g_be, &tw);
    lisa_backend_tensor_free(g_be, &to);
    if (has_bias) lisa_backend_tensor_free(g_be, &tb);
}

static void test_embedding(const cJSON *c) {
    int64_t V = geti(c, "V"), C = geti(c, "C"), n = geti(c, "n");
    int64_t st[2] = {V, C}, so[2] = {n, C};
    float *table = floats(c, "table", V * C);
    int32_t *ids = ints(c, "ids", n);
    lisa_tensor tt = upload(table, parse_dtype(c, "table_dtype"), 2, st, case_name(c));
    lisa_tensor ti = upload_i32(ids, n), to = alloc_f32(2, so);
    check_ok(g_be->ops->embedding(g_be, &to, &tt, &ti), c);
    float *got = download(&to);
    compare(c, "embedding", got, n * C, 0.0);
    free(got);
    free(table);
    free(ids);
    lisa_backend_tensor_free(g_be, &tt);
    lisa_backend_tensor_free(g_be, &ti);
    lisa_backend_tensor_free(g_be, &to);
}

static void test_rmsnorm(const cJSON *c) {
    int64_t n = geti(c, "n"), C = geti(c, "C");
    int64_t sx[2] = {n, C};
    float *x = floats(c, "x", n * C), *w = floats(c, "w", C);
    lisa_tensor tx = upload(x, LISA_DTYPE_F32, 2, sx, "x");
    lisa_tensor tw = upload(w, parse_dtype(c, "w_dtype"), 1, &C, case_name(c));
    lisa_tensor to = alloc_f32(2, sx);
    float eps = (float)item(c, "eps")->valuedouble;
    check_ok(g_be->ops->rmsnorm(g_be, &to, &tx, &tw, eps), c);
    float *got = download(&to);
    compare(c, "rmsnorm", got, n * C, TOL_ELEM);
    check_ok(g_be->ops->rmsnorm(g_be, &tx, &tx, &tw, eps), c);
    float *inplace = download(&tx);
    CHECK(!memcmp(inplace, got, (size_t)(n * C) * 4), "%s: in place differs", case_name(c));
    free(inplace);
    free(got);
    free(x);
    free(w);
    lisa_backend_tensor_free(g_be, &tx);
    lisa_backend_tensor_free(g_be, &tw);
    lisa_backend_tensor_free(g_be, &to);
}

static void test_rope(const cJSON *c) {
    int64_t n = geti(c, "n"), H = geti(c, "H"), D = geti(c, "D");
    int64_t sx[3] = {n, H, D};
    float *x = floats(c, "x", n * H * D);
    int32_t *pos = ints(c, "pos", n);
    lisa_tensor tx = upload(x, LISA_DTYPE_F32, 3, sx, "x"), tp = upload_i32(pos, n);
    check_ok(g_be->ops->rope(g_be, &tx, &tp, (float)item(c, "theta")->valuedouble), c);
    float *got = download(&tx);
    compare(c, "rope", got, n * H * D, TOL_ELEM);
    free(got);
    free(x);
    free(pos);
    lisa_backend_tensor_free(g_be, &tx);
    lisa_backend_tensor_free(g_be, &tp);
}

static void test_attention(const cJSON *c) {
    int64_t n = geti(c, "n"), H = geti(c, "H"), KVH = geti(c, "KVH"), D = geti(c, "D");
    int64_t S = geti(c, "S"), Tmax = geti(c, "Tmax");
    int64_t sq[3] = {n, H, D}, skv[3] = {n, KVH, D}, sc[4] = {S, Tmax, KVH, D}, so[2] = {n, H * D};
    float *q = floats(c, "q", n * H * D), *k = floats(c, "k", n * KVH * D),
          *v = floats(c, "v", n * KVH * D);
    int32_t *seq = ints(c, "seq", n), *pos = ints(c, "pos", n);
    lisa_tensor tq = upload(q, LISA_DTYPE_F32, 3, sq, "q"), tk = upload(k, LISA_DTYPE_F32, 3, skv, "k"),
                tv = upload(v, LISA_DTYPE_F32, 3, skv, "v");
    lisa_tensor ts = upload_i32(seq, n), tp = upload_i32(pos, n);
    lisa_tensor kc = alloc_f32(4, sc), vc = alloc_f32(4, sc), to = alloc_f32(2, so);
    check_ok(g_be->ops->kv_store(g_be, &kc, &vc, &tk, &tv, &ts, &tp), c);
    check_ok(g_be->ops->attention(g_be, &to, &tq, &kc, &vc, &ts, &tp), c);
    LISA_ASSERT(lisa_backend_synchronize(g_be) == LISA_OK);
    float *got = download(&to);
    compare(c, "attention", got, n * H * D, TOL_MATMUL);

    /* kv_store put row i's k at [seq[i], pos[i]] */
    float *kh = download(&kc);
    int placed = 1;
    for (int64_t i = 0; i < n; i++)
        placed &= !memcmp(kh + ((size_t)seq[i] * (size_t)Tmax + (size_t)pos[i]) * (size_t)(KVH * D),
                          k + i * KVH * D, (size_t)(KVH * D) * 4);
    CHECK(placed, "%s: kv_store layout", case_name(c));
    free(kh);
    free(got);
    free(q);
    free(k);
    free(v);
    free(seq);
    free(pos);
    lisa_tensor *all[] = {&tq, &tk, &tv, &ts, &tp, &kc, &vc, &to};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) lisa_backend_tensor_free(g_be, all[i]);
}

static void test_swiglu(const cJSON *c) {
    int64_t n = geti(c, "n"), I = geti(c, "I");
    int64_t s[2] = {n, I};
    float *gate = floats(c, "gate", n * I), *up = floats(c, "up", n * I);
    lisa_tensor tg = upload(gate, LISA_DTYPE_F32, 2, s, "gate"), tu = upload(up, LISA_DTYPE_F32, 2, s, "up");
    lisa_tensor to = alloc_f32(2, s);
    check_ok(g_be->ops->swiglu(g_be, &to, &tg, &tu), c);
    float *got = download(&to);
    compare(c, "swiglu", got, n * I, TOL_ELEM);
    check_ok(g_be->ops->swiglu(g_be, &tg, &tg, &tu), c);
    float *inplace = download(&tg);
    CHECK(!memcmp(inplace, got, (size_t)(n * I) * 4), "%s: in place differs", case_name(c));
    free(inplace);
    free(got);
    free(gate);
    free(up);
    lisa_backend_tensor_free(g_be, &tg);
    lisa_backend_tensor_free(g_be, &tu);
    lisa_backend_tensor_free(g_be, &to);
}

static void test_add(const cJSON *c) {
    int64_t n = geti(c, "n"), C = geti(c, "C");
    int64_t s[2] = {n, C};
    float *a = floats(c, "a", n * C), *b = floats(c, "b", n * C);
    lisa_tensor ta = upload(a, LISA_DTYPE_F32, 2, s, "a"), tb = upload(b, LISA_DTYPE_F32, 2, s, "b");
    lisa_tensor to = alloc_f32(2, s);
    check_ok(g_be->ops->add(g_be, &to, &ta, &tb), c);
    float *got = download(&to);
    compare(c, "add", got, n * C, 0.0);
    check_ok(g_be->ops->add(g_be, &tb, &ta, &tb), c);
    float *inplace = download(&tb);
    CHECK(!memcmp(inplace, got, (size_t)(n * C) * 4), "%s: in place differs", case_name(c));
    free(inplace);
    free(got);
    free(a);
    free(b);
    lisa_backend_tensor_free(g_be, &ta);
    lisa_backend_tensor_free(g_be, &tb);
    lisa_backend_tensor_free(g_be, &to);
}

static void test_softmax(const cJSON *c) {
    int64_t n = geti(c, "n"), V = geti(c, "V");
    int64_t s[2] = {n, V};
    float *x = floats(c, "x", n * V);
    lisa_tensor tx = upload(x, LISA_DTYPE_F32, 2, s, "x");
    check_ok(g_be->ops->softmax(g_be, &tx), c);
    float *got = download(&tx);
    compare(c, "softmax", got, n * V, TOL_ELEM);
    free(got);
    free(x);
    lisa_backend_tensor_free(g_be, &tx);
}

static void test_argmax(const cJSON *c) {
    int64_t n = geti(c, "n"), V = geti(c, "V");
    int64_t s[2] = {n, V};
    float *x = floats(c, "x", n * V);
    int32_t *ref = ints(c, "out", n);
    lisa_tensor tx = upload(x, LISA_DTYPE_F32, 2, s, "x"), to;
    LISA_ASSERT(lisa_backend_tensor_alloc(g_be, &to, LISA_DTYPE_I32, 1, &n) == LISA_OK);
    check_ok(g_be->ops->argmax(g_be, &to, &tx), c);
    int32_t *got = (int32_t *)(void *)download(&to);
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        CHECK(got[i] == ref[i], "%s row %lld: argmax %d, expected %d", case_name(c), (long long)i,
              got[i], ref[i]);
        bad += got[i] != ref[i];
    }
    test_stat_record("argmax", bad);
    free(got);
    free(ref);
    free(x);
    lisa_backend_tensor_free(g_be, &tx);
    lisa_backend_tensor_free(g_be, &to);
}

static void test_get_rows(const cJSON *c) {
    int64_t S = geti(c, "S"), C = geti(c, "C"), n = geti(c, "n");
    int64_t ss[2] = {S, C}, so[2] = {n, C};
    float *src = floats(c, "src", S * C);
    int32_t *idx = ints(c, "idx", n);
    lisa_tensor ts = upload(src, LISA_DTYPE_F32, 2, ss, "src"), ti = upload_i32(idx, n);
    lisa_tensor to = alloc_f32(2, so);
    check_ok(g_be->ops->get_rows(g_be, &to, &ts, &ti), c);
    float *got = download(&to);
    compare(c, "get_rows", got, n * C, 0.0);
    free(got);
    free(src);
    free(idx);
    lisa_backend_tensor_free(g_be, &ts);
    lisa_backend_tensor_free(g_be, &ti);
    lisa_backend_tensor_free(g_be, &to);
}

static void test_seam(void) {
    lisa_backend_params p = lisa_backend_params_default(LISA_BACKEND_CPU, 0, 3);
    CHECK(!p.sync_each_launch && !p.no_gemv && !p.no_graphs, "default switches are off");
    setenv("LISA_GRAPHS", "0", 1);
    setenv("LISA_GEMV", "0", 1);
    setenv("LISA_CUDA_SYNC", "1", 1);
    lisa_backend *be = NULL;
    CHECK(lisa_backend_init_params(&be, &p) == LISA_OK, "init_params: %s", lisa_error_get());
    CHECK(be && be->params.threads == 3 && !be->params.no_graphs,
          "init_params keeps its params and reads no environment");
    lisa_backend_free(be);
    lisa_backend_params_from_env(&p);
    CHECK(p.no_graphs && p.no_gemv && p.sync_each_launch, "params_from_env reads the switches");
    unsetenv("LISA_GRAPHS");
    unsetenv("LISA_GEMV");
    unsetenv("LISA_CUDA_SYNC");
    CHECK(!lisa_backend_graphs_enabled(g_be), "the cpu backend records no graphs");

    const lisa_backend_ops *op = g_be->ops;
    char *h = NULL;
    CHECK(op->host_alloc(g_be, 100, (void **)&h) == LISA_OK && ((uintptr_t)h & 63) == 0,
          "host_alloc: 64-byte aligned");
    for (int i = 0; i < 100; i++) h[i] = (char)i;
    CHECK(op->copy_backend(g_be, h, 60, h, 10, 20) == LISA_OK, "copy_backend");
    int same = 1;
    for (int i = 0; i < 20; i++) same &= h[60 + i] == (char)(10 + i);
    CHECK(same && h[59] == 59 && h[80] == 80, "copy_backend honours both offsets and the count");
    op->host_free(g_be, h);
    lisa_event *ev = NULL;
    int done = 0;
    CHECK(op->event_create(g_be, &ev) == LISA_OK, "event_create");
    CHECK(op->event_record(g_be, ev) == LISA_OK && op->event_wait(g_be, ev) == LISA_OK, "record, wait");
    CHECK(op->event_query(g_be, ev, &done) == LISA_OK && done, "a recorded cpu event is done");
    CHECK(op->event_synchronize(g_be, ev) == LISA_OK, "event_synchronize");
    op->event_free(g_be, ev);
}

static const struct {
    const char *key;
    void (*fn)(const cJSON *);
} OPS[] = {
    {"matmul", test_matmul},   {"embedding", test_embedding}, {"rmsnorm", test_rmsnorm},
    {"rope", test_rope},       {"attention", test_attention}, {"swiglu", test_swiglu},
    {"add", test_add},         {"softmax", test_softmax},     {"argmax", test_argmax},
    {"get_rows", test_get_rows},
};

int main(int argc, char **argv) {
    const char *fixtures = argc > 1 ? argv[1] : "tests/fixtures";
    char *json = test_read_file(test_path(fixtures, "ops/ops.json"), NULL);
    CHECK(json != NULL, "%s/ops/ops.json missing (run tests/reference/gen_ops.py)", fixtures);
    if (!json) return test_finish("test-ops");
    cJSON *root = cJSON_Parse(json);
    CHECK(root != NULL, "ops.json does not parse");
    lisa_status st = lisa_backend_cpu_init(&g_be, 2);
    CHECK(st == LISA_OK, "cpu backend: %s", lisa_error_get());
    if (root && st == LISA_OK) {
        for (size_t i = 0; i < sizeof OPS / sizeof OPS[0]; i++) {
            const cJSON *cases = cJSON_GetObjectItemCaseSensitive(root, OPS[i].key);
            CHECK(cJSON_GetArraySize(cases) > 0, "ops.json has no %s cases", OPS[i].key);
            const cJSON *c;
            cJSON_ArrayForEach(c, cases) OPS[i].fn(c);
        }
        test_seam();
        for (int i = 0; i < g_test_nstats; i++)
            fprintf(stderr, "%-10s %2d cases, worst %s %.3g\n", g_test_stats[i].op, g_test_stats[i].cases,
                    strcmp(g_test_stats[i].op, "argmax") ? "rel err" : "wrong rows", g_test_stats[i].worst);
        lisa_backend_free(g_be);
    }
    cJSON_Delete(root);
    free(json);
    return test_finish("test-ops");
}
