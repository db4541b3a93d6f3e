#!/bin/sh
# queue-security.sh: hostile or mistaken input to the queue, on a real
# redis-server with ACL users per role (`lisa queue --acl ROLE` gives the
# rules) and a real worker. Each of these is refused with a clear reason,
# and the worker keeps serving the good jobs around them:
#   - a request that is not a protobuf message (written straight into Redis)
#   - a request over the worker's --max-message-bytes
#   - image paths outside the worker's --image-root: absolute elsewhere,
#     "..", a symlink inside the root pointing out
#   - a wrong password (exit 77, WRONGPASS named), no password at all
#   - the submitter's ACL user calling worker functions (FCALL lisa_start,
#     lisa_finish), reading the work stream, writing a result: NOPERM; and
#     `lisa worker` run with the submitter's credentials: exit 77
# Usage: sh queue-security.sh LISA_BIN FIXTURES_DIR
set -u
set -f
LISA=$1
FIX=$(cd "$2" && pwd)
TMP=$(mktemp -d)
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/redis-env.sh"
trap 'redis_cleanup; rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
ENG="--threads 1 --batch 2 --token-budget 24"

mkdir "$TMP/redis" "$TMP/root" "$TMP/outside"
cp "$FIX/images/tall.png" "$TMP/root/ok.png"
cp "$FIX/images/tall.png" "$TMP/outside/secret.png"
ln -s "$TMP/outside/secret.png" "$TMP/root/link.png"
redis_start "$TMP/redis" || exit 1

# ACL users per role; the default user is switched off
for role in submit worker admin; do
    "$LISA" queue --acl $role >"$TMP/acl.$role" 2>&1 || { fail "queue --acl $role: exit $?"; cat "$TMP/acl.$role" >&2; }
done
rcli ACL SETUSER sub on ">subpw" $(cat "$TMP/acl.submit") >/dev/null
rcli ACL SETUSER wrk on ">wrkpw" $(cat "$TMP/acl.worker") >/dev/null
rcli ACL SETUSER adm on ">admpw" $(cat "$TMP/acl.admin") >/dev/null
rcli ACL SETUSER default off >/dev/null
REDIS_AUTH="--user adm --pass admpw"
SUB=redis://sub:subpw@127.0.0.1:$REDIS_PORT
WRK=redis://wrk:wrkpw@127.0.0.1:$REDIS_PORT
printf 'wrkpw\n' >"$TMP/wrk.pw"

# wrong password, no password
"$LISA" status --redis "redis://sub:nope@127.0.0.1:$REDIS_PORT" >"$TMP/wrongpw.txt" 2>&1
rc=$?
[ $rc -eq 77 ] || fail "wrong password: exit $rc, want 77"
grep -q "WRONGPASS" "$TMP/wrongpw.txt" || { fail "wrong password message:"; cat "$TMP/wrongpw.txt" >&2; }
"$LISA" status --redis "redis://127.0.0.1:$REDIS_PORT" >"$TMP/nopw.txt" 2>&1
rc=$?
[ $rc -eq 77 ] || { fail "no password: exit $rc, want 77"; cat "$TMP/nopw.txt" >&2; }

# the worker runs as its own user, password from a file
worker_start wk $ENG --redis "redis://wrk@127.0.0.1:$REDIS_PORT" --redis-password-file "$TMP/wrk.pw" \
    --lease 3s --image-root "$TMP/root" --max-message-bytes 200000
WK=$WORKER_PID

# the submitter's jobs: good, by-path inside the root, and three escapes
b=$("$LISA" submit --redis "$SUB" "$FIX/images/tall.png" --prompt "Segment it." --answer "[SEG]." --parsable)
[ -n "$b" ] || fail "the submitter cannot submit"
p_ok=$("$LISA" submit --redis "$SUB" --by-path "$TMP/root/ok.png" --prompt "Segment it." --parsable)
p_abs=$("$LISA" submit --redis "$SUB" --by-path "$TMP/outside/secret.png" --prompt "x" --parsable)
p_dot=$("$LISA" submit --redis "$SUB" --by-path "$TMP/root/../outside/secret.png" --prompt "x" --parsable)
p_lnk=$("$LISA" submit --redis "$SUB" --by-path "$TMP/root/link.png" --prompt "x" --parsable)
# over the message cap: an inline image of 300 kB
head -c 300000 /dev/urandom >"$TMP/big.bin"
cat "$FIX/images/tall.png" "$TMP/big.bin" >"$TMP/big.png"
p_big=$("$LISA" submit --redis "$SUB" "$TMP/big.png" --prompt "x" --parsable)
# not a protobuf message at all, written by an admin straight through the function
bad=$(rcli FCALL lisa_batch_new 0 lisa "" "")
rcli FCALL lisa_submit 0 lisa "$bad" 0 garbage "" tester normal 3 600000 "x.png" "x" \
    "$(printf '\377\377\377\377garbage')" >/dev/null
