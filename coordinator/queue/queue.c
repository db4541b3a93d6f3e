/* queue.c: the job queue on Redis 7 Streams (see queue.h). Every state
 * change is an FCALL of the library in queue.lua; this file installs the
 * library, reads work (XREADGROUP cannot block inside a function) and hands
 * each entry to lisa_start, pipelines submits, and reads the keys back for
 * status, events, depths and workers.
 *
 * Deliberately not here: the meaning of the request and result bytes
 * (job-codec.h), the worker loop and its timers (queue-feed.h), retrying
 * after a lost connection (the caller reconnects and decides), printing. */
#include "queue.h"

#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

extern const char lisa_queue_lua_source[];

#define QUEUE_GROUP "workers"
#define QUEUE_SUBMIT_CHUNK 512
#define QUEUE_PREFIX_MAX 63

static const char *const queue_prio_names[3] = {"hi", "normal", "lo"};

/* An entry delivered to a worker by XREADGROUP but not started yet. */
typedef struct queue_entry {
    char stream[96];
    char entry[48];
    char job[64];
} queue_entry;

struct lisa_queue {
    lisa_redis *r;
    char prefix[QUEUE_PREFIX_MAX + 1];
    char streams[3][96];
    uint64_t rng;
    /* entries a blocking read delivered beyond max: started first by the
     * next lisa_queue_read of the same worker */
    queue_entry *carry;
    int n_carry, cap_carry;
    char carry_worker[128];
};

/* ---- states and names --------------------------------------------------- */

static const char *const state_names[] = {"unknown", "queued", "running", "retry_wait", "done",
                                          "failed", "cancelled", "cancel_requested"};
static const char *const state_codes[] = {"?", "PD", "R", "RT", "CD", "F", "CA", "CG"};

const char *lisa_job_state_name(lisa_job_state s) {
    return (unsigned)s <= LISA_JOB_CANCEL_REQUESTED ? state_names[s] : "unknown";
}

const char *lisa_job_state_code(lisa_job_state s) {
    return (unsigned)s <= LISA_JOB_CANCEL_REQUESTED ? state_codes[s] : "?";
}

lisa_job_state lisa_job_state_parse(const char *s) {
    if (!s) return LISA_JOB_UNKNOWN;
    for (int i = 1; i <= LISA_JOB_CANCEL_REQUESTED; i++)
        if (!strcmp(s, state_names[i]) || !strcmp(s, state_codes[i])) return (lisa_job_state)i;
    return LISA_JOB_UNKNOWN;
}

int lisa_job_state_final(lisa_job_state s) {
    return s == LISA_JOB_DONE || s == LISA_JOB_FAILED || s == LISA_JOB_CANCELLED;
}

int lisa_job_priority_parse(const char *s) {
    if (!s) return -1;
    if (!strcmp(s, "hi") || !strcmp(s, "high")) return LISA_PRIO_HI;
    if (!strcmp(s, "normal")) return LISA_PRIO_NORMAL;
    if (!strcmp(s, "lo") || !strcmp(s, "low")) return LISA_PRIO_LO;
    return -1;
}

const char *lisa_queue_outcome_name(lisa_queue_outcome o) {
    switch (o) {
    case LISA_OUTCOME_DONE: return "done";
    case LISA_OUTCOME_RETRY: return "retry";
    case LISA_OUTCOME_FAILED: return "failed";
    case LISA_OUTCOME_CANCELLED: return "cancelled";
    case LISA_OUTCOME_STALE: return "stale";
    }
    return "unknown";
}

int lisa_queue_id_is_batch(const char *id) {
    if (!id || id[0] != 'B' || !id[1]) return 0;
    for (const char *p = id + 1; *p; p++)
        if (*p < '0' || *p > '9') return 0;
    return 1;
}

const char *lisa_queue_functions_source(void) { return lisa_queue_lua_source; }

/* ---- small helpers ------------------------------------------------------ */

/* src[0..len) into dst (n bytes), cut short at a UTF-8 character boundary
 * when it does not fit. */
static void copy_str(char *dst, size_t n, const char *src, size_t len) {
    if (!n) return;
    if (len >= n) {
        len = n - 1;
        while (len && ((unsigned char)src[len] & 0xC0) == 0x80) len--;
    }
    memcpy(dst, src, len);
    dst[len] = 0;
}

/* The text of a string or status reply, else NULL. */
static const char *reply_str(const redisReply *r) {
    if (r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS)) return r->str;
    return NULL;
}

/* An integer reply, or a string holding one; dflt otherwise. */
static int64_t reply_int(const redisReply *r, int64_t dflt) {
    if (!r) return dflt;
    if (r->type == REDIS_REPLY_INTEGER) return r->integer;
    if (r->type == REDIS_REPLY_STRING && r->len) {
        char *end = NULL;
        long long v = strtoll(r->str, &end, 10);
        if (end && !*end) return v;
    }
    return dflt;
}

static int64_t str_int(const char *s) { return s ? strtoll(s, NULL, 10) : 0; }

static int is_error(const redisReply *r, const char *code) {
    return r && r->type == REDIS_REPLY_ERROR && r->str && !strncmp(r->str, code, strlen(code));
}

/* A reply the server gave but that is not what the command returns. */
static lisa_status queue_bad_reply(const char *what) {
    return lisa_error_set(LISA_ERR_FORMAT, "%s: unexpected reply from Redis (is the lisa function "
                          "library version %d loaded?)", what, LISA_QUEUE_FUNCTIONS_VERSION);
}

/* Checks reply (NULL or an error reply) and frees it on failure. */
static lisa_status queue_check(lisa_queue *q, redisReply *reply, const char *what) {
    lisa_status st = lisa_redis_check(q->r, reply, what);
    if (st != LISA_OK && reply) freeReplyObject(reply);
    return st;
}

static void key_of(const lisa_queue *q, char *dst, size_t n, const char *part, const char *id) {
    snprintf(dst, n, "%s:%s%s", q->prefix, part, id ? id : "");
}

/* An id a job or batch name may have: printable, no spaces, not too long. */
static lisa_status queue_id_check(const char *id, size_t max, const char *what) {
    if (!id || !*id) return lisa_error_set(LISA_ERR_ARG, "no %s id given", what);
    size_t len = strlen(id);
    if (len >= max) return lisa_error_set(LISA_ERR_ARG, "%s id \"%.40s...\" is too long", what, id);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)id[i] <= ' ')
            return lisa_error_set(LISA_ERR_ARG, "%s id \"%s\" has white space", what, id);
    return LISA_OK;
}

static double queue_random01(lisa_queue *q) {
    q->rng ^= q->rng << 13;
    q->rng ^= q->rng >> 7;
    q->rng ^= q->rng << 17;
    return (double)(q->rng >> 11) / 9007199254740992.0;
}

/* An FCALL of one of the library's functions: "FCALL name 0 prefix" and
 * then argc args (lens NULL: strlen). */
static redisReply *queue_fcall(lisa_queue *q, const char *fn, int argc, const char **args,
                               const size_t *lens) {
    const char *argv[40];
    size_t alen[40];
    LISA_ASSERT(argc + 4 <= 40);
    argv[0] = "FCALL";
    argv[1] = fn;
    argv[2] = "0";
    argv[3] = q->prefix;
    for (int i = 0; i < 4; i++) alen[i] = strlen(argv[i]);
    for (int i = 0; i < argc; i++) {
        argv[4 + i] = args[i];
        alen[4 + i] = lens ? lens[i] : strlen(args[i]);
    }
    return lisa_redis_cmd(q->r, argc + 4, argv, alen);
}

/* ---- opening and setup -------------------------------------------------- */

