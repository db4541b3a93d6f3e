#!/bin/sh
# The queue's following commands (status, wait, watch, cancel, queue,
# workers) with no Redis: --help names every option; an unreachable server
# (--redis or $LISA_REDIS on port 1) is exit 69 with "cannot reach Redis at
# HOST:PORT"; bad durations, states, formats and missing ids are usage
# errors (exit 2) found before connecting. Needs no server and no model.
# Usage: sh queue-offline.sh LISA_BIN FIXTURES_DIR
set -u
LISA=$1
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
DOWN=redis://127.0.0.1:1
unset LISA_REDIS LISA_REDIS_PASSWORD_FILE LISA_QUEUE_PREFIX

# expect CODE DESCRIPTION -- ARGS...: the exit status, stderr in $TMP/err
expect() {
    code=$1 what=$2
    shift 3
    "$LISA" "$@" >"$TMP/out" 2>"$TMP/err"
    rc=$?
    [ "$rc" = "$code" ] || fail "$what: lisa $*: exit $rc, not $code: $(cat "$TMP/err")"
}

common="--redis --redis-password-file --prefix -h --help"
help_names() {
    cmd=$1
    shift
    expect 0 "$cmd --help" -- "$cmd" --help
    for opt in "$@" $common; do
        grep -qF -- "$opt" "$TMP/out" || fail "$cmd --help does not name $opt"
    done
}
help_names status --jobs -t --states --json -i --iterate --no-header
help_names wait --timeout --quiet -q
help_names watch --interval --no-progress
help_names cancel -Q --quiet -t --states
help_names queue --dead --json -i --iterate --acl
help_names workers --json -o --output wide --no-header

"$LISA" --help >"$TMP/out" 2>&1 || fail "lisa --help"
for cmd in status wait watch cancel queue workers; do
    grep -q "^  $cmd " "$TMP/out" || fail "lisa --help does not list $cmd"
done

# unreachable: 69, with where and why
down() {
    expect 69 "unreachable" -- "$@"
    grep -qF "lisa $1: cannot reach Redis at 127.0.0.1:1: " "$TMP/err" ||
        fail "lisa $*: message: $(cat "$TMP/err")"
}
down status --redis $DOWN
down status B1 B1_0 --jobs --redis $DOWN
down wait B1 --timeout 5s --redis $DOWN
down watch B1 --redis $DOWN
down cancel B1_3 -Q --redis=$DOWN
down queue --dead --redis $DOWN
down workers -o wide --redis $DOWN
LISA_REDIS=$DOWN "$LISA" status B1 >"$TMP/out" 2>"$TMP/err"
[ $? = 69 ] || fail "\$LISA_REDIS is not used: $(cat "$TMP/err")"
grep -qF "127.0.0.1:1" "$TMP/err" || fail "\$LISA_REDIS message: $(cat "$TMP/err")"

# usage errors, found before connecting (so 2, not 69)
for d in 10x -5 "" 5mm s; do
    expect 2 "bad --timeout '$d'" -- wait B1 --timeout "$d" --redis $DOWN
done
grep -qF -- "--timeout expects a duration" "$TMP/err" || fail "--timeout message: $(cat "$TMP/err")"
for d in 0 abc -1 1y; do
    expect 2 "bad -i '$d'" -- status -i "$d" --redis $DOWN
    expect 2 "bad queue -i '$d'" -- queue -i "$d" --redis $DOWN
    expect 2 "bad --interval '$d'" -- watch B1 --interval "$d" --redis $DOWN
done
expect 2 "wait without ids" -- wait --redis $DOWN
expect 2 "watch without ids" -- watch --redis $DOWN
expect 2 "cancel without ids" -- cancel --redis $DOWN
expect 2 "bad state" -- status -t PD,XX --redis $DOWN
grep -qF -- "-t expects state codes" "$TMP/err" || fail "-t message: $(cat "$TMP/err")"
expect 2 "bad cancel state" -- cancel B1 -t nope --redis $DOWN
expect 2 "bad -o" -- workers -o yaml --redis $DOWN
expect 2 "unknown option" -- status --bogus --redis $DOWN
expect 2 "option without value" -- wait B1 --timeout
expect 2 "bad URL" -- status --redis http://x

# ACL rules per role, printed without a server
expect 0 "queue --acl submit" -- queue --acl submit --prefix team1 --redis $DOWN
grep -qF "+fcall|lisa_submit" "$TMP/out" || fail "submit rules: $(cat "$TMP/out")"
grep -qF "team1:" "$TMP/out" || fail "submit rules ignore --prefix: $(cat "$TMP/out")"
grep -qF "lisa_start" "$TMP/out" && fail "submit rules allow lisa_start: $(cat "$TMP/out")"
expect 0 "queue --acl worker" -- queue --acl worker
expect 2 "queue --acl bogus" -- queue --acl bogus

# accepted durations reach the connection (69)
for d in 30 30s 1.5m 2h 7d 500ms; do
    expect 69 "good --timeout '$d'" -- wait B1 --timeout "$d" --redis $DOWN
done
expect 69 "state names" -- status -t queued,R,cd --redis $DOWN

[ "$fails" = 0 ] || exit 1
echo "queue-offline: ok"
