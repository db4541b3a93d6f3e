/* cluster-config.c: the `lisa cluster` configuration file, the layer split
 * and the rank roles (see cluster-config.h).
 *
 * The balanced split is an exact dynamic program over contiguous ranges
 * (P x L x L steps: trivial next to loading a model), not a greedy
 * heuristic, so its result is the true minimum of the heaviest stage. It
 * knows nothing of memory or speed; the plan (cluster-plan.c) judges both. */
#include "cluster-config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "config-file.h"

void lisa_cluster_config_defaults(lisa_cluster_config *c) {
    memset(c, 0, sizeof *c);
    c->stages = 1;
    c->micro_batches = 0;
    c->token_budget = 512;
    c->slots = 8;
    c->max_ctx = 1024;
    c->max_new_tokens = 512;
    snprintf(c->device, sizeof c->device, "cpu");
    c->vision = LISA_CLUSTER_VISION_OWN;
    c->startup_timeout_s = 300;
    c->stall_timeout_s = 120;
}

/* ---- loading ------------------------------------------------------------ */

/* An integer key: a JSON number with no fraction in [lo, hi]. */
static lisa_status config_int(const char *path, const cJSON *v, int lo, int hi, int *dst) {
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(long long)v->valuedouble ||
        v->valuedouble < lo || v->valuedouble > hi)
        return lisa_error_set(LISA_ERR_FORMAT, "%s: \"%s\" must be an integer in [%d, %d]", path,
                              v->string, lo, hi);
    *dst = (int)v->valuedouble;
    return LISA_OK;
}

/* A number key in (lo, hi] when lo_open, [lo, hi] otherwise. */
static lisa_status config_num(const char *path, const cJSON *v, double lo, int lo_open, double hi,
                              double *dst) {
    if (!cJSON_IsNumber(v) || v->valuedouble > hi || v->valuedouble < lo ||
        (lo_open && v->valuedouble == lo))
        return lisa_error_set(LISA_ERR_FORMAT, "%s: \"%s\" must be a number in %c%g, %g]", path,
                              v->string, lo_open ? '(' : '[', lo, hi);
    *dst = v->valuedouble;
    return LISA_OK;
}

/* A string key that fits dst (size bytes with the NUL). */
static lisa_status config_str(const char *path, const cJSON *v, char *dst, size_t size) {
    if (!cJSON_IsString(v))
        return lisa_error_set(LISA_ERR_FORMAT, "%s: \"%s\" must be a string", path, v->string);
    if (strlen(v->valuestring) >= size)
        return lisa_error_set(LISA_ERR_FORMAT, "%s: \"%s\" is longer than %zu characters", path,
                              v->string, size - 1);
    memcpy(dst, v->valuestring, strlen(v->valuestring) + 1);
    return LISA_OK;
}

/* "model": an absolute path as it is, a relative one joined to the
 * directory of the configuration file (none when the file has no '/'). */
static lisa_status config_model(const char *path, const cJSON *v, lisa_cluster_config *c) {
    LISA_TRY(config_str(path, v, c->model_dir, sizeof c->model_dir));
    const char *slash = strrchr(path, '/');
    if (c->model_dir[0] == '/' || !c->model_dir[0] || !slash) return LISA_OK;
    char joined[sizeof c->model_dir];
    int n = snprintf(joined, sizeof joined, "%.*s/%s", (int)(slash - path), path, c->model_dir);
    if (n < 0 || (size_t)n >= sizeof joined)
        return lisa_error_set(LISA_ERR_FORMAT, "%s: \"model\" is too long joined to the "
                              "file's directory", path);
    memcpy(c->model_dir, joined, (size_t)n + 1);
    return LISA_OK;
}

static lisa_status config_gpus(const char *path, const cJSON *v, lisa_cluster_config *c) {
    if (!cJSON_IsArray(v))
        return lisa_error_set(LISA_ERR_FORMAT, "%s: \"gpus\" must be an array of GPU indices "
                              "(-1: none)", path);
    int n = cJSON_GetArraySize(v);
    if (n > LISA_CLUSTER_MAX_RANKS)
        return lisa_error_set(LISA_ERR_FORMAT, "%s: \"gpus\" lists %d ranks, at most %d", path, n,
                              LISA_CLUSTER_MAX_RANKS);
    int i = 0;
    const cJSON *g;
    cJSON_ArrayForEach(g, v) {
        if (!cJSON_IsNumber(g) || g->valuedouble != (double)(long long)g->valuedouble ||
            g->valuedouble < -1 || g->valuedouble > 1023)
            return lisa_error_set(LISA_ERR_FORMAT, "%s: \"gpus\"[%d] must be an integer in "
                                  "[-1, 1023]", path, i);
        c->gpu_map[i++] = (int)g->valuedouble;
    }
    c->n_gpu_map = n;
    return LISA_OK;
}

