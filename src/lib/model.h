/*
 * model.h - what a loaded clipmod_model holds (internal).
 */
#ifndef CM_MODEL_H
#define CM_MODEL_H

#include "clipmod/clipmod.h"
#include "config.h"
#include "tokenizer.h"
#include "weights.h"

struct clipmod_model {
    cm_config cfg;
    cm_weights w;
    cm_tokenizer *tok; /* NULL when the model has no text tower or no merges */
    char description[160];
    char name[128];       /* config's _name_or_path, else the directory's name */
    uint64_t fingerprint; /* of the weights file: keys the prompt-embedding cache */
    int demo;             /* config.json: "clipmod_demo": true */
};

/* 1 once clipmod_init() has succeeded. */
int cm_initialised(void);

#endif
