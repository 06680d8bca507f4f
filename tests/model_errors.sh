#!/bin/sh
# model_errors.sh - broken checkpoints end in a clear error, never a crash.
#
# Each case damages a copy of a valid tiny checkpoint (truncation, garbage header,
# wrong shape, missing tensor, wrong dtype, bad or missing config) and checks that
# `clipmod embed` exits 2 with a message naming the culprit.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
need_reference
good=$(checkpoint tiny-hf-f32-plain --shape tiny --layout hf --dtype f32 --act quick_gelu \
       --seed 3 --position-ids) || fail "reference checkpoint"
"$CLIPMOD" embed --model "$good" >/dev/null || fail "the valid checkpoint does not load"

work="$CLIPMOD_WORK/broken"
n=0
failures=0

# expect NAME PATTERN MUTATION: copy the model, apply MUTATION (python code with `d`
# the directory, and helpers), run clipmod, check exit 2 and PATTERN in stderr.
expect() {
    name=$1 pattern=$2 code=$3
    d="$work/$name"
    rm -rf "$d"
    mkdir -p "$d"
    cp "$good/model.safetensors" "$good/config.json" "$d/"
    "$REF_PYTHON" - "$d" "$REF" <<PY || fail "mutation $name"
import json, os, struct, sys
sys.path.insert(0, sys.argv[2])
d = sys.argv[1]
st = os.path.join(d, "model.safetensors")
cfgp = os.path.join(d, "config.json")
def header():
    raw = open(st, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + n]), raw[8 + n:]
def write(h, data):
    b = json.dumps(h).encode()
    b += b" " * (-len(b) % 8)
    open(st, "wb").write(struct.pack("<Q", len(b)) + b + data)
$code
PY
    n=$((n + 1))
    set +e
    "$CLIPMOD" embed --model "$d" > "$d/out" 2> "$d/err"
    rc=$?
    set -e
    if [ $rc -ne 2 ] || ! grep -q -- "$pattern" "$d/err"; then
        echo "FAIL $name: exit $rc, stderr: $(cat "$d/err")"
        failures=$((failures + 1))
    else
        echo "ok   $name: $(cat "$d/err")"
    fi
}

expect truncated "truncated" 'os.truncate(st, os.path.getsize(st) - 1000)'
expect tiny-file "too short" 'os.truncate(st, 5)'
expect empty-file "too short" 'os.truncate(st, 0)'
expect header-overrun "header claims" 'open(st, "r+b").write(struct.pack("<Q", 1 << 40))'
expect header-garbage "not a JSON object" 'raw = open(st, "rb").read(); open(st, "wb").write(raw[:8] + b"\xff" * 64 + raw[72:])'
expect wrong-shape "vision_model.encoder.layers.1.mlp.fc1.weight' has shape" '
h, data = header()
h["vision_model.encoder.layers.1.mlp.fc1.weight"]["shape"] = [128, 128]
write(h, data)'
expect missing-tensor "text_model.final_layer_norm.bias' is missing" '
h, data = header()
del h["text_model.final_layer_norm.bias"]
write(h, data)'
expect bad-offsets "do not fit its shape" '
h, data = header()
b, e = h["visual_projection.weight"]["data_offsets"]
h["visual_projection.weight"]["data_offsets"] = [b, e - 4]
write(h, data)'
expect offsets-past-end "truncated" '
h, data = header()
h["logit_scale"]["data_offsets"] = [len(data), len(data) + 4]
write(h, data)'
expect int-weights "dtype I32" '
h, data = header()
h["vision_model.pre_layrnorm.weight"]["dtype"] = "I32"
write(h, data)'
expect unknown-dtype "unknown dtype" '
h, data = header()
h["vision_model.pre_layrnorm.weight"]["dtype"] = "Q4"
write(h, data)'
expect config-missing "no config.json" 'os.remove(cfgp)'
expect config-garbage "config.json:1" 'open(cfgp, "w").write("{ not json")'
expect config-width "does not match\|has shape" '
c = json.load(open(cfgp)); c["vision_config"]["hidden_size"] = 96; json.dump(c, open(cfgp, "w"))'
expect config-heads "not divisible" '
c = json.load(open(cfgp)); c["text_config"]["num_attention_heads"] = 5; json.dump(c, open(cfgp, "w"))'
expect config-act "hidden_act" '
c = json.load(open(cfgp)); c["vision_config"]["hidden_act"] = "relu"; json.dump(c, open(cfgp, "w"))'
expect config-negative "hidden_size must be" '
c = json.load(open(cfgp)); c["vision_config"]["hidden_size"] = -1; json.dump(c, open(cfgp, "w"))'
expect no-vision "no vision tower" '
h, data = header()
h = {k: v for k, v in h.items() if not k.startswith("vision_model.embeddings.patch")}
write(h, data)'
expect merges-short "merges" 'open(os.path.join(d, "merges.txt"), "w").write("#version: 0.2\na b\n")'

echo "$n broken checkpoints, $failures not handled"
[ $failures -eq 0 ]
