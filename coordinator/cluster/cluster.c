/* cluster.c: one process of `lisa cluster` (see cluster.h): MPI start-up,
 * the checks every rank makes before loading anything, loading this rank's
 * roles, the handshake, the event loop that dispatches messages to the
 * roles and runs their deferred work, failure handling, statistics.
 *
 * The event loop: poll for a message (MPI_Iprobe), receive and unpack it,
 * hand it to the role its tag belongs to; when none waits, let each role do
 * one unit of work; when nothing happened, sleep a little longer each time
 * (50 us up to 2 ms), so ranks oversubscribed on few cores do not spin.
 *
 * Failures: a rank whose backend fails reports a RankError and stops; the
 * coordinator fails every unfinished request naming that rank and ends the
 * job with MPI_Abort. A rank that dies (kill -9, a lost host) is noticed by
 * mpirun, which sends SIGTERM to the others: the coordinator then names
 * the dead rank (those on its host that no longer exist; otherwise "a
 * rank"), fails every unfinished request with that, and exits non-zero.
 * A rank that stops answering with its connections left open (a host cut
 * off by a link down: no FIN, no RST, so neither MPI nor mpirun notices for
 * many minutes) is noticed by the coordinator alone: no message for
 * stall_timeout_s while requests are in flight fails them all, as a rank
 * failure, and aborts the job.
 * The handshake is bounded by startup_timeout_s and names the ranks that
 * did not report.
 *
 * Deliberately not here: the roles' logic (role-*.c), the configuration
 * (cluster-config.c). */
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "cluster-internal.h"
#include "config-file.h"
#include "image-cache.h"
#include "pb-check.h"

#define CLUSTER_VERSION_STR "lisa-cluster/" "1"

static volatile sig_atomic_t g_terminated;

static void cluster_on_sigterm(int sig) {
    (void)sig;
    g_terminated = 1;
}

double cluster_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char *role_name(int roles) {
    switch (roles) {
    case LISA_CLUSTER_ROLE_COORDINATOR: return "coordinator";
    case LISA_CLUSTER_ROLE_STAGE: return "stage";
    case LISA_CLUSTER_ROLE_VISION: return "vision";
    case LISA_CLUSTER_ROLE_COORDINATOR | LISA_CLUSTER_ROLE_VISION: return "coordinator+vision";
    default: return "?";
    }
}

void cluster_rank_describe(const cluster_ctx *x, int rank, char *buf, size_t n) {
    /* rank may come from another rank's message (a RankError) */
    if (rank < 0 || rank >= x->world || rank >= LISA_CLUSTER_MAX_RANKS) {
        snprintf(buf, n, "rank %d (not in this cluster)", rank);
        return;
    }
    int stage = -1;
    int roles = lisa_cluster_rank_roles(x->cfg, rank, &stage);
    const char *host = rank == x->rank ? x->host : x->peers[rank].host;
    char what[96];
    if (roles & LISA_CLUSTER_ROLE_STAGE)
        snprintf(what, sizeof what, "stage %d, layers %d-%d", stage + 1, x->bounds[stage],
                 x->bounds[stage + 1] - 1);
    else
        snprintf(what, sizeof what, "%s", role_name(roles));
    if (host && *host) snprintf(buf, n, "rank %d (%s, host %s)", rank, what, host);
    else snprintf(buf, n, "rank %d (%s)", rank, what);
}

/* "hostname (10.1.2.3)": the first non-loopback IPv4 address tells network
 * namespaces on one machine apart. */
static void cluster_host_name(char *buf, size_t n) {
    char hn[256] = "?";
    gethostname(hn, sizeof hn - 1);
    hn[sizeof hn - 1] = 0;
    char ip[INET_ADDRSTRLEN] = "";
    struct ifaddrs *ifa = NULL;
    if (getifaddrs(&ifa) == 0) {
        for (struct ifaddrs *i = ifa; i && !*ip; i = i->ifa_next)
            if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET && !(i->ifa_flags & IFF_LOOPBACK))
                inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, ip, sizeof ip);
        freeifaddrs(ifa);
    }
    if (*ip) snprintf(buf, n, "%s (%s)", hn, ip);
    else snprintf(buf, n, "%s", hn);
}