lisa_status lisa_queue_open(lisa_queue **out, lisa_redis *r, const char *prefix) {
    *out = NULL;
    if (!prefix || !*prefix) prefix = "lisa";
    if (strlen(prefix) > QUEUE_PREFIX_MAX)
        return lisa_error_set(LISA_ERR_ARG, "queue prefix \"%s\" is longer than %d bytes", prefix,
                              QUEUE_PREFIX_MAX);
    for (const char *p = prefix; *p; p++)
        if ((unsigned char)*p <= ' ')
            return lisa_error_set(LISA_ERR_ARG, "queue prefix \"%s\" has white space", prefix);
    lisa_queue *q = calloc(1, sizeof *q);
    if (!q) return lisa_error_set(LISA_ERR_NOMEM, "out of memory");
    q->r = r;
    snprintf(q->prefix, sizeof q->prefix, "%s", prefix);
    for (int i = 0; i < 3; i++)
        snprintf(q->streams[i], sizeof q->streams[i], "%s:jobs:%s", prefix, queue_prio_names[i]);
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    q->rng = ((uint64_t)t.tv_nsec << 24) ^ (uint64_t)t.tv_sec ^ ((uint64_t)getpid() << 44) ^
             (uint64_t)(uintptr_t)q;
    if (!q->rng) q->rng = 0x2545f4914f6cdd1dull;
    *out = q;
    return LISA_OK;
}

void lisa_queue_free(lisa_queue *q) {
    if (!q) return;
    free(q->carry);
    free(q);
}

lisa_redis *lisa_queue_redis(lisa_queue *q) { return q->r; }
const char *lisa_queue_prefix(const lisa_queue *q) { return q->prefix; }

/* XGROUP CREATE on each priority stream; an existing group is fine. */
static lisa_status queue_groups_create(lisa_queue *q) {
    for (int i = 0; i < 3; i++) {
        const char *argv[] = {"XGROUP", "CREATE", q->streams[i], QUEUE_GROUP, "0", "MKSTREAM"};
        redisReply *rep = lisa_redis_cmd(q->r, 6, argv, NULL);
        if (is_error(rep, "BUSYGROUP")) {
            freeReplyObject(rep);
            continue;
        }
        LISA_TRY(queue_check(q, rep, "XGROUP CREATE"));
        freeReplyObject(rep);
    }
    return LISA_OK;
}

lisa_status lisa_queue_setup(lisa_queue *q) {
    redisReply *rep = lisa_redis_cmdf(q->r, "FCALL lisa_version 0");
    if (!rep) return lisa_redis_check(q->r, NULL, "FCALL lisa_version");
    int have = rep->type == REDIS_REPLY_INTEGER && rep->integer == LISA_QUEUE_FUNCTIONS_VERSION;
    int refused = is_error(rep, "NOPERM");
    freeReplyObject(rep);
    if (refused) return lisa_error_set(LISA_ERR_UNAVAILABLE, "FCALL lisa_version: NOPERM (the "
                                       "Redis user may not call the queue's functions)");
    if (!have) {
        const char *src = lisa_queue_functions_source();
        const char *argv[] = {"FUNCTION", "LOAD", "REPLACE", src};
        rep = lisa_redis_cmd(q->r, 4, argv, NULL);
        LISA_TRY(queue_check(q, rep, "FUNCTION LOAD of the lisa library"));
        freeReplyObject(rep);
    }
    return queue_groups_create(q);
}

/* Appends one line to warn. */
static void warn_add(char *warn, size_t n, const char *line) {
    size_t k = strlen(warn);
    if (k < n) snprintf(warn + k, n - k, "%s\n", line);
}

lisa_status lisa_queue_check_durability(lisa_queue *q, char *warn, size_t n) {
    static const char *const names[2] = {"appendonly", "maxmemory-policy"};
    static const char *const want[2] = {"yes", "noeviction"};
    if (n) warn[0] = 0;
    for (int i = 0; i < 2; i++) {
        redisReply *rep = lisa_redis_cmdf(q->r, "CONFIG GET %s", names[i]);
        if (!rep) return lisa_redis_check(q->r, NULL, "CONFIG GET");
        char line[512];
        if (rep->type == REDIS_REPLY_ERROR) {
            snprintf(line, sizeof line, "%s not checked: CONFIG GET refused (%s)", names[i], rep->str);
            warn_add(warn, n, line);
        } else if (rep->type == REDIS_REPLY_ARRAY && rep->elements >= 2 &&
                   reply_str(rep->element[1])) {
            const char *v = reply_str(rep->element[1]);
            if (strcmp(v, want[i])) {
                if (i == 0)
                    snprintf(line, sizeof line, "appendonly is %s", v);
                else
                    snprintf(line, sizeof line, "maxmemory-policy is %s, not noeviction", v);
                warn_add(warn, n, line);
            }
        }
        freeReplyObject(rep);
    }
    return LISA_OK;
}

/* ---- submitting --------------------------------------------------------- */

/* The submitting user: the option, else $USER, else the account's name
 * (root in a container sets no $USER). */
static const char *opts_user(const lisa_queue_submit_opts *o) {
    if (o && o->user && *o->user) return o->user;
    const char *u = getenv("USER");
    if (u && *u) return u;
    const struct passwd *pw = getpwuid(getuid());
    return pw && pw->pw_name ? pw->pw_name : "";
}

lisa_status lisa_queue_batch_new(lisa_queue *q, const lisa_queue_submit_opts *o, char *bid,
                                 size_t n) {
    const char *args[] = {o && o->name ? o->name : "", opts_user(o)};
    redisReply *rep = queue_fcall(q, "lisa_batch_new", 2, args, NULL);
    LISA_TRY(queue_check(q, rep, "FCALL lisa_batch_new"));
    const char *s = reply_str(rep);
    lisa_status st = s ? LISA_OK : queue_bad_reply("FCALL lisa_batch_new");
    if (s) copy_str(bid, n, s, strlen(s));
    freeReplyObject(rep);
    return st;
}

lisa_status lisa_queue_submit(lisa_queue *q, const char *bid, int first_index,
                              const lisa_queue_submit_item *items, int n,
                              const lisa_queue_submit_opts *o, char (*job_ids)[64], int *n_dup) {
    if (n_dup) *n_dup = 0;
    LISA_TRY(queue_id_check(bid, 48, "batch"));
    const lisa_job_priority prio = o ? o->priority : LISA_PRIO_NORMAL;
    if ((unsigned)prio > LISA_PRIO_LO) return lisa_error_set(LISA_ERR_ARG, "bad job priority %d", prio);
    char max_attempts[24], ttl[24];
    snprintf(max_attempts, sizeof max_attempts, "%d", o && o->max_attempts > 0 ? o->max_attempts : 3);
    snprintf(ttl, sizeof ttl, "%" PRId64, o && o->result_ttl_ms > 0 ? o->result_ttl_ms : (int64_t)0);
    const char *name = o && o->name ? o->name : "", *user = opts_user(o);
    lisa_status first_err = LISA_OK;
    char err_msg[1024] = "";
    for (int c0 = 0; c0 < n; c0 += QUEUE_SUBMIT_CHUNK) {
        int c1 = c0 + QUEUE_SUBMIT_CHUNK < n ? c0 + QUEUE_SUBMIT_CHUNK : n;
        int appended = 0;
        for (int i = c0; i < c1; i++) {
            const lisa_queue_submit_item *it = &items[i];
            char index[24];
            snprintf(index, sizeof index, "%d", first_index + i);
            const char *argv[16] = {"FCALL", "lisa_submit", "0", q->prefix, bid, index,
                                    it->custom_id ? it->custom_id : "", name, user,
                                    queue_prio_names[prio], max_attempts, ttl,
                                    it->image ? it->image : "", it->prompt ? it->prompt : "",
                                    (const char *)it->req};
            size_t lens[16];
            for (int k = 0; k < 14; k++) lens[k] = strlen(argv[k]);
            lens[14] = it->req_len;
            if (!it->req) argv[14] = "";
            if (lisa_redis_append(q->r, 15, argv, lens) != LISA_OK) break;
            appended++;
        }
        /* every reply is taken, also after an error reply, so the
         * connection stays in step; a lost connection ends the loop */
        for (int i = c0; i < c0 + appended; i++) {
            redisReply *rep = lisa_redis_take(q->r);
            if (!rep) {
                lisa_status st = lisa_redis_check(q->r, NULL, "FCALL lisa_submit");
                if (first_err == LISA_OK) {
                    first_err = st;
                    snprintf(err_msg, sizeof err_msg, "%s", lisa_error_get());
                }
                break;
            }
            if (rep->type == REDIS_REPLY_ERROR) {
                if (first_err == LISA_OK) {
                    first_err = lisa_redis_check(q->r, rep, "FCALL lisa_submit");
                    snprintf(err_msg, sizeof err_msg, "%s", lisa_error_get());
                }
            } else if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
                       reply_str(rep->element[0]) && reply_str(rep->element[1])) {
                if (job_ids) copy_str(job_ids[i], 64, rep->element[0]->str, rep->element[0]->len);
                if (n_dup && !strcmp(rep->element[1]->str, "dup")) (*n_dup)++;
            } else if (first_err == LISA_OK) {
                first_err = queue_bad_reply("FCALL lisa_submit");
                snprintf(err_msg, sizeof err_msg, "%s", lisa_error_get());
            }
            freeReplyObject(rep);
        }
        if (appended < c1 - c0 && first_err == LISA_OK) {
            first_err = LISA_ERR_UNAVAILABLE;
            snprintf(err_msg, sizeof err_msg, "%s", lisa_error_get());
        }
        /* a refused chunk (unknown batch, no permission) ends the submit */
        if (first_err != LISA_OK || !lisa_redis_ok(q->r)) break;
    }
    if (first_err != LISA_OK) return lisa_error_set(first_err, "%s", err_msg);
    return LISA_OK;
}

