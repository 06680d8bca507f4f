#!/bin/sh
# scan_context.sh - context-aware moderation through `clipmod scan --context`
# (clipmod-policy(5) CONTEXT), with the demo model, whose text tower knows emoji names.
#
# tests/data/demo-scenes/teddy-bear.png has a weapons image score of ~0.20, under the demo policy's
# 0.34. With `context:` on for weapons:
#   1. the context "pistol" flags it ("image+context"), "grinning face" leaves it clean
#      with exactly its image score (a text that matches nothing changes nothing), and no
#      context leaves the result as without `context:`;
#   2. the context score and the combined score equal an independent computation:
#      tokenizer_ref.py + clip_ref.py (torch) embed the text and the untemplated
#      candidates, numpy takes the softmax at the model's logit scale, and the formula
#      of clipmod-policy(5) combines it with the image score;
#   3. mode alone flags a clean image (bullet-train.png) whose text matches, by
#      "context", without changing its score; mode both does too;
#   4. hostile context (10 MB, invalid UTF-8, NUL bytes, 100,000 tiny words, bidi
#      marks) is capped and cleaned, said in the JSON, and the image is still scanned;
#   5. `clipmod policy check` reports bad context keys at file:line:column.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

PY=/usr/bin/python3
M="$top_srcdir/models/demo"
S="$top_srcdir/tests/data/demo-scenes"
W="$CLIPMOD_WORK/scan_context"
rm -rf "$W"
mkdir -p "$W"
XDG_CACHE_HOME="$W/cache"
export XDG_CACHE_HOME
unset CLIPMOD_MODEL CLIPMOD_POLICY
[ -f "$M/model.safetensors" ] || fail "$M/model.safetensors is missing"
SCAN="$CLIPMOD scan -q --json --model $M"

policy() { # name mode
    cat >"$W/$1.yaml" <<EOF
version: 1
include: [$top_srcdir/policies/demo.yaml]
categories:
  - id: weapons
    context: {mode: $2}
EOF
}
policy raise raise
policy alone alone
policy both both

weapons() { # file -> "state image_score score context_score flagged_by"
    "$PY" - "$1" <<'EOF'
import json, sys
r = json.loads(open(sys.argv[1]).readline())
w = [c for c in r["categories"] if c["id"] == "weapons"][0]
ctx = w.get("context", {})
print(r["state"], w.get("image_score", "-"), w["score"], ctx.get("score", "-"),
      w.get("flagged_by", "-"), w["flagged"])
EOF
}

# 1. raise.
run 0 $SCAN --policy "$top_srcdir/policies/demo.yaml" "$S/teddy-bear.png"
set -- $(weapons "$W/out")
base=$3
[ "$1" = clean ] || fail "teddy-bear.png is not clean without context: $(cat "$W/out")"
run 0 $SCAN --policy "$W/raise.yaml" "$S/teddy-bear.png"
set -- $(weapons "$W/out")
[ "$3" = "$base" ] && [ "$2" = - ] || fail "no context changed the result: $(cat "$W/out")"
run 1 $SCAN --policy "$W/raise.yaml" --context pistol "$S/teddy-bear.png"
set -- $(weapons "$W/out")
[ "$1" = flagged ] && [ "$5" = image+context ] && [ "$2" = "$base" ] ||
    fail "pistol does not flag teddy-bear.png by image+context: $(cat "$W/out")"
cp "$W/out" "$W/pistol.json"
run 0 $SCAN --policy "$W/raise.yaml" --context "grinning face" "$S/teddy-bear.png"
set -- $(weapons "$W/out")
[ "$1" = clean ] && [ "$3" = "$base" ] ||
    fail "a neutral text changed the score: $(cat "$W/out")"
echo "ok   raise: pistol flags teddy-bear.png (image $base), grinning face changes nothing"

# 2. The independent computation.
"$PY" - "$W/pistol.json" "$M" "$top_srcdir" <<'EOF' || fail "context score differs from the reference"
import json, re, subprocess, sys
import numpy as np
out, model, src = sys.argv[1], sys.argv[2], sys.argv[3]
r = json.loads(open(out).readline())
w = [c for c in r["categories"] if c["id"] == "weapons"][0]
# The demo policy's weapons prompts, contrast and neutral prompts, read from the YAML
# by hand (a list of "  - text" lines under each key), untemplated.
lines = open(src + "/policies/demo.yaml").read().split("\n")
def block(start, indent):
    out, on = [], False
    for l in lines:
        if re.match(start, l):
            on = True
            continue
        if on:
            m = re.match(r"^" + indent + r"- (.*?)\s*(#.*)?$", l)
            if m:
                out.append(m.group(1).strip('"'))
            elif l.strip():
                break
    return out
neutral = block(r"^neutral:", "  ")
text = "\n".join(lines)
wsec = text[text.index("- id: weapons"):text.index("- id: alcohol")].split("\n")
def sub(key):
    o, on = [], False
    for l in wsec:
        if l.strip() == key + ":":
            on = True
            continue
        if on:
            m = re.match(r"^\s+- (.*?)\s*$", l)
            if m:
                o.append(m.group(1).strip('"'))
            else:
                break
    return o
