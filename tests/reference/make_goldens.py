#!/usr/bin/python3
"""Golden embeddings for clipmod tests: preprocess_ref + tokenizer_ref + clip_ref in float64.

  make_goldens.py MODEL_DIR --images IMG... --texts-file FILE --out GOLDEN.json
                  [--merges PATH] [--threads N]

Images are preprocessed at the model's vision_config.image_size (CLIP mean/std).
Texts: FILE holds one text per line (UTF-8, blank lines skipped), or, if FILE
ends in .jsonl, one JSON string per line.  Merges come from MODEL_DIR/merges.txt
unless --merges is given; the tokenizer vocabulary must equal the model's
vocab_size.  The text tower runs on the unpadded SOT..EOT ids.

Output JSON: {"model", "layout", "dtype": "float64", "image_size",
 "images": [{"path", "resized", "crop", "embedding"}],
 "texts": [{"text", "ids", "truncated", "embedding"}],
 "logit_scale": exp(logit_scale), "logits_per_image": [[...]]}
Embeddings are L2-normalised; floats are written with full float64 precision.
"""
import argparse
import json
import math
import os
import time

import numpy as np
import torch

import clip_ref
import preprocess_ref
import tokenizer_ref


def read_texts(path):
    with open(path, "rb") as f:
        lines = [l for l in f.read().decode("utf-8").split("\n") if l.strip()]
    if path.endswith(".jsonl"):
        return [json.loads(l) for l in lines]
    return [l.rstrip("\r") for l in lines]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("--images", nargs="+", default=[], metavar="IMG")
    ap.add_argument("--texts-file", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--merges", help="default: MODEL_DIR/merges.txt")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()

    model = clip_ref.Model(args.model_dir, torch.float64)
    size = model.vcfg["image_size"]
    # No texts (no merges file on this machine): the tokenizer is not needed, and a
    # checkpoint written without merges has none to load.
    text_list = read_texts(args.texts_file)
    tok = None
    if text_list:
        tok = tokenizer_ref.Tokenizer(tokenizer_ref.load_merges(
            args.merges or os.path.join(args.model_dir, "merges.txt")))
        if tok.eot_id != model.eot_id:
            raise SystemExit(f"tokenizer EOT {tok.eot_id} != model vocab_size-1 {model.eot_id}")

    images = []
    if args.images:
        pix = []
        for path in args.images:
            x, info = preprocess_ref.preprocess(path, size)
            pix.append(torch.from_numpy(x.astype(np.float64)))
            images.append({"path": path, "resized": info["resized"], "crop": info["crop"]})
        emb = clip_ref.encode_images(model, torch.stack(pix))
        for rec, e in zip(images, emb.tolist()):
            rec["embedding"] = e

    texts = []
    for t in text_list:
        ids, trunc = tok.tokenize(t)
        texts.append({"text": t, "ids": ids, "truncated": trunc})
    if texts:
        emb = clip_ref.encode_texts(model, [r["ids"] for r in texts])
        for rec, e in zip(texts, emb.tolist()):
            rec["embedding"] = e

    scale = math.exp(float(model["logit_scale"]))
    logits = []
    if images and texts:
        img = torch.tensor([r["embedding"] for r in images], dtype=torch.float64)
        txt = torch.tensor([r["embedding"] for r in texts], dtype=torch.float64)
        logits = (scale * img @ txt.t()).tolist()
    out = {"model": args.model_dir, "layout": model.layout, "dtype": "float64",
           "image_size": size, "images": images, "texts": texts,
           "logit_scale": scale, "logits_per_image": logits}
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)
        f.write("\n")
    print(f"{args.out}: {len(images)} images, {len(texts)} texts, {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
