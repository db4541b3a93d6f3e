/* cmd-cluster-plan.c: `lisa cluster plan`: what a cluster job would hold on
 * each rank and device, whether it fits, and (with --costs) the simulated
 * stage utilisation and throughput, as a table or one JSON object.
 *
 * It reads only JSON: the cluster configuration, the model's config.json
 * (or --shapes, so no checkpoint is needed) and the cost file. The sizing
 * and the simulation are cluster-plan.c's; this file parses flags and
 * prints. It never starts MPI. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "cli-util.h"
#include "cluster-plan.h"
#include "commands.h"
#include "config-file.h"

static void plan_help(FILE *f) {
    fprintf(f,
            "usage: lisa cluster plan CONFIG [options]\n"
            "\n"
            "Sizes a `lisa cluster` job from shapes alone: per rank its role, layers,\n"
            "weight, KV-cache, scratch, pipeline-buffer and backend bytes, per GPU the\n"
            "sum (plus --reserve-gb per process) against its memory. With --costs it\n"
            "also simulates the scheduler on a synthetic workload (every request one\n"
            "image: CLIP, the prompt, the answer, SAM) and prints each rank's\n"
            "utilisation (busy / makespan) and requests/s and tokens/s.\n"
            "\n"
            "options:\n"
            "  --config FILE          the cluster configuration (or as the first argument)\n"
            "  --shapes FILE          the LLaMA config.json to size (default: the\n"
            "                         configuration's model directory), e.g.\n"
            "                         configs/llama-13b.json\n"
            "  --costs FILE           cost model (configs/costs-a100-80gb.json, or one\n"
            "                         written by `lisa bench llm --layer-costs FILE`)\n"
            "  --device-memory-gb X   memory per GPU in GiB (default: the configuration's\n"
            "                         device_memory_gb)\n"
            "  --reserve-gb X         per process on a GPU: CUDA context, libraries,\n"
            "                         fragmentation (default 1)\n"
            "  --requests N           workload: requests (default 256)\n"
            "  --prompt-tokens T      prompt tokens per request, image tokens included\n"
            "                         (default 300)\n"
            "  --new-tokens G         generated tokens per request (default 30)\n"
            "  --window W             requests inside the job at once (default 2 x slots)\n"
            "  --clip P               the vision rank's CLIP: l14 (default), b16, tiny\n"
            "  --sam P                the vision rank's SAM: vit_h (default), vit_l, vit_b,\n"
            "                         tiny\n"
            "  --stages P, --layers SPEC, --micro-batches M, --slots S, --token-budget B,\n"
            "  --context N, --device cpu|cuda, --dtype T, --vision own|coordinator\n"
            "  --quantize Q           q8_0 or q4_0: the stages' projections and LM head in\n"
            "                         that type (the configuration's \"quantize\", or what a\n"
            "                         converted checkpoint's config.json records)\n"
            "                         override the configuration's keys\n"
            "  --json                 one JSON object instead of the table\n"
            "  -h, --help             show this help\n");
}

/* Parses a non-negative number option; -1 after a usage error. */
static int plan_parse_gb(const char *opt, const char *val, double *out) {
    char *end;
    double v = strtod(val, &end);
    if (end == val || *end || !(v >= 0) || isinf(v)) {
        fprintf(stderr, "lisa cluster plan: %s expects a non-negative number, got '%s'\n", opt, val);
        return -1;
    }
    *out = v;
    return 0;
}

/* What a checkpoint's config.json says its tensors are stored in: *dt from
 * torch_dtype (fp32 when absent: what a CPU stage keeps in memory), *q from
 * lisa_model_format.quantization.type (F32 when none: no block type). */
