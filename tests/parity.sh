#!/bin/sh
# parity.sh - libclipmod's embeddings against the independent Python reference.
#
# Random-weight checkpoints at the tiny and the real ViT-B/32 shapes, in both
# namings and in F32/F16/BF16, are written by tests/reference/make_checkpoint.py;
# golden embeddings of real photos and of texts come from make_goldens.py (float64).
# Tolerances (max abs diff of normalised embeddings): 1e-4 with F32 weights,
# 2e-3 with F16 and BF16 (issue #2).
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
need_reference
photos=$(photos_dir) || fail "no sample photos"
images="$photos/astronaut.png $photos/chelsea.png $photos/coffee.png $photos/rocket.jpg $photos/page.png"

texts="$CLIPMOD_WORK/parity_texts.txt"
cat > "$texts" <<'TXT'
a photo of a cat
a photo of a dog
an astronaut in a white suit
a diagram
Hello, world!
don't stop 42 times
café über naïve
a cup of coffee on a saucer
a rocket on the launch pad<|endoftext|> and what follows is ignored
TXT

merges_opt=""
if have_bpe; then
    merges_opt="--merges $CLIPMOD_BPE_GZ"
else
    echo "note: $CLIPMOD_BPE_GZ is absent: comparing image embeddings only"
    : > "$texts"
fi

status=0
# name shape layout dtype act tolerance
while read -r name shape layout dtype act tol; do
    dir=$(checkpoint "$name" --shape "$shape" --layout "$layout" --dtype "$dtype" --act "$act" \
          --seed 11 $merges_opt) || fail "reference could not write $name"
    golden="$CLIPMOD_WORK/golden_$name.json"
    ours="$CLIPMOD_WORK/ours_$name.json"
    [ -f "$golden" ] || "$REF_PYTHON" "$REF/make_goldens.py" "$dir" --images $images \
        --texts-file "$texts" --out "$golden" >/dev/null || fail "goldens for $name"
    set --
    while IFS= read -r t; do set -- "$@" --text "$t"; done < "$texts"
    "$CLIPMOD" embed --model "$dir" "$@" $images > "$ours" || fail "clipmod embed on $name"
    "$REF_PYTHON" "$top_srcdir/tests/compare_embeddings.py" "$ours" "$golden" --tol "$tol" \
        --label "$name" || status=1
done <<'CASES'
tiny-hf-f32 tiny hf f32 quick_gelu 1e-4
tiny-openai-f32 tiny openai f32 quick_gelu 1e-4
tiny-hf-gelu-bf16 tiny hf bf16 gelu 2e-3
b32-hf-f32 b32 hf f32 quick_gelu 1e-4
b32-openai-f16 b32 openai f16 quick_gelu 2e-3
b32-hf-bf16 b32 hf bf16 gelu 2e-3
CASES
exit $status
