/* manifest.h: one line of a JSONL job manifest, the format `lisa segment
 * --manifest`, `lisa submit --manifest` and the cluster read:
 *   {"custom_id": "a1", "image": "photos/a.jpg", "prompt": "...", "answer": "[SEG]."}
 * custom_id is a string or a number (default "line<N>"); image is a path,
 * relative paths resolve against the manifest's directory; answer is an
 * optional teacher-forced answer (string or null); max_new_tokens an
 * optional positive integer.
 *
 * Deliberately not here: reading files, opening images, queueing. */
#ifndef LISA_MANIFEST_H
#define LISA_MANIFEST_H

#include "status.h"

typedef struct lisa_manifest_item {
    char *custom_id;      /* always set on return, even for a bad line */
    char *image;          /* resolved path */
    char *prompt;
    char *answer;         /* NULL when absent */
    int max_new_tokens;   /* 0 when absent */
} lisa_manifest_item;

/* Parses line (len bytes, no newline) number lineno of a manifest whose
 * directory is base_dir ("" or ending in '/'). A malformed line is
 * LISA_ERR_FORMAT with "manifest line N: ..." as the message, and out still
 * has its custom_id (from the line if it has one, else "lineN") so the
 * failure can be reported under it; LISA_ERR_NOMEM when out of memory. */
lisa_status lisa_manifest_line_parse(const char *line, size_t len, int lineno, const char *base_dir,
                                     lisa_manifest_item *out);
void lisa_manifest_item_free(lisa_manifest_item *it);

#endif
