#!/usr/bin/python3
"""head_ref.py - an independent reference for clipmod's learned heads (numpy only).

Written from clipmod-policy(5)'s description of a head, not from clipmod's code:

  read HEAD                  print the head's metadata and shapes as JSON
  fit HEAD EMB.json LABELS   refit the head's logistic regression at the head's own C
                             (liblinear's L2R_LR objective: 0.5 |w|^2 + sum_i C_i
                             log(1 + exp(-y_i w.x_i)), the bias a feature of value 1,
                             C_i = C * n / (2 * count of y_i's class)) by Newton's method
                             on the embeddings of `clipmod embed --json` and labels
                             (a file of 0/1 per image, in the same order); compare its
                             decision values with the head's
  score HEAD EMB.json        print the head's probability for each embedding:
                             1 / (1 + exp(-(c0 * (w.e + b) + c1)))
  write OUT [--nan] [--dim D] [--model FP] [--category ID]
                             a small valid (or deliberately broken) head for tests
"""
import json
import struct
import sys

import numpy as np


def read(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    data = raw[8 + n :]
    out = {}
    for name, d in header.items():
        b, e = d["data_offsets"]
        dt = {"F32": np.float32, "U8": np.uint8}[d["dtype"]]
        out[name] = np.frombuffer(data[b:e], dtype=dt).reshape(d["shape"])
    return meta, out


def embeddings(path):
    doc = json.load(open(path))
    return np.array([im["embedding"] for im in doc["images"]], dtype=np.float64)


def head_z(t, x):
    return x @ t["weight"].astype(np.float64) + float(t["bias"][0])


def newton_lr(x, y, c):
    """liblinear L2R_LR with balanced class weights, bias as a regularised feature."""
    n = len(y)
    xb = np.hstack([x, np.ones((n, 1))])
    s = np.where(y > 0, 1.0, -1.0)
    pos = (y > 0).sum()
    ci = np.where(y > 0, c * n / (2.0 * pos), c * n / (2.0 * (n - pos)))
    w = np.zeros(xb.shape[1])
    for _ in range(100):
        m = s * (xb @ w)
        p = 1.0 / (1.0 + np.exp(m))  # sigma(-m)
        g = w - xb.T @ (ci * s * p)
        h = np.eye(len(w)) + xb.T @ (xb * (ci * p * (1 - p))[:, None])
        step = np.linalg.solve(h, g)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return w


def cmd_fit(head, emb, labels):
    meta, t = read(head)
    x = embeddings(emb)
    y = np.array([int(v) for v in open(labels).read().split()])
    assert len(y) == len(x), (len(y), len(x))
    w = newton_lr(x, y, float(meta["c"]))
    z_ref = np.hstack([x, np.ones((len(x), 1))]) @ w
    z = head_z(t, x)
    scale = z_ref.std()
    err = np.abs(z - z_ref).max() / scale
    print(json.dumps({"max_rel_diff": err, "scale": scale, "corr": float(np.corrcoef(z, z_ref)[0, 1])}))
    # liblinear stops at a relative gradient norm of 0.01: close, not identical.
    if err > 0.05:
        sys.exit("decision values differ from the reference fit by %.3f of their spread" % err)


def cmd_score(head, emb):
    _, t = read(head)
    z = head_z(t, embeddings(emb))
    c0, c1 = (float(v) for v in t["calibration"])
    for p in 1.0 / (1.0 + np.exp(-(c0 * z + c1))):
        print("%.6f" % p)


def cmd_write(out, args):
    dim, nan, model, cat = 128, False, "0" * 16, "alcohol"
    i = 0
    while i < len(args):
        if args[i] == "--nan":
            nan = True
        elif args[i] == "--dim":
            dim = int(args[i + 1]); i += 1
        elif args[i] == "--model":
            model = args[i + 1]; i += 1
        elif args[i] == "--category":
            cat = args[i + 1]; i += 1
        i += 1
    w = np.full(dim, 0.01, dtype=np.float32)
    if nan:
        w[3] = np.nan
    tensors = {"weight": w, "bias": np.zeros(1, np.float32), "calibration": np.array([1, 0], np.float32)}
    meta = {"format": "clipmod-head", "format_version": "1", "category": cat,
            "model_fingerprint": model, "embed_dim": str(dim)}
    header, blob = {"__metadata__": meta}, b""
    for name, a in tensors.items():
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [len(blob), len(blob) + a.nbytes]}
        blob += a.tobytes()
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    open(out, "wb").write(struct.pack("<Q", len(h)) + h + blob)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "read":
        meta, t = read(args[0])
        print(json.dumps({"meta": meta, "shapes": {k: list(v.shape) for k, v in t.items()}}))
    elif cmd == "fit":
        cmd_fit(*args)
    elif cmd == "score":
        cmd_score(*args)
    elif cmd == "write":
        cmd_write(args[0], args[1:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
