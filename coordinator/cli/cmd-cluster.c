/* cmd-cluster.c: `lisa cluster`: LISA over MPI ranks, launched by mpirun
 * (coordinator/cluster/cluster.h), on the manifest and output files of
 * `lisa segment` (cli-jobs.h), or, with --redis, serving the Redis job
 * queue as one worker (queue-feed.h, the code `lisa worker` uses); `lisa
 * cluster plan` (cmd-cluster-plan.c) sizes a job without MPI.
 *
 * Every rank parses the same command line; only rank 0 opens the manifest
 * and writes results, or connects to Redis. In queue mode the job ends
 * with --max-jobs, --exit-when-empty or SIGUSR1 (mpirun forwards it:
 * drain, like a worker's SIGTERM); SIGTERM keeps the cluster's meaning (a
 * rank died or mpirun stops the job): every job in the cluster fails
 * retryable, so another worker runs it. Deliberately not here: the runtime
 * itself. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli-jobs.h"
#include "cli-util.h"
#include "cli-worker.h"
#include "cluster.h"
#include "commands.h"

static void cluster_help(FILE *f) {
    fprintf(f,
            "usage: mpirun -np N lisa cluster [--config FILE] --manifest JOBS.jsonl --out DIR [options]\n"
            "       mpirun -np N lisa cluster [--config FILE] --image IMG --prompt TEXT [options]\n"
            "       mpirun -np N lisa cluster [--config FILE] --redis URL [options]\n"
            "       lisa cluster plan --help\n"
            "\n"
            "Runs LISA across MPI ranks: rank 0 coordinates, ranks 1..P hold the LLM's\n"
            "layers as pipeline stages, rank P+1 (or rank 0 with --vision coordinator) the\n"
            "vision parts. Results are those of `lisa segment` on the same requests.\n"
            "Flags override the configuration file's keys (docs/cluster.md).\n"
            "\n"
            "options:\n"
            "  --config FILE        JSON configuration (configs/cluster-*.json)\n"
            "  --model DIR          converted LISA model directory (\"model\")\n"
            "  --stages P           LLM pipeline stages (\"stages\", default 1)\n"
            "  --layers SPEC        balanced | counts 20,20 | ranges 0-19,20-39 (\"layers\")\n"
            "  --micro-batches M    micro-batches in flight (\"micro_batches\", default P)\n"
            "  --token-budget N     tokens per micro-batch (\"token_budget\", default 512)\n"
            "  --slots N            KV-cache sequences per stage (\"slots\", default 8)\n"
            "  --context N          positions per sequence (\"context\", default 1024)\n"
            "  --max-new-tokens N   generation limit (\"max_new_tokens\", default 512)\n"
            "  --device DEV         cpu or cuda (\"device\"); GPUs per rank from \"gpus\" or\n"
            "                       the local rank\n"
            "  --dtype T            fp32, bf16 or fp16 (\"dtype\")\n"
            "  --threads N          CPU threads per rank (\"threads\", default all cores)\n"
            "  --vision WHERE       own (rank P+1) or coordinator (rank 0) (\"vision\")\n"
            "  --startup-timeout S  seconds for every rank to load and report (default 300)\n"
            "  --stall-timeout S    end the job when no rank answered for S seconds with\n"
            "                       requests in flight (\"stall_timeout_s\", default 120, 0 never)\n"
            "  --manifest FILE      JSONL requests, as lisa segment\n"
            "  --out DIR            results as lisa segment: DIR/<custom_id>/, DIR/results.jsonl\n"
            "  --image IMG --prompt TEXT [--answer TEXT]  one request\n"
            "  --json               print each result as JSON on stdout\n"
            "  --stats FILE         per-rank statistics as JSON\n"
            "  --quiet-stats        no statistics table on stderr\n"
            "  --max-image-bytes N, --max-image-pixels N  hostile-image limits\n"
            "  -h, --help           show this help\n"
            "\n"
            "Queue mode (instead of --manifest or --image): the cluster serves the Redis\n"
            "job queue as one worker, as `lisa worker` does; SIGUSR1 to mpirun drains\n"
            "it (no new jobs, the ones in flight finish and are stored).\n"
            "  --redis URL          serve the queue at URL (see `lisa worker --help`)\n");
    fputs("  --redis-password-file FILE, --prefix P  as `lisa worker`\n"
          CLI_WORKER_HELP, f);
    fprintf(f,
            "\n"
            "Exit status: 0 every request done (queue mode: stopped cleanly); 1 a\n"
            "request failed or a rank died (every request is still in the results,\n"
            "failed with the reason; queue jobs go back to the queue); 2 usage,\n"
            "configuration or start-up error (naming the rank and host; in queue mode\n"
            "also Redis unreachable or refusing the credentials).\n");
}

typedef struct {
    const char *manifest, *image, *prompt, *answer, *out;
    int json, total;
    cli_job_source src;
    cli_job_sink sink;
} cluster_cli;

static int cluster_begin(void *user) {
    cluster_cli *c = user;
    if (cli_job_source_open(&c->src, "cluster", c->manifest, c->image, c->prompt, c->answer,
                            &c->total))
        return 1;
    return cli_job_sink_open(&c->sink, "cluster", c->out, c->json, c->total);
}

static int cluster_next(void *user, lisa_request *rq, void **tag) {
    cluster_cli *c = user;
    for (;;) {
        lisa_manifest_item *it = calloc(1, sizeof *it);
        lisa_status ps = LISA_OK;
        if (!it || !cli_job_source_next(&c->src, it, &ps)) {
            free(it);
            return 0;
        }
        if (ps == LISA_OK) {
            *rq = (lisa_request){.id = it->custom_id, .image_path = it->image, .prompt = it->prompt,
                                 .answer = it->answer, .max_new_tokens = it->max_new_tokens};
            *tag = it;
            return 1;
        }
        lisa_response bad;
        memset(&bad, 0, sizeof bad);
        bad.status = ps;
        snprintf(bad.error, sizeof bad.error, "%s", lisa_error_get());
        cli_job_sink_write(&c->sink, it, &bad);
        lisa_manifest_item_free(it);
        free(it);
    }
}

static void cluster_done(void *user, void *tag, const lisa_response *r) {
    cluster_cli *c = user;
    lisa_manifest_item *it = tag;
    cli_job_sink_write(&c->sink, it, r);
    lisa_manifest_item_free(it);
    free(it);
}

static void cluster_failing(void *user, const char *why) {
    cluster_cli *c = user;
    c->sink.quiet_failures = 1;
    fprintf(stderr, "lisa cluster: every unfinished request fails: %s\n", why);
}

/* ---- queue mode: the jobs come from Redis ---- */

