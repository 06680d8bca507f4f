/*
 * weights.c - from checkpoint tensors to the parameters our kernels read.
 *
 * Two naming schemes reach us: Hugging Face's CLIPModel (vision_model.*,
 * text_model.*) and OpenAI's / open_clip's (visual.*, transformer.*). OpenAI stores
 * the projections as [in, out] (applied as x @ P) and fuses q, k, v into one
 * in_proj; Hugging Face stores Linear weights as [out, in] with separate q, k, v.
 * Each parameter is taken by its two names, its shape checked against the config,
 * and copied (converted from F16/BF16 if need be) into an arena in the HF
 * orientation, with q, k, v fused. Position ids (int64) are never read.
 *
 * The image tower is copied at load; the text tower only when asked
 * (cm_weights_load_text), into an arena of its own that cm_weights_free_text hands
 * back: once a policy's prompts are embedded (or all came from the prompt cache) a
 * scanner never needs it, and ViT-B/32's text tower is 250 MB of a 600 MB model.
 * Every name and shape of both towers is still checked at load.
 *
 * The image tower as loaded (arena, and at int8/bf16 the converted matrices) is
 * also what a weights cache file keeps (wcache.c): the loader's "attach" mode walks
 * the same parameters in the same order without copying, so that the offsets of the
 * file's image and the pointers into a mapping of it come from one piece of code.
 * The arena's size, the converted matrices' places and the packing rules are
 * weights_layout.c's.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common.h"
#include "gemm.h"
#include "quant.h"
#include "weights.h"
#include "weights_layout.h"

typedef struct loader {
    const cm_safetensors *st;
    cm_layout layout;
    int dry;     /* only check names and shapes: no arena yet */
    float *next; /* bump pointer into the arena */
    float *end;
    char *errbuf;
    clipmod_precision precision;
    cm_qmat *qnext; /* next 4 free cm_qmat of the weights' qstore */
    /* Attach mode: the arena (from `base`) already holds every parameter; pointers
     * are assigned, nothing is copied, and each range a forward pass reads is passed
     * to `visit` (the block matrices not, at int8/bf16: their converted copies are). */
    int attach;
    const float *base;
    const cm_block *block; /* the block being read, to tell its matrices */
    cm_image_visit visit;
    void *arg;
    /* Loading into a weights cache file's image (cm_weights_load_into): the converted
     * matrices are made in their places there too, not in memory of their own. */
    unsigned char *image;
    const cm_config *cfg;
    cm_qmat *qbase;
} loader;

static void fmt_shape(char *buf, size_t len, int ndim, const int64_t *shape)
{
    size_t off = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < ndim && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (off < len)
        snprintf(buf + off, len - off, "]");
}

/* Find `name` and check it holds floats of exactly `shape`. */
static clipmod_error find_tensor(loader *ld, const char *name, int ndim, const int64_t *shape,
                                 const cm_tensor **out)
{
    const cm_tensor *t = cm_safetensors_find(ld->st, name);
    *out = NULL;
    if (!t)
        return cm_error(ld->errbuf, CLIPMOD_E_MODEL_TENSOR, "tensor '%s' is missing", name);
    if (t->dtype != CM_DT_F32 && t->dtype != CM_DT_F16 && t->dtype != CM_DT_BF16)
        return cm_error(ld->errbuf, CLIPMOD_E_MODEL_TENSOR,
                        "tensor '%s' has dtype %s; F32, F16 or BF16 is needed", name,
                        t->dtype_name);
    /* A 0-dim scalar and a [1] vector are the same thing (open_clip writes both). */
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++)
        same = t->shape[i] == shape[i];
    if (!same && ndim == 0 && t->numel == 1)
        same = 1;
    if (!same) {
        char got[96], want[96];
        fmt_shape(got, sizeof got, t->ndim, t->shape);
        fmt_shape(want, sizeof want, ndim, shape);
        return cm_error(ld->errbuf, CLIPMOD_E_MODEL_TENSOR,
                        "tensor '%s' has shape %s but the model's config implies %s", name, got,
                        want);
    }
    *out = t;
    return CLIPMOD_OK;
}

