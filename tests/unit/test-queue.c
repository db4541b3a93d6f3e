/* test-queue.c: the Redis job queue (queue.h, redis-conn.h, queue-acl.h)
 * against a real redis-server this test starts on a free port with its own
 * directory (AOF on), and removes at the end. Each scenario uses its own
 * key prefix, so reclaims of one cannot take another's entries:
 *  - submit, idempotent on custom_id; priorities read high first; start
 *    (token 1), touch, finish (result, counters, events);
 *  - a lease reclaimed by another worker: delivery count 2, token 2, the
 *    first worker's touch says lost and its finish is refused (stale);
 *  - fail -> retry_wait with the backoff -> promote -> queued -> done;
 *    a final failure keeps its result; max attempts -> P:dead;
 *  - cancel at queued (start skips a delivered entry), running
 *    (cancel_requested, touch says cancel, finish -> cancelled), done
 *    (finished, unchanged), unknown;
 *  - XTRIM of a jobs stream: reclaim fails the job "payload lost";
 *  - depths, workers, batch counters summing to total, 1200 pipelined
 *    submits;
 *  - a restart from the AOF keeps jobs and the functions; a killed client
 *    reconnects; a server with appendonly no is warned about;
 *  - ACL users from lisa_queue_acl_rules: what a submitter and a worker
 *    may and may not do; a wrong password is WRONGPASS;
 *  - URL parsing, connection refused, a server still loading its data.
 * It needs redis-server on PATH and fails (never skips) without it.
 * Deliberately not here: the worker loop and the CLI (tests/queue/), the
 * message codec. */
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "queue-acl.h"
#include "queue.h"
#include "redis-conn.h"
#include "testutil.h"

/* ---- a throw-away redis-server ----------------------------------------- */

typedef struct test_server {
    pid_t pid;
    int port;
    char dir[256];
    int appendonly;
} test_server;

static test_server g_main = {0}, g_plain = {0};

/* rm -r path */
static void rm_tree(const char *path) {
    struct stat sb;
    if (lstat(path, &sb)) return;
    if (S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char sub[1024];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            rm_tree(sub);
        }
        if (d) closedir(d);
    }
    remove(path);
}

static void server_kill(test_server *s) {
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
}

static void servers_cleanup(void) {
    test_server *all[2] = {&g_main, &g_plain};
    for (int i = 0; i < 2; i++) {
        server_kill(all[i]);
        if (all[i]->dir[0]) rm_tree(all[i]->dir);
        all[i]->dir[0] = 0;
    }
}

static int port_free(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = 0;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

static void sleep_ms(int ms) {
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) && errno == EINTR) {
    }
}

/* Starts (or restarts, same port and dir) s and waits for its PING. */
static int server_start(test_server *s, const char *policy) {
    if (!s->dir[0]) {
        snprintf(s->dir, sizeof s->dir, "/tmp/lisa-test-queue-XXXXXX");
        if (!mkdtemp(s->dir)) {
            s->dir[0] = 0;
            return 0;
        }
        s->port = port_free();
    }
    char port[16], log[300];
    snprintf(port, sizeof port, "%d", s->port);
    snprintf(log, sizeof log, "%s/redis.log", s->dir);
    pid_t pid = fork();
    if (pid < 0) return 0;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--dir",
               s->dir, "--appendonly", s->appendonly ? "yes" : "no", "--save", "", "--daemonize",
               "no", "--logfile", log, "--maxmemory-policy", policy, (char *)NULL);
        _exit(127);
    }
    s->pid = pid;
    for (int i = 0; i < 500; i++) {
        int wst;
        if (waitpid(pid, &wst, WNOHANG) == pid) {
            s->pid = 0;
            fprintf(stderr, "redis-server exited (status %d): is it on PATH? (log %s)\n", wst, log);
            return 0;
        }
        struct timeval tv = {0, 200000};
        redisContext *c = redisConnectWithTimeout("127.0.0.1", s->port, tv);
        if (c && !c->err) {
            redisReply *r = redisCommand(c, "PING");
            int up = r && r->type == REDIS_REPLY_STATUS && !strcmp(r->str, "PONG");
            if (r) freeReplyObject(r);
            redisFree(c);
            if (up) return 1;
        } else if (c) {
            redisFree(c);
        }
        sleep_ms(10);
    }
    return 0;
}

/* ---- helpers ------------------------------------------------------------ */

static char g_url[128];

static lisa_redis *connect_url(const char *url, const char *name) {
    lisa_redis_params p = {0};
    p.url = url;
    p.client_name = name;
    p.io_timeout_s = 5;
    lisa_redis *r = NULL;
    lisa_status st = lisa_redis_connect(&r, &p);
    CHECK(st == LISA_OK, "connect %s: %s", url, lisa_error_get());
    return r;
}

static lisa_queue *queue_for(lisa_redis *r, const char *prefix) {
    lisa_queue *q = NULL;
    CHECK(lisa_queue_open(&q, r, prefix) == LISA_OK, "open %s: %s", prefix, lisa_error_get());
    CHECK(lisa_queue_setup(q) == LISA_OK, "setup %s: %s", prefix, lisa_error_get());
    return q;
}

/* A reply's string, integer (as text) or "(nil)" / "(error ...)". */
static const char *reply_text(const redisReply *r, char *buf, size_t n) {
    if (!r) snprintf(buf, n, "(null)");
    else if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) snprintf(buf, n, "%s", r->str);
    else if (r->type == REDIS_REPLY_INTEGER) snprintf(buf, n, "%lld", r->integer);
    else if (r->type == REDIS_REPLY_NIL) snprintf(buf, n, "(nil)");
    else if (r->type == REDIS_REPLY_ERROR) snprintf(buf, n, "(error %s)", r->str);
    else snprintf(buf, n, "(array of %zu)", r->elements);
    return buf;
}

/* The text of one raw command's reply into a static buffer. */
static const char *cmd_text(lisa_redis *r, int argc, const char **argv) {
    static char buf[1024];
    redisReply *rep = lisa_redis_cmd(r, argc, argv, NULL);
    reply_text(rep, buf, sizeof buf);
    if (rep) freeReplyObject(rep);
    return buf;
}

static int64_t server_ms(lisa_redis *r) {
    redisReply *t = lisa_redis_cmdf(r, "TIME");
    int64_t ms = 0;
    if (t && t->type == REDIS_REPLY_ARRAY && t->elements == 2)
        ms = strtoll(t->element[0]->str, NULL, 10) * 1000 + strtoll(t->element[1]->str, NULL, 10) / 1000;
    if (t) freeReplyObject(t);
    return ms;
}

/* Submits n jobs req-<i> / custom ids <cid_base><i> into a new batch. */
static void submit_n(lisa_queue *q, const lisa_queue_submit_opts *o, const char *cid_base, int n,
                     char *bid, char (*ids)[64]) {
    lisa_queue_submit_item items[16];
    char reqs[16][32], cids[16][32];
    LISA_ASSERT(n <= 16);
    bid[0] = 0;
    for (int i = 0; i < n; i++) ids[i][0] = 0;
    CHECK(lisa_queue_batch_new(q, o, bid, 48) == LISA_OK, "batch_new: %s", lisa_error_get());
    for (int i = 0; i < n; i++) {
        snprintf(reqs[i], sizeof reqs[i], "req-%s%d", cid_base, i);
        snprintf(cids[i], sizeof cids[i], "%s%d", cid_base, i);
        items[i] = (lisa_queue_submit_item){cids[i], (const uint8_t *)reqs[i], strlen(reqs[i]),
                                            "img.png", "segment the cat"};
    }
    int dup = -1;
    CHECK(lisa_queue_submit(q, bid, 0, items, n, o, ids, &dup) == LISA_OK, "submit: %s",
          lisa_error_get());
    CHECK(dup == 0, "submit: %d dups", dup);
}

static lisa_job_state job_state(lisa_queue *q, const char *id) {
    lisa_queue_job_info info;
    if (lisa_queue_job_get(q, id, &info) != LISA_OK) return LISA_JOB_UNKNOWN;
    return info.state;
}

/* The batch's counters sum to its total. */
static void check_batch_sum(lisa_queue *q, const char *bid, const char *what) {
    lisa_queue_batch_info b;
    CHECK(lisa_queue_batch_get(q, bid, &b) == LISA_OK, "%s: batch_get %s: %s", what, bid,
          lisa_error_get());
    int64_t sum = b.queued + b.running + b.retry + b.done + b.failed + b.cancelled + b.cancelling;
    CHECK(sum == b.total, "%s: batch %s counters sum to %lld, total %lld (q%lld r%lld rt%lld d%lld "
          "f%lld c%lld cg%lld)", what, bid, (long long)sum, (long long)b.total, (long long)b.queued,
          (long long)b.running, (long long)b.retry, (long long)b.done, (long long)b.failed,
          (long long)b.cancelled, (long long)b.cancelling);
}

/* Delivery count of entry in stream's PEL (-1 when not pending). */
static int64_t delivery_count(lisa_redis *r, const char *stream, const char *entry) {
    const char *argv[] = {"XPENDING", stream, "workers", entry, entry, "1"};
    redisReply *rep = lisa_redis_cmd(r, 6, argv, NULL);
    int64_t n = -1;
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 1 && rep->element[0]->elements == 4)
        n = rep->element[0]->element[3]->integer;
    if (rep) freeReplyObject(rep);
    return n;
}

/* ---- scenarios ---------------------------------------------------------- */

