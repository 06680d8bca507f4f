#!/bin/sh
# daemon_load.sh - a load run of clipmodd's POST /v1/scan with wrk, on 127.0.0.1 only.
#
# A benchmark, not a test (never part of `make check`). It:
#   1. writes a random checkpoint (tests/reference/make_checkpoint.py, seed 1, HF names,
#      f32, quick_gelu; ViT-B/32 by default, --shape tiny for a quick look), a small
#      one-category policy and sample photos into a work directory;
#   2. starts clipmodd on 127.0.0.1 (port chosen by the kernel) and samples its resident
#      memory once a second from /proc;
#   3. warms up, then runs wrk for --duration with --connections keep-alive connections
#      posting one photo each time (requests/s, p50, p99 latency, statuses);
#   4. runs an overload phase (4 x queue-size connections) where 503s with Retry-After
#      are the intended answer, and counts every other error;
#   5. prints a Markdown block for BENCHMARKS.md: throughput, latency, errors other than
#      intended 503s (must be 0), RSS at start and end of the run (must stay flat).
#
# Usage: bench/daemon_load.sh [options]
#   --shape tiny|b32      checkpoint shape (default b32: real ViT-B/32 cost)
#   --duration S          seconds of the measured run (default 30)
#   --connections N       connections of the measured run (default 16)
#   --threads N           wrk threads (default 2)
#   --max-batch N         clipmodd scan.max-batch (default 8)
#   --window MS           clipmodd scan.batch-window-ms (default 3)
#   --image FILE          the photo to post (default: chelsea.png of the sample photos)
#   --work DIR            work directory (default ${TMPDIR:-/tmp}/clipmod-daemon-bench)
#   --builddir DIR        where clipmodd and clipmod were built (default: the source tree)
#   --precision P         clipmodd's precision: fp32 (default), int8 or bf16
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
shape=b32
duration=30
connections=16
wthreads=2
max_batch=8
window=3
precision=fp32
image=
work=${TMPDIR:-/tmp}/clipmod-daemon-bench
builddir=${top_builddir:-$here}
while [ $# -gt 0 ]; do
    case $1 in
    --shape) shape=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --threads) wthreads=$2; shift 2 ;;
    --max-batch) max_batch=$2; shift 2 ;;
    --window) window=$2; shift 2 ;;
    --image) image=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --builddir) builddir=$2; shift 2 ;;
    --precision) precision=$2; shift 2 ;;
    *) echo "daemon_load.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
command -v wrk >/dev/null || { echo "daemon_load.sh: wrk is not installed (apt-get install wrk)" >&2; exit 2; }
clipmodd="$builddir/src/daemon/clipmodd"
[ -x "$clipmodd" ] || { echo "daemon_load.sh: build clipmodd first ($clipmodd)" >&2; exit 2; }

mkdir -p "$work"
top_srcdir=$here
top_builddir=$builddir
CLIPMOD_WORK=$work
export top_srcdir top_builddir CLIPMOD_WORK
. "$here/tests/lib.sh"
have_bpe || { echo "daemon_load.sh: $CLIPMOD_BPE_GZ is needed for the policy" >&2; exit 2; }
photos=$(photos_dir)
model=$(checkpoint "bench-$shape" --shape "$shape" --layout hf --dtype f32 --act quick_gelu \
    --seed 1 --merges "$CLIPMOD_BPE_GZ")
image=${image:-$photos/chelsea.png}

cat >"$work/policy.yaml" <<'EOF'
# The load run's policy: one category (the image tower dominates the cost of a scan).
version: 1
name: load run
templates: ["a photo of {}."]
neutral: [a city street, a bowl of fruit, a mountain lake]
categories:
  - id: cat
    prompts: [a cat, a kitten sleeping]
    contrast: [a dog]
    threshold: 0.5
    action: reject
EOF
cat >"$work/clipmodd.yaml" <<EOF
model: $model
policy: $work/policy.yaml
cache-dir: $work/cache
precision: $precision
http:
  listen: 127.0.0.1:0
  max-connections: 1024
  max-connections-per-ip: 0 # every wrk connection comes from 127.0.0.1
scan:
  max-batch: $max_batch
  batch-window-ms: $window
  queue-size: 64
  request-timeout-ms: 30000
log:
  requests: false
EOF
rm -f "$work/ready"
"$clipmodd" -c "$work/clipmodd.yaml" --ready-file "$work/ready" 2>"$work/clipmodd.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; kill $sampler 2>/dev/null || true' EXIT INT TERM
sampler=
i=0
while [ ! -f "$work/ready" ]; do
    kill -0 $pid 2>/dev/null || { cat "$work/clipmodd.log" >&2; exit 1; }
    [ $i -lt 1200 ] || { echo "clipmodd did not start" >&2; exit 1; }
    sleep 0.1
    i=$((i + 1))
done
addr=$(sed -n 's/^http=//p' "$work/ready")