for j in "$b" "$p_ok" "$p_abs" "$p_dot" "$p_lnk" "$p_big" "$bad"; do
    "$LISA" wait --redis "$SUB" "$j" --timeout 60 >/dev/null 2>&1
done
reason() { "$LISA" status --redis "$SUB" "$1" --jobs --no-header 2>/dev/null | head -1 | cut -c1-400; }
stc() { "$LISA" status --redis "$SUB" "$1" --jobs --no-header 2>/dev/null | awk 'NR == 1 { print $4 }'; }
[ "$(stc "$b")" = CD ] || fail "good inline job: $(reason "$b")"
[ "$(stc "$p_ok")" = CD ] || fail "good by-path job: $(reason "$p_ok")"
for j in "$p_abs" "$p_dot" "$p_lnk"; do
    [ "$(stc "$j")" = F ] || fail "path outside the roots not refused: $(reason "$j")"
    reason "$j" | grep -q "outside the image roots" || fail "path refusal reason: $(reason "$j")"
done
[ "$(stc "$p_big")" = F ] || fail "oversized message not refused: $(reason "$p_big")"
reason "$p_big" | grep -Eq "over the limit|too large|exceeds" || fail "oversize reason: $(reason "$p_big")"
[ "$(stc "$bad")" = F ] || fail "malformed protobuf not refused: $(reason "$bad")"
reason "$bad" | grep -qi "malformed\|protobuf" || fail "malformed reason: $(reason "$bad")"
kill -0 $WK 2>/dev/null || fail "the worker died on hostile jobs"
after=$("$LISA" submit --redis "$SUB" "$FIX/images/tall.png" --prompt "Segment it." --answer "[SEG]." --parsable)
"$LISA" wait --redis "$SUB" "$after" --timeout 60 >/dev/null 2>&1 || fail "a good job after the hostile ones did not finish"

# what the submitter may not do
sub() { redis-cli -p $REDIS_PORT --no-auth-warning --user sub --pass subpw "$@" 2>&1; }
sub FCALL lisa_start 0 lisa "${b}_0" lisa:jobs:normal 0-1 me | grep -q NOPERM || fail "submitter may FCALL lisa_start"
sub FCALL lisa_finish 0 lisa "${b}_0" lisa:jobs:normal 0-1 me 1 x 1000 | grep -q NOPERM || fail "submitter may FCALL lisa_finish"
sub XREADGROUP GROUP workers me COUNT 1 STREAMS lisa:jobs:normal ">" | grep -q NOPERM || fail "submitter may XREADGROUP"
sub SET "lisa:res:${b}_0" forged | grep -q NOPERM || fail "submitter may write a result"
sub HSET "lisa:worker:wk" state forged | grep -q NOPERM || fail "submitter may write a worker record"
"$LISA" worker --model "$FIX/lisa-tiny/model" --redis "$SUB" --threads 1 --name intruder \
    >"$TMP/intruder.log" 2>&1 &
IP=$!
ALL_PIDS="$ALL_PIDS $IP"
wait_for 30 sh -c "! kill -0 $IP 2>/dev/null"
wait $IP
rc=$?
[ $rc -eq 77 ] || { fail "worker with submitter credentials: exit $rc, want 77"; tail -3 "$TMP/intruder.log" >&2; }
grep -q "NOPERM\|permission" "$TMP/intruder.log" || fail "intruder worker message does not say why"
"$LISA" result --redis "$SUB" "$b" --out "$TMP/res" >/dev/null 2>&1 || fail "the submitter cannot read its result"

[ $fails -eq 0 ] && echo "queue-security: every hostile input refused with its reason; the worker kept serving"
[ $fails -eq 0 ]
