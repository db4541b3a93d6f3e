#!/usr/bin/env python3
"""bench_llm_transformers.py: prefill and decode throughput of HF transformers'
LlamaForCausalLM (random weights) on the CPU, the baseline `lisa bench llm`
is compared with (scripts/bench-llm.sh).

For each batch size B, after one untimed warm-up round of the same shapes:
  prefill  one forward over random ids (B, T) with use_cache=True;
           prefill_tok_s = B*T / seconds
  decode   --new-tokens greedy steps of one token per sequence, reusing
           past_key_values; decode_tok_s = B*steps / seconds
and prints one JSON line:
  {"engine": "transformers", "batch": B, "prompt_len": T, "prefill_tok_s": ..,
   "decode_tok_s": .., "new_tokens": .., "threads": .., "dtype": .., "config": ..}

The model is exactly what transformers 4.31 runs (the prefill computes the
lm_head over every position, as LlamaForCausalLM.forward does).

--threads sets torch's intra-op threads and, unless already set in the
environment, OPENBLAS_NUM_THREADS: Debian's torch does its matmuls in the
system OpenBLAS, whose thread pool torch.set_num_threads does not control.

OMP_WAIT_POLICY defaults to PASSIVE here (an explicit setting wins). Debian's
torch calls the system BLAS (OpenBLAS, with its own thread pool) from inside
torch's OpenMP regions; with the default spinning OpenMP workers the two pools
fight over the cores, and on a 2-core machine batch-1 decode after a 128-token
prompt ran ~5x slower (7 vs 35 tokens/s). PASSIVE is the fair baseline.

Example:

  /work/venv/bin/python tests/reference/bench_llm_transformers.py \
      --config configs/llama-bench-small.json --prompt-len 128 --batches 1,16
"""
import argparse
import json
import os
import time

DTYPES = ("float32", "bfloat16", "float16")


def run(model, B, T, steps, vocab, gen):
    """Times one prefill of (B, T) random ids and `steps` greedy decode steps."""
    import torch

    ids = torch.randint(3, vocab, (B, T), generator=gen)
    t0 = time.perf_counter()
    out = model(input_ids=ids, use_cache=True)
    t1 = time.perf_counter()
    past = out.past_key_values
    nxt = out.logits[:, -1].argmax(-1, keepdim=True)
    t2 = time.perf_counter()
    for _ in range(steps):
        out = model(input_ids=nxt, past_key_values=past, use_cache=True)
        past = out.past_key_values
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
    t3 = time.perf_counter()
    return t1 - t0, t3 - t2


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True, help="HF LlamaConfig JSON (configs/*.json)")
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--batches", default="1,16", help="comma-separated batch sizes")
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="float32", choices=DTYPES)
    args = ap.parse_args()

    # Both must be set before torch (and with it OpenMP and OpenBLAS) loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(args.threads))
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    torch.manual_seed(0)
    cfg = LlamaConfig.from_json_file(args.config)
    if args.prompt_len < 1 or args.new_tokens < 1:
        ap.error("prompt-len and new-tokens must be positive")
    if args.prompt_len + args.new_tokens + 1 > cfg.max_position_embeddings:
        ap.error("prompt-len + new-tokens exceeds max_position_embeddings")
    model = LlamaForCausalLM(cfg).to(getattr(torch, args.dtype)).eval()
    gen = torch.Generator().manual_seed(0)
    T, steps = args.prompt_len, args.new_tokens
    for B in (int(b) for b in args.batches.split(",") if b.strip()):
        run(model, B, T, min(steps, 2), cfg.vocab_size, gen)  # warm-up
        t_prefill, t_decode = run(model, B, T, steps, cfg.vocab_size, gen)
        print(json.dumps({
            "engine": "transformers", "batch": B, "prompt_len": T,
            "prefill_tok_s": round(B * T / t_prefill, 2),
            "decode_tok_s": round(B * steps / t_decode, 2),
            "new_tokens": steps, "threads": args.threads, "dtype": args.dtype,
            "config": os.path.basename(args.config),
            "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
            "openblas_threads": os.environ["OPENBLAS_NUM_THREADS"],
        }), flush=True)


if __name__ == "__main__":
    main()
