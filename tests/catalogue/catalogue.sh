#!/bin/sh
# catalogue.sh: the malformed-input catalogue (docs/malformed-inputs.md),
# made and checked from the real commands.
#
# Every case makes one bad input from the fixtures (truncation, byte edits,
# JSON and protobuf edits with catalogue-forge, which uses cJSON and
# protobuf-c), runs the real `lisa` command on it from a scratch folder (so
# paths in commands and messages are relative), and records its exit status
# and the first line of its error. Job and result messages go through a real
# redis-server (tests/queue/redis-env.sh) and a real `lisa worker`; what the
# user sees there is `lisa wait`'s exit status and `lisa status`'s reason.
#
# A case fails the test when it exits 0 (unless the catalogue lists the
# input as tolerated, and then the command must succeed), is killed by a
# signal or the 60 s timeout, prints a sanitizer report, or its message does
# not match the case's pattern of what is wrong. The table generated must
# equal the one in the doc, so a changed message is a changed doc.
#
# It does not check that a good input still works (the cli-* and queue-*
# tests do) nor fuzz anything (tests/fuzz does).
#
# Usage: sh catalogue.sh LISA_BIN FIXTURES_DIR [--update]
#   --update rewrites the table in docs/malformed-inputs.md (it still fails
#   on a crash, a success or a vague message).
# catalogue-forge is taken from LISA_BIN's folder.
set -u
set -f
LISA=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
FIX=$(cd "$2" && pwd)
UPDATE=${3:-}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DOC=$ROOT/docs/malformed-inputs.md
FORGE=$(dirname "$LISA")/catalogue-forge
[ -x "$FORGE" ] || { echo "FAIL: no $FORGE (build target catalogue-forge)" >&2; exit 1; }
TMP=$(mktemp -d)
. "$ROOT/tests/queue/redis-env.sh"
trap 'redis_cleanup; rm -rf "$TMP"' EXIT
W=$TMP/w
mkdir -p "$W/out" "$TMP/redis"
cd "$W" || exit 1
ln -s "$FIX" fixtures
TABLE=$TMP/table.md
: >"$TABLE"
fails=0 n=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
M=fixtures/lisa-tiny/model
IMG=fixtures/images
forge() { "$FORGE" "$@" || fail "catalogue-forge $*"; }
# `lisa` on the PATH, so that commands run and read as a user types them
mkdir "$TMP/bin"
ln -s "$LISA" "$TMP/bin/lisa"
PATH=$TMP/bin:$PATH
STDIN=

