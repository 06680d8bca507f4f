#!/usr/bin/python3
"""Reference CLIP forward pass in torch (float64 or float32), written from
shared/docs/clip-spec.md §1-3 (HF CLIPModel semantics), independently of the C engine.

Loads MODEL_DIR/config.json and MODEL_DIR/model.safetensors in HF naming or in
OpenAI/open_clip naming (mapped per spec §2.2), skipping *.position_ids.

CLI:  clip_ref.py MODEL_DIR [--pixels FILE.f32]... [--ids "49406 320 49407"]...
                  [--dtype float64|float32]
prints one JSON object {"images": [[...]], "texts": [[...]], "logit_scale": s}
with L2-normalised embeddings.  FILE.f32 = float32 LE CHW [3,S,S] from preprocess_ref.py.
"""
import argparse
import json
import math
import os

import numpy as np
import torch

import safetensors_io


class Model:
    """Weights (torch tensors in self.dtype, HF names) plus hyperparameters."""

    def __init__(self, model_dir, dtype=torch.float64):
        self.dtype = dtype
        with open(os.path.join(model_dir, "config.json")) as f:
            cfg = json.load(f)
        self.config = cfg
        self.vcfg, self.tcfg = cfg["vision_config"], cfg["text_config"]
        st = safetensors_io.SafeTensors(os.path.join(model_dir, "model.safetensors"))
        raw = {}
        for name in st.keys():
            if name.endswith("position_ids"):
                continue  # optional int64 buffer in old HF files: always skipped
            key = name[len("module."):] if name.startswith("module.") else name
            raw[key] = torch.from_numpy(st.numpy(name).astype(np.float64))
        self.layout = "openai" if "visual.conv1.weight" in raw else "hf"
        w = from_openai(raw) if self.layout == "openai" else raw
        self.w = {k: v.to(dtype).contiguous() for k, v in w.items()}
        self.eot_id = self.tcfg["vocab_size"] - 1

    def __getitem__(self, name):
        return self.w[name]


def from_openai(o):
    """OpenAI/open_clip names -> HF names (spec §2.2)."""
    hf = {}

    def block(src, dst):
        d = o[f"{src}.attn.in_proj_weight"].shape[0] // 3
        for i, p in enumerate("qkv"):
            hf[f"{dst}.self_attn.{p}_proj.weight"] = o[f"{src}.attn.in_proj_weight"][i * d:(i + 1) * d]
            hf[f"{dst}.self_attn.{p}_proj.bias"] = o[f"{src}.attn.in_proj_bias"][i * d:(i + 1) * d]
        pairs = [("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"),
                 ("ln_2", "layer_norm2"), ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")]
        for a, b in pairs:
            for x in ("weight", "bias"):
                hf[f"{dst}.{b}.{x}"] = o[f"{src}.{a}.{x}"]

    def nlayers(prefix):
        return sum(1 for k in o if k.startswith(prefix) and k.endswith(".attn.in_proj_weight"))

    v = "vision_model."
    hf[v + "embeddings.patch_embedding.weight"] = o["visual.conv1.weight"]
    hf[v + "embeddings.class_embedding"] = o["visual.class_embedding"]
    hf[v + "embeddings.position_embedding.weight"] = o["visual.positional_embedding"]
    for a, b in (("ln_pre", "pre_layrnorm"), ("ln_post", "post_layernorm")):
        for x in ("weight", "bias"):
            hf[f"{v}{b}.{x}"] = o[f"visual.{a}.{x}"]
    for i in range(nlayers("visual.transformer.resblocks.")):
        block(f"visual.transformer.resblocks.{i}", f"{v}encoder.layers.{i}")
    hf["visual_projection.weight"] = o["visual.proj"].t()
    t = "text_model."
    hf[t + "embeddings.token_embedding.weight"] = o["token_embedding.weight"]
    hf[t + "embeddings.position_embedding.weight"] = o["positional_embedding"]
    for i in range(nlayers("transformer.resblocks.")):
        block(f"transformer.resblocks.{i}", f"{t}encoder.layers.{i}")
    for x in ("weight", "bias"):
        hf[f"{t}final_layer_norm.{x}"] = o[f"ln_final.{x}"]
    hf["text_projection.weight"] = o["text_projection"].t()
    hf["logit_scale"] = o["logit_scale"].reshape(())
    return hf


def layer_norm(x, w, b, eps):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)  # biased variance
    return (x - mean) / torch.sqrt(var + eps) * w + b


def linear(x, m, prefix, bias=True):
    y = x @ m[prefix + ".weight"].t()
    return y + m[prefix + ".bias"] if bias else y


def activation(x, name):
    if name == "quick_gelu":
        return x * torch.sigmoid(1.702 * x)
    if name == "gelu":
        return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))
    raise ValueError(f"unsupported hidden_act {name!r}")


