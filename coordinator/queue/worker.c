/* worker.c: see worker.h. The engine-driving loop over a queue feed. Each
 * pass: the feed's periodic work (and the cancels it asks for), then new
 * jobs while the engine has free slots (waiting up to 1 s for one only when
 * the engine is idle, so a busy engine is never held up by the queue), one
 * engine step, and the finished responses back to the feed.
 *
 * Deliberately not here: connecting, signals, printing (the commands). */
#include "worker.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WORKER_IDLE_BLOCK_MS 1000
#define WORKER_CANCELS 64

static int64_t worker_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The jobs in the engine: its handle and the feed's tag. */
typedef struct {
    int64_t handle;
    void *tag;
} worker_slot;

static double worker_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Charges the seconds since *t0 to *acc and restarts the clock there. */
static void worker_charge(double *acc, double *t0) {
    double t = worker_now_s();
    *acc += t - *t0;
    *t0 = t;
}

static void worker_sleep_ms(int ms) {
    struct timespec ts = {0, (long)ms * 1000000L};
    nanosleep(&ts, NULL);
}

/* Hands every finished response to the feed. */
static void worker_drain(lisa_engine *e, lisa_qfeed *f, worker_slot *slots, int *n,
                         lisa_worker_stats *ws) {
    lisa_response r;
    double t0 = worker_now_s();
    while (lisa_engine_take_finished(e, &r, 1) == 1) {
        worker_charge(&ws->engine_s, &t0);
        for (int i = 0; i < *n; i++)
            if (slots[i].handle == r.handle) {
                lisa_qfeed_done(f, slots[i].tag, &r);
                slots[i] = slots[--*n];
                break;
            }
        lisa_response_free(&r);
        worker_charge(&ws->feed_s, &t0);
    }
    worker_charge(&ws->engine_s, &t0);
}

/* A job the engine could not even record: failed back to the feed. */
static void worker_refuse(lisa_qfeed *f, void *tag, lisa_status st) {
    lisa_response r;
    memset(&r, 0, sizeof r);
    r.status = st;
    r.stop = LISA_STOP_ERROR;
    snprintf(r.error, sizeof r.error, "%s", lisa_error_get());
    lisa_qfeed_done(f, tag, &r);
}

lisa_status lisa_worker_run(lisa_engine *e, lisa_qfeed *f, const lisa_worker_opts *o) {
    int batch = o->batch > 0 ? o->batch : 1, n = 0;
    worker_slot *slots = calloc((size_t)batch, sizeof *slots);
    if (!slots) return lisa_error_set(LISA_ERR_NOMEM, "worker: out of memory");
    if (o->max_jobs > 0) lisa_qfeed_set_limit(f, o->max_jobs);
    lisa_worker_stats local, *ws = o->stats ? o->stats : &local;
    memset(ws, 0, sizeof *ws);
    lisa_status failed = LISA_OK;
    int source_done = 0;                  /* no more jobs will be taken */
    int64_t last_job_ms = worker_now_ms();
    double t0 = worker_now_s();
    for (;;) {
        void *cancel[WORKER_CANCELS];
        int nc = lisa_qfeed_tick(f, cancel, WORKER_CANCELS);
        worker_charge(&ws->feed_s, &t0);
        for (int i = 0; i < nc; i++) lisa_engine_cancel(e, lisa_qfeed_tag_handle(cancel[i]));
        worker_charge(&ws->engine_s, &t0);
        /* after stop, jobs already started still come out of next() */
        while (!source_done && n < batch) {
            int idle = lisa_engine_pending(e) == 0;
            lisa_request rq;
            void *tag = NULL;
            int k = lisa_qfeed_next(f, idle ? WORKER_IDLE_BLOCK_MS : 0, &rq, &tag);
            worker_charge(&ws->feed_s, &t0);
            if (k < 0) {
                source_done = 1;
                break;
            }
            if (k == 0) {
                if (idle && o->exit_when_empty && lisa_qfeed_in_flight(f) == 0 &&
                    worker_now_ms() - last_job_ms >= WORKER_IDLE_BLOCK_MS) {
                    if (lisa_qfeed_queue_empty(f)) source_done = 1;
                    else last_job_ms = worker_now_ms();
                }
                break;
            }
            last_job_ms = worker_now_ms();
            int64_t h = -1;
            lisa_status st = lisa_engine_submit(e, &rq, &h);
            worker_charge(&ws->engine_s, &t0);
            if (st != LISA_OK) {
                worker_refuse(f, tag, st);
                worker_charge(&ws->feed_s, &t0);
                continue;
            }
            lisa_qfeed_tag_set_handle(tag, h);
            slots[n].handle = h;
            slots[n++].tag = tag;
        }
        if (lisa_engine_pending(e)) {
            lisa_status st = lisa_engine_step(e);
            ws->steps++;
            worker_charge(&ws->engine_s, &t0);
            if (st != LISA_OK && failed == LISA_OK) {
                /* the engine fails its live requests (retryable: backend)
                 * and would fail every later one at once: take no more */
                failed = st;
                source_done = 1;
            }
        }
        worker_drain(e, f, slots, &n, ws);
        t0 = worker_now_s();
        if (source_done && n == 0 && lisa_engine_pending(e) == 0) {
            if (lisa_qfeed_in_flight(f) == 0) break;
            worker_sleep_ms(20);   /* results wait for Redis: tick retries them */
            worker_charge(&ws->feed_s, &t0);
        }
    }
    free(slots);
    return failed;
}
