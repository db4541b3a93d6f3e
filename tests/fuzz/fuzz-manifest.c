/* fuzz-manifest.c: libFuzzer harness for the JSONL manifest line parser
 * (coordinator/request/manifest.h). The input is a whole manifest: it is
 * cut at newlines, as the readers do, and every line is parsed.
 *
 * Invariants checked: custom_id is always set, also for a bad line, and is
 * the line's own string id when it has a non-empty one, else "lineN" or the
 * number; a bad line is LISA_ERR_FORMAT "manifest line N: ..." (or NOMEM)
 * with nothing else left allocated; a good one has its prompt, an image
 * path that is the line's path under the base directory (unchanged when
 * absolute) and max_new_tokens in 0..1e6.
 *
 * Deliberately not here: opening the images (the callers do). */
#include <stdio.h>
#include <string.h>

#include <cJSON.h>

#include "fuzz-util.h"
#include "manifest.h"

#define FUZZ_BASE_DIR "manifests/"

static void fuzz_line(const char *line, size_t len, int lineno) {
    lisa_manifest_item it;
    fuzz_error_clear();
    lisa_status st = lisa_manifest_line_parse(line, len, lineno, FUZZ_BASE_DIR, &it);
    FUZZ_CHECK_ERROR(st);
    FUZZ_CHECK(it.custom_id != NULL, "no custom_id");
    cJSON *o = cJSON_ParseWithLength(line, len);
    const cJSON *id = cJSON_IsObject(o) ? cJSON_GetObjectItem(o, "custom_id") : NULL;
    if (cJSON_IsString(id) && id->valuestring[0])
        FUZZ_CHECK(!strcmp(it.custom_id, id->valuestring), "custom_id is not the line's");
    else if (!cJSON_IsNumber(id)) {
        char want[32];
        snprintf(want, sizeof want, "line%d", lineno);
        FUZZ_CHECK(!strcmp(it.custom_id, want), "default custom_id is not lineN");
    }
    if (st != LISA_OK) {
        FUZZ_CHECK(st == LISA_ERR_FORMAT || st == LISA_ERR_NOMEM, "unexpected status");
        if (st == LISA_ERR_FORMAT) {
            char want[48];
            snprintf(want, sizeof want, "manifest line %d: ", lineno);
            FUZZ_CHECK(!strncmp(lisa_error_get(), want, strlen(want)), "message lacks the line");
        }
        FUZZ_CHECK(!it.image && !it.prompt && !it.answer, "a bad line kept fields");
    } else {
        FUZZ_CHECK(cJSON_IsObject(o), "a line that is not an object accepted");
        const cJSON *im = cJSON_GetObjectItem(o, "image");
        FUZZ_CHECK(it.image && it.prompt, "a good line without image or prompt");
        const char *ip = im->valuestring;
        if (ip[0] == '/') FUZZ_CHECK(!strcmp(it.image, ip), "absolute path changed");
        else
            FUZZ_CHECK(!strncmp(it.image, FUZZ_BASE_DIR, strlen(FUZZ_BASE_DIR)) &&
                           !strcmp(it.image + strlen(FUZZ_BASE_DIR), ip),
                       "relative path not under the base directory");
        FUZZ_CHECK(it.max_new_tokens >= 0 && it.max_new_tokens <= 1000000,
                   "max_new_tokens out of range");
    }
    cJSON_Delete(o);
    lisa_manifest_item_free(&it);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t start = 0;
    int lineno = 1;
    for (size_t i = 0; i <= size; i++) {
        if (i < size && data[i] != '\n') continue;
        size_t len = i - start;
        /* each line in a buffer of its own, so a read past it is seen */
        char *line = malloc(len ? len : 1);
        FUZZ_CHECK(line != NULL, "out of memory");
        if (len) memcpy(line, data + start, len);
        fuzz_line(line, len, lineno++);
        free(line);
        start = i + 1;
    }
    return 0;
}
