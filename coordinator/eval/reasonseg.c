/* reasonseg.c: see reasonseg.h. The rasterizer is a port of OpenCV's
 * imgproc/src/drawing.cpp (LineIterator/Line, clipLine, CollectPolyEdges,
 * FillEdgeCollection, PolyLine) restricted to what LISA calls: 8-bit single
 * channel, thickness 1, LINE_8, shift 0. The polygon sort is a port of
 * numpy 1.24's indirect introsort (aquicksort) so ties break as in LISA. */
#include "reasonseg.h"

#include <cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { XY_SHIFT = 16, XY_ONE = 1 << XY_SHIFT };

/* ---- text: UTF-8 check, cp1252 decoding, Python str.strip() ---- */

/* 1 when s[0..n) is UTF-8 as Python's strict decoder accepts it. */
static int utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        uint32_t cp, min;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) { k = 1; cp = c & 0x1F; min = 0x80; }
        else if (c >= 0xE0 && c <= 0xEF) { k = 2; cp = c & 0x0F; min = 0x800; }
        else if (c >= 0xF0 && c <= 0xF4) { k = 3; cp = c & 0x07; min = 0x10000; }
        else return 0;
        if (k >= n - i) return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += k + 1;
    }
    return 1;
}

/* cp1252 bytes 0x80..0x9F (0 = undefined in Python's codec). */
static const uint16_t k_cp1252[32] = {
    0x20AC, 0, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
    0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0, 0x017D, 0,
    0, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
    0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0, 0x017E, 0x0178};

static size_t utf8_put(char *o, uint32_t cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    o[0] = (char)(0xE0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
}

/* Decodes cp1252 bytes to a new NUL-terminated UTF-8 string. */
static lisa_status cp1252_to_utf8(const unsigned char *s, size_t n, char **out) {
    char *o = malloc(3 * n + 1);
    if (!o) return lisa_error_set(LISA_ERR_NOMEM, "out of memory decoding cp1252");
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = s[i];
        if (cp >= 0x80 && cp < 0xA0) {
            cp = k_cp1252[cp - 0x80];
            if (!cp) {
                free(o);
                return lisa_error_set(LISA_ERR_FORMAT,
                                      "neither UTF-8 nor cp1252 (byte 0x%02X at offset %zu)",
                                      s[i], i);
            }
        }
        k += utf8_put(o + k, cp);
    }
    o[k] = 0;
    *out = o;
    return LISA_OK;
}

/* Length in bytes of a Python-whitespace code point at s (0 if none). */
static size_t py_space_at(const unsigned char *s, size_t n) {
    if (n == 0) return 0;
    unsigned c = s[0];
    if (c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F)) return 1;
    if (n >= 2 && c == 0xC2 && (s[1] == 0x85 || s[1] == 0xA0)) return 2;
    if (n >= 3 && c == 0xE1 && s[1] == 0x9A && s[2] == 0x80) return 3; /* U+1680 */
    if (n >= 3 && c == 0xE2 && s[1] == 0x80 && /* U+2000..200A, 2028, 2029, 202F */
        ((s[2] >= 0x80 && s[2] <= 0x8A) || s[2] == 0xA8 || s[2] == 0xA9 || s[2] == 0xAF))
        return 3;
    if (n >= 3 && c == 0xE2 && s[1] == 0x81 && s[2] == 0x9F) return 3; /* U+205F */
    if (n >= 3 && c == 0xE3 && s[1] == 0x80 && s[2] == 0x80) return 3; /* U+3000 */
    return 0;
}

/* Python str.strip() of a UTF-8 string: a new string. */
static char *py_strip(const char *s) {
    const unsigned char *b = (const unsigned char *)s;
    size_t n = strlen(s), lo = 0, hi = n;
    for (size_t k; lo < hi && (k = py_space_at(b + lo, hi - lo)) > 0;) lo += k;
    /* Trailing: find the last non-space code point by scanning forward. */
    size_t end = lo, i = lo;
    while (i < hi) {
        size_t k = py_space_at(b + i, hi - i);
        if (k) { i += k; continue; }
        i++;
        while (i < hi && (b[i] & 0xC0) == 0x80) i++;
        end = i;
    }
    char *o = malloc(end - lo + 1);
    if (!o) return NULL;
    memcpy(o, s + lo, end - lo);
    o[end - lo] = 0;
    return o;
}

