/* scheduler.c: step planning for continuous and static batching (see
 * scheduler.h). Waiting requests are a FIFO array; running requests sit in
 * the table of slots, so a slot's owner is whoever occupies its entry. */
#include "scheduler.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    int64_t id;
    void *user;
    int n_prompt;
    int done;        /* prompt positions prefilled */
    int len;         /* positions in the cache once decoding */
    int64_t order;   /* admission order */
    int active;      /* slot entries only */
    int held;        /* in a micro-batch in flight (hold_in_flight) */
} sched_seq;

struct lisa_sched {
    lisa_sched_params p;
    sched_seq *wait;     /* FIFO: [head, n_wait) live */
    int head, n_wait, cap_wait;
    sched_seq *slots;    /* (max_slots) */
    int n_running;
    int64_t next_order;
    lisa_sched_item *items;  /* (max_slots) */
    int *by_order;           /* (max_slots) slot indices, scratch */
};

lisa_status lisa_sched_init(lisa_sched **out, const lisa_sched_params *p) {
    if (p->max_slots < 1 || p->max_ctx < 2 || p->token_budget < 1)
        return lisa_error_set(LISA_ERR_ARG, "scheduler: slots %d, context %d and budget %d must "
                              "be positive", p->max_slots, p->max_ctx, p->token_budget);
    if (p->token_budget < p->max_slots)
        return lisa_error_set(LISA_ERR_ARG, "scheduler: a token budget of %d cannot hold one "
                              "decode token for each of %d slots", p->token_budget, p->max_slots);
    lisa_sched *s = calloc(1, sizeof *s);
    if (s) {
        s->p = *p;
        s->slots = calloc((size_t)p->max_slots, sizeof *s->slots);
        s->items = calloc((size_t)p->max_slots, sizeof *s->items);
        s->by_order = calloc((size_t)p->max_slots, sizeof *s->by_order);
    }
    if (!s || !s->slots || !s->items || !s->by_order) {
        lisa_sched_free(s);
        return lisa_error_set(LISA_ERR_NOMEM, "scheduler: out of memory");
    }
    *out = s;
    return LISA_OK;
}

void lisa_sched_free(lisa_sched *s) {
    if (!s) return;
    free(s->wait);
    free(s->slots);
    free(s->items);
    free(s->by_order);
    free(s);
}

lisa_status lisa_sched_add(lisa_sched *s, int64_t id, void *user, int n_prompt) {
    if (n_prompt < 1) return lisa_error_set(LISA_ERR_ARG, "empty prompt");
    if (n_prompt >= s->p.max_ctx)
        return lisa_error_set(LISA_ERR_ARG, "prompt has %d tokens; the context holds %d",
                              n_prompt, s->p.max_ctx);
    if (s->head > 0 && s->head * 2 >= s->n_wait) {
        memmove(s->wait, s->wait + s->head, (size_t)(s->n_wait - s->head) * sizeof *s->wait);
        s->n_wait -= s->head;
        s->head = 0;
    }
    if (s->n_wait == s->cap_wait) {
        int cap = s->cap_wait ? s->cap_wait * 2 : 64;
        sched_seq *w = realloc(s->wait, (size_t)cap * sizeof *w);
        if (!w) return lisa_error_set(LISA_ERR_NOMEM, "scheduler: out of memory");
        s->wait = w;
        s->cap_wait = cap;
    }
    sched_seq *q = &s->wait[s->n_wait++];
    memset(q, 0, sizeof *q);
    q->id = id;
    q->user = user;
    q->n_prompt = n_prompt;
    return LISA_OK;
}

/* Running slots not held, in admission order, into s->by_order; returns
 * the count. */
static int sched_running_in_order(lisa_sched *s) {
    int n = 0;
    for (int i = 0; i < s->p.max_slots; i++) {
        if (!s->slots[i].active || s->slots[i].held) continue;
        int j = n++;
        while (j > 0 && s->slots[s->by_order[j - 1]].order > s->slots[i].order) {
            s->by_order[j] = s->by_order[j - 1];
            j--;
        }
        s->by_order[j] = i;
    }
    return n;
}

static void sched_emit(lisa_sched *s, lisa_sched_step *st, int slot, lisa_sched_kind kind,
                       int pos0, int n, int first) {
    sched_seq *q = &s->slots[slot];
    lisa_sched_item *it = &s->items[st->n_items++];
    it->id = q->id;
    it->user = q->user;
    it->slot = slot;
    it->kind = kind;
    it->pos0 = pos0;
    it->n = n;
    it->first = first;
    it->last_chunk = kind == LISA_SCHED_PREFILL && pos0 + n == q->n_prompt;
    st->n_tokens += n;
    q->held = s->p.hold_in_flight;
    if (kind == LISA_SCHED_PREFILL) {
        q->done += n;
        if (q->done == q->n_prompt) q->len = q->n_prompt;
    } else {
        q->len++;
    }
}

