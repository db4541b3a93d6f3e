/* commands.h: the `lisa` subcommands. Each lives in its own cmd-*.c file and
 * is registered in the table in main.c.
 *
 * Contract: argv[0] is the subcommand name; the function parses its own
 * options, prints results to stdout and errors to stderr, and returns the
 * process exit status (0 ok, 1 runtime error, 2 usage error).
 *
 * Checklist when adding a command: a cmd_<name>() here, its file, a row in
 * main.c's table, a `--help` text naming every option, a test in tests/cli/. */
#ifndef LISA_COMMANDS_H
#define LISA_COMMANDS_H

int cmd_generate(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_bench_engine(int argc, char **argv);  /* `lisa bench engine`, from cmd_bench */
int cmd_preprocess(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_segment(int argc, char **argv);
int cmd_embed_image(int argc, char **argv);
int cmd_cluster(int argc, char **argv);
int cmd_cluster_run(int argc, char **argv);   /* `lisa cluster` under mpirun */
int cmd_cluster_plan(int argc, char **argv);  /* `lisa cluster plan`, from cmd_cluster */
int cmd_status(int argc, char **argv);        /* `lisa status`: queue jobs and batches (squeue) */
int cmd_wait(int argc, char **argv);          /* `lisa wait`: block until jobs are final */
int cmd_watch(int argc, char **argv);         /* `lisa watch`: follow jobs with a progress bar */
int cmd_cancel(int argc, char **argv);        /* `lisa cancel`: scancel for queue jobs */
int cmd_queue(int argc, char **argv);         /* `lisa queue`: depth per priority (rq info) */
int cmd_workers(int argc, char **argv);       /* `lisa workers`: heartbeats (sinfo) */
int cmd_submit(int argc, char **argv);        /* `lisa submit`: queue jobs (sbatch) */
int cmd_result(int argc, char **argv);        /* `lisa result`: write queue jobs' results */
int cmd_worker(int argc, char **argv);        /* `lisa worker`: serve the Redis queue */
int cmd_bench_queue(int argc, char **argv);   /* `lisa bench queue`, from cmd_bench */

#endif
