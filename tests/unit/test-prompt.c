/* test-prompt.c: LISA prompts (llava_v1 text and tokenizer_image_token ids)
 * against transformers 4.31 (fixtures from tests/reference/gen_prompts.py). */
#include <cJSON.h>

#include "prompt.h"
#include "testutil.h"

int main(int argc, char **argv) {
    const char *fix = argc > 1 ? argv[1] : "tests/fixtures";
    char model[4096], added[4096];
    snprintf(model, sizeof model, "%s/tokenizer/tokenizer.model", fix);
    snprintf(added, sizeof added, "%s/tokenizer/added_tokens.json", fix);
    lisa_tokenizer *tok = NULL;
    CHECK(lisa_tokenizer_load(&tok, model, added) == LISA_OK, "tokenizer: %s", lisa_error_get());
    char *text = test_read_file(test_path(fix, "prompts/cases.json"), NULL);
    CHECK(text != NULL, "prompts/cases.json missing");
    if (!tok || !text) return test_finish("test-prompt");
    cJSON *root = cJSON_Parse(text);
    const cJSON *c;
    int k = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "cases")) {
        const char *user = cJSON_GetObjectItem(c, "user")->valuestring;
        const cJSON *ans = cJSON_GetObjectItem(c, "answer");
        const char *answer = cJSON_IsString(ans) ? ans->valuestring : NULL;
        char *p = lisa_prompt_text(user, answer);
        CHECK(p && !strcmp(p, cJSON_GetObjectItem(c, "prompt")->valuestring), "case %d: prompt text '%s'", k, p);
        free(p);
        int32_t *ids;
        size_t n, pos;
        CHECK(lisa_prompt_tokenize(tok, user, answer, &ids, &n, &pos) == LISA_OK, "tokenize: %s", lisa_error_get());
        const cJSON *want = cJSON_GetObjectItem(c, "ids");
        int same = (int)n == cJSON_GetArraySize(want);
        for (size_t i = 0; same && i < n; i++) same = ids[i] == cJSON_GetArrayItem(want, (int)i)->valueint;
        CHECK(same, "case %d: ids differ from transformers (%zu vs %d)", k, n, cJSON_GetArraySize(want));
        CHECK(ids[pos] == LISA_IMAGE_TOKEN, "case %d: image placeholder at %zu", k, pos);
        free(ids);
        k++;
    }
    CHECK(k >= 9, "%d cases", k);
    int32_t *ids;
    size_t n, pos;
    CHECK(lisa_prompt_tokenize(tok, "", NULL, &ids, &n, &pos) == LISA_ERR_ARG, "empty prompt rejected");
    lisa_tokenizer *plain = NULL;
    CHECK(lisa_tokenizer_load(&plain, model, NULL) == LISA_OK, "plain tokenizer");
    CHECK(lisa_prompt_tokenize(plain, "x", NULL, &ids, &n, &pos) == LISA_ERR_ARG &&
              strstr(lisa_error_get(), "added"), "tokenizer without added tokens rejected");
    lisa_tokenizer_free(plain);
    cJSON_Delete(root);
    free(text);
    lisa_tokenizer_free(tok);
    return test_finish("test-prompt");
}