static float *bump(loader *ld, size_t n)
{
    float *p = ld->next;
    /* Keep every parameter 64-byte aligned. */
    ld->next += (n + 15) & ~(size_t)15;
    return ld->next <= ld->end ? p : NULL;
}

/* Attach mode: report n floats at p, unless a converted matrix stands for them. */
static void visit_floats(const loader *ld, const float *p, size_t n, int matrix)
{
    if (matrix && ld->precision != CLIPMOD_PRECISION_FP32)
        return;
    ld->visit(ld->arg, (size_t)(p - ld->base) * sizeof *p, p, n * sizeof *p);
}

/* 1 if `out` is one of the current block's four linear matrices. */
static int is_matrix(const loader *ld, const float **out)
{
    const cm_block *b = ld->block;
    return b && (out == &b->qkv_w || out == &b->out_w || out == &b->fc1_w || out == &b->fc2_w);
}

/* Copy tensor `name` of `shape` into the arena; `transpose` turns [a, b] into [b, a]. */
static clipmod_error take(loader *ld, const char *name, int ndim, const int64_t *shape,
                          int transpose, const float **out)
{
    const cm_tensor *t;
    clipmod_error rc = find_tensor(ld, name, ndim, shape, &t);
    if (rc || ld->dry) {
        *out = NULL;
        return rc;
    }
    float *dst = bump(ld, t->numel);
    if (!dst)
        return cm_error(ld->errbuf, CLIPMOD_E_MODEL_TENSOR, "internal: arena too small at '%s'",
                        name);
    if (ld->attach) {
        visit_floats(ld, dst, t->numel, is_matrix(ld, out));
        *out = dst;
        return CLIPMOD_OK;
    }
    cm_safetensors_prefault(t->data, t->nbytes);
    if (!transpose) {
        cm_tensor_to_f32(t, 0, t->numel, dst);
        cm_release_bytes(t->data, t->nbytes); /* copied: the file's pages need not stay */
    } else {
        size_t rows = (size_t)shape[0], cols = (size_t)shape[1];
        float *row = cm_alloc(cols * sizeof *row);
        if (!row)
            return cm_error(ld->errbuf, CLIPMOD_E_NOMEM, "out of memory");
        for (size_t r = 0; r < rows; r++) {
            cm_tensor_to_f32(t, r * cols, cols, row);
            for (size_t c = 0; c < cols; c++)
                dst[c * rows + r] = row[c];
        }
        cm_free(row);
        cm_release_bytes(t->data, t->nbytes);
    }
    cm_safetensors_release(t->data, t->nbytes); /* read once: keep the copy only */
    *out = dst;
    return CLIPMOD_OK;
}

#define SHAPE(...)                                                                                 \
    (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[])                         \
    {                                                                                              \
        __VA_ARGS__                                                                                \
    }

/* Hugging Face keeps q, k and v apart: stack them into one [3D, D] (and [3D]) block. */
static clipmod_error take_qkv_hf(loader *ld, const char *prefix, int64_t d, cm_block *b)
{
    static const char *const parts[3] = {"q_proj", "k_proj", "v_proj"};
    float *w = NULL, *bias = NULL;
    char name[256];
    if (!ld->dry) {
        w = bump(ld, (size_t)(3 * d * d));
        bias = bump(ld, (size_t)(3 * d));
        if (!w || !bias)
            return cm_error(ld->errbuf, CLIPMOD_E_MODEL_TENSOR, "internal: arena too small");
    }
    for (int i = 0; i < 3; i++) {
        const cm_tensor *t;
        clipmod_error rc;
        snprintf(name, sizeof name, "%sself_attn.%s.weight", prefix, parts[i]);
        rc = find_tensor(ld, name, SHAPE(d, d), &t);
        if (rc)
            return rc;
        if (w && !ld->attach) {
            cm_tensor_to_f32(t, 0, t->numel, w + i * d * d);
            cm_release_bytes(t->data, t->nbytes);
        }
        snprintf(name, sizeof name, "%sself_attn.%s.bias", prefix, parts[i]);
        rc = find_tensor(ld, name, SHAPE(d), &t);
        if (rc)
            return rc;
        if (bias && !ld->attach)
            cm_tensor_to_f32(t, 0, t->numel, bias + i * d);
    }
    if (w && ld->attach) {
        visit_floats(ld, w, (size_t)(3 * d * d), 1);
        visit_floats(ld, bias, (size_t)(3 * d), 0);
    }
    b->qkv_w = w;
    b->qkv_b = bias;
    return CLIPMOD_OK;
}

