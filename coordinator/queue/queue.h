/* queue.h: the segmentation job queue on Redis 7 Streams.
 *
 * Every state change is one call of a Redis FUNCTION in the library "lisa"
 * (coordinator/queue/queue.lua, compiled into the binary and installed with
 * FUNCTION LOAD REPLACE), so a change is atomic and survives a restart from
 * AOF. The C side only reads, and calls those functions.
 *
 * Keys (P is the prefix, default "lisa"; one queue per prefix):
 *   P:jobs:hi P:jobs:normal P:jobs:lo  STREAM per priority, group "workers",
 *                              entries {job <id>}; XDEL'd when the job leaves
 *                              them (never trimmed: a trim would drop pending
 *                              work)
 *   P:job:<id>       HASH state batch index custom_id name user priority
 *                    created_ms started_ms finished_ms attempts max_attempts
 *                    owner stream entry error image prompt result_ttl_ms
 *                    retry_at_ms
 *   P:req:<id>       STRING packed JobRequest (proto/job.proto)
 *   P:res:<id>       STRING packed JobResult, with the result TTL
 *   P:batch:<b>      HASH name user created_ms total queued running retry
 *                    done failed cancelled cancelling first_start_ms
 *                    last_finish_ms expire_at_ms (the batch and its :ids
 *                    and :cid expire then, once all its jobs are final)
 *   P:batch:<b>:ids  LIST job ids in submit order
 *   P:batch:<b>:cid  HASH custom_id -> job id (submit is idempotent on it)
 *   P:batches        ZSET batch -> created_ms
 *   P:seq            INCR counter for batch numbers
 *   P:entries        HASH "<stream> <entry id>" -> job id (a deleted entry
 *                    found by XAUTOCLAIM fails its job: "payload lost")
 *   P:delayed        ZSET job -> retry_at_ms (backoff before a retry)
 *   P:dead           STREAM dead letters {job batch reason deliveries error}
 *   P:events         STREAM {job batch state ts [worker attempt error]},
 *                    capped MAXLEN ~ 100000
 *   P:tput:<minute>  STRING jobs finished in that minute (expires in 1 h)
 *   P:workers        ZSET worker -> last heartbeat ms
 *   P:worker:<name>  HASH host pid device state batch jobs current done
 *                    failed started_ms rate, PEXPIRE 3 heartbeats
 * Job ids are "B<n>_<i>" (batch B<n>, index i in submit order), as Slurm
 * names array tasks. Times are the Redis server's clock (TIME inside the
 * functions), so workers and submitters need not agree on the time.
 *
 * States and their Slurm-style codes: queued PD, running R, retry_wait RT
 * (failed, waiting for its backoff), done CD, failed F, cancelled CA,
 * cancel_requested CG (running, the result will be refused).
 *
 * Delivery is at least once; a result is stored only with the job's fencing
 * token (its attempt number, bumped at every start) and owner, so a worker
 * whose lease was reclaimed (kill -STOP past the lease, a partition) cannot
 * overwrite the new owner's result. A job started max_attempts times
 * without a result (a poison job that kills its worker) goes to P:dead.
 *
 * Deliberately not here: connecting (redis-conn.h), message contents
 * (job-codec.h), the worker loop (queue-feed.h), printing. */
#ifndef LISA_QUEUE_H
#define LISA_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "redis-conn.h"
#include "status.h"

/* Bumped with queue.lua's library version (lisa_version()). */
#define LISA_QUEUE_FUNCTIONS_VERSION 2

typedef enum lisa_job_state {
    LISA_JOB_UNKNOWN = 0,
    LISA_JOB_QUEUED,
    LISA_JOB_RUNNING,
    LISA_JOB_RETRY_WAIT,
    LISA_JOB_DONE,
    LISA_JOB_FAILED,
    LISA_JOB_CANCELLED,
    LISA_JOB_CANCEL_REQUESTED
} lisa_job_state;

/* "queued", "running", ... as stored in the job hash. */
const char *lisa_job_state_name(lisa_job_state s);
/* "PD", "R", "RT", "CD", "F", "CA", "CG" ("?" for unknown). */
const char *lisa_job_state_code(lisa_job_state s);
/* From a stored name or a code; LISA_JOB_UNKNOWN when neither. */
lisa_job_state lisa_job_state_parse(const char *s);
/* done, failed, cancelled. */
int lisa_job_state_final(lisa_job_state s);

