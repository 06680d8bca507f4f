#!/usr/bin/python3
"""Write image variants that exercise decoding paths, made with PIL from real photos.

Usage: make_images.py PHOTO_DIR OUT_DIR
Writes RGBA, LA, palette (with transparency), 16-bit grey, EXIF-rotated JPEG, WebP,
GIF, TIFF, a small image that must be enlarged, a wide panorama and a 4000x2660
JPEG that libclipmod shrinks on load, and prints their
names. These are inputs for tests/preprocess.sh, which compares libclipmod's tensors
with tests/reference/preprocess_ref.py on every one of them.
"""
import os
import sys

import numpy as np
from PIL import Image


def main():
    src, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    astro = Image.open(os.path.join(src, "astronaut.png")).convert("RGB")
    cat = Image.open(os.path.join(src, "chelsea.png")).convert("RGB")
    coffee = Image.open(os.path.join(src, "coffee.png")).convert("RGB")
    w, h = astro.size
    ramp = np.tile(np.linspace(0, 255, w, dtype=np.float64), (h, 1)).astype(np.uint8)
    made = {}

    rgba = astro.copy()
    rgba.putalpha(Image.fromarray(ramp))
    made["rgba.png"] = rgba
    la = astro.convert("L")
    la.putalpha(Image.fromarray(ramp[:, ::-1].copy()))
    made["la.png"] = la
    pal = cat.convert("P", palette=Image.ADAPTIVE, colors=64)
    pal.info["transparency"] = 0
    made["palette.png"] = pal
    grey16 = np.asarray(coffee.convert("L"), dtype=np.uint16) * 257
    made["grey16.png"] = Image.fromarray(grey16.astype(np.uint16), mode="I;16")
    made["small.png"] = cat.resize((120, 80), Image.LANCZOS)
    made["wide.png"] = coffee.resize((1201, 300), Image.LANCZOS)
    made["tall.jpg"] = cat.resize((181, 603), Image.LANCZOS)
    for name, im in made.items():
        im.save(os.path.join(out, name))
    cat.save(os.path.join(out, "cat.webp"), quality=90)
    cat.convert("P", palette=Image.ADAPTIVE).save(os.path.join(out, "cat.gif"))
    coffee.save(os.path.join(out, "coffee.tif"))
    # Large enough for JPEG shrink-on-load (libclipmod decodes it at 1/2 scale).
    cat.resize((4000, 2660), Image.BICUBIC).save(os.path.join(out, "big.jpg"), quality=90)
    # The photo stored sideways, with the EXIF tag that turns it upright (6 = 90 CW).
    exif = Image.Exif()
    exif[0x0112] = 6
    cat.transpose(Image.ROTATE_90).save(os.path.join(out, "exif6.jpg"), quality=92,
                                        exif=exif.tobytes())
    print(" ".join(sorted(os.listdir(out))))


if __name__ == "__main__":
    main()
