/* queue-feed.h: the queue as a worker's job source and result sink, shared
 * by `lisa worker` (one engine) and `lisa cluster --redis` (the cluster's
 * coordinator): it hands out started jobs as engine requests and takes
 * their responses back, and around that does what keeps the jobs safe:
 *   - lease renewal (touch) of every job in flight every lease/3, and
 *     reporting the ones whose cancel was requested or whose lease was lost;
 *   - heartbeats (P:workers, P:worker:<name>);
 *   - reclaiming entries idle longer than the lease from dead workers, and
 *     promoting retries whose backoff ended;
 *   - refusing bad jobs itself (malformed or oversized message, image path
 *     outside the roots): they fail, final, with the reason, and never
 *     reach the engine;
 *   - surviving Redis going away: every call that needs Redis reconnects
 *     with backoff; finished results wait in the feed until they are stored
 *     (the fencing token decides whether they still count);
 *   - draining on stop (SIGTERM): no new jobs, in-flight ones finish.
 *
 * Deliberately not here: the engine or the cluster (callers), printing
 * results (results are stored, not written to files). */
#ifndef LISA_QUEUE_FEED_H
#define LISA_QUEUE_FEED_H

#include <stdint.h>

#include "engine.h"
#include "job-codec.h"
#include "queue.h"
#include "redis-conn.h"

typedef struct lisa_qfeed_params {
    lisa_redis_params redis;      /* where and who (retry_max_s is ignored: a
                                     worker retries forever until stopped) */
    const char *prefix;           /* NULL: "lisa" */
    const char *worker_name;      /* NULL: "<host>:<pid>" */
    const char *device;           /* for `lisa workers` ("cpu", "cuda:0") */
    int batch;                    /* jobs in flight at most (engine slots) */
    int64_t lease_ms;             /* 0: 30 s; idle entries older are reclaimed */
    int64_t heartbeat_ms;         /* 0: 2 s */
    int64_t backoff_ms;           /* retry backoff base (0: 1 s) */
    const char *const *image_roots; /* directories image paths may be under */
    int n_image_roots;
    lisa_job_limits limits;       /* zeros: defaults */
    volatile int *stop;           /* set by a signal handler: drain and stop */
} lisa_qfeed_params;

typedef struct lisa_qfeed lisa_qfeed;

/* Connects (retrying until *stop), installs the functions and groups, warns
 * on stderr about a non-durable server. */
lisa_status lisa_qfeed_init(lisa_qfeed **out, const lisa_qfeed_params *p);
void lisa_qfeed_free(lisa_qfeed *f);

/* The next started job as an engine request (its pointers valid until
 * lisa_qfeed_done for tag). Waits up to block_ms when none is ready.
 * Returns 1 with *rq and *tag, 0 when none now, -1 when stopping (no new
 * jobs will come). Never fails: Redis errors are retried inside. */
int lisa_qfeed_next(lisa_qfeed *f, int block_ms, lisa_request *rq, void **tag);

/* A job finished (r done, failed or cancelled): stores the result or the
 * failure (a backend failure is retryable; a bad request is not; a
 * cancelled one acknowledges the cancel). Queued inside when Redis is
 * away. */
void lisa_qfeed_done(lisa_qfeed *f, void *tag, const lisa_response *r);

/* Periodic work (cheap when nothing is due: call it every loop): leases,
 * heartbeat, reclaim, promote, flushing stored results. Fills cancel[] with
 * the tags of jobs in flight to stop now (cancel requested, or lease lost
 * to another worker), up to max; returns how many. */
int lisa_qfeed_tick(lisa_qfeed *f, void **cancel, int max);

/* The engine handle a caller keeps with a tag (for lisa_engine_cancel). */
void lisa_qfeed_tag_set_handle(void *tag, int64_t handle);
int64_t lisa_qfeed_tag_handle(const void *tag);

/* Jobs handed out and not yet done, plus results not yet stored. */
int lisa_qfeed_in_flight(const lisa_qfeed *f);
/* Counters for the worker's exit line. */
void lisa_qfeed_counts(const lisa_qfeed *f, int64_t *done, int64_t *failed, int64_t *stale);

/* Hands out at most n more jobs (0: no limit); reads never start more than
 * that, so a worker run with a job limit leaves the rest queued. next()
 * returns -1 once they are handed out. */
void lisa_qfeed_set_limit(lisa_qfeed *f, int64_t n);
/* 1 when no job waits in the queue: none queued at any priority and none
 * in a retry backoff; 0 otherwise or when Redis cannot be asked now. */
int lisa_qfeed_queue_empty(lisa_qfeed *f);
/* The worker name in use (the default "<host>:<pid>" when none was given)
 * and where Redis is ("127.0.0.1:6379"), for start-up lines. */
const char *lisa_qfeed_worker_name(const lisa_qfeed *f);
const char *lisa_qfeed_where(const lisa_qfeed *f);

#endif
