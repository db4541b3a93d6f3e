/* queue-feed.c: see queue-feed.h. The queue as a worker's job source and
 * result sink: one Redis connection, the jobs this worker started, and the
 * timers of the periodic work.
 *
 * A job's life here: read (or reclaimed) and started in Redis -> decoded
 * and checked (a bad one is refused at once: it fails, final, and never
 * reaches the caller) -> ready -> handed out by next() -> done() packs its
 * result or failure -> stored (finish / fail), or kept until Redis is back.
 * Every job started and not yet stored is in one list, so touch, heartbeat
 * and the stop logic see them all.
 *
 * A job started before without a result (attempt 2 and later: its worker
 * died, hung or lost it, or it failed retryably) runs alone, so a poison
 * job takes no other job with it again (feed_suspect).
 *
 * Redis going away: a call that finds the connection broken marks it so;
 * from then on every caller asks feed_connected, which tries one reconnect
 * when its backoff (100 ms doubling to 5 s) is due and otherwise says no at
 * once, so the engine keeps running while Redis is away, with results
 * waiting here. After a reconnect the functions and groups are installed
 * again (the server may have lost them).
 *
 * Test switches (environment, for the fault tests of tests/queue):
 *   LISA_FAULT_HOLD_MS=N      keep each result N ms before storing it; the
 *                             job stays running (leased, in its slot)
 *   LISA_FAULT_CRASH_PROMPT=S SIGKILL this process on starting a job whose
 *                             prompt is S (a poison job)
 *
 * Deliberately not here: the engine or the cluster (callers), what the
 * messages contain (job-codec.c), the Redis functions (queue.lua). */
#include "queue-feed.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FEED_LOG "lisa worker: "
#define FEED_PATH_MAX 4096
#define FEED_EMPTY_READ_MS 10      /* a non-blocking read that found nothing is not repeated sooner */
#define FEED_PROMOTE_MS 1000
#define FEED_STOP_GRACE_MS 60000   /* after stop, unstored results are kept trying this long */
#define FEED_STORE_TRIES 5         /* error replies (not lost connections) before a result is dropped */
#define FEED_RECONNECT_MIN_MS 100
#define FEED_RECONNECT_MAX_MS 5000
#define FEED_RATE_BUCKETS 60       /* one per second: jobs/s over the last minute */

typedef enum { QJ_READY = 0, QJ_RUNNING, QJ_STORE } qj_state;

typedef struct qf_job {
    struct qf_job *next;
    lisa_queue_job job;            /* id, stream, entry, token (req freed after decoding) */
    lisa_job_request req;          /* decoded; rq's pointers point into it */
    char path[FEED_PATH_MAX];      /* the resolved image path */
    int64_t handle;                /* the caller's engine handle */
    qj_state state;
    int64_t t_out_ms;              /* handed out (monotonic), for run_ms */
    lisa_queue_touch_result verdict; /* the last touch's */
    int reported;                  /* returned by tick() for cancelling */
    /* what to store (QJ_STORE) */
    int finish;                    /* 1 lisa_queue_finish, 0 lisa_queue_fail */
    int retryable;
    int drop;                      /* nothing to store: forget it */
    char error[256];
    uint8_t *res;
    size_t res_len;
    int store_errors;
    int64_t hold_until;            /* LISA_FAULT_HOLD_MS: not stored before */
} qf_job;

struct lisa_qfeed {
    lisa_redis *r;
    lisa_queue *q;
    lisa_redis_params rp;
    char url[1024];
    char password_file[1024];
    char client_name[160];
    char name[128], host[128], device[64];
    int batch;
    int64_t lease_ms, heartbeat_ms, backoff_ms;
    char **roots;
    int n_roots;
    lisa_job_limits limits;
    volatile int *stop;
    int local_stop;

    qf_job *jobs;                  /* every job started and not yet stored */
    lisa_queue_job *buf;           /* (batch) read / reclaim results */
    lisa_queue_job *touch_buf;     /* (batch) jobs to touch */
    lisa_queue_touch_result *verdicts;
    qf_job **touch_jobs;

    int64_t limit, handed;         /* jobs to hand out at most (0: no limit), handed so far */
    int64_t n_done, n_failed, n_stale;
    int64_t started_wall_ms;
    int64_t rate_sec[FEED_RATE_BUCKETS], rate_count[FEED_RATE_BUCKETS];

