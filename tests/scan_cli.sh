#!/bin/sh
# scan_cli.sh - `clipmod scan` and `clipmod policy check` as a user and an upload
# script meet them: exit codes, JSON Lines, input order across batches, directories,
# stdin, unscanned inputs, --hook codes, settings, and policy problems with positions.
#
# The model is a tiny checkpoint with random weights: its scores are arbitrary but
# deterministic. So this test does not ask whether a photo "is" a cat. It scans the
# sample photos once, takes the photo with the highest score for the test category
# and the one with the lowest, and puts the threshold halfway between them; what is
# checked is the machinery around the scores (threshold, verdict, action, output,
# exit codes), which must then flag exactly the first of the two.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

PY=/usr/bin/python3
W="$CLIPMOD_WORK/scan_cli"
rm -rf "$W"
mkdir -p "$W"
# Keep the prompt cache out of the user's home.
XDG_CACHE_HOME="$W/cache"
export XDG_CACHE_HOME
unset CLIPMOD_MODEL CLIPMOD_POLICY
# Name order is byte order, as clipmod sorts directory entries.
LC_ALL=C
export LC_ALL


# ---------------------------------------------------------------------------
# Help needs no model.
"$CLIPMOD" --help | grep -q "^  scan " || fail "--help does not list scan"
"$CLIPMOD" --help | grep -q "^  policy " || fail "--help does not list policy"
"$CLIPMOD" scan --help >"$W/help"
for opt in --policy --model --json --explain --recursive --hook --quiet --batch --threads \
    --max-file-bytes --max-pixels --max-side --max-frames --max-scan-ms --top-prompts; do
    grep -q -- "$opt" "$W/help" || fail "scan --help does not list $opt"
done
grep -q -- "--max-file-bytes N  *default [0-9][0-9]* " "$W/help" ||
    fail "scan --help does not give the limits' defaults"
grep -q "13 reject" "$W/help" || fail "scan --help does not give the hook codes"
"$CLIPMOD" policy check --help | grep -q "file:line:column" || fail "policy check --help"
# The configuration directory is the one the daemons read their files from (their
# --help names the default file), the same in clipmod --help and clipmod scan --help;
# the models directory is the one `clipmod model` installs into as root.
for prog in "$top_builddir/src/daemon/clipmodd" "$top_builddir/plugins/milter/clipmod-milter"; do
    [ -x "$prog" ] || continue
    conf=$("$prog" --help | sed -n 's|.*configuration (default \(/[^ ]*\)/[a-z-]*\.yaml.*|\1|p')
    [ -n "$conf" ] || fail "$prog --help names no configuration file"
    for help in "--help" "scan --help"; do
        # shellcheck disable=SC2086 # help is a command and its option
        "$CLIPMOD" $help | grep -qxF "  $conf" ||
            fail "clipmod $help does not name $prog's configuration directory $conf"
    done
done
models=$("$CLIPMOD" model --help | tr -s ' \n' ' ' | sed -n 's|.*for root \(/[^ ;)]*\).*|\1|p')
[ -n "$models" ] || fail "clipmod model --help names no system models directory"
for help in "--help" "scan --help"; do
    # shellcheck disable=SC2086
    "$CLIPMOD" $help | grep -qxF "  $models/default" ||
        fail "clipmod $help does not name the default model $models/default"
    # shellcheck disable=SC2086
    "$CLIPMOD" $help | grep -qxF "  $models" || fail "clipmod $help does not name $models"
done
run 2 "$CLIPMOD" scan
run 2 "$CLIPMOD" scan --batch 0 x.png
# --threads: one parser for every command, plain digits 1..256 and the value quoted back.
for bad in x 0 257 4x -1 "" " 4" 99999999999999999999; do
    for cmd in "scan" "embed -m nowhere" "similarity -m nowhere" "policy evaluate"; do
        # shellcheck disable=SC2086 # cmd is a command and its arguments
        run 2 "$CLIPMOD" $cmd --threads "$bad" x.png
        grep -qxF -- "clipmod: --threads: expected 1..256, got '$bad'" "$W/err" ||
            fail "$cmd --threads '$bad': $(cat "$W/err")"
    done
done
run 2 "$CLIPMOD" scan --max-file-bytes 10X x.png
grep -q "max-file-bytes" "$W/err" || fail "a bad limit must be named"
run 2 "$CLIPMOD" scan --max-pixels 10M x.png
grep -q "max-pixels needs a decimal number" "$W/err" || fail "only byte limits take sizes"
run 2 "$CLIPMOD" policy check
run 2 "$CLIPMOD" policy frobnicate

