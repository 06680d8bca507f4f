#!/bin/sh
# cache_integrity.sh - a tampered prompt cache never changes a verdict.
#
# The on-disk prompt cache decides verdicts: filling it with NaN, zero or copied
# vectors turned flagged images clean without a word. For each kind of tampering
# (NaN, zero, every vector a copy of the first, a flipped bit in one vector), every
# other record of a good cache file is changed in place, its checksum left alone;
# then NaN and zero again with each record's SHA-256 recomputed as cache.c's format
# says (the vector checks must catch those), and:
#  - the verdict with the tampered cache equals the verdict computed without cache;
#  - the scan warns about the prompt cache on stderr;
#  - exactly the tampered records are recomputed, and the file is rewritten: the
#    next compile reads everything back, without a warning.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
need_reference
have_bpe || skip "$CLIPMOD_BPE_GZ is absent: prompts cannot be tokenized"
model=$(checkpoint tiny-cli --shape tiny --layout hf --dtype f32 --act quick_gelu --seed 5 \
        --merges "$CLIPMOD_BPE_GZ") || fail "reference checkpoint"
photos=$(photos_dir) || fail "no sample photos"
W="$CLIPMOD_WORK/cache-integrity"
rm -rf "$W"
mkdir -p "$W"
policy="$top_srcdir/policies/default.yaml"
cache="$W/cache"
# Photos this random model flags with the default policy, and one it does not:
# the verdicts are arbitrary but deterministic; only their equality matters.
inputs="$photos/coffee.png $photos/chelsea.png $photos/astronaut.png"

strip() { sed 's/"elapsed_ms":[0-9.e-]*//'; }
scan() { "$CLIPMOD" scan --json -m "$model" -p "$policy" "$@" $inputs; }
# counts: "cached computed" of a compile against $cache
counts() {
    "$CLIPMOD" policy check --json -m "$model" --cache-dir "$cache" "$policy" |
        "$REF_PYTHON" -c 'import json, sys
c = json.loads(sys.stdin.readline())["policy"]["prompt_cache"]
print(c["cached"], c["computed"])'
}

fresh=$(scan --no-cache 2>/dev/null | strip) || :
[ -n "$fresh" ] || fail "no verdicts without cache"
set -- $(counts)
total=$2
[ "$1" -eq 0 ] && [ "$total" -gt 100 ] || fail "the first compile must compute everything ($1 cached, $2 computed)"
file=$(ls "$cache"/*.emb) || fail "no cache file written in $cache"
cp "$file" "$W/good.emb"

# tamper MODE: change every other record of the good file into $file; prints how many.
tamper() {
    "$REF_PYTHON" - "$W/good.emb" "$file" "$1" <<'PY'
import hashlib, math, os, struct, sys
src, dst, mode = sys.argv[1:4]
rehash = mode.endswith("+digest")
mode = mode.replace("+digest", "")
data = bytearray(open(src, "rb").read())
dim, count = struct.unpack_from("<II", data, 16)
rec = (len(data) - 24) // count          # key + vector (+ checksum, if the format has one)
vec = lambda i: 24 + i * rec + 16        # the vector of record i
first = data[vec(0):vec(0) + 4 * dim]
changed = 0
for i in range(1, count, 2):
    at = vec(i)
    if mode == "nan":
        data[at:at + 4 * dim] = struct.pack("<%df" % dim, *([math.nan] * dim))
    elif mode == "zero":
        data[at:at + 4 * dim] = bytes(4 * dim)
    elif mode == "copy":                  # a perfectly valid unit vector, just the wrong one
        data[at:at + 4 * dim] = first
    elif mode == "flip":                  # one bit of one component
        data[at + 4 * (i % dim) + 2] ^= 0x01
    if rehash and data[:8] == b"CMEMB002":  # SHA-256(magic, fingerprint, dim, key, vector)
        start = 24 + i * rec
        digest = hashlib.sha256(data[:8] + data[8:20] + data[start:at + 4 * dim]).digest()
        data[at + 4 * dim:at + 4 * dim + 32] = digest
    changed += 1
open(dst, "wb").write(data)
print(changed)
PY
}

bad=0
for mode in nan zero copy flip nan+digest zero+digest; do
    n=$(tamper "$mode")
    set +e
    got=$(scan --cache-dir "$cache" 2>"$W/$mode.err" | strip)
    set -e
    verdict_ok=no warned=no rewritten=no
    [ "$got" = "$fresh" ] && verdict_ok=yes
    grep -q "warning: prompt cache" "$W/$mode.err" && warned=yes
    set -- $(counts)
    [ "$1" -eq "$total" ] && [ "$2" -eq 0 ] && rewritten=yes
    if [ $verdict_ok = yes ] && [ $warned = yes ] && [ $rewritten = yes ]; then
        echo "ok   $mode: $n records tampered; same verdicts as without cache, warned, rewritten"
        grep "warning: prompt cache" "$W/$mode.err" | head -n 1 | sed 's/^/     /'
    else
        echo "FAIL $mode: $n records tampered; verdicts as without cache: $verdict_ok, warning: $warned, file rewritten: $rewritten ($1 cached, $2 computed)"
        bad=1
    fi
done
[ $bad -eq 0 ] || fail "a tampered prompt cache was trusted"

# Exactly the tampered records are recomputed.
n=$(tamper nan)
set -- $(counts)
[ "$2" -eq "$n" ] || fail "$n tampered records must be recomputed, not $2"
echo "ok   $n tampered records recomputed, $1 read back"
