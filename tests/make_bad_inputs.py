#!/usr/bin/python3
"""Write hostile and broken image inputs for tests/bad_inputs.sh.

Usage: make_bad_inputs.py PHOTO_DIR OUT_DIR
       make_bad_inputs.py --gif-frames OUT FRAMES SIDE
Every file is made here, byte by byte where a decoder would refuse to write it
(a PNG header claiming 100000 x 100000 pixels), with PIL otherwise.
--gif-frames writes one GIF of FRAMES full SIDE x SIDE frames (tests/frame_budget.sh).
"""
import io
import os
import struct
import sys
import zlib

from PIL import Image


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png16(a):
    """A 16-bit RGB PNG, written by hand: PIL cannot save 16-bit colour."""
    h, w, _ = a.shape
    rows = b"".join(b"\0" + a[y].astype(">u2").tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(rows))
            + png_chunk(b"IEND", b""))


def gif_frame(side, index):
    """The header + colour table, and the image descriptor + LZW data, of one
    side x side GIF frame of palette colour `index`, cut out of PIL's single-frame GIF."""
    im = Image.new("P", (side, side), index)
    im.putpalette([0, 0, 0, 255, 255, 255] + [0] * (254 * 3))
    buf = io.BytesIO()
    im.save(buf, "GIF", optimize=False)
    data = buf.getvalue()
    flags = data[10]
    pos = 13 + (3 * (2 << (flags & 7)) if flags & 0x80 else 0)
    head = data[:pos]
    while data[pos] == 0x21:  # extensions PIL may add
        pos += 2
        while data[pos]:
            pos += data[pos] + 1
        pos += 1
    assert data[pos] == 0x2C and data[-1] == 0x3B
    return head, data[pos:-1]


def gif_frames(path, frames, side):
    """An animation of `frames` full frames, alternating black and white so no frame
    can be merged with the one before: each frame costs a decoder side x side
    pixels, while LZW keeps a uniform frame to a few kB. Written frame by frame, so
    memory stays one frame whatever the count (PIL's own writer keeps them all)."""
    head, black = gif_frame(side, 0)
    _, white = gif_frame(side, 1)
    loop = b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    delay = b"\x21\xf9\x04\x00\x0a\x00\x00\x00"  # graphic control: 100 ms
    with open(path, "wb") as f:
        f.write(b"GIF89a" + head[6:] + loop)
        for i in range(frames):
            f.write(delay + (black if i % 2 == 0 else white))
        f.write(b"\x3b")


def main():
    if sys.argv[1] == "--gif-frames":
        gif_frames(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    src, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    cat = Image.open(os.path.join(src, "chelsea.png")).convert("RGB")

    def write(name, data):
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)

    buf = io.BytesIO()
    cat.save(buf, "JPEG", quality=90)
    jpeg = buf.getvalue()
    write("truncated.jpg", jpeg[: len(jpeg) // 2])
    write("empty.jpg", b"")
    write("text.jpg", b"This is not an image, whatever its name says.\n" * 20)
    buf = io.BytesIO()
    cat.save(buf, "PNG")
    write("png-named.jpg", buf.getvalue())  # the content decides, not the name
    # A valid PNG signature and header for 100000 x 100000 RGB, then a token IDAT.
    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    write("huge-header.png", b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) +
          png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + png_chunk(b"IEND", b""))
    # A decompression bomb: 10000 x 10000 of zeros is 300 MB of pixels, ~300 kB on disk.
    raw = zlib.compress(b"\0" * (10000 * 3 + 1) * 10000, 9)
    ihdr = struct.pack(">IIBBBBB", 10000, 10000, 8, 2, 0, 0, 0)
    write("bomb.png", b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) +
          png_chunk(b"IDAT", raw) + png_chunk(b"IEND", b""))
    write("shape.svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
          b'<rect width="64" height="64"/></svg>')
    write("doc.pdf", b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
          b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
          b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 64 64]>>endobj\n"
          b"trailer<</Root 1 0 R>>\n%%EOF\n")
    # Thousands of frames: 3000 tiny frames in a few kB.
    frames = [Image.new("P", (4, 4), i % 2) for i in range(3000)]
    frames[0].save(os.path.join(out, "many-frames.gif"), save_all=True,
                   append_images=frames[1:], duration=10, loop=0)
    # A short animation made of photos: 20 frames, of which the policy samples some.
    small = [cat.rotate(i * 18).resize((240, 160)) for i in range(20)]
    small[0].save(os.path.join(out, "animated.gif"), save_all=True, append_images=small[1:],
                  duration=50, loop=0)
    small[0].save(os.path.join(out, "animated.webp"), save_all=True, append_images=small[1:],
                  duration=50, loop=0)
    # Formats and colour spaces that must scan: CMYK JPEG, 16-bit RGB PNG, grey.
    cat.convert("CMYK").save(os.path.join(out, "cmyk.jpg"), quality=90)
    import numpy as np
    rgb16 = (np.asarray(cat, dtype=np.uint16) * 257)
    with open(os.path.join(out, "rgb16.png"), "wb") as f:
        f.write(png16(rgb16))
    cat.convert("L").save(os.path.join(out, "grey.png"))
    print(" ".join(sorted(os.listdir(out))))


if __name__ == "__main__":
    main()
