/* stream-cpu.c: a STREAM-like probe of the host's memory bandwidth, the
 * ceiling of batch-1 decode on the CPU (every weight is read once per
 * token). It times, on T OpenMP threads each owning a contiguous slice of
 * a buffer far larger than the caches, a read-only pass (what a decode step
 * does to its weights) and a copy (STREAM's "Copy": one read and one write
 * stream). Deliberately not here: any claim of what a model reaches; the
 * benchmarks divide their own bytes by their own time. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Sums n 64-bit words as READ_STREAMS sequential streams read in lockstep
 * (as a matmul panel reads its weight rows), 8 words of each per step, so
 * the loads, not the adds, bound it; the result is kept so the reads
 * cannot be dropped. With `ahead` non-zero each stream is also prefetched
 * that many words ahead, as the decode kernels do (matmul-avx512.c): on
 * some CPUs (a Zen 5 EPYC: 46 against 59 GB/s) the hardware prefetchers
 * alone leave a fifth of the bandwidth unused, and a probe below what
 * decode reaches would not be its ceiling. */
#define READ_STREAMS 6
#define READ_AHEAD_WORDS 128 /* 1024 bytes */
static uint64_t read_words(const uint64_t *p, size_t n, size_t ahead) {
    uint64_t a[8] = {0};
    size_t len = n / READ_STREAMS / 8 * 8;
    for (size_t i = 0; i < len; i += 8)
        for (int s = 0; s < READ_STREAMS; s++) {
            if (ahead) __builtin_prefetch(p + (size_t)s * len + i + ahead);
            for (int j = 0; j < 8; j++) a[j] += p[(size_t)s * len + i + j];
        }
    return a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
}

lisa_status lisa_cpu_stream_measure(int threads, size_t bytes, int reps, lisa_cpu_stream *out) {
    memset(out, 0, sizeof *out);
    if (threads <= 0) threads = omp_get_num_procs();
    if (reps < 1) reps = 1;
    /* two halves, source and destination; every thread's slice a whole
     * number of READ_STREAMS x 8-word steps, so the read pass reads it all */
    size_t unit = (size_t)threads * READ_STREAMS * 8;
    size_t words = bytes / 16 / unit * unit;
    if (words == 0)
        return lisa_error_set(LISA_ERR_ARG, "stream: %zu bytes is too small", bytes);
    uint64_t *src = aligned_alloc(64, words * 8), *dst = aligned_alloc(64, words * 8);
    if (!src || !dst) {
        free(src);
        free(dst);
        return lisa_error_set(LISA_ERR_NOMEM, "stream: cannot allocate 2 x %zu bytes", words * 8);
    }
    volatile uint64_t sink = 0;
    double best_read = 0, best_copy = 0;
#pragma omp parallel num_threads(threads)
    {
        /* first touch by the thread that reads the slice later */
        int t = omp_get_thread_num(), T = omp_get_num_threads();
        size_t a = words / (size_t)T * (size_t)t, b = a + words / (size_t)T;
        for (size_t i = a; i < b; i++) src[i] = i;
        memset(dst + a, 0, (b - a) * 8);
    }
    for (int r = 0; r < reps; r++) {
        uint64_t acc = 0;
        /* the read pass with and without software prefetch (best of both) */
        double tr = 0;
        for (int pf = 0; pf < 2; pf++) {
            double t0 = now_s();
#pragma omp parallel num_threads(threads) reduction(+ : acc)
            {
                int t = omp_get_thread_num(), T = omp_get_num_threads();
                size_t a = words / (size_t)T * (size_t)t, b = a + words / (size_t)T;
                acc += read_words(src + a, b - a, pf ? READ_AHEAD_WORDS : 0);
            }
            double dt = now_s() - t0;
            if (!pf || dt < tr) tr = dt;
        }
        sink += acc;
        double t1 = now_s();
#pragma omp parallel num_threads(threads)
        {
            int t = omp_get_thread_num(), T = omp_get_num_threads();
            size_t a = words / (size_t)T * (size_t)t, b = a + words / (size_t)T;
            memcpy(dst + a, src + a, (b - a) * 8);
        }
        double t2 = now_s();
        double rd = (double)(words * 8) / tr / 1e9;
        double cp = 2.0 * (double)(words * 8) / (t2 - t1) / 1e9;
        if (rd > best_read) best_read = rd;
        if (cp > best_copy) best_copy = cp;
    }
    (void)sink;
    free(src);
    free(dst);
    out->threads = threads;
    out->bytes = words * 8;
    out->read_gb_s = best_read;
    out->copy_gb_s = best_copy;
    return LISA_OK;
}
