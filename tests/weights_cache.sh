#!/bin/sh
# weights_cache.sh - the weights cache (src/lib/wcache.c, clipmod_model_load_cached).
#
# Checks, with random checkpoints from the independent reference and real photos:
#   1. at the tiny shape in both namings and at the real ViT-B/32 shape (OpenAI names,
#      F16): the first `clipmod embed --cache-dir D` writes a cache file ("kept in"),
#      the second maps it ("mapped from"), and both give the reference's embeddings
#      (tolerances of parity.sh); at int8 and bf16 (where the CPU runs them) the mapped
#      model gives exactly the embeddings of the one converted at load;
#   2. a file that must not be used is not, the load gives the reference's
#      embeddings, and the file is rewritten: a flipped byte in the weights (digest),
#      in the header, a truncated file, a changed checkpoint (touch), a symbolic link
#      planted under the file's name (never followed; its target untouched);
#   3. CLIPMOD_GEMM=openblas (unpacked weights) uses a file of its own; --no-cache,
#      a cache directory writable by others and a file size limit (ulimit -f) below
#      the file's size write nothing;
#   4. two processes loading at once into an empty cache both succeed;
#   5. a mapped load has the checkpoint's fingerprint (it finds the prompt cache a
#      normal load wrote) and scans the same;
#   6. writing a file removes those of checkpoints that are gone, of an older format
#      and unfinished ones over an hour old, and nothing else.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
need_reference
photos=$(photos_dir) || fail "no sample photos"
images="$photos/astronaut.png $photos/chelsea.png $photos/rocket.jpg"
W="$CLIPMOD_WORK/weights_cache"
rm -rf "$W"
mkdir -p "$W"
: > "$W/no-texts.txt"

