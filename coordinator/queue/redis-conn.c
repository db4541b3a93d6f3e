/* redis-conn.c: the queue's Redis connection (see redis-conn.h): URL and
 * password-file parsing, connecting with a connect timeout and then an I/O
 * timeout, AUTH / SELECT / CLIENT SETNAME, a PING that tells a server
 * still loading its AOF from one that is up, reconnection with capped
 * exponential backoff and jitter, and the command wrappers that mark the
 * connection broken when hiredis gives no reply.
 *
 * Deliberately not here: what any command means (queue.c), retrying a
 * command after a reconnect (the caller knows whether that is safe). */
#include "redis-conn.h"
#include "fault.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define REDIS_DEFAULT_URL "redis://127.0.0.1:6379"
#define BACKOFF_FIRST_S 0.1
#define BACKOFF_MAX_S 5.0

struct lisa_redis {
    redisContext *c;
    lisa_redis_url url;        /* password: the URL's or the file's */
    double connect_timeout_s, io_timeout_s;
    char client_name[128];
    char where[600];
    int broken;
    uint64_t rng;
};

/* ---- URLs --------------------------------------------------------------- */

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Copies src[0..len) into dst (n bytes) decoding %XX escapes. */
static lisa_status url_decode(char *dst, size_t n, const char *src, size_t len, const char *what) {
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        char c = src[i];
        if (c == '%') {
            int hi = i + 1 < len ? hex_value(src[i + 1]) : -1;
            int lo = i + 2 < len ? hex_value(src[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return lisa_error_set(LISA_ERR_ARG, "bad percent-escape in the %s of the Redis URL",
                                      what);
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if (c == 0) return lisa_error_set(LISA_ERR_ARG, "NUL byte in the %s of the Redis URL", what);
        if (k + 1 >= n) return lisa_error_set(LISA_ERR_ARG, "the %s in the Redis URL is too long", what);
        dst[k++] = c;
    }
    dst[k] = 0;
    return LISA_OK;
}

/* "user[:password]" of length len into out. */
static lisa_status url_userinfo(const char *s, size_t len, lisa_redis_url *out) {
    const char *colon = memchr(s, ':', len);
    size_t ulen = colon ? (size_t)(colon - s) : len;
    LISA_TRY(url_decode(out->user, sizeof out->user, s, ulen, "user"));
    if (colon)
        LISA_TRY(url_decode(out->password, sizeof out->password, colon + 1, len - ulen - 1,
                            "password"));
    return LISA_OK;
}

static lisa_status url_number(const char *s, size_t len, long lo, long hi, const char *what,
                              const char *url, long *out) {
    char buf[32];
    if (len == 0 || len >= sizeof buf) goto bad;
    memcpy(buf, s, len);
    buf[len] = 0;
    char *end = NULL;
    errno = 0;
    long v = strtol(buf, &end, 10);
    if (errno || *end || buf[0] == '-' || buf[0] == '+' || v < lo || v > hi) goto bad;
    *out = v;
    return LISA_OK;
bad:
    return lisa_error_set(LISA_ERR_ARG, "bad %s \"%.*s\" in the Redis URL %s", what, (int)len, s, url);
}

static lisa_status url_parse_tcp(const char *url, const char *rest, lisa_redis_url *out) {
    const char *auth_end = rest + strcspn(rest, "/?#");
    const char *at = NULL;
    for (const char *p = rest; p < auth_end; p++)
        if (*p == '@') at = p;
    const char *host = rest;
    if (at) {
        LISA_TRY(url_userinfo(rest, (size_t)(at - rest), out));
        host = at + 1;
    }
    const char *host_end, *port = NULL;
    if (*host == '[') {
        const char *close = memchr(host, ']', (size_t)(auth_end - host));
        if (!close) return lisa_error_set(LISA_ERR_ARG, "unclosed [ in the Redis URL %s", url);
        host_end = close + 1;
        if (host_end < auth_end) {
            if (*host_end != ':')
                return lisa_error_set(LISA_ERR_ARG, "junk after ] in the Redis URL %s", url);
            port = host_end + 1;
        }
        host++;
        host_end = close;
    } else {
        const char *colon = memchr(host, ':', (size_t)(auth_end - host));
        host_end = colon ? colon : auth_end;
        if (colon) port = colon + 1;
    }
    size_t hlen = (size_t)(host_end - host);
    if (hlen == 0) return lisa_error_set(LISA_ERR_ARG, "no host in the Redis URL %s", url);
    if (hlen >= sizeof out->host)
        return lisa_error_set(LISA_ERR_ARG, "host too long in the Redis URL %s", url);
    memcpy(out->host, host, hlen);
    out->host[hlen] = 0;
    if (port) {
        long v;
        LISA_TRY(url_number(port, (size_t)(auth_end - port), 1, 65535, "port", url, &v));
        out->port = (int)v;
    }
    const char *p = auth_end;
    if (*p == '/') {
        p++;
        size_t dlen = strcspn(p, "?#");
        if (dlen) {
            long v;
            LISA_TRY(url_number(p, dlen, 0, 1 << 20, "database number", url, &v));
            out->db = (int)v;
        }
        p += dlen;
    }
    if (*p == '?' && !strncmp(p, "?db=", 4)) {
        long v;
        LISA_TRY(url_number(p + 4, strlen(p + 4), 0, 1 << 20, "database number", url, &v));
        out->db = (int)v;
        p += strlen(p);
    }
    if (*p) return lisa_error_set(LISA_ERR_ARG, "junk \"%s\" at the end of the Redis URL %s", p, url);
    return LISA_OK;
}

static lisa_status url_parse_unix(const char *url, const char *rest, lisa_redis_url *out) {
    const char *path = rest;
    if (*rest != '/') {
        const char *at = strchr(rest, '@');
        if (!at || at[1] != '/')
            return lisa_error_set(LISA_ERR_ARG,
                                  "the Redis URL %s has no socket path (unix:///path/to/socket)", url);
        LISA_TRY(url_userinfo(rest, (size_t)(at - rest), out));
        path = at + 1;
    }
    size_t plen = strcspn(path, "?");
    if (plen >= sizeof out->socket)
        return lisa_error_set(LISA_ERR_ARG, "socket path too long in the Redis URL %s", url);
    memcpy(out->socket, path, plen);
    out->socket[plen] = 0;
    const char *q = path + plen;
    if (*q) {
        if (strncmp(q, "?db=", 4))
            return lisa_error_set(LISA_ERR_ARG, "unknown option \"%s\" in the Redis URL %s (only ?db=N)",
                                  q, url);
        long v;
        LISA_TRY(url_number(q + 4, strlen(q + 4), 0, 1 << 20, "database number", url, &v));
        out->db = (int)v;
    }
    snprintf(out->host, sizeof out->host, "localhost");
    return LISA_OK;
}

lisa_status lisa_redis_url_parse(const char *url, lisa_redis_url *out) {
    memset(out, 0, sizeof *out);
    out->port = 6379;
    if (!url || !*url) url = getenv("LISA_REDIS");
    if (!url || !*url) url = REDIS_DEFAULT_URL;
    if (!strncmp(url, "redis://", 8)) return url_parse_tcp(url, url + 8, out);
    if (!strncmp(url, "unix://", 7)) return url_parse_unix(url, url + 7, out);
    if (!strncmp(url, "rediss://", 9))
        return lisa_error_set(LISA_ERR_ARG, "TLS (rediss://) is not supported: %s", url);
    if (strstr(url, "://"))
        return lisa_error_set(LISA_ERR_ARG,
                              "unknown scheme in the Redis URL %s (redis://host:port or unix:///path)",
                              url);
    return url_parse_tcp(url, url, out);
}

const char *lisa_redis_url_default(const char *flag) {
    if (flag && *flag) return flag;
    const char *env = getenv("LISA_REDIS");
    return env && *env ? env : NULL;
}

/* ---- connecting --------------------------------------------------------- */

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void sleep_s(double s) {
    if (s <= 0) return;
    struct timespec t = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&t, &t) && errno == EINTR) {
    }
}

