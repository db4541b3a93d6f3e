/* fault-worker.c: fault-injection sweep of the worker loop (worker.h over
 * queue-feed.h) against a real redis-server, in process, on the tiny LISA.
 *
 *   fault-worker FIXTURES REDIS_URL [alloc|redis...]   (default: both)
 * Run by fault-worker.sh, which starts the server (tests/queue/redis-env.sh).
 *
 * A reference job runs first, unfaulted. Then for N = 1, 2, ... until no
 * event is reached: a job J is queued; worker A (its own feed, a job limit
 * of one) starts with the Nth event of the kind failing (the feed's start,
 * reads, leases, heartbeats, the engine, storing the result: wherever it
 * lands); then, disarmed, a fresh job K is queued and worker B (another
 * consumer name, so it reclaims what A left started) serves until J and K
 * are final. J must end done with the reference answer (a job failed by
 * the fault is retried: a transient fault must not fail a good job for
 * good), never lost, never left running, never failed; K must be done
 * with the reference answer (the worker serves on). A faulted worker that does not finish within
 * FAULT_WAIT_S is stopped (drain) and counted as a failure. Leaks: the
 * sanitizer build's leak check at exit.
 *
 * Bounds: LISA_FAULT_POINTS=k sweeps about k N per kind, evenly strided
 * (the first and the last always; tests/fault/fault.cmake sets it for CI
 * unless -DLISA_FAULT_SWEEP=full); LISA_FAULT_FROM=n starts at n. Exits
 * 77 without fault injection in the build. */
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "fault.h"
#include "job-codec.h"
#include "queue-feed.h"
#include "queue.h"
#include "redis-conn.h"
#include "testutil.h"
#include "worker.h"

#define FAULT_PREFIX "fault"
#define FAULT_WAIT_S 20
#define FAULT_LEASE_MS 1500
#define MAX_MSGS 256

static volatile int g_stop;
static void on_alarm(int sig) {
    (void)sig;
    g_stop = 1;
}

static char g_msgs[MAX_MSGS][256];
static int g_n_msgs;

static void msg_note(const char *m) {
    for (int i = 0; i < g_n_msgs; i++)
        if (!strcmp(g_msgs[i], m)) return;
    if (g_n_msgs < MAX_MSGS) snprintf(g_msgs[g_n_msgs++], sizeof g_msgs[0], "%s", m);
}

typedef struct {
    const char *url;
    char images[4200];
    const char *roots[1];
    lisa_redis *r;       /* the test's own connection: submit, inspect */
    lisa_queue *q;
    lisa_engine *e;
    uint8_t *req;
    size_t req_len;
    long seq;
} fw_ctx;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Queues one job; its id into id. */
static lisa_status fw_submit(fw_ctx *c, char id[64]) {
    char bid[48], cid[32];
    snprintf(cid, sizeof cid, "j%ld", ++c->seq);
    lisa_queue_submit_opts so = {.name = "fault", .max_attempts = 5};
    lisa_queue_submit_item it = {cid, c->req, c->req_len, "tiny.png", "Segment the cat."};
    char ids[1][64];
    LISA_TRY(lisa_queue_batch_new(c->q, &so, bid, sizeof bid));
    LISA_TRY(lisa_queue_submit(c->q, bid, 0, &it, 1, &so, ids, NULL));
    snprintf(id, 64, "%s", ids[0]);
    return LISA_OK;
}

static void feed_params(fw_ctx *c, lisa_qfeed_params *fp, const char *name) {
    memset(fp, 0, sizeof *fp);
    fp->redis.url = c->url;
    fp->prefix = FAULT_PREFIX;
    fp->worker_name = name;
    fp->device = "cpu";
    fp->batch = 2;
    fp->lease_ms = FAULT_LEASE_MS;
    fp->heartbeat_ms = 200;
    fp->backoff_ms = 10;
    fp->image_roots = c->roots;
    fp->n_image_roots = 1;
    fp->stop = &g_stop;
}

/* One worker run under name with a job limit; 1 when it ended on its own,
 * 0 when the alarm had to stop it. */
static int fw_serve(fw_ctx *c, const char *name, int64_t max_jobs, lisa_status *st_out) {
    lisa_qfeed_params fp;
    feed_params(c, &fp, name);
    g_stop = 0;
    alarm(FAULT_WAIT_S);
    lisa_qfeed *f = NULL;
    lisa_status st = lisa_qfeed_init(&f, &fp);
    if (st == LISA_OK) {
        /* exit_when_empty too: a job the feed refuses or fails before the
         * engine does not count against the limit */
        lisa_worker_opts o = {.batch = 2, .max_jobs = max_jobs, .exit_when_empty = 1};
        st = lisa_worker_run(c->e, f, &o);
    }
    lisa_qfeed_free(f);
    alarm(0);
    int ended = !g_stop;
    g_stop = 0;
    *st_out = st;
    return ended;
}

