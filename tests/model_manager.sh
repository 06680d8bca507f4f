#!/bin/sh
# model_manager.sh - `clipmod model list|fetch|verify|path|remove` against a local
# mirror of the Hugging Face hub's layout (tests/http_server.py on 127.0.0.1).
#
# The mirror serves a tiny random checkpoint written by tests/reference under
# ORG/NAME/resolve/REVISION/FILE. A catalogue file (--catalog) describes it with
# its real size and SHA-256, so every check the built-in models get runs here:
# resume of an interrupted download with an HTTP Range request, a server that
# ignores ranges, a checksum mismatch, a missing optional file, a 404 on a required
# one, an unreachable hub (the instructions for installing by hand), atomic
# installation (nothing in place until everything passed), verify, path and remove.
# The built-in catalogue is exercised too: openai/clip-vit-base-patch32 from its
# refs/pr/32 revision, and openai/clip-vit-base-patch16's conversion advice.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

PY=/usr/bin/python3
W="$CLIPMOD_WORK/model_manager"
rm -rf "$W"
mkdir -p "$W/hub"
MODELS="$W/models"
unset CLIPMOD_HUB_URL CLIPMOD_MODEL_CATALOG http_proxy https_proxy HTTP_PROXY HTTPS_PROXY \
    ALL_PROXY all_proxy


# ---------------------------------------------------------------------------
# Without a network or a model.
"$CLIPMOD" --help | grep -q "^  model " || fail "--help does not list model"
"$CLIPMOD" model --help >"$W/help"
for word in list fetch verify path remove use --default --models-dir --system --user --base-url --catalog \
    --force CLIPMOD_HUB_URL; do
    grep -q -- "$word" "$W/help" || fail "model --help does not mention $word"
done
run 2 "$CLIPMOD" model
run 2 "$CLIPMOD" model frobnicate
run 2 "$CLIPMOD" model fetch
run 2 "$CLIPMOD" model fetch --models-dir "$MODELS" no-such-model
grep -q "unknown model" "$W/err" || fail "an unknown model: $(cat "$W/err")"
run 2 "$CLIPMOD" model list --base-url ftp://example.com
run 2 "$CLIPMOD" model list --system --user

# The built-in catalogue, honest about each model's files.
run 0 "$CLIPMOD" model list --models-dir "$MODELS"
for m in openai/clip-vit-base-patch32 openai/clip-vit-base-patch16 \
    openai/clip-vit-large-patch14 laion/CLIP-ViT-B-32-laion2B-s34B-b79K; do
    grep -q "^$m  (" "$W/out" || fail "model list does not show $m"
done
tr '\n' ' ' <"$W/out" | sed 's/  */ /g' >"$W/list1"
grep -q "refs/pr/32" "$W/list1" || fail "list: B/32's weights come from refs/pr/32"
grep -q "only pytorch_model.bin" "$W/list1" || fail "list: B/32's main has only pytorch_model.bin"
grep -q "convert pytorch_model.bin" "$W/list1" || fail "list: B/16 may need a conversion"
grep -q "convert open_clip_pytorch_model.bin" "$W/list1" || fail "list: LAION may need a conversion"
grep -q "published SHA-256 is checked" "$W/list1" || fail "list: L/14's checksum"
[ "$(grep -c "not installed" "$W/out")" -eq 4 ] || fail "list: installed state"
# Where models go: the user's data directory, or the system's.
run 0 env XDG_DATA_HOME="$W/xdg" "$CLIPMOD" model list --user
grep -q "^Models directory: $W/xdg/clipmod/models$" "$W/out" || fail "--user: $(head -1 "$W/out")"
run 0 env -u XDG_DATA_HOME HOME="$W/home" "$CLIPMOD" model list --user
grep -q "^Models directory: $W/home/.local/share/clipmod/models$" "$W/out" || fail "~/.local/share"
# The system directory is where clipmodd and the milter look: $(pkgdatadir)/models.
prefix=$(sed -n 's/^prefix = //p' "$top_builddir/Makefile")
datadir=$(sed -n 's/^datarootdir = //p' "$top_builddir/Makefile" | sed "s|\${prefix}|$prefix|")
run 0 "$CLIPMOD" model list --system
grep -q "^Models directory: $datadir/clipmod/models$" "$W/out" ||
    fail "--system must be the daemons' directory $datadir/clipmod/models: $(head -1 "$W/out")"
