/* cmd-bench-queue.c: `lisa bench queue`: what the Redis job queue costs,
 * measured on a real server in one process.
 *
 *   (a) submit rate: --jobs tiny requests (the image by path) queued with
 *       lisa_queue_submit's pipelined FCALLs, jobs/s;
 *   (b) the queue's added latency: --e2e-jobs identical requests run once
 *       straight through the engine (lisa_engine_run, as lisa segment) and
 *       once through the queue on the same engine (submit them all, then
 *       lisa_worker_run with a feed until all are done, then fetch and
 *       decode every result), --rounds times alternating. Two figures,
 *       each as ms per job and as a share of the queued end-to-end time
 *       (the goal is under 5%):
 *         - the difference of the two runs: each queued run against the
 *           mean of the direct runs just before and just after it (so a
 *           drift of the machine's speed cancels), the median over the
 *           rounds with the lowest and highest; next to it the noise floor,
 *           the median difference between consecutive direct runs, which
 *           on a small shared machine is of the same size;
 *         - the queue's own time on the job's path: the submit, the feed's
 *           calls inside the worker loop (its Redis round trips, decoding
 *           and checking each job, storing each result) and the fetch and
 *           decode of the results, timed where they run (the median round).
 *       The results must be identical (status, ids, masks): exit 1
 *       otherwise.
 * One untimed request warms the engine (and its image cache) first, so
 * both timed runs see the same warm engine. Everything lives under a fresh
 * prefix (default "lisa-bench-<pid>"; one that already has keys is
 * refused), deleted at the end (SCAN MATCH prefix:* + UNLINK).
 *
 * It only measures; it asserts nothing but the equality of the results.
 * Deliberately not here: several workers or hosts (tests/queue, scripts). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli-queue.h"
#include "cli-util.h"
#include "commands.h"
#include "engine.h"
#include "image.h"
#include "job-codec.h"
#include "queue-feed.h"
#include "worker.h"

static void bench_queue_help(FILE *f) {
    fprintf(f,
            "usage: lisa bench queue --model DIR [--redis URL] [options]\n"
            "\n"
            "Measures the Redis job queue on a real server: the submit rate (pipelined),\n"
            "and the latency the queue adds to identical requests run through one engine\n"
            "directly and through the queue (submit, a worker loop on the same engine,\n"
            "results fetched), with a check that both give the same results. Uses a fresh\n"
            "key prefix and deletes its keys at the end.\n"
            "\n"
            "options:\n"
            "  --redis URL          the Redis server (default $LISA_REDIS, else\n"
            "                       redis://127.0.0.1:6379)\n"
            "  --redis-password-file FILE  the password (first line), instead of the URL's\n"
            "  --prefix P           key prefix to use and delete (default lisa-bench-PID;\n"
            "                       refused when keys under it exist)\n"
            "  --model DIR          converted LISA model directory (e.g. the tiny fixture)\n"
            "  --jobs N             jobs submitted for the submit rate (default 10000)\n"
            "  --e2e-jobs M         requests for the latency comparison (default 64)\n"
            "  --image IMG          the image of every request (default: a generated\n"
            "                       64x48 PNG)\n"
            "  --prompt TEXT        the instruction (default \"Please segment the object.\")\n"
            "  --answer TEXT        teacher-forced answer (default: generate)\n"
            "  --max-new-tokens N   generation limit (default 16)\n"
            "  --rounds N           direct and queued runs, alternating; the times are the\n"
            "                       medians (default 5, at most 16)\n"
            "  --batch N            KV-cache slots, and jobs in flight (default 8)\n"
            "  --token-budget N     tokens per engine step (default 512)\n"
            "  --device DEV         cpu (default), cuda or cuda:N\n"
            "  --dtype T            fp32, bf16 or fp16 (default: fp32 on cpu, bf16 on cuda)\n"
            "  --threads N          CPU threads (default: all cores)\n"
            "  -h, --help           show this help\n"
            "\n"
            "Exit status: 0 measured and the results are identical; 1 they differ or a\n"
            "step failed; 2 usage error; 69 Redis unreachable; 77 credentials refused.\n");
}

#define BQ_ROUNDS_MAX 16

static double bq_median(double *t, int n) {
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
            double x = t[j];
            t[j] = t[j - 1];
            t[j - 1] = x;
        }
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

static double bq_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* SCAN MATCH pattern of prefix:*, with the glob characters escaped. */
static void bq_pattern(const char *prefix, char *out, size_t n) {
    size_t k = 0;
    for (const char *p = prefix; *p && k + 4 < n; p++) {
        if (strchr("*?[]\\", *p)) out[k++] = '\\';
        out[k++] = *p;
    }
    if (k + 3 <= n) memcpy(out + k, ":*", 3);
    else out[n - 1] = 0;
}

