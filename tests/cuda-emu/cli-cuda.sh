#!/bin/sh
# `lisa generate --device cuda` through the real binary built on the CUDA
# emulator (LISA_CUDA=EMU): the same greedy tokens as the CPU in fp32, a
# bf16 run that starts with the same token, the fallback when graph capture
# fails (a warning, same tokens), and the start-up errors a user
# sees on a GPU: too little device memory (with the numbers) and a device
# index that does not exist. Registered only in emulator builds.
# Usage: sh cli-cuda.sh LISA_BIN FIXTURES_DIR
set -u
LISA=$1
FIX=$2
MODEL=$FIX/llama-gqa
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
ids() { sed -n 's/.*"output_ids": *\[\([^]]*\)\].*/\1/p' "$1" | tr -d ' '; }

P="A chat between a curious human and an artificial intelligence assistant."
"$LISA" generate --model "$MODEL" --prompt "$P" --max-new-tokens 16 --json >"$TMP/cpu" ||
    fail "cpu run"
"$LISA" generate --model "$MODEL" --prompt "$P" --max-new-tokens 16 --json --device cuda \
    --dtype fp32 >"$TMP/cuda" 2>"$TMP/err" || fail "cuda fp32 run: $(cat "$TMP/err")"
[ -n "$(ids "$TMP/cpu")" ] || fail "no output ids from the cpu run"
[ "$(ids "$TMP/cpu")" = "$(ids "$TMP/cuda")" ] ||
    fail "cuda fp32 tokens $(ids "$TMP/cuda") differ from cpu $(ids "$TMP/cpu")"
"$LISA" generate --model "$MODEL" --prompt "$P" --max-new-tokens 16 --json --device cuda:0 \
    --dtype bf16 >"$TMP/bf16" 2>"$TMP/err" || fail "cuda bf16 run: $(cat "$TMP/err")"
[ "$(ids "$TMP/cpu" | cut -d, -f1)" = "$(ids "$TMP/bf16" | cut -d, -f1)" ] ||
    fail "cuda bf16 first token differs: $(ids "$TMP/bf16") vs $(ids "$TMP/cpu")"

# a driver that refuses graph capture: a warning, then the same tokens op by op
CUEMU_CAPTURE_FAIL=1 "$LISA" generate --model "$MODEL" --prompt "$P" --max-new-tokens 16 --json \
    --device cuda --dtype fp32 >"$TMP/nograph" 2>"$TMP/err" || fail "capture refused: $(cat "$TMP/err")"
grep -q "recording a cuda graph failed, running op by op" "$TMP/err" ||
    fail "capture refused: no warning on stderr: $(cat "$TMP/err")"
[ "$(ids "$TMP/cpu")" = "$(ids "$TMP/nograph")" ] ||
    fail "capture refused: tokens $(ids "$TMP/nograph") differ from cpu $(ids "$TMP/cpu")"

# 1 MiB of device memory: a clear start-up error naming the request and what is free
CUEMU_DEVICE_BYTES=1048576 "$LISA" generate --model "$MODEL" --prompt "$P" --device cuda \
    >"$TMP/out" 2>"$TMP/err"
rc=$?
[ $rc -eq 1 ] || fail "out of device memory: exit status $rc, expected 1"
grep -q "cannot allocate .* bytes" "$TMP/err" && grep -q "GiB free of" "$TMP/err" ||
    fail "out of device memory: stderr lacks the numbers: $(cat "$TMP/err")"

"$LISA" generate --model "$MODEL" --prompt "$P" --device cuda:3 >"$TMP/out" 2>"$TMP/err"
rc=$?
[ $rc -ne 0 ] || fail "cuda:3 on a one-device machine succeeded"
grep -q "cuda:3 requested but 1 device" "$TMP/err" || fail "cuda:3: $(cat "$TMP/err")"

[ $fails -eq 0 ] && echo "cli-cuda: ok"
exit $((fails > 0))
