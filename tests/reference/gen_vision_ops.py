#!/usr/bin/env python3
"""gen_vision_ops.py: reference cases for the backend's vision ops
(kernels/backend.h, "vision ops"), computed in fp32 with torch 1.13.1,
transformers 4.31 (CLIP's quick_gelu) and segment_anything 1.0 (SAM's window
partitioning and decomposed relative positions).

Writes tests/fixtures/vision-ops/ops.json, read by tests/unit/test-vision-ops.c.
The file documents its own fields under "about". Every tensor is an object
{"shape": [...], "dtype": "f32"|"bf16", "data": [...]} whose data are exact
float32 values (the shortest repr of each); a "bf16" tensor holds values
already rounded to bf16, which the C test narrows exactly.

Ops and how each reference is computed:
  layernorm           torch.nn.LayerNorm (eps 1e-5 and 1e-6)
  activation          nn.GELU() (exact erf), transformers QuickGELUActivation
                      (x * sigmoid(1.702 x), CLIP 4.31), nn.ReLU, nn.SiLU
  add_bias            x + bias
  attention_full      (q * scale) @ k^T, softmax(-1) in fp32, @ v; with
                      relative positions segment_anything's Attention.forward:
                      add_decomposed_rel_pos(attn, q (unscaled), rel_h, rel_w)
  im2col              F.unfold (the patches, exact) and F.conv2d (the patches
                      times the weight viewed as (O, C*k*k), plus bias)
  conv_transpose_2x2  nn.ConvTranspose2d(C, O, 2, 2) on a channels-last input
  window_partition    segment_anything window_partition / window_unpartition
  resize_bilinear     F.interpolate(bilinear, align_corners=False) of the
                      top-left crop x[..., :hc, :wc]
  copy_cols, transpose  slicing and permute

segment_anything's package __init__ imports torchvision (its predictor); the
script loads only segment_anything.modeling, so torchvision is not needed.

Deterministic (fixed seed, one thread). Run with the reference venv:
  /work/venv/bin/python tests/reference/gen_vision_ops.py [--out PATH]
"""
import argparse
import importlib.util
import json
import os
import sys
import types

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import transformers
from transformers.activations import QuickGELUActivation


def sam_image_encoder():
    """segment_anything.modeling.image_encoder without the package __init__."""
    if "segment_anything" not in sys.modules:
        spec = importlib.util.find_spec("segment_anything")
        pkg = types.ModuleType("segment_anything")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["segment_anything"] = pkg
    from segment_anything.modeling import image_encoder
    return image_encoder


ABOUT = {
    "format": "Every op key holds a list of cases. A tensor is {shape, dtype, data}: data is "
              "flat row-major (torch order, outermost first) exact float32 values; dtype bf16 "
              "means the values are bf16-representable and the tensor is stored as bf16. "
              "Integer parameters are plain numbers.",
    "layernorm": "out = nn.LayerNorm(C, eps)(x) with weight w, bias b; x (n, C).",
    "activation": "out = act(x); act is gelu (exact erf), quick_gelu (x*sigmoid(1.702x)), "
                  "relu or silu.",
    "add_bias": "out (n, N) = x (n, N) + bias (N).",
    "attention_full": "q (B, Lq, H, D), k, v (B, Lk, H, D); out (B, Lq, H*D) = "
                      "softmax((q*scale) k^T [+ SAM rel pos]) v per head; rel_h, rel_w "
                      "(2S-1, D) or absent (Lq = Lk = S*S when present, relative terms use the "
                      "unscaled q). scale is the float32 scale.",
    "im2col": "x (B, H, W, C) or (B, C, H, W) when channels_first; kernel k, stride, pad. "
              "cols (B*Ho*Wo, C*k*k) = F.unfold patches, columns (c, ky, kx); out (B*Ho*Wo, O) "
              "= conv2d(x, w (O, C, k, k), bias (O)) as rows (b, y, x).",
    "conv_transpose_2x2": "x (B, H, W, C) channels-last, w (C, O, 2, 2), bias (O) or absent; "
                          "out (B, 2H, 2W, O) = ConvTranspose2d(C, O, 2, 2) channels-last.",
    "window_partition": "x (B, H, W, C), window ws: out (B*nh*nw, ws*ws, C) = "
                        "segment_anything window_partition (zero padding bottom/right).",
    "window_unpartition": "x (B*nh*nw, ws*ws, C) -> out (B, H, W, C) = segment_anything "
                          "window_unpartition (crop of the padding).",
    "resize_bilinear": "x (N, H, W) planes; out (N, Ho, Wo) = F.interpolate(x[:, None, :hc, :wc], "
                       "(Ho, Wo), mode=bilinear, align_corners=False).",
    "copy_cols": "out (n, c) = src (n, C)[:, c0:c0+c].",
    "transpose": "out (B, C, R) = x (B, R, C).transpose(1, 2).",
}


