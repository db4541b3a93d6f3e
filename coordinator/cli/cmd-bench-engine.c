/* cmd-bench-engine.c: `lisa bench engine`: static against continuous
 * batching on one mixed workload, in the same run.
 *
 * N requests on one image (so CLIP and the SAM encoder run once per mode
 * and the comparison is the LLM's scheduling); every --long-every'th request
 * generates --long-factor times more tokens than the others. EOS is ignored
 * (vLLM's ignore_eos) so answer lengths are what the workload says. All
 * requests arrive at once (an offline batch); a request's latency is the
 * time from submission to its response. Each mode gets a fresh engine, so
 * both start with a cold image cache. Reported per mode: requests/s,
 * generated tokens/s, p50 and p95 latency; then continuous/static ratios.
 * It only measures on this machine; it asserts nothing. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli-util.h"
#include "commands.h"
#include "engine.h"

static void bench_engine_help(FILE *f) {
    fprintf(f,
            "usage: lisa bench engine --model DIR --image IMG [options]\n"
            "\n"
            "Runs one mixed workload through static batching (a batch admitted into an\n"
            "empty engine, run until its longest member ends) and continuous batching\n"
            "(requests join and leave between steps, chunked prefill), and prints\n"
            "requests/s and p50/p95 latency of each with the ratio.\n"
            "\n"
            "options:\n"
            "  --model DIR         converted LISA model directory (e.g. the tiny fixture)\n"
            "  --image IMG         the image every request asks about\n"
            "  --requests N        requests (default 32)\n"
            "  --new-tokens N      tokens a short answer generates (default 16)\n"
            "  --long-every K      every K-th request is long (default 4: a quarter)\n"
            "  --long-factor F     a long answer generates F times more (default 10)\n"
            "  --batch N           KV-cache slots (default 8)\n"
            "  --token-budget N    tokens per step (default 512)\n"
            "  --device DEV        cpu (default), cuda or cuda:N\n"
            "  --dtype T           fp32, bf16 or fp16 (default: fp32 on cpu, bf16 on cuda)\n"
            "  --quantize Q         q8_0 or q4_0: quantize the LLM's projections and LM\n"
            "                       head at load (a converted --quantize model needs no flag)\n"
            "  --threads N         CPU threads (default: all cores)\n"
            "  --json              one JSON line per mode instead of the table\n"
            "  -h, --help          show this help\n");
}

static double bench_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    double seconds, req_per_s, tok_per_s, p50_ms, p95_ms;
    int64_t steps, tokens;
    int failed;
} engine_run;

/* Runs the workload once under a policy on a fresh engine. */
static lisa_status bench_engine_run(const lisa_engine_params *base, lisa_sched_policy pol,
                                    const lisa_request *rq, int n, engine_run *out) {
    lisa_engine_params p = *base;
    p.policy = pol;
    lisa_engine *e = NULL;
    LISA_TRY(lisa_engine_init(&e, &p));
    double *lat = calloc((size_t)n, sizeof *lat);
    lisa_status st = lat ? LISA_OK : lisa_error_set(LISA_ERR_NOMEM, "out of memory");
    memset(out, 0, sizeof *out);
    double t0 = bench_now();
    int64_t base_handle = -1;
    for (int i = 0; i < n && st == LISA_OK; i++) {
        int64_t h;
        st = lisa_engine_submit(e, &rq[i], &h);
        if (i == 0) base_handle = h;
    }
    int done = 0;
    while (st == LISA_OK && done < n) {
        if (lisa_engine_pending(e)) st = lisa_engine_step(e);
        lisa_response r;
        double t = bench_now();
        while (lisa_engine_take_finished(e, &r, 1) == 1) {
            int64_t i = r.handle - base_handle;
            if (i >= 0 && i < n) lat[i] = t - t0;
            out->failed += r.status != LISA_OK;
            out->tokens += r.n_ids;
            done++;
            lisa_response_free(&r);
        }
        if (!lisa_engine_pending(e) && done < n && st == LISA_OK)
            st = lisa_error_set(LISA_ERR_BACKEND, "engine idle with %d responses missing", n - done);
    }
    if (st == LISA_OK) {
        lisa_engine_stats s;
        lisa_engine_stats_get(e, &s);
        out->seconds = bench_now() - t0;
        out->steps = s.steps;
        out->req_per_s = n / out->seconds;
        out->tok_per_s = (double)out->tokens / out->seconds;
        qsort(lat, (size_t)n, sizeof *lat, cmp_double);
        out->p50_ms = 1e3 * lat[(n - 1) / 2];
        out->p95_ms = 1e3 * lat[(int)ceil(0.95 * n) - 1];
    }
    free(lat);
    lisa_engine_free(e);
    return st;
}

