#!/bin/sh
# soak.sh: a long mixed workload through the Redis job queue while a chaos
# loop breaks its parts, then an account of every job by custom id.
#
# Workload (--jobs N, default 10000, --ci 200), submitted at the start:
#   - the main batch: queue_manifest-style requests (7 images, four prompts,
#     teacher-forced answers with one and two [SEG]s, generation, per-request
#     max_new_tokens), with every 50th request bad on purpose (a truncated
#     JPEG, a prompt too long for the context): a failed record expected;
#   - a --by-path batch (1%) whose image files are deleted after the submit:
#     a failed record expected ("cannot open" or "outside the image roots");
#   - a low-priority batch (1%) cancelled right after its submit: cancelled
#     expected.
# Served by --workers `lisa worker` processes and one `lisa cluster --redis`
# (3 ranks under mpirun, --no-cluster leaves it out), each restarted by a
# supervisor loop whenever it exits. Meanwhile the chaos loop fires its
# events, shuffled, spread over the main batch's progress (event k once
# k/(E+1) of it is final):
#   kill          kill -9 of a worker, or of one rank of the cluster (mpirun
#                 then ends the cluster job; its supervisor starts another)
#   stop          kill -STOP of a worker or of the cluster's coordinator for
#                 the lease plus 2 s, then -CONT (its late results must be
#                 refused by the fencing token)
#   redis-restart kill -9 of redis-server, then the same port and directory
#                 from its append-only file
#   client-kill   CLIENT KILL TYPE normal (every client's connection), or one
#                 client by id, alternately
# The reference is `lisa segment` on the main manifest, once per run, with
# the same engine settings, split over --ref-procs processes (default 2;
# --ci 1): a request's result does not depend on what it is batched with
# (the premise of comparing the queue's results with it at all).
#
# The account, by custom id, once every job is final:
#   present     the job ended as expected: done with a stored result (good
#               requests), failed with a record (bad ones), cancelled
#   equal       present and its record is lisa segment's line, byte for byte
#               (a by-path job: failed; a cancelled one: state CA)
#   duplicated  a job with more than one `done` event in P:events (its result
#               accepted twice) or more than one line in `lisa result`
#   lost        not present: no result, or failed where a result was
#               expected, or not final when the run gave up
# One summary line; exit 1 on any lost, duplicated or different job (or a
# chaos event that could not be carried out), 2 on a usage or set-up error.
# Jobs are submitted with --max-attempts 20: the chaos hits the same job
# several times on purpose, and a job that used up its attempts would be
# failed by design, not lost by the queue.
#
# Usage: scripts/soak.sh [--ci] [--jobs N] [--workers N] [--kills N] [--stops N]
#            [--redis-restarts N] [--client-kills N] [--lease SECONDS] [--no-cluster]
#            [--seed N] [--ref-procs N] [--lisa BIN] [--fixtures DIR] [--keep DIR]
#            [--timeout SECONDS]
# Needs redis-server, redis-cli, mpirun (unless --no-cluster), awk.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
JOBS=10000 WORKERS=3 KILLS=100 STOPS=20 RESTARTS=5 CKILLS=10 LEASE=3 CLUSTER=1 SEED=12 REFP=2
LISA= FIX=$ROOT/tests/fixtures KEEP= TIMEOUT=
usage() {
    sed -n '/^# Usage:/,/^# Needs/p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}
num() { case $2 in ''|*[!0-9]*) echo "soak: $1 needs a number, not '$2'" >&2; exit 2 ;; esac; }
while [ $# -gt 0 ]; do
    case $1 in
    --ci) JOBS=200 KILLS=6 STOPS=2 RESTARTS=1 CKILLS=2 LEASE=2 REFP=1 ;;
    --jobs|--workers|--kills|--stops|--redis-restarts|--client-kills|--lease|--seed|--timeout|--ref-procs)
        [ $# -ge 2 ] || usage
        num "$1" "$2"
        case $1 in
        --jobs) JOBS=$2 ;; --workers) WORKERS=$2 ;; --kills) KILLS=$2 ;; --stops) STOPS=$2 ;;
        --redis-restarts) RESTARTS=$2 ;; --client-kills) CKILLS=$2 ;; --lease) LEASE=$2 ;;
        --seed) SEED=$2 ;; --timeout) TIMEOUT=$2 ;; --ref-procs) REFP=$2 ;;
        esac
        shift ;;
    --no-cluster) CLUSTER=0 ;;
    --lisa) [ $# -ge 2 ] || usage; LISA=$2; shift ;;
    --fixtures) [ $# -ge 2 ] || usage; FIX=$2; shift ;;
    --keep) [ $# -ge 2 ] || usage; KEEP=$2; shift ;;
    -h|--help) usage ;;
    *) echo "soak: unknown option $1" >&2; usage ;;
    esac
    shift