/* ---- annotation ---- */

void lisa_reasonseg_anno_free(lisa_reasonseg_anno *a) {
    if (!a) return;
    for (int i = 0; i < a->n_shapes; i++) {
        free(a->shapes[i].label);
        free(a->shapes[i].xy);
    }
    free(a->shapes);
    free(a->query);
    free(a->user_message);
    memset(a, 0, sizeof *a);
}

static char *str_dup(const char *s) {
    size_t n = strlen(s) + 1;
    char *o = malloc(n);
    if (o) memcpy(o, s, n);
    return o;
}

static lisa_status anno_from_json(lisa_reasonseg_anno *a, const cJSON *root) {
    if (!cJSON_IsObject(root)) return lisa_error_set(LISA_ERR_FORMAT, "top level is not a JSON object");
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(root, "text");
    const cJSON *sent = cJSON_GetObjectItemCaseSensitive(root, "is_sentence");
    const cJSON *shapes = cJSON_GetObjectItemCaseSensitive(root, "shapes");
    if (!shapes) return lisa_error_set(LISA_ERR_FORMAT, "missing \"shapes\"");
    if (!cJSON_IsArray(shapes)) return lisa_error_set(LISA_ERR_FORMAT, "\"shapes\" is not a list");
    if (!text) return lisa_error_set(LISA_ERR_FORMAT, "missing \"text\"");
    if (!cJSON_IsArray(text) || cJSON_GetArraySize(text) < 1)
        return lisa_error_set(LISA_ERR_FORMAT, "\"text\" is not a non-empty list");
    const cJSON *t0 = cJSON_GetArrayItem(text, 0);
    if (!cJSON_IsString(t0)) return lisa_error_set(LISA_ERR_FORMAT, "\"text\"[0] is not a string");
    if (!sent) return lisa_error_set(LISA_ERR_FORMAT, "missing \"is_sentence\"");
    if (cJSON_IsBool(sent)) a->is_sentence = cJSON_IsTrue(sent);
    else if (cJSON_IsNumber(sent)) a->is_sentence = sent->valuedouble != 0;
    else return lisa_error_set(LISA_ERR_FORMAT, "\"is_sentence\" is not a boolean");

    a->query = py_strip(t0->valuestring);
    if (!a->query) return lisa_error_set(LISA_ERR_NOMEM, "out of memory");
    static const char *k_sent = "<image>\n %s Please output segmentation mask.";
    static const char *k_short = "<image>\n What is %s in this image? Please output segmentation mask.";
    const char *fmt = a->is_sentence ? k_sent : k_short;
    size_t len = strlen(fmt) + strlen(a->query) + 1;
    a->user_message = malloc(len);
    if (!a->user_message) return lisa_error_set(LISA_ERR_NOMEM, "out of memory");
    snprintf(a->user_message, len, fmt, a->query);

    int ns = cJSON_GetArraySize(shapes);
    if (ns > 0) {
        a->shapes = calloc((size_t)ns, sizeof *a->shapes);
        if (!a->shapes) return lisa_error_set(LISA_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < ns; i++) {
        const cJSON *s = cJSON_GetArrayItem(shapes, i);
        if (!cJSON_IsObject(s)) return lisa_error_set(LISA_ERR_FORMAT, "shape %d is not an object", i);
        const cJSON *label = cJSON_GetObjectItemCaseSensitive(s, "label");
        const cJSON *pts = cJSON_GetObjectItemCaseSensitive(s, "points");
        if (!cJSON_IsString(label))
            return lisa_error_set(LISA_ERR_FORMAT, "shape %d: \"label\" missing or not a string", i);
        if (!cJSON_IsArray(pts))
            return lisa_error_set(LISA_ERR_FORMAT, "shape %d: \"points\" missing or not a list", i);
        lisa_reasonseg_shape *sh = &a->shapes[a->n_shapes++];
        sh->label = str_dup(label->valuestring);
        if (!sh->label) return lisa_error_set(LISA_ERR_NOMEM, "out of memory");
        int np = cJSON_GetArraySize(pts);
        if (np < 1) return lisa_error_set(LISA_ERR_FORMAT, "shape %d (\"%s\") has no points", i, sh->label);
        sh->xy = malloc((size_t)np * 2 * sizeof *sh->xy);
        if (!sh->xy) return lisa_error_set(LISA_ERR_NOMEM, "out of memory");
        sh->n_points = np;
        for (int j = 0; j < np; j++) {
            const cJSON *p = cJSON_GetArrayItem(pts, j);
            if (!cJSON_IsArray(p) || cJSON_GetArraySize(p) != 2)
                return lisa_error_set(LISA_ERR_FORMAT, "shape %d point %d is not an [x, y] pair", i, j);
            for (int c = 0; c < 2; c++) {
                const cJSON *v = cJSON_GetArrayItem(p, c);
                if (!cJSON_IsNumber(v))
                    return lisa_error_set(LISA_ERR_FORMAT, "shape %d point %d: %s is not a number",
                                          i, j, c ? "y" : "x");
                double d = v->valuedouble;
                if (!isfinite(d) || fabs(d) > LISA_REASONSEG_MAX_COORD)
                    return lisa_error_set(LISA_ERR_FORMAT,
                                          "shape %d point %d: coordinate %g out of range (|v| <= %.0f)",
                                          i, j, d, LISA_REASONSEG_MAX_COORD);
                sh->xy[2 * j + c] = (int32_t)d; /* truncation toward zero, as numpy astype */
            }
        }
    }
    return LISA_OK;
}

lisa_status lisa_reasonseg_anno_parse(lisa_reasonseg_anno *a, const char *data, size_t len) {
    memset(a, 0, sizeof *a);
    char *owned = NULL;
    const char *text = data;
    size_t text_len = len;
    if (memchr(data, 0, len))
        return lisa_error_set(LISA_ERR_FORMAT, "NUL byte in JSON file");
    if (!utf8_valid((const unsigned char *)data, len)) {
        LISA_TRY(cp1252_to_utf8((const unsigned char *)data, len, &owned));
        text = owned;
        text_len = strlen(owned);
        a->from_cp1252 = 1;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, text_len, &end, 0);
    if (!root) {
        size_t at = end && end >= text ? (size_t)(end - text) : 0;
        free(owned);
        return lisa_error_set(LISA_ERR_FORMAT, "malformed JSON near byte %zu", at);
    }
    lisa_status st = anno_from_json(a, root);
    cJSON_Delete(root);
    free(owned);
    if (st != LISA_OK) {
        int keep = a->from_cp1252;
        lisa_reasonseg_anno_free(a);
        a->from_cp1252 = keep;
    }
    return st;
}

lisa_status lisa_reasonseg_anno_load(lisa_reasonseg_anno *a, const char *path) {
    memset(a, 0, sizeof *a);
    FILE *f = fopen(path, "rb");
    if (!f) return lisa_error_set(LISA_ERR_IO, "%s: cannot open", path);
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            size_t nc = cap ? 2 * cap : 65536;
            if (nc > (size_t)256 << 20) {
                free(buf);
                fclose(f);
                return lisa_error_set(LISA_ERR_FORMAT, "%s: larger than 256 MB", path);
            }
            char *nb = realloc(buf, nc);
            if (!nb) {
                free(buf);
                fclose(f);
                return lisa_error_set(LISA_ERR_NOMEM, "%s: out of memory", path);
            }
            buf = nb;
            cap = nc;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return lisa_error_set(LISA_ERR_IO, "%s: read error", path);
    }
    lisa_status st = lisa_reasonseg_anno_parse(a, buf ? buf : "", n);
    free(buf);
    if (st != LISA_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", lisa_error_get());
        return lisa_error_set(st, "%s: %s", path, msg);
    }
    return LISA_OK;
}

