#!/usr/bin/python3
"""A small CLIP with exactly the architecture libclipmod runs (shared/docs/clip-spec.md §3).

Module names follow Hugging Face's CLIPModel, so `state_dict()` keys are the
checkpoint's tensor names (spec §1.2) and export is a dtype cast:

  vision_model.embeddings.{class_embedding, patch_embedding.weight (conv, no bias),
      position_embedding.weight}, vision_model.pre_layrnorm, vision_model.encoder.layers.N.
      {self_attn.{q,k,v,out}_proj, layer_norm1, mlp.fc1, mlp.fc2, layer_norm2},
      vision_model.post_layernorm (class token only), visual_projection (no bias)
  text_model.embeddings.{token_embedding, position_embedding}, text_model.encoder.layers.N.*
      (causal mask), text_model.final_layer_norm, pooled at the first EOT (id vocab_size-1),
      text_projection (no bias)
  logit_scale (a 0-dim scalar; training clamps it to [0, ln 100])

Activation quick_gelu x*sigmoid(1.702x); LayerNorm eps 1e-5; attention scores are
scaled by head_dim^-0.5. q/k/v stay separate Linears (HF names) but are applied as
one fused matrix product for speed, which computes the same function.
"""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

LN_EPS = 1e-5
LOGIT_SCALE_MAX = math.log(100.0)


def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


