#!/usr/bin/python3
"""Train clipmod's demo CLIP on emoji art sets + CLDR names, and write a model directory.

  train.py --out DIR [--seed 1] [--recipe v1|v2] [--steps N] [--batch B] [--threads 2]
           [--styles noto:0.3,twemoji:0.3,fluent:0.2,fluent-modern:0.2] [--style-aug P]
           [--light P] [--pairs P] [--pair-loss W] [--ema DECAY] [--probe-every N]
           [--quick-eval PNG_DIR]

Recipes (RECIPES): v1 (models/demo, `make demo-model`) is selected by v1's command
line `--styles noto:1 --style-aug 0` (one style) and draws exactly the random numbers
it always drew; otherwise the defaults are the v2 candidate's recipe (`make
demo-model-v2`, issue 16): four styles, near-clean renders (data.make_light_sample),
no restyle, half of each batch as cross-style pairs. --probe-every N prints, every N
steps, a cheap PyTorch proxy (zero-shot top-1/top-5 on 500 clean renders of each
--probe-styles style against all their CLDR names) to rank recipes; it does not change
the training.

Steps, all from the seed, on the CPU:
  1. styles.glyphs: every CLDR emoji of each art set as an RGBA glyph (Noto rendered
     by data.Glyphs from the font, the npm sets fetched and rendered by styles.py;
     all cached in ~/.cache/clipmod-demo);
  2. bpe.learn: BPE merges from the training emoji's names and keywords
     -> DIR/merges.txt, vocab_size = 512 + merges + 2;
  3. model.CLIP (architecture of libclipmod, sizes below), CLIP init;
  4. N steps of AdamW on the symmetric contrastive loss of CLIP (image->text and
     text->image cross-entropy over the batch, logits = exp(logit_scale) * cos, with
     the learned logit_scale clamped to [0, ln 100] and learning 5x faster); samples are drawn fresh each
     step by data.make_sample (augmented; held-out emoji never appear), each in an
     art style drawn by weight and, with probability --style-aug, redrawn by
     data.restyle. Pairs whose captions are identical count as positives of each other;
  5. export: DIR/model.safetensors (F16, Hugging Face names, written with
     tests/reference/safetensors_io.py) and DIR/config.json.

Reproducible: the same seed, steps, batch and thread count give the same model on the
same machine (torch's CPU kernels are deterministic for a fixed thread count).
"""
import argparse
import json
import math
import os
import sys
import time

# Threads wait passively: with the default (spinning) OpenMP waits, two training
# threads on a 2-core machine that also runs other jobs slow down 5-10x.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import blas  # noqa: E402

# Before numpy and torch load OpenBLAS: its kernels must be this CPU's (blas.py).
BLAS = blas.ensure_cpu_kernels()

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F

sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "reference"))
import bpe  # noqa: E402
import data  # noqa: E402
import model as M  # noqa: E402
import safetensors_io  # noqa: E402
import styles  # noqa: E402
import tokenizer_ref  # noqa: E402
from PIL import Image  # noqa: E402

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)

# The demo model's shape (the vocabulary size comes from the learned merges).
IMAGE_SIZE, PATCH = 48, 8
VISION = dict(width=192, layers=6, heads=3, image_size=IMAGE_SIZE, patch_size=PATCH)
TEXT = dict(width=192, layers=4, heads=3)
# Art styles trained on, with the share of samples drawn from each (v2). EmojiOne
# (the evaluation style) and OpenMoji (the development style, on which the policy's
# thresholds are chosen) are never trained on.
# Recipes: v1 is models/demo's (`make demo-model`); v2 (`make demo-model-v2`) the
# candidate of issue 16. An option not given on the command line takes the recipe's
# value; the recipe defaults to v1 when --styles names one style (v1's command line,
# `--styles noto:1 --style-aug 0`, still writes the shipped files), else v2.
RECIPES = {
    "v1": dict(styles="noto:1", style_aug=0.0, light=0.0, steps=1200, batch=128, lr=7e-4,
               wd=0.1, warmup=60, text_layers=4, pairs=0.0, pair_loss=0.0),
    # the first candidate (heavy canvases, style_aug 0.5) stayed near chance even on
    # its own styles; near-clean renders learn faster (README of the candidate)
    # 2500 steps: about 1.1 s each on 2 cores once OpenBLAS runs this CPU's kernels (blas.py).
    # OpenMoji is the development style (not trained: its CC BY-SA stays out of the
    # weights); half of each batch comes as cross-style pairs with an image-image term
    # of weight 0.5 (EmojiOne 13.5% top-1 against 11.0% without; all of the batch at
    # weight 1.0 gave 13.0%: the candidate's README)
    "v2": dict(styles="noto:0.3,twemoji:0.3,fluent:0.2,fluent-modern:0.2", style_aug=0.0,
               light=1.0, steps=2500, batch=128, lr=7e-4, wd=0.1, warmup=100,
               text_layers=4, pairs=0.5, pair_loss=0.5),
}
PROJECTION = 128
CONTEXT = 77
NAME = "clipmod/demo-emoji"


