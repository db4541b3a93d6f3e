#!/usr/bin/env python3
"""gen_sam.py: SAM fixtures from segment-anything's own modules (fp32, CPU).

Writes tests/fixtures/sam/ (read by tests/unit/test-sam.c):

  model.safetensors  a small random-weight Sam, every key prefixed with
                     LISA's "model.visual_model." (fp32)
  meta.json          configuration, image, sizes, IoU predictions, the input
                     tensor's sum, and multimask_output=True results for the
                     same prompts (IoU (3, 3) and the low-res logits of the
                     3 masks sampled every 1021st pixel of the flattened
                     256x256 plane); "about" repeats this list
  sparse.bin         (3, 1, 32) f32: three [SEG]-style sparse prompts
  image_embed.bin    (64, 64, 32) f32: image embedding, CHANNELS-LAST
                     (the reference's (1, 32, 64, 64) permuted to HWC)
  dense_pe.bin       (64, 64, 32) f32: get_dense_pe(), channels-last
  lowres.bin         (3, 256, 256) f32: low-res mask logits (multimask off)
  masks_logits.bin   (3, H0, W0) f32: postprocess_masks at the original size
  masks.bin          (3, H0, W0) bits: masks_logits > 0, numpy packbits
                     (big-endian bit order) of the flattened array

The model is built from segment-anything's classes (ImageEncoderViT,
PromptEncoder, MaskDecoder, TwoWayTransformer, Sam) with SAM's real geometry
(1024-pixel input, patch 16, 64x64 grid, window 14, one global block) and
small widths: encoder embed_dim 32, depth 2 (block 1 global), 2 heads, neck
32 channels; prompt embed_dim 32; decoder TwoWayTransformer(depth 2, dim 32,
mlp 64, 2 heads), 3 multimask outputs, IoU head hidden 32. Every parameter
is re-drawn from a seeded normal (SAM initialises rel_pos and pos_embed to
zero and norms to 1, which would leave those paths untested).

Input image: tests/fixtures/images/chelsea-palette.png (160x120, written by
gen_images.py), decoded with Pillow .convert("RGB") and preprocessed the SAM
way (ResizeLongestSide(1024).get_preprocess_shape, Pillow BILINEAR resize,
which is what torchvision's resize does for a PIL image, then
(x - pixel_mean) / pixel_std and zero padding to 1024). The C test runs the
engine's own lisa_preprocess_sam on the same file (bit-exact with this, as
test-preprocess checks); meta.json records the float64 sum of the padded
tensor so a preprocessing mismatch is told apart from a model mismatch.

The prompts follow LISA's modified PromptEncoder: sparse = the [SEG]
embeddings (n, 1, C), no point/pad embedding; dense = no_mask_embed expanded
to (n, C, 64, 64); mask_decoder(..., multimask_output=False) on the batch of
3 prompts against the one image embedding, then Sam.postprocess_masks and
`> 0` (mask threshold 0.0).

segment-anything's package __init__ imports its predictor, which needs
torchvision (not installed in the reference venv); this script therefore
loads segment_anything.modeling alone, through a stub package object whose
__path__ points at the installed package. The modeling code is unchanged.

Deterministic (fixed seeds, one torch thread). Run from the repository root:
  /work/venv/bin/pip install segment-anything
  /work/venv/bin/python tests/reference/gen_sam.py
"""
import importlib.util
import json
import os
import sys
import types

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "sam")
IMAGE = os.path.join(ROOT, "tests", "fixtures", "images", "chelsea-palette.png")
PREFIX = "model.visual_model."

ENC_DIM, ENC_DEPTH, ENC_HEADS, GLOBAL = 32, 2, 2, (1,)
PROMPT_DIM, DEC_HEADS, DEC_MLP = 32, 2, 64
N_PROMPTS = 3
EMBEDDINGS = ("iou_token.weight", "mask_tokens.weight", "no_mask_embed.weight",
              "not_a_point_embed.weight")
MM_STRIDE = 1021  # multimask low-res logits are sampled every MM_STRIDE-th pixel


def import_sam_modeling():
    """segment_anything.modeling without the package __init__ (torchvision)."""
    spec = importlib.util.find_spec("segment_anything")
    pkg = types.ModuleType("segment_anything")
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules["segment_anything"] = pkg
    import segment_anything.modeling as modeling
    return modeling


