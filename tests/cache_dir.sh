#!/bin/sh
# cache_dir.sh - the prompt cache cannot be used to write through someone's symlink.
#
# The cache's temporary file was opened with fopen("wb") under a predictable name
# (FILE.emb.PID.tmp), following a symlink planted there; and any directory was used.
# Checked here:
#  - a new cache directory (and the parents clipmod creates) is mode 0700, its file 0600;
#  - a symlink planted under the old temporary name for the exact PID of the
#    process (sh -c 'ln -s ...; exec clipmod') is not followed: its target keeps
#    its content, and the cache file is a regular file;
#  - a symlink planted under the cache file's own name is neither read nor followed;
#  - a cache directory that is a symlink, that others may write to, or (as root)
#    that belongs to another user is not used: nothing is written in it, the
#    verdict is still computed, and the compile warns.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
need_reference
have_bpe || skip "$CLIPMOD_BPE_GZ is absent: prompts cannot be tokenized"
model=$(checkpoint tiny-cli --shape tiny --layout hf --dtype f32 --act quick_gelu --seed 5 \
        --merges "$CLIPMOD_BPE_GZ") || fail "reference checkpoint"
W="$CLIPMOD_WORK/cache-dir"
rm -rf "$W"
mkdir -p "$W"
W=$(cd "$W" && pwd)
policy="$W/policy.yaml"
write_policy "$policy" 0.5 flag
victim="$W/victim.txt"

# compile DIR: compile the policy against cache DIR; output (and warnings) in $W/out, $W/err.
compile() {
    run 0 "$CLIPMOD" policy check -m "$model" --cache-dir "$1" "$policy"
}
mode_of() { stat -c %a "$1"; }
reset_victim() { echo "precious data" > "$victim"; }
victim_intact() { [ "$(cat "$victim")" = "precious data" ]; }

# 1. Modes of what clipmod creates.
compile "$W/new/parent/cache"
file=$(ls "$W"/new/parent/cache/*.emb) || fail "no cache file written"
name=$(basename "$file")
for d in "$W/new" "$W/new/parent" "$W/new/parent/cache"; do
    [ "$(mode_of "$d")" = 700 ] || fail "$d is mode $(mode_of "$d"), not 700"
done
[ "$(mode_of "$file")" = 600 ] || fail "$file is mode $(mode_of "$file"), not 600"
echo "ok   cache directories created 0700, the file 0600"

# 2. A symlink planted under the temporary name the old code used, for this very PID.
cache="$W/new/parent/cache"
reset_victim
sed -i 's/a kitten sleeping/a kitten sleeping on a sofa/' "$policy" # one new prompt: a save
set +e
sh -c 'ln -s "$1" "$2/$3.$$.tmp" && exec "$4" policy check -m "$5" --cache-dir "$2" "$6"' \
    sh "$victim" "$cache" "$name" "$CLIPMOD" "$model" "$policy" > "$W/out" 2> "$W/err"
rc=$?
set -e
[ $rc -eq 0 ] || fail "policy check exit $rc: $(cat "$W/err")"
victim_intact || fail "the cache wrote through a symlink planted at its temporary name: $victim now holds $(wc -c < "$victim") bytes"
[ -f "$cache/$name" ] && [ ! -L "$cache/$name" ] || fail "$cache/$name is not a regular file after the save"
echo "ok   a symlink at the temporary name is not followed (target intact)"

# 3. A symlink planted under the cache file's own name.
rm -f "$cache/$name" "$cache"/*.tmp
ln -s "$victim" "$cache/$name"
reset_victim
compile "$cache"
victim_intact || fail "the cache wrote through a symlink planted at its own name"
[ -f "$cache/$name" ] && [ ! -L "$cache/$name" ] || fail "the planted symlink $cache/$name was kept"
grep -q "warning: prompt cache: .*symbolic link" "$W/out" "$W/err" || fail "no warning about the planted symlink: $(cat "$W/err")"
echo "ok   a symlink at the cache file's name is replaced, not followed"

# 4. Directories that must not be used. refused DIR WHAT: compile, expect a warning
# and nothing written in DIR.
refused() {
    compile "$1"
    if ls "$2"/*.emb >/dev/null 2>&1; then fail "$3: a cache file was written in $2"; fi
    grep -q "warning: prompt cache: .*not used" "$W/out" "$W/err" || fail "$3: no warning ($(cat "$W/err"))"
    echo "ok   $3: not used, with a warning: $(grep -h 'warning: prompt cache' "$W/out" "$W/err" | head -n 1)"
}
mkdir -p "$W/real"
chmod 700 "$W/real"
ln -s "$W/real" "$W/link"
refused "$W/link" "$W/real" "a cache directory that is a symlink"
mkdir -p "$W/open"
chmod 777 "$W/open"
refused "$W/open" "$W/open" "a cache directory others may write to"
if [ "$(id -u)" -eq 0 ] && id nobody >/dev/null 2>&1; then
    mkdir -p "$W/theirs"
    chmod 755 "$W/theirs"
    chown nobody "$W/theirs"
    refused "$W/theirs" "$W/theirs" "a cache directory of another user"
else
    echo "note: not root; the other user's directory case is skipped"
fi
