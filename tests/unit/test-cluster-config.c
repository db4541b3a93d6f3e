/* test-cluster-config.c: the `lisa cluster` configuration, its layer split
 * and the rank roles.
 *
 * Files are written to a temp folder: one with every key, one per error
 * (the message must name the file and the key), one with a relative model
 * path; configs/cluster-tiny.json is loaded and resolved against the tiny
 * model. The balanced split is checked against a brute force over every
 * contiguous partition (LISA-13B's 40 layers on 1-4 stages, and small
 * made-up layer counts), costs in layers with the last stage's LM head as
 * half a layer, including the tie rule (fewest layers on the last stage,
 * then the one before it, ...).
 * Deliberately not here: MPI, model loading (cluster-plan's test). */
#include "cluster-config.h"

#include <stdlib.h>
#include <unistd.h>

#include "testutil.h"

static char g_dir[4096];

/* Writes text to g_dir/name and returns the path (static buffer). */
static const char *write_file(const char *name, const char *text) {
    static char path[4200];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "cannot write %s", path);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
    return path;
}

static void test_defaults(void) {
    lisa_cluster_config c;
    memset(&c, 0x5a, sizeof c);
    lisa_cluster_config_defaults(&c);
    CHECK(c.stages == 1, "stages %d", c.stages);
    CHECK(c.micro_batches == 0, "micro_batches %d", c.micro_batches);
    CHECK(c.token_budget == 512, "budget %d", c.token_budget);
    CHECK(c.slots == 8, "slots %d", c.slots);
    CHECK(c.max_ctx == 1024, "context %d", c.max_ctx);
    CHECK(c.max_new_tokens == 512, "new tokens %d", c.max_new_tokens);
    CHECK(!strcmp(c.device, "cpu"), "device %s", c.device);
    CHECK(c.dtype[0] == 0 && c.layers[0] == 0 && c.model_dir[0] == 0, "strings not empty");
    CHECK(c.n_gpu_map == 0 && c.threads == 0, "gpus %d threads %d", c.n_gpu_map, c.threads);
    CHECK(c.vision == LISA_CLUSTER_VISION_OWN, "vision %d", (int)c.vision);
    CHECK(c.startup_timeout_s == 300, "timeout %g", c.startup_timeout_s);
    CHECK(c.stall_timeout_s == 120, "stall timeout %g", c.stall_timeout_s);
    CHECK(c.device_memory_gb == 0, "device memory %g", c.device_memory_gb);
    lisa_status st = lisa_cluster_config_check(&c);
    CHECK(st == LISA_OK, "defaults check: %s", lisa_error_get());
    CHECK(c.micro_batches == 1, "M 0 -> P: %d", c.micro_batches);
    CHECK(!strcmp(c.dtype, "fp32"), "cpu default dtype %s", c.dtype);
    lisa_cluster_config_defaults(&c);
    snprintf(c.device, sizeof c.device, "cuda");
    c.stages = 3;
    st = lisa_cluster_config_check(&c);
    CHECK(st == LISA_OK && !strcmp(c.dtype, "bf16") && c.micro_batches == 3,
          "cuda defaults: %s dtype %s M %d", lisa_error_get(), c.dtype, c.micro_batches);
}

