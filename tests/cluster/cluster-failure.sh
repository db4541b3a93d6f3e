#!/bin/sh
# cluster-failure.sh: how `lisa cluster` fails.
#  - kill -9 of an LLM stage rank mid-run: the job ends within 10 s with a
#    non-zero status, the coordinator names the dead rank, and every request
#    of the manifest is in results.jsonl (done, or failed with the reason);
#  - start-up errors name the rank and host and exit 2 without hanging: a
#    rank count that does not match the configuration, a layer split with a
#    gap, more stages than layers, a missing GPU (--device cuda where no
#    rank has one), a model directory with a truncated weight file.
# Usage: sh cluster-failure.sh LISA_BIN FIXTURES_DIR DEEPEN_MODEL_BIN
set -u
LISA=$1
FIX=$(cd "$2" && pwd)
DEEPEN=$3
IMG=$FIX/images
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/mpi-env.sh"
TMP=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

"$DEEPEN" "$FIX/lisa-tiny/model" "$TMP/model" 4 || { echo "FAIL: deepen-model" >&2; exit 1; }
MODEL=$TMP/model
n=120
i=0
while [ $i -lt $n ]; do
    i=$((i + 1))
    case $((i % 3)) in
    0) f=chelsea.png ;; 1) f=astronaut.jpg ;; *) f=tall.png ;;
    esac
    echo "{\"custom_id\": \"k$i\", \"image\": \"$IMG/$f\", \"prompt\": \"Where is it? ($i)\"}"
done >"$TMP/jobs.jsonl"

# --- kill -9 of stage 2 (rank 2) once results have started to come out ---
timeout 120 mpirun $MPI_ARGS -np 4 "$LISA" cluster --model "$MODEL" --threads 1 --slots 2 \
    --token-budget 16 --stages 2 --manifest "$TMP/jobs.jsonl" --out "$TMP/kill" \
    >"$TMP/kill.log" 2>&1 &
job=$!
victim=
t=0
while [ $t -lt 600 ] && [ -z "$victim" ]; do
    if [ -s "$TMP/kill/results.jsonl" ]; then
        for p in $(pgrep -f "lisa cluster --model $MODEL" 2>/dev/null); do
            tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=2' && victim=$p
        done
    fi
    [ -n "$victim" ] || { sleep 0.1; t=$((t + 1)); }
done
if [ -z "$victim" ]; then
    fail "kill: no results or no rank 2 process within 60 s"
    kill $job 2>/dev/null
else
    killed_at=$(date +%s.%N)
    kill -9 "$victim"
    wait $job
    rc=$?
    secs=$(echo "$(date +%s.%N) $killed_at" | awk '{ printf "%.1f", $1 - $2 }')
    echo "kill -9 of rank 2 (pid $victim): exit $rc after $secs s"
    [ $rc -ne 0 ] || fail "kill: the job exited 0"
    awk -v s="$secs" 'BEGIN { exit !(s <= 10) }' || fail "kill: the job took $secs s to end"
    lines=$(wc -l <"$TMP/kill/results.jsonl")
    [ "$lines" -eq $n ] || fail "kill: results.jsonl has $lines of $n requests"
    ids=$(sed -n 's/^{"custom_id":"\([a-z0-9]*\)".*/\1/p' "$TMP/kill/results.jsonl" | sort -u | wc -l)
    [ "$ids" -eq $n ] || fail "kill: $ids distinct requests in the results, want $n"
    nfail=$(grep -c '"status":"failed"' "$TMP/kill/results.jsonl")
    nok=$(grep -c '"status":"ok"' "$TMP/kill/results.jsonl")
    [ "$nfail" -ge 1 ] && [ $((nfail + nok)) -eq $n ] || fail "kill: $nok ok + $nfail failed of $n"
    grep '"status":"failed"' "$TMP/kill/results.jsonl" | grep -v -q 'rank 2 (stage 2' &&
        fail "kill: a failed request does not name rank 2: $(grep '"status":"failed"' "$TMP/kill/results.jsonl" | grep -v 'rank 2 (stage 2' | head -1 | cut -c1-200)"
    grep -q 'rank 2 (stage 2, layers 2-3, host .*) died' "$TMP/kill.log" ||
        fail "kill: the coordinator did not name the dead rank: $(grep 'lisa cluster' "$TMP/kill.log" | head -2)"
    echo "kill: $nok done, $nfail failed naming rank 2"
fi

# --- a backend failure on stage 1 (injected: LISA_CLUSTER_FAULT=1:N, as a
# GPU fault would be): every request accounted for, the rank named ---
timeout 120 mpirun $MPI_ARGS -x LISA_CLUSTER_FAULT=1:60 -np 4 "$LISA" cluster --model "$MODEL" \
    --threads 1 --slots 2 --token-budget 16 --stages 2 --manifest "$TMP/jobs.jsonl" \
    --out "$TMP/fault" >"$TMP/fault.log" 2>&1
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "fault: exit $rc"
lines=$(wc -l <"$TMP/fault/results.jsonl")
[ "$lines" -eq $n ] || fail "fault: results.jsonl has $lines of $n requests"
nfail=$(grep -c 'rank 1 (stage 1, layers 0-1, host .*): injected fault' "$TMP/fault/results.jsonl")
nok=$(grep -c '"status":"ok"' "$TMP/fault/results.jsonl")
[ "$nfail" -ge 1 ] && [ $((nfail + nok)) -eq $n ] || fail "fault: $nok ok + $nfail failed naming rank 1 of $n"
echo "fault on rank 1: exit $rc, $nok done, $nfail failed naming rank 1"

# --- start-up errors: exit 2, the rank and host named, within the timeout ---
# start NAME NP PATTERN ARGS...
start() {
    name=$1 np=$2 pat=$3
    shift 3
    timeout 60 mpirun $MPI_ARGS -np "$np" "$LISA" cluster --model "$MODEL" --threads 1 \
        --startup-timeout 20 --image "$IMG/tall.png" --prompt "x" "$@" >"$TMP/$name.log" 2>&1
    rc=$?
    [ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "$name: exit $rc"
    grep -q -- "$pat" "$TMP/$name.log" ||
        fail "$name: no '$pat' in: $(grep -v '^--\|^ *$' "$TMP/$name.log" | head -3)"
}
start ranks 3 "the configuration needs 4 ranks" --stages 2
start gap 4 "layer" --stages 2 --layers 0-0,2-3
start stages 7 "stages" --stages 5
start gpu 3 "rank [12] (.*host .*GPU [01]: " --stages 1 --device cuda --dtype fp32
cp -r "$MODEL" "$TMP/broken"
head -c 100000 "$MODEL/model.safetensors" >"$TMP/broken/model.safetensors"
start truncated 3 "rank [12] (.*host .*safetensors" --stages 1 --model "$TMP/broken"
for name in ranks gap stages gpu truncated; do
    echo "$name: $(grep 'lisa cluster' "$TMP/$name.log" | head -1 | cut -c1-200)"
done

[ $fails -eq 0 ] && echo "cluster-failure: all passed"
[ $fails -eq 0 ]