/* The job's state and, when done, its decoded result. */
static lisa_job_state fw_state(fw_ctx *c, const char *id, lisa_response *res, char *err, size_t n) {
    lisa_queue_job_info ji;
    memset(res, 0, sizeof *res);
    if (lisa_queue_job_get(c->q, id, &ji) != LISA_OK) return LISA_JOB_UNKNOWN;
    snprintf(err, n, "%s", ji.error);
    if (ji.state == LISA_JOB_DONE) {
        uint8_t *buf = NULL;
        size_t len = 0;
        if (lisa_queue_result_get(c->q, id, &buf, &len) != LISA_OK ||
            lisa_job_result_decode(buf, len, NULL, res, NULL) != LISA_OK) {
            free(buf);
            return LISA_JOB_UNKNOWN;
        }
        free(buf);
    }
    return ji.state;
}

static int same_response(const lisa_response *a, const lisa_response *b) {
    if (a->status != b->status || a->n_ids != b->n_ids || a->n_masks != b->n_masks) return 0;
    if (a->n_ids && memcmp(a->ids, b->ids, (size_t)a->n_ids * sizeof *a->ids)) return 0;
    if ((a->text == NULL) != (b->text == NULL) || (a->text && strcmp(a->text, b->text))) return 0;
    if (a->w != b->w || a->h != b->h) return 0;
    for (int k = 0; k < a->n_masks; k++)
        if (memcmp(a->masks[k].mask, b->masks[k].mask, (size_t)a->w * (size_t)a->h)) return 0;
    return 1;
}

/* Serves with worker B until every job of ids is final (or the time is
 * up); returns 1 when they all are. */
static int fw_settle(fw_ctx *c, char (*ids)[64], int n) {
    double t0 = now_s();
    while (now_s() - t0 < FAULT_WAIT_S) {
        int left = 0;
        for (int i = 0; i < n; i++) {
            lisa_queue_job_info ji;
            if (lisa_queue_job_get(c->q, ids[i], &ji) != LISA_OK || !lisa_job_state_final(ji.state))
                left++;
        }
        if (!left) return 1;
        lisa_status st;
        /* B takes one job at a time; a job A left started is reclaimed
         * once its lease is over, a retry once its backoff is */
        fw_serve(c, "fault-b", 1, &st);
        CHECK(st == LISA_OK, "worker B: %s", lisa_error_get());
    }
    return 0;
}

typedef struct {
    long swept, done, failed, hung, stride;
} fw_stat;

