/* test-llama-config.c: config.json parsing, defaults and validation.
 *
 * Configs are literal JSON strings shaped like HF LlamaConfig.to_json output;
 * each malformed one must give LISA_ERR_FORMAT naming the key. One config is
 * written to a temp folder to check loading by file and by directory.
 * Deliberately not here: the fixture checkpoints' own config.json (the
 * model tests read those). */
#include "llama-config.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

/* As written by transformers' LlamaConfig(...).to_json_string(). */
static const char k_full[] =
    "{\n"
    "  \"architectures\": [\"LlamaForCausalLM\"],\n"
    "  \"attention_bias\": false,\n"
    "  \"attention_dropout\": 0.0,\n"
    "  \"bos_token_id\": 1,\n"
    "  \"eos_token_id\": 2,\n"
    "  \"head_dim\": 128,\n"
    "  \"hidden_act\": \"silu\",\n"
    "  \"hidden_size\": 4096,\n"
    "  \"initializer_range\": 0.02,\n"
    "  \"intermediate_size\": 11008,\n"
    "  \"max_position_embeddings\": 4096,\n"
    "  \"mlp_bias\": false,\n"
    "  \"model_type\": \"llama\",\n"
    "  \"num_attention_heads\": 32,\n"
    "  \"num_hidden_layers\": 32,\n"
    "  \"num_key_value_heads\": 32,\n"
    "  \"pretraining_tp\": 1,\n"
    "  \"rms_norm_eps\": 1e-05,\n"
    "  \"rope_scaling\": null,\n"
    "  \"rope_theta\": 10000.0,\n"
    "  \"tie_word_embeddings\": false,\n"
    "  \"torch_dtype\": \"float16\",\n"
    "  \"transformers_version\": \"4.44.0\",\n"
    "  \"use_cache\": true,\n"
    "  \"vocab_size\": 32000\n"
    "}\n";

static lisa_status parse(lisa_llama_config *cfg, const char *json) {
    return lisa_llama_config_parse(cfg, json, strlen(json));
}

static void test_full(void) {
    lisa_llama_config c;
    lisa_status s = parse(&c, k_full);
    CHECK(s == LISA_OK, "full config: %s", lisa_error_get());
    CHECK(c.hidden_size == 4096, "hidden %d", c.hidden_size);
    CHECK(c.intermediate_size == 11008, "intermediate %d", c.intermediate_size);
    CHECK(c.num_hidden_layers == 32, "layers %d", c.num_hidden_layers);
    CHECK(c.num_attention_heads == 32, "heads %d", c.num_attention_heads);
    CHECK(c.num_key_value_heads == 32, "kv heads %d", c.num_key_value_heads);
    CHECK(c.head_dim == 128, "head_dim %d", c.head_dim);
    CHECK(c.vocab_size == 32000, "vocab %d", c.vocab_size);
    CHECK(c.max_position_embeddings == 4096, "max pos %d", c.max_position_embeddings);
    CHECK(c.rms_norm_eps == 1e-5f, "eps %g", c.rms_norm_eps);
    CHECK(c.rope_theta == 10000.0f, "theta %g", c.rope_theta);
    CHECK(c.tie_word_embeddings == 0, "tie %d", c.tie_word_embeddings);
    CHECK(c.bos_token_id == 1 && c.eos_token_id == 2, "bos %d eos %d", c.bos_token_id,
          c.eos_token_id);
}

