#!/usr/bin/env python3
"""convert-lisa.py: a released LISA checkpoint + its CLIP vision tower ->
one self-contained model directory for the C engine (docs/model-format.md);
or a plain HF LLaMA checkpoint -> an LLM-only model directory.

  scripts/convert-lisa.py --release DIR --clip DIR --out DIR
                          [--dtype keep|bf16|fp16|fp32] [--max-shard-size 2GB]
                          [--quantize q8_0|q4_0 [--quantize-unaligned error|keep]]
  scripts/convert-lisa.py --llama DIR --out DIR [same options]

--release  a LISA checkpoint as published (xinlai/LISA-7B-v1,
           xinlai/LISA-13B-llama2-v1, ...): config.json, pickled
           pytorch_model-0000K-of-0000N.bin shards + pytorch_model.bin.index.json
           (or one pytorch_model.bin; safetensors shards are read too),
           tokenizer.model, added_tokens.json, ...
--clip     the CLIP checkpoint LISA loads at run time
           (openai/clip-vit-large-patch14): config.json (CLIPConfig or
           CLIPVisionConfig), model.safetensors or pytorch_model.bin (+
           index); only its vision_model.* tensors are used.
--out      the model directory to write (must not exist unless --force):
           config.json (LISA's, plus "vision_config", "sam_config",
           "seg_token_idx", "image_token_index", "lisa_model_format"),
           tokenizer.model, added_tokens.json, the other tokenizer /
           generation files present in --release, CLIP's
           preprocessor_config.json, model-0000K-of-0000N.safetensors +
           model.safetensors.index.json.
--llama    instead of --release/--clip: a Hugging Face LLaMA checkpoint
           (config.json, model*.safetensors [+ index] or pytorch_model*.bin
           [+ index], tokenizer.model). --out then holds the LLM only, as
           lisa_llama_model_load reads it: config.json (the source's, plus
           "lisa_model_format"), tokenizer.model, the shards + index, and
           generation_config.json / tokenizer_config.json /
           special_tokens_map.json / added_tokens.json when present.
--dtype    keep: every tensor keeps its file dtype (released LISA: LLM,
           embeddings, lm_head, mm_projector bf16; SAM and text_hidden_fcs
           fp32; CLIP fp32); bf16/fp16/fp32: every float tensor is cast.
--quantize q8_0 | q4_0: the LLM matmul weights (model.layers.N.self_attn.
           {q,k,v,o}_proj.weight, model.layers.N.mlp.{gate,up,down}_proj.
           weight, lm_head.weight) are quantized from their fp32 values with
           the gguf package's quantizer (llama.cpp's Python port of its
           reference Q8_0 / Q4_0 rounding, bit-exact with ggml-quants.c;
           test-quant checks it equals lisa_quantize_*) and stored as
           safetensors U8 [rows, K/32, 34 | 18] named in the shard's
           __metadata__ as "lisa.quant.<name>": "q8_0" | "q4_0". Everything
           else (embed_tokens, norms, projector, text_hidden_fcs, SAM, CLIP)
           follows --dtype. Needs the gguf package (PyPI "gguf").
--quantize-unaligned
           error (default): a weight in scope whose row length K is not a
           multiple of 32 stops the conversion, naming it; keep: such weights
           follow --dtype instead, are listed on stderr and in config.json
           (llama.cpp's converters fall back the same way).

Tensor names: LISA's own names for everything in the release
(model.embed_tokens, model.layers.N.*, model.norm, lm_head, model.mm_projector,
model.visual_model.*, model.text_hidden_fcs.*); CLIP's vision tensors under
"model.vision_tower." + their HF names (model.vision_tower.vision_model.
encoder.layers.N.self_attn.q_proj.weight, ...).

Every expected tensor (derived from the configs: LLM layers, projector,
text_hidden_fcs, SAM image encoder / prompt encoder / mask decoder, CLIP
layers) is checked for presence and shape; missing, misshapen or unknown
tensors are listed and the exit status is 1 (nothing is left in --out).
rotary_emb.inv_freq and position_ids buffers are ignored. The .bin shards are
loaded one at a time (torch.load(map_location="cpu")) and written out as they
come, so peak memory is about one source shard plus one output shard.
Needs torch and safetensors (not transformers); gguf and numpy for --quantize.
"""
import argparse
import json
import os
import re
import shutil
import sys

