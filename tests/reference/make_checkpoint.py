#!/usr/bin/python3
"""Write a random (or all-zero) CLIP checkpoint for testing clipmod's loader and forward pass.

  make_checkpoint.py OUT_DIR --shape {tiny,b32,b16,l14} --layout {hf,openai}
                     --dtype {f32,f16,bf16} --act {quick_gelu,gelu} --seed N
                     [--merges PATH] [--zeros] [--position-ids]

Writes OUT_DIR/model.safetensors and OUT_DIR/config.json (HF CLIPConfig style,
identical for both layouts), plus OUT_DIR/merges.txt with --merges.

Weights are drawn in HF form from a seeded torch.Generator in float32 (in a fixed
order), rounded to --dtype, and for --layout openai converted by pure
re-arrangement (fused in_proj = cat(q,k,v), visual.proj / text_projection
transposed), so both layouts hold the same numbers and give the same embeddings.
Std: linear/conv weights 1/sqrt(fan_in), embeddings 0.02, biases 0.02,
LayerNorm weights 1 + 0.1*randn, logit_scale = ln(100).
--zeros writes every float tensor as a hole (sparse file, all zeros) without
drawing anything: only for load tests of the big shapes (embeddings are NaN).
"""
import argparse
import json
import math
import os
import time

import numpy as np
import torch

import safetensors_io

SHAPES = {
    # vision: hidden, intermediate, layers, heads, patch, image; text: hidden,
    # intermediate, layers, heads, vocab; projection_dim
    "tiny": dict(vh=64, vi=256, vl=2, vheads=2, patch=8, image=32,
                 th=64, ti=256, tl=2, theads=2, vocab=512 + 2000 + 2, proj=32),
    "b32": dict(vh=768, vi=3072, vl=12, vheads=12, patch=32, image=224,
                th=512, ti=2048, tl=12, theads=8, vocab=49408, proj=512),
    "b16": dict(vh=768, vi=3072, vl=12, vheads=12, patch=16, image=224,
                th=512, ti=2048, tl=12, theads=8, vocab=49408, proj=512),
    "l14": dict(vh=1024, vi=4096, vl=24, vheads=16, patch=14, image=224,
                th=768, ti=3072, tl=12, theads=12, vocab=49408, proj=768),
}
CONTEXT = 77
TORCH_DTYPE = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}
ST_DTYPE = {"f32": "F32", "f16": "F16", "bf16": "BF16"}
CONFIG_DTYPE = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}


