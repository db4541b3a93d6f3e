/* fuzz-st-index.c: libFuzzer harness for model.safetensors.index.json, the
 * sharded checkpoint's index (shard/safetensors.h), given as text with
 * lisa_safetensors_open_index_text. Its shards are three small files this
 * harness writes once into a temporary directory, named as HF names them
 * (model-0000N-of-00003.safetensors, the tensors of FUZZ_SHARDS).
 *
 * Invariants checked: an open either fails with a message or every tensor
 * the weight_map names is found in the shard the map names, within that
 * shard's tensors, with the bytes of its shape; a shard name that is not a
 * plain file name ("..", "/") never opens; names are sorted and unique.
 *
 * Deliberately not here: the shards' own headers (fuzz-safetensors.c). */
#include <stdio.h>
#include <string.h>

#include "fuzz-util.h"
#include "safetensors.h"

static const char *const k_shard_names[3] = {"model-00001-of-00003.safetensors",
                                             "model-00002-of-00003.safetensors",
                                             "model-00003-of-00003.safetensors"};
static const char *const k_shard0[] = {"model.embed_tokens.weight", "model.norm.weight"};
static const char *const k_shard1[] = {"model.layers.0.self_attn.q_proj.weight"};
static const char *const k_shard2[] = {"lm_head.weight", "model.layers.0.mlp.up_proj.weight",
                                       "text_hidden_fcs.0.0.bias"};

static const char *fuzz_index_dir(void) {
    static int ready;
    const char *dir = fuzz_tmp_dir();
    if (!ready) {
        const char *const *tensors[3] = {k_shard0, k_shard1, k_shard2};
        const int counts[3] = {2, 1, 3};
        for (int i = 0; i < 3; i++) {
            char path[700];
            snprintf(path, sizeof path, "%s/%s", dir, k_shard_names[i]);
            fuzz_safetensors_write(path, tensors[i], counts[i]);
        }
        ready = 1;
    }
    return dir;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char index_path[700];
    snprintf(index_path, sizeof index_path, "%s/model.safetensors.index.json", fuzz_index_dir());
    lisa_safetensors *st = NULL;
    fuzz_error_clear();
    lisa_status s = lisa_safetensors_open_index_text(&st, index_path, (const char *)data, size);
    FUZZ_CHECK_ERROR(s);
    if (s != LISA_OK) {
        FUZZ_CHECK(st == NULL, "a failed open returned a checkpoint");
        return 0;
    }
    size_t n = lisa_safetensors_count(st);
    FUZZ_CHECK(n <= 6, "more tensors than the shards hold");
    for (size_t i = 0; i < n; i++) {
        const lisa_st_tensor *t = lisa_safetensors_at(st, i);
        FUZZ_CHECK(t->file_index >= 0 && t->file_index < 3, "file index out of range");
        FUZZ_CHECK(t->ndim == 1 && t->nbytes == (size_t)t->shape[0] * 4, "shape differs from the shard's");
        fuzz_touch(t->data, t->nbytes);
        if (i > 0)
            FUZZ_CHECK(strcmp(lisa_safetensors_at(st, i - 1)->name, t->name) < 0,
                       "names not sorted and unique");
        FUZZ_CHECK(lisa_safetensors_find(st, t->name) == t, "find() misses a tensor");
    }
    lisa_safetensors_close(st);
    return 0;
}
