#!/bin/sh
# scan_parallel.sh - decoding on several threads changes nothing in the results.
#
# A batch's inputs are decoded in parallel, one input per thread (src/lib/scan.c), so
# 1, 2 or 3 decoding threads (CLIPMOD_DECODE_THREADS; the forward pass keeps its 2
# threads, whose sums may depend on their count) must give the same JSON for every
# input, to the last digit (timings aside): real photos, a 12 MP JPEG that is shrunk
# on load, an animation, and inputs that are unscanned, in batches of 1, 3 and 8.
# (The shrunk JPEG's tensor against PIL's is tests/preprocess.sh's big.jpg.)
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
need_reference
have_bpe || skip "$CLIPMOD_BPE_GZ is absent: the policy's prompts cannot be tokenized"
photos=$(photos_dir) || fail "no sample photos"
model=$(checkpoint tiny-cli --shape tiny --layout hf --dtype f32 --act quick_gelu --seed 5 \
        --merges "$CLIPMOD_BPE_GZ") || fail "reference checkpoint"
W="$CLIPMOD_WORK/scan_parallel"
rm -rf "$W" && mkdir -p "$W/in"
cp "$photos"/*.png "$photos"/*.jpg "$W/in/" || fail "copying the photos"
"$REF_PYTHON" - "$photos/chelsea.png" "$W/in" <<'PYEOF' || fail "making the test images"
import sys
from PIL import Image
cat = Image.open(sys.argv[1]).convert("RGB")
cat.resize((4000, 3000), Image.BICUBIC).save(sys.argv[2] + "/big12mp.jpg", quality=90)
frames = [cat.rotate(a).resize((64, 48)) for a in (0, 90, 180)]
frames[0].save(sys.argv[2] + "/anim.gif", save_all=True, append_images=frames[1:], duration=100)
PYEOF
printf 'not an image' >"$W/in/broken.jpg"
head -c 3000 "$W/in/big12mp.jpg" >"$W/in/truncated.jpg"
for b in 1 3 8; do
    for t in 1 2 3; do
        CLIPMOD_DECODE_THREADS=$t "$CLIPMOD" scan -m "$model" -p "$top_srcdir/policies/default.yaml" --no-cache --json \
            --threads 2 --batch $b "$W"/in/* 2>"$W/err" |
            sed 's/"elapsed_ms":[0-9.e+-]*//' >"$W/out.$b.$t"
        n=$(grep -c . "$W/out.$b.$t")
        [ "$n" -eq "$(ls "$W/in" | wc -l)" ] || fail "batch $b, $t decoding threads: $n results: $(cat "$W/err")"
    done
    for t in 2 3; do
        cmp -s "$W/out.$b.1" "$W/out.$b.$t" ||
            fail "batch $b: 1 and $t decoding threads differ: $(diff "$W/out.$b.1" "$W/out.$b.$t")"
    done
done
grep -q '"state":"unscanned"' "$W/out.8.2" || fail "the broken inputs must be unscanned"
[ "$(grep -c '"state":"unscanned"' "$W/out.8.2")" -eq 2 ] || fail "exactly two unscanned inputs"
