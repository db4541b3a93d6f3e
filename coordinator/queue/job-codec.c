/* job-codec.c: JobRequest and JobResult (proto/job.proto) to and from C
 * structs, and image paths under a worker's roots (see job-codec.h).
 *
 * Every message is treated as a stranger's: its packed size is capped
 * before protobuf-c sees it, protobuf-c unpacks it under a byte budget (a
 * repeated field of empty sub-messages costs 2 wire bytes but allocates a
 * struct each), the wire is scanned for NUL bytes in string fields
 * (protobuf-c would silently truncate there), a field numbered 0 at any
 * depth is refused (pb-check.h), and every field is checked
 * after: lengths against the limits, counts (never trusted), UTF-8, exactly
 * one image source, masks against the image size and their RLE.
 *
 * Deliberately not here: Redis, reading image files (the submitter and the
 * worker do), decoding images. */
#include "job-codec.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "job.pb-c.h"
#include "masks.h"
#include "pb-check.h"

#define JOB_DEFAULT_MAX_PROMPT ((size_t)16 << 10)
#define JOB_DEFAULT_MAX_ID ((size_t)1 << 10)
#define JOB_DEFAULT_MAX_MASKS 64
/* Unpacking may allocate this much beyond twice the message. */
#define JOB_UNPACK_SLACK ((size_t)4 << 20)
/* A request's max_new_tokens above this is refused (as the manifest does). */
#define JOB_MAX_NEW_TOKENS 1000000u
/* Decoded masks of one result, in bytes: 64 masks of a 64-megapixel image. A
 * few bytes of RLE can stand for a huge empty mask, so the size is checked
 * before anything is allocated. */
#define JOB_MAX_MASK_BYTES ((uint64_t)4 << 30)
/* A COCO RLE count is at most 7 characters (35 bits) for any mask here;
 * longer groups are refused before lisa_mask_rle_decode shifts them. */
#define JOB_RLE_MAX_GROUP 7

void lisa_job_limits_default(lisa_job_limits *l) {
    if (!l->max_message_bytes) l->max_message_bytes = LISA_JOB_DEFAULT_MAX_MESSAGE;
    if (!l->max_image_bytes) l->max_image_bytes = LISA_JOB_DEFAULT_MAX_IMAGE;
    if (!l->max_prompt_bytes) l->max_prompt_bytes = JOB_DEFAULT_MAX_PROMPT;
    if (!l->max_id_bytes) l->max_id_bytes = JOB_DEFAULT_MAX_ID;
    if (l->max_masks <= 0) l->max_masks = JOB_DEFAULT_MAX_MASKS;
}

/* limits (may be NULL) with the defaults filled in. */
static lisa_job_limits job_limits(const lisa_job_limits *limits) {
    lisa_job_limits l;
    if (limits) l = *limits;
    else memset(&l, 0, sizeof l);
    lisa_job_limits_default(&l);
    return l;
}

/* Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
static int job_utf8_valid(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k;
        unsigned lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) k = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            k = 2;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            k = 3;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else return 0;
        if (n - i <= k) return 0;
        if (s[i + 1] < lo || s[i + 1] > hi) return 0;
        for (size_t j = 2; j <= k; j++)
            if (s[i + j] < 0x80 || s[i + j] > 0xBF) return 0;
        i += k + 1;
    }
    return 1;
}

/* A text field (NULL: absent) against its byte limit and UTF-8. fail is the
 * status for a malformed value (LISA_ERR_ARG when encoding, FORMAT when
 * decoding); an over-long one is always LISA_ERR_ARG. */
static lisa_status job_text_check(const char *what, const char *s, size_t max, lisa_status fail) {
    if (!s) return LISA_OK;
    size_t n = strlen(s);
    if (n > max)
        return lisa_error_set(LISA_ERR_ARG, "%s is %zu bytes, over the limit of %zu", what, n, max);
    if (!job_utf8_valid(s, n)) return lisa_error_set(fail, "%s is not UTF-8", what);
    return LISA_OK;
}

/* ---- unpacking under a budget ----------------------------------------- */

typedef struct {
    size_t used, budget;
    int over;
    int nomem;   /* malloc itself failed: the message may be fine */
} job_budget;

static void *job_budget_alloc(void *data, size_t size) {
    job_budget *b = data;
    if (size > b->budget - b->used) {
        b->over = 1;
        return NULL;
    }
    b->used += size;
    void *p = malloc(size ? size : 1);
    if (!p) b->nomem = 1;
    return p;
}

