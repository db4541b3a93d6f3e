#!/usr/bin/env python3
"""gen_tokenizer.py: reference token ids for LISA's tokenizer tests.

Writes, under tests/fixtures/tokenizer/:
  tokenizer.model     a copy of the LLaMA SentencePiece model the C tests load
  added_tokens.json   LISA-13B-llama2-v1's added tokens ([SEG], <im_start>, <im_end>)
  cases.json          {"added_tokens": {...}, "cases": [{"text", "sp_ids",
                      "sp_decoded", "hf_ids"}, ...], "byte_cases": [{"hex",
                      "sp_ids", "sp_decoded_hex"[, "hf_ids"]}, ...]}
                      (byte_cases: inputs JSON strings cannot carry, i.e.
                      NUL bytes and malformed UTF-8, given as hex)
  cli-input.txt       the text tests/cli/tokenize.sh feeds to `lisa tokenize`
  cli-expected.txt    "hf <ids>" (with added tokens), "bos <ids>" (same with
                      --bos) and "sp <ids>" (pure SentencePiece) for that text

sp_ids / sp_decoded come from the sentencepiece library itself
(SentencePieceProcessor.encode / decode). hf_ids come from transformers 4.31's
slow LlamaTokenizer in legacy mode, loaded the way LISA loads it
(from_pretrained, which also makes <s>, </s>, <unk> no-split tokens), then
add_tokens("[SEG]") and add_tokens([<im_start>, <im_end>], special_tokens=True)
and pad_token = unk_token, exactly as LISA's chat.py/train_ds.py do; ids are
`tok(text, add_special_tokens=False).input_ids`.

It deliberately does not test BOS placement or <image> splicing (the prompt
builder's job). Run with the venv that has transformers==4.31.0:

  /work/venv/bin/python tests/reference/gen_tokenizer.py \
      --model /work/shared/assets/llama-tokenizer.model
"""
import argparse
import json
import os
import random
import shutil
import tempfile

import sentencepiece as spm
import transformers
from transformers import LlamaTokenizer

ADDED = ["[SEG]", "<im_start>", "<im_end>"]
LISA_SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. "
               "The assistant gives helpful, detailed, and polite answers to the human's questions.")

# Pieces the pseudo-random strings are assembled from.
FRAGMENTS = [
    "the", " cat", "sat", " on the mat", "Hello", ",", ".", "!", "?", " ", "  ", "   ",
    "\t", "\n", "\n\n", "\r\n", "0", "12", "345", "2023", "3.14", "-", "_", "(", ")", "'s",
    "\"", "#", "@", "$", "%", "&", "*", "+", "=", "/", "\\", "<", ">", "[", "]", "{", "}",
    "日本語", "中文", "汉字", "한국어", "Привет", " мир", "مرحبا", "שלום", "ελληνικά",
    "Ünïcödé", "café", "naïve", "😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🤖", "∑", "∫", "→", "★",
    "𝔘𝔫𝔦", "𓀀", "ꙮ", "\u00a0", "\u3000", "\u2003", "\u200b", "\u2028", "\x85", "\x1c",
    "▁", "▁▁", "[SEG]", "<im_start>", "<im_end>", "<s>", "</s>", "<unk>", "[SEG", "<im_",
    "SEG]", "USER:", " ASSISTANT:", "<image>",
]


