#!/bin/sh
# `lisa embed-image`: SAM's image embedding of a fixture image through the
# real binary equals the reference's checksums (tests/fixtures/lisa-tiny/
# expected/cases.json, segment-anything fp32), and bad input fails cleanly.
# Usage: sh embed.sh LISA_BIN FIXTURES_DIR
set -u
LISA=$1
FIX=$2
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

"$LISA" embed-image --help >/dev/null || fail "--help"
out=$("$LISA" embed-image --sam "$FIX/lisa-tiny/model" --image "$FIX/images/astronaut.jpg" --json \
    --out "$TMP/emb.bin") || fail "embed-image failed"
echo "$out" | grep -q '"shape": \[64, 64, 32\]' || fail "shape: $out"
[ "$(wc -c <"$TMP/emb.bin")" -eq $((64 * 64 * 32 * 4)) ] || fail "--out size"
# reference checksums of astronaut.jpg's embedding, from the fixture
ref_abs=$(tr -d '\n ' <"$FIX/lisa-tiny/expected/cases.json" |
    sed 's/.*"file":"astronaut.jpg"[^}]*"sam_embedding_abs_sum":\([-0-9.e]*\).*/\1/')
ref_first=$(tr -d '\n ' <"$FIX/lisa-tiny/expected/cases.json" |
    sed 's/.*"file":"astronaut.jpg"[^}]*"sam_embedding_first8":\[\([-0-9.e]*\),.*/\1/')
got_abs=$(echo "$out" | sed 's/.*"abs_sum": \([-0-9.e+]*\).*/\1/')
got_first=$(echo "$out" | sed 's/.*"first": \[\([-0-9.e+]*\),.*/\1/')
awk -v a="$got_abs" -v b="$ref_abs" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-5 * b) }' ||
    fail "abs_sum $got_abs vs reference $ref_abs"
awk -v a="$got_first" -v b="$ref_first" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-4) }' ||
    fail "first value $got_first vs reference $ref_first"

printf 'garbage' >"$TMP/bad.jpg"
"$LISA" embed-image --sam "$FIX/lisa-tiny/model" --image "$TMP/bad.jpg" 2>"$TMP/err"
[ $? -eq 1 ] && grep -q "bad.jpg" "$TMP/err" || fail "corrupt image: $(cat "$TMP/err")"
"$LISA" embed-image --sam "$TMP" --image "$FIX/images/astronaut.jpg" 2>"$TMP/err"
[ $? -eq 1 ] && [ -s "$TMP/err" ] || fail "no SAM weights: $(cat "$TMP/err")"
"$LISA" embed-image --image x 2>/dev/null
[ $? -eq 2 ] || fail "missing --sam is a usage error"

if [ $fails -ne 0 ]; then echo "$fails failure(s)" >&2; exit 1; fi
echo "embed.sh: all checks passed"
