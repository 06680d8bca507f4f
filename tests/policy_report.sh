#!/bin/sh
# policy_report.sh - `clipmod policy evaluate --report DIR` rendered in a real browser.
#
# The demo model and policy on a small labelled set from tools/labelled-set.py (as
# policy_evaluate.sh builds it), plus two images with hostile names (HTML markup,
# quotes, &): one a sure false positive for weapons, one not an image. Checks:
#   1. DIR/index.html is written, its size bounded; it references nothing outside
#      itself (no http:, https:, scripts, stylesheets, src= other than data:) and
#      hostile names appear only escaped;
#   2. the ROC and precision-recall curves drawn for every category are the ones the
#      numpy-free reference below computes from the scores of --json (same run), and
#      the current threshold's marker sits where --json's metrics say;
#   3. the thumbnails are 96 px JPEGs; a gallery past its cap shows 24 and says so;
#   4. headless Chromium (Debian's chromium, tools/install-deps.sh) loads the page
#      with no console message at all (the page has no script: any message is an
#      error or a blocked fetch; a control page proves such messages are caught),
#      the DOM has 3 SVG plots per category, and a 1280x2000 screenshot is saved as
#      $CLIPMOD_WORK/policy_report/report.png (look at it).
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

PY=/usr/bin/python3
M="$top_srcdir/models/demo"
P="$top_srcdir/policies/demo.yaml"
W="$CLIPMOD_WORK/policy_report"
rm -rf "$W"
mkdir -p "$W"
XDG_CACHE_HOME="$W/cache"
export XDG_CACHE_HOME
unset CLIPMOD_MODEL CLIPMOD_POLICY

[ -f "$M/model.safetensors" ] || fail "$M/model.safetensors is missing"
command -v chromium >/dev/null 2>&1 ||
    skip "chromium is not installed (apt-get install chromium; tools/install-deps.sh)"
"$PY" -c 'import numpy, PIL' 2>/dev/null || skip "$PY cannot import numpy and PIL"
[ -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] ||
    skip "fonts-noto-color-emoji is not installed (tools/install-deps.sh)"
[ -d /usr/share/unicode/cldr/common/annotations ] ||
    skip "unicode-cldr-core is not installed (tools/install-deps.sh)"

L="$W/set"
"$PY" "$top_srcdir/tools/labelled-set.py" --out "$L" --noto --clean 60 \
    >"$W/set.out" 2>&1 || fail "labelled-set.py: $(cat "$W/set.out")"
EV="$CLIPMOD policy evaluate -q --model $M --policy $P"

