/*
 * reload.c - the engine clipmodd scans with, and its swap on SIGHUP.
 *
 * Owns the model (loaded once at start: a model swap would double the memory, as
 * ClamAV's concurrent database reload does) and the slot of the current engine.
 * Building is the runtime's (src/common/engine_cfg.h: the same steps, order and
 * messages as clipmod and clipmod-milter, operator plugins included); the slot is
 * the runtime's reference-counted swap (src/common/swap.h). A reload compiles a new
 * engine from the configuration while the old one keeps scanning, then installs
 * it: every request took its own reference to the engine current when it arrived
 * and releases it when done, so the old engine is freed by whichever request ends
 * last on it. No request is dropped or rescanned, none sees half a policy, and a
 * policy with problems never replaces a working one.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "daemon.h"
#include "engine_cfg.h"

static clipmod_model *model;
static cm_swap *slot;

/* The engine half of dconfig, borrowed for one build. */
static clipmod_engine *build(const dconfig *c)
{
    cm_plugin_cfg *plugins = calloc(c->n_plugins ? c->n_plugins : 1, sizeof *plugins);
    clipmod_engine *e = NULL;
    char err[CLIPMOD_ERROR_SIZE];
    cm_engine_cfg cfg;

    if (!plugins) {
        cm_log(CM_LOG_ERROR, "engine not built", CM_LF_S("error", "out of memory"), CM_LF_END);
        return NULL;
    }
    memset(&cfg, 0, sizeof cfg);
    cfg.model = c->model;
    cfg.merges = c->merges;
    cfg.threads = c->threads;
    cfg.policy = c->policy;
    memcpy(cfg.setting, c->setting, sizeof cfg.setting);
    memcpy(cfg.setting_given, c->setting_given, sizeof cfg.setting_given);
    cfg.no_cache = c->no_cache;
    cfg.cache_dir = c->cache_dir;
    cfg.fetch_allow = (const char *const *)c->fetch_allow.v;
    cfg.n_fetch_allow = c->fetch_allow.n;
    for (size_t i = 0; i < c->n_plugins; i++) {
        plugins[i].path = c->plugins[i].path;
        plugins[i].config = c->plugins[i].config;
    }
    cfg.plugins = plugins;
    cfg.n_plugins = c->n_plugins;
    /* Refusals and policy problems are logged there, one line each. */
    cm_engine_from_config(&cfg, model, &e, NULL, err);
    free(plugins);
    return e;
}

/* The first 12 hex digits of the policy's fingerprint, as a short git hash names a commit. */
static void fingerprint12(const clipmod_engine *e, char out[13])
{
    const char *fp = clipmod_engine_policy_fingerprint(e);
    snprintf(out, 13, "%s", fp ? fp : "");
}

/*
 * Install `fresh` and name it in every log line from now on (log.h's context):
 * policy=<12 hex digits> generation=N.
 */
static unsigned long install(clipmod_engine *fresh)
{
    char fp12[13];

    fingerprint12(fresh, fp12);
    unsigned long gen = cm_swap_install(slot, fresh, fp12) + 1;
    cm_log_set_context(fp12[0] ? fp12 : NULL, (long long)gen);
    return gen;
}

int reload_init(const dconfig *c)
{
    cm_engine_cfg mcfg;
    clipmod_engine *e;

    memset(&mcfg, 0, sizeof mcfg);
    mcfg.model = c->model;
    mcfg.merges = c->merges;
    mcfg.threads = c->threads;
    mcfg.precision = c->precision;
    mcfg.no_cache = c->no_cache; /* the weights cache goes with the prompt cache */
    mcfg.cache_dir = c->cache_dir;
    slot = cm_swap_new();
    if (!slot) {
        cm_log(CM_LOG_ERROR, "out of memory", CM_LF_END);
        return -1;
    }
    /* Logs "model loaded", the demo-model warning or the install hint. */
    if (cm_model_from_config(&mcfg, &model, NULL))
        return -1;
    e = build(c);
    if (!e)
        return -1;
    install(e);
    cm_log(CM_LOG_INFO, "policy compiled", CM_LF_S("policy_file", c->policy),
           CM_LF_S("name", clipmod_engine_policy_name(e)), CM_LF_END);
    return 0;
}

int reload_swap(const dconfig *c)
{
    double t0 = cm_now();
    clipmod_engine *fresh = build(c);

    if (!fresh) {
        metrics_reload(0);
        cm_log(CM_LOG_ERROR, "reload failed; the previous policy stays active",
               CM_LF_S("policy_file", c->policy), CM_LF_END);
        return -1;
    }
    const char *name = clipmod_engine_policy_name(fresh);
    char *name_copy = strdup(name ? name : "");
    /* Requests that took the old engine still hold references; the last one frees it. */
    install(fresh);
    metrics_reload(1);
    cm_log(CM_LOG_INFO, "policy reloaded", CM_LF_S("policy_file", c->policy),
           CM_LF_S("name", name_copy), CM_LF_F("seconds", cm_now() - t0), CM_LF_END);
    free(name_copy);
    return 0;
}

clipmod_engine *reload_acquire(void)
{
    return slot ? cm_swap_acquire(slot) : NULL;
}

clipmod_engine *reload_acquire_info(cm_swap_info *info)
{
    if (!slot) {
        memset(info, 0, sizeof *info);
        return NULL;
    }
    return cm_swap_acquire_info(slot, info);
}

const char *reload_job_policy(const bjob *job, char *gen, size_t genlen)
{
    if (!job || !job->generation || job->generation == reload_generation())
        return NULL;
    snprintf(gen, genlen, "%lu", job->generation);
    return job->policy_fp;
}

const clipmod_model *reload_model(void)
{
    return model;
}

double reload_loaded_at(void)
{
    cm_swap_info info = {0};
    if (slot)
        cm_swap_info_get(slot, &info);
    return info.loaded_at;
}

unsigned long reload_generation(void)
{
    cm_swap_info info = {0};
    if (slot)
        cm_swap_info_get(slot, &info);
    return info.generation;
}

void reload_shutdown(void)
{
    /* Engines still held by requests live on; by now none scans any more. */
    cm_swap_free(slot);
    slot = NULL;
    clipmod_model_free(model);
    model = NULL;
}

void reload_request(void)
{
    /* The main thread waits for signals; SIGHUP is how every reload starts. */
    kill(getpid(), SIGHUP);
}
