/* cmd-wait.c: `lisa wait` (block until named jobs and batches are final,
 * with an exit status that says how they ended, like sbatch --wait) and
 * `lisa watch` (the same, showing progress: a tqdm-style bar on a terminal,
 * one line per event otherwise).
 *
 * Both follow P:events the way queue.h asks: the newest event id is read
 * BEFORE the states, then XREAD from it, so a change between the two reads
 * is still seen. Counters are re-read after every batch of relevant events
 * and every 2 s regardless (the events stream is capped, and a reconnect
 * may skip some), so a lost event delays the end by 2 s, never forever.
 *
 * Deliberately not here: showing a table (cmd-status.c), changing jobs. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli-queue-show.h"
#include "cli-queue.h"
#include "cli-util.h"
#include "commands.h"

#define FOLLOW_BLOCK_MS 2000       /* XREAD BLOCK: well under the 10 s I/O timeout */
#define FOLLOW_REFRESH_MS 2000     /* re-read counters at least this often */
#define FOLLOW_RECONNECT_S 30.0    /* how long a lost Redis is waited for */
#define FOLLOW_EVENTS 512          /* events per XREAD */

/* One named id: a batch's counters, or a job's state as a batch of one. */
typedef struct follow_target {
    const char *id;
    int batch;
    int gone;                  /* was there, then expired */
    lisa_queue_batch_info b;
} follow_target;

typedef struct follow {
    const char *cmd;
    lisa_redis *r;
    lisa_queue *q;
    follow_target *t;
    int n;
    char last[48];             /* the newest event seen */
    lisa_queue_batch_info sum; /* every target together */
    double refreshed_s;        /* monotonic time of the last re-read */
} follow;

static double follow_mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A job's state as counters of a batch of one. */
static void follow_job_counters(const lisa_queue_job_info *j, lisa_queue_batch_info *b) {
    memset(b, 0, sizeof *b);
    b->total = 1;
    switch (j->state) {
    case LISA_JOB_QUEUED: b->queued = 1; break;
    case LISA_JOB_RUNNING: b->running = 1; break;
    case LISA_JOB_RETRY_WAIT: b->retry = 1; break;
    case LISA_JOB_DONE: b->done = 1; break;
    case LISA_JOB_FAILED: b->failed = 1; break;
    case LISA_JOB_CANCELLED: b->cancelled = 1; break;
    case LISA_JOB_CANCEL_REQUESTED: b->cancelling = 1; break;
    case LISA_JOB_UNKNOWN: b->queued = 1; break;
    }
    b->created_ms = j->created_ms;
    b->first_start_ms = j->started_ms;
    b->last_finish_ms = j->finished_ms;
}

static int follow_target_final(const follow_target *t) {
    const lisa_queue_batch_info *b = &t->b;
    return t->gone || (b->total > 0 && b->done + b->failed + b->cancelled >= b->total);
}

/* Reads one target. LISA_ERR_NOTFOUND when it does not exist. */
static lisa_status follow_target_read(follow *f, follow_target *t) {
    if (t->batch) return lisa_queue_batch_get(f->q, t->id, &t->b);
    lisa_queue_job_info j;
    lisa_status st = lisa_queue_job_get(f->q, t->id, &j);
    if (st == LISA_OK) follow_job_counters(&j, &t->b);
    return st;
}

static void follow_sum(follow *f) {
    lisa_queue_batch_info *s = &f->sum;
    memset(s, 0, sizeof *s);
    for (int i = 0; i < f->n; i++) {
        const lisa_queue_batch_info *b = &f->t[i].b;
        s->total += b->total;
        s->queued += b->queued;
        s->running += b->running;
        s->retry += b->retry;
        s->done += b->done;
        s->failed += b->failed;
        s->cancelled += b->cancelled;
        s->cancelling += b->cancelling;
        if (b->first_start_ms > 0 && (!s->first_start_ms || b->first_start_ms < s->first_start_ms))
            s->first_start_ms = b->first_start_ms;
        if (b->last_finish_ms > s->last_finish_ms) s->last_finish_ms = b->last_finish_ms;
    }
}

