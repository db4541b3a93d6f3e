/* cmd-queue.c: `lisa queue` (the queue's depth per priority as rq info
 * draws it, running/retry/dead counts, throughput, and with --dead the
 * dead letters) and `lisa workers` (sinfo for the workers' heartbeats).
 *
 * Both only read; `lisa queue --acl ROLE` prints a role's ACL rules and
 * connects to nothing. Deliberately not here: requeueing dead letters or
 * pruning dead workers' consumers (no command does that yet). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli-queue-show.h"
#include "cli-queue.h"
#include "cli-util.h"
#include "commands.h"
#include "queue-acl.h"

#define QUEUE_BAR_WIDTH 20
#define QUEUE_DEAD_MAX 100

static const char *const k_priority_names[3] = {"hi", "normal", "lo"};

static void queue_help(FILE *f) {
    fprintf(f,
            "usage: lisa queue [--json] [-i SECONDS] [--dead] [--redis URL] [--prefix P]\n"
            "       lisa queue --acl submit|worker|admin [--prefix P]\n"
            "\n"
            "Shows how much work waits, as rq info does: a bar per priority (jobs not\n"
            "yet handed to a worker, the longest queue full width), then what runs:\n"
            "  hi     |███                 | 40\n"
            "  normal |████████████████████| 1.2k\n"
            "  lo     |                    | 0\n"
            "  running 32  retry 5  dead 3  workers 2\n"
            "  throughput 120 jobs/min (1 min), 110 jobs/min (5 min)\n"
            "(running: jobs running or cancel-requested; retry: failed jobs waiting for\n"
            "their backoff; dead: dead letters; workers: seen in their last 3 heartbeats).\n"
            "Bars are Unicode when LC_ALL, LC_CTYPE or LANG names UTF-8, else '#'.\n"
            "\n"
            "options:\n"
            "  --dead               list the dead letters too (the %d oldest): JOB BATCH\n"
            "                       DELIVERIES REASON ERROR\n"
            "  --json               one JSON document {\"api\": \"lisa/v1\", ...} (one per round\n"
            "                       with -i)\n"
            "  -i, --iterate SECONDS  repeat every SECONDS with a timestamp header\n"
            "  --acl ROLE           print the ACL rules of role submit, worker or admin for\n"
            "                       the prefix, for `ACL SETUSER NAME on >PASSWORD RULES...`\n"
            "                       (docs/queue.md, Security), and exit; needs no Redis\n"
            CLI_QUEUE_HELP
            "  -h, --help           show this help\n"
            "\n"
            "Exit status: 0 ok; 2 usage error; 69 Redis unreachable; 77 refused\n"
            "(password, ACL).\n",
            QUEUE_DEAD_MAX);
}

/* Jobs per minute as "120" or "0.4". */
static void queue_per_min_format(char *buf, size_t n, double v) {
    snprintf(buf, n, v >= 10 || v == 0 ? "%.0f" : "%.1f", v);
}

