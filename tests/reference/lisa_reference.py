#!/usr/bin/env python3
"""lisa_reference.py: LISA's inference (dvlab-research/LISA `evaluate()` and
the teacher-forced `model_forward(inference=True)`) re-implemented step by
step from transformers 4.31 and segment-anything modules, fp32 on the CPU.

Used by gen_lisa.py (tests/fixtures/lisa-tiny/). Nothing here is copied from
the LISA repository; every step follows /work/shared/spec/lisa-inference.md:

  prompt      chat.py: "<image>\\n" + P, <image> -> <im_start><image><im_end>,
              llava_v1 template (SeparatorStyle.TWO, sep " ", sep2 "</s>")
  ids         mm_utils.tokenizer_image_token: every "<image>"-separated chunk
              tokenized by the slow LlamaTokenizer (BOS added per chunk; kept
              for the first chunk only), IMAGE_TOKEN_INDEX -200 in between
  image       CLIP ViT hidden_states[mm_vision_select_layer][:, 1:] ->
              mm_projector (Linear with bias), spliced in place of the -200
              (llava_arch.prepare_inputs_labels_for_multimodal, the
              mm_use_im_start_end branch: embed(ids[:p]) ++ feats ++
              embed(ids[p+1:]))
  generation  greedy, FULL RECOMPUTE every step (LISA runs with
              use_cache=False): CLIP -> projector -> splice -> LlamaModel ->
              final norm -> lm_head -> argmax; stop after </s> (2) or
              max_new_tokens; the last generated token is never fed back
  [SEG]       hidden states of the last step (post final RMSNorm);
              mask = output_ids[:, 1:] == seg_idx with (num_patches - 1)
              leading False columns (LISA hard-codes 255 = 256 - 1): the
              hidden state of the token BEFORE each [SEG]; text_hidden_fcs
  SAM         image_encoder once per image; LISA's prompt encoder: sparse =
              the [SEG] embeddings (n, 1, C) with no point/pad embedding,
              dense = no_mask_embed broadcast to (n, C, 64, 64);
              mask_decoder(multimask_output=False); postprocess_masks in
              fp32 (bilinear to 1024, crop, bilinear to the original size);
              binary = logits > 0
  teacher-forced (eval, spec 4.1): the whole conversation including the
              reply ("... ASSISTANT: [SEG].</s>") in ONE forward;
              mask = ids[:, 1:] == seg_idx, one trailing False, (P - 1)
              leading False.
"""
import importlib.util
import json
import os
import sys
import types

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

IMAGE_TOKEN_INDEX = -200
DEFAULT_IMAGE_TOKEN = "<image>"
IM_START, IM_END, SEG = "<im_start>", "<im_end>", "[SEG]"
SYSTEM_V1 = ("A chat between a curious human and an artificial intelligence assistant. "
             "The assistant gives helpful, detailed, and polite answers to the human's questions.")
SAM_MEAN = [123.675, 116.28, 103.53]
SAM_STD = [58.395, 57.12, 57.375]

# SAM ViT-H, what build_sam_vit_h hard-codes (a released LISA config.json has
# no SAM fields); a tiny fixture's config.json carries its own "sam_config".
SAM_VIT_H = {
    "image_size": 1024, "patch_size": 16, "encoder_embed_dim": 1280, "encoder_depth": 32,
    "encoder_num_heads": 16, "encoder_global_attn_indexes": [7, 15, 23, 31],
    "window_size": 14, "mlp_ratio": 4.0, "prompt_embed_dim": 256,
    "image_embedding_size": 64, "mask_in_chans": 16, "decoder_depth": 2,
    "decoder_num_heads": 8, "decoder_mlp_dim": 2048, "attention_downsample_rate": 2,
    "num_multimask_outputs": 3, "iou_head_depth": 3, "iou_head_hidden_dim": 256,
    "pixel_mean": SAM_MEAN, "pixel_std": SAM_STD,
}


# ---------------------------------------------------------------- modules