static void job_budget_free(void *data, void *p) {
    (void)data;
    free(p);
}

/* Reads a varint at *p (< end); 0 when truncated or longer than 10 bytes. */
static int job_wire_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
    uint64_t x = 0;
    for (int shift = 0; shift < 70 && *p < end; shift += 7) {
        uint8_t c = *(*p)++;
        x |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *v = x;
            return 1;
        }
    }
    return 0;
}

/* The first string field (of desc or, one level down, of its sub-messages)
 * holding a NUL byte, which protobuf-c's C strings would silently cut at;
 * NULL when none. Malformed wire data is left to the unpacker to refuse. */
static const char *job_wire_nul_field(const ProtobufCMessageDescriptor *desc, const uint8_t *p,
                                      size_t len, int depth) {
    const uint8_t *end = p + len;
    while (p < end) {
        uint64_t tag, n;
        if (!job_wire_varint(&p, end, &tag)) return NULL;
        switch (tag & 7) {
        case 0:
            if (!job_wire_varint(&p, end, &n)) return NULL;
            break;
        case 1:
            if (end - p < 8) return NULL;
            p += 8;
            break;
        case 5:
            if (end - p < 4) return NULL;
            p += 4;
            break;
        case 2: {
            if (!job_wire_varint(&p, end, &n) || n > (uint64_t)(end - p)) return NULL;
            const ProtobufCFieldDescriptor *f =
                tag >> 3 <= UINT_MAX ? protobuf_c_message_descriptor_get_field(desc, (unsigned)(tag >> 3))
                                     : NULL;
            if (f && f->type == PROTOBUF_C_TYPE_STRING && memchr(p, 0, (size_t)n)) return f->name;
            if (f && f->type == PROTOBUF_C_TYPE_MESSAGE && depth < 1) {
                const char *bad = job_wire_nul_field(f->descriptor, p, (size_t)n, depth + 1);
                if (bad) return bad;
            }
            p += n;
            break;
        }
        default:
            return NULL;
        }
    }
    return NULL;
}

/* Unpacks buf as desc's message under the byte budget; what names the
 * message in errors. */
static lisa_status job_unpack(const ProtobufCMessageDescriptor *desc, const char *what,
                              const uint8_t *buf, size_t len, size_t max_len,
                              ProtobufCAllocator *alloc, ProtobufCMessage **out) {
    *out = NULL;
    if (!buf && len) return lisa_error_set(LISA_ERR_ARG, "%s: no data", what);
    if (len > max_len)
        return lisa_error_set(LISA_ERR_ARG, "%s message is %zu bytes, over the limit of %zu", what,
                              len, max_len);
    const char *nul = job_wire_nul_field(desc, buf, len, 0);
    if (nul) return lisa_error_set(LISA_ERR_FORMAT, "%s: %s contains a NUL byte", what, nul);
    job_budget *b = alloc->allocator_data;
    *out = protobuf_c_message_unpack(desc, alloc, len, buf ? buf : (const uint8_t *)"");
    if (*out) {
        const char *zero = lisa_pb_field_zero(*out);
        if (!zero) return LISA_OK;
        protobuf_c_message_free_unpacked(*out, alloc);
        *out = NULL;
        return lisa_error_set(LISA_ERR_FORMAT, "%s: malformed protobuf (a field number 0 in %s)",
                              what, zero);
    }
    if (b->nomem) return lisa_error_set(LISA_ERR_NOMEM, "%s: out of memory unpacking it", what);
    if (b->over)
        return lisa_error_set(LISA_ERR_FORMAT,
                              "%s: malformed protobuf (unpacking it needs more than %zu bytes)",
                              what, b->budget);
    return lisa_error_set(LISA_ERR_FORMAT, "%s: malformed protobuf", what);
}

/* A budget of twice the message plus the slack. */
static void job_budget_init(job_budget *b, ProtobufCAllocator *a, size_t len) {
    memset(b, 0, sizeof *b);
    b->budget = len > (SIZE_MAX - JOB_UNPACK_SLACK) / 2 ? SIZE_MAX : 2 * len + JOB_UNPACK_SLACK;
    a->alloc = job_budget_alloc;
    a->free = job_budget_free;
    a->allocator_data = b;
}