static struct timeval timeval_of(double s) {
    struct timeval tv = {(time_t)s, (suseconds_t)((s - (double)(time_t)s) * 1e6)};
    return tv;
}

/* A number in [0, 1) from the connection's xorshift state. */
static double redis_random01(lisa_redis *r) {
    r->rng ^= r->rng << 13;
    r->rng ^= r->rng >> 7;
    r->rng ^= r->rng << 17;
    return (double)(r->rng >> 11) / 9007199254740992.0;
}

/* SIGPIPE ignored unless the program chose a handler of its own: hiredis
 * writes without MSG_NOSIGNAL, so a write to a closed server would kill us. */
static void redis_ignore_sigpipe(void) {
    struct sigaction old;
    if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL) signal(SIGPIPE, SIG_IGN);
}

static lisa_status password_file_read(const char *path, char *dst, size_t n) {
    FILE *f = fopen(path, "r");
    if (!f) return lisa_error_set(LISA_ERR_ARG, "cannot read the password file %s: %s", path, strerror(errno));
    char line[1024];
    char *got = fgets(line, sizeof line, f);
    fclose(f);
    if (!got) return lisa_error_set(LISA_ERR_ARG, "the password file %s is empty", path);
    line[strcspn(line, "\r\n")] = 0;
    if (!line[0]) return lisa_error_set(LISA_ERR_ARG, "the password file %s starts with an empty line", path);
    if (strlen(line) >= n) return lisa_error_set(LISA_ERR_ARG, "the password in %s is too long", path);
    memcpy(dst, line, strlen(line) + 1);
    return LISA_OK;
}