ProtobufCMessage *cluster_msg_unpack(const ProtobufCMessageDescriptor *d, size_t n,
                                     const uint8_t *buf) {
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, n, buf);
    if (m && lisa_pb_field_zero(m)) {
        protobuf_c_message_free_unpacked(m, NULL);
        m = NULL;
    }
    return m;
}

lisa_status cluster_send_msg(cluster_ctx *x, int dest, int tag, const ProtobufCMessage *msg) {
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) return lisa_error_set(LISA_ERR_NOMEM, "cluster: out of memory packing a message");
    protobuf_c_message_pack(msg, buf);
    return lisa_transport_send(&x->tr, dest, tag, buf, n);
}

lisa_status cluster_send_data(cluster_ctx *x, int dest, const void *buf, size_t n) {
    return lisa_transport_send_copy(&x->tr, dest, LISA_TAG_DATA, buf, n);
}

void cluster_report_error(cluster_ctx *x, lisa_status st, const char *msg) {
    if (x->error_reported) return;
    x->error_reported = 1;
    Lisa__Cluster__RankError e = LISA__CLUSTER__RANK_ERROR__INIT;
    e.rank = x->rank;
    e.status = (int32_t)st;
    e.error = (char *)msg;
    if (cluster_send_msg(x, 0, LISA_TAG_ERROR, &e.base) == LISA_OK) lisa_transport_progress(&x->tr);
}

/* --- the checks before loading --- */

/* The device of this rank: the configuration's map, else the index among
 * this node's ranks that compute (coordinator-only ranks take no GPU). */
static int cluster_pick_gpu(cluster_ctx *x) {
    const lisa_cluster_config *c = x->cfg;
    int computes = (x->roles & (LISA_CLUSTER_ROLE_STAGE | LISA_CLUSTER_ROLE_VISION)) != 0;
    MPI_Comm local;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local);
    int lrank = 0, lsize = 1;
    MPI_Comm_rank(local, &lrank);
    MPI_Comm_size(local, &lsize);
    int *flags = calloc((size_t)lsize, sizeof *flags);
    int idx = 0;
    if (flags) {
        MPI_Allgather(&computes, 1, MPI_INT, flags, 1, MPI_INT, local);
        for (int i = 0; i < lrank; i++) idx += flags[i];
    }
    free(flags);
    MPI_Comm_free(&local);
    if (strcmp(c->device, "cuda") || !computes) return -1;
    if (c->n_gpu_map > 0) return x->rank < c->n_gpu_map ? c->gpu_map[x->rank] : -1;
    return idx;
}

static uint64_t cluster_model_fp(const char *dir) {
    char *text = NULL;
    size_t n = 0;
    if (lisa_config_file_read(dir, &text, &n) != LISA_OK) return 0;
    uint64_t h = lisa_image_hash((const uint8_t *)text, n);
    free(text);
    return h;
}

/* Loads what this rank's roles need. */
static lisa_status cluster_load(cluster_ctx *x, const lisa_cluster_jobs *jobs) {
    const lisa_cluster_config *c = x->cfg;
    if (x->roles & (LISA_CLUSTER_ROLE_STAGE | LISA_CLUSTER_ROLE_VISION)) {
        lisa_backend_params bp = x->opt->switches;
        bp.kind = x->gpu >= 0 ? LISA_BACKEND_CUDA : LISA_BACKEND_CPU;
        bp.device = x->gpu >= 0 ? x->gpu : 0;
        bp.threads = c->threads;
        if (!strcmp(c->device, "cuda") && x->gpu < 0)
            return lisa_error_set(LISA_ERR_ARG, "no GPU for this rank in the configuration's "
                                  "\"gpus\" map");
        lisa_status st = lisa_backend_init_params(&x->be, &bp);
        if (st != LISA_OK && x->gpu >= 0) {
            char why[400];
            snprintf(why, sizeof why, "%s", lisa_error_get());
            return lisa_error_set(st, "GPU %d: %s", x->gpu, why);
        }
        LISA_TRY(st);
    }
    if (x->roles & LISA_CLUSTER_ROLE_STAGE) LISA_TRY(stage_init(x));
    if (x->roles & LISA_CLUSTER_ROLE_VISION) LISA_TRY(vision_init(x));
    if (x->roles & LISA_CLUSTER_ROLE_COORDINATOR) LISA_TRY(coord_init(x, jobs));
    return LISA_OK;
}

