/* testutil.h: tiny helpers shared by the unit tests (header only).
 *
 * CHECK records a failure and keeps going, so one run reports every broken
 * case; a test's main returns test_finish(). Fixture files are read relative
 * to the fixtures folder passed as argv[1] by ctest. */
#ifndef LISA_TESTUTIL_H
#define LISA_TESTUTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

#endif