done
[ "$JOBS" -ge 10 ] || { echo "soak: --jobs must be at least 10" >&2; exit 2; }
[ "$WORKERS" -ge 1 ] || { echo "soak: --workers must be at least 1" >&2; exit 2; }
[ "$LEASE" -ge 1 ] || { echo "soak: --lease must be at least 1" >&2; exit 2; }
[ "$REFP" -ge 1 ] || { echo "soak: --ref-procs must be at least 1" >&2; exit 2; }
if [ -z "$LISA" ]; then
    for b in "$ROOT/build/bin/lisa" "$ROOT/build-dev/bin/lisa"; do
        [ -x "$b" ] && { LISA=$b; break; }
    done
fi
[ -n "$LISA" ] && [ -x "$LISA" ] || { echo "soak: no lisa binary (build it, or --lisa BIN)" >&2; exit 2; }
LISA=$(cd "$(dirname "$LISA")" && pwd)/$(basename "$LISA")
FIX=$(cd "$FIX" && pwd) || exit 2
for c in redis-server redis-cli awk; do
    command -v $c >/dev/null 2>&1 || { echo "soak: $c not found" >&2; exit 2; }
done
[ $CLUSTER -eq 0 ] || command -v mpirun >/dev/null 2>&1 ||
    { echo "soak: mpirun not found (or --no-cluster)" >&2; exit 2; }
# the final wait: generous, since the machine may be shared
[ -n "$TIMEOUT" ] || TIMEOUT=$((600 + JOBS / 2))
if [ -n "$KEEP" ]; then
    mkdir -p "$KEEP" && TMP=$(cd "$KEEP" && pwd) || exit 2
else
    TMP=$(mktemp -d)
