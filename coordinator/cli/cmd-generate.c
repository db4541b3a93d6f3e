/* cmd-generate.c: `lisa generate`: greedy text generation with a plain HF
 * LLaMA checkpoint directory (config.json, safetensors, tokenizer.model). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli-util.h"
#include "commands.h"
#include "generate.h"
#include "llama.h"
#include "tokenizer.h"

static void generate_help(FILE *f) {
    fprintf(f,
            "usage: lisa generate --model DIR --prompt TEXT [options]\n"
            "\n"
            "Runs a HF LLaMA checkpoint directory (config.json, *.safetensors or\n"
            "model.safetensors.index.json, tokenizer.model [, added_tokens.json])\n"
            "on one prompt with greedy decoding and prints the generated text.\n"
            "\n"
            "options:\n"
            "  --model DIR           checkpoint directory (required)\n"
            "  --prompt TEXT         prompt text (required)\n"
            "  --max-new-tokens N    stop after N new tokens (default 128)\n"
            "  --no-bos              do not prepend the BOS token\n"
            "  --json                print {\"prompt_ids\", \"output_ids\", \"text\", \"stop\"}\n"
            "  --ctx N               context window to reserve (default: prompt + N new,\n"
            "                        at most max_position_embeddings)\n"
            "  --device DEV          cpu (default), cuda or cuda:N\n"
            "  --dtype T             fp32, bf16 or fp16: weights and activations\n"
            "  --quantize Q          q8_0 or q4_0: quantize the projections and LM head\n"
            "                        at load (a converted --quantize model needs no flag)\n"
            "                        (default: fp32 on cpu, bf16 on cuda; the cpu\n"
            "                        backend computes in fp32 only)\n"
            "  --threads N           CPU threads (default: all cores)\n"
            "  --no-graphs           cuda: run decode steps op by op, recording no\n"
            "                        graphs (also LISA_GRAPHS=0)\n"
            "  --no-gemv             cuda: decode matmuls on cuBLASLt, not the GEMV\n"
            "                        kernel (also LISA_GEMV=0)\n"
            "  -h, --help            show this help\n"
            "\n"
            "Output ids include the EOS token when generation stopped on it; the text\n"
            "does not. LISA_CUDA_SYNC=1 synchronizes after every cuda kernel. Exit\n"
            "status: 0 ok, 1 runtime error, 2 usage error.\n");
}

static const char *stop_name(lisa_stop_reason r) {
    switch (r) {
    case LISA_STOP_EOS: return "eos";
    case LISA_STOP_LENGTH: return "length";
    case LISA_STOP_CONTEXT: return "context";
    case LISA_STOP_ERROR: return "error";
    case LISA_STOP_NONE: break;
    }
    return "none";
}

int cmd_generate(int argc, char **argv) {
    const char *model_dir = NULL, *prompt = NULL, *device = "cpu", *dtype_s = NULL, *quant_s = NULL;
    long max_new = 128, ctx = 0, threads = 0;
    int no_bos = 0, json = 0, no_graphs = 0, no_gemv = 0;
    const cli_opt opts[] = {
        {"--model", CLI_STRING, &model_dir},   {"--prompt", CLI_STRING, &prompt},
        {"--device", CLI_STRING, &device},     {"--dtype", CLI_STRING, &dtype_s}, {"--quantize", CLI_STRING, &quant_s},
        {"--max-new-tokens", CLI_COUNT, &max_new}, {"--ctx", CLI_COUNT, &ctx},
        {"--threads", CLI_COUNT, &threads},    {"--no-bos", CLI_FLAG, &no_bos},
        {"--json", CLI_FLAG, &json},           {"--no-graphs", CLI_FLAG, &no_graphs},
        {"--no-gemv", CLI_FLAG, &no_gemv},
    };
    int pr = cli_opts_parse("generate", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]),
                            generate_help);
    if (pr) return pr > 0 ? 0 : 2;
    if (!model_dir || !prompt) {
        fprintf(stderr, "lisa generate: --model and --prompt are required (see --help)\n");
        return 2;
    }
    lisa_backend_kind kind;
    int dev;
    lisa_dtype dtype;
    if (cli_resolve_backend(device, dtype_s, &kind, &dev, &dtype)) return 2;
    lisa_dtype quant = LISA_DTYPE_F32;
    if (quant_s && cli_parse_quant(quant_s, &quant)) return 2;

    int rc = 1;
    lisa_backend *be = NULL;
    lisa_tokenizer *tok = NULL;
    lisa_llama_model model;
    lisa_llama_state state;
    int model_ok = 0, state_ok = 0;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    char *text = NULL;
    lisa_gen_result res;
    memset(&res, 0, sizeof res);
    char tok_path[4096], added_path[4096];
    snprintf(tok_path, sizeof tok_path, "%s/tokenizer.model", model_dir);
    snprintf(added_path, sizeof added_path, "%s/added_tokens.json", model_dir);
    FILE *probe = fopen(added_path, "rb");
    if (probe) fclose(probe);

    lisa_backend_params bp = cli_backend_params(kind, dev, threads);
    if (no_graphs) bp.no_graphs = 1;
    if (no_gemv) bp.no_gemv = 1;
    lisa_status st = lisa_backend_init_params(&be, &bp);
    if (st == LISA_OK) st = lisa_tokenizer_load(&tok, tok_path, probe ? added_path : NULL);
    if (st == LISA_OK) st = lisa_llama_model_load_quant(&model, model_dir, be, dtype, quant, 0, -1);
    if (st == LISA_OK) model_ok = 1;
    if (st == LISA_OK) st = lisa_tokenizer_encode(tok, prompt, strlen(prompt), !no_bos, &ids, &n_ids);
    if (st == LISA_OK && n_ids == 0) st = lisa_error_set(LISA_ERR_ARG, "the prompt encodes to no tokens");
    if (st == LISA_OK) {
        long maxpos = model.cfg.max_position_embeddings;
        if ((long)n_ids >= maxpos)
            st = lisa_error_set(LISA_ERR_ARG, "prompt has %zu tokens; the model's context is %ld",
                                n_ids, maxpos);
        if (ctx == 0) ctx = (long)n_ids + max_new + 1;
        if (ctx > maxpos) ctx = maxpos;
        if (st == LISA_OK && (long)n_ids >= ctx)
            st = lisa_error_set(LISA_ERR_ARG, "prompt has %zu tokens; --ctx is %ld", n_ids, ctx);
    }
    if (st == LISA_OK) st = lisa_llama_state_init(&state, &model, 1, (int)ctx, 512, 1);
    if (st == LISA_OK) state_ok = 1;
    if (st == LISA_OK) {
        lisa_gen_request req = {.prompt = ids, .n_prompt = (int)n_ids, .max_new_tokens = (int)max_new};
        st = lisa_generate_greedy(&model, &state, &req, 1, model.cfg.eos_token_id, &res);
        char warning[sizeof state.warning];
        if (lisa_llama_warning_take(&state, warning, sizeof warning))
            fprintf(stderr, "lisa: warning: %s\n", warning);
        if (st == LISA_OK && res.status != LISA_OK)
            st = lisa_error_set(res.status, "%s", res.error);
    }
    if (st == LISA_OK) {
        int n_text = res.n_tokens;
        if (n_text > 0 && res.stop == LISA_STOP_EOS) n_text--;
        st = lisa_tokenizer_decode(tok, res.tokens, (size_t)n_text, &text);
    }
    if (st != LISA_OK) {
        fprintf(stderr, "lisa generate: %s: %s\n", lisa_status_str(st), lisa_error_get());
        goto out;
    }
    if (json) {
        printf("{\"prompt_ids\": ");
        cli_json_ids(stdout, ids, n_ids);
        printf(", \"output_ids\": ");
        cli_json_ids(stdout, res.tokens, (size_t)res.n_tokens);
        printf(", \"text\": ");
        cli_json_string(stdout, text);
        printf(", \"stop\": \"%s\"}\n", stop_name(res.stop));
    } else {
        printf("%s\n", text);
    }
    rc = 0;
out:
    free(text);
    free(ids);
    lisa_gen_result_free(&res);
    if (state_ok) lisa_llama_state_free(&state);
    if (model_ok) lisa_llama_model_free(&model);
    lisa_tokenizer_free(tok);
    lisa_backend_free(be);
    return rc;
}
