#!/bin/sh
# Builds the engine three times and runs the tests on each build:
#   build/       Release, -Werror; with the CUDA backend when nvcc is found
#                (compiled and linked; its op cases report SKIPPED without a GPU)
#   build-emu/   Release, -Werror, the CUDA backend compiled as C++ against the
#                CPU emulator (tests/cuda-emu): the CUDA tests (label cuda-emu)
#                run every kernel on the host, no GPU or toolkit needed
#   build-asan/  Debug, ASan + UBSan, CPU only (memory and UB errors fail tests;
#                also proves the build without the CUDA toolkit)
# Usage: scripts/test.sh [--no-asan]. Assumes scripts/install-deps.sh ran.
set -eu
cd "$(dirname "$0")/.."
JOBS=$(nproc 2>/dev/null || echo 2)

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DLISA_WERROR=ON
cmake --build build -j "$JOBS"
(cd build && ctest --output-on-failure -j "$JOBS")

cmake -S . -B build-emu -DCMAKE_BUILD_TYPE=Release -DLISA_WERROR=ON -DLISA_CUDA=EMU
cmake --build build-emu -j "$JOBS"
(cd build-emu && ctest --output-on-failure -j "$JOBS" -L cuda-emu)

if [ "${1:-}" != "--no-asan" ]; then
    cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DLISA_WERROR=ON -DLISA_SANITIZE=ON \
        -DLISA_CUDA=OFF
    cmake --build build-asan -j "$JOBS"
    # detect_leaks: every test must free what it allocates.
    (cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        ctest --output-on-failure -j "$JOBS")
fi
echo "all tests passed"
