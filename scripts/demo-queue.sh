#!/bin/sh
# The queue demo: a local redis-server (AOF on, noeviction, in a temp dir,
# on a free port), two `lisa worker` processes on the tiny model, the demo
# images submitted as one batch, followed with `lisa watch`, and the
# results fetched with `lisa result` into demo-queue-out/ (the same files
# `lisa segment` writes). Everything it starts is stopped on exit.
#
# Builds build/ first (incremental; run scripts/install-deps.sh once on a
# fresh machine). The model is the tiny random-weight LISA of
# scripts/demo.sh: it shows the path works, its masks mean nothing.
set -eu
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc 2>/dev/null || echo 2)" >/dev/null
LISA=$PWD/build/bin/lisa
MODEL=$PWD/tests/fixtures/lisa-tiny/model
IMG=$PWD/tests/fixtures/images
TMP=$(mktemp -d)
PIDS=""
cleanup() {
    for p in $PIDS; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

port=$(awk -v s=$$ 'BEGIN { srand(s); print 20000 + int(rand() * 40000) }')
redis-server configs/redis/lisa-redis.conf --port "$port" --bind 127.0.0.1 --dir "$TMP" \
    >"$TMP/redis.log" 2>&1 &
PIDS="$!"
export LISA_REDIS=redis://127.0.0.1:$port
i=0
until [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ]; do
    i=$((i + 1))
    [ $i -lt 50 ] || { echo "redis-server did not start:" >&2; cat "$TMP/redis.log" >&2; exit 1; }
    sleep 0.1
done
echo "redis-server on $LISA_REDIS (AOF in $TMP)"

for w in demo-w1 demo-w2; do
    "$LISA" worker --model "$MODEL" --name "$w" --batch 4 --threads 1 >"$TMP/$w.log" 2>&1 &
    PIDS="$PIDS $!"
done

cat >"$TMP/jobs.jsonl" <<JOBS
{"custom_id": "astronaut", "image": "$IMG/astronaut.jpg", "prompt": "Where is the astronaut in this picture? Please output segmentation mask."}
{"custom_id": "cat", "image": "$IMG/chelsea.png", "prompt": "Can you segment the cat in this image?"}
{"custom_id": "coffee", "image": "$IMG/coffee.jpg", "prompt": "Segment the food richest in vitamin C."}
{"custom_id": "rocket", "image": "$IMG/rocket.jpg", "prompt": "Segment the rocket.", "answer": "Sure, it is [SEG]."}
{"custom_id": "wide", "image": "$IMG/wide.jpg", "prompt": "Segment the left and the right object.", "answer": "[SEG] and [SEG]."}
JOBS
batch=$("$LISA" submit --manifest "$TMP/jobs.jsonl" --name demo --parsable)
echo "submitted batch $batch"
"$LISA" watch "$batch"
"$LISA" status "$batch"
"$LISA" workers
"$LISA" queue
rm -rf demo-queue-out
"$LISA" result "$batch" --out demo-queue-out
echo
echo "results: demo-queue-out/results.jsonl; per job: demo-queue-out/<custom_id>/{answer.txt,mask_K.png,overlay.png,result.json}"
cut -c1-200 demo-queue-out/results.jsonl
