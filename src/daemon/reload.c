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

#include "daemon.h"

static pthread_mutex_t engine_lock = PTHREAD_MUTEX_INITIALIZER;
static clipmod_model *model;
static clipmod_engine *current;
static double loaded_at;
static unsigned long generation;

/* Log a block of "file:line:column: message" lines, one log line each. */
static void log_problems(int level, const char *what, const char *text)
{
    char *copy = text ? strdup(text) : NULL, *save = NULL;
    for (char *l = copy ? strtok_r(copy, "\n", &save) : NULL; l; l = strtok_r(NULL, "\n", &save))
        dlog(level, what, LF_S("problem", l), LF_END);
    free(copy);
}

static clipmod_engine *build(const dconfig *c)
{
    clipmod_engine *e = NULL, *result = NULL;
    char *problems = NULL;
    clipmod_error err;

    if ((err = clipmod_engine_new(model, &e))) {
        dlog(DLOG_ERROR, "engine", LF_S("error", clipmod_strerror(err)), LF_END);
        goto out;
    }
    for (int s = 0; s < CLIPMOD_SETTING__COUNT; s++) {
        if (!c->setting_given[s])
            continue;
        if ((err = clipmod_engine_set(e, (clipmod_setting)s, c->setting[s]))) {
            dlog(DLOG_ERROR, "engine setting refused",
                 LF_S("setting", clipmod_setting_name((clipmod_setting)s)),
                 LF_I("value", c->setting[s]), LF_S("error", clipmod_strerror(err)), LF_END);
            goto out;
        }
    }
    if (c->no_cache || c->cache_dir) {
        if ((err = clipmod_engine_set_cache_dir(e, c->no_cache ? NULL : c->cache_dir))) {
            dlog(DLOG_ERROR, "cache-dir refused", LF_S("cache_dir", c->cache_dir),
                 LF_S("error", clipmod_strerror(err)), LF_END);
            goto out;
        }
    }
    for (size_t i = 0; i < c->fetch_allow.n; i++) {
        if ((err = clipmod_engine_allow_fetch(e, c->fetch_allow.v[i]))) {
            dlog(DLOG_ERROR, "fetch allow entry refused", LF_S("entry", c->fetch_allow.v[i]),
                 LF_S("error", clipmod_strerror(err)), LF_END);
            goto out;
        }
    }
    err = clipmod_engine_compile(e, c->policy, &problems);
    if (err) {
        log_problems(DLOG_ERROR, "policy problem", problems);
        dlog(DLOG_ERROR, "policy not compiled", LF_S("policy", c->policy),
             LF_S("error", clipmod_strerror(err)), LF_END);
        goto out;
    }
    log_problems(DLOG_WARN, "policy warning", problems);
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
        dlog(DLOG_ERROR, "model not loaded", LF_S("model", c->model), LF_S("error", err),
             LF_S("hint", "install one with 'clipmod model fetch NAME' (clipmod model list "
                          "names them), or make an installed one the default with "
                          "'clipmod model use NAME', or give --model DIR"),
             LF_END);
        return -1;
    }
    if (!clipmod_model_has_text(model)) {
        dlog(DLOG_ERROR, "the model cannot embed texts (no text tower or no merges file)",
             LF_S("model", c->model), LF_END);
        return -1;
    }
    dlog(DLOG_INFO, "model loaded", LF_S("model", c->model),
         LF_S("describe", clipmod_model_describe(model)),
         LF_B("demo", clipmod_model_is_demo(model)), LF_END);
    /* Honesty: a model trained on emoji must never pass for real moderation. */
    if (clipmod_model_is_demo(model))
        dlog(DLOG_WARN,
             "this is clipmod's demo model, trained on emoji for demos and tests; verdicts are "
             "not real moderation",
             LF_S("model", c->model), LF_END);
    if (!(current = build(c)))
        return -1;
    loaded_at = wall_now();
    generation = 1;
    dlog(DLOG_INFO, "policy compiled", LF_S("policy", c->policy),
         LF_S("name", clipmod_engine_policy_name(current)), LF_END);
    return 0;
}

int reload_swap(const dconfig *c)
{
    double t0 = mono_now();
    clipmod_engine *fresh = build(c), *old;

    if (!fresh) {
        metrics_reload(0);
        dlog(DLOG_ERROR, "reload failed; the previous policy stays active",
             LF_S("policy", c->policy), LF_END);
        return -1;
    }
    pthread_mutex_lock(&engine_lock);
    old = current;
    current = fresh;
    loaded_at = wall_now();
    generation++;
    pthread_mutex_unlock(&engine_lock);
    /* Requests that took `old` still hold references; the last one frees it. */
    clipmod_engine_free(old);
    metrics_reload(1);
    dlog(DLOG_INFO, "policy reloaded", LF_S("policy", c->policy),
         LF_S("name", clipmod_engine_policy_name(fresh)), LF_I("generation", generation),
         LF_F("seconds", mono_now() - t0), LF_END);
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
