/* cmd-submit.c: `lisa submit`: one image and prompt, or a JSONL manifest in
 * the format of `lisa segment --manifest`, into the Redis job queue as a
 * batch (Slurm's sbatch: "Submitted batch B12 (300 jobs)", --parsable,
 * --wait).
 *
 * Two passes over the manifest, so memory stays flat however long it is:
 * the first checks every line without touching Redis (parses, image files
 * there, readable, JPEG or PNG, under --max-image-bytes; prompt not empty,
 * UTF-8 and within the limits; custom_id unique) and prints every problem
 * as "FILE:LINE: reason" (exit 2, nothing queued); the second reads the
 * images one chunk at a time, packs each job (job-codec.h) and queues the
 * chunk in one pipelined call (lisa_queue_submit). Submitting is idempotent
 * per custom_id within a batch, so a run cut short is finished by running
 * it again with --batch.
 *
 * Deliberately not here: running jobs (`lisa worker`), following them
 * beyond --wait (`lisa wait`, `lisa watch`), reading results
 * (`lisa result`). */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli-jobs.h"
#include "cli-queue-show.h"
#include "cli-queue.h"
#include "cli-util.h"
#include "commands.h"
#include "image.h"
#include "job-codec.h"
#include "manifest.h"
#include "queue.h"
#include "redis-conn.h"

/* Jobs per lisa_queue_submit call, and the packed bytes one chunk may hold
 * (inline images are read one chunk at a time). */
#define SUBMIT_CHUNK_JOBS 256
#define SUBMIT_CHUNK_BYTES ((size_t)64 << 20)
/* Validation errors printed before the rest are only counted. */
#define SUBMIT_MAX_ERRORS 20
/* How long a submitter that may not install the queue's functions waits
 * for a starting worker to. */
#define SUBMIT_SETUP_WAIT_S 10

static void submit_help(FILE *f) {
    fprintf(f,
            "usage: lisa submit IMAGE --prompt TEXT [--answer A] [--custom-id ID] [options]\n"
            "       lisa submit --manifest JOBS.jsonl [options]\n"
            "\n"
            "Queues segmentation jobs for `lisa worker`s: one image, or every line of a\n"
            "manifest in the format of `lisa segment --manifest`, as one batch. The whole\n"
            "manifest is checked first (each problem printed as JOBS.jsonl:LINE: reason);\n"
            "if any line is bad nothing is queued. Prints `Submitted batch B12 (300 jobs)`,\n"
            "or `Submitted job B12_0` for one image.\n"
            "\n"
            "options:\n"
            "  --prompt TEXT        the instruction (with IMAGE)\n"
            "  --answer TEXT        teacher-forced answer instead of generation (with IMAGE)\n"
            "  --custom-id ID       the job's id in its results (with IMAGE; default \"0\",\n"
            "                       as lisa segment --image)\n"
            "  --manifest FILE      JSONL, one {\"custom_id\", \"image\", \"prompt\"[, \"answer\"]\n"
            "                       [, \"max_new_tokens\"]} per line; relative image paths are\n"
            "                       relative to the manifest's directory; custom_ids unique\n"
            "  --max-new-tokens N   generation limit (for a manifest: of the lines that give\n"
            "                       none; default: the worker's)\n"
            "  --name NAME          the batch's (and jobs') name, shown by lisa status\n"
            "  --priority P         high, normal (default) or low\n"
            "  --max-attempts N     starts before a job is given up as dead (default 3)\n"
            "  --result-ttl DUR     how long results are kept: 30s, 10m, 2h, 7d (default 7d;\n"
            "                       failed jobs 30d)\n"
            "  --batch BID          add to (or resubmit into) batch BID instead of a new\n"
            "                       one; jobs whose custom_id the batch has are not queued\n"
            "                       again, so an interrupted submit can simply be rerun\n"
            "  --by-path            send each image's absolute path for the workers to read\n"
            "                       under their --image-root directories, instead of the\n"
            "                       image bytes (default: bytes, inline)\n"
            "  --max-image-bytes N  refuse image files larger than N bytes (default 32 MiB)\n"
            "  --dry-run            check everything and print what would be queued; no\n"
            "                       Redis is contacted\n"
            "  --wait               after submitting, wait until every job finished, then\n"
            "                       print a summary line (as lisa wait)\n"
            "  --timeout DUR        with --wait: give up after DUR (exit 5)\n"
            "  --parsable           print only the batch id (the job id for one image)\n"
            "  --json               print one JSON object: batch, job, jobs, queued,\n"
            "                       duplicates (and the wait's counts)\n"
            CLI_QUEUE_HELP
            "  -h, --help           show this help\n"
            "\n"
            "Exit status: 0 submitted (with --wait: every job done), 1 some job failed\n"
            "(--wait) or an error while submitting, 2 usage error or a bad manifest,\n"
            "3 no such batch (--batch), 4 a job was cancelled (--wait, none failed),\n"
            "5 --wait timed out, 69 Redis unreachable, 77 permission denied.\n");
}

