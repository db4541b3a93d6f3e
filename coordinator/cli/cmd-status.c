/* cmd-status.c: `lisa status`, squeue for the Redis job queue: a table row
 * per named job, a summary line per named batch (its jobs as rows with
 * --jobs or -t), the recent batches when nothing is named; --json for
 * scripts; -i N to repeat with a timestamp header.
 *
 * It only reads (HGETALL of job and batch hashes, one XINFO for pending
 * jobs' reasons). Deliberately not here: following events (cmd-wait.c),
 * cancelling (cmd-cancel.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli-queue-show.h"
#include "cli-queue.h"
#include "cli-util.h"
#include "commands.h"

#define STATUS_RECENT_BATCHES 20

static void status_help(FILE *f) {
    fprintf(f,
            "usage: lisa status [JOB|BATCH ...] [--jobs] [-t STATES] [--json] [-i SECONDS]\n"
            "                   [--no-header] [--redis URL] [--prefix P]\n"
            "\n"
            "Shows jobs and batches of the queue, as squeue does. A job id (B12_3) prints\n"
            "a table row:\n"
            "  JOBID  NAME  USER  ST  TIME  ATT  WORKER  REASON\n"
            "(NAME is the custom_id, else the job's name; ST the state code; TIME the\n"
            "running or total time as squeue writes it, M:SS, H:MM:SS or D-HH:MM:SS; ATT\n"
            "attempts/max; REASON why a job waits: Priority (higher-priority jobs are\n"
            "waiting), Resources (waiting for a free worker), the retry's backoff and last\n"
            "error, or a failed job's error). A batch id (B12) prints one line:\n"
            "  B12 300 total | CD 280 R 4 PD 16 RT 0 F 0 CA 0 CG 0 | 21.3 jobs/s | ETA 00:00:05\n"
            "(the rate counts done and failed jobs since the batch's first start; \"ETA -\"\n"
            "until one finished). Without ids: the %d most recent batches (with --jobs\n"
            "or -t: their jobs instead, `lisa status -t R` is what runs now).\n"
            "\n"
            "States: PD queued, R running, RT waiting to retry, CD done, F failed,\n"
            "CA cancelled, CG cancel requested (running).\n"
            "\n"
            "options:\n"
            "  --jobs               list each named batch's jobs as rows too\n"
            "  -t, --states STATES  only jobs in these states (PD,R or queued,running);\n"
            "                       implies --jobs\n"
            "  --json               print one JSON document {\"api\": \"lisa/v1\", \"batches\",\n"
            "                       \"jobs\", \"unknown\"} (one per round with -i)\n"
            "  -i, --iterate SECONDS  repeat every SECONDS (2, 2s, 1m) with a timestamp\n"
            "                       header, until interrupted\n"
            "  --no-header          no table header (with --jobs or -t: no batch summary\n"
            "                       lines either, only job rows)\n"
            CLI_QUEUE_HELP
            "  -h, --help           show this help\n"
            "\n"
            "Exit status: 0 ok; 2 usage error; 3 an id is unknown or expired (the others\n"
            "are still printed); 69 Redis unreachable; 77 refused (password, ACL).\n",
            STATUS_RECENT_BATCHES);
}

typedef struct status_args {
    int json, no_header, jobs;
    unsigned states;            /* 0: all */
} status_args;

/* What one round found. */
typedef struct status_found {
    lisa_queue_batch_info *batches;
    int n_batches;
    lisa_queue_job_info *jobs;
    int n_jobs, cap_jobs;
    char **unknown;
    int n_unknown;
    int table;                  /* a job table was asked for */
} status_found;

static void status_found_free(status_found *f) {
    free(f->batches);
    free(f->jobs);
    free(f->unknown);
    memset(f, 0, sizeof *f);
}

static int status_job_add(status_found *f, const lisa_queue_job_info *j) {
    if (f->n_jobs == f->cap_jobs) {
        int cap = f->cap_jobs ? 2 * f->cap_jobs : 64;
        lisa_queue_job_info *v = realloc(f->jobs, sizeof *v * (size_t)cap);
        if (!v) return -1;
        f->jobs = v;
        f->cap_jobs = cap;
    }
    f->jobs[f->n_jobs++] = *j;
    return 0;
}

