#!/bin/sh
# `lisa segment` and `lisa eval --model` end to end on the tiny LISA fixture
# (tests/fixtures/lisa-tiny/model, random weights trained to emit [SEG]):
# outputs written where documented, a manifest whose bad requests fail alone
# with their reasons while the good ones finish, and usage errors.
# Usage: sh segment.sh LISA_BIN FIXTURES_DIR
set -u
LISA=$1
FIX=$(cd "$2" && pwd)
MODEL=$FIX/lisa-tiny/model
IMG=$FIX/images
TMP=$(mktemp -d)
trap '[ $fails -ne 0 ] && cut -c1-200 "$TMP/many/results.jsonl" >&2; rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

"$LISA" segment --help >/dev/null || fail "--help"
"$LISA" segment --model "$MODEL" --image "$IMG/tall.png" >/dev/null 2>&1
[ $? -eq 2 ] || fail "missing --prompt is a usage error"

# one image
"$LISA" segment --model "$MODEL" --image "$IMG/astronaut.jpg" --prompt "Where is the person?" \
    --out "$TMP/one" >"$TMP/out" 2>"$TMP/err" || fail "single run: $(cat "$TMP/err")"
for f in answer.txt mask_0.png overlay.png result.json; do
    [ -s "$TMP/one/0/$f" ] || fail "single run: $f missing"
done
grep -q '"status":[[:space:]]*"ok"' "$TMP/one/0/result.json" || fail "result.json status"
grep -q '"counts"' "$TMP/one/0/result.json" || fail "result.json has no RLE"
grep -q '"bbox"' "$TMP/one/0/result.json" || fail "result.json has no bbox"
[ "$(wc -l <"$TMP/one/results.jsonl")" -eq 1 ] || fail "results.jsonl lines"

# a manifest with good and bad requests
printf 'not an image' >"$TMP/corrupt.jpg"
head -c 2000 "$IMG/coffee.jpg" >"$TMP/truncated.jpg"
long=$(awk 'BEGIN { for (i = 0; i < 600; i++) printf "word%d ", i }')
cat >"$TMP/jobs.jsonl" <<JOBS
{"custom_id": "good-1", "image": "$IMG/chelsea.png", "prompt": "Segment the cat."}
{"custom_id": "missing", "image": "$TMP/nope.jpg", "prompt": "x"}
{"custom_id": "corrupt", "image": "corrupt.jpg", "prompt": "x"}
{"custom_id": "truncated", "image": "truncated.jpg", "prompt": "x"}
{"custom_id": "empty", "image": "$IMG/tall.png", "prompt": ""}
{"custom_id": "long", "image": "$IMG/tall.png", "prompt": "$long"}
this line is not json
{"custom_id": "noprompt", "image": "$IMG/tall.png"}
{"custom_id": "good-2", "image": "$IMG/tall.png", "prompt": "What is it?", "answer": "[SEG] and [SEG]."}
JOBS
"$LISA" segment --model "$MODEL" --manifest "$TMP/jobs.jsonl" --out "$TMP/many" --batch 3 \
    >"$TMP/out" 2>"$TMP/err"
rc=$?
[ $rc -eq 1 ] || fail "manifest with failures: exit $rc, expected 1"
[ "$(wc -l <"$TMP/many/results.jsonl")" -eq 9 ] || fail "results.jsonl should have 9 lines"
for id in good-1 good-2; do
    grep -q "\"custom_id\":\"$id\",.*\"status\":\"ok\"" "$TMP/many/results.jsonl" || fail "$id not ok"
    [ -s "$TMP/many/$id/mask_0.png" ] || fail "$id: mask_0.png missing"
done
[ -s "$TMP/many/good-2/mask_1.png" ] || fail "good-2: two [SEG]s give two masks"
check_failed() { # id pattern
    grep "\"custom_id\":\"$1\"" "$TMP/many/results.jsonl" | grep '"status":"failed"' | grep -q -- "$2" ||
        fail "$1: expected a failure mentioning '$2': $(grep "\"custom_id\":\"$1\"" "$TMP/many/results.jsonl")"
}
check_failed missing "nope.jpg"
check_failed corrupt "corrupt.jpg"
check_failed truncated "truncated.jpg"
check_failed empty "empty prompt"
check_failed long "prompt too long"
check_failed line7 "not a JSON object"
check_failed noprompt "prompt"

# configurable hostile-image limits: a request over them fails with the reason
"$LISA" segment --model "$MODEL" --image "$IMG/astronaut.jpg" --prompt x --max-image-pixels 1000 \
    >/dev/null 2>"$TMP/err"
[ $? -eq 1 ] && grep -q "over the limit" "$TMP/err" || fail "--max-image-pixels: $(cat "$TMP/err")"
"$LISA" segment --model "$MODEL" --image "$IMG/astronaut.jpg" --prompt x --max-image-bytes 100 \
    >/dev/null 2>"$TMP/err"
[ $? -eq 1 ] && grep -q "over the limit" "$TMP/err" || fail "--max-image-bytes: $(cat "$TMP/err")"

# teacher-forced evaluation on the ReasonSeg fixture folder
"$LISA" eval --data "$FIX/reasonseg/data" --model "$MODEL" --csv "$TMP/eval.csv" >"$TMP/out" 2>"$TMP/err" ||
    fail "eval --model: $(cat "$TMP/err")"
grep -q "scored 8 failed 0" "$TMP/out" || fail "eval --model: $(cat "$TMP/out")"
[ "$(wc -l <"$TMP/eval.csv")" -eq 9 ] || fail "eval csv rows"

"$LISA" segment --model "$TMP/nomodel" --image "$IMG/tall.png" --prompt x >/dev/null 2>"$TMP/err"
[ $? -eq 1 ] && grep -q "nomodel" "$TMP/err" || fail "missing model dir: $(cat "$TMP/err")"

if [ $fails -ne 0 ]; then echo "$fails failure(s)" >&2; exit 1; fi
echo "segment.sh: all checks passed"
