/* fuzz-added-tokens.c: libFuzzer harness for added_tokens.json (LISA's
 * [SEG], <im_start>, <im_end>: coordinator/request/tokenizer.h), loaded with
 * a small fixed SentencePiece model (fuzz_spm_build) and then used.
 *
 * Invariants checked: a load fails with a message or gives a tokenizer
 * whose vocabulary covers every added id, each added token's text maps to
 * its id and back, and which passes fuzz-tokenizer.c's checks (every id
 * decodes, texts encode in range).
 *
 * Deliberately not here: the SentencePiece model (fuzz-tokenizer.c). */
#include <string.h>

#include <cJSON.h>

#include "fuzz-util.h"
#include "tokenizer.h"

/* Larger vocabularies are skipped: walking every id of a 16M-id table
 * (the parser's ceiling) takes the fuzzer seconds per input. */
#define FUZZ_MAX_VOCAB (1 << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static uint8_t *model;
    static size_t model_len;
    if (!model) fuzz_spm_build(&model, &model_len);
    lisa_tokenizer *t = NULL;
    fuzz_error_clear();
    lisa_status st = lisa_tokenizer_load_memory(&t, "fuzz/tokenizer.model", model, model_len,
                                                "fuzz/added_tokens.json", (const char *)data, size);
    FUZZ_CHECK_ERROR(st);
    if (st != LISA_OK) {
        FUZZ_CHECK(t == NULL, "a failed load returned a tokenizer");
        return 0;
    }
    cJSON *root = cJSON_ParseWithLength((const char *)data, size);
    FUZZ_CHECK(cJSON_IsObject(root), "a non-object accepted");
    const cJSON *it;
    cJSON_ArrayForEach(it, root) {
        FUZZ_CHECK(it->valuedouble < lisa_tokenizer_n_vocab(t), "added id outside the vocabulary");
        int32_t id = lisa_tokenizer_piece_id(t, it->string);
        FUZZ_CHECK(id >= 0 && lisa_tokenizer_piece(t, id) && !strcmp(lisa_tokenizer_piece(t, id), it->string),
                   "added token does not map to its text");
    }
    cJSON_Delete(root);
    if (lisa_tokenizer_n_vocab(t) <= FUZZ_MAX_VOCAB) fuzz_tokenizer_check(t);
    lisa_tokenizer_free(t);
    return 0;
}
