/* prompt.h: LISA's prompt, built and tokenized exactly as chat.py and
 * evaluate() do.
 *
 * The llava_v1 conversation (SeparatorStyle.TWO, sep " ", sep2 "</s>"):
 *   SYSTEM " USER: <im_start><image><im_end>\n" P " ASSISTANT:"
 * or, teacher-forced with an answer A (LISA's evaluation uses "[SEG]."):
 *   ... " ASSISTANT: " A "</s>"
 * then tokenizer_image_token: the text is split on "<image>", each chunk is
 * tokenized with BOS by the 4.31 slow tokenizer (added tokens split out,
 * whitespace around them stripped), the BOS of later chunks dropped, and the
 * image placeholder LISA_IMAGE_TOKEN inserted where "<image>" stood.
 *
 * Deliberately not here: the image features themselves (the engine splices
 * them at the placeholder), other conversation templates. */
#ifndef LISA_PROMPT_H
#define LISA_PROMPT_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

#define LISA_IMAGE_TOKEN (-200)

extern const char *const LISA_PROMPT_SYSTEM_LLAVA_V1;

/* The full prompt text for user message P and optional answer (NULL for
 * generation). malloc'd. */
char *lisa_prompt_text(const char *user, const char *answer);

/* Token ids of the prompt, with exactly one LISA_IMAGE_TOKEN; `*image_pos`
 * is its index. `*ids` malloc'd. The tokenizer must have LISA's added tokens
 * (<im_start>, <im_end>, [SEG]) loaded. An empty user message is LISA_ERR_ARG. */
lisa_status lisa_prompt_tokenize(const lisa_tokenizer *tok, const char *user, const char *answer,
                                 int32_t **ids, size_t *n_ids, size_t *image_pos);

/* LISA's tokenizer from a converted model directory: DIR/tokenizer.model
 * with DIR/added_tokens.json, and the id of its [SEG] token (a tokenizer
 * without one is LISA_ERR_MISSING naming the file). */
lisa_status lisa_prompt_tokenizer_load(const char *dir, lisa_tokenizer **tok, int32_t *seg_id);

/* A request's rows for the LLM: its tokenized prompt, the row count with
 * the image placeholder expanded to the N image features, and for a
 * teacher-forced answer the rows whose outputs predict each [SEG] (where
 * LISA's evaluate() takes the [SEG] hidden states). The one-process engine
 * and the cluster's coordinator both admit requests through it, so a
 * request is refused the same way by both. */
typedef struct lisa_prompt_rows {
    int32_t *ids;          /* (n_ids) prompt ids with the placeholder */
    size_t n_ids, image_pos;
    int L;                 /* rows: n_ids - 1 + N */
    int *tf_rows;          /* teacher-forced: (n_seg) row predicting [SEG] j */
    int n_seg;
} lisa_prompt_rows;

/* Fills r for prompt and answer (NULL: generation). Refusals, with the
 * reason as the error message: an empty prompt (LISA_ERR_ARG), L not below
 * max_ctx ("prompt too long: ..."), more than max_seg [SEG]s in the answer.
 * On failure r holds nothing. */
lisa_status lisa_prompt_rows_make(lisa_prompt_rows *r, const lisa_tokenizer *tok, const char *prompt,
                                  const char *answer, int n_patches, int max_ctx, int32_t seg_id,
                                  int max_seg);
void lisa_prompt_rows_free(lisa_prompt_rows *r);

#endif
