/* transport.h: MPI point-to-point for the cluster's ranks: one tag per
 * message kind, non-blocking sends that complete in the background while a
 * rank computes, a non-blocking poll for the next message, and byte
 * counters for the statistics.
 *
 * A control message is a packed protobuf (proto/cluster.proto) on its kind's
 * tag; a message that carries a tensor (features, the residual stream, a
 * [SEG] hidden state) is followed by that buffer, raw, on LISA_TAG_DATA to
 * the same rank, on a communicator of its own, so polling for control
 * messages never sees a data buffer and a receiver may leave one queued
 * until it has room for it (a stage takes its input just before running).
 * MPI's non-overtaking rule (one sender, one receiver, one communicator)
 * pairs each data buffer with its header: the n-th buffer from a rank
 * belongs to its n-th header that announces one.
 *
 * CUDA-aware MPI (MPIX_Query_cuda_support) is detected at init; when it is
 * present device buffers may be handed to MPI directly, otherwise callers
 * stage through host memory (Debian's Open MPI 4.1 + UCX 1.13 is not
 * CUDA-aware).
 *
 * Deliberately not here: what the messages mean (cluster.c and the
 * role-*.c files), MPI_Init/Finalize (cluster.c). */
#ifndef LISA_TRANSPORT_H
#define LISA_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include <mpi.h>

#include "status.h"

/* NOTE: add new kinds before LISA_TAG_DATA and give them a name in
 * transport.c's table. */
typedef enum {
    LISA_TAG_HELLO = 1,
    LISA_TAG_VISION_PREPARE,
    LISA_TAG_VISION_READY,
    LISA_TAG_FEATURES,
    LISA_TAG_MICRO_BATCH,
    LISA_TAG_TOKENS,
    LISA_TAG_SEG_HIDDEN,
    LISA_TAG_VISION_FINISH,
    LISA_TAG_MASKS,
    LISA_TAG_ERROR,
    LISA_TAG_SHUTDOWN,
    LISA_TAG_STATS,
    LISA_TAG_DATA          /* the raw buffer after a header */
} lisa_cluster_tag;

const char *lisa_cluster_tag_name(int tag);

typedef struct lisa_send {
    MPI_Request req;
    void *buf;             /* freed when the send completes */
} lisa_send;

typedef struct lisa_transport {
    int rank, size;
    int cuda_aware;        /* MPIX_Query_cuda_support() said yes */
    MPI_Comm data;         /* LISA_TAG_DATA buffers; control on MPI_COMM_WORLD */
    lisa_send *pending;    /* sends in flight */
    int n_pending, cap_pending;
    int64_t bytes_sent, messages_sent;
} lisa_transport;

/* After MPI_Init (collective: duplicates the world communicator). */
void lisa_transport_init(lisa_transport *t);
/* The communicator a tag travels on. */
MPI_Comm lisa_transport_comm(const lisa_transport *t, int tag);
/* Waits for every pending send, then frees them. */
void lisa_transport_free(lisa_transport *t);

/* Sends n bytes of buf to dest on tag without blocking; buf (malloc'd) is
 * owned by the transport from here and freed once MPI is done with it,
 * also on failure. */
lisa_status lisa_transport_send(lisa_transport *t, int dest, int tag, void *buf, size_t n);
/* The same for a buffer the caller keeps: it is copied first. */
lisa_status lisa_transport_send_copy(lisa_transport *t, int dest, int tag, const void *buf,
                                     size_t n);
/* Completes what finished of the pending sends (never blocks). */
void lisa_transport_progress(lisa_transport *t);

/* Is a control message waiting? 1 with its source, tag and size, 0 when none. */
int lisa_transport_poll(lisa_transport *t, int *src, int *tag, size_t *n);
/* Receives the message from src on tag into buf (n bytes, as polled, or the
 * data buffer announced by a header just received); blocks until it is
 * there. A size other than n is LISA_ERR_FORMAT naming the tag. */
lisa_status lisa_transport_recv(lisa_transport *t, int src, int tag, void *buf, size_t n);
/* lisa_transport_recv into a malloc'd buffer (*buf, the caller's to free;
 * NULL on failure). */
lisa_status lisa_transport_recv_alloc(lisa_transport *t, int src, int tag, size_t n, uint8_t **buf);

#endif
