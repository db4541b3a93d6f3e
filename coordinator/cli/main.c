/* main.c: the `lisa` command-line entry point: dispatches to a subcommand.
 * It does no work itself beyond the top-level help. */
#include <stdio.h>
#include <string.h>

#include "commands.h"

typedef struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} cli_command;

static const cli_command k_commands[] = {
    {"segment", cmd_segment, "LISA: answer about an image and return a mask per [SEG]"},
    {"generate", cmd_generate, "run a LLaMA checkpoint on a text prompt (greedy)"},
    {"embed-image", cmd_embed_image, "run SAM's image encoder; print the embedding's shape and checksum"},
    {"tokenize", cmd_tokenize, "encode stdin to token ids, or decode ids to text"},
    {"bench", cmd_bench, "benchmarks: bench llm (tokens/s), vision (ms/image), engine, queue"},
    {"preprocess", cmd_preprocess, "write an image as the CLIP or SAM branch sees it"},
    {"eval", cmd_eval, "ReasonSeg gIoU/cIoU of predicted masks, as LISA computes them"},
    {"cluster", cmd_cluster, "LISA across MPI ranks (run under mpirun); cluster plan: size a job"},
    {"submit", cmd_submit, "queue segmentation jobs: one image or a manifest, as a batch (sbatch)"},
    {"result", cmd_result, "write queue jobs' results as lisa segment does (OUT/<id>/, results.jsonl)"},
    {"status", cmd_status, "queue jobs and batches: state, time, attempts, progress (squeue)"},
    {"wait", cmd_wait, "block until queue jobs or batches are final; exit status says how"},
    {"watch", cmd_watch, "follow queue jobs or batches: a progress bar, or one line per event"},
    {"cancel", cmd_cancel, "cancel queue jobs or whole batches (scancel)"},
    {"queue", cmd_queue, "the queue's depth per priority, running, retry, dead, throughput"},
    {"workers", cmd_workers, "the queue's workers by heartbeat (sinfo)"},
    {"worker", cmd_worker, "serve the Redis job queue with one engine until stopped"},
};
#define N_COMMANDS (sizeof k_commands / sizeof k_commands[0])

static void print_help(FILE *f) {
    fprintf(f,
            "usage: lisa <command> [options]\n"
            "\n"
            "LISA reasoning-segmentation inference engine.\n"
            "\n"
            "commands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-10s %s\n", k_commands[i].name, k_commands[i].summary);
    fprintf(f, "\nRun `lisa <command> --help` for the options of a command.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        print_help(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        print_help(stdout);
        return 0;
    }
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (!strcmp(argv[1], k_commands[i].name)) return k_commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "lisa: unknown command '%s'\n\n", argv[1]);
    print_help(stderr);
    return 2;
}
