/* cmd-bench.c: `lisa bench llm`: prefill and decode throughput of the LLaMA
 * decoder, on a checkpoint or on random weights from a config preset; and
 * `lisa bench vision`: CLIP ms/image, SAM encoder ms/image and SAM decoder
 * ms/mask on random weights in named shapes (shard/vision-random.h).
 *
 * Prefill: B sequences of T random prompt tokens, packed into forward calls
 * of at most --chunk tokens; tokens/s = B*T / time. Decode: --new-tokens
 * steps of one token per sequence over the filled KV cache; tokens/s =
 * B*steps / time. One untimed warm-up pass precedes the timed pass. It only
 * measures; comparisons with other engines are made by scripts/bench-llm.sh,
 * which runs the reference in the same command.
 *
 * `lisa bench llm --layer-costs FILE` instead writes the cost model of
 * `lisa cluster plan` (cluster-plan.h) for this device and layer shape: a
 * first-range model of up to 4 layers and a last range of one layer + LM
 * head are timed on decode calls (batches x contexts), prefill chunks and a
 * chunk deep in the context, and least squares (non-negative) fits per
 * layer fixed + token*n + ctx*positions read + pair*(token, position)
 * pairs, then the head's fixed + row*outputs from the last range's excess
 * over its layer. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli-util.h"
#include "commands.h"
#include "llama.h"
#include "vision-random.h"

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
            "  --quantize Q       q8_0 or q4_0: the projections and LM head in that\n"
            "                     block type (random weights made in it; a --model\n"
            "                     in a float dtype quantized at load), or none\n"
            "                     (default). A model converted with --quantize needs\n"
            "                     no flag\n"
            "  --prompt-len T     prompt tokens per sequence (default 128)\n"
            "  --batches LIST     comma-separated batch sizes (default 1,16)\n"
            "  --new-tokens N     decode steps (default 16)\n"
            "  --chunk N          max tokens per prefill forward call (default 512)\n"
            "  --device DEV       cpu (default), cuda or cuda:N\n"
            "  --threads N        CPU threads (default: all cores)\n"
            "  --no-graphs        cuda: decode op by op, no graphs (also LISA_GRAPHS=0)\n"
            "  --no-gemv          cuda: decode matmuls on cuBLASLt (also LISA_GEMV=0)\n"
            "  --bf16-dot         cpu: bf16 weights multiply activations rounded to bf16\n"
            "                     with AVX512-BF16 (llama.cpp's BF16 numerics; also\n"
            "                     LISA_CPU_BF16_DOT=1); ignored where the CPU lacks it\n"
            "  --json             one JSON line per batch size instead of a table\n"
            "  --layer-costs FILE instead of the table: measure per-layer and LM-head\n"
            "                     costs (decode at the --batches sizes, prefill chunks\n"
            "                     up to --chunk) and write them as a cost file for\n"
            "                     `lisa cluster plan --costs FILE`\n"
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

/* ---- lisa bench llm --layer-costs ---- */

/* One timed call shape: `items` sequences of `n` tokens each at pos0,
 * n_out rows out (last range). */
typedef struct {
    int items, n, pos0;
    double secs;             /* median per call, whole range */
} cost_call;

/* Median of `reps` timed runs of call c on range m (after one warm-up);
 * x_in / x_out as lisa_llama_forward_tensors takes them. */
static lisa_status cost_time(const lisa_llama_model *m, lisa_llama_state *s, cost_call *c,
                             const lisa_tensor *x_in, lisa_tensor *x_out, int32_t *buf, int reps) {
    int n = c->items * c->n, V = m->cfg.vocab_size;
    int32_t *tok = buf, *seq = buf + n, *pos = buf + 2 * n, *rows = buf + 3 * n, *next = buf + 4 * n;
    int no = 0;
    for (int i = 0; i < c->items; i++)
        for (int j = 0; j < c->n; j++) {
            int k = i * c->n + j;
            tok[k] = 3 + (int32_t)(((uint32_t)k * 2654435761u) % (uint32_t)(V - 3));
            seq[k] = i;
            pos[k] = c->pos0 + j;
            if (j == c->n - 1) rows[no++] = k;
        }
    lisa_llama_batch b = {n, x_in ? NULL : tok, NULL, seq, pos, no, rows};
    lisa_tensor xo = lisa_tensor_rows(x_out, 0, lisa_llama_model_is_last(m) ? no : n);
    double t[16];
    if (reps > 16) reps = 16;
    for (int r = -1; r < reps; r++) {
        double t0 = now_s();
        int last = lisa_llama_model_is_last(m);
        lisa_tensor xi = x_in ? lisa_tensor_rows(x_in, 0, n) : xo;
        LISA_TRY(lisa_llama_forward_tensors(m, s, &b, x_in ? &xi : NULL, last ? NULL : &xo, NULL,
                                            last ? next : NULL));
        LISA_TRY(lisa_backend_synchronize(s->be));
        if (r >= 0) t[r] = now_s() - t0;
    }
    for (int i = 1; i < reps; i++)
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
            double x = t[j];
            t[j] = t[j - 1];
            t[j - 1] = x;
        }
    c->secs = t[reps / 2];
    return LISA_OK;
}