run 1 "$CLIPMOD" model path --models-dir "$MODELS" clip-vit-large-patch14
[ "$(cat "$W/out")" = "$MODELS/openai/clip-vit-large-patch14" ] || fail "path: $(cat "$W/out")"

need_reference
have_bpe || skip "$CLIPMOD_BPE_GZ is absent: the test checkpoint needs the merges"
ckpt=$(checkpoint tiny-scan --shape tiny --layout hf --dtype f32 --act quick_gelu --seed 5 \
    --merges "$CLIPMOD_BPE_GZ") || fail "reference checkpoint"

# ---------------------------------------------------------------------------
# The mirror. Revision directories decide the server's behaviour for the weights:
# "interrupt" cuts the first download in the middle, "norange" ignores Range.
put() { # put REPO REVISION FILE SOURCE
    mkdir -p "$W/hub/$1/resolve/$2"
    cp "$4" "$W/hub/$1/resolve/$2/$3"
}
for repo in test/tiny test/resume test/norange test/bad-sum test/no-weights; do
    put $repo main config.json "$ckpt/config.json"
    put $repo main merges.txt "$ckpt/merges.txt"
done
put test/tiny main model.safetensors "$ckpt/model.safetensors"
put test/resume interrupt-once model.safetensors "$ckpt/model.safetensors"
put test/norange norange model.safetensors "$ckpt/model.safetensors"
put test/bad-sum main model.safetensors "$ckpt/model.safetensors"
size=$(wc -c <"$ckpt/model.safetensors")
sum=$(sha256sum "$ckpt/model.safetensors" | cut -d' ' -f1)
bad=$(printf '%s' "$sum" | tr '0-9a-f' '1-9a-f0')
merges_size=$(wc -c <"$ckpt/merges.txt")
entry() { # entry REPO REVISION SHA
    cat <<EOF
    {"repo": "$1", "arch": "tiny", "about": "A random tiny CLIP for tests.",
     "files": [{"name": "config.json"},
               {"name": "merges.txt", "size": $merges_size},
               {"name": "model.safetensors", "revision": "$2", "size": $size, "sha256": "$3"},
               {"name": "preprocessor_config.json", "optional": true}]}
EOF
}
{
    echo '{"models": ['
    entry test/tiny main "$sum"
    echo ','
    entry test/resume interrupt-once "$sum"
    echo ','
    entry test/norange norange "$sum"
    echo ','
    entry test/bad-sum main "$bad"
    echo ','
    cat <<EOF
    {"repo": "test/no-weights", "arch": "tiny",
     "files": [{"name": "config.json"}, {"name": "merges.txt"},
               {"name": "model.safetensors", "convert_from": "pytorch_model.bin"}]}
EOF
    echo ']}'
} >"$W/catalog.json"
# The built-in B/32 fetches its weights from refs/pr/32 (refs%2Fpr%2F32 in the URL), and
# OpenAI's repositories' merges.txt must be 524,619 bytes: the real one, rebuilt from the gz.
"$PY" - "$CLIPMOD_BPE_GZ" "$W/merges-hf.txt" <<'EOF'
import gzip, sys
lines = gzip.open(sys.argv[1]).read().decode("utf-8").split("\n")
data = ("#version: 0.2\n" + "\n".join(lines[1:49152 - 256 - 2 + 1]) + "\n").encode("utf-8")
assert len(data) == 524619, len(data)
open(sys.argv[2], "wb").write(data)
EOF
put openai/clip-vit-base-patch32 main config.json "$ckpt/config.json"
put openai/clip-vit-base-patch32 main merges.txt "$W/merges-hf.txt"
put openai/clip-vit-base-patch32 refs/pr/32 model.safetensors "$ckpt/model.safetensors"
put openai/clip-vit-base-patch16 main config.json "$ckpt/config.json"
put openai/clip-vit-base-patch16 main merges.txt "$W/merges-hf.txt"

