#!/bin/sh
# fault-worker.sh: runs fault-worker (the worker loop's fault sweep) against
# a throw-away redis-server (tests/queue/redis-env.sh).
# Usage: sh fault-worker.sh FAULT_WORKER_BIN FIXTURES_DIR [KIND...]
set -u
BIN=$1
FIX=$(cd "$2" && pwd)
shift 2
LISA=false
TMP=$(mktemp -d)
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../queue/redis-env.sh"
trap 'redis_cleanup; rm -rf "$TMP"' EXIT
mkdir "$TMP/redis"
redis_start "$TMP/redis" || exit 1
"$BIN" "$FIX" "$REDIS_URL" "$@"
