#!/usr/bin/env python3
"""gen_images.py: image-decoding and preprocessing fixtures, computed with
Pillow 9.4.0, numpy, torch 1.13 and transformers 4.31's CLIPImageProcessor.

Writes tests/fixtures/images/ (read by tests/unit/test-image.c,
tests/unit/test-preprocess.c and tests/cli/preprocess.sh):

  *.png, *.jpg     the fixture images (photographs from scikit-image's data
                   folder, re-encoded small where needed, and synthetic ones);
                   licences in LICENSES.md
  hostile/         inputs the decoder must refuse (CMYK JPEG, a PNG whose
                   header claims 60000x60000) or survive (malformed EXIF)
  images.txt       per image: size and checksum of the decoded RGB, and the
                   checksums of both preprocessing branches (uint8 resized
                   image and float32 tensor)
  resample.txt     extra Pillow resize cases (many output sizes, both filters)
  norm.txt         the exact float32 of every (branch, channel, uint8 value)
                   normalisation, so the elementwise maps are covered fully
  cli-sha256.txt   SHA-256 of the PPM files `lisa preprocess` must write

Checksums are "wsum64": sum over bytes b[i] * (((i * K) + C) | 1) mod 2^64,
xor the length (K = 0x9E3779B97F4A7C15, C = 0x632BE59BD9B4E019). Any single
changed byte changes it; the C tests compute the same. Full references would
not fit the fixture budget (a SAM tensor alone is 12 MB).

How each reference is computed (as LISA's chat.py does, with cv2 replaced by
Pillow for the decode, which is byte-equal for these files):
  decode   np.array(ImageOps.exif_transpose(Image.open(f)).convert("RGB"));
           16-bit PNGs: the stored 16-bit samples >> 8 (what cv2.imread does;
           Pillow clips 16-bit gray instead, so it is not used there)
  CLIP     CLIPImageProcessor(openai/clip-vit-large-patch14 settings):
           .resize + .center_crop on the uint8 image give the uint8 crop;
           .preprocess(..., return_tensors="np") gives the tensor (CHW)
  SAM      segment-anything ResizeLongestSide(1024).get_preprocess_shape,
           Image.fromarray(rgb).resize((neww, newh), Image.BILINEAR) (what
           torchvision's resize does for a PIL image), then chat.py's
           preprocess in torch: (x - pixel_mean) / pixel_std, F.pad to 1024

Inputs: scikit-image's data folder (only its image files are read; skimage is
not imported). Get it without touching the venv's numpy with
  pip download --no-deps scikit-image==0.22.0 -d /tmp/sk && unzip ... 'skimage/data/*'
and pass --skimage-data /tmp/sk/skimage/data.

Deterministic (fixed seeds). Run:
  /work/venv/bin/python tests/reference/gen_images.py --skimage-data DIR
"""
import argparse
import hashlib
import io
import os
import struct
import zlib

import numpy as np
import PIL
import torch
import torch.nn.functional as F
import transformers
from PIL import Image, ImageOps
from transformers import CLIPImageProcessor

K = 0x9E3779B97F4A7C15
C = 0x632BE59BD9B4E019


def wsum64(buf):
    b = np.frombuffer(bytes(buf), dtype=np.uint8).astype(np.uint64)
    i = np.arange(b.size, dtype=np.uint64)
    w = (i * np.uint64(K) + np.uint64(C)) | np.uint64(1)
    s = int(np.sum(b * w, dtype=np.uint64))
    return s ^ b.size


def clip_processor():
    return CLIPImageProcessor(
        do_resize=True, size={"shortest_edge": 224}, resample=3,
        do_center_crop=True, crop_size={"height": 224, "width": 224},
        do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711], do_convert_rgb=True)


SAM_MEAN = torch.Tensor([123.675, 116.28, 103.53]).view(-1, 1, 1)
SAM_STD = torch.Tensor([58.395, 57.12, 57.375]).view(-1, 1, 1)


def sam_shape(h, w, long_side=1024):
    scale = long_side * 1.0 / max(h, w)
    newh, neww = h * scale, w * scale
    return int(newh + 0.5), int(neww + 0.5)


def sam_branch(rgb):
    newh, neww = sam_shape(*rgb.shape[:2])
    u8 = np.array(Image.fromarray(rgb).resize((neww, newh), Image.BILINEAR))
    x = torch.from_numpy(u8).permute(2, 0, 1).contiguous()
    x = (x - SAM_MEAN) / SAM_STD
    x = F.pad(x, (0, 1024 - neww, 0, 1024 - newh))
    return u8, x.numpy().astype(np.float32)