/* One key of the file; keys starting with '_' ("_comment") are notes. */
static lisa_status config_key(const char *path, const cJSON *v, lisa_cluster_config *c) {
    const char *k = v->string;
    if (k[0] == '_') return LISA_OK;
    if (!strcmp(k, "model")) return config_model(path, v, c);
    if (!strcmp(k, "stages")) return config_int(path, v, 1, LISA_CLUSTER_MAX_STAGES, &c->stages);
    if (!strcmp(k, "layers")) return config_str(path, v, c->layers, sizeof c->layers);
    if (!strcmp(k, "micro_batches")) return config_int(path, v, 0, 1024, &c->micro_batches);
    if (!strcmp(k, "token_budget")) return config_int(path, v, 1, 1 << 20, &c->token_budget);
    if (!strcmp(k, "slots")) return config_int(path, v, 1, 1 << 16, &c->slots);
    if (!strcmp(k, "context")) return config_int(path, v, 2, 1 << 20, &c->max_ctx);
    if (!strcmp(k, "max_new_tokens")) return config_int(path, v, 1, 1 << 20, &c->max_new_tokens);
    if (!strcmp(k, "device")) return config_str(path, v, c->device, sizeof c->device);
    if (!strcmp(k, "dtype")) return config_str(path, v, c->dtype, sizeof c->dtype);
    if (!strcmp(k, "quantize")) return config_str(path, v, c->quantize, sizeof c->quantize);
    if (!strcmp(k, "gpus")) return config_gpus(path, v, c);
    if (!strcmp(k, "threads")) return config_int(path, v, 0, 4096, &c->threads);
    if (!strcmp(k, "startup_timeout_s"))
        return config_num(path, v, 0, 1, 1e6, &c->startup_timeout_s);
    if (!strcmp(k, "stall_timeout_s"))
        return config_num(path, v, 0, 0, 1e6, &c->stall_timeout_s);
    if (!strcmp(k, "device_memory_gb"))
        return config_num(path, v, 0, 0, 1e6, &c->device_memory_gb);
    if (!strcmp(k, "vision")) {
        if (cJSON_IsString(v) && !strcmp(v->valuestring, "own")) c->vision = LISA_CLUSTER_VISION_OWN;
        else if (cJSON_IsString(v) && !strcmp(v->valuestring, "coordinator"))
            c->vision = LISA_CLUSTER_VISION_COORDINATOR;
        else
            return lisa_error_set(LISA_ERR_FORMAT, "%s: \"vision\" must be \"own\" or "
                                  "\"coordinator\"", path);
        return LISA_OK;
    }
    return lisa_error_set(LISA_ERR_FORMAT, "%s: unknown key \"%s\"", path, k);
}

lisa_status lisa_cluster_config_load(lisa_cluster_config *c, const char *path) {
    char *text = NULL;
    size_t len = 0;
    LISA_TRY(lisa_config_file_read(path, &text, &len));
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    lisa_status st = LISA_OK;
    if (!cJSON_IsObject(root)) {
        st = lisa_error_set(LISA_ERR_FORMAT, "%s: not a JSON object", path);
    } else {
        const cJSON *v;
        cJSON_ArrayForEach(v, root) {
            if ((st = config_key(path, v, c)) != LISA_OK) break;
        }
    }
    cJSON_Delete(root);
    return st;
}

lisa_dtype lisa_cluster_config_quant(const lisa_cluster_config *c) {
    if (!strcmp(c->quantize, "q8_0")) return LISA_DTYPE_Q8_0;
    if (!strcmp(c->quantize, "q4_0")) return LISA_DTYPE_Q4_0;
    return LISA_DTYPE_F32;
}