    int broken, need_setup, attempt;
    int64_t retry_at;              /* next reconnect attempt */
    int64_t reclaim_at, touch_at, heartbeat_at, promote_at, empty_read_at;
    int64_t stop_seen_at;          /* 0 until *stop was seen */
    int64_t error_log_at;          /* rate limit for repeated read errors */
    int hb_busy;                   /* the state the last heartbeat said (1 busy) */
    int64_t hb_sent_at;
    int64_t hold_ms;               /* test switches (see the top) */
    const char *crash_prompt;
};

static int64_t feed_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t feed_wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void feed_sleep_ms(int64_t ms) {
    if (ms <= 0) return;
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

static void feed_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void feed_log(const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, FEED_LOG "%s\n", line);
    fflush(stderr);
}

static int feed_stopping(const lisa_qfeed *f) { return *f->stop != 0; }

static void feed_job_free(qf_job *j) {
    lisa_queue_job_clear(&j->job);
    lisa_job_request_free(&j->req);
    free(j->res);
    free(j);
}

static void feed_unlink(lisa_qfeed *f, qf_job *j) {
    for (qf_job **p = &f->jobs; *p; p = &(*p)->next)
        if (*p == j) {
            *p = j->next;
            return;
        }
}

/* A result held back by LISA_FAULT_HOLD_MS: still running, as far as the
 * queue and the slots are concerned. */
static int feed_held(const qf_job *j, int64_t now) {
    return j->state == QJ_STORE && j->hold_until > now;
}

/* Jobs that hold a slot: handed out and not done, or held; *suspects
 * (may be NULL) counts those among them started before (see feed_suspect). */
static int feed_busy(const lisa_qfeed *f, int *suspects) {
    int64_t now = feed_now_ms();
    int n = 0, ns = 0;
    for (const qf_job *j = f->jobs; j; j = j->next)
        if (j->state == QJ_RUNNING || feed_held(j, now)) {
            n++;
            ns += j->job.token > 1;
        }
    if (suspects) *suspects = ns;
    return n;
}

/* A job started before without a result (its worker died, hung or lost
 * it, or it failed retryably) may be what killed that worker: it runs
 * alone, so a poison job takes no other job down with it again, and the
 * jobs it took down the first time finish on their next attempt instead of
 * following it to the dead letters. */
static int feed_suspect(const qf_job *j) { return j->job.token > 1; }

/* ---- the connection ---------------------------------------------------- */

static int64_t feed_reconnect_delay(int attempt) {
    int64_t d = FEED_RECONNECT_MIN_MS;
    for (int i = 1; i < attempt && d < FEED_RECONNECT_MAX_MS; i++) d *= 2;
    if (d > FEED_RECONNECT_MAX_MS) d = FEED_RECONNECT_MAX_MS;
    int64_t jitter = d / 4;
    return d - jitter + (jitter ? rand() % (2 * jitter + 1) : 0);
}

/* Called after any failed call: a lost connection is noted for
 * feed_connected; an error reply is the caller's. Returns 1 when lost. */
static int feed_lost(lisa_qfeed *f) {
    if (lisa_redis_ok(f->r)) return 0;
    if (!f->broken) {
        feed_log("lost the connection to %s: %s", lisa_redis_where(f->r), lisa_error_get());
        f->broken = 1;
        f->attempt = 0;
        f->retry_at = feed_now_ms();
    }
    return 1;
}

/* 1 when Redis can be used now: reconnects (one attempt when its backoff is
 * due) and reinstalls the functions and groups after a reconnect. */
static int feed_connected(lisa_qfeed *f) {
    if (!f->broken && !f->need_setup && lisa_redis_ok(f->r)) return 1;
    int64_t now = feed_now_ms();
    if (now < f->retry_at) return 0;
    if (f->broken || !lisa_redis_ok(f->r)) {
        f->broken = 1;
        f->attempt++;
        if (f->attempt <= 5 || f->attempt % 10 == 0)
            feed_log("reconnecting to %s (attempt %d)", lisa_redis_where(f->r), f->attempt);
        if (lisa_redis_reconnect(f->r, 0, NULL) != LISA_OK) {
            f->retry_at = feed_now_ms() + feed_reconnect_delay(f->attempt);
            return 0;
        }
        feed_log("reconnected to %s", lisa_redis_where(f->r));
        f->broken = 0;
        f->attempt = 0;
        f->need_setup = 1;
    }
    if (f->need_setup) {
        lisa_status st = lisa_queue_setup(f->q);
        if (st != LISA_OK) {
            if (feed_lost(f)) return 0;
            feed_log("cannot install the queue's functions and groups: %s", lisa_error_get());
            f->retry_at = feed_now_ms() + FEED_RECONNECT_MAX_MS;
            return 0;
        }
        f->need_setup = 0;
    }
    return 1;
}