def tens(t, dtype="f32"):
    """A tensor as {shape, dtype, data} with exact float32 values."""
    if dtype == "bf16":
        t = t.to(torch.bfloat16)
    a = t.detach().to(torch.float32).contiguous().numpy()
    return {"shape": list(a.shape), "dtype": dtype,
            "data": [float(np.float32(v)) for v in a.reshape(-1)]}


def gen_layernorm(g):
    cases = []
    for n, C, eps, wd, shift in ((4, 24, 1e-5, "f32", 0.0), (3, 37, 1e-6, "bf16", 0.0),
                                 (5, 64, 1e-6, "f32", 10.0), (2, 256, 1e-5, "f32", 0.0)):
        # With a mean offset, rows keep |mean| / std <= 20: torch computes
        # x * rstd - mean * rstd in fp32, which cancels for ill-conditioned rows
        # (its own error grows like |mean| / std * 6e-8).
        scales = torch.tensor([1.0, 3.0, 100.0, 7.0, 0.5] if shift else
                              [1e-3, 1.0, 100.0, 7.0, 0.5])[:n].unsqueeze(1)
        x = torch.randn(n, C, generator=g) * scales + shift
        ln = nn.LayerNorm(C, eps=eps)
        w = (1.0 + 0.1 * torch.randn(C, generator=g)).to(torch.bfloat16 if wd == "bf16" else torch.float32)
        b = (0.1 * torch.randn(C, generator=g)).to(torch.bfloat16 if wd == "bf16" else torch.float32)
        ln.weight.data.copy_(w.float())
        ln.bias.data.copy_(b.float())
        cases.append({"name": f"layernorm n{n} C{C} eps{eps:g} {wd} shift{shift:g}", "eps": eps,
                      "x": tens(x), "w": tens(w.float(), wd), "b": tens(b.float(), wd),
                      "out": tens(ln(x))})
    return cases


def gen_activation(g):
    acts = {"gelu": nn.GELU(), "quick_gelu": QuickGELUActivation(), "relu": nn.ReLU(),
            "silu": nn.SiLU()}
    x = 3.0 * torch.randn(3, 40, generator=g)
    x[0, :12] = torch.tensor([0.0, -0.0, 1e-8, -1e-8, 100.0, -100.0, 20.0, -20.0, 10.0, -10.0,
                              0.5, -0.5])
    return [{"name": f"activation {k}", "act": k, "x": tens(x), "out": tens(f(x))}
            for k, f in acts.items()]


def gen_add_bias(g):
    cases = []
    for wd in ("f32", "bf16"):
        x = torch.randn(3, 17, generator=g)
        b = torch.randn(17, generator=g).to(torch.bfloat16 if wd == "bf16" else torch.float32).float()
        cases.append({"name": f"add_bias n3 N17 {wd}", "x": tens(x), "bias": tens(b, wd),
                      "out": tens(x + b)})
    return cases


def attention_ref(q, k, v, scale, rel=None):
    """q (B, Lq, H, D), k/v (B, Lk, H, D) -> (B, Lq, H*D), SAM's Attention arithmetic."""
    B, Lq, H, D = q.shape
    Lk = k.shape[1]
    qh = q.permute(0, 2, 1, 3).reshape(B * H, Lq, D)
    kh = k.permute(0, 2, 1, 3).reshape(B * H, Lk, D)
    vh = v.permute(0, 2, 1, 3).reshape(B * H, Lk, D)
    attn = (qh * scale) @ kh.transpose(-2, -1)
    if rel is not None:
        ie = sam_image_encoder()
        S = (rel[0].shape[0] + 1) // 2
        attn = ie.add_decomposed_rel_pos(attn, qh, rel[0], rel[1], (S, S), (S, S))
    attn = attn.softmax(dim=-1)
    o = (attn @ vh).view(B, H, Lq, D).permute(0, 2, 1, 3).reshape(B, Lq, H * D)
    return o


