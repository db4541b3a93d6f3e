#!/usr/bin/env python3
"""gen_reasonseg.py: a synthetic ReasonSeg folder and the numbers LISA's
evaluation gives on it, for tests/unit/test-reasonseg.c and tests/cli/eval.sh.

Writes tests/fixtures/reasonseg/:
  data/<stem>.jpg, data/<stem>.json   8 small images (real JPEGs, Pillow) with
                   labelme annotations covering: overlapping, concave and
                   self-intersecting polygons, non-integer and negative
                   coordinates, points on and beyond the border, a polygon
                   entirely outside, 1- and 2-point polygons, "ignore" and
                   "flag" labels in several cases, more than 16 polygons with
                   tied areas (numpy's argsort is then not a plain insertion
                   sort), an image without target shapes (empty GT),
                   is_sentence true and false, non-ASCII text, text needing
                   Python's str.strip(), and one JSON in cp1252
  predictions/<stem>.png   predicted masks (0 / non-zero; gray and RGB PNGs),
                   from empty through partial to perfect
  bad/*.json       annotations the parser must refuse with a message
  prompts.json     per stem: the stripped query, is_sentence, the user
                   message LISA's ValDataset builds, whether it was cp1252
  gt-<cv>/<stem>.png   the GT mask (0/1/255) from cv2 <cv> as LISA draws it
  expected-<cv>.txt    per image: width height intersection union iou; then
                   gIoU and cIoU, all printed with %.8f from float32 values

<cv> is the OpenCV release that ran the script (major.minor). The masks of
4.6 and 4.8 differ (PR #23076 changed fillPoly's spans), so the script is run
once per release; the shared files are deterministic and come out identical:

    /work/venv/bin/python tests/reference/gen_reasonseg.py    # Debian 4.6
    PYTHONPATH=/tmp/cv48 /work/venv/bin/python tests/reference/gen_reasonseg.py

where /tmp/cv48 holds the unpacked opencv-python-headless==4.8.0.74 wheel
(LISA's pin; `pip download --no-deps` then unzip, so numpy stays 1.24).

The reference logic is LISA's, re-typed here (not copied):
  GT       utils/data_processing.get_mask_from_json: utf-8 then cp1252;
           labels "flag" skipped; points -> np.int32; per polygon area =
           sum of (polylines + fillPoly) on a zero mask; np.argsort(areas)
           reversed; polylines(v, 1) then fillPoly(v), v = 255 for "ignore"
  metric   utils.intersectionAndUnionGPU(pred, gt, 2, 255) on int32 tensors
           and validate() of train_ds.py: per image intersection/union are
           0.0 + int tensors (float32), acc_iou = I / (U + 1e-5) with +1.0
           where U == 0; AverageMeter sums in float32, all_reduce makes
           float32 tensors, gIoU = sum / (count + 1e-5), cIoU = sum_I /
           (sum_U + 1e-10). One process, images in sorted order.
torch.histc is CUDA-only for int tensors in torch 1.13, so the class counts
are taken with torch.bincount, which gives the same integers.
"""
import json
import os
import sys

import cv2
import numpy as np
import torch
from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "reasonseg")
CV = ".".join(cv2.__version__.split(".")[:2])


def poly(*xy):
    return [[float(x), float(y)] for x, y in zip(xy[0::2], xy[1::2])]


def shape(label, pts):
    return {"label": label, "points": pts, "group_id": None, "shape_type": "polygon", "flags": {}}


