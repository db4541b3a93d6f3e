"""Writes tests/fixtures/prompts/cases.json: LISA prompts and their input ids
as LISA builds them (chat.py / evaluate): the llava_v1 conversation
(SeparatorStyle.TWO, sep " ", sep2 "</s>"), "<image>\\n" + P with <image>
replaced by <im_start><image><im_end>, then tokenizer_image_token: each
<image>-separated chunk tokenized by transformers 4.31's slow LlamaTokenizer
(with BOS; LISA-13B-llama2-v1's added tokens), the BOS of later chunks
dropped, -200 in between. Teacher-forced cases append the assistant answer
(LISA's eval uses "[SEG].").

Run: python tests/reference/gen_prompts.py  (venv of tests/reference/README.md)."""
import json
import os
import shutil
import tempfile

import transformers
from transformers import LlamaTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "fixtures")
SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. "
          "The assistant gives helpful, detailed, and polite answers to the human's questions.")
IMAGE_TOKEN_INDEX = -200


def conv_llava_v1(user, answer):
    # SeparatorStyle.TWO: system + sep, then role + ": " + msg + sep_i, or role + ":"
    seps = [" ", "</s>"]
    ret = SYSTEM + seps[0]
    msgs = [("USER", user), ("ASSISTANT", answer)]
    for i, (role, msg) in enumerate(msgs):
        ret += role + ": " + msg + seps[i % 2] if msg else role + ":"
    return ret


def tokenizer_image_token(tok, prompt):
    chunks = [tok(c).input_ids for c in prompt.split("<image>")]
    ids = list(chunks[0])
    for c in chunks[1:]:
        ids.append(IMAGE_TOKEN_INDEX)
        ids.extend(c[1:])
    return ids


def main():
    assert transformers.__version__ == "4.31.0", transformers.__version__
    with tempfile.TemporaryDirectory() as d:
        shutil.copyfile(os.path.join(FIX, "tokenizer", "tokenizer.model"), os.path.join(d, "tokenizer.model"))
        tok = LlamaTokenizer.from_pretrained(d, legacy=True)
    tok.add_tokens("[SEG]")
    tok.add_tokens(["<im_start>", "<im_end>"], special_tokens=True)
    users = [
        ("What is the food richest in vitamin C in this image? Please output segmentation mask.", None),
        ("Where would I put a wet umbrella?", None),
        ("  leading and trailing spaces  ", None),
        ("Line one\nline two\twith a tab", None),
        ("Segment the cat. Then the [SEG] token appears in the question.", None),
        ("Ünïcödé 你好 — emoji 🙂", None),
        ("What is the left dog in this image? Please output segmentation mask.", "[SEG]."),
        ("the two cups", "[SEG] and [SEG]."),
        ("x", "Sure, it is [SEG]."),
    ]
    cases = []
    for p, answer in users:
        prompt = conv_llava_v1("<im_start><image><im_end>\n" + p, answer)
        cases.append({"user": p, "answer": answer, "prompt": prompt,
                      "ids": tokenizer_image_token(tok, prompt)})
    out = os.path.join(FIX, "prompts")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump({"cases": cases}, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
