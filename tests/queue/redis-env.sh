# redis-env.sh: sourced by the queue tests: a throw-away redis-server and
# `lisa worker` processes, all children of the test and killed with it.
#   redis_start DIR [ARGS...]  starts redis-server in DIR (AOF on, no RDB
#                              snapshots) on a random free port; sets
#                              REDIS_PORT, REDIS_PID, REDIS_URL and exports
#                              LISA_REDIS; extra ARGS go to redis-server
#   redis_restart              kill -9, then the same server from its AOF
#   rcli ARGS...               redis-cli on that server
#   worker_start NAME ARGS...  `lisa worker` in the background on the tiny
#                              model, log in $TMP/NAME.log; sets WORKER_PID
#   wait_for SECS CMD...       polls CMD every 0.1 s until it succeeds
# Needs LISA, FIX and TMP set by the caller.
REDIS_PORT= REDIS_PID= REDIS_URL=
redis_start() {
    _rs_dir=$1
    shift
    _rs_try=0
    while [ $_rs_try -lt 20 ]; do
        _rs_try=$((_rs_try + 1))
        REDIS_PORT=$(awk -v s="$$$_rs_try" 'BEGIN { srand(s); print 20000 + int(rand() * 40000) }')
        REDIS_DIR=$_rs_dir REDIS_EXTRA="$*"
        redis_spawn
        REDIS_PID=$!
        if wait_for 5 redis_up; then
            REDIS_URL=redis://127.0.0.1:$REDIS_PORT
            export LISA_REDIS=$REDIS_URL
            return 0
        fi
        kill -9 $REDIS_PID 2>/dev/null
        wait $REDIS_PID 2>/dev/null
    done
    echo "FAIL: cannot start redis-server (see $_rs_dir/redis.log)" >&2
    return 1
}
# redis-server itself in the background (so $! is its pid), as configured
# by redis_start; extra arguments must not contain spaces
redis_spawn() {
    redis-server --port $REDIS_PORT --bind 127.0.0.1 --dir "$REDIS_DIR" --appendonly yes \
        --save "" $REDIS_EXTRA >>"$REDIS_DIR/redis.log" 2>&1 &
}
redis_up() {
    kill -0 $REDIS_PID 2>/dev/null || return 1
    [ "$(redis-cli -p $REDIS_PORT --no-auth-warning ${REDIS_AUTH:-} ping 2>/dev/null)" = PONG ]
}
redis_restart() {
    kill -9 $REDIS_PID 2>/dev/null
    wait $REDIS_PID 2>/dev/null
    sleep 1
    redis_spawn
    REDIS_PID=$!
    wait_for 10 redis_up
}
rcli() { redis-cli -p $REDIS_PORT --no-auth-warning ${REDIS_AUTH:-} "$@"; }
wait_for() {
    _wf_n=$(($1 * 10))
    shift
    while [ $_wf_n -gt 0 ]; do
        "$@" && return 0
        sleep 0.1
        _wf_n=$((_wf_n - 1))
    done
    return 1
}
WORKER_PID= ALL_PIDS=
worker_start() {
    _ws_name=$1
    shift
    "$LISA" worker --model "$FIX/lisa-tiny/model" --threads 1 --name "$_ws_name" "$@" \
        >>"$TMP/$_ws_name.log" 2>&1 &
    WORKER_PID=$!
    ALL_PIDS="$ALL_PIDS $WORKER_PID"
}
# kills every worker worker_start started (and those the test added to
# ALL_PIDS) and the server
redis_cleanup() {
    for _rc_p in $ALL_PIDS; do kill -9 "$_rc_p" 2>/dev/null; done
    [ -n "$REDIS_PID" ] && kill -9 "$REDIS_PID" 2>/dev/null
    wait 2>/dev/null
}
# queue_manifest N: N valid requests in the format of `lisa segment
# --manifest` (custom ids j1..jN): 7 images, four prompts, teacher-forced
# answers with one and two [SEG]s, generation, a per-request max_new_tokens.
queue_manifest() {
    awk -v n="$1" -v img="$FIX/images" 'BEGIN {
        split("chelsea.png astronaut.jpg tall.png coffee.jpg exif6.jpg rocket.jpg wide.jpg", f, " ")
        split("Segment the cat.|Where is the person?|What is it?|Please segment the thing on the left.", p, "|")
        for (i = 1; i <= n; i++) {
            k = i % 4
            tail = k == 0 ? ", \"answer\": \"[SEG] and [SEG].\"" : k == 1 ? ", \"answer\": \"Sure, it is [SEG].\"" : k == 2 ? ", \"max_new_tokens\": 3" : ""
            printf "{\"custom_id\": \"j%d\", \"image\": \"%s/%s\", \"prompt\": \"%s %d\"%s}\n", i, img, f[1 + int((i - 1) / 4) % 7], p[1 + (i - 1) % 4], int((i - 1) / 28), tail
        }
    }'
}
# same_results REF OUT: results.jsonl (sorted) and every file under the
# per-request directories equal; prints what differs.
same_results() {
    sort "$1/results.jsonl" >"$TMP/same.a"
    sort "$2/results.jsonl" >"$TMP/same.b"
    cmp -s "$TMP/same.a" "$TMP/same.b" || {
        echo "results.jsonl differs:" >&2
        diff "$TMP/same.a" "$TMP/same.b" | cut -c1-200 | head -6 >&2
        return 1
    }
    diff -r -x results.jsonl -x errors.jsonl "$1" "$2" >"$TMP/same.diff" 2>&1 || {
        head -5 "$TMP/same.diff" >&2
        return 1
    }
}