int cluster_hello_check(const cluster_ctx *x, int src, const Lisa__Cluster__Hello *h,
                        const Lisa__Cluster__Hello *mine, char *why, size_t n) {
    char who[400];
    int stage = -1;
    int roles = lisa_cluster_rank_roles(x->cfg, src, &stage);
    cluster_rank_describe(x, src, who, sizeof who);
    if (strcmp(h->version, mine->version))
        snprintf(why, n, "%s runs %s, rank 0 runs %s", who, h->version, mine->version);
    else if (h->world != mine->world || h->roles != roles)
        snprintf(why, n, "%s has another configuration (it expects %d ranks, role %s)", who,
                 h->world, role_name(h->roles));
    else if (h->status != LISA_OK)
        snprintf(why, n, "%s: %s", who, h->error);
    else if (h->model_fp != mine->model_fp)
        snprintf(why, n, "%s loaded another model (its config.json differs from rank 0's %s)",
                 who, x->cfg->model_dir);
    /* the stage the configuration gives src, never the one the message
     * claims, indexes the bounds */
    else if ((roles & LISA_CLUSTER_ROLE_STAGE) && h->stage != stage)
        snprintf(why, n, "%s says it is stage %d", who, h->stage + 1);
    else if ((roles & LISA_CLUSTER_ROLE_STAGE) &&
             (h->layer_begin != x->bounds[stage] || h->layer_end != x->bounds[stage + 1]))
        snprintf(why, n, "%s holds layers %d-%d", who, h->layer_begin, h->layer_end - 1);
    else
        return 0;
    return 1;
}

/* Rank 0: every rank's Hello within the timeout, each agreeing with this
 * one. Returns 0, or 2 after printing what is wrong. */
static int cluster_handshake(cluster_ctx *x, const Lisa__Cluster__Hello *mine) {
    double t0 = cluster_now(), limit = x->cfg->startup_timeout_s;
    int have = 1, bad = 0;
    char who[400];
    x->peers[0].hello = 1;
    x->peers[0].pid = mine->pid;
    snprintf(x->peers[0].host, sizeof x->peers[0].host, "%s", x->host);
    if (mine->status != LISA_OK) {
        cluster_rank_describe(x, 0, who, sizeof who);
        fprintf(stderr, "lisa cluster: %s: %s\n", who, mine->error);
        bad = 1;
    }
    while (have < x->world && !bad) {
        int src, tag;
        size_t n;
        if (!lisa_transport_poll(&x->tr, &src, &tag, &n)) {
            if (cluster_now() - t0 > limit || g_terminated) break;
            usleep(1000);
            continue;
        }
        uint8_t *buf;
        if (lisa_transport_recv_alloc(&x->tr, src, tag, n, &buf) != LISA_OK) {
            fprintf(stderr, "lisa cluster: handshake: %s\n", lisa_error_get());
            return 2;
        }
        Lisa__Cluster__Hello *h =
            tag == LISA_TAG_HELLO
                ? (Lisa__Cluster__Hello *)cluster_msg_unpack(&lisa__cluster__hello__descriptor, n, buf)
                : NULL;
        free(buf);
        if (!h) {
            fprintf(stderr, "lisa cluster: handshake: rank %d sent a malformed or unexpected %s "
                    "message\n", src, lisa_cluster_tag_name(tag));
            return 2;
        }
        cluster_peer *p = &x->peers[src];
        if (!p->hello) have++;
        p->hello = 1;
        p->pid = h->pid;
        snprintf(p->host, sizeof p->host, "%s", h->host);
        char why[1400];
        if (cluster_hello_check(x, src, h, mine, why, sizeof why)) {
            fprintf(stderr, "lisa cluster: %s\n", why);
            bad = 1;
        }
        lisa__cluster__hello__free_unpacked(h, NULL);
    }
    if (!bad && have < x->world) {
        fprintf(stderr, "lisa cluster: start-up: %s within %.0f s:", g_terminated ? "terminated" :
                "no answer", limit);
        for (int r = 1; r < x->world; r++)
            if (!x->peers[r].hello) {
                cluster_rank_describe(x, r, who, sizeof who);
                fprintf(stderr, " %s", who);
            }
        fprintf(stderr, " did not report\n");
        bad = 1;
    }
    return bad ? 2 : 0;
}

