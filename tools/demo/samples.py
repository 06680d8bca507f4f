#!/usr/bin/python3
"""Render the sample images in samples/ (for the README's quick start).

  samples.py OUT_DIR

Small scenes of Noto Color Emoji glyphs (SIL OFL 1.1) drawn straight from the font at
its native size, composed on plain or patterned backgrounds, 128x128 PNG. The clean
scenes use emoji held out of the demo model's training (data.py), so the model sees
them for the first time; the flagged ones use category emoji. Deterministic: the
same font and script give the same files.
"""
import argparse
import os
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFont

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import data  # noqa: E402

SIZE = 128

# file name -> (background, [(CLDR name, size as a fraction of the canvas, centre x,
# centre y as fractions, rotation in degrees)])
SCENES = {
    "cocktail.png": ("white", [("cocktail glass", 0.8, 0.5, 0.5, 0)]),
    "water-pistol.png": (("stripes", (230, 240, 250), (200, 220, 245)),
                         [("water pistol", 0.8, 0.5, 0.52, -10)]),
    "bomb.png": (("solid", (250, 236, 200)), [("bomb", 0.75, 0.5, 0.5, 8)]),
    "pills.png": ("white", [("pill", 0.5, 0.3, 0.5, 0), ("syringe", 0.5, 0.72, 0.5, 0)]),
    "slot-machine.png": (("solid", (220, 205, 240)), [("slot machine", 0.8, 0.5, 0.5, 0)]),
    "sandwich.png": (("checks", (255, 255, 255), (240, 200, 200)),
                     [("sandwich", 0.78, 0.5, 0.5, 0)]),
    "teddy-bear.png": ("white", [("teddy bear", 0.8, 0.5, 0.5, 5)]),
    "bullet-train.png": (("gradient", (190, 220, 255), (255, 255, 255)),
                         [("bullet train", 0.85, 0.5, 0.5, 0)]),
}


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
    args = ap.parse_args()
    font = ImageFont.truetype(data.FONT, 109, layout_engine=ImageFont.Layout.RAQM)
    by_name = {e["name"]: cp for cp, e in data.load_cldr().items()}
    os.makedirs(args.out_dir, exist_ok=True)
    for fname, (bg, items) in SCENES.items():
        canvas = background(bg)
        for name, frac, cx, cy, angle in items:
            g = glyph(font, by_name, name)
            s = frac * SIZE / max(g.size)
            g = g.resize((round(g.size[0] * s), round(g.size[1] * s)), Image.LANCZOS)
            if angle:
                g = g.rotate(angle, resample=Image.BICUBIC, expand=True)
            canvas.alpha_composite(g, (round(cx * SIZE - g.size[0] / 2),
                                       round(cy * SIZE - g.size[1] / 2)))
        canvas.convert("RGB").save(os.path.join(args.out_dir, fname), optimize=True)
        print(os.path.join(args.out_dir, fname))


if __name__ == "__main__":
    main()
