/* test-llama-stages.c: the decoder as pipeline stages that hand the
 * residual stream on as backend tensors (lisa_llama_forward_tensors).
 *
 * tests/fixtures/llama-mha (2 layers) runs whole through the host-fp32
 * lisa_llama_forward, then as stages [0, 1) and [1, 2): stage 1 takes the
 * tokens and writes its residual stream into a backend tensor, stage 2 reads
 * it and returns logits, greedy ids and the final-norm hidden states as a
 * tensor; a prompt, then a decode step per sequence. Each stage may run on
 * its own backend (its own stream), the hand-off ordered by an event
 * recorded by the first and waited for by the second. The stages run the
 * same ops in the same order as the whole model, so the outputs must be
 * equal bit for bit, on the CPU and on CUDA alike (there in fp32 and bf16,
 * with CUDA's fp32 also within 1e-4 of the CPU). CUDA runs when a device is
 * present (the emulator's in LISA_CUDA=EMU builds), with the GEMV kernel
 * off (no_gemv: its 32000-column lm_head reductions are slow to emulate; the
 * op test covers it), and once more with no_graphs; with LISA_REQUIRE_CUDA=1
 * a missing device fails the test.
 *
 * Also: argument errors (input tensor and tokens, wrong dtype or size, no
 * output tensor for a middle stage) and the state's warning channel. */
#include "llama.h"
#include "testutil.h"

#define N_PROMPT 7
#define MAX_CTX 32

static const int32_t k_prompt[N_PROMPT] = {1, 15043, 3186, 29892, 920, 526, 366};

typedef struct {
    float *logits;   /* (n, V) */
    float *hidden;   /* (n, C) final-norm */
    int32_t next[N_PROMPT];
    float *logits1;  /* (1, V) of the decode step */
    int32_t next1;
} run_out;

static void out_alloc(run_out *o, int64_t C, int64_t V) {
    memset(o, 0, sizeof *o);
    o->logits = calloc((size_t)(N_PROMPT * V), 4);
    o->hidden = calloc((size_t)(N_PROMPT * C), 4);
    o->logits1 = calloc((size_t)V, 4);
}

static void out_free(run_out *o) {
    free(o->logits);
    free(o->hidden);
    free(o->logits1);
}

static void batch_prompt(lisa_llama_batch *b, int32_t *seq, int32_t *pos, int32_t *rows, int tokens) {
    for (int i = 0; i < N_PROMPT; i++) {
        seq[i] = 0;
        pos[i] = rows[i] = i;
    }
    lisa_llama_batch t = {N_PROMPT, tokens ? k_prompt : NULL, NULL, seq, pos, N_PROMPT, rows};
    *b = t;
}

/* The whole model through the host-fp32 forward: prompt, then one step. */
static void run_whole(lisa_backend *be, const char *dir, lisa_dtype dt, run_out *o) {
    lisa_llama_model m;
    lisa_llama_state s;
    CHECK(lisa_llama_model_load(&m, dir, be, dt, 0, -1) == LISA_OK, "load: %s", lisa_error_get());
    CHECK(lisa_llama_state_init(&s, &m, 1, MAX_CTX, N_PROMPT, N_PROMPT) == LISA_OK, "state: %s",
          lisa_error_get());
    int32_t seq[N_PROMPT], pos[N_PROMPT], rows[N_PROMPT];
    lisa_llama_batch b;
    batch_prompt(&b, seq, pos, rows, 1);
    CHECK(lisa_llama_forward(&m, &s, &b, o->logits, o->hidden, o->next) == LISA_OK, "whole: %s",
          lisa_error_get());
    int32_t tok = o->next[N_PROMPT - 1], p1 = N_PROMPT, z = 0;
    lisa_llama_batch b1 = {1, &tok, NULL, &z, &p1, 1, &z};
    CHECK(lisa_llama_forward(&m, &s, &b1, o->logits1, NULL, &o->next1) == LISA_OK, "whole step: %s",
          lisa_error_get());
    lisa_llama_state_free(&s);
    lisa_llama_model_free(&m);
}

/* Stages [0, 1) on be_a and [1, L) on be_b (may be the same backend); the
 * residual stream goes from one to the other in backend memory, ordered by
 * an event. */