/* One tensor: its Hugging Face and OpenAI/open_clip names after a prefix (a block's,
 * or "" for a tower's own tensors), its shape (cols 0: a vector) and where it goes. */
typedef struct block_tensor {
    const char *hf, *oa;
    int64_t rows, cols;
    const float **out;
} block_tensor;

/* take() each of list[0..n) in order; the first failure is returned. */
static clipmod_error take_list(loader *ld, const char *prefix, const block_tensor *list, size_t n)
{
    const int hf = ld->layout == CM_LAYOUT_HF;
    char name[256];
    clipmod_error rc = CLIPMOD_OK;

    for (size_t i = 0; !rc && i < n; i++) {
        const block_tensor *t = &list[i];
        snprintf(name, sizeof name, "%s%s", prefix, hf ? t->hf : t->oa);
        if (t->cols)
            rc = take(ld, name, SHAPE(t->rows, t->cols), 0, t->out);
        else
            rc = take(ld, name, SHAPE(t->rows), 0, t->out);
    }
    return rc;
}

static clipmod_error take_block(loader *ld, const char *prefix, const cm_tower_config *tc,
                                cm_block *b)
{
    const int64_t d = tc->width, f = tc->mlp;
    const block_tensor norm1[] = {
        {"layer_norm1.weight", "ln_1.weight", d, 0, &b->ln1_w},
        {"layer_norm1.bias", "ln_1.bias", d, 0, &b->ln1_b},
    };
    /* open_clip keeps q, k and v in one matrix; Hugging Face's three take_qkv_hf joins. */
    const block_tensor qkv[] = {
        {"", "attn.in_proj_weight", 3 * d, d, &b->qkv_w},
        {"", "attn.in_proj_bias", 3 * d, 0, &b->qkv_b},
    };
    const block_tensor rest[] = {
        {"self_attn.out_proj.weight", "attn.out_proj.weight", d, d, &b->out_w},
        {"self_attn.out_proj.bias", "attn.out_proj.bias", d, 0, &b->out_b},
        {"layer_norm2.weight", "ln_2.weight", d, 0, &b->ln2_w},
        {"layer_norm2.bias", "ln_2.bias", d, 0, &b->ln2_b},
        {"mlp.fc1.weight", "mlp.c_fc.weight", f, d, &b->fc1_w},
        {"mlp.fc1.bias", "mlp.c_fc.bias", f, 0, &b->fc1_b},
        {"mlp.fc2.weight", "mlp.c_proj.weight", d, f, &b->fc2_w},
        {"mlp.fc2.bias", "mlp.c_proj.bias", d, 0, &b->fc2_b},
    };
    clipmod_error rc;

    ld->block = b;
    rc = take_list(ld, prefix, norm1, sizeof norm1 / sizeof norm1[0]);
    if (!rc)
        rc = ld->layout == CM_LAYOUT_HF ? take_qkv_hf(ld, prefix, d, b)
                                        : take_list(ld, prefix, qkv, sizeof qkv / sizeof qkv[0]);
    if (!rc)
        rc = take_list(ld, prefix, rest, sizeof rest / sizeof rest[0]);
    if (rc)
        return rc;
    ld->block = NULL;
    return CLIPMOD_OK;
}

