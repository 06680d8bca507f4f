#!/usr/bin/python3
"""Deterministic tokenizer test corpus: writes JSON Lines (one JSON string per line) to stdout.

  corpus.py [--seed N] [--random N] [--ensure-ascii]

Handwritten edge cases plus seeded random combinations: English prompts,
punctuation runs, digits, contractions (incl. uppercase and 'ſ), composed and
decomposed accents, curly quotes, HTML entities (incl. double escapes), emoji
(ZWJ, skin tones, flags, keycaps, tags), CJK / Hangul / Arabic / Hebrew /
Cyrillic / Greek / Thai / Devanagari, Turkish İ, German ß, unusual whitespace
and control characters, literal special tokens, empty and very long strings.
Every character is assigned in Unicode 14 (Python 3.11's unicodedata); U+0000
and surrogates are never used.  Output is UTF-8 (json ensure_ascii=False
unless --ensure-ascii); duplicates are removed, order is stable.
"""
import argparse
import json
import random
import sys
import unicodedata

WORDS = ("photo picture image drawing painting sketch render cat dog bird horse car truck "
         "bicycle person man woman child tree flower house city beach mountain river night "
         "sunset forest street table chair phone computer book pizza cake coffee rocket "
         "astronaut motorcycle diagram logo text sign weapon blood crowd").split()
ADJS = ("red green blue small large old new happy sad dark bright blurry cute scary "
        "beautiful ugly nude violent explicit safe wooden shiny").split()
TEMPLATES = ["a photo of a {a} {n}", "a {a} {n}", "{n}", "an image of {n}s", "A Picture Of The {n}",
             "a close-up photo of a {n} next to a {n2}", "a {n} on a {n2}, {a} and {a2}",
             "THIS IS A {N}", "{a} {n}s in the {n2}", "a painting of a {a} {n} by an artist",
             "  a   {n}   with   spaces  ", "a {n}.", "is this a {n}?", "a {n}! a {n2}!!"]
PUNCT = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + list("¡¿«»…–—·•§¶†‡‰′″‹›€£¥©®™°±×÷")
SCRIPTS = {
    "cjk": "日本の石灯籠東京大学中文字符漢字简体繁體猫犬写真",
    "kana": "ひらがなカタカナアイウエオがぎぐパピプ",
    "hangul": "한국어고양이사진서울",
    "arabic": "مرحبا بالعالم صورة قطة",
    "hebrew": "שלום עולם תמונה של חתול",
    "cyrillic": "Привет мир ФОТО кошки ёЁ",
    "greek": "Γειά σου κόσμε ΟΔΟΣ ΣΟΦΟΣ Σ ς σ",
    "thai": "สวัสดีชาวโลก",
    "devanagari": "नमस्ते दुनिया बिल्ली",
}
EMOJI = ["😀", "😂", "🐱", "🐶", "🔥", "❤️", "❤", "👍", "👍🏻", "👍🏽", "👍🏿", "👨‍👩‍👧‍👦",
         "🧑🏿‍🚀", "👩‍❤️‍💋‍👨", "🏳️‍🌈", "🏳️‍⚧️", "🇺🇸", "🇯🇵", "🇩🇪", "🇫🇷🇬🇧", "1️⃣", "#️⃣",
         "🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f", "🫠", "🥲", "🧠", "☺", "✨"]
WHITESPACE = ["\t", "\n", "\r\n", "\r", "\v", "\f", "\u00a0", "\u3000", "\u2028", "\u2029",
              "\u001c", "\u001d", "\u001e", "\u001f", "\u0085", "\u1680", "\u2000", "\u2007",
              "\u200a", "\u202f", "\u205f", "\u200b", "\ufeff", "\u180e"]
CONTROLS = [chr(c) for c in list(range(1, 9)) + list(range(0x0e, 0x1c)) + [0x7f]
            + list(range(0x80, 0xa0))] + ["\u00ad", "\u200d", "\u200e", "\u200f", "\u202e", "\u2066"]
