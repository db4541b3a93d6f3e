#!/bin/sh
# tokenize.sh: end-to-end checks of `lisa tokenize`.
# Usage: sh tokenize.sh LISA_BINARY FIXTURES_DIR
# Compares encodes of tests/fixtures/tokenizer/cli-input.txt with the id
# lines gen_tokenizer.py wrote to cli-expected.txt (with added tokens, with
# --bos, pure SentencePiece), round-trips text through --decode, and checks
# --help and the failure exits. It does not re-test the tokenizer case by
# case (tests/unit/test-tokenizer.c does).
set -u
LISA=$1
FIX=$2/tokenizer
MODEL=$FIX/tokenizer.model
TMP=$(mktemp -d "${TMPDIR:-/tmp}/lisa-cli-tok.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT INT TERM
fails=0

fail() {
    echo "FAIL: $*" >&2
    fails=$((fails + 1))
}

expected() { # the ids of line "$1 ..." in cli-expected.txt
    sed -n "s/^$1 //p" "$FIX/cli-expected.txt"
}

# Encoding with the added_tokens.json found next to the model.
got=$("$LISA" tokenize --tokenizer "$MODEL" < "$FIX/cli-input.txt") || fail "encode exited $?"
[ "$got" = "$(expected hf)" ] || fail "encode with added tokens: got '$got'"

got=$("$LISA" tokenize --tokenizer "$MODEL" --added-tokens "$FIX/added_tokens.json" --bos \
      < "$FIX/cli-input.txt") || fail "encode --bos exited $?"
[ "$got" = "$(expected bos)" ] || fail "encode --bos: got '$got'"
case $got in 1\ *) ;; *) fail "--bos does not start with 1: '$got'" ;; esac

got=$("$LISA" tokenize --tokenizer "$MODEL" --no-added-tokens < "$FIX/cli-input.txt") ||
    fail "encode --no-added-tokens exited $?"
[ "$got" = "$(expected sp)" ] || fail "pure SentencePiece encode: got '$got'"

# A model copied alone into a folder has no added tokens either.
cp "$MODEL" "$TMP/tokenizer.model"
got=$("$LISA" tokenize --tokenizer "$TMP/tokenizer.model" < "$FIX/cli-input.txt")
[ "$got" = "$(expected sp)" ] || fail "model without added_tokens.json: got '$got'"

# Small known encodes.
got=$(printf 'Hello world' | "$LISA" tokenize --tokenizer "$MODEL")
[ "$got" = "15043 3186" ] || fail "Hello world: got '$got'"
got=$(printf '' | "$LISA" tokenize --tokenizer "$MODEL" --bos)
[ "$got" = "1" ] || fail "empty input with --bos: got '$got'"

# Round trips through --decode (exact bytes; no newline is added).
for text in "Hello world" "  two leading spaces, trailing tab	" "日本語 😀 Привет"; do
    printf '%s' "$text" > "$TMP/in.txt"
    "$LISA" tokenize --tokenizer "$MODEL" < "$TMP/in.txt" > "$TMP/ids.txt" ||
        fail "encode '$text'"
    "$LISA" tokenize --tokenizer "$MODEL" --decode < "$TMP/ids.txt" > "$TMP/out.txt" ||
        fail "decode '$text'"
    cmp -s "$TMP/in.txt" "$TMP/out.txt" || fail "round trip of '$text' gave '$(cat "$TMP/out.txt")'"
done
# Added tokens do not round-trip: the spaces around [SEG] are stripped and
# the chunk after it gets its own dummy-prefix space (as in transformers).
got=$(printf 'It is [SEG].' | "$LISA" tokenize --tokenizer "$MODEL")
[ "$got" = "739 338 32000 869" ] || fail "It is [SEG].: got '$got'"
got=$(printf '739 338 32000 869' | "$LISA" tokenize --tokenizer "$MODEL" --decode)
[ "$got" = "It is[SEG] ." ] || fail "decode of It is [SEG].: got '$got'"
"$LISA" tokenize --tokenizer "$MODEL" --no-added-tokens < "$FIX/cli-input.txt" > "$TMP/ids.txt"
"$LISA" tokenize --tokenizer "$MODEL" --decode < "$TMP/ids.txt" > "$TMP/out.txt"
cmp -s "$FIX/cli-input.txt" "$TMP/out.txt" || fail "round trip of cli-input.txt"

# Help and usage errors.
"$LISA" tokenize --help > "$TMP/help.txt" 2>&1 || fail "--help exited non-zero"
for opt in --tokenizer --added-tokens --no-added-tokens --bos --decode --help; do
    grep -q -e "$opt" "$TMP/help.txt" || fail "--help does not mention $opt"
done
"$LISA" tokenize < /dev/null > /dev/null 2>&1
[ $? -eq 2 ] || fail "missing --tokenizer should exit 2"
"$LISA" tokenize --tokenizer "$MODEL" --frobnicate < /dev/null > /dev/null 2>&1
[ $? -eq 2 ] || fail "unknown option should exit 2"

# Runtime errors: exit 1 with a message on stderr.
expect_error() { # description, then the command; stdin is /dev/null
    what=$1
    shift
    "$@" < /dev/null > /dev/null 2> "$TMP/err.txt"
    rc=$?
    [ $rc -eq 1 ] || fail "$what: exit $rc, want 1"
    [ -s "$TMP/err.txt" ] || fail "$what: nothing on stderr"
}
dd if="$MODEL" of="$TMP/trunc.model" bs=1000 count=1 2>/dev/null
expect_error "truncated model" "$LISA" tokenize --tokenizer "$TMP/trunc.model"
grep -q trunc.model "$TMP/err.txt" || fail "error does not name the truncated file"
printf 'this is not a protobuf \377\377\377\377' > "$TMP/junk.model"
expect_error "junk model" "$LISA" tokenize --tokenizer "$TMP/junk.model"
: > "$TMP/empty.model"
expect_error "empty model" "$LISA" tokenize --tokenizer "$TMP/empty.model"
expect_error "missing model" "$LISA" tokenize --tokenizer "$TMP/nope.model"
printf '{"[SEG]": "x"}' > "$TMP/bad.json"
expect_error "bad added tokens" "$LISA" tokenize --tokenizer "$MODEL" --added-tokens "$TMP/bad.json"
printf '1 2 banana' > "$TMP/ids.txt"
"$LISA" tokenize --tokenizer "$MODEL" --decode < "$TMP/ids.txt" > /dev/null 2> "$TMP/err.txt"
[ $? -eq 1 ] && [ -s "$TMP/err.txt" ] || fail "non-numeric id should exit 1 with a message"
printf '99999' > "$TMP/ids.txt"
"$LISA" tokenize --tokenizer "$MODEL" --decode < "$TMP/ids.txt" > /dev/null 2> "$TMP/err.txt"
[ $? -eq 1 ] && [ -s "$TMP/err.txt" ] || fail "out-of-range id should exit 1 with a message"

if [ $fails -ne 0 ]; then
    echo "tokenize.sh: $fails failure(s)" >&2
    exit 1
fi
echo "tokenize.sh: all checks passed"