/* A batch's jobs, filtered, into f. */
static lisa_status status_batch_jobs(lisa_queue *q, const char *bid, unsigned states,
                                     status_found *f) {
    char (*ids)[64] = NULL;
    int n = 0;
    lisa_status st = lisa_queue_batch_jobs(q, bid, &ids, &n);
    for (int i = 0; st == LISA_OK && i < n; i++) {
        lisa_queue_job_info j;
        lisa_status js = lisa_queue_job_get(q, ids[i], &j);
        if (js == LISA_ERR_NOTFOUND) continue;
        st = js;
        if (st == LISA_OK && (!states || states & (1u << j.state)) && status_job_add(f, &j))
            st = lisa_error_set(LISA_ERR_NOMEM, "out of memory listing %s", bid);
    }
    free(ids);
    return st;
}

static lisa_status status_batch_add(lisa_queue *q, const char *bid, const status_args *a,
                                    status_found *f, int *found) {
    lisa_queue_batch_info b;
    lisa_status st = lisa_queue_batch_get(q, bid, &b);
    *found = st == LISA_OK;
    if (st != LISA_OK) return st == LISA_ERR_NOTFOUND ? LISA_OK : st;
    lisa_queue_batch_info *v = realloc(f->batches, sizeof *v * (size_t)(f->n_batches + 1));
    if (!v) return lisa_error_set(LISA_ERR_NOMEM, "out of memory");
    f->batches = v;
    f->batches[f->n_batches++] = b;
    return a->jobs ? status_batch_jobs(q, bid, a->states, f) : LISA_OK;
}

static lisa_status status_collect(lisa_queue *q, char **ids, int n_ids, const status_args *a,
                                  status_found *f) {
    f->table = a->jobs;
    f->unknown = malloc(sizeof *f->unknown * (size_t)(n_ids + 1));
    if (!f->unknown) return lisa_error_set(LISA_ERR_NOMEM, "out of memory");
    lisa_status st = LISA_OK;
    int found;
    if (n_ids == 0) {
        char (*bids)[48] = NULL;
        int n = 0;
        st = lisa_queue_batches_recent(q, STATUS_RECENT_BATCHES, &bids, &n);
        for (int i = 0; st == LISA_OK && i < n; i++) st = status_batch_add(q, bids[i], a, f, &found);
        free(bids);
        return st;
    }
    for (int i = 0; st == LISA_OK && i < n_ids; i++) {
        if (lisa_queue_id_is_batch(ids[i])) {
            st = status_batch_add(q, ids[i], a, f, &found);
            if (st == LISA_OK && !found) f->unknown[f->n_unknown++] = ids[i];
            continue;
        }
        f->table = 1;
        lisa_queue_job_info j;
        st = lisa_queue_job_get(q, ids[i], &j);
        if (st == LISA_ERR_NOTFOUND) {
            f->unknown[f->n_unknown++] = ids[i];
            st = LISA_OK;
        } else if (st == LISA_OK && (!a->states || a->states & (1u << j.state)) &&
                   status_job_add(f, &j)) {
            st = lisa_error_set(LISA_ERR_NOMEM, "out of memory");
        }
    }
    return st;
}

static const char *status_priority_name(lisa_job_priority p) {
    return p == LISA_PRIO_HI ? "hi" : p == LISA_PRIO_LO ? "lo" : "normal";
}

/* The job's running time (R, CG) or its last attempt's (final), in ms. */
static int64_t status_job_elapsed_ms(const lisa_queue_job_info *j, int64_t now_ms) {
    if (j->started_ms <= 0) return 0;
    if (j->state == LISA_JOB_RUNNING || j->state == LISA_JOB_CANCEL_REQUESTED)
        return now_ms - j->started_ms;
    if (lisa_job_state_final(j->state) && j->finished_ms >= j->started_ms)
        return j->finished_ms - j->started_ms;
    return 0;
}

/* squeue's REASON column. depths may be NULL (not readable). */
static void status_reason(char *buf, size_t n, const lisa_queue_job_info *j,
                          const lisa_queue_depths *depths, int64_t now_ms) {
    char err[208];
    cli_queue_clip(err, sizeof err, j->error, 200);
    switch (j->state) {
    case LISA_JOB_QUEUED: {
        int ahead = 0;
        for (int p = 0; depths && p < (int)j->priority && p < 3; p++) ahead |= depths->waiting[p] > 0;
        snprintf(buf, n, "%s", !depths ? "-" : ahead ? "Priority" : "Resources");
        break;
    }
    case LISA_JOB_RETRY_WAIT: {
        char in[32];
        cli_queue_clock_format(in, sizeof in, (double)(j->retry_at_ms - now_ms) / 1000.0, 0);
        snprintf(buf, n, "BackOff(%s)%s%s", j->retry_at_ms > now_ms ? in : "due",
                 err[0] ? ": " : "", err);
        break;
    }
    case LISA_JOB_CANCEL_REQUESTED: snprintf(buf, n, "CancelRequested"); break;
    case LISA_JOB_FAILED:
    case LISA_JOB_CANCELLED: snprintf(buf, n, "%s", err[0] ? err : "-"); break;
    default: snprintf(buf, n, "-"); break;
    }
}

