#!/usr/bin/env python3
"""gen_ops.py: reference cases for the backend ops (kernels/backend.h),
computed in fp32 with torch 1.13 and transformers 4.31's LLaMA building blocks.

Writes tests/fixtures/ops/ops.json, read by tests/unit/test-ops.c. The file
documents its own fields under "about". Every float is the exact value of a
float32 (written as the shortest double repr of it), so the C test reads the
same inputs bit for bit. Weights meant to be stored as bf16/f16 are given
already rounded to that dtype (as fp32 numbers), with a "*_dtype" field: the
C test narrows them, which is exact.

Ops and how each reference is computed:
  matmul     torch.nn.functional.linear(x, w, bias) in fp32
  embedding  table[ids]
  rmsnorm    transformers LlamaRMSNorm (fp32 module, weight set)
  rope       transformers LlamaRotaryEmbedding + apply_rotary_pos_emb
  attention  LlamaAttention's arithmetic: repeat_kv, q k^T / sqrt(D),
             _make_causal_mask, softmax in fp32, @ v
  swiglu     silu(gate) * up (LlamaMLP's act_fn(gate_proj) * up_proj)
  add        a + b
  softmax    torch.softmax(x, -1, dtype=float32)
  argmax     numpy.argmax (first occurrence on ties, like the C contract)
  get_rows   src[idx]

Deterministic (fixed seed). Run with the reference venv:
  /work/venv/bin/python tests/reference/gen_ops.py [--out tests/fixtures/ops/ops.json]
"""
import argparse
import json
import math
import os

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from transformers.models.llama import modeling_llama as ml

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}

ABOUT = {
    "format": "Every op key holds a list of cases. Arrays are flat row-major float lists "
              "(torch order, outermost dimension first) whose values are exact float32; "
              "integer arrays (ids, positions) are flat int lists. Shapes are given by the "
              "named size fields of each case.",
    "matmul": "out (M, N) = x (M, K) @ w (N, K)^T [+ bias (N)]. w_dtype/bias_dtype: the dtype "
              "the weight/bias tensor is stored in (its values are representable in it); "
              "bias is null when absent.",
    "embedding": "out (n, C) = table (V, C)[ids (n)]; table_dtype as w_dtype above.",
    "rmsnorm": "out (n, C) = x / sqrt(mean(x^2) + eps) * w (C), transformers LlamaRMSNorm; "
               "w_dtype as above.",
    "rope": "x (n, H, D) rotated in place (HF rotate-half) at positions pos (n) with "
            "inv_freq[i] = theta^(-2i/D); out (n, H, D). transformers LlamaRotaryEmbedding("
            "D, 2048, theta) + apply_rotary_pos_emb.",
    "attention": "q (n, H, D), k and v (n, KVH, D): row i belongs to sequence seq[i] at position "
                 "pos[i]; the test writes k, v into caches (S, Tmax, KVH, D) at [seq[i], pos[i]] "
                 "with kv_store, then runs attention. out (n, H*D): row i attends causally to "
                 "its sequence's positions 0..pos[i]; computed per sequence as LlamaAttention "
                 "does (repeat_kv, scale 1/sqrt(D), causal mask, fp32 softmax).",
    "swiglu": "out (n, I) = silu(gate) * up.",
    "add": "out (n, C) = a + b.",
    "softmax": "out (n, V) = softmax over each row of x (n, V), fp32.",
    "argmax": "out (n) = index of the largest value of each row of x (n, V); ties go to the "
              "lowest index.",
    "get_rows": "out (n, C) = src (S, C)[idx (n)].",
}


def flat(t):
    """Exact float32 values of a tensor as a flat list of Python floats."""
    a = t.detach().to(torch.float32).contiguous().numpy().reshape(-1)
    return [float(np.float32(v)) for v in a]


def rounded(t, dtype):
    """t rounded to dtype (round-to-nearest-even, as torch does), back in fp32."""
    return t.to(DTYPES[dtype]).to(torch.float32)