/* ---- OpenCV drawing port ---- */

/* clipLine(Size2l, Point2l&, Point2l&): clips the segment to the image;
 * returns 1 when (the clipped) segment lies inside. */
static int cv_clip_line(int64_t w, int64_t h, int64_t *x1, int64_t *y1, int64_t *x2, int64_t *y2) {
    int64_t right = w - 1, bottom = h - 1;
    if (w <= 0 || h <= 0) return 0;
    int c1 = (*x1 < 0) + (*x1 > right) * 2 + (*y1 < 0) * 4 + (*y1 > bottom) * 8;
    int c2 = (*x2 < 0) + (*x2 > right) * 2 + (*y2 < 0) * 4 + (*y2 > bottom) * 8;
    if ((c1 & c2) == 0 && (c1 | c2) != 0) {
        int64_t a;
        if (c1 & 12) {
            a = c1 < 8 ? 0 : bottom;
            *x1 += (a - *y1) * (*x2 - *x1) / (*y2 - *y1);
            *y1 = a;
            c1 = (*x1 < 0) + (*x1 > right) * 2;
        }
        if (c2 & 12) {
            a = c2 < 8 ? 0 : bottom;
            *x2 += (a - *y2) * (*x2 - *x1) / (*y2 - *y1);
            *y2 = a;
            c2 = (*x2 < 0) + (*x2 > right) * 2;
        }
        if ((c1 & c2) == 0 && (c1 | c2) != 0) {
            if (c1) {
                a = c1 == 1 ? 0 : right;
                *y1 += (a - *x1) * (*y2 - *y1) / (*x2 - *x1);
                *x1 = a;
                c1 = 0;
            }
            if (c2) {
                a = c2 == 1 ? 0 : right;
                *y2 += (a - *x2) * (*y2 - *y1) / (*x2 - *x1);
                *x2 = a;
                c2 = 0;
            }
        }
    }
    return (c1 | c2) == 0;
}

