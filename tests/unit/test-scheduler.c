/* test-scheduler.c: the step scheduler (coordinator/engine/scheduler.h)
 * driven by a simulated workload: a fake clock, a cost model for a step
 * (fixed cost plus a cost per token), requests arriving over time with
 * random prompt and answer lengths, some cancelled while waiting or
 * running. Every step is checked against the contract:
 *  - its tokens fit the budget, a request has at most one item, chunks and
 *    decode positions continue exactly where the request left off;
 *  - a slot belongs to one live request from admission to finish;
 *  - admission is FIFO in arrival order, and continuous batching gives
 *    every decoding request a token in every step (no stall behind a long
 *    prompt); static batching admits only into an empty engine;
 *  - every request that was not cancelled finishes; cancelled ones never
 *    appear again; a prompt that cannot fit fails alone at add.
 * Continuous batching must beat static batching on mean and p95 latency
 * for a workload where a quarter of the answers are 10x longer. */
#include <string.h>

#include "scheduler.h"
#include "testutil.h"

#define NREQ 300

typedef struct {
    double arrive, admitted_at, finished_at;
    int n_prompt, n_answer;   /* answer tokens to produce */
    int prefilled, produced;
    int slot;                 /* -1 before admission */
    int state;                /* 0 not arrived, 1 queued, 2 running, 3 done, 4 cancelled */
    int cancel_at_token;      /* cancel once this many tokens are out (-1: never) */
    int cancel_waiting;       /* cancel right after arriving */
} sim_req;

static uint64_t g_rng = 88172645463325252ull;
static int rnd(int n) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (int)(g_rng % (uint64_t)n);
}

