#!/bin/sh
# e2e_scan.sh - end to end: `clipmod scan` of a folder of 24 photos of 12 MP against a
# Python pipeline doing the same work with PIL (draft mode) and ONNX Runtime.
#
# Run by hand (`make bench-e2e`); never part of the test suite. It:
#   1. makes 24 JPEGs of 4000x3000 (q90) from the skimage sample photos
#      (tools/sample-photos.sh), upscaled with libvips (`vips resize`; Debian's
#      libvips-tools), each photo as is, mirrored and flipped so no two files are alike;
#      they are cached in the work directory;
#   2. compiles the policy (bench/e2e_policy.yaml) into the work directory's prompt
#      cache once, untimed: the Python side does not run the text tower either (these
#      scans also write the weights cache file of each precision);
#   3. runs, interleaved, ROUNDS times: `clipmod scan --batch 8 --threads T` of the
#      folder, twice per precision: as every run after the first (the image tower mapped
#      from the weights cache file that step 2 wrote) and as a first run (a cache
#      directory holding the prompt cache only, so the model is read, converted and
#      packed, and the weights cache file written), and bench/e2e_python.py (a multiprocessing.Pool of T workers decoding
#      with PIL's draft mode + CLIP preprocessing, batches of 8 handed through a pipe to
#      bench/e2e_ort_worker.js, onnxruntime-node on T threads), each under
#      bench/e2e_measure.py (wall time, peak RSS of the whole process tree);
#   4. prints medians: whole-process time (model loading included), steady-state
#      images/s once loaded (clipmod: the summary's scan-only Rate; Python: from the
#      session being ready to the last verdict), peak RSS, and the ratios.
#
# Usage: bench/e2e_scan.sh [options]
#   --builddir DIR   where clipmod was built (default: $top_builddir, else the source tree)
#   --model DIR      full CLIP checkpoint (default /tmp/clipmod-bench/b32)
#   --onnx FILE      the image tower as ONNX (default /tmp/clipmod-bench/vision.onnx, made
#                    by bench/torch_vision.py --export-onnx from the same checkpoint)
#   --work DIR       work directory (default ${TMPDIR:-/tmp}/clipmod-e2e-bench)
#   --rounds K       interleaved rounds (default 3)
#   --threads N      threads for both sides (default 2)
#   --precisions L   clipmod's --precision for its runs, comma-separated (default
#                    fp32,int8; int8 is skipped when the CPU lacks VNNI); the Python side
#                    always runs the fp32 ONNX model, the issue's baseline
#   --ort-dir DIR    onnxruntime-node (default ${XDG_CACHE_HOME:-$HOME/.cache}/clipmod-bench/ort)
#   --no-python      time clipmod only
# Needs OpenAI's merges ($CLIPMOD_BPE_GZ, as the tests), node, /usr/bin/python3 with PIL
# and numpy, and vips. Raw JSON lines go to WORK/e2e.jsonl.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
builddir=${top_builddir:-$top}
model=/tmp/clipmod-bench/b32
onnx=/tmp/clipmod-bench/vision.onnx
work=${TMPDIR:-/tmp}/clipmod-e2e-bench
rounds=3 threads=2 use_py=1 precisions=fp32,int8
ort_dir=${XDG_CACHE_HOME:-$HOME/.cache}/clipmod-bench/ort
py=/usr/bin/python3
: "${CLIPMOD_BPE_GZ:=$top/../shared/data/clip/bpe_simple_vocab_16e6.txt.gz}"

die() { echo "e2e_scan: $*" >&2; exit 1; }
note() { echo "e2e_scan: $*" >&2; }

while [ $# -gt 0 ]; do
    case $1 in
    --builddir) builddir=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --onnx) onnx=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --precisions) precisions=$2; shift 2 ;;
    --ort-dir) ort_dir=$2; shift 2 ;;
    --no-python) use_py=0; shift ;;
    -h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
    esac
done
clipmod=$builddir/src/cli/clipmod
[ -x "$clipmod" ] || die "build clipmod first ($clipmod)"
[ -r "$CLIPMOD_BPE_GZ" ] || die "the merges file $CLIPMOD_BPE_GZ is needed (CLIPMOD_BPE_GZ=...)"
[ -s "$model/model.safetensors" ] || die "no checkpoint in $model (bench/image_tower.sh writes one)"
command -v vips >/dev/null || die "vips is not installed (apt-get install libvips-tools)"
if [ $use_py = 1 ]; then
    [ -s "$onnx" ] || die "no $onnx (bench/torch_vision.py --export-onnx makes it)"
    command -v node >/dev/null || die "node is not installed"
fi
mkdir -p "$work"
work=$(cd "$work" && pwd)

