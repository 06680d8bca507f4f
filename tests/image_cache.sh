#!/bin/sh
# image_cache.sh - the image-embedding cache of `clipmod policy evaluate`.
#
# With the demo model and policy and a labelled set from tools/labelled-set.py:
#   1. a first run embeds every image and writes <fingerprint>.img (0600); a second
#      gives the same JSON as --no-cache (timings aside) and embeds nothing
#      ("N of N image embeddings from the cache");
#   2. a damaged cache is detected, recomputed and gives the --no-cache results: a
#      NaN vector under a correct digest (written by an independent Python writer
#      of the documented format), a flipped byte, a truncated file, a foreign file,
#      a symbolic link planted at the cache file (its target is left alone);
#   3. an image changed in place (same name, other bytes) is embedded again and
#      scores as the new image does without the cache;
#   4. --cache-max keeps the file under the cap; --no-cache writes no file.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

PY=/usr/bin/python3
M="$top_srcdir/models/demo"
P="$top_srcdir/policies/demo.yaml"
W="$CLIPMOD_WORK/image_cache"
rm -rf "$W"
mkdir -p "$W"
XDG_CACHE_HOME="$W/xdg"
export XDG_CACHE_HOME
unset CLIPMOD_MODEL CLIPMOD_POLICY

need_demo_data "$M"

L="$W/set"
"$PY" "$top_srcdir/tools/labelled-set.py" --out "$L" --noto --clean 30 \
    >"$W/set.out" 2>&1 || fail "labelled-set.py: $(cat "$W/set.out")"
N=$(find "$L" -type f -name '*.png' | wc -l)
[ "$N" -gt 20 ] || fail "the labelled set has only $N images"
D="$W/cache"
EV="$CLIPMOD policy evaluate --no-progress --json --model $M --policy $P"

# same A B: the two evaluations agree on everything but the timings.
same() {
    "$PY" - "$1" "$2" <<'PYEOF' || fail "$3: results differ from --no-cache"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
for d in (a, b):
    d.pop("seconds", None)
assert a == b, "differ"
PYEOF
}
# from_cache K: stderr says K of N came from the cache. K "some": fewer than N but
# at least N - 32 (evaluate embeds in batches of 32, and a batch that embeds anything
# embeds all its images: the tower's last bits depend on the batch).
from_cache() {
    got=$(sed -n "s/^clipmod: \([0-9]*\) of $N image embeddings from the cache$/\1/p" "$W/err")
    [ -n "$got" ] || fail "$2: no 'K of $N from the cache' line: $(cat "$W/err")"
    if [ "$1" = some ]; then
        [ "$got" -lt "$N" ] && [ "$got" -ge $((N - 32)) ] ||
            fail "$2: $got of $N from the cache, expected fewer than $N, at least $((N - 32))"
    else
        [ "$got" -eq "$1" ] || fail "$2: $got of $N from the cache, expected $1"
    fi
}

run 0 $EV --no-cache "$L"
cp "$W/out" "$W/ref.json"
[ ! -e "$D" ] || fail "--no-cache created $D"
grep -q "image embeddings from the cache" "$W/err" && fail "--no-cache reports a cache"