# note FILE: the "weights_cache" sentence of a `clipmod embed` output.
note() { "$REF_PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["weights_cache"])' "$1"; }

# embed OUT DIR ARGS...: `clipmod embed` of the photos into OUT.
embed() {
    out=$1
    shift
    "$CLIPMOD" embed "$@" $images > "$out" 2> "$W/err" || fail "clipmod embed $*: $(cat "$W/err")"
}

# expect OUT PATTERN WHAT: the output's cache note matches PATTERN.
expect() {
    n=$(note "$1")
    echo "$n" | grep -Eq "$2" || fail "$3: weights_cache is '$n', expected /$2/"
}

golden() {
    g="$W/golden_$1.json"
    [ -f "$g" ] || "$REF_PYTHON" "$REF/make_goldens.py" "$2" --images $images \
        --texts-file "$W/no-texts.txt" --out "$g" >/dev/null || fail "goldens for $1"
    echo "$g"
}

compare() {
    "$REF_PYTHON" "$top_srcdir/tests/compare_embeddings.py" "$1" "$2" --tol "$3" --label "$4" ||
        fail "$4: embeddings differ from the reference"
}

# 1. Miss, then hit, against the reference. The ViT-B/32 checkpoint is parity.sh's
#    (same name, same arguments: written once); the tiny ones are this test's own,
#    since it touches them.
merges_opt=""
have_bpe && merges_opt="--merges $CLIPMOD_BPE_GZ"
while read -r name shape layout dtype tol; do
    dir=$(checkpoint "$name" --shape "$shape" --layout "$layout" --dtype "$dtype" \
          --act quick_gelu --seed 11 $merges_opt) || fail "reference could not write $name"
    g=$(golden "$name" "$dir")
    C="$W/cache-$name"
    embed "$W/miss.json" -m "$dir" --cache-dir "$C"
    expect "$W/miss.json" "^image tower kept in $C/weights-[0-9a-f]{16}\.bin" "$name, first load"
    compare "$W/miss.json" "$g" "$tol" "$name (cache written)"
    embed "$W/hit.json" -m "$dir" --cache-dir "$C"
    expect "$W/hit.json" "^image tower mapped from $C/weights-" "$name, second load"
    compare "$W/hit.json" "$g" "$tol" "$name (cache mapped)"
    [ "$(ls "$C" | grep -c '^weights-')" -eq 1 ] || fail "$name: $(ls "$C")"
done <<'CASES'
wc-tiny-hf-f32 tiny hf f32 1e-4
wc-tiny-openai-f32 tiny openai f32 1e-4
b32-openai-f16 b32 openai f16 2e-3
CASES

# ... and at reduced precision: the mapped image is the converted one, bit for bit.
b32=$CLIPMOD_WORK/models/b32-openai-f16
for p in int8 bf16; do
    set +e
    "$CLIPMOD" embed -m "$b32" --precision $p --no-cache $images > "$W/$p-plain.json" 2>"$W/err"
    rc=$?
    set -e
    if [ $rc -eq 2 ] && grep -q "not supported on this CPU" "$W/err"; then
        echo "note: $p skipped: $(cat "$W/err")"
        continue
    fi
    [ $rc -eq 0 ] || fail "$p without cache: $(cat "$W/err")"
    embed "$W/$p-miss.json" -m "$b32" --precision $p --cache-dir "$W/cache-q"
    expect "$W/$p-miss.json" "kept in" "$p, first load"
    embed "$W/$p-hit.json" -m "$b32" --precision $p --cache-dir "$W/cache-q"
    expect "$W/$p-hit.json" "mapped from" "$p, second load"
    compare "$W/$p-hit.json" "$W/$p-plain.json" 0 "$p mapped vs converted"
    compare "$W/$p-miss.json" "$W/$p-plain.json" 0 "$p written vs converted"
done

# 2. Files that must not be used.
tiny=$CLIPMOD_WORK/models/wc-tiny-hf-f32
g=$(golden wc-tiny-hf-f32 "$tiny")
C="$W/cache-wc-tiny-hf-f32"
f=$(ls "$C"/weights-*.bin)
# flip BYTE OFFSET: xor one byte of the cache file, in place.
flip() {
    "$REF_PYTHON" - "$f" "$1" <<'PY'
import sys
path, at = sys.argv[1], int(sys.argv[2])
with open(path, "r+b") as fh:
    fh.seek(at)
    b = fh.read(1)
    fh.seek(at)
    fh.write(bytes([b[0] ^ 0x40]))
PY
}
damaged() { # damaged WHAT PATTERN: the load refuses the file, is right, and rewrites it
    embed "$W/bad.json" -m "$tiny" --cache-dir "$C"
    expect "$W/bad.json" "$2" "$1"
    compare "$W/bad.json" "$g" 1e-4 "$1"
    embed "$W/again.json" -m "$tiny" --cache-dir "$C"
    expect "$W/again.json" "mapped from" "$1, after the rewrite"
    f=$(ls "$C"/weights-*.bin)
}
# The first parameter (the patch embedding) starts right after the 64 KiB header.
flip 65600
damaged "a flipped weight byte" "not used \(damaged: its digest differs\); it is rewritten"
flip 100
damaged "a flipped header byte" "not used \(not a weights cache file of this version, or damaged\)"
truncate -s 70000 "$f"
damaged "a truncated file" "not used \(not the size its weights need\)"
sleep 0.02
touch "$tiny/model.safetensors"
damaged "a changed checkpoint" "not used \(made from another checkpoint file, or before it changed\)"
cp "$f" "$W/target.bin"
rm "$f"
ln -s "$W/target.bin" "$f"
sum=$(cksum < "$W/target.bin")
damaged "a symbolic link" "weights cache file .*: Too many levels of symbolic links"
[ ! -L "$f" ] || fail "the symbolic link is still there"
[ "$(cksum < "$W/target.bin")" = "$sum" ] || fail "the link's target was written"

# 3. Another GEMM layout, no cache, a directory others may write.
CLIPMOD_GEMM=openblas embed "$W/ob.json" -m "$tiny" --cache-dir "$C"
expect "$W/ob.json" "kept in" "CLIPMOD_GEMM=openblas"
compare "$W/ob.json" "$g" 1e-4 "openblas layout"
[ "$(ls "$C" | grep -c '^weights-')" -eq 2 ] || fail "openblas layout shares a file: $(ls "$C")"
embed "$W/none.json" -m "$tiny" --no-cache --cache-dir "$W/cache-none"
[ -z "$(note "$W/none.json")" ] || fail "--no-cache: $(note "$W/none.json")"
[ ! -e "$W/cache-none" ] || fail "--no-cache created $(ls -a "$W/cache-none")"
mkdir -p "$W/open" && chmod 777 "$W/open"
embed "$W/open.json" -m "$tiny" --cache-dir "$W/open"
expect "$W/open.json" "writable by other users; the cache is not used" "a directory others can write"
[ -z "$(ls "$W/open")" ] || fail "wrote into a directory others can write: $(ls "$W/open")"

# A file size limit below the file's size (growing past it would raise SIGXFSZ).
(ulimit -f 128 && embed "$W/fsize.json" -m "$tiny" --cache-dir "$W/cache-fsize") ||
    fail "a load under a file size limit"
expect "$W/fsize.json" "not written: [0-9]+ bytes, over the file size limit" "ulimit -f 128"
compare "$W/fsize.json" "$g" 1e-4 "under a file size limit"

# 4. Two processes into an empty cache.
C2="$W/cache-race"
"$CLIPMOD" embed -m "$tiny" --cache-dir "$C2" $images > "$W/r1.json" 2>&1 &
pid=$!
"$CLIPMOD" embed -m "$tiny" --cache-dir "$C2" $images > "$W/r2.json" 2>&1 || fail "second racer"
wait $pid || fail "first racer: $(cat "$W/r1.json")"
compare "$W/r1.json" "$g" 1e-4 "racer 1"
compare "$W/r2.json" "$g" 1e-4 "racer 2"
[ "$(ls -A "$C2" | grep -c .)" -eq 1 ] || fail "after the race: $(ls -A "$C2")"
# 5. A hit takes the checkpoint's fingerprint from the file: the prompt cache, named by
#    it, is the one a load without the weights cache wrote (else a second file appears).
D="$W/cache-demo"
demo="$top_srcdir/models/demo"
"$CLIPMOD" scan -q --json -m "$demo" -p "$top_srcdir/policies/demo.yaml" --cache-dir "$D" \
    "$photos/coffee.png" > "$W/scan1.json" || [ $? -eq 1 ] || fail "scan with the demo model"
[ "$(ls "$D" | grep -c '^weights-')" -eq 1 ] || fail "demo: no weights cache file: $(ls "$D")"
"$CLIPMOD" scan -q --json -m "$demo" -p "$top_srcdir/policies/demo.yaml" --cache-dir "$D" \
    "$photos/coffee.png" > "$W/scan2.json" || [ $? -eq 1 ] || fail "second scan"
[ "$(ls "$D" | grep -c '\.emb$')" -eq 1 ] || fail "a mapped load keyed another prompt cache: $(ls "$D")"
sed 's/"elapsed_ms":[0-9.]*//' "$W/scan1.json" > "$W/scan1.cmp"
sed 's/"elapsed_ms":[0-9.]*//' "$W/scan2.json" > "$W/scan2.cmp"
cmp -s "$W/scan1.cmp" "$W/scan2.cmp" || fail "scans differ: $(diff "$W/scan1.cmp" "$W/scan2.cmp" | head -5)"
# 6. Writing a file removes those of checkpoints that are gone and of older formats,
#    never a file that is not one of ours.
P="$W/cache-prune"
cp -r "$tiny" "$W/gone"
embed "$W/gone.json" -m "$W/gone" --cache-dir "$P"
expect "$W/gone.json" "kept in" "a copy of the checkpoint"
rm -rf "$W/gone"
printf 'CMWTS000' > "$P/weights-0000000000000000.bin"
head -c 8192 /dev/zero >> "$P/weights-0000000000000000.bin"
printf 'not a cache file' > "$P/weights-foreign.bin"
head -c 4096 /dev/zero > "$P/.weights-0123456789abcdef.bin.0123456789abcdef.tmp"
touch -d '2 hours ago' "$P/.weights-0123456789abcdef.bin.0123456789abcdef.tmp"
head -c 4096 /dev/zero > "$P/.weights-fedcba9876543210.bin.0123456789abcdef.tmp"
embed "$W/keep.json" -m "$tiny" --cache-dir "$P"
expect "$W/keep.json" "kept in" "the checkpoint beside a gone one"
[ "$(ls "$P" | grep -c '^weights-[0-9a-f]*\.bin$')" -eq 1 ] ||
    fail "stale cache files were kept: $(ls "$P")"
[ -f "$P/weights-foreign.bin" ] || fail "a file that is not a weights cache file was removed"
[ ! -e "$P/.weights-0123456789abcdef.bin.0123456789abcdef.tmp" ] ||
    fail "an unfinished file two hours old was kept"
[ -e "$P/.weights-fedcba9876543210.bin.0123456789abcdef.tmp" ] ||
    fail "a fresh unfinished file (another process loading) was removed"
echo "weights cache: all checks passed"