/* Re-reads every target not yet final. */
static lisa_status follow_refresh(follow *f) {
    for (int i = 0; i < f->n; i++) {
        follow_target *t = &f->t[i];
        if (follow_target_final(t)) continue;
        lisa_status st = follow_target_read(f, t);
        if (st == LISA_ERR_NOTFOUND) t->gone = 1;
        else if (st != LISA_OK) return st;
    }
    follow_sum(f);
    f->refreshed_s = follow_mono_s();
    return LISA_OK;
}

static int follow_done(const follow *f) {
    for (int i = 0; i < f->n; i++)
        if (!follow_target_final(&f->t[i])) return 0;
    return 1;
}

/* wait's exit status for how the targets ended. */
static int follow_exit_code(const follow *f) {
    for (int i = 0; i < f->n; i++)
        if (f->t[i].gone) return CLI_EXIT_NOTFOUND;
    if (f->sum.failed) return CLI_EXIT_FAILED;
    if (f->sum.cancelled) return CLI_EXIT_CANCELLED;
    return CLI_EXIT_OK;
}

/* Resolves the ids (the event id first, then the states). A job whose
 * batch is named too is followed once, as part of the batch. Returns 0, or
 * the exit code after printing why. */
static int follow_open(follow *f, const char *cmd, const cli_queue_opts *qo, char **ids, int n) {
    memset(f, 0, sizeof *f);
    f->cmd = cmd;
    int rc = cli_queue_connect(cmd, qo, &f->r, &f->q);
    if (rc) return rc;
    f->t = calloc((size_t)n, sizeof *f->t);
    if (!f->t) {
        fprintf(stderr, "lisa %s: out of memory\n", cmd);
        return CLI_EXIT_FAILED;
    }
    lisa_status st = lisa_queue_events_last(f->q, f->last, sizeof f->last);
    int unknown = 0;
    for (int i = 0; st == LISA_OK && i < n; i++) {
        follow_target *t = &f->t[f->n];
        t->id = ids[i];
        t->batch = lisa_queue_id_is_batch(ids[i]);
        st = follow_target_read(f, t);
        if (st == LISA_ERR_NOTFOUND) {
            fprintf(stderr, "lisa %s: %s: no such job or batch (or it expired)\n", cmd, ids[i]);
            unknown = 1;
            st = LISA_OK;
            continue;
        }
        int dup = 0;
        for (int k = 0; st == LISA_OK && !t->batch && k < n; k++) {
            size_t len = strlen(ids[k]);
            dup |= lisa_queue_id_is_batch(ids[k]) && !strncmp(ids[i], ids[k], len) &&
                   ids[i][len] == '_';
        }
        if (st == LISA_OK && !dup) f->n++;
    }
    if (st != LISA_OK) {
        fprintf(stderr, "lisa %s: %s\n", cmd, lisa_error_get());
        return cli_queue_exit_code(st);
    }
    if (unknown) return CLI_EXIT_NOTFOUND;
    follow_sum(f);
    f->refreshed_s = follow_mono_s();
    return 0;
}

static void follow_close(follow *f) {
    cli_queue_close(f->r, f->q);
    free(f->t);
}

static int follow_event_relevant(const follow *f, const lisa_queue_event *e) {
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->t[i].id, f->t[i].batch ? e->batch : e->job)) return 1;
    return 0;
}

/* Called for each relevant event. */
typedef void (*follow_event_fn)(void *ctx, const lisa_queue_event *e);

/* Follows until every target is final, the deadline (monotonic seconds,
 * < 0: none) passes, or an error. block_ms bounds each XREAD (the caller's
 * redraw clock); on_tick (may be NULL) runs after each read, and when it is
 * set (a bar is on the line) errors start on a new line. Returns 0 when
 * final, CLI_EXIT_TIMEOUT, or an error's exit code after printing it. */