lisa_status lisa_cluster_config_check(lisa_cluster_config *c) {
    if (c->stages < 1 || c->stages > LISA_CLUSTER_MAX_STAGES)
        return lisa_error_set(LISA_ERR_ARG, "stages must be in [1, %d], not %d",
                              LISA_CLUSTER_MAX_STAGES, c->stages);
    if (c->micro_batches < 0)
        return lisa_error_set(LISA_ERR_ARG, "micro_batches must be >= 1 (0: the stage count), "
                              "not %d", c->micro_batches);
    if (c->micro_batches == 0) c->micro_batches = c->stages;
    if (c->slots < 1) return lisa_error_set(LISA_ERR_ARG, "slots must be >= 1, not %d", c->slots);
    if (c->token_budget < c->slots)
        return lisa_error_set(LISA_ERR_ARG, "token_budget %d is below slots %d (every decoding "
                              "sequence needs a token per micro-batch)", c->token_budget, c->slots);
    if (c->max_ctx < 2)
        return lisa_error_set(LISA_ERR_ARG, "context must be >= 2, not %d", c->max_ctx);
    if (c->max_new_tokens < 1)
        return lisa_error_set(LISA_ERR_ARG, "max_new_tokens must be >= 1, not %d",
                              c->max_new_tokens);
    if (c->threads < 0)
        return lisa_error_set(LISA_ERR_ARG, "threads must be >= 0, not %d", c->threads);
    if (!(c->startup_timeout_s > 0))
        return lisa_error_set(LISA_ERR_ARG, "startup_timeout_s must be > 0, not %g",
                              c->startup_timeout_s);
    if (!(c->stall_timeout_s >= 0))
        return lisa_error_set(LISA_ERR_ARG, "stall_timeout_s must be >= 0, not %g",
                              c->stall_timeout_s);
    if (!(c->device_memory_gb >= 0))
        return lisa_error_set(LISA_ERR_ARG, "device_memory_gb must be >= 0, not %g",
                              c->device_memory_gb);
    int cpu = !strcmp(c->device, "cpu");
    if (!cpu && strcmp(c->device, "cuda"))
        return lisa_error_set(LISA_ERR_ARG, "device must be \"cpu\" or \"cuda\", not \"%s\"",
                              c->device);
    if (!c->dtype[0]) snprintf(c->dtype, sizeof c->dtype, "%s", cpu ? "fp32" : "bf16");
    if (strcmp(c->dtype, "fp32") && strcmp(c->dtype, "bf16") && strcmp(c->dtype, "fp16"))
        return lisa_error_set(LISA_ERR_ARG, "dtype must be fp32, bf16 or fp16, not \"%s\"",
                              c->dtype);
    if (c->quantize[0] && strcmp(c->quantize, "none") && strcmp(c->quantize, "q8_0") &&
        strcmp(c->quantize, "q4_0"))
        return lisa_error_set(LISA_ERR_ARG, "quantize must be q8_0, q4_0 or none, not \"%s\"",
                              c->quantize);
    if (cpu && strcmp(c->dtype, "fp32"))
        return lisa_error_set(LISA_ERR_UNSUPPORTED, "dtype %s needs device cuda (the CPU "
                              "computes in fp32)", c->dtype);
    int world = lisa_cluster_world_size(c);
    if (c->n_gpu_map && c->n_gpu_map != world)
        return lisa_error_set(LISA_ERR_ARG, "gpus lists %d ranks, the job has %d (%d stages, "
                              "vision %s)", c->n_gpu_map, world, c->stages,
                              c->vision == LISA_CLUSTER_VISION_OWN ? "own" : "coordinator");
    return LISA_OK;
}

/* ---- the layer split ---------------------------------------------------- */

/* Parameters of one decoder layer: two norms, q/k/v/o, gate/up/down. */
static uint64_t split_layer_params(const lisa_llama_config *cfg) {
    uint64_t C = (uint64_t)cfg->hidden_size, I = (uint64_t)cfg->intermediate_size;
    uint64_t qd = (uint64_t)cfg->num_attention_heads * (uint64_t)cfg->head_dim;
    uint64_t kvd = (uint64_t)cfg->num_key_value_heads * (uint64_t)cfg->head_dim;
    return 2 * C + C * qd + 2 * C * kvd + qd * C + 3 * C * I;
}

/* "a-b" or "n": parses one element at *p (advanced past it). Returns 2 for
 * a range, 1 for a count, 0 on a syntax error. */
static int split_element(const char **p, long *a, long *b) {
    char *end;
    if (**p < '0' || **p > '9') return 0;
    *a = strtol(*p, &end, 10);
    *p = end;
    if (*a > 1000000) return 0;
    if (**p != '-') return 1;
    (*p)++;
    if (**p < '0' || **p > '9') return 0;
    *b = strtol(*p, &end, 10);
    *p = end;
    return *b > 1000000 ? 0 : 2;
}