static void test_names(void) {
    CHECK(!strcmp(lisa_job_state_name(LISA_JOB_RETRY_WAIT), "retry_wait"), "state name");
    CHECK(!strcmp(lisa_job_state_code(LISA_JOB_CANCEL_REQUESTED), "CG"), "state code");
    CHECK(lisa_job_state_parse("CD") == LISA_JOB_DONE, "parse code");
    CHECK(lisa_job_state_parse("cancelled") == LISA_JOB_CANCELLED, "parse name");
    CHECK(lisa_job_state_parse("bogus") == LISA_JOB_UNKNOWN, "parse bogus");
    CHECK(lisa_job_state_final(LISA_JOB_FAILED) && !lisa_job_state_final(LISA_JOB_RETRY_WAIT), "final");
    CHECK(lisa_job_priority_parse("high") == LISA_PRIO_HI && lisa_job_priority_parse("lo") == LISA_PRIO_LO &&
              lisa_job_priority_parse("urgent") == -1, "priority parse");
    CHECK(lisa_queue_id_is_batch("B12") && !lisa_queue_id_is_batch("B12_3") && !lisa_queue_id_is_batch("B"),
          "id_is_batch");
    CHECK(!strcmp(lisa_queue_outcome_name(LISA_OUTCOME_STALE), "stale"), "outcome name");
    CHECK(strstr(lisa_queue_functions_source(), "#!lua name=lisa") == lisa_queue_functions_source(),
          "embedded library starts with its shebang");
}

static void test_urls(void) {
    lisa_redis_url u;
    CHECK(lisa_redis_url_parse("redis://h.example:7000/3", &u) == LISA_OK && !strcmp(u.host, "h.example") &&
              u.port == 7000 && u.db == 3 && !u.user[0] && !u.password[0], "plain url");
    CHECK(lisa_redis_url_parse("redis://lisa-submit:p%40ss%3Aw%2Frd%25@10.0.0.1", &u) == LISA_OK &&
              !strcmp(u.user, "lisa-submit") && !strcmp(u.password, "p@ss:w/rd%") &&
              !strcmp(u.host, "10.0.0.1") && u.port == 6379 && u.db == 0,
          "user and escaped password: '%s' '%s'", u.user, u.password);
    CHECK(lisa_redis_url_parse("redis://:secret@[::1]:6390", &u) == LISA_OK && !u.user[0] &&
              !strcmp(u.password, "secret") && !strcmp(u.host, "::1") && u.port == 6390, "ipv6, password only");
    CHECK(lisa_redis_url_parse("unix:///run/redis.sock?db=2", &u) == LISA_OK &&
              !strcmp(u.socket, "/run/redis.sock") && u.db == 2, "unix url");
    CHECK(lisa_redis_url_parse("unix://w:pw@/run/r.sock", &u) == LISA_OK && !strcmp(u.user, "w") &&
              !strcmp(u.password, "pw") && !strcmp(u.socket, "/run/r.sock"), "unix url with user");
    unsetenv("LISA_REDIS");
    CHECK(lisa_redis_url_parse(NULL, &u) == LISA_OK && !strcmp(u.host, "127.0.0.1") && u.port == 6379,
          "default url");
    setenv("LISA_REDIS", "redis://envhost:1234", 1);
    CHECK(lisa_redis_url_parse("", &u) == LISA_OK && !strcmp(u.host, "envhost") && u.port == 1234,
          "LISA_REDIS");
    CHECK(!strcmp(lisa_redis_url_default(NULL), "redis://envhost:1234") &&
              !strcmp(lisa_redis_url_default("redis://x"), "redis://x"), "url_default");
    unsetenv("LISA_REDIS");
    CHECK(lisa_redis_url_default(NULL) == NULL, "url_default without env");
    CHECK(lisa_redis_url_parse("redis://h:99999", &u) == LISA_ERR_ARG && strstr(lisa_error_get(), "port"),
          "bad port: %s", lisa_error_get());
    CHECK(lisa_redis_url_parse("redis://h/x", &u) == LISA_ERR_ARG, "bad db");
    CHECK(lisa_redis_url_parse("redis://u:p%zz@h", &u) == LISA_ERR_ARG &&
              strstr(lisa_error_get(), "percent"), "bad escape: %s", lisa_error_get());
    CHECK(lisa_redis_url_parse("http://h", &u) == LISA_ERR_ARG, "bad scheme");
    CHECK(lisa_redis_url_parse("rediss://h", &u) == LISA_ERR_ARG && strstr(lisa_error_get(), "TLS"), "tls");
    CHECK(lisa_redis_url_parse("unix://", &u) == LISA_ERR_ARG, "unix without path");
}

static void test_refused(void) {
    char url[64];
    int port = port_free();
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    lisa_redis_params p = {0};
    p.url = url;
    lisa_redis *r = NULL;
    char want[96];
    snprintf(want, sizeof want, "cannot connect to 127.0.0.1:%d: Connection refused", port);
    CHECK(lisa_redis_connect(&r, &p) == LISA_ERR_UNAVAILABLE && !r && strstr(lisa_error_get(), want),
          "refused: %s", lisa_error_get());
    p.retry_max_s = 0.5;
    CHECK(lisa_redis_connect(&r, &p) == LISA_ERR_UNAVAILABLE && strstr(lisa_error_get(), "gave up"),
          "refused with retries: %s", lisa_error_get());
    p.password_file = "/nonexistent/pw";
    CHECK(lisa_redis_connect(&r, &p) == LISA_ERR_ARG && strstr(lisa_error_get(), "/nonexistent/pw"),
          "missing password file: %s", lisa_error_get());
}

/* A fake server that answers -LOADING on its first two connections and
 * PONG on the third: a connect without retries fails saying so, one with
 * retries backs off and gets in. */
static void test_loading(void) {
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 4) ||
        getsockname(ls, (struct sockaddr *)&a, &alen)) {
        CHECK(0, "fake server socket");
        if (ls >= 0) close(ls);
        return;
    }
    pid_t child = fork();
    if (child == 0) {
        for (int conn = 0; conn < 3; conn++) {
            int c = accept(ls, NULL, NULL);
            if (c < 0) _exit(1);
            char buf[512];
            ssize_t got;
            while ((got = read(c, buf, sizeof buf)) > 0) {
                const char *ans = conn < 2 ? "-LOADING Redis is loading the dataset in memory\r\n" : "+PONG\r\n";
                if (write(c, ans, strlen(ans)) < 0 || conn < 2) break;
            }
            close(c);
        }
        _exit(0);
    }
    close(ls);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", ntohs(a.sin_port));
    lisa_redis_params p = {0};
    p.url = url;
    lisa_redis *r = NULL;
    CHECK(lisa_redis_connect(&r, &p) == LISA_ERR_UNAVAILABLE && strstr(lisa_error_get(), "still loading") &&
              strstr(lisa_error_get(), "LOADING Redis is loading"), "loading, no retries: %s", lisa_error_get());
    p.retry_max_s = 5;
    CHECK(lisa_redis_connect(&r, &p) == LISA_OK && r, "loading, then up: %s", lisa_error_get());
    if (r) {
        const char *ping[] = {"PING"};
        CHECK(!strcmp(cmd_text(r, 1, ping), "PONG"), "ping the fake server");
        lisa_redis_free(r);
    }
    int wst = 0;
    waitpid(child, &wst, 0);
    CHECK(WIFEXITED(wst) && WEXITSTATUS(wst) == 0, "fake server served 3 connections");
}