static int follow_run(follow *f, double deadline, int block_ms, follow_event_fn on_event,
                      void *ctx, void (*on_tick)(void *ctx)) {
    lisa_queue_event ev[FOLLOW_EVENTS];
    for (int draining = 0;;) {
        if (!draining && follow_done(f)) {
            /* the re-read can see the end before its events arrive: they
             * still get their lines */
            if (!on_event) break;
            draining = 1;
        }
        double now = follow_mono_s();
        if (!draining && deadline >= 0 && now >= deadline) return CLI_EXIT_TIMEOUT;
        int block = draining ? 0 : block_ms;
        if (!draining && deadline >= 0 && (deadline - now) * 1000 < block)
            block = (int)((deadline - now) * 1000) + 1;
        lisa_status st = LISA_OK;
        int k = lisa_queue_events_read(f->q, f->last, FOLLOW_EVENTS, block, ev, &st);
        if (k < 0 && st == LISA_ERR_UNAVAILABLE && !lisa_redis_ok(f->r)) {
            if (lisa_redis_reconnect(f->r, FOLLOW_RECONNECT_S, NULL) != LISA_OK) {
                fprintf(stderr, "%slisa %s: lost Redis at %s: %s\n", on_tick ? "\n" : "", f->cmd,
                        lisa_redis_where(f->r), lisa_error_get());
                return CLI_EXIT_UNAVAILABLE;
            }
            k = 0;
            f->refreshed_s = 0;
        } else if (k < 0) {
            fprintf(stderr, "%slisa %s: %s\n", on_tick ? "\n" : "", f->cmd, lisa_error_get());
            return cli_queue_exit_code(st);
        }
        int relevant = 0;
        for (int i = 0; i < k; i++) {
            if (!follow_event_relevant(f, &ev[i])) continue;
            relevant = 1;
            if (on_event) on_event(ctx, &ev[i]);
        }
        if (draining) {
            if (k < FOLLOW_EVENTS) break;
            continue;
        }
        if (relevant || follow_mono_s() - f->refreshed_s >= FOLLOW_REFRESH_MS / 1000.0) {
            st = follow_refresh(f);
            if (st != LISA_OK) {
                fprintf(stderr, "%slisa %s: %s\n", on_tick ? "\n" : "", f->cmd, lisa_error_get());
                return cli_queue_exit_code(st);
            }
        }
        if (on_tick) on_tick(ctx);
    }
    return 0;
}

/* "B12", "B12 B13_4", or "B12 +3" for the ids' label. */
static void follow_label(const follow *f, char *buf, size_t n) {
    if (f->n == 0) snprintf(buf, n, "-");
    else if (f->n == 1) snprintf(buf, n, "%s", f->t[0].id);
    else if (f->n == 2) snprintf(buf, n, "%s %s", f->t[0].id, f->t[1].id);
    else snprintf(buf, n, "%s +%d", f->t[0].id, f->n - 1);
}

/* "B12: 300 jobs final: 298 done, 2 failed, 0 cancelled" (jobs expired
 * meanwhile are named). */
static void follow_summary_print(const follow *f, FILE *out, const char *lead) {
    char label[256];
    follow_label(f, label, sizeof label);
    const lisa_queue_batch_info *s = &f->sum;
    long long final = (long long)(s->done + s->failed + s->cancelled);
    if (final == s->total)
        fprintf(out, "%s%s: %lld jobs final: ", lead, label, (long long)s->total);
    else
        fprintf(out, "%s%s: %lld of %lld jobs final: ", lead, label, final, (long long)s->total);
    fprintf(out, "%lld done, %lld failed, %lld cancelled", (long long)s->done,
            (long long)s->failed, (long long)s->cancelled);
    for (int i = 0; i < f->n; i++)
        if (f->t[i].gone) fprintf(out, "; %s expired", f->t[i].id);
    fputc('\n', out);
}

/* ---- wait ------------------------------------------------------------ */

