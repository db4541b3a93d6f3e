#!/bin/sh
# queue-faults.sh: what the queue does when its parts fail, on a real
# redis-server (AOF on) and real `lisa worker` processes; after each fault
# every job's result still equals `lisa segment`'s on the same request.
#   1. kill -9 of a worker holding jobs: another worker reclaims them once
#      the lease ran out (XAUTOCLAIM) and finishes them: attempt 2, and the
#      result names the second worker.
#   2. kill -STOP of a worker past its lease, then -CONT: the jobs were
#      reclaimed and finished meanwhile; its late results are refused (the
#      fencing token is stale) and the stored results are unchanged.
#   3. redis-server killed (-9) and restarted from its AOF mid-batch: the
#      functions are still loaded, the workers reconnect, nothing is lost.
#   4. a poison job (its worker dies every time it starts it) lands in the
#      dead-letter stream after 3 deliveries while the rest of the queue
#      drains; a supervisor loop restarts the dying workers.
# Faults are injected with the worker's test switches (docs/queue.md):
# LISA_FAULT_HOLD_MS (keep each result that long before storing it, so a
# worker holds running jobs) and LISA_FAULT_CRASH_PROMPT (SIGKILL itself
# on starting a job with that prompt).
# Usage: sh queue-faults.sh LISA_BIN FIXTURES_DIR
set -u
LISA=$1
FIX=$(cd "$2" && pwd)
TMP=$(mktemp -d)
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/redis-env.sh"
trap 'redis_cleanup; rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
ENG="--threads 1 --batch 4 --token-budget 24"
N=32
[ -n "${LISA_QUEUE_QUICK:-}" ] && N=12

queue_manifest $N >"$TMP/jobs.jsonl"
"$LISA" segment --model "$FIX/lisa-tiny/model" --manifest "$TMP/jobs.jsonl" --out "$TMP/ref" \
    $ENG >/dev/null 2>"$TMP/ref.err" || { fail "lisa segment failed"; exit 1; }
mkdir "$TMP/redis"
redis_start "$TMP/redis" || exit 1
T0=$(date +%s)

# job_field JOB N: column N of `lisa status JOB` (1 JOBID .. 4 ST, 6 ATT, 7 WORKER)
job_field() { "$LISA" status "$1" --no-header 2>/dev/null | awk -v n="$2" '{ print $n }'; }
running_of() { "$LISA" status "$1" --jobs --no-header 2>/dev/null | awk -v w="$2" '$4 == "R" && $7 == w { print $1 }'; }
batch_final() { "$LISA" wait "$1" --timeout 1 >/dev/null 2>&1; [ $? -ne 5 ]; }
# check_batch BID NAME: all done, results equal to lisa segment's
check_batch() {
    "$LISA" wait "$1" --timeout 120 >/dev/null 2>&1 || fail "$2: wait: exit $?"
    rm -rf "$TMP/out-$2"
    "$LISA" result "$1" --out "$TMP/out-$2" >/dev/null 2>&1 || fail "$2: result: exit $?"
    same_results "$TMP/ref" "$TMP/out-$2" || fail "$2: results differ from lisa segment"
}

# ---- 1. kill -9 of a worker holding jobs
b1=$("$LISA" submit --manifest "$TMP/jobs.jsonl" --parsable --name kill9)
LISA_FAULT_HOLD_MS=600000 worker_start wA $ENG --lease 2s
WA=$WORKER_PID
wait_for 60 sh -c "[ -n \"\$('$LISA' status $b1 --jobs --no-header | awk '\$4 == \"R\" && \$7 == \"wA\"')\" ]" ||
    fail "kill9: wA never held a job"
sleep 1
held=$(running_of "$b1" wA)
kill -9 $WA
wait $WA 2>/dev/null
[ -n "$held" ] || fail "kill9: nothing held by wA when it was killed"
worker_start wB $ENG --lease 2s
WB=$WORKER_PID
check_batch "$b1" kill9
for j in $held; do
    [ "$(job_field "$j" 6)" = 2/3 ] || fail "kill9: $j attempts $(job_field "$j" 6), want 2/3"
    [ "$(job_field "$j" 7)" = wB ] || fail "kill9: $j finished by $(job_field "$j" 7), want wB"
done
others=$("$LISA" status "$b1" --jobs --no-header | awk '$6 != "1/3"' | wc -l)
[ "$others" -eq "$(echo $held | wc -w)" ] || fail "kill9: $others jobs with more than one attempt, $(echo $held | wc -w) held"
echo "kill9: $(($(date +%s) - T0)) s: $(echo $held | wc -w) jobs reclaimed from wA, finished by wB on attempt 2"

