/* cmd-segment.c: `lisa segment`: LISA on one image and prompt, or on a JSONL
 * manifest of many, in one process (no MPI, no Redis).
 *
 * Output per request, under OUT/<custom_id>/: answer.txt, mask_K.png (0/255,
 * one per [SEG] in order), overlay.png (LISA chat.py's red 50% blend of all
 * masks), result.json (answer, per mask COCO RLE {size, counts}, area, bbox
 * [x, y, w, h], SAM's IoU prediction; or the error of a failed request); and
 * OUT/results.jsonl, one result line per request, written as each request
 * finishes (so in the order they finish; memory stays flat over long
 * manifests). The encoding is result-write.h's, the line parser
 * manifest.h's; this file streams the manifest through the engine and
 * prints. A bad request (missing or corrupt image, empty or too
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
#include "manifest.h"
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
            "  --batch N            requests decoded together: KV-cache slots (default 8)\n"
            "  --token-budget N     tokens per engine step, prefill chunks plus decode\n"
            "                       tokens (default 512)\n"
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

static void progress_bar(int done, int total) {
    int width = 30, fill = total ? done * width / total : width;
    fprintf(stderr, "\r[");
    for (int i = 0; i < width; i++) fputc(i < fill ? '#' : ' ', stderr);
    fprintf(stderr, "] %d/%d", done, total);
    if (done == total) fputc('\n', stderr);
    fflush(stderr);
}

/* Where requests come from: the manifest, read a line at a time, or the
 * one --image/--prompt request. */
typedef struct {
    FILE *f;
    char dir[4096];       /* the manifest's directory, "" or ending in '/' */
    char *line;
    size_t cap;
    int lineno;
    int single_left;      /* the single request not yet taken */
    const char *image, *prompt, *answer;
} seg_source;

