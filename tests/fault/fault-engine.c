/* fault-engine.c: fault-injection sweeps of the engine (kernels/fault.h),
 * in process, on the tiny LISA (tests/fixtures/lisa-tiny/model), fp32 CPU.
 *
 *   fault-engine FIXTURES load [KIND...]     model load
 *   fault-engine FIXTURES request [KIND...]  one request on a loaded engine
 * KIND: alloc, io, backend (default: all three).
 *
 * load: a dry run counts the events of KIND in lisa_engine_init; then for
 * N = 1, 2, ... the Nth event fails: init must return an error status with
 * a message (or, where the fault is absorbed, a working engine; counted
 * and printed as "absorbed"), never crash; the sweep ends at the first N
 * that no event reaches, whose init must succeed.
 * request: the engine is loaded once and a reference request run (image
 * read from its file at submit, teacher-forced "[SEG]" answer: tokenizer,
 * image decode, CLIP, the LLM, SAM encoder and decoder, postprocess). For
 * each N the request runs with the Nth event failing: it must fail with a
 * message (an allocation failure with LISA_ERR_NOMEM, which a worker
 * retries), or give the reference answer; then, disarmed, the same request
 * must give exactly the reference (status, ids, text, masks, IoU): a fault
 * leaves nothing behind in the engine.
 * Every distinct error message is printed. Leaks: the sanitizer build's
 * leak check at exit covers every N (the engine and every response are
 * freed).
 *
 * Bounds: LISA_FAULT_POINTS=k sweeps about k N per kind, evenly strided
 * (the first and the last N always; tests/fault/fault.cmake sets it for
 * CI unless -DLISA_FAULT_SWEEP=full); LISA_FAULT_FROM=n starts at n
 * (debugging a crash at n). Default: every N. Needs a
 * -DLISA_FAULT_INJECTION=ON build; without one it exits 77 (skipped). */
#include <string.h>

#include "engine.h"
#include "fault.h"
#include "testutil.h"

#define MAX_MSGS 512

static char g_msgs[MAX_MSGS][256];
static int g_n_msgs;

static void msg_note(const char *m) {
    for (int i = 0; i < g_n_msgs; i++)
        if (!strcmp(g_msgs[i], m)) return;
    if (g_n_msgs < MAX_MSGS) snprintf(g_msgs[g_n_msgs++], sizeof g_msgs[0], "%s", m);
}

static long env_long(const char *name, long dflt) {
    const char *v = getenv(name);
    return v && *v ? strtol(v, NULL, 10) : dflt;
}

static void params_set(lisa_engine_params *p, const char *model) {
    memset(p, 0, sizeof *p);
    p->model_dir = model;
    p->backend = LISA_BACKEND_CPU;
    p->threads = 2;
    p->dtype = LISA_DTYPE_F32;
    p->max_batch = 2;
    p->token_budget = 64;
    p->max_new_tokens = 8;
}

/* The stride that sweeps about points of events N (points 0: all). */
static long sweep_stride(long events, long points) {
    return points > 0 && events > points ? (events + points - 1) / points : 1;
}

/* Whether N runs: the first, the last, every stride-th, and any past the
 * events counted (the run that must see no fault). */
static int n_wanted(long n, long events, long stride) {
    return stride <= 1 || n == 1 || n >= events || n % stride == 0;
}

typedef struct {
    long swept, failed, absorbed, stride;
} sweep_stat;