def pixels(imgs):
    """PIL RGB images at IMAGE_SIZE -> normalised float tensor [b,3,S,S] (what
    libclipmod computes for an image of exactly that size: no resize, no crop)."""
    a = np.stack([np.asarray(im, np.float32) for im in imgs]) * np.float32(1 / 255)
    a = (a - CLIP_MEAN) / CLIP_STD
    return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))


def tokens(tok, texts):
    rows = [tok.tokenize(t)[0] for t in texts]
    n = max(len(r) for r in rows)
    ids = torch.full((len(rows), n), tok.eot_id, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
    return ids


def batch(sets, weights, rng, tok, size, style_aug, light=0.0, pairs=0.0, index=None):
    """A batch whose every sample draws its art style by weight (one style per
    canvas), so each batch mixes styles and the same emoji in two styles are
    positives of each other when their captions agree. A share `light` of the
    samples are data.make_light_sample's near-clean renders (v2), the rest
    data.make_sample's heavily augmented canvases. A share `pairs` of the batch
    comes as cross_style_pair's (none drawn at 0: the other recipes' samples are
    unchanged)."""
    imgs, texts = [], []
    while len(imgs) < int(size * pairs) - 1:
        pair, text = cross_style_pair(sets, weights, rng, index, style_aug)
        imgs += pair
        texts += [text] * len(pair)
    while len(imgs) < size:
        # one style draws no random number, so v1's recipe (noto:1) is unchanged
        g = sets[int(rng.choice(len(sets), p=weights))] if len(sets) > 1 else sets[0]
        if light and (light >= 1 or rng.random() < light):
            img, text, _ = data.make_light_sample(g, rng, IMAGE_SIZE, g.train_groups,
                                                  style_aug=style_aug)
        else:
            img, text, _ = data.make_sample(g, rng, IMAGE_SIZE, g.train_groups,
                                            style_aug=style_aug)
        imgs.append(img)
        texts.append(text)
    # positives: identical captions (lower-cased, as the tokenizer sees them)
    keys = [tokenizer_ref.clean(t) for t in texts]
    same = torch.tensor([[a == b for b in keys] for a in keys], dtype=torch.float32)
    return pixels(imgs), tokens(tok, texts), same


def cross_style_pair(sets, weights, rng, index, style_aug):
    """One emoji drawn in two art styles (near-clean renders) under one caption, so
    the two are positives of each other: a direct lesson that the art style does
    not name the emoji. index[k] maps a CLDR name to its glyph in sets[k]; an emoji
    only one style draws comes alone."""
    a = int(rng.choice(len(sets), p=weights))
    i = data.pick_glyph(sets[a], rng, sets[a].train_groups)
    name = sets[a].names[i]
    others = [k for k in range(len(sets)) if k != a and name in index[k]]
    imgs = [data.light_render(sets[a], i, rng, IMAGE_SIZE, style_aug=style_aug)]
    if others:
        w = np.array([weights[k] for k in others])
        b = others[int(rng.choice(len(others), p=w / w.sum()))]
        imgs.append(data.light_render(sets[b], index[b][name], rng, IMAGE_SIZE,
                                      style_aug=style_aug))
    caption = data.single_caption(rng, name, sets[a].keywords[i])
    return imgs, data.template(rng).format(caption)


def contrastive_loss(model, px, ids, same, pair_loss=0.0):
    """CLIP's symmetric image-text loss; with pair_loss > 0 also an image-image
    term (weight pair_loss): each image must pick out, among the batch's other
    images, those of the same caption (the other style of its pair)."""
    img = model.encode_image(px)
    txt = model.encode_text(ids)
    scale = model.logit_scale.exp()
    logits = scale * img @ txt.t()
    target = same / same.sum(1, keepdim=True)
    loss = 0.5 * (-(target * F.log_softmax(logits, 1)).sum(1).mean()
                  - (target * F.log_softmax(logits.t(), 1)).sum(1).mean())
    acc = (same[torch.arange(len(same)), logits.argmax(1)] > 0).float().mean()
    if pair_loss:
        eye = torch.eye(len(same), dtype=torch.bool)
        pos = same.masked_fill(eye, 0)
        rows = pos.sum(1) > 0
        if rows.any():
            # -1e4, not -inf: 0 * -inf would make the masked terms NaN
            li = (scale * img @ img.t()).masked_fill(eye, -1e4)[rows]
            t = pos[rows] / pos[rows].sum(1, keepdim=True)
            loss = loss + pair_loss * -(t * F.log_softmax(li, 1)).sum(1).mean()
    return loss, acc


class WeightAverage:
    """An exponential moving average of the weights, updated after every step (Polyak
    averaging; its domain-generalisation case is SWAD, Cha et al., NeurIPS 2021:
    averaged weights sit in flatter minima, which transfer better to unseen domains).
    Kept in float32 beside the model; copy_to writes it into the model for export.
    The first steps weigh less than DECAY says (bias-corrected warm start) so early
    random weights do not linger in the average."""

    def __init__(self, model, decay):
        self.decay = decay
        self.n = 0
        self.avg = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model):
        self.n += 1
        d = min(self.decay, (1 + self.n) / (10 + self.n))
        for k, v in model.state_dict().items():
            self.avg[k].mul_(d).add_(v.detach(), alpha=1 - d)

    def copy_to(self, model):
        model.load_state_dict(self.avg)


