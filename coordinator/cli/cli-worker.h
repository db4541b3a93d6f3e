/* cli-worker.h: what the commands that serve the queue share (`lisa
 * worker`, `lisa cluster --redis`): the worker options (name, lease,
 * heartbeat, backoff, image roots, message limit, start-up patience, job
 * limits) on top of cli-queue.h's connection options, their help text,
 * turning them into lisa_qfeed_params, and the start-up check that Redis
 * answers.
 *
 * Deliberately not here: the engine's or the cluster's options, the loop
 * (coordinator/queue/worker.h), --max-image-bytes (each command has its
 * own, for files as well). */
#ifndef LISA_CLI_WORKER_H
#define LISA_CLI_WORKER_H

#include <stdint.h>

#include "cli-queue.h"
#include "cli-util.h"
#include "queue-feed.h"

#define CLI_WORKER_MAX_ROOTS 64

typedef struct cli_worker_opts {
    cli_queue_opts q;
    const char *name, *lease, *heartbeat, *backoff, *connect_timeout;
    long max_message_bytes, max_jobs;
    int exit_when_empty;
    const char *roots[CLI_WORKER_MAX_ROOTS];   /* --image-root, repeatable */
    int n_roots;
    /* parsed by cli_worker_params */
    int64_t lease_ms, heartbeat_ms, backoff_ms, connect_ms;
} cli_worker_opts;

/* Rows for a command's cli_opt table (--image-root is taken out of argv
 * first, by cli_worker_take_roots, since it repeats). */
#define CLI_WORKER_OPTS(o)                                                  \
    CLI_QUEUE_OPTS(&(o)->q),                                                \
    {"--name", CLI_STRING, &(o)->name},                                     \
    {"--lease", CLI_STRING, &(o)->lease},                                   \
    {"--heartbeat", CLI_STRING, &(o)->heartbeat},                           \
    {"--backoff", CLI_STRING, &(o)->backoff},                               \
    {"--connect-timeout", CLI_STRING, &(o)->connect_timeout},               \
    {"--max-message-bytes", CLI_COUNT, &(o)->max_message_bytes},            \
    {"--max-jobs", CLI_COUNT, &(o)->max_jobs},                              \
    {"--exit-when-empty", CLI_FLAG, &(o)->exit_when_empty}

#define CLI_WORKER_HELP                                                         \
    "  --name NAME          worker name in `lisa workers` (default HOST:PID)\n"     \
    "  --lease DURATION     a job not renewed for this long is reclaimed by another\n" \
    "                       worker (default 30s; renewed every third of it)\n"     \
    "  --heartbeat DURATION heartbeat interval (default 2s)\n"                     \
    "  --backoff DURATION   retry backoff base for jobs that failed retryably\n"   \
    "                       (default 1s, doubling per attempt, with jitter)\n"     \
    "  --image-root DIR     image paths of jobs must resolve under DIR (repeatable);\n" \
    "                       without one, only jobs carrying their image bytes run\n" \
    "  --max-message-bytes N  refuse job messages larger than N bytes (default 64 MiB)\n" \
    "  --connect-timeout DURATION  keep trying to reach Redis at start-up this long,\n" \
    "                       then exit 69 (default 30s; once running, it reconnects\n" \
    "                       for as long as it takes)\n"                            \
    "  --exit-when-empty    exit once no job came for 1 s, none is in flight and\n" \
    "                       none is queued or waiting for a retry\n"              \
    "  --max-jobs N         exit after taking N jobs (default 0: no limit)\n"

/* Moves every --image-root DIR (or --image-root=DIR) out of argv into
 * o->roots; the rest stays for cli_opts_parse. -1 after a usage error. */
int cli_worker_take_roots(const char *cmd, int *argc, char **argv, cli_worker_opts *o);

/* Parses the durations and fills the feed's parameters (redis, prefix,
 * name, lease, heartbeat, backoff, roots, message limit; the caller sets
 * device, batch, limits.max_image_bytes). 0, or -1 after a usage error. */
int cli_worker_params(const char *cmd, cli_worker_opts *o, lisa_qfeed_params *fp,
                      volatile int *stop);

/* Tries Redis until it answers, for o->connect_ms at most (stopping early
 * when *stop is set). 0, or the exit code after printing why: 2 bad URL,
 * 69 unreachable, 77 credentials refused. */
int cli_worker_probe(const char *cmd, const cli_worker_opts *o, const lisa_redis_params *rp,
                     volatile int *stop);

/* The exit code for a failed lisa_qfeed_init: 77 when lisa_error_get()
 * names a permission or password problem, 69 unavailable, else 1. */
int cli_worker_exit_code(lisa_status st);

#endif