typedef struct {
    const char *manifest;      /* NULL: the single image */
    const char *image, *prompt, *answer, *custom_id;
    long max_new;
    int by_path, dry_run, parsable, json, wait;
    double timeout_s;          /* < 0: none */
    lisa_job_limits limits;
    lisa_queue_submit_opts so;
    const char *batch;         /* --batch */
} submit_cfg;

/* ---- custom_id set (duplicates), open addressing ------------------------ */

typedef struct {
    char **id;
    int *line;
    size_t cap, n;
} submit_ids;

static uint64_t submit_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Adds id (seen on line); returns 0, the line it was first seen on, or -1
 * when out of memory. */
static int submit_ids_add(submit_ids *s, const char *id, int line) {
    if (2 * (s->n + 1) > s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 1024;
        char **ids = calloc(cap, sizeof *ids);
        int *lines = calloc(cap, sizeof *lines);
        if (!ids || !lines) {
            free(ids);
            free(lines);
            return -1;
        }
        for (size_t i = 0; i < s->cap; i++) {
            if (!s->id[i]) continue;
            size_t j = submit_hash(s->id[i]) & (cap - 1);
            while (ids[j]) j = (j + 1) & (cap - 1);
            ids[j] = s->id[i];
            lines[j] = s->line[i];
        }
        free(s->id);
        free(s->line);
        s->id = ids;
        s->line = lines;
        s->cap = cap;
    }
    size_t j = submit_hash(id) & (s->cap - 1);
    for (; s->id[j]; j = (j + 1) & (s->cap - 1))
        if (!strcmp(s->id[j], id)) return s->line[j];
    if (!(s->id[j] = strdup(id))) return -1;
    s->line[j] = line;
    s->n++;
    return 0;
}

static void submit_ids_free(submit_ids *s) {
    for (size_t i = 0; i < s->cap; i++) free(s->id[i]);
    free(s->id);
    free(s->line);
    memset(s, 0, sizeof *s);
}

/* ---- checking one job ---------------------------------------------------- */

/* An item as the source gave it, with the single-image options applied. */
static lisa_status submit_item_fix(lisa_manifest_item *it, const submit_cfg *c) {
    if (!c->manifest && c->custom_id) {
        char *id = strdup(c->custom_id);
        if (!id) return lisa_error_set(LISA_ERR_NOMEM, "out of memory");
        free(it->custom_id);
        it->custom_id = id;
    }
    if (!it->max_new_tokens && c->max_new > 0) it->max_new_tokens = (int)c->max_new;
    return LISA_OK;
}

/* Checks the image file (there, regular, not empty, under the cap, JPEG or
 * PNG by its magic bytes); *size gets its size. by_path: real (PATH_MAX)
 * gets its absolute path. */
static lisa_status submit_image_check(const char *path, const submit_cfg *c, long long *size,
                                      char *real) {
    struct stat sb;
    if (stat(path, &sb) != 0)
        return lisa_error_set(LISA_ERR_IO, "image %s: %s", path,
                              errno == ENOENT ? "no such file" : strerror(errno));
    if (!S_ISREG(sb.st_mode)) return lisa_error_set(LISA_ERR_IO, "image %s is not a regular file", path);
    if (sb.st_size == 0) return lisa_error_set(LISA_ERR_FORMAT, "image %s is empty", path);
    if ((uint64_t)sb.st_size > c->limits.max_image_bytes)
        return lisa_error_set(LISA_ERR_ARG, "image %s is %lld bytes, over --max-image-bytes %zu",
                              path, (long long)sb.st_size, c->limits.max_image_bytes);
    FILE *f = fopen(path, "rb");
    if (!f) return lisa_error_set(LISA_ERR_IO, "cannot read image %s: %s", path, strerror(errno));
    uint8_t m[8] = {0};
    size_t got = fread(m, 1, sizeof m, f);
    fclose(f);
    static const uint8_t png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    int jpeg = got >= 3 && m[0] == 0xff && m[1] == 0xd8 && m[2] == 0xff;
    if (!jpeg && !(got == 8 && !memcmp(m, png, 8)))
        return lisa_error_set(LISA_ERR_FORMAT, "image %s is not a JPEG or PNG file", path);
    if (c->by_path && !realpath(path, real))
        return lisa_error_set(LISA_ERR_IO, "image %s: %s", path, strerror(errno));
    *size = (long long)sb.st_size;
    return LISA_OK;
}

/* The job's request (image bytes not set; by path: real as its path). */
static lisa_job_request submit_request(const lisa_manifest_item *it, const char *real, int by_path) {
    lisa_job_request rq = {.custom_id = it->custom_id, .image_path = by_path ? (char *)real : NULL,
                           .image_label = it->image, .prompt = it->prompt, .answer = it->answer,
                           .max_new_tokens = it->max_new_tokens};
    return rq;
}

