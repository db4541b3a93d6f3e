/* cli-jobs.h: where the batch commands (`lisa segment`, `lisa cluster`) get
 * requests and put results: a JSONL manifest read a line at a time (or the
 * one --image/--prompt request), and the sink that writes each result as
 * soon as it is known (OUT/<custom_id>/ files via result-write.h,
 * OUT/results.jsonl in finish order, --json lines on stdout, failures on
 * stderr, a progress bar on a terminal).
 *
 * Deliberately not here: running requests (the engine or the cluster). */
#ifndef LISA_CLI_JOBS_H
#define LISA_CLI_JOBS_H

#include <stdio.h>

#include "engine.h"
#include "manifest.h"

typedef struct cli_job_source {
    FILE *f;
    char dir[4096];       /* the manifest's directory, "" or ending in '/' */
    char *line;
    size_t cap;
    int lineno;
    int single_left;      /* the single request not yet taken */
    const char *image, *prompt, *answer;
} cli_job_source;

/* Opens a manifest (path non-NULL) or holds the single request; *total is
 * the number of requests (non-empty lines). -1 after printing why the
 * manifest cannot be opened (prefixed "lisa CMD:"). */
int cli_job_source_open(cli_job_source *src, const char *cmd, const char *manifest,
                        const char *image, const char *prompt, const char *answer, int *total);
/* Next item: 1 with *it filled (st its parse status: a malformed line is a
 * failed request with its custom_id), 0 at the end. */
int cli_job_source_next(cli_job_source *src, lisa_manifest_item *it, lisa_status *st);
void cli_job_source_close(cli_job_source *src);

typedef struct cli_job_sink {
    const char *cmd;      /* "segment": messages read "lisa segment: ..." */
    const char *out;      /* OUT directory or NULL */
    FILE *all;            /* OUT/results.jsonl or NULL */
    int json, failures, done, total, tty;
    /* ending on a rank failure, with a second or less before mpirun kills
     * the process: failed requests go to results.jsonl only (no line each
     * on stderr, no directory, no flush per line) */
    int quiet_failures;
} cli_job_sink;

/* Creates OUT and opens OUT/results.jsonl (out may be NULL: stdout only).
 * -1 after printing why OUT cannot be created. */
int cli_job_sink_open(cli_job_sink *k, const char *cmd, const char *out, int json, int total);
/* Writes one result (files, results.jsonl line, stdout) as soon as it is
 * known; r->image, when set, gives overlay.png. */
void cli_job_sink_write(cli_job_sink *k, const lisa_manifest_item *it, const lisa_response *r);
/* Closes results.jsonl; a failed close (the disk filled) is printed and
 * counted in failures. */
void cli_job_sink_close(cli_job_sink *k);

#endif
