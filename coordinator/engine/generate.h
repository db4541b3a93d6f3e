/* generate.h: batched greedy generation over a LLaMA model (all layers in
 * this process).
 *
 * N requests in, N results out, with continuous batching (scheduler.h):
 * up to the state's slot count run at once, a request joins when a slot
 * frees, prompts are prefilled in chunks under the state's token budget
 * beside the running requests' decode tokens, and each decodes one token per
 * step until EOS, its token limit or the end of the context. A request that
 * cannot run (empty prompt, prompt longer than the context) fails alone with
 * a reason; the others proceed.
 *
 * Deliberately not here: tokenization, prompts, image splicing (the caller
 * supplies ids or embeddings), sampling other than greedy. */
#ifndef LISA_GENERATE_H
#define LISA_GENERATE_H

#include <stdint.h>

#include "llama.h"

typedef enum {
    LISA_STOP_NONE = 0,
    LISA_STOP_EOS,      /* emitted the EOS id (included in the output) */
    LISA_STOP_LENGTH,   /* reached max_new_tokens */
    LISA_STOP_CONTEXT,  /* reached the end of the context window */
    LISA_STOP_ERROR     /* failed: see status and error */
} lisa_stop_reason;

/* Greedy generation's stop rule, after token tok made n_tokens generated
 * tokens and len positions: EOS (eos_id < 0: never), then max_new, then
 * the context. One rule for generate, the engine and the cluster. */
lisa_stop_reason lisa_stop_after(int32_t tok, int eos_id, int n_tokens, int max_new, int len,
                                 int max_ctx);

typedef struct lisa_gen_request {
    const int32_t *prompt;  /* (n_prompt) token ids, or NULL when embd is given */
    const float *embd;      /* (n_prompt, C) input embeddings (LISA: text embeddings
                               with the image features spliced in), or NULL */
    int n_prompt;
    int max_new_tokens;
    int want_hidden;        /* record the hidden state that predicted each token */
} lisa_gen_request;

typedef struct lisa_gen_result {
    int32_t *tokens;        /* (n_tokens) generated ids, malloc'd */
    int n_tokens;
    float *hidden;          /* (n_tokens, C) final-norm hidden state of the position
                               whose logits chose tokens[t]; NULL unless wanted */
    lisa_stop_reason stop;
    lisa_status status;
    char error[256];
} lisa_gen_result;

/* Runs every request; results[i] answers reqs[i]. Returns LISA_OK unless the
 * backend itself failed (then every unfinished result carries the error).
 * Per-request problems are reported in the results only. `eos_id` < 0
 * disables EOS stopping. */
lisa_status lisa_generate_greedy(const lisa_llama_model *m, lisa_llama_state *s,
                                 const lisa_gen_request *reqs, int n_req, int eos_id,
                                 lisa_gen_result *results);

void lisa_gen_result_free(lisa_gen_result *r);

#endif