# Hostile names: a weapons image scoring over the threshold, copied as clean (a sure
# false positive, so it is in a gallery), and a file that is not an image.
run 0 $EV --json --no-attribution "$L"
tp=$("$PY" -c '
import json, sys
d = json.load(open(sys.argv[1]))
t = [c for c in d["categories"] if c["id"] == "weapons"][0]["threshold"]
print([r["path"] for r in d["results"] if "weapons" in r["labels"] and r["scores"]["weapons"] >= t][0])
' "$W/out") || fail "no weapons image over the threshold"
EVIL="<b id=evil>&\"'x"
cp "$tp" "$L/clean/$EVIL.png"
printf 'not an image\n' >"$L/clean/$EVIL-broken.png"

# 1. The page, and what it references.
run 0 $EV --json --target fpr=0.05 --target recall=0.8 --report "$W/report" "$L"
cp "$W/out" "$W/eval.json"
H="$W/report/index.html"
[ -s "$H" ] || fail "no $H"
size=$(wc -c <"$H")
[ "$size" -lt 3000000 ] || fail "the page is $size bytes"
echo "page: $size bytes"
grep -Eiq 'https?:|<script|<link|@import|url\(' "$H" && fail "the page references something: $(grep -Eio '.{40}(https?:|<script|<link|@import|url\().{40}' "$H" | head -3)"
bad=$(grep -Eio '(src|href|xlink:href|action|srcset)=[^ >]*' "$H" | grep -Eiv '^(src="data:image/jpeg;base64,|href="#c[0-9]+")' || true)
[ -z "$bad" ] || fail "references outside the page: $(echo "$bad" | head -3)"
grep -Fq '<b id=evil>' "$H" && fail "a file name is not escaped"
grep -Fq '&lt;b id=evil&gt;&amp;&quot;&#39;x.png' "$H" || fail "the false positive's name is not shown escaped"
grep -Fq '&lt;b id=evil&gt;&amp;&quot;&#39;x-broken.png: unsupported' "$H" ||
    fail "the unscanned image is not listed escaped"

# 2. Curves and markers against a reference computed from --json's scores, and
# 3. the thumbnails. Plot frame in SVG pixels (report_svg.c): x 46..290, y 190..22.
"$PY" - "$W/eval.json" "$H" <<'EOF' || fail "the plots do not match the scores"
import base64, io, json, re, sys
from PIL import Image
d = json.load(open(sys.argv[1]))
page = open(sys.argv[2]).read()
def px(x, y):
    return (46 + x * 244, 190 - y * 168)
def close(pts, ref, what):
    assert len(pts) == len(ref), (what, len(pts), len(ref))
    for (a, b), (x, y) in zip(pts, ref):
        X, Y = px(x, y)
        assert abs(a - X) <= 0.11 and abs(b - Y) <= 0.11, (what, (a, b), (X, Y))
sections = re.split(r'<h2 id="c\d+">', page)[1:]
assert len(sections) == len(d["categories"]), len(sections)
scanned = [r for r in d["results"] if r["state"] != "unscanned"]
for cat, sec in zip(d["categories"], sections):
    cid = cat["id"]
    s = sorted(((r["scores"][cid], cid in r["labels"]) for r in scanned), key=lambda x: -x[0])
    P = sum(1 for _, p in s if p)
    N = len(s) - P
    roc, pr, tp, fp = [(0.0, 0.0)], [], 0, 0
    for i, (score, p) in enumerate(s):
        tp, fp = tp + p, fp + (not p)
        if i + 1 < len(s) and s[i + 1][0] == score:
            continue
        roc.append((fp / N, tp / P))
        pr.append((tp / P, tp / (tp + fp)))
    svgs = re.findall(r"<svg.*?</svg>", sec)
    assert len(svgs) == 3, (cid, len(svgs))
    for svg, ref, what in ((svgs[0], roc, "ROC"), (svgs[1], pr, "PR")):
        m = re.search(r'<polyline class="cv" points="([^"]*)"', svg)
        pts = [tuple(map(float, p.split(","))) for p in m.group(1).split()]
        close(pts, ref, f"{cid} {what}")
    cur = cat["current"]
    m = re.search(r'<circle cx="([\d.]+)" cy="([\d.]+)" r="5" class="mc"', svgs[0])
    close([(float(m.group(1)), float(m.group(2)))], [(cur["fpr"], cur["recall"])], f"{cid} marker")
    n_sugg = sum(1 for x in cat["suggested"] if x["threshold"] is not None)
    assert svgs[0].count('class="ms"') == n_sugg, (cid, "suggested markers")
    # The histogram: a bar per non-empty bin and class, the threshold lines.
    assert svgs[2].count('class="tc"') == 1 and svgs[2].count('class="ts"') == n_sugg, cid
    # Galleries: as many false positives / negatives as --json counts (cap 24).
    fps = re.search(r"<h3>False positives at threshold [^(]*\((\d+)\)", sec)
    fns = re.search(r"<h3>False negatives at threshold [^(]*\((\d+)\)", sec)
    assert int(fps.group(1)) == cur["fp"] and int(fns.group(1)) == cur["fn"], cid
    assert sec.count("<figure>") == min(cur["fp"], 24) + min(cur["fn"], 24), cid
w = [c for c in d["categories"] if c["id"] == "weapons"][0]
assert w["current"]["fp"] >= 1
uris = re.findall(r'src="data:image/jpeg;base64,([A-Za-z0-9+/=]+)"', page)
assert uris, "no thumbnails"
for u in uris:
    im = Image.open(io.BytesIO(base64.b64decode(u)))
    assert im.format == "JPEG" and max(im.size) == 96, im.size
print(f"{len(sections)} categories: curves and markers match; {len(uris)} thumbnails")
EOF

# 3. A gallery over its cap: every negative is a false positive at 0.001.
run 0 $EV --no-attribution --set weapons.threshold=0.001 --report "$W/capped" "$L"
"$PY" - "$W/capped/index.html" <<'EOF' || fail "the capped gallery"
import re, sys
page = open(sys.argv[1]).read()
sec = re.split(r'<h2 id="c\d+">', page)[1]
n = int(re.search(r"<h3>False positives at threshold 0.001 \((\d+)\)", sec).group(1))
assert n > 24, n
assert f"Showing the 24 highest-scoring of {n} (at most 24 per gallery)" in sec
gal = sec.split("<h3>False positives")[1].split("<h3>")[0]
assert gal.count("<figure>") == 24, gal.count("<figure>")
EOF

# 4. The browser. Any console message of the page fails (it has no script); a control
# page with a script error and a blocked fetch shows that such messages are seen.
chrome() { # chrome OUT ARGS...: run a fresh headless chromium, stdout/stderr in OUT.*
    out=$1
    shift
    rm -rf "$W/profile"
    mkdir "$W/profile"
    set +e
    timeout -k 5 90 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$W/profile" --enable-logging=stderr --v=0 "$@" \
        >"$out.out" 2>"$out.err" </dev/null
    rc=$?
    set -e
    [ $rc -eq 0 ] || fail "chromium $*: status $rc: $(tail -5 "$out.err")"
}
sed 's|</body>|<img src="http://127.0.0.1:9/x.png"><script>window.nosuch()</script></body>|' \
    "$H" >"$W/control.html"
sed -i 's|script-src[^;"]*||; s|default-src '"'"'none'"'"'|default-src '"'"'none'"'"'; script-src '"'"'unsafe-inline'"'"'|' "$W/control.html"
chrome "$W/control" --dump-dom "file://$W/control.html"
grep -q 'CONSOLE.*Uncaught TypeError' "$W/control.err" ||
    fail "the control page's script error was not seen: $(grep CONSOLE "$W/control.err")"
grep -q 'CONSOLE.*127.0.0.1:9.*Content Security Policy' "$W/control.err" ||
    fail "the control page's blocked fetch was not seen: $(grep CONSOLE "$W/control.err")"

chrome "$W/dom" --dump-dom "file://$H"
grep -q CONSOLE "$W/dom.err" && fail "console messages: $(grep CONSOLE "$W/dom.err")"
ncat=$("$PY" -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["categories"]))' "$W/eval.json")
nsvg=$(grep -o '<svg' "$W/dom.out" | wc -l)
[ "$nsvg" -eq $((3 * ncat)) ] || fail "$nsvg SVG plots in the DOM for $ncat categories"
npoly=$(grep -Eo '<polyline class="cv" points="[0-9., ]+"' "$W/dom.out" | wc -l)
[ "$npoly" -eq $((2 * ncat)) ] || fail "$npoly curves in the DOM"
grep -q 'id="evil"' "$W/dom.out" && fail "a file name became markup in the DOM"

chrome "$W/shot" --screenshot="$W/report.png" --window-size=1280,2000 "file://$H"
grep -q CONSOLE "$W/shot.err" && fail "console messages: $(grep CONSOLE "$W/shot.err")"
"$PY" - "$W/report.png" <<'EOF' || fail "the screenshot"
import sys
from PIL import Image, ImageStat
im = Image.open(sys.argv[1]).convert("RGB")
assert im.size == (1280, 2000), im.size
# Not blank: the text, tables and plots give plenty of contrast.
assert max(ImageStat.Stat(im).stddev) > 20, ImageStat.Stat(im).stddev
EOF
echo "screenshot: $W/report.png"
echo "policy report: OK"
