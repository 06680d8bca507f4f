#!/usr/bin/python3
"""Independent reference for `clipmod policy evaluate`'s metrics, from the definitions.

  metrics_ref.py check EVAL.json   recompute every metric of clipmod's JSON output from
                                   the per-image scores and labels in it; exit 1 on any
                                   difference (the threshold search included)
  metrics_ref.py cases             print the hand-made cases of tests/unit/test_metrics.c
                                   and their numbers (the unit test's goldens)

Written from the definitions, not from the C code (src/cli/metrics.c):
  * ROC AUC = mean over all (positive, negative) pairs of [s+ > s-] + 1/2 [s+ == s-];
  * average precision as scikit-learn's average_precision_score: the thresholds are
    the distinct scores, highest first; AP = sum_k (R_k - R_{k-1}) P_k with R_0 = 0,
    P_k and R_k the precision and recall of flagging score >= threshold k;
  * an image is flagged at threshold t when score >= t;
  * a suggested threshold is judged by brute force over every distinct score (and
    "flag nothing"): it must satisfy the target, and no other cut may do better by
    the target's rule (fpr / precision: most positives flagged, then fewest negatives;
    recall: fewest negatives, then most positives; best F1 (with FPR <= 0.01 by
    default): highest F1, then fewest negatives).
"""
import json
import sys

import numpy as np


def roc_auc(s, y):
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        return None
    d = pos[:, None] - neg[None, :]
    return float(((d > 0).sum() + 0.5 * (d == 0).sum()) / (len(pos) * len(neg)))


def average_precision(s, y):
    npos = int(y.sum())
    if npos == 0:
        return None
    ap, prev_r = 0.0, 0.0
    for t in np.unique(s)[::-1]:
        flagged = s >= t
        tp = int((flagged & y).sum())
        p, r = tp / int(flagged.sum()), tp / npos
        ap += (r - prev_r) * p
        prev_r = r
    return float(ap)


def counts(s, y, t):
    f = s >= t
    tp, fp = int((f & y).sum()), int((f & ~y).sum())
    return tp, fp, int(y.sum()) - tp, int((~y).sum()) - fp


def rates(tp, fp, fn, tn):
    def div(a, b):
        return a / b if b else None
    return {"precision": div(tp, tp + fp), "recall": div(tp, tp + fn),
            "fpr": div(fp, fp + tn), "f1": div(2 * tp, 2 * tp + fp + fn)}


def ok(kind, value, tp, fp, fn, tn):
    r = rates(tp, fp, fn, tn)
    if kind == "default":
        return r["fpr"] is not None and r["fpr"] <= 0.01
    if kind == "fpr":
        return r["fpr"] is not None and r["fpr"] <= value
    if kind == "precision":
        return r["precision"] is not None and r["precision"] >= value
    if kind == "recall":
        return r["recall"] is not None and r["recall"] >= value
    return True  # f1


def objective(kind, tp, fp, fn, tn):
    """A key to maximise."""
    if kind in ("default", "f1"):
        f1 = rates(tp, fp, fn, tn)["f1"]
        return (-1.0 if f1 is None else f1, -fp)
    if kind in ("fpr", "precision"):
        return (tp, -fp)
    return (-fp, tp)  # recall


def best_cut(s, y, kind, value):
    cands = [np.inf] + list(np.unique(s)[::-1])
    best = None
    for t in cands:
        c = counts(s, y, t)
        if ok(kind, value, *c) and (best is None or objective(kind, *c) > objective(kind, *best)):
            best = c
    return best


def close(a, b, tol=1e-9):
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= tol


