/* llama-config.c: reads a HF LLaMA config.json (see llama-config.h).
 *
 * Parses with cJSON, takes the fields the decoder needs with their HF
 * LlamaConfig defaults, checks types (an integer field must be an integral
 * JSON number in int range, a float field a number, tie_word_embeddings a
 * boolean) and consistency, and reports the offending key by name. A JSON
 * null counts as absent, as HF writes e.g. "bos_token_id": null.
 * eos_token_id may be an int or a list of ints (the first is taken).
 *
 * Rejected as LISA_ERR_UNSUPPORTED rather than silently misread: a non-null
 * "rope_scaling" (LLaMA 3 style frequency scaling) and an explicit
 * "head_dim" that differs from hidden_size / num_attention_heads.
 *
 * Deliberately not here: other architectures' keys (model_type is not
 * checked), quantization configs, generation_config.json. */
#include "llama-config.h"

#include "config-file.h"

#include <cJSON.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* A config.json larger than this is not a config. */

/* The item for key, or NULL when absent or JSON null. */
static const cJSON *cfg_item(const cJSON *root, const char *key) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
    return cJSON_IsNull(it) ? NULL : it;
}

static const char *cfg_type_name(const cJSON *it) {
    if (cJSON_IsString(it)) return "a string";
    if (cJSON_IsBool(it)) return "a boolean";
    if (cJSON_IsArray(it)) return "an array";
    if (cJSON_IsObject(it)) return "an object";
    if (cJSON_IsNumber(it)) return "a non-integer number";
    return "an unexpected value";
}

/* Converts it to an int; LISA_ERR_FORMAT naming key when it is not an
 * integral number in int range. */
static lisa_status cfg_as_int(const cJSON *it, const char *key, int *out) {
    if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) ||
        it->valuedouble < (double)INT_MIN || it->valuedouble > (double)INT_MAX)
        return lisa_error_set(LISA_ERR_FORMAT,
                              "config.json: '%s' must be an integer, got %s", key,
                              cJSON_IsNumber(it) ? "a non-integer or out-of-range number"
                                                 : cfg_type_name(it));
    *out = (int)it->valuedouble;
    return LISA_OK;
}

/* Reads an int key: required keys missing are LISA_ERR_FORMAT; optional
 * ones keep *out (the default) when missing. */
static lisa_status cfg_int(const cJSON *root, const char *key, bool required, int *out) {
    const cJSON *it = cfg_item(root, key);
    if (!it) {
        if (required)
            return lisa_error_set(LISA_ERR_FORMAT, "config.json: required key '%s' missing", key);
        return LISA_OK;
    }
    return cfg_as_int(it, key, out);
}

/* Reads an optional float key; *out keeps its default when missing. */
static lisa_status cfg_float(const cJSON *root, const char *key, float *out) {
    const cJSON *it = cfg_item(root, key);
    if (!it) return LISA_OK;
    if (!cJSON_IsNumber(it))
        return lisa_error_set(LISA_ERR_FORMAT, "config.json: '%s' must be a number, got %s", key,
                              cfg_type_name(it));
    /* beyond FLT_MAX the float would be inf (e.g. a rope_theta of 1e39) */
    if (!(fabs(it->valuedouble) <= FLT_MAX))
        return lisa_error_set(LISA_ERR_FORMAT, "config.json: '%s' %g is out of float range", key,
                              it->valuedouble);
    *out = (float)it->valuedouble;
    return LISA_OK;
}

/* Reads an optional boolean key as 0/1; *out keeps its default when missing. */
static lisa_status cfg_bool(const cJSON *root, const char *key, int *out) {
    const cJSON *it = cfg_item(root, key);
    if (!it) return LISA_OK;
    if (!cJSON_IsBool(it))
        return lisa_error_set(LISA_ERR_FORMAT, "config.json: '%s' must be a boolean, got %s",
                              key, cfg_type_name(it));
    *out = cJSON_IsTrue(it) ? 1 : 0;
    return LISA_OK;
}

/* eos_token_id: an int or a non-empty list of ints (the first is taken). */
static lisa_status cfg_eos(const cJSON *root, int *out) {
    const cJSON *it = cfg_item(root, "eos_token_id");
    if (!it) return LISA_OK;
    if (!cJSON_IsArray(it)) return cfg_as_int(it, "eos_token_id", out);
    if (cJSON_GetArraySize(it) == 0)
        return lisa_error_set(LISA_ERR_FORMAT, "config.json: 'eos_token_id' is an empty list");
    const cJSON *el;
    int id = 0;
    cJSON_ArrayForEach(el, it) LISA_TRY(cfg_as_int(el, "eos_token_id", &id));
    return cfg_as_int(cJSON_GetArrayItem(it, 0), "eos_token_id", out);
}

