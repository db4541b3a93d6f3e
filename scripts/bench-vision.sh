#!/bin/sh
# Benchmarks the vision models (CLIP tower, SAM image encoder, SAM mask
# decoder; random weights) against PyTorch eager on the same shapes, in one
# command, and prints the ratio (torch time / lisa time; > 1 means lisa is
# faster). `lisa bench vision` runs first, then tests/reference/
# bench_vision_torch.py in a separate process.
#
# Usage: scripts/bench-vision.sh [CLIP] [SAM] [BATCH]
#   CLIP l14 (default), b16, tiny or none; SAM vit_b (default), vit_l, vit_h,
#   tiny or none; BATCH images per CLIP call / SAM encoder round (default 1)
# Environment: LISA_REF_PYTHON, a Python with torch, transformers and
#   segment-anything (see tests/reference/README.md; default python3; without
#   the last two the script's pure-torch models run); LISA_THREADS (default:
#   all cores); LISA_ITERS timed runs (default 3); LISA_DEVICE cpu (default),
#   cuda or cuda:N; LISA_DTYPE: on cuda the compute dtype of both engines
#   (default bf16), on cpu lisa's weight storage dtype (default fp32; both
#   compute in fp32 there); LISA_BIN (default build/bin/lisa).
set -eu
cd "$(dirname "$0")/.."
CLIP=${1:-l14}
SAM=${2:-vit_b}
BATCH=${3:-1}
THREADS=${LISA_THREADS:-$(nproc)}
ITERS=${LISA_ITERS:-3}
DEVICE=${LISA_DEVICE:-cpu}
case $DEVICE in cpu) DTYPE=${LISA_DTYPE:-fp32} ;; *) DTYPE=${LISA_DTYPE:-bf16} ;; esac
PY=${LISA_REF_PYTHON:-python3}
LISA=${LISA_BIN:-build/bin/lisa}

echo "clip $CLIP, sam $SAM, batch $BATCH, $ITERS timed runs, $DEVICE $DTYPE, $THREADS threads"
lisa_out=$("$LISA" bench vision --clip "$CLIP" --sam "$SAM" --batch "$BATCH" --iters "$ITERS" \
    --device "$DEVICE" --dtype "$DTYPE" --threads "$THREADS" --json)
ref_out=$("$PY" tests/reference/bench_vision_torch.py --clip "$CLIP" --sam "$SAM" --batch "$BATCH" \
    --iters "$ITERS" --device "$DEVICE" --dtype "$DTYPE" --threads "$THREADS")
printf '%s\n%s\n' "$lisa_out" "$ref_out" | "$PY" -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.strip().startswith("{")]
key = lambda r: (r["model"], r["part"], r["batch"])
lisa = {key(r): r for r in rows if r["engine"] == "lisa"}
ref = {key(r): r for r in rows if r["engine"] != "lisa"}
print("%-10s %-12s %5s  %12s %12s  %7s  %s" % ("model", "part", "batch", "lisa", "torch", "ratio", "torch impl"))
for k in sorted(lisa, key=lambda k: list(lisa).index(k)):
    l, r = lisa[k], ref.get(k)
    unit = "ms_per_mask" if "ms_per_mask" in l else "ms_per_image"
    lt, rt = l[unit], r[unit] if r else None
    print("%-10s %-12s %5d  %9.2f ms %9s ms  %7s  %s   (%s)" % (k[0], k[1], k[2], lt,
          "%.2f" % rt if rt else "-", "%.2fx" % (rt / lt) if rt else "-",
          r.get("impl", "") if r else "", unit.replace("ms_per_", "per ")))
'