def tie_squares():
    """20 squares of equal area (and a few others), overlapping, with mixed
    labels: the draw order among ties is numpy's quicksort's."""
    out = []
    for k in range(20):
        x, y = 4 + (k % 7) * 12, 4 + (k // 7) * 17
        label = "ignore" if k % 3 == 1 else "target"
        out.append(shape(label, poly(x, y, x + 15.9, y, x + 15.9, y + 15.2, x, y + 15.2)))
    out.insert(5, shape("target", poly(0, 0, 96, 0, 96, 60, 0, 60)))
    out.insert(11, shape("ignore area", poly(30.5, 10.5, 70.2, 12.9, 50.1, 58.8)))
    return out


def star(cx, cy, r1, r2, n, phase=0.0):
    pts = []
    for k in range(2 * n):
        r = r1 if k % 2 == 0 else r2
        a = phase + np.pi * k / n
        pts.append([round(cx + r * np.cos(a), 3), round(cy + r * np.sin(a), 3)])
    return pts


IMAGES = [
    # stem, (w, h), text, is_sentence, shapes, encoding
    ("img01", (40, 30), ["the red cup", "another phrasing"], False, [
        shape("target", poly(3.2, 4.7, 30.9, 2.1, 33.5, 25.8, 6.4, 27.3)),
        shape("target", poly(20.5, 10.5, 39.9, 15.2, 25.1, 29.9)),
    ], "utf-8"),
    ("img02", (57, 41), ["Which utensil would a chef use to cut bread \u2014 \u00abça\u00bb, \u5200?"], True, [
        shape("target", poly(5, 5, 50, 5, 50, 36, 38.7, 36, 38.7, 14.2, 17.3, 14.2, 17.3, 36, 5, 36)),
        shape("Ignore", poly(8, 20, 14, 20, 14, 30, 8, 30)),
    ], "utf-8"),
    ("img03", (64, 48), ["something on the border"], False, [
        shape("target", poly(-10.5, -3.2, 20.7, -8.9, 25.3, 12.4, -4.0, 20.0)),
        shape("target", poly(50, 30, 70.8, 41, 63.999, 47.999, 45, 60)),
        shape("flag", poly(0, 0, 63, 0, 63, 47, 0, 47)),
        shape("target", poly(10.9, 40.2, 40.1, 33.7)),
        shape("target", poly(31.6, 5.5)),
        shape("target", poly(-50, -50, -10, -40, -30, -5)),
        shape("target", poly(-0.9, 30.5, 3.3, 44.4, 0.7, 46.1)),
    ], "utf-8"),
    ("img04", (33, 77), ["nothing to see"], False, [
        shape("Flag", poly(2, 2, 30, 2, 30, 70, 2, 70)),
        shape("IGNORE_region", poly(5, 5, 20, 8, 12, 40)),
    ], "utf-8"),
    ("img05", (97, 61), ["the caf\u00e9 cr\u00e8me \u2013 \u201cthe one on the left\u201d"], True,
     tie_squares(), "cp1252"),
    ("img06", (50, 50), ["the star"], False, [
        shape("target", star(25, 25, 22, 9, 5)),
        shape("target", star(25, 25, 22.4, 9.6, 7, 0.3)),
        shape("please ignore this", poly(20, 20, 31, 20, 31, 31, 20, 31)),
        shape("Flag", poly(0, 0, 49, 49, 0, 49)),
    ], "utf-8"),
    ("img07", (45, 35), [" \t\u3000 an empty scene\u00a0 \n", "x"], True, [], "utf-8"),
    ("img08", (72, 54), ["a self-intersecting blob"], False, [
        shape("target", [[float(v) for v in p] for p in
                         (np.random.default_rng(8).random((30, 2)) * [80, 62] - [4, 4]).round(2).tolist()]),
        shape("target", poly(100, 100, 120, 100, 110, 130)),
        shape("ignore", poly(10.2, 10.8, 11.9, 10.8, 11.9, 12.3)),
    ], "utf-8"),
]

BAD = {
    "malformed.json": '{"text": ["a"], "is_sentence": false, "shapes": [',
    "no-shapes.json": '{"text": ["a"], "is_sentence": false}',
    "no-text.json": '{"is_sentence": false, "shapes": []}',
    "text-not-list.json": '{"text": "a", "is_sentence": false, "shapes": []}',
    "point-not-number.json": '{"text": ["a"], "is_sentence": true, "shapes": '
                             '[{"label": "t", "points": [[1, 2], ["3", 4], [5, 6]]}]}',
    "point-not-pair.json": '{"text": ["a"], "is_sentence": true, "shapes": '
                           '[{"label": "t", "points": [[1, 2, 3], [3, 4], [5, 6]]}]}',
    "no-points.json": '{"text": ["a"], "is_sentence": true, "shapes": [{"label": "t", "points": []}]}',
    "no-label.json": '{"text": ["a"], "is_sentence": true, "shapes": [{"points": [[1, 2]]}]}',
    "huge-coordinate.json": '{"text": ["a"], "is_sentence": true, "shapes": '
                            '[{"label": "t", "points": [[1e12, 2], [3, 4], [5, 6]]}]}',
    "not-object.json": '[1, 2, 3]',
}


def read_anno(path):
    """LISA's read: utf-8 (the locale default), falling back to cp1252."""
    try:
        with open(path, "r", encoding="utf-8") as r:
            return json.loads(r.read()), False
    except Exception:
        with open(path, "r", encoding="cp1252") as r:
            return json.loads(r.read()), True


def draw(mask, pts, value):
    arr = np.array([pts], dtype=np.int32)
    cv2.polylines(mask, arr, True, value, 1)
    cv2.fillPoly(mask, arr, value)


def gt_mask(anno, h, w):
    areas, valid = [], []
    for s in anno["shapes"]:
        if s["label"].lower() == "flag":
            continue
        tmp = np.zeros((h, w), dtype=np.uint8)
        draw(tmp, s["points"], 1)
        areas.append(tmp.sum())
        valid.append(s)
    mask = np.zeros((h, w), dtype=np.uint8)
    for k in list(np.argsort(areas)[::-1].astype(np.int32)):
        s = valid[k]
        draw(mask, s["points"], 255 if "ignore" in s["label"].lower() else 1)
    return mask


def counts(x):
    """histc(x, bins=2, min=0, max=1) of an int tensor: values outside 0..1 dropped."""
    x = x[(x >= 0) & (x <= 1)].long()
    return torch.bincount(x, minlength=2).to(torch.int32)


def inter_union(pred, gt):
    out = pred.view(-1).clone()
    tgt = gt.view(-1)
    out[tgt == 255] = 255
    i = counts(out[out == tgt])
    return i, counts(out) + counts(tgt) - i


def user_message(query, is_sentence):
    if is_sentence:
        return "<image>\n {} Please output segmentation mask.".format(query)
    return "<image>\n What is {} in this image? Please output segmentation mask.".format(query)


def center_fill(shapes, h, w):
    """Target pixels by an even-odd test at pixel centres: a rough, OpenCV-
    independent mask, so the predictions are the same bytes whichever cv2
    runs the script."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    out = np.zeros((h, w), dtype=bool)
    for s in shapes:
        if s["label"].lower() == "flag" or "ignore" in s["label"].lower() or len(s["points"]) < 3:
            continue
        pts = np.array(s["points"], dtype=np.float64)
        inside = np.zeros((h, w), dtype=bool)
        for (x0, y0), (x1, y1) in zip(pts, np.roll(pts, -1, axis=0)):
            if y0 == y1:
                continue
            cross = (yy >= min(y0, y1)) & (yy < max(y0, y1))
            xc = x0 + (yy - y0) * (x1 - x0) / (y1 - y0)
            inside ^= cross & (xx < xc)
        out |= inside
    return out


def make_pred(stem, gt, shapes, rng):
    h, w = gt.shape
    base = center_fill(shapes, h, w)
    if stem == "img01":      # partial: a rough mask shifted by 3 px
        return np.roll(base, 3, axis=1).astype(np.uint8) * 255
    if stem == "img02":      # perfect (this GT is the same in 4.6 and 4.8), noise on ignore
        p = (gt == 1).astype(np.uint8) * 255
        p[(gt == 255) & (rng.random(gt.shape) < 0.5)] = 255
        return p
    if stem == "img03":      # empty prediction
        return np.zeros_like(gt)
    if stem == "img04":      # empty GT, empty prediction: union 0 -> iou 1
        return np.zeros_like(gt)
    if stem == "img05":      # random blob, values 0/1/77 (any non-zero is foreground)
        p = (rng.random(gt.shape) < 0.6).astype(np.uint8)
        p[p == 1] = rng.choice(np.array([1, 77], dtype=np.uint8), size=int(p.sum()))
        return p
    if stem == "img06":      # a superset of the target
        p = np.zeros_like(gt)
        p[2:48, 3:47] = 200
        return p
    if stem == "img07":      # empty GT, something predicted: iou 0
        p = np.zeros_like(gt)
        p[10:20, 5:30] = 255
        return p
    p = base.astype(np.uint8) * 255      # img08: a rough mask minus a band
    p[:, 30:40] = 0
    return p


def write_png_rgb_if(stem, pred, path):
    if stem == "img06":      # an RGB PNG: foreground in one channel only
        rgb = np.zeros(pred.shape + (3,), dtype=np.uint8)
        rgb[..., 1] = pred
        Image.fromarray(rgb, "RGB").save(path, optimize=False)
    else:
        Image.fromarray(pred, "L").save(path, optimize=False)


def main():
    data = os.path.join(ROOT, "data")
    preds = os.path.join(ROOT, "predictions")
    gts = os.path.join(ROOT, "gt-" + CV)
    bad = os.path.join(ROOT, "bad")
    for d in (data, preds, gts, bad):
        os.makedirs(d, exist_ok=True)

    for stem, (w, h), text, is_sentence, shapes, enc in IMAGES:
        rng = np.random.default_rng(sum(map(ord, stem)))
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)),
                        rng.integers(0, 256, (h, w))], -1).astype(np.uint8)
        Image.fromarray(img, "RGB").save(os.path.join(data, stem + ".jpg"), quality=90)
        anno = {"text": text, "is_sentence": is_sentence, "shapes": shapes,
                "imagePath": stem + ".jpg", "imageHeight": h, "imageWidth": w}
        with open(os.path.join(data, stem + ".json"), "wb") as f:
            f.write(json.dumps(anno, ensure_ascii=False, indent=1).encode(enc))

    prompts, rows = {}, []
    i_sum = u_sum = iou_sum = None
    count = 0
    for stem in sorted(s for s, *_ in IMAGES):
        img = np.array(Image.open(os.path.join(data, stem + ".jpg")))
        h, w = img.shape[:2]
        anno, was_cp1252 = read_anno(os.path.join(data, stem + ".json"))
        gt = gt_mask(anno, h, w)
        Image.fromarray(gt, "L").save(os.path.join(gts, stem + ".png"), optimize=False)
        rng = np.random.default_rng(1000 + sum(map(ord, stem)))
        pred_path = os.path.join(preds, stem + ".png")
        write_png_rgb_if(stem, make_pred(stem, gt, anno["shapes"], rng), pred_path)

        query = anno["text"][0].strip()
        prompts[stem] = {"query": query, "is_sentence": bool(anno["is_sentence"]),
                         "user_message": user_message(query, anno["is_sentence"]),
                         "from_cp1252": was_cp1252}

        # the prediction as `lisa eval` reads it: non-zero in any channel
        p = np.array(Image.open(pred_path))
        p = (p.reshape(h, w, -1).max(axis=2) > 0).astype(np.int32)
        pred_t = torch.from_numpy(p)
        gt_t = torch.from_numpy(gt.astype(np.int32))
        inter_i, union_i = inter_union(pred_t, gt_t)
        intersection = 0.0 + inter_i          # float32 tensors, as validate() makes them
        union = 0.0 + union_i
        acc_iou = 0.0 + inter_i / (union_i + 1e-5)
        acc_iou[union_i == 0] += 1.0
        intersection, union = intersection.numpy(), union.numpy()
        acc_iou = acc_iou.numpy() / 1
        i_sum = intersection if i_sum is None else i_sum + intersection
        u_sum = union if u_sum is None else u_sum + union
        iou_sum = acc_iou if iou_sum is None else iou_sum + acc_iou
        count += 1
        rows.append("%s %d %d %d %d %.8f" % (stem, w, h, int(inter_i[1]), int(union_i[1]),
                                             float(acc_iou[1])))

    def reduce(s):
        t = torch.tensor(s.tolist() + [count], dtype=torch.float32)
        return t[:-1].numpy(), t[-1].item()

    iou_s, n = reduce(iou_sum)
    giou = (iou_s / (n + 1e-5))[1]
    i_s, _ = reduce(i_sum)
    u_s, _ = reduce(u_sum)
    ciou = (i_s / (u_s + 1e-10))[1]
    assert giou.dtype == np.float32 and ciou.dtype == np.float32
    with open(os.path.join(ROOT, "expected-%s.txt" % CV), "w") as f:
        f.write("# gen_reasonseg.py with OpenCV %s: stem width height intersection union iou\n"
                % cv2.__version__)
        f.write("\n".join(rows) + "\n")
        f.write("gIoU %.8f\ncIoU %.8f\n" % (float(giou), float(ciou)))
    with open(os.path.join(ROOT, "prompts.json"), "w", encoding="utf-8") as f:
        json.dump(prompts, f, ensure_ascii=False, indent=1, sort_keys=True)
        f.write("\n")
    for name, text in BAD.items():
        with open(os.path.join(bad, name), "w", encoding="utf-8") as f:
            f.write(text)
    print("OpenCV %s: gIoU %.8f cIoU %.8f" % (cv2.__version__, giou, ciou), file=sys.stderr)


if __name__ == "__main__":
    main()