/* Submit, priorities, start, touch, finish, events, counters. */
static void test_basic(lisa_redis *r) {
    lisa_queue *q = queue_for(r, "a");
    char last[48] = "";
    CHECK(lisa_queue_events_last(q, last, sizeof last) == LISA_OK && !strcmp(last, "0-0"),
          "no events yet: %s", last);
    lisa_queue_submit_opts o = {.name = "basic", .user = "ann", .priority = LISA_PRIO_NORMAL};
    char bid[48], ids[16][64];
    submit_n(q, &o, "c", 3, bid, ids);
    CHECK(!strcmp(bid, "B1"), "first batch is B1: %s", bid);
    CHECK(!strcmp(ids[0], "B1_0") && !strcmp(ids[2], "B1_2"), "ids %s %s", ids[0], ids[2]);

    /* the same items again: nothing new */
    lisa_queue_submit_item items[3];
    char reqs[3][32], cids[3][32];
    for (int i = 0; i < 3; i++) {
        snprintf(reqs[i], sizeof reqs[i], "req-c%d", i);
        snprintf(cids[i], sizeof cids[i], "c%d", i);
        items[i] = (lisa_queue_submit_item){cids[i], (const uint8_t *)reqs[i], strlen(reqs[i]), "img.png", "p"};
    }
    char again[3][64];
    int dup = 0;
    CHECK(lisa_queue_submit(q, bid, 10, items, 3, &o, again, &dup) == LISA_OK && dup == 3,
          "resubmit: %d dups (%s)", dup, lisa_error_get());
    CHECK(!strcmp(again[1], "B1_1"), "dup returns the existing id: %s", again[1]);
    lisa_queue_batch_info b;
    CHECK(lisa_queue_batch_get(q, bid, &b) == LISA_OK && b.total == 3 && b.queued == 3, "total %lld queued %lld",
          (long long)b.total, (long long)b.queued);
    CHECK(!strcmp(b.name, "basic") && !strcmp(b.user, "ann") && b.created_ms > 0, "batch name/user");

    /* refused: unknown batch, bad priority (straight FCALL) */
    CHECK(lisa_queue_submit(q, "B99", 0, items, 1, &o, NULL, NULL) == LISA_ERR_ARG &&
              strstr(lisa_error_get(), "unknown batch B99"), "unknown batch: %s", lisa_error_get());
    const char *bad[] = {"FCALL", "lisa_submit", "0", "a", "B1", "7", "", "n", "u", "urgent", "3", "0",
                         "i", "p", "r"};
    CHECK(strstr(cmd_text(r, 15, bad), "unknown priority \"urgent\""), "bad priority: %s", cmd_text(r, 15, bad));

    /* priorities: a high and a low job in another batch; high comes first */
    lisa_queue_submit_opts hi = o, lo = o;
    hi.priority = LISA_PRIO_HI;
    lo.priority = LISA_PRIO_LO;
    char b2[48], hid[1][64], lid[1][64];
    submit_n(q, &lo, "lo", 1, b2, lid);
    char b3[48];
    submit_n(q, &hi, "hi", 1, b3, hid);
    lisa_queue_job jobs[8] = {0};
    lisa_status st;
    int n = lisa_queue_read(q, "w1", 8, 0, jobs, &st);
    CHECK(n == 5, "read 5 jobs, got %d (%s)", n, lisa_error_get());
    if (n == 5) {
        CHECK(!strcmp(jobs[0].id, hid[0]) && !strcmp(jobs[4].id, lid[0]), "priority order: %s .. %s",
              jobs[0].id, jobs[4].id);
        CHECK(!strcmp(jobs[1].id, "B1_0") && !strcmp(jobs[1].stream, "a:jobs:normal"), "normal next: %s %s",
              jobs[1].id, jobs[1].stream);
        CHECK(jobs[1].token == 1 && jobs[1].req_len == 6 && !memcmp(jobs[1].req, "req-c0", 6) &&
                  jobs[1].created_ms > 0 && jobs[1].started_ms >= jobs[1].created_ms,
              "started job: token %lld req %zu", (long long)jobs[1].token, jobs[1].req_len);
    }
    CHECK(lisa_queue_batch_get(q, bid, &b) == LISA_OK && b.running == 3 && b.queued == 0 && b.first_start_ms > 0,
          "running %lld", (long long)b.running);
    lisa_queue_job_info info;
    CHECK(lisa_queue_job_get(q, "B1_0", &info) == LISA_OK && info.state == LISA_JOB_RUNNING &&
              !strcmp(info.owner, "w1") && info.attempts == 1 && info.max_attempts == 3 &&
              !strcmp(info.custom_id, "c0") && !strcmp(info.user, "ann") && !strcmp(info.image, "img.png"),
          "job info: state %d owner %s attempts %d", info.state, info.owner, info.attempts);

    lisa_queue_touch_result tr[5] = {LISA_TOUCH_LOST};
    CHECK(lisa_queue_touch(q, "w1", jobs, n, tr) == LISA_OK, "touch: %s", lisa_error_get());
    for (int i = 0; i < n; i++) CHECK(tr[i] == LISA_TOUCH_OK, "touch %d: %d", i, tr[i]);
    CHECK(delivery_count(r, "a:jobs:normal", jobs[1].entry) == 1, "touch does not bump the delivery count");
    CHECK(lisa_queue_touch(q, "w2", jobs, 1, tr) == LISA_OK && tr[0] == LISA_TOUCH_LOST,
          "another worker's touch: %d", tr[0]);

    lisa_queue_outcome out = LISA_OUTCOME_STALE;
    CHECK(lisa_queue_finish(q, "w1", &jobs[1], (const uint8_t *)"RESULT\0x", 8, &out) == LISA_OK &&
              out == LISA_OUTCOME_DONE, "finish: %d %s", out, lisa_error_get());
    uint8_t *res = NULL;
    size_t len = 0;
    CHECK(lisa_queue_result_get(q, "B1_0", &res, &len) == LISA_OK && len == 8 && !memcmp(res, "RESULT\0x", 8),
          "result bytes");
    free(res);
    CHECK(lisa_queue_result_get(q, "B1_1", &res, &len) == LISA_ERR_NOTFOUND, "no result before finish");
    CHECK(lisa_queue_request_get(q, "B1_1", &res, &len) == LISA_OK && len == 6 && !memcmp(res, "req-c1", 6),
          "request bytes");
    free(res);
    CHECK(lisa_queue_job_get(q, "B1_0", &info) == LISA_OK && info.state == LISA_JOB_DONE &&
              info.finished_ms >= info.started_ms, "done state");
    CHECK(lisa_queue_finish(q, "w1", &jobs[1], (const uint8_t *)"again", 5, &out) == LISA_OK &&
              out == LISA_OUTCOME_STALE, "second finish is stale: %d", out);
    CHECK(lisa_queue_batch_get(q, bid, &b) == LISA_OK && b.done == 1 && b.running == 2 && b.last_finish_ms > 0,
          "done %lld running %lld", (long long)b.done, (long long)b.running);
    check_batch_sum(q, bid, "basic");
    const char *ttl[] = {"PTTL", "a:res:B1_0"};
    CHECK(atoll(cmd_text(r, 2, ttl)) > 6LL * 86400000, "result ttl ~7 d: %s", cmd_text(r, 2, ttl));
    const char *jttl[] = {"PTTL", "a:job:B1_0"};
    CHECK(atoll(cmd_text(r, 2, jttl)) > 6LL * 86400000, "job ttl ~7 d");
    const char *xl[] = {"XLEN", "a:jobs:normal"};
    CHECK(!strcmp(cmd_text(r, 2, xl), "2"), "finished entry deleted: xlen %s", cmd_text(r, 2, xl));
    const char *ent[] = {"HLEN", "a:entries"};
    CHECK(!strcmp(cmd_text(r, 2, ent), "4"), "entries map: %s", cmd_text(r, 2, ent));

    /* events: 5 queued, 5 running, 1 done; the job's own in order */
    lisa_queue_event ev[32];
    char after[48] = "0-0";
    int ne = lisa_queue_events_read(q, after, 32, 0, ev, &st);
    CHECK(ne == 11, "11 events, got %d", ne);
    int seen = 0;
    for (int i = 0; i < ne; i++) {
        if (strcmp(ev[i].job, "B1_0")) continue;
        lisa_job_state want[3] = {LISA_JOB_QUEUED, LISA_JOB_RUNNING, LISA_JOB_DONE};
        CHECK(seen < 3 && ev[i].state == want[seen], "event %d of B1_0: %s", seen, lisa_job_state_name(ev[i].state));
        CHECK(!strcmp(ev[i].batch, "B1") && ev[i].ts_ms > 0, "event fields");
        if (seen >= 1) CHECK(!strcmp(ev[i].worker, "w1") && ev[i].attempt == 1, "event worker/attempt");
        seen++;
    }
    CHECK(seen == 3, "B1_0 has %d events", seen);
    CHECK(lisa_queue_events_last(q, last, sizeof last) == LISA_OK && !strcmp(last, after),
          "events_last %s = read position %s", last, after);
    CHECK(lisa_queue_events_read(q, after, 32, 100, ev, &st) == 0, "no new events after a 100 ms block");

    for (int i = 0; i < n; i++) {
        if (i != 1) CHECK(lisa_queue_finish(q, "w1", &jobs[i], (const uint8_t *)"r", 1, &out) == LISA_OK &&
                              out == LISA_OUTCOME_DONE, "finish %d", i);
        lisa_queue_job_clear(&jobs[i]);
    }
    check_batch_sum(q, bid, "basic end");
    check_batch_sum(q, b2, "basic lo");
    CHECK(lisa_queue_batch_get(q, bid, &b) == LISA_OK && b.done == 3, "all done");
    const char *bttl[] = {"PTTL", "a:batch:B1"};
    CHECK(atoll(cmd_text(r, 2, bttl)) > 6LL * 86400000, "finished batch expires with its jobs: %s",
          cmd_text(r, 2, bttl));
    char(*bj)[64] = NULL;
    int nb = 0;
    CHECK(lisa_queue_batch_jobs(q, bid, &bj, &nb) == LISA_OK && nb == 3 && !strcmp(bj[2], "B1_2"), "batch jobs");
    free(bj);
    char(*recent)[48] = NULL;
    CHECK(lisa_queue_batches_recent(q, 2, &recent, &nb) == LISA_OK && nb == 2 && !strcmp(recent[0], "B3"),
          "recent batches");
    free(recent);
    char b4[48];
    CHECK(lisa_queue_batch_new(q, &o, b4, sizeof b4) == LISA_OK && !strcmp(b4, "B4"), "batch B4");
    const char *del[] = {"DEL", "a:batch:B4"};
    cmd_text(r, 2, del);
    CHECK(lisa_queue_batches_recent(q, 2, &recent, &nb) == LISA_OK && nb == 1 && !strcmp(recent[0], "B3"),
          "an expired batch is not listed: %d", nb);
    free(recent);
    CHECK(lisa_queue_batch_get(q, "B77", &b) == LISA_ERR_NOTFOUND, "unknown batch");
    CHECK(lisa_queue_job_get(q, "B1_99", &info) == LISA_ERR_NOTFOUND, "unknown job");
    lisa_queue_depths d;
    CHECK(lisa_queue_depths_get(q, &d) == LISA_OK && d.done_1m == 5 && d.done_5m == 5 &&
              d.waiting[1] == 0 && d.pending[1] == 0, "throughput %lld %lld", (long long)d.done_1m,
          (long long)d.done_5m);
    lisa_queue_free(q);
}

