/*
 * config.c - reading a CLIP model's config.json.
 *
 * Two dialects exist in the wild: Hugging Face's CLIPConfig (text_config and
 * vision_config objects) and open_clip's open_clip_config.json (model_cfg with
 * vision_cfg and text_cfg). Both are reduced to one cm_config here, and every value
 * is range-checked: the file is as untrusted as the weights it describes.
 */
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "config.h"

/* Bounds well beyond any CLIP yet published, small enough that sizes cannot overflow. */
#define MAX_WIDTH   16384
#define MAX_LAYERS  256
#define MAX_IMAGE   4096
#define MAX_VOCAB   1000000
#define MAX_CONTEXT 1024

static const float clip_mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
static const float clip_std[3] = {0.26862954f, 0.26130258f, 0.27577711f};

const char *cm_act_name(cm_act act)
{
    return act == CM_ACT_GELU ? "gelu" : "quick_gelu";
}

/* Read integer `key` of `obj` into *v if present, checking lo <= v <= hi. */
static clipmod_error get_int(const char *file, const char *where, json_t *obj, const char *key,
                             int lo, int hi, int *v, char *errbuf)
{
    json_t *j = obj ? json_object_get(obj, key) : NULL;
    if (!j)
        return CLIPMOD_OK;
    if (!json_is_integer(j) || json_integer_value(j) < lo || json_integer_value(j) > hi)
        return cm_error(errbuf, CLIPMOD_E_MODEL_CONFIG, "%s: %s%s must be an integer from %d to %d",
                        file, where, key, lo, hi);
    *v = (int)json_integer_value(j);
    return CLIPMOD_OK;
}

/* Number `key` of obj into *v if present, checking 0 < v <= hi. */
static clipmod_error get_number(const char *file, const char *where, json_t *obj, const char *key,
                                double hi, double *v, char *errbuf)
{
    json_t *j = obj ? json_object_get(obj, key) : NULL;
    if (!j)
        return CLIPMOD_OK;
    if (!json_is_number(j) || json_number_value(j) <= 0 || json_number_value(j) > hi)
        return cm_error(errbuf, CLIPMOD_E_MODEL_CONFIG, "%s: %s%s must be a number in (0, %g]",
                        file, where, key, hi);
    *v = json_number_value(j);
    return CLIPMOD_OK;
}

static clipmod_error get_eps(const char *file, const char *where, json_t *obj, float *v,
                             char *errbuf)
{
    double eps = *v;
    clipmod_error rc = get_number(file, where, obj, "layer_norm_eps", 1, &eps, errbuf);
    *v = (float)eps;
    return rc;
}

/* Three numbers `key` of obj into dst, if present (a mean; a std when positive). */
static clipmod_error get_triple(const char *file, const char *where, json_t *obj, const char *key,
                                int positive, float dst[3], char *errbuf)
{
    json_t *a = obj ? json_object_get(obj, key) : NULL;
    if (!a)
        return CLIPMOD_OK;
    if (!json_is_array(a) || json_array_size(a) != 3)
        return cm_error(errbuf, CLIPMOD_E_MODEL_CONFIG, "%s: %s%s must be a list of 3 numbers",
                        file, where, key);
    for (int i = 0; i < 3; i++) {
        json_t *x = json_array_get(a, i);
        if (!json_is_number(x) || (positive && json_number_value(x) <= 0))
            return cm_error(errbuf, CLIPMOD_E_MODEL_CONFIG, "%s: %s%s[%d] is not valid", file,
                            where, key, i);
        dst[i] = (float)json_number_value(x);
    }
    return CLIPMOD_OK;
}

static clipmod_error get_act(const char *file, const char *where, json_t *obj, cm_act *act,
                             char *errbuf)
{
    json_t *j = obj ? json_object_get(obj, "hidden_act") : NULL;
    if (!j)
        return CLIPMOD_OK;
    const char *s = json_string_value(j);
    if (s && !strcmp(s, "quick_gelu"))
        *act = CM_ACT_QUICK_GELU;
    else if (s && (!strcmp(s, "gelu") || !strcmp(s, "gelu_python")))
        *act = CM_ACT_GELU;
    else
        return cm_error(errbuf, CLIPMOD_E_MODEL_CONFIG,
                        "%s: %shidden_act '%s' is not supported (quick_gelu or gelu)", file, where,
                        s ? s : "(not a string)");
    return CLIPMOD_OK;
}

