/* cmd-bench.c: `lisa bench llm`: prefill and decode throughput of the LLaMA
 * decoder, on a checkpoint or on random weights from a config preset.
 *
 * Prefill: B sequences of T random prompt tokens, packed into forward calls
 * of at most --chunk tokens; tokens/s = B*T / time. Decode: --new-tokens
 * steps of one token per sequence over the filled KV cache; tokens/s =
 * B*steps / time. One untimed warm-up pass precedes the timed pass. It only
 * measures; comparisons with other engines are made by scripts/bench-llm.sh,
 * which runs the reference in the same command. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli-util.h"
#include "commands.h"
#include "llama.h"

static void bench_help(FILE *f) {
    fprintf(f,
            "usage: lisa bench llm (--model DIR | --config FILE) [options]\n"
            "\n"
            "Measures prefill and decode tokens/s of the LLaMA decoder. With --config\n"
            "(a HF config.json, e.g. configs/llama-7b.json) the weights are random.\n"
            "\n"
            "options:\n"
            "  --model DIR        checkpoint directory (weights in their file dtype)\n"
            "  --config FILE      random weights with this config\n"
            "  --dtype T          fp32, bf16 (default) or fp16. On cuda: weights and\n"
            "                     activations. On cpu (fp32 compute): the dtype the\n"
            "                     random weights are stored in\n"
            "  --prompt-len T     prompt tokens per sequence (default 128)\n"
            "  --batches LIST     comma-separated batch sizes (default 1,16)\n"
            "  --new-tokens N     decode steps (default 16)\n"
            "  --chunk N          max tokens per prefill forward call (default 512)\n"
            "  --device DEV       cpu (default), cuda or cuda:N\n"
            "  --threads N        CPU threads (default: all cores)\n"
            "  --json             one JSON line per batch size instead of a table\n"
            "  -h, --help         show this help\n");
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One prefill + decode pass over B sequences; fills the two timings. */
static lisa_status bench_pass(const lisa_llama_model *m, lisa_llama_state *s, int B, int T,
                              int steps, uint32_t seed, double *t_prefill, double *t_decode) {
    int nt = s->max_tokens, V = m->cfg.vocab_size;
    int32_t *tok = malloc((size_t)nt * 4), *seq = malloc((size_t)nt * 4),
            *pos = malloc((size_t)nt * 4), *rows = malloc((size_t)nt * 4),
            *next = malloc((size_t)nt * 4);
    lisa_status st = LISA_OK;
    if (!tok || !seq || !pos || !rows || !next) st = lisa_error_set(LISA_ERR_NOMEM, "bench: out of memory");
    double t0 = now_s();
    long total = (long)B * T, done = 0;
    while (st == LISA_OK && done < total) {
        int n = 0, no = 0;
        for (; n < nt && done < total; n++, done++) {
            seed = seed * 1664525u + 1013904223u;
            tok[n] = (int32_t)(3 + (seed >> 8) % (uint32_t)(V - 3));
            seq[n] = (int32_t)(done / T);
            pos[n] = (int32_t)(done % T);
            if (pos[n] == T - 1 && no < s->max_out) rows[no++] = n;
        }
        lisa_llama_batch b = {n, tok, NULL, seq, pos, no, rows};
        st = lisa_llama_forward(m, s, &b, NULL, NULL, next);
    }
    *t_prefill = now_s() - t0;
    t0 = now_s();
    for (int step = 0; step < steps && st == LISA_OK; step++) {
        for (int i = 0; i < B; i++) {
            tok[i] = (int32_t)(3 + ((uint32_t)i * 7919u + (uint32_t)step * 104729u + seed) % (uint32_t)(V - 3));
            seq[i] = i;
            pos[i] = T + step;
            rows[i] = i;
        }
        lisa_llama_batch b = {B, tok, NULL, seq, pos, B, rows};
        st = lisa_llama_forward(m, s, &b, NULL, NULL, next);
    }
    *t_decode = now_s() - t0;
    free(tok);
    free(seq);
    free(pos);
    free(rows);
    free(next);
    return st;
}

