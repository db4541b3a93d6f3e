/* fault.h: fault injection for the test builds: make the Nth allocation,
 * file read/write, backend allocation or Redis reply fail.
 *
 * Injection points call lisa_fault_hit(kind) just before the real
 * operation and fail it as the real one would when it returns 1. Plain
 * allocations and file I/O are not touched at their call sites: builds
 * configured with -DLISA_FAULT_INJECTION=ON (the sanitizer build by
 * default) link every program with -Wl,--wrap=malloc,... and the wrappers
 * in tests/fault/fault-wrap.c consult lisa_fault_hit. Backend allocation
 * (kernels/cpu, kernels/cuda: buffer_alloc, host_alloc) and Redis replies
 * (coordinator/queue/redis-conn.c) call it directly.
 *
 * Counting: every event of a kind is counted from the last lisa_fault_arm
 * of that kind; the nth one after arming fails, once, and later events
 * succeed again (a transient fault: the caller must fail cleanly and the
 * next attempt must work). In a build without injection lisa_fault_arm
 * refuses, lisa_fault_hit returns 0 and nothing is counted (the cost is a
 * call and a load per backend allocation or Redis reply).
 *
 * Programs can be armed from the environment: LISA_FAULT=kind:n[,kind:n]
 * (kinds alloc, io, backend, redis) is read once at start-up in injection
 * builds, for process-level tests of `lisa worker` and `lisa segment`.
 *
 * Counters are atomic so OpenMP threads may hit them; which event is the
 * nth is then only as deterministic as the program's allocation order.
 * This file deliberately knows nothing of what the events are for. */
#ifndef LISA_FAULT_H
#define LISA_FAULT_H

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    LISA_FAULT_ALLOC = 0, /* malloc, calloc, realloc, strdup, aligned_alloc */
    LISA_FAULT_IO,        /* fopen, fread, fwrite, fgets, getline, open, read, write,
                             mmap of a file (not on stdin, stdout, stderr) */
    LISA_FAULT_BACKEND,   /* a backend's buffer_alloc and host_alloc */
    LISA_FAULT_REDIS,     /* a reply taken from Redis (it reads as a lost connection) */
    LISA_FAULT_KINDS
} lisa_fault_kind;

/* 1 when this build has the injection points (LISA_FAULT_INJECTION). */
int lisa_fault_enabled(void);

/* Resets kind's counter and makes the nth event from now fail (n >= 1);
 * n == 0 only resets (disarms). LISA_ERR_UNSUPPORTED in a build without
 * injection, LISA_ERR_ARG for a bad kind or a negative n. */
lisa_status lisa_fault_arm(lisa_fault_kind kind, long n);

/* Disarms every kind and resets the counters. */
void lisa_fault_reset(void);

/* Events of kind since it was last armed (or reset): a dry run with n == 0
 * sizes a sweep. */
long lisa_fault_count(lisa_fault_kind kind);

/* 1 once the armed fault of kind has fired. */
int lisa_fault_fired(lisa_fault_kind kind);

/* Counts one event of kind; 1 when it is the one that must fail. */
int lisa_fault_hit(lisa_fault_kind kind);

/* Arms from a spec "kind:n[,kind:n...]" (LISA_FAULT's syntax). LISA_ERR_ARG
 * naming the bad part. */
lisa_status lisa_fault_arm_spec(const char *spec);

/* "alloc", "io", "backend", "redis". */
const char *lisa_fault_kind_name(lisa_fault_kind kind);

#ifdef __cplusplus
}
#endif

#endif