static clipmod_error tower_keys(const char *file, const char *where, json_t *obj,
                                cm_tower_config *t, char *errbuf)
{
    clipmod_error rc;
    if (obj && !json_is_object(obj))
        return cm_error(errbuf, CLIPMOD_E_MODEL_CONFIG, "%s: %s is not an object", file, where);
    rc = get_int(file, where, obj, "hidden_size", 1, MAX_WIDTH, &t->width, errbuf);
    if (!rc)
        rc = get_int(file, where, obj, "intermediate_size", 1, 4 * MAX_WIDTH, &t->mlp, errbuf);
    if (!rc)
        rc = get_int(file, where, obj, "num_hidden_layers", 1, MAX_LAYERS, &t->layers, errbuf);
    if (!rc)
        rc = get_int(file, where, obj, "num_attention_heads", 1, MAX_WIDTH, &t->heads, errbuf);
    if (!rc)
        rc = get_eps(file, where, obj, &t->eps, errbuf);
    if (!rc)
        rc = get_act(file, where, obj, &t->act, errbuf);
    if (rc)
        return rc;
    return CLIPMOD_OK;
}

static void hf_defaults(cm_config *c)
{
    /* transformers' CLIPVisionConfig / CLIPTextConfig / CLIPConfig defaults. */
    c->vision = (cm_tower_config){768, 3072, 12, 12, 1e-5f, CM_ACT_QUICK_GELU};
    c->text = (cm_tower_config){512, 2048, 12, 8, 1e-5f, CM_ACT_QUICK_GELU};
    c->image_size = 224;
    c->patch_size = 32;
    c->context = 77;
    c->vocab = 49408;
    c->proj_dim = 512;
    memcpy(c->mean, clip_mean, sizeof c->mean);
    memcpy(c->std, clip_std, sizeof c->std);
}

static clipmod_error parse_hf(const char *file, json_t *root, cm_config *c, char *errbuf)
{
    clipmod_error rc;
    json_t *v = json_object_get(root, "vision_config");
    json_t *t = json_object_get(root, "text_config");
    rc = get_int(file, "", root, "projection_dim", 1, MAX_WIDTH, &c->proj_dim, errbuf);
    if (!rc)
        rc = tower_keys(file, "vision_config.", v, &c->vision, errbuf);
    if (!rc)
        rc = tower_keys(file, "text_config.", t, &c->text, errbuf);
    if (!rc)
        rc = get_int(file, "vision_config.", v, "image_size", 1, MAX_IMAGE, &c->image_size, errbuf);
    if (!rc)
        rc = get_int(file, "vision_config.", v, "patch_size", 1, MAX_IMAGE, &c->patch_size, errbuf);
    if (!rc)
        rc = get_int(file, "text_config.", t, "max_position_embeddings", 2, MAX_CONTEXT,
                     &c->context, errbuf);
    if (!rc)
        rc = get_int(file, "text_config.", t, "vocab_size", 515, MAX_VOCAB, &c->vocab, errbuf);
    if (rc)
        return rc;
    if (v) {
        int ch = 3;
        rc = get_int(file, "vision_config.", v, "num_channels", 1, 64, &ch, errbuf);
        if (rc)
            return rc;
        if (ch != 3)
            return cm_error(errbuf, CLIPMOD_E_MODEL_CONFIG,
                            "%s: vision_config.num_channels is %d; only RGB (3) is supported", file,
                            ch);
    }
    return CLIPMOD_OK;
}

/*
 * open_clip's defaults for what its configs leave out (CLIPVisionCfg and CLIPTextCfg
 * in open_clip/model.py): they differ from transformers' (patch 16, not 32; text
 * heads 8 whatever the width).
 */
static void open_clip_defaults(cm_config *c)
{
    c->vision.width = 768;
    c->vision.layers = 12;
    c->image_size = 224;
    c->patch_size = 16;
    c->text.width = 512;
    c->text.layers = 12;
    c->text.heads = 8;
    c->context = 77;
    c->vocab = 49408;
}

/*
 * open_clip's preprocess_cfg: mean and std are used. Its resize is ours (the shortest
 * side to the input size, bicubic, a centre crop) only with the default resize_mode
 * and interpolation; a model that asks for another is refused rather than preprocessed
 * the wrong way.
 */
static clipmod_error open_clip_preprocess(const char *file, json_t *p, cm_config *c, char *errbuf)
{
    static const char *const keys[2][2] = {{"resize_mode", "shortest"},
                                           {"interpolation", "bicubic"}};
    if (p && !json_is_object(p))
        return cm_error(errbuf, CLIPMOD_E_MODEL_CONFIG, "%s: preprocess_cfg is not an object",
                        file);
    clipmod_error rc = get_triple(file, "preprocess_cfg.", p, "mean", 0, c->mean, errbuf);
    if (!rc)
        rc = get_triple(file, "preprocess_cfg.", p, "std", 1, c->std, errbuf);
    for (int i = 0; !rc && i < 2; i++) {
        json_t *j = p ? json_object_get(p, keys[i][0]) : NULL;
        const char *v = json_string_value(j);
        if (j && (!v || strcmp(v, keys[i][1])))
            rc = cm_error(errbuf, CLIPMOD_E_MODEL_CONFIG,
                          "%s: preprocess_cfg.%s '%s' is not supported (only %s)", file, keys[i][0],
                          v ? v : "(not a string)", keys[i][1]);
    }
    return rc;
}

