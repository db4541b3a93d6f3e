/* cmd-result.c: `lisa result JOB|BATCH`: the stored results of queued jobs,
 * written exactly as `lisa segment` writes them: OUT/<custom_id>/
 * (answer.txt, mask_K.png, overlay.png, result.json) and OUT/results.jsonl,
 * one line per finished job in submit order, plus OUT/errors.jsonl with the
 * failed and cancelled ones; without --out the results.jsonl lines go to
 * stdout.
 *
 * Each job's JobResult is decoded back into an engine response (masks from
 * their RLE, job-codec.h) and its JobRequest gives who it was for
 * (custom_id, image label, prompt) and the image for overlay.png (the
 * inline bytes, or the path when this machine can read it), so
 * result-write.h produces the same bytes as in a single process.
 *
 * Deliberately not here: waiting for jobs (`lisa wait`), anything that
 * changes the queue. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli-queue-show.h"
#include "cli-queue.h"
#include "cli-util.h"
#include "commands.h"
#include "image.h"
#include "job-codec.h"
#include "queue.h"
#include "result-write.h"

/* Some jobs are not finished yet: try again later (EX_TEMPFAIL). */

static void result_help(FILE *f) {
    fprintf(f,
            "usage: lisa result JOB|BATCH [--out DIR] [--json] [--no-overlay] [options]\n"
            "\n"
            "Fetches the results of a job (B12_3) or of every job of a batch (B12) and\n"
            "writes them as `lisa segment` does: DIR/<custom_id>/ with answer.txt,\n"
            "mask_K.png, overlay.png and result.json, DIR/results.jsonl (one line per\n"
            "finished job, in submit order) and DIR/errors.jsonl (the failed and\n"
            "cancelled ones; a cancelled job's error is \"cancelled\"). Jobs not finished\n"
            "yet are listed on stderr and left out.\n"
            "\n"
            "options:\n"
            "  --out DIR            write the files under DIR (default: print the\n"
            "                       results.jsonl lines on stdout, write nothing)\n"
            "  --no-overlay         do not write overlay.png (skips decoding the images)\n"
            "  --json               print a summary object as the last line of stdout:\n"
            "                       id, jobs, done, failed, cancelled, unfinished, missing\n"
            CLI_QUEUE_HELP
            "  -h, --help           show this help\n"
            "\n"
            "overlay.png needs the image: the request's inline bytes, or its path (lisa\n"
            "submit --by-path) when readable here; otherwise it is left out.\n"
            "\n"
            "Exit status, the first that applies: 1 a job failed, 3 no such job or batch,\n"
            "or a result expired, 75 some jobs are not finished yet (run it again\n"
            "later), 4 a job was cancelled, 0 every job done; 2 usage error, 69 Redis\n"
            "unreachable, 77 permission denied.\n");
}

typedef enum { RES_DONE, RES_FAILED, RES_CANCELLED, RES_UNFINISHED, RES_MISSING } result_kind;

typedef struct {
    lisa_queue *q;
    const char *out;
    int no_overlay;
    FILE *all, *errors;        /* OUT/results.jsonl, OUT/errors.jsonl */
    int64_t count[5];          /* jobs per result_kind */
    int write_failures;
} result_ctx;

/* How a state not yet final reads in "B12_7: still running (R)". */
static const char *result_pending_text(lisa_job_state s) {
    switch (s) {
    case LISA_JOB_QUEUED: return "still queued";
    case LISA_JOB_RUNNING: return "still running";
    case LISA_JOB_RETRY_WAIT: return "waiting to be retried";
    case LISA_JOB_CANCEL_REQUESTED: return "being cancelled";
    default: return "not finished";
    }
}

/* The job's request (limits for reading back what was accepted at submit),
 * or 0 with *rq cleared when it is gone or unreadable. */
static int result_request(result_ctx *x, const char *id, lisa_job_request *rq) {
    memset(rq, 0, sizeof *rq);
    uint8_t *buf = NULL;
    size_t len = 0;
    lisa_status st = lisa_queue_request_get(x->q, id, &buf, &len);
    if (st != LISA_OK) return 0;
    lisa_job_limits l = {.max_message_bytes = (size_t)1 << 30, .max_image_bytes = (size_t)1 << 30};
    st = lisa_job_request_decode(buf, len, &l, rq);
    free(buf);
    if (st != LISA_OK) fprintf(stderr, "lisa result: %s: request unreadable: %s\n", id, lisa_error_get());
    return st == LISA_OK;
}

/* The decoded image for overlay.png, or 0 when there is none to be had. */
static int result_image(const lisa_job_request *rq, lisa_image *img) {
    memset(img, 0, sizeof *img);
    if (rq->image) return lisa_image_decode(img, rq->image, rq->image_size, NULL) == LISA_OK;
    if (rq->image_path && access(rq->image_path, R_OK) == 0)
        return lisa_image_load(img, rq->image_path, NULL) == LISA_OK;
    return 0;
}