/* Line(img, pt1, pt2, color, 8): LineIterator with left_to_right = true. */
static void cv_line8(uint8_t *img, int w, int h, int64_t x1, int64_t y1, int64_t x2, int64_t y2,
                     uint8_t v) {
    int px1 = (int)x1, py1 = (int)y1, px2 = (int)x2, py2 = (int)y2;
    if ((unsigned)px1 >= (unsigned)w || (unsigned)px2 >= (unsigned)w ||
        (unsigned)py1 >= (unsigned)h || (unsigned)py2 >= (unsigned)h) {
        int64_t a = px1, b = py1, c = px2, d = py2;
        int in = cv_clip_line(w, h, &a, &b, &c, &d);
        px1 = (int)a; py1 = (int)b; px2 = (int)c; py2 = (int)d;
        if (!in) return;
    }
    int dx = px2 - px1, dy = py2 - py1;
    if (dx < 0) {
        dx = -dx;
        dy = -dy;
        px1 = px2;
        py1 = py2;
    }
    int sy = 1;
    if (dy < 0) {
        dy = -dy;
        sy = -1;
    }
    /* major (always stepped) and minor (stepped when err < 0) directions */
    int mx = 1, my = 0, nx = 0, ny = sy;
    if (dy > dx) {
        int t = dx;
        dx = dy;
        dy = t;
        mx = 0; my = sy; nx = 1; ny = 0;
    }
    int err = dx - (dy + dy), plus = dx + dx, minus = -(dy + dy);
    int x = px1, y = py1;
    for (int i = 0; i <= dx; i++) {
        img[(size_t)y * (size_t)w + (size_t)x] = v;
        int step_minor = err < 0;
        err += minus + (step_minor ? plus : 0);
        x += mx + (step_minor ? nx : 0);
        y += my + (step_minor ? ny : 0);
    }
}

void lisa_raster_polylines(uint8_t *img, int w, int h, const int32_t *xy, int n, uint8_t value) {
    if (n <= 0) return;
    int64_t x0 = xy[2 * (n - 1)], y0 = xy[2 * (n - 1) + 1];
    for (int i = 0; i < n; i++) {
        int64_t x1 = xy[2 * i], y1 = xy[2 * i + 1];
        cv_line8(img, w, h, x0, y0, x1, y1, value);
        x0 = x1;
        y0 = y1;
    }
}

typedef struct poly_edge {
    int y0, y1;
    int64_t x, dx;
    size_t order; /* position before sorting: a total order for qsort */
    struct poly_edge *next;
} poly_edge;

static int cmp_edges(const void *pa, const void *pb) {
    const poly_edge *a = pa, *b = pb;
    if (a->y0 != b->y0) return a->y0 < b->y0 ? -1 : 1;
    if (a->x != b->x) return a->x < b->x ? -1 : 1;
    if (a->dx != b->dx) return a->dx < b->dx ? -1 : 1;
    return a->order < b->order ? -1 : a->order > b->order;
}

/* CollectPolyEdges for one contour (shift 0, no offset, LINE_8). Also draws
 * the outline, as OpenCV does. */