def param_groups(model, wd):
    """Weight decay on matrices only; the temperature learns 5x faster than the rest
    (a short run would otherwise leave it near its initial 1/0.07)."""
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if n == "logit_scale":
            continue
        if p.dim() < 2 or "embedding" in n:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": wd, "lr_mult": 1.0},
            {"params": no_decay, "weight_decay": 0.0, "lr_mult": 1.0},
            {"params": [model.logit_scale], "weight_decay": 0.0, "lr_mult": 5.0}]


def run_probe(probe, model, step):
    """Prints the probe's numbers at this step; returns the seconds it took."""
    t0 = time.time()
    model.eval()  # no MixStyle (the model has no other train/eval difference)
    res = probe(model)
    model.train()
    cpu = os.times()
    print(f"probe step {step}: " + ", ".join(f"{n} top-1 {a:.3f} top-5 {b:.3f}"
                                             for n, a, b in res) +
          f" (cpu so far {(cpu.user + cpu.system) / 60:.1f} min, probe {time.time() - t0:.0f} s)",
          flush=True)
    return time.time() - t0


def export(model, out_dir, merges, meta):
    os.makedirs(out_dir, exist_ok=True)
    tensors = {}
    for name, t in model.state_dict().items():
        a = t.detach().to(torch.float16).contiguous().numpy()
        tensors[name] = ("F16", list(t.shape), a)
    size = safetensors_io.write(os.path.join(out_dir, "model.safetensors"), tensors,
                                {"format": "pt", **{k: str(v) for k, v in meta.items()}})
    cfg = dict(model.config)
    cfg["_name_or_path"] = NAME
    cfg["clipmod_demo"] = True
    cfg["torch_dtype"] = "float16"
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    bpe.write(os.path.join(out_dir, "merges.txt"), merges)
    return size


def bpe_corpus(sets):
    """data.bpe_corpus of the first style, plus the names and keywords of training
    emoji that only the other styles draw."""
    lines = data.bpe_corpus(sets[0])
    known = set(sets[0].names)
    for g in sets[1:]:
        for grp in g.train_groups:
            for i in g.groups[grp]:
                if g.names[i] not in known:
                    known.add(g.names[i])
                    lines.append(g.names[i])
                    lines.extend(g.keywords[i])
    return lines