/* The user's list, counts or ranges, into bounds (P + 1). */
static lisa_status split_parse(const char *spec, int P, int L, int *bounds) {
    long a[LISA_CLUSTER_MAX_STAGES + 1], b[LISA_CLUSTER_MAX_STAGES + 1];
    int n = 0, kind = 0;
    const char *p = spec;
    for (;;) {
        while (*p == ' ') p++;
        if (n > LISA_CLUSTER_MAX_STAGES)
            return lisa_error_set(LISA_ERR_ARG, "layers \"%s\": more than %d entries", spec,
                                  LISA_CLUSTER_MAX_STAGES);
        int k = split_element(&p, &a[n], &b[n]);
        if (!k || (kind && k != kind))
            return lisa_error_set(LISA_ERR_ARG, "layers \"%s\": expected \"balanced\", counts "
                                  "like \"20,20\" or inclusive ranges like \"0-19,20-39\"", spec);
        kind = k;
        n++;
        while (*p == ' ') p++;
        if (!*p) break;
        if (*p != ',')
            return lisa_error_set(LISA_ERR_ARG, "layers \"%s\": expected \"balanced\", counts "
                                  "like \"20,20\" or inclusive ranges like \"0-19,20-39\"", spec);
        p++;
    }
    if (n != P)
        return lisa_error_set(LISA_ERR_ARG, "layers \"%s\": %d %s for %d stage%s", spec, n,
                              kind == 1 ? (n == 1 ? "count" : "counts")
                                        : (n == 1 ? "range" : "ranges"),
                              P, P == 1 ? "" : "s");
    if (kind == 1) {
        long sum = 0;
        for (int s = 0; s < P; s++) {
            if (a[s] == 0)
                return lisa_error_set(LISA_ERR_ARG, "layers \"%s\": stage %d has no layers", spec, s + 1);
            sum += a[s];
        }
        if (sum != L)
            return lisa_error_set(LISA_ERR_ARG, "layers \"%s\": the counts sum to %ld, the model "
                                  "has %d layers", spec, sum, L);
        bounds[0] = 0;
        for (int s = 0; s < P; s++) bounds[s + 1] = bounds[s] + (int)a[s];
        return LISA_OK;
    }
    /* Ranges: each layer must be in exactly one, and stage order is layer order. */
    for (int s = 0; s < P; s++) {
        if (b[s] < a[s])
            return lisa_error_set(LISA_ERR_ARG, "layers \"%s\": range %ld-%ld of stage %d is "
                                  "backwards (ranges are inclusive: a one-layer stage is "
                                  "\"%ld-%ld\")", spec, a[s], b[s], s + 1, a[s], a[s]);
        if (b[s] >= L)
            return lisa_error_set(LISA_ERR_ARG, "layers \"%s\": layer %ld of stage %d is past the "
                                  "model's %d layers (0-%d)", spec, b[s], s + 1, L, L - 1);
    }
    for (int s = 0; s < P; s++)
        for (int t = s + 1; t < P; t++) {
            long lo = a[s] > a[t] ? a[s] : a[t], hi = b[s] < b[t] ? b[s] : b[t];
            if (lo <= hi) {
                if (lo == hi)
                    return lisa_error_set(LISA_ERR_ARG, "layers \"%s\": layer %ld is in stages "
                                          "%d and %d", spec, lo, s + 1, t + 1);
                return lisa_error_set(LISA_ERR_ARG, "layers \"%s\": layers %ld-%ld are in "
                                      "stages %d and %d", spec, lo, hi, s + 1, t + 1);
            }
        }
    /* No overlap: the first uncovered layer, if any, starts a gap. */
    for (long l = 0; l < L; l++) {
        int in = 0;
        for (int s = 0; s < P && !in; s++) in = a[s] <= l && l <= b[s];
        if (in) continue;
        long e = l;
        for (;;) {
            int next_in = 0;
            for (int s = 0; s < P && !next_in; s++) next_in = a[s] <= e + 1 && e + 1 <= b[s];
            if (next_in || e + 1 >= L) break;
            e++;
        }
        if (e == l)
            return lisa_error_set(LISA_ERR_ARG, "layers \"%s\": layer %ld is in no stage", spec, l);
        return lisa_error_set(LISA_ERR_ARG, "layers \"%s\": layers %ld-%ld are in no stage", spec,
                              l, e);
    }
    for (int s = 0; s + 1 < P; s++)
        if (a[s + 1] != b[s] + 1)
            return lisa_error_set(LISA_ERR_ARG, "layers \"%s\": stage %d (%ld-%ld) does not "
                                  "follow stage %d (%ld-%ld): stages hold consecutive layers in "
                                  "order", spec, s + 2, a[s + 1], b[s + 1], s + 1, a[s], b[s]);
    for (int s = 0; s < P; s++) bounds[s] = (int)a[s];
    bounds[P] = L;
    return LISA_OK;
}

