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

# A test of a program configured out (--without-daemon, --without-milter) skips.
case $(basename "$0") in
daemon_* | rspamd*)
    [ "${CLIPMOD_WITH_DAEMON:-yes}" != no ] || skip "clipmodd is not built (configure --without-daemon)" ;;
milter*)
    [ "${CLIPMOD_WITH_MILTER:-yes}" != no ] || skip "clipmod-milter is not built (configure --without-milter)" ;;
esac

# The Python reference needs Debian's torch, numpy, PIL and regex.
need_reference() {
    "$REF_PYTHON" -c 'import torch, numpy, PIL, regex' 2>/dev/null ||
        skip "$REF_PYTHON cannot import torch/numpy/PIL/regex (apt-get install python3-torch python3-numpy python3-pil python3-regex)"
}

# need_demo_data MODEL_DIR: what tools/labelled-set.py needs to draw a labelled set from
# the demo data (Noto Color Emoji, CLDR names, numpy and PIL), and the demo model itself.
need_demo_data() {
    [ -f "$1/model.safetensors" ] || fail "$1/model.safetensors is missing"
    "$REF_PYTHON" -c 'import numpy, PIL' 2>/dev/null || skip "$REF_PYTHON cannot import numpy and PIL"
    [ -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] ||
        skip "fonts-noto-color-emoji is not installed (tools/install-deps.sh)"
    [ -d /usr/share/unicode/cldr/common/annotations ] ||
        skip "unicode-cldr-core is not installed (tools/install-deps.sh)"
}

# check_demo_artefact DIR: a model directory written by tools/demo/train.py, as the
# cards describe it: config.json names it clipmod/demo-emoji with "clipmod_demo": true,
# vocab_size = 512 + merges + 2 (merges.txt's first line is the "#version" header, as in
# OpenAI's file), the three files <= 15 MiB together.
check_demo_artefact() {
    "$REF_PYTHON" - "$1" <<'PYEOF' || fail "$1 is not what its model card says"
import json, os, sys
d = sys.argv[1]
c = json.load(open(os.path.join(d, "config.json")))
assert c.get("_name_or_path") == "clipmod/demo-emoji", c.get("_name_or_path")
assert c.get("clipmod_demo") is True, "clipmod_demo is not true"
merges = [l for l in open(os.path.join(d, "merges.txt"), encoding="utf-8").read().split("\n")[1:] if l]
v = c["text_config"]["vocab_size"]
assert v == 512 + len(merges) + 2, f"vocab_size {v} != 512 + {len(merges)} + 2"
size = sum(os.path.getsize(os.path.join(d, f)) for f in ("model.safetensors", "config.json", "merges.txt"))
assert size <= 15 * 1024 * 1024, f"{size} bytes"
print(f"{os.path.basename(os.path.normpath(d))}: {size} bytes, vocab {v}")
PYEOF
}

# check_demo_card MODEL POLICY: tools/demo/evaluate.py re-measures EmojiOne (Debian's
# ruby-gemojione) with MODEL and POLICY through the C engine and compares every number
# with the metrics block of MODEL/README.md; fails when one moves beyond the card's
# tolerance, skips without the evaluation data. Uses $W for its files.
check_demo_card() {
    need_demo_data "$1"
    png=$("$top_srcdir/tools/demo/emojione.sh" "$CLIPMOD_WORK/emojione" 2>"$W/emojione.err") ||
        skip "evaluation data unavailable: $(cat "$W/emojione.err")"
    "$REF_PYTHON" "$top_srcdir/tools/demo/evaluate.py" --clipmod "$CLIPMOD" --model "$1" \
        --policy "$2" --emojione "$png" --cache "$W/glyphs.npz" --check "$1/README.md" \
        >"$W/eval.out" 2>&1 || {
        cat "$W/eval.out"
        fail "the numbers of $1/README.md do not hold (see above)"
    }
    grep -c '^ok ' "$W/eval.out" | sed 's/^/model card numbers within tolerance: /'
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

# A checkpoint written by the reference, cached in the work dir under NAME (one NAME,
# one set of ARGS: .done records them, and another set is an error).
# Usage: checkpoint NAME ARGS... ; prints the directory.
# Tests run in parallel (make -j) and several ask for the same checkpoint: the first
# writes it into a private directory under a lock (flock) and renames it into place,
# so no test ever sees a half-written one; the others wait for it.
checkpoint() {
    name=$1
    shift
    d="$CLIPMOD_WORK/models/$name"
    mkdir -p "$CLIPMOD_WORK/models"
    if [ ! -f "$d/.done" ]; then
        (
            flock 9
            [ -f "$d/.done" ] && exit 0
            tmp="$d.tmp.$$"
            rm -rf "$d" "$tmp"
            "$REF_PYTHON" "$REF/make_checkpoint.py" "$tmp" "$@" >&2 || {
                rm -rf "$tmp"
                exit 1
            }
            echo "$*" >"$tmp/.done"
            mv -T "$tmp" "$d"
        ) 9>"$d.lock" || return 1
    fi
    made=$(cat "$d/.done")
    # (An empty .done comes from before the arguments were recorded.)
    [ -z "$made" ] || [ "$made" = "$*" ] || {
        echo "checkpoint $name was made with other arguments: $made" >&2
        return 1
    }
    echo "$d"
}

# run WANT CMD...: run CMD with stdout in $W/out and stderr in $W/err; fail unless it
# exits with status WANT. Tests set W to their work directory first.
run() {
    want=$1
    shift
    set +e
    "$@" >"$W/out" 2>"$W/err"
    got=$?
    set -e
    [ "$got" -eq "$want" ] ||
        fail "exit $got, not $want: $* (stdout: $(head -c 800 "$W/out"); stderr: $(head -c 800 "$W/err"))"
}

# write_policy FILE THRESHOLD ACTION [NAME]: a small valid policy with one category
# ("cat"), scored against its contrast prompt and three neutral prompts. Tests with
# the random tiny model measure the photos' scores first and put THRESHOLD between
# them: the scores are arbitrary but deterministic, and only the machinery is tested.
write_policy() {
    cat >"$1" <<EOF
# A test policy: one category, scored against its contrast and the neutral prompts.
version: 1
name: ${4:-${TEST_POLICY_NAME:-scan test}}
templates:
  - "a photo of {}."
  - "a picture of {}."
neutral:
  - a city street
  - a bowl of fruit
  - a mountain lake
categories:
  - id: cat
    description: Cats.
    prompts:
      - a cat
      - a kitten sleeping
    contrast:
      - a dog
    threshold: $2
    action: $3
EOF
}
