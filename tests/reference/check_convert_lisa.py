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
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import torch
from safetensors import safe_open

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIX = os.path.join(ROOT, "tests", "fixtures", "lisa-tiny")
REL, CLIP, MODEL = (os.path.join(FIX, d) for d in ("release", "clip", "model"))
CONVERT = os.path.join(ROOT, "scripts", "convert-lisa.py")


def run(out, release=REL, clip=CLIP, dtype="keep", shard="1.5MB"):
    return subprocess.run([sys.executable, CONVERT, "--release", release, "--clip", clip,
                           "--out", out, "--dtype", dtype, "--max-shard-size", shard],
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
        print("OK")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