/* Every check of one parsed job that needs no Redis; the fields' limits and
 * UTF-8 are the codec's (a request packed by path). */
static lisa_status submit_item_check(const lisa_manifest_item *it, const submit_cfg *c,
                                     long long *size) {
    if (!it->prompt[0]) return lisa_error_set(LISA_ERR_ARG, "empty prompt");
    char real[PATH_MAX] = "";
    LISA_TRY(submit_image_check(it->image, c, size, real));
    lisa_job_request rq = submit_request(it, real, 1);
    if (!c->by_path) rq.image_path = it->image;
    uint8_t *buf = NULL;
    size_t len = 0;
    lisa_status st = lisa_job_request_encode(&rq, &c->limits, &buf, &len);
    free(buf);
    return st;
}

/* The manifest parser's reason without its "manifest line N: " prefix. */
static const char *submit_reason(const char *msg) {
    if (!strncmp(msg, "manifest line ", 14)) {
        const char *p = strstr(msg, ": ");
        if (p) return p + 2;
    }
    return msg;
}

/* Pass 1: checks every job; prints the problems. Returns the number of
 * bad lines (*n_jobs, *bytes: the good jobs and their image bytes), 1 for
 * an empty manifest, -1 when it cannot be read. */
static int submit_validate(const submit_cfg *c, int *n_jobs, long long *bytes) {
    cli_job_source src;
    int total = 0, bad = 0;
    *n_jobs = 0;
    *bytes = 0;
    if (cli_job_source_open(&src, "submit", c->manifest, c->image, c->prompt, c->answer, &total))
        return -1;
    submit_ids ids = {0};
    lisa_manifest_item it;
    lisa_status st;
    while (cli_job_source_next(&src, &it, &st)) {
        long long size = 0;
        if (st == LISA_OK) st = submit_item_fix(&it, c);
        if (st == LISA_OK) st = submit_item_check(&it, c, &size);
        /* every line's id counts, bad lines' too: each error is reported */
        int first = it.custom_id ? submit_ids_add(&ids, it.custom_id, src.lineno) : 0;
        if (first < 0) st = lisa_error_set(LISA_ERR_NOMEM, "out of memory");
        else if (first > 0 && st == LISA_OK)
            st = lisa_error_set(LISA_ERR_ARG, "duplicate custom_id \"%s\" (first on line %d)",
                                it.custom_id, first);
        if (st != LISA_OK) {
            if (++bad <= SUBMIT_MAX_ERRORS) {
                if (c->manifest)
                    fprintf(stderr, "%s:%d: %s\n", c->manifest, src.lineno, submit_reason(lisa_error_get()));
                else fprintf(stderr, "lisa submit: %s\n", lisa_error_get());
            }
        } else {
            (*n_jobs)++;
            *bytes += size;
        }
        lisa_manifest_item_free(&it);
    }
    if (bad > SUBMIT_MAX_ERRORS)
        fprintf(stderr, "%s: ... and %d more bad lines\n", c->manifest, bad - SUBMIT_MAX_ERRORS);
    if (c->manifest && bad)
        fprintf(stderr, "lisa submit: %d of %d lines of %s are bad; nothing was queued\n", bad,
                bad + *n_jobs, c->manifest);
    else if (c->manifest && !*n_jobs) {
        fprintf(stderr, "lisa submit: %s has no jobs\n", c->manifest);
        bad = 1;
    }
    cli_job_source_close(&src);
    submit_ids_free(&ids);
    return bad;
}

/* ---- queueing ------------------------------------------------------------ */

/* One chunk of packed jobs waiting to be queued. */
typedef struct {
    lisa_queue_submit_item item[SUBMIT_CHUNK_JOBS];
    uint8_t *req[SUBMIT_CHUNK_JOBS];
    lisa_manifest_item src[SUBMIT_CHUNK_JOBS];
    char ids[SUBMIT_CHUNK_JOBS][64];
    int n;
    size_t bytes;
    /* the jobs the batch does not have yet, as handed to lisa_queue_submit */
    lisa_queue_submit_item todo[SUBMIT_CHUNK_JOBS];
    char todo_ids[SUBMIT_CHUNK_JOBS][64];
} submit_chunk;

static void submit_chunk_clear(submit_chunk *k) {
    for (int i = 0; i < k->n; i++) {
        free(k->req[i]);
        lisa_manifest_item_free(&k->src[i]);
    }
    k->n = 0;
    k->bytes = 0;
}

typedef struct {
    lisa_redis *r;
    lisa_queue *q;
    char bid[48];
    int first_index;           /* the batch index of the run's first new job */
    int offered;               /* indexes handed to lisa_queue_submit so far */
    int queued, dups;          /* jobs handled so far, of them already in the batch */
    char job[64];              /* the first job's id (single image) */
} submit_state;

