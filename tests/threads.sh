#!/bin/sh
# threads.sh - one engine, shared by threads, gives each image the same verdict.
#
# The engine is compiled once and then only read, so any number of threads may
# scan with it at once (clipmod.h). Four threads scan real photos and an animation
# repeatedly, by batch and one by one, and every result must equal the
# single-threaded one, to the last digit of its JSON.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
need_reference
have_bpe || skip "$CLIPMOD_BPE_GZ is absent: the policy's prompts cannot be tokenized"
photos=$(photos_dir) || fail "no sample photos"
model=$(checkpoint tiny-cli --shape tiny --layout hf --dtype f32 --act quick_gelu --seed 5 \
        --merges "$CLIPMOD_BPE_GZ") || fail "reference checkpoint"
"$top_builddir/tests/tools/scan_threads" "$model" "$top_srcdir/policies/default.yaml" 4 3 \
    "$photos/astronaut.png" "$photos/chelsea.png" "$photos/coffee.png" "$photos/rocket.jpg" \
    "$photos/page.png" "$photos/motorcycle_right.png"