static lisa_status cfg_positive(const char *key, double v) {
    if (!(v > 0))
        return lisa_error_set(LISA_ERR_FORMAT, "config.json: '%s' must be positive, got %g", key,
                              v);
    return LISA_OK;
}

static lisa_status cfg_read(lisa_llama_config *cfg, const cJSON *root) {
    LISA_TRY(cfg_int(root, "hidden_size", true, &cfg->hidden_size));
    LISA_TRY(cfg_int(root, "intermediate_size", true, &cfg->intermediate_size));
    LISA_TRY(cfg_int(root, "num_hidden_layers", true, &cfg->num_hidden_layers));
    LISA_TRY(cfg_int(root, "num_attention_heads", true, &cfg->num_attention_heads));
    LISA_TRY(cfg_int(root, "vocab_size", true, &cfg->vocab_size));
    cfg->num_key_value_heads = cfg->num_attention_heads;
    LISA_TRY(cfg_int(root, "num_key_value_heads", false, &cfg->num_key_value_heads));
    LISA_TRY(cfg_int(root, "max_position_embeddings", false, &cfg->max_position_embeddings));
    LISA_TRY(cfg_float(root, "rms_norm_eps", &cfg->rms_norm_eps));
    LISA_TRY(cfg_float(root, "rope_theta", &cfg->rope_theta));
    LISA_TRY(cfg_bool(root, "tie_word_embeddings", &cfg->tie_word_embeddings));
    LISA_TRY(cfg_int(root, "bos_token_id", false, &cfg->bos_token_id));
    LISA_TRY(cfg_eos(root, &cfg->eos_token_id));

    LISA_TRY(cfg_positive("hidden_size", cfg->hidden_size));
    LISA_TRY(cfg_positive("intermediate_size", cfg->intermediate_size));
    LISA_TRY(cfg_positive("num_hidden_layers", cfg->num_hidden_layers));
    LISA_TRY(cfg_positive("num_attention_heads", cfg->num_attention_heads));
    LISA_TRY(cfg_positive("num_key_value_heads", cfg->num_key_value_heads));
    LISA_TRY(cfg_positive("vocab_size", cfg->vocab_size));
    LISA_TRY(cfg_positive("max_position_embeddings", cfg->max_position_embeddings));
    LISA_TRY(cfg_positive("rms_norm_eps", cfg->rms_norm_eps));
    LISA_TRY(cfg_positive("rope_theta", cfg->rope_theta));
    if (cfg->hidden_size % cfg->num_attention_heads != 0)
        return lisa_error_set(LISA_ERR_FORMAT,
                              "config.json: 'hidden_size' %d is not divisible by "
                              "'num_attention_heads' %d",
                              cfg->hidden_size, cfg->num_attention_heads);
    if (cfg->num_attention_heads % cfg->num_key_value_heads != 0)
        return lisa_error_set(LISA_ERR_FORMAT,
                              "config.json: 'num_attention_heads' %d is not divisible by "
                              "'num_key_value_heads' %d",
                              cfg->num_attention_heads, cfg->num_key_value_heads);
    cfg->head_dim = cfg->hidden_size / cfg->num_attention_heads;

    int head_dim = cfg->head_dim;
    LISA_TRY(cfg_int(root, "head_dim", false, &head_dim));
    if (head_dim != cfg->head_dim)
        return lisa_error_set(LISA_ERR_UNSUPPORTED,
                              "config.json: 'head_dim' %d differs from hidden_size / "
                              "num_attention_heads = %d, which this build does not support",
                              head_dim, cfg->head_dim);
    if (cfg_item(root, "rope_scaling"))
        return lisa_error_set(LISA_ERR_UNSUPPORTED,
                              "config.json: 'rope_scaling' is set; this build supports plain "
                              "RoPE only");
    return LISA_OK;
}

lisa_status lisa_llama_config_parse(lisa_llama_config *cfg, const char *json, size_t len) {
    memset(cfg, 0, sizeof *cfg);
    cfg->max_position_embeddings = 2048;
    cfg->rms_norm_eps = 1e-6f;
    cfg->rope_theta = 10000.0f;
    cfg->tie_word_embeddings = 0;
    cfg->bos_token_id = 1;
    cfg->eos_token_id = 2;

    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) return lisa_error_set(LISA_ERR_FORMAT, "config.json: not valid JSON");
    lisa_status s;
    if (!cJSON_IsObject(root))
        s = lisa_error_set(LISA_ERR_FORMAT, "config.json: not a JSON object");
    else
        s = cfg_read(cfg, root);
    cJSON_Delete(root);
    return s;
}

lisa_status lisa_llama_config_load(lisa_llama_config *cfg, const char *path) {
    char *text;
    size_t n;
    LISA_TRY(lisa_config_file_read(path, &text, &n));
    lisa_status s = lisa_llama_config_parse(cfg, text, n);
    free(text);
    return s;
}
