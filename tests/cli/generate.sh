#!/bin/sh
# `lisa generate` through the real binary: a good run, then every kind of bad
# checkpoint a user can hand it, each of which must give a clear message on
# stderr and a non-zero exit status (never a crash).
# Usage: sh generate.sh LISA_BIN FIXTURES_DIR
set -u
LISA=$1
FIX=$2
MODEL=$FIX/llama-mha
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

# expect_error NAME DIR PATTERN: generate on DIR must exit 1 with PATTERN on stderr.
expect_error() {
    "$LISA" generate --model "$2" --prompt "hello" --max-new-tokens 2 >"$TMP/out" 2>"$TMP/err"
    rc=$?
    if [ $rc -ne 1 ]; then fail "$1: exit status $rc, expected 1"; fi
    if ! grep -q -- "$3" "$TMP/err"; then
        fail "$1: stderr lacks '$3': $(cat "$TMP/err")"
    fi
}

# fresh copy of the good model in $TMP/m
fresh() {
    rm -rf "$TMP/m"
    mkdir "$TMP/m"
    cp "$MODEL/config.json" "$MODEL/model.safetensors" "$TMP/m/"
    cp "$FIX/tokenizer/tokenizer.model" "$TMP/m/"
}

"$LISA" generate --help >/dev/null || fail "--help exit status"
"$LISA" generate --model "$MODEL" >/dev/null 2>&1; [ $? -eq 2 ] || fail "missing --prompt is a usage error"
"$LISA" generate --model "$MODEL" --prompt x --max-new-tokens abc >/dev/null 2>&1
[ $? -eq 2 ] || fail "bad --max-new-tokens is a usage error"

# good run: 12 new tokens, prompt ids equal the tokenizer's with BOS
out=$("$LISA" generate --model "$MODEL" --prompt "Where would I put a wet umbrella?" \
    --max-new-tokens 12 --json) || fail "good run failed"
ids=$(printf 'Where would I put a wet umbrella?' | "$LISA" tokenize --tokenizer "$MODEL/tokenizer.model" --bos)
want="\"prompt_ids\": [$(echo "$ids" | sed 's/ /, /g')]"
echo "$out" | grep -qF "$want" || fail "prompt ids: got $out, want $want"
n_out=$(echo "$out" | sed 's/.*"output_ids": \[\([^]]*\)\].*/\1/' | tr ',' '\n' | grep -c .)
[ "$n_out" -eq 12 ] || fail "expected 12 output ids, got $n_out"
echo "$out" | grep -q '"stop": "length"' || fail "stop reason length"

expect_error "missing directory" "$TMP/nope" "nope"

fresh; printf '{"hidden_size": 24,' >"$TMP/m/config.json"
expect_error "malformed config.json" "$TMP/m" "config.json"

fresh; sed 's/"hidden_size": 24/"hidden_size": 48/' "$MODEL/config.json" >"$TMP/m/config.json"
sed -i 's/"num_attention_heads": 3/"num_attention_heads": 6/' "$TMP/m/config.json"
expect_error "wrong shape" "$TMP/m" "expected shape \[32000, 48\], found \[32000, 24\]"

fresh; LC_ALL=C sed -i 's/model\.norm\.weight/model.norX.weight/' "$TMP/m/model.safetensors"
expect_error "missing tensor" "$TMP/m" "model.norm.weight"

fresh; LC_ALL=C sed -i '0,/"BF16"/s//"BX16"/' "$TMP/m/model.safetensors"
expect_error "unknown dtype" "$TMP/m" "BX16"

fresh; size=$(wc -c <"$TMP/m/model.safetensors")
truncate -s $((size - 1000)) "$TMP/m/model.safetensors"
expect_error "truncated data (offsets out of range)" "$TMP/m" "beyond"

fresh; truncate -s 5 "$TMP/m/model.safetensors"
expect_error "truncated below the header length" "$TMP/m" "model.safetensors"

fresh; printf '\377\377\377\377\000\000\000\000' | dd of="$TMP/m/model.safetensors" bs=1 count=8 conv=notrunc 2>/dev/null
expect_error "header length beyond the file" "$TMP/m" "header"

fresh; head -c 3000 "$FIX/tokenizer/tokenizer.model" >"$TMP/m/tokenizer.model"
expect_error "corrupt tokenizer.model" "$TMP/m" "tokenizer.model"

fresh; rm "$TMP/m/tokenizer.model"
expect_error "missing tokenizer.model" "$TMP/m" "tokenizer.model"

if [ $fails -ne 0 ]; then echo "$fails failure(s)" >&2; exit 1; fi
echo "generate.sh: all checks passed"