/* A lease reclaimed by another worker fences the first one off. */
static void test_reclaim(lisa_redis *r) {
    lisa_queue *q = queue_for(r, "b");
    lisa_queue_submit_opts o = {.name = "reclaim", .priority = LISA_PRIO_NORMAL};
    char bid[48], ids[16][64];
    submit_n(q, &o, "x", 1, bid, ids);
    lisa_queue_job j1 = {0}, j2 = {0};
    lisa_status st;
    CHECK(lisa_queue_read(q, "w1", 1, 0, &j1, &st) == 1 && j1.token == 1, "w1 starts");
    CHECK(lisa_queue_reclaim(q, "w2", 50, 4, &j2, &st) == 0, "not idle yet: nothing reclaimed");
    sleep_ms(120);
    CHECK(lisa_queue_reclaim(q, "w2", 50, 4, &j2, &st) == 1, "w2 reclaims: %s", lisa_error_get());
    CHECK(j2.token == 2 && !strcmp(j2.id, j1.id) && !strcmp(j2.entry, j1.entry), "token 2: %lld",
          (long long)j2.token);
    CHECK(delivery_count(r, "b:jobs:normal", j1.entry) == 2, "delivery count 2: %lld",
          (long long)delivery_count(r, "b:jobs:normal", j1.entry));
    /* w1 may not start it again: the entry is w2's now */
    const char *sa[] = {"FCALL", "lisa_start", "0", "b", j1.id, "b:jobs:normal", j1.entry, "w1"};
    redisReply *sr = lisa_redis_cmd(r, 8, sa, NULL);
    char t0[64] = "", t1[64] = "";
    if (sr && sr->type == REDIS_REPLY_ARRAY && sr->elements == 2) {
        reply_text(sr->element[0], t0, sizeof t0);
        reply_text(sr->element[1], t1, sizeof t1);
    }
    if (sr) freeReplyObject(sr);
    CHECK(!strcmp(t0, "skip") && !strcmp(t1, "not_pending"), "start by a former consumer: %s %s", t0, t1);
    lisa_queue_job_info info;
    CHECK(lisa_queue_job_get(q, j1.id, &info) == LISA_OK && info.attempts == 2 && !strcmp(info.owner, "w2"),
          "unchanged: attempts %d owner %s", info.attempts, info.owner);
    lisa_queue_touch_result tr = LISA_TOUCH_OK;
    CHECK(lisa_queue_touch(q, "w1", &j1, 1, &tr) == LISA_OK && tr == LISA_TOUCH_LOST, "w1 touch lost: %d", tr);
    lisa_queue_outcome out = LISA_OUTCOME_DONE;
    CHECK(lisa_queue_finish(q, "w1", &j1, (const uint8_t *)"old", 3, &out) == LISA_OK && out == LISA_OUTCOME_STALE,
          "w1 finish stale: %d", out);
    CHECK(lisa_queue_fail(q, "w1", &j1, "boom", 1, 10, NULL, 0, &out) == LISA_OK && out == LISA_OUTCOME_STALE,
          "w1 fail stale: %d", out);
    uint8_t *res = NULL;
    size_t len;
    CHECK(lisa_queue_result_get(q, j1.id, &res, &len) == LISA_ERR_NOTFOUND, "no result from the stale worker");
    CHECK(delivery_count(r, "b:jobs:normal", j1.entry) == 2, "entry still pending for w2");
    CHECK(lisa_queue_touch(q, "w2", &j2, 1, &tr) == LISA_OK && tr == LISA_TOUCH_OK, "w2 touch ok");
    CHECK(lisa_queue_finish(q, "w2", &j2, (const uint8_t *)"new", 3, &out) == LISA_OK && out == LISA_OUTCOME_DONE,
          "w2 finish: %d", out);
    CHECK(lisa_queue_result_get(q, j1.id, &res, &len) == LISA_OK && len == 3 && !memcmp(res, "new", 3),
          "the new owner's result");
    free(res);
    CHECK(lisa_queue_finish(q, "w1", &j1, (const uint8_t *)"old", 3, &out) == LISA_OK && out == LISA_OUTCOME_STALE,
          "w1 late finish stale");
    check_batch_sum(q, bid, "reclaim");
    lisa_queue_batch_info b;
    CHECK(lisa_queue_batch_get(q, bid, &b) == LISA_OK && b.done == 1 && b.running == 0, "reclaim counters");
    lisa_queue_job_clear(&j1);
    lisa_queue_job_clear(&j2);
    lisa_queue_free(q);
}

/* A worker that reclaims its own job (its lease ran out while Redis was
 * away, say) holds attempt 1's result and attempt 2: the refused finish of
 * attempt 1 must leave the entry pending for attempt 2, which then renews
 * its lease and stores its result. (scripts/soak.sh found this: the stale
 * finish acknowledged the entry, attempt 2's touch said lost, and the job
 * stayed running with no entry pending for anyone.) */
static void test_reclaim_self(lisa_redis *r) {
    lisa_queue *q = queue_for(r, "rs");
    lisa_queue_submit_opts o = {.name = "reclaim-self", .priority = LISA_PRIO_NORMAL};
    char bid[48], ids[16][64];
    submit_n(q, &o, "x", 1, bid, ids);
    lisa_queue_job j1 = {0}, j2 = {0};
    lisa_status st;
    CHECK(lisa_queue_read(q, "w1", 1, 0, &j1, &st) == 1 && j1.token == 1, "w1 starts");
    sleep_ms(120);
    CHECK(lisa_queue_reclaim(q, "w1", 50, 4, &j2, &st) == 1 && j2.token == 2, "w1 reclaims its own: %s",
          lisa_error_get());
    lisa_queue_outcome out = LISA_OUTCOME_DONE;
    CHECK(lisa_queue_finish(q, "w1", &j1, (const uint8_t *)"old", 3, &out) == LISA_OK && out == LISA_OUTCOME_STALE,
          "attempt 1's finish stale: %d", out);
    CHECK(lisa_queue_fail(q, "w1", &j1, "boom", 1, 10, NULL, 0, &out) == LISA_OK && out == LISA_OUTCOME_STALE,
          "attempt 1's fail stale: %d", out);
    CHECK(delivery_count(r, "rs:jobs:normal", j2.entry) == 2, "entry still pending for attempt 2: %lld",
          (long long)delivery_count(r, "rs:jobs:normal", j2.entry));
    lisa_queue_touch_result tr = LISA_TOUCH_LOST;
    CHECK(lisa_queue_touch(q, "w1", &j2, 1, &tr) == LISA_OK && tr == LISA_TOUCH_OK, "attempt 2 touch ok: %d", tr);
    CHECK(lisa_queue_finish(q, "w1", &j2, (const uint8_t *)"new", 3, &out) == LISA_OK && out == LISA_OUTCOME_DONE,
          "attempt 2 finish: %d", out);
    uint8_t *res = NULL;
    size_t len;
    CHECK(lisa_queue_result_get(q, j2.id, &res, &len) == LISA_OK && len == 3 && !memcmp(res, "new", 3),
          "attempt 2's result");
    free(res);
    check_batch_sum(q, bid, "reclaim-self");
    lisa_queue_job_clear(&j1);
    lisa_queue_job_clear(&j2);
    lisa_queue_free(q);
}

/* Retry with backoff, a final failure, and dead letters. */
static void test_fail(lisa_redis *r) {
    lisa_queue *q = queue_for(r, "c");
    lisa_queue_submit_opts o = {.name = "fail", .priority = LISA_PRIO_NORMAL, .max_attempts = 2};
    char bid[48], ids[16][64];
    submit_n(q, &o, "f", 2, bid, ids);
    lisa_queue_job j[2] = {0};
    lisa_status st;
    CHECK(lisa_queue_read(q, "w1", 2, 0, j, &st) == 2, "read 2");
    int64_t t0 = server_ms(r);
    lisa_queue_outcome out = LISA_OUTCOME_DONE;
    CHECK(lisa_queue_fail(q, "w1", &j[0], "CUDA out of memory", 1, 200, NULL, 0, &out) == LISA_OK &&
              out == LISA_OUTCOME_RETRY, "retryable fail: %d %s", out, lisa_error_get());
    int64_t t1 = server_ms(r);
    lisa_queue_job_info info;
    CHECK(lisa_queue_job_get(q, j[0].id, &info) == LISA_OK && info.state == LISA_JOB_RETRY_WAIT &&
              !strcmp(info.error, "CUDA out of memory"), "retry_wait: %d", info.state);
    CHECK(info.retry_at_ms >= t0 + 150 && info.retry_at_ms <= t1 + 250, "backoff 200 +-25%%: %lld",
          (long long)(info.retry_at_ms - t0));
    char score[64];
    const char *zs[] = {"ZSCORE", "c:delayed", j[0].id};
    snprintf(score, sizeof score, "%s", cmd_text(r, 3, zs));
    CHECK(atoll(score) == info.retry_at_ms, "delayed score %s", score);
    check_batch_sum(q, bid, "retry_wait");
    lisa_queue_batch_info b;
    CHECK(lisa_queue_batch_get(q, bid, &b) == LISA_OK && b.retry == 1, "retry counter");
    int np = -1;
    CHECK(lisa_queue_promote(q, 10, &np) == LISA_OK && np == 0, "not due yet: %d", np);
    sleep_ms(300);
    CHECK(lisa_queue_promote(q, 10, &np) == LISA_OK && np == 1, "promoted: %d", np);
    CHECK(job_state(q, j[0].id) == LISA_JOB_QUEUED, "queued again");
    lisa_queue_job again = {0};
    CHECK(lisa_queue_read(q, "w2", 1, 0, &again, &st) == 1 && again.token == 2 && !strcmp(again.id, j[0].id),
          "second attempt, token %lld", (long long)again.token);
    /* attempts == max_attempts: a retryable failure is final now */
    CHECK(lisa_queue_fail(q, "w2", &again, "CUDA out of memory again", 1, 200, (const uint8_t *)"FAILRES", 7,
                          &out) == LISA_OK && out == LISA_OUTCOME_FAILED, "final fail: %d", out);
    uint8_t *res = NULL;
    size_t len;
    CHECK(lisa_queue_result_get(q, j[0].id, &res, &len) == LISA_OK && len == 7 && !memcmp(res, "FAILRES", 7),
          "failed result stored");
    free(res);
    const char *ttl[] = {"PTTL", "c:job:B1_0"};
    CHECK(atoll(cmd_text(r, 2, ttl)) > 29LL * 86400000, "failed ttl 30 d: %s", cmd_text(r, 2, ttl));
    CHECK(lisa_queue_fail(q, "w1", &j[1], "bad image", 0, 200, NULL, 0, &out) == LISA_OK &&
              out == LISA_OUTCOME_FAILED, "non-retryable: %d", out);
    CHECK(lisa_queue_job_get(q, j[1].id, &info) == LISA_OK && info.state == LISA_JOB_FAILED &&
              !strcmp(info.error, "bad image"), "failed state");
    check_batch_sum(q, bid, "failed");
    CHECK(lisa_queue_batch_get(q, bid, &b) == LISA_OK && b.failed == 2 && b.retry == 0, "failed counter");
    for (int i = 0; i < 2; i++) lisa_queue_job_clear(&j[i]);
    lisa_queue_job_clear(&again);
    lisa_queue_free(q);
}