static lisa_status job_version_check(const char *what, protobuf_c_boolean has, uint32_t v) {
    if (!has) return lisa_error_set(LISA_ERR_FORMAT, "%s has no protocol version", what);
    if (v != LISA_JOB_PROTOCOL)
        return lisa_error_set(LISA_ERR_FORMAT,
                              "%s is protocol version %u; this build speaks version %d", what, v,
                              LISA_JOB_PROTOCOL);
    return LISA_OK;
}

/* A packed message into a fresh buffer. */
static lisa_status job_pack(const ProtobufCMessage *m, const char *what, size_t max,
                            uint8_t **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    size_t n = protobuf_c_message_get_packed_size(m);
    if (n > max)
        return lisa_error_set(LISA_ERR_ARG, "%s message would be %zu bytes, over the limit of %zu",
                              what, n, max);
    uint8_t *b = malloc(n ? n : 1);
    if (!b) return lisa_error_set(LISA_ERR_NOMEM, "%s: out of memory (%zu bytes)", what, n);
    protobuf_c_message_pack(m, b);
    *buf = b;
    *len = n;
    return LISA_OK;
}

/* ---- requests ---------------------------------------------------------- */

/* The checks a request passes both ways; fail is the status for a
 * malformed field (ARG encoding, FORMAT decoding). has_bytes: the image
 * bytes field is present (possibly empty). */
static lisa_status job_request_check(const lisa_job_request *r, int has_bytes,
                                     const lisa_job_limits *l, lisa_status fail) {
    if (has_bytes && r->image_path)
        return lisa_error_set(fail, "request has both image bytes and image path");
    if (!has_bytes && !r->image_path)
        return lisa_error_set(fail, "request has no image (neither image bytes nor image path)");
    if (has_bytes && r->image_size == 0) return lisa_error_set(fail, "request's image bytes are empty");
    if (has_bytes && r->image_size > l->max_image_bytes)
        return lisa_error_set(LISA_ERR_ARG, "image is %zu bytes, over the limit of %zu",
                              r->image_size, l->max_image_bytes);
    if (r->image_path && !*r->image_path) return lisa_error_set(fail, "request's image path is empty");
    if (!r->prompt) return lisa_error_set(fail, "request has no prompt");
    if (r->max_new_tokens < 0 || (unsigned)r->max_new_tokens > JOB_MAX_NEW_TOKENS)
        return lisa_error_set(LISA_ERR_ARG, "max_new_tokens %d is not in 0..%u", r->max_new_tokens,
                              JOB_MAX_NEW_TOKENS);
    LISA_TRY(job_text_check("custom_id", r->custom_id, l->max_id_bytes, fail));
    LISA_TRY(job_text_check("image path", r->image_path, l->max_id_bytes, fail));
    LISA_TRY(job_text_check("image label", r->image_label, l->max_id_bytes, fail));
    LISA_TRY(job_text_check("prompt", r->prompt, l->max_prompt_bytes, fail));
    LISA_TRY(job_text_check("answer", r->answer, l->max_prompt_bytes, fail));
    return LISA_OK;
}

lisa_status lisa_job_request_encode(const lisa_job_request *r, const lisa_job_limits *limits,
                                    uint8_t **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    lisa_job_limits l = job_limits(limits);
    LISA_TRY(job_request_check(r, r->image != NULL, &l, LISA_ERR_ARG));
    Lisa__Job__JobRequest m = LISA__JOB__JOB_REQUEST__INIT;
    m.has_version = 1;
    m.version = LISA_JOB_PROTOCOL;
    m.custom_id = r->custom_id;
    if (r->image) {
        m.has_image_bytes = 1;
        m.image_bytes.data = r->image;
        m.image_bytes.len = r->image_size;
    }
    m.image_path = r->image_path;
    m.image_label = r->image_label;
    m.prompt = r->prompt;
    m.answer = r->answer;
    if (r->max_new_tokens > 0) {
        m.has_max_new_tokens = 1;
        m.max_new_tokens = (uint32_t)r->max_new_tokens;
    }
    return job_pack(&m.base, "request", l.max_message_bytes, buf, len);
}

/* Moves an unpacked string into the caller's struct (the budget allocator
 * hands out plain malloc blocks); the message no longer frees it. */
static char *job_take(char **s) {
    char *t = *s;
    *s = NULL;
    return t;
}