/* The cost model's regressors of a call. */
static void cost_features(const cost_call *c, double *f) {
    f[0] = 1;
    f[1] = (double)c->items * c->n;
    f[2] = (double)c->items * (c->pos0 + c->n);
    f[3] = (double)c->items * ((double)c->n * c->pos0 + 0.5 * (double)c->n * (c->n + 1));
}

/* Non-negative least squares by elimination of negative terms: solves the
 * normal equations over the active columns, drops the most negative one,
 * repeats. y[i] ~ sum_j x[j] f_i[j]; rows scaled by 1/y so every call
 * counts relatively. */
static void cost_fit(const double (*f)[4], const double *y, int n, int k, double *x) {
    int active[4] = {1, 1, 1, 1};
    for (int j = k; j < 4; j++) active[j] = 0;
    for (int iter = 0; iter < 4; iter++) {
        double A[4][5];
        memset(A, 0, sizeof A);
        for (int i = 0; i < n; i++) {
            double w = y[i] > 0 ? 1 / (y[i] * y[i]) : 1;
            for (int a = 0; a < 4; a++) {
                for (int b = 0; b < 4; b++) A[a][b] += w * f[i][a] * f[i][b];
                A[a][4] += w * f[i][a] * y[i];
            }
        }
        for (int a = 0; a < 4; a++)
            if (!active[a]) {
                memset(A[a], 0, sizeof A[a]);
                for (int b = 0; b < 4; b++) A[b][a] = 0;
                A[a][a] = 1;
            }
        for (int a = 0; a < 4; a++) { /* Gauss-Jordan with partial pivoting */
            int p = a;
            for (int r = a + 1; r < 4; r++)
                if (fabs(A[r][a]) > fabs(A[p][a])) p = r;
            for (int c = 0; c < 5; c++) {
                double t = A[a][c];
                A[a][c] = A[p][c];
                A[p][c] = t;
            }
            if (fabs(A[a][a]) < 1e-300) continue;
            for (int r = 0; r < 4; r++) {
                if (r == a) continue;
                double q = A[r][a] / A[a][a];
                for (int c = a; c < 5; c++) A[r][c] -= q * A[a][c];
            }
        }
        int worst = -1;
        for (int a = 0; a < 4; a++) {
            x[a] = active[a] && fabs(A[a][a]) >= 1e-300 ? A[a][4] / A[a][a] : 0;
            if (x[a] < 0 && (worst < 0 || x[a] < x[worst])) worst = a;
        }
        if (worst < 0) return;
        active[worst] = 0;
    }
    for (int a = 0; a < 4; a++)
        if (x[a] < 0) x[a] = 0;
}

