#!/bin/sh
# scan_plugins.sh - `clipmod scan --plugin PATH[:CONFIG]`: the operator plugins the
# daemons load, loaded by the CLI through the same builder (src/common/engine_cfg).
#
# With the demo model and policy, tests/data/demo-scenes/bomb.png is flagged (violence, quarantine)
# and tests/data/demo-scenes/sandwich.png is clean. The shipped plugins, built as modules in
# plugins/.libs, are loaded as a user would load them:
#   - allowlist (match=bomb.png) makes the flagged bomb clean, exit 0, with its note;
#   - audit-log (path=FILE) appends one JSON line per result, and, loaded after the
#     allowlist, logs the allowed verdict (loaded before it, the engine's own):
#     --plugin is repeatable and order matters;
#   - a missing plugin, a plugin refusing its configuration and an empty PATH are
#     clear errors naming the plugin, exit 2, with nothing scanned.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

PY=/usr/bin/python3
W="$CLIPMOD_WORK/scan_plugins"
rm -rf "$W"
mkdir -p "$W"
XDG_CACHE_HOME="$W/cache"
export XDG_CACHE_HOME
unset CLIPMOD_MODEL CLIPMOD_POLICY

M="$top_srcdir/models/demo"
P="$top_srcdir/policies/demo.yaml"
S="$top_srcdir/tests/data/demo-scenes"
LIBS="$top_builddir/plugins/.libs"
[ -f "$M/model.safetensors" ] || fail "$M/model.safetensors is missing"
for p in allowlist audit-log; do
    [ -f "$LIBS/$p.so" ] || fail "$LIBS/$p.so was not built"
done

scan() { "$CLIPMOD" scan -m "$M" -p "$P" "$@"; }

# Help and manual name the option (no model needed).
"$CLIPMOD" scan --help >"$W/help"
grep -q -- "--plugin PATH\[:CONFIG\]" "$W/help" || fail "scan --help does not list --plugin"
grep -qF '.BI \-\-plugin " PATH' "$top_srcdir/man/clipmod.1" ||
    fail "clipmod(1) does not document --plugin"

# Without plugins: the bomb is flagged, the sandwich clean (the facts the rest relies on).
run 1 scan --quiet "$S/bomb.png" "$S/sandwich.png"
[ "$(cat "$W/out")" = "$S/bomb.png: FLAGGED violence (score 0.86 >= 0.62) -> quarantine
$S/sandwich.png: clean" ] || fail "without plugins: $(cat "$W/out")"

# allowlist: the allow-listed image is clean, exit 0, and the JSON says who allowed it.
run 0 scan --quiet --plugin "$LIBS/allowlist.so:match=bomb.png" "$S/bomb.png" "$S/sandwich.png"
[ "$(cat "$W/out")" = "$S/bomb.png: clean
$S/sandwich.png: clean" ] || fail "allowlist: $(cat "$W/out")"
run 0 scan --quiet --json --plugin "$LIBS/allowlist.so:match=bomb.png" "$S/bomb.png"
"$PY" - "$W/out" <<'EOF' || fail "allowlist: the JSON result: $(cat "$W/out")"
import json, sys
r = json.loads(open(sys.argv[1]).read())
assert r["state"] == "clean" and r["action"] == "allow", r
notes = [n for n in r["notes"] if n["by"] == "allowlist"]
assert len(notes) == 1 and "quarantine -> allow" in notes[0]["text"], r["notes"]
assert '"bomb.png"' in notes[0]["text"], notes
EOF
# A pattern that does not match changes nothing.
run 1 scan --quiet --plugin "$LIBS/allowlist.so:match=*.ico" "$S/bomb.png"

# audit-log after allowlist: one line per result, with the final (allowed) verdict.
log="$W/audit.jsonl"
run 0 scan --quiet --plugin "$LIBS/allowlist.so:match=bomb.png" \
    --plugin "$LIBS/audit-log.so:path=$log" "$S/bomb.png" "$S/sandwich.png"
# audit-log first: it logs the engine's verdict, before the allowlist changes it.
run 0 scan --quiet --plugin "$LIBS/audit-log.so:path=$log" \
    --plugin "$LIBS/allowlist.so:match=bomb.png" "$S/bomb.png"
"$PY" - "$log" "$S" <<'EOF' || fail "audit-log: $(cat "$log")"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]).read().splitlines()]
got = [(r["name"], r["state"], r["action"], r["category"]) for r in rows]
s = sys.argv[2]
want = [(s + "/bomb.png", "clean", "allow", None),
        (s + "/sandwich.png", "clean", "allow", None),
        (s + "/bomb.png", "flagged", "quarantine", "violence")]
assert sorted(got[:2]) == sorted(want[:2]) and got[2] == want[2], got
assert all(r["policy"] == "clipmod demo (emoji)" and r["time"].endswith("Z") for r in rows), rows
EOF

# Errors: exit 2, the plugin named, nothing scanned.
run 2 scan --plugin "$W/no-such-plugin.so" "$S/bomb.png"
grep -q "^clipmod: --plugin .*no-such-plugin.so" "$W/err" ||
    fail "a missing plugin must be named: $(cat "$W/err")"
[ ! -s "$W/out" ] || fail "nothing may be scanned when a plugin fails: $(cat "$W/out")"
# Said once, in the CLI's words: no log line repeating it, no logfmt on a terminal.
[ "$(grep -c "no-such-plugin" "$W/err")" -eq 1 ] || fail "the refusal said twice: $(cat "$W/err")"
! grep -q "level=" "$W/err" || fail "logfmt lines from clipmod: $(cat "$W/err")"
grep -qx "clipmod: warning: this is clipmod's demo model.*" "$W/err" ||
    fail "the demo warning, in clipmod's plain format: $(cat "$W/err")"
run 2 scan --plugin "$LIBS/allowlist.so" "$S/bomb.png"
grep -q "^clipmod: --plugin .*allowlist" "$W/err" ||
    fail "a plugin refusing its configuration must be named: $(cat "$W/err")"
[ ! -s "$W/out" ] || fail "nothing may be scanned when a plugin refuses: $(cat "$W/out")"
run 2 scan --plugin "$LIBS/audit-log.so:path=$W/no-dir/audit.jsonl" "$S/bomb.png"
grep -q "no-dir/audit.jsonl" "$W/err" || fail "audit-log's unwritable file: $(cat "$W/err")"
run 2 scan --plugin ":match=x" "$S/bomb.png"
grep -qxF "clipmod: --plugin: expected PATH[:CONFIG], got ':match=x'" "$W/err" ||
    fail "an empty plugin path: $(cat "$W/err")"
echo "ok   --plugin: allowlist, audit-log, order, and errors"