typedef enum lisa_job_priority {
    LISA_PRIO_HI = 0,
    LISA_PRIO_NORMAL,
    LISA_PRIO_LO
} lisa_job_priority;
/* "hi" / "high", "normal", "lo" / "low"; -1 otherwise. */
int lisa_job_priority_parse(const char *s);

typedef struct lisa_queue lisa_queue;

/* Opens the queue under prefix (NULL: "lisa") on a connected client; the
 * queue does not own r. Nothing is sent. */
lisa_status lisa_queue_open(lisa_queue **out, lisa_redis *r, const char *prefix);
void lisa_queue_free(lisa_queue *q);
lisa_redis *lisa_queue_redis(lisa_queue *q);
const char *lisa_queue_prefix(const lisa_queue *q);

/* The Lua source of the function library (queue.lua, embedded). */
const char *lisa_queue_functions_source(void);

/* Workers' start-up: installs the library when it is missing or another
 * version (FUNCTION LOAD REPLACE), creates the consumer group on each
 * priority stream (MKSTREAM; an existing group is fine). */
lisa_status lisa_queue_setup(lisa_queue *q);

/* Durability check: appends to warn (NUL-terminated, n bytes) one line per
 * setting that can lose jobs ("appendonly is no", "maxmemory-policy is
 * allkeys-lru, not noeviction"); warn is "" when all is well. CONFIG GET
 * may be refused by ACL: that gives a line saying it could not be checked. */
lisa_status lisa_queue_check_durability(lisa_queue *q, char *warn, size_t n);

/* ---- submitting ------------------------------------------------------ */

typedef struct lisa_queue_submit_opts {
    const char *name;          /* job or batch name (may be NULL) */
    const char *user;          /* submitting user (NULL: $USER) */
    lisa_job_priority priority; /* LISA_PRIO_HI is 0: zeroed opts are high priority */
    int max_attempts;          /* starts before a job is dead-lettered (0: 3) */
    int64_t result_ttl_ms;     /* how long results and records live (0: 7 days;
                                  failed jobs keep theirs 30 days) */
} lisa_queue_submit_opts;

/* A new batch: its id ("B<n>") into bid. */
lisa_status lisa_queue_batch_new(lisa_queue *q, const lisa_queue_submit_opts *o, char *bid,
                                 size_t n);

typedef struct lisa_queue_submit_item {
    const char *custom_id;     /* unique in the batch (submit is idempotent on it) */
    const uint8_t *req;        /* packed JobRequest */
    size_t req_len;
    const char *image;         /* the image as the results name it */
    const char *prompt;
} lisa_queue_submit_item;

/* Queues n jobs into batch bid with indexes first_index.. (pipelined
 * FCALL lisa_submit, chunks of 512). job_ids[i] (may be NULL) gets job i's
 * id, 64 bytes each; *n_dup (may be NULL) counts items whose custom_id the
 * batch already had (their existing id is returned; nothing is queued
 * again). A connection failure midway is LISA_ERR_UNAVAILABLE: submitting
 * the same items again into the same batch is safe. */
lisa_status lisa_queue_submit(lisa_queue *q, const char *bid, int first_index,
                              const lisa_queue_submit_item *items, int n,
                              const lisa_queue_submit_opts *o, char (*job_ids)[64], int *n_dup);

/* ---- working --------------------------------------------------------- */

/* A started job, owned by the worker that started it. */
typedef struct lisa_queue_job {
    char id[64];
    char stream[96];           /* the priority stream it came from */
    char entry[48];            /* its stream entry id */
    int64_t token;             /* attempt number: the fencing token */
    int64_t created_ms, started_ms;
    uint8_t *req;              /* the packed JobRequest (malloc'd) */
    size_t req_len;
} lisa_queue_job;
void lisa_queue_job_clear(lisa_queue_job *j);   /* frees req */

/* Reads up to max new entries for consumer `worker` (high priority first,
 * then normal, then low; XREADGROUP, blocking up to block_ms on all three
 * when none is ready, 0: no wait) and starts each (FCALL lisa_start: state
 * running, attempts + 1, owner). Entries whose job was cancelled meanwhile
 * are acknowledged and skipped; a job started max_attempts times already is
 * dead-lettered instead. Returns how many jobs were started into out, or -1
 * with *st set (LISA_ERR_UNAVAILABLE on a lost connection). */
