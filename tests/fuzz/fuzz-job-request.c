/* fuzz-job-request.c: libFuzzer harness for a queued job's JobRequest
 * message (proto/job.proto, coordinator/queue/job-codec.h), the bytes a
 * submitter puts in Redis and a worker decodes.
 *
 * Invariants checked: a decode fails with a message and an empty request,
 * or gives a request that passes its own encoder's checks (exactly one
 * image source, UTF-8 text within the limits) and re-encodes to a message
 * that decodes to the same fields; re-encoding that is byte-identical (the
 * encoding is canonical).
 *
 * Deliberately not here: the image bytes themselves (fuzz-image.c), the
 * worker's path resolution (it needs real files). */
#include <string.h>

#include "fuzz-util.h"
#include "job-codec.h"

static int same_str(const char *a, const char *b) {
    return (!a && !b) || (a && b && !strcmp(a, b));
}

static int same_request(const lisa_job_request *a, const lisa_job_request *b) {
    return same_str(a->custom_id, b->custom_id) && same_str(a->image_path, b->image_path) &&
           same_str(a->image_label, b->image_label) && same_str(a->prompt, b->prompt) &&
           same_str(a->answer, b->answer) && a->max_new_tokens == b->max_new_tokens &&
           a->image_size == b->image_size && (a->image != NULL) == (b->image != NULL) &&
           (!a->image_size || !memcmp(a->image, b->image, a->image_size));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* Small limits so the fuzzer reaches them. */
    lisa_job_limits limits = {1 << 20, 1 << 16, 1 << 10, 64, 4};
    lisa_job_request r;
    fuzz_error_clear();
    lisa_status st = lisa_job_request_decode(data, size, &limits, &r);
    FUZZ_CHECK_ERROR(st);
    if (st != LISA_OK) {
        lisa_job_request zero;
        memset(&zero, 0, sizeof zero);
        FUZZ_CHECK(!memcmp(&r, &zero, sizeof r), "a failed decode left fields");
        lisa_job_request_free(&r);
        return 0;
    }
    FUZZ_CHECK((r.image != NULL) != (r.image_path != NULL), "not exactly one image source");
    FUZZ_CHECK(r.prompt != NULL, "no prompt");
    fuzz_touch(r.image, r.image_size);
    uint8_t *buf = NULL, *buf2 = NULL;
    size_t len = 0, len2 = 0;
    st = lisa_job_request_encode(&r, &limits, &buf, &len);
    FUZZ_CHECK(st == LISA_OK, "a decoded request does not re-encode");
    lisa_job_request r2;
    st = lisa_job_request_decode(buf, len, &limits, &r2);
    FUZZ_CHECK(st == LISA_OK, "a re-encoded request does not decode");
    FUZZ_CHECK(same_request(&r, &r2), "the round trip changed the request");
    FUZZ_CHECK(lisa_job_request_encode(&r2, &limits, &buf2, &len2) == LISA_OK, "second encode");
    FUZZ_CHECK(len == len2 && !memcmp(buf, buf2, len), "encoding is not canonical");
    free(buf);
    free(buf2);
    lisa_job_request_free(&r2);
    lisa_job_request_free(&r);
    return 0;
}