static volatile int g_cluster_drain;

static void cluster_on_usr1(int sig) {
    (void)sig;
    g_cluster_drain = 1;
}

typedef struct {
    cli_worker_opts wo;
    lisa_qfeed_params fp;
    lisa_qfeed *f;
    char device[64];
    int window, failing, code;   /* code: exit status of a failed begin */
    int64_t last_job_ms;
} cluster_queue;

static int64_t cluster_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int cluster_q_begin(void *user) {
    cluster_queue *q = user;
    q->code = cli_worker_probe("cluster", &q->wo, &q->fp.redis, &g_cluster_drain);
    if (q->code) return 1;
    lisa_status st = lisa_qfeed_init(&q->f, &q->fp);
    if (st != LISA_OK) {
        fprintf(stderr, "lisa cluster: %s\n", lisa_error_get());
        q->code = cli_worker_exit_code(st);
        return 1;
    }
    if (q->wo.max_jobs > 0) lisa_qfeed_set_limit(q->f, q->wo.max_jobs);
    q->last_job_ms = cluster_now_ms();
    fprintf(stderr, "lisa cluster: %s on %s, window %d, queue %s at %s\n",
            lisa_qfeed_worker_name(q->f), q->device, q->window,
            q->fp.prefix ? q->fp.prefix : "lisa", lisa_qfeed_where(q->f));
    fflush(stderr);
    return 0;
}

/* 1 a job; -1 none now (the coordinator asks again); 0 no more: stopping,
 * failing, the job limit, or --exit-when-empty with the queue empty. */
static int cluster_q_next(void *user, lisa_request *rq, void **tag) {
    cluster_queue *q = user;
    if (!q->f) return 0;
    int busy = lisa_qfeed_in_flight(q->f) > 0;
    int k = lisa_qfeed_next(q->f, busy ? 0 : 200, rq, tag);
    if (k == 1) {
        q->last_job_ms = cluster_now_ms();
        return 1;
    }
    if (k < 0 || q->failing) return 0;
    if (q->wo.exit_when_empty && !busy && lisa_qfeed_in_flight(q->f) == 0 &&
        cluster_now_ms() - q->last_job_ms >= 1000) {
        if (lisa_qfeed_queue_empty(q->f)) return 0;
        q->last_job_ms = cluster_now_ms();
    }
    return -1;
}

static void cluster_q_done(void *user, void *tag, const lisa_response *r) {
    cluster_queue *q = user;
    lisa_qfeed_done(q->f, tag, r);
}

/* A rank failed: the jobs in the cluster fail retryable (their responses
 * come as backend failures); the ones started and not handed out yet come
 * out of next() once more, then no more. */
