/* queue-acl.c: the ACL rule lists of the queue's roles (see queue-acl.h).
 * The command lists follow what queue.lua's functions and queue.c's reads
 * send; test-queue runs them against a real server. Deliberately not
 * here: talking to Redis (the rules are text for ACL SETUSER or a file). */
#include "queue-acl.h"

#include <stdio.h>
#include <string.h>

#include "status.h"

/* What every role may do on its connection: the handshake and the reads
 * that status, wait, watch, result, queue and workers send. */
#define ACL_READS                                                                   \
    "+ping +select +client|setname +time +exists +get +mget +hget +hmget +hgetall " \
    "+lrange +llen +zrange +zrevrange +zrangebyscore +zcard +zcount +zscore "      \
    "+xrange +xrevrange +xread +xlen +xinfo|groups +xinfo|consumers +xinfo|stream"

/* The commands inside lisa_batch_new, lisa_submit and lisa_cancel. */
#define ACL_SUBMIT_INNER                                                            \
    "+incr +hset +hincrby +hdel +zadd +zrem +xadd +xdel +set +rpush +persist "     \
    "+pexpire +pexpireat"

/* The further commands inside the worker's functions and its own calls. */
#define ACL_WORKER_INNER                                                            \
    "+del +expire +xack +xclaim +xautoclaim +xpending +xreadgroup +zremrangebyscore " \
    "+xgroup|create +xgroup|createconsumer +function|load +function|list"

/* The keys submit and cancel write ("%s" is the escaped prefix). */
static const char *const submit_writes[] = {"seq", "batches", "batch:*", "job:*", "req:*",
                                            "jobs:*", "entries", "events", "delayed"};

/* prefix with the glob characters escaped, into dst; 0 when it cannot be. */
static int acl_prefix_escape(const char *prefix, char *dst, size_t n) {
    size_t k = 0;
    for (const char *p = prefix; *p; p++) {
        if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
            lisa_error_set(LISA_ERR_ARG, "the queue prefix \"%s\" has white space, which ACL rules cannot hold",
                           prefix);
            return 0;
        }
        if (k + 3 >= n) {
            lisa_error_set(LISA_ERR_ARG, "the queue prefix \"%s\" is too long", prefix);
            return 0;
        }
        if (strchr("*?[]\\", *p)) dst[k++] = '\\';
        dst[k++] = *p;
    }
    dst[k] = 0;
    return 1;
}

/* Appends printf text to buf at *k; 0 when it does not fit. */
static int acl_put(char *buf, size_t n, size_t *k, const char *fmt, const char *a, const char *b) {
    int w = snprintf(buf + *k, n - *k, fmt, a, b);
    if (w < 0 || (size_t)w >= n - *k) return 0;
    *k += (size_t)w;
    return 1;
}

const char *lisa_queue_acl_rules(const char *role, const char *prefix, char *buf, size_t n) {
    char P[256];
    size_t k = 0;
    if (!prefix || !*prefix) prefix = "lisa";
    if (!role || !n) {
        lisa_error_set(LISA_ERR_ARG, "no ACL role given");
        return NULL;
    }
    if (!acl_prefix_escape(prefix, P, sizeof P)) return NULL;
    buf[0] = 0;
    int ok = acl_put(buf, n, &k, "%s%s", "resetkeys resetchannels -@all ", "");
    if (!strcmp(role, "submit")) {
        ok = ok && acl_put(buf, n, &k, "%s %s", "+fcall|lisa_version +fcall|lisa_batch_new "
                           "+fcall|lisa_submit +fcall|lisa_cancel", ACL_READS);
        ok = ok && acl_put(buf, n, &k, " %s %%R~%s:*", ACL_SUBMIT_INNER, P);
        for (size_t i = 0; i < sizeof submit_writes / sizeof *submit_writes; i++)
            ok = ok && acl_put(buf, n, &k, " %%RW~%s:%s", P, submit_writes[i]);
    } else if (!strcmp(role, "worker")) {
        ok = ok && acl_put(buf, n, &k, "+fcall %s %s", ACL_READS, ACL_SUBMIT_INNER);
        ok = ok && acl_put(buf, n, &k, " %s ~%s:*", ACL_WORKER_INNER, P);
    } else if (!strcmp(role, "admin")) {
        ok = ok && acl_put(buf, n, &k, "+@all -@dangerous +config|get +info ~%s:*%s", P, "");
    } else {
        lisa_error_set(LISA_ERR_ARG, "unknown ACL role \"%s\" (submit, worker or admin)", role);
        return NULL;
    }
    if (!ok) {
        lisa_error_set(LISA_ERR_ARG, "the ACL rules for role %s do not fit in %zu bytes", role, n);
        return NULL;
    }
    return buf;
}
