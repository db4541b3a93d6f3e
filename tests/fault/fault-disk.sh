#!/bin/sh
# fault-disk.sh: output disk full, as RLIMIT_FSIZE (prlimit --fsize; SIGXFSZ
# ignored, so a write past the limit fails with EFBIG as a full disk fails
# with ENOSPC) on the tiny model, no fault injection needed:
#   lisa segment --out with every file capped at LIMIT bytes: exit 1, not a
#     signal; stderr names each file it could not write with the reason
#     ("File too large"), for every request (it carries on with the
#     others); no partial result.json or PNG is left behind; uncapped, the
#     same run exits 0 with every output (the check can fail);
#   lisa worker whose log file is capped: it keeps serving (every job done);
#   lisa result --out capped: exit 1 naming the files; uncapped: exit 0 and
#     the same files as lisa segment's (same_results).
# Usage: sh fault-disk.sh LISA_BIN FIXTURES_DIR
set -u
LISA=$1
FIX=$(cd "$2" && pwd)
TMP=$(mktemp -d)
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../queue/redis-env.sh"
trap 'redis_cleanup; rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
LIMIT=300
MODEL="$FIX/lisa-tiny/model"
ENG="--threads 1 --batch 2 --token-budget 64"
# capped CMD...: runs CMD with every file it writes capped at LIMIT bytes;
# stderr goes through a pipe (the cap would cut a log file too)
capped() {
    (trap '' XFSZ; prlimit --fsize=$LIMIT "$@" 2>&1; echo "rc=$?") | cat
}

# three requests with masks (two images) and one generation
cat >"$TMP/m.jsonl" <<EOF
{"custom_id": "a", "image": "$FIX/images/chelsea.png", "prompt": "Segment the cat.", "answer": "Sure, it is [SEG]."}
{"custom_id": "b", "image": "$FIX/images/tiny.png", "prompt": "Segment it.", "answer": "[SEG] and [SEG]."}
{"custom_id": "c", "image": "$FIX/images/tiny.png", "prompt": "What is it?", "max_new_tokens": 3}
EOF

# --- lisa segment ---
capped "$LISA" segment --model "$MODEL" $ENG --manifest "$TMP/m.jsonl" --out "$TMP/seg-full" \
    >"$TMP/seg-full.err"
grep -q '^rc=1$' "$TMP/seg-full.err" || { fail "segment on a full disk: $(tail -1 "$TMP/seg-full.err"), want rc=1"; cat "$TMP/seg-full.err" >&2; }
for id in a b c; do
    grep -q "^lisa segment: $id: .*$TMP/seg-full/.*File too large" "$TMP/seg-full.err" ||
        fail "segment: no error naming a file of $id and why"
done
grep -q "cannot write $TMP/seg-full/results.jsonl: File too large" "$TMP/seg-full.err" ||
    fail "segment: results.jsonl's failure not reported"
for f in "$TMP"/seg-full/*/result.json "$TMP"/seg-full/*/*.png; do
    [ -e "$f" ] || continue
    case $f in
    *.json) python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$f" 2>/dev/null ||
        fail "partial $f left behind" ;;
    *.png) [ "$(head -c 8 "$f" | od -An -tx1 | tr -d ' ')" = 89504e470d0a1a0a ] &&
        [ "$(tail -c 8 "$f" | od -An -tx1 | tr -d ' ')" = 49454e44ae426082 ] ||
        fail "partial $f left behind" ;;
    esac
done
"$LISA" segment --model "$MODEL" $ENG --manifest "$TMP/m.jsonl" --out "$TMP/seg" \
    >"$TMP/seg.err" 2>&1 || { fail "segment uncapped: exit $?"; cat "$TMP/seg.err" >&2; }
for f in a/result.json a/mask_0.png a/overlay.png b/mask_1.png c/answer.txt results.jsonl; do
    [ -s "$TMP/seg/$f" ] || fail "segment uncapped: no $f"
done

# --- lisa worker with its log capped, lisa result capped ---
mkdir "$TMP/redis"
redis_start "$TMP/redis" || exit 1
bid=$("$LISA" submit --manifest "$TMP/m.jsonl" --parsable 2>"$TMP/submit.err")
case $bid in B[0-9]*) ;; *) fail "submit printed '$bid'"; cat "$TMP/submit.err" >&2 ;; esac
(trap '' XFSZ; exec prlimit --fsize=$LIMIT "$LISA" worker --model "$MODEL" $ENG --name wfull \
    --exit-when-empty >"$TMP/worker.log" 2>&1)
rc=$?
[ $rc -eq 0 ] || fail "worker with a full log disk: exit $rc"
[ "$(wc -c <"$TMP/worker.log")" -le $LIMIT ] || fail "the worker's log was not capped (test broken)"
"$LISA" wait "$bid" --timeout 30 >"$TMP/wait.txt" 2>&1 ||
    { fail "jobs not all done after the worker: exit $?"; cat "$TMP/wait.txt" >&2; }

capped "$LISA" result "$bid" --out "$TMP/res-full" >"$TMP/res-full.err"
grep -q '^rc=1$' "$TMP/res-full.err" || { fail "result on a full disk: $(tail -1 "$TMP/res-full.err"), want rc=1"; cat "$TMP/res-full.err" >&2; }
grep -q "^lisa result: a: .*$TMP/res-full/a/.*File too large" "$TMP/res-full.err" ||
    { fail "result: no error naming a's file and why"; cat "$TMP/res-full.err" >&2; }
grep -q "cannot write $TMP/res-full/results.jsonl: File too large" "$TMP/res-full.err" ||
    fail "result: results.jsonl's failure not reported"
"$LISA" result "$bid" --out "$TMP/res" >"$TMP/res.err" 2>&1 ||
    { fail "result uncapped: exit $?"; cat "$TMP/res.err" >&2; }
same_results "$TMP/seg" "$TMP/res" || fail "lisa result's files differ from lisa segment's"

[ $fails -eq 0 ] && echo "fault-disk: ok" || echo "fault-disk: $fails failures" >&2
[ $fails -eq 0 ]
