/* status.c: the thread-local last-error message (see status.h). */
#include "status.h"

#include <stdarg.h>
#include <string.h>

static _Thread_local char g_error_msg[1024];

lisa_status lisa_error_set(lisa_status st, const char *fmt, ...) {
    /* formatted aside first: callers may pass lisa_error_get() itself as an
     * argument ("what: %s"), and vsnprintf must not write over its input */
    char msg[sizeof g_error_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(g_error_msg, msg, sizeof msg);
    return st;
}

const char *lisa_error_get(void) { return g_error_msg; }

const char *lisa_status_str(lisa_status st) {
    switch (st) {
    case LISA_OK: return "ok";
    case LISA_ERR_IO: return "io error";
    case LISA_ERR_FORMAT: return "format error";
    case LISA_ERR_SHAPE: return "shape error";
    case LISA_ERR_MISSING: return "missing";
    case LISA_ERR_NOMEM: return "out of memory";
    case LISA_ERR_ARG: return "invalid argument";
    case LISA_ERR_UNSUPPORTED: return "unsupported";
    case LISA_ERR_BACKEND: return "backend error";
    case LISA_ERR_CANCELLED: return "cancelled";
    case LISA_ERR_UNAVAILABLE: return "unavailable";
    case LISA_ERR_NOTFOUND: return "not found";
    }
    return "unknown status";
}