/* A job started max_attempts times without a result goes to P:dead. */
static void test_dead(lisa_redis *r) {
    lisa_queue *q = queue_for(r, "d");
    lisa_queue_submit_opts o = {.name = "poison", .priority = LISA_PRIO_NORMAL, .max_attempts = 2};
    char bid[48], ids[16][64];
    submit_n(q, &o, "p", 1, bid, ids);
    lisa_queue_job j = {0};
    lisa_status st;
    CHECK(lisa_queue_read(q, "w1", 1, 0, &j, &st) == 1 && j.token == 1, "first start");
    lisa_queue_job_clear(&j);
    sleep_ms(120);
    CHECK(lisa_queue_reclaim(q, "w2", 50, 4, &j, &st) == 1 && j.token == 2, "second start");
    char entry[48];
    snprintf(entry, sizeof entry, "%s", j.entry);
    lisa_queue_job_clear(&j);
    sleep_ms(120);
    CHECK(lisa_queue_reclaim(q, "w3", 50, 4, &j, &st) == 0, "third start refused (dead letter)");
    lisa_queue_job_info info;
    CHECK(lisa_queue_job_get(q, ids[0], &info) == LISA_OK && info.state == LISA_JOB_FAILED &&
              !strcmp(info.error, "started 2 times without a result (last owner w2)"),
          "dead job: %d '%s'", info.state, info.error);
    lisa_queue_dead *dl = NULL;
    int nd = 0;
    CHECK(lisa_queue_dead_list(q, 10, &dl, &nd) == LISA_OK && nd == 1, "one dead letter: %d", nd);
    if (nd == 1)
        CHECK(!strcmp(dl[0].job, ids[0]) && !strcmp(dl[0].batch, bid) && dl[0].deliveries == 2 &&
                  !strcmp(dl[0].reason, "started 2 times without a result (last owner w2)"),
              "dead letter: %s %d '%s'", dl[0].job, dl[0].deliveries, dl[0].reason);
    free(dl);
    CHECK(delivery_count(r, "d:jobs:normal", entry) == -1, "dead entry acknowledged");
    lisa_queue_depths d;
    CHECK(lisa_queue_depths_get(q, &d) == LISA_OK && d.dead == 1 && d.pending[1] == 0, "depths dead %lld",
          (long long)d.dead);
    check_batch_sum(q, bid, "dead");
    lisa_queue_free(q);
}

/* Cancel at every stage. */
static void test_cancel(lisa_redis *r) {
    lisa_queue *q = queue_for(r, "e");
    lisa_queue_submit_opts o = {.name = "cancel", .priority = LISA_PRIO_NORMAL};
    char bid[48], ids[16][64];
    submit_n(q, &o, "k", 4, bid, ids);
    lisa_queue_cancel_result cr = LISA_CANCEL_UNKNOWN;
    lisa_job_state was = LISA_JOB_UNKNOWN;
    /* queued */
    CHECK(lisa_queue_cancel(q, ids[0], &cr, &was) == LISA_OK && cr == LISA_CANCEL_DONE && was == LISA_JOB_QUEUED,
          "cancel queued: %d %d", cr, was);
    CHECK(job_state(q, ids[0]) == LISA_JOB_CANCELLED, "cancelled");
    /* delivered but not started: the start skips it */
    const char *xr[] = {"XREADGROUP", "GROUP", "workers", "w9", "COUNT", "1", "STREAMS", "e:jobs:normal", ">"};
    redisReply *rep = lisa_redis_cmd(r, 9, xr, NULL);
    char entry[48] = "";
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 1)
        snprintf(entry, sizeof entry, "%s", rep->element[0]->element[1]->element[0]->element[0]->str);
    if (rep) freeReplyObject(rep);
    CHECK(entry[0], "raw delivery of %s", ids[1]);
    CHECK(lisa_queue_cancel(q, ids[1], &cr, &was) == LISA_OK && cr == LISA_CANCEL_DONE, "cancel delivered");
    const char *sa[] = {"FCALL", "lisa_start", "0", "e", ids[1], "e:jobs:normal", entry, "w9"};
    redisReply *sr = lisa_redis_cmd(r, 8, sa, NULL);
    char t0[64] = "", t1[64] = "";
    if (sr && sr->type == REDIS_REPLY_ARRAY && sr->elements == 2) {
        reply_text(sr->element[0], t0, sizeof t0);
        reply_text(sr->element[1], t1, sizeof t1);
    }
    if (sr) freeReplyObject(sr);
    CHECK(!strcmp(t0, "skip") && !strcmp(t1, "cancelled"), "start of a cancelled job: %s %s", t0, t1);
    CHECK(delivery_count(r, "e:jobs:normal", entry) == -1, "skipped entry acknowledged");
    /* lisa_queue_read never hands out the cancelled ones */
    lisa_queue_job j[4] = {0};
    lisa_status st;
    int n = lisa_queue_read(q, "w1", 4, 0, j, &st);
    CHECK(n == 2 && !strcmp(j[0].id, ids[2]) && !strcmp(j[1].id, ids[3]), "read skips cancelled: %d", n);
    /* running */
    CHECK(lisa_queue_cancel(q, ids[2], &cr, &was) == LISA_OK && cr == LISA_CANCEL_REQUESTED &&
              was == LISA_JOB_RUNNING, "cancel running: %d %d", cr, was);
    CHECK(job_state(q, ids[2]) == LISA_JOB_CANCEL_REQUESTED, "cancel_requested");
    CHECK(lisa_queue_cancel(q, ids[2], &cr, &was) == LISA_OK && cr == LISA_CANCEL_REQUESTED &&
              was == LISA_JOB_CANCEL_REQUESTED, "cancel again");
    lisa_queue_batch_info b;
    CHECK(lisa_queue_batch_get(q, bid, &b) == LISA_OK && b.cancelling == 1 && b.running == 1, "cancelling counter");
    lisa_queue_touch_result tr[2];
    CHECK(lisa_queue_touch(q, "w1", j, 2, tr) == LISA_OK && tr[0] == LISA_TOUCH_CANCEL && tr[1] == LISA_TOUCH_OK,
          "touch says cancel: %d %d", tr[0], tr[1]);
    lisa_queue_outcome out;
    CHECK(lisa_queue_finish(q, "w1", &j[0], (const uint8_t *)"x", 1, &out) == LISA_OK &&
              out == LISA_OUTCOME_CANCELLED, "finish of a cancel_requested job: %d", out);
    uint8_t *res = NULL;
    size_t len;
    CHECK(lisa_queue_result_get(q, ids[2], &res, &len) == LISA_ERR_NOTFOUND, "result dropped");
    CHECK(job_state(q, ids[2]) == LISA_JOB_CANCELLED, "cancelled after finish");
    /* done */
    CHECK(lisa_queue_finish(q, "w1", &j[1], (const uint8_t *)"y", 1, &out) == LISA_OK && out == LISA_OUTCOME_DONE,
          "finish");
    CHECK(lisa_queue_cancel(q, ids[3], &cr, &was) == LISA_OK && cr == LISA_CANCEL_FINISHED && was == LISA_JOB_DONE,
          "cancel done: %d %d", cr, was);
    CHECK(job_state(q, ids[3]) == LISA_JOB_DONE, "done unchanged");
    CHECK(lisa_queue_result_get(q, ids[3], &res, &len) == LISA_OK && len == 1, "result kept");
    free(res);
    CHECK(lisa_queue_cancel(q, "B9_9", &cr, &was) == LISA_OK && cr == LISA_CANCEL_UNKNOWN &&
              was == LISA_JOB_UNKNOWN, "cancel unknown: %d", cr);
    /* retry_wait */
    char b2[48], ids2[16][64];
    submit_n(q, &o, "rw", 1, b2, ids2);
    lisa_queue_job k = {0};
    CHECK(lisa_queue_read(q, "w1", 1, 0, &k, &st) == 1, "read for retry");
    CHECK(lisa_queue_fail(q, "w1", &k, "transient", 1, 60000, NULL, 0, &out) == LISA_OK && out == LISA_OUTCOME_RETRY,
          "to retry_wait");
    CHECK(lisa_queue_cancel(q, ids2[0], &cr, &was) == LISA_OK && cr == LISA_CANCEL_DONE && was == LISA_JOB_RETRY_WAIT,
          "cancel retry_wait: %d %d", cr, was);
    const char *zc[] = {"ZCARD", "e:delayed"};
    CHECK(!strcmp(cmd_text(r, 2, zc), "0"), "removed from delayed");
    check_batch_sum(q, bid, "cancel");
    check_batch_sum(q, b2, "cancel retry");
    CHECK(lisa_queue_batch_get(q, bid, &b) == LISA_OK && b.cancelled == 3 && b.done == 1 && b.cancelling == 0,
          "cancel counters: cancelled %lld", (long long)b.cancelled);
    for (int i = 0; i < 4; i++) lisa_queue_job_clear(&j[i]);
    lisa_queue_job_clear(&k);
    lisa_queue_free(q);
}