/* --- the event loop --- */

/* Receives and dispatches one polled message. */
static lisa_status cluster_dispatch(cluster_ctx *x, int src, int tag, size_t n) {
    uint8_t *buf;
    lisa_status st = lisa_transport_recv_alloc(&x->tr, src, tag, n, &buf);
    if (st != LISA_OK) return st;
    ProtobufCMessage *msg = NULL;
    const ProtobufCMessageDescriptor *d = NULL;
    int need = 0;
    switch (tag) {
    case LISA_TAG_VISION_PREPARE: d = &lisa__cluster__vision_prepare__descriptor; need = LISA_CLUSTER_ROLE_VISION; break;
    case LISA_TAG_VISION_READY: d = &lisa__cluster__vision_ready__descriptor; need = LISA_CLUSTER_ROLE_COORDINATOR; break;
    case LISA_TAG_FEATURES: d = &lisa__cluster__features__descriptor; need = LISA_CLUSTER_ROLE_STAGE; break;
    case LISA_TAG_MICRO_BATCH: d = &lisa__cluster__micro_batch__descriptor; need = LISA_CLUSTER_ROLE_STAGE; break;
    case LISA_TAG_TOKENS: d = &lisa__cluster__token_result__descriptor; need = LISA_CLUSTER_ROLE_COORDINATOR; break;
    case LISA_TAG_SEG_HIDDEN: d = &lisa__cluster__seg_hidden__descriptor; need = LISA_CLUSTER_ROLE_VISION; break;
    case LISA_TAG_VISION_FINISH: d = &lisa__cluster__vision_finish__descriptor; need = LISA_CLUSTER_ROLE_VISION; break;
    case LISA_TAG_MASKS: d = &lisa__cluster__masks__descriptor; need = LISA_CLUSTER_ROLE_COORDINATOR; break;
    case LISA_TAG_ERROR: d = &lisa__cluster__rank_error__descriptor; need = LISA_CLUSTER_ROLE_COORDINATOR; break;
    case LISA_TAG_SHUTDOWN: d = &lisa__cluster__shutdown__descriptor; break;
    default: break;
    }
    if (d) msg = cluster_msg_unpack(d, n, buf);
    if (!msg || (need && !(x->roles & need))) {
        free(buf);
        if (msg) protobuf_c_message_free_unpacked(msg, NULL);
        return lisa_error_set(LISA_ERR_FORMAT, "cluster: rank %d: a %s %s from rank %d",
                              x->rank, msg ? "misdirected" : "malformed or unexpected",
                              lisa_cluster_tag_name(tag), src);
    }
    switch (tag) {
    case LISA_TAG_VISION_PREPARE: st = vision_on_prepare(x, (Lisa__Cluster__VisionPrepare *)msg); break;
    case LISA_TAG_VISION_READY: st = coord_on_vision_ready(x, (Lisa__Cluster__VisionReady *)msg); break;
    case LISA_TAG_FEATURES: st = stage_on_features(x, src, (Lisa__Cluster__Features *)msg); break;
    case LISA_TAG_MICRO_BATCH:
        /* the stage keeps both: the packed bytes travel on to the next stage */
        st = stage_on_micro_batch(x, src, (Lisa__Cluster__MicroBatch *)msg, buf, n);
        msg = NULL;
        buf = NULL;
        break;
    case LISA_TAG_TOKENS: st = coord_on_tokens(x, (Lisa__Cluster__TokenResult *)msg); break;
    case LISA_TAG_SEG_HIDDEN: st = vision_on_seg_hidden(x, src, (Lisa__Cluster__SegHidden *)msg); break;
    case LISA_TAG_VISION_FINISH: st = vision_on_finish(x, (Lisa__Cluster__VisionFinish *)msg); break;
    case LISA_TAG_MASKS: st = coord_on_masks(x, (Lisa__Cluster__Masks *)msg); break;
    case LISA_TAG_ERROR: {
        const Lisa__Cluster__RankError *e = (const Lisa__Cluster__RankError *)msg;
        char who[400];
        cluster_rank_describe(x, e->rank, who, sizeof who);
        st = lisa_error_set(e->status ? (lisa_status)e->status : LISA_ERR_BACKEND, "%s: %s", who,
                            e->error);
        break;
    }
    case LISA_TAG_SHUTDOWN: x->stop = 1; break;
    default: break;
    }
    if (msg) protobuf_c_message_free_unpacked(msg, NULL);
    free(buf);
    return st;
}

