/* cmd-worker.c: `lisa worker`: one engine serving the Redis job queue
 * (coordinator/queue/worker.h over queue-feed.h) until it is stopped.
 *
 * Start-up: Redis is tried for --connect-timeout (exit 69 when it stays
 * unreachable, 77 when it refuses our credentials), then the model is
 * loaded (exit 1 naming the file), then the worker registers (functions,
 * groups: exit 77 when the ACL user may not) and prints one line. SIGTERM
 * or SIGINT drains: no new jobs, the ones in flight finish and their
 * results are stored, the heartbeat says "stopping", the worker record is
 * removed, exit 0; a second signal exits at once (130), leaving its jobs to
 * be reclaimed after the lease.
 *
 * Deliberately not here: the loop (worker.c), the queue's semantics
 * (queue-feed.c, queue.lua), results on disk (`lisa result`). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli-worker.h"
#include "commands.h"
#include "engine.h"
#include "worker.h"

static void worker_help(FILE *f) {
    fprintf(f,
            "usage: lisa worker --model DIR [--redis URL] [options]\n"
            "\n"
            "Serves the Redis job queue with one LISA engine: takes jobs as engine slots\n"
            "free up (continuous batching), stores each result as soon as it is done,\n"
            "renews its jobs' leases, sends heartbeats (see `lisa workers`) and reclaims\n"
            "jobs of dead workers. SIGTERM or Ctrl-C drains (no new jobs, in-flight ones\n"
            "finish and are stored) and exits 0; a second one exits at once.\n"
            "\n"
            "options:\n"
            CLI_QUEUE_HELP
            "  --model DIR          converted LISA model directory (docs/model-format.md)\n"
            "  --device DEV         cpu (default), cuda or cuda:N\n"
            "  --dtype T            fp32, bf16 or fp16 (default: fp32 on cpu, bf16 on cuda)\n"
            "  --quantize Q         q8_0 or q4_0: quantize the LLM's projections and LM\n"
            "                       head at load (a converted --quantize model needs no flag)\n"
            "  --threads N          CPU threads (default: all cores)\n"
            "  --batch N            jobs run together: KV-cache slots (default 8)\n"
            "  --token-budget N     tokens per engine step (default 512)\n"
            "  --max-new-tokens N   generation limit for jobs that give none (default 512)\n"
            "  --max-image-bytes N  refuse images larger than N bytes (inline default 32 MiB,\n"
            "                       files 100 MB)\n"
            CLI_WORKER_HELP
            "  -h, --help           show this help\n"
            "\n"
            "Exit status: 0 stopped cleanly; 1 the model could not be loaded or the\n"
            "backend failed (its jobs are retried elsewhere); 2 usage error; 69 Redis\n"
            "unreachable at start-up; 77 Redis refused the credentials or the ACL user may\n"
            "not serve the queue; 130 stopped by a second signal.\n");
}

static volatile int g_worker_stop;

static void worker_on_signal(int sig) {
    (void)sig;
    if (g_worker_stop) _exit(130);
    g_worker_stop = 1;
}

static void worker_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = worker_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

int cmd_worker(int argc, char **argv) {
    cli_worker_opts wo;
    memset(&wo, 0, sizeof wo);
    if (cli_worker_take_roots("worker", &argc, argv, &wo)) return CLI_EXIT_USAGE;
    const char *model = NULL, *device = "cpu", *dtype_s = NULL, *quant_s = NULL;
    long threads = 0, batch = 8, budget = 0, max_new = 512, max_img = 0;
    const cli_opt opts[] = {
        CLI_WORKER_OPTS(&wo),
        {"--model", CLI_STRING, &model},          {"--device", CLI_STRING, &device},
        {"--dtype", CLI_STRING, &dtype_s}, {"--quantize", CLI_STRING, &quant_s},        {"--threads", CLI_COUNT, &threads},
        {"--batch", CLI_COUNT, &batch},           {"--token-budget", CLI_COUNT, &budget},
        {"--max-new-tokens", CLI_COUNT, &max_new}, {"--max-image-bytes", CLI_COUNT, &max_img},
    };
    int pr = cli_opts_parse("worker", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]),
                            worker_help);
    if (pr) return pr > 0 ? 0 : CLI_EXIT_USAGE;
    if (!model) {
        fprintf(stderr, "lisa worker: give --model DIR (see --help)\n");
        return CLI_EXIT_USAGE;
    }
    if (batch < 1 || max_new < 1) {
        fprintf(stderr, "lisa worker: --batch and --max-new-tokens must be at least 1\n");
        return CLI_EXIT_USAGE;
    }
    lisa_qfeed_params fp;
    if (cli_worker_params("worker", &wo, &fp, &g_worker_stop)) return CLI_EXIT_USAGE;
    lisa_engine_params p;
    if (cli_engine_params(&p, model, device, dtype_s, threads)) return CLI_EXIT_USAGE;
    if (quant_s && cli_parse_quant(quant_s, &p.quantize)) return CLI_EXIT_USAGE;
    p.max_batch = (int)batch;
    p.token_budget = (int)budget;
    p.max_new_tokens = (int)max_new;
    p.limits.max_file_bytes = (size_t)max_img;
    char dev[32];
    if (p.backend == LISA_BACKEND_CPU) snprintf(dev, sizeof dev, "cpu");
    else snprintf(dev, sizeof dev, "cuda:%d", p.device);
    fp.device = dev;
    fp.batch = (int)batch;
    fp.limits.max_image_bytes = (size_t)max_img;

    worker_signals();
    int code = cli_worker_probe("worker", &wo, &fp.redis, &g_worker_stop);
    if (code) return code;
    lisa_engine *e = NULL;
    lisa_status st = lisa_engine_init(&e, &p);
    if (st != LISA_OK) {
        fprintf(stderr, "lisa worker: %s: %s\n", lisa_status_str(st), lisa_error_get());
        return CLI_EXIT_FAILED;
    }
    lisa_qfeed *f = NULL;
    st = lisa_qfeed_init(&f, &fp);
    if (st != LISA_OK) {
        fprintf(stderr, "lisa worker: %s\n", lisa_error_get());
        code = g_worker_stop ? CLI_EXIT_OK : cli_worker_exit_code(st);
        lisa_engine_free(e);
        return code;
    }
    fprintf(stderr, "lisa worker: %s on %s, batch %ld, queue %s at %s\n", lisa_qfeed_worker_name(f),
            dev, batch, fp.prefix ? fp.prefix : "lisa", lisa_qfeed_where(f));
    fflush(stderr);
    lisa_worker_opts o = {.batch = (int)batch, .max_jobs = wo.max_jobs,
                          .exit_when_empty = wo.exit_when_empty};
    st = lisa_worker_run(e, f, &o);
    if (st != LISA_OK)
        fprintf(stderr, "lisa worker: %s: %s; stopped taking jobs\n", lisa_status_str(st),
                lisa_error_get());
    int64_t done = 0, failed = 0, stale = 0;
    lisa_qfeed_counts(f, &done, &failed, &stale);
    fprintf(stderr, "lisa worker: %s stopped: %lld done, %lld failed, %lld not counted\n",
            lisa_qfeed_worker_name(f), (long long)done, (long long)failed, (long long)stale);
    lisa_qfeed_free(f);
    lisa_engine_free(e);
    return st == LISA_OK ? CLI_EXIT_OK : CLI_EXIT_FAILED;
}
