#!/bin/sh
# queue-bench.sh: `lisa bench queue` on a real redis-server, small sizes.
# It checks what the bench promises, not its speed (benchmarks are read by
# people, never timed by tests):
#   - it runs, exits 0 and prints every row (submit rate, direct, queued,
#     the engine's and the queue's part, the difference, the noise floor)
#     with "results identical  yes: N of N";
#   - the queued run's parts add up: in the engine + in the queue is at
#     most the queued total (they are timed inside it);
#   - it leaves no key behind (DBSIZE 0), and a prefix that has keys is
#     refused with exit 2 and left alone.
# Usage: sh queue-bench.sh LISA_BIN FIXTURES_DIR
set -u
LISA=$1
FIX=$(cd "$2" && pwd)
TMP=$(mktemp -d)
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/redis-env.sh"
trap 'redis_cleanup; rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

mkdir "$TMP/redis"
redis_start "$TMP/redis" || exit 1
"$LISA" bench queue --model "$FIX/lisa-tiny/model" --jobs 300 --e2e-jobs 4 --rounds 2 \
    --threads 1 --batch 2 >"$TMP/out" 2>"$TMP/err"
rc=$?
[ $rc -eq 0 ] || fail "bench queue exited $rc: $(cat "$TMP/err")"
for row in "submit (pipelined) *300 " "engine, direct *4 " "engine through the queue *4 " \
    "  of which in the engine " "  of which in the queue .*of end to end (goal < 5%)" \
    "queued minus direct .*(rounds: " "direct minus the next direct .*(the noise floor)" \
    "results identical .*yes: 4 of 4 per round"; do
    grep -q "^$row" "$TMP/out" || fail "no row '$row' in: $(cat "$TMP/out")"
done
grep -q "medians of 2 rounds" "$TMP/out" || fail "header: $(head -1 "$TMP/out")"
awk '/^engine through the queue/ { q = $6 } /^  of which in the engine/ { e = $6 }
     /^  of which in the queue/ { u = $6 }
     END { exit !(q > 0 && e > 0 && u > 0 && e + u <= q + 0.002) }' "$TMP/out" ||
    fail "the queued run's parts do not add up: $(cat "$TMP/out")"
n=$(rcli DBSIZE)
[ "$n" = 0 ] || fail "bench left $n keys: $(rcli --scan | head -5)"

rcli SET mine:x 1 >/dev/null
"$LISA" bench queue --model "$FIX/lisa-tiny/model" --prefix mine --jobs 10 --e2e-jobs 1 \
    --rounds 1 >"$TMP/out2" 2>"$TMP/err2"
rc=$?
[ $rc -eq 2 ] || fail "a prefix with keys: exit $rc, want 2"
grep -q "prefix mine already has 1 keys" "$TMP/err2" || fail "refusal: $(cat "$TMP/err2")"
[ "$(rcli GET mine:x)" = 1 ] || fail "the refused bench touched mine:x"

[ $fails -eq 0 ] && echo "queue-bench: ok" && exit 0
exit 1