/* At int8/bf16, convert a block just read (pass 2) and release its fp32 matrices. */
static clipmod_error convert_block(loader *ld, const cm_tower_config *tc, cm_block *b)
{
    if (ld->dry || ld->precision == CLIPMOD_PRECISION_FP32)
        return CLIPMOD_OK;
    if (ld->attach) { /* converted already: the matrices come with the weights' qstore */
        b->qkv_w = b->out_w = b->fc1_w = b->fc2_w = NULL;
        b->q = ld->qnext;
        ld->qnext += 4;
        return CLIPMOD_OK;
    }
    for (int j = 0; ld->image && j < 4; j++)
        cm_weights_place_qmat(ld->cfg, ld->precision, ld->qbase, (int)(ld->qnext - ld->qbase) + j,
                              ld->image);
    clipmod_error rc = cm_quant_block(b, tc, ld->precision, ld->qnext);
    if (rc)
        return cm_error(ld->errbuf, rc, "out of memory converting the weights to %s",
                        clipmod_precision_name(ld->precision));
    ld->qnext += 4;
    return CLIPMOD_OK;
}

static clipmod_error load_vision(loader *ld, const cm_config *c, cm_vision_weights *v,
                                 cm_block *blocks)
{
    const int hf = ld->layout == CM_LAYOUT_HF;
    const int64_t d = c->vision.width, p = c->patch_size, e = c->proj_dim;
    const int64_t tokens = (c->image_size / p) * (c->image_size / p) + 1;
    const block_tensor embed[] = {
        {"vision_model.embeddings.class_embedding", "visual.class_embedding", d, 0, &v->class_emb},
        {"vision_model.embeddings.position_embedding.weight", "visual.positional_embedding", tokens,
         d, &v->pos_emb},
        {"vision_model.pre_layrnorm.weight", "visual.ln_pre.weight", d, 0, &v->pre_w},
        {"vision_model.pre_layrnorm.bias", "visual.ln_pre.bias", d, 0, &v->pre_b},
    };
    const block_tensor post[] = {
        {"vision_model.post_layernorm.weight", "visual.ln_post.weight", d, 0, &v->post_w},
        {"vision_model.post_layernorm.bias", "visual.ln_post.bias", d, 0, &v->post_b},
    };
    char prefix[128];
    clipmod_error rc;

    rc = take(ld, hf ? "vision_model.embeddings.patch_embedding.weight" : "visual.conv1.weight",
              SHAPE(d, 3, p, p), 0, &v->patch_w);
    if (!rc)
        rc = take_list(ld, "", embed, sizeof embed / sizeof embed[0]);
    if (rc)
        return rc;
    v->blocks = blocks;
    for (int l = 0; l < c->vision.layers; l++) {
        snprintf(prefix, sizeof prefix,
                 hf ? "vision_model.encoder.layers.%d." : "visual.transformer.resblocks.%d.", l);
        rc = take_block(ld, prefix, &c->vision, &blocks[l]);
        if (!rc)
            rc = convert_block(ld, &c->vision, &blocks[l]);
        if (rc)
            return rc;
    }
    rc = take_list(ld, "", post, sizeof post / sizeof post[0]);
    if (rc)
        return rc;
    if (hf)
        return take(ld, "visual_projection.weight", SHAPE(e, d), 0, &v->proj);
    return take(ld, "visual.proj", SHAPE(d, e), 1, &v->proj);
}

