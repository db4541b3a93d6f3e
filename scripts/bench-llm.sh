#!/bin/sh
# Benchmarks the LLaMA decoder against HF transformers on the same shapes, in
# one command, and prints the ratio (lisa / transformers; > 1 means faster).
#
# Usage: scripts/bench-llm.sh [CONFIG] [PROMPT_LEN] [BATCHES] [NEW_TOKENS]
#   defaults: configs/llama-bench-small.json 128 1,16 16
# Environment: LISA_REF_PYTHON, a Python with torch and transformers 4.31
#   (see tests/reference/README.md; default python3); LISA_THREADS (default:
#   all cores), LISA_DTYPE, weight dtype for lisa (bf16, f16, f32; default bf16;
#   transformers runs fp32 on the CPU, which is what our CPU path computes in).
set -eu
cd "$(dirname "$0")/.."
CONFIG=${1:-configs/llama-bench-small.json}
T=${2:-128}
BATCHES=${3:-1,16}
STEPS=${4:-16}
THREADS=${LISA_THREADS:-$(nproc)}
PY=${LISA_REF_PYTHON:-python3}
LISA=${LISA_BIN:-build/bin/lisa}

echo "config $CONFIG, prompt $T tokens, batches $BATCHES, $STEPS decode steps, $THREADS threads"
lisa_out=$("$LISA" bench llm --config "$CONFIG" --prompt-len "$T" --batches "$BATCHES" \
    --new-tokens "$STEPS" --threads "$THREADS" --dtype "${LISA_DTYPE:-bf16}" --json)
ref_out=$("$PY" tests/reference/bench_llm_transformers.py --config "$CONFIG" --prompt-len "$T" \
    --batches "$BATCHES" --new-tokens "$STEPS" --threads "$THREADS")
printf '%s\n%s\n' "$lisa_out" "$ref_out" | "$PY" -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.strip().startswith("{")]
lisa = {r["batch"]: r for r in rows if r["engine"] == "lisa"}
ref = {r["batch"]: r for r in rows if r["engine"] != "lisa"}
print("batch  lisa prefill  hf prefill  ratio   lisa decode  hf decode  ratio   (tokens/s)")
for b in sorted(lisa):
    l, r = lisa[b], ref.get(b)
    if not r: continue
    print("%5d  %12.1f  %10.1f  %5.2fx  %11.2f  %9.2f  %5.2fx" % (b,
          l["prefill_tok_s"], r["prefill_tok_s"], l["prefill_tok_s"] / r["prefill_tok_s"],
          l["decode_tok_s"], r["decode_tok_s"], l["decode_tok_s"] / r["decode_tok_s"]))
'
