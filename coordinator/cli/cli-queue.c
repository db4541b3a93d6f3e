/* cli-queue.c: see cli-queue.h. A queue command connects once, as a
 * client: a short connect timeout and no retries, so an unreachable server
 * is a clear message and exit 69 within about two seconds, not a hang.
 *
 * Deliberately not here: reconnecting during a long wait (the following
 * commands do that themselves), any output but the connection's errors. */
#include "cli-queue.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Where the URL points, "HOST:PORT" or the socket path, for messages
 * written before there is a connection to ask. */
static void queue_where_format(const char *url, char *buf, size_t n) {
    lisa_redis_url u;
    if (lisa_redis_url_parse(url, &u) != LISA_OK) snprintf(buf, n, "%s", url ? url : "?");
    else if (u.socket[0]) snprintf(buf, n, "%s", u.socket);
    else snprintf(buf, n, "%s:%d", u.host, u.port);
}

/* 1 when a message names a password or ACL refusal. */
static int queue_error_is_perm(const char *msg) {
    static const char *const k_words[] = {"NOPERM", "WRONGPASS", "NOAUTH", "authentication",
                                          "invalid password", "invalid username"};
    for (size_t i = 0; i < sizeof k_words / sizeof k_words[0]; i++)
        if (strstr(msg, k_words[i])) return 1;
    return 0;
}

int cli_queue_connect(const char *cmd, const cli_queue_opts *o, lisa_redis **r, lisa_queue **q) {
    *r = NULL;
    *q = NULL;
    const char *url = lisa_redis_url_default(o->redis);
    const char *pwfile = o->password_file ? o->password_file : getenv("LISA_REDIS_PASSWORD_FILE");
    const char *prefix = o->prefix ? o->prefix : getenv("LISA_QUEUE_PREFIX");
    if (prefix && !*prefix) prefix = NULL;
    if (pwfile && !*pwfile) pwfile = NULL;
    char where[600];
    queue_where_format(url, where, sizeof where);

    char client[64];
    snprintf(client, sizeof client, "lisa-%s", cmd);
    for (char *c = client; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '-') *c = '-';
    lisa_redis_params p = {.url = url, .password_file = pwfile, .connect_timeout_s = 2.0,
                           .retry_max_s = 0, .client_name = client};
    lisa_status st = lisa_redis_connect(r, &p);
    if (st != LISA_OK) {
        const char *msg = lisa_error_get();
        int code = st == LISA_ERR_ARG ? CLI_EXIT_USAGE
                   : queue_error_is_perm(msg) ? CLI_EXIT_NOPERM
                                              : CLI_EXIT_UNAVAILABLE;
        /* "cannot connect to HOST:PORT: why", "HOST:PORT: why" -> "why" */
        const char *at = strstr(msg, where);
        const char *why = at && !strncmp(at + strlen(where), ": ", 2) ? at + strlen(where) + 2 : msg;
        if (code == CLI_EXIT_UNAVAILABLE) {
            fprintf(stderr, "lisa %s: cannot reach Redis at %s: %s\n", cmd, where, why);
        } else if (code == CLI_EXIT_NOPERM && at && why == msg) {
            fprintf(stderr, "lisa %s: %s\n", cmd, msg); /* names where already */
        } else if (code == CLI_EXIT_NOPERM) {
            fprintf(stderr, "lisa %s: Redis at %s refused us: %s\n", cmd, where, why);
        } else {
            fprintf(stderr, "lisa %s: %s\n", cmd, msg);
        }
        *r = NULL;
        return code;
    }
    st = lisa_queue_open(q, *r, prefix);
    if (st != LISA_OK) {
        fprintf(stderr, "lisa %s: %s\n", cmd, lisa_error_get());
        lisa_redis_free(*r);
        *r = NULL;
        *q = NULL;
        return st == LISA_ERR_ARG ? CLI_EXIT_USAGE : CLI_EXIT_FAILED;
    }
    return CLI_EXIT_OK;
}

void cli_queue_close(lisa_redis *r, lisa_queue *q) {
    if (q) lisa_queue_free(q);
    if (r) lisa_redis_free(r);
}

int cli_queue_exit_code(lisa_status st) {
    if (st == LISA_OK) return CLI_EXIT_OK;
    if (st == LISA_ERR_NOTFOUND) return CLI_EXIT_NOTFOUND;
    if (queue_error_is_perm(lisa_error_get())) return CLI_EXIT_NOPERM;
    if (st == LISA_ERR_UNAVAILABLE) return CLI_EXIT_UNAVAILABLE;
    return CLI_EXIT_FAILED;
}

double cli_parse_duration(const char *s) {
    if (!s || !(isdigit((unsigned char)s[0]) || s[0] == '.')) return -1;
    char *end;
    double v = strtod(s, &end);
    if (end == s || !isfinite(v) || v < 0) return -1;
    double unit;
    if (!*end || !strcmp(end, "s")) unit = 1;
    else if (!strcmp(end, "ms")) unit = 0.001;
    else if (!strcmp(end, "m")) unit = 60;
    else if (!strcmp(end, "h")) unit = 3600;
    else if (!strcmp(end, "d")) unit = 86400;
    else return -1;
    return v * unit;
}