def gen_attention_full(g):
    cases = []
    for B, Lq, Lk, H, D in ((2, 5, 7, 2, 8), (1, 70, 20, 2, 8)):
        q = 2.0 * torch.randn(B, Lq, H, D, generator=g)
        k = 2.0 * torch.randn(B, Lk, H, D, generator=g)
        v = torch.randn(B, Lk, H, D, generator=g)
        scale = float(np.float32(D ** -0.5))
        cases.append({"name": f"attention_full B{B} Lq{Lq} Lk{Lk} H{H} D{D}", "scale": scale,
                      "q": tens(q), "k": tens(k), "v": tens(v),
                      "out": tens(attention_ref(q, k, v, scale))})
    # SAM windows: S x S grid; S = 9 gives 81 queries, beyond one 64-row query block.
    for B, S, H, D in ((2, 5, 2, 8), (1, 9, 1, 8)):
        L = S * S
        q = 1.5 * torch.randn(B, L, H, D, generator=g)
        k = 1.5 * torch.randn(B, L, H, D, generator=g)
        v = torch.randn(B, L, H, D, generator=g)
        rel_h = 0.5 * torch.randn(2 * S - 1, D, generator=g)
        rel_w = 0.5 * torch.randn(2 * S - 1, D, generator=g)
        scale = float(np.float32(D ** -0.5))
        cases.append({"name": f"attention_full rel-pos B{B} S{S} H{H} D{D}", "scale": scale,
                      "q": tens(q), "k": tens(k), "v": tens(v), "rel_h": tens(rel_h),
                      "rel_w": tens(rel_w),
                      "out": tens(attention_ref(q, k, v, scale, (rel_h, rel_w)))})
    return cases


def gen_im2col(g):
    cases = []
    # (B, C, H, W, O, k, stride, pad, channels_first)
    for B, C, H, W, O, k, s, p, cf in ((2, 3, 6, 5, 4, 3, 1, 1, False),
                                       (2, 3, 7, 6, 4, 3, 1, 1, True),
                                       (1, 3, 8, 12, 5, 4, 4, 0, True),
                                       (1, 2, 9, 10, 3, 4, 4, 0, False),
                                       (1, 4, 7, 8, 3, 3, 2, 1, False)):
        x_cf = torch.randn(B, C, H, W, generator=g)
        w = torch.randn(O, C, k, k, generator=g) / (C * k * k) ** 0.5
        b = 0.1 * torch.randn(O, generator=g)
        cols = F.unfold(x_cf, k, padding=p, stride=s)  # (B, C*k*k, L)
        cols = cols.transpose(1, 2).reshape(-1, C * k * k)
        out = F.conv2d(x_cf, w, b, stride=s, padding=p).permute(0, 2, 3, 1).reshape(-1, O)
        x = x_cf if cf else x_cf.permute(0, 2, 3, 1)
        cases.append({"name": f"im2col {'CHW' if cf else 'HWC'} B{B} C{C} {H}x{W} k{k} s{s} p{p}",
                      "k": k, "stride": s, "pad": p, "channels_first": int(cf), "x": tens(x),
                      "w": tens(w.reshape(O, -1)), "bias": tens(b), "cols": tens(cols),
                      "out": tens(out)})
    return cases


def gen_conv_transpose(g):
    cases = []
    for B, H, W, C, O, with_bias in ((2, 3, 4, 5, 6, True), (1, 2, 2, 8, 4, False)):
        conv = nn.ConvTranspose2d(C, O, 2, 2, bias=with_bias)
        conv.weight.data.copy_(torch.randn(C, O, 2, 2, generator=g) / C ** 0.5)
        if with_bias:
            conv.bias.data.copy_(0.1 * torch.randn(O, generator=g))
        x = torch.randn(B, H, W, C, generator=g)
        out = conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        case = {"name": f"conv_transpose_2x2 B{B} {H}x{W} C{C} O{O}{' bias' if with_bias else ''}",
                "x": tens(x), "w": tens(conv.weight), "out": tens(out)}
        if with_bias:
            case["bias"] = tens(conv.bias)
        cases.append(case)
    return cases