def import_sam_modeling():
    """segment_anything.modeling without the package __init__ (whose
    predictor imports torchvision, absent from the reference venv)."""
    if "segment_anything.modeling" in sys.modules:
        return sys.modules["segment_anything.modeling"]
    spec = importlib.util.find_spec("segment_anything")
    if spec is None:
        raise SystemExit("segment-anything is not installed: pip install segment-anything")
    pkg = types.ModuleType("segment_anything")
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules["segment_anything"] = pkg
    import segment_anything.modeling as modeling
    return modeling


def build_sam(sc):
    """A segment-anything Sam with the geometry of `sc` (SAM_VIT_H layout)."""
    m = import_sam_modeling()
    grid = sc["image_size"] // sc["patch_size"]
    assert grid == sc["image_embedding_size"]
    enc = m.ImageEncoderViT(
        depth=sc["encoder_depth"], embed_dim=sc["encoder_embed_dim"], img_size=sc["image_size"],
        mlp_ratio=sc["mlp_ratio"], norm_layer=lambda d: torch.nn.LayerNorm(d, eps=1e-6),
        num_heads=sc["encoder_num_heads"], patch_size=sc["patch_size"], qkv_bias=True,
        use_rel_pos=True, global_attn_indexes=tuple(sc["encoder_global_attn_indexes"]),
        window_size=sc["window_size"], out_chans=sc["prompt_embed_dim"])
    pe = m.PromptEncoder(embed_dim=sc["prompt_embed_dim"], image_embedding_size=(grid, grid),
                         input_image_size=(sc["image_size"], sc["image_size"]),
                         mask_in_chans=sc["mask_in_chans"])
    dec = m.MaskDecoder(
        num_multimask_outputs=sc["num_multimask_outputs"],
        transformer=m.TwoWayTransformer(depth=sc["decoder_depth"],
                                        embedding_dim=sc["prompt_embed_dim"],
                                        mlp_dim=sc["decoder_mlp_dim"],
                                        num_heads=sc["decoder_num_heads"],
                                        attention_downsample_rate=sc["attention_downsample_rate"]),
        transformer_dim=sc["prompt_embed_dim"], iou_head_depth=sc["iou_head_depth"],
        iou_head_hidden_dim=sc["iou_head_hidden_dim"])
    return m.Sam(image_encoder=enc, prompt_encoder=pe, mask_decoder=dec,
                 pixel_mean=sc["pixel_mean"], pixel_std=sc["pixel_std"]).eval()


def build_text_hidden_fcs(hidden, out_dim):
    """initialize_lisa_modules: ModuleList([Sequential(Linear(H, H), ReLU,
    Linear(H, out_dim), Dropout(0))])."""
    return torch.nn.ModuleList([torch.nn.Sequential(
        torch.nn.Linear(hidden, hidden), torch.nn.ReLU(inplace=True),
        torch.nn.Linear(hidden, out_dim), torch.nn.Dropout(0.0))])


def llama_config_from_lisa(cfg):
    from transformers import LlamaConfig
    keys = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
            "num_attention_heads", "num_key_value_heads", "rms_norm_eps",
            "max_position_embeddings", "hidden_act", "initializer_range",
            "tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id",
            "pretraining_tp", "rope_scaling"]
    kw = {k: cfg[k] for k in keys if k in cfg}
    kw["use_cache"] = False
    return LlamaConfig(**kw)