/* An error reply (not a lost connection) from a queue call: logged at most
 * every 5 s; the next call reinstalls the functions and groups first, in
 * case the server lost them (-NOGROUP, unknown function). */
static void feed_error_reply(lisa_qfeed *f, const char *what) {
    int64_t now = feed_now_ms();
    if (now >= f->error_log_at) {
        feed_log("%s: %s", what, lisa_error_get());
        f->error_log_at = now + 5000;
    }
    f->need_setup = 1;
    f->retry_at = now + FEED_RECONNECT_MIN_MS;
}

/* ---- storing results --------------------------------------------------- */

static void feed_rate_add(lisa_qfeed *f) {
    int64_t sec = feed_now_ms() / 1000;
    int k = (int)(sec % FEED_RATE_BUCKETS);
    if (f->rate_sec[k] != sec) {
        f->rate_sec[k] = sec;
        f->rate_count[k] = 0;
    }
    f->rate_count[k]++;
}

static double feed_rate(const lisa_qfeed *f) {
    int64_t now = feed_now_ms(), sec = now / 1000, n = 0;
    for (int k = 0; k < FEED_RATE_BUCKETS; k++)
        if (f->rate_sec[k] > sec - FEED_RATE_BUCKETS) n += f->rate_count[k];
    double up = (double)(feed_wall_ms() - f->started_wall_ms) / 1000.0;
    double window = up < FEED_RATE_BUCKETS ? (up < 1 ? 1 : up) : FEED_RATE_BUCKETS;
    return (double)n / window;
}

/* Tries to store j's result or failure. 1 when j is finished with (stored,
 * refused, or given up on), 0 when it must wait for Redis. */
static int feed_store(lisa_qfeed *f, qf_job *j) {
    if (j->drop) return 1;
    if (feed_held(j, feed_now_ms())) return 0;
    if (!feed_connected(f)) return 0;
    lisa_queue_outcome out = LISA_OUTCOME_STALE;
    lisa_status st;
    if (j->finish)
        st = lisa_queue_finish(f->q, f->name, &j->job, j->res, j->res_len, &out);
    else
        st = lisa_queue_fail(f->q, f->name, &j->job, j->error, j->retryable, f->backoff_ms, j->res,
                             j->res_len, &out);
    if (st != LISA_OK) {
        if (feed_lost(f)) return 0;
        if (++j->store_errors < FEED_STORE_TRIES) {
            feed_error_reply(f, "cannot store a result");
            return 0;
        }
        feed_log("job %s: giving up storing its result: %s", j->job.id, lisa_error_get());
        f->n_stale++;
        return 1;
    }
    switch (out) {
    case LISA_OUTCOME_DONE: f->n_done++; feed_rate_add(f); break;
    case LISA_OUTCOME_RETRY:
        f->n_failed++;
        feed_log("job %s failed (attempt %lld), will be retried: %s", j->job.id,
                 (long long)j->job.token, j->error);
        break;
    case LISA_OUTCOME_FAILED:
        f->n_failed++;
        feed_log("job %s failed: %s", j->job.id, j->error);
        break;
    case LISA_OUTCOME_CANCELLED: feed_log("job %s cancelled", j->job.id); break;
    case LISA_OUTCOME_STALE:
        f->n_stale++;
        feed_log("job %s: result refused, another worker owns the job now (attempt %lld is stale)",
                 j->job.id, (long long)j->job.token);
        break;
    }
    return 1;
}

/* Stores every result that waits; returns how many still wait. */
static int feed_flush(lisa_qfeed *f) {
    int left = 0;
    for (qf_job **p = &f->jobs; *p;) {
        qf_job *j = *p;
        if (j->state != QJ_STORE) {
            p = &j->next;
            continue;
        }
        if (feed_store(f, j)) {
            *p = j->next;
            feed_job_free(j);
        } else {
            left++;
            p = &j->next;
        }
    }
    return left;
}

