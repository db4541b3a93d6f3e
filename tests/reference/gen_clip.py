#!/usr/bin/env python3
"""gen_clip.py: a tiny random-weight CLIP vision tower and LLaVA projectors,
with transformers 4.31 reference outputs, for tests/unit/test-clip.c.

Writes tests/fixtures/clip/:
  config.json, model.safetensors   CLIPVisionModel(CLIPVisionConfig(image_size 224,
                                   patch_size 14 -> 256 patches as in LISA, hidden 32,
                                   4 layers, 4 heads, intermediate 64, quick_gelu,
                                   layer_norm_eps 1e-5)), save_pretrained(safe_serialization
                                   =True), fp32; names "vision_model.*"
  projector.safetensors            fp32: a linear projector 32 -> 48 as LISA's
                                   ("model.mm_projector.{weight,bias}") and an
                                   mlp2x_gelu one as LLaVA-1.5's, under the prefix
                                   "llava15.model.mm_projector." ("0.*", "2.*")
  features.bin                     float32 (2, 256, 32): hidden_states[-2][:, 1:]
  proj-linear.bin                  float32 (2, 256, 48): linear projector of features
  proj-mlp2x_gelu.bin              float32 (2, 256, 48): Linear, GELU (erf), Linear

Pixels are not stored: both sides compute them from integers, exactly in
float32 (every term is a small dyadic rational):
  pixel[b][c][y][x] = ((x/8*5 + y/8*3 + c*7 + b*11) % 17) / 8 - 1
                      + ((x*73 + y*151 + c*31 + b*17) % 257) / 1024
(integer division), shape (2, 3, 224, 224), range about [-1, 1.25] like
CLIPImageProcessor output. test-clip.c has the same formula.

Weights: HF's CLIP init, then every LayerNorm weight 1 + 0.1 N(0,1) and bias
0.1 N(0,1) (HF leaves them 1 and 0, which would hide a swapped weight/bias),
and the class and position embeddings N(0, 0.5) so the CLS row matters.

Deterministic (fixed seed, one thread). Run with the reference venv:
  /work/venv/bin/python tests/reference/gen_clip.py [--out DIR]
"""
import argparse
import os

import numpy as np
import torch
import torch.nn as nn
import transformers
from safetensors.torch import save_file
from transformers import CLIPVisionConfig, CLIPVisionModel

B, S = 2, 224


def pixels():
    """The deterministic pixel tensor (B, 3, S, S), exactly as test-clip.c computes it."""
    b, c, y, x = np.meshgrid(np.arange(B), np.arange(3), np.arange(S), np.arange(S), indexing="ij")
    coarse = ((x // 8) * 5 + (y // 8) * 3 + c * 7 + b * 11) % 17
    fine = (x * 73 + y * 151 + c * 31 + b * 17) % 257
    v = (coarse.astype(np.float32) / np.float32(8) - np.float32(1)) + \
        fine.astype(np.float32) / np.float32(1024)
    return torch.from_numpy(v.astype(np.float32))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.normpath(os.path.join(here, "..", "fixtures", "clip")))
    args = ap.parse_args()
    assert transformers.__version__ == "4.31.0", transformers.__version__
    torch.set_grad_enabled(False)
    torch.set_num_threads(1)
    torch.manual_seed(20240603)

    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                           num_attention_heads=4, image_size=224, patch_size=14,
                           hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=32)
    model = CLIPVisionModel(cfg).eval()
    for mod in model.modules():
        if isinstance(mod, nn.LayerNorm):
            mod.weight.copy_(1.0 + 0.1 * torch.randn_like(mod.weight))
            mod.bias.copy_(0.1 * torch.randn_like(mod.bias))
    emb = model.vision_model.embeddings
    emb.class_embedding.copy_(0.5 * torch.randn_like(emb.class_embedding))
    emb.position_embedding.weight.copy_(0.5 * torch.randn_like(emb.position_embedding.weight))

    os.makedirs(args.out, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)

    px = pixels()
    out = model(pixel_values=px, output_hidden_states=True)
    assert len(out.hidden_states) == cfg.num_hidden_layers + 1
    feats = out.hidden_states[-2][:, 1:].contiguous()  # LLaVA: select_layer -2, 'patch'
    assert feats.shape == (B, 256, 32)

    hout = 48
    linear = nn.Linear(32, hout)
    linear.weight.copy_(torch.randn(hout, 32) / 32 ** 0.5)
    linear.bias.copy_(0.1 * torch.randn(hout))
    mlp = nn.Sequential(nn.Linear(32, hout), nn.GELU(), nn.Linear(hout, hout))  # LLaVA builder
    for lin in (mlp[0], mlp[2]):
        lin.weight.copy_(torch.randn_like(lin.weight) / lin.in_features ** 0.5)
        lin.bias.copy_(0.1 * torch.randn_like(lin.bias))
    save_file({"model.mm_projector.weight": linear.weight.contiguous(),
               "model.mm_projector.bias": linear.bias.contiguous(),
               "llava15.model.mm_projector.0.weight": mlp[0].weight.contiguous(),
               "llava15.model.mm_projector.0.bias": mlp[0].bias.contiguous(),
               "llava15.model.mm_projector.2.weight": mlp[2].weight.contiguous(),
               "llava15.model.mm_projector.2.bias": mlp[2].bias.contiguous()},
              os.path.join(args.out, "projector.safetensors"), metadata={"format": "pt"})

    def raw(name, t):
        t.detach().to(torch.float32).contiguous().numpy().tofile(os.path.join(args.out, name))

    raw("features.bin", feats)
    raw("proj-linear.bin", linear(feats))
    raw("proj-mlp2x_gelu.bin", mlp(feats))
    total = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
    print(f"{args.out}: {len(os.listdir(args.out))} files, {total / 1e3:.0f} kB; "
          f"features max |x| {feats.abs().max():.3g}")


if __name__ == "__main__":
    main()
