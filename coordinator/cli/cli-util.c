/* cli-util.c: see cli-util.h. */
#include "cli-util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

long cli_parse_count(const char *opt, const char *val) {
    char *end;
    errno = 0;
    long v = strtol(val, &end, 10);
    if (errno || end == val || *end || v < 0) {
        fprintf(stderr, "lisa: %s expects a non-negative integer, got '%s'\n", opt, val);
        return -1;
    }
    return v;
}

const char *cli_option_value(const char *cmd, int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "lisa %s: %s needs a value\n", cmd, argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

int cli_parse_device(const char *val, lisa_backend_kind *kind, int *device) {
    *device = 0;
    if (!strcmp(val, "cpu")) {
        *kind = LISA_BACKEND_CPU;
        return 0;
    }
    if (!strncmp(val, "cuda", 4)) {
        *kind = LISA_BACKEND_CUDA;
        if (val[4] == 0) return 0;
        if (val[4] == ':' && cli_parse_count("--device", val + 5) >= 0) {
            *device = atoi(val + 5);
            return 0;
        }
    }
    fprintf(stderr, "lisa: --device expects cpu, cuda or cuda:N, got '%s'\n", val);
    return -1;
}

int cli_resolve_backend(const char *device, const char *dtype_s, lisa_backend_kind *kind,
                        int *index, lisa_dtype *dtype) {
    if (cli_parse_device(device, kind, index)) return -1;
    *dtype = *kind == LISA_BACKEND_CPU ? LISA_DTYPE_F32 : LISA_DTYPE_BF16;
    return dtype_s ? cli_parse_dtype(dtype_s, dtype) : 0;
}

lisa_backend_params cli_backend_params(lisa_backend_kind kind, int device, long threads) {
    lisa_backend_params p = lisa_backend_params_default(kind, device, (int)threads);
    lisa_backend_params_from_env(&p);
    return p;
}

int cli_parse_dtype(const char *val, lisa_dtype *dtype) {
    if (!strcmp(val, "fp32") || !strcmp(val, "f32")) *dtype = LISA_DTYPE_F32;
    else if (!strcmp(val, "bf16")) *dtype = LISA_DTYPE_BF16;
    else if (!strcmp(val, "fp16") || !strcmp(val, "f16")) *dtype = LISA_DTYPE_F16;
    else {
        fprintf(stderr, "lisa: --dtype expects fp32, bf16 or fp16, got '%s'\n", val);
        return -1;
    }
    return 0;
}

int cli_parse_quant(const char *val, lisa_dtype *q) {
    if (!strcmp(val, "q8_0")) *q = LISA_DTYPE_Q8_0;
    else if (!strcmp(val, "q4_0")) *q = LISA_DTYPE_Q4_0;
    else if (!strcmp(val, "none")) *q = LISA_DTYPE_F32;
    else {
        fprintf(stderr, "lisa: --quantize expects q8_0, q4_0 or none, got '%s'\n", val);
        return -1;
    }
    return 0;
}

void cli_json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*p < 0x20) fprintf(f, "\\u%04x", *p);
            else fputc(*p, f);
        }
    }
    fputc('"', f);
}

void cli_json_ids(FILE *f, const int32_t *ids, size_t n) {
    fputc('[', f);
    for (size_t i = 0; i < n; i++) fprintf(f, "%s%d", i ? ", " : "", ids[i]);
    fputc(']', f);
}

int cli_opts_parse(const char *cmd, int argc, char **argv, const cli_opt *opts, int n_opts,
                   void (*help)(FILE *)) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            help(stdout);
            return 1;
        }
        const char *eq = strncmp(a, "--", 2) ? NULL : strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        const cli_opt *o = NULL;
        for (int k = 0; k < n_opts && !o; k++)
            if (strlen(opts[k].name) == len && !strncmp(opts[k].name, a, len)) o = &opts[k];
        if (!o) {
            fprintf(stderr, "lisa %s: unknown option '%s' (see --help)\n", cmd, a);
            return -1;
        }
        if (o->kind == CLI_FLAG) {
            if (eq) {
                fprintf(stderr, "lisa %s: %s takes no value\n", cmd, o->name);
                return -1;
            }
            *(int *)o->dst = 1;
            continue;
        }
        const char *v = eq ? eq + 1 : cli_option_value(cmd, argc, argv, &i);
        if (!v) return -1;
        if (o->kind == CLI_STRING) {
            *(const char **)o->dst = v;
        } else {
            long c = cli_parse_count(o->name, v);
            if (c < 0) return -1;
            *(long *)o->dst = c;
        }
    }
    return 0;
}

int cli_engine_params(lisa_engine_params *p, const char *model, const char *device,
                      const char *dtype_s, long threads) {
    memset(p, 0, sizeof *p);
    if (cli_resolve_backend(device, dtype_s, &p->backend, &p->device, &p->dtype)) return -1;
    p->model_dir = model;
    p->threads = (int)threads;
    p->switches = cli_backend_params(p->backend, p->device, threads);
    return 0;
}