class TinyLisa:
    """The pieces of LISAForCausalLM that inference touches, as plain
    modules: llm (LlamaForCausalLM: model.embed_tokens / model.layers /
    model.norm / lm_head), clip (CLIPVisionModel), projector
    (model.mm_projector), sam (model.visual_model), fcs
    (model.text_hidden_fcs)."""

    def __init__(self, cfg, llm, clip, projector, sam, fcs):
        self.cfg, self.llm, self.clip, self.projector, self.sam, self.fcs = (
            cfg, llm, clip, projector, sam, fcs)
        vc = clip.config
        self.num_patches = (vc.image_size // vc.patch_size) ** 2
        self.select_layer = cfg.get("mm_vision_select_layer", -2)
        for m in (llm, clip, projector, sam, fcs):
            m.eval()

    @staticmethod
    def from_release(release_dir, clip_dir):
        """Loads a released-layout checkpoint (pickled .bin shards + index)
        the way LISAForCausalLM.from_pretrained(torch_dtype=float32) does:
        every float tensor upcast to fp32; CLIP from its own directory."""
        from transformers import CLIPVisionModel, LlamaForCausalLM
        with open(os.path.join(release_dir, "config.json")) as f:
            cfg = json.load(f)
        sc = dict(SAM_VIT_H)
        sc.update(cfg.get("sam_config", {}))
        llm = LlamaForCausalLM(llama_config_from_lisa(cfg))
        projector = torch.nn.Linear(cfg["mm_hidden_size"], cfg["hidden_size"])
        sam = build_sam(sc)
        fcs = build_text_hidden_fcs(cfg["hidden_size"], cfg["out_dim"])
        with open(os.path.join(release_dir, "pytorch_model.bin.index.json")) as f:
            index = json.load(f)
        sd = {}
        for shard in sorted(set(index["weight_map"].values())):
            part = torch.load(os.path.join(release_dir, shard), map_location="cpu")
            for k, v in part.items():
                assert index["weight_map"][k] == shard, k
                sd[k] = v.float() if v.is_floating_point() else v
        parts = {"llm": {}, "proj": {}, "sam": {}, "fcs": {}}
        for k, v in sd.items():
            if k.startswith("model.mm_projector."):
                parts["proj"][k[len("model.mm_projector."):]] = v
            elif k.startswith("model.visual_model."):
                parts["sam"][k[len("model.visual_model."):]] = v
            elif k.startswith("model.text_hidden_fcs."):
                parts["fcs"][k[len("model.text_hidden_fcs."):]] = v
            else:
                assert "vision_tower" not in k, k
                parts["llm"][k] = v
        _load_strict(llm, parts["llm"], ignore=("rotary_emb.inv_freq",))
        _load_strict(projector, parts["proj"])
        _load_strict(sam, parts["sam"], ignore=("pixel_mean", "pixel_std"))
        _load_strict(fcs, parts["fcs"])
        clip = CLIPVisionModel.from_pretrained(clip_dir, torch_dtype=torch.float32)
        return TinyLisa(cfg, llm.float(), clip.float(), projector.float(), sam.float(),
                        fcs.float())

    # ------------------------------------------------------------ LLaVA part

    def encode_images(self, pixel_values):
        """CLIPVisionTower.forward + mm_projector: (1, P, Cclip), (1, P, H)."""
        out = self.clip(pixel_values, output_hidden_states=True)
        feats = out.hidden_states[self.select_layer][:, 1:]
        return feats, self.projector(feats)

    def splice(self, ids, image_features):
        """prepare_inputs_labels_for_multimodal for one sequence with one
        -200: embed(ids[:p]) ++ features ++ embed(ids[p+1:])."""
        ids = torch.as_tensor(ids)
        (pos,) = torch.where(ids == IMAGE_TOKEN_INDEX)
        assert pos.numel() == 1, "exactly one image placeholder expected"
        p = int(pos[0])
        emb = self.llm.model.embed_tokens
        return torch.cat([emb(ids[:p]), image_features[0], emb(ids[p + 1:])], dim=0)[None]

    def llm_forward(self, inputs_embeds):
        """LlamaForCausalLM over the expanded sequence, no cache: post-norm
        hidden states (what LISA's eval-mode forward returns as
        hidden_states) and logits."""
        out = self.llm(inputs_embeds=inputs_embeds, output_hidden_states=True, use_cache=False,
                       return_dict=True)
        h = out.hidden_states[-1]  # HF 4.31: the last entry is model.norm's output
        assert torch.allclose(self.llm.lm_head(h), out.logits, rtol=0, atol=1e-5)
        return h, out.logits

    def forward_ids(self, ids, pixel_values):
        """One full-recompute step: CLIP -> projector -> splice -> LLM."""
        feats, proj = self.encode_images(pixel_values)
        emb = self.splice(ids, proj)
        h, logits = self.llm_forward(emb)
        return dict(clip=feats, proj=proj, embeds=emb, hidden=h, logits=logits)

    def generate(self, ids, pixel_values, max_new_tokens, eos=2):
        """Greedy, full recompute each step (LISA's use_cache=False path).
        Returns output_ids (prompt ++ new, -200 kept), the per-step top-2
        logits, the first step's tensors and the LAST step's post-norm
        hidden states (the last generated token is not fed back)."""
        seq = list(ids)
        top2, first, last = [], None, None
        for _ in range(max_new_tokens):
            r = self.forward_ids(seq, pixel_values)
            if first is None:
                first = r
            last = r
            row = r["logits"][0, -1]
            nxt = int(torch.argmax(row))
            v = torch.topk(row, 2).values
            top2.append([float(v[0]), float(v[1])])
            seq.append(nxt)
            if nxt == eos:
                break
        return dict(output_ids=seq, top2=top2, first=first, last_hidden=last["hidden"])

    # ------------------------------------------------------------ [SEG] part

    def seg_mask_generate(self, output_ids):
        """evaluate(): output_ids[:, 1:] == seg, (P - 1) leading False."""
        ids = torch.as_tensor(output_ids)[None]
        seg = ids[:, 1:] == self.seg_token_idx
        return torch.cat([torch.zeros((1, self.num_patches - 1), dtype=torch.bool), seg], dim=1)

    def seg_mask_teacher_forced(self, ids):
        """model_forward(inference=True): ids[:, 1:] == seg, one trailing
        False, (P - 1) leading False."""
        t = torch.as_tensor(ids)[None]
        seg = t[:, 1:] == self.seg_token_idx
        seg = torch.cat([seg, torch.zeros((1, 1), dtype=torch.bool)], dim=1)
        return torch.cat([torch.zeros((1, self.num_patches - 1), dtype=torch.bool), seg], dim=1)

    @property
    def seg_token_idx(self):
        return self._seg

    def set_seg_token_idx(self, idx):
        self._seg = idx

    def seg_embeddings(self, hidden, mask):
        """text_hidden_fcs[0] over every position, then the masked rows
        (stack/sum over one element is the identity)."""
        assert mask.shape[1] == hidden.shape[1], (mask.shape, hidden.shape)
        full = self.fcs[0](hidden)
        return hidden[mask], full[mask], torch.where(mask[0])[0].tolist()

    # ------------------------------------------------------------ SAM part

    def image_embeddings(self, sam_pixels):
        return self.sam.image_encoder(sam_pixels)

    def decode_masks(self, img_emb, pred_embeddings, resize_hw, orig_hw):
        """LISA's prompt encoder (text_embeds) + mask decoder + postprocess."""
        pe = self.sam.prompt_encoder
        n = pred_embeddings.shape[0]
        text_embeds = pred_embeddings.unsqueeze(1)
        sparse = torch.empty((n, 0, pe.embed_dim))
        sparse = torch.cat([sparse, text_embeds], dim=1).to(pred_embeddings.dtype)
        dense = pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(
            n, -1, pe.image_embedding_size[0], pe.image_embedding_size[1])
        low, iou = self.sam.mask_decoder(
            image_embeddings=img_emb, image_pe=pe.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
            multimask_output=False)
        up = self.sam.postprocess_masks(low.float(), input_size=tuple(resize_hw),
                                        original_size=tuple(orig_hw))
        return low, iou, up[:, 0]


def _load_strict(module, sd, ignore=()):
    want = module.state_dict()
    missing = [k for k in want if k not in sd and not any(i in k for i in ignore)]
    extra = [k for k in sd if k not in want and not any(i in k for i in ignore)]
    assert not missing and not extra, (missing, extra)
    for k, v in sd.items():
        if k in want:
            assert tuple(want[k].shape) == tuple(v.shape), (k, want[k].shape, v.shape)
    module.load_state_dict({k: v for k, v in sd.items() if k in want}, strict=False)


# ---------------------------------------------------------------- text

def conv_v1_prompt(user_msg, assistant_msg=""):
    """conv_llava_v1.get_prompt() for one round (SeparatorStyle.TWO)."""
    ret = SYSTEM_V1 + " " + "USER: " + user_msg + " "
    ret += ("ASSISTANT: " + assistant_msg + "</s>") if assistant_msg else "ASSISTANT:"
    return ret


def chat_prompt(user_text):
    """chat.py: '<image>\\n' + P, then <image> -> <im_start><image><im_end>."""
    p = DEFAULT_IMAGE_TOKEN + "\n" + user_text
    p = p.replace(DEFAULT_IMAGE_TOKEN, IM_START + DEFAULT_IMAGE_TOKEN + IM_END)
    return conv_v1_prompt(p)


def eval_prompt(text, reply="[SEG].", is_sentence=False):
    """ValDataset + collate_fn (use_mm_start_end): the fixed-reply prompt."""
    if is_sentence:
        u = DEFAULT_IMAGE_TOKEN + "\n {} Please output segmentation mask.".format(text)
    else:
        u = DEFAULT_IMAGE_TOKEN + "\n What is {} in this image? Please output segmentation mask.".format(text)
    full = conv_v1_prompt(u, reply)
    return full.replace(DEFAULT_IMAGE_TOKEN, IM_START + DEFAULT_IMAGE_TOKEN + IM_END)


def tokenizer_image_token(prompt, tok):
    """mm_utils.tokenizer_image_token semantics."""
    chunks = [tok(c).input_ids for c in prompt.split(DEFAULT_IMAGE_TOKEN)]
    ids, offset = [], 0
    if chunks and chunks[0] and chunks[0][0] == tok.bos_token_id:
        offset = 1
        ids.append(chunks[0][0])
    for i, c in enumerate(chunks):
        if i > 0:
            sep = [IMAGE_TOKEN_INDEX] * (offset + 1)  # sliced like the chunks
            ids.extend(sep[offset:])
        ids.extend(c[offset:])
    return ids


def load_tokenizer(release_dir):
    """chat.py: AutoTokenizer(use_fast=False, model_max_length=512,
    padding_side='right'); pad = unk."""
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(release_dir, model_max_length=512,
                                        padding_side="right", use_fast=False)
    tok.pad_token = tok.unk_token
    return tok


# ---------------------------------------------------------------- images

def load_rgb(path):
    """cv2.imread + BGR->RGB equivalent for these files: Pillow decode with
    the EXIF orientation applied, RGB uint8 (H, W, 3)."""
    im = ImageOps.exif_transpose(Image.open(path))
    return np.array(im.convert("RGB"))


def clip_pixels(rgb, processor):
    return processor.preprocess(rgb, return_tensors="pt")["pixel_values"][0][None].float()


def sam_pixels(rgb, target=1024):
    """ResizeLongestSide(1024).apply_image (torchvision resize of a PIL image
    = Pillow BILINEAR) + chat.py's preprocess (normalize, pad bottom/right)."""
    h, w = rgb.shape[:2]
    scale = target * 1.0 / max(h, w)
    newh, neww = int(h * scale + 0.5), int(w * scale + 0.5)
    resized = np.array(Image.fromarray(rgb).resize((neww, newh), Image.BILINEAR))
    x = torch.from_numpy(resized).permute(2, 0, 1).contiguous()
    mean = torch.Tensor(SAM_MEAN).view(-1, 1, 1)
    std = torch.Tensor(SAM_STD).view(-1, 1, 1)
    x = (x - mean) / std
    x = F.pad(x, (0, target - neww, 0, target - newh))
    return x[None].float(), (h, w), (newh, neww)
