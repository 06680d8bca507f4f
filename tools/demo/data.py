#!/usr/bin/python3
"""Training data for the demo CLIP: Noto Color Emoji glyphs paired with CLDR English names.

  data.py [--preview OUT.png] [--cache FILE]

Sources (Debian packages, read where they are installed):
  * fonts-noto-color-emoji: NotoColorEmoji.ttf, a CBDT bitmap font (SIL OFL 1.1), drawn
    with PIL at size 109 (its only strike, 136x128 px) with embedded_color=True and
    Raqm layout, so ZWJ sequences, flags, keycaps and skin tones form one glyph;
  * unicode-cldr-core: common/annotations/en.xml and common/annotationsDerived/en.xml,
    the English name (type="tts") and keywords of every emoji (Unicode-DFS-2016).

An emoji is used when the font draws its sequence as exactly one non-empty glyph.
Emoji are grouped by their sequence without skin-tone modifiers; a fixed ~5% of the
groups (chosen by a hash of the sequence, never one in NEVER_HELD_OUT) is held out of
training entirely, for the evaluation to report separately.

Samples (make_sample): a canvas of image_size px with a background (white, a solid
colour, a gradient, noise, stripes, checks or blobs) and one to three emoji,
randomly scaled, placed and rotated, with mild blur / colour-count / contrast
changes; the caption is a template around the emoji's name or keywords, or the names
of several emoji in reading order ("a picture of beer mug and pill."). With style_aug
(v2), restyle() also changes the drawing style (outline, flat colours, saturation,
shading, raster). Glyphs of other art sets (styles.py) use the same class, the same
CLDR names and the same held-out groups.
"""
import argparse
import hashlib
import math
import os
import xml.etree.ElementTree as ET

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
CLDR = "/usr/share/unicode/cldr/common"
ANNOTATION_FILES = (f"{CLDR}/annotations/en.xml", f"{CLDR}/annotationsDerived/en.xml")
GLYPH_MAX = 72            # cached glyphs are scaled so their longer side is this
SKIN_TONES = set(range(0x1F3FB, 0x1F400))
HELDOUT_MOD = 20          # a group is held out when hash % HELDOUT_MOD == 0 (~5%)

# Caption templates: training wraps captions in these, and evaluate.py and
# policies/demo.yaml use the same ones (prompt ensembling), so prompts read like
# the captions the model learned.
TEMPLATES = ["{}", "an emoji of {}.", "a picture of {}.", "an image showing {}.",
             "a cartoon of {}."]
EVAL_TEMPLATES = TEMPLATES[1:]

# Demo moderation categories: which emoji (CLDR names, Emoji 14) count as positives
# in the evaluation. policies/demo.yaml describes them in the same CLDR words.
CATEGORIES = {
    "weapons": ["water pistol", "kitchen knife", "dagger", "crossed swords",
                "bow and arrow"],
    "alcohol": ["beer mug", "clinking beer mugs", "wine glass", "cocktail glass",
                "tropical drink", "bottle with popping cork", "sake", "tumbler glass",
                "clinking glasses"],
    "tobacco": ["cigarette"],
    "drugs": ["pill", "syringe"],
    "gambling": ["slot machine", "game die", "joker", "flower playing cards",
                 "mahjong red dragon"],
    "violence": ["bomb", "collision", "skull", "skull and crossbones", "coffin"],
}

# Emoji never held out of training: the category emoji above and moderation
# look-alikes (the demo must know them). Fixed here, so that editing CATEGORIES does
# not change the training data.
NEVER_HELD_OUT = [
    "adhesive bandage", "angry face with horns", "axe", "beer mug", "bomb",
    "boomerang", "bottle with popping cork", "bow and arrow", "cigarette",
    "clinking beer mugs", "clinking glasses", "club suit", "cocktail glass", "coffin",
    "collision", "crossed swords", "dagger", "diamond suit", "drop of blood",
    "face with symbols on mouth", "fire", "firecracker", "flower playing cards",
    "funeral urn", "game die", "heart suit", "joker", "kitchen knife",
    "mahjong red dragon", "military helmet", "money bag", "money with wings",
    "no smoking", "pill", "sake", "skull", "skull and crossbones", "slot machine",
    "spade suit", "stethoscope", "syringe", "tropical drink", "tumbler glass",
    "water pistol", "wine glass",
]


def category_names():
    return {n for names in CATEGORIES.values() for n in names}


def strip_fe0f(seq):
    return seq.replace("\ufe0f", "")