static lisa_status bench_layer_costs(lisa_backend *be, const char *model_dir, const char *config,
                                     lisa_dtype wdtype, lisa_dtype act, lisa_dtype quant, int chunk,
                                     const int *batches, int nb, const char *path) {
    lisa_llama_config cfg;
    if (config) LISA_TRY(lisa_llama_config_load(&cfg, config));
    else LISA_TRY(lisa_llama_config_load(&cfg, model_dir));
    int L = cfg.num_hidden_layers;
    if (L < 2)
        return lisa_error_set(LISA_ERR_ARG, "--layer-costs needs a model of at least 2 layers "
                              "(one range without the LM head, one with it)");
    int k = L - 1 < 4 ? L - 1 : 4;
    int ctx = cfg.max_position_embeddings < 1024 ? cfg.max_position_embeddings : 1024;
    if (chunk > ctx / 2) chunk = ctx / 2;
    int maxb = 1;
    for (int i = 0; i < nb; i++)
        if (batches[i] > maxb) maxb = batches[i];
    if (maxb > chunk) maxb = chunk;
    lisa_llama_model a, h;
    int have_a = 0, have_h = 0, have_sa = 0, have_sh = 0;
    lisa_llama_state sa, sh;
    lisa_tensor xa, xh;
    memset(&xa, 0, sizeof xa);
    memset(&xh, 0, sizeof xh);
    int32_t *buf = malloc((size_t)5 * (size_t)(chunk > maxb ? chunk : maxb) * 4);
    lisa_status st = buf ? LISA_OK : lisa_error_set(LISA_ERR_NOMEM, "bench: out of memory");
    if (st == LISA_OK)
        st = config ? lisa_llama_model_init_random(&a, &cfg, be, wdtype, act, 0, k, 42)
                    : lisa_llama_model_load_quant(&a, model_dir, be, act, quant, 0, k);
    have_a = st == LISA_OK;
    if (st == LISA_OK)
        st = config ? lisa_llama_model_init_random(&h, &cfg, be, wdtype, act, L - 1, L, 43)
                    : lisa_llama_model_load_quant(&h, model_dir, be, act, quant, L - 1, L);
    have_h = st == LISA_OK;
    if (st == LISA_OK) st = lisa_llama_state_init(&sa, &a, maxb, ctx, chunk, chunk);
    have_sa = st == LISA_OK;
    if (st == LISA_OK) st = lisa_llama_state_init(&sh, &h, maxb, ctx, chunk, chunk);
    have_sh = st == LISA_OK;
    int64_t shape[2] = {chunk, cfg.hidden_size};
    if (st == LISA_OK) st = lisa_backend_tensor_alloc(be, &xa, act, 2, shape);
    if (st == LISA_OK) st = lisa_backend_tensor_alloc(be, &xh, act, 2, shape);
    /* calls: decode at 3 depths for each batch size, prefill chunks from
     * the start, one chunk deep in the context */
    cost_call calls[64];
    int nc = 0;
    int depths[3] = {0, ctx / 2, ctx - 2};
    for (int i = 0; i < nb && nc < 40; i++)
        for (int d = 0; d < 3; d++)
            calls[nc++] = (cost_call){batches[i] < maxb ? batches[i] : maxb, 1, depths[d], 0};
    int pre[4] = {chunk / 8, chunk / 4, chunk / 2, chunk};
    for (int i = 0; i < 4; i++)
        if (pre[i] >= 1) calls[nc++] = (cost_call){1, pre[i], 0, 0};
    calls[nc++] = (cost_call){1, chunk / 2 > 0 ? chunk / 2 : 1, ctx / 2 - 1, 0};
    double fa[64][4], ya[64], layer[4] = {0, 0, 0, 0}, head[2] = {0, 0};
    for (int i = 0; i < nc && st == LISA_OK; i++) {
        st = cost_time(&a, &sa, &calls[i], NULL, &xa, buf, 5);
        cost_features(&calls[i], fa[i]);
        ya[i] = calls[i].secs / k;
    }
    if (st == LISA_OK) cost_fit((const double (*)[4])fa, ya, nc, 4, layer);
    /* the head: the last range's time over its one layer's prediction */
    double fh[64][4], yh[64];
    int nh = 0;
    for (int i = 0; i < nc && st == LISA_OK; i++) {
        cost_call c = calls[i];
        st = cost_time(&h, &sh, &c, &xh, &xh, buf, 5);
        double f[4], pred = 0;
        cost_features(&c, f);
        for (int j = 0; j < 4; j++) pred += layer[j] * f[j];
        fh[nh][0] = 1;
        fh[nh][1] = c.items; /* one output row per sequence */
        fh[nh][2] = fh[nh][3] = 0;
        yh[nh++] = c.secs - pred > 0 ? c.secs - pred : 0;
    }
    double hx[4] = {0, 0, 0, 0};
    if (st == LISA_OK) cost_fit((const double (*)[4])fh, yh, nh, 2, hx);
    head[0] = hx[0];
    head[1] = hx[1];
    FILE *f = NULL;
    if (st == LISA_OK && !(f = fopen(path, "w")))
        st = lisa_error_set(LISA_ERR_IO, "cannot write %s", path);
    if (st == LISA_OK) {
        fprintf(f, "{\n  \"_comment\": \"measured by lisa bench llm --layer-costs on %s, %s, %s "
                   "(%s weights, %d-layer first range and a 1-layer last range, median of 5 per "
                   "call, %d calls); the link and vision keys are not measured here: add "
                   "link_latency_s and link_bytes_per_s for the network, and clip_image_s, "
                   "sam_encoder_s and sam_decoder_s from lisa bench vision\",\n",
                be->ops->name, lisa_dtype_name(act), config ? config : model_dir,
                config ? "random" : "checkpoint", k, nc);
        fprintf(f, "  \"device\": \"%s %s\",\n  \"source\": \"measured\",\n", be->ops->name,
                lisa_dtype_name(act));
        fprintf(f, "  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n", cfg.hidden_size,
                cfg.intermediate_size);
        fprintf(f, "  \"layer_fixed_s\": %.6g,\n  \"layer_token_s\": %.6g,\n"
                   "  \"layer_ctx_s\": %.6g,\n  \"layer_pair_s\": %.6g,\n",
                layer[0], layer[1], layer[2], layer[3]);
        fprintf(f, "  \"head_fixed_s\": %.6g,\n  \"head_row_s\": %.6g\n}\n", head[0], head[1]);
        if (fclose(f) != 0) st = lisa_error_set(LISA_ERR_IO, "cannot write %s", path);
        else
            printf("layer: %.4g s + %.4g s/token + %.4g s/position read + %.4g s/pair; "
                   "head: %.4g s + %.4g s/row -> %s\n",
                   layer[0], layer[1], layer[2], layer[3], head[0], head[1], path);
    }
    if (xa.data) lisa_backend_tensor_free(be, &xa);
    if (xh.data) lisa_backend_tensor_free(be, &xh);
    if (have_sh) lisa_llama_state_free(&sh);
    if (have_sa) lisa_llama_state_free(&sa);
    if (have_h) lisa_llama_model_free(&h);
    if (have_a) lisa_llama_model_free(&a);
    free(buf);
    return st;
}