/*
 * open_clip_config.json: {"model_cfg": {"embed_dim", "quick_gelu", "vision_cfg",
 * "text_cfg"}, "preprocess_cfg": {"mean", "std", ...}}. embed_dim is required (open_clip's
 * CLIP has no default for it); a missing size takes open_clip's default; mlp_ratio
 * is a float and the MLP width int(width * mlp_ratio), as open_clip computes it.
 */
static clipmod_error parse_open_clip(const char *file, json_t *root, cm_config *c, char *errbuf)
{
    clipmod_error rc = CLIPMOD_OK;
    json_t *m = json_object_get(root, "model_cfg");
    if (!json_is_object(m))
        return cm_error(errbuf, CLIPMOD_E_MODEL_CONFIG, "%s: model_cfg is missing", file);
    json_t *v = json_object_get(m, "vision_cfg"), *t = json_object_get(m, "text_cfg");
    if (!json_is_object(v) || !json_is_object(t))
        return cm_error(errbuf, CLIPMOD_E_MODEL_CONFIG,
                        "%s: model_cfg needs vision_cfg and text_cfg objects", file);
    if (!json_object_get(m, "embed_dim"))
        return cm_error(errbuf, CLIPMOD_E_MODEL_CONFIG, "%s: model_cfg.embed_dim is missing", file);
    open_clip_defaults(c);
    /* open_clip uses exact GELU unless quick_gelu is set (spec §2.3). */
    cm_act act = json_is_true(json_object_get(m, "quick_gelu")) ? CM_ACT_QUICK_GELU : CM_ACT_GELU;
    c->vision.act = c->text.act = act;
    int vhead = 64;
    /* Floats in open_clip ("mlp_ratio": 4.9231 in ViT-bigG-14). */
    double vratio = 4.0, tratio = 4.0;
    /* Read in this order: the first out-of-range key is the one reported. */
    const struct {
        const char *where;
        json_t *obj;
        const char *key;
        int lo, hi;
        int *out;
    } keys[] = {
        {"model_cfg.", m, "embed_dim", 1, MAX_WIDTH, &c->proj_dim},
        {"vision_cfg.", v, "width", 1, MAX_WIDTH, &c->vision.width},
        {"vision_cfg.", v, "layers", 1, MAX_LAYERS, &c->vision.layers},
        {"vision_cfg.", v, "head_width", 1, MAX_WIDTH, &vhead},
        {"vision_cfg.", v, "image_size", 1, MAX_IMAGE, &c->image_size},
        {"vision_cfg.", v, "patch_size", 1, MAX_IMAGE, &c->patch_size},
        {"text_cfg.", t, "width", 1, MAX_WIDTH, &c->text.width},
        {"text_cfg.", t, "heads", 1, MAX_WIDTH, &c->text.heads},
        {"text_cfg.", t, "layers", 1, MAX_LAYERS, &c->text.layers},
        {"text_cfg.", t, "context_length", 2, MAX_CONTEXT, &c->context},
        {"text_cfg.", t, "vocab_size", 515, MAX_VOCAB, &c->vocab},
    };
    for (size_t i = 0; !rc && i < sizeof keys / sizeof keys[0]; i++)
        rc = get_int(file, keys[i].where, keys[i].obj, keys[i].key, keys[i].lo, keys[i].hi,
                     keys[i].out, errbuf);
    if (!rc)
        rc = get_number(file, "vision_cfg.", v, "mlp_ratio", 64, &vratio, errbuf);
    if (!rc)
        rc = get_number(file, "text_cfg.", t, "mlp_ratio", 64, &tratio, errbuf);
    if (!rc)
        rc = open_clip_preprocess(file, json_object_get(root, "preprocess_cfg"), c, errbuf);
    if (rc)
        return rc;
    if (vhead > c->vision.width)
        return cm_error(errbuf, CLIPMOD_E_MODEL_CONFIG,
                        "%s: vision_cfg.head_width %d is larger than vision_cfg.width %d", file,
                        vhead, c->vision.width);
    c->vision.heads = c->vision.width / vhead;
    /* Python's int(): truncation; both products are far below INT_MAX (width <= 16384). */
    c->vision.mlp = (int)(c->vision.width * vratio);
    c->text.mlp = (int)(c->text.width * tratio);
    if (c->vision.mlp < 1 || c->text.mlp < 1)
        return cm_error(errbuf, CLIPMOD_E_MODEL_CONFIG, "%s: an mlp_ratio gives an empty MLP",
                        file);
    return CLIPMOD_OK;
}

