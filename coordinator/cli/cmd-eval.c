/* cmd-eval.c: `lisa eval`: LISA's ReasonSeg evaluation (gIoU, cIoU) over a
 * dataset folder, with per-image rows in a CSV. The ground truth, prompts
 * and metric arithmetic are coordinator/eval/reasonseg.c's; this file walks the
 * images, asks a prediction source for each mask, and reports.
 *
 * Prediction sources are pluggable (eval_source below): binary masks read
 * from a folder (--predictions), or the LISA engine itself (--model), which
 * runs LISA's evaluation prompt teacher-forced with the reply "[SEG]." (one
 * forward, no generation) and takes the first [SEG]'s mask.
 *
 * Checklist for another source: an open function filling src->name,
 * src->ctx, src->predict and src->close; predict() writes 0/1 into pred[h*w]
 * at the image's original size or returns a status with lisa_error_set()
 * (the image is then reported and skipped, the run goes on); its options in
 * eval_help(); a run in tests/cli/eval.sh. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli-util.h"
#include "commands.h"
#include "engine.h"
#include "image.h"
#include "reasonseg.h"

/* One image to predict. */
typedef struct {
    const char *stem;
    const char *image_path;
    const lisa_image *image; /* decoded RGB, EXIF orientation applied */
    const lisa_reasonseg_anno *anno;
} eval_item;

/* Where predicted masks come from. predict() writes image->w * image->h
 * values, 0 (background) or 1 (foreground), into pred, or returns a status
 * with a message (the image then counts as failed). close() may be NULL. */
typedef struct {
    const char *name;
    void *ctx;
    lisa_status (*predict)(void *ctx, const eval_item *item, uint8_t *pred);
    void (*close)(void *ctx);
} eval_source;

/* ---- source: PNG masks in a folder, <stem>.png, non-zero = foreground ---- */

static lisa_status dir_predict(void *ctx, const eval_item *item, uint8_t *pred) {
    const char *dir = ctx;
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s.png", dir, item->stem) >= sizeof path)
        return lisa_error_set(LISA_ERR_ARG, "prediction path too long");
    if (access(path, F_OK) != 0)
        return lisa_error_set(LISA_ERR_IO, "missing prediction %s", path);
    lisa_image m;
    LISA_TRY(lisa_image_load(&m, path, NULL));
    if (m.w != item->image->w || m.h != item->image->h) {
        lisa_status st = lisa_error_set(LISA_ERR_SHAPE, "%s is %dx%d, the image is %dx%d", path,
                                        m.w, m.h, item->image->w, item->image->h);
        lisa_image_free(&m);
        return st;
    }
    size_t n = (size_t)m.w * (size_t)m.h;
    for (size_t i = 0; i < n; i++)
        pred[i] = (m.rgb[3 * i] | m.rgb[3 * i + 1] | m.rgb[3 * i + 2]) != 0;
    lisa_image_free(&m);
    return LISA_OK;
}

static void dir_source_open(eval_source *src, const char *dir) {
    src->name = "predictions folder";
    src->ctx = (void *)dir;
    src->predict = dir_predict;
    src->close = NULL;
}

/* ---- source: the LISA engine, teacher-forced as LISA's evaluation ---- */

static lisa_status model_predict(void *ctx, const eval_item *item, uint8_t *pred) {
    lisa_engine *e = ctx;
    /* user_message is "<image>\n ..."; the prompt builder adds the image part */
    const char *msg = item->anno->user_message;
    const char *tail = strstr(msg, "<image>\n") == msg ? msg + strlen("<image>\n") : msg;
    lisa_request rq = {.id = item->stem, .image_path = item->image_path, .prompt = tail,
                       .answer = LISA_REASONSEG_ASSISTANT_REPLY};
    lisa_response r;
    LISA_TRY(lisa_engine_run(e, &rq, 1, &r, NULL, NULL));
    lisa_status st = r.status;
    if (st != LISA_OK) {
        st = lisa_error_set(st, "%s", r.error);
    } else if (r.w != item->image->w || r.h != item->image->h) {
        st = lisa_error_set(LISA_ERR_SHAPE, "mask is %dx%d, the image is %dx%d", r.w, r.h,
                            item->image->w, item->image->h);
    } else {
        size_t n = (size_t)r.w * (size_t)r.h;
        if (r.n_masks > 0) memcpy(pred, r.masks[0].mask, n);
        else memset(pred, 0, n);
    }
    lisa_response_free(&r);
    return st;
}

static void model_close(void *ctx) { lisa_engine_free(ctx); }

static lisa_status model_source_open(eval_source *src, const lisa_engine_params *p) {
    lisa_engine *e = NULL;
    LISA_TRY(lisa_engine_init(&e, p));
    src->name = "LISA model";
    src->ctx = e;
    src->predict = model_predict;
    src->close = model_close;
    return LISA_OK;
}

