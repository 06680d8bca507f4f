#!/bin/sh
# tokenizer_corpus.sh - the C tokenizer against tests/reference/tokenizer_ref.py.
#
# Two corpora go through both tokenizers (OpenAI's merges) and must give identical
# ids and truncation flags, line for line:
#  1. tests/reference/corpus.py: handwritten edge cases and seeded random prompts.
#  2. A sweep of every assigned code point (Unicode 15, as Python's `regex` knows
#     it, plus all of Python's unicodedata), each in one line of contexts that show
#     its split class, lowercase, NFC behaviour and final-sigma role. This is what
#     keeps tokenizer.c's hand-derived Unicode rules honest when Debian updates
#     Python, `regex` or utf8proc.
# Prints the number of lines compared and the first mismatches. Exit 77 (SKIP)
# without the merges or Python's `regex` module.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

"$REF_PYTHON" -c 'import regex' 2>/dev/null ||
    skip "$REF_PYTHON cannot import regex (apt-get install python3-regex)"
have_bpe || skip "OpenAI merges not found at $CLIPMOD_BPE_GZ (set CLIPMOD_BPE_GZ)"
TOOL="$top_builddir/tests/tools/tokenize_jsonl"
[ -x "$TOOL" ] || fail "$TOOL is not built"

work="$CLIPMOD_WORK/tokenizer"
mkdir -p "$work"

"$REF_PYTHON" "$REF/corpus.py" >"$work/corpus.jsonl" || fail "corpus.py"

"$REF_PYTHON" - >"$work/sweep.jsonl" <<'PY' || fail "code point sweep"
import json, sys, unicodedata
import regex
unassigned = regex.compile(r"\p{Cn}")
out = []
for c in range(0x110000):
    if 0xD800 <= c <= 0xDFFF or c >= 0xF0000:  # surrogates, supplementary private use
        continue
    ch = chr(c)
    if unicodedata.category(ch) == "Cn" and unassigned.match(ch):
        continue
    out.append(json.dumps(f"A\u03a3{ch}B A{ch}\u03a3 {ch}\u03a3 e{ch}\u0301 {ch}{ch}1{ch}'s{ch}",
                          ensure_ascii=False))
sys.stdout.write("\n".join(out) + "\n")
PY

status=0
for name in corpus sweep; do
    in="$work/$name.jsonl"
    "$REF_PYTHON" "$REF/tokenizer_ref.py" --merges "$CLIPMOD_BPE_GZ" <"$in" >"$work/$name.ref" ||
        fail "tokenizer_ref.py on $name"
    "$TOOL" --merges "$CLIPMOD_BPE_GZ" <"$in" >"$work/$name.ours" || fail "tokenize_jsonl on $name"
    "$REF_PYTHON" - "$name" "$in" "$work/$name.ref" "$work/$name.ours" <<'PY' || status=1
import json, sys
name, texts, ref, ours = sys.argv[1:]
def load(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(l) for l in f if l.strip()]
texts, ref, ours = load(texts), load(ref), load(ours)
if not len(texts) == len(ref) == len(ours):
    print(f"FAIL {name}: {len(texts)} texts, {len(ref)} reference lines, {len(ours)} ours")
    sys.exit(1)
bad = [i for i in range(len(texts)) if ref[i] != ours[i]]
print(f"{name}: {len(texts) - len(bad)} of {len(texts)} identical")
for i in bad[:5]:
    print(f"  line {i + 1}: {ascii(texts[i])[:160]}\n    reference {ref[i]}\n    ours      {ours[i]}")
sys.exit(1 if bad else 0)
PY
done
exit $status
