#!/bin/sh
# quickstart.sh - the README's main job: CLIP similarity on real photos.
#
# Until clipmod ships a trained demo model, the model is a ViT-B/32-shaped
# checkpoint with random weights written by tests/reference, so the numbers show
# the machinery, not meaning. The tokenizer uses OpenAI's merges from ../shared.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
build=${top_builddir:-$top}
work="$build/quickstart"
bpe=${CLIPMOD_BPE_GZ:-$top/../shared/data/clip/bpe_simple_vocab_16e6.txt.gz}
mkdir -p "$work"
[ -f "$work/photos/astronaut.png" ] || "$top/tools/sample-photos.sh" "$work/photos"
[ -r "$bpe" ] || { echo "quickstart: OpenAI's merges are needed at $bpe" >&2; exit 2; }
if [ ! -f "$work/model/model.safetensors" ]; then
    echo "quickstart: writing a random-weight ViT-B/32 checkpoint to $work/model"
    /usr/bin/python3 "$top/tests/reference/make_checkpoint.py" "$work/model" --shape b32 \
        --layout hf --dtype f16 --act quick_gelu --seed 1 --merges "$bpe"
fi
p="$work/photos"
echo "quickstart: random weights, so the scores below carry no meaning yet"
exec "$build/src/cli/clipmod" similarity --model "$work/model" \
    "$p/astronaut.png" "$p/chelsea.png" "$p/coffee.png" "$p/rocket.jpg" \
    --text "a photo of an astronaut" --text "a photo of a cat" \
    --text "a cup of coffee" --text "a rocket on a launch pad"
