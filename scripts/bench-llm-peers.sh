#!/usr/bin/env bash
# bench-llm-peers.sh: lisa next to llama.cpp on the CPU, on the same random
# weights, at bf16, q8_0 and q4_0, in one command and one table (prefill,
# decode at batch 1 and 16, peak RSS, ratios). docs/benchmarks.md explains
# every column and how each side is measured.
#
# It builds nothing and fetches nothing: it takes an existing llama.cpp build
# and source tree and a Python from the environment, makes one random-weight
# HF checkpoint (tests/reference/make_random_llama.py), converts it for lisa
# (scripts/convert-lisa.py) and for llama.cpp (convert_hf_to_gguf.py, then
# llama-quantize --pure), runs both engines on the same threads and prints
# the table. It does not check outputs (random weights give random text);
# the accuracy of the quantized paths is the tests' job.
#
# Usage: scripts/bench-llm-peers.sh [--shape NAME|config.json] [--threads N]
#          [--prompt N] [--gen N] [--types bf16,bf16dot,q8_0,q4_0] [--rounds N]
#          [--work DIR] [--keep] [--seed N] [--tokenizer FILE] [--prepare-only]
#   --types LIST    bf16dot: lisa's bf16 weights with `--bf16-dot` (activations
#                   rounded to bf16, AVX512-BF16) against the same llama.cpp
#                   BF16 runs as bf16; in the default list where the CPU has
#                   avx512_bf16 (default: bf16,q8_0,q4_0, and bf16dot there)
#   --rounds N      measure everything N times (default 1), round after
#                   round, and report each figure's best round (other load
#                   only slows a run down); the notes give every round's range
#   --prepare-only  make and convert the checkpoints into --work, measure
#                   nothing (a later run with the same --work reuses them)
# Environment (the first three are required):
#   LLAMA_CPP_BUILD  llama.cpp build directory (bin/llama-bench,
#                    bin/llama-batched-bench, bin/llama-quantize)
#   LLAMA_CPP_SRC    llama.cpp source tree (convert_hf_to_gguf.py, gguf-py/)
#   PYTHON           a Python with torch, transformers, safetensors,
#                    sentencepiece, numpy, yaml (e.g. /work/venv/bin/python)
#   LISA             the lisa binary (default build/bin/lisa)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ME=bench-llm-peers.sh

die() {
    echo "$ME: $*" >&2
    exit 1
}

usage() {
    sed -n '/^# Usage:/,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
}

SHAPE=tinyllama-1.1b
THREADS=2
PROMPT=128
GEN=32
TYPES=bf16,q8_0,q4_0
grep -qw avx512_bf16 /proc/cpuinfo 2>/dev/null && TYPES=bf16,bf16dot,q8_0,q4_0
ROUNDS=1
WORK=
KEEP=0
SEED=0
TOKENIZER=
PREPARE_ONLY=0
while [ $# -gt 0 ]; do
    case $1 in
    --shape) SHAPE=${2:?--shape needs a value}; shift 2 ;;
    --threads) THREADS=${2:?--threads needs a value}; shift 2 ;;
    --prompt) PROMPT=${2:?--prompt needs a value}; shift 2 ;;
    --gen) GEN=${2:?--gen needs a value}; shift 2 ;;
    --types) TYPES=${2:?--types needs a value}; shift 2 ;;
    --rounds) ROUNDS=${2:?--rounds needs a value}; shift 2 ;;
    --work) WORK=${2:?--work needs a value}; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --seed) SEED=${2:?--seed needs a value}; shift 2 ;;
    --tokenizer) TOKENIZER=${2:?--tokenizer needs a value}; shift 2 ;;
    --prepare-only) PREPARE_ONLY=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
    esac
done
for n in "$THREADS" "$PROMPT" "$GEN" "$ROUNDS" "$SEED"; do
    case $n in '' | *[!0-9]*) die "'$n' is not a non-negative integer" ;; esac
done
if [ "$THREADS" -lt 1 ] || [ "$PROMPT" -lt 1 ] || [ "$GEN" -lt 1 ] || [ "$ROUNDS" -lt 1 ]; then
    die "--threads, --prompt, --gen and --rounds must be at least 1"
fi
IFS=, read -r -a TYPE_LIST <<<"$TYPES"
[ ${#TYPE_LIST[@]} -ge 1 ] || die "--types is empty"
for t in "${TYPE_LIST[@]}"; do
    case $t in bf16 | bf16dot | q8_0 | q4_0) ;; *) die "--types: '$t' is not one of bf16, bf16dot, q8_0, q4_0" ;; esac
