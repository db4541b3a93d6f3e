/* cmd-cancel.c: `lisa cancel`, scancel for the queue: each named job, or
 * every job of a named batch (those in -t's states only, when given), goes
 * through FCALL lisa_cancel: a queued or retrying job is cancelled at once,
 * a running one is marked cancel-requested (its worker stops it at the next
 * lease renewal, and its result is refused), a finished one is left alone.
 *
 * Deliberately not here: waiting for the running ones to stop (lisa wait
 * does that: a cancel-requested job ends cancelled). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli-queue-show.h"
#include "cli-queue.h"
#include "cli-util.h"
#include "commands.h"

static void cancel_help(FILE *f) {
    fprintf(f,
            "usage: lisa cancel JOB|BATCH ... [-Q] [-t STATES] [--redis URL] [--prefix P]\n"
            "\n"
            "Cancels jobs, as scancel does. A job id (B12_3) names one job, a batch id\n"
            "(B12) every job of the batch. Queued and retrying jobs are cancelled at once;\n"
            "running ones are marked cancel-requested: their worker stops them (at the\n"
            "latest one lease renewal later) and their result is refused, so they end\n"
            "cancelled, not done. Finished jobs are left as they are. Prints:\n"
            "  cancelled 320, cancel-requested 32 (running), already finished 648\n"
            "\n"
            "options:\n"
            "  -Q, --quiet          print nothing, and a job already finished is no error\n"
            "  -t, --states STATES  only jobs in these states (PD,RT or queued,retry_wait;\n"
            "                       codes PD R RT CD F CA CG)\n"
            CLI_QUEUE_HELP
            "  -h, --help           show this help\n"
            "\n"
            "Exit status: 0 everything named was cancelled or cancel-requested (a batch\n"
            "counts when at least one of its jobs was, or -t left none to cancel); 1 a\n"
            "named job, or every job of a named batch, had already finished (\"lisa cancel:\n"
            "B12_3 already finished (CD)\"; not with -Q); 2 usage error; 3 an id is\n"
            "unknown (the others are still cancelled); 69 Redis unreachable; 77 refused\n"
            "(password, ACL: the submit role may cancel).\n");
}

typedef struct cancel_counts {
    long long cancelled, requested, finished;
} cancel_counts;

/* Cancels one job unless -t filters it out. *res is LISA_CANCEL_UNKNOWN
 * for an unknown job, and *res = -1 when skipped. */
static lisa_status cancel_job(lisa_queue *q, const char *id, unsigned states, int *res,
                              lisa_job_state *was, cancel_counts *c) {
    *res = -1;
    if (states) {
        lisa_queue_job_info j;
        lisa_status st = lisa_queue_job_get(q, id, &j);
        if (st == LISA_ERR_NOTFOUND) {
            *res = LISA_CANCEL_UNKNOWN;
            return LISA_OK;
        }
        if (st != LISA_OK) return st;
        if (!(states & (1u << j.state))) return LISA_OK;
    }
    lisa_queue_cancel_result out;
    *was = LISA_JOB_UNKNOWN;
    lisa_status st = lisa_queue_cancel(q, id, &out, was);
    if (st == LISA_ERR_NOTFOUND) out = LISA_CANCEL_UNKNOWN;
    else if (st != LISA_OK) return st;
    *res = (int)out;
    if (out == LISA_CANCEL_DONE) c->cancelled++;
    else if (out == LISA_CANCEL_REQUESTED) c->requested++;
    else if (out == LISA_CANCEL_FINISHED) c->finished++;
    return LISA_OK;
}

/* Every job of a batch. *all_finished: nothing cancelled, some finished. */
static lisa_status cancel_batch(lisa_queue *q, const char *bid, unsigned states, cancel_counts *c,
                                int *all_finished) {
    char (*ids)[64] = NULL;
    int n = 0;
    cancel_counts mine = {0};
    lisa_status st = lisa_queue_batch_jobs(q, bid, &ids, &n);
    for (int i = 0; st == LISA_OK && i < n; i++) {
        int res;
        lisa_job_state was;
        st = cancel_job(q, ids[i], states, &res, &was, &mine);
    }
    free(ids);
    *all_finished = !mine.cancelled && !mine.requested && mine.finished;
    c->cancelled += mine.cancelled;
    c->requested += mine.requested;
    c->finished += mine.finished;
    return st;
}

int cmd_cancel(int argc, char **argv) {
    cli_queue_opts qo = {0};
    const char *states_s = NULL;
    int quiet = 0;
    const cli_opt opts[] = {
        {"-Q", CLI_FLAG, &quiet},          {"--quiet", CLI_FLAG, &quiet},
        {"-t", CLI_STRING, &states_s},     {"--states", CLI_STRING, &states_s},
        CLI_QUEUE_OPTS(&qo),
    };
    char **ids;
    int n_ids;
    int pr = cli_queue_args_parse("cancel", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]),
                                  cancel_help, &ids, &n_ids);
    if (pr) return pr > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    unsigned states = 0;
    int rc = CLI_EXIT_USAGE;
    if (states_s && cli_queue_states_parse("cancel", states_s, &states)) goto out;
    if (n_ids == 0) {
        fprintf(stderr, "lisa cancel: name at least one job or batch (see --help)\n");
        goto out;
    }
    lisa_redis *r;
    lisa_queue *q;
    if ((rc = cli_queue_connect("cancel", &qo, &r, &q))) goto out;
    cancel_counts c = {0};
    int unknown = 0, finished = 0;
    lisa_status st = LISA_OK;
    for (int i = 0; st == LISA_OK && i < n_ids; i++) {
        if (lisa_queue_id_is_batch(ids[i])) {
            lisa_queue_batch_info b;
            st = lisa_queue_batch_get(q, ids[i], &b);
            int all_finished = 0;
            if (st == LISA_OK) st = cancel_batch(q, ids[i], states, &c, &all_finished);
            if (st == LISA_ERR_NOTFOUND) {
                fprintf(stderr, "lisa cancel: %s: no such job or batch (or it expired)\n", ids[i]);
                unknown = 1;
                st = LISA_OK;
            } else if (st == LISA_OK && all_finished && !quiet) {
                fprintf(stderr, "lisa cancel: %s already finished (%lld of %lld jobs final)\n",
                        ids[i], (long long)(b.done + b.failed + b.cancelled), (long long)b.total);
                finished = 1;
            }
            continue;
        }
        int res;
        lisa_job_state was;
        st = cancel_job(q, ids[i], states, &res, &was, &c);
        if (st != LISA_OK) break;
        if (res == LISA_CANCEL_UNKNOWN) {
            fprintf(stderr, "lisa cancel: %s: no such job or batch (or it expired)\n", ids[i]);
            unknown = 1;
        } else if (res == LISA_CANCEL_FINISHED && !quiet) {
            fprintf(stderr, "lisa cancel: %s already finished (%s)\n", ids[i],
                    lisa_job_state_code(was));
            finished = 1;
        }
    }
    if (st != LISA_OK) fprintf(stderr, "lisa cancel: %s\n", lisa_error_get());
    if (!quiet && (st == LISA_OK || c.cancelled || c.requested || c.finished))
        printf("cancelled %lld, cancel-requested %lld (running), already finished %lld\n",
               c.cancelled, c.requested, c.finished);
    rc = st != LISA_OK ? cli_queue_exit_code(st)
         : unknown     ? CLI_EXIT_NOTFOUND
         : finished    ? CLI_EXIT_FAILED
                       : CLI_EXIT_OK;
    cli_queue_close(r, q);
out:
    free(ids);
    return rc;
}
