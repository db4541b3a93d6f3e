/* test-engine.c: the continuous-batching engine (coordinator/engine/
 * engine.h) on the tiny LISA (tests/fixtures/lisa-tiny/model), fp32 CPU.
 *
 * 48 mixed requests (free generation and teacher-forced answers with 0, 1
 * and 2 [SEG]s, images shared between requests and given as bytes or as
 * paths, and bad requests: missing file, corrupt bytes, empty prompt, a
 * prompt longer than the context) run one at a time first; that is the
 * baseline. Then they run mixed, under three token budgets and two slot
 * counts (and once with static batching), submitted in a shuffled order in
 * three waves while earlier ones are mid-decode, with one request
 * cancelled. Every request must give what it gave alone: the same status
 * and error, identical ids and masks, [SEG] embeddings within 1e-5
 * relative (the batch composition changes float summation order in the
 * matmuls, nothing else); the cancelled one is reported cancelled.
 *
 * One image asked 16 times in 4 separate submissions runs CLIP once and the
 * SAM encoder once (the engine's counters). test-lisa holds the same engine
 * to LISA's reference. */
#include <string.h>

#include "engine.h"
#include "testutil.h"

#define NREQ 48
#define TOL_EMB 1e-5

typedef struct {
    lisa_request rq;
    uint8_t *bytes;
    char prompt[8192];
    char path[4200];
} test_req;

/* three distinct images: the SAM encoder at 1024 pixels dominates the run */
static const char *g_images[] = {"chelsea.png", "coffee.jpg", "exif6.jpg"};

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static int rnd(int n) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (int)(g_rng % (uint64_t)n);
}

static void make_requests(const char *fix, test_req *t, uint8_t **owned, int *n_owned) {
    static const char *answers[] = {NULL, "[SEG].", "Sure, it is [SEG] and [SEG].",
                                    "There is nothing to segment."};
    static const char *asks[] = {"Segment the cat.", "Where is the mug? Please output a mask.",
                                 "What in this picture is richest in vitamin C?",
                                 "Can you segment the thing on the left and the thing on the right?"};
    uint8_t corrupt[64];
    for (int i = 0; i < 64; i++) corrupt[i] = (uint8_t)(i * 37 + 11);
    corrupt[0] = 0xff;
    corrupt[1] = 0xd8;  /* a JPEG start, then garbage */
    for (int i = 0; i < NREQ; i++) {
        test_req *q = &t[i];
        memset(q, 0, sizeof *q);
        int img = (i * 7) % 3;
        snprintf(q->path, sizeof q->path, "%s/images/%s", fix, g_images[img]);
        snprintf(q->prompt, sizeof q->prompt, "%s (%d)", asks[i % 4], i);
        q->rq.prompt = q->prompt;
        q->rq.answer = answers[(i / 2) % 4];
        q->rq.max_new_tokens = 8 + (i % 5) * 4;
        if (i % 3 == 0) {
            q->rq.image_path = q->path;
        } else {
            size_t n;
            CHECK(lisa_image_read_file(q->path, NULL, &q->bytes, &n) == LISA_OK, "read %s", q->path);
            owned[(*n_owned)++] = q->bytes;
            q->rq.image = q->bytes;
            q->rq.image_size = n;
        }
    }
    /* bad requests, each must fail alone */
    snprintf(t[5].path, sizeof t[5].path, "%s/images/no-such-image.jpg", fix);
    t[5].rq.image = NULL;
    t[5].rq.image_path = t[5].path;
    t[11].rq.image = owned[(*n_owned)++] = malloc(sizeof corrupt);
    memcpy((uint8_t *)t[11].rq.image, corrupt, sizeof corrupt);
    t[11].rq.image_size = sizeof corrupt;
    t[11].rq.image_path = "corrupt.jpg";
    t[17].prompt[0] = 0;
    size_t k = 0;
    while (k + 8 < sizeof t[23].prompt) k += (size_t)snprintf(t[23].prompt + k, 9, "segment ");
    t[23].rq.answer = NULL;
}