static void redis_close(lisa_redis *r) {
    if (r->c) redisFree(r->c);
    r->c = NULL;
    r->broken = 1;
}

/* One reply of a handshake command, or NULL with the error set; *retry
 * says whether trying again later may help. */
static redisReply *handshake_cmd(lisa_redis *r, int argc, const char **argv, const char *what,
                                 int *retry) {
    redisReply *rep = redisCommandArgv(r->c, argc, argv, NULL);
    if (!rep) {
        *retry = 1;
        lisa_error_set(LISA_ERR_UNAVAILABLE, "lost connection to %s during %s: %s", r->where, what,
                       r->c->errstr[0] ? r->c->errstr : "no reply");
    }
    return rep;
}

/* One connection attempt with the whole handshake. On failure the context
 * is closed, the error set, and *retry says whether a later attempt may
 * succeed (refused, timed out, loading) or not (password, database). */
static lisa_status redis_open(lisa_redis *r, int *retry) {
    redis_close(r);
    *retry = 0;
    struct timeval ct = timeval_of(r->connect_timeout_s);
    r->c = r->url.socket[0] ? redisConnectUnixWithTimeout(r->url.socket, ct)
                            : redisConnectWithTimeout(r->url.host, r->url.port, ct);
    if (!r->c) return lisa_error_set(LISA_ERR_NOMEM, "cannot connect to %s: out of memory", r->where);
    if (r->c->err) {
        *retry = 1;
        lisa_error_set(LISA_ERR_UNAVAILABLE, "cannot connect to %s: %s", r->where, r->c->errstr);
        redis_close(r);
        return LISA_ERR_UNAVAILABLE;
    }
    if (redisSetTimeout(r->c, timeval_of(r->io_timeout_s)) != REDIS_OK) {
        *retry = 1;
        lisa_error_set(LISA_ERR_UNAVAILABLE, "cannot set the I/O timeout on %s: %s", r->where,
                       r->c->errstr);
        redis_close(r);
        return LISA_ERR_UNAVAILABLE;
    }
    if (!r->url.socket[0]) redisEnableKeepAlive(r->c);

    lisa_status st = LISA_OK;
    redisReply *rep = NULL;
    if (r->url.user[0] || r->url.password[0]) {
        const char *user = r->url.user[0] ? r->url.user : "default";
        const char *argv[3] = {"AUTH", r->url.user, r->url.password};
        if (!r->url.user[0]) argv[1] = r->url.password;
        rep = handshake_cmd(r, r->url.user[0] ? 3 : 2, argv, "AUTH", retry);
        if (!rep) goto fail;
        if (rep->type == REDIS_REPLY_ERROR) {
            st = lisa_error_set(LISA_ERR_UNAVAILABLE, "%s: authentication failed for user %s: %s",
                                r->where, user, rep->str);
            if (!strncmp(rep->str, "LOADING", 7)) *retry = 1;
            goto fail;
        }
        freeReplyObject(rep);
        rep = NULL;
    }
    if (r->url.db) {
        char db[16];
        snprintf(db, sizeof db, "%d", r->url.db);
        rep = handshake_cmd(r, 2, (const char *[]){"SELECT", db}, "SELECT", retry);
        if (!rep) goto fail;
        if (rep->type == REDIS_REPLY_ERROR) {
            st = lisa_error_set(LISA_ERR_UNAVAILABLE, "cannot select database %d on %s: %s", r->url.db,
                                r->where, rep->str);
            if (!strncmp(rep->str, "LOADING", 7)) *retry = 1;
            goto fail;
        }
        freeReplyObject(rep);
        rep = NULL;
    }
    rep = handshake_cmd(r, 1, (const char *[]){"PING"}, "PING", retry);
    if (!rep) goto fail;
    if (rep->type == REDIS_REPLY_ERROR) {
        if (!strncmp(rep->str, "LOADING", 7)) {
            *retry = 1;
            st = lisa_error_set(LISA_ERR_UNAVAILABLE, "%s is still loading its data: %s", r->where,
                                rep->str);
            goto fail;
        }
        if (!strncmp(rep->str, "NOAUTH", 6)) {
            st = lisa_error_set(LISA_ERR_UNAVAILABLE,
                                "%s wants a password (give it in the URL or a password file): %s",
                                r->where, rep->str);
            goto fail;
        }
        /* anything else (NOPERM for PING): the server is up and answered */
    }
    freeReplyObject(rep);
    rep = NULL;
    if (r->client_name[0]) {
        /* a name is cosmetic: an ACL refusal is no reason to fail */
        rep = handshake_cmd(r, 3, (const char *[]){"CLIENT", "SETNAME", r->client_name},
                            "CLIENT SETNAME", retry);
        if (!rep) goto fail;
        freeReplyObject(rep);
        rep = NULL;
    }
    r->broken = 0;
    return LISA_OK;
fail:
    if (rep) freeReplyObject(rep);
    redis_close(r);
    return st != LISA_OK ? st : LISA_ERR_UNAVAILABLE;
}