int cmd_bench_engine(int argc, char **argv) {
    const char *model = NULL, *image = NULL, *device = "cpu", *dtype_s = NULL, *quant_s = NULL;
    long nreq = 32, new_tokens = 16, long_every = 4, long_factor = 10, batch = 8, budget = 0,
         threads = 0;
    int json = 0;
    const cli_opt opts[] = {
        {"--model", CLI_STRING, &model},          {"--image", CLI_STRING, &image},
        {"--requests", CLI_COUNT, &nreq},         {"--new-tokens", CLI_COUNT, &new_tokens},
        {"--long-every", CLI_COUNT, &long_every}, {"--long-factor", CLI_COUNT, &long_factor},
        {"--batch", CLI_COUNT, &batch},           {"--token-budget", CLI_COUNT, &budget},
        {"--device", CLI_STRING, &device},        {"--dtype", CLI_STRING, &dtype_s}, {"--quantize", CLI_STRING, &quant_s},
        {"--threads", CLI_COUNT, &threads},       {"--json", CLI_FLAG, &json},
    };
    int pr = cli_opts_parse("bench engine", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]),
                            bench_engine_help);
    if (pr) return pr > 0 ? 0 : 2;
    if (!model || !image || nreq < 1 || new_tokens < 1 || long_every < 1 || long_factor < 1 ||
        batch < 1) {
        fprintf(stderr, "lisa bench engine: give --model and --image; counts must be at least 1 "
                        "(see --help)\n");
        return 2;
    }
    lisa_engine_params p;
    if (cli_engine_params(&p, model, device, dtype_s, threads)) return 2;
    if (quant_s && cli_parse_quant(quant_s, &p.quantize)) return 2;
    p.max_batch = (int)batch;
    p.token_budget = (int)budget;
    p.ignore_eos = 1;
    p.max_new_tokens = (int)(new_tokens * long_factor);

    uint8_t *bytes = NULL;
    size_t n_bytes = 0;
    lisa_status st = lisa_image_read_file(image, NULL, &bytes, &n_bytes);
    if (st != LISA_OK) {
        fprintf(stderr, "lisa bench engine: %s\n", lisa_error_get());
        return 1;
    }
    lisa_request *rq = calloc((size_t)nreq, sizeof *rq);
    char (*prompts)[96] = calloc((size_t)nreq, sizeof *prompts);
    if (!rq || !prompts) {
        fprintf(stderr, "lisa bench engine: out of memory\n");
        free(bytes);
        free(rq);
        free(prompts);
        return 1;
    }
    for (long i = 0; i < nreq; i++) {
        snprintf(prompts[i], sizeof prompts[i], "Describe object number %ld in this image.", i);
        rq[i].image = bytes;
        rq[i].image_size = n_bytes;
        rq[i].prompt = prompts[i];
        rq[i].max_new_tokens = (int)(i % long_every == long_every - 1 ? new_tokens * long_factor
                                                                      : new_tokens);
    }
    static const char *names[2] = {"static", "continuous"};
    const lisa_sched_policy pols[2] = {LISA_SCHED_STATIC, LISA_SCHED_CONTINUOUS};
    engine_run runs[2];
    for (int m = 0; m < 2 && st == LISA_OK; m++) {
        st = bench_engine_run(&p, pols[m], rq, (int)nreq, &runs[m]);
        if (st != LISA_OK) fprintf(stderr, "lisa bench engine: %s: %s\n", names[m], lisa_error_get());
    }
    if (st == LISA_OK) {
        if (json) {
            for (int m = 0; m < 2; m++)
                printf("{\"engine\":\"lisa\",\"mode\":\"%s\",\"requests\":%ld,\"slots\":%ld,"
                       "\"seconds\":%.4f,\"requests_per_s\":%.3f,\"tokens_per_s\":%.2f,"
                       "\"p50_ms\":%.2f,\"p95_ms\":%.2f,\"steps\":%lld,\"tokens\":%lld,"
                       "\"failed\":%d}\n",
                       names[m], nreq, batch, runs[m].seconds, runs[m].req_per_s, runs[m].tok_per_s,
                       runs[m].p50_ms, runs[m].p95_ms, (long long)runs[m].steps,
                       (long long)runs[m].tokens, runs[m].failed);
        } else {
            printf("workload: %ld requests, %ld slots, answers of %ld tokens, every %ld-th %ldx "
                   "longer (EOS ignored)\n",
                   nreq, batch, new_tokens, long_every, long_factor);
            printf("%-11s %8s %9s %10s %10s %10s %7s\n", "mode", "time s", "req/s", "tok/s",
                   "p50 ms", "p95 ms", "steps");
            for (int m = 0; m < 2; m++)
                printf("%-11s %8.3f %9.3f %10.1f %10.1f %10.1f %7lld\n", names[m], runs[m].seconds,
                       runs[m].req_per_s, runs[m].tok_per_s, runs[m].p50_ms, runs[m].p95_ms,
                       (long long)runs[m].steps);
            printf("continuous / static: %.2fx requests/s, p50 latency %.2fx lower, p95 %.2fx "
                   "lower\n",
                   runs[1].req_per_s / runs[0].req_per_s, runs[0].p50_ms / runs[1].p50_ms,
                   runs[0].p95_ms / runs[1].p95_ms);
        }
        for (int m = 0; m < 2; m++)
            if (runs[m].failed) {
                fprintf(stderr, "lisa bench engine: %s: %d requests failed\n", names[m], runs[m].failed);
                st = LISA_ERR_BACKEND;
            }
    }
    free(bytes);
    free(rq);
    free(prompts);
    return st == LISA_OK ? 0 : 1;
}
