/* fuzz-config.c: libFuzzer harness for a model directory's config.json as
 * the loader reads it: the LLaMA hyper-parameters (shard/llama-config.h),
 * CLIP's "vision_config" (shard/clip.h), SAM's "sam_config" head counts
 * (shard/sam.h) and LLaVA's mm_projector_type / mm_vision_select_layer (as
 * coordinator/engine/vision.c reads them). The loader reads no other JSON
 * file of the directory except added_tokens.json (fuzz-added-tokens.c) and
 * the index (fuzz-st-index.c).
 *
 * Invariants checked: each parse fails with a message or gives a
 * configuration its contract promises: positive sizes, hidden divisible by
 * the heads and heads by the KV heads, head_dim = hidden / heads, finite
 * positive eps and theta; CLIP's patch no larger than its image; the
 * projector kind one of the two known.
 *
 * Deliberately not here: the tensors these sizes must match (model load). */
#include <math.h>
#include <string.h>

#include <cJSON.h>

#include "clip.h"
#include "fuzz-util.h"
#include "llama-config.h"
#include "sam.h"

static void fuzz_llama(const char *text, size_t size) {
    lisa_llama_config c;
    fuzz_error_clear();
    lisa_status s = lisa_llama_config_parse(&c, text, size);
    FUZZ_CHECK_ERROR(s);
    if (s != LISA_OK) return;
    FUZZ_CHECK(c.hidden_size > 0 && c.intermediate_size > 0 && c.num_hidden_layers > 0 &&
                   c.num_attention_heads > 0 && c.num_key_value_heads > 0 && c.vocab_size > 0 &&
                   c.max_position_embeddings > 0,
               "a non-positive size accepted");
    FUZZ_CHECK(c.hidden_size % c.num_attention_heads == 0 &&
                   c.num_attention_heads % c.num_key_value_heads == 0,
               "heads do not divide");
    FUZZ_CHECK(c.head_dim * c.num_attention_heads == c.hidden_size, "head_dim is not C / H");
    FUZZ_CHECK(isfinite(c.rms_norm_eps) && c.rms_norm_eps > 0, "rms_norm_eps not finite positive");
    FUZZ_CHECK(isfinite(c.rope_theta) && c.rope_theta > 0, "rope_theta not finite positive");
    FUZZ_CHECK(c.tie_word_embeddings == 0 || c.tie_word_embeddings == 1, "tie not a boolean");
}

static void fuzz_clip(const char *text, size_t size) {
    lisa_clip_config c;
    fuzz_error_clear();
    lisa_status s = lisa_clip_config_parse(&c, text, size);
    FUZZ_CHECK_ERROR(s);
    if (s != LISA_OK) return;
    FUZZ_CHECK(c.hidden_size > 0 && c.intermediate_size > 0 && c.num_hidden_layers > 0 &&
                   c.num_attention_heads > 0 && c.image_size > 0 && c.patch_size > 0 &&
                   c.num_channels > 0,
               "a non-positive CLIP size accepted");
    FUZZ_CHECK(c.head_dim * c.num_attention_heads == c.hidden_size, "CLIP head_dim is not C / H");
    FUZZ_CHECK(c.patch_size <= c.image_size, "CLIP patch larger than the image");
    FUZZ_CHECK(isfinite(c.layer_norm_eps) && c.layer_norm_eps > 0, "CLIP eps not finite positive");
}

/* vision.c's reading of the SAM and LLaVA fields. */
static void fuzz_vision(const char *text, size_t size) {
    lisa_sam_options o = {"base.", 0, 0};
    fuzz_error_clear();
    lisa_status s = lisa_sam_options_parse(&o, text, size);
    FUZZ_CHECK_ERROR(s);
    FUZZ_CHECK(o.prefix && !strcmp(o.prefix, "base."), "SAM options lost their prefix");
    cJSON *root = cJSON_ParseWithLength(text, size);
    FUZZ_CHECK(root != NULL || s != LISA_OK, "SAM options accepted text cJSON refuses");
    /* valid JSON is refused only for its sam_config head counts */
    if (root && s != LISA_OK)
        FUZZ_CHECK(strstr(lisa_error_get(), "sam_config.") != NULL,
                   "SAM options refused valid JSON for another reason");
    if (s == LISA_OK)
        FUZZ_CHECK(o.encoder_heads >= 0 && o.decoder_heads >= 0, "negative SAM heads accepted");
    const cJSON *pt = cJSON_GetObjectItem(root, "mm_projector_type");
    if (cJSON_IsString(pt)) {
        lisa_projector_kind k = LISA_PROJECTOR_LINEAR;
        fuzz_error_clear();
        s = lisa_projector_kind_parse(pt->valuestring, &k);
        FUZZ_CHECK_ERROR(s);
        if (s == LISA_OK)
            FUZZ_CHECK(k == LISA_PROJECTOR_LINEAR || k == LISA_PROJECTOR_MLP2X_GELU,
                       "unknown projector kind");
    }
    cJSON_Delete(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* The parsers take a length; the copy without a NUL after it lets ASan
     * see any read past it. */
    char *text = malloc(size ? size : 1);
    FUZZ_CHECK(text != NULL, "out of memory");
    if (size) memcpy(text, data, size);
    fuzz_llama(text, size);
    fuzz_clip(text, size);
    fuzz_vision(text, size);
    free(text);
    return 0;
}