def hf_specs(s):
    """Ordered list of (hf_name, shape, kind); kind picks the init."""
    specs = []
    vt = (s["image"] // s["patch"]) ** 2 + 1

    def layer(prefix, d, inter):
        out = []
        for p in ("q_proj", "k_proj", "v_proj", "out_proj"):
            out += [(f"{prefix}.self_attn.{p}.weight", [d, d], "lin"),
                    (f"{prefix}.self_attn.{p}.bias", [d], "bias")]
        out += [(f"{prefix}.layer_norm1.weight", [d], "lnw"),
                (f"{prefix}.layer_norm1.bias", [d], "bias"),
                (f"{prefix}.mlp.fc1.weight", [inter, d], "lin"),
                (f"{prefix}.mlp.fc1.bias", [inter], "bias"),
                (f"{prefix}.mlp.fc2.weight", [d, inter], "lin"),
                (f"{prefix}.mlp.fc2.bias", [d], "bias"),
                (f"{prefix}.layer_norm2.weight", [d], "lnw"),
                (f"{prefix}.layer_norm2.bias", [d], "bias")]
        return out

    vh, th = s["vh"], s["th"]
    specs += [("vision_model.embeddings.class_embedding", [vh], "emb"),
              ("vision_model.embeddings.patch_embedding.weight", [vh, 3, s["patch"], s["patch"]], "lin"),
              ("vision_model.embeddings.position_embedding.weight", [vt, vh], "emb"),
              ("vision_model.pre_layrnorm.weight", [vh], "lnw"),
              ("vision_model.pre_layrnorm.bias", [vh], "bias")]
    for i in range(s["vl"]):
        specs += layer(f"vision_model.encoder.layers.{i}", vh, s["vi"])
    specs += [("vision_model.post_layernorm.weight", [vh], "lnw"),
              ("vision_model.post_layernorm.bias", [vh], "bias"),
              ("text_model.embeddings.token_embedding.weight", [s["vocab"], th], "emb"),
              ("text_model.embeddings.position_embedding.weight", [CONTEXT, th], "emb")]
    for i in range(s["tl"]):
        specs += layer(f"text_model.encoder.layers.{i}", th, s["ti"])
    specs += [("text_model.final_layer_norm.weight", [th], "lnw"),
              ("text_model.final_layer_norm.bias", [th], "bias"),
              ("visual_projection.weight", [s["proj"], vh], "lin"),
              ("text_projection.weight", [s["proj"], th], "lin"),
              ("logit_scale", [], "scale")]
    return specs


def draw(shape, kind, gen):
    """One float32 tensor for an init kind."""
    if kind == "scale":
        return torch.tensor(math.log(100.0), dtype=torch.float32)
    x = torch.randn(shape, generator=gen, dtype=torch.float32)
    if kind == "lin":
        fan_in = int(np.prod(shape[1:]))
        return x.mul_(1.0 / math.sqrt(fan_in))
    if kind == "lnw":
        return x.mul_(0.1).add_(1.0)
    return x.mul_(0.02)  # emb, bias


def to_openai(hf, s):
    """Re-arrange an HF-named dict of torch tensors into OpenAI names (spec §2.1/2.2)."""
    out = {}

    def block(src, dst):
        q, k, v = (hf[f"{src}.self_attn.{p}_proj.weight"] for p in "qkv")
        out[f"{dst}.attn.in_proj_weight"] = torch.cat([q, k, v], 0)
        q, k, v = (hf[f"{src}.self_attn.{p}_proj.bias"] for p in "qkv")
        out[f"{dst}.attn.in_proj_bias"] = torch.cat([q, k, v], 0)
        pairs = [("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"),
                 ("layer_norm2", "ln_2"), ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")]
        for a, b in pairs:
            for w in ("weight", "bias"):
                out[f"{dst}.{b}.{w}"] = hf[f"{src}.{a}.{w}"]

    v = "vision_model."
    out["visual.conv1.weight"] = hf[v + "embeddings.patch_embedding.weight"]
    out["visual.class_embedding"] = hf[v + "embeddings.class_embedding"]
    out["visual.positional_embedding"] = hf[v + "embeddings.position_embedding.weight"]
    for a, b in (("pre_layrnorm", "ln_pre"), ("post_layernorm", "ln_post")):
        for w in ("weight", "bias"):
            out[f"visual.{b}.{w}"] = hf[f"{v}{a}.{w}"]
    for i in range(s["vl"]):
        block(f"{v}encoder.layers.{i}", f"visual.transformer.resblocks.{i}")
    out["visual.proj"] = hf["visual_projection.weight"].t().contiguous()
    t = "text_model."
    out["token_embedding.weight"] = hf[t + "embeddings.token_embedding.weight"]
    out["positional_embedding"] = hf[t + "embeddings.position_embedding.weight"]
    for i in range(s["tl"]):
        block(f"{t}encoder.layers.{i}", f"transformer.resblocks.{i}")
    for w in ("weight", "bias"):
        out[f"ln_final.{w}"] = hf[f"{t}final_layer_norm.{w}"]
    out["text_projection"] = hf["text_projection.weight"].t().contiguous()
    out["logit_scale"] = hf["logit_scale"]
    return out


def openai_shapes(specs, s):
    """Shapes of the OpenAI tensors, without drawing any data (for --zeros)."""
    meta = {n: torch.empty(shape, device="meta") for n, shape, _ in specs}
    return {n: list(t.shape) for n, t in to_openai(meta, s).items()}


def storage(t, dtype):
    """torch tensor (already in the storage dtype) -> numpy array of its raw bytes."""
    if dtype == "bf16":
        return t.contiguous().view(torch.int16).numpy()
    return t.contiguous().numpy()


def config_json(s, act, dtype):
    return {
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": s["proj"],
        "logit_scale_init_value": 2.6592,
        "torch_dtype": CONFIG_DTYPE[dtype],
        "text_config": {
            "hidden_size": s["th"], "intermediate_size": s["ti"],
            "num_hidden_layers": s["tl"], "num_attention_heads": s["theads"],
            "max_position_embeddings": CONTEXT, "vocab_size": s["vocab"],
            "hidden_act": act, "layer_norm_eps": 1e-5,
            "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1,
        },
        "vision_config": {
            "hidden_size": s["vh"], "intermediate_size": s["vi"],
            "num_hidden_layers": s["vl"], "num_attention_heads": s["vheads"],
            "image_size": s["image"], "patch_size": s["patch"], "num_channels": 3,
            "hidden_act": act, "layer_norm_eps": 1e-5,
        },
    }


def read_merge_lines(path):
    """Merge lines of a merges.txt or OpenAI bpe_simple_vocab_16e6.txt.gz, header skipped."""
    import gzip
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        lines = f.read().decode("utf-8").split("\n")
    return lines[1:]  # line 0 is the header in both formats


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--shape", choices=sorted(SHAPES), required=True)
    ap.add_argument("--layout", choices=["hf", "openai"], required=True)
    ap.add_argument("--dtype", choices=["f32", "f16", "bf16"], required=True)
    ap.add_argument("--act", choices=["quick_gelu", "gelu"], required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--merges", help="bpe_simple_vocab_16e6.txt.gz or merges.txt to subset")
    ap.add_argument("--zeros", action="store_true", help="all-zero sparse tensor data")
    ap.add_argument("--position-ids", action="store_true",
                    help="add int64 *.embeddings.position_ids (hf layout only)")
    args = ap.parse_args()
    if args.position_ids and args.layout != "hf":
        ap.error("--position-ids exists only in HF-named checkpoints (use --layout hf)")

    t0 = time.time()
    s = SHAPES[args.shape]
    os.makedirs(args.out_dir, exist_ok=True)
    specs = hf_specs(s)
    st_dt = ST_DTYPE[args.dtype]
    if args.zeros:
        shapes = ({n: shape for n, shape, _ in specs} if args.layout == "hf"
                  else openai_shapes(specs, s))
        tensors = {n: (st_dt, shape, None) for n, shape in shapes.items()}
    else:
        gen = torch.Generator().manual_seed(args.seed)
        hf = {n: draw(shape, kind, gen).to(TORCH_DTYPE[args.dtype]) for n, shape, kind in specs}
        named = hf if args.layout == "hf" else to_openai(hf, s)
        tensors = {n: (st_dt, list(t.shape), storage(t, args.dtype)) for n, t in named.items()}
    if args.position_ids:
        vt = (s["image"] // s["patch"]) ** 2 + 1
        for n, count in (("vision_model.embeddings.position_ids", vt),
                         ("text_model.embeddings.position_ids", CONTEXT)):
            tensors[n] = ("I64", [1, count], np.arange(count, dtype="<i8").reshape(1, count))
    meta = {"format": "pt", "generator": "clipmod tests/reference/make_checkpoint.py",
            "shape": args.shape, "layout": args.layout, "dtype": args.dtype,
            "act": args.act, "seed": args.seed, "zeros": int(args.zeros)}
    path = os.path.join(args.out_dir, "model.safetensors")
    size = safetensors_io.write(path, tensors, meta)
    with open(os.path.join(args.out_dir, "config.json"), "w") as f:
        json.dump(config_json(s, args.act, args.dtype), f, indent=2)
        f.write("\n")
    if args.merges:
        n = s["vocab"] - 514
        lines = read_merge_lines(args.merges)
        if len(lines) < n or any(not l.strip() for l in lines[:n]):
            raise SystemExit(f"{args.merges}: fewer than {n} merge lines")
        with open(os.path.join(args.out_dir, "merges.txt"), "w", encoding="utf-8", newline="\n") as f:
            f.write("#version: 0.2\n" + "".join(l + "\n" for l in lines[:n]))
    print(f"{path} {size} bytes {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
