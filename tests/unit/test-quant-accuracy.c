/* test-quant-accuracy.c: how far Q8_0 and Q4_0 weights move the model from
 * fp32, measured on the reference fixtures and held to stated bounds
 * (issue 13, item 3). CPU backend, load-time quantization
 * (lisa_llama_model_load_quant / lisa_engine_params.quantize: the LLM's
 * projections and LM head; rows that are not whole blocks of 32 keep their
 * float dtype, so llama-gqa's down_proj (K 48) and tied LM head stay fp16).
 *
 * For each weight type (F32 first, as the control, then Q8_0 and Q4_0):
 *  - llama-tc and llama-gqa (tests/reference/gen_llama.py; HF transformers
 *    fp32): per case the logits at the first and last prompt positions
 *    against transformers' (max |diff|, and max |diff| over the RMS of the
 *    reference logits); teacher forcing over the prompt and the reference's
 *    greedy continuation: the fraction of positions whose argmax is the
 *    reference's token, and the widest fp32 top-1 - top-2 margin (the
 *    reference's top2) among the positions whose argmax changed;
 *    free-running greedy generation equal to the reference's or not;
 *  - lisa-tiny-q (tests/reference/gen_lisa.py --variant q, the tiny LISA
 *    whose every LLM matmul is quantizable; checked here): the engine on the
 *    fixture's cases: generated answers equal to the reference's or not,
 *    [SEG] embeddings against the reference's (max |diff| / max |ref|), and
 *    the IoU of each [SEG] mask with the reference mask (a missing mask
 *    counts 0).
 * It prints per-case lines, then one table (type, fixture, metric, value,
 * bound) and fails when a bound is broken. F32 must show no error beyond
 * fp32 rounding (the measures themselves are sound), and Q4_0 must break
 * every Q8_0 bound on the continuous measures (the Q8_0 bounds are tight
 * enough to catch a coarser quantization); both facts are printed.
 *
 * Not here: speed (lisa bench llm), other backends (test-backend-ops holds
 * the CUDA quantized kernels to the CPU's), the quantizers' bytes (the dtype
 * tests). */
#include <cJSON.h>
#include <time.h>

#include "engine.h"
#include "generate.h"
#include "llama.h"
#include "testutil.h"

/* What is measured; `at_least`: a bound is a floor (else a ceiling). */
typedef enum {
    M_LOGITS_ABS,  /* logits max |diff| against transformers fp32, worst case (no bound) */
    M_LOGITS_REL,  /* the same over the RMS of the reference logits */
    M_TF_AGREE,    /* teacher-forced argmax = the reference's token, fraction of positions */
    M_MARGIN,      /* widest fp32 top-1 - top-2 margin at a position whose argmax changed */
    M_GREEDY,      /* free-running greedy output equal, fraction of cases */
    M_ANSWERS,     /* LISA: generated answers equal, fraction of generation cases */
    M_SEG,         /* LISA: [SEG] embeddings max |diff| / max |ref|, worst case */
    M_IOU,         /* LISA: smallest IoU of a [SEG] mask with the reference mask */
    M_COUNT
} acc_metric;

static const struct {
    const char *name;
    int at_least;
} g_metrics[M_COUNT] = {
    {"logits max |diff|", 0},          {"logits max |diff| / RMS", 0},
    {"teacher-forced argmax agree", 1}, {"widest fp32 margin overturned", 0},
    {"greedy output equal (cases)", 1}, {"answers equal (generated)", 1},
    {"[SEG] embeddings rel err", 0},    {"mask IoU, smallest", 1},
};

