/* prompt.c: the llava_v1 prompt and tokenizer_image_token (see prompt.h). */
#include "prompt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const LISA_PROMPT_SYSTEM_LLAVA_V1 =
    "A chat between a curious human and an artificial intelligence assistant. The assistant "
    "gives helpful, detailed, and polite answers to the human's questions.";

char *lisa_prompt_text(const char *user, const char *answer) {
    const char *head = " USER: <im_start><image><im_end>\n";
    size_t n = strlen(LISA_PROMPT_SYSTEM_LLAVA_V1) + strlen(head) + strlen(user) +
               (answer ? strlen(answer) : 0) + 32;
    char *s = malloc(n);
    if (!s) return NULL;
    if (answer && *answer)
        snprintf(s, n, "%s%s%s ASSISTANT: %s</s>", LISA_PROMPT_SYSTEM_LLAVA_V1, head, user, answer);
    else
        snprintf(s, n, "%s%s%s ASSISTANT:", LISA_PROMPT_SYSTEM_LLAVA_V1, head, user);
    return s;
}

lisa_status lisa_prompt_tokenize(const lisa_tokenizer *tok, const char *user, const char *answer,
                                 int32_t **ids, size_t *n_ids, size_t *image_pos) {
    *ids = NULL;
    *n_ids = 0;
    if (!user || !*user) return lisa_error_set(LISA_ERR_ARG, "empty prompt");
    if (lisa_tokenizer_piece_id(tok, "<im_start>") < 0 || lisa_tokenizer_piece_id(tok, "<im_end>") < 0)
        return lisa_error_set(LISA_ERR_ARG,
                              "tokenizer lacks LISA's added tokens <im_start>/<im_end> "
                              "(added_tokens.json)");
    char *text = lisa_prompt_text(user, answer);
    if (!text) return lisa_error_set(LISA_ERR_NOMEM, "prompt: out of memory");
    const char *mark = strstr(text, "<image>");
    LISA_ASSERT(mark != NULL);
    size_t cut = (size_t)(mark - text);
    int32_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    lisa_status st = lisa_tokenizer_encode(tok, text, cut, 1, &a, &na);
    if (st == LISA_OK) {
        const char *rest = mark + strlen("<image>");
        st = lisa_tokenizer_encode(tok, rest, strlen(rest), 1, &b, &nb);
    }
    if (st == LISA_OK) {
        /* chunk 1 keeps its BOS, chunk 2 loses it */
        size_t skip = nb > 0 ? 1 : 0;
        int32_t *out = malloc((na + 1 + nb - skip) * sizeof *out);
        if (!out) {
            st = lisa_error_set(LISA_ERR_NOMEM, "prompt: out of memory");
        } else {
            memcpy(out, a, na * sizeof *out);
            out[na] = LISA_IMAGE_TOKEN;
            memcpy(out + na + 1, b + skip, (nb - skip) * sizeof *out);
            *ids = out;
            *n_ids = na + 1 + nb - skip;
            *image_pos = na;
        }
    }
    free(a);
    free(b);
    free(text);
    return st;
}

void lisa_prompt_rows_free(lisa_prompt_rows *r) {
    free(r->ids);
    free(r->tf_rows);
    memset(r, 0, sizeof *r);
}

lisa_status lisa_prompt_rows_make(lisa_prompt_rows *r, const lisa_tokenizer *tok, const char *prompt,
                                  const char *answer, int n_patches, int max_ctx, int32_t seg_id,
                                  int max_seg) {
    memset(r, 0, sizeof *r);
    LISA_TRY(lisa_prompt_tokenize(tok, prompt, answer, &r->ids, &r->n_ids, &r->image_pos));
    r->L = (int)r->n_ids - 1 + n_patches;
    if (r->L >= max_ctx) {
        int L = r->L;
        lisa_prompt_rows_free(r);
        return lisa_error_set(LISA_ERR_ARG, "prompt too long: %d tokens with the %d image tokens; "
                              "the context holds %d", L, n_patches, max_ctx);
    }
    if (!answer) return LISA_OK;
    int n = 0;
    for (size_t j = r->image_pos + 1; j < r->n_ids; j++) n += r->ids[j] == seg_id;
    if (n > max_seg) {
        lisa_prompt_rows_free(r);
        return lisa_error_set(LISA_ERR_ARG, "more than %d [SEG] tokens in one answer", max_seg);
    }
    r->tf_rows = malloc((size_t)(n ? n : 1) * sizeof *r->tf_rows);
    if (!r->tf_rows) {
        lisa_prompt_rows_free(r);
        return lisa_error_set(LISA_ERR_NOMEM, "out of memory");
    }
    /* expanded position of id j, minus one: the row whose output predicts it */
    for (size_t j = r->image_pos + 1; j < r->n_ids; j++)
        if (r->ids[j] == seg_id) r->tf_rows[r->n_seg++] = (int)j - 1 + n_patches - 1;
    return LISA_OK;
}

lisa_status lisa_prompt_tokenizer_load(const char *dir, lisa_tokenizer **tok, int32_t *seg_id) {
    size_t n = strlen(dir) + sizeof "/added_tokens.json";
    char *model = malloc(n), *added = malloc(n);
    lisa_status st = model && added ? LISA_OK : lisa_error_set(LISA_ERR_NOMEM, "out of memory");
    if (st == LISA_OK) {
        snprintf(model, n, "%s/tokenizer.model", dir);
        snprintf(added, n, "%s/added_tokens.json", dir);
        st = lisa_tokenizer_load(tok, model, added);
    }
    if (st == LISA_OK) {
        *seg_id = lisa_tokenizer_piece_id(*tok, "[SEG]");
        if (*seg_id < 0) {
            lisa_tokenizer_free(*tok);
            *tok = NULL;
            st = lisa_error_set(LISA_ERR_MISSING, "%s has no [SEG] token", added);
        }
    }
    free(model);
    free(added);
    return st;
}