static int bench_llm(int argc, char **argv) {
    const char *model_dir = NULL, *config = NULL, *device = "cpu", *batches = "1,16";
    const char *dtype_s = "bf16", *layer_costs = NULL, *quant_s = "none";
    long T = 128, steps = 16, chunk = 512, threads = 0;
    int json = 0, no_graphs = 0, no_gemv = 0, bf16_dot = 0;
    const cli_opt opts[] = {
        {"--model", CLI_STRING, &model_dir}, {"--config", CLI_STRING, &config},
        {"--dtype", CLI_STRING, &dtype_s},   {"--batches", CLI_STRING, &batches},
        {"--device", CLI_STRING, &device},   {"--prompt-len", CLI_COUNT, &T},
        {"--new-tokens", CLI_COUNT, &steps}, {"--chunk", CLI_COUNT, &chunk},
        {"--threads", CLI_COUNT, &threads},  {"--json", CLI_FLAG, &json},
        {"--no-graphs", CLI_FLAG, &no_graphs}, {"--no-gemv", CLI_FLAG, &no_gemv},
        {"--layer-costs", CLI_STRING, &layer_costs}, {"--quantize", CLI_STRING, &quant_s},
        {"--bf16-dot", CLI_FLAG, &bf16_dot},
    };
    int pr = cli_opts_parse("bench llm", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]),
                            bench_help);
    if (pr) return pr > 0 ? 0 : 2;
    if (T < 1 || chunk < 1) {
        fprintf(stderr, "lisa bench llm: --prompt-len and --chunk must be at least 1\n");
        return 2;
    }
    if (!model_dir == !config) {
        fprintf(stderr, "lisa bench llm: give exactly one of --model and --config\n");
        return 2;
    }
    lisa_dtype dtype, quant;
    if (cli_parse_dtype(dtype_s, &dtype) || cli_parse_quant(quant_s, &quant)) return 2;
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
    /* random weights: stored in the --quantize type when given */
    lisa_dtype wdtype = lisa_dtype_is_quant(quant) ? quant : kind == LISA_BACKEND_CPU ? dtype : act;

    lisa_backend *be = NULL;
    lisa_llama_model m;
    lisa_llama_config cfg;
    lisa_backend_params bp = cli_backend_params(kind, dev, threads);
    if (no_graphs) bp.no_graphs = 1;
    if (no_gemv) bp.no_gemv = 1;
    if (bf16_dot) bp.cpu_bf16_dot = 1;
    lisa_status st = lisa_backend_init_params(&be, &bp);
    /* the CPU's matmul kernels, so a table says what it measured */
    char kernels[48] = "";
    if (st == LISA_OK && lisa_backend_cpu_isa_name(be))
        snprintf(kernels, sizeof kernels, "%s%s", lisa_backend_cpu_isa_name(be),
                 lisa_backend_cpu_bf16_dot(be) ? "+bf16dot" : "");
    if (layer_costs) {
        if (st == LISA_OK)
            st = bench_layer_costs(be, model_dir, config, wdtype, act, quant, (int)chunk, bs, nb,
                                   layer_costs);
        if (st != LISA_OK)
            fprintf(stderr, "lisa bench llm: %s: %s\n", lisa_status_str(st), lisa_error_get());
        lisa_backend_free(be);
        return st == LISA_OK ? 0 : 1;
    }
    int have_model = 0;
    if (st == LISA_OK && config) {
        st = lisa_llama_config_load(&cfg, config);
        if (st == LISA_OK) st = lisa_llama_model_init_random(&m, &cfg, be, wdtype, act, 0, -1, 42);
    } else if (st == LISA_OK) {
        st = lisa_llama_model_load_quant(&m, model_dir, be, act, quant, 0, -1);
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
    /* bytes a decode step reads from the weights: every matmul weight once
     * (the embedding table: one row per token, left out) */
    double wbytes = 0;
    for (int l = 0; have_model && l < m.layer_end - m.layer_begin; l++) {
        const lisa_llama_layer *L = &m.layers[l];
        const lisa_tensor *ws[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int j = 0; j < 7; j++) wbytes += (double)lisa_tensor_nbytes(ws[j]);
    }
    if (have_model && lisa_llama_model_is_last(&m)) wbytes += (double)lisa_tensor_nbytes(&m.output);
    if (st == LISA_OK && !json) {
        if (*kernels) printf("cpu matmul kernels: %s\n", kernels);
        printf("engine   device  batch  prompt  prefill tok/s  decode tok/s  weights GB/step  "
               "GB/s\n");
    }
    for (int i = 0; i < nb && st == LISA_OK; i++) {
        double tp, td;
        st = bench_pass(&m, &s, bs[i], (int)T, (int)(steps < 2 ? steps : 2), 1, &tp, &td);
        if (st == LISA_OK) st = bench_pass(&m, &s, bs[i], (int)T, (int)steps, 7, &tp, &td);
        if (st != LISA_OK) break;
        double pf = (double)bs[i] * (double)T / tp, dc = steps ? (double)bs[i] * (double)steps / td : 0;
        double gbs = wbytes * dc / bs[i] / 1e9; /* weight bytes per step x steps/s */
        if (json)
            printf("{\"engine\":\"lisa\",\"device\":\"%s\",\"batch\":%d,\"prompt_len\":%ld,"
                   "\"prefill_tok_s\":%.3f,\"decode_tok_s\":%.3f,\"weight_bytes\":%.0f,"
                   "\"decode_weight_gb_s\":%.3f,\"cpu_kernels\":\"%s\"}\n",
                   be->ops->name, bs[i], T, pf, dc, wbytes, gbs, kernels);
        else
            printf("lisa     %-6s  %5d  %6ld  %13.1f  %12.2f  %15.3f  %5.2f\n", be->ops->name, bs[i],
                   T, pf, dc, wbytes / 1e9, gbs);
        fflush(stdout);
    }
    if (st != LISA_OK) fprintf(stderr, "lisa bench llm: %s: %s\n", lisa_status_str(st), lisa_error_get());
    if (have_state) lisa_llama_state_free(&s);
    if (have_model) lisa_llama_model_free(&m);
    lisa_backend_free(be);
    return st == LISA_OK ? 0 : 1;
}