fi
MODEL=$FIX/lisa-tiny/model
ENG="--threads 1 --batch 4 --token-budget 24"
. "$ROOT/tests/queue/redis-env.sh"
HERE=$ROOT/tests/cluster
. "$ROOT/tests/cluster/mpi-env.sh"
SUPS= rc=2
cleanup() {
    touch "$TMP/stop"
    for f in "$TMP"/*.pid; do
        [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null
    done
    for p in $SUPS ${REF_PIDS:-}; do kill -9 "$p" 2>/dev/null; done
    redis_cleanup
    [ -n "$KEEP" ] || [ $rc -ne 0 ] || rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 2' INT TERM
T0=$(date +%s)
log() { echo "soak: $(($(date +%s) - T0)) s: $*" >&2; }

# ---- the workload
N_GONE=$((JOBS / 100)) N_CANCEL=$((JOBS / 100))
[ $N_GONE -ge 2 ] || N_GONE=2
[ $N_CANCEL -ge 2 ] || N_CANCEL=2
N_MAIN=$((JOBS - N_GONE - N_CANCEL))
head -c 2000 "$FIX/images/coffee.jpg" >"$TMP/truncated.jpg"
awk -v n=$N_MAIN -v img="$FIX/images" -v tmp="$TMP" 'BEGIN {
    split("chelsea.png astronaut.jpg tall.png coffee.jpg exif6.jpg rocket.jpg wide.jpg", f, " ")
    split("Segment the cat.|Where is the person?|What is it?|Please segment the thing on the left.", p, "|")
    for (w = 0; w < 600; w++) long = long "word" w " "
    for (i = 1; i <= n; i++) {
        if (i % 50 == 0) {
            printf "{\"custom_id\": \"m%d\", \"image\": \"%s/truncated.jpg\", \"prompt\": \"bad %d\"}\n", i, tmp, i
            continue
        }
        if (i % 50 == 25) {
            printf "{\"custom_id\": \"m%d\", \"image\": \"%s/tall.png\", \"prompt\": \"%s%d\"}\n", i, img, long, i
            continue
        }
        k = i % 4
        tail = k == 0 ? ", \"answer\": \"[SEG] and [SEG].\"" : k == 1 ? ", \"answer\": \"Sure, it is [SEG].\"" : k == 2 ? ", \"max_new_tokens\": 3" : ""
        printf "{\"custom_id\": \"m%d\", \"image\": \"%s/%s\", \"prompt\": \"%s %d\"%s}\n", i, img, f[1 + int((i - 1) / 4) % 7], p[1 + (i - 1) % 4], int((i - 1) / 28), tail
    }
}' >"$TMP/main.jsonl"
mkdir -p "$TMP/gone"
i=0
while [ $i -lt $N_GONE ]; do
    i=$((i + 1))
    cp "$FIX/images/tall.png" "$TMP/gone/g$i.png"
    echo "{\"custom_id\": \"g$i\", \"image\": \"$TMP/gone/g$i.png\", \"prompt\": \"Where is it? $i\"}"
done >"$TMP/gone.jsonl"
head -n $N_CANCEL "$TMP/main.jsonl" | sed 's/"custom_id": "m/"custom_id": "c/' >"$TMP/cancel.jsonl"

# the reference runs next to the queue's servers (the machine's cores are
# shared either way); it is waited for before the account
log "reference: lisa segment on the $N_MAIN requests of the main batch, $REFP processes, in the background"
REF_PIDS=
i=0
while [ $i -lt $REFP ]; do
    awk -v k=$REFP -v i=$i 'NR % k == i' "$TMP/main.jsonl" >"$TMP/ref-in.$i.jsonl"
    "$LISA" segment --model "$MODEL" --manifest "$TMP/ref-in.$i.jsonl" --out "$TMP/ref.$i" $ENG \
        >/dev/null 2>"$TMP/ref.$i.err" &
    REF_PIDS="$REF_PIDS $!"
    i=$((i + 1))
done
T_REF=0
mkdir "$TMP/redis"
redis_start "$TMP/redis" || exit 2
export LISA_REDIS=$REDIS_URL
B_MAIN=$("$LISA" submit --manifest "$TMP/main.jsonl" --parsable --name soak-main --max-attempts 20) ||
    { echo "soak: submit failed" >&2; exit 2; }
B_CANCEL=$("$LISA" submit --manifest "$TMP/cancel.jsonl" --parsable --name soak-cancel \
    --priority low --max-attempts 20) || exit 2
"$LISA" cancel "$B_CANCEL" >"$TMP/cancel.out" 2>&1 || { echo "soak: cancel failed:" >&2; cat "$TMP/cancel.out" >&2; exit 2; }
B_GONE=$("$LISA" submit --manifest "$TMP/gone.jsonl" --by-path --parsable --name soak-gone \
    --max-attempts 20) || exit 2
rm -f "$TMP"/gone/g*.png
log "submitted $B_MAIN ($N_MAIN), $B_CANCEL ($N_CANCEL, cancelled), $B_GONE ($N_GONE, images deleted)"

# ---- the servers, each under a supervisor that restarts it when it exits
# supervise NAME CMD...: runs CMD again and again until $TMP/stop exists;
# the running one's pid is in $TMP/NAME.pid, each exit in $TMP/NAME.exits
supervise() {
    _sv_name=$1
    shift
    while [ ! -e "$TMP/stop" ]; do
        "$@" >>"$TMP/$_sv_name.log" 2>&1 &
        echo $! >"$TMP/$_sv_name.pid"
        wait $!
        echo "$(date +%s) $?" >>"$TMP/$_sv_name.exits"
        [ -e "$TMP/stop" ] || sleep 0.3
    done
    rm -f "$TMP/$_sv_name.pid"
}
SERVERS=
w=0
while [ $w -lt "$WORKERS" ]; do
    w=$((w + 1))
    supervise w$w "$LISA" worker --model "$MODEL" $ENG --name w$w --lease ${LEASE}s \
        --heartbeat 1s --image-root "$TMP/gone" 2>>"$TMP/supervise.log" &
    SUPS="$SUPS $!"
    SERVERS="$SERVERS w$w"
done
if [ $CLUSTER -eq 1 ]; then
    # 3 ranks: coordinator, one LLM stage, vision
    supervise c1 mpirun $MPI_ARGS -np 3 "$LISA" cluster --model "$MODEL" --stages 1 --threads 1 \
        --slots 4 --token-budget 24 --redis "$REDIS_URL" --name c1 --lease ${LEASE}s \
        --heartbeat 1s --image-root "$TMP/gone" --quiet-stats 2>>"$TMP/supervise.log" &
    SUPS="$SUPS $!"
    SERVERS="$SERVERS c1"
fi

# ---- the chaos loop
EVENTS=$(awk -v k=$KILLS -v s=$STOPS -v r=$RESTARTS -v c=$CKILLS -v seed=$SEED 'BEGIN {
    srand(seed)
    for (i = 0; i < k; i++) e[n++] = "kill"
    for (i = 0; i < s; i++) e[n++] = "stop"
    for (i = 0; i < r; i++) e[n++] = "redis-restart"
    for (i = 0; i < c; i++) e[n++] = "client-kill"
    for (i = n - 1; i > 0; i--) { j = int(rand() * (i + 1)); t = e[i]; e[i] = e[j]; e[j] = t }
    for (i = 0; i < n; i++) print e[i]
}')
N_EVENTS=$((KILLS + STOPS + RESTARTS + CKILLS))
done_kills=0 done_stops=0 done_restarts=0 done_ckills=0 misfired=0 cluster_kills=0
RNG=$SEED
# rand N: sets R to a number 0..N-1 (a small LCG, reproducible by --seed;
# not in a $(...) subshell, which would lose its state)
rand() {
    RNG=$(( (RNG * 1103515245 + 12345) % 2147483648 ))
    R=$(( (RNG / 65536) % $1 ))
}
pick_server() {
    set -- $SERVERS
    rand $#
    shift $R
    S=$1
}
# sets P to the pid of a live process of server $1 (c1: a random rank, or
# with $2 = coord its coordinator, rank 0); empty between restarts
server_pid() {
    P=
    _sp=$(cat "$TMP/$1.pid" 2>/dev/null) || return 0
    kill -0 "$_sp" 2>/dev/null || return 0
    case $1 in
    c*)
        _sr=$(pgrep -P "$_sp" 2>/dev/null | sort -n)
        [ -n "$_sr" ] || return 0
        if [ "${2:-}" = coord ]; then
            for _p in $_sr; do
                tr '\0' '\n' <"/proc/$_p/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=0' &&
                    { P=$_p; return 0; }
            done
            return 0
        fi
        set -- $_sr
        rand $#
        shift $R
        P=$1 ;;
    *) P=$_sp ;;
    esac
}
# final count of the main batch (done + failed + cancelled), or empty
main_final() {
    "$LISA" status "$B_MAIN" 2>/dev/null |
        awk '{ for (i = 1; i < NF; i++) if ($i == "CD" || $i == "F" || $i == "CA") s += $(i + 1); n = 1 } END { if (n) print s + 0 }'
}
fire() {
    case $1 in
    kill)
        pick_server
        server_pid $S
        [ -n "$P" ] || { sleep 1; server_pid $S; }
        [ -n "$P" ] || return 1
        kill -9 "$P" 2>/dev/null || return 1
        done_kills=$((done_kills + 1))
        case $S in c*) cluster_kills=$((cluster_kills + 1)) ;; esac
        log "kill -9 $S (pid $P)" ;;
    stop)
        pick_server
        server_pid $S coord
        [ -n "$P" ] || { sleep 1; server_pid $S coord; }
        [ -n "$P" ] || return 1
        kill -STOP "$P" 2>/dev/null || return 1
        log "kill -STOP $S (pid $P) for $((LEASE + 2)) s"
        sleep $((LEASE + 2))
        kill -CONT "$P" 2>/dev/null
        done_stops=$((done_stops + 1)) ;;
    redis-restart)
        redis_restart || { echo "soak: redis-server did not come back" >&2; return 1; }
        done_restarts=$((done_restarts + 1))
        log "redis-server killed and restarted from its AOF" ;;
    client-kill)
        if [ $((done_ckills % 2)) -eq 0 ]; then
            _n=$(rcli CLIENT KILL TYPE normal 2>/dev/null)
            log "CLIENT KILL TYPE normal: $_n connections"
        else
            _ids=$(rcli CLIENT LIST TYPE normal 2>/dev/null | sed -n 's/^id=\([0-9]*\) .*/\1/p')
            set -- $_ids
            [ $# -gt 1 ] || return 1
            # not the last one: that is this CLIENT LIST's own connection
            rand $(($# - 1))
            shift $R
            rcli CLIENT KILL ID "$1" >/dev/null 2>&1 || return 1
            log "CLIENT KILL ID $1"
        fi
        done_ckills=$((done_ckills + 1)) ;;
    esac
    return 0
}
k=0
for ev in $EVENTS; do
    k=$((k + 1))
    at=$((k * N_MAIN / (N_EVENTS + 1)))
    while :; do
        f=$(main_final)
        [ -n "$f" ] && [ "$f" -ge $at ] && break
        [ $(($(date +%s) - T0)) -lt $((T_REF + TIMEOUT)) ] || break
        sleep 0.2
    done
    tries=0
    until fire "$ev"; do
        tries=$((tries + 1))
        [ $tries -lt 10 ] || { misfired=$((misfired + 1)); log "could not fire $ev"; break; }
        sleep 0.5
    done
done
log "chaos done: $done_kills kills ($cluster_kills of the cluster), $done_stops stops, $done_restarts redis restarts, $done_ckills client kills"

# ---- the account
left=$((T_REF + TIMEOUT - ($(date +%s) - T0)))
[ $left -gt 10 ] || left=10
"$LISA" wait "$B_MAIN" "$B_GONE" "$B_CANCEL" --timeout ${left}s >"$TMP/wait.out" 2>&1
log "wait: exit $? ($(tail -1 "$TMP/wait.out"))"
touch "$TMP/stop"
for s in $SERVERS; do
    p=$(cat "$TMP/$s.pid" 2>/dev/null) || continue
    case $s in c*) kill -USR1 "$p" 2>/dev/null ;; *) kill -TERM "$p" 2>/dev/null ;; esac
done
for p in $SUPS; do
    t=0
    while kill -0 "$p" 2>/dev/null && [ $t -lt 100 ]; do sleep 0.1; t=$((t + 1)); done
done
for p in $SUPS; do kill -9 "$p" 2>/dev/null; done
for f in "$TMP"/*.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done

i=0
for p in $REF_PIDS; do
    wait $p
    [ $? -le 1 ] && [ -s "$TMP/ref.$i/results.jsonl" ] ||
        { echo "soak: lisa segment failed:" >&2; tail -3 "$TMP/ref.$i.err" >&2; exit 2; }
    i=$((i + 1))
done
cat "$TMP"/ref.*/results.jsonl >"$TMP/ref.jsonl"
log "reference done: $(wc -l <"$TMP/ref.jsonl") results"
"$LISA" result "$B_MAIN" >"$TMP/main.res" 2>/dev/null
"$LISA" result "$B_GONE" >"$TMP/gone.res" 2>/dev/null
for b in $B_MAIN $B_GONE $B_CANCEL; do
    "$LISA" status "$b" --jobs --no-header 2>/dev/null | awk -v b=$b '{ print b, $1, $2, $4 }'
done >"$TMP/states"
# every event: job state (redis-cli --raw prints an entry's id, then its
# field and value lines)
rcli --raw XRANGE lisa:events - + 2>/dev/null | awk '
    /^[0-9]+-[0-9]+$/ { if (job != "" && st == "done") print job; job = ""; st = ""; f = ""; next }
    f == "" { f = $0; next }
    { if (f == "job") job = $0; else if (f == "state") st = $0; f = "" }
    END { if (job != "" && st == "done") print job }' | sort | uniq -c | awk '{ print $2, $1 }' >"$TMP/done-events"
n_events=$(rcli XLEN lisa:events 2>/dev/null)
first_event=$(rcli --raw XRANGE lisa:events - + COUNT 1 2>/dev/null | sed -n 3p)

# expected per custom id: the reference line (main), "failed" (gone), "cancelled"
summary=$(awk -v ref="$TMP/ref.jsonl" -v res="$TMP/main.res" -v gres="$TMP/gone.res" \
    -v states="$TMP/states" -v ev="$TMP/done-events" -v bm=$B_MAIN -v bg=$B_GONE -v bc=$B_CANCEL \
    -v bad="$TMP/bad.txt" '
    function cid(line) { return match(line, /^\{"custom_id":"[^"]*"/) ? substr(line, 15, RLENGTH - 15) : "" }
    BEGIN {
        while ((getline l < ref) > 0) { c = cid(l); want[c] = l; kind[c] = l ~ /"status":"ok"/ ? "ok" : "bad" }
        while ((getline l < states) > 0) {
            split(l, a, " ")
            state[a[3]] = a[4]; job[a[3]] = a[2]; njob[a[3]]++
            if (a[1] == bg) kind[a[3]] = "gone"
            if (a[1] == bc) kind[a[3]] = "cancel"
        }
        while ((getline l < res) > 0) { c = cid(l); got[c] = l; nres[c]++ }
        while ((getline l < gres) > 0) { c = cid(l); got[c] = l; nres[c]++ }
        while ((getline l < ev) > 0) { split(l, a, " "); dones[a[1]] = a[2] }
        for (c in kind) {
            n++
            k = kind[c]; s = state[c]
            ok = k == "ok" ? s == "CD" && nres[c] >= 1 : k == "bad" || k == "gone" ? s == "F" && nres[c] >= 1 : s == "CA"
            if (!ok) { lost++; print "lost " c " (" job[c] "): " k ", state " s ", " nres[c] + 0 " results" > bad; continue }
            present++
            eq = k == "ok" || k == "bad" ? got[c] == want[c] : k == "gone" ? got[c] ~ /"status":"failed"/ : 1
            if (eq) equal++
            else print "different " c " (" job[c] "): " substr(got[c], 1, 300) "\n   want " substr(want[c], 1, 300) > bad
            if (dones[job[c]] > 1 || nres[c] > 1 || njob[c] > 1) {
                dup++
                print "duplicated " c " (" job[c] "): " dones[job[c]] + 0 " done events, " nres[c] + 0 " results, " njob[c] " jobs" > bad
            }
        }
        printf "%d %d %d %d %d\n", n, present, equal, dup, lost
    }')
set -- $summary
n_jobs=$1 present=$2 equal=$3 dup=$4 lost=$5
secs=$(($(date +%s) - T0))
echo "soak: $n_jobs jobs, $done_kills kills, $done_stops stops, $done_restarts redis restarts, $done_ckills client kills, $present present, $equal equal, $dup duplicated, $lost lost, $secs s"
rc=0
[ "$n_jobs" -eq "$JOBS" ] || { echo "soak: $n_jobs jobs accounted, $JOBS submitted" >&2; rc=1; }
[ "$lost" -eq 0 ] && [ "$dup" -eq 0 ] && [ "$equal" -eq "$present" ] || rc=1
[ $misfired -eq 0 ] || { echo "soak: $misfired chaos events could not be fired" >&2; rc=1; }
# the duplicate count needs every job's events: none trimmed from P:events
case $first_event in
"${B_MAIN}_"*) ;;
*) echo "soak: P:events ($n_events entries) no longer starts at the first submit ($first_event): duplicates not fully counted" >&2; rc=1 ;;
esac
if [ -s "$TMP/bad.txt" ]; then
    head -20 "$TMP/bad.txt" >&2
fi
[ $rc -eq 0 ] || echo "soak: FAILED (logs kept in $TMP)" >&2
exit $rc
