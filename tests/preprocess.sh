#!/bin/sh
# preprocess.sh - libclipmod's image tensors against PIL (tests/reference/preprocess_ref.py).
#
# Real photos and variants made from them (alpha, palette, 16-bit, EXIF rotation,
# WebP, GIF, TIFF, enlargement, extreme aspect ratios), at the ViT-B/32 input size 224
# and at the tiny model's 32. Issue #2 asks for mean abs diff <= 0.01 and max <= 0.1;
# resample.c ports PIL's arithmetic, so in practice the tensors are identical.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
need_reference
photos=$(photos_dir) || fail "no sample photos"
variants="$CLIPMOD_WORK/variants"
"$REF_PYTHON" "$top_srcdir/tests/make_images.py" "$photos" "$variants" >/dev/null
images=$(ls "$photos"/* "$variants"/*)

status=0
for shape in b32 tiny; do
    size=224
    [ $shape = tiny ] && size=32
    dir=$(checkpoint "zeros-$shape" --shape $shape --layout hf --dtype f16 --act quick_gelu \
          --seed 1 --zeros) || fail "reference checkpoint"
    ours="$CLIPMOD_WORK/pre_ours_$size" ref="$CLIPMOD_WORK/pre_ref_$size"
    rm -rf "$ours" "$ref"
    mkdir -p "$ours" "$ref"
    "$top_builddir/tests/tools/preprocess_dump" "$dir" "$ours" $images || fail "preprocess_dump"
    "$REF_PYTHON" "$REF/preprocess_ref.py" --size $size --out "$ref" $images >/dev/null
    "$REF_PYTHON" - "$ours" "$ref" <<'PY' || status=1
import os, sys
import numpy as np
ours, ref = sys.argv[1], sys.argv[2]
bad = 0
names = sorted(os.listdir(ref))
worst_mean = worst_max = 0.0
for n in names:
    a = np.fromfile(os.path.join(ours, n), np.float32)
    b = np.fromfile(os.path.join(ref, n), np.float32)
    if a.shape != b.shape:
        print(f"{n}: shape {a.shape} vs {b.shape}"); bad += 1; continue
    d = np.abs(a - b)
    worst_mean, worst_max = max(worst_mean, d.mean()), max(worst_max, d.max())
    if d.mean() > 0.01 or d.max() > 0.1:
        print(f"{n}: mean abs diff {d.mean():.4f}, max {d.max():.4f} FAIL"); bad += 1
print(f"size {int(round((a.size // 3) ** 0.5))}: {len(names)} images, worst mean abs diff "
      f"{worst_mean:.2g}, worst max {worst_max:.2g}, {bad} over tolerance")
sys.exit(1 if bad else 0)
PY
done
exit $status