/* One pass: every waiting message, then each role's deferred work. Returns
 * 1 when anything happened. */
static int cluster_step(cluster_ctx *x, lisa_status *st) {
    int did = 0, src, tag;
    size_t n;
    *st = LISA_OK;
    while (*st == LISA_OK && lisa_transport_poll(&x->tr, &src, &tag, &n)) {
        *st = cluster_dispatch(x, src, tag, n);
        x->heard_at = cluster_now();
        did = 1;
        if (x->stop) return did;
    }
    if (*st == LISA_OK && x->coord) did |= coord_work(x, st);
    if (*st == LISA_OK && x->stg) did |= stage_work(x, st);
    /* eager SAM only when no message waits: it may take a while */
    if (*st == LISA_OK && x->vis && !did && vision_work(x, st)) {
        did = 1;
        x->heard_at = cluster_now();  /* rank 0's own vision work is progress too */
    }
    lisa_transport_progress(&x->tr);
    return did;
}

/* The coordinator after SIGTERM from mpirun (a rank died): names it. */
static void cluster_dead_ranks(cluster_ctx *x, char *msg, size_t n) {
    size_t off = 0;
    int found = 0;
    off += (size_t)snprintf(msg, n, "the job was terminated: ");
    for (int r = 1; r < x->world && off < n; r++) {
        cluster_peer *p = &x->peers[r];
        /* ranks on this host share its PID namespace, netns "hosts" too */
        if (!p->hello || strcmp(p->host, x->host) || p->pid <= 0) continue;
        if (kill((pid_t)p->pid, 0) == 0) continue;
        char who[400];
        cluster_rank_describe(x, r, who, sizeof who);
        off += (size_t)snprintf(msg + off, n - off, "%s%s (pid %d) died", found ? ", " : "", who, p->pid);
        found = 1;
    }
    if (!found && off < n)
        snprintf(msg + off, n - off, "a rank died or mpirun stopped the job (see mpirun's message)");
}

static void cluster_stats_msg(const cluster_ctx *x, Lisa__Cluster__Stats *s) {
    lisa__cluster__stats__init(s);
    s->rank = x->rank;
    s->roles = x->roles;
    s->stage = x->stage;
    s->busy_s = x->stats.busy_s;
    s->active_s = x->stats.last_out > x->stats.first_in ? x->stats.last_out - x->stats.first_in : 0;
    s->micro_batches = x->stats.micro_batches;
    s->tokens = x->stats.tokens;
    s->min_tokens = x->stats.min_tokens;
    s->max_tokens = x->stats.max_tokens;
    s->bytes_sent = x->tr.bytes_sent;
    s->messages_sent = x->tr.messages_sent;
    s->clip_images = x->stats.clip_images;
    s->sam_images = x->stats.sam_images;
    s->masks = x->stats.masks;
    s->wait_s = x->stats.wait_s;
}

/* Rank 0: asks every rank to stop and collects their statistics. */
static void cluster_shutdown(cluster_ctx *x, Lisa__Cluster__Stats **all) {
    Lisa__Cluster__Shutdown sd = LISA__CLUSTER__SHUTDOWN__INIT;
    for (int r = 1; r < x->world; r++) cluster_send_msg(x, r, LISA_TAG_SHUTDOWN, &sd.base);
    int have = 1;
    double t0 = cluster_now();
    while (have < x->world && cluster_now() - t0 < 30 && !g_terminated) {
        int src, tag;
        size_t n;
        lisa_transport_progress(&x->tr);
        if (!lisa_transport_poll(&x->tr, &src, &tag, &n)) {
            usleep(1000);
            continue;
        }
        uint8_t *buf;
        if (lisa_transport_recv_alloc(&x->tr, src, tag, n, &buf) != LISA_OK) break;
        if (tag == LISA_TAG_STATS && !all[src]) {
            all[src] = (Lisa__Cluster__Stats *)cluster_msg_unpack(&lisa__cluster__stats__descriptor,
                                                                  n, buf);
            have += all[src] != NULL;
        }
        free(buf);
    }
}

