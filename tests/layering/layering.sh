#!/bin/sh
# The layering refuses upward includes: a real source file of each layer,
# compiled with that layer library's own include paths and definitions (as
# CMake gives them to it), builds as it is and fails to build once a header
# of a layer above is included first (kernels/ < shard/ < coordinator/ < cli).
# Usage: sh layering.sh CC SRC_DIR KERNELS_FLAGS SHARD_FLAGS COORDINATOR_FLAGS
# where each *_FLAGS is the library's include directories then its compile
# definitions, '|'-separated as "I:dir|D:name=value|...".
set -u
CC=$1
SRC=$2
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

# flags "I:a|D:b" -> -Ia -Db (set as positional parameters of compile)
to_args() {
    echo "$1" | tr '|' '\n' | while IFS= read -r f; do
        case $f in
        I:?*) printf '%s\n' "-I${f#I:}" ;;
        D:?*) printf '%s\n' "-D${f#D:}" ;;
        esac
    done >"$TMP/args"
}

# compile FLAGS SOURCE [UPWARD_HEADER]: 0 when it builds; output in $TMP/out
compile() {
    to_args "$1"
    if [ -n "${3:-}" ]; then printf '#include "%s"\n' "$3" >"$TMP/probe.c"; else : >"$TMP/probe.c"; fi
    printf '#include "%s"\n' "$2" >>"$TMP/probe.c"
    set --
    while IFS= read -r a; do set -- "$@" "$a"; done <"$TMP/args"
    "$CC" -std=c11 -fsyntax-only "$@" "$TMP/probe.c" >"$TMP/out" 2>&1
}

# check LAYER FLAGS SOURCE UPWARD...: SOURCE builds; with each UPWARD it does not
check() {
    layer=$1 flags=$2 src=$SRC/$3
    shift 3
    compile "$flags" "$src" || fail "$layer: $src does not build with its own include paths: $(cat "$TMP/out")"
    for up in "$@"; do
        if compile "$flags" "$src" "$up"; then
            fail "$layer: $src builds with an upward #include \"$up\""
        elif ! grep -q "$up" "$TMP/out"; then
            fail "$layer: $src with \"$up\" failed for another reason: $(cat "$TMP/out")"
        fi
    done
}

check kernels "$3" kernels/dtype.c llama.h sam.h engine.h image.h
check shard "$4" shard/weights.c engine.h image.h masks.h tokenizer.h
check coordinator "$5" coordinator/results/masks.c cli-util.h commands.h

if [ $fails -ne 0 ]; then echo "$fails failure(s)" >&2; exit 1; fi
echo "layering.sh: all checks passed"