done

# ---- inputs from the environment, checked before anything long starts ----
[ -n "${LLAMA_CPP_BUILD:-}" ] || die "set LLAMA_CPP_BUILD to a llama.cpp build directory (with bin/llama-bench)"
[ -n "${LLAMA_CPP_SRC:-}" ] || die "set LLAMA_CPP_SRC to the llama.cpp source tree (with convert_hf_to_gguf.py)"
[ -n "${PYTHON:-}" ] || die "set PYTHON to a Python with torch, transformers, safetensors and sentencepiece"
LISA=${LISA:-$ROOT/build/bin/lisa}
for b in llama-bench llama-batched-bench llama-quantize; do
    [ -x "$LLAMA_CPP_BUILD/bin/$b" ] || die "LLAMA_CPP_BUILD: no executable $LLAMA_CPP_BUILD/bin/$b"
done
[ -f "$LLAMA_CPP_SRC/convert_hf_to_gguf.py" ] || die "LLAMA_CPP_SRC: no $LLAMA_CPP_SRC/convert_hf_to_gguf.py"
[ -d "$LLAMA_CPP_SRC/gguf-py/gguf" ] || die "LLAMA_CPP_SRC: no $LLAMA_CPP_SRC/gguf-py/gguf"
command -v "$PYTHON" >/dev/null 2>&1 || die "PYTHON: '$PYTHON' is not an executable"
"$PYTHON" -c "import torch, transformers, safetensors, sentencepiece, numpy, yaml" 2>/dev/null ||
    die "PYTHON: $PYTHON cannot import torch, transformers, safetensors, sentencepiece, numpy and yaml"
[ -x "$LISA" ] || die "LISA: no executable $LISA (build lisa first, or set LISA)"

case $SHAPE in
*.json) CONFIG=$SHAPE ;;
tinyllama-1.1b) CONFIG=$ROOT/configs/llama-1.1b.json ;;
*) CONFIG=$ROOT/configs/$SHAPE.json ;;
esac
[ -f "$CONFIG" ] || die "--shape $SHAPE: no config file $CONFIG"
if [ -z "$TOKENIZER" ]; then
    TOKENIZER=$ROOT/../shared/assets/llama-tokenizer.model
    [ -f "$TOKENIZER" ] || TOKENIZER=$ROOT/tests/fixtures/tokenizer/tokenizer.model
fi
[ -f "$TOKENIZER" ] || die "no tokenizer.model at $TOKENIZER (give --tokenizer FILE)"

# What the lisa side can do with this checkout: the converter's --llama and
# --quantize and the engine's load-time --quantize arrived separately.
CONV_HELP=$("$PYTHON" "$ROOT/scripts/convert-lisa.py" --help 2>&1) || die "scripts/convert-lisa.py --help failed: $CONV_HELP"
HAVE_CONV_LLAMA=0
HAVE_CONV_QUANT=0
case $CONV_HELP in *--llama*) HAVE_CONV_LLAMA=1 ;; esac
case $CONV_HELP in *--quantize*) HAVE_CONV_QUANT=1 ;; esac
BENCH_HELP=$("$LISA" bench llm --help 2>&1) || die "$LISA bench llm --help failed: $BENCH_HELP"
HAVE_BENCH_QUANT=0
case $BENCH_HELP in *--quantize*) HAVE_BENCH_QUANT=1 ;; esac
HAVE_MEMORY=0
"$LISA" bench memory --help >/dev/null 2>&1 && HAVE_MEMORY=1
HAVE_BENCH_DOT=0
case $BENCH_HELP in *--bf16-dot*) HAVE_BENCH_DOT=1 ;; esac
HAVE_BF16=0
for t in "${TYPE_LIST[@]}"; do
    [ "$t" = bf16 ] && HAVE_BF16=1
    [ "$t" = bf16dot ] && [ $HAVE_BENCH_DOT = 0 ] && die "type bf16dot: 'lisa bench llm --bf16-dot' is not in this checkout (leave bf16dot out of --types)"
    [ "$t" = bf16 ] || [ "$t" = bf16dot ] && continue
    [ $HAVE_CONV_LLAMA = 1 ] && [ $HAVE_CONV_QUANT = 1 ] && continue
    [ $HAVE_BENCH_QUANT = 1 ] && continue
    die "type $t: neither 'convert-lisa.py --llama --quantize' nor 'lisa bench llm --quantize' exists in this checkout (leave $t out of --types)"
