/* reasonseg.h: the ReasonSeg evaluation protocol of LISA (train_ds.py
 * --eval_only), re-implemented so that its numbers can be reproduced here.
 *
 * It covers, exactly as LISA does them:
 *   - the dataset folder: every `*.jpg` (case-sensitive, as Python's glob)
 *     with a labelme `*.json` of the same stem;
 *   - the annotation: `text` (only text[0] is used, Python-stripped),
 *     `is_sentence`, `shapes` [{label, points}]; the file is read as UTF-8
 *     and, when that fails, as cp1252 (converted to UTF-8 here);
 *   - the evaluation prompt (the user message the engine wraps in the
 *     conversation template, and the fixed "[SEG]." reply);
 *   - the ground-truth mask of utils/data_processing.get_mask_from_json:
 *     labels "flag" skipped, points truncated to int32 (numpy astype),
 *     polygons sorted by rasterized area (numpy's argsort, reversed) and
 *     drawn with cv2.polylines(thickness 1, LINE_8) then cv2.fillPoly, value
 *     255 for labels containing "ignore" and 1 otherwise;
 *   - the metric: intersectionAndUnionGPU(K=2, ignore_index=255) with the
 *     float32 arithmetic of LISA's validate() and AverageMeter (gIoU, cIoU).
 *
 * OpenCV's rasterizer changed between releases: 4.8.0 (PR #23076) computes
 * the fill spans differently from 4.6.0 and earlier. LISA pins
 * opencv-python 4.8.0.74, so LISA_RASTER_OPENCV_4_8 is the default;
 * LISA_RASTER_OPENCV_4_6 reproduces Debian 12's python3-opencv. Both are
 * byte-exact ports of drawing.cpp for thickness 1, LINE_8, shift 0.
 *
 * Deliberately not here: running a model (the eval command plugs a
 * prediction source in), multi-process all_reduce (the sums are those of one
 * process visiting the images in sorted order), anti-aliased or thick lines.
 * Library code: returns lisa_status and never prints. */
#ifndef LISA_REASONSEG_H
#define LISA_REASONSEG_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Which OpenCV release's polygon rasterization to reproduce. */
typedef enum {
    LISA_RASTER_OPENCV_4_8 = 0, /* LISA's pin (opencv-python 4.8.0.74) */
    LISA_RASTER_OPENCV_4_6      /* Debian 12 python3-opencv 4.6.0 */
} lisa_raster_variant;

/* Coordinates are refused beyond this magnitude (LISA_ERR_FORMAT): numpy's
 * float->int32 cast is undefined outside int32, and OpenCV's clipping
 * arithmetic stays exact in both releases well inside this range. */
#define LISA_REASONSEG_MAX_COORD 16777216.0

/* One labelme shape: its label and its points truncated to int32 as
 * numpy's astype does (toward zero). */
typedef struct {
    char *label;    /* UTF-8 */
    int n_points;   /* >= 1 */
    int32_t *xy;    /* x0, y0, x1, y1, ... */
} lisa_reasonseg_shape;

/* A parsed annotation. Owned: release with lisa_reasonseg_anno_free. */
typedef struct {
    char *query;        /* text[0] with Python str.strip() applied, UTF-8 */
    int is_sentence;
    char *user_message; /* "<image>\n {query} Please output segmentation mask." or
                           "<image>\n What is {query} in this image? Please output
                           segmentation mask." (LISA's ValDataset wording) */
    int from_cp1252;    /* 1 when the file was not UTF-8 and was decoded as cp1252 */
    int n_shapes;
    lisa_reasonseg_shape *shapes;
} lisa_reasonseg_anno;

/* The reply LISA's evaluation teacher-forces after the user message. */
#define LISA_REASONSEG_ASSISTANT_REPLY "[SEG]."

/* Parses an annotation from the bytes of a .json file (not retained).
 * Decodes UTF-8 first and falls back to cp1252 like LISA; LISA_ERR_FORMAT
 * with a message naming the problem for malformed JSON, bytes that are
 * neither, a missing or mistyped "text" / "is_sentence" / "shapes" /
 * "label" / "points", a point that is not two finite numbers within
 * LISA_REASONSEG_MAX_COORD, or a shape without points. On failure *a is
 * empty. */
