#!/bin/sh
# `lisa submit` and `lisa result` with no Redis: --help names every option;
# a bad manifest is refused whole before any connection, each problem as
# "FILE:LINE: reason" (malformed lines, missing, unreadable, non-image and
# oversized files, empty and non-UTF-8 prompts, duplicate custom_ids; the
# first 20, then a count), exit 2; a valid one with --dry-run prints what
# would be queued (exit 0, also --json, --parsable, --by-path and a single
# image); a real submit to a server that is not there (port 1) is exit 69
# with "cannot reach Redis"; usage errors are exit 2. Needs no server and
# no model.
# Usage: sh submit-validate.sh LISA_BIN FIXTURES_DIR
set -u
LISA=$1
IMG=$(cd "$2/images" && pwd)
TMP=$(mktemp -d)
trap 'chmod 644 "$TMP/locked.png" 2>/dev/null; rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
DOWN=redis://127.0.0.1:1
unset LISA_REDIS LISA_REDIS_PASSWORD_FILE LISA_QUEUE_PREFIX

# expect CODE DESCRIPTION -- ARGS...: the exit status; stdout, stderr in $TMP
expect() {
    code=$1 what=$2
    shift 3
    "$LISA" "$@" >"$TMP/out" 2>"$TMP/err"
    rc=$?
    [ "$rc" = "$code" ] || fail "$what: lisa $*: exit $rc, not $code: $(cat "$TMP/err")"
}
says() { # FILE TEXT DESCRIPTION
    grep -qF -- "$2" "$1" || { fail "$3: no '$2' in:"; cat "$1" >&2; }
}

expect 0 "submit --help" -- submit --help
for opt in --prompt --answer --custom-id --manifest --max-new-tokens --name --priority \
    --max-attempts --result-ttl --batch --by-path --max-image-bytes --dry-run --wait --timeout \
    --parsable --json --redis --redis-password-file --prefix --help; do
    grep -qF -- "$opt" "$TMP/out" || fail "submit --help does not name $opt"
done
expect 0 "result --help" -- result --help
for opt in --out --json --no-overlay --redis --redis-password-file --prefix --help; do
    grep -qF -- "$opt" "$TMP/out" || fail "result --help does not name $opt"
done
"$LISA" --help >"$TMP/out" 2>&1 || fail "lisa --help"
for cmd in submit result; do
    grep -q "^  $cmd " "$TMP/out" || fail "lisa --help does not list $cmd"
done

# a manifest with every kind of problem: all reported, by line, nothing queued
printf 'not an image' >"$TMP/corrupt.jpg"
cp "$IMG/tall.png" "$TMP/locked.png"
chmod 000 "$TMP/locked.png"
mkdir "$TMP/adir"
cat >"$TMP/bad.jsonl" <<JOBS
{"custom_id": "ok-1", "image": "$IMG/chelsea.png", "prompt": "Segment the cat."}
{"custom_id": "missing", "image": "nope.jpg", "prompt": "x"}
this line is not json

{"custom_id": "corrupt", "image": "corrupt.jpg", "prompt": "x"}
{"custom_id": "ok-1", "image": "$IMG/tall.png", "prompt": "again"}
{"custom_id": "empty", "image": "$IMG/tall.png", "prompt": ""}
{"custom_id": "noprompt", "image": "$IMG/tall.png"}
{"custom_id": "big", "image": "$IMG/big.jpg", "prompt": "x"}
{"custom_id": "dir", "image": "adir", "prompt": "x"}
JOBS
printf '{"custom_id": "latin1", "image": "%s/tall.png", "prompt": "caf\351"}\n' "$IMG" >>"$TMP/bad.jsonl"
printf '{"custom_id": "locked", "image": "locked.png", "prompt": "x"}\n' >>"$TMP/bad.jsonl"
expect 2 "bad manifest" -- submit --manifest "$TMP/bad.jsonl" --max-image-bytes 150000 --redis $DOWN
M=$TMP/bad.jsonl
says "$TMP/err" "$M:2: image $TMP/nope.jpg: no such file" "missing image"
says "$TMP/err" "$M:3: not a JSON object" "malformed line"
says "$TMP/err" "$M:5: image $TMP/corrupt.jpg is not a JPEG or PNG file" "not an image"
says "$TMP/err" "$M:6: duplicate custom_id \"ok-1\" (first on line 1)" "duplicate custom_id"
says "$TMP/err" "$M:7: empty prompt" "empty prompt"
says "$TMP/err" "$M:8: \"prompt\" missing" "no prompt"
says "$TMP/err" "$M:9: image $IMG/big.jpg is 181716 bytes, over --max-image-bytes 150000" "over the cap"
says "$TMP/err" "$M:10: image $TMP/adir is not a regular file" "a folder"
says "$TMP/err" "$M:11: prompt is not UTF-8" "latin-1 prompt"
if [ "$(id -u)" != 0 ]; then
    says "$TMP/err" "$M:12: cannot read image $TMP/locked.png" "unreadable image"
fi
says "$TMP/err" "nothing was queued" "summary"
grep -q "^$M:1:" "$TMP/err" && fail "the good line 1 was reported"
grep -q "cannot reach Redis" "$TMP/err" && fail "a bad manifest connected to Redis"
[ -s "$TMP/out" ] && fail "a bad manifest printed on stdout: $(cat "$TMP/out")"

# more than 20 bad lines: the first 20, then how many more
awk 'BEGIN { for (i = 1; i <= 25; i++) printf "{\"custom_id\": \"m%d\", \"image\": \"no%d.png\", \"prompt\": \"x\"}\n", i, i }' \
    >"$TMP/many.jsonl"