static void sweep_load(const char *model, lisa_fault_kind kind, long from, long points,
                       sweep_stat *ss) {
    lisa_engine_params p;
    params_set(&p, model);
    lisa_engine *e = NULL;
    lisa_fault_arm(kind, 0);
    lisa_status st = lisa_engine_init(&e, &p);
    long events = lisa_fault_count(kind);
    CHECK(st == LISA_OK, "unfaulted load: %s", lisa_error_get());
    lisa_engine_free(e);
    long stride = ss->stride = sweep_stride(events, points);
    fprintf(stderr, "load: %ld %s events\n", events, lisa_fault_kind_name(kind));
    for (long n = from;; n++) {
        if (!n_wanted(n, events, stride)) continue;
        e = NULL;
        lisa_fault_arm(kind, n);
        st = lisa_engine_init(&e, &p);
        int fired = lisa_fault_fired(kind);
        lisa_fault_arm(kind, 0);
        if (!fired) {
            CHECK(st == LISA_OK, "load with no %s fault (n %ld) failed: %s",
                  lisa_fault_kind_name(kind), n, lisa_error_get());
            CHECK(n > events, "%s n %ld of %ld events did not fire", lisa_fault_kind_name(kind), n,
                  events);
            lisa_engine_free(e);
            break;
        }
        ss->swept++;
        if (st == LISA_OK) {
            ss->absorbed++;
            fprintf(stderr, "load %s n %ld absorbed (the engine loaded)\n", lisa_fault_kind_name(kind), n);
            CHECK(e != NULL, "load OK without an engine");
            lisa_engine_free(e);
            continue;
        }
        ss->failed++;
        CHECK(e == NULL, "failed load (%s n %ld) left an engine", lisa_fault_kind_name(kind), n);
        const char *m = lisa_error_get();
        CHECK(m[0] != 0, "load with %s n %ld failing: status %d without a message",
              lisa_fault_kind_name(kind), n, st);
        msg_note(m);
    }
}

typedef struct {
    lisa_request rq;
    char path[4200];
} one_req;

static int same_response(const lisa_response *a, const lisa_response *b) {
    if (a->status != b->status || strcmp(a->error, b->error) || a->n_ids != b->n_ids) return 0;
    if (a->n_ids && memcmp(a->ids, b->ids, (size_t)a->n_ids * sizeof *a->ids)) return 0;
    if ((a->text == NULL) != (b->text == NULL) || (a->text && strcmp(a->text, b->text))) return 0;
    if (a->n_masks != b->n_masks || a->w != b->w || a->h != b->h) return 0;
    for (int k = 0; k < a->n_masks; k++)
        if (memcmp(a->masks[k].mask, b->masks[k].mask, (size_t)a->w * (size_t)a->h) ||
            a->masks[k].iou != b->masks[k].iou)
            return 0;
    return 1;
}

static void sweep_request(lisa_engine *e, const one_req *q, const lisa_response *ref,
                          lisa_fault_kind kind, long from, long points, sweep_stat *ss) {
    const char *kn = lisa_fault_kind_name(kind);
    lisa_response r;
    lisa_fault_arm(kind, 0);
    lisa_status st = lisa_engine_run(e, &q->rq, 1, &r, NULL, NULL);
    long events = lisa_fault_count(kind);
    CHECK(st == LISA_OK && same_response(&r, ref), "unfaulted request differs: %s", r.error);
    lisa_response_free(&r);
    long stride = ss->stride = sweep_stride(events, points);
    fprintf(stderr, "request: %ld %s events\n", events, kn);
    for (long n = from;; n++) {
        if (!n_wanted(n, events, stride)) continue;
        lisa_fault_arm(kind, n);
        st = lisa_engine_run(e, &q->rq, 1, &r, NULL, NULL);
        int fired = lisa_fault_fired(kind);
        lisa_fault_arm(kind, 0);
        char msg[256];
        snprintf(msg, sizeof msg, "%s", st != LISA_OK ? lisa_error_get() : r.error);
        if (fired) ss->swept++;
        if (!fired || (st == LISA_OK && r.status == LISA_OK)) {
            CHECK(st == LISA_OK && same_response(&r, ref),
                  "request with %s n %ld %s: status %d/%d '%s', not the reference", kn, n,
                  fired ? "absorbed" : "(none fired)", st, r.status, msg);
            if (fired) {
                ss->absorbed++;
                fprintf(stderr, "request %s n %ld absorbed (the reference answer)\n", kn, n);
            }
        } else {
            ss->failed++;
            CHECK(msg[0] != 0, "request with %s n %ld failing: status %d/%d without a message", kn,
                  n, st, r.status);
            /* out of memory must read as such: a worker retries it */
            CHECK(kind != LISA_FAULT_ALLOC || (st != LISA_OK ? st : r.status) == LISA_ERR_NOMEM,
                  "request with alloc n %ld failing: status %d/%d, not out of memory ('%s')", n, st,
                  r.status, msg);
            msg_note(msg);
        }
        lisa_response_free(&r);
        /* the fault must leave nothing behind */
        st = lisa_engine_run(e, &q->rq, 1, &r, NULL, NULL);
        CHECK(st == LISA_OK && same_response(&r, ref),
              "request after %s n %ld: status %d/%d '%s', not the reference", kn, n, st, r.status,
              st != LISA_OK ? lisa_error_get() : r.error);
        lisa_response_free(&r);
        if (!fired) {
            CHECK(n > events, "%s n %ld of %ld events did not fire", kn, n, events);
            break;
        }
    }
}