# Makes stable text: the scratch and fixture folders' names, the Redis port.
stable() {
    sed -e "s#$W/##g" -e "s#$W#.#g" -e "s#$TMP#TMP#g" -e "s#$FIX#fixtures#g" \
        -e "s#127\.0\.0\.1:${REDIS_PORT:-none}#127.0.0.1:PORT#g" \
        -e 's/|/\\|/g' -e 's/`/'"'"'/g'
}
# Shows a command: each word, long ones cut (a prompt of 2000 words).
show() {
    for _w in "$@"; do
        case $_w in *" "* | "") _q="\"$_w\"" ;; *) _q=$_w ;; esac
        if [ ${#_q} -gt 44 ]; then _q="$(printf '%s' "$_q" | cut -c1-36)...\""; fi
        printf '%s ' "$_q"
    done | sed 's/ $//'
}
# The sanitizer's words for a report, in either build.
sanitized() { grep -Eq "ERROR: (Address|Leak|Undefined|Memory)Sanitizer|runtime error:|SUMMARY: .*Sanitizer" "$1"; }

# row AREA INPUT COMMAND STATUS TEXT: one table row.
row() {
    n=$((n + 1))
    printf '| %d | %s | %s | `%s` | %s | `%s` |\n' "$n" "$1" "$2" "$3" "$4" "$5" >>"$TABLE"
}

# bad AREA INPUT PATTERN CMD...: CMD must fail (exit 1..123) with a first
# error line matching the extended regex PATTERN (case-insensitive). stdin
# is $STDIN (default /dev/null).
bad() {
    _area=$1 _in=$2 _pat=$3
    shift 3
    timeout 60 "$@" <"${STDIN:-/dev/null}" >"$TMP/out" 2>"$TMP/err"
    _rc=$?
    _line=$(grep -v '^[[:space:]]*$' "$TMP/err" | head -1)
    [ -n "$_line" ] || _line=$(grep -v '^[[:space:]]*$' "$TMP/out" | head -1)
    _cmd=$(show "$@" | stable)
    [ -n "${STDIN:-}" ] && _cmd="$_cmd < $STDIN"
    _text=$(printf '%s' "$_line" | stable)
    if [ $_rc -eq 0 ]; then
        fail "$_in: exit 0 ($_cmd)"
    elif [ $_rc -ge 124 ]; then
        fail "$_in: exit $_rc, killed or timed out ($_cmd)"
        tail -5 "$TMP/err" >&2
    fi
    if sanitized "$TMP/err"; then
        fail "$_in: sanitizer report ($_cmd)"
        grep -m3 -E "Sanitizer|runtime error" "$TMP/err" >&2
    fi
    printf '%s' "$_line" | grep -Eiq -- "$_pat" || fail "$_in: message does not say /$_pat/: $_line"
    row "$_area" "$_in" "$_cmd" "$_rc" "$_text"
}

# tolerated AREA INPUT PATTERN CMD...: input the catalogue lists as accepted
# on purpose (as the reference does); CMD must exit 0, stdout matching.
tolerated() {
    _area=$1 _in=$2 _pat=$3
    shift 3
    timeout 60 "$@" </dev/null >"$TMP/out" 2>"$TMP/err"
    _rc=$?
    _line=$(head -1 "$TMP/out")
    _cmd=$(show "$@" | stable)
    [ $_rc -eq 0 ] || fail "$_in: tolerated input failed (exit $_rc): $(head -1 "$TMP/err")"
    sanitized "$TMP/err" && fail "$_in: sanitizer report ($_cmd)"
    printf '%s' "$_line" | grep -Eiq -- "$_pat" || fail "$_in: output not /$_pat/: $_line"
    row "$_area" "$_in (tolerated)" "$_cmd" "$_rc" "$(printf '%s' "$_line" | stable)"
}

# ------------------------------------------------------------------
# images: lisa preprocess decodes as every request does
pre() { bad image "$1" "$2" lisa preprocess --image "$3" --branch clip --out out/p.png; }
mkdir im
: >im/empty.jpg
pre "empty JPEG file" "empty" im/empty.jpg
head -c 300 $IMG/tiny.jpg >im/cut300.jpg
pre "JPEG cut after 300 of 700 bytes" "truncated" im/cut300.jpg
head -c 20 $IMG/tiny.jpg >im/cut20.jpg
pre "JPEG cut inside its first segment (20 bytes)" "truncated|corrupt" im/cut20.jpg
head -c 2 $IMG/tiny.jpg >im/soi.jpg
pre "JPEG of its SOI marker only" "truncated|corrupt|format" im/soi.jpg
head -c 60 $IMG/tiny.png >im/cut60.png
pre "PNG cut inside its image data" "truncated|corrupt" im/cut60.png
head -c 33 $IMG/tiny.png >im/ihdr.png
pre "PNG of signature and IHDR only" "truncated|corrupt" im/ihdr.png
cp $IMG/tiny.png im/crc.png
printf 'Z' | dd of=im/crc.png bs=1 seek=18 conv=notrunc 2>/dev/null
pre "PNG with an IHDR byte changed (CRC mismatch)" "crc|corrupt" im/crc.png
forge ihdr $IMG/tiny.png im/w0.png 0 5 8 2
pre "PNG of width 0 (CRC fixed)" "IHDR" im/w0.png
forge ihdr $IMG/tiny.png im/ct7.png 3 5 8 7
pre "PNG of colour type 7 (CRC fixed)" "IHDR|color|colour" im/ct7.png
forge ihdr $IMG/tiny.png im/wide.png 2147483647 1 8 2
pre "PNG 2^31-1 pixels wide (CRC fixed)" "IHDR|limit|width" im/wide.png
pre "PNG 60000x60000 (hostile fixture)" "over the limit" $IMG/hostile/huge.png
forge sof $IMG/tiny.jpg im/huge.jpg 65000 65000
pre "JPEG whose SOF says 65000x65000" "over the limit" im/huge.jpg
forge sof $IMG/tiny.jpg im/zero.jpg 0 16
pre "JPEG whose SOF says width 0" "empty|width|corrupt|image" im/zero.jpg
forge sof $IMG/tiny.jpg im/sof3.jpg 24 16 0xC3
pre "JPEG marked lossless (SOF3)" "unsupported" im/sof3.jpg
pre "CMYK JPEG (hostile fixture)" "CMYK" $IMG/hostile/cmyk.jpg
printf 'GIF89a\001\000\001\000\000\000\000;' >im/a.gif
pre "GIF image" "unrecognized image format" im/a.gif
printf 'BM\066\000\000\000\000\000\000\000\066\000\000\000' >im/a.bmp
pre "BMP image" "unrecognized image format" im/a.bmp
printf 'RIFF\030\000\000\000WEBPVP8 ' >im/a.webp
pre "WebP image" "unrecognized image format" im/a.webp
cp $M/config.json im/config.png
pre "a JSON text named .png" "unrecognized image format" im/config.png
pre "image path that does not exist" "no such file" im/none.png
pre "image path that is a folder" "directory|folder|regular file|read" im
tolerated image "JPEG with a malformed EXIF block" "^original" \
    lisa preprocess --image $IMG/hostile/exif-bad.jpg --branch clip --out out/p.png
tolerated image "JPEG with a second malformed EXIF block" "^original" \
    lisa preprocess --image $IMG/hostile/exif-bad2.jpg --branch clip --out out/p.png
SEG="--prompt x --answer [SEG]. --threads 1"
bad image "image over --max-image-pixels" "over the limit" \
    lisa segment --model $M --image $IMG/tall.png $SEG --max-image-pixels 1000
bad image "image over --max-image-bytes" "over the limit|larger" \
    lisa segment --model $M --image $IMG/tall.png $SEG --max-image-bytes 100

# ------------------------------------------------------------------
# model directories: lisa segment loads them as a worker does
mdir() { # mdir NAME: a copy of the tiny model of symlinks, to edit
    mkdir "$1"
    for _f in $(ls "$FIX/lisa-tiny/model"); do
        ln -s "$(readlink -f "$FIX/lisa-tiny/model/$_f")" "$1/$_f"
    done
}
mseg() { bad model "$1" "$2" lisa segment --model "$3" --image $IMG/tiny.png $SEG; }
mseg "model folder that does not exist" "no such file|cannot open" nomodel
: >notadir
mseg "model path that is a file" "not a directory|cannot open|no such" notadir
mdir m1 && rm m1/config.json
mseg "config.json missing" "config.json" m1
mdir m2 && rm m2/config.json && head -c 500 $M/config.json >m2/config.json
mseg "config.json cut at 500 bytes" "config.json.*JSON" m2
mdir m3 && rm m3/config.json && forge json $M/config.json m3/config.json 'hidden_size=-16'
mseg "config.json hidden_size -16" "hidden_size" m3
mdir m4 && rm m4/config.json && forge json $M/config.json m4/config.json 'vocab_size="32003"'
mseg "config.json vocab_size a string" "vocab_size" m4
mdir m5 && rm m5/config.json && forge json $M/config.json m5/config.json 'num_attention_heads=3'
mseg "config.json num_attention_heads 3 (does not divide 16)" "num_attention_heads|head" m5
mdir m6 && rm m6/config.json && forge json $M/config.json m6/config.json 'max_position_embeddings=0'
mseg "config.json max_position_embeddings 0" "max_position_embeddings" m6
mdir m7 && rm m7/config.json && forge json $M/config.json m7/config.json 'sam_config/encoder_num_heads=3'
mseg "config.json sam_config.encoder_num_heads 3 (does not divide 32)" "head" m7
mdir m8 && rm m8/config.json && forge json $M/config.json m8/config.json 'vision_config/patch_size=0'
mseg "config.json vision_config.patch_size 0" "patch_size" m8
mdir m9 && rm m9/config.json && forge json $M/config.json m9/config.json 'vocab_size=32004'
mseg "config.json vocab_size 32004 (tensors have 32003)" "vocab|shape" m9
mdir m10 && rm m10/config.json && forge json $M/config.json m10/config.json 'rms_norm_eps=-1'
mseg "config.json rms_norm_eps -1" "rms_norm_eps" m10
mdir m27 && rm m27/config.json && forge json $M/config.json m27/config.json 'eos_token_id=99999'
mseg "config.json eos_token_id 99999 (no such token)" "eos_token_id" m27
mdir m28 && rm m28/config.json && forge json $M/config.json m28/config.json 'sam_config/decoder_num_heads=0'
mseg "config.json sam_config.decoder_num_heads 0" "decoder_num_heads" m28
mdir m29 && rm m29/config.json && forge json $M/config.json m29/config.json 'mm_vision_select_feature="cls_patch"'
mseg "config.json mm_vision_select_feature cls_patch" "mm_vision_select_feature" m29
mdir m11 && rm m11/model.safetensors.index.json
mseg "model.safetensors.index.json missing" "index.json" m11
mdir m12 && rm m12/model.safetensors.index.json && echo '{"weight_map": ' >m12/model.safetensors.index.json
mseg "index.json not JSON" "index.json" m12
mdir m13 && rm m13/model.safetensors.index.json
forge json $M/model.safetensors.index.json m13/model.safetensors.index.json 'weight_map/model.norm.weight="model-00009-of-00003.safetensors"'
mseg "index.json maps a tensor to a shard that does not exist" "00009" m13
mdir m14 && rm m14/model-00003-of-00003.safetensors
mseg "a shard the index names is missing" "00003" m14
SH=model-00002-of-00003.safetensors
mdir m15 && rm m15/$SH && head -c 500000 $M/$SH >m15/$SH
mseg "safetensors shard cut in its data" "beyond|truncat" m15
mdir m16 && rm m16/$SH && head -c 4 $M/$SH >m16/$SH
mseg "safetensors shard of 4 bytes" "safetensors|truncat|short|header" m16
mdir m17 && rm m17/$SH && { printf '\377\377\377\377\377\377\377\177'; tail -c +9 $M/$SH; } >m17/$SH
mseg "safetensors header length 2^63-1" "header" m17
mdir m18 && rm m18/$SH && cp $M/$SH m18/$SH && printf '[' | dd of=m18/$SH bs=1 seek=8 conv=notrunc 2>/dev/null
mseg "safetensors header not JSON" "header|JSON" m18
mdir m19 && rm m19/$SH && sed 's/"dtype":"F32"/"dtype":"I32"/' $M/$SH >m19/$SH
mseg "safetensors tensors of dtype I32" "dtype|I32" m19
mdir m20 && rm m20/model-00001-of-00003.safetensors
sed 's/"shape":\[32003,16\]/"shape":[16,32003]/' $M/model-00001-of-00003.safetensors >m20/model-00001-of-00003.safetensors
mseg "embed_tokens of shape [16, 32003]" "shape" m20
# header edits through catalogue-forge st (re-measured, data kept)
TN=model.text_hidden_fcs.0.0.bias
sth() { # sth NAME INPUT PATTERN EDIT: shard 2 with its header edited
    mdir "$1" && rm "$1/$SH" && forge st $M/$SH "$1/$SH" "$4"
    mseg "$2" "$3" "$1"
}
sth s1 "tensor shape [2^32, 2^32] (size overflow)" "overflows" "$TN/shape=[4294967296,4294967296]"
sth s2 "tensor shape [17], data for 16" "17|size|bytes" "$TN/shape=[17]"
sth s3 "tensor data_offsets [64, 0]" "begin > end" "$TN/data_offsets=[64,0]"
sth s4 "tensor data_offsets [-64, 0]" "data_offsets" "$TN/data_offsets=[-64,0]"
sth s5 "tensor without data_offsets" "data_offsets" "-$TN/data_offsets"
sth s6 "tensor dtype Q4" "dtype 'Q4'" "$TN/dtype=\"Q4\""
sth s7 "tensor shape of 10 dims" "10 dims" "$TN/shape=[16,1,1,1,1,1,1,1,1,1]"
sth s8 "tensor entry an array" "not an object" "$TN=[1,2]"
mdir m21 && rm m21/tokenizer.model
mseg "tokenizer.model missing" "tokenizer.model" m21
mdir m22 && rm m22/tokenizer.model && head -c 1000 $M/tokenizer.model >m22/tokenizer.model
mseg "tokenizer.model cut at 1000 bytes" "tokenizer.model.*(corrupt|truncated)" m22
mdir m23 && rm m23/added_tokens.json
mseg "added_tokens.json missing" "added_tokens.json" m23
mdir m24 && rm m24/added_tokens.json && echo '{"<im_start>": 32001, "<im_end>": 32002, "[SEG]": 32000, "[NEW]": 32003}' >m24/added_tokens.json
mseg "a 4th added token: 32004 tokens, config vocab_size 32003" "vocab_size" m24
mdir m25 && rm m25/added_tokens.json && echo '{"<im_start>": 32001, "<im_end>": 32002, "[SEGX]": 32000}' >m25/added_tokens.json
mseg "added_tokens.json without [SEG]" "\[SEG\]" m25
mdir m26 && rm m26/config.json && forge json $M/config.json m26/config.json 'vision_config/num_attention_heads=5'
mseg "vision_config.num_attention_heads 5 (does not divide 32)" "head" m26

# ------------------------------------------------------------------
# tokenizer.model and added_tokens.json: lisa tokenize
TOK=fixtures/tokenizer/tokenizer.model
mkdir tok
tk() { bad tokenizer "$1" "$2" lisa tokenize --tokenizer "$3" --no-added-tokens; }
tk "tokenizer.model missing" "no such file" tok/none.model
: >tok/empty.model
tk "empty tokenizer.model" "no pieces|empty|not a SentencePiece" tok/empty.model
head -c 100000 $TOK >tok/cut.model
tk "tokenizer.model cut at 100000 bytes" "truncated" tok/cut.model
tk "a JSON file as tokenizer.model" "not a SentencePiece model" $M/config.json
forge spm $TOK tok/utf8.model 'piece.300=ab\xff'
tk "piece 300 not valid UTF-8" "piece 300 .*UTF-8" tok/utf8.model
forge spm $TOK tok/empty-piece.model 'piece.310='
tk "piece 310 empty" "piece 310 is empty" tok/empty-piece.model
forge spm $TOK tok/dup.model 'piece.401=<s>'
tk "piece 401 repeats <s>" "piece 401 .*duplicates piece 1" tok/dup.model
forge spm $TOK tok/nan.model 'score.600=nan'
tk "piece 600 score NaN" "piece 600 .*non-finite" tok/nan.model
forge spm $TOK tok/type.model 'type.700=9'
tk "piece 700 of type 9" "piece 700 has unknown type 9" tok/type.model
forge spm $TOK tok/byte.model 'piece.13=<0x0a>'
tk "byte piece 13 written <0x0a>" "piece 13 .*<0xNN>" tok/byte.model
forge spm $TOK tok/nobyte.model 'type.3=1'
tk "byte piece <0x00> missing" "<0x00>.*missing" tok/nobyte.model
forge spm $TOK tok/nounk.model 'type.0=3'
tk "no unk piece" "UNKNOWN" tok/nounk.model
forge spm $TOK tok/nobos.model 'bos_id=-1'
tk "trainer_spec.bos_id -1 (no BOS)" "bos_id -1" tok/nobos.model
forge spm $TOK tok/eos.model 'eos_id=278'
tk "trainer_spec.eos_id names a normal piece" "eos_id 278.*CONTROL" tok/eos.model
forge spm $TOK tok/unigram.model 'model_type=1'
tk "a unigram model" "not BPE" tok/unigram.model
echo "12 abc 7" >tok/ids.txt
STDIN=tok/ids.txt
bad tokenizer "decode input that is not ids" "abc|not.*id|integer" \
    lisa tokenize --tokenizer $TOK --decode
echo "1 32003" >tok/ids2.txt
STDIN=tok/ids2.txt
bad tokenizer "decode id 32003 (vocabulary 32003)" "32003.*out of range" \
    lisa tokenize --tokenizer $TOK --added-tokens fixtures/tokenizer/added_tokens.json --decode
STDIN=
at() { printf '%s' "$3" >tok/added.json; bad added_tokens "$1" "$2" lisa tokenize --tokenizer $TOK --added-tokens tok/added.json; }
at "added_tokens.json not JSON" "not a JSON object" '{"[SEG]": 32000'
at "added_tokens.json an array" "not a JSON object" '["[SEG]"]'
at "added token id a string" "integer id" '{"[SEG]": "32000"}'
at "added token id inside the vocabulary (31999)" "integer id >= 32000" '{"[SEG]": 31999}'
at "added token id 32000.5" "integer id" '{"[SEG]": 32000.5}'
at "two added tokens with id 32000" "repeated" '{"[SEG]": 32000, "[X]": 32000}'
at "empty added token" "empty added token" '{"": 32000}'
bad added_tokens "added_tokens.json missing" "no such file" \
    lisa tokenize --tokenizer $TOK --added-tokens tok/none.json

# ------------------------------------------------------------------
# manifests: lisa submit --dry-run checks every line as submit does
mkdir man
sub() { printf '%s\n' "$3" >man/m.jsonl; bad manifest "$1" "$2" lisa submit --manifest man/m.jsonl --dry-run; }
GOOD='{"custom_id": "a", "image": "../fixtures/images/tiny.png", "prompt": "x"}'
sub "a line that is not JSON" "not a JSON object" "$GOOD
{custom_id: b}"
sub "a line that is a JSON array" "not a JSON object" '["a", "tiny.png", "x"]'
tsub() { printf '%s\n' "$3" >man/m.jsonl; tolerated manifest "$1" "$2" lisa submit --manifest man/m.jsonl --dry-run; }
tsub "custom_id missing: the line number is the id" "would queue line1:" '{"image": "../fixtures/images/tiny.png", "prompt": "x"}'
tsub "custom_id a number: its digits are the id" "would queue 7:" '{"custom_id": 7, "image": "../fixtures/images/tiny.png", "prompt": "x"}'
sub "image missing" "image" '{"custom_id": "a", "prompt": "x"}'
sub "prompt missing" "prompt" '{"custom_id": "a", "image": "../fixtures/images/tiny.png"}'
sub "prompt a list" "prompt" '{"custom_id": "a", "image": "../fixtures/images/tiny.png", "prompt": ["x"]}'
sub "answer a number" "answer" '{"custom_id": "a", "image": "../fixtures/images/tiny.png", "prompt": "x", "answer": 1}'
sub "max_new_tokens -3" "max_new_tokens" '{"custom_id": "a", "image": "../fixtures/images/tiny.png", "prompt": "x", "max_new_tokens": -3}'
sub "max_new_tokens \"8\"" "max_new_tokens" '{"custom_id": "a", "image": "../fixtures/images/tiny.png", "prompt": "x", "max_new_tokens": "8"}'
sub "custom_id twice" "custom_id|duplicate|twice" "$GOOD
$GOOD"
sub "image file that does not exist" "no such file|cannot" '{"custom_id": "a", "image": "none.png", "prompt": "x"}'
tsub "custom_id ../a: result folders map / and a leading . to _" "would queue \.\./a:" '{"custom_id": "../a", "image": "../fixtures/images/tiny.png", "prompt": "x"}'
tsub "custom_id empty: the line number is the id" "would queue line1:" '{"custom_id": "", "image": "../fixtures/images/tiny.png", "prompt": "x"}'
sub "prompt not UTF-8" "UTF-8" "$(printf '{"custom_id": "a", "image": "../fixtures/images/tiny.png", "prompt": "\377"}')"
: >man/empty.jsonl
bad manifest "empty manifest" "no jobs" lisa submit --manifest man/empty.jsonl --dry-run
bad manifest "manifest that does not exist" "no such file|cannot open" \
    lisa submit --manifest man/none.jsonl --dry-run
LONG=$(awk 'BEGIN { for (i = 0; i < 2000; i++) printf "word "; }')
printf '{"custom_id": "long", "image": "../fixtures/images/tiny.png", "prompt": "%s"}\n' "$LONG" >man/long.jsonl
bad manifest "prompt of 2000 words (context 512)" "prompt too long" \
    lisa segment --model $M --manifest man/long.jsonl --out out/long --threads 1
printf '%s\n' '{"custom_id": "c", "image": "../im/cut300.jpg", "prompt": "x", "answer": "[SEG]."}' >man/img.jsonl
bad manifest "a line whose image is truncated" "truncated" \
    lisa segment --model $M --manifest man/img.jsonl --out out/img --threads 1

# ------------------------------------------------------------------
# configurations: cluster configuration files, Redis URLs, CLI options
mkdir configs
CT=$ROOT/configs/cluster-tiny.json
cfg() { forge json $CT configs/c.json 'model="../fixtures/lisa-tiny/model"' "$3"; bad config "$1" "$2" lisa cluster plan configs/c.json; }
cfg "cluster stages 0" '"stages" must be' 'stages=0'
cfg "cluster key misspelt (stagez)" 'unknown key "stagez"' 'stagez=2'
cfg "cluster slots a string" '"slots" must be' 'slots="4"'
cfg "cluster vision elsewhere" '"vision" must be' 'vision="elsewhere"'
cfg "cluster dtype fp8" "dtype" 'dtype="fp8"'
cfg "cluster layers 1,5 (the model has 2)" "layer" 'layers="1,5"'
cfg "cluster model folder missing" "cannot open" 'model="nowhere"'
printf '{"stages": 2,' >configs/cut.json
bad config "cluster configuration not JSON" "JSON" lisa cluster plan configs/cut.json
bad config "cluster configuration missing" "cannot open" lisa cluster plan configs/none.json
bad config "Redis URL http://" "unknown scheme" lisa status --redis http://localhost:6379
bad config "Redis URL port 99999" "bad port" lisa status --redis redis://127.0.0.1:99999
bad config "Redis URL database abc" "database" lisa status --redis redis://127.0.0.1:6379/abc
bad config "Redis URL unix:// without a path" "socket path" lisa status --redis unix://
bad config "Redis not listening" "cannot reach Redis" lisa status --redis redis://127.0.0.1:1
bad cli "unknown command" "unknown command|frobnicate" lisa frobnicate
bad cli "unknown option" "bogus" lisa segment --model $M --image $IMG/tiny.png --prompt x --bogus
bad cli "--prompt missing" "prompt" lisa segment --model $M --image $IMG/tiny.png
bad cli "--threads abc" "threads" lisa segment --model $M --image $IMG/tiny.png --prompt x --threads abc
bad cli "--batch 0" "batch" lisa segment --model $M --image $IMG/tiny.png --prompt x --batch 0
bad cli "--dtype fp8" "dtype" lisa segment --model $M --image $IMG/tiny.png --prompt x --dtype fp8
bad cli "--device tpu" "device" lisa segment --model $M --image $IMG/tiny.png --prompt x --device tpu
bad cli "--max-new-tokens -5" "max-new-tokens" lisa segment --model $M --image $IMG/tiny.png --prompt x --max-new-tokens -5
bad cli "--manifest without --out" "out" lisa segment --model $M --manifest man/long.jsonl
bad cli "worker --lease 5 parsecs" "lease|duration" lisa worker --model $M --lease 5pc
bad cli "submit --priority urgent" "priority" lisa submit $IMG/tiny.png --prompt x --priority urgent --dry-run
bad cli "submit --result-ttl 10y" "result-ttl|duration" lisa submit $IMG/tiny.png --prompt x --result-ttl 10y --dry-run

# ------------------------------------------------------------------
# messages: jobs written straight into a real Redis, one real worker
redis_start "$TMP/redis" || exit 1
# the queue's own function library, as the first submit or worker loads it
rcli -x FUNCTION LOAD REPLACE <"$ROOT/coordinator/queue/queue.lua" >/dev/null || fail "FUNCTION LOAD"
mkdir msg root outside
cp $IMG/tiny.png root/ok.png
cp $IMG/tiny.png outside/secret.png
head -c 200000 /dev/zero >msg/pad.bin
cat $IMG/tiny.png msg/pad.bin >msg/big.png
: >"$TMP/jobs"
# job INPUT PATTERN FILE: queues FILE's bytes as one job's request message
job() {
    _b=$(rcli FCALL lisa_batch_new 0 lisa "" "")
    rcli -x FCALL lisa_submit 0 lisa "$_b" 0 "c$_b" "" catalogue normal 1 600000 x.png x <"$3" >/dev/null
    printf '%s\t%s\t%s\t%s\n' "$_b" "$1" "$2" "$3" >>"$TMP/jobs"
}
V=version=1
printf 'garbage\377\377' >msg/garbage.bin
job "request that is not protobuf" "malformed" msg/garbage.bin
forge job msg/nover.bin prompt=x image_file=$IMG/tiny.png
job "request without a protocol version" "version" msg/nover.bin
forge job msg/v99.bin version=99 prompt=x image_file=$IMG/tiny.png
job "request of protocol version 99" "version" msg/v99.bin
forge job msg/both.bin $V prompt=x image_file=$IMG/tiny.png image_path=root/ok.png
job "request with image bytes and an image path" "both image bytes and image path" msg/both.bin
forge job msg/noimg.bin $V prompt=x
job "request without an image" "no image" msg/noimg.bin
forge job msg/emptyimg.bin $V prompt=x image_bytes=
job "request with empty image bytes" "empty" msg/emptyimg.bin
forge job msg/noprompt.bin $V image_file=$IMG/tiny.png
job "request without a prompt" "no prompt" msg/noprompt.bin
forge job msg/utf8.bin $V 'prompt=\xff\xfe' image_file=$IMG/tiny.png
job "request whose prompt is not UTF-8" "UTF-8" msg/utf8.bin
forge job msg/mnt.bin $V prompt=x image_file=$IMG/tiny.png max_new_tokens=4000000000
job "request max_new_tokens 4000000000" "max_new_tokens" msg/mnt.bin
forge job msg/junkimg.bin $V prompt=x image_bytes=notanimage
job "request whose image bytes are not an image" "unrecognized image format" msg/junkimg.bin
forge job msg/outside.bin $V prompt=x image_path="$W/outside/secret.png"
job "request image path outside --image-root" "outside the image roots" msg/outside.bin
forge job msg/dotdot.bin $V prompt=x image_path="$W/root/../outside/secret.png"
job "request image path root/../outside" "outside the image roots" msg/dotdot.bin
forge job msg/big.bin $V prompt=x image_file=msg/big.png
job "request of 200 kB (over --max-message-bytes 100000)" "over the limit" msg/big.bin
# protobuf-c packs C strings, so the NUL goes in by a byte edit after
forge job msg/nul.bin $V prompt=aQb image_file=$IMG/tiny.png
at=$(grep -obUa aQb msg/nul.bin | head -1 | cut -d: -f1)
printf '\000' | dd of=msg/nul.bin bs=1 seek=$((at + 1)) conv=notrunc 2>/dev/null
job "request whose prompt holds a NUL byte" "NUL" msg/nul.bin
# by-path manifests (the submitter sends absolute paths, the worker checks
# them against its roots): a path outside, a symlink in the root leading out
ln -s "$W/outside/secret.png" root/link.png
for m in outside:../outside/secret.png link:../root/link.png; do
    printf '{"custom_id": "%s", "image": "%s", "prompt": "x"}\n' "${m%%:*}" "${m#*:}" >"man/${m%%:*}.jsonl"
    _b=$(lisa submit --redis "$REDIS_URL" --by-path --manifest "man/${m%%:*}.jsonl" --parsable 2>&1)
    printf '%s\t%s\t%s\t%s\n' "$_b" "by-path manifest line ${m#*:}" "outside the image roots" \
        "lisa submit --by-path --manifest man/${m%%:*}.jsonl" >>"$TMP/jobs"
done
"$LISA" worker --model $M --threads 1 --batch 2 --token-budget 24 --name catalogue \
    --image-root "$W/root" --max-message-bytes 100000 --exit-when-empty \
    >"$TMP/worker.log" 2>&1 &
WP=$!
ALL_PIDS="$ALL_PIDS $WP"
if ! wait_for 120 sh -c "! kill -0 $WP 2>/dev/null"; then
    fail "the worker did not finish the bad messages in 120 s"
    kill -9 $WP 2>/dev/null
fi
wait $WP
wrc=$?
[ $wrc -eq 0 ] || { fail "the worker exited $wrc on the bad messages"; tail -5 "$TMP/worker.log" >&2; }
sanitized "$TMP/worker.log" && { fail "sanitizer report in the worker"; grep -m3 -E "Sanitizer|runtime error" "$TMP/worker.log" >&2; }
TAB=$(printf '\t')
while IFS="$TAB" read -r b input pat file; do
    lisa wait "$b" --timeout 20 >"$TMP/out" 2>"$TMP/err"
    rc=$?
    # the reason is the job row's text after its 7 fixed columns
    reason=$(lisa status "$b" --jobs --no-header 2>&1 | head -1 |
        awk '{ for (i = 8; i <= NF; i++) printf "%s%s", $i, i < NF ? " " : ""; }')
    [ $rc -eq 1 ] || fail "$input: lisa wait exit $rc, want 1 (failed)"
    printf '%s' "$reason" | grep -Eiq -- "$pat" || fail "$input: reason does not say /$pat/: $reason"
    case $file in
    lisa*) area=manifest cmd="$file; lisa wait $b; lisa status $b --jobs" ;;
    *) area=message cmd="redis-cli -x FCALL lisa_submit ... < $file; lisa wait $b; lisa status $b --jobs" ;;
    esac
    row $area "$input" "$cmd" "$rc" "$(printf '%s' "$reason" | stable)"
