#!/bin/sh
# policy_compare.sh - prompt attribution and version diffs of `clipmod policy evaluate`.
#
# On a small labelled set from tools/labelled-set.py (Noto renders), demo model:
#   1. prompt attribution: a category's ROC AUC "without" a prompt equals the AUC
#      evaluate measures on a copy of the policy with that line deleted (a category
#      prompt, then a neutral prompt, which changes every category);
#   2. --compare OLD.yaml: the images listed, grouped by change, are exactly those
#      whose verdict (state, action, category) differs between `clipmod scan --json`
#      with the old and with the new policy, including a category the edit did not
#      touch (a new neutral prompt moves every score), each with its labels.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

PY=/usr/bin/python3
M="$top_srcdir/models/demo"
P="$top_srcdir/policies/demo.yaml"
W="$CLIPMOD_WORK/policy_compare"
rm -rf "$W"
mkdir -p "$W"
XDG_CACHE_HOME="$W/cache"
export XDG_CACHE_HOME
unset CLIPMOD_MODEL CLIPMOD_POLICY
need_demo_data "$M"

L="$W/set"
"$PY" "$top_srcdir/tools/labelled-set.py" --out "$L" --noto --clean 40 >"$W/set.out" 2>&1 ||
    fail "labelled-set.py: $(cat "$W/set.out")"
EV="$CLIPMOD policy evaluate -q --model $M"

# drop_line FILE TEXT OUT: the policy without the line "- TEXT" (first occurrence).
drop_line() {
    "$PY" - "$1" "$2" "$3" <<'EOF'
import sys
src, text, out = sys.argv[1:]
lines = open(src).read().split("\n")
i = next(i for i, l in enumerate(lines) if l.strip() == "- " + text)
del lines[i]
open(out, "w").write("\n".join(lines))
EOF
}

# 1. Attribution against edited copies of the policy.
run 0 $EV --policy "$P" --json "$L"
cp "$W/out" "$W/full.json"
drop_line "$P" gun "$W/no-gun.yaml"
drop_line "$P" hamburger "$W/no-hamburger.yaml"
run 0 $EV --policy "$W/no-gun.yaml" --json --no-attribution "$L"
cp "$W/out" "$W/no-gun.json"
run 0 $EV --policy "$W/no-hamburger.yaml" --json --no-attribution "$L"
cp "$W/out" "$W/no-hamburger.json"
"$PY" - "$W/full.json" "$W/no-gun.json" "$W/no-hamburger.json" <<'EOF' || fail "attribution"
import json, sys
full, gun, ham = (json.load(open(p)) for p in sys.argv[1:])
def attrib(cat, text):
    c = [c for c in full["categories"] if c["id"] == cat][0]
    return [p for p in c["prompts"] if p["text"] == text][0]
def auc(doc, cat):
    return [c for c in doc["categories"] if c["id"] == cat][0]["roc_auc"]
a = attrib("weapons", "gun")
assert a["kind"] == "prompt", a
assert abs(a["roc_auc_without"] - auc(gun, "weapons")) < 1e-3, (a, auc(gun, "weapons"))
assert abs(a["delta_roc_auc"] - (auc(gun, "weapons") - auc(full, "weapons"))) < 1e-3, a
for c in full["categories"]:
    if c["roc_auc"] is None:
        continue
    h = attrib(c["id"], "hamburger")
    assert h["kind"] == "neutral", h
    assert abs(h["roc_auc_without"] - auc(ham, c["id"])) < 1e-3, (c["id"], h, auc(ham, c["id"]))
print("attribution = AUC of the edited policy")
EOF
run 0 $EV --policy "$P" "$L"
grep -q "ROC AUC change when a line is removed" "$W/out" || fail "no attribution in the table"

# 2. --compare: a new threshold for weapons and a new neutral prompt.
"$PY" - "$P" "$W/new.yaml" <<'EOF'
import re
import sys
s = open(sys.argv[1]).read()
# weapons is the first category: its threshold, whatever the shipped value, becomes 0.2
s, n = re.subn(r"(\n    threshold: )[0-9.]+[^\n]*", r"\g<1>0.2", s, count=1)
assert n == 1 and "threshold: 0.2\n" in s[s.index("- id: weapons"):s.index("- id: alcohol")]
s = s.replace("  - bicycle\n", "  - bicycle\n  - bottle\n", 1)
open(sys.argv[2], "w").write(s)
EOF
run 0 $EV --policy "$W/new.yaml" --compare "$P" --json "$L"
cp "$W/out" "$W/compare.json"
run 0 $EV --policy "$W/new.yaml" --compare "$P" "$L"
grep -q "^compared with $P: [1-9][0-9]* of [0-9]* scanned images change verdict" "$W/out" ||
    fail "no comparison in the table: $(cat "$W/out")"
for pol in "$P" "$W/new.yaml"; do
    set +e
    "$CLIPMOD" scan -q --json -r --model "$M" --policy "$pol" "$L" >>"$W/scans.jsonl" 2>/dev/null
    set -e
    echo "---" >>"$W/scans.jsonl"
done
"$PY" - "$W/compare.json" "$W/scans.jsonl" <<'EOF' || fail "--compare differs from two scans"
import json, sys
d = json.load(open(sys.argv[1]))
parts = open(sys.argv[2]).read().split("---\n")
old, new = ({(r := json.loads(l))["name"]: (r["state"], r["action"], r["category"])
             for l in p.splitlines() if l} for p in parts[:2])
want = {n for n in old if old[n] != new[n]}
got = {}
for g in d["compare"]["changes"]:
    f, t = g["from"], g["to"]
    for im in g["images"]:
        got[im["path"]] = ((f["state"], f["action"], f.get("category")),
                           (t["state"], t["action"], t.get("category")))
assert set(got) == want, (sorted(set(got) ^ want))
for n, (f, t) in got.items():
    assert f == old[n] and t == new[n], (n, f, t, old[n], new[n])
assert d["compare"]["changed"] == len(want)
labels = {r["path"]: r["labels"] for r in d["results"]}
for g in d["compare"]["changes"]:
    for im in g["images"]:
        assert im["labels"] == labels[im["path"]]
touched = {t[2] for n, (f, t) in got.items()} | {f[2] for n, (f, t) in got.items()}
print(f"{len(want)} verdicts change; categories involved: {sorted(x for x in touched if x)}")
EOF
echo "policy compare: OK"
