#!/usr/bin/python3
"""Build a labelled image set from the demo model's data, for `clipmod policy evaluate`.

  labelled-set.py --out DIR [--emojione PNGDIR] [--noto] [--clean N] [--per-category N]
                  [--size PX] [--augment N] [--manifest] [--seed S]

Writes DIR/<category>/*.png for the emoji of each demo category (tools/demo/data.py
CATEGORIES, matched by CLDR name) and DIR/clean/*.png for a fixed sample of the other
emoji; with --manifest, also DIR/manifest.csv (path,label,...) listing them and a few
two-emoji images with two labels each (multi-label), kept in DIR/.pairs (a dot folder,
which the folder form skips).

Sources, as `make evaluate-demo` uses them:
  --emojione DIR  the EmojiOne PNGs of Debian's ruby-gemojione (tools/demo/emojione.sh
                  prints the directory): an art style the demo model never saw;
  --noto          clean renders of Noto Color Emoji (fonts-noto-color-emoji), the
                  training style, at --size px (default: the demo model's 48).
At least one source is needed. The choice of clean images is deterministic (a hash of
the emoji sequence and --seed), so the same arguments give the same set.
"""
import argparse
import csv
import hashlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "demo"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
import data  # noqa: E402


def category_of():
    """CLDR name -> demo category id."""
    return {name: cat for cat, names in data.CATEGORIES.items() for name in names}


def pick(key, seed):
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "little")


def emojione_items(png_dir, cldr):
    """(path, cp, name) of every EmojiOne PNG with an English CLDR name."""
    out = []
    for f in sorted(os.listdir(png_dir)):
        if not f.endswith(".png"):
            continue
        try:
            cp = "".join(chr(int(h, 16)) for h in f[:-4].split("-"))
        except ValueError:
            continue
        cp = data.strip_fe0f(cp)
        if cp in cldr:
            out.append((os.path.join(png_dir, f), cp, cldr[cp]["name"]))
    return out


def select(items, cats, n_clean, per_cat, seed):
    """Positives of each category (at most per_cat) and n_clean others."""
    chosen, clean = [], []
    by_cat = {}
    for it in items:
        c = cats.get(it[2])
        if c:
            by_cat.setdefault(c, []).append(it)
        else:
            clean.append(it)
    for c, its in sorted(by_cat.items()):
        its.sort(key=lambda it: pick(it[1], seed))
        chosen += [(c, it) for it in its[:per_cat]]
    clean.sort(key=lambda it: pick(it[1], seed))
    chosen += [("clean", it) for it in clean[:n_clean]]
    return chosen


def safe_name(cp):
    return "-".join(f"{ord(ch):x}" for ch in cp)


def write_emojione(out, png_dir, cldr, cats, args):
    from PIL import Image
    rows = []
    for label, (path, cp, name) in select(emojione_items(png_dir, cldr), cats, args.clean,
                                          args.per_category, args.seed):
        os.makedirs(os.path.join(out, label), exist_ok=True)
        dst = os.path.join(out, label, f"emojione-{safe_name(cp)}.png")
        Image.open(path).convert("RGBA").save(dst)
        rows.append((os.path.relpath(dst, out), [label], name))
    return rows


def augmented_render(glyphs, i, size, rng):
    """One emoji as the demo model's training shows it: a background, a size, an
    offset and a tilt drawn from the same distributions (tools/demo/data.py)."""
    from PIL import Image
    bg = data.background(rng, size).convert("RGBA")
    layer = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    e = int(rng.uniform(0.45, 1.0) * size)
    slack = max(0, size - e) / 2
    data._place(layer, glyphs.image(i), e, size / 2 + rng.uniform(-slack, slack),
                size / 2 + rng.uniform(-slack, slack), rng.normal(0, 12), rng)
    bg.alpha_composite(layer)
    return bg.convert("RGB")