def gen_matmul(g):
    cases = []
    # (M, K, N, w_dtype, bias): M < 8 takes the CPU backend's per-row path,
    # M >= 8 the sgemm path; odd sizes catch blocking remainders.
    shapes = [(3, 37, 19), (1, 64, 5), (8, 33, 7), (21, 37, 19)]
    for M, K, N in shapes:
        for wd in ("f32", "bf16", "f16"):
            for with_bias in (False, True):
                if (M, K, N) != (3, 37, 19) and (M, K, N) != (21, 37, 19) and with_bias:
                    continue
                x = torch.randn(M, K, generator=g)
                w = rounded(torch.randn(N, K, generator=g) / math.sqrt(K), wd)
                b = rounded(torch.randn(N, generator=g), wd) if with_bias else None
                out = F.linear(x, w, b)
                cases.append({"name": f"matmul M{M} K{K} N{N} {wd}{' bias' if with_bias else ''}",
                              "M": M, "K": K, "N": N, "w_dtype": wd,
                              "bias_dtype": wd if with_bias else None,
                              "x": flat(x), "w": flat(w), "bias": flat(b) if with_bias else None,
                              "out": flat(out)})
    return cases


def gen_embedding(g):
    cases = []
    V, C = 11, 13
    ids = [3, 0, 10, 3, 7, 1]
    for td in ("f32", "bf16", "f16"):
        table = rounded(torch.randn(V, C, generator=g), td)
        out = F.embedding(torch.tensor(ids), table)
        cases.append({"name": f"embedding {td}", "V": V, "C": C, "n": len(ids),
                      "table_dtype": td, "table": flat(table), "ids": ids, "out": flat(out)})
    return cases


def gen_rmsnorm(g):
    cases = []
    for n, C, eps, wd in ((4, 24, 1e-6, "f32"), (4, 37, 1e-6, "bf16"), (3, 64, 1e-5, "f16")):
        scales = torch.tensor([1e-3, 1.0, 100.0, 7.0][:n]).unsqueeze(1)
        x = torch.randn(n, C, generator=g) * scales
        w = rounded(1.0 + 0.1 * torch.randn(C, generator=g), wd)
        norm = ml.LlamaRMSNorm(C, eps=eps)
        norm.weight.data.copy_(w)
        out = norm(x)
        cases.append({"name": f"rmsnorm n{n} C{C} eps{eps:g} {wd}", "n": n, "C": C, "eps": eps,
                      "w_dtype": wd, "x": flat(x), "w": flat(w), "out": flat(out)})
    return cases


def gen_rope(g):
    cases = []
    for H, D, pos in ((3, 8, [0, 1, 5, 17, 300]), (2, 16, [0, 1, 5, 17, 300]),
                      (2, 8, [2047, 7, 1000, 0, 3000])):
        theta = 10000.0
        n = len(pos)
        x = torch.randn(n, H, D, generator=g)
        rot = ml.LlamaRotaryEmbedding(D, max_position_embeddings=2048, base=theta)
        q = x.permute(1, 0, 2).unsqueeze(0)  # (1, H, n, D) as in LlamaAttention
        cos, sin = rot(q, seq_len=max(pos) + 1)
        q_embed, _ = ml.apply_rotary_pos_emb(q, q, cos, sin, torch.tensor([pos]))
        out = q_embed[0].permute(1, 0, 2)
        cases.append({"name": f"rope H{H} D{D} pos{pos}", "n": n, "H": H, "D": D, "theta": theta,
                      "pos": pos, "x": flat(x), "out": flat(out)})
    return cases


