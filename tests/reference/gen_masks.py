"""Writes tests/fixtures/masks/cases.json: binary masks with their COCO RLE
(counts string), area and bbox from pycocotools, and LISA chat.py's red
overlay computed with numpy exactly as chat.py does.

Run: python tests/reference/gen_masks.py   (needs numpy and pycocotools;
pycocotools installs with `pip install --no-deps pycocotools`)."""
import json
import os

import numpy as np
from pycocotools import mask as mask_utils

OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "masks")


def rows(m):
    return ["".join("1" if v else "0" for v in r) for r in m]


def main():
    rng = np.random.RandomState(7)
    masks = []
    h, w = 13, 17
    masks.append(np.zeros((h, w), np.uint8))                       # empty
    masks.append(np.ones((h, w), np.uint8))                        # full
    m = np.zeros((h, w), np.uint8); m[3:9, 4:11] = 1; masks.append(m)   # box
    m = np.zeros((h, w), np.uint8); m[0, 0] = 1; m[h - 1, w - 1] = 1; masks.append(m)  # corners
    m = np.zeros((h, w), np.uint8); m[h - 1, 2] = 1; m[0, 3] = 1; masks.append(m)  # run across columns
    masks.append((rng.rand(h, w) > 0.5).astype(np.uint8))          # noise
    masks.append((rng.rand(h, w) > 0.9).astype(np.uint8))          # sparse noise
    big = np.zeros((40, 300), np.uint8); big[5:35, 10:290] = 1; big[20, :] = 0
    masks.append(big)                                              # long runs (multi-char counts)
    cases = []
    for m in masks:
        rle = mask_utils.encode(np.asfortranarray(m))
        cases.append({
            "h": int(m.shape[0]), "w": int(m.shape[1]), "rows": rows(m),
            "counts": rle["counts"].decode("ascii"),
            "area": int(mask_utils.area(rle)),
            "bbox": [int(round(v)) for v in mask_utils.toBbox(rle).tolist()],
        })
    img = rng.randint(0, 256, size=(5, 7, 3)).astype(np.uint8)
    pm = (rng.rand(5, 7) > 0.5)
    save = img.copy()
    save[pm] = (img * 0.5 + pm[:, :, None].astype(np.uint8) * np.array([255, 0, 0]) * 0.5)[pm]
    overlay = {"h": 5, "w": 7, "image": img.reshape(-1).tolist(), "rows": rows(pm),
               "expected": save.reshape(-1).tolist()}
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump({"rle": cases, "overlay": overlay}, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
