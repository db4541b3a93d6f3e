#!/bin/sh
# `lisa bench engine` through the real binary on the tiny LISA: one JSON
# line per mode (static, continuous) with the expected keys (6 requests of 3
# tokens, the 4th 10x longer: 45 tokens) and no failed
# request; the table form prints the ratio line; bad options are usage
# errors (exit status 2).
# Usage: sh bench-engine.sh LISA_BIN FIXTURES_DIR
set -u
LISA=$1
FIX=$(cd "$2" && pwd)
MODEL=$FIX/lisa-tiny/model
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

"$LISA" bench engine --help >/dev/null || fail "bench engine --help exit status"
"$LISA" bench engine --model "$MODEL" >/dev/null 2>&1
[ $? -eq 2 ] || fail "missing --image is a usage error"
"$LISA" bench engine --model "$MODEL" --image "$FIX/images/tiny.jpg" --requests 0 >/dev/null 2>&1
[ $? -eq 2 ] || fail "--requests 0 is a usage error"

"$LISA" bench engine --model "$MODEL" --image "$FIX/images/tiny.jpg" --requests 6 --new-tokens 3 \
    --batch 3 --threads 1 --json >"$TMP/out" 2>"$TMP/err" || fail "bench engine: $(cat "$TMP/err")"
[ "$(grep -c '^{' "$TMP/out")" -eq 2 ] || fail "expected 2 JSON lines: $(cat "$TMP/out")"
for mode in static continuous; do
    line=$(grep "\"mode\":\"$mode\"" "$TMP/out")
    [ -n "$line" ] || { fail "no $mode line"; continue; }
    for k in '"requests":6' '"slots":3' '"requests_per_s":' '"p50_ms":' '"p95_ms":' '"failed":0' \
        '"tokens":45'; do
        echo "$line" | grep -qF "$k" || fail "$mode line lacks $k: $line"
    done
done
"$LISA" bench engine --model "$MODEL" --image "$FIX/images/tiny.jpg" --requests 4 --new-tokens 2 \
    --threads 1 >"$TMP/out" 2>"$TMP/err" || fail "bench engine table: $(cat "$TMP/err")"
grep -q "^continuous / static: " "$TMP/out" || fail "no ratio line: $(cat "$TMP/out")"
exit $fails