need_reference
photos=$(photos_dir) || fail "no sample photos"
have_bpe || skip "$CLIPMOD_BPE_GZ is absent: policies need the tokenizer"
model=$(checkpoint tiny-scan --shape tiny --layout hf --dtype f32 --act quick_gelu --seed 5 \
    --merges "$CLIPMOD_BPE_GZ") || fail "reference checkpoint"

scan() { "$CLIPMOD" scan -m "$model" "$@"; }

# ---------------------------------------------------------------------------
# Measure: every photo's score with a threshold nothing reaches.
write_policy "$W/measure.yaml" 1 flag
run 2 scan -p "$W/measure.yaml" --json --quiet "$photos" "$W/no-such-file.png"
"$PY" - "$W/out" "$photos" >"$W/scores" <<'EOF' || fail "the JSON lines do not follow the schema"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 11, len(lines)  # 10 photos, then the missing file
for line in lines:
    r = json.loads(line)
    assert r["schema_version"] == 1
    for key, kind in (("name", str), ("state", str), ("action", str), ("message", str),
                      ("image", dict),
                      ("policy", str), ("model", str), ("categories", list), ("notes", list),
                      ("elapsed_ms", (int, float))):
        assert isinstance(r[key], kind), (key, r)
    assert r["policy"] == "scan test"
    if r["state"] == "unscanned":
        assert r["categories"] == [] and r["action"] == "allow" and r["category"] is None
        assert r["reason"] == "io-error" and r["reason_text"] and r["message"] == "", r
        continue
    assert r["state"] == "clean" and r["action"] == "allow", r
    assert r["reason"] is None and r["reason_text"] is None
    assert r["image"]["width"] > 0 and r["image"]["frames_scanned"] >= 1
    (c,) = r["categories"]
    assert c["id"] == "cat" and c["threshold"] == 1 and c["action"] == "flag"
    assert 0 <= c["score"] <= 1 and -1 <= c["cosine"] <= 1 and c["flagged"] is False
    assert abs(c["margin"] - (c["score"] - 1)) < 2e-4
    assert len(c["top_prompts"]) == 3  # top-prompts' default
    for p in c["top_prompts"]:
        assert p["kind"] in ("category", "contrast", "neutral") and 0 <= p["probability"] <= 1
    print(r["name"], c["score"])
