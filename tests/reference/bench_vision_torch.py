#!/usr/bin/env python3
"""bench_vision_torch.py: the vision work `lisa bench vision` times, in
PyTorch eager with random weights: CLIP forward ms/image, SAM image encoder
ms/image and SAM mask decoder ms/mask, on the same shapes, printed as the
same JSON lines with "engine": "torch" (scripts/bench-vision.sh,
scripts/gpu-check.sh).

Models (random init, the presets of shard/vision-random.h):
  CLIP   l14 (ViT-L/14 at 224: C 1024, 24 layers, 16 heads, I 4096), b16,
         tiny. LLaVA/LISA read hidden_states[-2], so, as lisa does, only the
         first L-1 layers are built and run: transformers' CLIPVisionModel
         from a CLIPVisionConfig with num_hidden_layers = L-1, called with
         output_hidden_states=True as LLaVA's CLIPVisionTower does, features
         = hidden_states[-1][:, 1:] (LLaVA itself runs all L layers and
         discards the last: 24/23 of this work for l14). The HF forward
         also applies post_layernorm to the CLS token (negligible).
         Attention: --attn eager (default; transformers 4.31 has nothing
         else) or sdpa (newer transformers, and the pure model).
  SAM    vit_b, vit_l, vit_h (segment-anything's build_sam shapes: 1024
         input, patch 16, window 14, global blocks, neck 256) and tiny;
         segment-anything's ImageEncoderViT, PromptEncoder and MaskDecoder
         (TwoWayTransformer depth 2, 8 heads, MLP 2048).
--impl library (transformers / segment-anything), pure (the same math and
parameter names written here in plain torch, for machines without those
packages) or auto (default: library where importable, per model). The JSON
says which ran ("impl").

Timing, after one untimed warm-up of the same shapes, over --iters runs,
torch.inference_mode, torch.cuda.synchronize around every timer; inputs are
host fp32 tensors copied to the device inside the timed region (lisa's API
takes host pixels too):
  clip         one forward of --batch images: ms_per_image = t / batch
  sam-encoder  one image_encoder call on --batch images (really batched:
               "images_per_call" = batch): ms_per_image = t / batch
  sam-decoder  prompt encoder (no points, boxes or masks: the dense
               no_mask_embed) and mask_decoder(multimask_output=False) for
               --prompts prompts of one sparse token each (LISA's [SEG]
               embeddings) against one image embedding; get_dense_pe() is
               computed once before timing (lisa computes it at load);
               postprocess_masks not included. ms_per_mask = t / prompts
dtype: fp32 on the CPU (what lisa's CPU backend computes in), --dtype
(default bf16) on CUDA.

On the CPU, OMP_WAIT_POLICY=PASSIVE and OPENBLAS_NUM_THREADS=--threads are
set unless already set (see bench_llm_transformers.py: Debian's torch calls
the system OpenBLAS from inside its OpenMP regions).

Example:
  /work/venv/bin/python tests/reference/bench_vision_torch.py --clip l14 --sam vit_b --iters 1
"""
import argparse
import importlib.util
import json
import math
import os
import sys
import time
import types

CLIP = {  # hidden, intermediate, layers, heads, image, patch
    "l14": (1024, 4096, 24, 16, 224, 14),
    "b16": (768, 3072, 12, 12, 224, 16),
    "tiny": (32, 64, 2, 2, 224, 14),
}
SAM = {  # embed dim, depth, heads, global blocks, prompt dim, decoder heads, decoder MLP, IoU hidden
    "vit_b": (768, 12, 12, (2, 5, 8, 11), 256, 8, 2048, 256),
    "vit_l": (1024, 24, 16, (5, 11, 17, 23), 256, 8, 2048, 256),
    "vit_h": (1280, 32, 16, (7, 15, 23, 31), 256, 8, 2048, 256),
    "tiny": (32, 2, 2, (1,), 32, 2, 64, 32),
}
TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def sync(dev):
    import torch
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn, dev, iters):
    """One warm-up call, then the mean seconds of `iters` calls."""
    fn()
    sync(dev)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    sync(dev)
    return (time.perf_counter() - t0) / iters


# ------------------------------------------------------------------ CLIP


