#!/bin/sh
# `lisa bench` through the real binary: `bench vision` on the tiny presets
# (random weights, the real 1024-pixel SAM input) prints one JSON line per
# part with the expected keys; `bench llm` runs on the small config; bad
# options are usage errors (exit status 2).
# Usage: sh bench.sh LISA_BIN FIXTURES_DIR
set -u
LISA=$1
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

"$LISA" bench vision --help >/dev/null || fail "bench vision --help exit status"
"$LISA" bench --help >/dev/null || fail "bench --help exit status"

# The random-weight file goes to $TMPDIR and must be removed afterwards.
mkdir "$TMP/t"
TMPDIR=$TMP/t "$LISA" bench vision --clip tiny --sam tiny --iters 1 --batch 2 --prompts 3 --json \
    >"$TMP/out" 2>"$TMP/err" || fail "bench vision (tiny) failed: $(cat "$TMP/err")"
[ "$(grep -c '^{' "$TMP/out")" -eq 3 ] || fail "expected 3 JSON lines, got: $(cat "$TMP/out")"
for part in clip sam-encoder sam-decoder; do
    line=$(grep "\"part\":\"$part\"" "$TMP/out")
    [ -n "$line" ] || { fail "no $part line"; continue; }
    for k in '"engine":"lisa"' '"device":"cpu"' '"dtype":"fp32"' '"batch":' '"iters":1'; do
        echo "$line" | grep -qF "$k" || fail "$part line lacks $k: $line"
    done
    case $part in
    sam-decoder) keys='"ms_per_mask": "prompts":3 "ms_per_call":' ;;
    clip) keys='"ms_per_image": "model":"clip-tiny" "batch":2' ;;
    *) keys='"ms_per_image": "model":"sam-tiny" "batch":2 "images_per_call":2' ;;
    esac
    for k in $keys; do echo "$line" | grep -qF "$k" || fail "$part line lacks $k: $line"; done
done
[ -z "$(ls -A "$TMP/t")" ] || fail "temporary files left in TMPDIR: $(ls -A "$TMP/t")"

# one part only, table output
"$LISA" bench vision --clip none --sam tiny --iters 1 >"$TMP/out" 2>"$TMP/err" ||
    fail "bench vision --clip none failed: $(cat "$TMP/err")"
grep -q 'sam-decoder' "$TMP/out" || fail "table lacks the decoder row: $(cat "$TMP/out")"
grep -q 'clip-' "$TMP/out" && fail "--clip none still ran CLIP"

# bench llm on the small config
"$LISA" bench llm --config "$ROOT/configs/llama-bench-small.json" --prompt-len 8 --batches 1 \
    --new-tokens 2 --json >"$TMP/out" 2>"$TMP/err" || fail "bench llm failed: $(cat "$TMP/err")"
grep -q '"prefill_tok_s":' "$TMP/out" || fail "bench llm output: $(cat "$TMP/out")"
grep -q '"cpu_kernels":"[a-z0-9]' "$TMP/out" || fail "bench llm names no cpu kernels: $(cat "$TMP/out")"

# usage errors
expect_usage() {
    "$LISA" bench "$@" >/dev/null 2>"$TMP/err"
    rc=$?
    [ $rc -eq 2 ] || fail "bench $*: exit status $rc, expected 2"
    [ -s "$TMP/err" ] || fail "bench $*: no message on stderr"
}
expect_usage vision --sam vit_x
expect_usage vision --clip l15
expect_usage vision --batch 0
expect_usage vision --iters abc
expect_usage vision --dtype fp64
expect_usage vision --bogus
expect_usage vision --device tpu
expect_usage llm --config "$ROOT/configs/llama-bench-small.json" --bogus
expect_usage frobnicate

if [ $fails -ne 0 ]; then echo "$fails failure(s)" >&2; exit 1; fi
echo "bench.sh: all checks passed"