def hf_attention(q, k, v):
    """q (L, H, D), k/v (L, KVH, D) of one sequence -> (L, H*D), LlamaAttention's way."""
    L, H, D = q.shape
    KVH = k.shape[1]
    qs = q.permute(1, 0, 2).unsqueeze(0)
    ks = ml.repeat_kv(k.permute(1, 0, 2).unsqueeze(0), H // KVH)
    vs = ml.repeat_kv(v.permute(1, 0, 2).unsqueeze(0), H // KVH)
    w = torch.matmul(qs, ks.transpose(2, 3)) / math.sqrt(D)
    mask = ml._make_causal_mask((1, L), torch.float32, torch.device("cpu"), 0)
    w = w + mask
    w = torch.max(w, torch.tensor(torch.finfo(w.dtype).min))
    w = F.softmax(w, dim=-1, dtype=torch.float32)
    o = torch.matmul(w, vs)  # (1, H, L, D)
    return o.transpose(1, 2).reshape(L, H * D)


def gen_attention(g):
    cases = []
    H, KVH, D = 4, 2, 8
    lens = [5, 3]
    qs, ks, vs, outs, seq, pos = [], [], [], [], [], []
    for s, L in enumerate(lens):
        q = 2.0 * torch.randn(L, H, D, generator=g)
        k = 2.0 * torch.randn(L, KVH, D, generator=g)
        v = torch.randn(L, KVH, D, generator=g)
        qs.append(q), ks.append(k), vs.append(v), outs.append(hf_attention(q, k, v))
        seq += [s] * L
        pos += list(range(L))
    q, k, v, out = (torch.cat(t) for t in (qs, ks, vs, outs))
    base = {"H": H, "KVH": KVH, "D": D, "seq_lens": lens}
    cases.append(dict(base, name="attention GQA 4/2 heads, sequences 5+3, in order", n=len(seq),
                      S=2, Tmax=8, seq=seq, pos=pos, q=flat(q), k=flat(k), v=flat(v),
                      out=flat(out)))
    # Same sequences, rows interleaved, sequence 1 in cache slot 2 of 3.
    perm = [5, 0, 1, 6, 2, 7, 3, 4]
    slot = {0: 0, 1: 2}
    cases.append(dict(base, name="attention GQA 4/2 heads, rows interleaved, slots 0 and 2",
                      n=len(seq), S=3, Tmax=6, seq=[slot[seq[i]] for i in perm],
                      pos=[pos[i] for i in perm], q=flat(q[perm]), k=flat(k[perm]),
                      v=flat(v[perm]), out=flat(out[perm])))
    return cases


def gen_swiglu(g):
    n, I = 3, 29
    gate = 3.0 * torch.randn(n, I, generator=g)
    gate[0, :6] = torch.tensor([0.0, -100.0, 100.0, -20.0, 20.0, 1e-8])
    up = torch.randn(n, I, generator=g)
    out = F.silu(gate) * up
    return [{"name": f"swiglu n{n} I{I}", "n": n, "I": I, "gate": flat(gate), "up": flat(up),
             "out": flat(out)}]


def gen_add(g):
    n, C = 3, 17
    a = torch.randn(n, C, generator=g)
    b = torch.randn(n, C, generator=g)
    return [{"name": f"add n{n} C{C}", "n": n, "C": C, "a": flat(a), "b": flat(b),
             "out": flat(a + b)}]


def gen_softmax(g):
    V = 50
    x = torch.randn(5, V, generator=g)
    x[1] = x[1] * 30 + 1000.0       # large values: needs max subtraction
    x[2] = x[2] * 30 - 10000.0      # large negative values
    x[3] = 3.0                      # uniform row
    x[4] = x[4] * 100.0             # one dominant entry, many underflows
    out = torch.softmax(x, -1, dtype=torch.float32)
    return [{"name": f"softmax n5 V{V}", "n": 5, "V": V, "x": flat(x), "out": flat(out)}]


def gen_argmax(g):
    V = 37
    x = torch.randn(5, V, generator=g)
    x[1, 4] = x[1, 20] = x[1].max() + 1.0   # tie: lowest index wins
    x[2] = -x[2].abs() - 1.0                # all negative
    x[3] = 0.5                              # all equal: index 0
    x[4, V - 1] = 100.0                     # maximum at the last index
    xf = np.array(flat(x), dtype=np.float32).reshape(5, V)
    out = [int(i) for i in np.argmax(xf, axis=1)]
    return [{"name": f"argmax n5 V{V}", "n": 5, "V": V, "x": flat(x), "out": out}]


def gen_get_rows(g):
    S, C = 6, 9
    src = torch.randn(S, C, generator=g)
    idx = [5, 0, 2, 2]
    return [{"name": "get_rows", "S": S, "C": C, "n": len(idx), "src": flat(src), "idx": idx,
             "out": flat(src[idx])}]


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
        os.path.join(here, "..", "fixtures", "ops", "ops.json")))
    args = ap.parse_args()
    assert transformers.__version__ == "4.31.0", transformers.__version__
    torch.set_grad_enabled(False)
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(20240601)
    doc = {"about": ABOUT, "generator": f"tests/reference/gen_ops.py, torch {torch.__version__}, "
                                         f"transformers {transformers.__version__}"}
    for name, fn in (("matmul", gen_matmul), ("embedding", gen_embedding),
                     ("rmsnorm", gen_rmsnorm), ("rope", gen_rope), ("attention", gen_attention),
                     ("swiglu", gen_swiglu), ("add", gen_add), ("softmax", gen_softmax),
                     ("argmax", gen_argmax), ("get_rows", gen_get_rows)):
        doc[name] = fn(g)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(dumps(doc))
    n = sum(len(v) for k, v in doc.items() if isinstance(v, list))
    print(f"{args.out}: {n} cases, {os.path.getsize(args.out) / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
