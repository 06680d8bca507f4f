/*
 * config.h - a CLIP model's hyperparameters (internal).
 *
 * Owns the reading of config.json (Hugging Face CLIPConfig, or open_clip's
 * open_clip_config.json) and of the optional preprocessor_config.json. Missing keys
 * take the Hugging Face defaults, as transformers does. Tensor shapes are checked
 * against this config later, in weights.c.
 */
#ifndef CM_CONFIG_H
#define CM_CONFIG_H

#include "clipmod/clipmod.h"

typedef enum cm_act { CM_ACT_QUICK_GELU, CM_ACT_GELU } cm_act;

typedef struct cm_tower_config {
    int width;  /* hidden_size */
    int mlp;    /* intermediate_size */
    int layers; /* num_hidden_layers */
    int heads;  /* num_attention_heads */
    float eps;  /* layer_norm_eps */
    cm_act act; /* hidden_act */
} cm_tower_config;

typedef struct cm_config {
    cm_tower_config vision;
    cm_tower_config text;
    int image_size; /* vision_config.image_size */
    int patch_size;
    int context; /* text max_position_embeddings */
    int vocab;   /* text vocab_size */
    int proj_dim;
    /* Preprocessing (preprocessor_config.json or CLIP's constants). */
    int resize_short; /* shortest edge after resize */
    int crop;         /* centre crop side; equals image_size */
    float mean[3];
    float std[3];
} cm_config;

/*
 * Read the configuration of the model in `dir`: config.json, else
 * open_clip_config.json; then preprocessor_config.json if present. Errors name the
 * file and key (CLIPMOD_E_MODEL_CONFIG, CLIPMOD_E_IO).
 */
clipmod_error cm_config_load(const char *dir, cm_config *cfg, char *errbuf);

const char *cm_act_name(cm_act act);

#endif