/* ---- working ------------------------------------------------------------ */

void lisa_queue_job_clear(lisa_queue_job *j) {
    if (!j) return;
    free(j->req);
    memset(j, 0, sizeof *j);
}

/* FCALL lisa_start for one delivered entry: *started 1 with out filled
 * when the job is ours to run, 0 when it was skipped or dead-lettered. */
static lisa_status queue_start(lisa_queue *q, const char *worker, const queue_entry *e,
                               lisa_queue_job *out, int *started) {
    *started = 0;
    const char *args[] = {e->job, e->stream, e->entry, worker};
    redisReply *rep = queue_fcall(q, "lisa_start", 4, args, NULL);
    LISA_TRY(queue_check(q, rep, "FCALL lisa_start"));
    lisa_status st = LISA_OK;
    const char *what = rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1
                           ? reply_str(rep->element[0]) : NULL;
    if (what && !strcmp(what, "run") && rep->elements == 5 &&
        rep->element[4]->type == REDIS_REPLY_STRING) {
        memset(out, 0, sizeof *out);
        snprintf(out->id, sizeof out->id, "%s", e->job);
        snprintf(out->stream, sizeof out->stream, "%s", e->stream);
        snprintf(out->entry, sizeof out->entry, "%s", e->entry);
        out->token = reply_int(rep->element[1], 0);
        out->created_ms = reply_int(rep->element[2], 0);
        out->started_ms = reply_int(rep->element[3], 0);
        out->req_len = rep->element[4]->len;
        out->req = malloc(out->req_len ? out->req_len : 1);
        if (!out->req) {
            st = lisa_error_set(LISA_ERR_NOMEM, "out of memory for the request of %s", e->job);
        } else {
            memcpy(out->req, rep->element[4]->str, out->req_len);
            *started = 1;
        }
    } else if (!what || (strcmp(what, "skip") && strcmp(what, "dead"))) {
        st = queue_bad_reply("FCALL lisa_start");
    }
    freeReplyObject(rep);
    return st;
}

/* Appends the entries of an XREADGROUP reply ([[stream, [[id, [k, v..]]..]]..])
 * to *list. */
static lisa_status entries_collect(const redisReply *rep, queue_entry **list, int *n, int *cap) {
    if (!rep || rep->type != REDIS_REPLY_ARRAY) return LISA_OK; /* NIL: nothing arrived */
    for (size_t s = 0; s < rep->elements; s++) {
        const redisReply *sr = rep->element[s];
        if (sr->type != REDIS_REPLY_ARRAY || sr->elements != 2 || !reply_str(sr->element[0]) ||
            sr->element[1]->type != REDIS_REPLY_ARRAY)
            return queue_bad_reply("XREADGROUP");
        for (size_t e = 0; e < sr->element[1]->elements; e++) {
            const redisReply *er = sr->element[1]->element[e];
            if (er->type != REDIS_REPLY_ARRAY || er->elements != 2 || !reply_str(er->element[0]))
                return queue_bad_reply("XREADGROUP");
            const char *job = NULL;
            const redisReply *fv = er->element[1];
            if (fv->type == REDIS_REPLY_ARRAY)
                for (size_t k = 0; k + 1 < fv->elements; k += 2)
                    if (reply_str(fv->element[k]) && !strcmp(fv->element[k]->str, "job"))
                        job = reply_str(fv->element[k + 1]);
            if (*n == *cap) {
                int nc = *cap ? *cap * 2 : 16;
                queue_entry *l = realloc(*list, (size_t)nc * sizeof *l);
                if (!l) return lisa_error_set(LISA_ERR_NOMEM, "out of memory");
                *list = l;
                *cap = nc;
            }
            queue_entry *qe = &(*list)[(*n)++];
            snprintf(qe->stream, sizeof qe->stream, "%s", sr->element[0]->str);
            snprintf(qe->entry, sizeof qe->entry, "%s", er->element[0]->str);
            /* an entry without a job field is started as job "" and skipped */
            snprintf(qe->job, sizeof qe->job, "%s", job ? job : "");
        }
    }
    return LISA_OK;
}

/* One XREADGROUP for worker over streams[from..to) with COUNT count and
 * BLOCK block_ms (< 0: no BLOCK); -NOGROUP recreates the groups and tries
 * once more. */
static lisa_status queue_xreadgroup(lisa_queue *q, const char *worker, int from, int to, int count,
                                    int block_ms, queue_entry **list, int *n, int *cap) {
    char cnt[16], blk[16];
    snprintf(cnt, sizeof cnt, "%d", count);
    snprintf(blk, sizeof blk, "%d", block_ms);
    for (int attempt = 0;; attempt++) {
        const char *argv[16];
        int argc = 0;
        argv[argc++] = "XREADGROUP";
        argv[argc++] = "GROUP";
        argv[argc++] = QUEUE_GROUP;
        argv[argc++] = worker;
        argv[argc++] = "COUNT";
        argv[argc++] = cnt;
        if (block_ms >= 0) {
            argv[argc++] = "BLOCK";
            argv[argc++] = blk;
        }
        argv[argc++] = "STREAMS";
        for (int i = from; i < to; i++) argv[argc++] = q->streams[i];
        for (int i = from; i < to; i++) argv[argc++] = ">";
        redisReply *rep = lisa_redis_cmd(q->r, argc, argv, NULL);
        if (attempt == 0 && is_error(rep, "NOGROUP")) {
            freeReplyObject(rep);
            LISA_TRY(queue_groups_create(q));
            continue;
        }
        LISA_TRY(queue_check(q, rep, "XREADGROUP"));
        lisa_status st = entries_collect(rep, list, n, cap);
        freeReplyObject(rep);
        return st;
    }
}

/* Starts entries list[0..n) for worker into out (up to max), keeping the
 * ones past max in the carry list. Returns how many started, or -1. */
static int queue_start_list(lisa_queue *q, const char *worker, queue_entry *list, int n, int max,
                            lisa_queue_job *out, lisa_status *st) {
    int got = 0, i = 0;
    for (; i < n && got < max; i++) {
        int started = 0;
        lisa_status s = queue_start(q, worker, &list[i], &out[got], &started);
        if (s != LISA_OK) {
            /* jobs already started are the caller's; the rest stay pending
             * for worker and are reclaimed after the lease */
            if (got) return got;
            if (st) *st = s;
            return -1;
        }
        got += started;
    }
    if (i < n) {
        int left = n - i;
        if (q->cap_carry < q->n_carry + left) {
            queue_entry *c = realloc(q->carry, (size_t)(q->n_carry + left) * sizeof *c);
            if (!c) return got; /* left pending: reclaimed after the lease */
            q->carry = c;
            q->cap_carry = q->n_carry + left;
        }
        memcpy(q->carry + q->n_carry, list + i, (size_t)left * sizeof *list);
        q->n_carry += left;
        snprintf(q->carry_worker, sizeof q->carry_worker, "%s", worker);
    }
    return got;
}