/* Sets j up to store a failed result of status st with reason why. */
static void feed_set_failure(lisa_qfeed *f, qf_job *j, lisa_status st, const char *why,
                             int retryable, const lisa_job_result_meta *meta) {
    lisa_response r;
    memset(&r, 0, sizeof r);
    r.status = st;
    r.stop = LISA_STOP_ERROR;
    snprintf(r.error, sizeof r.error, "%s", why);
    j->finish = 0;
    j->retryable = retryable;
    snprintf(j->error, sizeof j->error, "%s", why);
    free(j->res);
    j->res = NULL;
    j->res_len = 0;
    if (lisa_job_result_encode(&r, meta, &j->res, &j->res_len) != LISA_OK) {
        j->res = NULL;
        j->res_len = 0;
    }
    (void)f;
}

static void feed_meta(const lisa_qfeed *f, const qf_job *j, lisa_job_result_meta *m) {
    memset(m, 0, sizeof *m);
    snprintf(m->worker, sizeof m->worker, "%s", f->name);
    m->attempt = (int)j->job.token;
    m->queued_ms = j->job.started_ms > j->job.created_ms
                       ? (double)(j->job.started_ms - j->job.created_ms) : 0;
    m->run_ms = j->t_out_ms ? (double)(feed_now_ms() - j->t_out_ms) : 0;
}

/* ---- taking jobs ------------------------------------------------------- */

/* A job just started in Redis: decoded and checked, then ready; a bad one
 * is refused (failed, final, with the reason); one that could not be
 * decoded for want of memory fails retryable. Takes over *in. */
static void feed_accept(lisa_qfeed *f, lisa_queue_job *in) {
    qf_job *j = calloc(1, sizeof *j);
    if (!j) {
        /* its lease runs out and another worker (or this one) reclaims it */
        feed_log("job %s: out of memory, left to be reclaimed", in->id);
        lisa_queue_job_clear(in);
        return;
    }
    j->job = *in;
    memset(in, 0, sizeof *in);
    lisa_status st = lisa_job_request_decode(j->job.req, j->job.req_len, &f->limits, &j->req);
    if (st == LISA_OK && j->req.image_path)
        st = lisa_job_path_resolve((const char *const *)f->roots, f->n_roots, j->req.image_path,
                                   j->path, sizeof j->path);
    free(j->job.req);
    j->job.req = NULL;
    j->job.req_len = 0;
    j->next = f->jobs;
    f->jobs = j;
    if (st == LISA_OK) {
        j->state = QJ_READY;
        return;
    }
    char why[256];
    snprintf(why, sizeof why, "%s", lisa_error_get());
    int nomem = st == LISA_ERR_NOMEM;  /* the job is not to blame */
    feed_log(nomem ? "job %s not decoded, to be retried: %s" : "bad job %s refused: %s", j->job.id, why);
    lisa_job_result_meta meta;
    feed_meta(f, j, &meta);
    feed_set_failure(f, j, st, why, nomem, &meta);
    j->state = QJ_STORE;
    if (feed_store(f, j)) {
        feed_unlink(f, j);
        feed_job_free(j);
    }
}

/* The oldest ready job (jobs are pushed at the head). */
static qf_job *feed_ready(lisa_qfeed *f) {
    qf_job *found = NULL;
    for (qf_job *j = f->jobs; j; j = j->next)
        if (j->state == QJ_READY) found = j;
    return found;
}

/* A ready job whose touch said it is no longer to run. */
static void feed_retire_ready(lisa_qfeed *f, qf_job *j) {
    j->state = QJ_STORE;
    if (j->verdict == LISA_TOUCH_LOST) {
        j->drop = 1;
    } else {
        /* acknowledges the cancel: finish sees cancel_requested */
        lisa_response r;
        memset(&r, 0, sizeof r);
        r.status = LISA_ERR_CANCELLED;
        r.stop = LISA_STOP_ERROR;
        snprintf(r.error, sizeof r.error, "cancelled");
        lisa_job_result_meta meta;
        feed_meta(f, j, &meta);
        j->finish = 1;
        if (lisa_job_result_encode(&r, &meta, &j->res, &j->res_len) != LISA_OK) j->drop = 1;
    }
    if (feed_store(f, j)) {
        feed_unlink(f, j);
        feed_job_free(j);
    }
}

/* Reads (or reclaims) up to room jobs, blocking up to block_ms. Returns
 * how many were started, 0 also on errors (handled here). */