/* A trimmed jobs stream: the reclaim fails the job, "payload lost". */
static void test_trim(lisa_redis *r) {
    lisa_queue *q = queue_for(r, "f");
    lisa_queue_submit_opts o = {.name = "trim", .priority = LISA_PRIO_NORMAL};
    char bid[48], ids[16][64];
    submit_n(q, &o, "t", 2, bid, ids);
    lisa_queue_job j = {0};
    lisa_status st;
    CHECK(lisa_queue_read(q, "w1", 1, 0, &j, &st) == 1, "read");
    const char *tr[] = {"XTRIM", "f:jobs:normal", "MAXLEN", "0"};
    CHECK(!strcmp(cmd_text(r, 4, tr), "2"), "trimmed 2");
    sleep_ms(120);
    lisa_queue_job k = {0};
    CHECK(lisa_queue_reclaim(q, "w2", 50, 4, &k, &st) == 0, "nothing to reclaim");
    lisa_queue_job_info info;
    CHECK(lisa_queue_job_get(q, j.id, &info) == LISA_OK && info.state == LISA_JOB_FAILED &&
              !strcmp(info.error, "payload lost (stream entry deleted)"), "payload lost: %d '%s'", info.state,
          info.error);
    /* the never-delivered one is in no PEL, so no reclaim sees it: it
     * stays queued (a trim loses such jobs; queue.h forbids trimming) */
    CHECK(job_state(q, ids[1]) == LISA_JOB_QUEUED, "undelivered job still queued");
    lisa_queue_outcome out;
    CHECK(lisa_queue_finish(q, "w1", &j, (const uint8_t *)"x", 1, &out) == LISA_OK && out == LISA_OUTCOME_STALE,
          "finish after payload lost: stale");
    check_batch_sum(q, bid, "trim");
    lisa_queue_job_clear(&j);
    lisa_queue_free(q);
}

/* Depths, workers and many pipelined submits. */
static void test_depths(lisa_redis *r) {
    lisa_queue *q = queue_for(r, "g");
    enum { N = 1200 };
    lisa_queue_submit_item *items = calloc(N, sizeof *items);
    char(*cids)[16] = calloc(N, sizeof *cids);
    char(*ids)[64] = calloc(N, sizeof *ids);
    for (int i = 0; i < N; i++) {
        snprintf(cids[i], sizeof cids[i], "m%d", i);
        items[i] = (lisa_queue_submit_item){cids[i], (const uint8_t *)"R", 1, "i.png", "p"};
    }
    lisa_queue_submit_opts o = {.name = "many", .priority = LISA_PRIO_LO};
    char bid[48];
    CHECK(lisa_queue_batch_new(q, &o, bid, sizeof bid) == LISA_OK, "batch");
    int dup = -1;
    CHECK(lisa_queue_submit(q, bid, 0, items, N, &o, ids, &dup) == LISA_OK && dup == 0, "submit %d: %s", N,
          lisa_error_get());
    CHECK(!strcmp(ids[N - 1], "B1_1199"), "last id %s", ids[N - 1]);
    CHECK(lisa_queue_submit(q, bid, 0, items, N, &o, ids, &dup) == LISA_OK && dup == N, "resubmit: %d dups", dup);
    lisa_queue_job j[3] = {0};
    lisa_status st;
    CHECK(lisa_queue_read(q, "w1", 3, 0, j, &st) == 3, "read 3");
    lisa_queue_worker_info w = {0};
    snprintf(w.name, sizeof w.name, "w1");
    snprintf(w.host, sizeof w.host, "node7");
    snprintf(w.device, sizeof w.device, "cuda:0");
    snprintf(w.state, sizeof w.state, "busy");
    snprintf(w.current, sizeof w.current, "%s %s %s", j[0].id, j[1].id, j[2].id);
    w.pid = 4242;
    w.batch = 4;
    w.running = 3;
    w.done = 17;
    w.rate = 1.5;
    w.started_ms = 1000;
    CHECK(lisa_queue_heartbeat(q, &w, 10000) == LISA_OK, "heartbeat: %s", lisa_error_get());
    snprintf(w.name, sizeof w.name, "w-old");
    CHECK(lisa_queue_heartbeat(q, &w, 10) == LISA_OK, "short heartbeat");
    snprintf(w.name, sizeof w.name, "w-gone");
    CHECK(lisa_queue_heartbeat(q, &w, 10000) == LISA_OK, "third worker");
    CHECK(lisa_queue_worker_gone(q, "w-gone") == LISA_OK, "worker gone");
    sleep_ms(60);
    lisa_queue_depths d;
    CHECK(lisa_queue_depths_get(q, &d) == LISA_OK, "depths: %s", lisa_error_get());
    CHECK(d.waiting[2] == N - 3 && d.pending[2] == 3 && d.running == 3 && d.waiting[0] == 0 && d.workers == 1,
          "depths: waiting %lld pending %lld running %lld workers %lld", (long long)d.waiting[2],
          (long long)d.pending[2], (long long)d.running, (long long)d.workers);
    lisa_queue_worker_info *ws = NULL;
    int nw = 0;
    CHECK(lisa_queue_workers_list(q, &ws, &nw) == LISA_OK && nw == 2, "2 workers listed: %d", nw);
    for (int i = 0; i < nw; i++) {
        if (!strcmp(ws[i].name, "w1"))
            CHECK(!strcmp(ws[i].host, "node7") && ws[i].pid == 4242 && !strcmp(ws[i].state, "busy") &&
                      ws[i].running == 3 && ws[i].done == 17 && ws[i].pending == 3 && ws[i].rate == 1.5 &&
                      ws[i].last_seen_ms > 0 && !strcmp(ws[i].device, "cuda:0"),
                  "w1 record: %s %d %s pending %lld", ws[i].host, ws[i].pid, ws[i].state, (long long)ws[i].pending);
        else
            CHECK(!strcmp(ws[i].name, "w-old") && !strcmp(ws[i].state, "dead"), "expired worker listed dead: %s %s",
                  ws[i].name, ws[i].state);
    }
    free(ws);
    check_batch_sum(q, bid, "many");
    for (int i = 0; i < 3; i++) lisa_queue_job_clear(&j[i]);
    free(items);
    free(cids);
    free(ids);
    lisa_queue_free(q);
}

/* Blocking reads: an empty queue returns 0 after the BLOCK; lost groups
 * (data loss) are recreated; a job submitted by another process while a
 * worker blocks wakes it. */
static void test_block(lisa_redis *r) {
    lisa_queue *q = queue_for(r, "h");
    lisa_queue_job j[2] = {0};
    lisa_status st;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    CHECK(lisa_queue_read(q, "w1", 2, 150, j, &st) == 0, "empty blocking read");
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
    CHECK(ms >= 140 && ms < 1000, "blocked %.0f ms", ms);
    /* a lost group (data loss) is recreated */
    const char *del[] = {"DEL", "h:jobs:hi", "h:jobs:normal", "h:jobs:lo"};
    cmd_text(r, 4, del);
    lisa_queue_submit_opts o = {.name = "block", .priority = LISA_PRIO_NORMAL};
    char bid[48], ids[16][64];
    submit_n(q, &o, "b", 1, bid, ids);
    CHECK(lisa_queue_read(q, "w1", 2, 150, j, &st) == 1, "read after NOGROUP: %s", lisa_error_get());
    lisa_queue_job_clear(&j[0]);
    /* a job submitted by another client while a worker blocks wakes it */
    pid_t child = fork();
    if (child == 0) {
        sleep_ms(200);
        struct timeval tv = {2, 0};
        redisContext *c = redisConnectWithTimeout("127.0.0.1", g_main.port, tv);
        redisReply *x = c && !c->err ? redisCommand(c, "FCALL lisa_submit 0 h %s 5 late n u lo 3 0 i p r", bid)
                                     : NULL;
        int ok = x && x->type == REDIS_REPLY_ARRAY;
        if (x) freeReplyObject(x);
        if (c) redisFree(c);
        _exit(ok ? 0 : 1); /* not exit: the parent's atexit would stop the server */
    }
    clock_gettime(CLOCK_MONOTONIC, &a);
    int got = lisa_queue_read(q, "w1", 2, 3000, j, &st);
    clock_gettime(CLOCK_MONOTONIC, &b);
    ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
    int wst = 0;
    waitpid(child, &wst, 0);
    CHECK(WIFEXITED(wst) && WEXITSTATUS(wst) == 0, "the other client submitted");
    CHECK(got == 1 && !strcmp(j[0].id, "B1_5") && !strcmp(j[0].stream, "h:jobs:lo") && ms >= 150 && ms < 2500,
          "woken by the submit after %.0f ms: %d %s", ms, got, j[0].id);
    lisa_queue_job_clear(&j[0]);
    lisa_queue_free(q);
}

