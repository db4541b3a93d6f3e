#!/usr/bin/env python3
"""gen_lisa.py: a tiny LISA in the released checkpoint layout and the fp32
reference of its inference, for the end-to-end C tests (issue 5).

Writes tests/fixtures/lisa-tiny/ (default):

  release/   like xinlai/LISA-13B-llama2-v1: config.json (LISAForCausalLM,
             model_type llava, + a fixture-only "sam_config"),
             generation_config.json, pytorch_model-0000K-of-0000N.bin pickled
             shards (torch.save of state-dict pieces, state_dict order) +
             pytorch_model.bin.index.json; LLM / embeddings / lm_head /
             mm_projector bf16, model.visual_model.* (SAM) and
             model.text_hidden_fcs.* fp32, rotary_emb.inv_freq buffers fp32
             (transformers 4.31 saves them), no vision_tower weights;
             tokenizer files as 4.31's save_pretrained writes them for
             LISA's tokenizer (added_tokens.json: [SEG] 32000, <im_start>
             32001, <im_end> 32002), tokenizer.model -> symlink.
  clip/      stands in for openai/clip-vit-large-patch14: a full CLIPModel
             (tiny text tower too, as the real repo holds one) saved by
             save_pretrained (config.json = CLIPConfig, model.safetensors,
             fp32) + the openai preprocessor_config.json.
  model/     the converted model directory, written by
             scripts/convert-lisa.py --release release --clip clip (what the
             C engine loads; see docs/model-format.md).
  expected/  cases.json + binary tensors + mask PNGs (see cases.json "about").

Model (random init, then the LLM is TRAINED):
  LLM   LlamaForCausalLM vocab 32003, hidden 16, 2 layers, 2 heads (head_dim
        8, no GQA), intermediate 64, rms_norm_eps 1e-5, max_position 512,
        untied lm_head. Hidden 16 (not 32/64) keeps the four 32003-row bf16
        matrices (embed + lm_head, in release/ and model/) at 4 MB in all.
  CLIP  CLIPVisionModel image 224, patch 14 (256 patches + CLS as in LISA),
        hidden 32, 3 layers, 4 heads, MLP 64, quick_gelu, eps 1e-5;
        mm_vision_select_layer -2 (output of layer 2 of 3).
  proj  Linear(32 -> 16) with bias (bf16 in the checkpoint).
  SAM   segment-anything Sam: ImageEncoderViT(img 1024, patch 16, dim 32,
        depth 2, 2 heads, global block 1, window 14, rel+abs pos, neck 32),
        PromptEncoder(32, 64x64, mask_in_chans 4), MaskDecoder(dim 32,
        TwoWayTransformer(depth 2, mlp 64, 2 heads), 3 multimask outputs,
        IoU head hidden 32). Parameters re-drawn from seeded normals (SAM
        initialises rel_pos / pos_embed to zero and norms to 1); the
        hypernetworks' last layers are scaled by 8 so that the mask logits
        are O(1..10) and few pixels sit near the 0 threshold.
  fcs   text_hidden_fcs: Linear(16, 16), ReLU, Linear(16, 32), Dropout(0).

Training: random weights never emit [SEG], so the LLM (all its weights;
CLIP, projector, SAM frozen) is trained with Adam and teacher forcing to
continue the three chat.py prompts below exactly as LISA's inference builds
them (llava_v1, <im_start><image><im_end>, 256 projected CLIP features at
the -200). The weights are then rounded to bf16 (the released dtype) and the
reference re-loads the saved files in fp32; the script asserts that greedy
decoding still gives the intended continuations and prints the smallest
top-1 minus top-2 logit margin.

Cases (expected/cases.json):
  gen0  astronaut.jpg  chat.py prompt  -> "[SEG].</s>"
  gen1  chelsea.png    chat.py prompt  -> "Sure, it is [SEG].</s>"
  gen2  tall.png       chat.py prompt  -> "[SEG] and [SEG].</s>" (2 masks)
  tf0   chelsea.png    eval prompt, reply "[SEG]." (teacher forced)
  tf1   astronaut.jpg  eval prompt, reply "[SEG] and [SEG]." (2 masks)

--variant q writes tests/fixtures/lisa-tiny-q/ instead, the quantization
fixture (tests/unit/test-quant-accuracy.c): the same CLIP (lisa-tiny's
clip/, not copied), SAM, seeds and training, an LLM of hidden 32 and
intermediate 64 (every projection and the LM head in whole blocks of 32),
only model/ and a lean expected/ (cases gen1, gen2, tf0; no low-res or
hidden-state files); see VARIANTS.

Deterministic (fixed seeds, one torch thread). Run from the repository root:
  /work/venv/bin/python tests/reference/gen_lisa.py              # lisa-tiny
  /work/venv/bin/python tests/reference/gen_lisa.py --variant q  # lisa-tiny-q (after lisa-tiny)
(needs transformers 4.31.0, segment-anything, sentencepiece, safetensors).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch
import transformers
from PIL import Image
from transformers import (CLIPConfig, CLIPImageProcessor, CLIPModel, LlamaConfig,
                          LlamaForCausalLM, LlamaTokenizer)
from transformers.modeling_utils import shard_checkpoint

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import lisa_reference as R  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
IMAGES = os.path.join(FIXTURES, "images")

VOCAB = 32003
CLIP_HIDDEN, CLIP_LAYERS, CLIP_HEADS, CLIP_INTER = 32, 3, 4, 64
OUT_DIM = 32  # SAM prompt dim = LISA's out_dim
MAX_NEW = 32
SHARD_SIZE = "1MB"  # release/: 3 pickled shards
MODEL_SHARD_SIZE = "1.5MB"  # model/: several safetensors shards, like a real conversion

SAM_CONFIG = {
    "image_size": 1024, "patch_size": 16, "encoder_embed_dim": 32, "encoder_depth": 2,
    "encoder_num_heads": 2, "encoder_global_attn_indexes": [1], "window_size": 14,
    "mlp_ratio": 4.0, "prompt_embed_dim": OUT_DIM, "image_embedding_size": 64,
    "mask_in_chans": 4, "decoder_depth": 2, "decoder_num_heads": 2, "decoder_mlp_dim": 64,
    "attention_downsample_rate": 2, "num_multimask_outputs": 3, "iou_head_depth": 3,
    "iou_head_hidden_dim": 32, "pixel_mean": R.SAM_MEAN, "pixel_std": R.SAM_STD,
}

GEN_CASES = [
    dict(name="gen0", image="astronaut.jpg",
         text="Where is the astronaut in this picture? Please output segmentation mask.",
         answer="[SEG]."),
    dict(name="gen1", image="chelsea.png",
         text="Can you segment the cat in this image?",
         answer="Sure, it is [SEG]."),
    dict(name="gen2", image="tall.png",
         text="Segment the top part and the bottom part.",
         answer="[SEG] and [SEG]."),
]
TF_CASES = [
    dict(name="tf0", image="chelsea.png", text="the cat", reply="[SEG]."),
    dict(name="tf1", image="astronaut.jpg", text="the helmet", reply="[SEG] and [SEG]."),
]
LOGITS_CASE = "gen1"  # its upsampled logits (chelsea.png, 240x320, 1 mask) are stored in full

SEED_CLIP, SEED_LLM, SEED_SAM, SEED_FCS, SEED_PROJ = 11, 12, 13, 14, 15

# The LLM's shape and what the fixture keeps, per --variant. "tiny" is
# lisa-tiny (every reference file, release/ and clip/ kept). "q" is
# lisa-tiny-q, the quantization fixture: hidden 32 and intermediate 64, so
# that every projection's rows (K = 32 or 64) and the LM head's are whole
# Q8_0/Q4_0 blocks of 32; same CLIP (read from lisa-tiny/clip, checked equal
# to what build_clip() makes), SAM, seeds, prompts and training. It keeps only
# model/ and the expected files the accuracy test reads (ids, [SEG]
# embeddings, IoU predictions, mask PNGs): at hidden 32 the two 32003-row bf16
# matrices are 4.1 MB per copy, and release/ (a second copy) and the
# 256 kB low-res maps would take the fixture past 10 MB. Its reference holds
# three of the five cases (two images, both generated answers with [SEG],
# one with two, and a teacher-forced one): test-quant-accuracy runs them
# three times (fp32, q8_0, q4_0) and the SAM encoder per image is most of
# its time. The LLM is trained on all three chat prompts, as lisa-tiny's.
VARIANTS = {
    "tiny": dict(out="lisa-tiny", hidden=16, layers=2, heads=2, inter=64, lean=False, cases=None),
    "q": dict(out="lisa-tiny-q", hidden=32, layers=2, heads=2, inter=64, lean=True,
              cases=("gen1", "gen2", "tf0")),
}
TRAIN_STEPS, TRAIN_LR, TARGET_MARGIN = 600, 3e-3, 8.0
HYPER_SCALE = 8.0  # mask logits ~ +-2..15 instead of +-0.3: fewer pixels near the threshold


# ---------------------------------------------------------------- build

def reinit_generic(module, seed, skip=()):
    """Seeded normal draws: weights N(0, 1/fan_in), biases N(0, 0.1), norm
    scales 1 + N(0, 0.1), norm shifts N(0, 0.1), embeddings/tokens N(0, 1),
    SAM rel_pos/pos_embed N(0, 0.5)."""
    g = torch.Generator().manual_seed(seed)
    sd = module.state_dict()
    with torch.no_grad():
        for name, t in sd.items():
            if any(s in name for s in skip) or not t.is_floating_point() or t.dim() == 0:
                continue
            leaf = name.split(".")[-1]
            is_norm = ("norm" in name or "layrnorm" in name or "neck.1" in name
                       or "neck.3" in name or "output_upscaling.1" in name
                       or "mask_downscaling.1" in name or "mask_downscaling.4" in name)
            if is_norm and leaf == "weight":
                v = 1.0 + 0.1 * torch.randn(t.shape, generator=g)
            elif leaf == "bias":
                v = 0.1 * torch.randn(t.shape, generator=g)
            elif leaf in ("rel_pos_h", "rel_pos_w") or name.endswith("pos_embed"):
                v = 0.5 * torch.randn(t.shape, generator=g)
            elif ("positional_encoding_gaussian_matrix" in name or "class_embedding" in name
                  or (t.dim() == 2 and leaf == "weight" and "." in name
                      and name.split(".")[-2] in ("embed_tokens", "iou_token", "mask_tokens",
                                                  "not_a_point_embed", "no_mask_embed",
                                                  "position_embedding"))
                  or (t.dim() == 2 and ".point_embeddings." in name)):
                # embedding tables and learned tokens only: a substring test on
                # "token" also caught the decoder's cross_attn_token_to_image
                # projections, whose N(0, 1) weights gave attention scores in
                # the hundreds and an ill-conditioned fp32 reference
                v = torch.randn(t.shape, generator=g)
            elif "output_upscaling" in name and t.dim() == 4:  # ConvTranspose (in, out, k, k)
                v = torch.randn(t.shape, generator=g) / np.sqrt(t.shape[0])
            else:
                fan_in = int(np.prod(t.shape[1:])) if t.dim() > 1 else t.shape[0]
                v = torch.randn(t.shape, generator=g) / np.sqrt(fan_in)
            t.copy_(v.to(t.dtype))
    module.load_state_dict(sd)


def build_clip():
    cfg = CLIPConfig(
        text_config=dict(vocab_size=64, hidden_size=16, intermediate_size=32,
                         num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=16,
                         hidden_act="quick_gelu", layer_norm_eps=1e-5),
        vision_config=dict(hidden_size=CLIP_HIDDEN, intermediate_size=CLIP_INTER,
                           num_hidden_layers=CLIP_LAYERS, num_attention_heads=CLIP_HEADS,
                           image_size=224, patch_size=14, num_channels=3,
                           hidden_act="quick_gelu", layer_norm_eps=1e-5),
        projection_dim=16)
    torch.manual_seed(SEED_CLIP)
    m = CLIPModel(cfg).eval()
    reinit_generic(m, SEED_CLIP, skip=("position_ids",))
    return m


def build_llm(v):
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=v["hidden"], intermediate_size=v["inter"],
                      num_hidden_layers=v["layers"], num_attention_heads=v["heads"],
                      num_key_value_heads=v["heads"], rms_norm_eps=1e-5,
                      max_position_embeddings=512, tie_word_embeddings=False,
                      bos_token_id=1, eos_token_id=2, pad_token_id=0, use_cache=False)
    torch.manual_seed(SEED_LLM)
    m = LlamaForCausalLM(cfg)
    g = torch.Generator().manual_seed(SEED_LLM)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name == "model.embed_tokens.weight":
                p.copy_(torch.randn(p.shape, generator=g))
            elif name == "lm_head.weight":
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / np.sqrt(p.shape[1]))
    return m


def bf16_round_(module):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p.to(torch.bfloat16).float())


# ---------------------------------------------------------------- tokenizer

def write_tokenizer(release):
    """LISA's tokenizer as train_ds.py sets it up, saved by 4.31."""
    src = os.path.join(FIXTURES, "tokenizer", "tokenizer.model")
    with tempfile.TemporaryDirectory() as d:
        shutil.copyfile(src, os.path.join(d, "tokenizer.model"))
        tok = LlamaTokenizer.from_pretrained(d, model_max_length=512, padding_side="right",
                                             legacy=True)
        tok.pad_token = tok.unk_token
        tok.add_tokens("[SEG]")
        tok.add_tokens([R.IM_START, R.IM_END], special_tokens=True)
        tok.save_pretrained(os.path.join(d, "out"))
        for f in os.listdir(os.path.join(d, "out")):
            if f != "tokenizer.model":
                shutil.copyfile(os.path.join(d, "out", f), os.path.join(release, f))
    os.symlink(os.path.join("..", "..", "tokenizer", "tokenizer.model"),
               os.path.join(release, "tokenizer.model"))
    with open(os.path.join(FIXTURES, "tokenizer", "added_tokens.json")) as f:
        want = json.load(f)
    with open(os.path.join(release, "added_tokens.json")) as f:
        got = json.load(f)
    assert got == want == {"[SEG]": 32000, "<im_start>": 32001, "<im_end>": 32002}, got