own, contrast = sub("prompts"), sub("contrast")
assert len(own) == 8 and len(contrast) == 7 and len(neutral) > 50, (own, contrast, len(neutral))
texts = ["pistol"] + own + contrast + neutral
tok = subprocess.run([sys.executable, src + "/tests/reference/tokenizer_ref.py", "--merges",
                      model + "/merges.txt"], input="\n".join(json.dumps(t) for t in texts),
                     capture_output=True, text=True, check=True).stdout.split("\n")
args = [sys.executable, src + "/tests/reference/clip_ref.py", model]
for l in tok:
    if l.strip():
        args += ["--ids", " ".join(map(str, json.loads(l)["ids"]))]
ref = json.loads(subprocess.run(args, capture_output=True, text=True, check=True).stdout)
E = np.array(ref["texts"])
cos = E[1:] @ E[0]
z = ref["logit_scale"] * cos
p = np.exp(z - z.max())
t = p[:len(own)].sum() / p.sum()
s = w["image_score"]
want = s + 0.35 * t * (1 - s) if t >= 0.5 else s
got_t, got = w["context"]["score"], w["score"]
print("context score %.4f (reference %.4f), score %.4f (reference %.4f)" % (got_t, t, got, want))
assert abs(got_t - t) < 2e-3 and abs(got - want) < 2e-3
assert w["context"]["window"] == "pistol" and w["context"]["prompt"] == "pistol"
EOF
echo "ok   the context score and the combined score equal the torch reference's"

# 3. alone and both.
run 0 $SCAN --policy "$W/alone.yaml" "$S/bullet-train.png"
run 1 $SCAN --policy "$W/alone.yaml" --context pistol "$S/bullet-train.png"
set -- $(weapons "$W/out")
[ "$1" = flagged ] && [ "$5" = context ] && [ "$2" = "$3" ] ||
    fail "mode alone: pistol does not flag bullet-train.png by context alone: $(cat "$W/out")"
run 1 $SCAN --policy "$W/both.yaml" --context dagger "$S/bullet-train.png"
set -- $(weapons "$W/out")
[ "$1" = flagged ] && [ "$5" = context ] || fail "mode both: $(cat "$W/out")"
run 0 $SCAN --policy "$W/alone.yaml" --context "birthday cake" "$S/bullet-train.png"
echo "ok   alone and both: a matching text flags a clean image by itself; a neutral one does not"

# 4. Hostile context.
"$PY" - "$W" <<'EOF'
import sys
d = sys.argv[1]
open(d + "/big.txt", "wb").write(b"pistol " * (10 * 1024 * 1024 // 7))
open(d + "/invalid.txt", "wb").write(b"pis\xfftol \xc0\xaf dag\x00ger \xed\xa0\x80" * 10)
open(d + "/words.txt", "wb").write(b"a " * 100000)
open(d + "/rtl.txt", "wb").write("\u202epistol\u202c \u200bdagger\u2066x\u2069".encode())
EOF
for f in big invalid words rtl; do
    run 1 $SCAN --policy "$W/raise.yaml" --context-file "$W/$f.txt" "$S/water-pistol.png"
    "$PY" - "$W/out" "$f" <<'EOF' || fail "hostile context $f: $(head -c 2000 "$W/out")"
import json, sys
r = json.loads(open(sys.argv[1]).readline())
f, c = sys.argv[2], r["context"]
assert r["state"] == "flagged" and r["categories"][0]["id"] == "weapons", r["state"]
assert c["bytes_used"] <= 16384 * 3 and c["windows"] <= 8, c
if f == "big":
    assert c["cut"] and c["bytes"] == 16385 and c["windows"] == 8 and c["windows_total"] >= 8, c
if f == "invalid":
    assert "invalid-utf8" in c["cleaned"] and "control" in c["cleaned"], c
if f == "words":
    assert c["cut"] and c["windows"] == 8 and c["windows_total"] > 8, c
if f == "rtl":
    w = r["categories"][0]
    assert c["cleaned"] == ["invisible"], c
    assert w["context"]["window"] == "pistol daggerx", w["context"]  # isolates dropped, not spaces
print(f, c)
EOF
done
echo "ok   hostile context: capped at 16384 bytes and 8 windows, cleaned, the image still scanned"

# 5. policy check.
cat >"$W/bad.yaml" <<EOF
version: 1
include: [$top_srcdir/policies/demo.yaml]
categories:
  - id: weapons
    context:
      weight: 1.5
      mode: raize
      treshold: 0.5
  - id: alcohol
    context: [beer]
EOF
run 1 $CLIPMOD policy check "$W/bad.yaml"
for want in "bad.yaml:6:15: context.weight must be a number of at least 0 and at most 1, not '1.5'" \
    "bad.yaml:7:13: unknown context.mode 'raize' (did you mean 'raise'?)" \
    "bad.yaml:8:7: unknown key 'treshold' in context (did you mean 'threshold'?)" \
    "bad.yaml:10:14: context must be a mapping"; do
    grep -qF "$want" "$W/out" || fail "policy check does not say '$want': $(cat "$W/out")"
done
echo "ok   policy check: bad context keys reported at file:line:column"