/* Next item: 1 with *it filled (st its parse status), 0 at the end. */
static int source_next(seg_source *src, lisa_manifest_item *it, lisa_status *st) {
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

/* Requests in the engine: who they are, until their result is written. */
typedef struct {
    int64_t handle;
    lisa_manifest_item item;
} seg_inflight;

typedef struct {
    const char *out;
    FILE *all;            /* OUT/results.jsonl or NULL */
    int json, failures, done, total, tty;
} seg_sink;

/* Writes one result (files, results.jsonl line, stdout) as soon as it is known. */
static void sink_write(seg_sink *k, const lisa_manifest_item *it, const lisa_response *r) {
    const lisa_result_ident who = {it->custom_id, it->image, it->prompt};
    int failed = r->status != LISA_OK;
    if (failed) {
        k->failures++;
        fprintf(stderr, "%slisa segment: %s: %s\n", k->tty ? "\r" : "", it->custom_id, r->error);
    }
    if (k->out && lisa_result_write(k->out, &who, r, r->image.rgb ? &r->image : NULL) != LISA_OK) {
        fprintf(stderr, "lisa segment: %s\n", lisa_error_get());
        k->failures += !failed;
    }
    char *line = NULL;
    if (lisa_result_format(&who, r, 0, &line) != LISA_OK)
        fprintf(stderr, "lisa segment: %s\n", lisa_error_get());
    if (k->all && line) {
        fprintf(k->all, "%s\n", line);
        fflush(k->all);
    }
    if (k->json && line) printf("%s\n", line);
    else if (!k->json && !k->out && !failed) printf("%s\n", r->text ? r->text : "");
    free(line);
    k->done++;
    if (k->tty && k->total > 1) progress_bar(k->done, k->total);
}

/* Writes every finished response the engine holds; frees their records. */
static void sink_drain(seg_sink *k, lisa_engine *e, seg_inflight *fl, int *n_fl) {
    lisa_response r;
    while (lisa_engine_take_finished(e, &r, 1) == 1) {
        int i = 0;
        while (i < *n_fl && fl[i].handle != r.handle) i++;
        if (i < *n_fl) {
            sink_write(k, &fl[i].item, &r);
            lisa_manifest_item_free(&fl[i].item);
            fl[i] = fl[--*n_fl];
        }
        lisa_response_free(&r);
    }
}

int cmd_segment(int argc, char **argv) {
    const char *model = NULL, *image = NULL, *prompt = NULL, *answer = NULL, *manifest = NULL,
               *out = NULL, *device = "cpu", *dtype_s = NULL;
    long max_new = 512, batch = 8, threads = 0, max_bytes = 0, max_pixels = 0, budget = 0;
    int json = 0;
    const cli_opt opts[] = {
        {"--model", CLI_STRING, &model},         {"--image", CLI_STRING, &image},
        {"--prompt", CLI_STRING, &prompt},       {"--answer", CLI_STRING, &answer},
        {"--manifest", CLI_STRING, &manifest},   {"--out", CLI_STRING, &out},
        {"--device", CLI_STRING, &device},       {"--dtype", CLI_STRING, &dtype_s},
        {"--max-new-tokens", CLI_COUNT, &max_new}, {"--batch", CLI_COUNT, &batch},
        {"--threads", CLI_COUNT, &threads},      {"--max-image-bytes", CLI_COUNT, &max_bytes},
        {"--max-image-pixels", CLI_COUNT, &max_pixels}, {"--json", CLI_FLAG, &json},
        {"--token-budget", CLI_COUNT, &budget},
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
    if (cli_engine_params(&p, model, device, dtype_s, threads)) return 2;
    p.max_batch = (int)batch;
    p.max_new_tokens = (int)max_new;
    p.token_budget = (int)budget;
    p.limits.max_file_bytes = (size_t)max_bytes;
    p.limits.max_pixels = (uint64_t)max_pixels;

    seg_source src;
    memset(&src, 0, sizeof src);
    int total = 1;
    if (manifest) {
        src.f = fopen(manifest, "rb");
        if (!src.f) {
            fprintf(stderr, "lisa segment: cannot open manifest %s: %s\n", manifest, strerror(errno));
            return 1;
        }
        snprintf(src.dir, sizeof src.dir, "%s", manifest);
        char *slash = strrchr(src.dir, '/');
        if (slash) slash[1] = 0;
        else src.dir[0] = 0;
        total = manifest_count(src.f);
    } else {
        src.single_left = 1;
        src.image = image;
        src.prompt = prompt;
        src.answer = answer;
    }
    seg_sink sink = {out, NULL, json, 0, 0, total, isatty(2)};
    if (out && lisa_result_mkdir(out) != LISA_OK) {
        fprintf(stderr, "lisa segment: %s\n", lisa_error_get());
        if (src.f) fclose(src.f);
        return 1;
    }
    p.keep_images = out != NULL;  /* for overlay.png */
    lisa_engine *e = NULL;
    lisa_status st = lisa_engine_init(&e, &p);
    if (st != LISA_OK) {
        fprintf(stderr, "lisa segment: %s: %s\n", lisa_status_str(st), lisa_error_get());
        if (src.f) fclose(src.f);
        return 1;
    }
    if (out) {
        char path[4200];
        snprintf(path, sizeof path, "%s/results.jsonl", out);
        sink.all = fopen(path, "wb");
        if (!sink.all) fprintf(stderr, "lisa segment: cannot write %s: %s\n", path, strerror(errno));
    }
    /* Requests stream through the engine: the manifest is read only as far
     * as keeps the engine fed (window = 2 x --batch requests in it), each
     * result is written as soon as its request finishes, in the order they
     * finish, so memory stays flat however long the manifest. A line that
     * does not parse fails alone at once; after a backend failure the
     * engine fails every later request with that reason, none is dropped. */
    int window = 2 * p.max_batch, n_fl = 0, more = 1;
    seg_inflight *fl = calloc((size_t)window, sizeof *fl);
    if (!fl) {
        fprintf(stderr, "lisa segment: out of memory\n");
        more = 0;
        st = LISA_ERR_NOMEM;
    }
    while (more || lisa_engine_pending(e)) {
        while (more && n_fl < window) {
            lisa_manifest_item it;
            lisa_status ps;
            more = source_next(&src, &it, &ps);
            if (!more) break;
            lisa_response bad;
            memset(&bad, 0, sizeof bad);
            lisa_request rq = {.id = it.custom_id, .image_path = it.image, .prompt = it.prompt,
                               .answer = it.answer, .max_new_tokens = it.max_new_tokens};
            if (ps == LISA_OK) ps = lisa_engine_submit(e, &rq, &fl[n_fl].handle);
            if (ps == LISA_OK) {
                fl[n_fl++].item = it;
                continue;
            }
            bad.status = ps;
            snprintf(bad.error, sizeof bad.error, "%s", lisa_error_get());
            sink_write(&sink, &it, &bad);
            lisa_manifest_item_free(&it);
        }
        sink_drain(&sink, e, fl, &n_fl);
        if (!lisa_engine_pending(e)) continue;
        lisa_status ss = lisa_engine_step(e);
        if (ss != LISA_OK && st == LISA_OK) {
            st = ss;
            fprintf(stderr, "lisa segment: %s: %s\n", lisa_status_str(st), lisa_error_get());
        }
    }
    sink_drain(&sink, e, fl, &n_fl);
    if (sink.all) fclose(sink.all);
    if (src.f) fclose(src.f);
    free(src.line);
    free(fl);
    lisa_engine_free(e);
    return (sink.failures || st != LISA_OK) ? 1 : 0;
}