/* Deletes every key under prefix (or, with count_only, counts them).
 * Returns how many, or -1 with lisa_error_get() set. */
static long bq_keys(lisa_redis *r, const char *prefix, int count_only) {
    char pat[600], cursor[32] = "0";
    bq_pattern(prefix, pat, sizeof pat);
    long total = 0;
    do {
        const char *argv[] = {"SCAN", cursor, "MATCH", pat, "COUNT", "1000"};
        redisReply *rep = lisa_redis_cmd(r, 6, argv, NULL);
        if (!rep) return -1;
        if (lisa_redis_check(r, rep, "SCAN") != LISA_OK || rep->type != REDIS_REPLY_ARRAY ||
            rep->elements != 2) {
            if (rep->type != REDIS_REPLY_ERROR) lisa_error_set(LISA_ERR_FORMAT, "SCAN: odd reply");
            freeReplyObject(rep);
            return -1;
        }
        snprintf(cursor, sizeof cursor, "%s", rep->element[0]->str ? rep->element[0]->str : "0");
        redisReply *keys = rep->element[1];
        if (keys->elements && !count_only) {
            const char **argv2 = malloc((keys->elements + 1) * sizeof *argv2);
            size_t *lens = malloc((keys->elements + 1) * sizeof *lens);
            if (!argv2 || !lens) {
                free(argv2);
                free(lens);
                freeReplyObject(rep);
                lisa_error_set(LISA_ERR_NOMEM, "out of memory");
                return -1;
            }
            argv2[0] = "UNLINK";
            lens[0] = 6;
            for (size_t i = 0; i < keys->elements; i++) {
                argv2[i + 1] = keys->element[i]->str;
                lens[i + 1] = keys->element[i]->len;
            }
            redisReply *u = lisa_redis_cmd(r, (int)keys->elements + 1, argv2, lens);
            free(argv2);
            free(lens);
            if (!u) {
                freeReplyObject(rep);
                return -1;
            }
            freeReplyObject(u);
        }
        total += (long)keys->elements;
        freeReplyObject(rep);
    } while (strcmp(cursor, "0"));
    return total;
}

/* Writes a small generated PNG into dir; path gets its name. */
static lisa_status bq_image_make(const char *dir, char *path, size_t n) {
    lisa_image img;
    LISA_TRY(lisa_image_init(&img, 64, 48));
    for (int y = 0; y < img.h; y++)
        for (int x = 0; x < img.w; x++) {
            uint8_t *p = img.rgb + 3 * ((size_t)y * (size_t)img.w + (size_t)x);
            int in = (x - 30) * (x - 30) + (y - 22) * (y - 22) < 150;
            p[0] = (uint8_t)(in ? 220 : 40 + x);
            p[1] = (uint8_t)(in ? 60 : 80 + y);
            p[2] = (uint8_t)(in ? 50 : 120);
        }
    snprintf(path, n, "%s/bench.png", dir);
    lisa_status st = lisa_image_write_png(&img, path);
    lisa_image_free(&img);
    return st;
}

/* 1 when two responses are the same result: status, ids, size, masks. */
static int bq_same(const lisa_response *a, const lisa_response *b) {
    if (a->status != b->status || a->n_ids != b->n_ids || a->n_masks != b->n_masks) return 0;
    if (a->n_ids && memcmp(a->ids, b->ids, (size_t)a->n_ids * sizeof *a->ids)) return 0;
    if (a->status != LISA_OK) return 1;
    if (a->w != b->w || a->h != b->h) return 0;
    size_t pix = (size_t)a->w * (size_t)a->h;
    for (int k = 0; k < a->n_masks; k++)
        if (memcmp(a->masks[k].mask, b->masks[k].mask, pix)) return 0;
    return 1;
}

