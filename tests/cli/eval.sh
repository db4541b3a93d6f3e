#!/bin/sh
# eval.sh: end-to-end checks of `lisa eval` on tests/fixtures/reasonseg.
# Usage: sh eval.sh LISA_BINARY FIXTURES_DIR
# Checks that the printed gIoU and cIoU are the ones gen_reasonseg.py
# computed with LISA's logic (OpenCV 4.8 by default, 4.6 with --opencv 4.6),
# that the CSV has a header and one row per image, that --limit works, and
# that failures are handled: a missing prediction and a corrupt annotation
# are reported, left out of the metrics, and give exit 1; a missing data
# folder exits 1 with a message; bad usage exits 2. Per-image numbers and
# the GT rasterization are checked by tests/unit/test-reasonseg.c.
set -u
LISA=$1
FIX=$2/reasonseg
TMP=$(mktemp -d "${TMPDIR:-/tmp}/lisa-cli-eval.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT INT TERM
fails=0

fail() {
    echo "FAIL: $*" >&2
    fails=$((fails + 1))
}

want() { # want CV KEY: the expected value line from expected-CV.txt
    grep "^$2 " "$FIX/expected-$1.txt" | cut -d' ' -f2
}

for cv in 4.8 4.6; do
    "$LISA" eval --data "$FIX/data" --predictions "$FIX/predictions" --opencv "$cv" \
        --csv "$TMP/rows-$cv.csv" >"$TMP/out" 2>"$TMP/err" || fail "opencv $cv: exit $?: $(cat "$TMP/err")"
    for key in gIoU cIoU; do
        got=$(grep "^$key " "$TMP/out" | cut -d' ' -f2)
        exp=$(want "$cv" "$key")
        [ -n "$exp" ] || fail "no $key in expected-$cv.txt"
        [ "$got" = "$exp" ] || fail "opencv $cv: $key $got, want $exp"
    done
    grep -q "^images 8 scored 8 failed 0$" "$TMP/out" || fail "opencv $cv: count line: $(head -1 "$TMP/out")"
    rows=$(($(wc -l <"$TMP/rows-$cv.csv") - 1))
    [ "$rows" -eq 8 ] || fail "opencv $cv: CSV has $rows rows, want 8"
    head -1 "$TMP/rows-$cv.csv" | grep -q "^image,intersection,union,iou,prompt,error$" ||
        fail "CSV header: $(head -1 "$TMP/rows-$cv.csv")"
done
# The default is LISA's pinned OpenCV (4.8).
"$LISA" eval --data "$FIX/data" --predictions "$FIX/predictions" >"$TMP/out" 2>/dev/null
[ "$(grep '^gIoU ' "$TMP/out" | cut -d' ' -f2)" = "$(want 4.8 gIoU)" ] || fail "default is not 4.8"
# Each CSV row agrees with expected-4.8.txt.
grep -v '^#' "$FIX/expected-4.8.txt" | grep '^img' | while read -r stem w h i u iou; do
    grep -q "^$stem,$i,$u,$iou,\"" "$TMP/rows-4.8.csv" || echo "$stem"
done >"$TMP/badrows"
[ -s "$TMP/badrows" ] && fail "CSV rows differ for: $(cat "$TMP/badrows")"
grep -q '"What is the red cup in this image? Please output segmentation mask.",$' "$TMP/rows-4.8.csv" ||
    fail "CSV prompt column"

# --limit
"$LISA" eval --data "$FIX/data" --predictions "$FIX/predictions" --limit 3 --csv "$TMP/l.csv" >"$TMP/out" ||
    fail "--limit 3: exit $?"
grep -q "^images 3 scored 3 failed 0$" "$TMP/out" || fail "--limit 3: $(head -1 "$TMP/out")"
[ "$(($(wc -l <"$TMP/l.csv") - 1))" -eq 3 ] || fail "--limit 3: CSV rows"

# Failures: a missing prediction, a corrupt annotation.
mkdir "$TMP/data" "$TMP/pred"
cp "$FIX"/data/* "$TMP/data/" && cp "$FIX"/predictions/* "$TMP/pred/"
rm "$TMP/pred/img02.png"
printf '{"text": ["x"], "shapes": [' >"$TMP/data/img05.json"
"$LISA" eval --data "$TMP/data" --predictions "$TMP/pred" --csv "$TMP/f.csv" >"$TMP/out" 2>"$TMP/err"
rc=$?
[ $rc -eq 1 ] || fail "failed images: exit $rc, want 1"
grep -q "^images 8 scored 6 failed 2$" "$TMP/out" || fail "failed images: $(head -1 "$TMP/out")"
grep -q "img02: missing prediction" "$TMP/err" || fail "missing prediction message: $(cat "$TMP/err")"
grep -q "img05: .*img05.json: malformed JSON" "$TMP/err" || fail "corrupt JSON message: $(cat "$TMP/err")"
grep -q '^gIoU 0\.' "$TMP/out" || fail "no gIoU over the scored images"
[ "$(($(wc -l <"$TMP/f.csv") - 1))" -eq 8 ] || fail "failed images: CSV rows"
grep -q '^img02,,,,".*","missing prediction' "$TMP/f.csv" || fail "failed row in CSV: $(grep img02 "$TMP/f.csv")"

# A missing data folder: exit 1 with a message naming it.
"$LISA" eval --data "$TMP/no-such-dir" --predictions "$FIX/predictions" >/dev/null 2>"$TMP/err"
rc=$?
[ $rc -eq 1 ] || fail "missing data folder: exit $rc, want 1"
grep -q "no-such-dir" "$TMP/err" || fail "missing data folder message: $(cat "$TMP/err")"
mkdir "$TMP/empty"
"$LISA" eval --data "$TMP/empty" --predictions "$FIX/predictions" >/dev/null 2>"$TMP/err"
[ $? -eq 1 ] || fail "empty data folder: want exit 1"
grep -q "no \*.jpg" "$TMP/err" || fail "empty folder message: $(cat "$TMP/err")"

# Usage errors: exit 2.
"$LISA" eval --data "$FIX/data" 2>/dev/null
[ $? -eq 2 ] || fail "no --predictions: want exit 2"
"$LISA" eval --data "$FIX/data" --predictions "$FIX/predictions" --opencv 3.4 2>/dev/null
[ $? -eq 2 ] || fail "bad --opencv: want exit 2"
"$LISA" eval --data "$FIX/data" --predictions "$FIX/predictions" --limit x 2>/dev/null
[ $? -eq 2 ] || fail "bad --limit: want exit 2"
# --model with a folder that is no model: a clear error, exit 1 (the model
# mode itself is exercised by tests/cli/segment.sh on the tiny LISA)
"$LISA" eval --data "$FIX/data" --model "$TMP" 2>"$TMP/err"
[ $? -eq 1 ] || fail "--model on a non-model folder: want exit 1"
grep -q "tokenizer.model" "$TMP/err" || fail "--model message: $(cat "$TMP/err")"
"$LISA" eval --bogus 2>/dev/null
[ $? -eq 2 ] || fail "unknown option: want exit 2"
"$LISA" eval --help | grep -q -- "--predictions" || fail "--help lacks --predictions"

if [ $fails -ne 0 ]; then
    echo "eval.sh: $fails failures" >&2
    exit 1
fi
echo "eval.sh: ok"