static int feed_fetch(lisa_qfeed *f, int room, int block_ms) {
    lisa_status st = LISA_OK;
    int64_t now = feed_now_ms();
    int n = 0;
    if (now >= f->reclaim_at) {
        n = lisa_queue_reclaim(f->q, f->name, f->lease_ms, room, f->buf, &st);
        if (n < 0) {
            if (!feed_lost(f)) feed_error_reply(f, "cannot reclaim jobs");
            return 0;
        }
        f->reclaim_at = now + f->lease_ms / 2;
        if (n > 0) feed_log("reclaimed %d job%s idle for more than the lease", n, n == 1 ? "" : "s");
    }
    if (n == 0) {
        n = lisa_queue_read(f->q, f->name, room, block_ms, f->buf, &st);
        if (n < 0) {
            if (!feed_lost(f)) feed_error_reply(f, "cannot read jobs");
            return 0;
        }
        if (n == 0) f->empty_read_at = feed_now_ms();
    }
    for (int i = 0; i < n; i++) feed_accept(f, &f->buf[i]);
    return n;
}

int lisa_qfeed_next(lisa_qfeed *f, int block_ms, lisa_request *rq, void **tag) {
    int64_t deadline = feed_now_ms() + (block_ms > 0 ? block_ms : 0);
    for (;;) {
        qf_job *j = feed_ready(f);
        if (j && j->verdict != LISA_TOUCH_OK) {
            feed_retire_ready(f, j);
            continue;
        }
        int suspects = 0, busy = feed_busy(f, &suspects);
        int64_t now = feed_now_ms();
        int64_t wait = deadline - now;
        if ((j && busy > 0 && feed_suspect(j)) || suspects > 0) {
            /* a suspect runs alone: wait for the others, or for it */
            feed_sleep_ms(wait < 20 ? wait : 20);
            return 0;
        }
        if (j && f->crash_prompt && j->req.prompt && !strcmp(j->req.prompt, f->crash_prompt)) {
            feed_log("test switch: job %s has the crash prompt; killing this worker", j->job.id);
            kill(getpid(), SIGKILL);
        }
        if (j) {
            j->state = QJ_RUNNING;
            j->t_out_ms = feed_now_ms();
            memset(rq, 0, sizeof *rq);
            rq->id = j->job.id;
            if (j->req.image) {
                rq->image = j->req.image;
                rq->image_size = j->req.image_size;
                rq->image_path = j->req.image_label;
            } else {
                rq->image_path = j->path;
            }
            rq->prompt = j->req.prompt;
            rq->answer = j->req.answer;
            rq->max_new_tokens = j->req.max_new_tokens;
            *tag = j;
            f->handed++;
            return 1;
        }
        if (feed_stopping(f) || (f->limit > 0 && f->handed >= f->limit)) return -1;
        int room = f->batch - busy;
        if (f->limit > 0 && room > f->limit - f->handed) room = (int)(f->limit - f->handed);
        if (room <= 0) {
            /* every slot is taken (held results): wait a little, not spin */
            feed_sleep_ms(wait < 20 ? wait : 20);
            return 0;
        }
        if (!feed_connected(f)) {
            if (wait <= 0) return 0;
            int64_t d = (f->retry_at < deadline ? f->retry_at : deadline) - now;
            feed_sleep_ms(d < 10 ? 10 : d > 100 ? 100 : d);
            continue;
        }
        if (wait <= 0 && now < f->empty_read_at + FEED_EMPTY_READ_MS && now < f->reclaim_at)
            return 0;
        int got = feed_fetch(f, room, wait > 0 ? (int)wait : 0);
        if (got == 0 && feed_now_ms() >= deadline) return 0;
    }
}

void lisa_qfeed_done(lisa_qfeed *f, void *tag, const lisa_response *r) {
    qf_job *j = tag;
    lisa_job_result_meta meta;
    feed_meta(f, j, &meta);
    lisa_job_request_free(&j->req);
    memset(&j->req, 0, sizeof j->req);
    j->state = QJ_STORE;
    if (r->status == LISA_ERR_CANCELLED && j->verdict == LISA_TOUCH_LOST) {
        j->drop = 1;
        f->n_stale++;
    } else if (r->status == LISA_OK || r->status == LISA_ERR_CANCELLED) {
        /* a cancelled one acknowledges the cancel: finish records it */
        j->finish = 1;
        lisa_status st = lisa_job_result_encode(r, &meta, &j->res, &j->res_len);
        if (st != LISA_OK) {
            char why[256];
            snprintf(why, sizeof why, "the result cannot be stored: %s", lisa_error_get());
            feed_set_failure(f, j, st, why, st == LISA_ERR_NOMEM, &meta);
        }
    } else {
        int retryable = r->status == LISA_ERR_BACKEND || r->status == LISA_ERR_NOMEM;
        j->finish = 0;
        j->retryable = retryable;
        snprintf(j->error, sizeof j->error, "%s", *r->error ? r->error : lisa_status_str(r->status));
        if (lisa_job_result_encode(r, &meta, &j->res, &j->res_len) != LISA_OK) {
            j->res = NULL;
            j->res_len = 0;
        }
    }
    if (f->hold_ms > 0) {
        j->hold_until = feed_now_ms() + f->hold_ms;
        feed_log("test switch: holding the result of job %s for %lld ms", j->job.id,
                 (long long)f->hold_ms);
    }
    if (feed_store(f, j)) {
        feed_unlink(f, j);
        feed_job_free(j);
    }
}

