#!/bin/sh
# cluster-equal.sh: `lisa cluster` under a real mpirun gives what `lisa
# segment` gives on the same manifest: generated ids, answers, masks (RLE in
# results.jsonl and every mask_K.png / overlay.png file) and failures,
# byte for byte (fp32, CPU), for P = 1, 2 and 3 pipeline stages, several
# layer splits and M = 1..P+1 micro-batches in flight, with vision on its
# own rank and on the coordinator's. The manifest mixes shared images,
# teacher-forced answers with one and two [SEG]s, generation, a per-request
# max_new_tokens, and bad requests (missing, corrupt and truncated images,
# empty and too long prompts, a malformed line).
# Also: the statistics JSON names every stage; continuous batching across
# the pipeline (short requests submitted after a long one finish first).
# Usage: sh cluster-equal.sh LISA_BIN FIXTURES_DIR DEEPEN_MODEL_BIN
set -u
LISA=$1
FIX=$(cd "$2" && pwd)
DEEPEN=$3
IMG=$FIX/images
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/mpi-env.sh"
. "$HERE/jobs.sh"

# the tiny LISA with 4 LLM layers (copies of its 2), so 3 stages have work
"$DEEPEN" "$FIX/lisa-tiny/model" "$TMP/model" 4 || { echo "FAIL: deepen-model" >&2; exit 1; }
MODEL=$TMP/model

cluster_manifest "$TMP" "$IMG" >"$TMP/jobs.jsonl"
n_jobs=$(wc -l <"$TMP/jobs.jsonl")
[ "$n_jobs" -ge 32 ] || fail "manifest has $n_jobs requests, want at least 32"

COMMON="--threads 1 --slots 4 --token-budget 24 --context 512"
"$LISA" segment --model "$MODEL" --manifest "$TMP/jobs.jsonl" --out "$TMP/ref" --threads 1 \
    --batch 4 --token-budget 24 >/dev/null 2>"$TMP/ref.err"