def build_sam(modeling):
    enc = modeling.ImageEncoderViT(
        depth=ENC_DEPTH, embed_dim=ENC_DIM, img_size=1024, mlp_ratio=4,
        norm_layer=lambda d: torch.nn.LayerNorm(d, eps=1e-6), num_heads=ENC_HEADS,
        patch_size=16, qkv_bias=True, use_rel_pos=True, global_attn_indexes=GLOBAL,
        window_size=14, out_chans=PROMPT_DIM)
    pe = modeling.PromptEncoder(embed_dim=PROMPT_DIM, image_embedding_size=(64, 64),
                                input_image_size=(1024, 1024), mask_in_chans=4)
    dec = modeling.MaskDecoder(
        num_multimask_outputs=3,
        transformer=modeling.TwoWayTransformer(depth=2, embedding_dim=PROMPT_DIM,
                                               mlp_dim=DEC_MLP, num_heads=DEC_HEADS),
        transformer_dim=PROMPT_DIM, iou_head_depth=3, iou_head_hidden_dim=32)
    sam = modeling.Sam(image_encoder=enc, prompt_encoder=pe, mask_decoder=dec,
                       pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375])
    return sam.eval()


def reinit(sam):
    """Seeded normal draws for every parameter and buffer in the state dict:
    linear/conv weights ~ N(0, 1/fan_in), biases N(0, 0.1), norm scales
    1 + N(0, 0.1), norm shifts N(0, 0.1), rel_pos and pos_embed N(0, 0.5),
    token/prompt embeddings N(0, 1), the Fourier matrix N(0, 1)."""
    g = torch.Generator().manual_seed(1234)
    sd = sam.state_dict()
    with torch.no_grad():
        for name, t in sd.items():
            if name in ("pixel_mean", "pixel_std"):
                continue
            leaf = name.split(".")[-1]
            is_norm = (".norm" in name or "neck.1" in name or "neck.3" in name
                       or "output_upscaling.1" in name or "mask_downscaling.1" in name
                       or "mask_downscaling.4" in name)
            if is_norm and leaf == "weight":
                v = 1.0 + 0.1 * torch.randn(t.shape, generator=g)
            elif leaf == "bias":
                v = 0.1 * torch.randn(t.shape, generator=g)
            elif leaf in ("rel_pos_h", "rel_pos_w") or name.endswith("pos_embed"):
                v = 0.5 * torch.randn(t.shape, generator=g)
            elif "positional_encoding_gaussian_matrix" in name or name.endswith(EMBEDDINGS) or (
                    ".point_embeddings." in name):
                v = torch.randn(t.shape, generator=g)
            elif "output_upscaling" in name and t.dim() == 4:  # ConvTranspose (in, out, 2, 2)
                v = torch.randn(t.shape, generator=g) / np.sqrt(t.shape[0])
            else:
                fan_in = int(np.prod(t.shape[1:])) if t.dim() > 1 else t.shape[0]
                v = torch.randn(t.shape, generator=g) / np.sqrt(fan_in)
            t.copy_(v.to(t.dtype))
    sam.load_state_dict(sd)


