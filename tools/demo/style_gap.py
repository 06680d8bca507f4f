#!/usr/bin/python3
"""Where a demo CLIP loses an art style: zero-shot on code-point-named PNGs, transformed.

  style_gap.py --model DIR --png DIR [--labels-of DIR] [--scale S,...] [--blur PX]
               [--mirror] [--grey]

Zero-shot top-1/top-5 in PyTorch (tools/demo/model.py, float32 from the model's F16
weights; on EmojiOne its numbers equal the C engine's) of the PNGs in --png (named by
code points, as EmojiOne's and styles.py --export's), against the CLDR names of the
images of --labels-of (default: --png itself), data.EVAL_TEMPLATES averaged, as
evaluate.py. Only images whose emoji is among those labels count, so a training
style's renders can be measured on EmojiOne's 1,769 labels. Each image is composited
on white, optionally transformed, then resized to the model's input with PIL's bicubic
filter:
  --scale S   the art shrunk to S of the canvas (centred on white) or, above 1,
              enlarged and centre-cropped; one line per value
  --blur PX   down to PX pixels and back up (what fine detail is worth)
  --mirror    mirrored left-right (what orientation is worth)
  --grey      grey (what colour is worth)
The model card of the v2 candidate quotes its numbers (issue 16).
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "reference"))
import blas  # noqa: E402

blas.ensure_cpu_kernels()
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

import data  # noqa: E402
from evaluate import load_torch  # noqa: E402
from train import tokens  # noqa: E402

MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)


def code_points(name):
    """The emoji a PNG named by code points is (U+FE0F dropped), or None."""
    try:
        return data.strip_fe0f("".join(chr(int(h, 16)) for h in name[:-4].split("-")))
    except ValueError:
        return None


def transform(im, scale, blur, mirror, grey, size):
    bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
    bg.alpha_composite(im.convert("RGBA"))
    im = bg.convert("RGB")
    w = im.size[0]
    if scale != 1.0:
        e = int(round(w * scale))
        big = im.resize((e, e), Image.BICUBIC)
        if scale < 1:
            im = Image.new("RGB", (w, w), (255, 255, 255))
            im.paste(big, ((w - e) // 2, (w - e) // 2))
        else:
            o = (e - w) // 2
            im = big.crop((o, o, o + w, o + w))
    im = im.resize((size, size), Image.BICUBIC)
    if blur:
        im = im.resize((blur, blur), Image.BICUBIC).resize((size, size), Image.BICUBIC)
    if mirror:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    if grey:
        im = im.convert("L").convert("RGB")
    return ((np.asarray(im, np.float32) / 255 - MEAN) / STD).transpose(2, 0, 1)


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--png", required=True)
    ap.add_argument("--labels-of")
    ap.add_argument("--scale", default="1")
    ap.add_argument("--blur", type=int, default=0)
    ap.add_argument("--mirror", action="store_true")
    ap.add_argument("--grey", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg, m, tok = load_torch(args.model)
    cldr = data.load_cldr()
    keep = {code_points(f) for f in os.listdir(args.labels_of or args.png)} & set(cldr)
    items = [(os.path.join(args.png, f), cldr[code_points(f)]["name"])
             for f in sorted(os.listdir(args.png))
             if f.endswith(".png") and code_points(f) in keep]
    labels = sorted({cldr[c]["name"] for c in keep})
    index = {n: i for i, n in enumerate(labels)}
    tpl = data.EVAL_TEMPLATES
    lab = []
    for k in range(0, len(labels), 256):
        e = m.encode_text(tokens(tok, [t.format(n) for n in labels[k:k + 256] for t in tpl]))
        lab.append(F.normalize(e.view(-1, len(tpl), cfg["projection_dim"]).mean(1), dim=-1))
    lab = torch.cat(lab)
    truth = torch.tensor([index[n] for _, n in items])
    size = cfg["vision_config"]["image_size"]
    for scale in (float(x) for x in args.scale.split(",")):
        px = [transform(Image.open(p), scale, args.blur, args.mirror, args.grey, size)
              for p, _ in items]
        img = torch.cat([m.encode_image(torch.from_numpy(np.stack(px[k:k + 256])))
                         for k in range(0, len(px), 256)])
        sims = img @ lab.t()
        rank = (sims > sims[torch.arange(len(items)), truth][:, None]).sum(1)
        print(f"{os.path.basename(os.path.normpath(args.png))}: scale {scale}, blur "
              f"{args.blur or '-'}, mirror {args.mirror}, grey {args.grey}: {len(items)} images, "
              f"{len(labels)} labels, top-1 {(rank < 1).float().mean():.3f}, "
              f"top-5 {(rank < 5).float().mean():.3f}", flush=True)


if __name__ == "__main__":
    main()