typedef struct {
    const char *model, *device, *dtype, *image, *prompt, *answer;
    long threads, batch, budget, max_new, jobs, e2e, rounds;
    cli_queue_opts qo;
} bq_args;

/* (a): n jobs into a queue of their own, under prefix:rate. */
static lisa_status bq_submit_rate(lisa_redis *r, const char *prefix, const bq_args *a,
                                  double *secs) {
    char pfx[600];
    snprintf(pfx, sizeof pfx, "%s:rate", prefix);
    lisa_queue *q = NULL;
    LISA_TRY(lisa_queue_open(&q, r, pfx));
    lisa_job_request jr;
    memset(&jr, 0, sizeof jr);
    jr.image_path = (char *)"bench.png";
    jr.image_label = (char *)"bench.png";
    jr.prompt = (char *)a->prompt;
    uint8_t *req = NULL;
    size_t req_len = 0;
    lisa_queue_submit_item *items = calloc((size_t)a->jobs, sizeof *items);
    char (*cids)[24] = calloc((size_t)a->jobs, sizeof *cids);
    lisa_status st = items && cids ? LISA_OK : lisa_error_set(LISA_ERR_NOMEM, "out of memory");
    if (st == LISA_OK) st = lisa_job_request_encode(&jr, NULL, &req, &req_len);
    for (long i = 0; st == LISA_OK && i < a->jobs; i++) {
        snprintf(cids[i], sizeof cids[i], "r%ld", i);
        items[i] = (lisa_queue_submit_item){cids[i], req, req_len, "bench.png", a->prompt};
    }
    char bid[48];
    lisa_queue_submit_opts so = {.name = "bench-rate"};
    double t0 = bq_now();
    if (st == LISA_OK) st = lisa_queue_batch_new(q, &so, bid, sizeof bid);
    if (st == LISA_OK) st = lisa_queue_submit(q, bid, 0, items, (int)a->jobs, &so, NULL, NULL);
    *secs = bq_now() - t0;
    free(req);
    free(items);
    free(cids);
    lisa_queue_free(q);
    return st;
}

/* One queued run's times, seconds. */
typedef struct {
    double total, submit, fetch;   /* the whole run; submit; results fetched and decoded */
    lisa_worker_stats loop;        /* inside the worker loop */
} bq_queued_time;

/* (b): the same requests through the queue; responses[i] answers job i. */
static lisa_status bq_through_queue(lisa_queue *q, lisa_engine *e, const lisa_qfeed_params *fp,
                                    const char *image_path, const bq_args *a,
                                    lisa_response *out, bq_queued_time *t) {
    int m = (int)a->e2e;
    lisa_qfeed *f = NULL;
    LISA_TRY(lisa_qfeed_init(&f, fp));
    lisa_job_request jr;
    memset(&jr, 0, sizeof jr);
    jr.image_path = (char *)image_path;
    jr.image_label = (char *)image_path;
    jr.prompt = (char *)a->prompt;
    jr.answer = (char *)a->answer;
    uint8_t *req = NULL;
    size_t req_len = 0;
    lisa_queue_submit_item *items = calloc((size_t)m, sizeof *items);
    char (*cids)[24] = calloc((size_t)m, sizeof *cids);
    char (*ids)[64] = calloc((size_t)m, sizeof *ids);
    lisa_status st = items && cids && ids ? LISA_OK : lisa_error_set(LISA_ERR_NOMEM, "out of memory");
    if (st == LISA_OK) st = lisa_job_request_encode(&jr, NULL, &req, &req_len);
    for (int i = 0; st == LISA_OK && i < m; i++) {
        snprintf(cids[i], sizeof cids[i], "e%d", i);
        items[i] = (lisa_queue_submit_item){cids[i], req, req_len, image_path, a->prompt};
    }
    char bid[48];
    lisa_queue_submit_opts so = {.name = "bench-e2e"};
    double t0 = bq_now();
    if (st == LISA_OK) st = lisa_queue_batch_new(q, &so, bid, sizeof bid);
    if (st == LISA_OK) st = lisa_queue_submit(q, bid, 0, items, m, &so, ids, NULL);
    double t1 = bq_now();
    lisa_worker_opts wo = {.batch = (int)a->batch, .max_jobs = m, .stats = &t->loop};
    if (st == LISA_OK) st = lisa_worker_run(e, f, &wo);
    double t2 = bq_now();
    for (int i = 0; st == LISA_OK && i < m; i++) {
        uint8_t *buf = NULL;
        size_t len = 0;
        st = lisa_queue_result_get(q, ids[i], &buf, &len);
        if (st == LISA_OK) st = lisa_job_result_decode(buf, len, NULL, &out[i], NULL);
        free(buf);
        if (st != LISA_OK) {
            char why[512];
            snprintf(why, sizeof why, "%s", lisa_error_get());
            st = lisa_error_set(st, "result of job %s: %s", ids[i], why);
        }
    }
    double t3 = bq_now();
    t->total = t3 - t0;
    t->submit = t1 - t0;
    t->fetch = t3 - t2;
    free(req);
    free(items);
    free(cids);
    free(ids);
    lisa_qfeed_free(f);
    return st;
}

