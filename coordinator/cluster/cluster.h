/* cluster.h: `lisa cluster`: LISA over MPI ranks. Rank 0 coordinates
 * (requests in, tokenization, micro-batch scheduling, results out), ranks
 * 1..P each hold a contiguous range of the LLM's layers with its own KV
 * cache (a pipeline), and one rank holds the vision parts (CLIP + projector
 * at admission, SAM's encoder while the LLM works, text_hidden_fcs and the
 * mask decoder at the end). cluster-config.h says which rank plays which
 * role; docs/cluster.md has a request's path through the ranks.
 *
 * Results equal one process's (lisa_engine) bit for bit on the CPU: the
 * same prompt rows, splices, stop rules and decoders, and batch-invariant
 * kernels, so which requests share a micro-batch does not matter.
 *
 * Deliberately not here: where requests come from and where results go
 * (the caller's lisa_cluster_jobs: a manifest for the CLI, the Redis queue
 * for the worker), mpirun. */
#ifndef LISA_CLUSTER_H
#define LISA_CLUSTER_H

#include "backend.h"
#include "cluster-config.h"
#include "engine.h"
#include "image.h"

/* Bumped whenever a message in proto/cluster.proto changes meaning; ranks
 * of different protocol versions refuse each other at the handshake. */
#define LISA_CLUSTER_PROTOCOL 1

/* The coordinator's request source and result sink (called on rank 0 only,
 * from its event loop, never concurrently). */
typedef struct lisa_cluster_jobs {
    /* Once, before the handshake: open inputs and outputs. Non-zero stops
     * the job (after the callee printed why). */
    int (*begin)(void *user);
    /* The next request: 1 with *rq filled (its pointers valid until done()
     * for it) and *tag the callee's token for it; 0 when there are no more
     * (the coordinator never asks again); -1 when none is ready now (a
     * queue): the coordinator asks again on a later pass of its event loop,
     * so next() should not wait long. */
    int (*next)(void *user, lisa_request *rq, void **tag);
    /* A request finished, done or failed: r is valid during the call. */
    void (*done)(void *user, void *tag, const lisa_response *r);
    /* Optional: the job is ending on a rank failure (why); every request
     * left follows through done() at once, so report them briefly: mpirun
     * kills the coordinator a second after the others. next() is then
     * asked until it returns something other than 1: it should return what
     * it already holds, then 0. */
    void (*failing)(void *user, const char *why);
    /* Optional: called on every pass of the coordinator's event loop (cheap
     * when nothing is due): a queue renews its leases, sends heartbeats and
     * stores results here. There is no way to stop a request once it is in
     * the cluster: a queue job cancelled (or whose lease was lost) meanwhile
     * runs to its end and the queue's fencing refuses its result. */
    void (*tick)(void *user);
    void *user;
} lisa_cluster_jobs;

typedef struct lisa_cluster_options {
    int keep_images;              /* responses carry the decoded image (overlays) */
    const char *stats_path;       /* statistics as JSON (rank 0 writes it), or NULL */
    int print_stats;              /* the statistics table on stderr at the end */
    int window;                   /* requests in the cluster at once (0: 2 x slots) */
    lisa_image_limits limits;     /* hostile-image limits (zeros: defaults) */
    lisa_backend_params switches; /* backend switches; kind, device, threads come
                                     from the configuration */
} lisa_cluster_options;

/* Runs this process's part of the cluster: MPI_Init, the world-size and
 * configuration checks, loading this rank's parts, the handshake, the
 * event loop until every request is done, statistics, MPI_Finalize.
 * Every rank calls it with the same configuration. Returns the process exit
 * status: 0 every request done, 1 a request failed or a rank failed (every
 * request is still reported, failed with the reason), 2 a configuration
 * or start-up error (named with the rank and host). */
int lisa_cluster_main(int *argc, char ***argv, const lisa_cluster_config *c,
                      const lisa_cluster_jobs *jobs, const lisa_cluster_options *o);

#endif
