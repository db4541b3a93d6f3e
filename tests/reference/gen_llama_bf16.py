#!/usr/bin/env python3
"""gen_llama_bf16.py: how far transformers 4.31 itself moves in bfloat16 on
the llama fixtures, the yardstick for test-llama's bf16 run.

For each model folder written by gen_llama.py (llama-mha, llama-gqa, llama-tc) it loads
the checkpoint with torch_dtype=bfloat16, runs every case's prompt as the fp32
reference did (one uncached forward) and greedy generate(), and compares with
the fp32 reference outputs stored beside it. Writes bf16-reference.json:

  {"transformers", "torch", "cases": [{"logits_rel_err", "hidden_rel_err",
   "tokens_agree"}], "worst_logits_rel_err", "worst_hidden_rel_err"}

  rel err       max |bf16 - fp32| / max |fp32| over the case's two logits rows
                (positions 0 and T-1) and its final-norm hidden states
  tokens_agree  leading greedy tokens equal to the fp32 continuation

test-llama (LISA_TEST_DTYPE=bf16, CUDA) allows twice the worst of each: the
engine in bf16 may be no worse than twice what the reference library's own
bf16 run is on the same prompts. torch 1.13 has no fp16 matmul on the CPU,
so there is no fp16 counterpart.

  /work/venv/bin/python tests/reference/gen_llama_bf16.py [--fixtures tests/fixtures]
"""
import argparse
import json
import os

import numpy as np
import torch
import transformers
from transformers import LlamaForCausalLM


def rel_err(a, ref):
    return float(np.abs(a - ref).max() / np.abs(ref).max())


def measure(d):
    exp = json.load(open(os.path.join(d, "expected.json")))
    model = LlamaForCausalLM.from_pretrained(d, torch_dtype=torch.bfloat16).eval()
    cases = []
    for c in exp["cases"]:
        ids = c["ids"]
        T = len(ids)
        x = torch.tensor([ids])
        out = model(x, output_hidden_states=True, use_cache=False)
        hidden = out.hidden_states[-1][0].float().numpy()
        logits = out.logits[0].float()
        rows = torch.stack([logits[0], logits[T - 1]]).numpy()
        ref_h = np.fromfile(os.path.join(d, c["hidden_file"]), "<f4").reshape(hidden.shape)
        ref_l = np.fromfile(os.path.join(d, c["logits_file"]), "<f4").reshape(rows.shape)
        gen = model.generate(x, do_sample=False, num_beams=1, max_new_tokens=c["max_new_tokens"],
                             attention_mask=torch.ones_like(x), pad_token_id=0)[0, T:].tolist()
        agree = 0
        while agree < min(len(gen), len(c["generated"])) and gen[agree] == c["generated"][agree]:
            agree += 1
        cases.append({"logits_rel_err": rel_err(rows, ref_l),
                      "hidden_rel_err": rel_err(hidden, ref_h),
                      "tokens_agree": agree})
    return {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "cases": cases,
        "worst_logits_rel_err": max(c["logits_rel_err"] for c in cases),
        "worst_hidden_rel_err": max(c["hidden_rel_err"] for c in cases),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--fixtures", default=os.path.normpath(os.path.join(here, "..", "fixtures")))
    args = ap.parse_args()
    assert transformers.__version__ == "4.31.0", transformers.__version__
    torch.set_grad_enabled(False)
    torch.set_num_threads(1)
    for name in ("llama-mha", "llama-gqa", "llama-tc"):
        d = os.path.join(args.fixtures, name)
        doc = measure(d)
        with open(os.path.join(d, "bf16-reference.json"), "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        print(f"{name}: transformers bf16 worst logits rel err {doc['worst_logits_rel_err']:.4f}, "
              f"hidden {doc['worst_hidden_rel_err']:.4f}, tokens agree "
              f"{[c['tokens_agree'] for c in doc['cases']]}")


if __name__ == "__main__":
    main()