int lisa_queue_read(lisa_queue *q, const char *worker, int max, int block_ms,
                    lisa_queue_job *out, lisa_status *st) {
    if (st) *st = LISA_OK;
    if (max <= 0) return 0;
    lisa_status s = queue_id_check(worker, 128, "worker");
    if (s != LISA_OK) {
        if (st) *st = s;
        return -1;
    }
    queue_entry *list = NULL;
    int n = 0, cap = 0;
    if (q->n_carry && strcmp(q->carry_worker, worker)) q->n_carry = 0;
    if (q->n_carry) {
        list = q->carry;
        n = cap = q->n_carry;
        q->carry = NULL;
        q->n_carry = q->cap_carry = 0;
    }
    for (int p = 0; p < 3 && n < max && s == LISA_OK; p++)
        s = queue_xreadgroup(q, worker, p, p + 1, max - n, -1, &list, &n, &cap);
    if (s == LISA_OK && n == 0 && block_ms > 0) {
        int limit = (int)(lisa_redis_io_timeout(q->r) * 1000) - 1000;
        if (limit < 100) limit = 100;
        s = queue_xreadgroup(q, worker, 0, 3, max, block_ms < limit ? block_ms : limit, &list, &n,
                             &cap);
    }
    int got;
    if (s != LISA_OK && n == 0) {
        if (st) *st = s;
        got = -1;
    } else {
        /* high priority first; the blocking read may mix streams */
        queue_entry *sorted = n ? malloc((size_t)n * sizeof *sorted) : NULL;
        if (n && !sorted) {
            got = queue_start_list(q, worker, list, n, max, out, st);
        } else {
            int k = 0;
            for (int p = 0; p < 3; p++)
                for (int i = 0; i < n; i++)
                    if (!strcmp(list[i].stream, q->streams[p])) sorted[k++] = list[i];
            for (int i = 0; i < n; i++)
                if (strcmp(list[i].stream, q->streams[0]) && strcmp(list[i].stream, q->streams[1]) &&
                    strcmp(list[i].stream, q->streams[2]))
                    sorted[k++] = list[i];
            got = queue_start_list(q, worker, sorted, n, max, out, st);
            free(sorted);
        }
    }
    free(list);
    return got;
}

int lisa_queue_reclaim(lisa_queue *q, const char *worker, int64_t min_idle_ms, int max,
                       lisa_queue_job *out, lisa_status *st) {
    if (st) *st = LISA_OK;
    if (max <= 0) return 0;
    lisa_status s = queue_id_check(worker, 128, "worker");
    if (s != LISA_OK) {
        if (st) *st = s;
        return -1;
    }
    char idle[24], count[16];
    snprintf(idle, sizeof idle, "%" PRId64, min_idle_ms > 0 ? min_idle_ms : (int64_t)0);
    snprintf(count, sizeof count, "%d", max);
    const char *args[] = {worker, idle, count};
    redisReply *rep = queue_fcall(q, "lisa_reclaim", 3, args, NULL);
    s = queue_check(q, rep, "FCALL lisa_reclaim");
    if (s == LISA_OK && (rep->type != REDIS_REPLY_ARRAY || rep->elements % 3)) {
        freeReplyObject(rep);
        s = queue_bad_reply("FCALL lisa_reclaim");
    }
    if (s != LISA_OK) {
        if (st) *st = s;
        return -1;
    }
    int n = (int)(rep->elements / 3);
    queue_entry *list = n ? calloc((size_t)n, sizeof *list) : NULL;
    if (n && !list) {
        freeReplyObject(rep);
        if (st) *st = lisa_error_set(LISA_ERR_NOMEM, "out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        const char *job = reply_str(rep->element[3 * i]), *stream = reply_str(rep->element[3 * i + 1]),
                   *entry = reply_str(rep->element[3 * i + 2]);
        snprintf(list[i].job, sizeof list[i].job, "%s", job ? job : "");
        snprintf(list[i].stream, sizeof list[i].stream, "%s", stream ? stream : "");
        snprintf(list[i].entry, sizeof list[i].entry, "%s", entry ? entry : "");
    }
    freeReplyObject(rep);
    int got = queue_start_list(q, worker, list, n, max, out, st);
    free(list);
    return got;
}

lisa_status lisa_queue_touch(lisa_queue *q, const char *worker, const lisa_queue_job *jobs, int n,
                             lisa_queue_touch_result *out) {
    if (n <= 0) return LISA_OK;
    int argc = 6 + 4 * n;
    const char **argv = malloc((size_t)argc * sizeof *argv);
    char(*tokens)[24] = malloc((size_t)n * sizeof *tokens);
    if (!argv || !tokens) {
        free(argv);
        free(tokens);
        return lisa_error_set(LISA_ERR_NOMEM, "out of memory");
    }
    char cnt[16];
    snprintf(cnt, sizeof cnt, "%d", n);
    argv[0] = "FCALL";
    argv[1] = "lisa_touch";
    argv[2] = "0";
    argv[3] = q->prefix;
    argv[4] = worker;
    argv[5] = cnt;
    for (int i = 0; i < n; i++) {
        snprintf(tokens[i], sizeof tokens[i], "%" PRId64, jobs[i].token);
        argv[6 + 4 * i] = jobs[i].id;
        argv[7 + 4 * i] = jobs[i].stream;
        argv[8 + 4 * i] = jobs[i].entry;
        argv[9 + 4 * i] = tokens[i];
    }
    redisReply *rep = lisa_redis_cmd(q->r, argc, argv, NULL);
    free(argv);
    free(tokens);
    LISA_TRY(queue_check(q, rep, "FCALL lisa_touch"));
    lisa_status st = LISA_OK;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != (size_t)n) {
        st = queue_bad_reply("FCALL lisa_touch");
    } else {
        for (int i = 0; i < n; i++) {
            const char *v = reply_str(rep->element[i]);
            out[i] = v && !strcmp(v, "ok")       ? LISA_TOUCH_OK
                     : v && !strcmp(v, "cancel") ? LISA_TOUCH_CANCEL
                                                 : LISA_TOUCH_LOST;
        }
    }
    freeReplyObject(rep);
    return st;
}

/* "done" / "retry" / ... of a finish or fail reply. */
static lisa_status outcome_parse(redisReply *rep, const char *what, lisa_queue_outcome *out) {
    static const char *const names[] = {"done", "retry", "failed", "cancelled", "stale"};
    const char *s = reply_str(rep);
    for (int i = 0; s && i < 5; i++)
        if (!strcmp(s, names[i])) {
            *out = (lisa_queue_outcome)i;
            freeReplyObject(rep);
            return LISA_OK;
        }
    freeReplyObject(rep);
    return queue_bad_reply(what);
}

lisa_status lisa_queue_finish(lisa_queue *q, const char *worker, const lisa_queue_job *j,
                              const uint8_t *res, size_t res_len, lisa_queue_outcome *out) {
    char token[24];
    snprintf(token, sizeof token, "%" PRId64, j->token);
    const char *args[] = {j->id, j->stream, j->entry, worker, token, res ? (const char *)res : "", "0"};
    size_t lens[7];
    for (int i = 0; i < 7; i++) lens[i] = strlen(args[i]);
    lens[5] = res ? res_len : 0;
    redisReply *rep = queue_fcall(q, "lisa_finish", 7, args, lens);
    LISA_TRY(queue_check(q, rep, "FCALL lisa_finish"));
    return outcome_parse(rep, "FCALL lisa_finish", out);
}

lisa_status lisa_queue_fail(lisa_queue *q, const char *worker, const lisa_queue_job *j,
                            const char *error, int retryable, int64_t backoff_ms,
                            const uint8_t *res, size_t res_len, lisa_queue_outcome *out) {
    char token[24], backoff[24], jitter[32];
    snprintf(token, sizeof token, "%" PRId64, j->token);
    snprintf(backoff, sizeof backoff, "%" PRId64, backoff_ms > 0 ? backoff_ms : (int64_t)0);
    snprintf(jitter, sizeof jitter, "%.6f", queue_random01(q));
    const char *args[] = {j->id, j->stream, j->entry, worker, token, error ? error : "",
                          retryable ? "1" : "0", backoff, jitter, res ? (const char *)res : "", "0"};
    size_t lens[11];
    for (int i = 0; i < 11; i++) lens[i] = strlen(args[i]);
    lens[9] = res ? res_len : 0;
    redisReply *rep = queue_fcall(q, "lisa_fail", 11, args, lens);
    LISA_TRY(queue_check(q, rep, "FCALL lisa_fail"));
    return outcome_parse(rep, "FCALL lisa_fail", out);
}

