#!/bin/sh
# policy_evaluate_context.sh - `clipmod policy evaluate` on image+text pairs (issue 15).
#
# The demo manifest tools/demo/captions.csv gives the eight samples alone and with seven
# captions (pistol, dagger: weapons; beer mug: alcohol; cigarette: tobacco; three
# neutral), evaluated with tools/demo/captions.yaml (policies/demo.yaml with context: {}
# on weapons and context: {mode: alone} on alcohol). Checks:
#   1. the goldens come from `clipmod scan --json [--context TEXT]`, one scan per caption
#      over the eight images: every row's image-only and image+context scores and hits,
#      and from them each context category's counts, both sides, equal evaluate's
#      --json (scores within scan's 4 decimals); each side's ROC AUC recomputed from the
#      definition on the per-row scores;
#   2. image+context recall is higher than image-only on weapons over all rows and on
#      the pairs labelled weapons by their caption, with no more false positives;
#   3. rows without text score exactly as image-only (scores, verdict), and a text the
#      category does not match (context score under its threshold) leaves the score
#      exactly the image's; a matching one raises it by the policy's formula;
#   4. the JSON has both sets of numbers per context category (and the image-only set
#      equals the category's own), none for tobacco (no context:); the table has a
#      "+context" row and the image-only -> image+context summary;
#   5. the same pairs as JSONL give the same numbers; hostile texts (invalid UTF-8,
#      controls, NUL, bidi marks) are scored without harm; "text" of the wrong type is
#      an error naming the line;
#   6. the plain demo policy (no context:) on the manifest: image-only only, with a note.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

PY=/usr/bin/python3
M="$top_srcdir/models/demo"
D="$top_srcdir/tools/demo"
P="$D/captions.yaml"
CSV="$D/captions.csv"
W="$CLIPMOD_WORK/policy_evaluate_context"
rm -rf "$W"
mkdir -p "$W"
XDG_CACHE_HOME="$W/cache"
export XDG_CACHE_HOME
unset CLIPMOD_MODEL CLIPMOD_POLICY

[ -f "$M/model.safetensors" ] || fail "$M/model.safetensors is missing"
"$PY" -c 'import json, csv' 2>/dev/null || skip "$PY cannot import json and csv"
EV="$CLIPMOD policy evaluate -q --no-progress --model $M --policy $P"

# 1. Goldens: one scan per caption (and one without) over the eight samples.
"$PY" - "$CSV" >"$W/captions" <<'EOF'
import csv, sys
rows = [r for r in csv.reader(l for l in open(sys.argv[1]) if l.strip() and not l.startswith("#"))][1:]
for t in sorted({r[1] for r in rows}):
    print(t)
