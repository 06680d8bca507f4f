# tests/lib.sh - sourced by every shell test.
#
# Automake runs each test with top_srcdir, top_builddir, REF_PYTHON, CLIPMOD_BPE_GZ
# and CLIPMOD_WORK set (see Makefile.am). Exit 77 means SKIP, 99 a hard error.

set -eu
: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
: "${REF_PYTHON:=/usr/bin/python3}"
: "${CLIPMOD_BPE_GZ:=$top_srcdir/../shared/data/clip/bpe_simple_vocab_16e6.txt.gz}"
: "${CLIPMOD_WORK:=$top_builddir/tests/work}"

CLIPMOD="$top_builddir/src/cli/clipmod"
REF="$top_srcdir/tests/reference"
mkdir -p "$CLIPMOD_WORK"

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }

# The Python reference needs Debian's torch, numpy, PIL and regex.
need_reference() {
    "$REF_PYTHON" -c 'import torch, numpy, PIL, regex' 2>/dev/null ||
        skip "$REF_PYTHON cannot import torch/numpy/PIL/regex (apt-get install python3-torch python3-numpy python3-pil python3-regex)"
}

# OpenAI's merges are not in the repository; tests that need them skip without.
have_bpe() { [ -r "$CLIPMOD_BPE_GZ" ]; }

# Real photos from Debian's python3-skimage package, fetched once into the work dir.
photos_dir() {
    d="$CLIPMOD_WORK/photos"
    if [ ! -f "$d/astronaut.png" ]; then
        "$top_srcdir/tools/sample-photos.sh" "$d" >&2 || return 1
    fi
    echo "$d"
}

# A checkpoint written by the reference, cached in the work dir by its arguments.
# Usage: checkpoint NAME ARGS... ; prints the directory.
checkpoint() {
    name=$1
    shift
    d="$CLIPMOD_WORK/models/$name"
    if [ ! -f "$d/.done" ]; then
        rm -rf "$d"
        "$REF_PYTHON" "$REF/make_checkpoint.py" "$d" "$@" >&2 || return 1
        touch "$d/.done"
    fi
    echo "$d"
}
