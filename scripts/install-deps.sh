#!/bin/sh
# Installs the Debian packages the engine builds and tests with.
# Used by new users and by .ci/run alike, so both see the same toolchain.
# clang (Debian 12: clang-14) with libclang-rt-14-dev (libFuzzer and the
# sanitizer runtimes, only recommended by clang) and libomp-dev (OpenMP for
# clang) build the fuzz harnesses (scripts/fuzz.sh).
# It does not install Python: the reference-fixture scripts have their own
# setup (tests/reference/README.md) and CI never needs them.
set -eu
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
    build-essential cmake pkg-config \
    libopenblas-dev libcjson-dev libjpeg-dev libpng-dev \
    libprotobuf-c-dev protobuf-c-compiler \
    openmpi-bin libopenmpi-dev iproute2 \
    redis-server redis-tools libhiredis-dev bsdutils \
    clang libclang-rt-14-dev libomp-dev