static void status_table_print(const status_found *f, const status_args *a,
                               const lisa_queue_depths *depths, int64_t now_ms) {
    static const char *const k_head[] = {"JOBID", "NAME", "USER", "ST",
                                         "TIME", "ATT", "WORKER", "REASON"};
    cli_queue_table t;
    cli_queue_table_init(&t, 8, k_head);
    for (int i = 0; i < f->n_jobs; i++) {
        const lisa_queue_job_info *j = &f->jobs[i];
        char name[32], user[24], worker[48], elapsed[32], att[32], reason[320];
        cli_queue_clip(name, sizeof name, j->custom_id[0] ? j->custom_id : j->name, 24);
        cli_queue_clip(user, sizeof user, j->user, 16);
        cli_queue_clip(worker, sizeof worker, j->owner, 40);
        cli_queue_elapsed_format(elapsed, sizeof elapsed, status_job_elapsed_ms(j, now_ms));
        snprintf(att, sizeof att, "%d/%d", j->attempts, j->max_attempts);
        status_reason(reason, sizeof reason, j, depths, now_ms);
        const char *row[] = {j->id, name, user, lisa_job_state_code(j->state),
                             elapsed, att, worker, reason};
        if (cli_queue_table_add(&t, row)) break;
    }
    cli_queue_table_print(&t, stdout, !a->no_header);
    cli_queue_table_free(&t);
}

static void status_batch_print(const lisa_queue_batch_info *b, int64_t now_ms) {
    double rate, eta;
    cli_queue_batch_rate(b, now_ms, &rate, &eta);
    char rs[32], es[32];
    cli_queue_rate_format(rs, sizeof rs, rate, "-");
    cli_queue_clock_format(es, sizeof es, eta, 1);
    printf("%s %lld total | CD %lld R %lld PD %lld RT %lld F %lld CA %lld CG %lld | %s jobs/s | "
           "ETA %s\n",
           b->id, (long long)b->total, (long long)b->done, (long long)b->running,
           (long long)b->queued, (long long)b->retry, (long long)b->failed,
           (long long)b->cancelled, (long long)b->cancelling, rs, es);
}

static void status_json_batch(const lisa_queue_batch_info *b, int64_t now_ms) {
    double rate, eta;
    cli_queue_batch_rate(b, now_ms, &rate, &eta);
    printf("{\"id\": ");
    cli_json_string(stdout, b->id);
    printf(", \"name\": ");
    cli_json_string(stdout, b->name);
    printf(", \"user\": ");
    cli_json_string(stdout, b->user);
    printf(", \"total\": %lld, \"queued\": %lld, \"running\": %lld, \"retry\": %lld, "
           "\"done\": %lld, \"failed\": %lld, \"cancelled\": %lld, \"cancelling\": %lld, "
           "\"created_ms\": %lld, \"first_start_ms\": %lld, \"last_finish_ms\": %lld",
           (long long)b->total, (long long)b->queued, (long long)b->running, (long long)b->retry,
           (long long)b->done, (long long)b->failed, (long long)b->cancelled,
           (long long)b->cancelling, (long long)b->created_ms, (long long)b->first_start_ms,
           (long long)b->last_finish_ms);
    if (rate < 0) printf(", \"jobs_per_s\": null, \"eta_s\": null}");
    else printf(", \"jobs_per_s\": %.3f, \"eta_s\": %.1f}", rate, eta);
}

static void status_json_job(const lisa_queue_job_info *j, int64_t now_ms) {
    const struct {
        const char *key, *val;
    } strs[] = {{"id", j->id},       {"batch", j->batch}, {"custom_id", j->custom_id},
                {"name", j->name},   {"user", j->user},   {"state", lisa_job_state_name(j->state)},
                {"st", lisa_job_state_code(j->state)},
                {"priority", status_priority_name(j->priority)},
                {"worker", j->owner}, {"error", j->error}, {"image", j->image},
                {"prompt", j->prompt}};
    printf("{");
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        printf("%s\"%s\": ", i ? ", " : "", strs[i].key);
        cli_json_string(stdout, strs[i].val);
    }
    printf(", \"attempts\": %d, \"max_attempts\": %d, \"created_ms\": %lld, \"started_ms\": %lld, "
           "\"finished_ms\": %lld, \"retry_at_ms\": %lld, \"elapsed_s\": %.3f}",
           j->attempts, j->max_attempts, (long long)j->created_ms, (long long)j->started_ms,
           (long long)j->finished_ms, (long long)j->retry_at_ms,
           (double)status_job_elapsed_ms(j, now_ms) / 1000.0);
}