static size_t cv_collect_edges(uint8_t *img, int w, int h, const int32_t *v, int n,
                               poly_edge *edges, lisa_raster_variant var, uint8_t color) {
    size_t ne = 0;
    int64_t p0x = (int64_t)v[2 * (n - 1)] * XY_ONE, p0y = v[2 * (n - 1) + 1];
    for (int i = 0; i < n; i++) {
        int64_t p1x = (int64_t)v[2 * i] * XY_ONE, p1y = v[2 * i + 1];
        int64_t t0x = (p0x + (XY_ONE >> 1)) >> XY_SHIFT, t0y = p0y;
        int64_t t1x = (p1x + (XY_ONE >> 1)) >> XY_SHIFT, t1y = p1y;
        cv_line8(img, w, h, t0x, t0y, t1x, t1y, color);
        int64_t c0x = p0x, c0y = p0y, c1x = p1x, c1y = p1y;
        if (var == LISA_RASTER_OPENCV_4_8) {
            /* PR #23076: edges from the clipped endpoints, centred otherwise */
            if ((uint64_t)t0x >= (uint64_t)w || (uint64_t)t1x >= (uint64_t)w ||
                (uint64_t)t0y >= (uint64_t)h || (uint64_t)t1y >= (uint64_t)h) {
                cv_clip_line(w, h, &t0x, &t0y, &t1x, &t1y);
                if (t0y != t1y) {
                    c0y = t0y;
                    c1y = t1y;
                    c0x = t0x * XY_ONE;
                    c1x = t1x * XY_ONE;
                }
            } else {
                c0x += XY_ONE >> 1;
                c1x += XY_ONE >> 1;
            }
        }
        if (p0y != p1y) {
            poly_edge *e = &edges[ne++];
            e->dx = (c1x - c0x) / (c1y - c0y);
            if (p0y < p1y) {
                e->y0 = (int)p0y;
                e->y1 = (int)p1y;
                e->x = c0x + (p0y - c0y) * e->dx;
            } else {
                e->y0 = (int)p1y;
                e->y1 = (int)p0y;
                e->x = c1x + (p1y - c1y) * e->dx;
            }
            e->order = ne;
            e->next = NULL;
        }
        p0x = p1x;
        p0y = p1y;
    }
    return ne;
}

static void hline(uint8_t *row, int x1, int x2, uint8_t v) {
    memset(row + x1, v, (size_t)(x2 - x1 + 1));
}