/* Balanced: minimises the heaviest stage. Costs are in half layers' worth
 * of parameters (2 x a layer's parameters per layer, plus one layer's on the
 * last stage for the LM head and final norm) so everything stays integral.
 * best[s][l]: the least heaviest stage splitting layers [0, l) into s
 * non-empty stages. Among the optimal splits it takes the one whose layer
 * counts, read from the last stage back, are smallest (the last stage gets
 * the fewest layers the optimum allows, then the one before it, ...). */
static lisa_status split_balanced(int P, int L, uint64_t layer, int *bounds) {
    uint64_t *best = malloc(sizeof *best * (size_t)(P + 1) * (size_t)(L + 1));
    if (!best) return lisa_error_set(LISA_ERR_NOMEM, "layer split: out of memory");
    const uint64_t inf = UINT64_MAX;
#define BEST(s, l) best[(size_t)(s) * (size_t)(L + 1) + (size_t)(l)]
    for (int s = 0; s <= P; s++)
        for (int l = 0; l <= L; l++) BEST(s, l) = inf;
    BEST(0, 0) = 0;
    for (int s = 1; s <= P; s++)
        for (int l = s; l <= L; l++)
            for (int k = s - 1; k < l; k++) {
                if (BEST(s - 1, k) == inf) continue;
                uint64_t cost = 2 * layer * (uint64_t)(l - k) + (s == P && l == L ? layer : 0);
                uint64_t m = BEST(s - 1, k) > cost ? BEST(s - 1, k) : cost;
                if (m < BEST(s, l)) BEST(s, l) = m;
            }
    uint64_t opt = BEST(P, L);
    /* Walk back: stage s takes the fewest layers that leave a prefix
     * splittable within opt (BEST is monotone in the prefix, so feasible
     * means BEST(s, k) <= opt). */
    int hi = L;
    bounds[P] = L;
    for (int s = P; s >= 1; s--) {
        int k;
        for (k = hi - 1; k >= s - 1; k--) {
            uint64_t cost = 2 * layer * (uint64_t)(hi - k) + (s == P ? layer : 0);
            if (cost <= opt && BEST(s - 1, k) <= opt) break;
        }
        LISA_ASSERT(k >= s - 1);
        bounds[s - 1] = k;
        hi = k;
    }
#undef BEST
    free(best);
    LISA_ASSERT(bounds[0] == 0);
    return LISA_OK;
}

lisa_status lisa_cluster_split_resolve(const lisa_cluster_config *c, const lisa_llama_config *cfg,
                                       int *bounds) {
    int P = c->stages, L = cfg->num_hidden_layers;
    if (P < 1 || P > LISA_CLUSTER_MAX_STAGES)
        return lisa_error_set(LISA_ERR_ARG, "stages must be in [1, %d], not %d",
                              LISA_CLUSTER_MAX_STAGES, P);
    if (P > L)
        return lisa_error_set(LISA_ERR_ARG, "%d stages for a model of %d layers (every stage "
                              "needs at least one)", P, L);
    if (!c->layers[0] || !strcmp(c->layers, "balanced"))
        return split_balanced(P, L, split_layer_params(cfg), bounds);
    return split_parse(c->layers, P, L, bounds);
}

/* ---- ranks -------------------------------------------------------------- */

int lisa_cluster_world_size(const lisa_cluster_config *c) {
    return c->stages + (c->vision == LISA_CLUSTER_VISION_OWN ? 2 : 1);
}

int lisa_cluster_stage_rank(const lisa_cluster_config *c, int s) {
    (void)c;
    return 1 + s;
}

int lisa_cluster_vision_rank(const lisa_cluster_config *c) {
    return c->vision == LISA_CLUSTER_VISION_OWN ? c->stages + 1 : 0;
}

int lisa_cluster_rank_roles(const lisa_cluster_config *c, int rank, int *stage) {
    int roles = 0;
    if (stage) *stage = -1;
    if (rank == 0) roles |= LISA_CLUSTER_ROLE_COORDINATOR;
    if (rank >= 1 && rank <= c->stages) {
        roles |= LISA_CLUSTER_ROLE_STAGE;
        if (stage) *stage = rank - 1;
    }
    if (rank == lisa_cluster_vision_rank(c)) roles |= LISA_CLUSTER_ROLE_VISION;
    return roles;
}