int lisa_queue_read(lisa_queue *q, const char *worker, int max, int block_ms,
                    lisa_queue_job *out, lisa_status *st);

/* Reclaims entries idle for min_idle_ms or more from other consumers
 * (XAUTOCLAIM, inside FCALL lisa_reclaim) and starts up to max of them for
 * worker, as lisa_queue_read does. Jobs whose entry was deleted fail with
 * "payload lost". Returns how many were started, or -1 with *st. */
int lisa_queue_reclaim(lisa_queue *q, const char *worker, int64_t min_idle_ms, int max,
                       lisa_queue_job *out, lisa_status *st);

typedef enum lisa_queue_touch_result {
    LISA_TOUCH_OK = 0,         /* still ours; lease renewed */
    LISA_TOUCH_LOST,           /* reclaimed by another worker, or gone */
    LISA_TOUCH_CANCEL          /* ours, but cancel was requested: stop it */
} lisa_queue_touch_result;

/* Renews the leases of n running jobs (FCALL lisa_touch: XCLAIM JUSTID of
 * each entry still pending for worker with the job's token). out[i] is the
 * verdict for jobs[i]. */
lisa_status lisa_queue_touch(lisa_queue *q, const char *worker, const lisa_queue_job *jobs, int n,
                             lisa_queue_touch_result *out);

typedef enum lisa_queue_outcome {
    LISA_OUTCOME_DONE = 0,     /* result stored */
    LISA_OUTCOME_RETRY,        /* failure recorded, retry after a backoff */
    LISA_OUTCOME_FAILED,       /* failure recorded, final (or dead-lettered) */
    LISA_OUTCOME_CANCELLED,    /* cancel was requested: result dropped */
    LISA_OUTCOME_STALE         /* wrong token or owner: refused, nothing changed */
} lisa_queue_outcome;
const char *lisa_queue_outcome_name(lisa_queue_outcome o);

/* Stores a done job's packed JobResult (FCALL lisa_finish), only if the job
 * is running with j->token under worker. */
lisa_status lisa_queue_finish(lisa_queue *q, const char *worker, const lisa_queue_job *j,
                              const uint8_t *res, size_t res_len, lisa_queue_outcome *out);

/* Records a failure (FCALL lisa_fail), fenced like finish. retryable and
 * attempts < max_attempts: retry_wait for backoff_ms * 2^(attempts-1)
 * +- 25% jitter, then queued again; otherwise failed with res (the failed
 * JobResult, may be NULL) and error stored. */
lisa_status lisa_queue_fail(lisa_queue *q, const char *worker, const lisa_queue_job *j,
                            const char *error, int retryable, int64_t backoff_ms,
                            const uint8_t *res, size_t res_len, lisa_queue_outcome *out);

/* Requeues up to max jobs whose backoff ended (FCALL lisa_promote). */
lisa_status lisa_queue_promote(lisa_queue *q, int max, int *n_promoted);

/* What a worker says about itself every heartbeat. */
typedef struct lisa_queue_worker_info {
    char name[128];
    char host[128];
    int pid;
    char device[64];
    char state[16];            /* "idle", "busy", "stopping"; "dead" when listed late */
    int batch;                 /* engine slots */
    int running;               /* jobs in flight */
    char current[256];         /* up to a few job ids, space separated */
    int64_t done, failed;
    double rate;               /* jobs/s over the last minute */
    int64_t started_ms, last_seen_ms;
    int64_t pending;           /* XINFO CONSUMERS pending (listing only) */
} lisa_queue_worker_info;

/* ZADD P:workers + HSET P:worker:<name> with a TTL of 3 x interval_ms. */
lisa_status lisa_queue_heartbeat(lisa_queue *q, const lisa_queue_worker_info *w,
                                 int64_t interval_ms);
/* Removes the worker's record on a clean exit. */
lisa_status lisa_queue_worker_gone(lisa_queue *q, const char *worker);

/* ---- following ------------------------------------------------------- */

typedef struct lisa_queue_job_info {
    char id[64], batch[48], custom_id[256], name[128], user[64];
    lisa_job_state state;
    lisa_job_priority priority;
    int attempts, max_attempts;
    char owner[128];
    char error[512];
    char image[512];
    char prompt[512];          /* truncated for display */
    int64_t created_ms, started_ms, finished_ms, retry_at_ms;
} lisa_queue_job_info;

