#!/bin/sh
# image_tower.sh - benchmark clipmod's image tower against PyTorch and ONNX Runtime on
# the same random ViT-B/32 checkpoint, in the same run, at fp32, int8 and bf16; then the
# end-to-end scan benchmark (bench/e2e_scan.sh) when this tree has it.
#
# Run by hand (`make bench`); never part of the test suite. It:
#   1. finds or builds bench_vision (bench/bench_vision.c, public API only);
#   2. writes a random ViT-B/32 checkpoint (tests/reference/make_checkpoint.py, seed 1,
#      HF names, f32, quick_gelu) and a few real photos into a work directory;
#   3. checks that torch and ORT compute the same embeddings as ours on the same pixels,
#      and how close each engine's int8/bf16 embeddings are to our fp32 ones (cosine);
#   4. runs ours, torch (both fair thread configurations at fp32) and ORT at each precision,
#      interleaved, ROUNDS times, so background noise hits every engine alike;
#   5. prints a table (bench/tower_table.py): the CPU and its ISA flags, the load, and per
#      precision and batch ms/image, GFLOP/s (8.82 GFLOP per image), ours÷theirs and each
#      engine's int8/bf16 time ÷ its own fp32 time;
#   6. runs bench/e2e_scan.sh if it exists (--no-e2e skips it), on this run's checkpoint,
#      ONNX file, threads and ORT, in WORK/e2e.
#
# The precisions, engine by engine:
#   clipmod  bench_vision --precision P; a row reads "skipped: <reason>" when bench_vision
#            refuses (the CPU lacks the instructions, or a bench_vision without --precision)
#   PyTorch  bench/torch_vision.py --precision P: int8 = quantize_dynamic on nn.Linear
#            (fbgemm/x86 if this torch has it, else onednn); bf16 = both torch.autocast
#            and model.to(bfloat16), the table keeps the faster, the list shows both
#   ORT      int8 = WORK/vision-int8.onnx from bench/ort_quantize.py (dynamic quantisation
#            as onnxruntime.quantization.quantize_dynamic does it; needs python3-onnx, a
#            bench-only dependency: apt-get install python3-onnx); bf16 = WORK/vision-bf16.onnx
#            (bf16 MatMuls): ORT's CPU provider has no bf16 MatMul kernel, so that row says
#            "not supported by ORT's CPU provider" with ORT's message
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
#   --precisions LIST precisions to run, of fp32,int8,bf16 (default fp32,int8,bf16); fp32
#                     is always checked, since every other precision is compared to it
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
#   --builddir DIR    the configured build tree, passed to bench/e2e_scan.sh (`make bench`
#                     sets it); without it the end-to-end benchmark is skipped
#   --no-e2e          do not run bench/e2e_scan.sh
#   --e2e-args "A..." more arguments for bench/e2e_scan.sh (e.g. "--rounds 5"; see its
#                     --help)
# Raw JSON lines go to WORK/results.jsonl (skipped rows: WORK/skips.tsv); the table goes to
# stdout.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
work=${TMPDIR:-/tmp}/clipmod-bench
bin=${BENCH_VISION:-}
rounds=5 runs=7 warmup=2 batches=1,8 threads=2 images="" precisions=fp32,int8,bf16
builddir="" use_e2e=1 e2e_args=""
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
    --precisions) precisions=$2; shift 2 ;;
    --builddir) builddir=$2; shift 2 ;;
    --no-e2e) use_e2e=0; shift ;;
    --e2e-args) e2e_args=$2; shift 2 ;;
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
precs=""
for p in $(echo "$precisions" | tr ',' ' '); do
    case $p in
    fp32 | int8 | bf16) precs="$precs $p" ;;
    *) die "unknown precision $p in --precisions (fp32, int8, bf16)" ;;
    esac
done
[ -n "$precs" ] || die "--precisions is empty"
mkdir -p "$work"
work=$(cd "$work" && pwd)
load_start=$(cut -d ' ' -f 1-3 /proc/loadavg)

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
skips=$work/skips.tsv
: >"$skips"
# skip ENGINE PRECISION REASON: that engine is not timed at that precision; the table says why.
skip() {
    printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$skips"
    note "skipping $1 $2: $3"
}
skipped() {
    awk -F '\t' -v e="$1" -v p="$2" '$1 == e && $2 == p { f = 1 } END { exit !f }' "$skips"
}
# The last line bench_vision or a script wrote on stderr, without its "name: " prefix.
last_error() {
    tail -n 1 "$work/.err" | sed 's/^[a-z_]*: //'
}