done

if [ -z "$WORK" ]; then
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/lisa-peers.XXXXXX")
    [ $KEEP = 1 ] || trap 'rm -rf "$WORK"' EXIT
else
    mkdir -p "$WORK"
fi
echo "$ME: work directory $WORK$([ $KEEP = 1 ] && echo " (kept)")"

# run_measured NAME CMD...: runs CMD with stdout in $WORK/NAME.out, stderr in
# $WORK/NAME.err and its peak RSS in KiB in $WORK/NAME.rss; dies on failure.
run_measured() {
    local name=$1
    shift
    local out=$WORK/$name.out err=$WORK/$name.err rss=$WORK/$name.rss
    echo "$ME: running $name: $*"
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -f %M -o "$rss" "$@" >"$out" 2>"$err" ||
            { tail -n 20 "$err" >&2; die "$name failed (command: $*; log $err)"; }
    else
        # no GNU time: poll the kernel's high-water mark until the process ends
        "$@" >"$out" 2>"$err" &
        local pid=$! hwm=0 v
        while kill -0 "$pid" 2>/dev/null; do
            v=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
            [ -n "$v" ] && hwm=$v
            sleep 0.2
        done
        wait "$pid" || { tail -n 20 "$err" >&2; die "$name failed (command: $*; log $err)"; }
        echo "$hwm" >"$rss"
    fi
}

# run_step NAME CMD...: a preparation step (no RSS), log in $WORK/NAME.log.
run_step() {
    local name=$1
    shift
    echo "$ME: $name: $*"
    "$@" >"$WORK/$name.log" 2>&1 ||
        { tail -n 20 "$WORK/$name.log" >&2; die "$name failed (command: $*; log $WORK/$name.log)"; }
}

# ---- one checkpoint, converted for both sides ----
# Each artefact is written under a .partial name and renamed when complete,
# so a --work directory of an interrupted run is reused safely.
CKPT=$WORK/hf-ckpt
if [ ! -d "$CKPT" ]; then
    rm -rf "$CKPT.partial"
    run_step make-checkpoint "$PYTHON" "$ROOT/tests/reference/make_random_llama.py" \
        --config "$CONFIG" --tokenizer "$TOKENIZER" --out "$CKPT.partial" --seed "$SEED"
    mv "$CKPT.partial" "$CKPT"
fi

# lisa_dir TYPE: the model directory lisa loads for TYPE, converting it once;
# LISA_QUANT_FLAG is set when the engine must quantize at load instead.
LISA_QUANT_FLAG=()
lisa_dir() {
    local t=$1 dir=$WORK/lisa-$1
    LISA_QUANT_FLAG=()
    if [ "$t" = bf16 ] || [ $HAVE_CONV_QUANT = 0 ] || [ $HAVE_CONV_LLAMA = 0 ]; then
        if [ $HAVE_CONV_LLAMA = 1 ]; then
            dir=$WORK/lisa-bf16
            if [ ! -d "$dir" ]; then
                rm -rf "$dir.partial"
                run_step convert-lisa-bf16 "$PYTHON" "$ROOT/scripts/convert-lisa.py" --llama "$CKPT" \
                    --out "$dir.partial"
                mv "$dir.partial" "$dir"
            fi
        else
            # the engine reads a plain HF LLaMA directory as it is
            dir=$CKPT
        fi
        [ "$t" = bf16 ] || LISA_QUANT_FLAG=(--quantize "$t")
    elif [ ! -d "$dir" ]; then
        rm -rf "$dir.partial"
        run_step "convert-lisa-$t" "$PYTHON" "$ROOT/scripts/convert-lisa.py" --llama "$CKPT" \
            --out "$dir.partial" --quantize "$t"
        mv "$dir.partial" "$dir"
    fi
    LISA_DIR=$dir
}

# convert_hf_to_gguf.py names torch.float8_* in a dtype table; torch before
# 2.1 (Debian 12 has 1.13) has no such dtypes, so this runner stands None in
# for them (the checkpoint has no float8 tensors: the entries are never used)
# and then runs the converter unchanged, with llama.cpp's own gguf-py.
SHIM=$WORK/run_convert_hf_to_gguf.py
cat >"$SHIM" <<'PY'
import os, runpy, sys, torch
for name in ("float8_e4m3fn", "float8_e5m2"):
    if not hasattr(torch, name):
        setattr(torch, name, None)
