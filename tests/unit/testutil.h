/* testutil.h: tiny helpers shared by the unit tests (header only).
 *
 * CHECK records a failure and keeps going, so one run reports every broken
 * case; a test's main returns test_finish(). Fixture files are read relative
 * to the fixtures folder passed as argv[1] by ctest. A test's CUDA pass opens
 * its backend with test_cuda_open: without a device the pass is skipped,
 * unless LISA_REQUIRE_CUDA=1 asks for proof that it ran (scripts/
 * gpu-check.sh), and then the missing device is a failed check. */
#ifndef LISA_TESTUTIL_H
#define LISA_TESTUTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"

static int g_test_failures = 0;
static int g_test_checks = 0;

#define CHECK(cond, ...)                                                      \
    do {                                                                      \
        g_test_checks++;                                                      \
        if (!(cond)) {                                                        \
            g_test_failures++;                                                \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);   \
            fprintf(stderr, __VA_ARGS__);                                     \
            fputc('\n', stderr);                                              \
        }                                                                     \
    } while (0)

static inline int test_finish(const char *name) {
    fprintf(stderr, "%s: %d checks, %d failures\n", name, g_test_checks, g_test_failures);
    return g_test_failures ? 1 : 0;
}

/* LISA_REQUIRE_CUDA is set (and not "0"): a skipped CUDA pass is a failure. */
static inline int test_cuda_required(void) {
    const char *r = getenv("LISA_REQUIRE_CUDA");
    return r && *r && strcmp(r, "0") != 0;
}

/* The CUDA backend on device 0 for `test`'s GPU pass, or NULL when there is
 * none: then a skip line naming the reason, or under LISA_REQUIRE_CUDA a
 * failed check. The caller frees the backend. */
static inline lisa_backend *test_cuda_open(const char *test) {
    lisa_backend *gpu = NULL;
    if (lisa_backend_init(&gpu, LISA_BACKEND_CUDA, 0, 0) == LISA_OK) return gpu;
    char why[256];
    snprintf(why, sizeof why, "%s", lisa_error_get());
    if (test_cuda_required()) {
        g_test_checks++;
        g_test_failures++;
        fprintf(stderr, "FAIL %s: LISA_REQUIRE_CUDA is set but there is no CUDA device (%s)\n",
                test, why);
    } else
        fprintf(stderr, "%s: no CUDA device, GPU pass skipped (%s)\n", test, why);
    return NULL;
}

/* For a test whose CUDA pass is chosen by LISA_TEST_DEVICE=cuda: under
 * LISA_REQUIRE_CUDA a missing device is a failed check, whatever device the
 * run asked for. */
static inline void test_cuda_require(const char *test) {
    if (!test_cuda_required()) return;
    lisa_backend *gpu = test_cuda_open(test);
    if (gpu) lisa_backend_free(gpu);
}

/* Joins dir and name into a static buffer (one use at a time). */
static inline const char *test_path(const char *dir, const char *name) {
    static char buf[8192];
    snprintf(buf, sizeof buf, "%s/%s", dir, name);
    return buf;
}

/* Reads a whole file; returns NULL on failure. *len gets the size. */
static inline char *test_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (!buf) { fclose(f); return NULL; }
    size_t got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    buf[got] = 0;
    if (len) *len = got;
    return buf;
}

/* max |a-b| / max |b|: the relative error measure the fixtures are held to. */
static inline double test_rel_err(const float *a, const float *b, size_t n) {
    double md = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > md || isnan(d)) md = isnan(d) ? INFINITY : d;
        if (fabs((double)b[i]) > mb) mb = fabs((double)b[i]);
    }
    return mb > 0 ? md / mb : md;
}

/* Worst error per op name across cases, for the summary an op test prints. */
typedef struct {
    const char *op;
    double worst;
    int cases;
} test_op_stat;

static test_op_stat g_test_stats[32];
static int g_test_nstats;

static inline void test_stat_record(const char *op, double err) {
    for (int i = 0; i < g_test_nstats; i++) {
        if (!strcmp(g_test_stats[i].op, op)) {
            if (err > g_test_stats[i].worst) g_test_stats[i].worst = err;
            g_test_stats[i].cases++;
            return;
        }
    }
    if (g_test_nstats < (int)(sizeof g_test_stats / sizeof g_test_stats[0]))
        g_test_stats[g_test_nstats++] = (test_op_stat){op, err, 1};
}

/* dir/name read as `expect` little-endian fp32 values (a CHECK fails and NULL
 * is returned when the file is missing or has another size). */
static inline float *test_read_f32(const char *dir, const char *name, size_t expect) {
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    size_t len = 0;
    char *buf = test_read_file(path, &len);
    CHECK(buf && len == expect * 4, "%s: expected %zu floats, file has %zu bytes", path, expect, len);
    if (!buf || len != expect * 4) {
        free(buf);
        return NULL;
    }
    return (float *)buf;
}

#endif