typedef struct {
    int n_checked;
    double worst_emb;
} cmp_stat;

static void compare(const char *what, int i, const lisa_response *a, const lisa_response *ref,
                    cmp_stat *cs) {
    CHECK(a->status == ref->status, "%s: request %d status %d, alone %d (%s / %s)", what, i,
          a->status, ref->status, a->error, ref->error);
    if (a->status != ref->status) return;
    CHECK(!strcmp(a->error, ref->error), "%s: request %d error '%s', alone '%s'", what, i, a->error,
          ref->error);
    CHECK(a->n_ids == ref->n_ids && (a->n_ids == 0 || !memcmp(a->ids, ref->ids, (size_t)a->n_ids * 4)),
          "%s: request %d ids differ (%d vs %d tokens)", what, i, a->n_ids, ref->n_ids);
    CHECK((a->text == NULL) == (ref->text == NULL) && (!a->text || !strcmp(a->text, ref->text)),
          "%s: request %d text differs", what, i);
    CHECK(a->n_masks == ref->n_masks, "%s: request %d %d masks, alone %d", what, i, a->n_masks,
          ref->n_masks);
    if (a->n_masks != ref->n_masks) return;
    CHECK(a->w == ref->w && a->h == ref->h, "%s: request %d size", what, i);
    if (a->n_masks) {
        double e = test_rel_err(a->seg_embeddings, ref->seg_embeddings,
                                (size_t)a->n_masks * (size_t)a->seg_dim);
        CHECK(e <= TOL_EMB, "%s: request %d [SEG] embeddings rel err %.3g", what, i, e);
        if (e > cs->worst_emb) cs->worst_emb = e;
    }
    for (int k = 0; k < a->n_masks; k++) {
        CHECK(!memcmp(a->masks[k].mask, ref->masks[k].mask, (size_t)a->w * (size_t)a->h),
              "%s: request %d mask %d differs", what, i, k);
        CHECK(a->masks[k].iou == a->masks[k].iou && fabsf(a->masks[k].iou - ref->masks[k].iou) <= 1e-5f,
              "%s: request %d IoU %g vs %g", what, i, a->masks[k].iou, ref->masks[k].iou);
    }
    cs->n_checked++;
}

static lisa_engine *engine_open(const char *model, int slots, int budget, lisa_sched_policy pol) {
    lisa_engine_params p;
    memset(&p, 0, sizeof p);
    p.model_dir = model;
    p.backend = LISA_BACKEND_CPU;
    p.threads = 2;
    p.dtype = LISA_DTYPE_F32;
    p.max_batch = slots;
    p.token_budget = budget;
    p.policy = pol;
    p.max_new_tokens = 32;
    lisa_engine *e = NULL;
    CHECK(lisa_engine_init(&e, &p) == LISA_OK, "engine init: %s", lisa_error_get());
    return e;
}

/* Runs the requests mixed: shuffled, in three waves with steps between
 * them; request `cancel_idx` is cancelled right after the second wave. */
