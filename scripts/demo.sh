#!/bin/sh
# The README's main command: installs dependencies, builds, and runs LISA end
# to end (`lisa segment`) on sample images shipped in the repo, writing
# answers, masks, overlays and COCO RLE JSON under demo-out/.
#
# The model is tests/fixtures/lisa-tiny/model: a tiny LISA with RANDOM
# weights (CLIP, SAM and the LLM are a few hundred KB), its LLM trained for a
# few hundred steps only to answer with [SEG]. Its answers are canned and its
# masks are not meaningful; the run shows the whole path works on this
# machine: image decoding, CLIP, the prompt, generation with a KV cache,
# [SEG] -> SAM, masks and outputs. For a real checkpoint see README.md.
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$(nproc 2>/dev/null || echo 2)"
mkdir -p demo-out
cat >demo-out/jobs.jsonl <<JOBS
{"custom_id": "astronaut", "image": "$PWD/tests/fixtures/images/astronaut.jpg", "prompt": "Where is the astronaut in this picture? Please output segmentation mask."}
{"custom_id": "cat", "image": "$PWD/tests/fixtures/images/chelsea.png", "prompt": "Can you segment the cat in this image?"}
{"custom_id": "coffee", "image": "$PWD/tests/fixtures/images/coffee.jpg", "prompt": "Segment the food richest in vitamin C."}
JOBS
build/bin/lisa segment --model tests/fixtures/lisa-tiny/model --manifest demo-out/jobs.jsonl \
    --out demo-out
echo
echo "results: demo-out/results.jsonl; per request: demo-out/<id>/{answer.txt,mask_K.png,overlay.png,result.json}"
cat demo-out/results.jsonl | cut -c1-200