static void status_json_print(const status_found *f, int64_t now_ms) {
    printf("{\"api\": \"lisa/v1\", \"time_ms\": %lld, \"batches\": [", (long long)now_ms);
    for (int i = 0; i < f->n_batches; i++) {
        printf("%s", i ? ", " : "");
        status_json_batch(&f->batches[i], now_ms);
    }
    printf("], \"jobs\": [");
    for (int i = 0; i < f->n_jobs; i++) {
        printf("%s", i ? ", " : "");
        status_json_job(&f->jobs[i], now_ms);
    }
    printf("], \"unknown\": [");
    for (int i = 0; i < f->n_unknown; i++) {
        printf("%s", i ? ", " : "");
        cli_json_string(stdout, f->unknown[i]);
    }
    printf("]}\n");
}

/* One round: read, then print. Returns the exit code. */
static int status_round(lisa_redis *r, lisa_queue *q, char **ids, int n_ids, const status_args *a) {
    status_found f = {0};
    int64_t now_ms = cli_queue_now_ms(r);
    lisa_status st = status_collect(q, ids, n_ids, a, &f);
    lisa_queue_depths depths;
    int have_depths = 0;
    for (int i = 0; st == LISA_OK && !have_depths && i < f.n_jobs; i++)
        if (f.jobs[i].state == LISA_JOB_QUEUED)
            have_depths = lisa_queue_depths_get(q, &depths) == LISA_OK ? 1 : -1;
    if (st != LISA_OK) {
        fprintf(stderr, "lisa status: %s\n", lisa_error_get());
        status_found_free(&f);
        return cli_queue_exit_code(st);
    }
    if (a->json) {
        status_json_print(&f, now_ms);
    } else {
        /* with --jobs the summary lines head the rows: --no-header drops
         * them, and so does listing the recent batches' jobs (squeue -t R) */
        int lines = !(a->jobs && (a->no_header || n_ids == 0));
        for (int i = 0; lines && i < f.n_batches; i++)
            status_batch_print(&f.batches[i], now_ms);
        if (f.table) status_table_print(&f, a, have_depths > 0 ? &depths : NULL, now_ms);
    }
    fflush(stdout);
    for (int i = 0; i < f.n_unknown; i++)
        fprintf(stderr, "lisa status: %s: no such job or batch (or it expired)\n", f.unknown[i]);
    int rc = f.n_unknown ? CLI_EXIT_NOTFOUND : CLI_EXIT_OK;
    status_found_free(&f);
    return rc;
}

int cmd_status(int argc, char **argv) {
    status_args a = {0};
    cli_queue_opts qo = {0};
    const char *states = NULL, *iterate = NULL;
    const cli_opt opts[] = {
        {"--jobs", CLI_FLAG, &a.jobs},          {"--json", CLI_FLAG, &a.json},
        {"--no-header", CLI_FLAG, &a.no_header}, {"-t", CLI_STRING, &states},
        {"--states", CLI_STRING, &states},      {"-i", CLI_STRING, &iterate},
        {"--iterate", CLI_STRING, &iterate},    CLI_QUEUE_OPTS(&qo),
    };
    char **ids;
    int n_ids;
    int pr = cli_queue_args_parse("status", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]),
                                  status_help, &ids, &n_ids);
    if (pr) return pr > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    double every = 0;
    int rc = CLI_EXIT_USAGE;
    if (states && cli_queue_states_parse("status", states, &a.states)) goto out;
    if (iterate && (every = cli_queue_interval_parse("status", "-i", iterate)) < 0) goto out;
    if (a.states) a.jobs = 1;
    lisa_redis *r;
    lisa_queue *q;
    if ((rc = cli_queue_connect("status", &qo, &r, &q))) goto out;
    for (int round = 0;; round++) {
        if (every > 0 && !a.json) cli_queue_stamp_print(stdout, cli_queue_now_ms(r), round);
        rc = status_round(r, q, ids, n_ids, &a);
        if (every <= 0 || rc == CLI_EXIT_UNAVAILABLE || rc == CLI_EXIT_NOPERM) break;
        cli_queue_sleep(every);
    }
    cli_queue_close(r, q);
out:
    free(ids);
    return rc;
}
