/* fuzz-cluster.c: libFuzzer harness for the cluster's control messages
 * (proto/cluster.proto), what a rank decodes from another rank: the first
 * input byte picks the message kind (its MPI tag, transport.h), the rest is
 * the packed message, unpacked as cluster.c does (cluster_msg_unpack) with
 * the descriptor its dispatch uses for that tag. What rank 0 then does with a Hello
 * (cluster_hello_check) and a RankError (cluster_rank_describe of the rank
 * it names) runs on a configured 2-stage cluster context.
 *
 * Invariants checked: a message the cluster accepts (unknown fields
 * included) packs, unpacks and packs again to the same bytes; a Hello check that refuses gives a reason naming the
 * rank; describing any rank a message names stays inside the context
 * (ASan) and names that rank.
 *
 * Deliberately not here: the role handlers (they need loaded models and a
 * live MPI world; their index checks are covered by cluster tests). */
#include <stdio.h>
#include <string.h>

#include "cluster-internal.h"
#include "fuzz-util.h"

static const ProtobufCMessageDescriptor *fuzz_descriptor(int tag) {
    switch (tag) {
    case LISA_TAG_HELLO: return &lisa__cluster__hello__descriptor;
    case LISA_TAG_VISION_PREPARE: return &lisa__cluster__vision_prepare__descriptor;
    case LISA_TAG_VISION_READY: return &lisa__cluster__vision_ready__descriptor;
    case LISA_TAG_FEATURES: return &lisa__cluster__features__descriptor;
    case LISA_TAG_MICRO_BATCH: return &lisa__cluster__micro_batch__descriptor;
    case LISA_TAG_TOKENS: return &lisa__cluster__token_result__descriptor;
    case LISA_TAG_SEG_HIDDEN: return &lisa__cluster__seg_hidden__descriptor;
    case LISA_TAG_VISION_FINISH: return &lisa__cluster__vision_finish__descriptor;
    case LISA_TAG_MASKS: return &lisa__cluster__masks__descriptor;
    case LISA_TAG_ERROR: return &lisa__cluster__rank_error__descriptor;
    case LISA_TAG_SHUTDOWN: return &lisa__cluster__shutdown__descriptor;
    case LISA_TAG_STATS: return &lisa__cluster__stats__descriptor;
    default: return NULL;
    }
}

/* Rank 0 of a 2-stage cluster with vision on its own rank (4 ranks). */
static void fuzz_context(cluster_ctx *x, lisa_cluster_config *cfg) {
    lisa_cluster_config_defaults(cfg);
    cfg->stages = 2;
    snprintf(cfg->model_dir, sizeof cfg->model_dir, "%s", "model");
    memset(x, 0, sizeof *x);
    x->cfg = cfg;
    x->rank = 0;
    x->world = lisa_cluster_world_size(cfg);
    x->roles = lisa_cluster_rank_roles(cfg, 0, &x->stage);
    x->bounds[0] = 0;
    x->bounds[1] = 2;
    x->bounds[2] = 4;
    snprintf(x->host, sizeof x->host, "%s", "rank0-host");
    for (int r = 1; r < x->world; r++) snprintf(x->peers[r].host, sizeof x->peers[r].host, "h%d", r);
}

static uint8_t *fuzz_pack(const ProtobufCMessage *m, size_t *n) {
    *n = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(*n ? *n : 1);
    FUZZ_CHECK(b != NULL, "out of memory");
    FUZZ_CHECK(protobuf_c_message_pack(m, b) == *n, "pack wrote another size");
    return b;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int tag = 1 + data[0] % (LISA_TAG_DATA - 1);
    const ProtobufCMessageDescriptor *d = fuzz_descriptor(tag);
    FUZZ_CHECK(d != NULL, "a tag without a message");
    FUZZ_CHECK(lisa_cluster_tag_name(tag) && *lisa_cluster_tag_name(tag), "a tag without a name");
    ProtobufCMessage *m = cluster_msg_unpack(d, size - 1, data + 1);
    if (!m) return 0;
    size_t n1, n2;
    uint8_t *b1 = fuzz_pack(m, &n1);
    ProtobufCMessage *m2 = cluster_msg_unpack(d, n1, b1);
    FUZZ_CHECK(m2 != NULL, "a packed message does not unpack");
    uint8_t *b2 = fuzz_pack(m2, &n2);
    FUZZ_CHECK(n1 == n2 && !memcmp(b1, b2, n1), "pack -> unpack -> pack changed the bytes");
    free(b1);
    free(b2);
    protobuf_c_message_free_unpacked(m2, NULL);

    cluster_ctx x;
    lisa_cluster_config cfg;
    fuzz_context(&x, &cfg);
    char why[1400], want[32];
    if (tag == LISA_TAG_HELLO) {
        /* as rank 0 checks it: from each other rank, against its own Hello */
        Lisa__Cluster__Hello mine = LISA__CLUSTER__HELLO__INIT;
        mine.version = "lisa-fuzz";
        mine.world = x.world;
        mine.model_fp = 42;
        const Lisa__Cluster__Hello *h = (const Lisa__Cluster__Hello *)m;
        for (int src = 1; src < x.world; src++) {
            why[0] = 0;
            if (cluster_hello_check(&x, src, h, &mine, why, sizeof why)) {
                snprintf(want, sizeof want, "rank %d ", src);
                FUZZ_CHECK(!strncmp(why, want, strlen(want)), "a refusal that does not name the rank");
            }
        }
    }
    if (tag == LISA_TAG_ERROR) {
        const Lisa__Cluster__RankError *e = (const Lisa__Cluster__RankError *)m;
        cluster_rank_describe(&x, e->rank, why, sizeof why);
        snprintf(want, sizeof want, "rank %d ", e->rank);
        FUZZ_CHECK(!strncmp(why, want, strlen(want)), "description does not name the rank");
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}
