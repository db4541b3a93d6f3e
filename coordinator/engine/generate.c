/* generate.c: batched greedy generation (see generate.h) on the step
 * scheduler: requests join and leave the running batch between steps, with
 * prefill chunks mixed with other requests' decode tokens under the
 * state's token budget. */
#include "generate.h"

#include <stdlib.h>
#include <string.h>

#include "scheduler.h"

typedef struct {
    int req;       /* index into reqs */
    int len;       /* positions in the cache */
    int cap;       /* allocated entries of tokens/hidden */
} gen_seq;

static void gen_fail(lisa_gen_result *r, lisa_status st, const char *msg) {
    r->status = st;
    r->stop = LISA_STOP_ERROR;
    snprintf(r->error, sizeof r->error, "%s", msg);
}

/* Appends one generated token (and its hidden row) to a result. */
static lisa_status gen_push(lisa_gen_result *r, gen_seq *q, int32_t tok, const float *h, int C) {
    if (r->n_tokens == q->cap) {
        int cap = q->cap ? q->cap * 2 : 64;
        int32_t *t = realloc(r->tokens, (size_t)cap * sizeof *t);
        if (!t) return lisa_error_set(LISA_ERR_NOMEM, "generate: out of memory");
        r->tokens = t;
        if (h) {
            float *hh = realloc(r->hidden, (size_t)cap * (size_t)C * sizeof *hh);
            if (!hh) return lisa_error_set(LISA_ERR_NOMEM, "generate: out of memory");
            r->hidden = hh;
        }
        q->cap = cap;
    }
    if (h) memcpy(r->hidden + (size_t)r->n_tokens * (size_t)C, h, (size_t)C * sizeof(float));
    r->tokens[r->n_tokens++] = tok;
    return LISA_OK;
}

lisa_stop_reason lisa_stop_after(int32_t tok, int eos_id, int n_tokens, int max_new, int len,
                                 int max_ctx) {
    if (eos_id >= 0 && tok == eos_id) return LISA_STOP_EOS;
    if (n_tokens >= max_new) return LISA_STOP_LENGTH;
    if (len >= max_ctx) return LISA_STOP_CONTEXT;
    return LISA_STOP_NONE;
}

/* Records token `tok` chosen for sequence q; returns 1 when q stops. */
static int gen_accept(const lisa_gen_request *req, lisa_gen_result *r, gen_seq *q, int32_t tok,
                      const float *h, int C, int eos_id, int max_ctx, lisa_status *st) {
    *st = gen_push(r, q, tok, req->want_hidden ? h : NULL, C);
    r->stop = lisa_stop_after(tok, eos_id, r->n_tokens, req->max_new_tokens, q->len, max_ctx);
    return r->stop != LISA_STOP_NONE;
}

/* Checks a request; 0 when it cannot run (its result then says why). */
static int gen_admissible(const lisa_llama_model *m, const lisa_llama_state *s,
                          const lisa_gen_request *rq, lisa_gen_result *res) {
    char msg[200];
    if (rq->n_prompt < 1) {
        gen_fail(res, LISA_ERR_ARG, "empty prompt");
        return 0;
    }
    if (rq->n_prompt >= s->max_ctx) {
        snprintf(msg, sizeof msg, "prompt has %d tokens; the context holds %d", rq->n_prompt,
                 s->max_ctx);
        gen_fail(res, LISA_ERR_ARG, msg);
        return 0;
    }
    int bad = !rq->embd && !rq->prompt;
    for (int i = 0; !rq->embd && rq->prompt && i < rq->n_prompt && !bad; i++)
        bad = rq->prompt[i] < 0 || rq->prompt[i] >= m->cfg.vocab_size;
    if (bad) {
        snprintf(msg, sizeof msg, "prompt holds a token id outside [0, %d)", m->cfg.vocab_size);
        gen_fail(res, LISA_ERR_ARG, msg);
        return 0;
    }
    if (rq->max_new_tokens < 1) {
        res->stop = LISA_STOP_LENGTH;
        return 0;
    }
    return 1;
}

