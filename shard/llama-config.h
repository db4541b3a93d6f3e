/* llama-config.h: the hyper-parameters of a HF LLaMA checkpoint (config.json).
 *
 * Only the fields the decoder needs are read; unknown keys are ignored.
 * Missing optional keys take HF's LlamaConfig defaults (num_key_value_heads =
 * num_attention_heads, rope_theta = 10000, rms_norm_eps = 1e-6,
 * tie_word_embeddings = false, bos 1, eos 2). Missing required keys
 * (hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
 * vocab_size) and inconsistent values (hidden not divisible by heads, heads not
 * divisible by kv heads, non-positive sizes) are LISA_ERR_FORMAT naming the key. */
#ifndef LISA_LLAMA_CONFIG_H
#define LISA_LLAMA_CONFIG_H

#include <stddef.h>

#include "status.h"

typedef struct lisa_llama_config {
    int hidden_size;             /* C */
    int intermediate_size;       /* I */
    int num_hidden_layers;       /* L */
    int num_attention_heads;     /* H */
    int num_key_value_heads;     /* KVH */
    int head_dim;                /* D = C / H (derived) */
    int vocab_size;              /* V */
    int max_position_embeddings;
    float rms_norm_eps;
    float rope_theta;
    int tie_word_embeddings;
    int bos_token_id;
    int eos_token_id;
} lisa_llama_config;

/* Parses config.json text (len bytes, need not be NUL-terminated). */
lisa_status lisa_llama_config_parse(lisa_llama_config *cfg, const char *json, size_t len);
/* Reads and parses a file (a config.json path, or a directory holding one). */
lisa_status lisa_llama_config_load(lisa_llama_config *cfg, const char *path);

#endif
