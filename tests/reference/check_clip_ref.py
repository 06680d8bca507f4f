#!/usr/bin/python3
"""Cross-check clip_ref.py against a second, independent formulation.

  check_clip_ref.py MODEL_DIR [--seed N] [--images K] [--threads N]

The second formulation follows OpenAI clip/model.py (spec §2.1, §3): it reads
the tensors straight from the file (OpenAI or HF names), uses F.conv2d for the
patch embedding, nn.MultiheadAttention with the fused in_proj, F.layer_norm, a
77-token zero-padded context with a -inf upper-triangular mask and argmax
pooling.  It feeds K seeded random pixel tensors and a few id sequences to both
and prints the largest |difference| of the normalised embeddings (float64);
exit status 1 if it exceeds 1e-9.  Also checks the float32 path against float64.
"""
import argparse
import math
import os
import sys

import torch
import torch.nn.functional as F

import clip_ref
import safetensors_io


def load_openai(model_dir):
    st = safetensors_io.SafeTensors(os.path.join(model_dir, "model.safetensors"))
    w = {k: torch.from_numpy(st.numpy(k).astype("float64")) for k in st.keys()
         if not k.endswith("position_ids")}
    if "visual.conv1.weight" in w:
        return w
    # HF names -> OpenAI names, written independently of clip_ref.from_openai
    o = {}
    for tower, src, dst in (("v", "vision_model.encoder.layers.", "visual.transformer.resblocks."),
                            ("t", "text_model.encoder.layers.", "transformer.resblocks.")):
        i = 0
        while f"{src}{i}.self_attn.q_proj.weight" in w:
            a = f"{src}{i}."
            b = f"{dst}{i}."
            o[b + "attn.in_proj_weight"] = torch.cat([w[a + f"self_attn.{p}_proj.weight"] for p in "qkv"])
            o[b + "attn.in_proj_bias"] = torch.cat([w[a + f"self_attn.{p}_proj.bias"] for p in "qkv"])
            for x, y in (("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"),
                         ("layer_norm2", "ln_2"), ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):
                o[b + y + ".weight"], o[b + y + ".bias"] = w[a + x + ".weight"], w[a + x + ".bias"]
            i += 1
    ren = {"vision_model.embeddings.patch_embedding.weight": "visual.conv1.weight",
           "vision_model.embeddings.class_embedding": "visual.class_embedding",
           "vision_model.embeddings.position_embedding.weight": "visual.positional_embedding",
           "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
           "text_model.embeddings.position_embedding.weight": "positional_embedding",
           "logit_scale": "logit_scale"}
    for x, y in (("vision_model.pre_layrnorm", "visual.ln_pre"), ("vision_model.post_layernorm", "visual.ln_post"),
                 ("text_model.final_layer_norm", "ln_final")):
        ren[x + ".weight"], ren[x + ".bias"] = y + ".weight", y + ".bias"
    for k, v in ren.items():
        o[v] = w[k]
    o["visual.proj"] = w["visual_projection.weight"].t()
    o["text_projection"] = w["text_projection.weight"].t()
    return o


def transformer(x, w, prefix, heads, act, mask):
    """x: [seq, batch, width] as in OpenAI model.py."""
    d = x.shape[-1]
    i = 0
    while f"{prefix}{i}.attn.in_proj_weight" in w:
        p = f"{prefix}{i}."
        mha = torch.nn.MultiheadAttention(d, heads).double()
        mha.in_proj_weight.data = w[p + "attn.in_proj_weight"]
        mha.in_proj_bias.data = w[p + "attn.in_proj_bias"]
        mha.out_proj.weight.data = w[p + "attn.out_proj.weight"]
        mha.out_proj.bias.data = w[p + "attn.out_proj.bias"]
        y = F.layer_norm(x, (d,), w[p + "ln_1.weight"], w[p + "ln_1.bias"], 1e-5)
        x = x + mha(y, y, y, need_weights=False, attn_mask=mask)[0]
        y = F.layer_norm(x, (d,), w[p + "ln_2.weight"], w[p + "ln_2.bias"], 1e-5)
        y = F.linear(y, w[p + "mlp.c_fc.weight"], w[p + "mlp.c_fc.bias"])
        y = y * torch.sigmoid(1.702 * y) if act == "quick_gelu" else F.gelu(y)
        x = x + F.linear(y, w[p + "mlp.c_proj.weight"], w[p + "mlp.c_proj.bias"])
        i += 1
    return x


