#!/usr/bin/env python3
"""bench_llm_torch.py: prefill and decode throughput of the LLaMA decoder in
PyTorch eager (random weights) on a GPU (or the CPU), the baseline that
`lisa bench llm --device cuda` is compared with (scripts/gpu-check.sh).

The model is built at a config's shapes (configs/*.json) directly on the
device in --dtype (default bfloat16):
  --impl transformers  HF transformers' LlamaForCausalLM, whatever version is
                       installed: "PyTorch eager" as users run it;
  --impl pure          a minimal LLaMA written here in plain torch (RMSNorm,
                       RoPE, scaled_dot_product_attention over a preallocated
                       KV cache, SwiGLU, lm_head on the last position only);
  --impl auto          (default) transformers when importable, else pure.
The JSON lines say which one ran ("impl").

For each batch size B, after one untimed warm-up round of the same shapes
(torch.inference_mode, torch.cuda.synchronize around every timer):
  prefill  one forward over random ids (B, T) that fills the KV cache;
           prefill_tok_s = B*T / seconds
  decode   --new-tokens greedy steps of one token per sequence over the cache;
           decode_tok_s = B*steps / seconds
and prints one JSON line in bench_llm_transformers.py's format:
  {"engine": "torch", "batch": B, "prompt_len": T, "prefill_tok_s": ..,
   "decode_tok_s": .., "new_tokens": .., "impl": .., "dtype": .., ...}
A batch written B@T in --batches uses prompt length T for that batch (e.g.
--batches 1,16,64@64). A batch that runs out of memory prints a line with
"error" instead of the timings, and the next batch still runs.

"lm_head_rows" says over how many prompt positions the prefill computed the
lm_head: "last" (pure; transformers versions whose forward takes
logits_to_keep / num_logits_to_keep, which this script passes as 1, as
generate() does) or "all" (older transformers, e.g. 4.31, always computes the
lm_head over every position: (B*T, V) logits, a real cost of that version).

--copy-gib G (default 1; 0 to skip) first measures device-to-device copy
bandwidth: a G GiB buffer copied into another 20 times (after a warm-up),
(bytes read + bytes written) / seconds, printed as
  {"engine": "torch", "d2d_copy_GBps": .., "copy_bytes": .., "iters": .., "device": ..}
(GB = 1e9 bytes). --copy-only stops after it.

Examples:

  python3 tests/reference/bench_llm_torch.py --config configs/llama-13b.json \
      --prompt-len 300 --batches 1,16,64 --new-tokens 32
  /work/venv/bin/python tests/reference/bench_llm_torch.py --device cpu \
      --config configs/llama-bench-small.json --prompt-len 16 --batches 1,2 \
      --new-tokens 4 --copy-gib 0.125
"""
import argparse
import json
import math
import os
import sys
import time

DTYPES = ("float32", "bfloat16", "float16")


def sync(dev):
    import torch
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def copy_bandwidth(dev, gib, iters=20):
    """Bytes read + written per second of a device-to-device copy."""
    import torch
    n = int(gib * (1 << 30))
    src = torch.empty(n, dtype=torch.uint8, device=dev)
    src.fill_(1)
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    sync(dev)
    t0 = time.perf_counter()
    for _ in range(iters):
        dst.copy_(src)
    sync(dev)
    dt = time.perf_counter() - t0
    del src, dst
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return {"engine": "torch", "d2d_copy_GBps": round(2 * n * iters / dt / 1e9, 2),
            "copy_bytes": n, "iters": iters, "device": str(dev)}


# ---------------------------------------------------------------- pure torch


