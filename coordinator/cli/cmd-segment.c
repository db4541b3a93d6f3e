/* cmd-segment.c: `lisa segment`: LISA on one image and prompt, or on a JSONL
 * manifest of many, in one process (no MPI, no Redis).
 *
 * Output per request, under OUT/<custom_id>/: answer.txt, mask_K.png (0/255,
 * one per [SEG] in order), overlay.png (LISA chat.py's red 50% blend of all
 * masks), result.json (answer, per mask COCO RLE {size, counts}, area, bbox
 * [x, y, w, h], SAM's IoU prediction; or the error of a failed request); and
 * OUT/results.jsonl, one result line per request in manifest order, written
 * as each batch finishes (memory stays flat over long manifests). The
 * encoding is result-write.h's; this file reads the manifest, runs the
 * engine and prints. A bad request (missing or corrupt image, empty or too
 * long prompt, malformed manifest line) fails alone with its reason; the
 * others finish. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>

#include "cli-util.h"
#include "commands.h"
#include "engine.h"
#include "result-write.h"

static void segment_help(FILE *f) {
    fprintf(f,
            "usage: lisa segment --model DIR --image IMG --prompt TEXT [options]\n"
            "       lisa segment --model DIR --manifest JOBS.jsonl --out DIR [options]\n"
            "\n"
            "Runs LISA: answers the prompt about the image and returns one binary mask\n"
            "per [SEG] token it generates.\n"
            "\n"
            "options:\n"
            "  --model DIR          converted LISA model directory (docs/model-format.md)\n"
            "  --image IMG          JPEG or PNG image\n"
            "  --prompt TEXT        the instruction, e.g. \"segment the food richest in vitamin C\"\n"
            "  --answer TEXT        teacher-forced answer instead of generation (LISA's\n"
            "                       evaluation uses \"[SEG].\")\n"
            "  --manifest FILE      JSONL, one {\"custom_id\", \"image\", \"prompt\"[, \"answer\"]}\n"
            "                       per line; relative image paths are relative to the\n"
            "                       manifest's directory\n"
            "  --out DIR            write results under DIR/<custom_id>/ and DIR/results.jsonl\n"
            "                       (required with --manifest; with --image the id is \"0\")\n"
            "  --json               print each result as JSON on stdout\n"
            "  --max-new-tokens N   generation limit (default 512, as chat.py)\n"
            "  --batch N            requests decoded together (default 8)\n"
            "  --device DEV         cpu (default), cuda or cuda:N\n"
            "  --dtype T            fp32, bf16 or fp16 (default: fp32 on cpu, bf16 on cuda)\n"
            "  --threads N          CPU threads (default: all cores)\n"
            "  --max-image-bytes N  refuse image files larger than N bytes (default 100 MB)\n"
            "  --max-image-pixels N refuse images of more than N pixels (default 100 million)\n"
            "  -h, --help           show this help\n"
            "\n"
            "Exit status: 0 when every request succeeded, 1 when any failed (each\n"
            "failure is in its result.json and on stderr), 2 usage error.\n");
}

typedef struct {
    lisa_request *reqs;
    char **owned;       /* strings to free */
    int n, cap, n_owned, cap_owned;
    char **line_errors; /* per request: a manifest error, or NULL */
} seg_jobs;

static char *jobs_keep(seg_jobs *j, char *s) {
    if (!s) return NULL;
    if (j->n_owned == j->cap_owned) {
        int cap = j->cap_owned ? j->cap_owned * 2 : 64;
        char **o = realloc(j->owned, (size_t)cap * sizeof *o);
        if (!o) return NULL;
        j->owned = o;
        j->cap_owned = cap;
    }
    j->owned[j->n_owned++] = s;
    return s;
}

static lisa_request *jobs_add(seg_jobs *j) {
    if (j->n == j->cap) {
        int cap = j->cap ? j->cap * 2 : 16;
        lisa_request *r = realloc(j->reqs, (size_t)cap * sizeof *r);
        char **le = realloc(j->line_errors, (size_t)cap * sizeof *le);
        if (!r || !le) {
            free(r == j->reqs ? NULL : r);
            return NULL;
        }
        j->reqs = r;
        j->line_errors = le;
        j->cap = cap;
    }
    memset(&j->reqs[j->n], 0, sizeof j->reqs[0]);
    j->line_errors[j->n] = NULL;
    return &j->reqs[j->n++];
}

static void jobs_free(seg_jobs *j) {
    for (int i = 0; i < j->n_owned; i++) free(j->owned[i]);
    free(j->owned);
    free(j->reqs);
    free(j->line_errors);
}

/* Reads a JSONL manifest; a malformed line becomes a request that fails
 * with the reason. */