/* dead: with --dead (the list, n_dead entries, may be empty). */
static void queue_text_print(const lisa_queue_depths *d, int with_dead, const lisa_queue_dead *dead,
                             int n_dead) {
    int utf8 = cli_queue_utf8();
    int64_t most = 0;
    for (int p = 0; p < 3; p++)
        if (d->waiting[p] > most) most = d->waiting[p];
    for (int p = 0; p < 3; p++) {
        char count[32];
        cli_queue_count_format(count, sizeof count, d->waiting[p]);
        printf("%-6s |", k_priority_names[p]);
        cli_queue_bar_print(stdout, most ? (double)d->waiting[p] / (double)most : 0,
                            QUEUE_BAR_WIDTH, utf8);
        printf("| %s\n", count);
    }
    char m1[32], m5[32];
    queue_per_min_format(m1, sizeof m1, (double)d->done_1m);
    queue_per_min_format(m5, sizeof m5, (double)d->done_5m / 5.0);
    printf("running %lld  retry %lld  dead %lld  workers %lld\n", (long long)d->running,
           (long long)d->retrying, (long long)d->dead, (long long)d->workers);
    printf("throughput %s jobs/min (1 min), %s jobs/min (5 min)\n", m1, m5);
    if (!with_dead) return;
    printf("\n");
    if (!n_dead) {
        printf("no dead letters\n");
        return;
    }
    static const char *const k_head[] = {"JOB", "BATCH", "DELIVERIES", "REASON", "ERROR"};
    cli_queue_table t;
    cli_queue_table_init(&t, 5, k_head);
    for (int i = 0; i < n_dead; i++) {
        char deliveries[16], error[220];
        snprintf(deliveries, sizeof deliveries, "%d", dead[i].deliveries);
        cli_queue_clip(error, sizeof error, dead[i].error, 200);
        const char *row[] = {dead[i].job, dead[i].batch, deliveries, dead[i].reason, error};
        if (cli_queue_table_add(&t, row)) break;
    }
    cli_queue_table_print(&t, stdout, 1);
    cli_queue_table_free(&t);
    if (d->dead > n_dead)
        printf("(the %d oldest of %lld)\n", n_dead, (long long)d->dead);
}

static void queue_json_print(const lisa_queue_depths *d, int with_dead, const lisa_queue_dead *dead,
                             int n_dead, int64_t now_ms) {
    printf("{\"api\": \"lisa/v1\", \"time_ms\": %lld, \"queues\": [", (long long)now_ms);
    for (int p = 0; p < 3; p++)
        printf("%s{\"priority\": \"%s\", \"waiting\": %lld, \"pending\": %lld}", p ? ", " : "",
               k_priority_names[p], (long long)d->waiting[p], (long long)d->pending[p]);
    printf("], \"running\": %lld, \"retrying\": %lld, \"dead\": %lld, \"workers\": %lld, "
           "\"done_1m\": %lld, \"done_5m\": %lld, \"jobs_per_min_1m\": %.1f, "
           "\"jobs_per_min_5m\": %.1f",
           (long long)d->running, (long long)d->retrying, (long long)d->dead,
           (long long)d->workers, (long long)d->done_1m, (long long)d->done_5m,
           (double)d->done_1m, (double)d->done_5m / 5.0);
    if (with_dead) {
        printf(", \"dead_letters\": [");
        for (int i = 0; i < n_dead; i++) {
            printf("%s{\"job\": ", i ? ", " : "");
            cli_json_string(stdout, dead[i].job);
            printf(", \"batch\": ");
            cli_json_string(stdout, dead[i].batch);
            printf(", \"deliveries\": %d, \"reason\": ", dead[i].deliveries);
            cli_json_string(stdout, dead[i].reason);
            printf(", \"error\": ");
            cli_json_string(stdout, dead[i].error);
            printf("}");
        }
        printf("]");
    }
    printf("}\n");
}

static int queue_round(lisa_redis *r, lisa_queue *q, int json, int with_dead) {
    lisa_queue_depths d;
    lisa_queue_dead *dead = NULL;
    int n_dead = 0;
    int64_t now_ms = cli_queue_now_ms(r);
    lisa_status st = lisa_queue_depths_get(q, &d);
    if (st == LISA_OK && with_dead) st = lisa_queue_dead_list(q, QUEUE_DEAD_MAX, &dead, &n_dead);
    if (st != LISA_OK) {
        fprintf(stderr, "lisa queue: %s\n", lisa_error_get());
        free(dead);
        return cli_queue_exit_code(st);
    }
    if (json) queue_json_print(&d, with_dead, dead, n_dead, now_ms);
    else queue_text_print(&d, with_dead, dead, n_dead);
    fflush(stdout);
    free(dead);
    return CLI_EXIT_OK;
}