/* Moves the head of the queue into the lowest free slot; -1 when none. */
static int sched_admit(lisa_sched *s) {
    if (s->head == s->n_wait || s->n_running == s->p.max_slots) return -1;
    int slot = 0;
    while (s->slots[slot].active) slot++;
    s->slots[slot] = s->wait[s->head++];
    s->slots[slot].active = 1;
    s->slots[slot].order = s->next_order++;
    s->n_running++;
    if (s->head == s->n_wait) s->head = s->n_wait = 0;
    return slot;
}

int lisa_sched_plan(lisa_sched *s, lisa_sched_step *st) {
    st->items = s->items;
    st->n_items = 0;
    st->n_tokens = 0;
    int budget = s->p.token_budget;
    int nr = sched_running_in_order(s);
    int prefilling = 0;
    for (int k = 0; k < nr; k++) prefilling |= s->slots[s->by_order[k]].done < s->slots[s->by_order[k]].n_prompt;

    if (s->p.policy == LISA_SCHED_STATIC) {
        /* the batch prefills until all of it, held members included, has */
        for (int i = 0; i < s->p.max_slots; i++)
            prefilling |= s->slots[i].active && s->slots[i].done < s->slots[i].n_prompt;
        if (s->n_running == 0) {
            int slot;
            while ((slot = sched_admit(s)) >= 0) s->by_order[nr++] = slot;
            prefilling = nr > 0;
        }
        for (int k = 0; k < nr; k++) {
            sched_seq *q = &s->slots[s->by_order[k]];
            if (prefilling && q->done < q->n_prompt && budget > 0) {
                int n = q->n_prompt - q->done < budget ? q->n_prompt - q->done : budget;
                sched_emit(s, st, s->by_order[k], LISA_SCHED_PREFILL, q->done, n, q->done == 0);
                budget -= n;
            } else if (!prefilling) {
                sched_emit(s, st, s->by_order[k], LISA_SCHED_DECODE, q->len, 1, 0);
            }
        }
        return st->n_items;
    }

    /* continuous: decode tokens first (they always fit: budget >= slots) */
    for (int k = 0; k < nr; k++) {
        sched_seq *q = &s->slots[s->by_order[k]];
        if (q->done == q->n_prompt) {
            sched_emit(s, st, s->by_order[k], LISA_SCHED_DECODE, q->len, 1, 0);
            budget--;
        }
    }
    for (int k = 0; k < nr && budget > 0; k++) {
        sched_seq *q = &s->slots[s->by_order[k]];
        if (q->done == q->n_prompt) continue;
        int n = q->n_prompt - q->done < budget ? q->n_prompt - q->done : budget;
        int first = q->done == 0;
        sched_emit(s, st, s->by_order[k], LISA_SCHED_PREFILL, q->done, n, first);
        budget -= n;
    }
    while (budget > 0) {
        int slot = sched_admit(s);
        if (slot < 0) break;
        sched_seq *q = &s->slots[slot];
        int n = q->n_prompt < budget ? q->n_prompt : budget;
        sched_emit(s, st, slot, LISA_SCHED_PREFILL, 0, n, 1);
        budget -= n;
    }
    return st->n_items;
}

lisa_status lisa_sched_finish(lisa_sched *s, int64_t id) {
    for (int i = 0; i < s->p.max_slots; i++)
        if (s->slots[i].active && s->slots[i].id == id) {
            s->slots[i].active = 0;
            s->n_running--;
            return LISA_OK;
        }
    for (int i = s->head; i < s->n_wait; i++)
        if (s->wait[i].id == id) {
            memmove(s->wait + i, s->wait + i + 1, (size_t)(s->n_wait - i - 1) * sizeof *s->wait);
            s->n_wait--;
            if (s->head == s->n_wait) s->head = s->n_wait = 0;
            return LISA_OK;
        }
    return lisa_error_set(LISA_ERR_ARG, "scheduler: no request %lld", (long long)id);
}

lisa_status lisa_sched_cancel(lisa_sched *s, int64_t id) { return lisa_sched_finish(s, id); }

lisa_status lisa_sched_release(lisa_sched *s, int64_t id) {
    for (int i = 0; i < s->p.max_slots; i++)
        if (s->slots[i].active && s->slots[i].id == id) {
            s->slots[i].held = 0;
            return LISA_OK;
        }
    return lisa_error_set(LISA_ERR_ARG, "scheduler: no running request %lld", (long long)id);
}

int lisa_sched_n_held(const lisa_sched *s) {
    int n = 0;
    for (int i = 0; i < s->p.max_slots; i++) n += s->slots[i].active && s->slots[i].held;
    return n;
}

int lisa_sched_n_waiting(const lisa_sched *s) { return s->n_wait - s->head; }
int lisa_sched_n_running(const lisa_sched *s) { return s->n_running; }
