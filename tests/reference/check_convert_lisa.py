#!/usr/bin/env python3
"""check_convert_lisa.py: tests scripts/convert-lisa.py on the tiny fixture.

  /work/venv/bin/python tests/reference/check_convert_lisa.py

1. --dtype keep: every tensor of the release (.bin shards) and of CLIP's
   vision_model.* is in the output under its expected name (CLIP under
   "model.vision_tower.") with the same dtype, shape and bits; nothing else
   is (rotary_emb.inv_freq, position_ids, CLIP's text tower are dropped);
   the index maps every tensor to an existing shard; total_size adds up.
2. --dtype fp32 / bf16 / fp16: every float tensor is the source cast.
3. The committed tests/fixtures/lisa-tiny/model/ equals a fresh conversion
   (same tensors, same config.json and tokenizer/processor files).
4. A release copy with one tensor deleted, a CLIP copy with one tensor
   deleted, and a release copy with one tensor of the wrong shape each make
   the converter exit 1 naming the tensor, and leave no output directory.
5. --quantize q8_0|q4_0 on the tiny LISA (hidden 16): refused naming an
   unaligned weight (nothing left behind); with --quantize-unaligned keep
   only the down_proj weights (K = 64) are quantized, each stored as U8
   [rows, K/32, 34|18] with its "lisa.quant.<name>" key in the __metadata__
   of the shard holding it, equal to gguf.quants of the source's fp32
   values and within half a scale step (Q8_0) / one step (Q4_0) of them;
   every other tensor is the --dtype keep conversion's; config.json's
   quantization object counts them; total_size adds up.
6. --llama: llama-gqa (fp16, 2 shards), llama-mha (one file, untied
   lm_head) with --dtype fp32, llama-tc re-saved as pytorch_model.bin, and a
   random fp32 untied LLaMA with every width a multiple of 32 converted with
   --dtype bf16 --quantize q4_0 (lm_head quantized; quantized from the fp32
   values, not the bf16 cast); configs are the source's plus
   lisa_model_format; tokenizer.model and generation_config.json copied;
   the committed tests/fixtures/quant/*-q8_0|q4_0 equal fresh conversions;
   a missing or misshapen tensor, a non-LLaMA config, a missing
   tokenizer.model each exit 1 naming the problem.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch
from gguf import GGMLQuantizationType
from gguf.quants import dequantize, quantize
from safetensors import safe_open
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIX = os.path.join(ROOT, "tests", "fixtures", "lisa-tiny")
REL, CLIP, MODEL = (os.path.join(FIX, d) for d in ("release", "clip", "model"))
CONVERT = os.path.join(ROOT, "scripts", "convert-lisa.py")


def run(out, release=REL, clip=CLIP, dtype="keep", shard="1.5MB", extra=()):
    return subprocess.run([sys.executable, CONVERT, "--release", release, "--clip", clip,
                           "--out", out, "--dtype", dtype, "--max-shard-size", shard] + list(extra),
                          capture_output=True, text=True)


def run_llama(src, out, *extra):
    return subprocess.run([sys.executable, CONVERT, "--llama", src, "--out", out] + list(extra),
                          capture_output=True, text=True)


def source_tensors():
    idx = json.load(open(os.path.join(REL, "pytorch_model.bin.index.json")))
    src = {}
    for shard in sorted(set(idx["weight_map"].values())):
        for k, v in torch.load(os.path.join(REL, shard), map_location="cpu").items():
            if not k.endswith("rotary_emb.inv_freq"):
                src[k] = v
    with safe_open(os.path.join(CLIP, "model.safetensors"), "pt") as f:
        for k in f.keys():
            if k.startswith("vision_model.") and not k.endswith("position_ids"):
                src["model.vision_tower." + k] = f.get_tensor(k)
    return src


def out_tensors(d):
    idx = json.load(open(os.path.join(d, "model.safetensors.index.json")))
    got, total = {}, 0
    for shard in sorted(set(idx["weight_map"].values())):
        with safe_open(os.path.join(d, shard), "pt") as f:
            for k in f.keys():
                assert idx["weight_map"][k] == shard, k
                got[k] = f.get_tensor(k)
                total += got[k].numel() * got[k].element_size()
    assert set(got) == set(idx["weight_map"]), "index and shards disagree"
    assert idx["metadata"]["total_size"] == total
    return got


def same(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


GGML = {"q8_0": (GGMLQuantizationType.Q8_0, 34), "q4_0": (GGMLQuantizationType.Q4_0, 18)}
SCOPE = ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
         "self_attn.o_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight",
         "mlp.down_proj.weight")


def in_scope(name):
    return name == "lm_head.weight" or (name.startswith("model.layers.") and
                                        name.split(".", 3)[3] in SCOPE)


def shard_metadata(d):
    """{tensor: its shard's __metadata__} over the model directory d."""
    idx = json.load(open(os.path.join(d, "model.safetensors.index.json")))
    meta = {}
    for shard in sorted(set(idx["weight_map"].values())):
        with safe_open(os.path.join(d, shard), "pt") as f:
            m = f.metadata()
            assert m.get("format") == "pt", (shard, m)
            for k in f.keys():
                meta[k] = m
    return meta


def check_quantized(d, src, qtype, dtype_cast=None):
    """Every tensor of d against src (name -> source tensor): the in-scope
    ones with K % 32 == 0 are gguf.quants of the source fp32, flagged in their
    own shard's metadata; the rest equal the source (cast to dtype_cast).
    Returns the number quantized."""
    got, meta = out_tensors(d), shard_metadata(d)
    assert set(got) == set(src), set(got) ^ set(src)
    gt, nb = GGML[qtype]
    n = 0
    for k, t in src.items():
        key = "lisa.quant." + k
        if in_scope(k) and t.shape[-1] % 32 == 0:
            rows, kk = t.shape
            x = t.to(torch.float32).numpy()
            want = np.ascontiguousarray(quantize(x, gt)).reshape(rows, kk // 32, nb)
            q = got[k]
            assert q.dtype == torch.uint8 and tuple(q.shape) == (rows, kk // 32, nb), (k, q.shape)
            assert np.array_equal(q.numpy(), want), k
            assert meta[k].get(key) == qtype, (k, meta[k])
            deq = dequantize(q.numpy().reshape(rows, -1), gt)
            d16 = q.numpy()[:, :, :2].copy().view(np.float16).astype(np.float32)
            step = np.abs(np.repeat(d16.reshape(rows, -1), 32, axis=1))
            bound = (0.5 if qtype == "q8_0" else 1.0) + 0.07
            assert np.all(np.abs(deq - x) <= bound * step + 1e-30), k
            n += 1
        else:
            want = t if dtype_cast is None else t.to(dtype_cast)
            assert same(got[k], want), k
            assert key not in meta[k], k
    cfg = json.load(open(os.path.join(d, "config.json")))
    q = cfg["lisa_model_format"]["quantization"]
    assert q["type"] == qtype and q["block_size"] == 32 and q["tensors"] == n and \
        q["scope"] == "llm-matmul", q
    assert cfg["lisa_model_format"]["tensor_dtypes"][qtype.upper()] == n
    return n


def llama_source(d):
    """{name: tensor} of a HF LLaMA directory, inv_freq dropped."""
    src = {}
    idx = os.path.join(d, "model.safetensors.index.json")
    files = sorted(set(json.load(open(idx))["weight_map"].values())) if os.path.exists(idx) \
        else ["model.safetensors"]
    for fn in files:
        with safe_open(os.path.join(d, fn), "pt") as f:
            for k in f.keys():
                if not k.endswith("rotary_emb.inv_freq"):
                    src[k] = f.get_tensor(k)
    return src


def check_quantize_lisa(tmp, src):
    o = os.path.join(tmp, "lisa-q-strict")
    r = run(o, extra=["--quantize", "q8_0"])
    assert r.returncode == 1, r.stderr
    assert "model.layers.0.self_attn.q_proj.weight" in r.stderr and "multiple of 32" in r.stderr
    assert not os.path.exists(o) and not os.path.exists(o + ".partial")
    print("--quantize q8_0 on the tiny LISA: exit 1 naming "
          "model.layers.0.self_attn.q_proj.weight (K = 16)")
    for qtype in GGML:
        o = os.path.join(tmp, f"lisa-{qtype}")
        r = run(o, extra=["--quantize", qtype, "--quantize-unaligned", "keep"])
        assert r.returncode == 0, r.stderr
        n = check_quantized(o, src, qtype)
        q = json.load(open(os.path.join(o, "config.json")))["lisa_model_format"]["quantization"]
        kept = sorted(k for k in src if in_scope(k) and src[k].shape[-1] % 32)
        assert q["kept_unaligned"] == kept, q
        print(f"--quantize {qtype} --quantize-unaligned keep: {n} down_proj weights quantized "
              f"(= gguf, in their shard's metadata), {len(kept)} kept")


def random_llama(d, seed=7):
    """A random fp32 LLaMA, untied, every width a multiple of 32, in two
    safetensors shards + index, with the fixture tokenizer."""
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
           "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "vocab_size": 160, "rms_norm_eps": 1e-5,
           "max_position_embeddings": 256, "tie_word_embeddings": False, "bos_token_id": 1,
           "eos_token_id": 2, "torch_dtype": "float32"}
    os.makedirs(d)
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
    g = torch.Generator().manual_seed(seed)
    sd = {}
    import importlib.util
    spec = importlib.util.spec_from_file_location("convert_lisa", CONVERT)
    conv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conv)
    for k, shape in conv.llm_expected(cfg).items():
        sd[k] = torch.randn(*shape, generator=g) * 0.3
    names = sorted(sd)
    half = len(names) // 2
    wm = {}
    for i, part in enumerate((names[:half], names[half:])):
        fn = f"model-{i + 1:05d}-of-00002.safetensors"
        save_file({k: sd[k] for k in part}, os.path.join(d, fn), metadata={"format": "pt"})
        wm.update({k: fn for k in part})
    json.dump({"metadata": {}, "weight_map": wm},
              open(os.path.join(d, "model.safetensors.index.json"), "w"))
    shutil.copyfile(os.path.join(ROOT, "tests", "fixtures", "tokenizer", "tokenizer.model"),
                    os.path.join(d, "tokenizer.model"))
    return sd


def check_llama(tmp):
    fix = os.path.join(ROOT, "tests", "fixtures")
    # a. llama-gqa as it is
    gqa = os.path.join(fix, "llama-gqa")
    o = os.path.join(tmp, "llama-gqa")
    r = run_llama(gqa, o)
    assert r.returncode == 0, r.stderr
    src = llama_source(gqa)
    got = out_tensors(o)
    assert set(got) == set(src) and all(same(got[k], src[k]) for k in src)
    cfg, scfg = (json.load(open(os.path.join(x, "config.json"))) for x in (o, gqa))
    fmt = cfg.pop("lisa_model_format")
    assert cfg == scfg and fmt["source_llama"] == "llama-gqa" and fmt["dtype_policy"] == "keep" \
        and "quantization" not in fmt, fmt
    for fn in ("tokenizer.model", "generation_config.json"):
        assert open(os.path.join(o, fn), "rb").read() == open(os.path.join(gqa, fn), "rb").read()
    print(f"--llama llama-gqa: {len(got)} tensors identical, config = source + lisa_model_format")

    # b. llama-mha: one file, untied lm_head, cast to fp32
    mha = os.path.join(fix, "llama-mha")
    o = os.path.join(tmp, "llama-mha")
    r = run_llama(mha, o, "--dtype", "fp32")
    assert r.returncode == 0, r.stderr
    src = llama_source(mha)
    got = out_tensors(o)
    assert "lm_head.weight" in got and all(same(got[k], src[k].float()) for k in src)
    assert json.load(open(os.path.join(o, "config.json")))["torch_dtype"] == "float32"
    print(f"--llama llama-mha --dtype fp32: {len(got)} tensors equal to the cast source")

    # c. llama-tc re-saved as a pickled pytorch_model.bin
    tc = os.path.join(fix, "llama-tc")
    b = os.path.join(tmp, "llama-tc-bin")
    os.makedirs(b)
    src = llama_source(tc)
    torch.save(src, os.path.join(b, "pytorch_model.bin"))
    for fn in ("config.json", "tokenizer.model", "generation_config.json"):
        shutil.copyfile(os.path.join(tc, fn), os.path.join(b, fn))
    o = os.path.join(tmp, "llama-tc-from-bin")
    r = run_llama(b, o, "--quantize", "q8_0")
    assert r.returncode == 0, r.stderr
    n = check_quantized(o, src, "q8_0")
    print(f"--llama of a pytorch_model.bin --quantize q8_0: {n} tensors = gguf")

    # d. random fp32 untied LLaMA: lm_head quantized, from the fp32 values
    rnd = os.path.join(tmp, "random-llama")
    src = random_llama(rnd)
    o = os.path.join(tmp, "random-q4_0")
    r = run_llama(rnd, o, "--dtype", "bf16", "--quantize", "q4_0", "--max-shard-size", "20KB")
    assert r.returncode == 0, r.stderr
    n = check_quantized(o, src, "q4_0", dtype_cast=torch.bfloat16)
    assert n == 15, n
    lm = out_tensors(o)["lm_head.weight"].numpy()
    via_bf16 = quantize(src["lm_head.weight"].to(torch.bfloat16).float().numpy(),
                        GGMLQuantizationType.Q4_0).reshape(lm.shape)
    assert not np.array_equal(lm, via_bf16), "quantized from the bf16 cast, not the fp32 values"
    n_shards = len(set(json.load(open(os.path.join(o, "model.safetensors.index.json")))
                       ["weight_map"].values()))
    assert n_shards > 2, n_shards
    print(f"--llama random fp32 --dtype bf16 --quantize q4_0: {n} tensors (lm_head included) = "
          f"gguf of the fp32 values, others bf16, {n_shards} shards")

    # e. the committed fixtures are fresh conversions
    for name, extra in (("llama-gqa", ["--quantize-unaligned", "keep", "--max-shard-size", "1MB"]),
                        ("llama-tc", [])):
        for qtype in GGML:
            c = os.path.join(fix, "quant", f"{name}-{qtype}")
            o = os.path.join(tmp, f"fresh-{name}-{qtype}")
            r = run_llama(os.path.join(fix, name), o, "--quantize", qtype, *extra)
            assert r.returncode == 0, r.stderr
            files = sorted(f for f in os.listdir(o) if f != "tokenizer.model")
            assert files == sorted(f for f in os.listdir(c) if f != "tokenizer.model"), c
            for fn in files:
                assert open(os.path.join(o, fn), "rb").read() == \
                    open(os.path.join(c, fn), "rb").read(), (c, fn)
            assert os.readlink(os.path.join(c, "tokenizer.model")) == \
                os.path.join("..", "..", "tokenizer", "tokenizer.model")
            check_quantized(c, llama_source(os.path.join(fix, name)), qtype)
    print("committed tests/fixtures/quant/*-q8_0|q4_0 equal fresh conversions, byte for byte")

    # f. failures
    def broken():
        d = os.path.join(tmp, f"broken-{len(os.listdir(tmp))}")
        shutil.copytree(rnd, d)
        return d

    def edit_shard(d, name, fn):
        """fn(state dict) edits the shard holding name (the index is kept)."""
        idx = json.load(open(os.path.join(d, "model.safetensors.index.json")))
        p = os.path.join(d, idx["weight_map"][name])
        with safe_open(p, "pt") as f:
            sd = {k: f.get_tensor(k) for k in f.keys()}
        fn(sd)
        save_file(sd, p)
        return d

    def edit_config(d, **kv):
        c = json.load(open(os.path.join(d, "config.json")))
        c.update(kv)
        json.dump(c, open(os.path.join(d, "config.json"), "w"))
        return d

    down = "model.layers.1.mlp.down_proj.weight"
    cases = [
        (edit_shard(broken(), down, lambda sd: sd.pop(down)), f"missing tensor: {down}"),
        (edit_shard(broken(), "lm_head.weight",
                    lambda sd: sd.update({"lm_head.weight": sd["lm_head.weight"][:, :32].clone()})),
         "lm_head.weight: shape [160, 32], expected [160, 64]"),
        (edit_config(broken(), model_type="llava"), "model_type 'llava' is not 'llama'"),
    ]
    d = broken()
    os.remove(os.path.join(d, "tokenizer.model"))
    cases.append((d, "tokenizer.model is missing"))
    for d, msg in cases:
        o = os.path.join(tmp, "fail")
        r = run_llama(d, o, "--quantize", "q8_0")
        assert r.returncode == 1 and msg in r.stderr, (msg, r.returncode, r.stderr)
        assert not os.path.exists(o) and not os.path.exists(o + ".partial")
        print(f"--llama exit 1 as expected: {msg}")
    r = subprocess.run([sys.executable, CONVERT, "--llama", rnd, "--release", REL, "--out",
                        os.path.join(tmp, "fail")], capture_output=True, text=True)
    assert r.returncode == 2 and "--llama replaces" in r.stderr, r.stderr


def main():
    src = source_tensors()
    tmp = tempfile.mkdtemp()
    try:
        # 1. keep
        out = os.path.join(tmp, "keep")
        r = run(out)
        assert r.returncode == 0, r.stderr
        got = out_tensors(out)
        assert set(got) == set(src), (set(got) ^ set(src))
        bad = [k for k in src if not same(src[k], got[k])]
        assert not bad, bad
        n_shards = len(set(json.load(open(os.path.join(out, "model.safetensors.index.json")))
                           ["weight_map"].values()))
        cfg = json.load(open(os.path.join(out, "config.json")))
        assert cfg["lisa_model_format"]["vision_tower_prefix"] == "model.vision_tower."
        assert cfg["seg_token_idx"] == 32000 and cfg["vision_config"]["hidden_size"] == cfg["mm_hidden_size"]
        print(f"keep: {len(got)} tensors identical to the sources, {n_shards} shards")

        # 2. casts
        for dt, tdt in (("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
            o = os.path.join(tmp, dt)
            r = run(o, dtype=dt)
            assert r.returncode == 0, r.stderr
            g = out_tensors(o)
            bad = [k for k in src if not same(src[k].to(tdt), g[k])]
            assert not bad, (dt, bad)
            print(f"{dt}: {len(g)} tensors equal to the cast sources")

        # 3. committed model/ is a fresh conversion
        committed = out_tensors(MODEL)
        assert set(committed) == set(got) and all(same(committed[k], got[k]) for k in got)
        c_cfg = json.load(open(os.path.join(MODEL, "config.json")))
        assert c_cfg == cfg, "committed model/config.json differs from a fresh conversion"
        for fn in ("added_tokens.json", "tokenizer_config.json", "special_tokens_map.json",
                   "generation_config.json", "preprocessor_config.json", "tokenizer.model"):
            assert open(os.path.join(MODEL, fn), "rb").read() == \
                open(os.path.join(out, fn), "rb").read(), fn
        print("committed model/ equals a fresh conversion")

        # 4. failures name the tensor
        def broken_release(name, fn):
            d = os.path.join(tmp, f"rel-{len(os.listdir(tmp))}")
            shutil.copytree(REL, d, symlinks=False)
            idx = json.load(open(os.path.join(d, "pytorch_model.bin.index.json")))
            shard = os.path.join(d, idx["weight_map"][name])
            sd = torch.load(shard, map_location="cpu")
            fn(sd, name)
            torch.save(sd, shard)
            return d

        def delete(sd, name):
            del sd[name]

        def reshape(sd, name):
            sd[name] = sd[name][:-1].clone()

        cases = [
            ("model.layers.1.mlp.up_proj.weight", broken_release("model.layers.1.mlp.up_proj.weight", delete), CLIP),
            ("model.visual_model.mask_decoder.transformer.layers.1.norm4.bias",
             broken_release("model.visual_model.mask_decoder.transformer.layers.1.norm4.bias", delete), CLIP),
            ("model.text_hidden_fcs.0.2.weight", broken_release("model.text_hidden_fcs.0.2.weight", reshape), CLIP),
        ]
        cdir = os.path.join(tmp, "clip-missing")
        shutil.copytree(CLIP, cdir)
        from safetensors.torch import save_file
        with safe_open(os.path.join(cdir, "model.safetensors"), "pt") as f:
            sd = {k: f.get_tensor(k) for k in f.keys()}
        del sd["vision_model.encoder.layers.2.mlp.fc1.bias"]
        save_file(sd, os.path.join(cdir, "model.safetensors"))
        cases.append(("model.vision_tower.vision_model.encoder.layers.2.mlp.fc1.bias", REL, cdir))
        for name, rel, clip in cases:
            o = os.path.join(tmp, "fail")
            r = run(o, release=rel, clip=clip)
            assert r.returncode == 1, (name, r.returncode, r.stderr)
            assert name in r.stderr, (name, r.stderr)
            assert not os.path.exists(o) and not os.path.exists(o + ".partial")
            line = [l for l in r.stderr.splitlines() if name in l][0]
            print(f"exit 1 as expected: {line}")

        # 5. --quantize on the LISA path
        check_quantize_lisa(tmp, src)
        # 6. --llama
        check_llama(tmp)
        print("OK")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
