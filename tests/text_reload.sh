#!/bin/sh
# text_reload.sh - the text tower is freed after a compile and reloaded on demand.
#
# A compiled engine needs only its prompts' embeddings, so compiling frees the text
# tower (a quarter of a ViT-B/32 model's memory). tests/tools/text_reload checks the
# reload gives bit-identical embeddings (from two threads at once) and that a weights
# file changed since the load is refused rather than mixed with the loaded image tower.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
need_reference
have_bpe || skip "$CLIPMOD_BPE_GZ is absent: the policy's prompts cannot be tokenized"
model=$(checkpoint tiny-cli --shape tiny --layout hf --dtype f32 --act quick_gelu --seed 5 \
        --merges "$CLIPMOD_BPE_GZ") || fail "reference checkpoint"
# A copy: the test changes the file's modification time.
W="$CLIPMOD_WORK/text_reload"
rm -rf "$W" && mkdir -p "$W"
cp -r "$model" "$W/model" || fail "copying the checkpoint"
"$top_builddir/tests/tools/text_reload" "$W/model" "$top_srcdir/policies/default.yaml" ||
    fail "text_reload"
