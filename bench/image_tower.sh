#!/bin/sh
# image_tower.sh - benchmark clipmod's image tower against PyTorch and ONNX Runtime on
# the same random ViT-B/32 checkpoint, in the same run.
#
# Run by hand (`make bench`); never part of the test suite. It:
#   1. finds or builds bench_vision (bench/bench_vision.c, public API only);
#   2. writes a random ViT-B/32 checkpoint (tests/reference/make_checkpoint.py, seed 1,
#      HF names, f32, quick_gelu) and a few real photos into a work directory;
#   3. checks that torch and ORT compute the same embeddings as ours on the same pixels;
#   4. runs ours, torch (both fair thread configurations) and ORT interleaved, ROUNDS
#      times, so background noise hits every engine alike;
#   5. prints a table: ms/image, GFLOP/s (8.82 GFLOP per image), and time ratios.
#
# Usage: bench/image_tower.sh [options]
#   --bench-bin PATH  a built bench_vision (default: $BENCH_VISION, else build one in
#                     the work dir from src/lib/*.c with pkg-config)
#   --work DIR        work directory (default ${TMPDIR:-/tmp}/clipmod-bench); the 605 MB
#                     checkpoint and the 350 MB ONNX file are kept there for re-runs
#   --rounds K        interleaved rounds (default 5)
#   --runs N          timed runs per batch size and round (default 7)
#   --warmup N        untimed runs per batch size and round (default 2)
#   --batches LIST    batch sizes (default 1,8)
#   --threads N       threads for every engine (default 2)
#   --images "F..."   images to embed (default: tools/sample-photos.sh into the work dir)
#   --ort-dir DIR     where onnxruntime-node is installed (default
#                     ${XDG_CACHE_HOME:-$HOME/.cache}/clipmod-bench/ort); installed there
#                     with `ONNXRUNTIME_NODE_INSTALL=skip npm install` if missing
#   --no-torch        do not time PyTorch (torch still exports the ONNX model for ORT
#                     if WORK/vision.onnx is missing)
#   --no-ort          skip ONNX Runtime
#   --python PATH     Python with Debian's torch (default $REF_PYTHON or /usr/bin/python3)
#   --quiet-wait S    before each engine run, wait up to about S seconds for the CPUs to
#                     be less than 10% busy (default 0: do not wait); the load other
#                     processes put on the machine during each run is recorded either way
#   --noise-limit P   drop each engine run during which other processes used P% or more
#                     of the machine (default 10); if fewer than 2 runs of a configuration
#                     stay, all its runs are used, with a warning
# Raw JSON lines go to WORK/results.jsonl; the table goes to stdout.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
work=${TMPDIR:-/tmp}/clipmod-bench
bin=${BENCH_VISION:-}
rounds=5 runs=7 warmup=2 batches=1,8 threads=2 images=""
ort_dir=${XDG_CACHE_HOME:-$HOME/.cache}/clipmod-bench/ort
use_torch=1 use_ort=1 quiet_wait=0 noise_limit=10
py=${REF_PYTHON:-/usr/bin/python3}

die() { echo "image_tower: $*" >&2; exit 1; }
note() { echo "image_tower: $*" >&2; }

while [ $# -gt 0 ]; do
    case $1 in
    --bench-bin) bin=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --batches) batches=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --images) images=$2; shift 2 ;;
    --ort-dir) ort_dir=$2; shift 2 ;;
    --no-torch) use_torch=0; shift ;;
    --no-ort) use_ort=0; shift ;;
    --python) py=$2; shift 2 ;;
    --quiet-wait) quiet_wait=$2; shift 2 ;;
    --noise-limit) noise_limit=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
    esac
done
mkdir -p "$work"
work=$(cd "$work" && pwd)