def pure_clip(C, I, L, H, S, P, attn):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(C, eps=1e-5), nn.LayerNorm(C, eps=1e-5)
            self.q, self.k, self.v, self.o = (nn.Linear(C, C) for _ in range(4))
            self.fc1, self.fc2 = nn.Linear(C, I), nn.Linear(I, C)

        def forward(self, x):
            B, T, _ = x.shape
            h = self.ln1(x)
            q, k, v = (f(h).view(B, T, H, C // H).transpose(1, 2) for f in (self.q, self.k, self.v))
            if attn == "sdpa":
                a = F.scaled_dot_product_attention(q, k, v)
            else:
                a = torch.softmax((q * (C // H) ** -0.5) @ k.transpose(-1, -2), dim=-1) @ v
            x = x + self.o(a.transpose(1, 2).reshape(B, T, C))
            h = self.fc1(self.ln2(x))
            return x + self.fc2(h * torch.sigmoid(1.702 * h))

    class Tower(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch = nn.Conv2d(3, C, P, P, bias=False)
            self.cls = nn.Parameter(torch.randn(C) * 0.02)
            self.pos = nn.Parameter(torch.randn((S // P) ** 2 + 1, C) * 0.02)
            self.pre_ln = nn.LayerNorm(C, eps=1e-5)
            self.layers = nn.ModuleList(Layer() for _ in range(L))

        def forward(self, x):
            x = self.patch(x).flatten(2).transpose(1, 2)
            x = torch.cat([self.cls.to(x.dtype).expand(x.shape[0], 1, -1), x], 1) + self.pos
            x = self.pre_ln(x)
            for layer in self.layers:
                x = layer(x)
            return x[:, 1:]

    return Tower()


def build_clip(name, impl, attn):
    """(callable pixels -> features, impl used, attn used, layers run)."""
    C, I, L, H, S, P = CLIP[name]
    n = L - 1  # hidden_states[-2] of the full tower
    if impl in ("auto", "library"):
        try:
            import transformers
            from transformers import CLIPVisionConfig, CLIPVisionModel
        except ImportError:
            if impl == "library":
                raise
        else:
            cfg = CLIPVisionConfig(hidden_size=C, intermediate_size=I, num_hidden_layers=n,
                                   num_attention_heads=H, image_size=S, patch_size=P,
                                   hidden_act="quick_gelu", layer_norm_eps=1e-5)
            has_impl = hasattr(cfg, "_attn_implementation")
            if has_impl:
                cfg._attn_implementation = attn
            elif attn != "eager":
                sys.exit("transformers %s has eager attention only" % transformers.__version__)
            model = CLIPVisionModel(cfg)

            def run(x, model=model):
                return model(pixel_values=x, output_hidden_states=True).hidden_states[-1][:, 1:]
            return model, run, "transformers " + transformers.__version__, attn, n
    model = pure_clip(C, I, n, H, S, P, attn)
    return model, model, "pure", attn, n


# ------------------------------------------------------------------- SAM


def import_sam_modeling():
    """segment_anything.modeling without the package __init__ (torchvision)."""
    spec = importlib.util.find_spec("segment_anything")
    if spec is None:
        raise ImportError("segment_anything")
    pkg = types.ModuleType("segment_anything")
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules["segment_anything"] = pkg
    import segment_anything.modeling as modeling
    return modeling


def pure_sam_modules():
    """ImageEncoderViT, PromptEncoder's dense parts and MaskDecoder with
    segment-anything's parameter names and math (modeling/*.py)."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class LayerNorm2d(nn.Module):
        def __init__(self, c, eps=1e-6):
            super().__init__()
            self.weight, self.bias, self.eps = nn.Parameter(torch.ones(c)), nn.Parameter(torch.zeros(c)), eps

        def forward(self, x):
            u = x.mean(1, keepdim=True)
            s = (x - u).pow(2).mean(1, keepdim=True)
            x = (x - u) / torch.sqrt(s + self.eps)
            return self.weight[:, None, None] * x + self.bias[:, None, None]

    class MLPBlock(nn.Module):
        def __init__(self, d, m, act):
            super().__init__()
            self.lin1, self.lin2, self.act = nn.Linear(d, m), nn.Linear(m, d), act()

        def forward(self, x):
            return self.lin2(self.act(self.lin1(x)))

    def rel_pos(size, table):
        idx = torch.arange(size)[:, None] - torch.arange(size)[None, :] + (size - 1)
        return table[idx.to(table.device)]

    class EncAttention(nn.Module):
        def __init__(self, dim, heads, size):
            super().__init__()
            self.heads, hd = heads, dim // heads
            self.scale = hd ** -0.5
            self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
            self.rel_pos_h = nn.Parameter(torch.randn(2 * size - 1, hd) * 0.02)
            self.rel_pos_w = nn.Parameter(torch.randn(2 * size - 1, hd) * 0.02)

        def forward(self, x):
            B, H, W, _ = x.shape
            qkv = self.qkv(x).reshape(B, H * W, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
            q, k, v = qkv.reshape(3, B * self.heads, H * W, -1).unbind(0)
            attn = (q * self.scale) @ k.transpose(-2, -1)
            Rh, Rw = rel_pos(H, self.rel_pos_h), rel_pos(W, self.rel_pos_w)
            r_q = q.reshape(B * self.heads, H, W, -1)
            rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, Rh)
            rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, Rw)
            attn = (attn.view(-1, H, W, H, W) + rel_h[:, :, :, :, None]
                    + rel_w[:, :, :, None, :]).view(-1, H * W, H * W)
            attn = attn.softmax(dim=-1)
            x = (attn @ v).view(B, self.heads, H, W, -1).permute(0, 2, 3, 1, 4).reshape(B, H, W, -1)
            return self.proj(x)

    class Block(nn.Module):
        def __init__(self, dim, heads, window, grid):
            super().__init__()
            self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
            self.attn = EncAttention(dim, heads, window if window else grid)
            self.mlp = MLPBlock(dim, 4 * dim, nn.GELU)
            self.window = window

        def forward(self, x):
            shortcut = x
            x = self.norm1(x)
            ws = self.window
            if ws:
                B, H, W, C = x.shape
                ph, pw = (ws - H % ws) % ws, (ws - W % ws) % ws
                x = F.pad(x, (0, 0, 0, pw, 0, ph))
                Hp, Wp = H + ph, W + pw
                x = x.view(B, Hp // ws, ws, Wp // ws, ws, C).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws, ws, C)
            x = self.attn(x)
            if ws:
                x = x.view(B, Hp // ws, Wp // ws, ws, ws, -1).permute(0, 1, 3, 2, 4, 5).reshape(B, Hp, Wp, -1)
                x = x[:, :H, :W, :].contiguous()
            x = shortcut + x
            return x + self.mlp(self.norm2(x))

    class PatchEmbed(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.proj = nn.Conv2d(3, dim, 16, 16)

        def forward(self, x):
            return self.proj(x).permute(0, 2, 3, 1)

    class ImageEncoderViT(nn.Module):
        def __init__(self, dim, depth, heads, globals_, out):
            super().__init__()
            self.patch_embed = PatchEmbed(dim)
            self.pos_embed = nn.Parameter(torch.randn(1, 64, 64, dim) * 0.02)
            self.blocks = nn.ModuleList(Block(dim, heads, 0 if i in globals_ else 14, 64)
                                        for i in range(depth))
            self.neck = nn.Sequential(nn.Conv2d(dim, out, 1, bias=False), LayerNorm2d(out),
                                      nn.Conv2d(out, out, 3, padding=1, bias=False), LayerNorm2d(out))

        def forward(self, x):
            x = self.patch_embed(x) + self.pos_embed
            for b in self.blocks:
                x = b(x)
            return self.neck(x.permute(0, 3, 1, 2))

    class DecAttention(nn.Module):
        def __init__(self, c, heads, down=1):
            super().__init__()
            i = c // down
            self.heads = heads
            self.q_proj, self.k_proj, self.v_proj = nn.Linear(c, i), nn.Linear(c, i), nn.Linear(c, i)
            self.out_proj = nn.Linear(i, c)

        def split(self, x):
            b, n, c = x.shape
            return x.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)

        def forward(self, q, k, v):
            q, k, v = self.split(self.q_proj(q)), self.split(self.k_proj(k)), self.split(self.v_proj(v))
            attn = torch.softmax(q @ k.permute(0, 1, 3, 2) / math.sqrt(q.shape[-1]), dim=-1)
            out = (attn @ v).transpose(1, 2)
            return self.out_proj(out.reshape(out.shape[0], out.shape[1], -1))

    class TwoWayBlock(nn.Module):
        def __init__(self, c, heads, mlp, skip_pe):
            super().__init__()
            self.self_attn = DecAttention(c, heads)
            self.cross_attn_token_to_image = DecAttention(c, heads, 2)
            self.cross_attn_image_to_token = DecAttention(c, heads, 2)
            self.norm1, self.norm2, self.norm3, self.norm4 = (nn.LayerNorm(c) for _ in range(4))
            self.mlp = MLPBlock(c, mlp, nn.ReLU)
            self.skip_pe = skip_pe

        def forward(self, queries, keys, qpe, kpe):
            if self.skip_pe:
                queries = self.self_attn(queries, queries, queries)
            else:
                q = queries + qpe
                queries = queries + self.self_attn(q, q, queries)
            queries = self.norm1(queries)
            queries = self.norm2(queries + self.cross_attn_token_to_image(queries + qpe, keys + kpe, keys))
            queries = self.norm3(queries + self.mlp(queries))
            keys = self.norm4(keys + self.cross_attn_image_to_token(keys + kpe, queries + qpe, queries))
            return queries, keys

    class TwoWayTransformer(nn.Module):
        def __init__(self, c, heads, mlp, depth=2):
            super().__init__()
            self.layers = nn.ModuleList(TwoWayBlock(c, heads, mlp, i == 0) for i in range(depth))
            self.final_attn_token_to_image = DecAttention(c, heads, 2)
            self.norm_final_attn = nn.LayerNorm(c)

        def forward(self, img, pe, tokens):
            keys, kpe = img.flatten(2).permute(0, 2, 1), pe.flatten(2).permute(0, 2, 1)
            queries = tokens
            for layer in self.layers:
                queries, keys = layer(queries, keys, tokens, kpe)
            queries = self.norm_final_attn(
                queries + self.final_attn_token_to_image(queries + tokens, keys + kpe, keys))
            return queries, keys

    class MLP(nn.Module):
        def __init__(self, i, h, o):
            super().__init__()
            self.layers = nn.ModuleList([nn.Linear(i, h), nn.Linear(h, h), nn.Linear(h, o)])

        def forward(self, x):
            for j, layer in enumerate(self.layers):
                x = F.relu(layer(x)) if j < 2 else layer(x)
            return x

    class MaskDecoder(nn.Module):
        def __init__(self, c, heads, mlp, iou_hidden, M=4):
            super().__init__()
            self.transformer = TwoWayTransformer(c, heads, mlp)
            self.iou_token, self.mask_tokens = nn.Embedding(1, c), nn.Embedding(M, c)
            self.output_upscaling = nn.Sequential(
                nn.ConvTranspose2d(c, c // 4, 2, 2), LayerNorm2d(c // 4), nn.GELU(),
                nn.ConvTranspose2d(c // 4, c // 8, 2, 2), nn.GELU())
            self.output_hypernetworks_mlps = nn.ModuleList(MLP(c, c, c // 8) for _ in range(M))
            self.iou_prediction_head = MLP(c, iou_hidden, M)
            self.M = M

        def forward(self, image_embeddings, image_pe, sparse_prompt_embeddings,
                    dense_prompt_embeddings, multimask_output):
            sp = sparse_prompt_embeddings
            out = torch.cat([self.iou_token.weight, self.mask_tokens.weight], 0)
            tokens = torch.cat([out.unsqueeze(0).expand(sp.size(0), -1, -1), sp], 1)
            src = torch.repeat_interleave(image_embeddings, tokens.shape[0], 0) + dense_prompt_embeddings
            pos = torch.repeat_interleave(image_pe, tokens.shape[0], 0)
            b, c, h, w = src.shape
            hs, src = self.transformer(src, pos, tokens)
            src = src.transpose(1, 2).reshape(b, c, h, w)
            up = self.output_upscaling(src)
            hyper = torch.stack([m(hs[:, 1 + i]) for i, m in enumerate(self.output_hypernetworks_mlps)], 1)
            b, c, h, w = up.shape
            masks = (hyper @ up.view(b, c, h * w)).view(b, -1, h, w)
            iou = self.iou_prediction_head(hs[:, 0])
            sl = slice(1, None) if multimask_output else slice(0, 1)
            return masks[:, sl], iou[:, sl]

    class PromptEncoder(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.no_mask_embed = nn.Embedding(1, c)
            self.pe_layer = nn.Module()
            self.pe_layer.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, c // 2))

        def dense(self, n):
            return self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(n, -1, 64, 64)

        def get_dense_pe(self):
            gauss = self.pe_layer.positional_encoding_gaussian_matrix
            g = (torch.arange(64, device=gauss.device, dtype=gauss.dtype) + 0.5) / 64
            u = torch.stack([g[None, :].expand(64, 64), g[:, None].expand(64, 64)], -1)
            z = 2 * math.pi * ((2 * u - 1) @ gauss)
            return torch.cat([torch.sin(z), torch.cos(z)], -1).permute(2, 0, 1)[None]

    return ImageEncoderViT, PromptEncoder, MaskDecoder


def build_sam(name, impl):
    """(encoder, prompt encoder, decoder, dense(n) callable, impl used)."""
    import torch
    D, depth, heads, globals_, C, dheads, dmlp, iou_h = SAM[name]
    if impl in ("auto", "library"):
        try:
            modeling = import_sam_modeling()
        except ImportError:
            if impl == "library":
                raise
        else:
            enc = modeling.ImageEncoderViT(
                depth=depth, embed_dim=D, img_size=1024, mlp_ratio=4,
                norm_layer=lambda d: torch.nn.LayerNorm(d, eps=1e-6), num_heads=heads,
                patch_size=16, qkv_bias=True, use_rel_pos=True, global_attn_indexes=globals_,
                window_size=14, out_chans=C)
            pe = modeling.PromptEncoder(embed_dim=C, image_embedding_size=(64, 64),
                                        input_image_size=(1024, 1024), mask_in_chans=16)
            dec = modeling.MaskDecoder(
                num_multimask_outputs=3,
                transformer=modeling.TwoWayTransformer(depth=2, embedding_dim=C, mlp_dim=dmlp,
                                                       num_heads=dheads),
                transformer_dim=C, iou_head_depth=3, iou_head_hidden_dim=iou_h)

            def dense(n, pe=pe):
                _, d = pe(points=None, boxes=None, masks=None)
                return d.expand(n, -1, -1, -1)
            return enc, pe, dec, dense, "segment-anything"
    Enc, PE, Dec = pure_sam_modules()
    enc, pe, dec = Enc(D, depth, heads, globals_, C), PE(C), Dec(C, dheads, dmlp, iou_h)
    return enc, pe, dec, pe.dense, "pure"


# ------------------------------------------------------------------ main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clip", default="l14", choices=list(CLIP) + ["none"])
    ap.add_argument("--sam", default="vit_b", choices=list(SAM) + ["none"])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--dtype", default="bf16", choices=list(TORCH_DTYPES),
                    help="CUDA compute dtype (the CPU always runs fp32)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--impl", default="auto", choices=("auto", "library", "pure"))
    ap.add_argument("--attn", default="eager", choices=("eager", "sdpa"),
                    help="CLIP attention implementation")
    args = ap.parse_args()
    if args.batch < 1 or args.iters < 1 or args.prompts < 1:
        ap.error("batch, iters and prompts must be positive")
    if args.device == "cpu":
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        os.environ.setdefault("OPENBLAS_NUM_THREADS", str(args.threads))
    import torch

    if args.attn == "sdpa" and not hasattr(torch.nn.functional, "scaled_dot_product_attention"):
        sys.exit("--attn sdpa needs torch >= 2.0 (this is %s)" % torch.__version__)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    dname = "fp32" if dev.type == "cpu" else args.dtype
    dt = getattr(torch, TORCH_DTYPES[dname])
    B = args.batch
    base = {"engine": "torch", "device": dev.type, "dtype": dname, "iters": args.iters,
            "torch": torch.__version__}
    if dev.type == "cpu":
        base["threads"] = args.threads

    def emit(row):
        print(json.dumps(dict(base, **row)), flush=True)

    with torch.inference_mode():
        if args.clip != "none":
            model, run, impl, attn, n = build_clip(args.clip, args.impl, args.attn)
            model = model.to(dev, dt).eval()
            S = CLIP[args.clip][4]
            pix = torch.rand(B, 3, S, S) * 4 - 2
            t = timed(lambda: run(pix.to(dev, dt)), dev, args.iters)
            emit({"model": "clip-" + args.clip, "part": "clip", "batch": B,
                  "ms_per_image": round(1e3 * t / B, 3), "layers": n, "image_size": S,
                  "impl": impl, "attn": attn})
            del model, run
        if args.sam != "none":
            enc, pe, dec, dense, impl = build_sam(args.sam, args.impl)
            enc, pe, dec = (m.to(dev, dt).eval() for m in (enc, pe, dec))
            img = torch.rand(B, 3, 1024, 1024) * 4 - 2
            model = "sam-" + args.sam
            t = timed(lambda: enc(img.to(dev, dt)), dev, args.iters)
            emit({"model": model, "part": "sam-encoder", "batch": B,
                  "ms_per_image": round(1e3 * t / B, 3), "images_per_call": B, "impl": impl})
            C = SAM[args.sam][4]
            emb = enc(img[:1].to(dev, dt))
            image_pe = pe.get_dense_pe().to(dt)
            sparse = torch.rand(args.prompts, 1, C) * 4 - 2
            n = args.prompts

            def decode():
                return dec(image_embeddings=emb, image_pe=image_pe,
                           sparse_prompt_embeddings=sparse.to(dev, dt),
                           dense_prompt_embeddings=dense(n), multimask_output=False)
            t = timed(decode, dev, args.iters)
            emit({"model": model, "part": "sam-decoder", "batch": 1,
                  "ms_per_mask": round(1e3 * t / n, 3), "prompts": n,
                  "ms_per_call": round(1e3 * t, 3), "impl": impl})


if __name__ == "__main__":
    main()
