#!/bin/sh
# queue-cancel.sh: `lisa cancel` at each point of a job's life, on a real
# redis-server and a real worker, with the states and exit codes that
# docs/queue.md documents:
#   queued    -> CA at once ("cancelled 1"), exit 0; no worker runs it
#   running   -> CG ("cancel-requested 1 (running)"), exit 0; the worker
#                stops it and the result is dropped: CA; `lisa result` 4
#   finished  -> unchanged, "already finished (CD)", exit 1; -Q: silent, 0
#   unknown   -> exit 3
# and `lisa wait` on a batch with cancelled jobs and no failures exits 4.
# Usage: sh queue-cancel.sh LISA_BIN FIXTURES_DIR
set -u
LISA=$1
FIX=$(cd "$2" && pwd)
TMP=$(mktemp -d)
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/redis-env.sh"
trap 'redis_cleanup; rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
st() { "$LISA" status "$1" --no-header 2>/dev/null | awk '{ print $4 }'; }
ENG="--threads 1 --batch 2 --token-budget 24"

queue_manifest 8 >"$TMP/jobs.jsonl"
mkdir "$TMP/redis"
redis_start "$TMP/redis" || exit 1
b=$("$LISA" submit --manifest "$TMP/jobs.jsonl" --parsable)

# queued
out=$("$LISA" cancel "${b}_7" 2>&1)
rc=$?
[ $rc -eq 0 ] || fail "cancel queued: exit $rc"
echo "$out" | grep -q "^cancelled 1, cancel-requested 0 (running), already finished 0" ||
    fail "cancel queued printed: $out"
[ "$(st "${b}_7")" = CA ] || fail "queued job after cancel: $(st "${b}_7"), want CA"

# running: a worker that holds its results keeps its jobs running
LISA_FAULT_HOLD_MS=3000 worker_start wk $ENG --lease 3s
WK=$WORKER_PID
wait_for 60 sh -c "[ \"\$('$LISA' status ${b}_0 --no-header | awk '{print \$4}')\" = R ]" ||
    fail "job 0 never ran"
out=$("$LISA" cancel "${b}_0" 2>&1)
rc=$?
[ $rc -eq 0 ] || fail "cancel running: exit $rc"
echo "$out" | grep -q "^cancelled 0, cancel-requested 1 (running), already finished 0" ||
    fail "cancel running printed: $out"
s=$(st "${b}_0")
[ "$s" = CG ] || [ "$s" = CA ] || fail "running job after cancel: $s, want CG (then CA)"
wait_for 30 sh -c "[ \"\$('$LISA' status ${b}_0 --no-header | awk '{print \$4}')\" = CA ]" ||
    fail "running job never reached CA: $(st "${b}_0")"
"$LISA" result "${b}_0" >/dev/null 2>&1
rc=$?
[ $rc -eq 4 ] || fail "result of the cancelled job: exit $rc, want 4"

# the rest finishes; wait exits 4 (cancelled, none failed)
"$LISA" wait "$b" --timeout 120 >"$TMP/wait.txt" 2>&1
rc=$?
[ $rc -eq 4 ] || { fail "wait on a batch with cancelled jobs: exit $rc, want 4"; cat "$TMP/wait.txt" >&2; }
"$LISA" status "$b" | grep -q "^$b 8 total | CD 6 R 0 PD 0 RT 0 F 0 CA 2 CG 0 " ||
    { fail "batch counters:"; "$LISA" status "$b" >&2; }

# finished
out=$("$LISA" cancel "${b}_1" 2>&1)
rc=$?
[ $rc -eq 1 ] || fail "cancel finished: exit $rc, want 1"
echo "$out" | grep -q "${b}_1 already finished (CD)" || fail "cancel finished printed: $out"
[ "$(st "${b}_1")" = CD ] || fail "finished job changed by cancel: $(st "${b}_1")"
out=$("$LISA" cancel -Q "${b}_1" 2>&1)
rc=$?
[ $rc -eq 0 ] && [ -z "$out" ] || fail "cancel -Q finished: exit $rc, printed '$out'"
"$LISA" result "${b}_1" >/dev/null 2>&1 || fail "the finished job's result went away after cancel"

# unknown
"$LISA" cancel B999999_0 >/dev/null 2>&1
rc=$?
[ $rc -eq 3 ] || fail "cancel unknown: exit $rc, want 3"

# a whole batch: queued jobs cancelled, none run
kill -TERM $WK
wait $WK
b2=$("$LISA" submit --manifest "$TMP/jobs.jsonl" --parsable)
out=$("$LISA" cancel "$b2" 2>&1)
echo "$out" | grep -q "^cancelled 8," || fail "cancel batch printed: $out"
worker_start wk2 $ENG --lease 3s
sleep 2
"$LISA" status "$b2" | grep -q "CD 0 R 0 PD 0 RT 0 F 0 CA 8 " || { fail "cancelled batch ran:"; "$LISA" status "$b2" >&2; }

[ $fails -eq 0 ] && echo "queue-cancel: queued, running, finished, unknown and batch cancels as documented"
[ $fails -eq 0 ]
