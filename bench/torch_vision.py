#!/usr/bin/python3
"""CLIP's image tower in PyTorch, timed the same way as bench/bench_vision.c.

A plain float32 nn.Module shaped like Hugging Face's CLIPVisionModel + visual_projection
(nn.Conv2d patch embedding, nn.LayerNorm, nn.Linear q/k/v/out, explicit-matmul attention
as HF's eager path, QuickGELU or GELU MLP), loaded with load_state_dict(strict=True)
from MODEL_DIR/model.safetensors (HF names) via tests/reference/safetensors_io.py.
Runs under torch.inference_mode(). PyTorch 1.13 has no F.scaled_dot_product_attention.

Input pixels come from `bench_vision --dump-pixels` (float32 [N,3,S,S]) so both engines
see the same tensors; `--compare` takes `bench_vision --dump-embeddings` (float32 [N,E])
and reports the max abs difference of the L2-normalised embeddings.

Precision (--precision, default fp32); the fp32 tower is always built first, so --compare
also reports the reduced-precision embeddings' cosine to torch's own fp32 ones:
  int8  torch.ao.quantization.quantize_dynamic on every nn.Linear (qint8 weights per tensor,
        u8 activations quantised per call), on the first quantized engine of x86, fbgemm,
        onednn, qnnpack that this torch has (Debian's 1.13 has no fbgemm: onednn)
        (--int8-engine picks one). The patch Conv2d and the attention matmuls stay fp32.
  bf16  --bf16-mode autocast (default): the fp32 model under torch.autocast('cpu',
        dtype=torch.bfloat16): Linear and matmul in bf16, layer norm and softmax in fp32,
        as our own bf16 path does. One autocast region spans all the calls of a batch
        size, so its cache of bf16 weight copies lives across them (as our weights are
        converted once at load); entered per call, autocast re-casts every weight on every
        call, 2-4x slower at batch 1 here. --bf16-mode cast: the whole model and its input in
        bfloat16 (layer norm and softmax too).
  The JSON lines carry "precision"; the config names the engine or mode.

Thread configurations (shared/docs/platform-notes.md §3). Both are "fair" on 2 cores;
the benchmark reports the better one and names it:
  passive2  torch.set_num_threads(2), OMP_WAIT_POLICY=PASSIVE, OPENBLAS_NUM_THREADS=2
  t1ob2     torch.set_num_threads(1), OPENBLAS_NUM_THREADS=2 (OpenBLAS does the threading)
The environment is fixed before torch is imported (the script re-executes itself).

Usage:
  torch_vision.py MODEL_DIR --pixels PX.f32 [--threads-config passive2|t1ob2]
                  [--precision fp32|int8|bf16] [--bf16-mode autocast|cast]
                  [--int8-engine NAME] [--batches 1,8] [--runs 7] [--warmup 2] [--compare OURS.f32]
                  [--export-onnx OUT.onnx]
Prints one JSON line per batch size (same keys as bench_vision), plus a
{"engine":"torch","check":...} line with --compare.
"""
import argparse
import json
import os
import sys
import time
from contextlib import nullcontext

CONFIGS = {
    # name: (torch threads, environment)
    "passive2": (2, {"OMP_WAIT_POLICY": "PASSIVE", "OPENBLAS_NUM_THREADS": "2",
                     "OMP_NUM_THREADS": "2"}),
    "t1ob2": (1, {"OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "1"}),
}

HERE = os.path.dirname(os.path.abspath(__file__))
REF_DIR = os.path.join(HERE, "..", "tests", "reference")


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("--pixels", help="float32 [N,3,S,S] from bench_vision --dump-pixels "
                    "(default: random normal pixels, seed 0)")
    ap.add_argument("--threads-config", choices=sorted(CONFIGS), default="passive2")
    ap.add_argument("--precision", choices=("fp32", "int8", "bf16"), default="fp32")
    ap.add_argument("--bf16-mode", choices=("autocast", "cast"), default="autocast")
    ap.add_argument("--int8-engine", help="torch.backends.quantized.engine for int8 "
                    "(default: the first of x86, fbgemm, onednn, qnnpack this torch supports)")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--gflop", type=float, default=8.82, help="GFLOP per image")
    ap.add_argument("--compare", help="our embeddings, float32 [N,E], from --dump-embeddings")
    ap.add_argument("--export-onnx", metavar="OUT", help="also export the tower to ONNX "
                    "(opset 14, dynamic batch; input 'pixel_values', output 'image_embeds')")
    ap.add_argument("--no-bench", action="store_true", help="skip timing (export/compare only)")
    return ap.parse_args()


def ensure_env(cfg):
    """Re-exec with the configuration's environment so OpenMP and OpenBLAS see it at load."""
    want = CONFIGS[cfg][1]
    if all(os.environ.get(k) == v for k, v in want.items()):
        return
    env = dict(os.environ, **want)
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


ARGS = parse_args()
ensure_env(ARGS.threads_config)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, REF_DIR)
import safetensors_io  # noqa: E402


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class Attention(nn.Module):
    """HF CLIPAttention, eager path: separate q/k/v Linears, scores * head_dim^-0.5."""

    def __init__(self, d, heads):
        super().__init__()
        self.heads, self.hd = heads, d // heads
        self.scale = self.hd ** -0.5
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x):
        b, t, d = x.shape

        def split(y):
            return y.view(b, t, self.heads, self.hd).transpose(1, 2)  # [b, h, t, hd]

        q, k, v = split(self.q_proj(x) * self.scale), split(self.k_proj(x)), split(self.v_proj(x))
        a = torch.softmax(q @ k.transpose(-1, -2), dim=-1)
        o = (a @ v).transpose(1, 2).reshape(b, t, d)
        return self.out_proj(o)