/* The bounds; fixture NULL: every fixture. How they were chosen:
 *
 * F32 is the control: the fixtures' own fp32 tolerances (test-llama's 1e-5
 * for logits, there of max |ref|, here of the smaller RMS, so stricter;
 * test-lisa's 1e-4 for [SEG] embeddings), every token and answer equal, no
 * argmax changed, masks equal (IoU 0.999 leaves room for the few pixels
 * whose reference logit is within 1e-4 of 0).
 *
 * Quantized: from the values measured on this machine (the table this test
 * prints; docs/quantization.md, Accuracy) with one rule of headroom:
 * ceilings twice the worst measured value (logits error, [SEG]-embedding
 * error, widest margin overturned), floors the measured fraction less one
 * position per case (teacher-forced agreement) or less one case (greedy
 * equality, answers), and IoU floors at twice the measured 1 - IoU. Twice:
 * enough for other fp32 summation orders (the CPU kernels are being
 * rewritten for speed with the same semantics, results within fp32
 * rounding), tight enough that Q4_0 breaks the Q8_0 bounds (checked in
 * main).
 *
 * Q8_0 on lisa-tiny-q, the fixture made for this (an LLM trained to its
 * answers, fp32 greedy margins >= 8 like a real model's decisive tokens):
 * what the issue demands, every generated answer equal (hence the same
 * [SEG] tokens and masks), with no headroom.
 *
 * Q8_0 on llama-tc and llama-gqa: these random-weight models were built for
 * wide logits, not stable decisions. Their greedy steps include near-ties
 * (smallest fp32 margins 0.11 and 0.012 logits; 14 and 55 of 200 steps under
 * 1 logit) and Q8_0 moves their logits by 0.6 to 1.5: transformers itself
 * with Q8_0-rounded weights moves them as much (checked once with weights
 * fake-quantized in torch: 0.0692 vs 0.0691 and 0.264 vs 0.264 of RMS in the
 * worst cases: weights only). Equal free-running output cannot hold on them
 * for any 8-bit rounding, so the bounds there say that Q8_0 flips only
 * near-ties: the widest fp32 margin it overturns and teacher-forced
 * agreement. Greedy equality is reported, not bounded: every case meets a
 * near-tie within 1 to 26 tokens (1 of 5 equal on each).
 *
 * The CPU computes Q8_0/Q4_0 weights packed (matmul-cpu.h), with the
 * activations rounded to Q8_0 too, as llama.cpp does. For Q8_0 that
 * doubles the logits error of weights-only rounding (llama-tc 0.148 of RMS
 * against 0.0691, llama-gqa 0.298 against 0.264) and leaves lisa-tiny-q's
 * answers equal; Q4_0's error is its weights' (1.40 against 1.39). */
typedef struct {
    lisa_dtype type;
    const char *fixture;
    acc_metric metric;
    double bound;
} acc_bound;

static const acc_bound g_bounds[] = {
    {LISA_DTYPE_F32, NULL, M_LOGITS_REL, 1e-5},
    {LISA_DTYPE_F32, NULL, M_TF_AGREE, 1.0},
    {LISA_DTYPE_F32, NULL, M_MARGIN, 0.0},
    {LISA_DTYPE_F32, NULL, M_GREEDY, 1.0},
    {LISA_DTYPE_F32, NULL, M_ANSWERS, 1.0},
    {LISA_DTYPE_F32, NULL, M_SEG, 1e-4},
    {LISA_DTYPE_F32, NULL, M_IOU, 0.999},

    {LISA_DTYPE_Q8_0, "llama-tc", M_LOGITS_REL, 0.30},    /* measured 0.148 */
    {LISA_DTYPE_Q8_0, "llama-tc", M_TF_AGREE, 0.945},     /* 0.97 */
    {LISA_DTYPE_Q8_0, "llama-tc", M_MARGIN, 3.7},         /* 1.82 */
    {LISA_DTYPE_Q8_0, "llama-gqa", M_LOGITS_REL, 0.60},   /* 0.298 */
    {LISA_DTYPE_Q8_0, "llama-gqa", M_TF_AGREE, 0.92},     /* 0.945 */
    {LISA_DTYPE_Q8_0, "llama-gqa", M_MARGIN, 0.89},       /* 0.442 */
    {LISA_DTYPE_Q8_0, "lisa-tiny-q", M_ANSWERS, 1.0},     /* 1: the demand */
    {LISA_DTYPE_Q8_0, "lisa-tiny-q", M_SEG, 0.024},       /* 0.0117 */
    {LISA_DTYPE_Q8_0, "lisa-tiny-q", M_IOU, 0.993},       /* 0.9969 */

    {LISA_DTYPE_Q4_0, "llama-tc", M_LOGITS_REL, 2.8},     /* 1.40 */
    {LISA_DTYPE_Q4_0, "llama-tc", M_TF_AGREE, 0.79},      /* 0.815 */
    {LISA_DTYPE_Q4_0, "llama-tc", M_MARGIN, 31.0},        /* 15.4 */
    {LISA_DTYPE_Q4_0, "llama-gqa", M_LOGITS_REL, 5.7},    /* 2.82 */
    {LISA_DTYPE_Q4_0, "llama-gqa", M_TF_AGREE, 0.355},    /* 0.38 */
    {LISA_DTYPE_Q4_0, "llama-gqa", M_MARGIN, 14.0},       /* 7.0 */
    {LISA_DTYPE_Q4_0, "lisa-tiny-q", M_ANSWERS, 0.5},     /* 1 (2 of 2) */
    {LISA_DTYPE_Q4_0, "lisa-tiny-q", M_SEG, 0.31},        /* 0.149 */
    {LISA_DTYPE_Q4_0, "lisa-tiny-q", M_IOU, 0.948},       /* 0.974 */
};

