/*
 * reload.c - the engine clipmodd scans with, and its swap on SIGHUP.
 *
 * Owns the model (loaded once at start: a model swap would double the memory, as
 * ClamAV's concurrent database reload does) and the current engine. A reload
 * compiles a new engine from the configuration while the old one keeps scanning,
 * then swaps the pointer under a mutex. Every request takes its own reference to
 * the engine current when it arrived (reload_acquire) and releases it when done,
 * so the old engine is freed by whichever request ends last on it: no request is
 * dropped or rescanned, and none sees half a policy. A policy with problems never
 * replaces a working one.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "daemon.h"

static pthread_mutex_t engine_lock = PTHREAD_MUTEX_INITIALIZER;
static clipmod_model *model;
static clipmod_engine *current;
static double loaded_at;
static unsigned long generation;

/*
 * Every log line from now on names the policy: its fingerprint's first 12 hex
 * digits (as the Clipmod-Policy-Fingerprint header) and the generation.
 */
static void log_context(const clipmod_engine *e, unsigned long gen)
{
    const char *fp = clipmod_engine_policy_fingerprint(e);
    char fp12[13] = "";

    if (fp)
        snprintf(fp12, sizeof fp12, "%s", fp);
    cm_log_set_context(fp12[0] ? fp12 : NULL, (long long)gen);
}

/* Log a block of "file:line:column: message" lines, one log line each. */
static void log_problems(int level, const char *what, const char *text)
{
    char *copy = text ? strdup(text) : NULL, *save = NULL;
    for (char *l = copy ? strtok_r(copy, "\n", &save) : NULL; l; l = strtok_r(NULL, "\n", &save))
        cm_log(level, what, CM_LF_S("problem", l), CM_LF_END);
    free(copy);
}

static clipmod_engine *build(const dconfig *c)
{
    clipmod_engine *e = NULL, *result = NULL;
    char *problems = NULL;
    clipmod_error err;

    if ((err = clipmod_engine_new(model, &e))) {
        cm_log(CM_LOG_ERROR, "engine", CM_LF_S("error", clipmod_strerror(err)), CM_LF_END);
        goto out;
    }
    for (int s = 0; s < CLIPMOD_SETTING__COUNT; s++) {
        if (!c->setting_given[s])
            continue;
        if ((err = clipmod_engine_set(e, (clipmod_setting)s, c->setting[s]))) {
            cm_log(CM_LOG_ERROR, "engine setting refused",
                   CM_LF_S("setting", clipmod_setting_name((clipmod_setting)s)),
                   CM_LF_I("value", c->setting[s]), CM_LF_S("error", clipmod_strerror(err)),
                   CM_LF_END);
            goto out;
        }
    }
    if (c->no_cache || c->cache_dir) {
        if ((err = clipmod_engine_set_cache_dir(e, c->no_cache ? NULL : c->cache_dir))) {
            cm_log(CM_LOG_ERROR, "cache-dir refused", CM_LF_S("cache_dir", c->cache_dir),
                   CM_LF_S("error", clipmod_strerror(err)), CM_LF_END);
            goto out;
        }
    }
    for (size_t i = 0; i < c->fetch_allow.n; i++) {
        if ((err = clipmod_engine_allow_fetch(e, c->fetch_allow.v[i]))) {
            cm_log(CM_LOG_ERROR, "fetch allow entry refused", CM_LF_S("entry", c->fetch_allow.v[i]),
                   CM_LF_S("error", clipmod_strerror(err)), CM_LF_END);
            goto out;
        }
    }
    err = clipmod_engine_compile(e, c->policy, &problems);
    if (err) {
        log_problems(CM_LOG_ERROR, "policy problem", problems);
        cm_log(CM_LOG_ERROR, "policy not compiled", CM_LF_S("policy_file", c->policy),
               CM_LF_S("error", clipmod_strerror(err)), CM_LF_END);
        goto out;
    }
    log_problems(CM_LOG_WARN, "policy warning", problems);
    result = e;
    e = NULL;
out:
    clipmod_free(problems);
    clipmod_engine_free(e);
    return result;
}