def clip_branch(proc, rgb):
    r = proc.resize(image=rgb, size={"shortest_edge": 224}, resample=3)
    crop = proc.center_crop(image=r, size={"height": 224, "width": 224})
    t = proc.preprocess(rgb, return_tensors="np")["pixel_values"][0]
    assert r.dtype == np.uint8 and crop.dtype == np.uint8 and crop.shape == (224, 224, 3)
    # The tensor must be the elementwise map of the crop (checked, not assumed).
    again = proc.normalize(image=proc.rescale(image=crop, scale=1 / 255),
                           mean=proc.image_mean, std=proc.image_std)
    assert np.array_equal(again.transpose(2, 0, 1), t)
    return r.shape[:2], np.ascontiguousarray(crop), t.astype(np.float32)


def synth(w, h, seed):
    """Structured test content: gradients, rings, hard edges, saturated
    patches (exercise BICUBIC's overshoot clipping) and a noise patch."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 255 * x / max(w - 1, 1)
    g = 255 * y / max(h - 1, 1)
    b = 127.5 + 127.5 * np.sin(np.hypot(x - w / 3, y - h / 2) / 6.0)
    img = np.stack([r, g, b], -1)
    cb = ((x // 8 + y // 8) % 2 == 1)
    img[(x > w * 0.55) & (x < w * 0.8) & (y > h * 0.2) & (y < h * 0.5) & cb] = 255
    img[(x > w * 0.55) & (x < w * 0.8) & (y > h * 0.2) & (y < h * 0.5) & ~cb] = 0
    nz = (x < w * 0.25) & (y > h * 0.6)
    img[nz] = rng.integers(0, 256, size=(int(nz.sum()), 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def png16(path, arr16):
    """Writes a 16-bit PNG (gray HxW or RGB HxWx3) by hand: Pillow cannot."""
    h, w = arr16.shape[:2]
    ctype = 2 if arr16.ndim == 3 else 0
    raw = b"".join(b"\0" + arr16[yy].astype(">u2").tobytes() for yy in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, ctype, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    with open(path, "wb") as f:
        f.write(data)


def huge_png(path):
    """A valid PNG signature and IHDR claiming 60000x60000 RGB, a tiny IDAT."""
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    with open(path, "wb") as f:
        f.write(data)


def bad_exif_jpeg(path, base):
    """A JPEG whose APP1 Exif segment has an IFD offset past its end and an
    Orientation entry cut short. Decoders must ignore it, not crash."""
    buf = io.BytesIO()
    base.save(buf, "JPEG", quality=85)
    j = buf.getvalue()
    tiff = b"II*\x00" + struct.pack("<I", 0xFFFFFF00)  # IFD0 far out of bounds
    tiff2 = b"MM\x00*" + struct.pack(">I", 8) + struct.pack(">H", 40) + b"\x01\x12\x00\x03"
    app1 = b"Exif\x00\x00" + tiff + b"junk"
    app1b = b"Exif\x00\x00" + tiff2  # claims 40 entries, holds part of one
    seg = b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1
    segb = b"\xff\xe1" + struct.pack(">H", len(app1b) + 2) + app1b
    with open(path, "wb") as f:
        f.write(j[:2] + seg + j[2:])
    with open(path.replace(".jpg", "2.jpg"), "wb") as f:
        f.write(j[:2] + segb + j[2:])


def build_images(sk, out):
    """Writes the fixture images; returns [(file, reference RGB or None)]."""
    made = []

    def save(name, im, **kw):
        im.save(os.path.join(out, name), **kw)
        made.append((name, None))

    # Photographs (scikit-image data; licences in LICENSES.md).
    astro = Image.open(os.path.join(sk, "astronaut.png")).convert("RGB")
    save("astronaut.jpg", astro, quality=85)  # 4:2:0 (h2v2 fancy upsampling)
    chelsea = Image.open(os.path.join(sk, "chelsea.png")).convert("RGB")
    save("chelsea.png", chelsea.crop((60, 20, 380, 260)), optimize=True)
    coffee = Image.open(os.path.join(sk, "coffee.png")).convert("RGB")
    save("coffee.jpg", coffee, quality=85, subsampling=0)  # 4:4:4
    with open(os.path.join(sk, "rocket.jpg"), "rb") as f:  # a camera encoder's file
        data = f.read()
    with open(os.path.join(out, "rocket.jpg"), "wb") as f:
        f.write(data)
    made.append(("rocket.jpg", None))
    hubble = Image.open(os.path.join(sk, "hubble_deep_field.jpg")).convert("RGB")
    save("hubble-progressive.jpg", hubble.crop((0, 0, 520, 400)), quality=80,
         progressive=True, subsampling=1)  # progressive, 4:2:2 (h2v1)
    camera = Image.open(os.path.join(sk, "camera.png"))
    save("camera-gray.png", camera.crop((128, 64, 384, 320)), optimize=True)
    save("camera-gray.jpg", camera.crop((100, 100, 301, 251)), quality=85)  # 1 component
    horse = Image.open(os.path.join(sk, "horse.png"))
    assert horse.mode == "RGBA"
    save("horse-rgba.png", horse, optimize=True)
    pal = chelsea.crop((100, 50, 260, 170)).quantize(colors=48)
    save("chelsea-palette.png", pal, transparency=0)  # P with tRNS

    # Synthetic shapes.
    save("tall.png", Image.fromarray(synth(180, 640, 1)))
    save("wide.jpg", Image.fromarray(synth(900, 160, 2)), quality=85)
    save("tiny.png", Image.fromarray(synth(3, 5, 3)))
    save("tiny.jpg", Image.fromarray(synth(7, 5, 4)), quality=90)  # odd sizes, 4:2:0
    save("big.jpg", Image.fromarray(synth(1500, 700, 5)), quality=85)
    save("square-up.png", Image.fromarray(synth(200, 200, 6)))
    save("bilevel.png", Image.fromarray(synth(50, 40, 7)).convert("1"))
    save("rgba-synth.png", Image.fromarray(np.dstack([synth(120, 90, 8),
         (np.arange(120 * 90) % 256).reshape(90, 120).astype(np.uint8)]), "RGBA"))

    rng = np.random.default_rng(9)
    a16 = (synth(120, 90, 10).astype(np.uint16) * 257) ^ rng.integers(0, 256, (90, 120, 3)).astype(np.uint16)
    png16(os.path.join(out, "rgb16.png"), a16)
    made.append(("rgb16.png", (a16 >> 8).astype(np.uint8)))
    g16 = (synth(64, 48, 11)[..., 0].astype(np.uint16) * 257) ^ rng.integers(0, 256, (48, 64)).astype(np.uint16)
    png16(os.path.join(out, "gray16.png"), g16)
    made.append(("gray16.png", np.repeat((g16 >> 8).astype(np.uint8)[..., None], 3, -1)))

    # EXIF orientations 2..8 on an asymmetric image (48x32).
    base = Image.fromarray(synth(48, 32, 12))
    for o in range(2, 9):
        exif = Image.Exif()
        exif[0x0112] = o
        save(f"exif{o}.jpg", base, quality=90, exif=exif.tobytes())
    # Big-endian ("MM") EXIF, orientation 6, with a second IFD entry first.
    mm = (b"MM\x00*" + struct.pack(">I", 8) + struct.pack(">H", 2)
          + struct.pack(">HHII", 0x010F, 2, 4, 0x41424300)  # Make "ABC"
          + struct.pack(">HHIHH", 0x0112, 3, 1, 6, 0) + struct.pack(">I", 0))
    save("exif6-mm.jpg", base, quality=90, exif=b"Exif\x00\x00" + mm)
    return made


def write_hostile(out):
    h = os.path.join(out, "hostile")
    os.makedirs(h, exist_ok=True)
    cmyk = Image.fromarray(synth(16, 16, 13)).convert("CMYK")
    cmyk.save(os.path.join(h, "cmyk.jpg"), quality=90)
    huge_png(os.path.join(h, "huge.png"))
    bad_exif_jpeg(os.path.join(h, "exif-bad.jpg"), Image.fromarray(synth(24, 16, 14)))


def ref_rgb(path):
    im = ImageOps.exif_transpose(Image.open(path))
    return np.ascontiguousarray(np.array(im.convert("RGB")))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skimage-data", required=True)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "fixtures", "images"))
    args = ap.parse_args()
    assert PIL.__version__ == "9.4.0", PIL.__version__
    assert transformers.__version__.startswith("4.31"), transformers.__version__
    out = args.out
    os.makedirs(out, exist_ok=True)
    made = build_images(args.skimage_data, out)
    write_hostile(out)
    proc = clip_processor()

    lines = ["# name W H rgb_wsum clip resized_h resized_w crop_u8_wsum tensor_wsum "
             "sam new_h new_w u8_wsum tensor_wsum",
             "# generated by tests/reference/gen_images.py (Pillow %s, transformers %s, torch %s)"
             % (PIL.__version__, transformers.__version__, torch.__version__)]
    cli = []
    for name, forced in made:
        rgb = ref_rgb(os.path.join(out, name))
        if forced is not None:  # 16-bit: cv2 semantics (>> 8)
            if name == "rgb16.png":
                assert np.array_equal(rgb, forced), "Pillow's RGB;16 unpack is >> 8 too"
            rgb = forced
        h, w = rgb.shape[:2]
        (rh, rw), crop, ct = clip_branch(proc, rgb)
        su8, st = sam_branch(rgb)
        lines.append("%s %d %d %016x clip %d %d %016x %016x sam %d %d %016x %016x" % (
            name, w, h, wsum64(rgb.tobytes()), rh, rw, wsum64(crop.tobytes()), wsum64(ct.tobytes()),
            su8.shape[0], su8.shape[1], wsum64(su8.tobytes()), wsum64(st.tobytes())))
        for branch, img in (("clip", crop), ("sam", su8)):
            if name in ("tiny.png", "astronaut.jpg", "exif6.jpg"):
                ppm = b"P6\n%d %d\n255\n" % (img.shape[1], img.shape[0]) + img.tobytes()
                cli.append("%s %s %s" % (name, branch, hashlib.sha256(ppm).hexdigest()))
    with open(os.path.join(out, "images.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out, "cli-sha256.txt"), "w") as f:
        f.write("\n".join(cli) + "\n")

    # Resize sweep: a noise image and a photo crop, many output sizes.
    rng = np.random.default_rng(20)
    noise = rng.integers(0, 256, (31, 29, 3), dtype=np.uint8)
    noise[5:12, 4:20] = 255
    noise[15:25, 10:14] = 0
    Image.fromarray(noise).save(os.path.join(out, "resample-noise.png"))
    row = np.array([[0, 10, 200, 255, 30, 40, 250, 5]], dtype=np.uint8)
    Image.fromarray(np.repeat(row[..., None], 3, -1)).save(os.path.join(out, "resample-row.png"))
    sizes = [(1, 1), (2, 2), (3, 5), (29, 31), (29, 7), (6, 31), (58, 62), (100, 37), (13, 90),
             (15, 16), (14, 15), (28, 30), (30, 32), (57, 8), (200, 211), (1, 31), (29, 1)]
    rlines = ["# src FILE W H, then: filter out_w out_h wsum (Pillow %s Image.resize)" % PIL.__version__]
    for fname, img, extra in (("resample-noise.png", noise, sizes),
                              ("resample-row.png", np.repeat(row[..., None], 3, -1),
                               [(3, 1), (13, 1), (8, 2), (5, 3), (2, 1)])):
        rlines.append("src %s %d %d" % (fname, img.shape[1], img.shape[0]))
        pil = Image.fromarray(img)
        for filt, fid in (("bilinear", Image.BILINEAR), ("bicubic", Image.BICUBIC)):
            for ow, oh in extra:
                r = np.array(pil.resize((ow, oh), fid))
                rlines.append("%s %d %d %016x" % (filt, ow, oh, wsum64(r.tobytes())))
    for ow, oh in ((3, 1), (13, 1)):
        r = np.array(Image.fromarray(np.repeat(row[..., None], 3, -1)).resize((ow, oh), Image.BICUBIC))
        rlines.append("# row bicubic %dx%d: %s" % (ow, oh, " ".join(str(v) for v in r[0, :, 0])))
    r = np.array(Image.fromarray(np.repeat(row[..., None], 3, -1)).resize((3, 1), Image.BILINEAR))
    rlines.append("# row bilinear 3x1: %s" % " ".join(str(v) for v in r[0, :, 0]))
    with open(os.path.join(out, "resample.txt"), "w") as f:
        f.write("\n".join(rlines) + "\n")

    # Elementwise normalisation tables, from the very same code paths.
    # 256x2x3 HWC: a leading 1 or 3 would make transformers infer CHW.
    vals = np.repeat(np.repeat(np.arange(256, dtype=np.uint8)[:, None, None], 2, 1), 3, -1)
    cn = proc.normalize(image=proc.rescale(image=vals, scale=1 / 255),
                        mean=proc.image_mean, std=proc.image_std)
    assert cn.dtype == np.float32
    x = torch.from_numpy(np.ascontiguousarray(vals)).permute(2, 0, 1).contiguous()
    sn = ((x - SAM_MEAN) / SAM_STD).numpy()
    nl = ["# branch channel value float32-bits"]
    for c in range(3):
        for v in range(256):
            nl.append("clip %d %d %08x" % (c, v, struct.unpack("<I", struct.pack("<f", cn[v, 0, c]))[0]))
    for c in range(3):
        for v in range(256):
            nl.append("sam %d %d %08x" % (c, v, struct.unpack("<I", struct.pack("<f", sn[c, v, 0]))[0]))
    with open(os.path.join(out, "norm.txt"), "w") as f:
        f.write("\n".join(nl) + "\n")
    print("wrote", len(made), "images to", out)


if __name__ == "__main__":
    main()