static void plan_file_types(const char *path, lisa_dtype *dt, lisa_dtype *q) {
    char *text = NULL;
    size_t len = 0;
    *dt = *q = LISA_DTYPE_F32;
    if (lisa_config_file_read(path, &text, &len) != LISA_OK) return;
    cJSON *root = cJSON_ParseWithLength(text, len);
    const cJSON *t = cJSON_IsObject(root) ? cJSON_GetObjectItem(root, "torch_dtype") : NULL;
    if (cJSON_IsString(t) && !strcmp(t->valuestring, "bfloat16")) *dt = LISA_DTYPE_BF16;
    if (cJSON_IsString(t) && !strcmp(t->valuestring, "float16")) *dt = LISA_DTYPE_F16;
    const cJSON *f = cJSON_IsObject(root) ? cJSON_GetObjectItem(root, "lisa_model_format") : NULL;
    const cJSON *qz = cJSON_IsObject(f) ? cJSON_GetObjectItem(f, "quantization") : NULL;
    t = cJSON_IsObject(qz) ? cJSON_GetObjectItem(qz, "type") : NULL;
    if (cJSON_IsString(t) && !strcmp(t->valuestring, "q8_0")) *q = LISA_DTYPE_Q8_0;
    if (cJSON_IsString(t) && !strcmp(t->valuestring, "q4_0")) *q = LISA_DTYPE_Q4_0;
    cJSON_Delete(root);
    free(text);
}

/* b in the largest binary unit that keeps it >= 1, 10 columns wide. */
static const char *plan_bytes(size_t b, char *buf, size_t size) {
    if (b >= ((size_t)1 << 30)) snprintf(buf, size, "%6.2f GiB", (double)b / (1 << 30));
    else if (b >= ((size_t)1 << 20)) snprintf(buf, size, "%6.1f MiB", (double)b / (1 << 20));
    else if (b >= 1024) snprintf(buf, size, "%6.1f KiB", (double)b / 1024);
    else snprintf(buf, size, "%8zu B", b);
    return buf;
}

static const char *plan_role_name(const lisa_cluster_plan_rank *r, char *buf, size_t size) {
    buf[0] = 0;
    if (r->roles & LISA_CLUSTER_ROLE_COORDINATOR) snprintf(buf, size, "coordinator");
    if (r->roles & LISA_CLUSTER_ROLE_STAGE) snprintf(buf, size, "stage %d", r->stage + 1);
    if (r->roles & LISA_CLUSTER_ROLE_VISION) {
        size_t n = strlen(buf);
        snprintf(buf + n, size - n, "%svision", n ? "+" : "");
    }
    if (!buf[0]) snprintf(buf, size, "idle");
    return buf;
}