static int jobs_read_manifest(seg_jobs *j, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "lisa segment: cannot open manifest %s: %s\n", path, strerror(errno));
        return -1;
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) slash[1] = 0;
    else dir[0] = 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (len == 0) continue;
        lisa_request *r = jobs_add(j);
        if (!r) break;
        char idbuf[32];
        snprintf(idbuf, sizeof idbuf, "line%d", lineno);
        cJSON *o = cJSON_ParseWithLength(line, (size_t)len);
        const cJSON *id = o ? cJSON_GetObjectItem(o, "custom_id") : NULL;
        const cJSON *im = o ? cJSON_GetObjectItem(o, "image") : NULL;
        const cJSON *pr = o ? cJSON_GetObjectItem(o, "prompt") : NULL;
        const cJSON *an = o ? cJSON_GetObjectItem(o, "answer") : NULL;
        if (cJSON_IsString(id) && *id->valuestring) r->id = jobs_keep(j, strdup(id->valuestring));
        else if (cJSON_IsNumber(id)) {
            snprintf(idbuf, sizeof idbuf, "%d", id->valueint);
            r->id = jobs_keep(j, strdup(idbuf));
        } else r->id = jobs_keep(j, strdup(idbuf));
        char err[256] = "";
        if (!cJSON_IsObject(o)) snprintf(err, sizeof err, "manifest line %d: not a JSON object", lineno);
        else if (!cJSON_IsString(im)) snprintf(err, sizeof err, "manifest line %d: \"image\" missing or not a string", lineno);
        else if (!cJSON_IsString(pr)) snprintf(err, sizeof err, "manifest line %d: \"prompt\" missing or not a string", lineno);
        else if (an && !cJSON_IsString(an) && !cJSON_IsNull(an))
            snprintf(err, sizeof err, "manifest line %d: \"answer\" is not a string", lineno);
        if (err[0]) {
            j->line_errors[j->n - 1] = jobs_keep(j, strdup(err));
        } else {
            const char *ip = im->valuestring;
            char *full = malloc(strlen(dir) + strlen(ip) + 1);
            if (full) sprintf(full, "%s%s", ip[0] == '/' ? "" : dir, ip);
            r->image_path = jobs_keep(j, full);
            r->prompt = jobs_keep(j, strdup(pr->valuestring));
            if (cJSON_IsString(an)) r->answer = jobs_keep(j, strdup(an->valuestring));
        }
        cJSON_Delete(o);
    }
    free(line);
    fclose(f);
    return 0;
}

/* Progress over the whole manifest: the engine reports within a chunk. */
typedef struct {
    int base;   /* requests finished in earlier chunks */
    int total;  /* runnable requests in the manifest */
} seg_progress;

static void progress_bar(int done, int total) {
    int width = 30, fill = total ? done * width / total : width;
    fprintf(stderr, "\r[");
    for (int i = 0; i < width; i++) fputc(i < fill ? '#' : ' ', stderr);
    fprintf(stderr, "] %d/%d", done, total);
    if (done == total) fputc('\n', stderr);
    fflush(stderr);
}

static void seg_progress_step(void *user, int done, int total) {
    const seg_progress *p = user;
    (void)total;
    progress_bar(p->base + done, p->total);
}