static const lisa_dtype g_types[] = {LISA_DTYPE_F32, LISA_DTYPE_Q8_0, LISA_DTYPE_Q4_0};

#define MAX_ROWS 64

typedef struct {
    lisa_dtype type;
    char fixture[16];
    acc_metric metric;
    double value, bound; /* bound NAN: reported only */
    int quantized, total; /* matmul weights quantized / in all (llama fixtures), or 0 */
} acc_row;

static acc_row g_rows[MAX_ROWS];
static int g_nrows;

/* The bound of (type, fixture, metric), NAN when there is none. */
static double bound_of(lisa_dtype type, const char *fixture, acc_metric metric) {
    for (size_t i = 0; i < sizeof g_bounds / sizeof g_bounds[0]; i++) {
        const acc_bound *b = &g_bounds[i];
        if (b->type == type && b->metric == metric && (!b->fixture || !strcmp(b->fixture, fixture)))
            return b->bound;
    }
    return NAN;
}

static int value_passes(acc_metric metric, double value, double bound) {
    return g_metrics[metric].at_least ? value >= bound : value <= bound;
}

static acc_row *row_add(lisa_dtype type, const char *fixture, acc_metric metric, double value) {
    if (g_nrows == MAX_ROWS) return NULL;
    acc_row *r = &g_rows[g_nrows++];
    memset(r, 0, sizeof *r);
    r->type = type;
    snprintf(r->fixture, sizeof r->fixture, "%s", fixture);
    r->metric = metric;
    r->value = value;
    r->bound = bound_of(type, fixture, metric);
    return r;
}

/* ------------------------------------------------------------ llama fixtures */

typedef struct {
    int32_t *ids, *gen;
    int n, n_gen;
    float *logits; /* (2, V): prompt positions 0 and n-1, transformers fp32 */
    double *margin; /* (n_gen) transformers' top-1 - top-2 logit at each greedy step */
} llama_case;

static int32_t *ids_of(const cJSON *arr, int *n) {
    *n = cJSON_GetArraySize(arr);
    int32_t *ids = malloc((size_t)(*n ? *n : 1) * sizeof *ids);
    for (int i = 0; ids && i < *n; i++) ids[i] = (int32_t)cJSON_GetArrayItem(arr, i)->valuedouble;
    return ids;
}

/* Matmul weights of m in a block type, and in all (the loader keeps rows
 * that are not whole blocks in their float dtype). */
static void count_quantized(const lisa_llama_model *m, int *q, int *total) {
    *q = *total = 0;
    for (int l = 0; l < m->layer_end - m->layer_begin; l++) {
        const lisa_llama_layer *L = &m->layers[l];
        const lisa_tensor *w[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
            (*total)++;
            *q += lisa_dtype_is_quant(w[i]->dtype) || lisa_dtype_is_packed(w[i]->dtype);
        }
    }
    (*total)++;
    *q += lisa_dtype_is_quant(m->output.dtype) || lisa_dtype_is_packed(m->output.dtype);
}

/* max |a - b| and that over the RMS of b, n values. */
static void abs_rms_err(const float *a, const float *b, size_t n, double *max_abs, double *rel) {
    double md = 0, ss = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > md || isnan(d)) md = isnan(d) ? INFINITY : d;
        ss += (double)b[i] * b[i];
    }
    double rms = sqrt(ss / (double)(n ? n : 1));
    *max_abs = md;
    *rel = rms > 0 ? md / rms : md;
}

/* Teacher forcing of every case in one forward call (case k in slot k):
 * each case's prompt and the reference's continuation but its last token.
 * Fills agree[k] (continuation positions whose argmax is the reference's
 * token), widest[k] (the widest reference margin among those that are not)
 * and lg (nc, 2, V) with the logits of prompt positions 0 and n-1. One call
 * rather than one per case: the logits of all cases come from one pass over
 * the LM head. */
