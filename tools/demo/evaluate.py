#!/usr/bin/python3
"""Evaluate the demo CLIP through clipmod's C engine, on an art style it never saw.

  evaluate.py --clipmod PATH --model DIR --emojione DIR --policy FILE
              [--noto] [--torch-check] [--json OUT] [--card README.md]
              [--check README.md] [--suggest-thresholds [--also-style DIR]...]

Data: the EmojiOne 2.x/3.x PNGs (64x64) of Debian's ruby-gemojione package
(assets/png/<codepoints>.png). An image counts when its code points (U+FE0F
ignored, as CLDR writes them) have an English CLDR name; that name is its label.

Measured, all with the C engine (`clipmod embed` and `clipmod scan --json`), so the
numbers describe what users run:
  * zero-shot top-1 / top-5 accuracy: each label is embedded with every template of
    data.EVAL_TEMPLATES, averaged and normalised (prompt ensembling, as policies
    do); an image is classified by cosine against all labels. Reported for all
    images, for emoji seen in training (in Noto's style) and for emoji held out of
    training entirely;
  * with --noto, the same on clean Noto renders at the model's image size (the training
    style), for reference;
  * the demo moderation categories: `clipmod scan --json` with the policy; per
    category the ROC AUC of its score (positives: images of the emoji listed in
    data.CATEGORIES) and precision / recall of `flagged` at the policy's thresholds;
  * the thresholds' ceiling (threshold_ceiling): the recall thresholds chosen on these
    images themselves could reach with at most 2% of the other images flagged;
  * --suggest-thresholds: thresholds chosen on these images (a development style, not
    the evaluation style), with --also-style each kept within the bound on other styles;
  * --torch-check: embeddings of a few images and texts from tools/demo/model.py
    (float32, the same F16 weights) against the C engine's: max abs difference.

--card FILE replaces the block between "<!-- metrics:begin -->" and
"<!-- metrics:end -->" in FILE with the measured numbers (a JSON block and tables).
--check FILE compares the measured numbers with that block and exits 1 when one
moves by more than its tolerance (given in the block): accuracies and AUCs by an
absolute difference, counts of flagged images and of true positives (from which
precision and recall follow) by a number of images.
"""
import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import textwrap

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "reference"))
import data  # noqa: E402

# Tolerances written into the card and used by --check: absolute differences. They
# were set from measurements (see the model card, "How the numbers were measured").
TOLERANCE = {"accuracy": 0.005, "auc": 0.005, "images": 1}


def emojione_images(png_dir, cldr):
    out = []
    for f in sorted(os.listdir(png_dir)):
        if not f.endswith(".png"):
            continue
        try:
            cp = "".join(chr(int(h, 16)) for h in f[:-4].split("-"))
        except ValueError:
            continue
        cp = data.strip_fe0f(cp)
        if cp in cldr:
            out.append((os.path.join(png_dir, f), cp, cldr[cp]["name"]))
    return out


def run_embed(clipmod, model, images=(), texts=(), threads=None):
    cmd = [clipmod, "embed", "--model", model]
    if threads:
        cmd += ["--threads", str(threads)]
    for t in texts:
        cmd += ["--text", t]
    cmd += ["--image=" + p if p.startswith("-") else p for p in images]
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if res.returncode != 0:
        raise SystemExit(f"evaluate: clipmod embed failed ({res.returncode}): "
                         f"{res.stderr.decode(errors='replace')[-2000:]}")
    return json.loads(res.stdout)


def embed_images(clipmod, model, paths, chunk=400, threads=None):
    out = []
    for i in range(0, len(paths), chunk):
        d = run_embed(clipmod, model, images=paths[i:i + chunk], threads=threads)
        out += [im["embedding"] for im in d["images"]]
    return np.array(out, np.float64)


def embed_texts(clipmod, model, texts, chunk=800, threads=None):
    out = []
    for i in range(0, len(texts), chunk):
        d = run_embed(clipmod, model, texts=texts[i:i + chunk], threads=threads)
        out += [t["embedding"] for t in d["texts"]]
    return np.array(out, np.float64)


def label_embeddings(clipmod, model, labels, threads=None):
    tpl = data.EVAL_TEMPLATES
    e = embed_texts(clipmod, model, [t.format(l) for l in labels for t in tpl], threads=threads)
    e = e.reshape(len(labels), len(tpl), -1).mean(1)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def topk(img, lab, truth, ks=(1, 5)):
    sims = img @ lab.T
    order = np.argsort(-sims, axis=1, kind="stable")
    rank = np.array([int(np.where(order[i] == truth[i])[0][0]) for i in range(len(truth))])
    return {f"top{k}": rank < k for k in ks}, rank


