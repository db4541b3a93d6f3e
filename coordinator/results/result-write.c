/* result-write.c: result JSON, results.jsonl lines and the per-request
 * output directory (see result-write.h). */
#include "result-write.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cJSON.h>

#include "masks.h"

void lisa_result_dir_name(char *dst, size_t n, const char *id) {
    size_t k = 0;
    if (!n) return;
    for (const char *p = id; *p && k + 1 < n; p++)
        dst[k++] = (*p == '/' || *p == '\\' || (*p == '.' && p == id)) ? '_' : *p;
    dst[k] = 0;
}

lisa_status lisa_result_mkdir(const char *path) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return lisa_error_set(LISA_ERR_ARG, "cannot create %s: path too long", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0777) && errno != EEXIST)
                return lisa_error_set(LISA_ERR_IO, "cannot create %s: %s", buf, strerror(errno));
            *p = '/';
        }
    if (mkdir(buf, 0777) && errno != EEXIST)
        return lisa_error_set(LISA_ERR_IO, "cannot create %s: %s", buf, strerror(errno));
    return LISA_OK;
}

/* One mask's entry: index, file, rle {size [h, w], counts}, area, bbox, iou. */
static cJSON *result_mask_json(const lisa_response *r, int k) {
    cJSON *m = cJSON_CreateObject();
    char name[64], *counts = NULL;
    snprintf(name, sizeof name, "mask_%d.png", k);
    cJSON_AddNumberToObject(m, "index", k);
    cJSON_AddStringToObject(m, "file", name);
    if (lisa_mask_rle_encode(r->masks[k].mask, r->w, r->h, &counts) == LISA_OK) {
        cJSON *rle = cJSON_AddObjectToObject(m, "rle");
        cJSON *size = cJSON_AddArrayToObject(rle, "size");
        cJSON_AddItemToArray(size, cJSON_CreateNumber(r->h));
        cJSON_AddItemToArray(size, cJSON_CreateNumber(r->w));
        cJSON_AddStringToObject(rle, "counts", counts);
    }
    free(counts);
    int64_t area, bbox[4];
    lisa_mask_stats(r->masks[k].mask, r->w, r->h, &area, bbox);
    cJSON_AddNumberToObject(m, "area", (double)area);
    cJSON *bb = cJSON_AddArrayToObject(m, "bbox");
    for (int i = 0; i < 4; i++) cJSON_AddItemToArray(bb, cJSON_CreateNumber((double)bbox[i]));
    cJSON_AddNumberToObject(m, "iou", r->masks[k].iou);
    return m;
}

static cJSON *result_json(const lisa_result_ident *who, const lisa_response *r) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "custom_id", who->id ? who->id : "");
    if (who->image) cJSON_AddStringToObject(o, "image", who->image);
    if (who->prompt) cJSON_AddStringToObject(o, "prompt", who->prompt);
    if (r->status != LISA_OK) {
        cJSON_AddStringToObject(o, "status", "failed");
        cJSON_AddStringToObject(o, "error", r->error);
        return o;
    }
    cJSON_AddStringToObject(o, "status", "ok");
    cJSON_AddStringToObject(o, "answer", r->text ? r->text : "");
    cJSON *ids = cJSON_AddArrayToObject(o, "output_ids");
    for (int i = 0; i < r->n_ids; i++) cJSON_AddItemToArray(ids, cJSON_CreateNumber(r->ids[i]));
    cJSON *ms = cJSON_AddArrayToObject(o, "masks");
    for (int k = 0; k < r->n_masks; k++) cJSON_AddItemToArray(ms, result_mask_json(r, k));
    return o;
}

lisa_status lisa_result_format(const lisa_result_ident *who, const lisa_response *r, int pretty,
                               char **text) {
    *text = NULL;
    cJSON *o = result_json(who, r);
    if (o) *text = pretty ? cJSON_Print(o) : cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!*text) return lisa_error_set(LISA_ERR_NOMEM, "result of %s: out of memory", who->id ? who->id : "?");
    return LISA_OK;
}