"$PY" "$top_srcdir/tests/http_server.py" --root "$W/hub" --log "$W/server.log" \
    --port-file "$W/port" 2>"$W/server.err" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
trap 'exit 99' HUP INT TERM
i=0
while [ ! -s "$W/port" ]; do
    i=$((i + 1))
    [ $i -le 100 ] || fail "the test server did not start: $(cat "$W/server.err")"
    sleep 0.1
done
HUB="http://127.0.0.1:$(cat "$W/port")"
CLIPMOD_HUB_URL="$HUB/" # a trailing slash is fine
CLIPMOD_MODEL_CATALOG="$W/catalog.json"
export CLIPMOD_HUB_URL CLIPMOD_MODEL_CATALOG
model() { "$CLIPMOD" model --models-dir "$MODELS" "$@"; }

# ---------------------------------------------------------------------------
# A plain install: every file checked, the optional one skipped, SHA256SUMS written.
run 0 model fetch test/tiny
grep -q "^installed test/tiny in $MODELS/test/tiny$" "$W/out" || fail "fetch: $(cat "$W/out")"
grep -q "model.safetensors: SHA-256 OK, size OK" "$W/err" || fail "fetch: no check: $(cat "$W/err")"
grep -q "preprocessor_config.json: not on the hub (optional, skipped)" "$W/err" ||
    fail "fetch: the optional file"
printf '\r' >"$W/cr"
grep -q "$(cat "$W/cr")" "$W/err" && fail "a progress bar was drawn on a pipe"
for f in config.json merges.txt model.safetensors; do
    cmp -s "$ckpt/$f" "$MODELS/test/tiny/$f" || fail "$f differs from the mirror's"
done
(cd "$MODELS/test/tiny" && sha256sum -c --quiet SHA256SUMS) || fail "SHA256SUMS"
[ ! -e "$MODELS/.partial/test--tiny" ] || fail "the staging directory was left behind"
run 0 model path tiny
[ "$(cat "$W/out")" = "$MODELS/test/tiny" ] || fail "path: $(cat "$W/out")"
run 0 model verify test/tiny
grep -q "model.safetensors: OK ($size bytes, published SHA-256)" "$W/out" || fail "verify: $(cat "$W/out")"
grep -q "^test/tiny: OK$" "$W/out" || fail "verify: $(cat "$W/out")"
# Installed means usable.
"$CLIPMOD" embed -m "$(model path test/tiny)" --text "a cat" >/dev/null || fail "the model does not load"
run 0 model fetch test/tiny
grep -q "already installed" "$W/out" || fail "a second fetch: $(cat "$W/out")"
# On a terminal (when script(1) can make one), a progress bar.
if command -v script >/dev/null 2>&1; then
    TERM=xterm script -qec "$CLIPMOD model --models-dir $MODELS fetch --force test/tiny" \
        /dev/null >"$W/tty" 2>&1 </dev/null || fail "fetch on a terminal: $(cat "$W/tty")"
    grep -q "model.safetensors *\[#*-*\] *[0-9.]*%" "$W/tty" || fail "no progress bar: $(cat -v "$W/tty")"
fi
run 0 model list
grep -A1 "^test/tiny  (" "$W/out" | grep -q "installed in $MODELS/test/tiny" || fail "list: installed"
echo "ok   fetch, verify, path and list of a model from the mirror"

# verify notices a changed file; --force reinstalls.
printf 'X' | dd of="$MODELS/test/tiny/config.json" bs=1 seek=3 conv=notrunc 2>/dev/null
run 1 model verify test/tiny
grep -q "config.json: CHANGED since it was installed" "$W/out" || fail "verify: $(cat "$W/out")"
grep -q "PROBLEMS FOUND" "$W/out" || fail "verify: no verdict"
run 0 model fetch --force test/tiny
run 0 model verify test/tiny
echo "ok   verify finds a changed file; fetch --force repairs it"

