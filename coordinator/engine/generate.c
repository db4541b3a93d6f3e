/* generate.c: batched greedy generation (see generate.h). */
#include "generate.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    int req;       /* index into reqs */
    float *embd;   /* (n_prompt, C) owned copy when the prompt came as tokens
                      and the group prefills from embeddings */
    int slot;      /* KV cache slot */
    int len;       /* tokens in the cache */
    int32_t last;  /* last generated token, fed at the next step */
    int cap;       /* allocated entries of tokens/hidden */
    int done;
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

/* Records token `tok` chosen for sequence q and decides whether q stops. */
static lisa_status gen_accept(const lisa_gen_request *req, lisa_gen_result *r, gen_seq *q,
                              int32_t tok, const float *h, int C, int eos_id, int max_ctx) {
    LISA_TRY(gen_push(r, q, tok, req->want_hidden ? h : NULL, C));
    q->last = tok;
    if (eos_id >= 0 && tok == eos_id) {
        r->stop = LISA_STOP_EOS;
        q->done = 1;
    } else if (r->n_tokens >= req->max_new_tokens) {
        r->stop = LISA_STOP_LENGTH;
        q->done = 1;
    } else if (q->len >= max_ctx) {
        r->stop = LISA_STOP_CONTEXT;
        q->done = 1;
    }
    return LISA_OK;
}