lisa_status lisa_queue_promote(lisa_queue *q, int max, int *n_promoted) {
    char m[16];
    snprintf(m, sizeof m, "%d", max > 0 ? max : 100);
    const char *args[] = {m};
    redisReply *rep = queue_fcall(q, "lisa_promote", 1, args, NULL);
    LISA_TRY(queue_check(q, rep, "FCALL lisa_promote"));
    lisa_status st = rep->type == REDIS_REPLY_INTEGER ? LISA_OK : queue_bad_reply("FCALL lisa_promote");
    if (n_promoted) *n_promoted = st == LISA_OK ? (int)rep->integer : 0;
    freeReplyObject(rep);
    return st;
}

lisa_status lisa_queue_heartbeat(lisa_queue *q, const lisa_queue_worker_info *w,
                                 int64_t interval_ms) {
    LISA_TRY(queue_id_check(w->name, sizeof w->name, "worker"));
    char ttl[24], pid[16], batch[16], jobs[16], done[24], failed[24], started[24], rate[32];
    snprintf(ttl, sizeof ttl, "%" PRId64, 3 * (interval_ms > 0 ? interval_ms : (int64_t)10000));
    snprintf(pid, sizeof pid, "%d", w->pid);
    snprintf(batch, sizeof batch, "%d", w->batch);
    snprintf(jobs, sizeof jobs, "%d", w->running);
    snprintf(done, sizeof done, "%" PRId64, w->done);
    snprintf(failed, sizeof failed, "%" PRId64, w->failed);
    snprintf(started, sizeof started, "%" PRId64, w->started_ms);
    snprintf(rate, sizeof rate, "%.3f", w->rate);
    const char *args[] = {w->name, ttl, "host", w->host, "pid", pid, "device", w->device,
                          "state", w->state[0] ? w->state : "idle", "batch", batch, "jobs", jobs,
                          "current", w->current, "done", done, "failed", failed, "started_ms",
                          started, "rate", rate};
    redisReply *rep = queue_fcall(q, "lisa_heartbeat", (int)(sizeof args / sizeof *args), args, NULL);
    LISA_TRY(queue_check(q, rep, "FCALL lisa_heartbeat"));
    freeReplyObject(rep);
    return LISA_OK;
}

lisa_status lisa_queue_worker_gone(lisa_queue *q, const char *worker) {
    const char *args[] = {worker};
    redisReply *rep = queue_fcall(q, "lisa_worker_gone", 1, args, NULL);
    LISA_TRY(queue_check(q, rep, "FCALL lisa_worker_gone"));
    freeReplyObject(rep);
    return LISA_OK;
}

/* ---- following ---------------------------------------------------------- */

static lisa_status queue_pipeline(lisa_queue *q, int n, int argc, const char *(*argv)[4],
                                  redisReply **reps);

/* HGETALL key: the reply (an array of pairs, freed by the caller), or
 * LISA_ERR_NOTFOUND (message: what) when the hash does not exist. */
static lisa_status queue_hgetall(lisa_queue *q, const char *key, const char *what,
                                 redisReply **out) {
    const char *argv[] = {"HGETALL", key};
    redisReply *rep = lisa_redis_cmd(q->r, 2, argv, NULL);
    LISA_TRY(queue_check(q, rep, "HGETALL"));
    if (rep->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(rep);
        return queue_bad_reply("HGETALL");
    }
    if (rep->elements == 0) {
        freeReplyObject(rep);
        return lisa_error_set(LISA_ERR_NOTFOUND, "%s", what);
    }
    *out = rep;
    return LISA_OK;
}

/* The value of field in an HGETALL reply ("" when absent). */
static const char *hash_field(const redisReply *h, const char *field, size_t *len) {
    for (size_t i = 0; i + 1 < h->elements; i += 2) {
        const char *k = reply_str(h->element[i]);
        if (k && !strcmp(k, field) && reply_str(h->element[i + 1])) {
            if (len) *len = h->element[i + 1]->len;
            return h->element[i + 1]->str;
        }
    }
    if (len) *len = 0;
    return "";
}

#define HASH_STR(h, dst, field)                                \
    do {                                                       \
        size_t len_;                                           \
        const char *v_ = hash_field(h, field, &len_);          \
        copy_str(dst, sizeof(dst), v_, len_);                  \
    } while (0)

lisa_status lisa_queue_job_get(lisa_queue *q, const char *id, lisa_queue_job_info *out) {
    memset(out, 0, sizeof *out);
    LISA_TRY(queue_id_check(id, sizeof out->id, "job"));
    char key[192], what[160];
    key_of(q, key, sizeof key, "job:", id);
    snprintf(what, sizeof what, "no job %s (unknown, or expired)", id);
    redisReply *h = NULL;
    LISA_TRY(queue_hgetall(q, key, what, &h));
    snprintf(out->id, sizeof out->id, "%s", id);
    HASH_STR(h, out->batch, "batch");
    HASH_STR(h, out->custom_id, "custom_id");
    HASH_STR(h, out->name, "name");
    HASH_STR(h, out->user, "user");
    HASH_STR(h, out->owner, "owner");
    HASH_STR(h, out->error, "error");
    HASH_STR(h, out->image, "image");
    HASH_STR(h, out->prompt, "prompt");
    out->state = lisa_job_state_parse(hash_field(h, "state", NULL));
    int p = lisa_job_priority_parse(hash_field(h, "priority", NULL));
    out->priority = p < 0 ? LISA_PRIO_NORMAL : (lisa_job_priority)p;
    out->attempts = (int)str_int(hash_field(h, "attempts", NULL));
    out->max_attempts = (int)str_int(hash_field(h, "max_attempts", NULL));
    out->created_ms = str_int(hash_field(h, "created_ms", NULL));
    out->started_ms = str_int(hash_field(h, "started_ms", NULL));
    out->finished_ms = str_int(hash_field(h, "finished_ms", NULL));
    out->retry_at_ms = str_int(hash_field(h, "retry_at_ms", NULL));
    freeReplyObject(h);
    return LISA_OK;
}

lisa_status lisa_queue_batch_get(lisa_queue *q, const char *bid, lisa_queue_batch_info *out) {
    memset(out, 0, sizeof *out);
    LISA_TRY(queue_id_check(bid, sizeof out->id, "batch"));
    char key[192], what[160];
    key_of(q, key, sizeof key, "batch:", bid);
    snprintf(what, sizeof what, "no batch %s (unknown, or expired)", bid);
    redisReply *h = NULL;
    LISA_TRY(queue_hgetall(q, key, what, &h));
    snprintf(out->id, sizeof out->id, "%s", bid);
    HASH_STR(h, out->name, "name");
    HASH_STR(h, out->user, "user");
    out->total = str_int(hash_field(h, "total", NULL));
    out->queued = str_int(hash_field(h, "queued", NULL));
    out->running = str_int(hash_field(h, "running", NULL));
    out->retry = str_int(hash_field(h, "retry", NULL));
    out->done = str_int(hash_field(h, "done", NULL));
    out->failed = str_int(hash_field(h, "failed", NULL));
    out->cancelled = str_int(hash_field(h, "cancelled", NULL));
    out->cancelling = str_int(hash_field(h, "cancelling", NULL));
    out->created_ms = str_int(hash_field(h, "created_ms", NULL));
    out->first_start_ms = str_int(hash_field(h, "first_start_ms", NULL));
    out->last_finish_ms = str_int(hash_field(h, "last_finish_ms", NULL));
    freeReplyObject(h);
    return LISA_OK;
}

/* The string elements of an array reply into a malloc'd array of
 * width-byte ids. */
