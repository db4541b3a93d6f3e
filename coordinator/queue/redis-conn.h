/* redis-conn.h: one blocking hiredis (0.14 and 1.x) connection to the
 * queue's Redis, named by a URL, with what hiredis leaves to its callers:
 * AUTH (ACL user and password from the URL or a file), an I/O timeout that
 * stays longer than any BLOCK we send, SIGPIPE ignored, reconnection with
 * capped exponential backoff and jitter (socket options reapplied), and
 * one wrapper that always passes argument lengths (user text never becomes
 * a format string).
 *
 * URLs: redis://[user[:password]@]host[:port][/db] and
 * unix://[user[:password]@]/path/to/socket[?db=N]. Percent-escapes are
 * decoded in user and password. The environment variable LISA_REDIS gives
 * the URL when --redis is not given (lisa_redis_url_default).
 *
 * Deliberately not here: what the commands mean (queue.h), async I/O, TLS,
 * RESP3 (we never send HELLO 3). Not thread-safe: one per thread. */
#ifndef LISA_REDIS_CONN_H
#define LISA_REDIS_CONN_H

#include <stddef.h>

#include <hiredis/hiredis.h>

#include "status.h"

typedef struct lisa_redis_url {
    char host[256];
    int port;                 /* 6379 */
    char socket[512];         /* unix socket path, "" for TCP */
    char user[128];           /* "" : the default user */
    char password[256];
    int db;
} lisa_redis_url;

/* Parses url (NULL or "": $LISA_REDIS, else redis://127.0.0.1:6379).
 * LISA_ERR_ARG naming what is wrong. */
lisa_status lisa_redis_url_parse(const char *url, lisa_redis_url *out);

/* --redis URL, else $LISA_REDIS, else NULL. */
const char *lisa_redis_url_default(const char *flag);

typedef struct lisa_redis_params {
    const char *url;
    const char *password_file; /* first line is the password (overrides the URL's) */
    double connect_timeout_s;  /* 0: 2 s */
    double io_timeout_s;       /* 0: 10 s; BLOCK ms must stay well under it */
    double retry_max_s;        /* reconnect: give up after this long (0: at once,
                                  < 0: forever) */
    const char *client_name;   /* CLIENT SETNAME, may be NULL */
} lisa_redis_params;

typedef struct lisa_redis lisa_redis;

/* Connects and authenticates. LISA_ERR_UNAVAILABLE ("cannot connect to
 * 127.0.0.1:7000: Connection refused"; "authentication failed for user
 * lisa-submit: WRONGPASS ...") or LISA_ERR_ARG for a bad URL/file. With
 * retry_max_s != 0 a refused connection is retried with backoff. */
lisa_status lisa_redis_connect(lisa_redis **out, const lisa_redis_params *p);
void lisa_redis_free(lisa_redis *r);

/* Sends one command (argv[i] of lens[i] bytes; lens NULL: strlen) and
 * returns its reply, which the caller frees with freeReplyObject. NULL
 * means the connection broke (the command may or may not have run):
 * lisa_error_get() says why and the connection is marked broken; an error
 * reply (-ERR, -NOPERM, -LOADING, ...) is returned as a reply. */
redisReply *lisa_redis_cmd(lisa_redis *r, int argc, const char **argv, const size_t *lens);
/* printf-like for fixed commands whose arguments are not user text
 * ("XINFO GROUPS %s"); the same NULL rule. */
redisReply *lisa_redis_cmdf(lisa_redis *r, const char *fmt, ...);

/* Pipelining: append, then take one reply per appended command in order.
 * lisa_redis_take returns NULL as lisa_redis_cmd does. */
lisa_status lisa_redis_append(lisa_redis *r, int argc, const char **argv, const size_t *lens);
redisReply *lisa_redis_take(lisa_redis *r);

/* 1 while the connection is usable. */
int lisa_redis_ok(const lisa_redis *r);
/* Reconnects a broken connection, retrying with backoff (100 ms doubling
 * to 5 s, +-25% jitter) for up to max_s seconds (< 0: until it works or
 * *stop becomes non-zero; stop may be NULL). Reapplies the timeout, AUTH,
 * SELECT and the client name. A server still loading its AOF (-LOADING)
 * counts as not up yet. */
lisa_status lisa_redis_reconnect(lisa_redis *r, double max_s, volatile int *stop);
/* "127.0.0.1:6379" or the socket path, for messages. */
const char *lisa_redis_where(const lisa_redis *r);
/* The I/O timeout in seconds (a BLOCK must stay under it). */
double lisa_redis_io_timeout(const lisa_redis *r);

/* A reply as a status: LISA_OK for anything but NULL or an error reply;
 * for an error reply LISA_ERR_ARG with "what: <server's message>" (NOPERM
 * and WRONGPASS as LISA_ERR_UNAVAILABLE, since retrying will not help and
 * the caller should say who it is; so are NOAUTH and LOADING, and an inner
 * command of a function refused by ACL, reported as "what: NOPERM inside
 * the function: ERR The user executing the script can't ..."). */
lisa_status lisa_redis_check(lisa_redis *r, const redisReply *reply, const char *what);

#endif