/* Runs one group of at most s->max_seqs runnable requests. */
static lisa_status gen_group(const lisa_llama_model *m, lisa_llama_state *s,
                             const lisa_gen_request *reqs, lisa_gen_result *results, gen_seq *seqs,
                             int ns, int eos_id) {
    int C = m->cfg.hidden_size, nt = s->max_tokens;
    int32_t *tok = malloc((size_t)nt * 4), *seq = malloc((size_t)nt * 4),
            *pos = malloc((size_t)nt * 4), *rows = malloc((size_t)nt * 4),
            *next = malloc((size_t)nt * 4), *owner = malloc((size_t)nt * 4);
    float *hid = malloc((size_t)s->max_out * (size_t)C * sizeof(float));
    float *emb = NULL;
    int use_embd = 0;
    lisa_status st = LISA_OK;
    if (!tok || !seq || !pos || !rows || !next || !owner || !hid) {
        st = lisa_error_set(LISA_ERR_NOMEM, "generate: out of memory");
        goto out;
    }
    /* When any prompt comes as embeddings the whole group prefills from
     * embeddings (a forward call takes one or the other); token prompts are
     * embedded first. */
    for (int i = 0; i < ns; i++) use_embd |= reqs[seqs[i].req].embd != NULL;
    emb = use_embd ? malloc((size_t)nt * (size_t)C * sizeof(float)) : NULL;
    if (use_embd && !emb) st = lisa_error_set(LISA_ERR_NOMEM, "generate: out of memory");
    for (int i = 0; i < ns && st == LISA_OK && use_embd; i++) {
        const lisa_gen_request *rq = &reqs[seqs[i].req];
        if (rq->embd) continue;
        seqs[i].embd = malloc((size_t)rq->n_prompt * (size_t)C * sizeof(float));
        if (!seqs[i].embd) {
            st = lisa_error_set(LISA_ERR_NOMEM, "generate: out of memory");
            break;
        }
        for (int p0 = 0; p0 < rq->n_prompt && st == LISA_OK; p0 += nt) {
            int cnt = rq->n_prompt - p0 < nt ? rq->n_prompt - p0 : nt;
            st = lisa_llama_embed(m, s, rq->prompt + p0, cnt, seqs[i].embd + (size_t)p0 * C);
        }
    }
    /* Prefill: pack prompts into chunks of at most nt tokens; a sequence's
     * last prompt token produces its first generated token. */
    int si = 0, pi = 0;
    while (si < ns && st == LISA_OK) {
        int n = 0, no = 0;
        while (si < ns && n < nt && no < s->max_out) {
            const lisa_gen_request *rq = &reqs[seqs[si].req];
            if (use_embd) {
                const float *src = rq->embd ? rq->embd : seqs[si].embd;
                memcpy(emb + (size_t)n * C, src + (size_t)pi * C, (size_t)C * sizeof(float));
            } else {
                tok[n] = rq->prompt[pi];
            }
            seq[n] = seqs[si].slot;
            pos[n] = pi;
            n++;
            if (++pi == rq->n_prompt) {
                seqs[si].len = rq->n_prompt;
                rows[no] = n - 1;
                owner[no++] = si;
                si++;
                pi = 0;
            }
        }
        lisa_llama_batch b = {n, use_embd ? NULL : tok, use_embd ? emb : NULL, seq, pos, no, rows};
        st = lisa_llama_forward(m, s, &b, NULL, hid, next);
        for (int i = 0; i < no && st == LISA_OK; i++) {
            gen_seq *q = &seqs[owner[i]];
            st = gen_accept(&reqs[q->req], &results[q->req], q, next[i], hid + (size_t)i * C, C,
                            eos_id, s->max_ctx);
        }
    }
    /* Decode: one token per live sequence per step. */
    while (st == LISA_OK) {
        int n = 0;
        for (int i = 0; i < ns && n < nt && n < s->max_out; i++) {
            if (seqs[i].done) continue;
            tok[n] = seqs[i].last;
            seq[n] = seqs[i].slot;
            pos[n] = seqs[i].len;
            rows[n] = n;
            owner[n] = i;
            n++;
        }
        if (n == 0) break;
        lisa_llama_batch b = {n, tok, NULL, seq, pos, n, rows};
        st = lisa_llama_forward(m, s, &b, NULL, hid, next);
        for (int i = 0; i < n && st == LISA_OK; i++) {
            gen_seq *q = &seqs[owner[i]];
            q->len++;
            st = gen_accept(&reqs[q->req], &results[q->req], q, next[i], hid + (size_t)i * C, C,
                            eos_id, s->max_ctx);
        }
    }
out:
    for (int i = 0; i < ns; i++) {
        free(seqs[i].embd);
        seqs[i].embd = NULL;
    }
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

lisa_status lisa_generate_greedy(const lisa_llama_model *m, lisa_llama_state *s,
                                 const lisa_gen_request *reqs, int n_req, int eos_id,
                                 lisa_gen_result *results) {
    if (!lisa_llama_model_is_first(m) || !lisa_llama_model_is_last(m))
        return lisa_error_set(LISA_ERR_ARG, "generate: the model must hold every layer");
    memset(results, 0, (size_t)n_req * sizeof *results);
    gen_seq *seqs = calloc((size_t)s->max_seqs, sizeof *seqs);
    if (!seqs) return lisa_error_set(LISA_ERR_NOMEM, "generate: out of memory");
    lisa_status st = LISA_OK;
    int r = 0;
    while (r < n_req && st == LISA_OK) {
        int ns = 0;
        for (; r < n_req && ns < s->max_seqs; r++) {
            const lisa_gen_request *rq = &reqs[r];
            char msg[200];
            if (rq->n_prompt < 1) {
                gen_fail(&results[r], LISA_ERR_ARG, "empty prompt");
                continue;
            }
            if (rq->n_prompt >= s->max_ctx) {
                snprintf(msg, sizeof msg, "prompt has %d tokens; the context holds %d",
                         rq->n_prompt, s->max_ctx);
                gen_fail(&results[r], LISA_ERR_ARG, msg);
                continue;
            }
            int bad = 0;
            if (!rq->embd && !rq->prompt) bad = 1;
            for (int i = 0; !rq->embd && rq->prompt && i < rq->n_prompt && !bad; i++)
                if (rq->prompt[i] < 0 || rq->prompt[i] >= m->cfg.vocab_size) bad = 1;
            if (bad) {
                snprintf(msg, sizeof msg, "prompt holds a token id outside [0, %d)",
                         m->cfg.vocab_size);
                gen_fail(&results[r], LISA_ERR_ARG, msg);
                continue;
            }
            if (rq->max_new_tokens < 1) {
                results[r].stop = LISA_STOP_LENGTH;
                continue;
            }
            memset(&seqs[ns], 0, sizeof seqs[ns]);
            seqs[ns].req = r;
            seqs[ns].slot = ns;
            ns++;
        }
        if (ns) st = gen_group(m, s, reqs, results, seqs, ns, eos_id);
    }
    if (st != LISA_OK)
        for (int i = 0; i < n_req; i++)
            if (results[i].stop == LISA_STOP_NONE) gen_fail(&results[i], st, lisa_error_get());
    free(seqs);
    return st;
}

void lisa_gen_result_free(lisa_gen_result *r) {
    free(r->tokens);
    free(r->hidden);
    memset(r, 0, sizeof *r);
}
