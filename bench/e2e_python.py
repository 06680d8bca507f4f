"""e2e_python.py - the Python pipeline `clipmod scan` is compared with (bench/e2e_scan.sh).

What it does, as a careful Python user would write it with PIL and ONNX Runtime:
  * decoding and preprocessing in a multiprocessing.Pool of --procs workers (both
    cores by default): Image.open, Image.draft("RGB", (S, S)) so the JPEG decoder
    shrinks in the DCT domain (scale 1/2../1/8, result at least S on each side), then
    Hugging Face CLIPImageProcessor's steps: convert to RGB, resize the shortest side
    to S with PIL's bicubic filter, centre crop S x S, scale to [0, 1], normalise with
    CLIP's mean/std, HWC -> CHW float32;
  * the image tower in ONNX Runtime (onnxruntime-node, since Debian has no
    python3-onnxruntime): bench/e2e_ort_worker.js, a node process that loads the ONNX
    file once and answers batches of --batch tensors through a pipe;
  * the pool keeps decoding the next images while the worker runs a batch (imap queues
    every file at once), so decode and inference overlap as in clipmod's pipeline;
  * scoring: L2-normalise each embedding and take its cosine with --prompts unit
    vectors (stand-ins for the policy's prompt embeddings: a 512 x P product, a
    negligible cost next to the tower), then the arg-max, as a verdict would.

Prints one JSON line: images, load_s (pool + ORT session ready, from process start),
scan_s (first image submitted to last verdict), images_per_s (steady state: images /
scan_s), total_s (from interpreter start to the end of the work).
Usage: e2e_python.py --onnx F --worker JS [--ort-dir D] [--batch 8] [--procs 2]
       [--threads 2] [--prompts 48] [--size 224] FILE...
"""
import argparse
import json
import multiprocessing as mp
import os
import struct
import subprocess
import sys
import time

T_START = time.monotonic()

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)
SIZE = 224


def preprocess(path):
    with Image.open(path) as im:
        im.draft("RGB", (SIZE, SIZE))
        im = im.convert("RGB")
        w, h = im.size
        if w <= h:
            nw, nh = SIZE, int(SIZE * h / w)
        else:
            nw, nh = int(SIZE * w / h), SIZE
        im = im.resize((nw, nh), Image.BICUBIC)
        left, top = (nw - SIZE) // 2, (nh - SIZE) // 2
        im = im.crop((left, top, left + SIZE, top + SIZE))
    a = (np.asarray(im, dtype=np.float32) / 255.0 - MEAN) / STD
    return np.ascontiguousarray(a.transpose(2, 0, 1)).tobytes()


def read_exact(f, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = f.read(n - len(buf))
        if not chunk:
            raise SystemExit("e2e_python: the ORT worker ended early")
        buf += chunk
    return bytes(buf)


def main():
    global SIZE
    ap = argparse.ArgumentParser()
    ap.add_argument("--onnx", required=True)
    ap.add_argument("--worker", required=True)
    ap.add_argument("--ort-dir", default="")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=48)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    SIZE = a.size
    cmd = ["node", a.worker, a.onnx, "--size", str(a.size), "--threads", str(a.threads)]
    if a.ort_dir:
        cmd += ["--ort-dir", a.ort_dir]
    worker = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    pool = mp.Pool(a.procs)
    rng = np.random.default_rng(1)
    prompts = rng.standard_normal((a.prompts, a.dim)).astype(np.float32)
    prompts /= np.linalg.norm(prompts, axis=1, keepdims=True)
    if worker.stdout.readline() != b"ready\n":
        raise SystemExit("e2e_python: the ORT worker did not start")
    t_loaded = time.monotonic()

    verdicts = []
    pending = []

    def run_batch():
        worker.stdin.write(struct.pack("<I", len(pending)) + b"".join(pending))
        worker.stdin.flush()
        emb = np.frombuffer(read_exact(worker.stdout, len(pending) * a.dim * 4), dtype=np.float32)
        emb = emb.reshape(len(pending), a.dim)
        emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
        verdicts.extend(np.argmax(emb @ prompts.T, axis=1).tolist())
        pending.clear()

    for px in pool.imap(preprocess, a.files):
        pending.append(px)
        if len(pending) == a.batch:
            run_batch()
    if pending:
        run_batch()
    t_end = time.monotonic()
    worker.stdin.write(struct.pack("<I", 0))
    worker.stdin.close()
    worker.wait()
    pool.close()
    pool.join()
    n = len(verdicts)
    print(json.dumps({"engine": "python", "images": n, "load_s": round(t_loaded - T_START, 3),
                      "scan_s": round(t_end - t_loaded, 3),
                      "images_per_s": round(n / (t_end - t_loaded), 3),
                      "total_s": round(t_end - T_START, 3)}))


if __name__ == "__main__":
    main()