static void run_stages(lisa_backend *be_a, lisa_backend *be_b, const char *dir, lisa_dtype dt,
                       run_out *o) {
    lisa_llama_model a, b;
    lisa_llama_state sa, sb;
    CHECK(lisa_llama_model_load(&a, dir, be_a, dt, 0, 1) == LISA_OK, "load a: %s", lisa_error_get());
    CHECK(lisa_llama_model_load(&b, dir, be_b, dt, 1, -1) == LISA_OK, "load b: %s", lisa_error_get());
    CHECK(lisa_llama_state_init(&sa, &a, 1, MAX_CTX, N_PROMPT, N_PROMPT) == LISA_OK, "state a");
    CHECK(lisa_llama_state_init(&sb, &b, 1, MAX_CTX, N_PROMPT, N_PROMPT) == LISA_OK, "state b");
    CHECK(sa.graphs_off == !lisa_backend_graphs_enabled(be_a), "state a follows its backend's graphs");
    int64_t C = a.cfg.hidden_size, sh[2] = {N_PROMPT, C};
    lisa_tensor mid, hid;
    CHECK(lisa_backend_tensor_alloc(be_a, &mid, dt, 2, sh) == LISA_OK, "mid");
    CHECK(lisa_backend_tensor_alloc(be_b, &hid, dt, 2, sh) == LISA_OK, "hid");
    lisa_event *ev = NULL;
    CHECK(be_a->ops->event_create(be_a, &ev) == LISA_OK, "event: %s", lisa_error_get());

    int32_t seq[N_PROMPT], pos[N_PROMPT], rows[N_PROMPT];
    lisa_llama_batch ba, bb;
    batch_prompt(&ba, seq, pos, rows, 1);
    batch_prompt(&bb, seq, pos, rows, 0);
    CHECK(lisa_llama_forward_tensors(&a, &sa, &ba, NULL, &mid, NULL, NULL) == LISA_OK, "stage a: %s",
          lisa_error_get());
    CHECK(be_a->ops->event_record(be_a, ev) == LISA_OK, "record");
    CHECK(be_b->ops->event_wait(be_b, ev) == LISA_OK, "wait");
    CHECK(lisa_llama_forward_tensors(&b, &sb, &bb, &mid, &hid, o->logits, o->next) == LISA_OK,
          "stage b: %s", lisa_error_get());
    int done = 0;
    CHECK(be_a->ops->event_synchronize(be_a, ev) == LISA_OK, "event sync");
    CHECK(be_a->ops->event_query(be_a, ev, &done) == LISA_OK && done, "event done after sync");
    /* the final hidden states, downloaded as fp32 */
    lisa_tensor h32;
    CHECK(lisa_backend_tensor_alloc(be_b, &h32, LISA_DTYPE_F32, 2, sh) == LISA_OK, "h32");
    CHECK(be_b->ops->convert(be_b, &h32, &hid) == LISA_OK, "convert");
    CHECK(lisa_backend_tensor_get(be_b, &h32, o->hidden) == LISA_OK, "get hidden");

    /* one decode step, (1, C) through the first row of mid */
    int32_t tok = o->next[N_PROMPT - 1], p1 = N_PROMPT, z = 0;
    lisa_llama_batch sa1 = {1, &tok, NULL, &z, &p1, 1, &z}, sb1 = {1, NULL, NULL, &z, &p1, 1, &z};
    lisa_tensor mid1 = lisa_tensor_rows(&mid, 0, 1);
    CHECK(lisa_llama_forward_tensors(&a, &sa, &sa1, NULL, &mid1, NULL, NULL) == LISA_OK,
          "stage a step: %s", lisa_error_get());
    CHECK(be_a->ops->event_record(be_a, ev) == LISA_OK, "record");
    CHECK(be_b->ops->event_wait(be_b, ev) == LISA_OK, "wait");
    CHECK(lisa_llama_forward_tensors(&b, &sb, &sb1, &mid1, NULL, o->logits1, &o->next1) == LISA_OK,
          "stage b step: %s", lisa_error_get());

    /* argument errors leave nothing enqueued */
    lisa_tensor wrong = mid;
    wrong.dtype = dt == LISA_DTYPE_F32 ? LISA_DTYPE_BF16 : LISA_DTYPE_F32;
    CHECK(lisa_llama_forward_tensors(&b, &sb, &bb, &wrong, NULL, NULL, NULL) == LISA_ERR_SHAPE,
          "input of the wrong dtype");
    lisa_tensor short_in = lisa_tensor_rows(&mid, 0, N_PROMPT - 1);
    CHECK(lisa_llama_forward_tensors(&b, &sb, &bb, &short_in, NULL, NULL, NULL) == LISA_ERR_SHAPE,
          "input of the wrong size");
    CHECK(lisa_llama_forward_tensors(&a, &sa, &ba, &mid, &mid, NULL, NULL) == LISA_ERR_ARG,
          "input tensor and tokens");
    CHECK(lisa_llama_forward_tensors(&a, &sa, &ba, NULL, NULL, NULL, NULL) == LISA_ERR_ARG,
          "a middle stage without an output tensor");
    char w[64];
    CHECK(lisa_llama_warning_take(&sb, w, sizeof w) == 0, "no warning: %s", w);

    be_a->ops->event_free(be_a, ev);
    lisa_backend_tensor_free(be_b, &h32);
    lisa_backend_tensor_free(be_a, &mid);
    lisa_backend_tensor_free(be_b, &hid);
    lisa_llama_state_free(&sa);
    lisa_llama_state_free(&sb);
    lisa_llama_model_free(&a);
    lisa_llama_model_free(&b);
}

