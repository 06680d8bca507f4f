#!/bin/sh
# prompt_cache.sh - prompt embeddings are computed once per model and text.
#
# Compiles a policy three times against one cache directory: the first run
# computes every template expansion, the second computes none, and after one
# prompt is edited only that prompt's expansions are computed. The embeddings
# read back must give the same scores as freshly computed ones.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
need_reference
have_bpe || skip "$CLIPMOD_BPE_GZ is absent: prompts cannot be tokenized"
model=$(checkpoint tiny-cli --shape tiny --layout hf --dtype f32 --act quick_gelu --seed 5 \
        --merges "$CLIPMOD_BPE_GZ") || fail "reference checkpoint"
photos=$(photos_dir) || fail "no sample photos"
cache="$CLIPMOD_WORK/cache-test"
policy="$CLIPMOD_WORK/cache-policy.yaml"
rm -rf "$cache"
cp "$top_srcdir/policies/default.yaml" "$policy"

counts() {
    "$CLIPMOD" policy check --json -m "$model" --cache-dir "$cache" "$policy" |
        "$REF_PYTHON" -c 'import json, sys
r = json.loads(sys.stdin.readline())["policy"]
c = r["prompt_cache"]
print(c["cached"], c["computed"], len(r["templates"]))'
}
set -- $(counts)
first_cached=$1 first_computed=$2 templates=$3
set -- $(counts)
second_cached=$1 second_computed=$2
echo "first compile: $first_cached cached, $first_computed computed"
echo "second compile: $second_cached cached, $second_computed computed"
[ "$first_cached" -eq 0 ] && [ "$first_computed" -gt 100 ] || fail "the first compile must compute everything"
[ "$second_computed" -eq 0 ] && [ "$second_cached" -eq "$first_computed" ] || fail "the second compile must read everything back"

# Edit one prompt: only its template expansions are new.
sed -i 's/a handgun/a revolver on a table/' "$policy"
grep -q "a revolver on a table" "$policy" || fail "the edit did not apply"
set -- $(counts)
echo "after editing one prompt: $1 cached, $2 computed ($templates templates)"
[ "$2" -eq "$templates" ] || fail "one edited prompt must cost $templates embeddings, not $2"

# Cached and fresh embeddings score identically.
# Exit status 1 (flagged) is expected with this random model; only the JSON matters.
a=$("$CLIPMOD" scan -q --json -m "$model" -p "$policy" --cache-dir "$cache" "$photos/coffee.png") || :
b=$("$CLIPMOD" scan -q --json -m "$model" -p "$policy" --no-cache "$photos/coffee.png") || :
strip() { printf '%s' "$1" | sed 's/"elapsed_ms":[0-9.e-]*//'; }
[ "$(strip "$a")" = "$(strip "$b")" ] || fail "cached and fresh embeddings score differently"
echo "ok   cached and freshly computed embeddings give the same verdict"