def load_cldr():
    """cp (FE0F removed, as CLDR writes them) -> {"name", "keywords"}, en.xml first,
    then annotationsDerived (skin tones, flags, keycaps, sequences)."""
    out = {}
    for path in ANNOTATION_FILES:
        for a in ET.parse(path).getroot().iter("annotation"):
            cp = strip_fe0f(a.get("cp"))
            e = out.setdefault(cp, {"name": None, "keywords": []})
            text = (a.text or "").strip()
            if a.get("type") == "tts":
                e["name"] = text
            else:
                e["keywords"] = [k.strip() for k in text.split("|") if k.strip()]
    return {cp: e for cp, e in out.items() if e["name"]}


def group_key(cp):
    return "".join(c for c in cp if ord(c) not in SKIN_TONES)


def is_heldout(group):
    h = hashlib.sha256(group.encode("utf-8")).digest()
    return int.from_bytes(h[:4], "little") % HELDOUT_MOD == 0


class Glyphs:
    """Every CLDR emoji the font draws as one glyph, with its cached RGBA bitmap."""

    def __init__(self, cache=None):
        if cache and os.path.exists(cache):
            z = np.load(cache, allow_pickle=False)
            self.cps = list(z["cps"])
            self.names = list(z["names"])
            self.keywords = [k.split("|") if k else [] for k in z["keywords"]]
            self._pack, self._offs, self._shapes = z["pack"], z["offs"], z["shapes"]
        else:
            self._build()
            if cache:
                np.savez(cache, cps=np.array(self.cps), names=np.array(self.names),
                         keywords=np.array(["|".join(k) for k in self.keywords]),
                         pack=self._pack, offs=self._offs, shapes=self._shapes)
        self.index = {cp: i for i, cp in enumerate(self.cps)}
        self.by_name = {n: i for i, n in enumerate(self.names)}
        self.groups = {}
        for i, cp in enumerate(self.cps):
            self.groups.setdefault(group_key(cp), []).append(i)
        cat = set(NEVER_HELD_OUT)
        self.heldout_groups = sorted(
            g for g, members in self.groups.items()
            if is_heldout(g) and not any(self.names[i] in cat for i in members))
        held = set(self.heldout_groups)
        self.train_groups = sorted(g for g in self.groups if g not in held)

    def _build(self):
        font = ImageFont.truetype(FONT, 109, layout_engine=ImageFont.Layout.RAQM)
        single = font.getlength("\U0001F600")
        cldr = load_cldr()
        self.cps, self.names, self.keywords, arrays = [], [], [], []
        for cp, e in sorted(cldr.items()):
            seq = None
            # CLDR drops U+FE0F; try the bare sequence, then with FE0F after the first
            # code point (enough for Noto's GSUB rules: keycaps, ZWJ sequences).
            for cand in (cp, cp[0] + "\ufe0f" + cp[1:]):
                if abs(font.getlength(cand) - single) < 0.5:
                    seq = cand
                    break
            if seq is None:
                continue
            im = Image.new("RGBA", (int(single) + 8, 140), (0, 0, 0, 0))
            ImageDraw.Draw(im).text((4, 4), seq, font=font, embedded_color=True)
            bbox = im.getbbox()
            if bbox is None:  # no glyph in the font (symbols such as "{")
                continue
            im = im.crop(bbox)
            s = GLYPH_MAX / max(im.size)
            im = im.resize((max(1, round(im.size[0] * s)), max(1, round(im.size[1] * s))),
                           Image.LANCZOS)
            self.cps.append(cp)
            self.names.append(e["name"])
            self.keywords.append(e["keywords"])
            arrays.append(np.asarray(im, dtype=np.uint8))
        self._shapes = np.array([a.shape[:2] for a in arrays], dtype=np.int32)
        sizes = [a.size for a in arrays]
        self._offs = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self._pack = np.concatenate([a.reshape(-1) for a in arrays])

    def __len__(self):
        return len(self.cps)

    def image(self, i):
        h, w = self._shapes[i]
        a = self._pack[self._offs[i]:self._offs[i + 1]].reshape(h, w, 4)
        return Image.fromarray(a, "RGBA")


# ---------------------------------------------------------------------------
# Backgrounds


def _rand_colour(rng):
    return rng.integers(0, 256, 3)


