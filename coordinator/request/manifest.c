/* manifest.c: JSONL manifest lines (see manifest.h), parsed with cJSON. */
#include "manifest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

void lisa_manifest_item_free(lisa_manifest_item *it) {
    free(it->custom_id);
    free(it->image);
    free(it->prompt);
    free(it->answer);
    memset(it, 0, sizeof *it);
}

lisa_status lisa_manifest_line_parse(const char *line, size_t len, int lineno, const char *base_dir,
                                     lisa_manifest_item *out) {
    memset(out, 0, sizeof *out);
    cJSON *o = cJSON_ParseWithLength(line, len);
    const cJSON *id = cJSON_IsObject(o) ? cJSON_GetObjectItem(o, "custom_id") : NULL;
    const cJSON *im = cJSON_IsObject(o) ? cJSON_GetObjectItem(o, "image") : NULL;
    const cJSON *pr = cJSON_IsObject(o) ? cJSON_GetObjectItem(o, "prompt") : NULL;
    const cJSON *an = cJSON_IsObject(o) ? cJSON_GetObjectItem(o, "answer") : NULL;
    const cJSON *mx = cJSON_IsObject(o) ? cJSON_GetObjectItem(o, "max_new_tokens") : NULL;
    char idbuf[32];
    snprintf(idbuf, sizeof idbuf, "line%d", lineno);
    if (cJSON_IsString(id) && *id->valuestring) out->custom_id = strdup(id->valuestring);
    else if (cJSON_IsNumber(id)) {
        snprintf(idbuf, sizeof idbuf, "%.0f", id->valuedouble);
        out->custom_id = strdup(idbuf);
    } else out->custom_id = strdup(idbuf);
    lisa_status st = LISA_OK;
    if (!out->custom_id) {
        st = lisa_error_set(LISA_ERR_NOMEM, "manifest: out of memory");
    } else if (!cJSON_IsObject(o)) {
        st = lisa_error_set(LISA_ERR_FORMAT, "manifest line %d: not a JSON object", lineno);
    } else if (!cJSON_IsString(im)) {
        st = lisa_error_set(LISA_ERR_FORMAT, "manifest line %d: \"image\" missing or not a string", lineno);
    } else if (!cJSON_IsString(pr)) {
        st = lisa_error_set(LISA_ERR_FORMAT, "manifest line %d: \"prompt\" missing or not a string", lineno);
    } else if (an && !cJSON_IsString(an) && !cJSON_IsNull(an)) {
        st = lisa_error_set(LISA_ERR_FORMAT, "manifest line %d: \"answer\" is not a string", lineno);
    } else if (mx && !(cJSON_IsNumber(mx) && mx->valuedouble >= 1 && mx->valuedouble <= 1e6 &&
                       mx->valuedouble == (double)(int)mx->valuedouble)) {
        st = lisa_error_set(LISA_ERR_FORMAT, "manifest line %d: \"max_new_tokens\" is not a "
                            "positive integer", lineno);
    } else {
        const char *ip = im->valuestring;
        const char *dir = ip[0] == '/' ? "" : base_dir;
        out->image = malloc(strlen(dir) + strlen(ip) + 1);
        if (out->image) sprintf(out->image, "%s%s", dir, ip);
        out->prompt = strdup(pr->valuestring);
        out->answer = cJSON_IsString(an) ? strdup(an->valuestring) : NULL;
        out->max_new_tokens = mx ? mx->valueint : 0;
        if (!out->image || !out->prompt || (cJSON_IsString(an) && !out->answer))
            st = lisa_error_set(LISA_ERR_NOMEM, "manifest: out of memory");
    }
    cJSON_Delete(o);
    if (st != LISA_OK) {
        char *keep = out->custom_id;
        out->custom_id = NULL;
        lisa_manifest_item_free(out);
        out->custom_id = keep;
    }
    return st;
}
