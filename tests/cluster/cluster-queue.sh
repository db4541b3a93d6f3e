#!/bin/sh
# cluster-queue.sh: `lisa cluster --redis` serves the Redis job queue with
# the worker's code (queue-feed.h): a batch submitted with `lisa submit` is
# run by a 4-rank cluster (coordinator, 2 LLM stages, vision) under a real
# mpirun next to a real redis-server, and `lisa result` then gives what
# `lisa segment` gives for the same manifest, byte for byte. Every job is
# done once, by the cluster (its name in the WORKER column), and the
# cluster is listed by `lisa workers` while it runs; --exit-when-empty ends
# it with status 0 once the queue is drained.
# Usage: sh cluster-queue.sh LISA_BIN FIXTURES_DIR DEEPEN_MODEL_BIN
set -u
LISA=$1
FIX=$(cd "$2" && pwd)
DEEPEN=$3
TMP=$(mktemp -d)
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/mpi-env.sh"
. "$HERE/../queue/redis-env.sh"
trap 'redis_cleanup; rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
N=24
[ -n "${LISA_CLUSTER_QUICK:-}" ] && N=8

"$DEEPEN" "$FIX/lisa-tiny/model" "$TMP/model" 4 || { echo "FAIL: deepen-model" >&2; exit 1; }
queue_manifest $N >"$TMP/jobs.jsonl"
"$LISA" segment --model "$TMP/model" --manifest "$TMP/jobs.jsonl" --out "$TMP/ref" --threads 1 \
    --batch 4 --token-budget 24 >/dev/null 2>"$TMP/ref.err" || { fail "lisa segment failed"; exit 1; }
mkdir "$TMP/redis"
redis_start "$TMP/redis" || exit 1
b=$("$LISA" submit --manifest "$TMP/jobs.jsonl" --parsable --name cluster)

timeout 300 mpirun $MPI_ARGS -np 4 "$LISA" cluster --model "$TMP/model" --stages 2 --threads 1 \
    --slots 4 --token-budget 24 --redis "$REDIS_URL" --name C1 --exit-when-empty --quiet-stats \
    >"$TMP/cluster.log" 2>&1 &
MP=$!
ALL_PIDS="$ALL_PIDS $MP"
wait_for 60 sh -c "'$LISA' workers 2>/dev/null | awk '\$1 == \"C1\" { ok = 1 } END { exit !ok }'" ||
    fail "the cluster never showed in lisa workers"
wait $MP
rc=$?
[ $rc -eq 0 ] || { fail "lisa cluster --redis: exit $rc"; tail -5 "$TMP/cluster.log" >&2; }

"$LISA" status "$b" | grep -q "^$b $N total | CD $N R 0 PD 0 " || { fail "batch:"; "$LISA" status "$b" >&2; }
n=$("$LISA" status "$b" --jobs --no-header | awk '$4 == "CD" && $6 == "1/3" && $7 == "C1"' | wc -l)
[ "$n" -eq $N ] || fail "$n of $N jobs done once by the cluster"
"$LISA" result "$b" --out "$TMP/q" >/dev/null 2>&1 || fail "result: exit $?"
same_results "$TMP/ref" "$TMP/q" || fail "the cluster's results differ from lisa segment"

[ $fails -eq 0 ] && echo "cluster-queue: $N jobs through a 4-rank cluster on the queue, equal to lisa segment"
[ $fails -eq 0 ]