ENTITIES = ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;", "&#x27;", "&nbsp;", "&ampx", "&amp;amp;",
            "&amp;lt;", "&#8217;", "&#x2019;", "&#x1F600;", "&#0;", "&#128;", "&#150;", "&#xD800;",
            "&#1114112;", "&notit;", "&copy", "&frac12;", "&NotEqualTilde;", "&unknown;", "&#;",
            "&#x;", "&", "&&", "&amp", "&eacute;", "&Eacute;", "&#233;", "&#x0065;&#x0301;", "&#65",
            "&#x41", "&apos;", "&lsquo;", "&rdquo;", "&amp;#39;", "&#x3000;", "&#10;", "&#9;"]
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ve", "'M", "'LL",
                "'D", "'ſ", "’s", "‘t", "'x", "''", "'"]


def handwritten():
    out = [
        "", " ", "  ", "\t", "\n", " \t\n ", "\u3000", "\u00a0\u00a0", "\u2028", "\u001c", "\u0085",
        "a photo of a cat", "a photo of a dog", "Hello World!", "Hello, world!", "don't stop 42 times",
        "hello-world, 3.14 (test)", "café über naïve", "a diagram", "don’t stop", "don‘t stop",
        "“quoted”", "„low“", "‟reversed‟", "‛x‚", "日本の石灯籠", "İstanbul", "ISTANBUL", "ıi̇İI",
        "Straße STRASSE ẞ", "ΟΔΟΣ", "Σ", "ΑΣ.", "ΑΣ'Σ", "σς", "it'ſ", "IT'S", "I'M", "WE'LL",
        "Kelvin \u212a", "Ohm \u2126", "Angstrom \u212b", "ﬁne ﬂow", "ＡＢＣ ａｂｃ １２３", "½ ² Ⅻ ٣ ૩",
        "e\u0301", "cafe\u0301", "a\u0323\u0302", "a\u0302\u0323", "q\u0303", "\u0301", "\u1100\u1161\u11a8",
        "<|startoftext|>", "<|endoftext|>", "<|ENDOFTEXT|>", "a<|endoftext|>b", "<|endoftext|> cat",
        "<|startoftext|><|endoftext|>", "<|endoftext", "<|start of text|>", "<|endoftext|>" * 3,
        "&amp;", "&amp;amp;", "&lt;b&gt;bold&lt;/b&gt;", "AT&T", "Tom &amp; Jerry", "&ampx",
        "&#8217;s", "it&#39;s", "it&#x27;s", "a&nbsp;b", "\ue000 private", "\U0010fffd",
        "a\u200db", "a\u00adb", "\x01\x02\x7f", "\x1b[31mred\x1b[0m", "tab\tseparated\tvalues",
        "line1\nline2\r\nline3", "    leading", "trailing    ", "\u001ccat\u001f", "x\u001cy",
        "a  \u2028  b", "...", "!!!???", "---", "@#$%^&*()", "~~~~~~~~", "'''", "''s", "'s's",
        "1234567890", "3.14159", "1,000,000", "2024-01-31", "+1 (555) 123-4567", "0x1F",
        "😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇺🇸🇯🇵", "1️⃣", "🫠", "cat🐱dog🐶",
        "ǅ ǆ Ǆ", "ΐ ΰ", "ﬀ", "ŉ", "ǰ", "İi", "Ὀδυσσεύς", "ᾼ", "ß", "ẞ",
    ]
    return out


