#!/usr/bin/python3
"""Emoji art sets besides Noto for the demo CLIP: fetched from npm, rendered, cached.

  styles.py [--cache DIR] [--export STYLE DIR] [--size N]

Each set is one npm package at a fixed version, fetched once with `npm pack` (the npm
registry is the sets' distribution channel; nothing is committed), unpacked, and its
SVGs rendered with Debian's librsvg (`rsvg-convert`, package librsvg2-bin) into a cache
file of RGBA glyphs in data.Glyphs' format. Everything lives under the cache directory
(default $CLIPMOD_DEMO_CACHE or ~/.cache/clipmod-demo), so a second run reads the
cache and touches neither the network nor librsvg.

  style     npm package           art                                    licence of the art
  twemoji   @twemoji/svg 15.0.0   Twemoji (Twitter, now jdecked/twemoji)  CC BY 4.0
  openmoji  openmoji 17.0.0       OpenMoji, color/svg                     CC BY-SA 4.0
  fluent    fluentui-emoji 1.3.0  Microsoft Fluent Emoji, icons/flat      MIT (Microsoft)
  fluent-modern  (the same)       Microsoft Fluent Emoji, icons/modern    MIT (Microsoft)
  noto-v1   @iconify-json/noto-v1 1.2.5     Noto Emoji v1 (2013-2017)     Apache 2.0 (Google)

How files become emoji, as data.py does for Noto: a file named by code points
("1f3f3-fe0f-200d-1f308.svg", "0023-FE0F-20E3.svg") is that sequence; U+FE0F is
dropped as CLDR writes sequences, and the file is used when the result has an English
CLDR name. Fluent's files are named by CLDR name instead ("keycap-1.svg"): a file is
the emoji whose CLDR name, lower-cased with every run of other characters than a-z and
0-9 made one "-", is the file's name ("thumbs-up-default.svg" is the yellow thumbs
up, "thumbs-up-medium-dark.svg" the CLDR name "thumbs up: medium-dark skin tone"). Iconify's
sets are one JSON file of SVG bodies named the same way, by the CLDR names of their
time (ICONIFY_RENAMES maps the few CLDR has renamed since: noto-v1's "pistol" is today's
"water pistol"); each body is written out as an SVG once. Files that match no CLDR
emoji are skipped.

--export STYLE DIR writes every glyph of a style as DIR/<code points>.png (white
background, SIZE px, as the EmojiOne PNGs are laid out), so that evaluate.py can
measure that style through the C engine (the development style for thresholds, and the
training styles whose bound the thresholds must also keep).
"""
import argparse
import concurrent.futures
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import data  # noqa: E402

RENDER_PX = 128   # librsvg renders at this size; glyphs are then cropped and scaled

STYLES = {
    "twemoji": dict(package="@twemoji/svg", version="15.0.0",
                    dir="package", naming="codepoints",
                    art="Twemoji (Twitter, Inc. and other contributors; jdecked/twemoji)",
                    licence="CC BY 4.0 (graphics); MIT (packaging, Samuel Kopp)"),
    "openmoji": dict(package="openmoji", version="17.0.0",
                     dir="package/color/svg", naming="codepoints",
                     art="OpenMoji (HfG Schwäbisch Gmünd and contributors)",
                     licence="CC BY-SA 4.0 (graphics); LGPL-3.0 (code)"),
    "fluent": dict(package="fluentui-emoji", version="1.3.0",
                   dir="package/icons/flat", naming="names",
                   art="Microsoft Fluent Emoji, Flat (microsoft/fluentui-emoji), "
                       "repackaged by Mohammad Abu Mattar",
                   licence="MIT (Microsoft Corporation; package: Mohammad Abu Mattar)"),
    # the same package's "modern" renders (upstream's "Color": gradients and shading)
    "fluent-modern": dict(package="fluentui-emoji", version="1.3.0", dir="package/icons/modern",
                          naming="names",
                          art="Microsoft Fluent Emoji, Color (microsoft/fluentui-emoji), "
                              "repackaged by Mohammad Abu Mattar",
                          licence="MIT (Microsoft Corporation; package: Mohammad Abu Mattar)"),
    # Google's first Noto design (2013-2017: the "blob" faces, a revolver for the pistol),
    # as Iconify's JSON (one SVG body per icon, named by the CLDR name of its time)
    "noto-v1": dict(package="@iconify-json/noto-v1", version="1.2.5", dir="package/icons.json",
                    naming="iconify",
                    art="Noto Emoji v1 (Google Inc., googlefonts/noto-emoji), "
                        "packaged by Iconify",
                    licence="Apache 2.0 (Google Inc.)"),
}