/* FillEdgeCollection. edges has room for total + 1 entries. */
static void cv_fill_edges(uint8_t *img, int w, int h, poly_edge *edges, size_t total_,
                          lisa_raster_variant var, uint8_t color) {
    int total = (int)total_;
    if (total < 2) return;
    int y_max = INT32_MIN, y_min = INT32_MAX;
    int64_t x_max = -1, x_min = INT64_MAX;
    for (int i = 0; i < total; i++) {
        poly_edge *e1 = &edges[i];
        int64_t x1 = e1->x + (int64_t)(e1->y1 - e1->y0) * e1->dx;
        if (e1->y0 < y_min) y_min = e1->y0;
        if (e1->y1 > y_max) y_max = e1->y1;
        if (e1->x < x_min) x_min = e1->x;
        if (e1->x > x_max) x_max = e1->x;
        if (x1 < x_min) x_min = x1;
        if (x1 > x_max) x_max = x1;
    }
    if (y_max < 0 || y_min >= h || x_max < 0 || x_min >= ((int64_t)w << XY_SHIFT)) return;
    qsort(edges, (size_t)total, sizeof *edges, cmp_edges);

    /* 4.8 rounds both span ends to nearest (x carries +0.5); 4.6 takes the
     * pixels whose centres lie inside [x_left, x_right]. */
    int64_t delta = var == LISA_RASTER_OPENCV_4_8 ? 0 : XY_ONE - 1;
    poly_edge tmp;
    memset(&tmp, 0, sizeof tmp);
    edges[total] = tmp;
    edges[total].y0 = INT32_MAX;
    int i = 0;
    poly_edge *e = &edges[0];
    if (y_max > h) y_max = h;

    for (int y = e->y0; y < y_max; y++) {
        poly_edge *last, *prelast, *keep_prelast;
        int draw = 0;
        int clipline = y < 0;
        prelast = &tmp;
        last = tmp.next;
        while (last || e->y0 == y) {
            if (last && last->y1 == y) {
                prelast->next = last->next;
                last = last->next;
                continue;
            }
            keep_prelast = prelast;
            if (last && (e->y0 > y || last->x < e->x)) {
                prelast = last;
                last = last->next;
            } else if (i < total) {
                prelast->next = e;
                e->next = last;
                prelast = e;
                e = &edges[++i];
            } else {
                break;
            }
            if (draw) {
                if (!clipline) {
                    int x1, x2;
                    if (keep_prelast->x > prelast->x) {
                        x1 = (int)((prelast->x + delta) >> XY_SHIFT);
                        x2 = (int)(keep_prelast->x >> XY_SHIFT);
                    } else {
                        x1 = (int)((keep_prelast->x + delta) >> XY_SHIFT);
                        x2 = (int)(prelast->x >> XY_SHIFT);
                    }
                    if (x1 < w && x2 >= 0) {
                        if (x1 < 0) x1 = 0;
                        if (x2 >= w) x2 = w - 1;
                        if (x1 <= x2) hline(img + (size_t)y * (size_t)w, x1, x2, color);
                    }
                }
                keep_prelast->x += keep_prelast->dx;
                prelast->x += prelast->dx;
            }
            draw ^= 1;
        }

        /* bubble sort of the active list by x (stable) */
        keep_prelast = NULL;
        do {
            prelast = &tmp;
            last = tmp.next;
            poly_edge *last_exchange = NULL;
            while (last != keep_prelast && last->next != NULL) {
                poly_edge *te = last->next;
                if (last->x > te->x) {
                    prelast->next = te;
                    last->next = te->next;
                    te->next = last;
                    prelast = te;
                    last_exchange = prelast;
                } else {
                    prelast = last;
                    last = te;
                }
            }
            if (!last_exchange) break;
            keep_prelast = last_exchange;
        } while (keep_prelast != tmp.next && keep_prelast != &tmp);
    }
}

lisa_status lisa_raster_fill_poly(uint8_t *img, int w, int h, const int32_t *xy, int n,
                                  uint8_t value, lisa_raster_variant variant) {
    if (n <= 0) return LISA_OK;
    poly_edge *edges = malloc(((size_t)n + 1) * sizeof *edges);
    if (!edges) return lisa_error_set(LISA_ERR_NOMEM, "out of memory for %d polygon edges", n);
    size_t ne = cv_collect_edges(img, w, h, xy, n, edges, variant, value);
    cv_fill_edges(img, w, h, edges, ne, variant, value);
    free(edges);
    return LISA_OK;
}

/* ---- ground truth ---- */

/* numpy 1.24 aquicksort (introsort: median-of-3 quicksort, insertion sort
 * below 16 elements, heapsort past 2*log2(n) levels) of idx by v[idx],
 * ascending. Ties break the way numpy's does. */
static void np_aheapsort(const uint64_t *v, size_t *tosort, size_t n) {
    size_t *a = tosort - 1, i, j, l, tmp;
    for (l = n >> 1; l > 0; --l) {
        tmp = a[l];
        for (i = l, j = l << 1; j <= n;) {
            if (j < n && v[a[j]] < v[a[j + 1]]) j += 1;
            if (v[tmp] < v[a[j]]) {
                a[i] = a[j];
                i = j;
                j += j;
            } else {
                break;
            }
        }
        a[i] = tmp;
    }
    for (; n > 1;) {
        tmp = a[n];
        a[n] = a[1];
        n -= 1;
        for (i = 1, j = 2; j <= n;) {
            if (j < n && v[a[j]] < v[a[j + 1]]) j++;
            if (v[tmp] < v[a[j]]) {
                a[i] = a[j];
                i = j;
                j += j;
            } else {
                break;
            }
        }
        a[i] = tmp;
    }
}

static void swap_idx(size_t *a, size_t *b) {
    size_t t = *a;
    *a = *b;
    *b = t;
}