static lisa_status teacher_forced(const lisa_llama_model *m, lisa_llama_state *s,
                                  const llama_case *cs, int nc, float *lg, int *agree,
                                  double *widest) {
    int T = 0, n_out = 0, V = m->cfg.vocab_size;
    for (int k = 0; k < nc; k++) {
        T += cs[k].n + cs[k].n_gen - 1;
        n_out += cs[k].n_gen + 1;
    }
    int32_t *tok = malloc((size_t)T * 4), *seq = malloc((size_t)T * 4), *pos = malloc((size_t)T * 4),
            *rows = malloc((size_t)n_out * 4), *next = malloc((size_t)n_out * 4);
    float *out = malloc((size_t)n_out * (size_t)V * sizeof(float));
    lisa_status st = LISA_ERR_NOMEM;
    if (tok && seq && pos && rows && next && out) {
        /* rows of case k: position 0, then n-1 .. n-1+n_gen-1 */
        int t = 0, r = 0;
        for (int k = 0; k < nc; k++) {
            const llama_case *c = &cs[k];
            rows[r++] = t;
            for (int i = 0; i < c->n + c->n_gen - 1; i++, t++) {
                tok[t] = i < c->n ? c->ids[i] : c->gen[i - c->n];
                seq[t] = k;
                pos[t] = i;
                if (i >= c->n - 1) rows[r++] = t;
            }
        }
        lisa_llama_batch b = {T, tok, NULL, seq, pos, n_out, rows};
        st = lisa_llama_forward(m, s, &b, out, NULL, next);
        CHECK(st == LISA_OK, "teacher-forced forward: %s", lisa_error_get());
        for (int k = 0, r0 = 0; st == LISA_OK && k < nc; r0 += cs[k].n_gen + 1, k++) {
            const llama_case *c = &cs[k];
            memcpy(lg + (size_t)k * 2 * V, out + (size_t)r0 * V, (size_t)V * sizeof(float));
            memcpy(lg + ((size_t)k * 2 + 1) * V, out + (size_t)(r0 + 1) * V, (size_t)V * sizeof(float));
            agree[k] = 0;
            widest[k] = 0;
            for (int j = 0; j < c->n_gen; j++) {
                int ok = next[r0 + 1 + j] == c->gen[j];
                agree[k] += ok;
                if (!ok && c->margin[j] > widest[k]) widest[k] = c->margin[j];
            }
        }
    }
    free(tok);
    free(seq);
    free(pos);
    free(rows);
    free(next);
    free(out);
    return st;
}