lisa_status lisa_job_request_decode(const uint8_t *buf, size_t len, const lisa_job_limits *limits,
                                    lisa_job_request *out) {
    memset(out, 0, sizeof *out);
    lisa_job_limits l = job_limits(limits);
    job_budget b;
    ProtobufCAllocator a;
    job_budget_init(&b, &a, len);
    ProtobufCMessage *pm;
    LISA_TRY(job_unpack(&lisa__job__job_request__descriptor, "request", buf, len,
                        l.max_message_bytes, &a, &pm));
    Lisa__Job__JobRequest *m = (Lisa__Job__JobRequest *)pm;
    lisa_job_request view = {
        .custom_id = m->custom_id, .image = m->has_image_bytes ? m->image_bytes.data : NULL,
        .image_size = m->has_image_bytes ? m->image_bytes.len : 0, .image_path = m->image_path,
        .image_label = m->image_label, .prompt = m->prompt, .answer = m->answer,
        .max_new_tokens = 0};
    lisa_status st = job_version_check("request", m->has_version, m->version);
    if (st == LISA_OK && m->has_max_new_tokens && m->max_new_tokens > JOB_MAX_NEW_TOKENS)
        st = lisa_error_set(LISA_ERR_ARG, "max_new_tokens %u is not in 0..%u", m->max_new_tokens,
                            JOB_MAX_NEW_TOKENS);
    if (st == LISA_OK) {
        view.max_new_tokens = m->has_max_new_tokens ? (int)m->max_new_tokens : 0;
        st = job_request_check(&view, m->has_image_bytes, &l, LISA_ERR_FORMAT);
    }
    if (st == LISA_OK) {
        *out = view;
        out->custom_id = job_take(&m->custom_id);
        out->image_path = job_take(&m->image_path);
        out->image_label = job_take(&m->image_label);
        out->prompt = job_take(&m->prompt);
        out->answer = job_take(&m->answer);
        if (m->has_image_bytes) {
            out->image = m->image_bytes.data;
            m->image_bytes.data = NULL;
            m->has_image_bytes = 0;
        }
    }
    protobuf_c_message_free_unpacked(pm, &a);
    return st;
}

void lisa_job_request_free(lisa_job_request *r) {
    free(r->custom_id);
    free(r->image);
    free(r->image_path);
    free(r->image_label);
    free(r->prompt);
    free(r->answer);
    memset(r, 0, sizeof *r);
}

/* ---- results ----------------------------------------------------------- */

/* Frees what job_result_encode allocated for the masks. */
static void job_masks_free(Lisa__Job__Mask *ms, Lisa__Job__Mask **ptrs, int n) {
    for (int k = 0; ms && k < n; k++) free(ms[k].rle_counts);
    free(ms);
    free(ptrs);
}

