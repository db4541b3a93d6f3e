#!/usr/bin/env python3
"""make_random_llama.py: one random-weight HF LLaMA checkpoint of a given
shape, the input that scripts/bench-llm-peers.sh converts for both lisa and
llama.cpp so that the two engines run on the same weights.

  $PY tests/reference/make_random_llama.py --config configs/llama-1.1b.json \
      --tokenizer tests/fixtures/tokenizer/tokenizer.model --out DIR [--seed 0]

Writes DIR/config.json, generation_config.json, model*.safetensors (bf16,
transformers' save_pretrained) and tokenizer.model (a copy of --tokenizer).
Weights: every matrix (embeddings, projections, lm_head) normal(0, 0.02)
from a torch.Generator seeded with --seed, every RMSNorm weight 1, so the
same seed gives the same bytes. It makes a benchmark input only: random
weights give meaningless text and are not a fixture (nothing under
tests/fixtures is written). Needs torch, transformers and safetensors.
"""
import argparse
import json
import os
import shutil
import sys

import torch
from transformers import LlamaConfig, LlamaForCausalLM

STD = 0.02


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="HF LLaMA config.json giving the shape")
    ap.add_argument("--tokenizer", required=True, help="SentencePiece tokenizer.model to copy")
    ap.add_argument("--out", required=True, help="checkpoint directory to write (must not exist)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    if os.path.exists(a.out):
        sys.exit(f"make_random_llama.py: {a.out} exists; refusing to overwrite it")
    with open(a.config) as f:
        fields = json.load(f)
    fields.pop("transformers_version", None)
    cfg = LlamaConfig(**fields)
    cfg.torch_dtype = "bfloat16"

    # fp32 module, filled in place, then cast: one copy of the weights in
    # fp32 plus one in bf16 at the peak (about 6 bytes per parameter).
    model = LlamaForCausalLM(cfg)
    gen = torch.Generator().manual_seed(a.seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            if p.dim() == 2:
                p.normal_(0.0, STD, generator=gen)
            else:
                p.fill_(1.0)
    model = model.to(torch.bfloat16)
    os.makedirs(a.out)
    # one shard for up to 10 GB of weights (the 1.1B shape is 2.2 GB in bf16)
    model.save_pretrained(a.out, safe_serialization=True, max_shard_size="10GB")
    shutil.copyfile(a.tokenizer, os.path.join(a.out, "tokenizer.model"))
    n = sum(p.numel() for p in model.parameters())
    print(f"make_random_llama.py: {a.out}: {n} parameters, bf16, seed {a.seed}")


if __name__ == "__main__":
    main()
