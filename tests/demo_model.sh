#!/bin/sh
# demo_model.sh - the shipped demo model (models/demo) and its policy, as users run them.
#
# Checks, with the C engine:
#   1. the artefact: config.json names it ("_name_or_path": "clipmod/demo-emoji",
#      "clipmod_demo": true), vocab_size = 512 + merges + 2, the three files <= 15 MiB;
#   2. the demo model announces itself: "demo_model": true in embed and scan JSON, the
#      note on stderr;
#   3. `clipmod policy check --model models/demo policies/demo.yaml` passes;
#   4. the sample images get the verdicts the README shows, and `make quickstart`
#      shows them in its table;
#   5. the model card's numbers: tools/demo/evaluate.py re-measures zero-shot accuracy
#      and the category metrics on the EmojiOne PNGs of Debian's ruby-gemojione
#      package, and every number must match the card within the tolerance the card
#      gives (set from measured run-to-run and PyTorch-vs-C differences).
# Step 5 needs that package (from the apt cache or `apt-get download`), and
# fonts-noto-color-emoji and unicode-cldr-core (to tell seen from held-out emoji):
# without them the test skips (77) after steps 1-4.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

PY=/usr/bin/python3
M="$top_srcdir/models/demo"
P="$top_srcdir/policies/demo.yaml"
S="$top_srcdir/samples"
W="$CLIPMOD_WORK/demo_model"
rm -rf "$W"
mkdir -p "$W"
XDG_CACHE_HOME="$W/cache"
export XDG_CACHE_HOME
unset CLIPMOD_MODEL CLIPMOD_POLICY

[ -f "$M/model.safetensors" ] || fail "$M/model.safetensors is missing (git lfs? make demo-model?)"
need_reference

# 1. The artefact.
check_demo_artefact "$M"

# 2. It says it is the demo model.
"$CLIPMOD" embed --model "$M" --text "an emoji of bomb." >"$W/embed.json" 2>"$W/embed.err" ||
    fail "clipmod embed: $(cat "$W/embed.err")"
grep -q '"demo_model": *true' "$W/embed.json" || fail "embed JSON lacks \"demo_model\": true"
grep -q "demo model" "$W/embed.err" || fail "no demo-model note on stderr: $(cat "$W/embed.err")"

# 3. The policy fits the model (every prompt and template within the context).
"$CLIPMOD" policy check --model "$M" "$P" >"$W/check.out" 2>&1 ||
    fail "policy check: $(cat "$W/check.out")"

# 4. The samples: the verdicts the README shows.
set +e
"$CLIPMOD" scan --json -q --model "$M" --policy "$P" "$S"/*.png >"$W/scan.jsonl" 2>"$W/scan.err"
rc=$?
set -e
[ "$rc" -eq 1 ] || fail "scan of samples/ exited $rc, not 1 (flagged): $(cat "$W/scan.err")"
"$PY" - "$W/scan.jsonl" <<'EOF' || fail "sample verdicts differ from the README"
import json, os, sys
# samples/README.md's table: the demo model's deciding category, wrong ones included.
want = {"water-pistol.png": "weapons", "beer-mug.png": "weapons", "cigarette.png": "weapons",
        "pill.png": "drugs", "slot-machine.png": "gambling", "bomb.png": "violence",
        "input-latin-uppercase.png": None, "map-of-japan.png": None,
        "martial-arts-uniform.png": None}
got = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    assert r["demo_model"] is True, "scan JSON: demo_model is not true"
    got[os.path.basename(r["name"])] = r["category"]
bad = {k: (v, got.get(k)) for k, v in want.items() if got.get(k, "missing") != v}
bad.update({k: ("not a sample", v) for k, v in got.items() if k not in want})
for k, (w, g) in bad.items():
    print(f"{k}: expected {w}, got {g}")
sys.exit(1 if bad else 0)
EOF

# 4b. `make quickstart` (tools/quickstart.sh): the table agrees with the JSON above, row
# for row; the demo notice once; a legend; the next steps.
top_builddir="$top_builddir" sh "$top_srcdir/tools/quickstart.sh" >"$W/qs.out" 2>&1 ||
    fail "quickstart failed: $(cat "$W/qs.out")"
[ "$(grep -c "warning: this is clipmod.s demo model" "$W/qs.out")" -eq 1 ] ||
    fail "the demo notice is not printed exactly once: $(cat "$W/qs.out")"
for want in '^VERDICT +ACTION +CATEGORY +SCORE +INPUT$' '^SCORE: ' '^Next steps: '; do
    grep -Eq "$want" "$W/qs.out" || fail "quickstart output lacks /$want/: $(cat "$W/qs.out")"
done
"$PY" - "$W/scan.jsonl" "$W/qs.out" <<'EOF' || fail "quickstart's table differs from scan --json"
import json, os, re, sys
rows = {}
for line in open(sys.argv[2]):
    m = re.match(r"(FLAGGED|clean) +(\S+) +(\S+)(?: \+\d+)? +(\d\.\d\d) (>=|< ) (\d\.\d\d) +samples/(\S+)$", line.rstrip("\n"))
    if m:
        rows[m.group(7)] = m.groups()
n = 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    name = os.path.basename(r["name"])
    verdict, action, cat, score, cmp, thr, _ = rows[name]
    assert (verdict == "FLAGGED") == (r["state"] == "flagged"), (name, verdict)
    cats = {c["id"]: c for c in r["categories"]}
    if r["state"] == "flagged":
        assert cat == r["category"] and action == r["action"], (name, cat, action)
    else:  # a clean row shows the category closest to its threshold
        assert cat == max(cats.values(), key=lambda c: c["score"] - c["threshold"])["id"], name
    c = cats[cat]
    assert abs(float(score) - c["score"]) <= 0.005 and abs(float(thr) - c["threshold"]) < 1e-9, name
    assert (cmp == ">=") == (c["score"] >= c["threshold"]), name
    n += 1
assert n == len(rows) == 9, (n, len(rows))
print(f"quickstart table: {n} rows agree with scan --json")
EOF

# --table with a damaged input: an unscanned row with its reason; --table refuses --json.
printf 'not a png' >"$W/broken.png"
set +e
"$CLIPMOD" scan --table --no-summary -q --model "$M" --policy "$P" "$S/bomb.png" "$W/broken.png" \
    >"$W/tbl.out" 2>&1
rc=$?
"$CLIPMOD" scan --table --json --model "$M" --policy "$P" "$S/bomb.png" >"$W/tbl2.out" 2>&1
rc2=$?
set -e
[ "$rc" -eq 1 ] || fail "scan --table of a flagged and a damaged image exited $rc, not 1"
grep -Eq '^unscanned +- +- +- +.*broken\.png \(' "$W/tbl.out" || fail "no unscanned row: $(cat "$W/tbl.out")"
grep -Eq '^FLAGGED +quarantine +violence ' "$W/tbl.out" || fail "no bomb row: $(cat "$W/tbl.out")"
! grep -q 'SCAN SUMMARY' "$W/tbl.out" || fail "--no-summary printed a summary"
[ "$rc2" -eq 2 ] && grep -q -- '--table does not go with --json' "$W/tbl2.out" ||
    fail "--table --json: exit $rc2, $(cat "$W/tbl2.out")"

# 5. The model card's numbers.
check_demo_card "$M" "$P"
