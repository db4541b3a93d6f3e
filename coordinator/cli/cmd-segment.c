/* cmd-segment.c: `lisa segment`: LISA on one image and prompt, or on a JSONL
 * manifest of many, in one process (no MPI, no Redis).
 *
 * Output per request, under OUT/<custom_id>/: answer.txt, mask_K.png (0/255,
 * one per [SEG] in order), overlay.png (LISA chat.py's red 50% blend of all
 * masks), result.json (answer, per mask COCO RLE {size, counts}, area, bbox
 * [x, y, w, h], SAM's IoU prediction; or the error of a failed request); and
 * OUT/results.jsonl, one result line per request, written as each request
 * finishes (so in the order they finish; memory stays flat over long
 * manifests). The encoding is result-write.h's, the source and sink
 * cli-jobs.h's; this file streams the manifest through the engine and
 * prints. A bad request (missing or corrupt image, empty or too
 * long prompt, malformed manifest line) fails alone with its reason; the
 * others finish. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli-jobs.h"
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
            "  --quantize Q         q8_0 or q4_0: quantize the LLM's projections and LM\n"
            "                       head at load (a converted --quantize model needs no flag)\n"
            "  --threads N          CPU threads (default: all cores)\n"
            "  --max-image-bytes N  refuse image files larger than N bytes (default 100 MB)\n"
            "  --max-image-pixels N refuse images of more than N pixels (default 100 million)\n"
            "  -h, --help           show this help\n"
            "\n"
            "Exit status: 0 when every request succeeded, 1 when any failed (each\n"
            "failure is in its result.json and on stderr), 2 usage error.\n");
}

/* Requests in the engine: who they are, until their result is written. */
typedef struct {
    int64_t handle;
    lisa_manifest_item item;
} seg_inflight;

/* Writes every finished response the engine holds; frees their records. */
static void sink_drain(cli_job_sink *k, lisa_engine *e, seg_inflight *fl, int *n_fl) {
    lisa_response r;
    while (lisa_engine_take_finished(e, &r, 1) == 1) {
        int i = 0;
        while (i < *n_fl && fl[i].handle != r.handle) i++;
        if (i < *n_fl) {
            cli_job_sink_write(k, &fl[i].item, &r);
            lisa_manifest_item_free(&fl[i].item);
            fl[i] = fl[--*n_fl];
        }
        lisa_response_free(&r);
    }
}

int cmd_segment(int argc, char **argv) {
    const char *model = NULL, *image = NULL, *prompt = NULL, *answer = NULL, *manifest = NULL,
               *out = NULL, *device = "cpu", *dtype_s = NULL, *quant_s = NULL;
    long max_new = 512, batch = 8, threads = 0, max_bytes = 0, max_pixels = 0, budget = 0;
    int json = 0;
    const cli_opt opts[] = {
        {"--model", CLI_STRING, &model},         {"--image", CLI_STRING, &image},
        {"--prompt", CLI_STRING, &prompt},       {"--answer", CLI_STRING, &answer},
        {"--manifest", CLI_STRING, &manifest},   {"--out", CLI_STRING, &out},
        {"--device", CLI_STRING, &device},       {"--dtype", CLI_STRING, &dtype_s}, {"--quantize", CLI_STRING, &quant_s},
        {"--max-new-tokens", CLI_COUNT, &max_new}, {"--batch", CLI_COUNT, &batch},
        {"--threads", CLI_COUNT, &threads},      {"--max-image-bytes", CLI_COUNT, &max_bytes},
        {"--max-image-pixels", CLI_COUNT, &max_pixels}, {"--json", CLI_FLAG, &json},
        {"--token-budget", CLI_COUNT, &budget},
    };
    int pr = cli_opts_parse("segment", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]),
                            segment_help);
    if (pr) return pr > 0 ? 0 : 2;
    if (max_new < 1 || batch < 1) {
        fprintf(stderr, "lisa segment: %s must be at least 1, got %ld\n",
                max_new < 1 ? "--max-new-tokens" : "--batch", (long)(max_new < 1 ? max_new : batch));
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
    if (quant_s && cli_parse_quant(quant_s, &p.quantize)) return 2;
    p.max_batch = (int)batch;
    p.max_new_tokens = (int)max_new;
    p.token_budget = (int)budget;
    p.limits.max_file_bytes = (size_t)max_bytes;
    p.limits.max_pixels = (uint64_t)max_pixels;

    cli_job_source src;
    int total = 1;
    if (cli_job_source_open(&src, "segment", manifest, image, prompt, answer, &total)) return 1;
    cli_job_sink sink;
    if (cli_job_sink_open(&sink, "segment", out, json, total)) {
        cli_job_source_close(&src);
        return 1;
    }
    p.keep_images = out != NULL;  /* for overlay.png */
    lisa_engine *e = NULL;
    lisa_status st = lisa_engine_init(&e, &p);
    if (st != LISA_OK) {
        fprintf(stderr, "lisa segment: %s: %s\n", lisa_status_str(st), lisa_error_get());
        cli_job_sink_close(&sink);
        cli_job_source_close(&src);
        return 1;
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
            more = cli_job_source_next(&src, &it, &ps);
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
            cli_job_sink_write(&sink, &it, &bad);
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
    cli_job_sink_close(&sink);
    cli_job_source_close(&src);
    free(fl);
    lisa_engine_free(e);
    return (sink.failures || st != LISA_OK) ? 1 : 0;
}