# ---------------------------------------------------------------- training

def case_inputs(tok, clip_proc, clip_vision, projector, case):
    rgb = R.load_rgb(os.path.join(IMAGES, case["image"]))
    px = R.clip_pixels(rgb, clip_proc)
    with torch.no_grad():
        feats = clip_vision(px, output_hidden_states=True).hidden_states[-2][:, 1:]
        proj = projector(feats)
    prompt = R.chat_prompt(case["text"])
    ids = R.tokenizer_image_token(prompt, tok)
    full = R.tokenizer_image_token(prompt + " " + case["answer"] + "</s>", tok)
    assert full[:len(ids)] == ids, "prompt ids are not a prefix of prompt+answer ids"
    return ids, full[len(ids):], proj


def train_llm(llm, data):
    """Teacher forcing on the answer tokens, everything but the LLM frozen."""
    llm.train()
    opt = torch.optim.Adam(llm.parameters(), lr=TRAIN_LR)
    emb = llm.model.embed_tokens
    seqs = []
    for ids, answer, proj in data:
        full = torch.tensor(ids + answer)
        p = ids.index(R.IMAGE_TOKEN_INDEX)
        n_img = proj.shape[1]
        # expanded position of token j (j > p) is j - 1 + n_img
        tgt_pos = [j - 1 + n_img - 1 for j in range(len(ids), len(full))]  # predicting position
        seqs.append((full, p, proj, tgt_pos, torch.tensor(answer)))
    for step in range(TRAIN_STEPS):
        opt.zero_grad()
        loss_sum, margin = 0.0, float("inf")
        for full, p, proj, tgt_pos, answer in seqs:
            x = torch.cat([emb(full[:p]), proj[0], emb(full[p + 1:])])[None]
            logits = llm(inputs_embeds=x, use_cache=False).logits[0, tgt_pos]
            loss = torch.nn.functional.cross_entropy(logits, answer)
            loss.backward()
            loss_sum += float(loss)
            with torch.no_grad():
                top = logits.gather(1, answer[:, None])[:, 0]
                other = logits.clone()
                other[torch.arange(len(answer)), answer] = -1e30
                margin = min(margin, float((top - other.max(1).values).min()))
        opt.step()
        if step % 50 == 0 or step == TRAIN_STEPS - 1:
            print(f"  train step {step}: loss {loss_sum / len(seqs):.4f}, min margin {margin:.3f}")
        if margin > TARGET_MARGIN and step >= 100:
            print(f"  train step {step}: loss {loss_sum / len(seqs):.4f}, min margin {margin:.3f} (stop)")
            break
    llm.eval()