def fixed_cases():
    c = []
    # empty, whitespace-only, leading/trailing whitespace
    c += ["", " ", "  ", "   ", "\t", "\n", "\n\n", " \n ", "\r\n", "\t\t \t", "a", " a", "a ",
          "  a  ", "\ta\t", "\na\n", " leading space", "trailing space ", "  both  ",
          "multiple   spaces   inside", "tab\tseparated\tvalues", "line one\nline two\nline three",
          "windows\r\nline\r\nendings", "mixed \t\n whitespace \n\t runs", " " * 17, "\n" * 9,
          "x" + " " * 40 + "y", "\u00a0nbsp\u00a0", "\u3000ideographic\u3000space", "\u2003em\u2002en",
          "zero\u200bwidth", "line\u2028separator", "nel\x85char", "ctrl\x1c\x1d\x1e\x1fchars",
          "\x07bell\x08bs\x7fdel", "\x0bvt\x0cff"]
    # ASCII sentences
    c += ["Hello world", "Hello, world!", "The quick brown fox jumps over the lazy dog.",
          "What is in the image?", "Please output segmentation mask.",
          "Can you segment the object that is used for cutting food?",
          "It is [SEG].", "Sure, it is [SEG].", "Sure, [SEG].",
          "I'm sure it's fine, isn't it? You'd've thought so.",
          "e-mail: someone@example.com, url: https://example.com/a/b?c=d&e=f#g",
          "C:\\Program Files\\LISA\\lisa.exe --help", "def f(x):\n    return x ** 2\n",
          "if (a < b && c > d) { return a[i] + b[j]; }", "<html><body><p>Hi</p></body></html>",
          "ALL CAPS SENTENCE HERE", "MiXeD cAsE wOrDs", "CamelCaseIdentifierName snake_case_name",
          "antidisestablishmentarianism", "supercalifragilisticexpialidocious",
          "Pneumonoultramicroscopicsilicovolcanoconiosis is long.", "a b c d e f g h i j k",
          "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "abababababababababab",
          "..........", "!!!???!!!", "---===+++", "~`^|", "''\"\"``", "(((nested)))", "[[[x]]]",
          "{\"json\": [1, 2, 3], \"k\": null}", "key=value; other=thing", "#hashtag @mention",
          "50% off!!! $19.99 only", "1+1=2, 2*3=6, 10/4=2.5", "π ≈ 3.14159", "x² + y² = z²"]
    # digits
    c += ["0", "7", "42", "123456789", "3.141592653589793", "1,000,000", "2023-10-05",
          "12:34:56", "+1 (555) 123-4567", "0x1F600", "1e-10", "v1.2.3-rc4", "007", "0000000",
          "9 8 7 6 5", "The year 1999 had 365 days."]
    # scripts
    c += ["日本語のテキストです。", "你好，世界！", "汉字和标点符号：“引号”。", "안녕하세요 세계",
          "Привет, мир!", "Съешь же ещё этих мягких французских булок, да выпей чаю.",
          "مرحبا بالعالم", "السلام عليكم ورحمة الله", "שלום עולם", "Γειά σου Κόσμε",
          "नमस्ते दुनिया", "สวัสดีชาวโลก", "Xin chào thế giới", "Ελληνικά και English mixed",
          "Ça va? Très bien, merci. Où est la bibliothèque?", "Größe, Maß, Straße, Ärger",
          "ñandú pingüino", "İstanbul ıi", "ǅǈǋ ﬁﬂ", "Ａｂｃ全角", "ｶﾀｶﾅ半角",
          "混合 mixed 混合 text テキスト", "ქართული", "Հայերեն", "ትግርኛ", "ᠮᠣᠩᠭᠣᠯ",
          "தமிழ்", "ਪੰਜਾਬੀ", "བོད་ཡིག", "ꦗꦮ", "ᏣᎳᎩ"]
    # emoji, ZWJ sequences, skin tones, flags
    c += ["😀", "😀😃😄", "I love 🍕 and 🍣!", "👍", "👍🏻👍🏼👍🏽👍🏾👍🏿", "👨‍👩‍👧‍👦",
          "👩‍💻 coding", "🏳️‍🌈", "🏴‍☠️", "🇺🇸🇯🇵🇫🇷", "❤️", "♥", "✨🎉✨", "🤷‍♀️🤷🏽‍♂️",
          "🧑🏿‍🤝‍🧑🏻", "1️⃣2️⃣#️⃣", "🫠🫶🪿", "text😀text", " 😀 ", "😀\n😀"]
    # rare characters forcing byte fallback
    c += ["𠀀𠀁𠀂", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𓀀𓀁𓀂", "ꙮ", "\U0010fffd", "\ue000private",
          "\ufffd replacement", "\ufeffBOM", "\U0001d11e music", "🀄🃏", "⿰⿱⿲", "㐀㐁",
          "\u0301combining", "e\u0301", "a\u0308o\u0308", "ﷺ", "\u202eRTL override"]
    # SentencePiece's own space symbol in the input
    c += ["▁", "▁▁", "▁hello", "hello▁world", "▁ ▁", "▁[SEG]▁", "a▁▁▁b"]
    # added tokens in context
    tok_ctx = []
    for t in ADDED:
        tok_ctx += [t, " " + t, t + " ", " " + t + " ", "\n" + t + "\n", "\t" + t + "\t",
                    "a" + t + "b", "a " + t + " b", "a  " + t + "  b", "a\n" + t + "\nb",
                    t + t, t + " " + t, t + "\n\n" + t, "x" + t, t + "x", "\u3000" + t + "\u00a0y",
                    "x\u200b" + t + "\u200by", "x\x85" + t + "\x1cy", "." + t + ".", t + "[SEG]",
                    "<" + t + ">", "[" + t + "]", "😀" + t + "😀", "你好 " + t + " 世界"]
    c += tok_ctx
    c += ["[SEG", "SEG]", "[SEG ]", "[seg]", "[[SEG]]", "<im_start", "im_start>", "<im_start >",
          "<im_<im_start>", "<im_end><im_start>", "<im_start><im_end>", "<im_start> <im_end>",
          "<im_start>\n<im_end>\n", "[SEG][SEG][SEG]", "[SEG] [SEG] [SEG]", " [SEG]  [SEG]   ",
          "<s>", "</s>", "<unk>", "a <s> b", "a</s>b", "x <unk> y", "<s>[SEG]</s>", "<pad>",
          "<image>", "<im_patch>", "<0x41>", "<s> [SEG] </s>", "[SEG]<s>", " <s> ", "\n</s>\n"]
    # LISA-style prompts
    q = ["What is in the image?", "Can you segment the food that tastes spicy and hot?",
         "What is the person holding? Please output segmentation mask.",
         "Where is the dog?  Please respond with segmentation mask.",
         "Segment the object that would be used to cut the cake in this image."]
    for i, p in enumerate(q):
        c.append(LISA_SYSTEM + " USER: <im_start><im_end>\n" + p + " ASSISTANT:")
        c.append(LISA_SYSTEM + " USER: <im_start><image><im_end>\n" + p + " ASSISTANT:")
        c.append("USER: <im_start><im_end>\n" + p + " ASSISTANT: Sure, it is [SEG].</s>")
        if i < 2:
            c.append(LISA_SYSTEM + " USER: " + p + " ASSISTANT:")
            c.append(" ASSISTANT: Sure, [SEG].")
    c.append("<im_end>\n" + q[0] + " ASSISTANT:")
    c.append(LISA_SYSTEM + " USER: ")
    # a long text (exercises the merge queue on a few thousand symbols)
    c.append(" ".join([LISA_SYSTEM] * 8) + "\n" + "日本語のテキスト😀 " * 30)
    return c