/* Bit-for-bit equality of two runs. */
static void check_same(const char *what, const run_out *x, const run_out *y, int64_t C, int64_t V) {
    CHECK(!memcmp(x->logits, y->logits, (size_t)(N_PROMPT * V) * 4), "%s: prompt logits differ", what);
    CHECK(!memcmp(x->hidden, y->hidden, (size_t)(N_PROMPT * C) * 4), "%s: hidden states differ", what);
    CHECK(!memcmp(x->next, y->next, sizeof x->next), "%s: greedy ids differ", what);
    CHECK(!memcmp(x->logits1, y->logits1, (size_t)V * 4), "%s: decode-step logits differ", what);
    CHECK(x->next1 == y->next1, "%s: decode-step id %d vs %d", what, x->next1, y->next1);
}

static void check_kind(const lisa_backend_params *p, const char *dir, lisa_dtype dt, int64_t C,
                       int64_t V, const run_out *ref) {
    lisa_backend *be = NULL, *be2 = NULL;
    if (lisa_backend_init_params(&be, p) != LISA_OK || lisa_backend_init_params(&be2, p) != LISA_OK) {
        CHECK(0, "backend: %s", lisa_error_get());
        lisa_backend_free(be);
        return;
    }
    char what[96];
    snprintf(what, sizeof what, "%s %s%s", be->ops->name, lisa_dtype_name(dt),
             p->no_graphs ? " no_graphs" : "");
    CHECK(!p->no_graphs || !lisa_backend_graphs_enabled(be), "%s: graphs switched off", what);
    run_out whole, one, two;
    out_alloc(&whole, C, V);
    out_alloc(&one, C, V);
    out_alloc(&two, C, V);
    run_whole(be, dir, dt, &whole);
    run_stages(be, be, dir, dt, &one);
    run_stages(be, be2, dir, dt, &two);
    check_same(what, &one, &whole, C, V);
    char what2[128];
    snprintf(what2, sizeof what2, "%s, two backends", what);
    check_same(what2, &two, &whole, C, V);
    if (ref) {
        double e = test_rel_err(whole.logits, ref->logits, (size_t)(N_PROMPT * V));
        CHECK(e <= 1e-4, "%s: logits rel err %.3g against the cpu", what, e);
        CHECK(whole.next1 == ref->next1, "%s: decode-step id %d, cpu %d", what, whole.next1, ref->next1);
        fprintf(stderr, "%s: stages equal the whole model; logits within %.2g of the cpu\n", what, e);
    } else {
        fprintf(stderr, "%s: stages equal the whole model\n", what);
    }
    out_free(&whole);
    out_free(&one);
    out_free(&two);
    lisa_backend_free(be2);
    lisa_backend_free(be);
}

int main(int argc, char **argv) {
    const char *fixtures = argc > 1 ? argv[1] : "tests/fixtures";
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/llama-mha", fixtures);
    lisa_llama_config cfg;
    CHECK(lisa_llama_config_load(&cfg, dir) == LISA_OK, "config: %s", lisa_error_get());
    if (g_test_failures) return test_finish("test-llama-stages");
    int64_t C = cfg.hidden_size, V = cfg.vocab_size;

    lisa_backend_params p = lisa_backend_params_default(LISA_BACKEND_CPU, 0, 2);
    lisa_backend *cpu;
    CHECK(lisa_backend_init_params(&cpu, &p) == LISA_OK, "cpu");
    run_out ref;
    out_alloc(&ref, C, V);
    run_whole(cpu, dir, LISA_DTYPE_F32, &ref);
    lisa_backend_free(cpu);
    check_kind(&p, dir, LISA_DTYPE_F32, C, V, NULL);

    lisa_backend *probe = NULL;
    lisa_backend_params pc = lisa_backend_params_default(LISA_BACKEND_CUDA, 0, 0);
    pc.no_gemv = 1;
    if (lisa_backend_init_params(&probe, &pc) == LISA_OK) {
        lisa_backend_free(probe);
        check_kind(&pc, dir, LISA_DTYPE_F32, C, V, &ref);
        check_kind(&pc, dir, LISA_DTYPE_BF16, C, V, NULL);
        pc.no_graphs = 1;
        check_kind(&pc, dir, LISA_DTYPE_F32, C, V, &ref);
    } else if (test_cuda_required()) {
        CHECK(0, "LISA_REQUIRE_CUDA is set but there is no CUDA device (%s)", lisa_error_get());
    } else {
        fprintf(stderr, "cuda: SKIPPED (%s)\n", lisa_error_get());
    }
    out_free(&ref);
    return test_finish("test-llama-stages");
}
