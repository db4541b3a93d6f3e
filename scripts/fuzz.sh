#!/bin/sh
# Builds the fuzz harnesses (tests/fuzz/fuzz-*.c) with clang and libFuzzer
# in build-fuzz/ (ASan + UBSan, every library instrumented for coverage)
# and runs each for a bounded time on its seed corpus and its regression
# inputs. New corpus entries go to a scratch directory, never into the repo.
# Any crash, leak, UBSan report, timeout or failed invariant fails the run
# (non-zero exit) and prints the input that caused it.
#
# Usage: scripts/fuzz.sh [--seconds N] [--only NAME] [--keep DIR] [-- LIBFUZZER_ARGS...]
#   --seconds N  run each harness N seconds (default 30)
#   --only NAME  only harness NAME (image, safetensors, ...: tests/fuzz/fuzz.cmake)
#   --keep DIR   scratch corpora and crash inputs under DIR (default: a temp
#                directory, removed when nothing failed)
# Extra arguments after -- go to every libFuzzer run (e.g. -runs=10000000).
# Assumes scripts/install-deps.sh ran (clang, libclang-rt-14-dev, libomp-dev).
set -eu
cd "$(dirname "$0")/.."
SECONDS_EACH=30
ONLY=""
KEEP=""
while [ $# -gt 0 ]; do
    case "$1" in
    --seconds) SECONDS_EACH="$2"; shift 2 ;;
    --only) ONLY="$2"; shift 2 ;;
    --keep) KEEP="$2"; shift 2 ;;
    --) shift; break ;;
    *) echo "usage: scripts/fuzz.sh [--seconds N] [--only NAME] [--keep DIR] [-- ARGS]" >&2; exit 2 ;;
    esac
done
# The harness list is fuzz.cmake's LISA_FUZZ_HARNESSES.
HARNESSES=$(awk '/^set\(LISA_FUZZ_HARNESSES/ {on = 1} on {print} on && /\)/ {exit}' \
    tests/fuzz/fuzz.cmake | tr -d '()\n' | sed 's/set *LISA_FUZZ_HARNESSES//; s/  */ /g')
if [ -n "$ONLY" ]; then
    case " $HARNESSES " in *" $ONLY "*) HARNESSES="$ONLY" ;;
    *) echo "fuzz.sh: no harness '$ONLY' (have: $HARNESSES)" >&2; exit 2 ;; esac
fi
JOBS=$(nproc 2>/dev/null || echo 2)
CC_FUZZ=${CC_FUZZ:-clang}
FLAGS="-g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined"
FLAGS="$FLAGS -fno-sanitize-recover=undefined"
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER="$CC_FUZZ" -DCMAKE_BUILD_TYPE=Debug \
    -DLISA_CUDA=OFF -DLISA_FUZZ_LIBFUZZER=ON -DCMAKE_C_FLAGS="$FLAGS" \
    -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
cmake --build build-fuzz -j "$JOBS" --target fuzz-all >/dev/null

SCRATCH=${KEEP:-$(mktemp -d "${TMPDIR:-/tmp}/lisa-fuzz.XXXXXX")}
mkdir -p "$SCRATCH"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:symbolize=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
# run_one NAME: one harness for its time; on failure it says why and leaves
# $SCRATCH/NAME/FAILED.
run_one() {
    h=$1
    shift
    work="$SCRATCH/$h"
    mkdir -p "$work/corpus" "$work/crashes"
    dirs="$work/corpus tests/fuzz/corpus/$h"
    [ -d "tests/fuzz/regress/$h" ] && dirs="$dirs tests/fuzz/regress/$h"
    dict=""
    case "$h" in
    config | st-index | safetensors | added-tokens | manifest | labelme)
        dict="-dict=tests/fuzz/json.dict" ;;
    esac
    # New entries are written to the first directory only (the scratch one).
    # -timeout: an input that takes 10 s is a hang; -rss_limit_mb bounds memory.
    if build-fuzz/bin/fuzz-"$h" $dirs -max_total_time="$SECONDS_EACH" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/crashes/" $dict "$@" \
        >"$work/log" 2>&1; then
        stats=$(grep -E '^stat::number_of_executed_units' "$work/log" | sed 's/.*: *//')
        cov=$(grep -E '#[0-9]+[[:space:]]+DONE' "$work/log" | tail -1 | sed 's/.*DONE[[:space:]]*//')
        echo "fuzz-$h: ok, $stats runs, $cov"
    else
        echo "fuzz-$h: FAILED; log: $work/log" >&2
        grep -E 'ERROR:|runtime error|fuzz invariant|Test unit written|SUMMARY' "$work/log" | head -8 >&2
        for c in "$work"/crashes/*; do [ -e "$c" ] && echo "fuzz-$h: input: $c" >&2; done
        : >"$work/FAILED"
    fi
}
# One harness per core at a time (each libFuzzer run is single-threaded).
running=0
for h in $HARNESSES; do
    run_one "$h" "$@" &
    running=$((running + 1))
    if [ $running -ge "$JOBS" ]; then
        wait
        running=0
    fi
done
wait
failed=""
for h in $HARNESSES; do
    if [ -e "$SCRATCH/$h/FAILED" ]; then failed="$failed $h"; fi
done
if [ -n "$failed" ]; then
    echo "fuzz.sh: failed:$failed (inputs and logs under $SCRATCH)" >&2
    exit 1
fi
[ -z "$KEEP" ] && rm -rf "$SCRATCH"
echo "fuzz.sh: all harnesses ran ${SECONDS_EACH}s each without a failure"
