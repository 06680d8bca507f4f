#!/bin/sh
# policy_whatif.sh - what-if changes (--set) and watched categories (hit vs flagged).
#
# With the demo model and tests/data/demo-scenes/water-pistol.png (a weapons hit, score ~0.74):
#   1. a watched category (action: allow, from an including policy) shows the hit:
#      "score 0.738 >= 0.340" and "hit (watched)" in --explain, "hit": true and
#      "flagged": false in JSON; an ordinary miss has "hit": false;
#   2. clipmod scan --set weapons.threshold=0.9 makes it clean, --set
#      weapons.action=allow too, and the JSON shows the changed values;
#   3. a --set naming no category of the policy, a bad key or a bad value is an
#      error (exit 2) with "did you mean" for the category;
#   4. clipmod policy evaluate --set evaluates the changed threshold: the JSON lists
#      the override and its counts at the new threshold are the reference's.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

PY=/usr/bin/python3
M="$top_srcdir/models/demo"
P="$top_srcdir/policies/demo.yaml"
IMG="$top_srcdir/tests/data/demo-scenes/water-pistol.png"
W="$CLIPMOD_WORK/policy_whatif"
rm -rf "$W"
mkdir -p "$W"
XDG_CACHE_HOME="$W/cache"
export XDG_CACHE_HOME
unset CLIPMOD_MODEL CLIPMOD_POLICY
[ -f "$M/model.safetensors" ] || fail "$M/model.safetensors is missing"
SCAN="$CLIPMOD scan -q --model $M"

# 1. Watched: the including policy changes only the action.
cat >"$W/watch.yaml" <<EOF
version: 1
include: [$P]
categories:
  - id: weapons
    action: allow
EOF
run 0 $SCAN --policy "$W/watch.yaml" --explain "$IMG"
grep -Eq "weapons +score 0\.[0-9]+ >= 0\.340 .* allow  hit \(watched\)" "$W/out" ||
    fail "a watched hit is not shown as one: $(cat "$W/out")"
run 0 $SCAN --policy "$W/watch.yaml" --json "$IMG"
"$PY" - "$W/out" <<'EOF' || fail "hit/flagged in JSON: $(cat "$W/out")"
import json, sys
r = json.loads(open(sys.argv[1]).readline())
c = {x["id"]: x for x in r["categories"]}
assert c["weapons"]["hit"] is True and c["weapons"]["flagged"] is False, c["weapons"]
assert c["weapons"]["score"] >= c["weapons"]["threshold"]
assert c["alcohol"]["hit"] is False and c["alcohol"]["flagged"] is False, c["alcohol"]
assert r["state"] == "clean"
EOF

# 2. --set on scan.
run 1 $SCAN --policy "$P" "$IMG"
run 0 $SCAN --policy "$P" --set weapons.threshold=0.9 --json "$IMG"
grep -q '"id":"weapons","score":[0-9.]*,"threshold":0.9,' "$W/out" ||
    fail "--set threshold not in the result: $(cat "$W/out")"
run 0 $SCAN --policy "$P" --set weapons.action=allow "$IMG"
run 1 $SCAN --policy "$P" --set weapons.action=allow --set weapons.action=reject "$IMG"
grep -q "FLAGGED weapons .* -> reject" "$W/out" || fail "the last --set does not win: $(cat "$W/out")"

# 3. Errors.
run 2 $SCAN --policy "$P" --set weapon.threshold=0.9 "$IMG"
grep -q "\-\-set weapon.threshold=0.9: the policy has no category 'weapon' (did you mean 'weapons'?)" \
    "$W/err" || fail "unknown category: $(cat "$W/err")"
run 2 $SCAN --policy "$P" --set weapons.threshold=1.5 "$IMG"
grep -q "a threshold is a number greater than 0 and at most 1" "$W/err" || fail "$(cat "$W/err")"
run 2 $SCAN --policy "$P" --set weapons.prompts=x "$IMG"
grep -q "only a category's threshold and action can be set" "$W/err" || fail "$(cat "$W/err")"
run 2 $SCAN --policy "$P" --set weapons.action=ban "$IMG"
grep -q "an action is allow, tag, flag, quarantine or reject" "$W/err" || fail "$(cat "$W/err")"

# 4. evaluate --set: a tiny folder set (the samples).
L="$W/set"
mkdir -p "$L/weapons" "$L/alcohol" "$L/clean"
cp "$top_srcdir/tests/data/demo-scenes/water-pistol.png" "$L/weapons/"
cp "$top_srcdir/tests/data/demo-scenes/cocktail.png" "$L/alcohol/"
cp "$top_srcdir/tests/data/demo-scenes/sandwich.png" "$top_srcdir/tests/data/demo-scenes/teddy-bear.png" \
    "$top_srcdir/tests/data/demo-scenes/bullet-train.png" "$L/clean/"
run 0 $CLIPMOD policy evaluate -q --model "$M" --policy "$P" --json \
    --set weapons.threshold=0.95 --set alcohol.threshold=0.01 "$L"
cp "$W/out" "$W/eval.json"
"$PY" "$REF/metrics_ref.py" check "$W/eval.json" >"$W/ref.out" 2>&1 ||
    fail "evaluate --set differs from the reference: $(cat "$W/ref.out")"
"$PY" - "$W/eval.json" <<'EOF' || fail "evaluate --set: $(cat "$W/eval.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["overrides"] == ["weapons.threshold=0.95", "alcohol.threshold=0.01"], d["overrides"]
c = {x["id"]: x for x in d["categories"]}
assert c["weapons"]["threshold"] == 0.95 and c["weapons"]["current"]["tp"] == 0, c["weapons"]
assert c["alcohol"]["threshold"] == 0.01 and c["alcohol"]["current"]["fp"] >= 1, c["alcohol"]
EOF
echo "policy what-if: OK"