def background(rng, size):
    r = rng.random()
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if r < 0.30:
        img = np.full((size, size, 3), 255, np.float32)
    elif r < 0.50:
        img = np.broadcast_to(_rand_colour(rng), (size, size, 3)).astype(np.float32)
    elif r < 0.62:
        a, b = _rand_colour(rng), _rand_colour(rng)
        ang = rng.random() * 2 * math.pi
        t = (xx * math.cos(ang) + yy * math.sin(ang))
        t = (t - t.min()) / max(1e-6, t.max() - t.min())
        img = a * (1 - t[..., None]) + b * t[..., None]
    elif r < 0.72:
        base = _rand_colour(rng).astype(np.float32)
        amp = rng.uniform(10, 70)
        noise = rng.normal(0, 1, (size // 4 + 1, size // 4 + 1, 3)) if rng.random() < 0.5 \
            else rng.normal(0, 1, (size, size, 3))
        n = np.asarray(Image.fromarray(((noise * 40) + 128).clip(0, 255).astype(np.uint8))
                       .resize((size, size), Image.BILINEAR), np.float32) - 128
        img = base + n * amp / 40
    elif r < 0.82:
        a, b = _rand_colour(rng), _rand_colour(rng)
        period = rng.uniform(4, 16)
        ang = rng.random() * math.pi
        t = ((xx * math.cos(ang) + yy * math.sin(ang)) * size / period) % 1.0 < 0.5
        img = np.where(t[..., None], a, b).astype(np.float32)
    elif r < 0.90:
        a, b = _rand_colour(rng), _rand_colour(rng)
        cell = int(rng.integers(4, 17))
        t = ((np.arange(size)[:, None] // cell + np.arange(size)[None, :] // cell) % 2) == 0
        img = np.where(t[..., None], a, b).astype(np.float32)
    else:
        img = np.broadcast_to(_rand_colour(rng), (size, size, 3)).astype(np.float32).copy()
        for _ in range(int(rng.integers(3, 12))):
            cx, cy, rad = rng.random(), rng.random(), rng.uniform(0.03, 0.25)
            m = ((xx - cx) ** 2 + (yy - cy) ** 2) < rad ** 2
            img[m] = _rand_colour(rng)
        if rng.random() < 0.5:
            img = np.asarray(Image.fromarray(img.astype(np.uint8)).filter(
                ImageFilter.GaussianBlur(rng.uniform(0.5, 2))), np.float32)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


# ---------------------------------------------------------------------------
# Captions


def join_names(names):
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " and " + names[-1]


def single_caption(rng, name, keywords):
    r = rng.random()
    kws = [k for k in keywords if k != name]
    if r < 0.6 or not kws:
        return name
    if r < 0.8:
        pick = rng.choice(len(kws), size=min(len(kws), int(rng.integers(1, 4))), replace=False)
        return name + ", " + ", ".join(kws[j] for j in sorted(pick))
    pick = rng.choice(len(kws), size=min(len(kws), int(rng.integers(1, 3))), replace=False)
    return ", ".join(kws[j] for j in sorted(pick))


def template(rng):
    return TEMPLATES[int(rng.integers(len(TEMPLATES)))]


# ---------------------------------------------------------------------------
# Samples


def _place(canvas, glyph, size, cx, cy, angle, rng):
    w, h = glyph.size
    s = size / max(w, h)
    g = glyph.resize((max(1, round(w * s)), max(1, round(h * s))),
                     Image.LANCZOS if rng.random() < 0.5 else Image.BILINEAR)
    if angle:
        g = g.rotate(angle, resample=Image.BICUBIC, expand=True)
    canvas.alpha_composite(g, (int(round(cx - g.size[0] / 2)), int(round(cy - g.size[1] / 2))))


def restyle(layer, rng):
    """Changes of drawing style that keep what an emoji shows (shape, colours), so
    that the model learns what art sets have in common: one or two of a dark outline
    (as OpenMoji draws), flat colours (few colours, smoothed), more or less
    saturation, a light-to-dark shading, or a coarser raster."""
    ops = rng.choice(5, size=1 if rng.random() < 0.6 else 2, replace=False)
    for op in ops:
        a = np.asarray(layer).astype(np.float32)
        alpha = a[..., 3:4]
        if op == 0:  # outline
            k = 3 if rng.random() < 0.6 else 5
            ring = np.asarray(layer.getchannel("A").filter(ImageFilter.MaxFilter(k)),
                              np.float32)[..., None]
            ink = rng.uniform(0, 70)
            rgb = a[..., :3] * (alpha / 255) + ink * (1 - alpha / 255)
            a = np.concatenate([rgb, np.maximum(alpha, ring)], -1)
        elif op == 1:  # flat colours
            rgb = Image.fromarray(a[..., :3].clip(0, 255).astype(np.uint8), "RGB")
            if rng.random() < 0.5:
                rgb = rgb.filter(ImageFilter.MedianFilter(3))
            rgb = rgb.quantize(int(rng.integers(6, 24))).convert("RGB")
            a = np.concatenate([np.asarray(rgb, np.float32), alpha], -1)
        elif op == 2:  # saturation
            grey = a[..., :3].mean(-1, keepdims=True)
            f = rng.uniform(0.55, 1.5)
            a[..., :3] = grey + (a[..., :3] - grey) * f
        elif op == 3:  # shading from one side
            h, w = a.shape[:2]
            yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
            ang = rng.uniform(0, 2 * math.pi)
            t = (xx * math.cos(ang) + yy * math.sin(ang)) / max(h, w)
            t = t - t.min()
            lo, hi = rng.uniform(0.75, 1.0), rng.uniform(1.0, 1.25)
            a[..., :3] *= (lo + (hi - lo) * t / max(1e-6, t.max()))[..., None]
        else:  # coarser raster
            w, h = layer.size
            f = rng.uniform(0.35, 0.7)
            small = layer.resize((max(1, int(w * f)), max(1, int(h * f))), Image.BILINEAR)
            a = np.asarray(small.resize((w, h), Image.BILINEAR), np.float32)
        layer = Image.fromarray(a.clip(0, 255).astype(np.uint8), "RGBA")
    return layer


def make_sample(glyphs, rng, size, groups, n_emoji=None, style_aug=0.0):
    """One (PIL RGB image, caption, [glyph indices]) from the given groups; with
    probability style_aug the emoji layer is also redrawn by restyle()."""
    if n_emoji is None:
        r = rng.random()
        n_emoji = 1 if r < 0.75 else (2 if r < 0.93 else 3)
    idx = []
    for _ in range(n_emoji):
        members = glyphs.groups[groups[int(rng.integers(len(groups)))]]
        # the default (no skin tone) form half the time, else any variant
        i = members[0] if rng.random() < 0.5 else members[int(rng.integers(len(members)))]
        idx.append(i)
    bg = background(rng, size).convert("RGBA")
    layer = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    if n_emoji == 1:
        e = int(rng.uniform(0.45, 1.0) * size) if rng.random() < 0.8 \
            else int(rng.uniform(0.3, 0.6) * size)
        slack = max(0, size - e) / 2
        cx = size / 2 + rng.uniform(-slack, slack)
        cy = size / 2 + rng.uniform(-slack, slack)
        ang = rng.normal(0, 12) if rng.random() < 0.7 else rng.uniform(-180, 180)
        _place(layer, glyphs.image(idx[0]), e, cx, cy, ang, rng)
        caption = single_caption(rng, glyphs.names[idx[0]], glyphs.keywords[idx[0]])
    else:
        # side by side (reading order = caption order), a little jitter each
        e = int(rng.uniform(0.32, 0.5) * size) if n_emoji == 2 else int(rng.uniform(0.27, 0.36) * size)
        step = size / n_emoji
        for k, i in enumerate(idx):
            cx = step * (k + 0.5) + rng.uniform(-0.1, 0.1) * step
            cy = size / 2 + rng.uniform(-0.25, 0.25) * size
            _place(layer, glyphs.image(i), e, cx, cy, rng.normal(0, 10), rng)
        caption = join_names([glyphs.names[i] for i in idx])
    # mild appearance changes of the emoji layer (not the hue: colours are meaning)
    r = rng.random()
    if r < 0.15:
        layer = layer.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    elif r < 0.25:
        a = np.asarray(layer).astype(np.float32)
        c = rng.uniform(0.7, 1.15)
        a[..., :3] = (a[..., :3] - 128) * c + 128 + rng.uniform(-20, 20)
        layer = Image.fromarray(a.clip(0, 255).astype(np.uint8), "RGBA")
    if style_aug and rng.random() < style_aug:
        layer = restyle(layer, rng)
    if rng.random() < 0.15:  # drop shadow / outline as some emoji sets draw
        sh = Image.new("RGBA", layer.size, (0, 0, 0, 0))
        alpha = layer.getchannel("A").filter(ImageFilter.MaxFilter(3))
        sh.putalpha(alpha.point(lambda v: v * 0.5))
        bg.alpha_composite(sh, (1, 1))
    bg.alpha_composite(layer)
    img = bg.convert("RGB")
    if rng.random() < 0.1:
        img = img.quantize(int(rng.integers(16, 128))).convert("RGB")
    text = template(rng).format(caption)
    return img, text, idx


def make_light_sample(glyphs, rng, size, groups, white=0.8, style_aug=0.0):
    """One (PIL RGB image, caption, [glyph index]) close to what the evaluation
    shows (v2): one emoji on white (else a random plain colour), 70-100% of the
    canvas, a little off centre, rarely a slight tilt; drawn at 64 px and resized
    with PIL's bicubic filter as libclipmod resizes a 64 px image. With
    probability style_aug the glyph is first redrawn by restyle (no random number
    is drawn for it when style_aug is 0, so the v2 recipe's samples are unchanged)."""
    i = pick_glyph(glyphs, rng, groups)
    img = light_render(glyphs, i, rng, size, white, style_aug)
    caption = single_caption(rng, glyphs.names[i], glyphs.keywords[i])
    return img, template(rng).format(caption), [i]


def pick_glyph(glyphs, rng, groups):
    """A glyph index of one of `groups`: the group's first member (its default
    skin tone) half the time, else any member."""
    members = glyphs.groups[groups[int(rng.integers(len(groups)))]]
    return members[0] if rng.random() < 0.5 else members[int(rng.integers(len(members)))]


def light_render(glyphs, i, rng, size, white=0.8, style_aug=0.0):
    """Glyph i as make_light_sample draws it (the canvas, placement and resize)."""
    big = 64
    colour = (255, 255, 255) if rng.random() < white else tuple(int(c) for c in _rand_colour(rng))
    canvas = Image.new("RGBA", (big, big), colour + (255,))
    e = int(rng.uniform(0.7, 1.0) * big)
    slack = (big - e) / 2
    cx = big / 2 + rng.uniform(-slack, slack)
    cy = big / 2 + rng.uniform(-slack, slack)
    ang = rng.normal(0, 6) if rng.random() < 0.3 else 0
    glyph = glyphs.image(i)
    if style_aug and rng.random() < style_aug:
        glyph = restyle(glyph, rng)
    _place(canvas, glyph, e, cx, cy, ang, rng)
    img = canvas.convert("RGB")
    if size != big:
        img = img.resize((size, size), Image.BICUBIC)
    return img


def clean_render(glyphs, i, size, background=(255, 255, 255)):
    """An emoji alone, centred, filling ~94% of a canvas (for samples and checks)."""
    canvas = Image.new("RGBA", (size, size), background + (255,))
    _place(canvas, glyphs.image(i), int(size * 0.94), size / 2, size / 2, 0,
           np.random.default_rng(0))
    return canvas.convert("RGB")


def bpe_corpus(glyphs):
    """The text the BPE merges are learned from: every name and keyword of the
    training emoji, and the template words (held-out emoji's names are excluded)."""
    # template words and "and" appear in nearly every caption: weight them so they
    # become whole tokens
    lines = [t.replace("{}", "") for t in TEMPLATES for _ in range(50)] + ["and"] * 50
    for g in glyphs.train_groups:
        for i in glyphs.groups[g]:
            lines.append(glyphs.names[i])
            lines.extend(glyphs.keywords[i])
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", help="glyph cache file (built when missing; default: none)")
    ap.add_argument("--preview", help="write a grid of 64 augmented samples to this PNG")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    g = Glyphs(args.cache)
    n_train = sum(len(g.groups[x]) for x in g.train_groups)
    n_held = sum(len(g.groups[x]) for x in g.heldout_groups)
    print(f"{len(g)} emoji in {len(g.groups)} groups; training {len(g.train_groups)} groups "
          f"({n_train} emoji), held out {len(g.heldout_groups)} groups ({n_held} emoji)")
    missing = sorted(category_names() - set(g.names))
    if missing:
        print("category names not in the font/CLDR:", missing)
    if args.preview:
        rng = np.random.default_rng(args.seed)
        sheet = Image.new("RGB", (8 * args.size, 8 * args.size))
        for k in range(64):
            img, text, _ = make_sample(g, rng, args.size, g.train_groups)
            sheet.paste(img, ((k % 8) * args.size, (k // 8) * args.size))
            print(k, text)
        sheet.save(args.preview)


if __name__ == "__main__":
    main()