static clipmod_error load_text(loader *ld, const cm_config *c, cm_text_weights *t, cm_block *blocks)
{
    const int hf = ld->layout == CM_LAYOUT_HF;
    const int64_t d = c->text.width, e = c->proj_dim;
    const block_tensor embed[] = {
        {"text_model.embeddings.token_embedding.weight", "token_embedding.weight", c->vocab, d,
         &t->tok_emb},
        {"text_model.embeddings.position_embedding.weight", "positional_embedding", c->context, d,
         &t->pos_emb},
    };
    const block_tensor final[] = {
        {"text_model.final_layer_norm.weight", "ln_final.weight", d, 0, &t->final_w},
        {"text_model.final_layer_norm.bias", "ln_final.bias", d, 0, &t->final_b},
    };
    char prefix[128];
    clipmod_error rc;

    rc = take_list(ld, "", embed, sizeof embed / sizeof embed[0]);
    if (rc)
        return rc;
    t->blocks = blocks;
    for (int l = 0; l < c->text.layers; l++) {
        snprintf(prefix, sizeof prefix,
                 hf ? "text_model.encoder.layers.%d." : "transformer.resblocks.%d.", l);
        rc = take_block(ld, prefix, &c->text, &blocks[l]);
        if (!rc)
            rc = convert_block(ld, &c->text, &blocks[l]);
        if (rc)
            return rc;
    }
    rc = take_list(ld, "", final, sizeof final / sizeof final[0]);
    if (rc)
        return rc;
    if (hf)
        return take(ld, "text_projection.weight", SHAPE(e, d), 0, &t->proj);
    return take(ld, "text_projection", SHAPE(d, e), 1, &t->proj);
}

clipmod_error cm_weights_load(const cm_safetensors *st, const cm_config *cfg, cm_weights *w,
                              char *errbuf)
{
    return cm_weights_load_at(st, cfg, CLIPMOD_PRECISION_FP32, w, errbuf);
}

/*
 * What every load does first: the checkpoint's naming scheme, whether it has a
 * text tower, the block (and at int8/bf16 converted-matrix) arrays, and pass 1:
 * every name and shape checked before any arena, sized by config.json alone, is
 * allocated, so a config that does not match its checkpoint fails on the first
 * mismatched tensor instead of first asking for gigabytes.
 */
static clipmod_error prepare(loader *ld, const cm_config *cfg, cm_weights *w)
{
    const cm_safetensors *st = ld->st;
    if (cm_safetensors_find(st, "visual.conv1.weight"))
        ld->layout = CM_LAYOUT_OPENAI;
    else if (cm_safetensors_find(st, "vision_model.embeddings.patch_embedding.weight"))
        ld->layout = CM_LAYOUT_HF;
    else
        return cm_error(ld->errbuf, CLIPMOD_E_MODEL_TENSOR,
                        "no vision tower: neither 'vision_model.embeddings.patch_embedding.weight'"
                        " (Hugging Face) nor 'visual.conv1.weight' (OpenAI/open_clip) is present");
    w->layout = ld->layout;
    w->has_text = cm_safetensors_find(st, ld->layout == CM_LAYOUT_HF
                                              ? "text_model.embeddings.token_embedding.weight"
                                              : "token_embedding.weight") != NULL;
    const int layers = cfg->vision.layers + cfg->text.layers;
    w->precision = ld->precision;
    w->block_store = cm_calloc((size_t)layers, sizeof(cm_block));
    if (ld->precision != CLIPMOD_PRECISION_FP32) {
        w->qcount = 4 * layers;
        w->qstore = cm_calloc((size_t)w->qcount, sizeof *w->qstore);
        ld->qnext = w->qstore;
    }
    if (!w->block_store || (ld->precision != CLIPMOD_PRECISION_FP32 && !w->qstore))
        return cm_error(ld->errbuf, CLIPMOD_E_NOMEM, "out of memory");
    clipmod_error rc;
    ld->dry = 1;
    rc = load_vision(ld, cfg, &w->vision, w->block_store);
    if (!rc && w->has_text)
        rc = load_text(ld, cfg, &w->text, w->block_store + cfg->vision.layers);
    if (rc)
        return rc;
    ld->dry = 0;
    return CLIPMOD_OK;
}

/* What every load does last: logit_scale (read into the arena) and the dtype. */
static clipmod_error finish(loader *ld, cm_weights *w)
{
    const cm_tensor *ls = cm_safetensors_find(ld->st, "logit_scale");
    float scale = logf(100.0f); /* CLIP's trained value when a sub-model file lacks it */
    if (ls) {
        const float *p;
        clipmod_error rc = take(ld, "logit_scale", 0, NULL, 0, &p);
        if (rc)
            return rc;
        scale = *p;
    }
    if (!isfinite(scale) || scale < -10.0f || scale > 10.0f)
        return cm_error(ld->errbuf, CLIPMOD_E_MODEL_TENSOR,
                        "tensor 'logit_scale' is %g: not plausible", (double)scale);
    w->logit_scale = expf(scale);
    const cm_tensor *pw = cm_safetensors_find(
        ld->st, ld->layout == CM_LAYOUT_HF ? "vision_model.embeddings.patch_embedding.weight"
                                           : "visual.conv1.weight");
    memcpy(w->dtype, pw->dtype_name, sizeof w->dtype);
    return CLIPMOD_OK;
}