/* The job's response: the stored result of a done or failed job (a failed
 * job without one gets its recorded error), "cancelled" for a cancelled
 * one. Returns its kind. */
static result_kind result_response(result_ctx *x, const lisa_queue_job_info *ji,
                                   lisa_response *r, lisa_status *err) {
    memset(r, 0, sizeof *r);
    *err = LISA_OK;
    if (ji->state == LISA_JOB_CANCELLED) {
        r->status = LISA_ERR_CANCELLED;
        snprintf(r->error, sizeof r->error, "cancelled");
        return RES_CANCELLED;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    lisa_status st = lisa_queue_result_get(x->q, ji->id, &buf, &len);
    if (st == LISA_ERR_UNAVAILABLE) {
        *err = st;
        return RES_MISSING;
    }
    if (st == LISA_OK) {
        st = lisa_job_result_decode(buf, len, NULL, r, NULL);
        free(buf);
        if (st != LISA_OK) {
            char why[256];
            snprintf(why, sizeof why, "%s", lisa_error_get());
            fprintf(stderr, "lisa result: %s: stored result unreadable: %s\n", ji->id, why);
            memset(r, 0, sizeof *r);
            r->status = st;
            snprintf(r->error, sizeof r->error, "stored result unreadable: %.200s", why);
            return RES_FAILED;
        }
    } else if (ji->state == LISA_JOB_DONE) {
        fprintf(stderr, "lisa result: %s: its result expired\n", ji->id);
        return RES_MISSING;
    }
    if (ji->state == LISA_JOB_FAILED && r->status == LISA_OK) {
        lisa_response_free(r);
        r->status = LISA_ERR_BACKEND;
        snprintf(r->error, sizeof r->error, "%.255s", ji->error[0] ? ji->error : "failed");
    }
    return r->status == LISA_OK ? RES_DONE : RES_FAILED;
}

/* One job: its files and lines. LISA_OK unless Redis went away. */
static lisa_status result_job(result_ctx *x, const char *id) {
    lisa_queue_job_info ji;
    lisa_status st = lisa_queue_job_get(x->q, id, &ji);
    if (st == LISA_ERR_NOTFOUND) {
        fprintf(stderr, "lisa result: %s: no such job (unknown, or its record expired)\n", id);
        x->count[RES_MISSING]++;
        return LISA_OK;
    }
    if (st != LISA_OK) return st;
    if (!lisa_job_state_final(ji.state)) {
        fprintf(stderr, "lisa result: %s: %s (%s)\n", id, result_pending_text(ji.state),
                lisa_job_state_code(ji.state));
        x->count[RES_UNFINISHED]++;
        return LISA_OK;
    }
    lisa_response r;
    lisa_status err;
    result_kind kind = result_response(x, &ji, &r, &err);
    if (err != LISA_OK) return err;
    x->count[kind]++;
    if (kind == RES_MISSING) return LISA_OK;
    lisa_job_request rq;
    int have_rq = result_request(x, id, &rq);
    const lisa_result_ident who = {
        have_rq && rq.custom_id ? rq.custom_id : ji.custom_id[0] ? ji.custom_id : ji.id,
        have_rq ? (rq.image_label ? rq.image_label : rq.image_path) : ji.image,
        have_rq ? rq.prompt : ji.prompt};
    if (kind != RES_DONE) fprintf(stderr, "lisa result: %s (%s): %s\n", id, who.id, r.error);
    if (x->out) {
        lisa_image img;
        int have_img = kind == RES_DONE && !x->no_overlay && have_rq && result_image(&rq, &img);
        if (lisa_result_write(x->out, &who, &r, have_img ? &img : NULL) != LISA_OK) {
            fprintf(stderr, "lisa result: %s\n", lisa_error_get());
            x->write_failures++;
        }
        if (have_img) lisa_image_free(&img);
    }
    char *line = NULL;
    if (lisa_result_format(&who, &r, 0, &line) == LISA_OK) {
        fprintf(x->out ? x->all : stdout, "%s\n", line);
        if (x->errors && kind != RES_DONE) fprintf(x->errors, "%s\n", line);
    } else {
        fprintf(stderr, "lisa result: %s\n", lisa_error_get());
        x->write_failures++;
    }
    free(line);
    lisa_response_free(&r);
    if (have_rq) lisa_job_request_free(&rq);
    return LISA_OK;
}

/* Opens OUT/name for writing; NULL after printing why. */
static FILE *result_open(const char *out, const char *name) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", out, name);
    FILE *f = fopen(path, "wb");
    if (!f) fprintf(stderr, "lisa result: cannot write %s: %s\n", path, strerror(errno));
    return f;
}

static int result_exit(const result_ctx *x) {
    if (x->count[RES_FAILED] || x->write_failures) return CLI_EXIT_FAILED;
    if (x->count[RES_MISSING]) return CLI_EXIT_NOTFOUND;
    if (x->count[RES_UNFINISHED]) return CLI_EXIT_UNFINISHED;
    if (x->count[RES_CANCELLED]) return CLI_EXIT_CANCELLED;
    return CLI_EXIT_OK;
}

