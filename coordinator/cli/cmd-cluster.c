/* cmd-cluster.c: `lisa cluster`: dispatches `lisa cluster plan` (sizing,
 * cmd-cluster-plan.c) and everything else to the MPI runtime's
 * cmd_cluster_run.
 *
 * Interim: cmd_cluster_run is referenced weakly so this builds before the
 * runtime's command exists (then only `plan` works); its prototypes belong
 * in commands.h with the cluster row in main.c. */
#include <stdio.h>
#include <string.h>

#include "commands.h"

int cmd_cluster(int argc, char **argv);
int cmd_cluster_plan(int argc, char **argv);
int cmd_cluster_run(int argc, char **argv) __attribute__((weak));

int cmd_cluster(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "plan")) return cmd_cluster_plan(argc - 1, argv + 1);
    if (cmd_cluster_run) return cmd_cluster_run(argc, argv);
    fprintf(stderr, "lisa cluster: this build has only `lisa cluster plan`\n");
    return 2;
}
