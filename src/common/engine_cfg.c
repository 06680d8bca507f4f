/*
 * engine_cfg.c - model and engine building from a configuration (see engine_cfg.h),
 * one code path for clipmod, clipmodd and clipmod-milter.
 *
 * Owns the order of the steps and the wording of every refusal. The log lines keep
 * clipmodd's structured form (a fixed message, the culprit in a field), since that
 * is what operators grep for; errbuf gets one sentence naming the culprit, for the
 * CLI which prints its own "clipmod: ..." lines. Only the public API is used, so
 * the programs can link this without seeing the library's internals.
 */
#include "engine_cfg.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define DEMO_WARNING CM_DEMO_WARNING

/* A CPU without the precision's instructions: the model is fine, the setting is not. */
#define PRECISION_HINT "use precision fp32 (the default), which every CPU runs"
#define MODEL_HINT                                                                                 \
    "install one with 'clipmod model fetch NAME' (clipmod model list names them), or make an "     \
    "installed one the default with 'clipmod model use NAME', or give --model DIR"

/* An error line, unless the caller prints its refusals itself (errors_to_caller). */
#define LOG_REFUSAL(cfg, ...)                                                                      \
    do {                                                                                           \
        if (!((cfg) && (cfg)->errors_to_caller))                                                   \
            cm_log(CM_LOG_ERROR, __VA_ARGS__);                                                     \
    } while (0)

#define FETCH_ALLOW_WHY "not a network (10.1.0.0/16, 127.0.0.1/32, ::1/128) or a host name"

