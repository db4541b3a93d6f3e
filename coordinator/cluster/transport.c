/* transport.c: non-blocking MPI sends with owned buffers, polling and
 * receives (see transport.h). */
#include "transport.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#if defined(OPEN_MPI) && OPEN_MPI
#include <mpi-ext.h>
#endif

static const char *const k_tag_names[] = {
    "?", "hello", "vision-prepare", "vision-ready", "features", "micro-batch", "tokens",
    "seg-hidden", "vision-finish", "masks", "error", "shutdown", "stats", "data"};

const char *lisa_cluster_tag_name(int tag) {
    if (tag < 0 || tag > LISA_TAG_DATA) return "?";
    return k_tag_names[tag];
}

void lisa_transport_init(lisa_transport *t) {
    memset(t, 0, sizeof *t);
    MPI_Comm_rank(MPI_COMM_WORLD, &t->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &t->size);
    MPI_Comm_dup(MPI_COMM_WORLD, &t->data);
    MPI_Comm_set_errhandler(t->data, MPI_ERRORS_RETURN);
#if defined(MPIX_CUDA_AWARE_SUPPORT) && MPIX_CUDA_AWARE_SUPPORT
    t->cuda_aware = MPIX_Query_cuda_support() == 1;
#endif
}

MPI_Comm lisa_transport_comm(const lisa_transport *t, int tag) {
    return tag == LISA_TAG_DATA ? t->data : MPI_COMM_WORLD;
}

void lisa_transport_progress(lisa_transport *t) {
    int i = 0;
    while (i < t->n_pending) {
        int done = 0;
        MPI_Test(&t->pending[i].req, &done, MPI_STATUS_IGNORE);
        if (!done) {
            i++;
            continue;
        }
        free(t->pending[i].buf);
        t->pending[i] = t->pending[--t->n_pending];
    }
}

void lisa_transport_free(lisa_transport *t) {
    for (int i = 0; i < t->n_pending; i++) {
        MPI_Wait(&t->pending[i].req, MPI_STATUS_IGNORE);
        free(t->pending[i].buf);
    }
    free(t->pending);
    t->pending = NULL;
    t->n_pending = t->cap_pending = 0;
    if (t->data != MPI_COMM_NULL) MPI_Comm_free(&t->data);
}

lisa_status lisa_transport_send(lisa_transport *t, int dest, int tag, void *buf, size_t n) {
    if (n > INT_MAX) {
        free(buf);
        return lisa_error_set(LISA_ERR_ARG, "cluster: a %s message of %zu bytes is over MPI's limit",
                              lisa_cluster_tag_name(tag), n);
    }
    if (t->n_pending == t->cap_pending) {
        int cap = t->cap_pending ? 2 * t->cap_pending : 32;
        lisa_send *p = realloc(t->pending, (size_t)cap * sizeof *p);
        if (!p) {
            free(buf);
            return lisa_error_set(LISA_ERR_NOMEM, "cluster: out of memory queueing a send");
        }
        t->pending = p;
        t->cap_pending = cap;
    }
    lisa_send *s = &t->pending[t->n_pending];
    s->buf = buf;
    if (MPI_Isend(buf, (int)n, MPI_BYTE, dest, tag, lisa_transport_comm(t, tag), &s->req) != MPI_SUCCESS) {
        free(buf);
        return lisa_error_set(LISA_ERR_IO, "cluster: MPI_Isend of a %s message to rank %d failed",
                              lisa_cluster_tag_name(tag), dest);
    }
    t->n_pending++;
    t->bytes_sent += (int64_t)n;
    t->messages_sent++;
    return LISA_OK;
}

lisa_status lisa_transport_send_copy(lisa_transport *t, int dest, int tag, const void *buf,
                                     size_t n) {
    void *copy = malloc(n ? n : 1);
    if (!copy) return lisa_error_set(LISA_ERR_NOMEM, "cluster: out of memory for a %zu-byte send", n);
    if (n) memcpy(copy, buf, n);
    return lisa_transport_send(t, dest, tag, copy, n);
}

int lisa_transport_poll(lisa_transport *t, int *src, int *tag, size_t *n) {
    (void)t;
    int flag = 0, count = 0;
    MPI_Status s;
    MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &s);
    if (!flag) return 0;
    MPI_Get_count(&s, MPI_BYTE, &count);
    *src = s.MPI_SOURCE;
    *tag = s.MPI_TAG;
    *n = (size_t)count;
    return 1;
}

lisa_status lisa_transport_recv(lisa_transport *t, int src, int tag, void *buf, size_t n) {
    MPI_Status s;
    int count = 0;
    if (MPI_Recv(buf, (int)n, MPI_BYTE, src, tag, lisa_transport_comm(t, tag), &s) != MPI_SUCCESS)
        return lisa_error_set(LISA_ERR_IO, "cluster: receiving a %s message from rank %d failed",
                              lisa_cluster_tag_name(tag), src);
    MPI_Get_count(&s, MPI_BYTE, &count);
    if ((size_t)count != n)
        return lisa_error_set(LISA_ERR_FORMAT, "cluster: a %s message from rank %d has %d bytes, "
                              "expected %zu", lisa_cluster_tag_name(tag), src, count, n);
    return LISA_OK;
}

lisa_status lisa_transport_recv_alloc(lisa_transport *t, int src, int tag, size_t n, uint8_t **buf) {
    *buf = malloc(n ? n : 1);
    if (!*buf)
        return lisa_error_set(LISA_ERR_NOMEM, "cluster: out of memory receiving a %zu-byte %s "
                              "message", n, lisa_cluster_tag_name(tag));
    lisa_status st = lisa_transport_recv(t, src, tag, *buf, n);
    if (st != LISA_OK) {
        free(*buf);
        *buf = NULL;
    }
    return st;
}