class MLP(nn.Module):
    def __init__(self, d, f, act):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, f), nn.Linear(f, d)
        self.act = QuickGELU() if act == "quick_gelu" else nn.GELU()

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Layer(nn.Module):
    def __init__(self, d, heads, f, act, eps):
        super().__init__()
        self.self_attn = Attention(d, heads)
        self.layer_norm1 = nn.LayerNorm(d, eps=eps)
        self.mlp = MLP(d, f, act)
        self.layer_norm2 = nn.LayerNorm(d, eps=eps)

    def forward(self, h):
        h = h + self.self_attn(self.layer_norm1(h))
        return h + self.mlp(self.layer_norm2(h))


class Encoder(nn.Module):
    def __init__(self, n, *a):
        super().__init__()
        self.layers = nn.ModuleList(Layer(*a) for _ in range(n))

    def forward(self, h):
        for layer in self.layers:
            h = layer(h)
        return h


class Embeddings(nn.Module):
    def __init__(self, d, patch, size):
        super().__init__()
        self.class_embedding = nn.Parameter(torch.empty(d))
        self.patch_embedding = nn.Conv2d(3, d, patch, stride=patch, bias=False)
        self.position_embedding = nn.Embedding((size // patch) ** 2 + 1, d)

    def forward(self, px):
        x = self.patch_embedding(px).flatten(2).transpose(1, 2)  # [b, g*g, d], row-major grid
        cls = self.class_embedding.expand(x.shape[0], 1, -1)
        return torch.cat([cls, x], 1) + self.position_embedding.weight


class VisionTransformer(nn.Module):
    def __init__(self, vc):
        super().__init__()
        d, eps = vc["hidden_size"], vc.get("layer_norm_eps", 1e-5)
        self.embeddings = Embeddings(d, vc["patch_size"], vc["image_size"])
        self.pre_layrnorm = nn.LayerNorm(d, eps=eps)  # sic, HF's name
        self.encoder = Encoder(vc["num_hidden_layers"], d, vc["num_attention_heads"],
                               vc["intermediate_size"], vc.get("hidden_act", "quick_gelu"), eps)
        self.post_layernorm = nn.LayerNorm(d, eps=eps)

    def forward(self, px):
        h = self.encoder(self.pre_layrnorm(self.embeddings(px)))
        return self.post_layernorm(h[:, 0])


class ImageTower(nn.Module):
    """CLIPVisionModel + visual_projection: pixels [B,3,S,S] -> image_embeds [B,E]."""

    def __init__(self, cfg):
        super().__init__()
        vc = cfg["vision_config"]
        self.vision_model = VisionTransformer(vc)
        self.visual_projection = nn.Linear(vc["hidden_size"], cfg.get("projection_dim", 512),
                                           bias=False)

    def forward(self, px):
        return self.visual_projection(self.vision_model(px))


def load_tower(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    tower = ImageTower(cfg)
    st = safetensors_io.SafeTensors(os.path.join(model_dir, "model.safetensors"))
    if "vision_model.embeddings.patch_embedding.weight" not in st.keys():
        raise SystemExit("torch_vision: needs a checkpoint with HF names (--layout hf)")
    sd = {}
    for name in st.keys():
        if name.startswith("vision_model.") and not name.endswith("position_ids") \
                or name == "visual_projection.weight":
            sd[name] = torch.from_numpy(st.numpy(name).astype(np.float32))
    tower.load_state_dict(sd, strict=True)
    return tower.eval(), cfg


def median(v):
    s = sorted(v)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def int8_engine(wanted):
    """The quantized engine for int8: WANTED, else the first supported of our preference."""
    have = torch.backends.quantized.supported_engines
    if wanted:
        if wanted not in have:
            raise SystemExit(f"torch_vision: quantized engine {wanted} not in {have}")
        return wanted
    for e in ("x86", "fbgemm", "onednn", "qnnpack"):
        if e in have:
            return e
    raise SystemExit(f"torch_vision: no usable quantized engine (have {have})")


def reduced(tower, a):
    """(callable pixels -> float32 embeddings, label, region) for --precision: calls of
    the callable run inside `with region():`. tower stays fp32 (int8 and cast copy it)."""
    if a.precision == "int8":
        engine = int8_engine(a.int8_engine)
        torch.backends.quantized.engine = engine
        q = torch.ao.quantization.quantize_dynamic(tower, {nn.Linear}, dtype=torch.qint8)
        return q, f"int8 quantize_dynamic(nn.Linear, qint8), engine {engine}", nullcontext
    if a.precision == "bf16" and a.bf16_mode == "cast":
        import copy
        m = copy.deepcopy(tower).to(torch.bfloat16)
        return ((lambda px: m(px.to(torch.bfloat16)).float()), "bf16 model.to(bfloat16)",
                nullcontext)
    if a.precision == "bf16":
        return ((lambda px: tower(px).float()), "bf16 torch.autocast('cpu', bfloat16)",
                lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    return tower, "fp32", nullcontext


def cosine_line(name, a_emb, b_emb, n):
    """One check JSON line: max |diff| and min cosine of two [n,E] L2-normalised arrays."""
    a64, b64 = a_emb.astype(np.float64), b_emb.astype(np.float64)
    return json.dumps({"engine": "torch", "precision": ARGS.precision, "check": name,
                       "images": n, "max_abs_diff": float(np.abs(a64 - b64).max()),
                       "min_cosine": float((a64 * b64).sum(-1).min())})


def compare(tower, run, label, region, px, a):
    """Print the check lines: ours (fp32, --compare) vs this precision, and vs torch fp32."""
    n = px.shape[0]
    with region():
        theirs = F.normalize(run(px).float(), dim=-1).numpy()
    ours = np.fromfile(a.compare, dtype="<f4").reshape(n, -1)
    if a.precision == "fp32":
        print(cosine_line("clipmod vs torch", ours, theirs, n), flush=True)
        return
    fp32 = F.normalize(tower(px), dim=-1).numpy()
    print(cosine_line(f"clipmod fp32 vs torch {label}", ours, theirs, n), flush=True)
    print(cosine_line(f"torch fp32 vs torch {label}", fp32, theirs, n), flush=True)


def time_batches(run, region, px, config, nthreads, load_ms, a):
    n = px.shape[0]
    for b in [int(x) for x in a.batches.split(",")]:
        batch = px[torch.arange(b) % n].contiguous()
        times = []
        with region():
            for r in range(a.warmup + a.runs):
                t0 = time.perf_counter()
                run(batch)
                dt = (time.perf_counter() - t0) * 1e3
                if r >= a.warmup:
                    times.append(dt)
        med = median(times)
        print(json.dumps({
            "engine": "torch", "precision": a.precision, "config": config, "batch": b,
            "threads": nthreads, "runs": a.runs, "warmup": a.warmup, "median_ms": round(med, 3),
            "ms_per_image": round(med / b, 3), "gflops": round(a.gflop * b / (med / 1e3), 2),
            "min_ms": round(min(times), 3), "max_ms": round(max(times), 3),
            "times_ms": [round(t, 3) for t in times], "images": n,
            "load_ms": round(load_ms, 1), "torch": torch.__version__}), flush=True)


def main():
    a = ARGS
    nthreads = CONFIGS[a.threads_config][0]
    torch.set_num_threads(nthreads)
    t0 = time.perf_counter()
    tower, cfg = load_tower(a.model_dir)
    run, label, region = reduced(tower, a)
    load_ms = (time.perf_counter() - t0) * 1e3
    size = cfg["vision_config"]["image_size"]
    if a.pixels:
        px = np.fromfile(a.pixels, dtype="<f4")
        if px.size % (3 * size * size):
            raise SystemExit(f"{a.pixels}: not a whole number of [3,{size},{size}] images")
        px = torch.from_numpy(px.reshape(-1, 3, size, size).copy())
    else:
        px = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(0))
    config = ("" if a.precision == "fp32" else label + "; ") + \
        f"{a.threads_config}: torch threads={nthreads}, " + ", ".join(
            f"{k}={v}" for k, v in CONFIGS[a.threads_config][1].items())

    with torch.inference_mode():
        if a.compare:
            compare(tower, run, label, region, px, a)
        if a.export_onnx:
            if a.precision != "fp32":
                raise SystemExit("torch_vision: --export-onnx exports the fp32 tower only")
            torch.onnx.export(tower, px[:1], a.export_onnx, opset_version=14,
                              input_names=["pixel_values"], output_names=["image_embeds"],
                              dynamic_axes={"pixel_values": {0: "batch"},
                                            "image_embeds": {0: "batch"}},
                              do_constant_folding=True)
            print(json.dumps({"engine": "torch", "exported": a.export_onnx,
                              "bytes": os.path.getsize(a.export_onnx)}), flush=True)
        if not a.no_bench:
            time_batches(run, region, px, config, nthreads, load_ms, a)


if __name__ == "__main__":
    main()
