#!/usr/bin/python3
"""Compare `clipmod embed` JSON with golden embeddings from tests/reference/make_goldens.py.

Usage: compare_embeddings.py OURS.json GOLDEN.json --tol T [--ids]
Prints the max abs difference of the normalised image and text embeddings and exits
1 if either exceeds T (or, with --ids, if any text's token ids differ).
"""
import argparse
import json
import sys

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ours")
    ap.add_argument("golden")
    ap.add_argument("--tol", type=float, required=True)
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    ours = json.load(open(args.ours))
    gold = json.load(open(args.golden))
    ok = True
    for kind in ("images", "texts"):
        a, b = ours[kind], gold[kind]
        if len(a) != len(b):
            print(f"{args.label} {kind}: {len(a)} ours vs {len(b)} golden")
            return 1
        if not a:
            continue
        diff = max(float(np.abs(np.array(x["embedding"]) - np.array(y["embedding"])).max())
                   for x, y in zip(a, b))
        status = "ok" if diff <= args.tol else "FAIL"
        ok &= diff <= args.tol
        print(f"{args.label} {kind}: {len(a)} compared, max abs diff {diff:.3g} "
              f"(tolerance {args.tol:g}) {status}")
        if kind == "texts":
            for x, y in zip(a, b):
                if x["ids"] != y["ids"]:
                    print(f"{args.label} ids differ for {x['text']!r}: {x['ids']} vs {y['ids']}")
                    ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