/* shutdown + restart from the AOF: jobs, results and functions survive;
 * a client reconnects. */
static void test_restart(lisa_redis *r) {
    lisa_queue *q = NULL;
    CHECK(lisa_queue_open(&q, r, "a") == LISA_OK, "open");
    const char *sd[] = {"SHUTDOWN"};
    redisReply *rep = lisa_redis_cmd(r, 1, sd, NULL);
    CHECK(!rep, "SHUTDOWN closes the connection");
    if (rep) freeReplyObject(rep);
    CHECK(!lisa_redis_ok(r), "connection marked broken");
    waitpid(g_main.pid, NULL, 0);
    g_main.pid = 0;
    lisa_queue_job_info info;
    CHECK(lisa_queue_job_get(q, "B1_0", &info) == LISA_ERR_UNAVAILABLE, "unavailable while down: %s",
          lisa_error_get());
    CHECK(lisa_redis_reconnect(r, 0, NULL) == LISA_ERR_UNAVAILABLE &&
              strstr(lisa_error_get(), "Connection refused"), "reconnect while down: %s", lisa_error_get());
    CHECK(server_start(&g_main, "noeviction"), "restart redis-server");
    CHECK(lisa_redis_reconnect(r, 5, NULL) == LISA_OK, "reconnect: %s", lisa_error_get());
    const char *ver[] = {"FCALL", "lisa_version", "0"};
    CHECK(!strcmp(cmd_text(r, 3, ver), "2"), "functions survive the restart: %s", cmd_text(r, 3, ver));
    CHECK(lisa_queue_job_get(q, "B1_0", &info) == LISA_OK && info.state == LISA_JOB_DONE, "done job kept");
    uint8_t *res = NULL;
    size_t len;
    CHECK(lisa_queue_result_get(q, "B1_0", &res, &len) == LISA_OK && len == 8, "result kept");
    free(res);
    lisa_queue_free(q);
    /* the queue "g" still has its 1197 waiting jobs and 3 pending */
    CHECK(lisa_queue_open(&q, r, "g") == LISA_OK, "open g");
    lisa_queue_depths d;
    CHECK(lisa_queue_depths_get(q, &d) == LISA_OK && d.waiting[2] == 1197 && d.pending[2] == 3,
          "stream and group kept: %lld %lld", (long long)d.waiting[2], (long long)d.pending[2]);
    lisa_queue_job j = {0};
    lisa_status st;
    CHECK(lisa_queue_read(q, "w5", 1, 0, &j, &st) == 1 && j.token == 1, "read after restart without setup");
    lisa_queue_job_clear(&j);
    lisa_queue_free(q);

    /* CLIENT KILL: the next command fails naming the server, reconnect */
    const char *id[] = {"CLIENT", "ID"};
    char cid[32];
    snprintf(cid, sizeof cid, "%s", cmd_text(r, 2, id));
    lisa_redis *killer = connect_url(g_url, "killer");
    if (!killer) return;
    const char *kill_cmd[] = {"CLIENT", "KILL", "ID", cid};
    CHECK(!strcmp(cmd_text(killer, 4, kill_cmd), "1"), "CLIENT KILL ID %s", cid);
    const char *ping[] = {"PING"};
    rep = lisa_redis_cmd(r, 1, ping, NULL);
    char want[64];
    snprintf(want, sizeof want, "lost connection to 127.0.0.1:%d", g_main.port);
    CHECK(!rep && !lisa_redis_ok(r) && strstr(lisa_error_get(), want), "killed: %s", lisa_error_get());
    if (rep) freeReplyObject(rep);
    CHECK(lisa_redis_reconnect(r, 2, NULL) == LISA_OK && lisa_redis_ok(r), "reconnect after kill");
    CHECK(!strcmp(cmd_text(r, 1, ping), "PONG"), "ping after reconnect");
    const char *gn[] = {"CLIENT", "GETNAME"};
    CHECK(!strcmp(cmd_text(r, 2, gn), "test-queue"), "client name reapplied: %s", cmd_text(r, 2, gn));
    lisa_redis_free(killer);
}

static void test_durability(lisa_redis *r) {
    lisa_queue *q = NULL;
    char warn[1024] = "x";
    CHECK(lisa_queue_open(&q, r, "a") == LISA_OK, "open");
    CHECK(lisa_queue_check_durability(q, warn, sizeof warn) == LISA_OK && warn[0] == 0,
          "no warning on the AOF server: %s", warn);
    lisa_queue_free(q);
    g_plain.appendonly = 0;
    CHECK(server_start(&g_plain, "allkeys-lru"), "start a server without AOF");
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", g_plain.port);
    lisa_redis *p = connect_url(url, "plain");
    if (!p) return;
    CHECK(lisa_queue_open(&q, p, NULL) == LISA_OK && !strcmp(lisa_queue_prefix(q), "lisa"), "default prefix");
    CHECK(lisa_queue_check_durability(q, warn, sizeof warn) == LISA_OK, "check");
    CHECK(strstr(warn, "appendonly is no") && strstr(warn, "maxmemory-policy is allkeys-lru, not noeviction"),
          "warnings: %s", warn);
    lisa_queue_free(q);
    lisa_redis_free(p);
    server_kill(&g_plain);
}

/* ACL SETUSER name on >pw rules... */
static int acl_user(lisa_redis *adm, const char *name, const char *pw, const char *rules) {
    const char *argv[96];
    int argc = 0;
    char copy[4096], pass[128];
    snprintf(copy, sizeof copy, "%s", rules);
    snprintf(pass, sizeof pass, ">%s", pw);
    argv[argc++] = "ACL";
    argv[argc++] = "SETUSER";
    argv[argc++] = name;
    argv[argc++] = "reset";
    argv[argc++] = "on";
    argv[argc++] = pass;
    for (char *t = strtok(copy, " "); t && argc < 96; t = strtok(NULL, " ")) argv[argc++] = t;
    const char *out = cmd_text(adm, argc, argv);
    CHECK(!strcmp(out, "OK"), "ACL SETUSER %s: %s", name, out);
    return !strcmp(out, "OK");
}