static void np_aquicksort(const uint64_t *v, size_t *tosort, size_t num) {
    enum { SMALL = 15, STACK = 128 };
    size_t *pl = tosort, *pr = tosort + num - 1;
    size_t *stack[STACK], **sptr = stack;
    int depth[STACK], *psdepth = depth;
    int msb = 0;
    for (size_t t = num; t > 1; t >>= 1) msb++;
    int cdepth = msb * 2;
    if (num < 2) return;
    for (;;) {
        if (cdepth < 0) {
            np_aheapsort(v, pl, (size_t)(pr - pl) + 1);
            goto stack_pop;
        }
        while ((pr - pl) > SMALL) {
            size_t *pm = pl + ((pr - pl) >> 1), *pi, *pj, *pk;
            if (v[*pm] < v[*pl]) swap_idx(pm, pl);
            if (v[*pr] < v[*pm]) swap_idx(pr, pm);
            if (v[*pm] < v[*pl]) swap_idx(pm, pl);
            uint64_t vp = v[*pm];
            pi = pl;
            pj = pr - 1;
            swap_idx(pm, pj);
            for (;;) {
                do ++pi; while (v[*pi] < vp);
                do --pj; while (vp < v[*pj]);
                if (pi >= pj) break;
                swap_idx(pi, pj);
            }
            pk = pr - 1;
            swap_idx(pi, pk);
            if (pi - pl < pr - pi) {
                *sptr++ = pi + 1;
                *sptr++ = pr;
                pr = pi - 1;
            } else {
                *sptr++ = pl;
                *sptr++ = pi - 1;
                pl = pi + 1;
            }
            *psdepth++ = --cdepth;
        }
        for (size_t *pi = pl + 1; pi <= pr; ++pi) {
            size_t vi = *pi, *pj = pi, *pk = pi - 1;
            uint64_t vv = v[vi];
            while (pj > pl && vv < v[*pk]) *pj-- = *pk--;
            *pj = vi;
        }
    stack_pop:
        if (sptr == stack) break;
        pr = *(--sptr);
        pl = *(--sptr);
        cdepth = *(--psdepth);
    }
}

static int ascii_ieq(const char *a, const char *b) {
    for (; *a && *b; a++, b++) {
        char ca = (*a >= 'A' && *a <= 'Z') ? (char)(*a + 32) : *a;
        if (ca != *b) return 0;
    }
    return *a == 0 && *b == 0;
}

/* "ignore" in label.lower(): the ASCII letters of "ignore" have no
 * non-ASCII uppercase that lowercases to them, so ASCII folding is exact. */
static int label_has_ignore(const char *s) {
    static const char k[] = "ignore";
    size_t n = strlen(s);
    for (size_t i = 0; i + 6 <= n; i++) {
        size_t j = 0;
        for (; j < 6; j++) {
            char c = s[i + j];
            if (c >= 'A' && c <= 'Z') c = (char)(c + 32);
            if (c != k[j]) break;
        }
        if (j == 6) return 1;
    }
    return 0;
}

lisa_status lisa_reasonseg_gt_mask(const lisa_reasonseg_anno *a, int w, int h,
                                   lisa_raster_variant variant, uint8_t *mask) {
    if (w < 1 || h < 1) return lisa_error_set(LISA_ERR_ARG, "mask size %dx%d", w, h);
    size_t npix = (size_t)w * (size_t)h;
    memset(mask, 0, npix);
    if (a->n_shapes == 0) return LISA_OK;
    size_t nv = 0;
    uint64_t *area = malloc((size_t)a->n_shapes * sizeof *area);
    size_t *valid = malloc((size_t)a->n_shapes * sizeof *valid);
    size_t *order = malloc((size_t)a->n_shapes * sizeof *order);
    uint8_t *tmp = malloc(npix);
    lisa_status st = LISA_OK;
    if (!area || !valid || !order || !tmp) {
        st = lisa_error_set(LISA_ERR_NOMEM, "out of memory for a %dx%d mask", w, h);
        goto done;
    }
    for (int i = 0; i < a->n_shapes; i++) {
        const lisa_reasonseg_shape *s = &a->shapes[i];
        if (ascii_ieq(s->label, "flag")) continue;
        memset(tmp, 0, npix);
        lisa_raster_polylines(tmp, w, h, s->xy, s->n_points, 1);
        if ((st = lisa_raster_fill_poly(tmp, w, h, s->xy, s->n_points, 1, variant)) != LISA_OK)
            goto done;
        uint64_t sum = 0;
        for (size_t p = 0; p < npix; p++) sum += tmp[p];
        area[nv] = sum;
        valid[nv] = (size_t)i;
        order[nv] = nv;
        nv++;
    }
    np_aquicksort(area, order, nv);
    for (size_t k = nv; k-- > 0;) {
        const lisa_reasonseg_shape *s = &a->shapes[valid[order[k]]];
        uint8_t v = label_has_ignore(s->label) ? 255 : 1;
        lisa_raster_polylines(mask, w, h, s->xy, s->n_points, v);
        if ((st = lisa_raster_fill_poly(mask, w, h, s->xy, s->n_points, v, variant)) != LISA_OK)
            goto done;
    }
done:
    free(area);
    free(valid);
    free(order);
    free(tmp);
    return st;
}