/* --batch: which of the chunk's custom_ids the batch has already (HMGET of
 * P:batch:<b>:cid, queue.h); known[i] set and k->ids[i] their job id. So
 * the new jobs of a resubmit get the next indexes, without gaps. */
static lisa_status submit_known(submit_state *s, submit_chunk *k, int *known) {
    char key[256];
    snprintf(key, sizeof key, "%s:batch:%s:cid", lisa_queue_prefix(s->q), s->bid);
    const char *argv[SUBMIT_CHUNK_JOBS + 2] = {"HMGET", key};
    for (int i = 0; i < k->n; i++) argv[i + 2] = k->item[i].custom_id;
    redisReply *rep = lisa_redis_cmd(s->r, k->n + 2, argv, NULL);
    lisa_status st = lisa_redis_check(s->r, rep, "HMGET of the batch's custom_ids");
    if (st != LISA_OK) {
        if (rep) freeReplyObject(rep);
        return st;
    }
    for (int i = 0; i < k->n; i++) {
        const redisReply *e = rep->type == REDIS_REPLY_ARRAY && (size_t)i < rep->elements
                                  ? rep->element[i] : NULL;
        known[i] = e && e->type == REDIS_REPLY_STRING;
        if (known[i]) snprintf(k->ids[i], sizeof k->ids[i], "%.*s", (int)e->len, e->str);
    }
    freeReplyObject(rep);
    return LISA_OK;
}

/* Queues the chunk's new jobs (retrying once after reconnecting when the
 * connection broke: resubmitting is idempotent). */
static lisa_status submit_flush(submit_state *s, submit_chunk *k, const submit_cfg *c) {
    if (!k->n) return LISA_OK;
    int known[SUBMIT_CHUNK_JOBS] = {0}, map[SUBMIT_CHUNK_JOBS], n_new = 0, n_dup = 0;
    if (c->batch) {
        lisa_status st = submit_known(s, k, known);
        if (st == LISA_ERR_UNAVAILABLE && !lisa_redis_ok(s->r) &&
            lisa_redis_reconnect(s->r, 10.0, NULL) == LISA_OK)
            st = submit_known(s, k, known);
        LISA_TRY(st);
    }
    for (int i = 0; i < k->n; i++)
        if (!known[i]) {
            map[n_new] = i;
            k->todo[n_new++] = k->item[i];
        }
    if (n_new) {
        int first = s->first_index + s->offered;
        lisa_status st = lisa_queue_submit(s->q, s->bid, first, k->todo, n_new, &c->so,
                                           k->todo_ids, &n_dup);
        if (st == LISA_ERR_UNAVAILABLE && !lisa_redis_ok(s->r) &&
            lisa_redis_reconnect(s->r, 10.0, NULL) == LISA_OK)
            st = lisa_queue_submit(s->q, s->bid, first, k->todo, n_new, &c->so, k->todo_ids,
                                   &n_dup);
        LISA_TRY(st);
        for (int j = 0; j < n_new; j++) memcpy(k->ids[map[j]], k->todo_ids[j], sizeof k->ids[0]);
        s->offered += n_new;
    }
    if (!s->queued) snprintf(s->job, sizeof s->job, "%s", k->ids[0]);
    s->queued += k->n;
    s->dups += n_dup + (k->n - n_new);
    submit_chunk_clear(k);
    return LISA_OK;
}