static void test_load_full(void) {
    const char *path = write_file("full.json",
        "{\"_comment\": \"notes are ignored\", \"model\": \"/abs/model\", \"stages\": 3,\n"
        " \"layers\": \"10,20,10\", \"micro_batches\": 6, \"token_budget\": 256, \"slots\": 16,\n"
        " \"context\": 2048, \"max_new_tokens\": 64, \"device\": \"cuda\", \"dtype\": \"fp16\",\n"
        " \"gpus\": [-1, 0, 1, 2, 0], \"threads\": 4, \"vision\": \"own\",\n"
        " \"startup_timeout_s\": 12.5, \"device_memory_gb\": 80}\n");
    lisa_cluster_config c;
    lisa_cluster_config_defaults(&c);
    lisa_status st = lisa_cluster_config_load(&c, path);
    CHECK(st == LISA_OK, "full load: %s", lisa_error_get());
    CHECK(!strcmp(c.model_dir, "/abs/model"), "absolute model %s", c.model_dir);
    CHECK(c.stages == 3 && c.micro_batches == 6 && c.token_budget == 256 && c.slots == 16,
          "ints %d %d %d %d", c.stages, c.micro_batches, c.token_budget, c.slots);
    CHECK(c.max_ctx == 2048 && c.max_new_tokens == 64 && c.threads == 4, "ints %d %d %d",
          c.max_ctx, c.max_new_tokens, c.threads);
    CHECK(!strcmp(c.layers, "10,20,10"), "layers %s", c.layers);
    CHECK(!strcmp(c.device, "cuda") && !strcmp(c.dtype, "fp16"), "%s %s", c.device, c.dtype);
    CHECK(c.n_gpu_map == 5 && c.gpu_map[0] == -1 && c.gpu_map[3] == 2 && c.gpu_map[4] == 0,
          "gpus n %d", c.n_gpu_map);
    CHECK(c.startup_timeout_s == 12.5 && c.device_memory_gb == 80, "%g %g", c.startup_timeout_s,
          c.device_memory_gb);
    st = lisa_cluster_config_check(&c);
    CHECK(st == LISA_OK, "full check: %s", lisa_error_get());

    /* A file sets only its keys: the rest keep what was there. */
    path = write_file("partial.json", "{\"vision\": \"coordinator\", \"model\": \"m/7b\"}");
    lisa_cluster_config_defaults(&c);
    st = lisa_cluster_config_load(&c, path);
    CHECK(st == LISA_OK, "partial load: %s", lisa_error_get());
    CHECK(c.vision == LISA_CLUSTER_VISION_COORDINATOR, "vision %d", (int)c.vision);
    CHECK(c.stages == 1 && c.slots == 8, "defaults kept: %d %d", c.stages, c.slots);
    char want[8192];
    snprintf(want, sizeof want, "%s/m/7b", g_dir);
    CHECK(!strcmp(c.model_dir, want), "relative model: %s, want %s", c.model_dir, want);
}

/* A file that must fail with LISA_ERR_FORMAT (or `want`), its message
 * naming the file and containing `part`. */
static void expect_load_error(const char *name, const char *text, lisa_status want,
                              const char *part) {
    const char *path = write_file(name, text);
    char p[4200];
    snprintf(p, sizeof p, "%s", path);
    lisa_cluster_config c;
    lisa_cluster_config_defaults(&c);
    lisa_status st = lisa_cluster_config_load(&c, p);
    const char *msg = lisa_error_get();
    CHECK(st == want, "%s: status %s, want %s (%s)", name, lisa_status_str(st),
          lisa_status_str(want), msg);
    CHECK(strstr(msg, p) != NULL, "%s: message does not name the file: %s", name, msg);
    CHECK(strstr(msg, part) != NULL, "%s: message lacks \"%s\": %s", name, part, msg);
}

static void test_load_errors(void) {
    expect_load_error("unknown.json", "{\"stages\": 2, \"stage\": 2}", LISA_ERR_FORMAT,
                      "unknown key \"stage\"");
    expect_load_error("type.json", "{\"stages\": \"two\"}", LISA_ERR_FORMAT, "\"stages\"");
    expect_load_error("frac.json", "{\"slots\": 2.5}", LISA_ERR_FORMAT, "\"slots\"");
    expect_load_error("range0.json", "{\"stages\": 0}", LISA_ERR_FORMAT, "\"stages\"");
    expect_load_error("range65.json", "{\"stages\": 65}", LISA_ERR_FORMAT, "\"stages\"");
    expect_load_error("ctx.json", "{\"context\": 1}", LISA_ERR_FORMAT, "\"context\"");
    expect_load_error("layers.json", "{\"layers\": [20, 20]}", LISA_ERR_FORMAT, "\"layers\"");
    expect_load_error("model.json", "{\"model\": 7}", LISA_ERR_FORMAT, "\"model\"");
    expect_load_error("vision.json", "{\"vision\": \"rank3\"}", LISA_ERR_FORMAT, "\"vision\"");
    expect_load_error("gpus.json", "{\"gpus\": 0}", LISA_ERR_FORMAT, "\"gpus\"");
    expect_load_error("gpus2.json", "{\"gpus\": [0, -2]}", LISA_ERR_FORMAT, "\"gpus\"[1]");
    expect_load_error("timeout.json", "{\"startup_timeout_s\": 0}", LISA_ERR_FORMAT,
                      "\"startup_timeout_s\"");
    expect_load_error("mem.json", "{\"device_memory_gb\": -1}", LISA_ERR_FORMAT,
                      "\"device_memory_gb\"");
    expect_load_error("dtype.json", "{\"dtype\": \"bfloat16x\"}", LISA_ERR_FORMAT, "\"dtype\"");
    expect_load_error("array.json", "[1, 2]", LISA_ERR_FORMAT, "not a JSON object");
    expect_load_error("broken.json", "{\"stages\": ", LISA_ERR_FORMAT, "not a JSON object");
    char missing[4200];
    snprintf(missing, sizeof missing, "%s/none.json", g_dir);
    lisa_cluster_config c;
    lisa_cluster_config_defaults(&c);
    lisa_status st = lisa_cluster_config_load(&c, missing);
    CHECK(st == LISA_ERR_IO && strstr(lisa_error_get(), missing), "missing file: %s %s",
          lisa_status_str(st), lisa_error_get());
}

