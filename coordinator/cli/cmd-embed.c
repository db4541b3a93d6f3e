/* cmd-embed.c: `lisa embed-image`: runs SAM's image encoder on one image and
 * prints the embedding's shape and checksums (optionally writes it as raw
 * fp32). A quick way to check a SAM checkpoint, the preprocessing and a
 * backend against a reference without running LISA. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli-util.h"
#include "commands.h"
#include "config-file.h"
#include "image.h"
#include "preprocess.h"
#include "sam.h"

static void embed_help(FILE *f) {
    fprintf(f,
            "usage: lisa embed-image --sam PATH --image IMG [options]\n"
            "\n"
            "Runs SAM's image encoder (ResizeLongestSide 1024 with Pillow's bilinear,\n"
            "SAM's normalization, zero padding) and prints the embedding's shape (G, G, C)\n"
            "channels-last and checksums: sum, sum of |x|, and the first 4 values.\n"
            "\n"
            "options:\n"
            "  --sam PATH          SAM weights: a .safetensors file, an index, or a directory\n"
            "                      (a SAM checkpoint converted to safetensors, or a LISA model\n"
            "                      directory: the model.visual_model. prefix is detected)\n"
            "  --image IMG         JPEG or PNG\n"
            "  --prefix P          tensor name prefix (default: detected)\n"
            "  --out FILE          also write the embedding as raw little-endian fp32\n"
            "  --device DEV        cpu (default), cuda or cuda:N\n"
            "  --dtype T           fp32, bf16 or fp16 (default: fp32 on cpu, bf16 on cuda)\n"
            "  --threads N         CPU threads (default: all cores)\n"
            "  --json              print one JSON object instead of text\n"
            "  -h, --help          show this help\n");
}

/* Head counts a LISA model directory records in config.json (a plain SAM
 * checkpoint has no config: defaults). */
static void embed_read_heads(const char *path, lisa_sam_options *o) {
    char *text;
    size_t n;
    if (lisa_config_file_read(path, &text, &n) != LISA_OK) return;
    lisa_sam_options_parse(o, text, n);
    free(text);
}

int cmd_embed_image(int argc, char **argv) {
    const char *sam_path = NULL, *image = NULL, *prefix = NULL, *out = NULL, *device = "cpu",
               *dtype_s = NULL;
    long threads = 0;
    int json = 0;
    const cli_opt opts[] = {
        {"--sam", CLI_STRING, &sam_path}, {"--image", CLI_STRING, &image},
        {"--prefix", CLI_STRING, &prefix}, {"--out", CLI_STRING, &out},
        {"--device", CLI_STRING, &device}, {"--dtype", CLI_STRING, &dtype_s},
        {"--threads", CLI_COUNT, &threads}, {"--json", CLI_FLAG, &json},
    };
    int pr = cli_opts_parse("embed-image", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]),
                            embed_help);
    if (pr) return pr > 0 ? 0 : 2;
    if (!sam_path || !image) {
        fprintf(stderr, "lisa embed-image: --sam and --image are required (see --help)\n");
        return 2;
    }
    lisa_backend_kind kind;
    int dev;
    lisa_dtype dtype;
    if (cli_resolve_backend(device, dtype_s, &kind, &dev, &dtype)) return 2;

    lisa_backend *be = NULL;
    lisa_safetensors *st = NULL;
    lisa_sam_model m;
    lisa_sam_state s;
    lisa_image img;
    lisa_preprocessed pp;
    int have_m = 0, have_s = 0, have_img = 0, rc = 1;
    float *emb = NULL;
    memset(&pp, 0, sizeof pp);
    lisa_sam_options o = {prefix, 0, 0};
    embed_read_heads(sam_path, &o);
    lisa_backend_params bp = cli_backend_params(kind, dev, threads);
    lisa_status e = lisa_backend_init_params(&be, &bp);
    if (e == LISA_OK && !prefix) {
        e = lisa_safetensors_open(&st, sam_path);
        if (e == LISA_OK)
            o.prefix = lisa_safetensors_find(st, "image_encoder.patch_embed.proj.weight")
                           ? ""
                           : "model.visual_model.";
    }
    if (e == LISA_OK) e = lisa_sam_model_load(&m, sam_path, be, dtype, &o);
    have_m = e == LISA_OK;
    if (e == LISA_OK) e = lisa_sam_state_init(&s, &m, 1, 1, 1);
    have_s = e == LISA_OK;
    if (e == LISA_OK) e = lisa_image_load(&img, image, NULL);
    have_img = e == LISA_OK;
    if (e == LISA_OK) e = lisa_preprocess_sam(&img, m.cfg.img_size, m.cfg.img_size, &pp);
    int64_t G = have_m ? m.cfg.grid : 0, C = have_m ? m.cfg.dim : 0, n = G * G * C;
    if (e == LISA_OK) {
        emb = malloc((size_t)n * sizeof *emb);
        e = emb ? lisa_sam_encode(&m, &s, pp.chw, emb) : lisa_error_set(LISA_ERR_NOMEM, "out of memory");
    }
    if (e != LISA_OK) {
        fprintf(stderr, "lisa embed-image: %s: %s\n", lisa_status_str(e), lisa_error_get());
    } else {
        double sum = 0, asum = 0;
        for (int64_t i = 0; i < n; i++) {
            sum += emb[i];
            asum += fabs((double)emb[i]);
        }
        if (json)
            printf("{\"shape\": [%lld, %lld, %lld], \"sum\": %.9g, \"abs_sum\": %.9g, "
                   "\"first\": [%.9g, %.9g, %.9g, %.9g], \"resized\": [%d, %d]}\n",
                   (long long)G, (long long)G, (long long)C, sum, asum, emb[0], emb[1], emb[2],
                   emb[3], pp.resize_h, pp.resize_w);
        else
            printf("embedding (%lld, %lld, %lld) channels-last, image %dx%d resized to %dx%d\n"
                   "sum %.9g  abs_sum %.9g  first %.9g %.9g %.9g %.9g\n",
                   (long long)G, (long long)G, (long long)C, img.w, img.h, pp.resize_w,
                   pp.resize_h, sum, asum, emb[0], emb[1], emb[2], emb[3]);
        rc = 0;
        if (out) {
            FILE *f = fopen(out, "wb");
            if (!f || fwrite(emb, sizeof *emb, (size_t)n, f) != (size_t)n) {
                fprintf(stderr, "lisa embed-image: cannot write %s\n", out);
                rc = 1;
            }
            if (f) fclose(f);
        }
    }
    free(emb);
    lisa_preprocessed_free(&pp);
    if (have_img) lisa_image_free(&img);
    if (have_s) lisa_sam_state_free(&s);
    if (have_m) lisa_sam_model_free(&m);
    if (st) lisa_safetensors_close(st);
    lisa_backend_free(be);
    return rc;
}
