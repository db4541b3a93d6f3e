#!/usr/bin/env python3
"""gen_quant.py: fixtures for the Q8_0 / Q4_0 weight blocks -> tests/fixtures/quant/.

  /work/venv/bin/python tests/reference/gen_quant.py

1. rows.safetensors: fp32 rows chosen for the corners of llama.cpp's
   reference quantizers, with their Q8_0 and Q4_0 blocks and the dequantized
   values, all from the gguf package (gguf.quants, llama.cpp's own Python
   port, bit-exact with ggml-quants.c's quantize_row_q8_0_ref / q4_0_ref).
   For a case C of R rows of K elements the file holds
     C.x         F32 (R, K)            the input
     C.q8_0      U8 (R, K/32, 34)      Q8_0 blocks  ("lisa.quant.C.q8_0": "q8_0")
     C.q4_0      U8 (R, K/32, 18)      Q4_0 blocks  ("lisa.quant.C.q4_0": "q4_0")
     C.deq_q8_0  F32 (R, K)            gguf.quants.dequantize of C.q8_0
     C.deq_q4_0  F32 (R, K)            gguf.quants.dequantize of C.q4_0
   so lisa_safetensors_open hands the blocks out as Q8_0 / Q4_0 (R, K), and
   __metadata__ "about" describes every case.
2. llama-gqa-q8_0/, llama-gqa-q4_0/: scripts/convert-lisa.py --llama
   tests/fixtures/llama-gqa --quantize q8_0|q4_0 --quantize-unaligned keep
   (its down_proj has K = 48, which stays fp16) --max-shard-size 1MB (two
   shards, so the per-shard __metadata__ keys are exercised);
   llama-tc-q8_0/, llama-tc-q4_0/: the same of tests/fixtures/llama-tc
   (bf16, every matmul weight aligned, down_proj K = 96 = 3 blocks).
   tokenizer.model is a relative symlink to ../../tokenizer/tokenizer.model.

test-quant.c checks that lisa_quantize_q8_0 / q4_0 give exactly these bytes,
that lisa_dtype_to_f32 gives exactly these values, and that the converted
directories hold lisa_quantize_* of the source fp32 weights. Deterministic:
re-running reproduces the same bytes.
"""
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys

import numpy as np
from gguf import GGMLQuantizationType
from gguf.quants import dequantize, quantize
from safetensors.numpy import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIX = os.path.join(ROOT, "tests", "fixtures")
OUT = os.path.join(FIX, "quant")
CONVERT = os.path.join(ROOT, "scripts", "convert-lisa.py")
QK = 32
TYPES = {"q8_0": (GGMLQuantizationType.Q8_0, 34), "q4_0": (GGMLQuantizationType.Q4_0, 18)}


def f32(a):
    return np.asarray(a, dtype=np.float32)