static void result_summary(const result_ctx *x, const char *id, int64_t jobs, int json) {
    const int64_t *c = x->count;
    if (json) {
        printf("{\"id\":");
        cli_json_string(stdout, id);
        printf(",\"jobs\":%lld,\"done\":%lld,\"failed\":%lld,\"cancelled\":%lld,\"unfinished\":%lld,"
               "\"missing\":%lld,\"out\":",
               (long long)jobs, (long long)c[RES_DONE], (long long)c[RES_FAILED],
               (long long)c[RES_CANCELLED], (long long)c[RES_UNFINISHED], (long long)c[RES_MISSING]);
        if (x->out) cli_json_string(stdout, x->out);
        else printf("null");
        printf("}\n");
        return;
    }
    if (!x->out) return;
    printf("Wrote %lld results of %s to %s: %lld done, %lld failed, %lld cancelled",
           (long long)(c[RES_DONE] + c[RES_FAILED] + c[RES_CANCELLED]), id, x->out,
           (long long)c[RES_DONE], (long long)c[RES_FAILED], (long long)c[RES_CANCELLED]);
    if (c[RES_UNFINISHED]) printf(", %lld not finished", (long long)c[RES_UNFINISHED]);
    if (c[RES_MISSING]) printf(", %lld missing or expired", (long long)c[RES_MISSING]);
    printf("\n");
}

int cmd_result(int argc, char **argv) {
    const char *out = NULL, *id = NULL;
    int json = 0, no_overlay = 0;
    cli_queue_opts qo = {0};
    const cli_opt opts[] = {
        {"--out", CLI_STRING, &out},
        {"--json", CLI_FLAG, &json},
        {"--no-overlay", CLI_FLAG, &no_overlay},
        CLI_QUEUE_OPTS(&qo),
    };
    char **ids_arg = NULL;
    int n_arg = 0;
    int pr = cli_queue_args_parse("result", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]),
                                  result_help, &ids_arg, &n_arg);
    if (pr) return pr > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    id = n_arg ? ids_arg[0] : NULL;
    free(ids_arg);
    if (n_arg > 1) {
        fprintf(stderr, "lisa result: one JOB or BATCH at a time\n");
        return CLI_EXIT_USAGE;
    }
    if (!id) {
        fprintf(stderr, "lisa result: give a JOB (B12_3) or a BATCH (B12) (see --help)\n");
        return CLI_EXIT_USAGE;
    }
    lisa_redis *r = NULL;
    lisa_queue *q = NULL;
    int rc = cli_queue_connect("result", &qo, &r, &q);
    if (rc) return rc;

    char (*ids)[64] = NULL, one[1][64];
    int n = 1;
    lisa_status st = LISA_OK;
    if (lisa_queue_id_is_batch(id)) {
        lisa_queue_batch_info bi;
        st = lisa_queue_batch_get(q, id, &bi);
        if (st == LISA_OK) st = lisa_queue_batch_jobs(q, id, &ids, &n);
        if (st != LISA_OK) {
            if (st == LISA_ERR_NOTFOUND) fprintf(stderr, "lisa result: no batch %s (unknown, or expired)\n", id);
            else fprintf(stderr, "lisa result: %s\n", lisa_error_get());
            free(ids);
            cli_queue_close(r, q);
            return cli_queue_exit_code(st);
        }
    } else {
        snprintf(one[0], sizeof one[0], "%s", id);
    }
    result_ctx x;
    memset(&x, 0, sizeof x);
    x.q = q;
    x.out = out;
    x.no_overlay = no_overlay;
    if (out && lisa_result_mkdir(out) != LISA_OK) {
        fprintf(stderr, "lisa result: %s\n", lisa_error_get());
        rc = CLI_EXIT_FAILED;
    } else if (out && (!(x.all = result_open(out, "results.jsonl")) ||
                       !(x.errors = result_open(out, "errors.jsonl")))) {
        rc = CLI_EXIT_FAILED;
    }
    for (int i = 0; !rc && i < n; i++) {
        st = result_job(&x, ids ? ids[i] : one[0]);
        if (st != LISA_OK) {
            fprintf(stderr, "lisa result: %s\n", lisa_error_get());
            rc = cli_queue_exit_code(st);
        }
    }
    if (x.all && fclose(x.all)) {
        fprintf(stderr, "lisa result: cannot write %s/results.jsonl: %s\n", out, strerror(errno));
        x.write_failures++;
    }
    if (x.errors && fclose(x.errors)) {
        fprintf(stderr, "lisa result: cannot write %s/errors.jsonl: %s\n", out, strerror(errno));
        x.write_failures++;
    }
    if (!rc) {
        if (x.write_failures) fprintf(stderr, "lisa result: some outputs could not be written\n");
        result_summary(&x, id, n, json);
        rc = result_exit(&x);
    }
    free(ids);
    cli_queue_close(r, q);
    return rc;
}