lisa_status lisa_job_result_encode(const lisa_response *r, const lisa_job_result_meta *meta,
                                   uint8_t **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    Lisa__Job__JobResult m = LISA__JOB__JOB_RESULT__INIT;
    m.has_version = 1;
    m.version = LISA_JOB_PROTOCOL;
    m.has_status = 1;
    m.status = (int32_t)r->status;
    if (r->error[0]) m.error = (char *)r->error;
    m.text = r->text;
    m.has_stop = 1;
    m.stop = (int32_t)r->stop;
    if (r->n_ids > 0 && r->ids) {
        m.n_ids = (size_t)r->n_ids;
        m.ids = r->ids;
    }
    if (r->w > 0 && r->h > 0) {
        m.has_width = m.has_height = 1;
        m.width = (uint32_t)r->w;
        m.height = (uint32_t)r->h;
    }
    char worker[sizeof meta->worker];
    if (meta) {
        snprintf(worker, sizeof worker, "%s", meta->worker);
        if (worker[0]) m.worker = worker;
        m.has_attempt = meta->attempt > 0;
        m.attempt = meta->attempt > 0 ? (uint32_t)meta->attempt : 0;
        m.has_queued_ms = m.has_run_ms = 1;
        m.queued_ms = meta->queued_ms;
        m.run_ms = meta->run_ms;
    }
    int n = r->status == LISA_OK ? r->n_masks : 0;
    if (n > 0 && (r->w <= 0 || r->h <= 0 || !r->masks))
        return lisa_error_set(LISA_ERR_ARG, "result has %d masks but no image size", n);
    Lisa__Job__Mask *ms = n > 0 ? calloc((size_t)n, sizeof *ms) : NULL;
    Lisa__Job__Mask **ptrs = n > 0 ? calloc((size_t)n, sizeof *ptrs) : NULL;
    if (n > 0 && (!ms || !ptrs)) {
        job_masks_free(ms, ptrs, 0);
        return lisa_error_set(LISA_ERR_NOMEM, "result: out of memory");
    }
    lisa_status st = LISA_OK;
    uint64_t(*boxes)[4] = n > 0 ? calloc((size_t)n, sizeof *boxes) : NULL;
    if (n > 0 && !boxes) st = lisa_error_set(LISA_ERR_NOMEM, "result: out of memory");
    for (int k = 0; k < n && st == LISA_OK; k++) {
        Lisa__Job__Mask *mk = &ms[k];
        lisa__job__mask__init(mk);
        ptrs[k] = mk;
        if (!r->masks[k].mask) {
            st = lisa_error_set(LISA_ERR_ARG, "result mask %d has no pixels", k);
            break;
        }
        st = lisa_mask_rle_encode(r->masks[k].mask, r->w, r->h, &mk->rle_counts);
        if (st != LISA_OK) break;
        int64_t area, bb[4];
        lisa_mask_stats(r->masks[k].mask, r->w, r->h, &area, bb);
        mk->has_h = mk->has_w = mk->has_area = mk->has_iou = 1;
        mk->h = (uint32_t)r->h;
        mk->w = (uint32_t)r->w;
        mk->area = (uint64_t)area;
        for (int i = 0; i < 4; i++) boxes[k][i] = (uint64_t)bb[i];
        mk->n_bbox = 4;
        mk->bbox = boxes[k];
        mk->iou = r->masks[k].iou;
    }
    if (st == LISA_OK) {
        m.n_masks = (size_t)n;
        m.masks = ptrs;
        st = job_pack(&m.base, "result", SIZE_MAX, buf, len);
    }
    free(boxes);
    job_masks_free(ms, ptrs, n);
    return st;
}

/* Checks a COCO RLE string's alphabet and group lengths (so decoding never
 * shifts past 64 bits); then decodes it into mask (w x h). */
static lisa_status job_mask_decode(const char *counts, int w, int h, uint8_t *mask) {
    int group = 0;
    for (const unsigned char *p = (const unsigned char *)counts; *p; p++) {
        if (*p < 48 || *p > 111) return lisa_error_set(LISA_ERR_FORMAT, "rle: invalid character in counts");
        group = (*p - 48) & 0x20 ? group + 1 : 0;
        if (group >= JOB_RLE_MAX_GROUP)
            return lisa_error_set(LISA_ERR_FORMAT, "rle: a count is longer than %d characters",
                                  JOB_RLE_MAX_GROUP);
    }
    return lisa_mask_rle_decode(counts, w, h, mask);
}

/* One mask of a result message into r->masks[k] (r->w, r->h set). */
static lisa_status job_result_mask(const Lisa__Job__Mask *m, int k, lisa_response *r) {
    if (!m->has_w || !m->has_h || m->w != (uint32_t)r->w || m->h != (uint32_t)r->h)
        return lisa_error_set(LISA_ERR_FORMAT, "result: mask %d is %ux%u, the image is %dx%d", k,
                              m->has_w ? m->w : 0, m->has_h ? m->h : 0, r->w, r->h);
    if (!m->rle_counts) return lisa_error_set(LISA_ERR_FORMAT, "result: mask %d has no RLE", k);
    uint8_t *px = malloc((size_t)r->w * (size_t)r->h);
    if (!px) return lisa_error_set(LISA_ERR_NOMEM, "result: out of memory for mask %d", k);
    r->masks[k].mask = px;
    r->masks[k].iou = m->has_iou ? m->iou : 0.0f;
    lisa_status st = job_mask_decode(m->rle_counts, r->w, r->h, px);
    if (st != LISA_OK) {
        char why[200];
        snprintf(why, sizeof why, "%s", lisa_error_get());
        return lisa_error_set(LISA_ERR_FORMAT, "result: mask %d: RLE inconsistent with %dx%d: %s", k,
                              r->w, r->h, why);
    }
    int64_t area, bb[4];
    lisa_mask_stats(px, r->w, r->h, &area, bb);
    if (m->has_area && m->area != (uint64_t)area)
        return lisa_error_set(LISA_ERR_FORMAT,
                              "result: mask %d: area %llu, but its RLE covers %lld pixels", k,
                              (unsigned long long)m->area, (long long)area);
    if (m->n_bbox != 0 && m->n_bbox != 4)
        return lisa_error_set(LISA_ERR_FORMAT, "result: mask %d: bbox has %zu numbers, not 4", k,
                              m->n_bbox);
    for (size_t i = 0; i < m->n_bbox; i++)
        if (m->bbox[i] != (uint64_t)bb[i])
            return lisa_error_set(LISA_ERR_FORMAT, "result: mask %d: bbox does not match its RLE", k);
    return LISA_OK;
}