clipmod_error cm_weights_load_at(const cm_safetensors *st, const cm_config *cfg,
                                 clipmod_precision prec, cm_weights *w, char *errbuf)
{
    return cm_weights_load_into(st, cfg, prec, NULL, w, errbuf);
}

clipmod_error cm_weights_load_into(const cm_safetensors *st, const cm_config *cfg,
                                   clipmod_precision prec, void *image, cm_weights *w, char *errbuf)
{
    loader ld = {.st = st, .errbuf = errbuf, .precision = prec, .image = image, .cfg = cfg};
    memset(w, 0, sizeof *w);
    clipmod_error rc = prepare(&ld, cfg, w);
    if (rc)
        goto out;
    ld.qbase = w->qstore;
    const size_t cap = cm_weights_arena_floats(cfg, 0);
    w->arena = image ? image : cm_alloc_huge(cap * sizeof(float));
    if (!w->arena) {
        rc = cm_error(errbuf, CLIPMOD_E_NOMEM, "out of memory for %zu MB of weights",
                      cap * sizeof(float) >> 20);
        goto out;
    }
    ld.next = w->arena;
    ld.end = w->arena + cap;
    /* Pass 2 copies the image tower; the text tower waits for cm_weights_load_text. */
    rc = load_vision(&ld, cfg, &w->vision, w->block_store);
    if (rc)
        goto out;
    cm_weights_pack_blocks(w->block_store, 0, cfg->vision.layers, cfg);
    cm_weights_pack_patch(&w->vision, cfg);
    w->vision.proj_packed = cm_weights_pack_one(w->vision.proj, cfg->proj_dim, cfg->vision.width);
    rc = finish(&ld, w);
out:
    if (rc && image)
        w->arena = NULL; /* the caller's, still */
    if (rc)
        cm_weights_free(w);
    else if (image) { /* w's now, as cm_weights_from_image's */
        w->map = image;
        w->map_bytes = cm_weights_image_bytes(cfg, prec);
    }
    return rc;
}

clipmod_error cm_weights_image_walk(const cm_safetensors *st, const cm_config *cfg,
                                    const cm_weights *w, cm_image_visit visit, void *arg)
{
    char err[CLIPMOD_ERROR_SIZE];
    if (!w->arena || !cm_weights_packed_as_now(cfg, w))
        return CLIPMOD_E_UNSUPPORTED; /* e.g. a pack that failed for memory: not kept */
    /* The walk assigns pointers: into copies, so `w` stays as it is. */
    cm_vision_weights v;
    cm_block *blocks = cm_calloc((size_t)cfg->vision.layers, sizeof *blocks);
    if (!blocks)
        return CLIPMOD_E_NOMEM;
    loader ld = {.st = st,
                 .layout = w->layout,
                 .errbuf = err,
                 .precision = w->precision,
                 .qnext = w->qstore,
                 .attach = 1,
                 .base = w->arena,
                 .next = w->arena,
                 .end = w->arena + cm_weights_arena_floats(cfg, 0),
                 .visit = visit,
                 .arg = arg};
    memset(&v, 0, sizeof v);
    clipmod_error rc = load_vision(&ld, cfg, &v, blocks);
    const float *scale;
    if (!rc && cm_safetensors_find(st, "logit_scale"))
        rc = take(&ld, "logit_scale", 0, NULL, 0, &scale);
    if (!rc)
        cm_weights_walk_qmats(cfg, w->precision, w->qstore, NULL, visit, arg);
    cm_free(blocks);
    return rc;
}