/* ---- periodic work ----------------------------------------------------- */

static void feed_heartbeat(lisa_qfeed *f) {
    lisa_queue_worker_info w;
    memset(&w, 0, sizeof w);
    snprintf(w.name, sizeof w.name, "%s", f->name);
    snprintf(w.host, sizeof w.host, "%s", f->host);
    w.pid = (int)getpid();
    snprintf(w.device, sizeof w.device, "%s", f->device);
    w.batch = f->batch;
    size_t off = 0;
    int64_t now = feed_now_ms();
    for (const qf_job *j = f->jobs; j; j = j->next) {
        if (j->state != QJ_RUNNING && !feed_held(j, now)) continue;
        w.running++;
        size_t len = strlen(j->job.id);
        if (off + len + 2 < sizeof w.current) {
            if (off) w.current[off++] = ' ';
            memcpy(w.current + off, j->job.id, len + 1);
            off += len;
        }
    }
    snprintf(w.state, sizeof w.state, "%s",
             feed_stopping(f) ? "stopping" : w.running ? "busy" : "idle");
    w.done = f->n_done;
    w.failed = f->n_failed;
    w.rate = feed_rate(f);
    w.started_ms = f->started_wall_ms;
    w.last_seen_ms = feed_wall_ms();
    f->hb_busy = w.running > 0;
    f->hb_sent_at = now;
    if (lisa_queue_heartbeat(f->q, &w, f->heartbeat_ms) != LISA_OK && !feed_lost(f))
        feed_error_reply(f, "cannot send the heartbeat");
}

/* Renews the leases of every started job; notes the verdicts. */
static void feed_touch(lisa_qfeed *f) {
    int n = 0;
    int64_t now = feed_now_ms();
    for (qf_job *j = f->jobs; j && n < f->batch; j = j->next) {
        if ((j->state == QJ_STORE && !feed_held(j, now)) || j->verdict != LISA_TOUCH_OK) continue;
        f->touch_buf[n] = j->job;
        f->touch_jobs[n++] = j;
    }
    if (n == 0) return;
    if (lisa_queue_touch(f->q, f->name, f->touch_buf, n, f->verdicts) != LISA_OK) {
        if (!feed_lost(f)) feed_error_reply(f, "cannot renew the leases");
        return;
    }
    for (int i = 0; i < n; i++) {
        qf_job *j = f->touch_jobs[i];
        j->verdict = f->verdicts[i];
        if (j->verdict == LISA_TOUCH_LOST)
            feed_log("lease lost for job %s (attempt %lld): another worker has it, stopping it here",
                     j->job.id, (long long)j->job.token);
        else if (j->verdict == LISA_TOUCH_CANCEL)
            feed_log("cancel requested for job %s: stopping it", j->job.id);
    }
}