int cmd_queue(int argc, char **argv) {
    cli_queue_opts qo = {0};
    const char *iterate = NULL, *acl = NULL;
    int json = 0, with_dead = 0;
    const cli_opt opts[] = {
        {"--json", CLI_FLAG, &json},        {"--dead", CLI_FLAG, &with_dead},
        {"-i", CLI_STRING, &iterate},       {"--iterate", CLI_STRING, &iterate},
        {"--acl", CLI_STRING, &acl},        CLI_QUEUE_OPTS(&qo),
    };
    int pr = cli_opts_parse("queue", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]),
                            queue_help);
    if (pr) return pr > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    if (acl) {
        char rules[4096];
        const char *prefix = qo.prefix ? qo.prefix : getenv("LISA_QUEUE_PREFIX");
        if (!lisa_queue_acl_rules(acl, prefix, rules, sizeof rules)) {
            fprintf(stderr, "lisa queue: %s\n", lisa_error_get());
            return CLI_EXIT_USAGE;
        }
        printf("%s\n", rules);
        return CLI_EXIT_OK;
    }
    double every = 0;
    if (iterate && (every = cli_queue_interval_parse("queue", "-i", iterate)) < 0)
        return CLI_EXIT_USAGE;
    lisa_redis *r;
    lisa_queue *q;
    int rc = cli_queue_connect("queue", &qo, &r, &q);
    if (rc) return rc;
    for (int round = 0;; round++) {
        if (every > 0 && !json) cli_queue_stamp_print(stdout, cli_queue_now_ms(r), round);
        rc = queue_round(r, q, json, with_dead);
        if (every <= 0 || rc) break;
        cli_queue_sleep(every);
    }
    cli_queue_close(r, q);
    return rc;
}

/* ---- workers --------------------------------------------------------- */

static void workers_help(FILE *f) {
    fprintf(f,
            "usage: lisa workers [--json] [-o wide|json] [--no-header] [--redis URL]\n"
            "                    [--prefix P]\n"
            "\n"
            "Lists the workers by their heartbeats, most recently seen first, as sinfo\n"
            "lists nodes:\n"
            "  NAME HOST DEVICE STATE BATCH RUNNING JOBS/S DONE FAILED LAST_SEEN\n"
            "(STATE idle, busy or stopping; dead when its heartbeat record expired, i.e.\n"
            "it has not been seen for 3 heartbeats; BATCH its engine slots; RUNNING jobs\n"
            "in flight; JOBS/S over the last minute; DONE and FAILED since it started;\n"
            "LAST_SEEN as \"3s ago\", by the Redis server's clock).\n"
            "\n"
            "options:\n"
            "  -o, --output wide    add PENDING (stream entries it holds), PID and\n"
            "                       CURRENT (job ids in flight)\n"
            "  -o json, --json      one JSON document {\"api\": \"lisa/v1\", \"workers\": [...]}\n"
            "  --no-header          no table header\n"
            CLI_QUEUE_HELP
            "  -h, --help           show this help\n"
            "\n"
            "Exit status: 0 ok; 2 usage error; 69 Redis unreachable; 77 refused\n"
            "(password, ACL).\n");
}

static void workers_json_print(const lisa_queue_worker_info *w, int n, int64_t now_ms) {
    printf("{\"api\": \"lisa/v1\", \"time_ms\": %lld, \"workers\": [", (long long)now_ms);
    for (int i = 0; i < n; i++) {
        const struct {
            const char *key, *val;
        } strs[] = {{"name", w[i].name},
                    {"host", w[i].host},
                    {"device", w[i].device},
                    {"state", w[i].state},
                    {"current", w[i].current}};
        printf("%s{", i ? ", " : "");
        for (size_t k = 0; k < sizeof strs / sizeof strs[0]; k++) {
            printf("%s\"%s\": ", k ? ", " : "", strs[k].key);
            cli_json_string(stdout, strs[k].val);
        }
        printf(", \"pid\": %d, \"batch\": %d, \"running\": %d, \"done\": %lld, \"failed\": %lld, "
               "\"jobs_per_s\": %.3f, \"started_ms\": %lld, \"last_seen_ms\": %lld, "
               "\"pending\": %lld}",
               w[i].pid, w[i].batch, w[i].running, (long long)w[i].done, (long long)w[i].failed,
               w[i].rate, (long long)w[i].started_ms, (long long)w[i].last_seen_ms,
               (long long)w[i].pending);
    }
    printf("]}\n");
}