static int bench_llm(int argc, char **argv) {
    const char *model_dir = NULL, *config = NULL, *device = "cpu", *batches = "1,16";
    const char *dtype_s = "bf16";
    long T = 128, steps = 16, chunk = 512, threads = 0;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            bench_help(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--model") || !strcmp(a, "--config") || !strcmp(a, "--dtype") ||
                   !strcmp(a, "--prompt-len") || !strcmp(a, "--batches") ||
                   !strcmp(a, "--new-tokens") || !strcmp(a, "--chunk") ||
                   !strcmp(a, "--device") || !strcmp(a, "--threads")) {
            if (!(v = cli_option_value("bench llm", argc, argv, &i))) return 2;
            if (!strcmp(a, "--model")) model_dir = v;
            else if (!strcmp(a, "--config")) config = v;
            else if (!strcmp(a, "--dtype")) dtype_s = v;
            else if (!strcmp(a, "--batches")) batches = v;
            else if (!strcmp(a, "--device")) device = v;
            else if (!strcmp(a, "--prompt-len") && (T = cli_parse_count(a, v)) < 1) return 2;
            else if (!strcmp(a, "--new-tokens") && (steps = cli_parse_count(a, v)) < 0) return 2;
            else if (!strcmp(a, "--chunk") && (chunk = cli_parse_count(a, v)) < 1) return 2;
            else if (!strcmp(a, "--threads") && (threads = cli_parse_count(a, v)) < 0) return 2;
        } else {
            fprintf(stderr, "lisa bench llm: unknown option '%s' (see --help)\n", a);
            return 2;
        }
    }
    if (!model_dir == !config) {
        fprintf(stderr, "lisa bench llm: give exactly one of --model and --config\n");
        return 2;
    }
    lisa_dtype dtype;
    if (cli_parse_dtype(dtype_s, &dtype)) return 2;
    int bs[32], nb = 0, maxb = 0;
    for (const char *p = batches; *p && nb < 32;) {
        char *end;
        long b = strtol(p, &end, 10);
        if (end == p || b < 1 || (*end && *end != ',')) {
            fprintf(stderr, "lisa bench llm: --batches expects a list like 1,16\n");
            return 2;
        }
        bs[nb++] = (int)b;
        if (b > maxb) maxb = (int)b;
        p = *end ? end + 1 : end;
    }
    lisa_backend_kind kind;
    int dev;
    if (cli_parse_device(device, &kind, &dev)) return 2;
    lisa_dtype act = kind == LISA_BACKEND_CPU ? LISA_DTYPE_F32 : dtype;

    lisa_backend *be = NULL;
    lisa_llama_model m;
    lisa_llama_config cfg;
    lisa_status st = lisa_backend_init(&be, kind, dev, (int)threads);
    int have_model = 0;
    if (st == LISA_OK && config) {
        st = lisa_llama_config_load(&cfg, config);
        if (st == LISA_OK) st = lisa_llama_model_init_random(&m, &cfg, be, kind == LISA_BACKEND_CPU ? dtype : act, act, 0, -1, 42);
    } else if (st == LISA_OK) {
        st = lisa_llama_model_load(&m, model_dir, be, act, 0, -1);
    }
    have_model = st == LISA_OK;
    lisa_llama_state s;
    int have_state = 0;
    if (st == LISA_OK && T + steps + 1 > m.cfg.max_position_embeddings)
        st = lisa_error_set(LISA_ERR_ARG, "prompt-len + new-tokens exceeds the model's context %d",
                            m.cfg.max_position_embeddings);
    if (st == LISA_OK)
        st = lisa_llama_state_init(&s, &m, maxb, (int)(T + steps + 1), (int)chunk, maxb);
    have_state = st == LISA_OK;
    if (st == LISA_OK && !json)
        printf("engine   device  batch  prompt  prefill tok/s  decode tok/s\n");
    for (int i = 0; i < nb && st == LISA_OK; i++) {
        double tp, td;
        st = bench_pass(&m, &s, bs[i], (int)T, (int)(steps < 2 ? steps : 2), 1, &tp, &td);
        if (st == LISA_OK) st = bench_pass(&m, &s, bs[i], (int)T, (int)steps, 7, &tp, &td);
        if (st != LISA_OK) break;
        double pf = (double)bs[i] * (double)T / tp, dc = steps ? (double)bs[i] * (double)steps / td : 0;
        if (json)
            printf("{\"engine\":\"lisa\",\"device\":\"%s\",\"batch\":%d,\"prompt_len\":%ld,"
                   "\"prefill_tok_s\":%.3f,\"decode_tok_s\":%.3f}\n",
                   be->ops->name, bs[i], T, pf, dc);
        else
            printf("lisa     %-6s  %5d  %6ld  %13.1f  %12.2f\n", be->ops->name, bs[i], T, pf, dc);
        fflush(stdout);
    }
    if (st != LISA_OK) fprintf(stderr, "lisa bench llm: %s: %s\n", lisa_status_str(st), lisa_error_get());
    if (have_state) lisa_llama_state_free(&s);
    if (have_model) lisa_llama_model_free(&m);
    lisa_backend_free(be);
    return st == LISA_OK ? 0 : 1;
}

int cmd_bench(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "llm")) return bench_llm(argc - 1, argv + 1);
    FILE *f = (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) ? stdout : stderr;
    fprintf(f, "usage: lisa bench llm [options]   (see `lisa bench llm --help`)\n");
    return f == stdout ? 0 : 2;
}