sys.argv = sys.argv[1:]
# as `python convert_hf_to_gguf.py` would: newer llama.cpp trees import
# their own `conversion` package from beside the script
sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[0])))
runpy.run_path(sys.argv[0], run_name="__main__")
PY
GGUF_BF16=$WORK/model-bf16.gguf
if [ ! -f "$GGUF_BF16" ]; then
    run_step convert-gguf-bf16 env PYTHONPATH="$LLAMA_CPP_SRC/gguf-py" "$PYTHON" "$SHIM" \
        "$LLAMA_CPP_SRC/convert_hf_to_gguf.py" "$CKPT" --outtype bf16 --outfile "$GGUF_BF16.partial"
    mv "$GGUF_BF16.partial" "$GGUF_BF16"
fi
gguf_file() {
    local t=$1 f=$WORK/model-$1.gguf
    if [ "$t" != bf16 ] && [ ! -f "$f" ]; then
        # --pure: every 2-D weight in the one type (no k-quant mixture, and
        # output.weight too); token_embd kept bf16 as lisa keeps embed_tokens
        run_step "quantize-gguf-$t" "$LLAMA_CPP_BUILD/bin/llama-quantize" --pure \
            --token-embedding-type bf16 "$GGUF_BF16" "$f.partial" "${t^^}" "$THREADS"
        mv "$f.partial" "$f"
    fi
    GGUF=$f
}