def encode_image(w, cfg, pixels):
    vc = cfg["vision_config"]
    pt = w["visual.conv1.weight"].shape[-1]
    x = F.conv2d(pixels, w["visual.conv1.weight"], stride=pt).flatten(2).transpose(1, 2)
    cls = w["visual.class_embedding"].expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], 1) + w["visual.positional_embedding"]
    d = x.shape[-1]
    x = F.layer_norm(x, (d,), w["visual.ln_pre.weight"], w["visual.ln_pre.bias"], 1e-5)
    x = transformer(x.transpose(0, 1), w, "visual.transformer.resblocks.", vc["num_attention_heads"],
                    vc["hidden_act"], None).transpose(0, 1)
    x = F.layer_norm(x[:, 0], (d,), w["visual.ln_post.weight"], w["visual.ln_post.bias"], 1e-5)
    return x @ w["visual.proj"]


def encode_text(w, cfg, ids):
    tc = cfg["text_config"]
    t = torch.zeros(len(ids), 77, dtype=torch.long)  # OpenAI pads with 0
    for r, seq in enumerate(ids):
        t[r, :len(seq)] = torch.tensor(seq)
    x = w["token_embedding.weight"][t] + w["positional_embedding"]
    mask = torch.full((77, 77), float("-inf"), dtype=torch.float64).triu_(1)
    x = transformer(x.transpose(0, 1), w, "transformer.resblocks.", tc["num_attention_heads"],
                    tc["hidden_act"], mask).transpose(0, 1)
    d = x.shape[-1]
    x = F.layer_norm(x, (d,), w["ln_final.weight"], w["ln_final.bias"], 1e-5)
    return x[torch.arange(len(ids)), t.argmax(-1)] @ w["text_projection"]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    m = clip_ref.Model(args.model_dir, torch.float64)
    m32 = clip_ref.Model(args.model_dir, torch.float32)
    w = load_openai(args.model_dir)
    cfg = m.config
    s = cfg["vision_config"]["image_size"]
    eot = m.eot_id
    g = torch.Generator().manual_seed(args.seed)
    pix = torch.randn(args.images, 3, s, s, generator=g, dtype=torch.float64)
    ids = [[eot - 1, eot], [eot - 1, 5, 300, 7, eot],
           [eot - 1] + torch.randint(0, eot - 1, (75,), generator=g).tolist() + [eot]]
    with torch.no_grad():
        ref_i, ref_t = clip_ref.encode_images(m, pix), clip_ref.encode_texts(m, ids)
        alt_i = clip_ref.normalize(encode_image(w, cfg, pix))
        alt_t = clip_ref.normalize(encode_text(w, cfg, ids))
        f32_i = clip_ref.encode_images(m32, pix.float()).double()
        f32_t = clip_ref.encode_texts(m32, ids).double()
    di, dt = (ref_i - alt_i).abs().max().item(), (ref_t - alt_t).abs().max().item()
    fi, ft = (ref_i - f32_i).abs().max().item(), (ref_t - f32_t).abs().max().item()
    print(f"{args.model_dir}: float64 clip_ref vs nn-module formulation: image {di:.3g}, text {dt:.3g}; "
          f"float32 vs float64: image {fi:.3g}, text {ft:.3g}")
    sys.exit(0 if max(di, dt) < 1e-9 and math.isfinite(di + dt) else 1)


if __name__ == "__main__":
    main()
