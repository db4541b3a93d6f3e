/* fuzz-job-result.c: libFuzzer harness for a job's JobResult message
 * (proto/job.proto, coordinator/queue/job-codec.h), the bytes a worker
 * writes to Redis and `lisa result` / `lisa wait` decode, masks from their
 * COCO RLE included.
 *
 * Invariants checked: a decode fails with a message and an empty response,
 * or gives one whose masks are w*h readable 0/1 pixels; re-encoding it
 * succeeds and decodes to the same status, error, text, ids, stop, size,
 * masks (pixels and IoU, bit for bit) and meta; the second encoding is
 * byte-identical to the first.
 *
 * Deliberately not here: masks beyond 16 megapixels in all (the codec's
 * own ceiling is 4 GiB, above the fuzzer's memory limit; such messages are
 * skipped before decoding). */
#include <string.h>

#include "fuzz-util.h"
#include "job-codec.h"
#include "job.pb-c.h"

#define FUZZ_MAX_MASK_PIXELS ((uint64_t)16 << 20)

static int same_str(const char *a, const char *b) {
    return (!a && !b) || (a && b && !strcmp(a, b));
}

static void check_same(const lisa_response *a, const lisa_job_result_meta *ma,
                       const lisa_response *b, const lisa_job_result_meta *mb) {
    FUZZ_CHECK(a->status == b->status && a->stop == b->stop, "status or stop changed");
    FUZZ_CHECK(!strcmp(a->error, b->error), "error changed");
    FUZZ_CHECK(same_str(a->text, b->text), "text changed");
    FUZZ_CHECK(a->n_ids == b->n_ids &&
                   (!a->n_ids || !memcmp(a->ids, b->ids, (size_t)a->n_ids * sizeof *a->ids)),
               "ids changed");
    if (a->w > 0 && a->h > 0) FUZZ_CHECK(a->w == b->w && a->h == b->h, "size changed");
    if (a->status == LISA_OK) {
        FUZZ_CHECK(a->n_masks == b->n_masks, "mask count changed");
        for (int k = 0; k < a->n_masks; k++) {
            FUZZ_CHECK(!memcmp(a->masks[k].mask, b->masks[k].mask, (size_t)a->w * (size_t)a->h),
                       "mask pixels changed");
            FUZZ_CHECK(!memcmp(&a->masks[k].iou, &b->masks[k].iou, sizeof(float)), "IoU changed");
        }
    }
    FUZZ_CHECK(!strcmp(ma->worker, mb->worker) && ma->attempt == mb->attempt &&
                   !memcmp(&ma->queued_ms, &mb->queued_ms, sizeof(double)) &&
                   !memcmp(&ma->run_ms, &mb->run_ms, sizeof(double)),
               "meta changed");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Lisa__Job__JobResult *pre = lisa__job__job_result__unpack(NULL, size, data);
    if (pre) {
        uint64_t px = (uint64_t)pre->width * pre->height * pre->n_masks;
        lisa__job__job_result__free_unpacked(pre, NULL);
        if (px > FUZZ_MAX_MASK_PIXELS) return 0;
    }
    lisa_job_limits limits = {1 << 20, 1 << 16, 1 << 10, 64, 8};
    lisa_response r;
    lisa_job_result_meta meta;
    fuzz_error_clear();
    lisa_status st = lisa_job_result_decode(data, size, &limits, &r, &meta);
    FUZZ_CHECK_ERROR(st);
    if (st != LISA_OK) {
        FUZZ_CHECK(!r.masks && !r.text && !r.ids && !r.n_masks, "a failed decode left fields");
        return 0;
    }
    for (int k = 0; k < r.n_masks; k++) {
        const uint8_t *m = r.masks[k].mask;
        for (size_t i = 0; i < (size_t)r.w * (size_t)r.h; i++)
            FUZZ_CHECK(m[i] == 0 || m[i] == 1, "mask pixel not 0/1");
    }
    uint8_t *buf = NULL, *buf2 = NULL;
    size_t len = 0, len2 = 0;
    FUZZ_CHECK(lisa_job_result_encode(&r, &meta, &buf, &len) == LISA_OK,
               "a decoded result does not re-encode");
    lisa_response r2;
    lisa_job_result_meta meta2;
    FUZZ_CHECK(lisa_job_result_decode(buf, len, &limits, &r2, &meta2) == LISA_OK,
               "a re-encoded result does not decode");
    check_same(&r, &meta, &r2, &meta2);
    FUZZ_CHECK(lisa_job_result_encode(&r2, &meta2, &buf2, &len2) == LISA_OK, "second encode");
    FUZZ_CHECK(len == len2 && !memcmp(buf, buf2, len), "encoding is not canonical");
    free(buf);
    free(buf2);
    lisa_response_free(&r2);
    lisa_response_free(&r);
    return 0;
}