lisa_status lisa_redis_reconnect(lisa_redis *r, double max_s, volatile int *stop) {
    if (lisa_redis_ok(r)) return LISA_OK;
    double t0 = now_s(), delay = BACKOFF_FIRST_S;
    for (int tries = 1;; tries++) {
        int retry = 0;
        lisa_status st = redis_open(r, &retry);
        if (st == LISA_OK || !retry) return st;
        double waited = now_s() - t0;
        if (max_s == 0 || (max_s > 0 && waited >= max_s) || (stop && *stop)) {
            if (tries > 1) {
                char why[512];
                snprintf(why, sizeof why, "%s", lisa_error_get());
                lisa_error_set(st, "%s (gave up after %d tries in %.1f s)", why, tries, waited);
            }
            return st;
        }
        double d = delay * (0.75 + 0.5 * redis_random01(r));
        if (max_s > 0 && waited + d > max_s) d = max_s - waited;
        for (double slept = 0; slept < d && !(stop && *stop); slept += 0.05)
            sleep_s(d - slept < 0.05 ? d - slept : 0.05);
        delay = delay * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S : delay * 2;
    }
}

lisa_status lisa_redis_connect(lisa_redis **out, const lisa_redis_params *p) {
    *out = NULL;
    lisa_redis *r = calloc(1, sizeof *r);
    if (!r) return lisa_error_set(LISA_ERR_NOMEM, "out of memory");
    lisa_status st = lisa_redis_url_parse(p->url, &r->url);
    if (st == LISA_OK && p->password_file && *p->password_file)
        st = password_file_read(p->password_file, r->url.password, sizeof r->url.password);
    if (st != LISA_OK) {
        free(r);
        return st;
    }
    r->connect_timeout_s = p->connect_timeout_s > 0 ? p->connect_timeout_s : 2.0;
    r->io_timeout_s = p->io_timeout_s > 0 ? p->io_timeout_s : 10.0;
    if (p->client_name) {
        snprintf(r->client_name, sizeof r->client_name, "%s", p->client_name);
        for (char *c = r->client_name; *c; c++)
            if (*c <= ' ' || *c > '~') *c = '-';
    }
    if (r->url.socket[0])
        snprintf(r->where, sizeof r->where, "%s", r->url.socket);
    else if (strchr(r->url.host, ':'))
        snprintf(r->where, sizeof r->where, "[%s]:%d", r->url.host, r->url.port);
    else
        snprintf(r->where, sizeof r->where, "%s:%d", r->url.host, r->url.port);
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    r->rng = ((uint64_t)t.tv_nsec << 20) ^ (uint64_t)t.tv_sec ^ ((uint64_t)getpid() << 40) ^
             (uint64_t)(uintptr_t)r;
    if (!r->rng) r->rng = 0x9e3779b97f4a7c15ull;
    r->broken = 1;
    redis_ignore_sigpipe();
    st = lisa_redis_reconnect(r, p->retry_max_s, NULL);
    if (st != LISA_OK) {
        lisa_redis_free(r);
        return st;
    }
    *out = r;
    return LISA_OK;
}

