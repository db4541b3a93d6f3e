#!/bin/sh
# cluster-netfault.sh: network faults under `lisa cluster --redis`, on hosts
# made of network namespaces (netns-hosts.sh). h0 runs the Redis (AOF on),
# mpirun, the coordinator (rank 0) and the vision rank (2); h1 the LLM stage
# (rank 1); h2 a `lisa worker`, started at the fault. Once the cluster has
# stored some results and holds jobs:
#   cut   h1's veth is set down (`ip link set eth0 down`): no FIN, no RST.
#         mpirun's daemons keep TCP keepalives (--mca oob_tcp_keepalive_time
#         5, _intvl 1, _probes 3: about 8 s; Open MPI's default is 300 s +
#         9 x 20 s), so mpirun notices the lost host and ends the job; the
#         coordinator fails its jobs as retryable. mpirun ends within 25 s of
#         the cut, non-zero, and the ranks on the cut-off host within 40 s
#         (their daemon loses mpirun the same way).
#   stop  the stage rank is stopped (kill -STOP: alive, reachable, silent,
#         as a hung GPU would be): only the coordinator's stall timeout
#         (stall_timeout_s, here 10 s) notices; it fails the jobs in flight
#         naming the stall and aborts the job: mpirun ends within the stall
#         timeout plus 15 s. (Release only: LISA_CLUSTER_QUICK leaves it out.)
# After each fault: the jobs the cluster held are each done once, by the
# cluster when they no longer needed h1 (past the LLM stage), otherwise by
# the worker on h2 on a later attempt, which ran at least one of them; every
# job is done, with results equal to `lisa segment`'s on the same manifest,
# byte for byte; no job has more than one `done` event.
# Usage: sh cluster-netfault.sh LISA_BIN FIXTURES_DIR DEEPEN_MODEL_BIN
# Exit 77 (skip) only where namespaces cannot be made and that is allowed
# (netns-hosts.sh: not root).
set -u
LISA=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
FIX=$(cd "$2" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/mpi-env.sh"
. "$HERE/netns-hosts.sh"
netns_available || exit $?
command -v redis-server >/dev/null 2>&1 || { echo "FAIL: redis-server not found" >&2; exit 1; }
TMP=$(mktemp -d)
trap 'netns_hosts_down; [ -n "${KEEP:-}" ] || rm -rf "$TMP"' EXIT
trap 'exit 1' INT TERM
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
MODEL=$FIX/lisa-tiny/model
ENG="--threads 1 --token-budget 24"
N=16
CASES="cut stop"
[ -n "${LISA_CLUSTER_QUICK:-}" ] && CASES=cut
# queue_manifest and wait_for of the queue tests
. "$HERE/../queue/redis-env.sh"
queue_manifest $N >"$TMP/jobs.jsonl"
"$LISA" segment --model "$MODEL" --manifest "$TMP/jobs.jsonl" --out "$TMP/ref" $ENG --batch 4 \
    >/dev/null 2>"$TMP/ref.err" || { fail "lisa segment failed"; exit 1; }
sort "$TMP/ref/results.jsonl" >"$TMP/ref.sorted"

mkdir -p "$TMP/hosts" "$TMP/redis"
netns_hosts_up 3 "$TMP/hosts" 2 || { echo "FAIL: netns_hosts_up" >&2; exit 1; }
# mpirun's hosts: h0 and h1 only (h2 is the worker's)
head -2 "$NETNS_DIR/hostfile" >"$TMP/hostfile2"
H0=$(netns_host_ip 0)
URL=redis://$H0:6379
in0() { netns_exec 0 "$@"; }
rc0() { in0 redis-cli -h "$H0" -p 6379 "$@"; }
# protected mode off: the hosts reach only each other
in0 redis-server --port 6379 --bind "$H0" --protected-mode no --dir "$TMP/redis" --appendonly yes \
    --save "" >"$TMP/redis.log" 2>&1 &
redis_ping() { [ "$(rc0 ping 2>/dev/null)" = PONG ]; }
wait_for 10 redis_ping ||
    { echo "FAIL: redis-server in h0: $(tail -2 "$TMP/redis.log")" >&2; exit 1; }
lq() { in0 env LISA_REDIS="$URL" "$LISA" "$@"; }
since() { echo "$(date +%s.%N) $1" | awk '{ printf "%.1f", $1 - $2 }'; }
within() { awk -v s="$1" -v b="$2" 'BEGIN { exit !(s <= b) }'; }
# 3 ranks by node over h0, h1: 0 (coordinator) h0, 1 (stage) h1, 2 (vision) h0
ARGS="$(netns_mpirun_args | sed "s|$NETNS_DIR/hostfile|$TMP/hostfile2|")"
ARGS="$ARGS --mca oob_tcp_keepalive_time 5 --mca oob_tcp_keepalive_intvl 1"
ARGS="$ARGS --mca oob_tcp_keepalive_probes 3"

# run_case cut|stop
run_case() {
    c=$1
    case $c in cut) stall=60 bound=25 ;; stop) stall=10 bound=25 ;; esac
    b=$(lq submit --manifest "$TMP/jobs.jsonl" --parsable --name "netfault-$c") || { fail "$c: submit"; return; }
    in0 timeout 300 mpirun $ARGS -np 3 --map-by node -x OMP_NUM_THREADS -x OMP_WAIT_POLICY \
        -x LSAN_OPTIONS -x ASAN_OPTIONS "$LISA" cluster --model "$MODEL" --stages 1 $ENG --slots 4 \
        --redis "$URL" --name "C-$c" --lease 3s --stall-timeout $stall --quiet-stats \
        >"$TMP/cluster-$c.log" 2>&1 &
    mp=$!
    wait_for 120 some_done "$b" "C-$c" || fail "$c: the cluster stored no result in 120 s"
    held=$(held_by "$b" "C-$c")
    [ -n "$held" ] || fail "$c: the cluster held no job at the fault"
    at=$(date +%s.%N)
    if [ $c = cut ]; then
        ip -n "$(netns_host_ns 1)" link set "$NETNS_IFACE" down || fail "cut: ip link set down"
    else
        for p in $(ip netns pids "$(netns_host_ns 1)"); do
            tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1' && kill -STOP "$p"
        done
    fi
    echo "$c: $(n_done "$b") of $N done, held by the cluster: $(echo $held)"
    netns_exec 2 env LISA_REDIS="$URL" "$LISA" worker --model "$MODEL" $ENG --batch 4 --name "W-$c" \
        --lease 3s >"$TMP/worker-$c.log" 2>&1 &
    wp=$!
    wait $mp
    rc=$?
    secs=$(since "$at")
    echo "$c: mpirun exit $rc, $secs s after the fault"
    [ $rc -ne 0 ] || fail "$c: mpirun exited 0 after the fault"
    [ $rc -ne 124 ] || fail "$c: mpirun did not end (killed by timeout)"
    within "$secs" $bound || fail "$c: the cluster job took $secs s to end (bound $bound s)"
    if [ $c = stop ]; then
        grep -q "no rank answered for $stall s" "$TMP/cluster-$c.log" ||
            { fail "stop: the coordinator did not name the stall"; tail -5 "$TMP/cluster-$c.log" >&2; }
    else
        # the ranks on the cut-off host
        t=0
        while [ -n "$(ip netns pids "$(netns_host_ns 1)" 2>/dev/null)" ] && [ $t -lt 400 ]; do
            sleep 0.1
            t=$((t + 1))
        done
        h1secs=$(since "$at")
        [ -z "$(ip netns pids "$(netns_host_ns 1)" 2>/dev/null)" ] ||
            fail "cut: processes still run on the cut-off host $h1secs s after the cut"
        echo "cut: h1's processes ended $h1secs s after the cut"
        ip -n "$(netns_host_ns 1)" link set "$NETNS_IFACE" up
    fi
    lq wait "$b" --timeout 120 >/dev/null 2>&1 || fail "$c: wait: exit $? ($(lq status "$b" 2>&1))"
    # the worker drains and exits (its pid: whatever runs on h2)
    kill -TERM $(ip netns pids "$(netns_host_ns 2)") 2>/dev/null
    wait $wp 2>/dev/null
    lq status "$b" --jobs --no-header >"$TMP/states-$c" 2>&1
    handed=0
    for j in $held; do
        if awk -v j="$j" -v w="W-$c" '$1 == j && $4 == "CD" && $7 == w && $6 !~ /^1\// { ok = 1 } END { exit !ok }' "$TMP/states-$c"; then
            handed=$((handed + 1))
        else
            awk -v j="$j" -v w="C-$c" '$1 == j && $4 == "CD" && $7 == w && $6 ~ /^1\// { ok = 1 } END { exit !ok }' "$TMP/states-$c" ||
                fail "$c: $j (held by the cluster) neither finished there nor by the worker later: $(grep "^$j " "$TMP/states-$c")"
        fi
    done
    [ $handed -ge 1 ] || fail "$c: no job the cluster held was handed to the worker"
    n_w=$(awk -v w="W-$c" '$4 == "CD" && $7 == w' "$TMP/states-$c" | wc -l)
    lq result "$b" >"$TMP/q-$c.jsonl" 2>/dev/null || fail "$c: result: exit $?"
    sort "$TMP/q-$c.jsonl" >"$TMP/q-$c.sorted"
    cmp -s "$TMP/ref.sorted" "$TMP/q-$c.sorted" ||
        { fail "$c: results differ from lisa segment"; diff "$TMP/ref.sorted" "$TMP/q-$c.sorted" | cut -c1-200 | head -4 >&2; }
    dups=$(rc0 --raw XRANGE lisa:events - + | awk -v b="$b" '
        /^[0-9]+-[0-9]+$/ { if (st == "done" && bt == b) print job; job = st = bt = f = ""; next }
        f == "" { f = $0; next }
        { if (f == "job") job = $0; else if (f == "state") st = $0; else if (f == "batch") bt = $0; f = "" }
        END { if (st == "done" && bt == b) print job }' | sort | uniq -d | wc -l)
    [ "$dups" -eq 0 ] || fail "$c: $dups jobs with more than one done event"
    echo "$c: the cluster ended $secs s after the fault; $n_w of $N jobs done by the worker on h2 ($handed of the $(echo $held | wc -w) the cluster held), all equal to lisa segment"
}
held_by() { lq status "$1" --jobs --no-header 2>/dev/null | awk -v w="$2" '$4 == "R" && $7 == w { print $1 }'; }
n_done() { lq status "$1" --jobs --no-header 2>/dev/null | awk '$4 == "CD"' | wc -l; }
some_done() { [ "$(n_done "$1")" -ge 2 ] && [ -n "$(held_by "$1" "$2")" ]; }

for c in $CASES; do run_case $c; done
[ $fails -eq 0 ] && echo "cluster-netfault: all passed"
[ $fails -eq 0 ]