typedef struct {
    double mean, p95, makespan;
    int steps;
} sim_result;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Runs the workload under params; checks the contract at every step. */
static sim_result simulate(const lisa_sched_params *p, sim_req *rq, int n, int with_cancels) {
    sim_result res = {0, 0, 0, 0};
    lisa_sched *s = NULL;
    CHECK(lisa_sched_init(&s, p) == LISA_OK, "init: %s", lisa_error_get());
    if (!s) return res;
    int *owner = malloc((size_t)p->max_slots * sizeof *owner);
    for (int i = 0; i < p->max_slots; i++) owner[i] = -1;
    int *seen = calloc((size_t)n, sizeof *seen), *batch_of = calloc((size_t)n, sizeof *batch_of);
    int batch = 0;
    int next_arrival = 0, done = 0, next_admit = 0, steps = 0;
    double clock = 0;
    for (int i = 0; i < n; i++) {
        rq[i].state = 0;
        rq[i].prefilled = rq[i].produced = 0;
        rq[i].slot = -1;
    }
    while (done < n && steps < 1000000) {
        while (next_arrival < n && rq[next_arrival].arrive <= clock) {
            sim_req *r = &rq[next_arrival];
            CHECK(lisa_sched_add(s, next_arrival, r, r->n_prompt) == LISA_OK, "add %d", next_arrival);
            r->state = 1;
            if (with_cancels && r->cancel_waiting) {
                CHECK(lisa_sched_cancel(s, next_arrival) == LISA_OK, "cancel waiting %d", next_arrival);
                r->state = 4;
                done++;
            }
            next_arrival++;
        }
        /* static: a batch forms only in an empty engine, of the next FIFO requests */
        if (p->policy == LISA_SCHED_STATIC && lisa_sched_n_running(s) == 0) {
            batch++;
            for (int i = 0, k = 0; i < next_arrival && k < p->max_slots; i++)
                if (rq[i].state == 1) {
                    batch_of[i] = batch;
                    k++;
                }
        }
        lisa_sched_step st;
        int ni = lisa_sched_plan(s, &st);
        if (ni == 0) {
            CHECK(lisa_sched_n_running(s) == 0, "idle step with %d running", lisa_sched_n_running(s));
            if (next_arrival < n) clock = rq[next_arrival].arrive;
            else {
                CHECK(done == n, "nothing planned but %d of %d requests open", n - done, n);
                break;
            }
            continue;
        }
        steps++;
        int tokens = 0, decoding_before = 0, decode_items = 0;
        for (int i = 0; i < n; i++) decoding_before += rq[i].state == 2 && rq[i].prefilled == rq[i].n_prompt;
        CHECK(st.n_tokens <= p->token_budget, "step %d: %d tokens over a budget of %d", steps,
              st.n_tokens, p->token_budget);
        for (int k = 0; k < ni; k++) {
            const lisa_sched_item *it = &st.items[k];
            int id = (int)it->id;
            sim_req *r = &rq[id];
            CHECK(it->user == r, "item user pointer");
            CHECK(seen[id] != steps, "step %d: request %d has two items", steps, id);
            seen[id] = steps;
            tokens += it->n;
            CHECK(r->state == 1 || r->state == 2, "step %d: request %d in state %d scheduled",
                  steps, id, r->state);
            if (r->state == 1) {
                CHECK(it->first, "first item not marked first");
                while (next_admit < n && rq[next_admit].state == 4) next_admit++;
                CHECK(id == next_admit, "admitted %d, FIFO order expects %d", id, next_admit);
                next_admit++;
                CHECK(owner[it->slot] == -1, "step %d: slot %d of request %d given to %d", steps,
                      it->slot, owner[it->slot], id);
                if (p->policy == LISA_SCHED_STATIC)
                    CHECK(batch_of[id] == batch, "static: %d admitted outside its batch", id);
                owner[it->slot] = id;
                r->slot = it->slot;
                r->state = 2;
                r->admitted_at = clock;
            }
            CHECK(owner[it->slot] == id && r->slot == it->slot, "step %d: request %d on slot %d "
                  "owned by %d", steps, id, it->slot, owner[it->slot]);
            if (it->kind == LISA_SCHED_PREFILL) {
                CHECK(it->pos0 == r->prefilled && it->n >= 1 && r->prefilled + it->n <= r->n_prompt,
                      "request %d: chunk [%d, +%d) after %d of %d", id, it->pos0, it->n,
                      r->prefilled, r->n_prompt);
                r->prefilled += it->n;
                CHECK(it->last_chunk == (r->prefilled == r->n_prompt), "last_chunk flag");
                if (it->last_chunk) r->produced = 1;
            } else {
                decode_items++;
                CHECK(r->prefilled == r->n_prompt && it->n == 1 &&
                      it->pos0 == r->n_prompt + r->produced - 1,
                      "request %d: decode at %d, expected %d", id, it->pos0,
                      r->n_prompt + r->produced - 1);
                r->produced++;
            }
        }
        CHECK(tokens == st.n_tokens, "n_tokens %d, items sum %d", st.n_tokens, tokens);
        if (p->policy == LISA_SCHED_CONTINUOUS)
            CHECK(decode_items == decoding_before, "step %d: %d of %d decoding requests got a token",
                  steps, decode_items, decoding_before);
        clock += 1.0 + 0.05 * st.n_tokens;  /* cost model: ms per step + per token */
        for (int k = 0; k < ni; k++) {
            int id = (int)st.items[k].id;
            sim_req *r = &rq[id];
            int finished = r->prefilled == r->n_prompt && r->produced >= r->n_answer;
            int cancel = with_cancels && r->cancel_at_token >= 0 && r->produced >= r->cancel_at_token;
            if (finished || cancel) {
                CHECK((cancel ? lisa_sched_cancel(s, id) : lisa_sched_finish(s, id)) == LISA_OK,
                      "finish %d", id);
                owner[r->slot] = -1;
                r->state = cancel && !finished ? 4 : 3;
                r->finished_at = clock;
                done++;
            }
        }
    }
    CHECK(done == n, "%d of %d requests ended", done, n);
    CHECK(lisa_sched_n_running(s) == 0 && lisa_sched_n_waiting(s) == 0, "scheduler not empty");
    CHECK(lisa_sched_finish(s, 0) == LISA_ERR_ARG, "finishing an ended request");
    double *lat = malloc((size_t)n * sizeof *lat);
    int m = 0;
    for (int i = 0; i < n; i++)
        if (rq[i].state == 3) lat[m++] = rq[i].finished_at - rq[i].arrive;
    qsort(lat, (size_t)m, sizeof *lat, cmp_double);
    for (int i = 0; i < m; i++) res.mean += lat[i] / m;
    res.p95 = m ? lat[(int)(0.95 * (m - 1))] : 0;
    res.makespan = clock;
    res.steps = steps;
    free(lat);
    free(owner);
    free(seen);
    free(batch_of);
    lisa_sched_free(s);
    return res;
}