static lisa_status ids_copy(const redisReply *rep, size_t width, char **ids, int *n) {
    *ids = NULL;
    *n = 0;
    if (rep->type != REDIS_REPLY_ARRAY) return queue_bad_reply("id list");
    if (!rep->elements) return LISA_OK;
    char *buf = calloc(rep->elements, width);
    if (!buf) return lisa_error_set(LISA_ERR_NOMEM, "out of memory");
    int k = 0;
    for (size_t i = 0; i < rep->elements; i++) {
        if (!reply_str(rep->element[i])) continue;
        copy_str(buf + (size_t)k * width, width, rep->element[i]->str, rep->element[i]->len);
        k++;
    }
    *ids = buf;
    *n = k;
    return LISA_OK;
}

lisa_status lisa_queue_batch_jobs(lisa_queue *q, const char *bid, char (**ids)[64], int *n) {
    *ids = NULL;
    *n = 0;
    LISA_TRY(queue_id_check(bid, 48, "batch"));
    char key[192];
    key_of(q, key, sizeof key, "batch:", bid);
    const char *ex[] = {"EXISTS", key};
    redisReply *rep = lisa_redis_cmd(q->r, 2, ex, NULL);
    LISA_TRY(queue_check(q, rep, "EXISTS"));
    int exists = rep->type == REDIS_REPLY_INTEGER && rep->integer == 1;
    freeReplyObject(rep);
    if (!exists) return lisa_error_set(LISA_ERR_NOTFOUND, "no batch %s (unknown, or expired)", bid);
    size_t k = strlen(key);
    snprintf(key + k, sizeof key - k, ":ids");
    const char *argv[] = {"LRANGE", key, "0", "-1"};
    rep = lisa_redis_cmd(q->r, 4, argv, NULL);
    LISA_TRY(queue_check(q, rep, "LRANGE"));
    char *buf = NULL;
    lisa_status st = ids_copy(rep, 64, &buf, n);
    freeReplyObject(rep);
    *ids = (char(*)[64])buf;
    return st;
}

lisa_status lisa_queue_batches_recent(lisa_queue *q, int max, char (**ids)[48], int *n) {
    *ids = NULL;
    *n = 0;
    if (max <= 0) return LISA_OK;
    char key[128], stop[16];
    key_of(q, key, sizeof key, "batches", NULL);
    snprintf(stop, sizeof stop, "%d", max - 1);
    const char *argv[] = {"ZREVRANGE", key, "0", stop};
    redisReply *rep = lisa_redis_cmd(q->r, 4, argv, NULL);
    LISA_TRY(queue_check(q, rep, "ZREVRANGE"));
    char *buf = NULL;
    int nb = 0;
    lisa_status st = ids_copy(rep, 48, &buf, &nb);
    freeReplyObject(rep);
    if (st != LISA_OK || !nb) return st;
    /* batches whose keys expired are left out */
    char(*keys)[192] = calloc((size_t)nb, sizeof *keys);
    const char *(*cmds)[4] = calloc((size_t)nb, sizeof *cmds);
    redisReply **reps = calloc((size_t)nb, sizeof *reps);
    if (!keys || !cmds || !reps) st = lisa_error_set(LISA_ERR_NOMEM, "out of memory");
    for (int i = 0; st == LISA_OK && i < nb; i++) {
        key_of(q, keys[i], sizeof keys[i], "batch:", buf + (size_t)i * 48);
        cmds[i][0] = "EXISTS";
        cmds[i][1] = keys[i];
    }
    if (st == LISA_OK) st = queue_pipeline(q, nb, 2, cmds, reps);
    int k = 0;
    for (int i = 0; i < nb; i++) {
        if (st == LISA_OK && reps[i]->type == REDIS_REPLY_ERROR)
            st = lisa_redis_check(q->r, reps[i], "EXISTS");
        if (st == LISA_OK && reply_int(reps[i], 0) == 1) {
            if (k != i) memcpy(buf + (size_t)k * 48, buf + (size_t)i * 48, 48);
            k++;
        }
    }
    if (reps)
        for (int i = 0; i < nb; i++)
            if (reps[i]) freeReplyObject(reps[i]);
    free(keys);
    free(cmds);
    free(reps);
    if (st != LISA_OK) {
        free(buf);
        return st;
    }
    *ids = (char(*)[48])buf;
    *n = k;
    return LISA_OK;
}

/* GET key into a malloc'd buffer; LISA_ERR_NOTFOUND with what when nil. */
static lisa_status queue_get_bytes(lisa_queue *q, const char *key, const char *what, uint8_t **buf,
                                   size_t *len) {
    *buf = NULL;
    *len = 0;
    const char *argv[] = {"GET", key};
    redisReply *rep = lisa_redis_cmd(q->r, 2, argv, NULL);
    LISA_TRY(queue_check(q, rep, "GET"));
    lisa_status st = LISA_OK;
    if (rep->type == REDIS_REPLY_NIL) {
        st = lisa_error_set(LISA_ERR_NOTFOUND, "%s", what);
    } else if (rep->type != REDIS_REPLY_STRING) {
        st = queue_bad_reply("GET");
    } else {
        *buf = malloc(rep->len ? rep->len : 1);
        if (!*buf) {
            st = lisa_error_set(LISA_ERR_NOMEM, "out of memory for %zu bytes", rep->len);
        } else {
            memcpy(*buf, rep->str, rep->len);
            *len = rep->len;
        }
    }
    freeReplyObject(rep);
    return st;
}

lisa_status lisa_queue_request_get(lisa_queue *q, const char *id, uint8_t **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    LISA_TRY(queue_id_check(id, 64, "job"));
    char key[192], what[160];
    key_of(q, key, sizeof key, "req:", id);
    snprintf(what, sizeof what, "no request for job %s (unknown, or expired)", id);
    return queue_get_bytes(q, key, what, buf, len);
}

lisa_status lisa_queue_result_get(lisa_queue *q, const char *id, uint8_t **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    LISA_TRY(queue_id_check(id, 64, "job"));
    char key[192], what[160];
    key_of(q, key, sizeof key, "res:", id);
    snprintf(what, sizeof what, "no result for job %s (not finished, or expired)", id);
    return queue_get_bytes(q, key, what, buf, len);
}

lisa_status lisa_queue_cancel(lisa_queue *q, const char *id, lisa_queue_cancel_result *out,
                              lisa_job_state *was) {
    LISA_TRY(queue_id_check(id, 64, "job"));
    const char *args[] = {id};
    redisReply *rep = queue_fcall(q, "lisa_cancel", 1, args, NULL);
    LISA_TRY(queue_check(q, rep, "FCALL lisa_cancel"));
    const char *what = rep->type == REDIS_REPLY_ARRAY && rep->elements == 2
                           ? reply_str(rep->element[0]) : NULL;
    const char *prev = what ? reply_str(rep->element[1]) : NULL;
    lisa_status st = LISA_OK;
    if (!what || !prev) st = queue_bad_reply("FCALL lisa_cancel");
    else if (!strcmp(what, "cancelled")) *out = LISA_CANCEL_DONE;
    else if (!strcmp(what, "cancel_requested")) *out = LISA_CANCEL_REQUESTED;
    else if (!strcmp(what, "finished")) *out = LISA_CANCEL_FINISHED;
    else if (!strcmp(what, "unknown")) *out = LISA_CANCEL_UNKNOWN;
    else st = queue_bad_reply("FCALL lisa_cancel");
    if (st == LISA_OK && was) *was = lisa_job_state_parse(prev);
    freeReplyObject(rep);
    return st;
}

lisa_status lisa_queue_events_last(lisa_queue *q, char *id, size_t n) {
    char key[128];
    key_of(q, key, sizeof key, "events", NULL);
    const char *argv[] = {"XREVRANGE", key, "+", "-", "COUNT", "1"};
    redisReply *rep = lisa_redis_cmd(q->r, 6, argv, NULL);
    LISA_TRY(queue_check(q, rep, "XREVRANGE"));
    lisa_status st = LISA_OK;
    if (rep->type != REDIS_REPLY_ARRAY) st = queue_bad_reply("XREVRANGE");
    else if (rep->elements == 0) snprintf(id, n, "0-0");
    else if (rep->element[0]->type == REDIS_REPLY_ARRAY && rep->element[0]->elements >= 1 &&
             reply_str(rep->element[0]->element[0]))
        snprintf(id, n, "%s", rep->element[0]->element[0]->str);
    else st = queue_bad_reply("XREVRANGE");
    freeReplyObject(rep);
    return st;
}