/* check() on a default config changed by `set`, expecting `want` and `part`. */
static void expect_check(const char *what, void (*set)(lisa_cluster_config *), lisa_status want,
                         const char *part) {
    lisa_cluster_config c;
    lisa_cluster_config_defaults(&c);
    set(&c);
    lisa_status st = lisa_cluster_config_check(&c);
    CHECK(st == want, "%s: status %s (%s)", what, lisa_status_str(st), lisa_error_get());
    CHECK(!part || strstr(lisa_error_get(), part), "%s: message lacks \"%s\": %s", what, part,
          lisa_error_get());
}

static void set_budget(lisa_cluster_config *c) { c->slots = 16; c->token_budget = 8; }
static void set_device(lisa_cluster_config *c) { snprintf(c->device, sizeof c->device, "gpu"); }
static void set_dtype(lisa_cluster_config *c) { snprintf(c->dtype, sizeof c->dtype, "int8"); }
static void set_cpu_bf16(lisa_cluster_config *c) { snprintf(c->dtype, sizeof c->dtype, "bf16"); }
static void set_gpus(lisa_cluster_config *c) {
    c->stages = 2;
    c->n_gpu_map = 3;
}
static void set_gpus_ok(lisa_cluster_config *c) {
    c->stages = 2;
    c->vision = LISA_CLUSTER_VISION_COORDINATOR;
    c->n_gpu_map = 3;
}
static void set_stages(lisa_cluster_config *c) { c->stages = 0; }
static void set_ctx(lisa_cluster_config *c) { c->max_ctx = 1; }
static void set_timeout(lisa_cluster_config *c) { c->startup_timeout_s = 0; }
static void set_new(lisa_cluster_config *c) { c->max_new_tokens = 0; }

static void test_check(void) {
    expect_check("budget below slots", set_budget, LISA_ERR_ARG, "token_budget 8 is below slots 16");
    expect_check("device", set_device, LISA_ERR_ARG, "device must be");
    expect_check("dtype", set_dtype, LISA_ERR_ARG, "dtype must be");
    expect_check("cpu bf16", set_cpu_bf16, LISA_ERR_UNSUPPORTED, "needs device cuda");
    expect_check("gpus length", set_gpus, LISA_ERR_ARG, "gpus lists 3 ranks, the job has 4");
    expect_check("gpus length ok", set_gpus_ok, LISA_OK, NULL);
    expect_check("stages", set_stages, LISA_ERR_ARG, "stages");
    expect_check("context", set_ctx, LISA_ERR_ARG, "context");
    expect_check("timeout", set_timeout, LISA_ERR_ARG, "startup_timeout_s");
    expect_check("new tokens", set_new, LISA_ERR_ARG, "max_new_tokens");
}

/* ---- the split ---------------------------------------------------------- */

static lisa_llama_config shapes(int L, int C, int I, int H, int V) {
    lisa_llama_config m;
    memset(&m, 0, sizeof m);
    m.num_hidden_layers = L;
    m.hidden_size = C;
    m.intermediate_size = I;
    m.num_attention_heads = H;
    m.num_key_value_heads = H;
    m.head_dim = C / H;
    m.vocab_size = V;
    return m;
}