# 1. First run fills the cache, second embeds nothing.
run 0 $EV --cache-dir "$D" "$L"
from_cache 0 "first run"
same "$W/ref.json" "$W/out" "first run"
F=$(ls "$D"/*.img)
[ "$(stat -c %a "$F")" = 600 ] || fail "$F is mode $(stat -c %a "$F"), not 600"
cp "$F" "$W/good.img"
run 0 $EV --cache-dir "$D" "$L"
from_cache "$N" "second run"
same "$W/ref.json" "$W/out" "second run"
cmp -s "$F" "$W/good.img" || fail "a run that only read the cache rewrote it"

# 2. Tampering. Each case starts from the good file; the run must warn, recompute
# what it rejected and agree with --no-cache; the next run reads a clean file.
tamper() { # tamper NAME EXPECTED-WARNING HITS
    run 0 $EV --cache-dir "$D" "$L"
    grep -q "image cache: .*$2" "$W/err" || fail "$1: no warning '$2': $(cat "$W/err")"
    from_cache "$3" "$1"
    same "$W/ref.json" "$W/out" "$1"
    [ -f "$F" ] && [ ! -L "$F" ] || fail "$1: $F was not rewritten as a regular file"
    run 0 $EV --cache-dir "$D" "$L"
    from_cache "$N" "$1, the run after"
    grep -q "warning: image cache" "$W/err" && fail "$1: still warned after the rewrite"
    cp "$W/good.img" "$F"
}
"$PY" - "$F" <<'PYEOF' || fail "could not write a NaN record"
# An independent writer of the format in src/lib/imgcache.c: the first record's first
# float becomes NaN and its SHA-256 is recomputed, so only the vector check can see it.
import hashlib, struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
assert b[:8] == b"CMIMG001"
fp, dim, count = struct.unpack_from("<QII", b, 8)
o = 24
key, frames = bytes(b[o:o + 32]), struct.unpack_from("<I", b, o + 32)[0]
n = frames * dim * 4
struct.pack_into("<f", b, o + 36, float("nan"))
vec = bytes(b[o + 36:o + 36 + n])
d = hashlib.sha256(b"CMIMG001" + struct.pack("<QI", fp, dim) + key +
                   struct.pack("<I", frames) + vec).digest()
b[o + 36 + n:o + 36 + n + 32] = d
open(sys.argv[1], "wb").write(b)
PYEOF
tamper "NaN vector" "not finite" some
"$PY" -c "
import sys; p = sys.argv[1]; b = bytearray(open(p, 'rb').read())
b[24 + 32 + 4 + 100] ^= 0x10; open(p, 'wb').write(b)" "$F"
tamper "flipped byte" "checksum mismatch" some
SIZE=$(stat -c %s "$F")
truncate -s $((SIZE - 100)) "$F"
tamper "truncated file" "truncated" some
head -c 5000 /dev/urandom >"$F"
tamper "foreign file" "not an image cache" 0
echo "decoy" >"$W/decoy"
rm -f "$F"
ln -s "$W/decoy" "$F"
tamper "symbolic link" "symbolic link" 0
[ "$(cat "$W/decoy")" = decoy ] || fail "the symlink's target was written"

# 3. An image changed in place is embedded again.
# (New bytes no cached image has: another image of the set, mirrored, under the
# first image's name.)
IMG=$(find "$L" -type f -name '*.png' | sort | head -n 1)
OTHER=$(find "$L" -type f -name '*.png' | sort | tail -n 1)
"$PY" -c "
import sys; from PIL import Image, ImageOps
ImageOps.mirror(Image.open(sys.argv[2]).convert('RGB')).save(sys.argv[1], 'PNG')" "$IMG" "$OTHER"
run 0 $EV --no-cache "$L"
cp "$W/out" "$W/changed.json"
run 0 $EV --cache-dir "$D" "$L"
from_cache some "changed image"
same "$W/changed.json" "$W/out" "changed image"

# 4. The cap (20K holds about 34 of the demo model's 580-byte records: the newest,
# so the last batch of 25 comes from the cache), and an invalid cap.
D2="$W/small"
run 0 $EV --cache-dir "$D2" --cache-max 20K "$L"
[ "$(stat -c %s "$D2"/*.img)" -le 20480 ] || fail "--cache-max 20K: $(stat -c %s "$D2"/*.img) bytes"
run 0 $EV --cache-dir "$D2" --cache-max 20K "$L"
grep -q "^clipmod: [1-9][0-9]* of $N image embeddings from the cache$" "$W/err" ||
    fail "--cache-max 20K kept nothing: $(cat "$W/err")"
same "$W/changed.json" "$W/out" "capped cache"
run 2 $EV --cache-dir "$D2" --cache-max 1K "$L"
echo "PASS: image cache (N=$N)"