static clipmod_error parse_preprocessor(const char *file, json_t *root, cm_config *c, char *errbuf)
{
    clipmod_error rc = get_triple(file, "", root, "image_mean", 0, c->mean, errbuf);
    if (!rc)
        rc = get_triple(file, "", root, "image_std", 1, c->std, errbuf);
    if (rc)
        return rc;
    /* size is {"shortest_edge": N} in current files, a bare integer in old ones. */
    json_t *size = json_object_get(root, "size");
    if (json_is_integer(size))
        rc = get_int(file, "", root, "size", 1, MAX_IMAGE, &c->resize_short, errbuf);
    else
        rc = get_int(file, "size.", size, "shortest_edge", 1, MAX_IMAGE, &c->resize_short, errbuf);
    if (rc)
        return rc;
    json_t *crop = json_object_get(root, "crop_size");
    if (json_is_integer(crop))
        rc = get_int(file, "", root, "crop_size", 1, MAX_IMAGE, &c->crop, errbuf);
    else
        rc = get_int(file, "crop_size.", crop, "height", 1, MAX_IMAGE, &c->crop, errbuf);
    return rc;
}

static clipmod_error load_json(const char *path, json_t **out, char *errbuf)
{
    json_error_t jerr;
    /* Config files are small; refuse absurd ones before parsing. */
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    *out = NULL;
    if (!root)
        return cm_error(errbuf, CLIPMOD_E_MODEL_CONFIG, "%s:%d:%d: %s", path, jerr.line,
                        jerr.column, jerr.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return cm_error(errbuf, CLIPMOD_E_MODEL_CONFIG, "%s: not a JSON object", path);
    }
    *out = root;
    return CLIPMOD_OK;
}

clipmod_error cm_config_load(const char *dir, cm_config *cfg, char *errbuf)
{
    clipmod_error rc = CLIPMOD_OK;
    json_t *root = NULL;
    char path[PATH_MAX];

    hf_defaults(cfg);
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (access(path, F_OK) == 0) {
        rc = load_json(path, &root, errbuf);
        if (!rc)
            rc = parse_hf(path, root, cfg, errbuf);
        if (rc)
            goto out;
    } else {
        snprintf(path, sizeof path, "%s/open_clip_config.json", dir);
        if (access(path, F_OK) != 0) {
            rc = cm_error(errbuf, CLIPMOD_E_MODEL_CONFIG,
                          "%s: no config.json (Hugging Face) or open_clip_config.json", dir);
            goto out;
        }
        rc = load_json(path, &root, errbuf);
        if (!rc)
            rc = parse_open_clip(path, root, cfg, errbuf);
        if (rc)
            goto out;
    }
    json_decref(root);
    root = NULL;

    cfg->resize_short = cfg->crop = cfg->image_size;
    snprintf(path, sizeof path, "%s/preprocessor_config.json", dir);
    if (access(path, F_OK) == 0) {
        rc = load_json(path, &root, errbuf);
        if (!rc)
            rc = parse_preprocessor(path, root, cfg, errbuf);
        if (rc)
            goto out;
    }

    const cm_tower_config *towers[2] = {&cfg->vision, &cfg->text};
    const char *names[2] = {"vision", "text"};
    for (int i = 0; i < 2; i++) {
        if (towers[i]->width % towers[i]->heads)
            rc = cm_error(errbuf, CLIPMOD_E_MODEL_CONFIG,
                          "%s: %s hidden_size %d is not divisible by %d attention heads", dir,
                          names[i], towers[i]->width, towers[i]->heads);
        if (rc)
            goto out;
    }
    if (cfg->image_size % cfg->patch_size)
        rc = cm_error(errbuf, CLIPMOD_E_MODEL_CONFIG,
                      "%s: image_size %d is not a multiple of patch_size %d", dir, cfg->image_size,
                      cfg->patch_size);
    else if (cfg->crop != cfg->image_size)
        rc = cm_error(errbuf, CLIPMOD_E_MODEL_CONFIG,
                      "%s: crop_size %d differs from the model's image_size %d", dir, cfg->crop,
                      cfg->image_size);
    else if (cfg->resize_short < cfg->crop)
        rc = cm_error(errbuf, CLIPMOD_E_MODEL_CONFIG,
                      "%s: resize size %d is smaller than the crop %d", dir, cfg->resize_short,
                      cfg->crop);
out:
    json_decref(root);
    return rc;
}