class PureLlama:
    """LLaMA decoder (HF layout and math) with a preallocated KV cache."""

    def __init__(self, cfg, dev, dtype, gen_seed=0):
        import torch
        self.C = cfg["hidden_size"]
        self.H = cfg["num_attention_heads"]
        self.KVH = cfg.get("num_key_value_heads") or self.H
        self.D = self.C // self.H
        self.I = cfg["intermediate_size"]
        self.V = cfg["vocab_size"]
        self.L = cfg["num_hidden_layers"]
        self.eps = cfg.get("rms_norm_eps", 1e-6)
        self.theta = cfg.get("rope_theta", 10000.0)
        self.dev, self.dtype = dev, dtype
        torch.manual_seed(gen_seed)

        def w(*shape):
            return torch.randn(*shape, device=dev, dtype=dtype) * 0.02

        def ones(n):
            return torch.ones(n, device=dev, dtype=dtype)

        C, H, KVH, D, I = self.C, self.H, self.KVH, self.D, self.I
        self.embed = w(self.V, C)
        self.layers = [dict(ln1=ones(C), wq=w(H * D, C), wk=w(KVH * D, C), wv=w(KVH * D, C),
                            wo=w(C, H * D), ln2=ones(C), wg=w(I, C), wu=w(I, C), wd=w(C, I))
                       for _ in range(self.L)]
        self.norm = ones(C)
        self.lm_head = self.embed if cfg.get("tie_word_embeddings") else w(self.V, C)
        self.has_sdpa = hasattr(torch.nn.functional, "scaled_dot_product_attention")
        self.cache = None

    def rmsnorm(self, x, w):
        import torch
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return w * xf.to(x.dtype)

    def rope(self, x, pos):
        """x: (B, h, T, D); pos: (T,) absolute positions (HF rotate_half form)."""
        import torch
        D = self.D
        inv = 1.0 / (self.theta ** (torch.arange(0, D, 2, device=self.dev, dtype=torch.float32) / D))
        f = pos.float()[:, None] * inv[None, :]
        emb = torch.cat((f, f), dim=-1)
        cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
        x1, x2 = x[..., : D // 2], x[..., D // 2:]
        return x * cos + torch.cat((-x2, x1), dim=-1) * sin

    def reset(self, B, tmax):
        import torch
        shape = (B, self.KVH, tmax, self.D)
        self.cache = [(torch.empty(shape, device=self.dev, dtype=self.dtype),
                       torch.empty(shape, device=self.dev, dtype=self.dtype))
                      for _ in range(self.L)]
        self.len = 0

    def attend(self, q, k, v, causal):
        import torch
        if self.H != self.KVH:
            k = k.repeat_interleave(self.H // self.KVH, dim=1)
            v = v.repeat_interleave(self.H // self.KVH, dim=1)
        if self.has_sdpa:
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(self.D)
        if causal:
            T = q.shape[2]
            s = s + torch.full((T, T), float("-inf"), device=self.dev, dtype=s.dtype).triu(1)
        return torch.softmax(s.float(), dim=-1).to(q.dtype) @ v

    def forward(self, ids):
        """ids: (B, T) appended after the cached positions; returns next ids (B, 1)."""
        import torch
        B, T = ids.shape
        p0 = self.len
        pos = torch.arange(p0, p0 + T, device=self.dev)
        x = self.embed[ids]
        for l, W in enumerate(self.layers):
            h = self.rmsnorm(x, W["ln1"])
            q = (h @ W["wq"].t()).view(B, T, self.H, self.D).transpose(1, 2)
            k = (h @ W["wk"].t()).view(B, T, self.KVH, self.D).transpose(1, 2)
            v = (h @ W["wv"].t()).view(B, T, self.KVH, self.D).transpose(1, 2)
            q, k = self.rope(q, pos), self.rope(k, pos)
            kc, vc = self.cache[l]
            kc[:, :, p0:p0 + T] = k
            vc[:, :, p0:p0 + T] = v
            # prefill from an empty cache: causal over the new tokens; decode
            # (T == 1): the one new token sees every cached position.
            a = self.attend(q, kc[:, :, :p0 + T], vc[:, :, :p0 + T], causal=T > 1 and p0 == 0)
            x = x + a.transpose(1, 2).reshape(B, T, self.H * self.D) @ W["wo"].t()
            h = self.rmsnorm(x, W["ln2"])
            g = h @ W["wg"].t()
            x = x + (torch.nn.functional.silu(g) * (h @ W["wu"].t())) @ W["wd"].t()
        self.len = p0 + T
        h = self.rmsnorm(x[:, -1:], self.norm)
        return (h @ self.lm_head.t()).argmax(-1)


def run_pure(model, B, T, steps, dev, gen):
    import torch
    model.reset(B, T + steps + 1)
    ids = torch.randint(3, model.V, (B, T), generator=gen).to(dev)
    sync(dev)
    t0 = time.perf_counter()
    nxt = model.forward(ids)
    sync(dev)
    t1 = time.perf_counter()
    for _ in range(steps):
        nxt = model.forward(nxt)
    sync(dev)
    t2 = time.perf_counter()
    model.cache = None
    return t1 - t0, t2 - t1


# -------------------------------------------------------------- transformers


def build_hf(path, dev, dtype):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig.from_json_file(path)
    def make():
        # Built in `dtype` from the start: 13B in fp32 would not fit next to
        # its bf16 copy. _from_config's keyword is torch_dtype (4.31 ...) or
        # dtype (newer); failing both, the default dtype is switched around it.
        for kw in ("torch_dtype", "dtype"):
            try:
                return LlamaForCausalLM._from_config(cfg, **{kw: dtype})
            except TypeError:
                pass
        old = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            return LlamaForCausalLM(cfg)
        finally:
            torch.set_default_dtype(old)

    if hasattr(torch.device(dev.type), "__enter__"):
        # torch >= 2.0: parameters are created (and initialized) on the device
        with torch.device(dev):
            model = make()
    else:
        model = make().to(dev)
    if next(model.parameters()).dtype != dtype:
        model = model.to(dtype)
    return model.eval(), cfg


def hf_logits_kwarg(model):
    import inspect
    params = inspect.signature(model.forward).parameters
    for name in ("logits_to_keep", "num_logits_to_keep"):
        if name in params:
            return name
    return None


def run_hf(model, kw, B, T, steps, vocab, dev, gen):
    import torch
    extra = {kw: 1} if kw else {}
    ids = torch.randint(3, vocab, (B, T), generator=gen).to(dev)
    sync(dev)
    t0 = time.perf_counter()
    out = model(input_ids=ids, use_cache=True, **extra)
    past = out.past_key_values
    nxt = out.logits[:, -1].argmax(-1, keepdim=True)
    sync(dev)
    t1 = time.perf_counter()
    for _ in range(steps):
        out = model(input_ids=nxt, past_key_values=past, use_cache=True, **extra)
        past = out.past_key_values
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
    sync(dev)
    t2 = time.perf_counter()
    del out, past
    return t1 - t0, t2 - t1


# ---------------------------------------------------------------------- main


def parse_batches(s, T):
    out = []
    for item in (x.strip() for x in s.split(",")):
        if not item:
            continue
        b, _, t = item.partition("@")
        out.append((int(b), int(t) if t else T))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", help="HF LlamaConfig JSON (configs/*.json)")
    ap.add_argument("--prompt-len", type=int, default=300)
    ap.add_argument("--batches", default="1,16,64", help="comma-separated B or B@T")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--dtype", default="bfloat16", choices=DTYPES)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--impl", default="auto", choices=("auto", "transformers", "pure"))
    ap.add_argument("--copy-gib", type=float, default=1.0)
    ap.add_argument("--copy-only", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    args = ap.parse_args()

    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_llm_torch.py: --device %s but torch.cuda.is_available() is False" % dev)
    dtype = getattr(torch, args.dtype)
    torch.set_grad_enabled(False)
    torch.manual_seed(0)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        print("# torch %s, %s" % (torch.__version__, torch.cuda.get_device_name(dev)),
              file=sys.stderr)

    if args.copy_gib > 0:
        print(json.dumps(copy_bandwidth(dev, args.copy_gib)), flush=True)
    if args.copy_only:
        return
    if not args.config:
        ap.error("--config is required unless --copy-only")
    with open(args.config) as f:
        cfgd = json.load(f)
    batches = parse_batches(args.batches, args.prompt_len)
    if args.new_tokens < 1 or any(b < 1 or t < 1 for b, t in batches):
        ap.error("batches, prompt lengths and new-tokens must be positive")
    if max(t for _, t in batches) + args.new_tokens + 1 > cfgd.get("max_position_embeddings", 1 << 30):
        ap.error("prompt-len + new-tokens exceeds max_position_embeddings")

    impl, why = args.impl, ""
    if impl in ("auto", "transformers"):
        try:
            import transformers
            impl = "transformers"
        except ImportError as e:
            if args.impl == "transformers":
                sys.exit("bench_llm_torch.py: --impl transformers: %s" % e)
            impl, why = "pure", "transformers not importable (%s)" % e
    if why:
        print("# impl pure: " + why, file=sys.stderr)

    t_build = time.perf_counter()
    if impl == "transformers":
        model, hcfg = build_hf(args.config, dev, dtype)
        kw = hf_logits_kwarg(model)
        version = "transformers " + transformers.__version__
        vocab = hcfg.vocab_size
    else:
        model = PureLlama(cfgd, dev, dtype)
        kw, version, vocab = None, "pure torch", cfgd["vocab_size"]
    sync(dev)
    t_build = time.perf_counter() - t_build
    gen = torch.Generator().manual_seed(0)
    steps = args.new_tokens

    with torch.inference_mode():
        for B, T in batches:
            row = {"engine": "torch", "batch": B, "prompt_len": T}
            try:
                for n in (min(steps, 2), steps):  # warm-up, then timed
                    if impl == "transformers":
                        tp, td = run_hf(model, kw, B, T, n, vocab, dev, gen)
                    else:
                        tp, td = run_pure(model, B, T, n, dev, gen)
                row.update(prefill_tok_s=round(B * T / tp, 2), decode_tok_s=round(B * steps / td, 2))
            except RuntimeError as e:  # CUDA out of memory and friends
                if isinstance(model, PureLlama):
                    model.cache = None
                row["error"] = str(e).splitlines()[0][:300]
            if dev.type == "cuda":
                row["max_mem_GiB"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 2)
                torch.cuda.empty_cache()
            row.update(new_tokens=steps, impl=impl, version=version, torch=torch.__version__,
                       lm_head_rows="last" if (impl == "pure" or kw) else "all",
                       dtype=args.dtype, device=str(dev), config=os.path.basename(args.config),
                       build_s=round(t_build, 2))
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