def gen_windows(g):
    ie = sam_image_encoder()
    part, unpart = [], []
    for B, H, W, C, ws in ((2, 9, 9, 3, 4), (1, 8, 8, 2, 4), (1, 5, 7, 2, 3)):
        x = torch.randn(B, H, W, C, generator=g)
        win, (Hp, Wp) = ie.window_partition(x, ws)
        part.append({"name": f"window_partition B{B} {H}x{W} C{C} ws{ws}", "ws": ws, "x": tens(x),
                     "out": tens(win.reshape(win.shape[0], ws * ws, C))})
        y = torch.randn(*win.shape, generator=g)
        out = ie.window_unpartition(y, ws, (Hp, Wp), (H, W))
        unpart.append({"name": f"window_unpartition B{B} {H}x{W} C{C} ws{ws}", "ws": ws,
                       "x": tens(y.reshape(y.shape[0], ws * ws, C)), "out": tens(out)})
    return part, unpart


def gen_resize(g):
    cases = []
    # (N, H, W, hc, wc, Ho, Wo)
    for N, H, W, hc, wc, Ho, Wo in ((2, 5, 6, 5, 6, 20, 24),     # x4 up (SAM's 256 -> 1024)
                                    (1, 8, 8, 8, 8, 32, 32),
                                    (2, 7, 5, 7, 5, 11, 13),     # non-integer up
                                    (2, 13, 11, 13, 11, 5, 7),   # non-integer down
                                    (1, 6, 20, 6, 20, 9, 7),     # up one axis, down the other
                                    (1, 4, 5, 4, 5, 4, 5),       # same size: a copy
                                    (2, 10, 12, 7, 9, 16, 20),   # crop, then up
                                    (1, 10, 12, 9, 11, 4, 6),    # crop, then down
                                    (1, 16, 16, 11, 16, 21, 30)):
        x = torch.randn(N, H, W, generator=g)
        out = F.interpolate(x[:, None, :hc, :wc], (Ho, Wo), mode="bilinear",
                            align_corners=False)[:, 0]
        cases.append({"name": f"resize_bilinear N{N} {H}x{W} crop {hc}x{wc} -> {Ho}x{Wo}",
                      "hc": hc, "wc": wc, "x": tens(x), "out": tens(out)})
    return cases


def gen_copy_cols(g):
    cases = []
    for n, C, c0, c in ((4, 10, 5, 3), (3, 7, 0, 7), (2, 9, 0, 4)):
        src = torch.randn(n, C, generator=g)
        cases.append({"name": f"copy_cols n{n} C{C} [{c0}, {c0 + c})", "c0": c0, "src": tens(src),
                      "out": tens(src[:, c0:c0 + c])})
    return cases


def gen_transpose(g):
    cases = []
    for B, R, C in ((2, 3, 5), (1, 16, 7)):
        x = torch.randn(B, R, C, generator=g)
        cases.append({"name": f"transpose B{B} R{R} C{C}", "x": tens(x),
                      "out": tens(x.transpose(1, 2))})
    return cases


def dumps(doc):
    """JSON with one line per case (readable diffs, compact arrays)."""
    lines = ["{"]
    keys = list(doc)
    for i, k in enumerate(keys):
        v = doc[k]
        end = "," if i + 1 < len(keys) else ""
        if isinstance(v, list):
            lines.append(f" {json.dumps(k)}: [")
            lines += [f"  {json.dumps(c)}{',' if j + 1 < len(v) else ''}" for j, c in enumerate(v)]
            lines.append(f" ]{end}")
        else:
            lines.append(f" {json.dumps(k)}: {json.dumps(v, indent=1).replace(chr(10), chr(10) + ' ')}{end}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.normpath(
        os.path.join(here, "..", "fixtures", "vision-ops", "ops.json")))
    args = ap.parse_args()
    assert transformers.__version__ == "4.31.0", transformers.__version__
    torch.set_grad_enabled(False)
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(20240602)
    doc = {"about": ABOUT,
           "generator": f"tests/reference/gen_vision_ops.py, torch {torch.__version__}, "
                        f"transformers {transformers.__version__}, segment_anything 1.0"}
    doc["layernorm"] = gen_layernorm(g)
    doc["activation"] = gen_activation(g)
    doc["add_bias"] = gen_add_bias(g)
    doc["attention_full"] = gen_attention_full(g)
    doc["im2col"] = gen_im2col(g)
    doc["conv_transpose_2x2"] = gen_conv_transpose(g)
    doc["window_partition"], doc["window_unpartition"] = gen_windows(g)
    doc["resize_bilinear"] = gen_resize(g)
    doc["copy_cols"] = gen_copy_cols(g)
    doc["transpose"] = gen_transpose(g)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(dumps(doc))
    n = sum(len(v) for k, v in doc.items() if isinstance(v, list))
    print(f"{args.out}: {n} cases, {os.path.getsize(args.out) / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