def attention(x, m, prefix, heads, causal):
    """HF CLIPAttention: separate q/k/v, contiguous head slices, scale head_dim^-0.5."""
    b, s, d = x.shape
    hd = d // heads
    q = linear(x, m, prefix + ".q_proj").view(b, s, heads, hd).transpose(1, 2)
    k = linear(x, m, prefix + ".k_proj").view(b, s, heads, hd).transpose(1, 2)
    v = linear(x, m, prefix + ".v_proj").view(b, s, heads, hd).transpose(1, 2)
    scores = (q @ k.transpose(-1, -2)) * hd ** -0.5
    if causal:
        mask = torch.full((s, s), float("-inf"), dtype=x.dtype).triu_(1)
        scores = scores + mask
    # softmax at least in fp32 (float64 stays float64)
    sdt = torch.float64 if x.dtype == torch.float64 else torch.float32
    p = torch.softmax(scores.to(sdt), dim=-1).to(x.dtype)
    out = (p @ v).transpose(1, 2).reshape(b, s, d)
    return linear(out, m, prefix + ".out_proj")


def encoder(h, m, prefix, cfg, causal):
    eps, act = cfg["layer_norm_eps"], cfg["hidden_act"]
    for i in range(cfg["num_hidden_layers"]):
        p = f"{prefix}.layers.{i}"
        h = h + attention(layer_norm(h, m[p + ".layer_norm1.weight"], m[p + ".layer_norm1.bias"], eps),
                          m, p + ".self_attn", cfg["num_attention_heads"], causal)
        x = layer_norm(h, m[p + ".layer_norm2.weight"], m[p + ".layer_norm2.bias"], eps)
        h = h + linear(activation(linear(x, m, p + ".mlp.fc1"), act), m, p + ".mlp.fc2")
    return h


def image_features(m, pixels):
    """pixels [B,3,S,S] -> unnormalised image_embeds [B,E] (spec §3.1)."""
    cfg = m.vcfg
    x = pixels.to(m.dtype)
    bsz, _, size, _ = x.shape
    pt = cfg["patch_size"]
    g = size // pt
    d = cfg["hidden_size"]
    # patches in (c, ky, kx) order, tokens row-major over the grid
    patches = x.reshape(bsz, 3, g, pt, g, pt).permute(0, 2, 4, 1, 3, 5).reshape(bsz, g * g, 3 * pt * pt)
    tok = patches @ m["vision_model.embeddings.patch_embedding.weight"].reshape(d, -1).t()
    cls = m["vision_model.embeddings.class_embedding"].expand(bsz, 1, d)
    h = torch.cat([cls, tok], 1) + m["vision_model.embeddings.position_embedding.weight"][: g * g + 1]
    eps = cfg["layer_norm_eps"]
    h = layer_norm(h, m["vision_model.pre_layrnorm.weight"], m["vision_model.pre_layrnorm.bias"], eps)
    h = encoder(h, m, "vision_model.encoder", cfg, causal=False)
    pooled = layer_norm(h[:, 0], m["vision_model.post_layernorm.weight"],
                        m["vision_model.post_layernorm.bias"], eps)
    return pooled @ m["visual_projection.weight"].t()


def text_features(m, ids):
    """ids: one list of token ids -> unnormalised text_embeds [E] (spec §3.3).
    Pools at the FIRST position whose id == EOT (= vocab_size - 1)."""
    cfg = m.tcfg
    if m.eot_id not in ids:
        raise ValueError("token ids contain no EOT")
    t = torch.tensor([ids], dtype=torch.long)
    h = m["text_model.embeddings.token_embedding.weight"][t]
    h = h + m["text_model.embeddings.position_embedding.weight"][: len(ids)]
    h = encoder(h, m, "text_model.encoder", cfg, causal=True)
    h = layer_norm(h, m["text_model.final_layer_norm.weight"], m["text_model.final_layer_norm.bias"],
                   cfg["layer_norm_eps"])
    pooled = h[0, ids.index(m.eot_id)]
    return pooled @ m["text_projection.weight"].t()


def normalize(e):
    return e / torch.linalg.vector_norm(e, dim=-1, keepdim=True)


def encode_images(m, pixels, batch=8):
    """pixels: tensor [B,3,S,S] -> L2-normalised embeddings [B,E]."""
    with torch.no_grad():
        outs = [image_features(m, pixels[i:i + batch]) for i in range(0, pixels.shape[0], batch)]
        return normalize(torch.cat(outs, 0))


def encode_texts(m, id_lists):
    """list of id lists -> L2-normalised embeddings [N,E]."""
    with torch.no_grad():
        return normalize(torch.stack([text_features(m, ids) for ids in id_lists]))


def read_pixels(path, size):
    a = np.fromfile(path, dtype="<f4")
    if a.size != 3 * size * size:
        raise SystemExit(f"{path}: {a.size} floats, expected 3*{size}*{size}")
    return torch.from_numpy(a.astype(np.float64).reshape(3, size, size))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("--pixels", action="append", default=[], help="float32 CHW file (repeatable)")
    ap.add_argument("--ids", action="append", default=[], help='token ids, e.g. "49406 320 49407"')
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    m = Model(args.model_dir, getattr(torch, args.dtype))
    out = {"layout": m.layout, "images": [], "texts": [],
           "logit_scale": math.exp(float(m["logit_scale"]))}
    if args.pixels:
        size = m.vcfg["image_size"]
        px = torch.stack([read_pixels(p, size) for p in args.pixels])
        out["images"] = encode_images(m, px).double().tolist()
    if args.ids:
        ids = [[int(t) for t in s.replace(",", " ").split()] for s in args.ids]
        out["texts"] = encode_texts(m, ids).double().tolist()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