int lisa_qfeed_tick(lisa_qfeed *f, void **cancel, int max) {
    int64_t now = feed_now_ms();
    if (feed_stopping(f) && !f->stop_seen_at) {
        f->stop_seen_at = now;
        f->heartbeat_at = now;   /* say "stopping" at once */
        int n = lisa_qfeed_in_flight(f);
        feed_log("stopping: taking no new jobs, finishing the %d in flight", n);
    }
    if (f->stop_seen_at && now - f->stop_seen_at > FEED_STOP_GRACE_MS) {
        int dropped = 0;
        for (qf_job **p = &f->jobs; *p;) {
            qf_job *j = *p;
            if (j->state == QJ_STORE) {
                *p = j->next;
                feed_job_free(j);
                dropped++;
                f->n_stale++;
            } else {
                p = &j->next;
            }
        }
        if (dropped)
            feed_log("giving up on %d result%s not stored (%s unreachable); their jobs run again "
                     "after the lease", dropped, dropped == 1 ? "" : "s", lisa_redis_where(f->r));
    }
    if (feed_connected(f)) {
        feed_flush(f);
        if (now >= f->touch_at && !f->broken) {
            feed_touch(f);
            if (!f->broken) f->touch_at = now + f->lease_ms / 3;
        }
        /* idle <-> busy is told at once (at most 4 times a second) */
        if ((feed_busy(f, NULL) > 0) != f->hb_busy && now >= f->hb_sent_at + 250)
            f->heartbeat_at = now;
        if (now >= f->heartbeat_at && !f->broken) {
            feed_heartbeat(f);
            if (!f->broken) f->heartbeat_at = now + f->heartbeat_ms;
        }
        if (now >= f->promote_at && !f->broken && !feed_stopping(f)) {
            int n = 0;
            if (lisa_queue_promote(f->q, 100, &n) != LISA_OK) {
                if (!feed_lost(f)) feed_error_reply(f, "cannot requeue retries");
            } else {
                f->promote_at = now + FEED_PROMOTE_MS;
            }
        }
    }
    int k = 0;
    for (qf_job *j = f->jobs; j && k < max; j = j->next)
        if (j->state == QJ_RUNNING && j->verdict != LISA_TOUCH_OK && !j->reported) {
            j->reported = 1;
            cancel[k++] = j;
        }
    return k;
}

/* ---- set-up ------------------------------------------------------------ */

static int feed_auth_error(const char *msg) {
    return strstr(msg, "authentication") || strstr(msg, "WRONGPASS") || strstr(msg, "NOPERM") ||
           strstr(msg, "NOAUTH");
}