def preprocess(path):
    rgb = np.array(Image.open(path).convert("RGB"))
    h, w = rgb.shape[:2]
    scale = 1024 * 1.0 / max(h, w)  # ResizeLongestSide.get_preprocess_shape
    newh, neww = int(h * scale + 0.5), int(w * scale + 0.5)
    resized = np.array(Image.fromarray(rgb).resize((neww, newh), Image.BILINEAR))
    x = torch.as_tensor(resized).permute(2, 0, 1).contiguous()[None]
    mean = torch.tensor([123.675, 116.28, 103.53]).view(-1, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(-1, 1, 1)
    x = (x - mean) / std
    x = F.pad(x, (0, 1024 - neww, 0, 1024 - newh))
    return x, (h, w), (newh, neww)


def f32(path, t):
    a = np.ascontiguousarray(t.detach().numpy().astype("<f4"))
    a.tofile(path)
    return list(a.shape)


def main():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    modeling = import_sam_modeling()
    sam = build_sam(modeling)
    reinit(sam)
    os.makedirs(OUT, exist_ok=True)

    sd = {PREFIX + k: v.contiguous() for k, v in sam.state_dict().items()
          if k not in ("pixel_mean", "pixel_std")}
    save_file(sd, os.path.join(OUT, "model.safetensors"))

    x, (h0, w0), (newh, neww) = preprocess(IMAGE)
    gs = torch.Generator().manual_seed(99)
    sparse = torch.randn((N_PROMPTS, 1, PROMPT_DIM), generator=gs)

    with torch.no_grad():
        emb = sam.image_encoder(x)                                   # (1, C, 64, 64)
        pe = sam.prompt_encoder.get_dense_pe()                       # (1, C, 64, 64)
        sp0, dense = sam.prompt_encoder(points=None, boxes=None, masks=None)
        sp = torch.cat([sp0.expand(N_PROMPTS, -1, -1), sparse], dim=1)  # LISA: text_embeds
        dense = dense.expand(N_PROMPTS, -1, -1, -1)
        low, iou = sam.mask_decoder(image_embeddings=emb, image_pe=pe,
                                    sparse_prompt_embeddings=sp,
                                    dense_prompt_embeddings=dense, multimask_output=False)
        up = sam.postprocess_masks(low.float(), (newh, neww), (h0, w0))  # (n, 1, H0, W0)
        binary = up > sam.mask_threshold
        low_mm, iou_mm = sam.mask_decoder(image_embeddings=emb, image_pe=pe,
                                          sparse_prompt_embeddings=sp,
                                          dense_prompt_embeddings=dense, multimask_output=True)

    f32(os.path.join(OUT, "sparse.bin"), sparse)
    f32(os.path.join(OUT, "image_embed.bin"), emb[0].permute(1, 2, 0))
    f32(os.path.join(OUT, "dense_pe.bin"), pe[0].permute(1, 2, 0))
    f32(os.path.join(OUT, "lowres.bin"), low[:, 0])
    f32(os.path.join(OUT, "masks_logits.bin"), up[:, 0])
    np.packbits(binary[:, 0].numpy().reshape(-1)).tofile(os.path.join(OUT, "masks.bin"))

    upn = up[:, 0].numpy()
    meta = {
        "about": "\n\n".join(__doc__.split("\n\n")[1:3]),
        "prefix": PREFIX,
        "image": "images/chelsea-palette.png",
        "orig_hw": [h0, w0], "resize_hw": [newh, neww],
        "input_sum": float(x.double().sum()),
        "encoder": {"embed_dim": ENC_DIM, "depth": ENC_DEPTH, "num_heads": ENC_HEADS,
                    "global_attn_indexes": list(GLOBAL), "window_size": 14, "patch_size": 16,
                    "img_size": 1024, "out_chans": PROMPT_DIM},
        "decoder": {"transformer_dim": PROMPT_DIM, "depth": 2, "num_heads": DEC_HEADS,
                    "mlp_dim": DEC_MLP, "num_mask_tokens": 4, "iou_head_hidden_dim": 32},
        "n_prompts": N_PROMPTS,
        "iou": [float(v) for v in iou[:, 0]],
        "multimask_iou": [[float(v) for v in r] for r in iou_mm],
        "multimask_sample_stride": MM_STRIDE,
        "multimask_samples": [[[float(v) for v in low_mm[b, j].reshape(-1)[::MM_STRIDE]]
                               for j in range(low_mm.shape[1])] for b in range(N_PROMPTS)],
        "mask_positive": [int(b.sum()) for b in binary[:, 0]],
        "min_abs_logit": float(np.abs(upn).min()),
        "n_tensors": len(sd),
        "versions": {"torch": torch.__version__},
    }
    with open(os.path.join(OUT, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print("sizes", {"orig": (h0, w0), "resize": (newh, neww)})
    print("emb std %.3f  lowres range [%.3f, %.3f]  positive %s of %d  iou %s"
          % (emb.std(), low.min(), low.max(), meta["mask_positive"], h0 * w0, meta["iou"]))
    print("min |logit| at original size %.3g" % meta["min_abs_logit"])


if __name__ == "__main__":
    main()