/* ---- the run ---- */

static void eval_help(FILE *f) {
    fprintf(f,
            "usage: lisa eval --data DIR (--predictions DIR | --model DIR) [--limit N]\n"
            "                 [--csv FILE] [--opencv 4.8|4.6] [--device DEV] [--dtype T]\n"
            "\n"
            "Scores predicted masks against a ReasonSeg folder the way LISA's\n"
            "train_ds.py --eval_only does, and prints:\n"
            "  images N scored S failed F\n"
            "  gIoU X      (mean over scored images of the foreground IoU)\n"
            "  cIoU Y      (total intersection / total union)\n"
            "\n"
            "DIR (--data) holds <stem>.jpg + <stem>.json (labelme: text, is_sentence,\n"
            "shapes); images are taken in bytewise order of their names. The GT mask is\n"
            "LISA's get_mask_from_json (value 255 = ignored). A prediction is\n"
            "<predictions>/<stem>.png, an 8-bit PNG of the image's size (EXIF-rotated\n"
            "as cv2 reads the jpg); any non-zero pixel (any channel) is foreground.\n"
            "\n"
            "An image whose annotation, image or prediction is missing or unreadable\n"
            "is reported on stderr and left out of gIoU and cIoU (LISA would stop);\n"
            "the exit status is then 1.\n"
            "\n"
            "options:\n"
            "  --data DIR            ReasonSeg split folder (required)\n"
            "  --predictions DIR     predicted masks <stem>.png\n"
            "  --model DIR           run LISA (converted model directory) on every image:\n"
            "                        LISA's evaluation prompt, reply teacher-forced to\n"
            "                        \"[SEG].\", the first [SEG]'s mask\n"
            "  --device DEV          with --model: cpu (default), cuda or cuda:N\n"
            "  --dtype T             with --model: fp32, bf16 or fp16\n"
            "  --quantize Q         q8_0 or q4_0: quantize the LLM's projections and LM\n"
            "                       head at load (a converted --quantize model needs no flag)\n"
            "  --threads N           with --model: CPU threads (default: all cores)\n"
            "  --limit N             only the first N images\n"
            "  --csv FILE            per-image rows: image,intersection,union,iou,prompt,error\n"
            "                        (prompt: the user message after \"<image>\\n \")\n"
            "  --opencv 4.8|4.6      whose fillPoly to reproduce for the GT (4.8: LISA's pin)\n"
            "  -h, --help            show this help\n"
            "\n"
            "Exit status: 0 every image scored, 1 some image failed or none found or a\n"
            "runtime error, 2 usage error.\n");
}

