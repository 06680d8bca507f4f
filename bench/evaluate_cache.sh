#!/bin/sh
# evaluate_cache.sh - how long `clipmod policy evaluate` takes to re-evaluate an
# edited policy over 2,000 images whose embeddings are in the image cache.
#
# Run by hand; never part of make check. It:
#   1. builds a labelled set with tools/labelled-set.py (Noto emoji, the demo model's
#      data) and grows it to COUNT distinct files by small crops and shifts of each
#      image (PIL), in the same label folders;
#   2. runs evaluate once to fill the cache (timed: the cold cost), checks the second
#      run took every embedding from the cache;
#   3. edits the policy (every threshold moved by 0.01, a copy in the work directory)
#      and times RUNS evaluations of it over the cached set (wall clock, median and
#      best), with --no-attribution and with prompt attribution (the default);
#   4. prints the CPU model and the load, and fails when the median without
#      attribution is 2 s or more (attribution's cost does not depend on the cache).
#
# Usage: bench/evaluate_cache.sh [BUILD_DIR] (default: the source tree's build, or
#        $CLIPMOD); environment: WORK (default ${TMPDIR:-/tmp}/clipmod-bench-evalcache),
#        COUNT (2000), RUNS (5).
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$SRC}
CLIPMOD=${CLIPMOD:-$BUILD/src/cli/clipmod}
WORK=${WORK:-${TMPDIR:-/tmp}/clipmod-bench-evalcache}
COUNT=${COUNT:-2000}
RUNS=${RUNS:-3}
PY=/usr/bin/python3
M="$SRC/models/demo"
[ -x "$CLIPMOD" ] || { echo "no clipmod at $CLIPMOD (give the build directory)" >&2; exit 2; }
mkdir -p "$WORK"
XDG_CACHE_HOME="$WORK/xdg"
export XDG_CACHE_HOME
L="$WORK/set$COUNT"
if [ ! -f "$L/.done" ]; then
    rm -rf "$L" "$WORK/base"
    "$PY" "$SRC/tools/labelled-set.py" --out "$WORK/base" --noto --clean 60 >/dev/null
    "$PY" - "$WORK/base" "$L" "$COUNT" <<'PYEOF'
import os, sys
from PIL import Image
base, out, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
srcs = sorted((d, f) for d in os.listdir(base) if os.path.isdir(os.path.join(base, d))
              for f in os.listdir(os.path.join(base, d)) if f.endswith(".png"))
k = 0
while k < count:
    for d, f in srcs:
        if k >= count:
            break
        im = Image.open(os.path.join(base, d, f)).convert("RGB")
        w, h = im.size
        i = k // len(srcs)  # variant number: a different crop for each pass
        dx, dy = i % 7, (i // 7) % 7
        crop = im.crop((dx, dy, w - 6 + dx, h - 6 + dy))
        os.makedirs(os.path.join(out, d), exist_ok=True)
        crop.save(os.path.join(out, d, "v%04d-%s" % (i, f)), "PNG")
        k += 1
PYEOF
    touch "$L/.done"
fi
N=$(find "$L" -type f -name '*.png' | wc -l)
echo "images: $N distinct files in $L"
"$PY" - "$SRC/policies/demo.yaml" "$WORK/edited.yaml" <<'PYEOF'
import re, sys
t = open(sys.argv[1]).read()
t = re.sub(r"(threshold:\s*)([0-9.]+)", lambda m: m.group(1) + "%.2f" % (float(m.group(2)) + 0.01), t)
open(sys.argv[2], "w").write(t)
PYEOF
cmp -s "$SRC/policies/demo.yaml" "$WORK/edited.yaml" && { echo "the policy edit did nothing" >&2; exit 2; }
EV="$CLIPMOD policy evaluate --no-progress --json --model $M"
rm -rf "$XDG_CACHE_HOME"
t0=$(date +%s.%N)
$EV --policy "$SRC/policies/demo.yaml" "$L" >"$WORK/cold.json" 2>"$WORK/cold.err"
t1=$(date +%s.%N)
echo "cold (embeds everything, fills the cache): $(echo "$t1 - $t0" | bc) s"
# timed LABEL ARGS...: RUNS evaluations of the edited policy; sets $median.
timed() {
    label=$1
    shift
    times=""
    for r in $(seq "$RUNS"); do
        t0=$(date +%s.%N)
        $EV --policy "$WORK/edited.yaml" "$@" "$L" >"$WORK/warm.json" 2>"$WORK/warm.err"
        t1=$(date +%s.%N)
        grep -q "^clipmod: $N of $N image embeddings from the cache$" "$WORK/warm.err" ||
            { echo "not all from the cache: $(cat "$WORK/warm.err")" >&2; exit 1; }
        times="$times $(echo "$t1 - $t0" | bc)"
    done
    sorted=$(printf '%s\n' $times | sort -n)
    median=$(printf '%s\n' $sorted | sed -n "$(((RUNS + 1) / 2))p")
    echo "$label, all $N from the cache: runs$times s; median $median s, best $(printf '%s\n' $sorted | head -n1) s"
    "$PY" -c "import json,sys; print('  phases (s):', json.load(open(sys.argv[1]))['seconds'])" "$WORK/warm.json"
}
timed "edited policy, --no-attribution" --no-attribution
fast=$median
timed "edited policy, with prompt attribution (the default)"
echo "cache file: $(stat -c %s "$XDG_CACHE_HOME"/clipmod/*.img) bytes"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
echo "load: $(uptime)"
# The cache's part is the "embed" phase; prompt attribution (eval_attrib.c) scores
# every image once per candidate prompt and does not depend on the cache, so the 2 s
# bound is checked on the run without it, and the other is reported.
[ "$(echo "$fast < 2" | bc)" = 1 ] || { echo "FAIL: median $fast s (--no-attribution) is not under 2 s" >&2; exit 1; }
echo "PASS: under 2 s without attribution ($fast s); with attribution $median s"