static void cluster_stats_print(const cluster_ctx *x, Lisa__Cluster__Stats **all, double wall,
                                int64_t gen_tokens, FILE *f, int json) {
    if (json) fprintf(f, "{\"wall_s\": %.6f, \"ranks\": [", wall);
    else
        fprintf(f, "\nrank  role                  layers  busy_s  util   bubble  micro-batches  "
                "tokens/mb (min-max)  tokens/s   MB sent\n");
    for (int r = 0; r < x->world; r++) {
        const Lisa__Cluster__Stats *s = all[r];
        if (!s) continue;
        char layers[32] = "-";
        if (s->stage >= 0)
            snprintf(layers, sizeof layers, "%d-%d", x->bounds[s->stage], x->bounds[s->stage + 1] - 1);
        char role[32];
        if (s->stage >= 0) snprintf(role, sizeof role, "stage %d", s->stage + 1);
        else snprintf(role, sizeof role, "%s", role_name(s->roles));
        double util = wall > 0 ? s->busy_s / wall : 0;
        double active = s->active_s > 0 ? s->active_s : wall;
        double bubble = s->stage >= 0 && active > 0 ? 1.0 - s->busy_s / active : 0;
        double mean = s->micro_batches ? (double)s->tokens / (double)s->micro_batches : 0;
        double tps = s->stage >= 0 && wall > 0 ? (double)s->tokens / wall : 0;
        if (json) {
            const char *host = r == 0 ? x->host : x->peers[r].host;
            fprintf(f, "%s{\"rank\": %d, \"host\": \"%s\", \"role\": \"%s\", \"stage\": %d, \"layers\": \"%s\", "
                    "\"busy_s\": %.6f, \"active_s\": %.6f, \"utilization\": %.4f, \"bubble\": %.4f, "
                    "\"micro_batches\": %lld, \"tokens\": %lld, \"mb_tokens_mean\": %.2f, "
                    "\"mb_tokens_min\": %d, \"mb_tokens_max\": %d, \"tokens_per_s\": %.2f, "
                    "\"bytes_sent\": %lld, \"messages_sent\": %lld, \"wait_s\": %.6f, "
                    "\"clip_images\": %lld, \"sam_images\": %lld, \"masks\": %lld}",
                    r ? ", " : "", s->rank, host, role, s->stage >= 0 ? s->stage + 1 : -1, layers, s->busy_s, s->active_s, util,
                    bubble, (long long)s->micro_batches, (long long)s->tokens, mean, s->min_tokens,
                    s->max_tokens, tps, (long long)s->bytes_sent, (long long)s->messages_sent,
                    s->wait_s, (long long)s->clip_images, (long long)s->sam_images,
                    (long long)s->masks);
        } else {
            fprintf(f, "%-5d %-21s %-7s %6.2f  %4.0f%%  %5.0f%%  %13lld  %6.1f (%d-%d)%*s %9.1f  %8.2f\n",
                    s->rank, role, layers, s->busy_s, 100 * util, 100 * bubble,
                    (long long)s->micro_batches, mean, s->min_tokens, s->max_tokens, 6, "", tps,
                    (double)s->bytes_sent / 1e6);
        }
    }
    if (json)
        fprintf(f, "], \"generated_tokens\": %lld, \"generated_tokens_per_s\": %.2f, "
                "\"mpi_cuda_aware\": %s}\n", (long long)gen_tokens,
                wall > 0 ? (double)gen_tokens / wall : 0, x->tr.cuda_aware ? "true" : "false");
    else
        fprintf(f, "wall %.2f s; util = busy / wall; bubble = idle share of a stage's active span; "
                "MPI %s\n", wall, x->tr.cuda_aware ? "CUDA-aware: device buffers passed to MPI"
                                                 : "not CUDA-aware: activations staged through host memory");
}