static void run_mixed(const char *model, test_req *t, const lisa_response *alone, int slots,
                      int budget, lisa_sched_policy pol, int cancel_idx, cmp_stat *cs) {
    char what[96];
    snprintf(what, sizeof what, "%s slots %d budget %d", pol == LISA_SCHED_STATIC ? "static" : "continuous",
             slots, budget);
    lisa_engine *e = engine_open(model, slots, budget, pol);
    if (!e) return;
    int order[NREQ];
    for (int i = 0; i < NREQ; i++) order[i] = i;
    for (int i = NREQ - 1; i > 0; i--) {
        int j = rnd(i + 1), x = order[i];
        order[i] = order[j];
        order[j] = x;
    }
    int64_t handle_of[NREQ], cancel_handle = -1;
    lisa_response *got = calloc(NREQ, sizeof *got);
    int seen[NREQ] = {0};
    int have = 0, waves[3] = {NREQ / 3, 2 * NREQ / 3, NREQ}, next = 0;
    for (int w = 0; w < 3; w++) {
        for (; next < waves[w]; next++) {
            int i = order[next];
            CHECK(lisa_engine_submit(e, &t[i].rq, &handle_of[i]) == LISA_OK, "submit");
            if (i == cancel_idx) cancel_handle = handle_of[i];
        }
        if (w == 1 && cancel_handle >= 0)
            CHECK(lisa_engine_cancel(e, cancel_handle) == LISA_OK, "%s: cancel", what);
        for (int s = 0; s < (w < 2 ? 3 : 1 << 30) && lisa_engine_pending(e); s++)
            CHECK(lisa_engine_step(e) == LISA_OK, "%s: step: %s", what, lisa_error_get());
    }
    if (cancel_handle < 0) {  /* submitted in the last wave: cancel now, it may be running */
        cancel_handle = handle_of[cancel_idx];
        lisa_status cs2 = lisa_engine_cancel(e, cancel_handle);
        CHECK(cs2 == LISA_OK || cs2 == LISA_ERR_ARG, "cancel");
    }
    CHECK(lisa_engine_pending(e) == 0, "%s: %d requests left", what, lisa_engine_pending(e));
    lisa_response r;
    while (lisa_engine_take_finished(e, &r, 1) == 1) {
        int i = -1;
        for (int k = 0; k < NREQ; k++)
            if (handle_of[k] == r.handle) i = k;
        CHECK(i >= 0 && !seen[i], "%s: unknown or repeated handle %lld", what, (long long)r.handle);
        if (i >= 0 && !seen[i]) {
            got[i] = r;
            seen[i] = 1;
            have++;
        } else {
            lisa_response_free(&r);
        }
    }
    CHECK(have == NREQ, "%s: %d of %d responses", what, have, NREQ);
    for (int i = 0; i < NREQ; i++) {
        if (i == cancel_idx) {
            CHECK(got[i].status == LISA_ERR_CANCELLED || got[i].status == alone[i].status,
                  "%s: cancelled request status %d", what, got[i].status);
            if (got[i].status == LISA_ERR_CANCELLED) cs->n_checked++;
            continue;
        }
        compare(what, i, &got[i], &alone[i], cs);
    }
    for (int i = 0; i < NREQ; i++) lisa_response_free(&got[i]);
    free(got);
    lisa_engine_free(e);
}

/* One image, 16 prompts in 4 submissions: one CLIP and one SAM encoder pass. */
static void check_shared_image(const char *model, const char *fix) {
    lisa_engine *e = engine_open(model, 4, 64, LISA_SCHED_CONTINUOUS);
    if (!e) return;
    char path[4200];
    snprintf(path, sizeof path, "%s/images/coffee.jpg", fix);
    uint8_t *bytes;
    size_t n;
    CHECK(lisa_image_read_file(path, NULL, &bytes, &n) == LISA_OK, "read");
    int masks = 0;
    for (int s = 0; s < 4; s++) {
        for (int k = 0; k < 4; k++) {
            char prompt[64];
            snprintf(prompt, sizeof prompt, "Segment object number %d.", s * 4 + k);
            lisa_request rq = {.image = bytes, .image_size = n, .prompt = prompt,
                               .answer = k % 2 ? "[SEG]." : NULL, .max_new_tokens = 8};
            CHECK(lisa_engine_submit(e, &rq, NULL) == LISA_OK, "submit");
        }
        while (lisa_engine_pending(e)) CHECK(lisa_engine_step(e) == LISA_OK, "step");
        lisa_response r[4];
        int got = lisa_engine_take_finished(e, r, 4);
        CHECK(got == 4, "submission %d: %d responses", s, got);
        for (int k = 0; k < got; k++) {
            CHECK(r[k].status == LISA_OK, "shared image request: %s", r[k].error);
            masks += r[k].n_masks;
            lisa_response_free(&r[k]);
        }
    }
    lisa_engine_stats st;
    lisa_engine_stats_get(e, &st);
    fprintf(stderr, "one image, 16 prompts in 4 submissions: %lld CLIP pass(es) over %lld image(s), "
            "%lld SAM encoder pass(es) over %lld image(s), %lld masks decoded\n",
            (long long)st.clip_passes, (long long)st.clip_images, (long long)st.sam_passes,
            (long long)st.sam_images, (long long)st.sam_decodes);
    CHECK(masks >= 8, "%d masks (8 teacher-forced [SEG]s at least)", masks);
    CHECK(st.clip_passes == 1 && st.clip_images == 1, "CLIP ran %lld times", (long long)st.clip_images);
    CHECK(st.sam_passes == 1 && st.sam_images == 1, "SAM encoder ran %lld times",
          (long long)st.sam_images);
    free(bytes);
    lisa_engine_free(e);
}

