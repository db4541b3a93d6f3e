#!/bin/sh
# fault-env.sh: LISA_FAULT arms a whole process (fault injection builds):
# `lisa segment` with the Nth allocation, file read or backend allocation
# failing (start-up and the request both) exits 1 with a message on
# stderr, never a signal; a malformed LISA_FAULT stops the program with
# exit 2 naming it; unset, the run succeeds (the check can fail).
# Usage: sh fault-env.sh LISA_BIN FIXTURES_DIR
set -u
LISA=$1
FIX=$(cd "$2" && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
seg() {
    "$LISA" segment --model "$FIX/lisa-tiny/model" --threads 1 --image "$FIX/images/tiny.png" \
        --prompt "Segment it." --answer "[SEG]." --out "$TMP/out" >"$TMP/out.txt" 2>"$TMP/err.txt"
}
seg || fail "unfaulted segment: exit $?"
for spec in alloc:1 alloc:40 alloc:700 alloc:1500 io:3 io:30 io:58 backend:1 backend:74; do
    LISA_FAULT=$spec seg
    rc=$?
    [ $rc -eq 1 ] || fail "LISA_FAULT=$spec: exit $rc, want 1"
    grep -q "^lisa segment: " "$TMP/err.txt" || fail "LISA_FAULT=$spec: no message"
    [ $rc -eq 1 ] && echo "LISA_FAULT=$spec: $(head -1 "$TMP/err.txt" | cut -c1-120)"
done
LISA_FAULT=alloc:x seg
rc=$?
[ $rc -eq 2 ] && grep -q "LISA_FAULT: bad part 'alloc:x'" "$TMP/err.txt" ||
    fail "LISA_FAULT=alloc:x: exit $rc: $(cat "$TMP/err.txt")"
[ $fails -eq 0 ] && echo "fault-env: ok" || echo "fault-env: $fails failures" >&2
[ $fails -eq 0 ]