static void test_defaults_and_gqa(void) {
    lisa_llama_config c;
    lisa_status s = parse(&c, "{\"hidden_size\": 64, \"intermediate_size\": 172, "
                              "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
                              "\"vocab_size\": 100}");
    CHECK(s == LISA_OK, "minimal config: %s", lisa_error_get());
    CHECK(c.num_key_value_heads == 4, "kv heads default %d", c.num_key_value_heads);
    CHECK(c.head_dim == 16, "head_dim %d", c.head_dim);
    CHECK(c.rope_theta == 10000.0f, "theta default %g", c.rope_theta);
    CHECK(c.rms_norm_eps == 1e-6f, "eps default %g", c.rms_norm_eps);
    CHECK(c.max_position_embeddings == 2048, "max pos default %d", c.max_position_embeddings);
    CHECK(c.tie_word_embeddings == 0, "tie default %d", c.tie_word_embeddings);
    CHECK(c.bos_token_id == 1 && c.eos_token_id == 2, "token defaults %d %d", c.bos_token_id,
          c.eos_token_id);

    s = parse(&c, "{\"hidden_size\": 64, \"intermediate_size\": 172, "
                  "\"num_hidden_layers\": 2, \"num_attention_heads\": 8, "
                  "\"num_key_value_heads\": 2, \"vocab_size\": 100, \"rope_theta\": 500000.0, "
                  "\"tie_word_embeddings\": true, \"bos_token_id\": 128000, "
                  "\"eos_token_id\": [128001, 128008, 128009], \"head_dim\": 8, "
                  "\"pad_token_id\": null}");
    CHECK(s == LISA_OK, "gqa config: %s", lisa_error_get());
    CHECK(c.num_attention_heads == 8 && c.num_key_value_heads == 2, "gqa heads %d/%d",
          c.num_attention_heads, c.num_key_value_heads);
    CHECK(c.head_dim == 8, "gqa head_dim %d", c.head_dim);
    CHECK(c.rope_theta == 500000.0f, "theta %g", c.rope_theta);
    CHECK(c.tie_word_embeddings == 1, "tie %d", c.tie_word_embeddings);
    CHECK(c.bos_token_id == 128000, "bos %d", c.bos_token_id);
    CHECK(c.eos_token_id == 128001, "eos from list %d", c.eos_token_id);

    s = parse(&c, "{\"hidden_size\": 64, \"intermediate_size\": 172, "
                  "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
                  "\"vocab_size\": 100, \"bos_token_id\": null, \"eos_token_id\": null}");
    CHECK(s == LISA_OK && c.bos_token_id == 1 && c.eos_token_id == 2,
          "null token ids take defaults: %s", lisa_error_get());
}

/* Parsing json must fail with status want and a message containing token. */
static void expect_fail(const char *json, lisa_status want, const char *token, const char *what) {
    lisa_llama_config c;
    lisa_status s = parse(&c, json);
    CHECK(s == want, "%s: status %s, want %s", what, lisa_status_str(s), lisa_status_str(want));
    CHECK(strstr(lisa_error_get(), token) != NULL, "%s: message '%s' lacks '%s'", what,
          lisa_error_get(), token);
}

#define BASE_REST "\"intermediate_size\": 172, \"num_hidden_layers\": 2, \"vocab_size\": 100"