/* One P:events entry ([id, [k, v, ...]]) into ev. */
static void event_parse(const redisReply *e, lisa_queue_event *ev) {
    memset(ev, 0, sizeof *ev);
    if (reply_str(e->element[0])) copy_str(ev->stream_id, sizeof ev->stream_id, e->element[0]->str,
                                           e->element[0]->len);
    const redisReply *fv = e->element[1];
    if (fv->type != REDIS_REPLY_ARRAY) return;
    for (size_t k = 0; k + 1 < fv->elements; k += 2) {
        const char *f = reply_str(fv->element[k]), *v = reply_str(fv->element[k + 1]);
        if (!f || !v) continue;
        size_t vl = fv->element[k + 1]->len;
        if (!strcmp(f, "job")) copy_str(ev->job, sizeof ev->job, v, vl);
        else if (!strcmp(f, "batch")) copy_str(ev->batch, sizeof ev->batch, v, vl);
        else if (!strcmp(f, "state")) ev->state = lisa_job_state_parse(v);
        else if (!strcmp(f, "ts")) ev->ts_ms = str_int(v);
        else if (!strcmp(f, "worker")) copy_str(ev->worker, sizeof ev->worker, v, vl);
        else if (!strcmp(f, "attempt")) ev->attempt = (int)str_int(v);
        else if (!strcmp(f, "error")) copy_str(ev->error, sizeof ev->error, v, vl);
    }
}

int lisa_queue_events_read(lisa_queue *q, char *after, int max, int block_ms,
                           lisa_queue_event *out, lisa_status *st) {
    if (st) *st = LISA_OK;
    if (max <= 0) return 0;
    char key[128], cnt[16], blk[16];
    key_of(q, key, sizeof key, "events", NULL);
    snprintf(cnt, sizeof cnt, "%d", max);
    int limit = (int)(lisa_redis_io_timeout(q->r) * 1000) - 1000;
    if (limit < 100) limit = 100;
    snprintf(blk, sizeof blk, "%d", block_ms < limit ? block_ms : limit);
    const char *argv[8];
    int argc = 0;
    argv[argc++] = "XREAD";
    argv[argc++] = "COUNT";
    argv[argc++] = cnt;
    if (block_ms > 0) {
        argv[argc++] = "BLOCK";
        argv[argc++] = blk;
    }
    argv[argc++] = "STREAMS";
    argv[argc++] = key;
    argv[argc++] = after[0] ? after : "0-0";
    redisReply *rep = lisa_redis_cmd(q->r, argc, argv, NULL);
    lisa_status s = queue_check(q, rep, "XREAD");
    if (s != LISA_OK) {
        if (st) *st = s;
        return -1;
    }
    int got = 0;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1 &&
        rep->element[0]->type == REDIS_REPLY_ARRAY && rep->element[0]->elements == 2 &&
        rep->element[0]->element[1]->type == REDIS_REPLY_ARRAY) {
        const redisReply *es = rep->element[0]->element[1];
        for (size_t i = 0; i < es->elements && got < max; i++) {
            const redisReply *e = es->element[i];
            if (e->type != REDIS_REPLY_ARRAY || e->elements != 2) continue;
            event_parse(e, &out[got]);
            snprintf(after, 48, "%s", out[got].stream_id);
            got++;
        }
    }
    freeReplyObject(rep);
    return got;
}

/* The value after name in a flat [name, value, ...] reply, or NULL. */
static const redisReply *flat_field(const redisReply *r, const char *name) {
    if (!r || r->type != REDIS_REPLY_ARRAY) return NULL;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const char *k = reply_str(r->element[i]);
        if (k && !strcmp(k, name)) return r->element[i + 1];
    }
    return NULL;
}

/* Pipelined one-key commands: argv[i] (argc each) sent together, replies
 * into reps (NULL entries when the connection broke). */
static lisa_status queue_pipeline(lisa_queue *q, int n, int argc, const char *(*argv)[4],
                                  redisReply **reps) {
    int sent = 0;
    lisa_status st = LISA_OK;
    for (; sent < n; sent++)
        if ((st = lisa_redis_append(q->r, argc, argv[sent], NULL)) != LISA_OK) break;
    for (int i = 0; i < n; i++) reps[i] = NULL;
    for (int i = 0; i < sent; i++) {
        reps[i] = lisa_redis_take(q->r);
        if (!reps[i]) {
            st = lisa_redis_check(q->r, NULL, "pipeline");
            break;
        }
    }
    return st;
}

lisa_status lisa_queue_depths_get(lisa_queue *q, lisa_queue_depths *out) {
    memset(out, 0, sizeof *out);
    char dead[128], delayed[128], workers[128];
    key_of(q, dead, sizeof dead, "dead", NULL);
    key_of(q, delayed, sizeof delayed, "delayed", NULL);
    key_of(q, workers, sizeof workers, "workers", NULL);
    const char *cmds[9][4] = {
        {"XINFO", "GROUPS", q->streams[0], NULL}, {"XINFO", "GROUPS", q->streams[1], NULL},
        {"XINFO", "GROUPS", q->streams[2], NULL}, {"XLEN", q->streams[0], NULL, NULL},
        {"XLEN", q->streams[1], NULL, NULL},      {"XLEN", q->streams[2], NULL, NULL},
        {"ZCARD", delayed, NULL, NULL},           {"XLEN", dead, NULL, NULL},
        {"TIME", NULL, NULL, NULL}};
    static const int argcs[9] = {3, 3, 3, 2, 2, 2, 2, 2, 1};
    redisReply *reps[9] = {0};
    lisa_status st = LISA_OK;
    for (int i = 0; i < 9 && st == LISA_OK; i++) st = lisa_redis_append(q->r, argcs[i], cmds[i], NULL);
    for (int i = 0; i < 9 && st == LISA_OK; i++) {
        reps[i] = lisa_redis_take(q->r);
        if (!reps[i]) st = lisa_redis_check(q->r, NULL, "queue depths");
    }
    for (int p = 0; p < 3 && st == LISA_OK; p++) {
        redisReply *g = reps[p];
        int64_t xlen = reply_int(reps[3 + p], 0);
        if (is_error(g, "ERR no such key")) continue; /* no stream yet: nothing queued */
        if ((st = lisa_redis_check(q->r, g, "XINFO GROUPS")) != LISA_OK) break;
        const redisReply *grp = NULL;
        for (size_t k = 0; g->type == REDIS_REPLY_ARRAY && k < g->elements; k++) {
            const char *name = reply_str(flat_field(g->element[k], "name"));
            if (name && !strcmp(name, QUEUE_GROUP)) grp = g->element[k];
        }
        if (!grp) {
            out->waiting[p] = xlen;
            continue;
        }
        out->pending[p] = reply_int(flat_field(grp, "pending"), 0);
        const redisReply *lag = flat_field(grp, "lag");
        /* The entries not pending are the waiting ones (finished and
         * cancelled entries are deleted). Redis 7.0's lag is nil when
         * deletions keep it from computing it, and can count deleted
         * entries (lag 2 on an empty stream after two XDELs of undelivered
         * entries), so it only ever lowers that bound. */
        int64_t bound = xlen > out->pending[p] ? xlen - out->pending[p] : 0;
        out->waiting[p] = bound;
        if (lag && lag->type == REDIS_REPLY_INTEGER && lag->integer < bound)
            out->waiting[p] = lag->integer;
        out->running += out->pending[p];
    }
    int64_t now_ms = 0;
    if (st == LISA_OK) {
        out->retrying = reply_int(reps[6], 0);
        out->dead = reply_int(reps[7], 0);
        if (reps[8] && reps[8]->type == REDIS_REPLY_ARRAY && reps[8]->elements == 2)
            now_ms = reply_int(reps[8]->element[0], 0) * 1000 + reply_int(reps[8]->element[1], 0) / 1000;
    }
    for (int i = 0; i < 9; i++)
        if (reps[i]) freeReplyObject(reps[i]);
    if (st != LISA_OK) return st;

    /* throughput: this minute's counter plus the older minutes, the oldest
     * one weighted by the part of it still inside the window */
    int64_t minute = now_ms / 60000;
    double frac = (double)(now_ms % 60000) / 60000.0;
    char keys[6][160];
    const char *mget[7] = {"MGET"};
    for (int i = 0; i < 6; i++) {
        char m[32];
        snprintf(m, sizeof m, "%" PRId64, minute - i);
        key_of(q, keys[i], sizeof keys[i], "tput:", m);
        mget[1 + i] = keys[i];
    }
    redisReply *rep = lisa_redis_cmd(q->r, 7, mget, NULL);
    LISA_TRY(queue_check(q, rep, "MGET"));
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 6) {
        double c[6];
        for (int i = 0; i < 6; i++) c[i] = (double)reply_int(rep->element[i], 0);
        out->done_1m = (int64_t)(c[0] + c[1] * (1.0 - frac) + 0.5);
        out->done_5m = (int64_t)(c[0] + c[1] + c[2] + c[3] + c[4] + c[5] * (1.0 - frac) + 0.5);
    }
    freeReplyObject(rep);

    /* workers whose record has not expired (3 heartbeats) */
    lisa_queue_worker_info *ws = NULL;
    int nw = 0;
    LISA_TRY(lisa_queue_workers_list(q, &ws, &nw));
    for (int i = 0; i < nw; i++) out->workers += strcmp(ws[i].state, "dead") != 0;
    free(ws);
    return LISA_OK;
}

