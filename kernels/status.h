/* status.h: status codes and the last-error message shared by every layer.
 *
 * Library code never prints and never exits on bad input: it returns a
 * lisa_status and records a human-readable reason with lisa_error_set().
 * The CLI (or a worker) prints lisa_error_get() and decides what to do.
 * The message buffer is thread-local so worker threads do not clobber each
 * other. This file deliberately knows nothing of models or backends. */
#ifndef LISA_STATUS_H
#define LISA_STATUS_H

#include <stdio.h>
#include <stdlib.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    LISA_OK = 0,
    LISA_ERR_IO,          /* file missing, unreadable, mmap failed */
    LISA_ERR_FORMAT,      /* malformed file or message (JSON, safetensors, protobuf) */
    LISA_ERR_SHAPE,       /* tensor present but with the wrong shape or dtype */
    LISA_ERR_MISSING,     /* a required tensor or field is absent */
    LISA_ERR_NOMEM,       /* allocation failed */
    LISA_ERR_ARG,         /* caller passed an invalid argument (too long prompt, bad id) */
    LISA_ERR_UNSUPPORTED, /* valid input this build cannot handle */
    LISA_ERR_BACKEND,     /* the compute backend reported a failure */
    LISA_ERR_CANCELLED,   /* the caller cancelled the request */
    LISA_ERR_UNAVAILABLE, /* a server (Redis) cannot be reached or refused us */
    LISA_ERR_NOTFOUND     /* no such job, batch or result (or it expired) */
} lisa_status;

/* Records the reason for the status about to be returned. printf-style.
 * Returns `st` so callers can write `return lisa_error_set(LISA_ERR_IO, ...)`. */
lisa_status lisa_error_set(lisa_status st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The last message recorded on this thread ("" when none). */
const char *lisa_error_get(void);

/* A short name for a status ("io error", "format error", ...). */
const char *lisa_status_str(lisa_status st);

/* Programmer-error invariant: prints file:line and aborts. Never use it for
 * anything a user or a file can trigger. */
#define LISA_ASSERT(x)                                                        \
    do {                                                                      \
        if (!(x)) {                                                           \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__,        \
                    __LINE__, #x);                                            \
            abort();                                                          \
        }                                                                     \
    } while (0)

/* Propagates a non-OK status from an expression. */
#define LISA_TRY(expr)                                                        \
    do {                                                                      \
        lisa_status st_ = (expr);                                             \
        if (st_ != LISA_OK) return st_;                                       \
    } while (0)

#ifdef __cplusplus
}
#endif

#endif