# ---- 2. kill -STOP past the lease, then -CONT: the late results are refused
# wB (idle, holding nothing) is paused until wC holds jobs, so wC gets some
kill -STOP $WB
b2=$("$LISA" submit --manifest "$TMP/jobs.jsonl" --parsable --name stop)
LISA_FAULT_HOLD_MS=4000 worker_start wC $ENG --lease 1s
WC=$WORKER_PID
wait_for 60 grep -q "holding the result of" "$TMP/wC.log" || fail "stop: wC never held a result"
kill -STOP $WC
kill -CONT $WB
held=$(running_of "$b2" wC)
[ -n "$held" ] || fail "stop: nothing held by wC when it was stopped"
for j in $held; do
    wait_for 60 sh -c "'$LISA' status $j --no-header | awk '\$4 == \"CD\" { ok = 1 } END { exit !ok }'" ||
        fail "stop: $j not finished by wB while wC was stopped"
done
sleep 4
kill -CONT $WC
first=$(echo $held | cut -d' ' -f1)
wait_for 30 grep -q "$first.*refused" "$TMP/wC.log" ||
    { fail "stop: wC's late result for $first was not refused"; tail -5 "$TMP/wC.log" >&2; }
for j in $held; do
    [ "$(job_field "$j" 7)" = wB ] || fail "stop: $j's result is from $(job_field "$j" 7), want wB"
done
check_batch "$b2" stop
kill -TERM $WC 2>/dev/null
wait $WC 2>/dev/null
echo "stop: $(($(date +%s) - T0)) s: $(echo $held | wc -w) late results from wC refused"

# ---- 3. redis-server killed and restarted from its AOF mid-batch
b3=$("$LISA" submit --manifest "$TMP/jobs.jsonl" --parsable --name restart)
worker_start wD $ENG --lease 5s
WD=$WORKER_PID
wait_for 60 grep -q "wD on " "$TMP/wD.log" || fail "restart: wD did not start"
wait_for 60 sh -c "'$LISA' status $b3 | grep -Eq '\| CD ([5-9]|[1-9][0-9])'" || fail "restart: no progress before the restart"
redis_restart || fail "restart: redis-server did not come back"
[ "$(rcli FCALL lisa_version 0)" = 2 ] || fail "restart: the functions are gone after the restart"
check_batch "$b3" restart
# an idle worker may still be in its reconnect backoff when the batch ends
for w in wB wD; do
    wait_for 20 grep -q "reconnected" "$TMP/$w.log" ||
        { fail "restart: $w did not log a reconnection"; tail -5 "$TMP/$w.log" >&2; }
done
kill -TERM $WD
wait $WD
echo "restart: $(($(date +%s) - T0)) s: the batch finished across a Redis restart"

# ---- 4. a poison job: dead-lettered after 3 deliveries, the rest drains
kill -TERM $WB
wait $WB
{ head -8 "$TMP/jobs.jsonl"; echo "{\"custom_id\": \"poison\", \"image\": \"$FIX/images/tall.png\", \"prompt\": \"poison pill\"}"; } >"$TMP/poison.jsonl"
b4=$("$LISA" submit --manifest "$TMP/poison.jsonl" --parsable --name poison --max-attempts 3)
i=0
while ! batch_final "$b4" && [ $i -lt 20 ]; do
    i=$((i + 1))
    LISA_FAULT_CRASH_PROMPT="poison pill" "$LISA" worker --model "$FIX/lisa-tiny/model" \
        $ENG --lease 1s --name "wP$i" >>"$TMP/wP.log" 2>&1 &
    WP=$!
    ALL_PIDS="$ALL_PIDS $WP"
    # until this worker died, or the batch is final (wait: anything but 5)
    wait_for 30 sh -c "! kill -0 $WP 2>/dev/null || { '$LISA' wait $b4 --timeout 1 >/dev/null 2>&1; [ \$? -ne 5 ]; }"
    kill -TERM $WP 2>/dev/null
    wait $WP 2>/dev/null
done
pj=$("$LISA" status "$b4" --jobs --no-header | awk '$1 ~ /_8$/ { print $1 }')
[ "$(job_field "$pj" 4)" = F ] || fail "poison: state $(job_field "$pj" 4), want F"
"$LISA" queue --dead >"$TMP/dead.txt" 2>&1
grep -q "$pj .*3 .*started 3 times" "$TMP/dead.txt" || { fail "poison: not in the dead letters:"; cat "$TMP/dead.txt" >&2; }
n_cd=$("$LISA" status "$b4" --jobs --no-header | awk '$4 == "CD"' | wc -l)
[ "$n_cd" -eq 8 ] || fail "poison: $n_cd of 8 other jobs done"
echo "poison: $(($(date +%s) - T0)) s: dead-lettered after 3 deliveries; $n_cd others done with $i worker starts"

[ $fails -eq 0 ] && echo "queue-faults: all scenarios passed"
[ $fails -eq 0 ]
