#!/bin/sh
# Builds the engine twice and runs the whole test suite on each build:
#   build/       Release, -Werror; with the CUDA backend when nvcc is found
#                (compiled and linked; its op cases report SKIPPED without a GPU)
#   build-asan/  Debug, ASan + UBSan, with the CUDA backend compiled as C++
#                against the CPU emulator (tests/cuda-emu, LISA_CUDA=EMU): the
#                CPU tests plus the CUDA ones (label cuda-emu) with every kernel
#                run on the host, so memory errors in kernels fail tests too;
#                no GPU or CUDA toolkit needed; then build-fuzz/ (clang,
#                libFuzzer) runs each fuzz harness for 8 s (scripts/fuzz.sh)
# Usage: scripts/test.sh [--no-asan]. --no-asan builds build-emu/ (Release,
# emulator, label cuda-emu only) instead of build-asan/: minutes faster.
# Assumes scripts/install-deps.sh ran.
set -eu
cd "$(dirname "$0")/.."
JOBS=$(nproc 2>/dev/null || echo 2)

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DLISA_WERROR=ON
cmake --build build -j "$JOBS"
(cd build && ctest --output-on-failure -j "$JOBS")

if [ "${1:-}" = "--no-asan" ]; then
    cmake -S . -B build-emu -DCMAKE_BUILD_TYPE=Release -DLISA_WERROR=ON -DLISA_CUDA=EMU
    cmake --build build-emu -j "$JOBS"
    (cd build-emu && ctest --output-on-failure -j "$JOBS" -L cuda-emu)
else
    cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DLISA_WERROR=ON -DLISA_SANITIZE=ON \
        -DLISA_CUDA=EMU
    cmake --build build-asan -j "$JOBS"
    # detect_leaks: every test must free what it allocates.
    (cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        ctest --output-on-failure -j "$JOBS")
    # Every fuzz harness under libFuzzer for a few seconds (docs/reliability.md).
    scripts/fuzz.sh --seconds 8
fi
echo "all tests passed"