static int kind_parse(const char *s, lisa_fault_kind *out) {
    for (int k = 0; k < LISA_FAULT_KINDS; k++)
        if (!strcmp(s, lisa_fault_kind_name((lisa_fault_kind)k))) {
            *out = (lisa_fault_kind)k;
            return 1;
        }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3 || (strcmp(argv[2], "load") && strcmp(argv[2], "request"))) {
        fprintf(stderr, "usage: fault-engine FIXTURES load|request [alloc|io|backend...]\n");
        return 2;
    }
    if (!lisa_fault_enabled()) {
        fprintf(stderr, "fault-engine: this build has no fault injection; skipped\n");
        return 77;
    }
    lisa_fault_kind kinds[LISA_FAULT_KINDS] = {LISA_FAULT_ALLOC, LISA_FAULT_IO, LISA_FAULT_BACKEND};
    int nk = 3;
    if (argc > 3) {
        nk = 0;
        for (int i = 3; i < argc && nk < LISA_FAULT_KINDS; i++)
            if (!kind_parse(argv[i], &kinds[nk++])) {
                fprintf(stderr, "fault-engine: unknown kind '%s'\n", argv[i]);
                return 2;
            }
    }
    long points = env_long("LISA_FAULT_POINTS", 0), from = env_long("LISA_FAULT_FROM", 1);
    if (from < 1) from = 1;
    char model[4200];
    snprintf(model, sizeof model, "%s/lisa-tiny/model", argv[1]);
    int load = !strcmp(argv[2], "load");

    lisa_engine *e = NULL;
    one_req q;
    lisa_response ref;
    memset(&ref, 0, sizeof ref);
    if (!load) {
        lisa_engine_params p;
        params_set(&p, model);
        CHECK(lisa_engine_init(&e, &p) == LISA_OK, "engine init: %s", lisa_error_get());
        if (!e) return test_finish("fault-engine");
        memset(&q, 0, sizeof q);
        snprintf(q.path, sizeof q.path, "%s/images/tiny.png", argv[1]);
        q.rq.id = "fault";
        q.rq.image_path = q.path;
        q.rq.prompt = "Segment the cat.";
        q.rq.answer = "Sure, it is [SEG].";
        CHECK(lisa_engine_run(e, &q.rq, 1, &ref, NULL, NULL) == LISA_OK && ref.status == LISA_OK &&
                  ref.n_masks == 1,
              "reference request: %s / %s", lisa_error_get(), ref.error);
    }
    for (int k = 0; k < nk; k++) {
        sweep_stat ss = {0, 0, 0, 1};
        g_n_msgs = 0;
        if (load)
            sweep_load(model, kinds[k], from, points, &ss);
        else
            sweep_request(e, &q, &ref, kinds[k], from, points, &ss);
        fprintf(stderr, "%s %s: %ld N swept (stride %ld), %ld failed cleanly, %ld absorbed, %d "
                "distinct errors:\n", argv[2], lisa_fault_kind_name(kinds[k]), ss.swept, ss.stride,
                ss.failed, ss.absorbed, g_n_msgs);
        for (int i = 0; i < g_n_msgs; i++) fprintf(stderr, "  %s\n", g_msgs[i]);
    }
    lisa_response_free(&ref);
    lisa_engine_free(e);
    return test_finish(load ? "fault-engine load" : "fault-engine request");
}
