/* job-codec.h: the queue's messages (proto/job.proto) in and out of plain C
 * structs, with the checks a message from a stranger needs: the packed size
 * is capped before unpacking, unpacking runs under a byte budget, and every
 * field is checked after (lengths, UTF-8 of the text fields, exactly one
 * image source, mask sizes against the RLE). Also where a worker resolves a
 * request's image path under its image roots.
 *
 * A result travels as a lisa_response: the worker encodes the engine's
 * response, `lisa result` decodes it back (masks from their RLE) and hands
 * it to result-write.h, so the files are the ones `lisa segment` writes.
 *
 * Deliberately not here: Redis (queue.h), running requests. */
#ifndef LISA_JOB_CODEC_H
#define LISA_JOB_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "status.h"

/* Bumped when a field of proto/job.proto changes meaning. */
#define LISA_JOB_PROTOCOL 1

typedef struct lisa_job_limits {
    size_t max_message_bytes;  /* packed request or result (default 64 MiB) */
    size_t max_image_bytes;    /* inline image (default 32 MiB) */
    size_t max_prompt_bytes;   /* prompt, answer (default 16 KiB each) */
    size_t max_id_bytes;       /* custom_id, image path and label (default 1 KiB) */
    int max_masks;             /* masks in a result (default 64) */
} lisa_job_limits;

#define LISA_JOB_DEFAULT_MAX_MESSAGE ((size_t)64 << 20)
#define LISA_JOB_DEFAULT_MAX_IMAGE ((size_t)32 << 20)

/* limits with every zero field set to its default. */
void lisa_job_limits_default(lisa_job_limits *limits);

/* One job as the submitter describes it. Strings may be NULL (absent);
 * exactly one of image (with image_size) and image_path is set. */
typedef struct lisa_job_request {
    char *custom_id;
    uint8_t *image;
    size_t image_size;
    char *image_path;
    char *image_label;
    char *prompt;
    char *answer;
    int max_new_tokens;       /* 0: the worker's default */
} lisa_job_request;

/* Packs r into a malloc'd buffer. LISA_ERR_ARG when r breaks the limits
 * (named), LISA_ERR_NOMEM. */
lisa_status lisa_job_request_encode(const lisa_job_request *r, const lisa_job_limits *limits,
                                    uint8_t **buf, size_t *len);
/* Unpacks and checks a request; *out owns copies (free with
 * lisa_job_request_free, also after a failure). LISA_ERR_FORMAT with the
 * reason ("malformed protobuf", "prompt is not UTF-8", "both image bytes
 * and image path", ...) or LISA_ERR_ARG for a field over its limit. */
lisa_status lisa_job_request_decode(const uint8_t *buf, size_t len, const lisa_job_limits *limits,
                                    lisa_job_request *out);
void lisa_job_request_free(lisa_job_request *r);

/* Who ran a job and how long it took. */
typedef struct lisa_job_result_meta {
    char worker[128];
    int attempt;
    double queued_ms, run_ms;
} lisa_job_result_meta;

/* Packs an engine response (done or failed) with its meta. */
lisa_status lisa_job_result_encode(const lisa_response *r, const lisa_job_result_meta *meta,
                                   uint8_t **buf, size_t *len);
/* Unpacks a result into *r (cleared first; free with lisa_response_free):
 * status, error, text, ids, stop, w, h and the masks decoded from their RLE
 * with their IoU. meta may be NULL. LISA_ERR_FORMAT for a malformed or
 * inconsistent message (mask size not the image's, RLE runs not summing to
 * h*w, ...). */
lisa_status lisa_job_result_decode(const uint8_t *buf, size_t len, const lisa_job_limits *limits,
                                   lisa_response *r, lisa_job_result_meta *meta);

/* Resolves path (absolute, or relative to the first root) with realpath
 * and accepts it only inside one of the n roots (themselves resolved), so
 * "..", symlinks out and absolute paths elsewhere are refused. out gets the
 * resolved path. LISA_ERR_ARG "image path ... is outside the image roots"
 * (also when n == 0: a worker without roots takes inline images only),
 * LISA_ERR_IO when it does not exist. */
lisa_status lisa_job_path_resolve(const char *const *roots, int n, const char *path, char *out,
                                  size_t out_size);

#endif
