/* worker.h: the loop of `lisa worker` (and `lisa bench queue`): one engine
 * fed from the queue. Jobs are pulled as engine slots free up (a long job
 * holds its slot only, never the others), stepped together with continuous
 * batching, and each response goes back to the feed as soon as it is done;
 * the feed's periodic work (leases, heartbeats, reclaim, promote, results
 * waiting for Redis) runs between steps, and the jobs it says to stop
 * (cancel requested, lease lost) are cancelled in the engine.
 *
 * Deliberately not here: connecting, signals, printing a summary (the
 * command), what a job is (queue-feed.h). */
#ifndef LISA_WORKER_H
#define LISA_WORKER_H

#include <stdint.h>

#include "engine.h"
#include "queue-feed.h"

/* Where the loop's time went, for `lisa bench queue`: wall seconds inside
 * the engine's calls and inside the feed's (its Redis round trips, decoding
 * and checking jobs, and its waits for a job or for Redis). */
typedef struct lisa_worker_stats {
    double engine_s;         /* lisa_engine_submit, _step, _take_finished, _cancel */
    double feed_s;           /* lisa_qfeed_tick, _next, _done, and the waits for Redis */
    int64_t steps;           /* engine steps */
} lisa_worker_stats;

typedef struct lisa_worker_opts {
    int batch;               /* jobs in the engine at most (its max_batch) */
    int64_t max_jobs;        /* stop after taking this many jobs (0: no limit) */
    int exit_when_empty;     /* stop once no job came for 1 s, nothing is in
                                flight and none waits (queued or in a retry
                                backoff) */
    lisa_worker_stats *stats; /* when not NULL: filled in (zeroed first) */
} lisa_worker_opts;

/* Runs until stopped (by the feed's stop flag, max_jobs or
 * exit_when_empty) with nothing
 * in flight: every job taken is done and its result stored (or given up on
 * after the feed's grace period). Returns LISA_OK, or the engine's status
 * after a backend failure: then no new job is taken, the jobs in flight
 * fail retryable (another worker runs them) and the loop ends. */
lisa_status lisa_worker_run(lisa_engine *e, lisa_qfeed *f, const lisa_worker_opts *o);

#endif