done <"$TMP/jobs"
# results: a failed job's stored result replaced by bad bytes, then read
rb=$(head -1 "$TMP/jobs" | cut -f1)
printf 'garbage\377\377' | rcli -x SET "lisa:res:${rb}_0" >/dev/null
bad message "stored result that is not protobuf" "malformed" lisa result "${rb}_0" --out out/res1
rcli -x SET "lisa:res:${rb}_0" <msg/both.bin >/dev/null
bad message "a request message stored as the result" "malformed|result" lisa result "${rb}_0" --out out/res2

# ------------------------------------------------------------------
# the table against the doc
[ $n -ge 60 ] || fail "only $n cases"
if [ "$UPDATE" = --update ]; then
    if [ -f "$DOC" ]; then
        awk -v t="$TABLE" '
            /<!-- catalogue:begin -->/ { print; print "| # | area | input | command | exit | what the user sees |"; print "|---|---|---|---|---|---|"; while ((getline l < t) > 0) print l; skip = 1; next }
            /<!-- catalogue:end -->/ { skip = 0 }
            !skip' "$DOC" >"$TMP/doc.md" && cp "$TMP/doc.md" "$DOC"
        echo "catalogue: wrote $n cases into $DOC"
    else
        fail "no $DOC to update"
    fi
else
    awk '/<!-- catalogue:begin -->/ { on = 1; next } /<!-- catalogue:end -->/ { on = 0 } on && /^\| [0-9]/' \
        "$DOC" >"$TMP/doc-table.md" 2>/dev/null
    if ! cmp -s "$TMP/doc-table.md" "$TABLE"; then
        fail "docs/malformed-inputs.md differs from what the commands print (rerun with --update after checking):"
        diff "$TMP/doc-table.md" "$TABLE" | head -20 >&2
    fi
fi
[ $fails -eq 0 ] && echo "catalogue: $n malformed inputs, each refused with its reason (or tolerated as documented); the table matches"
[ $fails -eq 0 ]