/* ---- lisa bench vision ---- */

static void vision_help(FILE *f) {
    fprintf(f,
            "usage: lisa bench vision [options]\n"
            "\n"
            "Times the vision models on random weights in named shapes: CLIP forward\n"
            "ms/image at --batch images per call (LLaVA/LISA's tower: hidden_states[-2],\n"
            "so L-1 layers run), SAM image encoder ms/image over --batch images, and\n"
            "SAM mask decoder ms/mask for --prompts prompts of one sparse token each\n"
            "(postprocessing not included). One untimed warm-up, then --iters timed runs.\n"
            "Comparisons with PyTorch: scripts/bench-vision.sh.\n"
            "\n"
            "options:\n"
            "  --clip P       l14 (default; CLIP ViT-L/14 at 224), b16, tiny or none\n"
            "  --sam P        vit_b (default), vit_l, vit_h, tiny or none\n"
            "  --batch N      images per CLIP and SAM encoder call (default 1)\n"
            "  --prompts N    prompts per SAM decoder call (default 8)\n"
            "  --iters N      timed runs (default 3)\n"
            "  --device DEV   cpu (default), cuda or cuda:N\n"
            "  --dtype T      fp32, bf16 or fp16. On cuda: weights and activations\n"
            "                 (default bf16). On cpu (fp32 compute): the dtype the\n"
            "                 random weights are stored in (default fp32)\n"
            "  --threads N    CPU threads (default: all cores)\n"
            "  --json         one JSON line per measurement instead of a table\n"
            "  -h, --help     show this help\n");
}

