#!/bin/sh
# model_open_clip.sh - a model described by open_clip's open_clip_config.json.
#
# One tiny OpenAI-named checkpoint is described twice: by Hugging Face's config.json
# (the dialect parity.sh checks against the reference) and by the open_clip_config.json
# open_clip writes for the same model. Both must give the same embeddings, bit for
# bit. Then what open_clip's own configs do and transformers' do not:
#  - "mlp_ratio" is a float (4.0 here; ViT-bigG-14 has 4.9231) and the MLP width is
#    int(width * mlp_ratio): 4.0 loads, 3.5 asks for another shape than the weights';
#  - a missing vision_cfg.patch_size means open_clip's 16 (transformers' is 32);
#  - "embed_dim" is required;
#  - preprocess_cfg's mean and std are used, as preprocessor_config.json's are; a
#    resize_mode or interpolation other than open_clip's defaults (ours) is refused.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
need_reference
have_bpe || skip "$CLIPMOD_BPE_GZ is absent: the texts cannot be tokenized"
W="$CLIPMOD_WORK/model_open_clip"
rm -rf "$W"
mkdir -p "$W"
ckpt=$(checkpoint tiny-openai-f32 --shape tiny --layout openai --dtype f32 --act quick_gelu \
       --seed 11 --merges "$CLIPMOD_BPE_GZ") || fail "reference checkpoint"

# variant NAME PYTHON: a copy of the checkpoint whose config files PYTHON rewrites
# (cfg: the HF config as a dict; oc: the open_clip config written in its place).
variant() {
    mkdir -p "$W/$1"
    cp "$ckpt/model.safetensors" "$ckpt/merges.txt" "$ckpt/config.json" "$W/$1/"
    "$REF_PYTHON" - "$W/$1" <<EOF || fail "variant $1"
import json, os, sys
d = sys.argv[1]
cfg = json.load(open(os.path.join(d, "config.json")))
v, t = cfg["vision_config"], cfg["text_config"]
oc = {"model_cfg": {
    "embed_dim": cfg["projection_dim"], "quick_gelu": True,
    "vision_cfg": {"image_size": v["image_size"], "layers": v["num_hidden_layers"],
                   "width": v["hidden_size"], "patch_size": v["patch_size"],
                   "head_width": v["hidden_size"] // v["num_attention_heads"]},
    "text_cfg": {"context_length": t["max_position_embeddings"], "vocab_size": t["vocab_size"],
                 "width": t["hidden_size"], "heads": t["num_attention_heads"],
                 "layers": t["num_hidden_layers"]}}}
$2
EOF
}
as_open_clip='os.remove(os.path.join(d, "config.json"))
json.dump(oc, open(os.path.join(d, "open_clip_config.json"), "w"), indent=2)'

"$REF_PYTHON" - "$W/cat.png" <<'EOF' || fail "test image"
import sys
from PIL import Image
img = Image.new("RGB", (48, 40))
img.putdata([((x * 11) % 256, (y * 7) % 256, (x * y) % 256) for y in range(40) for x in range(48)])
img.save(sys.argv[1])
EOF

# embed DIR: the embeddings of the image and two texts, one number per line.
embed() {
    "$CLIPMOD" embed --no-cache --model "$1" --image "$W/cat.png" --text "a photo of a cat" \
        --text "a drawing of a pistol" >"$W/$1.json" 2>"$W/$1.err" || return 1
    "$REF_PYTHON" -c 'import json, sys
d = json.load(open(sys.argv[1]))
for x in d["images"] + d["texts"]:
    print("\n".join(repr(v) for v in x["embedding"]))' "$W/$1.json"
}
# loads_not NAME PATTERN: the variant is refused with a message matching PATTERN.
loads_not() {
    if "$CLIPMOD" embed --no-cache --model "$W/$1" --text "x" >"$W/$1.out" 2>&1; then
        fail "$1: loaded: $(cat "$W/$1.out")"
    fi
    grep -q "$2" "$W/$1.out" || fail "$1: not '$2': $(cat "$W/$1.out")"
    echo "ok   $1: $(grep -m1 . "$W/$1.out")"
}

cd "$W" || fail "cd $W"
variant hf 'pass'
variant oc "$as_open_clip"
embed hf >hf.txt || fail "HF config: $(cat hf.err)"
embed oc >oc.txt || fail "open_clip config: $(cat oc.err)"
[ "$(wc -l <hf.txt)" -eq 96 ] || fail "expected 3 embeddings of 32 numbers, got $(wc -l <hf.txt)"
cmp -s hf.txt oc.txt || fail "open_clip_config.json gives other embeddings than config.json"
echo "ok   open_clip_config.json: the same embeddings as config.json (3 x 32 numbers)"

variant ratio "oc['model_cfg']['vision_cfg']['mlp_ratio'] = 4.0
oc['model_cfg']['text_cfg']['mlp_ratio'] = 4.0
$as_open_clip"
embed ratio >ratio.txt || fail "mlp_ratio 4.0: $(cat ratio.err)"
cmp -s hf.txt ratio.txt || fail "mlp_ratio 4.0 gives other embeddings"
echo "ok   a float mlp_ratio (4.0) loads"

variant ratio35 "oc['model_cfg']['vision_cfg']['mlp_ratio'] = 3.5
$as_open_clip"
loads_not ratio35 "implies \[224, 64]"

variant nopatch "del oc['model_cfg']['vision_cfg']['patch_size']
$as_open_clip"
loads_not nopatch "3, 16, 16]"

variant noembed "del oc['model_cfg']['embed_dim']
$as_open_clip"
loads_not noembed "embed_dim is missing"

variant badratio "oc['model_cfg']['text_cfg']['mlp_ratio'] = 'four'
$as_open_clip"
loads_not badratio "mlp_ratio must be a number"

variant squash "oc['preprocess_cfg'] = {'resize_mode': 'squash'}
$as_open_clip"
loads_not squash "resize_mode 'squash' is not supported"

variant bilinear "oc['preprocess_cfg'] = {'resize_mode': 'shortest', 'interpolation': 'bilinear'}
$as_open_clip"
loads_not bilinear "interpolation 'bilinear' is not supported"

variant badpre "oc['preprocess_cfg'] = [0.5, 0.5, 0.5]
$as_open_clip"
loads_not badpre "preprocess_cfg is not an object"

# The same mean and std through both dialects' preprocessing files.
variant hfnorm 'json.dump({"image_mean": [0.5, 0.25, 0.125], "image_std": [0.2, 0.3, 0.4]},
          open(os.path.join(d, "preprocessor_config.json"), "w"))'
variant ocnorm "oc['preprocess_cfg'] = {'mean': [0.5, 0.25, 0.125], 'std': [0.2, 0.3, 0.4], 'resize_mode': 'shortest', 'interpolation': 'bicubic'}
$as_open_clip"
embed hfnorm >hfnorm.txt || fail "preprocessor_config.json: $(cat hfnorm.err)"
embed ocnorm >ocnorm.txt || fail "preprocess_cfg: $(cat ocnorm.err)"
cmp -s hf.txt hfnorm.txt && fail "image_mean/image_std changed nothing"
cmp -s hfnorm.txt ocnorm.txt || fail "preprocess_cfg's mean and std are not preprocessor_config.json's"
echo "ok   preprocess_cfg's mean and std are used"
echo PASS
