/* cli-jobs.c: the manifest source and the result sink of the batch commands
 * (see cli-jobs.h). */
#include "cli-jobs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "result-write.h"

/* Counts the manifest's non-empty lines, for the progress bar. */
static int manifest_count(FILE *f) {
    int n = 0, c, blank = 1;
    while ((c = getc(f)) != EOF) {
        if (c == '\n') {
            n += !blank;
            blank = 1;
        } else if (c != '\r') {
            blank = 0;
        }
    }
    n += !blank;
    rewind(f);
    return n;
}

int cli_job_source_open(cli_job_source *src, const char *cmd, const char *manifest,
                        const char *image, const char *prompt, const char *answer, int *total) {
    memset(src, 0, sizeof *src);
    *total = 1;
    if (!manifest) {
        src->single_left = 1;
        src->image = image;
        src->prompt = prompt;
        src->answer = answer;
        return 0;
    }
    src->f = fopen(manifest, "rb");
    if (!src->f) {
        fprintf(stderr, "lisa %s: cannot open manifest %s: %s\n", cmd, manifest, strerror(errno));
        return -1;
    }
    snprintf(src->dir, sizeof src->dir, "%s", manifest);
    char *slash = strrchr(src->dir, '/');
    if (slash) slash[1] = 0;
    else src->dir[0] = 0;
    *total = manifest_count(src->f);
    return 0;
}

int cli_job_source_next(cli_job_source *src, lisa_manifest_item *it, lisa_status *st) {
    if (!src->f) {
        if (!src->single_left) return 0;
        src->single_left = 0;
        memset(it, 0, sizeof *it);
        it->custom_id = strdup("0");
        it->image = strdup(src->image);
        it->prompt = strdup(src->prompt);
        it->answer = src->answer ? strdup(src->answer) : NULL;
        *st = it->custom_id && it->image && it->prompt && (!src->answer || it->answer)
                  ? LISA_OK
                  : lisa_error_set(LISA_ERR_NOMEM, "out of memory");
        return 1;
    }
    ssize_t len;
    while ((len = getline(&src->line, &src->cap, src->f)) >= 0) {
        src->lineno++;
        while (len > 0 && (src->line[len - 1] == '\n' || src->line[len - 1] == '\r'))
            src->line[--len] = 0;
        if (len == 0) continue;
        *st = lisa_manifest_line_parse(src->line, (size_t)len, src->lineno, src->dir, it);
        return 1;
    }
    return 0;
}

void cli_job_source_close(cli_job_source *src) {
    if (src->f) fclose(src->f);
    free(src->line);
    memset(src, 0, sizeof *src);
}

int cli_job_sink_open(cli_job_sink *k, const char *cmd, const char *out, int json, int total) {
    memset(k, 0, sizeof *k);
    k->cmd = cmd;
    k->out = out;
    k->json = json;
    k->total = total;
    k->tty = isatty(2);
    if (!out) return 0;
    if (lisa_result_mkdir(out) != LISA_OK) {
        fprintf(stderr, "lisa %s: %s\n", cmd, lisa_error_get());
        return -1;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/results.jsonl", out);
    k->all = fopen(path, "wb");
    if (!k->all) fprintf(stderr, "lisa %s: cannot write %s: %s\n", cmd, path, strerror(errno));
    return 0;
}

static void progress_bar(int done, int total) {
    int width = 30, fill = total ? done * width / total : width;
    fprintf(stderr, "\r[");
    for (int i = 0; i < width; i++) fputc(i < fill ? '#' : ' ', stderr);
    fprintf(stderr, "] %d/%d", done, total);
    if (done == total) fputc('\n', stderr);
    fflush(stderr);
}

void cli_job_sink_write(cli_job_sink *k, const lisa_manifest_item *it, const lisa_response *r) {
    const lisa_result_ident who = {it->custom_id, it->image, it->prompt};
    int failed = r->status != LISA_OK;
    if (failed) k->failures++;
    if (failed && !k->quiet_failures) {
        fprintf(stderr, "%slisa %s: %s: %s\n", k->tty ? "\r" : "", k->cmd, it->custom_id, r->error);
    }
    if (k->out && !(failed && k->quiet_failures) &&
        lisa_result_write(k->out, &who, r, r->image.rgb ? &r->image : NULL) != LISA_OK) {
        fprintf(stderr, "lisa %s: %s\n", k->cmd, lisa_error_get());
        k->failures += !failed;
    }
    char *line = NULL;
    if (lisa_result_format(&who, r, 0, &line) != LISA_OK)
        fprintf(stderr, "lisa %s: %s\n", k->cmd, lisa_error_get());
    if (k->all && line) {
        fprintf(k->all, "%s\n", line);
        if (!k->quiet_failures) fflush(k->all);
        if (ferror(k->all)) { /* disk full: this result's line is lost, say so */
            fprintf(stderr, "lisa %s: %s: cannot write %s/results.jsonl: %s\n", k->cmd,
                    it->custom_id, k->out, strerror(errno));
            k->failures += !failed;
            clearerr(k->all);
        }
    }
    if (k->json && line) printf("%s\n", line);
    else if (!k->json && !k->out && !failed) printf("%s\n", r->text ? r->text : "");
    fflush(stdout);
    free(line);
    k->done++;
    if (k->tty && k->total > 1) progress_bar(k->done, k->total);
}

void cli_job_sink_close(cli_job_sink *k) {
    if (k->all && fclose(k->all) != 0) {
        fprintf(stderr, "lisa %s: cannot write %s/results.jsonl: %s\n", k->cmd, k->out,
                strerror(errno));
        k->failures++;
    }
    k->all = NULL;
}
