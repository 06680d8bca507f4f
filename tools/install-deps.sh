#!/bin/sh
# install-deps.sh - install what clipmod needs to build and test on Debian 12.
#
# Build: a C toolchain, autotools and the libraries configure.ac checks for.
# Tests: Debian's torch/numpy/PIL/regex for the independent Python reference
# (they import only from /usr/bin/python3) and cmocka for unit tests; redis-server
# for the verdict cache's tests (they start their own on a loopback port); haproxy
# for clipmodd's rolling-restart test (its own instance on loopback ports).
# Fuzzing (tests/fuzz/README.md): clang, and libclang-rt-14-dev for libFuzzer's
# runtime (libclang_rt.fuzzer*.a, ASan, UBSan): libclang-common-14-dev only recommends
# it, and recommends are not installed here.
# With --bench it also installs what `make bench` needs beyond the tests: the vips
# command (bench/e2e_scan.sh makes its 12 MP photos with it), python3-onnx (ONNX
# Runtime's int8/bf16 models) and, unless npm is there, Debian's nodejs and npm
# (ONNX Runtime itself is fetched by npm).
# With --demo, what `make demo-model-v2` needs (issue 16): librsvg2-bin (rsvg-convert
# renders the npm art sets' SVGs) and, unless npm is there, nodejs and npm (`npm pack`
# fetches the sets). The options combine.
set -eu
bench=""
for arg in "$@"; do
    case "$arg" in
    --bench) bench="$bench libvips-tools python3-onnx" ;;
    --demo) bench="$bench librsvg2-bin" ;;
    *)
        echo "usage: install-deps.sh [--bench] [--demo]" >&2
        exit 2
        ;;
    esac
done
# Both need npm. A node from elsewhere (NodeSource, say) conflicts with Debian's npm: keep it.
if [ -n "$bench" ] && ! command -v npm >/dev/null 2>&1; then
    bench="$bench nodejs npm"
fi
# As root it runs as it is; anyone else is asked for sudo (a fresh root machine has none).
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        exec sudo "$0" "$@"
    fi
    echo "install-deps.sh: run as root (there is no sudo here)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# postfix (the mail filter's end-to-end test runs a private instance) asks two
# questions when installed; answer them first. The test starts its own master.
echo "postfix postfix/main_mailer_type select Local only" | debconf-set-selections
echo "postfix postfix/mailname string localhost" | debconf-set-selections
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    build-essential autoconf automake libtool pkg-config \
    libvips-dev libyaml-dev libopenblas-dev libcurl4-openssl-dev libjansson-dev \
    libutf8proc-dev zlib1g-dev libcmocka-dev libmicrohttpd-dev liblinear-dev \
    clamdscan wrk curl haproxy \
    libmilter-dev libgmime-3.0-dev postfix swaks \
    libhiredis-dev redis-server \
    python3-torch python3-numpy python3-pil python3-regex \
    fonts-noto-color-emoji unicode-cldr-core \
    chromium \
    clang libclang-rt-14-dev \
    clang-format \
    strace time \
    rspamd \
    $bench \
    >/dev/null
echo "install-deps.sh: done"
