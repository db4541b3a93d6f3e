/* cli-worker.c: see cli-worker.h. */
#include "cli-worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int cli_worker_take_roots(const char *cmd, int *argc, char **argv, cli_worker_opts *o) {
    int out = 1;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (!strcmp(a, "--image-root")) {
            if (i + 1 >= *argc) {
                fprintf(stderr, "lisa %s: --image-root needs a value\n", cmd);
                return -1;
            }
            v = argv[++i];
        } else if (!strncmp(a, "--image-root=", 13)) {
            v = a + 13;
        } else {
            argv[out++] = argv[i];
            continue;
        }
        if (o->n_roots == CLI_WORKER_MAX_ROOTS) {
            fprintf(stderr, "lisa %s: at most %d --image-root directories\n", cmd,
                    CLI_WORKER_MAX_ROOTS);
            return -1;
        }
        o->roots[o->n_roots++] = v;
    }
    *argc = out;
    return 0;
}

/* A duration option in ms (s NULL: dflt); -1 after a usage error. */
static int64_t worker_duration_ms(const char *cmd, const char *opt, const char *s, int64_t dflt) {
    if (!s) return dflt;
    double v = cli_parse_duration(s);
    if (v < 0) {
        fprintf(stderr, "lisa %s: %s expects a duration like 30s, 500ms or 2m, got '%s'\n", cmd,
                opt, s);
        return -1;
    }
    return (int64_t)(v * 1000.0 + 0.5);
}

int cli_worker_params(const char *cmd, cli_worker_opts *o, lisa_qfeed_params *fp,
                      volatile int *stop) {
    o->lease_ms = worker_duration_ms(cmd, "--lease", o->lease, 30000);
    o->heartbeat_ms = worker_duration_ms(cmd, "--heartbeat", o->heartbeat, 2000);
    o->backoff_ms = worker_duration_ms(cmd, "--backoff", o->backoff, 1000);
    o->connect_ms = worker_duration_ms(cmd, "--connect-timeout", o->connect_timeout, 30000);
    if (o->lease_ms < 0 || o->heartbeat_ms < 0 || o->backoff_ms < 0 || o->connect_ms < 0)
        return -1;
    if (o->lease_ms < 300 || o->heartbeat_ms < 100) {
        fprintf(stderr, "lisa %s: --lease must be at least 300ms and --heartbeat 100ms\n", cmd);
        return -1;
    }
    memset(fp, 0, sizeof *fp);
    fp->redis.url = lisa_redis_url_default(o->q.redis);
    fp->redis.password_file = o->q.password_file ? o->q.password_file
                                                 : getenv("LISA_REDIS_PASSWORD_FILE");
    if (fp->redis.password_file && !*fp->redis.password_file) fp->redis.password_file = NULL;
    fp->prefix = o->q.prefix ? o->q.prefix : getenv("LISA_QUEUE_PREFIX");
    if (fp->prefix && !*fp->prefix) fp->prefix = NULL;
    fp->worker_name = o->name;
    fp->lease_ms = o->lease_ms;
    fp->heartbeat_ms = o->heartbeat_ms;
    fp->backoff_ms = o->backoff_ms;
    fp->image_roots = o->roots;
    fp->n_image_roots = o->n_roots;
    fp->limits.max_message_bytes = (size_t)o->max_message_bytes;
    fp->stop = stop;
    return 0;
}

static int worker_perm_error(const char *msg) {
    static const char *const k_words[] = {"NOPERM", "WRONGPASS", "NOAUTH", "authentication",
                                          "invalid password", "invalid username"};
    for (size_t i = 0; i < sizeof k_words / sizeof k_words[0]; i++)
        if (strstr(msg, k_words[i])) return 1;
    return 0;
}

int cli_worker_exit_code(lisa_status st) {
    if (worker_perm_error(lisa_error_get())) return CLI_EXIT_NOPERM;
    if (st == LISA_ERR_UNAVAILABLE) return CLI_EXIT_UNAVAILABLE;
    if (st == LISA_ERR_ARG) return CLI_EXIT_USAGE;
    return CLI_EXIT_FAILED;
}

int cli_worker_probe(const char *cmd, const cli_worker_opts *o, const lisa_redis_params *rp,
                     volatile int *stop) {
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int attempt = 1;; attempt++) {
        lisa_redis *r = NULL;
        lisa_redis_params p = *rp;
        p.retry_max_s = 0;
        lisa_status st = lisa_redis_connect(&r, &p);
        if (st == LISA_OK) {
            lisa_redis_free(r);
            return 0;
        }
        const char *msg = lisa_error_get();
        if (st == LISA_ERR_ARG) {
            fprintf(stderr, "lisa %s: %s\n", cmd, msg);
            return CLI_EXIT_USAGE;
        }
        if (worker_perm_error(msg)) {
            fprintf(stderr, "lisa %s: Redis refused us: %s\n", cmd, msg);
            return CLI_EXIT_NOPERM;
        }
        clock_gettime(CLOCK_MONOTONIC, &t);
        int64_t ms = (int64_t)(t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
        if (ms >= o->connect_ms || (stop && *stop)) {
            fprintf(stderr, "lisa %s: %s (gave up after %.0f s)\n", cmd, msg, (double)ms / 1000);
            return CLI_EXIT_UNAVAILABLE;
        }
        if (attempt == 1)
            fprintf(stderr, "lisa %s: %s; retrying for up to %.0f s\n", cmd, msg,
                    (double)o->connect_ms / 1000);
        int64_t left = o->connect_ms - ms, nap = attempt < 5 ? 200 : 1000;
        usleep((useconds_t)(1000 * (nap < left ? nap : left)));
    }
}
