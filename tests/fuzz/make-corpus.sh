#!/bin/sh
# Regenerates the committed seed corpora tests/fuzz/corpus/<harness>/ from
# the test fixtures with fuzz-make-corpus (tests/fuzz/make-corpus.c).
# Usage: sh tests/fuzz/make-corpus.sh BUILD_DIR   (e.g. build-dev, built)
set -eu
cd "$(dirname "$0")/../.."
BUILD=${1:?usage: make-corpus.sh BUILD_DIR}
rm -rf tests/fuzz/corpus
mkdir -p tests/fuzz/corpus
"$BUILD"/bin/fuzz-make-corpus tests/fixtures tests/fuzz/corpus
du -sh tests/fuzz/corpus
