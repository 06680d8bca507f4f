#!/bin/sh
# policy_check.sh - `clipmod policy check --json`: problems as {file, line, column,
# message, hint}, every problem in one run, hints for the usual mistakes.
# Checks:
#   1. a policy with a quoted threshold, a percentage, an unknown action and a prompt
#      too long for the text tower: all four reported in one run (the prompt length
#      too, although the file has other problems), each at the line and column the
#      test finds in the file's text, with hints saying how to write the number;
#   2. tabs in indentation (two ways libyaml reports them): "indent with spaces";
#   3. a problem in an included file names that file; a whole-file problem has null
#      line and column;
#   4. the text output still lists every problem as file:line:column: message.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

PY=/usr/bin/python3
M="$top_srcdir/models/demo"
W="$CLIPMOD_WORK/policy_check"
rm -rf "$W"
mkdir -p "$W"
XDG_CACHE_HOME="$W/cache"
export XDG_CACHE_HOME
unset CLIPMOD_MODEL CLIPMOD_POLICY
[ -f "$M/model.safetensors" ] || fail "$M/model.safetensors is missing"
cd "$W"

LONG=$(printf 'word %.0s' $(seq 1 90))
cat >multi.yaml <<EOF
version: 1
name: multi
templates: ["a picture of {}."]
neutral: [cat, dog]
categories:
  - id: weapons
    prompts: [gun, "$LONG"]
    threshold: "0.5"
    action: flag
  - id: drugs
    prompts: [pills]
    threshold: 50%
    action: flg
EOF
printf 'version: 1\nname: t\ncategories:\n\t- id: x\n' >tab1.yaml
printf 'version: 1\nname: t\ncategories:\n  - id: x\n\tprompts: [a]\n' >tab2.yaml
printf 'version: 1\nname: base\nneutral: [cat]\ncategories:\n  - id: a\n    prompts: [b]\n    threshold: 2\n    action: flag\n' >base.yaml
printf 'version: 1\nname: site\ninclude: base.yaml\n' >site.yaml
mkdir notafile

CHECK="$CLIPMOD policy check -q --json --model $M"
run 1 $CHECK multi.yaml tab1.yaml tab2.yaml site.yaml notafile
"$PY" - "$W/out" <<'EOF' || fail "policy check --json: $(cat "$W/out")"
import json, sys
docs = {d["file"]: d for d in map(json.loads, open(sys.argv[1]))}
assert len(docs) == 5, list(docs)

def pos(path, needle, nth=0):
    """1-based line and column of the nth occurrence of needle, from the text."""
    for i, line in enumerate(open(path).read().split("\n")):
        c = line.find(needle)
        if c >= 0:
            if nth == 0:
                return i + 1, c + 1
            nth -= 1
    raise AssertionError(needle)

for d in docs.values():
    assert not d["valid"] and d["policy"] is None, d
    for p in d["problems"]:
        assert set(p) == {"file", "line", "column", "message", "hint"}, p

m = docs["multi.yaml"]["problems"]
assert len(m) == 4, m
at = {(p["line"], p["column"]): p for p in m}
q = at[pos("multi.yaml", '"0.5"')]
assert q["file"] == "multi.yaml" and q["message"].startswith("threshold must be a number"), q
assert "without quotes" in q["hint"] and "'threshold: 0.5'" in q["hint"], q
pc = at[pos("multi.yaml", "50%")]
assert "percentage" in pc["hint"] and "'threshold: 0.5' for 50%" in pc["hint"], pc
a = at[pos("multi.yaml", "flg")]
assert a["message"].startswith("unknown action 'flg'") and a["hint"] == "did you mean 'flag'?", a
ln = at[pos("multi.yaml", '"word')]
assert "longer than the text tower's 77 tokens" in ln["message"] and "shorten" in ln["hint"], ln

for f, needle in (("tab1.yaml", "\t- id"), ("tab2.yaml", "\tprompts")):
    (p,) = docs[f]["problems"]
    assert p["file"] == f and p["line"] == pos(f, needle)[0], p
    assert p["message"].startswith("YAML syntax error"), p
    assert p["hint"] == "indent with spaces: YAML does not allow tabs in indentation", p

(p,) = docs["site.yaml"]["problems"]
l, c = pos("base.yaml", "threshold: 2")
assert p["file"] == "base.yaml" and (p["line"], p["column"]) == (l, c + 11), p
assert "'threshold: 0.5'" in p["hint"], p

(p,) = docs["notafile"]["problems"]
assert p["file"] == "notafile" and p["line"] is None and p["column"] is None, p
assert p["hint"] is None and p["message"], p
print("policy check --json: OK")
EOF

# 4. Text: the same problems, one per line.
run 1 $CLIPMOD policy check -q --model "$M" multi.yaml
[ "$(grep -c '^multi.yaml:[0-9]*:[0-9]*: ' "$W/out")" = 4 ] || fail "text: $(cat "$W/out")"
grep -q "^multi.yaml: 4 problems$" "$W/out" || fail "text: $(cat "$W/out")"
grep -q "^multi.yaml:7:[0-9]*: prompt is longer than the text tower" "$W/out" ||
    fail "no prompt-length problem in the text: $(cat "$W/out")"
# --quiet is problems only: a clean policy on the demo model says nothing at all
# (the quick start runs it before its scan, which gives the demo warning once).
run 0 $CLIPMOD policy check -q --model "$M" "$top_srcdir/policies/demo.yaml"
[ ! -s "$W/out" ] && [ ! -s "$W/err" ] || fail "policy check -q said: $(cat "$W/out" "$W/err")"
echo "policy check: OK"