int main(int argc, char **argv) {
    const char *fix = argc > 1 ? argv[1] : "tests/fixtures";
    char model[4096];
    snprintf(model, sizeof model, "%s/lisa-tiny/model", fix);
    test_req *t = calloc(NREQ, sizeof *t);
    uint8_t *owned[NREQ + 1];
    int n_owned = 0;
    make_requests(fix, t, owned, &n_owned);

    /* the baseline: one at a time */
    lisa_response *alone = calloc(NREQ, sizeof *alone);
    lisa_engine *e = engine_open(model, 1, 512, LISA_SCHED_CONTINUOUS);
    if (!e) return test_finish("test-engine");
    int kinds[4] = {0, 0, 0, 0};
    for (int i = 0; i < NREQ; i++) {
        CHECK(lisa_engine_run(e, &t[i].rq, 1, &alone[i], NULL, NULL) == LISA_OK, "run alone");
        if (alone[i].status != LISA_OK) kinds[3]++;
        else kinds[alone[i].n_masks > 2 ? 2 : alone[i].n_masks]++;
    }
    lisa_engine_free(e);
    fprintf(stderr, "baseline: %d requests with 0 masks, %d with 1, %d with 2+, %d failed\n",
            kinds[0], kinds[1], kinds[2], kinds[3]);
    CHECK(kinds[0] && kinds[1] && kinds[2] && kinds[3] == 4, "the mix lacks a kind");
    CHECK(alone[5].status == LISA_ERR_IO && strstr(alone[5].error, "no-such-image"),
          "missing image: %s", alone[5].error);
    CHECK(alone[11].status == LISA_ERR_FORMAT && strstr(alone[11].error, "corrupt.jpg"),
          "corrupt image: %s", alone[11].error);
    CHECK(alone[17].status != LISA_OK, "empty prompt: %s", alone[17].error);
    CHECK(alone[23].status == LISA_ERR_ARG && strstr(alone[23].error, "prompt too long"),
          "long prompt: %s", alone[23].error);

    cmp_stat cs = {0, 0};
    const int budgets[] = {8, 37, 512}, slots[] = {3, 8};
    int run = 0;
    for (int b = 0; b < 3; b++)
        for (int s = 0; s < 2; s++, run++) {
            if (budgets[b] < slots[s]) continue;
            run_mixed(model, t, alone, slots[s], budgets[b], LISA_SCHED_CONTINUOUS, 2 + run * 8, &cs);
        }
    run_mixed(model, t, alone, 4, 64, LISA_SCHED_STATIC, 44, &cs);
    fprintf(stderr, "%d mixed-run responses equal to one at a time (ids and masks identical, "
            "worst [SEG] embedding rel err %.3g, tolerance %.0e)\n", cs.n_checked, cs.worst_emb, TOL_EMB);

    check_shared_image(model, fix);

    for (int i = 0; i < NREQ; i++) lisa_response_free(&alone[i]);
    for (int i = 0; i < n_owned; i++) free(owned[i]);
    free(alone);
    free(t);
    return test_finish("test-engine");
}