static void wait_help(FILE *f) {
    fprintf(f,
            "usage: lisa wait JOB|BATCH ... [--timeout DURATION] [--quiet] [--redis URL]\n"
            "                 [--prefix P]\n"
            "\n"
            "Blocks until every named job (B12_3) and every job of every named batch (B12)\n"
            "is final (done, failed or cancelled), following the queue's events, then\n"
            "prints one line on stdout:\n"
            "  B12: 300 jobs final: 298 done, 2 failed, 0 cancelled\n"
            "\n"
            "options:\n"
            "  --timeout DURATION   give up after DURATION (30, 30s, 10m, 2h, 7d; default:\n"
            "                       wait forever) with exit status 5\n"
            "  -q, --quiet          print nothing but errors\n"
            CLI_QUEUE_HELP
            "  -h, --help           show this help\n"
            "\n"
            "Exit status: 0 every job done; 1 a job failed; 2 usage error; 3 an id is\n"
            "unknown (or expired meanwhile); 4 a job was cancelled and none failed;\n"
            "5 --timeout elapsed; 69 Redis unreachable (a lost connection is retried for\n"
            "30 s); 77 refused (password, ACL).\n");
}

int cmd_wait(int argc, char **argv) {
    cli_queue_opts qo = {0};
    const char *timeout_s = NULL;
    int quiet = 0;
    const cli_opt opts[] = {
        {"--timeout", CLI_STRING, &timeout_s}, {"--quiet", CLI_FLAG, &quiet},
        {"-q", CLI_FLAG, &quiet},              CLI_QUEUE_OPTS(&qo),
    };
    char **ids;
    int n_ids;
    int pr = cli_queue_args_parse("wait", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]),
                                  wait_help, &ids, &n_ids);
    if (pr) return pr > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    double timeout = -1;
    if (timeout_s && (timeout = cli_parse_duration(timeout_s)) < 0) {
        fprintf(stderr, "lisa wait: --timeout expects a duration (30, 30s, 10m, 2h, 7d), got '%s'\n",
                timeout_s);
        free(ids);
        return CLI_EXIT_USAGE;
    }
    if (n_ids == 0) {
        fprintf(stderr, "lisa wait: name at least one job or batch (see --help)\n");
        free(ids);
        return CLI_EXIT_USAGE;
    }
    double deadline = timeout >= 0 ? follow_mono_s() + timeout : -1;
    follow f;
    int rc = follow_open(&f, "wait", &qo, ids, n_ids);
    if (!rc) rc = follow_run(&f, deadline, FOLLOW_BLOCK_MS, NULL, NULL, NULL);
    if (rc == CLI_EXIT_TIMEOUT) {
        char lead[128];
        snprintf(lead, sizeof lead, "lisa wait: timed out after %s: ", timeout_s);
        follow_summary_print(&f, stderr, lead);
    } else if (!rc) {
        rc = follow_exit_code(&f);
        if (!quiet) follow_summary_print(&f, stdout, "");
    }
    follow_close(&f);
    free(ids);
    return rc;
}

/* ---- watch ----------------------------------------------------------- */

typedef struct watch_ui {
    follow *f;
    int bar;                   /* drawing the bar on stderr */
    int utf8, color;
    double interval_s;         /* least time between redraws */
    int width, cols;           /* bar cells, for a terminal this wide */
    double drawn_s;            /* when the bar was last drawn (0: never) */
} watch_ui;

/* The bar line, "B12  64%|██████▍   | 192/300 [00:10<00:05, 19.2 jobs/s]
 * ok=190 fail=2", redrawn in place. */