static void test_malformed(void) {
    expect_fail("hidden_size = 4096", LISA_ERR_FORMAT, "not valid JSON", "not JSON");
    expect_fail("", LISA_ERR_FORMAT, "not valid JSON", "empty text");
    expect_fail("{\"hidden_size\": 64,", LISA_ERR_FORMAT, "not valid JSON", "truncated JSON");
    expect_fail("[1, 2]", LISA_ERR_FORMAT, "not a JSON object", "array");
    expect_fail("{\"num_attention_heads\": 4, " BASE_REST "}", LISA_ERR_FORMAT, "'hidden_size'",
                "missing hidden_size");
    expect_fail("{\"hidden_size\": 64, \"num_attention_heads\": 4, \"intermediate_size\": 172, "
                "\"num_hidden_layers\": 2}",
                LISA_ERR_FORMAT, "'vocab_size'", "missing vocab_size");
    expect_fail("{\"hidden_size\": \"abc\", \"num_attention_heads\": 4, " BASE_REST "}",
                LISA_ERR_FORMAT, "'hidden_size' must be an integer, got a string",
                "string hidden_size");
    expect_fail("{\"hidden_size\": 64.5, \"num_attention_heads\": 4, " BASE_REST "}",
                LISA_ERR_FORMAT, "'hidden_size'", "fractional hidden_size");
    expect_fail("{\"hidden_size\": 1e12, \"num_attention_heads\": 4, " BASE_REST "}",
                LISA_ERR_FORMAT, "'hidden_size'", "out-of-range hidden_size");
    expect_fail("{\"hidden_size\": 64, \"num_attention_heads\": [4], " BASE_REST "}",
                LISA_ERR_FORMAT, "'num_attention_heads'", "array heads");
    expect_fail("{\"hidden_size\": 64, \"num_attention_heads\": 4, \"rope_theta\": \"1e4\", "
                BASE_REST "}",
                LISA_ERR_FORMAT, "'rope_theta'", "string rope_theta");
    expect_fail("{\"hidden_size\": 64, \"num_attention_heads\": 4, \"rms_norm_eps\": true, "
                BASE_REST "}",
                LISA_ERR_FORMAT, "'rms_norm_eps'", "bool eps");
    expect_fail("{\"hidden_size\": 64, \"num_attention_heads\": 4, \"tie_word_embeddings\": 1, "
                BASE_REST "}",
                LISA_ERR_FORMAT, "'tie_word_embeddings'", "int tie");
    expect_fail("{\"hidden_size\": 64, \"num_attention_heads\": 4, \"eos_token_id\": [], "
                BASE_REST "}",
                LISA_ERR_FORMAT, "'eos_token_id'", "empty eos list");
    expect_fail("{\"hidden_size\": 64, \"num_attention_heads\": 4, \"eos_token_id\": [2, \"x\"], "
                BASE_REST "}",
                LISA_ERR_FORMAT, "'eos_token_id'", "string in eos list");
    expect_fail("{\"hidden_size\": 64, \"num_attention_heads\": 5, " BASE_REST "}",
                LISA_ERR_FORMAT, "'num_attention_heads'", "heads not dividing hidden");
    expect_fail("{\"hidden_size\": 64, \"num_attention_heads\": 8, \"num_key_value_heads\": 3, "
                BASE_REST "}",
                LISA_ERR_FORMAT, "'num_key_value_heads'", "kv heads not dividing heads");
    expect_fail("{\"hidden_size\": -64, \"num_attention_heads\": 4, " BASE_REST "}",
                LISA_ERR_FORMAT, "'hidden_size' must be positive", "negative hidden_size");
    expect_fail("{\"hidden_size\": 64, \"num_attention_heads\": 0, " BASE_REST "}",
                LISA_ERR_FORMAT, "'num_attention_heads' must be positive", "zero heads");
    expect_fail("{\"hidden_size\": 64, \"num_attention_heads\": 4, \"num_key_value_heads\": -2, "
                BASE_REST "}",
                LISA_ERR_FORMAT, "'num_key_value_heads' must be positive", "negative kv heads");
    expect_fail("{\"hidden_size\": 64, \"num_attention_heads\": 4, "
                "\"intermediate_size\": 0, \"num_hidden_layers\": 2, \"vocab_size\": 100}",
                LISA_ERR_FORMAT, "'intermediate_size'", "zero intermediate");
    expect_fail("{\"hidden_size\": 64, \"num_attention_heads\": 4, \"rope_theta\": -1, "
                BASE_REST "}",
                LISA_ERR_FORMAT, "'rope_theta'", "negative rope_theta");
    expect_fail("{\"hidden_size\": 64, \"num_attention_heads\": 4, \"head_dim\": 32, "
                BASE_REST "}",
                LISA_ERR_UNSUPPORTED, "'head_dim'", "head_dim differing from C/H");
    expect_fail("{\"hidden_size\": 64, \"num_attention_heads\": 4, "
                "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0}, " BASE_REST "}",
                LISA_ERR_UNSUPPORTED, "'rope_scaling'", "rope scaling");
}

static void test_load(void) {
    char dir[256];
    snprintf(dir, sizeof dir, "%s/lisa-cfg-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp failed");
        return;
    }
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "write %s", path);
    if (f) {
        fputs(k_full, f);
        fclose(f);
    }
    lisa_llama_config c;
    lisa_status s = lisa_llama_config_load(&c, path);
    CHECK(s == LISA_OK && c.hidden_size == 4096, "load by file: %s", lisa_error_get());
    memset(&c, 0, sizeof c);
    s = lisa_llama_config_load(&c, dir);
    CHECK(s == LISA_OK && c.intermediate_size == 11008, "load by dir: %s", lisa_error_get());
    remove(path);
    s = lisa_llama_config_load(&c, dir);
    CHECK(s == LISA_ERR_IO && strstr(lisa_error_get(), "config.json"),
          "dir without config.json: %s", lisa_error_get());
    rmdir(dir);
    s = lisa_llama_config_load(&c, "/nonexistent/lisa/config.json");
    CHECK(s == LISA_ERR_IO && strstr(lisa_error_get(), "/nonexistent/lisa"),
          "missing file: %s", lisa_error_get());
}

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    test_full();
    test_defaults_and_gqa();
    test_malformed();
    test_load();
    return test_finish("test-llama-config");
}