static void llama_fixture(const char *fixtures, const char *name, lisa_dtype type) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", fixtures, name);
    char *json = test_read_file(test_path(dir, "expected.json"), NULL);
    CHECK(json != NULL, "%s/expected.json missing", dir);
    cJSON *root = json ? cJSON_Parse(json) : NULL;
    const cJSON *cases = cJSON_GetObjectItem(root, "cases");
    int nc = cJSON_GetArraySize(cases);
    CHECK(nc >= 5, "%s: %d cases", name, nc);
    lisa_backend *be = NULL;
    lisa_llama_model m;
    lisa_status st = lisa_backend_cpu_init(&be, 2);
    CHECK(st == LISA_OK, "backend: %s", lisa_error_get());
    if (st == LISA_OK) st = lisa_llama_model_load_quant(&m, dir, be, LISA_DTYPE_F32, type, 0, -1);
    CHECK(st == LISA_OK, "load %s as %s: %s", name, lisa_dtype_name(type), lisa_error_get());
    if (st != LISA_OK || nc < 1) {
        lisa_backend_free(be);
        cJSON_Delete(root);
        free(json);
        return;
    }
    int V = m.cfg.vocab_size;
    llama_case *cs = calloc((size_t)nc, sizeof *cs);
    int max_t = 0;
    for (int k = 0; k < nc; k++) {
        const cJSON *c = cJSON_GetArrayItem(cases, k);
        cs[k].ids = ids_of(cJSON_GetObjectItem(c, "ids"), &cs[k].n);
        cs[k].gen = ids_of(cJSON_GetObjectItem(c, "generated"), &cs[k].n_gen);
        cs[k].logits = test_read_f32(dir, cJSON_GetObjectItem(c, "logits_file")->valuestring,
                                     (size_t)2 * V);
        if (cs[k].n + cs[k].n_gen > max_t) max_t = cs[k].n + cs[k].n_gen;
        const cJSON *top2 = cJSON_GetObjectItem(c, "top2");
        CHECK(cJSON_GetArraySize(top2) == cs[k].n_gen, "%s case %d: top2 has %d steps", name, k,
              cJSON_GetArraySize(top2));
        cs[k].margin = calloc((size_t)(cs[k].n_gen ? cs[k].n_gen : 1), sizeof(double));
        for (int j = 0; j < cs[k].n_gen && j < cJSON_GetArraySize(top2); j++) {
            const cJSON *t = cJSON_GetArrayItem(top2, j);
            cs[k].margin[j] = cJSON_GetArrayItem(t, 0)->valuedouble - cJSON_GetArrayItem(t, 1)->valuedouble;
        }
    }
    int sum_t = 0, sum_out = 0;
    for (int k = 0; k < nc; k++) {
        sum_t += cs[k].n + cs[k].n_gen;
        sum_out += cs[k].n_gen + 1;
    }
    lisa_llama_state s;
    st = lisa_llama_state_init(&s, &m, nc, max_t + 1, sum_t, sum_out);
    CHECK(st == LISA_OK, "state: %s", lisa_error_get());

    double worst_abs = 0, worst_rel = 0;
    int agree = 0, positions = 0, greedy_equal = 0;
    double widest = 0; /* the widest fp32 margin at a position whose argmax changed */
    float *lg = malloc((size_t)nc * 2 * V * sizeof(float));
    int *agree_k = calloc((size_t)nc, sizeof(int));
    double *widest_k = calloc((size_t)nc, sizeof(double));
    lisa_gen_request *rq = calloc((size_t)nc, sizeof *rq);
    lisa_gen_result *res = calloc((size_t)nc, sizeof *res);
    int ok = st == LISA_OK && lg && agree_k && widest_k && rq && res;
    for (int k = 0; ok && k < nc; k++) ok = cs[k].logits && cs[k].margin && cs[k].n_gen >= 1;
    CHECK(ok, "%s: fixture unreadable or out of memory", name);
    if (ok) ok = teacher_forced(&m, &s, cs, nc, lg, agree_k, widest_k) == LISA_OK;
    /* free-running: all cases in one batch (test-llama holds batched
     * generation equal to one at a time) */
    for (int k = 0; ok && k < nc; k++)
        rq[k] = (lisa_gen_request){.prompt = cs[k].ids, .n_prompt = cs[k].n,
                                   .max_new_tokens = cs[k].n_gen};
    if (ok) {
        ok = lisa_generate_greedy(&m, &s, rq, nc, m.cfg.eos_token_id, res) == LISA_OK;
        CHECK(ok, "generate: %s", lisa_error_get());
    }
    for (int k = 0; ok && k < nc; k++) {
        double ea, er;
        abs_rms_err(lg + (size_t)k * 2 * V, cs[k].logits, (size_t)2 * V, &ea, &er);
        const lisa_gen_result *r = &res[k];
        int same = r->status == LISA_OK && r->n_tokens == cs[k].n_gen &&
                   !memcmp(r->tokens, cs[k].gen, (size_t)r->n_tokens * 4);
        int first_diff = 0;
        while (first_diff < r->n_tokens && first_diff < cs[k].n_gen &&
               r->tokens[first_diff] == cs[k].gen[first_diff])
            first_diff++;
        fprintf(stderr,
                "  %-4s %-9s case %d: logits max|diff| %.4g, /RMS %.3g; teacher-forced argmax "
                "%d/%d (widest fp32 margin overturned %.3g); greedy %s (first %d of %d tokens equal)\n",
                lisa_dtype_name(type), name, k, ea, er, agree_k[k], cs[k].n_gen, widest_k[k],
                same ? "equal" : "differs", first_diff, cs[k].n_gen);
        if (ea > worst_abs) worst_abs = ea;
        if (er > worst_rel) worst_rel = er;
        if (widest_k[k] > widest) widest = widest_k[k];
        agree += agree_k[k];
        positions += cs[k].n_gen;
        greedy_equal += same;
    }
    for (int k = 0; res && k < nc; k++) lisa_gen_result_free(&res[k]);
    free(lg);
    free(agree_k);
    free(widest_k);
    free(rq);
    free(res);
    if (!ok) {
        worst_abs = worst_rel = widest = INFINITY;
        agree = greedy_equal = 0;
    }
    int q, total;
    count_quantized(&m, &q, &total);
    acc_row *rows[] = {
        row_add(type, name, M_LOGITS_ABS, worst_abs),
        row_add(type, name, M_LOGITS_REL, worst_rel),
        row_add(type, name, M_TF_AGREE, positions ? (double)agree / positions : 0),
        row_add(type, name, M_MARGIN, widest),
        row_add(type, name, M_GREEDY, (double)greedy_equal / nc),
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        if (rows[i]) {
            rows[i]->quantized = q;
            rows[i]->total = total;
        }
    if (st == LISA_OK) lisa_llama_state_free(&s);
    for (int k = 0; k < nc; k++) {
        free(cs[k].ids);
        free(cs[k].gen);
        free(cs[k].logits);
        free(cs[k].margin);
    }
    free(cs);
    lisa_llama_model_free(&m);
    lisa_backend_free(be);
    cJSON_Delete(root);
    free(json);
}