# same_weights TYPE: dies unless lisa's directory and the GGUF hold the same
# bytes for v, o, gate, up, down of the first and last layer and the LM head
# (q and k are left out: convert_hf_to_gguf.py permutes their rows for its
# RoPE layout). Skipped where lisa quantizes at load (no file to compare).
same_weights() {
    local t=$1
    [ ${#LISA_QUANT_FLAG[@]} = 0 ] || return 0
    run_step "same-weights-$t" env PYTHONPATH="$LLAMA_CPP_SRC/gguf-py" "$PYTHON" - "$LISA_DIR" "$GGUF" <<'PY'
import glob, json, os, sys
import numpy as np, torch
from gguf import GGUFReader
from safetensors import safe_open

lisa_dir, gguf_path = sys.argv[1:]
gg = {t.name: t for t in GGUFReader(gguf_path).tensors}
files = {}
for f in glob.glob(os.path.join(lisa_dir, "*.safetensors")):
    with safe_open(f, "pt") as h:
        files.update({k: f for k in h.keys()})
n_layers = 1 + max(int(k.split(".")[2]) for k in files if k.startswith("model.layers."))
pairs = [("output.weight", "lm_head.weight")]
for l in sorted({0, n_layers - 1}):
    for g, h in (("attn_v", "self_attn.v_proj"), ("attn_output", "self_attn.o_proj"),
                 ("ffn_gate", "mlp.gate_proj"), ("ffn_up", "mlp.up_proj"), ("ffn_down", "mlp.down_proj")):
        pairs.append((f"blk.{l}.{g}.weight", f"model.layers.{l}.{h}.weight"))
for g, h in pairs:
    with safe_open(files[h], "pt") as f:
        a = f.get_tensor(h)
    a = a.view(torch.int16) if a.dtype in (torch.bfloat16, torch.float16) else a
    a = a.numpy().reshape(-1).view(np.uint8)
    b = np.asarray(gg[g].data).reshape(-1).view(np.uint8)
    if a.shape != b.shape or not np.array_equal(a, b):
        sys.exit(f"{h} (lisa) and {g} (GGUF, {gg[g].tensor_type.name}) differ")
print(f"{len(pairs)} tensors byte-identical")
PY
}

# ---- every input first, so that the measurements run back to back ----
for t in "${TYPE_LIST[@]}"; do
    [ "$t" = bf16dot ] && [ $HAVE_BF16 = 1 ] && continue # bf16's files, prepared there
    lisa_dir "${t%dot}"
    gguf_file "${t%dot}"
    same_weights "${t%dot}"
done
if [ $PREPARE_ONLY = 1 ]; then
    echo "$ME: prepared in $WORK; rerun with --work $WORK to measure"
    exit 0
fi

# ---- the runs, per round: the bandwidth probe, then per type lisa,
# llama-bench and llama-batched-bench, alternating engines so that a drift in
# the load hits both; each engine makes one untimed warm-up pass and one
# timed pass per round ----
LOAD_START=$(cut -d' ' -f1 /proc/loadavg)
CTX=$((16 * (PROMPT + GEN)))
for r in $(seq 1 "$ROUNDS"); do
    if [ $HAVE_MEMORY = 1 ]; then
        run_measured "bench-memory.r$r" "$LISA" bench memory --threads "$THREADS" --json
    fi
    for t in "${TYPE_LIST[@]}"; do
        b=${t%dot} # bf16dot: bf16's files and llama.cpp's bf16 runs
        dot=()
        [ "$t" = bf16dot ] && dot=(--bf16-dot)
        lisa_dir "$b"
        gguf_file "$b"
        run_measured "lisa-$t.r$r" "$LISA" bench llm --model "$LISA_DIR" "${LISA_QUANT_FLAG[@]}" \
            "${dot[@]}" --threads "$THREADS" --prompt-len "$PROMPT" --new-tokens "$GEN" \
            --batches 1,16 --json
        echo "${LISA_QUANT_FLAG[*]:-converted}" >"$WORK/lisa-$t.how"
        [ "$t" = bf16dot ] && [ $HAVE_BF16 = 1 ] && continue
        run_measured "llama-bench-$b.r$r" "$LLAMA_CPP_BUILD/bin/llama-bench" -m "$GGUF" \
            -p "$PROMPT" -n "$GEN" -t "$THREADS" -r 1 -o jsonl
        run_measured "llama-batched-$b.r$r" "$LLAMA_CPP_BUILD/bin/llama-batched-bench" -m "$GGUF" \
            -c "$CTX" -npp "$PROMPT" -ntg "$GEN" -npl 1,16 -t "$THREADS" -tb "$THREADS" \
            --output-format jsonl
    done
done
LOAD_END=$(cut -d' ' -f1 /proc/loadavg)

# ---- the table ----
LISA_COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -z "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ] || LISA_COMMIT="$LISA_COMMIT+dirty"
CPU=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
"$PYTHON" - "$WORK" "$CONFIG" "$SHAPE" "$TYPES" "$THREADS" "$PROMPT" "$GEN" "$SEED" "$ROUNDS" \
    "$CPU" "$(nproc)" "$LOAD_START" "$LOAD_END" "$LISA_COMMIT" "$HAVE_MEMORY" <<'EOF'
import json, os, sys

(work, config, shape, types, threads, prompt, gen, seed, rounds, cpu, ncpu, load0, load1,
 lisa_commit, have_memory) = sys.argv[1:]
types = types.split(",")
rounds = int(rounds)
cfg = json.load(open(config))


def jsonl(name):
    rows = []
    with open(os.path.join(work, name + ".out")) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                rows.append(json.loads(line))
    if not rows:
        sys.exit(f"bench-llm-peers.sh: {name}.out has no JSON lines (see {name}.err)")
    return rows


def one(rows, what, **match):
    for r in rows:
        if all(r.get(k) == v for k, v in match.items()):
            return float(r[what])
    sys.exit(f"bench-llm-peers.sh: no {what} for {match} in the results")


def per_round(name, what, **match):
    """what's value in each round's NAME.rR.out, in round order"""
    return [one(jsonl(f"{name}.r{r}"), what, **match) for r in range(1, rounds + 1)]


def rss_mb(name):
    v = []
    for r in range(1, rounds + 1):
        with open(os.path.join(work, f"{name}.r{r}.rss")) as f:
            v.append(int(f.read().split()[-1]) / 1024.0)
    return v


# bytes one decode step reads for the weights: the projections and the LM
# head in the type (embeddings: one row, norms: negligible)
h, inter, L, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
nh = cfg["num_attention_heads"]
nkv = cfg.get("num_key_value_heads", nh)
kv = h // nh * nkv
matmul = L * (2 * h * h + 2 * h * kv + 3 * h * inter) + V * h
per_elem = {"bf16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}

bw, bw_text = None, "n/a (this lisa has no `bench memory`)"
if have_memory == "1":
    # its read-only figure: what a batch-1 decode step does to the weights
    reads = per_round("bench-memory", "read_gb_s")
    copies = per_round("bench-memory", "copy_gb_s")
    bw = max(reads)
    bw_text = f"read {bw:.1f} GB/s, copy {max(copies):.1f} GB/s (lisa bench memory, {threads} threads"
    bw_text += f"; read {min(reads):.1f}..{max(reads):.1f} over the rounds)" if rounds > 1 else ")"

def base(t):  # bf16dot runs on bf16's files, against llama.cpp's bf16 runs
    return t[:-3] if t.endswith("dot") else t


build = jsonl(f"llama-bench-{base(types[0])}.r1")[0]
print(f"machine: {cpu}, {ncpu} CPUs online, load average {load0} before the runs and {load1} after; "
      f"{threads} threads on both sides")
print(f"lisa {lisa_commit}; llama.cpp build {build.get('build_number', '?')} "
      f"({build.get('build_commit', '?')}), {build.get('cpu_info', '?')}")
print(f"shape {shape}: hidden {h}, intermediate {inter}, {L} layers, {nh} heads, {nkv} KV heads, "
      f"vocab {V}; prompt {prompt}, gen {gen}, seed {seed}; "
      + (f"best of {rounds} rounds" if rounds > 1 else "one round"))
print("memory bandwidth: " + bw_text)
print()
hdr = f"{'type':7} | {'metric':27} | {'lisa':>14} | {'llama.cpp':>14} | lisa/llama.cpp"
print(hdr)
print("-" * len(hdr))
notes = []
for t in types:
    lt = base(t)  # llama.cpp's runs of the same weights
    rows = [
        ("prefill tok/s (b=1)", per_round("lisa-" + t, "prefill_tok_s", batch=1),
         per_round("llama-bench-" + lt, "avg_ts", n_prompt=int(prompt), n_gen=0), "%.1f"),
        ("decode tok/s (b=1)", per_round("lisa-" + t, "decode_tok_s", batch=1),
         per_round("llama-batched-" + lt, "speed_tg", pl=1), "%.2f"),
        ("decode tok/s (b=16)", per_round("lisa-" + t, "decode_tok_s", batch=16),
         per_round("llama-batched-" + lt, "speed_tg", pl=16), "%.2f"),
        ("peak RSS MB", rss_mb("lisa-" + t), rss_mb("llama-batched-" + lt), "%.0f"),
    ]
    # lisa's own count of its tensors' bytes where it prints one, else the
    # count from the config (both sides hold these tensors in the same type)
    lisa1 = jsonl(f"lisa-{t}.r1")
    gb = one(lisa1, "weight_bytes", batch=1) / 1e9 if "weight_bytes" in lisa1[0] \
        else matmul * per_elem[lt] / 1e9
    for name, a, b, fmt in rows:
        print(f"{t:7} | {name:27} | {fmt % max(a):>14} | {fmt % max(b):>14} | {max(a) / max(b):.2f}")
        if rounds > 1 and "tok/s" in name:
            notes.append(f"{t}: {name} over the rounds: lisa " + ", ".join(fmt % x for x in a)
                         + "; llama.cpp " + ", ".join(fmt % x for x in b))
    da, db = max(rows[1][1]) * gb, max(rows[1][2]) * gb
    if bw is not None:
        sa, sb = f"{da:.1f} ({100 * da / bw:.0f}%)", f"{db:.1f} ({100 * db / bw:.0f}%)"
    else:
        sa, sb = f"{da:.1f}", f"{db:.1f}"
    print(f"{t:7} | {'decode b=1 weight GB/s':27} | {sa:>14} | {sb:>14} | {da / db:.2f}")
    how = open(os.path.join(work, "lisa-" + t + ".how")).read().strip()
    if how != "converted":
        notes.append(f"{t}: lisa quantized the bf16 directory at load ({how}); "
                     "convert-lisa.py --llama --quantize is not in this checkout")
    kern = lisa1[0].get("cpu_kernels")
    if kern:
        notes.append(f"{t}: lisa's CPU matmul kernels: {kern}"
                     + (" (no AVX512-BF16 here: the exact path, as bf16)"
                        if t == "bf16dot" and "bf16dot" not in kern else ""))
    tg = per_round("llama-bench-" + lt, "avg_ts", n_prompt=0, n_gen=int(gen))
    notes.append(f"{t}: llama-bench tg{gen} (b=1 from an empty context): {max(tg):.2f} tok/s; "
                 f"weights read per decode step {gb:.3f} GB")
print()
for n in notes:
    print("note: " + n)
EOF
