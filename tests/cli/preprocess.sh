#!/bin/sh
# preprocess.sh: end-to-end checks of `lisa preprocess`.
# Usage: sh preprocess.sh LISA_BINARY FIXTURES_DIR
# Writes both branches' uint8 images as PPM for the images listed in
# tests/fixtures/images/cli-sha256.txt and compares their SHA-256 with the
# hashes gen_images.py computed from Pillow's output (PPM bytes are fully
# determined by the pixels, unlike PNG encoders'). Also checks the PNG
# output exists, the size line, --help, and that corrupt or unsupported
# images exit 1 with a message and bad usage exits 2. It does not re-test
# the resampler case by case (tests/unit/test-preprocess.c does).
set -u
LISA=$1
FIX=$2/images
TMP=$(mktemp -d "${TMPDIR:-/tmp}/lisa-cli-pre.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT INT TERM
fails=0

fail() {
    echo "FAIL: $*" >&2
    fails=$((fails + 1))
}

command -v sha256sum >/dev/null 2>&1 || { echo "sha256sum not found" >&2; exit 1; }

n=0
while read -r img branch want; do
    n=$((n + 1))
    out=$TMP/$n.ppm
    "$LISA" preprocess --image "$FIX/$img" --branch "$branch" --out "$out" >"$TMP/stdout" ||
        { fail "$img $branch exited $?"; continue; }
    got=$(sha256sum "$out" | cut -d' ' -f1)
    [ "$got" = "$want" ] || fail "$img $branch: PPM differs from Pillow's (sha256 $got)"
done <"$FIX/cli-sha256.txt"
[ "$n" -ge 6 ] || fail "only $n cases in cli-sha256.txt"

# The size line and PNG output.
line=$("$LISA" preprocess --image "$FIX/chelsea.png" --branch clip --out "$TMP/c.png") ||
    fail "clip PNG exited $?"
[ "$line" = "original 320x240 resized 298x224 output 224x224" ] || fail "clip size line: '$line'"
[ -s "$TMP/c.png" ] || fail "no PNG written"
line=$("$LISA" preprocess --image "$FIX/exif6.jpg" --branch sam --out "$TMP/s.png") ||
    fail "sam PNG exited $?"
[ "$line" = "original 32x48 resized 683x1024 output 683x1024" ] || fail "sam size line: '$line'"

# Runtime errors: exit 1 with a message naming the problem.
head -c 600 "$FIX/astronaut.jpg" >"$TMP/trunc.jpg"
printf 'not an image' >"$TMP/junk.png"
: >"$TMP/empty.jpg"
for case in "trunc.jpg:truncated" "junk.png:unrecognized" "empty.jpg:empty"; do
    f=${case%%:*}
    msg=${case#*:}
    "$LISA" preprocess --image "$TMP/$f" --branch sam --out "$TMP/x.png" 2>"$TMP/err"
    rc=$?
    [ $rc -eq 1 ] || fail "$f: exit $rc, want 1"
    grep -q "$msg" "$TMP/err" || fail "$f: message lacks '$msg': $(cat "$TMP/err")"
done
"$LISA" preprocess --image "$FIX/hostile/cmyk.jpg" --branch clip --out "$TMP/x.png" 2>"$TMP/err"
[ $? -eq 1 ] || fail "CMYK: want exit 1"
grep -q "CMYK" "$TMP/err" || fail "CMYK message: $(cat "$TMP/err")"
"$LISA" preprocess --image "$FIX/hostile/huge.png" --branch clip --out "$TMP/x.png" 2>"$TMP/err"
[ $? -eq 1 ] || fail "huge PNG: want exit 1"
grep -q "limit" "$TMP/err" || fail "huge PNG message: $(cat "$TMP/err")"
"$LISA" preprocess --image "$FIX/tiny.png" --branch sam --out "$TMP/no/such/dir.png" 2>"$TMP/err"
[ $? -eq 1 ] || fail "unwritable output: want exit 1"

# Usage errors: exit 2.
"$LISA" preprocess --image "$FIX/tiny.png" --out "$TMP/x.png" 2>/dev/null
[ $? -eq 2 ] || fail "missing --branch: want exit 2"
"$LISA" preprocess --image "$FIX/tiny.png" --branch vit --out "$TMP/x.png" 2>/dev/null
[ $? -eq 2 ] || fail "bad --branch: want exit 2"
"$LISA" preprocess --image "$FIX/tiny.png" --branch sam --out "$TMP/x.png" --size 0 2>/dev/null
[ $? -eq 2 ] || fail "--size 0: want exit 2"
"$LISA" preprocess --bogus 2>/dev/null
[ $? -eq 2 ] || fail "unknown option: want exit 2"
"$LISA" preprocess --help | grep -q -- "--branch" || fail "--help lacks --branch"

if [ $fails -ne 0 ]; then
    echo "preprocess.sh: $fails failures" >&2
    exit 1
fi
echo "preprocess.sh: ok ($n hashed outputs)"
