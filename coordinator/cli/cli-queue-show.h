/* cli-queue-show.h: what the commands that read and follow the queue
 * (status, wait, watch, cancel, queue, workers) share: telling ids from
 * options, state filters, the server's clock, the ways times and counts
 * are written (squeue's TIME, tqdm's clock, "3s ago", "1.2k"), a batch's
 * rate and ETA, and a bar in Unicode eighths or '#'.
 *
 * Deliberately not here: connecting (cli-queue.h), any one command's
 * layout. */
#ifndef LISA_CLI_QUEUE_SHOW_H
#define LISA_CLI_QUEUE_SHOW_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cli-util.h"
#include "queue.h"
#include "redis-conn.h"

/* cli_opts_parse over the options of argv, with every other word (not an
 * option, not an option's value, or anything after "--") an id: *ids
 * (malloc'd, pointing into argv; free it) holds *n_ids of them. Returns as
 * cli_opts_parse does (1 help printed, -1 usage error printed, 0). */
int cli_queue_args_parse(const char *cmd, int argc, char **argv, const cli_opt *opts, int n_opts,
                         void (*help)(FILE *), char ***ids, int *n_ids);

/* "PD,R" or "queued,running" (codes or names, comma separated) into a mask
 * of 1u << lisa_job_state. 0 ok; -1 after printing a usage error. */
int cli_queue_states_parse(const char *cmd, const char *list, unsigned *mask);

/* A -i / --interval value: a duration of more than zero seconds. -1 after
 * printing a usage error naming the option. */
double cli_queue_interval_parse(const char *cmd, const char *opt, const char *val);

/* The Redis server's clock in ms (TIME: the clock the queue's times use),
 * this machine's when TIME fails. */
int64_t cli_queue_now_ms(lisa_redis *r);
/* Sleeps s seconds (the -i loops). */
void cli_queue_sleep(double s);

/* squeue's TIME: "M:SS", "H:MM:SS", "D-HH:MM:SS". */
void cli_queue_elapsed_format(char *buf, size_t n, int64_t ms);
/* tqdm's clock: "MM:SS", or "H:MM:SS" from an hour (hours 1: always
 * "HH:MM:SS", as the ETA of a batch line); "?" (or "-" with hours) when s
 * is negative (unknown). */
void cli_queue_clock_format(char *buf, size_t n, double s, int hours);
/* "3s ago", "5m ago", "2h ago", "4d ago" for an age in ms. */
void cli_queue_ago_format(char *buf, size_t n, int64_t ms);
/* "999", "1.2k", "12k", "1.2M". */
void cli_queue_count_format(char *buf, size_t n, int64_t v);
/* "2026-12-03T10:00:01Z" (UTC). */
void cli_queue_iso_format(char *buf, size_t n, int64_t ms);
/* The -i header: a blank line after the first round, then the time as
 * squeue -i prints it ("Thu Dec  3 10:00:01 2026"). */
void cli_queue_stamp_print(FILE *f, int64_t ms, int round);

/* Finished jobs (done + failed) per second since the batch's first start
 * (up to its last finish once nothing is left), and the seconds left at
 * that rate (rounded up: 0 only when nothing is left); both -1 when
 * unknown (nothing finished yet). */
void cli_queue_batch_rate(const lisa_queue_batch_info *b, int64_t now_ms, double *rate,
                          double *eta_s);

/* A rate as "21.3" (from 1/s) or "0.25" (below); unknown when rate < 0. */
void cli_queue_rate_format(char *buf, size_t n, double rate, const char *unknown);

/* Copies s into buf with control characters as spaces, at most max
 * characters of it (the last three "..." when it is longer). */
void cli_queue_clip(char *buf, size_t n, const char *s, size_t max);

/* A table printed as kubectl prints one: left-aligned columns two spaces
 * apart, the last one not padded. Cells are copied with control characters
 * as spaces. */
typedef struct cli_queue_table {
    int cols;
    const char *const *head;
    char **cells;              /* n_rows x cols, malloc'd */
    int n_rows, cap_rows;
} cli_queue_table;

void cli_queue_table_init(cli_queue_table *t, int cols, const char *const *head);
/* Adds a row of t->cols cells (NULL or "": "-"). -1 when out of memory. */
int cli_queue_table_add(cli_queue_table *t, const char *const *cells);
void cli_queue_table_print(const cli_queue_table *t, FILE *f, int header);
void cli_queue_table_free(cli_queue_table *t);

/* 1 when LC_ALL / LC_CTYPE / LANG (the first set) names UTF-8. */
int cli_queue_utf8(void);
/* A bar of width cells filled to frac (0..1): Unicode eighths, or '#' and
 * ' ' when utf8 is 0. */
void cli_queue_bar_print(FILE *f, double frac, int width, int utf8);

#endif