# ---------------------------------------------------------------------------
# Resume: the first download is cut in the middle; nothing is installed; the next
# fetch asks for the rest with a Range request and installs the checked whole.
run 2 model fetch test/resume
grep -q "was interrupted" "$W/err" || fail "no interruption reported: $(cat "$W/err")"
grep -q "Run the same command again to resume" "$W/err" || fail "no advice to resume"
[ ! -e "$MODELS/test/resume" ] || fail "a half-downloaded model was installed"
part="$MODELS/.partial/test--resume/model.safetensors.part"
[ -f "$part" ] || fail "the partial download was not kept"
half=$(wc -c <"$part")
[ "$half" -gt 0 ] && [ "$half" -lt "$size" ] || fail "the .part holds $half of $size bytes"
run 0 model list
grep -A1 "^test/resume  (" "$W/out" | grep -q "partial download" || fail "list: partial"
: >"$W/server.log"
run 0 model fetch test/resume
grep -q "resuming after $half bytes" "$W/err" || fail "resume not announced: $(cat "$W/err")"
grep -q "\"path\": \"/test/resume/resolve/interrupt-once/model.safetensors\", \"range\": \"bytes=$half-\"" \
    "$W/server.log" || fail "no Range request: $(cat "$W/server.log")"
# The small files finished in the first run are checked, not fetched again.
grep -q "resume/resolve/main/config.json" "$W/server.log" && fail "config.json was fetched twice"
cmp -s "$ckpt/model.safetensors" "$MODELS/test/resume/model.safetensors" || fail "resumed file differs"
echo "ok   an interrupted download resumes with Range: bytes=$half- and installs"

# A server that ignores Range: the .part is started over, not appended to.
mkdir -p "$MODELS/.partial/test--norange"
head -c 1000 /dev/urandom >"$MODELS/.partial/test--norange/model.safetensors.part"
run 0 model fetch test/norange
cmp -s "$ckpt/model.safetensors" "$MODELS/test/norange/model.safetensors" ||
    fail "a 200 answer to a Range request was appended"

# Checksum mismatch: refused, deleted, nothing installed, and the same again next time.
run 2 model fetch test/bad-sum
grep -q "SHA-256 mismatch: expected $bad, got $sum" "$W/err" || fail "mismatch: $(cat "$W/err")"
grep -q "nothing was installed" "$W/err" || fail "mismatch: what happened"
[ ! -e "$MODELS/test/bad-sum" ] || fail "a file with a wrong checksum was installed"
[ ! -e "$MODELS/.partial/test--bad-sum/model.safetensors.part" ] || fail "the bad file was kept"
run 2 model fetch test/bad-sum
echo "ok   a server ignoring Range, a checksum mismatch"

# ---------------------------------------------------------------------------
# A 404 on a required file; an unreachable hub: instructions for installing by hand.
run 2 model fetch test/no-weights
grep -q "model.safetensors is not on the hub at revision main" "$W/err" || fail "404: $(cat "$W/err")"
grep -q "HTTP 404" "$W/err" || fail "404: the status"
grep -q "pytorch_model.bin" "$W/err" || fail "404: the conversion advice"
[ ! -e "$MODELS/test/no-weights" ] || fail "an incomplete model was installed"
run 2 model fetch --base-url http://127.0.0.1:1 test/tiny --force
grep -q "cannot reach http://127.0.0.1:1" "$W/err" || fail "offline: $(cat "$W/err")"
grep -q "To install test/tiny by hand" "$W/err" || fail "offline: no instructions"
grep -q "^    http://127.0.0.1:1/test/tiny/resolve/main/model.safetensors  ($size bytes)  (SHA-256 $sum)$" \
    "$W/err" || fail "offline: the weights' URL, size and checksum: $(cat "$W/err")"