/* HGETALL P:job:<id>. LISA_ERR_NOTFOUND when unknown or expired. */
lisa_status lisa_queue_job_get(lisa_queue *q, const char *id, lisa_queue_job_info *out);

typedef struct lisa_queue_batch_info {
    char id[48], name[128], user[64];
    int64_t total, queued, running, retry, done, failed, cancelled, cancelling;
    int64_t created_ms, first_start_ms, last_finish_ms;
} lisa_queue_batch_info;

/* The batch's counters. LISA_ERR_NOTFOUND when unknown or expired. */
lisa_status lisa_queue_batch_get(lisa_queue *q, const char *bid, lisa_queue_batch_info *out);
/* The batch's job ids in submit order (*ids malloc'd, each 64 bytes). */
lisa_status lisa_queue_batch_jobs(lisa_queue *q, const char *bid, char (**ids)[64], int *n);
/* The most recent batches, newest first (up to max). */
lisa_status lisa_queue_batches_recent(lisa_queue *q, int max, char (**ids)[48], int *n);

/* "B12" is a batch, "B12_3" a job (or any id a job hash exists for). */
int lisa_queue_id_is_batch(const char *id);

/* The packed request / result of a job (malloc'd). LISA_ERR_NOTFOUND when
 * there is none (not finished, or expired). */
lisa_status lisa_queue_request_get(lisa_queue *q, const char *id, uint8_t **buf, size_t *len);
lisa_status lisa_queue_result_get(lisa_queue *q, const char *id, uint8_t **buf, size_t *len);

typedef enum lisa_queue_cancel_result {
    LISA_CANCEL_DONE = 0,      /* was queued or retry_wait: cancelled now */
    LISA_CANCEL_REQUESTED,     /* running: cancel_requested, the worker stops it */
    LISA_CANCEL_FINISHED,      /* already done/failed/cancelled: nothing changed */
    LISA_CANCEL_UNKNOWN        /* no such job */
} lisa_queue_cancel_result;

/* FCALL lisa_cancel. *was (may be NULL) gets the state before. */
lisa_status lisa_queue_cancel(lisa_queue *q, const char *id, lisa_queue_cancel_result *out,
                              lisa_job_state *was);

/* One event of P:events. */
typedef struct lisa_queue_event {
    char stream_id[48];
    char job[64], batch[48];
    lisa_job_state state;
    int64_t ts_ms;
    char worker[128];
    int attempt;
    char error[256];
} lisa_queue_event;

/* The id of the newest event ("0-0" when none): read it before reading
 * state, then follow from it, so no change is missed. */
lisa_status lisa_queue_events_last(lisa_queue *q, char *id, size_t n);
/* Up to max events after *after (XREAD BLOCK block_ms, 0: no wait);
 * advances *after (48 bytes). Returns the count, or -1 with *st. */
int lisa_queue_events_read(lisa_queue *q, char *after, int max, int block_ms,
                           lisa_queue_event *out, lisa_status *st);

typedef struct lisa_queue_depths {
    int64_t waiting[3];        /* per priority: entries not yet delivered (XINFO GROUPS lag) */
    int64_t pending[3];        /* delivered, not acknowledged (running) */
    int64_t running;           /* jobs in state running or cancel_requested */
    int64_t retrying;          /* P:delayed */
    int64_t dead;              /* P:dead length */
    int64_t done_1m, done_5m;  /* jobs finished in the last 1 and 5 minutes */
    int64_t workers;           /* workers seen in the last 3 heartbeats */
} lisa_queue_depths;

lisa_status lisa_queue_depths_get(lisa_queue *q, lisa_queue_depths *out);

/* Every worker of P:workers, most recently seen first (*out malloc'd);
 * a worker whose record expired is listed with state "dead". */
lisa_status lisa_queue_workers_list(lisa_queue *q, lisa_queue_worker_info **out, int *n);

/* The dead-letter stream's entries, oldest first, up to max. */
typedef struct lisa_queue_dead {
    char job[64], batch[48];
    char reason[256], error[256];
    int deliveries;
} lisa_queue_dead;
lisa_status lisa_queue_dead_list(lisa_queue *q, int max, lisa_queue_dead **out, int *n);

#endif
