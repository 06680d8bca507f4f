#!/usr/bin/python3
"""Learn CLIP-style BPE merges from the demo model's training text.

  bpe.py --out merges.txt [--merges N] [--min-count K] [--check]

The merges are learned under exactly the rules the tokenizer applies
(shared/docs/clip-spec.md §4.1, tests/reference/tokenizer_ref.py, whose code is
imported, not copied): the same cleaning (ftfy-lite, html unescape, whitespace,
lower case), the same pre-tokenisation regex, UTF-8 bytes through bytes_to_unicode,
and "</w>" on the last symbol of each word. Starting from single symbols, the most
frequent adjacent pair (ties: the smaller pair) is merged, until N merges exist or
no pair occurs K times. A merge whose result is already a token is skipped, so every
vocabulary entry is unique.

The file is "#version: 0.2" and one "a b" line per merge; the vocabulary is then the
256 byte symbols, the same with "</w>", one token per merge, <|startoftext|> and
<|endoftext|>: 512 + N + 2 entries, which must equal the model's vocab_size.
"""
import argparse
import collections
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "reference"))
import tokenizer_ref  # noqa: E402

BYTE_ENCODER, _ = tokenizer_ref.bytes_to_unicode()


def words_of(text):
    """text -> list of symbol tuples, exactly as Tokenizer.encode sees them."""
    out = []
    for piece in tokenizer_ref.PATTERN.findall(tokenizer_ref.clean(text)):
        if piece in (tokenizer_ref.SOT, tokenizer_ref.EOT):
            continue
        chars = "".join(BYTE_ENCODER[b] for b in piece.encode("utf-8"))
        out.append(tuple(chars[:-1]) + (chars[-1] + "</w>",))
    return out


def learn(lines, n_merges, min_count=2):
    freq = collections.Counter()
    for line in lines:
        freq.update(words_of(line))
    words = [list(w) for w in freq]
    counts = [freq[w] for w in freq]
    pairs = collections.Counter()
    where = collections.defaultdict(set)
    for wi, w in enumerate(words):
        for p in zip(w, w[1:]):
            pairs[p] += counts[wi]
            where[p].add(wi)
    tokens = set(BYTE_ENCODER.values()) | {c + "</w>" for c in BYTE_ENCODER.values()}
    merges = []
    banned = set()
    while len(merges) < n_merges:
        best = None
        for p, c in pairs.items():
            if c <= 0 or p in banned:
                continue
            if best is None or c > best[1] or (c == best[1] and p < best[0]):
                best = (p, c)
        if best is None or best[1] < min_count:
            break
        (a, b), _ = best
        if a + b in tokens:  # would duplicate a vocabulary entry
            banned.add((a, b))
            continue
        tokens.add(a + b)
        merges.append((a, b))
        for wi in list(where[(a, b)]):
            w = words[wi]
            c = counts[wi]
            for p in zip(w, w[1:]):
                pairs[p] -= c
            out, i = [], 0
            while i < len(w):  # left-to-right, as the tokenizer merges
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            words[wi] = out
            for p in zip(out, out[1:]):
                pairs[p] += c
                where[p].add(wi)
        del pairs[(a, b)]
    return merges


def write(path, merges):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(f"{a} {b}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--merges", type=int, default=4096, help="at most this many merges")
    ap.add_argument("--min-count", type=int, default=2)
    ap.add_argument("--cache", help="glyph cache file (built when missing; default: none)")
    args = ap.parse_args()
    import data
    glyphs = data.Glyphs(args.cache)
    merges = learn(data.bpe_corpus(glyphs), args.merges, args.min_count)
    write(args.out, merges)
    tok = tokenizer_ref.Tokenizer(tokenizer_ref.load_merges(args.out))
    print(f"{args.out}: {len(merges)} merges, vocab_size {len(tok.encoder)} "
          f"(= 512 + {len(merges)} + 2)")


if __name__ == "__main__":
    main()
