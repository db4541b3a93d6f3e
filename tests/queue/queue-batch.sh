#!/bin/sh
# queue-batch.sh: a batch of 308 jobs through a real redis-server (AOF on)
# and two `lisa worker` processes: every job done exactly once, and `lisa
# result` writes what `lisa segment` writes for the same manifest, byte for
# byte (results.jsonl sorted, every mask_K.png, overlay.png, result.json,
# answer.txt). Along the way the following commands' outputs are checked:
# status (pending, then done), queue (depths), wait --timeout on a batch no
# one works on (exit 5), watch under a pseudo-terminal (a progress bar) and
# without one (a line per event), workers, submit --wait on one image, and
# a SIGTERM that drains a worker's jobs instead of dropping them.
# LISA_QUEUE_QUICK=1 (the sanitizer build) runs 20 jobs.
# Usage: sh queue-batch.sh LISA_BIN FIXTURES_DIR
set -u
LISA=$1
FIX=$(cd "$2" && pwd)
TMP=$(mktemp -d)
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/redis-env.sh"
trap 'redis_cleanup; rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
N=308
[ -n "${LISA_QUEUE_QUICK:-}" ] && N=20
ENG="--threads 1 --batch 4 --token-budget 24"

queue_manifest $N >"$TMP/jobs.jsonl"
"$LISA" segment --model "$FIX/lisa-tiny/model" --manifest "$TMP/jobs.jsonl" --out "$TMP/ref" \
    $ENG >/dev/null 2>"$TMP/ref.err" || { fail "lisa segment failed"; cat "$TMP/ref.err" >&2; exit 1; }

mkdir "$TMP/redis"
redis_start "$TMP/redis" || exit 1

# submitted with no worker running: all pending
bid=$("$LISA" submit --manifest "$TMP/jobs.jsonl" --parsable --name big 2>"$TMP/submit.err")
[ $? -eq 0 ] || { fail "submit: exit $?"; cat "$TMP/submit.err" >&2; exit 1; }
case $bid in B[0-9]*) ;; *) fail "submit --parsable printed '$bid', want a batch id" ;; esac
"$LISA" status "$bid" >"$TMP/status0.txt" 2>&1 || fail "status: exit $?"
grep -q "^$bid $N total | CD 0 R 0 PD $N " "$TMP/status0.txt" ||
    { fail "status before workers:"; cat "$TMP/status0.txt" >&2; }
"$LISA" queue >"$TMP/queue0.txt" 2>&1 || fail "queue: exit $?"
grep -Eq "^normal +\|.*\| $N\$" "$TMP/queue0.txt" || { fail "queue before workers:"; cat "$TMP/queue0.txt" >&2; }
"$LISA" wait "$bid" --timeout 1 >/dev/null 2>&1
rc=$?
[ $rc -eq 5 ] || fail "wait --timeout 1 with no worker: exit $rc, want 5"

worker_start w1 --batch 4 --token-budget 24 --lease 20s
W1=$WORKER_PID
worker_start w2 --batch 4 --token-budget 24 --lease 20s
W2=$WORKER_PID

# a pseudo-terminal sees the progress bar
timeout 600 script -qfec "$LISA watch $bid" "$TMP/watch.tty" >/dev/null 2>&1
rc=$?
[ $rc -eq 0 ] || fail "watch under a pty: exit $rc"
grep -aq "$bid.*%|.*| *[0-9]*/$N \[.*jobs/s" "$TMP/watch.tty" ||
    { fail "watch under a pty drew no progress bar:"; tail -c 400 "$TMP/watch.tty" >&2; }
grep -aq "$N/$N" "$TMP/watch.tty" || fail "watch's bar never reached $N/$N"
"$LISA" wait "$bid" --timeout 60 >"$TMP/wait.txt" 2>&1
rc=$?
[ $rc -eq 0 ] || { fail "wait: exit $rc"; cat "$TMP/wait.txt" >&2; }

"$LISA" status "$bid" >"$TMP/status1.txt" 2>&1
grep -q "^$bid $N total | CD $N R 0 PD 0 RT 0 F 0 CA 0 CG 0 " "$TMP/status1.txt" ||
    { fail "status after:"; cat "$TMP/status1.txt" >&2; }