# ---------------------------------------------------------------- save

def save_release(release, cfg, llm, projector, sam, fcs):
    sd = {}
    # state_dict order of LISAForCausalLM: model.embed_tokens, model.layers.*,
    # model.norm, model.mm_projector, model.visual_model, model.text_hidden_fcs, lm_head
    llm_sd = llm.state_dict()
    for k, v in llm_sd.items():
        if k.startswith("model.") and not k.startswith("model.norm"):
            sd[k] = v
    sd["model.norm.weight"] = llm_sd["model.norm.weight"]
    for k, v in projector.state_dict().items():
        sd["model.mm_projector." + k] = v
    for k, v in sam.state_dict().items():
        if k not in ("pixel_mean", "pixel_std"):  # non-persistent in SAM
            sd["model.visual_model." + k] = v
    for k, v in fcs.state_dict().items():
        sd["model.text_hidden_fcs." + k] = v
    sd["lm_head.weight"] = llm_sd["lm_head.weight"]
    out = {}
    for k, v in sd.items():
        v = v.detach().clone().contiguous()
        bf16 = not (k.startswith("model.visual_model.") or k.startswith("model.text_hidden_fcs.")
                    or k.endswith("rotary_emb.inv_freq"))
        out[k] = v.to(torch.bfloat16) if bf16 else v.float()
    shards, index = shard_checkpoint(out, max_shard_size=SHARD_SIZE,
                                     weights_name="pytorch_model.bin")
    assert index is not None and len(shards) >= 2, "want >= 2 shards"
    for name, part in shards.items():
        torch.save(part, os.path.join(release, name))
    with open(os.path.join(release, "pytorch_model.bin.index.json"), "w") as f:
        json.dump(index, f, indent=2, sort_keys=True)
        f.write("\n")
    with open(os.path.join(release, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    with open(os.path.join(release, "generation_config.json"), "w") as f:
        json.dump({"_from_model_config": True, "bos_token_id": 1, "eos_token_id": 2,
                   "pad_token_id": 0, "transformers_version": "4.31.0"}, f, indent=2)
        f.write("\n")
    return out


def lisa_config(clip_cfg, v):
    """A LISA-13B-llama2-v1-style config.json with the tiny sizes."""
    return {
        "_name_or_path": v["out"],
        "architectures": ["LISAForCausalLM"],
        "model_type": "llava",
        "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0,
        "hidden_act": "silu", "hidden_size": v["hidden"], "initializer_range": 0.02,
        "intermediate_size": v["inter"], "max_position_embeddings": 512,
        "num_attention_heads": v["heads"], "num_hidden_layers": v["layers"],
        "num_key_value_heads": v["heads"],
        "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": None,
        "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "transformers_version": "4.31.0", "use_cache": False, "vocab_size": VOCAB,
        "freeze_mm_mlp_adapter": True, "image_aspect_ratio": "square",
        "image_grid_pinpoints": None, "mm_hidden_size": clip_cfg.vision_config.hidden_size,
        "mm_use_im_patch_token": False, "mm_use_im_start_end": True,
        "mm_vision_select_feature": "patch", "mm_vision_select_layer": -2,
        "mm_vision_tower": "tests/fixtures/lisa-tiny/clip", "vision_tower": "tests/fixtures/lisa-tiny/clip",
        "out_dim": OUT_DIM, "train_mask_decoder": True, "tune_mm_mlp_adapter": False,
        "use_mm_proj": True,
        "sam_config": SAM_CONFIG,
    }


# ---------------------------------------------------------------- reference

def f32(path, t):
    a = np.ascontiguousarray(t.detach().numpy().astype("<f4"))
    a.tofile(path)
    return list(a.shape)


def write_png(path, mask):
    Image.fromarray((mask.numpy().astype(np.uint8) * 255), mode="L").save(path, optimize=True)


def run_reference(args, tok, out_dir, lean, names):
    """The reference on the cases named in `names` (None: all); `lean`
    writes only what lisa-tiny-q keeps (no CLIP features, inputs_embeds,
    hidden states, low-res or full-size logits)."""
    model = R.TinyLisa.from_release(args.release, args.clip)
    model.set_seg_token_idx(tok("[SEG]", add_special_tokens=False).input_ids[0])
    assert model.seg_token_idx == 32000
    proc = CLIPImageProcessor.from_pretrained(args.clip)
    images, cases = {}, []
    min_margin = float("inf")

    def image_entry(name):
        if name in images:
            return images[name]
        rgb = R.load_rgb(os.path.join(IMAGES, name))
        cpx = R.clip_pixels(rgb, proc)
        spx, orig, resize = R.sam_pixels(rgb)
        feats, proj = model.encode_images(cpx)
        emb = model.image_embeddings(spx)
        stem = os.path.splitext(name)[0]
        e = {"file": name, "orig_hw": list(orig), "resize_hw": list(resize),
             "clip_pixels_sum": float(cpx.double().sum()),
             "sam_pixels_sum": float(spx.double().sum())}
        if not lean:
            e.update({"clip_features": f"img-{stem}-clip.bin", "clip_features_shape":
                          f32(os.path.join(out_dir, f"img-{stem}-clip.bin"), feats[0]),
                      "projected": f"img-{stem}-proj.bin", "projected_shape":
                          f32(os.path.join(out_dir, f"img-{stem}-proj.bin"), proj[0])})
        e.update({"sam_embedding_sum": float(emb.double().sum()),
                  "sam_embedding_abs_sum": float(emb.double().abs().sum()),
                  "sam_embedding_first8": [float(v) for v in emb[0, :8, 0, 0]]})
        images[name] = dict(meta=e, cpx=cpx, emb=emb)
        return images[name]

    all_cases = [dict(c, kind="generate") for c in GEN_CASES] + \
                [dict(c, kind="teacher_forced") for c in TF_CASES]
    if names is not None:
        all_cases = [c for c in all_cases if c["name"] in names]
    for c in all_cases:
        name = c["name"]
        img = image_entry(c["image"])
        meta = img["meta"]
        if c["kind"] == "generate":
            prompt = R.chat_prompt(c["text"])
            ids = R.tokenizer_image_token(prompt, tok)
            g = model.generate(ids, img["cpx"], MAX_NEW)
            out_ids = g["output_ids"]
            new = out_ids[len(ids):]
            want = R.tokenizer_image_token(prompt + " " + c["answer"] + "</s>", tok)[len(ids):]
            assert new == want, f"{name}: generated {new}, wanted {want}"
            margins = [a - b for a, b in g["top2"]]
            min_margin = min(min_margin, min(margins))
            hidden = g["last_hidden"]
            mask = model.seg_mask_generate(out_ids)
            embeds = g["first"]["embeds"]
            assert torch.equal(g["first"]["proj"], model.encode_images(img["cpx"])[1])
        else:
            prompt = R.eval_prompt(c["text"], c["reply"])
            ids = R.tokenizer_image_token(prompt, tok)
            r = model.forward_ids(ids, img["cpx"])
            hidden, embeds = r["hidden"], r["embeds"]
            mask = model.seg_mask_teacher_forced(ids)
            out_ids, new, margins = ids, None, None
        seg_h, seg_e, positions = model.seg_embeddings(hidden, mask)
        n = seg_e.shape[0]
        # every selected row is the position right before a [SEG] token
        p = ids.index(R.IMAGE_TOKEN_INDEX)
        seg_tok = [j for j, t in enumerate(out_ids) if t == model.seg_token_idx]
        assert positions == [j - 1 + model.num_patches - 1 for j in seg_tok if j > p], positions
        low, iou, up = model.decode_masks(img["emb"], seg_e, meta["resize_hw"], meta["orig_hw"])
        binary = up > 0.0
        entry = {
            "name": name, "kind": c["kind"], "image": c["image"],
            "user_text": c["text"], "prompt": prompt, "input_ids": ids,
            "seq_len": len(ids) - 1 + model.num_patches,
        }
        if not lean:
            entry.update({
                "inputs_embeds": f"{name}-embeds.bin",
                "inputs_embeds_shape": f32(os.path.join(out_dir, f"{name}-embeds.bin"), embeds[0]),
                "hidden": f"{name}-hidden.bin",
                "hidden_shape": f32(os.path.join(out_dir, f"{name}-hidden.bin"), hidden[0])})
        entry.update({
            "seg_positions": positions,
            "seg_hidden": f"{name}-seg-hidden.bin",
            "seg_hidden_shape": f32(os.path.join(out_dir, f"{name}-seg-hidden.bin"), seg_h),
            "seg_embeddings": f"{name}-seg-embed.bin",
            "seg_embeddings_shape": f32(os.path.join(out_dir, f"{name}-seg-embed.bin"), seg_e)})
        if not lean:
            entry.update({
                "lowres_logits": f"{name}-lowres.bin",
                "lowres_logits_shape": f32(os.path.join(out_dir, f"{name}-lowres.bin"), low)})
        entry.update({
            "iou_predictions": [float(v) for v in iou[:, 0]],
            "masks": [], "mask_positive": [], "near_zero_logits": [], "min_abs_logit": []})
        if c["kind"] == "generate":
            entry.update({"max_new_tokens": MAX_NEW, "generated": new,
                          "text": tok.decode([t for t in out_ids if t != R.IMAGE_TOKEN_INDEX],
                                             skip_special_tokens=False),
                          "answer_text": c["answer"] + "</s>",
                          "top2": g["top2"], "min_margin": min(margins)})
        else:
            entry.update({"reply": c["reply"]})
        for k in range(n):
            fn = f"{name}-mask{k}.png"
            write_png(os.path.join(out_dir, fn), binary[k])
            entry["masks"].append(fn)
            entry["mask_positive"].append(int(binary[k].sum()))
            entry["near_zero_logits"].append(int((up[k].abs() < 1e-4).sum()))
            entry["min_abs_logit"].append(float(up[k].abs().min()))
        if name == LOGITS_CASE and not lean:
            entry["logits"] = f"{name}-logits.bin"
            entry["logits_shape"] = f32(os.path.join(out_dir, f"{name}-logits.bin"), up)
        cases.append(entry)
        print(f"{name}: {len(ids)} ids, L={entry['seq_len']}, "
              f"{'generated ' + str(new) if new else 'teacher forced'}"
              f"{', min margin %.3f' % min(margins) if margins else ''}; {n} mask(s), "
              f"positive {entry['mask_positive']} of {meta['orig_hw'][0] * meta['orig_hw'][1]}, "
              f"iou {entry['iou_predictions']}, min|logit| {entry['min_abs_logit']}")
    return images, cases, min_margin


ABOUT = """Reference of LISA's inference on the tiny fixture model (fp32 CPU,
transformers 4.31 + segment-anything modules, tests/reference/lisa_reference.py),
made by tests/reference/gen_lisa.py. Binary files are float32 little-endian,
C order, shapes in the *_shape members. H = LLM hidden, Cv = CLIP hidden,
C = SAM prompt dim, P = 256 CLIP patches.
images[]: per image: orig_hw/resize_hw (SAM ResizeLongestSide), sums of the
CLIP (1,3,224,224) and SAM (1,3,1024,1024) input tensors (float64 sums),
clip_features (P, Cv) = CLIP hidden_states[-2][:, 1:], projected (P, H) =
mm_projector output, checksums of the SAM image embedding (1, C, 64, 64) and
its first 8 channels at (0, 0).
cases[]: kind "generate" = chat.py prompt + evaluate() (greedy, full
recompute, max_new_tokens, stop after </s>); "teacher_forced" = LISA's eval
prompt with a fixed reply, one forward (model_forward(inference=True)).
input_ids: the prompt ids with -200 for the image; seq_len: expanded length
of the prompt (len(ids) - 1 + P). inputs_embeds (seq_len, H): the spliced
input of the first forward. generated: new ids (</s> included); top2: the
top-1 / top-2 logits of every greedy step; hidden: the post-final-norm
hidden states of the LAST forward (generate: the last step, whose input is
prompt + generated[:-1]; teacher_forced: the whole conversation).
seg_positions: rows of `hidden` picked for each [SEG] (the token before
it); seg_hidden (n, H) those rows; seg_embeddings (n, C) after
text_hidden_fcs; lowres_logits (n, 1, 256, 256) mask decoder output
(multimask_output=False); iou_predictions its IoU head; masks: PNG per
[SEG], 255 where the original-size logit > 0; mask_positive: count of
those pixels; near_zero_logits: pixels with |logit| < 1e-4; logits
(only one case): the original-size logits (n, H0, W0)."""

ABOUT_LEAN = """
This is a lean fixture (gen_lisa.py --variant q): three of lisa-tiny's
five cases; images[] have no clip_features / projected files and cases[]
no inputs_embeds, hidden, lowres_logits or logits (gen_lisa.py --variant q
--full writes them all)."""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variant", choices=sorted(VARIANTS), default="tiny",
                    help="tiny: tests/fixtures/lisa-tiny (hidden 16); q: tests/fixtures/"
                         "lisa-tiny-q (hidden 32, every LLM matmul quantizable)")
    ap.add_argument("--out", help="fixture folder (default: tests/fixtures/<the variant's name>)")
    ap.add_argument("--full", action="store_true",
                    help="variant q: write release/, every case and every reference file "
                         "lisa-tiny has (for checking it with test-lisa's comparisons; not "
                         "committed)")
    ap.add_argument("--no-convert", action="store_true",
                    help="skip running scripts/convert-lisa.py into OUT/model")
    args = ap.parse_args()
    v = VARIANTS[args.variant]
    lean = v["lean"] and not args.full
    if args.out is None:
        args.out = os.path.join(FIXTURES, v["out"])
    assert transformers.__version__ == "4.31.0", transformers.__version__
    torch.set_num_threads(1)
    hidden = v["hidden"]
    # a lean fixture's release/ is a working folder (the converter's input and
    # the reference's), removed at the end; its CLIP is lisa-tiny's
    args.release = os.path.join(args.out, "release")
    own_clip = args.variant == "tiny"
    args.clip = os.path.join(args.out if own_clip else os.path.join(FIXTURES, "lisa-tiny"), "clip")
    expected = os.path.join(args.out, "expected")
    for d in (args.release, args.clip, expected) if own_clip else (args.release, expected):
        if os.path.isdir(d):
            shutil.rmtree(d)
        os.makedirs(d)

    # CLIP (frozen, fp32 as openai's checkpoint)
    clip = build_clip()
    if own_clip:
        clip.save_pretrained(args.clip, safe_serialization=True)
        with open(os.path.join(args.clip, "preprocessor_config.json"), "w") as f:
            json.dump({"crop_size": 224, "do_center_crop": True, "do_normalize": True,
                       "do_resize": True, "feature_extractor_type": "CLIPFeatureExtractor",
                       "image_mean": [0.48145466, 0.4578275, 0.40821073],
                       "image_std": [0.26862954, 0.26130258, 0.27577711],
                       "resample": 3, "size": 224}, f, indent=2)
            f.write("\n")
    else:
        saved = CLIPModel.from_pretrained(args.clip).state_dict()
        made = clip.state_dict()
        assert saved.keys() == made.keys() and all(torch.equal(saved[k], made[k]) for k in made), \
            f"{args.clip} is not what build_clip() makes: regenerate lisa-tiny first"
    from transformers import CLIPVisionModel
    clip_vision = CLIPVisionModel.from_pretrained(args.clip).eval()
    clip_proc = CLIPImageProcessor.from_pretrained(args.clip)

    # projector (bf16 in the checkpoint: round first so training sees it)
    torch.manual_seed(SEED_PROJ)
    projector = torch.nn.Linear(CLIP_HIDDEN, hidden)
    reinit_generic(projector, SEED_PROJ)
    bf16_round_(projector)
    projector.requires_grad_(False)

    # SAM and text_hidden_fcs (fp32)
    torch.manual_seed(SEED_SAM)
    sam = R.build_sam(SAM_CONFIG)
    reinit_generic(sam, SEED_SAM, skip=("pixel_mean", "pixel_std"))
    with torch.no_grad():
        for mlp in sam.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(HYPER_SCALE)
            mlp.layers[-1].bias.mul_(HYPER_SCALE)
    torch.manual_seed(SEED_FCS)
    fcs = R.build_text_hidden_fcs(hidden, OUT_DIM)
    reinit_generic(fcs, SEED_FCS)

    # tokenizer files, then the LLM trained on the chat prompts
    write_tokenizer(args.release)
    tok = R.load_tokenizer(args.release)
    data = [case_inputs(tok, clip_proc, clip_vision, projector, c) for c in GEN_CASES]
    for c, (ids, ans, _) in zip(GEN_CASES, data):
        print(f"{c['name']}: prompt {len(ids)} ids, answer {ans} = {tok.convert_ids_to_tokens(ans)}")
    assert any(a.count(32000) == 2 for _, a, _ in data)
    llm = build_llm(v)
    torch.set_grad_enabled(True)
    train_llm(llm, data)
    torch.set_grad_enabled(False)
    bf16_round_(llm)

    cfg = lisa_config(clip.config, v)
    save_release(args.release, cfg, llm, projector, sam, fcs)

    images, cases, min_margin = run_reference(args, tok, expected, lean,
                                              None if args.full else v["cases"])
    doc = {"about": ABOUT + (ABOUT_LEAN if lean else ""), "transformers": transformers.__version__,
           "torch": torch.__version__, "seg_token_idx": 32000, "image_token_index": -200,
           "num_patches": 256, "min_greedy_margin": min_margin,
           "images": [e["meta"] for e in images.values()], "cases": cases}
    with open(os.path.join(expected, "cases.json"), "w") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"smallest top-1 - top-2 margin over all greedy steps (bf16-rounded weights, fp32 run): "
          f"{min_margin:.3f}")

    if not args.no_convert:
        model_dir = os.path.join(args.out, "model")
        if os.path.isdir(model_dir):
            shutil.rmtree(model_dir)
        subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "convert-lisa.py"),
                        "--release", args.release, "--clip", args.clip, "--out", model_dir,
                        "--max-shard-size", MODEL_SHARD_SIZE],
                       check=True)
        # the converter copies tokenizer.model; in the fixture it is a link
        # to the one copy under tests/fixtures/tokenizer/ (500 kB)
        os.remove(os.path.join(model_dir, "tokenizer.model"))
        os.symlink(os.path.join("..", "..", "tokenizer", "tokenizer.model"),
                   os.path.join(model_dir, "tokenizer.model"))
    if lean:
        shutil.rmtree(args.release)

    total = 0
    for dirpath, _, files in os.walk(args.out):
        for fn in files:
            p = os.path.join(dirpath, fn)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    print(f"{args.out}: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