import torch
from safetensors import safe_open
from safetensors.torch import save_file

FORMAT_VERSION = 1
CLIP_PREFIX = "model.vision_tower."
IGNORED = (re.compile(r"(^|\.)rotary_emb\.inv_freq$"), re.compile(r"(^|\.)position_ids$"))

# SAM ViT-H as build_sam_vit_h hard-codes it (LISA's config.json has no SAM
# fields); a "sam_config" object in the release config.json overrides fields.
SAM_VIT_H = {
    "image_size": 1024, "patch_size": 16, "encoder_embed_dim": 1280, "encoder_depth": 32,
    "encoder_num_heads": 16, "encoder_global_attn_indexes": [7, 15, 23, 31],
    "window_size": 14, "mlp_ratio": 4.0, "prompt_embed_dim": 256,
    "image_embedding_size": 64, "mask_in_chans": 16, "decoder_depth": 2,
    "decoder_num_heads": 8, "decoder_mlp_dim": 2048, "attention_downsample_rate": 2,
    "num_multimask_outputs": 3, "iou_head_depth": 3, "iou_head_hidden_dim": 256,
    "pixel_mean": [123.675, 116.28, 103.53], "pixel_std": [58.395, 57.12, 57.375],
}
# transformers 4.31 CLIPVisionConfig defaults (a saved config omits defaults)
CLIP_VISION_DEFAULTS = {
    "hidden_size": 768, "intermediate_size": 3072, "projection_dim": 512,
    "num_hidden_layers": 12, "num_attention_heads": 12, "num_channels": 3,
    "image_size": 224, "patch_size": 32, "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
ST_NAMES = {torch.bfloat16: "BF16", torch.float16: "F16", torch.float32: "F32"}

# Quantization (--quantize): the LLM's matmul weights only. Elements per
# block and bytes per block of llama.cpp's Q8_0 / Q4_0 (ggml-common.h).
QUANT_SCOPE = re.compile(r"^(model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)"
                         r"\.weight|lm_head\.weight)$")
QUANT_BLOCK = 32
QUANT_BLOCK_BYTES = {"q8_0": 34, "q4_0": 18}
QUANT_META_PREFIX = "lisa.quant."


class ConvertError(Exception):
    pass


def parse_size(s):
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?i?B?)\s*", s, re.I)
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {s!r}")
    unit = m.group(2).upper().rstrip("B")
    mult = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "KI": 2**10, "MI": 2**20, "GI": 2**30}[unit]
    return int(float(m.group(1)) * mult)


def load_json(path):
    with open(path) as f:
        return json.load(f)


# ---------------------------------------------------------------- expected keys

def llm_expected(cfg):
    H, V, I = cfg["hidden_size"], cfg["vocab_size"], cfg["intermediate_size"]
    nh = cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads") or nh
    hd = cfg.get("head_dim") or H // nh
    e = {"model.embed_tokens.weight": (V, H), "model.norm.weight": (H,)}
    if not cfg.get("tie_word_embeddings", False):
        e["lm_head.weight"] = (V, H)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        e[p + "self_attn.q_proj.weight"] = (nh * hd, H)
        e[p + "self_attn.k_proj.weight"] = (nkv * hd, H)
        e[p + "self_attn.v_proj.weight"] = (nkv * hd, H)
        e[p + "self_attn.o_proj.weight"] = (H, nh * hd)
        e[p + "mlp.gate_proj.weight"] = (I, H)
        e[p + "mlp.up_proj.weight"] = (I, H)
        e[p + "mlp.down_proj.weight"] = (H, I)
        e[p + "input_layernorm.weight"] = (H,)
        e[p + "post_attention_layernorm.weight"] = (H,)
    return e


def lisa_heads_expected(cfg):
    H, Cv, D = cfg["hidden_size"], cfg["mm_hidden_size"], cfg["out_dim"]
    return {"model.mm_projector.weight": (H, Cv), "model.mm_projector.bias": (H,),
            "model.text_hidden_fcs.0.0.weight": (H, H), "model.text_hidden_fcs.0.0.bias": (H,),
            "model.text_hidden_fcs.0.2.weight": (D, H), "model.text_hidden_fcs.0.2.bias": (D,)}