# ours_once PRECISION OUT [ARG...]: one batched call of our tower, its embeddings to OUT.
# bench_vision without --precision (before the quant work) is run without the option.
prec_opt=1
ours_once() {
    o_p=$1 o_out=$2
    shift 2
    if [ $prec_opt = 1 ]; then set -- --precision "$o_p" "$@"; fi
    # shellcheck disable=SC2086
    "$bin" "$model" --batches 1 --runs 1 --warmup 0 --threads "$threads" \
        --dump-embeddings "$o_out" "$@" $images >/dev/null 2>"$work/.err"
}
if ! ours_once fp32 "$work/ours.f32" --dump-pixels "$work/pixels.f32"; then
    grep -q 'bad option.*--precision' "$work/.err" || die "bench_vision failed: $(last_error)"
    prec_opt=0
    note "this bench_vision has no --precision: fp32 only for clipmod"
    ours_once fp32 "$work/ours.f32" --dump-pixels "$work/pixels.f32" ||
        die "bench_vision failed: $(last_error)"
fi
# shellcheck disable=SC2086
nimg=$(echo $images | wc -w)

# compare_ours PRECISION: our embeddings at PRECISION against our fp32 ones (a check line).
compare_ours() {
    "$py" - "$work/ours.f32" "$work/ours-$1.f32" "$1" "$nimg" >>"$results" <<'EOF'
import json, sys
import numpy as np
n = int(sys.argv[4])
a, b = (np.fromfile(f, "<f4").astype(np.float64).reshape(n, -1) for f in sys.argv[1:3])
a /= np.linalg.norm(a, axis=1, keepdims=True)
b /= np.linalg.norm(b, axis=1, keepdims=True)
print(json.dumps({"engine": "clipmod", "precision": sys.argv[3],
                  "check": "clipmod fp32 vs clipmod " + sys.argv[3], "images": n,
                  "max_abs_diff": float(np.abs(a - b).max()),
                  "min_cosine": float((a * b).sum(1).min())}))
EOF
}
for p in $precs; do
    [ "$p" != fp32 ] || continue
    if [ $prec_opt = 0 ]; then
        skip clipmod "$p" "this bench_vision has no --precision (the quant work adds it)"
    elif ! ours_once "$p" "$work/ours-$p.f32"; then
        skip clipmod "$p" "bench_vision: $(last_error)"
    else
        # Timed even if the check cannot run (no numpy): the table lists the checks made.
        compare_ours "$p" || note "could not compare our $p embeddings to fp32 (numpy?)"
    fi
done

have_torch=1
"$py" -c 'import torch' 2>/dev/null || have_torch=0
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