int lisa_cluster_main(int *argc, char ***argv, const lisa_cluster_config *cfg,
                      const lisa_cluster_jobs *jobs, const lisa_cluster_options *opt) {
    int provided = 0;
    MPI_Init_thread(argc, argv, MPI_THREAD_SINGLE, &provided);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    cluster_ctx *x = calloc(1, sizeof *x);
    if (!x) {
        fprintf(stderr, "lisa cluster: out of memory\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
        return 1;
    }
    x->cfg = cfg;
    x->opt = opt;
    lisa_transport_init(&x->tr);
    x->rank = x->tr.rank;
    x->world = x->tr.size;
    cluster_host_name(x->host, sizeof x->host);
    int want = lisa_cluster_world_size(cfg);
    if (x->world != want) {
        if (x->rank == 0) {
            fprintf(stderr, "lisa cluster: the configuration needs %d ranks (rank 0 coordinator%s, "
                    "ranks 1-%d the %d LLM stages%s), mpirun started %d\n", want,
                    cfg->vision == LISA_CLUSTER_VISION_COORDINATOR ? " and vision" : "",
                    cfg->stages, cfg->stages,
                    cfg->vision == LISA_CLUSTER_VISION_COORDINATOR ? "" : ", the last one vision",
                    x->world);
        }
        free(x);
        MPI_Finalize();
        return 2;
    }
    x->roles = lisa_cluster_rank_roles(cfg, x->rank, &x->stage);
    if (!(x->roles & LISA_CLUSTER_ROLE_STAGE)) x->stage = -1;
    lisa_status st = lisa_llama_config_load(&x->llm_cfg, cfg->model_dir);
    if (st == LISA_OK) st = lisa_cluster_split_resolve(cfg, &x->llm_cfg, x->bounds);
    if (st != LISA_OK) {
        if (x->rank == 0) fprintf(stderr, "lisa cluster: %s\n", lisa_error_get());
        free(x);
        MPI_Finalize();
        return 2;
    }
    x->max_ctx = cfg->max_ctx < x->llm_cfg.max_position_embeddings ? cfg->max_ctx
                                                                   : x->llm_cfg.max_position_embeddings;
    x->dtype = LISA_DTYPE_F32;
    if (!strcmp(cfg->dtype, "bf16")) x->dtype = LISA_DTYPE_BF16;
    else if (!strcmp(cfg->dtype, "fp16") || !strcmp(cfg->dtype, "f16")) x->dtype = LISA_DTYPE_F16;
    else if (!*cfg->dtype && !strcmp(cfg->device, "cuda")) x->dtype = LISA_DTYPE_BF16;
    x->quant = lisa_cluster_config_quant(cfg);
    x->gpu = cluster_pick_gpu(x);
    x->model_fp = cluster_model_fp(cfg->model_dir);
    if (x->rank == 0) {
        signal(SIGTERM, cluster_on_sigterm);
        if (jobs->begin && jobs->begin(jobs->user)) {
            MPI_Abort(MPI_COMM_WORLD, 2);
            return 2;
        }
    }

    /* load, then say hello */
    st = cluster_load(x, jobs);
    Lisa__Cluster__Hello h = LISA__CLUSTER__HELLO__INIT;
    h.rank = x->rank;
    h.roles = x->roles;
    h.stage = x->stage;
    h.host = x->host;
    h.pid = (int32_t)getpid();
    h.version = CLUSTER_VERSION_STR;
    h.model_fp = x->model_fp;
    h.layer_begin = x->stage >= 0 ? x->bounds[x->stage] : 0;
    h.layer_end = x->stage >= 0 ? x->bounds[x->stage + 1] : 0;
    h.status = (int32_t)st;
    char err[512] = "";
    if (st != LISA_OK) snprintf(err, sizeof err, "%s", lisa_error_get());
    h.error = err;
    h.gpu = x->gpu;
    h.world = want;
    int code = 0;
    if (x->rank == 0) {
        code = cluster_handshake(x, &h);
        if (code) {
            fflush(stderr);
            MPI_Abort(MPI_COMM_WORLD, code);
            return code;
        }
    } else {
        cluster_send_msg(x, 0, LISA_TAG_HELLO, &h.base);
        if (st != LISA_OK) {
            /* rank 0 names us and aborts the job; wait for that */
            for (;;) {
                lisa_transport_progress(&x->tr);
                usleep(10000);
            }
        }
    }

    double t_start = cluster_now();
    long sleep_us = 50;
    int64_t gen_tokens = 0;
    x->heard_at = cluster_now();
    while (!(x->rank == 0 ? coord_done(x) : x->stop)) {
        if (x->rank == 0 && !coord_in_flight(x)) x->heard_at = cluster_now();
        if (x->rank == 0 && cfg->stall_timeout_s > 0 &&
            cluster_now() - x->heard_at > cfg->stall_timeout_s) {
            char msg[1024];
            snprintf(msg, sizeof msg, "no rank answered for %.0f s with %d requests in flight "
                     "(stall_timeout_s): a host or its link lost?", cfg->stall_timeout_s,
                     coord_in_flight(x));
            fprintf(stderr, "lisa cluster: %s\n", msg);
            coord_fail_all(x, msg);
            fflush(NULL);
            /* MPI_Abort waits on the daemons, one of which may be out of
             * reach: the alarm bounds it */
            alarm(10);
            MPI_Abort(MPI_COMM_WORLD, 1);
            _exit(1);
        }
        if (x->rank == 0 && g_terminated) {
            char msg[1024];
            cluster_dead_ranks(x, msg, sizeof msg);
            fprintf(stderr, "lisa cluster: %s\n", msg);
            coord_fail_all(x, msg);
            fflush(NULL);
            _exit(1);
        }
        int did = cluster_step(x, &st);
        if (st != LISA_OK) {
            char msg[1024];
            if (x->rank == 0) {
                snprintf(msg, sizeof msg, "%s", lisa_error_get());
                if (strncmp(msg, "rank ", 5)) {
                    char who[400];
                    cluster_rank_describe(x, 0, who, sizeof who);
                    snprintf(msg, sizeof msg, "%s: %s", who, lisa_error_get());
                }
                fprintf(stderr, "lisa cluster: %s\n", msg);
                coord_fail_all(x, msg);
                fflush(NULL);
                MPI_Abort(MPI_COMM_WORLD, 1);
                return 1;
            }
            snprintf(msg, sizeof msg, "%s", lisa_error_get());
            cluster_report_error(x, st, msg);
            for (;;) {  /* rank 0 ends the job */
                lisa_transport_progress(&x->tr);
                usleep(10000);
            }
        }
        if (did) {
            sleep_us = 50;
        } else {
            usleep((useconds_t)sleep_us);
            if (sleep_us < 2000) sleep_us *= 2;
        }
    }
    double wall = cluster_now() - t_start;
    if (x->rank == 0) {
        Lisa__Cluster__Stats **all = calloc((size_t)x->world, sizeof *all);
        Lisa__Cluster__Stats mine;
        cluster_stats_msg(x, &mine);
        if (all) {
            all[0] = &mine;
            cluster_shutdown(x, all);
            int done = 0, failed = 0;
            coord_counts(x, &done, &failed, &gen_tokens);
            if (opt->print_stats) cluster_stats_print(x, all, wall, gen_tokens, stderr, 0);
            if (opt->stats_path) {
                FILE *f = fopen(opt->stats_path, "w");
                if (f) {
                    cluster_stats_print(x, all, wall, gen_tokens, f, 1);
                    fclose(f);
                } else {
                    fprintf(stderr, "lisa cluster: cannot write %s\n", opt->stats_path);
                }
            }
            code = failed ? 1 : 0;
            for (int r = 1; r < x->world; r++)
                if (all[r]) lisa__cluster__stats__free_unpacked(all[r], NULL);
            free(all);
        }
    } else {
        Lisa__Cluster__Stats mine;
        cluster_stats_msg(x, &mine);
        cluster_send_msg(x, 0, LISA_TAG_STATS, &mine.base);
    }
    lisa_transport_free(&x->tr);
    if (x->coord) coord_free(x);
    if (x->stg) stage_free(x);
    if (x->vis) vision_free(x);
    if (x->be) lisa_backend_free(x->be);
    free(x);
    MPI_Finalize();
    return code;
}
