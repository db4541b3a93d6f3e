/* result-write.h: what a finished request becomes on disk and on the wire:
 * its result JSON (custom_id, image, prompt, status, answer, output ids, per
 * mask COCO RLE, area, bbox and IoU; or the error of a failed request), the
 * results.jsonl line, and the per-request directory OUT/<id>/ with
 * answer.txt, mask_K.png (0/255, one per [SEG] in order), overlay.png (LISA
 * chat.py's red 50% blend of all masks) and result.json.
 *
 * One encoder for `lisa segment`, the Redis worker and the cluster: the
 * input is the engine's lisa_response plus the request's identity as the
 * caller names it. Deliberately not here: reading manifests or images (the
 * overlay takes an already decoded image), opening results.jsonl, printing
 * (failures are a status and lisa_error_get()). */
#ifndef LISA_RESULT_WRITE_H
#define LISA_RESULT_WRITE_H

#include <stddef.h>

#include "engine.h"
#include "image.h"
#include "status.h"

/* Who a result is for. Every field may be NULL: id is then "" in the JSON
 * and "0" as a directory name; image and prompt are then left out. */
typedef struct lisa_result_ident {
    const char *id;     /* the caller's id (manifest custom_id) */
    const char *image;  /* image path, or a label when the bytes came from elsewhere */
    const char *prompt;
} lisa_result_ident;

/* The result as JSON text (malloc'd, NUL-terminated, no trailing newline):
 * one line for results.jsonl when pretty is 0, cJSON's indented form (as in
 * result.json) otherwise. A response whose status is not LISA_OK gives
 * {"status": "failed", "error": r->error}. */
lisa_status lisa_result_format(const lisa_result_ident *who, const lisa_response *r, int pretty,
                               char **text);

/* Writes OUT/<dir name of who->id>/: for a successful response answer.txt,
 * mask_K.png and, when img is non-NULL and has the masks' size, overlay.png;
 * result.json always. img is the request's decoded image (not modified).
 * Keeps writing after a failed file (which is removed, never left
 * partial); returns LISA_ERR_IO "<id>: N outputs not written, first:
 * cannot write <path>: <reason>" if any output could not be written. */
lisa_status lisa_result_write(const char *out, const lisa_result_ident *who,
                              const lisa_response *r, const lisa_image *img);

/* An id made safe as one directory name: '/' and '\\' and a leading '.'
 * become '_'; truncated to n - 1 bytes. */
void lisa_result_dir_name(char *dst, size_t n, const char *id);

/* mkdir -p: creates path and its missing parents (LISA_ERR_IO naming the
 * path and the reason on failure). */
lisa_status lisa_result_mkdir(const char *path);

#endif
