#!/bin/sh
# model_shapes.sh - every real CLIP shape loads, in both namings and all dtypes.
#
# ViT-B/32, B/16 and L/14 checkpoints at their real shapes (spec §1.1), written as
# sparse all-zero files by the reference so the test stays quick; only loading and
# shape validation are exercised here (numbers are checked by parity.sh).
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
need_reference
status=0
while read -r shape layout dtype act want; do
    dir=$(checkpoint "zeros-$shape-$layout-$dtype" --shape "$shape" --layout "$layout" \
          --dtype "$dtype" --act "$act" --seed 1 --zeros) || fail "reference checkpoint"
    if out=$("$CLIPMOD" embed --model "$dir" 2>&1) &&
       printf '%s' "$out" | grep -q "\"description\": \"$want"; then
        echo "ok   $shape $layout $dtype: $(printf '%s' "$out" | sed -n 's/.*"description": "\(.*\)".*/\1/p')"
    else
        echo "FAIL $shape $layout $dtype: $out" | head -n 5
        status=1
    fi
done <<'CASES'
b32 hf f32 quick_gelu ViT-B/32
b32 openai bf16 gelu ViT-B/32
b16 hf f16 quick_gelu ViT-B/16
b16 openai f16 quick_gelu ViT-B/16
l14 hf f16 quick_gelu ViT-L/14
l14 openai bf16 quick_gelu ViT-L/14
CASES
exit $status