cat >"$work/post.lua" <<'EOF'
-- POST one image per request; count statuses per thread, report them at the end.
wrk.method = "POST"
wrk.path = "/v1/scan"
wrk.headers["Content-Type"] = "application/octet-stream"
local f = assert(io.open(os.getenv("BENCH_IMAGE"), "rb"))
wrk.body = f:read("*a")
f:close()
local threads = {}
function setup(thread)
    table.insert(threads, thread)
end
function init(args)
    codes = {}
end
function response(status, headers, body)
    codes[status] = (codes[status] or 0) + 1
end
function done(summary, latency, requests)
    local all = {}
    for _, t in ipairs(threads) do
        for k, v in pairs(t:get("codes")) do
            all[k] = (all[k] or 0) + v
        end
    end
    for k, v in pairs(all) do
        io.write(string.format("status %d %d\n", k, v))
    end
    local e = summary.errors
    io.write(string.format("requests %d\n", summary.requests))
    io.write(string.format("seconds %.2f\n", summary.duration / 1e6))
    io.write(string.format("p50_ms %.1f\np90_ms %.1f\np99_ms %.1f\n", latency:percentile(50) / 1e3,
        latency:percentile(90) / 1e3, latency:percentile(99) / 1e3))
    io.write(string.format("socket_errors %d\n", e.connect + e.read + e.write + e.timeout))
end
EOF
BENCH_IMAGE=$image
export BENCH_IMAGE

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status"; }

# run NAME CONNECTIONS SECONDS: wrk output in $work/NAME.out
run() {
    wrk -t "$wthreads" -c "$2" -d "${3}s" --timeout 60s -s "$work/post.lua" "http://$addr" \
        >"$work/$1.out" 2>&1
}
val() { awk -v k="$2" '$1 == k { print $2 }' "$work/$1.out"; }
status_count() { awk -v s="$2" '$1 == "status" && $2 == s { n += $3 } END { print n + 0 }' "$work/$1.out"; }
other_errors() {
    awk '$1 == "status" && $2 != 200 && $2 != 503 { n += $3 } $1 == "socket_errors" { n += $2 }
         END { print n + 0 }' "$work/$1.out"
}

run warmup "$connections" 5
rss_start=$(rss_kb)
# RSS once a second during the measured run (bounded: the run's length plus a margin).
(
    n=0
    while [ $n -lt $((duration + 5)) ] && kill -0 $pid 2>/dev/null; do
        rss_kb
        sleep 1
        n=$((n + 1))
    done
) >"$work/rss.log" &
sampler=$!
run measured "$connections" "$duration"
rss_end=$(rss_kb)
kill $sampler 2>/dev/null || true
rss_max=$(sort -n "$work/rss.log" | tail -n 1)
overload_c=256
run overload $overload_c 10
rss_after=$(rss_kb)

req=$(val measured requests)
secs=$(val measured seconds)
rps=$(awk -v r="$req" -v s="$secs" 'BEGIN { printf "%.1f", r / s }')
ok=$(status_count measured 200)
o503=$(status_count overload 503)
o200=$(status_count overload 200)
desc=$(curl -s "http://$addr/v1/health" | sed -n 's/.*"model":"\([^"]*\)".*/\1/p')
passes=$(curl -s "http://$addr/metrics" | awk '$1 == "clipmodd_batch_size_count" { print $2 }')
images=$(curl -s "http://$addr/metrics" | awk '$1 == "clipmodd_batch_size_sum" { printf "%d", $2 }')
cpu=$(grep -c ^processor /proc/cpuinfo)

cat <<EOF

### clipmodd load run ($(date -u +%Y-%m-%d), $cpu cores, wrk on 127.0.0.1)

Model: $desc (random weights, $shape). POST /v1/scan with one photo ($(basename "$image"),
$(stat -c %s "$image") bytes) per request; scan.max-batch $max_batch,
scan.batch-window-ms $window, queue-size 64.

| phase | connections | seconds | requests | requests/s | p50 ms | p90 ms | p99 ms | 200 | 503 (intended) | other errors |
|---|---|---|---|---|---|---|---|---|---|---|
| measured | $connections | $secs | $req | $rps | $(val measured p50_ms) | $(val measured p90_ms) | $(val measured p99_ms) | $ok | $(status_count measured 503) | $(other_errors measured) |
| overload | $overload_c | $(val overload seconds) | $(val overload requests) | - | $(val overload p50_ms) | $(val overload p90_ms) | $(val overload p99_ms) | $o200 | $o503 | $(other_errors overload) |

Batching: $images images in $passes forward passes (mean $(awk -v a="$images" -v b="$passes" 'BEGIN { printf "%.2f", b ? a / b : 0 }') images per pass).
RSS: $((rss_start / 1024)) MiB after warm-up, $((rss_end / 1024)) MiB at the end of the
measured run (max $((rss_max / 1024)) MiB), $((rss_after / 1024)) MiB after the overload phase.
EOF
