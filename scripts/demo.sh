#!/bin/sh
# The README's main command: installs dependencies, builds, and runs greedy
# generation on the embedded tiny LLaMA (tests/fixtures/llama-mha). Its
# weights are RANDOM (a test fixture made by tests/reference/gen_llama.py), so
# the text is gibberish; the run shows the whole path works on this machine:
# safetensors loading, the SentencePiece tokenizer, prefill, KV-cached decode.
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$(nproc 2>/dev/null || echo 2)"
build/bin/lisa generate --model tests/fixtures/llama-mha \
    --prompt "Where would I put a wet umbrella?" --max-new-tokens 24 --json