# Raw byte inputs: NUL bytes (cJSON strings cannot hold them) and malformed
# UTF-8 (sentencepiece maps each bad byte to U+FFFD before BPE).
BYTE_CASES = [b"\x00", b"a\x00b", b"\x00nul\x00", b"a\xffb", b"\xc3", b"\xc3(", b"x\xed\xa0\x80y",
              b"\xf4\x90\x80\x80", b"\xc0\xaf overlong", b"\xe6\x97", b"\xe6\x97\xa5\xe6",
              b"\xef\xbf\xbd", b"\x80\x80\x80", b"ok \xfe\xff [SEG] \xf0\x9f\x98"]


def random_cases(n, seed=20240521):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.randint(1, 14)
        out.append("".join(rng.choice(FRAGMENTS) for _ in range(k)))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--model", default="/work/shared/assets/llama-tokenizer.model")
    ap.add_argument("--out", default=os.path.join(here, "..", "fixtures", "tokenizer"))
    args = ap.parse_args()
    assert transformers.__version__ == "4.31.0", transformers.__version__
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    shutil.copyfile(args.model, os.path.join(out, "tokenizer.model"))

    sp = spm.SentencePieceProcessor(model_file=args.model)
    with tempfile.TemporaryDirectory() as d:
        shutil.copyfile(args.model, os.path.join(d, "tokenizer.model"))
        hf = LlamaTokenizer.from_pretrained(d, legacy=True)
    hf.add_tokens("[SEG]")
    hf.add_tokens(ADDED[1:], special_tokens=True)
    hf.pad_token = hf.unk_token
    added = {t: hf.convert_tokens_to_ids(t) for t in ADDED}
    assert added == {"[SEG]": 32000, "<im_start>": 32001, "<im_end>": 32002}, added
    with open(os.path.join(out, "added_tokens.json"), "w") as f:
        json.dump(added, f)

    texts = fixed_cases()
    texts += random_cases(max(0, 340 - len(texts)) + 60)
    seen, cases = set(), []
    for t in texts:
        if t in seen:
            continue
        seen.add(t)
        ids = sp.encode(t)
        cases.append({"text": t, "sp_ids": ids, "sp_decoded": sp.decode(ids),
                      "hf_ids": hf(t, add_special_tokens=False).input_ids})
    byte_cases = []
    for b in BYTE_CASES:
        ids = sp.encode(b)
        c = {"hex": b.hex(), "sp_ids": ids, "sp_decoded_hex": sp.decode(ids).encode().hex()}
        try:
            c["hf_ids"] = hf(b.decode("utf-8"), add_special_tokens=False).input_ids
        except UnicodeDecodeError:
            pass
        byte_cases.append(c)
    with open(os.path.join(out, "cases.json"), "w", encoding="utf-8") as f:
        json.dump({"added_tokens": added, "cases": cases, "byte_cases": byte_cases}, f, ensure_ascii=False,
                  separators=(",", ":"))
        f.write("\n")

    cli_text = LISA_SYSTEM + " USER: <im_start><im_end>\nWhat is in the image? ASSISTANT:\n"
    with open(os.path.join(out, "cli-input.txt"), "w", encoding="utf-8", newline="") as f:
        f.write(cli_text)
    hf_ids = hf(cli_text, add_special_tokens=False).input_ids
    with open(os.path.join(out, "cli-expected.txt"), "w") as f:
        f.write("hf " + " ".join(map(str, hf_ids)) + "\n")
        f.write("bos " + " ".join(map(str, [sp.bos_id()] + hf_ids)) + "\n")
        f.write("sp " + " ".join(map(str, sp.encode(cli_text))) + "\n")
    n_rt = sum(c["sp_decoded"] == c["text"] for c in cases)
    print(f"{len(cases)} cases ({n_rt} round-trip through sentencepiece) -> {out}")


if __name__ == "__main__":
    main()
