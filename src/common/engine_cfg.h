/*
 * engine_cfg.h - one way to turn a configuration into a model and an engine, for
 * clipmod, clipmodd and clipmod-milter alike.
 *
 * Owns the order and the messages of engine building, which had drifted between
 * src/cli/cmd_scan.c, src/daemon/reload.c and plugins/milter/clipmod-milter.c:
 * model load (with the demo-model warning issued identically everywhere), BLAS
 * threads, every clipmod_setting given, `--set` overrides, the prompt cache
 * directory, the fetch allow-list, operator plugins (every program can load them
 * now, not only the milter), then the policy compile. Every refusal is logged
 * through log.h (one line, naming the setting/entry/plugin at fault) and, for the
 * caller that prints its own errors, also written into errbuf.
 * Uses only the public API (include/clipmod/clipmod.h).
 */
#ifndef CM_ENGINE_CFG_H
#define CM_ENGINE_CFG_H

#include <stddef.h>
#include <stdint.h>

#include "clipmod/clipmod.h"

typedef struct cm_plugin_cfg {
    const char *path;   /* a shared object exporting clipmod_plugin_v1 */
    const char *config; /* its configuration string, may be NULL */
} cm_plugin_cfg;

/* Everything an engine is built from; every pointer is borrowed for the call. */
typedef struct cm_engine_cfg {
    const char *model;  /* model directory */
    const char *merges; /* merges file override, NULL: in the model directory */
    int threads;        /* BLAS threads, 0: leave the library's default */
    /* Of the linear layers (0 = CLIPMOD_PRECISION_FP32); config files' `precision:`. */
    clipmod_precision precision;
    const char *policy; /* policy file to compile */
    uint64_t setting[CLIPMOD_SETTING__COUNT];
    int setting_given[CLIPMOD_SETTING__COUNT];
    const char *const *overrides; /* "category.key=value" (clipmod_engine_override) */
    size_t n_overrides;
    int no_cache;                   /* 1: no prompt cache at all */
    const char *cache_dir;          /* NULL: the library's default */
    const char *const *fetch_allow; /* clipmod_engine_allow_fetch entries */
    size_t n_fetch_allow;
    const cm_plugin_cfg *plugins;
    size_t n_plugins;
    int quiet_warnings; /* 1: policy warnings are not logged */
    /* 1: refusals and policy problems are only handed back (errbuf, *problems), not
     * logged: for the CLI, which prints them itself in its own words (else twice). */
    int errors_to_caller;
} cm_engine_cfg;

/*
 * The demo model's warning, word for word in every program: cm_model_from_config logs
 * it, and a program that loads a model without it (clipmod embed of images only, which
 * needs no text tower) logs this same text at CM_LOG_WARN with the field model=DIR.
 */
#define CM_DEMO_WARNING                                                                            \
    "this is clipmod's demo model, trained on emoji for demos and tests; verdicts are not real "   \
    "moderation"

/*
 * Load cfg->model (with cfg->threads applied first). Refuses a model that cannot
 * embed texts. Logs "model loaded" and, for the demo model, the warning
 * "this is clipmod's demo model, trained on emoji for demos and tests; verdicts are
 * not real moderation". On success *out is owned by the caller (clipmod_model_free).
 * On failure *out is NULL, the error is logged and written into errbuf
 * (CLIPMOD_ERROR_SIZE bytes, may be NULL).
 */
clipmod_error cm_model_from_config(const cm_engine_cfg *cfg, clipmod_model **out, char *errbuf);

/*
 * Build and compile an engine on `model` from cfg. On success *out is a new engine
 * (one reference, release with clipmod_engine_free); policy warnings are logged
 * (unless quiet_warnings) and, when problems is not NULL, also handed over in
 * *problems ("file:line:column: message" lines, free with clipmod_free; NULL if
 * none). On failure *out is NULL, each policy problem is logged as its own line,
 * *problems (if asked) holds them, and errbuf says what failed.
 */
clipmod_error cm_engine_from_config(const cm_engine_cfg *cfg, const clipmod_model *model,
                                    clipmod_engine **out, char **problems, char *errbuf);

#endif
