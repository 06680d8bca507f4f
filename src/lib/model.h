/*
 * model.h - what a loaded clipmod_model holds (internal).
 */
#ifndef CM_MODEL_H
#define CM_MODEL_H

#include <limits.h>
#include <pthread.h>
#include <sys/stat.h>

#include "clipmod/clipmod.h"
#include "config.h"
#include "tokenizer.h"
#include "weights.h"

struct clipmod_model {
    cm_config cfg;
    cm_weights w;
    cm_tokenizer *tok; /* NULL when the model has no text tower or no merges */
    char description[160];
    char name[128];            /* config's _name_or_path, else the directory's name */
    uint64_t fingerprint;      /* of the weights file (and precision): keys the caches */
    uint64_t file_fingerprint; /* of the weights file alone: binds learned heads */
    int demo;                  /* config.json: "clipmod_demo": true */
    /* The text tower is loaded on first use and dropped after a policy's prompts
     * are embedded (cm_model_release_text); `text_lock` guards it, and the file is
     * read again only if it is still the one loaded (same device, inode, size, mtime). */
    pthread_mutex_t text_lock;
    char path[PATH_MAX];
    struct stat file_id;
    char cache_note[PATH_MAX + 160]; /* what the weights cache did at load ("" without one) */
};

/* Free the text tower's weights until the next clipmod_embed_texts() needs them. */
void cm_model_release_text(const clipmod_model *m);

/* 1 once clipmod_init() has succeeded. */
int cm_initialised(void);

#endif