static void make_workload(sim_req *rq, int n, int max_prompt) {
    double t = 0;
    for (int i = 0; i < n; i++) {
        memset(&rq[i], 0, sizeof rq[i]);
        t += rnd(40) * 0.1;
        rq[i].arrive = t;
        rq[i].n_prompt = 1 + rnd(max_prompt);
        rq[i].n_answer = 1 + rnd(12);
        if (i % 4 == 3) rq[i].n_answer *= 10;  /* a quarter answer 10x longer */
        rq[i].cancel_at_token = rnd(20) == 0 ? 1 + rnd(5) : -1;
        rq[i].cancel_waiting = rnd(30) == 0;
    }
}

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    lisa_sched *s = NULL;
    lisa_sched_params bad = {8, 512, 4, LISA_SCHED_CONTINUOUS, 0};
    CHECK(lisa_sched_init(&s, &bad) == LISA_ERR_ARG, "a budget below the slot count is refused");
    lisa_sched_params p = {4, 300, 64, LISA_SCHED_CONTINUOUS, 0};
    CHECK(lisa_sched_init(&s, &p) == LISA_OK, "init");
    CHECK(lisa_sched_add(s, 1, NULL, 300) == LISA_ERR_ARG && strstr(lisa_error_get(), "context"),
          "a prompt as long as the context fails at add: %s", lisa_error_get());
    CHECK(lisa_sched_add(s, 2, NULL, 0) == LISA_ERR_ARG, "an empty prompt fails at add");
    CHECK(lisa_sched_n_waiting(s) == 0, "failed adds are not queued");
    /* a long prompt does not stall a decoding request: chunks under the budget */
    CHECK(lisa_sched_add(s, 3, NULL, 5) == LISA_OK && lisa_sched_add(s, 4, NULL, 299) == LISA_OK, "add");
    lisa_sched_step st;
    CHECK(lisa_sched_plan(s, &st) == 2 && st.n_tokens == 64 && st.items[0].n == 5 &&
              st.items[0].last_chunk && st.items[1].n == 59 && !st.items[1].last_chunk,
          "first step: whole short prompt and a 59-token chunk of the long one");
    for (int k = 0; k < 3; k++) {
        CHECK(lisa_sched_plan(s, &st) == 2 && st.items[0].kind == LISA_SCHED_DECODE &&
                  st.items[0].id == 3 && st.items[1].n == 63,
              "step %d: decode of 3 beside a 63-token chunk of 4", k + 2);
    }
    CHECK(lisa_sched_cancel(s, 4) == LISA_OK && lisa_sched_plan(s, &st) == 1 && st.items[0].id == 3,
          "a cancelled request is gone at the next step");
    lisa_sched_free(s);

    /* hold_in_flight (pipelines): micro-batches in flight hold their requests */
    lisa_sched_params hp = {4, 300, 16, LISA_SCHED_CONTINUOUS, 1};
    CHECK(lisa_sched_init(&s, &hp) == LISA_OK, "init with holds");
    for (int i = 0; i < 3; i++) CHECK(lisa_sched_add(s, 10 + i, NULL, 20) == LISA_OK, "add");
    CHECK(lisa_sched_plan(s, &st) == 1 && st.items[0].id == 10 && st.items[0].n == 16,
          "micro-batch 1: a 16-token chunk of 10");
    for (int i = 1; i < 3; i++)
        CHECK(lisa_sched_plan(s, &st) == 1 && st.items[0].id == 10 + i && st.items[0].n == 16 &&
                  st.items[0].first,
              "micro-batch %d leaves the held ones out and admits %d", i + 1, 10 + i);
    CHECK(lisa_sched_n_held(s) == 3 && lisa_sched_plan(s, &st) == 0,
          "everything held: nothing to plan");
    CHECK(lisa_sched_release(s, 10) == LISA_OK && lisa_sched_plan(s, &st) == 1 &&
              st.items[0].id == 10 && st.items[0].pos0 == 16 && st.items[0].n == 4 &&
              st.items[0].last_chunk,
          "released 10 continues where it left off");
    CHECK(lisa_sched_release(s, 99) == LISA_ERR_ARG, "releasing an unknown id is an error");
    lisa_sched_free(s);

    sim_req *rq = malloc(NREQ * sizeof *rq);
    const int budgets[] = {8, 32, 256}, slots[] = {1, 4, 8};
    for (int b = 0; b < 3; b++)
        for (int k = 0; k < 3; k++)
            for (int pol = 0; pol < 2; pol++) {
                if (budgets[b] < slots[k]) continue;
                lisa_sched_params sp = {slots[k], 200, budgets[b],
                                        pol ? LISA_SCHED_STATIC : LISA_SCHED_CONTINUOUS, 0};
                g_rng = 88172645463325252ull + (uint64_t)(b * 7 + k);
                make_workload(rq, NREQ, 150);
                simulate(&sp, rq, NREQ, 1);
            }
    /* continuous vs static on a quarter of 10x longer answers */
    sim_result r[2];
    for (int pol = 0; pol < 2; pol++) {
        lisa_sched_params sp = {8, 512, 128, pol ? LISA_SCHED_STATIC : LISA_SCHED_CONTINUOUS, 0};
        g_rng = 1234567;
        make_workload(rq, NREQ, 100);
        r[pol] = simulate(&sp, rq, NREQ, 0);
    }
    fprintf(stderr, "simulated latency (cost model): continuous mean %.1f p95 %.1f makespan %.1f "
            "(%d steps); static mean %.1f p95 %.1f makespan %.1f (%d steps)\n", r[0].mean, r[0].p95,
            r[0].makespan, r[0].steps, r[1].mean, r[1].p95, r[1].makespan, r[1].steps);
    CHECK(r[0].mean < r[1].mean && r[0].p95 < r[1].p95,
          "continuous batching is not faster than static on the mixed workload");
    free(rq);
    return test_finish("test-scheduler");
}