int reload_init(const dconfig *c)
{
    char err[CLIPMOD_ERROR_SIZE];

    if (c->threads)
        clipmod_set_threads(c->threads);
    if (clipmod_model_load(c->model, c->merges, &model, err)) {
        /* A new user's first start: say which command puts a model where we look. */
        cm_log(CM_LOG_ERROR, "model not loaded", CM_LF_S("model", c->model), CM_LF_S("error", err),
               CM_LF_S("hint", "install one with 'clipmod model fetch NAME' (clipmod model list "
                               "names them), or make an installed one the default with "
                               "'clipmod model use NAME', or give --model DIR"),
               CM_LF_END);
        return -1;
    }
    if (!clipmod_model_has_text(model)) {
        cm_log(CM_LOG_ERROR, "the model cannot embed texts (no text tower or no merges file)",
               CM_LF_S("model", c->model), CM_LF_END);
        return -1;
    }
    cm_log(CM_LOG_INFO, "model loaded", CM_LF_S("model", c->model),
           CM_LF_S("describe", clipmod_model_describe(model)),
           CM_LF_B("demo", clipmod_model_is_demo(model)), CM_LF_END);
    /* Honesty: a model trained on emoji must never pass for real moderation. */
    if (clipmod_model_is_demo(model))
        cm_log(CM_LOG_WARN,
               "this is clipmod's demo model, trained on emoji for demos and tests; verdicts are "
               "not real moderation",
               CM_LF_S("model", c->model), CM_LF_END);
    if (!(current = build(c)))
        return -1;
    loaded_at = cm_wall();
    generation = 1;
    log_context(current, generation);
    cm_log(CM_LOG_INFO, "policy compiled", CM_LF_S("policy_file", c->policy),
           CM_LF_S("name", clipmod_engine_policy_name(current)), CM_LF_END);
    return 0;
}

int reload_swap(const dconfig *c)
{
    double t0 = cm_now();
    clipmod_engine *fresh = build(c), *old;

    if (!fresh) {
        metrics_reload(0);
        cm_log(CM_LOG_ERROR, "reload failed; the previous policy stays active",
               CM_LF_S("policy_file", c->policy), CM_LF_END);
        return -1;
    }
    pthread_mutex_lock(&engine_lock);
    old = current;
    current = fresh;
    loaded_at = cm_wall();
    generation++;
    log_context(fresh, generation);
    pthread_mutex_unlock(&engine_lock);
    /* Requests that took `old` still hold references; the last one frees it. */
    clipmod_engine_free(old);
    metrics_reload(1);
    cm_log(CM_LOG_INFO, "policy reloaded", CM_LF_S("policy_file", c->policy),
           CM_LF_S("name", clipmod_engine_policy_name(fresh)), CM_LF_F("seconds", cm_now() - t0),
           CM_LF_END);
    return 0;
}

clipmod_engine *reload_acquire(void)
{
    pthread_mutex_lock(&engine_lock);
    clipmod_engine *e = clipmod_engine_ref(current);
    pthread_mutex_unlock(&engine_lock);
    return e;
}

const clipmod_model *reload_model(void)
{
    return model;
}

double reload_loaded_at(void)
{
    pthread_mutex_lock(&engine_lock);
    double t = loaded_at;
    pthread_mutex_unlock(&engine_lock);
    return t;
}

unsigned long reload_generation(void)
{
    pthread_mutex_lock(&engine_lock);
    unsigned long g = generation;
    pthread_mutex_unlock(&engine_lock);
    return g;
}

void reload_shutdown(void)
{
    pthread_mutex_lock(&engine_lock);
    clipmod_engine *e = current;
    current = NULL;
    pthread_mutex_unlock(&engine_lock);
    clipmod_engine_free(e);
    clipmod_model_free(model);
    model = NULL;
}

void reload_request(void)
{
    /* The main thread waits for signals; SIGHUP is how every reload starts. */
    kill(getpid(), SIGHUP);
}
