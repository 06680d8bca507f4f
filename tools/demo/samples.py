#!/usr/bin/python3
"""Render the sample images in samples/ (for the README's quick start).

  samples.py OUT_DIR

The samples are chosen by a rule, not by what the demo model gets right:
  - one per demo category: the category's first emoji in data.CATEGORIES (the
    moderation emoji the evaluation counts as positives), in category order;
  - three clean ones: emoji held out of the demo model's training (data.py's
    held-out groups, skin-tone variants left out), drawn with random.Random(16)
    from their CLDR names sorted; so the model sees them for the first time.
Each is one Noto Color Emoji glyph (SIL OFL 1.1) drawn from the font at its native
size, 80% of a 128x128 canvas, on the backgrounds below in turn (white, a solid
colour, stripes, checks, a gradient). Deterministic: the same font, CLDR and script
give the same files; samples/README.md lists what each shows and the demo verdict.
"""
import argparse
import os
import random
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFont

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import data  # noqa: E402

SIZE = 128
CLEAN_SAMPLES = 3
CLEAN_SEED = 16
BACKGROUNDS = ["white", ("solid", (250, 236, 200)),
               ("stripes", (230, 240, 250), (200, 220, 245)),
               ("checks", (255, 255, 255), (240, 200, 200)),
               ("gradient", (190, 220, 255), (255, 255, 255))]


def file_name(name):
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-") + ".png"


def choose(glyphs):
    """[(CLDR name, category or None)] by the rule in the module's docstring."""
    chosen = [(names[0], cat) for cat, names in data.CATEGORIES.items()]
    held = sorted(glyphs.names[glyphs.groups[g][0]] for g in glyphs.heldout_groups
                  if len(glyphs.groups[g]) == 1 or
                  not any(ord(c) in data.SKIN_TONES for c in glyphs.cps[glyphs.groups[g][0]]))
    chosen += [(n, None) for n in random.Random(CLEAN_SEED).sample(held, CLEAN_SAMPLES)]
    return chosen


def background(spec):
    if spec == "white":
        return Image.new("RGBA", (SIZE, SIZE), (255, 255, 255, 255))
    kind = spec[0]
    if kind == "solid":
        return Image.new("RGBA", (SIZE, SIZE), spec[1] + (255,))
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    a, b = np.array(spec[1]), np.array(spec[2])
    if kind == "stripes":
        m = ((xx + yy) // 12) % 2 == 0
        img = np.where(m[..., None], a, b)
    elif kind == "checks":
        m = ((xx // 16 + yy // 16) % 2) == 0
        img = np.where(m[..., None], a, b)
    else:  # vertical gradient
        t = (yy / (SIZE - 1))[..., None]
        img = a * (1 - t) + b * t
    return Image.fromarray(img.astype(np.uint8), "RGB").convert("RGBA")


def glyph(font, cldr_by_name, name):
    cp = cldr_by_name[name]
    for seq in (cp, cp[0] + "\ufe0f" + cp[1:]):
        im = Image.new("RGBA", (160, 160), (0, 0, 0, 0))
        ImageDraw.Draw(im).text((8, 8), seq, font=font, embedded_color=True)
        if im.getbbox():
            return im.crop(im.getbbox())
    raise SystemExit(f"samples: the font has no glyph for {name!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--cache", help="glyph cache (default: none, the font is read again)")
    args = ap.parse_args()
    font = ImageFont.truetype(data.FONT, 109, layout_engine=ImageFont.Layout.RAQM)
    by_name = {e["name"]: cp for cp, e in data.load_cldr().items()}
    os.makedirs(args.out_dir, exist_ok=True)
    for k, (name, cat) in enumerate(choose(data.Glyphs(args.cache))):
        canvas = background(BACKGROUNDS[k % len(BACKGROUNDS)])
        g = glyph(font, by_name, name)
        s = 0.8 * SIZE / max(g.size)
        g = g.resize((round(g.size[0] * s), round(g.size[1] * s)), Image.LANCZOS)
        canvas.alpha_composite(g, (round(SIZE / 2 - g.size[0] / 2),
                                   round(SIZE / 2 - g.size[1] / 2)))
        out = os.path.join(args.out_dir, file_name(name))
        canvas.convert("RGB").save(out, optimize=True)
        print(f"{out}\t{name}\t{cat or 'clean'}")


if __name__ == "__main__":
    main()