static void watch_bar_draw(watch_ui *u) {
    const lisa_queue_batch_info *s = &u->f->sum;
    int64_t now_ms = cli_queue_now_ms(u->f->r);
    long long n = (long long)(s->done + s->failed + s->cancelled), total = (long long)s->total;
    double frac = total ? (double)n / (double)total : 1.0;
    double rate, eta;
    cli_queue_batch_rate(s, now_ms, &rate, &eta);
    int64_t end_ms = n >= total && s->last_finish_ms > 0 ? s->last_finish_ms : now_ms;
    char label[256], elapsed[32], left[32], rs[32], prefix[300], suffix[200], fail[48],
        cancelled[48] = "";
    follow_label(u->f, label, sizeof label);
    cli_queue_clock_format(elapsed, sizeof elapsed,
                           s->first_start_ms > 0 ? (double)(end_ms - s->first_start_ms) / 1000.0
                                                 : 0.0,
                           0);
    cli_queue_clock_format(left, sizeof left, eta, 0);
    cli_queue_rate_format(rs, sizeof rs, rate, "?");
    if (s->cancelled) snprintf(cancelled, sizeof cancelled, " cancelled=%lld", (long long)s->cancelled);
    snprintf(prefix, sizeof prefix, "%s %3d%%", label, (int)(frac * 100));
    snprintf(suffix, sizeof suffix, " %lld/%lld [%s<%s, %s jobs/s] ok=%lld", n, total, elapsed,
             left, rs, (long long)s->done);
    snprintf(fail, sizeof fail, "fail=%lld", (long long)s->failed);
    struct winsize ws;
    int cols = ioctl(2, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 ? ws.ws_col : 80;
    if (cols != u->cols) {
        /* fixed while the terminal keeps its width, so the bar does not
         * jump as counts grow; room kept for " cancelled=N" and the rate */
        char most[48];
        int reserve = snprintf(most, sizeof most, " cancelled=%lld", total) + 12;
        int width = cols - (int)strlen(prefix) - (int)strlen(suffix) - (int)strlen(fail) - 4 -
                    reserve;
        u->width = width > 50 ? 50 : width < 10 ? 10 : width;
        u->cols = cols;
    }
    int width = u->width;
    fprintf(stderr, "\r%s|", prefix);
    cli_queue_bar_print(stderr, frac, width, u->utf8);
    int red = u->color && s->failed;
    fprintf(stderr, "|%s %s%s%s%s\033[K", suffix, red ? "\033[31m" : "", fail, red ? "\033[0m" : "",
            cancelled);
    fflush(stderr);
    u->drawn_s = follow_mono_s();
}

static void watch_tick(void *ctx) {
    watch_ui *u = ctx;
    if (u->bar && follow_mono_s() - u->drawn_s >= u->interval_s) watch_bar_draw(u);
}

/* "2026-12-03T10:00:01Z B12_3 R worker=host:123 attempt=1" on stdout, or
 * above the bar a failed job's error. */
static void watch_event(void *ctx, const lisa_queue_event *e) {
    watch_ui *u = ctx;
    if (u->bar) {
        if (e->state == LISA_JOB_FAILED) {
            fprintf(stderr, "\r\033[Klisa watch: %s failed: %s\n", e->job, e->error[0] ? e->error : "-");
            u->drawn_s = 0;
        }
        return;
    }
    char ts[40];
    cli_queue_iso_format(ts, sizeof ts, e->ts_ms);
    printf("%s %s %s", ts, e->job, lisa_job_state_code(e->state));
    if (e->state == LISA_JOB_RUNNING) {
        if (e->worker[0]) printf(" worker=%s", e->worker);
        printf(" attempt=%d", e->attempt);
    } else if (e->state == LISA_JOB_RETRY_WAIT) {
        printf(" attempt=%d", e->attempt);
    }
    if (e->error[0]) {
        printf(" error=");
        for (const char *c = e->error; *c; c++) putchar((unsigned char)*c < 0x20 ? ' ' : *c);
    }
    putchar('\n');
    fflush(stdout);
}

/* Ends the bar's line before dying of SIGINT (130) or SIGTERM (143). */
static void watch_on_signal(int sig) {
    static const char nl[] = "\n";
    ssize_t w = write(2, nl, 1);
    (void)w;
    _exit(128 + sig);
}

static void watch_help(FILE *f) {
    fprintf(f,
            "usage: lisa watch JOB|BATCH ... [--interval SECONDS] [--no-progress]\n"
            "                  [--redis URL] [--prefix P]\n"
            "\n"
            "Follows jobs and batches until every job is final. On a terminal (stderr) a\n"
            "live bar, as tqdm draws it:\n"
            "  B12  64%%|██████▍   | 192/300 [00:10<00:05, 19.2 jobs/s] ok=190 fail=2\n"
            "(elapsed since the first job started < time left at the rate so far; a\n"
            "failed job's error is printed above the bar). The bar is drawn in Unicode\n"
            "eighths when LC_ALL, LC_CTYPE or LANG names UTF-8, else in '#'. fail= is red\n"
            "unless NO_COLOR is set. Not on a terminal, or with --no-progress: one line\n"
            "per event on stdout, from the oldest event the queue still keeps (about the\n"
            "last 100000), and the summary of `lisa wait` on stderr at the end:\n"
            "  2026-12-03T10:00:01Z B12_3 R worker=host:123 attempt=1\n"
            "  2026-12-03T10:00:04Z B12_3 CD\n"
            "  2026-12-03T10:00:05Z B12_4 F error=image too large\n"
            "\n"
            "options:\n"
            "  --interval SECONDS   redraw the bar at most this often (default 0.1)\n"
            "  --no-progress        event lines even on a terminal\n"
            CLI_QUEUE_HELP
            "  -h, --help           show this help\n"
            "\n"
            "Exit status as lisa wait: 0 every job done; 1 a job failed; 2 usage error;\n"
            "3 an id is unknown; 4 a job was cancelled and none failed; 69 Redis\n"
            "unreachable; 77 refused (password, ACL); 130 interrupted.\n");
}

int cmd_watch(int argc, char **argv) {
    cli_queue_opts qo = {0};
    const char *interval = NULL;
    int no_progress = 0;
    const cli_opt opts[] = {
        {"--interval", CLI_STRING, &interval},
        {"--no-progress", CLI_FLAG, &no_progress},
        CLI_QUEUE_OPTS(&qo),
    };
    char **ids;
    int n_ids;
    int pr = cli_queue_args_parse("watch", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]),
                                  watch_help, &ids, &n_ids);
    if (pr) return pr > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    watch_ui u = {.interval_s = 0.1};
    if (interval && (u.interval_s = cli_queue_interval_parse("watch", "--interval", interval)) < 0) {
        free(ids);
        return CLI_EXIT_USAGE;
    }
    if (n_ids == 0) {
        fprintf(stderr, "lisa watch: name at least one job or batch (see --help)\n");
        free(ids);
        return CLI_EXIT_USAGE;
    }
    follow f;
    int rc = follow_open(&f, "watch", &qo, ids, n_ids);
    u.f = &f;
    u.bar = !no_progress && isatty(2);
    u.utf8 = cli_queue_utf8();
    const char *no_color = getenv("NO_COLOR");
    u.color = !(no_color && *no_color);
    if (!rc && u.bar) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = watch_on_signal;
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        if (!follow_done(&f)) watch_bar_draw(&u);
    }
    /* event lines start from the oldest event the stream still holds, so a
     * log of the batch is complete even when it ran before watch started */
    if (!rc && !u.bar) snprintf(f.last, sizeof f.last, "0-0");
    /* the bar's clock ticks at least every second */
    int block = u.bar ? 1000 : FOLLOW_BLOCK_MS;
    if (!rc) rc = follow_run(&f, -1, block, watch_event, &u, u.bar ? watch_tick : NULL);
    if (!rc) {
        rc = follow_exit_code(&f);
        if (u.bar) {
            watch_bar_draw(&u);
            fputc('\n', stderr);
        } else {
            follow_summary_print(&f, stderr, "");
        }
    }
    follow_close(&f);
    free(ids);
    return rc;
}
