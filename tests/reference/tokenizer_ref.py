#!/usr/bin/python3
"""Reference CLIP BPE tokenizer (OpenAI simple_tokenizer, spec §4.1), written from the spec.

  tokenizer_ref.py --merges PATH [--n-merges N] [--self-test]  < in.jsonl > out.jsonl

stdin: JSON Lines, each line one JSON string (blank lines are skipped).
stdout: one compact JSON object per input line: {"ids":[...],"truncated":bool},
ids include SOT and EOT, at most 77 of them (no padding).

One documented deviation from OpenAI: ftfy is unavailable, so ftfy.fix_text(t)
is replaced by "ftfy-lite" = unicodedata.normalize("NFC", t), then U+2018..U+201B
-> "'" and U+201C..U+201F -> '"'.  Everything else follows §4.1:
html.unescape twice, str.strip(), regex \\s+ -> " ", strip(), str.lower(), split with
the regex module (IGNORECASE), UTF-8 bytes through bytes_to_unicode, BPE.
--merges: a merges.txt (header line skipped; N defaults to all its lines) or
OpenAI's bpe_simple_vocab_16e6.txt.gz (N defaults to 48894).
Vocab: 256 byte chars, the same + "</w>", one per merge, SOT = 512+N, EOT = 513+N.
"""
import argparse
import gzip
import html
import json
import sys
import unicodedata

import regex

CONTEXT = 77
OPENAI_MERGES = 49152 - 256 - 2  # 48894
SOT, EOT = "<|startoftext|>", "<|endoftext|>"
PATTERN = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE)
QUOTES = {**{c: "'" for c in range(0x2018, 0x201C)}, **{c: '"' for c in range(0x201C, 0x2020)}}


def bytes_to_unicode():
    """byte -> printable unicode char (spec §4.2); returns the list in vocab order too."""
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs = list(bs)
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}, [chr(c) for c in cs]


def ftfy_lite(text):
    return unicodedata.normalize("NFC", text).translate(QUOTES)


def clean(text):
    text = html.unescape(html.unescape(ftfy_lite(text))).strip()
    return regex.sub(r"\s+", " ", text).strip().lower()


def load_merges(path, n=None):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        lines = f.read().decode("utf-8").split("\n")
    body = lines[1:]  # line 0 is a header in both the gz and merges.txt
    if n is None:
        n = OPENAI_MERGES if path.endswith(".gz") else len([l for l in body if l.strip()])
    if n > len(body) or any(len(l.split()) != 2 for l in body[:n]):
        raise SystemExit(f"{path}: cannot read {n} merge lines")
    return [tuple(l.split()) for l in body[:n]]


class Tokenizer:
    def __init__(self, merges):
        self.byte_encoder, chars = bytes_to_unicode()
        vocab = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges] + [SOT, EOT]
        self.encoder = {tok: i for i, tok in enumerate(vocab)}
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.sot_id, self.eot_id = self.encoder[SOT], self.encoder[EOT]
        self.cache = {}

    def bpe(self, token):
        """token (bytes_to_unicode chars) -> list of BPE symbols."""
        if token in self.cache:
            return self.cache[token]
        word = list(token[:-1]) + [token[-1] + "</w>"]
        while len(word) > 1:
            ranked = [(self.ranks[p], i) for i, p in enumerate(zip(word, word[1:])) if p in self.ranks]
            if not ranked:
                break
            first, second = word[min(ranked)[1]], word[min(ranked)[1] + 1]
            out, i = [], 0
            while i < len(word):  # merge every left-to-right occurrence of (first, second)
                if i + 1 < len(word) and word[i] == first and word[i + 1] == second:
                    out.append(first + second)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            word = out
        self.cache[token] = word
        return word

    def encode(self, text):
        """text -> ids without SOT/EOT."""
        ids = []
        for piece in PATTERN.findall(clean(text)):
            if piece in (SOT, EOT):
                ids.append(self.encoder[piece])
                continue
            chars = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[s] for s in self.bpe(chars))
        return ids

    def tokenize(self, text, context=CONTEXT):
        """text -> (ids with SOT/EOT, truncated); truncation keeps the first
        `context` ids and sets the last one to EOT."""
        ids = [self.sot_id] + self.encode(text) + [self.eot_id]
        if len(ids) > context:
            return ids[:context - 1] + [self.eot_id], True
        return ids, False


# spec §4.3 (with full OpenAI merges); the curly-quote row follows ftfy-lite
SPEC_EXAMPLES = [
    ("a photo of a cat", [49406, 320, 1125, 539, 320, 2368, 49407]),
    ("a photo of a dog", [49406, 320, 1125, 539, 320, 1929, 49407]),
    ("Hello World!", [49406, 3306, 1002, 256, 49407]),
    ("Hello, world!", [49406, 3306, 267, 1002, 256, 49407]),
    ("don't stop 42 times", [49406, 847, 713, 1691, 275, 273, 1661, 49407]),
    ("hello-world, 3.14 (test)", [49406, 3306, 268, 1002, 267, 274, 269, 272, 275, 263, 1628, 264, 49407]),
    ("caf\u00e9 \u00fcber na\u00efve", [49406, 15304, 6522, 1516, 1097, 35689, 563, 49407]),
    ("a diagram", [49406, 320, 22697, 49407]),
    ("", [49406, 49407]),
    ("don\u2019t stop", [49406, 847, 713, 1691, 49407]),
    ("\u65e5\u672c\u306e\u77f3\u706f\u7c60",
     [49406, 39121, 44353, 21575, 163, 253, 111, 163, 223, 107, 163, 109, 510, 49407]),
]


def self_test(tok):
    bad = 0
    for text, want in SPEC_EXAMPLES:
        got, _ = tok.tokenize(text)
        ok = got == want
        bad += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {json.dumps(text, ensure_ascii=False)} -> {got}", file=sys.stderr)
    words = " ".join(["word"] * 200)
    got, trunc = tok.tokenize(words)
    ok = len(got) == 77 and trunc and got[-1] == tok.eot_id
    bad += not ok
    print(f"{'ok  ' if ok else 'FAIL'} 200 words -> {len(got)} ids, truncated={trunc}", file=sys.stderr)
    return bad


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--merges", required=True, help="merges.txt or bpe_simple_vocab_16e6.txt.gz")
    ap.add_argument("--n-merges", type=int, help="use only the first N merges")
    ap.add_argument("--self-test", action="store_true",
                    help="check the spec §4.3 examples (needs the full 48894 merges) and exit")
    args = ap.parse_args()
    tok = Tokenizer(load_merges(args.merges, args.n_merges))
    if args.self_test:
        sys.exit(1 if self_test(tok) else 0)
    out = sys.stdout.buffer
    for line in sys.stdin.buffer.read().split(b"\n"):  # not splitlines(): U+2028 is data
        if not line.strip():
            continue
        ids, trunc = tok.tokenize(json.loads(line.decode("utf-8")))
        out.write(json.dumps({"ids": ids, "truncated": trunc}, separators=(",", ":")).encode() + b"\n")


if __name__ == "__main__":
    main()
