/*
 * demo_tokenizer.h - the demo model's tokenizer for the unit tests and fuzz targets
 * that tokenize with real merges (header-only: each is one program).
 *
 * The number of merges comes from models/demo/config.json (vocab_size - 514), as
 * the library loads a model's tokenizer, so a retrained demo model with a different
 * vocabulary is tokenized in full and never silently truncated.
 */
#ifndef CM_DEMO_TOKENIZER_H
#define CM_DEMO_TOKENIZER_H

#include <stdio.h>

#include "../src/lib/config.h" /* the model config, not the build's config.h */
#include "common.h"
#include "tokenizer.h"

/* Loads srcdir/models/demo's tokenizer into *out; err as the library's errors. */
static inline clipmod_error demo_tokenizer_load(const char *srcdir, cm_tokenizer **out, char *err)
{
    char dir[4096], path[4200];
    cm_config cfg;
    snprintf(dir, sizeof dir, "%s/models/demo", srcdir);
    clipmod_error rc = cm_config_load(dir, &cfg, err);
    if (rc)
        return rc;
    if (cfg.vocab < 514)
        return cm_error(err, CLIPMOD_E_MODEL_CONFIG, "%s: vocab_size %d < 514", dir, cfg.vocab);
    snprintf(path, sizeof path, "%s/merges.txt", dir);
    return cm_tokenizer_load(path, (size_t)cfg.vocab - 514, out, err);
}

#endif