static void plan_print_table(const lisa_cluster_plan *pl, const lisa_cluster_plan_params *p,
                             const char *config, const char *shapes, const char *costs_path,
                             const lisa_cluster_plan_costs *costs) {
    const lisa_cluster_config *c = &p->cfg;
    const lisa_llama_config *m = &p->llm;
    printf("config    %s\n", config);
    printf("model     LLaMA %d layers, hidden %d, intermediate %d, heads %d/%d, vocab %d (%s)\n",
           m->num_hidden_layers, m->hidden_size, m->intermediate_size, m->num_attention_heads,
           m->num_key_value_heads, m->vocab_size, shapes);
    char qbuf[48] = "";
    if (lisa_dtype_is_quant(p->quant))
        snprintf(qbuf, sizeof qbuf, ", projections and LM head %s", lisa_dtype_name(p->quant));
    printf("          %s on %s, weights %s%s%s; vision: CLIP %d x %d, SAM %d x %d\n", c->dtype,
           c->device, lisa_dtype_name(p->weight_dtype), qbuf,
           strcmp(c->device, "cuda") ? " (used in place from the checkpoint)" : "",
           p->clip_layers, p->clip.hidden_size, p->sam.depth, p->sam.embed_dim);
    printf("job       %d stage%s, layers %s:", c->stages, c->stages == 1 ? "" : "s",
           c->layers[0] ? c->layers : "balanced");
    for (int s = 0; s < c->stages; s++)
        printf("%s %d-%d", s ? " |" : "", pl->bounds[s], pl->bounds[s + 1] - 1);
    printf("\n          %d micro-batch%s in flight, %d tokens each, %d slots x %d positions, "
           "vision %s\n\n",
           c->micro_batches, c->micro_batches == 1 ? "" : "es", c->token_budget, c->slots,
           c->max_ctx, c->vision == LISA_CLUSTER_VISION_OWN ? "on its own rank" : "on rank 0");
    printf("rank  role          gpu  layers     weights    KV cache     scratch        pipe     "
           "backend       total\n");
    for (int r = 0; r < pl->n_ranks; r++) {
        const lisa_cluster_plan_rank *k = &pl->ranks[r];
        char role[48], layers[32], gpu[16];
        plan_role_name(k, role, sizeof role);
        if (k->l0 >= 0) snprintf(layers, sizeof layers, "%d-%d", k->l0, k->l1 - 1);
        else snprintf(layers, sizeof layers, "-");
        if (k->gpu >= 0) snprintf(gpu, sizeof gpu, "%d", k->gpu);
        else snprintf(gpu, sizeof gpu, "-");
        char b[6][32];
        printf("%-4d  %-12s  %3s  %-6s  %s %s %s %s %s %s\n", r, role, gpu, layers,
               plan_bytes(k->weight_bytes, b[0], sizeof b[0]),
               plan_bytes(k->kv_bytes, b[1], sizeof b[1]),
               plan_bytes(k->scratch_bytes, b[2], sizeof b[2]),
               plan_bytes(k->pipe_bytes, b[3], sizeof b[3]),
               plan_bytes(k->backend_bytes, b[4], sizeof b[4]),
               plan_bytes(k->total_bytes, b[5], sizeof b[5]));
    }
    size_t w_llm = 0, w_vision = 0;
    for (int r = 0; r < pl->n_ranks; r++) {
        const lisa_cluster_plan_rank *k = &pl->ranks[r];
        size_t llm = k->roles & LISA_CLUSTER_ROLE_STAGE
                         ? lisa_llama_model_bytes_quant(m, p->weight_dtype, p->quant, k->l0, k->l1)
                         : 0;
        w_llm += llm;
        w_vision += k->weight_bytes - llm;
    }
    char wb[3][32];
    printf("\nweights   %s in all: LLM %s, vision (CLIP, SAM, projector, [SEG] head) %s\n",
           plan_bytes(w_llm + w_vision, wb[0], sizeof wb[0]), plan_bytes(w_llm, wb[1], sizeof wb[1]),
           plan_bytes(w_vision, wb[2], sizeof wb[2]));
    printf("\ndevice  ranks      memory    capacity  fits\n");
    for (int d = 0; d < pl->n_devices; d++) {
        const lisa_cluster_plan_device *v = &pl->devices[d];
        char name[24], cap[40], b[32];
        if (v->gpu >= 0) snprintf(name, sizeof name, "gpu %d", v->gpu);
        else snprintf(name, sizeof name, "host");
        if (v->fits >= 0) snprintf(cap, sizeof cap, "%.2f GiB", c->device_memory_gb);
        else snprintf(cap, sizeof cap, "%s", v->gpu < 0 && c->device_memory_gb > 0 ? "-" : "unknown");
        printf("%-6s  %5d  %s  %10s  %s\n", name, v->n_ranks, plan_bytes(v->bytes, b, sizeof b),
               cap, v->fits < 0 ? "-" : v->fits ? "yes" : "NO");
    }
    if (!pl->simulated) {
        printf("\n(no --costs: utilisation and throughput not simulated)\n");
        return;
    }
    printf("\nworkload  %d requests x (%d prompt + %d new tokens), window %d\n", p->n_requests,
           p->prompt_tokens, p->new_tokens, p->window > 0 ? p->window : 2 * c->slots);
    printf("costs     %s (%s%s%s)\n", costs_path, costs->source[0] ? costs->source : "unlabelled",
           costs->device[0] ? ", " : "", costs->device);
    if (pl->warning[0]) printf("warning   %s\n", pl->warning);
    printf("\nrank  role            busy  utilisation\n");
    for (int r = 0; r < pl->n_ranks; r++) {
        const lisa_cluster_plan_rank *k = &pl->ranks[r];
        char role[48];
        printf("%-4d  %-12s  %7.2f s  %9.1f%%\n", r, plan_role_name(k, role, sizeof role),
               k->busy_s, 100 * k->utilisation);
    }
    for (int d = 0; d < pl->n_devices; d++)
        if (pl->devices[d].gpu >= 0 && pl->devices[d].n_ranks > 1)
            printf("gpu %d (shared by %d ranks): %.1f%% busy\n", pl->devices[d].gpu,
                   pl->devices[d].n_ranks, 100 * pl->devices[d].utilisation);
    printf("\nthroughput  %.2f requests/s, %.1f new tokens/s, %.0f prompt tokens/s\n",
           pl->requests_per_s, pl->tokens_per_s, pl->prompt_tokens_per_s);
    printf("makespan    %.2f s; latency p50 %.2f s, p95 %.2f s\n", pl->makespan_s,
           pl->latency_p50_s, pl->latency_p95_s);
    printf("micro-batches %ld, mean %.1f tokens of %.1f requests\n", pl->micro_batches,
           pl->mean_tokens, pl->mean_items);
}