/* Adds each consumer's pending count of one XINFO CONSUMERS reply to the
 * workers of the same name. */
static void consumers_add(const redisReply *rep, lisa_queue_worker_info *ws, int n) {
    if (!rep || rep->type != REDIS_REPLY_ARRAY) return;
    for (size_t k = 0; k < rep->elements; k++) {
        const char *name = reply_str(flat_field(rep->element[k], "name"));
        if (!name) continue;
        for (int i = 0; i < n; i++)
            if (!strcmp(ws[i].name, name)) ws[i].pending += reply_int(flat_field(rep->element[k], "pending"), 0);
    }
}

lisa_status lisa_queue_workers_list(lisa_queue *q, lisa_queue_worker_info **out, int *n) {
    *out = NULL;
    *n = 0;
    char key[128];
    key_of(q, key, sizeof key, "workers", NULL);
    const char *argv[] = {"ZREVRANGE", key, "0", "-1", "WITHSCORES"};
    redisReply *rep = lisa_redis_cmd(q->r, 5, argv, NULL);
    LISA_TRY(queue_check(q, rep, "ZREVRANGE"));
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements % 2) {
        freeReplyObject(rep);
        return queue_bad_reply("ZREVRANGE WITHSCORES");
    }
    int nw = (int)(rep->elements / 2);
    if (!nw) {
        freeReplyObject(rep);
        return LISA_OK;
    }
    lisa_queue_worker_info *ws = calloc((size_t)nw, sizeof *ws);
    char(*keys)[256] = calloc((size_t)nw, sizeof *keys);
    const char *(*cmds)[4] = calloc((size_t)nw + 3, sizeof *cmds);
    redisReply **reps = calloc((size_t)nw + 3, sizeof *reps);
    lisa_status st = LISA_OK;
    if (!ws || !keys || !cmds || !reps) st = lisa_error_set(LISA_ERR_NOMEM, "out of memory");
    for (int i = 0; st == LISA_OK && i < nw; i++) {
        const redisReply *m = rep->element[2 * i];
        copy_str(ws[i].name, sizeof ws[i].name, m->str ? m->str : "", m->str ? m->len : 0);
        ws[i].last_seen_ms = (int64_t)strtod(reply_str(rep->element[2 * i + 1]) ? rep->element[2 * i + 1]->str : "0", NULL);
        snprintf(keys[i], sizeof keys[i], "%s:worker:%s", q->prefix, ws[i].name);
        cmds[i][0] = "HGETALL";
        cmds[i][1] = keys[i];
    }
    freeReplyObject(rep);
    if (st == LISA_OK) st = queue_pipeline(q, nw, 2, cmds, reps);
    for (int i = 0; st == LISA_OK && i < nw; i++) {
        const redisReply *h = reps[i];
        if (h->type == REDIS_REPLY_ERROR) {
            st = lisa_redis_check(q->r, h, "HGETALL");
            break;
        }
        if (h->type != REDIS_REPLY_ARRAY || h->elements == 0) {
            snprintf(ws[i].state, sizeof ws[i].state, "dead");
            continue;
        }
        HASH_STR(h, ws[i].host, "host");
        HASH_STR(h, ws[i].device, "device");
        HASH_STR(h, ws[i].state, "state");
        HASH_STR(h, ws[i].current, "current");
        ws[i].pid = (int)str_int(hash_field(h, "pid", NULL));
        ws[i].batch = (int)str_int(hash_field(h, "batch", NULL));
        ws[i].running = (int)str_int(hash_field(h, "jobs", NULL));
        ws[i].done = str_int(hash_field(h, "done", NULL));
        ws[i].failed = str_int(hash_field(h, "failed", NULL));
        ws[i].started_ms = str_int(hash_field(h, "started_ms", NULL));
        ws[i].rate = strtod(hash_field(h, "rate", NULL), NULL);
        int64_t seen = str_int(hash_field(h, "last_seen_ms", NULL));
        if (seen) ws[i].last_seen_ms = seen;
    }
    if (reps)
        for (int i = 0; i < nw; i++)
            if (reps[i]) freeReplyObject(reps[i]);
    if (st == LISA_OK) {
        for (int p = 0; p < 3; p++) {
            cmds[p][0] = "XINFO";
            cmds[p][1] = "CONSUMERS";
            cmds[p][2] = q->streams[p];
            cmds[p][3] = QUEUE_GROUP;
        }
        st = queue_pipeline(q, 3, 4, cmds, reps);
        for (int p = 0; p < 3; p++) {
            /* an error (no stream or group yet) means nothing pending */
            if (st == LISA_OK) consumers_add(reps[p], ws, nw);
            if (reps[p]) freeReplyObject(reps[p]);
        }
    }
    free(keys);
    free(cmds);
    free(reps);
    if (st != LISA_OK) {
        free(ws);
        return st;
    }
    *out = ws;
    *n = nw;
    return LISA_OK;
}

lisa_status lisa_queue_dead_list(lisa_queue *q, int max, lisa_queue_dead **out, int *n) {
    *out = NULL;
    *n = 0;
    if (max <= 0) return LISA_OK;
    char key[128], cnt[16];
    key_of(q, key, sizeof key, "dead", NULL);
    snprintf(cnt, sizeof cnt, "%d", max);
    const char *argv[] = {"XRANGE", key, "-", "+", "COUNT", cnt};
    redisReply *rep = lisa_redis_cmd(q->r, 6, argv, NULL);
    LISA_TRY(queue_check(q, rep, "XRANGE"));
    if (rep->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(rep);
        return queue_bad_reply("XRANGE");
    }
    lisa_queue_dead *d = rep->elements ? calloc(rep->elements, sizeof *d) : NULL;
    if (rep->elements && !d) {
        freeReplyObject(rep);
        return lisa_error_set(LISA_ERR_NOMEM, "out of memory");
    }
    int k = 0;
    for (size_t i = 0; i < rep->elements; i++) {
        const redisReply *e = rep->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[1]->type != REDIS_REPLY_ARRAY)
            continue;
        const redisReply *fv = e->element[1];
        lisa_queue_dead *x = &d[k++];
        for (size_t f = 0; f + 1 < fv->elements; f += 2) {
            const char *name = reply_str(fv->element[f]), *v = reply_str(fv->element[f + 1]);
            if (!name || !v) continue;
            size_t vl = fv->element[f + 1]->len;
            if (!strcmp(name, "job")) copy_str(x->job, sizeof x->job, v, vl);
            else if (!strcmp(name, "batch")) copy_str(x->batch, sizeof x->batch, v, vl);
            else if (!strcmp(name, "reason")) copy_str(x->reason, sizeof x->reason, v, vl);
            else if (!strcmp(name, "error")) copy_str(x->error, sizeof x->error, v, vl);
            else if (!strcmp(name, "deliveries")) x->deliveries = (int)str_int(v);
        }
    }
    freeReplyObject(rep);
    *out = d;
    *n = k;
    return LISA_OK;
}
