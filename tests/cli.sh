#!/bin/sh
# cli.sh - the clipmod command as a user meets it: help, version, errors, exit codes,
# and `clipmod similarity` on real photos.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

"$CLIPMOD" --help | grep -q "similarity" || fail "--help does not list similarity"
"$CLIPMOD" --version | grep -q "^clipmod [0-9]" || fail "--version"
"$CLIPMOD" embed --help | grep -q -- "--model DIR" || fail "embed --help"
"$CLIPMOD" similarity --help | grep -q "softmax" || fail "similarity --help"

set +e
"$CLIPMOD" nonsense >/dev/null 2>&1; [ $? -eq 2 ] || fail "unknown command must exit 2"
"$CLIPMOD" embed >/dev/null 2>&1; [ $? -eq 2 ] || fail "embed without --model must exit 2"
"$CLIPMOD" embed --model /nonexistent 2>"$CLIPMOD_WORK/cli_err"; rc=$?
set -e
[ $rc -eq 2 ] || fail "missing model dir must exit 2"
grep -q "/nonexistent" "$CLIPMOD_WORK/cli_err" || fail "error must name the directory"

need_reference
photos=$(photos_dir) || fail "no sample photos"
have_bpe || skip "$CLIPMOD_BPE_GZ is absent: cannot tokenize the similarity texts"
dir=$(checkpoint tiny-cli --shape tiny --layout hf --dtype f32 --act quick_gelu --seed 5 \
      --merges "$CLIPMOD_BPE_GZ") || fail "reference checkpoint"

# A bad image among good ones: a clear error naming it, exit 2.
printf 'not an image' > "$CLIPMOD_WORK/bogus.jpg"
set +e
"$CLIPMOD" similarity -m "$dir" -i "$photos/chelsea.png" -i "$CLIPMOD_WORK/bogus.jpg" -t cat \
    2>"$CLIPMOD_WORK/cli_err" >/dev/null
rc=$?
set -e
[ $rc -eq 2 ] || fail "an undecodable image must exit 2 (got $rc)"
grep -q "bogus.jpg" "$CLIPMOD_WORK/cli_err" || fail "the error must name the image"

# Untrusted loaders are blocked: an SVG is refused as a format, not decoded.
printf '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><rect width="64" height="64"/></svg>' \
    > "$CLIPMOD_WORK/shape.svg"
set +e
"$CLIPMOD" embed -m "$dir" "$CLIPMOD_WORK/shape.svg" 2>"$CLIPMOD_WORK/cli_err" >/dev/null
rc=$?
set -e
[ $rc -eq 2 ] && grep -q "shape.svg.*blocked" "$CLIPMOD_WORK/cli_err" ||
    fail "an SVG must be refused as blocked (exit $rc: $(cat "$CLIPMOD_WORK/cli_err"))"

out=$("$CLIPMOD" similarity -m "$dir" -i "$photos/chelsea.png" -i "$photos/astronaut.png" \
      -t "a photo of a cat" -t "a photo of an astronaut" -t "a cup of coffee")
echo "$out"
# Two images x three texts; each image's softmax column sums to ~100%.
[ "$(printf '%s\n' "$out" | grep -c '%')" -eq 6 ] || fail "expected 6 rows"
printf '%s\n' "$out" | awk '/%/ { gsub("%", "", $2); s[n++ < 3 ? 0 : 1] += $2 }
    END { for (i = 0; i < 2; i++) if (s[i] < 99.9 || s[i] > 100.1) exit 1 }' ||
    fail "softmax rows must sum to 100%"

# The demo model says what it is, on stderr and in the JSON.
demo="$CLIPMOD_WORK/demo-flagged"
rm -rf "$demo"
cp -r "$dir" "$demo"
"$REF_PYTHON" -c 'import json, sys
p = sys.argv[1] + "/config.json"
c = json.load(open(p)); c["clipmod_demo"] = True; json.dump(c, open(p, "w"))' "$demo"
"$CLIPMOD" embed -m "$demo" -t "a cat" 2>"$CLIPMOD_WORK/demo_err" | grep -q '"demo_model": true' ||
    fail "embed JSON must say demo_model: true"
grep -q "demo model" "$CLIPMOD_WORK/demo_err" || fail "the demo model must be announced on stderr"
"$CLIPMOD" embed -m "$dir" -t "a cat" 2>"$CLIPMOD_WORK/demo_err" | grep -q '"demo_model": false' ||
    fail "a real model must say demo_model: false"
! grep -q "demo model" "$CLIPMOD_WORK/demo_err" || fail "a real model is not the demo model"