/* ------------------------------------------------------------ lisa-tiny-q */

/* The user message of a prompt: between "<im_end>\n" and " ASSISTANT:". */
static char *user_of(const char *prompt) {
    const char *a = strstr(prompt, "<im_end>\n"), *b = strstr(prompt, " ASSISTANT:");
    if (!a || !b || b < a) return NULL;
    a += strlen("<im_end>\n");
    char *s = malloc((size_t)(b - a) + 1);
    if (!s) return NULL;
    memcpy(s, a, (size_t)(b - a));
    s[b - a] = 0;
    return s;
}

/* |A and B| / |A or B| of a 0/1 mask and a reference PNG (255 inside);
 * -1 when the PNG is unreadable or of another size. Two empty masks: 1. */
static double mask_iou(const uint8_t *mask, int w, int h, const char *png) {
    lisa_image ref;
    if (lisa_image_load(&ref, png, NULL) != LISA_OK) return -1;
    double iou = -1;
    if (ref.w == w && ref.h == h) {
        long inter = 0, uni = 0;
        for (int i = 0; i < w * h; i++) {
            int a = mask[i] != 0, b = ref.rgb[3 * i] != 0;
            inter += a & b;
            uni += a | b;
        }
        iou = uni ? (double)inter / (double)uni : 1.0;
    }
    lisa_image_free(&ref);
    return iou;
}