lisa_status lisa_qfeed_init(lisa_qfeed **out, const lisa_qfeed_params *p) {
    *out = NULL;
    if (p->batch < 1) return lisa_error_set(LISA_ERR_ARG, "queue feed: batch must be at least 1");
    lisa_qfeed *f = calloc(1, sizeof *f);
    if (!f) return lisa_error_set(LISA_ERR_NOMEM, "queue feed: out of memory");
    f->stop = p->stop ? p->stop : &f->local_stop;
    f->batch = p->batch;
    f->lease_ms = p->lease_ms > 0 ? p->lease_ms : 30000;
    f->heartbeat_ms = p->heartbeat_ms > 0 ? p->heartbeat_ms : 2000;
    f->backoff_ms = p->backoff_ms > 0 ? p->backoff_ms : 1000;
    f->limits = p->limits;
    lisa_job_limits_default(&f->limits);
    if (gethostname(f->host, sizeof f->host - 1) != 0) snprintf(f->host, sizeof f->host, "unknown");
    if (p->worker_name && *p->worker_name)
        snprintf(f->name, sizeof f->name, "%s", p->worker_name);
    else
        snprintf(f->name, sizeof f->name, "%.100s:%d", f->host, (int)getpid());
    snprintf(f->device, sizeof f->device, "%s", p->device ? p->device : "");
    f->started_wall_ms = feed_wall_ms();
    const char *hold = getenv("LISA_FAULT_HOLD_MS");
    f->hold_ms = hold ? atoll(hold) : 0;
    f->crash_prompt = getenv("LISA_FAULT_CRASH_PROMPT");
    if (f->crash_prompt && !*f->crash_prompt) f->crash_prompt = NULL;
    srand((unsigned)(getpid() ^ (unsigned)f->started_wall_ms));
    f->buf = calloc((size_t)f->batch, sizeof *f->buf);
    f->touch_buf = calloc((size_t)f->batch, sizeof *f->touch_buf);
    f->verdicts = calloc((size_t)f->batch, sizeof *f->verdicts);
    f->touch_jobs = calloc((size_t)f->batch, sizeof *f->touch_jobs);
    f->roots = p->n_image_roots > 0 ? calloc((size_t)p->n_image_roots, sizeof *f->roots) : NULL;
    lisa_status st = LISA_OK;
    if (!f->buf || !f->touch_buf || !f->verdicts || !f->touch_jobs ||
        (p->n_image_roots > 0 && !f->roots))
        st = lisa_error_set(LISA_ERR_NOMEM, "queue feed: out of memory");
    for (int i = 0; i < p->n_image_roots && st == LISA_OK; i++) {
        f->roots[i] = strdup(p->image_roots[i]);
        if (!f->roots[i]) st = lisa_error_set(LISA_ERR_NOMEM, "queue feed: out of memory");
        else f->n_roots++;
    }
    if (st != LISA_OK) {
        lisa_qfeed_free(f);
        return st;
    }
    /* the connection: one attempt at a time, so a stop request ends it */
    f->rp = p->redis;
    f->rp.retry_max_s = 0;
    if (!f->rp.client_name) {
        snprintf(f->client_name, sizeof f->client_name, "lisa-worker:%s", f->name);
        for (char *c = f->client_name; *c; c++)
            if (*c == ' ' || *c == '\n' || *c == '\r' || *c == '\t') *c = '_';
        f->rp.client_name = f->client_name;
    }
    for (int attempt = 1;; attempt++) {
        st = lisa_redis_connect(&f->r, &f->rp);
        if (st == LISA_OK || st != LISA_ERR_UNAVAILABLE || feed_auth_error(lisa_error_get()))
            break;
        if (attempt == 1 || attempt % 10 == 0)
            feed_log("%s; retrying (attempt %d)", lisa_error_get(), attempt);
        int64_t until = feed_now_ms() + feed_reconnect_delay(attempt);
        while (!*f->stop && feed_now_ms() < until) feed_sleep_ms(50);
        if (*f->stop) {
            st = lisa_error_set(LISA_ERR_UNAVAILABLE, "stopped before Redis could be reached");
            break;
        }
    }
    if (st == LISA_OK) st = lisa_queue_open(&f->q, f->r, p->prefix);
    if (st == LISA_OK) st = lisa_queue_setup(f->q);
    if (st == LISA_OK) {
        char warn[1024] = "";
        if (lisa_queue_check_durability(f->q, warn, sizeof warn) == LISA_OK && *warn) {
            char *save = NULL;
            for (char *line = strtok_r(warn, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
                feed_log("warning: %s (jobs can be lost if Redis restarts)", line);
        }
    }
    if (st != LISA_OK) {
        lisa_qfeed_free(f);
        return st;
    }
    int64_t now = feed_now_ms();
    f->reclaim_at = now;
    f->touch_at = now + f->lease_ms / 3;
    f->heartbeat_at = now;
    f->promote_at = now;
    *out = f;
    return LISA_OK;
}

void lisa_qfeed_free(lisa_qfeed *f) {
    if (!f) return;
    if (f->q && !f->broken && lisa_redis_ok(f->r)) {
        /* jobs started and never handed out go back (retryable) */
        for (qf_job *j = f->jobs; j; j = j->next)
            if (j->state == QJ_READY) {
                lisa_queue_outcome out;
                lisa_queue_fail(f->q, f->name, &j->job, "the worker stopped before running it", 1,
                                f->backoff_ms, NULL, 0, &out);
            }
        lisa_queue_worker_gone(f->q, f->name);
    }
    while (f->jobs) {
        qf_job *j = f->jobs;
        f->jobs = j->next;
        feed_job_free(j);
    }
    lisa_queue_free(f->q);
    lisa_redis_free(f->r);
    for (int i = 0; i < f->n_roots; i++) free(f->roots[i]);
    free(f->roots);
    free(f->buf);
    free(f->touch_buf);
    free(f->verdicts);
    free(f->touch_jobs);
    free(f);
}

void lisa_qfeed_tag_set_handle(void *tag, int64_t handle) { ((qf_job *)tag)->handle = handle; }

int64_t lisa_qfeed_tag_handle(const void *tag) { return ((const qf_job *)tag)->handle; }

int lisa_qfeed_in_flight(const lisa_qfeed *f) {
    int n = 0;
    for (const qf_job *j = f->jobs; j; j = j->next) n += j->state != QJ_READY;
    return n;
}

void lisa_qfeed_counts(const lisa_qfeed *f, int64_t *done, int64_t *failed, int64_t *stale) {
    if (done) *done = f->n_done;
    if (failed) *failed = f->n_failed;
    if (stale) *stale = f->n_stale;
}

void lisa_qfeed_set_limit(lisa_qfeed *f, int64_t n) { f->limit = n > 0 ? f->handed + n : 0; }

int lisa_qfeed_queue_empty(lisa_qfeed *f) {
    if (!feed_connected(f)) return 0;
    lisa_queue_depths d;
    if (lisa_queue_depths_get(f->q, &d) != LISA_OK) {
        feed_lost(f);
        return 0;
    }
    return d.waiting[0] + d.waiting[1] + d.waiting[2] + d.retrying == 0;
}

const char *lisa_qfeed_worker_name(const lisa_qfeed *f) { return f->name; }

const char *lisa_qfeed_where(const lisa_qfeed *f) { return lisa_redis_where(f->r); }
