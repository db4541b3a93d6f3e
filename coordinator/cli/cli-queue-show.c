/* cli-queue-show.c: see cli-queue-show.h. */
#include "cli-queue-show.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli-queue.h"

int cli_queue_args_parse(const char *cmd, int argc, char **argv, const cli_opt *opts, int n_opts,
                         void (*help)(FILE *), char ***ids, int *n_ids) {
    char **optv = malloc(sizeof *optv * (size_t)(argc + 1));
    *ids = malloc(sizeof **ids * (size_t)(argc + 1));
    *n_ids = 0;
    if (!optv || !*ids) {
        fprintf(stderr, "lisa %s: out of memory\n", cmd);
        free(optv);
        free(*ids);
        *ids = NULL;
        return -1;
    }
    int m = 0, rest = 0;
    optv[m++] = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (rest || a[0] != '-' || !a[1]) {
            (*ids)[(*n_ids)++] = argv[i];
            continue;
        }
        if (!strcmp(a, "--")) {
            rest = 1;
            continue;
        }
        optv[m++] = argv[i];
        const char *eq = strncmp(a, "--", 2) ? NULL : strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        for (int k = 0; k < n_opts; k++)
            if (strlen(opts[k].name) == len && !strncmp(opts[k].name, a, len)) {
                if (opts[k].kind != CLI_FLAG && !eq && i + 1 < argc) optv[m++] = argv[++i];
                break;
            }
    }
    optv[m] = NULL;
    int pr = cli_opts_parse(cmd, m, optv, opts, n_opts, help);
    free(optv);
    if (pr) {
        free(*ids);
        *ids = NULL;
        *n_ids = 0;
    }
    return pr;
}

int cli_queue_states_parse(const char *cmd, const char *list, unsigned *mask) {
    *mask = 0;
    const char *p = list;
    while (*p) {
        size_t len = strcspn(p, ",");
        char word[32];
        if (len == 0 || len >= sizeof word) goto bad;
        memcpy(word, p, len);
        word[len] = 0;
        lisa_job_state s = lisa_job_state_parse(word);
        for (size_t i = 0; s == LISA_JOB_UNKNOWN && i < len; i++)
            word[i] = (char)toupper((unsigned char)word[i]);
        if (s == LISA_JOB_UNKNOWN) s = lisa_job_state_parse(word);
        for (size_t i = 0; s == LISA_JOB_UNKNOWN && i < len; i++)
            word[i] = (char)tolower((unsigned char)word[i]);
        if (s == LISA_JOB_UNKNOWN) s = lisa_job_state_parse(word);
        if (s == LISA_JOB_UNKNOWN) goto bad;
        *mask |= 1u << s;
        p += len;
        if (*p == ',') p++;
    }
    if (*mask) return 0;
bad:
    fprintf(stderr,
            "lisa %s: -t expects state codes or names, comma separated (PD,R,RT,CD,F,CA,CG or "
            "queued,running,...), got '%s'\n",
            cmd, list);
    return -1;
}

double cli_queue_interval_parse(const char *cmd, const char *opt, const char *val) {
    double s = cli_parse_duration(val);
    if (s <= 0) {
        fprintf(stderr, "lisa %s: %s expects a duration above zero (2, 2s, 1m), got '%s'\n", cmd,
                opt, val);
        return -1;
    }
    return s;
}

