/* fault.c: the counters behind fault.h. Compiled into every build; only
 * builds with LISA_FAULT_ENABLED (set on this one file by tests/fault/
 * fault.cmake under -DLISA_FAULT_INJECTION=ON) count and fire, and only
 * they read LISA_FAULT at start-up. Nothing here allocates or does I/O:
 * it runs inside the malloc and read wrappers. */
#include "fault.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static const char *const k_names[LISA_FAULT_KINDS] = {"alloc", "io", "backend", "redis"};

const char *lisa_fault_kind_name(lisa_fault_kind kind) {
    return (unsigned)kind < LISA_FAULT_KINDS ? k_names[kind] : "?";
}

#ifdef LISA_FAULT_ENABLED

static atomic_long g_count[LISA_FAULT_KINDS];
static atomic_long g_target[LISA_FAULT_KINDS];
static atomic_int g_fired[LISA_FAULT_KINDS];

int lisa_fault_enabled(void) { return 1; }

lisa_status lisa_fault_arm(lisa_fault_kind kind, long n) {
    if ((unsigned)kind >= LISA_FAULT_KINDS) return lisa_error_set(LISA_ERR_ARG, "fault: no kind %d", (int)kind);
    if (n < 0) return lisa_error_set(LISA_ERR_ARG, "fault: %s:%ld is negative", k_names[kind], n);
    /* target first to 0 so an event racing with the re-arm cannot fire the
     * old target on the new count */
    atomic_store(&g_target[kind], 0);
    atomic_store(&g_count[kind], 0);
    atomic_store(&g_fired[kind], 0);
    atomic_store(&g_target[kind], n);
    return LISA_OK;
}

void lisa_fault_reset(void) {
    for (int k = 0; k < LISA_FAULT_KINDS; k++) lisa_fault_arm((lisa_fault_kind)k, 0);
}

long lisa_fault_count(lisa_fault_kind kind) {
    return (unsigned)kind < LISA_FAULT_KINDS ? atomic_load(&g_count[kind]) : 0;
}

int lisa_fault_fired(lisa_fault_kind kind) {
    return (unsigned)kind < LISA_FAULT_KINDS ? atomic_load(&g_fired[kind]) : 0;
}

int lisa_fault_hit(lisa_fault_kind kind) {
    long c = atomic_fetch_add(&g_count[kind], 1) + 1;
    long t = atomic_load(&g_target[kind]);
    if (t == 0 || c != t) return 0;
    atomic_store(&g_fired[kind], 1);
    return 1;
}

lisa_status lisa_fault_arm_spec(const char *spec) {
    const char *p = spec;
    while (p && *p) {
        const char *colon = strchr(p, ':');
        int kind = -1;
        for (int k = 0; colon && k < LISA_FAULT_KINDS; k++)
            if ((size_t)(colon - p) == strlen(k_names[k]) && !strncmp(p, k_names[k], (size_t)(colon - p)))
                kind = k;
        char *end = NULL;
        long n = kind >= 0 ? strtol(colon + 1, &end, 10) : -1;
        if (kind < 0 || end == colon + 1 || (*end && *end != ',') || n < 0)
            return lisa_error_set(LISA_ERR_ARG,
                                  "LISA_FAULT: bad part '%.40s' (want kind:n, kind alloc, io, "
                                  "backend or redis, n >= 0)", p);
        lisa_fault_arm((lisa_fault_kind)kind, n);
        p = *end ? end + 1 : end;
    }
    return LISA_OK;
}

/* LISA_FAULT for process-level tests; a bad spec is a broken test, so it
 * stops the program before it does anything. */
__attribute__((constructor)) static void fault_from_env(void) {
    const char *spec = getenv("LISA_FAULT");
    if (spec && *spec && lisa_fault_arm_spec(spec) != LISA_OK) {
        fprintf(stderr, "%s\n", lisa_error_get());
        exit(2);
    }
}

#else

int lisa_fault_enabled(void) { return 0; }

lisa_status lisa_fault_arm(lisa_fault_kind kind, long n) {
    (void)kind;
    (void)n;
    return lisa_error_set(LISA_ERR_UNSUPPORTED,
                          "fault injection is not in this build (configure with "
                          "-DLISA_FAULT_INJECTION=ON)");
}

void lisa_fault_reset(void) {}

long lisa_fault_count(lisa_fault_kind kind) {
    (void)kind;
    return 0;
}

int lisa_fault_fired(lisa_fault_kind kind) {
    (void)kind;
    return 0;
}

int lisa_fault_hit(lisa_fault_kind kind) {
    (void)kind;
    return 0;
}

lisa_status lisa_fault_arm_spec(const char *spec) {
    (void)spec;
    return lisa_fault_arm(LISA_FAULT_ALLOC, 0);
}

#endif