def cases():
    """[(name, about, x (R, K) float32)]."""
    rng = np.random.default_rng(20240613)
    out = []

    def add(name, about, x):
        x = f32(x)
        if x.ndim == 1:
            x = x.reshape(1, -1)
        assert x.shape[1] % QK == 0 and np.all(np.isfinite(x)), name
        out.append((name, about, x))

    z = np.zeros(64)
    z[32:] = rng.normal(0, 1, 32)
    add("zero-block", "block 0 all zeros (d = 0, id = 0), block 1 normal", z)
    add("all-zero", "one all-zero block", np.zeros(32))

    t = rng.uniform(-1, 1, (2, 32))
    t[0, 5], t[0, 20] = 3.0, -3.0
    t[1, 3], t[1, 17] = -3.0, 3.0
    add("tie-max", "|x| max 3 twice with opposite signs; row 0 +3 first, row 1 -3 first "
        "(Q4_0 takes the first)", t)

    n = rng.uniform(-1, 1, (1, 64))
    n[0, 7], n[0, 40] = -2.5, -0.75
    add("neg-max", "the largest |x| of each block is negative", n)

    # Q8_0 with amax 127: d = 1, id = 1, so x * id is x exactly.
    h8 = np.concatenate([[127.0], np.arange(-15.5, 15.0, 1.0),
                         [-127.0], [(-1) ** i * (4 * i + 2.5) for i in range(31)]])
    add("half-q8", "Q8_0 scale exactly 1 (amax 127): x * id lands on k + 0.5 exactly "
        "(roundf rounds half away from zero)", h8)
    # Q4_0 with first max -8: d = 1, id = 1: x + 8.5 lands on integers.
    h4 = np.concatenate([[-8.0], np.arange(-7.5, 7.25, 0.5), [8.0]])
    add("half-q4", "Q4_0 scale exactly 1 (max -8 first): x / d + 8.5 lands on integers "
        "(truncated), +8 gives 16, clamped to 15", h4)
    # Inexact scales, every block led by its largest |x|: amax 1 (Q8_0 d =
    # 1/127) and max 0.7 (Q4_0 d = -0.0875), the other values at k + 0.5
    # steps of the scale, so x * id falls within an ulp or two of k + 0.5
    # and fp32's order of operations (id = 1 / d, then x * id) decides.
    s8, s4 = [], []
    d4 = f32(0.7) / f32(-8)
    for b in range(4):
        s8 += [(-1.0) ** b] + list((f32(np.arange(-126 + b, 126, 8)[:31]) + f32(0.5)) / f32(127))
        s4 += [0.7] + list((f32(np.arange(31) % 15 - 8) + f32(0.5)) * d4)
    add("half-scaled", "inexact scales (Q8_0 amax 1, Q4_0 max 0.7) with values at k + 0.5 "
        "steps of the scale; row 0 for Q8_0, row 1 for Q4_0 (both rows go through both)",
        np.stack([s8, s4]))

    hb = np.concatenate([rng.uniform(-1, 1, 32) * m for m in (1e3, 1e5, 8e6, 1e7)])
    add("huge", "block maxima ~1e3, 1e5, 8e6, 1e7: Q8_0 d up to 6.3e4, then fp16 inf "
        "(Q4_0 d = max / -8 is inf from 8e6)", hb)
    tb = np.concatenate([rng.uniform(-1, 1, 32) * m for m in (1e-3, 1e-5, 3e-6, 1e-7, 1e-30)])
    add("tiny", "block maxima ~1e-3 .. 1e-30: fp16 scales subnormal or flushed to 0 while "
        "the quants (from the fp32 scale) are not", tb)
    # fp16 subnormal rounding ties: amax = 127 * m * 2^-25 gives d = m * 2^-25
    # exactly, half-way between fp16 subnormals for odd m.
    ft = np.concatenate([np.concatenate([[127.0 * m * 2.0**-25], rng.uniform(-1, 1, 31)
                                         * 127.0 * m * 2.0**-26]) for m in (1, 3, 5, 2047)])
    add("fp16-ties", "Q8_0 scales 1, 3, 5, 2047 x 2^-25: ties between fp16 subnormals "
        "(round half to even)", ft)

    for kk in (32, 96, 160, 224, 256):
        add(f"normal-k{kk}", f"normal(0, 0.05) weights, K = {kk}, 3 rows",
            rng.normal(0, 0.05, (3, kk)))
    add("normal-big", "8 rows x 256 of normal(0, 1): 2048 elements, past "
        "lisa_dtype_convert's 1024-element chunk", rng.normal(0, 1, (8, 256)))
    return out


def write_rows():
    tensors, meta, about = {}, {"format": "np"}, {}
    for name, text, x in cases():
        r, k = x.shape
        tensors[f"{name}.x"] = x
        for qname, (qt, nb) in TYPES.items():
            with np.errstate(over="ignore", invalid="ignore"):
                q = quantize(x, qt)
                d = dequantize(q, qt)
            tensors[f"{name}.{qname}"] = np.ascontiguousarray(q).reshape(r, k // QK, nb)
            tensors[f"{name}.deq_{qname}"] = f32(d)
            meta[f"lisa.quant.{name}.{qname}"] = qname
        about[name] = text
    meta["about"] = json.dumps(about, sort_keys=True)
    meta["gguf_version"] = importlib.metadata.version("gguf")
    path = os.path.join(OUT, "rows.safetensors")
    save_file(tensors, path, metadata=meta)
    sort_header(path)
    os.chmod(path, 0o644)
    print(f"rows.safetensors: {len(about)} cases, gguf {meta['gguf_version']}")


def sort_header(path):
    """safetensors writes __metadata__ in hash order: sort it (convert-lisa.py's
    sort_metadata) so the fixture is the same bytes on every run."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("convert_lisa", CONVERT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.sort_metadata(path)


def convert(src, qtype, extra):
    out = os.path.join(OUT, f"{src}-{qtype}")
    r = subprocess.run([sys.executable, CONVERT, "--llama", os.path.join(FIX, src), "--out", out,
                        "--quantize", qtype, "--force"] + extra, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"convert-lisa.py failed for {src} {qtype}:\n{r.stderr}")
    os.remove(os.path.join(out, "tokenizer.model"))
    os.symlink(os.path.join("..", "..", "tokenizer", "tokenizer.model"),
               os.path.join(out, "tokenizer.model"))
    fmt = json.load(open(os.path.join(out, "config.json")))["lisa_model_format"]
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out)
               if f.endswith(".safetensors"))
    print(f"{src}-{qtype}: {fmt['quantization']['tensors']} tensors quantized, "
          f"{fmt['tensor_dtypes']}, {size} bytes of shards")


def main():
    os.makedirs(OUT, exist_ok=True)
    write_rows()
    for qtype in TYPES:
        convert("llama-gqa", qtype, ["--quantize-unaligned", "keep", "--max-shard-size", "1MB"])
        convert("llama-tc", qtype, [])
    for d in os.listdir(OUT):
        if d.endswith(".partial"):
            shutil.rmtree(os.path.join(OUT, d))


if __name__ == "__main__":
    main()