EOF
[ "$(wc -l <"$W/scores")" -eq 10 ] || fail "expected 10 scored photos"
# The directory's files come in name order.
sort -c "$W/scores" || fail "a directory's files must be scanned in name order"
hi=$(sort -k2 -g "$W/scores" | tail -n 1)
lo=$(sort -k2 -g "$W/scores" | head -n 1)
hi_score=${hi#* }
hi=${hi% *}
lo_score=${lo#* }
lo=${lo% *}
threshold=$("$PY" -c "import sys; a, b = map(float, sys.argv[1:]); assert a - b > 0.002, (a, b); \
print('%.4f' % ((a + b) / 2))" "$hi_score" "$lo_score") ||
    fail "the random model scores every photo alike ($hi_score, $lo_score): no threshold between"
echo "highest: $hi ($hi_score), lowest: $lo ($lo_score); threshold $threshold"
write_policy "$W/p.yaml" "$threshold" flag

# The same input scans the same way twice.
run 1 scan -p "$W/p.yaml" --json --quiet "$photos" "$W/no-such-file.png"
cp "$W/out" "$W/all.jsonl"
run 1 scan -p "$W/p.yaml" --json --quiet "$photos" "$W/no-such-file.png"
"$PY" - "$W/all.jsonl" "$W/out" <<'EOF' || fail "two scans of the same photos differ"
import json, sys
a, b = ([json.loads(l) for l in open(f)] for f in sys.argv[1:])
strip = lambda r: {k: v for k, v in r.items() if k != "elapsed_ms"}
assert [strip(r) for r in a] == [strip(r) for r in b]
EOF

# ---------------------------------------------------------------------------
# Exit codes and readable lines: clean 0, flagged 1, errors 2.
run 0 scan -p "$W/p.yaml" "$lo"
grep -qx "$lo: clean" "$W/out" || fail "a clean line: $(cat "$W/out")"
grep -q "^----------- SCAN SUMMARY -----------$" "$W/out" || fail "no summary"
grep -q "^Scanned files: 1$" "$W/out" || fail "summary count"
# Time is the whole run, split into load and scan that add up to it; Rate is the scan's.
/usr/bin/python3 - "$W/out" <<'PYEOF' || fail "summary Time/Rate: $(grep '^Time\|^Rate' "$W/out")"
import re, sys
text = open(sys.argv[1]).read()
t = re.search(r"^Time: ([0-9.]+) sec \(0 m [0-9]+ s; load ([0-9.]+) sec, scan ([0-9.]+) sec\)$", text, re.M)
r = re.search(r"^Rate: ([0-9.]+) files/sec \(scan only\)$", text, re.M)
assert t and r, "wording"
total, load, scan = map(float, t.groups())
assert abs(load + scan - total) <= 0.0015 and load > 0 and scan > 0, (total, load, scan)
assert abs(float(r.group(1)) - 1 / scan) <= 0.05 + 0.0006 / scan**2, (r.group(1), scan)
PYEOF
run 1 scan -p "$W/p.yaml" "$hi"
grep -q "^$hi: FLAGGED cat (score [01]\.[0-9][0-9] >= [01]\.[0-9][0-9]) -> flag$" "$W/out" ||
    fail "a flagged line: $(cat "$W/out")"
grep -q "^Flagged files: 1$" "$W/out" || fail "summary flagged count"
run 1 scan -p "$W/p.yaml" "$lo" "$hi"
run 0 scan -p "$W/p.yaml" --quiet "$lo"
[ "$(cat "$W/out")" = "$lo: clean" ] || fail "--quiet must print the results only"
[ ! -s "$W/err" ] || fail "--quiet wrote to stderr: $(cat "$W/err")"
# --explain: one line per category, with its best prompts under it.
run 1 scan -p "$W/p.yaml" --explain --quiet "$hi"
grep -q "^    cat  *score [01]\.[0-9]* >= " "$W/out" || fail "--explain category line"
[ "$(grep -c '^        .*%  cos ' "$W/out")" -eq 3 ] || fail "--explain prompt lines"
# --json: lines only on stdout, the summary on stderr.
run 1 scan -p "$W/p.yaml" --json "$lo" "$hi"
[ "$(wc -l <"$W/out")" -eq 2 ] || fail "--json must print one line per input"
grep -q "SCAN SUMMARY" "$W/err" || fail "--json: the summary goes to stderr"
"$PY" -c 'import json, sys
a, b = (json.loads(l) for l in open(sys.argv[1]))
assert (a["state"], b["state"], b["action"], b["category"]) == ("clean", "flagged", "flag", "cat")
assert b["categories"][0]["flagged"] is True and b["categories"][0]["margin"] >= 0' "$W/out" ||
    fail "--json verdicts"
run 1 scan -p "$W/p.yaml" --json --explain --quiet "$hi"
"$PY" -c 'import json, sys
r = json.loads(open(sys.argv[1]).read())
assert len(r["categories"][0]["top_prompts"]) == 2 + 1 + 3  # every candidate' "$W/out" ||
    fail "--json --explain must list every prompt"

# A model or a policy that does not load: exit 2, nothing scanned.
run 2 scan -p "$W/p.yaml" -m "$W/no-model" "$lo"
grep -q "no-model" "$W/err" || fail "the error must name the model"
[ ! -s "$W/out" ] || fail "nothing may be printed when the model fails"
run 2 scan -p "$W/no-policy.yaml" "$lo"
grep -q "no-policy.yaml" "$W/err" || fail "the error must name the policy"
# The defaults come from the environment.
(
    CLIPMOD_MODEL="$model" CLIPMOD_POLICY="$W/p.yaml"
    export CLIPMOD_MODEL CLIPMOD_POLICY
    run 1 "$CLIPMOD" scan --quiet "$hi"
) || exit 1

# ---------------------------------------------------------------------------
# Unscanned inputs: a verdict with its reason, never a crash; exit 2 when nothing
# is flagged (an unscanned image is not a clean one), 1 when something is.
: >"$W/empty.png"
printf 'This is not a JPEG.\n' >"$W/text.jpg"
run 2 scan -p "$W/p.yaml" --json "$W/empty.png" "$W/text.jpg" "$lo"
"$PY" -c 'import json, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
assert [r["state"] for r in rs] == ["unscanned", "unscanned", "clean"], rs
for r in rs[:2]:
    assert r["reason"] in ("decode-error", "unsupported"), r
    assert r["reason_text"] and r["action"] == "allow" and r["categories"] == []' "$W/out" ||
    fail "unscanned results: $(cat "$W/out")"
grep -q "^Unscanned files: 2$" "$W/err" || fail "summary unscanned count"
run 2 scan -p "$W/p.yaml" --quiet "$W/text.jpg"
grep -q "^$W/text.jpg: unscanned (\(decode-error\|unsupported\)" "$W/out" ||
    fail "an unscanned line: $(cat "$W/out")"
run 1 scan -p "$W/p.yaml" --quiet "$W/text.jpg" "$hi"
run 0 scan -p "$W/p.yaml" --quiet --unscanned-ok "$W/text.jpg" "$lo"
# Limits are engine settings: a photo over --max-file-bytes is too large.
run 2 scan -p "$W/p.yaml" --json --max-file-bytes 100 "$hi"
grep -q '"reason":"too-large"' "$W/out" || fail "--max-file-bytes: $(cat "$W/out")"
run 2 scan -p "$W/p.yaml" --max-side 0 "$hi"

# ---------------------------------------------------------------------------
# Order: 20 images (files created in reverse order) in 7 batches of up to 3 come out
# in name order, each with the verdict of its own image.
mkdir "$W/order"
i=19
set -- "$photos"/*
while [ $i -ge 0 ]; do
    n=$(( i % 10 + 1 ))
    eval "src=\${$n}"
    cp "$src" "$W/order/img_$(printf %02d $i).${src##*.}"
    i=$((i - 1))
done
run 1 scan -p "$W/p.yaml" --json --quiet --batch 3 "$W/order" "$W/text.jpg" "$lo"
"$PY" - "$W/out" "$W/all.jsonl" "$W/order" <<'EOF' || fail "results are out of order"
import json, os, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
single = {os.path.basename(r["name"]): r for r in map(json.loads, open(sys.argv[2]))}
photos = sorted(k for k in single if not k.startswith("no-such"))
names = [r["name"] for r in rs]
want = [os.path.join(sys.argv[3], f) for f in sorted(os.listdir(sys.argv[3]))]
assert names[:20] == want and len(rs) == 22, names
assert rs[20]["state"] == "unscanned" and rs[21]["state"] == "clean"
for i, r in enumerate(rs[:20]):
    ref = single[photos[i % 10]]
    assert r["state"] == ref["state"], (r["name"], r["state"], ref["name"])
    assert abs(r["categories"][0]["score"] - ref["categories"][0]["score"]) < 1e-3, r["name"]
EOF

# ---------------------------------------------------------------------------
# Directories: files only without -r, the whole tree with it, in name order;
# FIFOs skipped; a symlink loop followed with --follow-symlinks ends.
mkdir -p "$W/tree/sub/deeper"
cp "$lo" "$W/tree/b.png"
cp "$lo" "$W/tree/sub/a.png"
cp "$lo" "$W/tree/sub/deeper/c.png"
cp "$lo" "$W/tree/sub/z.png"
mkfifo "$W/tree/fifo.png" 2>/dev/null || true
ln -s .. "$W/tree/sub/deeper/up"
ln -s b.png "$W/tree/link.png"
run 0 scan -p "$W/p.yaml" --quiet "$W/tree"
printf '%s\n' "$W/tree/b.png: clean" "$W/tree/link.png: clean" >"$W/want"
cmp -s "$W/out" "$W/want" || fail "a directory without -r: $(cat "$W/out")"
run 0 scan -p "$W/p.yaml" "$W/tree"
grep -q "1 subdirectory was not scanned (use -r" "$W/err" || fail "no note about -r: $(cat "$W/err")"
printf '%s\n' "$W/tree/b.png: clean" "$W/tree/link.png: clean" "$W/tree/sub/a.png: clean" \
    "$W/tree/sub/deeper/c.png: clean" "$W/tree/sub/z.png: clean" >"$W/want"
run 0 scan -p "$W/p.yaml" --quiet -r "$W/tree/"
sed 's|/tree//|/tree/|' "$W/out" >"$W/out2"
cmp -s "$W/out2" "$W/want" || fail "-r: $(cat "$W/out")"
run 0 scan -p "$W/p.yaml" --quiet -r --follow-symlinks "$W/tree"
cmp -s "$W/out" "$W/want" || fail "-r --follow-symlinks must not loop: $(cat "$W/out")"
run 0 scan -p "$W/p.yaml" -r "$W/tree"
grep -q "^Scanned directories: 3$" "$W/out" || fail "summary directory count"

# ---------------------------------------------------------------------------
# stdin: the image itself, named "stdin", with the same verdict as the file.
run 1 scan -p "$W/p.yaml" --json --quiet - <"$hi"
"$PY" -c 'import json, sys
r = json.loads(open(sys.argv[1]).read())
assert r["name"] == "stdin" and r["state"] == "flagged", r' "$W/out" || fail "stdin"
run 2 scan -p "$W/p.yaml" --json --quiet --max-file-bytes 1000 - <"$hi"
grep -q '"reason":"too-large"' "$W/out" || fail "stdin over max-file-bytes: $(cat "$W/out")"
# stdin is read into a buffer capped one byte past the limit, never the whole pipe.
grep -q '"reason_text":"1001 bytes exceeds the limit of 1000"' "$W/out" ||
    fail "stdin must be read to max-file-bytes + 1: $(cat "$W/out")"

# ---------------------------------------------------------------------------
# --hook: one input, the action alone on stdout, the action's exit code.
for pair in tag:10 flag:11 quarantine:12 reject:13; do
    action=${pair%:*}
    write_policy "$W/hook.yaml" "$threshold" "$action"
    run "${pair#*:}" scan -p "$W/hook.yaml" --hook "$hi"
    [ "$(cat "$W/out")" = "$action" ] || fail "--hook printed '$(cat "$W/out")', not $action"
    [ ! -s "$W/err" ] || fail "--hook wrote to stderr: $(cat "$W/err")"
done
run 0 scan -p "$W/hook.yaml" --hook "$lo"
[ "$(cat "$W/out")" = allow ] || fail "--hook on a clean photo: $(cat "$W/out")"
run 3 scan -p "$W/hook.yaml" --hook "$W/empty.png"
[ "$(cat "$W/out")" = unscanned ] || fail "--hook on an empty file: $(cat "$W/out")"
grep -q "empty.png: unscanned" "$W/err" || fail "--hook must give the reason on stderr"
run 13 scan -p "$W/hook.yaml" --hook - <"$hi"
run 13 scan -p "$W/hook.yaml" --hook --json "$hi"
"$PY" -c 'import json, sys
r = json.loads(open(sys.argv[1]).read())
assert r["action"] == "reject"' "$W/out" || fail "--hook --json"
run 2 scan -p "$W/hook.yaml" --hook "$W/tree"
[ ! -s "$W/out" ] || fail "--hook on a directory must print nothing on stdout"
run 2 scan -p "$W/hook.yaml" --hook "$lo" "$hi"
run 2 scan -p "$W/no-policy.yaml" --hook "$lo"
[ ! -s "$W/out" ] || fail "--hook must print nothing on stdout when it fails"

# ---------------------------------------------------------------------------
# Policy problems: every one with file:line:column; scan refuses, check exits 1.
cat >"$W/broken.yaml" <<'EOF'
version: 1
name: broken
colour: red
categories:
  - id: cat
    prompts: [a cat]
    contrast: [a dog]
    threshold: 1.5
    action: flag
EOF
run 1 "$CLIPMOD" policy check -m "$model" "$W/broken.yaml"
grep -q "^$W/broken.yaml:3:1: " "$W/out" || fail "the unknown key's position: $(cat "$W/out")"
grep -q "^$W/broken.yaml:8:16: " "$W/out" || fail "the threshold's position: $(cat "$W/out")"
grep -q "^$W/broken.yaml: 2 problems$" "$W/out" || fail "the problem count: $(cat "$W/out")"
run 2 scan -p "$W/broken.yaml" "$lo"
grep -q "^$W/broken.yaml:3:1: " "$W/err" || fail "scan must print the policy's problems"
[ ! -s "$W/out" ] || fail "nothing may be scanned with a broken policy"
run 0 "$CLIPMOD" policy check -m "$model" "$W/p.yaml"
grep -q "^$W/p.yaml: OK$" "$W/out" || fail "a valid policy: $(cat "$W/out")"
thr=$("$PY" -c "import sys; print('%g' % float(sys.argv[1]))" "$threshold")
grep -q "^    cat  *$thr  *flag  *2  *1  *prompts$" "$W/out" || fail "the summary: $(cat "$W/out")"
run 1 "$CLIPMOD" policy check -m "$model" --json "$W/p.yaml" "$W/broken.yaml" "$W/no-such.yaml"
"$PY" -c 'import json, sys
a, b, c = (json.loads(l) for l in open(sys.argv[1]))
assert a["valid"] and a["token_lengths_checked"] and not a["problems"]
assert a["policy"]["categories"][0]["id"] == "cat" and a["policy"]["name"] == "scan test"
assert not b["valid"] and len(b["problems"]) == 2 and b["policy"] is None
assert not c["valid"] and c["problems"]' "$W/out" || fail "policy check --json: $(cat "$W/out")"
run 2 "$CLIPMOD" policy check -m "$W/no-model" "$W/p.yaml"
echo "PASS"