void lisa_redis_free(lisa_redis *r) {
    if (!r) return;
    if (r->c) redisFree(r->c);
    memset(r->url.password, 0, sizeof r->url.password);
    free(r);
}

/* ---- commands ----------------------------------------------------------- */

int lisa_redis_ok(const lisa_redis *r) {
    return r && r->c && !r->c->err && !r->broken;
}

const char *lisa_redis_where(const lisa_redis *r) { return r->where; }

double lisa_redis_io_timeout(const lisa_redis *r) { return r->io_timeout_s; }

/* NULL from hiredis: the connection is gone; says why. */
static redisReply *redis_lost(lisa_redis *r) {
    r->broken = 1;
    if (!r->c) {
        lisa_error_set(LISA_ERR_UNAVAILABLE, "not connected to %s", r->where);
        return NULL;
    }
    const char *why = r->c->errstr[0] ? r->c->errstr : "no reply";
    if (r->c->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK))
        lisa_error_set(LISA_ERR_UNAVAILABLE, "lost connection to %s: %s (no reply within %.0f s)",
                       r->where, why, r->io_timeout_s);
    else
        lisa_error_set(LISA_ERR_UNAVAILABLE, "lost connection to %s: %s", r->where, why);
    return NULL;
}

/* A reply as the caller gets it: an injected fault (fault.h) drops the
 * reply of a command that ran, as a connection lost just after it would. */
static redisReply *redis_reply(lisa_redis *r, redisReply *rep) {
    if (rep && lisa_fault_hit(LISA_FAULT_REDIS)) {
        freeReplyObject(rep);
        r->broken = 1;
        lisa_error_set(LISA_ERR_UNAVAILABLE, "lost connection to %s: injected fault", r->where);
        return NULL;
    }
    return rep ? rep : redis_lost(r);
}

redisReply *lisa_redis_cmd(lisa_redis *r, int argc, const char **argv, const size_t *lens) {
    if (!lisa_redis_ok(r)) return redis_lost(r);
    return redis_reply(r, redisCommandArgv(r->c, argc, argv, lens));
}

redisReply *lisa_redis_cmdf(lisa_redis *r, const char *fmt, ...) {
    if (!lisa_redis_ok(r)) return redis_lost(r);
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(r->c, fmt, ap);
    va_end(ap);
    return redis_reply(r, rep);
}

lisa_status lisa_redis_append(lisa_redis *r, int argc, const char **argv, const size_t *lens) {
    if (!lisa_redis_ok(r)) {
        redis_lost(r);
        return LISA_ERR_UNAVAILABLE;
    }
    if (redisAppendCommandArgv(r->c, argc, argv, lens) != REDIS_OK) {
        redis_lost(r);
        return LISA_ERR_UNAVAILABLE;
    }
    return LISA_OK;
}

redisReply *lisa_redis_take(lisa_redis *r) {
    if (!r->c || r->broken) return redis_lost(r);
    void *rep = NULL;
    if (redisGetReply(r->c, &rep) != REDIS_OK) return redis_lost(r);
    return redis_reply(r, rep);
}

lisa_status lisa_redis_check(lisa_redis *r, const redisReply *reply, const char *what) {
    if (!reply) {
        char why[512];
        snprintf(why, sizeof why, "%s", lisa_error_get());
        return lisa_error_set(LISA_ERR_UNAVAILABLE, "%s: %s", what,
                              why[0] ? why : "lost connection to Redis");
    }
    if (reply->type != REDIS_REPLY_ERROR) return LISA_OK;
    const char *msg = reply->str ? reply->str : "error";
    /* a function's inner command refused by the caller's ACL comes back as
     * -ERR; it is a permission problem all the same */
    if (strstr(msg, "The user executing the script can't"))
        return lisa_error_set(LISA_ERR_UNAVAILABLE, "%s: NOPERM inside the function: %s", what, msg);
    int unavailable = !strncmp(msg, "NOPERM", 6) || !strncmp(msg, "WRONGPASS", 9) ||
                      !strncmp(msg, "NOAUTH", 6) || !strncmp(msg, "LOADING", 7) ||
                      !strncmp(msg, "MASTERDOWN", 10);
    (void)r;
    return lisa_error_set(unavailable ? LISA_ERR_UNAVAILABLE : LISA_ERR_ARG, "%s: %s", what, msg);
}