static lisa_status split(int P, const char *layers, const lisa_llama_config *m, int *bounds) {
    lisa_cluster_config c;
    lisa_cluster_config_defaults(&c);
    c.stages = P;
    snprintf(c.layers, sizeof c.layers, "%s", layers);
    return lisa_cluster_split_resolve(&c, m, bounds);
}

static void expect_split(int P, const char *layers, const lisa_llama_config *m, const int *want) {
    int b[LISA_CLUSTER_MAX_STAGES + 1] = {0};
    lisa_status st = split(P, layers, m, b);
    CHECK(st == LISA_OK, "split %s: %s", layers, lisa_error_get());
    for (int s = 0; s <= P && st == LISA_OK; s++)
        CHECK(b[s] == want[s], "split \"%s\" bound %d: %d, want %d", layers, s, b[s], want[s]);
}

static void expect_split_error(int P, const char *layers, const lisa_llama_config *m,
                               const char *part) {
    int b[LISA_CLUSTER_MAX_STAGES + 1];
    lisa_status st = split(P, layers, m, b);
    CHECK(st == LISA_ERR_ARG, "split \"%s\" on %d stages: status %s", layers, P,
          lisa_status_str(st));
    CHECK(strstr(lisa_error_get(), part) != NULL, "split \"%s\": message lacks \"%s\": %s", layers,
          part, lisa_error_get());
}

static void test_split_forms(void) {
    lisa_llama_config m = shapes(40, 5120, 13824, 40, 32003);
    expect_split(2, "20,20", &m, (int[]){0, 20, 40});
    expect_split(3, "10, 25,5", &m, (int[]){0, 10, 35, 40});
    expect_split(2, "0-19,20-39", &m, (int[]){0, 20, 40});
    expect_split(3, "0-0,1-38,39-39", &m, (int[]){0, 1, 39, 40});
    expect_split(1, "40", &m, (int[]){0, 40});
    expect_split(1, "0-39", &m, (int[]){0, 40});
    expect_split(2, "", &m, (int[]){0, 20, 40});
    expect_split(2, "balanced", &m, (int[]){0, 20, 40});

    expect_split_error(2, "0-9,12-39", &m, "layers 10-11 are in no stage");
    expect_split_error(2, "0-9,11-39", &m, "layer 10 is in no stage");
    expect_split_error(2, "0-19,20-38", &m, "layer 39 is in no stage");
    expect_split_error(2, "1-19,20-39", &m, "layer 0 is in no stage");
    expect_split_error(3, "0-12,12-30,31-39", &m, "layer 12 is in stages 1 and 2");
    expect_split_error(3, "0-12,13-30,25-39", &m, "layers 25-30 are in stages 2 and 3");
    expect_split_error(2, "20-39,0-19", &m, "does not follow");
    expect_split_error(2, "0-19,20-40", &m, "past the model's 40 layers");
    expect_split_error(2, "0-19,39-20", &m, "backwards");
    expect_split_error(2, "20,19", &m, "the counts sum to 39, the model has 40 layers");
    expect_split_error(2, "20,21", &m, "the counts sum to 41");
    expect_split_error(2, "10,10,20", &m, "3 counts for 2 stages");
    expect_split_error(3, "0-19,20-39", &m, "2 ranges for 3 stages");
    expect_split_error(3, "20,0,20", &m, "stage 2 has no layers");
    expect_split_error(2, "20,20-39", &m, "expected \"balanced\"");
    expect_split_error(2, "twenty,twenty", &m, "expected \"balanced\"");
    expect_split_error(2, "20,,20", &m, "expected \"balanced\"");
    expect_split_error(2, "20;20", &m, "expected \"balanced\"");
    lisa_llama_config tiny = shapes(2, 16, 64, 2, 32003);
    expect_split_error(3, "balanced", &tiny, "3 stages for a model of 2 layers");
    expect_split_error(3, "1,1,0", &tiny, "3 stages for a model of 2 layers");
}

/* Brute force: every composition of L into P positive parts, cost in half
 * layers (2 per layer, +1 on the last stage), returning the optimum and the
 * optimal composition that is smallest read from the last stage back. */