lisa_status lisa_generate_greedy(const lisa_llama_model *m, lisa_llama_state *s,
                                 const lisa_gen_request *reqs, int n_req, int eos_id,
                                 lisa_gen_result *results) {
    if (!lisa_llama_model_is_first(m) || !lisa_llama_model_is_last(m))
        return lisa_error_set(LISA_ERR_ARG, "generate: the model must hold every layer");
    memset(results, 0, (size_t)n_req * sizeof *results);
    int C = m->cfg.hidden_size, nt = s->max_tokens;
    /* every running sequence may put one output row in a step */
    int slots = s->max_seqs < s->max_out ? s->max_seqs : s->max_out;
    if (slots > nt) slots = nt;
    int use_embd = 0;
    for (int i = 0; i < n_req; i++) use_embd |= reqs[i].embd != NULL;
    gen_seq *seqs = calloc((size_t)(n_req ? n_req : 1), sizeof *seqs);
    int32_t *tok = malloc((size_t)nt * 4), *seq = malloc((size_t)nt * 4),
            *pos = malloc((size_t)nt * 4), *rows = malloc((size_t)nt * 4),
            *next = malloc((size_t)nt * 4), *owner = malloc((size_t)nt * 4);
    float *hid = malloc((size_t)s->max_out * (size_t)C * sizeof(float));
    /* When any prompt comes as embeddings every row goes in as an embedding
     * (a forward call takes one or the other): token prompts and decode
     * tokens are embedded first. */
    float *emb = use_embd ? malloc((size_t)nt * (size_t)C * sizeof(float)) : NULL;
    lisa_sched *sc = NULL;
    lisa_status st = seqs && tok && seq && pos && rows && next && owner && hid && (emb || !use_embd)
                         ? LISA_OK
                         : lisa_error_set(LISA_ERR_NOMEM, "generate: out of memory");
    if (st == LISA_OK) {
        lisa_sched_params sp = {slots, s->max_ctx, nt, LISA_SCHED_CONTINUOUS, 0};
        st = lisa_sched_init(&sc, &sp);
    }
    for (int r = 0; r < n_req && st == LISA_OK; r++) {
        seqs[r].req = r;
        if (gen_admissible(m, s, &reqs[r], &results[r]))
            st = lisa_sched_add(sc, r, &seqs[r], reqs[r].n_prompt);
    }
    lisa_sched_step step;
    while (st == LISA_OK && lisa_sched_plan(sc, &step) > 0) {
        int n = 0, no = 0;
        for (int k = 0; k < step.n_items && st == LISA_OK; k++) {
            const lisa_sched_item *it = &step.items[k];
            gen_seq *q = it->user;
            const lisa_gen_request *rq = &reqs[q->req];
            for (int i = 0; i < it->n; i++) {
                seq[n + i] = it->slot;
                pos[n + i] = it->pos0 + i;
            }
            if (it->kind == LISA_SCHED_DECODE) {
                const lisa_gen_result *res = &results[q->req];
                tok[n] = res->tokens[res->n_tokens - 1];
                if (use_embd) st = lisa_llama_embed(m, s, &tok[n], 1, emb + (size_t)n * C);
            } else if (use_embd && rq->embd) {
                memcpy(emb + (size_t)n * C, rq->embd + (size_t)it->pos0 * C,
                       (size_t)it->n * (size_t)C * sizeof(float));
            } else if (use_embd) {
                st = lisa_llama_embed(m, s, rq->prompt + it->pos0, it->n, emb + (size_t)n * C);
            } else {
                memcpy(tok + n, rq->prompt + it->pos0, (size_t)it->n * sizeof *tok);
            }
            n += it->n;
            if (it->kind == LISA_SCHED_DECODE || it->last_chunk) {
                rows[no] = n - 1;
                owner[no++] = k;
            }
        }
        if (st != LISA_OK) break;
        lisa_llama_batch b = {n, use_embd ? NULL : tok, use_embd ? emb : NULL, seq, pos, no, rows};
        st = lisa_llama_forward(m, s, &b, NULL, hid, next);
        for (int i = 0; i < no && st == LISA_OK; i++) {
            const lisa_sched_item *it = &step.items[owner[i]];
            gen_seq *q = it->user;
            q->len = it->pos0 + it->n;
            if (gen_accept(&reqs[q->req], &results[q->req], q, next[i], hid + (size_t)i * C, C,
                           eos_id, s->max_ctx, &st) && st == LISA_OK)
                st = lisa_sched_finish(sc, it->id);
        }
    }
    if (st != LISA_OK)
        for (int i = 0; i < n_req; i++)
            if (results[i].stop == LISA_STOP_NONE) gen_fail(&results[i], st, lisa_error_get());
    lisa_sched_free(sc);
    free(seqs);
    free(emb);
    free(tok);
    free(seq);
    free(pos);
    free(rows);
    free(next);
    free(owner);
    free(hid);
    return st;
}

void lisa_gen_result_free(lisa_gen_result *r) {
    free(r->tokens);
    free(r->hidden);
    memset(r, 0, sizeof *r);
}