/* Write one line into errbuf (CLIPMOD_ERROR_SIZE bytes) when the caller gave one. */
static void set_err(char *errbuf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(char *errbuf, const char *fmt, ...)
{
    va_list ap;
    if (!errbuf)
        return;
    va_start(ap, fmt);
    vsnprintf(errbuf, CLIPMOD_ERROR_SIZE, fmt, ap);
    va_end(ap);
}

/* The library's message, or its error's description when it wrote none (NOMEM). */
static const char *lib_msg(const char *buf, clipmod_error err)
{
    return buf[0] ? buf : clipmod_strerror(err);
}

clipmod_error cm_model_from_config(const cm_engine_cfg *cfg, clipmod_model **out, char *errbuf)
{
    char err[CLIPMOD_ERROR_SIZE] = "";
    clipmod_model *model = NULL;

    if (out)
        *out = NULL;
    if (!cfg || !cfg->model || !out) {
        LOG_REFUSAL(cfg, "model not loaded", CM_LF_S("error", "no model directory given"),
                    CM_LF_END);
        set_err(errbuf, "no model directory given");
        return CLIPMOD_E_INVALID_ARG;
    }
    /* Process-wide, and clipmod.h asks for it before any embedding. */
    if (cfg->threads > 0)
        clipmod_set_threads(cfg->threads);
    /* The weights cache shares the prompt cache's directory and switch. */
    const char *wcache = cfg->no_cache ? NULL : cfg->cache_dir ? cfg->cache_dir : "";
    clipmod_error rc =
        clipmod_model_load_cached(cfg->model, cfg->merges, cfg->precision, wcache, &model, err);
    if (rc) {
        LOG_REFUSAL(cfg, "model not loaded", CM_LF_S("model", cfg->model),
                    CM_LF_S("error", lib_msg(err, rc)),
                    CM_LF_S("hint", rc == CLIPMOD_E_UNSUPPORTED ? PRECISION_HINT : MODEL_HINT),
                    CM_LF_END);
        set_err(errbuf, "%s", lib_msg(err, rc));
        return rc;
    }
    /* Every program compiles a policy, which needs prompt embeddings. */
    if (!clipmod_model_has_text(model)) {
        LOG_REFUSAL(cfg, "the model cannot embed texts (no text tower or no merges file)",
                    CM_LF_S("model", cfg->model), CM_LF_END);
        set_err(errbuf, "%s: this model cannot embed texts (no text tower, or no merges file)",
                cfg->model);
        clipmod_model_free(model);
        return CLIPMOD_E_MODEL_CONFIG;
    }
    cm_log(CM_LOG_INFO, "model loaded", CM_LF_S("model", cfg->model),
           CM_LF_S("describe", clipmod_model_describe(model)),
           CM_LF_B("demo", clipmod_model_is_demo(model)),
           CM_LF_S("weights_cache", clipmod_model_cache_note(model)), CM_LF_END);
    /* Honesty: a model trained on emoji must never pass for real moderation. */
    if (clipmod_model_is_demo(model))
        cm_log(CM_LOG_WARN, DEMO_WARNING, CM_LF_S("model", cfg->model), CM_LF_END);
    *out = model;
    return CLIPMOD_OK;
}

/* Log each "file:line:column: message" line of `text` as its own entry. */
static void log_problems(int level, const char *msg, const char *text)
{
    const char *p = text;
    while (p && *p) {
        size_t n = strcspn(p, "\n");
        if (n) {
            char *line = strndup(p, n);
            cm_log(level, msg, CM_LF_S("problem", line ? line : "(out of memory)"), CM_LF_END);
            free(line);
        }
        p += n + (p[n] == '\n');
    }
}

static clipmod_error apply_settings(const cm_engine_cfg *cfg, clipmod_engine *e, char *errbuf)
{
    for (int s = 0; s < CLIPMOD_SETTING__COUNT; s++) {
        if (!cfg->setting_given[s])
            continue;
        const char *name = clipmod_setting_name((clipmod_setting)s);
        clipmod_error rc = clipmod_engine_set(e, (clipmod_setting)s, cfg->setting[s]);
        if (rc) {
            LOG_REFUSAL(cfg, "engine setting refused", CM_LF_S("setting", name),
                        CM_LF_I("value", cfg->setting[s]), CM_LF_S("error", clipmod_strerror(rc)),
                        CM_LF_END);
            set_err(errbuf, "setting %s %llu: %s", name, (unsigned long long)cfg->setting[s],
                    clipmod_strerror(rc));
            return rc;
        }
    }
    return CLIPMOD_OK;
}

static clipmod_error apply_overrides(const cm_engine_cfg *cfg, clipmod_engine *e, char *errbuf)
{
    for (size_t i = 0; i < cfg->n_overrides; i++) {
        char err[CLIPMOD_ERROR_SIZE] = "";
        clipmod_error rc = clipmod_engine_override(e, cfg->overrides[i], err);
        if (rc) {
            /* The library's message starts with "--set ASSIGNMENT:". */
            LOG_REFUSAL(cfg, "override refused", CM_LF_S("override", cfg->overrides[i]),
                        CM_LF_S("error", lib_msg(err, rc)), CM_LF_END);
            if (err[0])
                set_err(errbuf, "%s", err);
            else
                set_err(errbuf, "--set %s: %s", cfg->overrides[i], clipmod_strerror(rc));
            return rc;
        }
    }
    return CLIPMOD_OK;
}

static clipmod_error apply_cache(const cm_engine_cfg *cfg, clipmod_engine *e, char *errbuf)
{
    if (!cfg->no_cache && !cfg->cache_dir)
        return CLIPMOD_OK; /* the library's default directory */
    const char *dir = cfg->no_cache ? NULL : cfg->cache_dir;
    clipmod_error rc = clipmod_engine_set_cache_dir(e, dir);
    if (rc) {
        LOG_REFUSAL(cfg, "cache directory refused", CM_LF_S("cache_dir", dir),
                    CM_LF_S("error", clipmod_strerror(rc)), CM_LF_END);
        set_err(errbuf, "cache directory %s: %s", dir ? dir : "(none)", clipmod_strerror(rc));
    }
    return rc;
}

static clipmod_error apply_fetch_allow(const cm_engine_cfg *cfg, clipmod_engine *e, char *errbuf)
{
    for (size_t i = 0; i < cfg->n_fetch_allow; i++) {
        clipmod_error rc = clipmod_engine_allow_fetch(e, cfg->fetch_allow[i]);
        if (rc) {
            const char *why = rc == CLIPMOD_E_INVALID_ARG ? FETCH_ALLOW_WHY : clipmod_strerror(rc);
            LOG_REFUSAL(cfg, "fetch allow entry refused", CM_LF_S("entry", cfg->fetch_allow[i]),
                        CM_LF_S("error", why), CM_LF_END);
            set_err(errbuf, "fetch allow entry %s: %s", cfg->fetch_allow[i], why);
            return rc;
        }
    }
    return CLIPMOD_OK;
}

static clipmod_error load_plugins(const cm_engine_cfg *cfg, clipmod_engine *e, char *errbuf)
{
    for (size_t i = 0; i < cfg->n_plugins; i++) {
        char err[CLIPMOD_ERROR_SIZE] = "";
        const cm_plugin_cfg *p = &cfg->plugins[i];
        clipmod_error rc = clipmod_engine_load_plugin(e, p->path, p->config, err);
        if (rc) {
            /* The library's messages start with "plugin PATH"; only NOMEM may be bare. */
            LOG_REFUSAL(cfg, "plugin not loaded", CM_LF_S("plugin", p->path),
                        CM_LF_S("error", lib_msg(err, rc)), CM_LF_END);
            if (err[0] && strstr(err, p->path ? p->path : ""))
                set_err(errbuf, "%s", err);
            else
                set_err(errbuf, "plugin %s: %s", p->path ? p->path : "(none)", lib_msg(err, rc));
            return rc;
        }
    }
    return CLIPMOD_OK;
}

static clipmod_error compile(const cm_engine_cfg *cfg, clipmod_engine *e, char **problems,
                             char *errbuf)
{
    char *text = NULL;
    clipmod_error rc = clipmod_engine_compile(e, cfg->policy, &text);
    if (rc) {
        if (!cfg->errors_to_caller)
            log_problems(CM_LOG_ERROR, "policy problem", text);
        const char *why = rc == CLIPMOD_E_POLICY ? "the policy has problems" : clipmod_strerror(rc);
        LOG_REFUSAL(cfg, "policy not compiled", CM_LF_S("policy_file", cfg->policy),
                    CM_LF_S("error", why), CM_LF_END);
        /* A file that cannot be read says so in its one problem line: the better message. */
        if (rc != CLIPMOD_E_POLICY && text && text[0])
            set_err(errbuf, "%.*s", (int)strcspn(text, "\n"), text);
        else
            set_err(errbuf, "%s: %s", cfg->policy, why);
    } else if (!cfg->quiet_warnings) {
        log_problems(CM_LOG_WARN, "policy warning", text);
    }
    if (problems)
        *problems = text;
    else
        clipmod_free(text);
    return rc;
}

clipmod_error cm_engine_from_config(const cm_engine_cfg *cfg, const clipmod_model *model,
                                    clipmod_engine **out, char **problems, char *errbuf)
{
    clipmod_engine *e = NULL;

    if (out)
        *out = NULL;
    if (problems)
        *problems = NULL;
    if (!cfg || !model || !out || !cfg->policy) {
        const char *why = cfg && model && out ? "no policy file given" : "no model or no engine";
        LOG_REFUSAL(cfg, "engine not built", CM_LF_S("error", why), CM_LF_END);
        set_err(errbuf, "%s", why);
        return CLIPMOD_E_INVALID_ARG;
    }
    clipmod_error rc = clipmod_engine_new(model, &e);
    if (rc) {
        LOG_REFUSAL(cfg, "engine not built", CM_LF_S("error", clipmod_strerror(rc)), CM_LF_END);
        set_err(errbuf, "engine: %s", clipmod_strerror(rc));
        return rc;
    }
    /* The documented order: settings, overrides, cache, fetch, plugins, policy. */
    rc = apply_settings(cfg, e, errbuf);
    if (!rc)
        rc = apply_overrides(cfg, e, errbuf);
    if (!rc)
        rc = apply_cache(cfg, e, errbuf);
    if (!rc)
        rc = apply_fetch_allow(cfg, e, errbuf);
    if (!rc)
        rc = load_plugins(cfg, e, errbuf);
    if (!rc)
        rc = compile(cfg, e, problems, errbuf);
    if (rc) {
        clipmod_engine_free(e);
        return rc;
    }
    *out = e;
    return CLIPMOD_OK;
}