def check(path):
    d = json.load(open(path))
    rows = [r for r in d["results"] if r["state"] != "unscanned"]
    bad = []
    for cat in d["categories"]:
        cid = cat["id"]
        s = np.array([r["scores"][cid] for r in rows], dtype=np.float64)
        y = np.array([cid in r["labels"] for r in rows], dtype=bool)
        if cat["positives"] != int(y.sum()) or cat["negatives"] != int((~y).sum()):
            bad.append(f"{cid}: positives/negatives {cat['positives']}/{cat['negatives']}")
        for key, ref in (("roc_auc", roc_auc(s, y)), ("average_precision", average_precision(s, y))):
            if not close(cat[key], ref):
                bad.append(f"{cid}: {key} {cat[key]} != reference {ref}")
        cur = cat["current"]
        c = counts(s, y, cat["threshold"])
        if (cur["tp"], cur["fp"], cur["fn"], cur["tn"]) != c:
            bad.append(f"{cid}: counts at the threshold {cur} != reference {c}")
        for k, v in rates(*c).items():
            if not close(cur[k], v):
                bad.append(f"{cid}: {k} at the threshold {cur[k]} != reference {v}")
        for sg in cat["suggested"]:
            bad += check_suggestion(cid, s, y, sg)
    for b in bad:
        print("metrics_ref:", b)
    n = sum(len(c["suggested"]) for c in d["categories"])
    print(f"metrics_ref: {len(d['categories'])} categories, {len(rows)} images, {n} suggestions:"
          f" {'OK' if not bad else f'{len(bad)} differences'}")
    return 1 if bad else 0


def check_suggestion(cid, s, y, sg):
    kind, value = sg["target"], sg["value"]
    ref = best_cut(s, y, kind, value) if y.any() else None
    if sg["threshold"] is None:
        return [] if ref is None else [f"{cid}: {kind}={value}: none suggested, reference {ref}"]
    t = sg["threshold"]
    if not (0 < t <= 1):
        return [f"{cid}: {kind}={value}: threshold {t} not in (0, 1]"]
    c = counts(s, y, t)
    out = []
    if (sg["tp"], sg["fp"], sg["fn"], sg["tn"]) != c:
        out.append(f"{cid}: {kind}={value}: claimed counts != counts at {t}: {c}")
    if not ok(kind, value, *c):
        out.append(f"{cid}: {kind}={value}: threshold {t} does not reach the target: {c}")
    if ref is None or objective(kind, *c) != objective(kind, *ref):
        out.append(f"{cid}: {kind}={value}: threshold {t} gives {c}, the best cut gives {ref}")
    return out


# Hand-made cases: scores, labels (1 = positive). Ties across classes, ties within a
# class, all tied, one positive, no positives, no negatives.
CASES = {
    "ties": ([0.9, 0.8, 0.8, 0.7, 0.5, 0.5, 0.5, 0.2], [1, 1, 0, 1, 0, 1, 0, 0]),
    "separated": ([0.95, 0.9, 0.3, 0.2, 0.1], [1, 1, 0, 0, 0]),
    "all_tied": ([0.5, 0.5, 0.5, 0.5], [1, 0, 1, 0]),
    "one_positive": ([0.1, 0.4, 0.35, 0.8, 0.05, 0.6], [0, 0, 1, 0, 0, 0]),
    "no_positives": ([0.3, 0.2, 0.9], [0, 0, 0]),
    "no_negatives": ([0.3, 0.2, 0.9], [1, 1, 1]),
}
TARGETS = [("default", 0.01), ("fpr", 0.25), ("precision", 0.75), ("recall", 0.75), ("f1", None)]


def cases():
    for name, (s, y) in CASES.items():
        s, y = np.array(s, dtype=np.float64), np.array(y, dtype=bool)
        auc, ap = roc_auc(s, y), average_precision(s, y)
        print(f"{name}: auc={auc} ap={ap}")
        for kind, value in TARGETS:
            print(f"  {kind}={value}: best cut (tp, fp, fn, tn) = {best_cut(s, y, kind, value) if y.any() else None}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "check":
        sys.exit(check(sys.argv[2]))
    if len(sys.argv) == 2 and sys.argv[1] == "cases":
        cases()
        sys.exit(0)
    sys.exit(__doc__)