[ $? -eq 1 ] || fail "lisa segment: expected exit 1 (bad requests)"
sort "$TMP/ref/results.jsonl" >"$TMP/ref.sorted"
[ "$(wc -l <"$TMP/ref.sorted")" -eq "$n_jobs" ] || fail "reference has $(wc -l <"$TMP/ref.sorted") results"
n_masks=$(ls "$TMP"/ref/*/mask_1.png 2>/dev/null | wc -l)
[ "$n_masks" -ge 4 ] || fail "reference: only $n_masks requests with two masks"
grep -q '"output_ids":\[[0-9]' "$TMP/ref.sorted" || fail "reference: nothing generated"

# run NAME NP ARGS...: one cluster job, compared with the reference
run() {
    name=$1 np=$2
    shift 2
    out=$TMP/$name
    start=$(date +%s)
    timeout 300 mpirun $MPI_ARGS -np "$np" "$LISA" cluster --model "$MODEL" $COMMON \
        --manifest "$TMP/jobs.jsonl" --out "$out" --stats "$TMP/$name.json" "$@" \
        >"$TMP/$name.log" 2>&1
    rc=$?
    secs=$(($(date +%s) - start))
    [ $rc -eq 1 ] || { fail "$name: exit $rc, expected 1 (bad requests)"; tail -5 "$TMP/$name.log" >&2; }
    sort "$out/results.jsonl" >"$TMP/$name.sorted" 2>/dev/null
    cmp -s "$TMP/ref.sorted" "$TMP/$name.sorted" ||
        { fail "$name: results.jsonl differs from lisa segment"; diff "$TMP/ref.sorted" "$TMP/$name.sorted" | cut -c1-240 | head -6 >&2; }
    diff -r -x results.jsonl "$TMP/ref" "$out" >/dev/null ||
        fail "$name: result files differ: $(diff -r -q -x results.jsonl "$TMP/ref" "$out" | head -3)"
    mpi_leaks_ours "$TMP/$name.log" >&2 || fail "$name: leaks in our code"
    echo "$name: $np ranks, $secs s, $(grep -c '"status":"ok"' "$TMP/$name.sorted") ok of $n_jobs"
}

# LISA_CLUSTER_QUICK (the sanitizer build, where every run is 3x slower):
# one configuration per P; the Release build runs them all
if [ -n "${LISA_CLUSTER_QUICK:-}" ]; then
    run p1-m2 3 --stages 1 --micro-batches 2
    run p2-13-m2 4 --stages 2 --layers 1,3 --micro-batches 2
    run p3-112-m2 5 --stages 3 --layers 1,1,2 --micro-batches 2
else
    run p1-m1 3 --stages 1 --micro-batches 1
    run p1-m2 3 --stages 1 --micro-batches 2
    run p2-balanced-m1 4 --stages 2 --micro-batches 1
    run p2-13-m2 4 --stages 2 --layers 1,3 --micro-batches 2
    run p2-ranges-m3 4 --stages 2 --layers 0-2,3-3 --micro-batches 3
    run p3-balanced-m1 5 --stages 3 --micro-batches 1
    run p3-112-m2 5 --stages 3 --layers 1,1,2 --micro-batches 2
    run p3-211-m3 5 --stages 3 --layers 2,1,1 --micro-batches 3
    run p3-balanced-m4 5 --stages 3 --micro-batches 4
fi
run p2-vision-on-0 3 --stages 2 --micro-batches 2 --vision coordinator

# the statistics name each stage with its layers and micro-batches
for s in 1 2 3; do
    grep -q "\"role\": \"stage $s\"" "$TMP/p3-112-m2.json" || fail "stats: no stage $s"
done
grep -q '"layers": "2-3"' "$TMP/p3-112-m2.json" || fail "stats: stage 3 of 1,1,2 holds layers 2-3"
grep -Eq '"stage": [1-9][^}]*"micro_batches": 0,' "$TMP/p3-112-m2.json" && fail "stats: a stage ran no micro-batch"
grep -q 'stage 2 ' "$TMP/p2-13-m2.log" || fail "no statistics table on stderr"

# continuous batching across the pipeline: a long prompt first (many
# prefill chunks), shorter teacher-forced requests after it; with M = 4
# micro-batches in flight each request is in its own one (hold_in_flight),
# so they advance together and the shorter ones finish first (in one
# process the oldest prefill takes the budget first)
longp=$(awk 'BEGIN { for (i = 0; i < 40; i++) printf "word%d ", i }')
{
    echo "{\"custom_id\": \"long\", \"image\": \"$IMG/chelsea.png\", \"prompt\": \"$longp\", \"answer\": \"[SEG].\"}"
    for i in 1 2 3; do
        echo "{\"custom_id\": \"short$i\", \"image\": \"$IMG/astronaut.jpg\", \"prompt\": \"Where?\", \"answer\": \"[SEG].\"}"
    done
} >"$TMP/cb.jsonl"
timeout 300 mpirun $MPI_ARGS -np 4 "$LISA" cluster --model "$MODEL" --threads 1 --slots 4 \
    --token-budget 16 --stages 2 --micro-batches 4 --manifest "$TMP/cb.jsonl" \
    --out "$TMP/cb" --quiet-stats >"$TMP/cb.log" 2>&1 || fail "continuous batching run: $(tail -3 "$TMP/cb.log")"
order=$(sed -n 's/.*"custom_id":"\([a-z0-9]*\)".*/\1/p' "$TMP/cb/results.jsonl" | tr '\n' ' ')
case "$order" in
*long*short*) fail "a short request finished after the long one: $order" ;;
"short"*long*) echo "finish order: $order" ;;
*) fail "continuous batching: unexpected results: $order" ;;
esac

[ $fails -eq 0 ] && echo "cluster-equal: all passed"
[ $fails -eq 0 ]