# --- 1. bench_vision ---------------------------------------------------------------
if [ -z "$bin" ]; then
    bin=$work/build/bench_vision
    note "building $bin from $top/src/lib with pkg-config"
    mkdir -p "$work/build"
    # The library's pkg-config modules, as configure.ac checks them (test-only cmocka aside).
    pkgs=""
    for m in $(sed -n 's/^ *PKG_CHECK_MODULES(\[[A-Z0-9_]*\], *\[\([A-Za-z0-9_.+-]*\).*/\1/p' \
        "$top/configure.ac" 2>/dev/null); do
        [ "$m" = cmocka ] || ! pkg-config --exists "$m" || pkgs="$pkgs $m"
    done
    [ -n "$pkgs" ] || pkgs="vips openblas jansson libpcre2-8 libutf8proc zlib"
    # The flags of libclipmod_core in Makefile.am, with automake's default -g -O2.
    cflags="-std=c11 -D_GNU_SOURCE -g -O2 -fvect-cost-model=dynamic -fno-trapping-math"
    cflags="$cflags -I$top/include -I$top/src/lib $(pkg-config --cflags $pkgs)"
    objs=""
    for f in "$top"/src/lib/*.c "$here/bench_vision.c"; do
        o=$work/build/$(basename "$f" .c).o
        # shellcheck disable=SC2086
        gcc $cflags -c "$f" -o "$o" || die "compiling $f failed (give --bench-bin instead)"
        objs="$objs $o"
    done
    # shellcheck disable=SC2086
    gcc -o "$bin" $objs $(pkg-config --libs $pkgs) -ldl -lpthread -lm ||
        die "linking bench_vision failed (give --bench-bin instead)"
fi
[ -x "$bin" ] || die "$bin is not an executable bench_vision"

# --- 2. checkpoint and photos --------------------------------------------------------
model=$work/b32
if [ ! -s "$model/model.safetensors" ] || [ ! -s "$model/config.json" ] ||
    [ "$top/tests/reference/make_checkpoint.py" -nt "$model/model.safetensors" ]; then
    note "writing the random ViT-B/32 checkpoint to $model (605 MB)"
    "$py" "$top/tests/reference/make_checkpoint.py" "$model" --shape b32 --layout hf \
        --dtype f32 --act quick_gelu --seed 1 >&2 || die "make_checkpoint.py failed"
fi
if [ -z "$images" ]; then
    photos=$work/photos
    if [ ! -s "$photos/astronaut.png" ]; then
        sh "$top/tools/sample-photos.sh" "$photos" >&2 || photos=""
    fi
    if [ -n "$photos" ]; then
        images="$photos/astronaut.png $photos/chelsea.png $photos/coffee.png $photos/rocket.jpg"
    else
        note "no sample photos; using a synthetic JPEG (timing does not depend on content)"
        "$py" -c "
import numpy as np; from PIL import Image
r = np.random.default_rng(0)
for i in range(4):
    Image.fromarray(r.integers(0, 256, (480, 640, 3), dtype=np.uint8)).save('$work/synthetic%d.jpg' % i)
" || die "could not make a synthetic image"
        images="$work/synthetic0.jpg $work/synthetic1.jpg $work/synthetic2.jpg $work/synthetic3.jpg"
    fi
fi

results=$work/results.jsonl
: >"$results"
common="--batches $batches --runs $runs --warmup $warmup"

# Share of all CPUs busy over one second, as seen in /proc/stat: noise from others.
busy() {
    set -- $(head -n 1 /proc/stat)
    a_idle=$(($5 + $6)) a_tot=$(($2 + $3 + $4 + $5 + $6 + $7 + $8 + $9))
    sleep 1
    set -- $(head -n 1 /proc/stat)
    b_idle=$(($5 + $6)) b_tot=$(($2 + $3 + $4 + $5 + $6 + $7 + $8 + $9))
    echo $((100 - 100 * (b_idle - a_idle) / (b_tot - a_tot + 1)))
}

# --- 3. same pixels for everyone; numeric checks; the ONNX export -----------------
# shellcheck disable=SC2086
"$bin" "$model" --batches 1 --runs 1 --warmup 0 --threads "$threads" \
    --dump-pixels "$work/pixels.f32" --dump-embeddings "$work/ours.f32" $images >/dev/null ||
    die "bench_vision failed"

torch_why="" ort_why="" have_torch=1
"$py" -c 'import torch' 2>/dev/null || have_torch=0
if [ $use_torch = 0 ]; then
    torch_why="--no-torch"
elif [ $have_torch = 0 ]; then
    torch_why="$py cannot import torch (apt-get install python3-torch)"
fi
if [ -s "$work/vision.onnx" ] && { [ "$model/model.safetensors" -nt "$work/vision.onnx" ] ||
    [ "$here/torch_vision.py" -nt "$work/vision.onnx" ]; }; then
    rm -f "$work/vision.onnx" # stale: the checkpoint or the torch model changed
fi
if [ $use_ort = 1 ] && [ ! -s "$work/vision.onnx" ] && [ $have_torch = 1 ]; then
    note "exporting the tower to ONNX with torch ($work/vision.onnx, ~350 MB)"
    "$py" "$here/torch_vision.py" "$model" --pixels "$work/pixels.f32" --no-bench \
        --export-onnx "$work/vision.onnx.tmp" >/dev/null &&
        mv "$work/vision.onnx.tmp" "$work/vision.onnx" || note "the ONNX export failed"
fi
if [ -z "$torch_why" ]; then
    "$py" "$here/torch_vision.py" "$model" --pixels "$work/pixels.f32" --no-bench \
        --compare "$work/ours.f32" >>"$results" || torch_why="torch_vision.py failed"
fi
[ -n "$torch_why" ] && note "skipping PyTorch: $torch_why"

if [ $use_ort = 0 ]; then
    ort_why="--no-ort"
elif [ ! -s "$work/vision.onnx" ]; then
    ort_why="no ONNX model: it is exported by torch (python3-torch), which failed or is missing"
elif ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    ort_why="node/npm not found"
else
    if [ ! -d "$ort_dir/node_modules/onnxruntime-node" ]; then
        note "installing onnxruntime-node into $ort_dir (outside the repo, ~290 MB)"
        mkdir -p "$ort_dir"
        [ -f "$ort_dir/package.json" ] || echo '{"name":"clipmod-bench-ort","private":true}' >"$ort_dir/package.json"
        # The postinstall fetches CUDA bits from NuGet, unreachable here; the CPU build is in the package.
        (cd "$ort_dir" && ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit --no-fund \
            onnxruntime-node >&2) || ort_why="npm install onnxruntime-node failed"
    fi
    if [ -z "$ort_why" ]; then
        node "$here/ort_vision.js" "$work/vision.onnx" --pixels "$work/pixels.f32" \
            --ort-dir "$ort_dir" --threads "$threads" --compare "$work/ours.f32" --batches 1 \
            --runs 1 --warmup 0 | grep '"check"' >>"$results" || ort_why="ort_vision.js failed"
    fi
fi
[ -n "$ort_why" ] && note "skipping ONNX Runtime: $ort_why"

# --- 4. interleaved rounds -------------------------------------------------------------
# Busy jiffies of the whole machine (user, nice, system, irq, softirq, steal) and all jiffies.
stat_jiffies() {
    set -- $(head -n 1 /proc/stat)
    echo $(($2 + $3 + $4 + $7 + $8 + $9)) $(($2 + $3 + $4 + $5 + $6 + $7 + $8 + $9))
}
# CPU time of this shell's finished children, in jiffies (1/100 s). `times` must run in
# this shell, not in a $(...) subshell, whose counters start at zero.
child_jiffies() {
    times >"$work/.times"
    awk 'NR == 2 { gsub(/m/, " "); gsub(/s/, ""); printf "%d\n", ($1 * 60 + $2 + $3 * 60 + $4) * 100 }' "$work/.times"
}

# run_engine ROUND NAME CMD...: run one engine, tag its JSON lines with the round, and
# record how much of the machine other processes used meanwhile (noise that hit it).
run_engine() {
    rr=$1 name=$2
    shift 2
    waited=0
    while [ $waited -lt "$quiet_wait" ] && [ "$(busy)" -ge 10 ]; do
        waited=$((waited + 1))
    done
    child_jiffies >"$work/.c0"
    j0=$(stat_jiffies)
    "$@" | sed "s/^{/{\"round\":$rr,\"run\":\"$name\",/" >>"$results"
    j1=$(stat_jiffies)
    child_jiffies >"$work/.c1"
    c0=$(cat "$work/.c0") c1=$(cat "$work/.c1")
    set -- $j0 $j1
    others=$((($3 - $1 - (c1 - c0)) * 100 / ($4 - $2 + 1)))
    if [ $others -lt 0 ]; then others=0; fi
    echo "{\"round\":$rr,\"engine_run\":\"$name\",\"others_percent\":$others}" >>"$results"
}

r=1
while [ $r -le "$rounds" ]; do
    note "round $r/$rounds"
    # shellcheck disable=SC2086
    run_engine $r clipmod "$bin" "$model" $common --threads "$threads" $images
    if [ -z "$torch_why" ]; then
        for cfg in passive2 t1ob2; do
            # shellcheck disable=SC2086
            run_engine $r "torch $cfg" "$py" "$here/torch_vision.py" "$model" \
                --pixels "$work/pixels.f32" --threads-config $cfg $common
        done
    fi
    if [ -z "$ort_why" ]; then
        # shellcheck disable=SC2086
        run_engine $r ort node "$here/ort_vision.js" "$work/vision.onnx" \
            --pixels "$work/pixels.f32" --ort-dir "$ort_dir" --threads "$threads" $common
    fi
    r=$((r + 1))
done

# --- 5. the table ---------------------------------------------------------------------
summary_py=$(command -v "$py" || command -v python3)
TORCH_WHY=$torch_why ORT_WHY=$ort_why NOISE_LIMIT=$noise_limit "$summary_py" - "$results" <<'EOF'
import json, os, statistics, sys, time

lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
runs = [l for l in lines if "median_ms" in l]
checks = [l for l in lines if "check" in l]
limit = int(os.environ.get("NOISE_LIMIT", "10"))

# Noise: the share of the machine that other processes used while an engine ran. An engine
# run (one process: warm-up and timed calls at every batch size) during which others used
# NOISE_LIMIT% or more is dropped; the rest of its round stays, so every engine is judged
# on its quiet runs, spread over the whole benchmark.
noise = {}
for l in lines:
    if "others_percent" in l:
        noise[(l["round"], l["engine_run"])] = l["others_percent"]
all_rounds = sorted({l["round"] for l in runs})
warnings = []
by_cfg = {}
for l in runs:
    by_cfg.setdefault((l["engine"], l["config"], l["batch"]), []).append(l)
groups = {}
for key, ls in by_cfg.items():
    quiet = [l for l in ls if noise.get((l["round"], l.get("run")), 0) < limit]
    n_quiet = len(quiet)
    if n_quiet < 2:
        warnings.append(f"{key[0]} [{key[1].split(':')[0]}] b={key[2]}")
        quiet = ls
    g = groups.setdefault(key, {"times": [], "rounds": [], "kept": n_quiet, "of": len(ls)})
    for l in quiet:
        g["times"] += l["times_ms"]
        g["rounds"].append(l["median_ms"])

def summary(key):
    g = groups[key]
    med = statistics.median(g["times"])
    return {"ms": med / key[2], "gflops": 8.82 * key[2] / (med / 1e3), "n": len(g["times"]),
            "lo": min(g["rounds"]) / key[2], "hi": max(g["rounds"]) / key[2]}

batches = sorted({k[2] for k in groups})
best = {}  # (engine, batch) -> (config, summary): the fastest configuration of each engine
for k in groups:
    s = summary(k)
    if (k[0], k[2]) not in best or s["ms"] < best[(k[0], k[2])][1]["ms"]:
        best[(k[0], k[2])] = (k[1], s)

r0 = runs[0] if runs else {"runs": 0, "warmup": 0}
print()
print(f"# clipmod image tower vs PyTorch / ONNX Runtime, ViT-B/32 f32, {time.strftime('%Y-%m-%d %H:%M')}")
print(f"# {len(all_rounds)} interleaved rounds; each engine run = {r0['warmup']} warm-up + "
      f"{r0['runs']} timed calls per batch size; medians over the quiet runs "
      f"(other processes < {limit}% of the machine)")
print("# other load per round and engine run (% of the machine): " + "; ".join(
    f"{r}: " + " ".join(str(v) for (rr, _), v in noise.items() if rr == r) for r in all_rounds))
if warnings:
    print("# WARNING: fewer than 2 quiet runs, so all runs (noisy ones too) were used for: "
          + ", ".join(warnings) + ". The machine was busy: rerun with --quiet-wait.")
print()
print("| batch | engine | ms/image | GFLOP/s | range of run medians, ms/image | ours÷engine time |")
print("|---|---|---|---|---|---|")
for b in batches:
    ours = best.get(("clipmod", b))
    for eng in ("clipmod", "torch", "ort"):
        if (eng, b) not in best:
            continue
        cfg, s = best[(eng, b)]
        ratio = f"{ours[1]['ms'] / s['ms']:.2f}" if ours and eng != "clipmod" else "—"
        print(f"| {b} | {eng} | {s['ms']:.1f} | {s['gflops']:.0f} | "
              f"{s['lo']:.1f}–{s['hi']:.1f} | {ratio} |")
print()
print("All configurations (* = the fastest of its engine, used in the table):")
for k in sorted(groups):
    s = summary(k)
    mark = "*" if best[(k[0], k[2])][0] == k[1] else " "
    print(f" {mark} {k[0]:8s} b={k[2]:<2d} {s['ms']:7.1f} ms/image {s['gflops']:6.0f} GFLOP/s "
          f"({groups[k]['kept']}/{groups[k]['of']} runs quiet, {s['n']} calls)  [{k[1]}]")
print()
for c in checks:
    print(f"check {c['check']}: max |diff| of normalised embeddings = {c['max_abs_diff']:.2e} "
          f"over {c['images']} images (min cosine {c['min_cosine']:.9f})")
for name, why in (("PyTorch", os.environ.get("TORCH_WHY")), ("ONNX Runtime", os.environ.get("ORT_WHY"))):
    if why:
        print(f"{name} skipped: {why}")
print("ratio = our ms/image ÷ theirs: below 1 means clipmod is faster.")
EOF
note "raw results: $results"