static int g_best, g_best_parts[8], g_parts[8];

static int backlex_less(const int *a, const int *b, int P) {
    for (int s = P - 1; s >= 0; s--)
        if (a[s] != b[s]) return a[s] < b[s];
    return 0;
}

static void brute(int s, int P, int left) {
    if (s == P - 1) {
        g_parts[s] = left;
        int worst = 0;
        for (int t = 0; t < P; t++) {
            int cost = 2 * g_parts[t] + (t == P - 1);
            if (cost > worst) worst = cost;
        }
        if (worst < g_best || (worst == g_best && backlex_less(g_parts, g_best_parts, P))) {
            g_best = worst;
            memcpy(g_best_parts, g_parts, sizeof g_parts);
        }
        return;
    }
    for (int n = 1; n <= left - (P - 1 - s); n++) {
        g_parts[s] = n;
        brute(s + 1, P, left - n);
    }
}

static void check_balanced(const lisa_llama_config *m, int P) {
    int L = m->num_hidden_layers;
    int b[LISA_CLUSTER_MAX_STAGES + 1];
    lisa_status st = split(P, "balanced", m, b);
    CHECK(st == LISA_OK, "balanced L %d P %d: %s", L, P, lisa_error_get());
    if (st != LISA_OK) return;
    CHECK(b[0] == 0 && b[P] == L, "L %d P %d: bounds %d..%d do not cover", L, P, b[0], b[P]);
    int worst = 0;
    for (int s = 0; s < P; s++) {
        CHECK(b[s + 1] > b[s], "L %d P %d: stage %d is empty or backwards", L, P, s);
        int cost = 2 * (b[s + 1] - b[s]) + (s == P - 1);
        if (cost > worst) worst = cost;
    }
    g_best = 1 << 30;
    brute(0, P, L);
    CHECK(worst == g_best, "L %d P %d: heaviest stage %g layers, the optimum is %g", L, P,
          worst / 2.0, g_best / 2.0);
    for (int s = 0; s < P; s++)
        CHECK(b[s + 1] - b[s] == g_best_parts[s], "L %d P %d: stage %d has %d layers, the tie "
              "rule gives %d", L, P, s, b[s + 1] - b[s], g_best_parts[s]);
}

static void test_split_balanced(void) {
    lisa_llama_config m13 = shapes(40, 5120, 13824, 40, 32003);
    for (int P = 1; P <= 4; P++) check_balanced(&m13, P);
    /* LISA-13B's splits, spelled out (the plan's documentation shows them). */
    expect_split(1, "balanced", &m13, (int[]){0, 40});
    expect_split(2, "balanced", &m13, (int[]){0, 20, 40});
    expect_split(3, "balanced", &m13, (int[]){0, 14, 28, 40});
    expect_split(4, "balanced", &m13, (int[]){0, 10, 20, 30, 40});
    for (int L = 1; L <= 13; L++)
        for (int P = 1; P <= L && P <= 6; P++) {
            lisa_llama_config m = shapes(L, 64, 160, 4, 100);
            check_balanced(&m, P);
        }
    /* Dtype-independent and shape-independent: uniform layers split the same
     * whatever their size. */
    lisa_llama_config m7 = shapes(32, 4096, 11008, 32, 32004);
    expect_split(3, "balanced", &m7, (int[]){0, 11, 22, 32});
}

/* ---- roles -------------------------------------------------------------- */