/* Packs one job into the chunk: reads its image unless by path. */
static lisa_status submit_pack(submit_chunk *k, lisa_manifest_item *it, const submit_cfg *c) {
    char real[PATH_MAX] = "";
    if (c->by_path && !realpath(it->image, real))
        return lisa_error_set(LISA_ERR_IO, "image %s: %s", it->image, strerror(errno));
    lisa_job_request rq = submit_request(it, real, c->by_path);
    uint8_t *img = NULL;
    size_t img_len = 0;
    if (!c->by_path) {
        lisa_image_limits il = {.max_file_bytes = c->limits.max_image_bytes};
        LISA_TRY(lisa_image_read_file(it->image, &il, &img, &img_len));
        rq.image = img;
        rq.image_size = img_len;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    lisa_status st = lisa_job_request_encode(&rq, &c->limits, &buf, &len);
    free(img);
    if (st != LISA_OK) return st;
    int i = k->n++;
    k->req[i] = buf;
    k->src[i] = *it;
    memset(it, 0, sizeof *it);
    k->item[i] = (lisa_queue_submit_item){.custom_id = k->src[i].custom_id, .req = buf,
                                          .req_len = len, .image = k->src[i].image,
                                          .prompt = k->src[i].prompt};
    k->bytes += len;
    return LISA_OK;
}

/* Pass 2: packs and queues every job, or in a dry run prints it. Returns
 * 0, or the exit code after printing what went wrong (and how far it got). */
static int submit_run(submit_state *s, const submit_cfg *c) {
    cli_job_source src;
    int total = 0, rc = 0;
    if (cli_job_source_open(&src, "submit", c->manifest, c->image, c->prompt, c->answer, &total))
        return CLI_EXIT_FAILED;
    submit_chunk *k = calloc(1, sizeof *k);
    if (!k) {
        fprintf(stderr, "lisa submit: out of memory\n");
        cli_job_source_close(&src);
        return CLI_EXIT_FAILED;
    }
    lisa_manifest_item it;
    lisa_status ps;
    while (!rc && cli_job_source_next(&src, &it, &ps)) {
        /* A job that passed pass 1 but fails now: its file changed since. */
        lisa_status st = ps == LISA_OK ? submit_item_fix(&it, c) : ps;
        long long size = 0;
        char real[PATH_MAX] = "";
        if (st == LISA_OK && c->dry_run) st = submit_image_check(it.image, c, &size, real);
        else if (st == LISA_OK) st = submit_pack(k, &it, c);
        if (st != LISA_OK) {
            rc = CLI_EXIT_FAILED;
            if (c->manifest)
                fprintf(stderr, "lisa submit: %s:%d: %s\n", c->manifest, src.lineno, lisa_error_get());
            else fprintf(stderr, "lisa submit: %s\n", lisa_error_get());
        } else if (c->dry_run) {
            if (!c->json && !c->parsable)
                printf("would queue %s: %s (%s, %lld bytes)\n", it.custom_id,
                       c->by_path ? real : it.image, c->by_path ? "by path" : "inline", size);
            s->queued++;
        } else if (k->n == SUBMIT_CHUNK_JOBS || k->bytes >= SUBMIT_CHUNK_BYTES) {
            st = submit_flush(s, k, c);
            if (st != LISA_OK) {
                rc = cli_queue_exit_code(st);
                fprintf(stderr, "lisa submit: %s\n", lisa_error_get());
            }
        }
        lisa_manifest_item_free(&it);
    }
    if (!rc && !c->dry_run) {
        lisa_status st = submit_flush(s, k, c);
        if (st != LISA_OK) {
            rc = cli_queue_exit_code(st);
            fprintf(stderr, "lisa submit: %s\n", lisa_error_get());
        }
    }
    if (rc && !c->dry_run)
        fprintf(stderr,
                "lisa submit: %d jobs were queued into %s before this; run the same command "
                "with --batch %s to queue the rest (jobs already there are not queued twice)\n",
                s->queued, s->bid, s->bid);
    submit_chunk_clear(k);
    free(k);
    cli_job_source_close(&src);
    return rc;
}

/* ---- waiting ------------------------------------------------------------- */

static double submit_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct {
    int64_t total, done, failed, cancelled;
    int timed_out;
    double seconds;
    char error[512];           /* single job: why it failed */
} submit_wait_result;

/* The counts now: of the single job (job non-empty) or of the batch;
 * *final: every one of them is final. */
static lisa_status submit_counts(lisa_queue *q, const char *bid, const char *job,
                                 submit_wait_result *w, int *final) {
    if (job[0]) {
        lisa_queue_job_info ji;
        LISA_TRY(lisa_queue_job_get(q, job, &ji));
        w->total = 1;
        w->done = ji.state == LISA_JOB_DONE;
        w->failed = ji.state == LISA_JOB_FAILED;
        w->cancelled = ji.state == LISA_JOB_CANCELLED;
        snprintf(w->error, sizeof w->error, "%s", ji.error);
        *final = lisa_job_state_final(ji.state);
        return LISA_OK;
    }
    lisa_queue_batch_info bi;
    LISA_TRY(lisa_queue_batch_get(q, bid, &bi));
    w->total = bi.total;
    w->done = bi.done;
    w->failed = bi.failed;
    w->cancelled = bi.cancelled;
    *final = bi.done + bi.failed + bi.cancelled >= bi.total;
    return LISA_OK;
}

/* Waits until the job (or the batch) is final or the timeout passes,
 * woken by P:events from `after` (read before submitting, so no change is
 * missed) and re-reading the counters at least every second. */
static lisa_status submit_wait(submit_state *s, const submit_cfg *c, char *after,
                               submit_wait_result *w) {
    const char *job = c->manifest ? "" : s->job;
    double t0 = submit_now(), last = 0;
    lisa_queue_event ev[64];
    int check = 1;
    for (;;) {
        double now = submit_now();
        if (check || now - last >= 1.0) {
            int final = 0;
            lisa_status st = submit_counts(s->q, s->bid, job, w, &final);
            if (st == LISA_ERR_UNAVAILABLE && !lisa_redis_ok(s->r) &&
                lisa_redis_reconnect(s->r, 30.0, NULL) == LISA_OK)
                continue;
            if (st != LISA_OK) return st;
            last = now;
            if (final) break;
        }
        double left = c->timeout_s >= 0 ? c->timeout_s - (now - t0) : 1.0;
        if (left <= 0) {
            w->timed_out = 1;
            break;
        }
        int block = (int)(1000 * (left < 1.0 ? left : 1.0));
        lisa_status st = LISA_OK;
        int n = lisa_queue_events_read(s->q, after, 64, block > 0 ? block : 1, ev, &st);
        if (n < 0) {
            if (st == LISA_ERR_UNAVAILABLE && !lisa_redis_ok(s->r) &&
                lisa_redis_reconnect(s->r, 30.0, NULL) == LISA_OK)
                continue;
            return st;
        }
        check = 0;
        for (int i = 0; i < n && !check; i++)
            check = job[0] ? !strcmp(ev[i].job, job) : !strcmp(ev[i].batch, s->bid);
    }
    w->seconds = submit_now() - t0;
    return LISA_OK;
}

static int submit_wait_exit(const submit_wait_result *w) {
    if (w->timed_out) return CLI_EXIT_TIMEOUT;
    if (w->failed) return CLI_EXIT_FAILED;
    if (w->cancelled) return CLI_EXIT_CANCELLED;
    return CLI_EXIT_OK;
}

/* The --wait summary line, as lisa wait prints it: "B12: 300 jobs final:
 * 298 done, 2 failed, 0 cancelled" (a job's error follows). */
static void submit_wait_print(FILE *f, const submit_state *s, const submit_cfg *c,
                              const submit_wait_result *w) {
    const char *label = c->manifest ? s->bid : s->job;
    long long final = (long long)(w->done + w->failed + w->cancelled);
    if (w->timed_out)
        fprintf(f, "lisa submit: timed out after %.1f s: %s: %lld of %lld jobs final: ", w->seconds,
                label, final, (long long)w->total);
    else fprintf(f, "%s: %lld jobs final: ", label, (long long)w->total);
    fprintf(f, "%lld done, %lld failed, %lld cancelled", (long long)w->done, (long long)w->failed,
            (long long)w->cancelled);
    if (!c->manifest && w->failed && w->error[0]) fprintf(f, " (%s)", w->error);
    fputc('\n', f);
}

/* ---- the command ---------------------------------------------------------- */

/* --batch: the batch exists; the run's first index follows its last job. */
static int submit_batch_existing(submit_state *s, const char *bid) {
    lisa_queue_batch_info bi;
    lisa_status st = lisa_queue_batch_get(s->q, bid, &bi);
    char (*ids)[64] = NULL;
    int n = 0;
    if (st == LISA_OK) st = lisa_queue_batch_jobs(s->q, bid, &ids, &n);
    if (st != LISA_OK) {
        if (st == LISA_ERR_NOTFOUND) fprintf(stderr, "lisa submit: no batch %s (unknown, or expired)\n", bid);
        else fprintf(stderr, "lisa submit: %s\n", lisa_error_get());
        free(ids);
        return cli_queue_exit_code(st);
    }
    int next = 0;
    for (int i = 0; i < n; i++) {
        const char *u = strrchr(ids[i], '_');
        long v = u ? strtol(u + 1, NULL, 10) : -1;
        if (v >= next && v < INT_MAX) next = (int)v + 1;
    }
    free(ids);
    snprintf(s->bid, sizeof s->bid, "%s", bid);
    s->first_index = next;
    return 0;
}

/* A new batch. On a Redis no worker has set up yet (no function library)
 * the library and groups are installed first, when this user may; when it
 * may not (an ACL submitter), a worker that is starting is given
 * SUBMIT_SETUP_WAIT_S to install them. */
static lisa_status submit_batch_new(submit_state *s, const submit_cfg *c) {
    lisa_status st = lisa_queue_batch_new(s->q, &c->so, s->bid, sizeof s->bid);
    if (st == LISA_OK || !strstr(lisa_error_get(), "Function not found")) return st;
    if (lisa_queue_setup(s->q) == LISA_OK) return lisa_queue_batch_new(s->q, &c->so, s->bid, sizeof s->bid);
    char why[400];
    snprintf(why, sizeof why, "%s", lisa_error_get());
    fprintf(stderr, "lisa submit: the queue's functions are not installed and this user may not "
                    "install them; waiting up to %d s for a worker to\n",
            SUBMIT_SETUP_WAIT_S);
    for (double t0 = submit_now(); submit_now() - t0 < SUBMIT_SETUP_WAIT_S;) {
        struct timespec pause = {0, 250 * 1000 * 1000};
        nanosleep(&pause, NULL);
        st = lisa_queue_batch_new(s->q, &c->so, s->bid, sizeof s->bid);
        if (st == LISA_OK || !strstr(lisa_error_get(), "Function not found")) return st;
    }
    return lisa_error_set(LISA_ERR_UNAVAILABLE,
                          "the queue's functions are not installed in this Redis, and installing "
                          "them failed (%s): start a lisa worker first", why);
}

static void submit_print(const submit_state *s, const submit_cfg *c, int n_jobs, long long bytes,
                         const submit_wait_result *w) {
    if (c->json) {
        printf("{\"dry_run\":%s,\"batch\":", c->dry_run ? "true" : "false");
        cli_json_string(stdout, s->bid);
        if (!c->manifest && s->job[0]) {
            printf(",\"job\":");
            cli_json_string(stdout, s->job);
        }
        printf(",\"jobs\":%d,\"queued\":%d,\"duplicates\":%d,\"image_bytes\":%lld,\"by_path\":%s",
               n_jobs, c->dry_run ? 0 : s->queued - s->dups, s->dups, bytes,
               c->by_path ? "true" : "false");
        if (w)
            printf(",\"wait\":{\"total\":%lld,\"done\":%lld,\"failed\":%lld,\"cancelled\":%lld,"
                   "\"timed_out\":%s,\"seconds\":%.3f}",
                   (long long)w->total, (long long)w->done, (long long)w->failed,
                   (long long)w->cancelled, w->timed_out ? "true" : "false", w->seconds);
        printf("}\n");
    } else if (c->dry_run) {
        if (c->parsable) printf("%d\n", n_jobs);
        else
            printf("Dry run: %d job%s valid (%lld bytes of images, %s); nothing was queued\n",
                   n_jobs, n_jobs == 1 ? "" : "s", bytes, c->by_path ? "by path" : "inline");
    } else if (c->parsable) {
        printf("%s\n", c->manifest ? s->bid : s->job);
    } else if (!c->manifest) {
        printf("Submitted job %s%s\n", s->job, s->dups ? " (already in the batch: not queued again)" : "");
    } else {
        printf("Submitted batch %s (%d jobs", s->bid, n_jobs);
        if (s->dups) printf(", %d already there: not queued again", s->dups);
        printf(")\n");
    }
    fflush(stdout);
}

/* Options into the configuration; 0, or the exit code after a usage error. */
static int submit_config(submit_cfg *c, const char *timeout, const char *prio, const char *ttl,
                         long max_attempts, long max_bytes) {
    if (!c->manifest == !c->image) {
        fprintf(stderr, "lisa submit: give either IMAGE (with --prompt) or --manifest (see --help)\n");
        return CLI_EXIT_USAGE;
    }
    if (c->image && !c->prompt) {
        fprintf(stderr, "lisa submit: IMAGE needs --prompt\n");
        return CLI_EXIT_USAGE;
    }
    if (c->manifest && (c->prompt || c->answer || c->custom_id)) {
        fprintf(stderr, "lisa submit: --prompt, --answer and --custom-id go with IMAGE; a "
                        "manifest gives them per line\n");
        return CLI_EXIT_USAGE;
    }
    if (c->custom_id && !*c->custom_id) {
        fprintf(stderr, "lisa submit: --custom-id is empty\n");
        return CLI_EXIT_USAGE;
    }
    if (timeout && !c->wait) {
        fprintf(stderr, "lisa submit: --timeout goes with --wait\n");
        return CLI_EXIT_USAGE;
    }
    c->timeout_s = -1;
    if (timeout && (c->timeout_s = cli_parse_duration(timeout)) < 0) {
        fprintf(stderr, "lisa submit: --timeout expects a duration (30, 30s, 10m, 2h, 7d), got '%s'\n",
                timeout);
        return CLI_EXIT_USAGE;
    }
    int p = prio ? lisa_job_priority_parse(prio) : LISA_PRIO_NORMAL;
    if (p < 0) {
        fprintf(stderr, "lisa submit: --priority expects high, normal or low, got '%s'\n", prio);
        return CLI_EXIT_USAGE;
    }
    c->so.priority = (lisa_job_priority)p;
    if (max_attempts == 0 || max_attempts > 1000) {
        fprintf(stderr, "lisa submit: --max-attempts must be 1..1000\n");
        return CLI_EXIT_USAGE;
    }
    c->so.max_attempts = max_attempts < 0 ? 0 : (int)max_attempts;
    if (ttl) {
        double sec = cli_parse_duration(ttl);
        if (sec <= 0) {
            fprintf(stderr, "lisa submit: --result-ttl expects a duration (30s, 10m, 2h, 7d), got '%s'\n",
                    ttl);
            return CLI_EXIT_USAGE;
        }
        c->so.result_ttl_ms = (int64_t)(sec * 1000.0);
    }
    if (c->batch && !lisa_queue_id_is_batch(c->batch)) {
        fprintf(stderr, "lisa submit: --batch expects a batch id like B12, got '%s'\n", c->batch);
        return CLI_EXIT_USAGE;
    }
    if (c->max_new > 1000000) {
        fprintf(stderr, "lisa submit: --max-new-tokens must be at most 1000000\n");
        return CLI_EXIT_USAGE;
    }
    if (c->wait && c->dry_run) {
        fprintf(stderr, "lisa submit: --wait and --dry-run do not go together\n");
        return CLI_EXIT_USAGE;
    }
    lisa_job_limits_default(&c->limits);
    if (max_bytes > 0) c->limits.max_image_bytes = (size_t)max_bytes;
    if (c->limits.max_message_bytes < c->limits.max_image_bytes + ((size_t)1 << 20))
        c->limits.max_message_bytes = c->limits.max_image_bytes + ((size_t)1 << 20);
    return 0;
}

int cmd_submit(int argc, char **argv) {
    submit_cfg c;
    memset(&c, 0, sizeof c);
    cli_queue_opts qo = {0};
    const char *timeout = NULL, *prio = NULL, *ttl = NULL;
    long max_attempts = -1, max_bytes = 0;
    const cli_opt opts[] = {
        {"--prompt", CLI_STRING, &c.prompt},         {"--answer", CLI_STRING, &c.answer},
        {"--custom-id", CLI_STRING, &c.custom_id},   {"--manifest", CLI_STRING, &c.manifest},
        {"--max-new-tokens", CLI_COUNT, &c.max_new}, {"--name", CLI_STRING, &c.so.name},
        {"--priority", CLI_STRING, &prio},           {"--max-attempts", CLI_COUNT, &max_attempts},
        {"--result-ttl", CLI_STRING, &ttl},          {"--batch", CLI_STRING, &c.batch},
        {"--by-path", CLI_FLAG, &c.by_path},         {"--max-image-bytes", CLI_COUNT, &max_bytes},
        {"--dry-run", CLI_FLAG, &c.dry_run},         {"--wait", CLI_FLAG, &c.wait},
        {"--timeout", CLI_STRING, &timeout},         {"--parsable", CLI_FLAG, &c.parsable},
        {"--json", CLI_FLAG, &c.json},               CLI_QUEUE_OPTS(&qo),
    };
    char **pos = NULL;
    int n_pos = 0;
    int pr = cli_queue_args_parse("submit", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]),
                                  submit_help, &pos, &n_pos);
    if (pr) return pr > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    c.image = n_pos ? pos[0] : NULL;
    free(pos);
    if (n_pos > 1) {
        fprintf(stderr, "lisa submit: one IMAGE at a time; use --manifest for many\n");
        return CLI_EXIT_USAGE;
    }
    int rc = submit_config(&c, timeout, prio, ttl, max_attempts, max_bytes);
    if (rc) return rc;

    int n_jobs = 0;
    long long bytes = 0;
    int bad = submit_validate(&c, &n_jobs, &bytes);
    if (bad) return CLI_EXIT_USAGE;

    submit_state s;
    memset(&s, 0, sizeof s);
    if (c.dry_run) {
        snprintf(s.bid, sizeof s.bid, "%s", c.batch ? c.batch : "");
        rc = submit_run(&s, &c);
        if (!rc) submit_print(&s, &c, n_jobs, bytes, NULL);
        return rc ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    }
    if ((rc = cli_queue_connect("submit", &qo, &s.r, &s.q))) return rc;
    char after[48] = "0-0";
    lisa_status st = c.wait ? lisa_queue_events_last(s.q, after, sizeof after) : LISA_OK;
    if (st != LISA_OK) {
        fprintf(stderr, "lisa submit: %s\n", lisa_error_get());
        cli_queue_close(s.r, s.q);
        return cli_queue_exit_code(st);
    }
    if (c.batch) rc = submit_batch_existing(&s, c.batch);
    else if ((st = submit_batch_new(&s, &c)) != LISA_OK) {
        fprintf(stderr, "lisa submit: %s\n", lisa_error_get());
        rc = cli_queue_exit_code(st);
    }
    if (!rc) rc = submit_run(&s, &c);
    if (rc) {
        cli_queue_close(s.r, s.q);
        return rc;
    }
    if (!c.wait) {
        submit_print(&s, &c, n_jobs, bytes, NULL);
        cli_queue_close(s.r, s.q);
        return CLI_EXIT_OK;
    }
    if (!c.json) submit_print(&s, &c, n_jobs, bytes, NULL);
    submit_wait_result w;
    memset(&w, 0, sizeof w);
    st = submit_wait(&s, &c, after, &w);
    if (st != LISA_OK) {
        fprintf(stderr, "lisa submit: waiting for %s: %s\n", c.manifest ? s.bid : s.job,
                lisa_error_get());
        cli_queue_close(s.r, s.q);
        return cli_queue_exit_code(st);
    }
    if (c.json) submit_print(&s, &c, n_jobs, bytes, &w);
    else submit_wait_print(c.parsable || w.timed_out ? stderr : stdout, &s, &c, &w);
    cli_queue_close(s.r, s.q);
    return submit_wait_exit(&w);
}
