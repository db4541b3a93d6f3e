#!/bin/sh
# `lisa cluster plan` through the real binary: the tiny configuration's
# split and per-rank weight bytes (the embedding, layer and LM-head tensors
# of the bf16 checkpoint, each rounded to 256 bytes, worked out by hand
# below), a cost file written by `lisa bench llm --layer-costs` feeding the
# simulation, the LISA-13B configurations sized from configs/llama-13b.json
# alone (their splits, fitting 80 GiB, not fitting 20 GiB), and the errors:
# no configuration, a checkpoint that is not there, a bad cost file, a
# workload over the context, more stages than layers.
# Usage: sh cluster-plan.sh LISA_BIN FIXTURES_DIR
set -u
LISA=$1
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
has() { grep -qF -- "$2" "$1" || fail "$3: output lacks '$2': $(cat "$1")"; }

"$LISA" cluster plan --help >"$TMP/out" 2>"$TMP/err" ||
    fail "cluster plan --help exit status (is \`lisa cluster\` in main.c?): $(cat "$TMP/err")"
has "$TMP/out" "--costs FILE" "help"

# tiny model, 2 CPU stages: embedding (32003 x 16 bf16 = 1024096 -> 1024256)
# + one layer (2 norms 256 each, q/k/v/o 512 each, gate/up/down 2048 each:
# 8704) on stage 1; the layer + final norm (256) + LM head (1024256) on 2.
cd "$ROOT" || exit 1
"$LISA" cluster plan configs/cluster-tiny.json --clip tiny --sam tiny --json >"$TMP/tiny.json" \
    2>"$TMP/err" || fail "tiny plan failed: $(cat "$TMP/err")"
has "$TMP/tiny.json" '"bounds":[0,1,2]' "tiny"
has "$TMP/tiny.json" '"rank":1,"role":"stage 1","stage":1,"gpu":-1,"layers":[0,1],"weight_bytes":1032960' "tiny"
has "$TMP/tiny.json" '"rank":2,"role":"stage 2","stage":2,"gpu":-1,"layers":[1,2],"weight_bytes":1033216' "tiny"
has "$TMP/tiny.json" '"role":"vision"' "tiny"
has "$TMP/tiny.json" '"weight_dtype":"BF16"' "tiny"
grep -q '"requests_per_s"' "$TMP/tiny.json" && fail "tiny without costs was simulated"

"$LISA" bench llm --model "$ROOT/tests/fixtures/lisa-tiny/model" --dtype fp32 --threads 1 \
    --batches 1,4 --chunk 64 --layer-costs "$TMP/costs.json" >"$TMP/out" 2>"$TMP/err" ||
    fail "bench llm --layer-costs failed: $(cat "$TMP/err")"
for k in '"source": "measured"' '"hidden_size": 16' '"layer_fixed_s":' '"layer_token_s":' \
    '"head_row_s":'; do
    has "$TMP/costs.json" "$k" "layer costs"
done
"$LISA" cluster plan configs/cluster-tiny.json --clip tiny --sam tiny --costs "$TMP/costs.json" \
    --requests 12 --prompt-tokens 40 --new-tokens 5 --json >"$TMP/sim.json" 2>"$TMP/err" ||
    fail "tiny plan with costs failed: $(cat "$TMP/err")"
for k in '"requests_per_s":' '"tokens_per_s":' '"utilisation":' '"makespan_s":' \
    '"workload":{"requests":12,"prompt_tokens":40,"new_tokens":5'; do
    has "$TMP/sim.json" "$k" "tiny simulation"
done
"$LISA" cluster plan configs/cluster-tiny.json --clip tiny --sam tiny --costs "$TMP/costs.json" \
    --requests 12 >"$TMP/out" 2>"$TMP/err" || fail "tiny table failed: $(cat "$TMP/err")"
for k in 'throughput' 'stage 1' 'utilisation' 'layers balanced: 0-0 | 1-1'; do
    has "$TMP/out" "$k" "tiny table"
done

# LISA-13B from shapes alone
for n in 1 2 4; do
    "$LISA" cluster plan "configs/cluster-13b-${n}gpu.json" --shapes configs/llama-13b.json \
        --costs configs/costs-a100-80gb.json --json >"$TMP/13b-$n.json" 2>"$TMP/err" ||
        fail "13B on $n GPUs failed: $(cat "$TMP/err")"
    has "$TMP/13b-$n.json" '"fits":true' "13B on $n GPUs"
    has "$TMP/13b-$n.json" '"device":"cuda","dtype":"bf16"' "13B on $n GPUs"