static void lisa_fixture(const char *fixtures, lisa_dtype type) {
    char dir[4096], model[4096];
    snprintf(dir, sizeof dir, "%s/lisa-tiny-q/expected", fixtures);
    snprintf(model, sizeof model, "%s/lisa-tiny-q/model", fixtures);
    char *text = test_read_file(test_path(dir, "cases.json"), NULL);
    CHECK(text != NULL, "lisa-tiny-q/expected/cases.json missing");
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    const cJSON *cases = cJSON_GetObjectItem(root, "cases");
    int nc = cJSON_GetArraySize(cases);
    CHECK(nc >= 3, "lisa-tiny-q: %d cases", nc);
    /* the fixture's point: every LLM matmul of it is quantized (the engine
     * loads its LLM the same way) */
    lisa_backend *be = NULL;
    lisa_llama_model llm;
    int q = 0, total = 0;
    if (lisa_backend_cpu_init(&be, 1) == LISA_OK &&
        lisa_llama_model_load_quant(&llm, model, be, LISA_DTYPE_F32, type, 0, -1) == LISA_OK) {
        count_quantized(&llm, &q, &total);
        lisa_llama_model_free(&llm);
    }
    lisa_backend_free(be);
    CHECK(total > 0 && q == (type == LISA_DTYPE_F32 ? 0 : total),
          "lisa-tiny-q as %s: %d of %d matmuls quantized", lisa_dtype_name(type), q, total);

    lisa_engine_params p;
    memset(&p, 0, sizeof p);
    p.model_dir = model;
    p.backend = LISA_BACKEND_CPU;
    p.threads = 2;
    p.dtype = LISA_DTYPE_F32;
    p.quantize = type;
    p.max_batch = nc > 0 ? nc : 1;
    p.max_new_tokens = 32;
    lisa_engine *e = NULL;
    lisa_status st = nc > 0 ? lisa_engine_init(&e, &p) : LISA_ERR_ARG;
    CHECK(st == LISA_OK, "engine (%s): %s", lisa_dtype_name(type), lisa_error_get());
    if (st != LISA_OK) {
        cJSON_Delete(root);
        free(text);
        return;
    }
    lisa_request *rq = calloc((size_t)nc, sizeof *rq);
    char **users = calloc((size_t)nc, sizeof *users), **paths = calloc((size_t)nc, sizeof *paths);
    for (int k = 0; k < nc; k++) {
        const cJSON *c = cJSON_GetArrayItem(cases, k);
        const cJSON *reply = cJSON_GetObjectItem(c, "reply");
        users[k] = user_of(cJSON_GetObjectItem(c, "prompt")->valuestring);
        paths[k] = malloc(4200);
        snprintf(paths[k], 4200, "%s/images/%s", fixtures, cJSON_GetObjectItem(c, "image")->valuestring);
        rq[k].id = cJSON_GetObjectItem(c, "name")->valuestring;
        rq[k].image_path = paths[k];
        rq[k].prompt = users[k];
        rq[k].answer = cJSON_IsString(reply) ? reply->valuestring : NULL;
        rq[k].max_new_tokens = 32;
    }
    lisa_response *res = calloc((size_t)nc, sizeof *res);
    CHECK(lisa_engine_run(e, rq, nc, res, NULL, NULL) == LISA_OK, "run: %s", lisa_error_get());

    int n_gen = 0, equal = 0, n_masks = 0;
    double worst_seg = 0, min_iou = INFINITY;
    for (int k = 0; k < nc; k++) {
        const cJSON *c = cJSON_GetArrayItem(cases, k);
        const char *name = rq[k].id;
        const lisa_response *r = &res[k];
        CHECK(r->status == LISA_OK, "%s (%s): %s", name, lisa_dtype_name(type), r->error);
        const cJSON *gen = cJSON_GetObjectItem(c, "generated");
        int same = 1;
        if (gen) {
            n_gen++;
            same = r->n_ids == cJSON_GetArraySize(gen);
            for (int i = 0; same && i < r->n_ids; i++) same = r->ids[i] == cJSON_GetArrayItem(gen, i)->valueint;
            equal += same;
        }
        const cJSON *sh = cJSON_GetObjectItem(c, "seg_embeddings_shape");
        int nseg = cJSON_GetArrayItem(sh, 0)->valueint, E = cJSON_GetArrayItem(sh, 1)->valueint;
        double seg = INFINITY;
        if (r->n_masks == nseg && r->seg_dim == E) {
            float *se = test_read_f32(dir, cJSON_GetObjectItem(c, "seg_embeddings")->valuestring,
                                      (size_t)nseg * E);
            if (se) seg = test_rel_err(r->seg_embeddings, se, (size_t)nseg * E);
            free(se);
        }
        if (seg > worst_seg) worst_seg = seg;
        /* a reference mask the run did not produce has IoU 0 */
        const cJSON *masks = cJSON_GetObjectItem(c, "masks");
        fprintf(stderr, "  %-4s lisa-tiny-q %s: answer %s, %d mask(s) (reference %d), [SEG] "
                "embeddings rel err %.3g, IoU", lisa_dtype_name(type), name,
                gen ? (same ? "equal" : "differs") : "teacher-forced", r->n_masks, nseg, seg);
        for (int j = 0; j < nseg; j++) {
            char png[8192];
            snprintf(png, sizeof png, "%s/%s", dir, cJSON_GetArrayItem(masks, j)->valuestring);
            double iou = r->status == LISA_OK && j < r->n_masks ? mask_iou(r->masks[j].mask, r->w, r->h, png) : 0;
            CHECK(iou >= 0, "%s: reference mask %s unreadable or of another size", name, png);
            fprintf(stderr, " %.4f", iou);
            if (iou < min_iou) min_iou = iou;
            n_masks++;
        }
        fputc('\n', stderr);
    }
    CHECK(n_masks > 0 && n_gen > 0, "lisa-tiny-q: %d masks, %d generated answers", n_masks, n_gen);
    acc_row *first = row_add(type, "lisa-tiny-q", M_ANSWERS, n_gen ? (double)equal / n_gen : 0);
    if (first) {
        first->quantized = q;
        first->total = total;
    }
    row_add(type, "lisa-tiny-q", M_SEG, worst_seg);
    row_add(type, "lisa-tiny-q", M_IOU, n_masks ? min_iou : 0);
    for (int k = 0; k < nc; k++) {
        lisa_response_free(&res[k]);
        free(users[k]);
        free(paths[k]);
    }
    free(res);
    free(rq);
    free(users);
    free(paths);
    lisa_engine_free(e);
    cJSON_Delete(root);
    free(text);
}

/* ------------------------------------------------------------ the table */