static void plan_print_json(const lisa_cluster_plan *pl, const lisa_cluster_plan_params *p,
                            const char *config, const char *shapes, const char *costs_path) {
    const lisa_cluster_config *c = &p->cfg;
    printf("{\"config\":");
    cli_json_string(stdout, config);
    printf(",\"shapes\":");
    cli_json_string(stdout, shapes);
    printf(",\"device\":\"%s\",\"dtype\":\"%s\",\"weight_dtype\":\"%s\",\"quantize\":\"%s\","
           "\"stages\":%d,\"micro_batches\":%d,\"token_budget\":%d,\"slots\":%d,\"context\":%d,"
           "\"bounds\":[",
           c->device, c->dtype, lisa_dtype_name(p->weight_dtype),
           lisa_dtype_is_quant(p->quant) ? lisa_dtype_name(p->quant) : "none", c->stages,
           c->micro_batches,
           c->token_budget, c->slots, c->max_ctx);
    for (int s = 0; s <= c->stages; s++) printf("%s%d", s ? "," : "", pl->bounds[s]);
    printf("],\"ranks\":[");
    for (int r = 0; r < pl->n_ranks; r++) {
        const lisa_cluster_plan_rank *k = &pl->ranks[r];
        char role[48];
        printf("%s{\"rank\":%d,\"role\":\"%s\",\"stage\":%d,\"gpu\":%d,\"layers\":[%d,%d],"
               "\"weight_bytes\":%zu,\"kv_bytes\":%zu,\"scratch_bytes\":%zu,\"pipe_bytes\":%zu,"
               "\"backend_bytes\":%zu,\"total_bytes\":%zu",
               r ? "," : "", r, plan_role_name(k, role, sizeof role), k->stage >= 0 ? k->stage + 1 : -1, k->gpu, k->l0,
               k->l1, k->weight_bytes, k->kv_bytes, k->scratch_bytes, k->pipe_bytes,
               k->backend_bytes, k->total_bytes);
        if (pl->simulated) printf(",\"busy_s\":%.6g,\"utilisation\":%.4f", k->busy_s, k->utilisation);
        printf("}");
    }
    printf("],\"devices\":[");
    for (int d = 0; d < pl->n_devices; d++) {
        const lisa_cluster_plan_device *v = &pl->devices[d];
        printf("%s{\"gpu\":%d,\"ranks\":%d,\"bytes\":%zu,\"capacity_gb\":%g,\"fits\":%s", d ? "," : "",
               v->gpu, v->n_ranks, v->bytes, c->device_memory_gb,
               v->fits < 0 ? "null" : v->fits ? "true" : "false");
        if (pl->simulated && v->gpu >= 0) printf(",\"utilisation\":%.4f", v->utilisation);
        printf("}");
    }
    printf("],\"fits\":%s", pl->fits ? "true" : "false");
    if (pl->simulated) {
        printf(",\"costs\":");
        cli_json_string(stdout, costs_path);
        printf(",\"workload\":{\"requests\":%d,\"prompt_tokens\":%d,\"new_tokens\":%d,"
               "\"window\":%d},\"makespan_s\":%.6g,\"requests_per_s\":%.6g,\"tokens_per_s\":%.6g,"
               "\"prompt_tokens_per_s\":%.6g,\"latency_p50_s\":%.6g,\"latency_p95_s\":%.6g,"
               "\"micro_batches\":%ld,\"mean_tokens\":%.4g,\"mean_items\":%.4g",
               p->n_requests, p->prompt_tokens, p->new_tokens,
               p->window > 0 ? p->window : 2 * c->slots, pl->makespan_s, pl->requests_per_s,
               pl->tokens_per_s, pl->prompt_tokens_per_s, pl->latency_p50_s, pl->latency_p95_s,
               pl->micro_batches, pl->mean_tokens, pl->mean_items);
        if (pl->warning[0]) {
            printf(",\"warning\":");
            cli_json_string(stdout, pl->warning);
        }
    }
    printf("}\n");
}