static void csv_field(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void progress(size_t done, size_t total) {
    int width = 30, fill = total ? (int)(done * (size_t)width / total) : width;
    fprintf(stderr, "\r[%.*s%*s] %zu/%zu", fill, "##############################", width - fill,
            "", done, total);
    if (done == total) fputc('\n', stderr);
    fflush(stderr);
}

/* Scores one image. On failure the status is returned with a message. */
static lisa_status eval_one(const char *data, const char *stem, lisa_raster_variant variant,
                            eval_source *src, lisa_reasonseg_anno *anno,
                            lisa_reasonseg_score *score) {
    char jpath[4096], ipath[4096];
    memset(anno, 0, sizeof *anno);
    if ((size_t)snprintf(jpath, sizeof jpath, "%s/%s.json", data, stem) >= sizeof jpath ||
        (size_t)snprintf(ipath, sizeof ipath, "%s/%s.jpg", data, stem) >= sizeof ipath)
        return lisa_error_set(LISA_ERR_ARG, "path too long");
    LISA_TRY(lisa_reasonseg_anno_load(anno, jpath));
    lisa_image img;
    LISA_TRY(lisa_image_load(&img, ipath, NULL));
    size_t n = (size_t)img.w * (size_t)img.h;
    uint8_t *gt = malloc(n), *pred = calloc(n, 1);
    lisa_status st = LISA_OK;
    if (!gt || !pred) st = lisa_error_set(LISA_ERR_NOMEM, "out of memory");
    if (st == LISA_OK) st = lisa_reasonseg_gt_mask(anno, img.w, img.h, variant, gt);
    if (st == LISA_OK) {
        eval_item item = {stem, ipath, &img, anno};
        st = src->predict(src->ctx, &item, pred);
    }
    if (st == LISA_OK) lisa_reasonseg_score_mask(pred, gt, n, score);
    free(gt);
    free(pred);
    lisa_image_free(&img);
    return st;
}

int cmd_eval(int argc, char **argv) {
    const char *data = NULL, *preds = NULL, *model = NULL, *csv = NULL, *cv = "4.8";
    const char *device = "cpu", *dtype_s = NULL, *quant_s = NULL;
    long limit = -1, threads = 0;
    const cli_opt opts[] = {
        {"--data", CLI_STRING, &data},    {"--predictions", CLI_STRING, &preds},
        {"--model", CLI_STRING, &model},  {"--csv", CLI_STRING, &csv},
        {"--opencv", CLI_STRING, &cv},    {"--device", CLI_STRING, &device},
        {"--dtype", CLI_STRING, &dtype_s}, {"--quantize", CLI_STRING, &quant_s}, {"--threads", CLI_COUNT, &threads},
        {"--limit", CLI_COUNT, &limit},
    };
    int pr = cli_opts_parse("eval", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), eval_help);
    if (pr) return pr > 0 ? 0 : 2;
    if (!data || (!preds && !model)) {
        fprintf(stderr, "lisa eval: --data and --predictions or --model are required\n\n");
        eval_help(stderr);
        return 2;
    }
    if (preds && model) {
        fprintf(stderr, "lisa eval: give --predictions or --model, not both\n");
        return 2;
    }
    lisa_raster_variant variant;
    if (!strcmp(cv, "4.8")) variant = LISA_RASTER_OPENCV_4_8;
    else if (!strcmp(cv, "4.6")) variant = LISA_RASTER_OPENCV_4_6;
    else {
        fprintf(stderr, "lisa eval: --opencv must be 4.8 or 4.6, not '%s'\n", cv);
        return 2;
    }
    eval_source src;
    if (model) {
        lisa_engine_params p;
        if (cli_engine_params(&p, model, device, dtype_s, threads)) return 2;
        if (quant_s && cli_parse_quant(quant_s, &p.quantize)) return 2;
        p.max_batch = 1;
        lisa_status ms = model_source_open(&src, &p);
        if (ms != LISA_OK) {
            fprintf(stderr, "lisa eval: %s: %s\n", lisa_status_str(ms), lisa_error_get());
            return 1;
        }
    } else {
        dir_source_open(&src, preds);
    }

    lisa_reasonseg_list list;
    lisa_status st = lisa_reasonseg_list_init(&list, data);
    if (st != LISA_OK) {
        fprintf(stderr, "lisa eval: %s\n", lisa_error_get());
        return 1;
    }
    size_t total = list.n;
    if (limit >= 0 && (size_t)limit < total) total = (size_t)limit;
    if (total == 0) {
        fprintf(stderr, "lisa eval: no *.jpg images in %s\n", data);
        lisa_reasonseg_list_free(&list);
        return 1;
    }
    FILE *cf = NULL;
    if (csv) {
        cf = fopen(csv, "w");
        if (!cf) {
            fprintf(stderr, "lisa eval: cannot write %s\n", csv);
            lisa_reasonseg_list_free(&list);
            return 1;
        }
        fprintf(cf, "image,intersection,union,iou,prompt,error\n");
    }
    int tty = isatty(STDERR_FILENO);
    lisa_reasonseg_meter meter;
    lisa_reasonseg_meter_init(&meter);
    size_t failed = 0;
    for (size_t k = 0; k < total; k++) {
        const char *stem = list.stems[k];
        lisa_reasonseg_anno anno;
        lisa_reasonseg_score score;
        st = eval_one(data, stem, variant, &src, &anno, &score);
        const char *prompt = "";
        if (anno.user_message) {
            prompt = anno.user_message;
            if (!strncmp(prompt, "<image>\n ", 9)) prompt += 9;
        }
        if (st == LISA_OK) {
            lisa_reasonseg_meter_add(&meter, &score);
            if (cf) {
                fprintf(cf, "%s,%lld,%lld,%.8f,", stem, (long long)score.intersection,
                        (long long)score.union_, (double)score.iou);
                csv_field(cf, prompt);
                fprintf(cf, ",\n");
            }
        } else {
            failed++;
            if (tty) fputc('\n', stderr);
            fprintf(stderr, "lisa eval: %s: %s\n", stem, lisa_error_get());
            if (cf) {
                fprintf(cf, "%s,,,,", stem);
                csv_field(cf, prompt);
                fputc(',', cf);
                csv_field(cf, lisa_error_get());
                fputc('\n', cf);
            }
        }
        lisa_reasonseg_anno_free(&anno);
        if (tty) progress(k + 1, total);
    }
    if (src.close) src.close(src.ctx);
    lisa_reasonseg_list_free(&list);
    int rc = failed ? 1 : 0;
    if (cf && fclose(cf) != 0) {
        fprintf(stderr, "lisa eval: error writing %s\n", csv);
        rc = 1;
    }
    printf("images %zu scored %lld failed %zu\n", total, (long long)meter.count, failed);
    if (meter.count > 0) {
        printf("gIoU %.8f\n", (double)lisa_reasonseg_meter_giou(&meter));
        printf("cIoU %.8f\n", (double)lisa_reasonseg_meter_ciou(&meter));
    } else {
        fprintf(stderr, "lisa eval: no image could be scored\n");
        rc = 1;
    }
    return rc;
}