# Iconify's noto-v1 names icons by the CLDR names of their time: the emoji CLDR has
# renamed since, by their current names
ICONIFY_RENAMES = {"pistol": "water pistol", "hugging-face": "smiling face with open hands",
                   "dizzy-face": "face with crossed-out eyes", "direct-hit": "bullseye",
                   "pouting-face": "enraged face", "mans-shoe": "man’s shoe"}


def cache_dir(path=None):
    d = path or os.environ.get("CLIPMOD_DEMO_CACHE") or \
        os.path.join(os.path.expanduser("~"), ".cache", "clipmod-demo")
    os.makedirs(d, exist_ok=True)
    return d


def fetch(style, cache):
    """npm pack the style's package into cache/npm (once); unpack; return the SVG dir."""
    s = STYLES[style]
    npm_dir = os.path.join(cache, "npm")
    os.makedirs(npm_dir, exist_ok=True)
    # the file `npm pack` writes: "@scope/name" 1.0 -> scope-name-1.0.tgz
    base = s["package"].lstrip("@").replace("/", "-") + "-" + s["version"]
    tgz = os.path.join(npm_dir, base + ".tgz")
    if not os.path.exists(tgz):
        print(f"styles: npm pack {s['package']}@{s['version']}", file=sys.stderr, flush=True)
        res = subprocess.run(["npm", "pack", "--silent", f"{s['package']}@{s['version']}"],
                             cwd=npm_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if res.returncode != 0 or not os.path.exists(tgz):
            raise SystemExit(f"styles: 'npm pack {s['package']}@{s['version']}' failed: "
                             f"{res.stderr.decode(errors='replace')[-500:]}")
    out = os.path.join(npm_dir, base)
    if not os.path.isdir(out):
        tmp = out + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        with tarfile.open(tgz) as t:
            t.extractall(tmp)
        os.rename(tmp, out)
    path = os.path.join(out, s["dir"])
    if s["naming"] == "iconify":
        path = iconify_svgs(path)
    return path


def iconify_svgs(icons_json):
    """Write each icon of an Iconify JSON set as <name>.svg beside it (once); the dir."""
    out = os.path.join(os.path.dirname(icons_json), "svg")
    if os.path.isdir(out):
        return out
    with open(icons_json, encoding="utf-8") as f:
        d = json.load(f)
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    for name, icon in d["icons"].items():
        w, h = icon.get("width", d.get("width", 16)), icon.get("height", d.get("height", 16))
        with open(os.path.join(tmp, name + ".svg"), "w", encoding="utf-8") as f:
            f.write(f'<svg xmlns="http://www.w3.org/2000/svg" '
                    f'xmlns:xlink="http://www.w3.org/1999/xlink" width="{w}" height="{h}" '
                    f'viewBox="0 0 {w} {h}">{icon["body"]}</svg>')
    os.rename(tmp, out)
    return out


def slug(name):
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def files_to_emoji(style, svg_dir, cldr):
    """[(svg path, cp)] of the files that are CLDR emoji, sorted by cp."""
    out = {}
    names = sorted(os.listdir(svg_dir))
    if STYLES[style]["naming"] == "codepoints":
        for f in names:
            if not f.endswith(".svg"):
                continue
            try:
                cp = "".join(chr(int(h, 16)) for h in f[:-4].split("-"))
            except ValueError:
                continue
            cp = data.strip_fe0f(cp)
            if cp in cldr and cp not in out:
                out[cp] = os.path.join(svg_dir, f)
    else:
        by_slug = {}
        for cp, e in sorted(cldr.items()):
            by_slug.setdefault(slug(e["name"]), cp)
        renames = ICONIFY_RENAMES if STYLES[style]["naming"] == "iconify" else {}
        for f in names:
            stem = f[:-4]
            if stem in renames:
                stem = slug(renames[stem])
            if stem.endswith("-default"):  # an emoji drawn in skin tones: the yellow one
                stem = stem[:-len("-default")]
            cp = by_slug.get(stem, by_slug.get(stem + "-skin-tone")) \
                if f.endswith(".svg") else None
            if cp is not None and cp not in out:
                out[cp] = os.path.join(svg_dir, f)
    return sorted((p, cp) for cp, p in out.items())


def render_svg(path):
    """One SVG -> RGBA uint8 array cropped to its ink, longer side data.GLYPH_MAX."""
    res = subprocess.run(["rsvg-convert", "-w", str(RENDER_PX), "-h", str(RENDER_PX), "-a",
                          path], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    if res.returncode != 0 or not res.stdout:
        return None
    im = Image.open(io.BytesIO(res.stdout)).convert("RGBA")
    bbox = im.getchannel("A").point(lambda v: 255 if v > 8 else 0).getbbox()
    if bbox is None:
        return None
    im = im.crop(bbox)
    s = data.GLYPH_MAX / max(im.size)
    im = im.resize((max(1, round(im.size[0] * s)), max(1, round(im.size[1] * s))),
                   Image.LANCZOS)
    return np.asarray(im, dtype=np.uint8)


def build(style, cache=None, jobs=2):
    """The style's glyph cache file (built when missing); returns its path."""
    cache = cache_dir(cache)
    path = os.path.join(cache, f"glyphs-{style}-{STYLES[style]['version']}-{data.GLYPH_MAX}.npz")
    if os.path.exists(path):
        return path
    if shutil.which("rsvg-convert") is None:
        raise SystemExit("styles: rsvg-convert not found (apt-get install librsvg2-bin)")
    svg_dir = fetch(style, cache)
    cldr = data.load_cldr()
    files = files_to_emoji(style, svg_dir, cldr)
    print(f"styles: rendering {len(files)} {style} SVGs with rsvg-convert", file=sys.stderr,
          flush=True)
    with concurrent.futures.ThreadPoolExecutor(jobs) as ex:
        arrays = list(ex.map(render_svg, [p for p, _ in files]))
    cps, arrs = [], []
    for (_, cp), a in zip(files, arrays):
        if a is not None:
            cps.append(cp)
            arrs.append(a)
    shapes = np.array([a.shape[:2] for a in arrs], dtype=np.int32)
    offs = np.concatenate([[0], np.cumsum([a.size for a in arrs])]).astype(np.int64)
    pack = np.concatenate([a.reshape(-1) for a in arrs])
    names = [cldr[cp]["name"] for cp in cps]
    keywords = ["|".join(cldr[cp]["keywords"]) for cp in cps]
    tmp = path + ".tmp.npz"
    np.savez(tmp, cps=np.array(cps), names=np.array(names), keywords=np.array(keywords),
             pack=pack, offs=offs, shapes=shapes)
    os.rename(tmp, path)
    return path


def glyphs(style, cache=None):
    """data.Glyphs of a style: "noto" (data.py's font renders) or a key of STYLES."""
    if style == "noto":
        return data.Glyphs(os.path.join(cache_dir(cache), f"glyphs-noto-{data.GLYPH_MAX}.npz"))
    return data.Glyphs(build(style, cache))


def export(style, out_dir, size=64, cache=None):
    """Every glyph of a style as out_dir/<hex-hex>.png, centred on white."""
    g = glyphs(style, cache)
    os.makedirs(out_dir, exist_ok=True)
    for i, cp in enumerate(g.cps):
        name = "-".join(f"{ord(c):x}" for c in cp) + ".png"
        data.clean_render(g, i, size).save(os.path.join(out_dir, name))
    return len(g)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", help="cache directory (default ~/.cache/clipmod-demo)")
    ap.add_argument("--export", nargs=2, metavar=("STYLE", "DIR"))
    ap.add_argument("--size", type=int, default=64)
    args = ap.parse_args()
    if args.export:
        n = export(args.export[0], args.export[1], args.size, args.cache)
        print(f"{n} images in {args.export[1]}")
        return
    for style in ["noto"] + list(STYLES):
        g = glyphs(style, args.cache)
        n_held = sum(len(g.groups[x]) for x in g.heldout_groups)
        print(f"{style}: {len(g)} emoji in {len(g.groups)} groups, {n_held} held out; "
              f"missing categories: {sorted(data.category_names() - set(g.names))}")


if __name__ == "__main__":
    main()