static void print_table(void) {
    fprintf(stderr, "\n%-5s %-12s %-30s %11s %11s\n", "type", "fixture", "metric", "value", "bound");
    for (int i = 0; i < g_nrows; i++) {
        const acc_row *r = &g_rows[i];
        char bound[32] = "-", verdict[48] = "";
        if (!isnan(r->bound)) {
            snprintf(bound, sizeof bound, "%s %.4g", g_metrics[r->metric].at_least ? ">=" : "<=", r->bound);
            snprintf(verdict, sizeof verdict, "%s",
                     value_passes(r->metric, r->value, r->bound) ? "ok" : "BROKEN");
        }
        if (r->total && (r->metric == M_LOGITS_ABS || r->metric == M_ANSWERS))
            snprintf(verdict + strlen(verdict), sizeof verdict - strlen(verdict), "%s%d of %d matmuls quantized",
                     *verdict ? ", " : "", r->quantized, r->total);
        fprintf(stderr, "%-5s %-12s %-30s %11.4g %11s  %s\n", lisa_dtype_name(r->type), r->fixture,
                g_metrics[r->metric].name, r->value, bound, verdict);
    }
}

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
    const char *fix = argc > 1 ? argv[1] : "tests/fixtures";
    for (size_t t = 0; t < sizeof g_types / sizeof g_types[0]; t++) {
        double t0 = seconds(), c0 = (double)clock() / CLOCKS_PER_SEC;
        llama_fixture(fix, "llama-tc", g_types[t]);
        double t1 = seconds(), c1 = (double)clock() / CLOCKS_PER_SEC;
        llama_fixture(fix, "llama-gqa", g_types[t]);
        double t2 = seconds(), c2 = (double)clock() / CLOCKS_PER_SEC;
        lisa_fixture(fix, g_types[t]);
        double t3 = seconds(), c3 = (double)clock() / CLOCKS_PER_SEC;
        fprintf(stderr, "%s: llama-tc %.2f s (cpu %.2f), llama-gqa %.2f s (cpu %.2f), lisa-tiny-q "
                "%.2f s (cpu %.2f)\n", lisa_dtype_name(g_types[t]), t1 - t0, c1 - c0, t2 - t1,
                c2 - c1, t3 - t2, c3 - c2);
    }
    print_table();
    int bounded = 0;
    for (int i = 0; i < g_nrows; i++) {
        const acc_row *r = &g_rows[i];
        if (isnan(r->bound)) continue;
        bounded++;
        CHECK(value_passes(r->metric, r->value, r->bound), "%s %s %s: %.4g breaks the bound %s %.4g",
              lisa_dtype_name(r->type), r->fixture, g_metrics[r->metric].name, r->value,
              g_metrics[r->metric].at_least ? ">=" : "<=", r->bound);
    }
    /* every bound was held to a measurement (none skipped by a fixture
     * that did not run) */
    static const char *llamas[] = {"llama-tc", "llama-gqa"};
    int want = 0;
    for (size_t t = 0; t < sizeof g_types / sizeof g_types[0]; t++)
        for (int m = 0; m < M_COUNT; m++) {
            if (m <= M_GREEDY)
                for (int f = 0; f < 2; f++) want += !isnan(bound_of(g_types[t], llamas[f], (acc_metric)m));
            else
                want += !isnan(bound_of(g_types[t], "lisa-tiny-q", (acc_metric)m));
        }
    CHECK(bounded == want, "%d of %d bounds held to a measurement", bounded, want);
    /* The Q8_0 bounds must be able to fail: Q4_0 (16 levels per block
     * instead of 255) breaks every Q8_0 bound on the continuous measures
     * (logits error, teacher-forced agreement, margins, [SEG] embeddings,
     * IoU). Greedy and answer equality are left out: on llama-gqa neither
     * type keeps any case, on lisa-tiny-q both keep every answer. */
    int broken = 0, tried = 0;
    for (int i = 0; i < g_nrows; i++) {
        const acc_row *r = &g_rows[i];
        double b = bound_of(LISA_DTYPE_Q8_0, r->fixture, r->metric);
        if (r->type != LISA_DTYPE_Q4_0 || isnan(b) || r->metric == M_GREEDY || r->metric == M_ANSWERS)
            continue;
        tried++;
        int pass = value_passes(r->metric, r->value, b);
        broken += !pass;
        fprintf(stderr, "Q4_0 %-11s %-30s %9.4g against the Q8_0 bound %s %.4g: %s\n", r->fixture,
                g_metrics[r->metric].name, r->value, g_metrics[r->metric].at_least ? ">=" : "<=", b,
                pass ? "passes (that Q8_0 bound is too loose)" : "broken, as it must be");
    }
    CHECK(tried == 8 && broken == tried, "the Q8_0 bounds do not tell Q4_0 apart (%d of %d broken)",
          broken, tried);
    return test_finish("test-quant-accuracy");
}