def write_augmented(out, glyphs, chosen, args):
    """--augment N: augmented renders so each category has N images in all (its
    clean renders count), cycling through its emoji."""
    import numpy as np
    rows, by_cat = [], {}
    for label, (_, cp, name) in chosen:
        if label != "clean":
            by_cat.setdefault(label, []).append((cp, name))
    for label, its in sorted(by_cat.items()):
        for j in range(max(0, args.augment - len(its))):
            cp, name = its[j % len(its)]
            rng = np.random.default_rng(pick(f"{cp}/{j}", args.seed))
            dst = os.path.join(out, label, f"noto-{safe_name(cp)}-aug{j}.png")
            augmented_render(glyphs, glyphs.index[cp], args.size, rng).save(dst)
            rows.append((os.path.relpath(dst, out), [label], name))
    return rows


def write_noto(out, cats, args):
    glyphs = data.Glyphs()
    items = [(None, cp, glyphs.names[i]) for i, cp in enumerate(glyphs.cps)]
    rows = []
    chosen = select(items, cats, args.clean, args.per_category, args.seed)
    for label, (_, cp, name) in chosen:
        os.makedirs(os.path.join(out, label), exist_ok=True)
        dst = os.path.join(out, label, f"noto-{safe_name(cp)}.png")
        data.clean_render(glyphs, glyphs.index[cp], args.size).save(dst)
        rows.append((os.path.relpath(dst, out), [label], name))
    if args.augment:
        rows += write_augmented(out, glyphs, chosen, args)
    return rows, glyphs


def write_pairs(out, glyphs, cats, args):
    """Two emoji side by side, labelled with both categories (multi-label rows)."""
    from PIL import Image
    # A dot folder: the folder form skips it, so DIR stays a valid labelled folder.
    os.makedirs(os.path.join(out, ".pairs"), exist_ok=True)
    firsts = {c: names[0] for c, names in data.CATEGORIES.items()}
    ids = sorted(firsts)
    rows = []
    for a, b in zip(ids, ids[1:] + ids[:1]):
        canvas = Image.new("RGBA", (args.size * 2, args.size), (255, 255, 255, 255))
        for k, c in enumerate((a, b)):
            g = glyphs.image(glyphs.by_name[firsts[c]])
            g.thumbnail((args.size - 4, args.size - 4))
            canvas.alpha_composite(g, (k * args.size + (args.size - g.size[0]) // 2,
                                       (args.size - g.size[1]) // 2))
        dst = os.path.join(out, ".pairs", f"{a}+{b}.png")
        canvas.convert("RGB").save(dst)
        rows.append((os.path.relpath(dst, out), [a, b], f"{firsts[a]} and {firsts[b]}"))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--emojione", help="ruby-gemojione's assets/png directory")
    ap.add_argument("--noto", action="store_true", help="add clean Noto renders")
    ap.add_argument("--clean", type=int, default=200, help="clean images per source")
    ap.add_argument("--per-category", type=int, default=1000,
                    help="positives per category and source (default: all)")
    ap.add_argument("--size", type=int, default=48, help="Noto render size in px")
    ap.add_argument("--augment", type=int, default=0,
                    help="add augmented Noto renders up to N images per category (for heads)")
    ap.add_argument("--manifest", action="store_true",
                    help="also write manifest.csv, with two-emoji multi-label images")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if not args.emojione and not args.noto:
        ap.error("give --emojione DIR and/or --noto")
    cats = category_of()
    rows, glyphs = [], None
    if args.emojione:
        rows += write_emojione(args.out, args.emojione, data.load_cldr(), cats, args)
    if args.noto or args.manifest:
        noto_rows, glyphs = write_noto(args.out, cats, args) if args.noto else ([], data.Glyphs())
        rows += noto_rows
    if args.manifest:
        rows += write_pairs(args.out, glyphs, cats, args)
        with open(os.path.join(args.out, "manifest.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "labels"])
            for path, labels, _ in rows:
                w.writerow([path] + [lab for lab in labels if lab != "clean"])
    counts = {}
    for _, labels, _ in rows:
        for lab in labels:
            counts[lab] = counts.get(lab, 0) + 1
    print(" ".join(f"{k}={v}" for k, v in sorted(counts.items())), f"images={len(rows)}")


if __name__ == "__main__":
    main()