static void cluster_q_failing(void *user, const char *why) {
    cluster_queue *q = user;
    q->failing = 1;
    g_cluster_drain = 1;
    fprintf(stderr, "lisa cluster: every unfinished job goes back to the queue: %s\n", why);
}

static void cluster_q_tick(void *user) {
    cluster_queue *q = user;
    void *cancel[64];
    if (q->f) lisa_qfeed_tick(q->f, cancel, 64);
}

/* After the cluster ended: stores what still waits, then leaves. */
static void cluster_q_end(cluster_queue *q) {
    if (!q->f) return;
    g_cluster_drain = 1;
    void *cancel[64];
    while (lisa_qfeed_in_flight(q->f) > 0) {
        lisa_qfeed_tick(q->f, cancel, 64);
        if (lisa_qfeed_in_flight(q->f) > 0) usleep(20000);
    }
    int64_t done = 0, failed = 0, stale = 0;
    lisa_qfeed_counts(q->f, &done, &failed, &stale);
    fprintf(stderr, "lisa cluster: %s stopped: %lld done, %lld failed, %lld not counted\n",
            lisa_qfeed_worker_name(q->f), (long long)done, (long long)failed, (long long)stale);
    lisa_qfeed_free(q->f);
    q->f = NULL;
}

static int cluster_set_str(char *dst, size_t n, const char *val, const char *opt) {
    if (!val) return 0;
    if (strlen(val) >= n) {
        fprintf(stderr, "lisa cluster: %s value too long\n", opt);
        return -1;
    }
    memcpy(dst, val, strlen(val) + 1);
    return 0;
}

