/* masks.c: COCO RLE, mask statistics and LISA's overlay (see masks.h). */
#include "masks.h"

#include <stdlib.h>
#include <string.h>

/* Column-major run lengths; returns the count of runs in *runs (malloc'd). */
static lisa_status rle_runs(const uint8_t *mask, int w, int h, uint32_t **runs, size_t *n) {
    size_t cap = 16, k = 0;
    uint32_t *r = malloc(cap * sizeof *r);
    if (!r) return lisa_error_set(LISA_ERR_NOMEM, "rle: allocation failed");
    uint8_t cur = 0;
    uint32_t len = 0;
    for (int x = 0; x < w; x++)
        for (int y = 0; y < h; y++) {
            uint8_t v = mask[(size_t)y * (size_t)w + (size_t)x] ? 1 : 0;
            if (v != cur) {
                if (k == cap) {
                    uint32_t *g = realloc(r, 2 * cap * sizeof *r);
                    if (!g) {
                        free(r);
                        return lisa_error_set(LISA_ERR_NOMEM, "rle: allocation failed");
                    }
                    r = g;
                    cap *= 2;
                }
                r[k++] = len;
                len = 0;
                cur = v;
            }
            len++;
        }
    if (k == cap) {
        uint32_t *g = realloc(r, (cap + 1) * sizeof *r);
        if (!g) {
            free(r);
            return lisa_error_set(LISA_ERR_NOMEM, "rle: allocation failed");
        }
        r = g;
    }
    r[k++] = len;
    *runs = r;
    *n = k;
    return LISA_OK;
}

/* pycocotools rleToString: each count (delta-coded against the count two
 * back, from the third on) in 5-bit groups, low first, with a continuation
 * bit (0x20), each group + 48 as a character. */
lisa_status lisa_mask_rle_encode(const uint8_t *mask, int w, int h, char **counts) {
    uint32_t *runs = NULL;
    size_t n = 0;
    LISA_TRY(rle_runs(mask, w, h, &runs, &n));
    char *s = malloc(n * 7 + 1);
    if (!s) {
        free(runs);
        return lisa_error_set(LISA_ERR_NOMEM, "rle: allocation failed");
    }
    size_t p = 0;
    for (size_t i = 0; i < n; i++) {
        long long x = (long long)runs[i];
        if (i > 2) x -= (long long)runs[i - 2];
        int more = 1;
        while (more) {
            long long c = x & 0x1f;
            x >>= 5;
            more = (c & 0x10) ? x != -1 : x != 0;
            if (more) c |= 0x20;
            s[p++] = (char)(c + 48);
        }
    }
    s[p] = 0;
    free(runs);
    *counts = s;
    return LISA_OK;
}

lisa_status lisa_mask_rle_decode(const char *counts, int w, int h, uint8_t *mask) {
    size_t len = strlen(counts), total = (size_t)w * (size_t)h, pos = 0, cap = len + 1, m = 0;
    long long *cnt = malloc(cap * sizeof *cnt);
    if (!cnt) return lisa_error_set(LISA_ERR_NOMEM, "rle: allocation failed");
    size_t p = 0;
    while (p < len) {
        long long x = 0;
        int k = 0, more = 1;
        /* at most 7 characters (35 bits) per count: more than any mask
         * holds, and x and the delta sums below stay far from overflow */
        while (more) {
            if (p >= len) {
                free(cnt);
                return lisa_error_set(LISA_ERR_FORMAT, "rle: truncated counts string");
            }
            if (k >= 7) {
                free(cnt);
                return lisa_error_set(LISA_ERR_FORMAT, "rle: a count longer than 7 characters");
            }
            int c = (unsigned char)counts[p] - 48;
            if (c < 0 || c > 63) {
                free(cnt);
                return lisa_error_set(LISA_ERR_FORMAT, "rle: invalid character in counts");
            }
            x |= (long long)(c & 0x1f) << (5 * k);
            more = c & 0x20;
            p++;
            k++;
            if (!more && (c & 0x10)) x -= (long long)1 << (5 * k); /* sign-extend */
        }
        if (m > 2) x += cnt[m - 2];
        cnt[m++] = x;
    }
    uint8_t v = 0;
    for (size_t i = 0; i < m; i++) {
        if (cnt[i] < 0 || (size_t)cnt[i] > total - pos) {
            free(cnt);
            return lisa_error_set(LISA_ERR_FORMAT, "rle: run lengths exceed the %dx%d mask", w, h);
        }
        for (long long j = 0; j < cnt[i]; j++, pos++) {
            size_t x = pos / (size_t)h, y = pos % (size_t)h;
            mask[y * (size_t)w + x] = v;
        }
        v ^= 1;
    }
    free(cnt);
    if (pos != total) return lisa_error_set(LISA_ERR_FORMAT, "rle: runs cover %zu of %zu pixels", pos, total);
    return LISA_OK;
}

void lisa_mask_stats(const uint8_t *mask, int w, int h, int64_t *area, int64_t bbox[4]) {
    int64_t a = 0;
    int x0 = w, y0 = h, x1 = -1, y1 = -1;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            if (mask[(size_t)y * (size_t)w + (size_t)x]) {
                a++;
                if (x < x0) x0 = x;
                if (x > x1) x1 = x;
                if (y < y0) y0 = y;
                if (y > y1) y1 = y;
            }
    *area = a;
    if (!a) {
        bbox[0] = bbox[1] = bbox[2] = bbox[3] = 0;
        return;
    }
    bbox[0] = x0;
    bbox[1] = y0;
    bbox[2] = x1 - x0 + 1;
    bbox[3] = y1 - y0 + 1;
}

void lisa_mask_overlay(const lisa_image *img, const uint8_t *mask, lisa_image *out) {
    static const double red[3] = {255.0, 0.0, 0.0};
    size_t n = (size_t)img->w * (size_t)img->h;
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < 3; c++) {
            uint8_t v = img->rgb[i * 3 + c];
            out->rgb[i * 3 + c] =
                mask[i] ? (uint8_t)((double)v * 0.5 + (red[c] * 0.5)) : v;
        }
}
