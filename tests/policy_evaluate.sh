#!/bin/sh
# policy_evaluate.sh - `clipmod policy evaluate` end to end with the demo model.
#
# A small labelled set is built by tools/labelled-set.py from Noto Color Emoji renders
# (the demo model's data), as a folder and as a CSV manifest with multi-label images.
# Checks:
#   1. every metric of --json (AUC, AP, counts and rates at the threshold, each
#      suggested threshold for several targets, fpr=X reaching at most X) equals the
#      independent numpy reference's (tests/reference/metrics_ref.py), folder and
#      manifest;
#   2. the scores and verdicts evaluate computes from its cosines equal what
#      `clipmod scan --json` gives for the same images;
#   3. the terminal table: every category, the suggestions;
#   4. a category without positives: null in JSON, n/a in the table, never NaN;
#   5. an image that cannot be scanned is listed apart with its reason, not counted;
#   6. a wrong label (folder or manifest line) is an error naming it, with
#      "did you mean".
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

PY=/usr/bin/python3
M="$top_srcdir/models/demo"
P="$top_srcdir/policies/demo.yaml"
W="$CLIPMOD_WORK/policy_evaluate"
rm -rf "$W"
mkdir -p "$W"
XDG_CACHE_HOME="$W/cache"
export XDG_CACHE_HOME
unset CLIPMOD_MODEL CLIPMOD_POLICY

need_demo_data "$M"

L="$W/set"
"$PY" "$top_srcdir/tools/labelled-set.py" --out "$L" --noto --clean 60 --manifest \
    >"$W/set.out" 2>&1 || fail "labelled-set.py: $(cat "$W/set.out")"
EV="$CLIPMOD policy evaluate -q --model $M --policy $P"

# 1. Metrics against the reference: the folder, then the manifest (multi-label).
run 0 $EV --json --target fpr=0.01 --target fpr=0.05 --target precision=0.9 \
    --target recall=0.8 --target f1 "$L"
cp "$W/out" "$W/folder.json"
"$PY" "$REF/metrics_ref.py" check "$W/folder.json" >"$W/ref.out" 2>&1 ||
    fail "metrics differ from the reference: $(cat "$W/ref.out")"
run 0 $EV --json "$L/manifest.csv"
cp "$W/out" "$W/manifest.json"
"$PY" "$REF/metrics_ref.py" check "$W/manifest.json" >"$W/ref.out" 2>&1 ||
    fail "manifest metrics differ from the reference: $(cat "$W/ref.out")"
"$PY" - "$W/manifest.json" <<'EOF' || fail "the manifest's multi-label images are not counted"
import json, sys
d = json.load(open(sys.argv[1]))
multi = [r for r in d["results"] if len(r["labels"]) == 2]
assert len(multi) == 6, len(multi)
assert d["images"] == d["scanned"] and d["unscanned"] == 0, d["images"]
EOF

# 2. The same scores and verdicts as the scanner.
set +e
"$CLIPMOD" scan -q --json -r --model "$M" --policy "$P" "$L" >"$W/scan.jsonl" 2>"$W/scan.err"
set -e
"$PY" - "$W/folder.json" "$W/scan.jsonl" <<'EOF' || fail "evaluate and scan disagree"
import json, sys
ev = {r["path"]: r for r in json.load(open(sys.argv[1]))["results"]}
n = 0
for line in open(sys.argv[2]):
    s = json.loads(line)
    if "/.pairs/" in s["name"] or s["name"].endswith(".csv"):
        continue  # the manifest and its own images, which scan -r also walks
    e = ev[s["name"]]
    assert (e["state"], e["action"], e["category"]) == (s["state"], s["action"], s["category"]), (e, s)
    for c in s["categories"]:
        assert abs(e["scores"][c["id"]] - c["score"]) <= 5e-5, (s["name"], c["id"])
    n += 1
assert n == len(ev), (n, len(ev))
print(f"{n} images: evaluate = scan")
EOF

# 3. The table.
run 0 $EV --target fpr=0.02 "$L"
for c in weapons alcohol tobacco drugs gambling violence; do
    grep -q "^$c " "$W/out" || fail "no row for $c: $(cat "$W/out")"
done
grep -q "suggested for FPR<=0.02: " "$W/out" || fail "no suggestion: $(cat "$W/out")"

# 4. A category without positives; 5. an image that cannot be scanned.
L2="$W/set2"
cp -r "$L" "$L2"
rm -rf "$L2/tobacco"
printf 'not an image\n' >"$L2/clean/broken.png"
run 0 $EV "$L2"
grep -q "^tobacco .* n/a *n/a " "$W/out" || fail "tobacco without positives: $(cat "$W/out")"
grep -Eqi '(^|[^a-z])nan([^a-z]|$)' "$W/out" && fail "NaN in the table: $(cat "$W/out")"
grep -q "not scanned (1)" "$W/out" || fail "the broken image is not listed: $(cat "$W/out")"
grep -q "broken.png: unsupported: " "$W/out" || fail "no reason for broken.png: $(cat "$W/out")"
run 0 $EV --json "$L2"
"$PY" -c 'import json, sys; json.load(open(sys.argv[1]), parse_constant=lambda c: sys.exit("JSON has " + c))' \
    "$W/out" || fail "NaN in the JSON"
"$PY" - "$W/out" <<'EOF' || fail "JSON for a category without positives / an unscanned image"
import json, sys
d = json.load(open(sys.argv[1]))
t = [c for c in d["categories"] if c["id"] == "tobacco"][0]
assert t["positives"] == 0 and t["roc_auc"] is None and t["average_precision"] is None, t
assert t["current"]["recall"] is None and t["suggested"][0]["threshold"] is None, t
assert d["unscanned"] == 1 and d["scanned"] == d["images"] - 1, d["unscanned"]
u = [r for r in d["results"] if r["state"] == "unscanned"][0]
assert u["path"].endswith("broken.png") and u["reason"] == "unsupported", u
EOF

# 6. Wrong labels.
mv "$L2/weapons" "$L2/weapon"
run 2 $EV "$L2"
grep -q "set2/weapon: 'weapon' is not a category of the policy nor 'clean' (did you mean 'weapons'?)" \
    "$W/err" || fail "no did-you-mean for the folder: $(cat "$W/err")"
printf 'path,labels\nclean/broken.png,clean\nviolence/x.png,violense\n' >"$W/bad.csv"
run 2 $EV "$W/bad.csv"
grep -q "bad.csv:3: 'violense' is not a category .*(did you mean 'violence'?)" "$W/err" ||
    fail "no line number for the manifest: $(cat "$W/err")"
echo "policy evaluate: OK"