# torch_configs PRECISION: the thread configurations (and bf16 modes) timed at PRECISION.
# int8 and bf16 run on torch's own OpenMP threads (quantized engine, oneDNN), not OpenBLAS,
# so t1ob2 (one torch thread) would only be slower there.
torch_configs() {
    case $1 in
    fp32) echo "passive2 t1ob2" ;;
    int8) echo "passive2" ;;
    bf16) echo "passive2/autocast passive2/cast" ;;
    esac
}
# torch_run CONFIG PRECISION ARG...: torch_vision.py at CONFIG (thread config[/bf16 mode]).
torch_run() {
    t_cfg=$1 t_p=$2
    shift 2
    set -- --threads-config "${t_cfg%%/*}" --precision "$t_p" "$@"
    case $t_cfg in */*) set -- "$@" --bf16-mode "${t_cfg#*/}" ;; esac
    "$py" "$here/torch_vision.py" "$model" --pixels "$work/pixels.f32" "$@"
}
for p in $precs; do
    if [ $use_torch = 0 ]; then
        skip torch "$p" "--no-torch"
        continue
    elif [ $have_torch = 0 ]; then
        skip torch "$p" "$py cannot import torch (apt-get install python3-torch)"
        continue
    fi
    for cfg in $(torch_configs "$p"); do
        # fp32 needs one check (both thread configs compute alike); bf16 modes differ.
        case $cfg in passive2 | */*) ;; *) continue ;; esac
        torch_run "$cfg" "$p" --no-bench --compare "$work/ours.f32" >>"$results" \
            2>"$work/.err" || { skip torch "$p" "torch_vision.py: $(last_error)" && break; }
    done
done

# ort_model PRECISION: the ONNX file ORT runs at PRECISION, converted (and cached) if needed.
ort_model() {
    case $1 in
    fp32) echo "$work/vision.onnx" ;;
    *) echo "$work/vision-$1.onnx" ;;
    esac
}
ort_convert() {
    m=$(ort_model "$1")
    if [ -s "$m" ] && [ "$m" -nt "$work/vision.onnx" ] && [ "$m" -nt "$here/ort_quantize.py" ]; then
        return 0
    fi
    note "converting the ONNX model to $1 ($m)"
    flag=""
    [ "$1" = bf16 ] && flag=--bf16
    # shellcheck disable=SC2086
    "$py" "$here/ort_quantize.py" "$work/vision.onnx" "$m" $flag >/dev/null 2>"$work/.err"
}
ort_why=""
if [ $use_ort = 0 ]; then
    ort_why="--no-ort"
elif [ ! -s "$work/vision.onnx" ]; then
    ort_why="no ONNX model: it is exported by torch (python3-torch), which failed or is missing"
elif ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    ort_why="node/npm not found"
elif [ ! -d "$ort_dir/node_modules/onnxruntime-node" ]; then
    note "installing onnxruntime-node into $ort_dir (outside the repo, ~290 MB)"
    mkdir -p "$ort_dir"
    [ -f "$ort_dir/package.json" ] || echo '{"name":"clipmod-bench-ort","private":true}' >"$ort_dir/package.json"
    # The postinstall fetches CUDA bits from NuGet, unreachable here; the CPU build is in the package.
    (cd "$ort_dir" && ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit --no-fund \
        onnxruntime-node >&2) || ort_why="npm install onnxruntime-node failed"
fi
for p in $precs; do
    if [ -n "$ort_why" ]; then
        skip ort "$p" "$ort_why"
        continue
    fi
    if [ "$p" != fp32 ] && ! ort_convert "$p"; then
        if grep -q 'python3-onnx' "$work/.err"; then
            skip ort "$p" "no $p model: ort_quantize.py needs python3-onnx (apt-get install python3-onnx, a bench-only dependency)"
        else
            skip ort "$p" "ort_quantize.py: $(last_error)"
        fi
        continue
    fi
    rc=0
    node "$here/ort_vision.js" "$(ort_model "$p")" --pixels "$work/pixels.f32" \
        --ort-dir "$ort_dir" --threads "$threads" --precision "$p" --compare "$work/ours.f32" \
        --batches 1 --runs 1 --warmup 0 >"$work/.ort" 2>"$work/.err" || rc=$?
    grep '"check"' "$work/.ort" >>"$results" || true
    if [ $rc = 4 ]; then
        why=$(sed -n 's/.*"unsupported":"\(.*\)"}$/\1/p' "$work/.ort" | sed 's/\\"/"/g')
        skip ort "$p" "not supported by ORT's CPU provider: ${why:-the session was refused}"
    elif [ $rc != 0 ]; then
        skip ort "$p" "ort_vision.js: $(last_error)"
    fi
done

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
    "$@" | sed "s|^{|{\"round\":$rr,\"run\":\"$name\",|" >>"$results"
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
    for p in $precs; do
        if ! skipped clipmod "$p"; then
            popt=""
            [ $prec_opt = 0 ] || popt="--precision $p"
            # shellcheck disable=SC2086 # word splitting wanted
            run_engine $r "clipmod $p" "$bin" "$model" $popt $common --threads "$threads" $images
        fi
        if ! skipped torch "$p"; then
            for cfg in $(torch_configs "$p"); do
                # shellcheck disable=SC2086
                run_engine $r "torch $p $(echo "$cfg" | tr / ' ')" torch_run "$cfg" "$p" $common
            done
        fi
        if ! skipped ort "$p"; then
            # shellcheck disable=SC2086
            run_engine $r "ort $p" node "$here/ort_vision.js" "$(ort_model "$p")" \
                --pixels "$work/pixels.f32" --ort-dir "$ort_dir" --threads "$threads" \
                --precision "$p" $common
        fi
    done
    r=$((r + 1))
done

# --- 5. the table ---------------------------------------------------------------------
"$py" "$here/tower_table.py" "$results" --skips "$skips" --noise-limit "$noise_limit" \
    --load-start "$load_start"
note "raw results: $results"

# --- 6. end to end ----------------------------------------------------------------------
if [ $use_e2e = 0 ]; then
    echo "end-to-end benchmark: skipped (--no-e2e)"
elif [ ! -f "$here/e2e_scan.sh" ]; then
    echo "end-to-end benchmark: skipped: bench/e2e_scan.sh is not in this tree"
elif [ -z "$builddir" ]; then
    echo "end-to-end benchmark: skipped: no --builddir (\`make bench\` gives it)"
else
    echo
    # shellcheck disable=SC2086
    sh "$here/e2e_scan.sh" --builddir "$builddir" --model "$model" --onnx "$work/vision.onnx" \
        --work "$work/e2e" --threads "$threads" --ort-dir "$ort_dir" $e2e_args ||
        die "bench/e2e_scan.sh failed (rerun with --no-e2e to skip it)"
fi