int64_t cli_queue_now_ms(lisa_redis *r) {
    redisReply *t = r ? lisa_redis_cmdf(r, "TIME") : NULL;
    int64_t ms = -1;
    if (t && t->type == REDIS_REPLY_ARRAY && t->elements == 2 &&
        t->element[0]->type == REDIS_REPLY_STRING && t->element[1]->type == REDIS_REPLY_STRING)
        ms = strtoll(t->element[0]->str, NULL, 10) * 1000 +
             strtoll(t->element[1]->str, NULL, 10) / 1000;
    if (t) freeReplyObject(t);
    if (ms >= 0) return ms;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void cli_queue_sleep(double s) {
    struct timespec ts = {(time_t)s, (long)((s - floor(s)) * 1e9)};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

void cli_queue_elapsed_format(char *buf, size_t n, int64_t ms) {
    int64_t s = ms > 0 ? ms / 1000 : 0;
    int d = (int)(s / 86400), h = (int)(s / 3600 % 24), m = (int)(s / 60 % 60), sec = (int)(s % 60);
    if (d) snprintf(buf, n, "%d-%02d:%02d:%02d", d, h, m, sec);
    else if (h) snprintf(buf, n, "%d:%02d:%02d", h, m, sec);
    else snprintf(buf, n, "%d:%02d", m, sec);
}

void cli_queue_clock_format(char *buf, size_t n, double s, int hours) {
    if (s < 0 || !isfinite(s)) {
        snprintf(buf, n, "%s", hours ? "-" : "?");
        return;
    }
    int64_t t = (int64_t)s;
    int h = (int)(t / 3600), m = (int)(t / 60 % 60), sec = (int)(t % 60);
    if (hours) snprintf(buf, n, "%02d:%02d:%02d", h, m, sec);
    else if (h) snprintf(buf, n, "%d:%02d:%02d", h, m, sec);
    else snprintf(buf, n, "%02d:%02d", m, sec);
}

void cli_queue_ago_format(char *buf, size_t n, int64_t ms) {
    int64_t s = ms > 0 ? ms / 1000 : 0;
    if (s < 60) snprintf(buf, n, "%llds ago", (long long)s);
    else if (s < 3600) snprintf(buf, n, "%lldm ago", (long long)(s / 60));
    else if (s < 86400) snprintf(buf, n, "%lldh ago", (long long)(s / 3600));
    else snprintf(buf, n, "%lldd ago", (long long)(s / 86400));
}

void cli_queue_count_format(char *buf, size_t n, int64_t v) {
    long long x = v;
    if (x < 1000) snprintf(buf, n, "%lld", x);
    else if (x < 10000) snprintf(buf, n, "%lld.%lldk", x / 1000, x % 1000 / 100);
    else if (x < 1000000) snprintf(buf, n, "%lldk", x / 1000);
    else if (x < 10000000) snprintf(buf, n, "%lld.%lldM", x / 1000000, x % 1000000 / 100000);
    else snprintf(buf, n, "%lldM", x / 1000000);
}

void cli_queue_iso_format(char *buf, size_t n, int64_t ms) {
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void cli_queue_stamp_print(FILE *f, int64_t ms, int round) {
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    localtime_r(&t, &tm);
    char buf[64];
    strftime(buf, sizeof buf, "%a %b %e %H:%M:%S %Y", &tm);
    fprintf(f, "%s%s\n", round ? "\n" : "", buf);
}

void cli_queue_batch_rate(const lisa_queue_batch_info *b, int64_t now_ms, double *rate,
                          double *eta_s) {
    int64_t finished = b->done + b->failed;
    int64_t left = b->total - finished - b->cancelled;
    if (left < 0) left = 0;
    *rate = -1;
    *eta_s = left ? -1 : 0;
    if (b->first_start_ms <= 0 || finished <= 0) return;
    int64_t end = !left && b->last_finish_ms > 0 ? b->last_finish_ms : now_ms;
    double dt = (double)(end - b->first_start_ms) / 1000.0;
    if (dt < 0.001) dt = 0.001;
    *rate = (double)finished / dt;
    *eta_s = ceil((double)left / *rate);
}

void cli_queue_rate_format(char *buf, size_t n, double rate, const char *unknown) {
    if (rate < 0) snprintf(buf, n, "%s", unknown);
    else snprintf(buf, n, rate < 1 ? "%.2f" : "%.1f", rate);
}

int cli_queue_utf8(void) {
    static const char *const k_vars[] = {"LC_ALL", "LC_CTYPE", "LANG"};
    for (size_t i = 0; i < sizeof k_vars / sizeof k_vars[0]; i++) {
        const char *v = getenv(k_vars[i]);
        if (!v || !*v) continue;
        char low[128];
        size_t k = 0;
        for (; v[k] && k + 1 < sizeof low; k++) low[k] = (char)tolower((unsigned char)v[k]);
        low[k] = 0;
        return strstr(low, "utf-8") || strstr(low, "utf8");
    }
    return 0;
}

void cli_queue_bar_print(FILE *f, double frac, int width, int utf8) {
    static const char *const k_eighths[] = {"", "\u258f", "\u258e", "\u258d",
                                            "\u258c", "\u258b", "\u258a", "\u2589"};
    if (!(frac > 0)) frac = 0;
    if (frac > 1) frac = 1;
    double cells = frac * width;
    int full = (int)cells, part = (int)((cells - full) * 8), i = 0;
    for (; i < full; i++) fputs(utf8 ? "\u2588" : "#", f);
    if (i < width && utf8 && part) {
        fputs(k_eighths[part], f);
        i++;
    }
    for (; i < width; i++) fputc(' ', f);
}

void cli_queue_clip(char *buf, size_t n, const char *s, size_t max) {
    if (!n) return;
    size_t k = 0, len = strlen(s);
    for (; s[k] && k + 1 < n && k < max; k++) buf[k] = (unsigned char)s[k] < 0x20 ? ' ' : s[k];
    buf[k] = 0;
    if (len <= k || k <= 3) return;
    k -= 3;
    while (k > 0 && ((unsigned char)buf[k] & 0xc0) == 0x80) k--; /* not inside a UTF-8 character */
    memcpy(buf + k, "...", 4);
}

void cli_queue_table_init(cli_queue_table *t, int cols, const char *const *head) {
    memset(t, 0, sizeof *t);
    t->cols = cols;
    t->head = head;
}

int cli_queue_table_add(cli_queue_table *t, const char *const *cells) {
    if (t->n_rows == t->cap_rows) {
        int cap = t->cap_rows ? 2 * t->cap_rows : 32;
        char **v = realloc(t->cells, sizeof *v * (size_t)cap * (size_t)t->cols);
        if (!v) return -1;
        t->cells = v;
        t->cap_rows = cap;
    }
    char **row = t->cells + (size_t)t->n_rows * (size_t)t->cols;
    for (int c = 0; c < t->cols; c++) {
        const char *s = cells[c] && cells[c][0] ? cells[c] : "-";
        row[c] = strdup(s);
        if (!row[c]) {
            while (c-- > 0) free(row[c]);
            return -1;
        }
        for (char *p = row[c]; *p; p++)
            if ((unsigned char)*p < 0x20) *p = ' ';
    }
    t->n_rows++;
    return 0;
}

void cli_queue_table_print(const cli_queue_table *t, FILE *f, int header) {
    size_t *width = calloc((size_t)t->cols, sizeof *width);
    if (!width) return;
    for (int c = 0; c < t->cols; c++) width[c] = header ? strlen(t->head[c]) : 0;
    for (int i = 0; i < t->n_rows; i++)
        for (int c = 0; c < t->cols; c++) {
            size_t len = strlen(t->cells[(size_t)i * (size_t)t->cols + (size_t)c]);
            if (len > width[c]) width[c] = len;
        }
    for (int i = header ? -1 : 0; i < t->n_rows; i++) {
        for (int c = 0; c < t->cols; c++) {
            const char *s = i < 0 ? t->head[c] : t->cells[(size_t)i * (size_t)t->cols + (size_t)c];
            if (c == t->cols - 1) fprintf(f, "%s\n", s);
            else fprintf(f, "%-*s  ", (int)width[c], s);
        }
    }
    free(width);
}

void cli_queue_table_free(cli_queue_table *t) {
    for (size_t i = 0; i < (size_t)t->n_rows * (size_t)t->cols; i++) free(t->cells[i]);
    free(t->cells);
    memset(t, 0, sizeof *t);
}