static void fw_sweep(fw_ctx *c, lisa_fault_kind kind, const lisa_response *ref, long from,
                     long points, fw_stat *ss) {
    const char *kn = lisa_fault_kind_name(kind);
    long events = -1, stride = 1;
    /* n == 0: the dry run that counts the events */
    for (long n = from > 1 ? from : 0;; n++) {
        if (n > 1 && n < events && n % stride) continue;
        char ids[2][64];
        CHECK(fw_submit(c, ids[0]) == LISA_OK, "submit J: %s", lisa_error_get());
        lisa_fault_arm(kind, n);
        lisa_status st;
        int ended = fw_serve(c, "fault-a", 1, &st);
        int fired = lisa_fault_fired(kind);
        if (n == 0) {
            events = lisa_fault_count(kind);
            if (points > 0 && events > points) stride = (events + points - 1) / points;
            ss->stride = stride;
        }
        lisa_fault_arm(kind, 0);
        if (n == 0) fprintf(stderr, "worker: %ld %s events for one job\n", events, kn);
        if (fired) ss->swept++;
        if (!ended) ss->hung++;
        CHECK(ended, "worker A with %s n %ld failing did not end within %d s", kn, n, FAULT_WAIT_S);
        if (st != LISA_OK) msg_note(lisa_error_get());
        CHECK(fw_submit(c, ids[1]) == LISA_OK, "submit K: %s", lisa_error_get());
        CHECK(fw_settle(c, ids, 2), "after %s n %ld: J or K not final within %d s (lost?)", kn, n,
              FAULT_WAIT_S);
        lisa_response rj, rk;
        char ej[512], ek[512];
        lisa_job_state sj = fw_state(c, ids[0], &rj, ej, sizeof ej);
        lisa_job_state sk = fw_state(c, ids[1], &rk, ek, sizeof ek);
        if (fired && sj == LISA_JOB_DONE) ss->done++;
        else if (fired) ss->failed++;
        CHECK(sj == LISA_JOB_DONE && same_response(&rj, ref),
              "after %s n %ld: J %s (%s), not done with the reference answer", kn, n,
              lisa_job_state_name(sj), ej);
        if (ej[0]) msg_note(ej);
        CHECK(sk == LISA_JOB_DONE && same_response(&rk, ref),
              "after %s n %ld: the next job K is %s (%s), not the reference", kn, n,
              lisa_job_state_name(sk), ek);
        lisa_response_free(&rj);
        lisa_response_free(&rk);
        if (n > 0 && !fired) {
            /* the count varies a little from run to run (heartbeats and
             * lease renewals go by the clock): the sweep ends at the
             * first N no run reaches */
            if (n <= events)
                fprintf(stderr, "worker %s: n %ld of the dry run's %ld events not reached: the "
                        "sweep ends there\n", kn, n, events);
            break;
        }
    }
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: fault-worker FIXTURES REDIS_URL [alloc|redis...]\n");
        return 2;
    }
    if (!lisa_fault_enabled()) {
        fprintf(stderr, "fault-worker: this build has no fault injection; skipped\n");
        return 77;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    lisa_fault_kind kinds[2] = {LISA_FAULT_ALLOC, LISA_FAULT_REDIS};
    int nk = 2;
    if (argc > 3) {
        nk = 0;
        for (int i = 3; i < argc && nk < 2; i++) {
            if (!strcmp(argv[i], "alloc")) kinds[nk++] = LISA_FAULT_ALLOC;
            else if (!strcmp(argv[i], "redis")) kinds[nk++] = LISA_FAULT_REDIS;
            else {
                fprintf(stderr, "fault-worker: unknown kind '%s'\n", argv[i]);
                return 2;
            }
        }
    }
    const char *pv = getenv("LISA_FAULT_POINTS"), *fv = getenv("LISA_FAULT_FROM");
    long points = pv && *pv ? strtol(pv, NULL, 10) : 0, from = fv && *fv ? strtol(fv, NULL, 10) : 1;

    fw_ctx c;
    memset(&c, 0, sizeof c);
    c.url = argv[2];
    snprintf(c.images, sizeof c.images, "%s/images", argv[1]);
    c.roots[0] = c.images;
    char model[4200];
    snprintf(model, sizeof model, "%s/lisa-tiny/model", argv[1]);
    lisa_engine_params p;
    memset(&p, 0, sizeof p);
    p.model_dir = model;
    p.backend = LISA_BACKEND_CPU;
    p.threads = 2;
    p.dtype = LISA_DTYPE_F32;
    p.max_batch = 2;
    p.token_budget = 64;
    p.max_new_tokens = 8;
    lisa_redis_params rp = {.url = c.url, .retry_max_s = 5};
    CHECK(lisa_redis_connect(&c.r, &rp) == LISA_OK, "connect: %s", lisa_error_get());
    CHECK(c.r && lisa_queue_open(&c.q, c.r, FAULT_PREFIX) == LISA_OK && lisa_queue_setup(c.q) == LISA_OK,
          "queue: %s", lisa_error_get());
    CHECK(c.q && lisa_engine_init(&c.e, &p) == LISA_OK, "engine: %s", lisa_error_get());
    lisa_job_request jr;
    memset(&jr, 0, sizeof jr);
    jr.image_path = (char *)"tiny.png";
    jr.image_label = (char *)"tiny.png";
    jr.prompt = (char *)"Segment the cat.";
    jr.answer = (char *)"Sure, it is [SEG].";
    CHECK(c.e && lisa_job_request_encode(&jr, NULL, &c.req, &c.req_len) == LISA_OK, "encode: %s",
          lisa_error_get());
    lisa_response ref;
    memset(&ref, 0, sizeof ref);
    if (c.req) {
        char id[1][64];
        lisa_status st;
        CHECK(fw_submit(&c, id[0]) == LISA_OK, "submit: %s", lisa_error_get());
        CHECK(fw_serve(&c, "fault-b", 1, &st) && st == LISA_OK, "reference run: %s", lisa_error_get());
        char err[512];
        CHECK(fw_state(&c, id[0], &ref, err, sizeof err) == LISA_JOB_DONE && ref.status == LISA_OK &&
                  ref.n_masks == 1,
              "reference job not done with a mask: %s", err);
    }
    for (int k = 0; k < nk && g_test_failures == 0; k++) {
        fw_stat ss = {0, 0, 0, 0, 1};
        g_n_msgs = 0;
        fw_sweep(&c, kinds[k], &ref, from, points, &ss);
        fprintf(stderr, "worker %s: %ld N swept (stride %ld): J done %ld, not done %ld, "
                "workers stopped by the alarm %ld; %d distinct errors:\n",
                lisa_fault_kind_name(kinds[k]), ss.swept, ss.stride, ss.done, ss.failed, ss.hung,
                g_n_msgs);
        for (int i = 0; i < g_n_msgs; i++) fprintf(stderr, "  %s\n", g_msgs[i]);
    }
    lisa_response_free(&ref);
    free(c.req);
    lisa_engine_free(c.e);
    lisa_queue_free(c.q);
    lisa_redis_free(c.r);
    return test_finish("fault-worker");
}