/* The first output that could not be written, for the error (a full disk
 * fails every later file the same way). */
static void result_bad(char *why, size_t n, const char *msg) {
    if (!why[0]) snprintf(why, n, "%s", msg);
}

/* text and a newline into path; on failure the partial file is removed
 * (a file that exists is whole) and why names it. 1 when it failed. */
static int result_write_text(const char *path, const char *text, char *why, size_t n) {
    FILE *f = fopen(path, "wb");
    int ok = f && fprintf(f, "%s\n", text) >= 0;
    int err = errno;
    if (f && fclose(f) != 0 && ok) {
        ok = 0;
        err = errno;
    }
    if (ok) return 0;
    if (f) remove(path);
    char msg[4800];
    snprintf(msg, sizeof msg, "cannot write %s: %s", path, strerror(err));
    result_bad(why, n, msg);
    return 1;
}

/* answer.txt, mask_K.png and overlay.png of a successful response; returns
 * the number of outputs that could not be written, the first in why. */
static int result_write_masks(const char *dir, const lisa_response *r, const lisa_image *img,
                              char *why, size_t why_n) {
    char path[4600];
    int bad = 0;
    snprintf(path, sizeof path, "%s/answer.txt", dir);
    bad += result_write_text(path, r->text ? r->text : "", why, why_n);
    size_t npix = (size_t)r->w * (size_t)r->h;
    uint8_t *gray = malloc(npix), *uni = calloc(npix, 1); // (h, w) each
    if (!gray || !uni) {
        bad++;
        result_bad(why, why_n, "out of memory for the masks");
    }
    for (int k = 0; gray && uni && k < r->n_masks; k++) {
        for (size_t i = 0; i < npix; i++) {
            gray[i] = r->masks[k].mask[i] ? 255 : 0;
            uni[i] |= r->masks[k].mask[i];
        }
        snprintf(path, sizeof path, "%s/mask_%d.png", dir, k);
        if (lisa_image_write_gray_png(gray, r->w, r->h, path) != LISA_OK) {
            bad++;
            result_bad(why, why_n, lisa_error_get());
        }
    }
    if (uni && img && img->w == r->w && img->h == r->h) {
        lisa_image ov;
        if (lisa_image_init(&ov, img->w, img->h) == LISA_OK) {
            lisa_mask_overlay(img, uni, &ov);
            snprintf(path, sizeof path, "%s/overlay.png", dir);
            if (lisa_image_write_png(&ov, path) != LISA_OK) {
                bad++;
                result_bad(why, why_n, lisa_error_get());
            }
            lisa_image_free(&ov);
        } else {
            bad++;
            result_bad(why, why_n, "out of memory for the overlay");
        }
    }
    free(gray);
    free(uni);
    return bad;
}

lisa_status lisa_result_write(const char *out, const lisa_result_ident *who,
                              const lisa_response *r, const lisa_image *img) {
    char name[512], dir[4096], path[4600];
    lisa_result_dir_name(name, sizeof name, who->id ? who->id : "0");
    snprintf(dir, sizeof dir, "%s/%s", out, name);
    LISA_TRY(lisa_result_mkdir(dir));
    char why[4800] = "";
    int bad = r->status == LISA_OK ? result_write_masks(dir, r, img, why, sizeof why) : 0;
    char *txt = NULL;
    snprintf(path, sizeof path, "%s/result.json", dir);
    if (lisa_result_format(who, r, 1, &txt) == LISA_OK)
        bad += result_write_text(path, txt, why, sizeof why);
    else {
        bad++;
        result_bad(why, sizeof why, lisa_error_get());
    }
    free(txt);
    if (bad)
        return lisa_error_set(LISA_ERR_IO, "%s: %d output%s not written, first: %s",
                              who->id ? who->id : "?", bad, bad > 1 ? "s" : "", why);
    return LISA_OK;
}
