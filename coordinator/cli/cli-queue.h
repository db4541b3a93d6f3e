/* cli-queue.h: what the queue commands (submit, status, wait, watch,
 * cancel, result, queue, workers, worker) share: the connection options,
 * connecting as a client with a clear message, and the exit codes
 * (docs/queue.md lists them next to Slurm's and gh's).
 *
 * Deliberately not here: any one command's output. */
#ifndef LISA_CLI_QUEUE_H
#define LISA_CLI_QUEUE_H

#include "queue.h"
#include "redis-conn.h"
#include "status.h"

/* Exit codes of the queue commands. */
enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_FAILED = 1,       /* a job failed (wait, result, submit --wait) */
    CLI_EXIT_USAGE = 2,
    CLI_EXIT_NOTFOUND = 3,     /* no such job or batch, or its result expired */
    CLI_EXIT_CANCELLED = 4,    /* a job was cancelled (and none failed) */
    CLI_EXIT_TIMEOUT = 5,      /* wait --timeout elapsed */
    CLI_EXIT_UNAVAILABLE = 69, /* Redis cannot be reached (EX_UNAVAILABLE) */
    CLI_EXIT_UNFINISHED = 75,  /* result: some jobs are not finished yet (EX_TEMPFAIL) */
    CLI_EXIT_NOPERM = 77       /* wrong password, or the ACL user may not do this (EX_NOPERM) */
};

/* The options every queue command takes; add CLI_QUEUE_OPTS(&o) rows to a
 * command's cli_opt table and CLI_QUEUE_HELP to its help text. */
typedef struct cli_queue_opts {
    const char *redis;         /* --redis URL (else $LISA_REDIS, else redis://127.0.0.1:6379) */
    const char *password_file; /* --redis-password-file FILE (else $LISA_REDIS_PASSWORD_FILE) */
    const char *prefix;        /* --prefix P (else $LISA_QUEUE_PREFIX, else "lisa") */
} cli_queue_opts;

#define CLI_QUEUE_OPTS(o)                                                   \
    {"--redis", CLI_STRING, &(o)->redis},                                   \
    {"--redis-password-file", CLI_STRING, &(o)->password_file},             \
    {"--prefix", CLI_STRING, &(o)->prefix}

#define CLI_QUEUE_HELP                                                          \
    "  --redis URL          the queue's Redis: redis://[user[:pass]@]host[:port][/db]\n" \
    "                       or unix:///path.sock (default $LISA_REDIS, else\n"          \
    "                       redis://127.0.0.1:6379)\n"                                   \
    "  --redis-password-file FILE  the password (first line), instead of the URL's\n"   \
    "                       (default $LISA_REDIS_PASSWORD_FILE)\n"                       \
    "  --prefix P           the queue's key prefix (default $LISA_QUEUE_PREFIX, else\n"  \
    "                       \"lisa\")\n"

/* Connects as a client (no retries) and opens the queue. Returns 0, or the
 * exit code after printing "lisa CMD: ..." (unavailable, wrong password,
 * bad URL). */
int cli_queue_connect(const char *cmd, const cli_queue_opts *o, lisa_redis **r, lisa_queue **q);
void cli_queue_close(lisa_redis *r, lisa_queue *q);

/* The exit code for a failed queue call's status (NOTFOUND 3, UNAVAILABLE
 * 69 or 77 when lisa_error_get() names a permission or password problem,
 * else 1). */
int cli_queue_exit_code(lisa_status st);

/* Durations as users write them: "30", "30s", "10m", "2h", "7d" (seconds
 * when no unit); -1 when malformed. */
double cli_parse_duration(const char *s);

#endif
