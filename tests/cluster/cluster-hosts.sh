#!/bin/sh
# cluster-hosts.sh: `lisa cluster` across three hosts made of network
# namespaces on this machine (netns-hosts.sh: a veth per host on a private
# bridge, mpirun's launch agent entering each namespace, MPI's traffic on
# the veth addresses): 2 LLM stages and the vision rank on hosts h0-h2
# with the coordinator, over Open MPI's TCP and over UCX; results byte for
# byte those of `lisa segment`, every rank reporting its own host.
# Usage: sh cluster-hosts.sh LISA_BIN FIXTURES_DIR DEEPEN_MODEL_BIN
# Exit 77 (skip) only where namespaces cannot be made and that is allowed
# (netns-hosts.sh: not root).
set -u
LISA=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
FIX=$(cd "$2" && pwd)
DEEPEN=$3
IMG=$FIX/images
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/mpi-env.sh"
. "$HERE/jobs.sh"
. "$HERE/netns-hosts.sh"
netns_available || exit $?
TMP=$(mktemp -d)
trap 'netns_hosts_down; rm -rf "$TMP"' EXIT
trap 'exit 1' INT TERM
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

"$DEEPEN" "$FIX/lisa-tiny/model" "$TMP/model" 4 || { echo "FAIL: deepen-model" >&2; exit 1; }
cluster_manifest "$TMP" "$IMG" >"$TMP/jobs.jsonl"
"$LISA" segment --model "$TMP/model" --manifest "$TMP/jobs.jsonl" --out "$TMP/ref" --threads 1 \
    --batch 4 --token-budget 24 >/dev/null 2>&1
sort "$TMP/ref/results.jsonl" >"$TMP/ref.sorted"

mkdir -p "$TMP/hosts" && netns_hosts_up 3 "$TMP/hosts" 2 || { echo "FAIL: netns_hosts_up" >&2; exit 1; }
# 4 ranks on 3 hosts, by node: rank 0 (coordinator) and 3 (vision) on h0,
# stage 1 on h1, stage 2 on h2
for tr in ob1 ucx; do
    out=$TMP/out-$tr
    timeout 300 "$NETNS_DIR/netns-enter" 0 mpirun $(netns_mpirun_args $tr) -np 4 --map-by node \
        -x OMP_NUM_THREADS -x OMP_WAIT_POLICY -x LSAN_OPTIONS -x ASAN_OPTIONS \
        "$LISA" cluster --model "$TMP/model" --threads 1 --slots 4 --token-budget 24 --context 512 \
        --stages 2 --manifest "$TMP/jobs.jsonl" --out "$out" --stats "$TMP/stats-$tr.json" \
        >"$TMP/$tr.log" 2>&1
    rc=$?
    [ $rc -eq 1 ] || { fail "$tr: exit $rc, expected 1 (bad requests)"; tail -20 "$TMP/$tr.log" >&2; }
    sort "$out/results.jsonl" 2>/dev/null >"$TMP/$tr.sorted"
    cmp -s "$TMP/ref.sorted" "$TMP/$tr.sorted" || fail "$tr: results.jsonl differs from lisa segment"
    diff -r -x results.jsonl "$TMP/ref" "$out" >/dev/null || fail "$tr: result files differ"
    for r in 0 1 2 3; do
        h=$(( r % 3 ))
        grep -q "{\"rank\": $r, \"host\": \"h$h ($NETNS_NET.$((h + 1)))\"" "$TMP/stats-$tr.json" ||
            fail "$tr: rank $r not on host h$h: $(cat "$TMP/stats-$tr.json" | cut -c1-300)"
    done
    mpi_leaks_ours "$TMP/$tr.log" >&2 || fail "$tr: leaks in our code"
    echo "$tr: $(grep -c '"status":"ok"' "$TMP/$tr.sorted") ok of $(wc -l <"$TMP/jobs.jsonl") across 3 hosts"
done
[ $fails -eq 0 ] && echo "cluster-hosts: all passed"
[ $fails -eq 0 ]