/* ---- metrics ---- */

void lisa_reasonseg_score_mask(const uint8_t *pred, const uint8_t *gt, size_t n,
                               lisa_reasonseg_score *out) {
    int64_t inter = 0, area_pred = 0, area_gt = 0;
    for (size_t i = 0; i < n; i++) {
        int g = gt[i];
        int p = g == 255 ? 255 : (pred[i] != 0);
        if (p == 1) area_pred++;
        if (g == 1) {
            area_gt++;
            if (p == 1) inter++;
        }
    }
    out->intersection = inter;
    out->union_ = area_pred + area_gt - inter;
    /* torch: int32 + 1e-5 -> float32; int32 / float32 -> float32 */
    volatile float denom = (float)out->union_ + 1e-5f;
    float iou = (float)inter / denom;
    if (out->union_ == 0) iou += 1.0f;
    out->iou = iou;
}

void lisa_reasonseg_meter_init(lisa_reasonseg_meter *m) { memset(m, 0, sizeof *m); }

void lisa_reasonseg_meter_add(lisa_reasonseg_meter *m, const lisa_reasonseg_score *s) {
    m->iou_sum += s->iou;
    m->intersection_sum += (float)s->intersection;
    m->union_sum += (float)s->union_;
    m->count++;
}

float lisa_reasonseg_meter_giou(const lisa_reasonseg_meter *m) {
    /* numpy: float32 array / Python float -> the float cast to float32 */
    float denom = (float)((double)m->count + 1e-5);
    return m->iou_sum / denom;
}

float lisa_reasonseg_meter_ciou(const lisa_reasonseg_meter *m) {
    volatile float denom = m->union_sum + (float)1e-10;
    return m->intersection_sum / denom;
}

/* ---- dataset listing ---- */

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void lisa_reasonseg_list_free(lisa_reasonseg_list *l) {
    if (!l) return;
    for (size_t i = 0; i < l->n; i++) free(l->stems[i]);
    free(l->stems);
    memset(l, 0, sizeof *l);
}

lisa_status lisa_reasonseg_list_init(lisa_reasonseg_list *l, const char *dir) {
    memset(l, 0, sizeof *l);
    DIR *d = opendir(dir);
    if (!d) return lisa_error_set(LISA_ERR_IO, "%s: cannot open the data folder", dir);
    size_t cap = 0;
    struct dirent *ent;
    lisa_status st = LISA_OK;
    while ((ent = readdir(d)) != NULL) {
        size_t n = strlen(ent->d_name);
        if (n <= 4 || strcmp(ent->d_name + n - 4, ".jpg") != 0) continue;
        char path[4096];
        struct stat sb;
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, ent->d_name) >= sizeof path) continue;
        if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        if (l->n == cap) {
            size_t nc = cap ? 2 * cap : 64;
            char **ns = realloc(l->stems, nc * sizeof *ns);
            if (!ns) {
                st = lisa_error_set(LISA_ERR_NOMEM, "out of memory listing %s", dir);
                break;
            }
            l->stems = ns;
            cap = nc;
        }
        char *stem = malloc(n - 3);
        if (!stem) {
            st = lisa_error_set(LISA_ERR_NOMEM, "out of memory listing %s", dir);
            break;
        }
        memcpy(stem, ent->d_name, n - 4);
        stem[n - 4] = 0;
        l->stems[l->n++] = stem;
    }
    closedir(d);
    if (st != LISA_OK) {
        lisa_reasonseg_list_free(l);
        return st;
    }
    if (l->n > 1) qsort(l->stems, l->n, sizeof *l->stems, cmp_str);
    return LISA_OK;
}