clipmod_error cm_weights_from_image(const cm_safetensors *st, const cm_config *cfg,
                                    clipmod_precision prec, void *image, size_t bytes,
                                    cm_image_visit visit, void *arg, cm_weights *w, char *errbuf)
{
    loader ld = {.st = st, .errbuf = errbuf, .precision = prec};
    memset(w, 0, sizeof *w);
    if (bytes != cm_weights_image_bytes(cfg, prec))
        return cm_error(errbuf, CLIPMOD_E_MODEL_TENSOR, "a weights image of %zu bytes, not %zu",
                        bytes, cm_weights_image_bytes(cfg, prec));
    clipmod_error rc = prepare(&ld, cfg, w);
    if (rc)
        goto out;
    ld.attach = 1;
    ld.base = ld.next = image;
    ld.end = ld.next + cm_weights_arena_floats(cfg, 0);
    ld.visit = visit;
    ld.arg = arg;
    rc = load_vision(&ld, cfg, &w->vision, w->block_store);
    if (!rc)
        rc = finish(&ld, w);
    if (rc)
        goto out;
    cm_weights_walk_qmats(cfg, prec, w->qstore, image, visit, arg);
    const int pb = cm_weights_packs_block(&cfg->vision);
    for (int l = 0; l < cfg->vision.layers; l++)
        w->block_store[l].packed = pb && !w->block_store[l].q;
    w->vision.patch_packed = cm_weights_packs_one(cfg->vision.width);
    w->vision.proj_packed = cm_weights_packs_one(cfg->proj_dim);
    w->map = image;
    w->map_bytes = bytes;
out:
    if (rc)
        cm_weights_free(w);
    return rc;
}

clipmod_error cm_weights_load_text(const cm_safetensors *st, const cm_config *cfg, cm_weights *w,
                                   char *errbuf)
{
    if (!w->has_text || w->text_arena)
        return CLIPMOD_OK;
    /* The text part of cm_weights_arena_floats(), with its own alignment slack. */
    const size_t cap = cm_weights_arena_floats(cfg, 1) - cm_weights_arena_floats(cfg, 0) + 16;
    loader ld = {.st = st, .layout = w->layout, .errbuf = errbuf};
    w->text_arena = cm_alloc_huge(cap * sizeof(float));
    if (!w->text_arena)
        return cm_error(errbuf, CLIPMOD_E_NOMEM, "out of memory for %zu MB of text weights",
                        cap * sizeof(float) >> 20);
    ld.next = w->text_arena;
    ld.end = w->text_arena + cap;
    clipmod_error rc = load_text(&ld, cfg, &w->text, w->block_store + cfg->vision.layers);
    if (rc) {
        cm_weights_free_text(w, cfg);
        return rc;
    }
    cm_weights_pack_blocks(w->block_store, cfg->vision.layers, cfg->text.layers, cfg);
    w->text.proj_packed = cm_weights_pack_one(w->text.proj, cfg->proj_dim, cfg->text.width);
    return CLIPMOD_OK;
}

void cm_weights_free_text(cm_weights *w, const cm_config *cfg)
{
    if (!w || !w->text_arena)
        return;
    cm_free(w->text_arena);
    w->text_arena = NULL;
    cm_block *blocks = w->text.blocks;
    memset(&w->text, 0, sizeof w->text);
    if (blocks)
        memset(blocks, 0, (size_t)cfg->text.layers * sizeof *blocks);
}

void cm_weights_free(cm_weights *w)
{
    if (!w)
        return;
    cm_free(w->text_arena);
    w->text_arena = NULL;
    if (!w->map) /* else the arena lies in the mapping */
        cm_free(w->arena);
    if (w->map)
        munmap(w->map, w->map_bytes);
    w->map = NULL;
    cm_free(w->block_store);
    for (int i = 0; w->qstore && i < w->qcount; i++)
        cm_qmat_free(&w->qstore[i]);
    cm_free(w->qstore);
    w->arena = NULL;
    w->block_store = NULL;
    w->qstore = NULL;
}