int cmd_cluster_run(int argc, char **argv) {
    const char *config = NULL, *model = NULL, *layers = NULL, *device = NULL, *dtype = NULL,
               *vision = NULL, *stats = NULL;
    long stages = -1, mbs = -1, budget = -1, slots = -1, ctx = -1, max_new = -1, threads = -1,
         timeout = -1, stall = -1, max_bytes = 0, max_pixels = 0;
    int quiet = 0;
    cluster_cli cli;
    memset(&cli, 0, sizeof cli);
    cluster_queue qu;
    memset(&qu, 0, sizeof qu);
    if (cli_worker_take_roots("cluster", &argc, argv, &qu.wo)) return 2;
    const cli_opt opts[] = {
        CLI_WORKER_OPTS(&qu.wo),
        {"--config", CLI_STRING, &config},     {"--model", CLI_STRING, &model},
        {"--stages", CLI_COUNT, &stages},      {"--layers", CLI_STRING, &layers},
        {"--micro-batches", CLI_COUNT, &mbs},  {"--token-budget", CLI_COUNT, &budget},
        {"--slots", CLI_COUNT, &slots},        {"--context", CLI_COUNT, &ctx},
        {"--max-new-tokens", CLI_COUNT, &max_new}, {"--device", CLI_STRING, &device},
        {"--dtype", CLI_STRING, &dtype},       {"--threads", CLI_COUNT, &threads},
        {"--vision", CLI_STRING, &vision},     {"--startup-timeout", CLI_COUNT, &timeout},
        {"--stall-timeout", CLI_COUNT, &stall},
        {"--manifest", CLI_STRING, &cli.manifest}, {"--out", CLI_STRING, &cli.out},
        {"--image", CLI_STRING, &cli.image},   {"--prompt", CLI_STRING, &cli.prompt},
        {"--answer", CLI_STRING, &cli.answer}, {"--json", CLI_FLAG, &cli.json},
        {"--stats", CLI_STRING, &stats},       {"--quiet-stats", CLI_FLAG, &quiet},
        {"--max-image-bytes", CLI_COUNT, &max_bytes},
        {"--max-image-pixels", CLI_COUNT, &max_pixels},
    };
    int pr = cli_opts_parse("cluster", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]),
                            cluster_help);
    if (pr) return pr > 0 ? 0 : 2;
    int queue = qu.wo.q.redis != NULL;
    if (queue && (cli.manifest || cli.image || cli.prompt || cli.answer || cli.out || cli.json)) {
        fprintf(stderr, "lisa cluster: --redis serves the queue: no --manifest, --image, --prompt, "
                        "--answer, --out or --json with it\n");
        return 2;
    }
    if (!queue && (qu.wo.n_roots || qu.wo.name || qu.wo.lease || qu.wo.heartbeat ||
                   qu.wo.backoff || qu.wo.connect_timeout || qu.wo.max_message_bytes ||
                   qu.wo.max_jobs || qu.wo.exit_when_empty || qu.wo.q.prefix ||
                   qu.wo.q.password_file)) {
        fprintf(stderr, "lisa cluster: the queue options need --redis URL (see --help)\n");
        return 2;
    }
    if (!queue && ((!cli.manifest && (!cli.image || !cli.prompt)) ||
                   (cli.manifest && (cli.image || cli.prompt)))) {
        fprintf(stderr, "lisa cluster: give --manifest or --image with --prompt, or --redis URL "
                        "(see --help)\n");
        return 2;
    }
    if (queue && cli_worker_params("cluster", &qu.wo, &qu.fp, &g_cluster_drain)) return 2;
    if (cli.manifest && !cli.out) {
        fprintf(stderr, "lisa cluster: --manifest needs --out DIR\n");
        return 2;
    }
    lisa_cluster_config c;
    lisa_cluster_config_defaults(&c);
    if (config && lisa_cluster_config_load(&c, config) != LISA_OK) {
        fprintf(stderr, "lisa cluster: %s\n", lisa_error_get());
        return 2;
    }
    if (cluster_set_str(c.model_dir, sizeof c.model_dir, model, "--model") ||
        cluster_set_str(c.layers, sizeof c.layers, layers, "--layers") ||
        cluster_set_str(c.device, sizeof c.device, device, "--device") ||
        cluster_set_str(c.dtype, sizeof c.dtype, dtype, "--dtype"))
        return 2;
    if (stages >= 0) c.stages = (int)stages;
    if (mbs >= 0) c.micro_batches = (int)mbs;
    if (budget >= 0) c.token_budget = (int)budget;
    if (slots >= 0) c.slots = (int)slots;
    if (ctx >= 0) c.max_ctx = (int)ctx;
    if (max_new >= 0) c.max_new_tokens = (int)max_new;
    if (threads >= 0) c.threads = (int)threads;
    if (timeout >= 0) c.startup_timeout_s = (double)timeout;
    if (stall >= 0) c.stall_timeout_s = (double)stall;
    if (vision) {
        if (!strcmp(vision, "own")) c.vision = LISA_CLUSTER_VISION_OWN;
        else if (!strcmp(vision, "coordinator")) c.vision = LISA_CLUSTER_VISION_COORDINATOR;
        else {
            fprintf(stderr, "lisa cluster: --vision expects own or coordinator, got '%s'\n", vision);
            return 2;
        }
    }
    if (!*c.model_dir) {
        fprintf(stderr, "lisa cluster: no model: give --model or a --config with \"model\"\n");
        return 2;
    }
    if (lisa_cluster_config_check(&c) != LISA_OK) {
        fprintf(stderr, "lisa cluster: %s\n", lisa_error_get());
        return 2;
    }
    lisa_cluster_options o;
    memset(&o, 0, sizeof o);
    o.keep_images = cli.out != NULL;
    o.stats_path = stats;
    o.print_stats = !quiet;
    o.limits.max_file_bytes = (size_t)max_bytes;
    o.limits.max_pixels = (uint64_t)max_pixels;
    o.switches = cli_backend_params(LISA_BACKEND_CPU, 0, 0);
    if (queue) {
        o.window = 2 * c.slots;
        qu.window = o.window;
        snprintf(qu.device, sizeof qu.device, "cluster %s, %d stage%s", *c.device ? c.device : "cpu",
                 c.stages, c.stages == 1 ? "" : "s");
        qu.fp.device = qu.device;
        qu.fp.batch = qu.window;
        qu.fp.limits.max_image_bytes = (size_t)max_bytes;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = cluster_on_usr1;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGUSR1, &sa, NULL);
        lisa_cluster_jobs jobs = {.begin = cluster_q_begin, .next = cluster_q_next,
                                  .done = cluster_q_done, .failing = cluster_q_failing,
                                  .tick = cluster_q_tick, .user = &qu};
        int code = lisa_cluster_main(&argc, &argv, &c, &jobs, &o);
        cluster_q_end(&qu);
        if (qu.code) return qu.code;
        /* failed jobs are the queue's business, stored with their reasons */
        return code == 1 ? 0 : code;
    }
    lisa_cluster_jobs jobs = {.begin = cluster_begin, .next = cluster_next, .done = cluster_done,
                              .failing = cluster_failing, .user = &cli};
    int code = lisa_cluster_main(&argc, &argv, &c, &jobs, &o);
    if (cli.sink.cmd) cli_job_sink_close(&cli.sink);
    cli_job_source_close(&cli.src);
    if (code == 0 && cli.sink.failures) code = 1;
    return code;
}

int cmd_cluster(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "plan")) return cmd_cluster_plan(argc - 1, argv + 1);
    return cmd_cluster_run(argc, argv);
}