static void test_acl(lisa_redis *adm) {
    char rules[4096], buf[16];
    CHECK(lisa_queue_acl_rules("submit", "acl", rules, sizeof rules) == rules, "submit rules");
    CHECK(strstr(rules, "+fcall|lisa_submit") && strstr(rules, "%R~acl:*") && !strstr(rules, "res:"),
          "submit rules: %s", rules);
    CHECK(!lisa_queue_acl_rules("submit", "acl", buf, sizeof buf) && strstr(lisa_error_get(), "fit"), "too small");
    CHECK(!lisa_queue_acl_rules("boss", "acl", rules, sizeof rules) && strstr(lisa_error_get(), "boss"),
          "unknown role");
    CHECK(!lisa_queue_acl_rules("worker", "a b", rules, sizeof rules), "prefix with a space");
    char esc[4096];
    CHECK(lisa_queue_acl_rules("admin", "q*", esc, sizeof esc) && strstr(esc, "~q\\*:*"), "escaped glob: %s", esc);
    lisa_queue_acl_rules("submit", "acl", rules, sizeof rules);
    if (!acl_user(adm, "lisa-submit", "s3cret", rules)) return;
    lisa_queue_acl_rules("worker", "acl", rules, sizeof rules);
    if (!acl_user(adm, "lisa-worker", "w0rk:er@x", rules)) return;
    lisa_queue_acl_rules("admin", "acl", rules, sizeof rules);
    if (!acl_user(adm, "lisa-admin", "adm", rules)) return;

    /* the worker installs nothing new but may set up and work */
    char url[192];
    snprintf(url, sizeof url, "redis://lisa-worker:w0rk%%3Aer%%40x@127.0.0.1:%d", g_main.port);
    lisa_redis *wr = connect_url(url, "worker");
    snprintf(url, sizeof url, "redis://lisa-submit:s3cret@127.0.0.1:%d", g_main.port);
    lisa_redis *sr = connect_url(url, "submitter");
    if (!wr || !sr) {
        lisa_redis_free(wr);
        lisa_redis_free(sr);
        return;
    }
    lisa_queue *wq = queue_for(wr, "acl");
    lisa_queue *sq = NULL;
    CHECK(lisa_queue_open(&sq, sr, "acl") == LISA_OK, "open as submitter");
    lisa_queue_submit_opts o = {.name = "acl", .priority = LISA_PRIO_NORMAL};
    char bid[48], ids[16][64];
    submit_n(sq, &o, "s", 3, bid, ids);
    lisa_queue_cancel_result cr;
    CHECK(lisa_queue_cancel(sq, ids[2], &cr, NULL) == LISA_OK && cr == LISA_CANCEL_DONE, "submitter cancels: %s",
          lisa_error_get());
    lisa_queue_job j[2] = {0};
    lisa_status st;
    CHECK(lisa_queue_read(wq, "aw1", 2, 0, j, &st) == 2, "worker reads: %s", lisa_error_get());
    lisa_queue_touch_result tr[2];
    CHECK(lisa_queue_touch(wq, "aw1", j, 2, tr) == LISA_OK && tr[0] == LISA_TOUCH_OK, "worker touches: %s",
          lisa_error_get());
    CHECK(lisa_queue_cancel(sq, ids[1], &cr, NULL) == LISA_OK && cr == LISA_CANCEL_REQUESTED,
          "submitter cancels a running job");
    lisa_queue_outcome out;
    CHECK(lisa_queue_finish(wq, "aw1", &j[0], (const uint8_t *)"RES", 3, &out) == LISA_OK && out == LISA_OUTCOME_DONE,
          "worker finishes: %s", lisa_error_get());
    CHECK(lisa_queue_fail(wq, "aw1", &j[1], "x", 1, 10, NULL, 0, &out) == LISA_OK && out == LISA_OUTCOME_CANCELLED,
          "worker fails the cancelled one: %d %s", out, lisa_error_get());
    int np;
    CHECK(lisa_queue_promote(wq, 10, &np) == LISA_OK, "worker promotes: %s", lisa_error_get());
    lisa_queue_job k = {0};
    CHECK(lisa_queue_reclaim(wq, "aw2", 100000, 4, &k, &st) == 0 && st == LISA_OK, "worker reclaims: %s",
          lisa_error_get());
    lisa_queue_worker_info w = {0};
    snprintf(w.name, sizeof w.name, "aw1");
    CHECK(lisa_queue_heartbeat(wq, &w, 1000) == LISA_OK, "worker heartbeat: %s", lisa_error_get());
    char warn[512];
    CHECK(lisa_queue_check_durability(wq, warn, sizeof warn) == LISA_OK && strstr(warn, "not checked"),
          "worker cannot CONFIG GET: %s", warn);

    /* the submitter reads everything */
    lisa_queue_job_info info;
    CHECK(lisa_queue_job_get(sq, ids[0], &info) == LISA_OK && info.state == LISA_JOB_DONE, "status: %s",
          lisa_error_get());
    lisa_queue_batch_info b;
    CHECK(lisa_queue_batch_get(sq, bid, &b) == LISA_OK && b.done == 1 && b.cancelled == 2, "batch status");
    uint8_t *res = NULL;
    size_t len;
    CHECK(lisa_queue_result_get(sq, ids[0], &res, &len) == LISA_OK && len == 3, "result: %s", lisa_error_get());
    free(res);
    lisa_queue_depths d;
    CHECK(lisa_queue_depths_get(sq, &d) == LISA_OK, "queue depths: %s", lisa_error_get());
    lisa_queue_worker_info *ws = NULL;
    int nw = 0;
    CHECK(lisa_queue_workers_list(sq, &ws, &nw) == LISA_OK && nw == 1, "workers: %s", lisa_error_get());
    free(ws);
    char last[48] = "0-0";
    lisa_queue_event ev[4];
    CHECK(lisa_queue_events_read(sq, last, 4, 0, ev, &st) == 4, "events: %s", lisa_error_get());
    CHECK(lisa_queue_events_read(sq, last, 4, 50, ev, &st) >= 0, "blocking events: %s", lisa_error_get());

    /* and may not do the worker's part */
    const char *start[] = {"FCALL", "lisa_start", "0", "acl", ids[0], "acl:jobs:normal", j[0].entry, "x"};
    const char *fin[] = {"FCALL", "lisa_finish", "0", "acl", ids[0], "acl:jobs:normal", j[0].entry, "x", "1",
                         "r", "0"};
    const char *setres[] = {"SET", "acl:res:x", "forged"};
    const char *hsetw[] = {"HSET", "acl:worker:aw1", "state", "forged"};
    const char *xrg[] = {"XREADGROUP", "GROUP", "workers", "s", "COUNT", "1", "STREAMS", "acl:jobs:normal", ">"};
    const char *other[] = {"SET", "other:key", "1"};
    CHECK(strstr(cmd_text(sr, 8, start), "NOPERM"), "submitter FCALL lisa_start: %s", cmd_text(sr, 8, start));
    CHECK(strstr(cmd_text(sr, 11, fin), "NOPERM"), "submitter FCALL lisa_finish: %s", cmd_text(sr, 11, fin));
    CHECK(strstr(cmd_text(sr, 3, setres), "NOPERM"), "submitter SET P:res: %s", cmd_text(sr, 3, setres));
    CHECK(strstr(cmd_text(sr, 4, hsetw), "NOPERM"), "submitter HSET P:worker: %s", cmd_text(sr, 4, hsetw));
    CHECK(strstr(cmd_text(sr, 9, xrg), "NOPERM"), "submitter XREADGROUP: %s", cmd_text(sr, 9, xrg));
    CHECK(strstr(cmd_text(wr, 3, other), "NOPERM"), "worker outside its prefix: %s", cmd_text(wr, 3, other));
    lisa_queue *oq = NULL;
    char ob[48];
    CHECK(lisa_queue_open(&oq, sr, "other") == LISA_OK &&
              lisa_queue_batch_new(oq, &o, ob, sizeof ob) == LISA_ERR_UNAVAILABLE &&
              strstr(lisa_error_get(), "FCALL lisa_batch_new: NOPERM inside the function"),
          "submitter under another prefix: %s", lisa_error_get());
    lisa_queue_free(oq);
    lisa_queue_job none[1];
    CHECK(lisa_queue_read(sq, "s", 1, 0, none, &st) == -1 && st == LISA_ERR_UNAVAILABLE &&
              strstr(lisa_error_get(), "NOPERM"), "lisa_queue_read as submitter: %s", lisa_error_get());
    CHECK(lisa_queue_setup(sq) == LISA_ERR_UNAVAILABLE, "setup as submitter is refused: %s", lisa_error_get());
    CHECK(lisa_queue_check_durability(sq, warn, sizeof warn) == LISA_OK && strstr(warn, "not checked"),
          "submitter durability: %s", warn);

    /* admin: CONFIG GET works */
    snprintf(url, sizeof url, "redis://lisa-admin:adm@127.0.0.1:%d", g_main.port);
    lisa_redis *ar = connect_url(url, "admin");
    if (ar) {
        lisa_queue *aq = NULL;
        CHECK(lisa_queue_open(&aq, ar, "acl") == LISA_OK, "admin open");
        CHECK(lisa_queue_check_durability(aq, warn, sizeof warn) == LISA_OK && !warn[0], "admin durability: %s", warn);
        CHECK(lisa_queue_setup(aq) == LISA_OK, "admin setup: %s", lisa_error_get());
        lisa_queue_free(aq);
        lisa_redis_free(ar);
    }

    /* a wrong password, and the password from a file */
    snprintf(url, sizeof url, "redis://lisa-submit:nope@127.0.0.1:%d", g_main.port);
    lisa_redis_params p = {0};
    p.url = url;
    lisa_redis *bad = NULL;
    CHECK(lisa_redis_connect(&bad, &p) == LISA_ERR_UNAVAILABLE && !bad &&
              strstr(lisa_error_get(), "authentication failed for user lisa-submit: WRONGPASS"),
          "wrong password: %s", lisa_error_get());
    char pwfile[300];
    snprintf(pwfile, sizeof pwfile, "%s/pw", g_main.dir);
    FILE *f = fopen(pwfile, "w");
    if (f) {
        fputs("s3cret\n", f);
        fclose(f);
    }
    snprintf(url, sizeof url, "redis://lisa-submit@127.0.0.1:%d", g_main.port);
    p.password_file = pwfile;
    lisa_redis *good = NULL;
    CHECK(lisa_redis_connect(&good, &p) == LISA_OK, "password file: %s", lisa_error_get());
    lisa_redis_free(good);
    snprintf(url, sizeof url, "redis://nobody:x@127.0.0.1:%d", g_main.port);
    p.password_file = NULL;
    CHECK(lisa_redis_connect(&good, &p) == LISA_ERR_UNAVAILABLE &&
              strstr(lisa_error_get(), "authentication failed for user nobody: WRONGPASS"), "unknown user: %s",
          lisa_error_get());

    for (int i = 0; i < 2; i++) lisa_queue_job_clear(&j[i]);
    lisa_queue_free(wq);
    lisa_queue_free(sq);
    lisa_redis_free(wr);
    lisa_redis_free(sr);
}

int main(int argc, char **argv) {
    (void)argc, (void)argv;
    atexit(servers_cleanup);
    test_names();
    test_urls();
    test_refused();
    test_loading();
    g_main.appendonly = 1;
    int up = server_start(&g_main, "noeviction");
    CHECK(up, "cannot start redis-server (is it installed and on PATH?)");
    if (!up) return test_finish("test-queue");
    snprintf(g_url, sizeof g_url, "redis://127.0.0.1:%d", g_main.port);
    lisa_redis *r = connect_url(g_url, "test queue");
    if (r) {
        test_basic(r);
        test_reclaim(r);
        test_reclaim_self(r);
        test_fail(r);
        test_dead(r);
        test_cancel(r);
        test_trim(r);
        test_depths(r);
        test_block(r);
        test_acl(r);
        test_restart(r);
        test_durability(r);
        lisa_redis_free(r);
    }
    servers_cleanup();
    return test_finish("test-queue");
}