def sam_expected(sc, prefix="model.visual_model."):
    D, p, G = sc["encoder_embed_dim"], sc["patch_size"], sc["image_size"] // sc["patch_size"]
    C, W, M = sc["prompt_embed_dim"], sc["window_size"], int(D * sc["mlp_ratio"])
    hd = D // sc["encoder_num_heads"]
    e = {}
    pe = prefix + "image_encoder."
    e[pe + "patch_embed.proj.weight"] = (D, 3, p, p)
    e[pe + "patch_embed.proj.bias"] = (D,)
    e[pe + "pos_embed"] = (1, G, G, D)
    for i in range(sc["encoder_depth"]):
        b = f"{pe}blocks.{i}."
        S = G if i in sc["encoder_global_attn_indexes"] else W
        for n in ("norm1", "norm2"):
            e[b + n + ".weight"] = (D,)
            e[b + n + ".bias"] = (D,)
        e[b + "attn.qkv.weight"] = (3 * D, D)
        e[b + "attn.qkv.bias"] = (3 * D,)
        e[b + "attn.proj.weight"] = (D, D)
        e[b + "attn.proj.bias"] = (D,)
        e[b + "attn.rel_pos_h"] = (2 * S - 1, hd)
        e[b + "attn.rel_pos_w"] = (2 * S - 1, hd)
        e[b + "mlp.lin1.weight"] = (M, D)
        e[b + "mlp.lin1.bias"] = (M,)
        e[b + "mlp.lin2.weight"] = (D, M)
        e[b + "mlp.lin2.bias"] = (D,)
    e[pe + "neck.0.weight"] = (C, D, 1, 1)
    e[pe + "neck.1.weight"] = (C,)
    e[pe + "neck.1.bias"] = (C,)
    e[pe + "neck.2.weight"] = (C, C, 3, 3)
    e[pe + "neck.3.weight"] = (C,)
    e[pe + "neck.3.bias"] = (C,)
    pp = prefix + "prompt_encoder."
    mic = sc["mask_in_chans"]
    e[pp + "pe_layer.positional_encoding_gaussian_matrix"] = (2, C // 2)
    for i in range(4):
        e[f"{pp}point_embeddings.{i}.weight"] = (1, C)
    e[pp + "not_a_point_embed.weight"] = (1, C)
    e[pp + "no_mask_embed.weight"] = (1, C)
    e[pp + "mask_downscaling.0.weight"] = (mic // 4, 1, 2, 2)
    e[pp + "mask_downscaling.0.bias"] = (mic // 4,)
    e[pp + "mask_downscaling.1.weight"] = (mic // 4,)
    e[pp + "mask_downscaling.1.bias"] = (mic // 4,)
    e[pp + "mask_downscaling.3.weight"] = (mic, mic // 4, 2, 2)
    e[pp + "mask_downscaling.3.bias"] = (mic,)
    e[pp + "mask_downscaling.4.weight"] = (mic,)
    e[pp + "mask_downscaling.4.bias"] = (mic,)
    e[pp + "mask_downscaling.6.weight"] = (C, mic, 1, 1)
    e[pp + "mask_downscaling.6.bias"] = (C,)
    pd = prefix + "mask_decoder."
    nmt = sc["num_multimask_outputs"] + 1
    ci = C // sc["attention_downsample_rate"]
    e[pd + "iou_token.weight"] = (1, C)
    e[pd + "mask_tokens.weight"] = (nmt, C)

    def attn(name, inner):
        for q in ("q_proj", "k_proj", "v_proj"):
            e[f"{name}.{q}.weight"] = (inner, C)
            e[f"{name}.{q}.bias"] = (inner,)
        e[f"{name}.out_proj.weight"] = (C, inner)
        e[f"{name}.out_proj.bias"] = (C,)

    pt = pd + "transformer."
    for i in range(sc["decoder_depth"]):
        l = f"{pt}layers.{i}."
        attn(l + "self_attn", C)
        attn(l + "cross_attn_token_to_image", ci)
        attn(l + "cross_attn_image_to_token", ci)
        for n in range(1, 5):
            e[f"{l}norm{n}.weight"] = (C,)
            e[f"{l}norm{n}.bias"] = (C,)
        e[l + "mlp.lin1.weight"] = (sc["decoder_mlp_dim"], C)
        e[l + "mlp.lin1.bias"] = (sc["decoder_mlp_dim"],)
        e[l + "mlp.lin2.weight"] = (C, sc["decoder_mlp_dim"])
        e[l + "mlp.lin2.bias"] = (C,)
    attn(pt + "final_attn_token_to_image", ci)
    e[pt + "norm_final_attn.weight"] = (C,)
    e[pt + "norm_final_attn.bias"] = (C,)
    e[pd + "output_upscaling.0.weight"] = (C, C // 4, 2, 2)
    e[pd + "output_upscaling.0.bias"] = (C // 4,)
    e[pd + "output_upscaling.1.weight"] = (C // 4,)
    e[pd + "output_upscaling.1.bias"] = (C // 4,)
    e[pd + "output_upscaling.3.weight"] = (C // 4, C // 8, 2, 2)
    e[pd + "output_upscaling.3.bias"] = (C // 8,)

    def mlp(name, dims):
        for j in range(len(dims) - 1):
            e[f"{name}.layers.{j}.weight"] = (dims[j + 1], dims[j])
            e[f"{name}.layers.{j}.bias"] = (dims[j + 1],)

    for i in range(nmt):
        mlp(f"{pd}output_hypernetworks_mlps.{i}", [C, C, C, C // 8])
    ih = sc["iou_head_hidden_dim"]
    mlp(pd + "iou_prediction_head", [C] + [ih] * (sc["iou_head_depth"] - 1) + [nmt])
    return e


def clip_expected(vc, prefix=CLIP_PREFIX):
    D, I, p = vc["hidden_size"], vc["intermediate_size"], vc["patch_size"]
    npos = (vc["image_size"] // p) ** 2 + 1
    b = prefix + "vision_model."
    e = {b + "embeddings.class_embedding": (D,),
         b + "embeddings.patch_embedding.weight": (D, vc["num_channels"], p, p),
         b + "embeddings.position_embedding.weight": (npos, D),
         b + "pre_layrnorm.weight": (D,), b + "pre_layrnorm.bias": (D,),
         b + "post_layernorm.weight": (D,), b + "post_layernorm.bias": (D,)}
    for i in range(vc["num_hidden_layers"]):
        l = f"{b}encoder.layers.{i}."
        for q in ("q_proj", "k_proj", "v_proj", "out_proj"):
            e[f"{l}self_attn.{q}.weight"] = (D, D)
            e[f"{l}self_attn.{q}.bias"] = (D,)
        for n in ("layer_norm1", "layer_norm2"):
            e[f"{l}{n}.weight"] = (D,)
            e[f"{l}{n}.bias"] = (D,)
        e[l + "mlp.fc1.weight"] = (I, D)
        e[l + "mlp.fc1.bias"] = (I,)
        e[l + "mlp.fc2.weight"] = (D, I)
        e[l + "mlp.fc2.bias"] = (D,)
    return e


# ---------------------------------------------------------------- sources

def checkpoint_files(d, what):
    """[(file, [keys] or None)] for a HF directory: safetensors preferred."""
    for index_name, single in (("model.safetensors.index.json", "model.safetensors"),
                               ("pytorch_model.bin.index.json", "pytorch_model.bin")):
        ip = os.path.join(d, index_name)
        if os.path.isfile(ip):
            wm = load_json(ip)["weight_map"]
            return [os.path.join(d, f) for f in sorted(set(wm.values()))]
        if os.path.isfile(os.path.join(d, single)):
            return [os.path.join(d, single)]
    raise ConvertError(f"{what}: no model.safetensors[.index.json] or "
                       f"pytorch_model.bin[.index.json] in {d}")


def iter_tensors(path):
    """(name, tensor) for every tensor of one checkpoint file; .bin files are
    loaded whole (one shard at a time) and released afterwards."""
    if path.endswith(".safetensors"):
        with safe_open(path, framework="pt") as f:
            for k in f.keys():
                yield k, f.get_tensor(k)
    else:
        sd = torch.load(path, map_location="cpu")
        if not isinstance(sd, dict):
            raise ConvertError(f"{path}: not a state dict")
        keys = list(sd.keys())
        for k in keys:
            yield k, sd.pop(k)
        del sd


def ignored(name):
    return any(r.search(name) for r in IGNORED)


# ---------------------------------------------------------------- quantization

def quant_plan(expected, qtype, unaligned):
    """(names to quantize, names in scope left to --dtype) from the expected
    shapes, before any tensor is read: a weight in scope whose row length K
    is not a multiple of the block is an error naming it, unless unaligned
    is "keep"."""
    if not qtype:
        return set(), []
    scope = sorted(n for n in expected if QUANT_SCOPE.match(n))
    bad = [n for n in scope if expected[n][-1] % QUANT_BLOCK]
    if bad and unaligned == "error":
        for n in bad:
            print(f"error: {n}: shape {list(expected[n])}: row length {expected[n][-1]} is not a "
                  f"multiple of {QUANT_BLOCK}, so it cannot be stored as {qtype}", file=sys.stderr)
        raise ConvertError(f"{len(bad)} tensor(s) cannot be quantized to {qtype} (the first: "
                           f"{bad[0]}, K = {expected[bad[0]][-1]}); --quantize-unaligned keep "
                           "leaves them in --dtype; nothing written")
    return set(scope) - set(bad), bad


def quantize(t, qtype):
    """t (rows, K) of any float dtype -> uint8 (rows, K/32, block bytes):
    gguf's reference quantizer (llama.cpp's quantize_row_q8_0_ref /
    q4_0_ref) applied to the exact fp32 values of t."""
    import numpy as np
    from gguf import GGMLQuantizationType
    from gguf.quants import quantize as gguf_quantize
    rows, k = t.shape
    ggml = {"q8_0": GGMLQuantizationType.Q8_0, "q4_0": GGMLQuantizationType.Q4_0}[qtype]
    q = gguf_quantize(t.to(torch.float32).numpy(), ggml)
    q = np.ascontiguousarray(q, dtype=np.uint8).reshape(rows, k // QUANT_BLOCK,
                                                        QUANT_BLOCK_BYTES[qtype])
    return torch.from_numpy(q)


def quant_info(args, quantized, kept):
    """config.json's lisa_model_format.quantization, or None."""
    if not args.quantize:
        return None
    q = {"type": args.quantize, "block_size": QUANT_BLOCK, "tensors": len(quantized),
         "scope": "llm-matmul"}
    if args.quantize_unaligned == "keep":
        q["kept_unaligned"] = sorted(kept)
    return q


# ---------------------------------------------------------------- writer

def sort_metadata(path):
    """Rewrites the header of the safetensors file at path with its
    __metadata__ keys sorted, in place. safetensors writes them in hash-map
    order, which changes from run to run; sorted, a conversion is the same
    bytes every time. The header keeps its length (same members, compact
    JSON as the writer emits), so the data section does not move; a header
    that would not round-trip to the same length is left as it is."""
    with open(path, "r+b") as f:
        head = f.read(8)
        hlen = int.from_bytes(head, "little")
        text = f.read(hlen)
        hdr = json.loads(text)
        meta = hdr.get("__metadata__")
        if not isinstance(meta, dict):
            return
        hdr["__metadata__"] = dict(sorted(meta.items()))
        body = json.dumps(hdr, separators=(",", ":"), ensure_ascii=False).encode()
        if len(body) > hlen or text[len(body):].strip(b" ") or len(text.rstrip(b" ")) != len(body):
            return
        f.seek(8)
        f.write(body + b" " * (hlen - len(body)))


class ShardWriter:
    """Buffers tensors and writes a shard whenever the next one would pass
    max_bytes. A quantized tensor's "lisa.quant.<name>" key goes into the
    __metadata__ of the shard that holds it."""

    def __init__(self, out_dir, max_bytes):
        self.out_dir, self.max_bytes = out_dir, max_bytes
        self.buf, self.buf_meta, self.buf_bytes = {}, {}, 0
        self.parts, self.weight_map = [], {}
        self.total = 0

    def add(self, name, t, quant=None):
        n = t.numel() * t.element_size()
        if self.buf and self.buf_bytes + n > self.max_bytes:
            self.flush()
        self.buf[name] = t
        if quant:
            self.buf_meta[QUANT_META_PREFIX + name] = quant
        self.buf_bytes += n
        self.total += n

    def flush(self):
        if not self.buf:
            return
        tmp = f"part-{len(self.parts):05d}.safetensors"
        meta = {"format": "pt"}
        meta.update(self.buf_meta)
        save_file(self.buf, os.path.join(self.out_dir, tmp), metadata=meta)
        sort_metadata(os.path.join(self.out_dir, tmp))
        os.chmod(os.path.join(self.out_dir, tmp), 0o644)
        self.parts.append((tmp, list(self.buf.keys())))
        self.buf, self.buf_meta, self.buf_bytes = {}, {}, 0

    def finish(self):
        self.flush()
        n = len(self.parts)
        for i, (tmp, keys) in enumerate(self.parts):
            final = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
            os.rename(os.path.join(self.out_dir, tmp), os.path.join(self.out_dir, final))
            for k in keys:
                self.weight_map[k] = final
        index = {"metadata": {"total_size": self.total},
                 "weight_map": dict(sorted(self.weight_map.items()))}
        with open(os.path.join(self.out_dir, "model.safetensors.index.json"), "w") as f:
            json.dump(index, f, indent=2)
            f.write("\n")
        return n


def cast(name, t, policy):
    if not t.is_floating_point() or policy == "keep":
        return t.contiguous()
    want = DTYPES[policy]
    out = t.to(want).contiguous()
    if want == torch.float16:
        bad = torch.isinf(out) & torch.isfinite(t)
        if bool(bad.any()):
            raise ConvertError(f"{name}: {int(bad.sum())} values overflow fp16")
    return out


class Written:
    """What write_tensors wrote: the writer, shard count, names, per-dtype
    counts, and the quantized / kept-unaligned names."""

    def __init__(self, writer, n_shards, seen, dtypes, quantized, kept):
        self.writer, self.n_shards, self.seen, self.dtypes = writer, n_shards, seen, dtypes
        self.quantized, self.kept = quantized, kept


def write_tensors(tmp, args, expected, sources):
    """Reads every (path, rename) of sources, where rename(name) gives
    (output name or None to skip, problem text or None), checks each tensor
    against expected (name -> shape), casts or quantizes it and writes the
    shards + index into tmp. Raises ConvertError listing every missing,
    misshapen, duplicated or unknown tensor."""
    quantized, kept = quant_plan(expected, args.quantize, args.quantize_unaligned)
    writer = ShardWriter(tmp, args.max_shard_size)
    seen, problems, unknown, dtypes = set(), [], [], {}

    def take(name, t):
        if ignored(name):
            return
        if name in seen:
            problems.append(f"duplicate tensor {name}")
            return
        if name not in expected:
            unknown.append(name)
            return
        if tuple(t.shape) != tuple(expected[name]):
            problems.append(f"{name}: shape {list(t.shape)}, expected {list(expected[name])}")
            return
        seen.add(name)
        if name in quantized:
            writer.add(name, quantize(t, args.quantize), args.quantize)
            key = args.quantize.upper()
        else:
            t = cast(name, t, args.dtype)
            writer.add(name, t)
            key = ST_NAMES.get(t.dtype, str(t.dtype))
        dtypes[key] = dtypes.get(key, 0) + 1

    for path, rename in sources:
        print(f"reading {path}", file=sys.stderr)
        for name, t in iter_tensors(path):
            out_name, problem = rename(name)
            if problem:
                problems.append(problem)
            elif out_name is not None:
                take(out_name, t)

    missing = [k for k in expected if k not in seen]
    if missing or problems or unknown:
        for k in missing:
            print(f"missing tensor: {k}", file=sys.stderr)
        for p in problems:
            print(f"error: {p}", file=sys.stderr)
        for k in unknown:
            print(f"unexpected tensor: {k}", file=sys.stderr)
        raise ConvertError(f"{len(missing)} missing, {len(problems)} bad, "
                           f"{len(unknown)} unexpected tensor(s); nothing written")
    for n in kept:
        print(f"note: {n}: row length {expected[n][-1]} is not a multiple of {QUANT_BLOCK}, "
              f"kept in --dtype {args.dtype}", file=sys.stderr)
    return Written(writer, writer.finish(), seen, dtypes, quantized, kept)


def build_output(args, fill):
    """Runs fill(tmp) on an empty OUT.partial and renames it to --out, so a
    failed conversion leaves nothing behind. Returns the absolute --out."""
    out = os.path.abspath(args.out)
    if os.path.exists(out) and not args.force:
        raise ConvertError(f"{out} exists (use --force to replace it)")
    tmp = out + ".partial"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    ok = False
    try:
        fill(tmp)
        if os.path.exists(out):
            shutil.rmtree(out)
        os.rename(tmp, out)
        ok = True
    finally:
        if not ok and os.path.exists(tmp):
            shutil.rmtree(tmp)
    return out


def write_config(tmp, cfg):
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def copy_present(src_dir, tmp, names):
    for fn in names:
        src = os.path.join(src_dir, fn)
        if os.path.exists(src):
            shutil.copyfile(src, os.path.join(tmp, fn))  # follows symlinks


def report(out, w):
    q = f", {len(w.quantized)} quantized" if w.quantized else ""
    print(f"wrote {out}: {len(w.seen)} tensors ({w.dtypes}{q}), {w.writer.total / 1e9:.3f} GB "
          f"in {w.n_shards} shard(s)", file=sys.stderr)


TORCH_DTYPE_NAMES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
TOKENIZER_FILES = ("tokenizer.model", "added_tokens.json", "special_tokens_map.json",
                   "tokenizer_config.json", "generation_config.json")
LLM_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "vocab_size")


# ---------------------------------------------------------------- main

def clip_vision_config(clip_dir):
    """The vision part of a CLIPConfig (or a CLIPVisionConfig), with
    transformers' defaults filled in. Like CLIPConfig.__init__ in 4.31, a
    "vision_config_dict" (present in openai/clip-vit-large-patch14's
    config.json) takes precedence over "vision_config"."""
    cc = load_json(os.path.join(clip_dir, "config.json"))
    if "vision_config" in cc or "vision_config_dict" in cc:
        vc = dict(cc.get("vision_config") or {})
        vc.update(cc.get("vision_config_dict") or {})
    else:
        vc = cc
    out = {k: (vc[k] if vc.get(k) is not None else v) for k, v in CLIP_VISION_DEFAULTS.items()}
    out["model_type"] = "clip_vision_model"
    return out


def convert_lisa(args):
    rel, clip_dir = args.release, args.clip
    cfg = load_json(os.path.join(rel, "config.json"))
    for k in LLM_KEYS + ("mm_hidden_size", "out_dim"):
        if k not in cfg:
            raise ConvertError(f"{rel}/config.json: missing '{k}' (not a LISA config?)")
    sam = dict(SAM_VIT_H)
    sam.update(cfg.get("sam_config", {}))
    vc = clip_vision_config(clip_dir)
    if vc["hidden_size"] != cfg["mm_hidden_size"]:
        raise ConvertError(f"CLIP hidden_size {vc['hidden_size']} != LISA mm_hidden_size "
                           f"{cfg['mm_hidden_size']}")
    if sam["prompt_embed_dim"] != cfg["out_dim"]:
        raise ConvertError(f"SAM prompt dim {sam['prompt_embed_dim']} != LISA out_dim {cfg['out_dim']}")

    expected = {}
    expected.update(llm_expected(cfg))
    expected.update(lisa_heads_expected(cfg))
    expected.update(sam_expected(sam))
    expected.update(clip_expected(vc))

    added = {}
    if os.path.isfile(os.path.join(rel, "added_tokens.json")):
        added = load_json(os.path.join(rel, "added_tokens.json"))
    if "[SEG]" not in added:
        raise ConvertError(f"{rel}/added_tokens.json has no [SEG] token")
    if not os.path.exists(os.path.join(rel, "tokenizer.model")):
        raise ConvertError(f"{rel}/tokenizer.model is missing")

    def from_release(name):
        if "vision_tower" in name:
            return None, f"{name}: vision tower weights in the release (LISA loads CLIP from --clip)"
        return name, None

    def from_clip(name):
        # text_model.*, visual_projection, text_projection, logit_scale: unused
        return (CLIP_PREFIX + name if name.startswith("vision_model.") else None), None

    sources = [(p, from_release) for p in checkpoint_files(rel, "--release")]
    sources += [(p, from_clip) for p in checkpoint_files(clip_dir, "--clip")]
    written = []

    def fill(tmp):
        w = write_tensors(tmp, args, expected, sources)
        written.append(w)
        # config.json: LISA's config + what the engine needs in one place
        ocfg = dict(cfg)
        ocfg.pop("sam_config", None)
        if args.dtype != "keep":
            ocfg["torch_dtype"] = TORCH_DTYPE_NAMES[args.dtype]
        ocfg["vision_config"] = vc
        ocfg["sam_config"] = sam
        ocfg["seg_token_idx"] = added["[SEG]"]
        ocfg["image_token_index"] = -200
        ocfg["lisa_model_format"] = {
            "version": FORMAT_VERSION,
            "vision_tower_prefix": CLIP_PREFIX,
            "dtype_policy": args.dtype,
            "tensor_dtypes": w.dtypes,
            "source_release": os.path.basename(os.path.normpath(rel)),
            "source_clip": os.path.basename(os.path.normpath(clip_dir)),
        }
        q = quant_info(args, w.quantized, w.kept)
        if q:
            ocfg["lisa_model_format"]["quantization"] = q
        write_config(tmp, ocfg)
        copy_present(rel, tmp, TOKENIZER_FILES)
        copy_present(clip_dir, tmp, ("preprocessor_config.json",))

    report(build_output(args, fill), written[0])


def convert_llama(args):
    src = args.llama
    cp = os.path.join(src, "config.json")
    if not os.path.isfile(cp):
        raise ConvertError(f"--llama {src}: no config.json")
    cfg = load_json(cp)
    for k in LLM_KEYS:
        if k not in cfg:
            raise ConvertError(f"{cp}: missing '{k}' (not a LLaMA config?)")
    if cfg.get("model_type", "llama") != "llama":
        raise ConvertError(f"{cp}: model_type '{cfg['model_type']}' is not 'llama'")
    if cfg["hidden_size"] % cfg["num_attention_heads"]:
        raise ConvertError(f"{cp}: hidden_size {cfg['hidden_size']} is not divisible by "
                           f"num_attention_heads {cfg['num_attention_heads']}")
    if not os.path.exists(os.path.join(src, "tokenizer.model")):
        raise ConvertError(f"--llama {src}: tokenizer.model is missing (the engine's tokenizer "
                           "is SentencePiece)")
    expected = llm_expected(cfg)
    sources = [(p, lambda name: (name, None)) for p in checkpoint_files(src, "--llama")]
    written = []

    def fill(tmp):
        w = write_tensors(tmp, args, expected, sources)
        written.append(w)
        ocfg = dict(cfg)
        if args.dtype != "keep":
            ocfg["torch_dtype"] = TORCH_DTYPE_NAMES[args.dtype]
        ocfg["lisa_model_format"] = {
            "version": FORMAT_VERSION,
            "dtype_policy": args.dtype,
            "tensor_dtypes": w.dtypes,
            "source_llama": os.path.basename(os.path.normpath(src)),
        }
        q = quant_info(args, w.quantized, w.kept)
        if q:
            ocfg["lisa_model_format"]["quantization"] = q
        write_config(tmp, ocfg)
        copy_present(src, tmp, TOKENIZER_FILES)

    report(build_output(args, fill), written[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.split("\n")[2:]))
    ap.add_argument("--release", help="released LISA checkpoint directory")
    ap.add_argument("--clip", help="CLIP (openai/clip-vit-large-patch14) directory")
    ap.add_argument("--llama", help="plain HF LLaMA checkpoint directory (instead of "
                                    "--release/--clip): writes an LLM-only model directory")
    ap.add_argument("--out", required=True, help="model directory to write")
    ap.add_argument("--dtype", choices=("keep", "bf16", "fp16", "fp32"), default="keep")
    ap.add_argument("--quantize", choices=tuple(QUANT_BLOCK_BYTES),
                    help="store the LLM matmul weights as llama.cpp Q8_0 / Q4_0 blocks")
    ap.add_argument("--quantize-unaligned", choices=("error", "keep"), default="error",
                    help="a weight whose row length is not a multiple of 32: stop (default) "
                         "or keep it in --dtype")
    ap.add_argument("--max-shard-size", type=parse_size, default=parse_size("2GB"),
                    help="largest output shard (default 2GB = 2e9 bytes)")
    ap.add_argument("--force", action="store_true", help="replace --out if it exists")
    args = ap.parse_args()
    if args.llama and (args.release or args.clip):
        ap.error("--llama replaces --release and --clip")
    if not args.llama and not (args.release and args.clip):
        ap.error("give --release and --clip (a LISA checkpoint) or --llama (a LLaMA one)")
    try:
        if args.quantize:
            try:
                import gguf.quants  # noqa: F401 (fail before reading anything)
            except ImportError as e:
                raise ConvertError(f"--quantize needs the gguf package (pip install gguf): {e}")
        if args.llama:
            convert_llama(args)
        else:
            convert_lisa(args)
    except ConvertError as e:
        print(f"convert-lisa: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
