/* deepen-model.c: test helper: a copy of a converted LISA model directory
 * whose LLM has more layers (new layer i is a copy of layer i mod L), so a
 * tiny fixture can be split over more pipeline stages than it has layers.
 * Writes DST/model.safetensors and DST/config.json (the top-level
 * num_hidden_layers changed) and links the tokenizer files.
 * Usage: deepen-model SRC_DIR DST_DIR LAYERS */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config-file.h"
#include "llama-config.h"
#include "safetensors.h"

static const char *st_dtype(lisa_dtype t) {
    return t == LISA_DTYPE_F16 ? "F16" : t == LISA_DTYPE_BF16 ? "BF16" : "F32";
}

typedef struct {
    char name[256];
    const lisa_st_tensor *t;
} out_tensor;

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: deepen-model SRC_DIR DST_DIR LAYERS\n");
        return 2;
    }
    const char *src = argv[1], *dst = argv[2];
    int layers = atoi(argv[3]);
    lisa_llama_config cfg;
    lisa_safetensors *st = NULL;
    if (lisa_llama_config_load(&cfg, src) != LISA_OK || lisa_safetensors_open(&st, src) != LISA_OK) {
        fprintf(stderr, "deepen-model: %s\n", lisa_error_get());
        return 1;
    }
    int L = cfg.num_hidden_layers;
    size_t n = lisa_safetensors_count(st), cap = n * (size_t)(layers / L + 2), k = 0;
    out_tensor *out = calloc(cap, sizeof *out);
    for (size_t i = 0; i < n; i++) {
        const lisa_st_tensor *t = lisa_safetensors_at(st, i);
        int li = -1, off = 0;
        if (sscanf(t->name, "model.layers.%d.%n", &li, &off) == 1 && off > 0) {
            for (int j = li; j < layers; j += L) {
                snprintf(out[k].name, sizeof out[k].name, "model.layers.%d.%s", j, t->name + off);
                out[k++].t = t;
            }
        } else {
            snprintf(out[k].name, sizeof out[k].name, "%s", t->name);
            out[k++].t = t;
        }
    }
    mkdir(dst, 0755);
    size_t hcap = k * 400 + 64, hl = 0, data = 0;
    char *h = malloc(hcap);
    hl += (size_t)snprintf(h + hl, hcap - hl, "{");
    for (size_t i = 0; i < k; i++) {
        const lisa_st_tensor *t = out[i].t;
        hl += (size_t)snprintf(h + hl, hcap - hl, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", i ? "," : "",
                               out[i].name, st_dtype(t->dtype));
        for (int d = 0; d < t->ndim; d++)
            hl += (size_t)snprintf(h + hl, hcap - hl, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        hl += (size_t)snprintf(h + hl, hcap - hl, "],\"data_offsets\":[%zu,%zu]}", data, data + t->nbytes);
        data += t->nbytes;
    }
    hl += (size_t)snprintf(h + hl, hcap - hl, "}");
    while (hl % 8) h[hl++] = ' ';
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", dst);
    FILE *f = fopen(path, "wb");
    uint64_t hl64 = hl;
    int ok = f && fwrite(&hl64, 8, 1, f) == 1 && fwrite(h, 1, hl, f) == hl;
    for (size_t i = 0; ok && i < k; i++) ok = fwrite(out[i].t->data, 1, out[i].t->nbytes, f) == out[i].t->nbytes;
    if (f) ok &= fclose(f) == 0;
    char *text = NULL;
    size_t len = 0;
    ok = ok && lisa_config_file_read(src, &text, &len) == LISA_OK;
    char *at = ok ? strstr(text, "\"num_hidden_layers\"") : NULL;
    if (at) {
        char *colon = strchr(at, ':'), *end = colon ? colon + 1 : NULL;
        while (end && (*end == ' ' || (*end >= '0' && *end <= '9'))) end++;
        snprintf(path, sizeof path, "%s/config.json", dst);
        FILE *c = fopen(path, "wb");
        ok = c && end && fprintf(c, "%.*s %d%s", (int)(colon + 1 - text), text, layers, end) > 0;
        if (c) ok &= fclose(c) == 0;
    } else {
        ok = 0;
    }
    const char *links[] = {"tokenizer.model", "added_tokens.json", "special_tokens_map.json",
                           "tokenizer_config.json", "preprocessor_config.json"};
    for (size_t i = 0; ok && i < sizeof links / sizeof links[0]; i++) {
        char from[4200], real[4200];
        snprintf(from, sizeof from, "%s/%s", src, links[i]);
        snprintf(path, sizeof path, "%s/%s", dst, links[i]);
        if (access(from, F_OK) || !realpath(from, real)) continue;
        unlink(path);
        ok = symlink(real, path) == 0;
    }
    free(text);
    free(h);
    free(out);
    lisa_safetensors_close(st);
    if (!ok) {
        fprintf(stderr, "deepen-model: could not write %s\n", dst);
        return 1;
    }
    return 0;
}
