#!/usr/bin/env python3
"""model_sizes.py: weight bytes of a converted LISA model directory per
dtype policy and --quantize type, from the tensor shapes convert-lisa.py
checks (its llm_expected, lisa_heads_expected, sam_expected with SAM ViT-H,
clip_expected with CLIP ViT-L/14-224), so the numbers are what the
converter writes (safetensors headers aside).

  /work/venv/bin/python tests/reference/model_sizes.py [configs/llama-13b.json ...]

Prints one markdown table per LLaMA config (default configs/llama-13b.json
and configs/llama-7b.json, LISA's vocabularies 32003 / 32004): parameters
and bytes per group, then the totals for --dtype keep (released LISA: LLM,
embeddings, projector bf16; text_hidden_fcs, SAM, CLIP fp32) and --dtype
bf16 (everything bf16), each without --quantize and with q8_0 / q4_0 (the
LLM matmul weights and lm_head as 34 / 18 bytes per 32 elements).
"""
import importlib.util
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
spec = importlib.util.spec_from_file_location("convert_lisa",
                                              os.path.join(ROOT, "scripts", "convert-lisa.py"))
conv = importlib.util.module_from_spec(spec)
spec.loader.exec_module(conv)

# openai/clip-vit-large-patch14's vision config (LISA's vision tower)
CLIP_VIT_L14 = dict(conv.CLIP_VISION_DEFAULTS, hidden_size=1024, intermediate_size=4096,
                    num_hidden_layers=24, num_attention_heads=16, patch_size=14, image_size=224)
QUANT_BYTES = {"q8_0": 34, "q4_0": 18}


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def groups(cfg):
    """{group: {name: shape}} of a LISA model with this LLaMA config."""
    cfg = dict(cfg, mm_hidden_size=CLIP_VIT_L14["hidden_size"], out_dim=256)
    llm = conv.llm_expected(cfg)
    g = {"LLM matmul weights + lm_head": {k: v for k, v in llm.items() if conv.QUANT_SCOPE.match(k)},
         "embed_tokens": {k: v for k, v in llm.items() if k == "model.embed_tokens.weight"},
         "LLM norms": {k: v for k, v in llm.items() if k.endswith("norm.weight")},
         "mm_projector": {}, "text_hidden_fcs": {}}
    for k, v in conv.lisa_heads_expected(cfg).items():
        g["mm_projector" if "mm_projector" in k else "text_hidden_fcs"][k] = v
    g["CLIP ViT-L/14 vision tower"] = conv.clip_expected(CLIP_VIT_L14)
    g["SAM ViT-H"] = conv.sam_expected(dict(conv.SAM_VIT_H))
    assert sum(len(x) for x in g.values()) == len(llm) + 6 + len(g["CLIP ViT-L/14 vision tower"]) \
        + len(g["SAM ViT-H"])
    return g


# element bytes per group under --dtype keep (the released dtypes) and bf16
KEEP = {"LLM matmul weights + lm_head": 2, "embed_tokens": 2, "LLM norms": 2, "mm_projector": 2,
        "text_hidden_fcs": 4, "CLIP ViT-L/14 vision tower": 4, "SAM ViT-H": 4}


def group_bytes(shapes, elem, quant):
    if quant:
        return sum(numel(s) // 32 * QUANT_BYTES[quant] for s in shapes.values())
    return sum(numel(s) * elem for s in shapes.values())


def table(path):
    cfg = json.load(open(path))
    g = groups(cfg)
    gb = 1e9
    print(f"### {os.path.basename(path)}: hidden {cfg['hidden_size']}, intermediate "
          f"{cfg['intermediate_size']}, {cfg['num_hidden_layers']} layers, vocab "
          f"{cfg['vocab_size']}\n")
    print("| group | tensors | parameters | bf16 | fp32 | q8_0 | q4_0 |")
    print("|---|---|---|---|---|---|---|")
    for name, shapes in g.items():
        n = sum(numel(s) for s in shapes.values())
        q = [f"{group_bytes(shapes, 0, t) / gb:.3f} GB" if name.startswith("LLM matmul") else "–"
             for t in QUANT_BYTES]
        print(f"| {name} | {len(shapes)} | {n:,} | {n * 2 / gb:.3f} GB | {n * 4 / gb:.3f} GB | "
              f"{q[0]} | {q[1]} |")
    print("\n| --quantize | --dtype keep (vision fp32) | --dtype bf16 (vision bf16) | "
          "of which the LLM (matmuls + embeddings + norms) |")
    print("|---|---|---|---|")
    for quant in (None, "q8_0", "q4_0"):
        tot = {}
        for policy in ("keep", "bf16"):
            t = 0
            for name, shapes in g.items():
                elem = KEEP[name] if policy == "keep" else 2
                t += group_bytes(shapes, elem, quant if name.startswith("LLM matmul") else None)
            tot[policy] = t
        llm = sum(group_bytes(g[n], 2, quant if n.startswith("LLM matmul") else None)
                  for n in ("LLM matmul weights + lm_head", "embed_tokens", "LLM norms"))
        print(f"| {quant or 'none'} | {tot['keep'] / gb:.2f} GB ({tot['keep'] / 2**30:.2f} GiB) | "
              f"{tot['bf16'] / gb:.2f} GB ({tot['bf16'] / 2**30:.2f} GiB) | "
              f"{llm / gb:.2f} GB |")
    print()


def main():
    paths = sys.argv[1:] or [os.path.join(ROOT, "configs", c)
                             for c in ("llama-13b.json", "llama-7b.json")]
    for p in paths:
        table(p)


if __name__ == "__main__":
    main()
