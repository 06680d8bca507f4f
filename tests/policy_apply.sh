#!/bin/sh
# policy_apply.sh - `clipmod policy evaluate --apply` writes the suggested thresholds
# into the policy file, with the demo model and a labelled set from tools/labelled-set.py.
# Checks:
#   1. only the threshold numbers change (every other byte kept), each written number is
#      the one --json suggested, and evaluating again finds current == suggested;
#   2. a threshold written in an included file: a `threshold:` line is inserted into the
#      category's block mapping (keys' indentation) or `, threshold: T` into its flow
#      mapping in the including file; the included file is untouched;
#   3. a category the including file has no entry for: refused, nothing written;
#   4. the file changed between read and write: refused, nothing written;
#   5. the edited file fails to compile (an included file broke meanwhile): nothing
#      written, no temporary file left;
#   6. --apply without --policy is an error.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

PY=/usr/bin/python3
M="$top_srcdir/models/demo"
W="$CLIPMOD_WORK/policy_apply"
rm -rf "$W"
mkdir -p "$W"
XDG_CACHE_HOME="$W/cache"
export XDG_CACHE_HOME
unset CLIPMOD_MODEL CLIPMOD_POLICY CLIPMOD_TEST_APPLY_PAUSE

need_demo_data "$M"

L="$W/set"
"$PY" "$top_srcdir/tools/labelled-set.py" --out "$L" --noto --clean 60 \
    >"$W/set.out" 2>&1 || fail "labelled-set.py: $(cat "$W/set.out")"
EV="$CLIPMOD policy evaluate -q --no-attribution --model $M"
D="$W/p"
mkdir -p "$D"

# The categories' current and suggested thresholds of a --json output, one per line.
thresholds() {
    "$PY" -c '
import json, sys
for c in json.load(open(sys.argv[1]))["categories"]:
    print(c["id"], repr(c["threshold"]), repr(c["suggested"][0]["threshold"]))' "$1"
}

# 1. The demo policy in place.
cp "$top_srcdir/policies/demo.yaml" "$D/demo.yaml"
run 0 $EV --policy "$D/demo.yaml" --json "$L"
cp "$W/out" "$W/before.json"
run 0 $EV --policy "$D/demo.yaml" --apply "$L"
grep -q "wrote 6 thresholds to $D/demo.yaml" "$W/err" || fail "no summary: $(cat "$W/err")"
"$PY" - "$top_srcdir/policies/demo.yaml" "$D/demo.yaml" "$W/before.json" <<'EOF' ||
import json, re, sys
old, new = (open(p, "rb").read().split(b"\n") for p in sys.argv[1:3])
sugg = {c["id"]: c["suggested"][0]["threshold"] for c in json.load(open(sys.argv[3]))["categories"]}
assert len(old) == len(new), "line count changed"
num = re.compile(rb"^( *threshold: )([0-9.eE+-]+)( .*)?$")
cat, changed = None, 0
for a, b in zip(old, new):
    m = re.match(rb"^  - id: ([a-z0-9_-]+)", a)
    if m:
        cat = m.group(1).decode()
    if a == b:
        continue
    ma, mb = num.match(a), num.match(b)
    assert ma and mb, (a, b)
    assert (ma.group(1), ma.group(3)) == (mb.group(1), mb.group(3)), (a, b)
    assert float(mb.group(2)) == sugg[cat], (cat, b, sugg[cat])
    changed += 1
assert changed == len([s for s in sugg.values() if s is not None]), changed
print("changed", changed)
EOF
    fail "more than the threshold numbers changed: $(diff "$top_srcdir/policies/demo.yaml" "$D/demo.yaml")"
run 0 $EV --policy "$D/demo.yaml" --json "$L"
thresholds "$W/out" >"$W/after.txt"
thresholds "$W/before.json" | awk '{print $1, $3, $3}' >"$W/want.txt"
cmp -s "$W/after.txt" "$W/want.txt" ||
    fail "evaluating again: current != suggested: $(diff "$W/want.txt" "$W/after.txt")"
cp "$D/demo.yaml" "$W/applied.yaml"
run 0 $EV --policy "$D/demo.yaml" --apply "$L"
grep -q "already holds the suggested thresholds" "$W/err" || fail "second apply: $(cat "$W/err")"
cmp -s "$D/demo.yaml" "$W/applied.yaml" || fail "a second --apply changed the file"

# 2. Thresholds in an included file: overrides inserted into the including file.
cp "$top_srcdir/policies/demo.yaml" "$D/base.yaml"
cat >"$D/site.yaml" <<'EOF'
# site.yaml - the demo policy with local actions
version: 1
include: base.yaml
categories:
  - id: weapons          # block mapping, id first
    action: quarantine
  - {id: alcohol, action: tag}
  -   id: tobacco
      description: "indented more"
  - action: flag
    id: drugs
  - {id: gambling}
  - id: violence