typedef struct vision_run {
    const char *device, *dtype, *weights; /* compute and weight storage dtypes */
    int json, iters;
} vision_run;

static const char *vision_dtype(lisa_dtype t) {
    return t == LISA_DTYPE_F32 ? "fp32" : t == LISA_DTYPE_BF16 ? "bf16" : "fp16";
}

/* Prints one measurement: value is ms per unit ("image" or "mask"). */
static void vision_report(const vision_run *r, const char *model, const char *part, int batch,
                          const char *unit, double ms, const char *extra) {
    if (r->json)
        printf("{\"engine\":\"lisa\",\"device\":\"%s\",\"dtype\":\"%s\",\"model\":\"%s\","
               "\"weights\":\"%s\",\"part\":\"%s\",\"batch\":%d,\"iters\":%d,"
               "\"ms_per_%s\":%.3f%s}\n",
               r->device, r->dtype, model, r->weights, part, batch, r->iters, unit, ms, extra);
    else
        printf("lisa    %-6s  %-5s  %-10s  %-12s  %5d  %9.2f ms/%s\n", r->device, r->dtype, model,
               part, batch, ms, unit);
    fflush(stdout);
}

/* Fills n floats with a fixed pseudo-random pattern in [-2, 2). */
static void vision_fill(float *x, size_t n, uint32_t seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)(seed >> 8) / (float)(1u << 24) * 4.0f - 2.0f;
    }
}

static lisa_status bench_clip(lisa_backend *be, const vision_run *r, const char *preset, int B,
                              lisa_dtype wdtype, lisa_dtype act) {
    lisa_clip_config cfg;
    int sel;
    LISA_TRY(lisa_vision_clip_preset(preset, &cfg, &sel));
    lisa_clip_model m;
    LISA_TRY(lisa_vision_random_clip(&m, &cfg, sel, be, wdtype, act, 11));
    lisa_clip_state s;
    lisa_status st = lisa_clip_state_init(&s, &m, NULL, B);
    if (st != LISA_OK) {
        lisa_clip_model_free(&m);
        return st;
    }
    size_t n = (size_t)B * 3 * (size_t)cfg.image_size * (size_t)cfg.image_size;
    float *pix = malloc(n * sizeof *pix);
    if (!pix) st = lisa_error_set(LISA_ERR_NOMEM, "bench: out of memory");
    else vision_fill(pix, n, 5);
    if (st == LISA_OK) st = lisa_clip_forward(&m, &s, pix, B, NULL);
    if (st == LISA_OK) st = lisa_backend_synchronize(be);
    double t0 = now_s();
    for (int i = 0; i < r->iters && st == LISA_OK; i++) {
        st = lisa_clip_forward(&m, &s, pix, B, NULL);
        if (st == LISA_OK) st = lisa_backend_synchronize(be);
    }
    double dt = now_s() - t0;
    if (st == LISA_OK) {
        char model[32], extra[64];
        snprintf(model, sizeof model, "clip-%s", preset);
        snprintf(extra, sizeof extra, ",\"layers\":%d,\"image_size\":%d", m.n_layers,
                 cfg.image_size);
        vision_report(r, model, "clip", B, "image", 1e3 * dt / ((double)r->iters * B), extra);
    }
    free(pix);
    lisa_clip_state_free(&s);
    lisa_clip_model_free(&m);
    return st;
}