int cmd_bench_queue(int argc, char **argv) {
    bq_args a = {.device = "cpu", .prompt = "Please segment the object.", .batch = 8,
                 .max_new = 16, .jobs = 10000, .e2e = 64, .rounds = 5};
    const cli_opt opts[] = {
        CLI_QUEUE_OPTS(&a.qo),
        {"--model", CLI_STRING, &a.model},        {"--device", CLI_STRING, &a.device},
        {"--dtype", CLI_STRING, &a.dtype},        {"--threads", CLI_COUNT, &a.threads},
        {"--batch", CLI_COUNT, &a.batch},         {"--token-budget", CLI_COUNT, &a.budget},
        {"--max-new-tokens", CLI_COUNT, &a.max_new}, {"--jobs", CLI_COUNT, &a.jobs},
        {"--e2e-jobs", CLI_COUNT, &a.e2e},        {"--image", CLI_STRING, &a.image},
        {"--prompt", CLI_STRING, &a.prompt},      {"--answer", CLI_STRING, &a.answer},
        {"--rounds", CLI_COUNT, &a.rounds},
    };
    int pr = cli_opts_parse("bench queue", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]),
                            bench_queue_help);
    if (pr) return pr > 0 ? 0 : CLI_EXIT_USAGE;
    if (!a.model || a.batch < 1 || a.e2e < 1 || a.jobs < 1 || a.max_new < 1 || a.rounds < 1 ||
        a.rounds > BQ_ROUNDS_MAX || a.jobs > INT_MAX || a.e2e > INT_MAX) {
        fprintf(stderr, "lisa bench queue: give --model; --jobs, --e2e-jobs, --batch, "
                        "--max-new-tokens and --rounds (at most %d) must be at least 1 (see "
                        "--help)\n", BQ_ROUNDS_MAX);
        return CLI_EXIT_USAGE;
    }
    char prefix[256];
    if (a.qo.prefix) snprintf(prefix, sizeof prefix, "%s", a.qo.prefix);
    else snprintf(prefix, sizeof prefix, "lisa-bench-%d", (int)getpid());
    a.qo.prefix = prefix;
    lisa_engine_params p;
    if (cli_engine_params(&p, a.model, a.device, a.dtype, a.threads)) return CLI_EXIT_USAGE;
    p.max_batch = (int)a.batch;
    p.token_budget = (int)a.budget;
    p.max_new_tokens = (int)a.max_new;

    lisa_redis *r = NULL;
    lisa_queue *q = NULL;
    int code = cli_queue_connect("bench queue", &a.qo, &r, &q);
    if (code) return code;
    long existing = bq_keys(r, prefix, 1);
    if (existing != 0) {
        if (existing < 0) fprintf(stderr, "lisa bench queue: %s\n", lisa_error_get());
        else fprintf(stderr, "lisa bench queue: prefix %s already has %ld keys; give a fresh "
                             "--prefix (the bench deletes its keys at the end)\n", prefix, existing);
        cli_queue_close(r, q);
        return existing < 0 ? cli_queue_exit_code(LISA_ERR_UNAVAILABLE) : CLI_EXIT_USAGE;
    }
    char tmpdir[] = "/tmp/lisa-bench-queue-XXXXXX", image[PATH_MAX], root[PATH_MAX];
    int made_dir = 0;
    lisa_status st = lisa_queue_setup(q);
    if (st == LISA_OK && !a.image) {
        if (!mkdtemp(tmpdir)) st = lisa_error_set(LISA_ERR_IO, "cannot create a temporary folder");
        else made_dir = 1;
        if (st == LISA_OK) st = bq_image_make(tmpdir, image, sizeof image);
    } else if (st == LISA_OK && !realpath(a.image, image)) {
        st = lisa_error_set(LISA_ERR_IO, "%s: cannot be read", a.image);
    }
    if (st == LISA_OK) {
        snprintf(root, sizeof root, "%s", image);
        char *slash = strrchr(root, '/');
        if (slash && slash != root) *slash = 0;
        else snprintf(root, sizeof root, "/");
    }
    double t_submit = 0;
    if (st == LISA_OK) st = bq_submit_rate(r, prefix, &a, &t_submit);

    int m = (int)a.e2e;
    lisa_request *reqs = calloc((size_t)m, sizeof *reqs);
    lisa_response *direct = calloc((size_t)m, sizeof *direct),
                  *queued = calloc((size_t)m, sizeof *queued);
    if (st == LISA_OK && (!reqs || !direct || !queued))
        st = lisa_error_set(LISA_ERR_NOMEM, "out of memory");
    for (int i = 0; st == LISA_OK && i < m; i++)
        reqs[i] = (lisa_request){.image_path = image, .prompt = a.prompt, .answer = a.answer};
    lisa_engine *e = NULL;
    if (st == LISA_OK) st = lisa_engine_init(&e, &p);
    double td[BQ_ROUNDS_MAX + 1];
    bq_queued_time tq[BQ_ROUNDS_MAX];
    if (st == LISA_OK) {
        lisa_response warm;
        memset(&warm, 0, sizeof warm);
        st = lisa_engine_run(e, reqs, 1, &warm, NULL, NULL);
        lisa_response_free(&warm);
    }
    const char *roots[1] = {root};
    char dev[32];
    if (p.backend == LISA_BACKEND_CPU) snprintf(dev, sizeof dev, "cpu");
    else snprintf(dev, sizeof dev, "cuda:%d", p.device);
    lisa_qfeed_params fp;
    memset(&fp, 0, sizeof fp);
    fp.redis.url = lisa_redis_url_default(a.qo.redis);
    fp.redis.password_file = a.qo.password_file ? a.qo.password_file
                                                : getenv("LISA_REDIS_PASSWORD_FILE");
    if (fp.redis.password_file && !*fp.redis.password_file) fp.redis.password_file = NULL;
    fp.prefix = prefix;
    fp.device = dev;
    fp.batch = (int)a.batch;
    fp.image_roots = roots;
    fp.n_image_roots = 1;
    /* direct, queued, direct, ..., queued, direct: each queued run sits
     * between two direct ones; every run's results are compared with the
     * first direct run's */
    int same = 0, rounds = (int)a.rounds;
    for (int k = 0; st == LISA_OK && k <= rounds; k++) {
        for (int i = 0; i < m; i++) lisa_response_free(&queued[i]);
        double t0 = bq_now();
        st = lisa_engine_run(e, reqs, m, k ? queued : direct, NULL, NULL);
        td[k] = bq_now() - t0;
        if (st == LISA_OK && k) {
            same = 0;
            for (int i = 0; i < m; i++) same += bq_same(&direct[i], &queued[i]);
            if (same != m) break;
            for (int i = 0; i < m; i++) lisa_response_free(&queued[i]);
        }
        if (st != LISA_OK || k == rounds) break;
        st = bq_through_queue(q, e, &fp, image, &a, queued, &tq[k]);
        same = 0;
        for (int i = 0; st == LISA_OK && i < m; i++) same += bq_same(&direct[i], &queued[i]);
        if (same != m) break;
    }
    if (st == LISA_OK && same != m) {
        fprintf(stderr, "lisa bench queue: %d of %d results differ between the engine and the "
                        "queue (status, ids or masks)\n", m - same, m);
    } else if (st == LISA_OK) {
        /* per round: direct (the mean of its two), queued, their
         * difference, the queue's own time, the engine's time in the loop,
         * direct minus the next direct; each column's median */
        double col[6][BQ_ROUNDS_MAX], lo = 0, hi = 0, med[6];
        for (int k = 0; k < rounds; k++) {
            col[0][k] = 0.5 * (td[k] + td[k + 1]);
            col[1][k] = tq[k].total;
            col[2][k] = tq[k].total - col[0][k];
            col[3][k] = tq[k].submit + tq[k].loop.feed_s + tq[k].fetch;
            col[4][k] = tq[k].loop.engine_s;
            col[5][k] = td[k + 1] > td[k] ? td[k + 1] - td[k] : td[k] - td[k + 1];
            lo = k == 0 || col[2][k] < lo ? col[2][k] : lo;
            hi = k == 0 || col[2][k] > hi ? col[2][k] : hi;
        }
        for (int c = 0; c < 6; c++) med[c] = bq_median(col[c], rounds);
        double per = 1e3 / m, ms_q = per * med[1];
        double pct = ms_q > 0 ? 100.0 / ms_q : 0.0;
        printf("lisa bench queue: Redis %s, prefix %s, %s, batch %ld, medians of %d round%s\n",
               lisa_redis_where(r), prefix, a.device, a.batch, rounds, rounds == 1 ? "" : "s");
        printf("%-30s %7s %9s  %s\n", "measure", "jobs", "seconds", "result");
        printf("%-30s %7ld %9.3f  %.0f jobs/s\n", "submit (pipelined)", a.jobs, t_submit,
               (double)a.jobs / t_submit);
        printf("%-30s %7d %9.3f  %.2f ms/job\n", "engine, direct", m, med[0], per * med[0]);
        printf("%-30s %7d %9.3f  %.2f ms/job\n", "engine through the queue", m, med[1], ms_q);
        printf("%-30s %7s %9.3f  %.2f ms/job\n", "  of which in the engine", "", med[4],
               per * med[4]);
        printf("%-30s %7s %9.3f  %.2f ms/job, %.1f%% of end to end (goal < 5%%)\n",
               "  of which in the queue", "", med[3], per * med[3], pct * per * med[3]);
        printf("%-30s %7s %9.3f  %.2f ms/job, %.1f%% of end to end (rounds: %.1f%% .. "
               "%.1f%%)\n", "queued minus direct", "", med[2], per * med[2],
               pct * per * med[2], pct * per * lo, pct * per * hi);
        printf("%-30s %7s %9.3f  %.2f ms/job, %.1f%% (the noise floor)\n",
               "direct minus the next direct", "", med[5], per * med[5], pct * per * med[5]);
        printf("%-30s %7s %9s  %s: %d of %d per round (status, ids, masks)\n",
               "results identical", "", "", "yes", same, m);
        fflush(stdout);
    } else {
        fprintf(stderr, "lisa bench queue: %s: %s\n", lisa_status_str(st), lisa_error_get());
    }
    for (int i = 0; i < m && direct && queued; i++) {
        lisa_response_free(&direct[i]);
        lisa_response_free(&queued[i]);
    }
    free(reqs);
    free(direct);
    free(queued);
    lisa_engine_free(e);
    if (lisa_redis_ok(r) && bq_keys(r, prefix, 0) < 0)
        fprintf(stderr, "lisa bench queue: could not delete the keys under %s: %s\n", prefix,
                lisa_error_get());
    if (made_dir) {
        unlink(image);
        rmdir(tmpdir);
    }
    cli_queue_close(r, q);
    if (st != LISA_OK) return st == LISA_ERR_UNAVAILABLE ? cli_queue_exit_code(st) : CLI_EXIT_FAILED;
    return same == m ? CLI_EXIT_OK : CLI_EXIT_FAILED;
}