def auc(scores, positive):
    """ROC AUC by the rank-sum (Mann-Whitney) formula, ties counted half."""
    scores = np.asarray(scores, np.float64)
    positive = np.asarray(positive, bool)
    n1, n0 = positive.sum(), (~positive).sum()
    if n1 == 0 or n0 == 0:
        return None
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    s = scores[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def run_scan(clipmod, model, policy, paths, chunk=400, threads=None):
    rows = []
    for i in range(0, len(paths), chunk):
        cmd = [clipmod, "scan", "--json", "-q", "--no-cache", "--policy", policy,
               "--model", model] + (["--threads", str(threads)] if threads else []) \
            + paths[i:i + chunk]
        res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        if res.returncode not in (0, 1):
            raise SystemExit(f"evaluate: clipmod scan failed ({res.returncode}): "
                             f"{res.stderr.decode(errors='replace')[-2000:]}")
        rows += [json.loads(l) for l in res.stdout.decode().splitlines() if l.strip()]
    if len(rows) != len(paths) or any(r["state"] == "unscanned" for r in rows):
        raise SystemExit("evaluate: some images were not scanned")
    return rows


FP_BUDGET = 0.02  # issue 16: at most 2% false positives over all categories together


def score_matrix(rows, names):
    """Scores [images, categories], the positives of the same shape, the category ids."""
    ids = [c["id"] for c in rows[0]["categories"]]
    col = {cid: j for j, cid in enumerate(ids)}
    score = np.zeros((len(rows), len(ids)))
    for i, r in enumerate(rows):
        for c in r["categories"]:
            score[i, col[c["id"]]] = c["score"]
    members = [set(data.CATEGORIES.get(cid, [])) for cid in ids]
    pos = np.array([[n in m for m in members] for n in names])
    return score, pos, ids


def category_metrics(rows, names):
    out = {}
    scores, positives, ids = score_matrix(rows, names)
    by_id = [{c["id"]: c for c in r["categories"]} for r in rows]
    for j, cid in enumerate(ids):
        score, pos = scores[:, j], positives[:, j]
        cats = [b[cid] for b in by_id]
        hit = np.array([c["flagged"] for c in cats])
        tp = int((hit & pos).sum())
        m = {"threshold": cats[0]["threshold"], "positives": int(pos.sum()),
             "negatives": int((~pos).sum()), "auc": auc(score, pos),
             "flagged": int(hit.sum()), "true_positives": tp,
             "precision": tp / hit.sum() if hit.sum() else None,
             "recall": tp / pos.sum() if pos.sum() else None,
             "missed": sorted({n for n, p, h in zip(names, pos, hit) if p and not h}),
             "false_alarms": sorted({n for n, p, h in zip(names, pos, hit) if h and not p})}
        out[cid] = m
    anycat = positives.any(1)
    flagged = np.array([r["state"] == "flagged" for r in rows])
    tp = int((flagged & anycat).sum())
    overall = {"positives": int(anycat.sum()), "flagged": int(flagged.sum()),
               "precision": tp / flagged.sum() if flagged.sum() else None,
               "recall": tp / anycat.sum() if anycat.sum() else None}
    return out, overall


MAX_FPR = 0.01


def threshold_ceiling(rows, names, budget=FP_BUDGET):
    """The recall that thresholds chosen on these very images could reach with at most
    `budget` of the images of no category flagged: every category's threshold just
    above its (k+1)-th highest negative, k the same share q of each category's
    negatives, q the largest that stays within the budget. Thresholds chosen elsewhere
    cannot be expected to do better, so this separates what the thresholds lose from
    what the model's scores allow (a uniform q, not the optimum over all threshold
    vectors: a lower bound of that optimum)."""
    score, pos, _ = score_matrix(rows, names)
    anyp = pos.any(1)
    negs = [np.sort(score[~pos[:, j], j])[::-1] for j in range(score.shape[1])]
    best = {"budget": budget, "share": 0.0, "recall": 0.0, "false_positives": 0.0}
    for q in np.arange(0.0, 0.05, 0.0005):
        t = np.array([n[min(int(q * len(n)), len(n) - 1)] + 1e-6 for n in negs])
        hit = (score >= t).any(1)
        fp = float((hit & ~anyp).sum() / max((~anyp).sum(), 1))
        if fp > budget:
            break
        rec = float((hit & anyp).sum() / max(anyp.sum(), 1))
        if rec > best["recall"]:
            best = {"budget": budget, "share": round(float(q), 4), "recall": rec,
                    "false_positives": fp}
    return best


def threshold_bound(score, pos, max_fpr):
    """The lowest threshold (2 decimals) that flags at most max_fpr of the negatives:
    just above the (k+1)-th highest negative score."""
    neg = np.sort(score[~pos])[::-1]
    k = int(max_fpr * len(neg))  # at most k negatives may reach the threshold
    return math.floor(neg[k] * 100 + 1) / 100


def suggest_thresholds(rows, names, max_fpr=None, others=()):
    """Per category, the threshold (a score, rounded to 2 decimals) of highest F1 among
    those that flag at most MAX_FPR of the negatives: precision first, as moderation
    wants. When no positive scores above that bound, the bound itself (recall 0).
    others: more (rows, names) of other art styles, which only raise the bound: it must
    hold in every style (the highest of the per-style bounds: a style whose images the
    model scores more confidently needs a higher threshold, and the style a user brings
    is not known). F1 is counted on rows' images alone: positives of styles the model
    was trained on score higher than a new style's and would pull the threshold up."""
    max_fpr = MAX_FPR if max_fpr is None else max_fpr
    styles = [score_matrix(r, n) for r, n in [(rows, names)] + list(others)]
    scores, positives, ids = styles[0]
    out = {}
    for j, cid in enumerate(ids):
        score, pos = scores[:, j], positives[:, j]
        bounds = [threshold_bound(sc[:, j], p[:, j], max_fpr) for sc, p, _ in styles]
        bound = max(bounds)
        best = (-1.0, bound)
        for t in sorted({math.floor(x * 100) / 100 for x in score[pos]} | {bound}):
            if t < bound:
                continue
            hit = score >= t
            tp = (hit & pos).sum()
            f1 = 2 * tp / (hit.sum() + pos.sum()) if pos.sum() else 0.0
            if f1 > best[0]:
                best = (float(f1), t)
        hit = score >= best[1]
        out[cid] = {"threshold": round(best[1], 2), "f1": round(best[0], 3),
                    "bound": round(bound, 2), "bounds": [round(b, 2) for b in bounds],
                    "flagged": int(hit.sum()), "true_positives": int((hit & pos).sum()),
                    "negatives_flagged": int((hit & ~pos).sum())}
    return out


def also_note(dirs):
    """", and in a-png, in b-png": the other styles a bound held in, for write_policy."""
    names = [os.path.basename(os.path.normpath(d)) for d in dirs]
    return ", and in " + ", in ".join(names) if names else ""


def write_policy(src, out, suggested, note, max_fpr, bound_note=""):
    """Copy the policy src to out with each category's threshold replaced by the
    suggested one (the line "threshold: X" inside the category's block), marked with
    note; bound_note names the other styles the bound held in (the file's header)."""
    lines, cid = [], None
    for line in open(src, encoding="utf-8").read().split("\n"):
        m = re.match(r"\s*- id: (\S+)", line)
        if m:
            cid = m.group(1)
        m = re.match(r"(\s*threshold: )[0-9.]+(.*)", line)
        if m and cid in suggested:
            line = f"{m.group(1)}{suggested[cid]['threshold']:.2f}  # {note}"
        lines.append(line)
    head = textwrap.fill(
        f"Written by tools/demo/evaluate.py --write-policy from {os.path.basename(src)}: "
        f"the same prompts; every threshold {note} (at most {max_fpr:.1%} of a category's "
        f"negatives flagged there{bound_note}, then best F1). The comments below about thresholds "
        f"describe the original policy.", 86, initial_indent="# ",
        subsequent_indent="# ", break_on_hyphens=False) + "\n"
    with open(out, "w", encoding="utf-8") as f:
        f.write(head + "\n".join(lines))


def load_torch(model_dir):
    """model_dir as tools/demo/model.py's CLIP (float32 from its F16 weights, eval mode):
    (config, model, tokenizer)."""
    import torch
    import model as M
    import safetensors_io
    import tokenizer_ref
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    m = M.CLIP(cfg)
    st = safetensors_io.SafeTensors(os.path.join(model_dir, "model.safetensors"))
    m.load_state_dict({k: torch.from_numpy(np.array(st.numpy(k), np.float32))
                       for k in st.keys()})
    m.eval()
    tok = tokenizer_ref.Tokenizer(tokenizer_ref.load_merges(os.path.join(model_dir, "merges.txt")))
    return cfg, m, tok


def torch_check(clipmod, model_dir, paths, texts, threads=None):
    """Max abs difference between model.py (float32) and the C engine's embeddings."""
    import torch
    from PIL import Image
    cfg, m, tok = load_torch(model_dir)
    size = cfg["vision_config"]["image_size"]
    mean = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
    std = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
    px = []
    for p in paths:  # RGB PNGs of exactly image_size: no resize in either
        a = np.asarray(Image.open(p).convert("RGB"), np.float32) * np.float32(1 / 255)
        assert a.shape[:2] == (size, size)
        px.append(((a - mean) / std).transpose(2, 0, 1))
    with torch.no_grad():
        ti = m.encode_image(torch.from_numpy(np.stack(px))).numpy()
        tt = torch.cat([m.encode_text(torch.tensor([tok.tokenize(t)[0]])) for t in texts]).numpy()
    d = run_embed(clipmod, model_dir, images=paths, texts=texts, threads=threads)
    ci = np.array([x["embedding"] for x in d["images"]])
    ct = np.array([x["embedding"] for x in d["texts"]])
    ids_ok = all(x["ids"] == tok.tokenize(t)[0] for x, t in zip(d["texts"], texts))
    return {"images": len(paths), "texts": len(texts),
            "max_abs_diff_image": float(np.abs(ti - ci).max()),
            "max_abs_diff_text": float(np.abs(tt - ct).max()),
            "token_ids_identical": ids_ok,
            "logit_scale_torch": float(m.logit_scale.exp()), "logit_scale_c": d["logit_scale"]}


def accuracy_block(img, lab, labels, items, groups_of):
    index = {l: i for i, l in enumerate(labels)}
    truth = np.array([index[n] for _, _, n in items])
    hits, rank = topk(img, lab, truth)
    res = {}
    for part in ("all", "seen", "heldout", "unseen_other"):
        sel = np.array([part == "all" or groups_of(cp) == part for _, cp, _ in items])
        if sel.sum() == 0:
            continue
        res[part] = {"images": int(sel.sum()),
                     "top1": round(float(hits["top1"][sel].mean()), 4),
                     "top5": round(float(hits["top5"][sel].mean()), 4)}
    return res, rank


def render_noto(glyphs, out_dir, size):
    items = []
    for i, cp in enumerate(glyphs.cps):
        p = os.path.join(out_dir, f"{i:05d}.png")
        data.clean_render(glyphs, i, size).save(p)
        items.append((p, cp, glyphs.names[i]))
    return items


def fmt(x, spec=".2f"):
    return "-" if x is None else format(x, spec)


def card_block(res):
    """The Markdown that --card writes between the markers."""
    acc, cats = res["zero_shot"]["emojione"], res["categories"]
    lines = ["```json", json.dumps({k: res[k] for k in ("summary", "tolerance")}, indent=1),
             "```", "",
             "| zero-shot, CLDR names as labels | images | top-1 | top-5 |",
             "|---|---|---|---|"]
    names = {"all": "EmojiOne, all", "seen": "EmojiOne, emoji seen in training (Noto style)",
             "heldout": "EmojiOne, emoji held out of training",
             "unseen_other": "EmojiOne, emoji Noto/CLDR 41 lack (never trained)"}
    for k, v in acc.items():
        lines.append(f"| {names[k]} | {v['images']} | {v['top1']:.1%} | {v['top5']:.1%} |")
    if "noto" in res["zero_shot"]:
        for k, v in res["zero_shot"]["noto"].items():
            lines.append(f"| Noto renders (training style), {k} | {v['images']} | "
                         f"{v['top1']:.1%} | {v['top5']:.1%} |")
    noto = (f"; Noto rows: all {res['zero_shot']['noto_labels']} names of the font's emoji"
            if "noto_labels" in res["zero_shot"] else "")
    lines += ["", f"Labels: the {res['zero_shot']['labels']} CLDR names of the EmojiOne images "
              f"(chance top-1 {1 / res['zero_shot']['labels']:.2%}){noto}; templates: "
              + ", ".join(f"`{t}`" for t in data.EVAL_TEMPLATES) + ".", "",
              "| category | threshold | positives / negatives | ROC AUC | flagged | precision | recall |",
              "|---|---|---|---|---|---|---|"]
    for cid, m in cats.items():
        pr = "-" if m["precision"] is None else f"{m['precision']:.2f}"
        rc = "-" if m["recall"] is None else f"{m['recall']:.2f}"
        au = "-" if m["auc"] is None else f"{m['auc']:.3f}"
        lines.append(f"| {cid} | {m['threshold']} | {m['positives']} / {m['negatives']} | {au} | "
                     f"{m['flagged']} | {pr} | {rc} |")
    o = res["flagged_overall"]
    lines += ["", f"Any category (image flagged vs. image of a category emoji): "
              f"{o['flagged']} flagged, {o['positives']} positives, precision "
              f"{fmt(o['precision'])}, recall {fmt(o['recall'])}."]
    if "ceiling" in res:
        c = res["ceiling"]
        lines += ["", f"Ceiling of the thresholds: chosen on these images themselves (each "
                  f"category flagging the same share, {c['share']:.2%}, of its negatives, the "
                  f"most that keeps the images of no category within {c['budget']:.0%}), recall "
                  f"{c['recall']:.2f} at {c['false_positives']:.1%} false positives. Thresholds "
                  f"chosen on another style are not expected to beat this; what separates it "
                  f"from the target is the model's scores."]
    if "torch_check" in res:
        t = res["torch_check"]
        lines += ["", f"PyTorch (tools/demo/model.py, float32 from the same F16 weights) against "
                  f"the C engine on {t['images']} images and {t['texts']} texts: max abs "
                  f"difference of normalised embeddings {t['max_abs_diff_image']:.1e} (images), "
                  f"{t['max_abs_diff_text']:.1e} (texts); token ids identical: "
                  f"{'yes' if t['token_ids_identical'] else 'NO'}."]
    return "\n".join(lines)


def summary(res):
    s = {}
    for k, v in res["zero_shot"]["emojione"].items():
        s[f"emojione_{k}_top1"] = v["top1"]
        s[f"emojione_{k}_top5"] = v["top5"]
    for cid, m in res["categories"].items():
        s[f"{cid}_auc"] = None if m["auc"] is None else round(m["auc"], 4)
        s[f"{cid}_flagged"] = m["flagged"]
        s[f"{cid}_true_positives"] = m["true_positives"]
    s["flagged_images"] = res["flagged_overall"]["flagged"]
    return s


BEGIN, END = "<!-- metrics:begin -->", "<!-- metrics:end -->"


def read_card(path):
    text = open(path, encoding="utf-8").read()
    m = re.search(re.escape(BEGIN) + r".*?```json\n(.*?)\n```", text, re.S)
    if not m:
        raise SystemExit(f"{path}: no metrics block")
    return text, json.loads(m.group(1))


def check(res, card):
    _, block = read_card(card)
    want, tol = block["summary"], block["tolerance"]
    bad = []
    for k, v in want.items():
        got = res["summary"].get(k)
        kind = "accuracy" if "_top" in k else ("auc" if k.endswith("_auc") else "images")
        if v is None or got is None:
            if v != got:
                bad.append(f"{k}: card {v}, measured {got}")
            continue
        ok = abs(got - v) <= tol[kind] + 1e-9
        print(f"{'ok  ' if ok else 'FAIL'} {k}: card {v}, measured {got} (tolerance {tol[kind]})")
        if not ok:
            bad.append(k)
    return bad


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clipmod", required=True, help="the clipmod program")
    ap.add_argument("--model", required=True)
    ap.add_argument("--emojione", required=True, help="ruby-gemojione's assets/png directory")
    ap.add_argument("--policy", required=True, help="policies/demo.yaml")
    ap.add_argument("--cache", help="glyph cache file (built when missing; default: none)")
    ap.add_argument("--threads", type=int, default=1,
                    help="clipmod --threads (default 1: the evaluation is small)")
    ap.add_argument("--noto", action="store_true", help="also evaluate clean Noto renders")
    ap.add_argument("--torch-check", action="store_true")
    ap.add_argument("--suggest-thresholds", action="store_true")
    ap.add_argument("--max-fpr", type=float, default=MAX_FPR,
                    help="--suggest-thresholds: share of a category's negatives a "
                         "threshold may flag (default %(default)s)")
    ap.add_argument("--write-policy", metavar="OUT",
                    help="with --suggest-thresholds: write the policy with the suggested "
                         "thresholds to OUT (choose them on a development style, then "
                         "evaluate EmojiOne with OUT)")
    ap.add_argument("--also-style", action="append", default=[], metavar="DIR",
                    help="with --suggest-thresholds: renders of another art style (named "
                         "by code points, as --emojione's); every threshold must then keep "
                         "--max-fpr in each style (repeatable)")
    ap.add_argument("--json", help="write all results here")
    ap.add_argument("--card", help="update the metrics block of this model card")
    ap.add_argument("--check", help="compare with the metrics block of this model card")
    args = ap.parse_args()

    glyphs = data.Glyphs(args.cache)
    cldr = data.load_cldr()
    train = set(glyphs.train_groups)
    held = set(glyphs.heldout_groups)

    def groups_of(cp):
        g = data.group_key(cp)
        return "seen" if g in train else ("heldout" if g in held else "unseen_other")

    items = emojione_images(args.emojione, cldr)
    if not items:
        raise SystemExit(f"evaluate: no EmojiOne PNGs with CLDR names in {args.emojione}")
    labels = sorted({n for _, _, n in items})
    paths = [p for p, _, _ in items]
    names = [n for _, _, n in items]
    res = {"model": args.model, "emojione_dir": args.emojione, "images": len(items)}
    lab = label_embeddings(args.clipmod, args.model, labels, args.threads)
    img = embed_images(args.clipmod, args.model, paths, threads=args.threads)
    acc, rank = accuracy_block(img, lab, labels, items, groups_of)
    res["zero_shot"] = {"labels": len(labels), "templates": data.EVAL_TEMPLATES,
                        "emojione": acc}
    res["per_image_rank"] = {os.path.basename(p): int(r) for p, r in zip(paths, rank)}
    if args.noto:
        with tempfile.TemporaryDirectory() as tmp:
            size = json.load(open(os.path.join(args.model, "config.json")))[
                "vision_config"]["image_size"]
            nitems = render_noto(glyphs, tmp, size)  # the model's size: no resize
            nlabels = sorted({n for _, _, n in nitems})
            nlab = label_embeddings(args.clipmod, args.model, nlabels, args.threads)
            nimg = embed_images(args.clipmod, args.model, [p for p, _, _ in nitems],
                                threads=args.threads)
            nacc, _ = accuracy_block(nimg, nlab, nlabels, nitems, groups_of)
            res["zero_shot"]["noto"] = nacc
            res["zero_shot"]["noto_labels"] = len(nlabels)
            if args.torch_check:
                res["torch_check"] = torch_check(
                    args.clipmod, args.model, [p for p, _, _ in nitems[::400]],
                    ["an emoji of beer mug.", "a picture of water pistol and pill.",
                     "a cartoon of flag: Côte d’Ivoire.", "skull and crossbones", "bomb"],
                    args.threads)
    rows = run_scan(args.clipmod, args.model, args.policy, paths, threads=args.threads)
    res["categories"], res["flagged_overall"] = category_metrics(rows, names)
    res["ceiling"] = threshold_ceiling(rows, names)
    if args.suggest_thresholds:
        others = []
        for d in args.also_style:
            more = emojione_images(d, cldr)
            others.append((run_scan(args.clipmod, args.model, args.policy,
                                    [p for p, _, _ in more], threads=args.threads),
                           [n for _, _, n in more]))
        res["suggested_thresholds"] = suggest_thresholds(rows, names, args.max_fpr, others)
        if args.write_policy:
            write_policy(args.policy, args.write_policy, res["suggested_thresholds"],
                         f"chosen on {os.path.basename(os.path.normpath(args.emojione))}",
                         args.max_fpr, also_note(args.also_style))
    res["summary"] = summary(res)
    res["tolerance"] = TOLERANCE
    out = json.dumps(res, indent=1, ensure_ascii=False)
    if args.json:
        with open(args.json, "w") as f:
            f.write(out + "\n")
    print(card_block(res))
    if args.suggest_thresholds:
        print(json.dumps(res["suggested_thresholds"], indent=1))
    if args.card:
        text = (open(args.card, encoding="utf-8").read() if os.path.exists(args.card)
                else f"# Evaluation of {args.model}\n\n{BEGIN}\n{END}\n")
        new = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END),
                     lambda _: BEGIN + "\n" + card_block(res) + "\n" + END, text, flags=re.S)
        with open(args.card, "w", encoding="utf-8") as f:
            f.write(new)
    if args.check:
        bad = check(res, args.check)
        if bad:
            print("evaluate: measured numbers differ from the model card: " + ", ".join(bad))
            sys.exit(1)


if __name__ == "__main__":
    main()