static lisa_status bench_sam(lisa_backend *be, const vision_run *r, const char *preset, int B,
                             int prompts, lisa_dtype wdtype, lisa_dtype act) {
    lisa_vision_sam_shape shape;
    LISA_TRY(lisa_vision_sam_preset(preset, &shape));
    lisa_sam_model m;
    LISA_TRY(lisa_vision_random_sam(&m, &shape, be, wdtype, act, 13));
    lisa_sam_state s;
    lisa_status st = lisa_sam_state_init_batch(&s, &m, B, prompts, 1, 1);
    if (st != LISA_OK) {
        lisa_sam_model_free(&m);
        return st;
    }
    int S = m.cfg.img_size, C = m.cfg.dim;
    size_t n = (size_t)B * 3 * (size_t)S * (size_t)S;
    float *img = malloc(n * sizeof *img), *sparse = malloc((size_t)prompts * C * sizeof *sparse);
    if (!img || !sparse) st = lisa_error_set(LISA_ERR_NOMEM, "bench: out of memory");
    if (st == LISA_OK) {
        vision_fill(img, n, 7);
        vision_fill(sparse, (size_t)prompts * C, 9);
    }
    char model[32];
    snprintf(model, sizeof model, "sam-%s", preset);
    /* encoder: B images in one pass */
    if (st == LISA_OK) st = lisa_sam_encode_batch(&m, &s, img, B, NULL);
    if (st == LISA_OK) st = lisa_backend_synchronize(be);
    double t0 = now_s();
    for (int i = 0; i < r->iters && st == LISA_OK; i++) {
        st = lisa_sam_encode_batch(&m, &s, img, B, NULL);
        if (st == LISA_OK) st = lisa_backend_synchronize(be);
    }
    double dt = now_s() - t0;
    if (st == LISA_OK) {
        char extra[48];
        snprintf(extra, sizeof extra, ",\"images_per_call\":%d", B);
        vision_report(r, model, "sam-encoder", B, "image", 1e3 * dt / ((double)r->iters * B),
                      extra);
    }
    /* decoder: one call with all prompts against the first image's embedding */
    if (st == LISA_OK) st = lisa_sam_select_embedding(&s, 0);
    if (st == LISA_OK) st = lisa_sam_decode(&m, &s, sparse, prompts, 1, 0, NULL, NULL);
    if (st == LISA_OK) st = lisa_backend_synchronize(be);
    t0 = now_s();
    for (int i = 0; i < r->iters && st == LISA_OK; i++) {
        st = lisa_sam_decode(&m, &s, sparse, prompts, 1, 0, NULL, NULL);
        if (st == LISA_OK) st = lisa_backend_synchronize(be);
    }
    dt = now_s() - t0;
    if (st == LISA_OK) {
        char extra[64];
        snprintf(extra, sizeof extra, ",\"prompts\":%d,\"ms_per_call\":%.3f", prompts,
                 1e3 * dt / r->iters);
        vision_report(r, model, "sam-decoder", 1, "mask", 1e3 * dt / ((double)r->iters * prompts),
                      extra);
    }
    free(img);
    free(sparse);
    lisa_sam_state_free(&s);
    lisa_sam_model_free(&m);
    return st;
}