class Probe:
    """The training-time proxy (issue 16): zero-shot top-1/top-5 in PyTorch on a
    fixed sample of clean renders of each style (64 px canvas at 94%, resized with
    PIL's bicubic filter as the engine does), labels all that style's CLDR names
    with data.EVAL_TEMPLATES averaged, as evaluate.py. The label texts of all
    styles are embedded once per probe (embedding ~15,000 texts costs far more
    than a training step). Draws from its own generator, so probing does not
    change the training."""

    def __init__(self, sets, tok, n):
        self.sets = []
        names = sorted({x for _, g in sets for x in g.names})
        index = {x: i for i, x in enumerate(names)}
        for name, g in sets:
            pick = np.random.default_rng(12345).choice(len(g), min(n, len(g)), replace=False)
            ims = [data.clean_render(g, int(i), 64).resize((IMAGE_SIZE, IMAGE_SIZE),
                                                           Image.BICUBIC) for i in pick]
            truth = [index[g.names[int(i)]] for i in pick]
            labels = sorted({index[x] for x in g.names})  # the style's own names
            col = {c: k for k, c in enumerate(labels)}
            self.sets.append((name, pixels(ims), torch.tensor([col[t] for t in truth]),
                              torch.tensor(labels)))
        texts = [t.format(x) for x in names for t in data.EVAL_TEMPLATES]
        self.ids = [tokens(tok, texts[k:k + 1024]) for k in range(0, len(texts), 1024)]

    @torch.no_grad()
    def __call__(self, model):
        t = len(data.EVAL_TEMPLATES)
        lab = torch.cat([model.encode_text(ids) for ids in self.ids])
        lab = F.normalize(lab.view(-1, t, lab.shape[-1]).mean(1), dim=-1)
        out = []
        for name, px, truth, labels in self.sets:
            sims = model.encode_image(px) @ lab[labels].t()
            rank = (sims > sims[torch.arange(len(truth)), truth][:, None]).sum(1)
            out.append((name, (rank < 1).float().mean().item(),
                        (rank < 5).float().mean().item()))
        return out


@torch.no_grad()
def quick_eval(model, tok, png_dir, glyphs):
    """Zero-shot top-1/top-5 in PyTorch on png_dir (labels: the CLDR names of its
    images, data.EVAL_TEMPLATES averaged), all and held-out emoji."""
    model.eval()
    cldr = data.load_cldr()
    items = []
    for f in sorted(os.listdir(png_dir)):
        try:
            cp = data.strip_fe0f("".join(chr(int(h, 16)) for h in f[:-4].split("-")))
        except ValueError:
            continue
        if f.endswith(".png") and cp in cldr:
            items.append((os.path.join(png_dir, f), cp, cldr[cp]["name"]))
    labels = sorted({n for _, _, n in items})
    index = {n: i for i, n in enumerate(labels)}
    tpl = data.EVAL_TEMPLATES
    lab = []
    for k in range(0, len(labels), 256):
        texts = [t.format(n) for n in labels[k:k + 256] for t in tpl]
        e = model.encode_text(tokens(tok, texts)).view(-1, len(tpl), PROJECTION).mean(1)
        lab.append(F.normalize(e, dim=-1))
    lab = torch.cat(lab)
    imgs = []
    for k in range(0, len(items), 256):
        ims = []
        for p, _, _ in items[k:k + 256]:
            im = Image.open(p).convert("RGBA")
            bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
            bg.alpha_composite(im)
            ims.append(bg.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.BICUBIC))
        imgs.append(model.encode_image(pixels(ims)))
    sims = torch.cat(imgs) @ lab.t()
    truth = torch.tensor([index[n] for _, _, n in items])
    rank = (sims > sims[torch.arange(len(items)), truth][:, None]).sum(1)
    held = set(glyphs.heldout_groups)
    sel = torch.tensor([data.group_key(cp) in held for _, cp, _ in items])
    for part, m in (("all", torch.ones_like(sel)), ("heldout", sel)):
        r = rank[m]
        print(f"quick-eval {os.path.basename(os.path.normpath(png_dir))} {part}: "
              f"{len(r)} images, top-1 {(r < 1).float().mean():.3f}, "
              f"top-5 {(r < 5).float().mean():.3f}", flush=True)