def random_strings(rng, n):
    out = []
    for i in range(n):
        kind = i % 13
        if kind == 0:
            t = rng.choice(TEMPLATES)
            n1, n2 = rng.choice(WORDS), rng.choice(WORDS)
            s = t.format(a=rng.choice(ADJS), a2=rng.choice(ADJS), n=n1, n2=n2, N=n1.upper())
        elif kind == 1:
            s = "".join(rng.choice(PUNCT) for _ in range(rng.randint(1, 12)))
            s = f"{rng.choice(WORDS)}{s}{rng.choice(WORDS)}" if rng.random() < 0.5 else s
        elif kind == 2:
            s = " ".join(str(rng.choice([rng.randint(0, 99), rng.randint(0, 10**9), rng.random() * 1000,
                                         -rng.randint(0, 500)])) for _ in range(rng.randint(1, 4)))
        elif kind == 3:
            s = f"{rng.choice(WORDS)}{rng.choice(CONTRACTIONS)} {rng.choice(WORDS)}"
            s = s.upper() if rng.random() < 0.3 else s
        elif kind == 4:
            w = rng.choice(["café", "naïve", "über", "résumé", "São Paulo", "Ångström", "crème brûlée",
                            "Đặng Việt", "Łódź", "Ærøskøbing", "piñata", "Zürich"])
            s = unicodedata.normalize(rng.choice(["NFC", "NFD", "NFKD"]), w)
        elif kind == 5:
            q = rng.choice("\u2018\u2019\u201a\u201b\u201c\u201d\u201e\u201f'\"")
            s = f"{q}{rng.choice(WORDS)}{q} {rng.choice(WORDS)}{rng.choice(CONTRACTIONS)}"
        elif kind == 6:
            s = rng.choice(WORDS) + rng.choice(ENTITIES) + rng.choice(["", " ", rng.choice(WORDS)])
        elif kind == 7:
            s = "".join(rng.choice(EMOJI + [" ", rng.choice(WORDS)]) for _ in range(rng.randint(1, 5)))
        elif kind == 8:
            text = rng.choice(list(SCRIPTS.values()))
            a = rng.randrange(len(text))
            s = text[a:a + rng.randint(1, 12)]
        elif kind == 9:
            s = rng.choice(WHITESPACE).join(rng.choice(WORDS) for _ in range(rng.randint(1, 4)))
            s = rng.choice(WHITESPACE) + s + rng.choice(WHITESPACE) if rng.random() < 0.5 else s
        elif kind == 10:
            s = rng.choice(CONTROLS).join([rng.choice(WORDS), rng.choice(WORDS)])
        elif kind == 11:
            s = rng.choice(["<|startoftext|>", "<|endoftext|>"]).join(
                [rng.choice(WORDS), rng.choice(["", " ", rng.choice(WORDS)])])
        else:  # mixed soup of everything
            pool = (WORDS + PUNCT + EMOJI + WHITESPACE + CONTROLS + ENTITIES + CONTRACTIONS
                    + list("".join(SCRIPTS.values())))
            s = "".join(rng.choice(pool) for _ in range(rng.randint(1, 20)))
        out.append(s)
    return out


def long_strings(rng):
    letters = "abcdefghijklmnopqrstuvwxyz"
    return [
        " ".join(rng.choice(WORDS) for _ in range(200)),
        " ".join(rng.choice(WORDS + ADJS) for _ in range(300)),
        ", ".join(rng.choice(WORDS) for _ in range(250)) + "!",
        " ".join(rng.choice(WORDS) for _ in range(74)),  # about the truncation edge
        " ".join(["cat"] * 75), " ".join(["cat"] * 76), " ".join(["cat"] * 77),
        "".join(rng.choice(letters) for _ in range(5000)),  # one 5,000-character word
        "a" * 1200, "!" * 1500, "7" * 1100,
        "".join(rng.choice(EMOJI) for _ in range(300)),
        " ".join(SCRIPTS.values()) * 8,
        "&amp;" * 250, " \t\u3000" * 400 + "end",
    ]


def check(s):
    for c in s:
        cat = unicodedata.category(c)
        if c == "\x00" or cat in ("Cn", "Cs"):
            raise SystemExit(f"corpus: disallowed character U+{ord(c):04X} in {s!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--random", type=int, default=3000, help="number of random strings")
    ap.add_argument("--ensure-ascii", action="store_true", help="escape non-ASCII as \\uXXXX")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    seen, out = set(), []
    for s in handwritten() + long_strings(rng) + random_strings(rng, args.random):
        check(s)
        if s not in seen:
            seen.add(s)
            out.append(s)
    w = sys.stdout.buffer
    for s in out:
        w.write(json.dumps(s, ensure_ascii=args.ensure_ascii).encode("utf-8") + b"\n")


if __name__ == "__main__":
    main()