static int bench_vision(int argc, char **argv) {
    const char *clip = "l14", *sam = "vit_b", *device = "cpu", *dtype_s = NULL;
    long batch = 1, iters = 3, prompts = 8, threads = 0;
    int json = 0;
    const cli_opt opts[] = {
        {"--clip", CLI_STRING, &clip},     {"--sam", CLI_STRING, &sam},
        {"--device", CLI_STRING, &device}, {"--dtype", CLI_STRING, &dtype_s},
        {"--batch", CLI_COUNT, &batch},    {"--iters", CLI_COUNT, &iters},
        {"--prompts", CLI_COUNT, &prompts}, {"--threads", CLI_COUNT, &threads},
        {"--json", CLI_FLAG, &json},
    };
    int pr = cli_opts_parse("bench vision", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]),
                            vision_help);
    if (pr) return pr > 0 ? 0 : 2;
    if (batch < 1 || iters < 1 || prompts < 1) {
        fprintf(stderr, "lisa bench vision: --batch, --iters and --prompts must be at least 1\n");
        return 2;
    }
    lisa_clip_config ccfg;
    lisa_vision_sam_shape sshape;
    int sel;
    if (strcmp(clip, "none") && lisa_vision_clip_preset(clip, &ccfg, &sel) != LISA_OK) {
        fprintf(stderr, "lisa bench vision: --clip: %s\n", lisa_error_get());
        return 2;
    }
    if (strcmp(sam, "none") && lisa_vision_sam_preset(sam, &sshape) != LISA_OK) {
        fprintf(stderr, "lisa bench vision: --sam: %s\n", lisa_error_get());
        return 2;
    }
    lisa_backend_kind kind;
    int dev;
    if (cli_parse_device(device, &kind, &dev)) return 2;
    int cpu = kind == LISA_BACKEND_CPU;
    lisa_dtype dtype;
    if (cli_parse_dtype(dtype_s ? dtype_s : cpu ? "fp32" : "bf16", &dtype)) return 2;
    lisa_dtype act = cpu ? LISA_DTYPE_F32 : dtype;
    lisa_backend *be = NULL;
    lisa_backend_params bp = cli_backend_params(kind, dev, threads);
    lisa_status st = lisa_backend_init_params(&be, &bp);
    vision_run r = {NULL, vision_dtype(act), vision_dtype(dtype), json, (int)iters};
    if (st == LISA_OK) {
        r.device = be->ops->name;
        if (!json)
            printf("engine  device  dtype  model       part          batch  time\n");
    }
    if (st == LISA_OK && strcmp(clip, "none"))
        st = bench_clip(be, &r, clip, (int)batch, dtype, act);
    if (st == LISA_OK && strcmp(sam, "none"))
        st = bench_sam(be, &r, sam, (int)batch, (int)prompts, dtype, act);
    if (st != LISA_OK)
        fprintf(stderr, "lisa bench vision: %s: %s\n", lisa_status_str(st), lisa_error_get());
    lisa_backend_free(be);
    return st == LISA_OK ? 0 : 1;
}

/* ---- lisa bench memory ---- */

static void memory_help(FILE *f) {
    fprintf(f,
            "usage: lisa bench memory [--threads N] [--mb MB] [--reps R] [--json]\n"
            "\n"
            "Measures host memory bandwidth STREAM-style: a read-only pass (what batch-1\n"
            "decode does to the weights) and a copy (read + write counted), each the\n"
            "best of --reps (default 5) over a --mb (default 1024) MB buffer on --threads\n"
            "threads (default: all cores). Decode tok/s at batch 1 is bounded by read\n"
            "GB/s over the weight bytes read per token (lisa bench llm prints both).\n");
}

static int bench_memory(int argc, char **argv) {
    long threads = 0, mb = 1024, reps = 5;
    int json = 0;
    const cli_opt opts[] = {
        {"--threads", CLI_COUNT, &threads}, {"--mb", CLI_COUNT, &mb},
        {"--reps", CLI_COUNT, &reps},       {"--json", CLI_FLAG, &json},
    };
    int pr = cli_opts_parse("bench memory", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]),
                            memory_help);
    if (pr) return pr > 0 ? 0 : 2;
    if (mb < 1) {
        fprintf(stderr, "lisa bench memory: --mb must be at least 1\n");
        return 2;
    }
    lisa_cpu_stream r;
    lisa_status st = lisa_cpu_stream_measure((int)threads, (size_t)mb << 20, (int)reps, &r);
    if (st != LISA_OK) {
        fprintf(stderr, "lisa bench memory: %s: %s\n", lisa_status_str(st), lisa_error_get());
        return 1;
    }
    if (json)
        printf("{\"engine\":\"lisa\",\"bench\":\"memory\",\"threads\":%d,\"bytes\":%zu,"
               "\"read_gb_s\":%.3f,\"copy_gb_s\":%.3f}\n",
               r.threads, r.bytes, r.read_gb_s, r.copy_gb_s);
    else
        printf("memory  threads %d  buffer %zu MB  read %.2f GB/s  copy %.2f GB/s\n", r.threads,
               r.bytes >> 20, r.read_gb_s, r.copy_gb_s);
    return 0;
}

int cmd_bench(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "memory")) return bench_memory(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "llm")) return bench_llm(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "vision")) return bench_vision(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "engine")) return cmd_bench_engine(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "queue")) return cmd_bench_queue(argc - 1, argv + 1);
    FILE *f = (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) ? stdout : stderr;
    fprintf(f, "usage: lisa bench llm|vision|engine|queue|memory [options]   (see\n"
               "       `lisa bench llm --help`, `lisa bench vision --help`, `lisa bench\n"
               "       engine --help`, `lisa bench queue --help`, `lisa bench memory --help`)\n");
    return f == stdout ? 0 : 2;
}