def main():
    global IMAGE_SIZE
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="model directory to write")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--recipe", choices=sorted(RECIPES),
                    help="defaults of the options below (default: v1 when --styles names "
                         "one style, else v2)")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--wd", type=float)
    ap.add_argument("--warmup", type=int)
    ap.add_argument("--text-layers", type=int)
    ap.add_argument("--light", type=float,
                    help="share of samples that are near-clean renders "
                         "(data.make_light_sample) instead of augmented canvases")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", help="cache directory of fetched art and glyphs "
                    "(default $CLIPMOD_DEMO_CACHE or ~/.cache/clipmod-demo)")
    ap.add_argument("--styles", help="art styles trained on and their shares "
                    "(v2: " + RECIPES["v2"]["styles"] + ")")
    ap.add_argument("--style-aug", type=float,
                    help="share of samples redrawn by data.restyle")
    ap.add_argument("--pairs", type=float,
                    help="share of each batch drawn as cross-style pairs (cross_style_pair)")
    ap.add_argument("--pair-loss", type=float,
                    help="weight of the image-image term on those pairs (contrastive_loss)")
    ap.add_argument("--mixstyle", type=float, default=0.0, metavar="P",
                    help="MixStyle on the image tower's tokens in a share P of the batches "
                         "(model.MixStyle; default 0: off)")
    ap.add_argument("--mixstyle-layers", type=int, default=2,
                    help="--mixstyle: also after each of the first N encoder layers")
    ap.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                    help="export an exponential moving average of the weights (decay per "
                         "step, e.g. 0.998) instead of the last step's (default 0: off)")
    ap.add_argument("--image-size", type=int, default=IMAGE_SIZE)
    ap.add_argument("--vision-layers", type=int, default=VISION["layers"])
    ap.add_argument("--quick-eval", metavar="PNG_DIR",
                    help="after training, zero-shot top-1/top-5 in PyTorch on the PNGs of "
                         "this directory (named by code points, as EmojiOne's): a fast "
                         "estimate for short runs, not the C engine's numbers")
    ap.add_argument("--checkpoint", help="save/resume training state here (optional)")
    ap.add_argument("--log-every", type=int, default=20)
    ap.add_argument("--probe-every", type=int, default=0, metavar="N",
                    help="every N steps, zero-shot top-1/top-5 (PyTorch) on --probe-n clean "
                         "renders of each --probe-styles style (a proxy to rank recipes)")
    ap.add_argument("--probe-styles", default="noto,openmoji")
    ap.add_argument("--probe-n", type=int, default=500)
    args = ap.parse_args()
    if args.recipe is None:
        args.recipe = "v1" if args.styles and "," not in args.styles else "v2"
    for k, v in RECIPES[args.recipe].items():
        if getattr(args, k) is None:
            setattr(args, k, v)

    IMAGE_SIZE = args.image_size
    vision = dict(VISION, image_size=IMAGE_SIZE, layers=args.vision_layers)
    t_start = time.time()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    style_names, weights = [], []
    for part in args.styles.split(","):
        name, _, w = part.partition(":")
        style_names.append(name)
        weights.append(float(w or 1))
    weights = np.array(weights) / sum(weights)
    sets = [styles.glyphs(name, args.cache) for name in style_names]
    glyphs = sets[0]
    index = [{n: i for i, n in enumerate(g.names)} for g in sets]
    merges = bpe.learn(bpe_corpus(sets), 4096, 2)
    tok = tokenizer_ref.Tokenizer(merges)
    vocab = len(tok.encoder)
    text = dict(TEXT, layers=args.text_layers)
    config = M.make_config(vision, text, PROJECTION, vocab, CONTEXT)
    model = M.CLIP(config)
    M.init_weights(model, torch.Generator().manual_seed(args.seed))
    if args.mixstyle:
        model.vision_model.mixstyle = M.MixStyle(args.mixstyle, args.mixstyle_layers,
                                                 args.seed + 1000)
    n_params = sum(p.numel() for p in model.parameters())
    for name, g in zip(style_names, sets):
        print(f"style {name}: {len(g)} emoji, train groups {len(g.train_groups)}, held out "
              f"{len(g.heldout_groups)}")
    print(f"emoji {len(glyphs)} (train groups {len(glyphs.train_groups)}, held out "
          f"{len(glyphs.heldout_groups)}); merges {len(merges)}, vocab {vocab}; "
          f"params {n_params / 1e6:.2f} M; setup {time.time() - t_start:.1f} s; {BLAS}", flush=True)
    print("recipe " + args.recipe + ": " + ", ".join(
        f"{k} {getattr(args, k)}" for k in RECIPES["v2"]), flush=True)
    probe = None
    if args.probe_every:
        probe = Probe([(n, styles.glyphs(n, args.cache)) for n in args.probe_styles.split(",")],
                      tok, args.probe_n)

    opt = torch.optim.AdamW(param_groups(model, args.wd), lr=args.lr, betas=(0.9, 0.98),
                            eps=1e-6)

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        p = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * 0.5 * (1 + math.cos(math.pi * p))

    rng = np.random.default_rng(args.seed)
    step = 0
    if args.checkpoint and os.path.exists(args.checkpoint):
        st = torch.load(args.checkpoint)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        rng.bit_generator.state = st["rng"]
        step = st["step"]
        print(f"resumed at step {step}", flush=True)
    ema = WeightAverage(model, args.ema) if args.ema else None
    t_train = time.time()
    t_data = 0.0
    ema_loss = ema_acc = None
    while step < args.steps:
        for g in opt.param_groups:
            g["lr"] = lr_at(step) * g["lr_mult"]
        t0 = time.time()
        px, ids, same = batch(sets, weights, rng, tok, args.batch, args.style_aug,
                              args.light, args.pairs, index)
        t_data += time.time() - t0
        if model.vision_model.mixstyle:
            model.vision_model.mixstyle.batch()
        loss, acc = contrastive_loss(model, px, ids, same, args.pair_loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        model.clamp_logit_scale()
        step += 1
        if ema:
            ema.update(model)
        ema_loss = loss.item() if ema_loss is None else 0.95 * ema_loss + 0.05 * loss.item()
        ema_acc = acc.item() if ema_acc is None else 0.95 * ema_acc + 0.05 * acc.item()
        if step % args.log_every == 0 or step == args.steps:
            el = time.time() - t_train
            print(f"step {step}/{args.steps} loss {ema_loss:.3f} batch-acc {ema_acc:.3f} "
                  f"scale {model.logit_scale.exp().item():.1f} lr {lr_at(step - 1):.2e} "
                  f"{el / 60:.1f} min (data {t_data / el:.0%}), "
                  f"eta {el / step * (args.steps - step) / 60:.1f} min", flush=True)
        if probe and step % args.probe_every == 0 and step < args.steps:
            t_train += run_probe(probe, model, step)  # probing is not training time
        if args.checkpoint and step % 200 == 0:
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(),
                        "rng": rng.bit_generator.state, "step": step}, args.checkpoint)
    if ema:
        # the last step's weights, for comparison with the average's below
        print("last step's weights (not exported):", flush=True)
        if probe:
            run_probe(probe, model, step)
        if args.quick_eval:
            quick_eval(model, tok, args.quick_eval, sets[0])
            model.train()
        print("the weight average (exported):", flush=True)
        ema.copy_to(model)
    minutes = (time.time() - t_start) / 60
    meta = {"generator": "clipmod tools/demo/train.py", "seed": args.seed, "steps": args.steps,
            "batch": args.batch, "lr": args.lr, "threads": args.threads}
    if args.recipe != "v1":  # v1's files stay byte for byte as they were
        meta.update(styles=args.styles, style_aug=args.style_aug, light=args.light,
                    wd=args.wd, warmup=args.warmup, text_layers=args.text_layers)
        if args.pairs:
            meta.update(pairs=args.pairs, pair_loss=args.pair_loss)
        if args.ema:
            meta.update(ema=args.ema)
        if args.mixstyle:
            meta.update(mixstyle=args.mixstyle, mixstyle_layers=args.mixstyle_layers)
    size = export(model, args.out, merges, meta)
    cpu = os.times()
    print(f"wrote {args.out}: model.safetensors {size} bytes; total {minutes:.1f} min "
          f"(cpu {(cpu.user + cpu.system) / 60:.1f} min)", flush=True)
    if probe:
        run_probe(probe, model, step)
    if args.quick_eval:
        quick_eval(model, tok, args.quick_eval, sets[0])


if __name__ == "__main__":
    main()