expect 2 "25 bad lines" -- submit --manifest "$TMP/many.jsonl" --dry-run
[ "$(grep -c "^$TMP/many.jsonl:[0-9]*: " "$TMP/err")" -eq 20 ] || fail "25 bad lines: not 20 printed"
says "$TMP/err" "and 5 more bad lines" "the count of the rest"
says "$TMP/err" "25 of 25 lines" "the total"

# an empty manifest
: >"$TMP/empty.jsonl"
expect 2 "empty manifest" -- submit --manifest "$TMP/empty.jsonl" --dry-run
says "$TMP/err" "has no jobs" "empty manifest"
expect 2 "missing manifest" -- submit --manifest "$TMP/nope.jsonl" --dry-run
says "$TMP/err" "cannot open manifest" "missing manifest"

# a valid manifest, dry run: what would be queued, no Redis needed
cp "$IMG/tall.png" "$TMP/rel.png"
cat >"$TMP/good.jsonl" <<JOBS
{"custom_id": "g1", "image": "$IMG/chelsea.png", "prompt": "Segment the cat."}
{"custom_id": 7, "image": "rel.png", "prompt": "What is it?", "answer": "[SEG]."}

{"image": "$IMG/coffee.jpg", "prompt": "The cup.", "max_new_tokens": 3}
JOBS
expect 0 "dry run" -- submit --manifest "$TMP/good.jsonl" --dry-run --redis $DOWN
says "$TMP/out" "would queue g1: $IMG/chelsea.png (inline, " "dry run g1"
says "$TMP/out" "would queue 7: $TMP/rel.png (inline, 81744 bytes)" "dry run relative image"
says "$TMP/out" "would queue line4: $IMG/coffee.jpg" "dry run default custom_id"
says "$TMP/out" "Dry run: 3 jobs valid" "dry run summary"
says "$TMP/out" "nothing was queued" "dry run summary"
[ -s "$TMP/err" ] && fail "dry run wrote to stderr: $(cat "$TMP/err")"
expect 0 "dry run --by-path" -- submit --manifest "$TMP/good.jsonl" --dry-run --by-path
says "$TMP/out" "would queue 7: $TMP/rel.png (by path, 81744 bytes)" "dry run by path"
expect 0 "dry run --json" -- submit --manifest "$TMP/good.jsonl" --dry-run --json
says "$TMP/out" '"dry_run":true' "dry run json"
says "$TMP/out" '"jobs":3' "dry run json jobs"
[ "$(wc -l <"$TMP/out")" -eq 1 ] || fail "dry run --json: not one line"
expect 0 "dry run --parsable" -- submit --manifest "$TMP/good.jsonl" --dry-run --parsable
[ "$(cat "$TMP/out")" = 3 ] || fail "dry run --parsable printed '$(cat "$TMP/out")', want 3"
expect 0 "single dry run" -- submit "$IMG/tall.png" --prompt "What is it?" --custom-id one --dry-run
says "$TMP/out" "would queue one: $IMG/tall.png" "single dry run"
says "$TMP/out" "Dry run: 1 job valid" "single dry run summary"
expect 2 "single image missing" -- submit "$TMP/nope.png" --prompt x --dry-run
says "$TMP/err" "lisa submit: image $TMP/nope.png: no such file" "single image missing"
expect 2 "single empty prompt" -- submit "$IMG/tall.png" --prompt "" --dry-run
says "$TMP/err" "empty prompt" "single empty prompt"

# a valid submit with nothing listening: 69, after checking
expect 69 "unreachable" -- submit --manifest "$TMP/good.jsonl" --redis $DOWN
says "$TMP/err" "lisa submit: cannot reach Redis at 127.0.0.1:1: " "unreachable"
LISA_REDIS=$DOWN expect 69 "unreachable (LISA_REDIS)" -- submit "$IMG/tall.png" --prompt x
expect 69 "result unreachable" -- result B1 --out "$TMP/res" --redis $DOWN
says "$TMP/err" "lisa result: cannot reach Redis at 127.0.0.1:1: " "result unreachable"

# usage errors, before connecting
expect 2 "nothing to submit" -- submit --redis $DOWN
expect 2 "image without prompt" -- submit "$IMG/tall.png" --redis $DOWN
expect 2 "image and manifest" -- submit "$IMG/tall.png" --prompt x --manifest "$TMP/good.jsonl"
expect 2 "two images" -- submit "$IMG/tall.png" "$IMG/tiny.png" --prompt x
expect 2 "manifest with --prompt" -- submit --manifest "$TMP/good.jsonl" --prompt x
expect 2 "bad priority" -- submit "$IMG/tall.png" --prompt x --priority urgent
says "$TMP/err" "--priority expects high, normal or low" "bad priority"
expect 2 "bad ttl" -- submit "$IMG/tall.png" --prompt x --result-ttl soon
expect 2 "timeout without wait" -- submit "$IMG/tall.png" --prompt x --timeout 10
expect 2 "bad timeout" -- submit "$IMG/tall.png" --prompt x --wait --timeout later
expect 2 "zero attempts" -- submit "$IMG/tall.png" --prompt x --max-attempts 0
expect 2 "batch not a batch id" -- submit "$IMG/tall.png" --prompt x --batch B3_1
expect 2 "wait with dry run" -- submit "$IMG/tall.png" --prompt x --wait --dry-run
expect 2 "unknown option" -- submit "$IMG/tall.png" --prompt x --frobnicate
expect 2 "result without id" -- result --out "$TMP/res" --redis $DOWN
expect 2 "result with two ids" -- result B1 B2 --redis $DOWN

[ $fails -eq 0 ] && echo "submit-validate: every problem reported by line, dry runs, exit codes"
[ $fails -eq 0 ]