/* Copies at most n - 1 bytes of s into dst, cut at a UTF-8 boundary. */
static void job_copy_utf8(char *dst, size_t n, const char *s) {
    size_t k = strlen(s);
    if (k >= n) {
        k = n - 1;
        while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
    }
    memcpy(dst, s, k);
    dst[k] = 0;
}

/* The fields of an unpacked result into r and meta. */
static lisa_status job_result_fill(const Lisa__Job__JobResult *m, const lisa_job_limits *l,
                                   lisa_response *r, lisa_job_result_meta *meta) {
    LISA_TRY(job_version_check("result", m->has_version, m->version));
    if (!m->has_status) return lisa_error_set(LISA_ERR_FORMAT, "result has no status");
    if (m->status < LISA_OK || m->status > LISA_ERR_NOTFOUND)
        return lisa_error_set(LISA_ERR_FORMAT, "result: status %d is not a lisa_status", m->status);
    if (m->has_stop && (m->stop < LISA_STOP_NONE || m->stop > LISA_STOP_ERROR))
        return lisa_error_set(LISA_ERR_FORMAT, "result: stop %d is not a stop reason", m->stop);
    LISA_TRY(job_text_check("result error", m->error, l->max_message_bytes, LISA_ERR_FORMAT));
    LISA_TRY(job_text_check("result text", m->text, l->max_message_bytes, LISA_ERR_FORMAT));
    LISA_TRY(job_text_check("result worker", m->worker, l->max_id_bytes, LISA_ERR_FORMAT));
    if (m->n_ids > INT_MAX) return lisa_error_set(LISA_ERR_FORMAT, "result: too many ids");
    if ((m->has_width && m->width > INT_MAX) || (m->has_height && m->height > INT_MAX))
        return lisa_error_set(LISA_ERR_FORMAT, "result: image size %ux%u is out of range",
                              m->width, m->height);
    if (m->n_masks > (size_t)l->max_masks)
        return lisa_error_set(LISA_ERR_ARG, "result has %zu masks, over the limit of %d (too many masks)",
                              m->n_masks, l->max_masks);
    r->status = (lisa_status)m->status;
    r->stop = m->has_stop ? (lisa_stop_reason)m->stop : LISA_STOP_NONE;
    r->w = m->has_width ? (int)m->width : 0;
    r->h = m->has_height ? (int)m->height : 0;
    if (m->error) job_copy_utf8(r->error, sizeof r->error, m->error);
    if (m->text && !(r->text = strdup(m->text)))
        return lisa_error_set(LISA_ERR_NOMEM, "result: out of memory");
    if (m->n_ids) {
        r->ids = malloc(m->n_ids * sizeof *r->ids);
        if (!r->ids) return lisa_error_set(LISA_ERR_NOMEM, "result: out of memory");
        memcpy(r->ids, m->ids, m->n_ids * sizeof *r->ids);
        r->n_ids = (int)m->n_ids;
    }
    if (m->n_masks) {
        if (r->w <= 0 || r->h <= 0)
            return lisa_error_set(LISA_ERR_FORMAT, "result has %zu masks but no image size",
                                  m->n_masks);
        if ((uint64_t)r->w * (uint64_t)r->h * m->n_masks > JOB_MAX_MASK_BYTES)
            return lisa_error_set(LISA_ERR_ARG,
                                  "result: %zu masks of %dx%d are over the limit of %llu bytes",
                                  m->n_masks, r->w, r->h, (unsigned long long)JOB_MAX_MASK_BYTES);
        r->masks = calloc(m->n_masks, sizeof *r->masks);
        if (!r->masks) return lisa_error_set(LISA_ERR_NOMEM, "result: out of memory");
        r->n_masks = (int)m->n_masks;
        for (size_t k = 0; k < m->n_masks; k++) LISA_TRY(job_result_mask(m->masks[k], (int)k, r));
    }
    if (meta) {
        memset(meta, 0, sizeof *meta);
        if (m->worker) job_copy_utf8(meta->worker, sizeof meta->worker, m->worker);
        meta->attempt = m->has_attempt && m->attempt <= INT_MAX ? (int)m->attempt : 0;
        meta->queued_ms = m->has_queued_ms ? m->queued_ms : 0;
        meta->run_ms = m->has_run_ms ? m->run_ms : 0;
    }
    return LISA_OK;
}