static void workers_table_print(const lisa_queue_worker_info *w, int n, int64_t now_ms, int wide,
                                int header) {
    static const char *const k_head[] = {"NAME",    "HOST",  "DEVICE", "STATE",
                                         "BATCH",   "RUNNING", "JOBS/S", "DONE",
                                         "FAILED",  "LAST_SEEN", "PENDING", "PID",
                                         "CURRENT"};
    cli_queue_table t;
    cli_queue_table_init(&t, wide ? 13 : 10, k_head);
    for (int i = 0; i < n; i++) {
        char batch[16], running[16], rate[32], done[24], failed[24], seen[32], pending[24],
            pid[16], current[120];
        snprintf(batch, sizeof batch, "%d", w[i].batch);
        snprintf(running, sizeof running, "%d", w[i].running);
        snprintf(rate, sizeof rate, "%.1f", w[i].rate);
        snprintf(done, sizeof done, "%lld", (long long)w[i].done);
        snprintf(failed, sizeof failed, "%lld", (long long)w[i].failed);
        if (w[i].last_seen_ms > 0) cli_queue_ago_format(seen, sizeof seen, now_ms - w[i].last_seen_ms);
        else snprintf(seen, sizeof seen, "-");
        snprintf(pending, sizeof pending, "%lld", (long long)w[i].pending);
        snprintf(pid, sizeof pid, "%d", w[i].pid);
        cli_queue_clip(current, sizeof current, w[i].current, 100);
        const char *row[] = {w[i].name, w[i].host, w[i].device, w[i].state, batch,   running, rate,
                             done,      failed,    seen,        pending,    pid,     current};
        if (cli_queue_table_add(&t, row)) break;
    }
    cli_queue_table_print(&t, stdout, header);
    cli_queue_table_free(&t);
}

int cmd_workers(int argc, char **argv) {
    cli_queue_opts qo = {0};
    const char *format = NULL;
    int json = 0, no_header = 0;
    const cli_opt opts[] = {
        {"--json", CLI_FLAG, &json}, {"-o", CLI_STRING, &format},
        {"--output", CLI_STRING, &format}, {"--no-header", CLI_FLAG, &no_header},
        CLI_QUEUE_OPTS(&qo),
    };
    int pr = cli_opts_parse("workers", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]),
                            workers_help);
    if (pr) return pr > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    int wide = 0;
    if (format && !strcmp(format, "wide")) wide = 1;
    else if (format && !strcmp(format, "json")) json = 1;
    else if (format) {
        fprintf(stderr, "lisa workers: -o expects wide or json, got '%s'\n", format);
        return CLI_EXIT_USAGE;
    }
    lisa_redis *r;
    lisa_queue *q;
    int rc = cli_queue_connect("workers", &qo, &r, &q);
    if (rc) return rc;
    lisa_queue_worker_info *w = NULL;
    int n = 0;
    int64_t now_ms = cli_queue_now_ms(r);
    lisa_status st = lisa_queue_workers_list(q, &w, &n);
    if (st != LISA_OK) {
        fprintf(stderr, "lisa workers: %s\n", lisa_error_get());
        rc = cli_queue_exit_code(st);
    } else if (json) {
        workers_json_print(w, n, now_ms);
    } else {
        workers_table_print(w, n, now_ms, wide, !no_header);
        if (!n) fprintf(stderr, "lisa workers: no worker has sent a heartbeat\n");
    }
    free(w);
    cli_queue_close(r, q);
    return rc;
}