done
has "$TMP/13b-1.json" '"bounds":[0,40]' "13B 1 GPU"
has "$TMP/13b-2.json" '"bounds":[0,40]' "13B 2 GPUs"
has "$TMP/13b-2.json" '"rank":2,"role":"vision","stage":-1,"gpu":1' "13B 2 GPUs"
has "$TMP/13b-4.json" '"bounds":[0,14,28,40]' "13B 4 GPUs"
# 40 layers x 317204480 + 2 x 163855360 + 5120 parameters in bf16
has "$TMP/13b-1.json" '"layers":[0,40],"weight_bytes":26031790080' "13B 1 GPU"
"$LISA" cluster plan configs/cluster-13b-1gpu.json --shapes configs/llama-13b.json \
    --device-memory-gb 20 >"$TMP/out" 2>"$TMP/err" || fail "13B on 20 GiB failed: $(cat "$TMP/err")"
has "$TMP/out" "NO" "13B on 20 GiB"
"$LISA" cluster plan configs/cluster-13b-1gpu.json --shapes configs/llama-13b.json \
    --device-memory-gb 20 --json | grep -qF '"fits":false' || fail "13B on 20 GiB: fits in JSON"
"$LISA" cluster plan configs/cluster-13b-4gpu.json --shapes configs/llama-13b.json --stages 4 \
    --json >"$TMP/out" 2>"$TMP/err" || fail "--stages 4 failed: $(cat "$TMP/err")"
has "$TMP/out" '"bounds":[0,10,20,30,40]' "--stages 4"

# quantized: the 13B LISA's weights (LLM with q4_0 projections and LM head,
# CLIP and SAM in bf16) under 10 GiB, q8_0 in between, and a misspelling
weights_gib() { sed -n 's/^weights *\([0-9.]*\) GiB in all.*/\1/p' "$1"; }
for q in none q8_0 q4_0; do
    "$LISA" cluster plan configs/cluster-13b-1gpu.json --shapes configs/llama-13b.json \
        --quantize $q >"$TMP/$q" 2>"$TMP/err" || fail "13B --quantize $q failed: $(cat "$TMP/err")"
done
has "$TMP/q4_0" "projections and LM head Q4_0" "13B q4_0"
w0=$(weights_gib "$TMP/none") w8=$(weights_gib "$TMP/q8_0") w4=$(weights_gib "$TMP/q4_0")
awk -v a="$w0" -v b="$w8" -v c="$w4" 'BEGIN { exit !(c > 0 && c < 10 && c < b && b < a) }' ||
    fail "13B weights none $w0, q8_0 $w8, q4_0 $w4 GiB: want q4_0 < 10 GiB < q8_0 < none"
"$LISA" cluster plan configs/cluster-13b-1gpu.json --shapes configs/llama-13b.json \
    --quantize q4_0 --json | grep -qF '"quantize":"Q4_0"' || fail "13B q4_0: quantize in JSON"
"$LISA" cluster plan configs/cluster-13b-1gpu.json --shapes configs/llama-13b.json \
    --quantize q5_1 >/dev/null 2>"$TMP/err"
[ $? -eq 2 ] || fail "--quantize q5_1: exit status not 2"
has "$TMP/err" "q8_0, q4_0 or none" "--quantize q5_1"

# errors
"$LISA" cluster plan >/dev/null 2>"$TMP/err"
[ $? -eq 2 ] || fail "no configuration: exit status not 2"
"$LISA" cluster plan configs/cluster-13b-2gpu.json >/dev/null 2>"$TMP/err"
[ $? -eq 1 ] || fail "missing checkpoint: exit status not 1"
has "$TMP/err" "--shapes" "missing checkpoint"
printf '{"layer_fixed_s": 1, "layer_fxed_s": 2}\n' >"$TMP/bad.json"
"$LISA" cluster plan configs/cluster-tiny.json --costs "$TMP/bad.json" >/dev/null 2>"$TMP/err"
[ $? -eq 2 ] || fail "bad cost file: exit status not 2"
has "$TMP/err" 'unknown key "layer_fxed_s"' "bad cost file"
"$LISA" cluster plan configs/cluster-tiny.json --prompt-tokens 600 >/dev/null 2>"$TMP/err"
[ $? -eq 2 ] || fail "workload over the context: exit status not 2"
has "$TMP/err" "do not fit a context of 512" "workload over the context"
"$LISA" cluster plan configs/cluster-tiny.json --stages 3 >/dev/null 2>"$TMP/err"
[ $? -eq 2 ] || fail "3 stages of 2 layers: exit status not 2"
has "$TMP/err" "3 stages for a model of 2 layers" "3 stages of 2 layers"

[ $fails -eq 0 ] && echo "cluster-plan: ok"
exit $((fails > 0))