int cmd_segment(int argc, char **argv) {
    const char *model = NULL, *image = NULL, *prompt = NULL, *answer = NULL, *manifest = NULL,
               *out = NULL, *device = "cpu", *dtype_s = NULL;
    long max_new = 512, batch = 8, threads = 0, max_bytes = 0, max_pixels = 0;
    int json = 0;
    const cli_opt opts[] = {
        {"--model", CLI_STRING, &model},         {"--image", CLI_STRING, &image},
        {"--prompt", CLI_STRING, &prompt},       {"--answer", CLI_STRING, &answer},
        {"--manifest", CLI_STRING, &manifest},   {"--out", CLI_STRING, &out},
        {"--device", CLI_STRING, &device},       {"--dtype", CLI_STRING, &dtype_s},
        {"--max-new-tokens", CLI_COUNT, &max_new}, {"--batch", CLI_COUNT, &batch},
        {"--threads", CLI_COUNT, &threads},      {"--max-image-bytes", CLI_COUNT, &max_bytes},
        {"--max-image-pixels", CLI_COUNT, &max_pixels}, {"--json", CLI_FLAG, &json},
    };
    int pr = cli_opts_parse("segment", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]),
                            segment_help);
    if (pr) return pr > 0 ? 0 : 2;
    if (max_new < 1 || batch < 1) {
        fprintf(stderr, "lisa segment: --max-new-tokens and --batch must be at least 1\n");
        return 2;
    }
    if (!model || (!manifest && (!image || !prompt)) || (manifest && (image || prompt))) {
        fprintf(stderr, "lisa segment: give --model and either --image with --prompt or "
                        "--manifest (see --help)\n");
        return 2;
    }
    if (manifest && !out) {
        fprintf(stderr, "lisa segment: --manifest needs --out DIR\n");
        return 2;
    }
    lisa_engine_params p;
    memset(&p, 0, sizeof p);
    if (cli_resolve_backend(device, dtype_s, &p.backend, &p.device, &p.dtype)) return 2;
    p.model_dir = model;
    p.threads = (int)threads;
    p.max_batch = (int)batch;
    p.max_new_tokens = (int)max_new;
    p.limits.max_file_bytes = (size_t)max_bytes;
    p.limits.max_pixels = (uint64_t)max_pixels;

    seg_jobs jobs;
    memset(&jobs, 0, sizeof jobs);
    if (manifest) {
        if (jobs_read_manifest(&jobs, manifest)) return 1;
    } else {
        lisa_request *r = jobs_add(&jobs);
        if (!r) return 1;
        r->id = "0";
        r->image_path = image;
        r->prompt = prompt;
        r->answer = answer;
    }
    if (out && lisa_result_mkdir(out) != LISA_OK) {
        fprintf(stderr, "lisa segment: %s\n", lisa_error_get());
        jobs_free(&jobs);
        return 1;
    }
    lisa_engine *e = NULL;
    lisa_status st = lisa_engine_init(&e, &p);
    if (st != LISA_OK) {
        fprintf(stderr, "lisa segment: %s: %s\n", lisa_status_str(st), lisa_error_get());
        jobs_free(&jobs);
        return 1;
    }
    /* The manifest runs --batch requests at a time and each chunk's results
     * are written (and freed) before the next starts, so memory stays flat
     * and results.jsonl grows as work finishes. Requests with a manifest
     * error are not sent to the engine; after a backend failure the rest are
     * recorded as failed, not dropped. */
    int n = jobs.n, nrunnable = 0;
    for (int i = 0; i < n; i++) nrunnable += !jobs.line_errors[i];
    lisa_request *run = calloc((size_t)p.max_batch, sizeof *run);
    lisa_response *res = calloc((size_t)p.max_batch, sizeof *res);
    seg_progress prog = {0, nrunnable};
    int tty = isatty(2);
    FILE *all = NULL;
    if (out) {
        char path[4200];
        snprintf(path, sizeof path, "%s/results.jsonl", out);
        all = fopen(path, "wb");
        if (!all) fprintf(stderr, "lisa segment: cannot write %s: %s\n", path, strerror(errno));
    }
    int failures = 0;
    for (int i0 = 0; i0 < n;) {
        int i1 = i0, nrun = 0;
        while (i1 < n && (nrun < p.max_batch || jobs.line_errors[i1])) {
            if (!jobs.line_errors[i1]) run[nrun++] = jobs.reqs[i1];
            i1++;
        }
        memset(res, 0, (size_t)p.max_batch * sizeof *res);
        if (nrun && st == LISA_OK)
            st = lisa_engine_run(e, run, nrun, res, tty && nrunnable > 1 ? seg_progress_step : NULL,
                                 &prog);
        else if (nrun)
            for (int k = 0; k < nrun; k++) {
                res[k].status = LISA_ERR_BACKEND;
                snprintf(res[k].error, sizeof res[k].error, "not run: an earlier batch failed in the backend");
            }
        for (int i = i0, k = 0; i < i1; i++) {
            const lisa_request *q = &jobs.reqs[i];
            lisa_response bad_line;
            const lisa_response *r = &res[k];
            if (jobs.line_errors[i]) {
                memset(&bad_line, 0, sizeof bad_line);
                bad_line.status = LISA_ERR_FORMAT;
                snprintf(bad_line.error, sizeof bad_line.error, "%s", jobs.line_errors[i]);
                r = &bad_line;
            } else k++;
            const lisa_result_ident who = {q->id, q->image_path, q->prompt};
            int failed = r->status != LISA_OK;
            if (failed) {
                failures++;
                fprintf(stderr, "lisa segment: %s: %s\n", q->id ? q->id : "?", r->error);
            }
            if (out) {
                /* The overlay's image, decoded again from its path. */
                lisa_image img;
                int have_img = !failed && q->image_path &&
                               lisa_image_load(&img, q->image_path, NULL) == LISA_OK;
                if (lisa_result_write(out, &who, r, have_img ? &img : NULL) != LISA_OK) {
                    fprintf(stderr, "lisa segment: %s\n", lisa_error_get());
                    failures += !failed;
                }
                if (have_img) lisa_image_free(&img);
            }
            char *line = NULL;
            if (lisa_result_format(&who, r, 0, &line) != LISA_OK)
                fprintf(stderr, "lisa segment: %s\n", lisa_error_get());
            if (all && line) {
                fprintf(all, "%s\n", line);
                fflush(all);
            }
            if (json && line) printf("%s\n", line);
            else if (!json && !out && !failed) printf("%s\n", r->text ? r->text : "");
            free(line);
        }
        for (int k = 0; k < nrun; k++) lisa_response_free(&res[k]);
        prog.base += nrun;
        i0 = i1;
    }
    if (all) fclose(all);
    if (st != LISA_OK) fprintf(stderr, "lisa segment: %s: %s\n", lisa_status_str(st), lisa_error_get());
    free(run);
    free(res);
    lisa_engine_free(e);
    jobs_free(&jobs);
    return (failures || st != LISA_OK) ? 1 : 0;
}