lisa_status lisa_reasonseg_anno_parse(lisa_reasonseg_anno *a, const char *data, size_t len);
/* Reads and parses a .json file (LISA_ERR_IO when unreadable); messages
 * name the file. */
lisa_status lisa_reasonseg_anno_load(lisa_reasonseg_anno *a, const char *path);
/* Releases *a and empties it. Safe on an empty or freed annotation. */
void lisa_reasonseg_anno_free(lisa_reasonseg_anno *a);

/* Rasterizes the ground truth of `a` for a w x h image into mask[h*w]
 * (values 0, 1, 255), exactly as get_mask_from_json with the chosen OpenCV
 * release. LISA_ERR_ARG for w or h < 1, LISA_ERR_NOMEM. */
lisa_status lisa_reasonseg_gt_mask(const lisa_reasonseg_anno *a, int w, int h,
                                   lisa_raster_variant variant, uint8_t *mask);

/* cv2.polylines(img, [pts], isClosed=True, value, thickness=1, LINE_8) on an
 * 8-bit w x h image. n >= 1 points in xy. */
void lisa_raster_polylines(uint8_t *img, int w, int h, const int32_t *xy, int n,
                           uint8_t value);
/* cv2.fillPoly(img, [pts], value) (LINE_8, shift 0) on an 8-bit w x h image,
 * outline included, as the chosen OpenCV release draws it. LISA_ERR_NOMEM. */
lisa_status lisa_raster_fill_poly(uint8_t *img, int w, int h, const int32_t *xy, int n,
                                  uint8_t value, lisa_raster_variant variant);

/* Foreground scores of one image, as LISA's validate() computes them. */
typedef struct {
    int64_t intersection; /* pred==1 and gt==1 */
    int64_t union_;       /* (pred==1, gt!=255) + (gt==1) - intersection */
    float iou;            /* float32 I/(U+1e-5), plus 1.0 when U == 0 */
} lisa_reasonseg_score;

/* Scores a prediction (non-zero = foreground) against a GT mask (0, 1, 255;
 * any other value counts as background for the GT and is kept out of the
 * union like LISA's histc does) of n pixels. */
void lisa_reasonseg_score_mask(const uint8_t *pred, const uint8_t *gt, size_t n,
                               lisa_reasonseg_score *out);

/* LISA's three AverageMeters for class 1, in float32 as LISA keeps them. */
typedef struct {
    float iou_sum;          /* acc_iou_meter.sum[1] */
    float intersection_sum; /* intersection_meter.sum[1] */
    float union_sum;        /* union_meter.sum[1] */
    int64_t count;          /* images added */
} lisa_reasonseg_meter;

/* Empties the meter. */
void lisa_reasonseg_meter_init(lisa_reasonseg_meter *m);
/* Adds one image's scores (update(val, n=1), float32 accumulation). */
void lisa_reasonseg_meter_add(lisa_reasonseg_meter *m, const lisa_reasonseg_score *s);
/* gIoU = acc_iou_meter.avg[1] = sum / (count + 1e-5), in float32. */
float lisa_reasonseg_meter_giou(const lisa_reasonseg_meter *m);
/* cIoU = intersection sum / (union sum + 1e-10), in float32. */
float lisa_reasonseg_meter_ciou(const lisa_reasonseg_meter *m);

/* The images of a ReasonSeg folder: the stems of its regular `*.jpg`
 * files, sorted bytewise. Owned: release with lisa_reasonseg_list_free. */
typedef struct {
    size_t n;
    char **stems;
} lisa_reasonseg_list;

/* Lists dir. LISA_ERR_IO when it cannot be opened (message names it). An
 * empty folder gives n == 0 and LISA_OK. */
lisa_status lisa_reasonseg_list_init(lisa_reasonseg_list *l, const char *dir);
/* Releases the list and empties it. Safe on an empty or freed list. */
void lisa_reasonseg_list_free(lisa_reasonseg_list *l);

#ifdef __cplusplus
}
#endif

#endif
