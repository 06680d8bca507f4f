#!/usr/bin/python3
"""Reference CLIP image preprocessing (HF CLIPImageProcessor, spec §5.2) with PIL.

  preprocess_ref.py --size S [--mean R G B --std R G B] [--json] IMAGE... --out DIR

For each IMAGE writes DIR/<basename>.f32 (basename keeps the extension, e.g.
astronaut.png.f32): float32 little-endian CHW [3,S,S].  Steps:
  1. PIL open; apply the EXIF orientation (ImageOps.exif_transpose) -- HF does
     not do this, we do;
  2. to RGB as transformers' convert_to_rgb: RGB kept; otherwise
     convert("RGBA"), alpha-composite over opaque WHITE, drop alpha.  16-bit
     grey (I;16*, I) is reduced to 8 bits by v >> 8 (clamped to 0..65535) first,
     as PIL itself does for 16-bit RGB PNGs; "F" is clamped and rounded to 0..255;
  3. resize so the short side is S and the long side int(S*long/short)
     (= floor), PIL Image.BICUBIC, reducing_gap None (skipped if unchanged);
  4. centre crop S x S at top = (H-S)//2, left = (W-S)//2 (floor);
  5. x = float32(float64(p) * (1/255)); out = (x - float32(mean)) / float32(std)
     in float32.
--json prints one JSON object per image: path, out, mode, exif_orientation,
orig_size [w,h], resized [w,h], crop [left,top].
"""
import argparse
import json
import os

import numpy as np
from PIL import Image, ImageOps

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def to_rgb(im):
    """PIL image of any mode -> RGB, transparent pixels composited over white."""
    if im.mode == "RGB":
        return im
    if im.mode.startswith("I"):  # I;16, I;16L, I;16B, I;16N, I (16-bit PNG grey)
        a = np.array(im, dtype=np.int64)
        im = Image.fromarray((np.clip(a, 0, 65535) >> 8).astype(np.uint8), "L")
    elif im.mode == "F":
        a = np.array(im, dtype=np.float64)
        im = Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8), "L")
    try:
        rgba = im.convert("RGBA")
    except ValueError:  # modes PIL cannot take to RGBA directly (e.g. LAB, HSV)
        rgba = im.convert("RGB").convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def resize_size(w, h, size):
    """HF get_resize_output_image_size(default_to_square=False): short side -> size."""
    if w <= h:
        return size, int(size * h / w)
    return int(size * w / h), size


def preprocess(path, size, mean=CLIP_MEAN, std=CLIP_STD):
    """Return (float32 array [3,size,size], info dict)."""
    with Image.open(path) as im0:
        orientation = im0.getexif().get(0x0112, 1)
        mode = im0.mode
        orig = im0.size
        im = ImageOps.exif_transpose(im0)
        im = to_rgb(im)
    rw, rh = resize_size(im.width, im.height, size)
    if (rw, rh) != im.size:
        im = im.resize((rw, rh), Image.BICUBIC)
    top, left = (rh - size) // 2, (rw - size) // 2
    px = np.asarray(im, dtype=np.uint8)[top:top + size, left:left + size]  # HWC
    x = (px.astype(np.float64) * (1 / 255)).astype(np.float32)
    x = (x - np.array(mean, dtype=np.float32)) / np.array(std, dtype=np.float32)
    info = {"path": path, "mode": mode, "exif_orientation": int(orientation),
            "orig_size": list(orig), "resized": [rw, rh], "crop": [left, top]}
    return np.ascontiguousarray(x.transpose(2, 0, 1), dtype="<f4"), info


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="+", metavar="IMAGE")
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--mean", type=float, nargs=3, default=CLIP_MEAN, metavar=("R", "G", "B"))
    ap.add_argument("--std", type=float, nargs=3, default=CLIP_STD, metavar=("R", "G", "B"))
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--json", action="store_true", help="print per-image sizes and crop offsets")
    args = ap.parse_args()
    names = [os.path.basename(p) for p in args.images]
    if len(set(names)) != len(names):
        ap.error("two inputs share a basename")
    os.makedirs(args.out, exist_ok=True)
    for path, name in zip(args.images, names):
        x, info = preprocess(path, args.size, args.mean, args.std)
        info["out"] = os.path.join(args.out, name + ".f32")
        x.tofile(info["out"])
        if args.json:
            print(json.dumps(info))


if __name__ == "__main__":
    main()