static void test_roles(void) {
    lisa_cluster_config c;
    lisa_cluster_config_defaults(&c);
    c.stages = 2;
    int stage = 99;
    CHECK(lisa_cluster_world_size(&c) == 4, "own: world %d", lisa_cluster_world_size(&c));
    CHECK(lisa_cluster_rank_roles(&c, 0, &stage) == LISA_CLUSTER_ROLE_COORDINATOR && stage == -1,
          "own rank 0: %d stage %d", lisa_cluster_rank_roles(&c, 0, &stage), stage);
    CHECK(lisa_cluster_rank_roles(&c, 1, &stage) == LISA_CLUSTER_ROLE_STAGE && stage == 0,
          "own rank 1 stage %d", stage);
    CHECK(lisa_cluster_rank_roles(&c, 2, &stage) == LISA_CLUSTER_ROLE_STAGE && stage == 1,
          "own rank 2 stage %d", stage);
    CHECK(lisa_cluster_rank_roles(&c, 3, &stage) == LISA_CLUSTER_ROLE_VISION && stage == -1,
          "own rank 3 stage %d", stage);
    CHECK(lisa_cluster_rank_roles(&c, 4, &stage) == 0, "own rank 4 has a role");
    CHECK(lisa_cluster_rank_roles(&c, 1, NULL) == LISA_CLUSTER_ROLE_STAGE, "NULL stage");
    CHECK(lisa_cluster_stage_rank(&c, 0) == 1 && lisa_cluster_stage_rank(&c, 1) == 2,
          "stage ranks %d %d", lisa_cluster_stage_rank(&c, 0), lisa_cluster_stage_rank(&c, 1));
    CHECK(lisa_cluster_vision_rank(&c) == 3, "own vision rank %d", lisa_cluster_vision_rank(&c));

    c.vision = LISA_CLUSTER_VISION_COORDINATOR;
    c.stages = 4;
    CHECK(lisa_cluster_world_size(&c) == 5, "coordinator: world %d", lisa_cluster_world_size(&c));
    CHECK(lisa_cluster_rank_roles(&c, 0, &stage) ==
              (LISA_CLUSTER_ROLE_COORDINATOR | LISA_CLUSTER_ROLE_VISION) && stage == -1,
          "coordinator rank 0: %d", lisa_cluster_rank_roles(&c, 0, &stage));
    for (int r = 1; r <= 4; r++)
        CHECK(lisa_cluster_rank_roles(&c, r, &stage) == LISA_CLUSTER_ROLE_STAGE && stage == r - 1,
              "coordinator rank %d stage %d", r, stage);
    CHECK(lisa_cluster_rank_roles(&c, 5, &stage) == 0, "coordinator rank 5 has a role");
    CHECK(lisa_cluster_vision_rank(&c) == 0, "coordinator vision rank %d",
          lisa_cluster_vision_rank(&c));
    CHECK(lisa_cluster_stage_rank(&c, 3) == 4, "stage 3 rank %d", lisa_cluster_stage_rank(&c, 3));
}

/* configs/cluster-tiny.json: loads, checks, and its model resolves. */
static void test_tiny_config(const char *fixtures) {
    char path[4200];
    snprintf(path, sizeof path, "%s/../../configs/cluster-tiny.json", fixtures);
    lisa_cluster_config c;
    lisa_cluster_config_defaults(&c);
    lisa_status st = lisa_cluster_config_load(&c, path);
    CHECK(st == LISA_OK, "cluster-tiny: %s", lisa_error_get());
    st = lisa_cluster_config_check(&c);
    CHECK(st == LISA_OK, "cluster-tiny check: %s", lisa_error_get());
    CHECK(c.stages == 2 && !strcmp(c.device, "cpu") && !strcmp(c.dtype, "fp32"),
          "cluster-tiny: %d stages on %s %s", c.stages, c.device, c.dtype);
    lisa_llama_config m;
    st = lisa_llama_config_load(&m, c.model_dir);
    CHECK(st == LISA_OK, "cluster-tiny model %s: %s", c.model_dir, lisa_error_get());
    if (st != LISA_OK) return;
    int b[3];
    st = lisa_cluster_split_resolve(&c, &m, b);
    CHECK(st == LISA_OK && b[0] == 0 && b[1] == 1 && b[2] == 2, "cluster-tiny split: %s",
          lisa_error_get());
}

int main(int argc, char **argv) {
    const char *fixtures = argc > 1 ? argv[1] : "tests/fixtures";
    snprintf(g_dir, sizeof g_dir, "%s/lisa-cluster-cfg-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(g_dir)) {
        CHECK(0, "mkdtemp failed");
        return test_finish("test-cluster-config");
    }
    test_defaults();
    test_load_full();
    test_load_errors();
    test_check();
    test_split_forms();
    test_split_balanced();
    test_roles();
    test_tiny_config(fixtures);
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "test-cluster-config: could not remove %s\n", g_dir);
    return test_finish("test-cluster-config");
}