EOF
cp "$D/site.yaml" "$W/site.orig"
run 0 $EV --policy "$D/site.yaml" --json "$L"
thresholds "$W/out" | awk '{print $1, $3, $3}' >"$W/want.txt"
run 0 $EV --policy "$D/site.yaml" --apply "$L"
cmp -s "$D/base.yaml" "$top_srcdir/policies/demo.yaml" || fail "the included file was edited"
"$PY" - "$W/site.orig" "$D/site.yaml" "$W/want.txt" <<'EOF' || fail "site.yaml: $(cat "$D/site.yaml")"
import re, sys
old, new = (open(p).read() for p in sys.argv[1:3])
want = {l.split()[0]: l.split()[1] for l in open(sys.argv[3])}
expect = old
expect = expect.replace("id first\n", "id first\n    threshold: %s\n" % want["weapons"], 1)
expect = expect.replace("action: tag}", "action: tag, threshold: %s}" % want["alcohol"], 1)
expect = expect.replace("tobacco\n", "tobacco\n      threshold: %s\n" % want["tobacco"], 1)
expect = expect.replace("id: drugs\n", "id: drugs\n    threshold: %s\n" % want["drugs"], 1)
expect = expect.replace("{id: gambling}", "{id: gambling, threshold: %s}" % want["gambling"], 1)
expect = expect.replace("id: violence\n", "id: violence\n    threshold: %s\n" % want["violence"], 1)
assert new == expect, new
EOF
run 0 $EV --policy "$D/site.yaml" --json "$L"
thresholds "$W/out" >"$W/after.txt"
cmp -s "$W/after.txt" "$W/want.txt" ||
    fail "site.yaml again: current != suggested: $(diff "$W/want.txt" "$W/after.txt")"

# 3. No entry for a category whose threshold is in the included file: refused.
printf 'version: 1\ninclude: base.yaml\ncategories:\n  - {id: weapons, action: reject}\n' >"$D/partial.yaml"
cp "$D/partial.yaml" "$W/partial.orig"
run 2 $EV --policy "$D/partial.yaml" --apply "$L"
grep -q "alcohol's threshold is written in .*base.yaml:[0-9]*, which .*partial.yaml includes" \
    "$W/err" || fail "no refusal for alcohol: $(cat "$W/err")"
grep -q "nothing written" "$W/err" || fail "no 'nothing written': $(cat "$W/err")"
cmp -s "$D/partial.yaml" "$W/partial.orig" || fail "partial.yaml was written"

# 4. Changed between read and write (the evaluation pauses while $W/pause exists).
cp "$top_srcdir/policies/demo.yaml" "$D/race.yaml"
rm -f "$W/pause"
set +e
CLIPMOD_TEST_APPLY_PAUSE="$W/pause" $EV --policy "$D/race.yaml" --apply "$L" \
    >"$W/race.out" 2>"$W/race.err" &
pid=$!
set -e
i=0
while [ ! -f "$W/pause" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
[ -f "$W/pause" ] || { kill $pid; fail "the evaluation never paused: $(cat "$W/race.err")"; }
printf '# edited by someone else\n' >>"$D/race.yaml"
cp "$D/race.yaml" "$W/race.edited"
rm -f "$W/pause"
set +e
wait $pid
got=$?
set -e
[ $got -eq 2 ] || fail "a file changed meanwhile: exit $got: $(cat "$W/race.err")"
grep -q "race.yaml changed since it was read; nothing written" "$W/race.err" ||
    fail "no refusal: $(cat "$W/race.err")"
cmp -s "$D/race.yaml" "$W/race.edited" || fail "race.yaml was written over"

# 5. The edited file does not compile (its included file broke meanwhile): nothing written.
cp "$W/site.orig" "$D/site.yaml"
set +e
CLIPMOD_TEST_APPLY_PAUSE="$W/pause" $EV --policy "$D/site.yaml" --apply "$L" \
    >"$W/bad.out" 2>"$W/bad.err" &
pid=$!
set -e
i=0
while [ ! -f "$W/pause" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
[ -f "$W/pause" ] || { kill $pid; fail "the evaluation never paused: $(cat "$W/bad.err")"; }
printf 'bogus_key: 1\n' >>"$D/base.yaml"
rm -f "$W/pause"
set +e
wait $pid
got=$?
set -e
[ $got -eq 2 ] || fail "a failing re-validation: exit $got: $(cat "$W/bad.err")"
grep -q "the edited policy does not compile" "$W/bad.err" || fail "no reason: $(cat "$W/bad.err")"
grep -q "unknown key 'bogus_key'" "$W/bad.err" || fail "no problem listed: $(cat "$W/bad.err")"
cmp -s "$D/site.yaml" "$W/site.orig" || fail "site.yaml was written"
ls "$D" | grep -q 'apply-' && fail "a temporary file was left: $(ls "$D")"

# 6. --apply needs --policy.
run 2 $EV --apply "$L"
grep -q -- "--apply edits the file given with --policy FILE" "$W/err" || fail "$(cat "$W/err")"
echo "policy apply: OK"