EOF
i=0
while IFS= read -r text; do
    i=$((i + 1))
    set -- --context "$text"
    [ -n "$text" ] || set --
    set +e
    "$CLIPMOD" scan -q --json --model "$M" --policy "$P" "$@" "$top_srcdir"/tests/data/demo-scenes/*.png \
        >"$W/scan.$i.jsonl" 2>"$W/scan.$i.err"
    rc=$?
    set -e
    [ "$rc" -le 1 ] || fail "scan --context '$text': $rc: $(cat "$W/scan.$i.err")"
    printf '%s\t%s\n' "$W/scan.$i.jsonl" "$text" >>"$W/scans"
done <"$W/captions"
[ "$i" -eq 8 ] || fail "expected 8 captions (with none), got $i"

run 0 $EV --json "$CSV"
cp "$W/out" "$W/ev.json"
"$PY" - "$CSV" "$W/scans" "$W/ev.json" <<'EOF' || fail "evaluate disagrees with scan --context"
import csv, json, os, sys
lines = [l for l in open(sys.argv[1]) if l.strip() and not l.startswith("#")]
rows = list(csv.reader(lines))[1:]
scan = {}
for line in open(sys.argv[2]):
    path, text = line.rstrip("\n").split("\t")
    for l in open(path):
        s = json.loads(l)
        scan[(os.path.basename(s["name"]), text)] = {c["id"]: c for c in s["categories"]}
base = {img: cats for (img, t), cats in scan.items() if t == ""}
d = json.load(open(sys.argv[3]))
res = d["results"]
assert len(res) == len(rows) == 64, (len(res), len(rows))
ctx_ids = ["weapons", "alcohol"]
assert d["context"] == {"rows_with_text": 56, "categories": ctx_ids}, d["context"]

def counts(hits, pos):
    tp = sum(h and p for h, p in zip(hits, pos)); fp = sum(h and not p for h, p in zip(hits, pos))
    fn = sum(p and not h for h, p in zip(hits, pos)); tn = len(pos) - tp - fp - fn
    return tp, fp, fn, tn

def auc(s, pos):
    P = [x for x, p in zip(s, pos) if p]; N = [x for x, p in zip(s, pos) if not p]
    return sum((a > b) + 0.5 * (a == b) for a in P for b in N) / (len(P) * len(N))

cats = {c["id"]: c for c in d["categories"]}
for cid in ctx_ids:
    pos, img_s, img_h, ctx_s, ctx_h = [], [], [], [], []
    for r, e in zip(rows, res):
        img, text = os.path.basename(r[0]), r[1]
        assert e["path"].endswith(img) and e["state"] != "unscanned", (e, r)
        golden_img, golden_ctx = base[img][cid], scan[(img, text)][cid]
        # Image-only: the scan without context; image+context: the scan with the caption.
        assert abs(e["scores"][cid] - golden_img["score"]) <= 5e-5, (img, text, cid)
        assert abs(e["context"]["scores"][cid] - golden_ctx["score"]) <= 5e-5, (img, text, cid)
        assert (cid in e["context"]["flagged"]) == golden_ctx["hit"], (img, text, cid, e["context"])
        pos.append(cid in r[2:])
        img_s.append(e["scores"][cid]); img_h.append(golden_img["hit"])
        ctx_s.append(e["context"]["scores"][cid]); ctx_h.append(golden_ctx["hit"])
    c = cats[cid]["context"]
    assert c["rows_with_text"] == 56, c
    for side, s, h in (("image_only", img_s, img_h), ("image_context", ctx_s, ctx_h)):
        cur = c[side]["current"]
        got = (cur["tp"], cur["fp"], cur["fn"], cur["tn"])
        assert got == counts(h, pos), (cid, side, got, counts(h, pos))
        assert c[side]["flagged"] == sum(h), (cid, side, c[side]["flagged"])
        # The AUC from the definition, on the per-row scores checked against scan above
        # (scan's own are rounded to 4 decimals, which would add ties).
        assert abs(c[side]["roc_auc"] - auc(s, pos)) <= 1e-12, (cid, side, c[side]["roc_auc"], auc(s, pos))
    print(cid, "image-only", counts(img_h, pos), "image+context", counts(ctx_h, pos))
EOF

# 2. Context helps weapons: recall up overall and on the pairs its caption labels.
"$PY" - "$CSV" "$W/ev.json" <<'EOF' || fail "context does not raise weapons recall"
import csv, json, sys
rows = list(csv.reader(l for l in open(sys.argv[1]) if l.strip() and not l.startswith("#")))[1:]
d = json.load(open(sys.argv[2]))
w = [c for c in d["categories"] if c["id"] == "weapons"][0]["context"]
a, b = w["image_only"]["current"], w["image_context"]["current"]
assert b["recall"] > a["recall"] and b["fp"] <= a["fp"], (a, b)
assert w["image_context"]["flagged"] > w["image_only"]["flagged"], w
by_text = [(r, e) for r, e in zip(rows, d["results"]) if r[1] in ("pistol", "dagger")]
assert all("weapons" in r[2:] for r, _ in by_text) and len(by_text) == 16
img = sum(e["scores"]["weapons"] >= 0.34 for _, e in by_text)
ctx = sum("weapons" in e["context"]["flagged"] for _, e in by_text)
assert ctx > img, (img, ctx)
al = [c for c in d["categories"] if c["id"] == "alcohol"][0]["context"]
assert al["image_context"]["current"]["recall"] > al["image_only"]["current"]["recall"], al
print(f"weapons recall {a['recall']:.3f} -> {b['recall']:.3f}; captioned pairs {img} -> {ctx} of 16")
EOF

# 3. Rows without text, texts that do not match, texts that do.
"$PY" - "$CSV" "$W/ev.json" <<'EOF' || fail "image+context scores break the formula"
import csv, json, sys
rows = list(csv.reader(l for l in open(sys.argv[1]) if l.strip() and not l.startswith("#")))[1:]
d = json.load(open(sys.argv[2]))
thr = {c["id"]: c["threshold"] for c in d["categories"]}
bare = raised = 0
for r, e in zip(rows, d["results"]):
    x = e["context"]
    if not r[1]:
        assert x["text_bytes"] == 0 and x["text_scores"] is None, x
        assert x["scores"] == e["scores"], (r, x)  # exactly
        assert (x["state"], x["action"], x["category"]) == (e["state"], e["action"], e["category"]), r
        assert x["flagged"] == [c for c in thr if e["scores"][c] >= thr[c]], r
        bare += 1
        continue
    assert x["text_bytes"] == len(r[1].encode()) and set(x["text_scores"]) == {"weapons", "alcohol"}, x
    for cid, s in e["scores"].items():
        t = x["text_scores"].get(cid, -1)
        if cid == "weapons" and t >= 0.5:   # raise, weight 0.35
            assert abs(x["scores"][cid] - (s + 0.35 * t * (1 - s))) <= 1e-9, (r, cid)
            raised += 1
        else:                                # no context, alone, or no match: the image's
            assert x["scores"][cid] == s, (r, cid, x["scores"][cid], s)
    if r[1] in ("grinning face", "birthday cake", "sunflower"):
        assert max(x["text_scores"].values()) < 0.5, (r, x["text_scores"])
        assert (x["state"], x["category"]) == (e["state"], e["category"]), r
assert bare == 8 and raised == 16, (bare, raised)
EOF

# 4. Both sets in the JSON; the table.
"$PY" - "$W/ev.json" <<'EOF' || fail "the JSON lacks a set of numbers"
import json, sys
d = json.load(open(sys.argv[1]))
for c in d["categories"]:
    if c["id"] not in ("weapons", "alcohol"):
        assert "context" not in c, c["id"]
        continue
    x = c["context"]
    assert x["image_only"]["current"] == c["current"], c["id"]
    assert x["image_only"]["roc_auc"] == c["roc_auc"], c["id"]
    assert x["image_only"]["average_precision"] == c["average_precision"], c["id"]
    for side in ("image_only", "image_context"):
        assert set(x[side]) == {"roc_auc", "average_precision", "flagged", "current"}, x[side]
        assert {"tp", "fp", "fn", "tn", "precision", "recall", "fpr", "f1"} <= set(x[side]["current"])
assert d["seconds"]["context"] >= 0
EOF
run 0 $EV --no-attribution "$CSV"
grep -A1 '^weapons ' "$W/out" | grep -q '^  +context ' || fail "no +context row: $(cat "$W/out")"
grep -A1 '^alcohol ' "$W/out" | grep -q '^  +context ' || fail "no +context row: $(cat "$W/out")"
grep -A1 '^tobacco ' "$W/out" | grep -q '+context' && fail "+context for tobacco: $(cat "$W/out")"
grep -q '^image-only -> image+context (56 of 64 scanned images have text):' "$W/out" ||
    fail "no summary: $(cat "$W/out")"
grep -Eq '^  weapons +flagged [0-9]+ -> [0-9]+, recall ' "$W/out" || fail "no weapons line: $(cat "$W/out")"

# 5. JSONL: the same pairs, plus hostile texts; a "text" of the wrong type.
"$PY" - "$CSV" "$W/set.jsonl" "$top_srcdir/tests/data/demo-scenes" <<'EOF'
import csv, json, os, sys
rows = list(csv.reader(l for l in open(sys.argv[1]) if l.strip() and not l.startswith("#")))[1:]
with open(sys.argv[2], "w") as f:
    for r in rows:
        o = {"path": os.path.join(sys.argv[3], os.path.basename(r[0])), "labels": r[2:]}
        if r[1]:
            o["text"] = r[1]
        f.write(json.dumps(o) + "\n")
    hostile = ["\u202epistol\u202c", "a\u0000b", "\u200b" * 5000, "x " * 20000, "\x01\x02\x7f"]
    for t in hostile:
        f.write(json.dumps({"path": os.path.join(sys.argv[3], "teddy-bear.png"), "text": t}) + "\n")
EOF
printf '../../tests/data/demo-scenes/teddy-bear.png,\377\376 pistol \001\033[31m,weapons\n' >"$W/hostile.tail"
run 0 $EV --json --no-attribution "$W/set.jsonl"
"$PY" - "$W/ev.json" "$W/out" <<'EOF' || fail "JSONL numbers differ from CSV"
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert b["images"] == b["scanned"] == 69 and b["context"]["rows_with_text"] == 61, b["context"]
for ra, rb in zip(a["results"], b["results"]):
    assert ra["context"]["scores"] == rb["context"]["scores"], (ra["path"], rb["path"])
    assert ra["context"]["flagged"] == rb["context"]["flagged"], ra["path"]
for r in b["results"][64:]:
    assert r["state"] != "unscanned" and r["context"]["text_bytes"] > 0, r
EOF
printf '{"path": "x.png", "text": 3}\n' >"$W/bad.jsonl"
run 2 $EV "$W/bad.jsonl"
grep -q 'bad.jsonl:1: "text" must be a string' "$W/err" || fail "no error for text 3: $(cat "$W/err")"
mkdir -p "$W/csv"
{ sed -n '/^path,/,$p' "$CSV" | sed 's|\.\./\.\./tests/data/demo-scenes/|'"$top_srcdir"'/tests/data/demo-scenes/|'
  sed 's|\.\./\.\./tests/data/demo-scenes/|'"$top_srcdir"'/tests/data/demo-scenes/|' "$W/hostile.tail"; } >"$W/csv/hostile.csv"
run 0 $EV --json --no-attribution "$W/csv/hostile.csv"
"$PY" - "$W/out" <<'EOF' || fail "a hostile CSV text"
import json, sys
d = json.load(open(sys.argv[1]))
r = d["results"][-1]
assert d["images"] == d["scanned"] == 65 and r["context"]["text_bytes"] == 16, r
EOF

# 6. No category uses context: image-only numbers only, and a note.
run 0 $CLIPMOD policy evaluate --no-progress --json --no-attribution --model "$M" \
    --policy "$top_srcdir/policies/demo.yaml" "$CSV"
grep -q "56 images have text, but no category of the policy uses context" "$W/err" ||
    fail "no note: $(cat "$W/err")"
"$PY" - "$W/out" <<'EOF' || fail "context numbers without context:"
import json, sys
d = json.load(open(sys.argv[1]))
assert "context" not in d and all("context" not in c for c in d["categories"])
assert all("context" not in r for r in d["results"])
EOF
echo "policy evaluate with context: OK"