grep -q "preprocessor_config.json  (optional)" "$W/err" || fail "offline: the optional file"
grep -q "^    $MODELS/test/tiny/$" "$W/err" || fail "offline: where to put them"
grep -q "clipmod model verify test/tiny" "$W/err" || fail "offline: how to check them"
[ -f "$MODELS/test/tiny/model.safetensors" ] || fail "a failed --force fetch removed the model"
echo "ok   404 and offline errors say which files to place where"

# ---------------------------------------------------------------------------
# The built-in catalogue: B/32 from refs/pr/32; B/16 without weights on the mirror.
run 0 model fetch openai/clip-vit-base-patch32
grep -q "/openai/clip-vit-base-patch32/resolve/refs%2Fpr%2F32/model.safetensors" "$W/err" ||
    fail "B/32: not from refs/pr/32: $(cat "$W/err")"
grep -q "merges.txt: size OK" "$W/err" || fail "B/32: merges.txt's size is known"
run 2 model fetch openai/clip-vit-base-patch16
grep -q "model.safetensors is not on the hub at revision main" "$W/err" || fail "B/16: $(cat "$W/err")"
grep -q "save_file" "$W/err" && grep -q "pytorch_model.bin" "$W/err" || fail "B/16: conversion"
grep -q "$MODELS/openai/clip-vit-base-patch16/" "$W/err" || fail "B/16: where to put it"
echo "ok   built-in models: B/32 from refs/pr/32, B/16's conversion advice"

# ---------------------------------------------------------------------------
# The default model: MODELS/default, a relative link (what the daemons load).
run 2 model use test/resume-not-a-model
run 2 model use test/bad-sum
grep -q "not installed" "$W/err" || fail "use of a model not installed: $(cat "$W/err")"
[ ! -e "$MODELS/default" ] || fail "a failed use made a default"
run 2 model use test/tiny openai/clip-vit-base-patch32
run 0 model use tiny
[ "$(readlink "$MODELS/default")" = "test/tiny" ] || fail "use: $(ls -l "$MODELS")"
run 0 model list
grep -A1 "^test/tiny  (" "$W/out" | grep -q "installed in $MODELS/test/tiny (the default)$" ||
    fail "list must mark the default: $(cat "$W/out")"
grep -A1 "^openai/clip-vit-base-patch32  (" "$W/out" | grep -q "(the default)" &&
    fail "list marks two defaults"
# The default loads through the link, as clipmodd's default model path does.
"$CLIPMOD" embed -m "$MODELS/default" --text "a cat" >/dev/null || fail "the default does not load"
# fetch --default: an installed model is not downloaded again, the default moves.
run 0 model fetch --default openai/clip-vit-base-patch32
[ "$(readlink "$MODELS/default")" = "openai/clip-vit-base-patch32" ] || fail "fetch --default"
run 2 model fetch --default test/tiny openai/clip-vit-base-patch32
# A real directory named default is the operator's: never replaced.
mv "$MODELS/default" "$W/link" && mkdir "$MODELS/default"
run 2 model use tiny
[ -d "$MODELS/default" ] && [ ! -L "$MODELS/default" ] || fail "use replaced a directory"
rmdir "$MODELS/default" && mv "$W/link" "$MODELS/default"
run 0 model use test/tiny
echo "ok   model use, fetch --default and list's default mark"

# ---------------------------------------------------------------------------
# remove: the model, and any partial download of it.
run 0 model remove test/tiny test/bad-sum
[ ! -e "$MODELS/test/tiny" ] || fail "remove left the model"
[ ! -L "$MODELS/default" ] || fail "removing the default model must remove the default link"
[ ! -e "$MODELS/.partial/test--bad-sum" ] || fail "remove left the partial download"
run 1 model path test/tiny
run 1 model verify test/tiny
run 0 model remove test/tiny
grep -q "not installed" "$W/out" || fail "removing twice: $(cat "$W/out")"
echo "PASS"