class Attention(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.head_dim = width // heads
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)

    def forward(self, x, mask=None):
        b, s, w = x.shape
        wqkv = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight], 0)
        bqkv = torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias], 0)
        qkv = F.linear(x, wqkv, bqkv).view(b, s, 3, self.heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [b, heads, s, head_dim]
        scores = torch.matmul(q, k.transpose(-1, -2)) * (self.head_dim ** -0.5)
        if mask is not None:
            scores = scores + mask
        attn = torch.softmax(scores, dim=-1)
        out = torch.matmul(attn, v).transpose(1, 2).reshape(b, s, w)
        return self.out_proj(out)


class MLP(nn.Module):
    def __init__(self, width, inter):
        super().__init__()
        self.fc1 = nn.Linear(width, inter)
        self.fc2 = nn.Linear(inter, width)

    def forward(self, x):
        return self.fc2(quick_gelu(self.fc1(x)))


class Layer(nn.Module):
    """Pre-norm block: h += attn(LN1 h); h += mlp(LN2 h)."""

    def __init__(self, width, heads, inter):
        super().__init__()
        self.self_attn = Attention(width, heads)
        self.layer_norm1 = nn.LayerNorm(width, eps=LN_EPS)
        self.mlp = MLP(width, inter)
        self.layer_norm2 = nn.LayerNorm(width, eps=LN_EPS)

    def forward(self, x, mask=None):
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class Encoder(nn.Module):
    def __init__(self, width, heads, inter, layers):
        super().__init__()
        self.layers = nn.ModuleList([Layer(width, heads, inter) for _ in range(layers)])

    def forward(self, x, mask=None):
        for layer in self.layers:
            x = layer(x, mask)
        return x


class VisionEmbeddings(nn.Module):
    def __init__(self, width, patch, image):
        super().__init__()
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.patch_embedding = nn.Conv2d(3, width, patch, stride=patch, bias=False)
        self.position_embedding = nn.Embedding((image // patch) ** 2 + 1, width)

    def forward(self, pixels):
        x = self.patch_embedding(pixels).flatten(2).transpose(1, 2)  # row-major grid
        cls = self.class_embedding.expand(x.shape[0], 1, -1)
        return torch.cat([cls, x], 1) + self.position_embedding.weight


class MixStyle:
    """Training only (Zhou et al., "Domain Generalization with MixStyle", ICLR 2021):
    with probability p per batch, every image's patch tokens keep their content but
    take feature statistics (per-channel mean and standard deviation over the
    patches) mixed with those of another image of the batch, weight lam ~ Beta(alpha,
    alpha) (mostly near 0 or 1: a near swap). An art style lives largely in such
    statistics, so mixing them invents styles between the trained ones. The class
    token is left alone; the statistics are constants for the gradient, as in the
    paper. Own generator: the rest of the training draws the same numbers with it."""

    def __init__(self, p, layers, seed, alpha=0.1):
        self.p, self.layers, self.alpha = p, layers, alpha
        self.rng = np.random.default_rng(seed)
        self.on = False

    def batch(self):
        """Decides for one batch (one forward) whether it is mixed."""
        self.on = self.rng.random() < self.p
        if self.on:
            self.perm = None

    def __call__(self, x):
        if not self.on:
            return x
        b = x.shape[0]
        if self.perm is None:  # one partner and weight per image for the whole forward
            self.perm = torch.from_numpy(self.rng.permutation(b))
            self.lam = torch.from_numpy(
                self.rng.beta(self.alpha, self.alpha, (b, 1, 1)).astype(np.float32))
        t = x[:, 1:]
        mu = t.mean(1, keepdim=True).detach()
        sig = (t.var(1, keepdim=True) + 1e-6).sqrt().detach()
        lam = self.lam
        mu2 = lam * mu + (1 - lam) * mu[self.perm]
        sig2 = lam * sig + (1 - lam) * sig[self.perm]
        return torch.cat([x[:, :1], (t - mu) / sig * sig2 + mu2], 1)


class VisionModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embeddings = VisionEmbeddings(c["hidden_size"], c["patch_size"], c["image_size"])
        self.pre_layrnorm = nn.LayerNorm(c["hidden_size"], eps=LN_EPS)  # sic, as HF
        self.encoder = Encoder(c["hidden_size"], c["num_attention_heads"],
                               c["intermediate_size"], c["num_hidden_layers"])
        self.post_layernorm = nn.LayerNorm(c["hidden_size"], eps=LN_EPS)
        self.mixstyle = None  # a MixStyle while training with --mixstyle

    def forward(self, pixels):
        x = self.pre_layrnorm(self.embeddings(pixels))
        mix = self.mixstyle if self.training else None
        if mix is None:
            x = self.encoder(x)
        else:  # mixed after the embeddings and after each of the first mix.layers layers
            x = mix(x)
            for i, layer in enumerate(self.encoder.layers):
                x = layer(x)
                if i < mix.layers:
                    x = mix(x)
        return self.post_layernorm(x[:, 0])


class TextEmbeddings(nn.Module):
    def __init__(self, width, vocab, context):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, width)
        self.position_embedding = nn.Embedding(context, width)


class TextModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.eot_id = c["vocab_size"] - 1
        self.embeddings = TextEmbeddings(c["hidden_size"], c["vocab_size"],
                                         c["max_position_embeddings"])
        self.encoder = Encoder(c["hidden_size"], c["num_attention_heads"],
                               c["intermediate_size"], c["num_hidden_layers"])
        self.final_layer_norm = nn.LayerNorm(c["hidden_size"], eps=LN_EPS)

    def forward(self, ids):
        """ids [b, s] (SOT ... EOT, padded after EOT with anything): pooled at the first EOT."""
        b, s = ids.shape
        x = self.embeddings.token_embedding(ids) + self.embeddings.position_embedding.weight[:s]
        mask = torch.full((s, s), float("-inf"), device=ids.device).triu_(1)
        x = self.final_layer_norm(self.encoder(x, mask))
        eot = (ids == self.eot_id).int().argmax(dim=1)  # first EOT
        return x[torch.arange(b), eot]


class CLIP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        v, t = config["vision_config"], config["text_config"]
        self.vision_model = VisionModel(v)
        self.text_model = TextModel(t)
        p = config["projection_dim"]
        self.visual_projection = nn.Linear(v["hidden_size"], p, bias=False)
        self.text_projection = nn.Linear(t["hidden_size"], p, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(config.get("logit_scale_init_value", 2.6592)))

    def encode_image(self, pixels):
        return F.normalize(self.visual_projection(self.vision_model(pixels)), dim=-1)

    def encode_text(self, ids):
        return F.normalize(self.text_projection(self.text_model(ids)), dim=-1)

    def clamp_logit_scale(self):
        with torch.no_grad():
            self.logit_scale.clamp_(0.0, LOGIT_SCALE_MAX)


def init_weights(model, gen):
    """CLIP-style init (OpenAI clip/model.py initialize_parameters), drawn from `gen`
    in state_dict order so the same seed gives the same weights."""
    v = model.config["vision_config"]
    t = model.config["text_config"]
    for name, p in model.named_parameters():
        with torch.no_grad():
            if name == "logit_scale":
                continue
            if "layer_norm" in name or "layrnorm" in name:
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            elif name.endswith(".bias"):
                p.zero_()
            elif "token_embedding" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
            elif "text_model" in name and "position_embedding" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.01)
            elif "vision_model.embeddings" in name and "patch" not in name:
                p.copy_(torch.randn(p.shape, generator=gen) * v["hidden_size"] ** -0.5)
            else:
                tower = t if name.startswith("text") else v
                layers = tower["num_hidden_layers"]
                width = p.shape[1] if p.dim() == 2 else int(torch.tensor(p.shape[1:]).prod())
                std = width ** -0.5
                if name.endswith("out_proj.weight") or name.endswith("fc2.weight"):
                    std *= (2 * layers) ** -0.5
                p.copy_(torch.randn(p.shape, generator=gen) * std)


def make_config(vision, text, projection_dim, vocab_size, context=77):
    """HF CLIPConfig-style dict (the fields libclipmod reads, plus HF's usual ones)."""
    def tower(d):
        return {"hidden_size": d["width"], "intermediate_size": d["width"] * d.get("mlp_ratio", 4),
                "num_hidden_layers": d["layers"], "num_attention_heads": d["heads"],
                "hidden_act": "quick_gelu", "layer_norm_eps": LN_EPS}
    vc = tower(vision)
    vc.update({"image_size": vision["image_size"], "patch_size": vision["patch_size"],
               "num_channels": 3})
    tc = tower(text)
    tc.update({"vocab_size": vocab_size, "max_position_embeddings": context,
               "bos_token_id": vocab_size - 2, "eos_token_id": vocab_size - 1,
               "pad_token_id": vocab_size - 1})
    return {"architectures": ["CLIPModel"], "model_type": "clip",
            "projection_dim": projection_dim, "logit_scale_init_value": 2.6592,
            "text_config": tc, "vision_config": vc}
