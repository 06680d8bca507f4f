#!/bin/sh
# precision_demo.sh - int8/bf16 on the demo model: the same moderation as fp32.
#
# The demo model's evaluation images (EmojiOne PNGs of Debian's ruby-gemojione, the
# set `make evaluate-demo` uses, labelled by tools/labelled-set.py) go through
# `clipmod policy evaluate --json` at fp32 and at each reduced precision this CPU
# runs. From the engine's JSON: every category's ROC AUC must be within 0.01 of
# fp32's, and >= 99% of the images must get fp32's verdict (state and category).
# Random checkpoints can lack the activation outliers of trained ones: this trained
# model is the real check. Skips (77) without the EmojiOne package.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

PY=/usr/bin/python3
M="$top_srcdir/models/demo"
P="$top_srcdir/policies/demo.yaml"
W="$CLIPMOD_WORK/precision_demo"
rm -rf "$W"
mkdir -p "$W"
unset CLIPMOD_MODEL CLIPMOD_POLICY
"$PY" -c 'import numpy, PIL' 2>/dev/null || skip "$PY cannot import numpy and PIL"
[ -d /usr/share/unicode/cldr/common/annotations ] ||
    skip "unicode-cldr-core is not installed (tools/install-deps.sh)"
png=$("$top_srcdir/tools/demo/emojione.sh" "$CLIPMOD_WORK/emojione" 2>"$W/emojione.err") ||
    skip "evaluation data unavailable: $(cat "$W/emojione.err")"
"$PY" "$top_srcdir/tools/labelled-set.py" --out "$W/set" --emojione "$png" --clean 1000 \
    --manifest >"$W/set.out" 2>&1 || fail "labelled-set.py: $(cat "$W/set.out")"

ev() {
    "$CLIPMOD" policy evaluate -q --json --no-cache --model "$M" --policy "$P" --precision "$1" \
        "$W/set/manifest.csv" >"$W/$1.json" 2>"$W/$1.err"
}
ev fp32 || fail "evaluate fp32: $(cat "$W/fp32.err")"
ran=""
for p in int8 bf16; do
    set +e
    ev $p
    rc=$?
    set -e
    if [ "$rc" -eq 2 ] && grep -q "not supported on this CPU" "$W/$p.err"; then
        echo "# skipped: $p ($(cat "$W/$p.err"))"
        continue
    fi
    [ "$rc" -eq 0 ] || fail "evaluate $p exited $rc: $(cat "$W/$p.err")"
    "$PY" - "$W/fp32.json" "$W/$p.json" $p <<'PYEOF' || fail "$p moderates differently from fp32"
import json, sys
a, b, p = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
ok = True
for ca, cb in zip(a["categories"], b["categories"]):
    assert ca["id"] == cb["id"]
    d = cb["roc_auc"] - ca["roc_auc"]
    print(f"{p} {ca['id']}: AUC {ca['roc_auc']:.4f} fp32, {cb['roc_auc']:.4f} {p} ({d:+.4f})")
    ok = ok and abs(d) <= 0.01
va = {r["path"]: (r["state"], r.get("category")) for r in a["results"]}
vb = {r["path"]: (r["state"], r.get("category")) for r in b["results"]}
assert va.keys() == vb.keys() and va, "different image sets"
same = sum(va[k] == vb[k] for k in va)
print(f"{p}: same verdict for {same}/{len(va)} images ({100.0 * same / len(va):.2f}%)")
sys.exit(0 if ok and same >= 0.99 * len(va) else 1)
PYEOF
    ran="$ran $p"
done
echo "precisions checked on the demo model:${ran:- none (this CPU runs neither)}"