int cmd_cluster_plan(int argc, char **argv) {
    const char *config = NULL, *shapes = NULL, *costs_path = NULL, *mem_s = NULL, *reserve_s = NULL;
    const char *clip = "l14", *sam = "vit_h", *layers = NULL, *device = NULL, *dtype = NULL,
               *vision = NULL, *quant_s = NULL;
    long requests = 256, prompt = 300, new_tokens = 30, window = 0;
    long stages = -1, micro = -1, slots = -1, budget = -1, context = -1;
    int json = 0;
    if (argc > 1 && argv[1][0] != '-') {
        config = argv[1];
        argv[1] = argv[0];
        argc--;
        argv++;
    }
    const cli_opt opts[] = {
        {"--config", CLI_STRING, &config},      {"--shapes", CLI_STRING, &shapes},
        {"--costs", CLI_STRING, &costs_path},   {"--device-memory-gb", CLI_STRING, &mem_s},
        {"--reserve-gb", CLI_STRING, &reserve_s}, {"--requests", CLI_COUNT, &requests},
        {"--prompt-tokens", CLI_COUNT, &prompt}, {"--new-tokens", CLI_COUNT, &new_tokens},
        {"--window", CLI_COUNT, &window},       {"--clip", CLI_STRING, &clip},
        {"--sam", CLI_STRING, &sam},            {"--stages", CLI_COUNT, &stages},
        {"--layers", CLI_STRING, &layers},      {"--micro-batches", CLI_COUNT, &micro},
        {"--slots", CLI_COUNT, &slots},         {"--token-budget", CLI_COUNT, &budget},
        {"--context", CLI_COUNT, &context},     {"--device", CLI_STRING, &device},
        {"--dtype", CLI_STRING, &dtype},        {"--vision", CLI_STRING, &vision},
        {"--json", CLI_FLAG, &json},            {"--quantize", CLI_STRING, &quant_s},
    };
    int pr = cli_opts_parse("cluster plan", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]),
                            plan_help);
    if (pr) return pr > 0 ? 0 : 2;
    if (!config) {
        fprintf(stderr, "lisa cluster plan: give a configuration (lisa cluster plan CONFIG)\n");
        return 2;
    }
    if (requests < 1 || prompt < 1 || new_tokens < 1 || requests > 1000000 || prompt > 1 << 20 ||
        new_tokens > 1 << 20 || window > 1000000) {
        fprintf(stderr, "lisa cluster plan: --requests, --prompt-tokens and --new-tokens must be "
                        "at least 1 (and sane)\n");
        return 2;
    }
    lisa_cluster_config c;
    lisa_cluster_config_defaults(&c);
    lisa_status st = lisa_cluster_config_load(&c, config);
    if (st != LISA_OK) {
        fprintf(stderr, "lisa cluster plan: %s\n", lisa_error_get());
        return 2;
    }
    long *ints[] = {&stages, &micro, &slots, &budget, &context};
    int *dsts[] = {&c.stages, &c.micro_batches, &c.slots, &c.token_budget, &c.max_ctx};
    for (int i = 0; i < 5; i++)
        if (*ints[i] >= 0) *dsts[i] = *ints[i] > 1 << 20 ? 1 << 20 : (int)*ints[i];
    if (layers) snprintf(c.layers, sizeof c.layers, "%s", layers);
    if (device) snprintf(c.device, sizeof c.device, "%s", device);
    if (dtype) snprintf(c.dtype, sizeof c.dtype, "%s", dtype);
    if (quant_s) snprintf(c.quantize, sizeof c.quantize, "%s", quant_s);
    if (vision && !strcmp(vision, "own")) c.vision = LISA_CLUSTER_VISION_OWN;
    else if (vision && !strcmp(vision, "coordinator")) c.vision = LISA_CLUSTER_VISION_COORDINATOR;
    else if (vision) {
        fprintf(stderr, "lisa cluster plan: --vision expects own or coordinator, got '%s'\n", vision);
        return 2;
    }
    if (mem_s && plan_parse_gb("--device-memory-gb", mem_s, &c.device_memory_gb)) return 2;
    if ((stages >= 0 || vision) && c.n_gpu_map && c.n_gpu_map != lisa_cluster_world_size(&c))
        c.n_gpu_map = 0; /* the file's GPU map was for another rank layout */
    if ((st = lisa_cluster_config_check(&c)) != LISA_OK) {
        fprintf(stderr, "lisa cluster plan: %s: %s\n", config, lisa_error_get());
        return 2;
    }
    const char *model = shapes ? shapes : c.model_dir;
    lisa_llama_config m;
    if (!model[0] || (st = lisa_llama_config_load(&m, model)) != LISA_OK) {
        fprintf(stderr, "lisa cluster plan: %s%s\n",
                model[0] ? lisa_error_get() : "the configuration names no model",
                shapes ? "" : " (without the checkpoint, give its config.json as --shapes, "
                              "e.g. --shapes configs/llama-13b.json)");
        return 1;
    }
    lisa_cluster_plan_params p;
    lisa_cluster_plan_params_defaults(&p, &c, &m);
    lisa_dtype file_dt, file_q;
    plan_file_types(model, &file_dt, &file_q);
    if (strcmp(c.device, "cuda")) p.weight_dtype = file_dt;
    if (!lisa_dtype_is_quant(p.quant)) p.quant = file_q;
    int sel;
    if (lisa_vision_clip_preset(clip, &p.clip, &sel) != LISA_OK ||
        lisa_vision_sam_preset(sam, &p.sam) != LISA_OK) {
        fprintf(stderr, "lisa cluster plan: %s\n", lisa_error_get());
        return 2;
    }
    p.clip_layers = p.clip.num_hidden_layers + 1 + sel;
    if (reserve_s && plan_parse_gb("--reserve-gb", reserve_s, &p.reserve_gb)) return 2;
    p.n_requests = (int)requests;
    p.prompt_tokens = (int)prompt;
    p.new_tokens = (int)new_tokens;
    p.window = (int)window;
    lisa_cluster_plan_costs costs;
    memset(&costs, 0, sizeof costs);
    if (costs_path && (st = lisa_cluster_plan_costs_load(&costs, costs_path)) != LISA_OK) {
        fprintf(stderr, "lisa cluster plan: %s\n", lisa_error_get());
        return 2;
    }
    lisa_cluster_plan *pl = malloc(sizeof *pl);
    if (!pl) {
        fprintf(stderr, "lisa cluster plan: out of memory\n");
        return 1;
    }
    st = lisa_cluster_plan_build(pl, &p, costs_path ? &costs : NULL);
    if (st != LISA_OK) {
        fprintf(stderr, "lisa cluster plan: %s\n", lisa_error_get());
        free(pl);
        return st == LISA_ERR_ARG ? 2 : 1;
    }
    if (json) plan_print_json(pl, &p, config, model, costs_path);
    else plan_print_table(pl, &p, config, model, costs_path, &costs);
    free(pl);
    return 0;
}