lisa_status lisa_job_result_decode(const uint8_t *buf, size_t len, const lisa_job_limits *limits,
                                   lisa_response *r, lisa_job_result_meta *meta) {
    memset(r, 0, sizeof *r);
    if (meta) memset(meta, 0, sizeof *meta);
    lisa_job_limits l = job_limits(limits);
    job_budget b;
    ProtobufCAllocator a;
    job_budget_init(&b, &a, len);
    ProtobufCMessage *pm;
    LISA_TRY(job_unpack(&lisa__job__job_result__descriptor, "result", buf, len,
                        l.max_message_bytes, &a, &pm));
    lisa_status st = job_result_fill((const Lisa__Job__JobResult *)pm, &l, r, meta);
    protobuf_c_message_free_unpacked(pm, &a);
    if (st != LISA_OK) lisa_response_free(r);
    return st;
}

/* ---- image paths ------------------------------------------------------- */

/* path is root itself or below it (at a '/' boundary). */
static int job_path_under(const char *path, const char *root) {
    size_t n = strlen(root);
    while (n > 1 && root[n - 1] == '/') n--;
    if (n == 1 && root[0] == '/') return path[0] == '/';
    return !strncmp(path, root, n) && (path[n] == 0 || path[n] == '/');
}

/* A ".." component anywhere in path. */
static int job_path_has_dotdot(const char *path) {
    for (const char *p = path; (p = strstr(p, "..")); p += 2)
        if ((p == path || p[-1] == '/') && (p[2] == 0 || p[2] == '/')) return 1;
    return 0;
}

lisa_status lisa_job_path_resolve(const char *const *roots, int n, const char *path, char *out,
                                  size_t out_size) {
    if (out_size) out[0] = 0;
    if (n <= 0)
        return lisa_error_set(LISA_ERR_ARG,
                              "image path %s is outside the image roots (this worker has none: "
                              "it takes inline images only)", path);
    if (!*path) return lisa_error_set(LISA_ERR_ARG, "image path is empty");
    if (job_path_has_dotdot(path))
        return lisa_error_set(LISA_ERR_ARG, "image path %s is outside the image roots (it has a "
                              "'..' component)", path);
    char joined[PATH_MAX], real[PATH_MAX], root[PATH_MAX];
    if (path[0] == '/') {
        /* Lexically under a root as configured or as resolved, or refused
         * before the file system is asked (no probing outside the roots). */
        int lexical = 0;
        for (int i = 0; i < n && !lexical; i++)
            lexical = job_path_under(path, roots[i]) ||
                      (realpath(roots[i], root) && job_path_under(path, root));
        if (!lexical)
            return lisa_error_set(LISA_ERR_ARG, "image path %s is outside the image roots", path);
        if (snprintf(joined, sizeof joined, "%s", path) >= (int)sizeof joined)
            return lisa_error_set(LISA_ERR_ARG, "image path %s is too long", path);
    } else if (snprintf(joined, sizeof joined, "%s/%s", roots[0], path) >= (int)sizeof joined) {
        return lisa_error_set(LISA_ERR_ARG, "image path %s is too long", path);
    }
    if (!realpath(joined, real)) {
        if (errno == ENOENT || errno == ENOTDIR)
            return lisa_error_set(LISA_ERR_IO, "image path %s does not exist", path);
        return lisa_error_set(LISA_ERR_IO, "image path %s: %s", path, strerror(errno));
    }
    for (int i = 0; i < n; i++) {
        if (!realpath(roots[i], root) || !job_path_under(real, root)) continue;
        if (strlen(real) >= out_size)
            return lisa_error_set(LISA_ERR_ARG, "image path %s is too long", path);
        memcpy(out, real, strlen(real) + 1);
        return LISA_OK;
    }
    return lisa_error_set(LISA_ERR_ARG, "image path %s is outside the image roots (a symlink "
                          "leads out of them)", path);
}