# --- 1. 24 photos of 12 MP ---------------------------------------------------------
big=$work/photos-12mp
if [ "$(ls "$big" 2>/dev/null | wc -l)" -ne 24 ]; then
    note "making 24 JPEGs of 4000x3000 in $big"
    rm -rf "$big" "$work/src"
    mkdir -p "$big"
    sh "$top/tools/sample-photos.sh" "$work/src" >&2 || die "no sample photos"
    i=0
    for variant in none hor ver; do
        for f in "$work"/src/*; do
            [ $i -lt 24 ] || break
            i=$((i + 1))
            w=$(vipsheader -f width "$f" 2>/dev/null) h=$(vipsheader -f height "$f" 2>/dev/null)
            sx=$(awk "BEGIN { print 4000 / $w }") sy=$(awk "BEGIN { print 3000 / $h }")
            tmp=$work/tmp.v
            # Alpha is flattened onto white, as both pipelines would: JPEG has none.
            vips flatten "$f" "$work/flat.v" --background 255 2>/dev/null || vips copy "$f" "$work/flat.v"
            vips resize "$work/flat.v" "$tmp" "$sx" --vscale "$sy" 2>/dev/null
            name=$(printf '%s/%02d-%s-%s.jpg' "$big" $i "$(basename "${f%.*}")" $variant)
            if [ $variant = none ]; then
                vips copy "$tmp" "$name[Q=90]"
            else
                vips flip "$tmp" "$name[Q=90]" $([ $variant = hor ] && echo horizontal || echo vertical)
            fi
        done
    done
    rm -f "$work/tmp.v" "$work/flat.v"
    [ "$(ls "$big" | wc -l)" -eq 24 ] || die "expected 24 photos in $big"
fi

# --- 2. prompt cache ---------------------------------------------------------------
cache=$work/cache
scan() {
    "$clipmod" scan -m "$model" --merges "$CLIPMOD_BPE_GZ" -p "$here/e2e_policy.yaml" \
        --cache-dir "$cache" --batch 8 --threads "$threads" "$@"
}
scan -q "$big/01-"* >/dev/null || [ $? -eq 1 ] || die "clipmod scan failed"
# The precisions this CPU runs: scan refuses the others (exit 2), which are skipped.
runnable=
for prec in $(echo "$precisions" | tr , ' '); do
    if scan --precision "$prec" -q "$big/01-"* >/dev/null 2>&1 || [ $? -eq 1 ]; then
        runnable="$runnable $prec"
    else
        note "clipmod --precision $prec: refused on this CPU, skipped"
    fi
done

# --- 3. interleaved rounds ---------------------------------------------------------
out=$work/e2e.jsonl
: >"$out"
r=1
while [ $r -le "$rounds" ]; do
    note "round $r of $rounds (load: $(cut -d' ' -f1-3 /proc/loadavg))"
    for run in $(for p in $runnable; do echo "$p:warm $p:first"; done); do
        prec=${run%:*}
        label="clipmod $prec"
        dir=$cache
        if [ "${run#*:}" = first ]; then
            # A first run: the prompt cache, but no weights cache file yet (it is written).
            label="clipmod $prec, first load"
            dir=$work/cache-first
            rm -rf "$dir"
            mkdir -m 700 "$dir"
            cp "$cache"/*.emb "$dir"/
        fi
        "$py" "$here/e2e_measure.py" "$label" "$work/m.json" -- "$clipmod" scan -m "$model" \
            --merges "$CLIPMOD_BPE_GZ" -p "$here/e2e_policy.yaml" --cache-dir "$dir" --batch 8 \
            --threads "$threads" --precision "$prec" "$big" || [ $? -eq 1 ] ||
            die "clipmod scan failed (see $work/m.json.out)"
        rate=$(sed -n 's/^Rate: \([0-9.]*\).*/\1/p' "$work/m.json.out")
        n=$(grep -c ': \(clean\|FLAGGED\)' "$work/m.json.out" || true)
        [ "$n" -eq 24 ] || die "clipmod scanned $n of 24 photos (see $work/m.json.out)"
        "$py" -c 'import json, sys; m = json.load(open(sys.argv[1])); m["images_per_s"] = float(sys.argv[2]); m["images"] = 24; print(json.dumps(m))' \
            "$work/m.json" "$rate" >>"$out"
    done
    if [ $use_py = 1 ]; then
        "$py" "$here/e2e_measure.py" python "$work/m.json" -- "$py" "$here/e2e_python.py" \
            --onnx "$onnx" --worker "$here/e2e_ort_worker.js" --ort-dir "$ort_dir" --batch 8 \
            --procs "$threads" --threads "$threads" "$big"/*.jpg || die "e2e_python.py failed"
        "$py" -c 'import json, sys; m = json.load(open(sys.argv[1])); p = json.loads(open(sys.argv[1] + ".out").read()); m.update({k: p[k] for k in ("images", "images_per_s", "load_s")}); print(json.dumps(m))' \
            "$work/m.json" >>"$out"
    fi
    r=$((r + 1))
done

# --- 4. table ----------------------------------------------------------------------
"$py" - "$out" "$threads" <<'PYEOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
labels = list(dict.fromkeys(r["label"] for r in rows))
print(f"End to end: 24 JPEGs 4000x3000, ViT-B/32, batch 8, {sys.argv[2]} threads; {cpu}; "
      f"load {open('/proc/loadavg').read().split()[0]}; medians of {sum(r['label'] == 'python' for r in rows) or '?'} rounds; "
      "clipmod at each --precision, Python (PIL draft + ORT) on the fp32 ONNX model")
print("| engine | whole process s | images/s whole | images/s steady | peak RSS MB (tree) | peak RSS MB (largest process) |")
print("|---|---|---|---|---|---|")
med = {}
for eng in labels:
    rs = [r for r in rows if r["label"] == eng]
    m = {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "images_per_s", "peak_tree_rss_mb", "peak_single_rss_mb")}
    med[eng] = m
    print(f"| {eng} | {m['wall_s']:.2f} | {24 / m['wall_s']:.2f} | {m['images_per_s']:.2f} | {m['peak_tree_rss_mb']:.0f} | {m['peak_single_rss_mb']:.0f} |")
p = med.get("python")
for eng, c in med.items():
    if eng != "python" and p:
        print(f"{eng} / python images/s: whole process {p['wall_s'] / c['wall_s']:.2f}x, steady state "
              f"{c['images_per_s'] / p['images_per_s']:.2f}x; peak RSS {c['peak_tree_rss_mb'] / p['peak_tree_rss_mb']:.2f}x of Python's")
PYEOF