# exactly once: every job started once, done once
"$LISA" status "$bid" --jobs --no-header >"$TMP/jobs.txt" 2>&1
[ "$(awk '$4 == "CD" && $6 == "1/3"' "$TMP/jobs.txt" | wc -l)" -eq $N ] ||
    { fail "not every job is CD with one attempt:"; grep -v ' CD .* 1/3 ' "$TMP/jobs.txt" | head -5 >&2; }
n_done=$(rcli XRANGE lisa:events - + | grep -c '^done$')
[ "$n_done" -eq $N ] || fail "$n_done done events for $N jobs"

"$LISA" workers >"$TMP/workers.txt" 2>&1 || fail "workers: exit $?"
for w in w1 w2; do
    d=$(awk -v w=$w '$1 == w { print $8 }' "$TMP/workers.txt")
    [ "${d:-0}" -gt 0 ] 2>/dev/null || { fail "worker $w did no job:"; cat "$TMP/workers.txt" >&2; }
done

"$LISA" result "$bid" --out "$TMP/q" >"$TMP/result.txt" 2>&1
rc=$?
[ $rc -eq 0 ] || { fail "result: exit $rc"; tail -3 "$TMP/result.txt" >&2; }
same_results "$TMP/ref" "$TMP/q" || fail "lisa result differs from lisa segment"
[ "$(wc -l <"$TMP/q/results.jsonl")" -eq $N ] || fail "results.jsonl has $(wc -l <"$TMP/q/results.jsonl") lines"
[ ! -s "$TMP/q/errors.jsonl" ] || fail "errors.jsonl is not empty"

# submit --wait on one image: the same answer and masks as lisa segment
"$LISA" segment --model "$FIX/lisa-tiny/model" --image "$FIX/images/coffee.jpg" \
    --prompt "Segment the cup." --answer "[SEG]." --out "$TMP/ref1" --threads 1 >/dev/null 2>&1
"$LISA" submit "$FIX/images/coffee.jpg" --prompt "Segment the cup." --answer "[SEG]." \
    --custom-id 0 --wait --timeout 60 >"$TMP/one.txt" 2>&1
rc=$?
[ $rc -eq 0 ] || { fail "submit --wait: exit $rc"; cat "$TMP/one.txt" >&2; }
job=$(sed -n 's/^Submitted job \([^ ]*\).*/\1/p' "$TMP/one.txt")
[ -n "$job" ] || { fail "submit printed no job id:"; cat "$TMP/one.txt" >&2; }
"$LISA" result "$job" --out "$TMP/q1" >/dev/null 2>&1 || fail "result $job: exit $?"
cmp -s "$TMP/ref1/0/result.json" "$TMP/q1/0/result.json" || fail "single job: result.json differs"
cmp -s "$TMP/ref1/0/mask_0.png" "$TMP/q1/0/mask_0.png" || fail "single job: mask_0.png differs"

# watch without a terminal: one line per event, then the exit status
bid2=$("$LISA" submit --manifest "$TMP/jobs.jsonl" --parsable --name again 2>/dev/null | head -1)
sleep 0.5
# SIGTERM drains: w1 finishes what it holds, stores it, and exits 0
kill -TERM $W1
wait $W1
rc=$?
[ $rc -eq 0 ] || fail "worker w1 after SIGTERM: exit $rc"
grep -q "stopping" "$TMP/w1.log" || fail "w1 did not log that it was stopping"
timeout 600 "$LISA" watch "$bid2" >"$TMP/watch.txt" 2>&1
rc=$?
[ $rc -eq 0 ] || fail "watch (no tty): exit $rc"
grep -Eq "^[0-9T:-]+Z ${bid2}_[0-9]+ CD" "$TMP/watch.txt" || { fail "watch printed no CD events:"; head -3 "$TMP/watch.txt" >&2; }
"$LISA" status "$bid2" --jobs --no-header >"$TMP/jobs2.txt" 2>&1
[ "$(awk '$4 == "CD" && $6 == "1/3"' "$TMP/jobs2.txt" | wc -l)" -eq $N ] ||
    { fail "after w1's drain, not every job CD once:"; grep -v ' CD .* 1/3 ' "$TMP/jobs2.txt" | head -5 >&2; }

kill -TERM $W2
wait $W2
[ $fails -eq 0 ] && echo "queue-batch: $N jobs, 2 workers: all done once, results equal lisa segment"
[ $fails -eq 0 ]
